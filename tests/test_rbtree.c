/* SPDX-License-Identifier: MIT */
/*
 * Tests of the red-black tree: the intrusive core (every delete case, rollback of every case,
 * corruption detection) here, and the keyed map through the ordered-map tests it shares with the
 * B+tree (tests/omap_tests.h: property tests against a sorted-array model for every ordering,
 * rank / select / walks, inline and out-of-line storage, destroy in pieces, the caller's
 * transaction, two writer processes (mp_), and SIGKILLed writers (crash_) at random moments and at
 * the crash points inside insert, delete, rotations and destroy).
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

/* The adapter of tests/omap_tests.h: the keyed map is shmd_rbtree_*. */
#define OM(x) shmd_rbtree_##x
#define OMK(x) SHMD_RBTREE_##x
#define OM_SUITE rbtree
#define OM_NAME "rbtree"
#define OM_ENV "SHMDICT_RB"
#define OM_KEYS_NEAR_INLINE 0
#define OM_OOL_KEY_LENS {0, 1, 255, 256, 257, 4000}
#define OM_OOL_VAL_LENS {0, 3, 256, 257, 100, 9000, 8, 65536, 256, 0}
#define OM_CRASH_TIMEOUT 180
#define OM_CRASH_POINTS                                                                            \
  {                                                                                                \
    {"rbtree.rotate", 30}, {"rbtree.insert.linked", 30}, {"rbtree.insert.recolor", 30},            \
        {"rbtree.erase.unlinked", 30}, {"rbtree.erase.recolor", 30}, {"rbtree.put.allocated", 30}, \
        {"rbtree.put.inserted", 30}, {"rbtree.put.updated", 30}, {"rbtree.put.replaced", 30},      \
        {"rbtree.delete.erased", 30}, {"rbtree.*", 30}, {"tx.before_commit", 30},                  \
  }
#define OM_DESTROY_POINT "rbtree.destroy.erased"
#define OM_DESTROY_FIRST 50
#define OM_DESTROY_SPAN 800
#include "omap_tests.h"

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
/* The keyed map: what tests/omap_tests.h leaves to this suite                                    */
/* ============================================================================================== */

static long om_crash_rounds(void) { return knob("SHMDICT_RB_CRASH_ROUNDS", 150); }

/* The layout of containers/rbtree_map.c: a damaged entry is reported by check, not crashed on. */
static void om_damage_checks(shmd_store_t *s, shmd_ptr_t t) {
  /* Find the entry's node: the root's descendants; simplest is to break the root's length word. */
  uint64_t *hdr = shmd_resolve(s, t);
  shmd_ptr_t rootnode = {hdr[3]}; /* magic, lock, order, root */
  uint32_t *lens = (uint32_t *)((unsigned char *)shmd_resolve(s, rootnode) + 32);
  uint32_t saved = lens[0];
  lens[0] = 5000; /* inline key longer than the inline limit */
  cr_assert_eq(shmd_rbtree_check(s, t), SHMD_ECORRUPT);
  lens[0] = saved;
}
