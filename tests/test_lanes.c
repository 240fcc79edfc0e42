/* SPDX-License-Identifier: MIT */
/*
 * Who owns a lane, and what a lock whose holder is gone, forged or slow does: the boot-id rule
 * (an unknown boot id is never a reboot; lanes are re-initialised only when provably unowned), the
 * judgement of a liveness mutex held by no live owner (recovered), and bounded waits (the checkers
 * and shmd_set_lock_wait() report a live holder after a bound; application calls keep waiting).
 * The boot id is played with SHMDICT_TEST_BOOT_ID_FILE (segments/os.h). mp_ tests fork, crash_
 * tests kill.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/syscall.h>

#include "support.h"

#include "alloc/alloc_int.h"
#include "segments/store_int.h"

TestSuite(lanes, .init = ts_init, .fini = ts_fini, .timeout = 120);

#define BOOT_A "0b00a000-0000-4000-8000-00000000000a"
#define BOOT_B "0b00b000-0000-4000-8000-00000000000b"
#define MIB (1u << 20)

/* Makes the library read boot id `id` from now on (in this process and its children), or find the
 * id unreadable (NULL). */
static void boot_as(const char *id) {
  char path[512];
  snprintf(path, sizeof path, "%s/boot-%s", ts_dir, id ? id : "unreadable");
  if (id != NULL) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "%s\n", id);
    fclose(f);
  }
  setenv("SHMDICT_TEST_BOOT_ID_FILE", path, 1);
}

