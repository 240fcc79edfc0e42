/* SPDX-License-Identifier: MIT */
/*
 * List commands (Redis's t_list.c): LPUSH RPUSH LPOP RPOP LLEN LINDEX LRANGE LSET LREM LTRIM
 * LINSERT. A list key's value is one list container; a command that empties it deletes the key.
 */
#include <stdlib.h>
#include <string.h>

#include "kv/cmd.h"

static int c_push(cc_t *x, int where) {
  kv_ref_t ref;
  int rc = kv_container(x->c, A(1), L(1), KV_LIST, 1, &ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc)
    return rc;
  uint64_t n = 0;
  for (int i = 2; i < x->argc; i++)
    if ((rc = shmd_list_push(x->c->s, ref.a, where, A(i), L(i), &n)))
      return rc;
  return r_int(x->r, (int64_t)n);
}
int shmd__kv_cmd_lpush(cc_t *x) { return c_push(x, SHMD_LIST_HEAD); }
int shmd__kv_cmd_rpush(cc_t *x) { return c_push(x, SHMD_LIST_TAIL); }

static int vec_visit(const void *data, size_t len, void *arg) { return vec_bulk(arg, data, len); }

static int c_pop(cc_t *x, int where) {
  long long count = 1;
  int with_count = x->argc == 3;
  if (x->argc > 3)
    return r_error(x->r, "ERR wrong number of arguments for '%s' command", where ? "rpop" : "lpop");
  if (with_count && (parse_ll(A(2), L(2), &count) || count < 0))
    return r_error(x->r, "ERR value is out of range, must be positive");
  kv_ref_t ref;
  int rc = need(x, KV_LIST, with_count ? MISS_NILARR : MISS_NIL, &ref);
  if (rc <= 0)
    return rc;
  vec_t v = {0};
  for (long long i = 0; i < count; i++) {
    rc = shmd_list_pop_fn(x->c->s, ref.a, where, vec_visit, &v);
    if (rc == SHMD_ENOTFOUND)
      break;
    if (rc) {
      vec_free(&v);
      return rc;
    }
  }
  if ((rc = kv_drop_if_empty(x->c, A(1), L(1), &ref))) {
    vec_free(&v);
    return rc;
  }
  if (!with_count) {
    if (v.n == 0) {
      vec_free(&v);
      return r_nil(x->r);
    }
    *x->r = v.e[0];
    free(v.e);
    return 0;
  }
  vec_to(&v, x->r);
  return 0;
}
int shmd__kv_cmd_lpop(cc_t *x) { return c_pop(x, SHMD_LIST_HEAD); }
int shmd__kv_cmd_rpop(cc_t *x) { return c_pop(x, SHMD_LIST_TAIL); }

int shmd__kv_cmd_llen(cc_t *x) {
  kv_ref_t ref;
  int rc = need(x, KV_LIST, MISS_ZERO, &ref);
  if (rc <= 0)
    return rc;
  uint64_t n;
  if ((rc = shmd_list_len(x->c->s, ref.a, &n)))
    return rc;
  return r_int(x->r, (int64_t)n);
}

int shmd__kv_cmd_lindex(cc_t *x) {
  long long idx;
  if (parse_ll(A(2), L(2), &idx))
    return r_error(x->r, ERR_NOTINT);
  kv_ref_t ref;
  int rc = need(x, KV_LIST, MISS_NIL, &ref);
  if (rc <= 0)
    return rc;
  vec_t v = {0};
  uint64_t n;
  if ((rc = shmd_list_len(x->c->s, ref.a, &n)))
    return rc;
  long long i = idx < 0 ? idx + (long long)n : idx;
  if (i < 0 || i >= (long long)n)
    return r_nil(x->r);
  if ((rc = shmd_list_range(x->c->s, ref.a, i, i, vec_visit, &v))) {
    vec_free(&v);
    return rc;
  }
  if (v.n != 1) {
    vec_free(&v);
    return r_nil(x->r);
  }
  *x->r = v.e[0];
  free(v.e);
  return 0;
}

int shmd__kv_cmd_lrange(cc_t *x) {
  long long a, b;
  if (parse_ll(A(2), L(2), &a) || parse_ll(A(3), L(3), &b))
    return r_error(x->r, ERR_NOTINT);
  kv_ref_t ref;
  int rc = need(x, KV_LIST, MISS_EMPTY, &ref);
  if (rc <= 0)
    return rc;
  vec_t v = {0};
  if ((rc = shmd_list_range(x->c->s, ref.a, a, b, vec_visit, &v))) {
    vec_free(&v);
    return rc;
  }
  vec_to(&v, x->r);
  return 0;
}

int shmd__kv_cmd_lset(cc_t *x) {
  long long idx;
  if (parse_ll(A(2), L(2), &idx))
    return r_error(x->r, ERR_NOTINT);
  kv_ref_t ref;
  int rc = kv_lookup_type(x->c, A(1), L(1), KV_LIST, &ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc == SHMD_ENOTFOUND)
    return r_error(x->r, "ERR no such key");
  if (rc)
    return rc;
  rc = shmd_list_set(x->c->s, ref.a, idx, A(3), L(3));
  if (rc == SHMD_ERANGE)
    return r_error(x->r, "ERR index out of range");
  return rc ? rc : r_ok(x->r);
}

int shmd__kv_cmd_lrem(cc_t *x) {
  long long count;
  if (parse_ll(A(2), L(2), &count))
    return r_error(x->r, ERR_NOTINT);
  kv_ref_t ref;
  int rc = need(x, KV_LIST, MISS_ZERO, &ref);
  if (rc <= 0)
    return rc;
  uint64_t removed = 0;
  if ((rc = shmd_list_rem(x->c->s, ref.a, count, A(3), L(3), &removed)))
    return rc;
  if ((rc = kv_drop_if_empty(x->c, A(1), L(1), &ref)))
    return rc;
  return r_int(x->r, (int64_t)removed);
}

int shmd__kv_cmd_ltrim(cc_t *x) {
  long long a, b;
  if (parse_ll(A(2), L(2), &a) || parse_ll(A(3), L(3), &b))
    return r_error(x->r, ERR_NOTINT);
  kv_ref_t ref;
  int rc = kv_lookup_type(x->c, A(1), L(1), KV_LIST, &ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc == SHMD_ENOTFOUND)
    return r_ok(x->r);
  if (rc)
    return rc;
  if ((rc = shmd_list_trim(x->c->s, ref.a, a, b)))
    return rc;
  if ((rc = kv_drop_if_empty(x->c, A(1), L(1), &ref)))
    return rc;
  return r_ok(x->r);
}

int shmd__kv_cmd_linsert(cc_t *x) {
  int after;
  if (eq(A(2), L(2), "BEFORE"))
    after = 0;
  else if (eq(A(2), L(2), "AFTER"))
    after = 1;
  else
    return r_error(x->r, ERR_SYNTAX);
  kv_ref_t ref;
  int rc = need(x, KV_LIST, MISS_ZERO, &ref);
  if (rc <= 0)
    return rc;
  uint64_t n = 0;
  rc = shmd_list_insert(x->c->s, ref.a, after, A(3), L(3), A(4), L(4), &n);
  if (rc == SHMD_ENOTFOUND)
    return r_int(x->r, -1);
  return rc ? rc : r_int(x->r, (int64_t)n);
}
