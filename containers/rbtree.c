/* SPDX-License-Identifier: MIT */
/*
 * The intrusive red-black tree core: linking, rebalancing, subtree sizes and navigation for
 * shmd_rb_node_t, the node that shmdict's ordered containers (and users' own ones) embed. The keyed
 * map of containers/rbtree_map.c is built on it. This file takes no locks: the caller holds the
 * lock that protects the tree and passes its transaction, and every store made here into a tree is
 * logged in that transaction first.
 *
 * Design
 * ------
 * Representation. A node is four 8-byte words: parent_color (the parent's shmd_ptr_t with the
 * colour in bit 0, which is free because nodes are 8-byte aligned), left, right, and size (nodes in
 * the subtree). Links are shmd_ptr_t, so a tree can span segments and means the same in every
 * process. The root lives in a shmd_rb_root_t in the store; functions take a shmd_ptr_t to it.
 * A null child counts as black. Invariants: (1) the root is black, (2) a red node has no red child,
 * (3) every path from a node down to a null child meets the same number of black nodes, (4) size =
 * 1 + size(left) + size(right), (5) each child's parent link names its parent. (1)-(3) bound the
 * height by 2 log2(n + 1), which is why every loop here can be bounded by SHMD_RB_MAX_DEPTH.
 *
 * Logging. Every word written into a tree goes through wr(): if the value changes, the word is
 * logged with shmd_tx_log() (its shmd_ptr_t and old value) and then stored. Nothing is ordered
 * cleverly for crash safety: a process killed between any two stores has an active lane whose
 * undo log restores, newest first, exactly the tree as it was before the operation. The price is
 * one undo entry per changed word, bounded by O(log n) per operation (insert: the size path plus
 * at most two rotations of 8 words and O(log n) recolourings; erase: the size path plus at most
 * three rotations and O(log n) recolourings), far below the 2048-entry log.
 *
 * Subtree sizes. Insert links the new node as a leaf with size 1 and adds one to every node on the
 * path from its parent to the root; erase subtracts one along the path from the place that
 * physically loses a node (the erased node's parent, or its successor's parent when the successor
 * takes its place) to the root. After that the sizes are right for the new shape, and the
 * rebalancing only rotates, which changes the sizes of exactly the two rotated nodes (below).
 * Order statistics then follow: rank(x) = size(x.left) + the sum, over ancestors that x is in the
 * right subtree of, of size(ancestor.left) + 1; select(i) descends comparing i with size(left).
 *
 * Rotations. rotate(x, LEFT) moves x down to the left and its right child y up; RIGHT is the
 * mirror. Colours travel with the nodes (the fixups recolour explicitly). Sizes: y takes x's old
 * size (same set of nodes below), x gets 1 + size(a) + size(b).
 *
 *          p                                   p
 *          |                                   |
 *          x          rotate(x, LEFT)          y
 *         / \        --------------->         / \
 *        a   y                               x   c
 *           / \      <---------------       / \
 *          b   c      rotate(y, RIGHT)     a   b
 *
 * Insert fixup (z is red; its parent p is red, so the grandparent g exists and is black). With p
 * the left child of g (the right case is the mirror), u the uncle:
 *
 *   case 1, u red: recolour and continue from g (O(log n) times at most, no rotation)
 *
 *            g(B)                  g(R)  <- new z
 *           /    \                /    \
 *         p(R)   u(R)    -->    p(B)   u(B)
 *         /                     /
 *       z(R)                  z(R)
 *
 *   case 2, u black, z a right child: rotate(p, LEFT) and swap z, p, turning it into case 3
 *
 *            g(B)                  g(B)
 *           /    \                /    \
 *         p(R)   u(B)    -->    z(R)   u(B)
 *            \                  /
 *            z(R)             p(R)  <- new z
 *
 *   case 3, u black, z a left child: rotate(g, RIGHT), p black, g red; done
 *
 *            g(B)                  p(B)
 *           /    \                /    \
 *         p(R)   u(B)    -->    z(R)   g(R)
 *         /                               \
 *       z(R)                              u(B)
 *
 * Erase. A node with at most one child is replaced by that child. A node with two children is
 * replaced by its successor y (the leftmost node of its right subtree), which takes its place,
 * colour and size; y's own place is taken by y's right child. Either way the removed colour is the
 * colour of the node that physically left its place; if it was black, the path through x (the
 * child that moved up, possibly null, with parent xp) is one black short and the fixup runs.
 * Nodes keep their identity (no key swapping), because the nodes are embedded in users' structs.
 *
 * Erase fixup, with x the left child of xp (the right case is the mirror), w the sibling,
 * (B)/(R) colours, (?) either, and x "doubly black":
 *
 *   case 1, w red: rotate(xp, LEFT), recolour; x now has a black sibling (cases 2-4)
 *
 *          xp(B)                     w(B)
 *         /     \                   /    \
 *       x(B)    w(R)      -->    xp(R)   d(B)
 *               /  \             /   \
 *             c(B)  d(B)       x(B)  c(B)  <- new w
 *
 *   case 2, w black with two black children: w red, the deficit moves up to xp (if xp was red it
 *   turns black and we are done; else continue from xp)
 *
 *          xp(?)                    xp(?)  <- new x
 *         /     \                  /     \
 *       x(B)    w(B)      -->    x(B)    w(R)
 *               /  \                     /  \
 *             c(B)  d(B)               c(B)  d(B)
 *
 *   case 3, w black, near child c red, far child d black: rotate(w, RIGHT), recolour -> case 4
 *
 *          xp(?)                    xp(?)
 *         /     \                  /     \
 *       x(B)    w(B)      -->    x(B)    c(B)  <- new w
 *               /  \                        \
 *             c(R)  d(B)                    w(R)
 *                                              \
 *                                              d(B)
 *
 *   case 4, w black, far child d red: rotate(xp, LEFT), w takes xp's colour, xp and d black; done
 *
 *          xp(?)                     w(?)
 *         /     \                   /    \
 *       x(B)    w(B)      -->    xp(B)   d(B)
 *               /  \             /   \
 *             c(?)  d(R)       x(B)  c(?)
 *
 * Reads. The descents of insert / erase / rank / select use the fast resolve (one load and an
 * add, NULL for an unmapped segment or a misaligned pointer) and the depth bound; first / last /
 * next / prev, used for iteration, and shmd_rb_check resolve with bounds checks.
 */
