/* SPDX-License-Identifier: MIT */
/*
 * Tests of the order-statistic B+tree map (shmd_btree_*). The ordered-map tests it shares with the
 * red-black tree map run through tests/omap_tests.h: property tests against a sorted-array model
 * for every ordering (put / delete / get / rank / count_below / seek / select / next / prev /
 * walks, the checker throughout), keys around the inline and prefix limits, rank / select / walks
 * on a big tree, the caller's transaction, destroy in pieces, corruption the checker must report,
 * two writer processes (mp_), and SIGKILLed writers (crash_) at random moments and at the crash
 * points inside split, borrow, merge, insert, update, delete and destroy. Here: grow-and-shrink
 * runs that split and merge every level, a sorted set's ties and prefixes, writers with a reader,
 * kills at the root's growth and shrink.
 *
 * Knobs: SHMDICT_TEST_SEED replays a run; SHMDICT_BT_STEPS scales the property tests,
 * SHMDICT_BT_CRASH_ROUNDS the crash tests.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>

#include "shmdict/btree.h"
#include "support.h"

/* The adapter of tests/omap_tests.h: the keyed map is shmd_btree_*. */
#define OM(x) shmd_btree_##x
#define OMK(x) SHMD_BTREE_##x
#define OM_SUITE btree
#define OM_NAME "btree"
#define OM_ENV "SHMDICT_BT"
#define OM_KEYS_NEAR_INLINE 1
#define OM_OOL_KEY_LENS {0, 1, 16, 17, 24, 25, 255, 4000}
#define OM_OOL_VAL_LENS {0, 3, 8, 9, 100, 9000, 8, 65536, 7, 0}
#define OM_CRASH_TIMEOUT 300
/* Splits, borrows and merges are rarer than the per-operation points: die at an early one. */
#define OM_CRASH_POINTS                                                                            \
  {                                                                                                \
    {"btree.split", 3}, {"btree.borrow", 3}, {"btree.merge", 3}, {"btree.put.inserted", 30},       \
        {"btree.put.updated", 30}, {"btree.delete.removed", 30}, {"btree.*", 30},                  \
        {"tx.before_commit", 30},                                                                  \
  }
#define OM_DESTROY_POINT "btree.destroy.removed"
#define OM_DESTROY_FIRST 2
#define OM_DESTROY_SPAN 200
#include "omap_tests.h"

/* Crash rounds: SHMDICT_BT_CRASH_ROUNDS, else 150 (50 under AddressSanitizer, where every reopen,
 * check and verification is several times slower). */
#if defined(__SANITIZE_ADDRESS__)
#define BT_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BT_SANITIZED 1
#endif
#endif
#ifndef BT_SANITIZED
#define BT_SANITIZED 0
#endif
static long om_crash_rounds(void) { return knob("SHMDICT_BT_CRASH_ROUNDS", BT_SANITIZED ? 50 : 150); }

/* The layout of containers/btree.c; wrong_kind_and_garbage's tree of 100 keys. */
static void om_damage_checks(shmd_store_t *s, shmd_ptr_t t) {
  /* Damage one field at a time (the layout of containers/btree.c: header magic, lock, order |
   * height, root, count; node n | level | mark, reserved, abbr[16] @16, ref[16] @144, cnt[16] @272,
   * key[16] @400 of 32 bytes: klen, vlen, area[24]); check must report each, and pass again once
   * the byte is restored. */
  unsigned char *hdr = shmd_resolve(s, t);
  shmd_ptr_t rootp;
  memcpy(&rootp.v, hdr + 24, 8);
  unsigned char *root = shmd_resolve(s, rootp);
  cr_assert_eq(*(uint16_t *)(void *)(root + 2), 1, "100 short keys make a tree of height 2");
  shmd_ptr_t leafp;
  memcpy(&leafp.v, root + 144, 8);
  unsigned char *leaf = shmd_resolve(s, leafp);
  struct {
    unsigned char *where;
    size_t len;
    uint64_t value;
    const char *what;
  } cases[] = {
      {hdr + 32, 8, 101, "header count"},
      {hdr + 20, 4, 3, "height"},
      {root + 272, 8, 3, "subtree count"},
      {root + 16 + 8, 8, 1, "separator abbreviation"},
      {root + 400 + 32 + 8, 1, 'z', "separator out of order"},
      {root + 400, 4, 1, "key in an internal node's first slot"},
      {root + 144 + 8, 8, UINT64_C(0x0bb8000000000008), "child pointer into no segment"},
      {leaf, 2, 3, "leaf fill under the minimum"},
      {leaf, 2, 17, "leaf fill over the capacity"},
      {leaf + 2, 2, 1, "leaf level"},
      {leaf + 4, 4, 0x1234, "node mark"},
      {leaf + 400, 4, 5000, "inline key longer than the area"},
      {leaf + 400 + 8 + 20, 1, 1, "byte after an inline key"},
      {leaf + 400 + 4, 4, 9, "value length over the inline limit"},
      {leaf + 145, 1, 0x55, "byte after an inline value"},
      {leaf + 400 + 8, 1, 'a', "leaf keys out of order"},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    uint64_t saved = 0;
    memcpy(&saved, cases[c].where, cases[c].len);
    memcpy(cases[c].where, &cases[c].value, cases[c].len);
    int rc = shmd_btree_check(s, t);
    memcpy(cases[c].where, &saved, cases[c].len);
    cr_assert_eq(rc, SHMD_ECORRUPT, "%s: check said %s", cases[c].what, shmd_strerror(rc));
    tree_check(s, t);
  }
}

