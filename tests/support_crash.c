/* SPDX-License-Identifier: MIT */
/*
 * The crash harness of the Criterion suites (see support_crash.h): forks a child, arms its crash
 * point, kills it when asked, reads its records as they come, waits for its end with a bound, and
 * says which run of which seed failed. The parent's loop polls the record pipe in slices of at most
 * 10 ms, so that the hang bound and a resident-memory limit are kept within that; a kill delay is
 * waited for to the microsecond (ppoll), as the tests that aim a kill inside a short rollback need.
 */
#include "tests/support.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <time.h>

#include "shmdict/array.h"
#include "shmdict/btree.h"
#include "shmdict/hash.h"
#include "shmdict/list.h"
#include "shmdict/rbtree.h"

#define DEFAULT_TIMEOUT_MS 60000L

struct ts_crash_proc_s {
  ts_crash_t *t;
  ts_crash_spec_t spec;
  char point[128];
  int run;
  pid_t pid;
  int rec_fd, ready_fd, go_fd; /* the parent's ends; -1 when closed */
  unsigned char *buf;          /* a record being received */
  size_t got;
  uint64_t records;
  uint64_t start_us;   /* fork, or go: the hang bound counts from here */
  uint64_t origin_us;  /* the kill delay counts from here (0: not yet) */
  uint64_t kill_us;    /* the kill delay (0: none) */
  const char *origin;  /* what it counts from, in messages */
  int ready, ended, status, killed_by_us, hung;
};

/* ---- the description of the latest run, for messages ---- */

static ts_crash_t *current;  /* the crash test between ts_crash_begin and ts_crash_end */
static char where[1024];     /* its latest run */

const char *ts_crash_where(void) { return where; }

static void describe(const ts_crash_proc_t *p, const char *outcome) {
  const ts_crash_spec_t *sp = &p->spec;
  char test[300] = "", how[300];
  if (p->t != NULL)
    snprintf(test, sizeof test, "crash test %s, seed %llu (replay with SHMDICT_TEST_SEED=%llu), ", p->t->name,
             (unsigned long long)p->t->seed, (unsigned long long)p->t->seed);
  if (p->point[0] != '\0')
    snprintf(how, sizeof how, "crash point %s%s", p->point, p->kill_us ? ", " : "");
  else
    how[0] = '\0';
  if (p->kill_us)
    snprintf(how + strlen(how), sizeof how - strlen(how), "killed %llu us after %s", (unsigned long long)p->kill_us,
             p->origin);
  else if (p->point[0] == '\0')
    snprintf(how, sizeof how, "not killed by the harness");
  char seed[40] = "";
  if (sp->seed)
    snprintf(seed, sizeof seed, " (seed %llu)", (unsigned long long)sp->seed);
  snprintf(where, sizeof where, "%srun %d: %s%s, %s%s%s", test, p->run, sp->what ? sp->what : "the child", seed, how,
           outcome ? ": " : "", outcome ? outcome : "");
}

void ts_crash_fini(void) {
  if (current != NULL && where[0] != '\0')
    cr_log_error("failed in or after %s", where);
  current = NULL;
  where[0] = '\0';
}

void ts_crash_begin(ts_crash_t *t, const char *name) {
  memset(t, 0, sizeof *t);
  t->name = name;
  t->seed = ts_seed(name);
  t->rng.s = t->seed;
  current = t;
  where[0] = '\0';
}

void ts_crash_end(ts_crash_t *t) {
  cr_log_info("crash test %s: %d runs, %d killed (%d at their crash point, %d by the harness)", t->name, t->runs,
              t->killed, t->at_point, t->killed_by_us);
  if (current == t)
    current = NULL;
  where[0] = '\0';
}

/* ---- the child ---- */

/* The parent's ends of the pipes of runs still going: a new child closes them. */
static int open_fds[32];

