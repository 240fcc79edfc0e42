/* SPDX-License-Identifier: MIT */
/*
 * Helpers of the server tests: start shmdict-server (path in $SHMDICT_SERVER_BIN) on a free
 * loopback port with the test's private store directory, start a private redis-server to compare
 * with, and talk RESP over plain sockets (a reply reader that knows when a RESP2 / RESP3 reply is
 * complete). The processes start and stop through the shared helpers of support_cli.h (ts_spawn,
 * ts_port_wait, ts_stop, ts_redis_start): every one dies with the test and is stopped by the
 * test's fini.
 */
#ifndef SHMD_TESTS_SERVER_SUPPORT_H
#define SHMD_TESTS_SERVER_SUPPORT_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <sys/socket.h>

#include "support.h"

static const char *server_bin(void) {
  const char *b = getenv("SHMDICT_SERVER_BIN");
  cr_assert(b && *b, "SHMDICT_SERVER_BIN is not set (run the tests with `meson test`)");
  return b;
}

static uint64_t now_ms(void) { return ts_now_us() / 1000u; }

/* ---------------------------------------------------------------------------------------------- */
/* Sockets */

static int conn_open(int port) {
  int fd = ts_port_connect(port);
  cr_assert(fd >= 0, "connect to port %d: %s", port, strerror(errno));
  return fd;
}

static void conn_send(int fd, const void *p, size_t n) {
  const char *s = p;
  while (n) {
    ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
      continue;
    cr_assert(w > 0, "send: %s", strerror(errno));
    s += w;
    n -= (size_t)w;
  }
}

/* A growable byte buffer. */
typedef struct bytes_s {
  char *p;
  size_t n, cap;
  int eof; /* the peer closed */
} bytes_t;

