/* SPDX-License-Identifier: MIT */
/*
 * evq.c: a bounded multi-producer event queue with per-consumer cursors, built only on shmdict's
 * public API. docs/custom-containers.md walks through this file; read it side by side.
 *
 * Layout (everything in shared memory is linked by shmd_ptr_t, never by address):
 *
 *   root "events" --> evq_hdr_t                      ring: shmd_ptr_t[capacity]
 *                     +-------------------+          +------+------+------+------+
 *                     | magic, lock       |   ring   | null | ev 5 | ev 6 | ev 3 |  seq n lives in
 *                     | capacity, max_cons| -------> +------+------+------+------+  slot n % capacity
 *                     | head_seq = 3      |                    |
 *                     | tail_seq = 7      |                    v
 *                     | ring, consumers   |          evq_event_t {seq 5, len, sum, bytes...}
 *                     +-------------------+
 *                            | consumers
 *                            v
 *                     evq_consumer_t[max_consumers]: {taken, next_seq}
 *
 * Invariants (evq_check() proves them; every operation keeps them at its commit):
 *   I1  head_seq <= tail_seq <= head_seq + capacity.
 *   I2  for every seq in [head_seq, tail_seq), ring[seq % capacity] points to an event whose seq
 *       field is that seq; every other slot is null. So the queue holds exactly tail - head events.
 *   I3  every event is a live allocation of at least sizeof(evq_event_t) + len bytes, and its sum
 *       is the FNV-1a hash of its bytes (a torn or half-written event would not match).
 *   I4  every taken consumer's next_seq lies in [head_seq, tail_seq]: nobody's unread event is ever
 *       dropped; a free slot has next_seq 0.
 *
 * Locks: one shmd_lock_t in the header protects the header's counters, the ring and the consumer
 * table. Every operation takes it through shmd_tx_lock() inside its transaction and holds it until
 * the commit (or the caller's outermost commit, when it joins the caller's transaction). It is the
 * only lock of this structure; the allocator's locks, which shmd_tx_alloc() and the frees take, come
 * after it in shmdict's lock order. Readers (peek, stats, check) take it too: a reader must not see
 * a push half-done.
 */
#include "evq.h"

#include <stdio.h>
#include <string.h>

#define EVQ_MAGIC UINT64_C(0x3171766574766571) /* "qevtevq1" */

/* ---------------------------------------------------------------------------------------------- */
/* Layout in shared memory. Fixed-size fields, 8-byte aligned, so every word shmd_tx_set64() logs is
 * one aligned word. */

typedef struct evq_hdr_s {
  uint64_t magic;          /* EVQ_MAGIC: tells a queue from any other block */
  shmd_lock_t lock;        /* protects everything below, the ring and the consumer table */
  uint32_t capacity;       /* ring slots; set at creation, never changed */
  uint32_t max_consumers;  /* consumer slots; set at creation, never changed */
  uint64_t head_seq;       /* sequence number of the oldest event held */
  uint64_t tail_seq;       /* sequence number the next push gets */
  shmd_ptr_t ring;         /* -> shmd_ptr_t[capacity] */
  shmd_ptr_t consumers;    /* -> evq_consumer_t[max_consumers] */
  uint64_t reserved[2];    /* zero: room for later fields without moving these */
} evq_hdr_t;

typedef struct evq_consumer_s {
  uint64_t taken;    /* 1 while subscribed, 0 for a free slot */
  uint64_t next_seq; /* the consumer's next event */
} evq_consumer_t;

typedef struct evq_event_s {
  uint64_t seq;      /* its own sequence number (checked against its slot) */
  uint64_t len;      /* payload bytes */
  uint64_t sum;      /* FNV-1a of the payload */
  uint64_t reserved; /* zero */
  unsigned char data[];
} evq_event_t;

/* The layout is a contract: the C++ version (evq.hpp) and any process of either kind share it. */
_Static_assert(sizeof(evq_hdr_t) == 72 && offsetof(evq_hdr_t, ring) == 40, "evq header layout");
_Static_assert(sizeof(evq_event_t) == 32, "evq event layout");

