/* SPDX-License-Identifier: MIT */
/*
 * guild_friends: the hot-restart example. A game server keeps its players, guilds, leaderboards
 * and friend lists in a shmdict store; when the server is killed or upgraded, the next process
 * attaches to the store in milliseconds instead of reloading everything.
 *
 *   guild_friends [-d DIR] [-s STORE] [-n PLAYERS] [--friends N] [--player ID] [--rebuild]
 *                 [--populate] [--check] [--crash-during-update] [--friends-as-sets]
 *
 * First run (no store, or a store without the marker key): builds N players (default 1 000 000),
 * N/20 guilds and N*F friend entries (default F = 50), with a progress bar on a terminal, prints
 * the memory used, then answers the lookups. Later runs attach (shmd_open), answer the same lookups
 * and print how long the attach and the first answer took. --crash-during-update starts a batch of
 * level-ups (each one transaction: the player's record and the guild leaderboard change together)
 * and SIGKILLs itself in the middle of one; the next run's shmd_open rolls it back and the run
 * prints the store's recovery count and checks that records and leaderboards agree.
 *
 * The data (database 0), and why it has this shape:
 *
 *   p:<id>          string "<name>:<level>:<guild>:<xp>", e.g. "player000042:37:617:36120".
 *                   One compact string per player rather than a hash of 4 fields: one record and
 *                   one allocation instead of a hash container with 4 entries (about 4x less
 *                   memory and 3-4x faster to build), read with one shmd_kv_get(). A server that
 *                   updates single fields often would choose a hash (HSET p:<id> level 38).
 *   g:<gid>:members set of player ids (decimal), SADD through shmd_kv_command() (kv.h has no
 *                   typed set function).
 *   g:<gid>:top     sorted set: member = player id, score = xp; shmd_kv_zadd() / shmd_kv_zrank(),
 *                   ZRANGE ... REV WITHSCORES through shmd_kv_command() for the top 10.
 *   f:<id>          the friend list: a string of F little-endian uint32 player ids (200 bytes for
 *                   50 friends). 50 friends x 1 000 000 players is 50 million entries: as sets
 *                   (--friends-as-sets, one SADD of F members per player) every entry is a hash
 *                   entry of its own. Measured at 100 000 players: blobs 553 B per player in
 *                   all and 0.3 s for the friend lists; sets 2 825 B per player and 3.1 s, i.e.
 *                   about 2.8 GB and half a minute more at 1 000 000 players. The blob is one
 *                   allocation per player, read with one GET; friend lists are read whole and
 *                   rarely changed, so the blob is the default.
 *   gf:meta         the marker, written last: "players=N guilds=G friends=F layout=1". A store
 *                   without it (a build that was killed) is dropped and rebuilt.
 *
 * The generator is seeded, so the same N gives the same data and the same answers every time.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmdict.h"

#define MAX_FRIENDS 1000
#define META_KEY "gf:meta"
#define UPDATE_BATCH 200 /* level-ups in a --crash-during-update batch; killed at the middle one */

typedef struct cfg_s {
  const char *dir, *name;
  uint64_t players, guilds;
  unsigned friends;
  int64_t player; /* the player the lookups ask about; -1: a default */
  int rebuild, populate, check, crash, friend_sets, players_given;
} cfg_t;

/* ---------------------------------------------------------------------------------------------- */
/* Helpers. */

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* The generated facts of player `id` (a pure function of id, so a run can recompute them). */
static void player_facts(uint64_t id, uint64_t guilds, uint64_t *guild, uint64_t *xp) {
  uint64_t s = id * 0x2545f4914f6cdd1dull + 1;
  *guild = splitmix(&s) % guilds;
  *xp = splitmix(&s) % 1000000;
}

static unsigned level_of(uint64_t xp) { return (unsigned)(1 + xp / 10000); }

static void die(const char *what, int rc) {
  fprintf(stderr, "guild_friends: %s: %s%s%s\n", what, shmd_strerror(rc),
          shmd_errdetail()[0] ? " -- " : "", shmd_errdetail());
  exit(1);
}

/* Runs one command given as NUL-terminated words; returns the reply (caller frees). */
static shmd_reply_t *cmd(shmd_store_t *s, int argc, const char *const argv[]) {
  size_t lens[16];
  for (int i = 0; i < argc; i++)
    lens[i] = strlen(argv[i]);
  shmd_reply_t *r = NULL;
  int rc = shmd_kv_command(s, argc, argv, lens, &r);
  if (rc)
    die(argv[0], rc);
  if (r->type == SHMD_REPLY_ERROR) {
    fprintf(stderr, "guild_friends: %s: %s\n", argv[0], r->str);
    exit(1);
  }
  return r;
}

