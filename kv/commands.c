/* SPDX-License-Identifier: MIT */
/*
 * The generic command entry point and the command handlers, and the typed hot-path functions.
 *
 * shmd_kv_command_db() looks the command up in a table that, like Redis's, gives each command its
 * arity and its key positions (first, last, step). Before the handler runs, the dispatcher opens
 * one transaction and takes the stripe locks of all the command's keys in stripe-index order
 * (commands without fixed key positions, KEYS / SCAN / DBSIZE / FLUSHDB, take every stripe), so a
 * multi-key command is one atomic step and lock order never inverts. Handlers validate their
 * arguments and the types of their keys before they change anything; a handler that ends with an
 * error reply has its transaction aborted (undoing, e.g., lazy expiry it triggered), otherwise it
 * commits. Container failures that are not Redis errors map to replies: SHMD_ENOSPC -> Redis's OOM
 * error, SHMD_ETXFULL -> an ERR naming the transaction limit (2^26 entries per list beyond the
 * lane's own: only a command of tens of millions of elements meets it); SHMD_ECORRUPT,
 * SHMD_ENOLANE, SHMD_ENOMEM are returned as statuses.
 *
 * Numbers follow Redis: integers are parsed strictly (string2ll: no '+', no spaces, no leading
 * zeros), doubles with strtod (no NaN, no trailing bytes), and doubles are printed "%.17g" (as
 * redis-server 7.0 replies over RESP2), "inf" / "-inf" for infinities. INCRBYFLOAT prints with
 * long double "%.17Lf" without trailing zeros, as Redis does.
 */
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kv/kv_int.h"
#include "segments/err.h"
#include "shmdict/blob.h"

typedef const char *const *argv_t;

#define ERR_WRONGTYPE "WRONGTYPE Operation against a key holding the wrong kind of value"
#define ERR_SYNTAX "ERR syntax error"
#define ERR_NOTINT "ERR value is not an integer or out of range"
#define ERR_NOTFLOAT "ERR value is not a valid float"
#define ERR_OVERFLOW "ERR increment or decrement would overflow"
/* Redis 7.0's SRANDMEMBER count range is -LONG_MAX .. LONG_MAX (getRangeLongFromObjectOrReply),
 * with this wording (sic: "must between"), checked before the key is looked up. */
#define ERR_COUNT_RANGE "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"
#define ERR_BIG_REPLY "ERR reply exceeds maximum allowed size (shmdict max-reply-bytes)"
#define ERR_BIG_STRING "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
#define ERR_BIG_ARG "ERR Protocol error: invalid bulk length"
#define KV_MAX_REPLY_MIN 4096u

/* ---------------------------------------------------------------------------------------------- */
/* The reply ceiling
 *
 * Redis streams a reply into the client's output buffer; here a reply is built whole in process
 * memory before it is handed out, so a request that asks for a reply of 2^63 elements (SRANDMEMBER
 * with a huge negative count) or a command that copies out a giant container would exhaust the
 * host. Every reply allocation of a command (strings, element arrays, and the member copies that
 * SINTER / SUNION / SDIFF / SRANDMEMBER / SPOP / ZREMRANGEBYRANK make to build their answer) is
 * charged against a budget of shmd_kv_max_reply() bytes, counted as the memory it takes: 48 bytes
 * per element slot reserved, and each string's bytes plus malloc's overhead (at least 32). Frees
 * during the command give their share back. When a charge does not fit, nothing is allocated, the
 * command's transaction is aborted (nothing changes) and the reply is ERR_BIG_REPLY. Commands whose
 * reply size is known from the request (a negative SRANDMEMBER count) are refused before anything
 * is built. The budget is per thread (the command runs in the calling thread), and only exists
 * while a command runs: replies handed to the caller are never charged or refunded afterwards.
 */

static uint64_t max_reply_bytes = SHMD_KV_MAX_REPLY_DEFAULT;

uint64_t shmd_kv_set_max_reply(uint64_t bytes) {
  if (bytes == 0)
    bytes = SHMD_KV_MAX_REPLY_DEFAULT;
  else if (bytes < KV_MAX_REPLY_MIN)
    bytes = KV_MAX_REPLY_MIN;
  return __atomic_exchange_n(&max_reply_bytes, bytes, __ATOMIC_RELAXED);
}

uint64_t shmd_kv_max_reply(void) { return __atomic_load_n(&max_reply_bytes, __ATOMIC_RELAXED); }

typedef struct budget_s {
  uint64_t max, left;
  int over; /* a charge did not fit: the command answers ERR_BIG_REPLY */
} budget_t;

static __thread budget_t *cur_budget;

/* The memory a string of n bytes takes in a reply: n + 1 (the NUL) plus malloc's header, rounded
 * to 16, at least 32 bytes (glibc's smallest chunk). */
static uint64_t str_cost(size_t n) {
  uint64_t c = ((uint64_t)n + 1 + 8 + 15) & ~(uint64_t)15;
  return c < 32 ? 32 : c;
}

/* Charges `count` items of `each` bytes (overflow-free). Returns 0, or SHMD_ENOMEM with the
 * budget marked over when they do not fit. */
static int charge(uint64_t count, uint64_t each) {
  budget_t *b = cur_budget;
  if (b == NULL || count == 0)
    return 0;
  if (each != 0 && count > b->left / each) {
    b->over = 1;
    return SHMD_ENOMEM;
  }
  b->left -= count * each;
  return 0;
}

/* Would `count` items of `each` bytes fit? Returns 0, or SHMD_ENOMEM with the budget marked over
 * (for replies whose size the request fixes: refused before anything is built). */
static int fits(uint64_t count, uint64_t each) {
  budget_t *b = cur_budget;
  if (b == NULL || count == 0 || each == 0 || count <= b->left / each)
    return 0;
  b->over = 1;
  return SHMD_ENOMEM;
}

static void refund(uint64_t count, uint64_t each) {
  budget_t *b = cur_budget;
  if (b == NULL || each == 0)
    return;
  uint64_t room = b->max - b->left;
  uint64_t n = count > room / each ? room : count * each;
  b->left += n;
}

void kv__reply_clear(shmd_reply_t *r);

/* Frees what a reply owns (elements are stored in place in their parent's array). */
void kv__reply_clear(shmd_reply_t *r) {
  for (size_t i = 0; i < r->nelems; i++)
    kv__reply_clear(&r->elems[i]);
  if (r->elems)
    refund(r->nelems, sizeof *r->elems);
  if (r->str)
    refund(1, str_cost(r->len));
  free(r->elems);
  free(r->str);
  r->elems = NULL;
  r->str = NULL;
  r->nelems = 0;
}

void shmd_reply_free(shmd_reply_t *r) {
  if (r == NULL)
    return;
  kv__reply_clear(r);
  free(r);
}

static int r_str(shmd_reply_t *r, shmd_reply_type_t t, const void *p, size_t n) {
  if (charge(1, str_cost(n)))
    return SHMD_ENOMEM;
  char *s = malloc(n + 1);
  if (s == NULL) {
    refund(1, str_cost(n));
    return SHMD_ENOMEM;
  }
  if (n)
    memcpy(s, p, n);
  s[n] = 0;
  r->type = t;
  r->str = s;
  r->len = n;
  return 0;
}
static int r_status(shmd_reply_t *r, const char *s) { return r_str(r, SHMD_REPLY_STATUS, s, strlen(s)); }
static int r_ok(shmd_reply_t *r) { return r_status(r, "OK"); }
static int r_error(shmd_reply_t *r, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0)
    n = 0;
  if ((size_t)n >= sizeof buf)
    n = sizeof buf - 1;
  return r_str(r, SHMD_REPLY_ERROR, buf, (size_t)n);
}
static int r_int(shmd_reply_t *r, int64_t v) {
  r->type = SHMD_REPLY_INTEGER;
  r->integer = v;
  return 0;
}
static int r_bulk(shmd_reply_t *r, const void *p, size_t n) { return r_str(r, SHMD_REPLY_BULK, p, n); }
static int r_nil(shmd_reply_t *r) {
  r->type = SHMD_REPLY_NIL;
  return 0;
}
static int r_array(shmd_reply_t *r, size_t n) {
  r->type = SHMD_REPLY_ARRAY;
  r->nelems = 0;
  r->elems = NULL;
  if (charge(n, sizeof *r->elems))
    return SHMD_ENOMEM;
  if (n && (r->elems = calloc(n, sizeof *r->elems)) == NULL) {
    refund(n, sizeof *r->elems);
    return SHMD_ENOMEM;
  }
  r->nelems = n;
  return 0;
}

