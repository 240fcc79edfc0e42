/* SPDX-License-Identifier: MIT */
/*
 * COMMAND, COMMAND COUNT / INFO / DOCS / LIST, built from the two command tables: the
 * keyspace's (kv/commands.def: name, arity, key positions, Redis 7.0 flags, group, syntax,
 * summary) and the server's (commands.c). Entries have Redis 7.0's shape; what the tables do not
 * hold is derived (ACL categories from the flags and the group) or left empty (key specs and
 * tips), as docs/server.md says.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "kv/util.h"
#include "server/server.h"

extern const srv_cmd_t *srv_server_cmd_at(size_t i);
extern const srv_cmd_t *srv_server_cmd_find(const char *name, size_t n);

/* A command of either table, seen the same way. */
typedef struct view_s {
  const char *name;
  int arity, first, last, step;
  const char *flags[16];
  int nflags;
  const char *cats[8];
  int ncats;
  const char *group, *summary;
  const srv_cmd_t *subs;
} view_t;

static void add_flag(view_t *v, const char *f) {
  if (v->nflags < 16)
    v->flags[v->nflags++] = f;
}
static void add_cat(view_t *v, const char *c) {
  if (v->ncats < 8)
    v->cats[v->ncats++] = c;
}

static const char *group_cat(const char *g) {
  if (!strcmp(g, "string"))
    return "@string";
  if (!strcmp(g, "hash"))
    return "@hash";
  if (!strcmp(g, "list"))
    return "@list";
  if (!strcmp(g, "set"))
    return "@set";
  if (!strcmp(g, "sorted-set"))
    return "@sortedset";
  if (!strcmp(g, "generic"))
    return "@keyspace";
  if (!strcmp(g, "connection"))
    return "@connection";
  if (!strcmp(g, "pubsub"))
    return "@pubsub";
  return NULL;
}

static void view_kv(const shmd__kv_cmd_t *k, view_t *v) {
  memset(v, 0, sizeof *v);
  v->name = k->name;
  v->arity = k->arity;
  v->first = k->first_key;
  v->last = k->last_key;
  v->step = k->key_step;
  if (k->flags & KV_CMD_WRITE)
    add_flag(v, "write");
  if (k->flags & KV_CMD_READONLY)
    add_flag(v, "readonly");
  if (k->flags & KV_CMD_DENYOOM)
    add_flag(v, "denyoom");
  if (k->flags & KV_CMD_ADMIN)
    add_flag(v, "admin");
  if (k->flags & KV_CMD_FAST)
    add_flag(v, "fast");
  int movable = k->first_key == 0 && (!strcmp(k->group, "list") || !strcmp(k->group, "sorted-set"));
  if (movable)
    add_flag(v, "movablekeys");
  if (k->flags & KV_CMD_WRITE)
    add_cat(v, "@write");
  if (k->flags & KV_CMD_READONLY)
    add_cat(v, "@read");
  const char *gc = group_cat(k->group);
  if (!strcmp(k->group, "server") && (k->flags & (KV_CMD_WRITE | KV_CMD_READONLY)))
    gc = "@keyspace";
  if (gc)
    add_cat(v, gc);
  add_cat(v, (k->flags & KV_CMD_FAST) ? "@fast" : "@slow");
  if (!strcmp(k->name, "keys") || !strcmp(k->name, "flushdb") || !strcmp(k->name, "flushall"))
    add_cat(v, "@dangerous");
  v->group = k->group;
  v->summary = k->summary;
}

