/* SPDX-License-Identifier: MIT */
/*
 * The keyed list of byte strings (include/shmdict/list.h, part 2), built on the intrusive core
 * shmd_list_node_t (part 1, static inline in the header).
 *
 * Layout. The list header holds the kind word, the list's lock, the sentinel node of a circular
 * doubly linked list, the element count and a removal epoch. Each element is one node:
 *
 *     +------+------+-------------------+---------------------------------------+
 *     | next | prev | len | BLOB flag   | len bytes inline, or a shmd_ptr_t blob |
 *     +------+------+-------------------+---------------------------------------+
 *
 * Elements up to SHMD_LIST_INLINE_MAX bytes live in the node (push is one allocation); longer ones
 * are blobs, so the node stays small and the element could later be handed to another container
 * without a copy.
 *
 * Crash safety. Every operation runs in a transaction holding the list's lock. New nodes are
 * allocated in the transaction and written without logging before they are linked; every link
 * word, the count and the epoch are logged before they change; removed nodes are freed after the
 * commit. A push logs 3 words, a pop 4, whatever the element size.
 *
 * The removal epoch grows whenever nodes are unlinked (pop, LREM, LSET, LTRIM, destroy). A cursor
 * that remembers a node and the epoch can therefore trust that node while the epoch is unchanged:
 * no node is freed without the epoch moving. Iterators and the batched removals use it to resume
 * between transactions in O(1).
 *
 * Batches. A transaction can log 2048 words and defer 512 frees, so removing an unbounded number
 * of elements (LREM with many matches, LTRIM, destroy) takes several transactions when the caller
 * has none open; each batch leaves a valid list. Inside a caller's transaction the removal is
 * counted first and refused with SHMD_ETXFULL if it would not fit, so it stays atomic.
 *
 * Untrusted memory. Every node pointer is resolved with shmd_resolve_checked() before it is read,
 * every walk is bounded by the count, and a walk that meets the sentinel early or a link that does
 * not point back yields SHMD_ECORRUPT.
 *
 * Locks: the list's own lock protects the header and every node. It is a container lock in the
 * store's order (store -> keyspace stripes -> containers -> allocator).
 */
#include "shmdict/list.h"

#include <string.h>

#include "segments/crash.h"
#include "segments/store_int.h" /* shmd__store_bytes: a bound for a damaged count */
#include "shmdict/alloc.h"
#include "shmdict/blob.h"
#include "shmdict/error.h"
#include "shmdict/store.h"
#include "segments/lockwait.h"
#include "cont_int.h"

/* ---------------------------------------------------------------------------------------------- */
/* Layout */

#define LIST_MAGIC SHMD__KIND(0x5453494C) /* "LIST" (containers/cont_int.h) */

#define NODE_BLOB (UINT64_C(1) << 63)
#define ELEM_LEN_MAX (UINT64_C(1) << 47)
/* No list can have more elements than this (each node takes at least 32 bytes of a store of at
 * most 2^64 bytes... in practice far less); a larger count is corruption. */
#define COUNT_MAX (UINT64_C(1) << 58)
#define COUNT_CHEAP (UINT64_C(1) << 20) /* below: no need to compare with the store's size */

/* Undo-log words one logged 8-byte store costs (shmd_tx_room counts logged words), for room estimates. */
#define WORDS_PER_STORE 1u

typedef struct list_hdr_s {
  uint64_t magic;
  shmd_lock_t lock;
  shmd_list_node_t head; /* sentinel */
  uint64_t count;
  uint64_t epoch; /* bumped whenever nodes are unlinked; adjacent to count (one log) */
  uint64_t reserved[2];
} list_hdr_t;

typedef struct lnode_s {
  shmd_list_node_t link;
  uint64_t len_flags; /* length in bytes | NODE_BLOB */
  unsigned char data[]; /* inline bytes, or a shmd_ptr_t to a blob */
} lnode_t;

_Static_assert(sizeof(list_hdr_t) == 64, "list header is 64 bytes");
_Static_assert(offsetof(list_hdr_t, epoch) == offsetof(list_hdr_t, count) + 8, "count, epoch");
_Static_assert(sizeof(lnode_t) == 24, "node header is 24 bytes");
_Static_assert(sizeof(lnode_t) + SHMD_LIST_INLINE_MAX == 4096, "inline node fits 4 KiB");

/* A list entered under its lock. */
typedef struct list_ctx_s {
  shmd_store_t *s;
  shmd_tx_t *tx;
  shmd_ptr_t lp;   /* the list header */
  shmd_ptr_t head; /* the sentinel, lp + offsetof(head) */
  list_hdr_t *h;
  uint64_t count;
  int nested; /* running inside a caller's transaction */
  int dirty;  /* this call changed something (trim batches by it; shmd_tx_end() decides aborts) */
} list_ctx_t;

/* ---------------------------------------------------------------------------------------------- */
/* Entering and leaving */

