/* SPDX-License-Identifier: MIT */
/*
 * One shmdict-server worker process (Redis's networking.c + the event loop of server.c): a libuv
 * loop that accepts connections on the worker's own SO_REUSEPORT socket (and the inherited Unix
 * socket), reads requests into each client's query buffer, runs every complete command, appends
 * the replies to the client's output buffer and writes them out before the loop sleeps.
 *
 * The request path, and why it allocates nothing in a steady state
 * -----------------------------------------------------------------
 * read(2) fills the query buffer; the parser (resp.c) records each argument as an offset into it;
 * the command runs with argv pointing into the buffer (no copy); the keyspace's reply is written
 * straight into the output buffer in RESP2 or RESP3 (shape.c) and its tree freed; then the next
 * command of the same read runs. All the replies of one read -- a whole pipeline -- go out in one
 * write(2) from the uv_prepare callback that runs before the loop polls again (Redis's
 * beforeSleep / handleClientsWithPendingWrites). The buffers and argument arrays are kept for the
 * connection's life (the query buffer shrinks back in the cron when a burst is over), so a client
 * that sends the same kind of traffic again allocates nothing in this file.
 *
 * Other jobs of the worker: idle timeouts, output-buffer limits, query-buffer limits, protected
 * mode and maxclients at accept, the cron (100 ms: timeouts, statistics into the store, CONFIG SET
 * from other workers, active expiry, reaping dead workers' slots), and the notifier thread that
 * sleeps on the store's wake-up word (a futex, kv/pubsub.c) and wakes the loop for pub/sub
 * messages and for pushes to keys that blocked clients wait on.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "kv/notify.h"
#include "server/server.h"

srv_worker_t srv;

/* Set by main.c before the fork: the Unix socket every worker accepts on (-1: none), and the pid
 * of the worker this one replaces (its slot is reclaimed). */
int srv_unix_listen_fd = -1;
uint32_t srv_replaces_pid;

uint64_t srv_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t srv_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t srv_ticks_per_us = 1000;
#if !defined(__x86_64__)
uint64_t srv_ticks(void) { return mono_ns(); }
#endif

void srv_ticks_calibrate(void) {
#if defined(__x86_64__)
  uint64_t n0 = mono_ns(), t0 = srv_ticks();
  while (mono_ns() - n0 < 20000000u) /* 20 ms */
    ;
  uint64_t n1 = mono_ns(), t1 = srv_ticks();
  uint64_t per = (t1 - t0) * 1000u / (n1 - n0 ? n1 - n0 : 1);
  srv_ticks_per_us = per ? per : 1;
#endif
}

/* ---------------------------------------------------------------------------------------------- */
/* Clients: creation and freeing */

static void on_client_event(uv_poll_t *h, int status, int events);

static void set_events(client_t *c, int events) {
  if (c->flags & CF_CLOSING)
    return;
  if (events != c->poll_events) {
    uv_poll_start(&c->poll, events, on_client_event);
    c->poll_events = events;
  }
}

static void on_client_closed(uv_handle_t *h) {
  client_t *c = h->data;
  close(c->fd);
  free(c->qbuf);
  resp_free(&c->ps);
  obuf_free(&c->out);
  free(c->name);
  free(c->user);
  free(c);
}

/* Unlinks c from everything and closes its handle; the memory goes in the close callback. */
void client_free_now(client_t *c) {
  if (c->flags & CF_CLOSING)
    return;
  c->flags |= CF_CLOSING;
  if (c->flags & CF_BLOCKED)
    srv_block_client_gone(c);
  if (c->nchannels || c->npatterns)
    srv_pubsub_client_gone(c);
  if (c->flags & CF_MONITOR)
    srv.nmonitors--;
  if (c->prev)
    c->prev->next = c->next;
  else
    srv.clients = c->next;
  if (c->next)
    c->next->prev = c->prev;
  if (c->flags & CF_PENDING_WRITE) {
    client_t **pp = &srv.pending;
    while (*pp && *pp != c)
      pp = &(*pp)->pnext;
    if (*pp)
      *pp = c->pnext;
  }
  srv.nclients--;
  uv_poll_stop(&c->poll);
  uv_close((uv_handle_t *)&c->poll, on_client_closed);
}

