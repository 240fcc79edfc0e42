/* SPDX-License-Identifier: MIT */
/*
 * The allocator: random alloc / free / realloc against a model with per-block patterns, growth
 * across segments with lazy attach in another process, threads in several processes, crashes at
 * every allocator crash point and at random moments (no deadlock, check passes, no leak), and
 * damaged metadata detected by the checker.
 */
#include <pthread.h>

#include "segments/store_ext.h" /* SHMD__OPEN_SPARSE, SHMD__OPEN_PRIVATE: the malloc shim's kind of store */
#include "support.h"

TestSuite(alloc, .init = ts_init, .fini = ts_fini, .timeout = 240);

/* ---- patterns ---- */

static void fill(unsigned char *p, size_t n, uint64_t id) {
  uint64_t x = id * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; i++) {
    if ((i & 7) == 0) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
    }
    p[i] = (unsigned char)(x >> ((i & 7) * 8));
  }
}

static int verify(const unsigned char *p, size_t n, uint64_t id) {
  uint64_t x = id * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; i++) {
    if ((i & 7) == 0) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
    }
    if (p[i] != (unsigned char)(x >> ((i & 7) * 8)))
      return 0;
  }
  return 1;
}

static size_t random_size(ts_rng_t *r, uint64_t seg_bytes) {
  uint64_t k = ts_below(r, 1000);
  if (k < 700)
    return 1 + ts_below(r, 256);
  if (k < 950)
    return 1 + ts_below(r, SHMD_SMALL_MAX);
  if (k < 998)
    return SHMD_SMALL_MAX + 1 + ts_below(r, 256 << 10);
  return seg_bytes + ts_below(r, seg_bytes); /* larger than one segment */
}

static uint64_t allocated(shmd_store_t *s) {
  shmd_stats_t st;
  cr_assert_eq(shmd_stats(s, &st), 0);
  return st.allocated_bytes;
}

static void check_ok(shmd_store_t *s) {
  int rc = shmd_alloc_check(s);
  cr_assert_eq(rc, 0, "shmd_alloc_check: %s: %s", shmd_strerror(rc), shmd_errdetail());
}

/* ---- random operations against a model ---- */

struct blk {
  shmd_ptr_t p;
  size_t size;
  uint64_t id;
};

Test(alloc, random_against_model) {
  const uint64_t seg = 4 << 20;
  shmd_store_t *s = ts_open("m", seg, seg);
  ts_rng_t r = {ts_seed("random_against_model")};
  enum { LIVE = 600, OPS = 30000 };
  struct blk live[LIVE];
  memset(live, 0, sizeof live);
  uint64_t next_id = 1;
  for (int op = 0; op < OPS; op++) {
    struct blk *b = &live[ts_below(&r, LIVE)];
    uint64_t what = ts_below(&r, 10);
    if (b->p.v == 0) {
      size_t n = random_size(&r, seg);
      int rc = shmd_alloc(s, n, &b->p);
      cr_assert_eq(rc, 0, "alloc %zu: %s", n, shmd_strerror(rc));
      cr_assert_geq(shmd_usable_size(s, b->p), n);
      b->size = n;
      b->id = next_id++;
      fill(shmd_resolve(s, b->p), n, b->id);
    } else {
      cr_assert(verify(shmd_resolve(s, b->p), b->size, b->id), "block %llu damaged", (unsigned long long)b->id);
      if (what < 3) {
        size_t n = random_size(&r, seg);
        int rc = shmd_realloc(s, &b->p, n);
        cr_assert_eq(rc, 0, "realloc %zu: %s", n, shmd_strerror(rc));
        size_t keep = n < b->size ? n : b->size;
        cr_assert(verify(shmd_resolve(s, b->p), keep, b->id), "realloc lost contents");
        b->size = n;
        b->id = next_id++;
        fill(shmd_resolve(s, b->p), n, b->id);
      } else {
        cr_assert_eq(shmd_free(s, b->p), 0);
        b->p = shmd_ptr_null();
      }
    }
    if (op % 5000 == 0)
      check_ok(s);
  }
  check_ok(s);
  uint64_t want = 0;
  for (int i = 0; i < LIVE; i++)
    if (live[i].p.v)
      want += shmd_usable_size(s, live[i].p);
  cr_assert_eq(allocated(s), want);
  for (int i = 0; i < LIVE; i++)
    if (live[i].p.v) {
      cr_assert(verify(shmd_resolve(s, live[i].p), live[i].size, live[i].id));
      cr_assert_eq(shmd_free(s, live[i].p), 0);
    }
  cr_assert_eq(allocated(s), 0);
  check_ok(s);
  shmd_stats_t st;
  shmd_stats(s, &st);
  cr_log_info("segments after the run: %u", st.segments);
  shmd_close(s);
}

Test(alloc, edges) {
  shmd_store_t *s = ts_open("e", 4 << 20, 4 << 20);
  shmd_ptr_t p = shmd_ptr_null(), q;
  cr_assert_eq(shmd_free(s, p), 0);
  cr_assert_eq(shmd_usable_size(s, p), 0);
  cr_assert_eq(shmd_alloc(s, 0, &p), 0);
  cr_assert_geq(shmd_usable_size(s, p), 1);
  cr_assert_eq(shmd_ptr_offset(p) % 16, 0);
  cr_assert_eq(shmd_free(s, shmd_ptr_add(p, 16)), SHMD_EINVAL, "not the start of a block");
  cr_assert_eq(shmd_free(s, shmd_ptr_make(0, 64)), SHMD_EINVAL, "metadata, not data");
  cr_assert_eq(shmd_free(s, shmd_ptr_make(77, 64)), SHMD_EINVAL, "no such segment");
  cr_assert_eq(shmd_free(s, p), 0);
  cr_assert_eq(shmd_calloc(s, SIZE_MAX / 2, 4, &q), SHMD_ETOOBIG);
  cr_assert_eq(shmd_alloc(s, (size_t)1 << 50, &q), SHMD_ETOOBIG);
  cr_assert_eq(shmd_calloc(s, 100, 100, &q), 0);
  unsigned char *z = shmd_resolve(s, q);
  for (int i = 0; i < 10000; i++)
    cr_assert_eq(z[i], 0);
  /* realloc: NULL behaves as alloc, 0 frees */
  shmd_ptr_t r = shmd_ptr_null();
  cr_assert_eq(shmd_realloc(s, &r, 100), 0);
  cr_assert_neq(r.v, 0);
  cr_assert_eq(shmd_realloc(s, &r, 0), 0);
  cr_assert_eq(r.v, 0);
  cr_assert_eq(shmd_free(s, q), 0);
  /* placement in a named segment */
  cr_assert_eq(shmd_alloc_in(s, 0, 100, &q), 0);
  cr_assert_eq(shmd_ptr_segment(q), 0);
  cr_assert_eq(shmd_alloc_in(s, 5, 100, &q), SHMD_ENOTFOUND);
  check_ok(s);
  shmd_close(s);
}

