/* SPDX-License-Identifier: MIT */
/*
 * The allocator: malloc/free semantics over a store.
 *
 * Small sizes (up to SHMD_SMALL_MAX bytes) come from slab caches with size classes spaced at most
 * 12.5% apart (16-byte steps up to 128 bytes); larger ones are buddy blocks of 2^k pages. Every
 * block is 16-byte aligned; large blocks are page aligned. A request no segment can hold grows the
 * store by a new segment big enough for it, up to the store's size limit.
 *
 * Each thread keeps a small cache of free objects per size class in shared memory (its heap), so
 * that most small allocations and frees take no lock; a full cache passes half of itself to the
 * store's depot, where other threads' empty caches take it (objects freed by one thread reach
 * another without going through the slabs). Statistics count cached objects as free, a thread that
 * ends (or dies) returns its cache, and a store that cannot grow returns the depot's objects before
 * an allocation answers SHMD_ENOSPC.
 *
 * All functions are safe for many threads in many processes, and crash-safe: a process killed
 * inside any of them leaves the allocator consistent for the others (its half-done step is rolled
 * back by whoever next needs the lock it held). A block returned by shmd_alloc() belongs to the
 * caller; to link it into shared structures without a leak window, allocate inside a transaction
 * (shmd_tx_alloc(), see tx.h).
 */
#ifndef SHMD_ALLOC_H
#define SHMD_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "ptr.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SHMD_SMALL_MAX 8192u       /* largest size served by a slab */
#define SHMD_PAGE_BYTES 4096u      /* buddy page */
#define SHMD_SLAB_BYTES 65536u     /* every slab is one 64 KiB buddy block, aligned to its size */
#define SHMD_STATS_MAX_CLASSES 64u /* capacity of shmd_stats_t.classes */

/*
 * Allocates `size` bytes (0 is treated as 1) and stores the pointer in *out.
 * Returns SHMD_ENOSPC when the store is full and may not grow, SHMD_ETOOBIG for a size no segment
 * could hold, SHMD_ENOLANE when all lanes are taken. On failure *out is unchanged.
 */
SHMD_API int shmd_alloc(shmd_store_t *store, size_t size, shmd_ptr_t *out);

/* Like shmd_alloc(), for n * size bytes, zero-filled; SHMD_ETOOBIG when n * size overflows. */
SHMD_API int shmd_calloc(shmd_store_t *store, size_t n, size_t size, shmd_ptr_t *out);

/* Like shmd_alloc(), but only from segment `segment` (no growth). SHMD_ENOSPC when it is full,
 * SHMD_ENOTFOUND when there is no such segment. */
SHMD_API int shmd_alloc_in(shmd_store_t *store, uint32_t segment, size_t size, shmd_ptr_t *out);

/*
 * Frees a block from shmd_alloc() and friends. Freeing the null pointer does nothing. Returns
 * SHMD_EINVAL for a pointer that is not the start of a block of this store, SHMD_ECORRUPT when
 * allocator metadata is damaged. A double free of a small object is not detected here (that would
 * cost a walk); shmd_alloc_check() reports the damage it leaves.
 */
SHMD_API int shmd_free(shmd_store_t *store, shmd_ptr_t p);

/*
 * Resizes *p to `size` bytes, keeping the contents up to the smaller size; may move the block, and
 * then updates *p. *p null behaves as shmd_alloc(); size 0 frees and sets *p to null. A block
 * that fits and is less than twice too big stays; a large block (above SHMD_SMALL_MAX) that stays
 * large grows into free neighbouring space or shrinks in place when it can, without a copy.
 * On failure (same statuses as shmd_alloc) the old block is untouched and *p unchanged.
 */
SHMD_API int shmd_realloc(shmd_store_t *store, shmd_ptr_t *p, size_t size);

/* Bytes actually usable in the block `p` (at least the requested size), 0 for the null pointer or
 * a pointer that is not the start of an allocated block. */
SHMD_API size_t shmd_usable_size(shmd_store_t *store, shmd_ptr_t p);

/*
 * Tells the allocator to expect allocations soon, so that it can prepare the store's next segment
 * ahead of need: `bytes` announces one block about to be wanted (a table a container will grow
 * into), 0 nothing in particular. Meant to be called often, after each operation that adds data
 * (the hash calls it after every insert). Reserving a new segment's memory costs about 0.3 ms per
 * MiB on tmpfs, which would otherwise be paid by the one allocation that grows the store; with
 * these calls the store prepares a spare segment file before it is needed and reserves it in 32 KiB
 * pieces, one per call. Every 1024 calls of a thread it looks at the free space: a spare growth
 * segment is started when less than half a growth segment is free, and for an announced block of
 * 2 MiB or more that no free block can hold, a spare that can. Any other call costs one relaxed
 * load when no spare is being prepared. Best effort: a spare that cannot be made (tmpfs full, file
 * size limit, store size limit) is dropped, and growth then happens as it would without the call
 * (docs/architecture.md, "Growth ahead of need"). Returns 0, or SHMD_EINVAL for a null store;
 * nothing else can fail.
 */
SHMD_API int shmd_alloc_expect(shmd_store_t *store, size_t bytes);

