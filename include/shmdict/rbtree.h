/* SPDX-License-Identifier: MIT */
/*
 * Red-black trees in shared memory, in two levels (as in the Linux kernel):
 *
 *   1. The intrusive core (shmd_rb_*): a shmd_rb_node_t embedded in your own structure, linked by
 *      shmd_ptr_t (so a tree may span segments), with the colour packed into the parent link and the
 *      size of the subtree kept in every node, which gives rank and select in O(log n). You write
 *      the descent (or use the static inline shmd_rb_find / shmd_rb_add helpers with your
 *      comparator, Linux rb_find / rb_add style); the core does the linking, the rebalancing, the
 *      subtree sizes and the navigation. Every store the core makes into a tree goes through the
 *      caller's transaction (shmd_tx_log), so a process killed in the middle of a rotation leaves a
 *      tree that recovery rolls back to the state before the operation.
 *
 *   2. The keyed ordered map (shmd_rbtree_*), built on the core: byte-string keys and values, an
 *      ordering chosen at creation and stored in the tree (bytes, signed 64-bit integers, doubles,
 *      or a double then bytes: the score-then-member order of sorted sets), its own shmd_lock_t,
 *      crash safety, rank / select, cursor-style iteration in locked batches, and a checker.
 *
 * Failures: every function returns 0 or a negative SHMD_E* status (error.h), outputs come last.
 */
#ifndef SHMD_RBTREE_H
#define SHMD_RBTREE_H

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

/* ============================================================================================== */
/* Part 1: the intrusive core                                                                     */
/* ============================================================================================== */

/*
 * A tree node, embedded in a structure of yours that lives in the store. 32 bytes, must be 8-byte
 * aligned (every shmd_alloc block is). All four words belong to the core while the node is in a
 * tree; read them through the accessors below, never write them yourself.
 *
 *   parent_color  the parent's shmd_ptr_t value, with bit 0 holding the colour (0 red, 1 black);
 *                 the root's parent is null
 *   left, right   children (null: none)
 *   size          number of nodes in the subtree rooted here, this one included
 */
typedef struct shmd_rb_node_s {
  uint64_t parent_color;
  shmd_ptr_t left;
  shmd_ptr_t right;
  uint64_t size;
} shmd_rb_node_t;

/* The root of a tree: one pointer, zero-initialised means empty. Lives in the store (inside your
 * container's header); the core functions take a shmd_ptr_t to it. */
typedef struct shmd_rb_root_s {
  shmd_ptr_t node;
} shmd_rb_root_t;

#define SHMD_RB_RED 0u
#define SHMD_RB_BLACK 1u
/* No valid tree of fewer than 2^64 nodes is deeper than this (height <= 2 log2(n + 1)): every walk
 * of the core is bounded by it and reports SHMD_ECORRUPT beyond. */
#define SHMD_RB_MAX_DEPTH 128u

/* The parent of a node (null for the root). Cannot fail. */
static inline shmd_ptr_t shmd_rb_parent(const shmd_rb_node_t *n) {
  shmd_ptr_t p;
  p.v = n->parent_color & ~(uint64_t)1;
  return p;
}

/* SHMD_RB_RED or SHMD_RB_BLACK. Cannot fail. */
static inline unsigned shmd_rb_color(const shmd_rb_node_t *n) {
  return (unsigned)(n->parent_color & 1u);
}

/* The address of the node at `p` in this process: NULL for the null pointer, a misaligned pointer or
 * one into a segment that does not exist. This is the fast resolve of the descents (one load and an
 * add); it does not check the offset against the segment size (shmd_rb_check and the iteration
 * functions use shmd_resolve_checked). */
static inline shmd_rb_node_t *shmd_rb_node(shmd_store_t *s, shmd_ptr_t p) {
  if (p.v == 0 || (p.v & 7u) != 0)
    return NULL;
  return (shmd_rb_node_t *)shmd_resolve(s, p);
}

/*
 * Links `node` into the tree at `root` as the `right` (1) or left (0) child of `parent`, which must
 * be null there (parent null: the tree must be empty), then rebalances and updates the subtree
 * sizes on the path to the root. This is Linux's rb_link_node + rb_insert_color in one call; the
 * caller has found the place by a descent under the lock that protects the tree.
 * `node` must not be in any tree; its four words are (re)initialised here, logged like every other
 * store, so a node may be erased and re-inserted in the same transaction (to change its key).
 * Uses O(log n) undo-log entries: typically log2 n + 10, at most about 5 log2 n + 25. Returns SHMD_EINVAL for a misaligned node or
 * an occupied place, SHMD_ECORRUPT for a damaged tree, SHMD_ETXFULL when the log is full. On failure
 * the tree may be half-changed: the caller must abort the transaction, which restores it.
 */
