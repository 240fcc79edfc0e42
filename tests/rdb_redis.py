#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""DUMP / RESTORE against a real redis-server 7.0 (issue 15, item 5), both directions.

For every type, small and large (so redis-server keeps both its compact encodings, listpack /
intset, and its full ones, quicklist / hashtable / skiplist, and LZF-compresses long strings),
with and without a time to live: redis-server DUMPs, shmdict RESTOREs; shmdict DUMPs, redis-server
RESTOREs; the value that arrives is compared with the original (type, elements, scores, whether it
has a TTL and the TTL within a tolerance). Then the replies of RESTORE's error paths (bad checksum,
later RDB version, short payload, BUSYKEY, bad TTL, option errors, IDLETIME / FREQ) are compared
byte for byte. Uses tests/kvdiff.py's redis-server starter and the kvdiff_driver (RESP over a
pipe to shmd_kv_command_db()).

Usage: tests/rdb_redis.py --driver BUILD/tests/kvdiff_driver
Exits 0 when everything matches, 1 otherwise, 77 (skip) without redis-server.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvdiff  # noqa: E402


def values():
    """(key, command that makes it) for every type, small and large."""
    out = [
        (b"str_small", [b"SET", b"str_small", b"hello"]),
        (b"str_int8", [b"SET", b"str_int8", b"-12"]),
        (b"str_int16", [b"SET", b"str_int16", b"12345"]),
        (b"str_int32", [b"SET", b"str_int32", b"-2147483648"]),
        (b"str_int64", [b"SET", b"str_int64", b"-9223372036854775808"]),
        (b"str_empty", [b"SET", b"str_empty", b""]),
        (b"str_lzf", [b"SET", b"str_lzf", b"abcabcabc" * 500]),
        (b"str_bin", [b"SET", b"str_bin", bytes(range(256)) * 40]),
        (b"list_small", [b"RPUSH", b"list_small", b"a", b"1", b"-5", b"", b"x" * 70, b"9223372036854775807", b"-4097"]),
        (b"list_big", [b"RPUSH", b"list_big"] + [b"e%d" % i * (1 + i % 7) for i in range(5000)] + [b"y" * 20000]),
        (b"set_intset", [b"SADD", b"set_intset", b"1", b"-2", b"300", b"70000", b"-5000000000"]),
        (b"set_small", [b"SADD", b"set_small", b"a", b"b", b"c"]),
        (b"set_big", [b"SADD", b"set_big"] + [b"m%d" % i for i in range(2000)]),
        (b"set_bigint", [b"SADD", b"set_bigint"] + [b"%d" % (i * 7919) for i in range(1000)]),
        (b"hash_small", [b"HSET", b"hash_small", b"f", b"v", b"g", b"123", b"h", b""]),
        (b"hash_big", [b"HSET", b"hash_big"] + [x for i in range(1000) for x in (b"f%d" % i, b"v" * (i % 300))]),
        (b"hash_longval", [b"HSET", b"hash_longval", b"f", b"z" * 100]),
        (b"zset_small", [b"ZADD", b"zset_small", b"1.5", b"a", b"-inf", b"b", b"inf", b"c", b"0", b"d", b"-2", b"e"]),
        (b"zset_big", [b"ZADD", b"zset_big"] + [x for i in range(600) for x in (b"%d.125" % (i - 300), b"m%d" % i)]),
        (b"zset_longmember", [b"ZADD", b"zset_longmember", b"3", b"q" * 100, b"1e300", b"r"]),
    ]
    return out


def state(conn, k):
    t, v, _ = kvdiff.key_state(conn, k)
    pttl = conn.call([b"PTTL", k])[1][1]
    return t, v, pttl


def same_state(a, b):
    if a[0] != b[0] or a[1] != b[1]:
        return False
    if (a[2] < 0) != (b[2] < 0):
        return False
    return a[2] < 0 or abs(a[2] - b[2]) < 5000


