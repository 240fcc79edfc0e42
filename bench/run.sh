#!/bin/bash
# SPDX-License-Identifier: MIT
# Builds the allocator benchmark (meson, in build/) and runs it through bench/report.py.
#
#   bench/run.sh --quick   short run (the binary 3 times, 0.05 s per benchmark, medians; about
#                          15 s after the build); prints the table of ns/op and the ratios of
#                          shmdict to each baseline
#   bench/run.sh           full run (the binary 5 times, 0.3 s per benchmark, median over the
#                          5 processes; about 2 minutes); prints the table and rewrites the
#                          allocator section of docs/bench.md and its plot
# Further arguments go to bench/report.py (e.g. --filter 'pair', --save-json out.json,
# -- --benchmark_min_time=2). Works from any directory; needs what scripts/setup.sh installs.
#
#   bench/run.sh containers [--quick] [args]
#                          the containers benchmark instead (bench_containers through
#                          bench/report_containers.py): hash and rbtree ns/op, and insert latency
#                          while growing to 10M keys. Full run (about 10 minutes, 3 runs per
#                          growth series) rewrites the containers section of docs/bench.md and
#                          its plot; --quick (1M keys in
#                          the growth part, short benchmark times) only prints.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [ "${1:-}" = "containers" ]; then
  shift
  cquick=0
  cargs=()
  for a in "$@"; do
    case "$a" in
      --quick) cquick=1 ;;
      *) cargs+=("$a") ;;
    esac
  done
  if [ ! -f build/build.ninja ]; then
    echo "run.sh: configuring build (release)" >&2
    meson setup build --buildtype=release >&2
  else
    meson configure build -Dbench=true >/dev/null
  fi
  echo "run.sh: building bench_containers" >&2
  meson compile -C build bench_containers >&2
  cpy=python3
  if ! "$cpy" -c 'import matplotlib' 2>/dev/null && [ -x /usr/bin/python3 ]; then
    cpy=/usr/bin/python3
  fi
  if [ "$cquick" -eq 1 ]; then
    exec "$cpy" bench/report_containers.py --bin build/bench/bench_containers --build-dir build \
      --min-time 0.1 --keys 1000000 ${cargs[@]+"${cargs[@]}"}
  else
    exec "$cpy" bench/report_containers.py --bin build/bench/bench_containers --build-dir build \
      --min-time 0.5 --keys 10000000 --runs 3 --docs ${cargs[@]+"${cargs[@]}"}
  fi
fi

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
  exec "$py" bench/report.py --bin "$bin" --build-dir "$build" --min-time 0.05 --runs 3 \
    ${args[@]+"${args[@]}"}
else
  exec "$py" bench/report.py --bin "$bin" --build-dir "$build" --min-time 0.3 --runs 5 \
    --docs ${args[@]+"${args[@]}"}
fi