/* Growable array reply. */
typedef struct vec_s {
  shmd_reply_t *e;
  size_t n, cap;
} vec_t;
static shmd_reply_t *vec_next(vec_t *v) {
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 16;
    if (cap > SIZE_MAX / sizeof *v->e || charge(cap - v->cap, sizeof *v->e))
      return NULL;
    shmd_reply_t *e = realloc(v->e, cap * sizeof *e);
    if (e == NULL) {
      refund(cap - v->cap, sizeof *v->e);
      return NULL;
    }
    v->e = e;
    v->cap = cap;
  }
  shmd_reply_t *x = &v->e[v->n++];
  memset(x, 0, sizeof *x);
  return x;
}
static int vec_bulk(vec_t *v, const void *p, size_t n) {
  shmd_reply_t *x = vec_next(v);
  return x ? r_bulk(x, p, n) : SHMD_ENOMEM;
}
/* Hands the elements to r (the unused slots stay charged: the reply holds them). */
static void vec_to(vec_t *v, shmd_reply_t *r) {
  r->type = SHMD_REPLY_ARRAY;
  r->elems = v->e;
  r->nelems = v->n;
  v->e = NULL;
  v->n = v->cap = 0;
}
static void vec_free(vec_t *v) {
  for (size_t i = 0; i < v->n; i++)
    kv__reply_clear(&v->e[i]);
  free(v->e);
  refund(v->cap, sizeof *v->e);
  v->e = NULL;
  v->n = v->cap = 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Parsing and formatting */

static int parse_ll(const char *s, size_t n, long long *out) {
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

static int parse_double(const char *s, size_t n, double *out) {
  char buf[128];
  if (n == 0 || n >= sizeof buf || isspace((unsigned char)s[0]))
    return -1;
  memcpy(buf, s, n);
  buf[n] = 0;
  char *end;
  errno = 0;
  double d = strtod(buf, &end);
  if ((size_t)(end - buf) != n || (errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL || d == 0)) || isnan(d))
    return -1;
  *out = d;
  return 0;
}

static int parse_ldouble(const char *s, size_t n, long double *out) {
  char buf[128];
  if (n == 0 || n >= sizeof buf || isspace((unsigned char)s[0]))
    return -1;
  memcpy(buf, s, n);
  buf[n] = 0;
  char *end;
  errno = 0;
  long double d = strtold(buf, &end);
  if ((size_t)(end - buf) != n || errno == ERANGE || isnan(d))
    return -1;
  *out = d;
  return 0;
}

static size_t fmt_double(double d, char *buf, size_t cap) {
  if (isinf(d))
    return (size_t)snprintf(buf, cap, "%s", d > 0 ? "inf" : "-inf");
  return (size_t)snprintf(buf, cap, "%.17g", d);
}

static size_t fmt_ldouble(long double d, char *buf, size_t cap) {
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

static int eq(const char *a, size_t n, const char *lit) {
  return strlen(lit) == n && strncasecmp(a, lit, n) == 0;
}

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

int shmd_kv_glob(const char *pattern, size_t plen, const char *str, size_t slen) {
  return glob(pattern, plen, str, slen, 0, 0);
}

/* ---------------------------------------------------------------------------------------------- */
/* Keys */

typedef struct cmdctx_s {
  kv_ctx_t *c;
  int argc;
  argv_t argv;
  const size_t *lens;
  shmd_reply_t *r;
} cc_t;

#define A(i) (x->argv[i])
#define L(i) (x->lens[i])
#define WRONGTYPE() r_error(x->r, ERR_WRONGTYPE)

static int c_del(cc_t *x) {
  int64_t n = 0;
  for (int i = 1; i < x->argc; i++) {
    int rc = kv_delete(x->c, A(i), L(i));
    if (rc == 0)
      n++;
    else if (rc != SHMD_ENOTFOUND)
      return rc;
  }
  return r_int(x->r, n);
}

static int c_exists(cc_t *x) {
  int64_t n = 0;
  for (int i = 1; i < x->argc; i++) {
    kv_ref_t ref;
    int rc = kv_lookup(x->c, A(i), L(i), &ref);
    if (rc == 0)
      n++;
    else if (rc != SHMD_ENOTFOUND)
      return rc;
  }
  return r_int(x->r, n);
}

static const char *type_name(uint32_t t) {
  switch (t) {
  case KV_STRING: return "string";
  case KV_LIST: return "list";
  case KV_SET: return "set";
  case KV_HASH: return "hash";
  case KV_ZSET: return "zset";
  default: return "none";
  }
}

static int c_type(cc_t *x) {
  kv_ref_t ref;
  int rc = kv_lookup(x->c, A(1), L(1), &ref);
  if (rc == SHMD_ENOTFOUND)
    return r_status(x->r, "none");
  if (rc)
    return rc;
  return r_status(x->r, type_name(ref.rec->type));
}

static int c_rename(cc_t *x) {
  kv_ref_t ref;
  int rc = kv_lookup(x->c, A(1), L(1), &ref);
  if (rc == SHMD_ENOTFOUND)
    return r_error(x->r, "ERR no such key");
  if (rc)
    return rc;
  if (L(1) == L(2) && memcmp(A(1), A(2), L(1)) == 0)
    return r_ok(x->r);
  size_t n = sizeof(kv_rec_t) + ref.len;
  unsigned char *copy = malloc(n);
  if (copy == NULL)
    return SHMD_ENOMEM;
  memcpy(copy, ref.rec, n);
  /* Remove the source record without releasing its containers (they move to the new key). */
  rc = shmd_hash_del(x->c->s, kv_stripe_hash(x->c, A(1), L(1)), A(1), L(1));
  if (rc == 0) {
    rc = kv_delete(x->c, A(2), L(2));
    if (rc == SHMD_ENOTFOUND)
      rc = 0;
  }
  shmd_hash_ref_t hr;
  if (rc == 0)
    rc = shmd_hash_put_ref(x->c->s, kv_stripe_hash(x->c, A(2), L(2)), A(2), L(2), n, SHMD_HASH_UPSERT, NULL, &hr);
  if (rc == 0)
    memcpy(hr.val, copy, n);
  free(copy);
  return rc ? rc : r_ok(x->r);
}

typedef struct keyscan_s {
  vec_t v;
  const char *pat;
  size_t pl;
  uint64_t now;
  uint32_t type;
  int rc;
} keyscan_t;

static int keys_visit(const void *key, size_t klen, const void *val, size_t vlen, void *arg) {
  keyscan_t *k = arg;
  const kv_rec_t *r = val;
  if (vlen < sizeof(kv_rec_t))
    return SHMD_ECORRUPT;
  if (r->expire && r->expire <= k->now)
    return 0;
  if (k->type && r->type != k->type)
    return 0;
  if (k->pat && !glob(k->pat, k->pl, key, klen, 0, 0))
    return 0;
  return vec_bulk(&k->v, key, klen);
}

static int c_keys(cc_t *x) {
  keyscan_t k = {{0}, A(1), L(1), x->c->now, 0, 0};
  if (L(1) == 1 && A(1)[0] == '*')
    k.pat = NULL;
  for (unsigned i = 0; i < KV_STRIPES; i++) {
    int rc = shmd_hash_foreach(x->c->s, x->c->db->stripe[i], keys_visit, &k);
    if (rc) {
      vec_free(&k.v);
      return rc;
    }
  }
  vec_to(&k.v, x->r);
  return 0;
}

/* SCAN-family options: cursor MATCH COUNT (TYPE when allow_type). */
typedef struct scanopt_s {
  uint64_t cursor;
  const char *pat;
  size_t pl;
  long long count;
  uint32_t type;
} scanopt_t;

static int parse_scan(cc_t *x, int ci, int allow_type, scanopt_t *o) {
  memset(o, 0, sizeof *o);
  o->count = 10;
  char buf[32];
  if (L(ci) == 0 || L(ci) >= sizeof buf)
    return r_error(x->r, "ERR invalid cursor");
  memcpy(buf, A(ci), L(ci));
  buf[L(ci)] = 0;
  char *end;
  errno = 0;
  o->cursor = strtoull(buf, &end, 10);
  if (*end || errno || buf[0] == '-')
    return r_error(x->r, "ERR invalid cursor");
  for (int i = ci + 1; i < x->argc; i += 2) {
    if (i + 1 >= x->argc)
      return r_error(x->r, ERR_SYNTAX);
    if (eq(A(i), L(i), "COUNT")) {
      if (parse_ll(A(i + 1), L(i + 1), &o->count))
        return r_error(x->r, ERR_NOTINT);
      if (o->count < 1)
        return r_error(x->r, ERR_SYNTAX);
    } else if (eq(A(i), L(i), "MATCH")) {
      o->pat = A(i + 1);
      o->pl = L(i + 1);
      if (o->pl == 1 && o->pat[0] == '*')
        o->pat = NULL;
    } else if (allow_type && eq(A(i), L(i), "TYPE")) {
      static const char *names[] = {"", "string", "list", "set", "hash", "zset"};
      o->type = 99; /* unknown type matches nothing */
      for (uint32_t t = 1; t <= 5; t++)
        if (eq(A(i + 1), L(i + 1), names[t]))
          o->type = t;
    } else {
      return r_error(x->r, ERR_SYNTAX);
    }
  }
  return 1;
}

static int scan_reply(shmd_reply_t *r, uint64_t cursor, vec_t *v) {
  int rc = r_array(r, 2);
  if (rc)
    return rc;
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%llu", (unsigned long long)cursor);
  if ((rc = r_bulk(&r->elems[0], buf, (size_t)n)))
    return rc;
  vec_to(v, &r->elems[1]);
  return 0;
}

/* The SCAN cursor: stripe in the low 3 bits, the stripe hash's cursor above. */
static int c_scan(cc_t *x) {
  scanopt_t o;
  int rc = parse_scan(x, 1, 1, &o);
  if (rc <= 0)
    return rc;
  keyscan_t k = {{0}, o.pat, o.pl, x->c->now, o.type, 0};
  unsigned st = (unsigned)(o.cursor % KV_STRIPES);
  uint64_t hc = o.cursor / KV_STRIPES;
  while (st < KV_STRIPES && k.v.n < (size_t)o.count) {
    if ((rc = shmd_hash_scan(x->c->s, x->c->db->stripe[st], hc, (size_t)o.count, keys_visit, &k, &hc))) {
      vec_free(&k.v);
      return rc;
    }
    if (hc == 0)
      st++;
  }
  uint64_t next = st >= KV_STRIPES ? 0 : hc * KV_STRIPES + st;
  return scan_reply(x->r, next, &k.v);
}

static int c_dbsize(cc_t *x) {
  uint64_t total = 0;
  for (unsigned i = 0; i < KV_STRIPES; i++) {
    uint64_t n;
    int rc = shmd_hash_len(x->c->s, x->c->db->stripe[i], &n);
    if (rc)
      return rc;
    total += n;
  }
  return r_int(x->r, (int64_t)total);
}

static int c_flushdb(cc_t *x) {
  if (x->argc > 2 || (x->argc == 2 && !eq(A(1), L(1), "ASYNC") && !eq(A(1), L(1), "SYNC")))
    return r_error(x->r, ERR_SYNTAX);
  int rc = kv_flushdb(x->c);
  return rc ? rc : r_ok(x->r);
}

static int c_expire_gen(cc_t *x, int ms, const char *name) {
  long long v;
  if (parse_ll(A(2), L(2), &v))
    return r_error(x->r, ERR_NOTINT);
  int nx = 0, xx = 0, gt = 0, lt = 0;
  for (int i = 3; i < x->argc; i++) {
    if (eq(A(i), L(i), "NX")) nx = 1;
    else if (eq(A(i), L(i), "XX")) xx = 1;
    else if (eq(A(i), L(i), "GT")) gt = 1;
    else if (eq(A(i), L(i), "LT")) lt = 1;
    else return r_error(x->r, "ERR Unsupported option %.*s", (int)L(i), A(i));
  }
  if (nx && (xx || gt || lt))
    return r_error(x->r, "ERR NX and XX, GT or LT options at the same time are not compatible");
  if (gt && lt)
    return r_error(x->r, "ERR GT and LT options at the same time are not compatible");
  long long when;
  if (!ms) {
    if (v > LLONG_MAX / 1000 || v < LLONG_MIN / 1000)
      return r_error(x->r, "ERR invalid expire time in '%s' command", name);
    v *= 1000;
  }
  if ((v > 0 && (long long)x->c->now > LLONG_MAX - v))
    return r_error(x->r, "ERR invalid expire time in '%s' command", name);
  when = v + (long long)x->c->now;
  kv_ref_t ref;
  int rc = kv_lookup(x->c, A(1), L(1), &ref);
  if (rc == SHMD_ENOTFOUND)
    return r_int(x->r, 0);
  if (rc)
    return rc;
  uint64_t cur = ref.rec->expire;
  if (nx && cur) return r_int(x->r, 0);
  if (xx && !cur) return r_int(x->r, 0);
  if (gt && (!cur || (long long)cur >= when)) return r_int(x->r, 0);
  if (lt && cur && (long long)cur <= when) return r_int(x->r, 0);
  if (when <= (long long)x->c->now) {
    if ((rc = kv_delete(x->c, A(1), L(1))))
      return rc;
    return r_int(x->r, 1);
  }
  if ((rc = kv_set_expire(x->c, &ref, (uint64_t)when)))
    return rc;
  return r_int(x->r, 1);
}
static int c_expire(cc_t *x) { return c_expire_gen(x, 0, "expire"); }
static int c_pexpire(cc_t *x) { return c_expire_gen(x, 1, "pexpire"); }

static int c_ttl_gen(cc_t *x, int ms) {
  kv_ref_t ref;
  int rc = kv_lookup(x->c, A(1), L(1), &ref);
  if (rc == SHMD_ENOTFOUND)
    return r_int(x->r, -2);
  if (rc)
    return rc;
  if (!ref.rec->expire)
    return r_int(x->r, -1);
  int64_t left = (int64_t)(ref.rec->expire - x->c->now);
  /* seconds: (left + 500) / 1000 as Redis rounds, without overflow for an expiry near 2^63 */
  if (!ms)
    left = left > INT64_MAX - 500 ? (int64_t)(((uint64_t)left + 500) / 1000) : (left + 500) / 1000;
  return r_int(x->r, left);
}
static int c_ttl(cc_t *x) { return c_ttl_gen(x, 0); }
static int c_pttl(cc_t *x) { return c_ttl_gen(x, 1); }

static int c_persist(cc_t *x) {
  kv_ref_t ref;
  int rc = kv_lookup(x->c, A(1), L(1), &ref);
  if (rc == SHMD_ENOTFOUND)
    return r_int(x->r, 0);
  if (rc)
    return rc;
  if (!ref.rec->expire)
    return r_int(x->r, 0);
  if ((rc = kv_set_expire(x->c, &ref, 0)))
    return rc;
  return r_int(x->r, 1);
}

/* ---------------------------------------------------------------------------------------------- */
/* Strings */

static int get_string(cc_t *x, const char *k, size_t kl, kv_ref_t *ref) {
  return kv_lookup_type(x->c, k, kl, KV_STRING, ref);
}

static int c_get(cc_t *x) {
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

static int c_getdel(cc_t *x) {
  int rc = c_get(x);
  if (rc || x->r->type != SHMD_REPLY_BULK)
    return rc;
  return kv_delete(x->c, A(1), L(1));
}

static int c_set(cc_t *x) {
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

static int c_setnx(cc_t *x) {
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

static int c_mget(cc_t *x) {
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

static int c_mset(cc_t *x) {
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
static int c_incr(cc_t *x) { return incr_by(x, 1); }
static int c_decr(cc_t *x) { return incr_by(x, -1); }
static int c_incrby(cc_t *x) {
  long long by;
  if (parse_ll(A(2), L(2), &by))
    return r_error(x->r, ERR_NOTINT);
  return incr_by(x, by);
}
static int c_decrby(cc_t *x) {
  long long by;
  if (parse_ll(A(2), L(2), &by))
    return r_error(x->r, ERR_NOTINT);
  if (by == LLONG_MIN)
    return r_error(x->r, "ERR decrement would overflow");
  return incr_by(x, -by);
}

static int c_incrbyfloat(cc_t *x) {
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

static int c_append(cc_t *x) {
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

static int c_strlen(cc_t *x) {
  kv_ref_t ref;
  int rc = get_string(x, A(1), L(1), &ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc == SHMD_ENOTFOUND)
    return r_int(x->r, 0);
  return rc ? rc : r_int(x->r, (int64_t)ref.len);
}

static int c_getrange(cc_t *x) {
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

static int c_setrange(cc_t *x) {
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
/* Hashes */

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
static int c_hset(cc_t *x) { return c_hset_gen(x, 0); }
static int c_hsetnx(cc_t *x) { return c_hset_gen(x, 1); }

/* Looks up the container of `type`; replies nil/0/empty (via `missing`) when absent. Returns 1 to
 * go on, 0 when replied, negative on failure. */
enum { MISS_NIL, MISS_ZERO, MISS_EMPTY, MISS_NILARR };
static int need(cc_t *x, uint32_t type, int missing, kv_ref_t *ref) {
  int rc = kv_lookup_type(x->c, A(1), L(1), type, ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc == SHMD_ENOTFOUND) {
    switch (missing) {
    case MISS_NIL: return r_nil(x->r);
    case MISS_ZERO: return r_int(x->r, 0);
    case MISS_EMPTY: return r_array(x->r, 0);
    default: x->r->type = SHMD_REPLY_NIL; return 0;
    }
  }
  return rc ? rc : 1;
}

static int hget_into(cc_t *x, shmd_ptr_t h, const char *f, size_t fl, shmd_reply_t *r) {
  void *v;
  size_t vl;
  int rc = shmd_hash_get_alloc(x->c->s, h, f, fl, &v, &vl);
  if (rc == SHMD_ENOTFOUND)
    return r_nil(r);
  if (rc)
    return rc;
  if ((rc = charge(1, str_cost(vl)))) { /* one stored value was copied: charged once it is known */
    free(v);
    return rc;
  }
  r->type = SHMD_REPLY_BULK;
  r->str = v;
  r->len = vl;
  return 0;
}

static int c_hget(cc_t *x) {
  kv_ref_t ref;
  int rc = need(x, KV_HASH, MISS_NIL, &ref);
  if (rc <= 0)
    return rc;
  return hget_into(x, ref.a, A(2), L(2), x->r);
}

static int c_hmget(cc_t *x) {
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
static int del_members(cc_t *x, int type) {
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

static int has_member(cc_t *x, int type) {
  kv_ref_t ref;
  int rc = need(x, type, MISS_ZERO, &ref);
  if (rc <= 0)
    return rc;
  rc = shmd_hash_contains(x->c->s, ref.a, A(2), L(2));
  return rc < 0 ? rc : r_int(x->r, rc);
}

static int count_members(cc_t *x, int type) {
  kv_ref_t ref;
  int rc = need(x, type, MISS_ZERO, &ref);
  if (rc <= 0)
    return rc;
  uint64_t n;
  if ((rc = shmd_hash_len(x->c->s, ref.a, &n)))
    return rc;
  return r_int(x->r, (int64_t)n);
}

static int c_hdel(cc_t *x) { return del_members(x, KV_HASH); }
static int c_hexists(cc_t *x) { return has_member(x, KV_HASH); }
static int c_hlen(cc_t *x) { return count_members(x, KV_HASH); }
static int c_srem(cc_t *x) { return del_members(x, KV_SET); }
static int c_sismember(cc_t *x) { return has_member(x, KV_SET); }
static int c_scard(cc_t *x) { return count_members(x, KV_SET); }

typedef struct hwalk_s {
  vec_t v;
  int keys, vals;
  const char *pat;
  size_t pl;
} hwalk_t;

static int hwalk_visit(const void *k, size_t kl, const void *val, size_t vl, void *arg) {
  hwalk_t *w = arg;
  int rc;
  if (w->pat && !glob(w->pat, w->pl, k, kl, 0, 0))
    return 0;
  if (w->keys && (rc = vec_bulk(&w->v, k, kl)))
    return rc;
  if (w->vals && (rc = vec_bulk(&w->v, val, vl)))
    return rc;
  return 0;
}

static int hash_walk(cc_t *x, uint32_t type, int keys, int vals) {
  kv_ref_t ref;
  int rc = need(x, type, MISS_EMPTY, &ref);
  if (rc <= 0)
    return rc;
  hwalk_t w = {{0}, keys, vals, NULL, 0};
  if ((rc = shmd_hash_foreach(x->c->s, ref.a, hwalk_visit, &w))) {
    vec_free(&w.v);
    return rc;
  }
  vec_to(&w.v, x->r);
  return 0;
}
static int c_hkeys(cc_t *x) { return hash_walk(x, KV_HASH, 1, 0); }
static int c_hvals(cc_t *x) { return hash_walk(x, KV_HASH, 0, 1); }
static int c_hgetall(cc_t *x) { return hash_walk(x, KV_HASH, 1, 1); }
static int c_smembers(cc_t *x) { return hash_walk(x, KV_SET, 1, 0); }

static int c_hincrby(cc_t *x) {
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

/* HSCAN / SSCAN / ZSCAN */
typedef struct zscan_s {
  vec_t v;
  const char *pat;
  size_t pl;
  int mode; /* 0 keys, 1 key+val, 2 key+score */
} xscan_t;

static int xscan_visit(const void *k, size_t kl, const void *val, size_t vl, void *arg) {
  xscan_t *w = arg;
  int rc;
  if (w->pat && !glob(w->pat, w->pl, k, kl, 0, 0))
    return 0;
  if ((rc = vec_bulk(&w->v, k, kl)))
    return rc;
  if (w->mode == 1)
    return vec_bulk(&w->v, val, vl);
  if (w->mode == 2) {
    double d = 0;
    if (vl == 8)
      memcpy(&d, val, 8);
    char buf[64];
    return vec_bulk(&w->v, buf, fmt_double(d, buf, sizeof buf));
  }
  return 0;
}

static int xscan(cc_t *x, uint32_t type, int mode) {
  scanopt_t o;
  int rc = parse_scan(x, 2, 0, &o);
  if (rc <= 0)
    return rc;
  kv_ref_t ref;
  rc = kv_lookup_type(x->c, A(1), L(1), type, &ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  xscan_t w = {{0}, o.pat, o.pl, mode};
  uint64_t next = 0;
  if (rc == 0) {
    next = o.cursor;
    do {
      if ((rc = shmd_hash_scan(x->c->s, ref.a, next, (size_t)o.count, xscan_visit, &w, &next))) {
        vec_free(&w.v);
        return rc;
      }
    } while (next != 0 && w.v.n == 0);
  } else if (rc != SHMD_ENOTFOUND) {
    return rc;
  }
  return scan_reply(x->r, next, &w.v);
}
static int c_hscan(cc_t *x) { return xscan(x, KV_HASH, 1); }
static int c_sscan(cc_t *x) { return xscan(x, KV_SET, 0); }
static int c_zscan(cc_t *x) { return xscan(x, KV_ZSET, 2); }

/* ---------------------------------------------------------------------------------------------- */
/* Lists */

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
static int c_lpush(cc_t *x) { return c_push(x, SHMD_LIST_HEAD); }
static int c_rpush(cc_t *x) { return c_push(x, SHMD_LIST_TAIL); }

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
static int c_lpop(cc_t *x) { return c_pop(x, SHMD_LIST_HEAD); }
static int c_rpop(cc_t *x) { return c_pop(x, SHMD_LIST_TAIL); }

static int c_llen(cc_t *x) {
  kv_ref_t ref;
  int rc = need(x, KV_LIST, MISS_ZERO, &ref);
  if (rc <= 0)
    return rc;
  uint64_t n;
  if ((rc = shmd_list_len(x->c->s, ref.a, &n)))
    return rc;
  return r_int(x->r, (int64_t)n);
}

static int c_lindex(cc_t *x) {
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

static int c_lrange(cc_t *x) {
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

static int c_lset(cc_t *x) {
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

static int c_lrem(cc_t *x) {
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

static int c_ltrim(cc_t *x) {
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

static int c_linsert(cc_t *x) {
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
/* Sets */

static int c_sadd(cc_t *x) {
  kv_ref_t ref;
  int rc = kv_container(x->c, A(1), L(1), KV_SET, 1, &ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc)
    return rc;
  int64_t n = 0;
  for (int i = 2; i < x->argc; i++) {
    rc = shmd_hash_put(x->c->s, ref.a, A(i), L(i), "", 0, SHMD_HASH_INSERT, NULL);
    if (rc == 0)
      n++;
    else if (rc != SHMD_EEXIST)
      return rc;
  }
  return r_int(x->r, n);
}

static uint64_t rng_next(void) {
  static __thread uint64_t s;
  if (s == 0)
    s = kv_now_ms() ^ ((uint64_t)(uintptr_t)&s << 7) ^ 0x9E3779B97F4A7C15ull;
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

/* All members of a set (process-local copies). */
static int set_members(cc_t *x, shmd_ptr_t h, vec_t *v) {
  hwalk_t w = {{0}, 1, 0, NULL, 0};
  int rc = shmd_hash_foreach(x->c->s, h, hwalk_visit, &w);
  if (rc) {
    vec_free(&w.v);
    return rc;
  }
  *v = w.v;
  return 0;
}

#define PICK_SAMPLE 8

static int pick_cb(const void *k, size_t kl, const void *v, size_t vl, void *arg) {
  (void)v;
  (void)vl;
  vec_t *sample = arg;
  int rc = vec_bulk(sample, k, kl);
  if (rc)
    return rc;
  return sample->n >= PICK_SAMPLE; /* 1 stops the step */
}

/* Appends one random member of the non-empty set h to out, in O(1) expected: SCAN steps from a
 * random position of the cursor space collect up to PICK_SAMPLE members, and one of them is chosen
 * uniformly (Redis's dictGetFairRandomKey samples the same way to soften the bias of members that
 * follow long gaps). */
static int pick_random(cc_t *x, shmd_ptr_t h, vec_t *out) {
  uint64_t cur = rng_next(), next;
  vec_t sample = {0};
  int rc = 0;
  for (uint64_t tries = 0; tries < (UINT64_C(1) << 32); tries++) {
    rc = shmd_hash_scan(x->c->s, h, cur, PICK_SAMPLE, pick_cb, &sample, &next);
    if (rc < 0)
      break;
    if (rc == 1 || (sample.n > 0 && next == 0) || sample.n >= PICK_SAMPLE)
      break;
    cur = next;
  }
  if (rc >= 0)
    rc = sample.n ? 0 : SHMD_ECORRUPT;
  if (rc == 0) {
    size_t i = (size_t)(rng_next() % sample.n);
    rc = vec_bulk(out, sample.e[i].str, sample.e[i].len);
  }
  vec_free(&sample);
  return rc;
}

static int cmp_reply(const void *a, const void *b) {
  const shmd_reply_t *x = a, *y = b;
  return shmd_bytes_cmp(x->str, x->len, y->str, y->len);
}

/* Sorts the bulks of v and drops repeats. Cannot fail. */
static void vec_sort_unique(vec_t *v) {
  if (v->n < 2)
    return;
  qsort(v->e, v->n, sizeof *v->e, cmp_reply);
  size_t w = 1;
  for (size_t k = 1; k < v->n; k++) {
    if (cmp_reply(&v->e[k], &v->e[w - 1]) == 0)
      kv__reply_clear(&v->e[k]);
    else
      v->e[w++] = v->e[k];
  }
  v->n = w;
}

/* m distinct random members of h (m at most a third of its size) without copying the set: random
 * picks, deduplicated, until there are m (Redis's SRANDMEMBER case 4 does the same with a dict).
 * Returns 0, 1 when 64 rounds did not find m (the caller falls back to a full copy), or a
 * negative status. */
static int sample_distinct(cc_t *x, shmd_ptr_t h, size_t m, vec_t *out) {
  int rc = 0;
  for (int round = 0; rc == 0 && out->n < m && round < 64; round++) {
    for (size_t want = m - out->n; rc == 0 && want > 0; want--)
      rc = pick_random(x, h, out);
    vec_sort_unique(out);
  }
  return rc ? rc : out->n < m;
}

/* SPOP / SRANDMEMBER: `count` given or not; pop removes. Without a count: pick_random(), O(1)
 * expected. With a count m, as Redis chooses: all members when m >= the set's size n; for a
 * negative count (repeats allowed), m random picks (or random indexes into a copy when m >= n);
 * for m > n / 3, the first m of a shuffled copy; else random picks deduplicated until m. So a small
 * count on a big set never copies the set (the copy would count against the reply ceiling). */
static int c_srand_gen(cc_t *x, int pop) {
  long long count = 1;
  int with_count = x->argc == 3;
  if (x->argc > 3)
    return r_error(x->r, ERR_SYNTAX);
  if (with_count && parse_ll(A(2), L(2), &count))
    return r_error(x->r, ERR_NOTINT);
  if (pop && count < 0)
    return r_error(x->r, "ERR value is out of range, must be positive");
  if (count == LLONG_MIN) /* -count would overflow; Redis's range is -LONG_MAX .. LONG_MAX */
    return r_error(x->r, ERR_COUNT_RANGE);
  kv_ref_t ref;
  int rc = need(x, KV_SET, with_count ? MISS_EMPTY : MISS_NIL, &ref);
  if (rc <= 0)
    return rc;
  /* A negative count asks for exactly -count elements, whatever the set's size: refuse at once a
   * reply that could not fit the ceiling even with the smallest elements. */
  if (count < 0 && (rc = fits((uint64_t)-count, sizeof(shmd_reply_t) + str_cost(0))))
    return rc;
  uint64_t n;
  if ((rc = shmd_hash_len(x->c->s, ref.a, &n)))
    return rc;
  vec_t all = {0}, out = {0};
  if (!with_count) {
    rc = pick_random(x, ref.a, &out);
  } else if (count < 0) {
    uint64_t m = (uint64_t)-count;
    if (m < n) {
      for (uint64_t k = 0; rc == 0 && k < m; k++)
        rc = pick_random(x, ref.a, &out);
    } else if ((rc = set_members(x, ref.a, &all)) == 0 && all.n == 0) {
      rc = SHMD_CORRUPT("kv: a set without members");
    } else {
      for (uint64_t k = 0; rc == 0 && k < m; k++) {
        size_t i = (size_t)(rng_next() % all.n);
        rc = vec_bulk(&out, all.e[i].str, all.e[i].len);
      }
    }
  } else {
    uint64_t m = (uint64_t)count < n ? (uint64_t)count : n;
    rc = m == 0 ? 0 : m <= n / 3 ? sample_distinct(x, ref.a, (size_t)m, &out) : 1;
    if (rc == 1) {
      vec_free(&out);
      /* Partial Fisher-Yates over a copy: the first min(m, copy) of a shuffle. */
      if ((rc = set_members(x, ref.a, &all)) == 0) {
        size_t mm = m < all.n ? (size_t)m : all.n;
        for (size_t k = 0; rc == 0 && k < mm; k++) {
          size_t j = k + (size_t)(rng_next() % (all.n - k));
          shmd_reply_t t = all.e[k];
          all.e[k] = all.e[j];
          all.e[j] = t;
          rc = vec_bulk(&out, all.e[k].str, all.e[k].len);
        }
      }
    }
  }
  vec_free(&all);
  for (size_t k = 0; rc == 0 && pop && k < out.n; k++)
    rc = shmd_hash_del(x->c->s, ref.a, out.e[k].str, out.e[k].len);
  if (rc == 0 && pop)
    rc = kv_drop_if_empty(x->c, A(1), L(1), &ref);
  if (rc) {
    vec_free(&out);
    return rc;
  }
  if (!with_count) {
    *x->r = out.e[0];
    free(out.e);
    return 0;
  }
  vec_to(&out, x->r);
  return 0;
}
static int c_spop(cc_t *x) { return c_srand_gen(x, 1); }
static int c_srandmember(cc_t *x) { return c_srand_gen(x, 0); }

enum { OP_INTER, OP_UNION, OP_DIFF };

static int c_setop(cc_t *x, int op) {
  int n = x->argc - 1;
  shmd_ptr_t *sets = calloc((size_t)n, sizeof *sets);
  if (sets == NULL)
    return SHMD_ENOMEM;
  int rc = 0;
  for (int i = 0; i < n; i++) {
    kv_ref_t ref;
    rc = kv_lookup_type(x->c, A(i + 1), L(i + 1), KV_SET, &ref);
    if (rc == SHMD_EWRONGTYPE) {
      free(sets);
      return WRONGTYPE();
    }
    if (rc == 0)
      sets[i] = ref.a;
    else if (rc != SHMD_ENOTFOUND)
      goto out;
    rc = 0;
  }
  vec_t res = {0};
  if (op == OP_INTER) {
    int smallest = -1;
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < n; i++) {
      uint64_t len = 0;
      if (!sets[i].v) {
        best = 0;
        smallest = -1;
        break;
      }
      if ((rc = shmd_hash_len(x->c->s, sets[i], &len)))
        goto out;
      if (len < best) {
        best = len;
        smallest = i;
      }
    }
    if (smallest >= 0) {
      vec_t m;
      if ((rc = set_members(x, sets[smallest], &m)))
        goto out;
      for (size_t k = 0; k < m.n && rc == 0; k++) {
        int all = 1;
        for (int i = 0; i < n && all; i++) {
          if (i == smallest)
            continue;
          int c = shmd_hash_contains(x->c->s, sets[i], m.e[k].str, m.e[k].len);
          if (c < 0)
            rc = c;
          all = c == 1;
        }
        if (all && rc == 0)
          rc = vec_bulk(&res, m.e[k].str, m.e[k].len);
      }
      vec_free(&m);
    }
  } else if (op == OP_UNION) {
    for (int i = 0; i < n && rc == 0; i++) {
      if (!sets[i].v)
        continue;
      vec_t m;
      if ((rc = set_members(x, sets[i], &m)))
        break;
      for (size_t k = 0; k < m.n && rc == 0; k++)
        rc = vec_bulk(&res, m.e[k].str, m.e[k].len);
      vec_free(&m);
    }
    if (rc == 0)
      vec_sort_unique(&res);
  } else if (sets[0].v) {
    vec_t m;
    if ((rc = set_members(x, sets[0], &m)))
      goto out;
    for (size_t k = 0; k < m.n && rc == 0; k++) {
      int found = 0;
      for (int i = 1; i < n && !found && rc == 0; i++) {
        if (!sets[i].v)
          continue;
        int c = shmd_hash_contains(x->c->s, sets[i], m.e[k].str, m.e[k].len);
        if (c < 0)
          rc = c;
        found = c == 1;
      }
      if (!found && rc == 0)
        rc = vec_bulk(&res, m.e[k].str, m.e[k].len);
    }
    vec_free(&m);
  }
  if (rc)
    vec_free(&res);
  else
    vec_to(&res, x->r);
out:
  free(sets);
  return rc;
}
static int c_sinter(cc_t *x) { return c_setop(x, OP_INTER); }
static int c_sunion(cc_t *x) { return c_setop(x, OP_UNION); }
static int c_sdiff(cc_t *x) { return c_setop(x, OP_DIFF); }

/* ---------------------------------------------------------------------------------------------- */
/* Sorted sets */

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

static int z_add_one(kv_ctx_t *c, kv_ref_t *ref, const void *m, size_t ml, double score, int nx,
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

static int c_zadd(cc_t *x) {
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
    rc = z_add_one(x->c, &ref, A(j + 1), L(j + 1), d, nx, xx, gt, lt, incr, &a, &c2, &last);
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

static int c_zincrby(cc_t *x) {
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
  rc = z_add_one(x->c, &ref, A(3), L(3), d, 0, 0, 0, 0, 1, &a, &c2, &out);
  if (rc == 2)
    return r_error(x->r, "ERR resulting score is not a number (NaN)");
  if (rc < 0)
    return rc;
  char buf[64];
  return r_bulk(x->r, buf, fmt_double(out, buf, sizeof buf));
}

static int c_zrem(cc_t *x) {
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

static int c_zscore(cc_t *x) {
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

static int c_zcard(cc_t *x) {
  kv_ref_t ref;
  int rc = need(x, KV_ZSET, MISS_ZERO, &ref);
  if (rc <= 0)
    return rc;
  uint64_t n;
  if ((rc = shmd_hash_len(x->c->s, ref.a, &n)))
    return rc;
  return r_int(x->r, (int64_t)n);
}

static int z_rank(kv_ctx_t *c, kv_ref_t *ref, const void *m, size_t ml, int rev, uint64_t *rank) {
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
  rc = z_rank(x->c, &ref, A(2), L(2), rev, &rank);
  if (rc == SHMD_ENOTFOUND)
    return r_nil(x->r);
  return rc ? rc : r_int(x->r, (int64_t)rank);
}
static int c_zrank(cc_t *x) { return c_zrank_gen(x, 0); }
static int c_zrevrank(cc_t *x) { return c_zrank_gen(x, 1); }

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

static int c_zrange(cc_t *x) {
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

static int c_zrangebyscore(cc_t *x) {
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

static int c_zcount(cc_t *x) {
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

static int c_zremrangebyrank(cc_t *x) {
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
  kv__reply_clear(&tmp);
  if (rc == 0)
    rc = kv_drop_if_empty(x->c, A(1), L(1), &ref);
  return rc ? rc : r_int(x->r, removed);
}

/* ---------------------------------------------------------------------------------------------- */
/* Dispatch */

enum { F_ALL = 1 }; /* takes every stripe */

typedef struct cmd_s {
  const char *name;
  int arity; /* > 0 exact, < 0 at least -arity */
  int (*fn)(cc_t *);
  int first, last, step; /* key positions (last < 0: from the end) */
  unsigned flags;
} cmd_t;

static const cmd_t commands[] = {
    {"del", -2, c_del, 1, -1, 1, 0},
    {"unlink", -2, c_del, 1, -1, 1, 0},
    {"exists", -2, c_exists, 1, -1, 1, 0},
    {"type", 2, c_type, 1, 1, 1, 0},
    {"rename", 3, c_rename, 1, 2, 1, 0},
    {"keys", 2, c_keys, 0, 0, 0, F_ALL},
    {"scan", -2, c_scan, 0, 0, 0, F_ALL},
    {"dbsize", 1, c_dbsize, 0, 0, 0, F_ALL},
    {"flushdb", -1, c_flushdb, 0, 0, 0, F_ALL},
    {"expire", -3, c_expire, 1, 1, 1, 0},
    {"pexpire", -3, c_pexpire, 1, 1, 1, 0},
    {"ttl", 2, c_ttl, 1, 1, 1, 0},
    {"pttl", 2, c_pttl, 1, 1, 1, 0},
    {"persist", 2, c_persist, 1, 1, 1, 0},
    {"set", -3, c_set, 1, 1, 1, 0},
    {"get", 2, c_get, 1, 1, 1, 0},
    {"getdel", 2, c_getdel, 1, 1, 1, 0},
    {"mget", -2, c_mget, 1, -1, 1, 0},
    {"mset", -3, c_mset, 1, -1, 2, 0},
    {"setnx", 3, c_setnx, 1, 1, 1, 0},
    {"incr", 2, c_incr, 1, 1, 1, 0},
    {"decr", 2, c_decr, 1, 1, 1, 0},
    {"incrby", 3, c_incrby, 1, 1, 1, 0},
    {"decrby", 3, c_decrby, 1, 1, 1, 0},
    {"incrbyfloat", 3, c_incrbyfloat, 1, 1, 1, 0},
    {"append", 3, c_append, 1, 1, 1, 0},
    {"strlen", 2, c_strlen, 1, 1, 1, 0},
    {"getrange", 4, c_getrange, 1, 1, 1, 0},
    {"setrange", 4, c_setrange, 1, 1, 1, 0},
    {"hset", -4, c_hset, 1, 1, 1, 0},
    {"hmset", -4, c_hset, 1, 1, 1, 0},
    {"hsetnx", 4, c_hsetnx, 1, 1, 1, 0},
    {"hget", 3, c_hget, 1, 1, 1, 0},
    {"hmget", -3, c_hmget, 1, 1, 1, 0},
    {"hdel", -3, c_hdel, 1, 1, 1, 0},
    {"hexists", 3, c_hexists, 1, 1, 1, 0},
    {"hlen", 2, c_hlen, 1, 1, 1, 0},
    {"hkeys", 2, c_hkeys, 1, 1, 1, 0},
    {"hvals", 2, c_hvals, 1, 1, 1, 0},
    {"hgetall", 2, c_hgetall, 1, 1, 1, 0},
    {"hincrby", 4, c_hincrby, 1, 1, 1, 0},
    {"hscan", -3, c_hscan, 1, 1, 1, 0},
    {"lpush", -3, c_lpush, 1, 1, 1, 0},
    {"rpush", -3, c_rpush, 1, 1, 1, 0},
    {"lpop", -2, c_lpop, 1, 1, 1, 0},
    {"rpop", -2, c_rpop, 1, 1, 1, 0},
    {"llen", 2, c_llen, 1, 1, 1, 0},
    {"lindex", 3, c_lindex, 1, 1, 1, 0},
    {"lrange", 4, c_lrange, 1, 1, 1, 0},
    {"lset", 4, c_lset, 1, 1, 1, 0},
    {"lrem", 4, c_lrem, 1, 1, 1, 0},
    {"ltrim", 4, c_ltrim, 1, 1, 1, 0},
    {"linsert", 5, c_linsert, 1, 1, 1, 0},
    {"sadd", -3, c_sadd, 1, 1, 1, 0},
    {"srem", -3, c_srem, 1, 1, 1, 0},
    {"sismember", 3, c_sismember, 1, 1, 1, 0},
    {"smembers", 2, c_smembers, 1, 1, 1, 0},
    {"scard", 2, c_scard, 1, 1, 1, 0},
    {"spop", -2, c_spop, 1, 1, 1, 0},
    {"srandmember", -2, c_srandmember, 1, 1, 1, 0},
    {"sinter", -2, c_sinter, 1, -1, 1, 0},
    {"sunion", -2, c_sunion, 1, -1, 1, 0},
    {"sdiff", -2, c_sdiff, 1, -1, 1, 0},
    {"sscan", -3, c_sscan, 1, 1, 1, 0},
    {"zadd", -4, c_zadd, 1, 1, 1, 0},
    {"zrem", -3, c_zrem, 1, 1, 1, 0},
    {"zscore", 3, c_zscore, 1, 1, 1, 0},
    {"zincrby", 4, c_zincrby, 1, 1, 1, 0},
    {"zcard", 2, c_zcard, 1, 1, 1, 0},
    {"zrank", 3, c_zrank, 1, 1, 1, 0},
    {"zrevrank", 3, c_zrevrank, 1, 1, 1, 0},
    {"zrange", -4, c_zrange, 1, 1, 1, 0},
    {"zrangebyscore", -4, c_zrangebyscore, 1, 1, 1, 0},
    {"zcount", 4, c_zcount, 1, 1, 1, 0},
    {"zremrangebyrank", 4, c_zremrangebyrank, 1, 1, 1, 0},
    {"zscan", -3, c_zscan, 1, 1, 1, 0},
};

static const cmd_t *find_cmd(const char *name, size_t len) {
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (eq(name, len, commands[i].name))
      return &commands[i];
  return NULL;
}

static int unknown_cmd(shmd_reply_t *r, int argc, argv_t argv, const size_t *lens) {
  char buf[1024];
  size_t n = (size_t)snprintf(buf, sizeof buf, "ERR unknown command '%.*s', with args beginning with: ",
                              (int)(lens[0] > 128 ? 128 : lens[0]), argv[0]);
  for (int i = 1; i < argc && n < sizeof buf - 200; i++)
    n += (size_t)snprintf(buf + n, sizeof buf - n, "'%.*s' ", (int)(lens[i] > 128 ? 128 : lens[i]), argv[i]);
  return r_str(r, SHMD_REPLY_ERROR, buf, n < sizeof buf ? n : sizeof buf - 1);
}

int shmd_kv_command_db(shmd_store_t *s, unsigned db, int argc, const char *const argv[], const size_t lens[],
                       shmd_reply_t **reply) {
  if (s == NULL || reply == NULL || argc < 1 || argv == NULL || lens == NULL)
    return SHMD_EINVAL;
  if (db >= KV_NDB)
    return SHMD_EINVAL;
  shmd_reply_t *r = calloc(1, sizeof *r);
  if (r == NULL)
    return SHMD_ENOMEM;
  const cmd_t *cmd = find_cmd(argv[0], lens[0]);
  int rc;
  if (cmd == NULL) {
    rc = unknown_cmd(r, argc, argv, lens);
    goto done;
  }
  if ((cmd->arity > 0 && argc != cmd->arity) || (cmd->arity < 0 && argc < -cmd->arity)) {
    rc = r_error(r, "ERR wrong number of arguments for '%s' command", cmd->name);
    goto done;
  }
  /* Redis refuses a bulk argument longer than proto-max-bulk-len before it parses the command, so
   * no stored string, field or member is ever longer than that. */
  for (int i = 1; i < argc; i++)
    if (lens[i] > KV_STRING_MAX) {
      rc = r_error(r, ERR_BIG_ARG);
      goto done;
    }
  kv_ctx_t c;
  if ((rc = kv_begin(s, db, &c)))
    goto done;
  unsigned mask = 0;
  if (cmd->flags & F_ALL) {
    mask = (1u << KV_STRIPES) - 1;
  } else {
    int last = cmd->last < 0 ? argc + cmd->last : cmd->last;
    for (int i = cmd->first; i <= last && i < argc; i += cmd->step)
      mask |= 1u << kv_stripe_of(argv[i], lens[i]);
  }
  cc_t x = {&c, argc, argv, lens, r};
  uint64_t max = shmd_kv_max_reply();
  budget_t budget = {max, max, 0};
  rc = kv_lock_stripes(&c, mask);
  if (rc == 0) {
    cur_budget = &budget;
    rc = cmd->fn(&x);
    cur_budget = NULL;
    if (budget.over && rc == 0)
      rc = SHMD_ENOMEM; /* a failed charge that a handler did not pass on still fails the command */
  }
  if (rc == 0 && r->type == SHMD_REPLY_ERROR) {
    shmd_tx_abort(c.tx);
  } else if (rc == 0) {
    rc = kv_end(&c, 0);
    if (rc == SHMD_EABORTED)
      rc = SHMD_ECORRUPT;
  } else {
    kv_end(&c, rc);
    kv__reply_clear(r);
    memset(r, 0, sizeof *r);
    if (budget.over)
      rc = r_error(r, ERR_BIG_REPLY);
    else if (rc == SHMD_EWRONGTYPE)
      rc = r_error(r, ERR_WRONGTYPE);
    else if (rc == SHMD_ENOSPC)
      rc = r_error(r, "OOM command not allowed when used memory > 'maxmemory'.");
    else if (rc == SHMD_ETXFULL)
      rc = r_error(r, "ERR shmdict: the command needs a bigger transaction than one can hold (too many elements at once)");
    else if (rc == SHMD_ETOOBIG)
      rc = r_error(r, ERR_BIG_STRING);
  }
done:
  if (rc) {
    shmd_reply_free(r);
    return rc;
  }
  *reply = r;
  return 0;
}

int shmd_kv_command(shmd_store_t *s, int argc, const char *const argv[], const size_t lens[], shmd_reply_t **reply) {
  return shmd_kv_command_db(s, 0, argc, argv, lens, reply);
}

/* ---------------------------------------------------------------------------------------------- */
/* Typed hot paths */

static int typed_begin(shmd_store_t *s, unsigned db, const void *key, size_t klen, kv_ctx_t *c) {
  if (db >= KV_NDB)
    return SHMD_EINVAL;
  int rc = kv_begin(s, db, c);
  if (rc)
    return rc;
  if ((rc = kv_lock_stripes(c, 1u << kv_stripe_of(key, klen))))
    shmd_tx_abort(c->tx);
  return rc;
}

static int typed_end(kv_ctx_t *c, int rc) {
  if (rc == SHMD_ENOTFOUND || rc == SHMD_EEXIST || rc == SHMD_EWRONGTYPE || rc == SHMD_ERANGE) {
    int rc2 = kv_end(c, 0);
    return rc2 ? rc2 : rc;
  }
  return kv_end(c, rc);
}

static int copy_out(const void *src, size_t n, void *buf, size_t cap, size_t *len) {
  if (len)
    *len = n;
  if (cap && buf)
    memcpy(buf, src, n < cap ? n : cap);
  return n > cap ? SHMD_ERANGE : 0;
}

int shmd_kv_get(shmd_store_t *s, unsigned db, const void *key, size_t klen, void *buf, size_t cap, size_t *len) {
  kv_ctx_t c;
  int rc = typed_begin(s, db, key, klen, &c);
  if (rc)
    return rc;
  kv_ref_t ref;
  rc = kv_lookup_type(&c, key, klen, KV_STRING, &ref);
  if (rc == 0)
    rc = copy_out(ref.data, ref.len, buf, cap, len);
  return typed_end(&c, rc);
}

int shmd_kv_set(shmd_store_t *s, unsigned db, const void *key, size_t klen, const void *val, size_t vlen,
                unsigned flags) {
  if ((flags & ~3u) || flags == 3u)
    return SHMD_EINVAL;
  kv_ctx_t c;
  int rc = typed_begin(s, db, key, klen, &c);
  if (rc)
    return rc;
  if (flags) {
    kv_ref_t ref;
    rc = kv_lookup(&c, key, klen, &ref);
    if (rc == 0 && (flags & SHMD_KV_NX))
      return typed_end(&c, SHMD_EEXIST);
    if (rc == SHMD_ENOTFOUND && (flags & SHMD_KV_XX))
      return typed_end(&c, SHMD_ENOTFOUND);
    if (rc && rc != SHMD_ENOTFOUND)
      return typed_end(&c, rc);
  }
  rc = kv_put_string(&c, key, klen, val, vlen, NULL, 0, 0);
  return typed_end(&c, rc);
}

int shmd_kv_del(shmd_store_t *s, unsigned db, const void *key, size_t klen) {
  kv_ctx_t c;
  int rc = typed_begin(s, db, key, klen, &c);
  if (rc)
    return rc;
  return typed_end(&c, kv_delete(&c, key, klen));
}

int shmd_kv_hget(shmd_store_t *s, unsigned db, const void *key, size_t klen, const void *field, size_t flen,
                 void *buf, size_t cap, size_t *len) {
  kv_ctx_t c;
  int rc = typed_begin(s, db, key, klen, &c);
  if (rc)
    return rc;
  kv_ref_t ref;
  rc = kv_lookup_type(&c, key, klen, KV_HASH, &ref);
  if (rc == 0)
    rc = shmd_hash_get(s, ref.a, field, flen, buf, cap, len);
  return typed_end(&c, rc);
}

int shmd_kv_hset(shmd_store_t *s, unsigned db, const void *key, size_t klen, const void *field, size_t flen,
                 const void *val, size_t vlen, int *created) {
  kv_ctx_t c;
  int rc = typed_begin(s, db, key, klen, &c);
  if (rc)
    return rc;
  kv_ref_t ref;
  rc = kv_container(&c, key, klen, KV_HASH, 1, &ref);
  if (rc == 0)
    rc = shmd_hash_put(s, ref.a, field, flen, val, vlen, SHMD_HASH_UPSERT, created);
  return typed_end(&c, rc);
}

int shmd_kv_zadd(shmd_store_t *s, unsigned db, const void *key, size_t klen, double score, const void *member,
                 size_t mlen, int *added) {
  if (isnan(score))
    return SHMD_EINVAL;
  kv_ctx_t c;
  int rc = typed_begin(s, db, key, klen, &c);
  if (rc)
    return rc;
  kv_ref_t ref;
  int a = 0, ch = 0;
  double out;
  rc = kv_container(&c, key, klen, KV_ZSET, 1, &ref);
  if (rc == 0)
    rc = z_add_one(&c, &ref, member, mlen, score, 0, 0, 0, 0, 0, &a, &ch, &out);
  if (rc == 0 && added)
    *added = a;
  return typed_end(&c, rc);
}

int shmd_kv_zrank(shmd_store_t *s, unsigned db, const void *key, size_t klen, const void *member, size_t mlen,
                  int reverse, uint64_t *rank) {
  kv_ctx_t c;
  int rc = typed_begin(s, db, key, klen, &c);
  if (rc)
    return rc;
  kv_ref_t ref;
  rc = kv_lookup_type(&c, key, klen, KV_ZSET, &ref);
  if (rc == 0)
    rc = z_rank(&c, &ref, member, mlen, reverse, rank);
  return typed_end(&c, rc);
}
