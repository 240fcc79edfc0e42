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

/* SET / GETEX options, as Redis's parseExtendedStringArgumentsOrReply reads them: NX XX GET
 * KEEPTTL (SET), PERSIST (GETEX), EX PX EXAT PXAT with a value. A repeated option is fine (the
 * last value wins); options that contradict one another are a syntax error. The value of the
 * expiry is only read afterwards (expire_ms()), so "SET k v EX 0 FOO" is a syntax error. */
enum { O_NX = 1, O_XX = 2, O_GET = 4, O_KEEPTTL = 8, O_PERSIST = 16, O_EX = 32, O_PX = 64, O_EXAT = 128, O_PXAT = 256 };
#define O_ANYEXP (O_EX | O_PX | O_EXAT | O_PXAT)

static int parse_set_opts(cc_t *x, int from, int is_set, int *flags, int *expire_arg) {
  *flags = 0;
  *expire_arg = 0;
  for (int j = from; j < x->argc; j++) {
    int next = j + 1 < x->argc;
    int f = *flags;
    if (is_set && eq(A(j), L(j), "NX") && !(f & O_XX))
      *flags |= O_NX;
    else if (is_set && eq(A(j), L(j), "XX") && !(f & O_NX))
      *flags |= O_XX;
    else if (is_set && eq(A(j), L(j), "GET"))
      *flags |= O_GET;
    else if (is_set && eq(A(j), L(j), "KEEPTTL") && !(f & (O_PERSIST | O_ANYEXP)))
      *flags |= O_KEEPTTL;
    else if (!is_set && eq(A(j), L(j), "PERSIST") && !(f & (O_ANYEXP | O_KEEPTTL)))
      *flags |= O_PERSIST;
    else if (next && eq(A(j), L(j), "EX") && !(f & (O_KEEPTTL | O_PERSIST | O_EXAT | O_PX | O_PXAT)))
      *flags |= O_EX, *expire_arg = ++j;
    else if (next && eq(A(j), L(j), "PX") && !(f & (O_KEEPTTL | O_PERSIST | O_EX | O_EXAT | O_PXAT)))
      *flags |= O_PX, *expire_arg = ++j;
    else if (next && eq(A(j), L(j), "EXAT") && !(f & (O_KEEPTTL | O_PERSIST | O_EX | O_PX | O_PXAT)))
      *flags |= O_EXAT, *expire_arg = ++j;
    else if (next && eq(A(j), L(j), "PXAT") && !(f & (O_KEEPTTL | O_PERSIST | O_EX | O_EXAT | O_PX)))
      *flags |= O_PXAT, *expire_arg = ++j;
    else
      return r_error(x->r, ERR_SYNTAX);
  }
  return 1;
}

/* Redis's getExpireMillisecondsOrReply: the expiry argument A(ai) in seconds or milliseconds
 * (ms), absolute (abs) or from now, as absolute Unix milliseconds. 1, or 0 when replied. */
static int expire_ms(cc_t *x, int ai, int ms, int abs, long long *out) {
  long long v;
  if (parse_ll(A(ai), L(ai), &v))
    return r_error(x->r, ERR_NOTINT);
  if (v <= 0 || (!ms && v > LLONG_MAX / 1000))
    return r_error(x->r, "ERR invalid expire time in '%s' command", x->name);
  if (!ms)
    v *= 1000;
  if (!abs) {
    if (v > LLONG_MAX - (long long)x->c->now) /* Redis's sum wraps negative: the same error */
      return r_error(x->r, "ERR invalid expire time in '%s' command", x->name);
    v += (long long)x->c->now;
  }
  *out = v;
  return 1;
}

/* SET key value [NX|XX] [GET] [EX|PX|EXAT|PXAT t|KEEPTTL], and SETEX / PSETEX (setex: the
 * expiry argument and its unit are given). */
