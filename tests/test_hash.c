/* SPDX-License-Identifier: MIT */
/*
 * Tests of the hash container: API behaviour, a property test against an in-process model, the
 * SCAN guarantee across growth and shrink, the safe iterator while rehashing, a million keys grown
 * and shrunk, two processes mutating one hash (mp_), and children SIGKILLed at random moments and
 * at every crash point of the hash (crash_). Long-run knobs: SHMDICT_HASH_OPS (property steps),
 * SHMDICT_HASH_BIG (keys of the big test), SHMDICT_HASH_CRASH_ROUNDS.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <stdbool.h>

#include "shmdict/hash.h"
#include "support.h"

#define MIB (UINT64_C(1) << 20)

static uint64_t env_u64(const char *name, uint64_t dflt) {
  const char *v = getenv(name);
  return v && *v ? strtoull(v, NULL, 0) : dflt;
}

static uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= UINT64_C(0xff51afd7ed558ccd);
  x ^= x >> 33;
  x *= UINT64_C(0xc4ceb9fe1a85ec53);
  x ^= x >> 33;
  return x;
}

/* ---------------------------------------------------------------------------------------------- */
/* Keys and values made from numbers, so a parent can regenerate what a child wrote */

#define KEY_MAX 1024
#define VAL_MAX 4096

/* Key i: the empty key for 0; "k<i>." then filler, long (out of line) for every 53rd key. */
static size_t key_of(unsigned i, unsigned char *buf) {
  if (i == 0)
    return 0;
  size_t n = (size_t)snprintf((char *)buf, KEY_MAX, "k%u.", i);
  size_t len = i % 53 == 0 ? 513 + (size_t)(mix64(i) % 200) : n + (size_t)(mix64(i) % 24);
  for (size_t j = n; j < len; j++)
    buf[j] = (unsigned char)('a' + (i + j) % 26);
  return len;
}

/* Value of key i at version v: mostly short, some medium, a few out of line. */
static size_t val_of(unsigned i, uint64_t v, unsigned char *buf) {
  uint64_t r = mix64(((uint64_t)i << 32) ^ v ^ UINT64_C(0x1234567));
  unsigned cls = (unsigned)(r % 100);
  size_t len = cls < 50 ? r % 16 : cls < 80 ? 16 + (r >> 8) % 85 : cls < 95 ? 100 + (r >> 8) % 413
                                                                             : 513 + (r >> 8) % 3000;
  for (size_t j = 0; j < len; j++)
    buf[j] = (unsigned char)(r >> ((j % 8) * 8)) ^ (unsigned char)j;
  return len;
}

/* The model: which keys are present and at which version. */
typedef struct model_s {
  unsigned nkeys;
  bool *present;
  uint64_t *ver;
  uint64_t count;
} model_t;

static void model_init(model_t *m, unsigned nkeys) {
  m->nkeys = nkeys;
  m->present = calloc(nkeys, sizeof(bool));
  m->ver = calloc(nkeys, sizeof(uint64_t));
  m->count = 0;
  cr_assert(m->present && m->ver);
}

static void model_free(model_t *m) {
  free(m->present);
  free(m->ver);
}

static void model_set(model_t *m, unsigned i, bool present, uint64_t ver) {
  if (present != m->present[i])
    m->count += present ? 1 : (uint64_t)-1;
  m->present[i] = present;
  m->ver[i] = ver;
}

/* Does key i of the hash hold what the model says? Returns 0 or a description. */
static const char *compare_key(shmd_store_t *s, shmd_ptr_t h, const model_t *m, unsigned i) {
  unsigned char k[KEY_MAX], want[VAL_MAX], got[VAL_MAX];
  size_t kl = key_of(i, k), gl = 0;
  int rc = shmd_hash_get(s, h, k, kl, got, sizeof got, &gl);
  if (!m->present[i])
    return rc == SHMD_ENOTFOUND ? NULL : "present but absent in the model";
  if (rc != 0)
    return "absent or failing but present in the model";
  size_t wl = val_of(i, m->ver[i], want);
  if (wl != gl || memcmp(want, got, wl) != 0)
    return "wrong value";
  return NULL;
}

static void compare_all(shmd_store_t *s, shmd_ptr_t h, const model_t *m) {
  for (unsigned i = 0; i < m->nkeys; i++) {
    const char *why = compare_key(s, h, m, i);
    cr_assert_null(why, "key %u: %s", i, why);
  }
  uint64_t len = 0;
  cr_assert_eq(shmd_hash_len(s, h, &len), 0);
  cr_assert_eq(len, m->count, "len %llu, model %llu", (unsigned long long)len,
               (unsigned long long)m->count);
}

static void check_all(shmd_store_t *s, shmd_ptr_t h) {
  int rc = shmd_hash_check(s, h);
  cr_assert_eq(rc, 0, "shmd_hash_check: %s (%s)", shmd_strerror(rc), shmd_errdetail());
  rc = shmd_alloc_check(s);
  cr_assert_eq(rc, 0, "shmd_alloc_check: %s (%s)", shmd_strerror(rc), shmd_errdetail());
}

/* One random operation on key i, applied to the hash and returned as (op, status). The model is
 * updated from the status, after checking that the status is the one the model predicts. */
enum { OP_UPSERT, OP_INSERT, OP_UPDATE, OP_DEL, OP_GET, OP_NOPS };

static int apply_op(shmd_store_t *s, shmd_ptr_t h, int op, unsigned i, uint64_t ver) {
  unsigned char k[KEY_MAX], v[VAL_MAX];
  size_t kl = key_of(i, k), vl;
  switch (op) {
  case OP_UPSERT:
  case OP_INSERT:
  case OP_UPDATE:
    vl = val_of(i, ver, v);
    return shmd_hash_put(s, h, k, kl, v, vl,
                         op == OP_UPSERT   ? SHMD_HASH_UPSERT
                         : op == OP_INSERT ? SHMD_HASH_INSERT
                                           : SHMD_HASH_UPDATE,
                         NULL);
  case OP_DEL:
    return shmd_hash_del(s, h, k, kl);
  default:
    return shmd_hash_contains(s, h, k, kl);
  }
}

/* The status the model predicts, and the model's change. Returns 1 if rc is the predicted one. */
static int model_apply(model_t *m, int op, unsigned i, uint64_t ver, int rc) {
  bool p = m->present[i];
  switch (op) {
  case OP_UPSERT:
    if (rc != 0)
      return 0;
    model_set(m, i, true, ver);
    return 1;
  case OP_INSERT:
    if (rc != (p ? SHMD_EEXIST : 0))
      return 0;
    if (!p)
      model_set(m, i, true, ver);
    return 1;
  case OP_UPDATE:
    if (rc != (p ? 0 : SHMD_ENOTFOUND))
      return 0;
    if (p)
      model_set(m, i, true, ver);
    return 1;
  case OP_DEL:
    if (rc != (p ? 0 : SHMD_ENOTFOUND))
      return 0;
    model_set(m, i, false, 0);
    return 1;
  default:
    return rc == (p ? 1 : 0);
  }
}

/* A random op, biased so that the hash fills up (phase 0) or drains (phase 1): phases of a few
 * times the key count make the table grow and shrink again and again. */
static int random_op(ts_rng_t *r, int phase) {
  unsigned x = (unsigned)ts_below(r, 100);
  if (phase == 0)
    return x < 40 ? OP_UPSERT : x < 65 ? OP_INSERT : x < 70 ? OP_UPDATE : x < 80 ? OP_DEL : OP_GET;
  return x < 2 ? OP_UPSERT : x < 4 ? OP_INSERT : x < 7 ? OP_UPDATE : x < 97 ? OP_DEL : OP_GET;
}

static unsigned phase_len(unsigned nkeys) { return nkeys * 3; }

static shmd_ptr_t new_hash(shmd_store_t *s, size_t expected) {
  shmd_ptr_t h;
  int rc = shmd_hash_create(s, expected, &h);
  cr_assert_eq(rc, 0, "create: %s", shmd_strerror(rc));
  cr_assert_eq(shmd_root_set(s, "h", h), 0);
  return h;
}

TestSuite(hash, .init = ts_init, .fini = ts_fini, .timeout = 180);

/* ---------------------------------------------------------------------------------------------- */
/* API behaviour */

