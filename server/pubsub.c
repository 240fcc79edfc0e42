/* SPDX-License-Identifier: MIT */
/*
 * Pub/sub, the worker's side (Redis's pubsub.c over kv/pubsub.c's ring). A worker keeps its own
 * clients' subscriptions in process memory (channel -> subscribers, pattern -> subscribers) and
 * counts them in its slot's registry in the store, which PUBLISH's reply and PUBSUB read across
 * all workers. Messages come from the store's ring: PUBLISH on any worker, or shmd_kv_publish()
 * in any process, appends to the ring and wakes every worker's notifier thread; the loop then
 * reads every new record (srv_pubsub_poll) and writes "message" / "pmessage" pushes into its
 * subscribers' output buffers, where the output-buffer limit of the pubsub class applies (a slow
 * subscriber is disconnected, as Redis does). A worker that falls a whole ring behind has lost
 * messages: it disconnects all its subscribers, the same outcome for them as the buffer limit.
 */
#include <stdlib.h>
#include <string.h>

#include "kv/notify.h"
#include "kv/util.h"
#include "server/server.h"
#include "server/strmap.h"

typedef struct subs_s {
  client_t **v;
  size_t n, cap;
} subs_t;

typedef struct srv_psclient_s {
  strmap_t channels, patterns;
} psclient_t;

static strmap_t channels, patterns; /* name -> subs_t* */
static kv_ps_root_t *root;
static uint64_t rpos;
static char *rbuf;
static size_t rcap;

int srv_pubsub_init(void) {
  root = shmd__kv_ps_root(srv.store);
  if (root == NULL)
    return -1;
  rpos = shmd__kv_ps_head(root);
  return 0;
}

uint64_t srv_pubsub_local_channels(void) { return channels.count; }
uint64_t srv_pubsub_local_patterns(void) { return patterns.count; }

/* ---------------------------------------------------------------------------------------------- */
/* Local tables */

static int subs_add(strmap_t *m, const char *name, size_t len, client_t *c) {
  strmap_ent_t *e = strmap_put(m, name, len, NULL);
  if (e == NULL)
    return -1;
  subs_t *s = e->val;
  if (s == NULL) {
    s = e->val = calloc(1, sizeof *s);
    if (s == NULL) {
      strmap_del(m, name, len);
      return -1;
    }
  }
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 4;
    client_t **v = realloc(s->v, cap * sizeof *v);
    if (v == NULL)
      return -1;
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n++] = c;
  return 0;
}

static void subs_remove(strmap_t *m, const char *name, size_t len, client_t *c) {
  strmap_ent_t *e = strmap_get(m, name, len);
  if (e == NULL)
    return;
  subs_t *s = e->val;
  for (size_t i = 0; i < s->n; i++)
    if (s->v[i] == c) {
      memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof *s->v);
      s->n--;
      break;
    }
  if (s->n == 0) {
    free(s->v);
    free(s);
    strmap_del(m, name, len);
  }
}

static psclient_t *ps_of(client_t *c) {
  if (c->psub == NULL)
    c->psub = calloc(1, sizeof *c->psub);
  return c->psub;
}

static void count_changed(client_t *c, size_t before) {
  size_t after = c->nchannels + c->npatterns;
  if (before == 0 && after > 0) {
    c->flags |= CF_PUBSUB;
    srv.npubsub++;
  } else if (before > 0 && after == 0) {
    c->flags &= ~CF_PUBSUB;
    srv.npubsub--;
  }
}

/* The reply for one (un)subscription: [kind, name, count] (a push in RESP3). */
static void sub_reply(client_t *c, const char *kind, const char *name, size_t len, int null_name) {
  resp_push(&c->out, c->resp, 3);
  resp_bulkstr(&c->out, kind);
  if (null_name)
    resp_null(&c->out, c->resp);
  else
    resp_bulk(&c->out, name, len);
  resp_int(&c->out, (long long)(c->nchannels + c->npatterns));
}

static int subscribe(client_t *c, int pattern, const char *name, size_t len) {
  psclient_t *p = ps_of(c);
  if (p == NULL)
    return -1;
  int created;
  strmap_ent_t *e = strmap_put(pattern ? &p->patterns : &p->channels, name, len, &created);
  if (e == NULL)
    return -1;
  if (!created)
    return 0;
  size_t before = c->nchannels + c->npatterns;
  if (subs_add(pattern ? &patterns : &channels, name, len, c)) {
    strmap_del(pattern ? &p->patterns : &p->channels, name, len);
    return -1;
  }
  if (pattern)
    c->npatterns++;
  else
    c->nchannels++;
  count_changed(c, before);
  int rc = shmd__kv_ps_count(srv.store, srv.slot, pattern, name, len, +1);
  if (rc)
    srv_log(LL_WARNING, "pub/sub registry: %s", shmd_strerror(rc));
  return 0;
}

