/* SPDX-License-Identifier: MIT */
/*
 * Numbers and patterns as Redis reads and prints them (Redis's util.c: string2ll, ld2string,
 * stringmatchlen). Integers are parsed strictly (string2ll: no '+', no spaces, no leading zeros),
 * doubles with strtod (no NaN, no trailing bytes), and doubles are printed "%.17g" (as
 * redis-server 7.0 replies over RESP2), "inf" / "-inf" for infinities. INCRBYFLOAT prints with
 * long double "%.17Lf" without trailing zeros, as Redis does. The glob matcher is Redis's, with
 * its recursion bounded.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/util.h"
#include "shmdict/kv.h"

/* ---------------------------------------------------------------------------------------------- */
/* Parsing and formatting */

int shmd__kv_parse_ll(const char *s, size_t n, long long *out) {
  if (n == 0 || n > 20)
    return -1;
  size_t i = 0;
  int neg = 0;
  if (s[0] == '-') {
    neg = 1;
    i = 1;
    if (n == 1)
      return -1;
  }
  if (s[i] == '0') {
    if (n == i + 1 && !neg) {
      *out = 0;
      return 0;
    }
    return -1;
  }
  unsigned long long v = 0;
  for (; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    unsigned d = (unsigned)(s[i] - '0');
    if (v > (ULLONG_MAX - d) / 10)
      return -1;
    v = v * 10 + d;
  }
  if (neg) {
    if (v > (unsigned long long)LLONG_MAX + 1)
      return -1;
    *out = (long long)(0 - v);
  } else {
    if (v > (unsigned long long)LLONG_MAX)
      return -1;
    *out = (long long)v;
  }
  return 0;
}

/* Redis's string2d: strtod over the whole argument (a NUL inside ends the number early, so it
 * does not match), no leading space, no NaN, and an overflow to +-HUGE_VAL or an underflow to 0 is
 * refused (a denormal result is kept). No length limit: Redis reads any length. */
int shmd__kv_parse_double(const char *s, size_t n, double *out) {
  char small[128], *buf = small;
  if (n == 0 || isspace((unsigned char)s[0]))
    return -1;
  if (n >= sizeof small && (buf = malloc(n + 1)) == NULL)
    return -1;
  memcpy(buf, s, n);
  buf[n] = 0;
  char *end;
  errno = 0;
  double d = strtod(buf, &end);
  int bad = (size_t)(end - buf) != n || (errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL || d == 0)) || isnan(d);
  if (buf != small)
    free(buf);
  if (bad)
    return -1;
  *out = d;
  return 0;
}

/* Redis's string2ld: as string2d but in long double, for arguments shorter than
 * MAX_LONG_DOUBLE_CHARS (5 KiB), which is also how long INCRBYFLOAT's own output can be. */
int shmd__kv_parse_ldouble(const char *s, size_t n, long double *out) {
  char small[128], *buf = small;
  if (n == 0 || n >= SHMD_KV_LDOUBLE_CHARS || isspace((unsigned char)s[0]))
    return -1;
  if (n >= sizeof small && (buf = malloc(n + 1)) == NULL)
    return -1;
  memcpy(buf, s, n);
  buf[n] = 0;
  char *end;
  errno = 0;
  long double d = strtold(buf, &end);
  int bad = (size_t)(end - buf) != n || (errno == ERANGE && (d == HUGE_VALL || d == -HUGE_VALL || d == 0)) ||
            isnan(d);
  if (buf != small)
    free(buf);
  if (bad)
    return -1;
  *out = d;
  return 0;
}

/* Redis's zslParseRange for one bound: "(" makes it exclusive, then strtod over the C string (so
 * a NUL inside ends it, leading spaces are skipped, "" and "(" read as 0, "1e400" as inf), no
 * NaN, nothing after the number. */
