/* SPDX-License-Identifier: MIT */
/*
 * Pub/sub across processes: the ring that carries published messages from any process (a server
 * worker's PUBLISH, an application's shmd_kv_publish()) to every server worker, the worker slots,
 * and the registry of subscriptions that PUBLISH's count and PUBSUB NUMSUB / CHANNELS read.
 *
 * The ring
 * --------
 * One ring of R bytes (a power of two, pubsub-ring-bytes) in the store, addressed by absolute
 * byte positions: a record at position p lives at ring[p mod R] (wrapping). `head` is the
 * position after the last published record. A record is a 24-byte header (its own position, its
 * padded length, the channel and message lengths) then the channel and the message, padded to 8.
 *
 * Writers are serialised by the root's shmd_lock_t, taken in a transaction, so a writer killed at
 * any instruction is recovered by the lane protocol like every other lock holder: its lock is
 * released and nothing needs rolling back, because a writer changes nothing readers trust until
 * its last step. It (1) raises `dirty_to` to the end of its record (monotonic, a full fence),
 * (2) copies the record to ring[head ..], (3) stores head += length with release order: the one
 * store that publishes. A writer killed before (3) leaves bytes past head that nobody reads and
 * the next writer overwrites; killed after (3), its message is published whole. So a killed
 * publisher never wedges the ring, and readers never wait for anyone.
 *
 * Readers keep their position in their own memory (one per server worker). A reader copies a
 * record out, then (after an acquire fence) checks that `dirty_to` has not advanced more than R
 * past the record's start: if it has, a writer may have overwritten the bytes while they were
 * copied (the reader fell a whole ring behind) and the reader jumps to the head and reports the
 * loss, which the server answers as Redis answers a subscriber over its output-buffer limit: it
 * disconnects that worker's subscribers. Records are untrusted (checked position, bounded
 * lengths). A killed reader loses nothing but its own position.
 *
 * Waking: after publishing, the writer bumps the root's futex word `wake` and wakes every waiter;
 * each server worker has a thread sleeping on that word (server/worker.c). A writer killed between
 * (3) and the wake-up delays delivery until the next publish or the worker's periodic check.
 *
 * Slots and the registry
 * ----------------------
 * Each server worker claims a slot (its pid, its pid namespace) under the root lock. Its
 * subscriptions are counted in two hash containers of its slot (channel -> count, pattern ->
 * count) that only it changes, each change one transaction. PUBLISH's receiver count and PUBSUB
 * read the containers of every claimed slot. A slot whose owner died is reclaimed by the
 * supervisor's replacement worker (which is told the dead pid) or by any worker's periodic reap
 * (owner pid gone in the same pid namespace): its containers are destroyed and its blocked-key
 * bits cleared, in a transaction under the root lock.
 *
 * Locks: root lock -> registry hash containers -> allocator. Publishing and the registry take no
 * keyspace lock.
 */
#include <stdlib.h>
#include <string.h>

#include "kv/kv_int.h"
#include "kv/notify.h"
#include "kv/util.h"
#include "segments/os.h"
#include "shmdict/alloc.h"
#include "shmdict/store.h"

#define PS_ROOT_NAME "shmdict.pubsub"
#define PS_MAGIC 0x31307370646d6873ull /* "shmdps01" */

/* ---------------------------------------------------------------------------------------------- */
/* The root */

static int ps_view(shmd_store_t *s, shmd_ptr_t p, kv_ps_root_t **out) {
  void *a;
  if ((p.v & 7) || shmd_resolve_checked(s, p, sizeof(kv_ps_root_t), &a))
    return SHMD_ECORRUPT;
  kv_ps_root_t *r = a;
  if (r->magic != PS_MAGIC || r->ring_bytes < 4096 || (r->ring_bytes & (r->ring_bytes - 1)))
    return SHMD_ECORRUPT;
  void *ring;
  if ((r->ring.v & 7) || shmd_resolve_checked(s, r->ring, r->ring_bytes, &ring))
    return SHMD_ECORRUPT;
  *out = r;
  return 0;
}

/* Per-thread cache: the root of the last stores used, or the time of the next look for a store
 * that had none (a root appears once, when the first server attaches; until then, pushes look
 * again at most every 100 ms). */
