/* SPDX-License-Identifier: MIT */
/*
 * shmd_ptr_t: a segment-qualified relative pointer.
 *
 * 64 bits: (segment index + 1) in the top 16 bits, byte offset inside the segment in the low 48.
 * The all-zero value is the null pointer. Structures in shared memory store only shmd_ptr_t, never
 * raw addresses, because each process maps the segments at different addresses. The type is a
 * struct so it can neither be dereferenced nor mixed with an integer by accident; convert it with
 * the accessors below and shmd_resolve().
 */
#ifndef SHMD_PTR_H
#define SHMD_PTR_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shmd_store_s shmd_store_t;

typedef struct shmd_ptr_s {
  uint64_t v;
} shmd_ptr_t;

#define SHMD_PTR_OFFSET_BITS 48
#define SHMD_PTR_OFFSET_MASK ((UINT64_C(1) << SHMD_PTR_OFFSET_BITS) - 1)
/* Segment indices run from 0 to SHMD_MAX_SEGMENTS - 1. */
#define SHMD_MAX_SEGMENTS 65535u

/* The structure of type `type` whose member `member` is at address `addr` (a resolved address,
 * e.g. from shmd_resolve()), for intrusive nodes (list.h, rbtree.h). */
#define shmd_container_of(addr, type, member) ((type *)(void *)((char *)(addr)-offsetof(type, member)))

/* The null pointer. */
static inline shmd_ptr_t shmd_ptr_null(void) {
  shmd_ptr_t p = {0};
  return p;
}

/* A pointer to byte `offset` of segment `segment`. Preconditions: segment < SHMD_MAX_SEGMENTS,
 * offset < 2^48. Cannot fail. */
static inline shmd_ptr_t shmd_ptr_make(uint32_t segment, uint64_t offset) {
  shmd_ptr_t p;
  p.v = ((uint64_t)(segment + 1) << SHMD_PTR_OFFSET_BITS) | (offset & SHMD_PTR_OFFSET_MASK);
  return p;
}

static inline int shmd_ptr_is_null(shmd_ptr_t p) { return p.v == 0; }
static inline int shmd_ptr_eq(shmd_ptr_t a, shmd_ptr_t b) { return a.v == b.v; }
/* Segment index of a non-null pointer. */
static inline uint32_t shmd_ptr_segment(shmd_ptr_t p) {
  return (uint32_t)(p.v >> SHMD_PTR_OFFSET_BITS) - 1;
}
/* Byte offset of a pointer inside its segment. */
static inline uint64_t shmd_ptr_offset(shmd_ptr_t p) { return p.v & SHMD_PTR_OFFSET_MASK; }
/* The pointer `delta` bytes further in the same segment (null stays null). */
static inline shmd_ptr_t shmd_ptr_add(shmd_ptr_t p, uint64_t delta) {
  if (p.v != 0)
    p.v += delta;
  return p;
}

/*
 * Process-local segment map. The first member of every shmd_store_t is a pointer to this table, so
 * that shmd_resolve() can be an inline load and add. Applications must treat it as read-only and
 * opaque; only its position and the meaning of `base` are ABI.
 * base[i] is the address where segment i - 1 is mapped in this process, or NULL when it is not
 * mapped (yet); base[0] is always NULL, so the null pointer resolves through the slow path to NULL.
 */
typedef struct shmd_segmap_s {
  unsigned char *base[SHMD_MAX_SEGMENTS + 1];
} shmd_segmap_t;

/* Slow path of shmd_resolve(): maps a segment that another process added, or returns NULL for the
 * null pointer and for pointers that do not name an existing segment. */
SHMD_API void *shmd_resolve_slow(shmd_store_t *store, shmd_ptr_t p);

/*
 * The address of `p` in this process: one table load and an add. Maps a segment lazily the first
 * time a pointer into it is resolved. Returns NULL for the null pointer and for a pointer into a
 * segment that does not exist. Does not check the offset against the segment size: code that
 * follows pointers read from a possibly corrupted store uses shmd_resolve_checked().
 */
static inline void *shmd_resolve(shmd_store_t *store, shmd_ptr_t p) {
  shmd_segmap_t *map = *(shmd_segmap_t **)(void *)store;
  unsigned char *base = __atomic_load_n(&map->base[p.v >> SHMD_PTR_OFFSET_BITS], __ATOMIC_ACQUIRE);
  if (__builtin_expect(base != NULL, 1))
    return base + (p.v & SHMD_PTR_OFFSET_MASK);
  return shmd_resolve_slow(store, p);
}

/*
 * Checked resolve: validates that `p` names an existing segment and that [offset, offset + len)
 * lies inside it. On success stores the address in *out and returns 0. On failure returns
 * SHMD_ECORRUPT (null pointer, bad segment, out of bounds) and leaves *out unchanged.
 */
SHMD_API int shmd_resolve_checked(shmd_store_t *store, shmd_ptr_t p, size_t len, void **out);

/* The shmd_ptr_t of an address inside one of the store's mapped segments, or the null pointer if
 * the address is in none of them. Cannot fail otherwise. */
SHMD_API shmd_ptr_t shmd_ptr_from_addr(shmd_store_t *store, const void *addr);

#ifdef __cplusplus
}
#endif
#endif /* SHMD_PTR_H */
