/* SPDX-License-Identifier: MIT */
/*
 * The private snapshot a forked child of a named-store process takes (alloc_ext.h), for the malloc
 * shim: the allocator decides which bytes of a segment can be needed (its metadata and the blocks
 * its page map does not call free), the segment layer copies its own metadata and makes the
 * mappings private. Only memcpy and (in the segment layer) system calls: this runs inside fork(),
 * where a multi-threaded program's child may call only async-signal-safe functions. Other
 * processes may change the page map meanwhile, so every byte is read once and every offset is
 * bounds-checked against the mapping; what does not make sense is copied whole.
 */
#include <string.h>

#include "alloc_int.h"

/* Copies the bytes of one segment (size bytes at src, a multiple of the page size) that a child
 * can need (a shmd__seg_fill_fn). */
static void copy_used(unsigned char *dst, const unsigned char *src, uint64_t size, uint32_t seg) {
  struct shmd__seg_hdr h;
  struct shmd__seg_alloc sa;
  const uint64_t pg = SHMD_PAGE_BYTES;
  if (size < SHMD__HDR_BYTES)
    goto whole;
  memcpy(&h, src, sizeof h);
  if (h.magic != SHMD__SEG_MAGIC || h.data_off > size || h.data_bytes > size - h.data_off ||
      h.data_off % pg != 0 || h.data_bytes % pg != 0 || h.alloc_off < SHMD__HDR_BYTES ||
      h.alloc_off > h.data_off || h.data_off - h.alloc_off < sizeof sa ||
      h.alloc_bytes > h.data_off - h.alloc_off)
    goto whole;
  memcpy(&sa, src + h.alloc_off, sizeof sa);
  if (!shmd__sa_is_valid(&h, &sa) || sa.pagemap_off > h.data_off ||
      sa.page_count > h.data_off - sa.pagemap_off)
    goto whole;
  shmd__store_copy_meta(dst, src, h.data_off, seg);
  /* The page map: a head byte per block (kind and order), 0 for its interior pages. */
  const volatile unsigned char *pm = src + sa.pagemap_off;
  uint64_t n = sa.page_count, i = 0;
  while (i < n) {
    unsigned b = pm[i], kind = b & PM_KIND, order = b & PM_ORDER;
    uint64_t len = UINT64_C(1) << order;
    if (kind == 0 || order > sa.max_order || (i & (len - 1)) != 0 || len > n - i) {
      shmd__store_copy_range(dst, src, h.data_off + i * pg, size); /* damaged: the rest, whole */
      return;
    }
    if (kind != PM_FREE)
      shmd__store_copy_range(dst, src, h.data_off + i * pg, h.data_off + (i + len) * pg);
    i += len;
  }
  shmd__store_copy_range(dst, src, h.data_off + h.data_bytes, size); /* nothing there, normally */
  return;
whole:
  shmd__store_copy_range(dst, src, 0, size);
}

void shmd__alloc_private_snapshot(shmd_store_t *s) { shmd__store_private_copy(s, copy_used); }