static int set_generic(cc_t *x, int flags, int expire_arg, int vi) {
  long long expire = 0;
  int rc;
  if (expire_arg && (rc = expire_ms(x, expire_arg, (flags & (O_PX | O_PXAT)) != 0, (flags & (O_EXAT | O_PXAT)) != 0,
                                    &expire)) <= 0)
    return rc;
  kv_ref_t ref;
  rc = kv_lookup(x->c, A(1), L(1), &ref);
  if (rc && rc != SHMD_ENOTFOUND)
    return rc;
  int exists = rc == 0;
  if (flags & O_GET) {
    if (exists && ref.rec->type != KV_STRING)
      return WRONGTYPE();
    if (exists) {
      if ((rc = r_bulk(x->r, ref.data, ref.len)))
        return rc;
    } else {
      r_nil(x->r);
    }
  }
  if (((flags & O_NX) && exists) || ((flags & O_XX) && !exists))
    return (flags & O_GET) ? 0 : r_nil(x->r);
  if ((flags & O_KEEPTTL) && exists)
    expire = (long long)ref.rec->expire;
  if (expire_arg && expire <= (long long)x->c->now) {
    /* A time already past: Redis sets the key, which expires at once; it is deleted here. */
    rc = exists ? kv_delete(x->c, A(1), L(1)) : 0;
    return rc ? rc : (flags & O_GET) ? 0 : r_ok(x->r);
  }
  if ((rc = kv_put_string(x->c, A(1), L(1), A(vi), L(vi), NULL, 0, (uint64_t)expire)))
    return rc;
  return (flags & O_GET) ? 0 : r_ok(x->r);
}

int shmd__kv_cmd_set(cc_t *x) {
  int flags, ea;
  int rc = parse_set_opts(x, 3, 1, &flags, &ea);
  return rc <= 0 ? rc : set_generic(x, flags, ea, 2);
}
int shmd__kv_cmd_setex(cc_t *x) { return set_generic(x, O_EX, 2, 3); }
int shmd__kv_cmd_psetex(cc_t *x) { return set_generic(x, O_PX, 2, 3); }

int shmd__kv_cmd_getex(cc_t *x) {
  int flags, ea;
  int rc = parse_set_opts(x, 2, 0, &flags, &ea);
  if (rc <= 0)
    return rc;
  kv_ref_t ref;
  rc = get_string(x, A(1), L(1), &ref);
  if (rc == SHMD_ENOTFOUND)
    return r_nil(x->r);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc)
    return rc;
  long long expire = 0;
  if (ea && (rc = expire_ms(x, ea, (flags & (O_PX | O_PXAT)) != 0, (flags & (O_EXAT | O_PXAT)) != 0, &expire)) <= 0)
    return rc;
  if ((rc = r_bulk(x->r, ref.data, ref.len)))
    return rc;
  if (ea && expire <= (long long)x->c->now) /* an absolute time already past deletes the key */
    return kv_delete(x->c, A(1), L(1));
  if (ea)
    return kv_set_expire(x->c, &ref, (uint64_t)expire);
  if ((flags & O_PERSIST) && ref.rec->expire)
    return kv_set_expire(x->c, &ref, 0);
  return 0;
}

