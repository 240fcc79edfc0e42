/* SPDX-License-Identifier: MIT */
/*
 * COPY source destination [DB destination-db] [REPLACE] (Redis 7.0's copyCommand: its order of
 * checks and its replies). A string is copied (its bytes live in the record); a list, set, hash
 * or sorted set is copied element by element through DUMP's reader and RESTORE's builder
 * (kv/rdb.c), so COPY does not depend on how a type keeps its elements. The time to live goes
 * with the value.
 *
 * Locks: the dispatcher takes none for COPY; the handler takes the stripes of both keys, in
 * database order when the destination is another database (MOVE's order, the one FLUSHALL and
 * EXEC use), so two COPYs between the same databases in opposite directions cannot deadlock.
 */
#include <limits.h>
#include <stdlib.h>

#include "kv/cmd.h"
#include "kv/rdb.h"
#include "segments/err.h"

/* The destination database of COPY's arguments, parsed as Redis does (the dispatcher creates it
 * before the transaction, as for MOVE). 0 with *db, or 1 when x got Redis's error reply. */
static int copy_options(cc_t *x, unsigned *db, int *replace) {
  *db = x->c->dbi;
  *replace = 0;
  for (int j = 3; j < x->argc; j++) {
    int more = x->argc - j - 1;
    if (eq(A(j), L(j), "replace")) {
      *replace = 1;
    } else if (eq(A(j), L(j), "db") && more >= 1) {
      long long d;
      if (parse_ll(A(j + 1), L(j + 1), &d)) {
        r_error(x->r, ERR_NOTINT);
        return 1;
      }
      if (d < INT_MIN || d > INT_MAX) {
        r_error(x->r, "ERR value is out of range, value must between %d and %d", INT_MIN, INT_MAX);
        return 1;
      }
      if (d < 0 || d >= KV_NDB) {
        r_error(x->r, "ERR DB index is out of range");
        return 1;
      }
      *db = (unsigned)d;
      j++;
    } else {
      r_error(x->r, ERR_SYNTAX);
      return 1;
    }
  }
  return 0;
}

/* A context for database d inside x's transaction, holding none of its stripes (db.c's other_db). */
static int copy_other_db(cc_t *x, unsigned d, kv_ctx_t *o) {
  shmd_ptr_t dp;
  int rc = kv_db_get(x->c->tx, d, 0, &dp);
  if (rc)
    return rc == SHMD_ENOTFOUND ? SHMD_ECORRUPT : rc; /* the dispatcher made it */
  *o = *x->c;
  o->dbi = d;
  o->dbp = dp;
  o->locked = 0;
  o->garbage = 0;
  return kv_db_view(x->c->s, dp, &o->db);
}

/* Copies the container value at A(1) (in x's database) to key in dst's database. */
static int copy_deep(cc_t *x, kv_ctx_t *dst, const void *key, size_t klen, uint64_t expire) {
  unsigned char *p;
  size_t n;
  int rc = shmd__kv_dump_value(x, A(1), L(1), &p, &n);
  if (rc)
    return rc;
  kv_rdbval_t v;
  rc = shmd__kv_rdb_decode(p, n, &v);
  if (rc == 0) {
    cc_t y = *x;
    y.c = dst;
    rc = shmd__kv_rdb_build(&y, key, klen, &v, expire);
    shmd__kv_rdb_free(&v);
  } else if (rc > 0) {
    shmd__set_detail("kv: COPY could not read back its own payload");
    rc = SHMD_ECORRUPT;
  }
  free(p);
  return rc;
}

int shmd__kv_cmd_copy(cc_t *x) {
  unsigned d;
  int replace;
  if (copy_options(x, &d, &replace))
    return 0;
  if (d == x->c->dbi && L(1) == L(2) && memcmp(A(1), A(2), L(1)) == 0)
    return r_error(x->r, "ERR source and destination objects are the same");
  kv_ctx_t other, *dst = x->c;
  unsigned s1 = 1u << kv_stripe_of(A(1), L(1)), s2 = 1u << kv_stripe_of(A(2), L(2));
  int rc;
  if (d == x->c->dbi) {
    rc = kv_lock_stripes(x->c, s1 | s2);
  } else {
    if ((rc = copy_other_db(x, d, &other)))
      return rc;
    dst = &other;
    if (d < x->c->dbi)
      rc = kv_lock_stripes(dst, s2);
    if (rc == 0)
      rc = kv_lock_stripes(x->c, s1);
    if (rc == 0)
      rc = kv_lock_stripes(dst, s2);
  }
  if (rc)
    return rc;
  kv_ref_t src, old;
  if ((rc = kv_lookup(x->c, A(1), L(1), &src)) == SHMD_ENOTFOUND)
    return r_int(x->r, 0);
  if (rc)
    return rc;
  uint64_t expire = src.rec->expire;
  uint32_t type = src.rec->type;
  rc = kv_lookup(dst, A(2), L(2), &old);
  if (rc == 0 && !replace)
    rc = r_int(x->r, 0);
  else if (rc == 0 || rc == SHMD_ENOTFOUND) {
    rc = rc == 0 ? kv_delete(dst, A(2), L(2)) : 0;
    if (rc == 0 && (rc = kv_lookup(x->c, A(1), L(1), &src)) == 0) /* the delete may have moved it */
      rc = type == KV_STRING ? kv_put_string(dst, A(2), L(2), src.data, src.len, NULL, 0, expire)
                             : copy_deep(x, dst, A(2), L(2), expire);
    if (rc == 0 && dst != x->c)
      rc = kv_touch(dst, A(2), L(2)); /* WATCH: the dispatcher bumps keys of the current database */
    if (rc == 0)
      rc = r_int(x->r, 1);
  }
  if (dst != x->c && dst->garbage)
    x->c->garbage = 1;
  return rc;
}
