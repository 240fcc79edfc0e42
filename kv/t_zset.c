/* SPDX-License-Identifier: MIT */
/*
 * Sorted-set commands (Redis's t_zset.c): ZADD ZREM ZSCORE ZINCRBY ZCARD ZRANK ZREVRANK ZRANGE
 * ZRANGEBYSCORE ZCOUNT ZREMRANGEBYRANK ZSCAN ZPOPMIN ZPOPMAX ZMPOP. As Redis pairs a dict with a skiplist, a sorted set
 * is a hash container (member -> 8-byte double score) plus an ordered tree keyed by (score,
 * member) in DOUBLE_BYTES order (shmd_btree_dkey()), so ranks, counts and score ranges cost
 * O(log n). -0.0 is stored as +0.0.
 *
 * The ordered half: two kinds
 * ---------------------------
 * Stores of layout 1.5 and later make the tree of every new sorted set an order-statistic B+tree
 * (shmd_btree_*, nodes of a few cache lines: a rank in a 1 000-member set visits two or three
 * nodes instead of ten dependent rbtree nodes). Stores of layout 1.0-1.4 hold sorted sets on the
 * red-black map (shmd_rbtree_*), and keep getting them there: a library of layout 1.4 must still
 * open such a store after this one wrote to it (the store keeps its layout, as every feature newer
 * than a store is held back from it: docs/architecture.md, "Store layout"). Both kinds are read and
 * written side by side; the container's own kind word (the first word of its header, "SHMD" plus
 * "BTRE" or "RBTR") tells which one a record names, so records and the garbage list are unchanged.
 * Converting old sets on first write was rejected: a set of a million members would have to be
 * rebuilt inside one command's transaction (an undo log and a reservation for every node), and
 * the store would stop opening in the library that made it. The zt_* functions below are the
 * only place that looks at the kind; the hash half is the same for both.
 *
 * ZADD of a member already present finds its score with one hash lookup (shmd_hash_get_ref),
 * moves its tree entry, and overwrites the score in place (logged), instead of a second lookup.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv/cmd.h"
#include "segments/err.h"
#include "segments/store_int.h" /* the store's layout, for the kind of a new set's tree */
#include "shmdict/blob.h"
#include "shmdict/btree.h"

/* ---------------------------------------------------------------------------------------------- */
/* The ordered half: B+tree or red-black map (see the top of the file) */

/* The kind words of containers/cont_int.h: "SHMD" in the low half, the kind's name in the high. */
#define ZT_KIND_BTREE ((UINT64_C(0x45525442) << 32) | UINT64_C(0x444D4853))  /* "BTRE" */
#define ZT_KIND_RBTREE ((UINT64_C(0x52544252) << 32) | UINT64_C(0x444D4853)) /* "RBTR" */
#define ZT_BTREE_LAYOUT 5 /* the first store layout (1.x) whose new sorted sets are B+trees */

enum { ZT_RB = 1, ZT_BT = 2 };

/* ZT_BT or ZT_RB for the tree at t, or SHMD_ECORRUPT for anything else (a hash, a freed block). */
static int zt_kind(shmd_store_t *s, shmd_ptr_t t) {
  void *a;
  if ((t.v & 7) || shmd_resolve_checked(s, t, 8, &a)) {
    shmd__set_detail("kv: sorted set tree pointer outside the store");
    return SHMD_ECORRUPT;
  }
  uint64_t m = __atomic_load_n((const uint64_t *)a, __ATOMIC_ACQUIRE);
  if (m == ZT_KIND_BTREE)
    return ZT_BT;
  if (m == ZT_KIND_RBTREE)
    return ZT_RB;
  shmd__set_detail("kv: a sorted set's tree is neither a btree nor an rbtree");
  return SHMD_ECORRUPT;
}

int kv_ztree_create(shmd_store_t *s, shmd_ptr_t *out) {
  if (s->hdr0->layout_minor >= ZT_BTREE_LAYOUT)
    return shmd_btree_create(s, SHMD_BTREE_DOUBLE_BYTES, out);
  return shmd_rbtree_create(s, SHMD_RBTREE_DOUBLE_BYTES, out);
}

int kv_ztree_is_btree(shmd_store_t *s, shmd_ptr_t t) {
  int k = zt_kind(s, t);
  return k < 0 ? k : k == ZT_BT;
}

int kv_ztree_len(shmd_store_t *s, shmd_ptr_t t, uint64_t *out) {
  int k = zt_kind(s, t);
  return k < 0 ? k : k == ZT_BT ? shmd_btree_len(s, t, out) : shmd_rbtree_len(s, t, out);
}

int kv_ztree_destroy(shmd_store_t *s, shmd_ptr_t t) {
  int k = zt_kind(s, t);
  return k < 0 ? k : k == ZT_BT ? shmd_btree_destroy(s, t) : shmd_rbtree_destroy(s, t);
}

int kv_ztree_destroy_step(shmd_store_t *s, shmd_ptr_t t, size_t max, uint64_t *remaining) {
  int k = zt_kind(s, t);
  return k < 0 ? k : k == ZT_BT ? shmd_btree_destroy_step(s, t, max, remaining) : shmd_rbtree_destroy_step(s, t, max, remaining);
}

int kv_ztree_check(shmd_store_t *s, shmd_ptr_t t) {
  int k = zt_kind(s, t);
  if (k < 0)
    return k;
  int rc = k == ZT_BT ? shmd_btree_check(s, t) : shmd_rbtree_check(s, t);
  if (rc == 0) { /* and ordered as a sorted set's tree */
    int order = 0;
    if (k == ZT_BT) {
      shmd_btree_order_t o;
      rc = shmd_btree_order(s, t, &o);
      order = (int)o;
    } else {
      shmd_rbtree_order_t o;
      rc = shmd_rbtree_order(s, t, &o);
      order = (int)o;
    }
    if (rc == 0 && order != SHMD_BTREE_DOUBLE_BYTES) {
      shmd__set_detail("kv: a sorted set's tree has ordering %d, not (score, member)", order);
      rc = SHMD_ECORRUPT;
    }
  }
  return rc;
}

/* A batch of tree entries copied out for kv_zset_check (the hash is read after the tree's lock is
 * released: lock order is hash, then tree, as the commands take them). */
typedef struct zck_s {
  char *m[256];
  size_t ml[256];
  double sc[256];
  size_t n;
} zck_t;

static int zck_visit(const void *key, size_t kl, const void *val, size_t vl, uint64_t rank, void *arg) {
  (void)val;
  (void)vl;
  (void)rank;
  zck_t *z = arg;
  if (kl < 8) {
    shmd__set_detail("kv: sorted set tree key of %zu bytes", kl);
    return SHMD_ECORRUPT;
  }
  if ((z->m[z->n] = malloc(kl - 8 + 1)) == NULL)
    return SHMD_ENOMEM;
  memcpy(&z->sc[z->n], key, 8);
  memcpy(z->m[z->n], (const char *)key + 8, kl - 8);
  z->ml[z->n++] = kl - 8;
  return 0;
}

