/* SPDX-License-Identifier: MIT */
/*
 * Tests of arrays (containers/array.c): edge cases, property tests against an in-process model
 * (a plain byte vector) compared after every step, moves too large for the undo log, nesting in a
 * caller's transaction, and crash tests (a forked child SIGKILLed at random moments and at the
 * grow / move crash points; after reopening the array and the allocator check out and every
 * operation the child reported done is there).
 * Knobs: SHMDICT_TEST_OPS (property ops), SHMDICT_TEST_KILLS (crash rounds).
 */
#include <errno.h>
#include <poll.h>
#include <fcntl.h>

#include "shmdict/array.h"
#include "shmdict/list.h"
#include "support.h"

TestSuite(array, .init = ts_init, .fini = ts_fini);

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
/* The model: a plain vector of fixed-size elements. */

typedef struct {
  unsigned char *b;
  size_t es;
  uint64_t len, cap;
} model_t;

static void m_init(model_t *m, size_t es) {
  memset(m, 0, sizeof *m);
  m->es = es;
}

static void m_reserve(model_t *m, uint64_t n) {
  if (n <= m->cap)
    return;
  m->cap = n * 2 + 8;
  m->b = realloc(m->b, m->cap * m->es);
  cr_assert_not_null(m->b);
}

static void m_insert(model_t *m, uint64_t i, const void *e) {
  m_reserve(m, m->len + 1);
  memmove(m->b + (i + 1) * m->es, m->b + i * m->es, (m->len - i) * m->es);
  memcpy(m->b + i * m->es, e, m->es);
  m->len++;
}

static void m_remove(model_t *m, uint64_t i) {
  memmove(m->b + i * m->es, m->b + (i + 1) * m->es, (m->len - i - 1) * m->es);
  m->len--;
}

static void fill_elem(void *e, size_t es, uint64_t v) {
  unsigned char *p = e;
  for (size_t i = 0; i < es; i++)
    p[i] = (unsigned char)((v >> ((i % 8) * 8)) ^ (i * 0x9d));
}

static void compare(shmd_store_t *s, shmd_ptr_t a, const model_t *m) {
  uint64_t len = 0;
  CHECK_OK(shmd_array_len(s, a, &len));
  cr_assert_eq(len, m->len, "length %llu, model %llu", (unsigned long long)len,
               (unsigned long long)m->len);
  unsigned char *buf = malloc(len * m->es + 1);
  CHECK_OK(shmd_array_get_range(s, a, 0, len, buf));
  cr_assert(len == 0 || memcmp(buf, m->b, len * m->es) == 0, "contents differ from the model");
  free(buf);
}

/* ---------------------------------------------------------------------------------------------- */

