/* SPDX-License-Identifier: MIT */
/*
 * Transactions (shmd_tx_*): the operation part of the crash protocol of design §6, built on the
 * segment layer's lanes, locks and rollback (segments/lane.c) and on the allocator (alloc/).
 *
 * A transaction runs in its thread's lane. It records every lock it takes (held), logs every word
 * before changing it (op_log), records every block it allocates inside the allocator's own logged
 * step (reservations) and defers its frees to after the commit (deferred frees). Commit is the one
 * store state = COMMITTED; then the locks are released and the deferred frees run, each one an
 * allocator step that also advances the lane's free counter, so a thread killed half-way leaves a
 * state its recoverer continues from. Abort rolls the log back newest-first, releases the locks and
 * frees the reservations the same way.
 *
 * Recovery of a dead lane starts in the segment layer (a waiter finds its holder dead): it rolls
 * back the lane's allocator step and operation log and releases its locks (steps 1-3 of the essay
 * in segments/lane.c), then hands the lane to this layer through the store's tx_ops
 * (lane_recover(), below) for step 4: the dead thread's heap is adopted (alloc/heap.c), its
 * reservations freed or its deferred frees finished, its extension blocks released. The segment
 * layer also calls thread_end() when a thread gives its lane up, so an open transaction is aborted
 * and the thread's heap returned first.
 *
 * Locks: those the transaction takes (shmd_tx_lock), held until the outermost commit or abort; the
 * allocator's, inside its steps, under them.
 */
#include <string.h>

#include "alloc/alloc_int.h"
#include "segments/crash.h"
#include "segments/err.h"
#include "tx_int.h"

/* ---------------------------------------------------------------------------------------------- */
/*
 * Extension blocks.
 *
 * A transaction that outgrows its lane's fixed arrays (held locks, reservations, deferred frees,
 * undo entries) continues them in an extension block allocated from the store, so that the size of
 * an atomic operation is bounded by the store's space, not by the lane. Growing is crash-safe in
 * four steps:
 *
 *   1. allocate the bigger block in one allocator step that also stores it into `ext_new`;
 *   2. copy the used part of the current block into it (the current block stays authoritative);
 *   3. store ext_old = ext, then ext = new: that one store is the switch;
 *   4. free the old block in a step that also clears ext_old, then clear ext_new.
 *
 * At every instant `ext` names a block holding every entry the counts cover, so a recoverer rolls
 * back through it without looking at the other two words. They matter only when the blocks are
 * released, which happens once the transaction is over (the lane idle): ext_new != ext means the
 * switch never happened and ext_new is freed; ext_old != 0 and != ext means it did and ext_old is
 * freed; then ext itself. A block therefore lives only as long as the transaction that needed it,
 * and the owner's commit or abort, or the recovery of a dead owner, frees it.
 */


static const uint32_t ext_min[4] = {2048, 64, 256, 512};
enum { EXT_OP, EXT_HELD, EXT_RESV, EXT_DFREE };

/*
 * Makes the calling thread's lane hold at least `need` entries of array `which`, growing its
 * extension block (steps 1-4 above). Returns 0, SHMD_ETXFULL beyond SHMD__EXT_MAX entries, SHMD_ENOSPC
 * when the store has no room for the block, or another allocator status.
 */