static void bytes_put(bytes_t *b, const void *p, size_t n) {
  if (b->n + n + 1 > b->cap) {
    b->cap = (b->n + n + 1) * 2;
    b->p = realloc(b->p, b->cap);
    cr_assert_not_null(b->p);
  }
  memcpy(b->p + b->n, p, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void bytes_free(bytes_t *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

/* Length of the first complete RESP2/RESP3 reply in p[0 .. n), 0 when incomplete. */
static size_t resp_reply_len(const char *p, size_t n) {
  if (n < 3)
    return 0;
  const char *nl = memchr(p, '\n', n);
  if (nl == NULL)
    return 0;
  size_t hl = (size_t)(nl - p) + 1;
  long long v = atoll(p + 1);
  switch (p[0]) {
  case '+': case '-': case ':': case ',': case '_': case '#': case '(':
    return hl;
  case '$': case '=': case '!':
    if (v < 0)
      return hl;
    return n >= hl + (size_t)v + 2 ? hl + (size_t)v + 2 : 0;
  case '*': case '~': case '>': case '%': {
    if (v < 0)
      return hl;
    long long items = p[0] == '%' ? 2 * v : v;
    size_t at = hl;
    for (long long i = 0; i < items; i++) {
      size_t l = resp_reply_len(p + at, n - at);
      if (l == 0)
        return 0;
      at += l;
    }
    return at;
  }
  default:
    return hl; /* an inline answer */
  }
}

/* Reads until `nreplies` whole replies arrived, the peer closed, or timeout_ms passed. */
static void conn_read(int fd, bytes_t *b, int nreplies, int timeout_ms) {
  uint64_t end = now_ms() + (uint64_t)timeout_ms;
  for (;;) {
    if (nreplies > 0) {
      size_t at = 0;
      int got = 0;
      while (got < nreplies) {
        size_t l = resp_reply_len(b->p ? b->p + at : "", b->n - at);
        if (l == 0)
          break;
        at += l;
        got++;
      }
      if (got == nreplies)
        return;
    }
    uint64_t now = now_ms();
    if (now >= end)
      return;
    struct pollfd pf = {fd, POLLIN, 0};
    if (poll(&pf, 1, (int)(end - now)) <= 0)
      return;
    char buf[65536];
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    if (r <= 0) {
      b->eof = 1;
      return;
    }
    bytes_put(b, buf, (size_t)r);
  }
}

/* Encodes argv as a multibulk request. */
static void encode(bytes_t *out, int argc, const char *const *argv, const size_t *lens) {
  char h[32];
  int n = snprintf(h, sizeof h, "*%d\r\n", argc);
  bytes_put(out, h, (size_t)n);
  for (int i = 0; i < argc; i++) {
    size_t l = lens ? lens[i] : strlen(argv[i]);
    n = snprintf(h, sizeof h, "$%zu\r\n", l);
    bytes_put(out, h, (size_t)n);
    bytes_put(out, argv[i], l);
    bytes_put(out, "\r\n", 2);
  }
}

/* Splits a command line into a multibulk request (ts_args_split: spaces, "..." quotes). */
static void encode_line(bytes_t *out, const char *line) {
  ts_args_t a = {0};
  ts_args_split(&a, line);
  encode(out, a.argc, (const char *const *)a.argv, a.lens);
  ts_args_free(&a);
}

/* Sends one command line and returns its reply bytes (malloc'd, NUL-terminated). */
static char *cmd(int fd, const char *line) {
  bytes_t req = {0}, rep = {0};
  encode_line(&req, line);
  conn_send(fd, req.p, req.n);
  bytes_free(&req);
  conn_read(fd, &rep, 1, 5000);
  if (rep.p == NULL)
    return strdup(rep.eof ? "<EOF>" : "<timeout>");
  return rep.p;
}

/* Sends argv (NULL-terminated, arguments may contain spaces) and returns the reply bytes. */
static char *cmd_args(int fd, ...) {
  const char *argv[64];
  int argc = 0;
  va_list ap;
  va_start(ap, fd);
  const char *a;
  while ((a = va_arg(ap, const char *)) != NULL && argc < 64)
    argv[argc++] = a;
  va_end(ap);
  bytes_t req = {0}, rep = {0};
  encode(&req, argc, argv, NULL);
  conn_send(fd, req.p, req.n);
  bytes_free(&req);
  conn_read(fd, &rep, 1, 5000);
  return rep.p ? rep.p : strdup(rep.eof ? "<EOF>" : "<timeout>");
}

/* cmd(), compared with the expected reply bytes. */
#define CMD_EQ(fd, line, want)                                                                     \
  do {                                                                                             \
    char *got_ = cmd((fd), (line));                                                                \
    cr_expect_str_eq(got_, (want), "%s", (line));                                                  \
    free(got_);                                                                                    \
  } while (0)

/* ---------------------------------------------------------------------------------------------- */
/* shmdict-server */

typedef struct srvproc_s {
  pid_t pid;
  int port;
  char log[300];
} srvproc_t;

/* Starts shmdict-server with `processes` workers, the test's store directory, store "s", a free
 * port, and the extra options (NULL-terminated); waits until it answers. */
static srvproc_t server_startv(int processes, const char *const *extra) {
  srvproc_t s = {0};
  for (int attempt = 0; attempt < 5; attempt++) {
    s.port = ts_free_port();
    snprintf(s.log, sizeof s.log, "%s/server-%d.log", ts_dir, s.port);
    char ports[16], procs[16];
    snprintf(ports, sizeof ports, "%d", s.port);
    snprintf(procs, sizeof procs, "%d", processes);
    const char *argv[64] = {server_bin(), "--dir", ts_dir, "--store", "s", "--port", ports, "--processes", procs};
    int n = 9;
    for (int i = 0; extra && extra[i] && n < 62; i++)
      argv[n++] = extra[i];
    argv[n] = NULL;
    s.pid = ts_spawn(s.log, (char *const *)argv);
    int rc = ts_port_wait(s.port, s.pid, 5000);
    if (rc == 0) {
      /* every worker up: as many slots as processes answer INFO (or just wait a little) */
      usleep(processes > 1 ? 200000 : 20000);
      return s;
    }
    if (rc == -2) /* still not listening after 5 s: try another port */
      ts_stop(s.pid, 0);
  }
  cr_assert_fail("could not start shmdict-server");
  return s;
}

static srvproc_t server_start(int processes, ...) {
  const char *extra[48];
  int n = 0;
  va_list ap;
  va_start(ap, processes);
  const char *a;
  while ((a = va_arg(ap, const char *)) != NULL && n < 47)
    extra[n++] = a;
  va_end(ap);
  extra[n] = NULL;
  return server_startv(processes, extra);
}

/* Fails the test when the server's log (its workers' stderr) holds a sanitizer report: in an
 * ASan+UBSan build a worker that reads out of bounds dies and is restarted by the supervisor, and
 * UBSan only prints, so without this a report could go unnoticed. */
static void server_log_check(const srvproc_t *s) {
  FILE *f = fopen(s->log, "r");
  if (f == NULL)
    return;
  char line[1024];
  while (fgets(line, sizeof line, f)) {
    if (strstr(line, "ERROR: AddressSanitizer") || strstr(line, "ERROR: LeakSanitizer") ||
        strstr(line, "runtime error:")) {
      /* An assertion failed in a fixture's .fini does not fail the test in Criterion 2.4, and
       * server_stop runs from the fini: end the test's process, which Criterion counts. */
      fprintf(stderr, "sanitizer report in %s: %s", s->log, line);
      fclose(f);
      abort();
    }
  }
  fclose(f);
}

/* SIGTERM, then SIGKILL after 10 s (ts_stop); returns the exit status (128 + signal when killed).
 * Checks the log for sanitizer reports (server_log_check). */
static int server_stop(srvproc_t *s) {
  if (s->pid <= 0)
    return 0;
  int rc = ts_stop(s->pid, 10000);
  s->pid = 0;
  server_log_check(s);
  return rc;
}

/* The worker processes (children of the supervisor). */
static int server_workers(const srvproc_t *s, pid_t *out, int max) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)s->pid, (int)s->pid);
  FILE *f = fopen(path, "r");
  int n = 0;
  if (f) {
    int p;
    while (n < max && fscanf(f, "%d", &p) == 1)
      out[n++] = p;
    fclose(f);
  }
  return n;
}

/* The worker index that serves connection fd (CLIENT INFO's worker= field). */
static int worker_of(int fd) {
  char *r = cmd(fd, "CLIENT INFO");
  char *w = strstr(r, " worker=");
  int idx = w ? atoi(w + 8) : -1;
  free(r);
  return idx;
}

/* Resident memory of a process in KiB. */
static long rss_kib(pid_t pid) { return (long)(ts_rss_bytes(pid) / 1024u); }

/* ---------------------------------------------------------------------------------------------- */
/* A private redis-server to compare with */

static pid_t redis_pid;

static int redis_start(void) { return ts_redis_start(&redis_pid); }

static void redis_stop(void) {
  if (redis_pid > 0) {
    ts_stop(redis_pid, 0);
    redis_pid = 0;
  }
}

#endif
