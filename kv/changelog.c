/* SPDX-License-Identifier: MIT */
/*
 * The change log of the keyspace: a ring in the store to which every committed keyspace write
 * appends the Redis commands that reproduce its effect, inside the write's own transaction, so a
 * write and its record commit or roll back together. A persister (persist/aof.c) copies the ring
 * to an append-only file that Redis's tools accept. docs/durability.md tells the whole story.
 *
 * The ring
 * --------
 * Made on first use (shmdict persist, shmd_persist_run) and named by the `aof` word of database
 * 0's kv_db_t (a word that was reserved, zero in older stores: a store without it has no log).
 * Positions are monotonic byte counts; the byte at position p is at data[p % cap_bytes]. Records
 * lie between `tail` (the persister's: written to the file up to there) and `head`.
 *
 * Appending, crash-atomically
 * ---------------------------
 * With persistence on, every keyspace transaction takes the ring lock first (kv_begin /
 * kv_ctx_join, before any stripe: store -> kv root -> change log -> stripes), so the writes of a
 * store with persistence on are serialised, as Redis runs one command at a time, and the record
 * order is the commit order. The first append of a transaction opens a record at `head`: it logs
 * the 16 bytes {head, next_seq} in the undo log once, then writes the record's bytes past `head`
 * (space no one reads) and moves head / next_seq with plain stores. Later appends of the same
 * transaction (EXEC, a caller's transaction, the lazy deletions a command does) extend the open
 * record. Rollback (abort, or the recovery of a killed writer) restores {head, next_seq}: the
 * record is gone with its change. The lock is held until the commit, and the persister reads
 * `head` under it, so it never sees a record whose transaction could still roll back.
 *
 * What is appended (Redis's propagation rules, docs/durability.md):
 *   - a write command that changed something (the transaction moved), in its deterministic form:
 *     SPOP as SREM of the popped members, INCRBYFLOAT as SET key value KEEPTTL, HINCRBYFLOAT as
 *     HSET, EXPIRE / PEXPIRE / EXPIREAT / PEXPIREAT / PERSIST / GETEX as PEXPIREAT key abs-ms or
 *     PERSIST key or DEL key (what the key's state is after it), SET / SETEX / PSETEX with an
 *     expiry as SET key value PXAT abs-ms (or DEL key when it expired at once), GETDEL as DEL;
 *     every other write as it was called (it is deterministic given the same state);
 *   - a key that lazy expiry deletes, as DEL key (in any command, read or write);
 *   - several commands of one transaction (EXEC, a caller's) as one record, which the persister
 *     writes as MULTI ... EXEC.
 * Replaying runs with the expiry clock frozen (shmd__kv_clock_freeze), as Redis does not expire
 * keys while it loads: the log alone decides which keys go.
 *
 * A full ring: a transaction that starts finding the ring more than 3/4 full waits (up to a
 * second, while a persister is alive) for the persister to make room; an append that still does
 * not fit fails the command with SHMD_EBUSY ("ERR shmdict: the change log is full"), which rolls
 * it back: nothing changes unlogged.
 *
 * Locks: the ring lock (a shmd_lock_t in the ring header), after the kv root's and before the
 * stripes; the persister takes it alone, for a moment, to read head.
 */
#include "kv/changelog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/cmd.h"
#include "segments/err.h"
#include "segments/os.h"
#include "shmdict/alloc.h"

/* kv/keyspace.c */
shmd_ptr_t shmd__kv_aof_ptr(shmd_store_t *s);
int shmd__kv_aof_install(shmd_store_t *s, shmd_tx_t *tx, shmd_ptr_t p, shmd_ptr_t *existing);

/* ---------------------------------------------------------------------------------------------- */
/* The ring */

