/* SPDX-License-Identifier: MIT */
/*
 * Internal: the allocator's metadata in each segment, size classes, and the functions its files
 * share. The allocator layer's header: included by alloc/ and by the transaction layer (tx/: the
 * steps that also write a lane word, heap adoption, and the callbacks tx/open.c hands down);
 * containers/ and kv/ use the public alloc.h; the malloc shim uses alloc_ext.h.
 *
 * Per segment (at hdr->alloc_off):
 *   struct shmd__seg_alloc: the buddy lock, free lists per order, the class table (one lock and
 *   slab lists per size class), then the page map: one byte per 4 KiB page of the data area.
 *
 * Page map byte: 0 = interior page of a block; otherwise the head page of a block, kind in the top
 * two bits (FREE, SLAB, LARGE) and the block's order (2^order pages) in the low six. Blocks are
 * aligned to their size relative to the data area, so a slab's head is found by masking.
 *
 * Locks (in this order): class lock of (segment, class), then the segment's buddy lock, then the
 * grow lock. A class lock protects its slab lists, counters and the slabs on them (headers and
 * free lists); the buddy lock protects free lists, buddy counters and the page map.
 */
#ifndef SHMD_ALLOC_INT_H
#define SHMD_ALLOC_INT_H

#include "alloc_ext.h"
#include "segments/store_int.h"

#define SHMD__NCLASSES 56u
#define SHMD__SLAB_ORDER 4u /* 64 KiB = 16 pages */
#define SHMD__SLAB_HDR 64u
#define SHMD__MAX_ORDER 47u

enum { PM_FREE = 0x40, PM_SLAB = 0x80, PM_LARGE = 0xC0, PM_KIND = 0xC0, PM_ORDER = 0x3F };

struct shmd__class {
  shmd_lock_t lock;
  uint64_t partial_head; /* segment offset of the first partial slab, 0 = none */
  uint64_t reserved0;
  uint64_t reserved2;
  uint64_t slabs;        /* slabs of this class in this segment */
  uint64_t reserved1;    /* objects in use are counted per slab only (one logged word less per op) */
  uint64_t pad[2];
};

struct shmd__seg_alloc {
  uint64_t magic;
  uint64_t data_off, data_bytes, page_count;
  uint64_t pagemap_off; /* segment offset of the page map */
  uint32_t max_order, nclasses;
  shmd_lock_t buddy_lock;
  uint64_t free_pages;
  uint64_t large_blocks, large_pages;
  uint64_t reserved[8];
  uint64_t free_head[SHMD__MAX_ORDER + 1]; /* segment offset of the first free block, 0 = none */
  uint64_t free_count[SHMD__MAX_ORDER + 1];
  struct shmd__class cls[SHMD__NCLASSES];
};

#define SHMD__ALLOC_MAGIC UINT64_C(0x434f4c4c41444d53) /* "SMDALLOC" */

/* Header of a slab: the first 64 bytes of its 64 KiB block. */
struct shmd__slab {
  uint32_t magic_class; /* SLAB_MAGIC << 8 | class */
  uint32_t obj_bytes;
  uint32_t capacity;
  uint32_t first_off;
  uint32_t free_head;   /* slab offset of the first free object, 0 = none   } one logged */
  uint32_t inuse;       /* allocated objects                                } word      */
  uint32_t bump;        /* slab offset of the first never-used object       } one logged */
  uint32_t list;        /* SLIST_NONE (full) or SLIST_PARTIAL (incl. empty)  } word      */
  uint64_t prev, next;  /* segment offsets of the neighbours on its list */
  uint64_t pad[3];
};
#define SLAB_MAGIC 0x51AB5Au
enum { SLIST_NONE = 0, SLIST_PARTIAL = 1 };

/*
 * Layout 1.4: a slab whose bump pointer has reached its end (every slot handed out at least once)
 * carries its class + 1 in the page-map byte of its second page, an interior byte that is 0
 * otherwise (the kind bits stay 0: classes are below 64). The lock-free free reads the class there,
 * in the page map (one contiguous byte per page), instead of in the slab header: slab headers sit
 * at 64 KiB strides, so with hundreds of slabs they all compete for the same few L2 sets (measured:
 * churn 22 -> 15 ns). The bump check is moot for such a slab. Set and cleared in logged steps
 * under the class lock; stores of layout 1.3 never get it, so a 1.3 library can still open them.
 */
