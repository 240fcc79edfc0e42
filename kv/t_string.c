/* SPDX-License-Identifier: MIT */
/*
 * String commands (Redis's t_string.c): SET GET GETDEL MGET MSET SETNX INCR DECR INCRBY DECRBY
 * INCRBYFLOAT APPEND STRLEN GETRANGE SETRANGE. A string is stored as raw bytes after its value
 * record (kv_put_string()); Redis's integer encoding is not used, so INCR parses and prints the
 * number each time. INCRBYFLOAT computes in long double and prints "%.17Lf" without trailing zeros,
 * as Redis does. APPEND and SETRANGE rewrite the whole value, within proto-max-bulk-len (512 MiB).
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/cmd.h"

static int get_string(cc_t *x, const char *k, size_t kl, kv_ref_t *ref) {
  return kv_lookup_type(x->c, k, kl, KV_STRING, ref);
}

int shmd__kv_cmd_get(cc_t *x) {
  kv_ref_t ref;
  int rc = get_string(x, A(1), L(1), &ref);
  if (rc == SHMD_ENOTFOUND)
    return r_nil(x->r);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc)
    return rc;
  return r_bulk(x->r, ref.data, ref.len);
}

int shmd__kv_cmd_getdel(cc_t *x) {
  int rc = shmd__kv_cmd_get(x);
  if (rc || x->r->type != SHMD_REPLY_BULK)
    return rc;
  return kv_delete(x->c, A(1), L(1));
}

int shmd__kv_cmd_set(cc_t *x) {
  int nx = 0, xx = 0, get = 0, keepttl = 0, exp_given = 0;
  long long expire = 0;
  for (int i = 3; i < x->argc; i++) {
    int has_next = i + 1 < x->argc;
    if (eq(A(i), L(i), "NX") && !xx) nx = 1;
    else if (eq(A(i), L(i), "XX") && !nx) xx = 1;
    else if (eq(A(i), L(i), "GET")) get = 1;
    else if (eq(A(i), L(i), "KEEPTTL") && !exp_given) keepttl = 1;
    else if (has_next && !keepttl && !exp_given &&
             (eq(A(i), L(i), "EX") || eq(A(i), L(i), "PX") || eq(A(i), L(i), "EXAT") || eq(A(i), L(i), "PXAT"))) {
      long long v;
      if (parse_ll(A(i + 1), L(i + 1), &v))
        return r_error(x->r, ERR_NOTINT);
      int sec = eq(A(i), L(i), "EX") || eq(A(i), L(i), "EXAT");
      int abs = L(i) == 4;
      if (v <= 0 || (sec && v > LLONG_MAX / 1000))
        return r_error(x->r, "ERR invalid expire time in 'set' command");
      if (sec)
        v *= 1000;
      if (!abs) {
        if (v > LLONG_MAX - (long long)x->c->now)
          return r_error(x->r, "ERR invalid expire time in 'set' command");
        v += (long long)x->c->now;
      }
      expire = v;
      exp_given = 1;
      i++;
    } else {
      return r_error(x->r, ERR_SYNTAX);
    }
  }
  kv_ref_t ref;
  int rc = kv_lookup(x->c, A(1), L(1), &ref);
  if (rc && rc != SHMD_ENOTFOUND)
    return rc;
  int exists = rc == 0;
  if (get) {
    if (exists && ref.rec->type != KV_STRING)
      return WRONGTYPE();
    if (exists) {
      if ((rc = r_bulk(x->r, ref.data, ref.len)))
        return rc;
    } else {
      r_nil(x->r);
    }
  }
  if ((nx && exists) || (xx && !exists))
    return get ? 0 : r_nil(x->r);
  if (keepttl && exists)
    expire = (long long)ref.rec->expire;
  if (exp_given && expire <= (long long)x->c->now) {
    /* An absolute time in the past: the key is set and expires at once (deleted). */
    rc = exists ? kv_delete(x->c, A(1), L(1)) : 0;
    return rc ? rc : (get ? 0 : r_ok(x->r));
  }
  if ((rc = kv_put_string(x->c, A(1), L(1), A(2), L(2), NULL, 0, (uint64_t)expire)))
    return rc;
  return get ? 0 : r_ok(x->r);
}

