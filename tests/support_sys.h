/* SPDX-License-Identifier: MIT */
/*
 * Helpers free of Criterion, shared by the Criterion suites (through support.h) and the plain test
 * programs (tests/torture, tests/tsan_heaps.c): child processes that die with the test, waits with
 * a time bound, crash points, the test seed, the monotonic clock, and the one directory remover.
 * The crash harness of the suites (support_crash.h) is built on these; the torture driver uses
 * them directly.
 */
#ifndef SHMD_TESTS_SUPPORT_SYS_H
#define SHMD_TESTS_SUPPORT_SYS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A wait status none of the kernel's can be: the child outlived its time bound and was killed. */
#define TS_HUNG 1000

/* A seeded xorshift64 generator: ts_rng_t r = {seed}. */
typedef struct {
  uint64_t s;
} ts_rng_t;

static inline uint64_t ts_next(ts_rng_t *r) {
  uint64_t x = r->s ? r->s : 0x9E3779B97F4A7C15ull;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return r->s = x;
}

/* Uniform enough below n (0 when n is 0). */
static inline uint64_t ts_below(ts_rng_t *r, uint64_t n) { return n ? ts_next(r) % n : 0; }

/* The monotonic clock, in microseconds and nanoseconds. */
uint64_t ts_now_us(void);
uint64_t ts_now_ns(void);
void ts_sleep_us(uint64_t us);

/* fork() for tests: flushes stdio first, and the child is SIGKILLed when the thread that forked it
 * ends (prctl PR_SET_PDEATHSIG), so a test that fails or times out never leaves a child behind.
 * Returns the child's pid in the parent, 0 in the child, -1 (errno set) on failure. */
pid_t ts_fork(void);

/* fork() for the rare child that must outlive the process that forked it (a test of what a
 * reparented child keeps): flushes stdio first, no parent-death signal. The caller bounds its life
 * (alarm()) and kills it. */
pid_t ts_fork_detached(void);

/* A waitpid() status as the tests use it: the exit code, or 128 + signal when killed. */
int ts_status(int wstatus);

/* Waits for child `pid` at most `timeout_ms` (< 0: for ever) and returns its status; a child still
 * running then is SIGKILLed, reaped, and TS_HUNG returned. */
int ts_wait_for(pid_t pid, long timeout_ms);

/* Without waiting: 1 (and its status in *status) when child `pid` has ended and is now reaped, 0
 * while it runs, -1 when there is no such child. */
int ts_reap(pid_t pid, int *status);

/* SIGKILLs child `pid`, reaps it and returns its status (128 + SIGKILL, or how it ended first). */
int ts_kill_wait(pid_t pid);

/* The resident memory of process `pid` in bytes (0 once it is gone). */
uint64_t ts_rss_bytes(pid_t pid);

/* write() of all n bytes, retried on EINTR: 0, or -1 on failure. */
int ts_write_all(int fd, const void *p, size_t n);

/* Crash points (segments/crash.c): SHMDICT_CRASH_POINT="name" or "name:n" for this process (NULL
 * unsets it); the library arms it at the next shmd_open(). ts_crash_point_arm() arms it at once
 * instead, so that what an open already did (the recovery of a dead lane) is not counted. */
void ts_crash_point_set(const char *point);
void ts_crash_point_arm(const char *point);

/* The seed of a randomised test: SHMDICT_TEST_SEED when set (to replay a run), otherwise one made
 * from the clock and the pid. The caller prints it (support.h's ts_seed() does). */
uint64_t ts_seed_value(void);

/* Removes a directory tree (a test's private store directory); a path that is not a directory is
 * unlinked. Symbolic links are removed, never followed. */
void ts_rmtree(const char *path);

#endif
