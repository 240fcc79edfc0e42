/* SPDX-License-Identifier: MIT */
/*
 * The runner of programs of the Criterion suites (see support_cli.h): fork and exec with pipes for
 * the three standard streams, a poll loop that feeds the input and collects the output, and the
 * bounds on the child's memory and silence; and the programs started in the background.
 */
#include "tests/support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <sys/socket.h>

#define DEFAULT_IDLE_MS 60000L
#define DEFAULT_RSS_LIMIT (UINT64_C(2) << 30)

typedef struct {
  char *data;
  size_t len, cap;
} buf_t;

static void buf_put(buf_t *b, const char *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (b->len + n + 1 > cap)
      cap *= 2;
    b->data = realloc(b->data, cap);
    cr_assert_not_null(b->data);
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
}

static char *buf_take(buf_t *b) {
  if (b->data == NULL)
    return strdup("");
  return b->data;
}

const char *ts_cli_bin(void) {
  const char *b = getenv("SHMDICT_BIN");
  cr_assert(b && *b, "SHMDICT_BIN is not set (run the tests with `meson test`, which sets it)");
  return b;
}

void ts_run_free(ts_run_t *r) {
  free(r->out);
  free(r->err);
  r->out = r->err = NULL;
}

ts_run_t ts_run_prog(const ts_run_opts_t *o, char *const argv[]) {
  static const ts_run_opts_t none;
  if (o == NULL)
    o = &none;
  long idle_limit = o->idle_ms ? o->idle_ms : DEFAULT_IDLE_MS;
  uint64_t rss_limit = o->rss_limit ? o->rss_limit : DEFAULT_RSS_LIMIT;
  int pin[2], pout[2], perr[2];
  cr_assert(pipe(pin) == 0 && pipe(pout) == 0 && pipe(perr) == 0, "pipe: %s", strerror(errno));
  pid_t pid = ts_fork();
  cr_assert(pid >= 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    dup2(pin[0], 0);
    dup2(pout[1], 1);
    dup2(o->merge_stderr ? pout[1] : perr[1], 2);
    close(pin[0]), close(pin[1]), close(pout[0]), close(pout[1]), close(perr[0]), close(perr[1]);
    for (const char *const *e = o->env; e != NULL && *e != NULL; e++) {
      const char *eq = strchr(*e, '=');
      if (eq == NULL) {
        unsetenv(*e);
      } else {
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(eq - *e), *e);
        setenv(name, eq + 1, 1);
      }
    }
    execvp(argv[0], argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  close(pin[0]), close(pout[1]), close(perr[1]);
  fcntl(pin[1], F_SETFL, O_NONBLOCK);
  buf_t out = {0}, err = {0};
  size_t inpos = 0;
  if (o->inlen == 0)
    close(pin[1]), pin[1] = -1;
  int open_out = 1, open_err = 1, hung = 0;
  long idle_ms = 0;
  while (open_out || open_err) {
    struct pollfd p[3] = {{pout[0], POLLIN, 0}, {perr[0], POLLIN, 0}, {pin[1], POLLOUT, 0}};
    int np = pin[1] >= 0 ? 3 : 2;
    int ready = poll(p, (nfds_t)np, 20);
    if (ts_rss_bytes(pid) > rss_limit)
      kill(pid, SIGKILL); /* its pipes close: the loop ends */
    if (ready < 0 && errno != EINTR)
      break;
    if (ready <= 0) {
      idle_ms += 20;
      if (idle_limit > 0 && idle_ms >= idle_limit) {
        hung = 1;
        kill(pid, SIGKILL);
        break;
      }
      continue;
    }
    idle_ms = 0;
    char b[65536];
    for (int k = 0; k < 2; k++) {
      if (p[k].fd < 0 || !(p[k].revents & (POLLIN | POLLHUP)))
        continue;
      ssize_t n = read(p[k].fd, b, sizeof b);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0) {
        close(p[k].fd);
        if (k == 0)
          open_out = 0, pout[0] = -1;
        else
          open_err = 0, perr[0] = -1;
      } else {
        buf_put(k == 0 ? &out : &err, b, (size_t)n);
      }
    }
    if (np == 3 && (p[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t n = write(pin[1], o->in + inpos, o->inlen - inpos);
      if (n > 0)
        inpos += (size_t)n;
      if ((n < 0 && errno != EAGAIN && errno != EINTR) || inpos == o->inlen)
        close(pin[1]), pin[1] = -1;
    }
  }
  if (pin[1] >= 0)
    close(pin[1]);
  if (pout[0] >= 0)
    close(pout[0]);
  if (perr[0] >= 0)
    close(perr[0]);
  int st = ts_wait(pid);
  ts_run_t r = {hung ? TS_HUNG : st, buf_take(&out), buf_take(&err), out.len, err.len};
  return r;
}

ts_run_t ts_runv(const char *in, size_t inlen, char *const argv[]) {
  ts_run_opts_t o = {.in = in, .inlen = inlen};
  return ts_run_prog(&o, argv);
}

ts_run_t ts_cli(const char *in, ...) {
  char *argv[64];
  int n = 0;
  argv[n++] = (char *)ts_cli_bin();
  va_list ap;
  va_start(ap, in);
  const char *a;
  while ((a = va_arg(ap, const char *)) != NULL && n < 63)
    argv[n++] = (char *)a;
  va_end(ap);
  argv[n] = NULL;
  return ts_runv(in, in ? strlen(in) : 0, argv);
}

ts_run_t ts_sh(const char *fmt, ...) {
  char cmd[8192];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  cr_assert_lt(n, (int)sizeof cmd, "shell line of %d bytes", n);
  char *argv[] = {"/bin/sh", "-c", cmd, NULL};
  return ts_runv(NULL, 0, argv);
}

/* ---- programs in the background ---- */

pid_t ts_spawn(const char *log, char *const argv[]) {
  pid_t pid = ts_fork();
  cr_assert(pid >= 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    int fd = log != NULL ? open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600) : open("/dev/null", O_WRONLY);
    if (fd >= 0) {
      dup2(fd, 1);
      if (log != NULL)
        dup2(fd, 2);
      close(fd);
    }
    execvp(argv[0], argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  return pid;
}

int ts_stop(pid_t pid, long term_ms) {
  if (term_ms <= 0)
    return ts_kill_wait(pid);
  kill(pid, SIGTERM);
  int st = ts_wait_for(pid, term_ms);
  return st == TS_HUNG ? 128 + SIGKILL : st;
}

static struct sockaddr_in loopback(int port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

int ts_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  cr_assert(fd >= 0, "socket: %s", strerror(errno));
  struct sockaddr_in a = loopback(0);
  cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0, "bind: %s", strerror(errno));
  socklen_t l = sizeof a;
  cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0, "getsockname: %s", strerror(errno));
  close(fd);
  return ntohs(a.sin_port);
}

int ts_port_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  struct sockaddr_in a = loopback(port);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

int ts_port_wait(int port, pid_t pid, long timeout_ms) {
  uint64_t end = ts_now_us() + (uint64_t)timeout_ms * 1000u;
  for (;;) {
    int fd = ts_port_connect(port);
    if (fd >= 0) {
      close(fd);
      return 0;
    }
    int st;
    if (ts_reap(pid, &st) != 0)
      return -1;
    if (ts_now_us() >= end)
      return -2;
    ts_sleep_us(25000);
  }
}

int ts_redis_start(pid_t *pid) {
  for (int attempt = 0; attempt < 5; attempt++) {
    int port = ts_free_port();
    char ports[16];
    snprintf(ports, sizeof ports, "%d", port);
    char *argv[] = {"redis-server", "--port", ports, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--dir", ts_dir, NULL};
    pid_t p = ts_spawn(NULL, argv);
    int rc = ts_port_wait(port, p, 5000);
    if (rc == 0) {
      *pid = p;
      return port;
    }
    if (rc == -2) /* still starting after 5 s: try again */
      ts_kill_wait(p);
  }
  cr_assert_fail("could not start redis-server on a loopback port (is it installed? run scripts/setup.sh)");
  return -1;
}