Test(hash, basic) {
  shmd_store_t *s = ts_open("h", 16 * MIB, 16 * MIB);
  shmd_ptr_t h = new_hash(s, 0);
  uint64_t len = 99;
  cr_assert_eq(shmd_hash_len(s, h, &len), 0);
  cr_assert_eq(len, 0);
  char buf[64];
  size_t vl = 0;
  cr_assert_eq(shmd_hash_get(s, h, "a", 1, buf, sizeof buf, &vl), SHMD_ENOTFOUND);
  cr_assert_eq(shmd_hash_del(s, h, "a", 1), SHMD_ENOTFOUND);
  cr_assert_eq(shmd_hash_contains(s, h, "a", 1), 0);
  int created = -1;
  cr_assert_eq(shmd_hash_put(s, h, "a", 1, "one", 3, SHMD_HASH_UPSERT, &created), 0);
  cr_assert_eq(created, 1);
  cr_assert_eq(shmd_hash_put(s, h, "a", 1, "uno", 3, SHMD_HASH_INSERT, &created), SHMD_EEXIST);
  cr_assert_eq(shmd_hash_put(s, h, "b", 1, "two", 3, SHMD_HASH_UPDATE, &created), SHMD_ENOTFOUND);
  cr_assert_eq(shmd_hash_put(s, h, "b", 1, "two", 3, SHMD_HASH_INSERT, &created), 0);
  cr_assert_eq(shmd_hash_put(s, h, "a", 1, "eins", 4, SHMD_HASH_UPDATE, &created), 0);
  cr_assert_eq(created, 0);
  cr_assert_eq(shmd_hash_get(s, h, "a", 1, buf, sizeof buf, &vl), 0);
  cr_assert_eq(vl, 4);
  cr_assert_eq(memcmp(buf, "eins", 4), 0);
  /* short buffer: prefix copied, full length reported */
  memset(buf, 0, sizeof buf);
  cr_assert_eq(shmd_hash_get(s, h, "a", 1, buf, 2, &vl), SHMD_ERANGE);
  cr_assert_eq(vl, 4);
  cr_assert_eq(memcmp(buf, "ei\0", 3), 0);
  cr_assert_eq(shmd_hash_get(s, h, "a", 1, NULL, 0, &vl), SHMD_ERANGE);
  void *p = NULL;
  cr_assert_eq(shmd_hash_get_alloc(s, h, "b", 1, &p, &vl), 0);
  cr_assert_str_eq(p, "two");
  free(p);
  /* empty key and empty value */
  cr_assert_eq(shmd_hash_put(s, h, "", 0, "", 0, SHMD_HASH_UPSERT, NULL), 0);
  cr_assert_eq(shmd_hash_put(s, h, NULL, 0, NULL, 0, SHMD_HASH_UPSERT, &created), 0);
  cr_assert_eq(created, 0);
  cr_assert_eq(shmd_hash_get(s, h, "", 0, buf, sizeof buf, &vl), 0);
  cr_assert_eq(vl, 0);
  /* large key and value (out of line), and replacing inline <-> out of line */
  static unsigned char big[5000], big2[5000];
  for (size_t i = 0; i < sizeof big; i++)
    big[i] = (unsigned char)(i * 7), big2[i] = (unsigned char)(i * 13);
  cr_assert_eq(shmd_hash_put(s, h, big, 1000, big2, 5000, SHMD_HASH_UPSERT, NULL), 0);
  cr_assert_eq(shmd_hash_put(s, h, big, 1000, "x", 1, SHMD_HASH_UPSERT, NULL), 0);
  cr_assert_eq(shmd_hash_get(s, h, big, 1000, buf, sizeof buf, &vl), 0);
  cr_assert_eq(vl, 1);
  cr_assert_eq(shmd_hash_put(s, h, big, 1000, big, 3000, SHMD_HASH_UPSERT, NULL), 0);
  cr_assert_eq(shmd_hash_put(s, h, big, 1000, big2, 4000, SHMD_HASH_UPSERT, NULL), 0);
  cr_assert_eq(shmd_hash_get_alloc(s, h, big, 1000, &p, &vl), 0);
  cr_assert_eq(vl, 4000);
  cr_assert_eq(memcmp(p, big2, 4000), 0);
  free(p);
  cr_assert_eq(shmd_hash_put(s, h, "a", 1, big, 600, SHMD_HASH_UPSERT, NULL), 0);
  cr_assert_eq(shmd_hash_len(s, h, &len), 0);
  cr_assert_eq(len, 4);
  check_all(s, h);
  cr_assert_eq(shmd_hash_del(s, h, big, 1000), 0);
  cr_assert_eq(shmd_hash_del(s, h, "a", 1), 0);
  cr_assert_eq(shmd_hash_contains(s, h, "b", 1), 1);
  /* bad arguments */
  cr_assert_eq(shmd_hash_put(s, h, "a", 1, "x", 1, (shmd_hash_mode_t)7, NULL), SHMD_EINVAL);
  cr_assert_eq(shmd_hash_put(s, h, NULL, 3, "x", 1, SHMD_HASH_UPSERT, NULL), SHMD_EINVAL);
  cr_assert_eq(shmd_hash_put(s, h, "a", (size_t)1 << 31, "x", 1, SHMD_HASH_UPSERT, NULL),
               SHMD_ETOOBIG);
  cr_assert_eq(shmd_hash_put(s, h, "a", 1, "x", (size_t)1 << 31, SHMD_HASH_UPSERT, NULL),
               SHMD_ETOOBIG);
  shmd_hash_ref_t ref;
  cr_assert_eq(shmd_hash_get_ref(s, h, "b", 1, &ref), SHMD_EINVAL); /* outside a transaction */
  /* a size hint gives the table at once */
  shmd_ptr_t h2;
  cr_assert_eq(shmd_hash_create(s, 1000, &h2), 0);
  shmd_hash_stats_t hs;
  cr_assert_eq(shmd_hash_stats(s, h2, &hs), 0);
  cr_assert_eq(hs.buckets[0], 1024);
  cr_assert_eq(shmd_hash_destroy(s, h2), 0);
  check_all(s, h);
  shmd_stats_t st0, st1;
  cr_assert_eq(shmd_hash_destroy(s, h), 0);
  cr_assert_eq(shmd_stats(s, &st0), 0);
  cr_assert_eq(st0.allocated_bytes, 0, "destroy left %llu bytes allocated",
               (unsigned long long)st0.allocated_bytes);
  (void)st1;
  cr_assert_eq(shmd_alloc_check(s), 0);
  shmd_close(s);
}

Test(hash, wrong_kind_and_garbage) {
  shmd_store_t *s = ts_open("h", 16 * MIB, 16 * MIB);
  shmd_ptr_t p;
  cr_assert_eq(shmd_calloc(s, 1, 256, &p), 0);
  uint64_t *w = shmd_resolve(s, p);
  uint64_t len;
  cr_assert_eq(shmd_hash_len(s, p, &len), SHMD_ECORRUPT); /* zeroes */
  w[0] = (UINT64_C(0x59525241) << 32) | UINT64_C(0x444D4853); /* an "ARRY" container */
  cr_assert_eq(shmd_hash_len(s, p, &len), SHMD_EINVAL);
  cr_assert_eq(shmd_hash_put(s, p, "a", 1, "b", 1, SHMD_HASH_UPSERT, NULL), SHMD_EINVAL);
  cr_assert_eq(shmd_hash_check(s, p), SHMD_EINVAL);
  cr_assert_eq(shmd_hash_len(s, shmd_ptr_make(7, 0), &len), SHMD_ECORRUPT);
  /* a real hash whose table pointer is damaged */
  shmd_ptr_t h = new_hash(s, 16);
  cr_assert_eq(shmd_hash_put(s, h, "a", 1, "b", 1, SHMD_HASH_UPSERT, NULL), 0);
  uint64_t *hw = shmd_resolve(s, h);
  uint64_t saved = hw[4];
  hw[4] = shmd_ptr_make(0, UINT64_C(1) << 40).v;
  cr_assert_eq(shmd_hash_check(s, h), SHMD_ECORRUPT);
  cr_assert_eq(shmd_hash_get(s, h, "a", 1, NULL, 0, NULL), SHMD_ECORRUPT);
  hw[4] = saved;
  hw[3] = 5; /* count */
  cr_assert_eq(shmd_hash_check(s, h), SHMD_ECORRUPT);
  hw[3] = 1;
  check_all(s, h);
  shmd_close(s);
}

static void put_key(shmd_store_t *s, shmd_ptr_t h, unsigned i);

static int nop_cb(const void *k, size_t kl, const void *v, size_t vl, void *arg) {
  (void)k, (void)kl, (void)v, (void)vl, (void)arg;
  return 0;
}

/* Damage one word at a time (header, tables, entries) and run the checker, SCAN and the iterator:
 * each must answer with a status, never crash or hang. The word is restored after each round. */
