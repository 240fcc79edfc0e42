/* SPDX-License-Identifier: MIT */
/*
 * Hash commands (Redis's t_hash.c): HSET HMSET HSETNX HGET HMGET HDEL HEXISTS HLEN HKEYS HVALS
 * HGETALL HINCRBY HSCAN. A hash key's value is one hash container (field -> value). A set is the
 * same container with empty values, so the member-wise helpers here (delete, membership, count,
 * walk) serve t_set.c too, parameterised by the type the key must hold.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/cmd.h"

static int c_hset_gen(cc_t *x, int nx) {
  if (!nx && x->argc % 2 != 0)
    return r_error(x->r, "ERR wrong number of arguments for '%s' command", eq(A(0), L(0), "hmset") ? "hmset" : "hset");
  kv_ref_t ref;
  int rc = kv_container(x->c, A(1), L(1), KV_HASH, 1, &ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc)
    return rc;
  int64_t added = 0;
  for (int i = 2; i + 1 < x->argc; i += 2) {
    int created = 0;
    rc = shmd_hash_put(x->c->s, ref.a, A(i), L(i), A(i + 1), L(i + 1), nx ? SHMD_HASH_INSERT : SHMD_HASH_UPSERT, &created);
    if (rc == SHMD_EEXIST)
      rc = 0;
    if (rc)
      return rc;
    added += created;
  }
  if (eq(A(0), L(0), "hmset"))
    return r_ok(x->r);
  return r_int(x->r, added);
}
int shmd__kv_cmd_hset(cc_t *x) { return c_hset_gen(x, 0); }
int shmd__kv_cmd_hsetnx(cc_t *x) { return c_hset_gen(x, 1); }

static int hget_into(cc_t *x, shmd_ptr_t h, const char *f, size_t fl, shmd_reply_t *r) {
  void *v;
  size_t vl;
  int rc = shmd_hash_get_alloc(x->c->s, h, f, fl, &v, &vl);
  if (rc == SHMD_ENOTFOUND)
    return r_nil(r);
  if (rc)
    return rc;
  if ((rc = shmd__kv_charge(1, str_cost(vl)))) { /* one stored value was copied: charged once it is known */
    free(v);
    return rc;
  }
  r->type = SHMD_REPLY_BULK;
  r->str = v;
  r->len = vl;
  return 0;
}

int shmd__kv_cmd_hget(cc_t *x) {
  kv_ref_t ref;
  int rc = need(x, KV_HASH, MISS_NIL, &ref);
  if (rc <= 0)
    return rc;
  return hget_into(x, ref.a, A(2), L(2), x->r);
}

int shmd__kv_cmd_hmget(cc_t *x) {
  kv_ref_t ref;
  int rc = kv_lookup_type(x->c, A(1), L(1), KV_HASH, &ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc && rc != SHMD_ENOTFOUND)
    return rc;
  int missing = rc == SHMD_ENOTFOUND;
  if ((rc = r_array(x->r, (size_t)x->argc - 2)))
    return rc;
  for (int i = 2; i < x->argc; i++) {
    rc = missing ? r_nil(&x->r->elems[i - 2]) : hget_into(x, ref.a, A(i), L(i), &x->r->elems[i - 2]);
    if (rc)
      return rc;
  }
  return 0;
}

/* HDEL / SREM, HEXISTS / SISMEMBER, HLEN / SCARD: a set is a hash with empty values, so these
 * pairs are one implementation each, parameterised by the type the key must hold. */
int shmd__kv_del_members(cc_t *x, int type) {
  kv_ref_t ref;
  int rc = need(x, type, MISS_ZERO, &ref);
  if (rc <= 0)
    return rc;
  int64_t n = 0;
  for (int i = 2; i < x->argc; i++) {
    rc = shmd_hash_del(x->c->s, ref.a, A(i), L(i));
    if (rc == 0)
      n++;
    else if (rc != SHMD_ENOTFOUND)
      return rc;
  }
  if ((rc = kv_drop_if_empty(x->c, A(1), L(1), &ref)))
    return rc;
  return r_int(x->r, n);
}

int shmd__kv_has_member(cc_t *x, int type) {
  kv_ref_t ref;
  int rc = need(x, type, MISS_ZERO, &ref);
  if (rc <= 0)
    return rc;
  rc = shmd_hash_contains(x->c->s, ref.a, A(2), L(2));
  return rc < 0 ? rc : r_int(x->r, rc);
}

