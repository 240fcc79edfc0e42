/* SPDX-License-Identifier: MIT */
/*
 * The server's commands and the command path (Redis's server.c processCommand / call, and the
 * connection and server commands of networking.c, server.c, config.c, slowlog.c).
 *
 * Two tables: the keyspace's (kv/commands.def, through kv/cmdtable.h: every data command, plus
 * PING, ECHO, TIME, DBSIZE, FLUSHDB, FLUSHALL, which the CLI shares), and this file's, for what
 * only a server has: connections (HELLO, AUTH, SELECT, QUIT, RESET, CLIENT), the server (INFO,
 * CONFIG, COMMAND, SLOWLOG, MONITOR, SHUTDOWN), pub/sub and the blocking pops. A name is looked
 * up in this table first (O(1), a small open-addressing table built at start), then in the
 * keyspace's. COMMAND COUNT / INFO / DOCS / LIST report both tables.
 *
 * The checks before a command runs are Redis 7.0's, in its order: unknown command, unknown
 * subcommand, arity, authentication, then RESP2's subscribed context.
 */
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "kv/reply.h"
#include "kv/util.h"
#include "server/server.h"

/* ---------------------------------------------------------------------------------------------- */
/* Users (--requirepass, --aclfile): passwords only; every user has full access */

typedef struct user_s {
  char *name;
  int enabled;
  int nopass;
  char **pass;
  size_t npass;
} user_t;

static user_t *users;
static size_t nusers;

static user_t *user_find(const char *name, size_t n) {
  for (size_t i = 0; i < nusers; i++)
    if (strlen(users[i].name) == n && memcmp(users[i].name, name, n) == 0)
      return &users[i];
  return NULL;
}

/* Loads the ACL file: lines "user NAME rule...", with the rules on, off, >password, nopass,
 * resetpass, reset and the full-access ones (~*, allkeys, &*, allchannels, +@all, allcommands).
 * Anything that would restrict a user is refused: shmdict-server has no per-user permissions, and
 * ignoring a restriction would grant more than the file says. */
int srv_acl_load(const char *path, char *err, size_t errcap) {
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    snprintf(err, errcap, "cannot open ACL file '%s'", path);
    return -1;
  }
  char *line = NULL;
  size_t cap = 0, *off = NULL, *len = NULL, acap = 0;
  ssize_t n;
  int lineno = 0, rc = 0;
  while ((n = getline(&line, &cap, f)) >= 0) {
    lineno++;
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
      line[--n] = 0;
    long argc = resp_split_inline(line, (size_t)n, &off, &len, &acap);
    if (argc == 0 || line[off[0]] == '#')
      continue;
    if (argc < 2 || len[0] != 4 || strncmp(line + off[0], "user", 4) != 0) {
      snprintf(err, errcap, "ACL file line %d: expected 'user <name> <rules...>'", lineno);
      rc = -1;
      break;
    }
    user_t *u = user_find(line + off[1], len[1]);
    if (u == NULL) {
      user_t *nu = realloc(users, (nusers + 1) * sizeof *nu);
      if (nu == NULL) {
        rc = -1;
        break;
      }
      users = nu;
      u = &users[nusers++];
      memset(u, 0, sizeof *u);
      u->name = strndup(line + off[1], len[1]);
    }
    for (long i = 2; i < argc && rc == 0; i++) {
      const char *r = line + off[i];
      size_t rl = len[i];
      if (rl == 2 && !strncmp(r, "on", 2))
        u->enabled = 1;
      else if (rl == 3 && !strncmp(r, "off", 3))
        u->enabled = 0;
      else if (rl == 6 && !strncmp(r, "nopass", 6))
        u->nopass = 1;
      else if ((rl == 9 && !strncmp(r, "resetpass", 9)) || (rl == 5 && !strncmp(r, "reset", 5))) {
        u->npass = 0;
        u->nopass = 0;
        if (rl == 5)
          u->enabled = 0;
      } else if (rl >= 1 && r[0] == '>') {
        char **np = realloc(u->pass, (u->npass + 1) * sizeof *np);
        if (np == NULL) {
          rc = -1;
          break;
        }
        u->pass = np;
        u->pass[u->npass++] = strndup(r + 1, rl - 1);
        u->nopass = 0;
      } else if ((rl == 2 && !strncmp(r, "~*", 2)) || (rl == 7 && !strncmp(r, "allkeys", 7)) ||
                 (rl == 2 && !strncmp(r, "&*", 2)) || (rl == 11 && !strncmp(r, "allchannels", 11)) ||
                 (rl == 5 && !strncmp(r, "+@all", 5)) || (rl == 11 && !strncmp(r, "allcommands", 11))) {
        /* full access: what every user has */
      } else {
        snprintf(err, errcap,
                 "ACL file line %d: rule '%.*s' is not supported (shmdict-server users have passwords and full "
                 "access; see docs/server.md)",
                 lineno, (int)rl, r);
        rc = -1;
      }
    }
    if (rc)
      break;
  }
  free(line);
  free(off);
  free(len);
  fclose(f);
  return rc;
}

/* 1 when (user, password) may log in; user NULL is "default" (requirepass). */
static int auth_ok(const char *user, size_t ul, const char *pw, size_t pl) {
  if (user == NULL || (ul == 7 && !memcmp(user, "default", 7))) {
    if (cfg.requirepass)
      return strlen(cfg.requirepass) == pl && memcmp(cfg.requirepass, pw, pl) == 0;
    user = "default";
    ul = 7;
  }
  user_t *u = user_find(user, ul);
  if (u == NULL) {
    /* no ACL file entry: the default user has no password unless requirepass says otherwise */
    return ul == 7 && !memcmp(user, "default", 7) && cfg.requirepass == NULL;
  }
  if (!u->enabled)
    return 0;
  if (u->nopass)
    return 1;
  for (size_t i = 0; i < u->npass; i++)
    if (strlen(u->pass[i]) == pl && memcmp(u->pass[i], pw, pl) == 0)
      return 1;
  return 0;
}

/* Must a client authenticate (the default user has a password, or is off)? Protected mode and a
 * new connection's state follow from it, as Redis's DefaultUser nopass flag. */
int srv_default_needs_auth(void);
static int default_needs_auth(void) {
  if (cfg.requirepass)
    return 1;
  user_t *u = user_find("default", 7);
  return u ? !(u->enabled && u->nopass) : 0;
}
int srv_default_needs_auth(void) { return default_needs_auth(); }

/* ---------------------------------------------------------------------------------------------- */
/* Helpers */