static inline int shmd__pm_class_on(const struct shmd__seg_hdr *hdr0) { return hdr0->layout_minor >= 4; }
/* A slab whose bump pointer has reached its end: no further object fits under it. */
static inline int shmd__slab_full_bumped(uint32_t bump, uint32_t obj_bytes) {
  return bump + obj_bytes > SHMD_SLAB_BYTES;
}
#define SHMD__PM_CLASS_PAGE 1u /* page of the slab whose page-map byte holds the class */

/* Free buddy block: links in its first 16 bytes. */
struct shmd__fblock {
  uint64_t next, prev;
  /* Written only by shmd__buddy_release, on private stores (which no other process recovers), and
   * only a hint: SHMD__FB_SEEN or SHMD__FB_RELEASED xor the block's shape (offset, order), any
   * other value = not seen. Not logged, so never written on a shared store: in a slab released
   * by a step that is rolled back, this word is the slab header's free_head / inuse. An allocated
   * block's owner overwrites it (a slab header does); a stale one that survives a reuse of the
   * same shape only delays a release. */
  uint64_t release_hint;
};
#define SHMD__FB_SEEN UINT64_C(0x5345454e46524545)     /* "SEENFREE" */
#define SHMD__FB_RELEASED UINT64_C(0x52454c4541534544) /* "RELEASED" */

/* The allocator's callbacks for the segment layer (front.c), handed to shmd__store_open() by
 * whoever opens a store (tx/open.c). */
const struct shmd__alloc_ops *shmd__alloc_layer_ops(void);

/* ---- for the transaction layer (tx/): allocator steps that also write a lane word (front.c) ---- */
/* Frees `p` as one allocator step of thread t, and in the same step stores `extra_val` into the
 * 8-byte lane word `extra` (when not NULL): how a transaction's deferred frees and an abort's (or
 * recovery's) frees of reservations advance the lane's counters exactly once. A free of t's own
 * lane record (`extra` is t's dfree_done or resv_count) may go to t's heap instead, with the lane
 * word stored after the push (heap.c's crossing rules). SHMD_EINVAL when p is no allocated block. */
int shmd__alloc_free_step(shmd_store_t *s, struct shmd__thr *t, shmd_ptr_t p, uint64_t *extra, uint64_t extra_val);
/* Allocates `size` bytes as one allocator step that, in the same step, stores the block into the
 * 8-byte lane word `word`: the block is owned by that word from its first instant (extension
 * blocks). Statuses as shmd_alloc(). */
int shmd__alloc_word(shmd_store_t *s, struct shmd__thr *t, size_t size, uint64_t *word, shmd_ptr_t *out);
/* Allocates `size` bytes for t's transaction: the block is recorded in the lane's next reservation
 * slot inside the allocator's own step (or, from the heap, before the pop commits), so a crash never
 * leaks it. The caller made sure the slot exists (t->resv_room). Statuses as shmd_alloc(). */
int shmd__alloc_reserved(shmd_store_t *s, struct shmd__thr *t, size_t size, shmd_ptr_t *out);

extern const uint32_t shmd__class_bytes[SHMD__NCLASSES];
uint32_t shmd__size_class(size_t size); /* size <= SHMD_SMALL_MAX */
/* Filled by a constructor in slab.c: class of a request of g 16-byte granules, and a reciprocal
 * per class so that (x * recip) >> 32 == x / class_bytes for every x below 64 KiB. */
extern unsigned char shmd__class_of_granule[SHMD_SMALL_MAX / 16 + 1];
extern uint64_t shmd__class_recip[SHMD__NCLASSES];

static inline struct shmd__seg_alloc *shmd__sa(struct shmd__seg_hdr *h) {
  return (struct shmd__seg_alloc *)(void *)((unsigned char *)h + h->alloc_off);
}
/* Whether the allocator metadata header of a segment agrees with its segment header (immutable,
 * validated when the segment was attached), so that the page map and data area it describes lie
 * inside the segment. Its words are mutable, so they are untrusted until this holds; the test
 * cannot overflow whatever they hold. Cannot fail. */
int shmd__sa_is_valid(const struct shmd__seg_hdr *h, const struct shmd__seg_alloc *sa);

static inline unsigned char *shmd__pagemap(struct shmd__seg_hdr *h, struct shmd__seg_alloc *sa) {
  return (unsigned char *)h + sa->pagemap_off;
}