Test(array, edge_cases) {
  shmd_store_t *s = ts_open("a", 16u << 20, 16u << 20);
  shmd_ptr_t a, other = shmd_ptr_null();
  cr_assert_eq(shmd_array_create(s, 0, 0, &a), SHMD_EINVAL);
  cr_assert_eq(shmd_array_create(s, SHMD_ARRAY_ELEM_MAX + 1, 0, &a), SHMD_EINVAL);
  cr_assert_eq(shmd_array_create(s, 8, UINT64_C(1) << 46, &a), SHMD_ETOOBIG);
  CHECK_OK(shmd_array_create(s, 8, 0, &a));
  uint64_t v = 0, len = 99, cap = 99;
  size_t es = 0;
  CHECK_OK(shmd_array_len(s, a, &len));
  CHECK_OK(shmd_array_capacity(s, a, &cap));
  CHECK_OK(shmd_array_elem_size(s, a, &es));
  cr_assert(len == 0 && cap == 0 && es == 8);
  cr_assert_eq(shmd_array_pop(s, a, &v), SHMD_ENOTFOUND);
  cr_assert_eq(shmd_array_get(s, a, 0, &v), SHMD_ERANGE);
  cr_assert_eq(shmd_array_set(s, a, 0, &v), SHMD_ERANGE);
  cr_assert_eq(shmd_array_remove(s, a, 0, &v), SHMD_ERANGE);
  cr_assert_eq(shmd_array_insert(s, a, 1, &v), SHMD_ERANGE);
  cr_assert_eq(shmd_array_truncate(s, a, 1), SHMD_ERANGE);
  CHECK_OK(shmd_array_truncate(s, a, 0));
  CHECK_OK(shmd_array_get_range(s, a, 0, 0, &v));
  CHECK_OK(shmd_array_shrink_to_fit(s, a));
  CHECK_OK(shmd_array_check(s, a));
  for (v = 0; v < 100; v++)
    CHECK_OK(shmd_array_insert(s, a, v, &v)); /* index == length appends */
  CHECK_OK(shmd_array_capacity(s, a, &cap));
  cr_assert_geq(cap, 100);
  cr_assert_eq(shmd_array_get_range(s, a, 90, 11, &v), SHMD_ERANGE);
  cr_assert_eq(shmd_array_get_range(s, a, UINT64_MAX, 2, &v), SHMD_ERANGE);
  CHECK_OK(shmd_array_get(s, a, 99, &v));
  cr_assert_eq(v, 99);
  CHECK_OK(shmd_array_remove(s, a, 0, &v));
  cr_assert_eq(v, 0);
  CHECK_OK(shmd_array_get(s, a, 0, &v));
  cr_assert_eq(v, 1);
  CHECK_OK(shmd_array_pop(s, a, NULL));
  CHECK_OK(shmd_array_truncate(s, a, 10));
  CHECK_OK(shmd_array_shrink_to_fit(s, a));
  CHECK_OK(shmd_array_capacity(s, a, &cap));
  cr_assert_eq(cap, 10);
  CHECK_OK(shmd_array_reserve(s, a, 5)); /* smaller: no-op */
  CHECK_OK(shmd_array_reserve(s, a, 1000));
  CHECK_OK(shmd_array_capacity(s, a, &cap));
  cr_assert_eq(cap, 1000);
  cr_assert_eq(shmd_array_reserve(s, a, UINT64_C(1) << 60), SHMD_ETOOBIG);
  CHECK_OK(shmd_array_get(s, a, 9, &v));
  cr_assert_eq(v, 10);
  CHECK_OK(shmd_array_check(s, a));
  /* The wrong kind of container and garbage. */
  CHECK_OK(shmd_list_create(s, &other));
  cr_assert_eq(shmd_array_len(s, other, &len), SHMD_EINVAL);
  cr_assert_eq(shmd_array_check(s, other), SHMD_EINVAL);
  cr_assert_eq(shmd_array_len(s, shmd_ptr_null(), &len), SHMD_ECORRUPT);
  cr_assert_eq(shmd_array_len(s, shmd_ptr_make(0, 1ull << 40), &len), SHMD_ECORRUPT);
  /* Damaged header words are reported, not followed. */
  uint64_t *words = shmd_resolve(s, a); /* magic, lock, elem_bytes, length, capacity, data */
  uint64_t saved = words[3];
  words[3] = words[4] + 1; /* length > capacity */
  cr_assert_eq(shmd_array_check(s, a), SHMD_ECORRUPT);
  cr_assert_eq(shmd_array_get(s, a, 0, &v), SHMD_ECORRUPT);
  words[3] = saved;
  saved = words[5];
  words[5] = shmd_ptr_make(0, 1ull << 40).v; /* buffer outside the segment */
  cr_assert_eq(shmd_array_get(s, a, 0, &v), SHMD_ECORRUPT);
  words[5] = shmd_ptr_make(0, 4096 + 16).v; /* inside, but not an allocated block of that size */
  cr_assert_eq(shmd_array_check(s, a), SHMD_ECORRUPT);
  words[5] = saved;
  saved = words[0];
  words[0] = 0x1234;
  cr_assert_eq(shmd_array_len(s, a, &len), SHMD_ECORRUPT);
  words[0] = saved;
  CHECK_OK(shmd_array_check(s, a));
  CHECK_OK(shmd_array_destroy(s, a));
  cr_assert_eq(shmd_array_len(s, a, &len), SHMD_ECORRUPT, "destroyed array");
  CHECK_OK(shmd_list_destroy(s, other));
  CHECK_OK(shmd_alloc_check(s));
  shmd_close(s);
}