static int progress_tty;

static void progress(const char *what, uint64_t done, uint64_t total, double t0) {
  if (!progress_tty)
    return;
  if (done != total && (done & 4095) != 0)
    return;
  int width = 40, fill = total ? (int)(done * width / total) : width;
  char bar[64];
  for (int i = 0; i < width; i++)
    bar[i] = i < fill ? '#' : '.';
  bar[width] = 0;
  fprintf(stderr, "\r%-9s [%s] %3d%% %" PRIu64 "/%" PRIu64 " %.1f s", what, bar,
          total ? (int)(done * 100 / total) : 100, done, total, (now_ms() - t0) / 1e3);
  if (done == total)
    fputc('\n', stderr);
  fflush(stderr);
}

/* Resident memory of this process in MiB (from /proc/self/statm), or -1. */
static double resident_mib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size, res;
  int ok = f != NULL && fscanf(f, "%lu %lu", &size, &res) == 2;
  if (f != NULL)
    fclose(f);
  return ok ? res * (double)sysconf(_SC_PAGESIZE) / 1048576.0 : -1;
}

/* ---------------------------------------------------------------------------------------------- */
/* Building. */

static void build(shmd_store_t *s, const cfg_t *c) {
  char key[64], val[128];
  double t0 = now_ms();

  /* Players, guild member sets and leaderboards. */
  for (uint64_t id = 0; id < c->players; id++) {
    uint64_t guild, xp;
    player_facts(id, c->guilds, &guild, &xp);
    int kl = snprintf(key, sizeof key, "p:%" PRIu64, id);
    int vl = snprintf(val, sizeof val, "player%06" PRIu64 ":%u:%" PRIu64 ":%" PRIu64, id,
                      level_of(xp), guild, xp);
    int rc = shmd_kv_set(s, 0, key, (size_t)kl, val, (size_t)vl, 0);
    if (rc)
      die("SET", rc);
    char gkey[48], idstr[24];
    snprintf(gkey, sizeof gkey, "g:%" PRIu64 ":members", guild);
    snprintf(idstr, sizeof idstr, "%" PRIu64, id);
    const char *sadd[] = {"SADD", gkey, idstr};
    shmd_reply_free(cmd(s, 3, sadd));
    kl = snprintf(gkey, sizeof gkey, "g:%" PRIu64 ":top", guild);
    rc = shmd_kv_zadd(s, 0, gkey, (size_t)kl, (double)xp, idstr, strlen(idstr), NULL);
    if (rc)
      die("ZADD", rc);
    progress("players", id + 1, c->players, t0);
  }
  double t_players = now_ms() - t0;

  /* Friend lists. */
  double t1 = now_ms();
  uint64_t seed = 0x5eed;
  uint32_t ids[MAX_FRIENDS];
  for (uint64_t id = 0; id < c->players; id++) {
    int kl = snprintf(key, sizeof key, "f:%" PRIu64, id);
    for (unsigned k = 0; k < c->friends; k++) {
      uint64_t f = splitmix(&seed) % c->players;
      if (f == id)
        f = (f + 1) % c->players;
      ids[k] = (uint32_t)f;
    }
    if (!c->friend_sets) {
      unsigned char blob[4 * MAX_FRIENDS];
      for (unsigned k = 0; k < c->friends; k++) {
        blob[4 * k] = (unsigned char)ids[k];
        blob[4 * k + 1] = (unsigned char)(ids[k] >> 8);
        blob[4 * k + 2] = (unsigned char)(ids[k] >> 16);
        blob[4 * k + 3] = (unsigned char)(ids[k] >> 24);
      }
      int rc = shmd_kv_set(s, 0, key, (size_t)kl, blob, 4u * c->friends, 0);
      if (rc)
        die("SET friends", rc);
    } else {
      /* One SADD with all the friends (batches of 64 members to bound the transaction). */
      static char words[MAX_FRIENDS][12];
      const char *argv[2 + 64];
      size_t lens[2 + 64];
      argv[0] = "SADD", lens[0] = 4, argv[1] = key, lens[1] = (size_t)kl;
      for (unsigned k = 0; k < c->friends;) {
        int n = 2;
        for (; k < c->friends && n < 2 + 64; k++, n++) {
          lens[n] = (size_t)snprintf(words[k], sizeof words[k], "%" PRIu32, ids[k]);
          argv[n] = words[k];
        }
        shmd_reply_t *r = NULL;
        int rc = shmd_kv_command(s, n, argv, lens, &r);
        if (rc)
          die("SADD friends", rc);
        shmd_reply_free(r);
      }
    }
    progress("friends", id + 1, c->players, t1);
  }
  double t_friends = now_ms() - t1;

  snprintf(val, sizeof val, "players=%" PRIu64 " guilds=%" PRIu64 " friends=%u layout=%d", c->players,
           c->guilds, c->friends, c->friend_sets ? 2 : 1);
  int rc = shmd_kv_set(s, 0, META_KEY, strlen(META_KEY), val, strlen(val), 0);
  if (rc)
    die("SET marker", rc);

  printf("built %" PRIu64 " players, %" PRIu64 " guilds, %" PRIu64 " friend entries (%s) in %.1f s "
         "(players+guilds %.1f s, friends %.1f s)\n",
         c->players, c->guilds, c->players * c->friends, c->friend_sets ? "sets" : "blobs",
         (now_ms() - t0) / 1e3, t_players / 1e3, t_friends / 1e3);
  shmd_stats_t st;
  if ((rc = shmd_stats(s, &st)) == 0)
    printf("memory: store %.1f MiB in %u segments, allocated %.1f MiB (%" PRIu64 " small objects, "
           "%" PRIu64 " large blocks), %.1f bytes per player\n",
           st.store_bytes / 1048576.0, st.segments, st.allocated_bytes / 1048576.0,
           st.small_objs_inuse, st.large_blocks, (double)st.allocated_bytes / (double)c->players);
  fflush(stdout);
}