SHMD_API int shmd_rb_insert_node(shmd_tx_t *tx, shmd_ptr_t root, shmd_ptr_t node, shmd_ptr_t parent,
                                 int right);

/*
 * Removes `node` from the tree at `root` and rebalances (the node's own words are left as they
 * were; free or re-insert it as you like). Uses O(log n) undo-log entries: typically
 * log2 n + 10, at most about 4 log2 n + 45.
 * Returns SHMD_ECORRUPT or SHMD_ETXFULL; on failure the caller must abort the transaction.
 */
SHMD_API int shmd_rb_erase(shmd_tx_t *tx, shmd_ptr_t root, shmd_ptr_t node);

/*
 * Puts `repl` (not in any tree) in the place of `victim` (in the tree), which leaves the tree:
 * same position, colour and subtree size, no rebalancing. The caller guarantees that `repl`
 * sorts where `victim` did. Used to move an entry into a bigger allocation. Returns SHMD_EINVAL
 * (misaligned), SHMD_ECORRUPT, SHMD_ETXFULL; on failure the caller must abort the transaction.
 */
SHMD_API int shmd_rb_replace(shmd_tx_t *tx, shmd_ptr_t root, shmd_ptr_t victim, shmd_ptr_t repl);

/* The first (smallest) / last node of the tree in *out; SHMD_ENOTFOUND when it is empty,
 * SHMD_ECORRUPT. Bounds-checked (for iteration). On failure *out is unchanged. */
SHMD_API int shmd_rb_first(shmd_store_t *s, shmd_ptr_t root, shmd_ptr_t *out);
SHMD_API int shmd_rb_last(shmd_store_t *s, shmd_ptr_t root, shmd_ptr_t *out);

/* The in-order successor / predecessor of `node` in *out; SHMD_ENOTFOUND past the end,
 * SHMD_ECORRUPT. O(1) amortised, O(log n) worst case, bounds-checked. On failure *out is
 * unchanged. */
SHMD_API int shmd_rb_next(shmd_store_t *s, shmd_ptr_t node, shmd_ptr_t *out);
SHMD_API int shmd_rb_prev(shmd_store_t *s, shmd_ptr_t node, shmd_ptr_t *out);

/* The 0-based in-order position of `node` in its tree (the number of nodes before it), in
 * O(log n) through the subtree sizes. Returns 0 or SHMD_ECORRUPT (then *rank is unchanged). */
SHMD_API int shmd_rb_rank(shmd_store_t *s, shmd_ptr_t node, uint64_t *rank);

/* The node at 0-based in-order position `index`, in O(log n). Returns SHMD_ENOTFOUND when
 * index >= the number of nodes, SHMD_ECORRUPT. On failure *out is unchanged. */
SHMD_API int shmd_rb_select(shmd_store_t *s, shmd_ptr_t root, uint64_t index, shmd_ptr_t *out);

/* Number of nodes in the tree (the root's subtree size). Returns 0 or SHMD_ECORRUPT. */
SHMD_API int shmd_rb_count(shmd_store_t *s, shmd_ptr_t root, uint64_t *count);

/* Called by shmd_rb_check for every node, in order; a non-zero return stops the check and is
 * returned by it. `n` is bounds-checked for sizeof(shmd_rb_node_t) bytes only. */
typedef int (*shmd_rb_visit_fn)(shmd_store_t *s, shmd_ptr_t node, const shmd_rb_node_t *n,
                                void *arg);

/*
 * Verifies every invariant of the tree at `root`: each pointer inside the store and aligned, the
 * parent links, the root black, no red node with a red child, the same number of black nodes on
 * every path, every subtree size equal to 1 + the sizes of its children, at most `max_nodes` nodes.
 * `visit` (may be NULL) is called for each node in order, so the caller can check its keys' order
 * and its own fields. Never follows a pointer without bounds-checking it; the walk is bounded by
 * SHMD_RB_MAX_DEPTH and `max_nodes`. The caller holds the lock protecting the tree.
 * Returns 0 (and the number of nodes in *count, if not NULL), SHMD_ECORRUPT with the place in
 * shmd_errdetail(), or the visitor's status.
 */
