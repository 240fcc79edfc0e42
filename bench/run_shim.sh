#!/bin/bash
# SPDX-License-Identifier: MIT
# Whole programs under LD_PRELOAD: glibc (nothing preloaded), mimalloc, jemalloc and shmdict's
# libshmdict-malloc.so, each program run REPS times (default 3) per allocator, alternating
# allocators, reporting the median wall time and the median peak RSS (GNU time's %e and %M).
#
#   bench/run_shim.sh [BUILD_DIR] [REPS]      (BUILD_DIR defaults to build; needs the shim and
#                                              shim_threads built there: ninja -C BUILD_DIR)
#
# Programs: a python3 script (dicts, strings, json, sorting), sort of a 16 MB file (two sorts),
# malloc/shim_threads (4 threads, cross-thread frees, a fork, 1200 short threads), and
# redis-server under redis-benchmark (set/get/lpush/lpop, 100 000 requests, 50 clients; the
# server's time is the benchmark's wall time, its peak RSS is the server's) when installed.
# Every output is compared with glibc's run. Then the allocator benchmark's workloads (pair/16/64/256,
# churn, xthread, bulk) through plain malloc/free, bench/bench_malloc under each allocator (built with
# -Dbench=true). Scratch files go to a private mktemp directory.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
reps="${2:-3}"
shim="$build/malloc/libshmdict-malloc.so"
threads="$build/malloc/shim_threads"
[ -f "$shim" ] && [ -x "$threads" ] || { echo "run_shim.sh: build $shim and $threads first" >&2; exit 1; }
libdir=/usr/lib/x86_64-linux-gnu
declare -A pre=([glibc]="" [mimalloc]="$libdir/libmimalloc.so.2" [jemalloc]="$libdir/libjemalloc.so.2"
                [shmdict]="$shim")
allocs=(glibc mimalloc jemalloc shmdict)
py=/usr/bin/python3
[ -x "$py" ] || py=python3

tmp="$(mktemp -d /tmp/shmdict-run-shim-XXXXXX)"
# The shim's stores go to tmpfs, as by default: on a disk file system (/tmp here is ext4) page-cache
# readahead around every first touch made the shim look 100 MB bigger and 0.1 s slower to start.
shm="$(mktemp -d /dev/shm/shmdict-run-shim-XXXXXX)"
trap 'rm -rf "$tmp" "$shm"' EXIT
export SHMDICT_MALLOC_DIR="$shm"
"$py" - "$tmp/lines.txt" <<'PY'
import random, sys
random.seed(12345)
with open(sys.argv[1], "w") as f:
    for i in range(400000):
        f.write("".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(random.randint(5, 64))))
        f.write(" %d\n" % random.randrange(1000000))
PY
cat > "$tmp/script.py" <<'PY'
import json, collections, random
random.seed(7)
d = {}
for i in range(300000):
    d[str(i)] = [i] * (i % 40) + [str(i) * (i % 9)]
c = collections.Counter(len(v) for v in d.values())
s = sorted(d.items(), key=lambda kv: (len(kv[1]), kv[0]))
blob = json.dumps(s[:20000])
big = [bytearray(random.randrange(1, 200000)) for _ in range(500)]
print(len(d), sorted(c.items())[:5], len(blob), sum(map(len, big)))
PY

declare -A cmd=(
  [python3]="$py $tmp/script.py"
  [sort]="sort $tmp/lines.txt | cksum; sort -k2,2n -S 64M $tmp/lines.txt | cksum"
  [shim_threads]="$threads"
)
progs=(python3 sort shim_threads)

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

echo "| program | $(printf '%s | ' "${allocs[@]}")"
echo "|---|$(printf -- '---:|%.0s' "${allocs[@]}")"
for p in "${progs[@]}"; do
  declare -A secs=() mem=()
  for r in $(seq "$reps"); do
    for a in "${allocs[@]}"; do
      out="$tmp/$p.$a.out"
      LD_PRELOAD="${pre[$a]}" /usr/bin/time -o "$tmp/time" -f "%e %M" sh -c "${cmd[$p]}" >"$out" 2>/dev/null
      read -r e m <"$tmp/time"
      secs[$a]+="$e "
      mem[$a]+="$m "
      if ! cmp -s "$out" "$tmp/$p.glibc.out"; then echo "run_shim.sh: $p under $a: output differs" >&2; fi
    done
  done
  row="| $p |"
  for a in "${allocs[@]}"; do
    s=$(tr ' ' '\n' <<<"${secs[$a]}" | grep . | median)
    m=$(tr ' ' '\n' <<<"${mem[$a]}" | grep . | median)
    row+=" $(printf '%.2f s, %.0f MB' "$s" "$(echo "$m / 1024" | bc -l)") |"
  done
  echo "$row"
  unset secs mem