/* ---------------------------------------------------------------------------------------------- */
/* Lookups. Each prints lines starting with "answer: " (the same for the same data). */

/* Player record -> fields; returns 0 or exits. */
static void get_player(shmd_store_t *s, uint64_t id, char *name, size_t name_cap, unsigned *level,
                       uint64_t *guild, uint64_t *xp) {
  char key[32], val[128];
  size_t len;
  int kl = snprintf(key, sizeof key, "p:%" PRIu64, id);
  int rc = shmd_kv_get(s, 0, key, (size_t)kl, val, sizeof val - 1, &len);
  if (rc)
    die("GET player", rc);
  val[len] = 0;
  char *p1 = strchr(val, ':');
  if (p1 == NULL) {
    fprintf(stderr, "guild_friends: bad record %s\n", val);
    exit(1);
  }
  size_t nl = (size_t)(p1 - val) < name_cap - 1 ? (size_t)(p1 - val) : name_cap - 1;
  memcpy(name, val, nl);
  name[nl] = 0;
  if (sscanf(p1 + 1, "%u:%" SCNu64 ":%" SCNu64, level, guild, xp) != 3) {
    fprintf(stderr, "guild_friends: bad record %s\n", p1 + 1);
    exit(1);
  }
}

/* A player's friends: count and the first 10 with their names. */
static void answer_friends(shmd_store_t *s, const cfg_t *c, uint64_t id) {
  char key[32];
  int kl = snprintf(key, sizeof key, "f:%" PRIu64, id);
  uint32_t ids[MAX_FRIENDS];
  size_t n = 0;
  if (!c->friend_sets) {
    unsigned char blob[4 * MAX_FRIENDS];
    size_t len;
    int rc = shmd_kv_get(s, 0, key, (size_t)kl, blob, sizeof blob, &len);
    if (rc)
      die("GET friends", rc);
    n = len / 4;
    for (size_t k = 0; k < n; k++)
      ids[k] = (uint32_t)blob[4 * k] | (uint32_t)blob[4 * k + 1] << 8 |
               (uint32_t)blob[4 * k + 2] << 16 | (uint32_t)blob[4 * k + 3] << 24;
  } else {
    const char *argv[] = {"SMEMBERS", key};
    shmd_reply_t *r = cmd(s, 2, argv);
    for (size_t k = 0; k < r->nelems && n < MAX_FRIENDS; k++)
      ids[n++] = (uint32_t)strtoul(r->elems[k].str, NULL, 10);
    shmd_reply_free(r);
    /* Set order is the hash's: sort so both layouts print the same way. */
    for (size_t i = 1; i < n; i++)
      for (size_t j = i; j > 0 && ids[j - 1] > ids[j]; j--) {
        uint32_t t = ids[j];
        ids[j] = ids[j - 1];
        ids[j - 1] = t;
      }
  }
  printf("answer: friends of player %" PRIu64 ": %zu:", id, n);
  for (size_t k = 0; k < n && k < 10; k++) {
    char name[64];
    unsigned level;
    uint64_t guild, xp;
    get_player(s, ids[k], name, sizeof name, &level, &guild, &xp);
    printf(" %s(lvl %u)", name, level);
  }
  printf("%s\n", n > 10 ? " ..." : "");
}

