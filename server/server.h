/* SPDX-License-Identifier: MIT */
/*
 * Internal to shmdict-server: what its files share (Redis's server.h of the server). One worker
 * process runs one libuv loop with its clients; the supervisor (main.c) forks the workers and
 * restarts the ones that die. See docs/architecture.md, "The server".
 */
#ifndef SHMD_SERVER_H
#define SHMD_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "kv/cmdtable.h"
#include "server/resp.h"
#include "shmdict.h"

/* What HELLO and INFO report: the Redis version whose protocol and replies the server follows. */
#define SRV_REDIS_VERSION "7.0.15"
#define SRV_MAX_WORKERS 64

/* ---------------------------------------------------------------------------------------------- */
/* Configuration (config.c) */

typedef struct srv_obl_s { /* client-output-buffer-limit of one class */
  uint64_t hard, soft, soft_seconds;
} srv_obl_t;

typedef struct srv_config_s {
  /* fixed at start */
  char *dir;           /* store directory (SHMDICT_DIR) */
  char *store;         /* store name */
  int port;            /* 0: no TCP */
  char *bind[16];      /* addresses (default 127.0.0.1) */
  int nbind;
  char *unixsocket;
  unsigned unixsocketperm;
  int processes;
  int tcp_backlog;
  char *aclfile;
  char *pidfile;
  char *logfile;
  char *config_file;
  uint64_t store_segment_bytes; /* 0: the library's default */
  uint64_t pubsub_ring_bytes;   /* size of the pub/sub ring, fixed when the store's ring is made */
  /* changeable with CONFIG SET (shared by the workers through the store, see shared.c) */
  char *requirepass;     /* NULL: none */
  uint64_t maxclients;
  uint64_t timeout;      /* idle seconds, 0 = never */
  uint64_t tcp_keepalive;
  int protected_mode;
  srv_obl_t obl_normal, obl_pubsub;
  uint64_t query_buffer_limit;
  uint64_t proto_max_bulk_len;
  int64_t slowlog_slower_than; /* microseconds; < 0 off */
  uint64_t slowlog_max_len;
  int loglevel;          /* 0 debug, 1 verbose, 2 notice, 3 warning */
} srv_config_t;

extern srv_config_t cfg;

void srv_config_defaults(srv_config_t *c);
/* Applies "name value..." (a config-file line or a --name value option). 0, or -1 with an error
 * message in err. `startup` allows the options that only take effect at start. */
int srv_config_set(srv_config_t *c, int argc, const char **argv, const size_t *lens, int startup, char *err,
                   size_t errcap);
int srv_config_load_file(srv_config_t *c, const char *path, char *err, size_t errcap);
/* CONFIG GET pattern...: appends (name, value) pairs to the reply. */
void srv_config_get(obuf_t *o, int proto, int argc, const char **argv, const size_t *lens);
/* Options that CONFIG SET may change and that the workers share: serialised for the store. */
size_t srv_config_pack(const srv_config_t *c, char *buf, size_t cap);
int srv_config_unpack(srv_config_t *c, const char *buf, size_t len);

/* Logging (Redis's format: "pid:role dd Mon yyyy hh:mm:ss.mmm * message"). */
void srv_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
enum { LL_DEBUG, LL_VERBOSE, LL_NOTICE, LL_WARNING };

/* ---------------------------------------------------------------------------------------------- */
/* Clients (worker.c) */

enum {
  CF_CLOSE_AFTER_REPLY = 1u << 0,
  CF_CLOSE_ASAP = 1u << 1,
  CF_PUBSUB = 1u << 2,        /* has subscriptions */
  CF_MONITOR = 1u << 3,
  CF_BLOCKED = 1u << 4,
  CF_PENDING_WRITE = 1u << 5, /* on the list of clients to flush before the loop sleeps */
  CF_UNIX = 1u << 6,
  CF_CLOSING = 1u << 7,       /* uv_close called; freed in its callback */
  CF_PROTOCOL_ERROR = 1u << 8,
  CF_IN_COMMAND = 1u << 9,
};

struct srv_block_s;

typedef struct client_s {
  uint64_t id;
  int fd;
  uv_poll_t poll;
  int poll_events;
  unsigned flags;
  char *qbuf;
  size_t qlen, qcap, qpos; /* bytes [qpos, qlen) not parsed yet */
  size_t qpeak;            /* largest query buffer use since the last cron (shrinking) */
  resp_parser_t ps;
  obuf_t out;
  int resp;          /* 2 or 3 */
  unsigned db;
  int authed;
  char *user;        /* the authenticated user name ("default") */
  char *name;        /* CLIENT SETNAME */
  char addr[64], laddr[64];
  uint64_t ctime_ms, last_ms;
  const char *last_cmd; /* full name of the last command ("client|list") */
  uint64_t obl_soft_since_ms; /* when the soft output limit was first passed (0: not passed) */
  struct client_s *next, *prev; /* all clients */
  struct client_s *pnext;       /* pending writes */
  /* pub/sub (pubsub.c): this client's subscriptions, in the worker's tables */
  size_t nchannels, npatterns;
  struct srv_psclient_s *psub;
  /* blocking (blocking.c) */
  struct srv_block_s *blk;
} client_t;

