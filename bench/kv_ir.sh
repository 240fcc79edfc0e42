#!/bin/bash
# SPDX-License-Identifier: MIT
# Instruction counts (callgrind Ir) per keyspace operation: builds bench/kv_ir.c against
# BUILD/libshmdict.a and runs each operation OPS times under callgrind, printing
# "<op> <Ir per op>". Instruction counts do not depend on the machine's load, so they compare two
# builds of different commits on a busy machine (docs/bench.md).
#
#   bench/kv_ir.sh BUILD [OPS] [NKEYS]        e.g. bench/kv_ir.sh build-dev 20000 100000
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: kv_ir.sh BUILD [OPS] [NKEYS]}" && pwd)
ops=${2:-20000}
nkeys=${3:-100000}
tmp=$(mktemp -d /tmp/shmd-kvir-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
src=$(cd "$here/.." && pwd)
cc -std=c11 -O2 -D_GNU_SOURCE -I"$src/include" -o "$tmp/kv_ir" "$here/kv_ir.c" "$build/libshmdict.a" \
  -lxxhash -lpthread -lm
for op in kv_get kv_set kv_zadd kv_zrank; do
  mkdir -m 0700 "$tmp/$op"
  valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file="$tmp/$op.out" \
    "$tmp/kv_ir" "$tmp/$op" "$op" "$ops" "$nkeys" 2>"$tmp/$op.log" || { cat "$tmp/$op.log"; exit 1; }
  ir=$(sed -n 's/^summary: \([0-9]*\).*/\1/p' "$tmp/$op.out")
  [ -n "$ir" ] || ir=$(sed -n 's/^totals: \([0-9]*\).*/\1/p' "$tmp/$op.out")
  echo "$op $((ir / ops))"
done