int kv_zset_check(shmd_store_t *s, shmd_ptr_t h, shmd_ptr_t t) {
  uint64_t nh = 0, nt = 0;
  int rc = shmd_hash_len(s, h, &nh);
  if (rc || (rc = kv_ztree_len(s, t, &nt)))
    return rc;
  if (nh != nt) {
    shmd__set_detail("kv: sorted set with %llu members in its hash and %llu in its tree", (unsigned long long)nh,
                     (unsigned long long)nt);
    return SHMD_ECORRUPT;
  }
  zck_t z;
  for (uint64_t at = 0; rc == 0 && at < nt;) {
    size_t got = 0;
    z.n = 0;
    rc = kv_ztree_walk_rank(s, t, at, 256, 0, zck_visit, &z, &got);
    for (size_t i = 0; i < z.n; i++) {
      double d;
      size_t vl = 0;
      int g = rc ? 0 : shmd_hash_get(s, h, z.m[i], z.ml[i], &d, 8, &vl);
      if (rc == 0 && g == SHMD_ENOTFOUND) {
        shmd__set_detail("kv: sorted set member of rank %llu is in its tree but not in its hash",
                         (unsigned long long)(at + i));
        rc = SHMD_ECORRUPT;
      } else if (rc == 0 && g) {
        rc = g;
      } else if (rc == 0 && (vl != 8 || memcmp(&d, &z.sc[i], 8) != 0)) {
        shmd__set_detail("kv: sorted set member of rank %llu has one score in its tree, another in its hash",
                         (unsigned long long)(at + i));
        rc = SHMD_ECORRUPT;
      }
      free(z.m[i]);
    }
    if (rc == 0 && got == 0) {
      shmd__set_detail("kv: sorted set tree walk stopped at rank %llu of %llu", (unsigned long long)at,
                       (unsigned long long)nt);
      rc = SHMD_ECORRUPT;
    }
    at += got;
  }
  return rc;
}

int kv_ztree_walk_rank(shmd_store_t *s, shmd_ptr_t t, uint64_t start, size_t max, int reverse,
                       shmd_btree_visit_fn fn, void *arg, size_t *visited) {
  int k = zt_kind(s, t);
  if (k < 0)
    return k;
  if (k == ZT_BT)
    return shmd_btree_walk_rank(s, t, start, max, reverse, fn, arg, visited);
  return shmd_rbtree_walk_rank(s, t, start, max, reverse, fn, arg, visited);
}

int shmd__kv_zset_is_btree(shmd_store_t *s, unsigned db, const void *key, size_t klen) {
  kv_ctx_t c;
  int rc = kv_begin(s, db, &c);
  if (rc)
    return rc;
  kv_ref_t ref;
  if ((rc = kv_lock_stripes(&c, 1u << kv_stripe_of(key, klen))) == 0 &&
      (rc = kv_lookup_type(&c, key, klen, KV_ZSET, &ref)) == 0)
    rc = kv_ztree_is_btree(s, ref.b);
  int is = rc;
  rc = kv_end(&c, rc < 0 ? rc : 0);
  return rc ? rc : is;
}

static int zt_put(shmd_store_t *s, shmd_ptr_t t, const void *key, size_t kl) {
  int k = zt_kind(s, t);
  if (k < 0)
    return k;
  if (k == ZT_BT)
    return shmd_btree_put(s, t, key, kl, "", 0, SHMD_BTREE_UPSERT, NULL);
  return shmd_rbtree_put(s, t, key, kl, "", 0, SHMD_RBTREE_UPSERT, NULL);
}

static int zt_delete(shmd_store_t *s, shmd_ptr_t t, const void *key, size_t kl) {
  int k = zt_kind(s, t);
  return k < 0 ? k : k == ZT_BT ? shmd_btree_delete(s, t, key, kl) : shmd_rbtree_delete(s, t, key, kl);
}

static int zt_rank(shmd_store_t *s, shmd_ptr_t t, const void *key, size_t kl, uint64_t *rank) {
  int k = zt_kind(s, t);
  return k < 0 ? k : k == ZT_BT ? shmd_btree_rank(s, t, key, kl, rank) : shmd_rbtree_rank(s, t, key, kl, rank);
}

static int zt_count_below(shmd_store_t *s, shmd_ptr_t t, const void *key, size_t kl, int incl, uint64_t *out) {
  int k = zt_kind(s, t);
  if (k < 0)
    return k;
  if (k == ZT_BT)
    return shmd_btree_count_below(s, t, key, kl, incl, out);
  return shmd_rbtree_count_below(s, t, key, kl, incl, out);
}

/* ---------------------------------------------------------------------------------------------- */
/* Members */

typedef struct dkey_s {
  unsigned char small[264];
  unsigned char *p;
  size_t len;
} dkey_t;

static int dkey_make(dkey_t *k, double score, const void *m, size_t ml) {
  k->p = k->small;
  if (ml + 8 > sizeof k->small && (k->p = malloc(ml + 8)) == NULL)
    return SHMD_ENOMEM;
  if (score == 0)
    score = 0.0; /* -0.0 -> +0.0 */
  k->len = shmd_btree_dkey(score, m, ml, k->p);
  return 0;
}
static void dkey_free(dkey_t *k) {
  if (k->p != k->small)
    free(k->p);
}

static int z_get_score(kv_ctx_t *c, kv_ref_t *ref, const void *m, size_t ml, double *score) {
  size_t vl = 0;
  int rc = shmd_hash_get(c->s, ref->a, m, ml, score, 8, &vl);
  if (rc == 0 && vl != 8)
    return SHMD_ECORRUPT;
  return rc;
}

/* Moves member's tree entry from (old, m) to (score, m) (only inserts when !had). */
static int z_tree_move(kv_ctx_t *c, kv_ref_t *ref, const void *m, size_t ml, int had, double old, double score) {
  dkey_t k;
  int rc;
  if (had) {
    if ((rc = dkey_make(&k, old, m, ml)))
      return rc;
    rc = zt_delete(c->s, ref->b, k.p, k.len);
    dkey_free(&k);
    if (rc)
      return rc == SHMD_ENOTFOUND ? SHMD_ECORRUPT : rc;
  }
  if ((rc = dkey_make(&k, score, m, ml)))
    return rc;
  rc = zt_put(c->s, ref->b, k.p, k.len);
  dkey_free(&k);
  return rc;
}

/* Sets the score of a member that is not in the set yet (the callers know it is absent). */
static int z_insert(kv_ctx_t *c, kv_ref_t *ref, const void *m, size_t ml, double score) {
  if (score == 0)
    score = 0.0;
  int rc = z_tree_move(c, ref, m, ml, 0, 0, score);
  if (rc)
    return rc;
  return shmd_hash_put(c->s, ref->a, m, ml, &score, 8, SHMD_HASH_INSERT, NULL);
}

static int z_remove(kv_ctx_t *c, kv_ref_t *ref, const void *m, size_t ml) {
  double old;
  int rc = z_get_score(c, ref, m, ml, &old);
  if (rc)
    return rc;
  dkey_t k;
  if ((rc = dkey_make(&k, old, m, ml)))
    return rc;
  rc = zt_delete(c->s, ref->b, k.p, k.len);
  dkey_free(&k);
  if (rc)
    return rc == SHMD_ENOTFOUND ? SHMD_ECORRUPT : rc;
  return shmd_hash_del(c->s, ref->a, m, ml);
}

int shmd__kv_zadd_one(kv_ctx_t *c, kv_ref_t *ref, const void *m, size_t ml, double score, int nx,
                      int xx, int gt, int lt, int incr, int *added, int *changed, double *out) {
  double old = 0;
  shmd_hash_ref_t hr;
  int rc = shmd_hash_get_ref(c->s, ref->a, m, ml, &hr);
  if (rc && rc != SHMD_ENOTFOUND)
    return rc;
  int had = rc == 0;
  if (had) {
    if (hr.val_len != 8)
      return SHMD_ECORRUPT;
    memcpy(&old, hr.val, 8);
  }
  *added = *changed = 0;
  if ((nx && had) || (xx && !had))
    return 1; /* not done */
  double nw = score;
  if (incr && had) {
    nw = old + score;
    if (isnan(nw))
      return 2;
  }
  if (had && ((gt && !(nw > old)) || (lt && !(nw < old))))
    return 1;
  *out = nw;
  if (had && nw == old)
    return 0;
  if (!had) {
    if ((rc = z_insert(c, ref, m, ml, nw)))
      return rc;
  } else {
    if (nw == 0)
      nw = 0.0;
    /* The tree entry moves; the score is overwritten in place (the hash is not touched between
     * the lookup and the store: the tree has its own allocations). */
    if ((rc = z_tree_move(c, ref, m, ml, 1, old, nw)) || (rc = shmd_tx_log(c->tx, hr.val_ptr, 8)))
      return rc;
    memcpy(hr.val, &nw, 8);
  }
  *added = !had;
  *changed = 1;
  return 0;
}