Test(alloc, size_classes_and_metadata_overhead) {
  size_t prev = 0;
  for (size_t n = 1; n <= SHMD_SMALL_MAX; n++) {
    size_t g = shmd_good_size(n);
    cr_assert_geq(g, n);
    cr_assert_eq(g % 16, 0);
    if (n > 128)
      cr_assert_leq((double)(g - n) / (double)n, 0.125, "size %zu rounds to %zu", n, g);
    cr_assert_geq(g, prev);
    prev = g;
  }
  shmd_store_t *s = ts_open("o", 64 << 20, 64 << 20);
  shmd_ptr_t p;
  cr_assert_eq(shmd_alloc(s, 80 << 20, &p), 0); /* a second, larger segment */
  shmd_ptr_t small[100];
  for (int i = 0; i < 100; i++)
    cr_assert_eq(shmd_alloc(s, 1 + (size_t)i * 37, &small[i]), 0);
  shmd_stats_t st;
  shmd_stats(s, &st);
  cr_assert_eq(st.segments, 2);
  for (uint32_t i = 0; i < st.segments; i++) {
    shmd_segment_stats_t ss;
    cr_assert_eq(shmd_segment_stats(s, i, &ss), 0);
    cr_log_info("segment %u: %llu bytes, %llu meta", i, (unsigned long long)ss.size_bytes,
                (unsigned long long)ss.meta_bytes);
  }
  cr_assert_eq(st.slab_bytes, st.slab_free_bytes + st.slab_overhead_bytes + st.small_bytes_inuse);
  double ratio = (double)st.alloc_meta_bytes / (double)st.store_bytes;
  cr_log_info("allocator metadata: %.4f%% of the store", ratio * 100);
  cr_assert_leq(ratio, 0.02);
  shmd_close(s);
}

Test(alloc, size_limit_enforced) {
  shmd_options_t o = ts_opts(4 << 20, 4 << 20);
  o.max_store_bytes = 12 << 20;
  shmd_store_t *s;
  cr_assert_eq(shmd_open("lim", &o, &s), 0);
  shmd_ptr_t p[64];
  int n = 0, rc = 0;
  while (n < 64 && (rc = shmd_alloc(s, 1 << 20, &p[n])) == 0)
    n++;
  cr_assert_eq(rc, SHMD_ENOSPC, "%s", shmd_strerror(rc));
  shmd_store_info_t info;
  shmd_store_info(s, &info);
  cr_assert_leq(info.store_bytes, 12 << 20);
  cr_assert_gt(n, 4);
  for (int i = 0; i < n; i++)
    cr_assert_eq(shmd_free(s, p[i]), 0);
  check_ok(s);
  shmd_close(s);
}

/* ---- growth and lazy attach in another process ---- */

enum { GROWTH_N = 40 };

/* The child of mp_growth_lazy_attach: reads every block of the grown store (attaching its segments
 * lazily) and allocates into it. */
static int attach_child(ts_crash_child_t *cc) {
  shmd_store_t *c = cc->s;
  shmd_ptr_t t;
  if (shmd_root_get(c, "table", &t))
    _exit(3);
  shmd_ptr_t *ctp = shmd_resolve(c, t);
  for (int i = 0; i < GROWTH_N; i++) {
    void *a;
    if (shmd_resolve_checked(c, ctp[i], 300 << 10, &a))
      _exit(4);
    if (!verify(a, 300 << 10, (uint64_t)i + 7))
      _exit(5);
  }
  /* and allocate into the grown store from here */
  shmd_ptr_t more;
  if (shmd_alloc(c, 3 << 20, &more) || shmd_root_set(c, "more", more))
    _exit(6);
  fill(shmd_resolve(c, more), 3 << 20, 99);
  shmd_close(c);
  return 0;
}

Test(alloc, mp_growth_lazy_attach) {
  shmd_store_t *s = ts_open("g", 4 << 20, 2 << 20);
  enum { N = GROWTH_N };
  shmd_ptr_t table;
  cr_assert_eq(shmd_alloc(s, N * sizeof(shmd_ptr_t), &table), 0);
  shmd_ptr_t *tp = shmd_resolve(s, table);
  for (int i = 0; i < N; i++) {
    cr_assert_eq(shmd_alloc(s, 300 << 10, &tp[i]), 0);
    fill(shmd_resolve(s, tp[i]), 300 << 10, (uint64_t)i + 7);
  }
  cr_assert_eq(shmd_root_set(s, "table", table), 0);
  shmd_stats_t st;
  shmd_stats(s, &st);
  cr_assert_geq(st.segments, 4);
  ts_crash_run(NULL,
               &(ts_crash_spec_t){.what = "the attaching process", .fn = attach_child, .store = "g",
                                  .opts = ts_opts(4 << 20, 2 << 20), .end = TS_END_EXIT0},
               NULL);
  shmd_ptr_t more;
  cr_assert_eq(shmd_root_get(s, "more", &more), 0);
  cr_assert(verify(shmd_resolve(s, more), 3 << 20, 99), "segment added by the child, attached lazily here");
  check_ok(s);
  shmd_close(s);
}