int shmd__kv_cmd_setnx(cc_t *x) {
  kv_ref_t ref;
  int rc = kv_lookup(x->c, A(1), L(1), &ref);
  if (rc == 0)
    return r_int(x->r, 0);
  if (rc != SHMD_ENOTFOUND)
    return rc;
  if ((rc = kv_put_string(x->c, A(1), L(1), A(2), L(2), NULL, 0, 0)))
    return rc;
  return r_int(x->r, 1);
}

int shmd__kv_cmd_mget(cc_t *x) {
  int rc = r_array(x->r, (size_t)x->argc - 1);
  if (rc)
    return rc;
  for (int i = 1; i < x->argc; i++) {
    kv_ref_t ref;
    rc = get_string(x, A(i), L(i), &ref);
    if (rc == 0)
      rc = r_bulk(&x->r->elems[i - 1], ref.data, ref.len);
    else if (rc == SHMD_ENOTFOUND || rc == SHMD_EWRONGTYPE)
      rc = r_nil(&x->r->elems[i - 1]);
    if (rc)
      return rc;
  }
  return 0;
}

int shmd__kv_cmd_mset(cc_t *x) {
  if (x->argc % 2 == 0)
    return r_error(x->r, "ERR wrong number of arguments for 'mset' command");
  for (int i = 1; i < x->argc; i += 2) {
    int rc = kv_put_string(x->c, A(i), L(i), A(i + 1), L(i + 1), NULL, 0, 0);
    if (rc)
      return rc;
  }
  return r_ok(x->r);
}

static int incr_by(cc_t *x, long long by) {
  kv_ref_t ref;
  long long v = 0;
  uint64_t expire = 0;
  int rc = get_string(x, A(1), L(1), &ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc == 0) {
    if (parse_ll((const char *)ref.data, ref.len, &v))
      return r_error(x->r, ERR_NOTINT);
    expire = ref.rec->expire;
  } else if (rc != SHMD_ENOTFOUND) {
    return rc;
  }
  if ((by < 0 && v < 0 && by < LLONG_MIN - v) || (by > 0 && v > 0 && by > LLONG_MAX - v))
    return r_error(x->r, ERR_OVERFLOW);
  v += by;
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%lld", v);
  if ((rc = kv_put_string(x->c, A(1), L(1), buf, (size_t)n, NULL, 0, expire)))
    return rc;
  return r_int(x->r, v);
}
int shmd__kv_cmd_incr(cc_t *x) { return incr_by(x, 1); }
int shmd__kv_cmd_decr(cc_t *x) { return incr_by(x, -1); }
int shmd__kv_cmd_incrby(cc_t *x) {
  long long by;
  if (parse_ll(A(2), L(2), &by))
    return r_error(x->r, ERR_NOTINT);
  return incr_by(x, by);
}
int shmd__kv_cmd_decrby(cc_t *x) {
  long long by;
  if (parse_ll(A(2), L(2), &by))
    return r_error(x->r, ERR_NOTINT);
  if (by == LLONG_MIN)
    return r_error(x->r, "ERR decrement would overflow");
  return incr_by(x, -by);
}

