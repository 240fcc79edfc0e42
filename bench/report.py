#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Runs the allocator benchmark (or reads its JSON output) and reports it.

Prints a table of ns per operation (one allocation plus one free, the counter ns_per_op of
bench_alloc) for every workload x allocator, and the ratio of shmdict's time to each baseline's.
With --docs it also rewrites the allocator section of docs/bench.md (between the markers
<!-- bench:alloc:begin --> and <!-- bench:alloc:end -->, leaving the rest of the file alone) and
draws docs/img/bench_alloc.png.

Examples (from the repository root):
  bench/report.py --min-time 0.05 --runs 3             # bench/run.sh --quick
  bench/report.py --min-time 0.3 --runs 5 --docs       # bench/run.sh: what docs/bench.md shows
  bench/report.py --json saved.json --docs             # from a run saved with --save-json
  bench/report.py --filter '^pair/' -- --benchmark_repetitions=3   # more flags for the binary
"""

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

WORKLOADS = ["pair/16", "pair/64", "pair/256", "churn", "xthread", "bulk"]
ALLOCATORS = ["shmdict", "glibc", "mimalloc", "jemalloc", "boost_ipc"]
BASELINES = ALLOCATORS[1:]
GOAL_WORKLOADS = ["pair/16", "pair/64", "pair/256", "churn"]
GOAL_FACTOR = 3.0  # issue 2: pair/* and churn at least 3x faster than boost_ipc
# Issue 5 (thread heaps): at most this many times mimalloc's time, and every one of them at least
# GOAL5_BOOST times faster than boost_ipc.
GOAL5_MIMALLOC = [("pair/16", 1.5), ("pair/64", 1.5), ("pair/256", 1.5), ("churn", 1.2), ("xthread", 2.0)]
GOAL5_BOOST = 10.0
BEGIN = "<!-- bench:alloc:begin -->"
END = "<!-- bench:alloc:end -->"

DOC_HEADER = """# Benchmarks

Measured results of shmdict's benchmarks. Each section below is written by a script between
`<!-- bench:NAME:begin -->` and `<!-- bench:NAME:end -->` markers; the scripts replace their own
section and leave the rest of this file alone, so text outside the markers is kept.

"""


def busy_cpus(seconds=0.5):
    """CPUs kept busy by other processes right now: /proc/stat sampled over `seconds` (the load
    average would count our own previous run)."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return idle, sum(v[:8])
    try:
        i0, t0 = sample()
        time.sleep(seconds)
        i1, t1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if t1 <= t0:
        return None
    return (1.0 - (i1 - i0) / (t1 - t0)) * (os.cpu_count() or 1)


def run_bench(args):
    """Runs the binary; the console output goes to the terminal, the JSON to a temporary file."""
    load = busy_cpus()
    if load is not None and load > 0.2:
        print("report.py: warning: other processes keep %.2f CPUs busy; the numbers (xthread "
              "above all) will be noisy" % load, file=sys.stderr)
    fd, out = tempfile.mkstemp(prefix="bench_alloc-", suffix=".json")
    os.close(fd)
    cmd = [args.bin, "--benchmark_out=" + out, "--benchmark_out_format=json"]
    if args.min_time is not None:
        cmd.append("--benchmark_min_time=%g" % args.min_time)
    if args.repetitions > 1:
        cmd += ["--benchmark_repetitions=%d" % args.repetitions,
                "--benchmark_report_aggregates_only=true"]
    if args.filter:
        cmd.append("--benchmark_filter=" + args.filter)
    cmd += args.bench_args
    print("+ " + " ".join(shlex.quote(c) for c in cmd), file=sys.stderr, flush=True)
    rc = subprocess.call(cmd, stdout=sys.stderr)
    try:
        with open(out) as f:
            data = json.load(f)
    finally:
        os.unlink(out)
    if rc != 0:
        sys.exit("report.py: %s exited with status %d" % (args.bin, rc))
    ctx = data.setdefault("context", {})
    if load is not None:
        ctx["busy_cpus_at_start"] = "%.2f" % load
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ctx["command"] = " ".join(shlex.quote(c) for c in
                              [os.path.relpath(cmd[0], root)] +
                              [c for c in cmd[1:] if not c.startswith("--benchmark_out")])
    return data


