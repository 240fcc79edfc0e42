/* SPDX-License-Identifier: MIT */
/*
 * Key and database commands (Redis's db.c and expire.c): DEL UNLINK EXISTS TYPE RENAME KEYS SCAN
 * DBSIZE FLUSHDB EXPIRE PEXPIRE TTL PTTL PERSIST, plus what every type's commands share: the
 * lookup that replies for a missing key (need()) and the SCAN family's cursor, options and reply
 * (SCAN here; HSCAN / SSCAN / ZSCAN through shmd__kv_xscan()).
 *
 * The SCAN cursor of the keyspace names a stripe in its low 3 bits and that stripe hash's own
 * reverse-binary cursor above, so a key present for the whole scan is returned exactly once.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/cmd.h"
#include "segments/os.h"

int shmd__kv_cmd_del(cc_t *x) {
  int64_t n = 0;
  for (int i = 1; i < x->argc; i++) {
    int rc = kv_delete(x->c, A(i), L(i));
    if (rc == 0)
      n++;
    else if (rc != SHMD_ENOTFOUND)
      return rc;
  }
  return r_int(x->r, n);
}

int shmd__kv_cmd_exists(cc_t *x) {
  int64_t n = 0;
  for (int i = 1; i < x->argc; i++) {
    kv_ref_t ref;
    int rc = kv_lookup(x->c, A(i), L(i), &ref);
    if (rc == 0)
      n++;
    else if (rc != SHMD_ENOTFOUND)
      return rc;
  }
  return r_int(x->r, n);
}

static const char *type_name(uint32_t t) {
  switch (t) {
  case KV_STRING: return "string";
  case KV_LIST: return "list";
  case KV_SET: return "set";
  case KV_HASH: return "hash";
  case KV_ZSET: return "zset";
  default: return "none";
  }
}

int shmd__kv_cmd_type(cc_t *x) {
  kv_ref_t ref;
  int rc = kv_lookup(x->c, A(1), L(1), &ref);
  if (rc == SHMD_ENOTFOUND)
    return r_status(x->r, "none");
  if (rc)
    return rc;
  return r_status(x->r, type_name(ref.rec->type));
}

int shmd__kv_cmd_rename(cc_t *x) {
  kv_ref_t ref;
  int rc = kv_lookup(x->c, A(1), L(1), &ref);
  if (rc == SHMD_ENOTFOUND)
    return r_error(x->r, "ERR no such key");
  if (rc)
    return rc;
  if (L(1) == L(2) && memcmp(A(1), A(2), L(1)) == 0)
    return r_ok(x->r);
  size_t n = sizeof(kv_rec_t) + ref.len;
  unsigned char *copy = malloc(n);
  if (copy == NULL)
    return SHMD_ENOMEM;
  memcpy(copy, ref.rec, n);
  /* Remove the source record without releasing its containers (they move to the new key). */
  rc = shmd_hash_del(x->c->s, kv_stripe_hash(x->c, A(1), L(1)), A(1), L(1));
  if (rc == 0) {
    rc = kv_delete(x->c, A(2), L(2));
    if (rc == SHMD_ENOTFOUND)
      rc = 0;
  }
  shmd_hash_ref_t hr;
  if (rc == 0)
    rc = shmd_hash_put_ref(x->c->s, kv_stripe_hash(x->c, A(2), L(2)), A(2), L(2), n, SHMD_HASH_UPSERT, NULL, &hr);
  if (rc == 0)
    memcpy(hr.val, copy, n);
  free(copy);
  return rc ? rc : r_ok(x->r);
}

typedef struct keyscan_s {
  vec_t v;
  const char *pat;
  size_t pl;
  uint64_t now;
  uint32_t type;
  int rc;
} keyscan_t;

static int keys_visit(const void *key, size_t klen, const void *val, size_t vlen, void *arg) {
  keyscan_t *k = arg;
  const kv_rec_t *r = val;
  if (vlen < sizeof(kv_rec_t))
    return SHMD_ECORRUPT;
  if (r->expire && r->expire <= k->now)
    return 0;
  if (k->type && r->type != k->type)
    return 0;
  if (k->pat && !shmd__kv_glob(k->pat, k->pl, key, klen, 0))
    return 0;
  return vec_bulk(&k->v, key, klen);
}

int shmd__kv_cmd_keys(cc_t *x) {
  keyscan_t k = {{0}, A(1), L(1), x->c->now, 0, 0};
  if (L(1) == 1 && A(1)[0] == '*')
    k.pat = NULL;
  for (unsigned i = 0; i < KV_STRIPES; i++) {
    int rc = shmd_hash_foreach(x->c->s, x->c->db->stripe[i], keys_visit, &k);
    if (rc) {
      vec_free(&k.v);
      return rc;
    }
  }
  vec_to(&k.v, x->r);
  return 0;
}