/* Closes c before the loop sleeps (never in the middle of its own command). */
void client_close_async(client_t *c) {
  if (c->flags & (CF_CLOSE_ASAP | CF_CLOSING))
    return;
  c->flags |= CF_CLOSE_ASAP;
  client_reply_flush_later(c);
}

void client_reply_flush_later(client_t *c) {
  if (c->flags & (CF_PENDING_WRITE | CF_CLOSING))
    return;
  c->flags |= CF_PENDING_WRITE;
  c->pnext = srv.pending;
  srv.pending = c;
}

static void addr_string(const struct sockaddr_storage *sa, char *out, size_t cap, int is_unix, const char *unix_path) {
  if (is_unix) {
    snprintf(out, cap, "%s:0", unix_path ? unix_path : "");
    return;
  }
  char ip[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (sa->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const void *)sa;
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    port = ntohs(a->sin_port);
    snprintf(out, cap, "%s:%d", ip, port);
  } else if (sa->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const void *)sa;
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
    port = ntohs(a->sin6_port);
    snprintf(out, cap, "%s:%d", ip, port);
  } else {
    snprintf(out, cap, "?:0");
  }
}

static int is_loopback(const struct sockaddr_storage *sa) {
  if (sa->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const void *)sa;
    return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
  }
  if (sa->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const void *)sa;
    if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr))
      return 1;
    if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
      return a->sin6_addr.s6_addr[12] == 127;
  }
  return 0;
}

static const char denied_msg[] =
    "-DENIED Redis is running in protected mode because protected mode is enabled and no password is set for "
    "the default user. In this mode connections are only accepted from the loopback interface. If you want to "
    "connect from external computers to Redis you may adopt one of the following solutions: 1) Just disable "
    "protected mode sending the command 'CONFIG SET protected-mode no' from the loopback interface by connecting "
    "to Redis from the same host the server is running, however MAKE SURE Redis is not publicly accessible from "
    "internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just "
    "disable the protected mode by editing the Redis configuration file, and setting the protected mode option "
    "to 'no', and then restarting the server. 3) If you started the server manually just for testing, restart "
    "it with the '--protected-mode no' option. 4) Setup a bind address or an authentication password. NOTE: You "
    "only need to do one of the above things in order for the server to start accepting connections from the "
    "outside.\r\n";

extern int srv_default_needs_auth(void);

static void accept_one(int fd, int is_unix) {
  struct sockaddr_storage sa, la;
  socklen_t sl = sizeof sa, ll = sizeof la;
  memset(&sa, 0, sizeof sa);
  memset(&la, 0, sizeof la);
  if (!is_unix) {
    getpeername(fd, (struct sockaddr *)&sa, &sl);
    getsockname(fd, (struct sockaddr *)&la, &ll);
  }
  srv_totals_t t;
  srv_shared_totals(&t);
  if (t.clients >= cfg.maxclients) {
    static const char err[] = "-ERR max number of clients reached\r\n";
    if (write(fd, err, sizeof err - 1) < 0) {
    }
    srv.stat_rejected++;
    close(fd);
    return;
  }
  if (!is_unix && cfg.protected_mode && !srv_default_needs_auth() && !is_loopback(&sa)) {
    if (write(fd, denied_msg, sizeof denied_msg - 1) < 0) {
    }
    srv.stat_rejected++;
    close(fd);
    return;
  }
  client_t *c = calloc(1, sizeof *c);
  if (c == NULL) {
    close(fd);
    return;
  }
  c->fd = fd;
  c->id = srv_shared_next_client_id();
  c->resp = 2;
  c->ps.bulk = -1;
  c->authed = !srv_default_needs_auth();
  c->ctime_ms = c->last_ms = srv_now_ms();
  c->last_cmd = "NULL";
  if (is_unix) {
    c->flags |= CF_UNIX;
    addr_string(&sa, c->addr, sizeof c->addr, 1, cfg.unixsocket);
    addr_string(&la, c->laddr, sizeof c->laddr, 1, cfg.unixsocket);
  } else {
    addr_string(&sa, c->addr, sizeof c->addr, 0, NULL);
    addr_string(&la, c->laddr, sizeof c->laddr, 0, NULL);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (cfg.tcp_keepalive) {
      setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
      int idle = (int)cfg.tcp_keepalive, intvl = (int)(cfg.tcp_keepalive / 3 ? cfg.tcp_keepalive / 3 : 1), cnt = 3;
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    }
  }
  if (uv_poll_init(srv.loop, &c->poll, fd) != 0) {
    close(fd);
    free(c);
    return;
  }
  c->poll.data = c;
  c->next = srv.clients;
  if (srv.clients)
    srv.clients->prev = c;
  srv.clients = c;
  srv.nclients++;
  srv.stat_conns++;
  set_events(c, UV_READABLE);
}