#define UNUSED_ARGS \
  (void)argc;       \
  (void)argv;       \
  (void)lens

static int arg_is(const char *a, size_t n, const char *lit) { return strlen(lit) == n && !strncasecmp(a, lit, n); }

static void reply_ok(client_t *c) { resp_status(&c->out, "OK", 2); }

static void reply_help(client_t *c, const char *const *lines) {
  size_t n = 0;
  while (lines[n])
    n++;
  resp_array(&c->out, (long long)n);
  for (size_t i = 0; i < n; i++)
    resp_status(&c->out, lines[i], strlen(lines[i]));
}

static void reply_verbatim_obuf(client_t *c, obuf_t *tmp) {
  resp_verbatim(&c->out, c->resp, tmp->buf ? tmp->buf : "", tmp->len);
  obuf_free(tmp);
}

static int valid_client_name(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] < '!' || s[i] > '~')
      return 0;
  return 1;
}

static void set_name(client_t *c, const char *s, size_t n) {
  free(c->name);
  c->name = n ? strndup(s, n) : NULL;
}

/* ---------------------------------------------------------------------------------------------- */
/* Connection commands */

static void cmd_quit(client_t *c, int argc, const char **argv, const size_t *lens) {
  UNUSED_ARGS;
  reply_ok(c);
  c->flags |= CF_CLOSE_AFTER_REPLY;
}

static void cmd_auth(client_t *c, int argc, const char **argv, const size_t *lens) {
  if (argc > 3) {
    resp_errorf(&c->out, "ERR syntax error");
    return;
  }
  if (argc == 2 && !default_needs_auth()) {
    resp_errorf(&c->out, "ERR AUTH <password> called without any password configured for the default user. Are "
                         "you sure your configuration is correct?");
    return;
  }
  const char *u = argc == 3 ? argv[1] : NULL;
  size_t ul = argc == 3 ? lens[1] : 0;
  if (!auth_ok(u, ul, argv[argc - 1], lens[argc - 1])) {
    resp_errorf(&c->out, "WRONGPASS invalid username-password pair or user is disabled.");
    return;
  }
  c->authed = 1;
  free(c->user);
  c->user = u ? strndup(u, ul) : NULL;
  reply_ok(c);
}

static void cmd_hello(client_t *c, int argc, const char **argv, const size_t *lens) {
  long long ver = 0;
  if (argc >= 2) {
    if (shmd__kv_parse_ll(argv[1], lens[1], &ver)) {
      resp_errorf(&c->out, "ERR Protocol version is not an integer or out of range");
      return;
    }
    if (ver < 2 || ver > 3) {
      resp_errorf(&c->out, "NOPROTO unsupported protocol version");
      return;
    }
  }
  const char *au = NULL, *ap = NULL, *nm = NULL;
  size_t aul = 0, apl = 0, nml = 0;
  int has_name = 0;
  for (int i = 2; i < argc; i++) {
    int more = argc - i - 1;
    if (arg_is(argv[i], lens[i], "AUTH") && more >= 2) {
      au = argv[i + 1];
      aul = lens[i + 1];
      ap = argv[i + 2];
      apl = lens[i + 2];
      i += 2;
    } else if (arg_is(argv[i], lens[i], "SETNAME") && more >= 1) {
      nm = argv[i + 1];
      nml = lens[i + 1];
      has_name = 1;
      i++;
    } else {
      resp_errorf(&c->out, "ERR Syntax error in HELLO option '%.*s'", (int)lens[i], argv[i]);
      return;
    }
  }
  if (au) {
    if (!auth_ok(au, aul, ap, apl)) {
      resp_errorf(&c->out, "WRONGPASS invalid username-password pair or user is disabled.");
      return;
    }
    c->authed = 1;
    free(c->user);
    c->user = strndup(au, aul);
  }
  if (!c->authed) {
    resp_errorf(&c->out, "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "
                         "AUTH <user> <pass> option can be used to authenticate the client and select the RESP "
                         "protocol version at the same time");
    return;
  }
  if (has_name) {
    if (!valid_client_name(nm, nml)) {
      resp_errorf(&c->out, "ERR Client names cannot contain spaces, newlines or special characters.");
      return;
    }
    set_name(c, nm, nml);
  }
  if (ver)
    c->resp = (int)ver;
  obuf_t *o = &c->out;
  resp_map(o, c->resp, 7);
  resp_bulkstr(o, "server");
  resp_bulkstr(o, "redis");
  resp_bulkstr(o, "version");
  resp_bulkstr(o, SRV_REDIS_VERSION);
  resp_bulkstr(o, "proto");
  resp_int(o, c->resp);
  resp_bulkstr(o, "id");
  resp_int(o, (long long)c->id);
  resp_bulkstr(o, "mode");
  resp_bulkstr(o, "standalone");
  resp_bulkstr(o, "role");
  resp_bulkstr(o, "master");
  resp_bulkstr(o, "modules");
  resp_array(o, 0);
}

static void cmd_select(client_t *c, int argc, const char **argv, const size_t *lens) {
  (void)argc;
  long long db;
  if (shmd__kv_parse_ll(argv[1], lens[1], &db)) {
    resp_errorf(&c->out, "ERR value is not an integer or out of range");
    return;
  }
  if (db < 0 || db >= SHMD_KV_DATABASES) {
    resp_errorf(&c->out, "ERR DB index is out of range");
    return;
  }
  c->db = (unsigned)db;
  reply_ok(c);
}

void srv_reset_client(client_t *c) {
  srv_pubsub_unsubscribe_all(c, 0);
  if (c->flags & CF_MONITOR) {
    c->flags &= ~CF_MONITOR;
    srv.nmonitors--;
  }
  c->db = 0;
  c->resp = 2;
  set_name(c, NULL, 0);
  c->authed = !default_needs_auth();
  free(c->user);
  c->user = NULL;
}

static void cmd_reset(client_t *c, int argc, const char **argv, const size_t *lens) {
  UNUSED_ARGS;
  srv_reset_client(c);
  resp_status(&c->out, "RESET", 5);
}

static void cmd_ping(client_t *c, int argc, const char **argv, const size_t *lens) {
  if (argc > 2) {
    resp_errorf(&c->out, "ERR wrong number of arguments for 'ping' command");
    return;
  }
  if (c->resp == 2 && (c->nchannels || c->npatterns)) { /* the subscribed context's PING */
    resp_array(&c->out, 2);
    resp_bulk(&c->out, "pong", 4);
    if (argc == 2)
      resp_bulk(&c->out, argv[1], lens[1]);
    else
      resp_bulk(&c->out, "", 0);
    return;
  }
  if (argc == 2)
    resp_bulk(&c->out, argv[1], lens[1]);
  else
    resp_status(&c->out, "PONG", 4);
}