/* ---------------------------------------------------------------------------------------------- */
/* Helpers. */

static _Thread_local char check_detail[200];

const char *evq_check_detail(void) { return check_detail; }

/* Records where a check failed and returns SHMD_ECORRUPT, as shmdict's own checkers do. */
static int corrupt(const char *what, uint64_t a, uint64_t b) {
  snprintf(check_detail, sizeof check_detail, "evq: %s (%llu, %llu)", what, (unsigned long long)a,
           (unsigned long long)b);
  return SHMD_ECORRUPT;
}

static uint64_t fnv1a(const void *data, size_t len) {
  const unsigned char *p = data;
  uint64_t h = UINT64_C(0xcbf29ce484222325);
  for (size_t i = 0; i < len; i++)
    h = (h ^ p[i]) * UINT64_C(0x100000001b3);
  return h;
}

/* The queue's parts resolved in this process. */
typedef struct view_s {
  shmd_store_t *s;
  evq_hdr_t *h;
  shmd_ptr_t *ring;
  evq_consumer_t *cons;
} view_t;

/*
 * Resolves and validates the header and its two arrays. Everything read from shared memory is
 * untrusted: another process may have been killed while writing it, or the store may be damaged.
 * So every pointer goes through shmd_resolve_checked() and every count is bounded before it bounds
 * a loop.
 */
static int view(shmd_store_t *s, shmd_ptr_t q, view_t *v) {
  void *p;
  v->s = s;
  if (shmd_resolve_checked(s, q, sizeof(evq_hdr_t), &p))
    return corrupt("queue pointer outside the store", q.v, 0);
  v->h = p;
  if (v->h->magic != EVQ_MAGIC)
    return corrupt("bad magic", v->h->magic, EVQ_MAGIC);
  uint32_t cap = v->h->capacity, maxc = v->h->max_consumers;
  if (cap == 0 || cap > EVQ_MAX_CAPACITY || maxc == 0 || maxc > EVQ_MAX_CONSUMERS)
    return corrupt("sizes out of range", cap, maxc);
  if (shmd_resolve_checked(s, v->h->ring, (size_t)cap * sizeof(shmd_ptr_t), &p))
    return corrupt("ring outside the store", v->h->ring.v, cap);
  v->ring = p;
  if (shmd_resolve_checked(s, v->h->consumers, (size_t)maxc * sizeof(evq_consumer_t), &p))
    return corrupt("consumer table outside the store", v->h->consumers.v, maxc);
  v->cons = p;
  uint64_t head = v->h->head_seq, tail = v->h->tail_seq; /* I1 */
  if (head > tail || tail - head > cap)
    return corrupt("head/tail out of order", head, tail);
  return 0;
}

/* The event of `seq` (which must lie in [head, tail)), bounds-checked with its length. */
static int event_at(const view_t *v, uint64_t seq, evq_event_t **out) {
  shmd_ptr_t p = v->ring[seq % v->h->capacity];
  void *a;
  if (shmd_resolve_checked(v->s, p, sizeof(evq_event_t), &a))
    return corrupt("event pointer outside the store", seq, p.v);
  evq_event_t *e = a;
  if (e->seq != seq || e->len > EVQ_MAX_EVENT)
    return corrupt("event header does not match its slot", seq, e->seq);
  if (shmd_resolve_checked(v->s, p, sizeof(evq_event_t) + e->len, &a))
    return corrupt("event bytes outside the store", seq, e->len);
  *out = e;
  return 0;
}

/*
 * Starts (or joins) a transaction and takes the queue's lock. Every operation begins here. The lock
 * is a shmd_ptr_t to the shmd_lock_t inside the header: shmd_tx_lock() needs the store pointer, not
 * the address, because a dead holder's lock is recovered by another process.
 */
static int begin_locked(shmd_store_t *s, shmd_ptr_t q, shmd_tx_t **tx, view_t *v) {
  int rc = shmd_tx_begin(s, tx);
  if (rc)
    return rc;
  if ((rc = shmd_tx_lock(*tx, shmd_ptr_add(q, offsetof(evq_hdr_t, lock)))) ||
      (rc = view(s, q, v))) {
    shmd_tx_abort(*tx);
    return rc;
  }
  return 0;
}

