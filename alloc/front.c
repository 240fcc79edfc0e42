/* SPDX-License-Identifier: MIT */
/*
 * The allocator's front end: shmd_alloc / shmd_free / shmd_realloc and friends, the choice of
 * segment, growth, reservations for transactions, statistics, and the callbacks the segment layer
 * uses (metadata size, segment initialisation, recovery's free step).
 *
 * Small requests are served first by the calling thread's heap (heap.c): a pop from, or a push
 * onto, a per-class stack in shared memory that only this thread writes, with no lock and no
 * atomic read-modify-write. Everything else, and the heap's refills and flushes, is one allocator
 * step (segments/store_int.h): it takes the class lock of one
 * (segment, class) pair — plus the segment's buddy lock when a slab comes or goes, or for large
 * blocks — logs every word it changes in the lane's allocator log, commits by emptying the log and
 * then releases its locks. Each process remembers per class the segment that last had room, so the
 * common case touches one segment. When no segment has room, the store grows by a segment large
 * enough for the request.
 */
#include <string.h>

#include "alloc_int.h"
#include "segments/crash.h"
#include "segments/err.h"


#define LARGE_MAX (UINT64_C(1) << 46)

/* ---------------------------------------------------------------------------------------------- */
/* The segment layer's callbacks (struct shmd__alloc_ops) and the transaction layer's steps. */

static uint64_t meta_bytes(uint64_t data_bytes) {
  uint64_t fixed = (sizeof(struct shmd__seg_alloc) + 63) & ~UINT64_C(63);
  return (fixed + data_bytes / SHMD_PAGE_BYTES + 1 + SHMD_PAGE_BYTES - 1) & ~(uint64_t)(SHMD_PAGE_BYTES - 1);
}

static void seg_init(struct shmd__seg_hdr *h) {
  struct shmd__seg_alloc *sa = shmd__sa(h);
  memset(sa, 0, sizeof *sa);
  sa->magic = SHMD__ALLOC_MAGIC;
  sa->data_off = h->data_off;
  sa->data_bytes = h->data_bytes;
  sa->page_count = h->data_bytes / SHMD_PAGE_BYTES;
  sa->pagemap_off = h->alloc_off + ((sizeof *sa + 63) & ~(uint64_t)63);
  sa->nclasses = SHMD__NCLASSES;
  shmd__buddy_init(h);
}

static int free_impl(shmd_store_t *s, struct shmd__thr *t, shmd_ptr_t p, uint64_t *extra, uint64_t extra_val);

static int heap_free(shmd_store_t *s, struct shmd__thr *t, shmd_ptr_t p);

/* Recovery's and the transaction's frees. A free of the thread's own lane record (its deferred
 * frees after commit, its reservations on abort: exactly these two counters, which recovery's
 * settle_crossing() knows) may go to its heap: the push commits first, then the lane word (heap.c's
 * essay: crossing into a transaction). Anything else, in particular a recoverer freeing a dead
 * lane's blocks, or the lane's extension blocks, is a locked step that changes the lane word in the
 * same logged step. */
int shmd__alloc_free_step(shmd_store_t *s, struct shmd__thr *t, shmd_ptr_t p, uint64_t *extra, uint64_t extra_val) {
  if (t->heap != NULL && !t->in_al && (extra == &t->lane->dfree_done || extra == &t->lane->resv_count)) {
    int rc = heap_free(s, t, p);
    if (rc != 1) {
      if (rc == 0) {
        SHMD_CRASH_POINT("heap.crossing");
        __atomic_store_n(extra, extra_val, __ATOMIC_RELEASE);
      }
      return rc;
    }
  }
  return free_impl(s, t, p, extra, extra_val);
}

static int alloc_impl(shmd_store_t *s, struct shmd__thr *t, size_t size, int resv, shmd_ptr_t *out);

int shmd__alloc_word(shmd_store_t *s, struct shmd__thr *t, size_t size, uint64_t *word, shmd_ptr_t *out) {
  t->alloc_word = word;
  int rc = alloc_impl(s, t, size, 2, out);
  t->alloc_word = NULL;
  return rc;
}

/* Private stores: gives the pages of big free blocks of every segment this process has mapped back
 * to the kernel, one segment per step under its buddy lock (shmd__buddy_release). Called by
 * shmd__al_commit when this thread has freed SHMD__RELEASE_EVERY pages since the last time. A
 * damaged free list stops it silently: the checks and the next allocation report the damage. */
static void release(shmd_store_t *s, struct shmd__thr *t) {
  t->release_due = 0;
  t->freed_pages = 0;
  uint32_t n = shmd__seg_count(s);
  for (uint32_t seg = 0; seg < n && seg < SHMD_MAX_SEGMENTS; seg++) {
    unsigned char *b = __atomic_load_n(&s->map->base[seg + 1], __ATOMIC_ACQUIRE);
    if (b == NULL)
      continue; /* never mapped here: nothing of ours to give back */
    struct shmd__seg_hdr *h = (struct shmd__seg_hdr *)(void *)b;
    struct shmd__seg_alloc *sa = shmd__sa(h);
    if (shmd__al_lock(s, t, seg, &sa->buddy_lock))
      return;
    int rc = shmd__buddy_release(h, SHMD__RELEASE_MIN_ORDER);
    shmd__al_commit(s, t); /* nothing was logged: only releases the lock */
    if (rc)
      return;
  }
}