#define PS_CACHE 4
static __thread struct {
  uint64_t id;
  kv_ps_root_t *root;
  shmd_ptr_t rootp;
  uint64_t next_look_ms;
} ps_cache[PS_CACHE];
static __thread unsigned ps_cache_next;

/* The root and its pointer, or NULL. */
static kv_ps_root_t *ps_get(shmd_store_t *s, shmd_ptr_t *rootp) {
  uint64_t id = shmd_store_id(s);
  unsigned i;
  for (i = 0; i < PS_CACHE; i++)
    if (ps_cache[i].id == id)
      break;
  if (i < PS_CACHE && ps_cache[i].root) {
    if (rootp)
      *rootp = ps_cache[i].rootp;
    return ps_cache[i].root;
  }
  uint64_t now = 0;
  if (i < PS_CACHE) {
    now = shmd__os_unix_ms();
    if (now < ps_cache[i].next_look_ms)
      return NULL;
  }
  shmd_ptr_t p = shmd_ptr_null();
  kv_ps_root_t *r = NULL;
  if (shmd_root_get(s, PS_ROOT_NAME, &p) == 0 && ps_view(s, p, &r) != 0)
    r = NULL;
  if (i == PS_CACHE) {
    i = ps_cache_next++ % PS_CACHE;
    ps_cache[i].id = id;
  }
  ps_cache[i].root = r;
  ps_cache[i].rootp = p;
  ps_cache[i].next_look_ms = (now ? now : shmd__os_unix_ms()) + 100;
  if (r && rootp)
    *rootp = p;
  return r;
}

kv_ps_root_t *shmd__kv_ps_root(shmd_store_t *s) { return ps_get(s, NULL); }

/* Forgets a negative entry (a root was just made or found). */
static void ps_forget(shmd_store_t *s) {
  uint64_t id = shmd_store_id(s);
  for (unsigned i = 0; i < PS_CACHE; i++)
    if (ps_cache[i].id == id && ps_cache[i].root == NULL)
      ps_cache[i].next_look_ms = 0;
}

static uint64_t pow2_at_least(uint64_t v) {
  uint64_t p = 4096;
  while (p < v && p < (1ull << 40))
    p <<= 1;
  return p;
}

static int ps_create(shmd_store_t *s, uint64_t ring_bytes, kv_ps_root_t **out) {
  shmd_tx_t *tx;
  int rc = shmd_tx_begin(s, &tx);
  if (rc)
    return rc;
  shmd_ptr_t p, ring;
  if ((rc = shmd_tx_calloc(tx, sizeof(kv_ps_root_t), &p)) || (rc = shmd_tx_alloc(tx, ring_bytes, &ring))) {
    shmd_tx_abort(tx);
    return rc;
  }
  kv_ps_root_t *r = shmd_resolve(s, p);
  r->ring_bytes = ring_bytes;
  r->ring = ring;
  shmd_lock_init(&r->lock);
  r->magic = PS_MAGIC;
  shmd_ptr_t existing;
  rc = shmd_root_set_nx(s, PS_ROOT_NAME, p, &existing);
  if (rc == SHMD_EEXIST) { /* another worker won: drop ours */
    shmd_tx_abort(tx);
    return ps_view(s, existing, out);
  }
  if (rc) {
    shmd_tx_abort(tx);
    return rc;
  }
  if ((rc = shmd_tx_commit(tx)))
    return rc;
  *out = r;
  return 0;
}

static shmd_ptr_t lock_ptr(shmd_ptr_t rootp) { return shmd_ptr_add(rootp, offsetof(kv_ps_root_t, lock)); }

/* ---------------------------------------------------------------------------------------------- */
/* Slots */

static int owner_gone(const kv_ps_slot_t *sl) {
  if (sl->pid == 0)
    return 1;
  uint64_t ns = shmd__os_pidns();
  if (ns == 0 || sl->pidns != ns)
    return 0; /* another namespace: cannot judge, so alive */
  return shmd__os_pid_alive(sl->pid) == 0;
}