/* GETSET key value: GET, then SET without options (the time to live is dropped). */
int shmd__kv_cmd_getset(cc_t *x) {
  int rc = shmd__kv_cmd_get(x);
  if (rc || x->r->type == SHMD_REPLY_ERROR)
    return rc;
  return kv_put_string(x->c, A(1), L(1), A(2), L(2), NULL, 0, 0);
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

static int mset_generic(cc_t *x, int nx) {
  if (x->argc % 2 == 0)
    return r_error(x->r, "ERR wrong number of arguments for '%s' command", x->name);
  int rc;
  if (nx) {
    for (int i = 1; i < x->argc; i += 2) {
      kv_ref_t ref;
      rc = kv_lookup(x->c, A(i), L(i), &ref);
      if (rc == 0)
        return r_int(x->r, 0);
      if (rc != SHMD_ENOTFOUND)
        return rc;
    }
  }
  for (int i = 1; i < x->argc; i += 2)
    if ((rc = kv_put_string(x->c, A(i), L(i), A(i + 1), L(i + 1), NULL, 0, 0)))
      return rc;
  return nx ? r_int(x->r, 1) : r_ok(x->r);
}
int shmd__kv_cmd_mset(cc_t *x) { return mset_generic(x, 0); }
int shmd__kv_cmd_msetnx(cc_t *x) { return mset_generic(x, 1); }

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

/* INCRBYFLOAT: as Redis, the key's type first, then its value, then the increment; long double
 * arithmetic, printed "%.17Lf" without trailing zeros (which Redis reads back: up to 5 KiB). */
int shmd__kv_cmd_incrbyfloat(cc_t *x) {
  long double by, v = 0;
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
  if (parse_ldouble(A(2), L(2), &by))
    return r_error(x->r, ERR_NOTFLOAT);
  v += by;
  if (isnan(v) || isinf(v))
    return r_error(x->r, "ERR increment would produce NaN or Infinity");
  char buf[SHMD_KV_LDOUBLE_CHARS];
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

int shmd__kv_cmd_substr(cc_t *x) { return shmd__kv_cmd_getrange(x); }

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

/* ---------------------------------------------------------------------------------------------- */
/* Bitmaps (Redis's bitops.c): SETBIT GETBIT BITCOUNT BITPOS BITOP over string values. A bitmap
 * write copies the string (as SETRANGE does). */

#define ERR_BITOFF "ERR bit offset is not an integer or out of range"

/* getBitOffsetFromArgument: 0 .. proto-max-bulk-len * 8 - 1. 1, or 0 when replied. */
static int bit_offset(cc_t *x, int i, uint64_t *off) {
  long long v;
  if (parse_ll(A(i), L(i), &v) || v < 0 || (unsigned long long)(v >> 3) >= KV_STRING_MAX)
    return r_error(x->r, ERR_BITOFF), 0;
  *off = (uint64_t)v;
  return 1;
}

int shmd__kv_cmd_setbit(cc_t *x) {
  uint64_t off;
  long long on;
  if (!bit_offset(x, 2, &off))
    return 0;
  if (parse_ll(A(3), L(3), &on) || (on & ~1))
    return r_error(x->r, "ERR bit is not an integer or out of range");
  kv_ref_t ref;
  int rc = get_string(x, A(1), L(1), &ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc && rc != SHMD_ENOTFOUND)
    return rc;
  size_t old = rc == 0 ? ref.len : 0, byte = (size_t)(off >> 3);
  size_t n = byte + 1 > old ? byte + 1 : old;
  unsigned char *buf = calloc(1, n);
  if (buf == NULL)
    return SHMD_ENOMEM;
  if (old)
    memcpy(buf, ref.data, old);
  int bit = 7 - (int)(off & 7);
  int was = (buf[byte] >> bit) & 1;
  buf[byte] = (unsigned char)((buf[byte] & ~(1u << bit)) | ((unsigned)on << bit));
  rc = kv_put_string(x->c, A(1), L(1), buf, n, NULL, 0, rc == 0 ? ref.rec->expire : 0);
  free(buf);
  return rc ? rc : r_int(x->r, was);
}

int shmd__kv_cmd_getbit(cc_t *x) {
  uint64_t off;
  if (!bit_offset(x, 2, &off))
    return 0;
  kv_ref_t ref;
  int rc = get_string(x, A(1), L(1), &ref);
  if (rc == SHMD_ENOTFOUND)
    return r_int(x->r, 0);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc)
    return rc;
  size_t byte = (size_t)(off >> 3);
  return r_int(x->r, byte < ref.len ? (ref.data[byte] >> (7 - (off & 7))) & 1 : 0);
}

static long long popcount(const unsigned char *p, size_t n) {
  long long c = 0;
  for (size_t i = 0; i < n; i++)
    c += __builtin_popcount(p[i]);
  return c;
}

/* Redis's range of BITCOUNT / BITPOS in bytes, with the masks of the edge bytes for BIT ranges. */
static void bit_range(long long totlen, int isbit, long long *start, long long *end, unsigned char *first_neg,
                      unsigned char *last_neg) {
  if (isbit)
    totlen <<= 3;
  if (*start < 0) *start = totlen + *start;
  if (*end < 0) *end = totlen + *end;
  if (*start < 0) *start = 0;
  if (*end < 0) *end = 0;
  if (*end >= totlen) *end = totlen - 1;
  *first_neg = *last_neg = 0;
  if (isbit && *start <= *end) {
    *first_neg = (unsigned char)(~((1 << (8 - (*start & 7))) - 1) & 0xFF);
    *last_neg = (unsigned char)((1 << (7 - (*end & 7))) - 1);
    *start >>= 3;
    *end >>= 3;
  }
}

int shmd__kv_cmd_bitcount(cc_t *x) {
  kv_ref_t ref;
  int rc = get_string(x, A(1), L(1), &ref);
  if (rc == SHMD_ENOTFOUND)
    return r_int(x->r, 0);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc)
    return rc;
  long long start, end;
  unsigned char fneg = 0, lneg = 0;
  if (x->argc == 4 || x->argc == 5) {
    int isbit = 0;
    if (parse_ll(A(2), L(2), &start) || parse_ll(A(3), L(3), &end))
      return r_error(x->r, ERR_NOTINT);
    if (start < 0 && end < 0 && start > end) /* Redis: before it reads BYTE / BIT */
      return r_int(x->r, 0);
    if (x->argc == 5) {
      if (eq(A(4), L(4), "BIT"))
        isbit = 1;
      else if (!eq(A(4), L(4), "BYTE"))
        return r_error(x->r, ERR_SYNTAX);
    }
    bit_range((long long)ref.len, isbit, &start, &end, &fneg, &lneg);
  } else if (x->argc == 2) {
    start = 0;
    end = (long long)ref.len - 1;
  } else {
    return r_error(x->r, ERR_SYNTAX);
  }
  if (start > end)
    return r_int(x->r, 0);
  long long count = popcount(ref.data + start, (size_t)(end - start + 1));
  if (fneg)
    count -= __builtin_popcount(ref.data[start] & fneg);
  if (lneg)
    count -= __builtin_popcount(ref.data[end] & lneg);
  return r_int(x->r, count);
}