/* ============================================================================================== */
/* The B+tree's own: every level split and merged, ties and prefixes                             */
/* ============================================================================================== */

/* Many entries inserted and all deleted again in random order: every level splits, borrows from
 * both sides and merges, the root grows and shrinks; checked along the way against the model. */
Test(btree, grow_and_shrink, .init = ts_init, .fini = ts_fini, .timeout = 300) {
  shmd_store_t *s = ts_open("grow", 64 * MIB, 64 * MIB);
  ts_rng_t rng = {ts_seed("grow_and_shrink")};
  shmd_stats_t st0, st1;
  cr_assert_eq(shmd_stats(s, &st0), 0);
  shmd_ptr_t t;
  cr_assert_eq(shmd_btree_create(s, SHMD_BTREE_I64, &t), 0);
  long n = knob("SHMDICT_BT_STEPS", 30000) * 2;
  int64_t *keys = malloc((size_t)n * sizeof *keys);
  for (long i = 0; i < n; i++)
    keys[i] = (int64_t)i * 3;
  for (long i = n - 1; i > 0; i--) {
    long j = (long)ts_below(&rng, (uint64_t)i + 1);
    int64_t x = keys[i];
    keys[i] = keys[j];
    keys[j] = x;
  }
  for (long i = 0; i < n; i++) {
    cr_assert_eq(shmd_btree_put(s, t, &keys[i], 8, &keys[i], 8, SHMD_BTREE_NX, NULL), 0);
    if (i % 5000 == 0)
      tree_check(s, t);
  }
  tree_check(s, t);
  for (long i = 0; i < n; i += 97) {
    uint64_t r;
    cr_assert_eq(shmd_btree_rank(s, t, &keys[i], 8, &r), 0);
    cr_assert_eq(r, (uint64_t)(keys[i] / 3));
  }
  /* Delete in another random order. */
  for (long i = n - 1; i > 0; i--) {
    long j = (long)ts_below(&rng, (uint64_t)i + 1);
    int64_t x = keys[i];
    keys[i] = keys[j];
    keys[j] = x;
  }
  for (long i = 0; i < n; i++) {
    cr_assert_eq(shmd_btree_delete(s, t, &keys[i], 8), 0, "delete %ld", i);
    if (i % 5000 == 0 || n - i < 40) {
      tree_check(s, t);
      uint64_t len;
      cr_assert_eq(shmd_btree_len(s, t, &len), 0);
      cr_assert_eq(len, (uint64_t)(n - i - 1));
    }
  }
  cr_assert_eq(shmd_btree_first(s, t, NULL), SHMD_ENOTFOUND);
  /* An emptied tree is back to one leaf: the store holds what it held after create. */
  cr_assert_eq(shmd_btree_destroy(s, t), 0);
  cr_assert_eq(shmd_stats(s, &st1), 0);
  cr_assert_eq(st1.allocated_bytes, st0.allocated_bytes);
  alloc_check(s);
  free(keys);
  shmd_close(s);
}

/* A sorted set's shape: few distinct scores, members sharing long prefixes (ties on the
 * abbreviation and on the 16-byte prefix go to the full key). */
