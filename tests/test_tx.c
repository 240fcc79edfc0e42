/* SPDX-License-Identifier: MIT */
/*
 * Transactions larger than a lane: more held locks, reservations, deferred frees and undo words
 * than the lane holds in place, continued in extension blocks (segments/lane.c, "Extension
 * blocks"). Checks rollback and commit, running out of store space, and SIGKILL at every step of
 * the growth and of the commit (crash_ tests fork). After every kill: the store holds exactly one
 * generation, the allocator's check passes and the allocated bytes are exactly what the data
 * owns, so no extension block and no reservation leaked.
 */
#include "support.h"

#include <pthread.h>

TestSuite(tx, .init = ts_init, .fini = ts_fini);

/* The control block: one generation of everything a big transaction rewrites. */
#define NWORDS 5000u /* undo words: more than the default 2048 in the lane */
#define NBLK 700u    /* allocations and frees per generation: more than 128 and 512 */
#define NLOCK 100u   /* locks: more than 32 */

typedef struct {
  uint64_t gen;
  uint64_t blk[NBLK];
  uint64_t words[NWORDS];
  shmd_lock_t locks[NLOCK];
} ctl_t;

static size_t blk_size(uint64_t gen, unsigned j) { return 16 + (size_t)((gen * 7 + j) % 9) * 40; }

static shmd_ptr_t ctl_setup(shmd_store_t *s) {
  shmd_ptr_t c;
  cr_assert_eq(shmd_calloc(s, 1, sizeof(ctl_t), &c), 0);
  cr_assert_eq(shmd_root_set(s, "ctl", c), 0);
  return c;
}

/* One generation: every lock, every word, every block replaced. Returns the first failure. */
static int big_tx(shmd_store_t *s, shmd_ptr_t cp, uint64_t gen, int commit) {
  ctl_t *c = shmd_resolve(s, cp);
  shmd_tx_t *tx;
  int rc = shmd_tx_begin(s, &tx);
  if (rc)
    return rc;
  for (unsigned i = 0; i < NLOCK && rc == 0; i++)
    rc = shmd_tx_lock(tx, shmd_ptr_add(cp, offsetof(ctl_t, locks) + i * sizeof(shmd_lock_t)));
  if (rc == 0)
    rc = shmd_tx_set64(tx, &c->gen, gen);
  for (unsigned i = 0; i < NWORDS && rc == 0; i++)
    rc = shmd_tx_set64(tx, &c->words[i], gen);
  for (unsigned j = 0; j < NBLK && rc == 0; j++) {
    shmd_ptr_t nb;
    if (c->blk[j] != 0 && (rc = shmd_tx_free(tx, (shmd_ptr_t){c->blk[j]})))
      break;
    if ((rc = shmd_tx_alloc(tx, blk_size(gen, j), &nb)))
      break;
    *(uint64_t *)shmd_resolve(s, nb) = gen;
    rc = shmd_tx_set64(tx, &c->blk[j], nb.v);
  }
  if (rc || !commit) {
    shmd_tx_abort(tx);
    return rc;
  }
  return shmd_tx_commit(tx);
}

/* The store holds generation `gen` exactly, owns nothing else, and passes the checks. */
static void verify(shmd_store_t *s, shmd_ptr_t cp, uint64_t gen) {
  cr_assert_eq(shmd_alloc_check(s), 0, "alloc check: %s", shmd_errdetail());
  ctl_t *c = shmd_resolve(s, cp);
  cr_assert_eq(c->gen, gen);
  uint64_t bytes = shmd_usable_size(s, cp);
  for (unsigned i = 0; i < NWORDS; i++)
    cr_assert_eq(c->words[i], gen, "word %u is %llu, not %llu", i, (unsigned long long)c->words[i],
                 (unsigned long long)gen);
  for (unsigned j = 0; j < NBLK; j++) {
    if (gen == 0) {
      cr_assert_eq(c->blk[j], 0);
      continue;
    }
    shmd_ptr_t b = {c->blk[j]};
    cr_assert_eq(*(uint64_t *)shmd_resolve(s, b), gen);
    cr_assert_eq(shmd_usable_size(s, b), shmd_good_size(blk_size(gen, j)));
    bytes += shmd_usable_size(s, b);
  }
  for (unsigned i = 0; i < NLOCK; i++)
    cr_assert_eq(c->locks[i].word, 0, "lock %u still held", i);
  shmd_stats_t st;
  cr_assert_eq(shmd_stats(s, &st), 0);
  cr_assert_eq(st.allocated_bytes, bytes, "allocated %llu bytes, the data owns %llu: a leak",
               (unsigned long long)st.allocated_bytes, (unsigned long long)bytes);
}

