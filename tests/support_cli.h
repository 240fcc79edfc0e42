/* SPDX-License-Identifier: MIT */
/*
 * The one runner of programs for the Criterion suites: the shmdict binary ($SHMDICT_BIN, set by
 * tests/meson.build), the example, a shell line, any program. It forks and execs as a user would,
 * feeds standard input, collects standard output and error, and bounds the child: it is killed
 * when its resident memory passes a limit (2 GiB by default: a regression that builds a reply of
 * 2^63 elements fails its test instead of taking the host down, in every build) or when it stays
 * silent too long (60 s by default). It also starts programs that run in the background while the
 * test talks to them (a server, a private redis-server), which die with the test and are stopped by
 * it. Definitions in tests/support_cli.c.
 */
#ifndef SHMD_TESTS_SUPPORT_CLI_H
#define SHMD_TESTS_SUPPORT_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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

/* ---- programs in the background ---- */

/* Starts argv (argv[0] a path or a name looked up in PATH) in the background: its standard output
 * and error go to file `log` (created or truncated), or with log NULL its standard output to
 * /dev/null and its standard error to the test's. It dies with the test (ts_fork). Returns its
 * pid; the test fails when it cannot fork. */
pid_t ts_spawn(const char *log, char *const argv[]);
/* Stops a background program: SIGTERM, then SIGKILL when it still runs term_ms later (term_ms 0:
 * SIGKILL at once); reaps it and returns its status (exit code, or 128 + signal). */
int ts_stop(pid_t pid, long term_ms);
/* A TCP port of the loopback interface that nobody listens on now (bound to port 0, released). */
int ts_free_port(void);
/* Connects to the loopback `port` (TCP_NODELAY set): the socket, or -1 when nothing listens. */
int ts_port_connect(int port);
/* Waits until something accepts connections on the loopback `port`: 0; -1, with program `pid`
 * reaped, when it ended first, or -2 when timeout_ms passed (pid still running). */
int ts_port_wait(int port, pid_t pid, long timeout_ms);
/* Starts a private redis-server to compare with: a free loopback port, no persistence, its
 * working directory the test's. Returns the port and its pid in *pid (stop it with ts_stop); the
 * test fails when redis-server cannot be started (it names scripts/setup.sh). */
int ts_redis_start(pid_t *pid);

#endif