static const struct shmd__alloc_ops alloc_ops = {meta_bytes, seg_init, release};

const struct shmd__alloc_ops *shmd__alloc_layer_ops(void) { return &alloc_ops; }

/* ---------------------------------------------------------------------------------------------- */
/* Allocation. */

/* Inside a step: records p in the lane's reservations, in the same logged step. */
static inline void reserve(shmd_store_t *s, struct shmd__thr *t, shmd_ptr_t p) {
  struct shmd__lane *l = t->lane;
  uint64_t n = l->resv_count;
  *shmd__resv_slot(t, n) = p.v;
  shmd__al_log(t, 0, s->map->base[1], &l->resv_count);
  l->resv_count = n + 1;
}

static inline void extra_store(shmd_store_t *s, struct shmd__thr *t, uint64_t *extra, uint64_t val) {
  if (extra) {
    shmd__al_log(t, 0, s->map->base[1], extra);
    *extra = val;
  }
}

static int alloc_small_in(shmd_store_t *s, struct shmd__thr *t, uint32_t seg, uint32_t c, int resv,
                          shmd_ptr_t *out) {
  struct shmd__seg_hdr *h = shmd__seg(s, seg);
  if (h == NULL)
    return SHMD_ENOTFOUND;
  struct shmd__seg_alloc *sa = shmd__sa(h);
  int rc = shmd__al_lock(s, t, seg, &sa->cls[c].lock);
  if (rc)
    return rc;
  uint64_t off;
  rc = shmd__slab_alloc(s, t, seg, h, c, &off);
  if (rc) {
    shmd__al_abort(s, t);
    return rc;
  }
  shmd_ptr_t p = shmd_ptr_make(seg, off);
  if (resv == 1)
    reserve(s, t, p);
  else if (resv == 2)
    extra_store(s, t, t->alloc_word, p.v);
  SHMD_CRASH_POINT("alloc.small.logged");
  shmd__al_commit(s, t);
  *out = p;
  return 0;
}

static int alloc_large_in(shmd_store_t *s, struct shmd__thr *t, uint32_t seg, uint32_t order, int resv,
                          shmd_ptr_t *out) {
  struct shmd__seg_hdr *h = shmd__seg(s, seg);
  if (h == NULL)
    return SHMD_ENOTFOUND;
  struct shmd__seg_alloc *sa = shmd__sa(h);
  if (order > sa->max_order)
    return SHMD_ENOSPC;
  int rc = shmd__al_lock(s, t, seg, &sa->buddy_lock);
  if (rc)
    return rc;
  uint64_t page;
  rc = shmd__buddy_alloc(t, seg, h, order, PM_LARGE, &page);
  if (rc) {
    shmd__al_abort(s, t);
    return rc;
  }
  shmd_ptr_t p = shmd_ptr_make(seg, sa->data_off + page * SHMD_PAGE_BYTES);
  if (resv == 1)
    reserve(s, t, p);
  else if (resv == 2)
    extra_store(s, t, t->alloc_word, p.v);
  SHMD_CRASH_POINT("alloc.large.logged");
  shmd__al_commit(s, t);
  *out = p;
  return 0;
}

/* Pops class c's top object from heap hp into *out; 0 when the stack is empty. With `resv`, the
 * lane's reservation is written (and its count published) before the stack's count: see heap.c. */
static inline int heap_pop(struct shmd__thr *t, struct shmd__heap *hp, uint32_t c, int resv, shmd_ptr_t *out) {
  struct shmd__heap_bin *b = &hp->bin[c];
  uint32_t n = b->count;
  if (__builtin_expect(n == 0, 0))
    return 0;
  uint64_t p = hp->slot[c][n - 1];
  if (resv) {
    /* shmd_tx_alloc() made sure the slot exists (t->resv_room). */
    struct shmd__lane *l = t->lane;
    uint64_t r = l->resv_count;
    *shmd__resv_slot(t, r) = p;
    __atomic_store_n(&l->resv_count, r + 1, __ATOMIC_RELEASE);
    SHMD_CRASH_POINT("heap.crossing");
  }
  __atomic_store_n(&b->count, n - 1, __ATOMIC_RELEASE);
  out->v = p;
  return 1;
}

static inline uint32_t order_for(size_t size) {
  uint64_t pages = (size + SHMD_PAGE_BYTES - 1) / SHMD_PAGE_BYTES;
  uint32_t o = 0;
  while ((UINT64_C(1) << o) < pages)
    o++;
  return o;
}

