#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Runs redis-benchmark against redis-server and shmdict-server in the same run, and reports it.

For each round (--rounds, default 3) and each test of --tests (default set,get,incr,lpush,hset,zadd)
it runs `redis-benchmark -t TEST -P 16 -c 50 -n N -d 32 --csv` against a private redis-server,
shmdict-server with one worker and shmdict-server with two workers, one after the other
(interleaved, so a change in the machine's load hits all three alike), and records requests per
second, p50 / p99 latency, the server's CPU time per request (user + system of redis-server, or of
the shmdict workers, from /proc) and the load average at that moment. The figure compared is the
median over the rounds. With --docs it rewrites the server section of docs/bench.md (between
<!-- bench:server:begin --> and <!-- bench:server:end -->) and draws docs/img/bench_server.png.

Examples (from the repository root, after building):
  bench/report_server.py --server build/server/shmdict-server --rounds 1 -n 200000     # quick look
  bench/report_server.py --server build/server/shmdict-server --docs                    # docs/bench.md
  bench/report_server.py --json out.json ... ; bench/report_server.py --from-json out.json --docs
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402  (update_docs)

BEGIN = "<!-- bench:server:begin -->"
END = "<!-- bench:server:end -->"
SYSTEMS = ["redis", "shmdict_1", "shmdict_2"]
LABELS = {"redis": "redis-server", "shmdict_1": "shmdict-server, 1 worker", "shmdict_2": "shmdict-server, 2 workers"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def cpu_seconds(pids):
    tck = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                parts = f.read().rsplit(")", 1)[1].split()
            total += (int(parts[11]) + int(parts[12])) / tck
        except (OSError, IndexError, ValueError):
            pass
    return total


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def bench_one(port, test, n, pids):
    c0 = cpu_seconds(pids)
    la = loadavg()
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", test, "-P", "16", "-c", "50", "-n", str(n),
                          "-d", "32", "--csv"], capture_output=True, text=True, check=True).stdout
    c1 = cpu_seconds(pids)
    rows = [l for l in out.replace("\r", "\n").splitlines() if l.startswith('"') and not l.startswith('"test"')]
    f = [x.strip('"') for x in rows[-1].split(",")]
    return {"rps": float(f[1]), "p50": float(f[4]), "p99": float(f[6]), "cpu_us": (c1 - c0) * 1e6 / n,
            "load": la}