/* ---- threads in processes ---- */

struct worker {
  shmd_store_t *s;
  uint64_t seed;
  int ok;
};

static void *worker_main(void *arg) {
  struct worker *w = arg;
  ts_rng_t r = {w->seed};
  enum { LIVE = 256 };
  struct blk live[LIVE];
  memset(live, 0, sizeof live);
  w->ok = 1;
  for (int op = 0; op < 20000 && w->ok; op++) {
    struct blk *b = &live[ts_below(&r, LIVE)];
    if (b->p.v == 0) {
      b->size = 1 + ts_below(&r, ts_below(&r, 10) == 0 ? 40000 : 512);
      b->id = ts_next(&r);
      if (shmd_alloc(w->s, b->size, &b->p) != 0) {
        w->ok = 0;
        break;
      }
      fill(shmd_resolve(w->s, b->p), b->size, b->id);
    } else {
      if (!verify(shmd_resolve(w->s, b->p), b->size, b->id) || shmd_free(w->s, b->p) != 0)
        w->ok = 0;
      b->p = shmd_ptr_null();
    }
  }
  for (int i = 0; i < LIVE; i++)
    if (live[i].p.v && shmd_free(w->s, live[i].p) != 0)
      w->ok = 0;
  return NULL;
}

static int run_threads(shmd_store_t *s, uint64_t seed) {
  pthread_t th[2];
  struct worker w[2] = {{s, seed, 0}, {s, seed * 31 + 7, 0}};
  for (int i = 0; i < 2; i++)
    pthread_create(&th[i], NULL, worker_main, &w[i]);
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  return w[0].ok && w[1].ok;
}

/* The other process of mp_two_threads_in_two_processes: the same two threads on its own mapping. */
static int threads_child(ts_crash_child_t *cc) {
  int ok = run_threads(cc->s, cc->seed);
  shmd_close(cc->s);
  return ok ? 0 : 1;
}

Test(alloc, mp_two_threads_in_two_processes) {
  shmd_store_t *s = ts_open("t", 8 << 20, 8 << 20);
  uint64_t seed = ts_seed("mp_two_threads_in_two_processes");
  ts_crash_proc_t *p = ts_crash_start(NULL, &(ts_crash_spec_t){.what = "the other process", .fn = threads_child,
                                                               .seed = seed + 1, .store = "t",
                                                               .opts = ts_opts(8 << 20, 8 << 20),
                                                               .end = TS_END_EXIT0});
  int ok = run_threads(s, seed);
  ts_crash_finish(p, NULL);
  cr_assert(ok);
  cr_assert_eq(allocated(s), 0);
  check_ok(s);
  shmd_close(s);
}

/* ---- the shape of the free space ---- */

/* The free blocks per order of a fresh data area of `pages` pages: the greedy run of the largest
 * aligned blocks that fit (alloc/buddy.c, shmd__buddy_init). */
static void fresh_shape(uint64_t pages, uint64_t out[48]) {
  memset(out, 0, 48 * sizeof out[0]);
  uint32_t maxo = 0;
  while (maxo < 47 && (UINT64_C(2) << maxo) <= pages)
    maxo++;
  for (uint64_t p = 0; p < pages;) {
    uint32_t o = maxo;
    while (o > 0 && ((p & ((UINT64_C(1) << o) - 1)) != 0 || p + (UINT64_C(1) << o) > pages))
      o--;
    out[o]++;
    p += UINT64_C(1) << o;
  }
}

/* "order:count" for every order with free blocks, largest first. */
static const char *shape_str(const uint64_t f[48], char *buf, size_t n) {
  size_t k = 0;
  buf[0] = 0;
  for (int o = 47; o >= 0; o--)
    if (f[o] && k < n)
      k += (size_t)snprintf(buf + k, n - k, "%s%d:%llu", k ? " " : "", o, (unsigned long long)f[o]);
  return buf;
}

static void expect_shape(shmd_store_t *s, uint32_t seg, const uint64_t want[48], const char *when) {
  shmd_segment_stats_t ss;
  cr_assert_eq(shmd_segment_stats(s, seg, &ss), 0);
  char b1[512], b2[512];
  cr_assert_eq(memcmp(ss.free_blocks, want, sizeof ss.free_blocks), 0,
               "%s: segment %u has free blocks (order:count) %s; a fresh one has %s", when, seg,
               shape_str(ss.free_blocks, b1, sizeof b1), shape_str(want, b2, sizeof b2));
}

/* A large block (order >= 2: sizes up to SHMD_SMALL_MAX are slab objects) of 2^order pages, or a
 * size that rounds up to it. */
static size_t size_of_order(ts_rng_t *r, unsigned order) {
  size_t top = (size_t)SHMD_PAGE_BYTES << order;
  if (ts_below(r, 2))
    return top;
  return top / 2 + 1 + ts_below(r, top / 2); /* rounds up to the same order */
}

/*
 * Allocates many large blocks of various orders, frees some, allocates again, frees everything in
 * a random order: every segment must then have exactly a fresh segment's free blocks per order
 * (every buddy merged back, up to the top order), and a block of the largest order can be taken.
 * The checker accepts a store whose free buddies stay unmerged (it is consistent, only
 * fragmented), so this is what notices a merge that stops early.
 */
