/* SPDX-License-Identifier: MIT */
/*
 * The buddy allocator of one segment: blocks of 2^k pages (4 KiB) carved out of the data area.
 *
 * Design
 * ------
 * Free blocks of each order sit on an intrusive doubly linked list whose links (segment offsets)
 * live in the first 16 bytes of the free block itself; no header precedes an allocated block. The
 * page map (one byte per page) records, at the head page of every block, its kind (free, slab,
 * large) and order; interior pages hold 0. Blocks are aligned to their own size relative to the
 * start of the data area, so the buddy of the block at page p of order k is at p ^ 2^k.
 *
 *   split (alloc of order 1 from a free order-3 block):
 *     [...............3...............]            before
 *     [...1...|...1...|.......2.......]            the right halves go back on the lists
 *      taken    free        free
 *
 *   coalesce (free): while the buddy is a free block of the same order, unlink it, clear its head
 *   byte and continue one order up with the lower of the two; finally push the merged block.
 *
 * The data area need not be a power of two: it starts as the greedy sequence of the largest
 * aligned blocks that fit, and a buddy that would extend past the end is never free.
 *
 * Every word changed is first logged in the lane's allocator log (shmd__al_log), so a process
 * killed in the middle of a split or a merge is rolled back by the next holder of the buddy lock.
 * The caller holds the segment's buddy lock (alloc_int.h has the lock order).
 */
#include <string.h>

#include "alloc_int.h"
#include "segments/crash.h"
#include "segments/err.h"
#include "segments/os.h"

static inline struct shmd__fblock *fb(struct shmd__seg_hdr *h, uint64_t off) {
  return (struct shmd__fblock *)(void *)((unsigned char *)h + off);
}

static inline uint64_t page_off(struct shmd__seg_alloc *sa, uint64_t page) {
  return sa->data_off + page * SHMD_PAGE_BYTES;
}

/* Bounds check of a free-list offset read from shared memory. */
static inline int fb_ok(struct shmd__seg_alloc *sa, uint64_t off) {
  return off >= sa->data_off && off < sa->data_off + sa->data_bytes &&
         ((off - sa->data_off) % SHMD_PAGE_BYTES) == 0;
}

static int list_remove(struct shmd__thr *t, uint32_t seg, struct shmd__seg_hdr *h,
                       struct shmd__seg_alloc *sa, uint32_t order, uint64_t off) {
  struct shmd__fblock *b = fb(h, off);
  if ((b->next && !fb_ok(sa, b->next)) || (b->prev && !fb_ok(sa, b->prev)))
    return SHMD_CORRUPT("buddy free-list link out of bounds");
  if (b->prev) {
    struct shmd__fblock *p = fb(h, b->prev);
    shmd__log8(t, seg, h, &p->next);
    p->next = b->next;
  } else {
    if (sa->free_head[order] != off)
      return SHMD_CORRUPT("buddy free-list head does not match");
    shmd__log8(t, seg, h, &sa->free_head[order]);
    sa->free_head[order] = b->next;
  }
  if (b->next) {
    struct shmd__fblock *n = fb(h, b->next);
    shmd__log8(t, seg, h, &n->prev);
    n->prev = b->prev;
  }
  shmd__log8(t, seg, h, &sa->free_count[order]);
  __atomic_store_n(&sa->free_count[order], sa->free_count[order] - 1, __ATOMIC_RELAXED); /* stats read it */
  /* The block's own links: whoever takes the block overwrites them, and a rollback needs them. */
  shmd__log8(t, seg, h, &b->next);
  shmd__log8(t, seg, h, &b->prev);
  return 0;
}

/* Pushes the block at `off` (whose links may be logged or fresh) onto the list of `order`. */
static void list_push(struct shmd__thr *t, uint32_t seg, struct shmd__seg_hdr *h, struct shmd__seg_alloc *sa,
                      uint32_t order, uint64_t off, int log_block) {
  struct shmd__fblock *b = fb(h, off);
  uint64_t head = sa->free_head[order];
  if (log_block) {
    shmd__log8(t, seg, h, &b->next);
    shmd__log8(t, seg, h, &b->prev);
  }
  b->next = head;
  b->prev = 0;
  if (head) {
    struct shmd__fblock *n = fb(h, head);
    shmd__log8(t, seg, h, &n->prev);
    n->prev = off;
  }
  shmd__log8(t, seg, h, &sa->free_head[order]);
  sa->free_head[order] = off;
  shmd__log8(t, seg, h, &sa->free_count[order]);
  __atomic_store_n(&sa->free_count[order], sa->free_count[order] + 1, __ATOMIC_RELAXED);
}

