/* SPDX-License-Identifier: MIT */
/*
 * Thread heaps: per-lane caches of free small objects in shared memory, which let shmd_alloc and
 * shmd_free of a small object run without a lock, an atomic read-modify-write or a system call.
 *
 * Design
 * ------
 * A heap belongs to a lane (segments/lane.c), not to a thread id: a thread owns its lane, and the
 * lane's robust `live` mutex, for its whole life, so that mutex is the heap's liveness lock, and a
 * dead thread's heap is adopted exactly when its lane is recovered. Lanes are reused by later
 * threads, so thousands of short-lived threads use at most `lane_count` heaps.
 *
 * Per size class a heap keeps a bounded stack of free objects (tcache's design rather than
 * mimalloc's owned pages): slot[c][0..count). Only the owner touches its stacks, so
 *
 *   pop  (alloc):  p = slot[c][count-1];                     count = count - 1   (one store)
 *   push (free):   slot[c][count] = p;                       count = count + 1   (one store)
 *
 * and `count` is the commit point: a process killed between any two instructions leaves every
 * object either below count (cached) or not. Entries at or above count mean nothing. A free goes
 * to the freeing thread's own stack whatever thread allocated the object, so there is no remote
 * free list and no atomic on the cross-thread path either; objects return to their slabs when a
 * stack overflows (a flush) and come from the slabs when one runs empty (a refill). Both move a
 * batch (half the stack) in one allocator step under the class lock, logging the slab words and
 * the stack's count word in the lane's allocator log, so a step cut short is rolled back whole.
 *
 * Crossing into a transaction. An object popped for shmd_tx_alloc() must end up in the lane's
 * reservations (rolled back on a crash); an object freed after commit (deferred frees) or on an
 * abort must leave the lane's record exactly once. The owner writes the lane record first and the
 * stack's count last for a pop, and the stack first and the lane record last for a push, so the
 * only ambiguous state a crash can leave is "the object is on top of a stack AND is the newest
 * lane record" (reservation on top, or the next deferred free). Recovery settles it before anything
 * else (settle_crossing):
 *   - reservation on top of an ACTIVE/ABORTING lane and on top of the stack: it is the
 *     reservation's (a pop that had not committed, or a push for an abort whose reservation count
 *     was not lowered yet): drop it from the stack; the rollback frees it;
 *   - the next deferred free of a COMMITTED lane on top of the stack: the free happened; advance
 *     the lane's counter.
 * Neither state can arise otherwise (it would need the same block freed twice), and both fixes
 * are idempotent, so a recoverer killed half-way is simply repeated.
 *
 * Adoption: recovery of a dead lane, after its allocator step is rolled back and dead steps of
 * earlier recoverers are settled, returns every cached object to the shared classes in steps of
 * the recovering thread (flush with keep = 0), then finishes the lane's reservations or deferred
 * frees. A thread that ends normally flushes its own heap the same way.
 *
 * Where heaps live: one 32 KiB buddy block per heap, allocated the first time a lane allocates and
 * kept with the lane; a directory block (one shmd_ptr_t per lane) is published in the manifest's
 * reserved word SHMD__MAN_HEAP_DIR under the grow lock. Both are created in an allocator step
 * that also stores their pointer, so a crash leaves either no block or a published one.
 *
 * Locks: class lock of (segment, class) for refill and flush, then that segment's buddy lock
 * (slab creation / release); the buddy lock of the segment a heap block comes from, then the grow
 * lock (directory publication). The fast paths take none.
 */
#include <string.h>

#include "alloc_int.h"
#include "segments/crash.h"
#include "segments/err.h"

/* ---------------------------------------------------------------------------------------------- */
/* Finding heaps. */

static inline uint32_t class_limit(uint32_t c) {
  uint32_t lim = 32768u / shmd__class_bytes[c];
  return lim < 4 ? 4 : lim > SHMD__HEAP_CAP ? SHMD__HEAP_CAP : lim;
}