int shmd__kv_count_members(cc_t *x, int type) {
  kv_ref_t ref;
  int rc = need(x, type, MISS_ZERO, &ref);
  if (rc <= 0)
    return rc;
  uint64_t n;
  if ((rc = shmd_hash_len(x->c->s, ref.a, &n)))
    return rc;
  return r_int(x->r, (int64_t)n);
}

int shmd__kv_cmd_hdel(cc_t *x) { return shmd__kv_del_members(x, KV_HASH); }
int shmd__kv_cmd_hexists(cc_t *x) { return shmd__kv_has_member(x, KV_HASH); }
int shmd__kv_cmd_hlen(cc_t *x) { return shmd__kv_count_members(x, KV_HASH); }

int shmd__kv_hwalk_visit(const void *k, size_t kl, const void *val, size_t vl, void *arg) {
  hwalk_t *w = arg;
  int rc;
  if (w->pat && !shmd__kv_glob(w->pat, w->pl, k, kl, 0))
    return 0;
  if (w->keys && (rc = vec_bulk(&w->v, k, kl)))
    return rc;
  if (w->vals && (rc = vec_bulk(&w->v, val, vl)))
    return rc;
  return 0;
}

int shmd__kv_hash_walk(cc_t *x, uint32_t type, int keys, int vals) {
  kv_ref_t ref;
  int rc = need(x, type, MISS_EMPTY, &ref);
  if (rc <= 0)
    return rc;
  hwalk_t w = {{0}, keys, vals, NULL, 0};
  if ((rc = shmd_hash_foreach(x->c->s, ref.a, shmd__kv_hwalk_visit, &w))) {
    vec_free(&w.v);
    return rc;
  }
  vec_to(&w.v, x->r);
  return 0;
}
int shmd__kv_cmd_hkeys(cc_t *x) { return shmd__kv_hash_walk(x, KV_HASH, 1, 0); }
int shmd__kv_cmd_hvals(cc_t *x) { return shmd__kv_hash_walk(x, KV_HASH, 0, 1); }
int shmd__kv_cmd_hgetall(cc_t *x) { return shmd__kv_hash_walk(x, KV_HASH, 1, 1); }

int shmd__kv_cmd_hincrby(cc_t *x) {
  long long by, v = 0;
  if (parse_ll(A(3), L(3), &by))
    return r_error(x->r, ERR_NOTINT);
  kv_ref_t ref;
  int rc = kv_lookup_type(x->c, A(1), L(1), KV_HASH, &ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc == 0) {
    char buf[32];
    size_t vl = 0;
    rc = shmd_hash_get(x->c->s, ref.a, A(2), L(2), buf, sizeof buf, &vl);
    if (rc == 0 && parse_ll(buf, vl, &v))
      return r_error(x->r, "ERR hash value is not an integer");
    if (rc == SHMD_ERANGE)
      return r_error(x->r, "ERR hash value is not an integer");
    if (rc && rc != SHMD_ENOTFOUND)
      return rc;
  } else if (rc != SHMD_ENOTFOUND) {
    return rc;
  }
  if ((by < 0 && v < 0 && by < LLONG_MIN - v) || (by > 0 && v > 0 && by > LLONG_MAX - v))
    return r_error(x->r, ERR_OVERFLOW);
  v += by;
  if ((rc = kv_container(x->c, A(1), L(1), KV_HASH, 1, &ref)))
    return rc;
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%lld", v);
  if ((rc = shmd_hash_put(x->c->s, ref.a, A(2), L(2), buf, (size_t)n, SHMD_HASH_UPSERT, NULL)))
    return rc;
  return r_int(x->r, v);
}

int shmd__kv_cmd_hscan(cc_t *x) { return shmd__kv_xscan(x, KV_HASH, 1); }

/* HINCRBYFLOAT key field increment: the increment first (Redis reads it before the key), long
 * double arithmetic printed as INCRBYFLOAT prints it. */
