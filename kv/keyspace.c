/* SPDX-License-Identifier: MIT */
/*
 * The keyspace: Redis-like databases of typed values on top of the hash, list and rbtree
 * containers: records, lookups, expiry, stripes, the garbage list and the checker. The commands
 * run on it from dispatch.c (the entry point and table) and db.c, t_*.c (the handlers).
 *
 * Layout and choices
 * ------------------
 * - The keyspace hangs off the named root "shmdict.kv": a kv_root_t with a lock and one pointer per
 *   database (16, numbered 0..15 like Redis). The root block is allocated with shmd_tx_calloc()
 *   and published with shmd_root_set_nx() in the same transaction, so racing processes agree on
 *   one, the loser frees its block, and a process killed in between leaks nothing (recovery frees
 *   the reservation). A database is created on first use, in one transaction under the root's lock.
 * - A database (kv_db_t) is KV_STRIPES (8) stripes. A stripe is a lock of its own plus a hash
 *   container mapping key -> value record; a key's stripe is chosen by a hash of its bytes. The
 *   stripe lock is separate from the hash's own lock so that FLUSHDB can swap a stripe's hash for a
 *   fresh one while others wait on the stripe lock (they read the hash pointer only under it).
 *   Every command takes all the stripe locks it needs first, in stripe-index order, inside one
 *   transaction (dispatch.c derives the keys from each command's key spec, as Redis does), then the
 *   container locks. Lock order: kv root -> stripes by index -> garbage list -> containers. With 8
 *   stripes a command holds at most 8 stripe locks + 8 stripe hash locks, plus one lock per value
 *   container it touches.
 * - Value record (the stripe hash's value): kv_rec_t {type, expiry (absolute Unix ms, 0 = none)}
 *   followed by the string bytes (strings, inline in the hash entry up to 512 bytes, else the
 *   hash's out-of-line storage) or by two container pointers a, b: hash -> a = hash container;
 *   list -> a = list container; set -> a = hash container with empty values; sorted set ->
 *   a = hash (member -> 8-byte double score) and b = an ordered tree on (score, member) with
 *   empty values, as Redis pairs a dict with a skiplist: an order-statistic B+tree in stores of
 *   layout 1.5 and later, the rbtree in older ones (kv/t_zset.c says why; kv_ztree_*).
 *   Empty containers are never left behind: a command that empties one deletes the key.
 * - Expiry: lazy on access (a command that finds an expired key deletes it first, in its own
 *   transaction, whatever the command), plus shmd_kv_expire_step() which scans a bounded number of
 *   keys per call and deletes the expired ones (call it from an idle loop, as Redis's active
 *   expire cycle). DBSIZE counts keys that expired but were not yet deleted (as Redis does).
 * - Deleting a key whose value is a container (DEL, overwrite by SET, RENAME onto it, expiry,
 *   FLUSHDB) must not need a transaction as big as the container. The key is unlinked in the
 *   command's transaction and its container(s) are appended, in that same transaction, to the
 *   database's garbage list (a list container of kv_garbage_t). After the command commits, the
 *   garbage is drained: each step is one transaction that removes a batch of entries from the
 *   container at the head of the list, and the step that leaves it empty destroys it and pops the
 *   list entry in the same transaction. A crash anywhere leaves either the entry (and a valid,
 *   smaller container) or neither: nothing leaks, nothing is freed twice; the next drain (any
 *   later DEL, shmd_kv_expire_step(), shmd_kv_drain()) finishes it. FLUSHDB swaps every stripe's
 *   hash for a fresh one and appends the old stripe hashes to the garbage list; draining a stripe
 *   hash moves the containers of its records to the garbage list and deletes the records in
 *   batches. shmd_kv_check() checks the containers on the garbage list too.
 * - Reads copy out under the locks (a reply owns its memory), except GET outside a transaction,
 *   which copies a validated snapshot without any lock (see "Lock-free reads" below).
 * - Size: a command is one transaction. Its locks, allocations, frees and undo words beyond what a
 *   lane holds in place go to an extension block (include/shmdict/tx.h), so a command of any size
 *   (HSET with 100 000 fields, SUNION of 1 000 sets) is atomic, limited only by the store's free
 *   space (SHMD_ENOSPC -> Redis's OOM error, nothing changed). Deletes need no big transaction at
 *   all (garbage list).
 * - The keyspace root pointer is cached per thread (shmd_root_get takes the store's roots lock); a
 *   database is created once, in a transaction of its own, so its pointer, read without a lock,
 *   never names a database that could still roll back.
 */
#include "kv/kv_int.h"
#include "kv/changelog.h"

#include <stdlib.h>
#include <string.h>

#include "shmdict/alloc.h"
#include "shmdict/blob.h"
#include "shmdict/store.h"
#include "segments/crash.h"
#include "segments/err.h"
#include "segments/lockwait.h"
#include "segments/os.h"
#include "containers/hash_int.h"

#define KV_ROOT_NAME "shmdict.kv"
#define KV_ROOT_MAGIC 0x31306b76646d6873ull /* "shmdkv01" */
#define KV_DB_MAGIC 0x31306264646d6873ull   /* "shmddb01" */
#define KV_STRIPE_SEED 0x6b7673747269ull
#define KV_VER_MAGIC 0x31307276646d6873ull  /* "shmdvr01" */
#define KV_VER_SEED 0x6b7676657273ull

typedef struct kv_root_s {
  uint64_t magic;
  shmd_lock_t lock;
  shmd_ptr_t db[KV_NDB];
} kv_root_t;

/* The expiry clock: absolute Unix milliseconds, read through the OS boundary; 0 (nothing has
 * expired, and no relative time is used) while this thread replays a change log or writes a base
 * (shmd__kv_clock_freeze: Redis does not expire keys while it loads an AOF either). */
static __thread int kv_clock_frozen;
void shmd__kv_clock_freeze(int on) { kv_clock_frozen = on; }
uint64_t kv_now_ms(void) { return kv_clock_frozen ? 0 : shmd__os_unix_ms(); }

unsigned kv_stripe_of(const void *key, size_t len) {
  return (unsigned)(shmd_hash_bytes(key, len, KV_STRIPE_SEED) % KV_STRIPES);
}

/* Per-thread cache of the keyspace root of the last stores used: shmd_root_get() takes the store's
 * roots lock, which every command would otherwise serialise on. Keyed by shmd_store_id(), which is
 * never reused within a process (a handle address or a mapping address can be, after a close and
 * a new open); a hit is validated by the root's magic word (kv_root_view), and the root block of a
 * store never moves or goes away. */
#define KV_ROOT_CACHE 4
static __thread struct {
  uint64_t id;
  shmd_ptr_t root;
  kv_root_t *addr; /* the root's address once a lock-free read resolved it (kv_peek), or NULL */
} kv_root_cache[KV_ROOT_CACHE];
static __thread unsigned kv_root_cache_next;

/* The keyspace root, created on first use. */
static int kv_root(shmd_store_t *s, shmd_ptr_t *out) {
  uint64_t id = shmd_store_id(s);
  for (unsigned i = 0; i < KV_ROOT_CACHE; i++)
    if (kv_root_cache[i].id == id) {
      *out = kv_root_cache[i].root;
      return 0;
    }
  int rc = shmd_root_get(s, KV_ROOT_NAME, out);
  if (rc == 0) {
    unsigned i = kv_root_cache_next++ % KV_ROOT_CACHE;
    kv_root_cache[i].id = id;
    kv_root_cache[i].root = *out;
    kv_root_cache[i].addr = NULL;
    return 0;
  }
  /* Created in a transaction (joining the caller's, if any): a process killed between the
   * allocation and the publication has its reservation freed by recovery, so nothing leaks. */
  shmd_tx_t *tx;
  if ((rc = shmd_tx_begin(s, &tx)))
    return rc;
  shmd_ptr_t p;
  if ((rc = shmd_tx_calloc(tx, sizeof(kv_root_t), &p))) {
    shmd_tx_abort(tx);
    return rc;
  }
  kv_root_t *r = shmd_resolve(s, p);
  r->magic = KV_ROOT_MAGIC;
  shmd_lock_init(&r->lock);
  SHMD_CRASH_POINT("kv.root.allocated");
  shmd_ptr_t existing;
  rc = shmd_root_set_nx(s, KV_ROOT_NAME, p, &existing);
  if (rc == SHMD_EEXIST) { /* another process won the race: use its root, free ours */
    if ((rc = shmd_tx_free(tx, p))) {
      shmd_tx_abort(tx);
      return rc;
    }
    if ((rc = shmd_tx_commit(tx)) == 0)
      *out = existing;
    return rc;
  }
  if (rc) {
    shmd_tx_abort(tx);
    return rc;
  }
  if ((rc = shmd_tx_commit(tx)))
    return rc;
  *out = p;
  return 0;
}