Test(hash, check_survives_corruption) {
  ts_rng_t r = {ts_seed("hash.corruption")};
  shmd_store_t *s = ts_open("h", 16 * MIB, 16 * MIB);
  shmd_ptr_t h = new_hash(s, 0);
  const unsigned n = 3000;
  for (unsigned i = 0; i < n; i++)
    put_key(s, h, i);
  /* collect word addresses: header, table 0 (and 1), each entry's first 32 bytes */
  uint64_t **words = calloc(200000, sizeof *words);
  size_t nwords = 0;
  uint64_t *hw = shmd_resolve(s, h);
  for (int j = 0; j < 12; j++)
    words[nwords++] = hw + j;
  for (int t = 0; t < 2; t++) {
    shmd_ptr_t tp = {hw[4 + t]};
    if (tp.v == 0)
      continue;
    uint32_t l2 = ((uint32_t *)(hw + 6))[t];
    uint64_t *tw = shmd_resolve(s, tp);
    for (uint64_t j = 0; j < (UINT64_C(1) << l2); j++)
      words[nwords++] = tw + j;
  }
  shmd_tx_t *tx;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  for (unsigned i = 0; i < n; i++) {
    unsigned char k[KEY_MAX];
    size_t kl = key_of(i, k);
    shmd_hash_ref_t ref;
    cr_assert_eq(shmd_hash_get_ref(s, h, k, kl, &ref), 0);
    /* the entry starts 24 bytes before an inline key; long keys are out of line */
    if (kl <= SHMD_HASH_INLINE_MAX) {
      uint64_t *ew = (uint64_t *)((unsigned char *)ref.key - 24);
      for (int j = 0; j < 4; j++)
        words[nwords++] = ew + j;
    }
  }
  cr_assert_eq(shmd_tx_commit(tx), 0);
  unsigned rounds = 3000, corrupt_seen = 0;
  for (unsigned round = 0; round < rounds; round++) {
    uint64_t *w = words[ts_below(&r, nwords)];
    uint64_t saved = *w, bad;
    switch (ts_below(&r, 6)) {
    case 0: bad = 0; break;
    case 1: bad = ts_next(&r); break;
    case 2: bad = shmd_ptr_make(0, ts_below(&r, 16 * MIB) & ~UINT64_C(7)).v; break;
    case 3: bad = shmd_ptr_make(0, ts_below(&r, 32 * MIB)).v; break;
    case 4: bad = shmd_ptr_make(1 + (uint32_t)ts_below(&r, 5), ts_below(&r, 4096)).v; break;
    default: bad = saved ^ (UINT64_C(1) << ts_below(&r, 64)); break;
    }
    *w = bad;
    int rc = shmd_hash_check(s, h);
    cr_assert(rc == 0 || rc == SHMD_ECORRUPT || rc == SHMD_EINVAL, "check: %s", shmd_strerror(rc));
    corrupt_seen += rc != 0;
    uint64_t cursor = 0;
    unsigned steps = 0;
    do
      rc = shmd_hash_scan(s, h, cursor, 100, nop_cb, NULL, &cursor);
    while (rc == 0 && cursor != 0 && ++steps < 100000);
    cr_assert(rc == 0 || rc == SHMD_ECORRUPT || rc == SHMD_EINVAL, "scan: %s", shmd_strerror(rc));
    shmd_hash_iter_t *it;
    if (shmd_hash_iter_new(s, h, &it) == 0) {
      steps = 0;
      while ((rc = shmd_hash_iter_next(it, NULL, NULL, NULL, NULL)) == 0 && ++steps < 100000)
        ;
      cr_assert(rc == SHMD_ENOTFOUND || rc == SHMD_ECORRUPT || rc == SHMD_EINVAL || rc == SHMD_ENOMEM,
                "iter: %s", shmd_strerror(rc));
      shmd_hash_iter_free(it);
    }
    *w = saved;
  }
  cr_log_info("%u of %u damaged words detected by the checker", corrupt_seen, rounds);
  check_all(s, h);
  free(words);
  shmd_close(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* Property tests */

static void property_run(unsigned nkeys, unsigned steps, int check_every_step, const char *what) {
  ts_rng_t r = {ts_seed(what)};
  shmd_store_t *s = ts_open("h", 32 * MIB, 32 * MIB);
  shmd_ptr_t h = new_hash(s, 0);
  model_t m;
  model_init(&m, nkeys);
  int phase = 0;
  uint64_t grows = 0, shrinks = 0, rehashing_steps = 0, last_size = 0;
  for (unsigned step = 0; step < steps; step++) {
    if (step % phase_len(nkeys) == 0)
      phase = (int)(step / phase_len(nkeys)) % 2;
    shmd_hash_stats_t hs;
    cr_assert_eq(shmd_hash_stats(s, h, &hs), 0);
    if (hs.rehashing) {
      rehashing_steps++;
      if (hs.buckets[1] != last_size) {
        grows += hs.buckets[1] > hs.buckets[0];
        shrinks += hs.buckets[1] < hs.buckets[0];
        last_size = hs.buckets[1];
      }
    }
    int op = random_op(&r, phase);
    unsigned i = (unsigned)ts_below(&r, nkeys);
    uint64_t ver = step + 1;
    int rc = apply_op(s, h, op, i, ver);
    cr_assert(model_apply(&m, op, i, ver, rc), "step %u: op %d key %u: unexpected %s", step, op,
              i, shmd_err_name(rc));
    const char *why = compare_key(s, h, &m, i);
    cr_assert_null(why, "step %u key %u: %s", step, i, why);
    uint64_t len = 0;
    cr_assert_eq(shmd_hash_len(s, h, &len), 0);
    cr_assert_eq(len, m.count, "step %u: len", step);
    if (ts_below(&r, 50) == 0) /* some idle-loop rehash work too */
      cr_assert_geq(shmd_hash_rehash_step(s, h, 1 + ts_below(&r, 8)), 0);
    if (check_every_step)
      check_all(s, h);
    if (step % 997 == 0)
      compare_all(s, h, &m);
  }
  compare_all(s, h, &m);
  check_all(s, h);
  cr_log_info("%s: %u steps, %llu growths, %llu shrinks, %llu steps while rehashing", what, steps,
              (unsigned long long)grows, (unsigned long long)shrinks,
              (unsigned long long)rehashing_steps);
  cr_assert_gt(grows, 0);
  cr_assert_gt(shrinks, 0);
  cr_assert_eq(shmd_hash_destroy(s, h), 0);
  cr_assert_eq(shmd_alloc_check(s), 0);
  model_free(&m);
  shmd_close(s);
}

Test(hash, property) {
  property_run(2000, (unsigned)env_u64("SHMDICT_HASH_OPS", 200000), 0, "hash.property");
}

Test(hash, property_checked) {
  property_run(300, (unsigned)env_u64("SHMDICT_HASH_OPS", 200000) / 10, 1, "hash.property_checked");
}

/* ---------------------------------------------------------------------------------------------- */
/* Refs inside the caller's transaction, and transactions that abort */

Test(hash, refs_and_outer_tx) {
  shmd_store_t *s = ts_open("h", 16 * MIB, 16 * MIB);
  shmd_ptr_t h = new_hash(s, 0);
  shmd_tx_t *tx;
  /* put_ref: reserve and fill; then get_ref and change in place with logging */
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  shmd_hash_ref_t ref;
  int created = -1;
  cr_assert_eq(shmd_hash_put_ref(s, h, "ptr", 3, 8, SHMD_HASH_UPSERT, &created, &ref), 0);
  cr_assert_eq(created, 1);
  cr_assert_eq(ref.val_len, 8);
  cr_assert_eq((uintptr_t)ref.val % 8, 0);
  uint64_t v = 41;
  memcpy(ref.val, &v, 8);
  cr_assert_eq(shmd_tx_commit(tx), 0);
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_hash_get_ref(s, h, "ptr", 3, &ref), 0);
  cr_assert_eq(ref.key_len, 3);
  cr_assert_eq(memcmp(ref.key, "ptr", 3), 0);
  cr_assert_eq(shmd_tx_log(tx, ref.val_ptr, 8), 0);
  v = 42;
  memcpy(ref.val, &v, 8);
  cr_assert_eq(shmd_tx_commit(tx), 0);
  uint64_t got = 0;
  cr_assert_eq(shmd_hash_get(s, h, "ptr", 3, &got, 8, NULL), 0);
  cr_assert_eq(got, 42);
  /* an in-place change that aborts is undone */
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_hash_get_ref(s, h, "ptr", 3, &ref), 0);
  cr_assert_eq(shmd_tx_log(tx, ref.val_ptr, 8), 0);
  v = 7;
  memcpy(ref.val, &v, 8);
  shmd_tx_abort(tx);
  cr_assert_eq(shmd_hash_get(s, h, "ptr", 3, &got, 8, NULL), 0);
  cr_assert_eq(got, 42);
  /* many puts and deletes in one outer transaction that aborts: nothing happened, no leak */
  for (int i = 0; i < 20; i++) {
    char k[16];
    int n = snprintf(k, sizeof k, "base%d", i);
    cr_assert_eq(shmd_hash_put(s, h, k, (size_t)n, k, (size_t)n, SHMD_HASH_UPSERT, NULL), 0);
  }
  shmd_stats_t before, after;
  cr_assert_eq(shmd_stats(s, &before), 0);
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  for (int i = 0; i < 60; i++) {
    char k[16];
    int n = snprintf(k, sizeof k, "new%d", i);
    int rc = shmd_hash_put(s, h, k, (size_t)n, k, (size_t)n, SHMD_HASH_UPSERT, NULL);
    cr_assert_eq(rc, 0, "put %d: %s", i, shmd_strerror(rc));
  }
  for (int i = 0; i < 10; i++) {
    char k[16];
    int n = snprintf(k, sizeof k, "base%d", i);
    cr_assert_eq(shmd_hash_del(s, h, k, (size_t)n), 0);
  }
  cr_assert_eq(shmd_hash_put(s, h, "base10", 6, "x", 1, SHMD_HASH_INSERT, NULL), SHMD_EEXIST);
  shmd_tx_abort(tx);
  cr_assert_eq(shmd_stats(s, &after), 0);
  cr_assert_eq(after.allocated_bytes, before.allocated_bytes);
  uint64_t len;
  cr_assert_eq(shmd_hash_len(s, h, &len), 0);
  cr_assert_eq(len, 21);
  for (int i = 0; i < 20; i++) {
    char k[16];
    int n = snprintf(k, sizeof k, "base%d", i);
    cr_assert_eq(shmd_hash_contains(s, h, k, (size_t)n), 1);
  }
  /* an outcome status inside an outer transaction does not abort it */
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_hash_put(s, h, "base1", 5, "x", 1, SHMD_HASH_INSERT, NULL), SHMD_EEXIST);
  cr_assert_eq(shmd_hash_del(s, h, "nope", 4), SHMD_ENOTFOUND);
  cr_assert_eq(shmd_hash_put(s, h, "fresh", 5, "x", 1, SHMD_HASH_INSERT, NULL), 0);
  cr_assert_eq(shmd_tx_commit(tx), 0);
  cr_assert_eq(shmd_hash_contains(s, h, "fresh", 5), 1);
  /* a hash created inside a transaction that aborts is freed */
  cr_assert_eq(shmd_stats(s, &before), 0);
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  shmd_ptr_t h2;
  cr_assert_eq(shmd_hash_create(s, 1000, &h2), 0);
  cr_assert_eq(shmd_hash_put(s, h2, "a", 1, "b", 1, SHMD_HASH_UPSERT, NULL), 0);
  shmd_tx_abort(tx);
  cr_assert_eq(shmd_stats(s, &after), 0);
  cr_assert_eq(after.allocated_bytes, before.allocated_bytes);
  check_all(s, h);
  shmd_close(s);
}

static int busy_cb(const void *k, size_t kl, const void *v, size_t vl, void *arg) {
  (void)v, (void)vl;
  shmd_store_t *s = arg;
  shmd_ptr_t h;
  shmd_root_get(s, "h", &h);
  return shmd_hash_del(s, h, k, kl);
}

static int count_cb(const void *k, size_t kl, const void *v, size_t vl, void *arg) {
  (void)k, (void)kl, (void)v, (void)vl;
  ++*(uint64_t *)arg;
  return 0;
}