/* ---------------------------------------------------------------------------------------------- */
/* CLIENT */

static void cmd_client_id(client_t *c, int argc, const char **argv, const size_t *lens) {
  UNUSED_ARGS;
  resp_int(&c->out, (long long)c->id);
}

static void cmd_client_setname(client_t *c, int argc, const char **argv, const size_t *lens) {
  (void)argc;
  if (!valid_client_name(argv[2], lens[2])) {
    resp_errorf(&c->out, "ERR Client names cannot contain spaces, newlines or special characters.");
    return;
  }
  set_name(c, argv[2], lens[2]);
  reply_ok(c);
}

static void cmd_client_getname(client_t *c, int argc, const char **argv, const size_t *lens) {
  UNUSED_ARGS;
  if (c->name)
    resp_bulkstr(&c->out, c->name);
  else
    resp_null(&c->out, c->resp);
}

static int client_type_is(client_t *x, const char *t, size_t n) {
  if (arg_is(t, n, "normal"))
    return !(x->nchannels || x->npatterns) && !(x->flags & CF_MONITOR);
  if (arg_is(t, n, "pubsub"))
    return (x->nchannels || x->npatterns) != 0;
  return 0; /* master, replica, slave: none */
}

static int known_type(const char *t, size_t n) {
  return arg_is(t, n, "normal") || arg_is(t, n, "pubsub") || arg_is(t, n, "master") || arg_is(t, n, "replica") ||
         arg_is(t, n, "slave");
}

static void cmd_client_list(client_t *c, int argc, const char **argv, const size_t *lens) {
  const char *type = NULL;
  size_t tl = 0;
  int ids_from = 0;
  if (argc == 4 && arg_is(argv[2], lens[2], "TYPE")) {
    if (!known_type(argv[3], lens[3])) {
      resp_errorf(&c->out, "ERR Unknown client type '%.*s'", (int)lens[3], argv[3]);
      return;
    }
    type = argv[3];
    tl = lens[3];
  } else if (argc >= 4 && arg_is(argv[2], lens[2], "ID")) {
    for (int i = 3; i < argc; i++) {
      long long id;
      if (shmd__kv_parse_ll(argv[i], lens[i], &id) || id <= 0) {
        resp_errorf(&c->out, "ERR Invalid client ID");
        return;
      }
    }
    ids_from = 3;
  } else if (argc != 2) {
    resp_errorf(&c->out, "ERR syntax error");
    return;
  }
  obuf_t tmp = {0};
  for (client_t *x = srv.clients; x; x = x->next) {
    if (x->flags & CF_CLOSING)
      continue;
    if (type && !client_type_is(x, type, tl))
      continue;
    if (ids_from) {
      int hit = 0;
      for (int i = ids_from; i < argc && !hit; i++) {
        long long id;
        shmd__kv_parse_ll(argv[i], lens[i], &id);
        hit = (uint64_t)id == x->id;
      }
      if (!hit)
        continue;
    }
    client_info_line(x, &tmp);
  }
  reply_verbatim_obuf(c, &tmp);
}

static void cmd_client_info(client_t *c, int argc, const char **argv, const size_t *lens) {
  UNUSED_ARGS;
  obuf_t tmp = {0};
  client_info_line(c, &tmp);
  reply_verbatim_obuf(c, &tmp);
}

static void cmd_client_kill(client_t *c, int argc, const char **argv, const size_t *lens) {
  if (argc == 3) { /* old form: CLIENT KILL addr */
    for (client_t *x = srv.clients; x; x = x->next)
      if (!(x->flags & CF_CLOSING) && strlen(x->addr) == lens[2] && !memcmp(x->addr, argv[2], lens[2])) {
        if (x == c)
          c->flags |= CF_CLOSE_AFTER_REPLY;
        else
          client_close_async(x);
        reply_ok(c);
        return;
      }
    resp_errorf(&c->out, "ERR No such client");
    return;
  }
  if ((argc - 2) % 2) {
    resp_errorf(&c->out, "ERR syntax error");
    return;
  }
  long long id = 0;
  const char *addr = NULL, *laddr = NULL, *type = NULL, *user = NULL;
  size_t al = 0, ll = 0, tl = 0, ul = 0;
  int skipme = 1;
  for (int i = 2; i < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    size_t kl = lens[i], vl = lens[i + 1];
    if (arg_is(k, kl, "ID")) {
      if (shmd__kv_parse_ll(v, vl, &id) || id <= 0) {
        resp_errorf(&c->out, "ERR client-id should be greater than 0");
        return;
      }
    } else if (arg_is(k, kl, "ADDR")) {
      addr = v;
      al = vl;
    } else if (arg_is(k, kl, "LADDR")) {
      laddr = v;
      ll = vl;
    } else if (arg_is(k, kl, "TYPE")) {
      if (!known_type(v, vl)) {
        resp_errorf(&c->out, "ERR Unknown client type '%.*s'", (int)vl, v);
        return;
      }
      type = v;
      tl = vl;
    } else if (arg_is(k, kl, "USER")) {
      user = v;
      ul = vl;
    } else if (arg_is(k, kl, "SKIPME")) {
      if (arg_is(v, vl, "yes"))
        skipme = 1;
      else if (arg_is(v, vl, "no"))
        skipme = 0;
      else {
        resp_errorf(&c->out, "ERR syntax error");
        return;
      }
    } else {
      resp_errorf(&c->out, "ERR syntax error");
      return;
    }
  }
  long long killed = 0;
  for (client_t *x = srv.clients; x; x = x->next) {
    if (x->flags & (CF_CLOSING | CF_CLOSE_ASAP))
      continue;
    if (id && x->id != (uint64_t)id)
      continue;
    if (addr && !(strlen(x->addr) == al && !memcmp(x->addr, addr, al)))
      continue;
    if (laddr && !(strlen(x->laddr) == ll && !memcmp(x->laddr, laddr, ll)))
      continue;
    if (type && !client_type_is(x, type, tl))
      continue;
    if (user) {
      const char *xu = x->user ? x->user : "default";
      if (!(strlen(xu) == ul && !memcmp(xu, user, ul)))
        continue;
    }
    if (x == c && skipme)
      continue;
    if (x == c)
      c->flags |= CF_CLOSE_AFTER_REPLY;
    else
      client_close_async(x);
    killed++;
  }
  resp_int(&c->out, killed);
}

