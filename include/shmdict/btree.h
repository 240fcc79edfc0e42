/* SPDX-License-Identifier: MIT */
/*
 * An order-statistic (counted) B+tree map in shared memory: byte-string keys and values, ordered
 * by an ordering chosen at creation, with rank / select in O(log n). It has the operations and the
 * semantics of the keyed red-black map of rbtree.h (shmd_rbtree_*), name for name, so that code can
 * move from one to the other mechanically; what differs is the layout, made for memory latency:
 *
 *   - nodes of a few cache lines (CAP = 16 entries or children per node) instead of one entry per
 *     node, so a descent through a million entries visits about six nodes, the upper ones cached;
 *   - every key has an 8-byte order-preserving abbreviation kept in a packed array at the front of
 *     its node, so choosing a child reads two or three consecutive cache lines (fetched together),
 *     and only keys whose abbreviations tie (equal scores of a sorted set, equal 8-byte prefixes)
 *     are compared in full;
 *   - keys of up to SHMD_BTREE_INLINE_KEY_MAX bytes live in the node; longer ones keep a 16-byte
 *     prefix there and their bytes in their own allocation; values of up to 8 bytes live in the
 *     node, longer ones in their own allocation;
 *   - each internal node keeps, per child, the number of entries below it, which gives rank,
 *     select and count_below in one descent.
 *
 * A tree is addressed by the shmd_ptr_t of its header (from shmd_btree_create, usually kept in a
 * named root or inside another structure) and can be used from any process that has the store
 * open. Each tree has its own lock (shmd_lock_t): every function takes it for its duration
 * (readers too), inside the caller's transaction if one is open (then the lock is held until that
 * one ends). Every change goes through the transaction (undo log, allocations and frees), so a
 * process killed at any instruction leaves the tree as before the operation, or as after it if it
 * had committed.
 *
 * Keys are passed as bytes in every ordering, exactly as for the rbtree:
 *   SHMD_BTREE_BYTES         any bytes, memcmp over the common prefix, then the shorter key first;
 *   SHMD_BTREE_I64           exactly 8 bytes: an int64_t in native byte order; signed order;
 *   SHMD_BTREE_DOUBLE        exactly 8 bytes: a double in native byte order; numeric order with
 *                            -inf < ... < -0.0 == +0.0 < ... < +inf;
 *   SHMD_BTREE_DOUBLE_BYTES  8 bytes of a double then any bytes (the member): by the number, then
 *                            the bytes as in SHMD_BTREE_BYTES: the (score, member) order of sorted
 *                            sets; shmd_btree_dkey() builds one.
 * NaN is not a key: every function given a key whose number is NaN returns SHMD_EINVAL. -0.0 and
 * +0.0 are the same key; a key is stored (and returned) with +0.0. Keys and values are at most
 * SHMD_BTREE_LEN_MAX bytes.
 *
 * Statuses common to every function below: SHMD_EINVAL when `tree` is another kind of shmdict
 * container (or a bad argument), SHMD_ECORRUPT when it is not a container at all or the tree is
 * damaged, SHMD_ENOLANE / SHMD_ECORRUPT from taking the lock. Every mutation is atomic: on failure
 * nothing is changed. A function that fails without having changed anything leaves a caller's
 * open transaction intact (a miss does not abort it).
 *
 * Failures: every function returns 0 or a negative SHMD_E* status (error.h), outputs come last.
 */
#ifndef SHMD_BTREE_H
#define SHMD_BTREE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "api.h"
#include "error.h"
#include "ptr.h"
#include "tx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The orderings; the same values as shmd_rbtree_order_t. */
typedef enum shmd_btree_order_e {
  SHMD_BTREE_BYTES = 1,
  SHMD_BTREE_I64 = 2,
  SHMD_BTREE_DOUBLE = 3,
  SHMD_BTREE_DOUBLE_BYTES = 4,
} shmd_btree_order_t;

/* Keys of at most this many bytes are stored whole in their node (for DOUBLE_BYTES: members of
 * up to 16 bytes). */
#define SHMD_BTREE_INLINE_KEY_MAX 24u
/* Values of at most this many bytes are stored in their node. */
#define SHMD_BTREE_INLINE_VAL_MAX 8u
#define SHMD_BTREE_LEN_MAX 0x7fffffffu

/* Modes of shmd_btree_put() (the values of the rbtree's modes). */
enum {
  SHMD_BTREE_UPSERT = 0, /* insert or replace the value */
  SHMD_BTREE_NX = 1,     /* insert only: SHMD_EEXIST if the key is present */
  SHMD_BTREE_XX = 2,     /* update only: SHMD_ENOTFOUND if the key is absent */
};