struct shmd__heap_dir *shmd__heap_dir(shmd_store_t *s) {
  uint64_t v = __atomic_load_n(&s->man->reserved2[SHMD__MAN_HEAP_DIR], __ATOMIC_ACQUIRE);
  if (v == 0)
    return NULL;
  void *a;
  if ((v & 7) != 0 || shmd_resolve_checked(s, (shmd_ptr_t){v}, sizeof(struct shmd__heap_dir), &a) != 0)
    return NULL;
  struct shmd__heap_dir *d = a;
  if (d->magic != SHMD__HDIR_MAGIC || d->lanes != s->man->lane_count ||
      shmd_resolve_checked(s, (shmd_ptr_t){v}, sizeof *d + 8u * d->lanes, &a) != 0)
    return NULL;
  return d;
}

struct shmd__heap *shmd__heap_of(shmd_store_t *s, uint32_t idx) {
  struct shmd__heap_dir *d = shmd__heap_dir(s);
  if (d == NULL || idx >= d->lanes)
    return NULL;
  uint64_t v = __atomic_load_n(&d->heap[idx], __ATOMIC_ACQUIRE);
  void *a;
  if (v == 0 || (v & 7) != 0 || shmd_resolve_checked(s, (shmd_ptr_t){v}, sizeof(struct shmd__heap), &a) != 0)
    return NULL;
  struct shmd__heap *hp = a;
  if (hp->magic != SHMD__HEAP_MAGIC || hp->lane_idx != idx || hp->nclasses != SHMD__NCLASSES)
    return NULL;
  return hp;
}

static inline uint32_t order_of_bytes(uint64_t bytes) {
  uint64_t pages = (bytes + SHMD_PAGE_BYTES - 1) / SHMD_PAGE_BYTES;
  uint32_t o = 0;
  while ((UINT64_C(1) << o) < pages)
    o++;
  return o;
}

uint64_t shmd__heap_meta(shmd_store_t *s, uint64_t *blocks, uint64_t *pages, uint64_t *heaps) {
  *blocks = *pages = *heaps = 0;
  struct shmd__heap_dir *d = shmd__heap_dir(s);
  if (d != NULL) {
    *blocks = 1;
    *pages = UINT64_C(1) << order_of_bytes(sizeof *d + 8u * d->lanes);
    for (uint32_t i = 0; i < d->lanes; i++)
      if (shmd__heap_of(s, i) != NULL) {
        (*heaps)++;
        *pages += UINT64_C(1) << order_of_bytes(sizeof(struct shmd__heap));
      }
    *blocks += *heaps;
  }
  if (shmd__depot_of(s) != NULL) {
    (*blocks)++;
    *pages += UINT64_C(1) << order_of_bytes(sizeof(struct shmd__depot));
  }
  return *pages * SHMD_PAGE_BYTES;
}

/* ---------------------------------------------------------------------------------------------- */
/* Creating the directory and the heaps. */

/* In one allocator step: takes a block of 2^order pages from some segment, zeroes it, lets `init`
 * fill it, and stores its shmd_ptr_t into the 8-byte word `slot` (in segment slot_seg) if that word
 * is still 0, under `guard` (a lock in segment guard_seg) when not NULL. *out gets the word's final
 * value (the block, or the one a racing creator published). */