SHMD_API int shmd_rb_check(shmd_store_t *s, shmd_ptr_t root, uint64_t max_nodes,
                           shmd_rb_visit_fn visit, void *arg, uint64_t *count);

/* A comparator for the inline helpers: <0, 0, >0 as `key` sorts before, with, after `node`. The
 * store is passed so that a comparator can resolve keys kept out of line. */
typedef int (*shmd_rb_cmp_fn)(shmd_store_t *s, const void *key, const shmd_rb_node_t *node);

/*
 * Finds a node comparing equal to `key` (Linux rb_find). With duplicates, any one of them.
 * Returns 0 and the node in *out, SHMD_ENOTFOUND (*out unchanged), SHMD_ECORRUPT. Cannot change
 * anything. The caller holds the lock protecting the tree.
 */
static inline int shmd_rb_find(shmd_store_t *s, shmd_ptr_t root, const void *key,
                               shmd_rb_cmp_fn cmp, shmd_ptr_t *out) {
  const shmd_rb_root_t *r = (const shmd_rb_root_t *)shmd_resolve(s, root);
  if (r == NULL)
    return SHMD_ECORRUPT;
  shmd_ptr_t p = r->node;
  for (unsigned depth = 0; p.v != 0; depth++) {
    const shmd_rb_node_t *n = shmd_rb_node(s, p);
    if (n == NULL || depth >= SHMD_RB_MAX_DEPTH)
      return SHMD_ECORRUPT;
    int c = cmp(s, key, n);
    if (c == 0) {
      *out = p;
      return 0;
    }
    p = c < 0 ? n->left : n->right;
  }
  return SHMD_ENOTFOUND;
}

/* Descends to the leaf place of `key` (after any equal nodes when `after_equal`, else stopping at
 * an equal node): the common part of shmd_rb_add and shmd_rb_find_add. Internal. */
static inline int shmd__rb_place(shmd_store_t *s, shmd_ptr_t root, const void *key,
                                 shmd_rb_cmp_fn cmp, int after_equal, shmd_ptr_t *parent,
                                 int *right, shmd_ptr_t *equal) {
  const shmd_rb_root_t *r = (const shmd_rb_root_t *)shmd_resolve(s, root);
  if (r == NULL)
    return SHMD_ECORRUPT;
  shmd_ptr_t p = r->node, par = shmd_ptr_null();
  int dir = 0;
  for (unsigned depth = 0; p.v != 0; depth++) {
    const shmd_rb_node_t *n = shmd_rb_node(s, p);
    if (n == NULL || depth >= SHMD_RB_MAX_DEPTH)
      return SHMD_ECORRUPT;
    int c = cmp(s, key, n);
    if (c == 0 && !after_equal) {
      *equal = p;
      return 0;
    }
    par = p;
    dir = c >= 0;
    p = dir ? n->right : n->left;
  }
  *parent = par;
  *right = dir;
  equal->v = 0;
  return 0;
}

/*
 * Inserts `node` (not in any tree) whose key is `key`, after any nodes comparing equal (Linux
 * rb_add). Returns the statuses of shmd_rb_insert_node(); on failure abort the transaction.
 */
static inline int shmd_rb_add(shmd_tx_t *tx, shmd_ptr_t root, shmd_ptr_t node, const void *key,
                              shmd_rb_cmp_fn cmp) {
  shmd_ptr_t parent, equal;
  int right;
  int rc = shmd__rb_place(shmd_tx_store(tx), root, key, cmp, 1, &parent, &right, &equal);
  if (rc)
    return rc;
  return shmd_rb_insert_node(tx, root, node, parent, right);
}

/*
 * Inserts `node` with key `key` unless a node comparing equal exists (Linux rb_find_add): then
 * nothing is changed and that node is stored in *existing; otherwise *existing is set to null.
 * Returns the statuses of shmd_rb_insert_node(); on failure abort the transaction.
 */
static inline int shmd_rb_find_add(shmd_tx_t *tx, shmd_ptr_t root, shmd_ptr_t node,
                                   const void *key, shmd_rb_cmp_fn cmp, shmd_ptr_t *existing) {
  shmd_ptr_t parent, equal;
  int right;
  int rc = shmd__rb_place(shmd_tx_store(tx), root, key, cmp, 0, &parent, &right, &equal);
  if (rc)
    return rc;
  *existing = equal;
  if (equal.v != 0)
    return 0;
  return shmd_rb_insert_node(tx, root, node, parent, right);
}

