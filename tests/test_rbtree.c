/* SPDX-License-Identifier: MIT */
/*
 * Tests of the red-black tree: the intrusive core (every delete case, rollback of every case,
 * corruption detection), and the keyed map (property tests against a sorted-array model for every
 * ordering, rank / select / walks, inline and out-of-line storage, destroy in pieces, the caller's
 * transaction), two writer processes (mp_), and SIGKILLed writers (crash_) at random moments and at
 * the crash points inside insert, delete, rotations and destroy.
 *
 * Knobs: SHMDICT_TEST_SEED replays a run; SHMDICT_RB_STEPS scales the property tests,
 * SHMDICT_RB_CRASH_ROUNDS the crash tests.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>

#include "shmdict/rbtree.h"
#include "support.h"

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

/* ============================================================================================== */
/* The intrusive core                                                                             */
/* ============================================================================================== */

typedef struct item_s {
  shmd_rb_node_t rb;
  int64_t key;
} item_t;

static int item_cmp(shmd_store_t *s, const void *key, const shmd_rb_node_t *n) {
  (void)s;
  int64_t k = *(const int64_t *)key;
  const item_t *it = shmd_container_of(n, item_t, rb);
  return (k > it->key) - (k < it->key);
}

typedef struct order_check_s {
  int64_t prev;
  int have;
  int strict;
} order_check_t;

static int item_visit(shmd_store_t *s, shmd_ptr_t p, const shmd_rb_node_t *n, void *arg) {
  (void)s;
  (void)p;
  order_check_t *o = arg;
  const item_t *it = shmd_container_of(n, item_t, rb);
  if (o->have && (o->strict ? it->key <= o->prev : it->key < o->prev))
    return SHMD_ECORRUPT;
  o->prev = it->key;
  o->have = 1;
  return 0;
}

/* A pool of items in one block, and a root in another. */
typedef struct pool_s {
  shmd_store_t *s;
  shmd_ptr_t root, items;
  item_t *it;
  shmd_rb_root_t *r;
  size_t n;
} pool_t;

static void pool_init(pool_t *p, shmd_store_t *s, size_t n) {
  p->s = s;
  p->n = n;
  cr_assert_eq(shmd_calloc(s, 1, sizeof(shmd_rb_root_t), &p->root), 0);
  cr_assert_eq(shmd_calloc(s, n, sizeof(item_t), &p->items), 0);
  p->it = shmd_resolve(s, p->items);
  p->r = shmd_resolve(s, p->root);
}

static shmd_ptr_t pool_ptr(const pool_t *p, size_t i) {
  return shmd_ptr_add(p->items, i * sizeof(item_t));
}

static size_t pool_index(const pool_t *p, shmd_ptr_t node) {
  return (size_t)((shmd_ptr_offset(node) - shmd_ptr_offset(p->items)) / sizeof(item_t));
}

static void pool_check(const pool_t *p, uint64_t expect) {
  order_check_t o = {0, 0, 1};
  uint64_t count = 0;
  int rc = shmd_rb_check(p->s, p->root, p->n, item_visit, &o, &count);
  cr_assert_eq(rc, 0, "shmd_rb_check: %s (%s)", shmd_strerror(rc), shmd_errdetail());
  cr_assert_eq(count, expect);
}

