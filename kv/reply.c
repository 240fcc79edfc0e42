/* SPDX-License-Identifier: MIT */
/*
 * Command replies (Redis's networking.c addReply* family) and the reply ceiling.
 *
 * A reply is a tree of shmd_reply_t that the caller of shmd_kv_command_db() owns and frees with
 * shmd_reply_free(). Handlers build it with the functions below (reply.h gives them short names)
 * and the growable array vec_t for replies whose length is found while walking a container.
 *
 * The reply ceiling
 * -----------------
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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/reply.h"
#include "shmdict/error.h"

#define KV_MAX_REPLY_MIN 4096u

static uint64_t max_reply_bytes = SHMD_KV_MAX_REPLY_DEFAULT;

uint64_t shmd_kv_set_max_reply(uint64_t bytes) {
  if (bytes == 0)
    bytes = SHMD_KV_MAX_REPLY_DEFAULT;
  else if (bytes < KV_MAX_REPLY_MIN)
    bytes = KV_MAX_REPLY_MIN;
  return __atomic_exchange_n(&max_reply_bytes, bytes, __ATOMIC_RELAXED);
}

uint64_t shmd_kv_max_reply(void) { return __atomic_load_n(&max_reply_bytes, __ATOMIC_RELAXED); }

static __thread kv_budget_t *cur_budget;

void shmd__kv_budget_set(kv_budget_t *b) { cur_budget = b; }

/* ---------------------------------------------------------------------------------------------- */
/* Charging and refunding */

/* Charges `count` items of `each` bytes (overflow-free). Returns 0, or SHMD_ENOMEM with the
 * budget marked over when they do not fit. */
int shmd__kv_charge(uint64_t count, uint64_t each) {
  kv_budget_t *b = cur_budget;
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
int shmd__kv_fits(uint64_t count, uint64_t each) {
  kv_budget_t *b = cur_budget;
  if (b == NULL || count == 0 || each == 0 || count <= b->left / each)
    return 0;
  b->over = 1;
  return SHMD_ENOMEM;
}

static void refund(uint64_t count, uint64_t each) {
  kv_budget_t *b = cur_budget;
  if (b == NULL || each == 0)
    return;
  uint64_t room = b->max - b->left;
  uint64_t n = count > room / each ? room : count * each;
  b->left += n;
}

/* ---------------------------------------------------------------------------------------------- */
/* Replies */

/* Frees what a reply owns (elements are stored in place in their parent's array). */
void shmd__kv_reply_clear(shmd_reply_t *r) {
  for (size_t i = 0; i < r->nelems; i++)
    shmd__kv_reply_clear(&r->elems[i]);
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
  shmd__kv_reply_clear(r);
  free(r);
}

int shmd__kv_reply_str(shmd_reply_t *r, shmd_reply_type_t t, const void *p, size_t n) {
  if (shmd__kv_charge(1, str_cost(n)))
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

int shmd__kv_reply_verror(shmd_reply_t *r, const char *fmt, va_list ap) {
  char buf[1024];
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  if (n < 0)
    n = 0;
  if ((size_t)n >= sizeof buf)
    n = sizeof buf - 1;
  for (int i = 0; i < n; i++) /* as Redis's addReplyErrorFormat: no CR or LF inside an error */
    if (buf[i] == '\r' || buf[i] == '\n')
      buf[i] = ' ';
  return r_str(r, SHMD_REPLY_ERROR, buf, (size_t)n);
}

int shmd__kv_reply_array(shmd_reply_t *r, size_t n) {
  r->type = SHMD_REPLY_ARRAY;
  r->nelems = 0;
  r->elems = NULL;
  if (shmd__kv_charge(n, sizeof *r->elems))
    return SHMD_ENOMEM;
  if (n && (r->elems = calloc(n, sizeof *r->elems)) == NULL) {
    refund(n, sizeof *r->elems);
    return SHMD_ENOMEM;
  }
  r->nelems = n;
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Growable array replies */

static shmd_reply_t *vec_next(vec_t *v) {
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 16;
    if (cap > SIZE_MAX / sizeof *v->e || shmd__kv_charge(cap - v->cap, sizeof *v->e))
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

int shmd__kv_vec_bulk(vec_t *v, const void *p, size_t n) {
  shmd_reply_t *x = vec_next(v);
  return x ? r_bulk(x, p, n) : SHMD_ENOMEM;
}

void shmd__kv_vec_free(vec_t *v) {
  for (size_t i = 0; i < v->n; i++)
    shmd__kv_reply_clear(&v->e[i]);
  free(v->e);
  refund(v->cap, sizeof *v->e);
  v->e = NULL;
  v->n = v->cap = 0;
}
