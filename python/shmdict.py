# SPDX-License-Identifier: MIT
"""shmdict for Python: open a shmdict store and use its keyspace as you would use Redis.

    import shmdict
    s = shmdict.open("guild_friends")            # dir=None: $SHMDICT_DIR, else /dev/shm/shmdict
    s.set("greeting", "hello")
    s.get("greeting")                            # b'hello'
    s.execute("ZRANGE", "g:7:top", 0, 9, "REV", "WITHSCORES")   # [b'42', b'36120', ...]
    for key in s.scan_iter(match="g:*:top"):     # SCAN, never blocks the store for long
        ...

Replies have Redis's types as redis-py gives them without decoding: bulk and status replies are
bytes, integers int, arrays list, nil None. A command's error reply raises ResponseError with
Redis's text ("WRONGTYPE Operation against a key holding the wrong kind of value"); a failure of
the library (a missing store with create=False, a damaged store, too many threads) raises Error,
whose args are (message, status, status name). Arguments may be bytes, str (UTF-8), int or float.

Every call releases the GIL while the store works, so other Python threads keep running; a Store
may be used by several threads (each gets its own lane in the store), but must not be closed while
another thread uses it. The store is the same one C, C++ and the `shmdict` CLI see: a script can
read a live store while the game server writes it. The C part is shmdict_core (python/
shmdict_core.c); docs/python.md is the guide.
"""

import shmdict_core as _core
from shmdict_core import DATABASES, Error, ResponseError

__all__ = ["open", "drop", "Store", "Error", "ResponseError", "DATABASES"]


class Store(_core.Store):
    """An open store (see open()). get, set, hget, hset, zrank, execute and check are C calls;
    the helpers below are thin wrappers over execute()."""

    # ---- lifetime
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        if self.closed:
            return "<shmdict.Store (closed)>"
        return "<shmdict.Store %r db=%d>" % (self.name, self.db)

    # ---- facts
    def info(self):
        """A dict: layout version, segments, lanes, store/allocated/free bytes, recoveries, and the
        key counts of this handle's database (keys, strings, hashes, lists, sets, zsets, expires)."""
        return self._info()

    def dbsize(self):
        return self.execute("DBSIZE")

    # ---- keys and strings
    def delete(self, *names):
        return self.execute("DEL", *names)

    def exists(self, *names):
        return self.execute("EXISTS", *names)

    def type(self, name):
        return self.execute("TYPE", name)

    def expire(self, name, seconds):
        return self.execute("EXPIRE", name, seconds) == 1

    def ttl(self, name):
        return self.execute("TTL", name)

    def incr(self, name, amount=1):
        return self.execute("INCRBY", name, amount)

    def mget(self, keys, *args):
        return self.execute("MGET", *(list(keys) if not isinstance(keys, (str, bytes)) else [keys]), *args)

    def keys(self, pattern="*"):
        return self.execute("KEYS", pattern)

    def scan(self, cursor=0, match=None, count=None, _type=None):
        """One SCAN step: (next cursor, [keys])."""
        args = ["SCAN", cursor]
        if match is not None:
            args += ["MATCH", match]
        if count is not None:
            args += ["COUNT", count]
        if _type is not None:
            args += ["TYPE", _type]
        nxt, keys = self.execute(*args)
        return int(nxt), keys

    def scan_iter(self, match=None, count=None, _type=None):
        """Every key (matching `match`, of type `_type`), by SCAN steps: a key present for the
        whole iteration is returned, others may or may not be; no step holds the store long."""
        cursor = 0
        while True:
            cursor, keys = self.scan(cursor, match, count, _type)
            yield from keys
            if cursor == 0:
                return

    # ---- hashes
    def hgetall(self, name):
        flat = self.execute("HGETALL", name)
        return dict(zip(flat[::2], flat[1::2]))

    def hdel(self, name, *fields):
        return self.execute("HDEL", name, *fields)

    def hlen(self, name):
        return self.execute("HLEN", name)

    def hincrby(self, name, field, amount=1):
        return self.execute("HINCRBY", name, field, amount)

    # ---- sets
    def sadd(self, name, *values):
        return self.execute("SADD", name, *values)

    def srem(self, name, *values):
        return self.execute("SREM", name, *values)

    def smembers(self, name):
        return set(self.execute("SMEMBERS", name))

    def sismember(self, name, value):
        return self.execute("SISMEMBER", name, value) == 1

    def scard(self, name):
        return self.execute("SCARD", name)

    # ---- lists
    def lpush(self, name, *values):
        return self.execute("LPUSH", name, *values)

    def rpush(self, name, *values):
        return self.execute("RPUSH", name, *values)

    def lpop(self, name):
        return self.execute("LPOP", name)

    def rpop(self, name):
        return self.execute("RPOP", name)

    def lrange(self, name, start, end):
        return self.execute("LRANGE", name, start, end)

    def llen(self, name):
        return self.execute("LLEN", name)

    # ---- sorted sets
    _ZADD_BATCH = 50  # a command adds at most 55 members (docs/commands.md)

    def zadd(self, name, mapping, nx=False, xx=False):
        """ZADD name {member: score, ...}: the number of new members. Big mappings go in batches
        of 50 members, each one atomic command."""
        flags = (["NX"] if nx else []) + (["XX"] if xx else [])
        items = list(mapping.items())
        added = 0
        for i in range(0, len(items), self._ZADD_BATCH):
            args = ["ZADD", name, *flags]
            for member, score in items[i:i + self._ZADD_BATCH]:
                args += [score, member]
            added += self.execute(*args)
        return added

    def zrem(self, name, *members):
        return self.execute("ZREM", name, *members)

    def zscore(self, name, member):
        v = self.execute("ZSCORE", name, member)
        return None if v is None else float(v)

    def zcard(self, name):
        return self.execute("ZCARD", name)

    def zrevrank(self, name, member):
        return self.zrank(name, member, reverse=True)

    def zrange(self, name, start, end, desc=False, withscores=False):
        """ZRANGE by rank: [member, ...], or [(member, score), ...] with withscores."""
        args = ["ZRANGE", name, start, end] + (["REV"] if desc else []) + (["WITHSCORES"] if withscores else [])
        flat = self.execute(*args)
        if not withscores:
            return flat
        return [(m, float(s)) for m, s in zip(flat[::2], flat[1::2])]

    def zrevrange(self, name, start, end, withscores=False):
        return self.zrange(name, start, end, desc=True, withscores=withscores)

    def zrangebyscore(self, name, min, max, withscores=False):
        flat = self.execute("ZRANGEBYSCORE", name, min, max, *(["WITHSCORES"] if withscores else []))
        if not withscores:
            return flat
        return [(m, float(s)) for m, s in zip(flat[::2], flat[1::2])]


def open(name, dir=None, db=0, create=True, **sizes):
    """Opens (creating it unless create=False) the store `name` in `dir` ($SHMDICT_DIR, else
    /dev/shm/shmdict, when None) and returns a Store on database `db`. `sizes` may give
    first_segment_bytes, segment_bytes, max_store_bytes (used only when the store is created)."""
    return Store(name, dir, db, create, **sizes)


def drop(name, dir=None):
    """Removes the store's files; False when there was no such store."""
    return _core.drop(name, dir)