/* Clears slot i (its registry, its blocked bits, its claim) inside tx, which holds the root lock. */
static int slot_clear(shmd_store_t *s, shmd_tx_t *tx, kv_ps_root_t *r, unsigned i) {
  kv_ps_slot_t *sl = &r->slot[i];
  int rc;
  if (sl->channels.v) {
    if ((rc = shmd_hash_destroy(s, sl->channels)) || (rc = shmd_tx_set64(tx, &sl->channels.v, 0)))
      return rc;
  }
  if (sl->patterns.v) {
    if ((rc = shmd_hash_destroy(s, sl->patterns)) || (rc = shmd_tx_set64(tx, &sl->patterns.v, 0)))
      return rc;
  }
  for (unsigned b = 0; b < KV_PS_BUCKETS; b++)
    if (__atomic_load_n(&r->blocked[b], __ATOMIC_RELAXED) & (1ull << i))
      __atomic_fetch_and(&r->blocked[b], ~(1ull << i), __ATOMIC_SEQ_CST);
  __atomic_fetch_and(&r->blocked_slots, ~(1ull << i), __ATOMIC_SEQ_CST);
  if ((rc = shmd_tx_set64(tx, &r->slot_mask, r->slot_mask & ~(1ull << i))))
    return rc;
  return shmd_tx_set64(tx, (void *)sl, 0); /* pid and reserved0: the slot is free */
}

int shmd__kv_ps_attach(shmd_store_t *s, uint64_t ring_bytes, uint32_t dead_pid, int *slot, kv_ps_root_t **root) {
  shmd_ptr_t p;
  kv_ps_root_t *r;
  int rc;
  if (shmd_root_get(s, PS_ROOT_NAME, &p) != 0) {
    if ((rc = ps_create(s, pow2_at_least(ring_bytes), &r)))
      return rc;
    if ((rc = shmd_root_get(s, PS_ROOT_NAME, &p)))
      return rc;
  }
  if ((rc = ps_view(s, p, &r)))
    return rc;
  ps_forget(s);
  shmd_tx_t *tx;
  if ((rc = shmd_tx_begin(s, &tx)))
    return rc;
  if ((rc = shmd_tx_lock(tx, lock_ptr(p)))) {
    shmd_tx_abort(tx);
    return rc;
  }
  int pick = -1;
  for (unsigned i = 0; i < KV_PS_SLOTS && pick < 0; i++)
    if (dead_pid && r->slot[i].pid == dead_pid)
      pick = (int)i;
  for (unsigned i = 0; i < KV_PS_SLOTS && pick < 0; i++)
    if (r->slot[i].pid == 0)
      pick = (int)i;
  for (unsigned i = 0; i < KV_PS_SLOTS && pick < 0; i++)
    if (owner_gone(&r->slot[i]))
      pick = (int)i;
  if (pick < 0) {
    shmd_tx_abort(tx);
    return SHMD_EBUSY;
  }
  kv_ps_slot_t *sl = &r->slot[pick];
  if (sl->pid != 0 && (rc = slot_clear(s, tx, r, (unsigned)pick))) {
    shmd_tx_abort(tx);
    return rc;
  }
  if ((rc = shmd_tx_log(tx, shmd_ptr_add(p, offsetof(kv_ps_root_t, slot) + (size_t)pick * sizeof *sl), sizeof *sl)) ||
      (rc = shmd_tx_set64(tx, &r->slot_mask, r->slot_mask | (1ull << pick)))) {
    shmd_tx_abort(tx);
    return rc;
  }
  memset(sl, 0, sizeof *sl);
  sl->pid = shmd__os_pid();
  sl->pidns = shmd__os_pidns();
  sl->started_ms = shmd__os_unix_ms();
  if ((rc = shmd_tx_commit(tx)))
    return rc;
  *slot = pick;
  *root = r;
  return 0;
}

void shmd__kv_ps_detach(shmd_store_t *s, int slot) {
  shmd_ptr_t p;
  kv_ps_root_t *r = ps_get(s, &p);
  if (r == NULL || slot < 0 || slot >= (int)KV_PS_SLOTS)
    return;
  shmd_tx_t *tx;
  if (shmd_tx_begin(s, &tx))
    return;
  if (shmd_tx_lock(tx, lock_ptr(p)) || r->slot[slot].pid != shmd__os_pid() ||
      slot_clear(s, tx, r, (unsigned)slot)) {
    shmd_tx_abort(tx);
    return;
  }
  shmd_tx_commit(tx);
}