static void track_fd(int fd) {
  for (size_t i = 0; i < sizeof open_fds / sizeof open_fds[0]; i++)
    if (open_fds[i] <= 0) {
      open_fds[i] = fd + 1;
      return;
    }
}

static void untrack_fd(int fd) {
  for (size_t i = 0; i < sizeof open_fds / sizeof open_fds[0]; i++)
    if (open_fds[i] == fd + 1)
      open_fds[i] = 0;
}

void ts_crash_report(ts_crash_child_t *c, const void *rec) {
  if (ts_write_all(c->rec_fd, rec, c->rec_size) != 0)
    _exit(90);
}

void ts_crash_arm(ts_crash_child_t *c) {
  if (c->point != NULL && !c->armed) {
    ts_crash_point_arm(c->point);
    c->armed = 1;
  }
}

void ts_crash_ready(ts_crash_child_t *c) {
  char b = 'r';
  if (ts_write_all(c->ready_fd, &b, 1) != 0)
    _exit(90);
  ssize_t n;
  while ((n = read(c->go_fd, &b, 1)) < 0 && errno == EINTR)
    ;
}

static void child_main(ts_crash_proc_t *p, int rec_w, int ready_w, int go_r) {
  const ts_crash_spec_t *sp = &p->spec;
  for (size_t i = 0; i < sizeof open_fds / sizeof open_fds[0]; i++)
    if (open_fds[i] > 0)
      close(open_fds[i] - 1);
  ts_crash_child_t c = {NULL, sp->arg, sp->seed, p->point[0] ? p->point : NULL, rec_w, ready_w, go_r,
                        sp->rec_size, sp->arm_when_open, 0};
  /* Armed at the first open unless asked otherwise; never inherited from the parent. */
  ts_crash_point_set(c.point != NULL && !c.arm_when_open ? c.point : NULL);
  c.armed = c.point != NULL && !c.arm_when_open;
  if (sp->store != NULL) {
    shmd_options_t o = sp->opts;
    int rc = shmd_open(sp->store, &o, &c.s);
    if (rc != 0) {
      fprintf(stderr, "%s: shmd_open(%s): %s (%s)\n", sp->what ? sp->what : "the child", sp->store, shmd_strerror(rc),
              shmd_errdetail());
      _exit(91);
    }
    if (c.arm_when_open)
      ts_crash_arm(&c);
  }
  _exit(sp->fn(&c));
}

/* ---- the parent ---- */

static void close_fd(int *fd) {
  if (*fd >= 0) {
    untrack_fd(*fd);
    close(*fd);
    *fd = -1;
  }
}

