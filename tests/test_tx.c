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

/* shmd_tx_end(): commit for rc >= 0; for rc < 0 an abort only when the level changed something
 * (itself or through levels nested in it), so a failure that changed nothing leaves the caller's
 * transaction alive. */
Test(tx, end_aborts_only_a_level_that_changed_something) {
  shmd_store_t *s = ts_open("e", 8 << 20, 8 << 20);
  shmd_ptr_t cp;
  cr_assert_eq(shmd_calloc(s, 1, 64, &cp), 0);
  uint64_t *w = shmd_resolve(s, cp);
  shmd_tx_t *tx, *in, *in2;
  shmd_ptr_t b;

  /* An inner level that changed nothing fails: the outer commits its own change. */
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_tx_set64(tx, &w[0], 1), 0);
  cr_assert_eq(shmd_tx_begin(s, &in), 0);
  cr_assert_eq(shmd_tx_end(in, SHMD_ENOTFOUND), SHMD_ENOTFOUND);
  cr_assert_eq(shmd_tx_depth(s), 1);
  cr_assert_eq(shmd_tx_end(tx, 0), 0);
  cr_assert_eq(w[0], 1);

  /* An inner level that logged a word fails: the whole transaction is rolled back. */
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_tx_set64(tx, &w[0], 2), 0);
  cr_assert_eq(shmd_tx_begin(s, &in), 0);
  cr_assert_eq(shmd_tx_set64(in, &w[1], 2), 0);
  cr_assert_eq(shmd_tx_end(in, SHMD_ENOSPC), SHMD_ENOSPC);
  cr_assert_eq(shmd_tx_end(tx, 0), SHMD_EABORTED);
  cr_assert_eq(w[0], 1);
  cr_assert_eq(w[1], 0);

  /* A change by a committed level nested in it counts for the level around it. */
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_tx_begin(s, &in), 0);
  cr_assert_eq(shmd_tx_begin(s, &in2), 0);
  cr_assert_eq(shmd_tx_alloc(in2, 32, &b), 0);
  cr_assert_eq(shmd_tx_end(in2, 0), 0);
  cr_assert_eq(shmd_tx_end(in, SHMD_EINVAL), SHMD_EINVAL);
  cr_assert_eq(shmd_tx_end(tx, 0), SHMD_EABORTED);

  /* A level's change does not count for a level begun after it ended: the second inner level
   * changed nothing, so its failure leaves the first one's free in place. */
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_tx_begin(s, &in), 0);
  cr_assert_eq(shmd_tx_alloc(in, 32, &b), 0);
  cr_assert_eq(shmd_tx_set64(in, &w[2], b.v), 0);
  cr_assert_eq(shmd_tx_end(in, 0), 0);
  cr_assert_eq(shmd_tx_begin(s, &in), 0);
  cr_assert_eq(shmd_tx_end(in, SHMD_ENOTFOUND), SHMD_ENOTFOUND);
  cr_assert_eq(shmd_tx_end(tx, 7), 7); /* rc >= 0 commits and comes back */
  cr_assert_eq(w[2], b.v);
  cr_assert_eq(shmd_tx_depth(s), 0);
  cr_assert_eq(shmd_tx_end(tx, 0), SHMD_EINVAL); /* no level open */
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

/* What a writer does: generations from+1, from+2, ... until killed or `count` are done, on the
 * control block cp (the parent's root "ctl": the child looks nothing up, as a root lookup is a
 * transaction that its armed crash point would count). */
typedef struct {
  shmd_ptr_t cp;
  uint64_t from;
  int count;
} gens_t;

static int crash_child(ts_crash_child_t *cc) {
  const gens_t *g = cc->arg;
  shmd_ptr_t cp = g->cp;
  for (int k = 1; k <= g->count; k++)
    if (big_tx(cc->s, cp, g->from + (uint64_t)k, 1))
      return 5;
  return 0;
}

/* A writer on store `name`, its crash point armed only once the store is open, so that what
 * opening does (recovering the previous child) does not count. */
static ts_crash_spec_t writer(const char *name, const char *point, const gens_t *g) {
  return (ts_crash_spec_t){.what = "the writer", .fn = crash_child, .arg = (void *)g, .store = name,
                           .opts = ts_opts(8 << 20, 8 << 20), .point = point, .arm_when_open = 1};
}

/* A recoverer: opens store `name` with `point` armed (opening recovers every dead lane), then
 * recovers again; ends with 0 if it was not killed. */
static int recover_child(ts_crash_child_t *cc) {
  (void)shmd_recover(cc->s);
  return 0;
}

static ts_crash_spec_t recoverer(const char *name, const char *point) {
  return (ts_crash_spec_t){.what = "the recoverer", .fn = recover_child, .store = name,
                           .opts = ts_opts(8 << 20, 8 << 20), .point = point};
}