static int alloc_impl(shmd_store_t *s, struct shmd__thr *t, size_t size, int resv, shmd_ptr_t *out) {
  if (size == 0)
    size = 1;
  int small = size <= SHMD_SMALL_MAX;
  if (!small && size > LARGE_MAX) {
    shmd__set_detail("allocation of %zu bytes is larger than the largest block (2^46 bytes)", size);
    return SHMD_ETOOBIG;
  }
  uint32_t c = small ? shmd__size_class(size) : 0;
  uint32_t order = small ? 0 : order_for(size);
  /* A process-wide hint that threads read and write without a lock: relaxed atomics, since a
   * stale value only costs a try in another segment. */
  uint32_t *hint = small ? &s->alloc_hint[c] : &s->large_hint;
  struct shmd__heap *hp = NULL;
  if (__builtin_expect(small, 1)) {
    /* Mode 2 (a lane word owns the block: extension blocks) takes the locked path, whose step
     * stores the word; the heap's crossing rules cover reservations and deferred frees only. */
    if (t->heap_state == 0 && resv != 2)
      shmd__heap_attach(s, t);
    hp = resv != 2 ? t->heap : NULL;
    if (hp != NULL) {
      if (heap_pop(t, hp, c, resv, out))
        return 0;
      /* Empty: a batch from the depot (objects other threads freed) before the slabs. */
      if (t->depot != NULL) {
        int rc = shmd__depot_take(s, t, c);
        if (rc == 0)
          return heap_pop(t, hp, c, resv, out) ? 0 : SHMD_ECORRUPT;
        if (rc < 0)
          return rc;
      }
    }
    /* The segment that served this class last time. */
    uint32_t h0 = __atomic_load_n(hint, __ATOMIC_RELAXED);
    int rc = hp ? shmd__heap_refill_in(s, t, h0, c) : alloc_small_in(s, t, h0, c, resv, out);
    if (rc == 0 && hp)
      return heap_pop(t, hp, c, resv, out) ? 0 : SHMD_ECORRUPT;
    if (__builtin_expect(rc != SHMD_ENOSPC && rc != SHMD_ENOTFOUND, 1))
      return rc;
  }
  int drained = 0;
  for (int round = 0; round < 64; round++) {
    uint32_t n = shmd__seg_count(s);
    uint32_t h = __atomic_load_n(hint, __ATOMIC_RELAXED);
    uint32_t start = h < n ? h : n - 1;
    for (uint32_t k = 0; k < n; k++) {
      uint32_t seg = start + k < n ? start + k : start + k - n;
      int rc = !small ? alloc_large_in(s, t, seg, order, resv, out)
               : hp   ? shmd__heap_refill_in(s, t, seg, c)
                      : alloc_small_in(s, t, seg, c, resv, out);
      if (rc == 0) {
        __atomic_store_n(hint, seg, __ATOMIC_RELAXED);
        if (hp)
          return heap_pop(t, hp, c, resv, out) ? 0 : SHMD_ECORRUPT;
        return 0;
      }
      if (rc != SHMD_ENOSPC)
        return rc;
    }
    uint64_t need = small ? SHMD_SLAB_BYTES : (SHMD_PAGE_BYTES << order);
    int rc = shmd__grow(s, t, n, need);
    if (rc == SHMD_ENOSPC && !drained && !t->in_al) {
      /* The store cannot grow. Free objects parked in the depot and in this thread's heap may
       * empty slabs that then go back to the buddy allocator: return them and try once more. */
      drained = 1;
      rc = shmd__depot_drain(s, t);
      for (uint32_t k = 0; rc == 0 && t->heap != NULL && k < SHMD__NCLASSES; k++)
        rc = shmd__heap_flush(s, t, t->heap, k, 0);
      if (rc < 0)
        return rc;
      continue;
    }
    if (rc < 0)
      return rc;
    __atomic_store_n(hint, n, __ATOMIC_RELAXED); /* the new segment (or a racing grower's) */
  }
  return SHMD_ENOSPC;
}

int shmd_alloc(shmd_store_t *store, size_t size, shmd_ptr_t *out) {
  int rc;
  struct shmd__thr *t = shmd__thr(store, &rc);
  if (__builtin_expect(t == NULL, 0))
    return rc;
  /* The fast path: a pop from the thread's heap (heap.c). */
  struct shmd__heap *hp = t->heap;
  if (__builtin_expect(hp != NULL && size - 1 < SHMD_SMALL_MAX, 1)) {
    uint32_t c = shmd__class_of_granule[(size + 15) >> 4];
    struct shmd__heap_bin *b = &hp->bin[c];
    uint32_t n = b->count;
    if (__builtin_expect(n != 0, 1)) {
      out->v = hp->slot[c][n - 1];
      __atomic_store_n(&b->count, n - 1, __ATOMIC_RELEASE);
      return 0;
    }
  }
  return alloc_impl(store, t, size, 0, out);
}

int shmd__alloc_reserved(shmd_store_t *s, struct shmd__thr *t, size_t size, shmd_ptr_t *out) {
  return alloc_impl(s, t, size, 1, out);
}

int shmd_calloc(shmd_store_t *store, size_t n, size_t size, shmd_ptr_t *out) {
  if (size && n > SIZE_MAX / size)
    return SHMD_ETOOBIG;
  shmd_ptr_t p;
  int rc = shmd_alloc(store, n * size, &p);
  if (rc)
    return rc;
  memset(shmd_resolve(store, p), 0, n * size);
  *out = p;
  return 0;
}

