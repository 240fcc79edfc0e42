/* SPDX-License-Identifier: MIT */
/*
 * MULTI / EXEC / DISCARD / WATCH / UNWATCH (Redis's multi.c): a client's transaction state
 * (shmd_kv_multi_t, see include/shmdict/kv.h) and EXEC, which runs the queued commands as one
 * crash-atomic transaction of the store.
 *
 * EXEC
 * ----
 * 1. Every database the batch touches (SELECT inside MULTI switches it, COPY/MOVE ... DB n and
 *    the all-database commands reach others) is made to exist first, each in a transaction of its
 *    own (kv_db_prepare), so nothing inside the batch needs the keyspace root lock.
 * 2. One transaction is opened (joining the thread's open one, if any) and every stripe lock of
 *    every database the batch or a watched key touches is taken up front, by database then stripe
 *    index: the same global order as single commands, so EXEC never deadlocks with them (a command
 *    may lock stripes beyond its key positions: all of them are held already), and no other
 *    process sees the batch half done. Other commands on those databases wait for the batch.
 * 3. The watched keys' versions (keyspace.c, "Key versions") are compared with those noted at
 *    WATCH; a key that changed, or that expired since, makes EXEC answer nil: the transaction is
 *    aborted before any command ran.
 * 4. The commands run one after another, each a nested level of the same transaction
 *    (shmd__kv_cmd_run with the EXEC budget): an error reply of one command does not stop the
 *    others; a status that is no Redis reply (store full, reply ceiling, corruption) aborts all.
 * 5. The outermost commit makes the whole batch permanent in one step (crash point
 *    "kv.exec.commit" just before it; "kv.exec.command" after each command). A process killed
 *    anywhere before it has the batch rolled back by recovery, as any transaction; garbage the
 *    batch made is drained after the commit.
 */
#include <stdlib.h>
#include <string.h>

#include "kv/changelog.h"
#include "kv/cmd.h"
#include "segments/crash.h"

typedef struct mq_cmd_s {
  int argc;
  char **argv;
  size_t *lens;
  const shmd__kv_cmd_t *cmd; /* NULL: SELECT */
} mq_cmd_t;

typedef struct mwatch_s {
  unsigned db;
  char *key;
  size_t len;
  uint64_t ver[2];
  int expired; /* the key was already logically expired at WATCH */
} mwatch_t;

struct shmd_kv_multi_s {
  shmd_store_t *s;
  unsigned db;
  int in_multi;
  int dirty; /* a queued command was refused: EXEC answers EXECABORT */
  mq_cmd_t *q;
  size_t nq, capq;
  mwatch_t *w;
  size_t nw, capw;
};

#define ERR_EXECABORT "EXECABORT Transaction discarded because of previous errors."

/* ---------------------------------------------------------------------------------------------- */
/* State */

static void queue_clear(shmd_kv_multi_t *m) {
  for (size_t i = 0; i < m->nq; i++) {
    for (int k = 0; k < m->q[i].argc; k++)
      free(m->q[i].argv[k]);
    free(m->q[i].argv);
    free(m->q[i].lens);
  }
  free(m->q);
  m->q = NULL;
  m->nq = m->capq = 0;
  m->in_multi = 0;
  m->dirty = 0;
}

void shmd_kv_unwatch(shmd_kv_multi_t *m) {
  if (m == NULL)
    return;
  for (size_t i = 0; i < m->nw; i++)
    free(m->w[i].key);
  free(m->w);
  m->w = NULL;
  m->nw = m->capw = 0;
}

int shmd_kv_multi_new(shmd_store_t *store, unsigned db, shmd_kv_multi_t **out) {
  if (out)
    *out = NULL;
  if (store == NULL || out == NULL || db >= KV_NDB)
    return SHMD_EINVAL;
  shmd_kv_multi_t *m = calloc(1, sizeof *m);
  if (m == NULL)
    return SHMD_ENOMEM;
  m->s = store;
  m->db = db;
  *out = m;
  return 0;
}

void shmd_kv_multi_free(shmd_kv_multi_t *m) {
  if (m == NULL)
    return;
  queue_clear(m);
  shmd_kv_unwatch(m);
  free(m);
}

unsigned shmd_kv_multi_db(const shmd_kv_multi_t *m) { return m ? m->db : 0; }

int shmd_kv_multi_active(const shmd_kv_multi_t *m) { return m ? m->in_multi : 0; }