/* redisBitpos: the first bit equal to `bit` in p[0 .. n) (-1 when looking for a 1 and there is
 * none; n * 8 when looking for a 0 and there is none). */
static long long bitpos_of(const unsigned char *p, size_t n, int bit) {
  for (size_t i = 0; i < n; i++) {
    unsigned char b = bit ? p[i] : (unsigned char)~p[i];
    if (b)
      return (long long)(i * 8) + __builtin_clz((unsigned)b << 24);
  }
  return bit ? -1 : (long long)n * 8;
}

int shmd__kv_cmd_bitpos(cc_t *x) {
  long long bit;
  if (parse_ll(A(2), L(2), &bit))
    return r_error(x->r, ERR_NOTINT);
  if (bit != 0 && bit != 1)
    return r_error(x->r, "ERR The bit argument must be 1 or 0.");
  kv_ref_t ref;
  int rc = get_string(x, A(1), L(1), &ref);
  if (rc == SHMD_ENOTFOUND)
    return r_int(x->r, bit ? -1 : 0);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc)
    return rc;
  long long start, end, totlen = (long long)ref.len;
  int isbit = 0, end_given = 0;
  unsigned char fneg = 0, lneg = 0;
  if (x->argc >= 4 && x->argc <= 6) {
    if (parse_ll(A(3), L(3), &start))
      return r_error(x->r, ERR_NOTINT);
    if (x->argc == 6) {
      if (eq(A(5), L(5), "BIT"))
        isbit = 1;
      else if (!eq(A(5), L(5), "BYTE"))
        return r_error(x->r, ERR_SYNTAX);
    }
    if (x->argc >= 5) {
      if (parse_ll(A(4), L(4), &end))
        return r_error(x->r, ERR_NOTINT);
      end_given = 1;
    } else {
      end = isbit ? (totlen << 3) + 7 : totlen - 1;
    }
    bit_range(totlen, isbit, &start, &end, &fneg, &lneg);
  } else if (x->argc == 3) {
    start = 0;
    end = totlen - 1;
  } else {
    return r_error(x->r, ERR_SYNTAX);
  }
  if (start > end)
    return r_int(x->r, -1);
  /* Copy the range, fill the bits outside it with the opposite of what is looked for. */
  size_t bytes = (size_t)(end - start + 1);
  unsigned char *tmp = malloc(bytes);
  if (tmp == NULL)
    return SHMD_ENOMEM;
  memcpy(tmp, ref.data + start, bytes);
  if (fneg)
    tmp[0] = bit ? (unsigned char)(tmp[0] & ~fneg) : (unsigned char)(tmp[0] | fneg);
  if (lneg)
    tmp[bytes - 1] = bit ? (unsigned char)(tmp[bytes - 1] & ~lneg) : (unsigned char)(tmp[bytes - 1] | lneg);
  long long pos = bitpos_of(tmp, bytes, (int)bit);
  free(tmp);
  /* A 0 looked for inside an explicit range that has none: -1 (no zero padding on the right). */
  if (end_given && bit == 0 && pos == (long long)bytes * 8)
    return r_int(x->r, -1);
  if (pos != -1)
    pos += start * 8;
  return r_int(x->r, pos);
}

