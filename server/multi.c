/* SPDX-License-Identifier: MIT */
/*
 * shmdict-server's MULTI / EXEC / DISCARD / WATCH / UNWATCH: each client keeps the keyspace's
 * client state (shmd_kv_multi_t, kv/multi.c), which queues the commands, runs EXEC as one
 * crash-atomic transaction of the store and checks the WATCHed keys' versions (changes by any
 * process, the server's other workers and programs using the library included). This file only
 * routes commands to that state and writes EXEC's reply, each element shaped as its own command's
 * reply would be (RESP3 maps, doubles, ...), so the list of queued commands is kept here too.
 *
 * Inside MULTI the keyspace's commands, SELECT and PING are queued; the server's other commands
 * (CLIENT, CONFIG, INFO, the blocking pops, pub/sub, ...) are refused with an error and make EXEC
 * answer EXECABORT, where Redis would queue them (docs/server.md). RESET and QUIT are not queued.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kv/reply.h"
#include "server/server.h"
#include "shmdict/kv.h"

typedef struct srv_queued_s {
  const char *name; /* the keyspace command's name (static) */
  int argc;
  char **argv;
  size_t *lens;
} srv_queued_t;

static void queued_clear(client_t *c) {
  for (size_t i = 0; i < c->nmq; i++) {
    for (int k = 0; k < c->mq[i].argc; k++)
      free(c->mq[i].argv[k]);
    free(c->mq[i].argv);
    free(c->mq[i].lens);
  }
  c->nmq = 0;
}

void srv_multi_free(client_t *c) {
  queued_clear(c);
  free(c->mq);
  c->mq = NULL;
  c->capmq = 0;
  shmd_kv_multi_free(c->multi);
  c->multi = NULL;
}

/* Notes a queued command; 0 or -1 (out of memory: the transaction is flagged failed). */
static int queued_add(client_t *c, const char *name, int argc, const char **argv, const size_t *lens) {
  if (c->nmq == c->capmq) {
    size_t cap = c->capmq ? c->capmq * 2 : 8;
    srv_queued_t *q = realloc(c->mq, cap * sizeof *q);
    if (q == NULL)
      return -1;
    c->mq = q;
    c->capmq = cap;
  }
  srv_queued_t *e = &c->mq[c->nmq];
  e->name = name;
  e->argc = 0;
  e->argv = calloc((size_t)argc, sizeof *e->argv);
  e->lens = calloc((size_t)argc, sizeof *e->lens);
  if (e->argv == NULL || e->lens == NULL)
    goto fail;
  for (int i = 0; i < argc; i++) {
    if ((e->argv[i] = malloc(lens[i] + 1)) == NULL)
      goto fail;
    memcpy(e->argv[i], argv[i], lens[i]);
    e->argv[i][lens[i]] = 0;
    e->lens[i] = lens[i];
    e->argc = i + 1;
  }
  c->nmq++;
  return 0;
fail:
  for (int i = 0; i < e->argc; i++)
    free(e->argv[i]);
  free(e->argv);
  free(e->lens);
  return -1;
}

static int is(const char *name, const char *want) { return strcasecmp(name, want) == 0; }

/* MULTI, EXEC, DISCARD, WATCH or UNWATCH: the table's names are lower case; every other command
 * (all of them, on the hot path) is told apart by its first letter or one compare. */
static int is_txcmd(const char *name) {
  switch (name[0]) {
  case 'm': return is(name, "multi");
  case 'e': return is(name, "exec");
  case 'd': return is(name, "discard");
  case 'w': return is(name, "watch");
  case 'u': return is(name, "unwatch");
  default: return 0;
  }
}

int srv_multi_call(client_t *c, const srv_lookup_t *lk, int argc, const char **argv, const size_t *lens) {
  const char *name = lk->kcmd ? lk->kcmd->name : lk->scmd->name;
  int active = c->multi && shmd_kv_multi_active(c->multi);
  if (!active && !(lk->kcmd && is_txcmd(name)))
    return 0;
  if (active && lk->scmd) {
    if (is(name, "reset"))
      return 0; /* runs now, and discards the transaction (srv_reset_client) */
    if (!is(name, "select") && !is(name, "ping")) {
      shmd__kv_multi_flag(c->multi);
      resp_errorf(&c->out, "ERR shmdict-server: '%s' cannot be queued inside MULTI", lk->fullname);
      return 1;
    }
  }
  if (c->multi == NULL) {
    int rc = shmd_kv_multi_new(srv.store, c->db, &c->multi);
    if (rc) {
      resp_errorf(&c->out, "ERR shmdict: %s", shmd_strerror(rc));
      return 1;
    }
  }
  shmd__kv_multi_set_db(c->multi, c->db);
  int exec = lk->kcmd && is(name, "exec") && active;
  shmd_reply_t *r = NULL;
  int rc = shmd_kv_multi_command(c->multi, argc, argv, lens, &r);
  c->db = shmd_kv_multi_db(c->multi);
  if (rc) {
    srv_log(rc == SHMD_ECORRUPT ? LL_WARNING : LL_VERBOSE, "%s: %s (%s)", name, shmd_strerror(rc), shmd_errdetail());
    resp_errorf(&c->out, "ERR shmdict: %s", shmd_strerror(rc));
    if (exec)
      queued_clear(c);
    return 1;
  }
  if (exec) {
    if (r->type == SHMD_REPLY_NIL) {
      resp_null_array(&c->out, c->resp); /* a WATCHed key changed */
    } else if (r->type == SHMD_REPLY_ARRAY && r->nelems == c->nmq) {
      resp_array(&c->out, (long long)r->nelems);
      for (size_t i = 0; i < r->nelems; i++)
        srv_write_reply(c, c->mq[i].name, c->mq[i].argc, (const char **)c->mq[i].argv, c->mq[i].lens,
                        &r->elems[i]);
    } else {
      srv_write_reply(c, "exec", argc, argv, lens, r); /* EXECABORT, or the batch's error */
    }
    queued_clear(c);
  } else {
    if (r->type == SHMD_REPLY_STATUS && r->len == 6 && memcmp(r->str, "QUEUED", 6) == 0) {
      const shmd__kv_cmd_t *kc = lk->kcmd ? lk->kcmd : shmd__kv_cmd_find(argv[0], lens[0]);
      if (queued_add(c, kc ? kc->name : "select", argc, argv, lens)) {
        shmd__kv_multi_flag(c->multi);
        resp_errorf(&c->out, "OOM command not allowed when used memory > 'maxmemory'.");
        shmd_reply_free(r);
        return 1;
      }
    }
    if (!shmd_kv_multi_active(c->multi))
      queued_clear(c); /* DISCARD */
    srv_write_reply(c, name, argc, argv, lens, r);
  }
  shmd_reply_free(r);
  return 1;
}