static int meta_alloc(shmd_store_t *s, struct shmd__thr *t, uint32_t order, uint64_t *slot, uint32_t slot_seg,
                      shmd_lock_t *guard, void (*init)(void *blk, shmd_ptr_t self, void *arg), void *arg,
                      uint64_t *out) {
  uint32_t n = shmd__seg_count(s);
  for (uint32_t seg = 0; seg < n; seg++) {
    struct shmd__seg_hdr *h = shmd__seg(s, seg);
    if (h == NULL)
      continue;
    struct shmd__seg_alloc *sa = shmd__sa(h);
    if (order > sa->max_order)
      continue;
    int rc = shmd__al_lock(s, t, seg, &sa->buddy_lock);
    if (rc)
      return rc;
    uint64_t page;
    rc = shmd__buddy_alloc(t, seg, h, order, PM_LARGE, &page);
    if (rc) {
      shmd__al_abort(s, t);
      if (rc == SHMD_ENOSPC)
        continue;
      return rc;
    }
    if (guard && (rc = shmd__al_lock(s, t, 0, guard)) != 0) {
      shmd__al_abort(s, t);
      return rc;
    }
    uint64_t cur = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (cur != 0) {
      shmd__al_abort(s, t); /* gives the block back */
      *out = cur;
      return 0;
    }
    uint64_t off = sa->data_off + page * SHMD_PAGE_BYTES;
    void *blk = (unsigned char *)h + off;
    /* The block was free: a rollback returns it to the buddy lists (its links were logged). */
    memset(blk, 0, (size_t)SHMD_PAGE_BYTES << order);
    shmd_ptr_t self = shmd_ptr_make(seg, off);
    init(blk, self, arg);
    shmd__al_log(t, slot_seg, s->map->base[slot_seg + 1], slot);
    __atomic_store_n(slot, self.v, __ATOMIC_RELEASE);
    SHMD_CRASH_POINT("heap.create");
    shmd__al_commit(s, t);
    *out = self.v;
    return 0;
  }
  return SHMD_ENOSPC;
}

static void dir_init(void *blk, shmd_ptr_t self, void *arg) {
  (void)self;
  struct shmd__heap_dir *d = blk;
  d->magic = SHMD__HDIR_MAGIC;
  d->lanes = *(uint32_t *)arg;
}

static void depot_init(void *blk, shmd_ptr_t self, void *arg);

static void heap_init(void *blk, shmd_ptr_t self, void *arg) {
  struct shmd__heap *hp = blk;
  hp->magic = SHMD__HEAP_MAGIC;
  hp->lane_idx = *(uint32_t *)arg;
  hp->nclasses = SHMD__NCLASSES;
  hp->reserved[0] = self.v;
  for (uint32_t c = 0; c < SHMD__NCLASSES; c++)
    hp->bin[c].limit = class_limit(c);
}

void shmd__heap_attach(shmd_store_t *s, struct shmd__thr *t) {
  if (t->heap_state != 0 || t->in_al)
    return;
  t->heap_state = 2;
  /* Thread heaps came with layout 1.2: a 1.0 or 1.1 library would take their cached objects for
   * leaked ones, so such a store runs without them (every small request goes to the slabs). */
  if (s->hdr0->layout_minor < 2)
    return;
  struct shmd__heap_dir *d = shmd__heap_dir(s);
  if (d == NULL) {
    uint32_t lanes = s->man->lane_count;
    uint64_t v;
    if (meta_alloc(s, t, order_of_bytes(sizeof *d + 8u * lanes), &s->man->reserved2[SHMD__MAN_HEAP_DIR], 0,
                   &s->man->grow_lock, dir_init, &lanes, &v) != 0)
      return;
    if ((d = shmd__heap_dir(s)) == NULL)
      return;
  }
  uint32_t idx = t->lane_idx;
  if (d->heap[idx] == 0) {
    shmd_ptr_t dp = shmd_ptr_from_addr(s, &d->heap[idx]);
    uint64_t v;
    if (dp.v == 0 || meta_alloc(s, t, order_of_bytes(sizeof(struct shmd__heap)), &d->heap[idx],
                                shmd_ptr_segment(dp), NULL, heap_init, &idx, &v) != 0)
      return;
  }
  struct shmd__heap *hp = shmd__heap_of(s, idx);
  if (hp == NULL)
    return;
  for (uint32_t c = 0; c < SHMD__NCLASSES; c++)
    if (hp->bin[c].limit == 0 || hp->bin[c].limit > SHMD__HEAP_CAP || hp->bin[c].count > hp->bin[c].limit)
      return; /* damaged: run without a heap rather than trust it */
  hp->owner_pid = t->lane->owner_pid;
  hp->owner_tid = t->lane->owner_tid;
  t->heap = hp;
  t->heap_state = 1;
  /* The depot, on stores of layout 1.3 and later (an older library would not know its objects
   * are free). Without one, heaps go to the slabs directly. */
  if (s->hdr0->layout_minor >= 3) {
    struct shmd__depot *dp = shmd__depot_of(s);
    uint64_t v;
    if (dp == NULL && __atomic_load_n(&s->man->reserved2[SHMD__MAN_DEPOT], __ATOMIC_ACQUIRE) == 0 &&
        meta_alloc(s, t, order_of_bytes(sizeof *dp), &s->man->reserved2[SHMD__MAN_DEPOT], 0, &s->man->grow_lock,
                   depot_init, NULL, &v) == 0)
      dp = shmd__depot_of(s);
    if (dp != NULL) {
      t->depot = dp;
      t->depot_seg = shmd_ptr_segment((shmd_ptr_t){dp->reserved[0]});
    }
  }
}

