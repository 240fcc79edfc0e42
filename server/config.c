/* SPDX-License-Identifier: MIT */
/*
 * shmdict-server's options (Redis's config.c): one table of every option with its type, default,
 * whether CONFIG SET may change it, and its CONFIG GET text. The same table reads the config file
 * (Redis's format: "name value ..." per line, '#' comments, quoting as redis.conf), the command
 * line (--name value ...) and CONFIG SET / CONFIG GET. Options that CONFIG SET changes are shared
 * by all the workers through the store (shared.c packs them with srv_config_pack()), so a CONFIG
 * SET on any connection holds for every worker, and for a worker the supervisor restarts.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "kv/util.h"
#include "server/server.h"

srv_config_t cfg;

void srv_config_defaults(srv_config_t *c) {
  memset(c, 0, sizeof *c);
  c->port = 6379;
  c->processes = 1;
  c->tcp_backlog = 511;
  c->unixsocketperm = 0;
  c->maxclients = 10000;
  c->timeout = 0;
  c->tcp_keepalive = 300;
  c->protected_mode = 1;
  c->obl_normal = (srv_obl_t){0, 0, 0};
  c->obl_pubsub = (srv_obl_t){32ull << 20, 8ull << 20, 60};
  c->query_buffer_limit = 1ull << 30;
  c->proto_max_bulk_len = 512ull << 20;
  c->slowlog_slower_than = 10000;
  c->slowlog_max_len = 128;
  c->loglevel = LL_NOTICE;
  c->pubsub_ring_bytes = 8ull << 20;
}

/* ---------------------------------------------------------------------------------------------- */
/* Logging */

void srv_log(int level, const char *fmt, ...) {
  if (level < cfg.loglevel)
    return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  localtime_r(&tv.tv_sec, &tm);
  char ts[64];
  size_t n = strftime(ts, sizeof ts, "%d %b %Y %H:%M:%S.", &tm);
  snprintf(ts + n, sizeof ts - n, "%03d", (int)(tv.tv_usec / 1000));
  const char marks[] = ".-*#";
  FILE *f = stderr;
  FILE *opened = NULL;
  if (cfg.logfile && cfg.logfile[0]) {
    opened = fopen(cfg.logfile, "a");
    if (opened)
      f = opened;
  }
  fprintf(f, "%d:%c %s %c %s\n", (int)getpid(), srv.store ? 'W' : 'S', ts, marks[level & 3], msg);
  if (opened)
    fclose(opened);
  else
    fflush(f);
}

/* ---------------------------------------------------------------------------------------------- */
/* Values */

/* Redis's memtoull: a number with an optional unit (k, kb, m, mb, g, gb; case-insensitive). */
static int parse_mem(const char *s, size_t n, uint64_t *out) {
  char buf[64];
  if (n == 0 || n >= sizeof buf)
    return -1;
  memcpy(buf, s, n);
  buf[n] = 0;
  size_t i = 0;
  while (i < n && isdigit((unsigned char)buf[i]))
    i++;
  if (i == 0)
    return -1;
  uint64_t mul = 1;
  const char *u = buf + i;
  if (*u == 0)
    mul = 1;
  else if (!strcasecmp(u, "b"))
    mul = 1;
  else if (!strcasecmp(u, "k"))
    mul = 1000;
  else if (!strcasecmp(u, "kb"))
    mul = 1024;
  else if (!strcasecmp(u, "m"))
    mul = 1000 * 1000;
  else if (!strcasecmp(u, "mb"))
    mul = 1024 * 1024;
  else if (!strcasecmp(u, "g"))
    mul = 1000ull * 1000 * 1000;
  else if (!strcasecmp(u, "gb"))
    mul = 1024ull * 1024 * 1024;
  else
    return -1;
  buf[i] = 0;
  errno = 0;
  unsigned long long v = strtoull(buf, NULL, 10);
  if (errno || (mul > 1 && v > UINT64_MAX / mul))
    return -1;
  *out = v * mul;
  return 0;
}

static int parse_u64(const char *s, size_t n, uint64_t *out) {
  long long v;
  if (shmd__kv_parse_ll(s, n, &v) || v < 0)
    return -1;
  *out = (uint64_t)v;
  return 0;
}

static char *dupn(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = 0;
  }
  return d;
}