#include <stddef.h>
#include <string.h>

#include "segments/crash.h"
#include "segments/err.h"
#include "shmdict/error.h"
#include "shmdict/rbtree.h"

/* ---------------------------------------------------------------------------------------------- */
/* Context and logged stores */

enum { OFF_PC = 0, OFF_LEFT = 8, OFF_RIGHT = 16, OFF_SIZE = 24 };

typedef struct rbc_s {
  shmd_store_t *s;
  shmd_tx_t *tx;
  shmd_ptr_t root;   /* the shmd_rb_root_t */
  shmd_rb_root_t *r; /* its address */
} rbc_t;

static int ctx_init(rbc_t *c, shmd_tx_t *tx, shmd_ptr_t root) {
  c->tx = tx;
  c->s = shmd_tx_store(tx);
  c->root = root;
  if ((root.v & 7u) != 0 || (c->r = (shmd_rb_root_t *)shmd_resolve(c->s, root)) == NULL)
    return SHMD_CORRUPT_RC("rbtree: bad root pointer");
  return 0;
}

/* Resolves a node for a descent, or NULL. */
static inline shmd_rb_node_t *N(const rbc_t *c, shmd_ptr_t p) { return shmd_rb_node(c->s, p); }

#define NODE(var, ptr)                                                                             \
  shmd_rb_node_t *var = N(c, (ptr));                                                               \
  if (var == NULL)                                                                                 \
  return SHMD_CORRUPT_RC("rbtree: bad node pointer")

/* The logged store: the word at byte `off` of the object at `base` (address `addr`) becomes `v`. */
static inline int wr(rbc_t *c, shmd_ptr_t base, void *addr, size_t off, uint64_t v) {
  uint64_t *w = (uint64_t *)(void *)((unsigned char *)addr + off);
  if (*w == v)
    return 0;
  int rc = shmd_tx_log(c->tx, shmd_ptr_add(base, off), 8);
  if (rc)
    return rc;
  *w = v;
  return 0;
}

