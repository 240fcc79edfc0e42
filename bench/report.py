#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Runs the allocator benchmark (or reads its JSON output) and reports it.

Prints a table of ns per operation (one allocation plus one free, the counter ns_per_op of
bench_alloc) for every workload x allocator, and the ratio of shmdict's time to each baseline's.
With --docs it also rewrites the allocator section of docs/bench.md (between the markers
<!-- bench:alloc:begin --> and <!-- bench:alloc:end -->, leaving the rest of the file alone) and
draws docs/img/bench_alloc.png.

Examples (from the repository root):
  bench/report.py --bin build/bench/bench_alloc --min-time 0.1        # quick look
  bench/report.py --bin build/bench/bench_alloc --repetitions 3 --docs # what docs/bench.md shows
  bench/report.py --json results.json --docs                          # from a saved run
"""

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile

WORKLOADS = ["pair/16", "pair/64", "pair/256", "churn", "xthread", "bulk"]
ALLOCATORS = ["shmdict", "glibc", "mimalloc", "jemalloc", "boost_ipc"]
BASELINES = ALLOCATORS[1:]
GOAL_WORKLOADS = ["pair/16", "pair/64", "pair/256", "churn"]
GOAL_FACTOR = 3.0  # issue 2: pair/* and churn at least 3x faster than boost_ipc
BEGIN = "<!-- bench:alloc:begin -->"
END = "<!-- bench:alloc:end -->"

DOC_HEADER = """# Benchmarks

Measured results of shmdict's benchmarks. Each section below is written by a script between
`<!-- bench:NAME:begin -->` and `<!-- bench:NAME:end -->` markers; the scripts replace their own
section and leave the rest of this file alone, so text outside the markers is kept.

"""


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def run_bench(args):
    """Runs the binary; the console output goes to the terminal, the JSON to a temporary file."""
    load = loadavg()
    if load is not None and load > 0.5:
        print("report.py: warning: load average %.2f -- other processes are running; the numbers "
              "(xthread above all) will be noisy" % load, file=sys.stderr)
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
    if load is not None:
        data.setdefault("context", {})["loadavg_at_start"] = "%.2f" % load
    return data, cmd


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


def fmt_ns(v):
    if v is None:
        return "-"
    if isinstance(v, str):
        return "error"
    return "%.1f" % v if v < 1000 else "%.0f" % v


def num(v):
    return v if isinstance(v, float) else None


def tables(res):
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
        s = num(res.get((w, "shmdict")))
        cells = []
        for b in BASELINES:
            v = num(res.get((w, b)))
            cells.append("%.2f" % (s / v) if s and v else "-")
        lines.append("| %s | %s |" % (w, " | ".join(cells)))
    ratio_table = "\n".join(lines)

    goal = []
    met_all = True
    for w in GOAL_WORKLOADS:
        s, b = num(res.get((w, "shmdict"))), num(res.get((w, "boost_ipc")))
        if s and b:
            f = b / s
            ok = f >= GOAL_FACTOR
            met_all &= ok
            goal.append("- `%s`: boost_ipc / shmdict = %.2fx (%s)" %
                        (w, f, "met" if ok else "missed by %.2fx" % (GOAL_FACTOR / f)))
        else:
            met_all = False
            goal.append("- `%s`: not measured" % w)
    return ns_table, ratio_table, goal, met_all


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
    info["loadavg"] = ctx.get("loadavg_at_start")
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


def section(res, data, args, cmdline):
    ns_table, ratio_table, goal, met_all = tables(res)
    m = machine_info(data, args.build_dir)
    img_rel = os.path.relpath(args.img, os.path.dirname(os.path.abspath(args.docs_file)))
    how = "bench/run.sh" if cmdline is None else " ".join(shlex.quote(c) for c in cmdline)
    out = [BEGIN,
           "## Allocator (`bench_alloc`)",
           "",
           "_Written by `bench/report.py`; do not edit between the markers._",
           "",
           "Nanoseconds per operation (one allocation plus one free, with one 8-byte write to",
           "the object), %s; lower is better. " %
           ("wall time of the timed region" if args.metric == "ns_per_op" else
            "CPU time of the benchmark's thread in the timed region (xthread: the producer only)")
           + ("Median of %d repetitions." % args.repetitions if args.repetitions > 1
              else "One run per benchmark."),
           "",
           ns_table,
           "",
           "Ratio of shmdict's time to each baseline's (below 1.00 shmdict is faster):",
           "",
           ratio_table,
           "",
           "Goal (issue 2): `pair/*` and `churn` at least %gx faster than boost_ipc -- %s." %
           (GOAL_FACTOR, "**met**" if met_all else "**not met**"),
           "",
           *goal,
           "",
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
           "- run %s%s" % (m["date"], "; load average at start %s" % m["loadavg"]
                            if m.get("loadavg") else ""),
           "",
           "Reproduce: `scripts/setup.sh && bench/run.sh` (builds in `build/`, runs with the",
           "options below and rewrites this section); `bench/run.sh --quick` only prints the",
           "table. This run:",
           "",
           "```",
           how,
           "```",
           END]
    return "\n".join(out) + "\n"


def update_docs(path, text):
    old = ""
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
    if BEGIN in old and END in old:
        a = old.index(BEGIN)
        b = old.index(END) + len(END)
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
    p.add_argument("--repetitions", type=int, default=1, help="repetitions; the median is used")
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
            data = json.load(f)
        cmdline = None
        for b in data.get("benchmarks", []):
            if b.get("run_type") == "aggregate":
                args.repetitions = max(args.repetitions, int(b.get("repetitions", 1)))
    else:
        data, cmd = run_bench(args)
        cmdline = [os.path.relpath(cmd[0], root)] + [c for c in cmd[1:]
                                                     if not c.startswith("--benchmark_out")]
    if args.save_json:
        with open(args.save_json, "w") as f:
            json.dump(data, f, indent=1)

    res = collect(data, args.metric)
    if not res:
        sys.exit("report.py: no results")
    ns_table, ratio_table, goal, met_all = tables(res)
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
    errors = {k: v for k, v in res.items() if isinstance(v, str)}
    for (w, a), msg in sorted(errors.items()):
        print("%s/%s: %s" % (w, a, msg))

    if args.docs:
        plot(res, args.img)
        update_docs(args.docs_file, section(res, data, args, cmdline))
        print("\nwrote %s and %s" % (os.path.relpath(args.docs_file), os.path.relpath(args.img)))


if __name__ == "__main__":
    main()
