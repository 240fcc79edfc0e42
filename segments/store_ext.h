/* SPDX-License-Identifier: MIT */
/*
 * Internal: what the segment layer offers the malloc shim (malloc/, on top of every layer), in
 * terms that name no on-memory structure: the shim never reads a segment header, the manifest or a
 * lane itself. Included by malloc/ and by store_int.h (so the definitions in segments/ see the
 * same declarations); nothing else needs it.
 */
#ifndef SHMD_SEGMENTS_STORE_EXT_H
#define SHMD_SEGMENTS_STORE_EXT_H

#include <stdint.h>

#include "shmdict/store.h"

/* Internal open flags (shmd_options_t.flags), for the malloc shim's per-process stores only; they
 * hold for every file and mapping the handle makes, growth included, and for nothing else.
 * SHMD__OPEN_SPARSE: segment files get no storage reserved (ftruncate only; no error details, as
 * the shim creates files from inside malloc). SHMD__OPEN_PRIVATE: segments are mapped MAP_PRIVATE
 * (the store behaves like anonymous memory: copy-on-write across fork, no other process shares
 * it; the allocator gives big free blocks' pages back to the kernel). */
#define SHMD__OPEN_SPARSE (1u << 30)
#define SHMD__OPEN_PRIVATE (1u << 31)

/* The flags shmd_open() takes from its callers; any other bit is SHMD_EINVAL there. */
#define SHMD__OPEN_PUBLIC (SHMD_OPEN_NOCREATE | SHMD_OPEN_EXCL | SHMD_OPEN_POPULATE)

/* shmd_open() that also takes the internal flags above (defined in tx/open.c, where the layers
 * are composed; declared here beside the flags). For the malloc shim and its tests only. */
int shmd__open_ext(const char *name, const shmd_options_t *opt, shmd_store_t **out);

/* Segments the handle knows of (mapped or not): the shim compares it before and after a call
 * to see that the store grew. */
uint32_t shmd__store_seg_count(shmd_store_t *s);

/* A store opened with private mappings (the shim's per-process store): replaces the mapping of
 * segment 0 (a MAP_PRIVATE mapping of a sparse file) by anonymous memory with the same bytes,
 * copying only the pages that are resident. Call once, while no other thread uses the store.
 * A failure leaves the mapping as it was (still correct, only dearer). */
void shmd__store_anonymize_first(shmd_store_t *s);

/* Copies the bytes of a segment that mean anything, from src (the segment's mapping) into dst
 * (private anonymous memory, all zero): called by shmd__store_private_copy() for each mapped
 * segment (seg: its index, 0 first; size: bytes mapped, a multiple of the page size). */
typedef void (*shmd__seg_fill_fn)(unsigned char *dst, const unsigned char *src, uint64_t size, uint32_t seg);

/* In a forked child, inside fork(): replaces the mapping of every segment this process has mapped
 * by private anonymous memory that fill() writes, so the child's writes stay its own. A segment
 * whose copy cannot be made (no memory) is made read-only instead: a write then kills the child
 * rather than change the parent's memory. Only system calls and fill(): async-signal-safe as long
 * as fill() is. */
void shmd__store_private_copy(shmd_store_t *s, shmd__seg_fill_fn fill);

/* Copies bytes [from, to) of src into dst (8-byte aligned offsets, dst all zero), a page at a
 * time, skipping pieces that are all zero (a page never written costs no memory). Only memcpy. */
void shmd__store_copy_range(unsigned char *dst, const unsigned char *src, uint64_t from, uint64_t to);

/* Copies the segment layer's metadata of a segment, bytes [0, end) of src (end: where the
 * allocator's data area begins, checked by the caller against the mapping): for segment 0 the
 * lanes only as far as they mean anything (the fixed part of each, and of its two undo logs the
 * entries below their lengths), the rest whole; a manifest whose fields do not make sense, and
 * any other segment, whole. Every field read is bounds-checked against end (other processes may
 * be writing). */
void shmd__store_copy_meta(unsigned char *dst, const unsigned char *src, uint64_t end, uint32_t seg);

#endif