Test(tx, big_abort_restores_everything) {
  shmd_store_t *s = ts_open("a", 8 << 20, 8 << 20);
  shmd_ptr_t cp = ctl_setup(s);
  cr_assert_eq(big_tx(s, cp, 1, 1), 0, "%s", shmd_errdetail());
  verify(s, cp, 1);
  cr_assert_eq(big_tx(s, cp, 2, 0), 0);
  verify(s, cp, 1);
  cr_assert_eq(big_tx(s, cp, 2, 1), 0);
  verify(s, cp, 2);
  shmd_close(s);
}

Test(tx, room_and_reserve) {
  shmd_store_t *s = ts_open("r", 8 << 20, 8 << 20);
  shmd_tx_t *tx;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  size_t w0, a0, f0, w1, a1, f1;
  shmd_tx_room(tx, &w0, &a0, &f0);
  cr_assert_eq(shmd_tx_reserve(tx, w0, a0, f0), 0); /* fits in place: nothing to do */
  cr_assert_eq(shmd_tx_reserve(tx, w0 + 10000, a0 + 1000, f0 + 3000), 0);
  shmd_tx_room(tx, &w1, &a1, &f1);
  cr_assert_geq(w1, w0 + 10000);
  cr_assert_geq(a1, a0 + 1000);
  cr_assert_geq(f1, f0 + 3000);
  cr_assert_eq(shmd_tx_reserve(tx, (size_t)1 << 40, 0, 0), SHMD_ETXFULL);
  cr_assert_eq(shmd_tx_commit(tx), 0);
  /* The block went with the transaction. */
  shmd_stats_t st;
  cr_assert_eq(shmd_stats(s, &st), 0);
  cr_assert_eq(st.allocated_bytes, 0);
  cr_assert_eq(shmd_alloc_check(s), 0);
  shmd_close(s);
}

Test(tx, full_store_fails_cleanly) {
  shmd_options_t o = ts_opts(4 << 20, 4 << 20);
  o.max_store_bytes = 4 << 20;
  shmd_store_t *s;
  cr_assert_eq(shmd_open("f", &o, &s), 0);
  shmd_ptr_t cp = ctl_setup(s);
  /* Fill the store with 64 KiB blocks until it refuses. */
  shmd_ptr_t fill[128];
  int n = 0;
  while (n < 128 && shmd_alloc(s, 64 << 10, &fill[n]) == 0)
    n++;
  cr_assert_lt(n, 128);
  shmd_tx_t *tx;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  ctl_t *c = shmd_resolve(s, cp);
  int rc = 0;
  unsigned i;
  for (i = 0; i < NWORDS && rc == 0; i++)
    rc = shmd_tx_set64(tx, &c->words[i], 7);
  /* The lane's own 2048 entries worked; then growth needed space there was none of, unless the
   * slab leftovers happened to fit the first block. Either way: a status, and a clean abort. */
  cr_assert(rc == 0 || rc == SHMD_ENOSPC, "%s", shmd_strerror(rc));
  cr_assert_geq(i, 2048);
  shmd_tx_abort(tx);
  for (unsigned k = 0; k < NWORDS; k++)
    cr_assert_eq(c->words[k], 0);
  for (int k = 0; k < n; k++)
    cr_assert_eq(shmd_free(s, fill[k]), 0);
  verify(s, cp, 0);
  cr_assert_eq(big_tx(s, cp, 1, 1), 0, "with the space back it works: %s", shmd_errdetail());
  verify(s, cp, 1);
  shmd_close(s);
}

static void *thread_big(void *arg) {
  shmd_store_t *s = arg;
  shmd_ptr_t cp;
  if (shmd_root_get(s, "ctl", &cp))
    return (void *)1;
  shmd_tx_t *tx;
  ctl_t *c = shmd_resolve(s, cp);
  if (shmd_tx_begin(s, &tx))
    return (void *)2;
  for (unsigned i = 0; i < NWORDS; i++)
    if (shmd_tx_set64(tx, &c->words[i], 99))
      return (void *)3;
  return NULL; /* exits inside the transaction: the thread's end aborts it */
}

Test(tx, thread_exit_mid_big_tx_rolls_back) {
  shmd_store_t *s = ts_open("t", 8 << 20, 8 << 20);
  shmd_ptr_t cp = ctl_setup(s);
  pthread_t th;
  void *ret;
  pthread_create(&th, NULL, thread_big, s);
  pthread_join(th, &ret);
  cr_assert_null(ret);
  verify(s, cp, 0);
  shmd_close(s);
}

/* ---- crashes ---- */

/* Child: generations from+1, from+2, ... until killed or `count` are done. */
void shmd__crash_init(void); /* segments/crash.c: arms SHMDICT_CRASH_POINT (test-only) */

static void crash_child(const char *name, const char *point, uint64_t from, int count) {
  shmd_options_t o = ts_opts(8 << 20, 8 << 20);
  shmd_store_t *s;
  if (shmd_open(name, &o, &s))
    _exit(3);
  shmd_ptr_t cp;
  if (shmd_root_get(s, "ctl", &cp))
    _exit(4);
  /* Armed only now, so that what opening does (recovering the previous child) does not count. */
  if (point != NULL) {
    setenv("SHMDICT_CRASH_POINT", point, 1);
    shmd__crash_init();
  }
  for (int k = 1; k <= count; k++)
    if (big_tx(s, cp, from + (uint64_t)k, 1))
      _exit(5);
  _exit(0);
}