/* ---------------------------------------------------------------------------------------------- */
/* Refill and flush: batches under the class lock, one allocator step each. */

static inline void log_bin(shmd_store_t *s, struct shmd__thr *t, struct shmd__heap *hp, struct shmd__heap_bin *b) {
  uint32_t hseg = shmd_ptr_segment((shmd_ptr_t){hp->reserved[0]});
  shmd__al_log(t, hseg, s->map->base[hseg + 1], b);
}

int shmd__heap_refill_in(shmd_store_t *s, struct shmd__thr *t, uint32_t seg, uint32_t c) {
  struct shmd__heap *hp = t->heap;
  struct shmd__seg_hdr *h = shmd__seg(s, seg);
  if (h == NULL)
    return SHMD_ENOTFOUND;
  struct shmd__seg_alloc *sa = shmd__sa(h);
  int rc = shmd__al_lock(s, t, seg, &sa->cls[c].lock);
  if (rc)
    return rc;
  struct shmd__heap_bin *b = &hp->bin[c];
  uint32_t n = b->count, lim = b->limit;
  if (lim > SHMD__HEAP_CAP || n >= lim) {
    shmd__al_abort(s, t);
    return SHMD_CORRUPT("thread heap bin count or limit out of range");
  }
  uint32_t want = lim / 2 > n ? lim / 2 - n : 1, got = 0;
  rc = shmd__slab_alloc_batch(s, t, seg, h, c, &hp->slot[c][n], want, &got);
  if (rc) {
    shmd__al_abort(s, t);
    return rc;
  }
  /* The new entries sit above count: not cached until this store, which the step logs. */
  log_bin(s, t, hp, b);
  __atomic_store_n(&b->count, n + got, __ATOMIC_RELEASE);
  SHMD_CRASH_POINT("heap.refill");
  shmd__al_commit(s, t);
  return 0;
}

/* Validates a cached entry for a flush under the class lock: 0 with slab offset, 1 to drop it
 * (not an allocated object of this class: a double free that reached the cache), or a status. */
static int entry_slab(struct shmd__seg_hdr *h, struct shmd__seg_alloc *sa, uint32_t c, uint64_t off,
                      uint64_t *slab_off) {
  if (!shmd__sa_is_valid(h, sa)) /* the page map lookup below trusts its offsets */
    return SHMD_CORRUPT("allocator metadata header is damaged");
  if (off < sa->data_off || off >= sa->data_off + sa->data_bytes)
    return 1;
  const unsigned char *pm = shmd__pagemap(h, sa);
  uint64_t spg = ((off - sa->data_off) / SHMD_PAGE_BYTES) & ~(uint64_t)((SHMD_SLAB_BYTES / SHMD_PAGE_BYTES) - 1);
  if (pm[spg] != (PM_SLAB | SHMD__SLAB_ORDER))
    return 1;
  *slab_off = sa->data_off + spg * SHMD_PAGE_BYTES;
  const struct shmd__slab *sl = (const struct shmd__slab *)(const void *)((unsigned char *)h + *slab_off);
  if ((sl->magic_class & 0xff) != c)
    return 1;
  return 0;
}