int shmd__kv_cmd_bitop(cc_t *x) {
  enum { B_AND, B_OR, B_XOR, B_NOT } op;
  if (eq(A(1), L(1), "AND"))
    op = B_AND;
  else if (eq(A(1), L(1), "OR"))
    op = B_OR;
  else if (eq(A(1), L(1), "XOR"))
    op = B_XOR;
  else if (eq(A(1), L(1), "NOT"))
    op = B_NOT;
  else
    return r_error(x->r, ERR_SYNTAX);
  if (op == B_NOT && x->argc != 4)
    return r_error(x->r, "ERR BITOP NOT must be called with a single source key.");
  int nk = x->argc - 3;
  unsigned char **src = calloc((size_t)nk, sizeof *src);
  size_t *len = calloc((size_t)nk, sizeof *len);
  int rc = src && len ? 0 : SHMD_ENOMEM;
  size_t maxlen = 0;
  for (int j = 0; j < nk && rc == 0; j++) {
    kv_ref_t ref;
    rc = get_string(x, A(j + 3), L(j + 3), &ref);
    if (rc == SHMD_ENOTFOUND) {
      rc = 0;
      continue;
    }
    if (rc == SHMD_EWRONGTYPE) {
      rc = WRONGTYPE();
      goto out;
    }
    if (rc)
      break;
    len[j] = ref.len;
    if ((src[j] = malloc(ref.len + 1)) == NULL) {
      rc = SHMD_ENOMEM;
      break;
    }
    memcpy(src[j], ref.data, ref.len);
    if (ref.len > maxlen)
      maxlen = ref.len;
  }
  if (rc)
    goto out;
  if (maxlen) {
    unsigned char *res = malloc(maxlen);
    if (res == NULL) {
      rc = SHMD_ENOMEM;
      goto out;
    }
    for (size_t b = 0; b < maxlen; b++) {
      unsigned char o = len[0] <= b ? 0 : src[0][b];
      if (op == B_NOT)
        o = (unsigned char)~o;
      for (int i = 1; i < nk; i++) {
        unsigned char v = len[i] <= b ? 0 : src[i][b];
        o = op == B_AND ? (o & v) : op == B_OR ? (o | v) : (o ^ v);
      }
      res[b] = o;
    }
    rc = kv_put_string(x->c, A(2), L(2), res, maxlen, NULL, 0, 0);
    free(res);
  } else {
    rc = kv_delete(x->c, A(2), L(2));
    if (rc == SHMD_ENOTFOUND)
      rc = 0;
  }
  if (rc == 0)
    rc = r_int(x->r, (int64_t)maxlen);
out:
  for (int j = 0; src && j < nk; j++)
    free(src[j]);
  free(src);
  free(len);
  return rc;
}

/* LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN] (Redis 7.0's lcsCommand, the same
 * dynamic programme, walk and reply shapes; missing keys are empty strings). */