static inline shmd_ptr_t child(const shmd_rb_node_t *n, int dir) { return dir ? n->right : n->left; }

static inline int set_child(rbc_t *c, shmd_ptr_t p, shmd_rb_node_t *n, int dir, shmd_ptr_t v) {
  return wr(c, p, n, dir ? OFF_RIGHT : OFF_LEFT, v.v);
}
static inline int set_pc(rbc_t *c, shmd_ptr_t p, shmd_rb_node_t *n, uint64_t pc) {
  return wr(c, p, n, OFF_PC, pc);
}
static inline int set_parent(rbc_t *c, shmd_ptr_t p, shmd_rb_node_t *n, shmd_ptr_t parent) {
  return wr(c, p, n, OFF_PC, parent.v | (n->parent_color & 1u));
}
static inline int set_color(rbc_t *c, shmd_ptr_t p, shmd_rb_node_t *n, unsigned color) {
  return wr(c, p, n, OFF_PC, (n->parent_color & ~(uint64_t)1) | color);
}
static inline int set_size(rbc_t *c, shmd_ptr_t p, shmd_rb_node_t *n, uint64_t size) {
  return wr(c, p, n, OFF_SIZE, size);
}

static inline int is_red(const shmd_rb_node_t *n) {
  return n != NULL && shmd_rb_color(n) == SHMD_RB_RED;
}

static int size_of(const rbc_t *c, shmd_ptr_t p, uint64_t *out) {
  if (p.v == 0) {
    *out = 0;
    return 0;
  }
  NODE(n, p);
  *out = n->size;
  return 0;
}

/* In `parent` (null: the root), replaces the link to `old` by one to `new`. */
static int change_child(rbc_t *c, shmd_ptr_t old, shmd_ptr_t new_, shmd_ptr_t parent) {
  if (parent.v == 0) {
    if (c->r->node.v != old.v)
      return SHMD_CORRUPT_RC("rbtree: root link does not name the root");
    return wr(c, c->root, c->r, 0, new_.v);
  }
  NODE(pn, parent);
  if (pn->left.v == old.v)
    return set_child(c, parent, pn, 0, new_);
  if (pn->right.v == old.v)
    return set_child(c, parent, pn, 1, new_);
  return SHMD_CORRUPT_RC("rbtree: parent does not link to its child");
}

/* ---------------------------------------------------------------------------------------------- */
/* Rotation (diagram in the essay): x goes down on side `dir`, its other child y comes up. */