static const char *const client_help[] = {
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ID <client-id>",
    "      Kill connections by client id.",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "HELP",
    "    Prints this help.",
    "(shmdict-server: LIST, INFO and KILL see the connections of the worker process that runs them.)",
    NULL};

static void cmd_client_help(client_t *c, int argc, const char **argv, const size_t *lens) {
  UNUSED_ARGS;
  reply_help(c, client_help);
}

/* ---------------------------------------------------------------------------------------------- */
/* CONFIG */

static void cmd_config_get(client_t *c, int argc, const char **argv, const size_t *lens) {
  srv_config_get(&c->out, c->resp, argc - 2, argv + 2, lens + 2);
}

static void cmd_config_set(client_t *c, int argc, const char **argv, const size_t *lens) {
  if ((argc - 2) % 2) {
    resp_errorf(&c->out, "ERR wrong number of arguments for 'config|set' command");
    return;
  }
  srv_config_t next = cfg; /* all or nothing: apply to a copy, then take it */
  /* the copy shares the string pointers; srv_config_set frees and replaces them, so work on
   * duplicates */
  next.requirepass = cfg.requirepass ? strdup(cfg.requirepass) : NULL;
  for (int i = 2; i < argc; i += 2) {
    char err[256];
    const char *av[2] = {argv[i], argv[i + 1]};
    size_t lv[2] = {lens[i], lens[i + 1]};
    /* client-output-buffer-limit's value is several words */
    const char *words[34];
    size_t wl[34];
    int nw = 0;
    words[nw] = argv[i];
    wl[nw++] = lens[i];
    if (arg_is(argv[i], lens[i], "client-output-buffer-limit")) {
      const char *v = argv[i + 1];
      size_t vl = lens[i + 1], k = 0;
      while (k < vl && nw < 34) {
        while (k < vl && v[k] == ' ')
          k++;
        size_t s = k;
        while (k < vl && v[k] != ' ')
          k++;
        if (k > s) {
          words[nw] = v + s;
          wl[nw++] = k - s;
        }
      }
    }
    int rc = nw > 1 ? srv_config_set(&next, nw, words, wl, 0, err, sizeof err)
                    : srv_config_set(&next, 2, av, lv, 0, err, sizeof err);
    if (rc) {
      if (!strcmp(err, "Bad directive or wrong number of arguments"))
        resp_errorf(&c->out, "ERR Unknown option or number of arguments for CONFIG SET - '%.*s'", (int)lens[i],
                    argv[i]);
      else
        resp_errorf(&c->out, "ERR CONFIG SET failed (possibly related to argument '%.*s') - %s", (int)lens[i], argv[i],
                    err);
      free(next.requirepass);
      return;
    }
  }
  free(cfg.requirepass);
  cfg = next;
  srv_shared_config_set();
  reply_ok(c);
}

static void cmd_config_resetstat(client_t *c, int argc, const char **argv, const size_t *lens) {
  UNUSED_ARGS;
  srv.stat_conns = srv.stat_rejected = srv.stat_cmds = srv.stat_net_in = srv.stat_net_out = srv.stat_obl_closed = 0;
  srv.ops_sample_cmds = 0;
  reply_ok(c);
}

static void cmd_config_rewrite(client_t *c, int argc, const char **argv, const size_t *lens) {
  UNUSED_ARGS;
  if (cfg.config_file == NULL)
    resp_errorf(&c->out, "ERR The server is running without a config file");
  else
    resp_errorf(&c->out, "ERR shmdict-server does not rewrite its config file");
}

static const char *const config_help[] = {
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Rewrite the configuration file.",
    "HELP",
    "    Prints this help.",
    NULL};
static void cmd_config_help(client_t *c, int argc, const char **argv, const size_t *lens) {
  UNUSED_ARGS;
  reply_help(c, config_help);
}

/* ---------------------------------------------------------------------------------------------- */
/* SLOWLOG (this worker's) and MONITOR */

typedef struct slowentry_s {
  uint64_t id, time, us;
  int argc;
  char **argv;
  size_t *lens;
  char addr[64];
  char *name;
} slowentry_t;

static slowentry_t *slowlog; /* ring, newest at slow_head - 1 */
static size_t slow_cap, slow_len, slow_head;
static uint64_t slow_next_id;

static void slow_free(slowentry_t *e) {
  for (int i = 0; i < e->argc; i++)
    free(e->argv[i]);
  free(e->argv);
  free(e->lens);
  free(e->name);
  memset(e, 0, sizeof *e);
}

static void slow_trim(size_t max) {
  while (slow_len > max) { /* drop the oldest */
    size_t oldest = (slow_head + slow_cap - slow_len) % slow_cap;
    slow_free(&slowlog[oldest]);
    slow_len--;
  }
}

void srv_slowlog_add(client_t *c, int argc, const char **argv, const size_t *lens, uint64_t us) {
  if (cfg.slowlog_slower_than < 0 || us < (uint64_t)cfg.slowlog_slower_than || cfg.slowlog_max_len == 0)
    return;
  size_t want = cfg.slowlog_max_len < 1024 ? (size_t)cfg.slowlog_max_len : 1024;
  if (slow_cap != want) {
    slow_trim(0);
    free(slowlog);
    slowlog = calloc(want, sizeof *slowlog);
    slow_cap = slowlog ? want : 0;
    slow_len = slow_head = 0;
    if (!slowlog)
      return;
  }
  if (slow_len == slow_cap)
    slow_trim(slow_cap - 1);
  slowentry_t *e = &slowlog[slow_head];
  slow_head = (slow_head + 1) % slow_cap;
  slow_len++;
  /* Redis keeps at most 32 arguments of at most 128 bytes each. */
  int n = argc > 32 ? 32 : argc;
  e->argv = calloc((size_t)n, sizeof *e->argv);
  e->lens = calloc((size_t)n, sizeof *e->lens);
  e->argc = 0;
  if (e->argv && e->lens)
    for (int i = 0; i < n; i++) {
      char buf[192];
      size_t l;
      if (i == 31 && argc > 32) {
        l = (size_t)snprintf(buf, sizeof buf, "... (%d more arguments)", argc - 31);
        e->argv[i] = strndup(buf, l);
      } else if (lens[i] > 128) {
        l = (size_t)snprintf(buf, sizeof buf, "%.*s... (%zu more bytes)", 128, argv[i], lens[i] - 128);
        e->argv[i] = malloc(l);
        if (e->argv[i]) {
          memcpy(e->argv[i], argv[i], 128);
          memcpy(e->argv[i] + 128, buf + 128, l - 128);
        }
      } else {
        l = lens[i];
        e->argv[i] = malloc(l ? l : 1);
        if (e->argv[i])
          memcpy(e->argv[i], argv[i], l);
      }
      e->lens[i] = e->argv[i] ? l : 0;
      e->argc++;
    }
  e->id = slow_next_id++;
  e->time = srv_now_ms() / 1000;
  e->us = us;
  snprintf(e->addr, sizeof e->addr, "%s", c->addr);
  e->name = c->name ? strdup(c->name) : NULL;
}