Test(btree, zset_ties_and_prefixes, .init = ts_init, .fini = ts_fini, .timeout = 120) {
  shmd_store_t *s = ts_open("ties", 32 * MIB, 32 * MIB);
  ts_rng_t rng = {ts_seed("zset_ties_and_prefixes")};
  shmd_ptr_t t;
  cr_assert_eq(shmd_btree_create(s, SHMD_BTREE_DOUBLE_BYTES, &t), 0);
  model_t m = {SHMD_BTREE_DOUBLE_BYTES, NULL, 0, 0};
  unsigned char kb[128], nk[128];
  for (int i = 0; i < 6000; i++) {
    double score = (double)ts_below(&rng, 4);
    char member[96];
    int ml = snprintf(member, sizeof member, "player:guild-%s:%06u",
                      ts_below(&rng, 2) ? "alpha-long-name" : "a", (unsigned)ts_below(&rng, 3000));
    size_t kl = shmd_btree_dkey(score, member, (size_t)ml, kb);
    memcpy(nk, kb, kl);
    if (ts_below(&rng, 3) == 0) {
      int present;
      model_lb(&m, nk, kl, &present);
      cr_assert_eq(shmd_btree_delete(s, t, kb, kl), present ? 0 : SHMD_ENOTFOUND);
      model_del(&m, nk, kl);
    } else {
      cr_assert_eq(shmd_btree_put(s, t, kb, kl, NULL, 0, SHMD_BTREE_UPSERT, NULL), 0);
      model_put(&m, nk, kl, NULL, 0);
    }
    if (i % 500 == 0)
      tree_check(s, t);
  }
  tree_check(s, t);
  compare_tree(s, t, &m, 77);
  for (size_t i = 0; i < m.n; i += 7) {
    uint64_t r;
    cr_assert_eq(shmd_btree_rank(s, t, m.a[i].k, m.a[i].kl, &r), 0);
    cr_assert_eq(r, i);
  }
  model_free(&m);
  cr_assert_eq(shmd_btree_destroy(s, t), 0);
  alloc_check(s);
  shmd_close(s);
}

/* ============================================================================================== */
/* Writers with a reader                                                                          */
/* ============================================================================================== */

/* Three writers on disjoint keys and a reader that checks the whole tree and walks it in order
 * while they run. */
static int order_visit(const void *k, size_t kl, const void *v, size_t vl, uint64_t rank,
                       void *arg) {
  (void)v;
  (void)vl;
  (void)rank;
  unsigned char *prev = arg; /* prev[0..511] key, prev[512..519] length, prev[520] set */
  size_t pl;
  memcpy(&pl, prev + 512, sizeof pl);
  if (prev[520]) {
    size_t m = pl < kl ? pl : kl;
    int c = memcmp(prev, k, m);
    if (c > 0 || (c == 0 && pl >= kl))
      return 1;
  }
  if (kl > 512)
    return 2;
  memcpy(prev, k, kl);
  memcpy(prev + 512, &kl, sizeof kl);
  prev[520] = 1;
  return 0;
}

/* The reader: *arg rounds of a full check and an ordered walk, on the store the harness opened. */
static int child_reader(ts_crash_child_t *cc) {
  long rounds = *(const long *)cc->arg;
  shmd_store_t *s = cc->s;
  shmd_ptr_t t;
  if (shmd_root_get(s, "tree", &t) != 0)
    return 81;
  static unsigned char prev[528];
  for (long i = 0; i < rounds; i++) {
    if (shmd_btree_check(s, t) != 0)
      return 83;
    memset(prev, 0, sizeof prev);
    size_t visited;
    uint64_t n;
    if (shmd_btree_len(s, t, &n) != 0)
      return 84;
    int rc = shmd_btree_walk_rank(s, t, 0, SIZE_MAX, 0, order_visit, prev, &visited);
    if (rc != 0)
      return 85;
  }
  shmd_close(s);
  return 0;
}

Test(btree, mp_writers_and_reader, .init = ts_init, .fini = ts_fini, .timeout = 240) {
  make_tree_store("mp3");
  uint64_t seed = ts_seed("mp_writers_and_reader");
  long ops = knob("SHMDICT_BT_STEPS", 30000) / 2;
  enum { W = 3 };
  kstate_t *ks = calloc(UNIVERSE, sizeof *ks);
  writer_arg_t args[W];
  apply_t ap[W];
  ts_crash_proc_t *p[W + 1];
  for (int c = 0; c < W; c++) {
    args[c] = (writer_arg_t){ops, W, (uint32_t)c};
    ap[c] = (apply_t){ks, {0}, 0};
    ts_crash_spec_t sp = writer_spec("mp3", &args[c], seed + (uint64_t)c * 7777, &ap[c]);
    sp.what = c == 0 ? "writer 0" : c == 1 ? "writer 1" : "writer 2";
    sp.end = TS_END_EXIT0;
    sp.timeout_ms = 240000; /* the test's own bound */
    p[c] = ts_crash_start(NULL, &sp);
  }
  long reader_rounds = 150;
  p[W] = ts_crash_start(NULL, &(ts_crash_spec_t){.what = "the reader (a damaged or unordered tree fails it)",
                                                 .fn = child_reader, .arg = &reader_rounds, .store = "mp3",
                                                 .opts = ts_opts(32 * MIB, 32 * MIB), .end = TS_END_EXIT0,
                                                 .timeout_ms = 240000});
  ts_crash_wait_all(p, W + 1);
  for (int c = 0; c < W; c++) {
    ts_crash_finish(p[c], NULL);
    cr_assert_eq(ap[c].n, 2 * (uint64_t)ops);
    cr_assert_eq(ap[c].pending.type, 0);
  }
  ts_crash_finish(p[W], NULL);
  verify_store("mp3", ks);
  free(ks);
}

