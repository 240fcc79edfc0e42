/* SPDX-License-Identifier: MIT */
/*
 * Set commands (Redis's t_set.c): SADD SREM SISMEMBER SMEMBERS SCARD SPOP SRANDMEMBER SINTER
 * SUNION SDIFF SSCAN. A set is a hash container with empty values (t_hash.c lends its member-wise
 * helpers). Random members are picked in O(1) expected by sampling SCAN steps from a random cursor
 * (see pick_random()); SPOP / SRANDMEMBER with a count choose between picks and a shuffled copy as
 * Redis does, so a small count on a big set never copies the set.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "kv/cmd.h"
#include "segments/err.h"
#include "shmdict/blob.h"

int shmd__kv_cmd_sadd(cc_t *x) {
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

int shmd__kv_cmd_srem(cc_t *x) { return shmd__kv_del_members(x, KV_SET); }
int shmd__kv_cmd_sismember(cc_t *x) { return shmd__kv_has_member(x, KV_SET); }
int shmd__kv_cmd_scard(cc_t *x) { return shmd__kv_count_members(x, KV_SET); }

int shmd__kv_cmd_smembers(cc_t *x) { return shmd__kv_hash_walk(x, KV_SET, 1, 0); }

int shmd__kv_cmd_sscan(cc_t *x) { return shmd__kv_xscan(x, KV_SET, 0); }

uint64_t shmd__kv_rng(void) {
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
  int rc = shmd_hash_foreach(x->c->s, h, shmd__kv_hwalk_visit, &w);
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
  uint64_t cur = shmd__kv_rng(), next;
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
    size_t i = (size_t)(shmd__kv_rng() % sample.n);
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
      shmd__kv_reply_clear(&v->e[k]);
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
  if (with_count && parse_ll(A(2), L(2), &count)) /* Redis: getPositiveLong... for SPOP */
    return r_error(x->r, pop ? "ERR value is out of range, must be positive" : ERR_NOTINT);
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
  if (count < 0 && (rc = shmd__kv_fits((uint64_t)-count, sizeof(shmd_reply_t) + str_cost(0))))
    return rc;
  vec_t out = {0};
  rc = shmd__kv_rand_members(x, ref.a, with_count, count, &out);
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
int shmd__kv_cmd_spop(cc_t *x) { return c_srand_gen(x, 1); }
int shmd__kv_cmd_srandmember(cc_t *x) { return c_srand_gen(x, 0); }

int shmd__kv_rand_members(cc_t *x, shmd_ptr_t h, int with_count, long long count, vec_t *res) {
  uint64_t n;
  int rc = shmd_hash_len(x->c->s, h, &n);
  if (rc)
    return rc;
  vec_t all = {0}, out = {0};
  shmd_ptr_t ref_a = h;
  if (!with_count) {
    rc = pick_random(x, ref_a, &out);
  } else if (count < 0) {
    uint64_t m = (uint64_t)-count;
    if (m < n) {
      for (uint64_t k = 0; rc == 0 && k < m; k++)
        rc = pick_random(x, ref_a, &out);
    } else if ((rc = set_members(x, ref_a, &all)) == 0 && all.n == 0) {
      rc = SHMD_CORRUPT("kv: a set without members");
    } else {
      for (uint64_t k = 0; rc == 0 && k < m; k++) {
        size_t i = (size_t)(shmd__kv_rng() % all.n);
        rc = vec_bulk(&out, all.e[i].str, all.e[i].len);
      }
    }
  } else {
    uint64_t m = (uint64_t)count < n ? (uint64_t)count : n;
    rc = m == 0 ? 0 : m <= n / 3 ? sample_distinct(x, ref_a, (size_t)m, &out) : 1;
    if (rc == 1) {
      vec_free(&out);
      /* Partial Fisher-Yates over a copy: the first min(m, copy) of a shuffle. */
      if ((rc = set_members(x, ref_a, &all)) == 0) {
        size_t mm = m < all.n ? (size_t)m : all.n;
        for (size_t k = 0; rc == 0 && k < mm; k++) {
          size_t j = k + (size_t)(shmd__kv_rng() % (all.n - k));
          shmd_reply_t t = all.e[k];
          all.e[k] = all.e[j];
          all.e[j] = t;
          rc = vec_bulk(&out, all.e[k].str, all.e[k].len);
        }
      }
    }
  }
  vec_free(&all);
  if (rc) {
    vec_free(&out);
    return rc;
  }
  *res = out;
  return 0;
}

enum { OP_INTER, OP_UNION, OP_DIFF };

/* Stores the members of res as the set dst (replacing any value, deleting dst when res is empty)
 * and replies their number (Redis's SINTERSTORE / SUNIONSTORE / SDIFFSTORE / SMOVE's creation). */
static int set_store(cc_t *x, const char *dst, size_t dl, vec_t *res) {
  int rc = kv_delete(x->c, dst, dl);
  if (rc && rc != SHMD_ENOTFOUND)
    return rc;
  if (res->n) {
    kv_ref_t ref;
    if ((rc = kv_container(x->c, dst, dl, KV_SET, 1, &ref)))
      return rc;
    for (size_t k = 0; k < res->n; k++) {
      rc = shmd_hash_put(x->c->s, ref.a, res->e[k].str, res->e[k].len, "", 0, SHMD_HASH_INSERT, NULL);
      if (rc && rc != SHMD_EEXIST)
        return rc;
    }
  }
  return r_int(x->r, (int64_t)res->n);
}

/* SINTER SUNION SDIFF over the n keys from argument `first`; with dst, the STORE forms; with
 * card >= 0, SINTERCARD (card: the LIMIT, 0 for none). */
