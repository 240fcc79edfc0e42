/* SPDX-License-Identifier: MIT */
/*
 * What the two keyed ordered maps share (see omap.h), the part that is not inline there: the
 * driver of a bounded destroy step. The red-black
 * tree map (rbtree_map.c) and the counted B+tree (btree.c) had a copy each; their layouts, node
 * code and crash points stay in their own files, and this file touches no shared memory itself
 * (the destroy driver asks the transaction for room and calls the map's own steps).
 */
#include "omap.h"

#include "shmdict/error.h"

int shmd__omap_destroy_step(shmd_tx_t *tx, void *map, const shmd__destroy_ops_t *ops, uint64_t count,
                            size_t max_entries, uint64_t *remaining, int *doom) {
  int rc = 0;
  uint64_t n = count;
  size_t done = 0;
  *doom = 0;
  while (rc == 0 && n > 0 && done < max_entries) {
    size_t need_words, need_allocs, need_frees, words, allocs, frees;
    if ((rc = ops->plan(map, n, max_entries - done, &need_words, &need_allocs, &need_frees)))
      break;
    shmd_tx_room(tx, &words, &allocs, &frees);
    /* A first step always fits: the transaction grows for it (the caller's may be full). */
    if (words < need_words || allocs < need_allocs || frees < need_frees) {
      if (done > 0)
        break;
      if ((rc = shmd_tx_reserve(tx, need_words, need_allocs, need_frees))) {
        *doom = 1; /* a caller's transaction may hold earlier batches: never commit those */
        break;
      }
    }
    uint64_t k = 1;
    if ((rc = ops->step(map, &k)))
      break;
    n -= k;
    done += (size_t)k;
  }
  if (rc == 0 && n == 0) {
    if (shmd_tx_reserve(tx, ops->finish_words, 0, ops->finish_frees) == 0) {
      rc = ops->finish(map);
      if (rc == 0)
        *remaining = 0;
      return rc;
    }
  }
  if (rc == 0 && done == 0 && max_entries > 0) {
    /* Not even one entry fits what is left of a caller's transaction, which may hold earlier
     * batches: abort it, so that it cannot commit a half-destroyed map by mistake. */
    rc = SHMD_ETXFULL;
    *doom = 1;
  }
  if (rc == 0)
    *remaining = n;
  return rc;
}

int shmd__omap_destroy(shmd_store_t *s, shmd_ptr_t map,
                       int (*destroy_step)(shmd_store_t *, shmd_ptr_t, size_t, uint64_t *)) {
  uint64_t remaining = 1;
  for (;;) {
    int rc = destroy_step(s, map, SIZE_MAX, &remaining);
    if (rc != 0)
      return rc;
    if (remaining == 0)
      return 0;
  }
}
