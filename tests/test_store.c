/* SPDX-License-Identifier: MIT */
/*
 * Stores, segments, roots, transactions and recovery: open/create semantics, every bad-header
 * status, named roots, transaction rollback and nesting, and crash recovery of a lock held by a
 * killed process (mp_ / crash_ tests fork).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>

#include "support.h"

TestSuite(store, .init = ts_init, .fini = ts_fini, .timeout = 60);

static void seg_path(char *out, size_t n, const char *store, const char *file) {
  snprintf(out, n, "%s/%s/%s", ts_dir, store, file);
}

Test(store, create_reopen_and_roots) {
  shmd_store_t *s = ts_open("a", 4 << 20, 4 << 20);
  shmd_ptr_t p;
  cr_assert_eq(shmd_alloc(s, 100, &p), 0);
  strcpy(shmd_resolve(s, p), "hello");
  cr_assert_eq(shmd_root_set(s, "greeting", p), 0);
  shmd_ptr_t q = shmd_ptr_null();
  cr_assert_eq(shmd_root_get(s, "greeting", &q), 0);
  cr_assert(shmd_ptr_eq(p, q));
  cr_assert_eq(shmd_root_get(s, "nothing", &q), SHMD_ENOTFOUND);
  cr_assert_eq(shmd_root_set_nx(s, "greeting", p, &q), SHMD_EEXIST);
  cr_assert(shmd_ptr_eq(p, q));
  shmd_close(s);

  s = ts_open("a", 1 << 20, 1 << 20); /* sizes of an existing store are its own */
  cr_assert_eq(shmd_root_get(s, "greeting", &q), 0);
  cr_assert_str_eq(shmd_resolve(s, q), "hello");
  cr_assert_eq(shmd_root_del(s, "greeting"), 0);
  cr_assert_eq(shmd_root_del(s, "greeting"), SHMD_ENOTFOUND);
  cr_assert_eq(shmd_free(s, q), 0);
  shmd_store_info_t info;
  cr_assert_eq(shmd_store_info(s, &info), 0);
  cr_assert_eq(info.segments, 1);
  cr_assert_eq(info.layout_major, SHMD_LAYOUT_MAJOR);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
  shmd_close(NULL);
}

Test(store, open_flags_names_and_drop) {
  shmd_options_t o = ts_opts(4 << 20, 4 << 20);
  shmd_store_t *s = NULL;
  o.flags = SHMD_OPEN_NOCREATE;
  cr_assert_eq(shmd_open("missing", &o, &s), SHMD_ENOENT);
  cr_assert_null(s);
  o.flags = SHMD_OPEN_EXCL;
  cr_assert_eq(shmd_open("x", &o, &s), 0);
  shmd_close(s);
  cr_assert_eq(shmd_open("x", &o, &s), SHMD_EEXIST);
  cr_assert_eq(shmd_open("", &o, &s), SHMD_EINVAL);
  cr_assert_eq(shmd_open(".hidden", &o, &s), SHMD_EINVAL);
  cr_assert_eq(shmd_open("a/b", &o, &s), SHMD_EINVAL);
  o.flags = 0;
  o.first_segment_bytes = 64 << 10; /* too small for the lanes */
  cr_assert_eq(shmd_open("tiny", &o, &s), SHMD_EINVAL);
  cr_assert_neq(strlen(shmd_errdetail()), 0);
  /* segment files are 0600 */
  char path[512];
  seg_path(path, sizeof path, "x", "seg-00000");
  struct stat st;
  cr_assert_eq(stat(path, &st), 0);
  cr_assert_eq(st.st_mode & 0777, 0600);
  cr_assert_eq(shmd_drop("x", ts_dir), 0);
  cr_assert_eq(shmd_drop("x", ts_dir), SHMD_ENOENT);
  cr_assert_neq(stat(path, &st), 0);
}

Test(store, status_table) {
  cr_assert_str_eq(shmd_err_name(SHMD_ECORRUPT), "ECORRUPT");
  cr_assert_str_eq(shmd_strerror(0), "success");
  cr_assert_str_eq(shmd_strerror(12345), "unknown error");
  cr_assert_str_eq(shmd_err_name(SHMD_EVERSION), "EVERSION");
  cr_assert_lt(SHMD_ENOTFOUND, 0);
}

/* ---- bad headers: each case gives its own status ---- */

static void make_store(const char *name) {
  shmd_store_t *s = ts_open(name, 4 << 20, 1 << 20);
  shmd_ptr_t p;
  cr_assert_eq(shmd_alloc(s, 2 << 20, &p), 0); /* forces a second segment */
  cr_assert_eq(shmd_root_set(s, "big", p), 0);
  shmd_close(s);
}

