# SPDX-License-Identifier: MIT
"""unittest tests of the Python module shmdict (python/shmdict.py + shmdict_core), run by meson:
reply types, errors, typed helpers, SCAN iteration, info and check, several processes on one
store, the GIL released during store calls, and the operator script examples/guild_report.py
against the store examples/guild_friends builds."""
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import shmdict


class StoreTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="shmdict-py-", dir="/dev/shm")
        self.s = shmdict.open("t", self.dir, first_segment_bytes=16 << 20, segment_bytes=16 << 20)

    def tearDown(self):
        self.s.close()
        shutil.rmtree(self.dir)

    def test_execute_reply_types(self):
        s = self.s
        self.assertEqual(s.execute("SET", "a", "1"), b"OK")
        self.assertEqual(s.execute("GET", "a"), b"1")
        self.assertIsNone(s.execute("GET", "missing"))
        self.assertEqual(s.execute("INCRBY", "a", 41), 42)
        self.assertEqual(s.execute("RPUSH", "l", b"x", "y", 3, 2.5), 4)
        self.assertEqual(s.execute("LRANGE", "l", 0, -1), [b"x", b"y", b"3", b"2.5"])
        self.assertEqual(s.execute("ZADD", "z", 1, "a", 2, "b"), 2)
        self.assertEqual(s.execute("ZRANGE", "z", 0, -1, "WITHSCORES"), [b"a", b"1", b"b", b"2"])
        self.assertEqual(s.execute("EXISTS", "a", "l", "nope"), 2)
        self.assertEqual(s.execute("set", "bin", b"\x00\xff\x00"), b"OK")  # case-insensitive, binary
        self.assertEqual(s.get("bin"), b"\x00\xff\x00")
        self.assertEqual(s.execute("TYPE", "a"), b"string")  # a status reply

    def test_errors(self):
        s = self.s
        s.execute("RPUSH", "l", "x")
        with self.assertRaises(shmdict.ResponseError) as cm:
            s.execute("GET", "l")
        self.assertTrue(str(cm.exception).startswith("WRONGTYPE"), str(cm.exception))
        with self.assertRaises(shmdict.ResponseError) as cm:
            s.execute("NOSUCHCOMMAND")
        self.assertIn("unknown command", str(cm.exception))
        with self.assertRaises(shmdict.ResponseError):
            s.execute("INCR", "l")
        with self.assertRaises(shmdict.ResponseError):
            s.get("l")  # the typed path says the same
        self.assertTrue(issubclass(shmdict.ResponseError, shmdict.Error))
        with self.assertRaises(shmdict.Error) as cm:
            shmdict.open("absent", self.dir, create=False)
        self.assertEqual(cm.exception.args[1:], (-15, "ENOENT"))
        with self.assertRaises(TypeError):
            s.execute("SET", "k", None)
        with self.assertRaises(TypeError):
            s.execute("SET", "k", True)
        with self.assertRaises(TypeError):
            s.execute()
        s.close()
        with self.assertRaises(shmdict.Error):
            s.get("a")
        self.s = shmdict.open("t", self.dir)

    def test_typed_helpers(self):
        s = self.s
        self.assertTrue(s.set("k", "v"))
        self.assertIsNone(s.set("k", "w", nx=True))
        self.assertTrue(s.set("k", "w", xx=True))
        self.assertIsNone(s.set("other", "w", xx=True))
        self.assertEqual(s.get("k"), b"w")
        big = os.urandom(100000)
        s.set("big", big)
        self.assertEqual(s.get("big"), big)  # longer than the first buffer
        self.assertIsNone(s.get("nope"))
        self.assertEqual(s.hset("h", "f", "1"), 1)
        self.assertEqual(s.hset("h", "f", "2"), 0)
        self.assertEqual(s.hset("h", "g", big), 1)
        self.assertEqual(s.hget("h", "f"), b"2")
        self.assertEqual(s.hget("h", "g"), big)
        self.assertIsNone(s.hget("h", "x"))
        self.assertEqual(s.hgetall("h"), {b"f": b"2", b"g": big})
        self.assertEqual(s.zadd("z", {"m%d" % i: i for i in range(120)}), 120)  # > one command's 55
        self.assertEqual(s.zcard("z"), 120)
        self.assertEqual(s.zrank("z", "m7"), 7)
        self.assertEqual(s.zrevrank("z", "m119"), 0)
        self.assertIsNone(s.zrank("z", "nope"))
        self.assertEqual(s.zscore("z", "m5"), 5.0)
        self.assertEqual(s.zrange("z", 0, 2), [b"m0", b"m1", b"m2"])
        self.assertEqual(s.zrange("z", 0, 1, desc=True, withscores=True), [(b"m119", 119.0), (b"m118", 118.0)])
        self.assertEqual(s.zrangebyscore("z", 10, 11), [b"m10", b"m11"])
        self.assertEqual(s.sadd("s", "a", "b", "a"), 2)
        self.assertEqual(s.smembers("s"), {b"a", b"b"})
        self.assertTrue(s.sismember("s", "a"))
        self.assertEqual(s.rpush("l", 1, 2, 3), 3)
        self.assertEqual(s.lpop("l"), b"1")
        self.assertEqual(s.lrange("l", 0, -1), [b"2", b"3"])
        self.assertEqual(s.incr("n"), 1)
        self.assertEqual(s.incr("n", 10), 11)
        self.assertEqual(s.mget(["k", "nope", "n"]), [b"w", None, b"11"])
        self.assertEqual(s.delete("k", "n", "nope"), 2)
        self.assertEqual(s.type("h"), b"hash")

    def test_databases(self):
        s = self.s
        s.set("k", "db0")
        s.db = 3
        self.assertIsNone(s.get("k"))
        s.set("k", "db3")
        s.db = 0
        self.assertEqual(s.get("k"), b"db0")
        with shmdict.open("t", self.dir, db=3) as s3:
            self.assertEqual(s3.get("k"), b"db3")
        with self.assertRaises(ValueError):
            s.db = 16

    def test_scan_iter_info_check(self):
        s = self.s
        want = set()
        for i in range(1000):
            s.set("key:%d" % i, i)
            want.add(b"key:%d" % i)
        s.rpush("alist", 1)
        self.assertEqual(set(s.scan_iter(match="key:*", count=50)), want)
        self.assertEqual(set(s.scan_iter(_type="list")), {b"alist"})
        self.assertEqual(sum(1 for _ in s.scan_iter()), 1001)
        info = s.info()
        self.assertEqual(info["keys"], 1001)
        self.assertEqual(info["strings"], 1000)
        self.assertEqual(info["lists"], 1)
        self.assertGreater(info["allocated_bytes"], 0)
        self.assertEqual(info["layout_major"], 1)
        self.assertTrue(s.check())
        self.assertEqual(s.dbsize(), 1001)

    def test_several_processes_share_the_store(self):
        s = self.s
        code = ("import shmdict, sys\n"
                "s = shmdict.open('t', sys.argv[1])\n"
                "for i in range(500): s.incr('counter')\n"
                "s.hset('seen', sys.argv[2], 1)\n")
        procs = [subprocess.Popen([sys.executable, "-c", code, self.dir, str(i)]) for i in range(3)]
        for i in range(500):
            s.incr("counter")
        for p in procs:
            self.assertEqual(p.wait(), 0)
        self.assertEqual(s.get("counter"), b"2000")  # every INCR is atomic across processes
        self.assertEqual(s.hlen("seen"), 3)
        self.assertTrue(s.check())

    def test_gil_is_released_during_store_calls(self):
        """While one thread is inside a long store call, another Python thread runs. The switch
        interval is 0.5 s, far longer than the call: a call that kept the GIL would let the other
        thread take no step at all while it runs."""
        s = self.s
        for i in range(0, 60000, 100):
            s.execute("MSET", *[x for j in range(i, i + 100) for x in ("k%06d" % j, j)])
        t0 = time.perf_counter()
        s.execute("KEYS", "*")
        single = time.perf_counter() - t0
        old = sys.getswitchinterval()
        sys.setswitchinterval(0.5)
        stop = False
        count = [0]

        def spin():
            while not stop:
                count[0] += 1

        th = threading.Thread(target=spin)
        moved = []
        try:
            th.start()
            for _ in range(3):
                time.sleep(0.001)  # hand the GIL over; we get it back after at most 0.5 s
                c0 = count[0]
                s.execute("KEYS", "*")  # ~ `single` seconds, well below the switch interval
                moved.append(count[0] - c0)
        finally:
            stop = True
            th.join()
            sys.setswitchinterval(old)
        self.assertGreater(max(moved), 1000, "the other thread took %s steps during calls of %.1f ms"
                           % (moved, single * 1e3))

    def test_threads_share_a_store(self):
        s = self.s
        errors = []

        def work(t):
            try:
                for i in range(300):
                    s.hset("threads", "%d:%d" % (t, i), i)
                    self.assertEqual(s.hget("threads", "%d:%d" % (t, i)), b"%d" % i)
            except Exception as e:  # reported below
                errors.append(e)

        ths = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(s.hlen("threads"), 1200)