uint64_t shmd__kv_ps_reap(shmd_store_t *s) {
  shmd_ptr_t p;
  kv_ps_root_t *r = ps_get(s, &p);
  if (r == NULL)
    return 0;
  uint64_t gone = 0;
  for (unsigned i = 0; i < KV_PS_SLOTS; i++)
    if ((r->slot_mask & (1ull << i)) && r->slot[i].pid && owner_gone(&r->slot[i]))
      gone |= 1ull << i;
  if (gone == 0)
    return 0;
  shmd_tx_t *tx;
  if (shmd_tx_begin(s, &tx))
    return 0;
  if (shmd_tx_lock(tx, lock_ptr(p))) {
    shmd_tx_abort(tx);
    return 0;
  }
  uint64_t done = 0;
  for (unsigned i = 0; i < KV_PS_SLOTS; i++)
    if ((gone & (1ull << i)) && r->slot[i].pid && owner_gone(&r->slot[i])) {
      if (slot_clear(s, tx, r, i)) {
        shmd_tx_abort(tx);
        return 0;
      }
      done |= 1ull << i;
    }
  if (shmd_tx_commit(tx))
    return 0;
  return done;
}

/* ---------------------------------------------------------------------------------------------- */
/* The ring */

static inline uint64_t align8(uint64_t v) { return (v + 7) & ~(uint64_t)7; }

static void ring_put(unsigned char *ring, uint64_t size, uint64_t pos, const void *src, size_t n) {
  uint64_t at = pos & (size - 1);
  size_t first = n < size - at ? n : (size_t)(size - at);
  memcpy(ring + at, src, first);
  if (n > first)
    memcpy(ring, (const unsigned char *)src + first, n - first);
}

static void ring_get(const unsigned char *ring, uint64_t size, uint64_t pos, void *dst, size_t n) {
  uint64_t at = pos & (size - 1);
  size_t first = n < size - at ? n : (size_t)(size - at);
  memcpy(dst, ring + at, first);
  if (n > first)
    memcpy((unsigned char *)dst + first, ring, n - first);
}

typedef struct rec_hdr_s {
  uint64_t pos;
  uint32_t total;
  uint32_t channel_len;
  uint32_t message_len;
  uint32_t reserved;
} rec_hdr_t;
_Static_assert(sizeof(rec_hdr_t) == KV_PS_REC_HDR, "record header");

void shmd__kv_ps_wake(kv_ps_root_t *r) {
  __atomic_fetch_add(&r->wake, 1, __ATOMIC_SEQ_CST);
  shmd__os_futex_wake(&r->wake, 0x7fffffff);
}

uint64_t shmd__kv_ps_head(const kv_ps_root_t *r) { return __atomic_load_n(&r->head, __ATOMIC_ACQUIRE); }

typedef struct recv_s {
  const char *channel;
  size_t len;
  uint64_t n;
} recv_t;

static int match_patterns(const void *pat, size_t pl, const void *val, size_t vl, void *arg) {
  recv_t *rv = arg;
  uint64_t c = 0;
  if (vl == 8)
    memcpy(&c, val, 8);
  if (shmd__kv_glob(pat, pl, rv->channel, rv->len, 0))
    rv->n += c;
  return 0;
}

static int count_receivers(shmd_store_t *s, kv_ps_root_t *r, const void *ch, size_t cl, uint64_t *out) {
  recv_t rv = {ch, cl, 0};
  uint64_t mask = __atomic_load_n(&r->slot_mask, __ATOMIC_ACQUIRE);
  for (unsigned i = 0; i < KV_PS_SLOTS; i++) {
    if (!(mask & (1ull << i)))
      continue;
    kv_ps_slot_t *sl = &r->slot[i];
    if (sl->channels.v) {
      uint64_t c = 0;
      size_t vl = 0;
      int rc = shmd_hash_get(s, sl->channels, ch, cl, &c, 8, &vl);
      if (rc == 0 && vl == 8)
        rv.n += c;
      else if (rc && rc != SHMD_ENOTFOUND)
        return rc;
    }
    if (sl->patterns.v) {
      int rc = shmd_hash_foreach(s, sl->patterns, match_patterns, &rv);
      if (rc)
        return rc;
    }
  }
  *out = rv.n;
  return 0;
}