int shmd__kv_cmd_lcs(cc_t *x) {
  kv_ref_t ra, rb;
  int rc = get_string(x, A(1), L(1), &ra);
  if (rc == SHMD_ENOTFOUND)
    ra.len = 0, ra.data = NULL;
  else if (rc == SHMD_EWRONGTYPE)
    return r_error(x->r, "ERR The specified keys must contain string values");
  else if (rc)
    return rc;
  rc = get_string(x, A(2), L(2), &rb);
  if (rc == SHMD_ENOTFOUND)
    rb.len = 0, rb.data = NULL;
  else if (rc == SHMD_EWRONGTYPE)
    return r_error(x->r, "ERR The specified keys must contain string values");
  else if (rc)
    return rc;
  int getlen = 0, getidx = 0, withmatchlen = 0;
  long long minmatchlen = 0;
  for (int j = 3; j < x->argc; j++) {
    int more = j + 1 < x->argc;
    if (eq(A(j), L(j), "IDX"))
      getidx = 1;
    else if (eq(A(j), L(j), "LEN"))
      getlen = 1;
    else if (eq(A(j), L(j), "WITHMATCHLEN"))
      withmatchlen = 1;
    else if (eq(A(j), L(j), "MINMATCHLEN") && more) {
      if (parse_ll(A(j + 1), L(j + 1), &minmatchlen))
        return r_error(x->r, ERR_NOTINT);
      if (minmatchlen < 0)
        minmatchlen = 0;
      j++;
    } else {
      return r_error(x->r, ERR_SYNTAX);
    }
  }
  if (getidx && getlen)
    return r_error(x->r, "ERR If you want both the length and indexes, please just use IDX.");
  uint64_t alen = ra.len, blen = rb.len;
  uint64_t cells = (alen + 1) * (blen + 1);
  if (cells * sizeof(uint32_t) > KV_STRING_MAX)
    return r_error(x->r, "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len");
  /* both strings are copied out first: the table is built without holding pointers into the store */
  unsigned char *a = malloc(alen + 1), *b = malloc(blen + 1);
  uint32_t *lcs = malloc(cells * sizeof *lcs);
  if (!a || !b || !lcs) {
    free(a);
    free(b);
    free(lcs);
    return SHMD_ENOMEM;
  }
  if (alen)
    memcpy(a, ra.data, alen);
  if (blen)
    memcpy(b, rb.data, blen);
#define LCS(i, j) lcs[(j) + (i) * (blen + 1)]
  for (uint64_t i = 0; i <= alen; i++)
    for (uint64_t j = 0; j <= blen; j++) {
      if (i == 0 || j == 0)
        LCS(i, j) = 0;
      else if (a[i - 1] == b[j - 1])
        LCS(i, j) = LCS(i - 1, j - 1) + 1;
      else
        LCS(i, j) = LCS(i - 1, j) > LCS(i, j - 1) ? LCS(i - 1, j) : LCS(i, j - 1);
    }
  uint32_t idx = LCS(alen, blen), total = idx;
  int computelcs = getidx || !getlen;
  unsigned char *result = malloc((size_t)idx + 1);
  vec_t ranges = {0};
  rc = result ? 0 : SHMD_ENOMEM;
  uint64_t as = alen, ae = 0, bs = 0, be = 0; /* as == alen: no range open */
  uint64_t i = alen, j = blen;
  while (rc == 0 && computelcs && i > 0 && j > 0) {
    int emit = 0;
    if (a[i - 1] == b[j - 1]) {
      result[idx - 1] = a[i - 1];
      if (as == alen) {
        as = ae = i - 1;
        bs = be = j - 1;
      } else if (as == i && bs == j) {
        as--;
        bs--;
      } else {
        emit = 1;
      }
      if (as == 0 || bs == 0)
        emit = 1;
      idx--;
      i--;
      j--;
    } else {
      if (LCS(i - 1, j) > LCS(i, j - 1))
        i--;
      else
        j--;
      if (as != alen)
        emit = 1;
    }
    uint64_t mlen = ae - as + 1;
    if (emit) {
      if (getidx && (minmatchlen == 0 || mlen >= (uint64_t)minmatchlen)) {
        rc = vec_bulk(&ranges, "", 0);
        shmd_reply_t *e = rc ? NULL : &ranges.e[ranges.n - 1];
        if (e) {
          shmd__kv_reply_clear(e);
          if ((rc = r_array(e, 2 + (size_t)withmatchlen)) == 0 && (rc = r_array(&e->elems[0], 2)) == 0 &&
              (rc = r_array(&e->elems[1], 2)) == 0) {
            r_int(&e->elems[0].elems[0], (int64_t)as);
            r_int(&e->elems[0].elems[1], (int64_t)ae);
            r_int(&e->elems[1].elems[0], (int64_t)bs);
            r_int(&e->elems[1].elems[1], (int64_t)be);
            if (withmatchlen)
              r_int(&e->elems[2], (int64_t)mlen);
          }
        }
      }
      as = alen;
    }
  }
#undef LCS
  free(lcs);
  free(a);
  free(b);
  if (rc == 0) {
    if (getidx) {
      if ((rc = r_array(x->r, 4)) == 0 && (rc = r_bulk(&x->r->elems[0], "matches", 7)) == 0 &&
          (rc = r_bulk(&x->r->elems[2], "len", 3)) == 0) {
        vec_to(&ranges, &x->r->elems[1]);
        r_int(&x->r->elems[3], total);
      }
    } else if (getlen) {
      rc = r_int(x->r, total);
    } else {
      rc = r_bulk(x->r, result, total);
    }
  }
  if (rc || !getidx)
    vec_free(&ranges);
  free(result);
  return rc;
}

/* BITFIELD / BITFIELD_RO (Redis 7.0's bitfieldGeneric): the operations are all parsed first (type,
 * offset with '#', value), then the key's type; a write grows the string to the farthest bit
 * written (creating the key even when OVERFLOW FAIL refuses every write, as Redis does). */
enum { BF_GET, BF_SET, BF_INCRBY };
enum { BF_WRAP, BF_SAT, BF_FAIL };
typedef struct bfop_s {
  uint64_t offset;
  int64_t i64;
  int opcode, owtype, bits, sign;
} bfop_t;