int shmd__kv_cmd_hincrbyfloat(cc_t *x) {
  long double by, v = 0;
  if (parse_ldouble(A(3), L(3), &by))
    return r_error(x->r, ERR_NOTFLOAT);
  if (isnan(by) || isinf(by))
    return r_error(x->r, "ERR value is NaN or Infinity");
  kv_ref_t ref;
  int rc = kv_container(x->c, A(1), L(1), KV_HASH, 1, &ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc)
    return rc;
  void *cur;
  size_t cl;
  rc = shmd_hash_get_alloc(x->c->s, ref.a, A(2), L(2), &cur, &cl);
  if (rc == 0) {
    int bad = parse_ldouble(cur, cl, &v);
    free(cur);
    if (bad)
      return r_error(x->r, "ERR hash value is not a float");
  } else if (rc != SHMD_ENOTFOUND) {
    return rc;
  }
  v += by;
  if (isnan(v) || isinf(v))
    return r_error(x->r, "ERR increment would produce NaN or Infinity");
  char buf[SHMD_KV_LDOUBLE_CHARS];
  size_t n = fmt_ldouble(v, buf, sizeof buf);
  if ((rc = shmd_hash_put(x->c->s, ref.a, A(2), L(2), buf, n, SHMD_HASH_UPSERT, NULL)))
    return rc;
  return r_bulk(x->r, buf, n);
}

int shmd__kv_cmd_hstrlen(cc_t *x) {
  kv_ref_t ref;
  int rc = need(x, KV_HASH, MISS_ZERO, &ref);
  if (rc <= 0)
    return rc;
  size_t vl = 0;
  rc = shmd_hash_get(x->c->s, ref.a, A(2), L(2), NULL, 0, &vl);
  if (rc == SHMD_ENOTFOUND)
    return r_int(x->r, 0);
  if (rc && rc != SHMD_ERANGE)
    return rc;
  return r_int(x->r, (int64_t)vl);
}

/* HRANDFIELD key [count [WITHVALUES]] (and ZRANDMEMBER through zrand = 1: WITHSCORES, the value
 * being the 8-byte score), with Redis's argument checks before the key's. */
int shmd__kv_randfield(cc_t *x, uint32_t type, const char *withword) {
  long long count = 1;
  int with_count = x->argc >= 3, withvals = 0;
  if (with_count) {
    if (parse_ll(A(2), L(2), &count))
      return r_error(x->r, ERR_NOTINT);
    if (count == LLONG_MIN)
      return r_error(x->r, ERR_COUNT_RANGE);
    if (x->argc > 4 || (x->argc == 4 && !eq(A(3), L(3), withword)))
      return r_error(x->r, ERR_SYNTAX);
    if (x->argc == 4) {
      withvals = 1;
      if (count < -LLONG_MAX / 2 || count > LLONG_MAX / 2)
        return r_error(x->r, "ERR value is out of range");
    }
  }
  kv_ref_t ref;
  int rc = need(x, type, with_count ? MISS_EMPTY : MISS_NIL, &ref);
  if (rc <= 0)
    return rc;
  if (with_count && count == 0)
    return r_array(x->r, 0);
  if (count < 0 && (rc = shmd__kv_fits((uint64_t)-count * (withvals ? 2 : 1), sizeof(shmd_reply_t) + str_cost(0))))
    return rc;
  vec_t out = {0};
  if ((rc = shmd__kv_rand_members(x, ref.a, with_count, count, &out)))
    return rc;
  if (!with_count) {
    *x->r = out.e[0];
    free(out.e);
    return 0;
  }
  if (!withvals) {
    vec_to(&out, x->r);
    return 0;
  }
  if ((rc = r_array(x->r, out.n * 2))) {
    vec_free(&out);
    return rc;
  }
  for (size_t i = 0; i < out.n && rc == 0; i++) {
    x->r->elems[2 * i] = out.e[i];
    memset(&out.e[i], 0, sizeof out.e[i]);
    shmd_reply_t *v = &x->r->elems[2 * i + 1];
    if (type == KV_HASH) {
      rc = hget_into(x, ref.a, x->r->elems[2 * i].str, x->r->elems[2 * i].len, v);
    } else {
      double d;
      size_t vl = 0;
      rc = shmd_hash_get(x->c->s, ref.a, x->r->elems[2 * i].str, x->r->elems[2 * i].len, &d, 8, &vl);
      if (rc == 0 && vl != 8)
        rc = SHMD_ECORRUPT;
      if (rc == 0) {
        char buf[64];
        rc = r_bulk(v, buf, fmt_double(d, buf, sizeof buf));
      }
    }
  }
  vec_free(&out);
  return rc;
}
int shmd__kv_cmd_hrandfield(cc_t *x) { return shmd__kv_randfield(x, KV_HASH, "WITHVALUES"); }
