/* SPDX-License-Identifier: MIT */
/*
 * SORT and SORT_RO (Redis's sort.c) over lists, sets and sorted sets: ASC / DESC, ALPHA, LIMIT,
 * STORE (SORT only), numeric sorting by strtod with Redis's "can't be converted" error, and the
 * forms that need no other key: BY with a pattern without '*' (no sorting: the value's own order)
 * and GET # (the element) or GET with a pattern without '*' (nil). Patterns with '*' would read
 * other keys by name inside the command; shmdict refuses them on purpose (docs/commands.md).
 * Elements are copied out of shared memory, sorted in the process, and a STORE writes a list.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "kv/cmd.h"
#include "shmdict/blob.h"

typedef struct sortel_s {
  shmd_reply_t *e; /* the element (a bulk in the loaded vector) */
  double score;
} sortel_t;

static __thread int t_desc, t_alpha, t_binary;

static int sort_cmp(const void *a, const void *b) {
  const sortel_t *x = a, *y = b;
  int c;
  if (!t_alpha) {
    c = x->score > y->score ? 1 : x->score < y->score ? -1 : shmd_bytes_cmp(x->e->str, x->e->len, y->e->str, y->e->len);
  } else if (t_binary) {
    c = shmd_bytes_cmp(x->e->str, x->e->len, y->e->str, y->e->len);
  } else {
    c = strcmp(x->e->str, y->e->str); /* Redis's strcoll of the C strings, in the C locale */
  }
  return t_desc ? -c : c;
}

static int zmember_visit(const void *key, size_t kl, const void *val, size_t vl, uint64_t rank, void *arg) {
  (void)val;
  (void)vl;
  (void)rank;
  if (kl < 8)
    return SHMD_ECORRUPT;
  return vec_bulk(arg, (const char *)key + 8, kl - 8);
}
static int list_visit(const void *data, size_t len, void *arg) { return vec_bulk(arg, data, len); }