static int kv_root_view(shmd_store_t *s, shmd_ptr_t rp, kv_root_t **out) {
  void *a;
  if ((rp.v & 7) || shmd_resolve_checked(s, rp, sizeof(kv_root_t), &a)) /* blocks are 16-aligned */
    return SHMD_ECORRUPT;
  kv_root_t *r = a;
  if (r->magic != KV_ROOT_MAGIC)
    return SHMD_ECORRUPT;
  *out = r;
  return 0;
}

int kv_db_view(shmd_store_t *s, shmd_ptr_t dp, kv_db_t **out) {
  void *a;
  if ((dp.v & 7) || shmd_resolve_checked(s, dp, sizeof(kv_db_t), &a))
    return SHMD_ECORRUPT;
  kv_db_t *d = a;
  if (d->magic != KV_DB_MAGIC)
    return SHMD_ECORRUPT;
  *out = d;
  return 0;
}

/* Allocates a database's WATCH versions in tx: the directory and one zeroed block per stripe. */
static int kv_ver_alloc(shmd_tx_t *tx, shmd_ptr_t *out) {
  shmd_store_t *s = shmd_tx_store(tx);
  shmd_ptr_t vp;
  int rc = shmd_tx_calloc(tx, sizeof(kv_ver_t), &vp);
  if (rc)
    return rc;
  kv_ver_t *v = shmd_resolve(s, vp);
  v->magic = KV_VER_MAGIC;
  for (unsigned i = 0; i < KV_STRIPES; i++) {
    if ((rc = shmd_tx_calloc(tx, sizeof(kv_ver_stripe_t), &v->stripe[i])))
      return rc;
    ((kv_ver_stripe_t *)shmd_resolve(s, v->stripe[i]))->magic = KV_VER_MAGIC;
  }
  *out = vp;
  return 0;
}

/* Looks database `dbi` up (creating it when `create`) inside the open transaction `tx`. Returns
 * SHMD_ENOTFOUND when it does not exist and !create. */
int kv_db_get(shmd_tx_t *tx, unsigned dbi, int create, shmd_ptr_t *out) {
  shmd_store_t *s = shmd_tx_store(tx);
  if (dbi >= KV_NDB)
    return SHMD_EINVAL;
  shmd_ptr_t rp;
  kv_root_t *r;
  int rc = kv_root(s, &rp);
  if (rc)
    return rc;
  if ((rc = kv_root_view(s, rp, &r)))
    return rc;
  shmd_ptr_t dp = {__atomic_load_n(&r->db[dbi].v, __ATOMIC_ACQUIRE)};
  if (dp.v) {
    *out = dp;
    return 0;
  }
  if (!create)
    return SHMD_ENOTFOUND;
  /* Create under the root lock (first in the lock order; the caller holds no stripe yet). */
  if ((rc = shmd_tx_lock(tx, shmd_ptr_add(rp, offsetof(kv_root_t, lock)))))
    return rc;
  if (r->db[dbi].v) {
    *out = r->db[dbi];
    return 0;
  }
  if ((rc = shmd_tx_calloc(tx, sizeof(kv_db_t), &dp)))
    return rc;
  kv_db_t *d = shmd_resolve(s, dp);
  d->magic = KV_DB_MAGIC;
  if ((rc = shmd_list_create(s, &d->garbage)))
    return rc;
  for (unsigned i = 0; i < KV_STRIPES; i++)
    if ((rc = shmd_hash_create(s, 0, &d->stripe[i])))
      return rc;
  if ((rc = shmd_tx_set64(tx, &r->db[dbi].v, dp.v)))
    return rc;
  *out = dp;
  return 0;
}

int kv_lock_stripes(kv_ctx_t *c, unsigned mask) {
  for (unsigned i = 0; i < KV_STRIPES; i++) {
    if (!(mask & (1u << i)) || (c->locked & (1u << i)))
      continue;
    int rc = shmd_tx_lock(c->tx, shmd_ptr_add(c->dbp, offsetof(kv_db_t, stripe_lock) + i * sizeof(shmd_lock_t)));
    if (rc)
      return rc;
    c->locked |= 1u << i;
  }
  return shmd__aof_recheck(c); /* persistence turned on meanwhile: SHMD_EBUSY, run again */
}

/* Finds database dbi, creating it first in a transaction of its own: others read the database
 * pointer without a lock, so it must never point to a database whose creation could still roll
 * back with a failing command. (Inside a caller's open transaction the creation joins it; if that
 * transaction aborts, the database is gone again: do not create databases inside transactions that
 * may abort while other threads use the store.) */
int kv_db_ensure(shmd_store_t *s, unsigned dbi, shmd_ptr_t *out) {
  shmd_ptr_t rp;
  kv_root_t *r;
  int rc = kv_root(s, &rp);
  if (rc || (rc = kv_root_view(s, rp, &r)))
    return rc;
  out->v = __atomic_load_n(&r->db[dbi].v, __ATOMIC_ACQUIRE);
  if (out->v)
    return 0;
  shmd_tx_t *tx;
  if ((rc = shmd_tx_begin(s, &tx)))
    return rc;
  if ((rc = kv_db_get(tx, dbi, 1, out))) {
    shmd_tx_abort(tx);
    return rc;
  }
  return shmd_tx_commit(tx);
}

/* Gives a database its version block on the first WATCH of one of its keys (a store nobody
 * WATCHes pays nothing, and databases made before versions existed get theirs the same way): in a
 * transaction of its own that holds every stripe lock of the database, so a command (which reads
 * the pointer only under a stripe lock) sees either no block or a committed one; from then on every
 * write bumps its key's counter. Not inside a caller's transaction (it could hold locks later in
 * the order, or roll the block back): SHMD_EINVAL there. */
static int kv_ver_ensure(shmd_store_t *s, unsigned dbi, shmd_ptr_t dp, kv_db_t *d) {
  if (__atomic_load_n(&d->versions.v, __ATOMIC_ACQUIRE))
    return 0;
  if (shmd_tx_depth(s) > 0) {
    shmd__set_detail("kv: the first WATCH on database %u cannot run inside an open transaction", dbi);
    return SHMD_EINVAL;
  }
  kv_ctx_t c;
  memset(&c, 0, sizeof c);
  c.s = s;
  c.dbi = dbi;
  c.dbp = dp;
  c.db = d;
  int rc = shmd_tx_begin(s, &c.tx);
  if (rc)
    return rc;
  if ((rc = kv_lock_stripes(&c, (1u << KV_STRIPES) - 1)) == 0 && d->versions.v == 0) {
    shmd_ptr_t vp;
    if ((rc = kv_ver_alloc(c.tx, &vp)) == 0)
      rc = shmd_tx_set64(c.tx, &d->versions.v, vp.v);
  }
  if (rc) {
    shmd_tx_abort(c.tx);
    return rc;
  }
  return shmd_tx_commit(c.tx);
}

int kv_db_exists(shmd_store_t *s, unsigned dbi) {
  shmd_ptr_t rp;
  kv_root_t *r;
  if (dbi >= KV_NDB)
    return SHMD_EINVAL;
  int rc = kv_root(s, &rp);
  if (rc || (rc = kv_root_view(s, rp, &r)))
    return rc;
  return __atomic_load_n(&r->db[dbi].v, __ATOMIC_ACQUIRE) != 0;
}

int kv_db_prepare(shmd_store_t *s, unsigned dbi, int versions) {
  shmd_ptr_t dp;
  kv_db_t *d;
  if (dbi >= KV_NDB)
    return SHMD_EINVAL;
  int rc = kv_db_ensure(s, dbi, &dp);
  if (rc || (rc = kv_db_view(s, dp, &d)))
    return rc;
  return versions ? kv_ver_ensure(s, dbi, dp, d) : 0;
}

int kv_ctx_join(shmd_store_t *s, unsigned dbi, shmd_tx_t *tx, kv_ctx_t *c) {
  memset(c, 0, sizeof *c);
  c->s = s;
  c->dbi = dbi;
  c->now = kv_now_ms();
  c->tx = tx;
  if (dbi >= KV_NDB)
    return SHMD_EINVAL;
  int rc = kv_db_ensure(s, dbi, &c->dbp);
  if (rc || (rc = kv_db_view(s, c->dbp, &c->db)))
    return rc;
  return shmd__aof_enter(c);
}