Test(rbtree, core_intrusive, .init = ts_init, .fini = ts_fini) {
  shmd_store_t *s = ts_open("core", 16 * MIB, 16 * MIB);
  pool_t p;
  enum { N = 2000 };
  pool_init(&p, s, N);
  ts_rng_t rng = {ts_seed("core_intrusive")};
  /* Insert N distinct keys in random order, with find_add refusing a duplicate. */
  int64_t *keys = malloc(N * sizeof *keys);
  for (size_t i = 0; i < N; i++)
    keys[i] = (int64_t)i * 3 - 1000;
  for (size_t i = N - 1; i > 0; i--) {
    size_t j = ts_below(&rng, i + 1);
    int64_t t = keys[i];
    keys[i] = keys[j];
    keys[j] = t;
  }
  for (size_t i = 0; i < N; i++) {
    shmd_tx_t *tx;
    cr_assert_eq(shmd_tx_begin(s, &tx), 0);
    p.it[i].key = keys[i];
    shmd_ptr_t existing;
    cr_assert_eq(shmd_rb_find_add(tx, p.root, pool_ptr(&p, i), &keys[i], item_cmp, &existing), 0);
    cr_assert(shmd_ptr_is_null(existing));
    cr_assert_eq(shmd_tx_commit(tx), 0);
    if (i % 97 == 0)
      pool_check(&p, i + 1);
  }
  pool_check(&p, N);
  {
    shmd_tx_t *tx;
    cr_assert_eq(shmd_tx_begin(s, &tx), 0);
    shmd_ptr_t existing;
    cr_assert_eq(shmd_rb_find_add(tx, p.root, pool_ptr(&p, 0), &keys[5], item_cmp, &existing), 0);
    cr_assert_eq(existing.v, pool_ptr(&p, 5).v);
    cr_assert_eq(shmd_tx_commit(tx), 0);
  }
  /* find, rank, select, first/last/next/prev agree with the sorted keys. */
  uint64_t count;
  cr_assert_eq(shmd_rb_count(s, p.root, &count), 0);
  cr_assert_eq(count, N);
  shmd_ptr_t node, nx;
  cr_assert_eq(shmd_rb_first(s, p.root, &node), 0);
  for (uint64_t i = 0; i < N; i++) {
    const item_t *it = shmd_resolve(s, node);
    cr_assert_eq(it->key, (int64_t)i * 3 - 1000);
    uint64_t r;
    cr_assert_eq(shmd_rb_rank(s, node, &r), 0);
    cr_assert_eq(r, i);
    shmd_ptr_t sel, found;
    cr_assert_eq(shmd_rb_select(s, p.root, i, &sel), 0);
    cr_assert_eq(sel.v, node.v);
    cr_assert_eq(shmd_rb_find(s, p.root, &it->key, item_cmp, &found), 0);
    cr_assert_eq(found.v, node.v);
    int rc = shmd_rb_next(s, node, &nx);
    if (i + 1 < N) {
      cr_assert_eq(rc, 0);
      shmd_ptr_t back;
      cr_assert_eq(shmd_rb_prev(s, nx, &back), 0);
      cr_assert_eq(back.v, node.v);
      node = nx;
    } else {
      cr_assert_eq(rc, SHMD_ENOTFOUND);
      shmd_ptr_t last;
      cr_assert_eq(shmd_rb_last(s, p.root, &last), 0);
      cr_assert_eq(last.v, node.v);
    }
  }
  cr_assert_eq(shmd_rb_select(s, p.root, N, &node), SHMD_ENOTFOUND);
  int64_t missing = 1;
  cr_assert_eq(shmd_rb_find(s, p.root, &missing, item_cmp, &node), SHMD_ENOTFOUND);

  /* Erase and re-insert with a new key in the same transaction (a score change), then replace. */
  {
    shmd_tx_t *tx;
    cr_assert_eq(shmd_tx_begin(s, &tx), 0);
    shmd_ptr_t n0 = pool_ptr(&p, 0);
    cr_assert_eq(shmd_rb_erase(tx, p.root, n0), 0);
    cr_assert_eq(shmd_tx_log(tx, shmd_ptr_add(n0, offsetof(item_t, key)), 8), 0);
    p.it[0].key = 1000000;
    cr_assert_eq(shmd_rb_add(tx, p.root, n0, &p.it[0].key, item_cmp), 0);
    cr_assert_eq(shmd_tx_commit(tx), 0);
    pool_check(&p, N);
    shmd_ptr_t last;
    cr_assert_eq(shmd_rb_last(s, p.root, &last), 0);
    cr_assert_eq(last.v, n0.v);
  }
  {
    shmd_ptr_t spare;
    cr_assert_eq(shmd_calloc(s, 1, sizeof(item_t), &spare), 0);
    item_t *sp = shmd_resolve(s, spare);
    shmd_ptr_t victim;
    cr_assert_eq(shmd_rb_select(s, p.root, N / 2, &victim), 0);
    sp->key = ((item_t *)shmd_resolve(s, victim))->key;
    shmd_tx_t *tx;
    cr_assert_eq(shmd_tx_begin(s, &tx), 0);
    cr_assert_eq(shmd_rb_replace(tx, p.root, victim, spare), 0);
    cr_assert_eq(shmd_tx_commit(tx), 0);
    pool_check(&p, N);
    uint64_t r;
    cr_assert_eq(shmd_rb_rank(s, spare, &r), 0);
    cr_assert_eq(r, N / 2);
  }
  /* Duplicates with shmd_rb_add go after the equal ones (order check non-strict). */
  free(keys);
  shmd_close(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* Every delete case, each followed by check, and each rolled back by an abort. */

enum {
  DC_RED_LEAF,
  DC_ONE_CHILD,
  DC_TWO_SUCC_RIGHT,
  DC_TWO_SUCC_DEEP,
  DC_ROOT_LEAF,
  DC_BLACK_LEAF, /* + 2 * sibling configuration + side */
  DC_COUNT = DC_BLACK_LEAF + 10
};
static const char *dc_names[DC_COUNT] = {
    "red leaf", "one child", "two children, successor is the right child",
    "two children, successor deeper", "black root leaf",
    "black leaf (left), red sibling", "black leaf (right), red sibling",
    "black leaf (left), black sibling with red far child",
    "black leaf (right), black sibling with red far child",
    "black leaf (left), black sibling with only the near child red",
    "black leaf (right), black sibling with only the near child red",
    "black leaf (left), black sibling with black children, red parent",
    "black leaf (right), black sibling with black children, red parent",
    "black leaf (left), black sibling with black children, black parent",
    "black leaf (right), black sibling with black children, black parent",
};

static int red_at(shmd_store_t *s, shmd_ptr_t p) {
  return p.v != 0 && shmd_rb_color(shmd_rb_node(s, p)) == SHMD_RB_RED;
}

static int classify_delete(shmd_store_t *s, shmd_ptr_t z) {
  const shmd_rb_node_t *n = shmd_rb_node(s, z);
  if (n->left.v && n->right.v) {
    const shmd_rb_node_t *r = shmd_rb_node(s, n->right);
    return r->left.v ? DC_TWO_SUCC_DEEP : DC_TWO_SUCC_RIGHT;
  }
  if (n->left.v || n->right.v)
    return DC_ONE_CHILD;
  if (shmd_rb_color(n) == SHMD_RB_RED)
    return DC_RED_LEAF;
  shmd_ptr_t par = shmd_rb_parent(n);
  if (par.v == 0)
    return DC_ROOT_LEAF;
  const shmd_rb_node_t *pn = shmd_rb_node(s, par);
  int side = pn->right.v == z.v; /* 0: z is the left child */
  shmd_ptr_t w = side ? pn->left : pn->right;
  cr_assert(w.v != 0, "black leaf without a sibling");
  const shmd_rb_node_t *wn = shmd_rb_node(s, w);
  shmd_ptr_t near = side ? wn->right : wn->left, far = side ? wn->left : wn->right;
  int cfg;
  if (shmd_rb_color(wn) == SHMD_RB_RED)
    cfg = 0;
  else if (red_at(s, far))
    cfg = 1;
  else if (red_at(s, near))
    cfg = 2;
  else if (shmd_rb_color(pn) == SHMD_RB_RED)
    cfg = 3;
  else
    cfg = 4;
  return DC_BLACK_LEAF + 2 * cfg + side;
}

Test(rbtree, core_every_delete_case, .init = ts_init, .fini = ts_fini) {
  shmd_store_t *s = ts_open("cases", 16 * MIB, 16 * MIB);
  ts_rng_t rng = {ts_seed("core_every_delete_case")};
  enum { MAXK = 24 };
  unsigned covered[DC_COUNT] = {0};
  pool_t p;
  pool_init(&p, s, MAXK);
  unsigned char *snap = malloc(MAXK * sizeof(item_t));
  for (int trial = 0; trial < 600; trial++) {
    /* A fresh tree of k keys inserted in random order, then a few random deletes for shape. */
    size_t k = 1 + ts_below(&rng, MAXK);
    memset(p.it, 0, MAXK * sizeof(item_t));
    p.r->node.v = 0;
    int present[MAXK] = {0};
    shmd_tx_t *tx;
    cr_assert_eq(shmd_tx_begin(s, &tx), 0);
    for (size_t done = 0; done < k;) {
      size_t i = ts_below(&rng, k);
      if (present[i])
        continue;
      present[i] = 1;
      p.it[i].key = (int64_t)i;
      cr_assert_eq(shmd_rb_add(tx, p.root, pool_ptr(&p, i), &p.it[i].key, item_cmp), 0);
      done++;
    }
    size_t n = k, dels = ts_below(&rng, k / 2 + 1);
    for (size_t d = 0; d < dels; d++) {
      size_t i = ts_below(&rng, k);
      if (!present[i])
        continue;
      cr_assert_eq(shmd_rb_erase(tx, p.root, pool_ptr(&p, i)), 0);
      present[i] = 0;
      n--;
    }
    cr_assert_eq(shmd_tx_commit(tx), 0);
    pool_check(&p, n);
    /* Delete each present node in turn, check, then roll the delete back. */
    for (size_t i = 0; i < k; i++) {
      if (!present[i])
        continue;
      memcpy(snap, p.it, MAXK * sizeof(item_t));
      shmd_ptr_t root_before = p.r->node;
      int dc = classify_delete(s, pool_ptr(&p, i));
      covered[dc]++;
      cr_assert_eq(shmd_tx_begin(s, &tx), 0);
      cr_assert_eq(shmd_rb_erase(tx, p.root, pool_ptr(&p, i)), 0);
      pool_check(&p, n - 1);
      /* The remaining keys, in order. */
      shmd_ptr_t node;
      size_t expect = 0, seen = 0;
      int rc = shmd_rb_first(s, p.root, &node);
      while (rc == 0) {
        while (expect < k && (!present[expect] || expect == i))
          expect++;
        cr_assert_eq(pool_index(&p, node), expect, "case '%s'", dc_names[dc]);
        expect++;
        seen++;
        rc = shmd_rb_next(s, node, &node);
      }
      cr_assert_eq(rc, SHMD_ENOTFOUND);
      cr_assert_eq(seen, n - 1);
      shmd_tx_abort(tx);
      cr_assert_eq(memcmp(snap, p.it, MAXK * sizeof(item_t)), 0, "rollback of '%s'", dc_names[dc]);
      cr_assert_eq(p.r->node.v, root_before.v);
      pool_check(&p, n);
    }
  }
  for (int c = 0; c < DC_COUNT; c++) {
    cr_log_info("delete case '%s': %u times", dc_names[c], covered[c]);
    cr_expect(covered[c] > 0, "delete case '%s' never met", dc_names[c]);
  }
  free(snap);
  shmd_close(s);
}

Test(rbtree, core_check_detects_corruption, .init = ts_init, .fini = ts_fini) {
  shmd_store_t *s = ts_open("corrupt", 16 * MIB, 16 * MIB);
  pool_t p;
  enum { N = 64 };
  pool_init(&p, s, N);
  shmd_tx_t *tx;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  for (size_t i = 0; i < N; i++) {
    p.it[i].key = (int64_t)i;
    cr_assert_eq(shmd_rb_add(tx, p.root, pool_ptr(&p, i), &p.it[i].key, item_cmp), 0);
  }
  cr_assert_eq(shmd_tx_commit(tx), 0);
  pool_check(&p, N);
  unsigned char *snap = malloc(N * sizeof(item_t));
  memcpy(snap, p.it, N * sizeof(item_t));
  order_check_t o;
  for (int what = 0; what < 7; what++) {
    for (size_t i = 0; i < N; i++) {
      memcpy(p.it, snap, N * sizeof(item_t));
      shmd_rb_node_t *n = &p.it[i].rb;
      switch (what) {
      case 0: n->parent_color ^= 1; break;                          /* colour flip */
      case 1: n->size++; break;                                     /* size */
      case 2: n->parent_color ^= 64; break;                         /* parent link */
      case 3: if (!n->left.v) continue; n->left.v += UINT64_C(1) << 40; break; /* out of bounds */
      case 4: if (!n->right.v) continue; n->right = pool_ptr(&p, i); break;    /* cycle */
      case 5: p.it[i].key = -p.it[i].key - 1; if (i == 0) continue; break;     /* order */
      case 6: n->parent_color |= 4; break;                          /* stray bits */
      }
      o = (order_check_t){0, 0, 1};
      int rc = shmd_rb_check(s, p.root, N, item_visit, &o, NULL);
      cr_assert_eq(rc, SHMD_ECORRUPT, "corruption %d at node %zu not detected", what, i);
    }
  }
  memcpy(p.it, snap, N * sizeof(item_t));
  pool_check(&p, N);
  /* The bound on the number of nodes. */
  o = (order_check_t){0, 0, 1};
  cr_assert_eq(shmd_rb_check(s, p.root, N - 1, item_visit, &o, NULL), SHMD_ECORRUPT);
  free(snap);
  shmd_close(s);
}

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
  if (order == SHMD_RBTREE_I64) {
    int64_t x, y;
    memcpy(&x, a, 8);
    memcpy(&y, b, 8);
    return (x > y) - (x < y);
  }
  if (order == SHMD_RBTREE_DOUBLE || order == SHMD_RBTREE_DOUBLE_BYTES) {
    double x, y;
    memcpy(&x, a, 8);
    memcpy(&y, b, 8);
    if (x < y)
      return -1;
    if (x > y)
      return 1;
    if (order == SHMD_RBTREE_DOUBLE)
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
  if ((order == SHMD_RBTREE_DOUBLE || order == SHMD_RBTREE_DOUBLE_BYTES) && kl >= 8) {
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
  cr_assert_eq(shmd_rbtree_len(s, t, &n), 0);
  cr_assert_eq(n, m->n);
  cmp_walk_t w = {m, 0, 0, 0};
  uint64_t start = 0;
  for (;;) {
    size_t visited;
    int rc = shmd_rbtree_walk_rank(s, t, start, batch, 0, cmp_visit, &w, &visited);
    cr_assert_eq(rc, 0, "walk_rank at %llu: rc %d bad %d", (unsigned long long)start, rc, w.bad);
    if (visited == 0)
      break;
    start += visited;
  }
  cr_assert_eq(start, m->n);
  if (m->n) {
    cmp_walk_t r = {m, m->n - 1, 1, 0};
    size_t visited;
    cr_assert_eq(shmd_rbtree_walk_rank(s, t, m->n - 1, SIZE_MAX, 1, cmp_visit, &r, &visited), 0);
    cr_assert_eq(visited, m->n);
  }
}

static void tree_check(shmd_store_t *s, shmd_ptr_t t) {
  int rc = shmd_rbtree_check(s, t);
  cr_assert_eq(rc, 0, "shmd_rbtree_check: %s (%s)", shmd_strerror(rc), shmd_errdetail());
}

static void alloc_check(shmd_store_t *s) {
  int rc = shmd_alloc_check(s);
  cr_assert_eq(rc, 0, "shmd_alloc_check: %s (%s)", shmd_strerror(rc), shmd_errdetail());
}

/* Random keys for an ordering from a smallish universe (so that hits, misses and deletes mix);
 * about 1 in 40 byte keys is long (stored out of line). */
static size_t gen_key(ts_rng_t *r, int order, unsigned char *b, unsigned spread) {
  if (order == SHMD_RBTREE_I64) {
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
  if (order == SHMD_RBTREE_DOUBLE || order == SHMD_RBTREE_DOUBLE_BYTES) {
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
    if (order == SHMD_RBTREE_DOUBLE)
      return 8;
    off = 8;
  }
  size_t l = ts_below(r, 5);
  if (ts_below(r, 40) == 0)
    l = 250 + ts_below(r, 300);
  for (size_t i = 0; i < l; i++)
    b[off + i] = (unsigned char)(i < 4 ? 'a' + ts_below(r, order == SHMD_RBTREE_BYTES ? 4 : 2) : i);
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
    int mode = (int)ts_below(r, 4) == 0 ? (int)ts_below(r, 3) : SHMD_RBTREE_UPSERT, ins = -1;
    rc = shmd_rbtree_put(s, t, k, kl, v, vl, mode, &ins);
    if (mode == SHMD_RBTREE_NX && present) {
      cr_assert_eq(rc, SHMD_EEXIST);
    } else if (mode == SHMD_RBTREE_XX && !present) {
      cr_assert_eq(rc, SHMD_ENOTFOUND);
    } else {
      cr_assert_eq(rc, 0, "put: %s (%s)", shmd_strerror(rc), shmd_errdetail());
      cr_assert_eq(ins, !present);
      model_put(m, nk, kl, v, vl);
    }
  } else if (op < 10) {
    rc = shmd_rbtree_delete(s, t, k, kl);
    cr_assert_eq(rc, present ? 0 : SHMD_ENOTFOUND);
    model_del(m, nk, kl);
  } else if (op < 12) {
    size_t gl = 12345;
    rc = shmd_rbtree_get(s, t, k, kl, vb, sizeof vb, &gl);
    cr_assert_eq(rc, present ? 0 : SHMD_ENOTFOUND);
    if (present) {
      cr_assert_eq(gl, m->a[pos].vl);
      cr_assert(gl == 0 || memcmp(vb, m->a[pos].v, gl) == 0);
    }
    uint64_t rk;
    rc = shmd_rbtree_rank(s, t, k, kl, &rk);
    cr_assert_eq(rc, present ? 0 : SHMD_ENOTFOUND);
    if (present)
      cr_assert_eq(rk, pos);
    uint64_t c0, c1;
    cr_assert_eq(shmd_rbtree_count_below(s, t, k, kl, 0, &c0), 0);
    cr_assert_eq(shmd_rbtree_count_below(s, t, k, kl, 1, &c1), 0);
    cr_assert_eq(c0, pos);
    cr_assert_eq(c1, pos + present);
  } else if (op < 14) {
    int how = (int)ts_below(r, 4);
    shmd_rbtree_item_t it = {kb, sizeof kb, 0, vb, sizeof vb, 0, 0};
    rc = shmd_rbtree_seek(s, t, k, kl, (shmd_rbtree_seek_t)how, &it);
    long want;
    switch (how) {
    case SHMD_RBTREE_GE: want = (long)pos; break;
    case SHMD_RBTREE_GT: want = (long)pos + present; break;
    case SHMD_RBTREE_LE: want = (long)pos + present - 1; break;
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
      cr_assert_eq(shmd_rbtree_first(s, t, NULL), SHMD_ENOTFOUND);
      cr_assert_eq(shmd_rbtree_select(s, t, 0, NULL), SHMD_ENOTFOUND);
      return;
    }
    uint64_t i = ts_below(r, m->n);
    shmd_rbtree_item_t it = {kb, sizeof kb, 0, NULL, 0, 0, 0};
    cr_assert_eq(shmd_rbtree_select(s, t, i, &it), 0);
    cr_assert_eq(it.key_len, m->a[i].kl);
    cr_assert_eq(memcmp(kb, m->a[i].k, it.key_len), 0);
    cr_assert_eq(it.val_len, m->a[i].vl);
    unsigned char cur[1024];
    size_t cl = it.key_len;
    memcpy(cur, kb, cl);
    rc = shmd_rbtree_next(s, t, cur, cl, &it);
    if (i + 1 < m->n) {
      cr_assert_eq(rc, 0);
      cr_assert_eq(it.rank, i + 1);
      cr_assert_eq(memcmp(kb, m->a[i + 1].k, m->a[i + 1].kl), 0);
    } else {
      cr_assert_eq(rc, SHMD_ENOTFOUND);
    }
    rc = shmd_rbtree_prev(s, t, cur, cl, &it);
    if (i > 0) {
      cr_assert_eq(rc, 0);
      cr_assert_eq(it.rank, i - 1);
      cr_assert_eq(memcmp(kb, m->a[i - 1].k, m->a[i - 1].kl), 0);
    } else {
      cr_assert_eq(rc, SHMD_ENOTFOUND);
    }
    cr_assert_eq(shmd_rbtree_first(s, t, &it), 0);
    cr_assert_eq(it.rank, 0);
    cr_assert_eq(memcmp(kb, m->a[0].k, m->a[0].kl), 0);
    cr_assert_eq(shmd_rbtree_last(s, t, &it), 0);
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
  cr_assert_eq(shmd_rbtree_create(s, (shmd_rbtree_order_t)order, &t), 0);
  shmd_stats_t st0, st1;
  model_t m = {order, NULL, 0, 0};
  for (long step = 0; step < steps; step++) {
    random_op(s, t, &m, &rng, spread);
    uint64_t n;
    cr_assert_eq(shmd_rbtree_len(s, t, &n), 0);
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
  cr_assert_eq(shmd_rbtree_destroy(s, t), 0);
  cr_assert_eq(shmd_stats(s, &st1), 0);
  cr_assert_lt(st1.allocated_bytes, st0.allocated_bytes);
  alloc_check(s);
  shmd_close(s);
}

Test(rbtree, property_bytes, .init = ts_init, .fini = ts_fini, .timeout = 120) {
  property_run(SHMD_RBTREE_BYTES, knob("SHMDICT_RB_STEPS", 30000), 50, 0, "property_bytes");
}
Test(rbtree, property_i64, .init = ts_init, .fini = ts_fini, .timeout = 120) {
  property_run(SHMD_RBTREE_I64, knob("SHMDICT_RB_STEPS", 30000), 50, 1200, "property_i64");
}
Test(rbtree, property_double, .init = ts_init, .fini = ts_fini, .timeout = 120) {
  property_run(SHMD_RBTREE_DOUBLE, knob("SHMDICT_RB_STEPS", 30000), 50, 1600, "property_double");
}
Test(rbtree, property_double_bytes, .init = ts_init, .fini = ts_fini, .timeout = 120) {
  property_run(SHMD_RBTREE_DOUBLE_BYTES, knob("SHMDICT_RB_STEPS", 30000), 50, 40,
               "property_double_bytes");
}
Test(rbtree, property_check_every_step, .init = ts_init, .fini = ts_fini, .timeout = 120) {
  long steps = knob("SHMDICT_RB_STEPS", 30000) / 10;
  property_run(SHMD_RBTREE_BYTES, steps, 1, 0, "check_every_step bytes");
}
Test(rbtree, property_check_every_step_double_bytes, .init = ts_init, .fini = ts_fini,
     .timeout = 120) {
  long steps = knob("SHMDICT_RB_STEPS", 30000) / 10;
  property_run(SHMD_RBTREE_DOUBLE_BYTES, steps, 1, 24, "check_every_step double_bytes");
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
  cr_assert_eq(shmd_rbtree_walk_rank(s, t, 0, 64, 0, collect_visit, c, &visited), 0);
  cr_assert_eq(visited, c->n);
}

Test(rbtree, ordering_bytes, .init = ts_init, .fini = ts_fini) {
  shmd_store_t *s = ts_open("ob", 16 * MIB, 16 * MIB);
  shmd_ptr_t t;
  cr_assert_eq(shmd_rbtree_create(s, SHMD_RBTREE_BYTES, &t), 0);
  const char *in[] = {"b", "ab", "a", "", "\xff", "a\x00", "abc", "B"};
  size_t inl[] = {1, 2, 1, 0, 1, 2, 3, 1};
  for (int i = 0; i < 8; i++)
    cr_assert_eq(shmd_rbtree_put(s, t, in[i], inl[i], "v", 1, SHMD_RBTREE_NX, NULL), 0);
  const char *want[] = {"", "B", "a", "a\x00", "ab", "abc", "b", "\xff"};
  size_t wantl[] = {0, 1, 1, 2, 2, 3, 1, 1};
  collect_t c;
  collect(s, t, &c);
  cr_assert_eq(c.n, 8);
  for (int i = 0; i < 8; i++) {
    cr_assert_eq(c.lens[i], wantl[i]);
    cr_assert_eq(memcmp(c.keys[i], want[i], wantl[i]), 0, "position %d", i);
  }
  cr_assert_eq(shmd_rbtree_put(s, t, "a", 1, "w", 1, SHMD_RBTREE_NX, NULL), SHMD_EEXIST);
  cr_assert_eq(shmd_rbtree_put(s, t, "zz", 2, "w", 1, SHMD_RBTREE_XX, NULL), SHMD_ENOTFOUND);
  cr_assert_eq(shmd_rbtree_put(s, t, NULL, 1, "w", 1, 0, NULL), SHMD_EINVAL);
  cr_assert_eq(shmd_rbtree_put(s, t, "a", 1, "w", 1, 7, NULL), SHMD_EINVAL);
  cr_assert_eq(shmd_rbtree_put(s, t, "a", 1, NULL, 3, 0, NULL), SHMD_EINVAL);
  cr_assert_eq(shmd_rbtree_put(s, t, "a", 1, "w", (size_t)SHMD_RBTREE_LEN_MAX + 1, 0, NULL),
               SHMD_ETOOBIG);
  /* The empty key and an empty value. */
  cr_assert_eq(shmd_rbtree_put(s, t, "", 0, NULL, 0, SHMD_RBTREE_XX, NULL), 0);
  size_t vl = 9;
  cr_assert_eq(shmd_rbtree_get(s, t, "", 0, NULL, 0, &vl), 0);
  cr_assert_eq(vl, 0);
  /* Truncated copies report the full length. */
  cr_assert_eq(shmd_rbtree_put(s, t, "abc", 3, "0123456789", 10, 0, NULL), 0);
  char buf[4];
  cr_assert_eq(shmd_rbtree_get(s, t, "abc", 3, buf, 4, &vl), 0);
  cr_assert_eq(vl, 10);
  cr_assert_eq(memcmp(buf, "0123", 4), 0);
  shmd_rbtree_order_t o;
  cr_assert_eq(shmd_rbtree_order(s, t, &o), 0);
  cr_assert_eq(o, SHMD_RBTREE_BYTES);
  tree_check(s, t);
  cr_assert_eq(shmd_rbtree_destroy(s, t), 0);
  shmd_close(s);
}

Test(rbtree, ordering_i64, .init = ts_init, .fini = ts_fini) {
  shmd_store_t *s = ts_open("oi", 16 * MIB, 16 * MIB);
  shmd_ptr_t t;
  cr_assert_eq(shmd_rbtree_create(s, SHMD_RBTREE_I64, &t), 0);
  int64_t in[] = {5, -1, INT64_MAX, 0, INT64_MIN, -300, 256, -256, 1};
  int64_t want[] = {INT64_MIN, -300, -256, -1, 0, 1, 5, 256, INT64_MAX};
  for (int i = 0; i < 9; i++)
    cr_assert_eq(shmd_rbtree_put(s, t, &in[i], 8, &i, sizeof i, 0, NULL), 0);
  collect_t c;
  collect(s, t, &c);
  cr_assert_eq(c.n, 9);
  for (int i = 0; i < 9; i++) {
    int64_t k;
    memcpy(&k, c.keys[i], 8);
    cr_assert_eq(k, want[i]);
  }
  int32_t four = 4;
  cr_assert_eq(shmd_rbtree_put(s, t, &four, 4, "x", 1, 0, NULL), SHMD_EINVAL);
  cr_assert_eq(shmd_rbtree_get(s, t, "123456789", 9, NULL, 0, NULL), SHMD_EINVAL);
  int64_t q = 2;
  uint64_t n;
  cr_assert_eq(shmd_rbtree_count_below(s, t, &q, 8, 0, &n), 0);
  cr_assert_eq(n, 6);
  tree_check(s, t);
  cr_assert_eq(shmd_rbtree_destroy(s, t), 0);
  shmd_close(s);
}

static size_t dk(double d, const char *m, unsigned char *buf) {
  return shmd_rbtree_dkey(d, m, strlen(m), buf);
}

Test(rbtree, ordering_double_and_nan, .init = ts_init, .fini = ts_fini) {
  shmd_store_t *s = ts_open("od", 16 * MIB, 16 * MIB);
  shmd_ptr_t t;
  cr_assert_eq(shmd_rbtree_create(s, SHMD_RBTREE_DOUBLE, &t), 0);
  double in[] = {1.5, -INFINITY, -0.0, 5e-324, INFINITY, -1e308, -2.5, 1e308};
  double want[] = {-INFINITY, -1e308, -2.5, 0.0, 5e-324, 1.5, 1e308, INFINITY};
  for (int i = 0; i < 8; i++)
    cr_assert_eq(shmd_rbtree_put(s, t, &in[i], 8, "v", 1, SHMD_RBTREE_NX, NULL), 0);
  /* -0.0 and +0.0 are one key, stored as +0.0. */
  double pz = 0.0, nz = -0.0;
  cr_assert_eq(shmd_rbtree_put(s, t, &pz, 8, "z", 1, SHMD_RBTREE_NX, NULL), SHMD_EEXIST);
  cr_assert_eq(shmd_rbtree_get(s, t, &pz, 8, NULL, 0, NULL), 0);
  cr_assert_eq(shmd_rbtree_get(s, t, &nz, 8, NULL, 0, NULL), 0);
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
  shmd_rbtree_item_t it = {0};
  uint64_t u;
  cr_assert_eq(shmd_rbtree_put(s, t, &nan, 8, "v", 1, 0, NULL), SHMD_EINVAL);
  cr_assert_eq(shmd_rbtree_get(s, t, &nan, 8, NULL, 0, NULL), SHMD_EINVAL);
  cr_assert_eq(shmd_rbtree_delete(s, t, &nan, 8), SHMD_EINVAL);
  cr_assert_eq(shmd_rbtree_rank(s, t, &nan, 8, &u), SHMD_EINVAL);
  cr_assert_eq(shmd_rbtree_count_below(s, t, &nan, 8, 1, &u), SHMD_EINVAL);
  cr_assert_eq(shmd_rbtree_seek(s, t, &nan, 8, SHMD_RBTREE_GE, &it), SHMD_EINVAL);
  cr_assert_eq(shmd_rbtree_walk_key(s, t, &nan, 8, SHMD_RBTREE_GE, 10, collect_visit, &c, NULL),
               SHMD_EINVAL);
  /* A caller's transaction is not aborted by a rejected key or a miss. */
  shmd_tx_t *tx;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_rbtree_get(s, t, &nan, 8, NULL, 0, NULL), SHMD_EINVAL);
  double miss = 42;
  cr_assert_eq(shmd_rbtree_delete(s, t, &miss, 8), SHMD_ENOTFOUND);
  cr_assert_eq(shmd_rbtree_put(s, t, &miss, 8, "m", 1, 0, NULL), 0);
  cr_assert_eq(shmd_tx_commit(tx), 0);
  cr_assert_eq(shmd_rbtree_get(s, t, &miss, 8, NULL, 0, NULL), 0);
  tree_check(s, t);
  cr_assert_eq(shmd_rbtree_destroy(s, t), 0);
  shmd_close(s);
}

Test(rbtree, ordering_double_bytes, .init = ts_init, .fini = ts_fini) {
  shmd_store_t *s = ts_open("odb", 16 * MIB, 16 * MIB);
  shmd_ptr_t t;
  cr_assert_eq(shmd_rbtree_create(s, SHMD_RBTREE_DOUBLE_BYTES, &t), 0);
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
    cr_assert_eq(shmd_rbtree_put(s, t, kb, kl, &i, sizeof i, SHMD_RBTREE_NX, NULL), 0);
  }
  size_t kl = dk(-0.0, "a", kb); /* same key as (0.0, "a") */
  cr_assert_eq(shmd_rbtree_put(s, t, kb, kl, "v", 1, SHMD_RBTREE_NX, NULL), SHMD_EEXIST);
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
  cr_assert_eq(shmd_rbtree_count_below(s, t, kb, kl, 0, &lo), 0); /* (-1,"") is the smallest */
  unsigned char kb2[64];
  double next_up = 1.0000000000000002; /* the double after 1 */
  size_t kl2 = dk(next_up, "", kb2);
  cr_assert_eq(shmd_rbtree_count_below(s, t, kb2, kl2, 0, &hi), 0);
  cr_assert_eq(lo, 2);
  cr_assert_eq(hi, 9);
  /* A short key is rejected, a NaN score too. */
  cr_assert_eq(shmd_rbtree_put(s, t, "short", 5, "v", 1, 0, NULL), SHMD_EINVAL);
  kl = dk(NAN, "a", kb);
  cr_assert_eq(shmd_rbtree_put(s, t, kb, kl, "v", 1, 0, NULL), SHMD_EINVAL);
  /* A long member goes out of line and still sorts by score first. */
  unsigned char big[600];
  memset(big, 'm', sizeof big);
  double sc = 0.5;
  memcpy(big, &sc, 8);
  cr_assert_eq(shmd_rbtree_put(s, t, big, sizeof big, "v", 1, 0, NULL), 0);
  uint64_t r;
  cr_assert_eq(shmd_rbtree_rank(s, t, big, sizeof big, &r), 0);
  cr_assert_eq(r, 6);
  tree_check(s, t);
  cr_assert_eq(shmd_rbtree_destroy(s, t), 0);
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

Test(rbtree, rank_select_walks, .init = ts_init, .fini = ts_fini, .timeout = 120) {
  shmd_store_t *s = ts_open("rank", 32 * MIB, 32 * MIB);
  ts_rng_t rng = {ts_seed("rank_select_walks")};
  shmd_ptr_t t;
  cr_assert_eq(shmd_rbtree_create(s, SHMD_RBTREE_I64, &t), 0);
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
    cr_assert_eq(shmd_rbtree_put(s, t, &keys[i], 8, &v, 8, SHMD_RBTREE_NX, NULL), 0);
  }
  double t1 = now_s();
  tree_check(s, t);
  for (int i = 0; i < N; i++) {
    int64_t k = 2 * (int64_t)i, odd = k + 1, got;
    uint64_t r;
    cr_assert_eq(shmd_rbtree_rank(s, t, &k, 8, &r), 0);
    cr_assert_eq(r, (uint64_t)i);
    shmd_rbtree_item_t it = {&got, 8, 0, NULL, 0, 0, 0};
    cr_assert_eq(shmd_rbtree_select(s, t, (uint64_t)i, &it), 0);
    cr_assert_eq(got, k);
    cr_assert_eq(shmd_rbtree_rank(s, t, &odd, 8, &r), SHMD_ENOTFOUND);
    cr_assert_eq(shmd_rbtree_count_below(s, t, &odd, 8, 0, &r), 0);
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
    cr_assert_eq(shmd_rbtree_walk_rank(s, t, start, 333, 0, seq_visit, &q, &visited), 0);
    start += visited;
  } while (visited);
  cr_assert_eq(q.bad, 0);
  cr_assert_eq(start, N);
  q = (seq_t){2 * (N - 1), -2, 0};
  cr_assert_eq(shmd_rbtree_walk_rank(s, t, N - 1, SIZE_MAX, 1, seq_visit, &q, &visited), 0);
  cr_assert_eq(visited, N);
  cr_assert_eq(q.bad, 0);
  q = (seq_t){0, 2, 0};
  int64_t cursor = -1;
  size_t total = 0;
  for (;;) {
    cr_assert_eq(shmd_rbtree_walk_key(s, t, &cursor, 8, SHMD_RBTREE_GT, 500, seq_visit, &q,
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
      shmd_rbtree_walk_key(s, t, &mid, 8, SHMD_RBTREE_LE, SIZE_MAX, seq_visit, &q, &visited), 0);
  cr_assert_eq(visited, N / 2 + 1);
  /* Out-of-range starts visit nothing. */
  cr_assert_eq(shmd_rbtree_walk_rank(s, t, N, 10, 0, seq_visit, &q, &visited), 0);
  cr_assert_eq(visited, 0);
  /* A callback's status stops the walk. */
  q = (seq_t){1, 2, 0}; /* wrong start: stops at once */
  cr_assert_eq(shmd_rbtree_walk_rank(s, t, 0, 10, 0, seq_visit, &q, &visited), 1);
  cr_assert_eq(visited, 1);
  /* Delete every other key, then ranks are halved again. */
  for (int64_t k = 0; k < 2 * N; k += 4)
    cr_assert_eq(shmd_rbtree_delete(s, t, &k, 8), 0);
  tree_check(s, t);
  for (int64_t k = 2; k < 2 * N; k += 4) {
    uint64_t r;
    cr_assert_eq(shmd_rbtree_rank(s, t, &k, 8, &r), 0);
    cr_assert_eq(r, (uint64_t)(k / 4));
  }
  free(keys);
  cr_assert_eq(shmd_rbtree_destroy(s, t), 0);
  alloc_check(s);
  shmd_close(s);
}

/* ============================================================================================== */
/* The keyed map: storage, transactions, destroy, kinds                                           */
/* ============================================================================================== */

Test(rbtree, inline_and_out_of_line, .init = ts_init, .fini = ts_fini) {
  shmd_store_t *s = ts_open("ool", 32 * MIB, 32 * MIB);
  shmd_stats_t st0, st1;
  cr_assert_eq(shmd_stats(s, &st0), 0);
  shmd_ptr_t t;
  cr_assert_eq(shmd_rbtree_create(s, SHMD_RBTREE_BYTES, &t), 0);
  static unsigned char key[5000], val[70000], out[70000];
  size_t klens[] = {0, 1, 255, 256, 257, 4000};
  size_t vlens[] = {0, 3, 256, 257, 100, 9000, 8, 65536, 256, 0};
  for (size_t i = 0; i < sizeof key; i++)
    key[i] = (unsigned char)(i * 7);
  for (size_t ki = 0; ki < 6; ki++) {
    /* Each value length in turn: in place, growing into a new node, out of line and back. */
    for (size_t vi = 0; vi < 10; vi++) {
      for (size_t i = 0; i < vlens[vi]; i++)
        val[i] = (unsigned char)(i + vi + ki);
      int ins = -1;
      cr_assert_eq(shmd_rbtree_put(s, t, key, klens[ki], val, vlens[vi], 0, &ins), 0);
      cr_assert_eq(ins, vi == 0);
      size_t vl;
      cr_assert_eq(shmd_rbtree_get(s, t, key, klens[ki], out, sizeof out, &vl), 0);
      cr_assert_eq(vl, vlens[vi]);
      cr_assert(vl == 0 || memcmp(out, val, vl) == 0, "key %zu value %zu", klens[ki], vlens[vi]);
      tree_check(s, t);
    }
  }
  uint64_t n;
  cr_assert_eq(shmd_rbtree_len(s, t, &n), 0);
  cr_assert_eq(n, 6);
  /* Keys come back whole. */
  shmd_rbtree_item_t it = {out, sizeof out, 0, NULL, 0, 0, 0};
  cr_assert_eq(shmd_rbtree_last(s, t, &it), 0); /* the 4000-byte key is the largest prefix */
  cr_assert_eq(it.key_len, 4000);
  cr_assert_eq(memcmp(out, key, 4000), 0);
  for (size_t ki = 0; ki < 6; ki += 2)
    cr_assert_eq(shmd_rbtree_delete(s, t, key, klens[ki]), 0);
  tree_check(s, t);
  alloc_check(s);
  cr_assert_eq(shmd_rbtree_destroy(s, t), 0);
  cr_assert_eq(shmd_stats(s, &st1), 0);
  cr_assert_eq(st1.allocated_bytes, st0.allocated_bytes, "leak: %llu -> %llu bytes",
               (unsigned long long)st0.allocated_bytes, (unsigned long long)st1.allocated_bytes);
  alloc_check(s);
  shmd_close(s);
}

Test(rbtree, caller_transaction, .init = ts_init, .fini = ts_fini) {
  shmd_store_t *s = ts_open("txn", 16 * MIB, 16 * MIB);
  shmd_stats_t st0, st1;
  cr_assert_eq(shmd_stats(s, &st0), 0);
  /* A tree created in a transaction that aborts is freed. */
  shmd_tx_t *tx;
  shmd_ptr_t t;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_rbtree_create(s, SHMD_RBTREE_I64, &t), 0);
  for (int64_t k = 0; k < 50; k++)
    cr_assert_eq(shmd_rbtree_put(s, t, &k, 8, "v", 1, 0, NULL), 0);
  shmd_tx_abort(tx);
  cr_assert_eq(shmd_stats(s, &st1), 0);
  cr_assert_eq(st1.allocated_bytes, st0.allocated_bytes);
  /* Committed, then a batch of changes aborted: the tree is as before. */
  cr_assert_eq(shmd_rbtree_create(s, SHMD_RBTREE_I64, &t), 0);
  for (int64_t k = 0; k < 300; k++)
    cr_assert_eq(shmd_rbtree_put(s, t, &k, 8, &k, 8, 0, NULL), 0);
  cr_assert_eq(shmd_stats(s, &st0), 0);
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  for (int64_t k = 0; k < 300; k += 3)
    cr_assert_eq(shmd_rbtree_delete(s, t, &k, 8), 0);
  for (int64_t k = 1000; k < 1020; k++)
    cr_assert_eq(shmd_rbtree_put(s, t, &k, 8, "vv", 2, 0, NULL), 0);
  int64_t one = 1;
  char big[600] = {0};
  cr_assert_eq(shmd_rbtree_put(s, t, &one, 8, big, sizeof big, 0, NULL), 0);
  shmd_tx_abort(tx);
  tree_check(s, t);
  uint64_t n;
  cr_assert_eq(shmd_rbtree_len(s, t, &n), 0);
  cr_assert_eq(n, 300);
  for (int64_t k = 0; k < 300; k++) {
    int64_t v;
    size_t vl;
    cr_assert_eq(shmd_rbtree_get(s, t, &k, 8, &v, 8, &vl), 0);
    cr_assert_eq(vl, 8);
    cr_assert_eq(v, k);
  }
  cr_assert_eq(shmd_stats(s, &st1), 0);
  cr_assert_eq(st1.allocated_bytes, st0.allocated_bytes);
  /* Destroy of a small tree inside a transaction joins it (and aborting brings it back). */
  shmd_ptr_t small;
  cr_assert_eq(shmd_rbtree_create(s, SHMD_RBTREE_I64, &small), 0);
  for (int64_t k = 0; k < 40; k++)
    cr_assert_eq(shmd_rbtree_put(s, small, &k, 8, &k, 8, 0, NULL), 0);
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_rbtree_destroy(s, small), 0);
  shmd_tx_abort(tx);
  tree_check(s, small);
  cr_assert_eq(shmd_rbtree_len(s, small, &n), 0);
  cr_assert_eq(n, 40);
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_rbtree_destroy(s, small), 0);
  cr_assert_eq(shmd_tx_commit(tx), 0);
  /* A tree bigger than a lane's transaction capacity is destroyed atomically inside one too: the
   * transaction grows (an abort brings every entry back). */
  for (int64_t k = 300; k < 3000; k++)
    cr_assert_eq(shmd_rbtree_put(s, t, &k, 8, &k, 8, 0, NULL), 0);
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_rbtree_destroy(s, t), 0);
  shmd_tx_abort(tx);
  tree_check(s, t);
  cr_assert_eq(shmd_rbtree_len(s, t, &n), 0);
  cr_assert_eq(n, 3000);
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_rbtree_destroy(s, t), 0);
  cr_assert_eq(shmd_tx_commit(tx), 0);
  alloc_check(s);
  shmd_close(s);
}