/*
 * Two ways to end. An outcome (SHMD_ENOTFOUND, SHMD_ENOSPC as back-pressure, SHMD_EINVAL for a
 * wrong argument) is found before anything was changed: commit, which releases the lock and leaves
 * a caller's enclosing transaction intact. A failure after changes (no space for an allocation, a
 * full log, damage) aborts: every logged word is restored and every allocation freed, and an
 * enclosing transaction is marked aborted, so its outermost commit rolls back too.
 */
static int done(shmd_tx_t *tx, int outcome) {
  int rc = shmd_tx_commit(tx);
  return outcome ? outcome : rc;
}

static int fail(shmd_tx_t *tx, int rc) {
  shmd_tx_abort(tx);
  return rc;
}

/* The smallest cursor of a taken consumer, or tail when nobody is subscribed. */
static uint64_t min_cursor(const view_t *v) {
  uint64_t lo = v->h->tail_seq;
  for (uint32_t i = 0; i < v->h->max_consumers; i++)
    if (v->cons[i].taken && v->cons[i].next_seq < lo)
      lo = v->cons[i].next_seq;
  return lo;
}

/* ---------------------------------------------------------------------------------------------- */
/* Create, open, destroy. */

int evq_create(shmd_store_t *s, uint32_t capacity, uint32_t max_consumers, shmd_ptr_t *out) {
  if (capacity == 0 || capacity > EVQ_MAX_CAPACITY || max_consumers == 0 ||
      max_consumers > EVQ_MAX_CONSUMERS)
    return SHMD_EINVAL;
  shmd_tx_t *tx;
  shmd_ptr_t hp, ring, cons;
  int rc = shmd_tx_begin(s, &tx);
  if (rc)
    return rc;
  /* Allocations through the transaction: if we die or abort before the commit, all three are
   * freed by recovery. Zero-filled memory is an empty ring and a table of free slots. */
  if ((rc = shmd_tx_calloc(tx, sizeof(evq_hdr_t), &hp)) ||
      (rc = shmd_tx_calloc(tx, (size_t)capacity * sizeof(shmd_ptr_t), &ring)) ||
      (rc = shmd_tx_calloc(tx, (size_t)max_consumers * sizeof(evq_consumer_t), &cons)))
    return fail(tx, rc);
  /* Fresh memory nobody else can reach yet: plain stores, no logging. */
  evq_hdr_t *h = shmd_resolve(s, hp);
  shmd_lock_init(&h->lock);
  h->capacity = capacity;
  h->max_consumers = max_consumers;
  h->ring = ring;
  h->consumers = cons;
  h->magic = EVQ_MAGIC;
  if ((rc = shmd_tx_commit(tx)))
    return rc;
  *out = hp;
  return 0;
}

int evq_open(shmd_store_t *s, const char *root, uint32_t capacity, uint32_t max_consumers,
             shmd_ptr_t *out) {
  shmd_ptr_t q, existing;
  int rc = shmd_root_get(s, root, &q);
  if (rc == 0) {
    *out = q;
    return 0;
  }
  if (rc != SHMD_ENOTFOUND)
    return rc;
  /* Create and publish in one transaction: a crash in between leaves neither. */
  shmd_tx_t *tx;
  if ((rc = shmd_tx_begin(s, &tx)))
    return rc;
  if ((rc = evq_create(s, capacity, max_consumers, &q)))
    return fail(tx, rc);
  rc = shmd_root_set_nx(s, root, q, &existing);
  if (rc == SHMD_EEXIST) {
    /* Another process won the race: give our blocks back (after the commit) and use its queue. */
    evq_hdr_t *h = shmd_resolve(s, q);
    if ((rc = shmd_tx_free(tx, h->ring)) || (rc = shmd_tx_free(tx, h->consumers)) ||
        (rc = shmd_tx_free(tx, q)))
      return fail(tx, rc);
    q = existing;
  } else if (rc) {
    return fail(tx, rc);
  }
  if ((rc = shmd_tx_commit(tx)))
    return rc;
  *out = q;
  return 0;
}