int kv_begin(shmd_store_t *s, unsigned dbi, kv_ctx_t *c) {
  memset(c, 0, sizeof *c);
  c->s = s;
  c->dbi = dbi;
  c->now = kv_now_ms();
  if (dbi >= KV_NDB)
    return SHMD_EINVAL;
  int rc = kv_db_ensure(s, dbi, &c->dbp);
  if (rc || (rc = kv_db_view(s, c->dbp, &c->db)))
    return rc;
  if ((rc = shmd_tx_begin(s, &c->tx)))
    return rc;
  if ((rc = shmd__aof_enter(c)))
    shmd_tx_abort(c->tx);
  return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* Key versions (WATCH)
 *
 * WATCH must see a change to a key made by any process, and a crash must not leave a version
 * that disagrees with the data. Each database has per stripe one block of KV_VER_SLOTS (511)
 * 64-bit counters (kv_ver_stripe_t, 4 KiB, under a directory kv_ver_t). A key's counter is
 * slot[h % 511] of its stripe's block, h a second hash of its bytes, so the stripe lock (which
 * every command on the key holds) guards it. The blocks are made on the database's first WATCH
 * (kv_ver_ensure): before, nobody watches, so nothing needs bumping. From then on every change to a
 * key bumps its counter through shmd_tx_set64(), in the transaction that makes the change: a
 * rollback (abort, or recovery after a kill) restores the counter with the data, so a counter
 * moves exactly when a committed change did. FLUSHDB bumps the database's epoch instead (it holds
 * every stripe lock). WATCH notes (counter, epoch); EXEC, holding the stripe locks, compares.
 * Keys that share a counter (1 in 511 of the other keys of the stripe, 1 in 4088 of the
 * database's) make EXEC abort without need: optimistic locking allows that, and it is rare. */

static int kv_ver_view(shmd_store_t *s, shmd_ptr_t vp, kv_ver_t **out) {
  void *a;
  if ((vp.v & 7) || shmd_resolve_checked(s, vp, sizeof(kv_ver_t), &a) || ((kv_ver_t *)a)->magic != KV_VER_MAGIC)
    return SHMD_ECORRUPT;
  *out = a;
  return 0;
}

static int kv_ver_stripe_view(shmd_store_t *s, shmd_ptr_t p, kv_ver_stripe_t **out) {
  void *a;
  if ((p.v & 7) || shmd_resolve_checked(s, p, sizeof(kv_ver_stripe_t), &a) ||
      ((kv_ver_stripe_t *)a)->magic != KV_VER_MAGIC)
    return SHMD_ECORRUPT;
  *out = a;
  return 0;
}

/* The directory, or NULL for a database made before versions (that has none yet). */
static int kv_ver_get(kv_ctx_t *c, kv_ver_t **out) {
  shmd_ptr_t vp = {__atomic_load_n(&c->db->versions.v, __ATOMIC_ACQUIRE)};
  *out = NULL;
  return vp.v ? kv_ver_view(c->s, vp, out) : 0;
}

/* Key's counter (NULL when the database has no versions yet). */
static int kv_ver_word(kv_ctx_t *c, const void *key, size_t len, kv_ver_t **dir, uint64_t **w) {
  kv_ver_stripe_t *vs;
  *w = NULL;
  int rc = kv_ver_get(c, dir);
  if (rc || *dir == NULL)
    return rc;
  if ((rc = kv_ver_stripe_view(c->s, (*dir)->stripe[kv_stripe_of(key, len)], &vs)))
    return rc;
  *w = &vs->slot[shmd_hash_bytes(key, len, KV_VER_SEED) % KV_VER_SLOTS];
  return 0;
}

int kv_touch(kv_ctx_t *c, const void *key, size_t len) {
  kv_ver_t *v;
  uint64_t *w;
  int rc = kv_ver_word(c, key, len, &v, &w);
  if (rc || w == NULL)
    return rc;
  return shmd_tx_set64(c->tx, w, *w + 1);
}

int kv_touch_all(kv_ctx_t *c) {
  kv_ver_t *v;
  int rc = kv_ver_get(c, &v);
  if (rc || v == NULL)
    return rc;
  return shmd_tx_set64(c->tx, &v->epoch, v->epoch + 1);
}

int kv_version(kv_ctx_t *c, const void *key, size_t len, uint64_t out[2]) {
  kv_ver_t *v;
  uint64_t *w;
  out[0] = out[1] = 0;
  int rc = kv_ver_word(c, key, len, &v, &w);
  if (rc || w == NULL)
    return rc;
  out[0] = *w;
  out[1] = v->epoch;
  return 0;
}

int kv_peek_expired(kv_ctx_t *c, const void *key, size_t len) {
  shmd_hash_ref_t hr;
  int rc = shmd_hash_get_ref(c->s, kv_stripe_hash(c, key, len), key, len, &hr);
  if (rc == SHMD_ENOTFOUND)
    return 0;
  if (rc)
    return rc;
  if (hr.val_len < sizeof(kv_rec_t))
    return SHMD_ECORRUPT;
  kv_rec_t r;
  memcpy(&r, hr.val, sizeof r);
  return r.expire && r.expire <= c->now;
}

int kv_end(kv_ctx_t *c, int rc) {
  if (rc) {
    shmd_tx_abort(c->tx);
    return rc;
  }
  SHMD_CRASH_POINT("kv.command.commit");
  rc = shmd_tx_commit(c->tx);
  if (rc == 0 && c->garbage && shmd_tx_depth(c->s) == 0)
    (void)shmd_kv_drain(c->s, c->dbi, c->drain_budget);
  if (rc == 0 && c->aof && shmd_tx_depth(c->s) == 0)
    rc = shmd__aof_after_commit(c->s); /* policy always: wait for the fsync of the record */
  return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* Lock-free reads
 *
 * A GET outside a transaction takes no transaction, no lock and allocates nothing: it finds the
 * database through the thread's caches, reads the stripe hash pointer, and asks the hash for the
 * key with its optimistic reader (shmd__hash_peek, containers/hash_int.h: validated against the
 * hash's write_seq and lock word, so a record being written, an entry being unlinked or a bucket
 * being moved is never handed out half-made). The record (type, expiry, the string bytes) arrives
 * copied into the caller's buffer, so the type and expiry checks read words already in cache.
 *   What the hash cannot see is its own replacement: FLUSHDB swaps a stripe's hash for a fresh one
 * under the stripe lock (which this reader does not take), and the old one is drained and freed
 * after the commit; a block freed and reused as another hash would validate. So the reader also
 * reads the stripe's lock word (which must be free), the database's flush_seq (which FLUSHDB
 * bumps, release, before its first swap) and the stripe pointer before the lookup and checks all
 * three again after it (acquire fence). A FLUSHDB that began meanwhile changes flush_seq (so a
 * freed and reused block at the same address cannot pass); one still at work holds the stripe
 * lock (so the reader never answers from a fresh hash whose swap could still roll back: the
 * rollback, a crashed writer's recovery included, restores the pointer before the lock is free);
 * one whose swap the reader did not see has not committed, so the old hash is still whole (it is
 * drained only after the commit, and draining bumps its write_seq). A few failed validations, a held lock, an expired
 * key (lazy expiry must delete it, in a transaction), a value bigger than an inline one, or
 * anything that does not add up send the caller to its transactional path, which holds the
 * stripe lock and reports damage. Inside a transaction reads always take that path (two-phase
 * locking: a read-then-write in one transaction stays atomic). */

#define KV_PEEK_TRIES 4u

/* The database pointer of the last (store, database) this thread peeked at: one word of the
 * root compared per call instead of a checked resolve of the database block. */
static __thread struct {
  uint64_t store_id;
  unsigned dbi;
  uint64_t dp;
  kv_db_t *d;
} kv_peek_db;

/* The database for a peek, or NULL (the transactional path creates or checks it). */
static kv_db_t *peek_db(shmd_store_t *s, unsigned dbi) {
  uint64_t id = shmd_store_id(s);
  kv_root_t *r = NULL;
  for (unsigned i = 0; i < KV_ROOT_CACHE; i++)
    if (kv_root_cache[i].id == id) {
      if ((r = kv_root_cache[i].addr) == NULL && kv_root_view(s, kv_root_cache[i].root, &r) == 0)
        kv_root_cache[i].addr = r;
      break;
    }
  if (r == NULL || __atomic_load_n(&r->magic, __ATOMIC_RELAXED) != KV_ROOT_MAGIC)
    return NULL;
  uint64_t dp = __atomic_load_n(&r->db[dbi].v, __ATOMIC_ACQUIRE);
  if (dp == 0)
    return NULL;
  if (kv_peek_db.store_id == id && kv_peek_db.dbi == dbi && kv_peek_db.dp == dp)
    return kv_peek_db.d;
  kv_db_t *d;
  if (kv_db_view(s, (shmd_ptr_t){dp}, &d))
    return NULL;
  kv_peek_db.store_id = id;
  kv_peek_db.dbi = dbi;
  kv_peek_db.dp = dp;
  kv_peek_db.d = d;
  return d;
}

int kv_peek(shmd_store_t *s, unsigned dbi, const void *key, size_t len, unsigned char *buf, size_t *vlen) {
  if (dbi >= KV_NDB || shmd_tx_depth(s) != 0)
    return KV_PEEK_LOCKED;
  kv_db_t *d = peek_db(s, dbi);
  if (d == NULL || __atomic_load_n(&d->magic, __ATOMIC_RELAXED) != KV_DB_MAGIC)
    return KV_PEEK_LOCKED;
  unsigned st = kv_stripe_of(key, len);
  uint32_t *lock = &d->stripe_lock[st].word;
  for (unsigned attempt = 0; attempt < KV_PEEK_TRIES; attempt++) {
    if (__atomic_load_n(lock, __ATOMIC_ACQUIRE) != 0)
      return KV_PEEK_LOCKED; /* a command holds the stripe: wait for it on the lock */
    uint64_t fs = __atomic_load_n(&d->flush_seq, __ATOMIC_ACQUIRE);
    shmd_ptr_t h = {__atomic_load_n(&d->stripe[st].v, __ATOMIC_ACQUIRE)};
    int r = shmd__hash_peek(s, h, key, len, buf, vlen);
    __atomic_thread_fence(__ATOMIC_ACQUIRE); /* the lookup's reads before the checks below */
    if (__atomic_load_n(lock, __ATOMIC_RELAXED) != 0 || __atomic_load_n(&d->stripe[st].v, __ATOMIC_RELAXED) != h.v ||
        __atomic_load_n(&d->flush_seq, __ATOMIC_RELAXED) != fs)
      continue; /* a command (FLUSHDB?) at work on the stripe: look again */
    if (r <= 0)
      return r < 0 ? KV_PEEK_LOCKED : KV_PEEK_ABSENT;
    kv_rec_t rec;
    if (*vlen < sizeof rec)
      return KV_PEEK_LOCKED;
    memcpy(&rec, buf, sizeof rec);
    if (rec.type < KV_STRING || rec.type > KV_ZSET || (rec.type != KV_STRING && *vlen != sizeof rec + 16))
      return KV_PEEK_LOCKED; /* damage: the transactional path reports it */
    if (rec.expire && rec.expire <= kv_now_ms())
      return KV_PEEK_LOCKED; /* lazy expiry deletes it, in a transaction */
    return KV_PEEK_FOUND;
  }
  return KV_PEEK_LOCKED;
}

/* ---------------------------------------------------------------------------------------------- */
/* Records */

shmd_ptr_t kv_stripe_hash(kv_ctx_t *c, const void *key, size_t len) {
  return c->db->stripe[kv_stripe_of(key, len)];
}

static int kv_garbage_push(kv_ctx_t *c, uint32_t type, shmd_ptr_t a, shmd_ptr_t b) {
  kv_garbage_t g = {type, 0, a, b};
  c->garbage = 1;
  return shmd_list_push(c->s, c->db->garbage, SHMD_LIST_TAIL, &g, sizeof g, NULL);
}

/* ---------------------------------------------------------------------------------------------- */
/* Shared values (COPY)
 *
 * COPY of a list, set, hash or sorted set is O(1): the containers are not copied but shared, as
 * Qt's implicitly shared classes share their data. A shared value's containers hang off a
 * kv_share_t {magic, refs, type, a, b}; each record naming it has KV_REC_SHARED in its flags and
 * the block's pointer as its first container pointer. kv_lookup() reads through the block, so
 * readers see a shared value as any other. The first write to a shared value detaches it
 * (shmd__kv_detach, copy.c): with other records left, the writer's key gets containers of its
 * own (an element-by-element copy, O(n), in the write's transaction) and the count drops by one;
 * as the last record it takes the block's containers back and frees the block (O(1)). Deleting
 * a record (DEL, overwrite, expiry, FLUSHDB's drain) drops one count; the last one hands the
 * containers to the garbage list and frees the block. Every change (the count, the flags, the
 * block) is made with shmd_tx_set64 / shmd_tx_log / shmd_tx_calloc / shmd_tx_free in the
 * command's transaction: a kill anywhere leaves the count equal to the records naming the block,
 * which shmd_kv_check() verifies (kv_walk counts the references of every block over every
 * database: COPY ... DB n shares across databases). */
#define KV_SHARE_MAGIC 0x31306873646d6873ull /* "shmdsh01" */

int kv_share_view(shmd_store_t *s, shmd_ptr_t p, uint32_t type, kv_share_t **out) {
  void *a;
  if ((p.v & 7) || shmd_resolve_checked(s, p, sizeof(kv_share_t), &a))
    return SHMD_ECORRUPT;
  kv_share_t *sh = a;
  if (sh->magic != KV_SHARE_MAGIC || sh->type != type || sh->refs == 0 || !sh->a.v ||
      (type == KV_ZSET) != (sh->b.v != 0)) {
    shmd__set_detail("kv: bad shared value block (magic, type %u, count %llu)", (unsigned)type,
                     (unsigned long long)sh->refs);
    return SHMD_ECORRUPT;
  }
  *out = sh;
  return 0;
}

/* Drops one reference to share (in tx): the last one hands the containers to the garbage list
 * `garbage` and frees the block. */
static int kv_share_drop(shmd_store_t *s, shmd_tx_t *tx, shmd_ptr_t garbage, shmd_ptr_t share, uint32_t type,
                         int *pushed) {
  kv_share_t *sh;
  int rc = kv_share_view(s, share, type, &sh);
  if (rc)
    return rc;
  if (sh->refs > 1)
    return shmd_tx_set64(tx, &sh->refs, sh->refs - 1);
  kv_garbage_t g = {type, 0, sh->a, sh->b};
  SHMD_CRASH_POINT("kv.share.last");
  if ((rc = shmd_list_push(s, garbage, SHMD_LIST_TAIL, &g, sizeof g, NULL)))
    return rc;
  *pushed = 1;
  return shmd_tx_free(tx, share);
}

int kv_share_make(kv_ctx_t *c, kv_ref_t *ref, shmd_ptr_t *share) {
  shmd_ptr_t p;
  int rc = shmd_tx_calloc(c->tx, sizeof(kv_share_t), &p);
  if (rc)
    return rc;
  kv_share_t *sh = shmd_resolve(c->s, p);
  sh->magic = KV_SHARE_MAGIC;
  sh->refs = 1;
  sh->type = ref->rec->type;
  sh->a = ref->a;
  sh->b = ref->b;
  SHMD_CRASH_POINT("kv.share.made");
  if ((rc = shmd_tx_log(c->tx, ref->rec_ptr, sizeof(kv_rec_t) + 16)))
    return rc;
  shmd_ptr_t *q = (shmd_ptr_t *)(void *)(ref->rec + 1);
  ref->rec->pad |= KV_REC_SHARED;
  q[0] = p;
  q[1] = shmd_ptr_null();
  ref->share = p;
  *share = p;
  return 0;
}

int kv_share_put(kv_ctx_t *c, const void *key, size_t klen, uint32_t type, shmd_ptr_t share, uint64_t expire) {
  kv_share_t *sh;
  int rc = kv_share_view(c->s, share, type, &sh);
  if (rc || (rc = shmd_tx_set64(c->tx, &sh->refs, sh->refs + 1)))
    return rc;
  SHMD_CRASH_POINT("kv.share.counted");
  shmd_hash_ref_t hr;
  if ((rc = shmd_hash_put_ref(c->s, kv_stripe_hash(c, key, klen), key, klen, sizeof(kv_rec_t) + 16,
                              SHMD_HASH_INSERT, NULL, &hr)))
    return rc;
  kv_rec_t *r = hr.val;
  r->type = type;
  r->pad = KV_REC_SHARED;
  r->expire = expire;
  shmd_ptr_t *q = (shmd_ptr_t *)(void *)(r + 1);
  q[0] = share;
  q[1] = shmd_ptr_null();
  return 0;
}

int kv_unlink_record(kv_ctx_t *c, const void *key, size_t klen) {
  return shmd_hash_del(c->s, kv_stripe_hash(c, key, klen), key, klen);
}

/* Hands the containers of a record to the garbage list (a shared value: drops a reference). */
static int kv_rec_release(kv_ctx_t *c, const kv_rec_t *r, size_t len) {
  if (r->type == KV_STRING || len < sizeof(kv_rec_t) + 16)
    return 0;
  const shmd_ptr_t *p = (const shmd_ptr_t *)(const void *)(r + 1);
  if (r->pad & KV_REC_SHARED)
    return kv_share_drop(c->s, c->tx, c->db->garbage, p[0], r->type, &c->garbage);
  return kv_garbage_push(c, r->type, p[0], p[1]);
}

int kv_lookup(kv_ctx_t *c, const void *key, size_t len, kv_ref_t *ref) {
  shmd_ptr_t h = kv_stripe_hash(c, key, len);
  shmd_hash_ref_t hr;
  int rc = shmd_hash_get_ref(c->s, h, key, len, &hr);
  if (rc)
    return rc;
  if (hr.val_len < sizeof(kv_rec_t))
    return SHMD_ECORRUPT;
  kv_rec_t *r = hr.val;
  if (r->type < KV_STRING || r->type > KV_ZSET || (r->type != KV_STRING && hr.val_len != sizeof(kv_rec_t) + 16))
    return SHMD_ECORRUPT;
  if (r->expire && r->expire <= c->now) {
    if ((rc = kv_rec_release(c, r, hr.val_len)) || (rc = shmd_hash_del(c->s, h, key, len)) ||
        (rc = kv_touch(c, key, len)) || (rc = shmd__aof_expired(c, key, len)))
      return rc;
    return SHMD_ENOTFOUND;
  }
  ref->rec = r;
  ref->rec_ptr = hr.val_ptr;
  ref->data = (unsigned char *)(r + 1);
  ref->len = hr.val_len - sizeof(kv_rec_t);
  ref->a = r->type == KV_STRING ? shmd_ptr_null() : ((shmd_ptr_t *)(void *)(r + 1))[0];
  ref->b = r->type == KV_STRING ? shmd_ptr_null() : ((shmd_ptr_t *)(void *)(r + 1))[1];
  ref->share = shmd_ptr_null();
  if (r->type != KV_STRING && (r->pad & KV_REC_SHARED)) { /* read through the shared block */
    kv_share_t *sh;
    if ((rc = kv_share_view(c->s, ref->a, r->type, &sh)))
      return rc;
    ref->share = ref->a;
    ref->a = sh->a;
    ref->b = sh->b;
  }
  return 0;
}

int kv_lookup_type(kv_ctx_t *c, const void *key, size_t len, uint32_t type, kv_ref_t *ref) {
  int rc = kv_lookup(c, key, len, ref);
  if (rc)
    return rc;
  return ref->rec->type == type ? 0 : SHMD_EWRONGTYPE;
}

int kv_delete(kv_ctx_t *c, const void *key, size_t len) {
  kv_ref_t ref;
  int rc = kv_lookup(c, key, len, &ref);
  if (rc)
    return rc;
  if ((rc = kv_rec_release(c, ref.rec, ref.len + sizeof(kv_rec_t))))
    return rc;
  return shmd_hash_del(c->s, kv_stripe_hash(c, key, len), key, len);
}

int kv_put_string(kv_ctx_t *c, const void *key, size_t klen, const void *v1, size_t l1,
                  const void *v2, size_t l2, uint64_t expire) {
  /* No string is longer than Redis's proto-max-bulk-len (every path that builds one checks it
   * first with Redis's wording; this is the backstop, and the typed shmd_kv_set()'s check). */
  if (l1 > KV_STRING_MAX || l2 > KV_STRING_MAX - l1)
    return SHMD_ETOOBIG;
  /* v1 and v2 may point into the old record: copy them out before it is replaced. */
  unsigned char small[256];
  unsigned char *tmp = small;
  size_t n = l1 + l2;
  if (n > sizeof small && (tmp = malloc(n)) == NULL)
    return SHMD_ENOMEM;
  if (l1)
    memcpy(tmp, v1, l1);
  if (l2)
    memcpy(tmp + l1, v2, l2);
  kv_ref_t old;
  int rc = kv_lookup(c, key, klen, &old);
  if (rc == 0)
    rc = kv_rec_release(c, old.rec, old.len + sizeof(kv_rec_t));
  else if (rc == SHMD_ENOTFOUND)
    rc = 0;
  shmd_hash_ref_t hr;
  if (rc == 0)
    rc = shmd_hash_put_ref(c->s, kv_stripe_hash(c, key, klen), key, klen, sizeof(kv_rec_t) + n,
                           SHMD_HASH_UPSERT, NULL, &hr);
  if (rc == 0) {
    kv_rec_t *r = hr.val;
    r->type = KV_STRING;
    r->pad = 0;
    r->expire = expire;
    if (n)
      memcpy(r + 1, tmp, n);
  }
  if (tmp != small)
    free(tmp);
  return rc;
}

int kv_put_container(kv_ctx_t *c, const void *key, size_t klen, uint32_t type, shmd_ptr_t a,
                     shmd_ptr_t b, uint64_t expire) {
  shmd_hash_ref_t hr;
  int rc = shmd_hash_put_ref(c->s, kv_stripe_hash(c, key, klen), key, klen, sizeof(kv_rec_t) + 16,
                             SHMD_HASH_UPSERT, NULL, &hr);
  if (rc)
    return rc;
  kv_rec_t *r = hr.val;
  r->type = type;
  r->pad = 0;
  r->expire = expire;
  shmd_ptr_t *p = (shmd_ptr_t *)(void *)(r + 1);
  p[0] = a;
  p[1] = b;
  return 0;
}

int kv_set_expire(kv_ctx_t *c, kv_ref_t *ref, uint64_t expire) {
  int rc = shmd_tx_log(c->tx, shmd_ptr_add(ref->rec_ptr, offsetof(kv_rec_t, expire)), 8);
  if (rc)
    return rc;
  ref->rec->expire = expire;
  return 0;
}

/* Gets the container of `type` at key, creating an empty one when absent (create != 0). */
int kv_container(kv_ctx_t *c, const void *key, size_t klen, uint32_t type, int create,
                 kv_ref_t *ref) {
  int rc = kv_lookup_type(c, key, klen, type, ref);
  if (rc == 0 && create && ref->share.v) { /* a write that did not detach first: a bug, caught */
    shmd__set_detail("kv: a write reached a shared value without detaching it");
    return SHMD_ECORRUPT;
  }
  if (rc != SHMD_ENOTFOUND || !create)
    return rc;
  shmd_ptr_t a = shmd_ptr_null(), b = shmd_ptr_null();
  if (type == KV_LIST)
    rc = shmd_list_create(c->s, &a);
  else
    rc = shmd_hash_create(c->s, 0, &a);
  if (rc == 0 && type == KV_ZSET)
    rc = kv_ztree_create(c->s, &b);
  if (rc == 0)
    rc = kv_put_container(c, key, klen, type, a, b, 0);
  if (rc == 0)
    rc = kv_lookup(c, key, klen, ref);
  return rc;
}

/* Deletes key when its container became empty. The container is destroyed right here (it is
 * empty, so that is a few frees). */
int kv_drop_if_empty(kv_ctx_t *c, const void *key, size_t klen, kv_ref_t *ref) {
  uint64_t n = 0;
  if (ref->share.v) { /* only a write empties a container, and writes detach first */
    shmd__set_detail("kv: a write reached a shared value without detaching it");
    return SHMD_ECORRUPT;
  }
  int rc = ref->rec->type == KV_LIST ? shmd_list_len(c->s, ref->a, &n) : shmd_hash_len(c->s, ref->a, &n);
  if (rc || n)
    return rc;
  shmd_ptr_t a = ref->a, b = ref->b;
  uint32_t type = ref->rec->type;
  if ((rc = shmd_hash_del(c->s, kv_stripe_hash(c, key, klen), key, klen)))
    return rc;
  if (type == KV_LIST)
    return shmd_list_destroy(c->s, a);
  if ((rc = shmd_hash_destroy(c->s, a)))
    return rc;
  return b.v ? kv_ztree_destroy(c->s, b) : 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Garbage */

typedef struct keys_s {
  char **k;
  size_t *l;
  char **v;
  size_t *vl;
  size_t n, cap;
  size_t bytes; /* key bytes copied */
  int with_vals;
} keys_t;

/* Key bytes one drain batch copies at most (beyond its first key): a batch of 32 keys of up to
 * 512 MiB each must not copy 16 GiB into the process. */
#define KV_DRAIN_BYTES ((size_t)16 << 20)

/* Copies a key (and, for a stripe hash, the value of a container record: the only values drain
 * needs; a string's bytes, up to 512 MiB, are never copied). Returns 1 to end the batch when the
 * copied keys reach KV_DRAIN_BYTES. */
static int keys_add(const void *key, size_t klen, const void *val, size_t vlen, void *arg) {
  keys_t *ks = arg;
  if (ks->n > 0 && klen > KV_DRAIN_BYTES - (ks->bytes < KV_DRAIN_BYTES ? ks->bytes : KV_DRAIN_BYTES))
    return 1;
  if (ks->n == ks->cap) {
    size_t cap = ks->cap ? ks->cap * 2 : 32;
    char **k = realloc(ks->k, cap * sizeof *k);
    if (k) ks->k = k;
    size_t *l = realloc(ks->l, cap * sizeof *l);
    if (l) ks->l = l;
    char **v = realloc(ks->v, cap * sizeof *v);
    if (v) ks->v = v;
    size_t *vl = realloc(ks->vl, cap * sizeof *vl);
    if (vl) ks->vl = vl;
    if (!k || !l || !v || !vl)
      return SHMD_ENOMEM;
    ks->cap = cap;
  }
  char *kc = malloc(klen + 1);
  char *vc = NULL;
  if (kc == NULL)
    return SHMD_ENOMEM;
  memcpy(kc, key, klen);
  kc[klen] = 0;
  if (ks->with_vals && vlen == sizeof(kv_rec_t) + 16) {
    if ((vc = malloc(vlen + 1)) == NULL) {
      free(kc);
      return SHMD_ENOMEM;
    }
    memcpy(vc, val, vlen);
    vc[vlen] = 0;
  }
  ks->k[ks->n] = kc;
  ks->l[ks->n] = klen;
  ks->v[ks->n] = vc;
  ks->vl[ks->n] = vlen;
  ks->n++;
  ks->bytes += klen;
  return 0;
}

static void keys_free(keys_t *ks) {
  for (size_t i = 0; i < ks->n; i++) {
    free(ks->k[i]);
    free(ks->v[i]);
  }
  free(ks->k);
  free(ks->l);
  free(ks->v);
  free(ks->vl);
  memset(ks, 0, sizeof *ks);
}

#define KV_DRAIN_BATCH 32

/* Removes up to a batch of entries of hash h (in tx). For a stripe hash, the records' containers
 * go to the garbage list first. Sets *empty when h has no entries left. */
static int drain_hash(shmd_store_t *s, shmd_tx_t *tx, shmd_ptr_t garbage, shmd_ptr_t h, int stripe, int *empty) {
  keys_t ks = {0};
  ks.with_vals = stripe;
  uint64_t cur = 0, n = 0;
  size_t deleted = 0;
  int rc = 0;
  for (int guard = 0; guard < 64 && ks.n == 0; guard++) {
    if ((rc = shmd_hash_scan(s, h, cur, KV_DRAIN_BATCH, keys_add, &ks, &cur)) == 1) {
      rc = 0; /* the batch is full of bytes (ks.n > 0): delete those, the next step goes on */
      break;
    }
    if (rc)
      goto out;
    if (cur == 0)
      break;
  }
  for (size_t i = 0; i < ks.n; i++) {
    if (stripe && ks.vl[i] == sizeof(kv_rec_t) + 16) {
      kv_rec_t *r = (kv_rec_t *)(void *)ks.v[i];
      if (r->type != KV_STRING && (r->pad & KV_REC_SHARED)) {
        shmd_ptr_t p[2];
        int pushed = 0;
        memcpy(p, r + 1, 16);
        if ((rc = kv_share_drop(s, tx, garbage, p[0], r->type, &pushed)))
          goto out;
      } else if (r->type != KV_STRING) {
        shmd_ptr_t p[2];
        memcpy(p, r + 1, 16);
        kv_garbage_t g = {r->type, 0, p[0], p[1]};
        if ((rc = shmd_list_push(s, garbage, SHMD_LIST_TAIL, &g, sizeof g, NULL)))
          goto out;
      }
    }
    if ((rc = shmd_hash_del(s, h, ks.k[i], ks.l[i])) && rc != SHMD_ENOTFOUND)
      goto out;
    deleted += rc == 0;
    rc = 0;
  }
  if ((rc = shmd_hash_len(s, h, &n)))
    goto out;
  /* No progress is damage (a count that disagrees with the entries, or entries the scan lists
   * but a lookup by key cannot find): draining would repeat this step for ever. Nobody else
   * changes a hash on the garbage list meanwhile (this transaction holds the list's lock). */
  if ((ks.n == 0 && cur == 0 && n != 0) || (ks.n != 0 && deleted == 0)) {
    shmd__set_detail("garbage hash with %llu entries cannot be drained: %s", (unsigned long long)n,
                     ks.n ? "listed entries are not found by key" : "a full scan finds none");
    rc = SHMD_ECORRUPT;
    goto out;
  }
  *empty = n == 0;
out:
  keys_free(&ks);
  return rc;
}

/* One drain step on database dbi. Returns 1 if there was something to do, 0 if the garbage list
 * is empty, or a negative status. */
static int drain_step(shmd_store_t *s, shmd_ptr_t dp) {
  kv_db_t *d;
  int rc = kv_db_view(s, dp, &d);
  if (rc)
    return rc;
  shmd_tx_t *tx;
  if ((rc = shmd_tx_begin(s, &tx)))
    return rc;
  kv_garbage_t g;
  size_t len = 0;
  rc = shmd_list_index(s, d->garbage, 0, &g, sizeof g, &len);
  if (rc == SHMD_ENOTFOUND) {
    shmd_tx_commit(tx);
    return 0;
  }
  if (rc == 0 && len != sizeof g)
    rc = SHMD_ECORRUPT;
  if (rc)
    goto fail;
  int done = 0, empty = 0;
  switch (g.type) {
  case KV_HASH:
  case KV_SET:
  case KV_STRIPE:
    if ((rc = drain_hash(s, tx, d->garbage, g.a, g.type == KV_STRIPE, &empty)))
      goto fail;
    if (empty) {
      if ((rc = shmd_hash_destroy(s, g.a)))
        goto fail;
      done = 1;
    }
    break;
  case KV_ZSET:
    if (g.b.v) {
      uint64_t rem = 1;
      if ((rc = kv_ztree_destroy_step(s, g.b, KV_DRAIN_BATCH, &rem)))
        goto fail;
      if (rem == 0) {
        g.b = shmd_ptr_null();
        if ((rc = shmd_list_set(s, d->garbage, 0, &g, sizeof g)))
          goto fail;
      }
    } else {
      if ((rc = drain_hash(s, tx, d->garbage, g.a, 0, &empty)))
        goto fail;
      if (empty) {
        if ((rc = shmd_hash_destroy(s, g.a)))
          goto fail;
        done = 1;
      }
    }
    break;
  case KV_LIST: {
    uint64_t n = 0;
    if ((rc = shmd_list_len(s, g.a, &n)))
      goto fail;
    if (n > KV_DRAIN_BATCH) {
      if ((rc = shmd_list_trim(s, g.a, KV_DRAIN_BATCH, -1)))
        goto fail;
    } else {
      if ((rc = shmd_list_destroy(s, g.a)))
        goto fail;
      done = 1;
    }
    break;
  }
  default:
    rc = SHMD_ECORRUPT;
    goto fail;
  }
  if (done && (rc = shmd_list_pop(s, d->garbage, SHMD_LIST_HEAD, NULL, 0, NULL)))
    goto fail;
  SHMD_CRASH_POINT("kv.drain.step");
  rc = shmd_tx_commit(tx);
  SHMD_CRASH_POINT("kv.drain.committed");
  return rc ? rc : 1;
fail:
  shmd_tx_abort(tx);
  return rc;
}

int shmd_kv_drain(shmd_store_t *s, unsigned db, size_t budget) {
  if (shmd_tx_depth(s) != 0)
    return SHMD_EINVAL;
  shmd_tx_t *tx;
  shmd_ptr_t dp;
  int rc = shmd_tx_begin(s, &tx);
  if (rc)
    return rc;
  rc = kv_db_get(tx, db, 0, &dp);
  shmd_tx_commit(tx);
  if (rc == SHMD_ENOTFOUND)
    return 0;
  if (rc)
    return rc;
  for (size_t i = 0; budget == 0 || i < budget; i++) {
    rc = drain_step(s, dp);
    if (rc <= 0)
      return rc;
  }
  return 1;
}

/* ---------------------------------------------------------------------------------------------- */
/* FLUSHDB, expiry step, check, info */

int kv_flushdb(kv_ctx_t *c) {
  int rc = kv_lock_stripes(c, (1u << KV_STRIPES) - 1);
  if (rc || (rc = kv_touch_all(c)))
    return rc;
  /* Tell the lock-free readers (see "Lock-free reads") before the first swap; not logged: a
   * rollback leaves it bumped, which only makes a reader retry. */
  __atomic_store_n(&c->db->flush_seq, __atomic_load_n(&c->db->flush_seq, __ATOMIC_RELAXED) + 1, __ATOMIC_RELEASE);
  __atomic_thread_fence(__ATOMIC_RELEASE); /* the bump before the swaps that follow */
  for (unsigned i = 0; i < KV_STRIPES; i++) {
    /* A stripe that is empty but keeps a bucket table (its keys were deleted one by one: a hash
     * keeps its smallest table) is swapped too, so FLUSHDB leaves every stripe as a fresh hash
     * and a flushed and drained database holds exactly what a new one does. */
    shmd_hash_stats_t hs;
    if ((rc = shmd_hash_stats(c->s, c->db->stripe[i], &hs)))
      return rc;
    if (hs.count == 0 && hs.buckets[0] == 0 && hs.buckets[1] == 0)
      continue;
    shmd_ptr_t h;
    if ((rc = shmd_hash_create(c->s, 0, &h)) || (rc = kv_garbage_push(c, KV_STRIPE, c->db->stripe[i], shmd_ptr_null())) ||
        (rc = shmd_tx_set64(c->tx, &c->db->stripe[i].v, h.v)))
      return rc;
  }
  return 0;
}

/* Where the active-expiry step goes on: hints shared by the process's threads (relaxed atomics; a
 * cursor is any value SCAN accepts, so a stale or another store's one only moves the sweep). They
 * are not thread-local because a module dlopen()ed into a program (the Python extension) must fit its
 * whole thread-local block into glibc's small static TLS surplus: the library has one initial-exec
 * variable (shmd__tl_thr), which makes the block static. */
static uint64_t expire_cursor[KV_NDB][KV_STRIPES];
static unsigned expire_stripe[KV_NDB];

typedef struct exp_scan_s {
  uint64_t now;
  keys_t ks;
} exp_scan_t;

static int exp_visit(const void *key, size_t klen, const void *val, size_t vlen, void *arg) {
  exp_scan_t *e = arg;
  if (vlen < sizeof(kv_rec_t))
    return 0;
  const kv_rec_t *r = val;
  if (r->expire && r->expire <= e->now)
    return keys_add(key, klen, NULL, 0, &e->ks);
  return 0;
}

int shmd_kv_expire_step(shmd_store_t *s, unsigned db, size_t budget, size_t *expired) {
  if (budget == 0)
    budget = 20;
  kv_ctx_t c;
  if (db >= KV_NDB)
    return SHMD_EINVAL;
  int rc = kv_begin(s, db, &c);
  if (rc)
    return rc;
  unsigned st = __atomic_load_n(&expire_stripe[db], __ATOMIC_RELAXED) % KV_STRIPES;
  exp_scan_t e = {c.now, {0}};
  size_t n = 0;
  uint64_t cur = __atomic_load_n(&expire_cursor[db][st], __ATOMIC_RELAXED);
  if ((rc = kv_lock_stripes(&c, 1u << st)) == 0)
    rc = shmd_hash_scan(s, c.db->stripe[st], cur, budget, exp_visit, &e, &cur);
  if (rc == 0)
    __atomic_store_n(&expire_cursor[db][st], cur, __ATOMIC_RELAXED);
  if (rc == 0 && cur == 0)
    __atomic_store_n(&expire_stripe[db], st + 1, __ATOMIC_RELAXED);
  for (size_t i = 0; rc == 0 && i < e.ks.n; i++) {
    kv_ref_t ref;
    rc = kv_lookup(&c, e.ks.k[i], e.ks.l[i], &ref); /* deletes it as it is expired */
    if (rc == SHMD_ENOTFOUND) {
      n++;
      rc = 0;
    } else if (rc == 0) {
      rc = 0;
    }
  }
  keys_free(&e.ks);
  c.garbage = 1; /* drain leftovers too, a bounded amount */
  c.drain_budget = budget;
  rc = kv_end(&c, rc);
  if (expired)
    *expired = n;
  return rc;
}

typedef struct check_s {
  shmd_store_t *s;
  int rc;
  kv_info_acc_t *info;
  shmd_ptr_t *ptrs;
  uint32_t *types;
  unsigned char *zset_pair; /* entry i is the tree of a live sorted set whose hash is entry i - 1 */
  int in_garbage;
  size_t n, cap;
  struct check_share_s *shares; /* the shared blocks the records name, one entry per record */
  size_t nshares, capshares;
} check_t;

typedef struct check_share_s {
  shmd_ptr_t p;
  uint32_t type;
} check_share_t;

static int check_share_cmp(const void *a, const void *b) {
  const check_share_t *x = a, *y = b;
  return x->p.v < y->p.v ? -1 : x->p.v > y->p.v;
}

static int check_push(check_t *ck, uint32_t type, shmd_ptr_t a, shmd_ptr_t b) {
  if (ck->n + 2 > ck->cap) {
    size_t cap = ck->cap ? ck->cap * 2 : 64;
    shmd_ptr_t *p = realloc(ck->ptrs, cap * sizeof *p);
    if (p) ck->ptrs = p;
    uint32_t *t = realloc(ck->types, cap * sizeof *t);
    if (t) ck->types = t;
    unsigned char *z = realloc(ck->zset_pair, cap);
    if (z) ck->zset_pair = z;
    if (!p || !t || !z)
      return SHMD_ENOMEM;
    ck->cap = cap;
  }
  if (a.v) {
    ck->zset_pair[ck->n] = 0;
    ck->ptrs[ck->n] = a;
    ck->types[ck->n++] = type == KV_LIST ? KV_LIST : KV_HASH;
  }
  if (b.v) {
    ck->zset_pair[ck->n] = a.v && !ck->in_garbage;
    ck->ptrs[ck->n] = b;
    ck->types[ck->n++] = KV_ZSET;
  }
  return 0;
}

static int check_visit(const void *key, size_t klen, const void *val, size_t vlen, void *arg) {
  (void)key;
  (void)klen;
  check_t *ck = arg;
  if (vlen < sizeof(kv_rec_t))
    return SHMD_ECORRUPT;
  /* A copy: an out-of-line value block named by a damaged entry may be misaligned (the hash's
   * checker reports that, but shmd_kv_info() walks without it). */
  kv_rec_t rec;
  memcpy(&rec, val, sizeof rec);
  const kv_rec_t *r = &rec;
  if (r->type < KV_STRING || r->type > KV_ZSET)
    return SHMD_ECORRUPT;
  if (ck->info) {
    ck->info->keys[r->type]++;
    if (r->expire)
      ck->info->expires++;
  }
  if (r->type == KV_STRING)
    return 0;
  if (vlen != sizeof(kv_rec_t) + 16)
    return SHMD_ECORRUPT;
  shmd_ptr_t p[2];
  memcpy(p, (const unsigned char *)val + sizeof(kv_rec_t), 16);
  if (r->pad & KV_REC_SHARED) { /* counted here, checked once per block by kv_check_body */
    if (!p[0].v || p[1].v)
      return SHMD_ECORRUPT;
    if (ck->info)
      return 0;
    if (ck->nshares == ck->capshares) {
      size_t cap = ck->capshares ? ck->capshares * 2 : 16;
      check_share_t *v = realloc(ck->shares, cap * sizeof *v);
      if (v == NULL)
        return SHMD_ENOMEM;
      ck->shares = v;
      ck->capshares = cap;
    }
    ck->shares[ck->nshares].p = p[0];
    ck->shares[ck->nshares++].type = r->type;
    return 0;
  }
  if (r->pad || !p[0].v || (r->type == KV_ZSET) != (p[1].v != 0))
    return SHMD_ECORRUPT;
  return ck->info ? 0 : check_push(ck, r->type, p[0], p[1]);
}

static int garbage_visit(const void *data, size_t len, void *arg) {
  check_t *ck = arg;
  if (len != sizeof(kv_garbage_t))
    return SHMD_ECORRUPT;
  kv_garbage_t g;
  memcpy(&g, data, sizeof g);
  if (ck->info) {
    ck->info->garbage++;
    return 0;
  }
  if (g.type == KV_STRIPE)
    return check_push(ck, KV_HASH, g.a, shmd_ptr_null());
  if (g.type < KV_STRING + 1 || g.type > KV_ZSET)
    return SHMD_ECORRUPT;
  return check_push(ck, g.type, g.a, g.b);
}

static int kv_walk(shmd_store_t *s, unsigned db_first, unsigned db_last, check_t *ck) {
  shmd_ptr_t rp;
  kv_root_t *r;
  if (shmd_root_get(s, KV_ROOT_NAME, &rp) != 0)
    return 0;
  int rc = kv_root_view(s, rp, &r);
  if (rc)
    return rc;
  for (unsigned db = db_first; db <= db_last && db < KV_NDB; db++) {
    if (!r->db[db].v)
      continue;
    kv_db_t *d;
    if ((rc = kv_db_view(s, r->db[db], &d)))
      return rc;
    if (!ck->info && (rc = shmd_list_check(s, d->garbage)))
      return rc;
    if (!ck->info && d->versions.v) { /* the WATCH versions: blocks of the right size and magic */
      kv_ver_t *v;
      kv_ver_stripe_t *vs;
      rc = kv_ver_view(s, d->versions, &v);
      for (unsigned i = 0; rc == 0 && i < KV_STRIPES; i++)
        rc = kv_ver_stripe_view(s, v->stripe[i], &vs);
      if (rc) {
        shmd__set_detail("kv: database %u: bad WATCH version block", db);
        return rc;
      }
    }
    ck->in_garbage = 1;
    rc = shmd_list_range(s, d->garbage, 0, -1, garbage_visit, ck);
    ck->in_garbage = 0;
    if (rc)
      return rc;
    for (unsigned i = 0; i < KV_STRIPES; i++) {
      if (!ck->info && (rc = shmd_hash_check(s, d->stripe[i])))
        return rc;
      if ((rc = shmd_hash_foreach(s, d->stripe[i], check_visit, ck)))
        return rc;
    }
  }
  return 0;
}

static int kv_check_body(shmd_store_t *s);

/* The public checker: its lock waits are bounded (segments/lockwait.h). */
int shmd_kv_check(shmd_store_t *s) {
  uint64_t w = shmd__check_wait_begin(s);
  int rc = kv_check_body(s);
  shmd__check_wait_end(s, w);
  return rc;
}

static int kv_check_body(shmd_store_t *s) {
  check_t ck = {0};
  ck.s = s;
  int rc = kv_walk(s, 0, KV_NDB - 1, &ck);
  /* Shared values: each block's count is the number of records naming it (over every database),
   * and its containers are checked once. */
  if (rc == 0 && ck.nshares)
    qsort(ck.shares, ck.nshares, sizeof *ck.shares, check_share_cmp);
  for (size_t i = 0, j; rc == 0 && i < ck.nshares; i = j) {
    for (j = i + 1; j < ck.nshares && ck.shares[j].p.v == ck.shares[i].p.v; j++)
      if (ck.shares[j].type != ck.shares[i].type)
        rc = SHMD_ECORRUPT;
    kv_share_t *sh;
    if (rc == 0 && (rc = kv_share_view(s, ck.shares[i].p, ck.shares[i].type, &sh)) == 0) {
      if (sh->refs != j - i) {
        shmd__set_detail("kv: a shared value counts %llu references, %zu records name it",
                         (unsigned long long)sh->refs, j - i);
        rc = SHMD_ECORRUPT;
      } else {
        rc = check_push(&ck, sh->type, sh->a, sh->b);
      }
    }
  }
  free(ck.shares);
  for (size_t i = 0; rc == 0 && i < ck.n; i++) {
    switch (ck.types[i]) {
    case KV_LIST: rc = shmd_list_check(s, ck.ptrs[i]); break;
    case KV_ZSET: rc = kv_ztree_check(s, ck.ptrs[i]); break;
    default: rc = shmd_hash_check(s, ck.ptrs[i]); break;
    }
    if (rc == SHMD_EINVAL) /* a container of another kind where the record says otherwise */
      rc = SHMD_ECORRUPT;
    if (rc == 0 && ck.zset_pair[i]) {
      /* a live sorted set: its hash (previous entry) and tree hold the same members and scores */
      rc = kv_zset_check(s, ck.ptrs[i - 1], ck.ptrs[i]);
    }
  }
  free(ck.zset_pair);
  free(ck.ptrs);
  free(ck.types);
  return rc;
}

int shmd_kv_info(shmd_store_t *s, unsigned db, shmd_kv_info_t *info) {
  if (db >= KV_NDB)
    return SHMD_EINVAL;
  kv_info_acc_t acc;
  memset(&acc, 0, sizeof acc);
  check_t ck = {0};
  ck.s = s;
  ck.info = &acc;
  int rc = kv_walk(s, db, db, &ck);
  if (rc)
    return rc;
  memset(info, 0, sizeof *info);
  info->strings = acc.keys[KV_STRING];
  info->hashes = acc.keys[KV_HASH];
  info->lists = acc.keys[KV_LIST];
  info->sets = acc.keys[KV_SET];
  info->zsets = acc.keys[KV_ZSET];
  info->keys = info->strings + info->hashes + info->lists + info->sets + info->zsets;
  info->expires = acc.expires;
  info->garbage = acc.garbage;
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* The change log's word (kv/changelog.c) */

/* The `aof` word of database 0, or null when there is no database 0 or no change log yet. */
shmd_ptr_t shmd__kv_aof_ptr(shmd_store_t *s) {
  shmd_ptr_t rp, none = {0};
  kv_root_t *r;
  kv_db_t *d;
  if (kv_root(s, &rp) || kv_root_view(s, rp, &r))
    return none;
  shmd_ptr_t dp = {__atomic_load_n(&r->db[0].v, __ATOMIC_ACQUIRE)};
  if (dp.v == 0 || kv_db_view(s, dp, &d))
    return none;
  return (shmd_ptr_t){__atomic_load_n(&d->aof.v, __ATOMIC_ACQUIRE)};
}

/* Stores p as the change log in tx, under the kv root lock (database 0 is made first, in a
 * transaction of its own); *existing gets the one already there instead, if any. */
int shmd__kv_aof_install(shmd_store_t *s, shmd_tx_t *tx, shmd_ptr_t p, shmd_ptr_t *existing) {
  shmd_ptr_t rp, dp;
  kv_root_t *r;
  kv_db_t *d;
  int rc = kv_db_ensure(s, 0, &dp);
  if (rc || (rc = kv_root(s, &rp)) || (rc = kv_root_view(s, rp, &r)) || (rc = kv_db_view(s, dp, &d)))
    return rc;
  if ((rc = shmd_tx_lock(tx, shmd_ptr_add(rp, offsetof(kv_root_t, lock)))))
    return rc;
  existing->v = d->aof.v;
  if (existing->v)
    return 0;
  return shmd_tx_set64(tx, &d->aof.v, p.v);
}

/* Takes every stripe of every database that exists, in transaction tx (which holds the change
 * log's lock already): the whole keyspace stands still until tx ends (a base, persist/aof.c). */
int shmd__kv_lock_all(shmd_store_t *s, shmd_tx_t *tx) {
  for (unsigned d = 0; d < KV_NDB; d++) {
    int e = kv_db_exists(s, d);
    if (e < 0)
      return e;
    if (e == 0)
      continue;
    kv_ctx_t c;
    int rc = kv_ctx_join(s, d, tx, &c);
    if (rc == 0)
      rc = kv_lock_stripes(&c, (1u << KV_STRIPES) - 1);
    if (rc)
      return rc;
  }
  return 0;
}