Test(rbtree, destroy_in_pieces, .init = ts_init, .fini = ts_fini, .timeout = 120) {
  shmd_store_t *s = ts_open("pieces", 32 * MIB, 32 * MIB);
  shmd_stats_t st0, st1;
  cr_assert_eq(shmd_stats(s, &st0), 0);
  shmd_ptr_t t;
  cr_assert_eq(shmd_rbtree_create(s, SHMD_RBTREE_BYTES, &t), 0);
  enum { N = 20000 };
  char k[32], v[400];
  memset(v, 'v', sizeof v);
  for (int i = 0; i < N; i++) {
    int kl = snprintf(k, sizeof k, "key%08d", (i * 7919) % N);
    cr_assert_eq(shmd_rbtree_put(s, t, k, (size_t)kl, v, (size_t)(i % 10 == 0 ? 300 : i % 50), 0,
                                 NULL),
                 0);
  }
  uint64_t remaining = N, prev = N + 1;
  int steps = 0;
  while (remaining > 0) {
    prev = remaining;
    cr_assert_eq(shmd_rbtree_destroy_step(s, t, 1500, &remaining), 0);
    cr_assert_lt(remaining, prev);
    steps++;
    if (remaining > 0) {
      tree_check(s, t);
      uint64_t n;
      cr_assert_eq(shmd_rbtree_len(s, t, &n), 0);
      cr_assert_eq(n, remaining);
    }
  }
  cr_log_info("destroy_in_pieces: %d steps", steps);
  cr_assert_geq(steps, N / 1500);
  cr_assert_eq(shmd_stats(s, &st1), 0);
  cr_assert_eq(st1.allocated_bytes, st0.allocated_bytes);
  alloc_check(s);
  /* destroy() on a big tree loops over pieces by itself. */
  cr_assert_eq(shmd_rbtree_create(s, SHMD_RBTREE_BYTES, &t), 0);
  for (int i = 0; i < N; i++) {
    int kl = snprintf(k, sizeof k, "%d", i);
    cr_assert_eq(shmd_rbtree_put(s, t, k, (size_t)kl, v, 10, 0, NULL), 0);
  }
  cr_assert_eq(shmd_rbtree_destroy(s, t), 0);
  cr_assert_eq(shmd_stats(s, &st1), 0);
  cr_assert_eq(st1.allocated_bytes, st0.allocated_bytes);
  alloc_check(s);
  shmd_close(s);
}

