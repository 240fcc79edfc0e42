/* SPDX-License-Identifier: MIT */
/*
 * Blocking pops (Redis's blocked.c and the blocking halves of t_list.c / t_zset.c), across
 * processes. BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX and BZMPOP each run as
 * their non-blocking keyspace command (LMPOP, LMOVE, ZMPOP) when called; when that finds nothing,
 * the client blocks: the worker marks its slot in the store's bucket of each key (kv/block.c),
 * tries once more (a push that committed before the mark is seen now; one after it sees the mark
 * and wakes us), and waits. A push to one of those keys from any process -- another worker, an
 * application using the library, the CLI -- bumps the bucket's sequence and wakes every worker's
 * notifier thread; this worker then retries, in arrival order, the clients blocked on buckets
 * whose sequence moved. The cron compares the sequences every 100 ms (a pusher killed between its
 * commit and its wake-up call costs at most that) and retries every blocked client once a second
 * (a push inside an application's open transaction signals nothing).
 *
 * An element is popped only for a client that is still connected, in the worker that serves it,
 * and its reply is queued at once; a worker killed while clients block has popped nothing for
 * them, so every pushed element stays in its list for the next client. (The window is the same
 * as any reply's: a worker killed after its pop committed and before write(2) loses that reply,
 * as a Redis killed after a pop does.) Clients of one worker are served first-come first-served
 * per key; across workers, whichever worker retries first wins.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kv/notify.h"
#include "kv/reply.h"
#include "kv/util.h"
#include "server/server.h"

enum { BK_LIST_ONE, BK_LMOVE, BK_LMPOP, BK_ZPOP_ONE, BK_ZMPOP };

typedef struct srv_block_s {
  client_t *c;
  int kind;
  const char *name;   /* the blocking command's name (for the reply's shape) */
  int pargc;          /* the keyspace command that is retried */
  char **pargv;
  size_t *plens;
  const shmd__kv_cmd_t *kcmd;
  int nkeys;
  unsigned *buckets;
  uv_timer_t timer;
  int has_timer;
  struct srv_block_s *next, *prev; /* all blocked clients, in arrival order */
} block_t;

static kv_ps_root_t *root;
static block_t *head, *tail;
static uint32_t seen_seq[KV_PS_BUCKETS];
static uint32_t waiters[KV_PS_BUCKETS]; /* blocked clients of this worker per bucket */

int srv_block_init(void) {
  root = shmd__kv_ps_root(srv.store);
  return root ? 0 : -1;
}

/* ---------------------------------------------------------------------------------------------- */
/* Timeouts (Redis's getTimeoutFromObjectOrReply, in seconds) */

