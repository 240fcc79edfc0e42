/* SPDX-License-Identifier: MIT */
/*
 * Thread heaps (alloc/heap.c): cross-thread and cross-process frees under load, adoption of the
 * heaps of a killed process whose threads held full caches and open reservations, thread exit,
 * thousands of short-lived threads, and the statistics of cached objects.
 */
#include <pthread.h>
#include <sched.h>

#include "support.h"

TestSuite(heaps, .init = ts_init, .fini = ts_fini, .timeout = 240);

static void fill(unsigned char *p, size_t n, uint64_t id) {
  for (size_t i = 0; i < n; i++)
    p[i] = (unsigned char)(id * 131 + i * 7);
}

static int verify(const unsigned char *p, size_t n, uint64_t id) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != (unsigned char)(id * 131 + i * 7))
      return 0;
  return 1;
}

static void check_ok(shmd_store_t *s) {
  int rc = shmd_alloc_check(s);
  cr_assert_eq(rc, 0, "shmd_alloc_check: %s: %s", shmd_strerror(rc), shmd_errdetail());
}

static shmd_stats_t stats(shmd_store_t *s) {
  shmd_stats_t st;
  cr_assert_eq(shmd_stats(s, &st), 0);
  return st;
}

/* ---- the fast path serves from the heap; statistics count cached objects as free ---- */

Test(heaps, stats_count_cached_objects) {
  shmd_store_t *s = ts_open("st", 8 << 20, 8 << 20);
  enum { N = 40 };
  shmd_ptr_t p[N];
  for (int i = 0; i < N; i++)
    cr_assert_eq(shmd_alloc(s, 100, &p[i]), 0);
  shmd_stats_t st = stats(s);
  cr_assert_eq(st.heaps, 1);
  cr_assert_eq(st.allocated_bytes, N * shmd_good_size(100));
  for (int i = 0; i < N; i++)
    cr_assert_eq(shmd_free(s, p[i]), 0);
  st = stats(s);
  cr_assert_eq(st.allocated_bytes, 0, "cached objects are free: %llu", (unsigned long long)st.allocated_bytes);
  cr_assert_gt(st.heap_cached_objs, 0);
  cr_assert_eq(st.slab_bytes, st.slab_free_bytes + st.slab_overhead_bytes + st.small_bytes_inuse);
  cr_log_info("cached %llu objects (%llu bytes); heap metadata %llu bytes",
              (unsigned long long)st.heap_cached_objs, (unsigned long long)st.heap_cached_bytes,
              (unsigned long long)st.heap_meta_bytes);
  /* An alloc/free pair now moves nothing in the shared classes. */
  shmd_ptr_t q;
  cr_assert_eq(shmd_alloc(s, 100, &q), 0);
  cr_assert_eq(stats(s).heap_cached_objs, st.heap_cached_objs - 1);
  cr_assert_eq(shmd_free(s, q), 0);
  check_ok(s);
  /* Detaching (as a thread's end) returns the cache. */
  shmd_thread_detach(s);
  st = stats(s);
  cr_assert_eq(st.heap_cached_objs, 0);
  check_ok(s);
  shmd_close(s);
}

/* ---- cross-thread and cross-process frees: 2 processes x 2 threads in a ring ---- */

enum { RING = 256, XOPS = 40000, NTHR = 4 };
struct xring {
  uint64_t head, tail; /* head: next to write (producer), tail: next to read (consumer) */
  uint64_t done;       /* the producer finished */
  uint64_t pad[5];
  uint64_t e[RING][3]; /* ptr, size, id */
};
struct xshared {
  struct xring ring[NTHR];
  uint64_t failures;
};

struct xarg {
  shmd_store_t *s;
  struct xshared *x;
  int me; /* produces into ring[me], consumes ring[(me + 3) % 4] */
  uint64_t seed;
};

