/* SPDX-License-Identifier: MIT */
/*
 * Internal: Redis's number parsing and formatting and its glob matcher (kv/util.c, as Redis's
 * util.c holds string2ll, ld2string and stringmatchlen). The handlers use the short names at the
 * bottom.
 */
#ifndef SHMD_KV_UTIL_H
#define SHMD_KV_UTIL_H

#include <stddef.h>
#include <string.h>
#include <strings.h>

/* string2ll: a signed 64-bit integer, strictly (no '+', no spaces, no leading zeros). 0, or -1
 * when s[0 .. n) is not one. */
int shmd__kv_parse_ll(const char *s, size_t n, long long *out);
/* Redis's MAX_LONG_DOUBLE_CHARS: long-double arguments must be shorter. */
#define SHMD_KV_LDOUBLE_CHARS 5120
/* Redis's string2d: a double as strtod reads it, no NaN, no leading space, no trailing bytes, no
 * overflow (denormals are kept). 0 or -1. */
int shmd__kv_parse_double(const char *s, size_t n, double *out);
/* Redis's string2ld (INCRBYFLOAT, HINCRBYFLOAT): the same in long double, shorter than
 * SHMD_KV_LDOUBLE_CHARS. 0 or -1. */
int shmd__kv_parse_ldouble(const char *s, size_t n, long double *out);
/* Redis's score-range bound (zslParseRange): "(" for exclusive, then strtod of the C string. */
int shmd__kv_parse_bound(const char *s, size_t n, double *out, int *excl);
/* Prints d as redis-server 7.0 does over RESP2 ("%.17g", "inf", "-inf"); returns the length. */
size_t shmd__kv_fmt_double(double d, char *buf, size_t cap);
/* Prints d as Redis's INCRBYFLOAT ("%.17Lf" without trailing zeros); returns the length, 0 when
 * it does not fit. */
size_t shmd__kv_fmt_ldouble(long double d, char *buf, size_t cap);
/* Redis's glob (stringmatchlen): does str[0 .. slen) match pattern[0 .. plen)? 1 or 0. */
int shmd__kv_glob(const char *pattern, size_t plen, const char *str, size_t slen, int nocase);

/* ---------------------------------------------------------------------------------------------- */
/* The handlers' names */

static inline int parse_ll(const char *s, size_t n, long long *out) { return shmd__kv_parse_ll(s, n, out); }
static inline int parse_double(const char *s, size_t n, double *out) { return shmd__kv_parse_double(s, n, out); }
static inline int parse_ldouble(const char *s, size_t n, long double *out) {
  return shmd__kv_parse_ldouble(s, n, out);
}
static inline size_t fmt_double(double d, char *buf, size_t cap) { return shmd__kv_fmt_double(d, buf, cap); }
static inline size_t fmt_ldouble(long double d, char *buf, size_t cap) {
  return shmd__kv_fmt_ldouble(d, buf, cap);
}

/* Is a[0 .. n) the literal `lit`, ignoring ASCII case? */
static inline int eq(const char *a, size_t n, const char *lit) {
  return strlen(lit) == n && strncasecmp(a, lit, n) == 0;
}

#endif
