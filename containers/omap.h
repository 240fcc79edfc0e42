/* SPDX-License-Identifier: MIT */
/*
 * Internal: what the two keyed ordered maps -- the red-black tree map (rbtree_map.c) and the
 * counted B+tree (btree.c) -- share, written once: their four key orders and the validation and
 * normalisation of a caller's key (a number first for the numeric orders, -0.0 stored as +0.0, no
 * NaN), the byte comparison both end on, and the driver of a bounded destroy step (how many
 * entries fit the transaction, growing it for the first, dooming a caller's transaction that cannot
 * take even one). Each map keeps its own layout; this file knows none of it. Included by
 * containers/ only.
 */
#ifndef SHMD_CONTAINERS_OMAP_H
#define SHMD_CONTAINERS_OMAP_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "shmdict/error.h"
#include "shmdict/store.h"
#include "shmdict/tx.h"

/* The key orders; shmd_rbtree_order_t and shmd_btree_order_t have these values (checked at
 * compile time in their .c files). */
#define SHMD__OKEY_BYTES 1u        /* any bytes: memcmp over the common prefix, then the shorter first */
#define SHMD__OKEY_I64 2u          /* exactly 8 bytes: an int64_t in native byte order */
#define SHMD__OKEY_DOUBLE 3u       /* exactly 8 bytes: a double, not NaN; -0.0 == +0.0 */
#define SHMD__OKEY_DOUBLE_BYTES 4u /* a double (as above) then any bytes: the (score, member) order */
/* The longest key either map takes. */
#define SHMD__OKEY_LEN_MAX 0x7fffffffu

/* A caller's key, validated for an order and prepared for comparisons. */
typedef struct shmd__okey_s {
  const unsigned char *key; /* the caller's key, klen bytes */
  size_t klen;
  const unsigned char *bytes; /* the part compared as bytes: the key (BYTES, I64), the member (D_B) */
  size_t blen;
  int64_t i; /* I64: the number */
  double d;  /* DOUBLE, DOUBLE_BYTES: the number, -0.0 made +0.0 */
} shmd__okey_t;

/* Validates `key` (klen bytes) for `order` and fills *q: SHMD_EINVAL for an unknown order, a NULL
 * key with a length, a number of the wrong size or a NaN; SHMD_ETOOBIG for a key longer than
 * SHMD__OKEY_LEN_MAX. Reads only the caller's key; cannot fail otherwise. */
static inline int shmd__okey_make(uint32_t order, const void *key, size_t klen, shmd__okey_t *q) {
  if (key == NULL && klen != 0)
    return SHMD_EINVAL;
  if (klen > SHMD__OKEY_LEN_MAX)
    return SHMD_ETOOBIG;
  q->key = (const unsigned char *)key;
  q->klen = klen;
  q->bytes = q->key;
  q->blen = klen;
  q->i = 0;
  q->d = 0;
  switch (order) {
  case SHMD__OKEY_BYTES:
    return 0;
  case SHMD__OKEY_I64:
    if (klen != 8)
      return SHMD_EINVAL;
    memcpy(&q->i, key, 8);
    return 0;
  case SHMD__OKEY_DOUBLE:
  case SHMD__OKEY_DOUBLE_BYTES:
    if (order == SHMD__OKEY_DOUBLE ? klen != 8 : klen < 8)
      return SHMD_EINVAL;
    memcpy(&q->d, key, 8);
    if (isnan(q->d))
      return SHMD_EINVAL;
    if (q->d == 0)
      q->d = 0.0; /* -0.0 == +0.0: one key */
    q->bytes = q->key + 8;
    q->blen = klen - 8;
    return 0;
  default:
    return SHMD_EINVAL;
  }
}

/* Writes the first n bytes of q's key as it is stored (normalised: the number of a numeric order
 * as q holds it) to dst. For the numeric orders n is at least 8. Cannot fail. */
static inline void shmd__okey_copy(const shmd__okey_t *q, uint32_t order, unsigned char *dst, size_t n) {
  if (n)
    memcpy(dst, q->key, n);
  if (order == SHMD__OKEY_DOUBLE || order == SHMD__OKEY_DOUBLE_BYTES)
    memcpy(dst, &q->d, 8);
}

/* memcmp order over the common prefix, then the shorter first: -1, 0 or 1. */
static inline int shmd__bytes_cmp(const void *a, size_t al, const void *b, size_t bl) {
  size_t n = al < bl ? al : bl;
  int c = n ? memcmp(a, b, n) : 0;
  if (c != 0)
    return c < 0 ? -1 : 1;
  return (al > bl) - (al < bl);
}

/*
 * A bounded destroy step of an ordered map, whose container is open (entered, locked) in
 * transaction level `tx`: removes entries, `count` of them left, at most max_entries, step by
 * step, as many as the transaction has room for (the first step always: the transaction is grown
 * for it), then, the map empty, finishes it (clears its kind word and frees what is left).
 *
 *   plan(map, left, max, &words, &allocs, &frees): the undo-log words, allocations and frees the
 *        next step needs, removing at most `max` entries (left of them remain);
 *   step(map, &removed): takes that step (removed: how many entries it removed, >= 1);
 *   finish(map): the empty map, after finish_words / finish_frees were reserved.
 *
 * Returns 0 with *remaining set (0: the map is gone), or the failing status; sets *doom when the
 * caller must abort its transaction whatever the status says (a caller's transaction may hold
 * earlier batches: it must never commit a half-destroyed map) -- when the transaction could not
 * grow for one step, or has no room for one (SHMD_ETXFULL). The caller ends its level.
 */
typedef struct shmd__destroy_ops_s {
  int (*plan)(void *map, uint64_t left, size_t max, size_t *words, size_t *allocs, size_t *frees);
  int (*step)(void *map, uint64_t *removed);
  int (*finish)(void *map);
  size_t finish_words, finish_frees;
} shmd__destroy_ops_t;

int shmd__omap_destroy_step(shmd_tx_t *tx, void *map, const shmd__destroy_ops_t *ops, uint64_t count,
                            size_t max_entries, uint64_t *remaining, int *doom);

/* Destroys a map with destroy_step(s, map, SIZE_MAX, &remaining) until it is gone. */
int shmd__omap_destroy(shmd_store_t *s, shmd_ptr_t map,
                       int (*destroy_step)(shmd_store_t *, shmd_ptr_t, size_t, uint64_t *));

#endif