static int rotate(rbc_t *c, shmd_ptr_t x, int dir) {
  NODE(xn, x);
  shmd_ptr_t y = child(xn, !dir);
  NODE(yn, y);
  shmd_ptr_t b = child(yn, dir), a = child(xn, dir), p = shmd_rb_parent(xn);
  uint64_t xsize = xn->size, asize, bsize;
  SHMD_TRY(size_of(c, a, &asize));
  SHMD_TRY(size_of(c, b, &bsize));
  SHMD_TRY(set_child(c, x, xn, !dir, b));
  if (b.v != 0) {
    NODE(bn, b);
    SHMD_TRY(set_parent(c, b, bn, x));
  }
  SHMD_CRASH_POINT("rbtree.rotate");
  SHMD_TRY(set_child(c, y, yn, dir, x));
  SHMD_TRY(set_pc(c, y, yn, p.v | shmd_rb_color(yn)));
  SHMD_TRY(set_pc(c, x, xn, y.v | shmd_rb_color(xn)));
  SHMD_TRY(change_child(c, x, y, p));
  SHMD_TRY(set_size(c, y, yn, xsize));
  SHMD_TRY(set_size(c, x, xn, 1 + asize + bsize));
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Insert */

static int insert_fixup(rbc_t *c, shmd_ptr_t z) {
  for (unsigned iter = 0;; iter++) {
    if (iter > SHMD_RB_MAX_DEPTH)
      return SHMD_CORRUPT_RC("rbtree: insert fixup does not terminate");
    NODE(zn, z);
    shmd_ptr_t p = shmd_rb_parent(zn);
    if (p.v == 0)
      break;
    NODE(pn, p);
    if (shmd_rb_color(pn) == SHMD_RB_BLACK)
      break;
    shmd_ptr_t g = shmd_rb_parent(pn);
    if (g.v == 0) { /* a red root: only seen in a tree damaged elsewhere; repair it */
      SHMD_TRY(set_color(c, p, pn, SHMD_RB_BLACK));
      break;
    }
    NODE(gn, g);
    int dir; /* side of p under g */
    if (gn->left.v == p.v)
      dir = 0;
    else if (gn->right.v == p.v)
      dir = 1;
    else
      return SHMD_CORRUPT_RC("rbtree: grandparent does not link to parent");
    shmd_ptr_t u = child(gn, !dir);
    shmd_rb_node_t *un = NULL;
    if (u.v != 0 && (un = N(c, u)) == NULL)
      return SHMD_CORRUPT_RC("rbtree: bad uncle pointer");
    if (is_red(un)) { /* case 1 */
      SHMD_TRY(set_color(c, p, pn, SHMD_RB_BLACK));
      SHMD_TRY(set_color(c, u, un, SHMD_RB_BLACK));
      SHMD_TRY(set_color(c, g, gn, SHMD_RB_RED));
      SHMD_CRASH_POINT("rbtree.insert.recolor");
      z = g;
      continue;
    }
    if (child(pn, !dir).v == z.v) { /* case 2 */
      SHMD_TRY(rotate(c, p, dir));
      shmd_ptr_t t = z;
      z = p;
      p = t;
      pn = N(c, p);
      if (pn == NULL)
        return SHMD_CORRUPT_RC("rbtree: bad node pointer");
    }
    /* case 3 */
    SHMD_TRY(set_color(c, p, pn, SHMD_RB_BLACK));
    SHMD_TRY(set_color(c, g, gn, SHMD_RB_RED));
    SHMD_TRY(rotate(c, g, !dir));
    break;
  }
  shmd_ptr_t r = c->r->node;
  NODE(rn, r);
  return set_color(c, r, rn, SHMD_RB_BLACK);
}

/* Adds `delta` (+1 or -1, as a two's complement word) to the sizes from `p` up to the root,
 * skipping `skip`. */
static int adjust_path(rbc_t *c, shmd_ptr_t p, uint64_t delta, shmd_ptr_t skip) {
  for (unsigned depth = 0; p.v != 0; depth++) {
    if (depth >= SHMD_RB_MAX_DEPTH)
      return SHMD_CORRUPT_RC("rbtree: parent chain too long");
    NODE(pn, p);
    if (p.v != skip.v)
      SHMD_TRY(set_size(c, p, pn, pn->size + delta));
    p = shmd_rb_parent(pn);
  }
  return 0;
}

int shmd_rb_insert_node(shmd_tx_t *tx, shmd_ptr_t root, shmd_ptr_t node, shmd_ptr_t parent,
                        int right) {
  rbc_t cc, *c = &cc;
  SHMD_TRY(ctx_init(c, tx, root));
  right = right != 0;
  shmd_rb_node_t *nn = N(c, node);
  if (nn == NULL)
    return SHMD_EINVAL;
  if (parent.v == 0) {
    if (c->r->node.v != 0)
      return SHMD_EINVAL;
  } else {
    NODE(pn, parent);
    if (child(pn, right).v != 0)
      return SHMD_EINVAL;
  }
  /* The node's own words: logged too, since it may be a node erased earlier in this transaction. */
  SHMD_TRY(shmd_tx_log(tx, node, sizeof *nn));
  nn->parent_color = parent.v | SHMD_RB_RED;
  nn->left.v = 0;
  nn->right.v = 0;
  nn->size = 1;
  if (parent.v == 0) {
    SHMD_TRY(wr(c, c->root, c->r, 0, node.v));
  } else {
    shmd_rb_node_t *pn = N(c, parent);
    SHMD_TRY(set_child(c, parent, pn, right, node));
  }
  SHMD_TRY(adjust_path(c, parent, 1, shmd_ptr_null()));
  SHMD_CRASH_POINT("rbtree.insert.linked");
  return insert_fixup(c, node);
}

/* ---------------------------------------------------------------------------------------------- */
/* Erase */

static int erase_fixup(rbc_t *c, shmd_ptr_t x, shmd_ptr_t xp) {
  for (unsigned iter = 0;; iter++) {
    if (iter > SHMD_RB_MAX_DEPTH)
      return SHMD_CORRUPT_RC("rbtree: erase fixup does not terminate");
    if (xp.v == 0)
      break; /* x is the root */
    if (x.v != 0) {
      NODE(xn, x);
      if (shmd_rb_color(xn) == SHMD_RB_RED)
        break;
    }
    NODE(xpn, xp);
    int dir; /* side of x under xp */
    if (xpn->left.v == x.v)
      dir = 0;
    else if (xpn->right.v == x.v)
      dir = 1;
    else
      return SHMD_CORRUPT_RC("rbtree: parent does not link to its child");
    shmd_ptr_t w = child(xpn, !dir);
    shmd_rb_node_t *wn = N(c, w);
    if (wn == NULL)
      return SHMD_CORRUPT_RC("rbtree: black-height deficit without a sibling");
    if (shmd_rb_color(wn) == SHMD_RB_RED) { /* case 1 */
      SHMD_TRY(set_color(c, w, wn, SHMD_RB_BLACK));
      SHMD_TRY(set_color(c, xp, xpn, SHMD_RB_RED));
      SHMD_TRY(rotate(c, xp, dir));
      w = child(xpn, !dir);
      if ((wn = N(c, w)) == NULL)
        return SHMD_CORRUPT_RC("rbtree: black-height deficit without a sibling");
    }
    shmd_ptr_t near = child(wn, dir), far = child(wn, !dir);
    shmd_rb_node_t *nearn = NULL, *farn = NULL;
    if ((near.v != 0 && (nearn = N(c, near)) == NULL) || (far.v != 0 && (farn = N(c, far)) == NULL))
      return SHMD_CORRUPT_RC("rbtree: bad node pointer");
    if (!is_red(nearn) && !is_red(farn)) { /* case 2 */
      SHMD_TRY(set_color(c, w, wn, SHMD_RB_RED));
      SHMD_CRASH_POINT("rbtree.erase.recolor");
      x = xp;
      xp = shmd_rb_parent(xpn);
      continue;
    }
    if (!is_red(farn)) { /* case 3 */
      SHMD_TRY(set_color(c, near, nearn, SHMD_RB_BLACK));
      SHMD_TRY(set_color(c, w, wn, SHMD_RB_RED));
      SHMD_TRY(rotate(c, w, !dir));
      w = child(xpn, !dir);
      if ((wn = N(c, w)) == NULL)
        return SHMD_CORRUPT_RC("rbtree: bad node pointer");
      far = child(wn, !dir);
      if ((farn = N(c, far)) == NULL)
        return SHMD_CORRUPT_RC("rbtree: bad node pointer");
    }
    /* case 4 */
    SHMD_TRY(set_color(c, w, wn, shmd_rb_color(xpn)));
    SHMD_TRY(set_color(c, xp, xpn, SHMD_RB_BLACK));
    SHMD_TRY(set_color(c, far, farn, SHMD_RB_BLACK));
    SHMD_TRY(rotate(c, xp, dir));
    x = c->r->node;
    break;
  }
  if (x.v != 0) {
    NODE(xn, x);
    SHMD_TRY(set_color(c, x, xn, SHMD_RB_BLACK));
  }
  return 0;
}

int shmd_rb_erase(shmd_tx_t *tx, shmd_ptr_t root, shmd_ptr_t node) {
  rbc_t cc, *c = &cc;
  SHMD_TRY(ctx_init(c, tx, root));
  NODE(zn, node);
  shmd_ptr_t zl = zn->left, zr = zn->right, zp = shmd_rb_parent(zn);
  shmd_ptr_t x, xp;
  unsigned removed;
  if (zl.v == 0 || zr.v == 0) {
    x = zl.v ? zl : zr;
    xp = zp;
    removed = shmd_rb_color(zn);
    SHMD_TRY(adjust_path(c, zp, (uint64_t)-1, shmd_ptr_null()));
    SHMD_TRY(change_child(c, node, x, zp));
    if (x.v != 0) {
      NODE(xn, x);
      SHMD_TRY(set_parent(c, x, xn, zp));
    }
  } else {
    shmd_ptr_t y = zr;
    shmd_rb_node_t *yn = N(c, y);
    for (unsigned depth = 0; yn != NULL && yn->left.v != 0; depth++) {
      if (depth >= SHMD_RB_MAX_DEPTH)
        return SHMD_CORRUPT_RC("rbtree: left spine too long");
      y = yn->left;
      yn = N(c, y);
    }
    if (yn == NULL)
      return SHMD_CORRUPT_RC("rbtree: bad node pointer");
    removed = shmd_rb_color(yn);
    x = yn->right;
    shmd_ptr_t yp = shmd_rb_parent(yn);
    SHMD_TRY(adjust_path(c, yp, (uint64_t)-1, node));
    if (yp.v == node.v) {
      xp = y;
    } else {
      xp = yp;
      SHMD_TRY(change_child(c, y, x, yp));
      if (x.v != 0) {
        NODE(xn, x);
        SHMD_TRY(set_parent(c, x, xn, yp));
      }
      SHMD_TRY(set_child(c, y, yn, 1, zr));
      NODE(zrn, zr);
      SHMD_TRY(set_parent(c, zr, zrn, y));
    }
    SHMD_TRY(set_child(c, y, yn, 0, zl));
    NODE(zln, zl);
    SHMD_TRY(set_parent(c, zl, zln, y));
    SHMD_TRY(change_child(c, node, y, zp));
    SHMD_TRY(set_pc(c, y, yn, zn->parent_color));
    SHMD_TRY(set_size(c, y, yn, zn->size - 1));
  }
  SHMD_CRASH_POINT("rbtree.erase.unlinked");
  if (removed == SHMD_RB_BLACK)
    SHMD_TRY(erase_fixup(c, x, xp));
  return 0;
}

int shmd_rb_replace(shmd_tx_t *tx, shmd_ptr_t root, shmd_ptr_t victim, shmd_ptr_t repl) {
  rbc_t cc, *c = &cc;
  SHMD_TRY(ctx_init(c, tx, root));
  NODE(vn, victim);
  shmd_rb_node_t *rn = N(c, repl);
  if (rn == NULL)
    return SHMD_EINVAL;
  SHMD_TRY(shmd_tx_log(tx, repl, sizeof *rn));
  *rn = *vn;
  SHMD_TRY(change_child(c, victim, repl, shmd_rb_parent(vn)));
  for (int dir = 0; dir < 2; dir++) {
    shmd_ptr_t ch = child(vn, dir);
    if (ch.v != 0) {
      NODE(chn, ch);
      SHMD_TRY(set_parent(c, ch, chn, repl));
    }
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Navigation (bounds-checked) */

static int chk(shmd_store_t *s, shmd_ptr_t p, const shmd_rb_node_t **out) {
  void *a;
  if ((p.v & 7u) != 0 || shmd_resolve_checked(s, p, sizeof(shmd_rb_node_t), &a) != 0)
    return SHMD_CORRUPT_RC("rbtree: node pointer outside the store");
  *out = (const shmd_rb_node_t *)a;
  return 0;
}

static int root_chk(shmd_store_t *s, shmd_ptr_t root, shmd_ptr_t *top) {
  void *a;
  if ((root.v & 7u) != 0 || shmd_resolve_checked(s, root, sizeof(shmd_rb_root_t), &a) != 0)
    return SHMD_CORRUPT_RC("rbtree: root pointer outside the store");
  *top = ((const shmd_rb_root_t *)a)->node;
  return 0;
}

/* The extreme node (dir 0: leftmost) of the subtree at p (non-null). */
static int extreme(shmd_store_t *s, shmd_ptr_t p, int dir, shmd_ptr_t *out) {
  const shmd_rb_node_t *n;
  for (unsigned depth = 0;; depth++) {
    if (depth >= SHMD_RB_MAX_DEPTH)
      return SHMD_CORRUPT_RC("rbtree: spine too long");
    SHMD_TRY(chk(s, p, &n));
    shmd_ptr_t next = child(n, dir);
    if (next.v == 0)
      break;
    p = next;
  }
  *out = p;
  return 0;
}

static int first_last(shmd_store_t *s, shmd_ptr_t root, int dir, shmd_ptr_t *out) {
  shmd_ptr_t top;
  SHMD_TRY(root_chk(s, root, &top));
  if (top.v == 0)
    return SHMD_ENOTFOUND;
  return extreme(s, top, dir, out);
}

int shmd_rb_first(shmd_store_t *s, shmd_ptr_t root, shmd_ptr_t *out) {
  return first_last(s, root, 0, out);
}
int shmd_rb_last(shmd_store_t *s, shmd_ptr_t root, shmd_ptr_t *out) {
  return first_last(s, root, 1, out);
}

/* dir 1: successor, 0: predecessor. */
static int step(shmd_store_t *s, shmd_ptr_t node, int dir, shmd_ptr_t *out) {
  const shmd_rb_node_t *n;
  SHMD_TRY(chk(s, node, &n));
  shmd_ptr_t ch = child(n, dir);
  if (ch.v != 0)
    return extreme(s, ch, !dir, out);
  shmd_ptr_t cur = node, p = shmd_rb_parent(n);
  for (unsigned depth = 0; p.v != 0; depth++) {
    if (depth >= SHMD_RB_MAX_DEPTH)
      return SHMD_CORRUPT_RC("rbtree: parent chain too long");
    const shmd_rb_node_t *pn;
    SHMD_TRY(chk(s, p, &pn));
    if (child(pn, dir).v != cur.v) {
      *out = p;
      return 0;
    }
    cur = p;
    p = shmd_rb_parent(pn);
  }
  return SHMD_ENOTFOUND;
}

int shmd_rb_next(shmd_store_t *s, shmd_ptr_t node, shmd_ptr_t *out) {
  return step(s, node, 1, out);
}
int shmd_rb_prev(shmd_store_t *s, shmd_ptr_t node, shmd_ptr_t *out) {
  return step(s, node, 0, out);
}

/* ---------------------------------------------------------------------------------------------- */
/* Order statistics (fast resolve, depth-bounded) */

static inline int fsize(shmd_store_t *s, shmd_ptr_t p, uint64_t *out) {
  if (p.v == 0) {
    *out = 0;
    return 0;
  }
  const shmd_rb_node_t *n = shmd_rb_node(s, p);
  if (n == NULL)
    return SHMD_CORRUPT_RC("rbtree: bad node pointer");
  *out = n->size;
  return 0;
}

int shmd_rb_rank(shmd_store_t *s, shmd_ptr_t node, uint64_t *rank) {
  const shmd_rb_node_t *n = shmd_rb_node(s, node);
  if (n == NULL)
    return SHMD_CORRUPT_RC("rbtree: bad node pointer");
  uint64_t r, ls;
  SHMD_TRY(fsize(s, n->left, &r));
  shmd_ptr_t cur = node, p = shmd_rb_parent(n);
  for (unsigned depth = 0; p.v != 0; depth++) {
    if (depth >= SHMD_RB_MAX_DEPTH)
      return SHMD_CORRUPT_RC("rbtree: parent chain too long");
    const shmd_rb_node_t *pn = shmd_rb_node(s, p);
    if (pn == NULL)
      return SHMD_CORRUPT_RC("rbtree: bad node pointer");
    if (pn->right.v == cur.v) {
      SHMD_TRY(fsize(s, pn->left, &ls));
      r += ls + 1;
    }
    cur = p;
    p = shmd_rb_parent(pn);
  }
  *rank = r;
  return 0;
}

int shmd_rb_select(shmd_store_t *s, shmd_ptr_t root, uint64_t index, shmd_ptr_t *out) {
  const shmd_rb_root_t *r = (root.v & 7u) ? NULL : (const shmd_rb_root_t *)shmd_resolve(s, root);
  if (r == NULL)
    return SHMD_CORRUPT_RC("rbtree: bad root pointer");
  shmd_ptr_t p = r->node;
  for (unsigned depth = 0; p.v != 0; depth++) {
    const shmd_rb_node_t *n = shmd_rb_node(s, p);
    if (n == NULL || depth >= SHMD_RB_MAX_DEPTH)
      return SHMD_CORRUPT_RC("rbtree: bad node pointer or tree too deep");
    if (depth == 0 && index >= n->size)
      return SHMD_ENOTFOUND;
    /* The left child's size decides between the children: fetch the right one meanwhile. */
    if (n->right.v)
      __builtin_prefetch(shmd_resolve(s, n->right));
    uint64_t ls;
    SHMD_TRY(fsize(s, n->left, &ls));
    if (index < ls) {
      p = n->left;
    } else if (index == ls) {
      *out = p;
      return 0;
    } else {
      index -= ls + 1;
      p = n->right;
    }
  }
  return r->node.v == 0 ? SHMD_ENOTFOUND : SHMD_CORRUPT_RC("rbtree: subtree sizes disagree with the shape");
}

int shmd_rb_count(shmd_store_t *s, shmd_ptr_t root, uint64_t *count) {
  const shmd_rb_root_t *r = (root.v & 7u) ? NULL : (const shmd_rb_root_t *)shmd_resolve(s, root);
  if (r == NULL)
    return SHMD_CORRUPT_RC("rbtree: bad root pointer");
  return fsize(s, r->node, count);
}

/* ---------------------------------------------------------------------------------------------- */
/* Checker */

typedef struct check_s {
  shmd_store_t *s;
  uint64_t max_nodes, seen;
  shmd_rb_visit_fn visit;
  void *arg;
} check_t;

/* Checks the subtree at p (whose parent must be `parent`, of colour parent_color); stores its
 * black height (null children count 1) and size. */
static int check_rec(check_t *k, shmd_ptr_t p, shmd_ptr_t parent, unsigned parent_color,
                     unsigned depth, uint64_t *bh, uint64_t *size) {
  if (p.v == 0) {
    *bh = 1;
    *size = 0;
    return 0;
  }
  if (depth >= SHMD_RB_MAX_DEPTH)
    return SHMD_CORRUPT_RC("rbtree: tree deeper than any valid red-black tree");
  const shmd_rb_node_t *n;
  SHMD_TRY(chk(k->s, p, &n));
  if ((n->parent_color & 6u) != 0)
    return SHMD_CORRUPT_RC("rbtree: stray bits in a parent link");
  if (shmd_rb_parent(n).v != parent.v)
    return SHMD_CORRUPT_RC("rbtree: parent link does not name the parent");
  unsigned color = shmd_rb_color(n);
  if (color == SHMD_RB_RED && parent_color == SHMD_RB_RED)
    return SHMD_CORRUPT_RC("rbtree: red node with a red child");
  uint64_t lbh, rbh, ls, rs;
  SHMD_TRY(check_rec(k, n->left, p, color, depth + 1, &lbh, &ls));
  if (++k->seen > k->max_nodes)
    return SHMD_CORRUPT_RC("rbtree: more nodes than the bound");
  if (k->visit != NULL)
    SHMD_TRY(k->visit(k->s, p, n, k->arg));
  SHMD_TRY(check_rec(k, n->right, p, color, depth + 1, &rbh, &rs));
  if (lbh != rbh)
    return SHMD_CORRUPT_RC("rbtree: black heights differ");
  if (n->size != ls + rs + 1)
    return SHMD_CORRUPT_RC("rbtree: subtree size is wrong");
  *bh = lbh + (color == SHMD_RB_BLACK);
  *size = n->size;
  return 0;
}

int shmd_rb_check(shmd_store_t *s, shmd_ptr_t root, uint64_t max_nodes, shmd_rb_visit_fn visit,
                  void *arg, uint64_t *count) {
  shmd_ptr_t top;
  SHMD_TRY(root_chk(s, root, &top));
  check_t k = {s, max_nodes, 0, visit, arg};
  if (top.v != 0) {
    const shmd_rb_node_t *n;
    SHMD_TRY(chk(s, top, &n));
    if (shmd_rb_color(n) != SHMD_RB_BLACK)
      return SHMD_CORRUPT_RC("rbtree: red root");
  }
  uint64_t bh, size;
  /* The root's "parent colour" is black, so a red root is reported above, not as red-red. */
  SHMD_TRY(check_rec(&k, top, shmd_ptr_null(), SHMD_RB_BLACK, 0, &bh, &size));
  if (size != k.seen)
    return SHMD_CORRUPT_RC("rbtree: root size differs from the number of nodes");
  if (count != NULL)
    *count = k.seen;
  return 0;
}
