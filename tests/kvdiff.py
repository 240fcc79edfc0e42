#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The differential test of the keyspace (issue 15, item 7): shmdict against a real redis-server 7.0.

Starts redis-server (scripts/setup.sh installs it) on a free port in a temporary directory with
persistence off, and tests/kvdiff_driver on a fresh store (one long-running process that reads RESP
commands and writes RESP replies). Generates random commands with edge arguments (empty strings,
huge, negative and LLONG_MIN counts, inf, -0, 1e400, repeated options, wrong types, missing keys,
binary data) over every supported command, sends each to both, and compares the replies byte for
byte. At the end it compares the whole keyspace of every database (every key, type, value, and
whether it has a time to live). Only python3's standard library is used: the RESP bytes are read
off the socket as they come.

Commands whose answer is random (SPOP, SRANDMEMBER, RANDOMKEY, HRANDFIELD, ZRANDMEMBER) are
compared by shape (count, membership, distinctness), and the key a random pop changed is copied
from redis-server to shmdict afterwards so that both keyspaces stay equal. Replies that depend on
the clock (TTL, PTTL, EXPIRETIME, PEXPIRETIME) are compared within a tolerance; replies whose
order is a hash table's (SMEMBERS, HGETALL, KEYS, ...) are compared as multisets; SCAN-family
cursors are each implementation's own, so a scan is compared by shape and by a full scan from
cursor 0. Everything else must be the same bytes.

Differences on purpose are listed in ALLOWED below (the one place; docs/commands.md says the same
per command): a reply in one of those classes is not counted.

Usage:
  tests/kvdiff.py --driver BUILD/tests/kvdiff_driver [--seeds 1,2,3] [--count 3000] [-v]
  tests/kvdiff.py --driver ... --script FILE    (one command per line, shell-like quoting;
                                                 prints both replies of every command that differs)
Exits 0 when nothing differs (other than ALLOWED), 1 otherwise, 77 (skip) without redis-server.
"""
import argparse
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

# ------------------------------------------------------------------------------------------------
# Differences on purpose (mirrored in docs/commands.md). Each entry: a predicate on
# (command-name-lowercase, args) and the reason. A differing reply that matches one is counted
# as "allowed", not as a difference.
ALLOWED = [
    (lambda c, a: c in ("sort", "sort_ro") and any(a[i].lower() in (b"by", b"get") and b"*" in a[i + 1] and a[i + 1] != b"#"
                                                   for i in range(2, len(a) - 1)),
     "SORT / SORT_RO refuse BY and GET key patterns with '*' (shmdict reads no keys by pattern inside a command)"),
]


def c_strtod_ok(b):
    """Whether C's strtod reads all of the C string b (up to a NUL) without ERANGE or NaN."""
    import ctypes
    libc = ctypes.CDLL(None)
    libc.strtod.restype = ctypes.c_double
    libc.strtod.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)]
    errno_loc = libc.__errno_location
    errno_loc.restype = ctypes.POINTER(ctypes.c_int)
    s = ctypes.create_string_buffer(b.split(b"\0")[0])
    end = ctypes.c_char_p()
    errno_loc()[0] = 0
    v = libc.strtod(s, ctypes.byref(end))
    return errno_loc()[0] == 0 and v == v and ctypes.cast(end, ctypes.c_void_p).value == ctypes.addressof(s) + len(s.value)


# Differences of Redis's own making, each a known Redis quirk, judged on the replies.
def sorted_elements(sv, before):
    """The elements SORT sorted: its reply, or for STORE (an integer reply) the key's value before."""
    if sv[0] == "array":
        return [e[1] if e[0] == "bulk" else None for e in sv[1]]
    if sv[0] == "int" and before is not None and before[1] is not None and before[1][0] == "array":
        items = before[1][1]
        if before[0] == b"zset":
            items = items[0::2]
        return [e[1] if isinstance(e, tuple) and e[0] == "bulk" else None for e in items]
    return [None]


ALLOWED_REPLIES = [
    (lambda c, a, rv, sv, before: c in ("sort", "sort_ro") and rv == ("error", b"ERR One or more scores can't be converted into double")
     and all(e is not None and c_strtod_ok(e) for e in sorted_elements(sv, before)),
     "Redis's SORT tests errno after strtod without clearing it first: an ERANGE left by an earlier "
     "command (ZADD 1e400, INCRBYFLOAT) makes it refuse numbers that parse (shmdict sorts them)"),
]


NEG_ZERO_WHY = ("a score of -0: Redis keeps it in a skiplist-encoded sorted set (a member over 64 bytes or "
                "over 128 members) and prints \"-0\", but prints \"0\" in the listpack encoding; shmdict "
                "stores +0 as the listpack does")


def no_neg_zero(state):
    """A key state with a sorted set's -0 scores as 0 (NEG_ZERO_WHY)."""
    t, v, ttl = state
    if t == b"zset" and v is not None and v[0] == "array":
        v = ("array", [("bulk", b"0") if i % 2 and e == ("bulk", b"-0") else e for i, e in enumerate(v[1])])
    return (t, v, ttl)


LEX_CMDS = {"zrangebylex", "zrevrangebylex", "zlexcount", "zremrangebylex"}
LEX_WHY = ("a lexicographic range over a sorted set whose members have different scores, which Redis "
           "leaves unspecified: in its skiplist encoding the answer depends on the random node levels "
           "(shmdict answers as Redis's listpack encoding does, which kvdiff checks byte for byte)")


def is_lex(args):
    name = args[0].decode("latin-1").lower()
    return name in LEX_CMDS or (name in ("zrange", "zrangestore") and any(x.lower() == b"bylex" for x in args))


def lex_is_undefined(redis, k):
    """Whether Redis keeps k as a skiplist with members of different scores."""
    if redis.call([b"OBJECT", b"ENCODING", k])[1] != ("bulk", b"skiplist"):
        return False
    z = redis.call([b"ZRANGE", k, b"0", b"-1", b"WITHSCORES"])[1][1]
    return len({e[1] for e in z[1::2]}) > 1


def allowed(args, rv=None, sv=None, before=None):
    c = args[0].decode("latin-1").lower()
    for pred, why in ALLOWED:
        if pred(c, args):
            return why
    for pred, why in ALLOWED_REPLIES:
        if rv is not None and pred(c, args, rv, sv, before):
            return why
    return None


# ------------------------------------------------------------------------------------------------
# RESP

