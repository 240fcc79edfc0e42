/* SPDX-License-Identifier: MIT */
/*
 * The tests of a keyed ordered map, written once and run against both: the red-black tree map
 * (tests/test_rbtree.c, shmd_rbtree_*) and the counted B+tree (tests/test_btree.c, shmd_btree_*),
 * which promise the same operations and semantics. A suite includes this file once, after
 * support.h and its map's header, with a tiny adapter of macros naming its map:
 *
 *   OM(x)                 shmd_<map>_x: OM(put), OM(item_t), OM(dkey) ...
 *   OMK(X)                SHMD_<MAP>_X: OMK(BYTES), OMK(UPSERT), OMK(GE) ...
 *   OM_SUITE, OM_NAME     the Criterion suite and the container kind of ts_crash_check ("rbtree")
 *   OM_ENV                the prefix of the suite's knobs: OM_ENV "_STEPS" scales the property tests
 *   OM_KEYS_NEAR_INLINE   1: random keys also around the B+tree's 16- and 24-byte key limits
 *   OM_OOL_KEY_LENS, OM_OOL_VAL_LENS   the key lengths and the ten value lengths of
 *                         inline_and_out_of_line, on both sides of the map's inline limits
 *   OM_CRASH_TIMEOUT      the Criterion timeout of crash_random_kills and crash_points
 *   OM_CRASH_POINTS       {{"point", upto}, ...}: crash_points arms each at its 1st .. upto-th firing
 *   OM_DESTROY_POINT, OM_DESTROY_FIRST, OM_DESTROY_SPAN   crash_destroy's point, armed at firing
 *                         FIRST + [0, SPAN)
 *
 * and defines, after the include, om_crash_rounds() (the rounds of crash_random_kills; twice as many
 * for crash_points) and om_damage_checks(s, t) (the layout-specific corruptions of
 * wrong_kind_and_garbage, on a BYTES tree of the 100 keys k000 .. k099; check must report each).
 * The tests: property tests against a sorted-array model for every ordering (put / delete / get /
 * rank / count_below / seek / select / next / prev / walks, the checker throughout), the orderings
 * with NaN and lengths, rank / select / walks on a big tree, inline and out-of-line storage, the
 * caller's transaction, destroy in pieces, kinds and damage, two writer processes (mp_), and
 * SIGKILLed writers (crash_) at random moments, at the map's crash points and inside destroy, all
 * through the crash harness (support_crash.h).
 */
#ifndef SHMD_TESTS_OMAP_TESTS_H
#define SHMD_TESTS_OMAP_TESTS_H

#define MIB (UINT64_C(1) << 20)