int shmd__kv_ps_publish(shmd_store_t *s, const void *ch, size_t cl, const void *msg, size_t ml, uint64_t *receivers) {
  if (receivers)
    *receivers = 0;
  shmd_ptr_t p;
  kv_ps_root_t *r = ps_get(s, &p);
  if (r == NULL)
    return 0; /* no server ever attached: nobody can be subscribed */
  uint64_t R = r->ring_bytes;
  if (cl > R || ml > R || align8(KV_PS_REC_HDR + (uint64_t)cl + ml) > R / 2)
    return SHMD_ETOOBIG;
  uint64_t total = align8(KV_PS_REC_HDR + (uint64_t)cl + ml);
  unsigned char *ring = shmd_resolve(s, r->ring);
  shmd_tx_t *tx;
  int rc = shmd_tx_begin(s, &tx);
  if (rc)
    return rc;
  if ((rc = shmd_tx_lock(tx, lock_ptr(p)))) {
    shmd_tx_abort(tx);
    return rc;
  }
  uint64_t pos = r->head;
  /* (1) mark the bytes about to change, before changing them */
  uint64_t dirty = __atomic_load_n(&r->dirty_to, __ATOMIC_RELAXED);
  if (pos + total > dirty)
    __atomic_store_n(&r->dirty_to, pos + total, __ATOMIC_SEQ_CST);
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  /* (2) the record */
  rec_hdr_t h = {pos, (uint32_t)total, (uint32_t)cl, (uint32_t)ml, 0};
  ring_put(ring, R, pos, &h, sizeof h);
  ring_put(ring, R, pos + KV_PS_REC_HDR, ch, cl);
  ring_put(ring, R, pos + KV_PS_REC_HDR + cl, msg, ml);
  /* (3) publish */
  __atomic_store_n(&r->head, pos + total, __ATOMIC_RELEASE);
  __atomic_fetch_add(&r->messages, 1, __ATOMIC_RELAXED);
  uint64_t n = 0;
  if (receivers)
    rc = count_receivers(s, r, ch, cl, &n);
  shmd_tx_commit(tx); /* nothing was logged: this only releases the lock */
  shmd__kv_ps_wake(r);
  if (rc)
    return rc;
  if (receivers)
    *receivers = n;
  return 0;
}

int shmd__kv_ps_read(kv_ps_root_t *r, shmd_store_t *s, uint64_t *pos, char **buf, size_t *cap, kv_ps_msg_t *m) {
  uint64_t R = r->ring_bytes;
  uint64_t head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
  uint64_t p = *pos;
  if (p == head)
    return 0;
  if (head - p > R || p > head) {
    *pos = head;
    return 2;
  }
  const unsigned char *ring = shmd_resolve(s, r->ring);
  rec_hdr_t h;
  ring_get(ring, R, p, &h, sizeof h);
  if (h.pos != p || h.total < KV_PS_REC_HDR || (h.total & 7) || h.total > R / 2 || p + h.total > head ||
      KV_PS_REC_HDR + (uint64_t)h.channel_len + h.message_len > h.total) {
    *pos = head;
    return 2;
  }
  size_t n = (size_t)h.channel_len + h.message_len;
  if (n > *cap) {
    size_t c = *cap ? *cap : 4096;
    while (c < n)
      c *= 2;
    char *b = realloc(*buf, c);
    if (b == NULL)
      return SHMD_ENOMEM;
    *buf = b;
    *cap = c;
  }
  ring_get(ring, R, p + KV_PS_REC_HDR, *buf, n);
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
  if (__atomic_load_n(&r->dirty_to, __ATOMIC_ACQUIRE) - p > R) { /* overwritten while we copied */
    *pos = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
    return 2;
  }
  m->channel = *buf;
  m->channel_len = h.channel_len;
  m->message = *buf + h.channel_len;
  m->message_len = h.message_len;
  *pos = p + h.total;
  return 1;
}

/* ---------------------------------------------------------------------------------------------- */
/* The registry */