static void cmd_slowlog_get(client_t *c, int argc, const char **argv, const size_t *lens) {
  long long count = 10;
  if (argc == 3 && (shmd__kv_parse_ll(argv[2], lens[2], &count) || count < -1)) {
    resp_errorf(&c->out, "ERR count should be greater than or equal to -1");
    return;
  }
  if (count == -1 || (size_t)count > slow_len)
    count = (long long)slow_len;
  resp_array(&c->out, count);
  for (long long i = 0; i < count; i++) {
    slowentry_t *e = &slowlog[(slow_head + slow_cap - 1 - (size_t)i) % slow_cap];
    resp_array(&c->out, 6);
    resp_int(&c->out, (long long)e->id);
    resp_int(&c->out, (long long)e->time);
    resp_int(&c->out, (long long)e->us);
    resp_array(&c->out, e->argc);
    for (int k = 0; k < e->argc; k++)
      resp_bulk(&c->out, e->argv[k] ? e->argv[k] : "", e->lens[k]);
    resp_bulkstr(&c->out, e->addr);
    resp_bulkstr(&c->out, e->name ? e->name : "");
  }
}

static void cmd_slowlog_len(client_t *c, int argc, const char **argv, const size_t *lens) {
  UNUSED_ARGS;
  resp_int(&c->out, (long long)slow_len);
}

static void cmd_slowlog_reset(client_t *c, int argc, const char **argv, const size_t *lens) {
  UNUSED_ARGS;
  slow_trim(0);
  reply_ok(c);
}

static const char *const slowlog_help[] = {
    "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
    "HELP",
    "    Prints this help.",
    "(shmdict-server: each worker process keeps its own slow log.)",
    NULL};
static void cmd_slowlog_help(client_t *c, int argc, const char **argv, const size_t *lens) {
  UNUSED_ARGS;
  reply_help(c, slowlog_help);
}

static void cmd_monitor(client_t *c, int argc, const char **argv, const size_t *lens) {
  UNUSED_ARGS;
  if (!(c->flags & CF_MONITOR)) {
    c->flags |= CF_MONITOR;
    srv.nmonitors++;
  }
  reply_ok(c);
}

/* Redis's sdscatrepr: a quoted, escaped argument. */
static void repr(obuf_t *o, const char *s, size_t n) {
  obuf_add(o, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    char b[8];
    switch (ch) {
    case '\\': obuf_add(o, "\\\\", 2); break;
    case '"': obuf_add(o, "\\\"", 2); break;
    case '\n': obuf_add(o, "\\n", 2); break;
    case '\r': obuf_add(o, "\\r", 2); break;
    case '\t': obuf_add(o, "\\t", 2); break;
    case '\a': obuf_add(o, "\\a", 2); break;
    case '\b': obuf_add(o, "\\b", 2); break;
    default:
      if (isprint(ch))
        obuf_add(o, s + i, 1);
      else {
        snprintf(b, sizeof b, "\\x%02x", ch);
        obuf_add(o, b, 4);
      }
    }
  }
  obuf_add(o, "\"", 1);
}

void srv_monitor_feed(client_t *c, int argc, const char **argv, const size_t *lens) {
  obuf_t line = {0};
  uint64_t us = srv_now_us();
  char head[128];
  int n = snprintf(head, sizeof head, "%llu.%06llu [%u %s]", (unsigned long long)(us / 1000000),
                   (unsigned long long)(us % 1000000), c->db, (c->flags & CF_UNIX) ? "unix:" : c->addr);
  obuf_add(&line, head, (size_t)n);
  for (int i = 0; i < argc; i++) {
    obuf_add(&line, " ", 1);
    repr(&line, argv[i], lens[i]);
  }
  for (client_t *m = srv.clients; m; m = m->next)
    if ((m->flags & CF_MONITOR) && !(m->flags & (CF_CLOSING | CF_CLOSE_ASAP)) && m != c) {
      resp_status(&m->out, line.buf, line.len);
      client_reply_flush_later(m);
      client_check_obl(m);
    }
  obuf_free(&line);
}

/* ---------------------------------------------------------------------------------------------- */
/* SHUTDOWN */

static void cmd_shutdown(client_t *c, int argc, const char **argv, const size_t *lens) {
  (void)c;
  for (int i = 1; i < argc; i++)
    if (!arg_is(argv[i], lens[i], "NOSAVE") && !arg_is(argv[i], lens[i], "SAVE") && !arg_is(argv[i], lens[i], "NOW") &&
        !arg_is(argv[i], lens[i], "FORCE")) {
      resp_errorf(&c->out, "ERR syntax error");
      return;
    }
  srv_log(LL_WARNING, "User requested shutdown...");
  /* The data is in the store already; stop the whole server: the supervisor stops every worker. */
  kill(getppid(), SIGTERM);
  c->flags |= CF_CLOSE_ASAP;
}

/* ---------------------------------------------------------------------------------------------- */
/* The table */

extern void srv_cmd_command(client_t *c, int argc, const char **argv, const size_t *lens);
extern void srv_cmd_command_count(client_t *c, int argc, const char **argv, const size_t *lens);
extern void srv_cmd_command_info(client_t *c, int argc, const char **argv, const size_t *lens);
extern void srv_cmd_command_docs(client_t *c, int argc, const char **argv, const size_t *lens);
extern void srv_cmd_command_list(client_t *c, int argc, const char **argv, const size_t *lens);
extern void srv_cmd_command_help(client_t *c, int argc, const char **argv, const size_t *lens);

#define F_CONN (SC_NOSCRIPT | SC_LOADING | SC_STALE)
#define SUB(n, ar, fl, pr, sy, su) {n, ar, fl, pr, 0, 0, 0, NULL, sy, su, NULL, NULL}