static void *xthread_main(void *arg) {
  struct xarg *a = arg;
  struct xring *out = &a->x->ring[a->me], *in = &a->x->ring[(a->me + NTHR - 1) % NTHR];
  ts_rng_t r = {a->seed};
  uint64_t fails = 0;
  int in_done = 0;
  for (int op = 0; op < XOPS || !in_done; op++) {
    if (op < XOPS) {
      size_t n = 1 + ts_below(&r, ts_below(&r, 20) == 0 ? 9000 : 700);
      uint64_t id = ts_next(&r);
      shmd_ptr_t p;
      if (shmd_alloc(a->s, n, &p) != 0) {
        fails++;
      } else {
        fill(shmd_resolve(a->s, p), n < 64 ? n : 64, id);
        uint64_t h = out->head;
        if (h - __atomic_load_n(&out->tail, __ATOMIC_ACQUIRE) < RING) {
          out->e[h % RING][0] = p.v;
          out->e[h % RING][1] = n;
          out->e[h % RING][2] = id;
          __atomic_store_n(&out->head, h + 1, __ATOMIC_RELEASE);
        } else if (shmd_free(a->s, p) != 0) {
          fails++;
        }
      }
      if (op == XOPS - 1)
        __atomic_store_n(&out->done, 1, __ATOMIC_RELEASE);
    }
    /* Consume everything available: frees of objects another thread (maybe in another process)
     * allocated. */
    int done_seen = __atomic_load_n(&in->done, __ATOMIC_ACQUIRE);
    uint64_t t = in->tail, h = __atomic_load_n(&in->head, __ATOMIC_ACQUIRE);
    for (; t < h; t++) {
      shmd_ptr_t p = {in->e[t % RING][0]};
      size_t n = in->e[t % RING][1];
      if (!verify(shmd_resolve(a->s, p), n < 64 ? n : 64, in->e[t % RING][2]) || shmd_free(a->s, p) != 0)
        fails++;
    }
    __atomic_store_n(&in->tail, t, __ATOMIC_RELEASE);
    if (done_seen && t == h)
      in_done = 1;
    if (op >= XOPS)
      sched_yield();
  }
  __atomic_add_fetch(&a->x->failures, fails, __ATOMIC_RELAXED);
  return NULL;
}

static void run_pair_of_threads(shmd_store_t *s, struct xshared *x, int first, uint64_t seed) {
  pthread_t th[2];
  struct xarg a[2] = {{s, x, first, seed}, {s, x, first + 1, seed * 7 + 3}};
  for (int i = 0; i < 2; i++)
    pthread_create(&th[i], NULL, xthread_main, &a[i]);
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
}

/* The other process of mp_cross_thread_and_process_frees: threads 2 and 3. */
static int xprocess(ts_crash_child_t *cc) {
  shmd_ptr_t cp;
  if (shmd_root_get(cc->s, "x", &cp))
    return 2;
  run_pair_of_threads(cc->s, shmd_resolve(cc->s, cp), 2, cc->seed);
  shmd_close(cc->s);
  return 0;
}

Test(heaps, mp_cross_thread_and_process_frees) {
  shmd_store_t *s = ts_open("x", 16 << 20, 16 << 20);
  shmd_ptr_t xp;
  cr_assert_eq(shmd_calloc(s, 1, sizeof(struct xshared), &xp), 0);
  cr_assert_eq(shmd_root_set(s, "x", xp), 0);
  uint64_t base = stats(s).allocated_bytes;
  uint64_t seed = ts_seed("mp_cross_thread_and_process_frees");
  ts_crash_proc_t *p = ts_crash_start(NULL, &(ts_crash_spec_t){.what = "the other process", .fn = xprocess,
                                                               .seed = seed + 11, .store = "x",
                                                               .opts = ts_opts(16 << 20, 16 << 20),
                                                               .end = TS_END_EXIT0});
  struct xshared *x = shmd_resolve(s, xp);
  run_pair_of_threads(s, x, 0, seed);
  ts_crash_finish(p, NULL);
  cr_assert_eq(x->failures, 0);
  check_ok(s);
  shmd_stats_t st = stats(s);
  cr_assert_eq(st.allocated_bytes, base, "allocated %llu, expected %llu", (unsigned long long)st.allocated_bytes,
               (unsigned long long)base);
  cr_log_info("heaps %llu, cached after the threads ended: %llu", (unsigned long long)st.heaps,
              (unsigned long long)st.heap_cached_objs);
  cr_assert_eq(st.heap_cached_objs, 0, "threads that ended returned their caches");
  shmd_close(s);
}

/* ---- crash: a process whose threads hold full caches and reservations is killed ---- */

enum { SLOTS = 128 };
struct slot {
  uint64_t ptr, size, id;
};
struct table {
  shmd_lock_t lock;
  uint64_t next_id;
  uint64_t stop; /* survivors: finish and exit */
  struct slot slot[SLOTS];
};

