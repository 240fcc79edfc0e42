/* SPDX-License-Identifier: MIT */
/*
 * The keyed ordered map (shmd_rbtree_*): byte-string keys and values in a red-black tree with
 * subtree sizes, built on the intrusive core of containers/rbtree.c. It is what sorted sets and
 * leaderboards stand on: insert / find / delete / bounds in O(log n), rank and select by index in
 * O(log n), iteration by key or by rank in locked batches.
 *
 * Layout
 * ------
 * A tree is a 64-byte header:
 *
 *     magic (kind word) | lock | order, flags | root (shmd_rb_root_t) | reserved[4]
 *
 * and one allocation per entry:
 *
 *     0      32        36        40                        40 + round8(key area)
 *     | node | key_len | val_len | key area ............... | value area ...... |
 *
 * key_len / val_len hold the lengths in bits 0-30 and, in bit 31, whether the bytes are stored out
 * of line (in their own allocation of exactly that many bytes). Inline key area: the key bytes
 * (with the number normalised, see below). Out-of-line key area: the 8-byte pointer to the key, or
 * for SHMD_RBTREE_DOUBLE_BYTES the 8-byte number then the pointer (the number is kept inline so that
 * comparisons by score never leave the node; the out-of-line copy holds the whole key, so that
 * every key can be handed out as one contiguous view). Value area: the value bytes, or the pointer.
 * Keys longer than SHMD_RBTREE_INLINE_KEY_MAX and values longer than SHMD_RBTREE_INLINE_VAL_MAX go
 * out of line; integer and double keys are always inline.
 *
 * Orderings are an id in the header, never a function pointer (the comparator is a switch). The
 * number of a key is read with memcpy from the 8-aligned start of the key area. NaN is rejected at
 * the API (SHMD_EINVAL); -0.0 is stored as +0.0, so equal numbers are equal bytes and a double key
 * has exactly one representation (the checker verifies both).
 *
 * Updates. Replacing a value in place logs the length word and the value area; if the new value
 * does not fit the node's allocation (shmd_usable_size), a new node is allocated, filled, and put
 * in the old one's place with shmd_rb_replace (same position, no rebalancing), and the old node is
 * freed after the commit. Out-of-line key bytes are shared by the old and new node (the key never
 * changes).
 *
 * Locks: each tree's own shmd_lock_t, taken by every function (readers too) inside the caller's
 * transaction when one is open; under it, the allocator's locks (lock order: container, then
 * allocator). No other lock is taken.
 *
 * Failure handling: a function that fails before changing or allocating anything commits its
 * (possibly joined) transaction, so that e.g. a lookup that finds nothing inside a caller's
 * transaction does not abort it; one that fails after logging aborts.
 */
#include <math.h>
#include <string.h>

#include "segments/crash.h"
#include "segments/err.h"
#include "shmdict/alloc.h"
#include "shmdict/error.h"
#include "shmdict/rbtree.h"
#include "shmdict/store.h"
#include "segments/lockwait.h"
#include "cont_int.h"
#include "omap.h"

/* ---------------------------------------------------------------------------------------------- */
/* Layout */

#define RBTREE_MAGIC SHMD__KIND(0x52544252) /* "RBTR" (containers/cont_int.h) */

typedef struct rbt_hdr_s {
  uint64_t magic;
  shmd_lock_t lock;
  uint32_t order;
  uint32_t flags; /* reserved, 0 */
  shmd_rb_root_t root;
  uint64_t reserved[4];
} rbt_hdr_t;

typedef struct ent_s {
  shmd_rb_node_t rb;
  uint32_t key_len; /* bit 31: out of line */
  uint32_t val_len; /* bit 31: out of line */
  unsigned char data[];
} ent_t;

#define OOL 0x80000000u
#define LEN_MASK 0x7fffffffu
#define ENT_HDR ((size_t)offsetof(ent_t, data))

_Static_assert(sizeof(rbt_hdr_t) == 64, "tree header is 64 bytes");
_Static_assert(offsetof(ent_t, data) == 40, "entry data starts at 40");
_Static_assert(offsetof(ent_t, rb) == 0, "the node is at the start of the entry");

static inline size_t round8(size_t n) { return (n + 7) & ~(size_t)7; }

/* Bytes of the key area for a key length word. */
static inline size_t key_area(uint32_t order, uint32_t klw) {
  if (!(klw & OOL))
    return klw;
  return order == SHMD_RBTREE_DOUBLE_BYTES ? 16 : 8;
}
static inline size_t val_off(uint32_t order, uint32_t klw) {
  return ENT_HDR + round8(key_area(order, klw));
}
static inline size_t val_area(uint32_t vlw) { return (vlw & OOL) ? 8 : vlw; }
static inline size_t ent_bytes(uint32_t order, uint32_t klw, uint32_t vlw) {
  return val_off(order, klw) + val_area(vlw);
}
/* The out-of-line pointer stored at the start of an area (8-aligned). */
static inline shmd_ptr_t area_ptr(const unsigned char *area) {
  shmd_ptr_t p;
  memcpy(&p.v, area, 8);
  return p;
}
static inline const unsigned char *key_ptr_area(const ent_t *e, uint32_t order) {
  return e->data + (order == SHMD_RBTREE_DOUBLE_BYTES ? 8 : 0);
}

