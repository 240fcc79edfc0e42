/* SPDX-License-Identifier: MIT */
/*
 * Internal: what the allocator offers the malloc shim (malloc/, on top of every layer) beyond the
 * public alloc.h, in terms that name no on-memory structure: the shim never reads the allocator's
 * metadata or page map itself. Included by malloc/ and by alloc_int.h (so the definitions in
 * alloc/ see the same declarations). The segment layer's part is segments/store_ext.h.
 */
#ifndef SHMD_ALLOC_EXT_H
#define SHMD_ALLOC_EXT_H

#include <stddef.h>

#include "segments/store_ext.h"
#include "shmdict/alloc.h"

/* The lock-free fast paths of shmd_alloc() and shmd_free() (the calling thread's heap only):
 * 1 when done, 0 when the caller must take the slow path (the public call). Never set an error
 * detail, never take a lock, never map a segment. */
int shmd__alloc_fast(shmd_store_t *s, size_t size, shmd_ptr_t *out);
int shmd__free_fast(shmd_store_t *s, shmd_ptr_t p);
/* Resizes large block p (above SHMD_SMALL_MAX) to `size` bytes (also above) in place: into its
 * free buddies, or shrunk. 0 when done; otherwise the block is unchanged and the caller copies. */
int shmd__resize_in_place(shmd_store_t *s, shmd_ptr_t p, size_t size);

/* In a forked child, inside fork() (async-signal-safe: system calls and memcpy only): replaces
 * every segment this process has mapped by a private anonymous copy of the bytes that can be
 * needed: the segment layer's metadata (shmd__store_copy_meta), the allocator's metadata, and
 * every block the page map does not call free; a segment whose header or page map does not make
 * sense is copied whole. See shmd__store_private_copy() for a segment that cannot be copied. */
void shmd__alloc_private_snapshot(shmd_store_t *s);

#endif
