/* SPDX-License-Identifier: MIT */
/*
 * COPY source destination [DB destination-db] [REPLACE] (Redis 7.0's copyCommand: its order of
 * checks and its replies), by implicit sharing: a string is copied (its bytes live in the record);
 * a list, set, hash or sorted set is not copied at all: both records name one shared block that
 * holds the containers and a reference count (see "Shared values" in keyspace.c), so COPY is
 * O(1) whatever the value's size. The time to live goes with the record.
 *
 * Detaching (shmd__kv_detach, below) is the other half: the first write to a shared value gives
 * the written key containers of its own, copied element by element through DUMP's reader and
 * RESTORE's builder (kv/rdb.c), so the copy does not depend on how a type keeps its elements;
 * the last reference takes the block's containers back in O(1). The single place writes reach a
 * container through is the dispatcher (shmd__kv_cmd_run), which detaches the keys of every
 * command that changes a list, set, hash or sorted set in place (shmd__kv_cmd_detaches) before
 * the handler runs, and the typed C API (api.c); kv_container(create) and kv_drop_if_empty()
 * refuse a shared value (SHMD_ECORRUPT), so a write path that forgot to detach fails loudly
 * instead of changing both copies.
 *
 * Locks: the dispatcher takes none for COPY; the handler takes the stripes of both keys, in
 * database order when the destination is another database (MOVE's order, the one FLUSHALL and
 * EXEC use), so two COPYs between the same databases in opposite directions cannot deadlock.
 */
#include <limits.h>
#include <stdlib.h>

#include "kv/cmd.h"
#include "kv/rdb.h"
#include "segments/crash.h"
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

/* COPY of a container value: shares it (O(1)). */
static int copy_shared(cc_t *x, kv_ref_t *src, kv_ctx_t *dst, const void *key, size_t klen, uint64_t expire) {
  shmd_ptr_t share = src->share;
  uint32_t type = src->rec->type;
  int rc = 0;
  if (!share.v && (rc = kv_share_make(x->c, src, &share)))
    return rc;
  return kv_share_put(dst, key, klen, type, share, expire);
}

int shmd__kv_detach(kv_ctx_t *c, const void *key, size_t klen) {
  kv_ref_t ref;
  int rc = kv_lookup(c, key, klen, &ref);
  if (rc == SHMD_ENOTFOUND || (rc == 0 && !ref.share.v))
    return 0;
  if (rc)
    return rc;
  kv_share_t *sh;
  if ((rc = kv_share_view(c->s, ref.share, ref.rec->type, &sh)))
    return rc;
  if (sh->refs == 1) { /* the last reference: take the containers back, free the block */
    if ((rc = shmd_tx_log(c->tx, ref.rec_ptr, sizeof(kv_rec_t) + 16)))
      return rc;
    shmd_ptr_t *q = (shmd_ptr_t *)(void *)(ref.rec + 1);
    ref.rec->pad &= ~KV_REC_SHARED;
    q[0] = sh->a;
    q[1] = sh->b;
    SHMD_CRASH_POINT("kv.detach.unwrapped");
    return shmd_tx_free(c->tx, ref.share);
  }
  /* Others share it: this key gets a copy of its own. The copy is read through the shared block
   * (kv_lookup), then the record (one reference) goes and a new one is built in its place. */
  shmd_reply_t r;
  memset(&r, 0, sizeof r);
  cc_t x = {c, 0, NULL, NULL, &r, "detach"};
  unsigned char *p;
  size_t n;
  if ((rc = shmd__kv_dump_value(&x, key, klen, &p, &n)))
    return rc;
  kv_rdbval_t v;
  rc = shmd__kv_rdb_decode(p, n, &v);
  if (rc > 0) {
    shmd__set_detail("kv: a detach could not read back its own payload");
    rc = SHMD_ECORRUPT;
  }
  if (rc == 0) {
    uint64_t expire = ref.rec->expire;
    if ((rc = shmd_tx_set64(c->tx, &sh->refs, sh->refs - 1)) == 0)
      rc = kv_unlink_record(c, key, klen);
    SHMD_CRASH_POINT("kv.detach.unlinked");
    if (rc == 0)
      rc = shmd__kv_rdb_build(&x, key, klen, &v, expire);
    shmd__kv_rdb_free(&v);
  }
  free(p);
  shmd__kv_reply_clear(&r);
  return rc;
}

/* Commands that change a list, set, hash or sorted set in place: the dispatcher detaches their
 * keys first. Not the *STORE commands and SORT ... STORE (they replace the destination), nor the
 * generic ones (DEL, RENAME, EXPIRE, ...: they handle a record, never a container). */
int shmd__kv_cmd_detaches(const shmd__kv_cmd_t *cmd) {
  static const char *const groups[] = {"list", "set", "hash", "sorted-set"};
  static const char *const stores[] = {"sinterstore", "sunionstore", "sdiffstore", "zunionstore",
                                       "zinterstore", "zdiffstore", "zrangestore"};
  if (!(cmd->flags & KV_CMD_WRITE))
    return 0;
  int in = 0;
  for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
    in |= strcmp(cmd->group, groups[i]) == 0;
  for (size_t i = 0; in && i < sizeof stores / sizeof stores[0]; i++)
    if (strcmp(cmd->name, stores[i]) == 0)
      in = 0;
  return in;
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
                             : copy_shared(x, &src, dst, A(2), L(2), expire);
    if (rc == 0 && dst != x->c)
      rc = kv_touch(dst, A(2), L(2)); /* WATCH: the dispatcher bumps keys of the current database */
    if (rc == 0)
      rc = r_int(x->r, 1);
  }
  if (dst != x->c && dst->garbage)
    x->c->garbage = 1;
  return rc;
}