Test(alloc, freeing_everything_restores_the_fresh_free_blocks) {
  shmd_options_t o = ts_opts(8 << 20, 4 << 20);
  o.max_store_bytes = 20 << 20;
  shmd_store_t *s;
  cr_assert_eq(shmd_open("fb", &o, &s), 0);
  ts_rng_t r = {ts_seed("freeing_everything_restores_the_fresh_free_blocks")};
  /* Segment 0 holds the store's own metadata before its data area: its data area is fresh now. */
  uint64_t fresh[48], fresh0[48];
  shmd_segment_stats_t ss;
  cr_assert_eq(shmd_segment_stats(s, 0, &ss), 0);
  fresh_shape(ss.data_bytes / SHMD_PAGE_BYTES, fresh);
  expect_shape(s, 0, fresh, "a new store");
  unsigned top = 47;
  while (fresh[top] == 0)
    top--;
  /* The thread's first small allocation and first free create the thread heaps' directory, its
   * heap, the depot and a slab in segment 0, which stay: done now, so that they do not land in
   * whatever segment has room later. Segment 0's reference shape is the one after that. */
  shmd_ptr_t small;
  cr_assert_eq(shmd_alloc(s, 100, &small), 0);
  cr_assert_eq(shmd_free(s, small), 0);
  cr_assert_eq(shmd_segment_stats(s, 0, &ss), 0);
  memcpy(fresh0, ss.free_blocks, sizeof fresh0);
  enum { MAXB = 4000 };
  shmd_ptr_t *b = calloc(MAXB, sizeof *b);
  size_t n = 0;
  for (int round = 0; round < 6; round++) {
    /* fill with orders 2 .. top (small ones more often) until the store is full, free a random
     * half, three times */
    for (int k = 0; k < 3; k++) {
      while (n < MAXB) {
        unsigned ord = 2 + (unsigned)ts_below(&r, ts_below(&r, 4) ? 4 : top - 1);
        int rc = shmd_alloc(s, size_of_order(&r, ord), &b[n]);
        if (rc == SHMD_ENOSPC && ts_below(&r, 8))
          continue; /* a smaller one may still fit */
        if (rc == SHMD_ENOSPC)
          break;
        cr_assert_eq(rc, 0, "%s", shmd_strerror(rc));
        n++;
      }
      for (size_t i = 0; i < n;) {
        if (ts_below(&r, 2)) {
          cr_assert_eq(shmd_free(s, b[i]), 0);
          b[i] = b[--n];
        } else {
          i++;
        }
      }
    }
    /* free everything, in a random order */
    while (n > 0) {
      size_t i = ts_below(&r, n);
      cr_assert_eq(shmd_free(s, b[i]), 0);
      b[i] = b[--n];
    }
    check_ok(s);
    shmd_store_info_t info;
    cr_assert_eq(shmd_store_info(s, &info), 0);
    char when[64];
    snprintf(when, sizeof when, "round %d, everything freed", round);
    for (uint32_t seg = 0; seg < info.segments; seg++) {
      uint64_t want[48];
      cr_assert_eq(shmd_segment_stats(s, seg, &ss), 0);
      if (seg == 0)
        memcpy(want, fresh0, sizeof want);
      else
        fresh_shape(ss.data_bytes / SHMD_PAGE_BYTES, want);
      expect_shape(s, seg, want, when);
      /* the largest block of the segment can be taken again */
      uint32_t o2 = 47;
      while (want[o2] == 0)
        o2--;
      shmd_ptr_t big;
      int rc = shmd_alloc_in(s, seg, (size_t)SHMD_PAGE_BYTES << o2, &big);
      cr_assert_eq(rc, 0, "%s: a block of %llu KiB in segment %u: %s", when, 4ull << o2, seg,
                   shmd_strerror(rc));
      cr_assert_eq(shmd_free(s, big), 0);
    }
    if (round == 0)
      cr_assert_gt(info.segments, 1, "the store never grew");
  }
  free(b);
  shmd_close(s);
}

/*
 * An allocation takes the smallest free block that fits: a free block of its own order if there is
 * one, otherwise the smallest larger block, split once per order on the way down. So the counts of
 * free blocks per order after each allocation follow from the counts before it. (Taking a larger
 * block than needed passes the checker too; it only fragments the free space.)
 */
Test(alloc, buddy_takes_the_smallest_free_block_that_fits) {
  shmd_options_t o = ts_opts(8 << 20, 8 << 20);
  o.max_store_bytes = 8 << 20;
  shmd_store_t *s;
  cr_assert_eq(shmd_open("sf", &o, &s), 0);
  ts_rng_t r = {ts_seed("buddy_takes_the_smallest_free_block_that_fits")};
  shmd_ptr_t small; /* creates the thread heap's blocks now (see above) */
  cr_assert_eq(shmd_alloc(s, 100, &small), 0);
  cr_assert_eq(shmd_free(s, small), 0);
  enum { MAXB = 3000 };
  shmd_ptr_t *b = calloc(MAXB, sizeof *b);
  size_t n = 0;
  unsigned steps = 0, exact = 0, split = 0;
  for (int k = 0; k < 4000; k++) {
    shmd_segment_stats_t before, after;
    cr_assert_eq(shmd_segment_stats(s, 0, &before), 0);
    if (n > 0 && (n == MAXB || ts_below(&r, 3) == 0)) {
      size_t i = ts_below(&r, n);
      cr_assert_eq(shmd_free(s, b[i]), 0);
      b[i] = b[--n];
      continue;
    }
    unsigned ord = 2 + (unsigned)ts_below(&r, ts_below(&r, 8) ? 3 : 8);
    int rc = shmd_alloc(s, size_of_order(&r, ord), &b[n]);
    cr_assert_eq(shmd_segment_stats(s, 0, &after), 0);
    uint32_t o2 = ord;
    while (o2 < 48 && before.free_blocks[o2] == 0)
      o2++;
    if (o2 == 48) {
      cr_assert_eq(rc, SHMD_ENOSPC, "no free block of order >= %u, yet the allocation succeeded", ord);
      continue;
    }
    cr_assert_eq(rc, 0, "a free block of order %u is there, yet: %s", o2, shmd_strerror(rc));
    n++;
    steps++;
    exact += o2 == ord;
    split += o2 > ord;
    for (uint32_t j = 0; j < 48; j++) {
      uint64_t want = before.free_blocks[j];
      if (j == o2)
        want--; /* the block taken */
      else if (j >= ord && j < o2)
        want++; /* the upper halves of its splits */
      cr_assert_eq(after.free_blocks[j], want,
                   "allocation of order %u (smallest free block: order %u): %llu free blocks of order "
                   "%u, expected %llu", ord, o2, (unsigned long long)after.free_blocks[j], j,
                   (unsigned long long)want);
    }
  }
  cr_log_info("%u allocations: %u from a block of their order, %u from a split", steps, exact, split);
  cr_assert_gt(exact, 100);
  cr_assert_gt(split, 100);
  while (n > 0)
    cr_assert_eq(shmd_free(s, b[--n]), 0);
  check_ok(s);
  free(b);
  shmd_close(s);
}

