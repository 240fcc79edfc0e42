/* SPDX-License-Identifier: MIT */
/*
 * The containers benchmark: shmdict's hash and rbtree, driven by google-benchmark through the C
 * shim (shim.h), with the same naming style as bench_alloc: "<operation>/<size>/<implementation>".
 *
 * Keys are 16 bytes, key(i) = {splitmix64(i), i}, values 64 bytes derived from i. A table of N keys
 * (N = 1M or 10M) holds key(0) .. key(N-1); it is built once per process, the first time a
 * benchmark needs it, outside every timed region, and shmdict's hash then finishes its
 * incremental rehash (shmd_hash_rehash_step) so that it is measured at rest.
 *
 *   hash_get/<N>/<impl>     look up a random present key and copy its 64-byte value out;
 *   hash_put/<N>/<impl>     insert a key that is absent (the table holds N - up to 10 000 keys);
 *   hash_delete/<N>/<impl>  delete a present key;
 *   hash_len/1M/shmdict     shmd_hash_len: the fixed cost of a call (transaction, lock), no lookup.
 * put and delete work in chunks of CHUNK keys walked in a scattered order (i -> i * A mod N): put
 * inserts keys deleted (untimed) just before, delete removes keys that are re-inserted (untimed)
 * after each chunk, so the table always holds between N - CHUNK and N keys and never resizes.
 *
 * The implementations:
 *   shmdict   shmd_hash_get / shmd_hash_put (SHMD_HASH_INSERT) / shmd_hash_del on a store in a
 *             private temporary directory under /dev/shm (removed at exit);
 *   inproc    glib's GHashTable in this process (Debian has no package of klib's khash): a key and
 *             its value are one malloc'd 80-byte record, used as both key and value (set mode),
 *             hashed with the same function as shmdict (shmd_hash_bytes, xxh3) and compared with
 *             memcmp; get = g_hash_table_lookup + a 64-byte copy, put = malloc + copy +
 *             g_hash_table_add, delete = g_hash_table_remove (which frees the record).
 *
 *   rbtree_insert/1M/shmdict, rbtree_find/1M/shmdict, rbtree_rank/1M/shmdict: shmd_rbtree_put of
 *             an absent key (chunks as above), shmd_rbtree_get, shmd_rbtree_rank, on a
 *             SHMD_RBTREE_BYTES tree of 1M keys (same keys, 64-byte values).
 *
 *   zset_add/1M/<impl>, zset_rank/1M/<impl>: one sorted set of 1M members keyed as the keyspace
 *             keys its zsets: (score, member) in DOUBLE_BYTES order with an empty value, member
 *             i = "m:<i>", score (i * 7919) mod 1000003 (bench_kv's members and scores; distinct
 *             here). add inserts an absent member (chunks as above), rank ranks a random present
 *             one. <impl> is shmdict (the counted B+tree of btree.h, which the keyspace's zsets
 *             move to) or rbtree (the red-black map the keyspace uses today).
 *   chase/256M: one dependent load per operation through a random cyclic permutation of the
 *             4M cache lines of a 256 MiB array (Sattolo's shuffle): the machine's memory latency
 *             (with TLB misses), the unit of the zset goal (zset_rank/1M <= 5 chase units).
 *
 * Second mode, not google-benchmark: `bench_containers --growth-latency DIR [--keys N]` inserts
 * keys 0 .. N-1 (default 10M) one by one into an empty table, timing every single insert (wall
 * clock, CLOCK_MONOTONIC through the vDSO, one read per insert), for these series:
 *   noop          the loop and the clock read alone: the floor of the measurement (the machine's
 *                 own stalls: preemption, the hypervisor);
 *   shmdict       shmdict's hash with incremental rehash, in a store whose first segment (2 GiB)
 *                 is big enough for everything (no segment growth during the run); its pages are
 *                 touched for the first time by the inserts, as in a new store;
 *   shmdict_warm  the same with the segment pre-faulted (SHMD_OPEN_POPULATE): the hash alone,
 *                 without first-touch page faults;
 *   shmdict_seg   the same in a store that starts at 256 MiB and grows by 256 MiB segments;
 *   shmdict_default  a store opened with the default options (64 MiB first segment, 64 MiB
 *                 growth segments): a cold store as a user gets it, growing by many segments;
 *   inproc        GHashTable, which resizes all at once (stop the world).
 * Each series runs --runs times (default 2) on fresh tables; see growth_series() for how the runs
 * are combined. It prints one JSON object per series (max, percentiles, counts over 100 us and
 * 1 ms) and writes DIR/growth_<series>.csv with the maximum of each block of GROWTH_BLOCK
 * consecutive inserts (for the plot).
 */
#include <dirent.h>
#include <glib.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shim.h"
#include "shmdict.h"

#define BC_INLINE static inline __attribute__((always_inline))
#define BC_UNLIKELY(x) __builtin_expect(!!(x), 0)

enum {
  KEY_LEN = 16,
  VAL_LEN = 64,
  CHUNK = 10000,
  GROWTH_BLOCK = 1000,
};