/* The size-class a request of `size` bytes is rounded up to (the usable size it will get).
 * Cannot fail. */
SHMD_API size_t shmd_good_size(size_t size);

/* ---------------------------------------------------------------------------------------------- */
/* Statistics. */

/* The statistics structs have a fixed layout: the library fills them whole, reserved words with
 * zeros, and a field added later takes reserved words in place (the size and the offsets of the
 * fields never change; a program built against an older library reads 0 for it). */
typedef struct shmd_class_stats_s {
  uint32_t obj_bytes;     /* size of the class */
  uint32_t objs_per_slab; /* capacity of one slab */
  uint64_t slabs;         /* slabs owned by the class (all segments) */
  uint64_t objs_inuse;    /* allocated objects */
  uint64_t bytes_inuse;   /* objs_inuse * obj_bytes */
  uint64_t reserved[2];   /* zero */
} shmd_class_stats_t;

typedef struct shmd_stats_s {
  uint32_t segments;
  uint32_t nclasses;
  uint64_t store_bytes;        /* sum of segment sizes */
  uint64_t meta_bytes;         /* headers, manifest, lanes, allocator metadata */
  uint64_t alloc_meta_bytes;   /* allocator metadata only (page maps, class tables) */
  uint64_t data_bytes;         /* sum of the data areas */
  uint64_t free_bytes;         /* in free buddy blocks */
  uint64_t largest_free_block; /* bytes, over all segments */
  uint64_t slab_bytes;         /* in slabs (used, partially used or empty) */
  uint64_t slab_free_bytes;    /* free object slots inside slabs (fragmentation inside slabs) */
  uint64_t slab_overhead_bytes; /* slab headers and tails too small for one more object */
  uint64_t small_bytes_inuse;  /* usable bytes of allocated small objects */
  uint64_t small_objs_inuse;
  uint64_t large_bytes_inuse;  /* bytes of allocated large blocks */
  uint64_t large_blocks;
  uint64_t allocated_bytes;    /* small_bytes_inuse + large_bytes_inuse */
  uint64_t recoveries;         /* dead threads' operations recovered */
  shmd_class_stats_t classes[SHMD_STATS_MAX_CLASSES];
  /* Thread heaps (layout 1.2). Objects cached in a heap are free for the statistics above: they
   * count in slab_free_bytes, not in *_inuse or allocated_bytes. Heap blocks count as allocator
   * metadata (alloc_meta_bytes), not as large blocks. */
  uint64_t heaps;              /* thread heaps created (at most one per lane) */
  uint64_t heap_cached_objs;   /* free objects held in thread heaps */
  uint64_t heap_cached_bytes;
  uint64_t heap_meta_bytes;    /* the heaps, their directory and the depot */
  /* The depot (layout 1.3): free objects on their way from the threads that freed them to the
   * threads that allocate them, shared by all. Free for the statistics above, like heaps'. */
  uint64_t depot_cached_objs;
  uint64_t depot_cached_bytes;
  uint64_t reserved[16];       /* zero */
} shmd_stats_t;

/* Per-segment statistics. free_blocks[k] counts free buddy blocks of 2^k pages. */
typedef struct shmd_segment_stats_s {
  uint64_t size_bytes;
  uint64_t data_bytes;
  uint64_t meta_bytes; /* everything before the data area */
  uint64_t free_bytes;
  uint64_t largest_free_block;
  uint64_t free_blocks[48];
  uint64_t reserved[8]; /* zero */
} shmd_segment_stats_t;

/* Fills *st with store-wide totals and per-class figures. Reads counters and slab headers without
 * stopping writers: exact for a quiet store, a near snapshot for a busy one. Walks each segment's
 * page map (1/4096 of its data). Returns 0, or SHMD_ECORRUPT if a segment cannot be mapped or its
 * allocator metadata header is damaged. */
SHMD_API int shmd_stats(shmd_store_t *store, shmd_stats_t *st);

/* Fills *st for one segment. SHMD_ENOTFOUND when there is no such segment (or it cannot be
 * mapped), SHMD_ECORRUPT when its allocator metadata header is damaged. */
SHMD_API int shmd_segment_stats(shmd_store_t *store, uint32_t segment, shmd_segment_stats_t *st);

/*
 * The invariant checker. Recovers dead lanes first, then, segment by segment under the allocator's
 * locks, proves that every page of the data area belongs to exactly one block (free, slab or
 * large), that every free block is on the free list of its order and no other block is, that every
 * slab slot is either free (on the slab's free list or never used) or allocated, and that all
 * counters agree. Every pointer it follows is bounds-checked; a damaged store yields SHMD_ECORRUPT
 * with the place in shmd_errdetail(), never a crash. It never waits unboundedly: a lock that a live
 * owner keeps holding ends the check after 10 s (or the handle's shmd_set_lock_wait() bound, if
 * smaller) with SHMD_EBUSY, "lock held by pid N, lane L, for S s" in shmd_errdetail(); a lock
 * whose holder is dead or no live owner of the store is recovered. Returns 0 when everything holds.
 */
SHMD_API int shmd_alloc_check(shmd_store_t *store);

#ifdef __cplusplus
}
#endif
#endif /* SHMD_ALLOC_H */