static srv_cmd_t client_subs[] = {
    SUB("id", 2, F_CONN, cmd_client_id, "CLIENT ID", "Returns the client ID for the current connection."),
    SUB("setname", 3, F_CONN, cmd_client_setname, "CLIENT SETNAME connection-name", "Sets the current connection name."),
    SUB("getname", 2, F_CONN, cmd_client_getname, "CLIENT GETNAME", "Returns the name of the current connection."),
    SUB("list", -2, SC_ADMIN | F_CONN, cmd_client_list, "CLIENT LIST [TYPE type] [ID client-id ...]",
        "Lists the worker's client connections."),
    SUB("info", 2, F_CONN, cmd_client_info, "CLIENT INFO", "Returns information about the current client connection."),
    SUB("kill", -3, SC_ADMIN | F_CONN, cmd_client_kill, "CLIENT KILL ip:port | [ID id] [ADDR a] [LADDR a] [TYPE t] [USER u] [SKIPME yes|no]",
        "Kills connections of the worker."),
    SUB("help", 2, SC_LOADING | SC_STALE, cmd_client_help, "CLIENT HELP", "Show helpful text about the different subcommands."),
    {NULL, 0, 0, NULL, 0, 0, 0, NULL, NULL, NULL, NULL, NULL}};

static srv_cmd_t config_subs[] = {
    SUB("get", -3, SC_ADMIN | F_CONN, cmd_config_get, "CONFIG GET parameter [parameter ...]",
        "Returns the effective values of configuration parameters."),
    SUB("set", -4, SC_ADMIN | F_CONN, cmd_config_set, "CONFIG SET parameter value [parameter value ...]",
        "Sets configuration parameters in-flight, for every worker."),
    SUB("resetstat", 2, SC_ADMIN | F_CONN, cmd_config_resetstat, "CONFIG RESETSTAT", "Resets the worker's statistics."),
    SUB("rewrite", 2, SC_ADMIN | F_CONN, cmd_config_rewrite, "CONFIG REWRITE", "Not supported: the config file stays as written."),
    SUB("help", 2, SC_LOADING | SC_STALE, cmd_config_help, "CONFIG HELP", "Show helpful text about the different subcommands."),
    {NULL, 0, 0, NULL, 0, 0, 0, NULL, NULL, NULL, NULL, NULL}};

static srv_cmd_t command_subs[] = {
    SUB("count", 2, SC_LOADING | SC_STALE, srv_cmd_command_count, "COMMAND COUNT", "Returns a count of commands."),
    SUB("info", -2, SC_LOADING | SC_STALE, srv_cmd_command_info, "COMMAND INFO [command-name ...]",
        "Returns information about one, multiple or all commands."),
    SUB("docs", -2, SC_LOADING | SC_STALE, srv_cmd_command_docs, "COMMAND DOCS [command-name ...]",
        "Returns documentary information about one, multiple or all commands."),
    SUB("list", -2, SC_LOADING | SC_STALE, srv_cmd_command_list, "COMMAND LIST [FILTERBY MODULE m|ACLCAT c|PATTERN p]",
        "Returns a list of command names."),
    SUB("help", 2, SC_LOADING | SC_STALE, srv_cmd_command_help, "COMMAND HELP", "Show helpful text about the different subcommands."),
    {NULL, 0, 0, NULL, 0, 0, 0, NULL, NULL, NULL, NULL, NULL}};

static srv_cmd_t slowlog_subs[] = {
    SUB("get", -2, SC_ADMIN | SC_LOADING | SC_STALE, cmd_slowlog_get, "SLOWLOG GET [count]", "Returns the worker's slow log's entries."),
    SUB("len", 2, SC_ADMIN | SC_LOADING | SC_STALE, cmd_slowlog_len, "SLOWLOG LEN", "Returns the number of entries in the worker's slow log."),
    SUB("reset", 2, SC_ADMIN | SC_LOADING | SC_STALE, cmd_slowlog_reset, "SLOWLOG RESET", "Clears all entries from the worker's slow log."),
    SUB("help", 2, SC_LOADING | SC_STALE, cmd_slowlog_help, "SLOWLOG HELP", "Show helpful text about the different subcommands."),
    {NULL, 0, 0, NULL, 0, 0, 0, NULL, NULL, NULL, NULL, NULL}};

extern void srv_cmd_pubsub_help(client_t *c, int argc, const char **argv, const size_t *lens);
static srv_cmd_t pubsub_subs[] = {
    SUB("channels", -2, SC_PUBSUB_FLAG | SC_LOADING | SC_STALE, srv_cmd_pubsub_channels, "PUBSUB CHANNELS [pattern]",
        "Returns the active channels."),
    SUB("numsub", -2, SC_PUBSUB_FLAG | SC_LOADING | SC_STALE, srv_cmd_pubsub_numsub, "PUBSUB NUMSUB [channel ...]",
        "Returns a count of subscribers to channels."),
    SUB("numpat", 2, SC_PUBSUB_FLAG | SC_LOADING | SC_STALE, srv_cmd_pubsub_numpat, "PUBSUB NUMPAT",
        "Returns a count of unique pattern subscriptions."),
    SUB("help", 2, SC_LOADING | SC_STALE, srv_cmd_pubsub_help, "PUBSUB HELP", "Show helpful text about the different subcommands."),
    {NULL, 0, 0, NULL, 0, 0, 0, NULL, NULL, NULL, NULL, NULL}};

#define CMD(n, ar, fl, pr, f, l, st, gr, sy, su) {n, ar, fl, pr, f, l, st, gr, sy, su, NULL, NULL}
#define CONTAINER(n, ar, fl, subs, gr, sy, su) {n, ar, fl, NULL, 0, 0, 0, gr, sy, su, subs, NULL}