/* ============================================================================================== */
/* Part 2: the keyed ordered map                                                                  */
/* ============================================================================================== */

/*
 * A map from byte-string keys to byte-string values, ordered by the ordering given at creation.
 * A tree is addressed by the shmd_ptr_t of its header (from shmd_rbtree_create, usually kept in a
 * named root or inside another structure) and can be used from any process that has the store
 * open. Each tree has its own lock: every function takes it for its duration (readers too), inside
 * the caller's transaction if one is open (then the lock is held until that one ends).
 *
 * Keys are passed as bytes in every ordering:
 *   SHMD_RBTREE_BYTES         any bytes, compared with memcmp over the common prefix, then the
 *                             shorter key first (so "a" < "ab" < "b");
 *   SHMD_RBTREE_I64           exactly 8 bytes: an int64_t in native byte order (pass &v, 8);
 *                             signed order;
 *   SHMD_RBTREE_DOUBLE        exactly 8 bytes: a double in native byte order; numeric order with
 *                             -inf < ... < -0.0 == +0.0 < ... < +inf;
 *   SHMD_RBTREE_DOUBLE_BYTES  8 bytes of a double (as above) then any bytes (the member): by the
 *                             number first, then the bytes as in SHMD_RBTREE_BYTES. This is the
 *                             (score, member) order of sorted sets; shmd_rbtree_dkey() builds one.
 * NaN is not a key: every function given a key whose number is NaN returns SHMD_EINVAL. -0.0 and
 * +0.0 are the same key; a key is stored (and returned) with +0.0.
 *
 * Storage: every entry is one allocation holding the tree node, the lengths, and the key and the
 * value when they are at most SHMD_RBTREE_INLINE_KEY_MAX / SHMD_RBTREE_INLINE_VAL_MAX bytes;
 * longer ones live in their own allocation. Keys and values are at most SHMD_RBTREE_LEN_MAX bytes.
 *
 * Statuses common to every function below: SHMD_EINVAL when `tree` is another kind of shmdict
 * container (or a bad argument), SHMD_ECORRUPT when it is not a container at all or the tree is
 * damaged, SHMD_ENOLANE / SHMD_ECORRUPT from taking the lock. Every mutation is atomic: on failure
 * nothing is changed (and a process killed inside one leaves the tree as before, or as after if it
 * had committed).
 */

typedef enum shmd_rbtree_order_e {
  SHMD_RBTREE_BYTES = 1,
  SHMD_RBTREE_I64 = 2,
  SHMD_RBTREE_DOUBLE = 3,
  SHMD_RBTREE_DOUBLE_BYTES = 4,
} shmd_rbtree_order_t;

#define SHMD_RBTREE_INLINE_KEY_MAX 256u
#define SHMD_RBTREE_INLINE_VAL_MAX 256u
#define SHMD_RBTREE_LEN_MAX 0x7fffffffu

/* Modes of shmd_rbtree_put(). */
enum {
  SHMD_RBTREE_UPSERT = 0, /* insert or replace the value */
  SHMD_RBTREE_NX = 1,     /* insert only: SHMD_EEXIST if the key is present */
  SHMD_RBTREE_XX = 2,     /* update only: SHMD_ENOTFOUND if the key is absent */
};

/* How shmd_rbtree_seek() and shmd_rbtree_walk_key() pick their entry relative to a key. */
typedef enum shmd_rbtree_seek_e {
  SHMD_RBTREE_GE = 0, /* the first entry >= key (lower bound) */
  SHMD_RBTREE_GT = 1, /* the first entry > key (upper bound) */
  SHMD_RBTREE_LE = 2, /* the last entry <= key */
  SHMD_RBTREE_LT = 3, /* the last entry < key */
} shmd_rbtree_seek_t;

/*
 * What the positional reads copy out. Set key/key_cap and val/val_cap to your buffers (NULL / 0
 * for what you do not want); on success key_len / val_len receive the full lengths (the copies are
 * truncated to the capacities: compare to detect truncation) and rank the entry's 0-based rank.
 * A fixed layout: further outputs would come through new functions.
 */
typedef struct shmd_rbtree_item_s {
  void *key;
  size_t key_cap;
  size_t key_len;
  void *val;
  size_t val_cap;
  size_t val_len;
  uint64_t rank;
} shmd_rbtree_item_t;