/* Parses a timeout in seconds: 0 with *ms (0 = forever), or -1 after replying the error. */
static int parse_timeout(client_t *c, const char *s, size_t n, uint64_t *ms) {
  char buf[128];
  if (n == 0 || n >= sizeof buf || s[0] == ' ' || s[0] == '\t') {
    resp_errorf(&c->out, "ERR timeout is not a float or out of range");
    return -1;
  }
  memcpy(buf, s, n);
  buf[n] = 0;
  char *end;
  long double v = strtold(buf, &end);
  if ((size_t)(end - buf) != n || isnan(v)) {
    resp_errorf(&c->out, "ERR timeout is not a float or out of range");
    return -1;
  }
  v *= 1000.0L;
  /* Redis converts with (long long)ceill(v): on x86 a value out of range becomes LLONG_MIN, which
   * it then reports as negative. */
  long long t;
  long double up = ceill(v);
  if (!(up < 9223372036854775807.0L) || up < -9223372036854775807.0L)
    t = INT64_MIN;
  else
    t = (long long)up;
  if (t < 0) {
    resp_errorf(&c->out, "ERR timeout is negative");
    return -1;
  }
  uint64_t now = srv_now_ms();
  if (t > 0 && (uint64_t)t > (uint64_t)INT64_MAX - now) {
    resp_errorf(&c->out, "ERR timeout is out of range");
    return -1;
  }
  *ms = (uint64_t)t;
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Trying the pop */

static void free_block(block_t *b) {
  for (int i = 0; i < b->pargc; i++)
    free(b->pargv[i]);
  free(b->pargv);
  free(b->plens);
  free(b->buckets);
  free(b);
}

static void on_timer_closed(uv_handle_t *h) { free_block(h->data); }

/* Writes the popped reply r in the blocking command's form. */
static void write_served(client_t *c, block_t *b, const shmd_reply_t *r) {
  if (b->kind == BK_LIST_ONE) { /* [key, [elem]] -> [key, elem] */
    resp_array(&c->out, 2);
    resp_bulk(&c->out, r->elems[0].str, r->elems[0].len);
    const shmd_reply_t *e = &r->elems[1].elems[0];
    resp_bulk(&c->out, e->str, e->len);
    return;
  }
  if (b->kind == BK_ZPOP_ONE) { /* [key, [[m, s]]] -> [key, m, s] */
    resp_array(&c->out, 3);
    resp_bulk(&c->out, r->elems[0].str, r->elems[0].len);
    const shmd_reply_t *p = &r->elems[1].elems[0];
    resp_bulk(&c->out, p->elems[0].str, p->elems[0].len);
    resp_double_str(&c->out, c->resp, p->elems[1].str, p->elems[1].len);
    return;
  }
  /* LMOVE's bulk, LMPOP's and ZMPOP's arrays are the blocking forms' replies as they are */
  const char *as = b->kind == BK_LMOVE ? "lmove" : b->kind == BK_LMPOP ? "lmpop" : "zmpop";
  srv_write_reply(c, as, b->pargc, (const char **)b->pargv, b->plens, r);
}

static int well_formed(const block_t *b, const shmd_reply_t *r) {
  if (b->kind == BK_LIST_ONE)
    return r->type == SHMD_REPLY_ARRAY && r->nelems == 2 && r->elems[0].type == SHMD_REPLY_BULK &&
           r->elems[1].type == SHMD_REPLY_ARRAY && r->elems[1].nelems >= 1 &&
           r->elems[1].elems[0].type == SHMD_REPLY_BULK;
  if (b->kind == BK_ZPOP_ONE)
    return r->type == SHMD_REPLY_ARRAY && r->nelems == 2 && r->elems[0].type == SHMD_REPLY_BULK &&
           r->elems[1].type == SHMD_REPLY_ARRAY && r->elems[1].nelems >= 1 &&
           r->elems[1].elems[0].type == SHMD_REPLY_ARRAY && r->elems[1].elems[0].nelems == 2;
  return 1;
}

/* Runs the pop for c. Returns 1 when served (reply written), 0 when there was nothing to pop,
 * -1 when the pop answered an error (written when `reply_errors`). */
static int try_pop(client_t *c, block_t *b, int reply_errors) {
  shmd_reply_t r;
  memset(&r, 0, sizeof r);
  int rc = shmd__kv_run(srv.store, c->db, b->kcmd, b->pargc, (const char *const *)b->pargv, b->plens, &r);
  int out;
  if (rc) {
    if (reply_errors)
      resp_errorf(&c->out, "ERR shmdict: %s", shmd_strerror(rc));
    out = -1;
  } else if (r.type == SHMD_REPLY_ERROR) {
    if (reply_errors)
      resp_error(&c->out, r.str, r.len);
    out = -1;
  } else if (r.type == SHMD_REPLY_NIL || !well_formed(b, &r)) {
    out = 0;
  } else {
    write_served(c, b, &r);
    out = 1;
  }
  shmd__kv_reply_clear(&r);
  return out;
}

/* ---------------------------------------------------------------------------------------------- */
/* Blocking and unblocking */

static void unmark(block_t *b) {
  for (int i = 0; i < b->nkeys; i++) {
    unsigned bk = b->buckets[i];
    if (waiters[bk] && --waiters[bk] == 0)
      shmd__kv_block_mark(root, srv.slot, bk, 0);
  }
  if (srv.nblocked == 1) /* the last blocked client of this worker goes */
    shmd__kv_block_slot(root, srv.slot, 0);
}

/* Takes c out of the blocked state (its block is freed once its timer handle is closed). */
static void unblock(client_t *c) {
  block_t *b = c->blk;
  if (b == NULL)
    return;
  unmark(b);
  if (b->prev)
    b->prev->next = b->next;
  else
    head = b->next;
  if (b->next)
    b->next->prev = b->prev;
  else
    tail = b->prev;
  c->blk = NULL;
  c->flags &= ~CF_BLOCKED;
  srv.nblocked--;
  if (b->has_timer) {
    uv_timer_stop(&b->timer);
    uv_close((uv_handle_t *)&b->timer, on_timer_closed);
  } else {
    free_block(b);
  }
}

/* After unblocking: send the reply and run what the client pipelined meanwhile. */
static void resume(client_t *c) {
  client_reply_flush_later(c);
  client_check_obl(c);
  if (!(c->flags & (CF_CLOSING | CF_CLOSE_ASAP)) && c->qlen > c->qpos)
    client_process_input(c);
}

static void on_timeout(uv_timer_t *t) {
  block_t *b = t->data;
  client_t *c = b->c;
  if (c == NULL || c->blk != b)
    return;
  /* one last try: an element may have arrived in the same instant */
  int r = try_pop(c, b, 0);
  if (r <= 0)
    resp_null_array(&c->out, c->resp);
  unblock(c);
  resume(c);
}

void srv_block_client_gone(client_t *c) {
  if (c->blk) {
    c->blk->c = NULL;
    unblock(c);
  }
}

/* Blocks c on b's keys: marks the buckets, tries once more, and waits. */
static void block_client(client_t *c, block_t *b, uint64_t timeout_ms) {
  b->c = c;
  b->buckets = calloc((size_t)b->nkeys, sizeof *b->buckets);
  if (b->buckets == NULL) {
    resp_errorf(&c->out, "ERR shmdict: out of memory");
    free_block(b);
    return;
  }
  if (srv.nblocked == 0) /* before the buckets: pushes look at the buckets only when set */
    shmd__kv_block_slot(root, srv.slot, 1);
  for (int i = 0; i < b->nkeys; i++) {
    /* the keys are the retried command's */
    unsigned bk;
    const char *k;
    size_t kl;
    if (b->kind == BK_LMOVE) {
      k = b->pargv[1];
      kl = b->plens[1];
    } else {
      k = b->pargv[2 + i];
      kl = b->plens[2 + i];
    }
    bk = shmd__kv_block_bucket(c->db, k, kl);
    b->buckets[i] = bk;
    if (waiters[bk]++ == 0) {
      seen_seq[bk] = __atomic_load_n(&root->bucket_seq[bk], __ATOMIC_ACQUIRE);
      shmd__kv_block_mark(root, srv.slot, bk, 1);
    }
  }
  c->blk = b;
  c->flags |= CF_BLOCKED;
  srv.nblocked++;
  b->prev = tail;
  b->next = NULL;
  if (tail)
    tail->next = b;
  else
    head = b;
  tail = b;
  if (timeout_ms) {
    uv_timer_init(srv.loop, &b->timer);
    b->timer.data = b;
    b->has_timer = 1;
    uv_timer_start(&b->timer, on_timeout, timeout_ms, 0);
  }
  /* the second try, after the marks */
  int r = try_pop(c, b, 0);
  if (r == 1)
    unblock(c);
}

/* Builds the retried command from pieces and runs the first try; blocks when it found nothing. */
static void start(client_t *c, int kind, const char *name, int pargc, const char **pargv, const size_t *plens,
                  int nkeys, uint64_t timeout_ms) {
  block_t *b = calloc(1, sizeof *b);
  if (b == NULL) {
    resp_errorf(&c->out, "ERR shmdict: out of memory");
    return;
  }
  b->kind = kind;
  b->name = name;
  b->nkeys = nkeys;
  b->pargc = pargc;
  b->pargv = calloc((size_t)pargc, sizeof *b->pargv);
  b->plens = calloc((size_t)pargc, sizeof *b->plens);
  if (b->pargv == NULL || b->plens == NULL) {
    free_block(b);
    resp_errorf(&c->out, "ERR shmdict: out of memory");
    return;
  }
  for (int i = 0; i < pargc; i++) {
    b->pargv[i] = malloc(plens[i] + 1);
    if (b->pargv[i] == NULL) {
      b->pargc = i;
      free_block(b);
      resp_errorf(&c->out, "ERR shmdict: out of memory");
      return;
    }
    memcpy(b->pargv[i], pargv[i], plens[i]);
    b->pargv[i][plens[i]] = 0;
    b->plens[i] = plens[i];
  }
  b->kcmd = shmd__kv_cmd_find(b->pargv[0], b->plens[0]);
  if (b->kcmd == NULL) {
    free_block(b);
    resp_errorf(&c->out, "ERR shmdict: the keyspace has no %s", pargv[0]);
    return;
  }
  int r = try_pop(c, b, 1);
  if (r != 0) { /* served, or an error (WRONGTYPE, syntax) */
    free_block(b);
    return;
  }
  block_client(c, b, timeout_ms);
}

/* ---------------------------------------------------------------------------------------------- */
/* Waking */

static void retry(block_t *b) {
  client_t *c = b->c;
  if (c == NULL || (c->flags & (CF_CLOSING | CF_CLOSE_ASAP)))
    return;
  if (try_pop(c, b, 0) == 1) {
    unblock(c);
    resume(c);
  }
}

void srv_block_poll(void) {
  if (head == NULL || root == NULL)
    return;
  /* which buckets moved */
  static unsigned char moved[KV_PS_BUCKETS];
  int any = 0;
  for (block_t *b = head; b; b = b->next)
    for (int i = 0; i < b->nkeys; i++) {
      unsigned bk = b->buckets[i];
      uint32_t s = __atomic_load_n(&root->bucket_seq[bk], __ATOMIC_ACQUIRE);
      if (s != seen_seq[bk]) {
        seen_seq[bk] = s;
        moved[bk] = 1;
        any = 1;
      }
    }
  if (!any)
    return;
  /* retry, in arrival order, the clients on those buckets; unblocking edits the list, so walk a
   * snapshot of it */
  size_t n = srv.nblocked, k = 0;
  block_t **snap = malloc((n ? n : 1) * sizeof *snap);
  if (snap == NULL)
    return;
  for (block_t *b = head; b && k < n; b = b->next) {
    int hit = 0;
    for (int i = 0; i < b->nkeys && !hit; i++)
      hit = moved[b->buckets[i]];
    if (hit)
      snap[k++] = b;
  }
  for (block_t *b = head; b; b = b->next)
    for (int i = 0; i < b->nkeys; i++)
      moved[b->buckets[i]] = 0;
  for (size_t i = 0; i < k; i++) {
    /* skip blocks that ended meanwhile (served by an earlier retry, closed, timed out) */
    int live = 0;
    for (block_t *b = head; b && !live; b = b->next)
      live = b == snap[i];
    if (live)
      retry(snap[i]);
  }
  free(snap);
}

void srv_block_cron(void) {
  if (head == NULL)
    return;
  size_t n = srv.nblocked, k = 0;
  block_t **snap = malloc((n ? n : 1) * sizeof *snap);
  if (snap == NULL)
    return;
  for (block_t *b = head; b && k < n; b = b->next)
    snap[k++] = b;
  for (size_t i = 0; i < k; i++) {
    int live = 0;
    for (block_t *b = head; b && !live; b = b->next)
      live = b == snap[i];
    if (live)
      retry(snap[i]);
  }
  free(snap);
}

/* ---------------------------------------------------------------------------------------------- */
/* The commands */

static int arg_is(const char *a, size_t n, const char *lit) { return strlen(lit) == n && !strncasecmp(a, lit, n); }

/* BLPOP / BRPOP key [key ...] timeout: LMPOP numkeys key... LEFT|RIGHT */
static void list_one(client_t *c, int argc, const char **argv, const size_t *lens, const char *side, const char *name) {
  uint64_t ms;
  if (parse_timeout(c, argv[argc - 1], lens[argc - 1], &ms))
    return;
  int nk = argc - 2;
  const char **pv = calloc((size_t)nk + 3, sizeof *pv);
  size_t *pl = calloc((size_t)nk + 3, sizeof *pl);
  char nbuf[24];
  if (pv == NULL || pl == NULL) {
    free(pv);
    free(pl);
    resp_errorf(&c->out, "ERR shmdict: out of memory");
    return;
  }
  pv[0] = "lmpop";
  pl[0] = 5;
  pl[1] = (size_t)snprintf(nbuf, sizeof nbuf, "%d", nk);
  pv[1] = nbuf;
  for (int i = 0; i < nk; i++) {
    pv[2 + i] = argv[1 + i];
    pl[2 + i] = lens[1 + i];
  }
  pv[2 + nk] = side;
  pl[2 + nk] = strlen(side);
  start(c, BK_LIST_ONE, name, nk + 3, pv, pl, nk, ms);
  free(pv);
  free(pl);
}

void srv_cmd_blpop(client_t *c, int argc, const char **argv, const size_t *lens) {
  list_one(c, argc, argv, lens, "LEFT", "blpop");
}
void srv_cmd_brpop(client_t *c, int argc, const char **argv, const size_t *lens) {
  list_one(c, argc, argv, lens, "RIGHT", "brpop");
}

static void move(client_t *c, const char *src, size_t sl, const char *dst, size_t dl, const char *from, size_t fl,
                 const char *to, size_t tl, uint64_t ms, const char *name) {
  const char *pv[5] = {"lmove", src, dst, from, to};
  size_t pl[5] = {5, sl, dl, fl, tl};
  start(c, BK_LMOVE, name, 5, pv, pl, 1, ms);
}

void srv_cmd_blmove(client_t *c, int argc, const char **argv, const size_t *lens) {
  (void)argc;
  for (int i = 3; i <= 4; i++)
    if (!arg_is(argv[i], lens[i], "LEFT") && !arg_is(argv[i], lens[i], "RIGHT")) {
      resp_errorf(&c->out, "ERR syntax error");
      return;
    }
  uint64_t ms;
  if (parse_timeout(c, argv[5], lens[5], &ms))
    return;
  move(c, argv[1], lens[1], argv[2], lens[2], argv[3], lens[3], argv[4], lens[4], ms, "blmove");
}

void srv_cmd_brpoplpush(client_t *c, int argc, const char **argv, const size_t *lens) {
  (void)argc;
  uint64_t ms;
  if (parse_timeout(c, argv[3], lens[3], &ms))
    return;
  move(c, argv[1], lens[1], argv[2], lens[2], "RIGHT", 5, "LEFT", 4, ms, "brpoplpush");
}

/* BLMPOP / BZMPOP timeout numkeys ...: LMPOP / ZMPOP numkeys ... */
static void mpop(client_t *c, int argc, const char **argv, const size_t *lens, const char *as, int kind,
                 const char *name) {
  uint64_t ms;
  if (parse_timeout(c, argv[1], lens[1], &ms))
    return;
  const char **pv = calloc((size_t)argc, sizeof *pv);
  size_t *pl = calloc((size_t)argc, sizeof *pl);
  if (pv == NULL || pl == NULL) {
    free(pv);
    free(pl);
    resp_errorf(&c->out, "ERR shmdict: out of memory");
    return;
  }
  pv[0] = as;
  pl[0] = strlen(as);
  for (int i = 2; i < argc; i++) {
    pv[i - 1] = argv[i];
    pl[i - 1] = lens[i];
  }
  long long nk = 0;
  if (shmd__kv_parse_ll(argv[2], lens[2], &nk) || nk <= 0 || nk > argc - 4)
    nk = 0; /* the first try answers the error */
  start(c, kind, name, argc - 1, pv, pl, (int)nk, ms);
  free(pv);
  free(pl);
}

void srv_cmd_blmpop(client_t *c, int argc, const char **argv, const size_t *lens) {
  mpop(c, argc, argv, lens, "lmpop", BK_LMPOP, "blmpop");
}
void srv_cmd_bzmpop(client_t *c, int argc, const char **argv, const size_t *lens) {
  mpop(c, argc, argv, lens, "zmpop", BK_ZMPOP, "bzmpop");
}

/* BZPOPMIN / BZPOPMAX key [key ...] timeout: ZMPOP numkeys key... MIN|MAX */
static void zpop_one(client_t *c, int argc, const char **argv, const size_t *lens, const char *side, const char *name) {
  uint64_t ms;
  if (parse_timeout(c, argv[argc - 1], lens[argc - 1], &ms))
    return;
  int nk = argc - 2;
  const char **pv = calloc((size_t)nk + 3, sizeof *pv);
  size_t *pl = calloc((size_t)nk + 3, sizeof *pl);
  char nbuf[24];
  if (pv == NULL || pl == NULL) {
    free(pv);
    free(pl);
    resp_errorf(&c->out, "ERR shmdict: out of memory");
    return;
  }
  pv[0] = "zmpop";
  pl[0] = 5;
  pl[1] = (size_t)snprintf(nbuf, sizeof nbuf, "%d", nk);
  pv[1] = nbuf;
  for (int i = 0; i < nk; i++) {
    pv[2 + i] = argv[1 + i];
    pl[2 + i] = lens[1 + i];
  }
  pv[2 + nk] = side;
  pl[2 + nk] = strlen(side);
  start(c, BK_ZPOP_ONE, name, nk + 3, pv, pl, nk, ms);
  free(pv);
  free(pl);
}

void srv_cmd_bzpopmin(client_t *c, int argc, const char **argv, const size_t *lens) {
  zpop_one(c, argc, argv, lens, "MIN", "bzpopmin");
}
void srv_cmd_bzpopmax(client_t *c, int argc, const char **argv, const size_t *lens) {
  zpop_one(c, argc, argv, lens, "MAX", "bzpopmax");
}