static int sort_generic(cc_t *x, int readonly) {
  int desc = 0, alpha = 0, dontsort = 0, nget = 0;
  long long lstart = 0, lcount = -1;
  int store = 0;
  enum { G_SELF, G_NIL } gets[64];
  for (int j = 2; j < x->argc; j++) {
    int left = x->argc - j - 1;
    if (eq(A(j), L(j), "ASC")) {
      desc = 0;
    } else if (eq(A(j), L(j), "DESC")) {
      desc = 1;
    } else if (eq(A(j), L(j), "ALPHA")) {
      alpha = 1;
    } else if (eq(A(j), L(j), "LIMIT") && left >= 2) {
      if (parse_ll(A(j + 1), L(j + 1), &lstart) || parse_ll(A(j + 2), L(j + 2), &lcount))
        return r_error(x->r, ERR_NOTINT);
      j += 2;
    } else if (!readonly && eq(A(j), L(j), "STORE") && left >= 1) {
      store = ++j;
    } else if (eq(A(j), L(j), "BY") && left >= 1) {
      j++;
      if (memchr(A(j), '*', L(j)))
        return r_error(x->r, "ERR SORT BY with a key pattern is not supported by shmdict (no key lookups by pattern)");
      dontsort = 1;
    } else if (eq(A(j), L(j), "GET") && left >= 1) {
      j++;
      if (L(j) == 1 && A(j)[0] == '#')
        gets[nget < 64 ? nget : 63] = G_SELF;
      else if (memchr(A(j), '*', L(j)))
        return r_error(x->r, "ERR SORT GET with a key pattern is not supported by shmdict (no key lookups by pattern)");
      else
        gets[nget < 64 ? nget : 63] = G_NIL;
      if (nget >= 64)
        return r_error(x->r, "ERR SORT takes at most 64 GET options in shmdict");
      nget++;
    } else {
      return r_error(x->r, ERR_SYNTAX);
    }
  }
  kv_ref_t ref;
  int rc = kv_lookup(x->c, A(1), L(1), &ref);
  if (rc && rc != SHMD_ENOTFOUND)
    return rc;
  int missing = rc == SHMD_ENOTFOUND;
  rc = 0;
  uint32_t type = missing ? KV_LIST : ref.rec->type;
  if (type != KV_LIST && type != KV_SET && type != KV_ZSET)
    return WRONGTYPE();
  if (dontsort && type == KV_SET && store) { /* Redis sorts a set for STORE, for a stable result */
    dontsort = 0;
    alpha = 1;
  }
  vec_t v = {0};
  if (!missing) {
    if (type == KV_LIST) {
      rc = shmd_list_range(x->c->s, ref.a, 0, -1, list_visit, &v);
    } else if (type == KV_SET) {
      hwalk_t w = {{0}, 1, 0, NULL, 0};
      rc = shmd_hash_foreach(x->c->s, ref.a, shmd__kv_hwalk_visit, &w);
      v = w.v;
    } else {
      uint64_t n;
      if ((rc = kv_ztree_len(x->c->s, ref.b, &n)) == 0 && n)
        rc = kv_ztree_walk_rank(x->c->s, ref.b, 0, (size_t)n, 0, zmember_visit, &v, NULL);
    }
    if (rc) {
      vec_free(&v);
      return rc;
    }
  }
  long long vlen = (long long)v.n;
  long long start = lstart < 0 ? 0 : lstart;
  long long end = lcount < 0 ? vlen - 1 : (lcount > LLONG_MAX - start ? LLONG_MAX : start + lcount - 1);
  if (start >= vlen) {
    start = vlen - 1;
    end = vlen - 2;
  }
  if (end >= vlen)
    end = vlen - 1;
  sortel_t *el = calloc(v.n ? v.n : 1, sizeof *el);
  if (el == NULL) {
    vec_free(&v);
    return SHMD_ENOMEM;
  }
  for (size_t i = 0; i < v.n; i++)
    el[i].e = &v.e[dontsort && desc && type != KV_SET ? v.n - 1 - i : i];
  int conv_error = 0;
  if (!dontsort) {
    if (!alpha) {
      for (size_t i = 0; i < v.n; i++) {
        char *endp;
        errno = 0;
        el[i].score = strtod(el[i].e->str, &endp); /* the C string: a NUL inside ends it */
        if (*endp != 0 || errno == ERANGE || el[i].score != el[i].score)
          conv_error = 1;
      }
    }
    t_desc = desc;
    t_alpha = alpha;
    t_binary = store != 0;
    if (!conv_error && v.n > 1)
      qsort(el, v.n, sizeof *el, sort_cmp);
  }
  if (conv_error) {
    rc = r_error(x->r, "ERR One or more scores can't be converted into double");
    goto out;
  }
  long long span = end >= start ? end - start + 1 : 0;
  long long outlen = nget ? nget * span : span;
  if (store) {
    if ((rc = kv_delete(x->c, A(store), L(store))) == SHMD_ENOTFOUND)
      rc = 0;
    kv_ref_t dst;
    if (rc == 0 && outlen > 0)
      rc = kv_container(x->c, A(store), L(store), KV_LIST, 1, &dst);
    for (long long j = start; j <= end && rc == 0 && outlen > 0; j++) {
      const shmd_reply_t *e = el[j].e;
      if (!nget) {
        rc = shmd_list_push(x->c->s, dst.a, SHMD_LIST_TAIL, e->str, e->len, NULL);
        continue;
      }
      for (int g = 0; g < nget && rc == 0; g++)
        rc = gets[g] == G_SELF ? shmd_list_push(x->c->s, dst.a, SHMD_LIST_TAIL, e->str, e->len, NULL)
                               : shmd_list_push(x->c->s, dst.a, SHMD_LIST_TAIL, "", 0, NULL);
    }
    if (rc == 0)
      rc = r_int(x->r, outlen);
    goto out;
  }
  vec_t o = {0};
  for (long long j = start; j <= end && rc == 0; j++) {
    const shmd_reply_t *e = el[j].e;
    if (!nget) {
      rc = vec_bulk(&o, e->str, e->len);
      continue;
    }
    for (int g = 0; g < nget && rc == 0; g++) {
      rc = vec_bulk(&o, e->str, e->len);
      if (rc == 0 && gets[g] == G_NIL) {
        shmd__kv_reply_clear(&o.e[o.n - 1]);
        r_nil(&o.e[o.n - 1]);
      }
    }
  }
  if (rc)
    vec_free(&o);
  else
    vec_to(&o, x->r);
out:
  free(el);
  vec_free(&v);
  return rc;
}

int shmd__kv_cmd_sort(cc_t *x) { return sort_generic(x, 0); }
int shmd__kv_cmd_sort_ro(cc_t *x) { return sort_generic(x, 1); }