/* ============================================================================================== */
/* Kills at the root's growth and shrink                                                          */
/* ============================================================================================== */

enum { GROW_N = 400 };

/* Inserts keys 0 .. GROW_N-1 in order into the empty tree, then deletes them in order. */
static int grow_shrink_child(ts_crash_child_t *cc) {
  shmd_ptr_t ct;
  if (shmd_root_get(cc->s, "tree", &ct))
    return 80;
  for (int64_t k = 0; k < GROW_N; k++)
    if (shmd_btree_put(cc->s, ct, &k, 8, &k, 8, SHMD_BTREE_NX, NULL))
      return 81;
  for (int64_t k = 0; k < GROW_N; k++)
    if (shmd_btree_delete(cc->s, ct, &k, 8))
      return 82;
  return 0;
}

/* Kills at the root's growth and shrink: a child inserts keys 0 .. N-1 in order into an empty
 * tree, then deletes them in order, armed to die the k-th time it grows (or shrinks) the root.
 * Afterwards the tree must pass check and hold a contiguous run of keys that starts at 0 (insert
 * phase) or ends at N-1 (delete phase), i.e. the state before or after the interrupted operation. */
Test(btree, crash_grow_shrink, .init = ts_init, .fini = ts_fini, .timeout = 180) {
  enum { N = GROW_N };
  shmd_store_t *s = ts_open("cgrow", 32 * MIB, 32 * MIB);
  shmd_stats_t st0, st1;
  cr_assert_eq(shmd_stats(s, &st0), 0);
  shmd_close(s);
  static const char *points[] = {"btree.grow", "btree.shrink", "btree.split", "btree.merge",
                                 "btree.borrow"};
  int killed = 0;
  ts_crash_t tc;
  ts_crash_begin(&tc, "crash_grow_shrink");
  for (int round = 0; round < 20; round++) {
    s = ts_open("cgrow", 32 * MIB, 32 * MIB);
    shmd_ptr_t t;
    cr_assert_eq(shmd_btree_create(s, SHMD_BTREE_I64, &t), 0);
    cr_assert_eq(shmd_root_set(s, "tree", t), 0);
    shmd_close(s);
    char spec[64];
    snprintf(spec, sizeof spec, "%s:%d", points[round % 5], 1 + (round / 5) % 2);
    ts_crash_run(&tc,
                 &(ts_crash_spec_t){.what = "the grower", .fn = grow_shrink_child, .store = "cgrow",
                                    .opts = ts_opts(32 * MIB, 32 * MIB), .point = spec, .end = TS_END_KILLED},
                 NULL);
    killed++;
    s = ts_crash_open("cgrow", 32 * MIB, 32 * MIB);
    cr_assert_eq(shmd_root_get(s, "tree", &t), 0);
    tree_check(s, t);
    alloc_check(s);
    uint64_t n;
    cr_assert_eq(shmd_btree_len(s, t, &n), 0);
    if (n > 0) {
      int64_t lo, hi;
      shmd_btree_item_t a = {&lo, 8, 0, NULL, 0, 0, 0}, b = {&hi, 8, 0, NULL, 0, 0, 0};
      cr_assert_eq(shmd_btree_first(s, t, &a), 0);
      cr_assert_eq(shmd_btree_last(s, t, &b), 0);
      cr_assert_eq((uint64_t)(hi - lo + 1), n, "%s: keys not contiguous", spec);
      cr_assert(lo == 0 || hi == N - 1, "%s: [%lld, %lld] is neither a prefix nor a suffix", spec,
                (long long)lo, (long long)hi);
      for (int64_t k = lo; k <= hi; k++) {
        int64_t v;
        cr_assert_eq(shmd_btree_get(s, t, &k, 8, &v, 8, NULL), 0);
        cr_assert_eq(v, k);
      }
    }
    cr_assert_eq(shmd_btree_destroy(s, t), 0);
    cr_assert_eq(shmd_root_del(s, "tree"), 0);
    shmd_close(s);
  }
  ts_crash_end(&tc);
  s = ts_open("cgrow", 32 * MIB, 32 * MIB);
  cr_assert_eq(shmd_stats(s, &st1), 0);
  cr_assert_eq(st1.allocated_bytes, st0.allocated_bytes, "leak across the killed rounds");
  alloc_check(s);
  shmd_close(s);
  cr_log_info("crash_grow_shrink: %d rounds killed", killed);
}