/* ---- crashes ---- */

/*
 * The crash workload: a table of SLOTS slots in shared memory (a root), guarded by a lock in its
 * first word. Each transaction fills an empty slot with a new block (pattern from a counter kept
 * in the slot) or empties a full one (the block is freed after commit). After any kill, the
 * allocator must hold exactly the table and the blocks in its slots.
 */
enum { SLOTS = 128 };
struct slot {
  uint64_t ptr, size, id;
};
struct table {
  shmd_lock_t lock;
  uint64_t next_id;
  struct slot slot[SLOTS];
};

/* The child of a crash run (the harness opened its store): *(long *)arg transactions, or until
 * killed. */
static int crash_workload(ts_crash_child_t *cc) {
  long ops = *(const long *)cc->arg;
  shmd_store_t *c = cc->s;
  shmd_ptr_t tp;
  if (shmd_root_get(c, "table", &tp))
    _exit(3);
  struct table *t = shmd_resolve(c, tp);
  ts_rng_t r = {cc->seed};
  for (long op = 0; op < ops; op++) {
    shmd_tx_t *tx;
    if (shmd_tx_begin(c, &tx) || shmd_tx_lock(tx, tp))
      _exit(4);
    uint32_t i = (uint32_t)ts_below(&r, SLOTS);
    struct slot *sl = &t->slot[i];
    int rc;
    if (sl->ptr == 0) {
      uint64_t k = ts_below(&r, 100);
      size_t n = k < 80 ? 1 + ts_below(&r, 600) : k < 97 ? 1 + ts_below(&r, 60000) : (1 << 20) + ts_below(&r, 3 << 20);
      shmd_ptr_t p;
      rc = shmd_tx_alloc(tx, n, &p);
      if (rc == SHMD_ENOSPC) {
        shmd_tx_abort(tx);
        continue;
      }
      if (rc)
        _exit(5);
      fill(shmd_resolve(c, p), n, t->next_id);
      if (shmd_tx_log(tx, shmd_ptr_from_addr(c, &t->next_id), 8) ||
          shmd_tx_log(tx, shmd_ptr_from_addr(c, sl), sizeof *sl))
        _exit(6);
      sl->ptr = p.v;
      sl->size = n;
      sl->id = t->next_id++;
    } else {
      shmd_ptr_t p = {sl->ptr};
      if (shmd_tx_log(tx, shmd_ptr_from_addr(c, sl), sizeof *sl) || shmd_tx_free(tx, p))
        _exit(7);
      memset(sl, 0, sizeof *sl);
    }
    if (shmd_tx_commit(tx))
      _exit(8);
  }
  shmd_close(c);
  return 0;
}

/* A run of crash_workload on store `name`. */
static ts_crash_spec_t workload_spec(const char *name, const long *ops, uint64_t seed) {
  return (ts_crash_spec_t){.what = "the workload", .fn = crash_workload, .arg = (void *)ops, .seed = seed,
                           .store = name, .opts = ts_opts(4 << 20, 2 << 20)};
}

/* A process that opens store `name` (opening recovers the dead lanes), armed with `point`. */
static int just_open(ts_crash_child_t *cc) {
  (void)cc;
  return 0;
}

static ts_crash_spec_t recoverer_spec(const char *name, const char *point) {
  return (ts_crash_spec_t){.what = "the recoverer", .fn = just_open, .store = name,
                           .opts = ts_opts(4 << 20, 2 << 20), .point = point};
}

static shmd_ptr_t crash_setup(shmd_store_t *s) {
  shmd_ptr_t tp;
  cr_assert_eq(shmd_calloc(s, 1, sizeof(struct table), &tp), 0);
  cr_assert_eq(shmd_root_set(s, "table", tp), 0);
  return tp;
}

/* After a kill: recovery, check, exact accounting and intact contents. */
static void crash_verify(shmd_store_t *s, shmd_ptr_t tp) {
  ts_crash_check(s, TS_CHECK_RECOVER | TS_CHECK_ALLOC, NULL);
  struct table *t = shmd_resolve(s, tp);
  cr_assert_eq(t->lock.word, 0, "the table lock must have been released by recovery");
  uint64_t held = shmd_usable_size(s, tp);
  for (int i = 0; i < SLOTS; i++) {
    struct slot *sl = &t->slot[i];
    if (sl->ptr == 0)
      continue;
    shmd_ptr_t p = {sl->ptr};
    size_t us = shmd_usable_size(s, p);
    cr_assert_geq(us, sl->size, "slot %d points to a block that is not allocated", i);
    cr_assert(verify(shmd_resolve(s, p), sl->size, sl->id), "slot %d contents damaged", i);
    held += us;
  }
  cr_assert_eq(allocated(s), held, "allocated bytes %llu != held %llu (leak or double free)",
               (unsigned long long)allocated(s), (unsigned long long)held);
}