/* Enters the list (containers/cont_int.h) and checks its count. The caller ends with
 * shmd_tx_end(c->tx, rc). */
static int list_enter(shmd_store_t *s, shmd_ptr_t l, list_ctx_t *c) {
  void *addr;
  c->s = s;
  c->lp = l;
  c->head = shmd_ptr_add(l, offsetof(list_hdr_t, head));
  c->dirty = 0;
  c->nested = shmd_tx_depth(s) > 0;
  int rc = shmd__cont_enter(s, l, sizeof(list_hdr_t), offsetof(list_hdr_t, lock), LIST_MAGIC,
                            "list: header pointer outside the store", "list: bad kind word", &addr, &c->tx);
  if (rc)
    return rc;
  c->h = addr;
  c->count = c->h->count;
  /* Walks are bounded by the count: it must not exceed what the store could hold (a node takes
   * a block of at least 32 bytes), or a cycle would be walked for days. Computed only for big
   * counts, so that ordinary calls do not pay for it. */
  if (c->count > COUNT_MAX || (c->count > COUNT_CHEAP && c->count > shmd__store_bytes(s) / 32))
    return shmd_tx_end(c->tx, SHMD_ECORRUPT);
  return 0;
}

/* Logs count and epoch and sets them; bump_epoch says whether nodes were unlinked. */
static int set_count(list_ctx_t *c, uint64_t count, int bump_epoch) {
  int rc = shmd_tx_log(c->tx, shmd_ptr_add(c->lp, offsetof(list_hdr_t, count)), 16);
  if (rc)
    return rc;
  c->dirty = 1;
  c->h->count = count;
  if (bump_epoch)
    c->h->epoch++;
  c->count = count;
  return 0;
}

static void tx_room(list_ctx_t *c, size_t *words, size_t *frees) {
  size_t allocs;
  shmd_tx_room(c->tx, words, &allocs, frees);
}

/* Grows the transaction so that `words` undo words and `frees` frees fit (an atomic step must not
 * stop half-way): 0, SHMD_ENOSPC or SHMD_ETXFULL. */
static int need_room(list_ctx_t *c, size_t words, size_t frees) {
  return shmd_tx_reserve(c->tx, words, 0, frees);
}

/* ---------------------------------------------------------------------------------------------- */
/* Nodes */

/* The links of `p`, which may be the sentinel; checked. */
static int links_of(list_ctx_t *c, shmd_ptr_t p, shmd_list_node_t **out) {
  if (shmd_ptr_eq(p, c->head)) {
    *out = &c->h->head;
    return 0;
  }
  void *a;
  if ((p.v & 7) || shmd_resolve_checked(c->s, p, sizeof(lnode_t), &a)) /* nodes are 8-aligned */
    return SHMD_ECORRUPT;
  *out = a;
  return 0;
}

/* The element node at `p`: checked, and never the sentinel. */
static int node_get(list_ctx_t *c, shmd_ptr_t p, lnode_t **out) {
  void *a;
  if (shmd_ptr_eq(p, c->head) || (p.v & 7) || shmd_resolve_checked(c->s, p, sizeof(lnode_t), &a))
    return SHMD_ECORRUPT;
  *out = a;
  return 0;
}

static uint64_t node_len(const lnode_t *n) { return n->len_flags & ~NODE_BLOB; }

static int node_is_blob(const lnode_t *n) { return (n->len_flags & NODE_BLOB) != 0; }

static shmd_ptr_t node_blob(const lnode_t *n) {
  shmd_ptr_t b;
  memcpy(&b, n->data, sizeof b);
  return b;
}

/* The bytes of node `p` (resolved as n), bounds-checked. */
static int node_value(list_ctx_t *c, shmd_ptr_t p, lnode_t *n, const void **data, size_t *len) {
  uint64_t l = node_len(n);
  if (l >= ELEM_LEN_MAX)
    return SHMD_ECORRUPT;
  if (node_is_blob(n)) {
    size_t bl;
    int rc = shmd_blob_view(c->s, node_blob(n), data, &bl);
    if (rc)
      return rc;
    if (bl != l)
      return SHMD_ECORRUPT;
    *len = bl;
    return 0;
  }
  if (l > SHMD_LIST_INLINE_MAX)
    return SHMD_ECORRUPT;
  void *a;
  if (shmd_resolve_checked(c->s, p, sizeof(lnode_t) + (size_t)l, &a))
    return SHMD_ECORRUPT;
  *data = ((lnode_t *)a)->data;
  *len = (size_t)l;
  return 0;
}

/* Whether node `p` holds exactly `len` bytes equal to `data`. */
static int node_equals(list_ctx_t *c, shmd_ptr_t p, lnode_t *n, const void *data, size_t len,
                       int *eq) {
  *eq = 0;
  if (node_len(n) != (uint64_t)len)
    return 0;
  const void *d;
  size_t l;
  int rc = node_value(c, p, n, &d, &l);
  if (rc)
    return rc;
  *eq = len == 0 || memcmp(d, data, len) == 0;
  return 0;
}