/* After a child died: recover, then the store holds one whole generation, nothing else. */
static uint64_t after_kill(shmd_store_t *s, shmd_ptr_t cp, uint64_t before, int count) {
  ts_crash_check(s, TS_CHECK_RECOVER, NULL);
  ctl_t *c = shmd_resolve(s, cp);
  uint64_t g = c->gen;
  cr_assert(g >= before && g <= before + (uint64_t)count, "generation %llu after %llu (%s)",
            (unsigned long long)g, (unsigned long long)before, ts_crash_where());
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
  ts_crash_t t;
  ts_crash_begin(&t, "crash_at_every_growth_and_commit_point");
  uint64_t gen = 0;
  int died = 0, runs = 0;
  for (size_t i = 0; i < sizeof points / sizeof points[0]; i++) {
    for (int rep = 0; rep < 3; rep++) {
      char env[96];
      /* Growth points fire a few times per transaction, commit points once, the allocator's
       * hundreds of times. */
      uint64_t max = strncmp(points[i], "tx.ext.", 7) == 0 ? 12 : strncmp(points[i], "tx.", 3) == 0 ? 3 : 1500;
      snprintf(env, sizeof env, "%s:%llu", points[i], (unsigned long long)(1 + ts_below(&t.rng, max)));
      gens_t g = {cp, gen, 3};
      ts_crash_spec_t sp = writer("c", env, &g);
      ts_crash_res_t res;
      ts_crash_run(&t, &sp, &res); /* exit 0 or killed at its point */
      died += res.at_point;
      runs++;
      gen = after_kill(s, cp, gen, 3);
    }
  }
  ts_crash_end(&t);
  cr_log_info("%d of %d runs died at their point", died, runs);
  cr_assert_gt(died, runs / 2);
  shmd_close(s);
}

Test(tx, crash_at_random_moments) {
  shmd_store_t *s = ts_open("k", 8 << 20, 8 << 20);
  shmd_ptr_t cp = ctl_setup(s);
  ts_crash_t t;
  ts_crash_begin(&t, "crash_at_random_moments");
  uint64_t gen = 0;
  for (int k = 0; k < 25; k++) {
    gens_t g = {cp, gen, 1000000};
    ts_crash_spec_t sp = writer("k", NULL, &g);
    sp.kill_lo_us = 1000; /* killed 1 to 31 ms after its fork: it must not end before */
    sp.kill_hi_us = 1000 + 30000 - 1;
    sp.end = TS_END_KILLED;
    ts_crash_run(&t, &sp, NULL);
    gen = after_kill(s, cp, gen, 1000000);
  }
  ts_crash_end(&t);
  cr_assert_gt(gen, 0, "no generation ever committed");
  shmd_close(s);
}

/* A recoverer killed while it frees a dead lane's blocks (extension included) leaves work that the
 * next one finishes exactly once. */
Test(tx, crash_during_recovery_of_a_big_tx) {
  shmd_store_t *s = ts_open("rr", 8 << 20, 8 << 20);
  shmd_ptr_t cp = ctl_setup(s);
  ts_crash_t t;
  ts_crash_begin(&t, "crash_during_recovery_of_a_big_tx");
  uint64_t gen = 0;
  int recover_kills = 0;
  for (int k = 0; k < 10; k++) {
    gens_t g = {cp, gen, 2};
    ts_crash_spec_t sp = writer("rr", k % 2 ? "tx.before_commit" : "tx.committed", &g);
    sp.end = TS_END_KILLED;
    ts_crash_run(&t, &sp, NULL);
    char env[64];
    snprintf(env, sizeof env, "free.logged:%d", 1 + k * 37);
    ts_crash_res_t res;
    sp = recoverer("rr", env);
    ts_crash_run(&t, &sp, &res);
    recover_kills += res.killed;
    gen = after_kill(s, cp, gen, 2);
  }
  ts_crash_end(&t);
  cr_log_info("%d recoverers were killed mid-recovery", recover_kills);
  cr_assert_gt(recover_kills, 3);
  shmd_close(s);
}

/* ---- a rollback cut short ----
 *
 * Rolling an undo log back is itself interruptible: the recoverer of a dead lane, or an owner
 * aborting its own transaction, may be killed between two restored words. The lane must then still
 * say that its log needs rolling back, so that the next recoverer restores every word; a lane
 * marked "aborting" (rolled back) before its rollback ends would leave the rest of the words with
 * their uncommitted values. The crash point "undo.word" fires after every word a rollback restores.
 */

/* How many of the control block's words hold `gen` (the pre-transaction value). */
static unsigned words_at(shmd_store_t *s, shmd_ptr_t cp, uint64_t gen) {
  ctl_t *c = shmd_resolve(s, cp);
  unsigned n = 0;
  for (unsigned i = 0; i < NWORDS; i++)
    n += c->words[i] == gen;
  return n;
}