static int c_setop_gen(cc_t *x, int op, int first, int n, const char *dst, size_t dl, long long card) {
  shmd_ptr_t *sets = calloc((size_t)n, sizeof *sets);
  if (sets == NULL)
    return SHMD_ENOMEM;
  int rc = 0;
  for (int i = 0; i < n; i++) {
    kv_ref_t ref;
    rc = kv_lookup_type(x->c, A(i + first), L(i + first), KV_SET, &ref);
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
        if (card > 0 && res.n >= (uint64_t)card)
          break;
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
  if (rc == 0 && dst)
    rc = set_store(x, dst, dl, &res);
  else if (rc == 0 && card >= 0)
    rc = r_int(x->r, (int64_t)res.n);
  if (rc || dst || card >= 0)
    vec_free(&res);
  else
    vec_to(&res, x->r);
out:
  free(sets);
  return rc;
}
static int c_setop(cc_t *x, int op) { return c_setop_gen(x, op, 1, x->argc - 1, NULL, 0, -1); }
static int c_setop_store(cc_t *x, int op) { return c_setop_gen(x, op, 2, x->argc - 2, A(1), L(1), -1); }
int shmd__kv_cmd_sinter(cc_t *x) { return c_setop(x, OP_INTER); }
int shmd__kv_cmd_sunion(cc_t *x) { return c_setop(x, OP_UNION); }
int shmd__kv_cmd_sdiff(cc_t *x) { return c_setop(x, OP_DIFF); }
int shmd__kv_cmd_sinterstore(cc_t *x) { return c_setop_store(x, OP_INTER); }
int shmd__kv_cmd_sunionstore(cc_t *x) { return c_setop_store(x, OP_UNION); }
int shmd__kv_cmd_sdiffstore(cc_t *x) { return c_setop_store(x, OP_DIFF); }

/* The numkeys argument of SINTERCARD / ZINTERCARD / ZUNION ... at A(i): 1 .. the keys present, with
 * Redis's texts. Returns 1 with *nk, or 0 when replied. */
int shmd__kv_parse_numkeys(cc_t *x, int i, const char *low, long long *nk) {
  if (parse_ll(A(i), L(i), nk))
    return r_error(x->r, "%s", low ? low : ERR_NOTINT), 0;
  if (*nk < 1)
    return r_error(x->r, "%s", low ? low : "ERR at least 1 input key is needed"), 0;
  if (*nk > x->argc - i - 1)
    return r_error(x->r, "ERR Number of keys can't be greater than number of args"), 0;
  return 1;
}

int shmd__kv_cmd_sintercard(cc_t *x) {
  long long nk, limit = 0;
  if (!shmd__kv_parse_numkeys(x, 1, "ERR numkeys should be greater than 0", &nk))
    return 0;
  for (int i = 2 + (int)nk; i < x->argc; i++) {
    if (eq(A(i), L(i), "LIMIT") && i + 1 < x->argc) {
      i++;
      if (parse_ll(A(i), L(i), &limit) || limit < 0)
        return r_error(x->r, "ERR LIMIT can't be negative");
    } else {
      return r_error(x->r, ERR_SYNTAX);
    }
  }
  return c_setop_gen(x, OP_INTER, 2, (int)nk, NULL, 0, limit);
}

int shmd__kv_cmd_smismember(cc_t *x) {
  kv_ref_t ref;
  int rc = kv_lookup_type(x->c, A(1), L(1), KV_SET, &ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc && rc != SHMD_ENOTFOUND)
    return rc;
  int missing = rc == SHMD_ENOTFOUND;
  if ((rc = r_array(x->r, (size_t)(x->argc - 2))))
    return rc;
  for (int i = 2; i < x->argc; i++) {
    int c = missing ? 0 : shmd_hash_contains(x->c->s, ref.a, A(i), L(i));
    if (c < 0)
      return c;
    r_int(&x->r->elems[i - 2], c);
  }
  return 0;
}

/* SMOVE src dst member, in Redis's order: a missing src answers 0 before any type check. */
int shmd__kv_cmd_smove(cc_t *x) {
  kv_ref_t src, dst;
  int rc = kv_lookup(x->c, A(1), L(1), &src);
  if (rc == SHMD_ENOTFOUND)
    return r_int(x->r, 0);
  if (rc)
    return rc;
  if (src.rec->type != KV_SET)
    return WRONGTYPE();
  rc = kv_lookup(x->c, A(2), L(2), &dst);
  if (rc && rc != SHMD_ENOTFOUND)
    return rc;
  int dst_exists = rc == 0;
  if (dst_exists && dst.rec->type != KV_SET)
    return WRONGTYPE();
  if (L(1) == L(2) && memcmp(A(1), A(2), L(1)) == 0) {
    int c = shmd_hash_contains(x->c->s, src.a, A(3), L(3));
    return c < 0 ? c : r_int(x->r, c);
  }
  rc = shmd_hash_del(x->c->s, src.a, A(3), L(3));
  if (rc == SHMD_ENOTFOUND)
    return r_int(x->r, 0);
  if (rc || (rc = kv_drop_if_empty(x->c, A(1), L(1), &src)))
    return rc;
  if ((rc = kv_container(x->c, A(2), L(2), KV_SET, 1, &dst)))
    return rc;
  rc = shmd_hash_put(x->c->s, dst.a, A(3), L(3), "", 0, SHMD_HASH_INSERT, NULL);
  if (rc && rc != SHMD_EEXIST)
    return rc;
  return r_int(x->r, 1);
}
