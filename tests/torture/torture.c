/* SPDX-License-Identifier: MIT */
/*
 * Crash torture: many processes on one store, one of them SIGKILLed again and again.
 *
 * The driver forks --workers workers. Each runs a stream of random operations generated from its
 * own seed -- keyspace commands (strings, counters, hashes, lists, sets, sorted sets, with up to
 * 299 elements over 64 field names, so some transactions outgrow their lane; multi-key MSET / DEL /
 * RENAME, fields of hashes / sets / zsets shared by all workers, big values in a private database
 * that is then FLUSHDBed) and raw allocator operations (a table of
 * blocks of 16 B .. 2 MiB, each allocated, filled and linked in one transaction) -- and writes
 * the sequence number of every completed operation to its pipe. Because an operation is a pure
 * function of (seed, sequence number), the driver regenerates each reported operation and applies
 * it to an in-process model of that worker's keys.
 *
 * The driver kills a worker -- with SIGKILL at a random moment, or by starting it with a test-only
 * crash point (SHMDICT_CRASH_POINT) inside an allocator step, a hash rehash, an rbtree rotation, a
 * B+tree split / borrow / merge (sorted sets), a list operation, a garbage drain, a recovery or a rollback (between two restored undo words) --
 * and then:
 *   1. pauses the survivors between two operations; each must answer within --bound-ms (a
 *      survivor that waits for a lock the dead worker held must recover it, not hang);
 *   2. lets a recoverer process be killed inside the dead worker's rollback (crash point
 *      undo.word, when there is one to do); then recovers, runs shmd_kv_check() and
 *      shmd_alloc_check();
 *   3. compares every worker's keys, shared fields and raw blocks (contents included) with the
 *      model: survivors exactly, the dead worker with its one unreported operation either done or
 *      not done (nothing else is acceptable);
 *   4. every --leak-every kills, proves that allocated bytes equal reachable bytes: the store
 *      files are copied (survivors are paused, so the copy is consistent), and a child process
 *      frees everything reachable in the copy (FLUSHDB of every database, garbage drains, stripe
 *      hashes rehashed to their resting size, every raw block and table). What is left must equal,
 *      to the byte, what the same reduction leaves of a store that never saw a crash: a leak or a
 *      double free changes the figure;
 *   5. restarts the dead worker's slot (with a new seed) and resumes.
 *
 * Usage: torture [--kills N] [--workers W] [--seed S] [--duration SEC] [--leak-every K]
 *                [--bound-ms MS] [--dir DIR] [--verbose]
 * Prints one summary line; exit status 0 when every check passed. The seed is printed first, so a
 * failing run can be replayed (up to scheduling).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <dirent.h>
#include <unistd.h>

#include "kv/kv_int.h"
#include "shmdict.h"
#include "shmdict/hash.h"
#include "shmdict/kv.h"
#include "shmdict/tx.h"
#include "tests/support_kv.h"
#include "tests/support_sys.h"

#define MAXW 14    /* workers (each also owns database 1 + slot) */
#define NKEYS 24   /* keys per worker: key i has type i % 6 */
#define NF 64      /* field / member domain */
#define NRAW 24    /* raw blocks per worker */
#define MIB (1024ull * 1024)
#define FIRST_SEG (8 * MIB)
#define GROW_SEG (4 * MIB)

enum { T_STR, T_CNT, T_HASH, T_LIST, T_SET, T_ZSET };

/* ---------------------------------------------------------------------------------------------- */
/* Small helpers */

static uint64_t now_ns(void) { return ts_now_ns(); }

static uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

typedef struct {
  uint64_t s;
} rng_t;
static uint64_t rnd(rng_t *r) { return mix(r->s++); }
static uint64_t below(rng_t *r, uint64_t n) { return n ? rnd(r) % n : 0; }

static int verbose;

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "torture: FAIL: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

/* ---------------------------------------------------------------------------------------------- */
/* Operations: a pure function of (seed, sequence number) */

enum {
  OP_SET, OP_APPEND, OP_MSET, OP_GET, OP_DEL, OP_RENAME, OP_INCRBY, OP_HSET, OP_HDEL, OP_LPUSH,
  OP_RPUSH, OP_LPOP, OP_RPOP, OP_LTRIM, OP_SADD, OP_SREM, OP_ZADD, OP_ZREM, OP_SH_HSET,
  OP_SH_HDEL, OP_SH_SADD, OP_SH_SREM, OP_SH_ZADD, OP_SH_ZREM, OP_FLUSH, OP_RAW, OP_N
};
static const int op_weight[OP_N] = {
    [OP_SET] = 8,   [OP_APPEND] = 3, [OP_MSET] = 2,  [OP_GET] = 3,    [OP_DEL] = 3,
    [OP_RENAME] = 2, [OP_INCRBY] = 4, [OP_HSET] = 8, [OP_HDEL] = 5,   [OP_LPUSH] = 4,
    [OP_RPUSH] = 4, [OP_LPOP] = 3,   [OP_RPOP] = 3,  [OP_LTRIM] = 1,  [OP_SADD] = 6,
    [OP_SREM] = 4,  [OP_ZADD] = 6,   [OP_ZREM] = 4,  [OP_SH_HSET] = 3, [OP_SH_HDEL] = 2,
    [OP_SH_SADD] = 3, [OP_SH_SREM] = 2, [OP_SH_ZADD] = 3, [OP_SH_ZREM] = 2, [OP_FLUSH] = 1,
    [OP_RAW] = 10,
};

#define OP_MAXN 300 /* elements of one command, at most */

typedef struct {
  int kind;
  uint32_t seq;
  uint64_t tag; /* unique per (spawn, seq): values and raw block ids derive from it */
  int k1, k2, n;
  uint8_t f[OP_MAXN];
  uint16_t vlen[OP_MAXN];
  int64_t num[OP_MAXN];
  uint32_t raw_slot;
  uint64_t raw_size;
} op_t;

static int pick_type_key(rng_t *r, int type) { return type + 6 * (int)below(r, NKEYS / 6); }

static uint16_t pick_vlen(rng_t *r) {
  uint64_t k = below(r, 100);
  if (k < 70)
    return (uint16_t)below(r, 24);
  if (k < 95)
    return (uint16_t)(24 + below(r, 300));
  return (uint16_t)(1000 + below(r, 9000));
}

static void gen_op(rng_t *r, uint64_t spawn_tag, uint32_t seq, op_t *op) {
  memset(op, 0, sizeof *op);
  op->seq = seq;
  op->tag = (spawn_tag << 24) ^ seq;
  int total = 0;
  for (int i = 0; i < OP_N; i++)
    total += op_weight[i];
  int x = (int)below(r, (uint64_t)total), kind = 0;
  while (x >= op_weight[kind])
    x -= op_weight[kind++];
  op->kind = kind;
  /* One command in 12 has 20-45 elements; one in 96 has 100-299, more than a lane holds in place
   * (128 reservations, 2048 undo words), so its transaction grows into extension blocks. */
  int many = below(r, 12) == 0, huge = many && below(r, 8) == 0;
  op->n = huge ? 100 + (int)below(r, 200) : many ? 20 + (int)below(r, 26) : 1 + (int)below(r, 5);
  for (int j = 0; j < OP_MAXN; j++) {
    op->f[j] = (uint8_t)below(r, NF);
    op->vlen[j] = j < op->n ? pick_vlen(r) : 0;
    op->num[j] = (int64_t)below(r, 2001) - 1000;
  }
  switch (kind) {
  case OP_SET: case OP_APPEND: case OP_GET: op->k1 = pick_type_key(r, T_STR); break;
  case OP_MSET:
    op->k1 = pick_type_key(r, T_STR);
    op->k2 = pick_type_key(r, T_STR);
    break;
  case OP_DEL:
    op->k1 = (int)below(r, NKEYS);
    op->k2 = (int)below(r, NKEYS);
    op->n = 1 + (int)below(r, 2);
    break;
  case OP_RENAME: {
    int t = (int)below(r, 6);
    op->k1 = pick_type_key(r, t);
    op->k2 = pick_type_key(r, t);
    break;
  }
  case OP_INCRBY: op->k1 = pick_type_key(r, T_CNT); break;
  case OP_HSET: case OP_HDEL: op->k1 = pick_type_key(r, T_HASH); break;
  case OP_LPUSH: case OP_RPUSH: case OP_LPOP: case OP_RPOP: case OP_LTRIM:
    op->k1 = pick_type_key(r, T_LIST);
    op->n = many ? 20 + (int)below(r, 26) : 1 + (int)below(r, 5);
    break;
  case OP_SADD: case OP_SREM: op->k1 = pick_type_key(r, T_SET); break;
  case OP_ZADD: case OP_ZREM: op->k1 = pick_type_key(r, T_ZSET); break;
  case OP_RAW:
    op->raw_slot = (uint32_t)below(r, NRAW);
    {
      uint64_t k = below(r, 100);
      op->raw_size = k < 75 ? 1 + below(r, 2000) : k < 97 ? 2000 + below(r, 100000)
                                                          : (1 << 20) + below(r, 1 << 20);
    }
    break;
  default: break;
  }
  if (kind == OP_SH_HSET || kind == OP_SH_HDEL || kind == OP_SH_SADD || kind == OP_SH_SREM ||
      kind == OP_SH_ZADD || kind == OP_SH_ZREM || kind == OP_LTRIM)
    op->n = 1 + (int)below(r, 5);
}