static int ext_grow(struct shmd__thr *t, int which, uint64_t need) {
  shmd_store_t *s = t->store;
  struct shmd__lane *l = t->lane;
  struct shmd__lane_ext *o = t->ext;
  const uint64_t fixed[4] = {s->man->op_log_cap, SHMD__HELD_CAP, SHMD__RESV_CAP, SHMD__DFREE_CAP};
  uint64_t cap[4] = {o ? o->op_cap : 0, o ? o->held_cap : 0, o ? o->resv_cap : 0, o ? o->dfree_cap : 0};
  if (need <= fixed[which] + cap[which])
    return 0;
  uint64_t want = need - fixed[which];
  /* Extension blocks came with layout 1.1: a 1.0 library recovering a dead lane would not know the
   * entries beyond its capacities, so a 1.0 store keeps the old fixed limits. */
  const char *what = which == EXT_OP ? "undo entries" : which == EXT_HELD ? "locks" : which == EXT_RESV ? "allocations" : "frees";
  if (s->hdr0->layout_minor < 1) {
    shmd__set_detail("one transaction would need %llu %s; a store of layout %u.%u holds at most %llu "
                     "(bigger transactions need layout 1.1: dump the store and load it into a new one)",
                     (unsigned long long)need, what, (unsigned)s->hdr0->layout_major,
                     (unsigned)s->hdr0->layout_minor, (unsigned long long)fixed[which]);
    return SHMD_ETXFULL;
  }
  if (want > SHMD__EXT_MAX) {
    shmd__set_detail("one transaction would need %llu %s; the limit is %llu", (unsigned long long)need, what,
                     (unsigned long long)(fixed[which] + SHMD__EXT_MAX));
    return SHMD_ETXFULL;
  }
  uint64_t c = cap[which] ? cap[which] : ext_min[which];
  while (c < want)
    c *= 2;
  cap[which] = c < SHMD__EXT_MAX ? c : SHMD__EXT_MAX;
  for (int k = 0; k < 4; k++)
    if (cap[k] == 0)
      cap[k] = ext_min[k] / 4; /* some room in the other arrays, so one block usually suffices */
  shmd_ptr_t np;
  int rc = shmd__alloc_word(s, t, shmd__ext_bytes(cap[0], cap[1], cap[2], cap[3]), &l->ext_new, &np);
  if (rc)
    return rc;
  SHMD_CRASH_POINT("tx.ext.allocated");
  struct shmd__lane_ext *n = shmd_resolve(s, np);
  n->magic = SHMD__EXT_MAGIC;
  n->op_cap = (uint32_t)cap[0];
  n->held_cap = (uint32_t)cap[1];
  n->resv_cap = (uint32_t)cap[2];
  n->dfree_cap = (uint32_t)cap[3];
  n->pad = 0;
  if (o != NULL) {
    uint64_t used[4] = {l->op_len, l->held_count, l->resv_count, l->dfree_count};
    for (int k = 0; k < 4; k++)
      used[k] = used[k] > fixed[k] ? used[k] - fixed[k] : 0;
    memcpy(shmd__ext_op(n), shmd__ext_op(o), used[0] * sizeof(struct shmd__undo));
    memcpy(shmd__ext_held(n), shmd__ext_held(o), used[1] * 8);
    memcpy(shmd__ext_resv(n), shmd__ext_resv(o), used[2] * 8);
    memcpy(shmd__ext_dfree(n), shmd__ext_dfree(o), used[3] * 8);
  }
  __atomic_store_n(&l->ext_old, l->ext, __ATOMIC_RELEASE);
  SHMD_CRASH_POINT("tx.ext.copied");
  __atomic_store_n(&l->ext, np.v, __ATOMIC_RELEASE);
  shmd__thr_set_ext(t, n);
  SHMD_CRASH_POINT("tx.ext.switched");
  uint64_t old = l->ext_old;
  if (old != 0 && (rc = shmd__alloc_free_step(s, t, (shmd_ptr_t){old}, &l->ext_old, 0)) < 0)
    return rc; /* the block stays named by ext_old: released with the transaction */
  SHMD_CRASH_POINT("tx.ext.freed_old");
  __atomic_store_n(&l->ext_new, 0, __ATOMIC_RELEASE);
  return 0;
}

/* Entries of array `which` the calling thread's lane holds now: its own plus its extension's (the
 * undo log and reservations cached in t, the hot ones). */
static inline uint64_t lane_room(const struct shmd__thr *t, int which) {
  const struct shmd__lane_ext *e = t->ext;
  switch (which) {
  case EXT_OP: return t->op_room;
  case EXT_RESV: return t->resv_room;
  case EXT_HELD: return SHMD__HELD_CAP + (e ? e->held_cap : 0);
  default: return SHMD__DFREE_CAP + (e ? e->dfree_cap : 0);
  }
}