static inline void set_pm(struct shmd__thr *t, uint32_t seg, struct shmd__seg_hdr *h, unsigned char *pm,
                          uint64_t page, unsigned char v) {
  shmd__log_byte(t, seg, h, &pm[page]);
  /* Atomic (relaxed) because the lock-free free reads page-map bytes without the buddy lock. */
  __atomic_store_n(&pm[page], v, __ATOMIC_RELAXED);
}

/* Counts pages given back by a free or a shrink; on a private store, asks for a release of free
 * pages every SHMD__RELEASE_EVERY pages (shmd__al_commit acts on it once the locks are released). */
static inline void count_freed(struct shmd__thr *t, uint64_t pages) {
  if (t->store->private_maps && (t->freed_pages += pages) >= SHMD__RELEASE_EVERY)
    t->release_due = 1;
}

int shmd__buddy_release(struct shmd__seg_hdr *h, uint32_t min_order) {
  struct shmd__seg_alloc *sa = shmd__sa(h);
  const unsigned char *pm = shmd__pagemap(h, sa);
  if (min_order < 1)
    min_order = 1; /* an order-0 block is only its first page */
  uint64_t budget = sa->page_count + 1; /* a cycle in a damaged list must not loop for ever */
  for (uint32_t o = min_order; o <= sa->max_order && o < SHMD__MAX_ORDER + 1; o++) {
    for (uint64_t off = sa->free_head[o]; off != 0; off = fb(h, off)->next) {
      uint64_t page = (off - sa->data_off) / SHMD_PAGE_BYTES;
      if (!fb_ok(sa, off) || budget-- == 0 || page + (UINT64_C(1) << o) > sa->page_count ||
          pm[page] != (PM_FREE | o))
        return SHMD_CORRUPT("buddy free list damaged (seen while releasing free pages)");
      /* Aged: a block is released at the second pass that finds it free, so that blocks freed
       * and taken again between two passes (a program's working set) are not faulted in anew. */
      struct shmd__fblock *b = fb(h, off);
      uint64_t shape = (off << 6) | o;
      if (b->release_hint == (SHMD__FB_RELEASED ^ shape))
        continue;
      /* Seen at any order: a block that grew by merging since the last pass counts as seen (else a
       * run of frees that keeps merging would never age). Released only at its exact shape. */
      if (((b->release_hint ^ SHMD__FB_SEEN) >> 6) != off) {
        b->release_hint = SHMD__FB_SEEN ^ shape;
        continue;
      }
      shmd__os_release((unsigned char *)h + off + SHMD_PAGE_BYTES, ((UINT64_C(1) << o) - 1) * SHMD_PAGE_BYTES);
      b->release_hint = SHMD__FB_RELEASED ^ shape;
      SHMD_CRASH_POINT("buddy.release");
    }
  }
  return 0;
}