/* Buddy operations; the caller holds the segment's buddy lock inside an allocator step. */
int shmd__buddy_alloc(struct shmd__thr *t, uint32_t seg, struct shmd__seg_hdr *h, uint32_t order,
                      unsigned kind, uint64_t *page_out);
int shmd__buddy_free(struct shmd__thr *t, uint32_t seg, struct shmd__seg_hdr *h, uint64_t page,
                     uint32_t order);
void shmd__buddy_init(struct shmd__seg_hdr *h);
/* Private stores (the malloc shim's) give the pages of free blocks of at least 2^RELEASE_MIN_ORDER
 * pages back to the kernel once a thread has freed RELEASE_EVERY pages into the buddy allocators
 * (large blocks, released slabs, shrinks): see shmd__buddy_release. */
#define SHMD__RELEASE_MIN_ORDER 4u           /* 64 KiB: a released slab qualifies */
#define SHMD__RELEASE_EVERY (UINT64_C(4096)) /* pages: 16 MiB */
/* Drops the pages of the free blocks of order >= min_order of the segment, except each block's
 * first page (its free-list links), with madvise: a block the second time a pass finds it free
 * (aged by the release_hint word, so that a program's working set is not faulted in anew at every
 * pass). The caller holds the segment's buddy lock (so no block changes hands meanwhile); nothing
 * but the hint words is written. SHMD_ECORRUPT when a free list is damaged. Only for private mappings: on a shared store the pages would have to be
 * reserved again before reuse (no SIGBUS on a full tmpfs), and the hint may not be written. */
int shmd__buddy_release(struct shmd__seg_hdr *h, uint32_t min_order);
/* Resizes a large block in place (buddy.c): SHMD_ENOSPC, nothing changed, when it cannot grow. */
int shmd__buddy_resize(struct shmd__thr *t, uint32_t seg, struct shmd__seg_hdr *h, uint64_t page, uint32_t order,
                       uint32_t new_order);

/* Logs an 8-byte aligned word or the word containing a page-map byte. */
static inline void shmd__log8(struct shmd__thr *t, uint32_t seg, struct shmd__seg_hdr *h, void *addr) {
  shmd__al_log(t, seg, (unsigned char *)h, addr);
}
static inline void shmd__log_byte(struct shmd__thr *t, uint32_t seg, struct shmd__seg_hdr *h, unsigned char *b) {
  shmd__al_log(t, seg, (unsigned char *)h, (void *)((uintptr_t)b & ~(uintptr_t)7));
}

/* Takes up to `want` objects of class c from segment seg into out[] (shmd_ptr_t values); the
 * caller holds the class lock in a step. *got is at least 1 on success; SHMD_ENOSPC when the
 * segment has no partial slab and no room for a new one. */
int shmd__slab_alloc_batch(shmd_store_t *s, struct shmd__thr *t, uint32_t seg, struct shmd__seg_hdr *h,
                           uint32_t c, uint64_t *out, uint32_t want, uint32_t *got);
int shmd__slab_free(shmd_store_t *s, struct shmd__thr *t, uint32_t seg, struct shmd__seg_hdr *h,
                    uint64_t slab_off, uint64_t off);
int shmd__slab_alloc(shmd_store_t *s, struct shmd__thr *t, uint32_t seg, struct shmd__seg_hdr *h, uint32_t c,
                     uint64_t *out);

/* ---------------------------------------------------------------------------------------------- */
/* Thread heaps (heap.c): one per lane, a bounded stack of free objects per size class. */

#define SHMD__HEAP_CAP 64u   /* slots per class; a class's limit may be lower (big objects) */
#define SHMD__HEAP_MAGIC UINT64_C(0x5041454844444d53) /* "SMDDHEAP" */
#define SHMD__HDIR_MAGIC UINT64_C(0x5249444844444d53) /* "SMDDHDIR" */

/* One class's stack: entries slot[0..count) are cached; `count` is the commit point of every push
 * and pop (entries at or above it are not cached, whatever they hold). One 8-byte word, so an
 * allocator step can log it alone. */
struct shmd__heap_bin {
  uint32_t count;
  uint32_t limit;
};

