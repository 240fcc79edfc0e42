/* SPDX-License-Identifier: MIT */
/*
 * The one runner of programs for the Criterion suites: the shmdict binary ($SHMDICT_BIN, set by
 * tests/meson.build), the example, a shell line, any program. It forks and execs as a user would,
 * feeds standard input, collects standard output and error, and bounds the child: it is killed
 * when its resident memory passes a limit (2 GiB by default: a regression that builds a reply of
 * 2^63 elements fails its test instead of taking the host down, in every build) or when it stays
 * silent too long (60 s by default). Definitions in tests/support_cli.c.
 */
#ifndef SHMD_TESTS_SUPPORT_CLI_H
#define SHMD_TESTS_SUPPORT_CLI_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  int status; /* exit code, 128 + signal, or TS_HUNG when killed for its silence */
  char *out, *err; /* NUL-terminated; err is "" with merge_stderr */
  size_t outlen, errlen;
} ts_run_t;

typedef struct {
  const char *in;   /* standard input, inlen bytes (NULL: none) */
  size_t inlen;
  const char *const *env; /* "NAME=value" set in the child, "NAME" unset; NULL-terminated */
  int merge_stderr;       /* standard error goes to out (as 2>&1) */
  long idle_ms;           /* killed after this long without output: 0 = 60 s, < 0 = never */
  uint64_t rss_limit;     /* killed once its RSS passes this: 0 = 2 GiB */
} ts_run_opts_t;

/* Runs argv (argv[0] a path or a name looked up in PATH) with the options (NULL: defaults). */
ts_run_t ts_run_prog(const ts_run_opts_t *o, char *const argv[]);
/* Runs argv with `in` on standard input. */
ts_run_t ts_runv(const char *in, size_t inlen, char *const argv[]);
/* ts_cli(stdin or NULL, "arg", ..., NULL): runs the shmdict binary. */
ts_run_t ts_cli(const char *in, ...);
/* Runs a shell command line (pipes between tools, ulimit). */
ts_run_t ts_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ts_run_free(ts_run_t *r);
/* The shmdict binary ($SHMDICT_BIN; the test fails when it is not set). */
const char *ts_cli_bin(void);

#endif