static int order_valid(uint32_t order) {
  return order >= SHMD_RBTREE_BYTES && order <= SHMD_RBTREE_DOUBLE_BYTES;
}

/* ---------------------------------------------------------------------------------------------- */
/* Query keys and comparison */

/* A query key: validated and normalised by the code both ordered maps share (omap.h). */
typedef shmd__okey_t qk_t;
_Static_assert(SHMD_RBTREE_BYTES == SHMD__OKEY_BYTES && SHMD_RBTREE_I64 == SHMD__OKEY_I64 &&
                   SHMD_RBTREE_DOUBLE == SHMD__OKEY_DOUBLE && SHMD_RBTREE_DOUBLE_BYTES == SHMD__OKEY_DOUBLE_BYTES &&
                   SHMD_RBTREE_LEN_MAX == SHMD__OKEY_LEN_MAX,
               "the orders of containers/omap.h");

/* Out-of-line bytes, bounds-checked. */
static int ool_view(shmd_store_t *s, shmd_ptr_t p, size_t len, const unsigned char **out) {
  void *a;
  if (shmd_resolve_checked(s, p, len ? len : 1, &a))
    return SHMD_CORRUPT_RC("rbtree: out-of-line bytes outside the store");
  *out = (const unsigned char *)a;
  return 0;
}

/* The whole key of an entry as one view. The entry must be valid for its inline part. */
static int ent_key(shmd_store_t *s, uint32_t order, const ent_t *e, const unsigned char **k,
                   size_t *klen) {
  uint32_t klw = e->key_len;
  *klen = klw & LEN_MASK;
  if (!(klw & OOL)) {
    if (*klen > SHMD_RBTREE_INLINE_KEY_MAX)
      return SHMD_CORRUPT_RC("rbtree: inline key longer than the inline limit");
    *k = e->data;
    return 0;
  }
  return ool_view(s, area_ptr(key_ptr_area(e, order)), *klen, k);
}

static int ent_val(shmd_store_t *s, uint32_t order, const ent_t *e, const unsigned char **v,
                   size_t *vlen) {
  uint32_t vlw = e->val_len;
  *vlen = vlw & LEN_MASK;
  const unsigned char *area = (const unsigned char *)e + val_off(order, e->key_len);
  if (!(vlw & OOL)) {
    if (*vlen > SHMD_RBTREE_INLINE_VAL_MAX)
      return SHMD_CORRUPT_RC("rbtree: inline value longer than the inline limit");
    *v = area;
    return 0;
  }
  return ool_view(s, area_ptr(area), *vlen, v);
}