Test(alloc, crash_random_kills) {
  shmd_store_t *s = ts_open("c", 4 << 20, 2 << 20);
  shmd_ptr_t tp = crash_setup(s);
  ts_crash_t t;
  ts_crash_begin(&t, "crash_random_kills");
  int kills = getenv("SHMDICT_CRASH_KILLS") ? atoi(getenv("SHMDICT_CRASH_KILLS")) : 100;
  const long ops = 1000000;
  for (int k = 0; k < kills; k++) {
    ts_crash_spec_t sp = workload_spec("c", &ops, t.seed + (uint64_t)k);
    sp.kill_lo_us = 3000; /* killed 3 to 43 ms after its fork: it must not end before */
    sp.kill_hi_us = 3000 + 40000 - 1;
    sp.end = TS_END_KILLED;
    ts_crash_run(&t, &sp, NULL);
    crash_verify(s, tp);
  }
  ts_crash_end(&t);
  shmd_close(s);
}

Test(alloc, crash_at_every_allocator_point) {
  static const char *points[] = {
      "alloc.step.before_commit", "alloc.step.after_commit", "alloc.small.logged", "alloc.large.logged",
      "free.logged",              "buddy.split",             "buddy.merge",        "slab.new",
      "slab.release",             "tx.before_commit",        "tx.committed",       "grow.before_commit",
      "grow.after_commit",
  };
  shmd_store_t *s = ts_open("p", 4 << 20, 2 << 20);
  shmd_ptr_t tp = crash_setup(s);
  ts_crash_t t;
  ts_crash_begin(&t, "crash_at_every_allocator_point");
  const long ops = 3000;
  int reached = 0;
  for (size_t i = 0; i < sizeof points / sizeof points[0]; i++) {
    for (int rep = 0; rep < 3; rep++) {
      char env[128];
      snprintf(env, sizeof env, "%s:%llu", points[i], (unsigned long long)(1 + ts_below(&t.rng, 40)));
      ts_crash_spec_t sp = workload_spec("p", &ops, t.seed + i * 7 + (uint64_t)rep);
      sp.point = env; /* armed at its open: the recovery there counts */
      ts_crash_res_t res;
      ts_crash_run(&t, &sp, &res);
      reached += res.at_point;
      crash_verify(s, tp);
    }
  }
  ts_crash_end(&t);
  cr_log_info("%d of %zu crash runs died at their point", reached, 3 * sizeof points / sizeof points[0]);
  cr_assert_gt(reached, 20);
  shmd_close(s);
}

Test(alloc, crash_during_recovery_is_restartable) {
  shmd_store_t *s = ts_open("rr", 4 << 20, 2 << 20);
  shmd_ptr_t tp = crash_setup(s);
  ts_crash_t t;
  ts_crash_begin(&t, "crash_during_recovery_is_restartable");
  const long ops = 100000;
  int recover_kills = 0;
  for (int k = 0; k < 12; k++) {
    /* A writer dies mid-transaction (at a commit point with work to undo)... */
    char env[64];
    snprintf(env, sizeof env, "tx.before_commit:%d", 5 + k);
    ts_crash_spec_t sp = workload_spec("rr", &ops, t.seed + (uint64_t)k);
    sp.point = env;
    sp.end = TS_END_KILLED;
    ts_crash_run(&t, &sp, NULL);
    /* ...and the process that recovers it dies half-way through its rollback or its frees. */
    ts_crash_res_t res;
    sp = recoverer_spec("rr", k % 2 ? "recover.rolled_back" : "free.logged");
    ts_crash_run(&t, &sp, &res);
    recover_kills += res.killed;
    crash_verify(s, tp);
  }
  ts_crash_end(&t);
  cr_log_info("%d recoverers were killed mid-recovery", recover_kills);
  cr_assert_gt(recover_kills, 3);
  shmd_close(s);
}

/* A writer dies inside an allocator step (the step's log full, not committed), and the process
 * that recovers it is killed after restoring one, two or three of the step's words: the next
 * recovery must undo the whole step again, not take the step for rolled back. */
Test(alloc, crash_recoverer_killed_inside_a_step_rollback) {
  shmd_store_t *s = ts_open("sr", 4 << 20, 2 << 20);
  shmd_ptr_t tp = crash_setup(s);
  ts_crash_t t;
  ts_crash_begin(&t, "crash_recoverer_killed_inside_a_step_rollback");
  const long ops = 100000;
  int recover_kills = 0;
  for (int k = 0; k < 24; k++) {
    char env[64];
    snprintf(env, sizeof env, "alloc.step.before_commit:%llu", (unsigned long long)(1 + ts_below(&t.rng, 30)));
    ts_crash_spec_t sp = workload_spec("sr", &ops, t.seed + (uint64_t)k);
    sp.what = "the writer";
    sp.point = env;
    sp.end = TS_END_KILLED; /* it must die at its point */
    ts_crash_run(&t, &sp, NULL);
    /* opening recovers: the step's log is rolled back first */
    snprintf(env, sizeof env, "undo.word:%d", 1 + k % 3);
    ts_crash_res_t res;
    sp = recoverer_spec("sr", env);
    ts_crash_run(&t, &sp, &res);
    recover_kills += res.killed;
    crash_verify(s, tp);
  }
  ts_crash_end(&t);
  cr_log_info("%d recoverers were killed inside a rollback", recover_kills);
  cr_assert_gt(recover_kills, 12);
  shmd_close(s);
}

/* ---- damaged metadata: the checker reports, never crashes ---- */

Test(alloc, check_detects_damage) {
  shmd_store_t *s = ts_open("d", 4 << 20, 4 << 20);
  shmd_ptr_t a, b, c;
  cr_assert_eq(shmd_alloc(s, 48, &a), 0);
  cr_assert_eq(shmd_alloc(s, 48, &b), 0);
  cr_assert_eq(shmd_alloc(s, 100000, &c), 0);
  cr_assert_eq(shmd_free(s, a), 0);
  check_ok(s);
  /* A freed object reaches its slab's free list when the thread's heap is flushed (at the
   * thread's end; here: detach). */
  shmd_thread_detach(s);
  check_ok(s);
  /* A wild free-list link in a free slab slot. */
  uint32_t *link = shmd_resolve(s, a);
  uint32_t saved = *link;
  *link = 12345;
  cr_assert_eq(shmd_alloc_check(s), SHMD_ECORRUPT);
  cr_assert_neq(strlen(shmd_errdetail()), 0);
  *link = saved;
  check_ok(s);
  /* A free-list cycle (double free written by hand). */
  *link = (uint32_t)(shmd_ptr_offset(a) & 0xffff);
  cr_assert_eq(shmd_alloc_check(s), SHMD_ECORRUPT);
  *link = saved;
  /* Garbage over the whole allocator metadata of segment 0: still a status, never a crash. */
  shmd_ptr_t meta_probe;
  cr_assert_eq(shmd_alloc(s, 16, &meta_probe), 0);
  check_ok(s);
  shmd_close(s);
}