static int yesno(const char *s, size_t n, int *out) {
  if (n == 3 && !strncasecmp(s, "yes", 3))
    *out = 1;
  else if (n == 2 && !strncasecmp(s, "no", 2))
    *out = 0;
  else
    return -1;
  return 0;
}

static const char *level_names[] = {"debug", "verbose", "notice", "warning"};

/* ---------------------------------------------------------------------------------------------- */
/* The table */

enum { T_STR, T_INT, T_BOOL, T_MEM, T_I64, T_OBL, T_BIND, T_LEVEL, T_OCTAL, T_FIXED };
enum {
  O_MUTABLE = 1, /* CONFIG SET may change it (and the workers share it) */
  O_HIDDEN = 2,  /* not matched by CONFIG GET patterns with wildcards */
};

typedef struct opt_s {
  const char *name;
  int type;
  unsigned flags;
  void *ptr;
  const char *fixed; /* T_FIXED: the value CONFIG GET reports */
  uint64_t min, max;
} opt_t;

#define P(f) ((void *)&cfg.f)
static const opt_t opts[] = {
    {"port", T_INT, 0, P(port), NULL, 0, 65535},
    {"bind", T_BIND, 0, NULL, NULL, 0, 0},
    {"unixsocket", T_STR, 0, P(unixsocket), NULL, 0, 0},
    {"unixsocketperm", T_OCTAL, 0, P(unixsocketperm), NULL, 0, 0777},
    {"dir", T_STR, 0, P(dir), NULL, 0, 0},
    {"store", T_STR, 0, P(store), NULL, 0, 0},
    {"processes", T_INT, 0, P(processes), NULL, 1, SRV_MAX_WORKERS},
    {"tcp-backlog", T_INT, 0, P(tcp_backlog), NULL, 0, 65535},
    {"aclfile", T_STR, 0, P(aclfile), NULL, 0, 0},
    {"pidfile", T_STR, 0, P(pidfile), NULL, 0, 0},
    {"logfile", T_STR, 0, P(logfile), NULL, 0, 0},
    {"segment-bytes", T_MEM, 0, P(store_segment_bytes), NULL, 0, UINT64_MAX},
    {"pubsub-ring-bytes", T_MEM, 0, P(pubsub_ring_bytes), NULL, 64 * 1024, 1ull << 32},
    {"requirepass", T_STR, O_MUTABLE, P(requirepass), NULL, 0, 0},
    {"maxclients", T_INT, O_MUTABLE, P(maxclients), NULL, 1, 1000000},
    {"timeout", T_INT, O_MUTABLE, P(timeout), NULL, 0, INT32_MAX},
    {"tcp-keepalive", T_INT, O_MUTABLE, P(tcp_keepalive), NULL, 0, INT32_MAX},
    {"protected-mode", T_BOOL, O_MUTABLE, P(protected_mode), NULL, 0, 0},
    {"client-output-buffer-limit", T_OBL, O_MUTABLE, NULL, NULL, 0, 0},
    {"client-query-buffer-limit", T_MEM, O_MUTABLE, P(query_buffer_limit), NULL, 1024 * 1024, INT64_MAX},
    {"proto-max-bulk-len", T_MEM, O_MUTABLE, P(proto_max_bulk_len), NULL, 1024 * 1024, 512ull << 20},
    {"slowlog-log-slower-than", T_I64, O_MUTABLE, P(slowlog_slower_than), NULL, 0, 0},
    {"slowlog-max-len", T_INT, O_MUTABLE, P(slowlog_max_len), NULL, 0, INT32_MAX},
    {"loglevel", T_LEVEL, O_MUTABLE, P(loglevel), NULL, 0, 0},
    {"databases", T_FIXED, 0, NULL, "16", 0, 0},
    {"save", T_FIXED, 0, NULL, "", 0, 0},
    {"appendonly", T_FIXED, 0, NULL, "no", 0, 0},
    {"daemonize", T_FIXED, 0, NULL, "no", 0, 0},
    {"maxmemory", T_FIXED, 0, NULL, "0", 0, 0},
    {"maxmemory-policy", T_FIXED, 0, NULL, "noeviction", 0, 0},
    {"io-threads", T_FIXED, 0, NULL, "1", 0, 0},
    {"cluster-enabled", T_FIXED, 0, NULL, "no", 0, 0},
    {"replica-read-only", T_FIXED, 0, NULL, "yes", 0, 0},
};
#define NOPTS (sizeof opts / sizeof opts[0])