/* One worker's state. */
typedef struct srv_worker_s {
  uv_loop_t *loop;
  shmd_store_t *store;
  int slot;          /* the worker's slot in the store's server area */
  int index;         /* the supervisor's worker number */
  uint64_t start_ms;
  uv_poll_t listen_tcp[16];
  int listen_fd[16];
  int nlisten;
  uv_poll_t listen_unix;
  int unix_fd;
  uv_prepare_t before_sleep;
  uv_timer_t cron;
  uv_async_t wake;   /* the notifier thread: pub/sub messages and pushes to keys clients wait on */
  uv_signal_t sigterm, sigint;
  client_t *clients;
  client_t *pending;
  uint64_t nclients;
  uint64_t nmonitors;
  uint64_t nblocked;
  uint64_t npubsub;  /* clients with subscriptions */
  int stopping;
  /* statistics (this worker's; INFO adds the other workers' from the store) */
  uint64_t stat_conns, stat_rejected, stat_cmds, stat_net_in, stat_net_out, stat_obl_closed;
  uint64_t stat_keyspace_hits, stat_keyspace_misses;
  uint64_t ops_sample_cmds, ops_sample_ms, ops_per_sec;
  uint64_t config_gen;
} srv_worker_t;

extern srv_worker_t srv;

void client_reply_flush_later(client_t *c);
void client_close_async(client_t *c);
void client_free_now(client_t *c);
/* Runs the commands buffered in c's query buffer (also after c was unblocked). */
void client_process_input(client_t *c);
/* After writing to c's output: checks the output-buffer limits (closes c when over). */
void client_check_obl(client_t *c);
/* Is c's client-list line ("id=... addr=...") written into o (as bytes)? */
void client_info_line(client_t *c, obuf_t *o);
uint64_t srv_now_ms(void);
uint64_t srv_now_us(void);

/* A cheap monotonic tick for timing commands (the slow log): the CPU's time-stamp counter on
 * x86-64 (invariant TSC, calibrated at start), else CLOCK_MONOTONIC in ns. Two clock_gettime
 * calls per command measured as 7% of a worker's time under redis-benchmark (docs/bench.md);
 * a TSC read costs a few ns. */
#if defined(__x86_64__)
static inline uint64_t srv_ticks(void) { return __builtin_ia32_rdtsc(); }
#else
uint64_t srv_ticks(void);
#endif
extern uint64_t srv_ticks_per_us;
void srv_ticks_calibrate(void);

int worker_main(int index);

/* ---------------------------------------------------------------------------------------------- */
/* Commands (commands.c) */

enum {
  SC_NOAUTH = 1u << 0,   /* allowed before AUTH (Redis's no-auth) */
  SC_PUBSUB = 1u << 1,   /* allowed in RESP2's subscribed context */
  SC_WRITE = 1u << 2,
  SC_READONLY = 1u << 3,
  SC_ADMIN = 1u << 4,
  SC_NOSCRIPT = 1u << 5,
  SC_LOADING = 1u << 6,
  SC_STALE = 1u << 7,
  SC_FAST = 1u << 8,
  SC_SENTINEL = 1u << 9,
  SC_BLOCKING = 1u << 10,
  SC_DENYOOM = 1u << 11,
  SC_NOMULTI = 1u << 12,
  SC_PUBSUB_FLAG = 1u << 13, /* Redis's "pubsub" flag */
  SC_RANDOM = 1u << 14,
  SC_NOPROPAGATE = 1u << 15,
};

typedef struct srv_cmd_s srv_cmd_t;
struct srv_cmd_s {
  const char *name;     /* lower case; a subcommand's is "sub", its fullname "cmd|sub" */
  int arity;
  unsigned flags;
  void (*proc)(client_t *c, int argc, const char **argv, const size_t *lens);
  int first_key, last_key, key_step;
  const char *group, *syntax, *summary;
  const srv_cmd_t *subs; /* a container command's subcommands, NULL-name terminated */
  const char *fullname;
};

/* The command named argv[0] (and its subcommand), server table first, then the keyspace's. */
typedef struct srv_lookup_s {
  const srv_cmd_t *scmd;       /* a server command */
  const shmd__kv_cmd_t *kcmd;  /* or a keyspace command */
  const char *fullname;
} srv_lookup_t;