Test(array, odd_elem_sizes_and_big_elements) {
  shmd_store_t *s = ts_open("a", 32u << 20, 32u << 20);
  size_t sizes[] = {1, 3, 7, 9, 100, 4096};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t es = sizes[k];
    shmd_ptr_t a;
    CHECK_OK(shmd_array_create(s, es, 3, &a));
    model_t m;
    m_init(&m, es);
    unsigned char e[4096];
    for (uint64_t i = 0; i < 300; i++) {
      fill_elem(e, es, i * 7919);
      uint64_t at = (i * 31) % (m.len + 1);
      CHECK_OK(shmd_array_insert(s, a, at, e));
      m_insert(&m, at, e);
    }
    compare(s, a, &m);
    for (uint64_t i = 0; i < 150; i++) {
      uint64_t at = (i * 17) % m.len;
      CHECK_OK(shmd_array_remove(s, a, at, e));
      cr_assert(memcmp(e, m.b + at * es, es) == 0);
      m_remove(&m, at);
    }
    compare(s, a, &m);
    CHECK_OK(shmd_array_check(s, a));
    CHECK_OK(shmd_array_destroy(s, a));
    free(m.b);
  }
  CHECK_OK(shmd_alloc_check(s));
  shmd_stats_t st;
  CHECK_OK(shmd_stats(s, &st));
  cr_assert_eq(st.allocated_bytes, 0, "everything freed (%llu bytes left)",
               (unsigned long long)st.allocated_bytes);
  shmd_close(s);
}

/* Moves larger than the undo log go through a new buffer. */
Test(array, long_moves) {
  shmd_store_t *s = ts_open("a", 32u << 20, 32u << 20);
  shmd_ptr_t a;
  CHECK_OK(shmd_array_create(s, 64, 0, &a));
  model_t m;
  m_init(&m, 64);
  unsigned char e[64];
  for (uint64_t i = 0; i < 5000; i++) {
    fill_elem(e, 64, i);
    CHECK_OK(shmd_array_push(s, a, e));
    m_insert(&m, m.len, e);
  }
  CHECK_OK(shmd_array_reserve(s, a, 6000)); /* room, so the insert below is not a growth */
  for (int r = 0; r < 20; r++) {
    fill_elem(e, 64, 100000 + r);
    CHECK_OK(shmd_array_insert(s, a, (uint64_t)r, e));
    m_insert(&m, (uint64_t)r, e);
    CHECK_OK(shmd_array_remove(s, a, (uint64_t)r * 3, NULL));
    m_remove(&m, (uint64_t)r * 3);
  }
  compare(s, a, &m);
  CHECK_OK(shmd_array_check(s, a));
  /* The same inside a caller's transaction that then aborts: nothing of it stays. */
  shmd_tx_t *tx;
  CHECK_OK(shmd_tx_begin(s, &tx));
  fill_elem(e, 64, 424242);
  CHECK_OK(shmd_array_insert(s, a, 1, e));
  CHECK_OK(shmd_array_remove(s, a, 2, NULL));
  CHECK_OK(shmd_array_push(s, a, e));
  CHECK_OK(shmd_array_set(s, a, 0, e));
  shmd_tx_abort(tx);
  compare(s, a, &m);
  CHECK_OK(shmd_array_check(s, a));
  CHECK_OK(shmd_array_destroy(s, a));
  free(m.b);
  CHECK_OK(shmd_alloc_check(s));
  shmd_close(s);
}

/* Several operations in one caller transaction commit or roll back together; argument errors do
 * not poison the transaction. */