int shmd__kv_cmd_zadd(cc_t *x) {
  int nx = 0, xx = 0, gt = 0, lt = 0, ch = 0, incr = 0, i = 2;
  for (; i < x->argc; i++) {
    if (eq(A(i), L(i), "NX")) nx = 1;
    else if (eq(A(i), L(i), "XX")) xx = 1;
    else if (eq(A(i), L(i), "GT")) gt = 1;
    else if (eq(A(i), L(i), "LT")) lt = 1;
    else if (eq(A(i), L(i), "CH")) ch = 1;
    else if (eq(A(i), L(i), "INCR")) incr = 1;
    else break;
  }
  int pairs = x->argc - i;
  if (pairs == 0 || pairs % 2)
    return r_error(x->r, ERR_SYNTAX);
  if (nx && xx)
    return r_error(x->r, "ERR XX and NX options at the same time are not compatible");
  if ((gt && nx) || (lt && nx) || (gt && lt))
    return r_error(x->r, "ERR GT, LT, and/or NX options at the same time are not compatible");
  if (incr && pairs > 2)
    return r_error(x->r, "ERR INCR option supports a single increment-element pair");
  for (int j = i; j < x->argc; j += 2) {
    double d;
    if (parse_double(A(j), L(j), &d))
      return r_error(x->r, ERR_NOTFLOAT);
  }
  kv_ref_t ref;
  int rc = kv_lookup_type(x->c, A(1), L(1), KV_ZSET, &ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc == SHMD_ENOTFOUND) {
    if (xx)
      return incr ? r_nil(x->r) : r_int(x->r, 0);
    rc = kv_container(x->c, A(1), L(1), KV_ZSET, 1, &ref);
  }
  if (rc)
    return rc;
  int64_t added = 0, changed = 0;
  double last = 0;
  int done = 0;
  for (int j = i; j < x->argc; j += 2) {
    double d;
    parse_double(A(j), L(j), &d);
    int a, c2;
    rc = shmd__kv_zadd_one(x->c, &ref, A(j + 1), L(j + 1), d, nx, xx, gt, lt, incr, &a, &c2, &last);
    if (rc == 2)
      return r_error(x->r, "ERR resulting score is not a number (NaN)");
    if (rc < 0)
      return rc;
    done = rc == 0;
    added += a;
    changed += c2;
  }
  if ((rc = kv_drop_if_empty(x->c, A(1), L(1), &ref)))
    return rc;
  if (incr) {
    if (!done)
      return r_nil(x->r);
    char buf[64];
    return r_bulk(x->r, buf, fmt_double(last, buf, sizeof buf));
  }
  return r_int(x->r, ch ? changed : added);
}

int shmd__kv_cmd_zincrby(cc_t *x) {
  double d;
  if (parse_double(A(2), L(2), &d))
    return r_error(x->r, ERR_NOTFLOAT);
  kv_ref_t ref;
  int rc = kv_container(x->c, A(1), L(1), KV_ZSET, 1, &ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc)
    return rc;
  int a, c2;
  double out = 0;
  rc = shmd__kv_zadd_one(x->c, &ref, A(3), L(3), d, 0, 0, 0, 0, 1, &a, &c2, &out);
  if (rc == 2)
    return r_error(x->r, "ERR resulting score is not a number (NaN)");
  if (rc < 0)
    return rc;
  char buf[64];
  return r_bulk(x->r, buf, fmt_double(out, buf, sizeof buf));
}

int shmd__kv_cmd_zrem(cc_t *x) {
  kv_ref_t ref;
  int rc = need(x, KV_ZSET, MISS_ZERO, &ref);
  if (rc <= 0)
    return rc;
  int64_t n = 0;
  for (int i = 2; i < x->argc; i++) {
    rc = z_remove(x->c, &ref, A(i), L(i));
    if (rc == 0)
      n++;
    else if (rc != SHMD_ENOTFOUND)
      return rc;
  }
  if ((rc = kv_drop_if_empty(x->c, A(1), L(1), &ref)))
    return rc;
  return r_int(x->r, n);
}

int shmd__kv_cmd_zscore(cc_t *x) {
  kv_ref_t ref;
  int rc = need(x, KV_ZSET, MISS_NIL, &ref);
  if (rc <= 0)
    return rc;
  double d;
  rc = z_get_score(x->c, &ref, A(2), L(2), &d);
  if (rc == SHMD_ENOTFOUND)
    return r_nil(x->r);
  if (rc)
    return rc;
  char buf[64];
  return r_bulk(x->r, buf, fmt_double(d, buf, sizeof buf));
}

int shmd__kv_cmd_zcard(cc_t *x) {
  kv_ref_t ref;
  int rc = need(x, KV_ZSET, MISS_ZERO, &ref);
  if (rc <= 0)
    return rc;
  uint64_t n;
  if ((rc = shmd_hash_len(x->c->s, ref.a, &n)))
    return rc;
  return r_int(x->r, (int64_t)n);
}

int shmd__kv_zrank(kv_ctx_t *c, kv_ref_t *ref, const void *m, size_t ml, int rev, uint64_t *rank) {
  double d;
  int rc = z_get_score(c, ref, m, ml, &d);
  if (rc)
    return rc;
  dkey_t k;
  if ((rc = dkey_make(&k, d, m, ml)))
    return rc;
  rc = zt_rank(c->s, ref->b, k.p, k.len, rank);
  dkey_free(&k);
  if (rc)
    return rc == SHMD_ENOTFOUND ? SHMD_ECORRUPT : rc;
  if (rev) {
    uint64_t n;
    if ((rc = kv_ztree_len(c->s, ref->b, &n)))
      return rc;
    *rank = n - 1 - *rank;
  }
  return 0;
}

static int c_zrank_gen(cc_t *x, int rev) {
  kv_ref_t ref;
  int rc = need(x, KV_ZSET, MISS_NIL, &ref);
  if (rc <= 0)
    return rc;
  uint64_t rank;
  rc = shmd__kv_zrank(x->c, &ref, A(2), L(2), rev, &rank);
  if (rc == SHMD_ENOTFOUND)
    return r_nil(x->r);
  return rc ? rc : r_int(x->r, (int64_t)rank);
}
int shmd__kv_cmd_zrank(cc_t *x) { return c_zrank_gen(x, 0); }
int shmd__kv_cmd_zrevrank(cc_t *x) { return c_zrank_gen(x, 1); }

/* Score bounds: "(x" exclusive, "-inf", "+inf". */
typedef struct zbound_s {
  double v;
  int excl;
} zbound_t;
/* Redis's zslParseRange for one bound (util.c). */
static int parse_bound(const char *s, size_t n, zbound_t *b) { return shmd__kv_parse_bound(s, n, &b->v, &b->excl); }

/* The next double above v (v finite or -inf), without libm. */
static double next_up(double v) {
  if (v == 0)
    return 4.9406564584124654e-324;
  uint64_t b;
  memcpy(&b, &v, 8);
  if (v > 0)
    b++;
  else
    b--;
  memcpy(&v, &b, 8);
  return v;
}

