/* SPDX-License-Identifier: MIT */
/*
 * Lists in shared memory, at two levels (as in the Linux kernel):
 *
 *  1. An intrusive core, shmd_list_node_t: two relative links you embed in your own structure, and
 *     static inline helpers that link and unlink nodes inside a transaction, logging every store
 *     so that a crash rolls the change back. Lists are circular with a sentinel node (usually
 *     embedded in the owning structure): an empty list's sentinel points to itself both ways.
 *
 *  2. A keyed list of byte strings built on that core (shmd_list_create() and friends): Redis list
 *     semantics (LPUSH, RPOP, LINDEX, LRANGE, LINSERT, LREM, LSET, LTRIM, LLEN) with its own lock.
 */
#ifndef SHMD_LIST_H
#define SHMD_LIST_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "ptr.h"
#include "tx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ============================================================================================== */
/* 1. Intrusive core                                                                              */
/* ============================================================================================== */

/* Two links, 8-byte aligned. `next` is at offset 0 and `prev` at offset 8. */
typedef struct shmd_list_node_s {
  shmd_ptr_t next;
  shmd_ptr_t prev;
} shmd_list_node_t;

/* shmd_container_of() is in ptr.h. */

/* The structure of type `type` that embeds the node at shmd_ptr_t `p` as `member`. */
#define shmd_list_entry(store, p, type, member)                                                    \
  shmd_container_of(shmd_resolve((store), (p)), type, member)

/* Flag for the linking helpers: the node was allocated by the current transaction (and is not yet
 * reachable), so its own link words are written without logging. */
#define SHMD_LIST_NEW 1u

/* The node at `p`. Does not check the pointer (see shmd_resolve()). */
static inline shmd_list_node_t *shmd_list_node(shmd_store_t *s, shmd_ptr_t p) {
  return (shmd_list_node_t *)shmd_resolve(s, p);
}

/* Makes `head` an empty list (both links to itself) with plain stores: for memory that is fresh
 * or that the caller has logged. Cannot fail. */
static inline void shmd_list_init(shmd_store_t *s, shmd_ptr_t head) {
  shmd_list_node_t *h = shmd_list_node(s, head);
  h->next = head;
  h->prev = head;
}

/* Whether the list with sentinel `head` is empty. Cannot fail. */
static inline int shmd_list_is_empty(shmd_store_t *s, shmd_ptr_t head) {
  return shmd_ptr_eq(shmd_list_node(s, head)->next, head);
}

/* Logs link word `word` (at shmd_ptr_t `wp`) and stores `v` in it. */
static inline int shmd__list_store(shmd_tx_t *tx, shmd_ptr_t wp, shmd_ptr_t *word, shmd_ptr_t v) {
  int rc = shmd_tx_log(tx, wp, sizeof *word);
  if (rc)
    return rc;
  *word = v;
  return 0;
}

/*
 * Links the unlinked `node` between the adjacent nodes `prev` and `next` (prev->next == next),
 * logging every store in `tx`; with SHMD_LIST_NEW in `flags`, the node's own two words are written
 * without logging. The caller holds the lock protecting the list. Returns the statuses of
 * shmd_tx_log() (SHMD_ETXFULL, SHMD_ECORRUPT); after a failure the links may be half-changed and
 * the caller must abort the transaction.
 */
static inline int shmd_list_link(shmd_tx_t *tx, shmd_store_t *s, shmd_ptr_t node, shmd_ptr_t prev,
                                 shmd_ptr_t next, unsigned flags) {
  shmd_list_node_t *n = shmd_list_node(s, node);
  int rc;
  if (flags & SHMD_LIST_NEW) {
    n->next = next;
    n->prev = prev;
  } else if ((rc = shmd__list_store(tx, node, &n->next, next)) ||
             (rc = shmd__list_store(tx, shmd_ptr_add(node, 8), &n->prev, prev))) {
    return rc;
  }
  if ((rc = shmd__list_store(tx, prev, &shmd_list_node(s, prev)->next, node)))
    return rc;
  return shmd__list_store(tx, shmd_ptr_add(next, 8), &shmd_list_node(s, next)->prev, node);
}