int shmd_alloc_in(shmd_store_t *store, uint32_t segment, size_t size, shmd_ptr_t *out) {
  int rc;
  struct shmd__thr *t = shmd__thr(store, &rc);
  if (t == NULL)
    return rc;
  if (segment >= shmd__seg_count(store))
    return SHMD_ENOTFOUND;
  if (size == 0)
    size = 1;
  if (size <= SHMD_SMALL_MAX)
    return alloc_small_in(store, t, segment, shmd__size_class(size), 0, out);
  if (size > LARGE_MAX)
    return SHMD_ETOOBIG;
  return alloc_large_in(store, t, segment, order_for(size), 0, out);
}

size_t shmd_good_size(size_t size) {
  if (size == 0)
    size = 1;
  if (size <= SHMD_SMALL_MAX)
    return shmd__class_bytes[shmd__size_class(size)];
  if (size > LARGE_MAX)
    return size;
  return (size_t)SHMD_PAGE_BYTES << order_for(size);
}

/* ---------------------------------------------------------------------------------------------- */
/* Free. */

/* Classifies p: returns 1 for a large block (order in *order), 2 for a slab object (slab offset in
 * *slab), or SHMD_EINVAL. Reads without locks; callers re-check under the lock. */
static int classify(shmd_store_t *s, shmd_ptr_t p, struct shmd__seg_hdr **hp, uint64_t *page, uint32_t *order,
                    uint64_t *slab) {
  uint32_t seg = shmd_ptr_segment(p);
  struct shmd__seg_hdr *h = shmd__seg(s, seg);
  if (h == NULL)
    return SHMD_EINVAL;
  struct shmd__seg_alloc *sa = shmd__sa(h);
  if (!shmd__sa_is_valid(h, sa)) /* the page map lookup below trusts its offsets */
    return SHMD_CORRUPT("allocator metadata header is damaged");
  uint64_t off = shmd_ptr_offset(p);
  if (off < sa->data_off || off >= sa->data_off + sa->data_bytes)
    return SHMD_EINVAL;
  const unsigned char *pm = shmd__pagemap(h, sa);
  uint64_t pg = (off - sa->data_off) / SHMD_PAGE_BYTES;
  unsigned char b = __atomic_load_n(&pm[pg], __ATOMIC_RELAXED);
  *hp = h;
  if ((b & PM_KIND) == PM_LARGE) {
    if ((off - sa->data_off) % SHMD_PAGE_BYTES != 0)
      return SHMD_EINVAL;
    *page = pg;
    *order = b & PM_ORDER;
    return 1;
  }
  uint64_t spg = pg & ~(uint64_t)((SHMD_SLAB_BYTES / SHMD_PAGE_BYTES) - 1);
  if (__atomic_load_n(&pm[spg], __ATOMIC_RELAXED) != (PM_SLAB | SHMD__SLAB_ORDER))
    return SHMD_EINVAL;
  *page = spg;
  *slab = sa->data_off + spg * SHMD_PAGE_BYTES;
  return 2;
}

static int free_impl(shmd_store_t *s, struct shmd__thr *t, shmd_ptr_t p, uint64_t *extra, uint64_t extra_val) {
  struct shmd__seg_hdr *h;
  uint64_t page = 0, slab = 0;
  uint32_t order = 0, seg = shmd_ptr_segment(p);
  int kind = classify(s, p, &h, &page, &order, &slab);
  if (kind < 0)
    return kind;
  struct shmd__seg_alloc *sa = shmd__sa(h);
  unsigned char *pm = shmd__pagemap(h, sa);
  int rc;
  if (kind == 1) {
    rc = shmd__al_lock(s, t, seg, &sa->buddy_lock);
    if (rc)
      return rc;
    if (pm[page] != (PM_LARGE | order)) {
      shmd__al_abort(s, t);
      return SHMD_EINVAL;
    }
    rc = shmd__buddy_free(t, seg, h, page, order);
  } else {
    const struct shmd__slab *sl = (const struct shmd__slab *)(const void *)((unsigned char *)h + slab);
    uint32_t c = __atomic_load_n(&sl->magic_class, __ATOMIC_RELAXED) & 0xff;
    if (c >= SHMD__NCLASSES)
      return SHMD_CORRUPT("slab class out of range");
    rc = shmd__al_lock(s, t, seg, &sa->cls[c].lock);
    if (rc)
      return rc;
    if (pm[page] != (PM_SLAB | SHMD__SLAB_ORDER) || (sl->magic_class & 0xff) != c) {
      shmd__al_abort(s, t);
      return SHMD_EINVAL;
    }
    rc = shmd__slab_free(s, t, seg, h, slab, shmd_ptr_offset(p));
  }
  if (rc) {
    shmd__al_abort(s, t);
    return rc;
  }
  extra_store(s, t, extra, extra_val);
  SHMD_CRASH_POINT("free.logged");
  shmd__al_commit(s, t);
  return 0;
}