/* Makes array `which` hold at least `need` entries: 0, or ext_grow's status. */
static inline int ensure_room(struct shmd__thr *t, int which, uint64_t need) {
  return __builtin_expect(need <= lane_room(t, which), 1) ? 0 : ext_grow(t, which, need);
}

/* Frees one block named by lane word w (an allocator step that clears w). */
static int ext_free_word(shmd_store_t *s, struct shmd__thr *t, uint64_t *w) {
  int rc = shmd__alloc_free_step(s, t, (shmd_ptr_t){*w}, w, 0);
  if (rc == SHMD_EINVAL) /* not an allocated block: only after corruption; forget it */
    __atomic_store_n(w, 0, __ATOMIC_RELEASE);
  return rc == SHMD_EINVAL ? 0 : rc;
}

/* Frees the extension blocks of lane x, whose transaction is over, with steps of thread t. */
static int ext_release(shmd_store_t *s, struct shmd__thr *t, struct shmd__lane *x) {
  int rc = 0;
  uint64_t e = __atomic_load_n(&x->ext, __ATOMIC_ACQUIRE);
  if (x->ext_new != 0 && x->ext_new != e)
    rc = ext_free_word(s, t, &x->ext_new);
  else
    x->ext_new = 0;
  if (rc == 0) {
    if (x->ext_old != 0 && x->ext_old != e)
      rc = ext_free_word(s, t, &x->ext_old);
    else
      x->ext_old = 0;
  }
  if (rc == 0 && e != 0)
    rc = ext_free_word(s, t, &x->ext);
  if (x == t->lane)
    shmd__thr_set_ext(t, NULL);
  return rc;
}


/* ---------------------------------------------------------------------------------------------- */
/* Finishing a lane: its frees and its extension blocks (the owner's commit or abort, or recovery). */

/* Frees the reservations (ABORTING) or the remaining deferred frees (COMMITTED) of lane `x`, using
 * allocator steps of thread t. */