/* Links `node` right after `pos` (after the sentinel: at the front). As shmd_list_link(). */
static inline int shmd_list_add_after(shmd_tx_t *tx, shmd_store_t *s, shmd_ptr_t pos,
                                      shmd_ptr_t node, unsigned flags) {
  return shmd_list_link(tx, s, node, pos, shmd_list_node(s, pos)->next, flags);
}

/* Links `node` right before `pos` (before the sentinel: at the back). As shmd_list_link(). */
static inline int shmd_list_add_before(shmd_tx_t *tx, shmd_store_t *s, shmd_ptr_t pos,
                                       shmd_ptr_t node, unsigned flags) {
  return shmd_list_link(tx, s, node, shmd_list_node(s, pos)->prev, pos, flags);
}

/*
 * Unlinks the run of nodes first .. last (first == last for one node; last reached from first by
 * next links) from its list, logging the two stores. The run's own links are left as they were,
 * so the caller can still walk it to free the nodes. As shmd_list_link() on failure.
 */
static inline int shmd_list_del_range(shmd_tx_t *tx, shmd_store_t *s, shmd_ptr_t first,
                                      shmd_ptr_t last) {
  shmd_ptr_t prev = shmd_list_node(s, first)->prev, next = shmd_list_node(s, last)->next;
  int rc = shmd__list_store(tx, prev, &shmd_list_node(s, prev)->next, next);
  if (rc)
    return rc;
  return shmd__list_store(tx, shmd_ptr_add(next, 8), &shmd_list_node(s, next)->prev, prev);
}

/* Unlinks `node` from its list. As shmd_list_del_range(). */
static inline int shmd_list_del(shmd_tx_t *tx, shmd_store_t *s, shmd_ptr_t node) {
  return shmd_list_del_range(tx, s, node, node);
}

/* Puts the unlinked `node` in the place of the linked `old` (whose links stay as they were). As
 * shmd_list_link(). */
static inline int shmd_list_replace(shmd_tx_t *tx, shmd_store_t *s, shmd_ptr_t old,
                                    shmd_ptr_t node, unsigned flags) {
  shmd_list_node_t *o = shmd_list_node(s, old);
  return shmd_list_link(tx, s, node, o->prev, o->next, flags);
}

/* ============================================================================================== */
/* 2. Keyed list of byte strings                                                                  */
/* ============================================================================================== */

/*
 * A list of byte strings (0 bytes up to 2^47) with its own lock. Elements up to
 * SHMD_LIST_INLINE_MAX bytes are stored inside their node (one allocation per element), longer
 * ones as a blob the node points to. Push and pop at either end are O(1), access by index walks
 * from the closer end (O(min(i, n - i))).
 *
 * Indices are Redis's: 0 is the head, -1 the tail, -2 the one before, and so on.
 *
 * Every function runs in a transaction holding the list's lock: it joins the calling thread's open
 * transaction if there is one, otherwise it is its own. A function that fails changes nothing;
 * inside a caller's transaction a failure after a partial change aborts that transaction (its
 * outermost commit returns SHMD_EABORTED), while argument and lookup results (SHMD_ENOTFOUND,
 * SHMD_ERANGE, SHMD_EINVAL, a callback's status) leave it untouched.
 *
 * Operations that may remove many elements at once (shmd_list_rem, shmd_list_trim,
 * shmd_list_destroy) do it in batches when no transaction of the caller is open: each batch is an
 * atomic transaction that leaves a valid, shorter list, so other processes may see the list
 * between batches and a crash may leave part of the removal done. Inside a caller's transaction
 * they are atomic: the transaction grows to hold the whole removal, and they fail with SHMD_ENOSPC
 * (changing nothing) when the store has no space for that.
 *
 * Statuses common to every function below: SHMD_EINVAL when `list` points to another kind of
 * container, SHMD_ECORRUPT when it points to no container or the list is damaged, SHMD_ENOLANE when
 * the thread cannot get a lane.
 */