def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Reader:
    """Reads one RESP2 reply from a binary file, keeping the raw bytes."""

    def __init__(self, f):
        self.f = f

    def _line(self, raw):
        line = self.f.readline()
        if not line:
            raise EOFError("connection closed")
        raw.append(line)
        return line[:-2]

    def read(self):
        raw = []
        val = self._read(raw)
        return b"".join(raw), val

    def _read(self, raw):
        line = self._line(raw)
        t, rest = line[:1], line[1:]
        if t == b"+":
            return ("status", rest)
        if t == b"-":
            return ("error", rest)
        if t == b":":
            return ("int", int(rest))
        if t == b"$":
            n = int(rest)
            if n < 0:
                return ("nil", None)
            data = self.f.read(n + 2)
            raw.append(data)
            return ("bulk", data[:-2])
        if t == b"*":
            n = int(rest)
            if n < 0:
                return ("nilarray", None)
            return ("array", [self._read(raw) for _ in range(n)])
        raise ValueError("bad RESP line %r" % line)


class Redis:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.f = self.sock.makefile("rb")
        self.r = Reader(self.f)

    def call(self, args):
        self.sock.sendall(encode(args))
        return self.r.read()


class Driver:
    def __init__(self, exe, d):
        self.p = subprocess.Popen([exe, d, "diff"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.r = Reader(self.p.stdout)

    def call(self, args):
        self.p.stdin.write(encode(args))
        self.p.stdin.flush()
        return self.r.read()

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=30)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(d):
    port = free_port()
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", d], stdout=subprocess.DEVNULL)
    for _ in range(200):
        try:
            r = Redis(port)
            if r.call([b"PING"])[1] == ("status", b"PONG"):
                return p, r
        except OSError:
            pass
        time.sleep(0.05)
    p.kill()
    raise RuntimeError("redis-server did not start")


# ------------------------------------------------------------------------------------------------
# Comparison

RANDOM_CMDS = {"spop", "srandmember", "randomkey", "hrandfield", "zrandmember"}
UNORDERED_STORE = {"sinterstore", "sunionstore", "sdiffstore"}
CLOCK_CMDS = {"ttl": 1, "pttl": 50, "expiretime": 1, "pexpiretime": 50}
UNORDERED = {"smembers", "sinter", "sunion", "sdiff", "keys", "hkeys", "hvals"}
PAIRED = {"hgetall"}


def cut(b, n=300):
    """A reply's bytes for a message, cut to n bytes."""
    r = repr(b[:n])
    return r + ("... (%d bytes)" % len(b) if len(b) > n else "")


def show(v):
    t, x = v
    if t == "array":
        return "[" + ", ".join(show(e) for e in x) + "]"
    if t in ("bulk", "status", "error"):
        return "%s:%r" % (t, x)
    return "%s:%r" % (t, x)


def flat_sorted(v, pairs=False):
    t, x = v
    if t != "array":
        return v
    if pairs:
        items = [(x[i], x[i + 1]) for i in range(0, len(x) - 1, 2)]
        return ("array", sorted(items, key=repr))
    return ("array", sorted(x, key=repr))


def same(args, ra, rv, sa, sv):
    """Compares redis's (raw, value) with shmdict's; returns None when equal, else a reason."""
    name = args[0].decode("latin-1").lower()
    if ra == sa:
        return None
    if rv[0] == "error" or sv[0] == "error":
        return "bytes"
    if name in CLOCK_CMDS and rv[0] == sv[0] == "int":
        a, b = rv[1], sv[1]
        if a < 0 or b < 0:
            return None if a == b else "value"
        return None if abs(a - b) <= CLOCK_CMDS[name] + (abs(a) // 1000000 if name in ("expiretime", "pexpiretime") else 0) else "clock"
    if name in UNORDERED or (name in ("zunion", "zinter", "zdiff") and False):
        return None if flat_sorted(rv) == flat_sorted(sv) else "multiset"
    if name in PAIRED:
        return None if flat_sorted(rv, True) == flat_sorted(sv, True) else "multiset"
    if name in ("hscan", "sscan", "zscan", "scan"):
        return None if rv[0] == sv[0] == "array" and len(rv[1]) == len(sv[1]) == 2 else "scan shape"
    if name in ("sort", "sort_ro") and any(x.lower() == b"by" for x in args[2:]) and rv[0] == sv[0] == "array":
        # BY nosort leaves a set in its hash table's order, which is each implementation's own
        return None if flat_sorted(rv) == flat_sorted(sv) else "multiset"
    return "bytes"


# ------------------------------------------------------------------------------------------------
# Keyspace dumps (compared at the end, and used to re-sync a key after a random pop)

def key_state(conn, k):
    t = conn.call([b"TYPE", k])[1][1]
    pttl = conn.call([b"PTTL", k])[1][1]
    if t == b"string":
        v = conn.call([b"GET", k])[1]
    elif t == b"list":
        v = conn.call([b"LRANGE", k, b"0", b"-1"])[1]
    elif t == b"set":
        v = flat_sorted(conn.call([b"SMEMBERS", k])[1])
    elif t == b"hash":
        v = flat_sorted(conn.call([b"HGETALL", k])[1], True)
    elif t == b"zset":
        v = conn.call([b"ZRANGE", k, b"0", b"-1", b"WITHSCORES"])[1]
    else:
        v = None
    return (t, v, pttl > 0 if isinstance(pttl, int) else pttl)


def keyspace(conn, db):
    conn.call([b"SELECT", str(db).encode()])
    keys = sorted(x[1] for x in conn.call([b"KEYS", b"*"])[1][1])
    return {k: no_neg_zero(key_state(conn, k)) for k in keys}


def copy_key(redis, drv, k):
    """Makes k on shmdict what it is on redis-server (after a random pop)."""
    t = redis.call([b"TYPE", k])[1][1]
    drv.call([b"DEL", k])
    if t == b"set":
        members = [x[1] for x in redis.call([b"SMEMBERS", k])[1][1]]
        if members:
            drv.call([b"SADD", k] + members)
    elif t == b"zset":
        z = [x[1] for x in redis.call([b"ZRANGE", k, b"0", b"-1", b"WITHSCORES"])[1][1]]
        if z:
            drv.call([b"ZADD", k] + [v for i in range(0, len(z), 2) for v in (z[i + 1], z[i])])
    elif t == b"hash":
        h = [x[1] for x in redis.call([b"HGETALL", k])[1][1]]
        if h:
            drv.call([b"HSET", k] + h)
    elif t == b"list":
        items = [x[1] for x in redis.call([b"LRANGE", k, b"0", b"-1"])[1][1]]
        if items:
            drv.call([b"RPUSH", k] + items)
    elif t == b"string":
        v = redis.call([b"GET", k])[1][1]
        if v is not None:  # None: it expired since TYPE
            drv.call([b"SET", k, v])
    if t != b"none":
        pt = redis.call([b"PEXPIRETIME", k])[1]
        if pt[0] == "int" and pt[1] > 0:
            drv.call([b"PEXPIREAT", k, str(pt[1]).encode()])


# ------------------------------------------------------------------------------------------------
# Random commands

KEYS = [b"k%d" % i for i in range(6)] + [b"{x}", b"", b"nokey"]
STRS = [b"", b"a", b"b", b"c", b"hello", b"\x00\xff\r\nbin", b"x" * 130, b"1", b"-1", b"10", b"3.5",
        b"inf", b"foo", b"bar", b"m1", b"m2", b"m3", b"f1", b"f2", b"0", b" 1", b"1e3"]
INTS = [b"0", b"1", b"-1", b"2", b"3", b"5", b"10", b"-10", b"100", b"-3", b"9223372036854775807",
        b"-9223372036854775808", b"9223372036854775808", b"-9223372036854775809", b"-0", b"+1",
        b" 1", b"1 ", b"01", b"abc", b"", b"1.5", b"1e3", b"4294967296", b"-4294967297"]
FLOATS = [b"0", b"1", b"1.5", b"-2.5", b"inf", b"-inf", b"+inf", b"1e400", b"-1e400", b"1e-400",
          b"nan", b"-0", b"0.1", b"1e308", b"abc", b"", b" 1", b"1 ", b"3.0000000000000001",
          b"1e-4940", b"0x10", b"17", b"-17", b"1" * 130, b"0." + b"1" * 130, b"5e-324",
          b"1.7976931348623157e308", b"10.5"]
BOUNDS = [b"-inf", b"+inf", b"inf", b"(1", b"(-inf", b"(+inf", b"(", b"", b" 1", b"1e400", b"0",
          b"1", b"2.5", b"(2.5", b"-1", b"abc", b"nan", b"(nan", b"10", b"(10"]
LEX = [b"-", b"+", b"[a", b"(a", b"[m1", b"(m2", b"[", b"(", b"a", b"", b"[z", b"[\xff"]


def pick(g, xs):
    return g.choice(xs)


def K(g):
    return pick(g, KEYS)


def S(g):
    return pick(g, STRS)


def I(g):
    return pick(g, INTS)


def SI(g):  # mostly sensible small integers
    return pick(g, [b"0", b"1", b"-1", b"2", b"3", b"-2", b"10", b"-100"]) if g.random() < 0.8 else I(g)


def F(g):
    return pick(g, FLOATS) if g.random() < 0.5 else pick(g, [b"1", b"2", b"3", b"-1", b"0.5", b"10"])


def B(g):
    return pick(g, BOUNDS)


def many(g, f, lo=1, hi=4):
    return [f(g) for _ in range(g.randint(lo, hi))]


def opts(g, choices, hi=3):
    out = []
    for _ in range(g.randint(0, hi)):
        c = pick(g, choices)
        out += c(g) if callable(c) else list(c)
    return out


def restore_payload(redis, spec):
    """RESTORE's payload for a placeholder: redis-server's DUMP of the key; "!" a copy with a bad
    CRC, "?" one whose body is cut short (a correct footer: it reaches the decoder)."""
    mode, key = (spec[:1], spec[1:]) if spec[:1] in (b"!", b"?") else (b"", spec)
    v = redis.call([b"DUMP", key])[1]
    p = v[1] if v[0] == "bulk" else b"\x00\x01x"  # a string "x" without a footer
    if mode == b"!" and len(p) > 10:
        p = p[:-1] + bytes([p[-1] ^ 1])
    if mode == b"?" and len(p) > 12:
        body = p[:-10][:len(p) // 2]
        p = body + p[-10:-8] + crc64(body + p[-10:-8]).to_bytes(8, "little")
    return p


def crc64(data):
    """Redis's crc64 (Jones polynomial, reflected, init 0)."""
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x95AC9329AC4BC9B5 if crc & 1 else crc >> 1
    return crc


def check_dump(redis, key, rv, sv):
    """DUMP: the same shape (nil or bulk), and shmdict's payload restores on redis-server to the
    value redis-server holds."""
    if rv[0] != sv[0]:
        return "dump shape"
    if sv[0] != "bulk":
        return None if rv == sv else "dump"
    tmp = b"__kvdiff_dump_check"
    got = redis.call([b"RESTORE", tmp, b"0", sv[1], b"REPLACE"])[1]
    a, b = key_state(redis, key), key_state(redis, tmp)
    redis.call([b"DEL", tmp])
    if got != ("status", b"OK"):
        return "redis-server refused shmdict's payload: %r" % (got,)
    return None if (a[0], a[1]) == (b[0], b[1]) else "dump value"


GEN = {}


def gen(name, weight=1):
    def deco(f):
        GEN[name] = (f, weight)
        return f
    return deco


# generic
gen("del")(lambda g: [b"DEL"] + many(g, K))
gen("unlink")(lambda g: [b"UNLINK"] + many(g, K))
gen("exists")(lambda g: [b"EXISTS"] + many(g, K))
gen("type")(lambda g: [b"TYPE", K(g)])
gen("rename")(lambda g: [b"RENAME", K(g), K(g)])
gen("keys")(lambda g: [b"KEYS", pick(g, [b"*", b"k*", b"k[0-2]", b"?", b"*x*", b"\\*", b"[^k]*"])])
gen("dbsize")(lambda g: [b"DBSIZE"])
EXPIRE_OPTS = [[b"NX"], [b"XX"], [b"GT"], [b"LT"], [b"FOO"], [b"nx"]]
gen("expire")(lambda g: [b"EXPIRE", K(g), pick(g, [b"1000", b"-1", b"0", b"100000", b"abc", b"9223372036854775807", b"-9223372036854775808", b"500"])] + opts(g, EXPIRE_OPTS, 2))
gen("pexpire")(lambda g: [b"PEXPIRE", K(g), pick(g, [b"1000000", b"-1", b"0", b"100000000", b"abc", b"9223372036854775807", b"-9223372036854775808"])] + opts(g, EXPIRE_OPTS, 2))
gen("ttl")(lambda g: [b"TTL", K(g)])
# DUMP / RESTORE: payload bytes are each implementation's own (redis-server LZF-compresses and
# keeps compact encodings), so DUMP is compared by shape and by what its payload restores to (see
# check_dump); RESTORE's payload placeholder (PAYLOAD_OF + key) becomes redis-server's DUMP of that
# key at run time (or a corrupted copy), and both sides get the same bytes.
PAYLOAD_OF = b"\x00payload-of:"
gen("dump")(lambda g: [b"DUMP", K(g)])
gen("copy", 2)(lambda g: [b"COPY", K(g), K(g)] + opts(g, [[b"REPLACE"], [b"REPLACE"], lambda g: [b"DB", pick(g, [b"0", b"1", b"2", b"16", b"-1", b"abc", b"4294967296"])], [b"DB"], [b"FOO"]], 3))
gen("restore")(lambda g: [b"RESTORE", K(g), pick(g, [b"0", b"0", b"100000", b"-1", b"abc"]), PAYLOAD_OF + pick(g, [b"", b"!", b"?"]) + K(g)]
                         + opts(g, [[b"REPLACE"], [b"REPLACE"], [b"ABSTTL"], lambda g: [b"IDLETIME", pick(g, [b"0", b"10", b"-1"])],
                                    lambda g: [b"FREQ", pick(g, [b"0", b"255", b"256"])], [b"FOO"]], 3))
gen("pttl")(lambda g: [b"PTTL", K(g)])
gen("persist")(lambda g: [b"PERSIST", K(g)])
gen("scan")(lambda g: [b"SCAN", pick(g, [b"0", b"0", b"1", b"abc", b"-1", b" 0", b"18446744073709551615", b"18446744073709551616"])] + opts(g, [lambda g: [b"COUNT", pick(g, [b"1", b"10", b"1000", b"0", b"-1", b"abc"])], lambda g: [b"MATCH", pick(g, [b"*", b"k*", b"x"])], lambda g: [b"TYPE", pick(g, [b"string", b"list", b"hash", b"zset", b"set", b"foo"])], [b"FOO"]], 2))

# strings
SET_OPTS = [[b"NX"], [b"XX"], [b"GET"], [b"KEEPTTL"], lambda g: [b"EX", pick(g, [b"100", b"0", b"-1", b"abc", b"9223372036854775807"])],
            lambda g: [b"PX", pick(g, [b"100000", b"0", b"-5"])], lambda g: [b"EXAT", pick(g, [b"1", b"99999999999", b"0"])],
            lambda g: [b"PXAT", pick(g, [b"1", b"99999999999999", b"0"])], [b"EX"], [b"FOO"]]
gen("set", 3)(lambda g: [b"SET", K(g), S(g)] + opts(g, SET_OPTS, 3))
gen("get", 2)(lambda g: [b"GET", K(g)])
gen("getdel")(lambda g: [b"GETDEL", K(g)])
gen("mget")(lambda g: [b"MGET"] + many(g, K))
gen("mset")(lambda g: [b"MSET"] + [x for _ in range(g.randint(1, 3)) for x in (K(g), S(g))] + ([S(g)] if g.random() < 0.1 else []))
gen("setnx")(lambda g: [b"SETNX", K(g), S(g)])
gen("incr")(lambda g: [b"INCR", K(g)])
gen("decr")(lambda g: [b"DECR", K(g)])
gen("incrby")(lambda g: [b"INCRBY", K(g), I(g)])
gen("decrby")(lambda g: [b"DECRBY", K(g), I(g)])
gen("incrbyfloat", 2)(lambda g: [b"INCRBYFLOAT", K(g), F(g)])
gen("append")(lambda g: [b"APPEND", K(g), S(g)])
gen("strlen")(lambda g: [b"STRLEN", K(g)])
gen("getrange")(lambda g: [b"GETRANGE", K(g), SI(g), SI(g)])
gen("setrange")(lambda g: [b"SETRANGE", K(g), pick(g, [b"0", b"1", b"5", b"-1", b"abc", b"536870912", b"1000"]), S(g)])

# hashes
gen("hset", 2)(lambda g: [b"HSET", K(g)] + [x for _ in range(g.randint(1, 3)) for x in (S(g), S(g))] + ([S(g)] if g.random() < 0.1 else []))
gen("hmset")(lambda g: [b"HMSET", K(g)] + [x for _ in range(g.randint(1, 3)) for x in (S(g), S(g))])
gen("hsetnx")(lambda g: [b"HSETNX", K(g), S(g), S(g)])
gen("hget")(lambda g: [b"HGET", K(g), S(g)])
gen("hmget")(lambda g: [b"HMGET", K(g)] + many(g, S))
gen("hdel")(lambda g: [b"HDEL", K(g)] + many(g, S))
gen("hexists")(lambda g: [b"HEXISTS", K(g), S(g)])
gen("hlen")(lambda g: [b"HLEN", K(g)])
gen("hkeys")(lambda g: [b"HKEYS", K(g)])
gen("hvals")(lambda g: [b"HVALS", K(g)])
gen("hgetall")(lambda g: [b"HGETALL", K(g)])
gen("hincrby")(lambda g: [b"HINCRBY", K(g), S(g), I(g)])
gen("hscan")(lambda g: [b"HSCAN", K(g), pick(g, [b"0", b"0", b" 0", b"abc", b"1"])] + opts(g, [lambda g: [b"COUNT", pick(g, [b"1", b"10", b"0", b"-1", b"abc"])], lambda g: [b"MATCH", pick(g, [b"*", b"f*"])], [b"NOVALUES"]], 2))

# lists
gen("lpush", 2)(lambda g: [b"LPUSH", K(g)] + many(g, S))
gen("rpush", 2)(lambda g: [b"RPUSH", K(g)] + many(g, S))
gen("lpop")(lambda g: [b"LPOP", K(g)] + ([I(g)] if g.random() < 0.5 else []))
gen("rpop")(lambda g: [b"RPOP", K(g)] + ([I(g)] if g.random() < 0.5 else []))
gen("llen")(lambda g: [b"LLEN", K(g)])
gen("lindex")(lambda g: [b"LINDEX", K(g), SI(g)])
gen("lrange")(lambda g: [b"LRANGE", K(g), SI(g), SI(g)])
gen("lset")(lambda g: [b"LSET", K(g), SI(g), S(g)])
gen("lrem")(lambda g: [b"LREM", K(g), SI(g), S(g)])
gen("ltrim")(lambda g: [b"LTRIM", K(g), SI(g), SI(g)])
gen("linsert")(lambda g: [b"LINSERT", K(g), pick(g, [b"BEFORE", b"AFTER", b"after", b"x"]), S(g), S(g)])

# sets
gen("sadd", 2)(lambda g: [b"SADD", K(g)] + many(g, S))
gen("srem")(lambda g: [b"SREM", K(g)] + many(g, S))
gen("sismember")(lambda g: [b"SISMEMBER", K(g), S(g)])
gen("smembers")(lambda g: [b"SMEMBERS", K(g)])
gen("scard")(lambda g: [b"SCARD", K(g)])
gen("spop")(lambda g: [b"SPOP", K(g)] + ([I(g)] if g.random() < 0.5 else []))
gen("srandmember")(lambda g: [b"SRANDMEMBER", K(g)] + ([I(g) if g.random() < 0.3 else SI(g)] if g.random() < 0.7 else []))
gen("sinter")(lambda g: [b"SINTER"] + many(g, K))
gen("sunion")(lambda g: [b"SUNION"] + many(g, K))
gen("sdiff")(lambda g: [b"SDIFF"] + many(g, K))
gen("sscan")(lambda g: [b"SSCAN", K(g), pick(g, [b"0", b"0", b"abc"])] + opts(g, [lambda g: [b"COUNT", pick(g, [b"1", b"100", b"0"])], lambda g: [b"MATCH", pick(g, [b"*", b"m*"])]], 2))

# sorted sets
ZADD_OPTS = [[b"NX"], [b"XX"], [b"GT"], [b"LT"], [b"CH"], [b"INCR"]]
gen("zadd", 3)(lambda g: [b"ZADD", K(g)] + opts(g, ZADD_OPTS, 2) + [x for _ in range(g.randint(1, 3)) for x in (F(g), S(g))] + ([S(g)] if g.random() < 0.05 else []))
gen("zrem")(lambda g: [b"ZREM", K(g)] + many(g, S))
gen("zscore")(lambda g: [b"ZSCORE", K(g), S(g)])
gen("zincrby")(lambda g: [b"ZINCRBY", K(g), F(g), S(g)])
gen("zcard")(lambda g: [b"ZCARD", K(g)])
gen("zrank")(lambda g: [b"ZRANK", K(g), S(g)])
gen("zrevrank")(lambda g: [b"ZREVRANK", K(g), S(g)])
ZR_OPTS = [[b"BYSCORE"], [b"REV"], [b"WITHSCORES"], lambda g: [b"LIMIT", SI(g), SI(g)], [b"LIMIT"], [b"BYLEX"]]
gen("zrange", 2)(lambda g: [b"ZRANGE", K(g), pick(g, [SI(g), B(g), pick(g, LEX)]), pick(g, [SI(g), B(g), pick(g, LEX)])] + opts(g, ZR_OPTS, 3))
gen("zrangebyscore")(lambda g: [b"ZRANGEBYSCORE", K(g), B(g), B(g)] + opts(g, [[b"WITHSCORES"], lambda g: [b"LIMIT", SI(g), SI(g)]], 2))
gen("zcount")(lambda g: [b"ZCOUNT", K(g), B(g), B(g)])
gen("zremrangebyrank")(lambda g: [b"ZREMRANGEBYRANK", K(g), SI(g), SI(g)])
gen("zscan")(lambda g: [b"ZSCAN", K(g), pick(g, [b"0", b"0", b"abc"])] + opts(g, [lambda g: [b"COUNT", pick(g, [b"1", b"100", b"0"])], lambda g: [b"MATCH", pick(g, [b"*", b"m*"])]], 2))

# added with the commands of issue 15 (strings, generic, sorted sets)
EXP_OPT = [[b"EX"], [b"PX"], [b"EXAT"], [b"PXAT"], [b"PERSIST"], [b"FOO"], [b"KEEPTTL"]]
TIMES = [b"100000", b"0", b"-1", b"abc", b"99999999999", b"9223372036854775807", b""]  # no expiry within a run
gen("getex")(lambda g: [b"GETEX", K(g)] + [x for _ in range(g.randint(0, 2)) for x in (pick(g, EXP_OPT) + ([pick(g, TIMES)] if g.random() < 0.8 else []))])
gen("getset")(lambda g: [b"GETSET", K(g), S(g)])
gen("setex")(lambda g: [b"SETEX", K(g), pick(g, TIMES), S(g)])
gen("psetex")(lambda g: [b"PSETEX", K(g), pick(g, TIMES + [b"200000"]), S(g)])
gen("msetnx")(lambda g: [b"MSETNX"] + [x for _ in range(g.randint(1, 3)) for x in (K(g), S(g))] + ([S(g)] if g.random() < 0.1 else []))
gen("substr")(lambda g: [b"SUBSTR", K(g), SI(g), SI(g)])
gen("expireat")(lambda g: [b"EXPIREAT", K(g), pick(g, [b"1", b"4102444800", b"0", b"-1", b"abc", b"9223372036854775807"])] + opts(g, EXPIRE_OPTS, 2))
gen("pexpireat")(lambda g: [b"PEXPIREAT", K(g), pick(g, [b"1", b"4102444800000", b"0", b"-1", b"abc", b"9223372036854775807"])] + opts(g, EXPIRE_OPTS, 2))
gen("expiretime")(lambda g: [b"EXPIRETIME", K(g)])
gen("pexpiretime")(lambda g: [b"PEXPIRETIME", K(g)])
LEXM = [b"a", b"b", b"c", b"m1", b"m2", b"", b"\xff", b"aa"]
gen("zadd0", 2)(lambda g: [b"ZADD", K(g)] + [x for _ in range(g.randint(1, 4)) for x in (pick(g, [b"0", b"0", b"0", b"1"]), pick(g, LEXM))])
ZRS_OPTS = [[b"BYSCORE"], [b"REV"], lambda g: [b"LIMIT", SI(g), SI(g)], [b"LIMIT"], [b"BYLEX"], [b"WITHSCORES"]]
def zrange_args(g):
    return [pick(g, [SI(g), B(g), pick(g, LEX)]), pick(g, [SI(g), B(g), pick(g, LEX)])]
gen("zrangestore")(lambda g: [b"ZRANGESTORE", K(g), K(g)] + zrange_args(g) + opts(g, ZRS_OPTS, 3))
gen("zrangelex", 2)(lambda g: [b"ZRANGE", K(g), pick(g, LEX), pick(g, LEX), b"BYLEX"] + opts(g, [[b"REV"], lambda g: [b"LIMIT", SI(g), SI(g)]], 2))
gen("zrevrange")(lambda g: [b"ZREVRANGE", K(g), SI(g), SI(g)] + opts(g, [[b"WITHSCORES"], [b"REV"], lambda g: [b"LIMIT", SI(g), SI(g)]], 1))
gen("zrevrangebyscore")(lambda g: [b"ZREVRANGEBYSCORE", K(g), B(g), B(g)] + opts(g, [[b"WITHSCORES"], lambda g: [b"LIMIT", SI(g), SI(g)]], 2))
gen("zrangebylex")(lambda g: [b"ZRANGEBYLEX", K(g), pick(g, LEX), pick(g, LEX)] + opts(g, [[b"WITHSCORES"], lambda g: [b"LIMIT", SI(g), SI(g)]], 2))
gen("zrevrangebylex")(lambda g: [b"ZREVRANGEBYLEX", K(g), pick(g, LEX), pick(g, LEX)] + opts(g, [lambda g: [b"LIMIT", SI(g), SI(g)]], 1))
gen("zlexcount")(lambda g: [b"ZLEXCOUNT", K(g), pick(g, LEX), pick(g, LEX)])
gen("zremrangebyscore")(lambda g: [b"ZREMRANGEBYSCORE", K(g), B(g), B(g)])
gen("zremrangebylex")(lambda g: [b"ZREMRANGEBYLEX", K(g), pick(g, LEX), pick(g, LEX)])
gen("zmscore")(lambda g: [b"ZMSCORE", K(g)] + many(g, S))
gen("zpopmin")(lambda g: [b"ZPOPMIN", K(g)] + ([I(g)] if g.random() < 0.5 else []))
gen("zpopmax")(lambda g: [b"ZPOPMAX", K(g)] + ([I(g)] if g.random() < 0.5 else []))
gen("zmpop")(lambda g: [b"ZMPOP", pick(g, [b"1", b"2", b"0", b"-1", b"abc", b"3"])] + many(g, K, 1, 2) + [pick(g, [b"MIN", b"MAX", b"min", b"FOO"])] + opts(g, [lambda g: [b"COUNT", I(g)]], 2))
gen("lmove")(lambda g: [b"LMOVE", K(g), K(g), pick(g, [b"LEFT", b"RIGHT", b"left", b"UP"]), pick(g, [b"LEFT", b"RIGHT", b"right", b"x"])])
gen("lmpop")(lambda g: [b"LMPOP", pick(g, [b"1", b"2", b"0", b"-1", b"abc", b"3"])] + many(g, K, 1, 2) + [pick(g, [b"LEFT", b"RIGHT", b"right", b"FOO"])] + opts(g, [lambda g: [b"COUNT", I(g)]], 2))

# generic, hash, list and set commands added for issue 15
gen("renamenx")(lambda g: [b"RENAMENX", K(g), K(g)])
gen("move")(lambda g: [b"MOVE", K(g), pick(g, [b"0", b"1", b"2", b"15", b"16", b"-1", b"abc", b"4294967296"])])
gen("randomkey")(lambda g: [b"RANDOMKEY"])
gen("touch")(lambda g: [b"TOUCH"] + many(g, K))
gen("hincrbyfloat")(lambda g: [b"HINCRBYFLOAT", K(g), S(g), F(g)])
gen("hstrlen")(lambda g: [b"HSTRLEN", K(g), S(g)])
gen("hrandfield")(lambda g: [b"HRANDFIELD", K(g)] + ([I(g) if g.random() < 0.3 else SI(g)] + ([pick(g, [b"WITHVALUES", b"withvalues", b"FOO"])] if g.random() < 0.5 else []) if g.random() < 0.7 else []))
gen("lpushx")(lambda g: [b"LPUSHX", K(g)] + many(g, S))
gen("rpushx")(lambda g: [b"RPUSHX", K(g)] + many(g, S))
gen("rpoplpush")(lambda g: [b"RPOPLPUSH", K(g), K(g)])
gen("lpos")(lambda g: [b"LPOS", K(g), S(g)] + opts(g, [lambda g: [b"RANK", pick(g, [b"1", b"2", b"-1", b"-2", b"0", b"abc", b"-9223372036854775808"])], lambda g: [b"COUNT", pick(g, [b"0", b"1", b"2", b"-1", b"abc"])], lambda g: [b"MAXLEN", pick(g, [b"0", b"1", b"3", b"-1"])], [b"RANK"], [b"FOO"]], 3))
gen("smismember")(lambda g: [b"SMISMEMBER", K(g)] + many(g, S))
gen("smove")(lambda g: [b"SMOVE", K(g), K(g), S(g)])
gen("sinterstore")(lambda g: [b"SINTERSTORE", K(g)] + many(g, K))
gen("sunionstore")(lambda g: [b"SUNIONSTORE", K(g)] + many(g, K))
gen("sdiffstore")(lambda g: [b"SDIFFSTORE", K(g)] + many(g, K))
gen("sintercard")(lambda g: [b"SINTERCARD", pick(g, [b"1", b"2", b"3", b"0", b"-1", b"abc", b"9"])] + many(g, K, 1, 3) + opts(g, [lambda g: [b"LIMIT", pick(g, [b"0", b"1", b"2", b"-1", b"abc"])], [b"LIMIT"]], 1))

# sorted-set algebra and ZRANDMEMBER
def zop_args(g, store, card):
    n = pick(g, [1, 2, 2, 3])
    nk = pick(g, [str(n).encode()] * 6 + [b"0", b"-1", b"abc", b"9"])
    a = ([K(g)] if store else []) + [nk] + [K(g) for _ in range(n)]
    if card:
        return a + opts(g, [lambda g: [b"LIMIT", pick(g, [b"0", b"1", b"2", b"-1", b"abc"])]], 1)
    return a + opts(g, [lambda g: [b"WEIGHTS"] + [pick(g, [b"1", b"2", b"-1", b"0", b"0.5", b"inf", b"abc"]) for _ in range(n)],
                        lambda g: [b"AGGREGATE", pick(g, [b"SUM", b"MIN", b"MAX", b"max", b"FOO"])],
                        [b"WITHSCORES"], [b"FOO"]], 2)
gen("zunion")(lambda g: [b"ZUNION"] + zop_args(g, 0, 0))
gen("zinter")(lambda g: [b"ZINTER"] + zop_args(g, 0, 0))
gen("zdiff")(lambda g: [b"ZDIFF"] + zop_args(g, 0, 0))
gen("zunionstore")(lambda g: [b"ZUNIONSTORE"] + zop_args(g, 1, 0))
gen("zinterstore")(lambda g: [b"ZINTERSTORE"] + zop_args(g, 1, 0))
gen("zdiffstore")(lambda g: [b"ZDIFFSTORE"] + zop_args(g, 1, 0))
gen("zintercard")(lambda g: [b"ZINTERCARD"] + zop_args(g, 0, 1))
gen("zrandmember")(lambda g: [b"ZRANDMEMBER", K(g)] + ([I(g) if g.random() < 0.3 else SI(g)] + ([pick(g, [b"WITHSCORES", b"withscores", b"FOO"])] if g.random() < 0.5 else []) if g.random() < 0.7 else []))

# bitmaps
BITOFF = [b"0", b"1", b"7", b"8", b"15", b"100", b"-1", b"abc", b"100000", b"4294967296", b""]
RANGE = [b"0", b"1", b"-1", b"2", b"-2", b"5", b"-100", b"100", b"abc", b"-9223372036854775808"]
gen("setbit", 2)(lambda g: [b"SETBIT", K(g), pick(g, BITOFF[:7] * 3 + BITOFF), pick(g, [b"0", b"1", b"1", b"2", b"-1", b"abc"])])
gen("getbit")(lambda g: [b"GETBIT", K(g), pick(g, BITOFF)])
gen("bitcount", 2)(lambda g: [b"BITCOUNT", K(g)] + ([pick(g, RANGE), pick(g, RANGE)] + opts(g, [[b"BIT"], [b"BYTE"], [b"FOO"]], 1) if g.random() < 0.7 else opts(g, [[b"1"]], 1)))
gen("bitpos", 2)(lambda g: [b"BITPOS", K(g), pick(g, [b"0", b"1", b"2", b"abc"])] + [pick(g, RANGE) for _ in range(g.randint(0, 2))] + opts(g, [[b"BIT"], [b"BYTE"], [b"FOO"]], 1))
gen("bitop")(lambda g: [b"BITOP", pick(g, [b"AND", b"OR", b"XOR", b"NOT", b"not", b"FOO"]), K(g)] + many(g, K, 1, 3))

# SORT
SORT_OPTS = [[b"ASC"], [b"DESC"], [b"ALPHA"], lambda g: [b"LIMIT", SI(g), SI(g)], [b"LIMIT"],
             lambda g: [b"BY", pick(g, [b"nosort", b"x", b"w_*"])], lambda g: [b"GET", pick(g, [b"#", b"#", b"c", b"h_*->f"])],
             [b"FOO"]]
gen("sort", 2)(lambda g: [b"SORT", K(g)] + opts(g, SORT_OPTS + [lambda g: [b"STORE", K(g)]], 3))
gen("sort_ro")(lambda g: [b"SORT_RO", K(g)] + opts(g, SORT_OPTS + [lambda g: [b"STORE", K(g)]], 3))

gen("lcs", 2)(lambda g: [b"LCS", K(g), K(g)] + opts(g, [[b"LEN"], [b"IDX"], [b"WITHMATCHLEN"], lambda g: [b"MINMATCHLEN", pick(g, [b"0", b"1", b"2", b"-1", b"abc"])], [b"MINMATCHLEN"], [b"FOO"]], 3))

BFTYPE = [b"u8", b"i8", b"u1", b"i1", b"u16", b"i64", b"u63", b"u64", b"i65", b"i0", b"x8", b"u", b""]
BFOFF = [b"0", b"1", b"7", b"8", b"#1", b"#2", b"100", b"-1", b"abc", b"#-1", b"4294967296"]
BFVAL = [b"0", b"1", b"-1", b"100", b"255", b"256", b"-129", b"9223372036854775807", b"-9223372036854775808", b"abc"]
def bf_ops(g, ro):
    out = []
    for _ in range(g.randint(0, 3)):
        k = g.randint(0, 9)
        if k < 4 or ro and k < 8:
            out += [b"GET", pick(g, BFTYPE), pick(g, BFOFF)]
        elif k < 6:
            out += [b"SET", pick(g, BFTYPE), pick(g, BFOFF), pick(g, BFVAL)]
        elif k < 8:
            out += [b"INCRBY", pick(g, BFTYPE), pick(g, BFOFF), pick(g, BFVAL)]
        elif k < 9:
            out += [b"OVERFLOW", pick(g, [b"WRAP", b"SAT", b"FAIL", b"fail", b"FOO"])]
        else:
            out += [pick(g, [b"GET", b"FOO", b"SET"])]
    return out
gen("bitfield", 2)(lambda g: [b"BITFIELD", K(g)] + bf_ops(g, False))
gen("bitfield_ro")(lambda g: [b"BITFIELD_RO", K(g)] + bf_ops(g, True))


def random_command(g, names, weights):
    name = g.choices(names, weights)[0]
    args = GEN[name][0](g)
    if g.random() < 0.01:  # wrong arity now and then
        args = args[:g.randint(1, max(1, len(args) - 1))]
    return args


# ------------------------------------------------------------------------------------------------
# Running

def random_shape_ok(args, rv, sv, before):
    """Compares the replies of a random command by shape. before: redis's dump of the key."""
    name = args[0].decode("latin-1").lower()
    if rv[0] != sv[0]:
        return False
    if rv[0] in ("error", "status", "int", "nil", "nilarray"):
        return rv == sv
    if name == "randomkey":
        return rv[0] == sv[0] == "bulk"
    members = set()
    if before is not None and before[1] is not None and before[1][0] == "array":
        for e in before[1][1]:
            members.add(e[1] if not isinstance(e, tuple) or e[0] != "array" else None)
        if before[0] == b"hash":
            members = {p[0][1] for p in before[1][1]}
    if rv[0] == "bulk":
        return sv[1] in members if members else True
    if rv[0] == "array":
        if len(rv[1]) != len(sv[1]):
            return False
        if name == "spop" or (name == "srandmember" and args[2:] and not args[2].startswith(b"-")):
            got = [e[1] for e in sv[1]]
            if len(set(got)) != len(got):
                return False
        return True
    return False


def run(driver_exe, seeds, count, verbose, script=None, paranoid=False):
    if shutil.which("redis-server") is None:
        print("kvdiff: redis-server is not installed (scripts/setup.sh installs it): skipped")
        return 77
    tmp = tempfile.mkdtemp(prefix="shmdict-kvdiff-")
    server = None
    diffs = allowed_n = total = 0
    try:
        server, redis = start_redis(tmp)
        if script is not None:
            drv = Driver(driver_exe, os.path.join(tmp, "store"))
            for line in open(script, encoding="utf-8", errors="surrogateescape"):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                args = [a.encode("utf-8", "surrogateescape") for a in shlex.split(line)]
                ra, rv = redis.call(args)
                sa, sv = drv.call(args)
                total += 1
                why = same(args, ra, rv, sa, sv)
                if why or verbose:
                    print("%s %s\n   redis:   %s\n   shmdict: %s" % ("DIFF" if why else "same", line, cut(ra), cut(sa)))
                    diffs += why is not None
            drv.close()
            print("kvdiff: %d commands, %d differ" % (total, diffs))
            return 1 if diffs else 0
        names = sorted(GEN)
        weights = [GEN[n][1] for n in names]
        for seed in seeds:
            redis.call([b"FLUSHALL"])
            redis.call([b"SELECT", b"0"])
            store = os.path.join(tmp, "store%d" % seed)
            drv = Driver(driver_exe, store)
            g = random.Random(seed)
            db = 0
            for i in range(count):
                if g.random() < 0.01:
                    db = g.choice([0, 0, 1, 2])
                    args = [b"SELECT", str(db).encode()]
                else:
                    args = random_command(g, names, weights)
                name = args[0].decode("latin-1").lower()
                if name == "lcs" and len(args) > 2:
                    # LCS builds a (len1 + 1) x (len2 + 1) table on both sides (up to 512 MB each):
                    # keep it small on a shared machine
                    la, lb = (redis.call([b"STRLEN", k])[1] for k in args[1:3])
                    if la[0] == lb[0] == "int" and (la[1] + 1) * (lb[1] + 1) > 1000000:
                        args = [b"STRLEN", args[1]]
                        name = "strlen"
                if name in ("copy", "dump", "restore") and len(args) > 3 and name == "restore" and args[3].startswith(PAYLOAD_OF):
                    src = args[3][len(PAYLOAD_OF):].lstrip(b"!?")
                else:
                    src = args[1] if name in ("copy", "dump") and len(args) > 1 else None
                if src is not None:
                    # SETRANGE / SETBIT make strings of up to 512 MB; copies of them (COPY, DUMP +
                    # RESTORE into other keys and databases) would multiply that on a shared machine
                    ln = redis.call([b"STRLEN", src])[1]
                    if ln[0] == "int" and ln[1] > 1000000:
                        args = [b"STRLEN", src]
                        name = "strlen"
                if name == "restore" and len(args) > 3 and args[3].startswith(PAYLOAD_OF):
                    args = list(args)
                    args[3] = restore_payload(redis, args[3][len(PAYLOAD_OF):])
                before = None
                if (name in RANDOM_CMDS or name in ("sort", "sort_ro")) and len(args) > 1:
                    before = key_state(redis, args[1])
                if name == "dbsize":
                    # Redis's DBSIZE also counts keys whose time is up but that no lookup or active-
                    # expiry cycle has deleted yet (SET ... EXAT 1 leaves one; KEYS only hides it):
                    # a full SCAN deletes them first, so both count the keys that exist
                    cur = b"0"
                    while True:
                        cur = redis.call([b"SCAN", cur, b"COUNT", b"1000"])[1][1][0][1]
                        if cur == b"0":
                            break
                lex_undefined = False
                if is_lex(args) and len(args) > 1:
                    lex_undefined = lex_is_undefined(redis, args[2] if name == "zrangestore" else args[1])
                ra, rv = redis.call(args)
                sa, sv = drv.call(args)
                total += 1
                if name in RANDOM_CMDS:
                    ok = random_shape_ok(args, rv, sv, before)
                    why = None if ok else "shape"
                    if name == "spop" and len(args) > 1:
                        copy_key(redis, drv, args[1])
                elif name == "dump" and len(args) == 2:
                    why = check_dump(redis, args[1], rv, sv)
                else:
                    why = same(args, ra, rv, sa, sv)
                if paranoid and not why:
                    for k in set(args[1:]) & set(KEYS):
                        a, b = no_neg_zero(key_state(redis, k)), key_state(drv, k)
                        if a != b:
                            why = "state of %r: redis %s shmdict %s" % (k, cut(repr(a).encode(), 120), cut(repr(b).encode(), 120))
                            break
                if why:
                    reason = allowed(args, rv, sv, before)
                    if reason is None and lex_undefined:
                        reason = LEX_WHY
                    if reason is None and ra.replace(b"$2\r\n-0\r\n", b"$1\r\n0\r\n") == sa:
                        reason = NEG_ZERO_WHY
                    if reason:
                        allowed_n += 1
                        if name in ("sort", "sort_ro") and len(args) > 1:
                            pass
                    else:
                        diffs += 1
                        if diffs <= 40 or verbose:
                            print("seed %d #%d DIFF (%s) %s\n   redis:   %s\n   shmdict: %s" % (seed, i, why, cut(repr(args).encode()), cut(ra), cut(sa)))
                    # keep the keyspaces equal after an answered difference
                    for k in set(args[1:]) & set(KEYS):
                        copy_key(redis, drv, k)
            for d in range(16):
                a, b = keyspace(redis, d), keyspace(drv, d)
                if a != b:
                    for k in sorted(set(a) | set(b)):
                        if a.get(k) != b.get(k):
                            diffs += 1
                            print("seed %d keyspace db %d key %r\n   redis:   %s\n   shmdict: %s" % (seed, d, k, cut(repr(a.get(k)).encode()), cut(repr(b.get(k)).encode())))
            redis.call([b"SELECT", b"0"])
            drv.close()
        print("kvdiff: %d commands over seeds %s: %d differences, %d allowed differences" % (
            total, ",".join(map(str, seeds)), diffs, allowed_n))
        print("%d passed, %d failed" % (total - diffs, diffs))
        return 1 if diffs else 0
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    # meson's timeout (and kill) send SIGTERM: leave through the finally that stops redis-server
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--driver", required=True)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--script")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--paranoid", action="store_true", help="compare the keys of every command after it (slow)")
    o = ap.parse_args()
    return run(o.driver, [int(s) for s in o.seeds.split(",")], o.count, o.verbose, o.script, o.paranoid)


if __name__ == "__main__":
    sys.exit(main())