/* The bytes of value j of an operation: a recognisable prefix, then filler. */
static size_t make_val(char *buf, const op_t *op, int j) {
  size_t len = op->vlen[j];
  char pre[48];
  int n = snprintf(pre, sizeof pre, "%" PRIx64 ".%d.", op->tag, j);
  for (size_t i = 0; i < len; i++)
    buf[i] = i < (size_t)n ? pre[i] : (char)('a' + (op->tag + i) % 26);
  return len;
}

static void key_name(char *buf, int slot, int k) { sprintf(buf, "w%d:k%d", slot, k); }

/* ---------------------------------------------------------------------------------------------- */
/* The model */

typedef struct {
  char *p;
  size_t len;
} bstr_t;

static bstr_t bdup(const void *p, size_t len) {
  bstr_t b = {malloc(len + 1), len};
  memcpy(b.p, p, len);
  b.p[len] = 0;
  return b;
}

typedef struct {
  int present; /* string / counter */
  bstr_t s;
  uint64_t fmask; /* hash fields, set members, zset members */
  bstr_t hv[NF];
  double zs[NF];
  bstr_t *le; /* list */
  size_t ln, lcap;
} mkey_t;

typedef struct {
  uint64_t id, size;
} mraw_t;

typedef struct {
  mkey_t key[NKEYS];
  mkey_t shh, shs, shz; /* this worker's fields of the shared hash, set and zset */
  mraw_t raw[NRAW];
} mslot_t;

static void mkey_clear(mkey_t *k) {
  free(k->s.p);
  for (int i = 0; i < NF; i++)
    free(k->hv[i].p);
  for (size_t i = 0; i < k->ln; i++)
    free(k->le[i].p);
  free(k->le);
  memset(k, 0, sizeof *k);
}

static void mkey_copy(mkey_t *d, const mkey_t *s) {
  memset(d, 0, sizeof *d);
  d->present = s->present;
  if (s->present)
    d->s = bdup(s->s.p, s->s.len);
  d->fmask = s->fmask;
  for (int i = 0; i < NF; i++) {
    if (s->hv[i].p)
      d->hv[i] = bdup(s->hv[i].p, s->hv[i].len);
    d->zs[i] = s->zs[i];
  }
  d->ln = d->lcap = s->ln;
  if (s->ln) {
    d->le = malloc(s->ln * sizeof *d->le);
    for (size_t i = 0; i < s->ln; i++)
      d->le[i] = bdup(s->le[i].p, s->le[i].len);
  }
}

static void mslot_clear(mslot_t *m) {
  for (int k = 0; k < NKEYS; k++)
    mkey_clear(&m->key[k]);
  mkey_clear(&m->shh);
  mkey_clear(&m->shs);
  mkey_clear(&m->shz);
  memset(m, 0, sizeof *m);
}

static void mslot_copy(mslot_t *d, const mslot_t *s) {
  for (int k = 0; k < NKEYS; k++)
    mkey_copy(&d->key[k], &s->key[k]);
  mkey_copy(&d->shh, &s->shh);
  mkey_copy(&d->shs, &s->shs);
  mkey_copy(&d->shz, &s->shz);
  memcpy(d->raw, s->raw, sizeof d->raw);
}

static int beq(bstr_t a, bstr_t b) { return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0); }

/* Compares; on a difference writes what differs into why. Hash values are compared only for
 * hashes (hv is unused by sets and zsets). */
static int mkey_eq(const mkey_t *a, const mkey_t *b, int type, char *why, size_t wn, const char *name) {
  switch (type) {
  case T_STR: case T_CNT:
    if (a->present != b->present || (a->present && !beq(a->s, b->s))) {
      snprintf(why, wn, "%s: string %s(%zu) vs %s(%zu)", name, a->present ? "set" : "absent", a->s.len,
               b->present ? "set" : "absent", b->s.len);
      return 0;
    }
    return 1;
  case T_HASH:
    if (a->fmask != b->fmask) {
      snprintf(why, wn, "%s: hash fields %016" PRIx64 " vs %016" PRIx64, name, a->fmask, b->fmask);
      return 0;
    }
    for (int i = 0; i < NF; i++)
      if ((a->fmask >> i & 1) && !beq(a->hv[i], b->hv[i])) {
        snprintf(why, wn, "%s: hash field %d value differs (%zu vs %zu bytes)", name, i, a->hv[i].len,
                 b->hv[i].len);
        return 0;
      }
    return 1;
  case T_LIST:
    if (a->ln != b->ln) {
      snprintf(why, wn, "%s: list length %zu vs %zu", name, a->ln, b->ln);
      return 0;
    }
    for (size_t i = 0; i < a->ln; i++)
      if (!beq(a->le[i], b->le[i])) {
        snprintf(why, wn, "%s: list element %zu differs", name, i);
        return 0;
      }
    return 1;
  case T_SET:
    if (a->fmask != b->fmask) {
      snprintf(why, wn, "%s: set members %016" PRIx64 " vs %016" PRIx64, name, a->fmask, b->fmask);
      return 0;
    }
    return 1;
  default:
    if (a->fmask != b->fmask) {
      snprintf(why, wn, "%s: zset members %016" PRIx64 " vs %016" PRIx64, name, a->fmask, b->fmask);
      return 0;
    }
    for (int i = 0; i < NF; i++)
      if ((a->fmask >> i & 1) && a->zs[i] != b->zs[i]) {
        snprintf(why, wn, "%s: zset member %d score %g vs %g", name, i, a->zs[i], b->zs[i]);
        return 0;
      }
    return 1;
  }
}

static int mslot_eq(const mslot_t *a, const mslot_t *b, char *why, size_t wn) {
  char name[32];
  for (int k = 0; k < NKEYS; k++) {
    sprintf(name, "key %d", k);
    if (!mkey_eq(&a->key[k], &b->key[k], k % 6, why, wn, name))
      return 0;
  }
  if (!mkey_eq(&a->shh, &b->shh, T_HASH, why, wn, "shared hash") ||
      !mkey_eq(&a->shs, &b->shs, T_SET, why, wn, "shared set") ||
      !mkey_eq(&a->shz, &b->shz, T_ZSET, why, wn, "shared zset"))
    return 0;
  for (int i = 0; i < NRAW; i++)
    if (a->raw[i].id != b->raw[i].id || a->raw[i].size != b->raw[i].size) {
      snprintf(why, wn, "raw slot %d: id %" PRIx64 " size %" PRIu64 " vs id %" PRIx64 " size %" PRIu64, i,
               a->raw[i].id, a->raw[i].size, b->raw[i].id, b->raw[i].size);
      return 0;
    }
  return 1;
}