/*
 * Called by the walks for each entry, under the tree's lock. The pointers address the entry in
 * shared memory and stay valid only during the call. The callback must not modify this tree; it
 * may read it. A non-zero return stops the walk and is returned by it.
 */
typedef int (*shmd_rbtree_visit_fn)(const void *key, size_t key_len, const void *val,
                                    size_t val_len, uint64_t rank, void *arg);

/* Writes the SHMD_RBTREE_DOUBLE_BYTES key (score, member) into `buf` (member_len + 8 bytes) and
 * returns its length. Cannot fail. */
static inline size_t shmd_rbtree_dkey(double score, const void *member, size_t member_len,
                                      void *buf) {
  unsigned char *b = (unsigned char *)buf;
  memcpy(b, &score, 8);
  if (member_len)
    memcpy(b + 8, member, member_len);
  return member_len + 8;
}

/*
 * Creates an empty tree with ordering `order` and stores its pointer in *out. Runs inside the
 * calling thread's open transaction if there is one (so the caller can link the new tree into its
 * own structure atomically; if that transaction aborts the tree is freed), else in its own.
 * Returns SHMD_EINVAL for an unknown ordering, the statuses of shmd_tx_alloc(). On failure nothing
 * is allocated and *out is unchanged.
 */
SHMD_API int shmd_rbtree_create(shmd_store_t *s, shmd_rbtree_order_t order, shmd_ptr_t *out);

/*
 * Destroys the tree and frees everything it owns. Large trees are taken apart in several
 * transactions (entries are removed in batches that fit one transaction, then the header is
 * freed), each leaving a smaller valid tree: if the process dies half-way, the tree is still
 * there, smaller, and can be destroyed again. Inside an open transaction of the caller all the
 * batches join it, and the transaction grows to hold them: atomic, but it needs store space for
 * the bookkeeping (SHMD_ENOSPC otherwise, and the caller's transaction is marked aborted). On
 * failure the tree may have lost entries but is valid.
 */
SHMD_API int shmd_rbtree_destroy(shmd_store_t *s, shmd_ptr_t tree);

/*
 * One batch of shmd_rbtree_destroy(): removes up to `max_entries` entries (fewer if the
 * transaction fills up) in one transaction; once the tree is empty, frees its header. *remaining
 * receives the number of entries left; 0 means the tree is gone (do not use `tree` again). Lets an
 * application free a big tree from its idle loop. Inside a caller's transaction that has no room
 * left, the transaction grows for the first entry. On failure nothing is changed, except for
 * SHMD_ENOSPC inside a caller's transaction: that transaction is then marked aborted (it may hold
 * earlier batches).
 */
SHMD_API int shmd_rbtree_destroy_step(shmd_store_t *s, shmd_ptr_t tree, size_t max_entries,
                                      uint64_t *remaining);

/* The ordering the tree was created with. */
SHMD_API int shmd_rbtree_order(shmd_store_t *s, shmd_ptr_t tree, shmd_rbtree_order_t *out);

/* The number of entries. */
SHMD_API int shmd_rbtree_len(shmd_store_t *s, shmd_ptr_t tree, uint64_t *out);

/*
 * Sets the value of `key` to `val` (`mode`: SHMD_RBTREE_UPSERT, _NX or _XX). *inserted (may be
 * NULL) receives 1 when a new entry was created, 0 when an existing value was replaced. O(log n).
 * Returns SHMD_EEXIST (NX, present), SHMD_ENOTFOUND (XX, absent), SHMD_EINVAL (bad key for the
 * ordering, NaN, bad mode), SHMD_ETOOBIG (longer than SHMD_RBTREE_LEN_MAX), SHMD_ENOSPC and the
 * statuses of shmd_tx_alloc(). On failure nothing is changed.
 */
SHMD_API int shmd_rbtree_put(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                             const void *val, size_t val_len, int mode, int *inserted);

/*
 * Copies the value of `key` into val[0 .. min(val_cap, length)) (val may be NULL with val_cap 0)
 * and stores its full length in *val_len (may be NULL). Returns SHMD_ENOTFOUND when absent (outputs
 * unchanged). O(log n).
 */
SHMD_API int shmd_rbtree_get(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                             void *val, size_t val_cap, size_t *val_len);

/* Removes `key` and its value. Returns SHMD_ENOTFOUND when absent. O(log n). On failure nothing
 * is changed. */
SHMD_API int shmd_rbtree_delete(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len);

