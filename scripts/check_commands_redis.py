#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Compares shmdict's command table (kv/commands.def) with a real redis-server 7.0.

Usage: scripts/check_commands_redis.py BUILD_DIR

Runs BUILD_DIR/tools/gen_commands_md --tsv, starts redis-server (scripts/setup.sh installs it) on
a free port in a temporary directory with persistence off, asks it COMMAND INFO and COMMAND DOCS
for every command of the table, stops it, and prints every difference in arity, key positions,
the flags shmdict knows (write, readonly, denyoom, admin, fast, movablekeys) and the group. Exits 0 when they
agree, 1 otherwise. A development check (the tests do not need a Redis); run it after editing
commands.def.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

KNOWN_FLAGS = {"write", "readonly", "denyoom", "admin", "fast", "movablekeys"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(port, *args):
    out = subprocess.run(["redis-cli", "-p", str(port), "--json", *args], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    gen = os.path.join(sys.argv[1], "tools", "gen_commands_md")
    table = []
    for line in subprocess.run([gen, "--tsv"], capture_output=True, text=True, check=True).stdout.splitlines():
        name, arity, first, last, step, flags, group = line.split("\t")
        table.append((name, int(arity), int(first), int(last), int(step), set(filter(None, flags.split(","))), group))
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="shmdict-redis-") as d:
        server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", d], stdout=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    if cli(port, "PING") == "PONG":
                        break
                except (subprocess.CalledProcessError, json.JSONDecodeError):
                    pass
                time.sleep(0.05)
            names = [t[0] for t in table]
            version = subprocess.run(["redis-cli", "-p", str(port), "INFO", "server"], capture_output=True,
                                     text=True, check=True).stdout
            info = {c[0]: c for c in cli(port, "COMMAND", "INFO", *names) if c}
            docs = cli(port, "COMMAND", "DOCS", *names)
        finally:
            server.terminate()
            server.wait()
    ver = next((l.strip() for l in version.splitlines() if l.startswith("redis_version:")), "?")
    diffs = []
    for name, arity, first, last, step, flags, group in table:
        c = info.get(name)
        if c is None:
            diffs.append(f"{name}: unknown to redis-server")
            continue
        ours = (arity, first, last, step, sorted(flags), group)
        theirs = (c[1], c[3], c[4], c[5], sorted(set(c[2]) & KNOWN_FLAGS), docs.get(name, {}).get("group"))
        if ours != theirs:
            diffs.append(f"{name}: shmdict {ours} redis {theirs}")
    for d in diffs:
        print(d)
    print(f"{len(table)} commands compared with {ver}: {len(diffs)} differences")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