static void on_listen(uv_poll_t *h, int status, int events) {
  (void)events;
  if (status < 0 || srv.stopping)
    return;
  int lfd = *(int *)h->data;
  int is_unix = h == &srv.listen_unix;
  for (int i = 0; i < 1000; i++) { /* Redis's MAX_ACCEPTS_PER_CALL */
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
        srv_log(LL_WARNING, "Accepting client connection: %s", strerror(errno));
      return;
    }
    accept_one(fd, is_unix);
  }
}

/* ---------------------------------------------------------------------------------------------- */
/* Writing */

/* Sends what c has pending. Returns -1 when c was freed. */
static int write_to_client(client_t *c) {
  while (obuf_pending(&c->out) > 0) {
    ssize_t n = write(c->fd, c->out.buf + c->out.pos, obuf_pending(&c->out));
    if (n > 0) {
      c->out.pos += (size_t)n;
      srv.stat_net_out += (uint64_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    client_free_now(c); /* the peer went away */
    return -1;
  }
  if (obuf_pending(&c->out) == 0) {
    c->out.pos = c->out.len = 0;
    /* Give a big buffer back once it is drained (a big reply, a pub/sub burst). */
    if (c->out.cap > 1024 * 1024) {
      free(c->out.buf);
      c->out.buf = NULL;
      c->out.cap = 0;
    }
    if (c->flags & CF_CLOSE_AFTER_REPLY) {
      client_free_now(c);
      return -1;
    }
    c->obl_soft_since_ms = 0;
    set_events(c, UV_READABLE);
  } else {
    set_events(c, UV_READABLE | UV_WRITABLE);
  }
  return 0;
}

/* Before the loop sleeps: close the clients marked to close, write the others' replies. */
static void before_sleep(uv_prepare_t *h) {
  (void)h;
  while (srv.pending) {
    client_t *c = srv.pending;
    srv.pending = c->pnext;
    c->flags &= ~CF_PENDING_WRITE;
    if (c->flags & CF_CLOSE_ASAP) {
      client_free_now(c);
      continue;
    }
    write_to_client(c);
  }
}

void client_check_obl(client_t *c) {
  const srv_obl_t *l = (c->nchannels || c->npatterns) ? &cfg.obl_pubsub : &cfg.obl_normal;
  size_t used = obuf_pending(&c->out);
  int over = 0;
  if (c->out.oom)
    over = 1;
  else if (l->hard && used >= l->hard)
    over = 1;
  else if (l->soft && used >= l->soft) {
    uint64_t now = srv_now_ms();
    if (c->obl_soft_since_ms == 0)
      c->obl_soft_since_ms = now;
    else if (now - c->obl_soft_since_ms >= l->soft_seconds * 1000)
      over = 1;
  } else {
    c->obl_soft_since_ms = 0;
  }
  if (over && !(c->flags & CF_CLOSE_ASAP)) {
    srv_log(LL_WARNING,
            "Client id=%llu addr=%s scheduled to be closed ASAP for overcoming of output buffer limits.",
            (unsigned long long)c->id, c->addr);
    srv.stat_obl_closed++;
    c->out.pos = c->out.len; /* drop what is queued: the connection goes */
    client_close_async(c);
  }
}

/* ---------------------------------------------------------------------------------------------- */
/* Reading and running commands */

static void protocol_error(client_t *c, const char *err) {
  char buf[512];
  int n = snprintf(buf, sizeof buf, "ERR %s", err);
  resp_error(&c->out, buf, (size_t)(n < (int)sizeof buf ? n : (int)sizeof buf - 1));
  srv_log(LL_VERBOSE, "Protocol error (%s) from client: id=%llu addr=%s", err, (unsigned long long)c->id, c->addr);
  c->flags |= CF_CLOSE_AFTER_REPLY | CF_PROTOCOL_ERROR;
  client_reply_flush_later(c);
}

/* Moves the unparsed part of the query buffer (from the start of the command being read) to the
 * front; the parser's offsets move with it. */
static size_t cmd_start_of(client_t *c) {
  if (c->ps.kind == 1 && c->ps.argc > 0)
    return c->ps.off[0];
  return c->qpos;
}

static void compact_qbuf(client_t *c) {
  size_t start = c->qpos;
  if (c->ps.kind == 1 && c->ps.argc > 0) {
    /* Arguments of the command in progress live before qpos; keep them (and the header bytes
     * before the first one are not needed). */
    start = c->ps.off[0];
  }
  if (start == 0)
    return;
  if (start >= c->qlen) {
    c->qlen = c->qpos = 0;
    return;
  }
  memmove(c->qbuf, c->qbuf + start, c->qlen - start);
  c->qlen -= start;
  c->qpos -= start;
  for (size_t i = 0; i < c->ps.argc; i++)
    c->ps.off[i] -= start;
}

void client_process_input(client_t *c) {
  if (c->flags & CF_IN_COMMAND)
    return;
  c->flags |= CF_IN_COMMAND;
  resp_limits_t lim = {(long long)cfg.proto_max_bulk_len, !c->authed};
  while (!(c->flags & (CF_BLOCKED | CF_CLOSE_AFTER_REPLY | CF_CLOSE_ASAP | CF_CLOSING))) {
    const char *err = NULL;
    char errbuf[128];
    lim.unauth = !c->authed;
    int rc = resp_parse(&c->ps, c->qbuf, c->qlen, &c->qpos, &lim, &err, errbuf, sizeof errbuf);
    if (rc == RESP_MORE)
      break;
    if (rc == RESP_ERR) {
      protocol_error(c, err);
      break;
    }
    if (rc == RESP_NOMEM) {
      client_close_async(c);
      break;
    }
    size_t argc = c->ps.argc;
    if (argc > 0) {
      const char **argv = resp_argv(&c->ps, c->qbuf);
      if (argv == NULL) {
        client_close_async(c);
        break;
      }
      srv_process_command(c, (int)argc, argv, c->ps.len);
      if (c->out.len > 0)
        client_reply_flush_later(c);
    }
    resp_reset(&c->ps);
  }
  if (c->qpos >= c->qlen && c->ps.kind == 0)
    c->qpos = c->qlen = 0;
  c->flags &= ~CF_IN_COMMAND;
  if (c->out.len > c->out.pos) {
    client_reply_flush_later(c);
    client_check_obl(c);
  }
}

static void read_from_client(client_t *c) {
  /* Room to read into: at least 16 KiB, or what the argument being read still needs (capped at
   * twice what the buffer holds, so a claimed length is never allocated before its bytes come). */
  size_t want = 16 * 1024;
  size_t need = resp_need(&c->ps);
  if (need > 0) {
    size_t have = c->qlen - c->qpos;
    if (need > have && need - have > want)
      want = need - have;
    size_t held = c->qlen - cmd_start_of(c);
    if (want > held * 2 + 16 * 1024)
      want = held * 2 + 16 * 1024;
  }
  if (c->qcap - c->qlen < want) {
    compact_qbuf(c);
    if (c->qcap - c->qlen < want) {
      size_t cap = c->qcap ? c->qcap : 16 * 1024;
      while (cap - c->qlen < want)
        cap *= 2;
      char *b = realloc(c->qbuf, cap);
      if (b == NULL) {
        client_free_now(c);
        return;
      }
      c->qbuf = b;
      c->qcap = cap;
    }
  }
  ssize_t n = read(c->fd, c->qbuf + c->qlen, c->qcap - c->qlen);
  if (n == 0) {
    client_free_now(c);
    return;
  }
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
      return;
    client_free_now(c);
    return;
  }
  c->qlen += (size_t)n;
  c->last_ms = srv_now_ms(); /* once per read, not per command */
  if (c->qlen > c->qpeak)
    c->qpeak = c->qlen;
  srv.stat_net_in += (uint64_t)n;
  if (c->qlen - cmd_start_of(c) > cfg.query_buffer_limit) {
    srv_log(LL_WARNING, "Closing client that reached max query buffer length: id=%llu addr=%s (qbuf initial bytes: ...)",
            (unsigned long long)c->id, c->addr);
    client_free_now(c);
    return;
  }
  client_process_input(c);
}

static void on_client_event(uv_poll_t *h, int status, int events) {
  client_t *c = h->data;
  if (c->flags & CF_CLOSING)
    return;
  if (status < 0) {
    client_free_now(c);
    return;
  }
  if (events & UV_WRITABLE) {
    if (write_to_client(c) < 0)
      return;
  }
  if ((events & UV_READABLE) && !(c->flags & (CF_CLOSING | CF_CLOSE_ASAP)))
    read_from_client(c);
}

/* ---------------------------------------------------------------------------------------------- */
/* Client list lines (CLIENT LIST / INFO) */

static void flags_of(client_t *c, char *out) {
  char *p = out;
  if (c->flags & CF_PUBSUB)
    *p++ = 'P';
  if (c->flags & CF_MONITOR)
    *p++ = 'O';
  if (c->flags & CF_BLOCKED)
    *p++ = 'b';
  if (c->flags & CF_CLOSE_AFTER_REPLY)
    *p++ = 'c';
  if (c->flags & CF_UNIX)
    *p++ = 'U';
  if (c->flags & CF_CLOSE_ASAP)
    *p++ = 'A';
  if (p == out)
    *p++ = 'N';
  *p = 0;
}

void client_info_line(client_t *c, obuf_t *o) {
  char fl[16];
  flags_of(c, fl);
  uint64_t now = srv_now_ms();
  char ev[4] = "r";
  if (c->poll_events & UV_WRITABLE)
    strcpy(ev, "rw");
  char line[1024];
  int n = snprintf(line, sizeof line,
                   "id=%llu addr=%s laddr=%s fd=%d name=%s age=%llu idle=%llu flags=%s db=%u sub=%zu psub=%zu "
                   "ssub=0 multi=-1 qbuf=%zu qbuf-free=%zu argv-mem=0 multi-mem=0 rbs=%zu rbp=%zu obl=%zu oll=0 "
                   "omem=%zu tot-mem=%zu events=%s cmd=%s user=%s redir=-1 resp=%d worker=%d\n",
                   (unsigned long long)c->id, c->addr, c->laddr, c->fd, c->name ? c->name : "",
                   (unsigned long long)((now - c->ctime_ms) / 1000), (unsigned long long)((now - c->last_ms) / 1000), fl,
                   c->db, c->nchannels, c->npatterns, c->qlen - c->qpos, c->qcap - c->qlen, c->qcap, c->qpeak,
                   obuf_pending(&c->out), c->out.cap, c->qcap + c->out.cap + sizeof *c, ev, c->last_cmd,
                   c->user ? c->user : "default", c->resp, srv.index);
  obuf_add(o, line, (size_t)(n < (int)sizeof line ? n : (int)sizeof line - 1));
}

/* ---------------------------------------------------------------------------------------------- */
/* The notifier thread */

static pthread_t notifier;
static volatile int notifier_stop;
static uint32_t *wake_word;

static void *notifier_main(void *arg) {
  (void)arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  uint32_t last = __atomic_load_n(wake_word, __ATOMIC_ACQUIRE);
  while (!__atomic_load_n(&notifier_stop, __ATOMIC_ACQUIRE)) {
    uint32_t v = __atomic_load_n(wake_word, __ATOMIC_ACQUIRE);
    if (v != last) {
      last = v;
      uv_async_send(&srv.wake);
    }
    struct timespec ts = {1, 0}; /* wake up now and then to see notifier_stop */
    syscall(SYS_futex, wake_word, FUTEX_WAIT, v, &ts, NULL, 0);
  }
  return NULL;
}

static void on_wake(uv_async_t *h) {
  (void)h;
  srv_pubsub_poll();
  srv_block_poll();
}

int srv_notifier_start(void) {
  kv_ps_root_t *r = shmd__kv_ps_root(srv.store);
  if (r == NULL)
    return -1;
  wake_word = &r->wake;
  return pthread_create(&notifier, NULL, notifier_main, NULL) ? -1 : 0;
}

void srv_notifier_stop(void) {
  if (wake_word == NULL)
    return;
  __atomic_store_n(&notifier_stop, 1, __ATOMIC_RELEASE);
  __atomic_fetch_add(wake_word, 0, __ATOMIC_SEQ_CST);
  syscall(SYS_futex, wake_word, FUTEX_WAKE, 0x7fffffff, NULL, NULL, 0);
  pthread_join(notifier, NULL);
  wake_word = NULL;
}

/* ---------------------------------------------------------------------------------------------- */
/* Cron */

static void on_cron(uv_timer_t *h) {
  (void)h;
  uint64_t now = srv_now_ms();
  /* idle timeouts, output-buffer soft limits, query buffers back to small after a burst */
  for (client_t *c = srv.clients, *next; c; c = next) {
    next = c->next;
    if (c->flags & (CF_CLOSING | CF_CLOSE_ASAP))
      continue;
    if (cfg.timeout && !(c->flags & (CF_BLOCKED | CF_MONITOR)) && !(c->nchannels || c->npatterns) &&
        now - c->last_ms > cfg.timeout * 1000) {
      srv_log(LL_VERBOSE, "Closing idle client");
      client_close_async(c);
      continue;
    }
    if (obuf_pending(&c->out))
      client_check_obl(c);
    if (c->qcap > 64 * 1024 && c->qlen == c->qpos && c->ps.kind == 0 && c->qpeak < c->qcap / 2) {
      free(c->qbuf);
      c->qbuf = NULL;
      c->qcap = c->qlen = c->qpos = 0;
    }
    c->qpeak = c->qlen;
  }
  /* instantaneous ops/sec (Redis's sample of the last second) */
  if (now - srv.ops_sample_ms >= 1000) {
    srv.ops_per_sec = (srv.stat_cmds - srv.ops_sample_cmds) * 1000 / (now - srv.ops_sample_ms);
    srv.ops_sample_ms = now;
    srv.ops_sample_cmds = srv.stat_cmds;
  }
  srv_shared_cron();
  /* Wake-ups lost to a killed publisher or pusher cost at most one tick: look at the ring and at
   * the buckets' sequence numbers; once a second, retry every blocked client (a push made inside
   * an application's open transaction signals nothing). */
  srv_pubsub_poll();
  srv_block_poll();
  static unsigned ticks;
  if (++ticks % 10 == 0)
    srv_block_cron();
  /* active expiry, a little per database per tick */
  static unsigned db;
  for (int i = 0; i < 4; i++) {
    size_t expired = 0;
    shmd_kv_expire_step(srv.store, db, 20, &expired);
    db = (db + 1) % SHMD_KV_DATABASES;
  }
}

/* ---------------------------------------------------------------------------------------------- */
/* Listening */

static int listen_tcp(const char *addr, int port) {
  struct sockaddr_storage ss;
  socklen_t sl;
  memset(&ss, 0, sizeof ss);
  int family;
  if (strchr(addr, ':')) {
    struct sockaddr_in6 *a = (void *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, addr, &a->sin6_addr) != 1)
      return -1;
    family = AF_INET6;
    sl = sizeof *a;
  } else {
    struct sockaddr_in *a = (void *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, addr, &a->sin_addr) != 1)
      return -1;
    family = AF_INET;
    sl = sizeof *a;
  }
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, cfg.tcp_backlog) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