int shmd__kv_cmd_incrbyfloat(cc_t *x) {
  long double by, v = 0;
  if (parse_ldouble(A(2), L(2), &by))
    return r_error(x->r, ERR_NOTFLOAT);
  kv_ref_t ref;
  uint64_t expire = 0;
  int rc = get_string(x, A(1), L(1), &ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc == 0) {
    if (parse_ldouble((const char *)ref.data, ref.len, &v))
      return r_error(x->r, ERR_NOTFLOAT);
    expire = ref.rec->expire;
  } else if (rc != SHMD_ENOTFOUND) {
    return rc;
  }
  v += by;
  if (isnan(v) || isinf(v))
    return r_error(x->r, "ERR increment would produce NaN or Infinity");
  char buf[5000];
  size_t n = fmt_ldouble(v, buf, sizeof buf);
  if ((rc = kv_put_string(x->c, A(1), L(1), buf, n, NULL, 0, expire)))
    return rc;
  return r_bulk(x->r, buf, n);
}

int shmd__kv_cmd_append(cc_t *x) {
  kv_ref_t ref;
  int rc = get_string(x, A(1), L(1), &ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc == SHMD_ENOTFOUND) {
    if ((rc = kv_put_string(x->c, A(1), L(1), A(2), L(2), NULL, 0, 0)))
      return rc;
    return r_int(x->r, (int64_t)L(2));
  }
  if (rc)
    return rc;
  if (ref.len > KV_STRING_MAX || L(2) > KV_STRING_MAX - ref.len)
    return r_error(x->r, ERR_BIG_STRING);
  size_t n = ref.len + L(2);
  if ((rc = kv_put_string(x->c, A(1), L(1), ref.data, ref.len, A(2), L(2), ref.rec->expire)))
    return rc;
  return r_int(x->r, (int64_t)n);
}

int shmd__kv_cmd_strlen(cc_t *x) {
  kv_ref_t ref;
  int rc = get_string(x, A(1), L(1), &ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc == SHMD_ENOTFOUND)
    return r_int(x->r, 0);
  return rc ? rc : r_int(x->r, (int64_t)ref.len);
}

int shmd__kv_cmd_getrange(cc_t *x) {
  long long start, end;
  if (parse_ll(A(2), L(2), &start) || parse_ll(A(3), L(3), &end))
    return r_error(x->r, ERR_NOTINT);
  kv_ref_t ref;
  int rc = get_string(x, A(1), L(1), &ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc == SHMD_ENOTFOUND)
    return r_bulk(x->r, "", 0);
  if (rc)
    return rc;
  long long len = (long long)ref.len;
  if (start < 0 && end < 0 && start > end)
    return r_bulk(x->r, "", 0);
  if (start < 0) start += len;
  if (end < 0) end += len;
  if (start < 0) start = 0;
  if (end < 0) end = 0;
  if (end >= len) end = len - 1;
  if (len == 0 || start > end)
    return r_bulk(x->r, "", 0);
  return r_bulk(x->r, ref.data + start, (size_t)(end - start + 1));
}

int shmd__kv_cmd_setrange(cc_t *x) {
  long long off;
  if (parse_ll(A(2), L(2), &off))
    return r_error(x->r, ERR_NOTINT);
  if (off < 0)
    return r_error(x->r, "ERR offset is out of range");
  kv_ref_t ref;
  int rc = get_string(x, A(1), L(1), &ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc && rc != SHMD_ENOTFOUND)
    return rc;
  size_t old = rc == 0 ? ref.len : 0;
  if (L(3) == 0)
    return r_int(x->r, (int64_t)old);
  if ((unsigned long long)off > KV_STRING_MAX || L(3) > KV_STRING_MAX - (unsigned long long)off)
    return r_error(x->r, ERR_BIG_STRING);
  size_t n = (size_t)off + L(3) > old ? (size_t)off + L(3) : old;
  unsigned char *buf = calloc(1, n);
  if (buf == NULL)
    return SHMD_ENOMEM;
  if (old)
    memcpy(buf, ref.data, old);
  memcpy(buf + off, A(3), L(3));
  rc = kv_put_string(x->c, A(1), L(1), buf, n, NULL, 0, old || rc == 0 ? ref.rec->expire : 0);
  free(buf);
  return rc ? rc : r_int(x->r, (int64_t)n);
}