static void fail_run(ts_crash_proc_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail_run(ts_crash_proc_t *p, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  describe(p, msg);
  cr_assert_fail("%s", where);
}

ts_crash_proc_t *ts_crash_start(ts_crash_t *t, const ts_crash_spec_t *spec) {
  ts_crash_proc_t *p = calloc(1, sizeof *p);
  cr_assert_not_null(p);
  p->t = t;
  p->spec = *spec;
  if (spec->point != NULL)
    snprintf(p->point, sizeof p->point, "%s", spec->point);
  p->run = t ? ++t->runs : 0;
  p->rec_fd = p->ready_fd = p->go_fd = -1;
  p->origin = spec->kill_from == TS_FROM_FIRST_RECORD ? "its first record"
              : spec->kill_from == TS_FROM_GO         ? "its go"
                                                      : "its fork";
  cr_assert(spec->rec_size <= PIPE_BUF, "records of %zu bytes could be torn by a kill", spec->rec_size);
  if (spec->rec_size) {
    p->buf = malloc(spec->rec_size);
    cr_assert_not_null(p->buf);
  }
  if (spec->kill_hi_us > 0) {
    cr_assert_not_null(t, "a random kill delay is drawn from a crash test's generator");
    cr_assert_geq(spec->kill_hi_us, spec->kill_lo_us);
  }
  int rec[2], ready[2] = {-1, -1}, go[2] = {-1, -1};
  cr_assert_eq(pipe(rec), 0, "pipe: %s", strerror(errno));
  if (spec->ready)
    cr_assert(pipe(ready) == 0 && pipe(go) == 0, "pipe: %s", strerror(errno));
  p->pid = ts_fork();
  cr_assert_geq(p->pid, 0, "fork: %s", strerror(errno));
  if (p->pid == 0) {
    close(rec[0]);
    if (spec->ready) {
      close(ready[0]);
      close(go[1]);
    }
    child_main(p, rec[1], ready[1], go[0]);
  }
  close(rec[1]);
  p->rec_fd = rec[0];
  fcntl(p->rec_fd, F_SETFL, O_NONBLOCK);
  track_fd(p->rec_fd);
  if (spec->ready) {
    close(ready[1]);
    close(go[0]);
    p->ready_fd = ready[0];
    p->go_fd = go[1];
    track_fd(p->ready_fd);
    track_fd(p->go_fd);
  }
  p->start_us = ts_now_us();
  if (spec->kill_hi_us > 0)
    p->kill_us = spec->kill_lo_us + ts_below(&t->rng, spec->kill_hi_us - spec->kill_lo_us + 1);
  else
    p->kill_us = spec->kill_after_us;
  if (spec->kill_from == TS_FROM_FORK)
    p->origin_us = p->start_us;
  describe(p, NULL);
  return p;
}

pid_t ts_crash_pid(const ts_crash_proc_t *p) { return p->pid; }

/* Takes the records that have arrived; returns 1 at end of file. */
static int read_records(ts_crash_proc_t *p) {
  unsigned char chunk[8192];
  for (;;) {
    ssize_t n = read(p->rec_fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return 0; /* EAGAIN: nothing more now */
    if (n == 0)
      return 1;
    if (p->spec.rec_size == 0)
      fail_run(p, "sent %zd bytes, but the run expects no records", n);
    for (ssize_t i = 0; i < n;) {
      size_t take = p->spec.rec_size - p->got;
      if (take > (size_t)(n - i))
        take = (size_t)(n - i);
      memcpy(p->buf + p->got, chunk + i, take);
      p->got += take;
      i += (ssize_t)take;
      if (p->got < p->spec.rec_size)
        continue;
      p->got = 0;
      if (p->records++ == 0 && p->spec.kill_from == TS_FROM_FIRST_RECORD)
        p->origin_us = ts_now_us();
      if (p->spec.on_rec)
        p->spec.on_rec(p->buf, p->spec.rec_arg);
    }
    if ((size_t)n < sizeof chunk)
      return 0; /* the pipe is empty: no second read to learn it (a child writing fast wakes us often) */
  }
}

static void kill_now(ts_crash_proc_t *p) {
  if (p->ended)
    return;
  int st;
  if (ts_reap(p->pid, &st) == 1) { /* it ended on its own just before */
    p->ended = 1;
    p->status = st;
    return;
  }
  kill(p->pid, SIGKILL);
  p->killed_by_us = 1;
}

/* Kills due now (delay, memory), and a hang; returns when p next needs looking at. */
static uint64_t watch(ts_crash_proc_t *p, uint64_t now) {
  long timeout_ms = p->spec.timeout_ms > 0 ? p->spec.timeout_ms : DEFAULT_TIMEOUT_MS;
  uint64_t next = now + 10000, hang_at = p->start_us + (uint64_t)timeout_ms * 1000u;
  if (p->kill_us && p->origin_us && !p->killed_by_us) {
    uint64_t kill_at = p->origin_us + p->kill_us;
    if (now >= kill_at)
      kill_now(p);
    else if (kill_at < next)
      next = kill_at;
  }
  if (p->spec.rss_limit && !p->killed_by_us && ts_rss_bytes(p->pid) > p->spec.rss_limit)
    kill_now(p);
  if (now >= hang_at && !p->ended) {
    p->hung = 1;
    int st = ts_kill_wait(p->pid);
    p->ended = 1;
    p->status = st == 128 + SIGKILL ? TS_HUNG : st;
  }
  return hang_at < next ? hang_at : next;
}

enum { UNTIL_ENDED, UNTIL_READY, UNTIL_RECORDS };
#define MAX_PROCS 16

/* Reads the records of children ps[0..n) and watches them until every one has ended, or (for
 * ps[0]) until it said it is ready or sent `records` records, or until deadline_us (0: none). */
static void pump(ts_crash_proc_t *const *ps, int n, int until, uint64_t records, uint64_t deadline_us) {
  cr_assert(n >= 1 && n <= MAX_PROCS, "%d children watched at once", n);
  for (;;) {
    int going = 0;
    for (int i = 0; i < n; i++)
      going += !ps[i]->ended;
    if (!going || (until == UNTIL_READY && ps[0]->ready) || (until == UNTIL_RECORDS && ps[0]->records >= records))
      break;
    uint64_t now = ts_now_us(), next = deadline_us ? deadline_us : UINT64_MAX;
    struct pollfd pf[2 * MAX_PROCS];
    int nf = 0, ready_at[MAX_PROCS];
    for (int i = 0; i < n; i++) {
      ts_crash_proc_t *p = ps[i];
      ready_at[i] = -1;
      if (p->ended)
        continue;
      uint64_t w = watch(p, now);
      next = w < next ? w : next;
      pf[nf++] = (struct pollfd){p->ended ? -1 : p->rec_fd, POLLIN, 0};
      if (until == UNTIL_READY && p->ready_fd >= 0 && !p->ended) {
        ready_at[i] = nf;
        pf[nf++] = (struct pollfd){p->ready_fd, POLLIN, 0};
      }
    }
    uint64_t wait_us = next > now ? next - now : 0;
    struct timespec wait = {(time_t)(wait_us / 1000000u), (long)(wait_us % 1000000u) * 1000};
    int r = ppoll(pf, (nfds_t)nf, &wait, NULL); /* to the microsecond: kill delays are that fine */
    if (r < 0 && errno != EINTR)
      fail_run(ps[0], "poll: %s", strerror(errno));
    for (int i = 0; i < n; i++) {
      ts_crash_proc_t *p = ps[i];
      if (p->rec_fd >= 0 && read_records(p))
        close_fd(&p->rec_fd); /* end of file: the child (and every copy of the pipe) is gone */
      if (ready_at[i] >= 0 && r > 0 && (pf[ready_at[i]].revents & (POLLIN | POLLHUP))) {
        char b;
        ssize_t got = read(p->ready_fd, &b, 1);
        if (got == 1)
          p->ready = 1;
        else if (got == 0)
          close_fd(&p->ready_fd);
      }
      int st; /* while its pipe is open, a child is reaped only when nothing came for a while */
      if (!p->ended && (p->rec_fd < 0 || r == 0) && ts_reap(p->pid, &st) == 1) {
        p->ended = 1;
        p->status = st;
      }
    }
    if (deadline_us && ts_now_us() >= deadline_us)
      break;
  }
  /* Whatever a dead child wrote is in the pipe now (a grandchild may still hold it open). */
  for (int i = 0; i < n; i++)
    if (ps[i]->ended && ps[i]->rec_fd >= 0)
      read_records(ps[i]);
}

void ts_crash_wait_ready(ts_crash_proc_t *p) {
  cr_assert(p->spec.ready, "ts_crash_wait_ready() without spec.ready");
  pump(&p, 1, UNTIL_READY, 0, 0);
  if (!p->ready)
    fail_run(p, "ended with status %d before it was ready", p->status);
}

void ts_crash_go(ts_crash_proc_t *p) {
  char b = 'g';
  cr_assert(p->go_fd >= 0, "ts_crash_go() without spec.ready");
  cr_assert_eq(write(p->go_fd, &b, 1), 1, "go: %s", strerror(errno));
  p->start_us = ts_now_us();
  if (p->spec.kill_from == TS_FROM_GO)
    p->origin_us = p->start_us;
  describe(p, NULL);
}

void ts_crash_kill_in(ts_crash_proc_t *p, uint64_t us) {
  p->origin = "the order";
  p->kill_us = us;
  p->origin_us = ts_now_us();
  p->killed_by_us = 0;
  if (us == 0)
    kill_now(p);
  describe(p, NULL);
}

void ts_crash_kill(ts_crash_proc_t *p) {
  if (!p->kill_us) { /* the delay, for the messages */
    p->origin = p->spec.ready ? "its go" : "its fork";
    p->kill_us = ts_now_us() - p->start_us;
    if (p->kill_us == 0)
      p->kill_us = 1;
  }
  kill_now(p);
  describe(p, NULL);
}

void ts_crash_wait_all(ts_crash_proc_t *const *ps, int n) { pump(ps, n, UNTIL_ENDED, 0, 0); }

int ts_crash_ended(ts_crash_proc_t *p) {
  pump(&p, 1, UNTIL_ENDED, 0, ts_now_us());
  return p->ended;
}

uint64_t ts_crash_wait_records(ts_crash_proc_t *p, uint64_t n, long timeout_ms) {
  pump(&p, 1, UNTIL_RECORDS, n, ts_now_us() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000u);
  return p->records;
}

int ts_crash_finish(ts_crash_proc_t *p, ts_crash_res_t *res) {
  pump(&p, 1, UNTIL_ENDED, 0, 0);
  uint64_t ran = ts_now_us() - p->start_us;
  close_fd(&p->rec_fd);
  close_fd(&p->ready_fd);
  close_fd(&p->go_fd);
  int st = p->status, killed = st == 128 + SIGKILL;
  char outcome[160];
  if (p->hung)
    snprintf(outcome, sizeof outcome, "still running %ld ms after its %s: a hang (killed)",
             p->spec.timeout_ms > 0 ? p->spec.timeout_ms : DEFAULT_TIMEOUT_MS, p->spec.ready ? "go" : "fork");
  else if (killed)
    snprintf(outcome, sizeof outcome, "killed by SIGKILL%s", p->killed_by_us ? " (ours)" : " at its crash point");
  else
    snprintf(outcome, sizeof outcome, "ended with status %d%s", st, st > 128 ? " (128 + signal)" : "");
  describe(p, outcome);
  if (p->t) {
    p->t->killed += killed;
    p->t->killed_by_us += killed && p->killed_by_us;
    p->t->at_point += killed && !p->killed_by_us;
  }
  if (p->got != 0)
    fail_run(p, "a torn record (%zu of %zu bytes)", p->got, p->spec.rec_size);
  if (p->hung && !p->spec.hang_ok)
    cr_assert_fail("%s", where);
  int ok = p->hung ? 1 : p->spec.end == TS_END_KILLED ? killed
                   : p->spec.end == TS_END_EXIT0        ? st == 0
                   : p->spec.end == TS_END_ANY          ? 1
                                                        : st == 0 || killed;
  if (!ok)
    cr_assert_fail("%s%s", where,
                   p->spec.end == TS_END_KILLED ? "; it had to die by SIGKILL"
                   : st == 99                   ? " (its parent was gone at the fork)"
                   : st == 90                   ? " (it could not write to its parent)"
                   : st == 91                   ? " (it could not open its store)"
                                                : "");
  if (res) {
    res->status = st;
    res->killed = killed;
    res->killed_by_us = killed && p->killed_by_us;
    res->at_point = killed && !p->killed_by_us;
    res->records = p->records;
    res->kill_us = p->kill_us;
    res->ran_us = ran;
  }
  free(p->buf);
  free(p);
  return st;
}

int ts_crash_run(ts_crash_t *t, const ts_crash_spec_t *spec, ts_crash_res_t *res) {
  return ts_crash_finish(ts_crash_start(t, spec), res);
}

/* ---- a watched child outside a crash test ---- */

typedef struct {
  int (*fn)(void *);
  void *arg;
} trampoline_t;

static int trampoline(ts_crash_child_t *c) {
  trampoline_t *tr = c->arg;
  return tr->fn(tr->arg);
}

int ts_child_run(const char *what, long timeout_ms, int (*fn)(void *arg), void *arg) {
  trampoline_t tr = {fn, arg};
  ts_crash_spec_t spec = {.what = what, .fn = trampoline, .arg = &tr, .timeout_ms = timeout_ms, .hang_ok = 1,
                          .end = TS_END_ANY};
  char saved[sizeof where];
  memcpy(saved, where, sizeof where); /* not a run of the crash test, if one is going */
  int st = ts_crash_run(NULL, &spec, NULL);
  memcpy(where, saved, sizeof where);
  return st;
}

/* ---- checks after a run ---- */

shmd_store_t *ts_crash_open(const char *name, uint64_t first_bytes, uint64_t seg_bytes) {
  shmd_options_t o = ts_opts(first_bytes, seg_bytes);
  shmd_store_t *s = NULL;
  int rc = shmd_open(name, &o, &s);
  cr_assert_eq(rc, 0, "reopening %s after %s: %s (%s)", name, where, shmd_strerror(rc), shmd_errdetail());
  return s;
}

static int check_container(shmd_store_t *s, const char *kind, shmd_ptr_t p) {
  if (strcmp(kind, "array") == 0)
    return shmd_array_check(s, p);
  if (strcmp(kind, "list") == 0)
    return shmd_list_check(s, p);
  if (strcmp(kind, "hash") == 0)
    return shmd_hash_check(s, p);
  if (strcmp(kind, "rbtree") == 0)
    return shmd_rbtree_check(s, p);
  if (strcmp(kind, "btree") == 0)
    return shmd_btree_check(s, p);
  cr_assert_fail("ts_crash_check: no container kind %s", kind);
  return -1;
}

void ts_crash_check(shmd_store_t *s, unsigned what, const char *containers) {
  int rc;
  if (what & TS_CHECK_RECOVER) {
    rc = shmd_recover(s);
    cr_assert_geq(rc, 0, "shmd_recover after %s: %s (%s)", where, shmd_strerror(rc), shmd_errdetail());
  }
  if (what & TS_CHECK_ALLOC) {
    rc = shmd_alloc_check(s);
    cr_assert_eq(rc, 0, "shmd_alloc_check after %s: %s (%s)", where, shmd_strerror(rc), shmd_errdetail());
  }
  if (what & TS_CHECK_KV) {
    rc = shmd_kv_check(s);
    cr_assert_eq(rc, 0, "shmd_kv_check after %s: %s (%s)", where, shmd_strerror(rc), shmd_errdetail());
  }
  for (const char *w = containers; w != NULL && *w != '\0';) {
    while (*w == ' ')
      w++;
    size_t n = strcspn(w, " ");
    if (n == 0)
      break;
    char word[128], *colon;
    snprintf(word, sizeof word, "%.*s", (int)n, w);
    w += n;
    colon = strchr(word, ':');
    cr_assert_not_null(colon, "ts_crash_check: \"%s\" is not kind:root", word);
    *colon = '\0';
    shmd_ptr_t p;
    rc = shmd_root_get(s, colon + 1, &p);
    cr_assert_eq(rc, 0, "root %s after %s: %s", colon + 1, where, shmd_strerror(rc));
    rc = check_container(s, word, p);
    cr_assert_eq(rc, 0, "shmd_%s_check(%s) after %s: %s (%s)", word, colon + 1, where, shmd_strerror(rc),
                 shmd_errdetail());
  }
}