static void manifest_boot_id(const char *name, char out[40]) {
  shmd_store_t *s = ts_open(name, 4 * MIB, 4 * MIB);
  memcpy(out, s->man->boot_id, 40);
  out[39] = '\0';
  shmd_close(s);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The cell: a shmd_lock_t word and the value it guards, under root "cell". */
static void make_cell(shmd_store_t *s, uint64_t value) {
  shmd_ptr_t cell;
  cr_assert_eq(shmd_alloc(s, 16, &cell), 0);
  uint64_t *w = shmd_resolve(s, cell);
  w[0] = 0;
  w[1] = value;
  cr_assert_eq(shmd_root_set(s, "cell", cell), 0);
}

static uint64_t cell_value(shmd_store_t *s) {
  shmd_ptr_t cell;
  cr_assert_eq(shmd_root_get(s, "cell", &cell), 0);
  return ((uint64_t *)shmd_resolve(s, cell))[1];
}

/* Process A: opens `name`, and inside a transaction takes the cell's lock, allocates a block and
 * sets the value to 42; says so on `ready`, waits for a byte on `go`, commits. Exits 0 when the
 * commit answered 0. */
static int writer_child(ts_crash_child_t *cc) {
  shmd_store_t *c = cc->s;
  shmd_tx_t *tx;
  shmd_ptr_t cell, junk;
  if (shmd_root_get(c, "cell", &cell) != 0 || shmd_tx_begin(c, &tx) != 0 || shmd_tx_lock(tx, cell) != 0 ||
      shmd_tx_alloc(tx, 5000, &junk) != 0 || shmd_tx_set64(tx, (uint64_t *)shmd_resolve(c, cell) + 1, 42) != 0)
    return 2;
  ts_crash_ready(cc);
  return shmd_tx_commit(tx) == 0 ? 0 : 5;
}

static ts_crash_proc_t *spawn_writer(const char *name) {
  ts_crash_proc_t *p = ts_crash_start(NULL, &(ts_crash_spec_t){.what = "the writer", .fn = writer_child, .store = name,
                                                               .opts = ts_opts(4 * MIB, 4 * MIB), .ready = 1,
                                                               .end = TS_END_ANY});
  ts_crash_wait_ready(p); /* it has started its transaction */
  return p;
}

/* Lets the writer commit; returns its exit status. */
static int writer_commit(ts_crash_proc_t *p) {
  ts_crash_go(p);
  return ts_crash_finish(p, NULL);
}

/* Process B: opens the store the way `shmdict info` does (open, statistics, store info, close).
 * Returns its exit status: 0 when every call answered 0. */
static int info_child(ts_crash_child_t *cc) {
  shmd_stats_t st;
  shmd_store_info_t in;
  if (shmd_stats(cc->s, &st) != 0 || shmd_store_info(cc->s, &in) != 0)
    return 1;
  shmd_close(cc->s);
  return 0;
}

static int open_like_info(const char *name) {
  shmd_options_t o = ts_opts(4 * MIB, 4 * MIB);
  o.flags = SHMD_OPEN_NOCREATE;
  return ts_crash_run(NULL,
                      &(ts_crash_spec_t){.what = "the opener", .fn = info_child, .store = name, .opts = o,
                                         .end = TS_END_ANY},
                      NULL);
}

/* Runs the shmdict tool with up to three arguments (after the store directory option); its
 * standard output and error go to `out`. Returns its exit status. */
static int run_tool(char *out, size_t outlen, const char *a1, const char *a2, const char *a3) {
  char *argv[] = {(char *)ts_cli_bin(), "-d", ts_dir, (char *)a1, (char *)a2, (char *)a3, NULL};
  ts_run_t r = ts_run_prog(&(ts_run_opts_t){.merge_stderr = 1}, argv);
  snprintf(out, outlen, "%s", r.out);
  ts_run_free(&r);
  return r.status;
}

/* ---------------------------------------------------------------------------------------------- */
/* The boot-id rule. */

/* The audit's case: a store created where the boot id cannot be read records none; the first
 * process that can read its own must not take that for a reboot and roll back a live
 * transaction. */
Test(lanes, mp_unknown_boot_id_never_rolls_back_a_live_transaction) {
  boot_as(NULL);
  shmd_store_t *s = ts_open("u", 4 * MIB, 4 * MIB);
  make_cell(s, 0);
  cr_assert_eq(s->man->boot_id[0], '\0', "the store was created without a boot id");
  shmd_close(s);
  ts_crash_proc_t *a = spawn_writer("u");
  boot_as(BOOT_A);
  cr_assert_eq(open_like_info("u"), 0);
  char out[8192];
  int rc = run_tool(out, sizeof out, "info", "u", NULL);
  cr_assert_eq(rc, 0, "shmdict info: %s", out);
  cr_assert(strstr(out, "recoveries:   0") != NULL, "shmdict info recovered a live lane:\n%s", out);
  cr_assert_eq(writer_commit(a), 0, "the writer's commit must answer 0");
  s = ts_open("u", 4 * MIB, 4 * MIB);
  cr_assert_eq(cell_value(s), 42, "the acknowledged write was lost");
  shmd_store_info_t in;
  shmd_store_info(s, &in);
  cr_assert_eq(in.recoveries, 0);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  cr_assert_str_eq(s->man->boot_id, BOOT_A, "a store without a boot id records the first known one");
  shmd_close(s);
}

/* The other side unknown: a process that cannot read its boot id never re-initialises. */
Test(lanes, mp_boot_id_unknown_to_the_opener_is_not_a_reboot) {
  boot_as(BOOT_A);
  shmd_store_t *s = ts_open("o", 4 * MIB, 4 * MIB);
  make_cell(s, 0);
  shmd_close(s);
  ts_crash_proc_t *a = spawn_writer("o");
  boot_as(NULL);
  cr_assert_eq(open_like_info("o"), 0);
  cr_assert_eq(writer_commit(a), 0);
  s = ts_open("o", 4 * MIB, 4 * MIB);
  cr_assert_eq(cell_value(s), 42);
  cr_assert_str_eq(s->man->boot_id, BOOT_A);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}

/* Both ids known and different, but a lane's recorded owner is alive: not provably a reboot, so
 * nothing is re-initialised; once no owner is alive, the next opener re-initialises. */
Test(lanes, mp_changed_boot_id_with_a_live_owner_is_not_a_reboot) {
  boot_as(BOOT_A);
  shmd_store_t *s = ts_open("c", 4 * MIB, 4 * MIB);
  make_cell(s, 0);
  shmd_close(s);
  ts_crash_proc_t *a = spawn_writer("c");
  boot_as(BOOT_B);
  cr_assert_eq(open_like_info("c"), 0);
  char out[8192];
  cr_assert_eq(run_tool(out, sizeof out, "info", "c", NULL), 0, "%s", out);
  cr_assert_eq(writer_commit(a), 0);
  boot_as(BOOT_A); /* look without changing anything */
  char id[40];
  manifest_boot_id("c", id);
  cr_assert_str_eq(id, BOOT_A, "lanes with a live owner were re-initialised");
  s = ts_open("c", 4 * MIB, 4 * MIB);
  cr_assert_eq(cell_value(s), 42, "the acknowledged write was lost");
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
  /* Now nobody owns a lane: a different known id is a reboot. */
  boot_as(BOOT_B);
  manifest_boot_id("c", id);
  cr_assert_str_eq(id, BOOT_B);
}

/* Copies store directory `from` to `to` (file by file), as a disk image taken at that instant. */
static void copy_store(const char *from, const char *to) {
  char src[600], dst[600];
  snprintf(dst, sizeof dst, "%s/%s", ts_dir, to);
  cr_assert_eq(mkdir(dst, 0700), 0);
  snprintf(src, sizeof src, "%s/%s", ts_dir, from);
  DIR *d = opendir(src);
  cr_assert_not_null(d);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    char a[900], b[900];
    snprintf(a, sizeof a, "%s/%s", src, e->d_name);
    snprintf(b, sizeof b, "%s/%s", dst, e->d_name);
    int in = open(a, O_RDONLY), out = open(b, O_WRONLY | O_CREAT | O_EXCL, 0600);
    cr_assert(in >= 0 && out >= 0);
    static char buf[1 << 16];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
      cr_assert_eq(write(out, buf, (size_t)n), n);
    close(in);
    close(out);
  }
  closedir(d);
}