/* Number of entries with score < v (or <= v when incl). */
static int z_below(kv_ctx_t *c, shmd_ptr_t tree, double v, int incl, uint64_t *out) {
  if (incl) {
    if (v == INFINITY)
      return kv_ztree_len(c->s, tree, out);
    v = next_up(v);
  }
  if (v == 0)
    v = 0.0;
  unsigned char key[8];
  shmd_btree_dkey(v, NULL, 0, key);
  return zt_count_below(c->s, tree, key, 8, 0, out);
}

/* The rank interval [lo, hi) of scores in [min, max] (honouring exclusivity). */
static int z_score_range(kv_ctx_t *c, shmd_ptr_t tree, zbound_t min, zbound_t max, uint64_t *lo,
                         uint64_t *hi) {
  int rc = z_below(c, tree, min.v, min.excl, lo);
  if (rc == 0)
    rc = z_below(c, tree, max.v, !max.excl, hi);
  if (rc == 0 && *hi < *lo)
    *hi = *lo;
  return rc;
}

typedef struct zwalk_s {
  vec_t v;
  int scores;
} zwalk_t;

static int zwalk_visit(const void *key, size_t kl, const void *val, size_t vl, uint64_t rank, void *arg) {
  (void)val;
  (void)vl;
  (void)rank;
  zwalk_t *w = arg;
  if (kl < 8)
    return SHMD_ECORRUPT;
  int rc = vec_bulk(&w->v, (const char *)key + 8, kl - 8);
  if (rc == 0 && w->scores) {
    double d;
    memcpy(&d, key, 8);
    char buf[64];
    rc = vec_bulk(&w->v, buf, fmt_double(d, buf, sizeof buf));
  }
  return rc;
}

/* Replies the entries of ranks [lo, hi) (ascending), or the same set descending when rev, after
 * skipping `offset` and keeping at most `count` (< 0: all). */
