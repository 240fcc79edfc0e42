#!/bin/bash
# SPDX-License-Identifier: MIT
# Builds the allocator benchmark (meson, in build/) and runs it through bench/report.py.
#
#   bench/run.sh --quick   short run (min time 0.1 s per benchmark, about a minute); prints the
#                          table of ns/op and the ratios of shmdict to each baseline
#   bench/run.sh           full run (0.5 s, median of 3 repetitions, a few minutes); prints the
#                          table and rewrites the allocator section of docs/bench.md and its plot
# Further arguments go to bench/report.py (e.g. --filter 'pair', --save-json out.json,
# -- --benchmark_min_time=2). Works from any directory; needs what scripts/setup.sh installs.
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
  echo "run.sh: configuring $build (release)" >&2
  meson setup "$build" --buildtype=release >&2
else
  buildtype=$(meson configure "$build" 2>/dev/null | awk '$1 == "buildtype" { print $2 }')
  if [ -n "$buildtype" ] && [ "$buildtype" != "release" ]; then
    echo "run.sh: note: $build is configured as '$buildtype', not release" >&2
  fi
  meson configure "$build" -Dbench=true >/dev/null
fi
echo "run.sh: building bench_alloc" >&2
meson compile -C "$build" bench_alloc >&2

# report.py wants matplotlib for the plot; prefer an interpreter that has it (Debian's).
py=python3
if ! "$py" -c 'import matplotlib' 2>/dev/null && [ -x /usr/bin/python3 ]; then
  py=/usr/bin/python3
fi

bin="$build/bench/bench_alloc"
if [ "$quick" -eq 1 ]; then
  exec "$py" bench/report.py --bin "$bin" --build-dir "$build" --min-time 0.1 ${args[@]+"${args[@]}"}
else
  exec "$py" bench/report.py --bin "$bin" --build-dir "$build" --min-time 0.5 --repetitions 3 \
    --docs ${args[@]+"${args[@]}"}
fi