void shmd_kv_multi_discard(shmd_kv_multi_t *m) {
  if (m == NULL)
    return;
  queue_clear(m);
  shmd_kv_unwatch(m);
}

int shmd_kv_multi_begin(shmd_kv_multi_t *m) {
  if (m == NULL)
    return SHMD_EINVAL;
  if (m->in_multi)
    return SHMD_EEXIST;
  m->in_multi = 1;
  m->dirty = 0;
  return 0;
}

static int queue_add(shmd_kv_multi_t *m, const shmd__kv_cmd_t *cmd, int argc, const char *const argv[],
                     const size_t lens[]) {
  if (m->nq == m->capq) {
    size_t cap = m->capq ? m->capq * 2 : 8;
    mq_cmd_t *q = realloc(m->q, cap * sizeof *q);
    if (q == NULL)
      return SHMD_ENOMEM;
    m->q = q;
    m->capq = cap;
  }
  mq_cmd_t *e = &m->q[m->nq];
  e->cmd = cmd;
  e->argc = 0;
  e->argv = calloc((size_t)argc, sizeof *e->argv);
  e->lens = calloc((size_t)argc, sizeof *e->lens);
  if (e->argv == NULL || e->lens == NULL)
    goto nomem;
  for (int i = 0; i < argc; i++) {
    if ((e->argv[i] = malloc(lens[i] + 1)) == NULL)
      goto nomem;
    memcpy(e->argv[i], argv[i], lens[i]);
    e->argv[i][lens[i]] = 0;
    e->lens[i] = lens[i];
    e->argc = i + 1;
  }
  m->nq++;
  return 0;
nomem:
  for (int i = 0; i < e->argc; i++)
    free(e->argv[i]);
  free(e->argv);
  free(e->lens);
  return SHMD_ENOMEM;
}

/* ---------------------------------------------------------------------------------------------- */
/* WATCH */

