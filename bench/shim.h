/* SPDX-License-Identifier: MIT */
/*
 * The C side of the benchmark shim.
 *
 * Benchmarks are written in C; google-benchmark (a C++ library) drives them. This header is the
 * whole interface between the two: C code registers functions by name, and inside a function runs
 * its timed loop through shim_batch(). Everything C++ lives in shim.cc, which also holds the one
 * baseline that only has a C++ API (Boost.Interprocess, at the bottom of this header).
 *
 * A benchmark function looks like this:
 *
 *   static void bm_pair(shim_state_t *st, void *arg) {
 *     ... set-up, not timed ...
 *     for (uint64_t n; (n = shim_batch(st)) != 0;)
 *       for (uint64_t i = 0; i < n; i++)
 *         ... one iteration ...
 *     shim_set_ops(st, ops_done);
 *     ... tear-down, not timed ...
 *   }
 *
 * Timing. google-benchmark appends "/real_time" or "/threads:N" to a benchmark's name when it is
 * asked to measure wall time or to run threads, and our names must stay exactly
 * "<workload>/<allocator>". So the shim does not use those features: it measures the wall time of
 * the timed region itself (from the first shim_batch() to the one that returns 0, minus pauses) and
 * reports it as the counter "ns_per_op" = wall nanoseconds / shim_set_ops(), and the CPU time the
 * calling thread used in that region as "cpu_ns_per_op" (less sensitive to other processes on a
 * busy machine, but blind to other threads). A benchmark that needs a second thread starts it
 * itself. ns_per_op is the figure bench/report.py uses by default.
 */
#ifndef SHMD_BENCH_SHIM_H
#define SHMD_BENCH_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One run of one benchmark (wraps benchmark::State). Valid only during the call of the function it
 * was passed to, and only on the thread that called it. */
typedef struct shim_state_s shim_state_t;

typedef void (*shim_fn_t)(shim_state_t *st, void *arg);

/* Registers `fn` under `name` (copied), to be called with `arg` for every run. Call before
 * shim_run(). google-benchmark calls a function several times with growing iteration counts. */
void shim_register(const char *name, shim_fn_t fn, void *arg);

/* Adds a key/value line to the "context" of the report (console header, JSON "context"). */
void shim_context(const char *key, const char *value);

/* Parses google-benchmark's flags from argv (--benchmark_filter, --benchmark_format,
 * --benchmark_min_time, ...), runs the selected benchmarks and returns the process exit status
 * (non-zero for an unknown flag). */
int shim_run(int argc, char **argv);

/* The timed loop. The first call starts the clock and returns the number of iterations to run
 * (all of them at once); the next call stops the clock and returns 0. */
uint64_t shim_batch(shim_state_t *st);

/* Alternative one-at-a-time loop: `while (shim_keep_running(st)) { ... }`. One call per
 * iteration, so it adds a couple of nanoseconds to each; prefer shim_batch(). */
int shim_keep_running(shim_state_t *st);

/* Iterations this run will do (known before the loop starts). */
uint64_t shim_iterations(const shim_state_t *st);

/* Stop and restart the clocks (google-benchmark's and the shim's) inside the timed loop. Costly
 * (hundreds of nanoseconds): only around work that is large compared to that. */
void shim_pause(shim_state_t *st);
void shim_resume(shim_state_t *st);

/* The number of operations the timed region did (all threads together); the shim reports
 * ns_per_op = timed wall nanoseconds / ops and cpu_ns_per_op = the calling thread's CPU
 * nanoseconds in the timed region / ops. Without it neither is reported. */
void shim_set_ops(shim_state_t *st, double ops);

/* Sets a plain counter shown next to the result (console) and in the JSON. */
void shim_counter(shim_state_t *st, const char *name, double value);

/* Marks this run as failed with `msg` (copied); the loop then ends at once (shim_batch() returns 0
 * and shim_keep_running() returns false). The function should return without further work. */
void shim_skip_with_error(shim_state_t *st, const char *msg);

/* ---------------------------------------------------------------------------------------------- */
/* Boost.Interprocess baseline: a managed_shared_memory segment (POSIX shm_open, i.e. a file in
 * /dev/shm) with its default allocator (rbtree_best_fit, a process-shared mutex). One segment per
 * process. Implemented in shim.cc because Boost has only a C++ API. */

/* Creates the segment `name` (a POSIX shm name without the leading '/') of `bytes` bytes. Returns
 * 0, or -1 with a message in err[0..err_len) (nothing is left behind). */
int bipc_open(const char *name, size_t bytes, char *err, size_t err_len);

/* allocate()/deallocate() on the segment; bipc_alloc returns NULL when the segment is full. */
void *bipc_alloc(size_t size);
void bipc_free(void *p);

/* Unmaps the segment and removes its name. A no-op when none is open. */
void bipc_close(void);

/* The Boost version, e.g. "1_74". */
const char *bipc_version(void);

#ifdef __cplusplus
}
#endif
#endif /* SHMD_BENCH_SHIM_H */