static int reopen(const char *name) {
  shmd_options_t o = ts_opts(4 << 20, 1 << 20);
  o.flags = SHMD_OPEN_NOCREATE;
  shmd_store_t *s = NULL;
  int rc = shmd_open(name, &o, &s);
  if (rc == 0) {
    /* Segment 1 is attached lazily: resolving the root triggers validation. */
    shmd_ptr_t p;
    void *a;
    rc = shmd_root_get(s, "big", &p);
    if (rc == 0)
      rc = shmd_resolve_checked(s, p, 16, &a);
    if (rc == 0)
      rc = shmd_alloc_check(s);
    shmd_close(s);
  }
  return rc;
}

static void patch(const char *name, const char *file, long off, const void *bytes, size_t n) {
  char path[512];
  seg_path(path, sizeof path, name, file);
  int fd = open(path, O_RDWR);
  cr_assert_geq(fd, 0);
  cr_assert_eq(pwrite(fd, bytes, n, off), (ssize_t)n);
  close(fd);
}

static void find_seg1(const char *name, char *out, size_t n) {
  char dir[512];
  snprintf(dir, sizeof dir, "%s/%s", ts_dir, name);
  DIR *d = opendir(dir);
  struct dirent *e;
  out[0] = 0;
  while ((e = readdir(d)) != NULL)
    if (strncmp(e->d_name, "seg-00001-", 10) == 0)
      snprintf(out, n, "%s", e->d_name);
  closedir(d);
  cr_assert_neq(out[0], 0);
}

Test(store, bad_not_a_store) {
  make_store("b");
  patch("b", "seg-00000", 0, "GARBAGE!", 8);
  cr_assert_eq(reopen("b"), SHMD_ENOTSTORE, "%s", shmd_errdetail());
}

Test(store, bad_version_names_both) {
  make_store("b");
  char path[512];
  seg_path(path, sizeof path, "b", "seg-00000");
  int fd = open(path, O_RDWR);
  uint16_t major = SHMD_LAYOUT_MAJOR + 1;
  pwrite(fd, &major, 2, 8);
  close(fd);
  int rc = reopen("b");
  cr_assert_eq(rc, SHMD_EVERSION, "%s", shmd_err_name(rc));
  char want[64];
  snprintf(want, sizeof want, "%d.%d", SHMD_LAYOUT_MAJOR + 1, SHMD_LAYOUT_MINOR);
  cr_assert_not_null(strstr(shmd_errdetail(), want), "%s", shmd_errdetail());
  snprintf(want, sizeof want, "%d.%d", SHMD_LAYOUT_MAJOR, SHMD_LAYOUT_MINOR);
  cr_assert_not_null(strstr(shmd_errdetail(), want), "%s", shmd_errdetail());
}

Test(store, bad_checksum) {
  make_store("b");
  uint32_t flags = 0xdeadbeef;
  patch("b", "seg-00000", 36, &flags, 4); /* the flags word, covered by the checksum */
  cr_assert_eq(reopen("b"), SHMD_ECHECKSUM, "%s", shmd_errdetail());
}

Test(store, bad_truncated) {
  make_store("b");
  char name[64], path[512];
  find_seg1("b", name, sizeof name);
  seg_path(path, sizeof path, "b", name);
  cr_assert_eq(truncate(path, 8192), 0);
  cr_assert_eq(reopen("b"), SHMD_ECORRUPT); /* the root resolves into a truncated segment */
  cr_assert_not_null(strstr(shmd_errdetail(), "truncated") ?: strstr(shmd_errdetail(), "exist"), "%s",
                     shmd_errdetail());
  seg_path(path, sizeof path, "b", "seg-00000");
  cr_assert_eq(truncate(path, 100), 0);
  cr_assert_eq(reopen("b"), SHMD_ETRUNCATED, "%s", shmd_errdetail());
  cr_assert_eq(truncate(path, 0), 0);
  cr_assert_eq(reopen("b"), SHMD_ETRUNCATED, "%s", shmd_errdetail());
}