Test(alloc, check_detects_double_free_in_heap) {
  shmd_store_t *s = ts_open("df", 4 << 20, 4 << 20);
  shmd_ptr_t a, b;
  cr_assert_eq(shmd_alloc(s, 48, &a), 0);
  cr_assert_eq(shmd_alloc(s, 48, &b), 0);
  check_ok(s);
  /* A double free lands twice in the thread's heap: the checker reports it... */
  cr_assert_eq(shmd_free(s, b), 0);
  cr_assert_eq(shmd_free(s, b), 0);
  cr_assert_eq(shmd_alloc_check(s), SHMD_ECORRUPT);
  cr_log_info("double free: %s", shmd_errdetail());
  cr_assert_neq(strstr(shmd_errdetail(), "twice"), NULL, "%s", shmd_errdetail());
  /* ...and, once the heap is flushed, the slab's free list holding it twice. */
  shmd_thread_detach(s);
  cr_assert_eq(shmd_alloc_check(s), SHMD_ECORRUPT);
  cr_assert_neq(strstr(shmd_errdetail(), "twice"), NULL, "%s", shmd_errdetail());
  shmd_close(s);
}

/* ---- realloc of a large block in place ---- */

Test(alloc, realloc_large_in_place) {
  shmd_store_t *s = ts_open("rl", 8 << 20, 8 << 20);
  shmd_ptr_t p;
  cr_assert_eq(shmd_alloc(s, 128 << 10, &p), 0);
  fill(shmd_resolve(s, p), 128 << 10, 1);
  shmd_ptr_t was = p;
  /* Shrinking to a sixth keeps 32 KiB and gives the upper halves back, in place. */
  cr_assert_eq(shmd_realloc(s, &p, 20 << 10), 0);
  cr_assert_eq(p.v, was.v, "shrank in place");
  cr_assert_eq(shmd_usable_size(s, p), 32 << 10);
  cr_assert(verify(shmd_resolve(s, p), 20 << 10, 1), "contents kept");
  cr_assert_eq(allocated(s), 32 << 10);
  check_ok(s);
  fill(shmd_resolve(s, p), 32 << 10, 2);
  /* Its upper buddies are free: it grows where it is. */
  cr_assert_eq(shmd_realloc(s, &p, 100 << 10), 0);
  cr_assert_eq(p.v, was.v, "grew in place");
  cr_assert_eq(shmd_usable_size(s, p), 128 << 10);
  cr_assert(verify(shmd_resolve(s, p), 32 << 10, 2));
  cr_assert_eq(allocated(s), 128 << 10);
  check_ok(s);
  /* With a block in its upper buddy it cannot grow: it moves (contents kept). */
  cr_assert_eq(shmd_realloc(s, &p, 20 << 10), 0);
  cr_assert_eq(p.v, was.v);
  enum { MAXQ = 512 };
  shmd_ptr_t q[MAXQ];
  int nq = 0, blocked = 0;
  while (nq < MAXQ && !blocked && shmd_alloc(s, 32 << 10, &q[nq]) == 0)
    blocked = q[nq++].v == was.v + (32 << 10);
  cr_assert(blocked, "a 32 KiB block took the upper buddy");
  fill(shmd_resolve(s, p), 32 << 10, 3);
  cr_assert_eq(shmd_realloc(s, &p, 64 << 10), 0);
  cr_assert_neq(p.v, was.v, "moved");
  cr_assert(verify(shmd_resolve(s, p), 32 << 10, 3));
  check_ok(s);
  /* Into a small block and back: moves (the in-place path is for large blocks only). */
  cr_assert_eq(shmd_realloc(s, &p, 100), 0);
  cr_assert(verify(shmd_resolve(s, p), 100, 3));
  cr_assert_eq(shmd_realloc(s, &p, 1 << 20), 0);
  cr_assert(verify(shmd_resolve(s, p), 100, 3));
  cr_assert_eq(shmd_free(s, p), 0);
  for (int i = 0; i < nq; i++)
    cr_assert_eq(shmd_free(s, q[i]), 0);
  cr_assert_eq(allocated(s), 0);
  check_ok(s);
  shmd_close(s);
}

/* A block whose first 8 bytes hold its size and the rest a pattern of that size. */
static int resize_child(ts_crash_child_t *cc) {
  shmd_store_t *c = cc->s;
  shmd_ptr_t p;
  if (shmd_root_get(c, "big", &p))
    _exit(2);
  ts_rng_t r = {cc->seed};
  for (int i = 0; i < 200; i++) {
    size_t n = SHMD_SMALL_MAX + 1 + ts_below(&r, 1 << 20);
    shmd_ptr_t was = p;
    if (shmd_realloc(c, &p, n))
      _exit(3);
    if (p.v != was.v && shmd_root_set(c, "big", p)) /* moved: never at the crash points below */
      _exit(4);
    unsigned char *b = shmd_resolve(c, p);
    memcpy(b, &n, 8);
    fill(b + 8, n - 8, n);
  }
  shmd_close(c);
  return 0;
}