def run(args):
    d = tempfile.mkdtemp(prefix="shmdict-bench-", dir="/dev/shm")
    procs = []
    try:
        ports = {s: free_port() for s in SYSTEMS}
        r = subprocess.Popen(["redis-server", "--port", str(ports["redis"]), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", d], stdout=subprocess.DEVNULL)
        procs.append(r)
        servers = {}
        for s, w in (("shmdict_1", 1), ("shmdict_2", 2)):
            p = subprocess.Popen([args.server, "--dir", d, "--store", s, "--port", str(ports[s]), "--processes",
                                  str(w)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            servers[s] = p
        for s in SYSTEMS:
            if not wait_port(ports[s]):
                sys.exit("report_server.py: %s did not start" % s)
        time.sleep(0.5)
        pids = {"redis": [r.pid]}
        for s, p in servers.items():
            pids[s] = children(p.pid)
        res = {"runs": [], "context": context(args)}
        for rnd in range(args.rounds):
            for t in args.tests.split(","):
                for s in SYSTEMS:
                    m = bench_one(ports[s], t, args.n, pids[s])
                    m.update({"round": rnd, "test": t.upper(), "system": s})
                    res["runs"].append(m)
                    print("round %d %-6s %-10s %9.0f rps  p99 %6.3f ms  %5.2f us CPU/req  load %.2f" %
                          (rnd + 1, t.upper(), s, m["rps"], m["p99"], m["cpu_us"], m["load"]), flush=True)
        return res
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(d, ignore_errors=True)


def context(args):
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), model)
    except OSError:
        pass
    ver = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
    return {"cpus": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "redis": next((v.split("=")[1] for v in ver if v.startswith("v=")), "?"),
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "n": args.n, "rounds": args.rounds,
            "server": args.server}


def medians(res):
    out = {}
    for m in res["runs"]:
        out.setdefault((m["test"], m["system"]), []).append(m)
    med = {}
    for k, ms in out.items():
        med[k] = {f: statistics.median(x[f] for x in ms) for f in ("rps", "p50", "p99", "cpu_us", "load")}
        med[k]["min_rps"] = min(x["rps"] for x in ms)
        med[k]["max_rps"] = max(x["rps"] for x in ms)
    return med


def tests_of(res):
    seen = []
    for m in res["runs"]:
        if m["test"] not in seen:
            seen.append(m["test"])
    return seen


def table(res):
    med = medians(res)
    lines = ["| test | redis-server rps | 1 worker rps | ratio | 2 workers rps | ratio | p99 ms redis / 1w / 2w "
             "| server CPU us/req redis / 1w / 2w | load |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in tests_of(res):
        r, a, b = med[(t, "redis")], med[(t, "shmdict_1")], med[(t, "shmdict_2")]
        lines.append("| %s | %.0f | %.0f | %.2f | %.0f | %.2f | %.2f / %.2f / %.2f | %.2f / %.2f / %.2f | %.1f |" % (
            t, r["rps"], a["rps"], a["rps"] / r["rps"], b["rps"], b["rps"] / r["rps"], r["p99"], a["p99"], b["p99"],
            r["cpu_us"], a["cpu_us"], b["cpu_us"], statistics.mean([r["load"], a["load"], b["load"]])))
    return "\n".join(lines)


def goals(res):
    med = medians(res)
    out = []
    ts = tests_of(res)
    rate_ok = [t for t in ts if med[(t, "shmdict_1")]["rps"] >= med[(t, "redis")]["rps"]]
    p99_ok = [t for t in ts if med[(t, "shmdict_1")]["p99"] <= med[(t, "redis")]["p99"]]
    out.append("- **one worker >= 1.0x redis-server's requests/s on every test**: %d of %d tests (%s)%s." % (
        len(rate_ok), len(ts), ", ".join("%s %.2fx" % (t, med[(t, "shmdict_1")]["rps"] / med[(t, "redis")]["rps"])
                                         for t in ts),
        " -- met" if len(rate_ok) == len(ts) else " -- **not met on every test**"))
    out.append("- **p99 latency <= redis-server's**: %d of %d tests%s." % (
        len(p99_ok), len(ts), " -- met" if len(p99_ok) == len(ts) else " -- **not met on every test**"))
    two = ["%s %.2fx" % (t, med[(t, "shmdict_2")]["rps"] / med[(t, "shmdict_1")]["rps"]) for t in ts]
    out.append("- **2 workers vs 1** (the issue asks >= 1.5x when the clients run on other cores; here the "
               "benchmark client shares the 2 CPUs with the workers): %s." % ", ".join(two))
    return out


def plot(res, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report_server.py: matplotlib is not installed, no plot written", file=sys.stderr)
        return False
    med = medians(res)
    ts = tests_of(res)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(SYSTEMS)
    for i, s in enumerate(SYSTEMS):
        xs = [j + (i - 1) * width for j in range(len(ts))]
        ax1.bar(xs, [med[(t, s)]["rps"] / 1000 for t in ts], width, label=LABELS[s],
                yerr=[[(med[(t, s)]["rps"] - med[(t, s)]["min_rps"]) / 1000 for t in ts],
                      [(med[(t, s)]["max_rps"] - med[(t, s)]["rps"]) / 1000 for t in ts]], capsize=2)
        ax2.bar(xs, [med[(t, s)]["cpu_us"] for t in ts], width, label=LABELS[s])
    for ax in (ax1, ax2):
        ax.set_xticks(range(len(ts)))
        ax.set_xticklabels(ts)
        ax.grid(axis="y", alpha=0.3)
    ax1.set_ylabel("thousand requests/s (median, min-max bars)")
    ax1.set_title("redis-benchmark -P 16 -c 50 (higher is better)")
    ax1.legend(fontsize="small", loc="lower left")
    ax2.set_ylabel("server CPU microseconds per request")
    ax2.set_title("Server CPU per request (lower is better)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def section(res, args, img_rel):
    c = res["context"]
    loads = [m["load"] for m in res["runs"]]
    lines = [BEGIN, "## The server (`redis-benchmark` against `shmdict-server` and `redis-server`)", "",
             "_Written by `bench/report_server.py`; do not edit between the markers._", "",
             "`redis-benchmark -t TEST -P 16 -c 50 -n %d -d 32` against a private redis-server %s, shmdict-server "
             "with one worker and with two workers (`--processes 2`), run one after the other for each test and "
             "round (%d rounds, interleaved, so the machine's load falls on all three alike); medians over the "
             "rounds. Server CPU is user + system time of redis-server, or of the shmdict workers, per request. "
             "The benchmark client runs on the same machine and takes about one CPU of the two." % (
                 c["n"], c["redis"], c["rounds"]), "",
             table(res), "", "![redis-benchmark](%s)" % img_rel, "", "### Goals (issue 16)", ""]
    lines += goals(res)
    lines += ["", "Machine: %s CPUs, %s; kernel %s; run %s; load average %.1f .. %.1f during the run (a shared "
              "machine: other jobs ran at the same time, so requests/s vary by 20-40%% between rounds; the CPU time "
              "per request varies less)." % (c["cpus"], c["cpu"], c["kernel"], c["date"], min(loads), max(loads)), "",
              "Reproduce: `bench/run_server.sh` (about %d minutes); `bench/run_server.sh --quick` prints a short "
              "run only." % max(1, round(len(res["runs"]) * c["n"] / 250000 / 60)), END]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="build/server/shmdict-server")
    ap.add_argument("--tests", default="set,get,incr,lpush,hset,zadd")
    ap.add_argument("-n", type=int, default=1000000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--docs", action="store_true")
    ap.add_argument("--docs-file", default="docs/bench.md")
    ap.add_argument("--img", default="docs/img/bench_server.png")
    ap.add_argument("--json")
    ap.add_argument("--from-json")
    args = ap.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            res = json.load(f)
    else:
        res = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    print(table(res))
    print("\n".join(goals(res)))
    if args.docs:
        plot(res, args.img)
        img_rel = os.path.relpath(args.img, os.path.dirname(os.path.abspath(args.docs_file)))
        report.update_docs(args.docs_file, section(res, args, img_rel), BEGIN, END)


if __name__ == "__main__":
    main()
