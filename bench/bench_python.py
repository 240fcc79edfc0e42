#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench_python: the cost of one GET from Python, shmdict against redis-py, measured in one run.

Starts a private redis-server (no persistence) on a loopback TCP port and on a unix socket,
loads the same keys into it and into a fresh shmdict store, then times single GETs issued one
call at a time (no pipelining: what a script doing lookups pays per lookup):

  shmdict Store.get      one C call into the store (GIL released around it)
  shmdict execute('GET') the generic command path
  redis-py TCP loopback  redis.Redis(host='127.0.0.1').get
  redis-py unix socket   redis.Redis(unix_socket_path=...).get

Each figure is the median (and the best) of REPEATS runs of CALLS calls over random keys, in ns
per call, wall clock. Prints the CPU model (lscpu) and the load average with the figures: on a
shared machine the median carries the others' load, the best run is closer to the cost itself.

  PYTHONPATH=build/python python3 bench/bench_python.py [--keys N] [--calls N] [--value-bytes N]
                                                      [--write-doc docs/bench.md]

--write-doc replaces the section between <!-- bench:python:begin --> and <!-- bench:python:end -->
of that file (appends it when absent) with this run's figures.
"""
import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

import redis
import shmdict


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def per_call_ns(get, keys, calls, repeats):
    runs = []
    for _ in range(repeats):
        seq = [random.choice(keys) for _ in range(calls)]
        t0 = time.perf_counter_ns()
        for k in seq:
            get(k)
        runs.append((time.perf_counter_ns() - t0) / calls)
    return statistics.median(runs), min(runs)


def write_doc(a, figures, load, build):
    base_med, base_best = figures[0][1]
    lines = [
        "<!-- bench:python:begin -->",
        "## Python get: shmdict against redis-py (`bench_python.py`)",
        "",
        "_Written by `bench/bench_python.py --write-doc`; do not edit between the markers._",
        "",
        "One `GET` per Python call, no pipelining, wall clock; lower is better. %d keys of %d bytes in"
        " both, random keys; redis-server %s started by the script in the same run (no persistence),"
        " redis-py %s. Median and best of %d runs (%d calls per run for redis-py, %d for shmdict)."
        % (a.keys, a.value_bytes, redis_server_version(), redis.__version__, a.repeats, a.calls,
           a.calls * 10),
        "",
        "CPU: %s, %d cores; load average during the run %.2f %.2f %.2f (the machine was shared with"
        " other jobs: the medians carry their load, most of all redis's, which needs the server"
        " process scheduled for every call). Module built in `%s`; %s."
        % (cpu_model(), os.cpu_count(), *load, os.path.basename(os.path.dirname(build)) or build,
           time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())),
        "",
        "| client | ns per get (median) | best run | / shmdict `Store.get` (median) |",
        "|---|---:|---:|---:|",
    ]
    for name, (med, best) in figures:
        lines.append("| %s | %.0f | %.0f | %.1fx |" % (name, med, best, med / base_med))
    lines += [
        "",
        "shmdict `Store.get` is **%.1fx** faster than redis-py over TCP loopback (medians; %.1fx in"
        " the best runs) and %.1fx faster than redis-py over a unix socket."
        % (figures[2][1][0] / base_med, figures[2][1][1] / base_best, figures[3][1][0] / base_med),
        "<!-- bench:python:end -->",
    ]
    text = open(a.write_doc).read()
    section = "\n".join(lines) + "\n"
    b, e = text.find("<!-- bench:python:begin -->"), text.find("<!-- bench:python:end -->")
    if b >= 0 and e > b:
        text = text[:b] + section + text[e + len("<!-- bench:python:end -->") + 1:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    open(a.write_doc, "w").write(text)


def redis_server_version():
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    for w in out.split():
        if w.startswith("v="):
            return w[2:]
    return "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=10000)
    ap.add_argument("--calls", type=int, default=20000, help="calls per run (shmdict runs 10x more)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--value-bytes", type=int, default=64)
    ap.add_argument("--write-doc", default=None)
    a = ap.parse_args()
    random.seed(20261207)
    work = tempfile.mkdtemp(prefix="bench-python-")
    port, sock = free_port(), os.path.join(work, "redis.sock")
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--unixsocket", sock, "--save", "", "--appendonly", "no",
                               "--dir", work], stdout=subprocess.DEVNULL)
    try:
        tcp = redis.Redis(host="127.0.0.1", port=port)
        for _ in range(100):
            try:
                tcp.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        unix = redis.Redis(unix_socket_path=sock)
        store = shmdict.open("bench", os.path.join(work, "shmdict"))
        keys = ["key:%08d" % i for i in range(a.keys)]
        value = os.urandom(a.value_bytes)
        pipe = tcp.pipeline(transaction=False)
        for k in keys:
            pipe.set(k, value)
            store.set(k, value)
        pipe.execute()
        assert tcp.get(keys[0]) == store.get(keys[0]) == unix.get(keys[0]) == value
        figures = [
            ("shmdict Store.get", per_call_ns(store.get, keys, a.calls * 10, a.repeats)),
            ("shmdict execute('GET')", per_call_ns(lambda k: store.execute("GET", k), keys, a.calls * 10, a.repeats)),
            ("redis-py TCP loopback", per_call_ns(tcp.get, keys, a.calls, a.repeats)),
            ("redis-py unix socket", per_call_ns(unix.get, keys, a.calls, a.repeats)),
        ]
        load = os.getloadavg()
        print("CPU: %s, %d cores online; load average %.2f %.2f %.2f" % (cpu_model(), os.cpu_count(), *load))
        print("keys %d, value %d bytes, %d calls x %d runs (shmdict x10), ns per call"
              % (a.keys, a.value_bytes, a.calls, a.repeats))
        print("  %-24s %10s %10s %10s" % ("", "median", "best", "ratio"))
        base = figures[0][1][0]
        for name, (med, best) in figures:
            print("  %-24s %10.0f %10.0f %9.1fx" % (name, med, best, med / base))
        for i, what in ((2, "TCP loopback"), (3, "unix socket")):
            print("shmdict Store.get vs redis-py %s: %.1fx faster (medians), %.1fx (best runs)"
                  % (what, figures[i][1][0] / base, figures[i][1][1] / figures[0][1][1]))
        store.close()
        if a.write_doc:
            write_doc(a, figures, load, build=os.path.dirname(shmdict._core.__file__))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