def collect(data, metric="ns_per_op"):
    """Returns {(workload, allocator): the metric or an error string}. With repetitions the median
    is used, otherwise the mean of the runs of a name."""
    runs, medians = {}, {}
    for b in data.get("benchmarks", []):
        name = b.get("run_name", b["name"])
        m = re.match(r"^(.*)/([a-z_]+)$", name)
        if not m:
            continue
        key = (m.group(1), m.group(2))
        if b.get("error_occurred"):
            runs.setdefault(key, []).append("error: " + b.get("error_message", "?"))
            continue
        v = b.get(metric)
        if v is None:
            continue
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[key] = float(v)
        else:
            runs.setdefault(key, []).append(float(v))
    result = {}
    for key, vals in runs.items():
        nums = [v for v in vals if not isinstance(v, str)]
        result[key] = sum(nums) / len(nums) if nums else vals[0]
    result.update(medians)
    return result


def combine(datas, metric):
    """Median over processes of each benchmark's figure, the spread (max / min), and for every
    workload and baseline the per-process ratios shmdict / baseline. Ratios are taken inside each
    process and then combined: a process's state (where the hypervisor put its CPUs, how its heap
    and code landed) moves all allocators alike, so the ratio is steadier than either figure."""
    per, ratios = {}, {}
    for data in datas:
        one = collect(data, metric)
        for key, v in one.items():
            per.setdefault(key, []).append(v)
        for w in WORKLOADS:
            s = num(one.get((w, "shmdict")))
            for b in BASELINES:
                v = num(one.get((w, b)))
                if s and v:
                    ratios.setdefault((w, b), []).append(s / v)
    res, spread = {}, {}
    for key, vals in per.items():
        nums = [v for v in vals if not isinstance(v, str)]
        if not nums:
            res[key] = vals[0]
            continue
        res[key] = statistics.median(nums)
        if len(nums) > 1 and min(nums) > 0:
            spread[key] = max(nums) / min(nums)
    return res, spread, ratios


SPACE = [("meta_pct", "allocator metadata (page maps, class tables) / store size", 2.0),
         ("all_meta_pct", "all metadata (segment headers, manifest, lanes, allocator) / store size",
          None),
         ("frag_pct", "internal fragmentation: (usable - requested) / usable bytes of the live set",
          12.5),
         ("slab_free_pct", "free slots inside slabs / slab bytes", None)]


def space(datas):
    """shmdict's space counters from churn/shmdict (median over processes): {name: percent}."""
    vals = {}
    for data in datas:
        for b in data.get("benchmarks", []):
            if b.get("run_name", b["name"]) != "churn/shmdict" or b.get("error_occurred"):
                continue
            if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
                continue
            for name, _, _ in SPACE:
                if name in b:
                    vals.setdefault(name, []).append(float(b[name]))
    return {k: statistics.median(v) for k, v in vals.items()}


def space_lines(sp, ctx=None):
    out = []
    worst = (ctx or {}).get("shmdict_worst_class_waste_above_128")
    if worst:
        out.append("- worst internal fragmentation of one request of 129 B to 8 KiB (size "
                   "classes): %s; below 128 B classes are 16 B apart" % worst)
    for name, what, goal in SPACE:
        if name not in sp:
            continue
        line = "- %s: %.2f%%" % (what, sp[name])
        if goal is not None:
            line += " (goal at most %g%%: %s)" % (goal, "met" if sp[name] <= goal else "missed")
        out.append(line)
    return out


def spread_table(spread):
    workloads = [w for w in WORKLOADS if any((w, a) in spread for a in ALLOCATORS)]
    lines = ["| workload | " + " | ".join(ALLOCATORS) + " |",
             "|---|" + "---:|" * len(ALLOCATORS)]
    for w in workloads:
        lines.append("| %s | %s |" % (w, " | ".join(
            "%.2f" % spread[(w, a)] if (w, a) in spread else "-" for a in ALLOCATORS)))
    return "\n".join(lines)


def fmt_ns(v):
    if v is None:
        return "-"
    if isinstance(v, str):
        return "error"
    return "%.1f" % v if v < 1000 else "%.0f" % v


def num(v):
    return v if isinstance(v, float) else None


