/* SPDX-License-Identifier: MIT */
/*
 * The crash harness of the Criterion suites. Every test that forks a child to kill it (crash_), or
 * to watch it end within a bound, runs the child through these functions.
 *
 * A run forks a child that calls a given function, on a store the harness opens for it when asked.
 * The child may be started with a crash point armed (SHMDICT_CRASH_POINT=name:n, segments/crash.c)
 * -- at its first shmd_open, or only once its store is open so that the recovery an open does is
 * not counted -- and may be SIGKILLed after a given delay or at a random moment of a window, the
 * delay counted from the fork, from the child's first record or from the parent's "go". The child
 * reports what it has done through a pipe, as fixed-size records (sequence numbers, "started" and
 * "done" records); the parent receives them as they come (a callback), so a child never waits for
 * the parent and is killed in the middle of its work. The parent waits with a bound: a child still
 * running after it has hung, is killed, and the test fails saying so.
 *
 * A crash test keeps one ts_crash_t (docs/reliability.md, "The test harness"): its seed (printed;
 * SHMDICT_TEST_SEED=<seed> replays the test), the generator the kill delays and crash points are
 * drawn from, and the description of its latest run. Every failure of the harness names the seed, the run and its crash point or kill delay;
 * when the test's own checks fail after a run, ts_fini() prints the same line. After a run,
 * ts_crash_open() reopens the store and ts_crash_check() runs the recovery and the checkers the
 * test asks for (allocator, keyspace, containers by root name); the test's model checks (what the
 * child reported done is there, the operation in flight is done or not done) stay in the test.
 *
 *   ts_crash_t t;
 *   ts_crash_begin(&t, "list.crash_random");
 *   for (round...) {
 *     ts_crash_res_t res;
 *     ts_crash_run(&t, &(ts_crash_spec_t){.fn = child, .arg = &work, .seed = ts_next(&t.rng),
 *                                         .kill_lo_us = 1000, .kill_hi_us = 41000,
 *                                         .rec_size = sizeof(rec_t), .on_rec = apply, .rec_arg = &m},
 *                  &res);
 *     shmd_store_t *s = ts_crash_open("crash", 64 << 20, 64 << 20);
 *     ts_crash_check(s, TS_CHECK_ALLOC, "list:list");
 *     ... compare with the model ...
 *   }
 *   ts_crash_end(&t);
 */
#ifndef SHMD_TESTS_SUPPORT_CRASH_H
#define SHMD_TESTS_SUPPORT_CRASH_H

#include <stddef.h>
#include <stdint.h>

#include "shmdict.h"
#include "tests/support_sys.h"

/* The child's side of a run: what its function gets. */
typedef struct ts_crash_child_s {
  shmd_store_t *s;   /* the store the harness opened for the child (spec.store), else NULL */
  void *arg;         /* spec.arg */
  uint64_t seed;     /* spec.seed: for the child's own random choices */
  const char *point; /* the crash point of the run, NULL if none */
  int rec_fd, ready_fd, go_fd;
  size_t rec_size;
  int arm_when_open;
  int armed;
} ts_crash_child_t;

/* The child's function; returns the child's exit status (0: done as expected). It may _exit()
 * itself, with a code of its own, when something fails. */
typedef int (*ts_crash_fn)(ts_crash_child_t *c);

/* Writes one record (spec.rec_size bytes) to the parent; records are written whole (at most
 * PIPE_BUF bytes, so a kill never tears one). The child exits with 90 when the parent is gone. */
void ts_crash_report(ts_crash_child_t *c, const void *rec);

/* Arms the run's crash point now (spec.arm_when_open, for a child that opens its store itself). */
void ts_crash_arm(ts_crash_child_t *c);

/* spec.ready: tells the parent that the child is ready (ts_crash_wait_ready() returns), then waits
 * for ts_crash_go() (or for the parent to end). */
void ts_crash_ready(ts_crash_child_t *c);

/* When the kill delay counts from. */
enum { TS_FROM_FORK = 0, TS_FROM_FIRST_RECORD, TS_FROM_GO };

/* How a run may end; anything else fails the test. */
enum {
  TS_END_EXIT0_OR_KILLED = 0, /* exit status 0, or killed by SIGKILL (a crash point's or ours) */
  TS_END_KILLED,              /* killed by SIGKILL: "must die" (at its crash point, or by us) */
  TS_END_EXIT0,               /* exit status 0 */
  TS_END_ANY,                 /* the caller looks at the status */
};

typedef struct {
  const char *what;   /* the child's role in messages ("the writer"); default "the child" */
  ts_crash_fn fn;
  void *arg;
  uint64_t seed;
  /* The store the harness opens for the child before fn (and closes never: fn decides): its name
   * and options (ts_opts(); the directory is the test's). NULL: fn opens what it needs. */
  const char *store;
  shmd_options_t opts;
  /* The crash point ("name" or "name:n"), armed at the child's first shmd_open, or, with
   * arm_when_open, once the harness has opened spec.store (or when fn calls ts_crash_arm()).
   * Mind that everything fn does then counts: a root lookup (shmd_root_get) is a transaction and
   * fires tx.* points, so pass what the child needs through arg, or arm it with ts_crash_arm(). */
  const char *point;
  int arm_when_open;
  /* SIGKILL after kill_after_us, or at a random moment of [kill_lo_us, kill_hi_us] drawn from the
   * test's generator when kill_hi_us > 0; counted from kill_from. 0 and 0: never killed by us. */
  uint64_t kill_after_us, kill_lo_us, kill_hi_us;
  int kill_from;
  int end; /* TS_END_*: how the run may end */
  /* A child still running timeout_ms (default 60 s) after its fork or its go has hung: it is
   * killed and the test fails, or, with hang_ok, the run ends with status TS_HUNG. */
  long timeout_ms;
  int hang_ok;
  uint64_t rss_limit; /* killed (by us) once its resident memory passes this; 0: no limit */
  /* Records from the child, spec.rec_size bytes each, handed to on_rec as they arrive. */
  size_t rec_size;
  void (*on_rec)(const void *rec, void *rec_arg);
  void *rec_arg;
  int ready; /* the child calls ts_crash_ready() */
} ts_crash_spec_t;