/* SCAN-family options: cursor MATCH COUNT (TYPE when allow_type). */
typedef struct scanopt_s {
  uint64_t cursor;
  const char *pat;
  size_t pl;
  long long count;
  uint32_t type;
} scanopt_t;

static int parse_scan(cc_t *x, int ci, int allow_type, scanopt_t *o) {
  memset(o, 0, sizeof *o);
  o->count = 10;
  char buf[32];
  if (L(ci) == 0 || L(ci) >= sizeof buf)
    return r_error(x->r, "ERR invalid cursor");
  memcpy(buf, A(ci), L(ci));
  buf[L(ci)] = 0;
  char *end;
  errno = 0;
  o->cursor = strtoull(buf, &end, 10);
  if (*end || errno || buf[0] == '-')
    return r_error(x->r, "ERR invalid cursor");
  for (int i = ci + 1; i < x->argc; i += 2) {
    if (i + 1 >= x->argc)
      return r_error(x->r, ERR_SYNTAX);
    if (eq(A(i), L(i), "COUNT")) {
      if (parse_ll(A(i + 1), L(i + 1), &o->count))
        return r_error(x->r, ERR_NOTINT);
      if (o->count < 1)
        return r_error(x->r, ERR_SYNTAX);
    } else if (eq(A(i), L(i), "MATCH")) {
      o->pat = A(i + 1);
      o->pl = L(i + 1);
      if (o->pl == 1 && o->pat[0] == '*')
        o->pat = NULL;
    } else if (allow_type && eq(A(i), L(i), "TYPE")) {
      static const char *names[] = {"", "string", "list", "set", "hash", "zset"};
      o->type = 99; /* unknown type matches nothing */
      for (uint32_t t = 1; t <= 5; t++)
        if (eq(A(i + 1), L(i + 1), names[t]))
          o->type = t;
    } else {
      return r_error(x->r, ERR_SYNTAX);
    }
  }
  return 1;
}

static int scan_reply(shmd_reply_t *r, uint64_t cursor, vec_t *v) {
  int rc = r_array(r, 2);
  if (rc)
    return rc;
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%llu", (unsigned long long)cursor);
  if ((rc = r_bulk(&r->elems[0], buf, (size_t)n)))
    return rc;
  vec_to(v, &r->elems[1]);
  return 0;
}

/* The SCAN cursor: stripe in the low 3 bits, the stripe hash's cursor above. */
int shmd__kv_cmd_scan(cc_t *x) {
  scanopt_t o;
  int rc = parse_scan(x, 1, 1, &o);
  if (rc <= 0)
    return rc;
  keyscan_t k = {{0}, o.pat, o.pl, x->c->now, o.type, 0};
  unsigned st = (unsigned)(o.cursor % KV_STRIPES);
  uint64_t hc = o.cursor / KV_STRIPES;
  while (st < KV_STRIPES && k.v.n < (size_t)o.count) {
    if ((rc = shmd_hash_scan(x->c->s, x->c->db->stripe[st], hc, (size_t)o.count, keys_visit, &k, &hc))) {
      vec_free(&k.v);
      return rc;
    }
    if (hc == 0)
      st++;
  }
  uint64_t next = st >= KV_STRIPES ? 0 : hc * KV_STRIPES + st;
  return scan_reply(x->r, next, &k.v);
}

int shmd__kv_cmd_dbsize(cc_t *x) {
  uint64_t total = 0;
  for (unsigned i = 0; i < KV_STRIPES; i++) {
    uint64_t n;
    int rc = shmd_hash_len(x->c->s, x->c->db->stripe[i], &n);
    if (rc)
      return rc;
    total += n;
  }
  return r_int(x->r, (int64_t)total);
}

int shmd__kv_cmd_flushdb(cc_t *x) {
  if (x->argc > 2 || (x->argc == 2 && !eq(A(1), L(1), "ASYNC") && !eq(A(1), L(1), "SYNC")))
    return r_error(x->r, ERR_SYNTAX);
  int rc = kv_flushdb(x->c);
  return rc ? rc : r_ok(x->r);
}