static int aof_view(shmd_store_t *s, shmd_ptr_t p, shmd__aof_t **out) {
  void *a;
  if ((p.v & 7) || shmd_resolve_checked(s, p, sizeof(shmd__aof_t), &a))
    return SHMD_CORRUPT("change log header outside the store");
  shmd__aof_t *h = a;
  if (h->magic != SHMD__AOF_MAGIC)
    return SHMD_CORRUPT("change log header has a bad magic");
  uint64_t cap = h->cap_bytes;
  void *d;
  if (cap < 4096 || (cap & (cap - 1)) || shmd_resolve_checked(s, h->data, cap, &d))
    return SHMD_CORRUPT("change log ring outside the store");
  *out = h;
  return 0;
}

int shmd__aof_find(shmd_store_t *s, shmd__aof_t **out) {
  *out = NULL;
  shmd_ptr_t p = shmd__kv_aof_ptr(s);
  return p.v ? aof_view(s, p, out) : 0;
}

int shmd__aof_create(shmd_store_t *s, uint64_t cap_bytes, shmd__aof_t **out) {
  int rc = shmd__aof_find(s, out);
  if (rc || *out)
    return rc;
  uint64_t cap = 64 * 1024;
  while (cap < cap_bytes && cap < (UINT64_C(1) << 40))
    cap <<= 1;
  shmd_tx_t *tx;
  if ((rc = shmd_tx_begin(s, &tx)))
    return rc;
  shmd_ptr_t hp, dp, existing = {0};
  if ((rc = shmd_tx_calloc(tx, sizeof(shmd__aof_t), &hp)) || (rc = shmd_tx_alloc(tx, cap, &dp))) {
    shmd_tx_abort(tx);
    return rc;
  }
  shmd__aof_t *h = shmd_resolve(s, hp);
  h->magic = SHMD__AOF_MAGIC;
  shmd_lock_init(&h->lock);
  h->next_seq = 1;
  h->tail_seq = 1;
  h->cap_bytes = cap;
  h->data = dp;
  h->policy = SHMD_AOF_FSYNC_EVERYSEC;
  rc = shmd__kv_aof_install(s, tx, hp, &existing);
  if (rc == 0 && existing.v) /* another process made one first: use it */
    rc = shmd_tx_free(tx, hp) ? SHMD_ENOMEM : shmd_tx_free(tx, dp);
  if (rc) {
    shmd_tx_abort(tx);
    return rc;
  }
  if ((rc = shmd_tx_commit(tx)))
    return rc;
  return aof_view(s, existing.v ? existing : hp, out);
}

static unsigned char *ring_data(shmd_store_t *s, const shmd__aof_t *a) { return shmd_resolve(s, a->data); }

void shmd__aof_read(shmd_store_t *s, const shmd__aof_t *a, uint64_t pos, void *dst, size_t n) {
  const unsigned char *d = ring_data(s, a);
  uint64_t cap = a->cap_bytes, off = pos & (cap - 1);
  size_t first = n < cap - off ? n : (size_t)(cap - off);
  memcpy(dst, d + off, first);
  if (first < n)
    memcpy((unsigned char *)dst + first, d, n - first);
}

static void ring_write(shmd_store_t *s, const shmd__aof_t *a, uint64_t pos, const void *src, size_t n) {
  unsigned char *d = ring_data(s, a);
  uint64_t cap = a->cap_bytes, off = pos & (cap - 1);
  size_t first = n < cap - off ? n : (size_t)(cap - off);
  memcpy(d + off, src, first);
  if (first < n)
    memcpy(d, (const unsigned char *)src + first, n - first);
}

/* ---------------------------------------------------------------------------------------------- */
/* The calling thread's open record and the record it waits for */

static __thread struct {
  uint64_t store_id;
  int open;          /* a record of this transaction is open at rec_pos */
  uint64_t rec_pos;
  uint64_t wait_seq; /* the last record appended, for policy always */
  uint64_t wait_store;
  shmd__aof_t *wait_aof;
  uint64_t view_store, view_p; /* the ring header last validated, for this store and pointer */
  shmd__aof_t *view;
} tl;