/* The usual round of a crash test that mixes crash points and random kills: with `point` (not
 * NULL) the child is armed there and, as the point may not be reached, killed stop_us after its
 * fork anyway; without, it is killed at a random moment of [lo_us, hi_us] after its fork. Sets
 * those fields of *spec and leaves the others. */
static inline void ts_crash_point_or_window(ts_crash_spec_t *spec, const char *point, uint64_t stop_us, uint64_t lo_us,
                                            uint64_t hi_us) {
  spec->point = point;
  spec->kill_from = TS_FROM_FORK;
  if (point != NULL) {
    spec->kill_after_us = stop_us;
    spec->kill_lo_us = spec->kill_hi_us = 0;
  } else {
    spec->kill_after_us = 0;
    spec->kill_lo_us = lo_us;
    spec->kill_hi_us = hi_us;
  }
}

typedef struct {
  int status;         /* exit code, 128 + signal, or TS_HUNG */
  int killed;         /* ended by SIGKILL */
  int killed_by_us;   /* ... that the harness sent */
  int at_point;       /* killed, and not by us: its crash point fired */
  uint64_t records;   /* records received */
  uint64_t kill_us;   /* the kill delay of the run (0: none) */
  uint64_t ran_us;    /* from the fork (or the go) to the end */
} ts_crash_res_t;

/* A crash test: its seed and generator, and what the harness counted. */
typedef struct {
  const char *name;
  uint64_t seed;
  ts_rng_t rng;
  int runs, killed, at_point, killed_by_us;
} ts_crash_t;

typedef struct ts_crash_proc_s ts_crash_proc_t;

/* Starts a crash test: takes its seed (ts_seed(name), printed; SHMDICT_TEST_SEED replays it) and
 * seeds t->rng with it. */
void ts_crash_begin(ts_crash_t *t, const char *name);
/* Logs what the harness counted and forgets the last run (a failure after this is not blamed on
 * it). */
void ts_crash_end(ts_crash_t *t);

/* One run: forks the child, kills it as asked, reads its records, waits for its end (a hang fails
 * the test), checks how it ended (spec.end). Returns the status; fills *res when res != NULL.
 * t may be NULL for a child outside a crash test (messages then name no seed). */
int ts_crash_run(ts_crash_t *t, const ts_crash_spec_t *spec, ts_crash_res_t *res);

/* The same in steps, for a parent that acts while the child runs: start, then (spec.ready) wait
 * until the child is ready and let it go, or kill it now, then finish. */
ts_crash_proc_t *ts_crash_start(ts_crash_t *t, const ts_crash_spec_t *spec);
void ts_crash_wait_ready(ts_crash_proc_t *p);
/* Lets a ready child go on (the hang bound counts from now, and the kill delay with TS_FROM_GO). */
void ts_crash_go(ts_crash_proc_t *p);
/* SIGKILLs the child `us` microseconds from now (0: at once), whatever the spec said. */
void ts_crash_kill_in(ts_crash_proc_t *p, uint64_t us);
/* SIGKILLs the child now (the messages name the time since its fork or go). */
void ts_crash_kill(ts_crash_proc_t *p);
/* Receives what has arrived and says, without waiting, whether the child has ended. */
int ts_crash_ended(ts_crash_proc_t *p);
/* Receives records until the child has sent n in all, or has ended, or timeout_ms have passed;
 * returns the number received. */
uint64_t ts_crash_wait_records(ts_crash_proc_t *p, uint64_t n, long timeout_ms);
/* Receives the records of children ps[0..n) (at most 16) together until every one has ended, so
 * that none waits on a full pipe while another is read; then ts_crash_finish() each. */
void ts_crash_wait_all(ts_crash_proc_t *const *ps, int n);
int ts_crash_finish(ts_crash_proc_t *p, ts_crash_res_t *res);
pid_t ts_crash_pid(const ts_crash_proc_t *p);

/* Runs fn(arg) in a child (ts_fork) and returns its status, or TS_HUNG (the child killed) when it
 * ran longer than timeout_ms: for a test that watches a child end within a bound. */
int ts_child_run(const char *what, long timeout_ms, int (*fn)(void *arg), void *arg);

/* After a run: opens store `name` (as ts_open()); a failure names the run. */
shmd_store_t *ts_crash_open(const char *name, uint64_t first_bytes, uint64_t seg_bytes);

/* Checks after a run, on store s: TS_CHECK_RECOVER (shmd_recover() >= 0), TS_CHECK_ALLOC
 * (shmd_alloc_check), TS_CHECK_KV (shmd_kv_check), and the containers of `containers`, a list of
 * "kind:root" words separated by spaces, kind one of array, list, hash, rbtree, btree (NULL:
 * none).
 * A failure names the run. */
enum { TS_CHECK_RECOVER = 1, TS_CHECK_ALLOC = 2, TS_CHECK_KV = 4 };
void ts_crash_check(shmd_store_t *s, unsigned what, const char *containers);

/* The latest run, in words ("crash test X, seed S (replay with SHMDICT_TEST_SEED=S), run N: the
 * writer, crash point P: killed by SIGKILL"), for the test's own messages; "" outside a test. */
const char *ts_crash_where(void);

/* Called by ts_fini(): a crash test that did not reach ts_crash_end() failed; says which run. */
void ts_crash_fini(void);

#endif