def tables(res, ratios):
    """The two Markdown tables (ns/op, ratios) and the goal lines."""
    workloads = [w for w in WORKLOADS if any((w, a) in res for a in ALLOCATORS)]
    lines = ["| workload | " + " | ".join(ALLOCATORS) + " |",
             "|---|" + "---:|" * len(ALLOCATORS)]
    for w in workloads:
        lines.append("| %s | %s |" % (w, " | ".join(fmt_ns(res.get((w, a))) for a in ALLOCATORS)))
    ns_table = "\n".join(lines)

    lines = ["| workload | " + " | ".join("vs " + b for b in BASELINES) + " |",
             "|---|" + "---:|" * len(BASELINES)]
    for w in workloads:
        cells = []
        for b in BASELINES:
            r = ratios.get((w, b))
            cells.append("%.2f" % statistics.median(r) if r else "-")
        lines.append("| %s | %s |" % (w, " | ".join(cells)))
    ratio_table = "\n".join(lines)

    goal = []
    met_all = True
    for w in GOAL_WORKLOADS:
        r = ratios.get((w, "boost_ipc"))
        if r:
            factors = sorted(1.0 / x for x in r)
            f = statistics.median(factors)
            ok = f >= GOAL_FACTOR
            met_all &= ok
            rng = (", %.2f-%.2fx over %d processes" % (factors[0], factors[-1], len(factors))
                   if len(factors) > 1 else "")
            goal.append("- `%s`: boost_ipc / shmdict = %.2fx (%s%s)" %
                        (w, f, "met" if ok else "missed by %.2fx" % (GOAL_FACTOR / f), rng))
        else:
            met_all = False
            goal.append("- `%s`: not measured" % w)
    goal5, met5 = goals5(ratios)
    goal += ["", "Goals (issue 5, thread heaps): `pair/*` at most 1.5x mimalloc's time, `churn` at most "
             "1.2x, `xthread` at most 2x; all of them at least %gx faster than boost_ipc -- %s." %
             (GOAL5_BOOST, "**met**" if met5 else "**not met**"), ""] + goal5
    return ns_table, ratio_table, goal, met_all


def goals5(ratios):
    lines, met = [], True
    for w, limit in GOAL5_MIMALLOC:
        r, rb = ratios.get((w, "mimalloc")), ratios.get((w, "boost_ipc"))
        if not r or not rb:
            met = False
            lines.append("- `%s`: not measured" % w)
            continue
        f = statistics.median(r)
        fb = statistics.median([1.0 / x for x in rb])
        ok = f <= limit and fb >= GOAL5_BOOST
        met &= ok
        lines.append("- `%s`: shmdict / mimalloc = %.2fx (%.2f-%.2fx over %d processes; goal %gx: %s); "
                     "boost_ipc / shmdict = %.1fx (goal %gx: %s)" %
                     (w, f, min(r), max(r), len(r), limit, "met" if f <= limit else "missed",
                      fb, GOAL5_BOOST, "met" if fb >= GOAL5_BOOST else "missed"))
    return lines, met


def machine_info(data, build_dir):
    ctx = data.get("context", {})
    info = {}
    info["cpus"] = str(os.cpu_count())
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["cpu"] = model
    if ctx.get("mhz_per_cpu"):
        info["cpu"] += " (%s MHz as reported)" % ctx["mhz_per_cpu"]
    info["kernel"] = platform.release()
    cc = os.environ.get("CC", "cc")
    try:
        info["compiler"] = subprocess.run([cc, "--version"], capture_output=True, text=True,
                                          check=True).stdout.splitlines()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        info["compiler"] = cc
    info["buildtype"] = "unknown"
    try:
        with open(os.path.join(build_dir, "meson-info", "intro-buildoptions.json")) as f:
            for o in json.load(f):
                if o["name"] == "buildtype":
                    info["buildtype"] = o["value"]
    except (OSError, ValueError, KeyError):
        pass
    for k in ["process_malloc", "glibc", "mimalloc", "jemalloc", "boost", "shmdict"]:
        if k in ctx:
            info[k] = ctx[k]
    info["busy"] = ctx.get("busy_cpus_at_start")
    info["date"] = ctx.get("date", datetime.datetime.now().isoformat(timespec="seconds"))
    info["library_build_type"] = ctx.get("library_build_type", "?")
    return info