/* The 0-based rank of `key` (the number of smaller keys) in O(log n); SHMD_ENOTFOUND when absent. */
SHMD_API int shmd_rbtree_rank(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                              uint64_t *rank);

/* The number of keys < `key` (or <= `key` when `inclusive`), present or not, in O(log n). With two
 * calls this counts a key range (ZCOUNT). */
SHMD_API int shmd_rbtree_count_below(shmd_store_t *s, shmd_ptr_t tree, const void *key,
                                     size_t key_len, int inclusive, uint64_t *count);

/* The entry of 0-based rank `index`, copied out as described at shmd_rbtree_item_t (item may be
 * NULL), in O(log n). SHMD_ENOTFOUND when index >= the number of entries. */
SHMD_API int shmd_rbtree_select(shmd_store_t *s, shmd_ptr_t tree, uint64_t index,
                                shmd_rbtree_item_t *item);

/* The entry chosen by `how` relative to `key` (SHMD_RBTREE_GE / GT / LE / LT), copied out, in
 * O(log n). SHMD_ENOTFOUND when there is none. */
SHMD_API int shmd_rbtree_seek(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                              shmd_rbtree_seek_t how, shmd_rbtree_item_t *item);

/* seek GE / GT: the first entry >= / > key. */
SHMD_API int shmd_rbtree_lower_bound(shmd_store_t *s, shmd_ptr_t tree, const void *key,
                                     size_t key_len, shmd_rbtree_item_t *item);
SHMD_API int shmd_rbtree_upper_bound(shmd_store_t *s, shmd_ptr_t tree, const void *key,
                                     size_t key_len, shmd_rbtree_item_t *item);

/* The smallest / largest entry; SHMD_ENOTFOUND when the tree is empty. */
SHMD_API int shmd_rbtree_first(shmd_store_t *s, shmd_ptr_t tree, shmd_rbtree_item_t *item);
SHMD_API int shmd_rbtree_last(shmd_store_t *s, shmd_ptr_t tree, shmd_rbtree_item_t *item);

/* The entry after / before `key` (which need not be present: seek GT / LT), so a cursor that
 * remembers the last key survives concurrent changes. SHMD_ENOTFOUND past the end. */
SHMD_API int shmd_rbtree_next(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                              shmd_rbtree_item_t *item);
SHMD_API int shmd_rbtree_prev(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                              shmd_rbtree_item_t *item);

/*
 * Range iteration by rank, one locked batch: calls fn for up to `max` entries starting at rank
 * `start`, in ascending order (or descending from `start` when `reverse`). O(log n + max).
 * *visited (may be NULL) receives the number of calls made. Returns 0 (also when start is past the
 * end: nothing visited), the callback's non-zero status, or SHMD_ECORRUPT. Continue with
 * start + visited (start - visited when reversed) in the next batch.
 */
SHMD_API int shmd_rbtree_walk_rank(shmd_store_t *s, shmd_ptr_t tree, uint64_t start, size_t max,
                                   int reverse, shmd_rbtree_visit_fn fn, void *arg,
                                   size_t *visited);

/*
 * Range iteration by key, one locked batch: calls fn for up to `max` entries starting at the entry
 * chosen by `how` relative to `key`; ascending for SHMD_RBTREE_GE / GT, descending for LE / LT.
 * Continue in the next batch from the last key seen with GT (LT when descending): a key cursor
 * stays exact across concurrent inserts and deletes. Returns as shmd_rbtree_walk_rank().
 */
SHMD_API int shmd_rbtree_walk_key(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                                  shmd_rbtree_seek_t how, size_t max, shmd_rbtree_visit_fn fn,
                                  void *arg, size_t *visited);

/*
 * Verifies every invariant under the tree's lock: the header, the core invariants of shmd_rb_check
 * (colours, no red-red, black height, parent links, subtree sizes, node count), the keys in
 * strictly increasing order, every entry's lengths, inline / out-of-line layout and pointers
 * (bounds-checked), keys valid for the ordering (no NaN, no -0.0). Bounded walks; never crashes on
 * corruption. Returns 0, SHMD_ECORRUPT with the place in shmd_errdetail(), or SHMD_EINVAL for
 * another kind of container; SHMD_EBUSY when a live owner keeps the lock for 10 s (or the handle's
 * shmd_set_lock_wait() bound).
 */
SHMD_API int shmd_rbtree_check(shmd_store_t *s, shmd_ptr_t tree);

#ifdef __cplusplus
}
#endif
#endif /* SHMD_RBTREE_H */
