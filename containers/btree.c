/* SPDX-License-Identifier: MIT */
/*
 * The order-statistic B+tree map (shmd_btree_*): the keyed ordered map of rbtree_map.c, with the
 * same operations and semantics, laid out for memory latency. Sorted sets stand on it: a rank query
 * in a million-entry tree visits about six nodes, the upper ones cached, and inside a node reads a
 * few consecutive cache lines that are fetched together, instead of one dependent miss per level
 * of a binary tree.
 *
 * Layout
 * ------
 * A tree is a 64-byte header
 *
 *     magic (kind word) | lock | order, height | root | count | reserved[3]
 *
 * and nodes of NODE_BYTES (912) bytes, leaves and internal nodes alike:
 *
 *     0        16             144           272           400                        912
 *     | header | abbr[16] ... | ref[16] ... | cnt[16] ... | key[16] (32 bytes each) ... |
 *
 *   header   n (entries or children), level (0 = leaf), the node mark, a reserved word;
 *   abbr[i]  an order-preserving 64-bit abbreviation of key i: a < b implies abbr(a) <= abbr(b).
 *            Signed integers with the sign bit flipped, doubles with the usual sign-magnitude
 *            flip (the score of a DOUBLE_BYTES key), byte keys' first 8 bytes big-endian, padded
 *            with zeros. A search scans this packed array (two cache lines) and compares keys in
 *            full only where abbreviations tie; for I64 and DOUBLE equal abbreviations are equal
 *            keys, so the full key is never read;
 *   ref[i]   leaf: the value when it has at most 8 bytes (zero-padded), else the shmd_ptr_t of
 *            its own allocation; internal: the shmd_ptr_t of child i;
 *   cnt[i]   internal: the number of entries in the subtree of child i (unused in leaves): rank
 *            adds the counts left of the path, select subtracts them on the way down;
 *   key[i]   klen (bit 31: out of line), vlen (leaf: bit 31 out of line; internal: 0), and a
 *            24-byte area: the whole key when it has at most 24 bytes, else its first 16 bytes
 *            and the shmd_ptr_t of an allocation that holds the whole key. Numbers are stored
 *            normalised (-0.0 as +0.0) in the area and in the out-of-line copy.
 *
 * Internal node i has children 0 .. n-1 and separators key[1] .. key[n-1]; key[0] is empty
 * (klen 0, abbr 0). Every key of child i is >= key[i] (i > 0) and < key[i + 1] (i < n - 1).
 * Separators are copies (with their own out-of-line bytes) made when a leaf splits; they may
 * outlive the leaf key they were copied from, which is what a B+tree allows. Each slot owns its
 * out-of-line allocations; moving a slot between nodes moves the ownership.
 *
 * Balance: every node holds at most CAP = 16 entries / children; a non-root node at least
 * MINF = 8; an internal root at least 2 children; all leaves are at depth height - 1.
 * Insertion splits full nodes on the way down (a full root first grows a new root above it), so
 * the parent of a split always has room; deletion tops up nodes at MINF on the way down, by
 * borrowing one slot from a sibling or merging with it, so the leaf always has an entry to spare;
 * a root left with one child is replaced by that child. Both are single top-down passes preceded
 * by a read-only descent that decides whether anything changes at all (NX / XX / miss).
 *
 *     split (CAP = 4 shown)            P: [ .. a  | ..]            P: [ .. a | c | ..]
 *                                              |            =>            |    |
 *                                         [a b c d]                    [a b] [c d]
 *
 * Crash protocol: every store to a node that existed before the operation is preceded by
 * shmd_tx_log of the range it changes (the header word and the shifted part of the arrays); nodes
 * and out-of-line bytes are allocated with shmd_tx_alloc (freed if the operation does not commit)
 * and freed with shmd_tx_free (after the commit, exactly once). So a process killed anywhere inside
 * an operation leaves the tree exactly as before it (rollback) or as after it (committed).
 *
 * Locks: each tree's own shmd_lock_t, taken by every function (readers too) inside the caller's
 * transaction when one is open; under it, the allocator's locks (lock order: container, then
 * allocator). No other lock is taken.
 *
 * Failure handling: a function that fails before changing or allocating anything commits its
 * (possibly joined) transaction, so that a lookup that finds nothing inside a caller's transaction
 * does not abort it; one that fails after logging aborts. Descents resolve nodes with the fast
 * shmd_resolve and verify each node's mark, level and fill; the checker, the walks and every
 * out-of-line access use bounds-checked resolves.
 */
#include <math.h>
#include <string.h>

#include "segments/crash.h"
#include "segments/err.h"
#include "segments/lockwait.h"
#include "shmdict/alloc.h"
#include "shmdict/btree.h"
#include "shmdict/error.h"
#include "shmdict/store.h"
#include "cont_int.h"
#include "omap.h"

/* ---------------------------------------------------------------------------------------------- */
/* Layout */

#define BTREE_MAGIC SHMD__KIND(0x45525442) /* "BTRE" (containers/cont_int.h) */
#define NODE_MARK 0x444E5442u                                   /* "BTND" */

#define CAP 16u
#define MINF (CAP / 2)
#define KA SHMD_BTREE_INLINE_KEY_MAX /* inline key area */
#define KP 16u                       /* prefix of a long key kept in the node */
#define VI SHMD_BTREE_INLINE_VAL_MAX /* inline value bytes */
#define MAX_DEPTH 32u                /* 8^31 > 2^64: no valid tree is deeper */

#define OOL 0x80000000u
#define LEN_MASK 0x7fffffffu

typedef struct bt_hdr_s {
  uint64_t magic;
  shmd_lock_t lock;
  uint32_t order;
  uint32_t height; /* levels; the root's level is height - 1 */
  shmd_ptr_t root;
  uint64_t count; /* entries */
  uint64_t reserved[3];
} bt_hdr_t;

typedef struct kslot_s {
  uint32_t klen;
  uint32_t vlen;
  unsigned char area[KA];
} kslot_t;

typedef struct node_s {
  uint16_t n;
  uint16_t level;
  uint32_t mark;
  uint64_t reserved;
  uint64_t abbr[CAP];
  uint64_t ref[CAP];
  uint64_t cnt[CAP];
  kslot_t key[CAP];
} node_t;

#define NODE_BYTES sizeof(node_t)

_Static_assert(sizeof(bt_hdr_t) == 64, "tree header is 64 bytes");
_Static_assert(sizeof(kslot_t) == 32, "key slot is 32 bytes");
_Static_assert(sizeof(node_t) == 912, "node is 912 bytes");
_Static_assert(KA == KP + 8, "a long key keeps its prefix and a pointer in the area");

_Static_assert(SHMD_BTREE_BYTES == SHMD__OKEY_BYTES && SHMD_BTREE_I64 == SHMD__OKEY_I64 &&
                   SHMD_BTREE_DOUBLE == SHMD__OKEY_DOUBLE && SHMD_BTREE_DOUBLE_BYTES == SHMD__OKEY_DOUBLE_BYTES &&
                   SHMD_BTREE_LEN_MAX == SHMD__OKEY_LEN_MAX,
               "the orders of containers/omap.h");

static int order_valid(uint32_t order) {
  return order >= SHMD_BTREE_BYTES && order <= SHMD_BTREE_DOUBLE_BYTES;
}

static inline shmd_ptr_t mkptr(uint64_t v) {
  shmd_ptr_t p;
  p.v = v;
  return p;
}
static inline shmd_ptr_t area_ptr(const kslot_t *k) {
  uint64_t v;
  memcpy(&v, k->area + KP, 8);
  return mkptr(v);
}

/* ---------------------------------------------------------------------------------------------- */
/* Abbreviations, query keys and comparison */

static inline uint64_t abbr_double(double d) {
  uint64_t u;
  memcpy(&u, &d, 8);
  return (u >> 63) ? ~u : u | (UINT64_C(1) << 63);
}
static inline uint64_t abbr_bytes(const unsigned char *k, size_t kl) {
  uint64_t a = 0;
  for (size_t i = 0; i < 8; i++)
    a = (a << 8) | (i < kl ? k[i] : 0u);
  return a;
}
/* The abbreviation of a stored (normalised) key. */
static uint64_t abbr_key(uint32_t order, const unsigned char *k, size_t kl) {
  switch (order) {
  case SHMD_BTREE_I64: {
    int64_t i;
    memcpy(&i, k, 8);
    return (uint64_t)i ^ (UINT64_C(1) << 63);
  }
  case SHMD_BTREE_DOUBLE:
  case SHMD_BTREE_DOUBLE_BYTES: {
    double d;
    memcpy(&d, k, 8);
    return abbr_double(d);
  }
  default:
    return abbr_bytes(k, kl);
  }
}