Test(array, nested_transactions) {
  shmd_store_t *s = ts_open("a", 16u << 20, 16u << 20);
  shmd_ptr_t a;
  shmd_tx_t *tx;
  CHECK_OK(shmd_tx_begin(s, &tx));
  CHECK_OK(shmd_array_create(s, 8, 0, &a));
  CHECK_OK(shmd_root_set(s, "arr", a));
  uint64_t v;
  for (v = 0; v < 10; v++)
    CHECK_OK(shmd_array_push(s, a, &v));
  cr_assert_eq(shmd_array_get(s, a, 10, &v), SHMD_ERANGE);
  CHECK_OK(shmd_tx_commit(tx));
  uint64_t len;
  CHECK_OK(shmd_array_len(s, a, &len));
  cr_assert_eq(len, 10);
  /* pop then push in one transaction, aborted: the popped slot must come back as it was */
  CHECK_OK(shmd_tx_begin(s, &tx));
  CHECK_OK(shmd_array_pop(s, a, NULL));
  CHECK_OK(shmd_array_truncate(s, a, 5));
  v = 777;
  CHECK_OK(shmd_array_push(s, a, &v));
  CHECK_OK(shmd_array_push(s, a, &v));
  shmd_tx_abort(tx);
  for (uint64_t i = 0; i < 10; i++) {
    CHECK_OK(shmd_array_get(s, a, i, &v));
    cr_assert_eq(v, i, "element %llu restored", (unsigned long long)i);
  }
  CHECK_OK(shmd_array_check(s, a));
  CHECK_OK(shmd_alloc_check(s));
  shmd_close(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* Property test */

static void property_run(long ops, int check_every, uint64_t seed) {
  shmd_store_t *s = ts_open("a", 32u << 20, 32u << 20);
  ts_rng_t r = {seed};
  size_t sizes[] = {1, 3, 8, 13, 64, 200};
  size_t es = sizes[ts_below(&r, 6)];
  uint64_t target = (seed & 1) ? 1500 : 100;
  shmd_ptr_t a;
  CHECK_OK(shmd_array_create(s, es, ts_below(&r, 4), &a));
  model_t m;
  m_init(&m, es);
  unsigned char e[256], got[256];
  uint64_t max_len = 0;
  for (long i = 0; i < ops; i++) {
    if (m.len > max_len)
      max_len = m.len;
    /* Now and then the step runs inside a transaction that is then aborted: whatever it did must
     * vanish (this catches any store that was not logged). */
    int wrap = ts_below(&r, 8) == 0;
    shmd_tx_t *wtx = NULL;
    model_t before = m;
    if (wrap) {
      CHECK_OK(shmd_tx_begin(s, &wtx));
      before.b = malloc(m.cap * es + 1);
      if (m.len)
        memcpy(before.b, m.b, m.len * es);
    }
    uint64_t op = ts_below(&r, 100), len = m.len;
    /* Runs alternate between short arrays and long ones (moves beyond the log's budget). */
    if (len > target && (op < 30 || (op >= 40 && op < 55)))
      op = 55 + op % 13; /* a remove instead of a push or an insert */
    else if (len < target && target > 200 && op >= 90 && op < 93)
      op = 0; /* a push instead of a truncation */
    fill_elem(e, es, ts_next(&r));
    int rc;
    if (op < 30) {
      CHECK_OK(shmd_array_push(s, a, e));
      m_insert(&m, len, e);
    } else if (op < 40) {
      rc = shmd_array_pop(s, a, got);
      if (len == 0)
        cr_assert_eq(rc, SHMD_ENOTFOUND);
      else {
        cr_assert_eq(rc, 0);
        cr_assert(memcmp(got, m.b + (len - 1) * es, es) == 0);
        m.len--;
      }
    } else if (op < 55) {
      uint64_t at = ts_below(&r, len + 2);
      rc = shmd_array_insert(s, a, at, e);
      if (at > len)
        cr_assert_eq(rc, SHMD_ERANGE);
      else {
        cr_assert_eq(rc, 0, "insert: %s", shmd_strerror(rc));
        m_insert(&m, at, e);
      }
    } else if (op < 68) {
      uint64_t at = ts_below(&r, len + 1);
      rc = shmd_array_remove(s, a, at, got);
      if (at >= len)
        cr_assert_eq(rc, SHMD_ERANGE);
      else {
        cr_assert_eq(rc, 0);
        cr_assert(memcmp(got, m.b + at * es, es) == 0);
        m_remove(&m, at);
      }
    } else if (op < 80) {
      uint64_t at = ts_below(&r, len + 1);
      rc = shmd_array_set(s, a, at, e);
      if (at >= len)
        cr_assert_eq(rc, SHMD_ERANGE);
      else {
        cr_assert_eq(rc, 0);
        memcpy(m.b + at * es, e, es);
      }
    } else if (op < 90) {
      uint64_t at = ts_below(&r, len + 1);
      rc = shmd_array_get(s, a, at, got);
      if (at >= len)
        cr_assert_eq(rc, SHMD_ERANGE);
      else {
        cr_assert_eq(rc, 0);
        cr_assert(memcmp(got, m.b + at * es, es) == 0);
      }
    } else if (op < 93) {
      uint64_t to = len - ts_below(&r, len / 4 + 2);
      if (to > len) /* wrapped: ask for more than the length */
        to = len + 1;
      rc = shmd_array_truncate(s, a, to);
      if (to > len)
        cr_assert_eq(rc, SHMD_ERANGE);
      else {
        cr_assert_eq(rc, 0);
        m.len = to;
      }
    } else if (op < 96) {
      CHECK_OK(shmd_array_reserve(s, a, len + ts_below(&r, 300)));
    } else if (op < 98) {
      CHECK_OK(shmd_array_shrink_to_fit(s, a));
      uint64_t cap;
      CHECK_OK(shmd_array_capacity(s, a, &cap));
      cr_assert_eq(cap, m.len);
    } else {
      /* a bunch in one transaction, committed or aborted */
      shmd_tx_t *tx;
      CHECK_OK(shmd_tx_begin(s, &tx));
      model_t saved = m;
      saved.b = malloc(m.cap * es + 1);
      if (m.len)
        memcpy(saved.b, m.b, m.len * es);
      for (int k = 0; k < 5; k++) {
        fill_elem(e, es, ts_next(&r));
        uint64_t at = ts_below(&r, m.len + 1);
        CHECK_OK(shmd_array_insert(s, a, at, e));
        m_insert(&m, at, e);
        if (m.len > 2) {
          at = ts_below(&r, m.len);
          CHECK_OK(shmd_array_remove(s, a, at, NULL));
          m_remove(&m, at);
        }
      }
      if (ts_below(&r, 2)) {
        CHECK_OK(shmd_tx_commit(tx));
        free(saved.b);
      } else {
        shmd_tx_abort(tx);
        free(m.b);
        m = saved;
      }
    }
    if (wrap) {
      shmd_tx_abort(wtx);
      free(m.b);
      m = before;
    }
    if (check_every || i % 97 == 0 || wrap) {
      compare(s, a, &m);
      CHECK_OK(shmd_array_check(s, a));
    }
    if (check_every && i % 16 == 0)
      CHECK_OK(shmd_alloc_check(s));
  }
  cr_log_info("%ld ops, longest %llu, final %llu", ops, (unsigned long long)max_len,
              (unsigned long long)m.len);
  compare(s, a, &m);
  CHECK_OK(shmd_array_check(s, a));
  CHECK_OK(shmd_array_destroy(s, a));
  CHECK_OK(shmd_alloc_check(s));
  free(m.b);
  shmd_close(s);
}

Test(array, property_random_ops) {
  uint64_t seed = ts_seed("array.property");
  long ops = env_long("SHMDICT_TEST_OPS", 100000);
  for (int run = 0; run < 6; run++)
    property_run(ops / 6, 0, seed + (uint64_t)run);
}

Test(array, property_checked_every_step) {
  uint64_t seed = ts_seed("array.property_checked");
  long ops = env_long("SHMDICT_TEST_OPS", 100000) / 10;
  for (int run = 0; run < 3; run++)
    property_run(ops / 3, 1, seed + (uint64_t)run);
}

/* ---------------------------------------------------------------------------------------------- */
/* Crash tests */

enum { OP_PUSH, OP_POP, OP_INSERT, OP_REMOVE, OP_SET, OP_TRUNCATE, OP_RESERVE, OP_SHRINK, OP_N };

#define CRASH_ES 64

typedef struct {
  uint32_t kind; /* 1 = intent, 2 = done */
  uint32_t op;
  uint64_t idx;
  uint64_t val;
  int32_t rc;
  uint32_t pad;
} rec_t;

/* Applies an operation to the model; returns the status the array must have returned. */
static int m_apply(model_t *m, const rec_t *r) {
  unsigned char e[CRASH_ES];
  fill_elem(e, CRASH_ES, r->val);
  switch (r->op) {
  case OP_PUSH:
    m_insert(m, m->len, e);
    return 0;
  case OP_POP:
    if (m->len == 0)
      return SHMD_ENOTFOUND;
    m->len--;
    return 0;
  case OP_INSERT:
    if (r->idx > m->len)
      return SHMD_ERANGE;
    m_insert(m, r->idx, e);
    return 0;
  case OP_REMOVE:
    if (r->idx >= m->len)
      return SHMD_ERANGE;
    m_remove(m, r->idx);
    return 0;
  case OP_SET:
    if (r->idx >= m->len)
      return SHMD_ERANGE;
    memcpy(m->b + r->idx * CRASH_ES, e, CRASH_ES);
    return 0;
  case OP_TRUNCATE:
    if (r->idx > m->len)
      return SHMD_ERANGE;
    m->len = r->idx;
    return 0;
  default:
    return 0;
  }
}

/* The child: random operations on root "arr", each announced (intent) and confirmed (done). */
static int crash_child(ts_crash_child_t *cc) {
  int ops = *(const int *)cc->arg;
  uint64_t seed = cc->seed;
  shmd_store_t *s = cc->s;
  shmd_ptr_t a;
  if (shmd_root_get(s, "arr", &a))
    _exit(2);
  ts_rng_t r = {seed};
  uint64_t len;
  if (shmd_array_len(s, a, &len))
    _exit(2);
  for (int i = 0; i < ops; i++) {
    rec_t rec = {1, 0, 0, ts_next(&r), 0, 0};
    uint64_t p = ts_below(&r, 100);
    /* biased towards growth so the array gets long enough for the copy path of moves */
    rec.op = p < 30 ? OP_PUSH : p < 38 ? OP_POP : p < 58 ? OP_INSERT : p < 75 ? OP_REMOVE
           : p < 88 ? OP_SET : p < 91 ? OP_TRUNCATE : p < 96 ? OP_RESERVE : OP_SHRINK;
    rec.idx = ts_below(&r, len + 2);
    if (rec.op == OP_TRUNCATE)
      rec.idx = len - ts_below(&r, len / 8 + 1);
    if (rec.op == OP_RESERVE)
      rec.idx = len + ts_below(&r, 2000);
    ts_crash_report(cc, &rec);
    unsigned char e[CRASH_ES];
    fill_elem(e, CRASH_ES, rec.val);
    int rc = 0;
    switch (rec.op) {
    case OP_PUSH: rc = shmd_array_push(s, a, e); break;
    case OP_POP: rc = shmd_array_pop(s, a, NULL); break;
    case OP_INSERT: rc = shmd_array_insert(s, a, rec.idx, e); break;
    case OP_REMOVE: rc = shmd_array_remove(s, a, rec.idx, NULL); break;
    case OP_SET: rc = shmd_array_set(s, a, rec.idx, e); break;
    case OP_TRUNCATE: rc = shmd_array_truncate(s, a, rec.idx); break;
    case OP_RESERVE: rc = shmd_array_reserve(s, a, rec.idx); break;
    case OP_SHRINK: rc = shmd_array_shrink_to_fit(s, a); break;
    }
    rec.kind = 2;
    rec.rc = rc;
    ts_crash_report(cc, &rec);
    if (shmd_array_len(s, a, &len))
      _exit(4);
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
    cr_assert_eq(rec->rc, want, "%s: op %u returned %d, model says %d", ts_crash_where(), rec->op, rec->rc, want);
    f->have_pending = 0;
  }
}

static int model_matches(shmd_store_t *s, shmd_ptr_t a, const model_t *m) {
  uint64_t len;
  if (shmd_array_len(s, a, &len) || len != m->len)
    return 0;
  unsigned char *buf = malloc(len * CRASH_ES + 1);
  int ok = shmd_array_get_range(s, a, 0, len, buf) == 0 &&
           (len == 0 || memcmp(buf, m->b, len * CRASH_ES) == 0);
  free(buf);
  return ok;
}

static void crash_rounds(int rounds, int use_points) {
  ts_crash_t t;
  ts_crash_begin(&t, use_points ? "array.crash_points" : "array.crash_random");
  ts_rng_t *r = &t.rng;
  shmd_store_t *s = ts_open("crash", 32u << 20, 32u << 20);
  shmd_ptr_t a;
  CHECK_OK(shmd_array_create(s, CRASH_ES, 0, &a));
  CHECK_OK(shmd_root_set(s, "arr", a));
  shmd_close(s);
  model_t m;
  m_init(&m, CRASH_ES);
  const char *points[] = {"array.grow.copied", "array.grow.switch", "array.move"};
  int killed = 0, kills_at_point = 0;
  for (int round = 0; round < rounds; round++) {
    char point[64];
    const char *cp = NULL;
    if (use_points) {
      snprintf(point, sizeof point, "%s:%d", points[round % 3], 1 + (int)ts_below(r, 8));
      cp = point;
    }
    /* Read the records as they come; for random kills, SIGKILL the child 1 to 41 ms after its
     * fork. */
    int ops = use_points ? 400 : 100000;
    follow_t f = {&m, {0}, 0};
    ts_crash_spec_t sp = {.what = "the array writer", .fn = crash_child, .arg = &ops, .seed = ts_next(r),
                          .store = "crash", .opts = ts_opts(32u << 20, 32u << 20), .point = cp,
                          .rec_size = sizeof(rec_t), .on_rec = follow, .rec_arg = &f};
    if (!use_points)
      sp.kill_lo_us = 1000, sp.kill_hi_us = 1000 + 40000 - 1;
    ts_crash_res_t res;
    ts_crash_run(&t, &sp, &res); /* exit 0 or killed */
    killed += res.killed;
    kills_at_point += use_points && res.killed;
    rec_t pending = f.pending;
    int have_pending = f.have_pending;
    s = ts_crash_open("crash", 32u << 20, 32u << 20);
    ts_crash_check(s, TS_CHECK_ALLOC, "array:arr");
    if (!model_matches(s, a, &m)) {
      cr_assert(have_pending, "%s: array differs from every reported operation", ts_crash_where());
      model_t alt = m;
      alt.b = malloc(m.cap * CRASH_ES + CRASH_ES * 2);
      alt.cap = m.cap + 2;
      memcpy(alt.b, m.b, m.len * CRASH_ES);
      m_apply(&alt, &pending);
      cr_assert(model_matches(s, a, &alt), "%s: array is neither before nor after the killed op", ts_crash_where());
      free(m.b);
      m = alt;
    }
    shmd_close(s);
  }
  ts_crash_end(&t);
  /* Nothing leaked across all the kills: once the container is destroyed the store is empty. */
  s = ts_open("crash", 64u << 20, 64u << 20);
  CHECK_OK(shmd_array_destroy(s, a));
  CHECK_OK(shmd_alloc_check(s));
  shmd_stats_t st;
  CHECK_OK(shmd_stats(s, &st));
  cr_assert_eq(st.allocated_bytes, 0, "%llu bytes leaked", (unsigned long long)st.allocated_bytes);
  shmd_close(s);
  cr_log_info("array crash: %d rounds, %d killed (%d at crash points), final length %llu", rounds,
              killed, kills_at_point, (unsigned long long)m.len);
  free(m.b);
}

Test(array, crash_random_kills) { crash_rounds((int)env_long("SHMDICT_TEST_KILLS", 200), 0); }

Test(array, crash_at_points) { crash_rounds((int)env_long("SHMDICT_TEST_KILLS", 200) / 2, 1); }