void srv_commands_init(void);
/* Runs one command of c (lookup, arity, AUTH and context checks, MONITOR, SLOWLOG, statistics). */
void srv_process_command(client_t *c, int argc, const char **argv, const size_t *lens);
/* Finds the command; on failure writes Redis's unknown-command / unknown-subcommand / arity
 * error to c and returns -1. */
int srv_lookup(client_t *c, int argc, const char **argv, const size_t *lens, srv_lookup_t *out);
void srv_call(client_t *c, const srv_lookup_t *lk, int argc, const char **argv, const size_t *lens);
/* Runs a keyspace command for c and writes its reply (RESP2 or RESP3). */
void srv_kv_call(client_t *c, const shmd__kv_cmd_t *kc, int argc, const char **argv, const size_t *lens);
/* Writes a keyspace reply tree as the command's RESP2 / RESP3 reply (shape.c). */
void srv_write_reply(client_t *c, const char *cmd, int argc, const char **argv, const size_t *lens,
                     const shmd_reply_t *r);
size_t srv_command_count(void);
void srv_slowlog_add(client_t *c, int argc, const char **argv, const size_t *lens, uint64_t us);
void srv_monitor_feed(client_t *c, int argc, const char **argv, const size_t *lens);
void srv_reset_client(client_t *c);

/* ---------------------------------------------------------------------------------------------- */
/* The store side of the server (shared.c): slots, shared statistics, shared configuration */

int srv_shared_attach(void);
void srv_shared_detach(void);
void srv_shared_cron(void);     /* publishes this worker's statistics, picks up CONFIG SET */
int srv_shared_config_set(void);/* stores cfg's changeable options for every worker */
uint64_t srv_shared_next_client_id(void);
typedef struct srv_totals_s {
  uint64_t workers, clients, conns, rejected, cmds, net_in, net_out, blocked, pubsub_clients, obl_closed;
  uint64_t ops_per_sec;
} srv_totals_t;
void srv_shared_totals(srv_totals_t *t);

/* INFO (info.c) */
void srv_info(client_t *c, int argc, const char **argv, const size_t *lens);

/* ---------------------------------------------------------------------------------------------- */
/* Pub/sub (pubsub.c) and blocking pops (blocking.c), worker side */

int srv_pubsub_init(void);
void srv_pubsub_poll(void);          /* delivers messages that arrived in the store's ring */
void srv_pubsub_client_gone(client_t *c);
void srv_cmd_subscribe(client_t *c, int argc, const char **argv, const size_t *lens);
void srv_cmd_unsubscribe(client_t *c, int argc, const char **argv, const size_t *lens);
void srv_cmd_psubscribe(client_t *c, int argc, const char **argv, const size_t *lens);
void srv_cmd_punsubscribe(client_t *c, int argc, const char **argv, const size_t *lens);
void srv_cmd_publish(client_t *c, int argc, const char **argv, const size_t *lens);
void srv_cmd_pubsub(client_t *c, int argc, const char **argv, const size_t *lens);
void srv_cmd_pubsub_channels(client_t *c, int argc, const char **argv, const size_t *lens);
void srv_cmd_pubsub_numsub(client_t *c, int argc, const char **argv, const size_t *lens);
void srv_cmd_pubsub_numpat(client_t *c, int argc, const char **argv, const size_t *lens);
void srv_pubsub_unsubscribe_all(client_t *c, int notify);
uint64_t srv_pubsub_local_channels(void);
uint64_t srv_pubsub_local_patterns(void);

int srv_block_init(void);
void srv_block_poll(void);           /* retries the pops of clients whose keys were pushed to */
void srv_block_cron(void);
void srv_block_client_gone(client_t *c);
void srv_cmd_blpop(client_t *c, int argc, const char **argv, const size_t *lens);
void srv_cmd_brpop(client_t *c, int argc, const char **argv, const size_t *lens);
void srv_cmd_blmove(client_t *c, int argc, const char **argv, const size_t *lens);
void srv_cmd_brpoplpush(client_t *c, int argc, const char **argv, const size_t *lens);
void srv_cmd_blmpop(client_t *c, int argc, const char **argv, const size_t *lens);
void srv_cmd_bzpopmin(client_t *c, int argc, const char **argv, const size_t *lens);
void srv_cmd_bzpopmax(client_t *c, int argc, const char **argv, const size_t *lens);
void srv_cmd_bzmpop(client_t *c, int argc, const char **argv, const size_t *lens);

/* The notifier thread: waits on the store's wake-up word and wakes the loop (worker.c). */
int srv_notifier_start(void);
void srv_notifier_stop(void);

#endif