/*
 * Returns the objects of a stack (a heap's or the depot's class c: count/limit word b, entries
 * slot[0..count), at most cap) above `keep` to their slabs, newest first, in allocator steps of t:
 * each step takes `guard` first when not NULL (the depot's class lock; a heap needs none, only its
 * owner or its lane's recoverer touches it), then the class lock of the top entry's segment, and
 * frees entries of that segment while the log has room. b's word lives in segment bseg.
 */
static int flush_stack(shmd_store_t *s, struct shmd__thr *t, uint32_t c, struct shmd__heap_bin *b, uint64_t *slot,
                       uint32_t cap, uint32_t bseg, shmd_lock_t *guard, uint32_t guard_seg, uint32_t keep) {
  for (int round = 0; round < 1 << 16; round++) {
    int rc;
    if (guard != NULL && (rc = shmd__al_lock(s, t, guard_seg, guard)) != 0)
      return rc;
    uint32_t n = b->count;
    if (n > cap || n <= keep) {
      if (guard != NULL)
        shmd__al_abort(s, t);
      return n > cap ? SHMD_CORRUPT("thread heap or depot count out of range") : 0;
    }
    shmd_ptr_t top = {slot[n - 1]};
    uint32_t seg = shmd_ptr_segment(top);
    struct shmd__seg_hdr *h = top.v ? shmd__seg(s, seg) : NULL;
    if (h == NULL) {
      /* Not a pointer into this store: drop the entry. */
      if (guard != NULL)
        shmd__al_log(t, bseg, s->map->base[bseg + 1], b);
      __atomic_store_n(&b->count, n - 1, __ATOMIC_RELEASE);
      if (guard != NULL)
        shmd__al_commit(s, t);
      continue;
    }
    struct shmd__seg_alloc *sa = shmd__sa(h);
    rc = shmd__al_lock(s, t, seg, &sa->cls[c].lock);
    if (rc) {
      if (guard != NULL)
        shmd__al_abort(s, t);
      return rc;
    }
    shmd__al_log(t, bseg, s->map->base[bseg + 1], b);
    while (n > keep && shmd_ptr_segment((shmd_ptr_t){slot[n - 1]}) == seg && slot[n - 1] != 0 &&
           shmd__al_room(t) >= 12u * (sa->max_order + 2) + 16u) {
      uint64_t off = shmd_ptr_offset((shmd_ptr_t){slot[n - 1]}), slab_off = 0;
      rc = entry_slab(h, sa, c, off, &slab_off);
      if (rc == 0) {
        rc = shmd__slab_free(s, t, seg, h, slab_off, off);
        if (rc == SHMD_EINVAL)
          rc = 0; /* not allocated (a double free): dropping the entry is the repair */
      } else if (rc == 1) {
        rc = 0;
      }
      if (rc) {
        shmd__al_abort(s, t);
        return rc;
      }
      n--;
    }
    __atomic_store_n(&b->count, n, __ATOMIC_RELEASE);
    SHMD_CRASH_POINT("heap.flush");
    shmd__al_commit(s, t);
  }
  return SHMD_CORRUPT("thread heap flush does not end");
}

int shmd__heap_flush(shmd_store_t *s, struct shmd__thr *t, struct shmd__heap *hp, uint32_t c, uint32_t keep) {
  uint32_t hseg = shmd_ptr_segment((shmd_ptr_t){hp->reserved[0]});
  return flush_stack(s, t, c, &hp->bin[c], hp->slot[c], SHMD__HEAP_CAP, hseg, NULL, 0, keep);
}

/* ---------------------------------------------------------------------------------------------- */
/* The depot. */

struct shmd__depot *shmd__depot_of(shmd_store_t *s) {
  uint64_t v = __atomic_load_n(&s->man->reserved2[SHMD__MAN_DEPOT], __ATOMIC_ACQUIRE);
  void *a;
  if (v == 0 || (v & 7) != 0 || shmd_resolve_checked(s, (shmd_ptr_t){v}, sizeof(struct shmd__depot), &a) != 0)
    return NULL;
  struct shmd__depot *d = a;
  if (d->magic != SHMD__DEPOT_MAGIC || d->nclasses != SHMD__NCLASSES || d->cap != SHMD__DEPOT_CAP ||
      d->reserved[0] != v)
    return NULL;
  return d;
}