static int z_reply_ranks(cc_t *x, shmd_ptr_t tree, uint64_t lo, uint64_t hi, int rev, long long offset,
                         long long count, int scores) {
  zwalk_t w = {{0}, scores};
  if (offset < 0 || hi <= lo || (uint64_t)offset >= hi - lo) {
    return r_array(x->r, 0);
  }
  uint64_t n = hi - lo - (uint64_t)offset;
  if (count >= 0 && (uint64_t)count < n)
    n = (uint64_t)count;
  uint64_t start = rev ? hi - 1 - (uint64_t)offset : lo + (uint64_t)offset;
  while (n > 0) {
    size_t got = 0;
    size_t batch = n > 1024 ? 1024 : (size_t)n;
    int rc = kv_ztree_walk_rank(x->c->s, tree, start, batch, rev, zwalk_visit, &w, &got);
    if (rc) {
      vec_free(&w.v);
      return rc;
    }
    if (got == 0)
      break;
    n -= got;
    start = rev ? start - got : start + got;
  }
  vec_to(&w.v, x->r);
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Lexicographic ranges (zslParseLexRange): "[m" inclusive, "(m" exclusive, "-" and "+" the ends. */

typedef struct zlex_s {
  const char *p;
  size_t n;
  int excl;
  int inf; /* -1: "-", +1: "+", 0: the string p[0 .. n) */
} zlex_t;

static int parse_lex(const char *s, size_t n, zlex_t *b) {
  b->p = NULL;
  b->n = 0;
  b->inf = 0;
  b->excl = 0;
  if (n == 0)
    return -1;
  switch (s[0]) {
  case '+':
  case '-':
    if (n > 1 && s[1] != 0) /* Redis looks at the C string: "+" then NUL is "+" */
      return -1;
    b->inf = s[0] == '+' ? 1 : -1;
    b->excl = 1;
    return 0;
  case '(':
  case '[':
    b->excl = s[0] == '(';
    b->p = s + 1;
    b->n = n - 1;
    return 0;
  default: return -1;
  }
}

/* sdscmplex of a member against a bound */
static int lex_cmp(const void *m, size_t ml, const zlex_t *b) {
  if (b->inf)
    return -b->inf;
  return shmd_bytes_cmp(m, ml, b->p, b->n);
}
static int lex_gte_min(const void *m, size_t ml, const zlex_t *min) {
  int c = lex_cmp(m, ml, min);
  return min->excl ? c > 0 : c >= 0;
}
static int lex_lte_max(const void *m, size_t ml, const zlex_t *max) {
  int c = lex_cmp(m, ml, max);
  return max->excl ? c < 0 : c <= 0;
}
/* zzlIsInLexRange's first test: ranges that are always empty. */
static int lex_empty(const zlex_t *min, const zlex_t *max) {
  int c;
  if (min->inf && min->inf == max->inf)
    c = 0;
  else if (min->inf < 0 || max->inf > 0)
    c = -1;
  else if (min->inf > 0 || max->inf < 0)
    c = 1;
  else
    c = shmd_bytes_cmp(min->p, min->n, max->p, max->n);
  return c > 0 || (c == 0 && (min->excl || max->excl));
}

/* The score and a copy of the member of the entry of rank i (the caller frees *m). */
typedef struct zent_s {
  double score;
  char *m;
  size_t ml;
} zent_t;
static int zent_visit(const void *key, size_t kl, const void *val, size_t vl, uint64_t rank, void *arg) {
  (void)val;
  (void)vl;
  (void)rank;
  zent_t *e = arg;
  if (kl < 8)
    return SHMD_ECORRUPT;
  memcpy(&e->score, key, 8);
  e->ml = kl - 8;
  if ((e->m = malloc(e->ml + 1)) == NULL)
    return SHMD_ENOMEM;
  memcpy(e->m, (const char *)key + 8, e->ml);
  return 0;
}
static int z_entry(cc_t *x, shmd_ptr_t tree, uint64_t i, zent_t *e) {
  size_t got = 0;
  e->m = NULL;
  int rc = kv_ztree_walk_rank(x->c->s, tree, i, 1, 0, zent_visit, e, &got);
  if (rc == 0 && got != 1)
    rc = SHMD_ECORRUPT;
  if (rc) {
    free(e->m);
    e->m = NULL;
  }
  return rc;
}

/* The rank of the first entry of member order >= (or > when after) the bound, all scores being s. */
static int lex_rank(cc_t *x, shmd_ptr_t tree, double s, const zlex_t *b, int after, uint64_t n, uint64_t *out) {
  if (b->inf) {
    *out = b->inf < 0 ? 0 : n;
    return 0;
  }
  dkey_t k;
  int rc = dkey_make(&k, s, b->p, b->n);
  if (rc)
    return rc;
  rc = zt_count_below(x->c->s, tree, k.p, k.len, after, out);
  dkey_free(&k);
  return rc;
}

/* The linear walk of Redis's listpack encoding, for sets whose members have different scores (where
 * a lex range is not an interval of the order): from the first entry >= min (the last <= max when
 * rev), skip `offset` entries, then take entries while they stay <= max (>= min) up to `limit`. */
#define LEX_STOP 0x7fff0001
typedef struct lexwalk_s {
  const zlex_t *min, *max;
  int rev, phase, empty;
  long long skip, limit;
  int scores;
  uint64_t taken;
  vec_t v;
} lexwalk_t;

static int lexwalk_visit(const void *key, size_t kl, const void *val, size_t vl, uint64_t rank, void *arg) {
  (void)val;
  (void)vl;
  (void)rank;
  lexwalk_t *w = arg;
  if (kl < 8)
    return SHMD_ECORRUPT;
  const char *m = (const char *)key + 8;
  size_t ml = kl - 8;
  int in_start = w->rev ? lex_lte_max(m, ml, w->max) : lex_gte_min(m, ml, w->min);
  int in_end = w->rev ? lex_gte_min(m, ml, w->min) : lex_lte_max(m, ml, w->max);
  if (w->phase == 0) {
    if (!in_start)
      return 0;
    if (!in_end) {
      w->empty = 1;
      return LEX_STOP;
    }
    w->phase = 1;
  }
  if (w->phase == 1) {
    if (w->skip > 0) {
      w->skip--;
      return 0;
    }
    w->phase = 2;
  }
  if (w->limit == 0 || !in_end)
    return LEX_STOP;
  if (w->limit > 0)
    w->limit--;
  w->taken++;
  int rc = vec_bulk(&w->v, m, ml);
  if (rc == 0 && w->scores) {
    double d;
    memcpy(&d, key, 8);
    char buf[64];
    rc = vec_bulk(&w->v, buf, fmt_double(d, buf, sizeof buf));
  }
  return rc;
}

/* The entries of a lex range into r (members, with scores when `scores`), in order or reversed,
 * after `offset` and at most `limit` (< 0: all), as Redis's genericZrangebylexCommand. */
static int z_lex_range(cc_t *x, shmd_ptr_t tree, const zlex_t *min, const zlex_t *max, int rev, long long offset,
                       long long limit, int scores, shmd_reply_t *r) {
  uint64_t n;
  int rc = kv_ztree_len(x->c->s, tree, &n);
  if (rc)
    return rc;
  if (n == 0 || lex_empty(min, max) || offset < 0)
    return r_array(r, 0);
  zent_t first, last;
  if ((rc = z_entry(x, tree, 0, &first)))
    return rc;
  if ((rc = z_entry(x, tree, n - 1, &last))) {
    free(first.m);
    return rc;
  }
  int uniform = first.score == last.score;
  int inrange = lex_gte_min(last.m, last.ml, min) && lex_lte_max(first.m, first.ml, max);
  double sc = first.score;
  free(first.m);
  free(last.m);
  if (!inrange)
    return r_array(r, 0);
  cc_t y = *x;
  y.r = r;
  if (uniform) { /* a lex range is an interval of ranks */
    uint64_t lo, hi;
    if ((rc = lex_rank(x, tree, sc, min, min->excl, n, &lo)) || (rc = lex_rank(x, tree, sc, max, !max->excl, n, &hi)))
      return rc;
    if (hi < lo)
      hi = lo;
    return z_reply_ranks(&y, tree, lo, hi, rev, offset, limit, scores);
  }
  lexwalk_t w = {min, max, rev, 0, 0, offset, limit, scores, 0, {0}};
  uint64_t start = rev ? n - 1 : 0;
  for (;;) {
    size_t got = 0;
    rc = kv_ztree_walk_rank(x->c->s, tree, start, 1024, rev, lexwalk_visit, &w, &got);
    if (rc || got < 1024)
      break;
    if (rev && start < 1024)
      break;
    start = rev ? start - 1024 : start + 1024;
  }
  if (rc && rc != LEX_STOP) {
    vec_free(&w.v);
    return rc;
  }
  if (w.empty)
    vec_free(&w.v);
  vec_to(&w.v, r);
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* ZRANGE and its older forms, ZRANGESTORE (Redis's zrangeGenericCommand): the options first (a
 * repeated REV / BYSCORE / BYLEX is a syntax error, LIMIT needs two arguments after it), then the
 * conflicts, then the range's syntax, then the key. */

enum { ZR_AUTO, ZR_RANK, ZR_SCORE, ZR_LEX };

/* Stores the flat [member, score, ...] result into dst (replacing any value; deleting dst when the
 * result is empty) and replies its size. */
static int z_store(cc_t *x, const char *dst, size_t dl, shmd_reply_t *flat) {
  int rc = kv_delete(x->c, dst, dl);
  if (rc && rc != SHMD_ENOTFOUND)
    return rc;
  size_t pairs = flat->nelems / 2;
  if (pairs) {
    kv_ref_t ref;
    if ((rc = kv_container(x->c, dst, dl, KV_ZSET, 1, &ref)))
      return rc;
    for (size_t i = 0; i < pairs; i++) {
      double d;
      if (parse_double(flat->elems[2 * i + 1].str, flat->elems[2 * i + 1].len, &d))
        return SHMD_ECORRUPT;
      int a, c2;
      double out;
      rc = shmd__kv_zadd_one(x->c, &ref, flat->elems[2 * i].str, flat->elems[2 * i].len, d, 0, 0, 0, 0, 0, &a, &c2,
                             &out);
      if (rc < 0)
        return rc;
    }
  }
  return r_int(x->r, (int64_t)pairs);
}

static int zrange_generic(cc_t *x, int ki, int store, int type, int rev) {
  int scores = 0;
  long long offset = 0, limit = -1;
  int dir_auto = rev < 0;
  if (rev < 0)
    rev = 0;
  for (int j = ki + 3; j < x->argc; j++) {
    int left = x->argc - j - 1;
    if (!store && eq(A(j), L(j), "WITHSCORES")) {
      scores = 1;
    } else if (eq(A(j), L(j), "LIMIT") && left >= 2) {
      if (parse_ll(A(j + 1), L(j + 1), &offset) || parse_ll(A(j + 2), L(j + 2), &limit))
        return r_error(x->r, ERR_NOTINT);
      j += 2;
    } else if (dir_auto && eq(A(j), L(j), "REV")) {
      rev = 1;
      dir_auto = 0;
    } else if (type == ZR_AUTO && eq(A(j), L(j), "BYLEX")) {
      type = ZR_LEX;
    } else if (type == ZR_AUTO && eq(A(j), L(j), "BYSCORE")) {
      type = ZR_SCORE;
    } else {
      return r_error(x->r, ERR_SYNTAX);
    }
  }
  if (type == ZR_AUTO)
    type = ZR_RANK;
  if (limit != -1 && type == ZR_RANK)
    return r_error(x->r, "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX");
  if (scores && type == ZR_LEX)
    return r_error(x->r, "ERR syntax error, WITHSCORES not supported in combination with BYLEX");
  int mi = ki + 1, ma = ki + 2;
  if (rev && type != ZR_RANK) { /* the range is given as max, min */
    mi = ki + 2;
    ma = ki + 1;
  }
  long long start = 0, end = 0;
  zbound_t smin, smax;
  zlex_t lmin, lmax;
  if (type == ZR_RANK) {
    if (parse_ll(A(mi), L(mi), &start) || parse_ll(A(ma), L(ma), &end))
      return r_error(x->r, ERR_NOTINT);
  } else if (type == ZR_SCORE) {
    if (parse_bound(A(mi), L(mi), &smin) || parse_bound(A(ma), L(ma), &smax))
      return r_error(x->r, "ERR min or max is not a float");
  } else if (parse_lex(A(mi), L(mi), &lmin) || parse_lex(A(ma), L(ma), &lmax)) {
    return r_error(x->r, "ERR min or max not valid string range item");
  }
  kv_ref_t ref;
  int rc = kv_lookup_type(x->c, A(ki), L(ki), KV_ZSET, &ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc && rc != SHMD_ENOTFOUND)
    return rc;
  shmd_reply_t res = {0};
  if (rc == SHMD_ENOTFOUND) {
    rc = r_array(&res, 0);
  } else {
    cc_t y = *x;
    y.r = &res;
    if (type == ZR_RANK) {
      uint64_t len;
      if ((rc = kv_ztree_len(x->c->s, ref.b, &len)))
        return rc;
      long long n = (long long)len;
      if (start < 0) start += n;
      if (end < 0) end += n;
      if (start < 0) start = 0;
      if (start > end || start >= n) {
        rc = r_array(&res, 0);
      } else {
        if (end >= n) end = n - 1;
        uint64_t lo = rev ? (uint64_t)(n - 1 - end) : (uint64_t)start;
        uint64_t hi = rev ? (uint64_t)(n - start) : (uint64_t)end + 1;
        rc = z_reply_ranks(&y, ref.b, lo, hi, rev, 0, -1, scores || store);
      }
    } else if (type == ZR_SCORE) {
      uint64_t lo, hi;
      if ((rc = z_score_range(x->c, ref.b, smin, smax, &lo, &hi)) == 0)
        rc = z_reply_ranks(&y, ref.b, lo, hi, rev, offset, limit, scores || store);
    } else {
      rc = z_lex_range(x, ref.b, &lmin, &lmax, rev, offset, limit, store, &res);
    }
  }
  if (rc) {
    shmd__kv_reply_clear(&res);
    return rc;
  }
  if (store) {
    rc = z_store(x, A(1), L(1), &res);
    shmd__kv_reply_clear(&res);
    return rc;
  }
  *x->r = res;
  return 0;
}

int shmd__kv_cmd_zrange(cc_t *x) { return zrange_generic(x, 1, 0, ZR_AUTO, -1); }
int shmd__kv_cmd_zrangestore(cc_t *x) { return zrange_generic(x, 2, 1, ZR_AUTO, -1); }
int shmd__kv_cmd_zrevrange(cc_t *x) { return zrange_generic(x, 1, 0, ZR_RANK, 1); }
int shmd__kv_cmd_zrangebyscore(cc_t *x) { return zrange_generic(x, 1, 0, ZR_SCORE, 0); }
int shmd__kv_cmd_zrevrangebyscore(cc_t *x) { return zrange_generic(x, 1, 0, ZR_SCORE, 1); }
int shmd__kv_cmd_zrangebylex(cc_t *x) { return zrange_generic(x, 1, 0, ZR_LEX, 0); }
int shmd__kv_cmd_zrevrangebylex(cc_t *x) { return zrange_generic(x, 1, 0, ZR_LEX, 1); }

int shmd__kv_cmd_zcount(cc_t *x) {
  zbound_t min, max;
  if (parse_bound(A(2), L(2), &min) || parse_bound(A(3), L(3), &max))
    return r_error(x->r, "ERR min or max is not a float");
  kv_ref_t ref;
  int rc = need(x, KV_ZSET, MISS_ZERO, &ref);
  if (rc <= 0)
    return rc;
  uint64_t lo, hi;
  if ((rc = z_score_range(x->c, ref.b, min, max, &lo, &hi)))
    return rc;
  return r_int(x->r, (int64_t)(hi - lo));
}

int shmd__kv_cmd_zlexcount(cc_t *x) {
  zlex_t min, max;
  if (parse_lex(A(2), L(2), &min) || parse_lex(A(3), L(3), &max))
    return r_error(x->r, "ERR min or max not valid string range item");
  kv_ref_t ref;
  int rc = need(x, KV_ZSET, MISS_ZERO, &ref);
  if (rc <= 0)
    return rc;
  shmd_reply_t res = {0};
  if ((rc = z_lex_range(x, ref.b, &min, &max, 0, 0, -1, 0, &res)))
    return rc;
  int64_t n = (int64_t)res.nelems;
  shmd__kv_reply_clear(&res);
  return r_int(x->r, n);
}

/* ZREMRANGEBYRANK / BYSCORE / BYLEX: the range's syntax, then the key, then the removal. */
static int zremrange_generic(cc_t *x, int type) {
  long long a = 0, b = 0;
  zbound_t smin, smax;
  zlex_t lmin, lmax;
  if (type == ZR_RANK) {
    if (parse_ll(A(2), L(2), &a) || parse_ll(A(3), L(3), &b))
      return r_error(x->r, ERR_NOTINT);
  } else if (type == ZR_SCORE) {
    if (parse_bound(A(2), L(2), &smin) || parse_bound(A(3), L(3), &smax))
      return r_error(x->r, "ERR min or max is not a float");
  } else if (parse_lex(A(2), L(2), &lmin) || parse_lex(A(3), L(3), &lmax)) {
    return r_error(x->r, "ERR min or max not valid string range item");
  }
  kv_ref_t ref;
  int rc = need(x, KV_ZSET, MISS_ZERO, &ref);
  if (rc <= 0)
    return rc;
  shmd_reply_t tmp = {0};
  cc_t y = *x;
  y.r = &tmp;
  if (type == ZR_RANK) {
    uint64_t len;
    if ((rc = kv_ztree_len(x->c->s, ref.b, &len)))
      return rc;
    long long n = (long long)len;
    if (a < 0) a += n;
    if (b < 0) b += n;
    if (a < 0) a = 0;
    if (a > b || a >= n)
      return r_int(x->r, 0);
    if (b >= n) b = n - 1;
    rc = z_reply_ranks(&y, ref.b, (uint64_t)a, (uint64_t)b + 1, 0, 0, -1, 0);
  } else if (type == ZR_SCORE) {
    uint64_t lo, hi;
    if ((rc = z_score_range(x->c, ref.b, smin, smax, &lo, &hi)) == 0)
      rc = z_reply_ranks(&y, ref.b, lo, hi, 0, 0, -1, 0);
  } else {
    rc = z_lex_range(x, ref.b, &lmin, &lmax, 0, 0, -1, 0, &tmp);
  }
  for (size_t i = 0; i < tmp.nelems && rc == 0; i++)
    rc = z_remove(x->c, &ref, tmp.elems[i].str, tmp.elems[i].len);
  int64_t removed = (int64_t)tmp.nelems;
  shmd__kv_reply_clear(&tmp);
  if (rc == 0)
    rc = kv_drop_if_empty(x->c, A(1), L(1), &ref);
  return rc ? rc : r_int(x->r, removed);
}
int shmd__kv_cmd_zremrangebyrank(cc_t *x) { return zremrange_generic(x, ZR_RANK); }
int shmd__kv_cmd_zremrangebyscore(cc_t *x) { return zremrange_generic(x, ZR_SCORE); }
int shmd__kv_cmd_zremrangebylex(cc_t *x) { return zremrange_generic(x, ZR_LEX); }

int shmd__kv_cmd_zmscore(cc_t *x) {
  kv_ref_t ref;
  int rc = kv_lookup_type(x->c, A(1), L(1), KV_ZSET, &ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc && rc != SHMD_ENOTFOUND)
    return rc;
  int missing = rc == SHMD_ENOTFOUND;
  if ((rc = r_array(x->r, (size_t)(x->argc - 2))))
    return rc;
  for (int i = 2; i < x->argc; i++) {
    shmd_reply_t *e = &x->r->elems[i - 2];
    double d;
    rc = missing ? SHMD_ENOTFOUND : z_get_score(x->c, &ref, A(i), L(i), &d);
    if (rc == SHMD_ENOTFOUND) {
      r_nil(e);
    } else if (rc) {
      return rc;
    } else {
      char buf[64];
      if ((rc = r_bulk(e, buf, fmt_double(d, buf, sizeof buf))))
        return rc;
    }
  }
  return 0;
}

int shmd__kv_cmd_zscan(cc_t *x) { return shmd__kv_xscan(x, KV_ZSET, 2); }

/* ---------------------------------------------------------------------------------------------- */
/* ZPOPMIN, ZPOPMAX, ZMPOP (the non-blocking halves of the server's BZPOPMIN / BZPOPMAX / BZMPOP) */

/* Pops up to `count` members from the low (max = 0) or high end of the set at ref into r as the
 * flat array [member, score, ...]; deletes the key when it empties. */
static int z_pop(cc_t *x, const char *key, size_t klen, kv_ref_t *ref, int max, long long count, shmd_reply_t *r) {
  uint64_t len;
  int rc = kv_ztree_len(x->c->s, ref->b, &len);
  if (rc)
    return rc;
  uint64_t n = (uint64_t)count < len ? (uint64_t)count : len;
  shmd_reply_t tmp = {0};
  cc_t y = *x;
  y.r = &tmp;
  if ((rc = z_reply_ranks(&y, ref->b, max ? len - n : 0, max ? len : n, max, 0, -1, 1)))
    return rc;
  for (size_t i = 0; i + 1 < tmp.nelems && rc == 0; i += 2)
    rc = z_remove(x->c, ref, tmp.elems[i].str, tmp.elems[i].len);
  if (rc == 0)
    rc = kv_drop_if_empty(x->c, key, klen, ref);
  if (rc) {
    shmd__kv_reply_clear(&tmp);
    return rc;
  }
  *r = tmp;
  return 0;
}

static int c_zpop(cc_t *x, int max) {
  long long count = 1;
  if (x->argc > 3)
    return r_error(x->r, ERR_SYNTAX);
  if (x->argc == 3 && (parse_ll(A(2), L(2), &count) || count < 0))
    return r_error(x->r, "ERR value is out of range, must be positive");
  kv_ref_t ref;
  int rc = need(x, KV_ZSET, MISS_EMPTY, &ref);
  if (rc <= 0)
    return rc;
  if (count == 0)
    return r_array(x->r, 0);
  return z_pop(x, A(1), L(1), &ref, max, count, x->r);
}
int shmd__kv_cmd_zpopmin(cc_t *x) { return c_zpop(x, 0); }
int shmd__kv_cmd_zpopmax(cc_t *x) { return c_zpop(x, 1); }

int shmd__kv_cmd_zmpop(cc_t *x) {
  long long nk, count;
  int max;
  if (!shmd__kv_parse_mpop(x, 1, "MIN", "MAX", &nk, &max, &count))
    return 0;
  for (int k = 2; k < 2 + nk; k++) {
    kv_ref_t ref;
    int rc = kv_lookup_type(x->c, A(k), L(k), KV_ZSET, &ref);
    if (rc == SHMD_EWRONGTYPE)
      return WRONGTYPE();
    if (rc == SHMD_ENOTFOUND)
      continue;
    if (rc)
      return rc;
    shmd_reply_t flat = {0};
    if ((rc = z_pop(x, A(k), L(k), &ref, max, count, &flat)))
      return rc;
    /* [key, [[member, score], ...]] */
    size_t pairs = flat.nelems / 2;
    if ((rc = r_array(x->r, 2)) || (rc = r_bulk(&x->r->elems[0], A(k), L(k))) ||
        (rc = r_array(&x->r->elems[1], pairs))) {
      shmd__kv_reply_clear(&flat);
      return rc;
    }
    for (size_t i = 0; i < pairs && rc == 0; i++) {
      shmd_reply_t *p = &x->r->elems[1].elems[i];
      if ((rc = r_array(p, 2)) == 0) {
        p->elems[0] = flat.elems[2 * i];
        p->elems[1] = flat.elems[2 * i + 1];
        memset(&flat.elems[2 * i], 0, 2 * sizeof flat.elems[0]);
      }
    }
    shmd__kv_reply_clear(&flat);
    return rc;
  }
  r_nilarr(x->r); /* a null array */
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* ZUNION ZINTER ZDIFF, their STORE forms and ZINTERCARD (Redis's zunionInterDiffGenericCommand):
 * numkeys, the keys' types (a set counts as scores of 1), then WEIGHTS / AGGREGATE / WITHSCORES /
 * LIMIT; the inputs in order of size (a stable sort: the order of the sums is Redis's), the result
 * sorted by (score, member). The work is done on process-local copies. */

enum { ZOP_UNION, ZOP_INTER, ZOP_DIFF };
enum { AGG_SUM, AGG_MIN, AGG_MAX };

typedef struct zsrc_s {
  int present;
  uint32_t type;
  shmd_ptr_t h; /* member -> score (zset) or member -> "" (set) */
  uint64_t len;
  double weight;
} zsrc_t;

typedef struct zel_s {
  char *m;
  size_t ml;
  double score;
  int src; /* for the union's merge: the input's position in processing order */
} zel_t;

typedef struct zcoll_s {
  zel_t *e;
  size_t n, cap;
  uint32_t type;
  int src;
  double weight;
} zcoll_t;

static int zcoll_add(zcoll_t *c, const void *m, size_t ml, double score) {
  if (c->n == c->cap) {
    size_t nc = c->cap ? 2 * c->cap : 16;
    zel_t *p = realloc(c->e, nc * sizeof *p);
    if (p == NULL)
      return SHMD_ENOMEM;
    c->e = p;
    c->cap = nc;
  }
  zel_t *e = &c->e[c->n];
  if ((e->m = malloc(ml + 1)) == NULL)
    return SHMD_ENOMEM;
  memcpy(e->m, m, ml);
  e->ml = ml;
  e->score = score;
  e->src = c->src;
  c->n++;
  return 0;
}
static void zcoll_free(zcoll_t *c) {
  for (size_t i = 0; i < c->n; i++)
    free(c->e[i].m);
  free(c->e);
  c->e = NULL;
  c->n = c->cap = 0;
}

static int zsrc_visit(const void *k, size_t kl, const void *v, size_t vl, void *arg) {
  zcoll_t *c = arg;
  double d = 1.0;
  if (c->type == KV_ZSET) {
    if (vl != 8)
      return SHMD_ECORRUPT;
    memcpy(&d, v, 8);
  }
  double w = c->weight * d;
  if (isnan(w))
    w = 0;
  return zcoll_add(c, k, kl, w);
}

/* The score of member m in input s (1 for a set); SHMD_ENOTFOUND when absent. */
static int zsrc_find(cc_t *x, const zsrc_t *s, const void *m, size_t ml, double *out) {
  if (!s->present)
    return SHMD_ENOTFOUND;
  if (s->type == KV_SET) {
    int c = shmd_hash_contains(x->c->s, s->h, m, ml);
    if (c < 0)
      return c;
    *out = 1.0;
    return c ? 0 : SHMD_ENOTFOUND;
  }
  size_t vl = 0;
  int rc = shmd_hash_get(x->c->s, s->h, m, ml, out, 8, &vl);
  if (rc == 0 && vl != 8)
    return SHMD_ECORRUPT;
  return rc;
}

static void zagg(double *t, double v, int agg) {
  if (agg == AGG_SUM) {
    *t = *t + v;
    if (isnan(*t))
      *t = 0.0;
  } else if (agg == AGG_MIN) {
    *t = v < *t ? v : *t;
  } else {
    *t = v > *t ? v : *t;
  }
}

static int zel_cmp_member(const void *a, const void *b) {
  const zel_t *x = a, *y = b;
  int c = shmd_bytes_cmp(x->m, x->ml, y->m, y->ml);
  return c ? c : (x->src > y->src) - (x->src < y->src);
}
static int zel_cmp_score(const void *a, const void *b) {
  const zel_t *x = a, *y = b;
  if (x->score < y->score)
    return -1;
  if (x->score > y->score)
    return 1;
  return shmd_bytes_cmp(x->m, x->ml, y->m, y->ml);
}

static int zsetop(cc_t *x, int op, int ni, int store, int card) {
  long long nk;
  if (parse_ll(A(ni), L(ni), &nk))
    return r_error(x->r, ERR_NOTINT);
  if (nk < 1)
    return r_error(x->r, "ERR at least 1 input key is needed for '%s' command", x->name);
  if (nk > x->argc - ni - 1)
    return r_error(x->r, ERR_SYNTAX);
  int n = (int)nk;
  zsrc_t *src = calloc((size_t)n, sizeof *src);
  if (src == NULL)
    return SHMD_ENOMEM;
  int rc = 0, j = ni + 1;
  for (int i = 0; i < n; i++, j++) {
    kv_ref_t ref;
    src[i].weight = 1.0;
    rc = kv_lookup(x->c, A(j), L(j), &ref);
    if (rc == SHMD_ENOTFOUND) {
      rc = 0;
      continue;
    }
    if (rc)
      goto out;
    if (ref.rec->type != KV_ZSET && ref.rec->type != KV_SET) {
      rc = WRONGTYPE();
      goto out;
    }
    src[i].present = 1;
    src[i].type = ref.rec->type;
    src[i].h = ref.a;
    if ((rc = shmd_hash_len(x->c->s, ref.a, &src[i].len)))
      goto out;
  }
  int agg = AGG_SUM, withscores = 0;
  long long limit = 0;
  while (j < x->argc) {
    int remaining = x->argc - j;
    if (op != ZOP_DIFF && !card && remaining >= n + 1 && eq(A(j), L(j), "WEIGHTS")) {
      j++;
      for (int i = 0; i < n; i++, j++)
        if (parse_double(A(j), L(j), &src[i].weight)) {
          rc = r_error(x->r, "ERR weight value is not a float");
          goto out;
        }
    } else if (op != ZOP_DIFF && !card && remaining >= 2 && eq(A(j), L(j), "AGGREGATE")) {
      j++;
      if (eq(A(j), L(j), "SUM"))
        agg = AGG_SUM;
      else if (eq(A(j), L(j), "MIN"))
        agg = AGG_MIN;
      else if (eq(A(j), L(j), "MAX"))
        agg = AGG_MAX;
      else {
        rc = r_error(x->r, ERR_SYNTAX);
        goto out;
      }
      j++;
    } else if (!store && !card && eq(A(j), L(j), "WITHSCORES")) {
      j++;
      withscores = 1;
    } else if (card && remaining >= 2 && eq(A(j), L(j), "LIMIT")) {
      j++;
      if (parse_ll(A(j), L(j), &limit) || limit < 0) {
        rc = r_error(x->r, "ERR LIMIT can't be negative");
        goto out;
      }
      j++;
    } else {
      rc = r_error(x->r, ERR_SYNTAX);
      goto out;
    }
  }
  if (op != ZOP_DIFF) /* smallest first, stably */
    for (int i = 1; i < n; i++)
      for (int k = i; k > 0 && src[k - 1].len > src[k].len; k--) {
        zsrc_t t = src[k];
        src[k] = src[k - 1];
        src[k - 1] = t;
      }
  zcoll_t res = {0};
  uint64_t cardinality = 0;
  if (op == ZOP_INTER || op == ZOP_DIFF) {
    zcoll_t first = {0};
    if (src[0].present && src[0].len > 0) {
      first.type = src[0].type;
      first.weight = op == ZOP_DIFF ? 1.0 : src[0].weight;
      rc = shmd_hash_foreach(x->c->s, src[0].h, zsrc_visit, &first);
    }
    for (size_t k = 0; k < first.n && rc == 0; k++) {
      zel_t *e = &first.e[k];
      double score = e->score, v;
      int i, keep = 1;
      for (i = 1; i < n && rc == 0; i++) {
        int f = zsrc_find(x, &src[i], e->m, e->ml, &v);
        if (f < 0 && f != SHMD_ENOTFOUND) {
          rc = f;
          break;
        }
        if (op == ZOP_INTER) {
          if (f == SHMD_ENOTFOUND) {
            keep = 0;
            break;
          }
          zagg(&score, v * src[i].weight, agg);
        } else if (f == 0) {
          keep = 0;
          break;
        }
      }
      if (rc || !keep)
        continue;
      if (card) {
        cardinality++;
        if (limit && cardinality >= (uint64_t)limit)
          break;
      } else {
        rc = zcoll_add(&res, e->m, e->ml, score);
      }
    }
    zcoll_free(&first);
  } else {
    zcoll_t all = {0};
    for (int i = 0; i < n && rc == 0; i++) {
      if (!src[i].present)
        continue;
      all.type = src[i].type;
      all.weight = src[i].weight;
      all.src = i;
      rc = shmd_hash_foreach(x->c->s, src[i].h, zsrc_visit, &all);
    }
    if (rc == 0 && all.n)
      qsort(all.e, all.n, sizeof *all.e, zel_cmp_member);
    for (size_t k = 0; k < all.n && rc == 0;) {
      size_t e = k + 1;
      double score = all.e[k].score;
      while (e < all.n && all.e[e].ml == all.e[k].ml && memcmp(all.e[e].m, all.e[k].m, all.e[k].ml) == 0)
        zagg(&score, all.e[e++].score, agg);
      rc = zcoll_add(&res, all.e[k].m, all.e[k].ml, score);
      k = e;
    }
    zcoll_free(&all);
  }
  if (rc)
    goto done;
  if (card) {
    rc = r_int(x->r, (int64_t)cardinality);
    goto done;
  }
  if (res.n)
    qsort(res.e, res.n, sizeof *res.e, zel_cmp_score);
  if (store) {
    if ((rc = kv_delete(x->c, A(1), L(1))) == SHMD_ENOTFOUND)
      rc = 0;
    kv_ref_t dst;
    if (rc == 0 && res.n)
      rc = kv_container(x->c, A(1), L(1), KV_ZSET, 1, &dst);
    for (size_t k = 0; k < res.n && rc == 0; k++)
      rc = z_insert(x->c, &dst, res.e[k].m, res.e[k].ml, res.e[k].score);
    if (rc == 0)
      rc = r_int(x->r, (int64_t)res.n);
    goto done;
  }
  vec_t v = {0};
  for (size_t k = 0; k < res.n && rc == 0; k++) {
    rc = vec_bulk(&v, res.e[k].m, res.e[k].ml);
    if (rc == 0 && withscores) {
      char buf[64];
      rc = vec_bulk(&v, buf, fmt_double(res.e[k].score, buf, sizeof buf));
    }
  }
  if (rc)
    vec_free(&v);
  else
    vec_to(&v, x->r);
done:
  zcoll_free(&res);
out:
  free(src);
  return rc;
}

int shmd__kv_cmd_zunion(cc_t *x) { return zsetop(x, ZOP_UNION, 1, 0, 0); }
int shmd__kv_cmd_zinter(cc_t *x) { return zsetop(x, ZOP_INTER, 1, 0, 0); }
int shmd__kv_cmd_zdiff(cc_t *x) { return zsetop(x, ZOP_DIFF, 1, 0, 0); }
int shmd__kv_cmd_zunionstore(cc_t *x) { return zsetop(x, ZOP_UNION, 2, 1, 0); }
int shmd__kv_cmd_zinterstore(cc_t *x) { return zsetop(x, ZOP_INTER, 2, 1, 0); }
int shmd__kv_cmd_zdiffstore(cc_t *x) { return zsetop(x, ZOP_DIFF, 2, 1, 0); }
int shmd__kv_cmd_zintercard(cc_t *x) { return zsetop(x, ZOP_INTER, 1, 0, 1); }
int shmd__kv_cmd_zrandmember(cc_t *x) { return shmd__kv_randfield(x, KV_ZSET, "WITHSCORES"); }