struct shmd__heap {
  uint64_t magic;
  uint32_t lane_idx;
  uint32_t nclasses;
  uint32_t owner_pid, owner_tid; /* informational: the lane's `live` mutex is the liveness lock */
  uint64_t reserved[5];
  struct shmd__heap_bin bin[SHMD__NCLASSES];
  uint64_t slot[SHMD__NCLASSES][SHMD__HEAP_CAP]; /* shmd_ptr_t values */
};

/* The directory: one heap pointer per lane, found through the manifest (SHMD__MAN_HEAP_DIR). */
struct shmd__heap_dir {
  uint64_t magic;
  uint32_t lanes;
  uint32_t pad;
  uint64_t heap[]; /* shmd_ptr_t per lane, 0 = none yet */
};

/* The depot (layout 1.3): one per store, a bounded stack of free objects per size class shared by
 * every thread (tcmalloc's transfer cache). A full thread stack moves half of itself here and an
 * empty one takes a batch from here, both as one allocator step under the class's depot lock, so
 * objects freed by one thread and allocated by another cross as arrays of pointers instead of
 * through slab free lists (see heap.c). Found through the manifest (SHMD__MAN_DEPOT). */
#define SHMD__DEPOT_CAP 128u
#define SHMD__DEPOT_MAGIC UINT64_C(0x544f504544444d53) /* "SMDDEPOT" */

struct shmd__depot_class {
  shmd_lock_t lock;          /* lock order: before every class lock of the class */
  struct shmd__heap_bin bin; /* count and limit, as a heap's (one loggable word) */
};

struct shmd__depot {
  uint64_t magic;
  uint32_t nclasses, cap;
  uint64_t reserved[6]; /* [0]: its own shmd_ptr_t */
  struct shmd__depot_class cls[SHMD__NCLASSES];
  uint64_t slot[SHMD__NCLASSES][SHMD__DEPOT_CAP]; /* shmd_ptr_t values; [c][0..count) are cached */
};

/* Process address of the store's depot, validated; NULL when it has none (or it is damaged). */
struct shmd__depot *shmd__depot_of(shmd_store_t *s);
/* Moves objects of class c from the top of t's heap down to `keep` into the depot, as far as it
 * has room: 0 when the stack is down to keep, 1 when objects above keep remain (the caller flushes
 * them to the slabs), or a status. */
int shmd__depot_put(shmd_store_t *s, struct shmd__thr *t, uint32_t c, uint32_t keep);
/* Refills class c of t's heap from the depot: 0 when at least one object was moved, 1 when the
 * depot has none (the caller refills from the slabs), or a status. */
int shmd__depot_take(shmd_store_t *s, struct shmd__thr *t, uint32_t c);
/* Returns every object in the depot to the slabs (steps of t): when the store is full, so that
 * empty slabs can go back to the buddy allocator. */
int shmd__depot_drain(shmd_store_t *s, struct shmd__thr *t);

/* Attaches (creating if needed) the calling thread's heap: sets t->heap and t->heap_state. */
void shmd__heap_attach(shmd_store_t *s, struct shmd__thr *t);
/* Refills class c of t's (empty) heap from segment seg in one step under the class lock. 0 when
 * at least one object is cached, SHMD_ENOSPC / SHMD_ENOTFOUND as the locked path, else a status. */
int shmd__heap_refill_in(shmd_store_t *s, struct shmd__thr *t, uint32_t seg, uint32_t c);
/* Returns the objects of class c's stack above `keep` to the shared classes (steps of t). */
int shmd__heap_flush(shmd_store_t *s, struct shmd__thr *t, struct shmd__heap *hp, uint32_t c, uint32_t keep);
int shmd__heap_cached(shmd_store_t *s, uint32_t idx);
int shmd__heap_adopt(shmd_store_t *s, struct shmd__thr *t, uint32_t idx);
/* Process address of the heap directory, validated; NULL when the store has none (or it is damaged). */
struct shmd__heap_dir *shmd__heap_dir(shmd_store_t *s);
/* Process address of lane idx's heap, validated; NULL when it has none (or it is damaged). */
struct shmd__heap *shmd__heap_of(shmd_store_t *s, uint32_t idx);
/* Bytes of the heap blocks, their directory and the depot, for statistics: they are allocator
 * metadata. *blocks counts all of those blocks, *heaps the heaps alone. */
uint64_t shmd__heap_meta(shmd_store_t *s, uint64_t *blocks, uint64_t *pages, uint64_t *heaps);

#endif
