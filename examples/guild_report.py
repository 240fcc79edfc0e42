#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""guild_report: what an operator asks of the game's store, from Python, while the server runs.

Reads the store that examples/guild_friends builds (database 0):
  p:<id>          "<name>:<level>:<guild>:<xp>"
  g:<gid>:members set of player ids         g:<gid>:top  sorted set, member = player id, score = xp
  f:<id>          friend list: little-endian uint32 player ids

  guild_report.py [-d DIR] [-s STORE] top-guilds [-n 10] [--by xp|members|best]
  guild_report.py [-d DIR] [-s STORE] friends PLAYER
  guild_report.py [-d DIR] [-s STORE] guild GID [-n 10]

Only reads; each call is one short transaction in the store, so the game server writing the
store is never held up for long (the guild walk uses SCAN, not KEYS). Needs the shmdict module on
PYTHONPATH (the build directory's python/, or an installed copy).
"""
import argparse
import struct
import sys

import shmdict


def player(store, pid):
    """(name, level, guild, xp) of a player, or None."""
    rec = store.get("p:%d" % pid)
    if rec is None:
        return None
    name, level, guild, xp = rec.decode().split(":")
    return name, int(level), int(guild), int(xp)


def top_guilds(store, n, by):
    rows = []
    for key in store.scan_iter(match="g:*:top", count=500, _type="zset"):
        gid = int(key.split(b":")[1])
        if by == "members":
            score = store.zcard(key)
        elif by == "best":
            best = store.zrange(key, 0, 0, desc=True, withscores=True)
            score = int(best[0][1]) if best else 0
        else:  # total xp of the members
            score = int(sum(s for _, s in store.zrange(key, 0, -1, withscores=True)))
        rows.append((score, gid))
    rows.sort(key=lambda r: (-r[0], r[1]))
    print("top %d guilds by %s (of %d):" % (min(n, len(rows)), by, len(rows)))
    for rank, (score, gid) in enumerate(rows[:n], 1):
        print("%3d. guild %-6d %s=%d members=%d" % (rank, gid, by, score, store.zcard("g:%d:top" % gid)))
    return rows[:n]


def friends(store, pid):
    me = player(store, pid)
    if me is None:
        print("no player %d" % pid)
        return None
    blob = store.get("f:%d" % pid) or b""
    ids = struct.unpack("<%dI" % (len(blob) // 4), blob[: len(blob) // 4 * 4])
    out = []
    for i in range(0, len(ids), 100):  # MGET in batches: one short read each
        recs = store.mget(["p:%d" % f for f in ids[i:i + 100]])
        for fid, rec in zip(ids[i:i + 100], recs):
            if rec is not None:
                name, level, guild, xp = rec.decode().split(":")
                out.append((fid, name, int(level), int(guild)))
    print("%s (level %d, guild %d) has %d friends:" % (me[0], me[1], me[2], len(out)))
    for fid, name, level, guild in out:
        rank = store.zrevrank("g:%d:top" % guild, fid)
        print("  %-14s level %-3d guild %-6d rank in guild %s" % (name, level, guild,
                                                                 "-" if rank is None else rank + 1))
    return out


def guild(store, gid, n):
    key = "g:%d:top" % gid
    top = store.zrevrange(key, 0, n - 1, withscores=True)
    print("guild %d: %d members, top %d:" % (gid, store.zcard(key), len(top)))
    for rank, (pid, xp) in enumerate(top, 1):
        p = player(store, int(pid))
        print("%3d. %-14s level %-3d xp %d" % (rank, p[0] if p else pid.decode(), p[1] if p else 0, int(xp)))
    return top


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-d", "--dir", default=None, help="store directory (default $SHMDICT_DIR or /dev/shm/shmdict)")
    ap.add_argument("-s", "--store", default="guild_friends")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("top-guilds")
    t.add_argument("-n", type=int, default=10)
    t.add_argument("--by", choices=["xp", "members", "best"], default="xp")
    f = sub.add_parser("friends")
    f.add_argument("player", type=int)
    g = sub.add_parser("guild")
    g.add_argument("gid", type=int)
    g.add_argument("-n", type=int, default=10)
    a = ap.parse_args(argv)
    try:
        store = shmdict.open(a.store, a.dir, create=False)
    except shmdict.Error as e:
        print("guild_report: %s" % e.args[0], file=sys.stderr)
        return 1
    with store:
        if a.cmd == "top-guilds":
            top_guilds(store, a.n, a.by)
        elif a.cmd == "friends":
            if friends(store, a.player) is None:
                return 1
        else:
            guild(store, a.gid, a.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