Test(store, bad_foreign_segment) {
  make_store("b");
  make_store("c");
  char nb[64], nc[64], pb[512], pc[512];
  find_seg1("b", nb, sizeof nb);
  find_seg1("c", nc, sizeof nc);
  seg_path(pb, sizeof pb, "b", nb);
  seg_path(pc, sizeof pc, "c", nc);
  cr_assert_eq(rename(pc, pb), 0); /* c's segment 1 swapped in under b's name */
  shmd_options_t o = ts_opts(4 << 20, 1 << 20);
  shmd_store_t *s;
  cr_assert_eq(shmd_open("b", &o, &s), 0);
  shmd_ptr_t p;
  cr_assert_eq(shmd_root_get(s, "big", &p), 0);
  void *a;
  cr_assert_eq(shmd_resolve_checked(s, p, 16, &a), SHMD_ECORRUPT);
  cr_assert_null(shmd_resolve(s, p));
  cr_assert_not_null(strstr(shmd_errdetail(), "another store"), "%s", shmd_errdetail());
  cr_assert_eq(shmd_alloc_check(s), SHMD_ECORRUPT);
  shmd_close(s);
}

Test(store, symlink_planted_is_not_followed) {
  char dir[512], path[512], target[512];
  snprintf(dir, sizeof dir, "%s/evil", ts_dir);
  mkdir(dir, 0700);
  snprintf(target, sizeof target, "%s/victim", ts_dir);
  int fd = open(target, O_CREAT | O_WRONLY, 0600);
  write(fd, "precious", 8);
  close(fd);
  snprintf(path, sizeof path, "%s/seg-00000", dir);
  cr_assert_eq(symlink(target, path), 0);
  shmd_options_t o = ts_opts(4 << 20, 1 << 20);
  shmd_store_t *s = NULL;
  int rc = shmd_open("evil", &o, &s);
  cr_assert_neq(rc, 0);
  cr_assert_null(s);
  char buf[16] = {0};
  fd = open(target, O_RDONLY);
  read(fd, buf, 8);
  close(fd);
  cr_assert_str_eq(buf, "precious");
}

/* ---- transactions ---- */

Test(store, tx_rollback_nesting_and_deferred_free) {
  shmd_store_t *s = ts_open("t", 4 << 20, 4 << 20);
  shmd_ptr_t cell;
  cr_assert_eq(shmd_alloc(s, 64, &cell), 0);
  uint64_t *w = shmd_resolve(s, cell);
  w[0] = 1;
  w[1] = 2;
  shmd_stats_t st0, st;
  shmd_stats(s, &st0);

  shmd_tx_t *tx;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_tx_log(tx, cell, 16), 0);
  w[0] = 100;
  w[1] = 200;
  shmd_ptr_t fresh;
  cr_assert_eq(shmd_tx_alloc(tx, 1000, &fresh), 0);
  shmd_tx_abort(tx);
  cr_assert_eq(w[0], 1);
  cr_assert_eq(w[1], 2);
  shmd_stats(s, &st);
  cr_assert_eq(st.allocated_bytes, st0.allocated_bytes, "aborted allocation must be freed");

  /* nested: inner abort dooms the outer */
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_tx_set64(tx, &w[0], 7), 0);
  shmd_tx_t *inner;
  cr_assert_eq(shmd_tx_begin(s, &inner), 0);
  cr_assert_eq(shmd_tx_depth(s), 2);
  shmd_tx_abort(inner);
  cr_assert_eq(shmd_tx_commit(tx), SHMD_EABORTED);
  cr_assert_eq(w[0], 1);
  cr_assert_eq(shmd_tx_depth(s), 0);

  /* commit: frees happen after, exactly once */
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_tx_set64(tx, &w[0], 9), 0);
  cr_assert_eq(shmd_tx_free(tx, cell), 0);
  shmd_stats(s, &st);
  cr_assert_eq(st.allocated_bytes, st0.allocated_bytes, "freed before commit");
  cr_assert_eq(shmd_tx_commit(tx), 0);
  shmd_stats(s, &st);
  cr_assert_eq(st.allocated_bytes, st0.allocated_bytes - 64);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}

Test(store, tx_log_grows_past_the_lane) {
  shmd_store_t *s = ts_open("t", 8 << 20, 4 << 20);
  shmd_ptr_t big;
  cr_assert_eq(shmd_alloc(s, 64 << 10, &big), 0);
  memset(shmd_resolve(s, big), 0x11, 64 << 10);
  shmd_tx_t *tx;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  size_t words;
  shmd_tx_room(tx, &words, NULL, NULL);
  /* More than the lane holds in place: the log continues in an extension block. */
  cr_assert_eq(shmd_tx_log(tx, big, (words + 1000) * 8), 0);
  memset(shmd_resolve(s, big), 0xAB, (words + 1000) * 8);
  shmd_tx_abort(tx);
  const unsigned char *b = shmd_resolve(s, big);
  for (size_t i = 0; i < (64 << 10); i++)
    cr_assert_eq(b[i], 0x11, "byte %zu not restored", i);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_stats_t st;
  cr_assert_eq(shmd_stats(s, &st), 0);
  cr_assert_eq(st.allocated_bytes, shmd_usable_size(s, big), "the extension block was not freed");
  shmd_close(s);
}