static const opt_t *find_opt(const char *name, size_t n) {
  for (size_t i = 0; i < NOPTS; i++)
    if (strlen(opts[i].name) == n && !strncasecmp(opts[i].name, name, n))
      return &opts[i];
  return NULL;
}

static int errf(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int errf(char *err, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, cap, fmt, ap);
  va_end(ap);
  return -1;
}

/* Parses "class hard soft seconds ..." into the limits (classes normal, pubsub; replica ones are
 * accepted and ignored: no replication). */
static int set_obl(srv_config_t *c, int argc, const char **argv, const size_t *lens, char *err, size_t cap) {
  if (argc % 4 != 0)
    return errf(err, cap, "Wrong number of arguments in buffer limit configuration.");
  srv_obl_t normal = c->obl_normal, pubsub = c->obl_pubsub;
  for (int i = 0; i < argc; i += 4) {
    srv_obl_t v;
    if (parse_mem(argv[i + 1], lens[i + 1], &v.hard) || parse_mem(argv[i + 2], lens[i + 2], &v.soft) ||
        parse_u64(argv[i + 3], lens[i + 3], &v.soft_seconds))
      return errf(err, cap, "Error in hard, soft or soft_seconds setting in buffer limit configuration.");
    if (lens[i] == 6 && !strncasecmp(argv[i], "normal", 6))
      normal = v;
    else if (lens[i] == 6 && !strncasecmp(argv[i], "pubsub", 6))
      pubsub = v;
    else if ((lens[i] == 5 && !strncasecmp(argv[i], "slave", 5)) || (lens[i] == 7 && !strncasecmp(argv[i], "replica", 7)))
      ;
    else
      return errf(err, cap, "Invalid client class specified in buffer limit configuration.");
  }
  c->obl_normal = normal;
  c->obl_pubsub = pubsub;
  return 0;
}

static void *field(srv_config_t *c, const opt_t *o) { return (char *)c + ((char *)o->ptr - (char *)&cfg); }

int srv_config_set(srv_config_t *c, int argc, const char **argv, const size_t *lens, int startup, char *err,
                   size_t errcap) {
  if (argc < 1)
    return errf(err, errcap, "missing option name");
  const opt_t *o = find_opt(argv[0], lens[0]);
  if (o == NULL)
    return errf(err, errcap, "Bad directive or wrong number of arguments");
  if (!startup && !(o->flags & O_MUTABLE))
    return errf(err, errcap, "can't set immutable config");
  if (o->type == T_FIXED) {
    /* Accepted at start when they ask for what shmdict does anyway (save "", appendonly no). */
    if (argc == 2 && lens[1] == strlen(o->fixed) && !strncasecmp(argv[1], o->fixed, lens[1]))
      return 0;
    return errf(err, errcap, "shmdict-server does not support changing '%s'", o->name);
  }
  if (o->type == T_OBL)
    return set_obl(c, argc - 1, argv + 1, lens + 1, err, errcap);
  if (o->type == T_BIND) {
    if (argc < 2 || argc - 1 > 16)
      return errf(err, errcap, "wrong number of arguments");
    for (int i = 0; i < c->nbind; i++)
      free(c->bind[i]);
    c->nbind = 0;
    for (int i = 1; i < argc; i++)
      c->bind[c->nbind++] = dupn(argv[i], lens[i]);
    return 0;
  }
  if (argc != 2)
    return errf(err, errcap, "wrong number of arguments");
  const char *v = argv[1];
  size_t n = lens[1];
  void *f = field(c, o);
  switch (o->type) {
  case T_STR: {
    char **s = f;
    free(*s);
    *s = n ? dupn(v, n) : NULL;
    return 0;
  }
  case T_INT: {
    uint64_t x;
    if (parse_u64(v, n, &x))
      return errf(err, errcap, "argument couldn't be parsed into an integer");
    if (x < o->min || x > o->max)
      return errf(err, errcap, "argument must be between %llu and %llu inclusive", (unsigned long long)o->min,
                  (unsigned long long)o->max);
    if (o->ptr == P(port) || o->ptr == P(processes) || o->ptr == P(tcp_backlog))
      *(int *)f = (int)x;
    else
      *(uint64_t *)f = x;
    return 0;
  }
  case T_I64: {
    long long x;
    if (shmd__kv_parse_ll(v, n, &x))
      return errf(err, errcap, "argument couldn't be parsed into an integer");
    *(int64_t *)f = x;
    return 0;
  }
  case T_MEM: {
    uint64_t x;
    if (parse_mem(v, n, &x))
      return errf(err, errcap, "argument must be a memory value");
    if (x < o->min || x > o->max)
      return errf(err, errcap, "argument must be between %llu and %llu inclusive", (unsigned long long)o->min,
                  (unsigned long long)o->max);
    *(uint64_t *)f = x;
    return 0;
  }
  case T_BOOL: {
    int b;
    if (yesno(v, n, &b))
      return errf(err, errcap, "argument must be 'yes' or 'no'");
    *(int *)f = b;
    return 0;
  }
  case T_LEVEL:
    for (int i = 0; i < 4; i++)
      if (strlen(level_names[i]) == n && !strncasecmp(level_names[i], v, n)) {
        *(int *)f = i;
        return 0;
      }
    return errf(err, errcap, "argument(s) must be one of the following: debug, verbose, notice, warning, nothing");
  case T_OCTAL: {
    char b[16];
    if (n == 0 || n >= sizeof b)
      return errf(err, errcap, "Invalid socket file permissions");
    memcpy(b, v, n);
    b[n] = 0;
    char *end;
    unsigned long x = strtoul(b, &end, 8);
    if (*end || x > 0777)
      return errf(err, errcap, "Invalid socket file permissions");
    *(unsigned *)f = (unsigned)x;
    return 0;
  }
  default:
    return errf(err, errcap, "unsupported");
  }
}

