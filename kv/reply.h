/* SPDX-License-Identifier: MIT */
/*
 * Internal: building command replies (kv/reply.c) under the reply ceiling. The handlers use the
 * short names at the bottom (r_bulk, r_error, vec_bulk, ...), the way Redis's handlers use its
 * addReply* family; they are static inline aliases of the shmd__kv_ functions.
 */
#ifndef SHMD_KV_REPLY_H
#define SHMD_KV_REPLY_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "shmdict/kv.h"

/* One command's share of the reply ceiling (see the essay at the top of reply.c). */
typedef struct kv_budget_s {
  uint64_t max, left;
  int over; /* a charge did not fit: the command answers ERR_BIG_REPLY */
} kv_budget_t;

/* Makes b the calling thread's current budget (NULL: none, nothing is charged). Cannot fail. */
void shmd__kv_budget_set(kv_budget_t *b);

/* The memory a string of n bytes takes in a reply: n + 1 (the NUL) plus malloc's header, rounded
 * to 16, at least 32 bytes (glibc's smallest chunk). */
static inline uint64_t str_cost(size_t n) {
  uint64_t c = ((uint64_t)n + 1 + 8 + 15) & ~(uint64_t)15;
  return c < 32 ? 32 : c;
}

/* Charges `count` items of `each` bytes to the current budget. Returns 0, or SHMD_ENOMEM with the
 * budget marked over when they do not fit (nothing is charged then). */
int shmd__kv_charge(uint64_t count, uint64_t each);
/* Would `count` items of `each` bytes fit? 0, or SHMD_ENOMEM with the budget marked over. */
int shmd__kv_fits(uint64_t count, uint64_t each);

/* Frees what a reply owns (not r itself) and gives its share of the budget back. Cannot fail. */
void shmd__kv_reply_clear(shmd_reply_t *r);
/* Makes r a string reply of type t holding a copy of p[0 .. n). 0 or SHMD_ENOMEM (r unchanged). */
int shmd__kv_reply_str(shmd_reply_t *r, shmd_reply_type_t t, const void *p, size_t n);
/* Makes r an error reply from a printf format (truncated at 1023 bytes). 0 or SHMD_ENOMEM. */
int shmd__kv_reply_verror(shmd_reply_t *r, const char *fmt, va_list ap);
/* Makes r an array of n zeroed elements. 0 or SHMD_ENOMEM (r is an empty array then). */
int shmd__kv_reply_array(shmd_reply_t *r, size_t n);

/* A growable array reply. */
typedef struct vec_s {
  shmd_reply_t *e;
  size_t n, cap;
} vec_t;

/* Appends a bulk string copy of p[0 .. n). 0 or SHMD_ENOMEM (v unchanged). */
int shmd__kv_vec_bulk(vec_t *v, const void *p, size_t n);
/* Frees v's elements and array. Cannot fail. */
void shmd__kv_vec_free(vec_t *v);

/* ---------------------------------------------------------------------------------------------- */
/* The handlers' names */

static inline int r_str(shmd_reply_t *r, shmd_reply_type_t t, const void *p, size_t n) {
  return shmd__kv_reply_str(r, t, p, n);
}
static inline int r_status(shmd_reply_t *r, const char *s) { return r_str(r, SHMD_REPLY_STATUS, s, strlen(s)); }
static inline int r_ok(shmd_reply_t *r) { return r_status(r, "OK"); }
static inline int r_error(shmd_reply_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline int r_error(shmd_reply_t *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = shmd__kv_reply_verror(r, fmt, ap);
  va_end(ap);
  return rc;
}
static inline int r_int(shmd_reply_t *r, int64_t v) {
  r->type = SHMD_REPLY_INTEGER;
  r->integer = v;
  return 0;
}
static inline int r_bulk(shmd_reply_t *r, const void *p, size_t n) { return r_str(r, SHMD_REPLY_BULK, p, n); }
static inline int r_nil(shmd_reply_t *r) {
  r->type = SHMD_REPLY_NIL;
  return 0;
}
/* Redis's null array (*-1 over RESP2: LPOP key count on a missing key, LMPOP / ZMPOP finding
 * nothing): a nil reply whose integer is 1. */
static inline int r_nilarr(shmd_reply_t *r) {
  r->type = SHMD_REPLY_NIL;
  r->integer = 1;
  return 0;
}
static inline int r_array(shmd_reply_t *r, size_t n) { return shmd__kv_reply_array(r, n); }

static inline int vec_bulk(vec_t *v, const void *p, size_t n) { return shmd__kv_vec_bulk(v, p, n); }
/* Hands the elements to r (the unused slots stay charged: the reply holds them). */
static inline void vec_to(vec_t *v, shmd_reply_t *r) {
  r->type = SHMD_REPLY_ARRAY;
  r->elems = v->e;
  r->nelems = v->n;
  v->e = NULL;
  v->n = v->cap = 0;
}
static inline void vec_free(vec_t *v) { shmd__kv_vec_free(v); }

#endif