/* The `aof` word: database 0's record is at hand when the command runs on database 0. */
static shmd_ptr_t aof_word(kv_ctx_t *c) {
  if (c->dbi == 0 && c->db)
    return (shmd_ptr_t){__atomic_load_n(&c->db->aof.v, __ATOMIC_ACQUIRE)};
  return shmd__kv_aof_ptr(c->s);
}

/* aof_view() once per thread, store and header (a header never moves or goes away). */
static int aof_view_cached(kv_ctx_t *c, shmd_ptr_t p, shmd__aof_t **out) {
  uint64_t id = shmd_store_id(c->s);
  if (tl.view && tl.view_store == id && tl.view_p == p.v) {
    *out = tl.view;
    return 0;
  }
  int rc = aof_view(c->s, p, out);
  if (rc == 0) {
    tl.view_store = id;
    tl.view_p = p.v;
    tl.view = *out;
  }
  return rc;
}

static void clock_wait_ms(uint32_t *word, uint32_t seen, uint64_t ms) {
  shmd__os_futex_wait(word, seen, ms * 1000000ull);
}

static int persister_alive(const shmd__aof_t *a) {
  uint32_t pid = __atomic_load_n(&a->persister_pid, __ATOMIC_ACQUIRE);
  return pid != 0 && shmd__os_pid_alive(pid);
}

int shmd__aof_enter(kv_ctx_t *c) {
  c->aof = NULL;
  shmd_ptr_t p = aof_word(c);
  if (p.v == 0)
    return 0; /* the fast path of a store without persistence: one load */
  shmd__aof_t *a;
  int rc = aof_view_cached(c, p, &a);
  if (rc)
    return rc;
  if (!__atomic_load_n(&a->enabled, __ATOMIC_ACQUIRE))
    return 0;
  /* A transaction that holds nothing yet may wait for room (see the essay). */
  if (shmd_tx_depth(c->s) == 1 && a->lock.word == 0) {
    for (int i = 0; i < 100; i++) {
      uint64_t used = __atomic_load_n(&a->head, __ATOMIC_RELAXED) - __atomic_load_n(&a->tail, __ATOMIC_ACQUIRE);
      if (used <= a->cap_bytes / 4 * 3 || !persister_alive(a))
        break;
      uint32_t w = __atomic_load_n(&a->durable_word, __ATOMIC_ACQUIRE);
      clock_wait_ms(&a->durable_word, w, 10);
    }
  }
  uint32_t before = __atomic_load_n(&a->lock.word, __ATOMIC_ACQUIRE) & 0xffffu;
  if ((rc = shmd_tx_lock(c->tx, shmd_ptr_from_addr(c->s, &a->lock))))
    return rc;
  uint32_t me = __atomic_load_n(&a->lock.word, __ATOMIC_ACQUIRE) & 0xffffu;
  uint64_t id = shmd_store_id(c->s);
  if (before != me || tl.store_id != id) { /* newly taken: a new transaction, no open record */
    tl.store_id = id;
    tl.open = 0;
    tl.wait_seq = 0;
  }
  c->aof = a;
  return 0;
}

int shmd__aof_recheck(kv_ctx_t *c) {
  if (c->aof)
    return 0;
  shmd_ptr_t p = aof_word(c);
  if (p.v == 0)
    return 0;
  shmd__aof_t *a;
  int rc = aof_view_cached(c, p, &a);
  if (rc)
    return rc;
  if (!__atomic_load_n(&a->enabled, __ATOMIC_ACQUIRE))
    return 0;
  shmd__set_detail("persistence was turned on while this transaction ran unlogged: run it again");
  return SHMD_EBUSY;
}