/* Frees one node needs (1, or 2 with a blob). */
static size_t node_frees(const lnode_t *n) { return node_is_blob(n) ? 2 : 1; }

/* Allocates and fills a node for `len` bytes (fresh memory: no log). */
static int node_new(list_ctx_t *c, const void *data, size_t len, shmd_ptr_t *out) {
  if ((uint64_t)len >= ELEM_LEN_MAX)
    return SHMD_ETOOBIG;
  shmd_ptr_t p, b = shmd_ptr_null();
  int rc;
  if (len > SHMD_LIST_INLINE_MAX) {
    if ((rc = shmd_blob_create(c->tx, data, len, &b)))
      return rc;
    c->dirty = 1;
  }
  size_t bytes = sizeof(lnode_t) + (shmd_ptr_is_null(b) ? len : sizeof(shmd_ptr_t));
  if ((rc = shmd_tx_alloc(c->tx, bytes, &p)))
    return rc;
  c->dirty = 1;
  lnode_t *n = shmd_resolve(c->s, p);
  if (shmd_ptr_is_null(b)) {
    n->len_flags = len;
    if (len)
      memcpy(n->data, data, len);
  } else {
    n->len_flags = (uint64_t)len | NODE_BLOB;
    memcpy(n->data, &b, sizeof b);
  }
  *out = p;
  return 0;
}

/* Frees node `p` (and its blob) at commit. */
static int node_free(list_ctx_t *c, shmd_ptr_t p, const lnode_t *n) {
  int rc;
  if (node_is_blob(n) && (rc = shmd_tx_free(c->tx, node_blob(n))))
    return rc;
  return shmd_tx_free(c->tx, p);
}

/* ---------------------------------------------------------------------------------------------- */
/* Walks */

/* The neighbour of `p` (sentinel allowed) towards the tail (back == 0) or the head. */
static int step(list_ctx_t *c, shmd_ptr_t p, int back, shmd_ptr_t *out) {
  shmd_list_node_t *l;
  int rc = links_of(c, p, &l);
  if (rc)
    return rc;
  *out = back ? l->prev : l->next;
  return 0;
}

/* The node at index idx (0 <= idx < count), walking from the closer end. */
static int walk_to(list_ctx_t *c, uint64_t idx, shmd_ptr_t *out) {
  int back = idx >= c->count / 2;
  uint64_t steps = back ? c->count - idx : idx + 1;
  shmd_ptr_t p = c->head;
  for (uint64_t i = 0; i < steps; i++) {
    int rc = step(c, p, back, &p);
    if (rc)
      return rc;
    if (shmd_ptr_eq(p, c->head))
      return SHMD_ECORRUPT; /* fewer nodes than the count says */
  }
  *out = p;
  return 0;
}

/* Redis index normalisation: a negative index counts from the tail. Returns 0 with *out in
 * [0, count), or SHMD_ENOTFOUND when out of range. */
static int norm_index(int64_t index, uint64_t count, uint64_t *out) {
  if (index < 0) {
    if ((uint64_t)-(index + 1) >= count)
      return SHMD_ENOTFOUND;
    *out = count - (uint64_t)-(index + 1) - 1;
    return 0;
  }
  if ((uint64_t)index >= count)
    return SHMD_ENOTFOUND;
  *out = (uint64_t)index;
  return 0;
}

/* Redis range normalisation (LRANGE / LTRIM): *first and *n describe the clamped, inclusive range
 * [start, stop]; *n == 0 for an empty one. */
static void norm_range(int64_t start, int64_t stop, uint64_t count, uint64_t *first, uint64_t *n) {
  int64_t len = (int64_t)count;
  if (start < 0)
    start = start < -len ? 0 : start + len;
  if (stop < 0)
    stop = stop < -len ? -1 : stop + len;
  if (stop >= len)
    stop = len - 1;
  if (start > stop || start >= len) {
    *first = 0;
    *n = 0;
    return;
  }
  *first = (uint64_t)start;
  *n = (uint64_t)(stop - start) + 1;
}

/* ---------------------------------------------------------------------------------------------- */
/* Removal of runs at the ends (LTRIM, destroy) */

/*
 * Unlinks and frees up to `k` nodes at the head (back == 0) or the tail, as many as the
 * transaction's frees allow; *done receives how many. Logs 4 words whatever the number.
 */