Test(rbtree, wrong_kind_and_garbage, .init = ts_init, .fini = ts_fini) {
  shmd_store_t *s = ts_open("kind", 16 * MIB, 16 * MIB);
  shmd_ptr_t p;
  cr_assert_eq(shmd_alloc(s, 64, &p), 0);
  uint64_t *w = shmd_resolve(s, p);
  cr_assert_not_null(w);
  memset(w, 0, 64);
  w[0] = (UINT64_C(0x59525241) << 32) | UINT64_C(0x444D4853); /* another container kind */
  uint64_t n;
  cr_assert_eq(shmd_rbtree_len(s, p, &n), SHMD_EINVAL);
  cr_assert_eq(shmd_rbtree_check(s, p), SHMD_EINVAL);
  w[0] = 0x1234567;
  cr_assert_eq(shmd_rbtree_len(s, p, &n), SHMD_ECORRUPT);
  cr_assert_eq(shmd_rbtree_put(s, p, "k", 1, "v", 1, 0, NULL), SHMD_ECORRUPT);
  cr_assert_eq(shmd_rbtree_len(s, shmd_ptr_make(3000, 8), &n), SHMD_ECORRUPT);
  cr_assert_eq(shmd_rbtree_create(s, (shmd_rbtree_order_t)9, &p), SHMD_EINVAL);
  /* A damaged entry is reported by check, not crashed on. */
  shmd_ptr_t t;
  cr_assert_eq(shmd_rbtree_create(s, SHMD_RBTREE_BYTES, &t), 0);
  for (int i = 0; i < 100; i++) {
    char k[16];
    int kl = snprintf(k, sizeof k, "k%03d", i);
    cr_assert_eq(shmd_rbtree_put(s, t, k, (size_t)kl, "v", 1, 0, NULL), 0);
  }
  unsigned char kb[16];
  shmd_rbtree_item_t it = {kb, sizeof kb, 0, NULL, 0, 0, 0};
  cr_assert_eq(shmd_rbtree_select(s, t, 50, &it), 0);
  /* Find the entry's node: the root's descendants; simplest is to break the root's length word. */
  uint64_t *hdr = shmd_resolve(s, t);
  shmd_ptr_t rootnode = {hdr[3]}; /* magic, lock, order, root */
  uint32_t *lens = (uint32_t *)((unsigned char *)shmd_resolve(s, rootnode) + 32);
  uint32_t saved = lens[0];
  lens[0] = 5000; /* inline key longer than the inline limit */
  cr_assert_eq(shmd_rbtree_check(s, t), SHMD_ECORRUPT);
  lens[0] = saved;
  tree_check(s, t);
  cr_assert_eq(shmd_rbtree_destroy(s, t), 0);
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
      rc = shmd_rbtree_put(s, t, k, kl, v, rec.val_len, SHMD_RBTREE_UPSERT, NULL);
    } else {
      rc = shmd_rbtree_delete(s, t, k, kl);
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
    int rc = shmd_rbtree_get(s, t, k, kl, v, sizeof v, &vl);
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
  cr_assert_eq(shmd_rbtree_len(s, t, &n), 0);
  cr_assert_eq(n, expect);
}