static int c_expire_gen(cc_t *x, int ms, const char *name) {
  long long v;
  if (parse_ll(A(2), L(2), &v))
    return r_error(x->r, ERR_NOTINT);
  int nx = 0, xx = 0, gt = 0, lt = 0;
  for (int i = 3; i < x->argc; i++) {
    if (eq(A(i), L(i), "NX")) nx = 1;
    else if (eq(A(i), L(i), "XX")) xx = 1;
    else if (eq(A(i), L(i), "GT")) gt = 1;
    else if (eq(A(i), L(i), "LT")) lt = 1;
    else return r_error(x->r, "ERR Unsupported option %.*s", (int)L(i), A(i));
  }
  if (nx && (xx || gt || lt))
    return r_error(x->r, "ERR NX and XX, GT or LT options at the same time are not compatible");
  if (gt && lt)
    return r_error(x->r, "ERR GT and LT options at the same time are not compatible");
  long long when;
  if (!ms) {
    if (v > LLONG_MAX / 1000 || v < LLONG_MIN / 1000)
      return r_error(x->r, "ERR invalid expire time in '%s' command", name);
    v *= 1000;
  }
  if ((v > 0 && (long long)x->c->now > LLONG_MAX - v))
    return r_error(x->r, "ERR invalid expire time in '%s' command", name);
  when = v + (long long)x->c->now;
  kv_ref_t ref;
  int rc = kv_lookup(x->c, A(1), L(1), &ref);
  if (rc == SHMD_ENOTFOUND)
    return r_int(x->r, 0);
  if (rc)
    return rc;
  uint64_t cur = ref.rec->expire;
  if (nx && cur) return r_int(x->r, 0);
  if (xx && !cur) return r_int(x->r, 0);
  if (gt && (!cur || (long long)cur >= when)) return r_int(x->r, 0);
  if (lt && cur && (long long)cur <= when) return r_int(x->r, 0);
  if (when <= (long long)x->c->now) {
    if ((rc = kv_delete(x->c, A(1), L(1))))
      return rc;
    return r_int(x->r, 1);
  }
  if ((rc = kv_set_expire(x->c, &ref, (uint64_t)when)))
    return rc;
  return r_int(x->r, 1);
}
int shmd__kv_cmd_expire(cc_t *x) { return c_expire_gen(x, 0, "expire"); }
int shmd__kv_cmd_pexpire(cc_t *x) { return c_expire_gen(x, 1, "pexpire"); }

static int c_ttl_gen(cc_t *x, int ms) {
  kv_ref_t ref;
  int rc = kv_lookup(x->c, A(1), L(1), &ref);
  if (rc == SHMD_ENOTFOUND)
    return r_int(x->r, -2);
  if (rc)
    return rc;
  if (!ref.rec->expire)
    return r_int(x->r, -1);
  int64_t left = (int64_t)(ref.rec->expire - x->c->now);
  /* seconds: (left + 500) / 1000 as Redis rounds, without overflow for an expiry near 2^63 */
  if (!ms)
    left = left > INT64_MAX - 500 ? (int64_t)(((uint64_t)left + 500) / 1000) : (left + 500) / 1000;
  return r_int(x->r, left);
}
int shmd__kv_cmd_ttl(cc_t *x) { return c_ttl_gen(x, 0); }
int shmd__kv_cmd_pttl(cc_t *x) { return c_ttl_gen(x, 1); }

int shmd__kv_cmd_persist(cc_t *x) {
  kv_ref_t ref;
  int rc = kv_lookup(x->c, A(1), L(1), &ref);
  if (rc == SHMD_ENOTFOUND)
    return r_int(x->r, 0);
  if (rc)
    return rc;
  if (!ref.rec->expire)
    return r_int(x->r, 0);
  if ((rc = kv_set_expire(x->c, &ref, 0)))
    return rc;
  return r_int(x->r, 1);
}

/* ---------------------------------------------------------------------------------------------- */
/* Lookups and scans shared by every type */

/* Looks up the container of `type`; replies nil/0/empty (via `missing`) when absent. Returns 1 to
 * go on, 0 when replied, negative on failure. */