/* How shmd_btree_seek() and shmd_btree_walk_key() pick their entry relative to a key. */
typedef enum shmd_btree_seek_e {
  SHMD_BTREE_GE = 0, /* the first entry >= key (lower bound) */
  SHMD_BTREE_GT = 1, /* the first entry > key (upper bound) */
  SHMD_BTREE_LE = 2, /* the last entry <= key */
  SHMD_BTREE_LT = 3, /* the last entry < key */
} shmd_btree_seek_t;

/*
 * What the positional reads copy out (the shape of shmd_rbtree_item_t). Set key/key_cap and
 * val/val_cap to your buffers (NULL / 0 for what you do not want); on success key_len / val_len
 * receive the full lengths (the copies are truncated to the capacities: compare to detect
 * truncation) and rank the entry's 0-based rank.
 */
typedef struct shmd_btree_item_s {
  void *key;
  size_t key_cap;
  size_t key_len;
  void *val;
  size_t val_cap;
  size_t val_len;
  uint64_t rank;
} shmd_btree_item_t;

/*
 * Called by the walks for each entry, under the tree's lock. The pointers address the entry in
 * shared memory and stay valid only during the call (an inline value of up to 8 bytes may be
 * unaligned for its type: copy it out). The callback must not modify this tree; it may read it.
 * A non-zero return stops the walk and is returned by it.
 */
typedef int (*shmd_btree_visit_fn)(const void *key, size_t key_len, const void *val,
                                   size_t val_len, uint64_t rank, void *arg);

/* Writes the SHMD_BTREE_DOUBLE_BYTES key (score, member) into `buf` (member_len + 8 bytes) and
 * returns its length. Cannot fail. */
static inline size_t shmd_btree_dkey(double score, const void *member, size_t member_len,
                                     void *buf) {
  unsigned char *b = (unsigned char *)buf;
  memcpy(b, &score, 8);
  if (member_len)
    memcpy(b + 8, member, member_len);
  return member_len + 8;
}

/*
 * Creates an empty tree with ordering `order` and stores its pointer in *out. Runs inside the
 * calling thread's open transaction if there is one (if that transaction aborts the tree is
 * freed), else in its own. Returns SHMD_EINVAL for an unknown ordering, the statuses of
 * shmd_tx_alloc(). On failure nothing is allocated and *out is unchanged.
 */
SHMD_API int shmd_btree_create(shmd_store_t *s, shmd_btree_order_t order, shmd_ptr_t *out);

/*
 * Destroys the tree and frees everything it owns. Large trees are taken apart in several
 * transactions (entries are removed in batches that fit one transaction, then the nodes and the
 * header are freed), each leaving a smaller valid tree: if the process dies half-way, the tree is
 * still there, smaller, and can be destroyed again. Inside an open transaction of the caller all
 * batches join it and the transaction grows to hold them (SHMD_ENOSPC if the store has no room
 * for that bookkeeping; the caller's transaction is then marked aborted). On failure the tree may
 * have lost entries but is valid.
 */
SHMD_API int shmd_btree_destroy(shmd_store_t *s, shmd_ptr_t tree);

/*
 * One batch of shmd_btree_destroy(): removes up to `max_entries` entries (fewer if the transaction
 * fills up), smallest first, in one transaction; once the tree is empty, frees it. *remaining
 * receives the number of entries left; 0 means the tree is gone (do not use `tree` again). On
 * failure nothing is changed, except for SHMD_ENOSPC / SHMD_ETXFULL inside a caller's transaction:
 * that transaction is then marked aborted (it may hold earlier batches).
 */
SHMD_API int shmd_btree_destroy_step(shmd_store_t *s, shmd_ptr_t tree, size_t max_entries,
                                     uint64_t *remaining);

/* The ordering the tree was created with. */
SHMD_API int shmd_btree_order(shmd_store_t *s, shmd_ptr_t tree, shmd_btree_order_t *out);

/* The number of entries, in O(1). */
SHMD_API int shmd_btree_len(shmd_store_t *s, shmd_ptr_t tree, uint64_t *out);

/*
 * Sets the value of `key` to `val` (`mode`: SHMD_BTREE_UPSERT, _NX or _XX). *inserted (may be
 * NULL) receives 1 when a new entry was created, 0 when an existing value was replaced. O(log n).
 * Returns SHMD_EEXIST (NX, present), SHMD_ENOTFOUND (XX, absent), SHMD_EINVAL (bad key for the
 * ordering, NaN, bad mode), SHMD_ETOOBIG (longer than SHMD_BTREE_LEN_MAX), SHMD_ENOSPC and the
 * statuses of shmd_tx_alloc(). On failure nothing is changed.
 */
SHMD_API int shmd_btree_put(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                            const void *val, size_t val_len, int mode, int *inserted);

/*
 * Copies the value of `key` into val[0 .. min(val_cap, length)) (val may be NULL with val_cap 0)
 * and stores its full length in *val_len (may be NULL). Returns SHMD_ENOTFOUND when absent
 * (outputs unchanged). O(log n).
 */