static void view_srv(const srv_cmd_t *s, view_t *v) {
  memset(v, 0, sizeof *v);
  v->name = s->fullname ? s->fullname : s->name;
  v->arity = s->arity;
  v->first = s->first_key;
  v->last = s->last_key;
  v->step = s->key_step;
  static const struct {
    unsigned bit;
    const char *name;
  } order[] = {{SC_WRITE, "write"},       {SC_READONLY, "readonly"}, {SC_DENYOOM, "denyoom"},
               {SC_ADMIN, "admin"},       {SC_PUBSUB_FLAG, "pubsub"}, {SC_NOSCRIPT, "noscript"},
               {SC_BLOCKING, "blocking"}, {SC_LOADING, "loading"},   {SC_STALE, "stale"},
               {SC_FAST, "fast"},         {SC_NOAUTH, "no_auth"},    {SC_SENTINEL, "sentinel"},
               {SC_NOMULTI, "no_multi"}};
  for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
    if (s->flags & order[i].bit)
      add_flag(v, order[i].name);
  if (s->first_key == 0 && (s->flags & SC_BLOCKING))
    add_flag(v, "movablekeys");
  if (s->flags & SC_WRITE)
    add_cat(v, "@write");
  if (s->flags & SC_READONLY)
    add_cat(v, "@read");
  const char *gc = s->group ? group_cat(s->group) : NULL;
  if (gc)
    add_cat(v, gc);
  if (s->flags & SC_ADMIN) {
    add_cat(v, "@admin");
    add_cat(v, "@dangerous");
  }
  if ((s->flags & SC_PUBSUB_FLAG) && !(gc && !strcmp(gc, "@pubsub")))
    add_cat(v, "@pubsub");
  if (s->flags & SC_BLOCKING)
    add_cat(v, "@blocking");
  add_cat(v, (s->flags & SC_FAST) ? "@fast" : "@slow");
  v->group = s->group;
  v->summary = s->summary;
  v->subs = s->subs;
}

static void emit_info(client_t *c, const view_t *v) {
  obuf_t *o = &c->out;
  resp_array(o, 10);
  resp_bulkstr(o, v->name);
  resp_int(o, v->arity);
  resp_set(o, c->resp, v->nflags);
  for (int i = 0; i < v->nflags; i++)
    resp_status(o, v->flags[i], strlen(v->flags[i]));
  resp_int(o, v->first);
  resp_int(o, v->last);
  resp_int(o, v->step);
  resp_set(o, c->resp, v->ncats);
  for (int i = 0; i < v->ncats; i++)
    resp_status(o, v->cats[i], strlen(v->cats[i]));
  resp_set(o, c->resp, 0); /* tips */
  resp_array(o, 0);        /* key specs */
  size_t ns = 0;
  if (v->subs)
    while (v->subs[ns].name)
      ns++;
  resp_array(o, (long long)ns);
  for (size_t i = 0; i < ns; i++) {
    view_t sv;
    view_srv(&v->subs[i], &sv);
    emit_info(c, &sv);
  }
}

/* Calls fn for every top-level command (server table, then the keyspace's not shadowed by it). */
static void each_command(void (*fn)(client_t *c, const view_t *v, void *arg), client_t *c, void *arg) {
  view_t v;
  for (size_t i = 0; srv_server_cmd_at(i); i++) {
    view_srv(srv_server_cmd_at(i), &v);
    fn(c, &v, arg);
  }
  for (size_t i = 0; i < shmd__kv_cmd_count(); i++) {
    const shmd__kv_cmd_t *k = shmd__kv_cmd_at(i);
    if (srv_server_cmd_find(k->name, k->name_len))
      continue;
    view_kv(k, &v);
    fn(c, &v, arg);
  }
}

static int find_view(const char *name, size_t n, view_t *v) {
  const srv_cmd_t *s = srv_server_cmd_find(name, n);
  if (s) {
    view_srv(s, v);
    return 1;
  }
  const char *bar = memchr(name, '|', n);
  if (bar) { /* "client|list" */
    s = srv_server_cmd_find(name, (size_t)(bar - name));
    if (s && s->subs)
      for (const srv_cmd_t *x = s->subs; x->name; x++)
        if (strlen(x->name) == n - (size_t)(bar - name) - 1 && !strncasecmp(x->name, bar + 1, strlen(x->name))) {
          view_srv(x, v);
          return 1;
        }
    return 0;
  }
  const shmd__kv_cmd_t *k = shmd__kv_cmd_find(name, n);
  if (k) {
    view_kv(k, v);
    return 1;
  }
  return 0;
}

static void info_each(client_t *c, const view_t *v, void *arg) {
  (void)arg;
  emit_info(c, v);
}

void srv_cmd_command(client_t *c, int argc, const char **argv, const size_t *lens) {
  (void)argc;
  (void)argv;
  (void)lens;
  resp_array(&c->out, (long long)srv_command_count());
  each_command(info_each, c, NULL);
}

void srv_cmd_command_count(client_t *c, int argc, const char **argv, const size_t *lens) {
  (void)argc;
  (void)argv;
  (void)lens;
  resp_int(&c->out, (long long)srv_command_count());
}