static srv_cmd_t server_cmds[] = {
    CMD("hello", -1, SC_NOAUTH | SC_FAST | SC_SENTINEL | F_CONN, cmd_hello, 0, 0, 0, "connection",
        "HELLO [protover [AUTH username password] [SETNAME clientname]]", "Handshakes with the server (RESP2 or RESP3)."),
    CMD("auth", -2, SC_NOAUTH | SC_FAST | SC_SENTINEL | F_CONN, cmd_auth, 0, 0, 0, "connection",
        "AUTH [username] password", "Authenticates the connection."),
    CMD("quit", -1, SC_NOAUTH | SC_FAST | SC_PUBSUB | F_CONN, cmd_quit, 0, 0, 0, "connection", "QUIT", "Closes the connection."),
    CMD("reset", 1, SC_NOAUTH | SC_FAST | SC_PUBSUB | F_CONN, cmd_reset, 0, 0, 0, "connection", "RESET", "Resets the connection."),
    CMD("select", 2, SC_LOADING | SC_STALE | SC_FAST, cmd_select, 0, 0, 0, "connection", "SELECT index",
        "Changes the selected database."),
    CMD("ping", -1, SC_FAST | SC_SENTINEL | SC_PUBSUB, cmd_ping, 0, 0, 0, "connection", "PING [message]",
        "Returns the server's liveliness response."),
    CONTAINER("client", -2, SC_SENTINEL, client_subs, "connection", "CLIENT", "A container for client connection commands."),
    CONTAINER("config", -2, 0, config_subs, "server", "CONFIG", "A container for server configuration commands."),
    {"command", -1, SC_LOADING | SC_STALE | SC_SENTINEL, srv_cmd_command, 0, 0, 0, "server", "COMMAND",
     "Returns detailed information about all commands.", command_subs, NULL},
    CONTAINER("slowlog", -2, SC_ADMIN, slowlog_subs, "server", "SLOWLOG", "A container for slow log commands."),
    CMD("info", -1, SC_LOADING | SC_STALE | SC_SENTINEL, srv_info, 0, 0, 0, "server", "INFO [section ...]",
        "Returns information and statistics about the server."),
    CMD("monitor", 1, SC_ADMIN | F_CONN, cmd_monitor, 0, 0, 0, "server", "MONITOR",
        "Listens for the commands of the worker's clients in real time."),
    CMD("shutdown", -1, SC_ADMIN | F_CONN | SC_NOMULTI | SC_SENTINEL, cmd_shutdown, 0, 0, 0, "server",
        "SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE]", "Stops every worker (the data stays in the store)."),
    CMD("subscribe", -2, SC_PUBSUB_FLAG | SC_PUBSUB | F_CONN, srv_cmd_subscribe, 0, 0, 0, "pubsub",
        "SUBSCRIBE channel [channel ...]", "Listens for messages published to channels."),
    CMD("unsubscribe", -1, SC_PUBSUB_FLAG | SC_PUBSUB | F_CONN, srv_cmd_unsubscribe, 0, 0, 0, "pubsub",
        "UNSUBSCRIBE [channel ...]", "Stops listening to messages posted to channels."),
    CMD("psubscribe", -2, SC_PUBSUB_FLAG | SC_PUBSUB | F_CONN, srv_cmd_psubscribe, 0, 0, 0, "pubsub",
        "PSUBSCRIBE pattern [pattern ...]", "Listens for messages published to channels that match patterns."),
    CMD("punsubscribe", -1, SC_PUBSUB_FLAG | SC_PUBSUB | F_CONN, srv_cmd_punsubscribe, 0, 0, 0, "pubsub",
        "PUNSUBSCRIBE [pattern ...]", "Stops listening to messages published to channels that match patterns."),
    CMD("publish", 3, SC_PUBSUB_FLAG | SC_LOADING | SC_STALE | SC_FAST, srv_cmd_publish, 0, 0, 0, "pubsub",
        "PUBLISH channel message", "Posts a message to a channel, for the subscribers of every worker."),
    CONTAINER("pubsub", -2, 0, pubsub_subs, "pubsub", "PUBSUB", "A container for Pub/Sub commands."),
    CMD("blpop", -3, SC_WRITE | SC_NOSCRIPT | SC_BLOCKING, srv_cmd_blpop, 1, -2, 1, "list",
        "BLPOP key [key ...] timeout", "Removes and returns the first element of the first non-empty list, or blocks."),
    CMD("brpop", -3, SC_WRITE | SC_NOSCRIPT | SC_BLOCKING, srv_cmd_brpop, 1, -2, 1, "list",
        "BRPOP key [key ...] timeout", "Removes and returns the last element of the first non-empty list, or blocks."),
    CMD("blmove", 6, SC_WRITE | SC_DENYOOM | SC_NOSCRIPT | SC_BLOCKING, srv_cmd_blmove, 1, 2, 1, "list",
        "BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout", "Pops an element from a list, pushes it onto another, or blocks."),
    CMD("brpoplpush", 4, SC_WRITE | SC_DENYOOM | SC_NOSCRIPT | SC_BLOCKING, srv_cmd_brpoplpush, 1, 2, 1, "list",
        "BRPOPLPUSH source destination timeout", "Pops an element from a list, pushes it onto another, or blocks."),
    CMD("blmpop", -5, SC_WRITE | SC_BLOCKING, srv_cmd_blmpop, 0, 0, 0, "list",
        "BLMPOP timeout numkeys key [key ...] LEFT|RIGHT [COUNT count]", "Pops elements from the first non-empty list, or blocks."),
    CMD("bzpopmin", -3, SC_WRITE | SC_NOSCRIPT | SC_FAST | SC_BLOCKING, srv_cmd_bzpopmin, 1, -2, 1, "sorted-set",
        "BZPOPMIN key [key ...] timeout", "Removes and returns the member with the lowest score, or blocks."),
    CMD("bzpopmax", -3, SC_WRITE | SC_NOSCRIPT | SC_FAST | SC_BLOCKING, srv_cmd_bzpopmax, 1, -2, 1, "sorted-set",
        "BZPOPMAX key [key ...] timeout", "Removes and returns the member with the highest score, or blocks."),
    CMD("bzmpop", -5, SC_WRITE | SC_BLOCKING, srv_cmd_bzmpop, 0, 0, 0, "sorted-set",
        "BZMPOP timeout numkeys key [key ...] MIN|MAX [COUNT count]", "Pops members from the first non-empty sorted set, or blocks."),
};
#define NSERVER (sizeof server_cmds / sizeof server_cmds[0])

/* ---------------------------------------------------------------------------------------------- */
/* Lookup: a small open-addressing table over the server commands (names lower-cased) */

#define SLOTS 128u
static uint8_t slot_of[SLOTS];
static char fullnames[NSERVER][8][48];

static unsigned hash_name(const char *s, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (uint8_t)tolower((unsigned char)s[i])) * 16777619u;
  return h & (SLOTS - 1);
}

void srv_commands_init(void) {
  memset(slot_of, 0, sizeof slot_of);
  for (size_t k = 0; k < NSERVER; k++) {
    srv_cmd_t *c = &server_cmds[k];
    c->fullname = c->name;
    unsigned i = hash_name(c->name, strlen(c->name));
    while (slot_of[i])
      i = (i + 1) & (SLOTS - 1);
    slot_of[i] = (uint8_t)(k + 1);
    if (c->subs) {
      srv_cmd_t *s = (srv_cmd_t *)c->subs;
      for (int j = 0; s[j].name && j < 8; j++) {
        snprintf(fullnames[k][j], sizeof fullnames[k][j], "%s|%s", c->name, s[j].name);
        s[j].fullname = fullnames[k][j];
        s[j].group = c->group;
      }
    }
  }
}