done

if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
  row="| redis-server (redis-benchmark, 100k requests x 4 tests) |"
  for a in "${allocs[@]}"; do
    ts=() ms=()
    for r in $(seq "$reps"); do
      # A server that does not answer (its random port taken, say) is stopped and started again on
      # another port: redis-benchmark would otherwise retry its connection for ever.
      up=0
      for attempt in 1 2 3; do
        port=$((30000 + RANDOM % 20000))
        LD_PRELOAD="${pre[$a]}" /usr/bin/time -o "$tmp/rtime" -f "%e %M" redis-server --port $port --save '' \
          --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
        srv=$!
        for i in $(seq 100); do redis-cli -p $port ping >/dev/null 2>&1 && { up=1; break; }; sleep 0.1; done
        [ "$up" -eq 1 ] && break
        echo "run_shim.sh: redis-server under $a did not answer on port $port: $(tail -1 "$tmp/redis.log")" >&2
        kill $srv 2>/dev/null || true
        wait $srv 2>/dev/null || true
      done
      [ "$up" -eq 1 ] || { echo "run_shim.sh: redis-server under $a never answered" >&2; exit 1; }
      start=$(date +%s.%N)
      timeout 600 redis-benchmark -p $port -q -n 100000 -c 50 -d 100 -r 10000 -t set,get,lpush,lpop >/dev/null
      end=$(date +%s.%N)
      redis-cli -p $port shutdown nosave >/dev/null 2>&1 || true
      wait $srv || true
      read -r _ m <"$tmp/rtime"
      ts+=("$(echo "$end - $start" | bc -l)")
      ms+=("$m")
    done
    s=$(printf '%s\n' "${ts[@]}" | median)
    m=$(printf '%s\n' "${ms[@]}" | median)
    row+=" $(printf '%.2f s, %.0f MB' "$s" "$(echo "$m / 1024" | bc -l)") |"
  done
  echo "$row"
fi

# The allocator benchmark's workloads through plain malloc/free (bench/bench_malloc: bench_alloc.c
# with the process's malloc as its only allocator), each allocator preloaded as above; ns per
# operation (one malloc plus one free), median of REPS processes.
bm="$build/bench/bench_malloc"
if [ -x "$bm" ]; then
  echo
  echo "| workload (bench_malloc, ns per malloc+free) | $(printf '%s | ' "${allocs[@]}")"
  echo "|---|$(printf -- '---:|%.0s' "${allocs[@]}")"
  for r in $(seq "$reps"); do
    for a in "${allocs[@]}"; do
      LD_PRELOAD="${pre[$a]}" "$bm" --benchmark_min_time=0.3 --benchmark_format=json \
        >"$tmp/bm.$a.$r.json" 2>/dev/null || echo "run_shim.sh: bench_malloc under $a failed" >&2
    done
  done
  "$py" - "$tmp" "$reps" "${allocs[@]}" <<'PY'
import json, statistics, sys
tmp, reps, allocs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
ns = {}
for a in allocs:
    for r in range(1, reps + 1):
        try:
            with open("%s/bm.%s.%d.json" % (tmp, a, r)) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        for b in data.get("benchmarks", []):
            if "ns_per_op" in b:
                ns.setdefault(b["name"].rsplit("/", 1)[0], {}).setdefault(a, []).append(b["ns_per_op"])
for w, per in ns.items():
    print("| %s | %s |" % (w, " | ".join("%.1f" % statistics.median(per[a]) if a in per else "-" for a in allocs)))
PY
else
  echo "run_shim.sh: $bm not built (meson -Dbench=true): the workloads through malloc are skipped" >&2
fi