static void answer_top10(shmd_store_t *s, uint64_t guild) {
  char key[48];
  snprintf(key, sizeof key, "g:%" PRIu64 ":top", guild);
  const char *argv[] = {"ZRANGE", key, "0", "9", "REV", "WITHSCORES"};
  shmd_reply_t *r = cmd(s, 6, argv);
  printf("answer: top 10 of guild %" PRIu64 ":", guild);
  for (size_t k = 0; k + 1 < r->nelems; k += 2)
    printf(" %s=%s", r->elems[k].str, r->elems[k + 1].str);
  printf("\n");
  shmd_reply_free(r);
}

static void answer_rank(shmd_store_t *s, uint64_t id, uint64_t guild) {
  char key[48], idstr[24];
  int kl = snprintf(key, sizeof key, "g:%" PRIu64 ":top", guild);
  int il = snprintf(idstr, sizeof idstr, "%" PRIu64, id);
  uint64_t rank;
  int rc = shmd_kv_zrank(s, 0, key, (size_t)kl, idstr, (size_t)il, 1, &rank);
  if (rc)
    die("ZREVRANK", rc);
  snprintf(key, sizeof key, "g:%" PRIu64 ":members", guild);
  const char *argv[] = {"SCARD", key};
  shmd_reply_t *r = cmd(s, 2, argv);
  printf("answer: rank of player %" PRIu64 " in guild %" PRIu64 ": %" PRIu64 " of %" PRId64 "\n", id,
         guild, rank + 1, r->integer);
  shmd_reply_free(r);
}

/* The lookups; returns the time of the first answer (the player's record + rank) in ms. */
static double answers(shmd_store_t *s, const cfg_t *c) {
  uint64_t id = c->player >= 0 ? (uint64_t)c->player % c->players : (c->players * 7) / 13;
  double t0 = now_ms();
  char name[64];
  unsigned level;
  uint64_t guild, xp;
  get_player(s, id, name, sizeof name, &level, &guild, &xp);
  char key[48], idstr[24];
  int kl = snprintf(key, sizeof key, "g:%" PRIu64 ":top", guild);
  int il = snprintf(idstr, sizeof idstr, "%" PRIu64, id);
  uint64_t rank;
  int rc = shmd_kv_zrank(s, 0, key, (size_t)kl, idstr, (size_t)il, 1, &rank);
  if (rc)
    die("ZREVRANK", rc);
  double first = now_ms() - t0;
  printf("answer: player %" PRIu64 ": name=%s level=%u guild=%" PRIu64 " xp=%" PRIu64 "\n", id, name,
         level, guild, xp);
  answer_rank(s, id, guild);
  answer_friends(s, c, id);
  answer_top10(s, guild);
  fflush(stdout);
  return first;
}

/* Records and leaderboards agree for the players an update batch touches (the first
 * UPDATE_BATCH ids): xp in p:<id> equals the score in its guild's leaderboard. */
static int verify(shmd_store_t *s, const cfg_t *c) {
  uint64_t n = c->players < UPDATE_BATCH ? c->players : UPDATE_BATCH, bad = 0;
  for (uint64_t id = 0; id < n; id++) {
    char name[64];
    unsigned level;
    uint64_t guild, xp;
    get_player(s, id, name, sizeof name, &level, &guild, &xp);
    char key[48], idstr[24];
    snprintf(key, sizeof key, "g:%" PRIu64 ":top", guild);
    snprintf(idstr, sizeof idstr, "%" PRIu64, id);
    const char *argv[] = {"ZSCORE", key, idstr};
    shmd_reply_t *r = cmd(s, 3, argv);
    if (r->type != SHMD_REPLY_BULK || strtoull(r->str, NULL, 10) != xp || level != level_of(xp))
      bad++;
    shmd_reply_free(r);
  }
  printf("consistency: %s (%" PRIu64 " players' records and leaderboard scores compared, %" PRIu64
         " differ)\n", bad ? "BROKEN" : "ok", n, bad);
  return bad ? 1 : 0;
}