static int finish_frees(shmd_store_t *s, struct shmd__thr *t, struct shmd__lane *x) {
  uint32_t st = __atomic_load_n(&x->state, __ATOMIC_ACQUIRE);
  int rc;
  struct shmd__lane_ext *e = shmd__lane_ext_view(s, x, &rc);
  if (rc)
    return rc;
  if (st == SHMD__LANE_ABORTING) {
    uint64_t *ea = e ? shmd__ext_resv(e) : NULL, ecap = e ? e->resv_cap : 0;
    if (x->resv_count > SHMD__RESV_CAP + ecap)
      return SHMD_CORRUPT("lane reservation count beyond capacity");
    while (x->resv_count > 0) {
      uint64_t i = x->resv_count - 1;
      rc = shmd__alloc_free_step(s, t, (shmd_ptr_t){*shmd__vslot(x->resv, SHMD__RESV_CAP, ea, ecap, i)},
                                     &x->resv_count, i);
      if (rc == SHMD_EINVAL) {
        /* The slot names a block that is not allocated: impossible unless corrupted; skip it. */
        x->resv_count = i;
      } else if (rc < 0) {
        return rc;
      }
    }
  } else if (st == SHMD__LANE_COMMITTED) {
    uint64_t *ea = e ? shmd__ext_dfree(e) : NULL, ecap = e ? e->dfree_cap : 0;
    if (x->dfree_count > SHMD__DFREE_CAP + ecap || x->dfree_done > SHMD__DFREE_CAP + ecap)
      return SHMD_CORRUPT("lane deferred-free counters out of range");
    /* dfree_done > dfree_count: the owner died inside lane_reset() after zeroing dfree_count, so
     * every free was done already; the loop below does nothing and the reset is finished. */
    while (x->dfree_done < x->dfree_count) {
      uint64_t i = x->dfree_done;
      rc = shmd__alloc_free_step(s, t, (shmd_ptr_t){*shmd__vslot(x->dfree, SHMD__DFREE_CAP, ea, ecap, i)},
                                     &x->dfree_done, i + 1);
      if (rc == SHMD_EINVAL)
        x->dfree_done = i + 1;
      else if (rc < 0)
        return rc;
    }
  }
  shmd__lane_reset(x);
  SHMD_CRASH_POINT("tx.frees_done");
  return shmd__ext_any(x) ? ext_release(s, t, x) : 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* The segment layer's callbacks (struct shmd__tx_ops): recovery's last step and a thread's end. */

/* Step 4 of recovering lane idx (the caller owns its `live` mutex; steps 1-3 are done). */
static int lane_recover(shmd_store_t *s, struct shmd__thr *t, uint32_t idx, int can_free) {
  struct shmd__lane *x = shmd__lane_at(s, idx);
  uint32_t st = __atomic_load_n(&x->state, __ATOMIC_ACQUIRE);
  /* Thread heaps: a dead lane's heap is adopted with the lane (alloc/heap.c). */
  int cached = shmd__heap_cached(s, idx);
  if (st == SHMD__LANE_IDLE) {
    shmd__lane_reset(x);
    if (!cached && !shmd__ext_any(x))
      return 0;
    /* Died after its transaction ended, before its extension blocks were freed: finish_frees()
     * below frees them. A heap with cached objects is adopted below too. */
  }
  if (!can_free)
    return SHMD__RECOVER_LATER;
  shmd__settle_dead_steps(s, t, idx);
  if (cached) {
    int rc = shmd__heap_adopt(s, t, idx);
    if (rc < 0)
      return rc;
  }
  return finish_frees(s, t, x);
}

static void thread_end(shmd_store_t *s, struct shmd__thr *t) {
  if (t->depth > 0) {
    t->depth = 1;
    shmd_tx_abort((shmd_tx_t *)(void *)t);
  }
  if (t->npending)
    shmd__run_pending(s, t);
  /* A thread that ends returns what its heap caches (alloc/heap.c). */
  if (shmd__heap_cached(s, t->lane_idx))
    (void)shmd__heap_adopt(s, t, t->lane_idx);
}

static const struct shmd__tx_ops tx_ops = {lane_recover, thread_end};

const struct shmd__tx_ops *shmd__tx_layer_ops(void) { return &tx_ops; }

/* ---------------------------------------------------------------------------------------------- */
/* Transactions. */

static inline struct shmd__thr *TX(shmd_tx_t *tx) { return (struct shmd__thr *)(void *)tx; }

/*
 * Which levels changed something (for shmd_tx_end()). A change made at depth D -- a logged word,
 * a reservation, a deferred free, all of which only grow the lane's counts until the outermost
 * level ends -- is a change of every open level 1..D, and a new level starts unchanged, so the
 * changed levels are always a prefix 1 .. clean_from - 1. The depth only moves at begin, commit and
 * abort; settling there (level_settle: did the counts move since the last settle? then every level
 * open now changed) keeps clean_from exact without a word of work in the logging, allocating and
 * freeing paths.
 */
static inline void level_settle(struct shmd__thr *t) {
  const struct shmd__lane *l = t->lane;
  if (l->op_len != t->mark_op || l->resv_count != t->mark_resv || l->dfree_count != t->mark_dfree) {
    t->clean_from = t->depth + 1;
    t->mark_op = l->op_len;
    t->mark_resv = l->resv_count;
    t->mark_dfree = l->dfree_count;
  }
}

/* The level at depth t->depth is about to close (nested commit or abort). */
static inline void level_close(struct shmd__thr *t) {
  level_settle(t);
  if (t->clean_from > t->depth)
    t->clean_from = t->depth; /* levels from t->depth on are gone */
}

int shmd_tx_begin(shmd_store_t *store, shmd_tx_t **tx) {
  int rc = 0;
  struct shmd__thr *t = shmd__thr(store, &rc);
  if (t == NULL)
    return rc;
  if (t->depth == 0) {
    /* Blocks a failed release left behind (only after a corrupted free) go before new ones come. */
    if (__builtin_expect(shmd__ext_any(t->lane), 0) && (rc = ext_release(store, t, t->lane)) < 0)
      return rc;
    t->doomed = 0;
    t->clean_from = 1;
    t->mark_op = t->lane->op_len;
    t->mark_resv = t->lane->resv_count;
    t->mark_dfree = t->lane->dfree_count;
    __atomic_store_n(&t->lane->state, SHMD__LANE_ACTIVE, __ATOMIC_RELEASE);
  } else {
    level_settle(t);
  }
  t->depth++;
  *tx = (shmd_tx_t *)(void *)t;
  return 0;
}

shmd_store_t *shmd_tx_store(const shmd_tx_t *tx) { return ((const struct shmd__thr *)(const void *)tx)->store; }

unsigned shmd_tx_depth(shmd_store_t *store) {
  struct shmd__thr *t = shmd__tl_thr;
  if (t && t->store == store && t->fork_gen == shmd__fork_gen)
    return t->depth;
  int rc;
  t = shmd__thr(store, &rc);
  return t ? t->depth : 0;
}

/* Records lock pointer v as the n-th held lock (the room exists) and publishes the count. */
static inline void held_push(struct shmd__thr *t, uint32_t n, uint64_t v) {
  *shmd__held_slot(t->lane, t->ext, n) = v;
  __atomic_store_n(&t->lane->held_count, n + 1, __ATOMIC_RELEASE);
}

int shmd_tx_lock(shmd_tx_t *tx, shmd_ptr_t lock) {
  struct shmd__thr *t = TX(tx);
  shmd_store_t *s = t->store;
  void *a;
  if ((lock.v & 3) || shmd_resolve_checked(s, lock, sizeof(shmd_lock_t), &a) != 0)
    return SHMD_CORRUPT("lock pointer outside the store");
  uint32_t *w = a;
  uint32_t me = t->lane_idx + 1;
  struct shmd__lane *l = t->lane;
  uint32_t n = l->held_count;
  int rc;
  if (SHMD__LOCK_OWNER(__atomic_load_n(w, __ATOMIC_RELAXED)) == me) {
    for (uint32_t i = n; i-- > 0;)
      if (*shmd__held_slot(l, t->ext, i) == lock.v)
        return 0; /* taken earlier in this transaction */
    /* The word names this lane but the transaction never took it: a stale or garbage word that
     * happens to carry our index. No one else can hold it; record it so the commit releases it. */
    if ((rc = ensure_room(t, EXT_HELD, (uint64_t)n + 1)) < 0)
      return rc;
    held_push(t, n, lock.v);
    return 0;
  }
  if ((rc = ensure_room(t, EXT_HELD, (uint64_t)n + 1)) < 0)
    return rc;
  held_push(t, n, lock.v);
  rc = shmd__lock(s, t, w);
  if (rc < 0) {
    __atomic_store_n(&l->held_count, n, __ATOMIC_RELEASE);
    return rc;
  }
  return 0;
}

static inline void op_log_word(struct shmd__thr *t, uint64_t ptr, uint64_t *addr) {
  struct shmd__lane *l = t->lane;
  uint32_t n = l->op_len, cap = t->store->man->op_log_cap;
  struct shmd__undo *u = __builtin_expect(n < cap, 1) ? &l->op_log[n] : &shmd__ext_op(t->ext)[n - cap];
  u->ptr = ptr;
  u->old = *addr;
  __atomic_store_n(&l->op_len, n + 1, __ATOMIC_RELEASE);
  __atomic_thread_fence(__ATOMIC_RELEASE);
}

/* Makes room for `words` more undo entries. */
static inline int op_room(struct shmd__thr *t, uint64_t words) {
  return ensure_room(t, EXT_OP, (uint64_t)t->lane->op_len + words);
}

int shmd_tx_log(shmd_tx_t *tx, shmd_ptr_t p, size_t len) {
  struct shmd__thr *t = TX(tx);
  if (len == 0)
    return 0;
  uint64_t off = shmd_ptr_offset(p);
  uint64_t first = off & ~UINT64_C(7), end = (off + len + 7) & ~UINT64_C(7);
  uint64_t words = (end - first) / 8;
  void *a;
  if (shmd_resolve_checked(t->store, shmd_ptr_make(shmd_ptr_segment(p), first), end - first, &a))
    return SHMD_CORRUPT("logged range outside the store");
  int rc = op_room(t, words);
  if (rc)
    return rc;
  /* The entries first, then one publication of the new length: nothing in the range changes
   * before this returns, so a crash before the publication loses only entries for words that still
   * hold their old values (op_log_word publishes per word; here a B+tree's shifted slot arrays,
   * tens of words, pay one release store). */
  uint64_t base = p.v - (off - first);
  struct shmd__lane *l = t->lane;
  uint32_t n = l->op_len, cap = t->store->man->op_log_cap;
  const uint64_t *src = a;
  for (uint64_t i = 0; i < words; i++, n++) {
    struct shmd__undo *u = __builtin_expect(n < cap, 1) ? &l->op_log[n] : &shmd__ext_op(t->ext)[n - cap];
    u->ptr = base + 8 * i;
    u->old = src[i];
  }
  __atomic_store_n(&l->op_len, n, __ATOMIC_RELEASE);
  __atomic_thread_fence(__ATOMIC_RELEASE);
  return 0;
}

int shmd_tx_set64(shmd_tx_t *tx, void *addr, uint64_t value) {
  struct shmd__thr *t = TX(tx);
  if (((uintptr_t)addr & 7) != 0)
    return SHMD_EINVAL;
  int rc = op_room(t, 1);
  if (rc)
    return rc;
  shmd_ptr_t p = shmd_ptr_from_addr(t->store, addr);
  if (p.v == 0)
    return SHMD_CORRUPT("address outside the store");
  op_log_word(t, p.v, addr);
  *(uint64_t *)addr = value;
  return 0;
}

int shmd_tx_alloc(shmd_tx_t *tx, size_t size, shmd_ptr_t *out) {
  struct shmd__thr *t = TX(tx);
  uint64_t n = t->lane->resv_count;
  int rc;
  if ((rc = ensure_room(t, EXT_RESV, n + 1)) < 0)
    return rc;
  return shmd__alloc_reserved(t->store, t, size, out);
}

int shmd_tx_calloc(shmd_tx_t *tx, size_t size, shmd_ptr_t *out) {
  int rc = shmd_tx_alloc(tx, size, out);
  if (rc == 0)
    memset(shmd_resolve(TX(tx)->store, *out), 0, size);
  return rc;
}

int shmd_tx_free(shmd_tx_t *tx, shmd_ptr_t p) {
  struct shmd__thr *t = TX(tx);
  if (p.v == 0)
    return SHMD_EINVAL;
  struct shmd__lane *l = t->lane;
  uint32_t n = l->dfree_count;
  int rc;
  if (__builtin_expect(n >= SHMD__DFREE_CAP, 0)) {
    if ((rc = ensure_room(t, EXT_DFREE, (uint64_t)n + 1)) < 0)
      return rc;
    shmd__ext_dfree(t->ext)[n - SHMD__DFREE_CAP] = p.v;
  } else {
    l->dfree[n] = p.v;
  }
  __atomic_store_n(&l->dfree_count, n + 1, __ATOMIC_RELEASE);
  return 0;
}

void shmd_tx_room(const shmd_tx_t *tx, size_t *log_words, size_t *allocs, size_t *frees) {
  const struct shmd__thr *t = (const struct shmd__thr *)(const void *)tx;
  if (log_words)
    *log_words = lane_room(t, EXT_OP) - t->lane->op_len;
  if (allocs)
    *allocs = lane_room(t, EXT_RESV) - (size_t)t->lane->resv_count;
  if (frees)
    *frees = lane_room(t, EXT_DFREE) - t->lane->dfree_count;
}

int shmd_tx_reserve(shmd_tx_t *tx, size_t log_words, size_t allocs, size_t frees) {
  struct shmd__thr *t = TX(tx);
  struct shmd__lane *l = t->lane;
  int rc;
  if (log_words > 2 * (size_t)SHMD__EXT_MAX || allocs > 2 * (size_t)SHMD__EXT_MAX || frees > 2 * (size_t)SHMD__EXT_MAX)
    return SHMD_ETXFULL; /* beyond any lane's limit; also keeps the sums below from wrapping */
  if ((rc = op_room(t, log_words)) < 0 || (rc = ensure_room(t, EXT_RESV, l->resv_count + allocs)) < 0)
    return rc;
  return ensure_room(t, EXT_DFREE, (uint64_t)l->dfree_count + frees);
}

static void release_held(shmd_store_t *s, struct shmd__thr *t) {
  struct shmd__lane *l = t->lane;
  uint32_t me = t->lane_idx + 1;
  for (uint32_t i = l->held_count; i-- > 0;) {
    uint32_t *w = (uint32_t *)shmd_resolve(s, (shmd_ptr_t){*shmd__held_slot(l, t->ext, i)});
    /* The same lock may be listed twice only if a take failed half-way; release once. */
    if (w && SHMD__LOCK_OWNER(__atomic_load_n(w, __ATOMIC_RELAXED)) == me)
      shmd__unlock(w);
  }
  __atomic_store_n(&l->held_count, 0, __ATOMIC_RELEASE);
}

static void abort_outermost(struct shmd__thr *t) {
  shmd_store_t *s = t->store;
  struct shmd__lane *l = t->lane;
  (void)shmd__lane_rollback_op(s, l, t->ext, l->op_len);
  __atomic_store_n(&l->op_len, 0, __ATOMIC_RELEASE);
  __atomic_store_n(&l->state, SHMD__LANE_ABORTING, __ATOMIC_RELEASE);
  release_held(s, t);
  (void)finish_frees(s, t, l);
  t->depth = 0;
  t->doomed = 0;
  if (t->npending)
    shmd__run_pending(s, t);
}

int shmd_tx_commit(shmd_tx_t *tx) {
  struct shmd__thr *t = TX(tx);
  if (t->depth == 0)
    return SHMD_EINVAL;
  if (t->depth > 1) {
    level_close(t);
    t->depth--;
    return t->doomed ? SHMD_EABORTED : 0;
  }
  t->depth = 0;
  if (t->doomed) {
    t->depth = 1;
    abort_outermost(t);
    return SHMD_EABORTED;
  }
  shmd_store_t *s = t->store;
  struct shmd__lane *l = t->lane;
  SHMD_CRASH_POINT("tx.before_commit");
  __atomic_store_n(&l->state, SHMD__LANE_COMMITTED, __ATOMIC_RELEASE);
  SHMD_CRASH_POINT("tx.committed");
  release_held(s, t);
  int rc = finish_frees(s, t, l);
  if (t->npending)
    shmd__run_pending(s, t);
  return rc;
}

void shmd_tx_abort(shmd_tx_t *tx) {
  struct shmd__thr *t = TX(tx);
  if (t->depth == 0)
    return;
  if (t->depth > 1) {
    level_close(t);
    t->depth--;
    t->doomed = 1;
    return;
  }
  abort_outermost(t);
}

int shmd_tx_end(shmd_tx_t *tx, int rc) {
  struct shmd__thr *t = TX(tx);
  if (t == NULL || t->depth == 0)
    return SHMD_EINVAL;
  if (rc >= 0) {
    int crc = shmd_tx_commit(tx);
    return crc < 0 ? crc : rc;
  }
  level_settle(t);
  if (t->depth < t->clean_from)
    shmd_tx_abort(tx); /* this level changed something */
  else
    (void)shmd_tx_commit(tx); /* nothing to undo: a caller's transaction goes on */
  return rc;
}