static void *hold_lane(void *arg) {
  shmd_store_t *s = arg;
  shmd_ptr_t p;
  return (void *)(intptr_t)shmd_alloc(s, 16, &p);
}

Test(store, lanes_run_out_and_come_back) {
  shmd_options_t o = ts_opts(4 << 20, 4 << 20);
  o.max_threads = 2;
  shmd_store_t *s;
  cr_assert_eq(shmd_open("l", &o, &s), 0);
  shmd_ptr_t p;
  cr_assert_eq(shmd_alloc(s, 16, &p), 0); /* lane 1 of 2: this thread */
  for (int i = 0; i < 20; i++) {          /* threads that exit give their lane back */
    pthread_t th;
    void *ret;
    pthread_create(&th, NULL, hold_lane, s);
    pthread_join(th, &ret);
    cr_assert_eq((intptr_t)ret, 0);
  }
  shmd_store_info_t info;
  shmd_store_info(s, &info);
  cr_assert_eq(info.lanes, 2);
  cr_assert_eq(info.lanes_in_use, 1);
  shmd_close(s);
}

/* ---- crash: a process killed while holding a lock ---- */

Test(store, crash_lock_holder_killed_no_deadlock) {
  shmd_store_t *s = ts_open("k", 4 << 20, 4 << 20);
  shmd_ptr_t cell;
  cr_assert_eq(shmd_alloc(s, 64, &cell), 0);
  memset(shmd_resolve(s, cell), 0, 64); /* word 0: a shmd_lock_t; word 1: data it protects */
  cr_assert_eq(shmd_root_set(s, "cell", cell), 0);
  int ready[2];
  pipe(ready);
  pid_t pid = fork();
  if (pid == 0) {
    shmd_store_t *c = ts_open("k", 4 << 20, 4 << 20);
    shmd_tx_t *tx;
    shmd_tx_begin(c, &tx);
    shmd_ptr_t p;
    shmd_root_get(c, "cell", &p);
    shmd_tx_lock(tx, p);
    shmd_ptr_t junk;
    shmd_tx_alloc(tx, 5000, &junk);
    shmd_tx_set64(tx, (uint64_t *)shmd_resolve(c, p) + 1, 999);
    write(ready[1], "x", 1);
    pause(); /* killed here, holding the lock, mid-transaction */
    _exit(0);
  }
  char b;
  cr_assert_eq(read(ready[0], &b, 1), 1);
  shmd_stats_t st;
  shmd_stats(s, &st);
  uint64_t during = st.allocated_bytes;
  kill(pid, SIGKILL);
  cr_assert_eq(ts_wait(pid), 128 + SIGKILL);
  /* Another process (this one) takes the same lock: it must recover, not hang. */
  shmd_tx_t *tx;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_tx_lock(tx, cell), 0);
  cr_assert_eq(((uint64_t *)shmd_resolve(s, cell))[1], 0, "the dead transaction's store was rolled back");
  cr_assert_eq(shmd_tx_commit(tx), 0);
  shmd_stats(s, &st);
  cr_assert_lt(st.allocated_bytes, during, "the dead transaction's allocation was freed");
  cr_assert_geq(st.recoveries, 1);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}

Test(store, garbage_lock_word_is_taken_over) {
  shmd_store_t *s = ts_open("g", 4 << 20, 4 << 20);
  shmd_ptr_t cell;
  cr_assert_eq(shmd_alloc(s, 64, &cell), 0);
  /* Every lane index in turn: lanes no thread owns, and the index of this very thread's lane
   * (a garbage word that happens to name us must not be mistaken for a lock we took). */
  for (uint32_t lane = 1; lane <= 64; lane++) {
    *(uint32_t *)shmd_resolve(s, cell) = lane;
    shmd_tx_t *tx;
    cr_assert_eq(shmd_tx_begin(s, &tx), 0);
    cr_assert_eq(shmd_tx_lock(tx, cell), 0);
    cr_assert_eq(shmd_tx_commit(tx), 0);
    cr_assert_eq(*(uint32_t *)shmd_resolve(s, cell), 0, "word naming lane %u not released", lane - 1);
  }
  shmd_close(s);
}