/* Longest element stored inside its node (a node is then at most 4 KiB). */
#define SHMD_LIST_INLINE_MAX 4072u

/* Ends of a list. */
enum { SHMD_LIST_HEAD = 0, SHMD_LIST_TAIL = 1 };

/* Called with one element's bytes, under the list's lock: the bytes are valid only during the
 * call, and the callback must not call list functions on the same list. A non-zero return stops
 * the operation, which returns that value. */
typedef int (*shmd_list_visit_fn)(const void *data, size_t len, void *arg);

/*
 * Creates an empty list and stores its pointer in *out. Runs inside the caller's transaction when
 * one is open, so the caller can link the new list atomically; otherwise the list exists once this
 * returns and the caller should link it (shmd_root_set) before it could leak. Returns the statuses
 * of shmd_tx_alloc(). On failure nothing is allocated and *out is unchanged.
 */
SHMD_API int shmd_list_create(shmd_store_t *s, shmd_ptr_t *out);

/*
 * Frees the list and all its elements, in batches as described above (a crash half-way leaves a
 * shorter, valid list that can be destroyed again). No other process may use the list any more:
 * unlink it from wherever it was reachable first. On failure the list is valid (possibly shorter).
 */
SHMD_API int shmd_list_destroy(shmd_store_t *s, shmd_ptr_t list);

/* Number of elements (LLEN). On failure *len is unchanged. */
SHMD_API int shmd_list_len(shmd_store_t *s, shmd_ptr_t list, uint64_t *len);

/*
 * Adds a copy of `len` bytes at `data` at the head or tail (`where`: SHMD_LIST_HEAD / _TAIL), like
 * LPUSH / RPUSH. *new_len (if not NULL) receives the new length. Returns SHMD_EINVAL for a bad
 * `where`, SHMD_ETOOBIG for len >= 2^47, SHMD_ENOSPC, SHMD_ETXFULL. On failure nothing is changed.
 */
SHMD_API int shmd_list_push(shmd_store_t *s, shmd_ptr_t list, int where, const void *data,
                            size_t len, uint64_t *new_len);

/*
 * Removes the element at the head or tail (LPOP / RPOP). Unless `buf` is NULL, copies it to `buf`
 * first; *len (if not NULL) receives its length. When `buf` is not NULL and the element is longer
 * than `cap`, returns SHMD_ERANGE with *len set to the length needed and removes nothing. Returns
 * SHMD_ENOTFOUND when the list is empty. On failure nothing is changed.
 */
SHMD_API int shmd_list_pop(shmd_store_t *s, shmd_ptr_t list, int where, void *buf, size_t cap,
                           size_t *len);

/* Like shmd_list_pop(), but hands the element to fn(data, len, arg) under the lock before removing
 * it; a non-zero return from fn keeps the element and is returned. */
SHMD_API int shmd_list_pop_fn(shmd_store_t *s, shmd_ptr_t list, int where, shmd_list_visit_fn fn,
                              void *arg);

/*
 * Copies the element at `index` (LINDEX; negative counts from the tail) to `buf`; *len (if not
 * NULL) receives its length. Returns SHMD_ENOTFOUND when the index is out of range, SHMD_ERANGE
 * (with *len set) when the element is longer than `cap`.
 */
SHMD_API int shmd_list_index(shmd_store_t *s, shmd_ptr_t list, int64_t index, void *buf, size_t cap,
                             size_t *len);

/*
 * Calls fn for each element from `start` to `stop` inclusive, in order (LRANGE: negative indices
 * count from the tail, out-of-range ends are clamped, an empty range calls nothing). Holds the
 * lock for the whole range; use an iterator for long walks. Returns 0, or fn's non-zero status.
 */
SHMD_API int shmd_list_range(shmd_store_t *s, shmd_ptr_t list, int64_t start, int64_t stop,
                             shmd_list_visit_fn fn, void *arg);

/* Replaces the element at `index` with a copy of `data` (LSET). Returns SHMD_ERANGE when the index
 * is out of range, and the statuses of shmd_list_push(). On failure nothing is changed. */