static uint64_t bf_getu(const unsigned char *p, uint64_t off, uint64_t bits) {
  uint64_t v = 0;
  for (uint64_t j = 0; j < bits; j++, off++)
    v = (v << 1) | ((p[off >> 3] >> (7 - (off & 7))) & 1);
  return v;
}
static void bf_setu(unsigned char *p, uint64_t off, uint64_t bits, uint64_t v) {
  for (uint64_t j = 0; j < bits; j++, off++) {
    unsigned bv = (v & ((uint64_t)1 << (bits - 1 - j))) != 0;
    unsigned bit = 7 - (unsigned)(off & 7);
    p[off >> 3] = (unsigned char)((p[off >> 3] & ~(1u << bit)) | (bv << bit));
  }
}
static int64_t bf_gets(const unsigned char *p, uint64_t off, uint64_t bits) {
  uint64_t u = bf_getu(p, off, bits);
  if (bits < 64 && (u & ((uint64_t)1 << (bits - 1))))
    u |= UINT64_MAX << bits;
  return (int64_t)u;
}
static int bf_over_u(uint64_t value, int64_t incr, uint64_t bits, int ow, uint64_t *limit) {
  uint64_t max = bits == 64 ? UINT64_MAX : (((uint64_t)1 << bits) - 1);
  int64_t maxincr = (int64_t)(max - value), minincr = -(int64_t)value;
  int r;
  if (value > max || (incr > 0 && incr > maxincr)) {
    r = 1;
    if (ow == BF_SAT)
      *limit = max;
  } else if (incr < 0 && incr < minincr) {
    r = -1;
    if (ow == BF_SAT)
      *limit = 0;
  } else {
    return 0;
  }
  if (ow == BF_WRAP) {
    *limit = (value + (uint64_t)incr) & ~(UINT64_MAX << bits);
    return 1;
  }
  return r;
}
static int bf_over_s(int64_t value, int64_t incr, uint64_t bits, int ow, int64_t *limit) {
  int64_t max = bits == 64 ? INT64_MAX : (((int64_t)1 << (bits - 1)) - 1);
  int64_t min = -max - 1;
  int64_t maxincr = (int64_t)((uint64_t)max - (uint64_t)value), minincr = (int64_t)((uint64_t)min - (uint64_t)value);
  int r;
  if (value > max || (bits != 64 && incr > maxincr) || (value >= 0 && incr > 0 && incr > maxincr)) {
    r = 1;
    if (ow == BF_SAT)
      *limit = max;
  } else if (value < min || (bits != 64 && incr < minincr) || (value < 0 && incr < 0 && incr < minincr)) {
    r = -1;
    if (ow == BF_SAT)
      *limit = min;
  } else {
    return 0;
  }
  if (ow == BF_WRAP) {
    uint64_t c = (uint64_t)value + (uint64_t)incr, msb = (uint64_t)1 << (bits - 1);
    if (bits < 64)
      c = (c & msb) ? (c | (UINT64_MAX << bits)) : (c & ~(UINT64_MAX << bits));
    *limit = (int64_t)c;
    return 1;
  }
  return r;
}