/* A query key: the key validated and normalised as both ordered maps do it (omap.h), its
 * abbreviation, and its first bytes as a slot stores them. */
typedef struct qk_s {
  shmd__okey_t k;
  uint64_t abbr;
  unsigned char head[KA]; /* the first min(klen, KA) bytes, normalised */
} qk_t;

static int qk_make(uint32_t order, const void *key, size_t klen, qk_t *q) {
  SHMD_TRY(shmd__okey_make(order, key, klen, &q->k));
  shmd__okey_copy(&q->k, order, q->head, klen < KA ? klen : KA);
  q->abbr = abbr_key(order, q->head, klen);
  return 0;
}

/* Out-of-line bytes, bounds-checked. */
static int ool_view(shmd_store_t *s, shmd_ptr_t p, size_t len, const unsigned char **out) {
  void *a;
  if ((p.v & 7u) != 0 || shmd_resolve_checked(s, p, len ? len : 1, &a))
    return SHMD_CORRUPT_RC("btree: out-of-line bytes outside the store");
  *out = (const unsigned char *)a;
  return 0;
}

/* The whole key of a slot as one view. */
static int slot_key(shmd_store_t *s, const kslot_t *k, const unsigned char **out, size_t *kl) {
  uint32_t klw = k->klen;
  *kl = klw & LEN_MASK;
  if (!(klw & OOL)) {
    if (*kl > KA)
      return SHMD_CORRUPT_RC("btree: inline key longer than the inline area");
    *out = k->area;
    return 0;
  }
  if (*kl <= KA)
    return SHMD_CORRUPT_RC("btree: short key stored out of line");
  return ool_view(s, area_ptr(k), *kl, out);
}

/* *out = compare(q, key of the slot), for a slot whose abbreviation equals q's (so numbers are
 * equal): the byte parts decide. Reads the out-of-line bytes only when the 16-byte prefix ties. */