SHMD_API int shmd_btree_get(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                            void *val, size_t val_cap, size_t *val_len);

/* Removes `key` and its value. Returns SHMD_ENOTFOUND when absent. O(log n). On failure nothing
 * is changed. */
SHMD_API int shmd_btree_delete(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len);

/* The 0-based rank of `key` (the number of smaller keys) in O(log n); SHMD_ENOTFOUND when
 * absent. */
SHMD_API int shmd_btree_rank(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                             uint64_t *rank);

/* The number of keys < `key` (or <= `key` when `inclusive`), present or not, in O(log n). With two
 * calls this counts a key range (ZCOUNT). */
SHMD_API int shmd_btree_count_below(shmd_store_t *s, shmd_ptr_t tree, const void *key,
                                    size_t key_len, int inclusive, uint64_t *count);

/* The entry of 0-based rank `index`, copied out as described at shmd_btree_item_t (item may be
 * NULL), in O(log n). SHMD_ENOTFOUND when index >= the number of entries. */
SHMD_API int shmd_btree_select(shmd_store_t *s, shmd_ptr_t tree, uint64_t index,
                               shmd_btree_item_t *item);

/* The entry chosen by `how` relative to `key` (SHMD_BTREE_GE / GT / LE / LT), copied out, in
 * O(log n). SHMD_ENOTFOUND when there is none. */
SHMD_API int shmd_btree_seek(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                             shmd_btree_seek_t how, shmd_btree_item_t *item);

/* seek GE / GT: the first entry >= / > key. */
SHMD_API int shmd_btree_lower_bound(shmd_store_t *s, shmd_ptr_t tree, const void *key,
                                    size_t key_len, shmd_btree_item_t *item);
SHMD_API int shmd_btree_upper_bound(shmd_store_t *s, shmd_ptr_t tree, const void *key,
                                    size_t key_len, shmd_btree_item_t *item);

/* The smallest / largest entry; SHMD_ENOTFOUND when the tree is empty. */
SHMD_API int shmd_btree_first(shmd_store_t *s, shmd_ptr_t tree, shmd_btree_item_t *item);
SHMD_API int shmd_btree_last(shmd_store_t *s, shmd_ptr_t tree, shmd_btree_item_t *item);

/* The entry after / before `key` (which need not be present: seek GT / LT), so a cursor that
 * remembers the last key survives concurrent changes. SHMD_ENOTFOUND past the end. */
SHMD_API int shmd_btree_next(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                             shmd_btree_item_t *item);
SHMD_API int shmd_btree_prev(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                             shmd_btree_item_t *item);

/*
 * Range iteration by rank, one locked batch: calls fn for up to `max` entries starting at rank
 * `start`, in ascending order (or descending from `start` when `reverse`). O(log n + max).
 * *visited (may be NULL) receives the number of calls made. Returns 0 (also when start is past the
 * end: nothing visited), the callback's non-zero status, or SHMD_ECORRUPT. Continue with
 * start + visited (start - visited when reversed) in the next batch.
 */
SHMD_API int shmd_btree_walk_rank(shmd_store_t *s, shmd_ptr_t tree, uint64_t start, size_t max,
                                  int reverse, shmd_btree_visit_fn fn, void *arg, size_t *visited);

/*
 * Range iteration by key, one locked batch: calls fn for up to `max` entries starting at the entry
 * chosen by `how` relative to `key`; ascending for SHMD_BTREE_GE / GT, descending for LE / LT.
 * Continue in the next batch from the last key seen with GT (LT when descending). Returns as
 * shmd_btree_walk_rank().
 */
SHMD_API int shmd_btree_walk_key(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                                 shmd_btree_seek_t how, size_t max, shmd_btree_visit_fn fn,
                                 void *arg, size_t *visited);

/*
 * Verifies every invariant under the tree's lock: the header; every node pointer inside the store,
 * an allocated block of a node's size with the node mark; every leaf at the same depth and each
 * node's level; fill bounds (a non-root node holds at least half of its capacity, an internal
 * root at least two children); keys strictly increasing across the leaves and every separator a
 * bound of its subtree; each per-child count equal to the entries below it and their total equal
 * to the length; each key's length, inline / out-of-line layout and abbreviation, its prefix equal
 * to its out-of-line bytes, keys valid for the ordering (no NaN, no -0.0); values' layout and
 * pointers. Bounded walks; never crashes on corruption. Returns 0, SHMD_ECORRUPT with the place in
 * shmd_errdetail(), or SHMD_EINVAL for another kind of container; SHMD_EBUSY when a live owner
 * keeps the lock for 10 s (or the handle's shmd_set_lock_wait() bound).
 */
SHMD_API int shmd_btree_check(shmd_store_t *s, shmd_ptr_t tree);

#ifdef __cplusplus
}
#endif
#endif /* SHMD_BTREE_H */