/* Returns 1 when c was subscribed (and is not any more). */
static int unsubscribe(client_t *c, int pattern, const char *name, size_t len) {
  psclient_t *p = c->psub;
  if (p == NULL || strmap_get(pattern ? &p->patterns : &p->channels, name, len) == NULL)
    return 0;
  strmap_del(pattern ? &p->patterns : &p->channels, name, len);
  subs_remove(pattern ? &patterns : &channels, name, len, c);
  size_t before = c->nchannels + c->npatterns;
  if (pattern)
    c->npatterns--;
  else
    c->nchannels--;
  count_changed(c, before);
  shmd__kv_ps_count(srv.store, srv.slot, pattern, name, len, -1);
  return 1;
}

typedef struct names_s {
  char **v;
  size_t *l;
  size_t n;
} names_t;

static void collect(strmap_ent_t *e, void *arg) {
  names_t *ns = arg;
  ns->v[ns->n] = strndup(e->key, e->len);
  ns->l[ns->n] = e->len;
  if (ns->v[ns->n])
    ns->n++;
}

static void unsubscribe_all(client_t *c, int pattern, int notify) {
  psclient_t *p = c->psub;
  strmap_t *m = p ? (pattern ? &p->patterns : &p->channels) : NULL;
  const char *kind = pattern ? "punsubscribe" : "unsubscribe";
  if (m == NULL || m->count == 0) {
    if (notify)
      sub_reply(c, kind, NULL, 0, 1);
    return;
  }
  names_t ns = {calloc(m->count, sizeof(char *)), calloc(m->count, sizeof(size_t)), 0};
  if (ns.v && ns.l)
    strmap_each(m, collect, &ns);
  for (size_t i = 0; i < ns.n; i++) {
    unsubscribe(c, pattern, ns.v[i], ns.l[i]);
    if (notify)
      sub_reply(c, kind, ns.v[i], ns.l[i], 0);
    free(ns.v[i]);
  }
  free(ns.v);
  free(ns.l);
}

void srv_pubsub_unsubscribe_all(client_t *c, int notify) {
  unsubscribe_all(c, 0, notify);
  unsubscribe_all(c, 1, notify);
  if (c->psub) {
    strmap_free(&c->psub->channels);
    strmap_free(&c->psub->patterns);
    free(c->psub);
    c->psub = NULL;
  }
}

void srv_pubsub_client_gone(client_t *c) { srv_pubsub_unsubscribe_all(c, 0); }

/* ---------------------------------------------------------------------------------------------- */
/* Commands */

void srv_cmd_subscribe(client_t *c, int argc, const char **argv, const size_t *lens) {
  for (int i = 1; i < argc; i++) {
    if (subscribe(c, 0, argv[i], lens[i])) {
      resp_errorf(&c->out, "ERR shmdict: out of memory");
      return;
    }
    sub_reply(c, "subscribe", argv[i], lens[i], 0);
  }
}

void srv_cmd_psubscribe(client_t *c, int argc, const char **argv, const size_t *lens) {
  for (int i = 1; i < argc; i++) {
    if (subscribe(c, 1, argv[i], lens[i])) {
      resp_errorf(&c->out, "ERR shmdict: out of memory");
      return;
    }
    sub_reply(c, "psubscribe", argv[i], lens[i], 0);
  }
}

void srv_cmd_unsubscribe(client_t *c, int argc, const char **argv, const size_t *lens) {
  if (argc == 1) {
    unsubscribe_all(c, 0, 1);
    return;
  }
  for (int i = 1; i < argc; i++) {
    unsubscribe(c, 0, argv[i], lens[i]);
    sub_reply(c, "unsubscribe", argv[i], lens[i], 0);
  }
}

void srv_cmd_punsubscribe(client_t *c, int argc, const char **argv, const size_t *lens) {
  if (argc == 1) {
    unsubscribe_all(c, 1, 1);
    return;
  }
  for (int i = 1; i < argc; i++) {
    unsubscribe(c, 1, argv[i], lens[i]);
    sub_reply(c, "punsubscribe", argv[i], lens[i], 0);
  }
}

void srv_cmd_publish(client_t *c, int argc, const char **argv, const size_t *lens) {
  (void)argc;
  uint64_t n = 0;
  int rc = shmd__kv_ps_publish(srv.store, argv[1], lens[1], argv[2], lens[2], &n);
  if (rc == SHMD_ETOOBIG) {
    resp_errorf(&c->out, "ERR shmdict: message too large for the pub/sub ring (pubsub-ring-bytes)");
    return;
  }
  if (rc) {
    resp_errorf(&c->out, "ERR shmdict: %s", shmd_strerror(rc));
    return;
  }
  resp_int(&c->out, (long long)n);
  srv_pubsub_poll(); /* this worker's subscribers get it now, in order with the reply */
}

typedef struct chlist_s {
  strmap_t seen;
  const char *pat;
  size_t pl;
  int patterns;
} chlist_t;

static int chlist_visit(const void *name, size_t len, uint64_t count, void *arg) {
  chlist_t *cl = arg;
  if (count == 0)
    return 0;
  if (cl->pat && !shmd__kv_glob(cl->pat, cl->pl, name, len, 0))
    return 0;
  strmap_put(&cl->seen, name, len, NULL);
  return 0;
}

