/* SPDX-License-Identifier: MIT */
/*
 * The keyspace benchmark: shmdict's keyspace in process against redis-server over loopback
 * (hiredis), and the hot restart of the guild_friends example against rebuilding its data from a
 * file. Driven by google-benchmark through the C shim (shim.h); the figure is the counter
 * ns_per_op. Names are "<workload>/<system>":
 *
 *   kv_get, kv_set, kv_hset, kv_zadd, kv_zrank on the same data in both systems, built before the
 *   clock starts: 1 000 000 string keys "k:<i>" (32-byte values), 1 000 hashes "h:<j>" of 1 000
 *   fields "f:<i>", 1 000 sorted sets "z:<j>" of 1 000 members "m:<i>" (j = i mod 1000). Every
 *   operation picks i uniformly at random (the same sequence for every system):
 *     GET k:i | SET k:i v | HSET h:j f:i v | ZADD z:j <random score> m:i | ZRANK z:j m:i
 *   Systems:
 *     shmdict        the typed functions of kv.h (shmd_kv_get, _set, _hset, _zadd, _zrank);
 *     shmdict_cmd    the generic entry point shmd_kv_command() (what a RESP server would run);
 *     redis          one request at a time (redisCommandArgv: write, wait for the reply);
 *     redis_pipe64   pipelined batches of 64 requests (64 x redisAppendCommandArgv, then 64
 *                    replies); ns_per_op is per request.
 *   The redis-server is started by this program on a random loopback port with --save ''
 *   --appendonly no, under `timeout` (it dies after BK_REDIS_LIFETIME seconds whatever happens to
 *   us) and stopped at exit.
 *
 *   kv_mem/shmdict, kv_mem/redis  memory per key: 1M string keys (16-byte keys, 32-byte values)
 *                            in a fresh store / database 1 of the redis-server; the counter
 *                            bytes_per_key is shmdict's allocator bytes in use (shmd_stats) or
 *                            Redis's INFO used_memory added by the load, over the keys; the timed
 *                            loop is random GETs of those keys (see bm_mem).
 *
 *   restart_<N>/attach       a fresh process (this binary re-executed) attaches to the store of
 *                            the guild_friends example with N players (shmd_open) and answers the
 *                            first query (GET p:<id>, ZREVRANK of the player in its guild's
 *                            leaderboard). The timed region runs from the "go" written to the
 *                            ready child to its answer (one pipe round trip included); the
 *                            child's own attach and first-answer times are counters.
 *   restart_<N>/reload_file  rebuild the same store from a file (a RESP command stream, as
 *                            `shmdict dump --format resp` writes, produced once by this program
 *                            with SCAN / TYPE / GET / SMEMBERS / ZRANGE) into a fresh store
 *                            through shmd_kv_command(), then answer the same first query.
 *   N comes from $BENCH_KV_PLAYERS (comma separated, default "100000,1000000"); the stores are
 *   built by running the example ($GUILD_FRIENDS, default the path meson compiled in) in a
 *   private directory under /dev/shm, removed at exit.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "shim.h"
#include "shmdict.h"

#ifndef BK_GUILD_FRIENDS
#define BK_GUILD_FRIENDS "guild_friends"
#endif

extern char **environ;

enum {
  NKEYS = 1000000,
  NCONT = 1000, /* hashes and sorted sets */
  VAL_LEN = 32,
  PIPE = 64,
  BK_REDIS_LIFETIME = 1800,
  MAX_SIZES = 4,
};

static char priv_dir[64];    /* private directory for every store and file, "" when none */
static shmd_store_t *kv_store;
static redisContext *rc_ctx;
static pid_t redis_pid;
static int redis_port;
static char keybuf[NKEYS][12]; /* "k:<i>" */
static unsigned char keylen[NKEYS];
static char value[VAL_LEN + 1] = "v-0123456789abcdef0123456789abcd";

static uint64_t sizes[MAX_SIZES];
static int nsizes;
static int store_built[MAX_SIZES];

/* Store handles stay open until exit: the keyspace caches each thread's root per (handle address,
 * segment-0 address), and a store opened after another was closed may get both addresses back and
 * be handed the closed store's root (a bug in kv/keyspace.c, reported). Dropped stores keep their
 * memory until then. */
static shmd_store_t *kept[256];
static int nkept;

