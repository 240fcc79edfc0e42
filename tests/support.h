/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the Criterion tests: a private store directory per test (never the default
 * one), a seeded random generator whose seed is printed on failure, and the test support the suites
 * share: processes and the directory remover (support_sys.h), the crash harness
 * (support_crash.h), the in-process keyspace command runner (support_kv.h) and the runner of the
 * shmdict binary and other programs (support_cli.h). The .c files are linked into every suite
 * (tests/meson.build).
 */
#ifndef SHMD_TESTS_SUPPORT_H
#define SHMD_TESTS_SUPPORT_H

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmdict.h"
#include "tests/support_cli.h"
#include "tests/support_crash.h"
#include "tests/support_kv.h"
#include "tests/support_sys.h"

/* The test's private store directory (under /dev/shm, removed by ts_fini; tests/support.c). */
extern char ts_dir[256];

/* Creates the private directory and points SHMDICT_DIR at it, so nothing touches the default. */
static inline void ts_init(void) {
  snprintf(ts_dir, sizeof ts_dir, "/dev/shm/shmdict-test-XXXXXX");
  cr_assert_not_null(mkdtemp(ts_dir), "mkdtemp failed");
  setenv("SHMDICT_DIR", ts_dir, 1);
}

/* Removes the private directory; after a failed crash test, says which run failed first. */
static inline void ts_fini(void) {
  ts_crash_fini();
  if (ts_dir[0] != '\0')
    ts_rmtree(ts_dir);
}

/* Options for a small test store in the private directory. */
static inline shmd_options_t ts_opts(uint64_t first_bytes, uint64_t seg_bytes) {
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = ts_dir;
  o.first_segment_bytes = first_bytes;
  o.segment_bytes = seg_bytes;
  return o;
}

static inline shmd_store_t *ts_open(const char *name, uint64_t first_bytes, uint64_t seg_bytes) {
  shmd_options_t o = ts_opts(first_bytes, seg_bytes);
  shmd_store_t *s = NULL;
  int rc = shmd_open(name, &o, &s);
  cr_assert_eq(rc, 0, "shmd_open(%s): %s (%s)", name, shmd_strerror(rc), shmd_errdetail());
  return s;
}

/* The seed of a randomised test: SHMDICT_TEST_SEED or the clock, printed so that a failure can be
 * replayed. Draw from it with a ts_rng_t (support_sys.h). */
static inline uint64_t ts_seed(const char *what) {
  uint64_t seed = ts_seed_value();
  cr_log_info("%s: seed %llu (replay with SHMDICT_TEST_SEED=%llu)", what, (unsigned long long)seed,
              (unsigned long long)seed);
  return seed;
}

/* Waits for a child; returns its exit status, or 128 + signal if it was killed. */
static inline int ts_wait(pid_t pid) { return ts_wait_for(pid, -1); }

#endif