def run(driver):
    if shutil.which("redis-server") is None:
        print("rdb_redis: redis-server is not installed (scripts/setup.sh installs it): skipped")
        return 77
    tmp = tempfile.mkdtemp(prefix="shmdict-rdb-")
    server = None
    fails = checks = 0
    try:
        server, redis = kvdiff.start_redis(tmp)
        drv = kvdiff.Driver(driver, os.path.join(tmp, "store"))

        def check(ok, what):
            nonlocal fails, checks
            checks += 1
            if not ok:
                fails += 1
                print("FAIL", what)

        for k, cmd in values():
            for conn in (redis, drv):
                conn.call(cmd)
        for k, _ in values():
            for ttl in (False, True):
                if ttl:
                    for conn in (redis, drv):
                        conn.call([b"PEXPIRE", k, b"100000000"])
                orig = state(redis, k)
                check(same_state(orig, state(drv, k)), "%r made differently" % k)
                enc = redis.call([b"OBJECT", b"ENCODING", k])[1][1]
                pttl = str(max(orig[2], 0)).encode()
                # redis-server -> shmdict
                rp = redis.call([b"DUMP", k])[1]
                check(rp[0] == "bulk", "redis DUMP %r" % k)
                dst = k + b"_from_redis"
                drv.call([b"DEL", dst])
                got = drv.call([b"RESTORE", dst, pttl, rp[1]])[1]
                check(got == ("status", b"OK"), "shmdict RESTORE of redis's %r (%s): %r" % (k, enc, got))
                check(same_state(orig, state(drv, dst)), "shmdict RESTORE of redis's %r (%s) differs: %s vs %s" % (
                    k, enc, kvdiff.cut(repr(orig).encode()), kvdiff.cut(repr(state(drv, dst)).encode())))
                # shmdict -> redis-server -> shmdict
                sp = drv.call([b"DUMP", k])[1]
                check(sp[0] == "bulk", "shmdict DUMP %r" % k)
                dst = k + b"_from_shmdict"
                redis.call([b"DEL", dst])
                got = redis.call([b"RESTORE", dst, pttl, sp[1]])[1]
                check(got == ("status", b"OK"), "redis RESTORE of shmdict's %r: %r" % (k, got))
                check(same_state(orig, state(redis, dst)), "redis RESTORE of shmdict's %r differs: %s vs %s" % (
                    k, kvdiff.cut(repr(orig).encode()), kvdiff.cut(repr(state(redis, dst)).encode())))
                back = redis.call([b"DUMP", dst])[1]
                dst2 = k + b"_round_trip"
                drv.call([b"DEL", dst2])
                check(drv.call([b"RESTORE", dst2, pttl, back[1]])[1] == ("status", b"OK"), "round trip %r" % k)
                check(same_state(orig, state(drv, dst2)), "round trip of %r differs" % k)
                # ABSTTL and REPLACE, on both
                at = str(int(redis.call([b"TIME"])[1][1][0][1]) * 1000 + 50000000).encode()
                for conn in (redis, drv):
                    conn.call([b"RESTORE", b"abs", at, rp[1], b"REPLACE", b"ABSTTL"])
                a, b = state(redis, b"abs"), state(drv, b"abs")
                check(same_state(a, b) and a[2] > 0, "ABSTTL %r: %r vs %r" % (k, a[2], b[2]))

        # error paths, byte for byte
        good = redis.call([b"DUMP", b"str_small"])[1][1]
        bad_crc = good[:-1] + bytes([good[-1] ^ 1])
        later = good[:-10] + b"\x0b\x00" + good[-8:]
        cases = [
            [b"RESTORE", b"str_small", b"0", good],
            [b"RESTORE", b"new1", b"0", bad_crc],
            [b"RESTORE", b"new1", b"0", later],
            [b"RESTORE", b"new1", b"0", b"short"],
            [b"RESTORE", b"new1", b"0", b""],
            [b"RESTORE", b"new1", b"-1", good],
            [b"RESTORE", b"new1", b"abc", good],
            [b"RESTORE", b"new1", b"0", good, b"FOO"],
            [b"RESTORE", b"new1", b"0", good, b"IDLETIME"],
            [b"RESTORE", b"new1", b"0", good, b"IDLETIME", b"-1"],
            [b"RESTORE", b"new1", b"0", good, b"IDLETIME", b"x"],
            [b"RESTORE", b"new1", b"0", good, b"FREQ", b"256"],
            [b"RESTORE", b"new1", b"0", good, b"FREQ", b"10", b"IDLETIME", b"5"],
            [b"RESTORE", b"new1", b"0", good, b"IDLETIME", b"5", b"REPLACE"],
            [b"RESTORE", b"new2", b"0", good, b"FREQ", b"255", b"ABSTTL"],
            [b"RESTORE", b"new3", b"1", good, b"ABSTTL"],
            [b"RESTORE", b"str_small", b"1", good, b"ABSTTL", b"REPLACE"],
            [b"RESTORE", b"str_small", b"-1", good, b"REPLACE"],
            [b"RESTORE", b"new4"],
            [b"DUMP", b"nokey"],
            [b"DUMP"],
            [b"EXISTS", b"new1", b"new2", b"new3", b"str_small"],
        ]
        for c in cases:
            ra, _ = redis.call(c)
            sa, _ = drv.call(c)
            check(ra == sa, "%s: redis %s shmdict %s" % (kvdiff.cut(repr(c).encode(), 80), kvdiff.cut(ra), kvdiff.cut(sa)))
        drv.close()
        print("rdb_redis: %d checks, %d failed" % (checks, fails))
        print("%d passed, %d failed" % (checks - fails, fails))
        return 1 if fails else 0
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--driver", required=True)
    return run(ap.parse_args().driver)


if __name__ == "__main__":
    sys.exit(main())