static void keep(shmd_store_t *s) {
  if (nkept < (int)(sizeof kept / sizeof kept[0]))
    kept[nkept++] = s;
}

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static inline uint64_t rng(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* ---------------------------------------------------------------------------------------------- */
/* Clean-up. */

static void remove_dir(const char *path) {
  DIR *d = opendir(path);
  if (d != NULL) {
    struct dirent *e;
    char sub[512];
    while ((e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
        continue;
      snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
      if (unlink(sub) != 0)
        remove_dir(sub);
    }
    closedir(d);
  }
  rmdir(path);
}

static void stop_redis(void) {
  if (rc_ctx != NULL) {
    redisFree(rc_ctx);
    rc_ctx = NULL;
  }
  if (redis_pid > 0) {
    kill(redis_pid, SIGTERM);
    waitpid(redis_pid, NULL, 0);
    redis_pid = 0;
  }
}

static void cleanup(void) {
  stop_redis();
  if (kv_store != NULL) {
    shmd_close(kv_store);
    kv_store = NULL;
  }
  while (nkept > 0)
    shmd_close(kept[--nkept]);
  if (priv_dir[0] != '\0') {
    remove_dir(priv_dir);
    priv_dir[0] = '\0';
  }
}

static void on_signal(int sig) {
  if (redis_pid > 0)
    kill(redis_pid, SIGTERM);
  if (priv_dir[0] != '\0')
    remove_dir(priv_dir);
  signal(sig, SIG_DFL);
  raise(sig);
}

static int ensure_dir(shim_state_t *st) {
  if (priv_dir[0] != '\0')
    return 0;
  snprintf(priv_dir, sizeof priv_dir, "/dev/shm/shmdict-bench-kv-XXXXXX");
  if (mkdtemp(priv_dir) == NULL) {
    priv_dir[0] = '\0';
    shim_skip_with_error(st, "mkdtemp under /dev/shm failed");
    return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* The keyspace data set, in shmdict and in Redis. */

static void fmt_key(char *out, size_t cap, char prefix, uint64_t i) {
  snprintf(out, cap, "%c:%" PRIu64, prefix, i);
}

static int prepare_shmdict(shim_state_t *st) {
  if (kv_store != NULL)
    return 0;
  if (ensure_dir(st))
    return -1;
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = priv_dir;
  o.flags = SHMD_OPEN_EXCL;
  o.first_segment_bytes = 256u << 20;
  o.segment_bytes = 256u << 20;
  int rc = shmd_open("kv", &o, &kv_store);
  if (rc) {
    shim_skip_with_error(st, shmd_strerror(rc));
    return -1;
  }
  char h[16], f[16];
  for (uint64_t i = 0; i < NKEYS; i++) {
    fmt_key(h, sizeof h, 'h', i % NCONT);
    fmt_key(f, sizeof f, 'f', i);
    char z[16], m[16];
    fmt_key(z, sizeof z, 'z', i % NCONT);
    fmt_key(m, sizeof m, 'm', i);
    if ((rc = shmd_kv_set(kv_store, 0, keybuf[i], keylen[i], value, VAL_LEN, 0)) ||
        (rc = shmd_kv_hset(kv_store, 0, h, strlen(h), f, strlen(f), value, VAL_LEN, NULL)) ||
        (rc = shmd_kv_zadd(kv_store, 0, z, strlen(z), (double)(i * 7919 % 1000003), m, strlen(m),
                           NULL))) {
      shim_skip_with_error(st, shmd_strerror(rc));
      return -1;
    }
  }
  return 0;
}

static int start_redis(shim_state_t *st) {
  if (rc_ctx != NULL)
    return 0;
  uint64_t seed = (uint64_t)now_ns() ^ (uint64_t)getpid();
  for (int attempt = 0; attempt < 5; attempt++) {
    redis_port = 20000 + (int)(rng(&seed) % 40000);
    char port[16], life[16];
    snprintf(port, sizeof port, "%d", redis_port);
    snprintf(life, sizeof life, "%d", BK_REDIS_LIFETIME);
    char *argv[] = {"timeout", life, "redis-server", "--port", port, "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel",
                    "warning", "--logfile", "/dev/null", NULL};
    if (posix_spawnp(&redis_pid, "timeout", NULL, NULL, argv, environ) != 0) {
      redis_pid = 0;
      shim_skip_with_error(st, "cannot start redis-server (through timeout)");
      return -1;
    }
    for (int i = 0; i < 100 && rc_ctx == NULL; i++) {
      struct timespec ts = {0, 50 * 1000 * 1000};
      nanosleep(&ts, NULL);
      if (waitpid(redis_pid, NULL, WNOHANG) == redis_pid) {
        redis_pid = 0;
        break; /* port taken? try another */
      }
      redisContext *c = redisConnect("127.0.0.1", redis_port);
      if (c != NULL && !c->err)
        rc_ctx = c;
      else if (c != NULL)
        redisFree(c);
    }
    if (rc_ctx != NULL)
      break;
    stop_redis();
  }
  if (rc_ctx == NULL) {
    shim_skip_with_error(st, "redis-server did not answer on loopback");
    return -1;
  }
  /* Load the same data, pipelined. */
  char h[16], f[16], z[16], m[16], sc[24];
  size_t n = 0;
  for (uint64_t i = 0; i < NKEYS; i++) {
    fmt_key(h, sizeof h, 'h', i % NCONT);
    fmt_key(f, sizeof f, 'f', i);
    fmt_key(z, sizeof z, 'z', i % NCONT);
    fmt_key(m, sizeof m, 'm', i);
    snprintf(sc, sizeof sc, "%" PRIu64, i * 7919 % 1000003);
    redisAppendCommand(rc_ctx, "SET %b %b", keybuf[i], (size_t)keylen[i], value, (size_t)VAL_LEN);
    redisAppendCommand(rc_ctx, "HSET %s %s %b", h, f, value, (size_t)VAL_LEN);
    redisAppendCommand(rc_ctx, "ZADD %s %s %s", z, sc, m);
    n += 3;
    if (n >= 3000 || i + 1 == NKEYS) {
      for (; n > 0; n--) {
        void *r;
        if (redisGetReply(rc_ctx, &r) != REDIS_OK) {
          shim_skip_with_error(st, "redis: loading failed");
          return -1;
        }
        freeReplyObject(r);
      }
    }
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* The keyspace benchmarks. */

typedef enum { OP_GET, OP_SET, OP_HSET, OP_ZADD, OP_ZRANK, OP_COUNT } op_t;
typedef enum { SYS_SHMDICT, SYS_CMD, SYS_REDIS, SYS_PIPE, SYS_COUNT } sys_t;
static const char *const op_names[OP_COUNT] = {"kv_get", "kv_set", "kv_hset", "kv_zadd", "kv_zrank"};
static const char *const sys_names[SYS_COUNT] = {"shmdict", "shmdict_cmd", "redis", "redis_pipe64"};

/* The arguments of one operation on key index i (score from the generator for ZADD). */
typedef struct { int argc; const char *argv[5]; size_t lens[5]; char b1[16], b2[16], b3[24]; } args_t;

static inline void make_args(op_t op, uint64_t i, uint64_t score, args_t *a) {
  switch (op) {
  case OP_GET:
    a->argc = 2, a->argv[0] = "GET", a->argv[1] = keybuf[i], a->lens[1] = keylen[i];
    break;
  case OP_SET:
    a->argc = 3, a->argv[0] = "SET", a->argv[1] = keybuf[i], a->lens[1] = keylen[i];
    a->argv[2] = value, a->lens[2] = VAL_LEN;
    break;
  case OP_HSET:
    a->argc = 4, a->argv[0] = "HSET";
    a->lens[1] = (size_t)snprintf(a->b1, sizeof a->b1, "h:%" PRIu64, i % NCONT), a->argv[1] = a->b1;
    a->lens[2] = (size_t)snprintf(a->b2, sizeof a->b2, "f:%" PRIu64, i), a->argv[2] = a->b2;
    a->argv[3] = value, a->lens[3] = VAL_LEN;
    break;
  case OP_ZADD:
    a->argc = 4, a->argv[0] = "ZADD";
    a->lens[1] = (size_t)snprintf(a->b1, sizeof a->b1, "z:%" PRIu64, i % NCONT), a->argv[1] = a->b1;
    a->lens[2] = (size_t)snprintf(a->b3, sizeof a->b3, "%" PRIu64, score), a->argv[2] = a->b3;
    a->lens[3] = (size_t)snprintf(a->b2, sizeof a->b2, "m:%" PRIu64, i), a->argv[3] = a->b2;
    break;
  default:
    a->argc = 3, a->argv[0] = "ZRANK";
    a->lens[1] = (size_t)snprintf(a->b1, sizeof a->b1, "z:%" PRIu64, i % NCONT), a->argv[1] = a->b1;
    a->lens[2] = (size_t)snprintf(a->b2, sizeof a->b2, "m:%" PRIu64, i), a->argv[2] = a->b2;
    break;
  }
  a->lens[0] = strlen(a->argv[0]);
}

static int typed_op(op_t op, args_t *a, uint64_t score) {
  char buf[64];
  size_t len;
  uint64_t rank;
  switch (op) {
  case OP_GET:
    return shmd_kv_get(kv_store, 0, a->argv[1], a->lens[1], buf, sizeof buf, &len);
  case OP_SET:
    return shmd_kv_set(kv_store, 0, a->argv[1], a->lens[1], a->argv[2], a->lens[2], 0);
  case OP_HSET:
    return shmd_kv_hset(kv_store, 0, a->argv[1], a->lens[1], a->argv[2], a->lens[2], a->argv[3],
                        a->lens[3], NULL);
  case OP_ZADD:
    return shmd_kv_zadd(kv_store, 0, a->argv[1], a->lens[1], (double)score, a->argv[3], a->lens[3],
                        NULL);
  default:
    return shmd_kv_zrank(kv_store, 0, a->argv[1], a->lens[1], a->argv[2], a->lens[2], 0, &rank);
  }
}

static void bm_kv(shim_state_t *st, void *arg) {
  uintptr_t code = (uintptr_t)arg;
  op_t op = (op_t)(code / SYS_COUNT);
  sys_t sys = (sys_t)(code % SYS_COUNT);
  if (sys <= SYS_CMD ? prepare_shmdict(st) : start_redis(st))
    return;
  uint64_t seed = 42, ops = 0, errors = 0;
  args_t a;
  for (uint64_t n; (n = shim_batch(st)) != 0;) {
    if (sys == SYS_SHMDICT) {
      for (uint64_t k = 0; k < n; k++) {
        uint64_t i = rng(&seed) % NKEYS, score = rng(&seed) % 1000003;
        make_args(op, i, score, &a);
        errors += typed_op(op, &a, score) != 0;
      }
      ops += n;
    } else if (sys == SYS_CMD) {
      for (uint64_t k = 0; k < n; k++) {
        uint64_t i = rng(&seed) % NKEYS, score = rng(&seed) % 1000003;
        make_args(op, i, score, &a);
        shmd_reply_t *r = NULL;
        if (shmd_kv_command(kv_store, a.argc, a.argv, a.lens, &r) != 0 || r->type == SHMD_REPLY_ERROR)
          errors++;
        shmd_reply_free(r);
      }
      ops += n;
    } else if (sys == SYS_REDIS) {
      for (uint64_t k = 0; k < n; k++) {
        uint64_t i = rng(&seed) % NKEYS, score = rng(&seed) % 1000003;
        make_args(op, i, score, &a);
        redisReply *r = redisCommandArgv(rc_ctx, a.argc, a.argv, a.lens);
        if (r == NULL || r->type == REDIS_REPLY_ERROR)
          errors++;
        if (r)
          freeReplyObject(r);
      }
      ops += n;
    } else {
      /* n batches of 64 requests. */
      for (uint64_t k = 0; k < n; k++) {
        for (int j = 0; j < PIPE; j++) {
          uint64_t i = rng(&seed) % NKEYS, score = rng(&seed) % 1000003;
          make_args(op, i, score, &a);
          redisAppendCommandArgv(rc_ctx, a.argc, a.argv, a.lens);
        }
        for (int j = 0; j < PIPE; j++) {
          redisReply *r;
          if (redisGetReply(rc_ctx, (void **)&r) != REDIS_OK) {
            errors++;
            break;
          }
          errors += r->type == REDIS_REPLY_ERROR;
          freeReplyObject(r);
        }
      }
      ops += n * PIPE;
    }
  }
  shim_set_ops(st, (double)ops);
  if (errors)
    shim_counter(st, "errors", (double)errors);
}

/* ---------------------------------------------------------------------------------------------- */
/* Memory per key: 1M string keys of 16 bytes ("key:%012u") with 32-byte values, loaded into a
 * fresh store (shmdict) or database 1 of the redis-server above. The counter bytes_per_key is
 * shmdict's allocator bytes in use (shmd_stats allocated_bytes: every allocated object at its
 * size-class size, as Redis counts jemalloc's usable sizes) added by the load, over the keys;
 * Redis's is INFO memory's used_memory added by the load, over the keys. The timed loop is random
 * GETs of those keys (typed shmd_kv_get / one request at a time). */

enum { MEM_KEYS = 1000000, MEM_KEY_LEN = 16 };

static void mem_key(char *out, uint64_t i) { snprintf(out, MEM_KEY_LEN + 1, "key:%012" PRIu64, i); }

static shmd_store_t *mem_store;
static double mem_per_key[2];

static int mem_shmdict(shim_state_t *st) {
  if (mem_store != NULL)
    return 0;
  if (ensure_dir(st))
    return -1;
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = priv_dir;
  o.flags = SHMD_OPEN_EXCL;
  o.first_segment_bytes = 256u << 20;
  o.segment_bytes = 256u << 20;
  int rc = shmd_open("mem", &o, &mem_store);
  if (rc == 0)
    keep(mem_store); /* closed at exit, with the others */
  shmd_stats_t a, b;
  char k[MEM_KEY_LEN + 1];
  /* the keyspace and database 0 exist before the first figure */
  if (rc == 0 && (rc = shmd_kv_set(mem_store, 0, "x", 1, "x", 1, 0)) == 0)
    rc = shmd_kv_del(mem_store, 0, "x", 1);
  if (rc == 0)
    rc = shmd_stats(mem_store, &a);
  for (uint64_t i = 0; rc == 0 && i < MEM_KEYS; i++) {
    mem_key(k, i);
    rc = shmd_kv_set(mem_store, 0, k, MEM_KEY_LEN, value, VAL_LEN, 0);
  }
  if (rc == 0)
    rc = shmd_stats(mem_store, &b);
  if (rc) {
    shim_skip_with_error(st, shmd_strerror(rc));
    return -1;
  }
  mem_per_key[0] = (double)(b.allocated_bytes - a.allocated_bytes) / MEM_KEYS;
  return 0;
}

static long long redis_used_memory(redisContext *c) {
  redisReply *r = redisCommand(c, "INFO memory");
  long long v = -1;
  const char *p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "used_memory:") : NULL;
  if (p)
    v = strtoll(p + strlen("used_memory:"), NULL, 10);
  if (r)
    freeReplyObject(r);
  return v;
}

static int mem_redis(shim_state_t *st) {
  if (mem_per_key[1] > 0)
    return 0;
  if (start_redis(st))
    return -1;
  /* a connection of its own on database 1, so the kv_* benchmarks' connection stays on 0 */
  redisContext *c = redisConnect("127.0.0.1", redis_port);
  redisReply *r = c && !c->err ? redisCommand(c, "SELECT 1") : NULL;
  int ok = r != NULL && r->type == REDIS_REPLY_STATUS;
  if (r)
    freeReplyObject(r);
  long long before = ok ? redis_used_memory(c) : -1;
  char k[MEM_KEY_LEN + 1];
  size_t n = 0;
  for (uint64_t i = 0; ok && before >= 0 && i < MEM_KEYS; i++) {
    mem_key(k, i);
    redisAppendCommand(c, "SET %b %b", k, (size_t)MEM_KEY_LEN, value, (size_t)VAL_LEN);
    if (++n == 1000 || i + 1 == MEM_KEYS)
      for (; n > 0; n--) {
        void *rr;
        if (redisGetReply(c, &rr) != REDIS_OK) {
          ok = 0;
          break;
        }
        freeReplyObject(rr);
      }
  }
  long long after = ok && before >= 0 ? redis_used_memory(c) : -1;
  if (c)
    redisFree(c);
  if (after < 0) {
    shim_skip_with_error(st, "redis: loading the memory data set failed");
    return -1;
  }
  mem_per_key[1] = (double)(after - before) / MEM_KEYS;
  return 0;
}

static void bm_mem(shim_state_t *st, void *arg) {
  int redis = arg != NULL;
  if (redis ? mem_redis(st) : mem_shmdict(st))
    return;
  redisContext *c = NULL;
  if (redis) {
    c = redisConnect("127.0.0.1", redis_port);
    redisReply *r = c && !c->err ? redisCommand(c, "SELECT 1") : NULL;
    if (r)
      freeReplyObject(r);
    if (r == NULL) {
      if (c)
        redisFree(c);
      shim_skip_with_error(st, "redis: cannot connect for the memory data set");
      return;
    }
  }
  uint64_t seed = 43, ops = 0, errors = 0;
  char k[MEM_KEY_LEN + 1], buf[64];
  for (uint64_t n; (n = shim_batch(st)) != 0;) {
    for (uint64_t j = 0; j < n; j++) {
      mem_key(k, rng(&seed) % MEM_KEYS);
      if (redis) {
        redisReply *r = redisCommand(c, "GET %b", k, (size_t)MEM_KEY_LEN);
        errors += r == NULL || r->type != REDIS_REPLY_STRING;
        if (r)
          freeReplyObject(r);
      } else {
        size_t len;
        errors += shmd_kv_get(mem_store, 0, k, MEM_KEY_LEN, buf, sizeof buf, &len) != 0;
      }
    }
    ops += n;
  }
  if (c)
    redisFree(c);
  shim_set_ops(st, (double)ops);
  shim_counter(st, "bytes_per_key", mem_per_key[redis]);
  shim_counter(st, "keys", MEM_KEYS);
  if (errors)
    shim_counter(st, "errors", (double)errors);
}

/* ---------------------------------------------------------------------------------------------- */
/* Hot restart. */

static const char *gf_exe(void) {
  const char *e = getenv("GUILD_FRIENDS");
  return e && *e ? e : BK_GUILD_FRIENDS;
}

static void gf_name(char *out, size_t cap, uint64_t players) {
  snprintf(out, cap, "gf%" PRIu64, players);
}

/* Builds the example's store of `players` players (once). */
static int prepare_gf(shim_state_t *st, int idx) {
  if (store_built[idx])
    return 0;
  if (ensure_dir(st))
    return -1;
  char cmd[1024], name[32];
  gf_name(name, sizeof name, sizes[idx]);
  snprintf(cmd, sizeof cmd, "'%s' -d '%s' -s %s -n %" PRIu64 " >&2 2>/dev/null", gf_exe(), priv_dir,
           name, sizes[idx]);
  fprintf(stderr, "bench_kv: building the example's store: %s\n", cmd);
  if (system(cmd) != 0) {
    shim_skip_with_error(st, "building the guild_friends store failed (set GUILD_FRIENDS?)");
    return -1;
  }
  store_built[idx] = 1;
  return 0;
}

/* The first query: the player's record, then its rank in its guild's leaderboard. */
static int first_answer(shmd_store_t *s, uint64_t id) {
  char key[32], val[128], idstr[24];
  size_t len;
  int kl = snprintf(key, sizeof key, "p:%" PRIu64, id);
  int rc = shmd_kv_get(s, 0, key, (size_t)kl, val, sizeof val - 1, &len);
  if (rc)
    return rc;
  val[len] = 0;
  unsigned level;
  uint64_t guild, xp;
  const char *p = strchr(val, ':');
  if (p == NULL || sscanf(p + 1, "%u:%" SCNu64 ":%" SCNu64, &level, &guild, &xp) != 3)
    return SHMD_ECORRUPT;
  kl = snprintf(key, sizeof key, "g:%" PRIu64 ":top", guild);
  int il = snprintf(idstr, sizeof idstr, "%" PRIu64, id);
  uint64_t rank;
  return shmd_kv_zrank(s, 0, key, (size_t)kl, idstr, (size_t)il, 1, &rank);
}

/* Child mode: bench_kv --restart-child DIR NAME PLAYERS SEED. Writes "R\n", waits for a byte on
 * stdin, attaches and answers, writes "<attach ns> <first answer ns> <status>\n". */
static int restart_child(char **argv) {
  const char *dir = argv[2], *name = argv[3];
  uint64_t players = strtoull(argv[4], NULL, 10), seed = strtoull(argv[5], NULL, 10);
  uint64_t id = rng(&seed) % players;
  if (write(1, "R\n", 2) != 2)
    return 1;
  char c;
  if (read(0, &c, 1) != 1)
    return 1;
  double t0 = now_ns();
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = dir;
  o.flags = SHMD_OPEN_NOCREATE;
  shmd_store_t *s = NULL;
  int rc = shmd_open(name, &o, &s);
  double t1 = now_ns();
  if (rc == 0)
    rc = first_answer(s, id);
  double t2 = now_ns();
  char out[128];
  int l = snprintf(out, sizeof out, "%.0f %.0f %d\n", t1 - t0, t2 - t1, rc);
  if (write(1, out, (size_t)l) != l)
    return 1;
  shmd_close(s);
  return rc ? 1 : 0;
}

typedef struct { pid_t pid; int to, from; } child_t;

static int spawn_child(int idx, uint64_t seed, child_t *ch) {
  int in[2], out[2];
  if (pipe(in) || pipe(out))
    return -1;
  char name[32], players[24], sd[24];
  gf_name(name, sizeof name, sizes[idx]);
  snprintf(players, sizeof players, "%" PRIu64, sizes[idx]);
  snprintf(sd, sizeof sd, "%" PRIu64, seed);
  char *argv[] = {"bench_kv", "--restart-child", priv_dir, name, players, sd, NULL};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_addclose(&fa, in[1]);
  posix_spawn_file_actions_addclose(&fa, out[0]);
  int rc = posix_spawn(&ch->pid, "/proc/self/exe", &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(in[0]);
  close(out[1]);
  ch->to = in[1];
  ch->from = out[0];
  if (rc)
    return -1;
  char buf[4];
  return read(ch->from, buf, 2) == 2 ? 0 : -1;
}

static void reap(child_t *ch) {
  close(ch->to);
  close(ch->from);
  waitpid(ch->pid, NULL, 0);
}

static void bm_attach(shim_state_t *st, void *arg) {
  int idx = (int)(uintptr_t)arg;
  if (prepare_gf(st, idx))
    return;
  uint64_t seed = 7, done = 0;
  double attach = 0, first = 0;
  int failed = 0;
  child_t ch;
  if (spawn_child(idx, rng(&seed), &ch)) {
    shim_skip_with_error(st, "cannot spawn the restart child");
    return;
  }
  for (uint64_t n; (n = shim_batch(st)) != 0;) {
    for (uint64_t k = 0; k < n; k++) {
      char buf[128] = {0};
      ssize_t l = 0;
      if (write(ch.to, "G", 1) == 1)
        l = read(ch.from, buf, sizeof buf - 1);
      shim_pause(st);
      double a = 0, f = 0;
      int status = -1;
      if (l <= 0 || sscanf(buf, "%lf %lf %d", &a, &f, &status) != 3 || status != 0)
        failed = 1;
      attach += a, first += f, done++;
      reap(&ch);
      if (!failed && spawn_child(idx, rng(&seed), &ch))
        failed = 1;
      shim_resume(st);
      if (failed)
        break;
    }
    if (failed)
      break;
  }
  if (failed) {
    shim_skip_with_error(st, "the restart child failed");
    return;
  }
  reap(&ch);
  shim_set_ops(st, (double)done);
  shim_counter(st, "attach_ms", attach / (double)done / 1e6);
  shim_counter(st, "first_answer_ms", first / (double)done / 1e6);
  shim_counter(st, "players", (double)sizes[idx]);
}

/* ---- Dump (once per size) and reload. */

static void put_resp(FILE *f, int argc, const char *const *argv, const size_t *lens) {
  fprintf(f, "*%d\r\n", argc);
  for (int i = 0; i < argc; i++) {
    fprintf(f, "$%zu\r\n", lens[i]);
    fwrite(argv[i], 1, lens[i], f);
    fputs("\r\n", f);
  }
}

static shmd_reply_t *run(shmd_store_t *s, int argc, const char *const *argv, const size_t *lens) {
  shmd_reply_t *r = NULL;
  if (shmd_kv_command(s, argc, argv, lens, &r) != 0)
    return NULL;
  return r;
}

/* Writes `prefix key elems...` commands, at most 64 elements per command. */
static void put_batched(FILE *f, const char *cmd, const char *key, size_t klen, shmd_reply_t *r,
                        int pairs_swapped) {
  const char *argv[2 + 128];
  size_t lens[2 + 128];
  argv[0] = cmd, lens[0] = strlen(cmd), argv[1] = key, lens[1] = klen;
  size_t step = pairs_swapped ? 2 : 1;
  for (size_t k = 0; k < r->nelems;) {
    int n = 2;
    for (; k + step - 1 < r->nelems && n < 2 + 128; k += step) {
      if (pairs_swapped) { /* ZRANGE WITHSCORES gives member, score; ZADD wants score, member */
        argv[n] = r->elems[k + 1].str, lens[n++] = r->elems[k + 1].len;
        argv[n] = r->elems[k].str, lens[n++] = r->elems[k].len;
      } else {
        argv[n] = r->elems[k].str, lens[n++] = r->elems[k].len;
      }
    }
    put_resp(f, n, argv, lens);
  }
}

static int dump_store(shmd_store_t *s, const char *path, uint64_t *keys_out) {
  FILE *f = fopen(path, "w");
  if (f == NULL)
    return -1;
  char cursor[32] = "0";
  uint64_t keys = 0;
  for (;;) {
    const char *argv[] = {"SCAN", cursor, "COUNT", "1000"};
    size_t lens[] = {4, strlen(cursor), 5, 4};
    shmd_reply_t *r = run(s, 4, argv, lens);
    if (r == NULL || r->type != SHMD_REPLY_ARRAY || r->nelems != 2)
      return fclose(f), -1;
    snprintf(cursor, sizeof cursor, "%s", r->elems[0].str);
    shmd_reply_t *ks = &r->elems[1];
    for (size_t k = 0; k < ks->nelems; k++) {
      const char *key = ks->elems[k].str;
      size_t klen = ks->elems[k].len;
      const char *ta[] = {"TYPE", key};
      size_t tl[] = {4, klen};
      shmd_reply_t *t = run(s, 2, ta, tl);
      if (t == NULL)
        return fclose(f), -1;
      shmd_reply_t *v = NULL;
      if (!strcmp(t->str, "string")) {
        const char *ga[] = {"GET", key};
        v = run(s, 2, ga, (size_t[]){3, klen});
        if (v && v->type == SHMD_REPLY_BULK)
          put_resp(f, 3, (const char *[]){"SET", key, v->str}, (size_t[]){3, klen, v->len});
      } else if (!strcmp(t->str, "set")) {
        const char *ga[] = {"SMEMBERS", key};
        v = run(s, 2, ga, (size_t[]){8, klen});
        if (v && v->type == SHMD_REPLY_ARRAY)
          put_batched(f, "SADD", key, klen, v, 0);
      } else if (!strcmp(t->str, "zset")) {
        const char *ga[] = {"ZRANGE", key, "0", "-1", "WITHSCORES"};
        v = run(s, 5, ga, (size_t[]){6, klen, 1, 2, 10});
        if (v && v->type == SHMD_REPLY_ARRAY)
          put_batched(f, "ZADD", key, klen, v, 1);
      } else if (!strcmp(t->str, "hash")) {
        const char *ga[] = {"HGETALL", key};
        v = run(s, 2, ga, (size_t[]){7, klen});
        if (v && v->type == SHMD_REPLY_ARRAY)
          put_batched(f, "HSET", key, klen, v, 0);
      } else if (!strcmp(t->str, "list")) {
        const char *ga[] = {"LRANGE", key, "0", "-1"};
        v = run(s, 4, ga, (size_t[]){6, klen, 1, 2});
        if (v && v->type == SHMD_REPLY_ARRAY)
          put_batched(f, "RPUSH", key, klen, v, 0);
      }
      shmd_reply_free(v);
      shmd_reply_free(t);
      keys++;
    }
    shmd_reply_free(r);
    if (!strcmp(cursor, "0"))
      break;
  }
  *keys_out = keys;
  return fclose(f) == 0 ? 0 : -1;
}

/* Parses a RESP command stream from memory and runs each command; returns commands run or -1. */
static int64_t load_resp(shmd_store_t *s, const char *p, const char *end) {
  int64_t cmds = 0;
  const char *argv[256];
  size_t lens[256];
  while (p < end) {
    if (*p != '*')
      return -1;
    char *e;
    long argc = strtol(p + 1, &e, 10);
    if (argc < 1 || argc > 256 || e + 2 > end)
      return -1;
    p = e + 2;
    for (long i = 0; i < argc; i++) {
      if (p >= end || *p != '$')
        return -1;
      long len = strtol(p + 1, &e, 10);
      p = e + 2;
      if (len < 0 || p + len + 2 > end)
        return -1;
      argv[i] = p, lens[i] = (size_t)len;
      p += len + 2;
    }
    shmd_reply_t *r = NULL;
    if (shmd_kv_command(s, (int)argc, argv, lens, &r) != 0 || r->type == SHMD_REPLY_ERROR) {
      shmd_reply_free(r);
      return -1;
    }
    shmd_reply_free(r);
    cmds++;
  }
  return cmds;
}

static void bm_reload(shim_state_t *st, void *arg) {
  int idx = (int)(uintptr_t)arg;
  if (prepare_gf(st, idx))
    return;
  char name[32], path[256];
  gf_name(name, sizeof name, sizes[idx]);
  snprintf(path, sizeof path, "%s/%s.resp", priv_dir, name);
  struct stat sb;
  uint64_t keys = 0;
  if (stat(path, &sb) != 0) {
    shmd_options_t o;
    shmd_options_init(&o);
    o.dir = priv_dir;
    o.flags = SHMD_OPEN_NOCREATE;
    shmd_store_t *s = NULL;
    double t0 = now_ns();
    int orc = shmd_open(name, &o, &s);
    if (orc == 0)
      keep(s);
    if (orc != 0 || dump_store(s, path, &keys) != 0) {
      shim_skip_with_error(st, "dumping the example's store failed");
      return;
    }
    fprintf(stderr, "bench_kv: dumped %" PRIu64 " keys to %s in %.1f s\n", keys, path,
            (now_ns() - t0) / 1e9);
    if (stat(path, &sb) != 0) {
      shim_skip_with_error(st, "dump file vanished");
      return;
    }
  }
  uint64_t seed = 7, done = 0;
  int failed = 0;
  for (uint64_t n; (n = shim_batch(st)) != 0;) {
    for (uint64_t k = 0; k < n && !failed; k++) {
      /* Timed: read the file, create the store, run every command, answer the first query. */
      char rname[48];
      snprintf(rname, sizeof rname, "reload%" PRIu64, done);
      int fd = open(path, O_RDONLY);
      char *buf = fd >= 0 ? malloc((size_t)sb.st_size) : NULL;
      if (buf == NULL || read(fd, buf, (size_t)sb.st_size) != sb.st_size) {
        failed = 1;
      } else {
        shmd_options_t o;
        shmd_options_init(&o);
        o.dir = priv_dir;
        o.flags = SHMD_OPEN_EXCL;
        o.segment_bytes = 256ull << 20;
        shmd_store_t *s = NULL;
        int orc = shmd_open(rname, &o, &s);
        if (orc == 0)
          keep(s);
        if (orc != 0 || load_resp(s, buf, buf + sb.st_size) < 0 ||
            first_answer(s, rng(&seed) % sizes[idx]) != 0)
          failed = 1;
        shim_pause(st);
        shmd_drop(rname, priv_dir);
        shim_resume(st);
      }
      if (fd >= 0)
        close(fd);
      free(buf);
      done++;
    }
    if (failed)
      break;
  }
  if (failed) {
    shim_skip_with_error(st, "reloading from the file failed");
    return;
  }
  shim_set_ops(st, (double)done);
  shim_counter(st, "file_mib", (double)sb.st_size / 1048576.0);
  shim_counter(st, "players", (double)sizes[idx]);
}

/* ---------------------------------------------------------------------------------------------- */

static void size_label(char *out, size_t cap, uint64_t n) {
  if (n % 1000000 == 0)
    snprintf(out, cap, "%" PRIu64 "m", n / 1000000);
  else if (n % 1000 == 0)
    snprintf(out, cap, "%" PRIu64 "k", n / 1000);
  else
    snprintf(out, cap, "%" PRIu64, n);
}

int main(int argc, char **argv) {
  if (argc >= 6 && !strcmp(argv[1], "--restart-child"))
    return restart_child(argv);

  const char *env = getenv("BENCH_KV_PLAYERS");
  char list[256];
  snprintf(list, sizeof list, "%s", env && *env ? env : "100000,1000000");
  for (char *tok = strtok(list, ","); tok && nsizes < MAX_SIZES; tok = strtok(NULL, ","))
    if (strtoull(tok, NULL, 10) >= 2)
      sizes[nsizes++] = strtoull(tok, NULL, 10);

  for (uint64_t i = 0; i < NKEYS; i++)
    keylen[i] = (unsigned char)snprintf(keybuf[i], sizeof keybuf[i], "k:%" PRIu64, i);

  char name[96], lab[24];
  for (int op = 0; op < OP_COUNT; op++)
    for (int sys = 0; sys < SYS_COUNT; sys++) {
      snprintf(name, sizeof name, "%s/%s", op_names[op], sys_names[sys]);
      shim_register(name, bm_kv, (void *)(uintptr_t)(op * SYS_COUNT + sys));
    }
  shim_register("kv_mem/shmdict", bm_mem, NULL);
  shim_register("kv_mem/redis", bm_mem, (void *)1);
  for (int i = 0; i < nsizes; i++) {
    size_label(lab, sizeof lab, sizes[i]);
    snprintf(name, sizeof name, "restart_%s/attach", lab);
    shim_register(name, bm_attach, (void *)(uintptr_t)i);
    snprintf(name, sizeof name, "restart_%s/reload_file", lab);
    shim_register(name, bm_reload, (void *)(uintptr_t)i);
  }
  char buf[256];
  snprintf(buf, sizeof buf, "%d keys, %d hashes and sorted sets of %d, values of %d B", NKEYS, NCONT,
           NKEYS / NCONT, VAL_LEN);
  shim_context("kv_data", buf);
  snprintf(buf, sizeof buf, "hiredis %d.%d.%d", HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
  shim_context("hiredis", buf);
  FILE *p = popen("redis-server --version 2>/dev/null", "r");
  if (p != NULL) {
    if (fgets(buf, sizeof buf, p) != NULL) {
      buf[strcspn(buf, "\n")] = 0;
      shim_context("redis", buf);
    }
    pclose(p);
  }
  atexit(cleanup);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGHUP, on_signal);
  int rc = shim_run(argc, argv);
  cleanup();
  return rc;
}