static int slot_cmp_tie(shmd_store_t *s, uint32_t order, const qk_t *q, const kslot_t *k,
                        int *out) {
  size_t skip = order == SHMD_BTREE_DOUBLE_BYTES ? 8 : 0;
  uint32_t klw = k->klen;
  size_t kl = klw & LEN_MASK;
  if (kl < skip)
    return SHMD_CORRUPT_RC("btree: key shorter than its number");
  if (!(klw & OOL)) {
    if (kl > KA)
      return SHMD_CORRUPT_RC("btree: inline key longer than the inline area");
    *out = shmd__bytes_cmp(q->k.bytes, q->k.blen, k->area + skip, kl - skip);
    return 0;
  }
  size_t pl = KP - skip; /* prefix bytes after the number */
  size_t m = q->k.blen < pl ? q->k.blen : pl;
  int c = m ? memcmp(q->k.bytes, k->area + skip, m) : 0;
  if (c != 0) {
    *out = c < 0 ? -1 : 1;
    return 0;
  }
  if (q->k.blen <= pl) { /* q is a prefix of the longer stored key */
    *out = -1;
    return 0;
  }
  const unsigned char *kb;
  SHMD_TRY(slot_key(s, k, &kb, &kl));
  *out = shmd__bytes_cmp(q->k.bytes, q->k.blen, kb + skip, kl - skip);
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Opening a tree: kind word, transaction, lock */

typedef struct nref_s {
  shmd_ptr_t p;
  node_t *a;
} nref_t;

#define MAX_FRESH 48

/* A destroy step's plan (destroy_plan()). */
typedef struct dplan_s {
  int bulk;
  size_t entries, words, allocs, frees;
} dplan_t;


typedef struct map_s {
  shmd_store_t *s;
  shmd_tx_t *tx;
  shmd_ptr_t tree;
  bt_hdr_t *h;
  uint32_t order;
  int exact; /* equal abbreviations are equal keys */
  int dirty; /* something was logged or allocated: failures must abort */
  unsigned nfresh;
  uint64_t fresh[MAX_FRESH]; /* nodes allocated by this operation: no logging needed */
  dplan_t plan;              /* destroy: the next step's plan */
} map_t;

static int map_open(shmd_store_t *s, shmd_ptr_t tree, map_t *m) {
  void *a;
  m->s = s;
  m->tree = tree;
  m->dirty = 0;
  m->nfresh = 0;
  SHMD_TRY(shmd__cont_enter(s, tree, sizeof(bt_hdr_t), offsetof(bt_hdr_t, lock), BTREE_MAGIC,
                            "btree: tree pointer outside the store", "btree: not a container", &a, &m->tx));
  m->h = (bt_hdr_t *)a;
  int rc = 0;
  if (!order_valid(m->h->order))
    rc = SHMD_CORRUPT_RC("btree: unknown ordering in the header");
  else if (m->h->height == 0 || m->h->height > MAX_DEPTH)
    rc = SHMD_CORRUPT_RC("btree: bad height in the header");
  if (rc)
    return shmd_tx_end(m->tx, rc); /* nothing done: a caller's transaction goes on */
  m->order = m->h->order;
  m->exact = m->order == SHMD_BTREE_I64 || m->order == SHMD_BTREE_DOUBLE;
  return 0;
}

/* Ends the operation: shmd_tx_end() (commit, or abort when this level changed something and rc is
 * a failure), or an abort after a failure the call marked dirty (m->dirty: something was logged or
 * allocated, or a caller's transaction must not commit a half-done destroy). */
static int map_close(map_t *m, int rc) {
  if (rc == 0)
    return shmd_tx_commit(m->tx); /* what shmd_tx_end() does for a success, without its checks */
  if (m->dirty) {
    shmd_tx_abort(m->tx);
    return rc;
  }
  return shmd_tx_end(m->tx, rc);
}

/* ---------------------------------------------------------------------------------------------- */
/* Nodes: resolving, searching */

/* Starts loading the lines a descent reads: the header, abbreviations, refs and counts. */
static inline void prefetch_node(const node_t *a) {
  const char *b = (const char *)a;
  for (unsigned off = 0; off < offsetof(node_t, key); off += 64)
    __builtin_prefetch(b + off);
}

/* A node at `p` that must have level `level`: the fast resolve, then its mark, level and fill. */
static inline int node_at(const map_t *m, shmd_ptr_t p, unsigned level, nref_t *out) {
  if (p.v == 0 || (p.v & 7u) != 0)
    return SHMD_CORRUPT_RC("btree: bad node pointer");
  node_t *a = (node_t *)shmd_resolve(m->s, p);
  if (a == NULL)
    return SHMD_CORRUPT_RC("btree: node pointer outside the store");
  if (a->mark != NODE_MARK || a->level != level || a->n > CAP)
    return SHMD_CORRUPT_RC("btree: bad node header");
  out->p = p;
  out->a = a;
  return 0;
}

static int root_at(const map_t *m, nref_t *out) {
  void *a;
  shmd_ptr_t p = m->h->root;
  if ((p.v & 7u) != 0 || shmd_resolve_checked(m->s, p, NODE_BYTES, &a))
    return SHMD_CORRUPT_RC("btree: root outside the store");
  SHMD_TRY(node_at(m, p, m->h->height - 1, out));
  if (out->a->level > 0 && out->a->n < 2)
    return SHMD_CORRUPT_RC("btree: internal root with fewer than two children");
  return 0;
}

static inline int child_at(const map_t *m, const nref_t *par, unsigned i, nref_t *out) {
  if (i >= par->a->n || par->a->level == 0)
    return SHMD_CORRUPT_RC("btree: child index out of range");
  SHMD_TRY(node_at(m, mkptr(par->a->ref[i]), par->a->level - 1u, out));
  prefetch_node(out->a);
  return 0;
}

/* First index i >= start with key[i] >= q; *eq when key[i] == q. */
static int node_lb(const map_t *m, const qk_t *q, const node_t *a, unsigned start, unsigned *pos,
                   int *eq) {
  unsigned n = a->n, i = start;
  uint64_t qa = q->abbr;
  unsigned less = 0;
  for (unsigned j = start; j < n; j++)
    less += a->abbr[j] < qa;
  i = start + less;
  *eq = 0;
  while (i < n && a->abbr[i] == qa) {
    if (m->exact) {
      *eq = 1;
      break;
    }
    int c;
    SHMD_TRY(slot_cmp_tie(m->s, m->order, q, &a->key[i], &c));
    if (c <= 0) {
      *eq = c == 0;
      break;
    }
    i++;
  }
  *pos = i;
  return 0;
}

/* The child of internal node `a` whose range holds q. */
static inline int child_idx(const map_t *m, const qk_t *q, const node_t *a, unsigned *ci) {
  unsigned pos;
  int eq;
  SHMD_TRY(node_lb(m, q, a, 1, &pos, &eq));
  *ci = eq ? pos : pos - 1;
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Read-only descents */

typedef struct path_s {
  unsigned depth; /* nodes on the path; nd[depth - 1] is the leaf */
  nref_t nd[MAX_DEPTH];
  unsigned idx[MAX_DEPTH];
} path_t;

/* Descends to the leaf where q belongs: *pos = number of leaf entries < q, *eq whether the entry
 * at *pos equals q, *below = number of entries of the tree < q. The path is recorded if pa. */
static int find(const map_t *m, const qk_t *q, path_t *pa, nref_t *leaf, unsigned *pos, int *eq,
                uint64_t *below) {
  nref_t cur;
  SHMD_TRY(root_at(m, &cur));
  uint64_t r = 0;
  for (unsigned d = 0;; d++) {
    if (d >= MAX_DEPTH)
      return SHMD_CORRUPT_RC("btree: tree too deep");
    const node_t *a = cur.a;
    if (a->level == 0) {
      SHMD_TRY(node_lb(m, q, a, 0, pos, eq));
      if (pa) {
        pa->nd[d] = cur;
        pa->idx[d] = *pos;
        pa->depth = d + 1;
      }
      *leaf = cur;
      *below = r + *pos;
      return 0;
    }
    unsigned ci;
    SHMD_TRY(child_idx(m, q, a, &ci));
    for (unsigned j = 0; j < ci; j++)
      r += a->cnt[j];
    if (pa) {
      pa->nd[d] = cur;
      pa->idx[d] = ci;
    }
    nref_t nx;
    SHMD_TRY(child_at(m, &cur, ci, &nx));
    cur = nx;
  }
}

/* Descends to the entry of rank `index` (< count), recording the path. */
static int select_path(const map_t *m, uint64_t index, path_t *pa) {
  nref_t cur;
  SHMD_TRY(root_at(m, &cur));
  for (unsigned d = 0;; d++) {
    if (d >= MAX_DEPTH)
      return SHMD_CORRUPT_RC("btree: tree too deep");
    const node_t *a = cur.a;
    pa->nd[d] = cur;
    if (a->level == 0) {
      if (index >= a->n)
        return SHMD_CORRUPT_RC("btree: subtree counts disagree with the leaves");
      pa->idx[d] = (unsigned)index;
      pa->depth = d + 1;
      return 0;
    }
    unsigned ci = 0, n = a->n;
    while (ci < n && index >= a->cnt[ci])
      index -= a->cnt[ci++];
    if (ci == n)
      return SHMD_CORRUPT_RC("btree: subtree counts disagree with the length");
    pa->idx[d] = ci;
    nref_t nx;
    SHMD_TRY(child_at(m, &cur, ci, &nx));
    cur = nx;
  }
}

/* Moves a path to the next (or previous) entry; SHMD_ENOTFOUND past the end. */
static int path_step(const map_t *m, path_t *pa, int reverse) {
  unsigned L = pa->depth - 1;
  if (!reverse ? pa->idx[L] + 1 < pa->nd[L].a->n : pa->idx[L] > 0) {
    pa->idx[L] = reverse ? pa->idx[L] - 1 : pa->idx[L] + 1;
    return 0;
  }
  int k = (int)L - 1;
  while (k >= 0 && (!reverse ? pa->idx[k] + 1 >= pa->nd[k].a->n : pa->idx[k] == 0))
    k--;
  if (k < 0)
    return SHMD_ENOTFOUND;
  pa->idx[k] = reverse ? pa->idx[k] - 1 : pa->idx[k] + 1;
  for (unsigned j = (unsigned)k + 1; j <= L; j++) {
    SHMD_TRY(child_at(m, &pa->nd[j - 1], pa->idx[j - 1], &pa->nd[j]));
    unsigned n = pa->nd[j].a->n;
    if (n == 0)
      return SHMD_CORRUPT_RC("btree: empty non-root node");
    pa->idx[j] = reverse ? n - 1 : 0;
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Copying out */

static int val_view(const map_t *m, const node_t *a, unsigned i, const unsigned char **v,
                    size_t *vl) {
  uint32_t vlw = a->key[i].vlen;
  *vl = vlw & LEN_MASK;
  if (!(vlw & OOL)) {
    if (*vl > VI)
      return SHMD_CORRUPT_RC("btree: inline value longer than 8 bytes");
    *v = (const unsigned char *)&a->ref[i];
    return 0;
  }
  if (*vl <= VI)
    return SHMD_CORRUPT_RC("btree: short value stored out of line");
  return ool_view(m->s, mkptr(a->ref[i]), *vl, v);
}

static int item_fill(const map_t *m, const node_t *a, unsigned i, uint64_t rank,
                     shmd_btree_item_t *it) {
  if (it == NULL)
    return 0;
  const unsigned char *k, *v;
  size_t kl, vl;
  SHMD_TRY(slot_key(m->s, &a->key[i], &k, &kl));
  SHMD_TRY(val_view(m, a, i, &v, &vl));
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
/* Logged changes */

static int is_fresh(const map_t *m, shmd_ptr_t p) {
  for (unsigned i = 0; i < m->nfresh; i++)
    if (m->fresh[i] == p.v)
      return 1;
  return 0;
}

static int log_bytes(map_t *m, const nref_t *nd, size_t off, size_t len) {
  if (len == 0 || is_fresh(m, nd->p))
    return 0;
  m->dirty = 1;
  return shmd_tx_log(m->tx, shmd_ptr_add(nd->p, off), len);
}

/* Logs the node header and slots [from, to) of every array before they change. */
static int log_slots(map_t *m, const nref_t *nd, unsigned from, unsigned to) {
  if (to > CAP)
    to = CAP;
  SHMD_TRY(log_bytes(m, nd, 0, 8));
  if (from >= to)
    return 0;
  size_t k = to - from;
  SHMD_TRY(log_bytes(m, nd, offsetof(node_t, abbr) + 8 * (size_t)from, 8 * k));
  SHMD_TRY(log_bytes(m, nd, offsetof(node_t, ref) + 8 * (size_t)from, 8 * k));
  SHMD_TRY(log_bytes(m, nd, offsetof(node_t, cnt) + 8 * (size_t)from, 8 * k));
  return log_bytes(m, nd, offsetof(node_t, key) + sizeof(kslot_t) * from, sizeof(kslot_t) * k);
}

static int set_word(map_t *m, const nref_t *nd, uint64_t *w, uint64_t v) {
  if (is_fresh(m, nd->p)) {
    *w = v;
    return 0;
  }
  m->dirty = 1;
  return shmd_tx_set64(m->tx, w, v);
}

static int hdr_set(map_t *m, uint64_t *w, uint64_t v) {
  m->dirty = 1;
  return shmd_tx_set64(m->tx, w, v);
}

/* order and height share the header's third word. */
static int set_height(map_t *m, uint32_t height) {
  uint32_t w2[2] = {m->h->order, height};
  uint64_t w;
  memcpy(&w, w2, 8);
  return hdr_set(m, (uint64_t *)(void *)&m->h->order, w);
}

static int node_new(map_t *m, unsigned level, nref_t *out) {
  m->dirty = 1;
  SHMD_TRY(shmd_tx_alloc(m->tx, NODE_BYTES, &out->p));
  out->a = (node_t *)shmd_resolve(m->s, out->p);
  memset(out->a, 0, NODE_BYTES);
  out->a->mark = NODE_MARK;
  out->a->level = (uint16_t)level;
  if (m->nfresh < MAX_FRESH)
    m->fresh[m->nfresh++] = out->p.v;
  return 0;
}

/* Slot moves inside or between nodes (no logging: callers log first). */
static void slot_copy(node_t *d, unsigned di, const node_t *s, unsigned si) {
  d->abbr[di] = s->abbr[si];
  d->ref[di] = s->ref[si];
  d->cnt[di] = s->cnt[si];
  d->key[di] = s->key[si];
}
static void slots_copy(node_t *d, unsigned di, const node_t *s, unsigned si, unsigned k) {
  memmove(&d->abbr[di], &s->abbr[si], 8 * (size_t)k);
  memmove(&d->ref[di], &s->ref[si], 8 * (size_t)k);
  memmove(&d->cnt[di], &s->cnt[si], 8 * (size_t)k);
  memmove(&d->key[di], &s->key[si], sizeof(kslot_t) * k);
}
static void slot_clear(node_t *a, unsigned i) {
  a->abbr[i] = 0;
  a->ref[i] = 0;
  a->cnt[i] = 0;
  memset(&a->key[i], 0, sizeof(kslot_t));
}

/* A separator copied from a leaf key: its own out-of-line bytes when the key is long. */
static int sep_copy(map_t *m, const kslot_t *src, kslot_t *dst) {
  kslot_t k = *src;
  k.vlen = 0;
  if (k.klen & OOL) {
    const unsigned char *b;
    size_t kl;
    SHMD_TRY(slot_key(m->s, src, &b, &kl));
    shmd_ptr_t p;
    m->dirty = 1;
    SHMD_TRY(shmd_tx_alloc(m->tx, kl, &p));
    memcpy(shmd_resolve(m->s, p), b, kl);
    memcpy(k.area + KP, &p.v, 8);
  }
  *dst = k;
  return 0;
}

static int sep_drop(map_t *m, const kslot_t *k) {
  if (k->klen & OOL) {
    m->dirty = 1;
    return shmd_tx_free(m->tx, area_ptr(k));
  }
  return 0;
}

static int ent_drop(map_t *m, const node_t *a, unsigned i) {
  SHMD_TRY(sep_drop(m, &a->key[i]));
  if (a->key[i].vlen & OOL) {
    m->dirty = 1;
    return shmd_tx_free(m->tx, mkptr(a->ref[i]));
  }
  return 0;
}

static uint64_t node_total(const node_t *a) {
  if (a->level == 0)
    return a->n;
  uint64_t t = 0;
  for (unsigned i = 0; i < a->n; i++)
    t += a->cnt[i];
  return t;
}

/* ---------------------------------------------------------------------------------------------- */
/* Split, borrow, merge */

/* Splits the full child i of P into two halves; P gains a separator and a child. */
static int split_child(map_t *m, const nref_t *P, unsigned i) {
  node_t *p = P->a;
  nref_t C, R;
  SHMD_TRY(child_at(m, P, i, &C));
  node_t *c = C.a;
  if (c->n != CAP || p->n >= CAP)
    return SHMD_CORRUPT_RC("btree: split of a node that is not full");
  SHMD_TRY(node_new(m, c->level, &R));
  node_t *r = R.a;
  unsigned half = CAP / 2;
  slots_copy(r, 0, c, half, CAP - half);
  r->n = (uint16_t)(CAP - half);
  kslot_t sep;
  uint64_t sabbr = r->abbr[0];
  if (c->level == 0) {
    SHMD_TRY(sep_copy(m, &r->key[0], &sep));
    for (unsigned j = 0; j < r->n; j++)
      r->cnt[j] = 0;
  } else {
    sep = r->key[0]; /* moves up */
    memset(&r->key[0], 0, sizeof(kslot_t));
    r->abbr[0] = 0;
  }
  uint64_t moved = node_total(r);
  SHMD_TRY(log_slots(m, &C, 0, 0));
  c->n = (uint16_t)half;
  SHMD_TRY(log_slots(m, P, i, p->n + 1u));
  slots_copy(p, i + 2, p, i + 1, p->n - i - 1u);
  p->abbr[i + 1] = sabbr;
  p->ref[i + 1] = R.p.v;
  p->cnt[i + 1] = moved;
  p->key[i + 1] = sep;
  p->cnt[i] -= moved;
  p->n++;
  SHMD_CRASH_POINT("btree.split");
  return 0;
}

/* Moves the last slot of the left sibling L (child i-1) into C (child i). */
static int borrow_left(map_t *m, const nref_t *P, unsigned i, const nref_t *L, const nref_t *C) {
  node_t *p = P->a, *l = L->a, *c = C->a;
  unsigned j = l->n - 1u;
  SHMD_TRY(log_slots(m, L, 0, 0));
  SHMD_TRY(log_slots(m, C, 0, c->n + 1u));
  SHMD_TRY(log_slots(m, P, i - 1, i + 1));
  slots_copy(c, 1, c, 0, c->n);
  uint64_t mc;
  if (c->level == 0) {
    slot_copy(c, 0, l, j);
    c->cnt[0] = 0;
    SHMD_TRY(sep_drop(m, &p->key[i]));
    SHMD_TRY(sep_copy(m, &c->key[0], &p->key[i]));
    p->abbr[i] = c->abbr[0];
    mc = 1;
  } else {
    mc = l->cnt[j];
    c->ref[0] = l->ref[j];
    c->cnt[0] = mc;
    memset(&c->key[0], 0, sizeof(kslot_t));
    c->abbr[0] = 0;
    c->key[1] = p->key[i]; /* the separator moves down */
    c->abbr[1] = p->abbr[i];
    p->key[i] = l->key[j]; /* and the left sibling's last one up */
    p->abbr[i] = l->abbr[j];
  }
  c->n++;
  l->n--;
  p->cnt[i - 1] -= mc;
  p->cnt[i] += mc;
  SHMD_CRASH_POINT("btree.borrow");
  return 0;
}

/* Moves the first slot of the right sibling R (child i+1) into C (child i). */
static int borrow_right(map_t *m, const nref_t *P, unsigned i, const nref_t *C, const nref_t *R) {
  node_t *p = P->a, *c = C->a, *r = R->a;
  SHMD_TRY(log_slots(m, C, c->n, c->n + 1u));
  SHMD_TRY(log_slots(m, R, 0, r->n));
  SHMD_TRY(log_slots(m, P, i, i + 2));
  unsigned e = c->n;
  uint64_t mc;
  if (c->level == 0) {
    slot_copy(c, e, r, 0);
    c->cnt[e] = 0;
    slots_copy(r, 0, r, 1, r->n - 1u);
    r->n--;
    SHMD_TRY(sep_drop(m, &p->key[i + 1]));
    SHMD_TRY(sep_copy(m, &r->key[0], &p->key[i + 1]));
    p->abbr[i + 1] = r->abbr[0];
    mc = 1;
  } else {
    mc = r->cnt[0];
    c->ref[e] = r->ref[0];
    c->cnt[e] = mc;
    c->key[e] = p->key[i + 1]; /* the separator moves down */
    c->abbr[e] = p->abbr[i + 1];
    p->key[i + 1] = r->key[1]; /* and the right sibling's first one up */
    p->abbr[i + 1] = r->abbr[1];
    slots_copy(r, 0, r, 1, r->n - 1u);
    r->n--;
    memset(&r->key[0], 0, sizeof(kslot_t));
    r->abbr[0] = 0;
  }
  c->n++;
  p->cnt[i] += mc;
  p->cnt[i + 1] -= mc;
  SHMD_CRASH_POINT("btree.borrow");
  return 0;
}

/* Merges child j+1 (R) into child j (L) and frees R. */
static int merge(map_t *m, const nref_t *P, unsigned j, const nref_t *L, const nref_t *R) {
  node_t *p = P->a, *l = L->a, *r = R->a;
  if (l->n + r->n > CAP)
    return SHMD_CORRUPT_RC("btree: merge of nodes that do not fit one");
  SHMD_TRY(log_slots(m, L, l->n, l->n + r->n));
  SHMD_TRY(log_slots(m, P, j, p->n));
  unsigned base = l->n;
  slots_copy(l, base, r, 0, r->n);
  if (l->level == 0) {
    SHMD_TRY(sep_drop(m, &p->key[j + 1]));
  } else {
    l->key[base] = p->key[j + 1]; /* the separator moves down */
    l->abbr[base] = p->abbr[j + 1];
  }
  l->n = (uint16_t)(base + r->n);
  p->cnt[j] += p->cnt[j + 1];
  slots_copy(p, j + 1, p, j + 2, p->n - j - 2u);
  p->n--;
  slot_clear(p, p->n);
  m->dirty = 1;
  SHMD_TRY(shmd_tx_free(m->tx, R->p));
  SHMD_CRASH_POINT("btree.merge");
  return 0;
}

/* Makes child i of P hold more than MINF slots; *ni receives the index of the child that now
 * covers child i's range. */
static int fix_child(map_t *m, const nref_t *P, unsigned i, unsigned *ni) {
  const node_t *p = P->a;
  nref_t C, L, R;
  SHMD_TRY(child_at(m, P, i, &C));
  if (i > 0) {
    SHMD_TRY(child_at(m, P, i - 1, &L));
    if (L.a->n > MINF) {
      *ni = i;
      return borrow_left(m, P, i, &L, &C);
    }
  }
  if (i + 1 < p->n) {
    SHMD_TRY(child_at(m, P, i + 1, &R));
    if (R.a->n > MINF) {
      *ni = i;
      return borrow_right(m, P, i, &C, &R);
    }
  }
  if (i > 0) {
    *ni = i - 1;
    return merge(m, P, i - 1, &L, &C);
  }
  if (i + 1 < p->n) {
    *ni = i;
    return merge(m, P, i, &C, &R);
  }
  return SHMD_CORRUPT_RC("btree: internal node with a single child");
}

/* ---------------------------------------------------------------------------------------------- */
/* Insert and delete */

/* Builds the leaf slot of a new entry (allocating long keys and values). */
static int make_slot(map_t *m, const qk_t *q, const void *val, size_t vlen, kslot_t *ks,
                     uint64_t *ref) {
  memset(ks, 0, sizeof *ks);
  ks->klen = (uint32_t)q->k.klen;
  if (q->k.klen <= KA) {
    memcpy(ks->area, q->head, q->k.klen);
  } else {
    shmd_ptr_t p;
    m->dirty = 1;
    SHMD_TRY(shmd_tx_alloc(m->tx, q->k.klen, &p));
    unsigned char *b = (unsigned char *)shmd_resolve(m->s, p);
    shmd__okey_copy(&q->k, m->order, b, q->k.klen);
    memcpy(ks->area, q->head, KP);
    memcpy(ks->area + KP, &p.v, 8);
    ks->klen |= OOL;
  }
  *ref = 0;
  ks->vlen = (uint32_t)vlen;
  if (vlen <= VI) {
    if (vlen)
      memcpy(ref, val, vlen);
  } else {
    shmd_ptr_t p;
    m->dirty = 1;
    SHMD_TRY(shmd_tx_alloc(m->tx, vlen, &p));
    memcpy(shmd_resolve(m->s, p), val, vlen);
    *ref = p.v;
    ks->vlen |= OOL;
  }
  return 0;
}

/* Inserts q (absent) with its value: one top-down pass that splits full nodes. */
static int insert_new(map_t *m, const qk_t *q, const void *val, size_t vlen) {
  kslot_t ks;
  uint64_t ref;
  SHMD_TRY(make_slot(m, q, val, vlen, &ks, &ref));
  nref_t cur;
  SHMD_TRY(root_at(m, &cur));
  if (cur.a->n == CAP) {
    if (m->h->height >= MAX_DEPTH)
      return SHMD_CORRUPT_RC("btree: tree too deep");
    nref_t R;
    SHMD_TRY(node_new(m, cur.a->level + 1u, &R));
    R.a->n = 1;
    R.a->ref[0] = cur.p.v;
    R.a->cnt[0] = m->h->count;
    SHMD_TRY(split_child(m, &R, 0));
    SHMD_TRY(hdr_set(m, &m->h->root.v, R.p.v));
    SHMD_TRY(set_height(m, m->h->height + 1u));
    SHMD_CRASH_POINT("btree.grow");
    cur = R;
  }
  for (unsigned d = 0; cur.a->level > 0; d++) {
    if (d >= MAX_DEPTH)
      return SHMD_CORRUPT_RC("btree: tree too deep");
    unsigned ci;
    SHMD_TRY(child_idx(m, q, cur.a, &ci));
    nref_t C;
    SHMD_TRY(child_at(m, &cur, ci, &C));
    if (C.a->n == CAP) {
      SHMD_TRY(split_child(m, &cur, ci));
      SHMD_TRY(child_idx(m, q, cur.a, &ci));
      SHMD_TRY(child_at(m, &cur, ci, &C));
    }
    SHMD_TRY(set_word(m, &cur, &cur.a->cnt[ci], cur.a->cnt[ci] + 1));
    cur = C;
  }
  node_t *a = cur.a;
  unsigned pos;
  int eq;
  SHMD_TRY(node_lb(m, q, a, 0, &pos, &eq));
  if (eq || a->n >= CAP)
    return SHMD_CORRUPT_RC("btree: leaf changed under the lock");
  SHMD_TRY(log_slots(m, &cur, pos, a->n + 1u));
  slots_copy(a, pos + 1, a, pos, a->n - pos);
  a->abbr[pos] = q->abbr;
  a->ref[pos] = ref;
  a->cnt[pos] = 0;
  a->key[pos] = ks;
  a->n++;
  SHMD_CRASH_POINT("btree.put.inserted");
  return hdr_set(m, &m->h->count, m->h->count + 1);
}

/* Removes q (present), or the smallest entry when q is NULL: one top-down pass that tops up
 * nodes at the minimum fill before entering them. */
static int delete_entry(map_t *m, const qk_t *q) {
  nref_t cur;
  SHMD_TRY(root_at(m, &cur));
  for (unsigned d = 0; cur.a->level > 0; d++) {
    if (d >= 2 * MAX_DEPTH)
      return SHMD_CORRUPT_RC("btree: tree too deep");
    unsigned ci = 0;
    if (q)
      SHMD_TRY(child_idx(m, q, cur.a, &ci));
    nref_t C;
    SHMD_TRY(child_at(m, &cur, ci, &C));
    if (C.a->n <= MINF) {
      SHMD_TRY(fix_child(m, &cur, ci, &ci));
      if (cur.a->n == 1 && cur.p.v == m->h->root.v) {
        /* The root lost its last separator: its only child becomes the root. */
        nref_t only;
        SHMD_TRY(child_at(m, &cur, 0, &only));
        SHMD_TRY(hdr_set(m, &m->h->root.v, only.p.v));
        SHMD_TRY(set_height(m, m->h->height - 1u));
        m->dirty = 1;
        SHMD_TRY(shmd_tx_free(m->tx, cur.p));
        SHMD_CRASH_POINT("btree.shrink");
        cur = only;
        continue;
      }
      SHMD_TRY(child_at(m, &cur, ci, &C));
    }
    SHMD_TRY(set_word(m, &cur, &cur.a->cnt[ci], cur.a->cnt[ci] - 1));
    cur = C;
  }
  node_t *a = cur.a;
  unsigned pos = 0;
  if (q) {
    int eq;
    SHMD_TRY(node_lb(m, q, a, 0, &pos, &eq));
    if (!eq)
      return SHMD_CORRUPT_RC("btree: leaf changed under the lock");
  } else if (a->n == 0) {
    return SHMD_CORRUPT_RC("btree: empty leaf in a non-empty tree");
  }
  SHMD_TRY(ent_drop(m, a, pos));
  SHMD_TRY(log_slots(m, &cur, pos, a->n));
  slots_copy(a, pos, a, pos + 1, a->n - pos - 1u);
  a->n--;
  slot_clear(a, a->n);
  SHMD_CRASH_POINT("btree.delete.removed");
  return hdr_set(m, &m->h->count, m->h->count - 1);
}

/* Replaces the value of entry pos of a leaf. */
static int update_value(map_t *m, const nref_t *leaf, unsigned pos, const void *val,
                        size_t vlen) {
  node_t *a = leaf->a;
  uint32_t old_vlw = a->key[pos].vlen;
  uint64_t old_ref = a->ref[pos];
  uint64_t ref = 0;
  uint32_t vlw = (uint32_t)vlen;
  if (vlen <= VI) {
    if (vlen)
      memcpy(&ref, val, vlen);
  } else {
    shmd_ptr_t p;
    m->dirty = 1;
    SHMD_TRY(shmd_tx_alloc(m->tx, vlen, &p));
    memcpy(shmd_resolve(m->s, p), val, vlen);
    ref = p.v;
    vlw |= OOL;
  }
  /* klen and vlen share the slot's first word. */
  uint64_t w;
  uint32_t lens[2] = {a->key[pos].klen, vlw};
  memcpy(&w, lens, 8);
  SHMD_TRY(set_word(m, leaf, (uint64_t *)(void *)&a->key[pos], w));
  SHMD_TRY(set_word(m, leaf, &a->ref[pos], ref));
  SHMD_CRASH_POINT("btree.put.updated");
  if (old_vlw & OOL) {
    m->dirty = 1;
    SHMD_TRY(shmd_tx_free(m->tx, mkptr(old_ref)));
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Create and destroy */

int shmd_btree_create(shmd_store_t *s, shmd_btree_order_t order, shmd_ptr_t *out) {
  if (!order_valid((uint32_t)order))
    return SHMD_EINVAL;
  shmd_tx_t *tx;
  SHMD_TRY(shmd_tx_begin(s, &tx));
  shmd_ptr_t p, r;
  int rc = shmd_tx_calloc(tx, sizeof(bt_hdr_t), &p);
  if (rc) {
    (void)shmd_tx_commit(tx);
    return rc;
  }
  rc = shmd_tx_calloc(tx, NODE_BYTES, &r);
  if (rc) {
    shmd_tx_abort(tx);
    return rc;
  }
  node_t *root = (node_t *)shmd_resolve(s, r);
  root->mark = NODE_MARK;
  bt_hdr_t *h = (bt_hdr_t *)shmd_resolve(s, p);
  shmd_lock_init(&h->lock);
  h->order = (uint32_t)order;
  h->height = 1;
  h->root = r;
  h->count = 0;
  __atomic_store_n(&h->magic, BTREE_MAGIC, __ATOMIC_RELEASE);
  rc = shmd_tx_commit(tx);
  if (rc == 0)
    *out = p;
  return rc;
}

/* One step of destroy: the cost of removing the smallest entries, from the leftmost path.
 * Either the whole leftmost leaf at once (when its parent can lose a child without falling under
 * the minimum: the parent's slots shift left, the ancestors' first counts drop), or the smallest
 * entry through delete_entry(). The costs are upper bounds for this very path: a level whose
 * first child is at the minimum is topped up (borrow or merge: at most 180 undo words, one
 * separator copy and two frees), any other level changes one count word. */
static int destroy_plan(const map_t *m, size_t max_entries, dplan_t *pl) {
  nref_t cur, par = {{0}, NULL};
  SHMD_TRY(root_at(m, &cur));
  size_t words = 0, allocs = 0, frees = 0;
  for (unsigned d = 0; cur.a->level > 0; d++) {
    if (d >= MAX_DEPTH)
      return SHMD_CORRUPT_RC("btree: tree too deep");
    nref_t c;
    SHMD_TRY(child_at(m, &cur, 0, &c));
    if (c.a->n <= MINF) {
      words += 180 + 2;
      allocs += 1;
      frees += 3;
    } else {
      words += 1;
    }
    par = cur;
    cur = c;
  }
  unsigned ln = cur.a->n;
  if (ln == 0)
    return SHMD_CORRUPT_RC("btree: empty leaf in a non-empty tree");
  int root_par = par.a != NULL && par.p.v == m->h->root.v;
  if (par.a != NULL && ln <= max_entries && par.a->n > (root_par ? 2u : MINF)) {
    pl->bulk = 1;
    pl->entries = ln;
    pl->words = 1 + 7 * (size_t)par.a->n + m->h->height + 2;
    pl->allocs = 0;
    pl->frees = 2 * (size_t)ln + 2;
    return 0;
  }
  pl->bulk = 0;
  pl->entries = 1;
  pl->words = words + 1 + 7 * (size_t)ln + 2;
  pl->allocs = allocs;
  pl->frees = frees + 2;
  return 0;
}

/* Removes the whole leftmost leaf (destroy_plan said it can). */
static int remove_leftmost_leaf(map_t *m, uint64_t *removed) {
  path_t pa;
  nref_t cur;
  SHMD_TRY(root_at(m, &cur));
  unsigned d = 0;
  for (;; d++) {
    if (d >= MAX_DEPTH)
      return SHMD_CORRUPT_RC("btree: tree too deep");
    pa.nd[d] = cur;
    pa.idx[d] = 0;
    if (cur.a->level == 0)
      break;
    nref_t c;
    SHMD_TRY(child_at(m, &cur, 0, &c));
    cur = c;
  }
  if (d == 0)
    return SHMD_CORRUPT_RC("btree: bulk removal from a root leaf");
  const node_t *l = cur.a;
  nref_t *P = &pa.nd[d - 1];
  node_t *p = P->a;
  uint64_t k = l->n;
  for (unsigned i = 0; i < l->n; i++)
    SHMD_TRY(ent_drop(m, l, i));
  m->dirty = 1;
  SHMD_TRY(shmd_tx_free(m->tx, cur.p));
  SHMD_TRY(log_slots(m, P, 0, p->n));
  SHMD_TRY(sep_drop(m, &p->key[1])); /* child 1 becomes child 0: its separator goes */
  slots_copy(p, 0, p, 1, p->n - 1u);
  memset(&p->key[0], 0, sizeof(kslot_t));
  p->abbr[0] = 0;
  p->n--;
  slot_clear(p, p->n);
  for (unsigned a = 0; a + 1 < d; a++)
    SHMD_TRY(set_word(m, &pa.nd[a], &pa.nd[a].a->cnt[0], pa.nd[a].a->cnt[0] - k));
  *removed = k;
  return hdr_set(m, &m->h->count, m->h->count - k);
}

/* The destroy steps of omap.h's driver: the whole leftmost leaf where destroy_plan() says it can
 * go at once, else one entry through delete_entry(). */
static int destroy_plan_cb(void *map, uint64_t left, size_t max, size_t *words, size_t *allocs, size_t *frees) {
  (void)left;
  map_t *m = map;
  SHMD_TRY(destroy_plan(m, max, &m->plan));
  *words = m->plan.words;
  *allocs = m->plan.allocs;
  *frees = m->plan.frees;
  return 0;
}

static int destroy_one(void *map, uint64_t *removed) {
  map_t *m = map;
  m->nfresh = 0;
  *removed = 1;
  SHMD_TRY(m->plan.bulk ? remove_leftmost_leaf(m, removed) : delete_entry(m, NULL));
  SHMD_CRASH_POINT("btree.destroy.removed");
  return 0;
}

static int destroy_finish(void *map) {
  map_t *m = map;
  nref_t root;
  SHMD_TRY(root_at(m, &root));
  if (root.a->level != 0 || root.a->n != 0)
    return SHMD_CORRUPT_RC("btree: empty tree with a non-empty root");
  SHMD_TRY(hdr_set(m, &m->h->magic, 0));
  SHMD_TRY(shmd_tx_free(m->tx, root.p));
  return shmd_tx_free(m->tx, m->tree);
}

static const shmd__destroy_ops_t destroy_ops = {destroy_plan_cb, destroy_one, destroy_finish, 2, 2};

int shmd_btree_destroy_step(shmd_store_t *s, shmd_ptr_t tree, size_t max_entries,
                            uint64_t *remaining) {
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  int doom = 0;
  int rc = shmd__omap_destroy_step(m.tx, &m, &destroy_ops, m.h->count, max_entries, remaining, &doom);
  m.dirty |= doom;
  return map_close(&m, rc);
}

int shmd_btree_destroy(shmd_store_t *s, shmd_ptr_t tree) {
  return shmd__omap_destroy(s, tree, shmd_btree_destroy_step);
}

/* ---------------------------------------------------------------------------------------------- */
/* Small reads */

int shmd_btree_order(shmd_store_t *s, shmd_ptr_t tree, shmd_btree_order_t *out) {
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  *out = (shmd_btree_order_t)m.order;
  return map_close(&m, 0);
}

int shmd_btree_len(shmd_store_t *s, shmd_ptr_t tree, uint64_t *out) {
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  *out = m.h->count;
  return map_close(&m, 0);
}

/* ---------------------------------------------------------------------------------------------- */
/* Put, get, delete, rank */

int shmd_btree_put(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                   const void *val, size_t val_len, int mode, int *inserted) {
  if (mode != SHMD_BTREE_UPSERT && mode != SHMD_BTREE_NX && mode != SHMD_BTREE_XX)
    return SHMD_EINVAL;
  if (val == NULL && val_len != 0)
    return SHMD_EINVAL;
  if (val_len > SHMD_BTREE_LEN_MAX)
    return SHMD_ETOOBIG;
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  qk_t q;
  int rc = qk_make(m.order, key, key_len, &q);
  nref_t leaf;
  unsigned pos;
  int eq;
  uint64_t below;
  if (rc == 0)
    rc = find(&m, &q, NULL, &leaf, &pos, &eq, &below);
  if (rc == 0) {
    if (eq) {
      if (mode == SHMD_BTREE_NX)
        rc = SHMD_EEXIST;
      else
        rc = update_value(&m, &leaf, pos, val, val_len);
      if (rc == 0 && inserted)
        *inserted = 0;
    } else {
      if (mode == SHMD_BTREE_XX)
        rc = SHMD_ENOTFOUND;
      else
        rc = insert_new(&m, &q, val, val_len);
      if (rc == 0 && inserted)
        *inserted = 1;
    }
  }
  return map_close(&m, rc);
}

int shmd_btree_get(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len, void *val,
                   size_t val_cap, size_t *val_len) {
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  qk_t q;
  nref_t leaf;
  unsigned pos;
  int eq;
  uint64_t below;
  int rc = qk_make(m.order, key, key_len, &q);
  if (rc == 0)
    rc = find(&m, &q, NULL, &leaf, &pos, &eq, &below);
  if (rc == 0 && !eq)
    rc = SHMD_ENOTFOUND;
  if (rc == 0) {
    const unsigned char *v;
    size_t vl;
    rc = val_view(&m, leaf.a, pos, &v, &vl);
    if (rc == 0) {
      if (val != NULL && val_cap)
        memcpy(val, v, vl < val_cap ? vl : val_cap);
      if (val_len)
        *val_len = vl;
    }
  }
  return map_close(&m, rc);
}

int shmd_btree_delete(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len) {
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  qk_t q;
  nref_t leaf;
  unsigned pos;
  int eq;
  uint64_t below;
  int rc = qk_make(m.order, key, key_len, &q);
  if (rc == 0)
    rc = find(&m, &q, NULL, &leaf, &pos, &eq, &below);
  if (rc == 0 && !eq)
    rc = SHMD_ENOTFOUND;
  if (rc == 0)
    rc = delete_entry(&m, &q);
  return map_close(&m, rc);
}

int shmd_btree_rank(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                    uint64_t *rank) {
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  qk_t q;
  nref_t leaf;
  unsigned pos;
  int eq;
  uint64_t below;
  int rc = qk_make(m.order, key, key_len, &q);
  if (rc == 0)
    rc = find(&m, &q, NULL, &leaf, &pos, &eq, &below);
  if (rc == 0 && !eq)
    rc = SHMD_ENOTFOUND;
  if (rc == 0)
    *rank = below;
  return map_close(&m, rc);
}

int shmd_btree_count_below(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                           int inclusive, uint64_t *count) {
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  qk_t q;
  nref_t leaf;
  unsigned pos;
  int eq;
  uint64_t below;
  int rc = qk_make(m.order, key, key_len, &q);
  if (rc == 0)
    rc = find(&m, &q, NULL, &leaf, &pos, &eq, &below);
  if (rc == 0)
    *count = below + (inclusive && eq);
  return map_close(&m, rc);
}

/* ---------------------------------------------------------------------------------------------- */
/* Positional reads */

int shmd_btree_select(shmd_store_t *s, shmd_ptr_t tree, uint64_t index, shmd_btree_item_t *item) {
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  int rc = 0;
  if (index >= m.h->count) {
    rc = SHMD_ENOTFOUND;
  } else {
    path_t pa;
    rc = select_path(&m, index, &pa);
    if (rc == 0)
      rc = item_fill(&m, pa.nd[pa.depth - 1].a, pa.idx[pa.depth - 1], index, item);
  }
  return map_close(&m, rc);
}

/* The rank `how` picks for q (may be -1 or count: none). */
static int seek_rank(const map_t *m, const qk_t *q, int how, nref_t *leaf, unsigned *pos,
                     int64_t *target) {
  int eq;
  uint64_t below;
  SHMD_TRY(find(m, q, NULL, leaf, pos, &eq, &below));
  int64_t r = (int64_t)below;
  switch (how) {
  case SHMD_BTREE_GE: break;
  case SHMD_BTREE_GT: r += eq; break;
  case SHMD_BTREE_LE: r += eq - 1; break;
  default: r -= 1; break;
  }
  /* Position of the target inside the leaf found, for the common case that it is there. */
  *pos = (unsigned)((int64_t)*pos + (r - (int64_t)below));
  *target = r;
  return 0;
}

int shmd_btree_seek(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                    shmd_btree_seek_t how, shmd_btree_item_t *item) {
  if ((unsigned)how > SHMD_BTREE_LT)
    return SHMD_EINVAL;
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  qk_t q;
  nref_t leaf;
  unsigned pos;
  int64_t r;
  int rc = qk_make(m.order, key, key_len, &q);
  if (rc == 0)
    rc = seek_rank(&m, &q, (int)how, &leaf, &pos, &r);
  if (rc == 0 && (r < 0 || (uint64_t)r >= m.h->count))
    rc = SHMD_ENOTFOUND;
  if (rc == 0) {
    if (pos < leaf.a->n) { /* (unsigned wrap-around covers pos -1) */
      rc = item_fill(&m, leaf.a, pos, (uint64_t)r, item);
    } else {
      path_t pa;
      rc = select_path(&m, (uint64_t)r, &pa);
      if (rc == 0)
        rc = item_fill(&m, pa.nd[pa.depth - 1].a, pa.idx[pa.depth - 1], (uint64_t)r, item);
    }
  }
  return map_close(&m, rc);
}

int shmd_btree_lower_bound(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                           shmd_btree_item_t *item) {
  return shmd_btree_seek(s, tree, key, key_len, SHMD_BTREE_GE, item);
}
int shmd_btree_upper_bound(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                           shmd_btree_item_t *item) {
  return shmd_btree_seek(s, tree, key, key_len, SHMD_BTREE_GT, item);
}
int shmd_btree_next(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                    shmd_btree_item_t *item) {
  return shmd_btree_seek(s, tree, key, key_len, SHMD_BTREE_GT, item);
}
int shmd_btree_prev(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                    shmd_btree_item_t *item) {
  return shmd_btree_seek(s, tree, key, key_len, SHMD_BTREE_LT, item);
}

static int first_last(shmd_store_t *s, shmd_ptr_t tree, int last, shmd_btree_item_t *item) {
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  uint64_t n = m.h->count;
  int rc = 0;
  if (n == 0) {
    rc = SHMD_ENOTFOUND;
  } else {
    path_t pa;
    uint64_t r = last ? n - 1 : 0;
    rc = select_path(&m, r, &pa);
    if (rc == 0)
      rc = item_fill(&m, pa.nd[pa.depth - 1].a, pa.idx[pa.depth - 1], r, item);
  }
  return map_close(&m, rc);
}

int shmd_btree_first(shmd_store_t *s, shmd_ptr_t tree, shmd_btree_item_t *item) {
  return first_last(s, tree, 0, item);
}
int shmd_btree_last(shmd_store_t *s, shmd_ptr_t tree, shmd_btree_item_t *item) {
  return first_last(s, tree, 1, item);
}

/* ---------------------------------------------------------------------------------------------- */
/* Walks */

/* Visits up to max entries from rank `rank` (< count), ascending or descending. */
static int walk_from(const map_t *m, uint64_t rank, size_t max, int reverse,
                     shmd_btree_visit_fn fn, void *arg, size_t *visited) {
  size_t done = 0;
  uint64_t n = m->h->count;
  path_t pa;
  int rc = max > 0 ? select_path(m, rank, &pa) : 0;
  while (rc == 0 && done < max) {
    if (done >= n) {
      rc = SHMD_CORRUPT_RC("btree: walk longer than the tree");
      break;
    }
    const node_t *a = pa.nd[pa.depth - 1].a;
    unsigned i = pa.idx[pa.depth - 1];
    const unsigned char *k, *v;
    size_t kl, vl;
    if ((rc = slot_key(m->s, &a->key[i], &k, &kl)) || (rc = val_view(m, a, i, &v, &vl)))
      break;
    done++;
    if ((rc = fn(k, kl, v, vl, rank, arg)))
      break;
    if (done == max)
      break;
    rc = path_step(m, &pa, reverse);
    if (rc == SHMD_ENOTFOUND) {
      rc = 0;
      break;
    }
    rank = reverse ? rank - 1 : rank + 1;
  }
  if (visited)
    *visited = done;
  return rc;
}

int shmd_btree_walk_rank(shmd_store_t *s, shmd_ptr_t tree, uint64_t start, size_t max,
                         int reverse, shmd_btree_visit_fn fn, void *arg, size_t *visited) {
  if (fn == NULL)
    return SHMD_EINVAL;
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  int rc = 0;
  if (start < m.h->count) {
    rc = walk_from(&m, start, max, reverse, fn, arg, visited);
  } else if (visited) {
    *visited = 0;
  }
  return map_close(&m, rc);
}

int shmd_btree_walk_key(shmd_store_t *s, shmd_ptr_t tree, const void *key, size_t key_len,
                        shmd_btree_seek_t how, size_t max, shmd_btree_visit_fn fn, void *arg,
                        size_t *visited) {
  if (fn == NULL || (unsigned)how > SHMD_BTREE_LT)
    return SHMD_EINVAL;
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  qk_t q;
  nref_t leaf;
  unsigned pos;
  int64_t r = -1;
  int rc = qk_make(m.order, key, key_len, &q);
  if (rc == 0)
    rc = seek_rank(&m, &q, (int)how, &leaf, &pos, &r);
  if (rc == 0 && r >= 0 && (uint64_t)r < m.h->count)
    rc = walk_from(&m, (uint64_t)r, max, how == SHMD_BTREE_LE || how == SHMD_BTREE_LT, fn, arg,
                   visited);
  else if (visited)
    *visited = 0;
  return map_close(&m, rc);
}

/* ---------------------------------------------------------------------------------------------- */
/* Checker */

typedef struct kview_s {
  const unsigned char *k;
  size_t kl;
  int set;
} kview_t;

typedef struct ck_s {
  map_t *m;
  uint64_t nodes, max_nodes;
} ck_t;

/* Compares two stored (valid, normalised) keys. */
static int view_cmp(uint32_t order, const kview_t *a, const kview_t *b) {
  size_t off = 0;
  if (order == SHMD_BTREE_I64) {
    int64_t x, y;
    memcpy(&x, a->k, 8);
    memcpy(&y, b->k, 8);
    return (x > y) - (x < y);
  }
  if (order == SHMD_BTREE_DOUBLE || order == SHMD_BTREE_DOUBLE_BYTES) {
    double x, y;
    memcpy(&x, a->k, 8);
    memcpy(&y, b->k, 8);
    if (x != y)
      return x < y ? -1 : 1;
    if (order == SHMD_BTREE_DOUBLE)
      return 0;
    off = 8;
  }
  return shmd__bytes_cmp(a->k + off, a->kl - off, b->k + off, b->kl - off);
}

static int check_ool(shmd_store_t *s, shmd_ptr_t p, size_t len) {
  const unsigned char *b;
  SHMD_TRY(ool_view(s, p, len, &b));
  size_t usable = shmd_usable_size(s, p);
  if (usable < len || usable == 0)
    return SHMD_CORRUPT_RC("btree: out-of-line bytes are not an allocated block of their length");
  return 0;
}

/* Checks key slot i of a node and returns its view. */
static int check_slot(ck_t *k, const node_t *a, unsigned i, kview_t *out) {
  map_t *m = k->m;
  uint32_t order = m->order;
  const kslot_t *ks = &a->key[i];
  uint32_t klw = ks->klen;
  size_t kl = klw & LEN_MASK;
  if ((klw & OOL) ? kl <= KA : kl > KA)
    return SHMD_CORRUPT_RC("btree: key stored inline / out of line against its length");
  switch (order) {
  case SHMD_BTREE_I64:
  case SHMD_BTREE_DOUBLE:
    if (klw != 8)
      return SHMD_CORRUPT_RC("btree: numeric key is not 8 inline bytes");
    break;
  case SHMD_BTREE_DOUBLE_BYTES:
    if (kl < 8)
      return SHMD_CORRUPT_RC("btree: score-member key shorter than 8 bytes");
    break;
  default:
    break;
  }
  if (klw & OOL) {
    SHMD_TRY(check_ool(m->s, area_ptr(ks), kl));
  } else {
    for (size_t j = kl; j < KA; j++)
      if (ks->area[j] != 0)
        return SHMD_CORRUPT_RC("btree: bytes after an inline key are not zero");
  }
  SHMD_TRY(slot_key(m->s, ks, &out->k, &out->kl));
  if ((klw & OOL) && memcmp(out->k, ks->area, KP) != 0)
    return SHMD_CORRUPT_RC("btree: key prefix differs from the out-of-line key");
  if (order == SHMD_BTREE_DOUBLE || order == SHMD_BTREE_DOUBLE_BYTES) {
    double d;
    memcpy(&d, out->k, 8);
    if (isnan(d) || (d == 0 && signbit(d)))
      return SHMD_CORRUPT_RC("btree: NaN or -0.0 key");
  }
  if (a->abbr[i] != abbr_key(order, out->k, out->kl))
    return SHMD_CORRUPT_RC("btree: key abbreviation differs from the key");
  out->set = 1;
  if (a->level == 0) {
    uint32_t vlw = ks->vlen;
    size_t vl = vlw & LEN_MASK;
    if ((vlw & OOL) ? vl <= VI : vl > VI)
      return SHMD_CORRUPT_RC("btree: value stored inline / out of line against its length");
    if (vlw & OOL) {
      SHMD_TRY(check_ool(m->s, mkptr(a->ref[i]), vl));
    } else {
      const unsigned char *b = (const unsigned char *)&a->ref[i];
      for (size_t j = vl; j < 8; j++)
        if (b[j] != 0)
          return SHMD_CORRUPT_RC("btree: bytes after an inline value are not zero");
    }
  } else if (ks->vlen != 0) {
    return SHMD_CORRUPT_RC("btree: separator with a value length");
  }
  return 0;
}

static int check_node(ck_t *k, shmd_ptr_t p, unsigned level, const kview_t *lo, const kview_t *hi,
                      int is_root, uint64_t *count) {
  map_t *m = k->m;
  uint32_t order = m->order;
  if (++k->nodes > k->max_nodes)
    return SHMD_CORRUPT_RC("btree: more nodes than the store can hold");
  void *addr;
  if ((p.v & 7u) != 0 || shmd_resolve_checked(m->s, p, NODE_BYTES, &addr))
    return SHMD_CORRUPT_RC("btree: node outside the store");
  if (shmd_usable_size(m->s, p) < NODE_BYTES)
    return SHMD_CORRUPT_RC("btree: node is not an allocated block of a node's size");
  const node_t *a = (const node_t *)addr;
  if (a->mark != NODE_MARK || a->reserved != 0)
    return SHMD_CORRUPT_RC("btree: bad node mark");
  if (a->level != level)
    return SHMD_CORRUPT_RC("btree: node level differs from its depth (leaves at different depths)");
  unsigned n = a->n;
  if (n > CAP)
    return SHMD_CORRUPT_RC("btree: node fill over its capacity");
  if (is_root ? (level > 0 && n < 2) : n < MINF)
    return SHMD_CORRUPT_RC("btree: node fill under the minimum");
  kview_t prev = {NULL, 0, 0};
  uint64_t total = 0;
  for (unsigned i = 0; i < n; i++) {
    kview_t v = {NULL, 0, 0};
    if (level > 0 && i == 0) {
      const kslot_t *ks = &a->key[0];
      if (ks->klen != 0 || ks->vlen != 0 || a->abbr[0] != 0)
        return SHMD_CORRUPT_RC("btree: first slot of an internal node holds a key");
    } else {
      SHMD_TRY(check_slot(k, a, i, &v));
      if (prev.set && view_cmp(order, &prev, &v) >= 0)
        return SHMD_CORRUPT_RC("btree: keys out of order");
      if (lo->set && view_cmp(order, &v, lo) < 0)
        return SHMD_CORRUPT_RC("btree: key below its subtree's separator");
      if (hi->set && view_cmp(order, &v, hi) >= 0)
        return SHMD_CORRUPT_RC("btree: key not below the next separator");
      prev = v;
    }
  }
  if (level == 0) {
    *count = n;
    return 0;
  }
  for (unsigned i = 0; i < n; i++) {
    kview_t clo = *lo, chi = *hi;
    if (i > 0) {
      SHMD_TRY(slot_key(m->s, &a->key[i], &clo.k, &clo.kl));
      clo.set = 1;
    }
    if (i + 1 < n) {
      SHMD_TRY(slot_key(m->s, &a->key[i + 1], &chi.k, &chi.kl));
      chi.set = 1;
    }
    uint64_t c;
    SHMD_TRY(check_node(k, mkptr(a->ref[i]), level - 1, &clo, &chi, 0, &c));
    if (c != a->cnt[i])
      return SHMD_CORRUPT_RC("btree: subtree count differs from the entries below");
    if (c == 0)
      return SHMD_CORRUPT_RC("btree: empty subtree");
    total += c;
  }
  *count = total;
  return 0;
}

static int btree_check_body(shmd_store_t *s, shmd_ptr_t tree) {
  map_t m;
  SHMD_TRY(map_open(s, tree, &m));
  int rc = 0;
  if (m.h->reserved[0] | m.h->reserved[1] | m.h->reserved[2])
    rc = SHMD_CORRUPT_RC("btree: reserved header words are not zero");
  shmd_store_info_t info;
  if (rc == 0)
    rc = shmd_store_info(s, &info);
  if (rc == 0) {
    ck_t k = {&m, 0, info.store_bytes / NODE_BYTES + 1};
    kview_t none = {NULL, 0, 0};
    uint64_t count;
    rc = check_node(&k, m.h->root, m.h->height - 1, &none, &none, 1, &count);
    if (rc == 0 && count != m.h->count)
      rc = SHMD_CORRUPT_RC("btree: entry count in the header differs from the tree");
  }
  return map_close(&m, rc);
}

/* The public checker: its lock waits are bounded (segments/lockwait.h). */
int shmd_btree_check(shmd_store_t *s, shmd_ptr_t tree) {
  uint64_t w = shmd__check_wait_begin(s);
  int rc = btree_check_body(s, tree);
  shmd__check_wait_end(s, w);
  return rc;
}