static void depot_init(void *blk, shmd_ptr_t self, void *arg) {
  (void)arg;
  struct shmd__depot *d = blk;
  d->magic = SHMD__DEPOT_MAGIC;
  d->nclasses = SHMD__NCLASSES;
  d->cap = SHMD__DEPOT_CAP;
  d->reserved[0] = self.v;
  for (uint32_t c = 0; c < SHMD__NCLASSES; c++) {
    uint32_t lim = 2 * class_limit(c);
    d->cls[c].bin.limit = lim > SHMD__DEPOT_CAP ? SHMD__DEPOT_CAP : lim;
  }
}

/* Takes class c's depot lock in a step and validates both stacks: 0, or a status (step ended). */
static int depot_enter(shmd_store_t *s, struct shmd__thr *t, struct shmd__depot *d, struct shmd__heap *hp,
                       uint32_t c) {
  int rc = shmd__al_lock(s, t, t->depot_seg, &d->cls[c].lock);
  if (rc)
    return rc;
  struct shmd__heap_bin db = d->cls[c].bin, hb = hp->bin[c];
  if (db.limit > SHMD__DEPOT_CAP || db.count > db.limit || hb.limit > SHMD__HEAP_CAP || hb.count > hb.limit) {
    shmd__al_abort(s, t);
    return SHMD_CORRUPT("depot or thread heap count out of range");
  }
  return 0;
}

/* Logs both count words of a move between heap and depot. */
static inline void depot_log(shmd_store_t *s, struct shmd__thr *t, struct shmd__depot *d, struct shmd__heap *hp,
                             uint32_t c) {
  uint32_t hseg = shmd_ptr_segment((shmd_ptr_t){hp->reserved[0]});
  shmd__al_log(t, t->depot_seg, s->map->base[t->depot_seg + 1], &d->cls[c].bin);
  shmd__al_log(t, hseg, s->map->base[hseg + 1], &hp->bin[c]);
}

int shmd__depot_put(shmd_store_t *s, struct shmd__thr *t, uint32_t c, uint32_t keep) {
  struct shmd__depot *d = t->depot;
  struct shmd__heap *hp = t->heap;
  struct shmd__depot_class *dc = &d->cls[c];
  /* An unlocked look first: a full depot (a thread that only frees) costs no lock. */
  struct shmd__heap_bin peek = {__atomic_load_n(&dc->bin.count, __ATOMIC_RELAXED), dc->bin.limit};
  if (peek.count >= peek.limit)
    return 1;
  int rc = depot_enter(s, t, d, hp, c);
  if (rc)
    return rc;
  uint32_t n = hp->bin[c].count, dn = dc->bin.count, k = n > keep ? n - keep : 0;
  if (k > dc->bin.limit - dn)
    k = dc->bin.limit - dn;
  if (k == 0) {
    shmd__al_abort(s, t);
    return n > keep;
  }
  /* The entries land above the depot's count (meaning nothing until it is stored); both counts
   * are logged, so a step cut short leaves every object in the heap. */
  memcpy(&d->slot[c][dn], &hp->slot[c][n - k], (size_t)k * sizeof(uint64_t));
  depot_log(s, t, d, hp, c);
  __atomic_store_n(&dc->bin.count, dn + k, __ATOMIC_RELEASE);
  SHMD_CRASH_POINT("depot.put");
  __atomic_store_n(&hp->bin[c].count, n - k, __ATOMIC_RELEASE);
  shmd__al_commit(s, t);
  return n - k > keep;
}