class GuildReportTest(unittest.TestCase):
    """The operator script against a store built by examples/guild_friends."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="shmdict-gr-", dir="/dev/shm")
        out = subprocess.run([os.environ["GUILD_FRIENDS"], "-d", cls.dir, "-n", "3000", "--friends", "7",
                              "--player", "1234"], check=True, capture_output=True, text=True).stdout
        cls.answers = {line.split(":", 2)[1].strip(): line.split(":", 2)[2].strip()
                       for line in out.splitlines() if line.startswith("answer:")}

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir)

    def run_report(self, *args):
        return subprocess.run([sys.executable, os.environ["GUILD_REPORT"], "-d", self.dir, *args],
                              check=True, capture_output=True, text=True).stdout

    def test_friends_match_the_servers_answer(self):
        # guild_friends: "friends of player 1234: 7: player001784(lvl 4) ..."
        line = [v for k, v in self.answers.items() if k.startswith("friends of player 1234")][0]
        want = [w.replace("(lvl", "").replace(")", "") for w in line.split(": ", 1)[1].split(") ")]
        want = [tuple(w.split()) for w in want]
        out = self.run_report("friends", "1234")
        got = [tuple(l.split()[0:3:2]) for l in out.splitlines()[1:]]
        self.assertEqual(len(got), 7, out)
        self.assertEqual(got, want, out)

    def test_top_guilds_agree_with_the_player_records(self):
        # Independently: total xp per guild from every player's record p:<id>.
        with shmdict.open("guild_friends", self.dir, create=False) as s:
            totals = {}
            for key in s.scan_iter(match="p:*", count=1000):
                name, level, guild, xp = s.get(key).decode().split(":")
                totals[int(guild)] = totals.get(int(guild), 0) + int(xp)
        want = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        out = self.run_report("top-guilds", "-n", "5")
        got = [(int(l.split()[2]), int(l.split()[3].split("=")[1])) for l in out.splitlines()[1:]]
        self.assertEqual(got, want, out)

    def test_missing_store_is_a_clear_error(self):
        r = subprocess.run([sys.executable, os.environ["GUILD_REPORT"], "-d", self.dir, "-s", "nope",
                            "top-guilds"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("store does not exist", r.stderr)


if __name__ == "__main__":
    unittest.main()