/* A batch of level-ups, each one transaction (record + leaderboard); SIGKILLs itself half-way
 * through the middle one, after the record changed and before the leaderboard did. */
static void crash_during_update(shmd_store_t *s, const cfg_t *c) {
  uint64_t n = c->players < UPDATE_BATCH ? c->players : UPDATE_BATCH;
  printf("update batch: %" PRIu64 " level-ups, each one transaction; SIGKILL in the middle of "
         "number %" PRIu64 "\n", n, n / 2 + 1);
  fflush(stdout);
  for (uint64_t id = 0; id < n; id++) {
    char name[64], key[48], val[128], idstr[24];
    unsigned level;
    uint64_t guild, xp;
    get_player(s, id, name, sizeof name, &level, &guild, &xp);
    xp += 10000;
    shmd_tx_t *tx;
    int rc = shmd_tx_begin(s, &tx);
    if (rc)
      die("tx_begin", rc);
    int kl = snprintf(key, sizeof key, "p:%" PRIu64, id);
    int vl = snprintf(val, sizeof val, "%s:%u:%" PRIu64 ":%" PRIu64, name, level_of(xp), guild, xp);
    if ((rc = shmd_kv_set(s, 0, key, (size_t)kl, val, (size_t)vl, 0)))
      die("SET", rc);
    if (id == n / 2) {
      printf("killing myself (SIGKILL) inside the transaction of player %" PRIu64 "\n", id);
      fflush(stdout);
      raise(SIGKILL);
    }
    kl = snprintf(key, sizeof key, "g:%" PRIu64 ":top", guild);
    int il = snprintf(idstr, sizeof idstr, "%" PRIu64, id);
    if ((rc = shmd_kv_zadd(s, 0, key, (size_t)kl, (double)xp, idstr, (size_t)il, NULL)))
      die("ZADD", rc);
    if ((rc = shmd_tx_commit(tx)))
      die("commit", rc);
  }
}

