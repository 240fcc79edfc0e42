#!/bin/bash
# SPDX-License-Identifier: MIT
# Builds shmdict-server (meson, release, in build/) and runs bench/report_server.py: redis-benchmark
# against redis-server and shmdict-server (1 and 2 workers), interleaved.
#
#   bench/run_server.sh --quick   1 round of 200 000 requests per test; prints the table
#   bench/run_server.sh           3 rounds of 1 000 000 requests per test (about 5-10 minutes);
#                                 prints the table and rewrites the server section of docs/bench.md
#                                 and docs/img/bench_server.png
# Further arguments go to bench/report_server.py. Needs redis-server, redis-tools and libuv1-dev
# (scripts/setup.sh). Starts its own servers on random loopback ports and stops them.
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
fi
ninja -C "$build" server/shmdict-server >&2
py=python3
if ! "$py" -c 'import matplotlib' 2>/dev/null && [ -x /usr/bin/python3 ]; then
  py=/usr/bin/python3
fi
if [ "$quick" -eq 1 ]; then
  exec "$py" bench/report_server.py --server "$build/server/shmdict-server" --rounds 1 -n 200000 \
    ${args[@]+"${args[@]}"}
else
  exec "$py" bench/report_server.py --server "$build/server/shmdict-server" --docs ${args[@]+"${args[@]}"}
fi