static void set_str(mkey_t *k, const char *p, size_t len) {
  free(k->s.p);
  k->s = bdup(p, len);
  k->present = 1;
}

static void hset(mkey_t *k, int f, const char *p, size_t len) {
  free(k->hv[f].p);
  k->hv[f] = bdup(p, len);
  k->fmask |= 1ull << f;
}
static void hdel(mkey_t *k, int f) {
  free(k->hv[f].p);
  k->hv[f].p = NULL;
  k->hv[f].len = 0;
  k->fmask &= ~(1ull << f);
}

static void lpush(mkey_t *k, int head, const char *p, size_t len) {
  if (k->ln == k->lcap) {
    k->lcap = k->lcap ? 2 * k->lcap : 8;
    k->le = realloc(k->le, k->lcap * sizeof *k->le);
  }
  if (head) {
    memmove(k->le + 1, k->le, k->ln * sizeof *k->le);
    k->le[0] = bdup(p, len);
  } else {
    k->le[k->ln] = bdup(p, len);
  }
  k->ln++;
}

static void lpop(mkey_t *k, int head) {
  if (k->ln == 0)
    return;
  if (head) {
    free(k->le[0].p);
    memmove(k->le, k->le + 1, (k->ln - 1) * sizeof *k->le);
  } else {
    free(k->le[k->ln - 1].p);
  }
  k->ln--;
}

static int key_exists(const mkey_t *k, int type) {
  switch (type) {
  case T_STR: case T_CNT: return k->present;
  case T_LIST: return k->ln > 0;
  default: return k->fmask != 0;
  }
}

/* Applies a completed operation to the model (Redis semantics for this subset). */
static void model_apply(mslot_t *m, const op_t *op) {
  static char val[16384];
  mkey_t *k = &m->key[op->k1];
  switch (op->kind) {
  case OP_SET: set_str(k, val, make_val(val, op, 0)); break;
  case OP_APPEND: {
    size_t n = make_val(val, op, 0);
    if (!k->present) {
      set_str(k, val, n);
    } else {
      k->s.p = realloc(k->s.p, k->s.len + n + 1);
      memcpy(k->s.p + k->s.len, val, n);
      k->s.len += n;
      k->s.p[k->s.len] = 0;
    }
    break;
  }
  case OP_MSET:
    set_str(k, val, make_val(val, op, 0));
    set_str(&m->key[op->k2], val, make_val(val, op, 1));
    break;
  case OP_GET: break;
  case OP_DEL:
    mkey_clear(k);
    if (op->n == 2)
      mkey_clear(&m->key[op->k2]);
    break;
  case OP_RENAME:
    if (!key_exists(k, op->k1 % 6) || op->k1 == op->k2)
      break;
    mkey_clear(&m->key[op->k2]);
    m->key[op->k2] = *k;
    memset(k, 0, sizeof *k);
    break;
  case OP_INCRBY: {
    long long v = k->present ? strtoll(k->s.p, NULL, 10) : 0;
    char b[32];
    int n = sprintf(b, "%lld", v + (long long)op->num[0]);
    set_str(k, b, (size_t)n);
    break;
  }
  case OP_HSET: case OP_SH_HSET: {
    mkey_t *t = op->kind == OP_HSET ? k : &m->shh;
    for (int j = 0; j < op->n; j++)
      hset(t, op->f[j], val, make_val(val, op, j));
    break;
  }
  case OP_HDEL: case OP_SH_HDEL: {
    mkey_t *t = op->kind == OP_HDEL ? k : &m->shh;
    for (int j = 0; j < op->n; j++)
      hdel(t, op->f[j]);
    break;
  }
  case OP_LPUSH: case OP_RPUSH:
    for (int j = 0; j < op->n; j++)
      lpush(k, op->kind == OP_LPUSH, val, make_val(val, op, j));
    break;
  case OP_LPOP: lpop(k, 1); break;
  case OP_RPOP: lpop(k, 0); break;
  case OP_LTRIM:
    while (k->ln > (size_t)op->n + 1)
      lpop(k, 0);
    break;
  case OP_SADD: case OP_SH_SADD: {
    mkey_t *t = op->kind == OP_SADD ? k : &m->shs;
    for (int j = 0; j < op->n; j++)
      t->fmask |= 1ull << op->f[j];
    break;
  }
  case OP_SREM: case OP_SH_SREM: {
    mkey_t *t = op->kind == OP_SREM ? k : &m->shs;
    for (int j = 0; j < op->n; j++)
      t->fmask &= ~(1ull << op->f[j]);
    break;
  }
  case OP_ZADD: case OP_SH_ZADD: {
    mkey_t *t = op->kind == OP_ZADD ? k : &m->shz;
    for (int j = 0; j < op->n; j++) {
      t->fmask |= 1ull << op->f[j];
      t->zs[op->f[j]] = (double)op->num[j];
    }
    break;
  }
  case OP_ZREM: case OP_SH_ZREM: {
    mkey_t *t = op->kind == OP_ZREM ? k : &m->shz;
    for (int j = 0; j < op->n; j++) {
      t->fmask &= ~(1ull << op->f[j]);
      t->zs[op->f[j]] = 0;
    }
    break;
  }
  case OP_FLUSH: break;
  case OP_RAW: {
    mraw_t *rw = &m->raw[op->raw_slot];
    if (rw->id) {
      rw->id = rw->size = 0;
    } else {
      rw->id = op->tag;
      rw->size = op->raw_size;
    }
    break;
  }
  }
}

/* ---------------------------------------------------------------------------------------------- */
/* The store side: raw tables, commands */

typedef struct {
  uint64_t ptr, size, id;
} raw_slot_t;

typedef struct {
  shmd_lock_t lock;
  raw_slot_t slot[NRAW];
} raw_table_t;

static shmd_ptr_t raw_table(shmd_store_t *s, int slot) {
  char name[32];
  sprintf(name, "torture.raw%d", slot);
  shmd_ptr_t p = shmd_ptr_null();
  shmd_root_get(s, name, &p);
  return p;
}

static void raw_fill(unsigned char *b, uint64_t size, uint64_t id) {
  uint64_t n = size < 4096 ? size : 4096;
  for (uint64_t i = 0; i < n; i++)
    b[i] = (unsigned char)mix(id + i);
  for (uint64_t i = size - (size < 8 ? size : 8); i < size; i++)
    b[i] = (unsigned char)mix(id + i);
}

static int raw_verify(const unsigned char *b, uint64_t size, uint64_t id) {
  uint64_t n = size < 4096 ? size : 4096;
  for (uint64_t i = 0; i < n; i++)
    if (b[i] != (unsigned char)mix(id + i))
      return 0;
  for (uint64_t i = size - (size < 8 ? size : 8); i < size; i++)
    if (b[i] != (unsigned char)mix(id + i))
      return 0;
  return 1;
}

/* Runs one command (support_kv.h); returns the status, the reply in *out (caller frees) when
 * out != NULL. */
static int cmd(shmd_store_t *s, unsigned db, int argc, const char **argv, const size_t *lens,
               shmd_reply_t **out) {
  return ts_kv_vec(s, db, argc, argv, lens, out);
}

/* Command argument builder: a command name, two keys and a pair per element at most. */
#define MAXARGS (2 * OP_MAXN + 8)
typedef struct {
  int argc;
  const char *argv[MAXARGS];
  size_t lens[MAXARGS];
  char *owned[MAXARGS];
  int nowned;
} args_t;