int shmd__buddy_alloc(struct shmd__thr *t, uint32_t seg, struct shmd__seg_hdr *h, uint32_t order,
                      unsigned kind, uint64_t *page_out) {
  struct shmd__seg_alloc *sa = shmd__sa(h);
  unsigned char *pm = shmd__pagemap(h, sa);
  if (order > sa->max_order)
    return SHMD_ENOSPC;
  uint32_t o = order;
  while (o <= sa->max_order && sa->free_head[o] == 0)
    o++;
  if (o > sa->max_order)
    return SHMD_ENOSPC;
  /* Worst case log: ~6 words per level split plus the removal; make sure it fits. */
  if (shmd__al_room(t) < 8u * (o - order + 2))
    return SHMD_ENOSPC;
  uint64_t off = sa->free_head[o];
  if (!fb_ok(sa, off))
    return SHMD_CORRUPT("buddy free-list head out of bounds");
  uint64_t page = (off - sa->data_off) / SHMD_PAGE_BYTES;
  if (pm[page] != (PM_FREE | o))
    return SHMD_CORRUPT("free-list block is not marked free in the page map");
  int rc = list_remove(t, seg, h, sa, o, off);
  if (rc)
    return rc;
  while (o > order) {
    o--;
    uint64_t half = page + (UINT64_C(1) << o);
    set_pm(t, seg, h, pm, half, (unsigned char)(PM_FREE | o));
    list_push(t, seg, h, sa, o, page_off(sa, half), 0);
    SHMD_CRASH_POINT("buddy.split");
  }
  set_pm(t, seg, h, pm, page, (unsigned char)(kind | order));
  shmd__log8(t, seg, h, &sa->free_pages);
  __atomic_store_n(&sa->free_pages, sa->free_pages - (UINT64_C(1) << order), __ATOMIC_RELAXED);
  if (kind == PM_LARGE) {
    shmd__log8(t, seg, h, &sa->large_blocks);
    shmd__log8(t, seg, h, &sa->large_pages);
    __atomic_store_n(&sa->large_blocks, sa->large_blocks + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&sa->large_pages, sa->large_pages + (UINT64_C(1) << order), __ATOMIC_RELAXED);
  }
  *page_out = page;
  return 0;
}

int shmd__buddy_free(struct shmd__thr *t, uint32_t seg, struct shmd__seg_hdr *h, uint64_t page,
                     uint32_t order) {
  struct shmd__seg_alloc *sa = shmd__sa(h);
  unsigned char *pm = shmd__pagemap(h, sa);
  if (page >= sa->page_count || order > sa->max_order)
    return SHMD_CORRUPT("buddy free of a block outside the data area");
  unsigned kind = pm[page] & PM_KIND;
  if (shmd__al_room(t) < 12u * (sa->max_order - order + 2))
    return SHMD_ENOSPC;
  shmd__log8(t, seg, h, &sa->free_pages);
  __atomic_store_n(&sa->free_pages, sa->free_pages + (UINT64_C(1) << order), __ATOMIC_RELAXED);
  if (kind == PM_LARGE) {
    shmd__log8(t, seg, h, &sa->large_blocks);
    shmd__log8(t, seg, h, &sa->large_pages);
    __atomic_store_n(&sa->large_blocks, sa->large_blocks - 1, __ATOMIC_RELAXED);
    __atomic_store_n(&sa->large_pages, sa->large_pages - (UINT64_C(1) << order), __ATOMIC_RELAXED);
  }
  set_pm(t, seg, h, pm, page, 0);
  count_freed(t, UINT64_C(1) << order);
  while (order < sa->max_order) {
    uint64_t buddy = page ^ (UINT64_C(1) << order);
    if (buddy + (UINT64_C(1) << order) > sa->page_count || pm[buddy] != (PM_FREE | order))
      break;
    int rc = list_remove(t, seg, h, sa, order, page_off(sa, buddy));
    if (rc)
      return rc;
    set_pm(t, seg, h, pm, buddy, 0);
    SHMD_CRASH_POINT("buddy.merge");
    if (buddy < page)
      page = buddy;
    order++;
  }
  set_pm(t, seg, h, pm, page, (unsigned char)(PM_FREE | order));
  list_push(t, seg, h, sa, order, page_off(sa, page), 1);
  return 0;
}

/*
 * Resizes the large block at `page` from 2^order to 2^new_order pages in place (realloc without a
 * copy). Growing needs the block to be the lower half at every level up to new_order and each
 * upper half to be a free block of exactly that order; they are taken off their lists and the
 * block's head byte gets the new order. Shrinking gives the upper halves back as free blocks (their
 * buddies are the block itself, so nothing merges). SHMD_ENOSPC, with nothing changed, when the
 * block cannot grow (or the log has no room).
 *
 *   grow 1 -> 3:  [.1 used.|.1 free.|.....2 free.....]  ->  [.............3 used.............]
 */