static const srv_cmd_t *server_find(const char *name, size_t n) {
  if (n == 0 || n > 16)
    return NULL;
  for (unsigned i = hash_name(name, n);; i = (i + 1) & (SLOTS - 1)) {
    unsigned k = slot_of[i];
    if (k == 0)
      return NULL;
    const srv_cmd_t *c = &server_cmds[k - 1];
    if (strlen(c->name) == n && !strncasecmp(c->name, name, n))
      return c;
  }
}

size_t srv_command_count(void) {
  size_t n = NSERVER;
  for (size_t i = 0; i < shmd__kv_cmd_count(); i++)
    if (server_find(shmd__kv_cmd_at(i)->name, shmd__kv_cmd_at(i)->name_len) == NULL)
      n++;
  return n;
}

/* For commands.c's COMMAND: the server table. */
const srv_cmd_t *srv_server_cmd_at(size_t i) { return i < NSERVER ? &server_cmds[i] : NULL; }
const srv_cmd_t *srv_server_cmd_find(const char *name, size_t n) { return server_find(name, n); }

/* Redis's unknown-command error: the name and the arguments cut at 128 characters in all, each
 * printed as a C string (a NUL ends it). */
static void unknown_command(client_t *c, int argc, const char **argv, const size_t *lens) {
  char args[512];
  size_t al = 0;
  args[0] = 0;
  for (int i = 1; i < argc && al < 128; i++) {
    size_t room = 128 - al;
    size_t n = strnlen(argv[i], lens[i]);
    if (n > room)
      n = room;
    al += (size_t)snprintf(args + al, sizeof args - al, "'%.*s' ", (int)n, argv[i]);
  }
  size_t nl = strnlen(argv[0], lens[0]);
  resp_errorf(&c->out, "ERR unknown command '%.*s', with args beginning with: %s", (int)(nl > 128 ? 128 : nl), argv[0],
              args);
}

int srv_lookup(client_t *c, int argc, const char **argv, const size_t *lens, srv_lookup_t *out) {
  memset(out, 0, sizeof *out);
  const srv_cmd_t *sc = server_find(argv[0], lens[0]);
  if (sc) {
    if (sc->subs && (argc >= 2 || sc->proc == NULL)) {
      if (argc < 2) {
        resp_errorf(&c->out, "ERR wrong number of arguments for '%s' command", sc->name);
        return -1;
      }
      const srv_cmd_t *sub = NULL;
      for (const srv_cmd_t *s = sc->subs; s->name; s++)
        if (strlen(s->name) == lens[1] && !strncasecmp(s->name, argv[1], lens[1])) {
          sub = s;
          break;
        }
      if (sub == NULL) {
        char up[32];
        size_t n = strlen(sc->name);
        for (size_t i = 0; i <= n; i++)
          up[i] = (char)toupper((unsigned char)sc->name[i]);
        size_t sl = strnlen(argv[1], lens[1]);
        resp_errorf(&c->out, "ERR unknown subcommand '%.*s'. Try %s HELP.", (int)(sl > 128 ? 128 : sl), argv[1], up);
        return -1;
      }
      sc = sub;
    }
    if ((sc->arity > 0 && argc != sc->arity) || (sc->arity < 0 && argc < -sc->arity)) {
      resp_errorf(&c->out, "ERR wrong number of arguments for '%s' command", sc->fullname);
      return -1;
    }
    out->scmd = sc;
    out->fullname = sc->fullname;
    return 0;
  }
  const shmd__kv_cmd_t *kc = shmd__kv_cmd_find(argv[0], lens[0]);
  if (kc == NULL) {
    unknown_command(c, argc, argv, lens);
    return -1;
  }
  if ((kc->arity > 0 && argc != kc->arity) || (kc->arity < 0 && argc < -kc->arity)) {
    resp_errorf(&c->out, "ERR wrong number of arguments for '%s' command", kc->name);
    return -1;
  }
  out->kcmd = kc;
  out->fullname = kc->name;
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Running commands */

void srv_kv_call(client_t *c, const shmd__kv_cmd_t *kc, int argc, const char **argv, const size_t *lens) {
  shmd_reply_t r;
  memset(&r, 0, sizeof r);
  int rc = shmd__kv_run(srv.store, c->db, kc, argc, argv, lens, &r);
  if (rc) {
    srv_log(rc == SHMD_ECORRUPT ? LL_WARNING : LL_VERBOSE, "%s: %s (%s)", kc->name, shmd_strerror(rc), shmd_errdetail());
    resp_errorf(&c->out, "ERR shmdict: %s", shmd_strerror(rc));
    return;
  }
  srv_write_reply(c, kc->name, argc, argv, lens, &r);
  shmd__kv_reply_clear(&r);
}

void srv_call(client_t *c, const srv_lookup_t *lk, int argc, const char **argv, const size_t *lens) {
  if (lk->scmd)
    lk->scmd->proc(c, argc, argv, lens);
  else
    srv_kv_call(c, lk->kcmd, argc, argv, lens);
}

void srv_process_command(client_t *c, int argc, const char **argv, const size_t *lens) {
  /* QUIT is answered before anything else, as redis-server 7.0 does. */
  if (lens[0] == 4 && !strncasecmp(argv[0], "quit", 4)) {
    cmd_quit(c, argc, argv, lens);
    c->last_cmd = "quit";
    return;
  }
  srv_lookup_t lk;
  if (srv_lookup(c, argc, argv, lens, &lk))
    return;
  unsigned flags = lk.scmd ? lk.scmd->flags : 0;
  if (!c->authed && !(flags & SC_NOAUTH)) {
    resp_errorf(&c->out, "NOAUTH Authentication required.");
    return;
  }
  if (c->resp == 2 && (c->nchannels || c->npatterns) && !(flags & SC_PUBSUB)) {
    resp_errorf(&c->out,
                "ERR Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed "
                "in this context",
                lk.fullname);
    return;
  }
  if (srv.nmonitors && !(flags & (SC_ADMIN | SC_NOAUTH)))
    srv_monitor_feed(c, argc, argv, lens);
  c->last_cmd = lk.fullname;
  uint64_t t0 = srv_ticks();
  srv_call(c, &lk, argc, argv, lens);
  uint64_t us = (srv_ticks() - t0) / srv_ticks_per_us;
  srv.stat_cmds++;
  if (!(flags & SC_BLOCKING) || !(c->flags & CF_BLOCKED))
    srv_slowlog_add(c, argc, argv, lens, us);
}