int shmd__kv_ps_count(shmd_store_t *s, int slot, int pattern, const void *name, size_t len, int delta) {
  shmd_ptr_t p;
  kv_ps_root_t *r = ps_get(s, &p);
  if (r == NULL || slot < 0 || slot >= (int)KV_PS_SLOTS)
    return SHMD_EINVAL;
  shmd_tx_t *tx;
  int rc = shmd_tx_begin(s, &tx);
  if (rc)
    return rc;
  if ((rc = shmd_tx_lock(tx, lock_ptr(p))))
    goto fail;
  kv_ps_slot_t *sl = &r->slot[slot];
  shmd_ptr_t *hp = pattern ? &sl->patterns : &sl->channels;
  if (hp->v == 0) {
    if (delta <= 0)
      goto done;
    shmd_ptr_t h;
    if ((rc = shmd_hash_create(s, 0, &h)) || (rc = shmd_tx_set64(tx, &hp->v, h.v)))
      goto fail;
  }
  uint64_t c = 0;
  size_t vl = 0;
  rc = shmd_hash_get(s, *hp, name, len, &c, 8, &vl);
  if (rc && rc != SHMD_ENOTFOUND)
    goto fail;
  if (rc == SHMD_ENOTFOUND || vl != 8)
    c = 0;
  if (delta < 0 && c < (uint64_t)-delta)
    c = 0;
  else
    c += (uint64_t)(int64_t)delta;
  rc = c ? shmd_hash_put(s, *hp, name, len, &c, 8, SHMD_HASH_UPSERT, NULL) : shmd_hash_del(s, *hp, name, len);
  if (rc && rc != SHMD_ENOTFOUND)
    goto fail;
done:
  return shmd_tx_commit(tx);
fail:
  shmd_tx_abort(tx);
  return rc;
}

typedef struct each_s {
  int (*fn)(const void *name, size_t len, uint64_t count, void *arg);
  void *arg;
} each_t;

static int each_visit(const void *k, size_t kl, const void *v, size_t vl, void *arg) {
  each_t *e = arg;
  uint64_t c = 0;
  if (vl == 8)
    memcpy(&c, v, 8);
  return e->fn(k, kl, c, e->arg);
}

int shmd__kv_ps_foreach(shmd_store_t *s, int pattern, int (*fn)(const void *name, size_t len, uint64_t count, void *arg),
                        void *arg) {
  kv_ps_root_t *r = shmd__kv_ps_root(s);
  if (r == NULL)
    return 0;
  each_t e = {fn, arg};
  uint64_t mask = __atomic_load_n(&r->slot_mask, __ATOMIC_ACQUIRE);
  for (unsigned i = 0; i < KV_PS_SLOTS; i++) {
    if (!(mask & (1ull << i)))
      continue;
    shmd_ptr_t h = pattern ? r->slot[i].patterns : r->slot[i].channels;
    if (h.v == 0)
      continue;
    int rc = shmd_hash_foreach(s, h, each_visit, &e);
    if (rc)
      return rc;
  }
  return 0;
}

int shmd__kv_ps_numsub(shmd_store_t *s, const void *ch, size_t len, uint64_t *count) {
  *count = 0;
  kv_ps_root_t *r = shmd__kv_ps_root(s);
  if (r == NULL)
    return 0;
  uint64_t mask = __atomic_load_n(&r->slot_mask, __ATOMIC_ACQUIRE);
  for (unsigned i = 0; i < KV_PS_SLOTS; i++) {
    if (!(mask & (1ull << i)) || r->slot[i].channels.v == 0)
      continue;
    uint64_t c = 0;
    size_t vl = 0;
    int rc = shmd_hash_get(s, r->slot[i].channels, ch, len, &c, 8, &vl);
    if (rc == 0 && vl == 8)
      *count += c;
    else if (rc && rc != SHMD_ENOTFOUND)
      return rc;
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* The public entry */

int shmd_kv_publish(shmd_store_t *s, const void *channel, size_t channel_len, const void *message,
                    size_t message_len, uint64_t *receivers) {
  if (s == NULL || (channel == NULL && channel_len) || (message == NULL && message_len))
    return SHMD_EINVAL;
  return shmd__kv_ps_publish(s, channel, channel_len, message, message_len, receivers);
}
