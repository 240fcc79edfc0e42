/* SPDX-License-Identifier: MIT */
/*
 * Sorted-set commands (Redis's t_zset.c): ZADD ZREM ZSCORE ZINCRBY ZCARD ZRANK ZREVRANK ZRANGE
 * ZRANGEBYSCORE ZCOUNT ZREMRANGEBYRANK ZSCAN ZPOPMIN ZPOPMAX ZMPOP. As Redis pairs a dict with a skiplist, a sorted set
 * is a hash container (member -> 8-byte double score) plus an order-statistics rbtree keyed by
 * (score, member) in SHMD_RBTREE_DOUBLE_BYTES order (shmd_rbtree_dkey()), so ranks, counts and
 * score ranges cost O(log n). -0.0 is stored as +0.0.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv/cmd.h"

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
  k->len = shmd_rbtree_dkey(score, m, ml, k->p);
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

/* Sets member's score (inserting it when new). */
static int z_set_score(kv_ctx_t *c, kv_ref_t *ref, const void *m, size_t ml, int had, double old,
                       double score) {
  dkey_t k;
  int rc;
  if (score == 0)
    score = 0.0;
  if (had) {
    if ((rc = dkey_make(&k, old, m, ml)))
      return rc;
    rc = shmd_rbtree_delete(c->s, ref->b, k.p, k.len);
    dkey_free(&k);
    if (rc)
      return rc == SHMD_ENOTFOUND ? SHMD_ECORRUPT : rc;
  }
  if ((rc = dkey_make(&k, score, m, ml)))
    return rc;
  rc = shmd_rbtree_put(c->s, ref->b, k.p, k.len, "", 0, SHMD_RBTREE_UPSERT, NULL);
  dkey_free(&k);
  if (rc)
    return rc;
  return shmd_hash_put(c->s, ref->a, m, ml, &score, 8, SHMD_HASH_UPSERT, NULL);
}

static int z_remove(kv_ctx_t *c, kv_ref_t *ref, const void *m, size_t ml) {
  double old;
  int rc = z_get_score(c, ref, m, ml, &old);
  if (rc)
    return rc;
  dkey_t k;
  if ((rc = dkey_make(&k, old, m, ml)))
    return rc;
  rc = shmd_rbtree_delete(c->s, ref->b, k.p, k.len);
  dkey_free(&k);
  if (rc)
    return rc == SHMD_ENOTFOUND ? SHMD_ECORRUPT : rc;
  return shmd_hash_del(c->s, ref->a, m, ml);
}