def plot(res, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report.py: matplotlib is not installed, no plot written", file=sys.stderr)
        return False
    workloads = [w for w in WORKLOADS if any(num(res.get((w, a))) for a in ALLOCATORS)]
    fig, ax = plt.subplots(figsize=(10, 4.8))
    width = 0.8 / len(ALLOCATORS)
    for i, a in enumerate(ALLOCATORS):
        xs = [j + (i - (len(ALLOCATORS) - 1) / 2) * width for j in range(len(workloads))]
        ys = [num(res.get((w, a))) or 0 for w in workloads]
        ax.bar(xs, ys, width, label=a)
    ax.set_yscale("log")
    ax.set_ylim(bottom=1)
    ax.set_xticks(range(len(workloads)))
    ax.set_xticklabels(workloads)
    ax.set_ylabel("ns per allocation + free (log scale, lower is better)")
    ax.set_title("Allocator benchmark (bench_alloc)")
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(ncol=len(ALLOCATORS), fontsize="small", loc="upper left")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def section(res, spread, ratios, sp, datas, args):
    ns_table, ratio_table, goal, met_all = tables(res, ratios)
    data = datas[0]
    m = machine_info(data, args.build_dir)
    busy = [float(d["context"]["busy_cpus_at_start"]) for d in datas
            if "busy_cpus_at_start" in d.get("context", {})]
    if busy:
        m["busy"] = "%.2f" % max(busy)
        if len(busy) > 1:
            m["busy"] += " (highest of %d runs)" % len(busy)
    img_rel = os.path.relpath(args.img, os.path.dirname(os.path.abspath(args.docs_file)))
    how = data.get("context", {}).get("command", "bench/run.sh")
    if len(datas) > 1:
        how += "    # run %d times (separate processes)" % len(datas)
    if len(datas) > 1 and args.repetitions > 1:
        how_many = ("Median over %d processes, each giving the median of %d repetitions." %
                    (len(datas), args.repetitions))
    elif len(datas) > 1:
        how_many = "Median over %d runs of the binary (separate processes)." % len(datas)
    elif args.repetitions > 1:
        how_many = "Median of %d repetitions in one process." % args.repetitions
    else:
        how_many = "One run per benchmark."
    out = [BEGIN,
           "## Allocator (`bench_alloc`)",
           "",
           "_Written by `bench/report.py`; do not edit between the markers._",
           "",
           "Nanoseconds per operation (one allocation plus one free, with one 8-byte write to",
           "the object), %s; lower is better. " %
           ("wall time of the timed region" if args.metric == "ns_per_op" else
            "CPU time of the benchmark's thread in the timed region (xthread: the producer only)")
           + how_many,
           "",
           ns_table,
           "",
           "Ratio of shmdict's time to each baseline's, taken inside each process (below 1.00",
           "shmdict is faster)%s:" % (", median over the processes" if len(datas) > 1 else ""),
           "",
           ratio_table,
           "",
           *([] if not spread else [
               "Spread between processes (slowest / fastest run of each benchmark; every process",
               "lays out its code, heap and store afresh, and single-process figures on this VM",
               "differ by this much):",
               "",
               spread_table(spread),
               ""]),
           "Goal (issue 2): `pair/*` and `churn` at least %gx faster than boost_ipc -- %s." %
           (GOAL_FACTOR, "**met**" if met_all else "**not met**"),
           "",
           *goal,
           "",
           *([] if not sp else [
               "Space (shmdict's store right after `churn` built its live set of 100 000 objects",
               "of 16-1024 B; 256 MiB store; from `shmd_stats()`):",
               "",
               *space_lines(sp, data.get("context")),
               ""]),
           "![allocator benchmark](%s)" % img_rel,
           "",
           "Machine and build:",
           "",
           "- %s CPUs, %s; kernel %s" % (m["cpus"], m["cpu"], m["kernel"]),
           "- %s, meson buildtype `%s`; google-benchmark library build: %s" %
           (m["compiler"], m["buildtype"], m["library_build_type"]),
           "- glibc %s; mimalloc %s; jemalloc %s; Boost %s; shmdict %s" %
           (m.get("glibc", "?"), m.get("mimalloc", "?"), m.get("jemalloc", "?"),
            m.get("boost", "?"), m.get("shmdict", "?")),
           "- the process's malloc (not measured by the glibc baseline): %s" %
           m.get("process_malloc", "?"),
           "- run %s%s" % (m["date"], "; CPUs kept busy by other processes at the start: %s" %
                            m["busy"] if m.get("busy") else ""),
           "",
           "Reproduce: `scripts/setup.sh && bench/run.sh` (builds in `build/`, runs with the",
           "options below and rewrites this section); `bench/run.sh --quick` (3 short runs) only",
           "prints the tables. This run:",
           "",
           "```",
           how,
           "```",
           END]
    return "\n".join(out) + "\n"


def update_docs(path, text, begin=BEGIN, end=END):
    """Replaces the section between the markers `begin` and `end` in `path` by `text` (which
    carries the markers), or appends it; also used by report_containers.py and report_kv.py."""
    old = ""
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
    if begin in old and end in old:
        a = old.index(begin)
        b = old.index(end) + len(end)
        if b < len(old) and old[b] == "\n":
            b += 1
        new = old[:a] + text + old[b:]
    else:
        if not old:
            old = DOC_HEADER
        new = old.rstrip("\n") + "\n\n" + text
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write(new)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default=os.path.join(root, "build", "bench", "bench_alloc"),
                   help="bench_alloc binary to run (default: build/bench/bench_alloc)")
    p.add_argument("--json", help="read this JSON file (from --benchmark_out) instead of running")
    p.add_argument("--save-json", help="also save the JSON results here")
    p.add_argument("--min-time", type=float, help="--benchmark_min_time, in seconds")
    p.add_argument("--repetitions", type=int, default=1,
                   help="repetitions inside one process; the median is used")
    p.add_argument("--runs", type=int, default=1,
                   help="run the binary this many times (separate processes); the median is used")
    p.add_argument("--filter", help="--benchmark_filter regular expression")
    p.add_argument("--metric", default="ns_per_op", choices=["ns_per_op", "cpu_ns_per_op"],
                   help="wall time per operation (default) or the benchmark thread's CPU time")
    p.add_argument("--docs", action="store_true", help="update docs/bench.md and the plot")
    p.add_argument("--docs-file", default=os.path.join(root, "docs", "bench.md"))
    p.add_argument("--img", default=os.path.join(root, "docs", "img", "bench_alloc.png"))
    p.add_argument("--build-dir", default=os.path.join(root, "build"),
                   help="meson build directory (for the buildtype shown in the docs)")
    p.add_argument("bench_args", nargs="*", help="more flags for the binary (after --)")
    args = p.parse_args()

    if args.json:
        with open(args.json) as f:
            loaded = json.load(f)
        datas = loaded["runs"] if "runs" in loaded else [loaded]
        for data in datas:
            for b in data.get("benchmarks", []):
                if b.get("run_type") == "aggregate":
                    args.repetitions = max(args.repetitions, int(b.get("repetitions", 1)))
    else:
        datas = []
        for i in range(max(1, args.runs)):
            if args.runs > 1:
                print("report.py: run %d of %d" % (i + 1, args.runs), file=sys.stderr)
            datas.append(run_bench(args))
    if args.save_json:
        with open(args.save_json, "w") as f:
            json.dump({"runs": datas}, f, indent=1)

    res, spread, ratios = combine(datas, args.metric)
    sp = space(datas)
    if not res:
        sys.exit("report.py: no results")
    ns_table, ratio_table, goal, met_all = tables(res, ratios)
    print()
    print("%s (allocation + free), lower is better:" %
          ("ns per operation" if args.metric == "ns_per_op" else "CPU ns per operation"))
    print(ns_table)
    print()
    print("shmdict time / baseline time (below 1.00 shmdict is faster):")
    print(ratio_table)
    print()
    print("goal: pair/* and churn at least %gx faster than boost_ipc: %s" %
          (GOAL_FACTOR, "met" if met_all else "not met"))
    print("\n".join(goal))
    if sp:
        print()
        print("shmdict space (after churn's set-up):")
        print("\n".join(space_lines(sp, datas[0].get("context"))))
    if spread:
        print()
        print("spread between processes (slowest / fastest):")
        print(spread_table(spread))
    errors = {k: v for k, v in res.items() if isinstance(v, str)}
    for (w, a), msg in sorted(errors.items()):
        print("%s/%s: %s" % (w, a, msg))

    if args.docs:
        plot(res, args.img)
        update_docs(args.docs_file, section(res, spread, ratios, sp, datas, args))
        print("\nwrote %s and %s" % (os.path.relpath(args.docs_file), os.path.relpath(args.img)))


if __name__ == "__main__":
    main()