/* A store image taken while a writer was inside its transaction (its lane's mutex held, as after
 * a power loss), the writer gone: the state a file-backed store is in after a reboot. Returns the
 * allocated bytes of the store before the writer began. */
static uint64_t rebooted_image(const char *orig, const char *image) {
  boot_as(BOOT_A);
  shmd_store_t *s = ts_open(orig, 4 * MIB, 4 * MIB);
  make_cell(s, 7);
  shmd_stats_t st;
  shmd_stats(s, &st);
  shmd_close(s); /* this thread's lane is released: in the image only the writer holds one */
  ts_crash_proc_t *a = spawn_writer(orig);
  copy_store(orig, image);
  ts_crash_kill(a);
  cr_assert_eq(ts_crash_finish(a, NULL), 128 + SIGKILL);
  return st.allocated_bytes;
}

/* The legitimate case: both ids known and different, no owner alive: the lane mutexes are
 * re-initialised and every lane recovered (the unfinished transaction rolled back, its block
 * freed). */
Test(lanes, crash_reboot_reinitialises_locks_and_recovers_lanes) {
  uint64_t before = rebooted_image("r", "r2");
  boot_as(BOOT_B);
  shmd_store_t *s = ts_open("r2", 4 * MIB, 4 * MIB);
  cr_assert_str_eq(s->man->boot_id, BOOT_B, "the lanes were not re-initialised");
  uint32_t me = (uint32_t)syscall(SYS_gettid);
  for (uint32_t i = 0; i < s->man->lane_count; i++) {
    uint32_t holder = (uint32_t)shmd__lane_at(s, i)->live.m.__data.__lock & 0x3fffffffu;
    cr_assert(holder == 0 || holder == me, "lane %u's mutex still held by %u after the reboot", i, holder);
  }
  cr_assert_eq(cell_value(s), 7, "the unfinished transaction was rolled back");
  shmd_stats_t st;
  shmd_stats(s, &st);
  cr_assert_eq(st.allocated_bytes, before, "the transaction's block was freed");
  cr_assert_geq(st.recoveries, 1);
  shmd_tx_t *tx;
  shmd_ptr_t cell;
  cr_assert_eq(shmd_root_get(s, "cell", &cell), 0);
  shmd_set_lock_wait(s, 2000);
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_tx_lock(tx, cell), 0, "%s", shmd_errdetail());
  cr_assert_eq(shmd_tx_commit(tx), 0);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}

/* The same image opened where the boot id cannot be read: no re-initialisation, yet the lane,
 * whose mutex names a thread that no longer exists and whose recorded owner is dead, is
 * recovered through the liveness judgement instead of staying owned for ever. */