/* ---------------------------------------------------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f,
          "usage: guild_friends [-d DIR] [-s STORE] [-n PLAYERS] [--friends N] [--player ID]\n"
          "                     [--rebuild] [--populate] [--check] [--crash-during-update]\n"
          "                     [--friends-as-sets]\n"
          "  -d DIR      store directory (default: $SHMDICT_DIR, else /dev/shm/shmdict)\n"
          "  -s STORE    store name (default: guild_friends)\n"
          "  -n PLAYERS  players when building (default 1000000; guilds = players / 20)\n"
          "  --friends N friends per player when building (default 50)\n"
          "  --player ID the player the lookups ask about\n"
          "  --rebuild   drop the store and build it again\n"
          "  --populate  pre-fault the whole store on attach (warm, slower attach)\n"
          "  --check     run the allocator and keyspace checkers after answering\n"
          "  --crash-during-update  SIGKILL this process in the middle of an update batch\n"
          "  --friends-as-sets      store friend lists as sets instead of id blobs\n");
}

static int parse(int argc, char **argv, cfg_t *c) {
  memset(c, 0, sizeof *c);
  c->name = "guild_friends";
  c->players = 1000000;
  c->friends = 50;
  c->player = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-d") && v) c->dir = v, i++;
    else if (!strcmp(a, "-s") && v) c->name = v, i++;
    else if (!strcmp(a, "-n") && v) c->players = strtoull(v, NULL, 10), c->players_given = 1, i++;
    else if (!strcmp(a, "--friends") && v) c->friends = (unsigned)strtoul(v, NULL, 10), i++;
    else if (!strcmp(a, "--player") && v) c->player = strtoll(v, NULL, 10), i++;
    else if (!strcmp(a, "--rebuild")) c->rebuild = 1;
    else if (!strcmp(a, "--populate")) c->populate = 1;
    else if (!strcmp(a, "--check")) c->check = 1;
    else if (!strcmp(a, "--crash-during-update")) c->crash = 1;
    else if (!strcmp(a, "--friends-as-sets")) c->friend_sets = 1;
    else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); exit(0); }
    else { usage(stderr); return -1; }
  }
  if (c->players < 2 || c->players > UINT32_MAX || c->friends > MAX_FRIENDS) {
    fprintf(stderr, "guild_friends: players must be 2..2^32-1 and friends at most %d\n", MAX_FRIENDS);
    return -1;
  }
  c->guilds = c->players / 20 ? c->players / 20 : 1;
  return 0;
}

int main(int argc, char **argv) {
  cfg_t c;
  if (parse(argc, argv, &c))
    return 2;
  progress_tty = isatty(2);
  if (c.rebuild) {
    int rc = shmd_drop(c.name, c.dir);
    if (rc && rc != SHMD_ENOENT)
      die("drop", rc);
  }

  shmd_options_t opt;
  shmd_options_init(&opt);
  opt.dir = c.dir;
  opt.flags = SHMD_OPEN_NOCREATE;
  opt.segment_bytes = 256ull << 20;
  shmd_store_t *s = NULL, *stale = NULL;
  double t0 = now_ms();
  int rc = shmd_open(c.name, &opt, &s);
  double t_attach = now_ms() - t0;

  char meta[128];
  size_t mlen = 0;
  if (rc == 0) {
    rc = shmd_kv_get(s, 0, META_KEY, strlen(META_KEY), meta, sizeof meta - 1, &mlen);
    if (rc == SHMD_ENOTFOUND) {
      printf("store '%s' has no marker (a build was interrupted): dropping it and building again\n",
             c.name);
      /* The old handle stays open until the new store is: closing it first lets the new handle
       * and mapping reuse its addresses, which the keyspace's per-thread root cache mistakes for
       * the old store (a bug in kv/keyspace.c, reported). */
      stale = s;
      s = NULL;
      if ((rc = shmd_drop(c.name, c.dir)))
        die("drop", rc);
      rc = SHMD_ENOENT;
    } else if (rc) {
      die("GET marker", rc);
    }
  }
  if (rc == SHMD_ENOENT) {
    if (c.crash) {
      fprintf(stderr, "guild_friends: --crash-during-update needs a built store\n");
      return 1;
    }
    opt.flags = SHMD_OPEN_EXCL;
    if ((rc = shmd_open(c.name, &opt, &s)))
      die("create store", rc);
    shmd_close(stale);
    printf("building store '%s' in %s: %" PRIu64 " players, %" PRIu64 " guilds, %u friends each\n",
           c.name, shmd_store_dir(s), c.players, c.guilds, c.friends);
    fflush(stdout);
    build(s, &c);
    double first = answers(s, &c);
    printf("first answer (just built, warm): %.3f ms\n", first);
  } else if (rc) {
    die("open", rc);
  } else {
    meta[mlen] = 0;
    unsigned long long np = 0, ng = 0;
    unsigned nf = 0;
    int layout = 1;
    if (sscanf(meta, "players=%llu guilds=%llu friends=%u layout=%d", &np, &ng, &nf, &layout) < 3) {
      fprintf(stderr, "guild_friends: unexpected marker '%s'\n", meta);
      return 1;
    }
    if (c.players_given && c.players != np)
      printf("note: the store holds %llu players, not %" PRIu64 " (--rebuild to build it again)\n",
             np, c.players);
    c.players = np, c.guilds = ng, c.friends = nf, c.friend_sets = layout == 2;
    shmd_store_info_t info;
    shmd_store_info(s, &info);
    printf("attached to store '%s' in %s (%s): %.1f MiB in %u segments, recoveries so far: %" PRIu64
           "\n", c.name, shmd_store_dir(s), meta, info.store_bytes / 1048576.0, info.segments,
           info.recoveries);
    if (c.populate) {
      double tp = now_ms();
      if ((rc = shmd_attach_all(s, 1)))
        die("populate", rc);
      printf("populate (every page pre-faulted): %.1f ms\n", now_ms() - tp);
    }
    if (c.crash) {
      crash_during_update(s, &c);
      return 1; /* not reached */
    }
    double first = answers(s, &c);
    printf("attach (shmd_open): %.3f ms, first answer: %.3f ms, attach + first answer: %.3f ms\n",
           t_attach, first, t_attach + first);
    printf("resident memory of this process after the answers: %.1f MiB (the store is %.1f MiB; "
           "attaching maps, it does not read)\n", resident_mib(), info.store_bytes / 1048576.0);
  }
  int bad = verify(s, &c);
  if (c.check) {
    double tc = now_ms();
    if ((rc = shmd_alloc_check(s)) || (rc = shmd_kv_check(s)))
      die("check", rc);
    printf("check: ok (%.1f ms)\n", now_ms() - tc);
  }
  shmd_close(s);
  return bad;
}