/*
 * Pushes small object p onto the thread's heap: 0 when done, 1 when p is not a small object this
 * path can validate (the caller takes the locked path, which gives the precise status), or a
 * status from a flush. Validation without locks: p must be inside a data area, its 64 KiB block
 * must be a slab in the page map (an allocated object's slab cannot go away meanwhile), at a slot
 * start below the slab's bump pointer; when the page map carries the slab's class (layout 1.4, a
 * slab whose every slot has been handed out: alloc_int.h), at a slot start of that class, without
 * reading the slab header. A double free is not detected (as before; the checker
 * reports a duplicate in the caches).
 */
static inline int heap_push(shmd_store_t *s, struct shmd__heap *hp, shmd_ptr_t p) {
  const unsigned char *base = s->map->base[p.v >> SHMD_PTR_OFFSET_BITS];
  if (__builtin_expect(base == NULL, 0))
    return 1;
  const struct shmd__seg_hdr *h = (const struct shmd__seg_hdr *)(const void *)base;
  const struct shmd__seg_alloc *sa = (const struct shmd__seg_alloc *)(const void *)(base + h->alloc_off);
  /* Bounds come from the segment header (checksummed, never changes) so that a damaged allocator
   * header cannot send the reads below outside the mapping: such a pointer takes the checked path,
   * which reports the damage. */
  uint64_t off = shmd_ptr_offset(p), rel = off - h->data_off;
  if (__builtin_expect(rel >= h->data_bytes, 0))
    return 1;
  /* Data areas start 64 KiB aligned, so a slab's header is at the offset masked to 64 KiB. */
  uint64_t pmi = sa->pagemap_off + ((rel / SHMD_PAGE_BYTES) & ~(uint64_t)(SHMD_SLAB_BYTES / SHMD_PAGE_BYTES - 1));
  if (__builtin_expect(pmi >= h->data_off - SHMD__PM_CLASS_PAGE, 0) || /* data_off >= 64 KiB: no wrap */
      __atomic_load_n(&base[pmi], __ATOMIC_RELAXED) != (PM_SLAB | SHMD__SLAB_ORDER))
    return 1;
  uint32_t obj = (uint32_t)(off & (SHMD_SLAB_BYTES - 1)), x = obj - SHMD__SLAB_HDR, c, end;
  uint32_t cb = __atomic_load_n(&base[pmi + SHMD__PM_CLASS_PAGE], __ATOMIC_RELAXED);
  if (__builtin_expect(cb != 0, 1)) {
    /* Layout 1.4, every slot handed out once: the class from the page map, no slab header read;
     * a slot start is valid if a whole object fits after it. */
    c = cb - 1;
    if (__builtin_expect(c >= SHMD__NCLASSES, 0))
      return 1;
    end = SHMD_SLAB_BYTES - shmd__class_bytes[c] + 1;
  } else {
    const struct shmd__slab *sl =
        (const struct shmd__slab *)(const void *)(base + (off & ~(uint64_t)(SHMD_SLAB_BYTES - 1)));
    uint32_t mc = __atomic_load_n(&sl->magic_class, __ATOMIC_RELAXED);
    c = mc & 0xff;
    if (__builtin_expect((mc >> 8) != SLAB_MAGIC || c >= SHMD__NCLASSES, 0))
      return 1;
    end = __atomic_load_n(&sl->bump, __ATOMIC_RELAXED);
  }
  if (__builtin_expect(obj < SHMD__SLAB_HDR || obj >= end ||
                           (uint32_t)(((uint64_t)x * shmd__class_recip[c]) >> 32) * shmd__class_bytes[c] != x,
                       0))
    return 1;
  struct shmd__heap_bin *b = &hp->bin[c];
  uint32_t n = b->count;
  if (__builtin_expect(n >= b->limit, 0))
    return 2 + (int)c; /* full: the caller flushes */
  hp->slot[c][n] = p.v;
  __atomic_store_n(&b->count, n + 1, __ATOMIC_RELEASE);
  return 0;
}

/* heap_push with the flush of a full stack: 0 pushed, 1 not for the heap, or a status. */
static int heap_free(shmd_store_t *s, struct shmd__thr *t, shmd_ptr_t p) {
  struct shmd__heap *hp = t->heap;
  int rc = heap_push(s, hp, p);
  if (rc < 2)
    return rc;
  uint32_t c = (uint32_t)(rc - 2), keep = hp->bin[c].limit / 2;
  /* Half the stack goes to the depot, for other threads' refills; what it has no room for goes
   * back to the slabs. */
  rc = t->depot != NULL ? shmd__depot_put(s, t, c, keep) : 1;
  if (rc == 1)
    rc = shmd__heap_flush(s, t, hp, c, keep);
  if (rc)
    return rc;
  return heap_push(s, hp, p) == 0 ? 0 : 1;
}

int shmd_free(shmd_store_t *store, shmd_ptr_t p) {
  if (p.v == 0)
    return 0;
  int rc;
  struct shmd__thr *t = shmd__thr(store, &rc);
  if (__builtin_expect(t == NULL, 0))
    return rc;
  struct shmd__heap *hp = t->heap;
  if (__builtin_expect(hp != NULL, 1)) {
    rc = heap_push(store, hp, p);
    if (__builtin_expect(rc == 0, 1))
      return 0;
    if (rc >= 2 && (rc = heap_free(store, t, p)) != 1)
      return rc;
  } else if (t->heap_state == 0 && !t->in_al) {
    shmd__heap_attach(store, t);
    if (t->heap != NULL && (rc = heap_free(store, t, p)) != 1)
      return rc;
  }
  return free_impl(store, t, p, NULL, 0);
}