Test(hash, foreach_and_fingerprint) {
  shmd_store_t *s = ts_open("h", 16 * MIB, 16 * MIB);
  shmd_ptr_t h = new_hash(s, 0);
  for (unsigned i = 0; i < 1000; i++) {
    unsigned char k[KEY_MAX], v[VAL_MAX];
    size_t kl = key_of(i, k), vl = val_of(i, 1, v);
    cr_assert_eq(shmd_hash_put(s, h, k, kl, v, vl, SHMD_HASH_UPSERT, NULL), 0);
  }
  uint64_t n = 0;
  cr_assert_eq(shmd_hash_foreach(s, h, count_cb, &n), 0);
  cr_assert_eq(n, 1000);
  cr_assert_eq(shmd_hash_foreach(s, h, busy_cb, s), SHMD_EBUSY);
  check_all(s, h);
  shmd_close(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* SCAN across growth and shrink, the safe iterator while rehashing */

typedef struct seen_s {
  unsigned nkeys;
  uint32_t *seen; /* times each key was returned */
  unsigned other;
} seen_t;

/* Key numbers are recovered from the "k%u." prefix (key 0 is empty; long keys have it too). */
static int key_number(const void *k, size_t kl, unsigned *out) {
  if (kl == 0) {
    *out = 0;
    return 1;
  }
  const char *c = k;
  if (c[0] != 'k')
    return 0;
  unsigned v = 0;
  size_t j = 1;
  for (; j < kl && c[j] >= '0' && c[j] <= '9'; j++)
    v = v * 10 + (unsigned)(c[j] - '0');
  *out = v;
  return j > 1;
}

static int seen_cb(const void *k, size_t kl, const void *v, size_t vl, void *arg) {
  (void)v, (void)vl;
  seen_t *st = arg;
  unsigned i;
  if (key_number(k, kl, &i) && i < st->nkeys)
    st->seen[i]++;
  else
    st->other++;
  return 0;
}

static void put_key(shmd_store_t *s, shmd_ptr_t h, unsigned i) {
  unsigned char k[KEY_MAX], v[VAL_MAX];
  size_t kl = key_of(i, k), vl = val_of(i, 1, v);
  int rc = shmd_hash_put(s, h, k, kl, v, vl, SHMD_HASH_UPSERT, NULL);
  cr_assert_eq(rc, 0, "put %u: %s", i, shmd_strerror(rc));
}

static void del_key(shmd_store_t *s, shmd_ptr_t h, unsigned i) {
  unsigned char k[KEY_MAX];
  size_t kl = key_of(i, k);
  int rc = shmd_hash_del(s, h, k, kl);
  cr_assert(rc == 0 || rc == SHMD_ENOTFOUND, "del %u: %s", i, shmd_strerror(rc));
}

Test(hash, scan_across_grow_and_shrink) {
  ts_rng_t r = {ts_seed("hash.scan")};
  shmd_store_t *s = ts_open("h", 32 * MIB, 32 * MIB);
  for (int round = 0; round < 6; round++) {
    shmd_ptr_t h;
    cr_assert_eq(shmd_hash_create(s, 0, &h), 0);
    /* stable keys [0, 1000) stay for the whole scan; volatile keys [1000, 40000) come and go */
    const unsigned stable = 1000, nkeys = 40000;
    for (unsigned i = 0; i < stable; i++)
      put_key(s, h, i);
    unsigned extra = round % 2 ? 30000 : 0; /* odd rounds start big and shrink */
    for (unsigned i = stable; i < stable + extra; i++)
      put_key(s, h, i);
    seen_t st = {nkeys, calloc(nkeys, sizeof(uint32_t)), 0};
    uint64_t cursor = 0, resizes = 0, last_size = 0;
    unsigned steps = 0, volatile_next = stable + extra;
    do {
      shmd_hash_stats_t hs;
      cr_assert_eq(shmd_hash_stats(s, h, &hs), 0);
      if (hs.rehashing && hs.buckets[1] != last_size) {
        resizes++;
        last_size = hs.buckets[1];
      }
      size_t count = 1 + ts_below(&r, 20);
      cr_assert_eq(shmd_hash_scan(s, h, cursor, count, seen_cb, &st, &cursor), 0);
      steps++;
      /* between steps: grow (even rounds) or shrink (odd rounds), with rehash in progress */
      unsigned n = (unsigned)ts_below(&r, 200);
      for (unsigned j = 0; j < n; j++) {
        if (round % 2 == 0 && volatile_next < nkeys)
          put_key(s, h, volatile_next++);
        else if (round % 2 == 1)
          del_key(s, h, stable + (unsigned)ts_below(&r, extra));
      }
      if (round >= 4 && ts_below(&r, 3) == 0) /* random churn: both directions */
        for (unsigned j = 0; j < 300; j++)
          del_key(s, h, stable + (unsigned)ts_below(&r, nkeys - stable));
    } while (cursor != 0);
    for (unsigned i = 0; i < stable; i++)
      cr_assert_geq(st.seen[i], 1, "round %d: stable key %u missed by SCAN", round, i);
    for (unsigned i = 0; i < nkeys; i++)
      cr_assert_leq(st.seen[i], 1, "round %d: key %u returned %u times", round, i, st.seen[i]);
    cr_assert_eq(st.other, 0);
    cr_log_info("scan round %d: %u steps, %llu resizes during the scan", round, steps,
                (unsigned long long)resizes);
    cr_assert_gt(resizes, 0, "round %d: no resize during the scan", round);
    check_all(s, h);
    free(st.seen);
    cr_assert_eq(shmd_hash_destroy(s, h), 0);
  }
  cr_assert_eq(shmd_alloc_check(s), 0);
  shmd_close(s);
}

Test(hash, iterator_while_rehashing) {
  ts_rng_t r = {ts_seed("hash.iter")};
  shmd_store_t *s = ts_open("h", 32 * MIB, 32 * MIB);
  for (int round = 0; round < 4; round++) {
    shmd_ptr_t h;
    cr_assert_eq(shmd_hash_create(s, 0, &h), 0);
    const unsigned nkeys = 30000;
    unsigned initial = round % 2 ? 20000 : 3000;
    for (unsigned i = 0; i < initial; i++)
      put_key(s, h, i);
    shmd_hash_stats_t hs;
    cr_assert_eq(shmd_hash_stats(s, h, &hs), 0);
    uint32_t *seen = calloc(nkeys, sizeof(uint32_t));
    bool *deleted = calloc(nkeys, sizeof(bool));
    shmd_hash_iter_t *it;
    cr_assert_eq(shmd_hash_iter_new(s, h, &it), 0);
    const void *k, *v;
    size_t kl, vl;
    int rc;
    unsigned next_new = initial, rehashing_seen = 0;
    while ((rc = shmd_hash_iter_next(it, &k, &kl, &v, &vl)) == 0) {
      unsigned i;
      cr_assert(key_number(k, kl, &i) && i < nkeys);
      seen[i]++;
      unsigned char want[VAL_MAX];
      size_t wl = val_of(i, 1, want);
      cr_assert_eq(vl, wl);
      cr_assert_eq(memcmp(v, want, wl), 0);
      /* delete the current entry half the time; grow in even rounds, shrink in odd ones */
      if (i < initial && ts_below(&r, 2) == 0) {
        del_key(s, h, i);
        deleted[i] = true;
      }
      if (round % 2 == 0) {
        for (int j = 0; j < 3 && next_new < nkeys; j++)
          put_key(s, h, next_new++);
      } else {
        unsigned victim = (unsigned)ts_below(&r, initial);
        del_key(s, h, victim);
        deleted[victim] = true;
      }
      cr_assert_eq(shmd_hash_stats(s, h, &hs), 0);
      rehashing_seen += (unsigned)hs.rehashing;
    }
    cr_assert_eq(rc, SHMD_ENOTFOUND, "iter: %s", shmd_strerror(rc));
    shmd_hash_iter_free(it);
    cr_assert_gt(rehashing_seen, 0, "the table never rehashed during the iteration");
    for (unsigned i = 0; i < nkeys; i++) {
      cr_assert_leq(seen[i], 1, "key %u returned twice", i);
      if (i < initial && !deleted[i])
        cr_assert_eq(seen[i], 1, "round %d: key %u present throughout was missed", round, i);
    }
    check_all(s, h);
    free(seen);
    free(deleted);
    cr_assert_eq(shmd_hash_destroy(s, h), 0);
  }
  cr_assert_eq(shmd_alloc_check(s), 0);
  shmd_close(s);
}

Test(hash, rehash_step_idle_loop) {
  shmd_store_t *s = ts_open("h", 32 * MIB, 32 * MIB);
  shmd_ptr_t h = new_hash(s, 0);
  unsigned n = 1u << 14;
  for (unsigned i = 0; i < n + 1; i++)
    put_key(s, h, i);
  shmd_hash_stats_t hs;
  cr_assert_eq(shmd_hash_stats(s, h, &hs), 0);
  cr_assert_eq(hs.rehashing, 1, "inserting 2^14 + 1 keys starts a growth");
  cr_assert_eq(hs.buckets[1], 2 * hs.buckets[0]);
  check_all(s, h);
  int rc, calls = 0;
  while ((rc = shmd_hash_rehash_step(s, h, 100)) == 1)
    calls++;
  cr_assert_eq(rc, 0);
  cr_assert_eq(shmd_hash_stats(s, h, &hs), 0);
  cr_assert_eq(hs.rehashing, 0);
  cr_assert_eq(hs.buckets[0], 2u * n);
  cr_log_info("rehash finished after %d idle steps", calls);
  check_all(s, h);
  /* delete down to 1/8 and let the idle loop shrink */
  for (unsigned i = 0; i < n + 1 - n / 8; i++)
    del_key(s, h, i);
  while ((rc = shmd_hash_rehash_step(s, h, 1000)) == 1)
    ;
  cr_assert_eq(rc, 0);
  cr_assert_eq(shmd_hash_stats(s, h, &hs), 0);
  cr_assert_lt(hs.buckets[0], 2u * n, "the table did not shrink");
  cr_assert_eq(hs.count, n / 8);
  check_all(s, h);
  shmd_close(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* A million keys: grow from empty and shrink back */

static size_t big_key(uint64_t i, unsigned char *k) {
  return (size_t)snprintf((char *)k, 32, "key:%012llu", (unsigned long long)i); /* 16 bytes */
}

Test(hash, grow_to_a_million_and_back) {
  uint64_t n = env_u64("SHMDICT_HASH_BIG", 1000000);
  shmd_store_t *s = ts_open("h", 64 * MIB, 64 * MIB);
  shmd_ptr_t h = new_hash(s, 0);
  unsigned char k[32];
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (uint64_t i = 0; i < n; i++) {
    size_t kl = big_key(i, k);
    uint64_t v = i * 3;
    int rc = shmd_hash_put(s, h, k, kl, &v, sizeof v, SHMD_HASH_INSERT, NULL);
    cr_assert_eq(rc, 0, "insert %llu: %s", (unsigned long long)i, shmd_strerror(rc));
    if (i + 1 == 1000 || i + 1 == 100000)
      cr_assert_eq(shmd_hash_check(s, h), 0, "check at %llu", (unsigned long long)i + 1);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ins = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  uint64_t len;
  cr_assert_eq(shmd_hash_len(s, h, &len), 0);
  cr_assert_eq(len, n);
  check_all(s, h);
  for (uint64_t i = 0; i < n; i += 7) {
    size_t kl = big_key(i, k);
    uint64_t v = 0;
    cr_assert_eq(shmd_hash_get(s, h, k, kl, &v, sizeof v, NULL), 0);
    cr_assert_eq(v, i * 3);
  }
  shmd_hash_stats_t hs;
  cr_assert_eq(shmd_hash_stats(s, h, &hs), 0);
  cr_log_info("%llu keys: tables %llu/%llu, %.0f ns/insert", (unsigned long long)n,
              (unsigned long long)hs.buckets[0], (unsigned long long)hs.buckets[1],
              ins * 1e9 / (double)n);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (uint64_t i = 0; i < n; i++) {
    size_t kl = big_key(i, k);
    int rc = shmd_hash_del(s, h, k, kl);
    cr_assert_eq(rc, 0, "del %llu: %s", (unsigned long long)i, shmd_strerror(rc));
    if (n - i - 1 == 100000 || n - i - 1 == 1000)
      cr_assert_eq(shmd_hash_check(s, h), 0);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double del = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  while (shmd_hash_rehash_step(s, h, 1000) == 1)
    ;
  cr_assert_eq(shmd_hash_stats(s, h, &hs), 0);
  cr_assert_eq(hs.count, 0);
  cr_assert_leq(hs.buckets[0], 64, "table not shrunk back: %llu buckets",
                (unsigned long long)hs.buckets[0]);
  cr_log_info("deleted %llu keys: %.0f ns/delete", (unsigned long long)n, del * 1e9 / (double)n);
  check_all(s, h);
  cr_assert_eq(shmd_hash_destroy(s, h), 0);
  shmd_stats_t st;
  cr_assert_eq(shmd_stats(s, &st), 0);
  cr_assert_eq(st.allocated_bytes, 0);
  cr_assert_eq(shmd_alloc_check(s), 0);
  shmd_close(s);
}

Test(hash, destroy_in_pieces) {
  shmd_store_t *s = ts_open("h", 64 * MIB, 64 * MIB);
  shmd_ptr_t h = new_hash(s, 0);
  for (unsigned i = 0; i < 50000; i++)
    put_key(s, h, i);
  /* inside a transaction: all of it, atomically (the transaction grows); an abort brings every
   * entry back */
  shmd_tx_t *tx;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_hash_destroy(s, h), 0);
  shmd_tx_abort(tx);
  uint64_t len;
  cr_assert_eq(shmd_hash_len(s, h, &len), 0);
  cr_assert_eq(len, 50000);
  check_all(s, h);
  /* at the top level: in pieces, each its own transaction (works in a full store) */
  cr_assert_eq(shmd_hash_destroy(s, h), 0);
  shmd_stats_t st;
  cr_assert_eq(shmd_stats(s, &st), 0);
  cr_assert_eq(st.allocated_bytes, 0);
  cr_assert_eq(shmd_alloc_check(s), 0);
  shmd_close(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* Children that report what they did through a pipe */

/* A record a child writes: the op it starts (done = 0) and, once it returned, its status. */
typedef struct rec_s {
  uint32_t seq;
  uint8_t op;
  uint8_t done;
  uint16_t child;
  uint32_t key;
  int32_t rc;
  uint64_t ver;
} rec_t;

/* What a child of child_ops does: random ops on keys [base, base + nkeys), `ops` of them (or until
 * killed), then an insert-only race for the keys [shared, shared + nshared) (mp test). */
typedef struct {
  uint16_t child;
  unsigned base, nkeys, ops, shared, nshared;
} ops_arg_t;

/* The child's loop, on the store the harness opened (and whose crash point it armed); it reports
 * each op before (done = 0) and after it (done = 1). */
static int child_ops(ts_crash_child_t *cc) {
  const ops_arg_t *a = cc->arg;
  shmd_store_t *s = cc->s;
  uint64_t seed = cc->seed;
  uint16_t child = a->child;
  shmd_ptr_t h;
  if (shmd_root_get(s, "h", &h))
    _exit(92);
  ts_rng_t r = {seed};
  int phase = (int)ts_below(&r, 2);
  for (unsigned step = 0; step < a->ops; step++) {
    if (step % phase_len(a->nkeys) == 0 && step > 0)
      phase ^= 1;
    int op = random_op(&r, phase);
    if (op == OP_GET)
      op = OP_UPSERT;
    rec_t rec = {.seq = step, .op = (uint8_t)op, .child = child,
                 .key = a->base + (unsigned)ts_below(&r, a->nkeys),
                 .ver = ((uint64_t)child << 48) | ((seed & 0xffff) << 32) | step};
    ts_crash_report(cc, &rec);
    rec.rc = apply_op(s, h, op, rec.key, rec.ver);
    if (rec.rc < 0 && rec.rc != SHMD_EEXIST && rec.rc != SHMD_ENOTFOUND)
      _exit(93);
    rec.done = 1;
    ts_crash_report(cc, &rec);
  }
  for (unsigned j = 0; j < a->nshared; j++) {
    unsigned i = a->shared + (child ? a->nshared - 1 - j : j); /* from opposite ends: they meet */
    rec_t rec = {.seq = a->ops + j, .op = OP_INSERT, .child = child, .key = i,
                 .ver = ((uint64_t)child << 48) | ((seed & 0xffff) << 32) | (a->ops + j)};
    rec.rc = apply_op(s, h, OP_INSERT, i, rec.ver);
    if (rec.rc != 0 && rec.rc != SHMD_EEXIST)
      _exit(94);
    rec.done = 1;
    ts_crash_report(cc, &rec);
  }
  shmd_close(s);
  return 0;
}

/* A run of child_ops on store "h". */
static ts_crash_spec_t ops_spec(const ops_arg_t *a, uint64_t seed, uint64_t first_bytes) {
  return (ts_crash_spec_t){.what = "the writer", .fn = child_ops, .arg = (void *)a, .seed = seed, .store = "h",
                           .opts = ts_opts(first_bytes, first_bytes), .rec_size = sizeof(rec_t)};
}

/* The parent's side of a crash round: each record as it arrives goes into the model; the
 * started, unfinished op is kept in `pending` (pending.done = 1 when there is none). A status the
 * model denies fails the test. */
static uint64_t recs_done, rounds_pending; /* statistics of the crash tests */

static uint64_t now_us(void) { return ts_now_us(); }

typedef struct {
  model_t *m;
  rec_t pending;
} recs_t;

static void take_rec(const void *rec, void *arg) {
  recs_t *rs = arg;
  const rec_t *r = rec;
  if (!r->done) {
    rs->pending = *r;
    return;
  }
  cr_assert(model_apply(rs->m, r->op, r->key, r->ver, r->rc), "%s: child op %d on key %u: status %s",
            ts_crash_where(), r->op, r->key, shmd_err_name(r->rc));
  rs->pending.done = 1;
  recs_done++;
}

/* After a child died with `pending` unfinished: the key may be in its old or its new state; take
 * whichever the hash holds into the model (failing if it is neither). */
static void settle_pending(shmd_store_t *s, shmd_ptr_t h, model_t *m, const rec_t *p) {
  if (p->done)
    return;
  const char *why = compare_key(s, h, m, p->key);
  if (why == NULL)
    return; /* not applied (or applied without visible change) */
  bool pr = m->present[p->key];
  uint64_t vr = m->ver[p->key];
  int predicted = 0;
  switch (p->op) {
  case OP_UPSERT: predicted = 0; break;
  case OP_INSERT: predicted = pr ? SHMD_EEXIST : 0; break;
  case OP_UPDATE:
  case OP_DEL: predicted = pr ? 0 : SHMD_ENOTFOUND; break;
  }
  model_apply(m, p->op, p->key, p->ver, predicted);
  why = compare_key(s, h, m, p->key);
  if (why != NULL) {
    model_set(m, p->key, pr, vr);
    cr_assert_fail("key %u after the unfinished op %d: neither old nor new state (%s)", p->key,
                   p->op, why);
  }
}

static shmd_store_t *reopen(uint64_t first_bytes) {
  shmd_store_t *s = ts_open("h", first_bytes, first_bytes);
  return s;
}

/* The records of mp_two_writers: a race for a shared key (one insert wins), or an op of a child. */
typedef struct {
  model_t *m;
  int *winner;
  unsigned nkeys;
} two_t;

static void two_rec(const void *rec, void *arg) {
  two_t *two = arg;
  const rec_t *r = rec;
  unsigned nkeys = two->nkeys;
  if (r->done && r->key >= 2 * nkeys) { /* a race for a shared key: one insert wins */
    cr_assert(r->rc == 0 || r->rc == SHMD_EEXIST);
    if (r->rc == 0) {
      cr_assert_eq(two->winner[r->key - 2 * nkeys], -1, "two inserts of shared key %u won", r->key);
      two->winner[r->key - 2 * nkeys] = r->child;
      model_set(two->m, r->key, true, r->ver);
    }
  } else if (r->done)
    cr_assert(model_apply(two->m, r->op, r->key, r->ver, r->rc), "child %d op %d key %u: %s", r->child, r->op,
              r->key, shmd_err_name(r->rc));
}

Test(hash, mp_two_writers) {
  uint64_t seed = ts_seed("hash.mp");
  const uint64_t seg = 32 * MIB;
  shmd_store_t *s = reopen(seg);
  new_hash(s, 0);
  shmd_close(s);
  const unsigned nkeys = 3000, nshared = 500;
  const unsigned ops = (unsigned)env_u64("SHMDICT_HASH_OPS", 200000) / 2;
  model_t m;
  model_init(&m, 2 * nkeys + nshared);
  int winner[nshared];
  for (unsigned j = 0; j < nshared; j++)
    winner[j] = -1;
  two_t two = {&m, winner, nkeys};
  ops_arg_t args[2];
  ts_crash_proc_t *p[2];
  for (int c = 0; c < 2; c++) {
    /* both children use the one hash (one lock, shared resizes) on disjoint key ranges */
    args[c] = (ops_arg_t){(uint16_t)c, (unsigned)c * nkeys, nkeys, ops, 2 * nkeys, nshared};
    ts_crash_spec_t sp = ops_spec(&args[c], seed + (uint64_t)c, seg);
    sp.what = c ? "writer 1" : "writer 0";
    sp.end = TS_END_EXIT0;
    sp.on_rec = two_rec;
    sp.rec_arg = &two;
    p[c] = ts_crash_start(NULL, &sp);
  }
  /* read both pipes as records arrive, so neither child blocks on a full pipe */
  ts_crash_wait_all(p, 2);
  for (int c = 0; c < 2; c++)
    ts_crash_finish(p[c], NULL);
  for (unsigned j = 0; j < nshared; j++)
    cr_assert_neq(winner[j], -1, "nobody inserted shared key %u", 2 * nkeys + j);
  s = reopen(seg);
  shmd_ptr_t h;
  cr_assert_eq(shmd_root_get(s, "h", &h), 0);
  compare_all(s, h, &m);
  check_all(s, h);
  model_free(&m);
  shmd_close(s);
}

/* Runs one child until it is killed (after delay_us, or at a crash point) or finishes, then
 * reopens, checks, and verifies the model. */
static int crash_round(ts_crash_t *t, model_t *m, uint64_t seed, const char *point, unsigned delay_us,
                       unsigned ops, uint64_t seg) {
  ops_arg_t a = {0, 0, m->nkeys, ops, 0, 0};
  recs_t rs = {m, {.done = 1}};
  ts_crash_spec_t sp = ops_spec(&a, seed, seg);
  sp.point = point;
  sp.on_rec = take_rec;
  sp.rec_arg = &rs;
  /* odd delays count from the fork (kills land in shmd_open and its recovery too), even ones
   * from the child's first record (kills land in the operations) */
  sp.kill_after_us = delay_us;
  sp.kill_from = delay_us % 2 == 0 ? TS_FROM_FIRST_RECORD : TS_FROM_FORK;
  ts_crash_res_t res;
  ts_crash_run(t, &sp, &res); /* exit 0 or killed */
  rounds_pending += !rs.pending.done;
  shmd_store_t *s = ts_crash_open("h", seg, seg);
  ts_crash_check(s, TS_CHECK_ALLOC, "hash:h");
  shmd_ptr_t h;
  cr_assert_eq(shmd_root_get(s, "h", &h), 0);
  settle_pending(s, h, m, &rs.pending);
  compare_all(s, h, m);
  shmd_close(s);
  return res.status != 0;
}

Test(hash, crash_random_kills) {
  ts_crash_t t;
  ts_crash_begin(&t, "hash.crash_random");
  uint64_t seed = t.seed;
  const uint64_t seg = 16 * MIB;
  shmd_store_t *s = reopen(seg);
  new_hash(s, 0);
  shmd_close(s);
  model_t m;
  model_init(&m, 4000);
  unsigned rounds = (unsigned)env_u64("SHMDICT_HASH_CRASH_ROUNDS", 100), killed = 0;
  for (unsigned i = 0; i < rounds; i++)
    killed += (unsigned)crash_round(&t, &m, seed + i, NULL, 1 + (unsigned)ts_below(&t.rng, 20000), 1000000, seg);
  ts_crash_end(&t);
  cr_log_info("%u of %u children killed, %llu ops done, %llu kills inside an op; %llu keys at the end",
              killed, rounds, (unsigned long long)recs_done, (unsigned long long)rounds_pending,
              (unsigned long long)m.count);
  cr_assert_eq(killed, rounds);
  model_free(&m);
}

Test(hash, crash_points) {
  ts_crash_t t;
  ts_crash_begin(&t, "hash.crash_points");
  uint64_t seed = t.seed;
  const uint64_t seg = 16 * MIB;
  shmd_store_t *s = reopen(seg);
  new_hash(s, 0);
  shmd_close(s);
  model_t m;
  model_init(&m, 2000);
  /* each point with the largest N that a child's 20000 ops reach (resizes are rare) */
  static const struct {
    const char *name;
    unsigned max_n;
  } points[] = {
      {"hash.insert.alloc", 300},    {"hash.insert.linked", 300}, {"hash.delete.unlinked", 300},
      {"hash.rehash.mid_bucket", 300}, {"hash.rehash.finished", 2}, {"hash.resize", 2},
      {"tx.before_commit", 300},     {"tx.committed", 300},
  };
  unsigned rounds = (unsigned)env_u64("SHMDICT_HASH_CRASH_ROUNDS", 100) / 10;
  unsigned killed[sizeof points / sizeof points[0]] = {0};
  for (unsigned round = 0; round < rounds; round++)
    for (size_t p = 0; p < sizeof points / sizeof points[0]; p++) {
      char spec[96];
      snprintf(spec, sizeof spec, "%s:%u", points[p].name,
               1 + (unsigned)ts_below(&t.rng, points[p].max_n));
      killed[p] += (unsigned)crash_round(&t, &m, seed + round * 100 + p, spec, 0, 20000, seg);
    }
  ts_crash_end(&t);
  for (size_t p = 0; p < sizeof points / sizeof points[0]; p++) {
    cr_log_info("%s: killed %u of %u", points[p].name, killed[p], rounds);
    cr_assert_gt(killed[p], 0, "crash point %s never reached", points[p].name);
  }
  model_free(&m);
}

/* A destroy killed half-way leaves a valid hash that can be destroyed again. */
static int destroy_child(ts_crash_child_t *cc) { return shmd_hash_destroy(cc->s, *(const shmd_ptr_t *)cc->arg) == 0 ? 0 : 93; }

Test(hash, crash_destroy) {
  ts_crash_t t;
  ts_crash_begin(&t, "hash.crash_destroy");
  const uint64_t seg = 32 * MIB;
  for (int round = 0; round < 6; round++) {
    shmd_store_t *s = reopen(seg);
    shmd_ptr_t h;
    cr_assert_eq(shmd_hash_create(s, 0, &h), 0);
    cr_assert_eq(shmd_root_set(s, "h", h), 0);
    for (unsigned i = 0; i < 20000; i++)
      put_key(s, h, i);
    shmd_close(s);
    /* even rounds die at a destroy piece, odd ones at a random moment */
    char spec[64];
    snprintf(spec, sizeof spec, "hash.destroy.piece:%u", 1 + (unsigned)ts_below(&t.rng, 40));
    ts_crash_spec_t sp = {.what = "the destroyer", .fn = destroy_child, .arg = &h, .store = "h",
                          .opts = ts_opts(seg, seg)};
    if (round % 2 == 0)
      sp.point = spec;
    else
      sp.kill_lo_us = 1000, sp.kill_hi_us = 1000 + 20000 - 1;
    int st = ts_crash_run(&t, &sp, NULL); /* exit 0 or killed */
    s = ts_crash_open("h", seg, seg);
    if (st != 0) {
      int rc = shmd_hash_check(s, h);
      if (rc == 0) {
        cr_assert_eq(shmd_hash_destroy(s, h), 0, "%s", ts_crash_where());
      } else {
        /* the kill came after the last piece committed: everything must be free */
        shmd_stats_t stt;
        cr_assert_eq(shmd_stats(s, &stt), 0);
        cr_assert_eq(stt.allocated_bytes, 0, "%s: hash neither valid (%s) nor freed", ts_crash_where(),
                     shmd_strerror(rc));
      }
    }
    shmd_stats_t stt;
    cr_assert_eq(shmd_stats(s, &stt), 0);
    cr_assert_eq(stt.allocated_bytes, 0, "%s", ts_crash_where());
    ts_crash_check(s, TS_CHECK_ALLOC, NULL);
    shmd_root_del(s, "h");
    shmd_close(s);
  }
  ts_crash_end(&t);
}

/* ---------------------------------------------------------------------------------------------- */
/* Optimistic readers: get and contains without the lock (see the essay in containers/hash.c) */

/* A churn key's value at version v: v itself, then bytes derived from (i, v); inline (8 to 127
 * bytes) or, every 7th version, out of line. Whatever a reader gets must be one whole version. */
#define CHURN_OOL 600
static size_t churn_val(unsigned i, uint64_t v, unsigned char *buf) {
  size_t len = v % 7 == 0 ? CHURN_OOL : 8 + (size_t)(mix64(i ^ (v << 20)) % 120);
  memcpy(buf, &v, 8);
  for (size_t j = 8; j < len; j++)
    buf[j] = (unsigned char)(i * 31u + v * 7u + j);
  return len;
}

static bool churn_ok(unsigned i, const unsigned char *buf, size_t len) {
  if (len < 8)
    return false;
  uint64_t v;
  memcpy(&v, buf, 8);
  unsigned char want[CHURN_OOL];
  return churn_val(i, v, want) == len && memcmp(want, buf, len) == 0;
}

static size_t churn_key(unsigned i, char *k) { return (size_t)sprintf(k, "c%u", i); }
static size_t stable_key(unsigned i, char *k) { return (size_t)sprintf(k, "stable-%u", i); }

/* A writer: rounds of "upsert every churn key, then delete nine in ten" (each round grows and
 * shrinks the table, so readers meet both rehash directions), until killed or `rounds` done. */
typedef struct {
  unsigned nchurn, rounds;
} churn_t;

static int churn_writer(ts_crash_child_t *cc) {
  const churn_t *a = cc->arg;
  shmd_store_t *s = cc->s;
  shmd_ptr_t h;
  if (shmd_root_get(s, "h", &h))
    _exit(92);
  ts_rng_t r = {cc->seed};
  unsigned char val[CHURN_OOL];
  char k[32];
  uint64_t ver = cc->seed << 24;
  for (unsigned round = 0; round < a->rounds; round++) {
    for (unsigned i = 0; i < a->nchurn; i++) {
      size_t n = churn_val(i, ++ver, val);
      if (shmd_hash_put(s, h, k, churn_key(i, k), val, n, SHMD_HASH_UPSERT, NULL))
        _exit(93);
    }
    for (unsigned i = 0; i < a->nchurn; i++) {
      if (ts_below(&r, 10) == 0)
        continue;
      int rc = shmd_hash_del(s, h, k, churn_key(i, k));
      if (rc && rc != SHMD_ENOTFOUND)
        _exit(94);
    }
  }
  shmd_close(s);
  return 0;
}

static ts_crash_spec_t churn_spec(const churn_t *a, uint64_t seed, uint64_t seg) {
  return (ts_crash_spec_t){.what = "the churning writer", .fn = churn_writer, .arg = (void *)a, .seed = seed,
                           .store = "h", .opts = ts_opts(seg, seg)};
}

/* The reader's side: lookups of stable keys (always present, fixed value) and churn keys (any
 * whole version or absent) until the writer process ends, or one batch when writer is NULL.
 * Returns the number of lookups. */
static uint64_t read_while(shmd_store_t *s, shmd_ptr_t h, ts_rng_t *r, unsigned nstable,
                           unsigned nchurn, ts_crash_proc_t *writer) {
  unsigned char buf[CHURN_OOL], want[CHURN_OOL];
  char k[32];
  uint64_t reads = 0;
  for (;;) {
    for (int j = 0; j < 64; j++, reads++) {
      unsigned i = (unsigned)ts_below(r, nstable);
      size_t kl = stable_key(i, k), vl = 0, wl = churn_val(i, 1, want);
      int rc = shmd_hash_get(s, h, k, kl, buf, sizeof buf, &vl);
      cr_assert_eq(rc, 0, "stable key %u: %s (%s)", i, shmd_strerror(rc), shmd_errdetail());
      cr_assert(vl == wl && memcmp(buf, want, wl) == 0, "stable key %u: wrong value", i);
      cr_assert_eq(shmd_hash_contains(s, h, k, kl), 1, "stable key %u not contained", i);
      i = (unsigned)ts_below(r, nchurn);
      kl = churn_key(i, k);
      rc = shmd_hash_get(s, h, k, kl, buf, sizeof buf, &vl);
      cr_assert(rc == 0 || rc == SHMD_ENOTFOUND, "churn key %u: %s", i, shmd_strerror(rc));
      if (rc == 0)
        cr_assert(churn_ok(i, buf, vl), "churn key %u: a torn or foreign value (%zu bytes)", i, vl);
      rc = shmd_hash_contains(s, h, k, kl);
      cr_assert(rc == 0 || rc == 1, "contains churn key %u: %s", i, shmd_strerror(rc));
    }
    if (writer == NULL || ts_crash_ended(writer))
      return reads; /* one batch when there is no writer to wait for */
  }
}

static shmd_ptr_t optimistic_setup(uint64_t seg, unsigned nstable) {
  shmd_store_t *s = reopen(seg);
  shmd_ptr_t h = new_hash(s, 0);
  unsigned char val[CHURN_OOL];
  char k[32];
  for (unsigned i = 0; i < nstable; i++) {
    size_t n = churn_val(i, 1, val);
    cr_assert_eq(shmd_hash_put(s, h, k, stable_key(i, k), val, n, SHMD_HASH_INSERT, NULL), 0);
  }
  shmd_close(s);
  return h;
}

Test(hash, mp_optimistic_readers) {
  uint64_t seed = ts_seed("hash.optimistic");
  ts_rng_t r = {seed};
  const uint64_t seg = 64 * MIB;
  const unsigned nstable = 2000, nchurn = 20000;
  shmd_ptr_t h = optimistic_setup(seg, nstable);
  churn_t a = {nchurn, (unsigned)env_u64("SHMDICT_HASH_CHURN_ROUNDS", 6)};
  ts_crash_spec_t sp = churn_spec(&a, seed, seg);
  sp.end = TS_END_EXIT0;
  ts_crash_proc_t *p = ts_crash_start(NULL, &sp);
  shmd_store_t *s = reopen(seg);
  uint64_t reads = read_while(s, h, &r, nstable, nchurn, p);
  ts_crash_finish(p, NULL); /* the writer ended with 0 */
  uint64_t len = 0;
  cr_assert_eq(shmd_hash_len(s, h, &len), 0);
  cr_assert(len > nstable, "the writer did not run (%llu keys)", (unsigned long long)len);
  cr_log_info("optimistic readers: %llu lookups while the writer ran", (unsigned long long)reads);
  cr_assert_eq(shmd_hash_check(s, h), 0, "%s", shmd_errdetail());
  shmd_close(s);
}

Test(hash, crash_writer_under_optimistic_readers) {
  ts_crash_t t;
  ts_crash_begin(&t, "hash.optimistic_crash");
  ts_rng_t *r = &t.rng;
  const uint64_t seg = 64 * MIB;
  const unsigned nstable = 1000, nchurn = 5000;
  shmd_ptr_t h = optimistic_setup(seg, nstable);
  shmd_store_t *s = reopen(seg);
  unsigned rounds = (unsigned)env_u64("SHMDICT_HASH_CRASH_ROUNDS", 12);
  churn_t a = {nchurn, 1000};
  for (unsigned round = 0; round < rounds; round++) {
    ts_crash_spec_t sp = churn_spec(&a, t.seed + round, seg);
    sp.end = TS_END_KILLED;
    ts_crash_proc_t *p = ts_crash_start(&t, &sp);
    /* read for a random while, kill the writer wherever it is (often holding the hash's lock),
     * and read on: the first reader that finds the lock held by the dead writer recovers it */
    uint64_t until = now_us() + 20000 + ts_below(r, 200000);
    while (now_us() < until)
      read_while(s, h, r, nstable, nchurn, NULL);
    ts_crash_kill(p);
    ts_crash_finish(p, NULL);
    read_while(s, h, r, nstable, nchurn, NULL);
    ts_crash_check(s, 0, "hash:h");
  }
  ts_crash_end(&t);
  ts_crash_check(s, TS_CHECK_ALLOC, NULL);
  shmd_close(s);
}

Test(hash, optimistic_reads_and_transactions) {
  shmd_store_t *s = ts_open("h", 16 * MIB, 16 * MIB);
  shmd_ptr_t h = new_hash(s, 0);
  unsigned char buf[64], big[700];
  size_t vl = 0;
  cr_assert_eq(shmd_hash_put(s, h, "a", 1, "old", 3, SHMD_HASH_UPSERT, NULL), 0);
  /* a caller holding the hash's lock reads its own uncommitted change (the locked path) */
  shmd_tx_t *tx;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_hash_put(s, h, "a", 1, "new!", 4, SHMD_HASH_UPSERT, NULL), 0);
  cr_assert_eq(shmd_hash_put(s, h, "b", 1, "bb", 2, SHMD_HASH_INSERT, NULL), 0);
  cr_assert_eq(shmd_hash_get(s, h, "a", 1, buf, sizeof buf, &vl), 0);
  cr_assert(vl == 4 && memcmp(buf, "new!", 4) == 0);
  cr_assert_eq(shmd_hash_contains(s, h, "b", 1), 1);
  shmd_tx_abort(tx);
  cr_assert_eq(shmd_hash_get(s, h, "a", 1, buf, sizeof buf, &vl), 0);
  cr_assert(vl == 3 && memcmp(buf, "old", 3) == 0);
  cr_assert_eq(shmd_hash_contains(s, h, "b", 1), 0);
  /* ENOTFOUND leaves buf and *val_len alone; ERANGE copies a prefix */
  memset(buf, 0x5a, sizeof buf);
  vl = 12345;
  cr_assert_eq(shmd_hash_get(s, h, "zz", 2, buf, sizeof buf, &vl), SHMD_ENOTFOUND);
  cr_assert_eq(vl, 12345);
  for (size_t j = 0; j < sizeof buf; j++)
    cr_assert_eq(buf[j], 0x5a);
  cr_assert_eq(shmd_hash_get(s, h, "a", 1, buf, 2, &vl), SHMD_ERANGE);
  cr_assert(vl == 3 && memcmp(buf, "ol", 2) == 0 && buf[2] == 0x5a);
  cr_assert_eq(shmd_hash_get(s, h, "a", 1, NULL, 0, &vl), SHMD_ERANGE);
  cr_assert_eq(vl, 3);
  /* every value length around the fast copy's sizes, and an out-of-line value (locked path) */
  for (size_t n = 0; n <= 130; n++) {
    unsigned char v[130], got[140];
    for (size_t j = 0; j < n; j++)
      v[j] = (unsigned char)(n * 7 + j);
    cr_assert_eq(shmd_hash_put(s, h, "len", 3, v, n, SHMD_HASH_UPSERT, NULL), 0);
    memset(got, 0xee, sizeof got);
    cr_assert_eq(shmd_hash_get(s, h, "len", 3, got, sizeof got, &vl), 0);
    cr_assert_eq(vl, n);
    cr_assert(memcmp(got, v, n) == 0 && got[n] == 0xee, "value of %zu bytes", n);
  }
  memset(big, 'x', sizeof big);
  cr_assert_eq(shmd_hash_put(s, h, "big", 3, big, sizeof big, SHMD_HASH_UPSERT, NULL), 0);
  unsigned char got[800];
  cr_assert_eq(shmd_hash_get(s, h, "big", 3, got, sizeof got, &vl), 0);
  cr_assert(vl == sizeof big && memcmp(got, big, sizeof big) == 0);
  /* a destroyed hash is not read through a stale header */
  cr_assert_eq(shmd_hash_destroy(s, h), 0);
  int rc = shmd_hash_get(s, h, "a", 1, buf, sizeof buf, &vl);
  cr_assert(rc == SHMD_EINVAL || rc == SHMD_ECORRUPT, "%s", shmd_strerror(rc));
  shmd_close(s);
}

/*
 * An optimistic reader (get / contains without the lock) may meet an entry torn or reused under
 * it, holding any key word: e.g. one without the out-of-line bit whose length runs past the entry.
 * It bounds-checks the entry's first 24 + 2 * 512 + 8 + 64 = 1120 bytes (hash.c: ENT_HDR +
 * OPT_ENT_MAX), so every offset it derives from that unlocked word (the inline key's end, the
 * value's offset plus the bytes it copies) must stay inside them. Each round plants such an entry
 * at the end of a page, its checked extent ending exactly where an inaccessible page begins, and
 * points the bucket at it: a reader that reads the key (2000 bytes claimed) or the value behind it
 * (a 1050-byte key puts the value's 64-byte copy across the boundary) past the extent faults. The
 * header's count is set to 0 so that the locked path, to which the reader must fall back, reports
 * the damage (a chain longer than the count) before it reads the entry: under the lock an entry is
 * trusted, and a reader that is right to fall back must not be made to fault by the test itself.
 */
Test(hash, optimistic_reader_bounds_what_an_unlocked_key_word_says) {
  shmd_store_t *s = ts_open("h", 16 * MIB, 16 * MIB);
  shmd_ptr_t h = new_hash(s, 0);
  const size_t extent = 24 + 2 * SHMD_HASH_INLINE_MAX + 8 + 64;
  const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  const size_t lens[2] = {2000, 1050};
  static unsigned char key[2][2000];
  for (int t = 0; t < 2; t++) {
    for (size_t i = 0; i < lens[t]; i++)
      key[t][i] = (unsigned char)('a' + (i * 7 + (size_t)t) % 26);
    cr_assert_eq(shmd_hash_put(s, h, key[t], lens[t], "real", 4, SHMD_HASH_UPSERT, NULL), 0);
  }
  shmd_ptr_t bp;
  cr_assert_eq(shmd_alloc(s, 4 * pg, &bp), 0);
  unsigned char *block = shmd_resolve(s, bp);
  /* the first page boundary with room for the checked extent before it */
  unsigned char *guard = (unsigned char *)(((uintptr_t)block + extent + pg - 1) & ~(uintptr_t)(pg - 1));
  unsigned char *fake = guard - extent;
  shmd_ptr_t fp = shmd_ptr_add(bp, (uint64_t)(fake - block));
  cr_assert(guard + pg <= block + 4 * pg);
  /* the header: magic, lock, seed, count, table[2], log2[2] (hash.c's hhdr_t) */
  uint64_t *hw = shmd_resolve(s, h);
  cr_assert_eq(hw[5], 0, "rehashing");
  shmd_ptr_t *tab = shmd_resolve(s, (shmd_ptr_t){hw[4]});
  uint32_t l2 = ((uint32_t *)(hw + 6))[0];
  for (int t = 0; t < 2; t++) {
    /* the bucket and the real entry of key t (its chain may hold the other key too) */
    uint64_t hv = shmd_hash_bytes(key[t], lens[t], hw[2]);
    shmd_ptr_t *slot = &tab[hv & ((UINT64_C(1) << l2) - 1)];
    shmd_ptr_t saved = *slot;
    uint64_t count = hw[3];
    memset(fake, 0, extent);
    uint64_t next = 0;
    uint32_t kw = (uint32_t)lens[t], vw = 4; /* no out-of-line bit: "the key is inline" */
    memcpy(fake, &next, 8);
    memcpy(fake + 8, &hv, 8);
    memcpy(fake + 16, &kw, 4);
    memcpy(fake + 20, &vw, 4);
    memcpy(fake + 24, key[t], extent - 24 < lens[t] ? extent - 24 : lens[t]);
    *slot = fp;
    hw[3] = 0;
    cr_assert_eq(mprotect(guard, pg, PROT_NONE), 0, "mprotect: %s", strerror(errno));
    unsigned char buf[64];
    size_t vl = 0;
    int rc_get = shmd_hash_get(s, h, key[t], lens[t], buf, sizeof buf, &vl);
    int rc_has = shmd_hash_contains(s, h, key[t], lens[t]);
    cr_assert_eq(mprotect(guard, pg, PROT_READ | PROT_WRITE), 0);
    *slot = saved;
    hw[3] = count;
    cr_expect_eq(rc_get, SHMD_ECORRUPT, "get with a %zu-byte inline key word: %s", lens[t], shmd_strerror(rc_get));
    /* contains reads no value: a 1050-byte inline key lies inside the extent, and it is found */
    cr_expect_eq(rc_has, t == 0 ? SHMD_ECORRUPT : 1, "contains with a %zu-byte inline key word: %d", lens[t], rc_has);
    cr_assert_eq(shmd_hash_get(s, h, key[t], lens[t], buf, sizeof buf, &vl), 0);
    cr_assert(vl == 4 && memcmp(buf, "real", 4) == 0);
  }
  shmd_free(s, bp);
  check_all(s, h);
  shmd_close(s);
}

/* A get inside a transaction keeps the hash's lock to the commit: a writer in another process
 * waits, so the transaction's get-then-put is atomic (mp_: forks). */
static int put_nine(ts_crash_child_t *cc) {
  if (shmd_hash_put(cc->s, *(const shmd_ptr_t *)cc->arg, "n", 1, "9", 1, SHMD_HASH_UPSERT, NULL))
    return 1;
  ts_crash_report(cc, "x");
  shmd_close(cc->s);
  return 0;
}

Test(hash, mp_get_in_transaction_holds_the_lock) {
  const uint64_t seg = 16 * MIB;
  shmd_store_t *s = reopen(seg);
  shmd_ptr_t h = new_hash(s, 0);
  cr_assert_eq(shmd_hash_put(s, h, "n", 1, "1", 1, SHMD_HASH_UPSERT, NULL), 0);
  shmd_tx_t *tx;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  char buf[8];
  size_t vl;
  cr_assert_eq(shmd_hash_get(s, h, "n", 1, buf, sizeof buf, &vl), 0);
  ts_crash_proc_t *p = ts_crash_start(NULL, &(ts_crash_spec_t){.what = "the other writer", .fn = put_nine,
                                                                .arg = &h, .store = "h", .opts = ts_opts(seg, seg),
                                                                .rec_size = 1, .end = TS_END_EXIT0});
  cr_assert_eq(ts_crash_wait_records(p, 1, 300), 0, "a writer changed the hash while a transaction had read it");
  cr_assert_eq(shmd_hash_put(s, h, "n", 1, "2", 1, SHMD_HASH_UPSERT, NULL), 0);
  cr_assert_eq(shmd_tx_commit(tx), 0);
  cr_assert_eq(ts_crash_wait_records(p, 1, 10000), 1, "the writer did not finish after the commit");
  ts_crash_finish(p, NULL);
  cr_assert_eq(shmd_hash_get(s, h, "n", 1, buf, sizeof buf, &vl), 0);
  cr_assert(vl == 1 && buf[0] == '9');
  shmd_close(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* Growth ahead of need: spare segments prepared by inserts (segments/store.c) */

static int count_spares(const char *dir) {
  char path[512];
  snprintf(path, sizeof path, "%s/h", dir);
  DIR *d = opendir(path);
  if (d == NULL)
    return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    n += strncmp(e->d_name, ".seg-spare-", 11) == 0;
  closedir(d);
  return n;
}

/* Inserts keys from *next on until `until` keys or a failure; returns the last status. */
static int insert_keys(shmd_store_t *s, shmd_ptr_t h, unsigned *next, unsigned until,
                       int *max_spares) {
  unsigned char val[CHURN_OOL];
  char k[32];
  int rc = 0;
  for (; *next < until; (*next)++) {
    size_t n = churn_val(*next, 3, val);
    rc = shmd_hash_put(s, h, k, churn_key(*next, k), val, n, SHMD_HASH_INSERT, NULL);
    if (rc)
      break;
    if (max_spares && *next % 512 == 0) {
      int sp = count_spares(ts_dir);
      *max_spares = sp > *max_spares ? sp : *max_spares;
    }
  }
  return rc;
}

Test(hash, grow_ahead_spares_become_segments) {
  shmd_store_t *s = ts_open("h", 16 * MIB, 4 * MIB);
  shmd_ptr_t h = new_hash(s, 0);
  unsigned next = 0;
  int max_spares = 0;
  cr_assert_eq(insert_keys(s, h, &next, 300000, &max_spares), 0, "%s", shmd_errdetail());
  shmd_store_info_t si;
  cr_assert_eq(shmd_store_info(s, &si), 0);
  cr_assert(si.segments > 5, "the store did not grow (%u segments)", si.segments);
  cr_assert(max_spares > 0, "no spare segment was ever prepared");
  cr_assert_eq(shmd_hash_check(s, h), 0, "%s", shmd_errdetail());
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  unsigned char val[CHURN_OOL], want[CHURN_OOL];
  char k[32];
  for (unsigned i = 0; i < next; i += 997) {
    size_t vl = 0, wl = churn_val(i, 3, want);
    cr_assert_eq(shmd_hash_get(s, h, k, churn_key(i, k), val, sizeof val, &vl), 0);
    cr_assert(vl == wl && memcmp(val, want, wl) == 0);
  }
  shmd_close(s);
  cr_assert_eq(count_spares(ts_dir), 0, "spares left behind by a close");
  /* another process attaches every segment, including those that were spares */
  s = ts_open("h", 16 * MIB, 4 * MIB);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  cr_assert_eq(shmd_hash_check(s, h), 0, "%s", shmd_errdetail());
  shmd_close(s);
  cr_assert_eq(shmd_drop("h", ts_dir), 0, "%s", shmd_errdetail());
}

/* A store at its size limit: spares that could never become segments are not made, inserts end
 * with SHMD_ENOSPC, nothing crashes, nothing leaks. */
Test(hash, grow_ahead_at_the_size_limit) {
  shmd_options_t o = ts_opts(16 * MIB, 4 * MIB);
  o.max_store_bytes = 28 * MIB;
  shmd_store_t *s;
  cr_assert_eq(shmd_open("h", &o, &s), 0);
  shmd_ptr_t h = new_hash(s, 0);
  unsigned next = 0;
  int rc = insert_keys(s, h, &next, 1000000, NULL);
  cr_assert_eq(rc, SHMD_ENOSPC, "%s", shmd_strerror(rc));
  shmd_store_info_t si;
  cr_assert_eq(shmd_store_info(s, &si), 0);
  cr_assert(si.store_bytes <= o.max_store_bytes);
  cr_assert_eq(shmd_hash_check(s, h), 0, "%s", shmd_errdetail());
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  uint64_t len = 0;
  cr_assert_eq(shmd_hash_len(s, h, &len), 0);
  cr_assert_eq(len, next);
  shmd_close(s);
  cr_assert_eq(count_spares(ts_dir), 0);
}

/* RLIMIT_FSIZE below the size of a growth segment: every spare's reservation fails part way with
 * EFBIG and the spare is dropped, growth answers SHMD_ENOSPC for what cannot be backed; never
 * SIGBUS (SIGXFSZ ignored, as an application under such a limit must). Forks. */
static int rlimit_child(ts_crash_child_t *cc) {
  (void)cc;
  signal(SIGXFSZ, SIG_IGN);
  shmd_options_t o = ts_opts(8 * MIB, 4 * MIB);
  shmd_store_t *s;
  if (shmd_open("h", &o, &s))
    return 81;
  /* segment 0 exists; no growth segment (4 MiB) nor spare can be backed any more */
  struct rlimit rl = {3 * MIB, 3 * MIB};
  if (setrlimit(RLIMIT_FSIZE, &rl))
    return 80;
  shmd_ptr_t h;
  if (shmd_hash_create(s, 0, &h) || shmd_root_set(s, "h", h))
    return 82;
  unsigned next = 0;
  unsigned char val[CHURN_OOL];
  char k[32];
  int enospc = 0;
  for (; next < 150000; next++) {
    size_t n = churn_val(next, 3, val);
    int rc = shmd_hash_put(s, h, k, churn_key(next, k), val, n, SHMD_HASH_INSERT, NULL);
    if (rc == SHMD_ENOSPC)
      enospc++;
    else if (rc)
      return 83;
  }
  if (enospc == 0)
    return 85;
  if (shmd_hash_check(s, h) || shmd_alloc_check(s))
    return 84;
  shmd_close(s);
  return 0;
}

Test(hash, mp_grow_ahead_under_rlimit_fsize) {
  ts_crash_run(NULL, &(ts_crash_spec_t){.what = "the child under RLIMIT_FSIZE", .fn = rlimit_child, .end = TS_END_EXIT0},
               NULL);
  cr_assert_eq(count_spares(ts_dir), 0);
}