static void make_tree_store(const char *name) {
  shmd_store_t *s = ts_open(name, 32 * MIB, 32 * MIB);
  shmd_ptr_t t;
  cr_assert_eq(shmd_rbtree_create(s, SHMD_RBTREE_BYTES, &t), 0);
  cr_assert_eq(shmd_root_set(s, "tree", t), 0);
  shmd_close(s);
}

Test(rbtree, mp_two_writers, .init = ts_init, .fini = ts_fini, .timeout = 120) {
  make_tree_store("mp");
  uint64_t seed = ts_seed("mp_two_writers");
  long ops = knob("SHMDICT_RB_STEPS", 30000);
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
  shmd_store_t *s = ts_open("mp", 32 * MIB, 32 * MIB);
  shmd_ptr_t t;
  cr_assert_eq(shmd_root_get(s, "tree", &t), 0);
  tree_check(s, t);
  verify_tree(s, t, ks, NULL);
  alloc_check(s);
  free(ks);
  shmd_close(s);
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
  ts_crash_check(s, TS_CHECK_ALLOC, "rbtree:tree");
  shmd_ptr_t t;
  cr_assert_eq(shmd_root_get(s, "tree", &t), 0);
  tree_check(s, t);
  verify_tree(s, t, ks, &ap.pending);
  shmd_close(s);
  return res.killed;
}

