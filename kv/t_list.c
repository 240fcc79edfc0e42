/* SPDX-License-Identifier: MIT */
/*
 * List commands (Redis's t_list.c): LPUSH RPUSH LPOP RPOP LLEN LINDEX LRANGE LSET LREM LTRIM
 * LINSERT LMOVE LMPOP. A list key's value is one list container; a command that empties it deletes
 * the key. The blocking forms (BLPOP, BLMOVE, ...) are the server's: they run LMPOP / LMOVE.
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

/* ---------------------------------------------------------------------------------------------- */
/* LMOVE and LMPOP (the non-blocking halves of the server's BLMOVE / BLMPOP / BLPOP / BRPOP) */

/* LEFT / RIGHT: 0 / 1 (SHMD_LIST_HEAD / SHMD_LIST_TAIL), -1 otherwise. */
static int list_side(const char *s, size_t n) {
  if (eq(s, n, "LEFT"))
    return SHMD_LIST_HEAD;
  if (eq(s, n, "RIGHT"))
    return SHMD_LIST_TAIL;
  return -1;
}

int shmd__kv_cmd_lmove(cc_t *x) {
  int from = list_side(A(3), L(3)), to = list_side(A(4), L(4));
  if (from < 0 || to < 0)
    return r_error(x->r, ERR_SYNTAX);
  kv_ref_t src;
  int rc = kv_lookup_type(x->c, A(1), L(1), KV_LIST, &src);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc == SHMD_ENOTFOUND)
    return r_nil(x->r);
  if (rc)
    return rc;
  /* Redis checks the destination's type before it pops. */
  kv_ref_t dst;
  rc = kv_lookup_type(x->c, A(2), L(2), KV_LIST, &dst);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc && rc != SHMD_ENOTFOUND)
    return rc;
  vec_t v = {0};
  if ((rc = shmd_list_pop_fn(x->c->s, src.a, from, vec_visit, &v))) {
    vec_free(&v);
    return rc == SHMD_ENOTFOUND ? SHMD_ECORRUPT : rc; /* a list key is never empty */
  }
  if (v.n != 1) {
    vec_free(&v);
    return SHMD_ECORRUPT;
  }
  /* The source may now be empty: drop it first, so that LMOVE k k on a one-element list pushes
   * into a fresh list under the same key. */
  if ((rc = kv_drop_if_empty(x->c, A(1), L(1), &src)) ||
      (rc = kv_container(x->c, A(2), L(2), KV_LIST, 1, &dst)) ||
      (rc = shmd_list_push(x->c->s, dst.a, to, v.e[0].str, v.e[0].len, NULL))) {
    vec_free(&v);
    return rc;
  }
  *x->r = v.e[0];
  free(v.e);
  return 0;
}

/* Parses "numkeys key... <where> [COUNT count]" from argument `at` (LMPOP: 1; the server's
 * BLMPOP: 2) as Redis's lmpop/zmpop do. Returns 1 with the values set, or 0 when replied. */
int shmd__kv_parse_mpop(cc_t *x, int at, const char *w0, const char *w1, long long *numkeys, int *where,
                        long long *count) {
  long long nk;
  if (parse_ll(A(at), L(at), &nk) || nk <= 0)
    return r_error(x->r, "ERR numkeys should be greater than 0"), 0;
  if (nk > x->argc - at - 2)
    return r_error(x->r, ERR_SYNTAX), 0;
  int wi = at + 1 + (int)nk;
  if (eq(A(wi), L(wi), w0))
    *where = 0;
  else if (eq(A(wi), L(wi), w1))
    *where = 1;
  else
    return r_error(x->r, ERR_SYNTAX), 0;
  *count = -1;
  for (int i = wi + 1; i < x->argc; i++) {
    if (eq(A(i), L(i), "COUNT") && i + 1 < x->argc && *count < 0) {
      long long c;
      if (parse_ll(A(i + 1), L(i + 1), &c) || c <= 0)
        return r_error(x->r, "ERR count should be greater than 0"), 0;
      *count = c;
      i++;
    } else {
      return r_error(x->r, ERR_SYNTAX), 0;
    }
  }
  if (*count < 0)
    *count = 1;
  *numkeys = nk;
  return 1;
}

int shmd__kv_cmd_lmpop(cc_t *x) {
  long long nk, count;
  int where;
  if (!shmd__kv_parse_mpop(x, 1, "LEFT", "RIGHT", &nk, &where, &count))
    return 0;
  for (int k = 2; k < 2 + nk; k++) {
    kv_ref_t ref;
    int rc = kv_lookup_type(x->c, A(k), L(k), KV_LIST, &ref);
    if (rc == SHMD_EWRONGTYPE)
      return WRONGTYPE();
    if (rc == SHMD_ENOTFOUND)
      continue;
    if (rc)
      return rc;
    vec_t v = {0};
    for (long long i = 0; i < count; i++) {
      rc = shmd_list_pop_fn(x->c->s, ref.a, where ? SHMD_LIST_TAIL : SHMD_LIST_HEAD, vec_visit, &v);
      if (rc == SHMD_ENOTFOUND)
        break;
      if (rc) {
        vec_free(&v);
        return rc;
      }
    }
    if ((rc = kv_drop_if_empty(x->c, A(k), L(k), &ref)) || (rc = r_array(x->r, 2)) ||
        (rc = r_bulk(&x->r->elems[0], A(k), L(k)))) {
      vec_free(&v);
      return rc;
    }
    vec_to(&v, &x->r->elems[1]);
    return 0;
  }
  x->r->type = SHMD_REPLY_NIL; /* a null array */
  return 0;
}