/* *out = compare(q, entry): <0, 0, >0. */
static inline int ent_cmp(shmd_store_t *s, uint32_t order, const qk_t *q, const ent_t *e,
                          int *out) {
  switch (order) {
  case SHMD_RBTREE_I64: {
    int64_t v;
    memcpy(&v, e->data, 8);
    *out = (q->i > v) - (q->i < v);
    return 0;
  }
  case SHMD_RBTREE_DOUBLE:
  case SHMD_RBTREE_DOUBLE_BYTES: {
    double v;
    memcpy(&v, e->data, 8);
    if (q->d != v) {
      *out = q->d < v ? -1 : 1; /* no NaN in the tree (checked) nor in q */
      return 0;
    }
    if (order == SHMD_RBTREE_DOUBLE) {
      *out = 0;
      return 0;
    }
    break;
  }
  default:
    break;
  }
  const unsigned char *k;
  size_t klen;
  uint32_t klw = e->key_len;
  if (!(klw & OOL) && (klw & LEN_MASK) <= SHMD_RBTREE_INLINE_KEY_MAX) {
    k = e->data;
    klen = klw;
  } else {
    SHMD_TRY(ent_key(s, order, e, &k, &klen));
  }
  size_t skip = order == SHMD_RBTREE_DOUBLE_BYTES ? 8 : 0;
  if (klen < skip)
    return SHMD_CORRUPT_RC("rbtree: key shorter than its number");
  *out = shmd__bytes_cmp(q->bytes, q->blen, k + skip, klen - skip);
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Opening a tree: kind word, transaction, lock */

typedef struct map_s {
  shmd_store_t *s;
  shmd_tx_t *tx;
  shmd_ptr_t tree;
  rbt_hdr_t *h;
  shmd_ptr_t root;
  uint32_t order;
  int doom; /* abort even if this call changed nothing: a caller's transaction may hold a half-done destroy */
} map_t;

static int map_open(shmd_store_t *s, shmd_ptr_t tree, map_t *m) {
  void *a;
  m->s = s;
  m->tree = tree;
  m->root = shmd_ptr_add(tree, offsetof(rbt_hdr_t, root));
  m->doom = 0;
  SHMD_TRY(shmd__cont_enter(s, tree, sizeof(rbt_hdr_t), offsetof(rbt_hdr_t, lock), RBTREE_MAGIC,
                            "rbtree: tree pointer outside the store", "rbtree: not a container", &a, &m->tx));
  m->h = (rbt_hdr_t *)a;
  if (!order_valid(m->h->order))
    return shmd_tx_end(m->tx, SHMD_CORRUPT_RC("rbtree: unknown ordering in the header"));
  m->order = m->h->order;
  return 0;
}

/* Ends the operation: shmd_tx_end() (commit, or abort when this level changed something and rc is a
 * failure), or an abort when the call doomed the caller's transaction on purpose (m->doom). */
static int map_close(map_t *m, int rc) {
  if (m->doom) {
    shmd_tx_abort(m->tx);
    return rc;
  }
  return shmd_tx_end(m->tx, rc);
}

static inline ent_t *ent_at(const map_t *m, shmd_ptr_t p) {
  return (ent_t *)(void *)shmd_rb_node(m->s, p);
}

static uint64_t root_size(const map_t *m, int *rc) {
  shmd_ptr_t top = m->h->root.node;
  if (top.v == 0)
    return 0;
  const ent_t *e = ent_at(m, top);
  if (e == NULL) {
    *rc = SHMD_CORRUPT_RC("rbtree: bad root node");
    return 0;
  }
  return e->rb.size;
}

/* ---------------------------------------------------------------------------------------------- */
/* Descents */

/* Starts loading both children of a node while it is being compared: the next level is one of
 * them, and a rank descent needs the left one's size when it goes right. */
static inline void prefetch_children(const map_t *m, const ent_t *e) {
  if (e->rb.left.v)
    __builtin_prefetch(shmd_resolve(m->s, e->rb.left));
  if (e->rb.right.v)
    __builtin_prefetch(shmd_resolve(m->s, e->rb.right));
}

/* Exact search. On a hit *node is the entry and *rank (if not NULL) its rank; on a miss *node is
 * null and (*parent, *right) the place where the key belongs. Only a rank search reads the left
 * children's sizes (an extra cache line per level). */
static int descend_exact(const map_t *m, const qk_t *q, shmd_ptr_t *node, shmd_ptr_t *parent,
                         int *right, uint64_t *rank) {
  shmd_ptr_t p = m->h->root.node, par = shmd_ptr_null();
  int dir = 0;
  uint64_t r = 0;
  for (unsigned depth = 0; p.v != 0; depth++) {
    const ent_t *e = ent_at(m, p);
    if (e == NULL || depth >= SHMD_RB_MAX_DEPTH)
      return SHMD_CORRUPT_RC("rbtree: bad node pointer or tree too deep");
    if (rank != NULL)
      prefetch_children(m, e);
    int c;
    SHMD_TRY(ent_cmp(m->s, m->order, q, e, &c));
    uint64_t ls = 0;
    if (rank != NULL && c >= 0 && e->rb.left.v != 0) {
      const shmd_rb_node_t *l = shmd_rb_node(m->s, e->rb.left);
      if (l == NULL)
        return SHMD_CORRUPT_RC("rbtree: bad node pointer");
      ls = l->size;
    }
    if (c == 0) {
      *node = p;
      if (rank != NULL)
        *rank = r + ls;
      return 0;
    }
    par = p;
    dir = c > 0;
    if (dir)
      r += ls + 1;
    p = dir ? e->rb.right : e->rb.left;
  }
  node->v = 0;
  *parent = par;
  *right = dir;
  if (rank != NULL)
    *rank = r;
  return 0;
}

/* The entry chosen by `how` (see shmd_rbtree_seek_t) and its rank; null when none. With how < 0
 * it counts instead: *rank = number of entries < q (how == -1) or <= q (how == -2). */
static int descend_bound(const map_t *m, const qk_t *q, int how, shmd_ptr_t *node,
                         uint64_t *rank) {
  shmd_ptr_t p = m->h->root.node, cand = shmd_ptr_null();
  uint64_t r = 0, cand_rank = 0;
  for (unsigned depth = 0; p.v != 0; depth++) {
    const ent_t *e = ent_at(m, p);
    if (e == NULL || depth >= SHMD_RB_MAX_DEPTH)
      return SHMD_CORRUPT_RC("rbtree: bad node pointer or tree too deep");
    prefetch_children(m, e);
    int c;
    SHMD_TRY(ent_cmp(m->s, m->order, q, e, &c)); /* c = q vs e */
    uint64_t ls = 0;
    if (e->rb.left.v != 0) {
      const shmd_rb_node_t *l = shmd_rb_node(m->s, e->rb.left);
      if (l == NULL)
        return SHMD_CORRUPT_RC("rbtree: bad node pointer");
      ls = l->size;
    }
    int go_right;
    switch (how) {
    case SHMD_RBTREE_GE: /* e >= q is a candidate, look left for a smaller one */
    case SHMD_RBTREE_GT:
      if (how == SHMD_RBTREE_GE ? c <= 0 : c < 0) {
        cand = p;
        cand_rank = r + ls;
        go_right = 0;
      } else {
        go_right = 1;
      }
      break;
    case SHMD_RBTREE_LE: /* e <= q is a candidate, look right for a larger one */
    case SHMD_RBTREE_LT:
      if (how == SHMD_RBTREE_LE ? c >= 0 : c > 0) {
        cand = p;
        cand_rank = r + ls;
        go_right = 1;
      } else {
        go_right = 0;
      }
      break;
    default: /* counting */
      go_right = how == -1 ? c > 0 : c >= 0;
      break;
    }
    if (go_right) {
      r += ls + 1;
      p = e->rb.right;
    } else {
      p = e->rb.left;
    }
  }
  if (how < 0) {
    *rank = r;
    return 0;
  }
  *node = cand;
  *rank = cand_rank;
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Copying out */

/* Resolves an entry with bounds checks for its whole extent (iteration and copy-out paths). */
static int ent_checked(const map_t *m, shmd_ptr_t p, const ent_t **out) {
  void *a;
  if ((p.v & 7u) != 0 || shmd_resolve_checked(m->s, p, sizeof(ent_t), &a))
    return SHMD_CORRUPT_RC("rbtree: entry outside the store");
  const ent_t *e = (const ent_t *)a;
  uint32_t klw = e->key_len, vlw = e->val_len;
  if ((!(klw & OOL) && klw > SHMD_RBTREE_INLINE_KEY_MAX) ||
      (!(vlw & OOL) && vlw > SHMD_RBTREE_INLINE_VAL_MAX))
    return SHMD_CORRUPT_RC("rbtree: inline length over the inline limit");
  if (shmd_resolve_checked(m->s, p, ent_bytes(m->order, klw, vlw), &a))
    return SHMD_CORRUPT_RC("rbtree: entry outside the store");
  *out = e;
  return 0;
}

static int ent_views(const map_t *m, shmd_ptr_t p, const unsigned char **k, size_t *kl,
                     const unsigned char **v, size_t *vl) {
  const ent_t *e;
  SHMD_TRY(ent_checked(m, p, &e));
  SHMD_TRY(ent_key(m->s, m->order, e, k, kl));
  return ent_val(m->s, m->order, e, v, vl);
}

static int item_fill(const map_t *m, shmd_ptr_t p, uint64_t rank, shmd_rbtree_item_t *it) {
  if (it == NULL)
    return 0;
  const unsigned char *k, *v;
  size_t kl, vl;
  SHMD_TRY(ent_views(m, p, &k, &kl, &v, &vl));
  if (it->key != NULL && it->key_cap)
    memcpy(it->key, k, kl < it->key_cap ? kl : it->key_cap);
  if (it->val != NULL && it->val_cap)
    memcpy(it->val, v, vl < it->val_cap ? vl : it->val_cap);
  it->key_len = kl;
  it->val_len = vl;
  it->rank = rank;
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Create and destroy */

int shmd_rbtree_create(shmd_store_t *s, shmd_rbtree_order_t order, shmd_ptr_t *out) {
  if (!order_valid((uint32_t)order))
    return SHMD_EINVAL;
  shmd_tx_t *tx;
  SHMD_TRY(shmd_tx_begin(s, &tx));
  shmd_ptr_t p;
  int rc = shmd_tx_calloc(tx, sizeof(rbt_hdr_t), &p);
  if (rc) {
    (void)shmd_tx_commit(tx);
    return rc;
  }
  rbt_hdr_t *h = (rbt_hdr_t *)shmd_resolve(s, p);
  shmd_lock_init(&h->lock);
  h->order = (uint32_t)order;
  h->root.node.v = 0;
  __atomic_store_n(&h->magic, RBTREE_MAGIC, __ATOMIC_RELEASE);
  rc = shmd_tx_commit(tx);
  if (rc == 0)
    *out = p;
  return rc;
}

/* Frees an entry and what it owns, after the commit. */
static int ent_free(map_t *m, shmd_ptr_t p, const ent_t *e) {
  if (e->key_len & OOL)
    SHMD_TRY(shmd_tx_free(m->tx, area_ptr(key_ptr_area(e, m->order))));
  if (e->val_len & OOL)
    SHMD_TRY(shmd_tx_free(m->tx, area_ptr((const unsigned char *)e + val_off(m->order, e->key_len))));
  return shmd_tx_free(m->tx, p);
}

static unsigned log2_ceil(uint64_t n) {
  unsigned b = 0;
  while (b < 64 && (UINT64_C(1) << b) < n)
    b++;
  return b;
}

/* Undo-log entries one erase may need in a tree of n entries (generous). */
static size_t erase_budget(uint64_t n) { return 4 * (size_t)log2_ceil(n + 1) + 64; }

/* The destroy steps of omap.h's driver: one entry at a time (the first, erased and freed). */
static int destroy_plan(void *map, uint64_t left, size_t max, size_t *words, size_t *allocs, size_t *frees) {
  (void)map;
  (void)max;
  *words = erase_budget(left);
  *allocs = 0;
  *frees = 3;
  return 0;
}

static int destroy_one(void *map, uint64_t *removed) {
  map_t *m = map;
  shmd_ptr_t first;
  SHMD_TRY(shmd_rb_first(m->s, m->root, &first));
  const ent_t *e;
  SHMD_TRY(ent_checked(m, first, &e));
  SHMD_TRY(shmd_rb_erase(m->tx, m->root, first));
  SHMD_TRY(ent_free(m, first, e));
  SHMD_CRASH_POINT("rbtree.destroy.erased");
  *removed = 1;
  return 0;
}

static int destroy_finish(void *map) {
  map_t *m = map;
  SHMD_TRY(shmd_tx_set64(m->tx, &m->h->magic, 0));
  return shmd_tx_free(m->tx, m->tree);
}

static const shmd__destroy_ops_t destroy_ops = {destroy_plan, destroy_one, destroy_finish, 2, 1};

int shmd_rbtree_destroy_step(shmd_store_t *s, shmd_ptr_t tree, size_t max_entries,
                             uint64_t *remaining) {
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  int rc = 0;
  uint64_t n = root_size(&m, &rc);
  if (rc == 0)
    rc = shmd__omap_destroy_step(m.tx, &m, &destroy_ops, n, max_entries, remaining, &m.doom);
  return map_close(&m, rc);
}

int shmd_rbtree_destroy(shmd_store_t *s, shmd_ptr_t tree) {
  return shmd__omap_destroy(s, tree, shmd_rbtree_destroy_step);
}

/* ---------------------------------------------------------------------------------------------- */
/* Small reads */

int shmd_rbtree_order(shmd_store_t *s, shmd_ptr_t tree, shmd_rbtree_order_t *out) {
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  *out = (shmd_rbtree_order_t)m.order;
  return map_close(&m, 0);
}

int shmd_rbtree_len(shmd_store_t *s, shmd_ptr_t tree, uint64_t *out) {
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  int rc = 0;
  uint64_t n = root_size(&m, &rc);
  if (rc == 0)
    *out = n;
  return map_close(&m, rc);
}

/* ---------------------------------------------------------------------------------------------- */
/* Put */

/* Allocates out-of-line bytes (a copy of data) in the transaction. */
static int ool_create(map_t *m, const void *data, size_t len, shmd_ptr_t *out) {
  SHMD_TRY(shmd_tx_alloc(m->tx, len ? len : 1, out));
  if (len)
    memcpy(shmd_resolve(m->s, *out), data, len);
  return 0;
}

/* Writes the key area of a fresh entry. */
static void write_key_area(const map_t *m, ent_t *e, const qk_t *q, shmd_ptr_t kool) {
  unsigned char *a = e->data;
  if (kool.v != 0) {
    if (m->order == SHMD_RBTREE_DOUBLE_BYTES) {
      memcpy(a, &q->d, 8);
      a += 8;
    }
    memcpy(a, &kool.v, 8);
    return;
  }
  shmd__okey_copy(q, m->order, a, q->klen);
}

/* A new node with the key of `old` (sharing its out-of-line key) and value (val, vlen) / vool. */
static int make_moved_node(map_t *m, const ent_t *old, const void *val, size_t vlen,
                           shmd_ptr_t vool, shmd_ptr_t *out) {
  uint32_t vlw = vool.v ? (uint32_t)vlen | OOL : (uint32_t)vlen;
  size_t voff = val_off(m->order, old->key_len);
  shmd_ptr_t p;
  SHMD_TRY(shmd_tx_alloc(m->tx, voff + val_area(vlw), &p));
  ent_t *e = (ent_t *)shmd_resolve(m->s, p);
  e->key_len = old->key_len;
  e->val_len = vlw;
  memcpy(e->data, old->data, key_area(m->order, old->key_len));
  unsigned char *va = (unsigned char *)e + voff;
  if (vool.v)
    memcpy(va, &vool.v, 8);
  else if (vlen)
    memcpy(va, val, vlen);
  *out = p;
  return 0;
}

static int update_value(map_t *m, shmd_ptr_t p, ent_t *e, const void *val, size_t vlen) {
  int vool_new = vlen > SHMD_RBTREE_INLINE_VAL_MAX;
  size_t voff = val_off(m->order, e->key_len);
  size_t need = vool_new ? 8 : vlen;
  uint32_t old_vlw = e->val_len;
  shmd_ptr_t old_vool = shmd_ptr_null();
  if (old_vlw & OOL)
    old_vool = area_ptr((unsigned char *)e + voff);
  shmd_ptr_t vool = shmd_ptr_null();
  if (vool_new)
    SHMD_TRY(ool_create(m, val, vlen, &vool));
  size_t usable = shmd_usable_size(m->s, p);
  if (usable == 0)
    return SHMD_CORRUPT_RC("rbtree: entry is not an allocated block");
  if (voff + need <= usable) {
    /* In place: the length word, then the value area. */
    SHMD_TRY(shmd_tx_log(m->tx, shmd_ptr_add(p, offsetof(ent_t, key_len)), 8));
    if (need)
      SHMD_TRY(shmd_tx_log(m->tx, shmd_ptr_add(p, voff), need));
    unsigned char *va = (unsigned char *)e + voff;
    if (vool_new)
      memcpy(va, &vool.v, 8);
    else if (vlen)
      memcpy(va, val, vlen);
    e->val_len = vool_new ? (uint32_t)vlen | OOL : (uint32_t)vlen;
    SHMD_CRASH_POINT("rbtree.put.updated");
  } else {
    shmd_ptr_t np;
    SHMD_TRY(make_moved_node(m, e, val, vlen, vool, &np));
    SHMD_TRY(shmd_rb_replace(m->tx, m->root, p, np));
    SHMD_CRASH_POINT("rbtree.put.replaced");
    SHMD_TRY(shmd_tx_free(m->tx, p));
  }
  if (old_vool.v)
    SHMD_TRY(shmd_tx_free(m->tx, old_vool));
  return 0;
}

static int insert_new(map_t *m, const qk_t *q, const void *val, size_t vlen, shmd_ptr_t parent,
                      int right) {
  int kool_new = q->klen > SHMD_RBTREE_INLINE_KEY_MAX && m->order != SHMD_RBTREE_I64 &&
                 m->order != SHMD_RBTREE_DOUBLE;
  int vool_new = vlen > SHMD_RBTREE_INLINE_VAL_MAX;
  uint32_t klw = kool_new ? (uint32_t)q->klen | OOL : (uint32_t)q->klen;
  uint32_t vlw = vool_new ? (uint32_t)vlen | OOL : (uint32_t)vlen;
  shmd_ptr_t kool = shmd_ptr_null(), vool = shmd_ptr_null(), p;
  if (kool_new) {
    SHMD_TRY(ool_create(m, q->key, q->klen, &kool));
    /* The out-of-line copy holds the normalised number too. */
    if (m->order == SHMD_RBTREE_DOUBLE_BYTES)
      memcpy(shmd_resolve(m->s, kool), &q->d, 8);
  }
  if (vool_new)
    SHMD_TRY(ool_create(m, val, vlen, &vool));
  size_t voff = val_off(m->order, klw);
  SHMD_TRY(shmd_tx_alloc(m->tx, voff + val_area(vlw), &p));
  ent_t *e = (ent_t *)shmd_resolve(m->s, p);
  e->key_len = klw;
  e->val_len = vlw;
  write_key_area(m, e, q, kool);
  unsigned char *va = (unsigned char *)e + voff;
  if (vool_new)
    memcpy(va, &vool.v, 8);
  else if (vlen)
    memcpy(va, val, vlen);
  SHMD_CRASH_POINT("rbtree.put.allocated");
  SHMD_TRY(shmd_rb_insert_node(m->tx, m->root, p, parent, right));
  SHMD_CRASH_POINT("rbtree.put.inserted");
  return 0;
}

int shmd_rbtree_put(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                    const void *val, size_t val_len, int mode, int *inserted) {
  if (mode != SHMD_RBTREE_UPSERT && mode != SHMD_RBTREE_NX && mode != SHMD_RBTREE_XX)
    return SHMD_EINVAL;
  if (val == NULL && val_len != 0)
    return SHMD_EINVAL;
  if (val_len > SHMD_RBTREE_LEN_MAX)
    return SHMD_ETOOBIG;
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  qk_t q;
  int rc = shmd__okey_make(m.order, key, key_len, &q);
  shmd_ptr_t node, parent;
  int right;
  if (rc == 0)
    rc = descend_exact(&m, &q, &node, &parent, &right, NULL);
  if (rc == 0) {
    if (node.v != 0) {
      if (mode == SHMD_RBTREE_NX)
        rc = SHMD_EEXIST;
      else
        rc = update_value(&m, node, ent_at(&m, node), val, val_len);
      if (rc == 0 && inserted)
        *inserted = 0;
    } else {
      if (mode == SHMD_RBTREE_XX)
        rc = SHMD_ENOTFOUND;
      else
        rc = insert_new(&m, &q, val, val_len, parent, right);
      if (rc == 0 && inserted)
        *inserted = 1;
    }
  }
  return map_close(&m, rc);
}

/* ---------------------------------------------------------------------------------------------- */
/* Get, delete, rank */

int shmd_rbtree_get(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len, void *val,
                    size_t val_cap, size_t *val_len) {
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  qk_t q;
  shmd_ptr_t node, parent;
  int right;
  int rc = shmd__okey_make(m.order, key, key_len, &q);
  if (rc == 0)
    rc = descend_exact(&m, &q, &node, &parent, &right, NULL);
  if (rc == 0 && node.v == 0)
    rc = SHMD_ENOTFOUND;
  if (rc == 0) {
    const ent_t *e = ent_at(&m, node);
    const unsigned char *v;
    size_t vl;
    rc = ent_val(s, m.order, e, &v, &vl);
    if (rc == 0) {
      if (val != NULL && val_cap)
        memcpy(val, v, vl < val_cap ? vl : val_cap);
      if (val_len)
        *val_len = vl;
    }
  }
  return map_close(&m, rc);
}

int shmd_rbtree_delete(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len) {
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  qk_t q;
  shmd_ptr_t node, parent;
  int right;
  int rc = shmd__okey_make(m.order, key, key_len, &q);
  if (rc == 0)
    rc = descend_exact(&m, &q, &node, &parent, &right, NULL);
  if (rc == 0 && node.v == 0)
    rc = SHMD_ENOTFOUND;
  if (rc == 0) {
    const ent_t *e = ent_at(&m, node);
    rc = shmd_rb_erase(m.tx, m.root, node);
    if (rc == 0) {
      SHMD_CRASH_POINT("rbtree.delete.erased");
      rc = ent_free(&m, node, e);
    }
  }
  return map_close(&m, rc);
}

int shmd_rbtree_rank(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                     uint64_t *rank) {
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  qk_t q;
  shmd_ptr_t node, parent;
  int right;
  uint64_t r;
  int rc = shmd__okey_make(m.order, key, key_len, &q);
  if (rc == 0)
    rc = descend_exact(&m, &q, &node, &parent, &right, &r);
  if (rc == 0 && node.v == 0)
    rc = SHMD_ENOTFOUND;
  if (rc == 0)
    *rank = r;
  return map_close(&m, rc);
}

int shmd_rbtree_count_below(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                            int inclusive, uint64_t *count) {
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  qk_t q;
  shmd_ptr_t node;
  uint64_t r;
  int rc = shmd__okey_make(m.order, key, key_len, &q);
  if (rc == 0)
    rc = descend_bound(&m, &q, inclusive ? -2 : -1, &node, &r);
  if (rc == 0)
    *count = r;
  return map_close(&m, rc);
}

/* ---------------------------------------------------------------------------------------------- */
/* Positional reads */

int shmd_rbtree_select(shmd_store_t *s, shmd_ptr_t tree, uint64_t index, shmd_rbtree_item_t *item) {
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  shmd_ptr_t node;
  int rc = shmd_rb_select(s, m.root, index, &node);
  if (rc == 0)
    rc = item_fill(&m, node, index, item);
  return map_close(&m, rc);
}

int shmd_rbtree_seek(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                     shmd_rbtree_seek_t how, shmd_rbtree_item_t *item) {
  if ((unsigned)how > SHMD_RBTREE_LT)
    return SHMD_EINVAL;
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  qk_t q;
  shmd_ptr_t node;
  uint64_t r;
  int rc = shmd__okey_make(m.order, key, key_len, &q);
  if (rc == 0)
    rc = descend_bound(&m, &q, (int)how, &node, &r);
  if (rc == 0 && node.v == 0)
    rc = SHMD_ENOTFOUND;
  if (rc == 0)
    rc = item_fill(&m, node, r, item);
  return map_close(&m, rc);
}

int shmd_rbtree_lower_bound(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                            shmd_rbtree_item_t *item) {
  return shmd_rbtree_seek(s, tree, key, key_len, SHMD_RBTREE_GE, item);
}
int shmd_rbtree_upper_bound(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                            shmd_rbtree_item_t *item) {
  return shmd_rbtree_seek(s, tree, key, key_len, SHMD_RBTREE_GT, item);
}
int shmd_rbtree_next(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                     shmd_rbtree_item_t *item) {
  return shmd_rbtree_seek(s, tree, key, key_len, SHMD_RBTREE_GT, item);
}
int shmd_rbtree_prev(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                     shmd_rbtree_item_t *item) {
  return shmd_rbtree_seek(s, tree, key, key_len, SHMD_RBTREE_LT, item);
}

static int first_last(shmd_store_t *s, shmd_ptr_t tree, int last, shmd_rbtree_item_t *item) {
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  shmd_ptr_t node;
  int rc = last ? shmd_rb_last(s, m.root, &node) : shmd_rb_first(s, m.root, &node);
  uint64_t n = 0;
  if (rc == 0)
    n = root_size(&m, &rc);
  if (rc == 0)
    rc = item_fill(&m, node, last ? n - 1 : 0, item);
  return map_close(&m, rc);
}

int shmd_rbtree_first(shmd_store_t *s, shmd_ptr_t tree, shmd_rbtree_item_t *item) {
  return first_last(s, tree, 0, item);
}
int shmd_rbtree_last(shmd_store_t *s, shmd_ptr_t tree, shmd_rbtree_item_t *item) {
  return first_last(s, tree, 1, item);
}

/* ---------------------------------------------------------------------------------------------- */
/* Walks */

/* Visits up to max entries from `node` (rank `rank`), ascending or descending; n bounds the walk. */
static int walk_from(map_t *m, shmd_ptr_t node, uint64_t rank, uint64_t n, size_t max, int reverse,
                     shmd_rbtree_visit_fn fn, void *arg, size_t *visited) {
  size_t done = 0;
  int rc = 0;
  while (node.v != 0 && done < max) {
    if (done >= n)
      return SHMD_CORRUPT_RC("rbtree: walk longer than the tree");
    const unsigned char *k, *v;
    size_t kl, vl;
    if ((rc = ent_views(m, node, &k, &kl, &v, &vl)))
      break;
    done++;
    if ((rc = fn(k, kl, v, vl, rank, arg)))
      break;
    if (done == max)
      break;
    shmd_ptr_t nx;
    rc = reverse ? shmd_rb_prev(m->s, node, &nx) : shmd_rb_next(m->s, node, &nx);
    if (rc == SHMD_ENOTFOUND) {
      rc = 0;
      break;
    }
    if (rc)
      break;
    node = nx;
    rank = reverse ? rank - 1 : rank + 1;
  }
  if (visited)
    *visited = done;
  return rc;
}

int shmd_rbtree_walk_rank(shmd_store_t *s, shmd_ptr_t tree, uint64_t start, size_t max,
                          int reverse, shmd_rbtree_visit_fn fn, void *arg, size_t *visited) {
  if (fn == NULL)
    return SHMD_EINVAL;
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  int rc = 0;
  uint64_t n = root_size(&m, &rc);
  shmd_ptr_t node = shmd_ptr_null();
  if (rc == 0 && start < n && max > 0)
    rc = shmd_rb_select(s, m.root, start, &node);
  if (rc == 0)
    rc = walk_from(&m, node, start, n, max, reverse, fn, arg, visited);
  else if (visited)
    *visited = 0;
  return map_close(&m, rc);
}

int shmd_rbtree_walk_key(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                         shmd_rbtree_seek_t how, size_t max, shmd_rbtree_visit_fn fn, void *arg,
                         size_t *visited) {
  if (fn == NULL || (unsigned)how > SHMD_RBTREE_LT)
    return SHMD_EINVAL;
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  qk_t q;
  int rc = shmd__okey_make(m.order, key, key_len, &q);
  uint64_t n = 0, r = 0;
  shmd_ptr_t node = shmd_ptr_null();
  if (rc == 0)
    n = root_size(&m, &rc);
  if (rc == 0)
    rc = descend_bound(&m, &q, (int)how, &node, &r);
  if (rc == 0)
    rc = walk_from(&m, node, r, n, max, how == SHMD_RBTREE_LE || how == SHMD_RBTREE_LT, fn, arg,
                   visited);
  else if (visited)
    *visited = 0;
  return map_close(&m, rc);
}

/* ---------------------------------------------------------------------------------------------- */
/* Checker */

typedef struct mcheck_s {
  map_t *m;
  const unsigned char *prev_key; /* previous entry's key (valid under the lock) */
  size_t prev_len;
  int have_prev;
} mcheck_t;

static int check_ool(shmd_store_t *s, shmd_ptr_t p, size_t len) {
  const unsigned char *b;
  SHMD_TRY(ool_view(s, p, len, &b));
  size_t usable = shmd_usable_size(s, p);
  if (usable < len || usable == 0)
    return SHMD_CORRUPT_RC("rbtree: out-of-line bytes are not an allocated block of their length");
  return 0;
}

static int check_entry(shmd_store_t *s, shmd_ptr_t p, const shmd_rb_node_t *n, void *arg) {
  (void)n;
  mcheck_t *k = (mcheck_t *)arg;
  map_t *m = k->m;
  uint32_t order = m->order;
  const ent_t *e;
  SHMD_TRY(ent_checked(m, p, &e));
  uint32_t klw = e->key_len, vlw = e->val_len;
  size_t kl = klw & LEN_MASK, vl = vlw & LEN_MASK;
  if (shmd_usable_size(s, p) < ent_bytes(order, klw, vlw))
    return SHMD_CORRUPT_RC("rbtree: entry is not an allocated block of its size");
  if ((klw & OOL) && kl <= SHMD_RBTREE_INLINE_KEY_MAX)
    return SHMD_CORRUPT_RC("rbtree: short key stored out of line");
  if ((vlw & OOL) && vl <= SHMD_RBTREE_INLINE_VAL_MAX)
    return SHMD_CORRUPT_RC("rbtree: short value stored out of line");
  switch (order) {
  case SHMD_RBTREE_I64:
  case SHMD_RBTREE_DOUBLE:
    if (klw != 8)
      return SHMD_CORRUPT_RC("rbtree: numeric key is not 8 inline bytes");
    break;
  case SHMD_RBTREE_DOUBLE_BYTES:
    if (kl < 8)
      return SHMD_CORRUPT_RC("rbtree: score-member key shorter than 8 bytes");
    break;
  default:
    break;
  }
  if (klw & OOL)
    SHMD_TRY(check_ool(s, area_ptr(key_ptr_area(e, order)), kl));
  if (vlw & OOL)
    SHMD_TRY(check_ool(s, area_ptr((const unsigned char *)e + val_off(order, klw)), vl));
  const unsigned char *key;
  size_t klen;
  SHMD_TRY(ent_key(s, order, e, &key, &klen));
  if (order == SHMD_RBTREE_DOUBLE || order == SHMD_RBTREE_DOUBLE_BYTES) {
    double d, d2;
    memcpy(&d, e->data, 8);
    memcpy(&d2, key, 8);
    if (isnan(d) || (d == 0 && signbit(d)))
      return SHMD_CORRUPT_RC("rbtree: NaN or -0.0 key");
    if (memcmp(&d, &d2, 8) != 0)
      return SHMD_CORRUPT_RC("rbtree: inline score differs from the out-of-line key");
  }
  if (k->have_prev) {
    qk_t q;
    int c;
    if (shmd__okey_make(order, k->prev_key, k->prev_len, &q))
      return SHMD_CORRUPT_RC("rbtree: invalid key");
    SHMD_TRY(ent_cmp(s, order, &q, e, &c));
    if (c >= 0)
      return SHMD_CORRUPT_RC("rbtree: keys out of order");
  }
  k->prev_key = key;
  k->prev_len = klen;
  k->have_prev = 1;
  return 0;
}

static int rbtree_check_body(shmd_store_t *s, shmd_ptr_t tree);

/* The public checker: its lock waits are bounded (segments/lockwait.h). */
int shmd_rbtree_check(shmd_store_t *s, shmd_ptr_t tree) {
  uint64_t w = shmd__check_wait_begin(s);
  int rc = rbtree_check_body(s, tree);
  shmd__check_wait_end(s, w);
  return rc;
}

static int rbtree_check_body(shmd_store_t *s, shmd_ptr_t tree) {
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  int rc = 0;
  if (m.h->flags != 0)
    rc = SHMD_CORRUPT_RC("rbtree: unknown header flags");
  shmd_store_info_t info;
  if (rc == 0)
    rc = shmd_store_info(s, &info);
  if (rc == 0) {
    mcheck_t k = {&m, NULL, 0, 0};
    uint64_t count;
    rc = shmd_rb_check(s, m.root, info.store_bytes / sizeof(ent_t) + 1, check_entry, &k, &count);
  }
  return map_close(&m, rc);
}
