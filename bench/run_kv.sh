#!/bin/bash
# SPDX-License-Identifier: MIT
# Builds the keyspace benchmark (meson, release, in build/) and runs it through bench/report_kv.py.
#
#   bench/run_kv.sh --quick   short run (min time 0.1 s, hot-restart stores of 20 000 and 100 000
#                             players); prints the tables
#   bench/run_kv.sh           full run (min time 0.5 s, stores of 100 000 and 1 000 000 players,
#                             about 5 minutes); prints the tables and rewrites the keyspace section
#                             of docs/bench.md and docs/img/bench_kv.png
# Further arguments go to bench/report_kv.py. Needs redis-server and libhiredis-dev
# (scripts/setup.sh). Starts its own redis-server on a random loopback port and stops it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
quick=0
args=()
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    *) args+=("$a") ;;
  esac
done
build=build
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" --buildtype=release >&2
else
  meson configure "$build" -Dbench=true >/dev/null
fi
ninja -C "$build" bench/bench_kv examples/guild_friends >&2
py=python3
if ! "$py" -c 'import matplotlib' 2>/dev/null && [ -x /usr/bin/python3 ]; then
  py=/usr/bin/python3
fi
if [ "$quick" -eq 1 ]; then
  export BENCH_KV_PLAYERS=${BENCH_KV_PLAYERS:-20000,100000}
  exec "$py" bench/report_kv.py --bin "$build/bench/bench_kv" --build-dir "$build" --min-time 0.1 \
    ${args[@]+"${args[@]}"}
else
  export BENCH_KV_PLAYERS=${BENCH_KV_PLAYERS:-100000,1000000}
  exec "$py" bench/report_kv.py --bin "$build/bench/bench_kv" --build-dir "$build" --min-time 0.5 \
    --docs ${args[@]+"${args[@]}"}
fi