Test(rbtree, crash_random_kills, .init = ts_init, .fini = ts_fini, .timeout = 180) {
  make_tree_store("crash");
  ts_crash_t tc;
  ts_crash_begin(&tc, "crash_random_kills");
  ts_rng_t *rng = &tc.rng;
  kstate_t *ks = calloc(UNIVERSE, sizeof *ks);
  long rounds = knob("SHMDICT_RB_CRASH_ROUNDS", 150);
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

Test(rbtree, crash_points, .init = ts_init, .fini = ts_fini, .timeout = 180) {
  make_tree_store("points");
  ts_crash_t tc;
  ts_crash_begin(&tc, "crash_points");
  ts_rng_t *rng = &tc.rng;
  kstate_t *ks = calloc(UNIVERSE, sizeof *ks);
  static const char *points[] = {
      "rbtree.rotate",          "rbtree.insert.linked", "rbtree.insert.recolor",
      "rbtree.erase.unlinked",  "rbtree.erase.recolor", "rbtree.put.allocated",
      "rbtree.put.inserted",    "rbtree.put.updated",   "rbtree.put.replaced",
      "rbtree.delete.erased",   "rbtree.*",             "tx.before_commit",
  };
  const size_t np = sizeof points / sizeof points[0];
  long rounds = knob("SHMDICT_RB_CRASH_ROUNDS", 150) * 2;
  /* Fill the tree first so that deletes and rotations happen from the start. */
  crash_round(&tc, "points", NULL, 0, ts_next(rng), 2000, ks);
  int kills = 0;
  unsigned hit[16] = {0};
  for (long i = 0; i < rounds; i++) {
    size_t pi = (size_t)i % np;
    char spec[64];
    snprintf(spec, sizeof spec, "%s:%u", points[pi], 1 + (unsigned)ts_below(rng, 30));
    int k = crash_round(&tc, "points", spec, 0, ts_next(rng), 600, ks);
    kills += k;
    hit[pi] += (unsigned)k;
  }
  ts_crash_end(&tc);
  cr_log_info("crash_points: %d of %ld rounds killed", kills, rounds);
  for (size_t pi = 0; pi < np; pi++) {
    cr_log_info("crash point %s: killed %u times", points[pi], hit[pi]);
    cr_expect_gt(hit[pi], 0, "crash point %s never reached", points[pi]);
  }
  free(ks);
}

static int destroy_child(ts_crash_child_t *cc) {
  shmd_ptr_t ct;
  if (shmd_root_get(cc->s, "tree", &ct))
    return 80;
  return shmd_rbtree_destroy(cc->s, ct) == 0 ? 0 : 81;
}

Test(rbtree, crash_destroy, .init = ts_init, .fini = ts_fini, .timeout = 120) {
  shmd_store_t *s = ts_open("cdestroy", 32 * MIB, 32 * MIB);
  shmd_stats_t st0, st1;
  cr_assert_eq(shmd_stats(s, &st0), 0);
  shmd_ptr_t t;
  cr_assert_eq(shmd_rbtree_create(s, SHMD_RBTREE_I64, &t), 0);
  cr_assert_eq(shmd_root_set(s, "tree", t), 0);
  enum { N = 6000 };
  char big[300];
  memset(big, 'b', sizeof big);
  for (int64_t k = 0; k < N; k++)
    cr_assert_eq(shmd_rbtree_put(s, t, &k, 8, big, k % 7 == 0 ? sizeof big : 16, 0, NULL), 0);
  shmd_close(s);
  ts_crash_t tc;
  ts_crash_begin(&tc, "crash_destroy");
  uint64_t last = N;
  int destroyed = 0;
  for (int round = 0; round < 6 && !destroyed; round++) {
    /* Drawn in the parent, so each round's child dies at a different point. */
    char spec[64];
    snprintf(spec, sizeof spec, "rbtree.destroy.erased:%u", 50 + (unsigned)ts_below(&tc.rng, 800));
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
    ts_crash_check(s, TS_CHECK_ALLOC, "rbtree:tree");
    tree_check(s, t);
    uint64_t n;
    cr_assert_eq(shmd_rbtree_len(s, t, &n), 0);
    /* A kill inside a round's first batch rolls that batch back: no progress, but never growth. */
    cr_assert_leq(n, last);
    /* What is left is a suffix of the keys (destroy removes the smallest first). */
    int64_t first;
    shmd_rbtree_item_t it = {&first, 8, 0, NULL, 0, 0, 0};
    cr_assert_eq(shmd_rbtree_first(s, t, &it), 0);
    cr_assert_eq(first, (int64_t)(N - n));
    last = n;
    shmd_close(s);
  }
  ts_crash_end(&tc);
  s = ts_open("cdestroy", 32 * MIB, 32 * MIB);
  cr_assert_eq(shmd_root_get(s, "tree", &t), 0);
  if (!destroyed)
    cr_assert_eq(shmd_rbtree_destroy(s, t), 0);
  cr_assert_eq(shmd_root_del(s, "tree"), 0);
  cr_assert_eq(shmd_stats(s, &st1), 0);
  cr_assert_eq(st1.allocated_bytes, st0.allocated_bytes);
  alloc_check(s);
  shmd_close(s);
}