size_t shmd_usable_size(shmd_store_t *store, shmd_ptr_t p) {
  if (p.v == 0)
    return 0;
  struct shmd__seg_hdr *h;
  uint64_t page = 0, slab = 0;
  uint32_t order = 0;
  int kind = classify(store, p, &h, &page, &order, &slab);
  if (kind == 1)
    return (size_t)SHMD_PAGE_BYTES << order;
  if (kind == 2) {
    const struct shmd__slab *sl = (const struct shmd__slab *)(const void *)((unsigned char *)h + slab);
    uint32_t c = sl->magic_class & 0xff;
    uint64_t obj = shmd_ptr_offset(p) - slab;
    if (c < SHMD__NCLASSES && obj >= SHMD__SLAB_HDR && (obj - SHMD__SLAB_HDR) % shmd__class_bytes[c] == 0)
      return shmd__class_bytes[c];
  }
  return 0;
}

/* Resizes large block p in place to the order `size` needs, in one step under its segment's buddy
 * lock: 0 when done, else a status (SHMD_ENOSPC: its buddies are not free; the caller moves it). */
static int resize_large(shmd_store_t *s, shmd_ptr_t p, size_t size) {
  int rc;
  struct shmd__thr *t = shmd__thr(s, &rc);
  if (t == NULL)
    return rc;
  struct shmd__seg_hdr *h;
  uint64_t page = 0, slab = 0;
  uint32_t order = 0, seg = shmd_ptr_segment(p), want = order_for(size);
  if (classify(s, p, &h, &page, &order, &slab) != 1)
    return SHMD_EINVAL;
  struct shmd__seg_alloc *sa = shmd__sa(h);
  if ((rc = shmd__al_lock(s, t, seg, &sa->buddy_lock)) != 0)
    return rc;
  if (shmd__pagemap(h, sa)[page] != (PM_LARGE | order)) {
    shmd__al_abort(s, t);
    return SHMD_EINVAL;
  }
  rc = shmd__buddy_resize(t, seg, h, page, order, want);
  if (rc) {
    shmd__al_abort(s, t);
    return rc;
  }
  SHMD_CRASH_POINT("alloc.resize.logged");
  shmd__al_commit(s, t);
  return 0;
}

/* For the malloc shim: resizes large block p in place to hold `size` (> SHMD_SMALL_MAX) bytes; 0
 * when done, else a status and nothing changed. */
int shmd__resize_in_place(shmd_store_t *s, shmd_ptr_t p, size_t size) {
  if (size <= SHMD_SMALL_MAX || size > LARGE_MAX)
    return SHMD_EINVAL;
  return resize_large(s, p, size);
}