/* After a child died: recover, then the store holds one whole generation, nothing else. */
static uint64_t after_kill(shmd_store_t *s, shmd_ptr_t cp, uint64_t before, int count) {
  cr_assert_geq(shmd_recover(s), 0);
  ctl_t *c = shmd_resolve(s, cp);
  uint64_t g = c->gen;
  cr_assert(g >= before && g <= before + (uint64_t)count, "generation %llu after %llu",
            (unsigned long long)g, (unsigned long long)before);
  verify(s, cp, g);
  return g;
}

Test(tx, crash_at_every_growth_and_commit_point) {
  static const char *points[] = {
      "tx.ext.allocated", "tx.ext.copied",   "tx.ext.switched",      "tx.ext.freed_old",
      "tx.before_commit", "tx.committed",    "tx.frees_done",        "free.logged",
      "alloc.small.logged", "alloc.large.logged", "alloc.step.after_commit",
  };
  shmd_store_t *s = ts_open("c", 8 << 20, 8 << 20);
  shmd_ptr_t cp = ctl_setup(s);
  uint64_t seed = ts_seed("crash_at_every_growth_and_commit_point");
  ts_rng_t r = {seed};
  uint64_t gen = 0;
  int died = 0, runs = 0;
  for (size_t i = 0; i < sizeof points / sizeof points[0]; i++) {
    for (int rep = 0; rep < 3; rep++) {
      char env[96];
      /* Growth points fire a few times per transaction, commit points once, the allocator's
       * hundreds of times. */
      uint64_t max = strncmp(points[i], "tx.ext.", 7) == 0 ? 12 : strncmp(points[i], "tx.", 3) == 0 ? 3 : 1500;
      snprintf(env, sizeof env, "%s:%llu", points[i], (unsigned long long)(1 + ts_below(&r, max)));
      pid_t pid = fork();
      if (pid == 0)
        crash_child("c", env, gen, 3);
      int st = ts_wait(pid);
      cr_assert(st == 0 || st == 128 + SIGKILL, "child at %s ended with %d", env, st);
      died += st == 128 + SIGKILL;
      runs++;
      gen = after_kill(s, cp, gen, 3);
    }
  }
  cr_log_info("%d of %d runs died at their point", died, runs);
  cr_assert_gt(died, runs / 2);
  shmd_close(s);
}

Test(tx, crash_at_random_moments) {
  shmd_store_t *s = ts_open("k", 8 << 20, 8 << 20);
  shmd_ptr_t cp = ctl_setup(s);
  uint64_t seed = ts_seed("crash_at_random_moments");
  ts_rng_t r = {seed};
  uint64_t gen = 0;
  for (int k = 0; k < 25; k++) {
    pid_t pid = fork();
    if (pid == 0)
      crash_child("k", NULL, gen, 1000000);
    struct timespec ts = {0, (long)(1000000 + ts_below(&r, 30000000))};
    nanosleep(&ts, NULL);
    kill(pid, SIGKILL);
    cr_assert_eq(ts_wait(pid), 128 + SIGKILL);
    gen = after_kill(s, cp, gen, 1000000);
  }
  cr_assert_gt(gen, 0, "no generation ever committed");
  shmd_close(s);
}

/* A recoverer killed while it frees a dead lane's blocks (extension included) leaves work that the
 * next one finishes exactly once. */
Test(tx, crash_during_recovery_of_a_big_tx) {
  shmd_store_t *s = ts_open("rr", 8 << 20, 8 << 20);
  shmd_ptr_t cp = ctl_setup(s);
  uint64_t gen = 0;
  int recover_kills = 0;
  for (int k = 0; k < 10; k++) {
    pid_t pid = fork();
    if (pid == 0)
      crash_child("rr", k % 2 ? "tx.before_commit" : "tx.committed", gen, 2);
    cr_assert_eq(ts_wait(pid), 128 + SIGKILL);
    pid = fork();
    if (pid == 0) {
      char env[64];
      snprintf(env, sizeof env, "free.logged:%d", 1 + k * 37);
      setenv("SHMDICT_CRASH_POINT", env, 1);
      shmd_options_t o = ts_opts(8 << 20, 8 << 20);
      shmd_store_t *c;
      if (shmd_open("rr", &o, &c) == 0)
        shmd_recover(c);
      _exit(0);
    }
    recover_kills += ts_wait(pid) == 128 + SIGKILL;
    gen = after_kill(s, cp, gen, 2);
  }
  cr_log_info("%d recoverers were killed mid-recovery", recover_kills);
  cr_assert_gt(recover_kills, 3);
  shmd_close(s);
}
