/* SPDX-License-Identifier: MIT */
/*
 * Tests of the keyed list (containers/list.c) and its intrusive core: edge cases (empty lists,
 * negative and out-of-range indices, zero-length and > 8 KiB elements, the wrong kind, damaged
 * links), property tests against an in-process model (an array of byte strings) compared after
 * every step, batched removals, iteration in batches, two processes pushing and popping at once
 * (mp_), and crash tests: a child SIGKILLed at random moments and at the push / unlink crash points;
 * after reopening, shmd_list_check and shmd_alloc_check pass and every operation the child
 * reported done is there.
 * Knobs: SHMDICT_TEST_OPS (property ops), SHMDICT_TEST_KILLS (crash rounds), SHMDICT_TEST_MP_OPS.
 */
#include <errno.h>
#include <poll.h>

#include "shmdict/array.h"
#include "shmdict/list.h"
#include "support.h"

TestSuite(list, .init = ts_init, .fini = ts_fini);

static long env_long(const char *name, long dflt) {
  const char *v = getenv(name);
  return v && *v ? strtol(v, NULL, 0) : dflt;
}

#define CHECK_OK(expr)                                                                             \
  do {                                                                                             \
    int rc_ = (expr);                                                                              \
    cr_assert_eq(rc_, 0, "%s: %s (%s)", #expr, shmd_strerror(rc_), shmd_errdetail());            \
  } while (0)

/* ---------------------------------------------------------------------------------------------- */
/* Values: deterministic byte strings named by an id. The id's low 4 bits pick a length class, so
 * a small pool of ids gives duplicates of every size: empty, short, medium, around the inline
 * limit, and blobs larger than 8 KiB. */

#define VAL_MAX 12100

static size_t gen_value(uint64_t id, unsigned char *buf) {
  unsigned cls = (unsigned)(id & 15);
  uint64_t h = id * 0x9E3779B97F4A7C15ull + 1;
  size_t len;
  if (cls == 0)
    len = 0;
  else if (cls < 10)
    len = 1 + (size_t)(h >> 59);
  else if (cls < 14)
    len = 100 + (size_t)((h >> 40) % 200);
  else if (cls == 14)
    len = 4000 + (size_t)((h >> 40) % 150); /* straddles SHMD_LIST_INLINE_MAX */
  else
    len = 9000 + (size_t)((h >> 40) % 3000);
  for (size_t i = 0; i < len; i++) {
    h ^= h << 13;
    h ^= h >> 7;
    h ^= h << 17;
    buf[i] = (unsigned char)h;
  }
  return len;
}

/* ---------------------------------------------------------------------------------------------- */
/* The model: an array of byte strings with Redis list semantics. */

typedef struct {
  unsigned char *b;
  size_t len;
} mstr_t;

typedef struct {
  mstr_t *v;
  size_t n, cap;
} model_t;

static mstr_t mstr(const void *d, size_t len) {
  mstr_t s = {malloc(len + 1), len};
  if (len)
    memcpy(s.b, d, len);
  return s;
}

static void m_free(model_t *m) {
  for (size_t i = 0; i < m->n; i++)
    free(m->v[i].b);
  free(m->v);
  memset(m, 0, sizeof *m);
}

static void m_copy(model_t *dst, const model_t *src) {
  dst->n = dst->cap = src->n;
  dst->v = malloc(sizeof(mstr_t) * (src->n + 1));
  for (size_t i = 0; i < src->n; i++)
    dst->v[i] = mstr(src->v[i].b, src->v[i].len);
}

static void m_insert_at(model_t *m, size_t i, const void *d, size_t len) {
  if (m->n == m->cap) {
    m->cap = m->cap * 2 + 8;
    m->v = realloc(m->v, sizeof(mstr_t) * m->cap);
  }
  memmove(m->v + i + 1, m->v + i, sizeof(mstr_t) * (m->n - i));
  m->v[i] = mstr(d, len);
  m->n++;
}

static void m_remove_at(model_t *m, size_t i) {
  free(m->v[i].b);
  memmove(m->v + i, m->v + i + 1, sizeof(mstr_t) * (m->n - i - 1));
  m->n--;
}

static int m_eq(const mstr_t *s, const void *d, size_t len) {
  return s->len == len && (len == 0 || memcmp(s->b, d, len) == 0);
}

static int m_index(const model_t *m, int64_t idx, size_t *out) {
  int64_t n = (int64_t)m->n;
  if (idx < 0)
    idx += n;
  if (idx < 0 || idx >= n)
    return 0;
  *out = (size_t)idx;
  return 1;
}

static void m_range(const model_t *m, int64_t start, int64_t stop, size_t *first, size_t *cnt) {
  int64_t n = (int64_t)m->n;
  if (start < 0)
    start += n;
  if (stop < 0)
    stop += n;
  if (start < 0)
    start = 0;
  if (start > stop || start >= n) {
    *first = 0;
    *cnt = 0;
    return;
  }
  if (stop >= n)
    stop = n - 1;
  *first = (size_t)start;
  *cnt = (size_t)(stop - start + 1);
}

static uint64_t m_rem(model_t *m, int64_t count, const void *d, size_t len) {
  uint64_t removed = 0;
  if (count >= 0) {
    for (size_t i = 0; i < m->n && (count == 0 || removed < (uint64_t)count);) {
      if (m_eq(&m->v[i], d, len)) {
        m_remove_at(m, i);
        removed++;
      } else
        i++;
    }
  } else {
    for (size_t i = m->n; i-- > 0 && removed < (uint64_t)-count;) {
      if (m_eq(&m->v[i], d, len)) {
        m_remove_at(m, i);
        removed++;
      }
    }
  }
  return removed;
}

static int m_linsert(model_t *m, int after, const void *pv, size_t pl, const void *d, size_t len) {
  for (size_t i = 0; i < m->n; i++)
    if (m_eq(&m->v[i], pv, pl)) {
      m_insert_at(m, after ? i + 1 : i, d, len);
      return 1;
    }
  return 0;
}

static void m_trim(model_t *m, int64_t start, int64_t stop) {
  size_t first, cnt;
  m_range(m, start, stop, &first, &cnt);
  for (size_t i = 0; i < first; i++)
    free(m->v[i].b);
  for (size_t i = first + cnt; i < m->n; i++)
    free(m->v[i].b);
  if (cnt)
    memmove(m->v, m->v + first, sizeof(mstr_t) * cnt);
  m->n = cnt;
}

/* Collects a list's elements through a visitor. */
typedef struct {
  model_t got;
} collect_t;

static int collect_fn(const void *d, size_t len, void *arg) {
  model_t *m = arg;
  m_insert_at(m, m->n, d, len);
  return 0;
}

static int lists_equal(shmd_store_t *s, shmd_ptr_t l, const model_t *m, char *why, size_t whylen) {
  uint64_t len = 0;
  int rc = shmd_list_len(s, l, &len);
  if (rc || len != m->n) {
    snprintf(why, whylen, "len rc %d: %llu vs model %zu", rc, (unsigned long long)len, m->n);
    return 0;
  }
  model_t got = {0};
  rc = shmd_list_range(s, l, 0, -1, collect_fn, &got);
  int ok = rc == 0 && got.n == m->n;
  for (size_t i = 0; ok && i < m->n; i++)
    if (!m_eq(&got.v[i], m->v[i].b, m->v[i].len)) {
      snprintf(why, whylen, "element %zu differs (len %zu vs %zu)", i, got.v[i].len, m->v[i].len);
      ok = 0;
    }
  if (rc)
    snprintf(why, whylen, "range: %s", shmd_strerror(rc));
  m_free(&got);
  return ok;
}

static void compare(shmd_store_t *s, shmd_ptr_t l, const model_t *m) {
  char why[200] = "";
  cr_assert(lists_equal(s, l, m, why, sizeof why), "list differs from the model: %s", why);
}

/* ---------------------------------------------------------------------------------------------- */
/* Edge cases */

Test(list, edge_cases) {
  shmd_store_t *s = ts_open("l", 32u << 20, 32u << 20);
  shmd_ptr_t l;
  CHECK_OK(shmd_list_create(s, &l));
  static unsigned char buf[20001], big[20000];
  size_t len = 77;
  uint64_t n = 99;
  CHECK_OK(shmd_list_len(s, l, &n));
  cr_assert_eq(n, 0);
  cr_assert_eq(shmd_list_pop(s, l, SHMD_LIST_HEAD, buf, sizeof buf, &len), SHMD_ENOTFOUND);
  cr_assert_eq(shmd_list_pop(s, l, SHMD_LIST_TAIL, NULL, 0, NULL), SHMD_ENOTFOUND);
  cr_assert_eq(shmd_list_index(s, l, 0, buf, sizeof buf, &len), SHMD_ENOTFOUND);
  cr_assert_eq(shmd_list_index(s, l, -1, buf, sizeof buf, &len), SHMD_ENOTFOUND);
  cr_assert_eq(shmd_list_set(s, l, 0, "x", 1), SHMD_ERANGE);
  cr_assert_eq(shmd_list_insert(s, l, 0, "p", 1, "x", 1, &n), SHMD_ENOTFOUND);
  CHECK_OK(shmd_list_rem(s, l, 0, "x", 1, &n));
  cr_assert_eq(n, 0);
  CHECK_OK(shmd_list_trim(s, l, 0, -1));
  CHECK_OK(shmd_list_trim(s, l, 5, 2));
  model_t got = {0};
  CHECK_OK(shmd_list_range(s, l, 0, -1, collect_fn, &got));
  cr_assert_eq(got.n, 0);
  cr_assert_eq(shmd_list_push(s, l, 2, "x", 1, NULL), SHMD_EINVAL);
  cr_assert_eq(shmd_list_pop(s, l, -1, NULL, 0, NULL), SHMD_EINVAL);
  CHECK_OK(shmd_list_check(s, l));

  /* zero-length and big elements; negative indices */
  for (size_t i = 0; i < sizeof big; i++)
    big[i] = (unsigned char)(i * 7);
  CHECK_OK(shmd_list_push(s, l, SHMD_LIST_TAIL, "", 0, &n));
  cr_assert_eq(n, 1);
  CHECK_OK(shmd_list_push(s, l, SHMD_LIST_TAIL, big, sizeof big, &n));
  CHECK_OK(shmd_list_push(s, l, SHMD_LIST_HEAD, "a", 1, &n));
  CHECK_OK(shmd_list_push(s, l, SHMD_LIST_TAIL, big, SHMD_LIST_INLINE_MAX, &n));
  CHECK_OK(shmd_list_push(s, l, SHMD_LIST_TAIL, big, SHMD_LIST_INLINE_MAX + 1, &n));
  cr_assert_eq(n, 5); /* a, "", big, inline-max, inline-max+1 */
  CHECK_OK(shmd_list_index(s, l, 1, buf, sizeof buf, &len));
  cr_assert_eq(len, 0);
  cr_assert_eq(shmd_list_index(s, l, 2, buf, 100, &len), SHMD_ERANGE, "buffer too small");
  cr_assert_eq(len, sizeof big);
  CHECK_OK(shmd_list_index(s, l, -4, NULL, 0, &len)); /* length only */
  cr_assert_eq(len, 0);
  CHECK_OK(shmd_list_index(s, l, -1, buf, sizeof buf, &len));
  cr_assert_eq(len, SHMD_LIST_INLINE_MAX + 1);
  cr_assert(memcmp(buf, big, len) == 0);
  CHECK_OK(shmd_list_index(s, l, -5, buf, sizeof buf, &len));
  cr_assert(len == 1 && buf[0] == 'a');
  cr_assert_eq(shmd_list_index(s, l, -6, buf, sizeof buf, &len), SHMD_ENOTFOUND);
  cr_assert_eq(shmd_list_index(s, l, 5, buf, sizeof buf, &len), SHMD_ENOTFOUND);
  cr_assert_eq(shmd_list_index(s, l, INT64_MIN, buf, sizeof buf, &len), SHMD_ENOTFOUND);
  cr_assert_eq(shmd_list_index(s, l, INT64_MAX, buf, sizeof buf, &len), SHMD_ENOTFOUND);
  cr_assert_eq(shmd_list_set(s, l, -6, "x", 1), SHMD_ERANGE);
  CHECK_OK(shmd_list_check(s, l));
  /* a pop into a small buffer removes nothing */
  cr_assert_eq(shmd_list_pop(s, l, SHMD_LIST_TAIL, buf, 10, &len), SHMD_ERANGE);
  cr_assert_eq(len, SHMD_LIST_INLINE_MAX + 1);
  CHECK_OK(shmd_list_len(s, l, &n));
  cr_assert_eq(n, 5);
  /* LSET big over small and small over big */
  CHECK_OK(shmd_list_set(s, l, 0, big, sizeof big));
  CHECK_OK(shmd_list_set(s, l, 2, "b", 1));
  CHECK_OK(shmd_list_index(s, l, 0, NULL, 0, &len));
  cr_assert_eq(len, sizeof big);
  /* ranges: clamping, negative ends, empty */
  m_free(&got);
  CHECK_OK(shmd_list_range(s, l, -100, 100, collect_fn, &got));
  cr_assert_eq(got.n, 5);
  m_free(&got);
  CHECK_OK(shmd_list_range(s, l, -2, -1, collect_fn, &got));
  cr_assert_eq(got.n, 2);
  m_free(&got);
  CHECK_OK(shmd_list_range(s, l, 3, 1, collect_fn, &got));
  cr_assert_eq(got.n, 0);
  CHECK_OK(shmd_list_range(s, l, 5, 10, collect_fn, &got));
  cr_assert_eq(got.n, 0);
  CHECK_OK(shmd_list_range(s, l, INT64_MIN, INT64_MAX, collect_fn, &got));
  cr_assert_eq(got.n, 5);
  m_free(&got);
  /* LINSERT around zero-length and big pivots */
  CHECK_OK(shmd_list_insert(s, l, 1, "", 0, "after-empty", 11, &n));
  CHECK_OK(shmd_list_insert(s, l, 0, big, sizeof big, "before-big", 10, &n));
  cr_assert_eq(n, 7);
  CHECK_OK(shmd_list_index(s, l, 0, buf, sizeof buf, &len));
  cr_assert(len == 10 && memcmp(buf, "before-big", 10) == 0);
  CHECK_OK(shmd_list_index(s, l, 3, buf, sizeof buf, &len));
  cr_assert(len == 11 && memcmp(buf, "after-empty", 11) == 0);
  CHECK_OK(shmd_list_rem(s, l, 0, "", 0, &n));
  cr_assert_eq(n, 1);
  CHECK_OK(shmd_list_trim(s, l, 1, -2));
  CHECK_OK(shmd_list_len(s, l, &n));
  cr_assert_eq(n, 4);
  CHECK_OK(shmd_list_check(s, l));
  /* pops from both ends with and without a buffer */
  CHECK_OK(shmd_list_pop(s, l, SHMD_LIST_HEAD, buf, sizeof buf, &len));
  cr_assert_eq(len, sizeof big);
  CHECK_OK(shmd_list_pop(s, l, SHMD_LIST_TAIL, NULL, 0, &len));
  CHECK_OK(shmd_list_check(s, l));

  /* the wrong kind and garbage */
  shmd_ptr_t a;
  CHECK_OK(shmd_array_create(s, 8, 0, &a));
  cr_assert_eq(shmd_list_len(s, a, &n), SHMD_EINVAL);
  cr_assert_eq(shmd_list_push(s, a, 0, "x", 1, NULL), SHMD_EINVAL);
  cr_assert_eq(shmd_list_check(s, a), SHMD_EINVAL);
  cr_assert_eq(shmd_list_len(s, shmd_ptr_null(), &n), SHMD_ECORRUPT);
  cr_assert_eq(shmd_list_len(s, shmd_ptr_make(3, 64), &n), SHMD_ECORRUPT);
  CHECK_OK(shmd_array_destroy(s, a));
  CHECK_OK(shmd_list_destroy(s, l));
  cr_assert_eq(shmd_list_len(s, l, &n), SHMD_ECORRUPT, "destroyed list");
  CHECK_OK(shmd_alloc_check(s));
  shmd_stats_t st;
  CHECK_OK(shmd_stats(s, &st));
  cr_assert_eq(st.allocated_bytes, 0, "%llu bytes left", (unsigned long long)st.allocated_bytes);
  shmd_close(s);
}

/* The checker finds damaged links, counts and lengths, and no call crashes on them. */
Test(list, check_detects_damage) {
  shmd_store_t *s = ts_open("l", 16u << 20, 16u << 20);
  shmd_ptr_t l;
  CHECK_OK(shmd_list_create(s, &l));
  for (int i = 0; i < 10; i++)
    CHECK_OK(shmd_list_push(s, l, SHMD_LIST_TAIL, "abcdef", 6, NULL));
  uint64_t *h = shmd_resolve(s, l); /* magic, lock, head.next, head.prev, count, epoch */
  shmd_ptr_t first = {h[2]};
  uint64_t *n1 = shmd_resolve(s, first); /* next, prev, len */
  uint64_t saved;
  uint64_t len;
  unsigned char buf[64];
  size_t bl;

  saved = h[4];
  h[4] = 11; /* count too high */
  cr_assert_eq(shmd_list_check(s, l), SHMD_ECORRUPT);
  model_t g0 = {0};
  cr_assert_eq(shmd_list_range(s, l, 0, -1, collect_fn, &g0), SHMD_ECORRUPT);
  m_free(&g0);
  h[4] = 9; /* too low */
  cr_assert_eq(shmd_list_check(s, l), SHMD_ECORRUPT);
  h[4] = UINT64_MAX;
  cr_assert_eq(shmd_list_len(s, l, &len), SHMD_ECORRUPT);
  h[4] = saved;
  CHECK_OK(shmd_list_check(s, l));

  saved = n1[1];
  n1[1] = n1[0]; /* prev pointing elsewhere */
  cr_assert_eq(shmd_list_check(s, l), SHMD_ECORRUPT);
  n1[1] = saved;
  saved = n1[0];
  n1[0] = first.v; /* a cycle of one */
  cr_assert_eq(shmd_list_check(s, l), SHMD_ECORRUPT);
  shmd_list_iter_t it;
  shmd_list_iter_init(&it, l, 0);
  model_t got = {0};
  size_t visited;
  cr_assert_eq(shmd_list_iter_next(s, &it, 1000, collect_fn, &got, &visited), SHMD_ECORRUPT);
  m_free(&got);
  cr_assert_eq(shmd_list_rem(s, l, 0, "zz", 2, NULL), SHMD_ECORRUPT);
  n1[0] = shmd_ptr_make(0, 1ull << 40).v; /* out of the segment */
  cr_assert_eq(shmd_list_check(s, l), SHMD_ECORRUPT);
  cr_assert_eq(shmd_list_range(s, l, 0, -1, collect_fn, &got), SHMD_ECORRUPT);
  m_free(&got);
  n1[0] = saved;
  CHECK_OK(shmd_list_check(s, l));

  saved = n1[2];
  n1[2] = 1u << 20; /* inline length larger than the node */
  cr_assert_eq(shmd_list_check(s, l), SHMD_ECORRUPT);
  cr_assert_eq(shmd_list_index(s, l, 0, buf, sizeof buf, &bl), SHMD_ECORRUPT);
  n1[2] = saved;
  CHECK_OK(shmd_list_check(s, l));
  CHECK_OK(shmd_list_destroy(s, l));
  CHECK_OK(shmd_alloc_check(s));
  shmd_close(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* Property test */

static uint64_t pick_id(ts_rng_t *r) {
  /* mostly from a small pool (duplicates for LREM / LINSERT), sometimes fresh */
  return ts_below(r, 4) ? ts_below(r, 40) : ts_next(r);
}

static int64_t pick_index(ts_rng_t *r, size_t n) {
  int64_t span = (int64_t)n + 3;
  return (int64_t)ts_below(r, (uint64_t)(2 * span)) - span;
}

static void property_run(long ops, int check_every, uint64_t seed) {
  shmd_store_t *s = ts_open("l", 64u << 20, 64u << 20);
  ts_rng_t r = {seed};
  shmd_ptr_t l;
  CHECK_OK(shmd_list_create(s, &l));
  model_t m = {0};
  static unsigned char v[VAL_MAX], p[VAL_MAX], got[VAL_MAX];
  size_t target = (seed & 1) ? 250 : 30;
  uint64_t max_len = 0;
  for (long i = 0; i < ops; i++) {
    if (m.n > max_len)
      max_len = m.n;
    /* Now and then the step runs inside a transaction that is then aborted: whatever it did must
     * vanish (this catches any store that was not logged). */
    int wrap = ts_below(&r, 8) == 0;
    shmd_tx_t *wtx = NULL;
    model_t before = {0};
    if (wrap) {
      CHECK_OK(shmd_tx_begin(s, &wtx));
      m_copy(&before, &m);
    }
    uint64_t op = ts_below(&r, 100);
    size_t vl = gen_value(pick_id(&r), v), gl = 0;
    int rc;
    uint64_t n;
    /* Runs alternate between short lists and longer ones (fewer removals until the target). */
    if (m.n > target && op < 40)
      op += 40;
    else if (target > 100 && m.n < target && ((op >= 60 && op < 70) || (op >= 80 && op < 84)))
      op = 0;
    if (op < 20) {
      int where = (int)ts_below(&r, 2);
      CHECK_OK(shmd_list_push(s, l, where, v, vl, &n));
      m_insert_at(&m, where == SHMD_LIST_HEAD ? 0 : m.n, v, vl);
      cr_assert_eq(n, m.n);
    } else if (op < 30) {
      int where = (int)ts_below(&r, 2);
      rc = shmd_list_pop(s, l, where, got, sizeof got, &gl);
      if (m.n == 0)
        cr_assert_eq(rc, SHMD_ENOTFOUND);
      else {
        cr_assert_eq(rc, 0, "pop: %s", shmd_strerror(rc));
        size_t at = where == SHMD_LIST_HEAD ? 0 : m.n - 1;
        cr_assert(m_eq(&m.v[at], got, gl), "popped value");
        m_remove_at(&m, at);
      }
    } else if (op < 40) {
      int64_t idx = pick_index(&r, m.n);
      size_t at;
      rc = shmd_list_index(s, l, idx, got, sizeof got, &gl);
      if (!m_index(&m, idx, &at))
        cr_assert_eq(rc, SHMD_ENOTFOUND);
      else {
        cr_assert_eq(rc, 0);
        cr_assert(m_eq(&m.v[at], got, gl), "index %lld", (long long)idx);
      }
    } else if (op < 50) {
      int64_t a = pick_index(&r, m.n), b = pick_index(&r, m.n);
      size_t first, cnt;
      m_range(&m, a, b, &first, &cnt);
      model_t g = {0};
      CHECK_OK(shmd_list_range(s, l, a, b, collect_fn, &g));
      cr_assert_eq(g.n, cnt, "range %lld %lld: %zu vs %zu", (long long)a, (long long)b, g.n, cnt);
      for (size_t k = 0; k < cnt; k++)
        cr_assert(m_eq(&m.v[first + k], g.v[k].b, g.v[k].len));
      m_free(&g);
    } else if (op < 60) {
      size_t pl = gen_value(pick_id(&r), p);
      int after = (int)ts_below(&r, 2);
      rc = shmd_list_insert(s, l, after, p, pl, v, vl, &n);
      if (m_linsert(&m, after, p, pl, v, vl)) {
        cr_assert_eq(rc, 0, "linsert: %s", shmd_strerror(rc));
        cr_assert_eq(n, m.n);
      } else
        cr_assert_eq(rc, SHMD_ENOTFOUND);
    } else if (op < 70) {
      int64_t count = (int64_t)ts_below(&r, 7) - 3;
      CHECK_OK(shmd_list_rem(s, l, count, v, vl, &n));
      uint64_t want = m_rem(&m, count, v, vl);
      cr_assert_eq(n, want, "lrem %lld removed %llu, model %llu", (long long)count,
                   (unsigned long long)n, (unsigned long long)want);
    } else if (op < 80) {
      int64_t idx = pick_index(&r, m.n);
      size_t at;
      rc = shmd_list_set(s, l, idx, v, vl);
      if (!m_index(&m, idx, &at))
        cr_assert_eq(rc, SHMD_ERANGE);
      else {
        cr_assert_eq(rc, 0);
        free(m.v[at].b);
        m.v[at] = mstr(v, vl);
      }
    } else if (op < 84) {
      int64_t a = pick_index(&r, m.n) / 4, b = -1 - (int64_t)ts_below(&r, m.n / 4 + 2);
      if (ts_below(&r, 8) == 0)
        b = pick_index(&r, m.n);
      CHECK_OK(shmd_list_trim(s, l, a, b));
      m_trim(&m, a, b);
    } else if (op < 88) {
      /* iteration in batches, both directions */
      int rev = (int)ts_below(&r, 2);
      shmd_list_iter_t it;
      shmd_list_iter_init(&it, l, rev);
      model_t g = {0};
      size_t batch = 1 + ts_below(&r, 9), visited;
      do
        CHECK_OK(shmd_list_iter_next(s, &it, batch, collect_fn, &g, &visited));
      while (visited == batch);
      cr_assert_eq(g.n, m.n);
      for (size_t k = 0; k < m.n; k++) {
        const mstr_t *e = &m.v[rev ? m.n - 1 - k : k];
        cr_assert(m_eq(e, g.v[k].b, g.v[k].len), "iter element %zu", k);
      }
      m_free(&g);
    } else if (op < 96) {
      /* several operations in one caller transaction, committed or aborted */
      shmd_tx_t *tx;
      CHECK_OK(shmd_tx_begin(s, &tx));
      model_t saved;
      m_copy(&saved, &m);
      for (int k = 0; k < 4; k++) {
        vl = gen_value(pick_id(&r), v);
        int where = (int)ts_below(&r, 2);
        CHECK_OK(shmd_list_push(s, l, where, v, vl, NULL));
        m_insert_at(&m, where == SHMD_LIST_HEAD ? 0 : m.n, v, vl);
        if (m.n > 1 && ts_below(&r, 2)) {
          CHECK_OK(shmd_list_pop(s, l, SHMD_LIST_HEAD, NULL, 0, NULL));
          m_remove_at(&m, 0);
        }
        int64_t count = (int64_t)ts_below(&r, 3) - 1;
        CHECK_OK(shmd_list_rem(s, l, count, v, vl, &n));
        cr_assert_eq(n, m_rem(&m, count, v, vl));
      }
      if (ts_below(&r, 2)) {
        CHECK_OK(shmd_tx_commit(tx));
        m_free(&saved);
      } else {
        shmd_tx_abort(tx);
        m_free(&m);
        m = saved;
      }
    } else {
      CHECK_OK(shmd_list_len(s, l, &n));
      cr_assert_eq(n, m.n);
    }
    if (wrap) {
      shmd_tx_abort(wtx);
      m_free(&m);
      m = before;
    }
    if (check_every || i % 50 == 0 || wrap) {
      compare(s, l, &m);
      CHECK_OK(shmd_list_check(s, l));
    }
    if (check_every && i % 20 == 0)
      CHECK_OK(shmd_alloc_check(s));
  }
  cr_log_info("%ld ops, longest %llu, final %llu", ops, (unsigned long long)max_len,
              (unsigned long long)m.n);
  compare(s, l, &m);
  CHECK_OK(shmd_list_check(s, l));
  CHECK_OK(shmd_list_destroy(s, l));
  CHECK_OK(shmd_alloc_check(s));
  shmd_stats_t st;
  CHECK_OK(shmd_stats(s, &st));
  cr_assert_eq(st.allocated_bytes, 0, "everything freed (%llu bytes left)",
               (unsigned long long)st.allocated_bytes);
  m_free(&m);
  shmd_close(s);
}

Test(list, property_random_ops) {
  uint64_t seed = ts_seed("list.property");
  long ops = env_long("SHMDICT_TEST_OPS", 100000);
  for (int run = 0; run < 4; run++)
    property_run(ops / 4, 0, seed + (uint64_t)run);
}

Test(list, property_checked_every_step) {
  uint64_t seed = ts_seed("list.property_checked");
  long ops = env_long("SHMDICT_TEST_OPS", 100000) / 8;
  for (int run = 0; run < 2; run++)
    property_run(ops / 2, 1, seed + (uint64_t)run);
}

/* ---------------------------------------------------------------------------------------------- */
/* Removals larger than one transaction */

static void push_n(shmd_store_t *s, shmd_ptr_t l, int n, const char *val) {
  for (int i = 0; i < n; i++)
    CHECK_OK(shmd_list_push(s, l, SHMD_LIST_TAIL, val, strlen(val), NULL));
}

Test(list, batched_removals) {
  shmd_store_t *s = ts_open("l", 64u << 20, 64u << 20);
  shmd_ptr_t l;
  uint64_t n;
  CHECK_OK(shmd_list_create(s, &l));
  for (int i = 0; i < 3000; i++) {
    CHECK_OK(shmd_list_push(s, l, SHMD_LIST_TAIL, "x", 1, NULL));
    CHECK_OK(shmd_list_push(s, l, SHMD_LIST_TAIL, (i & 1) ? "y" : "z", 1, NULL));
  }
  /* inside a caller's transaction: atomic whatever the size (the transaction grows); an abort
   * brings all of it back */
  shmd_tx_t *tx;
  CHECK_OK(shmd_tx_begin(s, &tx));
  CHECK_OK(shmd_list_rem(s, l, 0, "x", 1, &n));
  cr_assert_eq(n, 3000);
  CHECK_OK(shmd_list_trim(s, l, 2999, -1));
  CHECK_OK(shmd_list_len(s, l, &n));
  cr_assert_eq(n, 1);
  shmd_tx_abort(tx);
  CHECK_OK(shmd_list_len(s, l, &n));
  cr_assert_eq(n, 6000);
  CHECK_OK(shmd_list_check(s, l));
  CHECK_OK(shmd_tx_begin(s, &tx));
  CHECK_OK(shmd_list_push(s, l, SHMD_LIST_HEAD, "h", 1, NULL));
  CHECK_OK(shmd_list_rem(s, l, 5, "x", 1, &n)); /* small: atomic inside */
  cr_assert_eq(n, 5);
  CHECK_OK(shmd_tx_commit(tx));
  CHECK_OK(shmd_list_len(s, l, &n));
  cr_assert_eq(n, 6000 - 5 + 1);
  CHECK_OK(shmd_list_check(s, l));
  /* top level: batches */
  CHECK_OK(shmd_list_rem(s, l, -1000, "x", 1, &n));
  cr_assert_eq(n, 1000);
  CHECK_OK(shmd_list_rem(s, l, 0, "x", 1, &n));
  cr_assert_eq(n, 3000 - 1005);
  CHECK_OK(shmd_list_check(s, l));
  CHECK_OK(shmd_list_len(s, l, &n));
  cr_assert_eq(n, 3001);
  unsigned char b[8];
  size_t bl;
  CHECK_OK(shmd_list_index(s, l, 0, b, sizeof b, &bl));
  cr_assert(bl == 1 && b[0] == 'h');
  /* LTRIM of thousands at both ends */
  CHECK_OK(shmd_list_trim(s, l, 1200, -1201));
  CHECK_OK(shmd_list_len(s, l, &n));
  cr_assert_eq(n, 3001 - 2400);
  CHECK_OK(shmd_list_check(s, l));
  CHECK_OK(shmd_list_trim(s, l, 1, 0)); /* empties it */
  CHECK_OK(shmd_list_len(s, l, &n));
  cr_assert_eq(n, 0);
  /* destroy of a long list with blobs, top level; and of a short one inside a transaction */
  static unsigned char big[10000];
  for (int i = 0; i < 1500; i++)
    CHECK_OK(shmd_list_push(s, l, SHMD_LIST_TAIL, big, (i % 3) ? 5 : sizeof big, NULL));
  CHECK_OK(shmd_list_check(s, l));
  CHECK_OK(shmd_list_destroy(s, l));
  CHECK_OK(shmd_list_create(s, &l));
  push_n(s, l, 50, "short");
  CHECK_OK(shmd_tx_begin(s, &tx));
  CHECK_OK(shmd_list_destroy(s, l));
  shmd_tx_abort(tx);
  CHECK_OK(shmd_list_check(s, l)); /* the abort brought it back */
  CHECK_OK(shmd_tx_begin(s, &tx));
  CHECK_OK(shmd_list_destroy(s, l));
  CHECK_OK(shmd_tx_commit(tx));
  CHECK_OK(shmd_alloc_check(s));
  shmd_stats_t st;
  CHECK_OK(shmd_stats(s, &st));
  cr_assert_eq(st.allocated_bytes, 0, "%llu bytes left", (unsigned long long)st.allocated_bytes);
  shmd_close(s);
}

/* Iteration across changes between batches. */
Test(list, iterate_in_batches_with_changes) {
  shmd_store_t *s = ts_open("l", 16u << 20, 16u << 20);
  shmd_ptr_t l;
  CHECK_OK(shmd_list_create(s, &l));
  char v[16];
  for (int i = 0; i < 100; i++) {
    int k = snprintf(v, sizeof v, "%d", i);
    CHECK_OK(shmd_list_push(s, l, SHMD_LIST_TAIL, v, (size_t)k, NULL));
  }
  shmd_list_iter_t it;
  shmd_list_iter_init(&it, l, 0);
  model_t g = {0};
  size_t visited;
  CHECK_OK(shmd_list_iter_next(s, &it, 30, collect_fn, &g, &visited));
  cr_assert_eq(visited, 30);
  /* pushes at both ends do not disturb the walk; the tail one is visited */
  CHECK_OK(shmd_list_push(s, l, SHMD_LIST_HEAD, "head", 4, NULL));
  CHECK_OK(shmd_list_push(s, l, SHMD_LIST_TAIL, "tail", 4, NULL));
  do
    CHECK_OK(shmd_list_iter_next(s, &it, 30, collect_fn, &g, &visited));
  while (visited == 30);
  cr_assert_eq(g.n, 101);
  cr_assert(m_eq(&g.v[30], "30", 2) && m_eq(&g.v[100], "tail", 4));
  /* a further call at the end visits nothing, until more is pushed */
  CHECK_OK(shmd_list_iter_next(s, &it, 30, collect_fn, &g, &visited));
  cr_assert_eq(visited, 0);
  CHECK_OK(shmd_list_push(s, l, SHMD_LIST_TAIL, "more", 4, NULL));
  CHECK_OK(shmd_list_iter_next(s, &it, 30, collect_fn, &g, &visited));
  cr_assert_eq(visited, 1);
  m_free(&g);
  /* removals between batches: resumes by position, never crashes or loops */
  shmd_list_iter_init(&it, l, 1);
  CHECK_OK(shmd_list_iter_next(s, &it, 10, collect_fn, &g, &visited));
  for (int i = 0; i < 20; i++)
    CHECK_OK(shmd_list_pop(s, l, SHMD_LIST_TAIL, NULL, 0, NULL));
  do
    CHECK_OK(shmd_list_iter_next(s, &it, 10, collect_fn, &g, &visited));
  while (visited == 10);
  uint64_t n;
  CHECK_OK(shmd_list_len(s, l, &n));
  cr_assert_eq(g.n, n, "positions 10.. of the shorter list: %zu + %llu", g.n,
               (unsigned long long)n);
  m_free(&g);
  CHECK_OK(shmd_list_destroy(s, l));
  shmd_close(s);
}

/*
 * A paused iterator whose list changes in place before it resumes: the current element replaced
 * (LSET) or removed (LREM, LPOP / RPOP, LTRIM), others replaced or removed, elements inserted next
 * to it (LINSERT) or pushed, and then new elements pushed that reuse the freed nodes' memory. The
 * iterator must resume as list.h documents: after its last element when nothing was removed since,
 * else at the same position counted from its starting end; it must never follow a freed (and
 * reused) node. Elements are unique ids, so every visited element is checked against a model.
 */
typedef struct {
  uint32_t *id;
  size_t n, cap;
} idlist_t;

static void ids_insert(idlist_t *m, size_t i, uint32_t id) {
  if (m->n == m->cap) {
    m->cap = m->cap * 2 + 16;
    m->id = realloc(m->id, m->cap * sizeof *m->id);
  }
  memmove(m->id + i + 1, m->id + i, (m->n - i) * sizeof *m->id);
  m->id[i] = id;
  m->n++;
}

static void ids_remove(idlist_t *m, size_t i) {
  memmove(m->id + i, m->id + i + 1, (m->n - i - 1) * sizeof *m->id);
  m->n--;
}

static size_t ids_find(const idlist_t *m, uint32_t id) {
  for (size_t i = 0; i < m->n; i++)
    if (m->id[i] == id)
      return i;
  return SIZE_MAX;
}

/* Element bytes of an id: "e00042|" then padding; one id in 13 is a blob of 5000 bytes. */
static size_t id_value(uint32_t id, char *buf) {
  size_t len = id % 13 == 0 ? 5000 : 12;
  memset(buf, 'a' + (char)(id % 26), len);
  snprintf(buf, 8, "e%05u", id % 100000);
  buf[6] = '|';
  return len;
}

static int id_collect(const void *d, size_t len, void *arg) {
  idlist_t *got = arg;
  const char *c = d;
  uint32_t id = 0;
  cr_assert(len >= 7 && c[0] == 'e' && c[6] == '|', "an element that is no id (len %zu)", len);
  for (int i = 1; i < 6; i++)
    id = id * 10 + (uint32_t)(c[i] - '0');
  ids_insert(got, got->n, id);
  return 0;
}

static void push_id(shmd_store_t *s, shmd_ptr_t l, idlist_t *m, int where, uint32_t id) {
  char buf[5000];
  size_t len = id_value(id, buf);
  CHECK_OK(shmd_list_push(s, l, where, buf, len, NULL));
  ids_insert(m, where == SHMD_LIST_HEAD ? 0 : m->n, id);
}

Test(list, iterator_resumes_after_in_place_changes) {
  shmd_store_t *s = ts_open("it", 32u << 20, 32u << 20);
  ts_rng_t r = {ts_seed("iterator_resumes_after_in_place_changes")};
  uint32_t next_id = 1;
  char buf[5000];
  unsigned resumed_by_position = 0, resumed_after_last = 0, changes[8] = {0};
  for (int round = 0; round < 300; round++) {
    shmd_ptr_t l;
    CHECK_OK(shmd_list_create(s, &l));
    idlist_t m = {0};
    size_t n0 = 3 + ts_below(&r, 40);
    for (size_t i = 0; i < n0; i++)
      push_id(s, l, &m, SHMD_LIST_TAIL, next_id++ % 100000);
    int back = (int)ts_below(&r, 2);
    shmd_list_iter_t it;
    shmd_list_iter_init(&it, l, back);
    uint64_t visited = 0;
    uint32_t last = 0;
    int removed = 0, started = 0;
    for (int step = 0; step < 200; step++) {
      /* where the walk must resume */
      size_t pos; /* index in the model of the next element, m.n (or SIZE_MAX back) at the end */
      if (!started) {
        pos = back ? m.n - 1 : 0;
      } else if (!removed) {
        size_t i = ids_find(&m, last);
        cr_assert_neq(i, SIZE_MAX, "round %d: nothing was removed, yet the last element is gone", round);
        pos = back ? i - 1 : i + 1;
        resumed_after_last++;
      } else {
        pos = back ? m.n - 1 - visited : visited; /* wraps past the end when visited > m.n */
        resumed_by_position++;
      }
      size_t batch = 1 + ts_below(&r, 4), got_n;
      idlist_t got = {0};
      int rc = shmd_list_iter_next(s, &it, batch, id_collect, &got, &got_n);
      cr_assert_eq(rc, 0, "round %d step %d: %s", round, step, shmd_strerror(rc));
      cr_assert_eq(got_n, got.n);
      for (size_t k = 0; k < got.n; k++) {
        size_t want = back ? pos - k : pos + k;
        cr_assert(want < m.n, "round %d step %d (%s): visited element %u past the end of the list", round,
                  step, back ? "tail to head" : "head to tail", got.id[k]);
        cr_assert_eq(got.id[k], m.id[want],
                     "round %d step %d (%s): element %zu of the batch is %u, the list has %u at index %zu",
                     round, step, back ? "tail to head" : "head to tail", k, got.id[k], m.id[want], want);
      }
      size_t left = pos < m.n ? (back ? pos + 1 : m.n - pos) : 0;
      cr_assert_eq(got.n, left < batch ? left : batch,
                   "round %d step %d (%s): %zu elements visited, %zu expected (list of %zu, resume at %zu)",
                   round, step, back ? "tail to head" : "head to tail", got.n, left < batch ? left : batch,
                   m.n, pos);
      visited += got.n;
      if (got.n > 0) {
        last = got.id[got.n - 1];
        started = 1;
      }
      free(got.id);
      if (got.n < batch)
        break;
      /* a change between batches, most of them at the current element */
      removed = 0;
      size_t cur = ids_find(&m, last);
      unsigned what = (unsigned)ts_below(&r, 8);
      changes[what]++;
      switch (what) {
      case 0: /* LSET of the current element */
      case 1: { /* LSET of another */
        size_t i = what == 0 ? cur : ts_below(&r, m.n);
        uint32_t id = next_id++ % 100000;
        size_t len = id_value(id, buf);
        CHECK_OK(shmd_list_set(s, l, (int64_t)i, buf, len));
        m.id[i] = id;
        removed = 1;
        break;
      }
      case 2: { /* LREM of the current element, from either end */
        size_t len = id_value(last, buf);
        uint64_t k;
        int64_t count = ts_below(&r, 3) == 0 ? 0 : ts_below(&r, 2) ? 1 : -1;
        CHECK_OK(shmd_list_rem(s, l, count, buf, len, &k));
        cr_assert_eq(k, 1);
        ids_remove(&m, cur);
        removed = 1;
        break;
      }
      case 3: { /* pop one or more at either end (the current element when it is there) */
        int where = (int)ts_below(&r, 2);
        size_t k = 1 + ts_below(&r, 3);
        for (size_t j = 0; j < k && m.n > 0; j++) {
          CHECK_OK(shmd_list_pop(s, l, where, NULL, 0, NULL));
          ids_remove(&m, where == SHMD_LIST_HEAD ? 0 : m.n - 1);
          removed = 1;
        }
        break;
      }
      case 4: { /* LTRIM: keep a random range, which may or may not hold the current element */
        int64_t a = ts_below(&r, 2) ? (int64_t)cur : (int64_t)ts_below(&r, m.n); /* from the current one? */
        int64_t b = a + (int64_t)ts_below(&r, m.n + 1);
        CHECK_OK(shmd_list_trim(s, l, a, b));
        size_t keep_to = (size_t)b < m.n ? (size_t)b : m.n - 1;
        size_t before = m.n;
        m.n = keep_to + 1;
        memmove(m.id, m.id + a, (m.n - (size_t)a) * sizeof *m.id);
        m.n -= (size_t)a;
        removed = m.n < before;
        break;
      }
      case 5: { /* LINSERT before or after the current element: nothing removed */
        int after = (int)ts_below(&r, 2);
        uint32_t id = next_id++ % 100000;
        char pv[5000];
        size_t pl = id_value(last, pv), len = id_value(id, buf);
        uint64_t nl;
        CHECK_OK(shmd_list_insert(s, l, after, pv, pl, buf, len, &nl));
        ids_insert(&m, after ? cur + 1 : cur, id);
        break;
      }
      default: /* pushes only */
        break;
      }
      /* pushes at either end: they take the memory of the nodes just freed */
      size_t k = ts_below(&r, 4);
      for (size_t j = 0; j < k; j++)
        push_id(s, l, &m, (int)ts_below(&r, 2), next_id++ % 100000);
      if (m.n == 0)
        break;
      CHECK_OK(shmd_list_check(s, l));
    }
    free(m.id);
    CHECK_OK(shmd_list_destroy(s, l));
  }
  cr_log_info("resumed %u times after the last element, %u times by position; changes %u %u %u %u %u %u "
              "%u %u", resumed_after_last, resumed_by_position, changes[0], changes[1], changes[2],
              changes[3], changes[4], changes[5], changes[6], changes[7]);
  cr_assert_gt(resumed_by_position, 500);
  CHECK_OK(shmd_alloc_check(s));
  shmd_close(s);
}

/* The intrusive core used directly, on a structure of the test's own. */
typedef struct {
  uint64_t key;
  shmd_list_node_t link;
} item_t;

Test(list, intrusive_core) {
  shmd_store_t *s = ts_open("l", 16u << 20, 16u << 20);
  shmd_tx_t *tx;
  shmd_ptr_t head, items[5];
  CHECK_OK(shmd_tx_begin(s, &tx));
  CHECK_OK(shmd_tx_calloc(tx, sizeof(shmd_list_node_t), &head));
  shmd_list_init(s, head);
  cr_assert(shmd_list_is_empty(s, head));
  for (int i = 0; i < 5; i++) {
    shmd_ptr_t p;
    CHECK_OK(shmd_tx_alloc(tx, sizeof(item_t), &p));
    ((item_t *)shmd_resolve(s, p))->key = (uint64_t)i;
    items[i] = shmd_ptr_add(p, offsetof(item_t, link));
    CHECK_OK(shmd_list_add_before(tx, s, head, items[i], SHMD_LIST_NEW)); /* at the tail */
  }
  CHECK_OK(shmd_tx_commit(tx));
  /* move item 4 to the front and remove item 2, then abort: order comes back */
  CHECK_OK(shmd_tx_begin(s, &tx));
  CHECK_OK(shmd_list_del(tx, s, items[4]));
  CHECK_OK(shmd_list_add_after(tx, s, head, items[4], 0));
  CHECK_OK(shmd_list_del(tx, s, items[2]));
  shmd_tx_abort(tx);
  shmd_ptr_t p = shmd_list_node(s, head)->next;
  for (uint64_t i = 0; i < 5; i++) {
    item_t *it = shmd_list_entry(s, p, item_t, link);
    cr_assert_eq(it->key, i);
    cr_assert(shmd_ptr_eq(shmd_list_node(s, shmd_list_node(s, p)->next)->prev, p));
    p = shmd_list_node(s, p)->next;
  }
  cr_assert(shmd_ptr_eq(p, head));
  /* now commit it; and replace item 0 by item 2, cut the range 1..3 */
  CHECK_OK(shmd_tx_begin(s, &tx));
  CHECK_OK(shmd_list_del(tx, s, items[4]));
  CHECK_OK(shmd_list_add_after(tx, s, head, items[4], 0));
  CHECK_OK(shmd_list_del(tx, s, items[2]));
  CHECK_OK(shmd_list_replace(tx, s, items[0], items[2], 0));
  CHECK_OK(shmd_list_del_range(tx, s, items[1], items[3]));
  CHECK_OK(shmd_tx_commit(tx));
  /* left: 4, 2 */
  p = shmd_list_node(s, head)->next;
  cr_assert_eq(shmd_list_entry(s, p, item_t, link)->key, 4);
  p = shmd_list_node(s, p)->next;
  cr_assert_eq(shmd_list_entry(s, p, item_t, link)->key, 2);
  cr_assert(shmd_ptr_eq(shmd_list_node(s, p)->next, head));
  cr_assert(shmd_ptr_eq(shmd_list_node(s, head)->prev, p));
  shmd_close(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* Two processes push and pop at once */

typedef struct {
  int who;
  long ops;
  const char *outpath;
} mp_arg_t;

static int mp_child(ts_crash_child_t *cc) {
  const mp_arg_t *a = cc->arg;
  int who = a->who;
  long ops = a->ops;
  const char *outpath = a->outpath;
  uint64_t seed = cc->seed;
  shmd_store_t *s = cc->s;
  shmd_ptr_t l;
  if (shmd_root_get(s, "list", &l))
    _exit(2);
  FILE *out = fopen(outpath, "w");
  if (out == NULL)
    _exit(2);
  ts_rng_t r = {seed};
  uint64_t pushed = 0;
  for (long i = 0; i < ops; i++) {
    char v[32], got[64];
    size_t gl;
    uint64_t op = ts_below(&r, 10);
    if (op < 6) {
      int where = (int)ts_below(&r, 2);
      int k = snprintf(v, sizeof v, "%c%d:%llu", where ? 'T' : 'H', who,
                       (unsigned long long)pushed++);
      if (shmd_list_push(s, l, where, v, (size_t)k, NULL))
        _exit(5);
    } else {
      int rc = shmd_list_pop(s, l, (int)ts_below(&r, 2), got, sizeof got - 1, &gl);
      if (rc == 0) {
        got[gl] = 0;
        fprintf(out, "%s\n", got);
      } else if (rc != SHMD_ENOTFOUND)
        _exit(6);
    }
  }
  fprintf(out, "pushed %llu\n", (unsigned long long)pushed);
  fclose(out);
  shmd_close(s);
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

Test(list, mp_push_pop_two_processes) {
  uint64_t seed = ts_seed("list.mp");
  long ops = env_long("SHMDICT_TEST_MP_OPS", 200000);
  shmd_store_t *s = ts_open("mp", 64u << 20, 64u << 20);
  shmd_ptr_t l;
  CHECK_OK(shmd_list_create(s, &l));
  CHECK_OK(shmd_root_set(s, "list", l));
  char paths[2][300];
  mp_arg_t args[2];
  ts_crash_proc_t *p[2];
  for (int w = 0; w < 2; w++) {
    snprintf(paths[w], sizeof paths[w], "%s/popped.%d", ts_dir, w);
    args[w] = (mp_arg_t){w, ops, paths[w]};
    p[w] = ts_crash_start(NULL, &(ts_crash_spec_t){.what = w ? "child 1" : "child 0", .fn = mp_child, .arg = &args[w],
                                                   .seed = seed + (uint64_t)w * 7777, .store = "mp",
                                                   .opts = ts_opts(64u << 20, 64u << 20), .end = TS_END_EXIT0});
  }
  for (int w = 0; w < 2; w++)
    ts_crash_finish(p[w], NULL);
  CHECK_OK(shmd_list_check(s, l));
  CHECK_OK(shmd_alloc_check(s));
  /* everything pushed = what is left + what was popped, each exactly once */
  uint64_t pushed[2] = {0, 0}, len;
  CHECK_OK(shmd_list_len(s, l, &len));
  size_t cap = (size_t)len + 2 * (size_t)ops + 8, nall = 0;
  char **all = malloc(sizeof(char *) * cap);
  for (int w = 0; w < 2; w++) {
    FILE *f = fopen(paths[w], "r");
    cr_assert_not_null(f);
    char line[128];
    while (fgets(line, sizeof line, f)) {
      line[strcspn(line, "\n")] = 0;
      unsigned long long k;
      if (sscanf(line, "pushed %llu", &k) == 1)
        pushed[w] = k;
      else
        all[nall++] = strdup(line);
    }
    fclose(f);
  }
  model_t g = {0};
  CHECK_OK(shmd_list_range(s, l, 0, -1, collect_fn, &g));
  /* order: per process, tail pushes appear oldest first, head pushes newest first */
  long long last_t[2] = {-1, -1}, last_h[2] = {-1, -1};
  int seen_tail_region[2] = {0, 0};
  (void)seen_tail_region;
  for (size_t i = 0; i < g.n; i++) {
    char *str = malloc(g.v[i].len + 1);
    memcpy(str, g.v[i].b, g.v[i].len);
    str[g.v[i].len] = 0;
    all[nall++] = str;
    int who;
    long long seq;
    char end;
    cr_assert_eq(sscanf(str, "%c%d:%lld", &end, &who, &seq), 3, "bad element %s", str);
    if (end == 'T') {
      cr_assert_gt(seq, last_t[who], "tail pushes of %d out of order", who);
      last_t[who] = seq;
    } else {
      if (last_h[who] >= 0)
        cr_assert_lt(seq, last_h[who], "head pushes of %d out of order", who);
      last_h[who] = seq;
    }
  }
  cr_assert_eq(nall, pushed[0] + pushed[1], "%zu found, %llu pushed", nall,
               (unsigned long long)(pushed[0] + pushed[1]));
  qsort(all, nall, sizeof(char *), cmp_str);
  for (size_t i = 1; i < nall; i++)
    cr_assert_str_neq(all[i - 1], all[i], "duplicate %s", all[i]);
  for (size_t i = 0; i < nall; i++)
    free(all[i]);
  free(all);
  m_free(&g);
  cr_log_info("mp: %llu + %llu pushed, %llu left", (unsigned long long)pushed[0],
              (unsigned long long)pushed[1], (unsigned long long)len);
  shmd_close(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* Crash tests */

enum { OP_PUSH, OP_POP, OP_INSERT, OP_REM, OP_SET, OP_TRIM, OP_N };

typedef struct {
  uint32_t kind; /* 1 = intent, 2 = done */
  uint32_t op;
  int64_t a, b; /* where / after / count / index / start, stop */
  uint64_t val, pivot;
  int64_t rc;
} rec_t;

/* Applies an operation to the model; returns the status the list must have returned. */
static int m_apply(model_t *m, const rec_t *r) {
  static unsigned char v[VAL_MAX], p[VAL_MAX];
  size_t vl = gen_value(r->val, v), pl = gen_value(r->pivot, p), at;
  switch (r->op) {
  case OP_PUSH:
    m_insert_at(m, r->a == SHMD_LIST_HEAD ? 0 : m->n, v, vl);
    return 0;
  case OP_POP:
    if (m->n == 0)
      return SHMD_ENOTFOUND;
    m_remove_at(m, r->a == SHMD_LIST_HEAD ? 0 : m->n - 1);
    return 0;
  case OP_INSERT:
    return m_linsert(m, (int)r->a, p, pl, v, vl) ? 0 : SHMD_ENOTFOUND;
  case OP_REM:
    m_rem(m, r->a, v, vl);
    return 0;
  case OP_SET:
    if (!m_index(m, r->a, &at))
      return SHMD_ERANGE;
    free(m->v[at].b);
    m->v[at] = mstr(v, vl);
    return 0;
  case OP_TRIM:
    m_trim(m, r->a, r->b);
    return 0;
  }
  return 0;
}

/* The child of a crash round: `*(int *)arg` random operations on the list, each reported before
 * (kind 1) and after (kind 2, with its status). */
static int crash_child(ts_crash_child_t *cc) {
  int ops = *(const int *)cc->arg;
  uint64_t seed = cc->seed;
  shmd_store_t *s = cc->s;
  shmd_ptr_t l;
  if (shmd_root_get(s, "list", &l))
    _exit(2);
  ts_rng_t r = {seed};
  uint64_t len;
  static unsigned char v[VAL_MAX], p[VAL_MAX];
  for (int i = 0; i < ops; i++) {
    if (shmd_list_len(s, l, &len))
      _exit(4);
    rec_t rec = {1, 0, 0, 0, pick_id(&r), pick_id(&r), 0};
    uint64_t x = ts_below(&r, 100);
    if (len > 120 && x < 40)
      x += 40;
    rec.op = x < 40 ? OP_PUSH : x < 62 ? OP_POP : x < 72 ? OP_INSERT : x < 82 ? OP_REM
           : x < 95 ? OP_SET : OP_TRIM;
    switch (rec.op) {
    case OP_PUSH:
    case OP_POP:
      rec.a = (int64_t)ts_below(&r, 2);
      break;
    case OP_INSERT:
      rec.a = (int64_t)ts_below(&r, 2);
      break;
    case OP_REM:
      rec.a = (int64_t)ts_below(&r, 7) - 3;
      break;
    case OP_SET:
      rec.a = pick_index(&r, (size_t)len);
      break;
    case OP_TRIM:
      rec.a = (int64_t)ts_below(&r, 4);
      rec.b = -1 - (int64_t)ts_below(&r, 4);
      break;
    }
    ts_crash_report(cc, &rec);
    size_t vl = gen_value(rec.val, v), pl = gen_value(rec.pivot, p);
    int rc = 0;
    switch (rec.op) {
    case OP_PUSH: rc = shmd_list_push(s, l, (int)rec.a, v, vl, NULL); break;
    case OP_POP: rc = shmd_list_pop(s, l, (int)rec.a, NULL, 0, NULL); break;
    case OP_INSERT: rc = shmd_list_insert(s, l, (int)rec.a, p, pl, v, vl, NULL); break;
    case OP_REM: rc = shmd_list_rem(s, l, rec.a, v, vl, NULL); break;
    case OP_SET: rc = shmd_list_set(s, l, rec.a, v, vl); break;
    case OP_TRIM: rc = shmd_list_trim(s, l, rec.a, rec.b); break;
    }
    rec.kind = 2;
    rec.rc = rc;
    ts_crash_report(cc, &rec);
  }
  shmd_close(s);
  return 0;
}

/* The parent's side: the model follows the reported operations. */
typedef struct {
  model_t *m;
  rec_t pending;
  int have_pending;
} follow_t;

static void follow(const void *r, void *arg) {
  follow_t *f = arg;
  const rec_t *rec = r;
  if (rec->kind == 1) {
    f->pending = *rec;
    f->have_pending = 1;
  } else {
    cr_assert(f->have_pending && rec->op == f->pending.op, "%s: a result without its intent", ts_crash_where());
    int want = m_apply(f->m, &f->pending);
    cr_assert_eq(rec->rc, want, "%s: op %u returned %lld, model says %d", ts_crash_where(), rec->op,
                 (long long)rec->rc, want);
    f->have_pending = 0;
  }
}

static void crash_rounds(int rounds, int use_points) {
  ts_crash_t t;
  ts_crash_begin(&t, use_points ? "list.crash_points" : "list.crash_random");
  ts_rng_t *r = &t.rng;
  shmd_store_t *s = ts_open("crash", 64u << 20, 64u << 20);
  shmd_ptr_t l;
  CHECK_OK(shmd_list_create(s, &l));
  CHECK_OK(shmd_root_set(s, "list", l));
  shmd_close(s);
  model_t m = {0};
  const char *points[] = {"list.push.alloced", "list.unlink", "list.push.linked"};
  int killed = 0, in_flight = 0;
  for (int round = 0; round < rounds; round++) {
    char point[64];
    const char *cp = NULL;
    if (use_points) {
      snprintf(point, sizeof point, "%s:%d", points[round % 3], 1 + (int)ts_below(r, 20));
      cp = point;
    }
    /* Read the records as they come; for random kills, SIGKILL the child 1 to 41 ms after its
     * fork. */
    int ops = use_points ? 300 : 100000;
    follow_t f = {&m, {0}, 0};
    ts_crash_spec_t sp = {.what = "the list writer", .fn = crash_child, .arg = &ops, .seed = ts_next(r),
                          .store = "crash", .opts = ts_opts(64u << 20, 64u << 20), .point = cp,
                          .rec_size = sizeof(rec_t), .on_rec = follow, .rec_arg = &f};
    if (!use_points)
      sp.kill_lo_us = 1000, sp.kill_hi_us = 1000 + 40000 - 1;
    ts_crash_res_t res;
    ts_crash_run(&t, &sp, &res); /* exit 0 or killed */
    killed += res.killed;
    rec_t pending = f.pending;
    int have_pending = f.have_pending;
    s = ts_crash_open("crash", 64u << 20, 64u << 20);
    ts_crash_check(s, TS_CHECK_ALLOC, "list:list");
    char why[200];
    if (!lists_equal(s, l, &m, why, sizeof why)) {
      cr_assert(have_pending, "%s: list differs from every reported operation: %s", ts_crash_where(), why);
      model_t alt;
      m_copy(&alt, &m);
      m_apply(&alt, &pending);
      /* LREM / LTRIM at top level run in batches: a kill may leave part of one done. Those ops
       * are generated small enough here (LREM |count| <= 3 on a short list, LTRIM of a few) to
       * fit one batch, so the list must be exactly before or after. */
      cr_assert(lists_equal(s, l, &alt, why, sizeof why),
                "%s: list is neither before nor after the killed op %u: %s", ts_crash_where(), pending.op, why);
      m_free(&m);
      m = alt;
      in_flight++;
    }
    shmd_close(s);
  }
  ts_crash_end(&t);
  /* Nothing leaked across all the kills: once the container is destroyed the store is empty. */
  s = ts_open("crash", 64u << 20, 64u << 20);
  CHECK_OK(shmd_list_destroy(s, l));
  CHECK_OK(shmd_alloc_check(s));
  shmd_stats_t st;
  CHECK_OK(shmd_stats(s, &st));
  cr_assert_eq(st.allocated_bytes, 0, "%llu bytes leaked", (unsigned long long)st.allocated_bytes);
  shmd_close(s);
  cr_log_info("list crash: %d rounds, %d killed, %d killed ops found done, final length %zu",
              rounds, killed, in_flight, m.n);
  m_free(&m);
}

Test(list, crash_random_kills) { crash_rounds((int)env_long("SHMDICT_TEST_KILLS", 200), 0); }

Test(list, crash_at_points) { crash_rounds((int)env_long("SHMDICT_TEST_KILLS", 200) / 2, 1); }

/* Long removals run in batches; a kill between or inside batches leaves a valid, partly
 * shortened list (a suffix of it for destroy, the first k matches gone for LREM) that can be
 * finished later, and nothing leaks. */
typedef struct {
  shmd_ptr_t l;
  int which;
} removal_t;

/* LREM of every "x" (which = 1) or the destroy of the list (0), on the store the harness opened. */
static int removal_child(ts_crash_child_t *cc) {
  const removal_t *a = cc->arg;
  int rc = a->which ? shmd_list_rem(cc->s, a->l, 0, "x", 1, NULL) : shmd_list_destroy(cc->s, a->l);
  return rc == 0 ? 0 : 3;
}

static void crash_long_removal(int which) {
  ts_crash_t t;
  ts_crash_begin(&t, which ? "list.crash_rem" : "list.crash_destroy");
  for (int round = 0; round < 6; round++) {
    shmd_store_t *s = ts_open("crash", 64u << 20, 64u << 20);
    shmd_ptr_t l;
    CHECK_OK(shmd_list_create(s, &l));
    CHECK_OK(shmd_root_set(s, "list", l));
    model_t m = {0};
    static unsigned char v[VAL_MAX];
    for (int i = 0; i < 4000; i++) {
      size_t vl;
      if (which && i % 3 != 2) {
        vl = 1;
        v[0] = 'x';
      } else
        vl = gen_value((uint64_t)i * 16 + (i % 5 == 0 ? 15 : 3), v); /* some blobs */
      CHECK_OK(shmd_list_push(s, l, SHMD_LIST_TAIL, v, vl, NULL));
      m_insert_at(&m, m.n, v, vl);
    }
    shmd_close(s);
    char point[64];
    snprintf(point, sizeof point, "list.unlink:%d",
             1 + (int)ts_below(&t.rng, which ? 2600 : 12)); /* per node for LREM, per batch else */
    removal_t rm = {l, which};
    int st = ts_crash_run(&t,
                          &(ts_crash_spec_t){.what = which ? "the LREM" : "the destroy", .fn = removal_child,
                                             .arg = &rm, .store = "crash", .opts = ts_opts(64u << 20, 64u << 20),
                                             .point = point},
                          NULL); /* exit 0 or killed */
    s = ts_crash_open("crash", 64u << 20, 64u << 20);
    ts_crash_check(s, TS_CHECK_ALLOC, NULL);
    if (st == 0 && !which) {
      uint64_t n;
      cr_assert_eq(shmd_list_len(s, l, &n), SHMD_ECORRUPT, "destroyed");
    } else {
      ts_crash_check(s, 0, "list:list");
      uint64_t n;
      CHECK_OK(shmd_list_len(s, l, &n));
      cr_assert_leq(n, m.n);
      if (which && n < m.n) /* (a count of 0 would mean "all") */
        m_rem(&m, (int64_t)(m.n - n), "x", 1);
      else
        m_trim(&m, (int64_t)(m.n - n), -1);
      compare(s, l, &m);
      CHECK_OK(shmd_list_destroy(s, l));
    }
    CHECK_OK(shmd_alloc_check(s));
    shmd_stats_t sts;
    CHECK_OK(shmd_stats(s, &sts));
    cr_assert_eq(sts.allocated_bytes, 0, "%llu bytes leaked",
                 (unsigned long long)sts.allocated_bytes);
    m_free(&m);
    shmd_close(s);
    CHECK_OK(shmd_drop("crash", ts_dir));
  }
  ts_crash_end(&t);
}

Test(list, crash_destroy_in_pieces) { crash_long_removal(0); }

Test(list, crash_rem_in_batches) { crash_long_removal(1); }