int shmd_realloc(shmd_store_t *store, shmd_ptr_t *p, size_t size) {
  if (p->v == 0)
    return shmd_alloc(store, size, p);
  if (size == 0) {
    int rc = shmd_free(store, *p);
    if (rc == 0)
      *p = shmd_ptr_null();
    return rc;
  }
  size_t have = shmd_usable_size(store, *p);
  if (have == 0)
    return SHMD_EINVAL;
  /* Stay in place when the block fits and would not be more than twice too big. */
  if (size <= have && shmd_good_size(size) * 2 > have)
    return 0;
  /* A large block that stays large grows into free buddies or gives up its upper halves, in
   * place, when it can. */
  if (have > SHMD_SMALL_MAX && size > SHMD_SMALL_MAX && size <= LARGE_MAX && resize_large(store, *p, size) == 0)
    return 0;
  shmd_ptr_t q;
  int rc = shmd_alloc(store, size, &q);
  if (rc)
    return rc;
  memcpy(shmd_resolve(store, q), shmd_resolve(store, *p), size < have ? size : have);
  rc = shmd_free(store, *p);
  if (rc) {
    shmd_free(store, q);
    return rc;
  }
  *p = q;
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Statistics: counters and slab headers read without stopping writers (each is exact under its lock;
 * a busy store's totals are a near snapshot; a quiet store's are exact). */

int shmd_segment_stats(shmd_store_t *store, uint32_t segment, shmd_segment_stats_t *st) {
  struct shmd__seg_hdr *h = segment < shmd__seg_count(store) ? shmd__seg(store, segment) : NULL;
  if (h == NULL)
    return SHMD_ENOTFOUND;
  struct shmd__seg_alloc *sa = shmd__sa(h);
  memset(st, 0, sizeof *st);
  if (!shmd__sa_is_valid(h, sa)) /* max_order bounds the loop below */
    return SHMD_CORRUPT("allocator metadata header is damaged");
  st->size_bytes = h->size_bytes;
  st->data_bytes = h->data_bytes;
  st->meta_bytes = h->data_off;
  st->free_bytes = __atomic_load_n(&sa->free_pages, __ATOMIC_RELAXED) * SHMD_PAGE_BYTES;
  for (uint32_t o = 0; o <= sa->max_order && o < 48 && o <= SHMD__MAX_ORDER; o++) {
    st->free_blocks[o] = __atomic_load_n(&sa->free_count[o], __ATOMIC_RELAXED);
    if (st->free_blocks[o])
      st->largest_free_block = (uint64_t)SHMD_PAGE_BYTES << o;
  }
  return 0;
}

int shmd_stats(shmd_store_t *store, shmd_stats_t *st) {
  memset(st, 0, sizeof *st);
  uint32_t n = shmd__seg_count(store);
  st->segments = n;
  st->nclasses = SHMD__NCLASSES;
  for (uint32_t c = 0; c < SHMD__NCLASSES; c++) {
    st->classes[c].obj_bytes = shmd__class_bytes[c];
    st->classes[c].objs_per_slab = (SHMD_SLAB_BYTES - SHMD__SLAB_HDR) / shmd__class_bytes[c];
  }
  for (uint32_t i = 0; i < n; i++) {
    struct shmd__seg_hdr *h = shmd__seg(store, i);
    if (h == NULL)
      return SHMD_CORRUPT("segment in the manifest cannot be mapped");
    struct shmd__seg_alloc *sa = shmd__sa(h);
    if (!shmd__sa_is_valid(h, sa)) /* the walk below trusts its page count and offsets */
      return SHMD_CORRUPT("allocator metadata header is damaged");
    shmd_segment_stats_t ss;
    shmd_segment_stats(store, i, &ss);
    st->store_bytes += h->size_bytes;
    st->meta_bytes += h->data_off + (h->size_bytes - h->data_off - h->data_bytes);
    st->alloc_meta_bytes += h->alloc_bytes;
    st->data_bytes += h->data_bytes;
    st->free_bytes += ss.free_bytes;
    if (ss.largest_free_block > st->largest_free_block)
      st->largest_free_block = ss.largest_free_block;
    st->large_blocks += __atomic_load_n(&sa->large_blocks, __ATOMIC_RELAXED);
    st->large_bytes_inuse += __atomic_load_n(&sa->large_pages, __ATOMIC_RELAXED) * SHMD_PAGE_BYTES;
    for (uint32_t c = 0; c < SHMD__NCLASSES; c++) {
      uint64_t slabs = __atomic_load_n(&sa->cls[c].slabs, __ATOMIC_RELAXED);
      st->classes[c].slabs += slabs;
      st->slab_bytes += slabs * SHMD_SLAB_BYTES;
    }
    /* Objects in use are counted per slab: walk the slab heads of the page map (1/4096 of the
     * data area) and add up their in-use counts. */
    const unsigned char *pm = shmd__pagemap(h, sa);
    for (uint64_t p = 0; p < sa->page_count;) {
      unsigned char b = __atomic_load_n(&pm[p], __ATOMIC_RELAXED);
      uint32_t o = b & PM_ORDER;
      if (b == 0 || o > sa->max_order) {
        p++;
        continue;
      }
      if ((b & PM_KIND) == PM_SLAB) {
        const struct shmd__slab *sl =
            (const struct shmd__slab *)(const void *)((unsigned char *)h + sa->data_off + p * SHMD_PAGE_BYTES);
        uint32_t c = __atomic_load_n(&sl->magic_class, __ATOMIC_RELAXED) & 0xff;
        uint64_t objs = __atomic_load_n(&sl->inuse, __ATOMIC_RELAXED);
        if (c < SHMD__NCLASSES) {
          uint64_t cap = (SHMD_SLAB_BYTES - SHMD__SLAB_HDR) / shmd__class_bytes[c];
          st->slab_free_bytes += (cap > objs ? cap - objs : 0) * shmd__class_bytes[c];
          st->slab_overhead_bytes += SHMD_SLAB_BYTES - cap * shmd__class_bytes[c];
          st->classes[c].objs_inuse += objs;
          st->classes[c].bytes_inuse += objs * shmd__class_bytes[c];
          st->small_objs_inuse += objs;
          st->small_bytes_inuse += objs * shmd__class_bytes[c];
        }
      }
      p += UINT64_C(1) << o;
    }
  }
  /* Thread heaps: their blocks are allocator metadata, their cached objects are free. */
  uint64_t hblocks, hpages, nheaps;
  st->heap_meta_bytes = shmd__heap_meta(store, &hblocks, &hpages, &nheaps);
  if (hblocks) {
    st->heaps = nheaps;
    st->large_blocks -= hblocks <= st->large_blocks ? hblocks : st->large_blocks;
    st->large_bytes_inuse -= st->heap_meta_bytes <= st->large_bytes_inuse ? st->heap_meta_bytes : st->large_bytes_inuse;
    st->alloc_meta_bytes += st->heap_meta_bytes;
  }
  for (uint32_t i = 0; i < store->man->lane_count; i++) {
    struct shmd__heap *hp = shmd__heap_of(store, i);
    if (hp == NULL)
      continue;
    for (uint32_t c = 0; c < SHMD__NCLASSES; c++) {
      uint64_t k = __atomic_load_n(&hp->bin[c].count, __ATOMIC_RELAXED);
      if (k > SHMD__HEAP_CAP)
        continue;
      if (k > st->classes[c].objs_inuse)
        k = st->classes[c].objs_inuse; /* a racing refill: keep the figures non-negative */
      uint64_t bytes = k * shmd__class_bytes[c];
      st->classes[c].objs_inuse -= k;
      st->classes[c].bytes_inuse -= bytes;
      st->small_objs_inuse -= k;
      st->small_bytes_inuse -= bytes;
      st->slab_free_bytes += bytes;
      st->heap_cached_objs += k;
      st->heap_cached_bytes += bytes;
    }
  }
  /* The depot's objects are free too. */
  struct shmd__depot *dp = shmd__depot_of(store);
  for (uint32_t c = 0; dp != NULL && c < SHMD__NCLASSES; c++) {
    uint64_t k = __atomic_load_n(&dp->cls[c].bin.count, __ATOMIC_RELAXED);
    if (k > SHMD__DEPOT_CAP)
      continue;
    if (k > st->classes[c].objs_inuse)
      k = st->classes[c].objs_inuse;
    uint64_t bytes = k * shmd__class_bytes[c];
    st->classes[c].objs_inuse -= k;
    st->classes[c].bytes_inuse -= bytes;
    st->small_objs_inuse -= k;
    st->small_bytes_inuse -= bytes;
    st->slab_free_bytes += bytes;
    st->depot_cached_objs += k;
    st->depot_cached_bytes += bytes;
  }
  st->allocated_bytes = st->small_bytes_inuse + st->large_bytes_inuse;
  st->recoveries = __atomic_load_n(&store->man->recoveries, __ATOMIC_RELAXED);
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Growth ahead of need: the policy. The segment layer owns the mechanics of spare segments (files
 * created, reserved in pieces, adopted by growth, orphans removed: segments/store.c, "Growth ahead
 * of need"); the allocator, which knows the free space, decides when one is wanted. */

#define AHEAD_EVERY 1024u                  /* calls between two looks at the free space (per thread) */
#define AHEAD_MIN_BLOCK (UINT64_C(2) << 20) /* announced blocks from 2 MiB on get a spare of their own */

/*
 * Every AHEAD_EVERY calls of a thread, sums the store's free buddy space and its largest free block
 * (shmd_segment_stats(), a few loads per segment) and asks for a spare growth segment when less
 * than half a growth segment is free; otherwise, for an announced block of AHEAD_MIN_BLOCK or more
 * that no free block can hold, a spare big enough for it (a 128 MiB hash table needs a segment of
 * its own). Every other call reserves one more piece of a spare in progress, so a reservation is
 * spread over a few thousand calls; with none in progress a call is one relaxed load.
 */
int shmd_alloc_expect(shmd_store_t *store, size_t bytes) {
  static _Thread_local uint32_t tick;
  if (store == NULL)
    return SHMD_EINVAL;
  if (++tick % AHEAD_EVERY != 0) {
    shmd__grow_ahead(store, 0, 0);
    return 0;
  }
  uint32_t n = shmd__seg_count(store);
  uint64_t free_bytes = 0, largest = 0;
  for (uint32_t i = 0; i < n; i++) {
    shmd_segment_stats_t st;
    if (shmd_segment_stats(store, i, &st) == 0) {
      free_bytes += st.free_bytes;
      largest = st.largest_free_block > largest ? st.largest_free_block : largest;
    }
  }
  if (free_bytes < store->man->grow_seg_bytes / 2 && shmd__grow_ahead(store, 0, 1))
    return 0; /* one step per call */
  if (bytes >= AHEAD_MIN_BLOCK && largest < bytes)
    shmd__grow_ahead(store, bytes, 1);
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* For the malloc shim (malloc/): the lock-free fast paths alone, so that the shim can hold its
 * fork guard around everything else. Return 1 when served, 0 when the caller must take the full
 * call (nothing was changed). */

int shmd__alloc_fast(shmd_store_t *s, size_t size, shmd_ptr_t *out) {
  struct shmd__thr *t = shmd__tl_thr;
  if (t == NULL || t->store != s || t->fork_gen != shmd__fork_gen || t->heap == NULL || size - 1 >= SHMD_SMALL_MAX)
    return 0;
  struct shmd__heap *hp = t->heap;
  uint32_t c = shmd__class_of_granule[(size + 15) >> 4];
  struct shmd__heap_bin *b = &hp->bin[c];
  uint32_t n = b->count;
  if (n == 0)
    return 0;
  out->v = hp->slot[c][n - 1];
  __atomic_store_n(&b->count, n - 1, __ATOMIC_RELEASE);
  return 1;
}

int shmd__free_fast(shmd_store_t *s, shmd_ptr_t p) {
  struct shmd__thr *t = shmd__tl_thr;
  if (t == NULL || t->store != s || t->fork_gen != shmd__fork_gen || t->heap == NULL)
    return 0;
  return heap_push(s, t->heap, p) == 0;
}
