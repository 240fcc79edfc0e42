/* SPDX-License-Identifier: MIT */
/*
 * Arrays: growable vectors of fixed-size elements in shared memory.
 *
 * An array is a small header (kind word, lock, element size, length, capacity, buffer pointer)
 * and one element buffer. The element size is chosen at creation (1..SHMD_ARRAY_ELEM_MAX bytes)
 * and never changes; elements are opaque bytes, copied in and out under the array's lock. Indices
 * count from 0. Growth doubles the capacity by moving the elements to a new buffer inside the
 * operation's transaction, so a crash leaves either the old or the new buffer, never a mix.
 *
 * Every function takes the array's lock inside a transaction: it joins the calling thread's open
 * transaction if there is one (so several calls, also on other containers, can form one atomic
 * step), otherwise it is its own transaction. A failing function changes nothing; inside a caller's
 * transaction a failure after a partial change aborts that transaction (its outermost commit then
 * returns SHMD_EABORTED), while argument errors (SHMD_ERANGE, SHMD_EINVAL) leave it untouched.
 *
 * Statuses common to every function below: SHMD_EINVAL when `array` points to another kind of
 * container, SHMD_ECORRUPT when it points to no container or the array is damaged, SHMD_ENOLANE
 * when the thread cannot get a lane.
 */
#ifndef SHMD_ARRAY_H
#define SHMD_ARRAY_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "ptr.h"
#include "tx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest element size (so that changing one element always fits in a transaction's log). */
#define SHMD_ARRAY_ELEM_MAX 4096u

/*
 * Creates an empty array of `elem_bytes`-byte elements with room for `capacity` of them (0: the
 * buffer is allocated on first push) and stores its pointer in *out. Runs inside the caller's
 * transaction when one is open, so the caller can link the new array atomically; otherwise the
 * array exists once this returns, and the caller should link it somewhere (shmd_root_set) or it
 * leaks if the process dies first. Returns SHMD_EINVAL for elem_bytes 0 or above
 * SHMD_ARRAY_ELEM_MAX, SHMD_ETOOBIG when capacity * elem_bytes is 2^47 or more, and the statuses of
 * shmd_tx_alloc(). On failure nothing is allocated and *out is unchanged.
 */
SHMD_API int shmd_array_create(shmd_store_t *s, size_t elem_bytes, uint64_t capacity,
                               shmd_ptr_t *out);

/*
 * Frees the array and its buffer (one transaction, or part of the caller's). No other process may
 * use the array any more: unlink it from wherever it was reachable first, ideally in the same
 * transaction. On failure nothing is changed.
 */
SHMD_API int shmd_array_destroy(shmd_store_t *s, shmd_ptr_t array);

/* Number of elements, capacity (elements the buffer holds without growing) and element size.
 * On failure the output is unchanged. */
SHMD_API int shmd_array_len(shmd_store_t *s, shmd_ptr_t array, uint64_t *len);
SHMD_API int shmd_array_capacity(shmd_store_t *s, shmd_ptr_t array, uint64_t *capacity);
SHMD_API int shmd_array_elem_size(shmd_store_t *s, shmd_ptr_t array, size_t *elem_bytes);

/* Appends a copy of the element at `elem` (elem_bytes bytes), growing the buffer (doubling) when it
 * is full. Returns SHMD_ENOSPC / SHMD_ETOOBIG when the buffer cannot grow, SHMD_ETXFULL when the
 * transaction has no room. On failure nothing is changed. */
SHMD_API int shmd_array_push(shmd_store_t *s, shmd_ptr_t array, const void *elem);

/* Removes the last element, copying it to `out` first unless `out` is NULL. Returns
 * SHMD_ENOTFOUND when the array is empty. On failure nothing is changed. */
SHMD_API int shmd_array_pop(shmd_store_t *s, shmd_ptr_t array, void *out);

/* Copies element `index` to `out`. Returns SHMD_ERANGE when index >= length. */
SHMD_API int shmd_array_get(shmd_store_t *s, shmd_ptr_t array, uint64_t index, void *out);

/* Copies `count` elements starting at `index` to `out` (count * elem_bytes bytes) under one lock
 * hold. Returns SHMD_ERANGE unless index + count <= length (then `out` is untouched). */
SHMD_API int shmd_array_get_range(shmd_store_t *s, shmd_ptr_t array, uint64_t index, uint64_t count,
                                  void *out);

/* Overwrites element `index` with a copy of `elem`. Returns SHMD_ERANGE when index >= length,
 * SHMD_ETXFULL when the transaction has no room. On failure nothing is changed. */
SHMD_API int shmd_array_set(shmd_store_t *s, shmd_ptr_t array, uint64_t index, const void *elem);

/*
 * Inserts a copy of `elem` before element `index` (index == length appends), moving the elements
 * after it up by one: O(length - index). The move is undo-logged when it fits the transaction's
 * log, otherwise the elements are copied into a new buffer instead. Returns SHMD_ERANGE when
 * index > length, and the statuses of shmd_array_push(). On failure nothing is changed.
 */
SHMD_API int shmd_array_insert(shmd_store_t *s, shmd_ptr_t array, uint64_t index, const void *elem);

/*
 * Removes element `index`, copying it to `out` first unless `out` is NULL, and moves the elements
 * after it down by one: O(length - index). Like insert, a move too large for the log goes through
 * a new buffer, so this may fail with SHMD_ENOSPC. Returns SHMD_ERANGE when index >= length. On
 * failure nothing is changed.
 */
SHMD_API int shmd_array_remove(shmd_store_t *s, shmd_ptr_t array, uint64_t index, void *out);

/* Makes the capacity at least `capacity` elements (exactly that, when it grows). Returns
 * SHMD_ETOOBIG when capacity * elem_bytes is 2^47 or more, SHMD_ENOSPC when the store is full. On
 * failure nothing is changed. */
SHMD_API int shmd_array_reserve(shmd_store_t *s, shmd_ptr_t array, uint64_t capacity);

/* Shortens the array to `len` elements (the capacity stays). Returns SHMD_ERANGE when len is
 * greater than the length. On failure nothing is changed. */
SHMD_API int shmd_array_truncate(shmd_store_t *s, shmd_ptr_t array, uint64_t len);

/* Reduces the capacity to the length (frees the buffer of an empty array). Returns SHMD_ENOSPC
 * when the smaller buffer cannot be allocated. On failure nothing is changed. */
SHMD_API int shmd_array_shrink_to_fit(shmd_store_t *s, shmd_ptr_t array);

/*
 * Verifies the array under its lock: kind word, element size, length <= capacity, the buffer
 * pointer inside the store and its allocated block large enough for the capacity. Never crashes on
 * a damaged store. Returns 0 when everything holds, SHMD_ECORRUPT, or SHMD_EINVAL for another kind
 * of container; SHMD_EBUSY when a live owner keeps the lock for 10 s (or the handle's
 * shmd_set_lock_wait() bound).
 */
SHMD_API int shmd_array_check(shmd_store_t *s, shmd_ptr_t array);

#ifdef __cplusplus
}
#endif
#endif /* SHMD_ARRAY_H */