int shmd__depot_take(shmd_store_t *s, struct shmd__thr *t, uint32_t c) {
  struct shmd__depot *d = t->depot;
  struct shmd__heap *hp = t->heap;
  struct shmd__depot_class *dc = &d->cls[c];
  if (__atomic_load_n(&dc->bin.count, __ATOMIC_RELAXED) == 0)
    return 1;
  int rc = depot_enter(s, t, d, hp, c);
  if (rc)
    return rc;
  uint32_t n = hp->bin[c].count, lim = hp->bin[c].limit, dn = dc->bin.count;
  uint32_t k = lim / 2 > n ? lim / 2 - n : 0;
  if (k > dn)
    k = dn;
  if (k == 0) {
    shmd__al_abort(s, t);
    return 1;
  }
  memcpy(&hp->slot[c][n], &d->slot[c][dn - k], (size_t)k * sizeof(uint64_t));
  depot_log(s, t, d, hp, c);
  __atomic_store_n(&dc->bin.count, dn - k, __ATOMIC_RELEASE);
  SHMD_CRASH_POINT("depot.take");
  __atomic_store_n(&hp->bin[c].count, n + k, __ATOMIC_RELEASE);
  shmd__al_commit(s, t);
  return 0;
}

int shmd__depot_drain(shmd_store_t *s, struct shmd__thr *t) {
  struct shmd__depot *d = t->depot;
  if (d == NULL)
    return 0;
  int rc = 0;
  for (uint32_t c = 0; c < SHMD__NCLASSES && rc == 0; c++)
    if (__atomic_load_n(&d->cls[c].bin.count, __ATOMIC_RELAXED) != 0)
      rc = flush_stack(s, t, c, &d->cls[c].bin, d->slot[c], SHMD__DEPOT_CAP, t->depot_seg, &d->cls[c].lock,
                       t->depot_seg, 0);
  return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* Adoption. */

int shmd__heap_cached(shmd_store_t *s, uint32_t idx) {
  struct shmd__heap *hp = shmd__heap_of(s, idx);
  if (hp == NULL)
    return 0;
  for (uint32_t c = 0; c < SHMD__NCLASSES; c++)
    if (__atomic_load_n(&hp->bin[c].count, __ATOMIC_RELAXED) != 0)
      return 1;
  return 0;
}

/* Class whose stack has p on top, or -1. */
static int on_top(struct shmd__heap *hp, uint64_t p) {
  for (uint32_t c = 0; c < SHMD__NCLASSES; c++) {
    uint32_t n = hp->bin[c].count;
    if (n > 0 && n <= SHMD__HEAP_CAP && hp->slot[c][n - 1] == p)
      return (int)c;
  }
  return -1;
}

/* The essay's crossing rules; the caller owns lane idx (its `live` mutex). Records past the
 * lane's own arrays are in its extension block (shmd__lane_record). */
static void settle_crossing(shmd_store_t *s, uint32_t idx, struct shmd__heap *hp) {
  struct shmd__lane *x = shmd__lane_at(s, idx);
  uint32_t st = __atomic_load_n(&x->state, __ATOMIC_ACQUIRE);
  if ((st == SHMD__LANE_ACTIVE || st == SHMD__LANE_ABORTING) && x->resv_count > 0) {
    uint64_t *r = shmd__lane_record(s, x, 0, x->resv_count - 1);
    int c = r ? on_top(hp, *r) : -1;
    if (c >= 0)
      __atomic_store_n(&hp->bin[c].count, hp->bin[c].count - 1, __ATOMIC_RELEASE);
  } else if (st == SHMD__LANE_COMMITTED && x->dfree_done < x->dfree_count) {
    uint64_t *r = shmd__lane_record(s, x, 1, x->dfree_done);
    if (r && on_top(hp, *r) >= 0)
      __atomic_store_n(&x->dfree_done, x->dfree_done + 1, __ATOMIC_RELEASE);
  }
}

int shmd__heap_adopt(shmd_store_t *s, struct shmd__thr *t, uint32_t idx) {
  struct shmd__heap *hp = shmd__heap_of(s, idx);
  if (hp == NULL)
    return 0;
  settle_crossing(s, idx, hp);
  int rc = 0;
  for (uint32_t c = 0; c < SHMD__NCLASSES && rc >= 0; c++)
    rc = shmd__heap_flush(s, t, hp, c, 0);
  return rc;
}
