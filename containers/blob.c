/* SPDX-License-Identifier: MIT */
/*
 * Blobs: immutable length-prefixed byte strings, and the byte-string hash of every container.
 *
 * A blob is a single allocation laid out as
 *
 *     +----------------+---------------------------+----+
 *     | len_bytes (u64)| len_bytes bytes of data   | \0 |
 *     +----------------+---------------------------+----+
 *
 * The trailing NUL is not counted; it lets text be used in place. A blob never changes after it
 * is created, so a blob needs no lock of its own: whoever owns it (a list node, a hash entry)
 * guards its lifetime. Since blobs are read from shared memory that another process may have
 * damaged, every accessor validates the pointer and the length against the segment before it
 * hands out an address.
 *
 * The hash is XXH3-64 with a seed (libxxhash): fast on short keys, good distribution, and the
 * seed lets each table pick its own so that collisions cannot be precomputed across tables.
 */
#include "shmdict/blob.h"

#include <string.h>
#include <xxhash.h>

#include "shmdict/error.h"

/* ---------------------------------------------------------------------------------------------- */
/* Layout */

typedef struct blob_hdr_s {
  uint64_t len_bytes;
  unsigned char data[];
} blob_hdr_t;

/* Largest length a blob may declare: keeps header + data + NUL far from size_t overflow, and no
 * segment can be larger than 2^48 bytes anyway. */
#define BLOB_LEN_MAX (UINT64_C(1) << SHMD_PTR_OFFSET_BITS)

size_t shmd_blob_alloc_size(size_t len) { return sizeof(blob_hdr_t) + len + 1; }

/* ---------------------------------------------------------------------------------------------- */
/* Hash */

uint64_t shmd_hash_bytes(const void *data, size_t len, uint64_t seed) {
  return (uint64_t)XXH3_64bits_withSeed(data, len, (XXH64_hash_t)seed);
}

/* ---------------------------------------------------------------------------------------------- */
/* Create and free */

int shmd_blob_create_uninit(shmd_tx_t *tx, size_t len, shmd_ptr_t *out, void **data) {
  if ((uint64_t)len >= BLOB_LEN_MAX)
    return SHMD_ETOOBIG;
  shmd_ptr_t p;
  int rc = shmd_tx_alloc(tx, shmd_blob_alloc_size(len), &p);
  if (rc)
    return rc;
  blob_hdr_t *b = shmd_resolve(shmd_tx_store(tx), p);
  b->len_bytes = len;
  b->data[len] = '\0';
  *out = p;
  if (data != NULL)
    *data = b->data;
  return 0;
}

int shmd_blob_create(shmd_tx_t *tx, const void *data, size_t len, shmd_ptr_t *out) {
  void *dst;
  shmd_ptr_t p;
  int rc = shmd_blob_create_uninit(tx, len, &p, &dst);
  if (rc)
    return rc;
  if (len)
    memcpy(dst, data, len);
  *out = p;
  return 0;
}

int shmd_blob_free(shmd_tx_t *tx, shmd_ptr_t blob) { return shmd_tx_free(tx, blob); }

/* ---------------------------------------------------------------------------------------------- */
/* Read access */

int shmd_blob_view(shmd_store_t *store, shmd_ptr_t blob, const void **data, size_t *len) {
  void *addr;
  /* Blocks are 16-aligned: a blob pointer that is not 8-aligned is damaged (and its length word
   * would be read misaligned). */
  if ((blob.v & 7) != 0 || shmd_resolve_checked(store, blob, sizeof(blob_hdr_t), &addr))
    return SHMD_ECORRUPT;
  uint64_t n = __atomic_load_n(&((blob_hdr_t *)addr)->len_bytes, __ATOMIC_RELAXED);
  if (n >= BLOB_LEN_MAX || n > SIZE_MAX - sizeof(blob_hdr_t) - 1)
    return SHMD_ECORRUPT;
  if (shmd_resolve_checked(store, blob, sizeof(blob_hdr_t) + (size_t)n + 1, &addr))
    return SHMD_ECORRUPT;
  *data = ((blob_hdr_t *)addr)->data;
  *len = (size_t)n;
  return 0;
}

int shmd_blob_len(shmd_store_t *store, shmd_ptr_t blob, size_t *len) {
  const void *data;
  return shmd_blob_view(store, blob, &data, len);
}

int shmd_blob_cmp(shmd_store_t *store, shmd_ptr_t blob, const void *data, size_t len, int *cmp) {
  const void *bd;
  size_t bl;
  int rc = shmd_blob_view(store, blob, &bd, &bl);
  if (rc)
    return rc;
  *cmp = shmd_bytes_cmp(bd, bl, data, len);
  return 0;
}

int shmd_blob_hash(shmd_store_t *store, shmd_ptr_t blob, uint64_t seed, uint64_t *hash) {
  const void *bd;
  size_t bl;
  int rc = shmd_blob_view(store, blob, &bd, &bl);
  if (rc)
    return rc;
  *hash = shmd_hash_bytes(bd, bl, seed);
  return 0;
}