static void a_str(args_t *a, const char *p, size_t len) {
  if (a->argc >= MAXARGS) {
    fprintf(stderr, "torture: a command with more than %d arguments\n", MAXARGS);
    abort();
  }
  char *c = malloc(len + 1);
  memcpy(c, p, len);
  c[len] = 0;
  a->owned[a->nowned++] = c;
  a->argv[a->argc] = c;
  a->lens[a->argc++] = len;
}
static void a_cs(args_t *a, const char *p) { a_str(a, p, strlen(p)); }
static void a_fmt(args_t *a, const char *fmt, ...) {
  char b[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(b, sizeof b, fmt, ap);
  va_end(ap);
  a_str(a, b, (size_t)n);
}
static void a_free(args_t *a) {
  for (int i = 0; i < a->nowned; i++)
    free(a->owned[i]);
  a->argc = a->nowned = 0;
}

/* Executes an operation in a worker. Returns 0, or a description of what went wrong. */
static const char *execute(shmd_store_t *s, int slot, const op_t *op, char *err, size_t errn) {
  static char val[16384];
  char kn[32], kn2[32];
  key_name(kn, slot, op->k1);
  key_name(kn2, slot, op->k2);
  args_t a = {0};
  int ok_errors = 0; /* RENAME of a missing key answers an error, which is fine */
  unsigned db = 0;
  switch (op->kind) {
  case OP_SET: a_cs(&a, "SET"); a_cs(&a, kn); a_str(&a, val, make_val(val, op, 0)); break;
  case OP_APPEND: a_cs(&a, "APPEND"); a_cs(&a, kn); a_str(&a, val, make_val(val, op, 0)); break;
  case OP_MSET:
    a_cs(&a, "MSET");
    a_cs(&a, kn);
    a_str(&a, val, make_val(val, op, 0));
    a_cs(&a, kn2);
    a_str(&a, val, make_val(val, op, 1));
    break;
  case OP_GET: a_cs(&a, "GET"); a_cs(&a, kn); break;
  case OP_DEL:
    a_cs(&a, "DEL");
    a_cs(&a, kn);
    if (op->n == 2)
      a_cs(&a, kn2);
    break;
  case OP_RENAME: a_cs(&a, "RENAME"); a_cs(&a, kn); a_cs(&a, kn2); ok_errors = 1; break;
  case OP_INCRBY: a_cs(&a, "INCRBY"); a_cs(&a, kn); a_fmt(&a, "%lld", (long long)op->num[0]); break;
  case OP_HSET: case OP_SH_HSET:
    a_cs(&a, "HSET");
    a_cs(&a, op->kind == OP_HSET ? kn : "sh:h");
    for (int j = 0; j < op->n; j++) {
      if (op->kind == OP_HSET)
        a_fmt(&a, "f%d", op->f[j]);
      else
        a_fmt(&a, "w%d:f%d", slot, op->f[j]);
      a_str(&a, val, make_val(val, op, j));
    }
    break;
  case OP_HDEL: case OP_SH_HDEL:
    a_cs(&a, "HDEL");
    a_cs(&a, op->kind == OP_HDEL ? kn : "sh:h");
    for (int j = 0; j < op->n; j++) {
      if (op->kind == OP_HDEL)
        a_fmt(&a, "f%d", op->f[j]);
      else
        a_fmt(&a, "w%d:f%d", slot, op->f[j]);
    }
    break;
  case OP_LPUSH: case OP_RPUSH:
    a_cs(&a, op->kind == OP_LPUSH ? "LPUSH" : "RPUSH");
    a_cs(&a, kn);
    for (int j = 0; j < op->n; j++)
      a_str(&a, val, make_val(val, op, j));
    break;
  case OP_LPOP: a_cs(&a, "LPOP"); a_cs(&a, kn); break;
  case OP_RPOP: a_cs(&a, "RPOP"); a_cs(&a, kn); break;
  case OP_LTRIM: a_cs(&a, "LTRIM"); a_cs(&a, kn); a_cs(&a, "0"); a_fmt(&a, "%d", op->n); break;
  case OP_SADD: case OP_SREM: case OP_SH_SADD: case OP_SH_SREM: {
    int sh = op->kind == OP_SH_SADD || op->kind == OP_SH_SREM;
    a_cs(&a, op->kind == OP_SADD || op->kind == OP_SH_SADD ? "SADD" : "SREM");
    a_cs(&a, sh ? "sh:s" : kn);
    for (int j = 0; j < op->n; j++) {
      if (sh)
        a_fmt(&a, "w%d:m%d", slot, op->f[j]);
      else
        a_fmt(&a, "m%d", op->f[j]);
    }
    break;
  }
  case OP_ZADD: case OP_SH_ZADD:
    a_cs(&a, "ZADD");
    a_cs(&a, op->kind == OP_ZADD ? kn : "sh:z");
    for (int j = 0; j < op->n; j++) {
      a_fmt(&a, "%lld", (long long)op->num[j]);
      if (op->kind == OP_ZADD)
        a_fmt(&a, "m%d", op->f[j]);
      else
        a_fmt(&a, "w%d:m%d", slot, op->f[j]);
    }
    break;
  case OP_ZREM: case OP_SH_ZREM:
    a_cs(&a, "ZREM");
    a_cs(&a, op->kind == OP_ZREM ? kn : "sh:z");
    for (int j = 0; j < op->n; j++) {
      if (op->kind == OP_ZREM)
        a_fmt(&a, "m%d", op->f[j]);
      else
        a_fmt(&a, "w%d:m%d", slot, op->f[j]);
    }
    break;
  case OP_FLUSH: {
    /* big sets and a big hash in the worker's own database, then FLUSHDB: stripe hashes and
     * containers go to the garbage list and are drained */
    db = 1u + (unsigned)slot;
    for (int j = 0; j < 4; j++) {
      a_cs(&a, j == 3 ? "HSET" : "SADD");
      a_fmt(&a, "x%d", j);
      for (int e = 0; e < 40; e++) {
        a_fmt(&a, "e%d", e);
        if (j == 3)
          a_str(&a, val, make_val(val, op, e % 50));
      }
      shmd_reply_t *r = NULL;
      int rc = cmd(s, db, a.argc, a.argv, a.lens, &r);
      a_free(&a);
      if (rc) {
        snprintf(err, errn, "FLUSH fill: %s (%s)", shmd_strerror(rc), shmd_errdetail());
        return err;
      }
      if (r->type == SHMD_REPLY_ERROR) {
        snprintf(err, errn, "FLUSH fill: %s", r->str);
        shmd_reply_free(r);
        return err;
      }
      shmd_reply_free(r);
    }
    a_cs(&a, "FLUSHDB");
    break;
  }
  case OP_RAW: {
    shmd_ptr_t tp = raw_table(s, slot);
    raw_table_t *t = shmd_resolve(s, tp);
    if (t == NULL) {
      snprintf(err, errn, "raw table missing");
      return err;
    }
    shmd_tx_t *tx;
    int rc = shmd_tx_begin(s, &tx);
    if (rc == 0)
      rc = shmd_tx_lock(tx, shmd_ptr_add(tp, offsetof(raw_table_t, lock)));
    raw_slot_t *sl = &t->slot[op->raw_slot];
    if (rc == 0 && sl->ptr == 0) {
      shmd_ptr_t p;
      rc = shmd_tx_alloc(tx, op->raw_size, &p);
      if (rc == 0) {
        raw_fill(shmd_resolve(s, p), op->raw_size, op->tag);
        rc = shmd_tx_log(tx, shmd_ptr_from_addr(s, sl), sizeof *sl);
      }
      if (rc == 0) {
        sl->ptr = p.v;
        sl->size = op->raw_size;
        sl->id = op->tag;
      }
    } else if (rc == 0) {
      rc = shmd_tx_log(tx, shmd_ptr_from_addr(s, sl), sizeof *sl);
      if (rc == 0)
        rc = shmd_tx_free(tx, (shmd_ptr_t){sl->ptr});
      if (rc == 0)
        memset(sl, 0, sizeof *sl);
    }
    if (rc == 0)
      rc = shmd_tx_commit(tx);
    else if (tx)
      shmd_tx_abort(tx);
    if (rc) {
      snprintf(err, errn, "raw op: %s (%s)", shmd_strerror(rc), shmd_errdetail());
      return err;
    }
    return NULL;
  }
  }
  shmd_reply_t *r = NULL;
  int rc = cmd(s, db, a.argc, a.argv, a.lens, &r);
  const char *name = a.argc ? a.argv[0] : "?";
  char nm[16];
  snprintf(nm, sizeof nm, "%s", name);
  a_free(&a);
  if (rc) {
    snprintf(err, errn, "%s: status %s (%s)", nm, shmd_strerror(rc), shmd_errdetail());
    return err;
  }
  if (r->type == SHMD_REPLY_ERROR && !ok_errors) {
    snprintf(err, errn, "%s: error reply %s", nm, r->str);
    shmd_reply_free(r);
    return err;
  }
  shmd_reply_free(r);
  return NULL;
}

/* ---------------------------------------------------------------------------------------------- */
/* Reading a worker's state from the store into a model slot */

static int parse_field(const char *s, size_t len, int slot, char kind) {
  /* "f12" / "m12" or, in shared containers, "w3:f12" */
  char b[64];
  if (len >= sizeof b)
    return -1;
  memcpy(b, s, len);
  b[len] = 0;
  const char *p = b;
  if (slot >= 0) {
    char pre[16];
    int n = sprintf(pre, "w%d:", slot);
    if (strncmp(p, pre, (size_t)n) != 0)
      return -1;
    p += n;
  }
  if (*p != kind)
    return -1;
  char *end;
  long v = strtol(p + 1, &end, 10);
  if (*end || v < 0 || v >= NF)
    return -1;
  return (int)v;
}

/* Reads key `name` of type `type` into *k. Returns 0, or -1 with why set. */
static int read_key(shmd_store_t *s, const char *name, int type, int slot_filter, mkey_t *k, char *why,
                    size_t wn) {
  const char *argv[6];
  size_t lens[6];
  argv[1] = name;
  lens[1] = strlen(name);
  int argc = 2;
  switch (type) {
  case T_STR: case T_CNT: argv[0] = "GET"; break;
  case T_HASH: argv[0] = "HGETALL"; break;
  case T_LIST: argv[0] = "LRANGE"; argv[2] = "0"; argv[3] = "-1"; argc = 4; break;
  case T_SET: argv[0] = "SMEMBERS"; break;
  default: argv[0] = "ZRANGE"; argv[2] = "0"; argv[3] = "-1"; argv[4] = "WITHSCORES"; argc = 5; break;
  }
  for (int i = 0; i < argc; i++)
    if (i != 1)
      lens[i] = strlen(argv[i]);
  shmd_reply_t *r = NULL;
  int rc = cmd(s, 0, argc, argv, lens, &r);
  if (rc) {
    snprintf(why, wn, "%s %s: %s (%s)", argv[0], name, shmd_strerror(rc), shmd_errdetail());
    return -1;
  }
  int ret = 0;
  memset(k, 0, sizeof *k);
  if (r->type == SHMD_REPLY_ERROR) {
    snprintf(why, wn, "%s %s: %s", argv[0], name, r->str);
    ret = -1;
  } else if (type == T_STR || type == T_CNT) {
    if (r->type == SHMD_REPLY_BULK) {
      k->present = 1;
      k->s = bdup(r->str, r->len);
    } else if (r->type != SHMD_REPLY_NIL) {
      snprintf(why, wn, "GET %s: reply type %d", name, r->type);
      ret = -1;
    }
  } else if (r->type != SHMD_REPLY_ARRAY) {
    snprintf(why, wn, "%s %s: reply type %d", argv[0], name, r->type);
    ret = -1;
  } else if (type == T_LIST) {
    for (size_t i = 0; i < r->nelems; i++)
      lpush(k, 0, r->elems[i].str, r->elems[i].len);
  } else {
    size_t step = type == T_SET ? 1 : 2;
    for (size_t i = 0; i + step <= r->nelems; i += step) {
      int f = parse_field(r->elems[i].str, r->elems[i].len, slot_filter, type == T_HASH ? 'f' : 'm');
      if (f < 0) {
        if (slot_filter >= 0)
          continue; /* another worker's field */
        snprintf(why, wn, "%s %s: unexpected field %.*s", argv[0], name, (int)r->elems[i].len, r->elems[i].str);
        ret = -1;
        break;
      }
      if (k->fmask >> f & 1) {
        snprintf(why, wn, "%s %s: field %d twice", argv[0], name, f);
        ret = -1;
        break;
      }
      k->fmask |= 1ull << f;
      if (type == T_HASH)
        k->hv[f] = bdup(r->elems[i + 1].str, r->elems[i + 1].len);
      else if (type == T_ZSET)
        k->zs[f] = strtod(r->elems[i + 1].str, NULL);
    }
  }
  shmd_reply_free(r);
  return ret;
}

static int read_slot(shmd_store_t *s, int slot, mslot_t *m, char *why, size_t wn) {
  memset(m, 0, sizeof *m);
  char kn[32];
  for (int k = 0; k < NKEYS; k++) {
    key_name(kn, slot, k);
    if (read_key(s, kn, k % 6, -1, &m->key[k], why, wn))
      return -1;
  }
  if (read_key(s, "sh:h", T_HASH, slot, &m->shh, why, wn) || read_key(s, "sh:s", T_SET, slot, &m->shs, why, wn) ||
      read_key(s, "sh:z", T_ZSET, slot, &m->shz, why, wn))
    return -1;
  shmd_ptr_t tp = raw_table(s, slot);
  raw_table_t *t;
  if (shmd_resolve_checked(s, tp, sizeof *t, (void **)&t)) {
    snprintf(why, wn, "raw table %d does not resolve", slot);
    return -1;
  }
  for (int i = 0; i < NRAW; i++) {
    raw_slot_t sl = t->slot[i];
    if (sl.ptr == 0)
      continue;
    void *b;
    size_t us = shmd_usable_size(s, (shmd_ptr_t){sl.ptr});
    if (us < sl.size || shmd_resolve_checked(s, (shmd_ptr_t){sl.ptr}, sl.size, &b)) {
      snprintf(why, wn, "raw slot %d: block of %" PRIu64 " bytes not allocated (usable %zu)", i, sl.size, us);
      return -1;
    }
    if (!raw_verify(b, sl.size, sl.id)) {
      snprintf(why, wn, "raw slot %d: contents of block %" PRIx64 " damaged", i, sl.id);
      return -1;
    }
    m->raw[i].id = sl.id;
    m->raw[i].size = sl.size;
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Control page shared by the driver and the workers */

typedef struct {
  uint32_t paused;        /* 1: workers stop between two operations */
  uint32_t epoch;         /* pause number */
  uint32_t ack[MAXW];     /* epoch a worker last acknowledged */
  uint64_t max_op_ns[MAXW];
  uint64_t ops[MAXW];
} ctl_t;

static ctl_t *ctl;
static char store_dir[512];
static const char *store_name = "torture";

static shmd_options_t store_opts(const char *dir) {
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = dir;
  o.first_segment_bytes = FIRST_SEG;
  o.segment_bytes = GROW_SEG;
  return o;
}

static const char *crash_points[] = {
    "alloc.step.before_commit", "alloc.step.after_commit", "alloc.small.logged", "alloc.large.logged",
    "free.logged", "buddy.split", "buddy.merge", "slab.new", "slab.release", "tx.before_commit",
    "tx.committed", "grow.before_commit", "grow.after_commit", "hash.insert.alloc", "hash.insert.linked",
    "hash.delete.unlinked", "hash.rehash.mid_bucket", "hash.rehash.finished", "hash.resize",
    "hash.destroy.piece", "list.push.alloced", "list.push.linked", "list.unlink", "rbtree.rotate",
    "rbtree.insert.recolor", "rbtree.insert.linked", "rbtree.erase.recolor", "rbtree.erase.unlinked",
    "rbtree.put.allocated", "rbtree.put.inserted", "rbtree.put.replaced", "rbtree.put.updated",
    "rbtree.delete.erased", "rbtree.destroy.erased", "kv.command.commit", "kv.drain.step",
    "kv.drain.committed", "recover.rolled_back", "heap.refill", "heap.flush", "depot.put", "depot.take",
    "tx.ext.allocated", "tx.ext.copied", "tx.ext.switched", "tx.ext.freed_old", "tx.frees_done",
    "undo.word", "alloc.*", "hash.*", "rbtree.*", "list.*",
    /* the sorted sets' trees (layout 1.5 stores) */
    "btree.split", "btree.borrow", "btree.merge", "btree.grow", "btree.shrink", "btree.put.inserted",
    "btree.put.updated", "btree.delete.removed", "btree.destroy.removed", "btree.*",
};
#define NPOINTS (sizeof crash_points / sizeof crash_points[0])

static void worker_main(int slot, uint64_t seed, uint64_t spawn_tag, int fd, const char *point) {
  ts_crash_point_set(point); /* NULL: none */
  shmd_options_t o = store_opts(store_dir);
  o.flags = SHMD_OPEN_NOCREATE;
  shmd_store_t *s = NULL;
  int rc = shmd_open(store_name, &o, &s);
  if (rc) {
    fprintf(stderr, "torture: worker %d: open: %s (%s)\n", slot, shmd_strerror(rc), shmd_errdetail());
    _exit(3);
  }
  rng_t r = {seed};
  uint32_t seen = __atomic_load_n(&ctl->ack[slot], __ATOMIC_ACQUIRE); /* the epoch at spawn time */
  char err[512];
  for (uint32_t seq = 0;; seq++) {
    while (__atomic_load_n(&ctl->paused, __ATOMIC_ACQUIRE)) {
      uint32_t e = __atomic_load_n(&ctl->epoch, __ATOMIC_ACQUIRE);
      if (e != seen) {
        seen = e;
        __atomic_store_n(&ctl->ack[slot], e, __ATOMIC_RELEASE);
      }
      usleep(100);
    }
    op_t op;
    gen_op(&r, spawn_tag, seq, &op);
    uint64_t t0 = now_ns();
    const char *e = execute(s, slot, &op, err, sizeof err);
    if (e) {
      fprintf(stderr, "torture: worker %d op %u (kind %d): %s\n", slot, seq, op.kind, e);
      _exit(4);
    }
    uint64_t dt = now_ns() - t0;
    if (dt > ctl->max_op_ns[slot])
      ctl->max_op_ns[slot] = dt;
    ctl->ops[slot]++;
    if (write(fd, &seq, sizeof seq) != sizeof seq)
      _exit(5);
  }
}

/* ---------------------------------------------------------------------------------------------- */
/* Reachable bytes: reduce a store to its skeleton and measure what is left */

/* Frees everything reachable from the keyspace and the raw tables of `s`, and rests every stripe
 * hash; returns the allocated bytes that remain, or a negative status. */
static int64_t reduce(shmd_store_t *s, int nworkers, char *why, size_t wn) {
  for (unsigned db = 0; db < SHMD_KV_DATABASES; db++) {
    /* A key in every stripe first: FLUSHDB then replaces every stripe hash by a new empty one (it
     * keeps a stripe that is already empty, with whatever table it has), so that every reduced
     * store ends with the same skeleton. */
    unsigned have = 0;
    for (unsigned n = 0; have != (1u << KV_STRIPES) - 1 && n < 100000; n++) {
      char key[32];
      int kl = sprintf(key, "reduce:%u", n);
      unsigned st = kv_stripe_of(key, (size_t)kl);
      if (have >> st & 1)
        continue;
      have |= 1u << st;
      const char *argv[] = {"SET", key, "x"};
      size_t lens[] = {3, (size_t)kl, 1};
      int rc = cmd(s, db, 3, argv, lens, NULL);
      if (rc) {
        snprintf(why, wn, "SET in db %u: %s", db, shmd_strerror(rc));
        return -1;
      }
    }
    const char *argv[] = {"FLUSHDB"};
    size_t lens[] = {7};
    shmd_reply_t *r = NULL;
    int rc = cmd(s, db, 1, argv, lens, &r);
    if (rc || r->type == SHMD_REPLY_ERROR) {
      snprintf(why, wn, "FLUSHDB %u: %s", db, rc ? shmd_strerror(rc) : r->str);
      return -1;
    }
    shmd_reply_free(r);
    if ((rc = shmd_kv_drain(s, db, 0))) {
      snprintf(why, wn, "drain %u: %s", db, shmd_strerror(rc));
      return -1;
    }
  }
  for (int w = 0; w < nworkers; w++) {
    shmd_ptr_t tp = raw_table(s, w);
    raw_table_t *t;
    if (shmd_resolve_checked(s, tp, sizeof *t, (void **)&t)) {
      snprintf(why, wn, "raw table %d", w);
      return -1;
    }
    for (int i = 0; i < NRAW; i++)
      if (t->slot[i].ptr && shmd_free(s, (shmd_ptr_t){t->slot[i].ptr})) {
        snprintf(why, wn, "free raw %d/%d", w, i);
        return -1;
      }
  }
  int rc = shmd_alloc_check(s);
  if (rc) {
    snprintf(why, wn, "alloc_check after reduce: %s (%s)", shmd_strerror(rc), shmd_errdetail());
    return -1;
  }
  shmd_stats_t st;
  if (shmd_stats(s, &st))
    return -1;
  return (int64_t)st.allocated_bytes;
}

/* Creates the shared skeleton: raw tables and every database (so that a reduced store has the same
 * skeleton whatever the workers touched). */
static void setup_store(shmd_store_t *s, int nworkers) {
  for (int w = 0; w < MAXW; w++) {
    (void)nworkers;
    char name[32];
    sprintf(name, "torture.raw%d", w);
    shmd_ptr_t p;
    if (shmd_calloc(s, 1, sizeof(raw_table_t), &p) || shmd_root_set(s, name, p))
      die("setup: raw table");
  }
  for (unsigned db = 0; db < SHMD_KV_DATABASES; db++) {
    const char *a1[] = {"SET", "torture:x", "1"}, *a2[] = {"DEL", "torture:x"};
    size_t l1[] = {3, 9, 1}, l2[] = {3, 9};
    if (cmd(s, db, 3, a1, l1, NULL) || cmd(s, db, 2, a2, l2, NULL))
      die("setup: db %u", db);
  }
}

static int copy_file(const char *from, const char *to) {
  int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (in < 0 || out < 0)
    return -1;
  static char buf[1 << 20];
  ssize_t n;
  int rc = 0;
  while ((n = read(in, buf, sizeof buf)) > 0) {
    /* keep holes holes: the segment files are mostly untouched pages */
    int zero = 1;
    for (ssize_t i = 0; i < n && zero; i += 8)
      zero = *(uint64_t *)(buf + i) == 0;
    if (zero) {
      if (lseek(out, n, SEEK_CUR) < 0)
        rc = -1;
    } else if (write(out, buf, (size_t)n) != n) {
      rc = -1;
    }
  }
  struct stat st;
  if (fstat(in, &st) || ftruncate(out, st.st_size))
    rc = -1;
  close(in);
  close(out);
  return rc;
}

/* Runs reduce() in a child process on `dir`/`name`; returns the figure or -1. */
static int64_t reduce_in_child(const char *dir, int nworkers, int setup) {
  int pfd[2];
  if (pipe(pfd))
    die("pipe");
  pid_t pid = ts_fork();
  if (pid < 0)
    die("fork: %s", strerror(errno));
  if (pid == 0) {
    close(pfd[0]);
    ts_crash_point_set(NULL);
    shmd_options_t o = store_opts(dir);
    shmd_store_t *s;
    char why[512] = "";
    int64_t v = -1;
    int rc = shmd_open(store_name, &o, &s);
    if (rc) {
      snprintf(why, sizeof why, "open copy: %s (%s)", shmd_strerror(rc), shmd_errdetail());
    } else {
      if (setup)
        setup_store(s, nworkers);
      v = reduce(s, nworkers, why, sizeof why);
    }
    if (v < 0)
      fprintf(stderr, "torture: reduce: %s\n", why);
    if (write(pfd[1], &v, sizeof v) != sizeof v)
      _exit(2);
    _exit(0);
  }
  close(pfd[1]);
  int64_t v = -1;
  if (read(pfd[0], &v, sizeof v) != sizeof v)
    v = -1;
  close(pfd[0]);
  ts_wait_for(pid, -1);
  return v;
}

/* ---------------------------------------------------------------------------------------------- */
/* The driver */

typedef struct {
  pid_t pid;
  int fd;
  rng_t gen; /* regenerates the worker's operations */
  uint64_t spawn_tag;
  uint32_t next_seq;
  int point; /* started with a crash point */
  char point_name[64];
  mslot_t model;
} worker_t;

static worker_t W[MAXW];
static int nworkers = 4;
static uint64_t seed, spawns, ops_verified;

static void spawn(int slot, rng_t *r, int allow_point) {
  worker_t *w = &W[slot];
  int pfd[2];
  if (pipe(pfd))
    die("pipe: %s", strerror(errno));
  fcntl(pfd[0], F_SETFL, O_NONBLOCK);
  fcntl(pfd[0], F_SETFD, FD_CLOEXEC);
  w->spawn_tag = ++spawns;
  uint64_t wseed = mix(seed ^ (w->spawn_tag * 0x9E3779B97F4A7C15ull));
  w->gen.s = wseed;
  w->next_seq = 0;
  w->point = allow_point && below(r, 3) == 0;
  if (w->point)
    snprintf(w->point_name, sizeof w->point_name, "%s:%u", crash_points[below(r, NPOINTS)],
             (unsigned)(1 + below(r, 300)));
  else
    w->point_name[0] = 0;
  ctl->ack[slot] = ctl->epoch;
  pid_t pid = ts_fork(); /* never outlives the driver */
  if (pid < 0)
    die("fork: %s", strerror(errno));
  if (pid == 0) {
    close(pfd[0]);
    for (int i = 0; i < nworkers; i++)
      if (i != slot && W[i].pid > 0)
        close(W[i].fd);
    worker_main(slot, wseed, w->spawn_tag, pfd[1], w->point ? w->point_name : NULL);
    _exit(0);
  }
  close(pfd[1]);
  w->pid = pid;
  w->fd = pfd[0];
}

/* Reads completed sequence numbers; applies each to the model. Returns 1 at end of file. */
static int drain_pipe(int slot) {
  worker_t *w = &W[slot];
  uint32_t buf[1024];
  for (;;) {
    ssize_t n = read(w->fd, buf, sizeof buf);
    if (n == 0)
      return 1;
    if (n < 0)
      return errno == EAGAIN ? 0 : 1;
    if (n % 4)
      die("worker %d: torn pipe record", slot);
    for (ssize_t i = 0; i < n / 4; i++) {
      if (buf[i] != w->next_seq)
        die("worker %d: sequence %u, expected %u", slot, buf[i], w->next_seq);
      op_t op;
      gen_op(&w->gen, w->spawn_tag, w->next_seq, &op);
      model_apply(&w->model, &op);
      w->next_seq++;
      ops_verified++;
    }
  }
}

static void drain_all(void) {
  for (int i = 0; i < nworkers; i++)
    if (W[i].pid > 0)
      drain_pipe(i);
}

static void usage(void) {
  fprintf(stderr, "usage: torture [--kills N] [--workers W] [--seed S] [--duration SEC] [--leak-every K]\n"
                  "               [--bound-ms MS] [--dir DIR] [--verbose]\n");
  exit(2);
}

int main(int argc, char **argv) {
  long kills_target = 300, leak_every = 1, bound_ms = 10000;
  double duration = 0;
  const char *dir_arg = NULL;
  seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
  static const struct option lopts[] = {
      {"kills", 1, 0, 'k'}, {"workers", 1, 0, 'w'}, {"seed", 1, 0, 's'}, {"duration", 1, 0, 'd'},
      {"leak-every", 1, 0, 'l'}, {"bound-ms", 1, 0, 'b'}, {"dir", 1, 0, 'D'}, {"verbose", 0, 0, 'v'},
      {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "k:w:s:d:l:b:D:v", lopts, NULL)) != -1) {
    switch (c) {
    case 'k': kills_target = atol(optarg); break;
    case 'w': nworkers = atoi(optarg); break;
    case 's': seed = strtoull(optarg, NULL, 0); break;
    case 'd': duration = atof(optarg); break;
    case 'l': leak_every = atol(optarg); break;
    case 'b': bound_ms = atol(optarg); break;
    case 'D': dir_arg = optarg; break;
    case 'v': verbose = 1; break;
    default: usage();
    }
  }
  if (nworkers < 1 || nworkers > MAXW)
    die("--workers must be 1..%d", MAXW);
  printf("torture: seed %" PRIu64 " (replay with --seed %" PRIu64 "), %d workers, %ld kills%s\n", seed, seed,
         nworkers, kills_target, duration > 0 ? " or the duration" : "");
  fflush(stdout);
  ts_crash_point_set(NULL);
  signal(SIGPIPE, SIG_IGN);

  char base[512];
  snprintf(base, sizeof base, "%s/shmdict-torture-XXXXXX", dir_arg ? dir_arg : "/dev/shm");
  if (!mkdtemp(base))
    die("mkdtemp %s: %s", base, strerror(errno));
  if (snprintf(store_dir, sizeof store_dir, "%s/main", base) >= (int)sizeof store_dir)
    die("store directory path too long: %s", base);
  mkdir(store_dir, 0700);
  char copy_dir[600], base_dir[600];
  snprintf(copy_dir, sizeof copy_dir, "%s/copy", base);
  snprintf(base_dir, sizeof base_dir, "%s/base", base);

  ctl = mmap(NULL, sizeof *ctl, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (ctl == MAP_FAILED)
    die("mmap");
  memset(ctl, 0, sizeof *ctl);

  /* The reference figure: what reduce() leaves of a store that never saw a crash. */
  mkdir(base_dir, 0700);
  int64_t baseline = reduce_in_child(base_dir, nworkers, 1);
  if (baseline < 0)
    die("baseline reduce failed");
  ts_rmtree(base_dir);

  shmd_options_t o = store_opts(store_dir);
  shmd_store_t *s;
  int rc = shmd_open(store_name, &o, &s);
  if (rc)
    die("open: %s (%s)", shmd_strerror(rc), shmd_errdetail());
  setup_store(s, nworkers);

  rng_t r = {mix(seed)};
  for (int i = 0; i < nworkers; i++)
    spawn(i, &r, 1);

  uint64_t t_start = now_ns();
  long kills = 0, point_kills = 0, leak_checks = 0, recoverer_kills = 0;
  uint64_t max_pause_ns = 0;
  char why[1024];
  while (kills < kills_target && (duration <= 0 || (double)(now_ns() - t_start) / 1e9 < duration)) {
    /* let the workers run: a random while, or until a crash point fires */
    uint64_t until = now_ns() + (1 + below(&r, 40)) * 1000000ull;
    int victim = -1, self_died = 0, status = 0;
    while (victim < 0) {
      drain_all();
      for (int i = 0; i < nworkers && victim < 0; i++) {
        if (ts_reap(W[i].pid, &status) == 1) {
          victim = i;
          self_died = 1;
        }
      }
      if (victim >= 0 || now_ns() >= until)
        break;
      usleep(500);
    }
    if (victim < 0) {
      victim = (int)below(&r, (uint64_t)nworkers);
      status = ts_kill_wait(W[victim].pid);
    }
    worker_t *vw = &W[victim];
    int dead[MAXW] = {0};
    if (status != 128 + SIGKILL)
      die("worker %d (pid %d%s%s) ended with status %d (128 + signal), not by SIGKILL", victim, vw->pid,
          vw->point ? ", point " : "", vw->point_name, status);
    long round_kills = 1;
    point_kills += self_died;
    drain_pipe(victim);
    close(vw->fd);
    vw->pid = -1;
    dead[victim] = 1;

    /* pause the survivors; each must reach the end of its current operation within the bound
     * (one started with a crash point may die on the way: a second victim of this round) */
    uint64_t t0 = now_ns();
    __atomic_add_fetch(&ctl->epoch, 1, __ATOMIC_ACQ_REL);
    __atomic_store_n(&ctl->paused, 1, __ATOMIC_RELEASE);
    uint32_t ep = ctl->epoch;
    for (int i = 0; i < nworkers; i++) {
      while (!dead[i] && __atomic_load_n(&ctl->ack[i], __ATOMIC_ACQUIRE) != ep) {
        drain_pipe(i);
        int st;
        if (ts_reap(W[i].pid, &st) == 1) {
          if (st != 128 + SIGKILL)
            die("worker %d (point %s) ended with status %d (128 + signal)", i, W[i].point_name, st);
          drain_pipe(i);
          close(W[i].fd);
          W[i].pid = -1;
          dead[i] = 1;
          round_kills++;
          point_kills++;
          break;
        }
        if (now_ns() - t0 > (uint64_t)bound_ms * 1000000ull)
          die("kill %ld: worker %d did not finish its operation within %ld ms (blocked: deadlock?)",
              kills + 1, i, bound_ms);
        usleep(100);
      }
    }
    kills += round_kills;
    uint64_t pause_ns = now_ns() - t0;
    if (pause_ns > max_pause_ns)
      max_pause_ns = pause_ns;
    drain_all();

    /* A recoverer process is killed inside the dead worker's rollback first, between two restored
     * undo words (a rollback cut short must be done again whole by the next recovery, the driver's
     * own below). It recovers nothing when the worker died between operations or a survivor
     * recovered its lane, and is not killed when the log is shorter than its count. */
    {
      char pt[64];
      snprintf(pt, sizeof pt, "undo.word:%u", (unsigned)(1 + below(&r, 3)));
      pid_t rp = ts_fork();
      if (rp < 0)
        die("fork: %s", strerror(errno));
      if (rp == 0) {
        ts_crash_point_set(pt);
        shmd_options_t ro = store_opts(store_dir);
        ro.flags = SHMD_OPEN_NOCREATE;
        shmd_store_t *rs;
        _exit(shmd_open(store_name, &ro, &rs) == 0 ? 0 : 3); /* opening recovers */
      }
      int st = ts_wait_for(rp, -1);
      if (st == 128 + SIGKILL)
        recoverer_kills++;
      else if (st != 0)
        die("kill %ld: a recoverer (point %s) ended with status %d (128 + signal)", kills, pt, st);
    }

    /* checks */
    rc = shmd_recover(s);
    if (rc < 0)
      die("kill %ld: recover: %s (%s)", kills, shmd_strerror(rc), shmd_errdetail());
    if ((rc = shmd_kv_check(s)))
      die("kill %ld (worker %d%s%s): kv_check: %s (%s)", kills, victim, vw->point ? ", point " : "",
          vw->point_name, shmd_strerror(rc), shmd_errdetail());
    if ((rc = shmd_alloc_check(s)))
      die("kill %ld (worker %d%s%s): alloc_check: %s (%s)", kills, victim, vw->point ? ", point " : "",
          vw->point_name, shmd_strerror(rc), shmd_errdetail());
    for (int i = 0; i < nworkers; i++) {
      mslot_t actual;
      if (read_slot(s, i, &actual, why, sizeof why))
        die("kill %ld: reading worker %d's data: %s", kills, i, why);
      if (mslot_eq(&actual, &W[i].model, why, sizeof why)) {
        mslot_clear(&actual);
        continue;
      }
      if (!dead[i])
        die("kill %ld: survivor %d: %s", kills, i, why);
      /* the dead worker's unreported operation may have happened */
      op_t op;
      gen_op(&W[i].gen, W[i].spawn_tag, W[i].next_seq, &op);
      mslot_t post;
      mslot_copy(&post, &W[i].model);
      model_apply(&post, &op);
      char why2[1024];
      if (!mslot_eq(&actual, &post, why2, sizeof why2))
        die("kill %ld (worker %d%s%s, %u ops done, unreported op kind %d): neither before (%s) nor after (%s) "
            "its last operation",
            kills, i, W[i].point ? ", point " : "", W[i].point_name, W[i].next_seq, op.kind, why, why2);
      mslot_clear(&W[i].model);
      W[i].model = post;
      mslot_clear(&actual);
    }
    if (leak_every > 0 && kills % leak_every == 0) {
      ts_rmtree(copy_dir);
      mkdir(copy_dir, 0700);
      char sd[600];
      snprintf(sd, sizeof sd, "%s/%s", store_dir, store_name);
      char cd[700];
      snprintf(cd, sizeof cd, "%s/%s", copy_dir, store_name);
      mkdir(cd, 0700);
      DIR *d = opendir(sd);
      struct dirent *e;
      while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
          continue;
        char f1[1400], f2[1400];
        snprintf(f1, sizeof f1, "%s/%s", sd, e->d_name);
        snprintf(f2, sizeof f2, "%s/%s", cd, e->d_name);
        if (copy_file(f1, f2))
          die("copy %s: %s", f1, strerror(errno));
      }
      if (d)
        closedir(d);
      int64_t left = reduce_in_child(copy_dir, nworkers, 0);
      if (left != baseline)
        die("kill %ld (worker %d%s%s): after freeing everything reachable %" PRId64
            " bytes stay allocated, a store that never crashed keeps %" PRId64 " (%s)",
            kills, victim, vw->point ? ", point " : "", vw->point_name, left, baseline,
            left > baseline ? "leak" : "double free or lost block");
      ts_rmtree(copy_dir);
      leak_checks++;
    }
    if (kills / 1000 != (kills - round_kills) / 1000) {
      printf("torture: %ld kills, %" PRIu64 " operations verified, %.0f s\n", kills, ops_verified,
             (double)(now_ns() - t_start) / 1e9);
      fflush(stdout);
    }
    if (verbose)
      printf("kill %ld: worker %d%s%s after %u ops, pause %.1f ms\n", kills, victim, vw->point ? " at " : "",
             vw->point_name, vw->next_seq, (double)pause_ns / 1e6);

    for (int i = 0; i < nworkers; i++)
      if (dead[i])
        spawn(i, &r, 1);
    __atomic_store_n(&ctl->paused, 0, __ATOMIC_RELEASE);
  }
  /* stop everyone; a final check */
  for (int i = 0; i < nworkers; i++) {
    ts_kill_wait(W[i].pid);
    close(W[i].fd);
  }
  if ((rc = shmd_recover(s)) < 0 || (rc = shmd_kv_check(s)) || (rc = shmd_alloc_check(s)))
    die("final check: %s (%s)", shmd_strerror(rc), shmd_errdetail());
  uint64_t max_op = 0, ops = 0;
  for (int i = 0; i < MAXW; i++) {
    if (ctl->max_op_ns[i] > max_op)
      max_op = ctl->max_op_ns[i];
    ops += ctl->ops[i];
  }
  shmd_stats_t st;
  shmd_stats(s, &st);
  printf("torture: OK: %ld kills (%ld at crash points), %ld recoverers killed inside a rollback, %" PRIu64
         " operations verified (%" PRIu64 " run), %ld leak checks (baseline %" PRId64 " bytes), 0 lost "
         "operations, max pause %.1f ms, max operation %.1f ms, %u segments, %" PRIu64 " recoveries, %.1f s, "
         "seed %" PRIu64 "\n",
         kills, point_kills, recoverer_kills, ops_verified, ops, leak_checks, baseline,
         (double)max_pause_ns / 1e6, (double)max_op / 1e6, st.segments, st.recoveries,
         (double)(now_ns() - t_start) / 1e9, seed);
  shmd_close(s);
  for (int i = 0; i < nworkers; i++)
    mslot_clear(&W[i].model);
  ts_rmtree(base);
  return 0;
}