Test(tx, crash_recoverer_killed_inside_the_rollback) {
  shmd_store_t *s = ts_open("ru", 8 << 20, 8 << 20);
  shmd_ptr_t cp = ctl_setup(s);
  cr_assert_eq(big_tx(s, cp, 1, 1), 0, "%s", shmd_errdetail());
  uint64_t gen = 1;
  /* The dead transaction's log holds about 5 700 words (5 001 control words, 700 block links), the
   * first 2 048 in the lane and the rest in its extension block, which is rolled back first: kill
   * the recoverer at the first word, around both ends of each part, and in between. */
  static const unsigned at[] = {1, 2, 350, 699, 700, 701, 1500, 2500, 3600, 3653, 3654, 3655, 4500, 5600};
  ts_crash_t t;
  ts_crash_begin(&t, "crash_recoverer_killed_inside_the_rollback");
  int partial = 0;
  for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
    gens_t g = {cp, gen, 1};
    ts_crash_spec_t sp = writer("ru", "tx.before_commit", &g);
    sp.end = TS_END_KILLED; /* it must die before its commit */
    ts_crash_run(&t, &sp, NULL);
    /* Two recoverers in a row are killed inside the rollback, the second one earlier than the
     * first got: each starts over from the whole log. */
    for (int k = 0; k < 2; k++) {
      char env[64];
      snprintf(env, sizeof env, "undo.word:%u", k == 0 ? at[i] : 1 + at[i] / 2);
      sp = recoverer("ru", env);
      sp.end = TS_END_ANY;
      ts_crash_res_t res;
      ts_crash_run(&t, &sp, &res);
      cr_assert(res.at_point,
                "%s: the recoverer was not killed: it found no rollback to do, so the lane was marked "
                "rolled back before its rollback ended", ts_crash_where());
    }
    unsigned restored = words_at(s, cp, gen);
    partial += restored > 0 && restored < NWORDS;
    cr_log_info("killed at undo word %u: %u of %u control words restored before the next recovery",
                at[i], restored, NWORDS);
    gen = after_kill(s, cp, gen, 0); /* every word back to the last committed generation */
  }
  ts_crash_end(&t);
  cr_assert_gt(partial, 3, "the recoverers were never killed with the words half restored");
  /* The store still works: a generation commits on top. */
  cr_assert_eq(big_tx(s, cp, gen + 1, 1), 0, "%s", shmd_errdetail());
  verify(s, cp, gen + 1);
  shmd_close(s);
}

/* An owner aborting its own big transaction is killed half-way through the rollback (its crash
 * point armed once its store is open). */
static int abort_child(ts_crash_child_t *cc) {
  const gens_t *g = cc->arg;
  if (big_tx(cc->s, g->cp, g->from + 1, 0))
    return 5;
  return 0;
}

Test(tx, crash_owner_killed_inside_its_abort) {
  shmd_store_t *s = ts_open("ab", 8 << 20, 8 << 20);
  shmd_ptr_t cp = ctl_setup(s);
  cr_assert_eq(big_tx(s, cp, 1, 1), 0, "%s", shmd_errdetail());
  uint64_t gen = 1;
  static const unsigned at[] = {1, 700, 701, 2000, 3653, 3654, 5000, 5600};
  ts_crash_t t;
  ts_crash_begin(&t, "crash_owner_killed_inside_its_abort");
  int partial = 0;
  for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
    char env[64];
    snprintf(env, sizeof env, "undo.word:%u", at[i]);
    gens_t g = {cp, gen, 1};
    ts_crash_run(&t,
                 &(ts_crash_spec_t){.what = "the aborting owner", .fn = abort_child, .arg = &g, .store = "ab",
                                    .opts = ts_opts(8 << 20, 8 << 20), .point = env, .arm_when_open = 1,
                                    .end = TS_END_KILLED},
                 NULL);
    unsigned restored = words_at(s, cp, gen);
    partial += restored > 0 && restored < NWORDS;
    gen = after_kill(s, cp, gen, 0);
  }
  ts_crash_end(&t);
  cr_assert_gt(partial, 2, "the owners were never killed with the words half restored");
  shmd_close(s);
}

/* A recoverer killed at a random moment while it rolls back a log of a million words. */
#define BIGW (1u << 20)

static int words_tx(shmd_store_t *s, shmd_ptr_t wp, uint64_t gen, int commit) {
  uint64_t *w = shmd_resolve(s, wp);
  shmd_tx_t *tx;
  int rc = shmd_tx_begin(s, &tx);
  if (rc)
    return rc;
  rc = shmd_tx_reserve(tx, BIGW, 0, 0);
  for (unsigned i = 0; i < BIGW && rc == 0; i++)
    rc = shmd_tx_set64(tx, &w[i], gen);
  if (rc || !commit) {
    shmd_tx_abort(tx);
    return rc;
  }
  return shmd_tx_commit(tx);
}