int shmd__kv_zadd_one(kv_ctx_t *c, kv_ref_t *ref, const void *m, size_t ml, double score, int nx,
                      int xx, int gt, int lt, int incr, int *added, int *changed, double *out) {
  double old = 0;
  int rc = z_get_score(c, ref, m, ml, &old);
  if (rc && rc != SHMD_ENOTFOUND)
    return rc;
  int had = rc == 0;
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
  if ((rc = z_set_score(c, ref, m, ml, had, old, nw)))
    return rc;
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
  rc = shmd_rbtree_rank(c->s, ref->b, k.p, k.len, rank);
  dkey_free(&k);
  if (rc)
    return rc == SHMD_ENOTFOUND ? SHMD_ECORRUPT : rc;
  if (rev) {
    uint64_t n;
    if ((rc = shmd_rbtree_len(c->s, ref->b, &n)))
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
static int parse_bound(const char *s, size_t n, zbound_t *b) {
  b->excl = 0;
  if (n && s[0] == '(') {
    b->excl = 1;
    s++;
    n--;
  }
  return parse_double(s, n, &b->v);
}

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
      return shmd_rbtree_len(c->s, tree, out);
    v = next_up(v);
  }
  if (v == 0)
    v = 0.0;
  unsigned char key[8];
  shmd_rbtree_dkey(v, NULL, 0, key);
  return shmd_rbtree_count_below(c->s, tree, key, 8, 0, out);
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
    int rc = shmd_rbtree_walk_rank(x->c->s, tree, start, batch, rev, zwalk_visit, &w, &got);
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

static int zrange_gen(cc_t *x, int byscore, int rev, int scores, long long offset, long long count,
                      int ai, int bi) {
  kv_ref_t ref;
  uint64_t lo = 0, hi = 0;
  if (byscore) {
    zbound_t min, max;
    /* For REV the first argument is the max. */
    if (parse_bound(A(ai), L(ai), rev ? &max : &min) || parse_bound(A(bi), L(bi), rev ? &min : &max))
      return r_error(x->r, "ERR min or max is not a float");
    int rc = need(x, KV_ZSET, MISS_EMPTY, &ref);
    if (rc <= 0)
      return rc;
    if ((rc = z_score_range(x->c, ref.b, min, max, &lo, &hi)))
      return rc;
  } else {
    long long a, b;
    if (parse_ll(A(ai), L(ai), &a) || parse_ll(A(bi), L(bi), &b))
      return r_error(x->r, ERR_NOTINT);
    int rc = need(x, KV_ZSET, MISS_EMPTY, &ref);
    if (rc <= 0)
      return rc;
    uint64_t len;
    if ((rc = shmd_rbtree_len(x->c->s, ref.b, &len)))
      return rc;
    long long n = (long long)len;
    if (a < 0) a += n;
    if (b < 0) b += n;
    if (a < 0) a = 0;
    if (a > b || a >= n)
      return r_array(x->r, 0);
    if (b >= n) b = n - 1;
    if (rev) {
      /* ranks in reverse order a..b are forward ranks n-1-b .. n-1-a */
      lo = (uint64_t)(n - 1 - b);
      hi = (uint64_t)(n - a);
    } else {
      lo = (uint64_t)a;
      hi = (uint64_t)b + 1;
    }
  }
  return z_reply_ranks(x, ref.b, lo, hi, rev, offset, count, scores);
}

int shmd__kv_cmd_zrange(cc_t *x) {
  int byscore = 0, bylex = 0, rev = 0, scores = 0, limit = 0;
  long long offset = 0, count = -1;
  for (int i = 4; i < x->argc; i++) {
    if (eq(A(i), L(i), "BYSCORE")) byscore = 1;
    else if (eq(A(i), L(i), "BYLEX")) bylex = 1;
    else if (eq(A(i), L(i), "REV")) rev = 1;
    else if (eq(A(i), L(i), "WITHSCORES")) scores = 1;
    else if (eq(A(i), L(i), "LIMIT") && i + 2 < x->argc) {
      if (parse_ll(A(i + 1), L(i + 1), &offset) || parse_ll(A(i + 2), L(i + 2), &count))
        return r_error(x->r, ERR_NOTINT);
      limit = 1;
      i += 2;
    } else {
      return r_error(x->r, ERR_SYNTAX);
    }
  }
  if (bylex)
    return r_error(x->r, "ERR BYLEX is not supported by shmdict");
  if (byscore && bylex)
    return r_error(x->r, ERR_SYNTAX);
  if (limit && !byscore)
    return r_error(x->r, "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX");
  return zrange_gen(x, byscore, rev, scores, offset, count, 2, 3);
}

int shmd__kv_cmd_zrangebyscore(cc_t *x) {
  int scores = 0;
  long long offset = 0, count = -1;
  for (int i = 4; i < x->argc; i++) {
    if (eq(A(i), L(i), "WITHSCORES")) scores = 1;
    else if (eq(A(i), L(i), "LIMIT") && i + 2 < x->argc) {
      if (parse_ll(A(i + 1), L(i + 1), &offset) || parse_ll(A(i + 2), L(i + 2), &count))
        return r_error(x->r, ERR_NOTINT);
      i += 2;
    } else {
      return r_error(x->r, ERR_SYNTAX);
    }
  }
  return zrange_gen(x, 1, 0, scores, offset, count, 2, 3);
}

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

int shmd__kv_cmd_zremrangebyrank(cc_t *x) {
  long long a, b;
  if (parse_ll(A(2), L(2), &a) || parse_ll(A(3), L(3), &b))
    return r_error(x->r, ERR_NOTINT);
  kv_ref_t ref;
  int rc = need(x, KV_ZSET, MISS_ZERO, &ref);
  if (rc <= 0)
    return rc;
  uint64_t len;
  if ((rc = shmd_rbtree_len(x->c->s, ref.b, &len)))
    return rc;
  long long n = (long long)len;
  if (a < 0) a += n;
  if (b < 0) b += n;
  if (a < 0) a = 0;
  if (a > b || a >= n)
    return r_int(x->r, 0);
  if (b >= n) b = n - 1;
  shmd_reply_t tmp = {0};
  cc_t y = *x;
  y.r = &tmp;
  if ((rc = z_reply_ranks(&y, ref.b, (uint64_t)a, (uint64_t)b + 1, 0, 0, -1, 0)))
    return rc;
  for (size_t i = 0; i < tmp.nelems && rc == 0; i++)
    rc = z_remove(x->c, &ref, tmp.elems[i].str, tmp.elems[i].len);
  int64_t removed = (int64_t)tmp.nelems;
  shmd__kv_reply_clear(&tmp);
  if (rc == 0)
    rc = kv_drop_if_empty(x->c, A(1), L(1), &ref);
  return rc ? rc : r_int(x->r, removed);
}

int shmd__kv_cmd_zscan(cc_t *x) { return shmd__kv_xscan(x, KV_ZSET, 2); }

/* ---------------------------------------------------------------------------------------------- */
/* ZPOPMIN, ZPOPMAX, ZMPOP (the non-blocking halves of the server's BZPOPMIN / BZPOPMAX / BZMPOP) */

/* Pops up to `count` members from the low (max = 0) or high end of the set at ref into r as the
 * flat array [member, score, ...]; deletes the key when it empties. */
static int z_pop(cc_t *x, const char *key, size_t klen, kv_ref_t *ref, int max, long long count, shmd_reply_t *r) {
  uint64_t len;
  int rc = shmd_rbtree_len(x->c->s, ref->b, &len);
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
  x->r->type = SHMD_REPLY_NIL; /* a null array */
  return 0;
}