int shmd_kv_watch(shmd_kv_multi_t *m, const void *key, size_t len) {
  if (m == NULL || (key == NULL && len))
    return SHMD_EINVAL;
  if (m->in_multi)
    return SHMD_EINVAL;
  for (size_t i = 0; i < m->nw; i++) /* already watched: Redis keeps the first note */
    if (m->w[i].db == m->db && m->w[i].len == len && memcmp(m->w[i].key, key, len) == 0)
      return 0;
  if (m->nw == m->capw) {
    size_t cap = m->capw ? m->capw * 2 : 8;
    mwatch_t *w = realloc(m->w, cap * sizeof *w);
    if (w == NULL)
      return SHMD_ENOMEM;
    m->w = w;
    m->capw = cap;
  }
  mwatch_t *w = &m->w[m->nw];
  memset(w, 0, sizeof *w);
  if ((w->key = malloc(len + 1)) == NULL)
    return SHMD_ENOMEM;
  if (len)
    memcpy(w->key, key, len);
  w->key[len] = 0;
  w->len = len;
  w->db = m->db;
  kv_ctx_t c;
  int rc = kv_db_prepare(m->s, m->db, 1); /* the database's versions exist from the first WATCH on */
  if (rc == 0)
    rc = kv_begin(m->s, m->db, &c);
  if (rc == 0) {
    if ((rc = kv_lock_stripes(&c, 1u << kv_stripe_of(key, len))) == 0 &&
        (rc = kv_version(&c, key, len, w->ver)) == 0) {
      int e = kv_peek_expired(&c, key, len);
      if (e < 0)
        rc = e;
      else
        w->expired = e;
    }
    rc = kv_end(&c, rc);
  }
  if (rc) {
    free(w->key);
    return rc;
  }
  m->nw++;
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* EXEC */

/* SELECT's argument as Redis reads it: 0 and the database, or an error reply in r. */
static int select_db(const char *a, size_t n, shmd_reply_t *r, unsigned *db) {
  long long v;
  if (parse_ll(a, n, &v))
    return r_error(r, ERR_NOTINT) == 0 ? 1 : SHMD_ENOMEM;
  if (v < 0 || v >= (long long)KV_NDB)
    return r_error(r, "ERR DB index is out of range") == 0 ? 1 : SHMD_ENOMEM;
  *db = (unsigned)v;
  return 0;
}

/* The databases a queued command touches, marked in used[]: the current one; one that COPY ...
 * DB n or MOVE key n reaches; every existing one for the all-database commands (SWAPDB,
 * FLUSHALL: marked 2, "if it exists", so that a FLUSHALL in a batch creates no database). */
static void need_dbs(const mq_cmd_t *q, unsigned db, int used[KV_NDB]) {
  const shmd__kv_cmd_t *cmd = q->cmd;
  used[db] = 1;
  long long other = -1;
  if (eq(cmd->name, cmd->name_len, "swapdb") || eq(cmd->name, cmd->name_len, "flushall")) {
    for (unsigned d = 0; d < KV_NDB; d++)
      if (!used[d])
        used[d] = 2;
    return;
  }
  if (eq(cmd->name, cmd->name_len, "move") && q->argc >= 3) {
    (void)parse_ll(q->argv[2], q->lens[2], &other);
  } else if (eq(cmd->name, cmd->name_len, "copy")) {
    for (int i = 3; i + 1 < q->argc; i++)
      if (eq(q->argv[i], q->lens[i], "db"))
        (void)parse_ll(q->argv[i + 1], q->lens[i + 1], &other);
  }
  if (other >= 0 && other < (long long)KV_NDB)
    used[other] = 1;
}

/* Runs the queue: see the essay above. Fills r; returns 0 or a status with no reply. */
static int exec_queue(shmd_kv_multi_t *m, shmd_reply_t *r) {
  /* Every stripe of every database the batch touches: a command may lock stripes beyond its key
   * positions (numkeys arguments, a key in an option), and taking one after the batch holds a
   * higher one could deadlock with a single command taking them in order. */
  int used[KV_NDB] = {0};
  unsigned mask[KV_NDB] = {0};
  const unsigned db0 = m->db;
  unsigned db = db0;
  for (size_t i = 0; i < m->nq; i++) {
    if (m->q[i].cmd == NULL) {
      long long v;
      if (parse_ll(m->q[i].argv[1], m->q[i].lens[1], &v) == 0 && v >= 0 && v < (long long)KV_NDB)
        db = (unsigned)v;
    } else {
      need_dbs(&m->q[i], db, used);
    }
  }
  for (size_t i = 0; i < m->nw; i++)
    used[m->w[i].db] = 1;
  int rc = 0;
  for (unsigned d = 0; d < KV_NDB && rc >= 0; d++)
    if (used[d] == 2 && (rc = kv_db_exists(m->s, d)) == 0)
      used[d] = 0;
  if (rc < 0)
    return rc;
  rc = 0;
  for (unsigned d = 0; d < KV_NDB; d++)
    mask[d] = used[d] ? (1u << KV_STRIPES) - 1 : 0;
  for (unsigned d = 0; d < KV_NDB && rc == 0; d++)
    if (mask[d])
      rc = kv_db_prepare(m->s, d, 0);
  if (rc)
    return rc;

  shmd_tx_t *tx;
  if ((rc = shmd_tx_begin(m->s, &tx)))
    return rc;
  kv_ctx_t c[KV_NDB];
  for (unsigned d = 0; d < KV_NDB && rc == 0; d++)
    if (mask[d] && (rc = kv_ctx_join(m->s, d, tx, &c[d])) == 0)
      rc = kv_lock_stripes(&c[d], mask[d]);
  /* WATCH: any watched key changed (or expired) since? Then nothing runs. */
  int changed = 0;
  for (size_t i = 0; rc == 0 && !changed && i < m->nw; i++) {
    mwatch_t *w = &m->w[i];
    uint64_t ver[2];
    if ((rc = kv_version(&c[w->db], w->key, w->len, ver)))
      break;
    if (ver[0] != w->ver[0] || ver[1] != w->ver[1])
      changed = 1;
    else if (!w->expired) {
      int e = kv_peek_expired(&c[w->db], w->key, w->len);
      if (e < 0)
        rc = e;
      else
        changed = e;
    }
  }
  if (rc || changed) {
    shmd_tx_abort(tx);
    return rc ? rc : r_nil(r);
  }

  uint64_t max = shmd_kv_max_reply();
  kv_budget_t budget = {max, max, 0};
  int garbage[KV_NDB] = {0};
  shmd__kv_budget_set(&budget);
  rc = r_array(r, m->nq);
  shmd__kv_budget_set(NULL);
  if (rc == 0 && budget.over)
    rc = SHMD_ENOMEM;
  db = m->db;
  for (size_t i = 0; rc == 0 && i < m->nq; i++) {
    mq_cmd_t *q = &m->q[i];
    shmd_reply_t *e = &r->elems[i];
    if (q->cmd == NULL) {
      unsigned to;
      rc = select_db(q->argv[1], q->lens[1], e, &to);
      if (rc == 0) {
        db = to;
        rc = r_ok(e);
      } else if (rc == 1) {
        rc = 0;
      }
      continue;
    }
    rc = shmd__kv_cmd_run(m->s, db, q->cmd, q->argc, (const char *const *)q->argv, q->lens, e, &budget,
                          &garbage[db]);
    if (rc == 0 && (eq(q->cmd->name, q->cmd->name_len, "swapdb") || eq(q->cmd->name, q->cmd->name_len, "flushall") ||
                    eq(q->cmd->name, q->cmd->name_len, "move") || eq(q->cmd->name, q->cmd->name_len, "copy")))
      for (unsigned d = 0; d < KV_NDB; d++) /* they may leave garbage in another database */
        garbage[d] |= mask[d] != 0 && d != db;
    SHMD_CRASH_POINT("kv.exec.command");
  }
  if (rc) {
    shmd_tx_abort(tx);
    shmd__kv_reply_clear(r);
    memset(r, 0, sizeof *r);
    return shmd__kv_error_of(rc, budget.over, r);
  }
  SHMD_CRASH_POINT("kv.exec.commit");
  int logs = 0;
  for (unsigned d = 0; d < KV_NDB; d++)
    logs |= mask[d] && c[d].aof != NULL;
  rc = shmd_tx_commit(tx);
  if (rc == 0 && logs && shmd_tx_depth(m->s) == 0)
    rc = shmd__aof_after_commit(m->s); /* policy always: wait for the fsync of the record */
  if (rc == SHMD_EABORTED)
    rc = SHMD_ECORRUPT;
  if (rc) {
    shmd__kv_reply_clear(r);
    memset(r, 0, sizeof *r);
    return rc;
  }
  m->db = db; /* a SELECT inside MULTI stays in effect, as in Redis */
  if (shmd_tx_depth(m->s) == 0) {
    for (unsigned d = 0; d < KV_NDB; d++)
      if (garbage[d])
        (void)shmd_kv_drain(m->s, d, 0);
    /* Wake the clients blocked on keys the batch wrote (BLPOP ... in a server). */
    db = db0;
    for (size_t i = 0; i < m->nq; i++) {
      mq_cmd_t *q = &m->q[i];
      if (q->cmd == NULL) {
        long long v;
        if (parse_ll(q->argv[1], q->lens[1], &v) == 0 && v >= 0 && v < (long long)KV_NDB)
          db = (unsigned)v;
      } else if (q->cmd->flags & KV_CMD_WRITE) {
        shmd__kv_signal_keys(m->s, db, q->cmd, q->argc, (const char *const *)q->argv, q->lens);
      }
    }
  }
  return 0;
}

int shmd_kv_multi_exec(shmd_kv_multi_t *m, shmd_reply_t **reply) {
  if (m == NULL || reply == NULL)
    return SHMD_EINVAL;
  *reply = NULL;
  if (!m->in_multi)
    return SHMD_EINVAL;
  shmd_reply_t *r = calloc(1, sizeof *r);
  if (r == NULL)
    return SHMD_ENOMEM;
  int rc = m->dirty ? r_error(r, ERR_EXECABORT) : exec_queue(m, r);
  queue_clear(m);
  shmd_kv_unwatch(m);
  if (rc) {
    shmd_reply_free(r);
    return rc;
  }
  *reply = r;
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* The client's entry point */

static int reply_new(shmd_reply_t **reply, shmd_reply_t **r) {
  if ((*r = calloc(1, sizeof **r)) == NULL)
    return SHMD_ENOMEM;
  *reply = *r;
  return 0;
}

static int done(shmd_reply_t **reply, shmd_reply_t *r, int rc) {
  if (rc) {
    shmd_reply_free(r);
    *reply = NULL;
  }
  return rc;
}

int shmd_kv_multi_command(shmd_kv_multi_t *m, int argc, const char *const argv[], const size_t lens[],
                          shmd_reply_t **reply) {
  if (m == NULL || reply == NULL || argc < 1 || argv == NULL || lens == NULL)
    return SHMD_EINVAL;
  *reply = NULL;
  shmd_reply_t *r;
  int rc;
  if (eq(argv[0], lens[0], "select")) {
    if ((rc = reply_new(reply, &r)))
      return rc;
    if (argc != 2) {
      m->dirty |= m->in_multi;
      return done(reply, r, r_error(r, "ERR wrong number of arguments for 'select' command"));
    }
    if (m->in_multi) {
      rc = queue_add(m, NULL, argc, argv, lens);
      return done(reply, r, rc ? rc : r_status(r, "QUEUED"));
    }
    unsigned to;
    rc = select_db(argv[1], lens[1], r, &to);
    if (rc == 0) {
      m->db = to;
      rc = r_ok(r);
    }
    return done(reply, r, rc == 1 ? 0 : rc);
  }
  if ((rc = reply_new(reply, &r)))
    return rc;
  const shmd__kv_cmd_t *cmd = shmd__kv_cmd_check(argc, argv, lens, r, &rc);
  if (cmd == NULL) {
    m->dirty |= m->in_multi; /* Redis's flagTransaction() */
    return done(reply, r, rc);
  }
  const char *n = cmd->name;
  size_t nl = cmd->name_len;
  if (eq(n, nl, "multi")) {
    if (m->in_multi)
      return done(reply, r, r_error(r, "ERR MULTI calls can not be nested"));
    m->in_multi = 1;
    m->dirty = 0;
    return done(reply, r, r_ok(r));
  }
  if (eq(n, nl, "exec")) {
    if (!m->in_multi)
      return done(reply, r, r_error(r, "ERR EXEC without MULTI"));
    shmd_reply_free(r);
    *reply = NULL;
    return shmd_kv_multi_exec(m, reply);
  }
  if (eq(n, nl, "discard")) {
    if (!m->in_multi)
      return done(reply, r, r_error(r, "ERR DISCARD without MULTI"));
    shmd_kv_multi_discard(m);
    return done(reply, r, r_ok(r));
  }
  if (eq(n, nl, "watch")) {
    if (m->in_multi)
      return done(reply, r, r_error(r, "ERR WATCH inside MULTI is not allowed"));
    for (int i = 1; i < argc && rc == 0; i++)
      rc = shmd_kv_watch(m, argv[i], lens[i]);
    if (rc && (rc = shmd__kv_error_of(rc, 0, r)) == 0)
      return done(reply, r, 0);
    return done(reply, r, rc ? rc : r_ok(r));
  }
  if (m->in_multi) {
    rc = queue_add(m, cmd, argc, argv, lens);
    return done(reply, r, rc ? rc : r_status(r, "QUEUED"));
  }
  if (eq(n, nl, "unwatch")) {
    shmd_kv_unwatch(m);
    return done(reply, r, r_ok(r));
  }
  rc = shmd__kv_cmd_run(m->s, m->db, cmd, argc, argv, lens, r, NULL, NULL);
  return done(reply, r, rc);
}

void shmd__kv_multi_set_db(shmd_kv_multi_t *m, unsigned db) {
  if (m && db < KV_NDB && !m->in_multi)
    m->db = db;
}

void shmd__kv_multi_flag(shmd_kv_multi_t *m) {
  if (m && m->in_multi)
    m->dirty = 1;
}

/* ---------------------------------------------------------------------------------------------- */
/* The table's handlers: what shmd_kv_command_db(), which keeps no client state, answers. Inside
 * EXEC an UNWATCH is a no-op with +OK (the watches were checked before the batch ran), as Redis. */

int shmd__kv_cmd_multi(cc_t *x) {
  return r_error(x->r, "ERR shmdict: MULTI needs a client's state: use shmd_kv_multi_command() (the CLI's "
                       "command mode and the server keep one)");
}

int shmd__kv_cmd_exec(cc_t *x) { return r_error(x->r, "ERR EXEC without MULTI"); }

int shmd__kv_cmd_discard(cc_t *x) { return r_error(x->r, "ERR DISCARD without MULTI"); }

int shmd__kv_cmd_watch(cc_t *x) {
  return r_error(x->r, "ERR shmdict: WATCH needs a client's state: use shmd_kv_multi_command()");
}

int shmd__kv_cmd_unwatch(cc_t *x) { return r_ok(x->r); }