static unsigned big_words_at(shmd_store_t *s, shmd_ptr_t wp, uint64_t gen) {
  const uint64_t *w = shmd_resolve(s, wp);
  unsigned n = 0;
  for (unsigned i = 0; i < BIGW; i++)
    n += w[i] == gen;
  return n;
}

/* The recoverer of crash_recoverer_killed_at_random_over_a_big_log: opens the store, says it is
 * ready, and recovers when told to go. */
static int big_recoverer(ts_crash_child_t *cc) {
  ts_crash_ready(cc);
  return shmd_recover(cc->s) >= 0 ? 0 : 5;
}

/* Its writer: dies before the commit of a million logged words (armed once its store is open). */
static int big_writer(ts_crash_child_t *cc) { return words_tx(cc->s, *(const shmd_ptr_t *)cc->arg, 2, 1) ? 4 : 0; }

Test(tx, crash_recoverer_killed_at_random_over_a_big_log) {
  const uint64_t seg = 64u << 20;
  shmd_options_t o = ts_opts(seg, seg);
  shmd_store_t *s;
  cr_assert_eq(shmd_open("rb", &o, &s), 0);
  shmd_ptr_t wp;
  cr_assert_eq(shmd_calloc(s, BIGW, 8, &wp), 0);
  cr_assert_eq(shmd_root_set(s, "words", wp), 0);
  cr_assert_eq(words_tx(s, wp, 1, 1), 0, "%s", shmd_errdetail());
  ts_crash_t t;
  ts_crash_begin(&t, "crash_recoverer_killed_at_random_over_a_big_log");
  uint64_t full_us = 0, lo = 0, hi = 0; /* kills land at a random moment of [lo, hi] after "go" */
  int partial = 0, round;
  for (round = 0; round < 60 && partial < 3; round++) {
    /* The recoverer opens the store first and waits; then the writer dies with a million words
     * logged; then the recoverer is told to go and is killed after a random delay. */
    ts_crash_proc_t *rec = ts_crash_start(&t, &(ts_crash_spec_t){.what = "the recoverer", .fn = big_recoverer,
                                                                  .store = "rb", .opts = o, .ready = 1,
                                                                  .end = round == 0 ? TS_END_EXIT0
                                                                                    : TS_END_EXIT0_OR_KILLED});
    ts_crash_wait_ready(rec);
    ts_crash_run(&t,
                 &(ts_crash_spec_t){.what = "the writer", .fn = big_writer, .arg = &wp, .store = "rb", .opts = o,
                                    .point = "tx.before_commit", .arm_when_open = 1, .end = TS_END_KILLED},
                 NULL);
    ts_crash_go(rec);
    if (round == 0) {
      /* The first recovery runs to its end: it measures how long one takes. */
      ts_crash_res_t res;
      ts_crash_finish(rec, &res);
      full_us = hi = res.ran_us;
      cr_assert_eq(big_words_at(s, wp, 1), BIGW);
    } else {
      uint64_t delay = lo + ts_below(&t.rng, hi - lo + 1);
      ts_crash_kill_in(rec, delay);
      ts_crash_finish(rec, NULL);
      unsigned restored = big_words_at(s, wp, 1);
      partial += restored > 0 && restored < BIGW;
      /* A kill before the rollback began or after it ended narrows the window (on a busy machine
       * the measured recovery may be much longer than a typical one). */
      if (restored == 0)
        lo = delay;
      else if (restored == BIGW)
        hi = delay;
      if (hi <= lo + 1) {
        lo = 0;
        hi = full_us;
      }
    }
    ts_crash_check(s, TS_CHECK_RECOVER, NULL);
    unsigned restored = big_words_at(s, wp, 1);
    cr_assert_eq(restored, BIGW, "%s: %u of %u words still hold the uncommitted value", ts_crash_where(),
                 BIGW - restored, BIGW);
    ts_crash_check(s, TS_CHECK_ALLOC, NULL);
  }
  ts_crash_end(&t);
  cr_log_info("a recovery takes %.1f ms; %d of %d kills landed inside the rollback", full_us / 1e3,
              partial, round - 1);
  cr_assert_gt(partial, 0, "no kill landed inside the rollback (a recovery takes %.1f ms)", full_us / 1e3);
  shmd_stats_t st;
  cr_assert_eq(shmd_stats(s, &st), 0);
  cr_assert_eq(st.allocated_bytes, shmd_usable_size(s, wp), "the log's extension block leaked");
  shmd_close(s);
}