static long knob(const char *name, long dflt) {
  const char *e = getenv(name);
  return e ? strtol(e, NULL, 0) : dflt;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Defined by the suite after this file (see above). */
static long om_crash_rounds(void);
static void om_damage_checks(shmd_store_t *s, shmd_ptr_t t);

/* ============================================================================================== */
/* The keyed map: model                                                                           */
/* ============================================================================================== */

/* A sorted array of (key, value) with the same orderings, written independently of the tree. */
typedef struct mkv_s {
  unsigned char *k, *v;
  size_t kl, vl;
} mkv_t;

typedef struct model_s {
  int order;
  mkv_t *a;
  size_t n, cap;
} model_t;

static int model_cmp(int order, const unsigned char *a, size_t al, const unsigned char *b,
                     size_t bl) {
  size_t off = 0;
  if (order == OMK(I64)) {
    int64_t x, y;
    memcpy(&x, a, 8);
    memcpy(&y, b, 8);
    return (x > y) - (x < y);
  }
  if (order == OMK(DOUBLE) || order == OMK(DOUBLE_BYTES)) {
    double x, y;
    memcpy(&x, a, 8);
    memcpy(&y, b, 8);
    if (x < y)
      return -1;
    if (x > y)
      return 1;
    if (order == OMK(DOUBLE))
      return 0;
    off = 8;
  }
  size_t m = al - off < bl - off ? al - off : bl - off;
  int c = m ? memcmp(a + off, b + off, m) : 0;
  if (c)
    return c < 0 ? -1 : 1;
  return (al > bl) - (al < bl);
}

/* Normalises -0.0 to +0.0 in a numeric key, as the tree stores it. */
static void model_norm(int order, unsigned char *k, size_t kl) {
  if ((order == OMK(DOUBLE) || order == OMK(DOUBLE_BYTES)) && kl >= 8) {
    double d;
    memcpy(&d, k, 8);
    if (d == 0) {
      d = 0.0;
      memcpy(k, &d, 8);
    }
  }
}

/* Lower bound: first index whose key >= k; *found if equal. */
static size_t model_lb(const model_t *m, const unsigned char *k, size_t kl, int *found) {
  size_t lo = 0, hi = m->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (model_cmp(m->order, m->a[mid].k, m->a[mid].kl, k, kl) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *found = lo < m->n && model_cmp(m->order, m->a[lo].k, m->a[lo].kl, k, kl) == 0;
  return lo;
}

static void model_put(model_t *m, const unsigned char *k, size_t kl, const void *v, size_t vl) {
  int found;
  size_t pos = model_lb(m, k, kl, &found);
  if (found) {
    free(m->a[pos].v);
  } else {
    if (m->n == m->cap) {
      m->cap = m->cap ? 2 * m->cap : 64;
      m->a = realloc(m->a, m->cap * sizeof *m->a);
    }
    memmove(m->a + pos + 1, m->a + pos, (m->n - pos) * sizeof *m->a);
    m->n++;
    m->a[pos].k = malloc(kl + 1);
    memcpy(m->a[pos].k, k, kl);
    m->a[pos].kl = kl;
  }
  m->a[pos].v = malloc(vl + 1);
  if (vl)
    memcpy(m->a[pos].v, v, vl);
  m->a[pos].vl = vl;
}

static void model_del(model_t *m, const unsigned char *k, size_t kl) {
  int found;
  size_t pos = model_lb(m, k, kl, &found);
  if (!found)
    return;
  free(m->a[pos].k);
  free(m->a[pos].v);
  memmove(m->a + pos, m->a + pos + 1, (m->n - pos - 1) * sizeof *m->a);
  m->n--;
}

static void model_free(model_t *m) {
  for (size_t i = 0; i < m->n; i++) {
    free(m->a[i].k);
    free(m->a[i].v);
  }
  free(m->a);
  memset(m, 0, sizeof *m);
}

/* Compares the whole tree with the model through walk_rank batches (forward) and one reverse
 * batch. */
typedef struct cmp_walk_s {
  const model_t *m;
  uint64_t next;
  int reverse;
  int bad;
} cmp_walk_t;

static int cmp_visit(const void *k, size_t kl, const void *v, size_t vl, uint64_t rank,
                     void *arg) {
  cmp_walk_t *w = arg;
  if (rank != w->next || rank >= w->m->n) {
    w->bad = 1;
    return 1;
  }
  const mkv_t *e = &w->m->a[rank];
  if (kl != e->kl || memcmp(k, e->k, kl) != 0 || vl != e->vl || (vl && memcmp(v, e->v, vl) != 0)) {
    w->bad = 2;
    return 1;
  }
  w->next = w->reverse ? rank - 1 : rank + 1;
  return 0;
}

static void compare_tree(shmd_store_t *s, shmd_ptr_t t, const model_t *m, size_t batch) {
  uint64_t n;
  cr_assert_eq(OM(len)(s, t, &n), 0);
  cr_assert_eq(n, m->n);
  cmp_walk_t w = {m, 0, 0, 0};
  uint64_t start = 0;
  for (;;) {
    size_t visited;
    int rc = OM(walk_rank)(s, t, start, batch, 0, cmp_visit, &w, &visited);
    cr_assert_eq(rc, 0, "walk_rank at %llu: rc %d bad %d", (unsigned long long)start, rc, w.bad);
    if (visited == 0)
      break;
    start += visited;
  }
  cr_assert_eq(start, m->n);
  if (m->n) {
    cmp_walk_t r = {m, m->n - 1, 1, 0};
    size_t visited;
    cr_assert_eq(OM(walk_rank)(s, t, m->n - 1, SIZE_MAX, 1, cmp_visit, &r, &visited), 0);
    cr_assert_eq(visited, m->n);
  }
}

static void tree_check(shmd_store_t *s, shmd_ptr_t t) {
  int rc = OM(check)(s, t);
  cr_assert_eq(rc, 0, "OM(check): %s (%s)", shmd_strerror(rc), shmd_errdetail());
}

static void alloc_check(shmd_store_t *s) {
  int rc = shmd_alloc_check(s);
  cr_assert_eq(rc, 0, "shmd_alloc_check: %s (%s)", shmd_strerror(rc), shmd_errdetail());
}

/* Random keys for an ordering from a smallish universe (so that hits, misses and deletes mix);
 * about 1 in 40 byte keys is long (stored out of line). */
static size_t gen_key(ts_rng_t *r, int order, unsigned char *b, unsigned spread) {
  if (order == OMK(I64)) {
    int64_t x = (int64_t)ts_below(r, spread) - (int64_t)spread / 2;
    unsigned z = (unsigned)ts_below(r, 100);
    if (z == 0)
      x = INT64_MIN;
    else if (z == 1)
      x = INT64_MAX;
    memcpy(b, &x, 8);
    return 8;
  }
  size_t off = 0;
  if (order == OMK(DOUBLE) || order == OMK(DOUBLE_BYTES)) {
    double d = ((double)ts_below(r, spread / 4 + 1) - (double)(spread / 8)) / 4;
    switch (ts_below(r, 40)) {
    case 0: d = INFINITY; break;
    case 1: d = -INFINITY; break;
    case 2: d = -0.0; break;
    case 3: d = 5e-324; break;
    case 4: d = -1e308; break;
    default: break;
    }
    memcpy(b, &d, 8);
    if (order == OMK(DOUBLE))
      return 8;
    off = 8;
  }
  size_t l = ts_below(r, 5);
  unsigned z = (unsigned)ts_below(r, 40);
  if (z == 0)
    l = 250 + ts_below(r, 300);
  else if (OM_KEYS_NEAR_INLINE && z < 5)
    l = 10 + ts_below(r, 24); /* around the inline (24) and prefix (16) limits of the B+tree */
  for (size_t i = 0; i < l; i++)
    b[off + i] = (unsigned char)(i < 4 ? 'a' + ts_below(r, order == OMK(BYTES) ? 4 : 2) : i);
  return off + l;
}

static size_t gen_val(ts_rng_t *r, unsigned char *v) {
  size_t vl = ts_below(r, 24);
  unsigned z = (unsigned)ts_below(r, 12);
  if (z == 0)
    vl = 200 + ts_below(r, 120); /* around the inline limit */
  else if (z == 1)
    vl = 1000 + ts_below(r, 3000);
  for (size_t i = 0; i < vl; i++)
    v[i] = (unsigned char)ts_next(r);
  return vl;
}

/* One random operation on both the tree and the model, results compared. */
static void random_op(shmd_store_t *s, shmd_ptr_t t, model_t *m, ts_rng_t *r, unsigned spread) {
  static unsigned char k[1024], nk[1024], v[8192], vb[8192], kb[1024];
  size_t kl = gen_key(r, m->order, k, spread);
  memcpy(nk, k, kl);
  model_norm(m->order, nk, kl);
  int present;
  size_t pos = model_lb(m, nk, kl, &present);
  unsigned op = (unsigned)ts_below(r, 16);
  int rc;
  if (op < 6) {
    size_t vl = gen_val(r, v);
    int mode = (int)ts_below(r, 4) == 0 ? (int)ts_below(r, 3) : OMK(UPSERT), ins = -1;
    rc = OM(put)(s, t, k, kl, v, vl, mode, &ins);
    if (mode == OMK(NX) && present) {
      cr_assert_eq(rc, SHMD_EEXIST);
    } else if (mode == OMK(XX) && !present) {
      cr_assert_eq(rc, SHMD_ENOTFOUND);
    } else {
      cr_assert_eq(rc, 0, "put: %s (%s)", shmd_strerror(rc), shmd_errdetail());
      cr_assert_eq(ins, !present);
      model_put(m, nk, kl, v, vl);
    }
  } else if (op < 10) {
    rc = OM(delete)(s, t, k, kl);
    cr_assert_eq(rc, present ? 0 : SHMD_ENOTFOUND);
    model_del(m, nk, kl);
  } else if (op < 12) {
    size_t gl = 12345;
    rc = OM(get)(s, t, k, kl, vb, sizeof vb, &gl);
    cr_assert_eq(rc, present ? 0 : SHMD_ENOTFOUND);
    if (present) {
      cr_assert_eq(gl, m->a[pos].vl);
      cr_assert(gl == 0 || memcmp(vb, m->a[pos].v, gl) == 0);
    }
    uint64_t rk;
    rc = OM(rank)(s, t, k, kl, &rk);
    cr_assert_eq(rc, present ? 0 : SHMD_ENOTFOUND);
    if (present)
      cr_assert_eq(rk, pos);
    uint64_t c0, c1;
    cr_assert_eq(OM(count_below)(s, t, k, kl, 0, &c0), 0);
    cr_assert_eq(OM(count_below)(s, t, k, kl, 1, &c1), 0);
    cr_assert_eq(c0, pos);
    cr_assert_eq(c1, pos + present);
  } else if (op < 14) {
    int how = (int)ts_below(r, 4);
    OM(item_t) it = {kb, sizeof kb, 0, vb, sizeof vb, 0, 0};
    rc = OM(seek)(s, t, k, kl, (OM(seek_t))how, &it);
    long want;
    switch (how) {
    case OMK(GE): want = (long)pos; break;
    case OMK(GT): want = (long)pos + present; break;
    case OMK(LE): want = (long)pos + present - 1; break;
    default: want = (long)pos - 1; break;
    }
    if (want < 0 || want >= (long)m->n) {
      cr_assert_eq(rc, SHMD_ENOTFOUND, "seek %d: rc %d", how, rc);
    } else {
      cr_assert_eq(rc, 0, "seek %d: %s", how, shmd_strerror(rc));
      const mkv_t *e = &m->a[want];
      cr_assert_eq(it.rank, (uint64_t)want);
      cr_assert_eq(it.key_len, e->kl);
      cr_assert_eq(memcmp(kb, e->k, e->kl), 0);
      cr_assert_eq(it.val_len, e->vl);
      cr_assert(e->vl == 0 || memcmp(vb, e->v, e->vl) == 0);
    }
  } else {
    /* select and next / prev by key from a random rank */
    if (m->n == 0) {
      cr_assert_eq(OM(first)(s, t, NULL), SHMD_ENOTFOUND);
      cr_assert_eq(OM(select)(s, t, 0, NULL), SHMD_ENOTFOUND);
      return;
    }
    uint64_t i = ts_below(r, m->n);
    OM(item_t) it = {kb, sizeof kb, 0, NULL, 0, 0, 0};
    cr_assert_eq(OM(select)(s, t, i, &it), 0);
    cr_assert_eq(it.key_len, m->a[i].kl);
    cr_assert_eq(memcmp(kb, m->a[i].k, it.key_len), 0);
    cr_assert_eq(it.val_len, m->a[i].vl);
    unsigned char cur[1024];
    size_t cl = it.key_len;
    memcpy(cur, kb, cl);
    rc = OM(next)(s, t, cur, cl, &it);
    if (i + 1 < m->n) {
      cr_assert_eq(rc, 0);
      cr_assert_eq(it.rank, i + 1);
      cr_assert_eq(memcmp(kb, m->a[i + 1].k, m->a[i + 1].kl), 0);
    } else {
      cr_assert_eq(rc, SHMD_ENOTFOUND);
    }
    rc = OM(prev)(s, t, cur, cl, &it);
    if (i > 0) {
      cr_assert_eq(rc, 0);
      cr_assert_eq(it.rank, i - 1);
      cr_assert_eq(memcmp(kb, m->a[i - 1].k, m->a[i - 1].kl), 0);
    } else {
      cr_assert_eq(rc, SHMD_ENOTFOUND);
    }
    cr_assert_eq(OM(first)(s, t, &it), 0);
    cr_assert_eq(it.rank, 0);
    cr_assert_eq(memcmp(kb, m->a[0].k, m->a[0].kl), 0);
    cr_assert_eq(OM(last)(s, t, &it), 0);
    cr_assert_eq(it.rank, m->n - 1);
    cr_assert_eq(memcmp(kb, m->a[m->n - 1].k, m->a[m->n - 1].kl), 0);
  }
}

/* A property run: `steps` random operations, compared after every step; check every
 * `check_every` steps (1: every step, with shmd_alloc_check too). */
static void property_run(int order, long steps, long check_every, unsigned spread,
                         const char *what) {
  shmd_store_t *s = ts_open("prop", 32 * MIB, 32 * MIB);
  ts_rng_t rng = {ts_seed(what)};
  shmd_ptr_t t;
  cr_assert_eq(OM(create)(s, (OM(order_t))order, &t), 0);
  shmd_stats_t st0, st1;
  model_t m = {order, NULL, 0, 0};
  for (long step = 0; step < steps; step++) {
    random_op(s, t, &m, &rng, spread);
    uint64_t n;
    cr_assert_eq(OM(len)(s, t, &n), 0);
    cr_assert_eq(n, m.n, "step %ld", step);
    if (step % check_every == 0) {
      tree_check(s, t);
      compare_tree(s, t, &m, 1 + ts_below(&rng, 50));
      if (check_every == 1 && step % 10 == 0)
        alloc_check(s);
    }
  }
  tree_check(s, t);
  compare_tree(s, t, &m, 100);
  cr_log_info("%s: %ld steps, final size %zu", what, steps, m.n);
  model_free(&m);
  /* Everything the tree owned is freed by destroy. */
  cr_assert_eq(shmd_stats(s, &st0), 0);
  cr_assert_eq(OM(destroy)(s, t), 0);
  cr_assert_eq(shmd_stats(s, &st1), 0);
  cr_assert_lt(st1.allocated_bytes, st0.allocated_bytes);
  alloc_check(s);
  shmd_close(s);
}

Test(OM_SUITE, property_bytes, .init = ts_init, .fini = ts_fini, .timeout = 120) {
  property_run(OMK(BYTES), knob(OM_ENV "_STEPS", 30000), 50, 0, "property_bytes");
}
Test(OM_SUITE, property_i64, .init = ts_init, .fini = ts_fini, .timeout = 120) {
  property_run(OMK(I64), knob(OM_ENV "_STEPS", 30000), 50, 1200, "property_i64");
}
Test(OM_SUITE, property_double, .init = ts_init, .fini = ts_fini, .timeout = 120) {
  property_run(OMK(DOUBLE), knob(OM_ENV "_STEPS", 30000), 50, 1600, "property_double");
}
Test(OM_SUITE, property_double_bytes, .init = ts_init, .fini = ts_fini, .timeout = 120) {
  property_run(OMK(DOUBLE_BYTES), knob(OM_ENV "_STEPS", 30000), 50, 40,
               "property_double_bytes");
}
Test(OM_SUITE, property_check_every_step, .init = ts_init, .fini = ts_fini, .timeout = 120) {
  long steps = knob(OM_ENV "_STEPS", 30000) / 10;
  property_run(OMK(BYTES), steps, 1, 0, "check_every_step bytes");
}
Test(OM_SUITE, property_check_every_step_double_bytes, .init = ts_init, .fini = ts_fini,
     .timeout = 120) {
  long steps = knob(OM_ENV "_STEPS", 30000) / 10;
  property_run(OMK(DOUBLE_BYTES), steps, 1, 24, "check_every_step double_bytes");
}

/* ============================================================================================== */
/* The keyed map: orderings, NaN, lengths                                                         */
/* ============================================================================================== */

typedef struct collect_s {
  unsigned char keys[64][64];
  size_t lens[64];
  size_t n;
} collect_t;

static int collect_visit(const void *k, size_t kl, const void *v, size_t vl, uint64_t rank,
                         void *arg) {
  (void)v;
  (void)vl;
  collect_t *c = arg;
  if (c->n >= 64 || kl > 64 || rank != c->n)
    return 99;
  memcpy(c->keys[c->n], k, kl);
  c->lens[c->n++] = kl;
  return 0;
}

static void collect(shmd_store_t *s, shmd_ptr_t t, collect_t *c) {
  memset(c, 0, sizeof *c);
  size_t visited;
  cr_assert_eq(OM(walk_rank)(s, t, 0, 64, 0, collect_visit, c, &visited), 0);
  cr_assert_eq(visited, c->n);
}

Test(OM_SUITE, ordering_bytes, .init = ts_init, .fini = ts_fini) {
  shmd_store_t *s = ts_open("ob", 16 * MIB, 16 * MIB);
  shmd_ptr_t t;
  cr_assert_eq(OM(create)(s, OMK(BYTES), &t), 0);
  const char *in[] = {"b", "ab", "a", "", "\xff", "a\x00", "abc", "B"};
  size_t inl[] = {1, 2, 1, 0, 1, 2, 3, 1};
  for (int i = 0; i < 8; i++)
    cr_assert_eq(OM(put)(s, t, in[i], inl[i], "v", 1, OMK(NX), NULL), 0);
  const char *want[] = {"", "B", "a", "a\x00", "ab", "abc", "b", "\xff"};
  size_t wantl[] = {0, 1, 1, 2, 2, 3, 1, 1};
  collect_t c;
  collect(s, t, &c);
  cr_assert_eq(c.n, 8);
  for (int i = 0; i < 8; i++) {
    cr_assert_eq(c.lens[i], wantl[i]);
    cr_assert_eq(memcmp(c.keys[i], want[i], wantl[i]), 0, "position %d", i);
  }
  cr_assert_eq(OM(put)(s, t, "a", 1, "w", 1, OMK(NX), NULL), SHMD_EEXIST);
  cr_assert_eq(OM(put)(s, t, "zz", 2, "w", 1, OMK(XX), NULL), SHMD_ENOTFOUND);
  cr_assert_eq(OM(put)(s, t, NULL, 1, "w", 1, 0, NULL), SHMD_EINVAL);
  cr_assert_eq(OM(put)(s, t, "a", 1, "w", 1, 7, NULL), SHMD_EINVAL);
  cr_assert_eq(OM(put)(s, t, "a", 1, NULL, 3, 0, NULL), SHMD_EINVAL);
  cr_assert_eq(OM(put)(s, t, "a", 1, "w", (size_t)OMK(LEN_MAX) + 1, 0, NULL),
               SHMD_ETOOBIG);
  /* The empty key and an empty value. */
  cr_assert_eq(OM(put)(s, t, "", 0, NULL, 0, OMK(XX), NULL), 0);
  size_t vl = 9;
  cr_assert_eq(OM(get)(s, t, "", 0, NULL, 0, &vl), 0);
  cr_assert_eq(vl, 0);
  /* Truncated copies report the full length. */
  cr_assert_eq(OM(put)(s, t, "abc", 3, "0123456789", 10, 0, NULL), 0);
  char buf[4];
  cr_assert_eq(OM(get)(s, t, "abc", 3, buf, 4, &vl), 0);
  cr_assert_eq(vl, 10);
  cr_assert_eq(memcmp(buf, "0123", 4), 0);
  OM(order_t) o;
  cr_assert_eq(OM(order)(s, t, &o), 0);
  cr_assert_eq(o, OMK(BYTES));
  tree_check(s, t);
  cr_assert_eq(OM(destroy)(s, t), 0);
  shmd_close(s);
}

Test(OM_SUITE, ordering_i64, .init = ts_init, .fini = ts_fini) {
  shmd_store_t *s = ts_open("oi", 16 * MIB, 16 * MIB);
  shmd_ptr_t t;
  cr_assert_eq(OM(create)(s, OMK(I64), &t), 0);
  int64_t in[] = {5, -1, INT64_MAX, 0, INT64_MIN, -300, 256, -256, 1};
  int64_t want[] = {INT64_MIN, -300, -256, -1, 0, 1, 5, 256, INT64_MAX};
  for (int i = 0; i < 9; i++)
    cr_assert_eq(OM(put)(s, t, &in[i], 8, &i, sizeof i, 0, NULL), 0);
  collect_t c;
  collect(s, t, &c);
  cr_assert_eq(c.n, 9);
  for (int i = 0; i < 9; i++) {
    int64_t k;
    memcpy(&k, c.keys[i], 8);
    cr_assert_eq(k, want[i]);
  }
  int32_t four = 4;
  cr_assert_eq(OM(put)(s, t, &four, 4, "x", 1, 0, NULL), SHMD_EINVAL);
  cr_assert_eq(OM(get)(s, t, "123456789", 9, NULL, 0, NULL), SHMD_EINVAL);
  int64_t q = 2;
  uint64_t n;
  cr_assert_eq(OM(count_below)(s, t, &q, 8, 0, &n), 0);
  cr_assert_eq(n, 6);
  tree_check(s, t);
  cr_assert_eq(OM(destroy)(s, t), 0);
  shmd_close(s);
}

static size_t dk(double d, const char *m, unsigned char *buf) {
  return OM(dkey)(d, m, strlen(m), buf);
}

Test(OM_SUITE, ordering_double_and_nan, .init = ts_init, .fini = ts_fini) {
  shmd_store_t *s = ts_open("od", 16 * MIB, 16 * MIB);
  shmd_ptr_t t;
  cr_assert_eq(OM(create)(s, OMK(DOUBLE), &t), 0);
  double in[] = {1.5, -INFINITY, -0.0, 5e-324, INFINITY, -1e308, -2.5, 1e308};
  double want[] = {-INFINITY, -1e308, -2.5, 0.0, 5e-324, 1.5, 1e308, INFINITY};
  for (int i = 0; i < 8; i++)
    cr_assert_eq(OM(put)(s, t, &in[i], 8, "v", 1, OMK(NX), NULL), 0);
  /* -0.0 and +0.0 are one key, stored as +0.0. */
  double pz = 0.0, nz = -0.0;
  cr_assert_eq(OM(put)(s, t, &pz, 8, "z", 1, OMK(NX), NULL), SHMD_EEXIST);
  cr_assert_eq(OM(get)(s, t, &pz, 8, NULL, 0, NULL), 0);
  cr_assert_eq(OM(get)(s, t, &nz, 8, NULL, 0, NULL), 0);
  collect_t c;
  collect(s, t, &c);
  cr_assert_eq(c.n, 8);
  for (int i = 0; i < 8; i++) {
    double d;
    memcpy(&d, c.keys[i], 8);
    cr_assert_eq(memcmp(&d, &want[i], 8), 0, "position %d: %g", i, d);
  }
  /* NaN is rejected everywhere a key is taken. */
  double nan = NAN;
  OM(item_t) it = {0};
  uint64_t u;
  cr_assert_eq(OM(put)(s, t, &nan, 8, "v", 1, 0, NULL), SHMD_EINVAL);
  cr_assert_eq(OM(get)(s, t, &nan, 8, NULL, 0, NULL), SHMD_EINVAL);
  cr_assert_eq(OM(delete)(s, t, &nan, 8), SHMD_EINVAL);
  cr_assert_eq(OM(rank)(s, t, &nan, 8, &u), SHMD_EINVAL);
  cr_assert_eq(OM(count_below)(s, t, &nan, 8, 1, &u), SHMD_EINVAL);
  cr_assert_eq(OM(seek)(s, t, &nan, 8, OMK(GE), &it), SHMD_EINVAL);
  cr_assert_eq(OM(walk_key)(s, t, &nan, 8, OMK(GE), 10, collect_visit, &c, NULL),
               SHMD_EINVAL);
  /* A caller's transaction is not aborted by a rejected key or a miss. */
  shmd_tx_t *tx;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(OM(get)(s, t, &nan, 8, NULL, 0, NULL), SHMD_EINVAL);
  double miss = 42;
  cr_assert_eq(OM(delete)(s, t, &miss, 8), SHMD_ENOTFOUND);
  cr_assert_eq(OM(put)(s, t, &miss, 8, "m", 1, 0, NULL), 0);
  cr_assert_eq(shmd_tx_commit(tx), 0);
  cr_assert_eq(OM(get)(s, t, &miss, 8, NULL, 0, NULL), 0);
  tree_check(s, t);
  cr_assert_eq(OM(destroy)(s, t), 0);
  shmd_close(s);
}

Test(OM_SUITE, ordering_double_bytes, .init = ts_init, .fini = ts_fini) {
  shmd_store_t *s = ts_open("odb", 16 * MIB, 16 * MIB);
  shmd_ptr_t t;
  cr_assert_eq(OM(create)(s, OMK(DOUBLE_BYTES), &t), 0);
  struct {
    double d;
    const char *m;
  } in[] = {{1, "b"},   {1, "a"},        {-1, "z"},      {-0.0, "m"}, {0.0, "a"},
            {INFINITY, ""}, {-INFINITY, "x"}, {-1, ""},   {1, "ab"},   {-2.5, "q"}},
    want[] = {{-INFINITY, "x"}, {-2.5, "q"}, {-1, ""}, {-1, "z"}, {0, "a"},
              {0, "m"},         {1, "a"},    {1, "ab"}, {1, "b"}, {INFINITY, ""}};
  unsigned char kb[64];
  for (int i = 0; i < 10; i++) {
    size_t kl = dk(in[i].d, in[i].m, kb);
    cr_assert_eq(OM(put)(s, t, kb, kl, &i, sizeof i, OMK(NX), NULL), 0);
  }
  size_t kl = dk(-0.0, "a", kb); /* same key as (0.0, "a") */
  cr_assert_eq(OM(put)(s, t, kb, kl, "v", 1, OMK(NX), NULL), SHMD_EEXIST);
  collect_t c;
  collect(s, t, &c);
  cr_assert_eq(c.n, 10);
  for (int i = 0; i < 10; i++) {
    double d;
    memcpy(&d, c.keys[i], 8);
    cr_assert_eq(memcmp(&d, &want[i].d, 8) == 0 || (d == 0 && !signbit(d) && want[i].d == 0), 1,
                 "position %d", i);
    cr_assert(!(d == 0 && signbit(d)), "-0.0 stored");
    cr_assert_eq(c.lens[i], 8 + strlen(want[i].m));
    cr_assert_eq(memcmp(c.keys[i] + 8, want[i].m, c.lens[i] - 8), 0, "position %d", i);
  }
  /* Score ranges the way ZCOUNT / ZRANGEBYSCORE do it: [-1, 1] inclusive. */
  uint64_t lo, hi;
  kl = dk(-1, "", kb);
  cr_assert_eq(OM(count_below)(s, t, kb, kl, 0, &lo), 0); /* (-1,"") is the smallest */
  unsigned char kb2[64];
  double next_up = 1.0000000000000002; /* the double after 1 */
  size_t kl2 = dk(next_up, "", kb2);
  cr_assert_eq(OM(count_below)(s, t, kb2, kl2, 0, &hi), 0);
  cr_assert_eq(lo, 2);
  cr_assert_eq(hi, 9);
  /* A short key is rejected, a NaN score too. */
  cr_assert_eq(OM(put)(s, t, "short", 5, "v", 1, 0, NULL), SHMD_EINVAL);
  kl = dk(NAN, "a", kb);
  cr_assert_eq(OM(put)(s, t, kb, kl, "v", 1, 0, NULL), SHMD_EINVAL);
  /* A long member goes out of line and still sorts by score first. */
  unsigned char big[600];
  memset(big, 'm', sizeof big);
  double sc = 0.5;
  memcpy(big, &sc, 8);
  cr_assert_eq(OM(put)(s, t, big, sizeof big, "v", 1, 0, NULL), 0);
  uint64_t r;
  cr_assert_eq(OM(rank)(s, t, big, sizeof big, &r), 0);
  cr_assert_eq(r, 6);
  tree_check(s, t);
  cr_assert_eq(OM(destroy)(s, t), 0);
  alloc_check(s);
  shmd_close(s);
}

/* ============================================================================================== */
/* The keyed map: rank / select / walks on a big tree                                             */
/* ============================================================================================== */

typedef struct seq_s {
  int64_t next;
  int64_t step;
  int bad;
} seq_t;

static int seq_visit(const void *k, size_t kl, const void *v, size_t vl, uint64_t rank,
                     void *arg) {
  seq_t *q = arg;
  int64_t key, val;
  if (kl != 8 || vl != 8) {
    q->bad = 1;
    return 1;
  }
  memcpy(&key, k, 8);
  memcpy(&val, v, 8);
  if (key != q->next || val != -key || (uint64_t)(key / 2) != rank) {
    q->bad = 2;
    return 1;
  }
  q->next += q->step;
  return 0;
}

Test(OM_SUITE, rank_select_walks, .init = ts_init, .fini = ts_fini, .timeout = 120) {
  shmd_store_t *s = ts_open("rank", 32 * MIB, 32 * MIB);
  ts_rng_t rng = {ts_seed("rank_select_walks")};
  shmd_ptr_t t;
  cr_assert_eq(OM(create)(s, OMK(I64), &t), 0);
  enum { N = 20000 };
  /* Even keys 0 .. 2N-2 in random order; key k has rank k/2. */
  int64_t *keys = malloc(N * sizeof *keys);
  for (int64_t i = 0; i < N; i++)
    keys[i] = 2 * i;
  for (size_t i = N - 1; i > 0; i--) {
    size_t j = ts_below(&rng, i + 1);
    int64_t x = keys[i];
    keys[i] = keys[j];
    keys[j] = x;
  }
  double t0 = now_s();
  for (int i = 0; i < N; i++) {
    int64_t v = -keys[i];
    cr_assert_eq(OM(put)(s, t, &keys[i], 8, &v, 8, OMK(NX), NULL), 0);
  }
  double t1 = now_s();
  tree_check(s, t);
  for (int i = 0; i < N; i++) {
    int64_t k = 2 * (int64_t)i, odd = k + 1, got;
    uint64_t r;
    cr_assert_eq(OM(rank)(s, t, &k, 8, &r), 0);
    cr_assert_eq(r, (uint64_t)i);
    OM(item_t) it = {&got, 8, 0, NULL, 0, 0, 0};
    cr_assert_eq(OM(select)(s, t, (uint64_t)i, &it), 0);
    cr_assert_eq(got, k);
    cr_assert_eq(OM(rank)(s, t, &odd, 8, &r), SHMD_ENOTFOUND);
    cr_assert_eq(OM(count_below)(s, t, &odd, 8, 0, &r), 0);
    cr_assert_eq(r, (uint64_t)i + 1);
  }
  double t2 = now_s();
  cr_log_info("rank_select_walks: %d inserts %.0f ns/op, rank+select+count %.0f ns/key", N,
              (t1 - t0) / N * 1e9, (t2 - t1) / N * 1e9);
  /* Forward by rank in batches of 333, backward by rank, forward by key with a GT cursor. */
  seq_t q = {0, 2, 0};
  uint64_t start = 0;
  size_t visited;
  do {
    cr_assert_eq(OM(walk_rank)(s, t, start, 333, 0, seq_visit, &q, &visited), 0);
    start += visited;
  } while (visited);
  cr_assert_eq(q.bad, 0);
  cr_assert_eq(start, N);
  q = (seq_t){2 * (N - 1), -2, 0};
  cr_assert_eq(OM(walk_rank)(s, t, N - 1, SIZE_MAX, 1, seq_visit, &q, &visited), 0);
  cr_assert_eq(visited, N);
  cr_assert_eq(q.bad, 0);
  q = (seq_t){0, 2, 0};
  int64_t cursor = -1;
  size_t total = 0;
  for (;;) {
    cr_assert_eq(OM(walk_key)(s, t, &cursor, 8, OMK(GT), 500, seq_visit, &q,
                                      &visited),
                 0);
    if (visited == 0)
      break;
    total += visited;
    cursor = q.next - 2;
  }
  cr_assert_eq(total, N);
  cr_assert_eq(q.bad, 0);
  /* Descending by key from the middle, LE of an odd key. */
  int64_t mid = N + 1;
  q = (seq_t){N, -2, 0};
  cr_assert_eq(
      OM(walk_key)(s, t, &mid, 8, OMK(LE), SIZE_MAX, seq_visit, &q, &visited), 0);
  cr_assert_eq(visited, N / 2 + 1);
  /* Out-of-range starts visit nothing. */
  cr_assert_eq(OM(walk_rank)(s, t, N, 10, 0, seq_visit, &q, &visited), 0);
  cr_assert_eq(visited, 0);
  /* A callback's status stops the walk. */
  q = (seq_t){1, 2, 0}; /* wrong start: stops at once */
  cr_assert_eq(OM(walk_rank)(s, t, 0, 10, 0, seq_visit, &q, &visited), 1);
  cr_assert_eq(visited, 1);
  /* Delete every other key, then ranks are halved again. */
  for (int64_t k = 0; k < 2 * N; k += 4)
    cr_assert_eq(OM(delete)(s, t, &k, 8), 0);
  tree_check(s, t);
  for (int64_t k = 2; k < 2 * N; k += 4) {
    uint64_t r;
    cr_assert_eq(OM(rank)(s, t, &k, 8, &r), 0);
    cr_assert_eq(r, (uint64_t)(k / 4));
  }
  free(keys);
  cr_assert_eq(OM(destroy)(s, t), 0);
  alloc_check(s);
  shmd_close(s);
}

/* ============================================================================================== */
/* The keyed map: storage, transactions, destroy, kinds                                           */
/* ============================================================================================== */

Test(OM_SUITE, inline_and_out_of_line, .init = ts_init, .fini = ts_fini) {
  shmd_store_t *s = ts_open("ool", 32 * MIB, 32 * MIB);
  shmd_stats_t st0, st1;
  cr_assert_eq(shmd_stats(s, &st0), 0);
  shmd_ptr_t t;
  cr_assert_eq(OM(create)(s, OMK(BYTES), &t), 0);
  static unsigned char key[5000], val[70000], out[70000];
  size_t klens[] = OM_OOL_KEY_LENS, vlens[] = OM_OOL_VAL_LENS;
  const size_t nk = sizeof klens / sizeof klens[0];
  _Static_assert(sizeof vlens / sizeof vlens[0] == 10, "ten value lengths");
  for (size_t i = 0; i < sizeof key; i++)
    key[i] = (unsigned char)(i * 7);
  for (size_t ki = 0; ki < nk; ki++) {
    /* Each value length in turn: inline or in place, growing, out of line and back. */
    for (size_t vi = 0; vi < 10; vi++) {
      for (size_t i = 0; i < vlens[vi]; i++)
        val[i] = (unsigned char)(i + vi + ki);
      int ins = -1;
      cr_assert_eq(OM(put)(s, t, key, klens[ki], val, vlens[vi], 0, &ins), 0);
      cr_assert_eq(ins, vi == 0);
      size_t vl;
      cr_assert_eq(OM(get)(s, t, key, klens[ki], out, sizeof out, &vl), 0);
      cr_assert_eq(vl, vlens[vi]);
      cr_assert(vl == 0 || memcmp(out, val, vl) == 0, "key %zu value %zu", klens[ki], vlens[vi]);
      tree_check(s, t);
    }
  }
  uint64_t n;
  cr_assert_eq(OM(len)(s, t, &n), 0);
  cr_assert_eq(n, nk);
  /* Keys come back whole. */
  OM(item_t) it = {out, sizeof out, 0, NULL, 0, 0, 0};
  cr_assert_eq(OM(last)(s, t, &it), 0); /* the 4000-byte key is the largest prefix */
  cr_assert_eq(it.key_len, 4000);
  cr_assert_eq(memcmp(out, key, 4000), 0);
  for (size_t ki = 0; ki < nk; ki += 2)
    cr_assert_eq(OM(delete)(s, t, key, klens[ki]), 0);
  tree_check(s, t);
  alloc_check(s);
  cr_assert_eq(OM(destroy)(s, t), 0);
  cr_assert_eq(shmd_stats(s, &st1), 0);
  cr_assert_eq(st1.allocated_bytes, st0.allocated_bytes, "leak: %llu -> %llu bytes",
               (unsigned long long)st0.allocated_bytes, (unsigned long long)st1.allocated_bytes);
  alloc_check(s);
  shmd_close(s);
}

Test(OM_SUITE, caller_transaction, .init = ts_init, .fini = ts_fini) {
  shmd_store_t *s = ts_open("txn", 16 * MIB, 16 * MIB);
  shmd_stats_t st0, st1;
  cr_assert_eq(shmd_stats(s, &st0), 0);
  /* A tree created in a transaction that aborts is freed. */
  shmd_tx_t *tx;
  shmd_ptr_t t;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(OM(create)(s, OMK(I64), &t), 0);
  for (int64_t k = 0; k < 50; k++)
    cr_assert_eq(OM(put)(s, t, &k, 8, "v", 1, 0, NULL), 0);
  shmd_tx_abort(tx);
  cr_assert_eq(shmd_stats(s, &st1), 0);
  cr_assert_eq(st1.allocated_bytes, st0.allocated_bytes);
  /* Committed, then a batch of changes aborted: the tree is as before. */
  cr_assert_eq(OM(create)(s, OMK(I64), &t), 0);
  for (int64_t k = 0; k < 300; k++)
    cr_assert_eq(OM(put)(s, t, &k, 8, &k, 8, 0, NULL), 0);
  cr_assert_eq(shmd_stats(s, &st0), 0);
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  for (int64_t k = 0; k < 300; k += 3)
    cr_assert_eq(OM(delete)(s, t, &k, 8), 0);
  for (int64_t k = 1000; k < 1020; k++)
    cr_assert_eq(OM(put)(s, t, &k, 8, "vv", 2, 0, NULL), 0);
  int64_t one = 1;
  char big[600] = {0};
  cr_assert_eq(OM(put)(s, t, &one, 8, big, sizeof big, 0, NULL), 0);
  shmd_tx_abort(tx);
  tree_check(s, t);
  uint64_t n;
  cr_assert_eq(OM(len)(s, t, &n), 0);
  cr_assert_eq(n, 300);
  for (int64_t k = 0; k < 300; k++) {
    int64_t v;
    size_t vl;
    cr_assert_eq(OM(get)(s, t, &k, 8, &v, 8, &vl), 0);
    cr_assert_eq(vl, 8);
    cr_assert_eq(v, k);
  }
  cr_assert_eq(shmd_stats(s, &st1), 0);
  cr_assert_eq(st1.allocated_bytes, st0.allocated_bytes);
  /* Destroy of a small tree inside a transaction joins it (and aborting brings it back). */
  shmd_ptr_t small;
  cr_assert_eq(OM(create)(s, OMK(I64), &small), 0);
  for (int64_t k = 0; k < 40; k++)
    cr_assert_eq(OM(put)(s, small, &k, 8, &k, 8, 0, NULL), 0);
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(OM(destroy)(s, small), 0);
  shmd_tx_abort(tx);
  tree_check(s, small);
  cr_assert_eq(OM(len)(s, small, &n), 0);
  cr_assert_eq(n, 40);
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(OM(destroy)(s, small), 0);
  cr_assert_eq(shmd_tx_commit(tx), 0);
  /* A tree bigger than a lane's transaction capacity is destroyed atomically inside one too: the
   * transaction grows (an abort brings every entry back). */
  for (int64_t k = 300; k < 3000; k++)
    cr_assert_eq(OM(put)(s, t, &k, 8, &k, 8, 0, NULL), 0);
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(OM(destroy)(s, t), 0);
  shmd_tx_abort(tx);
  tree_check(s, t);
  cr_assert_eq(OM(len)(s, t, &n), 0);
  cr_assert_eq(n, 3000);
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(OM(destroy)(s, t), 0);
  cr_assert_eq(shmd_tx_commit(tx), 0);
  alloc_check(s);
  shmd_close(s);
}

Test(OM_SUITE, destroy_in_pieces, .init = ts_init, .fini = ts_fini, .timeout = 120) {
  shmd_store_t *s = ts_open("pieces", 32 * MIB, 32 * MIB);
  shmd_stats_t st0, st1;
  cr_assert_eq(shmd_stats(s, &st0), 0);
  shmd_ptr_t t;
  cr_assert_eq(OM(create)(s, OMK(BYTES), &t), 0);
  enum { N = 20000 };
  char k[32], v[400];
  memset(v, 'v', sizeof v);
  for (int i = 0; i < N; i++) {
    int kl = snprintf(k, sizeof k, "key%08d", (i * 7919) % N);
    cr_assert_eq(OM(put)(s, t, k, (size_t)kl, v, (size_t)(i % 10 == 0 ? 300 : i % 50), 0,
                                 NULL),
                 0);
  }
  uint64_t remaining = N, prev = N + 1;
  int steps = 0;
  while (remaining > 0) {
    prev = remaining;
    cr_assert_eq(OM(destroy_step)(s, t, 1500, &remaining), 0);
    cr_assert_lt(remaining, prev);
    steps++;
    if (remaining > 0) {
      tree_check(s, t);
      uint64_t n;
      cr_assert_eq(OM(len)(s, t, &n), 0);
      cr_assert_eq(n, remaining);
    }
  }
  cr_log_info("destroy_in_pieces: %d steps", steps);
  cr_assert_geq(steps, N / 1500);
  cr_assert_eq(shmd_stats(s, &st1), 0);
  cr_assert_eq(st1.allocated_bytes, st0.allocated_bytes);
  alloc_check(s);
  /* destroy() on a big tree loops over pieces by itself. */
  cr_assert_eq(OM(create)(s, OMK(BYTES), &t), 0);
  for (int i = 0; i < N; i++) {
    int kl = snprintf(k, sizeof k, "%d", i);
    cr_assert_eq(OM(put)(s, t, k, (size_t)kl, v, 10, 0, NULL), 0);
  }
  cr_assert_eq(OM(destroy)(s, t), 0);
  cr_assert_eq(shmd_stats(s, &st1), 0);
  cr_assert_eq(st1.allocated_bytes, st0.allocated_bytes);
  alloc_check(s);
  shmd_close(s);
}

Test(OM_SUITE, wrong_kind_and_garbage, .init = ts_init, .fini = ts_fini) {
  shmd_store_t *s = ts_open("kind", 16 * MIB, 16 * MIB);
  shmd_ptr_t p;
  cr_assert_eq(shmd_alloc(s, 64, &p), 0);
  uint64_t *w = shmd_resolve(s, p);
  cr_assert_not_null(w);
  memset(w, 0, 64);
  w[0] = (UINT64_C(0x59525241) << 32) | UINT64_C(0x444D4853); /* another container kind */
  uint64_t n;
  cr_assert_eq(OM(len)(s, p, &n), SHMD_EINVAL);
  cr_assert_eq(OM(check)(s, p), SHMD_EINVAL);
  w[0] = 0x1234567;
  cr_assert_eq(OM(len)(s, p, &n), SHMD_ECORRUPT);
  cr_assert_eq(OM(put)(s, p, "k", 1, "v", 1, 0, NULL), SHMD_ECORRUPT);
  cr_assert_eq(OM(len)(s, shmd_ptr_make(3000, 8), &n), SHMD_ECORRUPT);
  cr_assert_eq(OM(create)(s, (OM(order_t))9, &p), SHMD_EINVAL);
  /* A damaged entry is reported by check, not crashed on. */
  shmd_ptr_t t;
  cr_assert_eq(OM(create)(s, OMK(BYTES), &t), 0);
  for (int i = 0; i < 100; i++) {
    char k[16];
    int kl = snprintf(k, sizeof k, "k%03d", i);
    cr_assert_eq(OM(put)(s, t, k, (size_t)kl, "v", 1, 0, NULL), 0);
  }
  unsigned char kb[16];
  OM(item_t) it = {kb, sizeof kb, 0, NULL, 0, 0, 0};
  cr_assert_eq(OM(select)(s, t, 50, &it), 0);
  om_damage_checks(s, t);
  tree_check(s, t);
  cr_assert_eq(OM(destroy)(s, t), 0);
  shmd_close(s);
}

/* ============================================================================================== */
/* Two processes                                                                                  */
/* ============================================================================================== */

/* Records a writer child sends through its pipe (atomic writes: smaller than PIPE_BUF). */
typedef struct rec_s {
  uint32_t type; /* 1: starting, 2: done */
  uint32_t op;   /* 1: put, 2: delete */
  int32_t rc;
  uint32_t key_id;
  uint32_t val_len;
  uint32_t pad;
  uint64_t val_seed;
} rec_t;

#define UNIVERSE 3000u

/* Key `id`: "k<id>" padded, one in 16 long (out of line). */
static size_t key_of(uint32_t id, unsigned char *b) {
  int n = snprintf((char *)b, 32, "k%05u", id);
  size_t len = (size_t)n;
  if (id % 16 == 5) {
    for (size_t i = len; i < 300; i++)
      b[i] = (unsigned char)('a' + (id + i) % 26);
    len = 300;
  }
  return len;
}

static void val_of(uint64_t seed, size_t len, unsigned char *v) {
  uint64_t x = seed | 1;
  for (size_t i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    v[i] = (unsigned char)x;
  }
}

/* What the parent knows: per key, absent or (seed, len). */
typedef struct kstate_s {
  int present;
  uint64_t seed;
  uint32_t len;
} kstate_t;

/* The writer loop of a child: `ops` random puts / deletes on keys id with id % mod == rem, on the
 * store the harness opened; each reported before (type 1) and after (type 2). */
typedef struct {
  long ops;
  uint32_t mod, rem;
} writer_arg_t;

static int child_writer(ts_crash_child_t *cc) {
  const writer_arg_t *a = cc->arg;
  long ops = a->ops;
  uint32_t mod = a->mod, rem = a->rem;
  uint64_t seed = cc->seed;
  shmd_store_t *s = cc->s;
  shmd_ptr_t t;
  if (shmd_root_get(s, "tree", &t) != 0)
    _exit(81);
  /* Scrambled (splitmix64), so that seeds drawn from one xorshift stream give unrelated
   * streams (the raw seed would replay the parent's stream one step later). */
  uint64_t z = seed + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  ts_rng_t r = {z ^ (z >> 31)};
  static unsigned char k[512], v[4096];
  for (long i = 0; i < ops; i++) {
    rec_t rec = {1, 0, 0, 0, 0, 0, 0};
    rec.key_id = (uint32_t)ts_below(&r, UNIVERSE / mod) * mod + rem;
    rec.op = ts_below(&r, 2) == 0 ? 2 : 1;
    if (rec.op == 1) {
      rec.val_seed = ts_next(&r);
      rec.val_len = (uint32_t)ts_below(&r, 40);
      if (ts_below(&r, 8) == 0)
        rec.val_len = 250 + (uint32_t)ts_below(&r, 600);
    }
    ts_crash_report(cc, &rec);
    size_t kl = key_of(rec.key_id, k);
    int rc;
    if (rec.op == 1) {
      val_of(rec.val_seed, rec.val_len, v);
      rc = OM(put)(s, t, k, kl, v, rec.val_len, OMK(UPSERT), NULL);
    } else {
      rc = OM(delete)(s, t, k, kl);
      if (rc == SHMD_ENOTFOUND)
        rc = 0;
    }
    if (rc != 0)
      _exit(82);
    rec.type = 2;
    rec.rc = rc;
    ts_crash_report(cc, &rec);
  }
  shmd_close(s);
  return 0;
}

/* Applies a child's records to `ks` as they arrive; `pending` is the record of an operation that
 * started and has not reported done (type 1), or one with type 0. */
typedef struct {
  kstate_t *ks;
  rec_t pending;
  uint64_t n;
} apply_t;

static void apply_record(const void *rec, void *arg) {
  apply_t *ap = arg;
  const rec_t *r = rec;
  ap->n++;
  if (r->type == 1) {
    ap->pending = *r;
    return;
  }
  cr_assert_eq(r->type, 2, "%s", ts_crash_where());
  cr_assert_eq(r->key_id, ap->pending.key_id, "%s", ts_crash_where());
  ap->pending.type = 0;
  if (r->op == 1)
    ap->ks[r->key_id] = (kstate_t){1, r->val_seed, r->val_len};
  else
    ap->ks[r->key_id].present = 0;
}

static ts_crash_spec_t writer_spec(const char *store, const writer_arg_t *a, uint64_t seed, apply_t *ap) {
  return (ts_crash_spec_t){.what = "the writer", .fn = child_writer, .arg = (void *)a, .seed = seed, .store = store,
                           .opts = ts_opts(32 * MIB, 32 * MIB), .rec_size = sizeof(rec_t), .on_rec = apply_record,
                           .rec_arg = ap};
}

/* Verifies the tree against ks; for the pending operation's key either outcome is accepted (and
 * ks is updated to what is there). */
static void verify_tree(shmd_store_t *s, shmd_ptr_t t, kstate_t *ks, const rec_t *pending) {
  static unsigned char k[512], v[4096], want[4096];
  uint64_t expect = 0;
  for (uint32_t id = 0; id < UNIVERSE; id++) {
    size_t kl = key_of(id, k), vl = 0;
    int rc = OM(get)(s, t, k, kl, v, sizeof v, &vl);
    cr_assert(rc == 0 || rc == SHMD_ENOTFOUND, "get: %s", shmd_strerror(rc));
    int match;
    if (ks[id].present) {
      val_of(ks[id].seed, ks[id].len, want);
      match = rc == 0 && vl == ks[id].len && memcmp(v, want, vl) == 0;
    } else {
      match = rc == SHMD_ENOTFOUND;
    }
    if (pending && pending->type == 1 && pending->key_id == id) {
      int match_new;
      if (pending->op == 1) {
        val_of(pending->val_seed, pending->val_len, want);
        match_new = rc == 0 && vl == pending->val_len && memcmp(v, want, vl) == 0;
      } else {
        match_new = rc == SHMD_ENOTFOUND;
      }
      cr_assert(match || match_new, "key %u: neither before nor after the interrupted op", id);
      if (!match) {
        if (pending->op == 1)
          ks[id] = (kstate_t){1, pending->val_seed, pending->val_len};
        else
          ks[id].present = 0;
      }
    } else {
      cr_assert(match, "key %u: %s, expected %s (len %zu vs %u)", id,
                rc == 0 ? "present" : "absent", ks[id].present ? "present" : "absent", vl,
                ks[id].len);
    }
    expect += ks[id].present;
  }
  uint64_t n;
  cr_assert_eq(OM(len)(s, t, &n), 0);
  cr_assert_eq(n, expect);
}

/* After writers that all ended: reopens store `name` and checks its tree and allocator and the
 * tree's contents against ks. */
static void verify_store(const char *name, kstate_t *ks) {
  shmd_store_t *s = ts_open(name, 32 * MIB, 32 * MIB);
  shmd_ptr_t t;
  cr_assert_eq(shmd_root_get(s, "tree", &t), 0);
  tree_check(s, t);
  verify_tree(s, t, ks, NULL);
  alloc_check(s);
  shmd_close(s);
}

static void make_tree_store(const char *name) {
  shmd_store_t *s = ts_open(name, 32 * MIB, 32 * MIB);
  shmd_ptr_t t;
  cr_assert_eq(OM(create)(s, OMK(BYTES), &t), 0);
  cr_assert_eq(shmd_root_set(s, "tree", t), 0);
  shmd_close(s);
}

Test(OM_SUITE, mp_two_writers, .init = ts_init, .fini = ts_fini, .timeout = 120) {
  make_tree_store("mp");
  uint64_t seed = ts_seed("mp_two_writers");
  long ops = knob(OM_ENV "_STEPS", 30000);
  kstate_t *ks = calloc(UNIVERSE, sizeof *ks);
  writer_arg_t args[2];
  apply_t ap[2];
  ts_crash_proc_t *p[2];
  for (int c = 0; c < 2; c++) {
    args[c] = (writer_arg_t){ops, 2, (uint32_t)c};
    ap[c] = (apply_t){ks, {0}, 0};
    ts_crash_spec_t sp = writer_spec("mp", &args[c], seed + (uint64_t)c * 7777, &ap[c]);
    sp.what = c ? "writer 1" : "writer 0";
    sp.end = TS_END_EXIT0;
    p[c] = ts_crash_start(NULL, &sp);
  }
  ts_crash_wait_all(p, 2);
  for (int c = 0; c < 2; c++) {
    ts_crash_finish(p[c], NULL);
    cr_assert_eq(ap[c].n, 2 * (uint64_t)ops);
    cr_assert_eq(ap[c].pending.type, 0);
  }
  verify_store("mp", ks);
  free(ks);
}

/* ============================================================================================== */
/* Crashes                                                                                        */
/* ============================================================================================== */

/* One crash round: a writer child (armed with `crash`, or killed `kill_after_us` after its fork),
 * then reopen, check, verify. Returns 1 if the child died of SIGKILL. */
static int crash_round(ts_crash_t *tc, const char *store, const char *crash, uint64_t kill_after_us, uint64_t seed,
                       long ops, kstate_t *ks) {
  writer_arg_t a = {ops, 1, 0};
  apply_t ap = {ks, {0}, 0};
  ts_crash_spec_t sp = writer_spec(store, &a, seed, &ap);
  sp.point = crash;
  sp.kill_after_us = kill_after_us;
  ts_crash_res_t res;
  ts_crash_run(tc, &sp, &res); /* exit 0 or killed */
  shmd_store_t *s = ts_crash_open(store, 32 * MIB, 32 * MIB);
  ts_crash_check(s, TS_CHECK_ALLOC, OM_NAME ":tree");
  shmd_ptr_t t;
  cr_assert_eq(shmd_root_get(s, "tree", &t), 0);
  tree_check(s, t);
  verify_tree(s, t, ks, &ap.pending);
  shmd_close(s);
  return res.killed;
}

Test(OM_SUITE, crash_random_kills, .init = ts_init, .fini = ts_fini, .timeout = OM_CRASH_TIMEOUT) {
  make_tree_store("crash");
  ts_crash_t tc;
  ts_crash_begin(&tc, "crash_random_kills");
  ts_rng_t *rng = &tc.rng;
  kstate_t *ks = calloc(UNIVERSE, sizeof *ks);
  long rounds = om_crash_rounds();
  int kills = 0;
  for (long i = 0; i < rounds; i++) {
    uint64_t after = 2000 + ts_below(rng, 30000); /* 2 .. 32 ms */
    kills += crash_round(&tc, "crash", NULL, after, ts_next(rng), 1000000, ks);
  }
  ts_crash_end(&tc);
  cr_log_info("crash_random_kills: %d of %ld rounds killed", kills, rounds);
  cr_assert_gt(kills, rounds / 2);
  free(ks);
}

Test(OM_SUITE, crash_points, .init = ts_init, .fini = ts_fini, .timeout = OM_CRASH_TIMEOUT) {
  make_tree_store("points");
  ts_crash_t tc;
  ts_crash_begin(&tc, "crash_points");
  ts_rng_t *rng = &tc.rng;
  kstate_t *ks = calloc(UNIVERSE, sizeof *ks);
  static const struct {
    const char *name;
    unsigned upto; /* armed at its 1st .. upto-th firing */
  } points[] = OM_CRASH_POINTS;
  const size_t np = sizeof points / sizeof points[0];
  long rounds = om_crash_rounds() * 2;
  /* Fill the tree first so that deletes and rotations happen from the start. */
  crash_round(&tc, "points", NULL, 0, ts_next(rng), 2000, ks);
  int kills = 0;
  unsigned hit[sizeof points / sizeof points[0]] = {0};
  for (long i = 0; i < rounds; i++) {
    size_t pi = (size_t)i % np;
    char spec[64];
    snprintf(spec, sizeof spec, "%s:%u", points[pi].name, 1 + (unsigned)ts_below(rng, points[pi].upto));
    int k = crash_round(&tc, "points", spec, 0, ts_next(rng), 600, ks);
    kills += k;
    hit[pi] += (unsigned)k;
  }
  ts_crash_end(&tc);
  cr_log_info("crash_points: %d of %ld rounds killed", kills, rounds);
  for (size_t pi = 0; pi < np; pi++) {
    cr_log_info("crash point %s: killed %u times", points[pi].name, hit[pi]);
    cr_expect_gt(hit[pi], 0, "crash point %s never reached", points[pi].name);
  }
  free(ks);
}

static int destroy_child(ts_crash_child_t *cc) {
  shmd_ptr_t ct;
  if (shmd_root_get(cc->s, "tree", &ct))
    return 80;
  return OM(destroy)(cc->s, ct) == 0 ? 0 : 81;
}

Test(OM_SUITE, crash_destroy, .init = ts_init, .fini = ts_fini, .timeout = 120) {
  shmd_store_t *s = ts_open("cdestroy", 32 * MIB, 32 * MIB);
  shmd_stats_t st0, st1;
  cr_assert_eq(shmd_stats(s, &st0), 0);
  shmd_ptr_t t;
  cr_assert_eq(OM(create)(s, OMK(I64), &t), 0);
  cr_assert_eq(shmd_root_set(s, "tree", t), 0);
  enum { N = 6000 };
  char big[300];
  memset(big, 'b', sizeof big);
  for (int64_t k = 0; k < N; k++)
    cr_assert_eq(OM(put)(s, t, &k, 8, big, k % 7 == 0 ? sizeof big : 16, 0, NULL), 0);
  shmd_close(s);
  ts_crash_t tc;
  ts_crash_begin(&tc, "crash_destroy");
  uint64_t last = N;
  int destroyed = 0, kills = 0;
  for (int round = 0; round < 6 && !destroyed; round++) {
    /* Drawn in the parent, so each round's child dies at a different point. */
    char spec[64];
    snprintf(spec, sizeof spec, "%s:%u", OM_DESTROY_POINT, OM_DESTROY_FIRST + (unsigned)ts_below(&tc.rng, OM_DESTROY_SPAN));
    int st = ts_crash_run(&tc,
                          &(ts_crash_spec_t){.what = "the destroy", .fn = destroy_child, .store = "cdestroy",
                                             .opts = ts_opts(32 * MIB, 32 * MIB), .point = spec},
                          NULL); /* exit 0 or killed */
    s = ts_crash_open("cdestroy", 32 * MIB, 32 * MIB);
    cr_assert_eq(shmd_root_get(s, "tree", &t), 0);
    if (st == 0) {
      destroyed = 1;
      shmd_close(s);
      break;
    }
    kills++;
    ts_crash_check(s, TS_CHECK_ALLOC, OM_NAME ":tree");
    tree_check(s, t);
    uint64_t n;
    cr_assert_eq(OM(len)(s, t, &n), 0);
    /* A kill inside a round's first batch rolls that batch back: no progress, but never growth. */
    cr_assert_leq(n, last);
    /* What is left is a suffix of the keys (destroy removes the smallest first). */
    int64_t first;
    OM(item_t) it = {&first, 8, 0, NULL, 0, 0, 0};
    cr_assert_eq(OM(first)(s, t, &it), 0);
    cr_assert_eq(first, (int64_t)(N - n));
    last = n;
    shmd_close(s);
  }
  ts_crash_end(&tc);
  s = ts_open("cdestroy", 32 * MIB, 32 * MIB);
  cr_assert_eq(shmd_root_get(s, "tree", &t), 0);
  cr_assert_gt(kills, 0, "no destroy was interrupted");
  if (!destroyed)
    cr_assert_eq(OM(destroy)(s, t), 0);
  cr_assert_eq(shmd_root_del(s, "tree"), 0);
  cr_assert_eq(shmd_stats(s, &st1), 0);
  cr_assert_eq(st1.allocated_bytes, st0.allocated_bytes);
  alloc_check(s);
  shmd_close(s);
}

#endif