Test(alloc, crash_inside_in_place_resize) {
  static const char *points[] = {"buddy.grow", "buddy.shrink", "alloc.resize.logged"};
  shmd_store_t *s = ts_open("rc", 8 << 20, 8 << 20);
  shmd_ptr_t p;
  size_t n0 = 64 << 10;
  cr_assert_eq(shmd_alloc(s, n0, &p), 0);
  unsigned char *b = shmd_resolve(s, p);
  memcpy(b, &n0, 8);
  fill(b + 8, n0 - 8, n0);
  cr_assert_eq(shmd_root_set(s, "big", p), 0);
  ts_crash_t t;
  ts_crash_begin(&t, "crash_inside_in_place_resize");
  int reached = 0, runs = 0;
  for (size_t i = 0; i < sizeof points / sizeof points[0]; i++) {
    for (int rep = 0; rep < 5; rep++) {
      char env[128];
      snprintf(env, sizeof env, "%s:%llu", points[i], (unsigned long long)(1 + ts_below(&t.rng, 6)));
      ts_crash_res_t res;
      ts_crash_run(&t,
                   &(ts_crash_spec_t){.what = "the resizer", .fn = resize_child, .seed = t.seed + i * 11 + (uint64_t)rep,
                                      .store = "rc", .opts = ts_opts(8 << 20, 8 << 20), .point = env},
                   &res);
      reached += res.at_point;
      runs++;
      ts_crash_check(s, TS_CHECK_RECOVER | TS_CHECK_ALLOC, NULL);
      cr_assert_eq(shmd_root_get(s, "big", &p), 0);
      b = shmd_resolve(s, p);
      size_t n;
      memcpy(&n, b, 8);
      size_t us = shmd_usable_size(s, p);
      cr_assert_geq(us, n, "after %s: the block (%zu bytes) is smaller than its contents (%zu)", env, us, n);
      cr_assert(verify(b + 8, n - 8, n), "after %s: contents damaged", env);
      cr_assert_eq(allocated(s), us, "after %s: allocated %llu != the one block's %zu", env,
                   (unsigned long long)allocated(s), us);
    }
  }
  ts_crash_end(&t);
  cr_log_info("%d of %d runs died at their crash point", reached, runs);
  cr_assert_gt(reached, runs / 2);
  shmd_close(s);
}

/* A store opened with private mappings (the malloc shim's kind) gives the pages of big free blocks
 * back to the kernel once a thread has freed 16 MiB: the resident size drops, the blocks still in
 * use keep their bytes, and the freed space is handed out again and holds what is written. */
#define MB (UINT64_C(1) << 20)

static long rss_kib(void) {
  long size = 0, res = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  cr_assert_not_null(f);
  cr_assert_eq(fscanf(f, "%ld %ld", &size, &res), 2);
  fclose(f);
  return res * (sysconf(_SC_PAGESIZE) / 1024);
}

Test(alloc, public_open_refuses_internal_flags) {
  shmd_options_t o = ts_opts(16 * MB, 4 * MB);
  shmd_store_t *s = NULL;
  o.flags = SHMD__OPEN_PRIVATE;
  cr_assert_eq(shmd_open("fl", &o, &s), SHMD_EINVAL);
  cr_assert_null(s);
  cr_assert(strstr(shmd_errdetail(), "unknown flags"), "%s", shmd_errdetail());
  o.flags = SHMD__OPEN_SPARSE;
  cr_assert_eq(shmd_open("fl", &o, &s), SHMD_EINVAL);
  o.flags = 1u << 20;
  cr_assert_eq(shmd_open("fl", &o, &s), SHMD_EINVAL);
  o.flags = SHMD__OPEN_PUBLIC & ~SHMD_OPEN_NOCREATE & ~SHMD_OPEN_EXCL;
  cr_assert_eq(shmd_open("fl", &o, &s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}

Test(alloc, private_store_gives_free_pages_back) {
  shmd_options_t o = ts_opts(256 * MB, 64 * MB);
  shmd_store_t *s;
  o.flags = SHMD__OPEN_SPARSE;
  cr_assert_eq(shmd__open_ext("pv", &o, &s), 0, "%s", shmd_errdetail());
  shmd_close(s);
  o.flags = SHMD__OPEN_SPARSE | SHMD__OPEN_PRIVATE;
  int rc = shmd__open_ext("pv", &o, &s);
  cr_assert_eq(rc, 0, "%s", shmd_errdetail());
  enum { N = 96 };
  shmd_ptr_t p[N];
  for (int i = 0; i < N; i++) {
    cr_assert_eq(shmd_alloc(s, MB - 100, &p[i]), 0);
    memset(shmd_resolve(s, p[i]), 'a' + i % 26, MB - 100);
  }
  long full = rss_kib();
  for (int i = 0; i < N; i++)
    if (i % 8 != 0)
      cr_assert_eq(shmd_free(s, p[i]), 0);
  long after = rss_kib();
  cr_log_info("resident: %ld KiB with %d MiB in use, %ld KiB after freeing %d MiB", full, N, after, N - N / 8);
  cr_assert_gt(full - after, 48 * 1024, "only %ld KiB went back to the kernel", full - after);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  for (int i = 0; i < N; i += 8) {
    const unsigned char *b = shmd_resolve(s, p[i]);
    for (size_t j = 0; j < MB - 100; j += 4093)
      cr_assert_eq(b[j], 'a' + i % 26, "live block %d changed at %zu", i, j);
  }
  for (int i = 0; i < N; i++)
    if (i % 8 != 0) {
      cr_assert_eq(shmd_alloc(s, MB - 100 - (size_t)i, &p[i]), 0);
      memset(shmd_resolve(s, p[i]), 'A' + i % 26, MB - 100 - (size_t)i);
    }
  for (int i = 0; i < N; i++) {
    const unsigned char *b = shmd_resolve(s, p[i]);
    unsigned char want = (unsigned char)(i % 8 ? 'A' + i % 26 : 'a' + i % 26);
    for (size_t j = 0; j < MB - 200; j += 4093)
      cr_assert_eq(b[j], want, "block %d wrong at %zu", i, j);
  }
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}