/* Appends one entry (RESP bytes of one command on database db) to the transaction's record. */
static int append(kv_ctx_t *c, unsigned db, const void *resp, size_t n) {
  shmd__aof_t *a = c->aof;
  shmd_store_t *s = c->s;
  size_t entry = 8 + ((n + 7) & ~(size_t)7);
  size_t need = entry + (tl.open ? 0 : SHMD__AOF_REC_HDR);
  uint64_t head = a->head, tail = __atomic_load_n(&a->tail, __ATOMIC_ACQUIRE);
  if (head - tail > a->cap_bytes || need > a->cap_bytes - (head - tail) || n > UINT32_MAX) {
    shmd__set_detail("the change log is full (%llu of %llu bytes wait for the persister; is one running?)",
                     (unsigned long long)(head - tail), (unsigned long long)a->cap_bytes);
    return SHMD_EBUSY;
  }
  int rc;
  if (!tl.open) {
    if ((rc = shmd_tx_log(c->tx, shmd_ptr_from_addr(s, &a->head), 2 * sizeof(uint64_t))))
      return rc;
    shmd__aof_rec_t h = {SHMD__AOF_REC_MAGIC, 0, 0, 0, a->next_seq};
    ring_write(s, a, head, &h, sizeof h);
    tl.open = 1;
    tl.rec_pos = head;
    tl.wait_seq = a->next_seq;
    tl.wait_store = shmd_store_id(s);
    tl.wait_aof = a;
    head += SHMD__AOF_REC_HDR;
    a->next_seq++;
  }
  uint32_t eh[2] = {db, (uint32_t)n};
  ring_write(s, a, head, eh, sizeof eh);
  ring_write(s, a, head + 8, resp, n);
  static const unsigned char zero[8];
  if (entry - 8 > n)
    ring_write(s, a, head + 8 + n, zero, entry - 8 - n);
  shmd__aof_rec_t h;
  shmd__aof_read(s, a, tl.rec_pos, &h, sizeof h);
  h.ncmds++;
  h.body_bytes += (uint32_t)entry;
  ring_write(s, a, tl.rec_pos, &h, sizeof h);
  __atomic_store_n(&a->head, head + entry, __ATOMIC_RELEASE);
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Propagation forms */

/* A command's RESP bytes: in `small` while they fit (most commands), else on the heap. */
typedef struct resp_s {
  char *b;
  size_t n, cap;
  int fail;
  char small[512];
} resp_t;

static void put(resp_t *o, const void *p, size_t n) {
  if (o->fail)
    return;
  if (o->b == NULL) {
    o->b = o->small;
    o->cap = sizeof o->small;
  }
  if (o->n + n > o->cap) {
    size_t cap = o->cap * 2;
    while (cap < o->n + n)
      cap *= 2;
    char *nb = o->b == o->small ? malloc(cap) : realloc(o->b, cap);
    if (nb == NULL) {
      o->fail = 1;
      return;
    }
    if (o->b == o->small)
      memcpy(nb, o->small, o->n);
    o->b = nb;
    o->cap = cap;
  }
  memcpy(o->b + o->n, p, n);
  o->n += n;
}

/* "<c><v>\r\n" without printf (it was half of a logged SET's instructions). */
static void put_hdr(resp_t *o, char c, unsigned long long v) {
  char t[32];
  size_t k = sizeof t;
  t[--k] = '\n';
  t[--k] = '\r';
  do
    t[--k] = (char)('0' + v % 10);
  while ((v /= 10) != 0);
  t[--k] = c;
  put(o, t + k, sizeof t - k);
}

static void put_bulk(resp_t *o, const void *p, size_t n) {
  put_hdr(o, '$', n);
  put(o, p, n);
  put(o, "\r\n", 2);
}

static void put_str(resp_t *o, const char *s) { put_bulk(o, s, strlen(s)); }

static void put_ull(resp_t *o, unsigned long long v) {
  char t[32];
  size_t k = sizeof t;
  do
    t[--k] = (char)('0' + v % 10);
  while ((v /= 10) != 0);
  put_bulk(o, t + k, sizeof t - k);
}

static int flush(kv_ctx_t *c, resp_t *o) {
  int rc = o->fail ? SHMD_ENOMEM : append(c, c->dbi, o->b, o->n);
  if (o->b != o->small)
    free(o->b);
  return rc;
}

static int eqi(const char *a, size_t n, const char *lit) { return strlen(lit) == n && strncasecmp(a, lit, n) == 0; }

int shmd__aof_args(kv_ctx_t *c, int argc, const char *const argv[], const size_t lens[]) {
  if (c->aof == NULL)
    return 0;
  resp_t o;
  o.b = NULL, o.n = 0, o.cap = 0, o.fail = 0;
  put_hdr(&o, '*', (unsigned long long)argc);
  for (int i = 0; i < argc; i++)
    put_bulk(&o, argv[i], lens[i]);
  return flush(c, &o);
}

int shmd__aof_expired(kv_ctx_t *c, const void *key, size_t len) {
  if (c->aof == NULL)
    return 0;
  const char *av[2] = {"DEL", key};
  size_t l[2] = {3, len};
  return shmd__aof_args(c, 2, av, l);
}

/* What key's expiry state is now, as PEXPIREAT key ms / PERSIST key / DEL key; with val (SET
 * with an expiry), SET key val [PXAT ms] instead of the first two. */
static int key_state(kv_ctx_t *c, const char *key, size_t klen, const char *val, size_t vlen) {
  kv_ref_t ref;
  int rc = kv_lookup(c, key, klen, &ref);
  if (rc && rc != SHMD_ENOTFOUND)
    return rc;
  resp_t o;
  o.b = NULL, o.n = 0, o.cap = 0, o.fail = 0;
  if (rc == SHMD_ENOTFOUND) {
    put_hdr(&o, '*', 2);
    put_str(&o, "DEL");
  } else if (val) {
    put_hdr(&o, '*', ref.rec->expire ? 5 : 3);
    put_str(&o, "SET");
    put_bulk(&o, key, klen);
    put_bulk(&o, val, vlen);
    if (ref.rec->expire) {
      put_str(&o, "PXAT");
      put_ull(&o, ref.rec->expire);
    }
    return flush(c, &o);
  } else if (ref.rec->expire) {
    put_hdr(&o, '*', 3);
    put_str(&o, "PEXPIREAT");
    put_bulk(&o, key, klen);
    put_ull(&o, ref.rec->expire);
    return flush(c, &o);
  } else {
    put_hdr(&o, '*', 2);
    put_str(&o, "PERSIST");
  }
  put_bulk(&o, key, klen);
  return flush(c, &o);
}

static int set_has_expiry(int argc, const char *const argv[], const size_t lens[]) {
  for (int i = 3; i < argc; i++)
    if (eqi(argv[i], lens[i], "EX") || eqi(argv[i], lens[i], "PX") || eqi(argv[i], lens[i], "EXAT") ||
        eqi(argv[i], lens[i], "PXAT"))
      return 1;
  return 0;
}

int shmd__aof_command(kv_ctx_t *c, const shmd__kv_cmd_t *cmd, int argc, const char *const argv[],
                      const size_t lens[], const shmd_reply_t *r) {
  if (c->aof == NULL)
    return 0;
  const char *n = cmd->name;
  if (strcmp(n, "spop") == 0) { /* SREM key popped... */
    size_t k = r->type == SHMD_REPLY_BULK ? 1 : r->type == SHMD_REPLY_ARRAY ? r->nelems : 0;
    if (k == 0)
      return 0;
    resp_t o;
  o.b = NULL, o.n = 0, o.cap = 0, o.fail = 0;
    put_hdr(&o, '*', 2 + k);
    put_str(&o, "SREM");
    put_bulk(&o, argv[1], lens[1]);
    if (r->type == SHMD_REPLY_BULK)
      put_bulk(&o, r->str, r->len);
    else
      for (size_t i = 0; i < k; i++)
        put_bulk(&o, r->elems[i].str, r->elems[i].len);
    return flush(c, &o);
  }
  if ((strcmp(n, "incrbyfloat") == 0 || strcmp(n, "hincrbyfloat") == 0) && r->type == SHMD_REPLY_BULK) {
    int h = n[0] == 'h';
    resp_t o;
  o.b = NULL, o.n = 0, o.cap = 0, o.fail = 0;
    put_hdr(&o, '*', 4);
    put_str(&o, h ? "HSET" : "SET");
    put_bulk(&o, argv[1], lens[1]);
    if (h)
      put_bulk(&o, argv[2], lens[2]);
    put_bulk(&o, r->str, r->len);
    if (!h)
      put_str(&o, "KEEPTTL");
    return flush(c, &o);
  }
  if (strcmp(n, "expire") == 0 || strcmp(n, "pexpire") == 0 || strcmp(n, "expireat") == 0 ||
      strcmp(n, "pexpireat") == 0 || strcmp(n, "persist") == 0 || strcmp(n, "getex") == 0)
    return key_state(c, argv[1], lens[1], NULL, 0);
  if ((strcmp(n, "setex") == 0 || strcmp(n, "psetex") == 0) && argc == 4)
    return key_state(c, argv[1], lens[1], argv[3], lens[3]);
  if (strcmp(n, "set") == 0 && set_has_expiry(argc, argv, lens))
    return key_state(c, argv[1], lens[1], argv[2], lens[2]);
  if (strcmp(n, "restore") == 0 && argc >= 4) {
    /* RESTORE's TTL is relative unless ABSTTL: logged as RESTORE key <absolute ms or 0> payload
     * REPLACE ABSTTL (IDLETIME and FREQ change nothing shmdict keeps), or DEL when the key is not
     * there (a TTL already in the past). */
    kv_ref_t ref;
    int rc = kv_lookup(c, argv[1], lens[1], &ref);
    if (rc && rc != SHMD_ENOTFOUND)
      return rc;
    if (rc == SHMD_ENOTFOUND) {
      const char *av[2] = {"DEL", argv[1]};
      size_t l[2] = {3, lens[1]};
      return shmd__aof_args(c, 2, av, l);
    }
    char ms[24];
    int ml = snprintf(ms, sizeof ms, "%llu", (unsigned long long)ref.rec->expire);
    const char *av[6] = {"RESTORE", argv[1], ms, argv[3], "REPLACE", "ABSTTL"};
    size_t l[6] = {7, lens[1], (size_t)ml, lens[3], 7, 6};
    return shmd__aof_args(c, 6, av, l);
  }
  if (strcmp(n, "getdel") == 0) {
    const char *av[2] = {"DEL", argv[1]};
    size_t l[2] = {3, lens[1]};
    return shmd__aof_args(c, 2, av, l);
  }
  return shmd__aof_args(c, argc, argv, lens);
}

int shmd__aof_after_commit(shmd_store_t *s) {
  if (tl.wait_seq == 0 || tl.wait_store != shmd_store_id(s))
    return 0;
  uint64_t seq = tl.wait_seq;
  tl.wait_seq = 0;
  tl.open = 0;
  shmd__aof_t *a = tl.wait_aof;
  if (a == NULL || __atomic_load_n(&a->policy, __ATOMIC_ACQUIRE) != SHMD_AOF_FSYNC_ALWAYS)
    return 0;
  __atomic_add_fetch(&a->kick, 1, __ATOMIC_ACQ_REL);
  shmd__os_futex_wake(&a->kick, 1);
  uint64_t absent_ms = 0;
  for (;;) {
    uint32_t w = __atomic_load_n(&a->durable_word, __ATOMIC_ACQUIRE);
    if (__atomic_load_n(&a->durable_seq, __ATOMIC_ACQUIRE) >= seq)
      return 0;
    if (persister_alive(a)) {
      absent_ms = 0;
    } else if ((absent_ms += 10) > SHMD__AOF_WAIT_MS) {
      /* no persister: the record stays in the ring until one starts (docs/durability.md) */
      shmd__set_detail("the write is done but not on disk: no persister has run for %u ms (start `shmdict persist`)",
                       (unsigned)SHMD__AOF_WAIT_MS);
      return SHMD_EBUSY;
    }
    clock_wait_ms(&a->durable_word, w, 10);
  }
}