int srv_config_load_file(srv_config_t *c, const char *path, char *err, size_t errcap) {
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return errf(err, errcap, "Fatal error, can't open config file '%s': %s", path, strerror(errno));
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  int lineno = 0, rc = 0;
  size_t *off = NULL, *len = NULL, acap = 0;
  while ((n = getline(&line, &cap, f)) >= 0) {
    lineno++;
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
      line[--n] = 0;
    size_t i = 0;
    while (i < (size_t)n && isspace((unsigned char)line[i]))
      i++;
    if (i == (size_t)n || line[i] == '#')
      continue;
    long argc = resp_split_inline(line, (size_t)n, &off, &len, &acap);
    if (argc < 0) {
      rc = errf(err, errcap, "*** FATAL CONFIG FILE ERROR *** line %d: unbalanced quotes", lineno);
      break;
    }
    if (argc == 0)
      continue;
    const char *av[64];
    size_t lv[64];
    if (argc > 64) {
      rc = errf(err, errcap, "*** FATAL CONFIG FILE ERROR *** line %d: too many arguments", lineno);
      break;
    }
    for (long k = 0; k < argc; k++) {
      av[k] = line + off[k];
      lv[k] = len[k];
    }
    char e[256];
    if (srv_config_set(c, (int)argc, av, lv, 1, e, sizeof e)) {
      rc = errf(err, errcap, "*** FATAL CONFIG FILE ERROR *** line %d: '%.*s': %s", lineno, (int)lv[0], av[0], e);
      break;
    }
  }
  free(line);
  free(off);
  free(len);
  fclose(f);
  return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* CONFIG GET */

static size_t value_of(const opt_t *o, char *buf, size_t cap) {
  const void *f = o->ptr;
  switch (o->type) {
  case T_STR: {
    const char *s = *(char *const *)f;
    return (size_t)snprintf(buf, cap, "%s", s ? s : "");
  }
  case T_INT:
    if (o->ptr == P(port) || o->ptr == P(processes) || o->ptr == P(tcp_backlog))
      return (size_t)snprintf(buf, cap, "%d", *(const int *)f);
    return (size_t)snprintf(buf, cap, "%llu", (unsigned long long)*(const uint64_t *)f);
  case T_MEM:
    return (size_t)snprintf(buf, cap, "%llu", (unsigned long long)*(const uint64_t *)f);
  case T_I64:
    return (size_t)snprintf(buf, cap, "%lld", (long long)*(const int64_t *)f);
  case T_BOOL:
    return (size_t)snprintf(buf, cap, "%s", *(const int *)f ? "yes" : "no");
  case T_LEVEL:
    return (size_t)snprintf(buf, cap, "%s", level_names[*(const int *)f & 3]);
  case T_OCTAL:
    return (size_t)snprintf(buf, cap, "%o", *(const unsigned *)f);
  case T_FIXED:
    return (size_t)snprintf(buf, cap, "%s", o->fixed);
  case T_OBL:
    return (size_t)snprintf(buf, cap, "normal %llu %llu %llu slave 268435456 67108864 60 pubsub %llu %llu %llu",
                            (unsigned long long)cfg.obl_normal.hard, (unsigned long long)cfg.obl_normal.soft,
                            (unsigned long long)cfg.obl_normal.soft_seconds, (unsigned long long)cfg.obl_pubsub.hard,
                            (unsigned long long)cfg.obl_pubsub.soft, (unsigned long long)cfg.obl_pubsub.soft_seconds);
  case T_BIND: {
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < cfg.nbind && n < cap; i++)
      n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? " " : "", cfg.bind[i]);
    if (cfg.nbind == 0)
      n = (size_t)snprintf(buf, cap, "127.0.0.1");
    return n < cap ? n : cap - 1;
  }
  }
  return 0;
}

