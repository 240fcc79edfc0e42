/* SPDX-License-Identifier: MIT */
/*
 * Blobs: immutable length-prefixed byte strings in shared memory, and the byte-string hash every
 * container uses. A blob is one allocation: a 64-bit length followed by the bytes (plus a NUL that
 * is not counted, so text can be used in place). The other containers store small keys and values
 * inline and larger ones as blobs.
 */
#ifndef SHMD_BLOB_H
#define SHMD_BLOB_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "api.h"
#include "ptr.h"
#include "tx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 64-bit hash of a byte string (xxh3 with a seed). Cannot fail. */
SHMD_API uint64_t shmd_hash_bytes(const void *data, size_t len, uint64_t seed);

/* Allocates a blob holding a copy of `data` as part of `tx` (freed again if tx aborts). Returns the
 * statuses of shmd_tx_alloc(). */
SHMD_API int shmd_blob_create(shmd_tx_t *tx, const void *data, size_t len, shmd_ptr_t *out);

/* Frees a blob when `tx` commits. Returns the statuses of shmd_tx_free(). */
SHMD_API int shmd_blob_free(shmd_tx_t *tx, shmd_ptr_t blob);

/* Address and length of a blob's bytes, bounds-checked against its segment. Returns SHMD_ECORRUPT
 * for a pointer or length that does not fit the store. The bytes stay valid while the blob is not
 * freed (hold the lock of whatever structure owns it). */
SHMD_API int shmd_blob_view(shmd_store_t *store, shmd_ptr_t blob, const void **data, size_t *len);

/* memcmp-then-length comparison of a blob with `data`: <0, 0 or >0; *cmp receives it. Returns 0 or
 * SHMD_ECORRUPT. */
SHMD_API int shmd_blob_cmp(shmd_store_t *store, shmd_ptr_t blob, const void *data, size_t len,
                           int *cmp);

/* shmd_hash_bytes() of a blob's bytes. Returns 0 or SHMD_ECORRUPT. */
SHMD_API int shmd_blob_hash(shmd_store_t *store, shmd_ptr_t blob, uint64_t seed, uint64_t *hash);

/* ---- Additions (same layout, no change to the functions above) ------------------------------ */

/* memcmp-then-length order of two byte strings: <0, 0 or >0 (a proper prefix sorts first). Either
 * pointer may be NULL when its length is 0. Cannot fail. */
static inline int shmd_bytes_cmp(const void *a, size_t alen, const void *b, size_t blen) {
  size_t n = alen < blen ? alen : blen;
  int c = n ? memcmp(a, b, n) : 0;
  if (c != 0)
    return c;
  return alen < blen ? -1 : alen > blen;
}

/* Bytes a blob of `len` data bytes occupies (length word, data, NUL): what shmd_blob_create asks
 * the allocator for. Cannot fail. */
SHMD_API size_t shmd_blob_alloc_size(size_t len);

/* Allocates a blob of `len` bytes as part of `tx` like shmd_blob_create(), but leaves the data for
 * the caller to fill in through *data (NULL allowed) before the blob is linked anywhere; the NUL
 * after the data is already written. Returns the statuses of shmd_tx_alloc() and SHMD_ETOOBIG for
 * a length of 2^48 or more; on failure nothing is allocated and the outputs are unchanged. */
SHMD_API int shmd_blob_create_uninit(shmd_tx_t *tx, size_t len, shmd_ptr_t *out, void **data);

/* Length of a blob, bounds-checked as in shmd_blob_view(). Returns 0 or SHMD_ECORRUPT (then *len
 * is unchanged). */
SHMD_API int shmd_blob_len(shmd_store_t *store, shmd_ptr_t blob, size_t *len);

#ifdef __cplusplus
}
#endif
#endif /* SHMD_BLOB_H */
