/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the Criterion tests: a private store directory per test (never the default
 * one), a seeded random generator whose seed is printed on failure, and a fork-and-wait helper.
 */
#ifndef SHMD_TESTS_SUPPORT_H
#define SHMD_TESTS_SUPPORT_H

#include <criterion/criterion.h>
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
#include "tests/rmtree.h"

/* The test's private store directory (under /dev/shm, removed by ts_fini). */
static char ts_dir[256];

/* Creates the private directory and points SHMDICT_DIR at it, so nothing touches the default. */
static inline void ts_init(void) {
  snprintf(ts_dir, sizeof ts_dir, "/dev/shm/shmdict-test-XXXXXX");
  cr_assert_not_null(mkdtemp(ts_dir), "mkdtemp failed");
  setenv("SHMDICT_DIR", ts_dir, 1);
}

static inline void ts_fini(void) {
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

/* Seeded xorshift; the seed comes from SHMDICT_TEST_SEED or the clock and is printed so that a
 * failure can be replayed. */
typedef struct {
  uint64_t s;
} ts_rng_t;

static inline uint64_t ts_seed(const char *what) {
  const char *env = getenv("SHMDICT_TEST_SEED");
  uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
  cr_log_info("%s: seed %llu (replay with SHMDICT_TEST_SEED=%llu)", what,
              (unsigned long long)seed, (unsigned long long)seed);
  return seed;
}

static inline uint64_t ts_next(ts_rng_t *r) {
  uint64_t x = r->s ? r->s : 0x9E3779B97F4A7C15ull;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return r->s = x;
}

static inline uint64_t ts_below(ts_rng_t *r, uint64_t n) { return n ? ts_next(r) % n : 0; }

/* Waits for a child; returns its exit status, or 128 + signal if it was killed. */
static inline int ts_wait(pid_t pid) {
  int st = 0;
  while (waitpid(pid, &st, 0) < 0)
    ;
  if (WIFSIGNALED(st))
    return 128 + WTERMSIG(st);
  return WEXITSTATUS(st);
}

#endif