int shmd__kv_need(cc_t *x, uint32_t type, int missing, kv_ref_t *ref) {
  int rc = kv_lookup_type(x->c, A(1), L(1), type, ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  if (rc == SHMD_ENOTFOUND) {
    switch (missing) {
    case MISS_NIL: return r_nil(x->r);
    case MISS_ZERO: return r_int(x->r, 0);
    case MISS_EMPTY: return r_array(x->r, 0);
    default: x->r->type = SHMD_REPLY_NIL; return 0;
    }
  }
  return rc ? rc : 1;
}

/* HSCAN / SSCAN / ZSCAN */
typedef struct zscan_s {
  vec_t v;
  const char *pat;
  size_t pl;
  int mode; /* 0 keys, 1 key+val, 2 key+score */
} xscan_t;

static int xscan_visit(const void *k, size_t kl, const void *val, size_t vl, void *arg) {
  xscan_t *w = arg;
  int rc;
  if (w->pat && !shmd__kv_glob(w->pat, w->pl, k, kl, 0))
    return 0;
  if ((rc = vec_bulk(&w->v, k, kl)))
    return rc;
  if (w->mode == 1)
    return vec_bulk(&w->v, val, vl);
  if (w->mode == 2) {
    double d = 0;
    if (vl == 8)
      memcpy(&d, val, 8);
    char buf[64];
    return vec_bulk(&w->v, buf, fmt_double(d, buf, sizeof buf));
  }
  return 0;
}

int shmd__kv_xscan(cc_t *x, uint32_t type, int mode) {
  scanopt_t o;
  int rc = parse_scan(x, 2, 0, &o);
  if (rc <= 0)
    return rc;
  kv_ref_t ref;
  rc = kv_lookup_type(x->c, A(1), L(1), type, &ref);
  if (rc == SHMD_EWRONGTYPE)
    return WRONGTYPE();
  xscan_t w = {{0}, o.pat, o.pl, mode};
  uint64_t next = 0;
  if (rc == 0) {
    next = o.cursor;
    do {
      if ((rc = shmd_hash_scan(x->c->s, ref.a, next, (size_t)o.count, xscan_visit, &w, &next))) {
        vec_free(&w.v);
        return rc;
      }
    } while (next != 0 && w.v.n == 0);
  } else if (rc != SHMD_ENOTFOUND) {
    return rc;
  }
  return scan_reply(x->r, next, &w.v);
}

/* ---------------------------------------------------------------------------------------------- */
/* Connection and server commands that are about the keyspace (Redis's server.c): PING, ECHO, TIME,
 * FLUSHALL. The server answers PING itself in RESP2's subscribed context. */

int shmd__kv_cmd_ping(cc_t *x) {
  if (x->argc > 2)
    return r_error(x->r, "ERR wrong number of arguments for 'ping' command");
  if (x->argc == 2)
    return r_bulk(x->r, A(1), L(1));
  return r_status(x->r, "PONG");
}

int shmd__kv_cmd_echo(cc_t *x) { return r_bulk(x->r, A(1), L(1)); }

int shmd__kv_cmd_time(cc_t *x) {
  uint64_t us = shmd__os_unix_us();
  char a[32], b[32];
  int na = snprintf(a, sizeof a, "%llu", (unsigned long long)(us / 1000000u));
  int nb = snprintf(b, sizeof b, "%llu", (unsigned long long)(us % 1000000u));
  int rc = r_array(x->r, 2);
  if (rc == 0)
    rc = r_bulk(&x->r->elems[0], a, (size_t)na);
  if (rc == 0)
    rc = r_bulk(&x->r->elems[1], b, (size_t)nb);
  return rc;
}

/* FLUSHALL takes the stripes of every database itself, in database order (the dispatcher takes
 * none for it: taking the current database's first would invert the order against a FLUSHALL
 * run from a lower database), so all databases empty in one transaction. Databases never used
 * are not created. The dispatcher drains their garbage lists after the commit. */
int shmd__kv_cmd_flushall(cc_t *x) {
  if (x->argc > 2 || (x->argc == 2 && !eq(A(1), L(1), "ASYNC") && !eq(A(1), L(1), "SYNC")))
    return r_error(x->r, ERR_SYNTAX);
  for (unsigned d = 0; d < KV_NDB; d++) {
    kv_ctx_t other, *c = x->c;
    int rc;
    if (d != x->c->dbi) {
      shmd_ptr_t dp;
      rc = kv_db_get(x->c->tx, d, 0, &dp);
      if (rc == SHMD_ENOTFOUND)
        continue;
      if (rc)
        return rc;
      other = *x->c;
      other.dbi = d;
      other.dbp = dp;
      other.locked = 0;
      other.garbage = 0;
      if ((rc = kv_db_view(x->c->s, dp, &other.db)))
        return rc;
      c = &other;
    }
    if ((rc = kv_flushdb(c)))
      return rc;
  }
  return r_ok(x->r);
}

/* For the server's INFO keyspace: DBSIZE of database db without creating it. */
int shmd__kv_dbsize(shmd_store_t *s, unsigned db, uint64_t *keys) {
  *keys = 0;
  if (db >= KV_NDB)
    return SHMD_EINVAL;
  shmd_tx_t *tx;
  int rc = shmd_tx_begin(s, &tx);
  if (rc)
    return rc;
  kv_ctx_t c;
  memset(&c, 0, sizeof c);
  c.s = s;
  c.tx = tx;
  c.dbi = db;
  rc = kv_db_get(tx, db, 0, &c.dbp);
  if (rc == SHMD_ENOTFOUND) {
    shmd_tx_commit(tx);
    return 0;
  }
  if (rc == 0)
    rc = kv_db_view(s, c.dbp, &c.db);
  if (rc == 0)
    rc = kv_lock_stripes(&c, (1u << KV_STRIPES) - 1);
  for (unsigned i = 0; rc == 0 && i < KV_STRIPES; i++) {
    uint64_t n;
    if ((rc = shmd_hash_len(s, c.db->stripe[i], &n)) == 0)
      *keys += n;
  }
  if (rc) {
    shmd_tx_abort(tx);
    return rc;
  }
  return shmd_tx_commit(tx);
}