static int bitfield_generic(cc_t *x, int ro) {
  int n = 0, ow = BF_WRAP, readonly = 1;
  uint64_t highest = 0;
  bfop_t *ops = calloc((size_t)x->argc, sizeof *ops);
  if (ops == NULL)
    return SHMD_ENOMEM;
  int rc = 0;
  static const char bad_type[] =
      "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.";
  for (int j = 2; j < x->argc; j++) {
    int rem = x->argc - j - 1, op;
    if (eq(A(j), L(j), "GET") && rem >= 2)
      op = BF_GET;
    else if (eq(A(j), L(j), "SET") && rem >= 3)
      op = BF_SET;
    else if (eq(A(j), L(j), "INCRBY") && rem >= 3)
      op = BF_INCRBY;
    else if (eq(A(j), L(j), "OVERFLOW") && rem >= 1) {
      j++;
      if (eq(A(j), L(j), "WRAP"))
        ow = BF_WRAP;
      else if (eq(A(j), L(j), "SAT"))
        ow = BF_SAT;
      else if (eq(A(j), L(j), "FAIL"))
        ow = BF_FAIL;
      else {
        rc = r_error(x->r, "ERR Invalid OVERFLOW type specified");
        goto out;
      }
      continue;
    } else {
      rc = r_error(x->r, ERR_SYNTAX);
      goto out;
    }
    /* the type: i1..i64 or u1..u63 (the C string after the letter, strictly) */
    const char *t = A(j + 1);
    size_t tl = strnlen(t, L(j + 1));
    long long bits;
    int sign = tl > 0 && t[0] == 'i';
    if (tl == 0 || (t[0] != 'i' && t[0] != 'u') || parse_ll(t + 1, tl - 1, &bits) || bits < 1 || (sign && bits > 64) ||
        (!sign && bits > 63)) {
      rc = r_error(x->r, "%s", bad_type);
      goto out;
    }
    /* the offset: N or #N (times the width) */
    const char *o = A(j + 2);
    size_t ol = L(j + 2);
    int hash = ol > 0 && o[0] == '#';
    long long off;
    if (parse_ll(o + hash, ol - (size_t)hash, &off)) {
      rc = r_error(x->r, ERR_BITOFF);
      goto out;
    }
    if (hash)
      off = (long long)((uint64_t)off * (uint64_t)bits);
    if (off < 0 || (unsigned long long)(off >> 3) >= KV_STRING_MAX) {
      rc = r_error(x->r, ERR_BITOFF);
      goto out;
    }
    long long v = 0;
    if (op != BF_GET) {
      readonly = 0;
      if (highest < (uint64_t)off + (uint64_t)bits - 1)
        highest = (uint64_t)off + (uint64_t)bits - 1;
      if (parse_ll(A(j + 3), L(j + 3), &v)) {
        rc = r_error(x->r, ERR_NOTINT);
        goto out;
      }
    }
    ops[n++] = (bfop_t){(uint64_t)off, v, op, ow, (int)bits, sign};
    j += 3 - (op == BF_GET);
  }
  kv_ref_t ref;
  rc = get_string(x, A(1), L(1), &ref);
  if (rc == SHMD_EWRONGTYPE) {
    rc = WRONGTYPE();
    goto out;
  }
  if (rc && rc != SHMD_ENOTFOUND)
    goto out;
  int exists = rc == 0;
  rc = 0;
  if (!readonly && ro) {
    rc = r_error(x->r, "ERR BITFIELD_RO only supports the GET subcommand");
    goto out;
  }
  size_t len = exists ? ref.len : 0;
  size_t need = readonly ? len : ((size_t)(highest >> 3) + 1 > len ? (size_t)(highest >> 3) + 1 : len);
  unsigned char *buf = calloc(1, need + 9); /* zero padding: GETs read up to 9 bytes past */
  if (buf == NULL) {
    rc = SHMD_ENOMEM;
    goto out;
  }
  if (len)
    memcpy(buf, ref.data, len);
  uint64_t expire = exists ? ref.rec->expire : 0;
  if ((rc = r_array(x->r, (size_t)n)))
    goto done;
  for (int k = 0; k < n; k++) {
    bfop_t *p = &ops[k];
    shmd_reply_t *e = &x->r->elems[k];
    if (p->opcode == BF_GET) {
      /* as Redis: up to 9 bytes of the string from the field's first byte, zero-padded */
      unsigned char nine[9] = {0};
      uint64_t byte = p->offset >> 3;
      for (uint64_t i = 0; i < 9 && byte + i < need; i++)
        nine[i] = buf[byte + i];
      uint64_t in = p->offset - byte * 8;
      r_int(e, p->sign ? bf_gets(nine, in, (uint64_t)p->bits) : (int64_t)bf_getu(nine, in, (uint64_t)p->bits));
      continue;
    }
    int over;
    if (p->sign) {
      int64_t oldv = bf_gets(buf, p->offset, (uint64_t)p->bits), newv, wrapped = 0, ret;
      if (p->opcode == BF_INCRBY) {
        over = bf_over_s(oldv, p->i64, (uint64_t)p->bits, p->owtype, &wrapped);
        newv = over ? wrapped : (int64_t)((uint64_t)oldv + (uint64_t)p->i64);
        ret = newv;
      } else {
        newv = p->i64;
        over = bf_over_s(newv, 0, (uint64_t)p->bits, p->owtype, &wrapped);
        if (over)
          newv = wrapped;
        ret = oldv;
      }
      if (over && p->owtype == BF_FAIL) {
        r_nil(e);
      } else {
        r_int(e, ret);
        bf_setu(buf, p->offset, (uint64_t)p->bits, (uint64_t)newv);
      }
    } else {
      uint64_t oldv = bf_getu(buf, p->offset, (uint64_t)p->bits), newv, wrapped = 0, ret;
      if (p->opcode == BF_INCRBY) {
        newv = oldv + (uint64_t)p->i64;
        over = bf_over_u(oldv, p->i64, (uint64_t)p->bits, p->owtype, &wrapped);
        if (over)
          newv = wrapped;
        ret = newv;
      } else {
        newv = (uint64_t)p->i64;
        over = bf_over_u(newv, 0, (uint64_t)p->bits, p->owtype, &wrapped);
        if (over)
          newv = wrapped;
        ret = oldv;
      }
      if (over && p->owtype == BF_FAIL) {
        r_nil(e);
      } else {
        r_int(e, (int64_t)ret);
        bf_setu(buf, p->offset, (uint64_t)p->bits, newv);
      }
    }
  }
  if (!readonly)
    rc = kv_put_string(x->c, A(1), L(1), buf, need, NULL, 0, expire);
done:
  free(buf);
out:
  free(ops);
  return rc;
}
int shmd__kv_cmd_bitfield(cc_t *x) { return bitfield_generic(x, 0); }
int shmd__kv_cmd_bitfield_ro(cc_t *x) { return bitfield_generic(x, 1); }