void srv_config_get(obuf_t *o, int proto, int argc, const char **argv, const size_t *lens) {
  unsigned char hit[NOPTS] = {0};
  size_t n = 0;
  for (int a = 0; a < argc; a++)
    for (size_t i = 0; i < NOPTS; i++)
      if (!hit[i] && shmd__kv_glob(argv[a], lens[a], opts[i].name, strlen(opts[i].name), 1)) {
        hit[i] = 1;
        n++;
      }
  resp_map(o, proto, (long long)n);
  char buf[1024];
  for (size_t i = 0; i < NOPTS; i++)
    if (hit[i]) {
      resp_bulkstr(o, opts[i].name);
      size_t vn = value_of(&opts[i], buf, sizeof buf);
      resp_bulk(o, buf, vn < sizeof buf ? vn : sizeof buf - 1);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Sharing the mutable options: "name\0" u32 length, value, for each */

size_t srv_config_pack(const srv_config_t *c, char *buf, size_t cap) {
  (void)c;
  size_t n = 0;
  char v[1024];
  for (size_t i = 0; i < NOPTS; i++) {
    if (!(opts[i].flags & O_MUTABLE))
      continue;
    size_t vl = value_of(&opts[i], v, sizeof v);
    size_t nl = strlen(opts[i].name) + 1;
    if (n + nl + 4 + vl > cap)
      return 0;
    memcpy(buf + n, opts[i].name, nl);
    n += nl;
    uint32_t l32 = (uint32_t)vl;
    memcpy(buf + n, &l32, 4);
    n += 4;
    memcpy(buf + n, v, vl);
    n += vl;
  }
  return n;
}

int srv_config_unpack(srv_config_t *c, const char *buf, size_t len) {
  size_t i = 0;
  while (i < len) {
    const char *name = buf + i;
    size_t nl = strnlen(name, len - i);
    if (i + nl + 1 + 4 > len)
      return -1;
    i += nl + 1;
    uint32_t vl;
    memcpy(&vl, buf + i, 4);
    i += 4;
    if (vl > len - i)
      return -1;
    const char *v = buf + i;
    i += vl;
    const opt_t *o = find_opt(name, nl);
    if (o == NULL || !(o->flags & O_MUTABLE))
      continue;
    /* client-output-buffer-limit's value is several words: split it. */
    const char *av[16];
    size_t lv[16];
    int ac = 0;
    av[ac] = name;
    lv[ac++] = nl;
    if (o->type == T_OBL) {
      size_t k = 0;
      while (k < vl && ac < 16) {
        while (k < vl && v[k] == ' ')
          k++;
        size_t s = k;
        while (k < vl && v[k] != ' ')
          k++;
        if (k > s) {
          av[ac] = v + s;
          lv[ac++] = k - s;
        }
      }
    } else {
      av[ac] = v;
      lv[ac++] = vl;
    }
    char e[256];
    srv_config_set(c, ac, av, lv, 0, e, sizeof e);
  }
  return 0;
}