void srv_cmd_command_info(client_t *c, int argc, const char **argv, const size_t *lens) {
  if (argc == 2) {
    srv_cmd_command(c, argc, argv, lens);
    return;
  }
  resp_array(&c->out, argc - 2);
  for (int i = 2; i < argc; i++) {
    view_t v;
    if (find_view(argv[i], lens[i], &v))
      emit_info(c, &v);
    else
      resp_null(&c->out, c->resp); /* Redis: a null bulk in RESP2 */
  }
}

static void emit_docs(client_t *c, const view_t *v) {
  obuf_t *o = &c->out;
  size_t ns = 0;
  if (v->subs)
    while (v->subs[ns].name)
      ns++;
  resp_map(o, c->resp, ns ? 3 : 2);
  resp_bulkstr(o, "summary");
  resp_bulkstr(o, v->summary ? v->summary : "");
  resp_bulkstr(o, "group");
  resp_bulkstr(o, v->group ? v->group : "server");
  if (ns) {
    resp_bulkstr(o, "subcommands");
    resp_map(o, c->resp, (long long)ns);
    for (size_t i = 0; i < ns; i++) {
      view_t sv;
      view_srv(&v->subs[i], &sv);
      resp_bulkstr(o, sv.name);
      emit_docs(c, &sv);
    }
  }
}

static void docs_each(client_t *c, const view_t *v, void *arg) {
  (void)arg;
  resp_bulkstr(&c->out, v->name);
  emit_docs(c, v);
}

void srv_cmd_command_docs(client_t *c, int argc, const char **argv, const size_t *lens) {
  if (argc == 2) {
    resp_map(&c->out, c->resp, (long long)srv_command_count());
    each_command(docs_each, c, NULL);
    return;
  }
  view_t vs[64];
  int n = 0;
  for (int i = 2; i < argc && n < 64; i++)
    if (find_view(argv[i], lens[i], &vs[n]))
      n++;
  resp_map(&c->out, c->resp, n);
  for (int i = 0; i < n; i++) {
    resp_bulkstr(&c->out, vs[i].name);
    emit_docs(c, &vs[i]);
  }
}

typedef struct filter_s {
  int kind; /* 0 all, 1 pattern, 2 aclcat, 3 module */
  const char *arg;
  size_t len;
  long long n;
  int count_only;
} filter_t;

static int filter_hit(const view_t *v, const filter_t *f) {
  if (f->kind == 0)
    return 1;
  if (f->kind == 1)
    return shmd__kv_glob(f->arg, f->len, v->name, strlen(v->name), 1);
  if (f->kind == 2) {
    for (int i = 0; i < v->ncats; i++)
      if (strlen(v->cats[i]) - 1 == f->len && !strncasecmp(v->cats[i] + 1, f->arg, f->len))
        return 1;
    return 0;
  }
  return 0; /* no modules */
}

static void list_each(client_t *c, const view_t *v, void *arg) {
  filter_t *f = arg;
  if (!filter_hit(v, f))
    return;
  f->n++;
  if (!f->count_only)
    resp_bulkstr(&c->out, v->name);
}

void srv_cmd_command_list(client_t *c, int argc, const char **argv, const size_t *lens) {
  filter_t f = {0, NULL, 0, 0, 1};
  if (argc == 5 && !strncasecmp(argv[2], "FILTERBY", lens[2]) && lens[2] == 8) {
    if (lens[3] == 7 && !strncasecmp(argv[3], "PATTERN", 7))
      f.kind = 1;
    else if (lens[3] == 6 && !strncasecmp(argv[3], "ACLCAT", 6))
      f.kind = 2;
    else if (lens[3] == 6 && !strncasecmp(argv[3], "MODULE", 6))
      f.kind = 3;
    else {
      resp_errorf(&c->out, "ERR syntax error");
      return;
    }
    f.arg = argv[4];
    f.len = lens[4];
  } else if (argc != 2) {
    resp_errorf(&c->out, "ERR syntax error");
    return;
  }
  each_command(list_each, c, &f); /* count first, then write */
  resp_array(&c->out, f.n);
  f.count_only = 0;
  f.n = 0;
  each_command(list_each, c, &f);
}

static const char *const command_help[] = {
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "HELP",
    "    Prints this help.",
    NULL};

void srv_cmd_command_help(client_t *c, int argc, const char **argv, const size_t *lens) {
  (void)argc;
  (void)argv;
  (void)lens;
  size_t n = 0;
  while (command_help[n])
    n++;
  resp_array(&c->out, (long long)n);
  for (size_t i = 0; i < n; i++)
    resp_status(&c->out, command_help[i], strlen(command_help[i]));
}