static int cut_end(list_ctx_t *c, int back, uint64_t k, uint64_t *done) {
  size_t words, frees;
  tx_room(c, &words, &frees);
  *done = 0;
  if (k == 0)
    return 0;
  if (words < 4 * WORDS_PER_STORE + 4)
    return SHMD_ETXFULL;
  shmd_ptr_t p = c->head;
  uint64_t n = 0;
  int rc;
  while (n < k) {
    shmd_ptr_t q;
    lnode_t *node;
    if ((rc = step(c, p, back, &q)) || (rc = node_get(c, q, &node)))
      return rc;
    if (node_frees(node) > frees)
      break;
    frees -= node_frees(node);
    if ((rc = node_free(c, q, node)))
      return rc;
    c->dirty = 1;
    p = q;
    n++;
  }
  if (n == 0)
    return SHMD_ETXFULL;
  /* The run is head.next .. p (front) or p .. head.prev (back), in next order. */
  shmd_ptr_t first = back ? p : c->h->head.next, last = back ? c->h->head.prev : p;
  if ((rc = shmd_list_del_range(c->tx, c->s, first, last)))
    return rc;
  SHMD_CRASH_POINT("list.unlink");
  if ((rc = set_count(c, c->count - n, 1)))
    return rc;
  *done = n;
  return 0;
}