#define SMALL_N 1000000u
#define BIG_N 10000000u
#define BENCH_FIRST_SEGMENT ((uint64_t)3 << 30) /* benchmarks: 1M + 10M hash + 1M tree */
#define GROWTH_FIRST_SEGMENT ((uint64_t)2 << 30) /* growth runs without segment growth */
#define GROWTH_SEGMENT ((uint64_t)256 << 20)     /* growth run with segment growth */
#define SCATTER UINT64_C(2654435761)             /* odd, not a multiple of 5: coprime to N */

/* ---------------------------------------------------------------------------------------------- */
/* Keys and values. */

BC_INLINE uint64_t splitmix64(uint64_t x) {
  x += UINT64_C(0x9E3779B97F4A7C15);
  x = (x ^ (x >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94D049BB133111EB);
  return x ^ (x >> 31);
}

BC_INLINE void make_key(uint64_t i, uint64_t k[2]) {
  k[0] = splitmix64(i);
  k[1] = i;
}

BC_INLINE void make_val(uint64_t i, uint64_t v[8]) {
  for (int j = 0; j < 8; j++)
    v[j] = i + (uint64_t)j;
}

/* The c-th key of the scattered walk over [0, n). */
BC_INLINE uint64_t scatter(uint64_t c, uint64_t n) { return (c % n) * SCATTER % n; }

BC_INLINE uint64_t rng_next(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * UINT64_C(0x2545F4914F6CDD1D);
}

BC_INLINE uint64_t rng_below(uint64_t bits32, uint64_t n) { return ((bits32 & 0xffffffffu) * n) >> 32; }

/* ---------------------------------------------------------------------------------------------- */
/* Stores: private directories under /dev/shm, removed at exit or on a signal. */

typedef struct bstore_s {
  shmd_store_t *s;
  char dir[64];
} bstore_t;

static bstore_t bench_store;
static bstore_t growth_store;
static const char store_name[] = "bench";

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

static void bstore_close(bstore_t *b) {
  if (b->s != NULL) {
    shmd_close(b->s);
    b->s = NULL;
    shmd_drop(store_name, b->dir);
  }
  if (b->dir[0] != '\0') {
    remove_dir(b->dir);
    b->dir[0] = '\0';
  }
}

/* Opens a fresh store; returns 0 or -1 with a message in err. */
static int bstore_open(bstore_t *b, uint64_t first, uint64_t seg, int populate, char *err,
                       size_t err_len) {
  snprintf(b->dir, sizeof b->dir, "/dev/shm/shmdict-cbench-XXXXXX");
  if (mkdtemp(b->dir) == NULL) {
    b->dir[0] = '\0';
    snprintf(err, err_len, "mkdtemp(/dev/shm/shmdict-cbench-XXXXXX) failed");
    return -1;
  }
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = b->dir;
  o.flags = SHMD_OPEN_EXCL;
  if (populate)
    o.flags |= SHMD_OPEN_POPULATE;
  if (first) /* 0: the library's defaults */
    o.first_segment_bytes = first;
  if (seg)
    o.segment_bytes = seg;
  int rc = shmd_open(store_name, &o, &b->s);
  if (rc != 0) {
    snprintf(err, err_len, "shmd_open(%s in %s): %s (%s)", store_name, b->dir, shmd_strerror(rc),
             shmd_errdetail());
    b->s = NULL;
    bstore_close(b);
    return -1;
  }
  return 0;
}

static void cleanup(void) {
  bstore_close(&bench_store);
  bstore_close(&growth_store);
}

static void on_signal(int sig) {
  if (bench_store.dir[0] != '\0')
    remove_dir(bench_store.dir);
  if (growth_store.dir[0] != '\0')
    remove_dir(growth_store.dir);
  signal(sig, SIG_DFL);
  raise(sig);
}

/* ---------------------------------------------------------------------------------------------- */
/* The in-process baseline: GHashTable in set mode over 80-byte records {key, value}. */

typedef struct rec_s {
  uint64_t key[2];
  uint64_t val[8];
} rec_t;

static guint rec_hash(gconstpointer p) { return (guint)shmd_hash_bytes(p, KEY_LEN, 0); }

static gboolean rec_equal(gconstpointer a, gconstpointer b) { return memcmp(a, b, KEY_LEN) == 0; }

static GHashTable *inproc_new(void) { return g_hash_table_new_full(rec_hash, rec_equal, free, NULL); }

/* Inserts key(i); returns 0, or -1 when out of memory or present. */
BC_INLINE int inproc_put(GHashTable *t, uint64_t i) {
  rec_t *r = malloc(sizeof *r);
  if (BC_UNLIKELY(r == NULL))
    return -1;
  make_key(i, r->key);
  make_val(i, r->val);
  if (BC_UNLIKELY(!g_hash_table_add(t, r)))
    return -1; /* was present (GHashTable kept the new record and freed the old one) */
  return 0;
}

BC_INLINE int inproc_get(GHashTable *t, uint64_t i, uint64_t out[8]) {
  uint64_t k[2];
  make_key(i, k);
  const rec_t *r = g_hash_table_lookup(t, k);
  if (BC_UNLIKELY(r == NULL))
    return -1;
  memcpy(out, r->val, VAL_LEN);
  return 0;
}

BC_INLINE int inproc_del(GHashTable *t, uint64_t i) {
  uint64_t k[2];
  make_key(i, k);
  return g_hash_table_remove(t, k) ? 0 : -1;
}

/* ---------------------------------------------------------------------------------------------- */
/* shmdict's hash and rbtree. */

BC_INLINE int sd_put(shmd_store_t *s, shmd_ptr_t h, uint64_t i) {
  uint64_t k[2], v[8];
  make_key(i, k);
  make_val(i, v);
  return shmd_hash_put(s, h, k, KEY_LEN, v, VAL_LEN, SHMD_HASH_INSERT, NULL);
}

BC_INLINE int sd_get(shmd_store_t *s, shmd_ptr_t h, uint64_t i, uint64_t out[8]) {
  uint64_t k[2];
  make_key(i, k);
  size_t len;
  return shmd_hash_get(s, h, k, KEY_LEN, out, VAL_LEN, &len);
}

BC_INLINE int sd_del(shmd_store_t *s, shmd_ptr_t h, uint64_t i) {
  uint64_t k[2];
  make_key(i, k);
  return shmd_hash_del(s, h, k, KEY_LEN);
}

/* The tree orders keys by their bytes (SHMD_RBTREE_BYTES): key(i) is random in that order. */
BC_INLINE int rb_put(shmd_store_t *s, shmd_ptr_t t, uint64_t i) {
  uint64_t k[2], v[8];
  make_key(i, k);
  make_val(i, v);
  return shmd_rbtree_put(s, t, k, KEY_LEN, v, VAL_LEN, SHMD_RBTREE_NX, NULL);
}

BC_INLINE int rb_get(shmd_store_t *s, shmd_ptr_t t, uint64_t i, uint64_t out[8]) {
  uint64_t k[2];
  make_key(i, k);
  size_t len;
  return shmd_rbtree_get(s, t, k, KEY_LEN, out, VAL_LEN, &len);
}

BC_INLINE int rb_del(shmd_store_t *s, shmd_ptr_t t, uint64_t i) {
  uint64_t k[2];
  make_key(i, k);
  return shmd_rbtree_delete(s, t, k, KEY_LEN);
}

BC_INLINE int rb_rank(shmd_store_t *s, shmd_ptr_t t, uint64_t i, uint64_t *rank) {
  uint64_t k[2];
  make_key(i, k);
  return shmd_rbtree_rank(s, t, k, KEY_LEN, rank);
}

/* Sorted-set members: key (score(i), "m:<i>") in DOUBLE_BYTES order, as the keyspace builds it
 * (shmd_rbtree_dkey / shmd_btree_dkey lay out the same bytes). */
BC_INLINE size_t zkey(uint64_t i, unsigned char *buf) {
  double score = (double)(i * 7919 % 1000003);
  char digits[24];
  size_t nd = 0;
  do {
    digits[nd++] = (char)('0' + i % 10);
    i /= 10;
  } while (i);
  memcpy(buf, &score, 8);
  buf[8] = 'm';
  buf[9] = ':';
  for (size_t d = 0; d < nd; d++)
    buf[10 + d] = (unsigned char)digits[nd - 1 - d];
  return 10 + nd;
}

BC_INLINE int zb_put(shmd_store_t *s, shmd_ptr_t t, uint64_t i) {
  unsigned char k[40];
  size_t kl = zkey(i, k);
  return shmd_btree_put(s, t, k, kl, "", 0, SHMD_BTREE_NX, NULL);
}
BC_INLINE int zb_del(shmd_store_t *s, shmd_ptr_t t, uint64_t i) {
  unsigned char k[40];
  size_t kl = zkey(i, k);
  return shmd_btree_delete(s, t, k, kl);
}
BC_INLINE int zb_rank(shmd_store_t *s, shmd_ptr_t t, uint64_t i, uint64_t *rank) {
  unsigned char k[40];
  size_t kl = zkey(i, k);
  return shmd_btree_rank(s, t, k, kl, rank);
}
BC_INLINE int zr_put(shmd_store_t *s, shmd_ptr_t t, uint64_t i) {
  unsigned char k[40];
  size_t kl = zkey(i, k);
  return shmd_rbtree_put(s, t, k, kl, "", 0, SHMD_RBTREE_NX, NULL);
}
BC_INLINE int zr_del(shmd_store_t *s, shmd_ptr_t t, uint64_t i) {
  unsigned char k[40];
  size_t kl = zkey(i, k);
  return shmd_rbtree_delete(s, t, k, kl);
}
BC_INLINE int zr_rank(shmd_store_t *s, shmd_ptr_t t, uint64_t i, uint64_t *rank) {
  unsigned char k[40];
  size_t kl = zkey(i, k);
  return shmd_rbtree_rank(s, t, k, kl, rank);
}

/* ---------------------------------------------------------------------------------------------- */
/* The tables of the benchmarks, built on first use. */

typedef enum impl_e {
  IMPL_SHMDICT,
  IMPL_INPROC,
  IMPL_RBTREE,
  IMPL_ZBTREE, /* sorted set on the B+tree */
  IMPL_ZRBTREE, /* sorted set on the rbtree */
  IMPL_COUNT
} impl_t;

typedef struct table_s {
  impl_t impl;
  uint64_t n;
  int built;        /* 1 once built, -1 if building failed */
  shmd_ptr_t sd;    /* IMPL_SHMDICT: the hash, IMPL_RBTREE: the tree */
  GHashTable *ip;   /* IMPL_INPROC */
  uint64_t cursor;  /* next position of the scattered walk for put / delete */
  char err[256];
} table_t;

static table_t tables[] = {
    {IMPL_SHMDICT, SMALL_N, 0, {0}, NULL, 0, ""}, {IMPL_INPROC, SMALL_N, 0, {0}, NULL, 0, ""},
    {IMPL_SHMDICT, BIG_N, 0, {0}, NULL, 0, ""},   {IMPL_INPROC, BIG_N, 0, {0}, NULL, 0, ""},
    {IMPL_RBTREE, SMALL_N, 0, {0}, NULL, 0, ""},
    {IMPL_ZBTREE, SMALL_N, 0, {0}, NULL, 0, ""},  {IMPL_ZRBTREE, SMALL_N, 0, {0}, NULL, 0, ""},
};

static const char *size_name(uint64_t n) { return n == BIG_N ? "10M" : "1M"; }

BC_INLINE int t_put(table_t *t, uint64_t i) {
  switch (t->impl) {
  case IMPL_SHMDICT:
    return sd_put(bench_store.s, t->sd, i);
  case IMPL_INPROC:
    return inproc_put(t->ip, i);
  case IMPL_ZBTREE:
    return zb_put(bench_store.s, t->sd, i);
  case IMPL_ZRBTREE:
    return zr_put(bench_store.s, t->sd, i);
  default:
    return rb_put(bench_store.s, t->sd, i);
  }
}

BC_INLINE int t_del(table_t *t, uint64_t i) {
  switch (t->impl) {
  case IMPL_SHMDICT:
    return sd_del(bench_store.s, t->sd, i);
  case IMPL_INPROC:
    return inproc_del(t->ip, i);
  case IMPL_ZBTREE:
    return zb_del(bench_store.s, t->sd, i);
  case IMPL_ZRBTREE:
    return zr_del(bench_store.s, t->sd, i);
  default:
    return rb_del(bench_store.s, t->sd, i);
  }
}

BC_INLINE int t_get(table_t *t, uint64_t i, uint64_t out[8]) {
  switch (t->impl) {
  case IMPL_SHMDICT:
    return sd_get(bench_store.s, t->sd, i, out);
  case IMPL_INPROC:
    return inproc_get(t->ip, i, out);
  default:
    return rb_get(bench_store.s, t->sd, i, out);
  }
}

/* Builds table t (keys 0 .. n-1) unless done; returns 0 or -1 after marking the run as failed. */
static int t_prepare(shim_state_t *st, table_t *t) {
  if (t->built == 1)
    return 0;
  if (t->built == 0) {
    t->built = -1;
    if (t->impl != IMPL_INPROC && bench_store.s == NULL &&
        bstore_open(&bench_store, BENCH_FIRST_SEGMENT, (uint64_t)256 << 20, 0, t->err,
                    sizeof t->err) != 0)
      goto out;
    int rc = 0;
    if (t->impl == IMPL_SHMDICT)
      rc = shmd_hash_create(bench_store.s, 0, &t->sd);
    else if (t->impl == IMPL_RBTREE)
      rc = shmd_rbtree_create(bench_store.s, SHMD_RBTREE_BYTES, &t->sd);
    else if (t->impl == IMPL_ZBTREE)
      rc = shmd_btree_create(bench_store.s, SHMD_BTREE_DOUBLE_BYTES, &t->sd);
    else if (t->impl == IMPL_ZRBTREE)
      rc = shmd_rbtree_create(bench_store.s, SHMD_RBTREE_DOUBLE_BYTES, &t->sd);
    else
      t->ip = inproc_new();
    if (rc != 0) {
      snprintf(t->err, sizeof t->err, "create: %s (%s)", shmd_strerror(rc), shmd_errdetail());
      goto out;
    }
    for (uint64_t i = 0; i < t->n; i++)
      if ((rc = t_put(t, i)) != 0) {
        snprintf(t->err, sizeof t->err, "building the table, key %llu: %s (%s)",
                 (unsigned long long)i, rc < 0 ? shmd_strerror(rc) : "failed",
                 t->impl == IMPL_INPROC ? "" : shmd_errdetail());
        goto out;
      }
    /* A hash that just grew to N keys is still moving buckets into its new table (one per
     * operation); finish that now, so that every benchmark sees a table at rest, as GHashTable's
     * always is (the cost of growing is what --growth-latency measures). */
    while (t->impl == IMPL_SHMDICT && (rc = shmd_hash_rehash_step(bench_store.s, t->sd, 65536)) > 0)
      ;
    if (rc < 0) {
      snprintf(t->err, sizeof t->err, "finishing the rehash: %s (%s)", shmd_strerror(rc),
               shmd_errdetail());
      goto out;
    }
    t->built = 1;
    return 0;
  }
out:
  shim_skip_with_error(st, t->err[0] ? t->err : "set-up failed earlier");
  return -1;
}

static void fail_op(shim_state_t *st, table_t *t, const char *what, int rc) {
  char msg[256];
  if (t->impl == IMPL_INPROC)
    snprintf(msg, sizeof msg, "%s failed", what);
  else
    snprintf(msg, sizeof msg, "%s failed: %s (%s)", what, shmd_strerror(rc), shmd_errdetail());
  shim_skip_with_error(st, msg);
}

/* Lookups of random present keys. */
BC_INLINE void run_get(shim_state_t *st, table_t *t) {
  if (t_prepare(st, t) != 0)
    return;
  uint64_t rng = UINT64_C(0x9E3779B97F4A7C15) ^ t->n, out[8], sum = 0, ops = 0;
  int rc = 0;
  for (uint64_t n; (n = shim_batch(st)) != 0;) {
    for (uint64_t j = 0; j < n; j++) {
      rc |= t_get(t, rng_below(rng_next(&rng) >> 32, t->n), out);
      sum += out[0];
    }
    ops += n;
  }
  if (rc != 0) {
    fail_op(st, t, "get", rc);
    return;
  }
  shim_counter(st, "checksum", (double)(sum & 0xffff));
  shim_set_ops(st, (double)ops);
}

BC_INLINE int t_rank(table_t *t, uint64_t i, uint64_t *r) {
  switch (t->impl) {
  case IMPL_ZBTREE:
    return zb_rank(bench_store.s, t->sd, i, r);
  case IMPL_ZRBTREE:
    return zr_rank(bench_store.s, t->sd, i, r);
  default:
    return rb_rank(bench_store.s, t->sd, i, r);
  }
}

/* Rank of random present keys (the trees). */
BC_INLINE void run_rank(shim_state_t *st, table_t *t) {
  if (t_prepare(st, t) != 0)
    return;
  uint64_t rng = UINT64_C(0xD1B54A32D192ED03), r, sum = 0, ops = 0;
  int rc = 0;
  for (uint64_t n; (n = shim_batch(st)) != 0;) {
    for (uint64_t j = 0; j < n; j++) {
      rc |= t_rank(t, rng_below(rng_next(&rng) >> 32, t->n), &r);
      sum += r;
    }
    ops += n;
  }
  if (rc != 0) {
    fail_op(st, t, "rank", rc);
    return;
  }
  shim_counter(st, "checksum", (double)(sum & 0xffff));
  shim_set_ops(st, (double)ops);
}

/* Deletes (timed) the keys of the walk in chunks, re-inserting each chunk untimed. */
BC_INLINE void run_delete(shim_state_t *st, table_t *t) {
  if (t_prepare(st, t) != 0)
    return;
  uint64_t first = t->cursor, done = 0, ops = 0;
  int rc = 0;
  for (uint64_t n; (n = shim_batch(st)) != 0;) {
    for (uint64_t j = 0; j < n; j++) {
      if (BC_UNLIKELY(done == CHUNK)) {
        shim_pause(st);
        for (uint64_t c = first; c < first + done; c++)
          rc |= t_put(t, scatter(c, t->n));
        first += done;
        done = 0;
        shim_resume(st);
      }
      rc |= t_del(t, scatter(first + done, t->n));
      done++;
    }
    ops += n;
  }
  for (uint64_t c = first; c < first + done; c++)
    rc |= t_put(t, scatter(c, t->n));
  t->cursor = first + done;
  if (rc != 0) {
    fail_op(st, t, "delete", rc);
    t->built = -1;
    return;
  }
  shim_set_ops(st, (double)ops);
}

/* Inserts (timed) the keys of the walk that were deleted (untimed) just before, in chunks. */
BC_INLINE void run_put(shim_state_t *st, table_t *t) {
  if (t_prepare(st, t) != 0)
    return;
  uint64_t first = t->cursor, done = 0, ops = 0;
  int rc = 0;
  for (uint64_t c = first; c < first + CHUNK; c++)
    rc |= t_del(t, scatter(c, t->n));
  for (uint64_t n; (n = shim_batch(st)) != 0;) {
    for (uint64_t j = 0; j < n; j++) {
      if (BC_UNLIKELY(done == CHUNK)) {
        shim_pause(st);
        first += CHUNK;
        done = 0;
        for (uint64_t c = first; c < first + CHUNK; c++)
          rc |= t_del(t, scatter(c, t->n));
        shim_resume(st);
      }
      rc |= t_put(t, scatter(first + done, t->n));
      done++;
    }
    ops += n;
  }
  for (uint64_t c = first + done; c < first + CHUNK; c++)
    rc |= t_put(t, scatter(c, t->n));
  t->cursor = first + CHUNK;
  if (rc != 0) {
    fail_op(st, t, "put", rc);
    t->built = -1;
    return;
  }
  shim_set_ops(st, (double)ops);
}

/* shmd_hash_len: a transaction and the hash's lock around reading one word of its header, i.e.
 * the fixed cost of every call, without the lookup's cache misses. */
static void bm_len(shim_state_t *st, void *arg) {
  table_t *t = arg;
  if (t_prepare(st, t) != 0)
    return;
  uint64_t ops = 0, len = 0, sum = 0;
  int rc = 0;
  for (uint64_t n; (n = shim_batch(st)) != 0;) {
    for (uint64_t j = 0; j < n; j++) {
      rc |= shmd_hash_len(bench_store.s, t->sd, &len);
      sum += len;
    }
    ops += n;
  }
  if (rc != 0) {
    fail_op(st, t, "len", rc);
    return;
  }
  shim_counter(st, "checksum", (double)(sum & 0xffff));
  shim_set_ops(st, (double)ops);
}

/* chase/256M: dependent loads through one random cycle over the cache lines of 256 MiB. */
enum { CHASE_LINES = (256u << 20) / 64 };
static uint64_t *chase_buf;

static void bm_chase(shim_state_t *st, void *arg) {
  (void)arg;
  if (chase_buf == NULL) {
    uint64_t *b = aligned_alloc(64, (size_t)CHASE_LINES * 64);
    uint32_t *perm = malloc((size_t)CHASE_LINES * sizeof *perm);
    if (b == NULL || perm == NULL) {
      free(b);
      free(perm);
      shim_skip_with_error(st, "chase: out of memory");
      return;
    }
    for (uint32_t i = 0; i < CHASE_LINES; i++)
      perm[i] = i;
    uint64_t rng = UINT64_C(0x2545F4914F6CDD1D);
    for (uint32_t i = CHASE_LINES - 1; i > 0; i--) { /* Sattolo: one cycle through every line */
      uint32_t j = (uint32_t)rng_below(rng_next(&rng) >> 32, i);
      uint32_t x = perm[i];
      perm[i] = perm[j];
      perm[j] = x;
    }
    for (uint32_t i = 0; i < CHASE_LINES; i++)
      b[(size_t)i * 8] = perm[i];
    free(perm);
    chase_buf = b;
  }
  uint64_t p = 0, ops = 0;
  for (uint64_t n; (n = shim_batch(st)) != 0;) {
    for (uint64_t j = 0; j < n; j++)
      p = chase_buf[p * 8];
    ops += n;
  }
  shim_counter(st, "checksum", (double)(p & 0xffff));
  shim_set_ops(st, (double)ops);
}

static void bm_get(shim_state_t *st, void *arg) { run_get(st, arg); }
static void bm_put(shim_state_t *st, void *arg) { run_put(st, arg); }
static void bm_delete(shim_state_t *st, void *arg) { run_delete(st, arg); }
static void bm_rank(shim_state_t *st, void *arg) { run_rank(st, arg); }

static void register_all(void) {
  static const struct {
    const char *op;
    shim_fn_t fn;
  } hash_ops[] = {{"hash_get", bm_get}, {"hash_put", bm_put}, {"hash_delete", bm_delete}};
  char name[64];
  for (size_t o = 0; o < 3; o++)
    for (size_t i = 0; i < 4; i++) {
      table_t *t = &tables[i];
      snprintf(name, sizeof name, "%s/%s/%s", hash_ops[o].op, size_name(t->n),
               t->impl == IMPL_SHMDICT ? "shmdict" : "inproc");
      shim_register(name, hash_ops[o].fn, t);
    }
  shim_register("hash_len/1M/shmdict", bm_len, &tables[0]);
  table_t *rb = &tables[4];
  shim_register("rbtree_insert/1M/shmdict", bm_put, rb);
  shim_register("rbtree_find/1M/shmdict", bm_get, rb);
  shim_register("rbtree_rank/1M/shmdict", bm_rank, rb);
  shim_register("zset_add/1M/shmdict", bm_put, &tables[5]);
  shim_register("zset_rank/1M/shmdict", bm_rank, &tables[5]);
  shim_register("zset_add/1M/rbtree", bm_put, &tables[6]);
  shim_register("zset_rank/1M/rbtree", bm_rank, &tables[6]);
  shim_register("chase/256M", bm_chase, NULL);
}

/* ---------------------------------------------------------------------------------------------- */
/* Growth latency. */

BC_INLINE uint64_t clock_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

static uint32_t sat32(uint64_t x) { return x > UINT32_MAX ? UINT32_MAX : (uint32_t)x; }

/* Statistics of one latency array (sorted in place). */
typedef struct lat_stats_s {
  uint32_t max, p9999, p999, p50;
  uint64_t over_100us, over_1ms;
} lat_stats_t;

static lat_stats_t lat_stats(uint32_t *v, uint64_t n) {
  lat_stats_t r = {0};
  for (uint64_t i = 0; i < n; i++) {
    r.over_100us += v[i] > 100000;
    r.over_1ms += v[i] > 1000000;
  }
  qsort(v, n, sizeof *v, cmp_u32);
  r.max = v[n - 1];
  r.p9999 = v[(uint64_t)(0.9999 * (double)n) < n ? (uint64_t)(0.9999 * (double)n) : n - 1];
  r.p999 = v[(uint64_t)(0.999 * (double)n)];
  r.p50 = v[n / 2];
  return r;
}

static void print_stats(const char *prefix, const lat_stats_t *s, int last) {
  printf("\"%s_max_ns\": %u, \"%s_p9999_ns\": %u, \"%s_p999_ns\": %u, \"%s_p50_ns\": %u, "
         "\"%s_over_100us\": %llu, \"%s_over_1ms\": %llu%s",
         prefix, s->max, prefix, s->p9999, prefix, s->p999, prefix, s->p50, prefix,
         (unsigned long long)s->over_100us, prefix, (unsigned long long)s->over_1ms,
         last ? "" : ", ");
}

/*
 * One run of one series: inserts keys 0 .. n-1 into a fresh table, storing each insert's wall
 * time (ns) in lat[i]. One clock read per insert: lat[i] runs from the end of insert i-1 to the
 * end of insert i, so it includes the clock read and making the key (tens of ns; see "noop").
 * Returns 0 or -1 (message printed). *segments receives the store's segment count at the end.
 */
static int growth_run(const char *series, uint64_t n, uint32_t *lat, double *total_s,
                      uint32_t *segments) {
  char err[512];
  int is_inproc = strcmp(series, "inproc") == 0;
  int is_noop = strcmp(series, "noop") == 0;
  int seg = strcmp(series, "shmdict_seg") == 0;
  int warm = strcmp(series, "shmdict_warm") == 0;
  int deflt = strcmp(series, "shmdict_default") == 0;
  GHashTable *ip = NULL;
  shmd_ptr_t h = {0};
  *segments = 0;
  if (is_inproc) {
    ip = inproc_new();
  } else if (!is_noop) {
    uint64_t first = deflt ? 0 : seg ? GROWTH_SEGMENT : GROWTH_FIRST_SEGMENT;
    if (bstore_open(&growth_store, first, deflt ? 0 : GROWTH_SEGMENT, warm, err, sizeof err) != 0) {
      fprintf(stderr, "growth %s: %s\n", series, err);
      return -1;
    }
    int rc = shmd_hash_create(growth_store.s, 0, &h);
    if (rc != 0) {
      fprintf(stderr, "growth %s: shmd_hash_create: %s\n", series, shmd_strerror(rc));
      bstore_close(&growth_store);
      return -1;
    }
  }
  /* BENCH_SLOW_NS=x: report every insert slower than x ns on stderr, with the state of the hash
   * after it (to see what the slow ones have in common); the report itself is not timed. */
  const char *slow_env = getenv("BENCH_SLOW_NS");
  uint64_t slow_ns = slow_env ? strtoull(slow_env, NULL, 10) : 0;

  int rc = 0;
  uint64_t start = clock_ns(), t0 = start;
  for (uint64_t i = 0; i < n; i++) {
    if (is_noop) { /* the floor: the clock read and the loop alone */
      uint64_t k[2];
      make_key(i, k);
      __asm__ volatile("" : : "r"(k[0]) : "memory");
    } else {
      rc = is_inproc ? inproc_put(ip, i) : sd_put(growth_store.s, h, i);
    }
    uint64_t t1 = clock_ns();
    lat[i] = sat32(t1 - t0);
    if (BC_UNLIKELY(rc != 0)) {
      fprintf(stderr, "growth %s: insert %llu failed: %s (%s)\n", series, (unsigned long long)i,
              is_inproc ? "malloc" : shmd_strerror(rc), is_inproc ? "" : shmd_errdetail());
      break;
    }
    if (BC_UNLIKELY(slow_ns != 0 && lat[i] > slow_ns)) {
      shmd_hash_stats_t hs = {0};
      if (!is_inproc && !is_noop)
        shmd_hash_stats(growth_store.s, h, &hs);
      fprintf(stderr,
              "slow insert %llu (%s): %u ns (CLOCK_MONOTONIC %.6f s); buckets %llu/%llu "
              "rehash_idx %llu\n",
              (unsigned long long)i, series, lat[i], (double)t0 / 1e9, (unsigned long long)hs.buckets[0],
              (unsigned long long)hs.buckets[1], (unsigned long long)hs.rehash_idx);
      t1 = clock_ns();
    }
    t0 = t1;
  }
  *total_s = (double)(clock_ns() - start) / 1e9;
  if (!is_inproc && !is_noop) {
    shmd_store_info_t ss;
    if (shmd_store_info(growth_store.s, &ss) == 0)
      *segments = ss.segments;
    bstore_close(&growth_store);
  }
  if (is_inproc)
    g_hash_table_destroy(ip);
  return rc == 0 ? 0 : -1;
}

/*
 * One series: `runs` runs (each on a fresh table), then the statistics of the first run ("raw")
 * and of the per-insert minimum over the runs ("min"): the insert sequence is the same in every
 * run, so a stall of the algorithm (a stop-the-world resize at a given size) shows in every run at
 * the same index, while a stall of the machine (preemption, the hypervisor) rarely hits the same
 * insert twice. Writes DIR/growth_<series>.csv: for each block of GROWTH_BLOCK inserts, the
 * maximum of raw and of min.
 */
static int growth_series(const char *series, const char *dir, uint64_t n, int runs) {
  uint32_t *raw = malloc(n * sizeof *raw), *mn = malloc(n * sizeof *mn);
  uint32_t *cur = runs > 1 ? malloc(n * sizeof *cur) : NULL;
  if (raw == NULL || mn == NULL || (runs > 1 && cur == NULL)) {
    fprintf(stderr, "growth: out of memory\n");
    free(raw);
    free(mn);
    free(cur);
    return -1;
  }
  memset(raw, 0, n * sizeof *raw); /* fault the arrays in before measuring */
  if (cur != NULL)
    memset(cur, 0, n * sizeof *cur);
  double total = 0, t;
  uint32_t segments = 0;
  int rc = growth_run(series, n, raw, &total, &segments);
  memcpy(mn, raw, n * sizeof *mn);
  for (int r = 1; r < runs && rc == 0; r++) {
    rc = growth_run(series, n, cur, &t, &segments);
    for (uint64_t i = 0; i < n; i++)
      mn[i] = cur[i] < mn[i] ? cur[i] : mn[i];
  }
  free(cur);

  char path[512];
  snprintf(path, sizeof path, "%s/growth_%s.csv", dir, series);
  FILE *f = fopen(path, "w");
  if (f != NULL) {
    fprintf(f, "first_insert,max_raw_ns,max_min_ns\n");
    for (uint64_t b = 0; b < n; b += GROWTH_BLOCK) {
      uint32_t mr = 0, mm = 0;
      for (uint64_t i = b; i < b + GROWTH_BLOCK && i < n; i++) {
        mr = raw[i] > mr ? raw[i] : mr;
        mm = mn[i] > mm ? mn[i] : mm;
      }
      fprintf(f, "%llu,%u,%u\n", (unsigned long long)b, mr, mm);
    }
    fclose(f);
  } else {
    fprintf(stderr, "growth: cannot write %s\n", path);
    rc = -1;
  }
  uint64_t raw_at = 0, min_at = 0;
  for (uint64_t i = 0; i < n; i++) {
    raw_at = raw[i] > raw[raw_at] ? i : raw_at;
    min_at = mn[i] > mn[min_at] ? i : min_at;
  }
  lat_stats_t rs = lat_stats(raw, n), ms = lat_stats(mn, n);
  printf("{\"series\": \"%s\", \"keys\": %llu, \"runs\": %d, \"ok\": %s, \"total_s\": %.3f, "
         "\"segments\": %u, \"raw_max_at\": %llu, \"min_max_at\": %llu, ",
         series, (unsigned long long)n, runs, rc == 0 ? "true" : "false", total, segments,
         (unsigned long long)raw_at, (unsigned long long)min_at);
  print_stats("raw", &rs, 0);
  print_stats("min", &ms, 1);
  printf("}\n");
  fflush(stdout);
  free(raw);
  free(mn);
  return rc == 0 ? 0 : -1;
}

static void growth_usage(void) {
  fprintf(stderr, "usage: bench_containers --growth-latency DIR [--keys N] [--runs R] "
                  "[--series noop|shmdict|shmdict_warm|shmdict_seg|shmdict_default|inproc]\n");
}

static int growth_main(int argc, char **argv) {
  const char *dir = NULL, *only = NULL;
  uint64_t n = BIG_N;
  int runs = 2;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--growth-latency") == 0 && i + 1 < argc)
      dir = argv[++i];
    else if (strcmp(argv[i], "--keys") == 0 && i + 1 < argc)
      n = strtoull(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
      runs = atoi(argv[++i]);
    else if (strcmp(argv[i], "--series") == 0 && i + 1 < argc)
      only = argv[++i];
    else {
      growth_usage();
      return 2;
    }
  }
  if (dir == NULL || n < 10 || runs < 1) {
    growth_usage();
    return 2;
  }
  static const char *const series[] = {"noop",        "shmdict",         "shmdict_warm",
                                       "shmdict_seg", "shmdict_default", "inproc"};
  int status = 0;
  for (size_t i = 0; i < sizeof series / sizeof series[0]; i++)
    if (only == NULL || strcmp(only, series[i]) == 0)
      status |= growth_series(series[i], dir, n, runs) != 0;
  return status;
}

/* ---------------------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
  atexit(cleanup);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGHUP, on_signal);
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--growth-latency") == 0)
      return growth_main(argc, argv);
  char buf[128];
  snprintf(buf, sizeof buf, "layout %d.%d, first segment %llu MiB", SHMD_LAYOUT_MAJOR,
           SHMD_LAYOUT_MINOR, (unsigned long long)(BENCH_FIRST_SEGMENT >> 20));
  shim_context("shmdict", buf);
  snprintf(buf, sizeof buf, "%u.%u.%u", glib_major_version, glib_minor_version,
           glib_micro_version);
  shim_context("glib", buf);
  register_all();
  int rc = shim_run(argc, argv);
  cleanup();
  return rc;
}