static void emit_name(strmap_ent_t *e, void *arg) {
  client_t *c = arg;
  resp_bulk(&c->out, e->key, e->len);
}

void srv_cmd_pubsub_channels(client_t *c, int argc, const char **argv, const size_t *lens) {
  if (argc > 3) {
    resp_errorf(&c->out, "ERR wrong number of arguments for 'pubsub|channels' command");
    return;
  }
  chlist_t cl = {{0}, argc == 3 ? argv[2] : NULL, argc == 3 ? lens[2] : 0, 0};
  int rc = shmd__kv_ps_foreach(srv.store, 0, chlist_visit, &cl);
  if (rc) {
    strmap_free(&cl.seen);
    resp_errorf(&c->out, "ERR shmdict: %s", shmd_strerror(rc));
    return;
  }
  resp_array(&c->out, (long long)cl.seen.count);
  strmap_each(&cl.seen, emit_name, c);
  strmap_free(&cl.seen);
}

void srv_cmd_pubsub_numsub(client_t *c, int argc, const char **argv, const size_t *lens) {
  resp_array(&c->out, 2 * (long long)(argc - 2)); /* an array even in RESP3, as Redis 7.0 */
  for (int i = 2; i < argc; i++) {
    uint64_t n = 0;
    shmd__kv_ps_numsub(srv.store, argv[i], lens[i], &n);
    resp_bulk(&c->out, argv[i], lens[i]);
    resp_int(&c->out, (long long)n);
  }
}

void srv_cmd_pubsub_numpat(client_t *c, int argc, const char **argv, const size_t *lens) {
  (void)argc;
  (void)argv;
  (void)lens;
  chlist_t cl = {{0}, NULL, 0, 1};
  shmd__kv_ps_foreach(srv.store, 1, chlist_visit, &cl);
  resp_int(&c->out, (long long)cl.seen.count);
  strmap_free(&cl.seen);
}

static const char *const pubsub_help[] = {
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "HELP",
    "    Prints this help.",
    NULL};

void srv_cmd_pubsub_help(client_t *c, int argc, const char **argv, const size_t *lens) {
  (void)argc;
  (void)argv;
  (void)lens;
  size_t n = 0;
  while (pubsub_help[n])
    n++;
  resp_array(&c->out, (long long)n);
  for (size_t i = 0; i < n; i++)
    resp_status(&c->out, pubsub_help[i], strlen(pubsub_help[i]));
}

/* ---------------------------------------------------------------------------------------------- */
/* Delivery */

typedef struct pmatch_s {
  const kv_ps_msg_t *m;
} pmatch_t;

static void deliver_pattern(strmap_ent_t *e, void *arg) {
  const kv_ps_msg_t *m = arg;
  if (!shmd__kv_glob(e->key, e->len, m->channel, m->channel_len, 0))
    return;
  subs_t *s = e->val;
  for (size_t i = 0; i < s->n; i++) {
    client_t *c = s->v[i];
    if (c->flags & (CF_CLOSING | CF_CLOSE_ASAP))
      continue;
    resp_push(&c->out, c->resp, 4);
    resp_bulk(&c->out, "pmessage", 8);
    resp_bulk(&c->out, e->key, e->len);
    resp_bulk(&c->out, m->channel, m->channel_len);
    resp_bulk(&c->out, m->message, m->message_len);
    client_reply_flush_later(c);
    client_check_obl(c);
  }
}

static void drop_all_subscribers(void) {
  size_t n = 0;
  for (client_t *c = srv.clients; c; c = c->next)
    if ((c->nchannels || c->npatterns) && !(c->flags & (CF_CLOSING | CF_CLOSE_ASAP))) {
      client_close_async(c);
      n++;
    }
  srv_log(LL_WARNING, "Worker %d fell a whole ring behind the pub/sub messages (or met a damaged record): "
                      "disconnected %zu subscribers, as over their output-buffer limit",
          srv.index, n);
}

void srv_pubsub_poll(void) {
  if (root == NULL)
    return;
  for (int budget = 0; budget < 100000; budget++) {
    kv_ps_msg_t m;
    int rc = shmd__kv_ps_read(root, srv.store, &rpos, &rbuf, &rcap, &m);
    if (rc == 0)
      return;
    if (rc == 2) {
      if (srv.npubsub)
        drop_all_subscribers();
      continue;
    }
    if (rc < 0)
      return;
    if (channels.count) {
      strmap_ent_t *e = strmap_get(&channels, m.channel, m.channel_len);
      if (e) {
        subs_t *s = e->val;
        for (size_t i = 0; i < s->n; i++) {
          client_t *c = s->v[i];
          if (c->flags & (CF_CLOSING | CF_CLOSE_ASAP))
            continue;
          resp_push(&c->out, c->resp, 3);
          resp_bulk(&c->out, "message", 7);
          resp_bulk(&c->out, m.channel, m.channel_len);
          resp_bulk(&c->out, m.message, m.message_len);
          client_reply_flush_later(c);
          client_check_obl(c);
        }
      }
    }
    if (patterns.count)
      strmap_each(&patterns, deliver_pattern, &m);
  }
}