static void on_signal(uv_signal_t *h, int signum) {
  (void)h;
  srv_log(LL_NOTICE, "Received %s, worker %d shutting down.", signum == SIGINT ? "SIGINT" : "SIGTERM", srv.index);
  srv.stopping = 1;
  uv_stop(srv.loop);
}

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return;
  rlim_t want = (rlim_t)cfg.maxclients + 64;
  if (rl.rlim_cur >= want)
    return;
  rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
}

int worker_main(int index) {
  memset(&srv, 0, sizeof srv);
  srv.index = index;
  srv.start_ms = srv_now_ms();
  srv.unix_fd = srv_unix_listen_fd;
  srv_ticks_calibrate();
  signal(SIGPIPE, SIG_IGN);
  raise_nofile();
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = cfg.dir;
  if (cfg.store_segment_bytes) {
    o.first_segment_bytes = cfg.store_segment_bytes;
    o.segment_bytes = cfg.store_segment_bytes;
  }
  int rc = shmd_open(cfg.store, &o, &srv.store);
  if (rc) {
    srv_log(LL_WARNING, "Worker %d: cannot open store '%s': %s (%s)", index, cfg.store, shmd_strerror(rc),
            shmd_errdetail());
    return 2;
  }
  if (srv_shared_attach() != 0)
    return 2;
  srv_commands_init();
  srv.loop = uv_default_loop();
  if (srv_pubsub_init() != 0 || srv_block_init() != 0) {
    srv_log(LL_WARNING, "Worker %d: cannot set up pub/sub in the store", index);
    return 2;
  }
  uv_async_init(srv.loop, &srv.wake, on_wake);
  uv_prepare_init(srv.loop, &srv.before_sleep);
  uv_prepare_start(&srv.before_sleep, before_sleep);
  uv_timer_init(srv.loop, &srv.cron);
  uv_timer_start(&srv.cron, on_cron, 100, 100);
  uv_signal_init(srv.loop, &srv.sigterm);
  uv_signal_start(&srv.sigterm, on_signal, SIGTERM);
  uv_signal_init(srv.loop, &srv.sigint);
  uv_signal_start(&srv.sigint, on_signal, SIGINT);
  if (cfg.port) {
    int nb = cfg.nbind ? cfg.nbind : 1;
    for (int i = 0; i < nb && srv.nlisten < 16; i++) {
      const char *a = cfg.nbind ? cfg.bind[i] : "127.0.0.1";
      int optional = a[0] == '-';
      if (optional)
        a++;
      int fd = listen_tcp(a, cfg.port);
      if (fd < 0) {
        if (optional)
          continue;
        srv_log(LL_WARNING, "Worker %d: could not create server TCP listening socket %s:%d: %s", index, a, cfg.port,
                strerror(errno));
        return 3;
      }
      srv.listen_fd[srv.nlisten] = fd;
      uv_poll_init(srv.loop, &srv.listen_tcp[srv.nlisten], fd);
      srv.listen_tcp[srv.nlisten].data = &srv.listen_fd[srv.nlisten];
      uv_poll_start(&srv.listen_tcp[srv.nlisten], UV_READABLE, on_listen);
      srv.nlisten++;
    }
  }
  if (srv.unix_fd >= 0) {
    uv_poll_init(srv.loop, &srv.listen_unix, srv.unix_fd);
    srv.listen_unix.data = &srv.unix_fd;
    uv_poll_start(&srv.listen_unix, UV_READABLE, on_listen);
  }
  if (srv_notifier_start() != 0) {
    srv_log(LL_WARNING, "Worker %d: cannot start the notifier thread", index);
    return 2;
  }
  srv_log(LL_NOTICE, "Worker %d (slot %d) ready to accept connections", index, srv.slot);
  uv_run(srv.loop, UV_RUN_DEFAULT);
  /* Shut down: close the listeners and the clients, give the slot back. */
  for (int i = 0; i < srv.nlisten; i++)
    close(srv.listen_fd[i]);
  srv_notifier_stop();
  while (srv.clients)
    client_free_now(srv.clients);
  srv_shared_detach();
  shmd_close(srv.store);
  return 0;
}
