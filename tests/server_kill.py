#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The kill test of shmdict-server: clients write while workers are SIGKILLed.

Starts shmdict-server (--processes 2 by default) on a free loopback port with a private store
directory under /dev/shm, runs --clients client threads that SET unique keys, INCR a counter and
RPUSH numbered elements, each recording every write the server acknowledged (and every attempt
that got no answer), while this script SIGKILLs a random worker every --interval seconds until
--kills workers died. Clients reconnect after each broken connection (to whichever worker the
kernel gives them). Then it checks, through a fresh connection and after stopping the server with
`shmdict check`, that:
  - every acknowledged SET is there with its value,
  - each counter is at least its acknowledged INCRs and at most its attempts,
  - each list holds every acknowledged element, in push order (unacknowledged ones may be there
    too: a worker killed after its commit and before its reply),
  - the store is consistent (shmdict check).
Prints one summary line; exits 0 when nothing acknowledged was lost. Uses only the standard
library (RESP over plain sockets), so it runs wherever python3 does.

Usage: server_kill.py --server BIN --shmdict BIN [--kills 15] [--interval 0.5] [--processes 2]
                      [--clients 4]
"""
import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Conn:
    """A minimal RESP2 client: one request, one reply, raises OSError on a broken connection."""

    def __init__(self, port, timeout=3.0):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def _line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise ConnectionError("closed")
            self.buf += d
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                d = self.s.recv(65536)
                if not d:
                    raise ConnectionError("closed")
                self.buf += d
            v, self.buf = self.buf[:n], self.buf[n + 2:]
            return v.decode()
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RuntimeError("bad reply %r" % line)

    def call(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)
        return self._reply()


def connect(port, stop):
    while not stop.is_set():
        try:
            return Conn(port)
        except OSError:
            time.sleep(0.02)
    return None


class Client(threading.Thread):
    def __init__(self, n, port, stop):
        super().__init__(daemon=True)
        self.n, self.port, self.stop = n, port, stop
        self.sets = {}          # key -> value, acknowledged
        self.incr_acked = 0
        self.incr_tried = 0
        self.pushed = []        # acknowledged RPUSH elements, in order
        self.reconnects = 0
        self.errors = []

    def run(self):
        rng = random.Random(self.n)
        c = connect(self.port, self.stop)
        i = 0
        while not self.stop.is_set() and c is not None:
            i += 1
            op = rng.randrange(3)
            try:
                if op == 0:
                    k = "c%d:s%d" % (self.n, i)
                    if c.call("SET", k, i) == "OK":
                        self.sets[k] = str(i)
                elif op == 1:
                    self.incr_tried += 1
                    c.call("INCR", "c%d:n" % self.n)
                    self.incr_acked += 1
                else:
                    c.call("RPUSH", "c%d:l" % self.n, i)
                    self.pushed.append(str(i))
            except (OSError, ConnectionError):
                c.close()
                self.reconnects += 1
                c = connect(self.port, self.stop)
            except RuntimeError as e:  # an error reply: a bug, report it
                self.errors.append(str(e))
        if c:
            c.close()


def workers_of(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--shmdict", required=True)
    ap.add_argument("--kills", type=int, default=15)
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--clients", type=int, default=4)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="shmdict-kill-", dir="/dev/shm")
    port = free_port()
    log = open(os.path.join(d, "server.log"), "w")
    srv = subprocess.Popen([a.server, "--dir", d, "--store", "s", "--port", str(port), "--processes",
                            str(a.processes)], stdout=log, stderr=subprocess.STDOUT)
    failures = []
    try:
        for _ in range(200):
            try:
                Conn(port).close()
                break
            except OSError:
                time.sleep(0.025)
        time.sleep(0.3)
        stop = threading.Event()
        clients = [Client(n, port, stop) for n in range(a.clients)]
        for c in clients:
            c.start()
        rng = random.Random(12345)
        kills = 0
        t0 = time.time()
        while kills < a.kills:
            time.sleep(a.interval)
            ws = workers_of(srv.pid)
            if len(ws) < a.processes:
                continue  # a restart is in progress
            os.kill(rng.choice(ws), signal.SIGKILL)
            kills += 1
        time.sleep(0.5)
        stop.set()
        for c in clients:
            c.join(10)
        elapsed = time.time() - t0
        # verify through a fresh connection
        v = connect(port, threading.Event())
        acked = lost = 0
        for c in clients:
            failures += ["client %d got an error reply: %s" % (c.n, e) for e in c.errors[:3]]
            for k, val in c.sets.items():
                acked += 1
                got = v.call("GET", k)
                if got != val:
                    lost += 1
                    if len(failures) < 10:
                        failures.append("SET %s=%s acknowledged, now %r" % (k, val, got))
            n = int(v.call("GET", "c%d:n" % c.n) or 0)
            acked += c.incr_acked
            if n < c.incr_acked or n > c.incr_tried:
                lost += max(0, c.incr_acked - n)
                failures.append("counter c%d:n = %d, acknowledged %d, tried %d" % (c.n, n, c.incr_acked, c.incr_tried))
            lst = v.call("LRANGE", "c%d:l" % c.n, 0, -1) or []
            acked += len(c.pushed)
            # every acknowledged element, in order (a subsequence of the list)
            it = iter(lst)
            missing = [e for e in c.pushed if not any(x == e for x in it)]
            if missing:
                lost += len(missing)
                failures.append("list c%d:l misses %d acknowledged elements (first %s)" % (c.n, len(missing), missing[0]))
        v.close()
        reconnects = sum(c.reconnects for c in clients)
        srv.send_signal(signal.SIGTERM)
        srv.wait(30)
        chk = subprocess.run([a.shmdict, "-d", d, "check", "s"], capture_output=True, text=True)
        if chk.returncode != 0:
            failures.append("shmdict check failed: %s %s" % (chk.stdout[-500:], chk.stderr[-500:]))
        if reconnects == 0:
            failures.append("no client ever reconnected: the kills did not hit them")
        print("server_kill: %d workers killed in %.1f s, %d acknowledged writes, %d lost, %d reconnects, "
              "shmdict check %s" % (kills, elapsed, acked, lost, reconnects, "ok" if chk.returncode == 0 else "FAILED"))
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
        log.close()
        # the line scripts/test.sh counts, as Criterion prints it
        print("[====] Synthesis: Tested: 1 | Passing: %d | Failing: %d | Crashing: 0" % (0 if failures else 1,
                                                                                       1 if failures else 0))
        if failures:
            print("\n".join(failures))
            sys.stdout.flush()
            with open(os.path.join(d, "server.log")) as f:
                print("server log (tail):\n" + "".join(f.readlines()[-20:]))
        shutil.rmtree(d, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