/* One thread of the crash workload: transactions that fill or empty a slot of the shared table,
 * and bursts that allocate many objects of one class in a transaction and abort it (so that the
 * reservations cross back into the heap, and the heap's stacks fill and flush). */
static void crash_thread_loop(shmd_store_t *c, shmd_ptr_t tp, uint64_t seed) {
  struct table *t = shmd_resolve(c, tp);
  ts_rng_t r = {seed};
  while (!__atomic_load_n(&t->stop, __ATOMIC_ACQUIRE)) {
    shmd_tx_t *tx;
    if (shmd_tx_begin(c, &tx))
      _exit(4);
    if (ts_below(&r, 6) == 0) {
      size_t n = 1 + ts_below(&r, 1000);
      int k = 20 + (int)ts_below(&r, 60);
      for (int i = 0; i < k; i++) {
        shmd_ptr_t p;
        int rc = shmd_tx_alloc(tx, n, &p);
        if (rc == SHMD_ENOSPC)
          break;
        if (rc)
          _exit(5);
        fill(shmd_resolve(c, p), n < 32 ? n : 32, i);
      }
      shmd_tx_abort(tx);
      continue;
    }
    if (shmd_tx_lock(tx, tp))
      _exit(4);
    uint32_t i = (uint32_t)ts_below(&r, SLOTS);
    struct slot *sl = &t->slot[i];
    if (sl->ptr == 0) {
      uint64_t k = ts_below(&r, 100);
      size_t n = k < 90 ? 1 + ts_below(&r, 600) : 1 + ts_below(&r, 30000);
      shmd_ptr_t p;
      int rc = shmd_tx_alloc(tx, n, &p);
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
}

struct carg {
  shmd_store_t *s;
  shmd_ptr_t tp;
  uint64_t seed;
};

static void *crash_thread(void *arg) {
  struct carg *a = arg;
  crash_thread_loop(a->s, a->tp, a->seed);
  return NULL;
}

/* A process of two workload threads (on the store the harness opened); returns when the table
 * says stop (survivors only). */
static int crash_process(ts_crash_child_t *cc) {
  shmd_store_t *c = cc->s;
  shmd_ptr_t tp;
  if (shmd_root_get(c, "table", &tp))
    _exit(2);
  pthread_t th[2];
  struct carg a[2] = {{c, tp, cc->seed}, {c, tp, cc->seed * 3 + 1}};
  for (int i = 0; i < 2; i++)
    pthread_create(&th[i], NULL, crash_thread, &a[i]);
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  shmd_close(c);
  return 0;
}

static ts_crash_spec_t process_spec(const char *what, const char *name, uint64_t seed) {
  return (ts_crash_spec_t){.what = what, .fn = crash_process, .seed = seed, .store = name,
                           .opts = ts_opts(4 << 20, 4 << 20)};
}

static uint64_t table_held(shmd_store_t *s, shmd_ptr_t tp) {
  struct table *t = shmd_resolve(s, tp);
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
  return held;
}

Test(heaps, crash_kill_process_with_full_caches) {
  shmd_store_t *s = ts_open("k", 4 << 20, 4 << 20);
  shmd_ptr_t tp;
  cr_assert_eq(shmd_calloc(s, 1, sizeof(struct table), &tp), 0);
  cr_assert_eq(shmd_root_set(s, "table", tp), 0);
  struct table *t = shmd_resolve(s, tp);
  ts_crash_t tc;
  ts_crash_begin(&tc, "crash_kill_process_with_full_caches");
  uint64_t seed = tc.seed;
  int rounds = getenv("SHMDICT_CRASH_KILLS") ? atoi(getenv("SHMDICT_CRASH_KILLS")) : 30;
  uint64_t adopted_seen = 0, own = stats(s).heap_cached_objs; /* this thread's cache (the table's class) */
  for (int k = 0; k < rounds; k++) {
    __atomic_store_n(&t->stop, 0, __ATOMIC_RELEASE);
    ts_crash_spec_t sp = process_spec("the victim", "k", seed + 2 * (uint64_t)k);
    sp.kill_lo_us = 20000; /* killed 20 to 80 ms after its fork */
    sp.kill_hi_us = 20000 + 60000 - 1;
    sp.end = TS_END_KILLED;
    ts_crash_proc_t *victim = ts_crash_start(&tc, &sp);
    sp = process_spec("the survivor", "k", seed + 2 * (uint64_t)k + 1);
    sp.end = TS_END_EXIT0;
    ts_crash_proc_t *survivor = ts_crash_start(&tc, &sp);
    ts_crash_finish(victim, NULL);
    /* The survivor goes on (and adopts the victim's lanes if it waits for a lock they held). */
    ts_sleep_us(10000 + ts_below(&tc.rng, 20000));
    __atomic_store_n(&t->stop, 1, __ATOMIC_RELEASE);
    ts_crash_finish(survivor, NULL);
    shmd_stats_t before = stats(s);
    ts_crash_check(s, TS_CHECK_RECOVER, NULL);
    shmd_stats_t st = stats(s);
    adopted_seen += before.heap_cached_objs - st.heap_cached_objs;
    ts_crash_check(s, TS_CHECK_ALLOC, NULL);
    cr_assert_eq(st.heap_cached_objs, own, "every heap of the ended processes was returned");
    cr_assert_eq(t->lock.word, 0);
    uint64_t held = table_held(s, tp);
    cr_assert_eq(st.allocated_bytes, held, "round %d: allocated bytes %llu != held %llu (leak or double free)", k,
                 (unsigned long long)st.allocated_bytes, (unsigned long long)held);
  }
  ts_crash_end(&tc);
  cr_log_info("objects returned by adoption in the parent's recover: %llu", (unsigned long long)adopted_seen);
  shmd_close(s);
}

/* Crash points inside the heap code, each hit at a random occurrence, then recovery. */
Test(heaps, crash_at_heap_points) {
  static const char *points[] = {"heap.refill", "heap.flush", "heap.crossing", "heap.create", "depot.put", "depot.take",
                                 "alloc.step.before_commit", "tx.committed"};
  shmd_store_t *s = ts_open("hp", 4 << 20, 4 << 20);
  shmd_ptr_t tp;
  cr_assert_eq(shmd_calloc(s, 1, sizeof(struct table), &tp), 0);
  cr_assert_eq(shmd_root_set(s, "table", tp), 0);
  ts_crash_t t;
  ts_crash_begin(&t, "crash_at_heap_points");
  uint64_t seed = t.seed;
  int reached = 0, runs = 0;
  uint64_t own = stats(s).heap_cached_objs;
  for (size_t i = 0; i < sizeof points / sizeof points[0]; i++) {
    for (int rep = 0; rep < 6; rep++) {
      char env[128];
      snprintf(env, sizeof env, "%s:%llu", points[i], (unsigned long long)(1 + ts_below(&t.rng, 300)));
      /* Threads run until the crash point kills them; stopped after a second if it never comes. */
      ts_crash_spec_t sp = process_spec("the workload", "hp", seed + i * 13 + (uint64_t)rep);
      sp.point = env;
      sp.kill_after_us = 1000000;
      sp.end = TS_END_KILLED;
      ts_crash_res_t res;
      ts_crash_run(&t, &sp, &res);
      reached += res.at_point;
      runs++;
      ts_crash_check(s, TS_CHECK_RECOVER | TS_CHECK_ALLOC, NULL);
      shmd_stats_t st = stats(s);
      cr_assert_eq(st.heap_cached_objs, own);
      uint64_t held = table_held(s, tp);
      cr_assert_eq(st.allocated_bytes, held, "after %s: allocated %llu != held %llu", env,
                   (unsigned long long)st.allocated_bytes, (unsigned long long)held);
    }
  }
  ts_crash_end(&t);
  cr_log_info("%d of %d runs died at their crash point", reached, runs);
  cr_assert_gt(reached, runs / 3);
  shmd_close(s);
}

/* ---- thread exit, and thousands of short-lived threads ---- */

struct tharg {
  shmd_store_t *s;
  int keep;          /* objects left allocated at exit (handed to the main thread) */
  shmd_ptr_t kept[8];
  int ok;
};

static void *short_thread(void *arg) {
  struct tharg *a = arg;
  shmd_ptr_t p[64];
  a->ok = 1;
  for (int i = 0; i < 64; i++)
    if (shmd_alloc(a->s, 16 + (size_t)i * 24, &p[i]) != 0)
      a->ok = 0;
  for (int i = a->keep; i < 64; i++)
    if (shmd_free(a->s, p[i]) != 0)
      a->ok = 0;
  for (int i = 0; i < a->keep; i++)
    a->kept[i] = p[i];
  return NULL; /* exits without freeing the kept objects, and with a full cache */
}

Test(heaps, thousands_of_short_lived_threads) {
  shmd_options_t o = ts_opts(8 << 20, 8 << 20);
  o.max_threads = 16;
  shmd_store_t *s;
  cr_assert_eq(shmd_open("many", &o, &s), 0);
  enum { TOTAL = 3000, AT_ONCE = 6 };
  uint64_t kept_bytes = 0;
  shmd_ptr_t *kept = calloc(TOTAL * 8, sizeof *kept);
  size_t nkept = 0;
  for (int done = 0; done < TOTAL; done += AT_ONCE) {
    pthread_t th[AT_ONCE];
    struct tharg a[AT_ONCE];
    for (int i = 0; i < AT_ONCE; i++) {
      a[i] = (struct tharg){s, (done + i) % 3, {{0}}, 0};
      cr_assert_eq(pthread_create(&th[i], NULL, short_thread, &a[i]), 0);
    }
    for (int i = 0; i < AT_ONCE; i++) {
      pthread_join(th[i], NULL);
      cr_assert(a[i].ok, "thread %d failed: %s", done + i, shmd_errdetail());
      for (int j = 0; j < a[i].keep; j++) {
        kept[nkept++] = a[i].kept[j];
        kept_bytes += shmd_usable_size(s, a[i].kept[j]);
      }
    }
  }
  shmd_stats_t st = stats(s);
  cr_assert_leq(st.heaps, 16, "at most one heap per lane: %llu", (unsigned long long)st.heaps);
  cr_assert_eq(st.heap_cached_objs, 0, "every thread returned its cache at exit");
  cr_assert_eq(st.allocated_bytes, kept_bytes);
  check_ok(s);
  /* Objects a thread left allocated are the program's: freed here, by another thread. */
  for (size_t i = 0; i < nkept; i++)
    cr_assert_eq(shmd_free(s, kept[i]), 0);
  cr_assert_eq(stats(s).allocated_bytes, 0);
  check_ok(s);
  free(kept);
  shmd_close(s);
}

/* A thread killed with a full cache (its whole process dies) while others keep allocating in
 * the same process is adopted by shmd_recover() of a later opener. */
static int alloc_free_no_close(ts_crash_child_t *cc) {
  shmd_ptr_t p[200];
  for (int i = 0; i < 200; i++)
    if (shmd_alloc(cc->s, 16 + (size_t)(i % 40) * 16, &p[i]))
      return 3;
  for (int i = 0; i < 200; i++)
    if (shmd_free(cc->s, p[i]))
      return 4;
  return 0; /* no close, no thread exit: the lane dies with the process */
}

Test(heaps, crash_exit_without_free_in_child) {
  shmd_store_t *s = ts_open("ef", 4 << 20, 4 << 20);
  ts_crash_run(NULL,
               &(ts_crash_spec_t){.what = "the child", .fn = alloc_free_no_close, .store = "ef",
                                  .opts = ts_opts(4 << 20, 4 << 20), .end = TS_END_EXIT0},
               NULL);
  shmd_stats_t st = stats(s);
  cr_assert_gt(st.heap_cached_objs, 0, "the dead process's cache is still there");
  cr_assert_eq(st.allocated_bytes, 0);
  cr_assert_geq(shmd_recover(s), 1);
  st = stats(s);
  cr_assert_eq(st.heap_cached_objs, 0, "adopted");
  check_ok(s);
  shmd_close(s);
}

/* ---- the depot: objects freed by one thread reach another thread's allocations ---- */

struct freer {
  shmd_store_t *s;
  shmd_ptr_t *p;
  int n;
  int ok;
};

static void *free_all(void *arg) {
  struct freer *f = arg;
  f->ok = 1;
  for (int i = 0; i < f->n; i++)
    if (shmd_free(f->s, f->p[i]) != 0)
      f->ok = 0;
  return NULL; /* its heap is returned to the slabs at exit; the depot keeps what it was given */
}

static void free_in_thread(shmd_store_t *s, shmd_ptr_t *p, int n) {
  struct freer f = {s, p, n, 0};
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, free_all, &f), 0);
  cr_assert_eq(pthread_join(th, NULL), 0);
  cr_assert(f.ok);
}