Test(lanes, crash_stale_lane_after_reboot_with_unknown_boot_id_is_recovered) {
  uint64_t before = rebooted_image("r", "r2");
  boot_as(NULL);
  shmd_store_t *s = ts_open("r2", 4 * MIB, 4 * MIB);
  cr_assert_str_eq(s->man->boot_id, BOOT_A, "an unknown boot id must not count as a reboot");
  cr_assert_eq(cell_value(s), 7, "the stale lane was not recovered");
  shmd_stats_t st;
  shmd_stats(s, &st);
  cr_assert_eq(st.allocated_bytes, before);
  cr_assert_geq(st.recoveries, 1);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* Forged lane mutexes and bounded waits. */

/* Makes lane mutex of a lane nobody owns look held by thread `tid` (forge_lane.py of the
 * acceptance checks does the same to a file) and makes segment 0's buddy lock name that lane.
 * Returns the lane. */
static uint32_t forge_lane(shmd_store_t *s, uint32_t tid) {
  uint32_t v = UINT32_MAX;
  for (uint32_t i = s->man->lane_count; i-- > 0 && v == UINT32_MAX;)
    if (shmd__lane_at(s, i)->owner_pid == 0 && shmd__lane_at(s, i)->live.m.__data.__lock == 0)
      v = i;
  cr_assert_neq(v, UINT32_MAX);
  struct shmd__lane *l = shmd__lane_at(s, v);
  l->live.m.__data.__lock = (int)tid;
  l->live.m.__data.__owner = (int)tid;
  shmd__sa(shmd__seg(s, 0))->buddy_lock.word = v + 1;
  return v;
}

static void forged_store_is_usable(uint32_t tid) {
  shmd_store_t *s = ts_open("f", 8 * MIB, 4 * MIB);
  uint32_t v = forge_lane(s, tid);
  double t0 = now_s();
  int rc = shmd_alloc_check(s);
  double took = now_s() - t0;
  cr_assert_eq(rc, 0, "check on a forged lane: %s (%s)", shmd_strerror(rc), shmd_errdetail());
  cr_assert_lt(took, 8.0, "the check took %.1f s", took);
  cr_assert_neq(SHMD__LOCK_OWNER(shmd__sa(shmd__seg(s, 0))->buddy_lock.word), v + 1);
  shmd_ptr_t p;
  cr_assert_eq(shmd_alloc(s, MIB, &p), 0);
  cr_assert_eq(shmd_free(s, p), 0);
  /* An allocation, on a fresh forgery. */
  v = forge_lane(s, tid);
  t0 = now_s();
  rc = shmd_alloc(s, MIB, &p);
  took = now_s() - t0;
  cr_assert_eq(rc, 0, "allocation on a forged lane: %s (%s)", shmd_strerror(rc), shmd_errdetail());
  cr_assert_lt(took, 8.0, "the allocation took %.1f s", took);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}

/* The acceptance's forgery: held by thread 1, which exists but is no owner of this store. */
Test(lanes, forged_lane_mutex_held_by_a_stranger_is_recovered) { forged_store_is_usable(1); }

/* Held by a thread id that does not exist. */
Test(lanes, forged_lane_mutex_held_by_no_thread_is_recovered) { forged_store_is_usable(0x3ffffff0u); }

/* The command-line tool on a forged store: check and info answer, and the store works. */
Test(lanes, forged_lane_mutex_cli_check_and_info_answer) {
  shmd_store_t *s = ts_open("fc", 8 * MIB, 4 * MIB);
  forge_lane(s, 1);
  shmd_close(s);
  char out[16384];
  double t0 = now_s();
  int rc = run_tool(out, sizeof out, "check", "fc", NULL);
  cr_assert_eq(rc, 0, "shmdict check: %d\n%s", rc, out);
  cr_assert_lt(now_s() - t0, 20.0);
  s = ts_open("fc", 8 * MIB, 4 * MIB);
  forge_lane(s, 0x3ffffff0u);
  shmd_close(s);
  t0 = now_s();
  rc = run_tool(out, sizeof out, "info", "fc", NULL);
  cr_assert_eq(rc, 0, "shmdict info: %d\n%s", rc, out);
  cr_assert_lt(now_s() - t0, 20.0);
  rc = run_tool(out, sizeof out, "check", "fc", NULL);
  cr_assert_eq(rc, 0, "shmdict check: %d\n%s", rc, out);
}

/* A forgery that cannot be judged (its owner recorded from another pid namespace, naming a process
 * that exists): nothing is taken over, and a bounded wait reports it. */
Test(lanes, forged_lane_of_another_namespace_is_reported_after_the_bound) {
  shmd_store_t *s = ts_open("fn", 8 * MIB, 4 * MIB);
  uint32_t other = (uint32_t)getppid();
  uint32_t v = forge_lane(s, other);
  struct shmd__lane *l = shmd__lane_at(s, v);
  l->owner_pidns = 1; /* no namespace of ours */
  l->owner_pid = other;
  l->owner_tid = other;
  shmd_set_lock_wait(s, 500);
  shmd_ptr_t p;
  double t0 = now_s();
  int rc = shmd_alloc(s, MIB, &p);
  double took = now_s() - t0;
  cr_assert_eq(rc, SHMD_EBUSY, "%s", shmd_strerror(rc));
  cr_assert_geq(took, 0.45);
  cr_assert_lt(took, 5.0);
  char want[128];
  snprintf(want, sizeof want, "lock held by pid %u, lane %u, for ", other, v);
  cr_assert(strstr(shmd_errdetail(), want) != NULL, "detail: %s", shmd_errdetail());
  t0 = now_s();
  cr_assert_eq(shmd_alloc_check(s), SHMD_EBUSY);
  cr_assert_lt(now_s() - t0, 5.0);
  cr_assert_eq(SHMD__LOCK_OWNER(shmd__sa(shmd__seg(s, 0))->buddy_lock.word), v + 1, "nothing was taken over");
  shmd_close(s);
}

/* Holds segment 0's buddy lock in an allocator step of process A (a genuine live holder) until
 * a byte arrives on `go`. */
static int buddy_holder(ts_crash_child_t *cc) {
  shmd_store_t *c = cc->s;
  int rc;
  struct shmd__thr *t = shmd__thr(c, &rc);
  if (t == NULL || shmd__al_lock(c, t, 0, &shmd__sa(shmd__seg(c, 0))->buddy_lock) != 0)
    return 3;
  ts_crash_ready(cc);
  shmd__al_commit(c, t);
  shmd_close(c);
  return 0;
}

static ts_crash_proc_t *spawn_buddy_holder(const char *name) {
  ts_crash_proc_t *p = ts_crash_start(NULL, &(ts_crash_spec_t){.what = "the holder", .fn = buddy_holder, .store = name,
                                                               .opts = ts_opts(8 * MIB, 4 * MIB), .ready = 1,
                                                               .end = TS_END_ANY});
  ts_crash_wait_ready(p);
  return p;
}

struct alloc_arg {
  shmd_store_t *s;
  int rc;
  volatile int done;
};

static void *alloc_thread(void *arg) {
  struct alloc_arg *a = arg;
  shmd_ptr_t p;
  a->rc = shmd_alloc(a->s, MIB, &p);
  a->done = 1;
  shmd_thread_detach(a->s);
  return NULL;
}

/* A live process holding a lock for long: the checkers (library and tool) come back after their
 * bound naming it, without taking anything over; an application allocation waits past the grace
 * given to unrecorded holders and succeeds when the holder lets go. */
Test(lanes, mp_live_long_holder_bounds_checkers_and_application_waits) {
  shmd_store_t *s = ts_open("h", 8 * MIB, 4 * MIB);
  shmd_ptr_t p;
  cr_assert_eq(shmd_alloc(s, 100, &p), 0);
  ts_crash_proc_t *a = spawn_buddy_holder("h");
  char want[64];
  snprintf(want, sizeof want, "lock held by pid %d, lane ", (int)ts_crash_pid(a));
  /* The tool's check: 10 s, then "check incomplete", exit status 1. */
  char out[16384];
  double t0 = now_s();
  int rc = run_tool(out, sizeof out, "check", "h", NULL);
  double took = now_s() - t0;
  cr_assert_eq(rc, 1, "shmdict check: %d\n%s", rc, out);
  cr_assert(strstr(out, "check incomplete") && strstr(out, want), "%s", out);
  cr_assert(took >= 9.5 && took < 25.0, "took %.1f s", took);
  /* The library's checker, with no bound set on the handle: its own 10 s. */
  t0 = now_s();
  rc = shmd_alloc_check(s);
  took = now_s() - t0;
  cr_assert_eq(rc, SHMD_EBUSY, "%s", shmd_strerror(rc));
  cr_assert(strstr(shmd_errdetail(), want) != NULL, "detail: %s", shmd_errdetail());
  cr_assert(took >= 9.5 && took < 25.0, "took %.1f s", took);
  /* An application call on a handle with a bound. */
  shmd_store_t *b = ts_open("h", 8 * MIB, 4 * MIB);
  shmd_set_lock_wait(b, 300);
  t0 = now_s();
  cr_assert_eq(shmd_alloc(b, MIB, &p), SHMD_EBUSY);
  cr_assert_lt(now_s() - t0, 5.0);
  shmd_close(b);
  /* An application call without one waits for the live holder, past the 2 s grace. */
  struct alloc_arg arg = {s, -1, 0};
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, alloc_thread, &arg), 0);
  sleep(3);
  cr_assert_eq(arg.done, 0, "the allocation did not wait for the live holder (rc %d)", arg.rc);
  ts_crash_go(a);
  pthread_join(th, NULL);
  cr_assert_eq(arg.rc, 0, "%s", shmd_strerror(arg.rc));
  cr_assert_eq(ts_crash_finish(a, NULL), 0, "the holder's step must end normally");
  shmd_store_info_t in;
  shmd_store_info(s, &in);
  cr_assert_eq(in.recoveries, 0, "a live holder's lane was recovered");
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}