SHMD_API int shmd_list_set(shmd_store_t *s, shmd_ptr_t list, int64_t index, const void *data,
                           size_t len);

/*
 * Inserts a copy of `data` before (after == 0) or after (after != 0) the first element, from the
 * head, equal to `pivot` (LINSERT). *new_len (if not NULL) receives the new length. Returns
 * SHMD_ENOTFOUND when no element equals the pivot, and the statuses of shmd_list_push(). On
 * failure nothing is changed.
 */
SHMD_API int shmd_list_insert(shmd_store_t *s, shmd_ptr_t list, int after, const void *pivot,
                              size_t pivot_len, const void *data, size_t len, uint64_t *new_len);

/*
 * Removes elements equal to `data` (LREM): the first `count` from the head when count > 0, the
 * last -count from the tail when count < 0, all when count == 0. *removed (if not NULL) receives
 * how many were removed (also on failure, when batches had already committed). Many removals are
 * done in batches (see above).
 */
SHMD_API int shmd_list_rem(shmd_store_t *s, shmd_ptr_t list, int64_t count, const void *data,
                           size_t len, uint64_t *removed);

/* Keeps only the elements from `start` to `stop` inclusive (LTRIM; indices as in
 * shmd_list_range(); an empty range empties the list). Many removals are done in batches. */
SHMD_API int shmd_list_trim(shmd_store_t *s, shmd_ptr_t list, int64_t start, int64_t stop);

/*
 * A cursor for walking a list in batches, each under one lock hold, in either direction. It lives
 * in the caller's memory and holds no lock between batches. When the list is not changed between
 * batches, every element is visited exactly once, in order. Elements added later behind the cursor
 * are visited too (so a walk towards the tail also sees later pushes at the tail). When elements
 * were removed between batches, the cursor resumes at the same position counted from its starting
 * end, so elements may then be skipped or visited twice. Set it up with shmd_list_iter_init() only;
 * its size is fixed (the reserved words leave room for more state without changing it).
 */
typedef struct shmd_list_iter_s {
  shmd_ptr_t list;
  shmd_ptr_t last;      /* last node visited; null before the first */
  uint64_t epoch;       /* the list's removal epoch when `last` was visited */
  uint64_t visited;     /* elements visited so far */
  int reverse;          /* 0: head to tail, 1: tail to head */
  uint64_t reserved[2]; /* zeroed by shmd_list_iter_init(): room for more cursor state */
} shmd_list_iter_t;

/* Starts a walk over `list` from the head (reverse == 0) or the tail. Touches no shared memory;
 * cannot fail. */
SHMD_API void shmd_list_iter_init(shmd_list_iter_t *it, shmd_ptr_t list, int reverse);

/*
 * Visits up to `max` further elements with fn under one lock hold. *visited (if not NULL) receives
 * how many were visited; fewer than `max` (0 at the end) means the walk has reached the end for
 * now. Returns 0, fn's non-zero status (the element fn stopped at counts as visited), or
 * SHMD_ECORRUPT when a link is damaged (also when the walk finds more nodes than the count).
 */
SHMD_API int shmd_list_iter_next(shmd_store_t *s, shmd_list_iter_t *it, size_t max,
                                 shmd_list_visit_fn fn, void *arg, size_t *visited);

/*
 * Verifies the list under its lock: kind word, every link in both directions (next->prev is the
 * node itself), the count, each element's length and storage (node block large enough, blob
 * inside the store), with a walk bounded by the count and every pointer checked. Never crashes on
 * a damaged store. Returns 0 when everything holds, SHMD_ECORRUPT, or SHMD_EINVAL for another kind
 * of container; SHMD_EBUSY when a live owner keeps the lock for 10 s (or the handle's
 * shmd_set_lock_wait() bound).
 */
SHMD_API int shmd_list_check(shmd_store_t *s, shmd_ptr_t list);

#ifdef __cplusplus
}
#endif
#endif /* SHMD_LIST_H */