Test(heaps, depot_carries_remote_frees) {
  shmd_store_t *s = ts_open("dp", 8 << 20, 8 << 20);
  enum { N = 2000 };
  shmd_ptr_t *p = calloc(N, sizeof *p);
  for (int i = 0; i < N; i++)
    cr_assert_eq(shmd_alloc(s, 48, &p[i]), 0);
  uint64_t own = stats(s).heap_cached_objs; /* left in this thread's stack by its last refill */
  free_in_thread(s, p, N);
  shmd_stats_t st = stats(s);
  cr_assert_gt(st.depot_cached_objs, 0, "the freeing thread's flushes went to the depot");
  cr_assert_eq(st.heap_cached_objs, own, "the freeing thread's heap went back at its exit");
  cr_assert_eq(st.allocated_bytes, 0, "objects in the depot are free");
  cr_assert_eq(st.slab_bytes, st.slab_free_bytes + st.slab_overhead_bytes + st.small_bytes_inuse);
  check_ok(s);
  /* Empty this thread's stack of the class; its next allocation then takes a batch from the
   * depot: objects the other thread freed. */
  shmd_ptr_t *mine = calloc(own + 1, sizeof *mine);
  for (uint64_t i = 0; i < own; i++)
    cr_assert_eq(shmd_alloc(s, 48, &mine[i]), 0);
  cr_assert_eq(stats(s).depot_cached_objs, st.depot_cached_objs);
  shmd_ptr_t q;
  cr_assert_eq(shmd_alloc(s, 48, &q), 0);
  shmd_stats_t st2 = stats(s);
  uint64_t moved = st.depot_cached_objs - st2.depot_cached_objs;
  cr_assert_gt(moved, 0, "the refill came from the depot");
  cr_assert_eq(st2.heap_cached_objs, moved - 1);
  int found = 0;
  for (int i = 0; i < N && !found; i++)
    found = p[i].v == q.v;
  cr_assert(found, "the object came from the other thread's frees");
  cr_assert_eq(st2.allocated_bytes, (own + 1) * shmd_good_size(48));
  check_ok(s);
  cr_assert_eq(shmd_free(s, q), 0);
  for (uint64_t i = 0; i < own; i++)
    cr_assert_eq(shmd_free(s, mine[i]), 0);
  free(mine);
  free(p);
  shmd_close(s);
}