/* Frees counted for removing `k` nodes from one end (walks them; checked). */
static int count_end_frees(list_ctx_t *c, int back, uint64_t k, size_t *frees) {
  shmd_ptr_t p = c->head;
  for (uint64_t i = 0; i < k; i++) {
    lnode_t *n;
    int rc;
    if ((rc = step(c, p, back, &p)) || (rc = node_get(c, p, &n)))
      return rc;
    *frees += node_frees(n);
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Public API: create, destroy, length */

int shmd_list_create(shmd_store_t *s, shmd_ptr_t *out) {
  shmd_tx_t *tx;
  int rc = shmd_tx_begin(s, &tx);
  if (rc)
    return rc;
  shmd_ptr_t lp;
  if ((rc = shmd_tx_calloc(tx, sizeof(list_hdr_t), &lp))) {
    shmd_tx_abort(tx);
    return rc;
  }
  list_hdr_t *h = shmd_resolve(s, lp);
  shmd_lock_init(&h->lock);
  shmd_list_init(s, shmd_ptr_add(lp, offsetof(list_hdr_t, head)));
  h->count = 0;
  h->epoch = 0;
  __atomic_store_n(&h->magic, LIST_MAGIC, __ATOMIC_RELEASE);
  if ((rc = shmd_tx_commit(tx)))
    return rc;
  *out = lp;
  return 0;
}

int shmd_list_destroy(shmd_store_t *s, shmd_ptr_t l) {
  for (;;) {
    list_ctx_t c;
    int rc = list_enter(s, l, &c);
    if (rc)
      return rc;
    if (c.nested) {
      /* Atomic: everything in the caller's transaction, or nothing. */
      size_t need = 1;
      if ((rc = count_end_frees(&c, 0, c.count, &need)) ||
          (rc = need_room(&c, 6 * WORDS_PER_STORE + 4, need)))
        return shmd_tx_end(c.tx, rc);
    }
    if (c.count > 0) {
      uint64_t done;
      if ((rc = cut_end(&c, 0, c.count, &done)))
        return shmd_tx_end(c.tx, rc);
      if (!c.nested) { /* one batch per transaction: each leaves a shorter, valid list */
        if ((rc = shmd_tx_end(c.tx, 0)))
          return rc;
        continue;
      }
    }
    if ((rc = need_room(&c, WORDS_PER_STORE, 1)) == 0 && (rc = shmd_tx_set64(c.tx, &c.h->magic, 0)) == 0) {
      c.dirty = 1;
      rc = shmd_tx_free(c.tx, l);
    }
    return shmd_tx_end(c.tx, rc);
  }
}

int shmd_list_len(shmd_store_t *s, shmd_ptr_t l, uint64_t *len) {
  list_ctx_t c;
  int rc = list_enter(s, l, &c);
  if (rc)
    return rc;
  *len = c.count;
  return shmd_tx_end(c.tx, 0);
}

/* ---------------------------------------------------------------------------------------------- */
/* Public API: push, pop, index, range, set, insert */

int shmd_list_push(shmd_store_t *s, shmd_ptr_t l, int where, const void *data, size_t len,
                   uint64_t *new_len) {
  if (where != SHMD_LIST_HEAD && where != SHMD_LIST_TAIL)
    return SHMD_EINVAL;
  if ((uint64_t)len >= ELEM_LEN_MAX)
    return SHMD_ETOOBIG;
  list_ctx_t c;
  int rc = list_enter(s, l, &c);
  if (rc)
    return rc;
  shmd_ptr_t node;
  if ((rc = node_new(&c, data, len, &node)))
    return shmd_tx_end(c.tx, rc);
  SHMD_CRASH_POINT("list.push.alloced");
  shmd_list_node_t *hl = &c.h->head;
  shmd_ptr_t prev = where == SHMD_LIST_HEAD ? c.head : hl->prev;
  shmd_ptr_t next = where == SHMD_LIST_HEAD ? hl->next : c.head;
  shmd_list_node_t *tmp;
  /* The neighbour is about to be written through the unchecked core: check it first. */
  if ((rc = links_of(&c, where == SHMD_LIST_HEAD ? next : prev, &tmp)))
    return shmd_tx_end(c.tx, rc);
  if ((rc = shmd_list_link(c.tx, s, node, prev, next, SHMD_LIST_NEW)))
    return shmd_tx_end(c.tx, rc);
  SHMD_CRASH_POINT("list.push.linked");
  if ((rc = set_count(&c, c.count + 1, 0)))
    return shmd_tx_end(c.tx, rc);
  if (new_len != NULL)
    *new_len = c.count;
  return shmd_tx_end(c.tx, 0);
}

/* Unlinks and frees the node p (resolved n), one element. */
static int remove_node(list_ctx_t *c, shmd_ptr_t p, lnode_t *n) {
  int rc = need_room(c, 4 * WORDS_PER_STORE + 4, node_frees(n));
  if (rc)
    return rc;
  shmd_list_node_t *pl, *nl;
  if ((rc = links_of(c, n->link.prev, &pl)) || (rc = links_of(c, n->link.next, &nl)))
    return rc;
  if (!shmd_ptr_eq(pl->next, p) || !shmd_ptr_eq(nl->prev, p))
    return SHMD_ECORRUPT;
  if ((rc = shmd_list_del(c->tx, c->s, p)))
    return rc;
  c->dirty = 1;
  SHMD_CRASH_POINT("list.unlink");
  if ((rc = set_count(c, c->count - 1, 1)))
    return rc;
  return node_free(c, p, n);
}

int shmd_list_pop_fn(shmd_store_t *s, shmd_ptr_t l, int where, shmd_list_visit_fn fn, void *arg) {
  if (where != SHMD_LIST_HEAD && where != SHMD_LIST_TAIL)
    return SHMD_EINVAL;
  list_ctx_t c;
  int rc = list_enter(s, l, &c);
  if (rc)
    return rc;
  if (c.count == 0)
    return shmd_tx_end(c.tx, SHMD_ENOTFOUND);
  shmd_ptr_t p = where == SHMD_LIST_HEAD ? c.h->head.next : c.h->head.prev;
  lnode_t *n;
  if ((rc = node_get(&c, p, &n)))
    return shmd_tx_end(c.tx, rc);
  if (fn != NULL) {
    const void *d;
    size_t len;
    if ((rc = node_value(&c, p, n, &d, &len)) || (rc = fn(d, len, arg)))
      return shmd_tx_end(c.tx, rc);
  }
  return shmd_tx_end(c.tx, remove_node(&c, p, n));
}

/* Copy-out callback for the buffer variants. */
typedef struct copy_arg_s {
  void *buf;
  size_t cap;
  size_t *len;
} copy_arg_t;

static int copy_out(const void *data, size_t len, void *arg) {
  copy_arg_t *a = arg;
  if (a->len != NULL)
    *a->len = len;
  if (a->buf == NULL)
    return 0;
  if (len > a->cap)
    return SHMD_ERANGE;
  if (len)
    memcpy(a->buf, data, len);
  return 0;
}

int shmd_list_pop(shmd_store_t *s, shmd_ptr_t l, int where, void *buf, size_t cap, size_t *len) {
  copy_arg_t a = {buf, cap, len};
  return shmd_list_pop_fn(s, l, where, copy_out, &a);
}

int shmd_list_index(shmd_store_t *s, shmd_ptr_t l, int64_t index, void *buf, size_t cap,
                    size_t *len) {
  list_ctx_t c;
  int rc = list_enter(s, l, &c);
  if (rc)
    return rc;
  uint64_t idx;
  shmd_ptr_t p;
  lnode_t *n;
  const void *d;
  size_t dl;
  if ((rc = norm_index(index, c.count, &idx)) || (rc = walk_to(&c, idx, &p)) ||
      (rc = node_get(&c, p, &n)) || (rc = node_value(&c, p, n, &d, &dl)))
    return shmd_tx_end(c.tx, rc);
  copy_arg_t a = {buf, cap, len};
  return shmd_tx_end(c.tx, copy_out(d, dl, &a));
}

int shmd_list_range(shmd_store_t *s, shmd_ptr_t l, int64_t start, int64_t stop,
                    shmd_list_visit_fn fn, void *arg) {
  list_ctx_t c;
  int rc = list_enter(s, l, &c);
  if (rc)
    return rc;
  uint64_t first, n;
  norm_range(start, stop, c.count, &first, &n);
  if (n == 0)
    return shmd_tx_end(c.tx, 0);
  shmd_ptr_t p;
  if ((rc = walk_to(&c, first, &p)))
    return shmd_tx_end(c.tx, rc);
  for (uint64_t i = 0; i < n; i++) {
    lnode_t *node;
    const void *d;
    size_t dl;
    if ((rc = node_get(&c, p, &node)) || (rc = node_value(&c, p, node, &d, &dl)) ||
        (rc = fn(d, dl, arg)))
      return shmd_tx_end(c.tx, rc);
    p = node->link.next;
  }
  return shmd_tx_end(c.tx, 0);
}

int shmd_list_set(shmd_store_t *s, shmd_ptr_t l, int64_t index, const void *data, size_t len) {
  if ((uint64_t)len >= ELEM_LEN_MAX)
    return SHMD_ETOOBIG;
  list_ctx_t c;
  int rc = list_enter(s, l, &c);
  if (rc)
    return rc;
  uint64_t idx;
  if (norm_index(index, c.count, &idx))
    return shmd_tx_end(c.tx, SHMD_ERANGE);
  shmd_ptr_t p, node;
  lnode_t *old;
  if ((rc = walk_to(&c, idx, &p)) || (rc = node_get(&c, p, &old)))
    return shmd_tx_end(c.tx, rc);
  if ((rc = need_room(&c, 0, node_frees(old))))
    return shmd_tx_end(c.tx, rc);
  shmd_list_node_t *pl, *nl;
  if ((rc = links_of(&c, old->link.prev, &pl)) || (rc = links_of(&c, old->link.next, &nl)))
    return shmd_tx_end(c.tx, rc);
  if ((rc = node_new(&c, data, len, &node)) ||
      (rc = shmd_list_replace(c.tx, s, p, node, SHMD_LIST_NEW)) ||
      (rc = set_count(&c, c.count, 1)) || (rc = node_free(&c, p, old)))
    return shmd_tx_end(c.tx, rc);
  return shmd_tx_end(c.tx, 0);
}

int shmd_list_insert(shmd_store_t *s, shmd_ptr_t l, int after, const void *pivot,
                     size_t pivot_len, const void *data, size_t len, uint64_t *new_len) {
  if ((uint64_t)len >= ELEM_LEN_MAX)
    return SHMD_ETOOBIG;
  list_ctx_t c;
  int rc = list_enter(s, l, &c);
  if (rc)
    return rc;
  shmd_ptr_t p = c.h->head.next;
  for (uint64_t i = 0; i < c.count; i++) {
    lnode_t *n;
    int eq;
    if ((rc = node_get(&c, p, &n)) || (rc = node_equals(&c, p, n, pivot, pivot_len, &eq)))
      return shmd_tx_end(c.tx, rc);
    if (eq) {
      shmd_list_node_t *nb;
      shmd_ptr_t node;
      if ((rc = links_of(&c, after ? n->link.next : n->link.prev, &nb)) ||
          (rc = node_new(&c, data, len, &node)))
        return shmd_tx_end(c.tx, rc);
      SHMD_CRASH_POINT("list.push.alloced");
      rc = after ? shmd_list_link(c.tx, s, node, p, n->link.next, SHMD_LIST_NEW)
                 : shmd_list_link(c.tx, s, node, n->link.prev, p, SHMD_LIST_NEW);
      if (rc || (rc = set_count(&c, c.count + 1, 0)))
        return shmd_tx_end(c.tx, rc);
      if (new_len != NULL)
        *new_len = c.count;
      return shmd_tx_end(c.tx, 0);
    }
    p = n->link.next;
  }
  if (!shmd_ptr_eq(p, c.head))
    return shmd_tx_end(c.tx, SHMD_ECORRUPT);
  return shmd_tx_end(c.tx, SHMD_ENOTFOUND);
}

/* ---------------------------------------------------------------------------------------------- */
/* Public API: LREM and LTRIM */

/*
 * One LREM pass: from `start` (the node before the first to examine, in walk direction; the
 * sentinel to begin at the end), remove up to *left matches (all when all != 0) within the room
 * of the transaction. On return *resume is the last node examined and kept (or the sentinel),
 * *finished says whether the walk reached the end or the quota.
 */
static int rem_pass(list_ctx_t *c, int back, shmd_ptr_t start, const void *data, size_t len,
                    int all, uint64_t *left, uint64_t *removed, shmd_ptr_t *resume,
                    int *finished) {
  size_t words, frees;
  tx_room(c, &words, &frees);
  size_t reserve = 2 * WORDS_PER_STORE + 4; /* count and epoch */
  uint64_t n_removed = 0;
  shmd_ptr_t prev = start, p;
  int rc = step(c, prev, back, &p);
  int full = 0;
  *finished = 0;
  /* Bounded by the count: each iteration examines one node. */
  for (uint64_t guard = 0; rc == 0 && guard <= c->count; guard++) {
    if (shmd_ptr_eq(p, c->head)) {
      *finished = 1;
      break;
    }
    if (!all && *left == 0) {
      *finished = 1;
      break;
    }
    lnode_t *n;
    int eq;
    if ((rc = node_get(c, p, &n)) || (rc = node_equals(c, p, n, data, len, &eq)))
      break;
    shmd_ptr_t next = back ? n->link.prev : n->link.next;
    if (!eq) {
      prev = p;
      p = next;
      continue;
    }
    if (frees < node_frees(n) || words < reserve + 2 * WORDS_PER_STORE) {
      full = 1; /* batch full: the caller commits and comes back */
      break;
    }
    shmd_list_node_t *pl, *nl;
    if ((rc = links_of(c, n->link.prev, &pl)) || (rc = links_of(c, n->link.next, &nl)))
      break;
    if (!shmd_ptr_eq(pl->next, p) || !shmd_ptr_eq(nl->prev, p)) {
      rc = SHMD_ECORRUPT;
      break;
    }
    if ((rc = shmd_list_del(c->tx, c->s, p)))
      break;
    c->dirty = 1;
    SHMD_CRASH_POINT("list.unlink");
    if ((rc = node_free(c, p, n)))
      break;
    frees -= node_frees(n);
    words -= 2 * WORDS_PER_STORE;
    n_removed++;
    if (!all)
      (*left)--;
    p = next;
  }
  if (rc == 0 && !*finished && !full)
    rc = SHMD_ECORRUPT; /* the walk ran past the count without meeting the sentinel */
  if (rc == 0 && full && n_removed == 0)
    rc = SHMD_ETXFULL; /* not even one removal fits */
  if (rc == 0 && n_removed > 0)
    rc = set_count(c, c->count - n_removed, 1);
  if (rc == 0) {
    *removed += n_removed;
    *resume = prev;
  }
  return rc;
}

/* Counts the frees LREM would need (for the atomic, nested case). */
static int rem_count(list_ctx_t *c, int back, const void *data, size_t len, int all, uint64_t left,
                     size_t *frees, uint64_t *matches) {
  shmd_ptr_t p;
  int rc = step(c, c->head, back, &p);
  for (uint64_t i = 0; rc == 0 && i < c->count && (all || *matches < left); i++) {
    lnode_t *n;
    int eq;
    if ((rc = node_get(c, p, &n)) || (rc = node_equals(c, p, n, data, len, &eq)))
      break;
    if (eq) {
      *frees += node_frees(n);
      (*matches)++;
    }
    p = back ? n->link.prev : n->link.next;
  }
  return rc;
}

int shmd_list_rem(shmd_store_t *s, shmd_ptr_t l, int64_t count, const void *data, size_t len,
                  uint64_t *removed) {
  int back = count < 0, all = count == 0;
  uint64_t left = count < 0 ? (uint64_t)-(count + 1) + 1 : (uint64_t)count;
  uint64_t done = 0, epoch = 0;
  shmd_ptr_t resume = shmd_ptr_null();
  int rc;
  if (removed != NULL)
    *removed = 0;
  for (;;) {
    list_ctx_t c;
    if ((rc = list_enter(s, l, &c)))
      break;
    if (c.nested) {
      size_t need = 0;
      uint64_t matches = 0;
      if ((rc = rem_count(&c, back, data, len, all, left, &need, &matches)) == 0)
        rc = need_room(&c, matches * 2 * WORDS_PER_STORE + 2 * WORDS_PER_STORE + 4, need);
      if (rc)
        return shmd_tx_end(c.tx, rc);
    }
    /* Resume after the last kept node if no node was freed since the last batch. */
    shmd_ptr_t start = c.head;
    if (!shmd_ptr_is_null(resume) && c.h->epoch == epoch)
      start = resume;
    int finished;
    uint64_t before = done;
    rc = rem_pass(&c, back, start, data, len, all, &left, &done, &resume, &finished);
    epoch = c.h->epoch;
    if (rc) {
      done = before;
      shmd_tx_end(c.tx, rc);
      break;
    }
    if ((rc = shmd_tx_end(c.tx, 0))) {
      done = before;
      break;
    }
    if (removed != NULL)
      *removed = done;
    if (finished || c.nested)
      return 0;
  }
  if (removed != NULL)
    *removed = done;
  return rc;
}

int shmd_list_trim(shmd_store_t *s, shmd_ptr_t l, int64_t start, int64_t stop) {
  uint64_t ltrim = 0, rtrim = 0;
  int first_batch = 1;
  for (;;) {
    list_ctx_t c;
    int rc = list_enter(s, l, &c);
    if (rc)
      return rc;
    if (first_batch) {
      uint64_t first, n;
      norm_range(start, stop, c.count, &first, &n);
      ltrim = n ? first : c.count;
      rtrim = n ? c.count - first - n : 0;
      first_batch = 0;
      if (c.nested) {
        size_t need = 0;
        if ((rc = count_end_frees(&c, 0, ltrim, &need)) == 0 &&
            (rc = count_end_frees(&c, 1, rtrim, &need)) == 0)
          rc = need_room(&c, 8 * WORDS_PER_STORE + 4, need);
        if (rc)
          return shmd_tx_end(c.tx, rc);
      }
    }
    /* Between batches others may have shortened the list: never cut more than is there. */
    if (ltrim > c.count)
      ltrim = c.count;
    if (rtrim > c.count - ltrim)
      rtrim = c.count - ltrim;
    uint64_t done;
    if (ltrim > 0) {
      if ((rc = cut_end(&c, 0, ltrim, &done)))
        return shmd_tx_end(c.tx, rc);
      ltrim -= done;
    }
    if (ltrim == 0 && rtrim > 0) {
      rc = cut_end(&c, 1, rtrim, &done);
      if (rc == SHMD_ETXFULL && c.dirty && !c.nested)
        rc = 0; /* the front cut filled this batch: the next one goes on */
      else if (rc)
        return shmd_tx_end(c.tx, rc);
      else
        rtrim -= done;
    }
    if ((rc = shmd_tx_end(c.tx, 0)))
      return rc;
    if (ltrim == 0 && rtrim == 0)
      return 0;
    if (c.nested)
      return SHMD_ECORRUPT; /* cannot happen: the room was counted */
  }
}

/* ---------------------------------------------------------------------------------------------- */
/* Iteration */

void shmd_list_iter_init(shmd_list_iter_t *it, shmd_ptr_t list, int reverse) {
  memset(it, 0, sizeof *it); /* the reserved words too (include/shmdict/list.h) */
  it->list = list;
  it->last = shmd_ptr_null();
  it->epoch = 0;
  it->visited = 0;
  it->reverse = reverse != 0;
}

int shmd_list_iter_next(shmd_store_t *s, shmd_list_iter_t *it, size_t max, shmd_list_visit_fn fn,
                        void *arg, size_t *visited) {
  if (visited != NULL)
    *visited = 0;
  list_ctx_t c;
  int rc = list_enter(s, it->list, &c);
  if (rc)
    return rc;
  int back = it->reverse;
  shmd_ptr_t p;
  if (shmd_ptr_is_null(it->last)) {
    rc = step(&c, c.head, back, &p);
  } else if (it->epoch == c.h->epoch) {
    rc = step(&c, it->last, back, &p);
  } else if (it->visited >= c.count) {
    p = c.head;
  } else {
    rc = walk_to(&c, back ? c.count - 1 - it->visited : it->visited, &p);
  }
  size_t n = 0;
  while (rc == 0 && n < max && !shmd_ptr_eq(p, c.head)) {
    lnode_t *node;
    const void *d;
    size_t dl;
    if ((rc = node_get(&c, p, &node)) || (rc = node_value(&c, p, node, &d, &dl)))
      break;
    it->last = p;
    it->epoch = c.h->epoch;
    it->visited++;
    n++;
    p = back ? node->link.prev : node->link.next;
    if ((rc = fn(d, dl, arg)))
      break;
    if (n > c.count) {
      rc = SHMD_ECORRUPT; /* more nodes than the count: a cycle */
      break;
    }
  }
  if (visited != NULL)
    *visited = n;
  return shmd_tx_end(c.tx, rc);
}

/* ---------------------------------------------------------------------------------------------- */
/* Check */

static int list_check_body(shmd_store_t *s, shmd_ptr_t l);

/* The public checker: its lock waits are bounded (segments/lockwait.h). */
int shmd_list_check(shmd_store_t *s, shmd_ptr_t l) {
  uint64_t w = shmd__check_wait_begin(s);
  int rc = list_check_body(s, l);
  shmd__check_wait_end(s, w);
  return rc;
}

static int list_check_body(shmd_store_t *s, shmd_ptr_t l) {
  list_ctx_t c;
  int rc = list_enter(s, l, &c);
  if (rc)
    return rc;
  shmd_store_info_t info;
  if ((rc = shmd_store_info(s, &info)))
    return shmd_tx_end(c.tx, rc);
  if (c.count > info.store_bytes / 32)
    return shmd_tx_end(c.tx, SHMD_ECORRUPT);
  shmd_ptr_t prev = c.head;
  shmd_list_node_t *pl = &c.h->head;
  for (uint64_t i = 0; i < c.count; i++) {
    shmd_ptr_t p = pl->next;
    lnode_t *n;
    const void *d;
    size_t dl;
    if ((rc = node_get(&c, p, &n)) || (rc = node_value(&c, p, n, &d, &dl)))
      return shmd_tx_end(c.tx, SHMD_ECORRUPT);
    if (!shmd_ptr_eq(n->link.prev, prev))
      return shmd_tx_end(c.tx, SHMD_ECORRUPT);
    size_t need = sizeof(lnode_t) + (node_is_blob(n) ? sizeof(shmd_ptr_t) : dl);
    if (node_is_blob(n) != (dl > SHMD_LIST_INLINE_MAX) || shmd_usable_size(s, p) < need)
      return shmd_tx_end(c.tx, SHMD_ECORRUPT);
    if (node_is_blob(n) && shmd_usable_size(s, node_blob(n)) < shmd_blob_alloc_size(dl))
      return shmd_tx_end(c.tx, SHMD_ECORRUPT);
    prev = p;
    pl = &n->link;
  }
  if (!shmd_ptr_eq(pl->next, c.head) || !shmd_ptr_eq(c.h->head.prev, prev))
    return shmd_tx_end(c.tx, SHMD_ECORRUPT);
  return shmd_tx_end(c.tx, 0);
}