int evq_destroy(shmd_store_t *s, shmd_ptr_t q) {
  shmd_tx_t *tx;
  view_t v;
  int rc = begin_locked(s, q, &tx, &v);
  if (rc)
    return rc;
  uint64_t head = v.h->head_seq, tail = v.h->tail_seq;
  /* Room for every free up front, so the destroy cannot stop half-way for lack of room. */
  if ((rc = shmd_tx_reserve(tx, 1, 0, (size_t)(tail - head) + 3)))
    return fail(tx, rc);
  for (uint64_t seq = head; seq < tail; seq++)
    if ((rc = shmd_tx_free(tx, v.ring[seq % v.h->capacity])))
      return fail(tx, rc);
  /* The magic is logged and cleared, so a stale pointer to the queue is refused (until the block
   * is reused); the frees happen after the commit, exactly once. */
  if ((rc = shmd_tx_set64(tx, &v.h->magic, 0)) || (rc = shmd_tx_free(tx, v.h->ring)) ||
      (rc = shmd_tx_free(tx, v.h->consumers)) || (rc = shmd_tx_free(tx, q)))
    return fail(tx, rc);
  return shmd_tx_commit(tx);
}

/* ---------------------------------------------------------------------------------------------- */
/* Producers. */

int evq_push(shmd_store_t *s, shmd_ptr_t q, const void *data, size_t len, uint64_t *seq) {
  if (len > EVQ_MAX_EVENT)
    return SHMD_ETOOBIG;
  shmd_tx_t *tx;
  view_t v;
  int rc = begin_locked(s, q, &tx, &v);
  if (rc)
    return rc;
  evq_hdr_t *h = v.h;
  uint64_t head = h->head_seq, tail = h->tail_seq;
  if (tail - head == h->capacity) {
    /* Full. The oldest event may go only if every consumer has read it (I4). */
    if (min_cursor(&v) == head)
      return done(tx, SHMD_ENOSPC); /* nothing changed yet: back-pressure, not a failure */
    shmd_ptr_t *slot = &v.ring[head % h->capacity];
    /* shmd_tx_free() only records the free; the block is freed after the commit, so a crash
     * before the commit leaves the event where it was, and one after it frees it exactly once. */
    if ((rc = shmd_tx_free(tx, *slot)) || (rc = shmd_tx_set64(tx, slot, 0)) ||
        (rc = shmd_tx_set64(tx, &h->head_seq, head + 1)))
      return fail(tx, rc);
  }
  /* The new event: allocated through the transaction, so it is freed if we die before the commit
   * (no leak), and written with plain stores (nobody can reach it until the commit). */
  shmd_ptr_t ep;
  if ((rc = shmd_tx_alloc(tx, sizeof(evq_event_t) + len, &ep)))
    return fail(tx, rc);
  evq_event_t *e = shmd_resolve(s, ep);
  e->seq = tail;
  e->len = len;
  e->sum = fnv1a(data, len);
  e->reserved = 0;
  if (len)
    memcpy(e->data, data, len);
  /* Link it: two words other processes read, each logged before it is stored (shmd_tx_set64 logs
   * the old value, then stores). Order does not matter for readers, who hold the lock; it matters
   * for nobody else either, because recovery restores both. */
  if ((rc = shmd_tx_set64(tx, &v.ring[tail % h->capacity], ep.v)) ||
      (rc = shmd_tx_set64(tx, &h->tail_seq, tail + 1)))
    return fail(tx, rc);
  /* The commit point: one store makes the whole push permanent. */
  if ((rc = shmd_tx_commit(tx)))
    return rc;
  if (seq)
    *seq = tail;
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Consumers. */

int evq_subscribe(shmd_store_t *s, shmd_ptr_t q, int from_oldest, uint32_t *consumer) {
  shmd_tx_t *tx;
  view_t v;
  int rc = begin_locked(s, q, &tx, &v);
  if (rc)
    return rc;
  for (uint32_t i = 0; i < v.h->max_consumers; i++) {
    evq_consumer_t *c = &v.cons[i];
    if (c->taken)
      continue;
    uint64_t start = from_oldest ? v.h->head_seq : v.h->tail_seq;
    if ((rc = shmd_tx_set64(tx, &c->next_seq, start)) || (rc = shmd_tx_set64(tx, &c->taken, 1)))
      return fail(tx, rc);
    if ((rc = shmd_tx_commit(tx)))
      return rc;
    *consumer = i;
    return 0;
  }
  return done(tx, SHMD_ENOSPC);
}

int evq_unsubscribe(shmd_store_t *s, shmd_ptr_t q, uint32_t consumer) {
  shmd_tx_t *tx;
  view_t v;
  int rc = begin_locked(s, q, &tx, &v);
  if (rc)
    return rc;
  if (consumer >= v.h->max_consumers || !v.cons[consumer].taken)
    return done(tx, SHMD_ENOTFOUND);
  evq_consumer_t *c = &v.cons[consumer];
  if ((rc = shmd_tx_set64(tx, &c->taken, 0)) || (rc = shmd_tx_set64(tx, &c->next_seq, 0)))
    return fail(tx, rc);
  return shmd_tx_commit(tx);
}

/* The consumer's slot, validated (I4) before its cursor is used. */
static int consumer_at(const view_t *v, uint32_t consumer, evq_consumer_t **out) {
  if (consumer >= v->h->max_consumers || !v->cons[consumer].taken)
    return SHMD_EINVAL;
  evq_consumer_t *c = &v->cons[consumer];
  if (c->next_seq < v->h->head_seq || c->next_seq > v->h->tail_seq)
    return corrupt("consumer cursor outside [head, tail]", consumer, c->next_seq);
  *out = c;
  return 0;
}

/* Copies the consumer's next event; the lock is held. */
static int read_next(const view_t *v, evq_consumer_t *c, void *buf, size_t cap, size_t *len,
                     uint64_t *seq) {
  if (c->next_seq == v->h->tail_seq)
    return SHMD_ENOTFOUND;
  evq_event_t *e;
  int rc = event_at(v, c->next_seq, &e);
  if (rc)
    return rc;
  size_t n = e->len < cap ? (size_t)e->len : cap;
  if (n)
    memcpy(buf, e->data, n);
  if (len)
    *len = (size_t)e->len;
  if (seq)
    *seq = c->next_seq;
  return e->len > cap ? SHMD_ERANGE : 0;
}

int evq_peek(shmd_store_t *s, shmd_ptr_t q, uint32_t consumer, void *buf, size_t cap, size_t *len,
             uint64_t *seq) {
  shmd_tx_t *tx;
  view_t v;
  evq_consumer_t *c;
  int rc = begin_locked(s, q, &tx, &v);
  if (rc)
    return rc;
  if ((rc = consumer_at(&v, consumer, &c)) == 0)
    rc = read_next(&v, c, buf, cap, len, seq);
  return rc == SHMD_ECORRUPT ? fail(tx, rc) : done(tx, rc);
}

int evq_ack(shmd_store_t *s, shmd_ptr_t q, uint32_t consumer, uint64_t seq) {
  shmd_tx_t *tx;
  view_t v;
  evq_consumer_t *c;
  int rc = begin_locked(s, q, &tx, &v);
  if (rc)
    return rc;
  if ((rc = consumer_at(&v, consumer, &c)))
    return rc == SHMD_ECORRUPT ? fail(tx, rc) : done(tx, rc);
  if (c->next_seq != seq || seq == v.h->tail_seq)
    return done(tx, SHMD_EINVAL);
  if ((rc = shmd_tx_set64(tx, &c->next_seq, seq + 1)))
    return fail(tx, rc);
  return shmd_tx_commit(tx);
}

int evq_poll(shmd_store_t *s, shmd_ptr_t q, uint32_t consumer, void *buf, size_t cap, size_t *len,
             uint64_t *seq) {
  shmd_tx_t *tx;
  view_t v;
  evq_consumer_t *c;
  uint64_t got;
  int rc = begin_locked(s, q, &tx, &v);
  if (rc)
    return rc;
  if ((rc = consumer_at(&v, consumer, &c)) || (rc = read_next(&v, c, buf, cap, len, &got)))
    return rc == SHMD_ECORRUPT ? fail(tx, rc) : done(tx, rc);
  if ((rc = shmd_tx_set64(tx, &c->next_seq, got + 1)))
    return fail(tx, rc);
  if ((rc = shmd_tx_commit(tx)))
    return rc;
  if (seq)
    *seq = got;
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Inspection and the checker. */

int evq_stats(shmd_store_t *s, shmd_ptr_t q, evq_stats_t *st) {
  shmd_tx_t *tx;
  view_t v;
  int rc = begin_locked(s, q, &tx, &v);
  if (rc)
    return rc;
  memset(st, 0, sizeof *st);
  st->capacity = v.h->capacity;
  st->max_consumers = v.h->max_consumers;
  st->head_seq = v.h->head_seq;
  st->tail_seq = v.h->tail_seq;
  for (uint32_t i = 0; i < v.h->max_consumers; i++)
    st->consumers += v.cons[i].taken != 0;
  st->max_lag = st->tail_seq - min_cursor(&v);
  return done(tx, 0);
}

int evq_cursor(shmd_store_t *s, shmd_ptr_t q, uint32_t consumer, uint64_t *next_seq) {
  shmd_tx_t *tx;
  view_t v;
  evq_consumer_t *c;
  int rc = begin_locked(s, q, &tx, &v);
  if (rc)
    return rc;
  if ((rc = consumer_at(&v, consumer, &c)) == 0)
    *next_seq = c->next_seq;
  return rc == SHMD_ECORRUPT ? fail(tx, rc) : done(tx, rc);
}

int evq_check(shmd_store_t *s, shmd_ptr_t q) {
  shmd_tx_t *tx;
  view_t v;
  check_detail[0] = '\0';
  int rc = begin_locked(s, q, &tx, &v); /* I1 and the header's sanity: view() */
  if (rc)
    return rc;
  const evq_hdr_t *h = v.h;
  uint64_t head = h->head_seq, tail = h->tail_seq;
  /* I2, I3: walk the ring once, bounded by the capacity, not by anything a writer could set. */
  for (uint64_t k = 0; k < h->capacity; k++) {
    uint64_t slot = k;
    /* The sequence number that would live in this slot if it is in [head, tail). */
    uint64_t seq = head + ((slot + h->capacity - head % h->capacity) % h->capacity);
    int held = seq < tail;
    if (!held) {
      if (!shmd_ptr_is_null(v.ring[slot]))
        return fail(tx, corrupt("slot outside [head, tail) is not null", slot, v.ring[slot].v));
      continue;
    }
    evq_event_t *e;
    if ((rc = event_at(&v, seq, &e)))
      return fail(tx, rc);
    size_t usable = shmd_usable_size(s, v.ring[slot]);
    if (usable < sizeof(evq_event_t) + e->len)
      return fail(tx, corrupt("event is not a live allocation of its size", seq, usable));
    if (fnv1a(e->data, (size_t)e->len) != e->sum)
      return fail(tx, corrupt("event checksum mismatch", seq, e->sum));
  }
  /* I4. */
  for (uint32_t i = 0; i < h->max_consumers; i++) {
    const evq_consumer_t *c = &v.cons[i];
    if (c->taken > 1)
      return fail(tx, corrupt("consumer slot flag", i, c->taken));
    if (c->taken && (c->next_seq < head || c->next_seq > tail))
      return fail(tx, corrupt("consumer cursor outside [head, tail]", i, c->next_seq));
    if (!c->taken && c->next_seq != 0)
      return fail(tx, corrupt("free consumer slot with a cursor", i, c->next_seq));
  }
  return done(tx, 0);
}