int shmd__kv_parse_bound(const char *s, size_t n, double *out, int *excl) {
  char small[128], *buf = small;
  *excl = n > 0 && s[0] == '(';
  if (*excl) {
    s++;
    n--;
  }
  if (n >= sizeof small && (buf = malloc(n + 1)) == NULL)
    return -1;
  memcpy(buf, s, n);
  buf[n] = 0;
  char *end;
  double d = strtod(buf, &end);
  int bad = *end != 0 || isnan(d);
  if (buf != small)
    free(buf);
  if (bad)
    return -1;
  *out = d;
  return 0;
}

size_t shmd__kv_fmt_double(double d, char *buf, size_t cap) {
  if (isinf(d))
    return (size_t)snprintf(buf, cap, "%s", d > 0 ? "inf" : "-inf");
  return (size_t)snprintf(buf, cap, "%.17g", d);
}

size_t shmd__kv_fmt_ldouble(long double d, char *buf, size_t cap) {
  int n = snprintf(buf, cap, "%.17Lf", d);
  if (n <= 0 || (size_t)n >= cap)
    return 0;
  if (strchr(buf, '.')) {
    while (n > 0 && buf[n - 1] == '0')
      n--;
    if (n > 0 && buf[n - 1] == '.')
      n--;
  }
  buf[n] = 0;
  if (n == 2 && buf[0] == '-' && buf[1] == '0') {
    buf[0] = '0';
    buf[1] = 0;
    n = 1;
  }
  return (size_t)n;
}

/* ---------------------------------------------------------------------------------------------- */
/* Glob patterns */

/* Redis's glob (stringmatchlen): * ? [set] [^set] [a-z] \x. */
static int glob(const char *p, size_t pl, const char *s, size_t sl, int nocase, int depth) {
  if (depth > 1000)
    return 0;
  while (pl && sl) {
    switch (p[0]) {
    case '*':
      while (pl > 1 && p[1] == '*') {
        p++;
        pl--;
      }
      if (pl == 1)
        return 1;
      while (sl) {
        if (glob(p + 1, pl - 1, s, sl, nocase, depth + 1))
          return 1;
        s++;
        sl--;
      }
      return 0;
    case '?':
      s++;
      sl--;
      break;
    case '[': {
      p++;
      pl--;
      int not = pl && p[0] == '^';
      if (not) {
        p++;
        pl--;
      }
      int match = 0;
      while (pl) {
        if (p[0] == '\\' && pl >= 2) {
          p++;
          pl--;
          if (p[0] == s[0])
            match = 1;
        } else if (p[0] == ']') {
          break;
        } else if (pl >= 3 && p[1] == '-') {
          int a = (unsigned char)p[0], b = (unsigned char)p[2], c = (unsigned char)s[0];
          if (a > b) {
            int t = a;
            a = b;
            b = t;
          }
          if (nocase) {
            a = tolower(a);
            b = tolower(b);
            c = tolower(c);
          }
          p += 2;
          pl -= 2;
          if (c >= a && c <= b)
            match = 1;
        } else if (nocase ? tolower((unsigned char)p[0]) == tolower((unsigned char)s[0]) : p[0] == s[0]) {
          match = 1;
        }
        p++;
        pl--;
      }
      if (pl == 0) {
        p--;
        pl++;
      }
      if (not)
        match = !match;
      if (!match)
        return 0;
      s++;
      sl--;
      break;
    }
    case '\\':
      if (pl >= 2) {
        p++;
        pl--;
      }
      /* fall through */
    default:
      if (nocase ? tolower((unsigned char)p[0]) != tolower((unsigned char)s[0]) : p[0] != s[0])
        return 0;
      s++;
      sl--;
      break;
    }
    p++;
    pl--;
    if (sl == 0) {
      while (pl && *p == '*') {
        p++;
        pl--;
      }
      break;
    }
  }
  return pl == 0 && sl == 0;
}

int shmd__kv_glob(const char *pattern, size_t plen, const char *str, size_t slen, int nocase) {
  return glob(pattern, plen, str, slen, nocase, 0);
}

int shmd_kv_glob(const char *pattern, size_t plen, const char *str, size_t slen) {
  return glob(pattern, plen, str, slen, 0, 0);
}