/* A store that cannot grow: free objects parked in the depot (and the thread's heap) are returned
 * before an allocation answers ENOSPC, so the slabs they kept busy can serve large blocks. */
static int count_blocks(shmd_store_t *s, size_t size, shmd_ptr_t *out, int cap) {
  int n = 0;
  while (n < cap && shmd_alloc(s, size, &out[n]) == 0)
    n++;
  return n;
}

Test(heaps, depot_is_drained_when_the_store_is_full) {
  shmd_options_t o = ts_opts(4 << 20, 4 << 20);
  o.max_store_bytes = 4 << 20;
  shmd_store_t *s;
  cr_assert_eq(shmd_open("full", &o, &s), 0);
  enum { CAP = 200000 };
  shmd_ptr_t *p = calloc(CAP, sizeof *p);
  /* Create the heaps (main thread, a freeing thread) and the depot first, so that the two counts
   * of large blocks below see the same metadata. */
  shmd_ptr_t w;
  cr_assert_eq(shmd_alloc(s, 64, &w), 0);
  free_in_thread(s, &w, 1);
  int k0 = count_blocks(s, 64 << 10, p, CAP);
  cr_assert_gt(k0, 10);
  for (int i = 0; i < k0; i++)
    cr_assert_eq(shmd_free(s, p[i]), 0);
  /* Fill the store with small objects; another thread frees them all. */
  int n = count_blocks(s, 64, p, CAP);
  cr_assert_gt(n, 1000);
  free_in_thread(s, p, n);
  cr_assert_gt(stats(s).depot_cached_objs, 0);
  check_ok(s);
  int k1 = count_blocks(s, 64 << 10, p, CAP);
  shmd_stats_t st = stats(s);
  cr_log_info("64 KiB blocks: %d on the fresh store, %d after the small objects were freed", k0, k1);
  cr_assert_eq(st.depot_cached_objs, 0, "drained before ENOSPC");
  cr_assert_geq(k1, k0 - 1, "at most one empty slab stays with its class");
  for (int i = 0; i < k1; i++)
    cr_assert_eq(shmd_free(s, p[i]), 0);
  check_ok(s);
  free(p);
  shmd_close(s);
}