int shmd__buddy_resize(struct shmd__thr *t, uint32_t seg, struct shmd__seg_hdr *h, uint64_t page, uint32_t order,
                       uint32_t new_order) {
  struct shmd__seg_alloc *sa = shmd__sa(h);
  unsigned char *pm = shmd__pagemap(h, sa);
  if (page >= sa->page_count || order > sa->max_order || pm[page] != (PM_LARGE | order))
    return SHMD_CORRUPT("resize of a block that is not a large block");
  if (new_order == order)
    return 0;
  uint64_t diff;
  if (new_order > order) {
    if (new_order > sa->max_order || (page & ((UINT64_C(1) << new_order) - 1)) != 0)
      return SHMD_ENOSPC;
    for (uint32_t o = order; o < new_order; o++) {
      uint64_t b = page + (UINT64_C(1) << o);
      if (b + (UINT64_C(1) << o) > sa->page_count || pm[b] != (PM_FREE | o))
        return SHMD_ENOSPC;
    }
    if (shmd__al_room(t) < 8u * (new_order - order) + 16u)
      return SHMD_ENOSPC;
    for (uint32_t o = order; o < new_order; o++) {
      uint64_t b = page + (UINT64_C(1) << o);
      int rc = list_remove(t, seg, h, sa, o, page_off(sa, b));
      if (rc)
        return rc;
      set_pm(t, seg, h, pm, b, 0);
      SHMD_CRASH_POINT("buddy.grow");
    }
    diff = (UINT64_C(1) << new_order) - (UINT64_C(1) << order);
    shmd__log8(t, seg, h, &sa->free_pages);
    __atomic_store_n(&sa->free_pages, sa->free_pages - diff, __ATOMIC_RELAXED);
    shmd__log8(t, seg, h, &sa->large_pages);
    __atomic_store_n(&sa->large_pages, sa->large_pages + diff, __ATOMIC_RELAXED);
  } else {
    if (shmd__al_room(t) < 8u * (order - new_order) + 16u)
      return SHMD_ENOSPC;
    for (uint32_t o = order; o-- > new_order;) {
      uint64_t b = page + (UINT64_C(1) << o);
      set_pm(t, seg, h, pm, b, (unsigned char)(PM_FREE | o));
      list_push(t, seg, h, sa, o, page_off(sa, b), 1);
      SHMD_CRASH_POINT("buddy.shrink");
    }
    diff = (UINT64_C(1) << order) - (UINT64_C(1) << new_order);
    count_freed(t, diff);
    shmd__log8(t, seg, h, &sa->free_pages);
    __atomic_store_n(&sa->free_pages, sa->free_pages + diff, __ATOMIC_RELAXED);
    shmd__log8(t, seg, h, &sa->large_pages);
    __atomic_store_n(&sa->large_pages, sa->large_pages - diff, __ATOMIC_RELAXED);
  }
  set_pm(t, seg, h, pm, page, (unsigned char)(PM_LARGE | new_order));
  return 0;
}

/* Fresh segment: the whole data area as the greedy run of the largest aligned blocks. Not logged:
 * the segment is not published yet. */
void shmd__buddy_init(struct shmd__seg_hdr *h) {
  struct shmd__seg_alloc *sa = shmd__sa(h);
  unsigned char *pm = shmd__pagemap(h, sa);
  memset(pm, 0, sa->page_count);
  uint32_t maxo = 0;
  while (maxo < SHMD__MAX_ORDER && (UINT64_C(2) << maxo) <= sa->page_count)
    maxo++;
  sa->max_order = maxo;
  uint64_t p = 0;
  while (p < sa->page_count) {
    uint32_t o = maxo;
    while (o > 0 && ((p & ((UINT64_C(1) << o) - 1)) != 0 || p + (UINT64_C(1) << o) > sa->page_count))
      o--;
    uint64_t off = page_off(sa, p);
    struct shmd__fblock *b = fb(h, off);
    b->prev = 0;
    b->next = sa->free_head[o];
    if (b->next)
      fb(h, b->next)->prev = off;
    sa->free_head[o] = off;
    sa->free_count[o]++;
    pm[p] = (unsigned char)(PM_FREE | o);
    sa->free_pages += UINT64_C(1) << o;
    p += UINT64_C(1) << o;
  }
}
