/* SPDX-License-Identifier: MIT */
/*
 * The typed C API of the keyspace (include/shmdict/kv.h): shmd_kv_get / set / del / hget / hset /
 * zadd / zrank. Each runs the same code as the command it mirrors, without building a reply: one
 * transaction (joining the caller's, if any) that locks the key's stripe. Redis-level outcomes
 * (not found, exists, wrong type, buffer too small) commit whatever lazy expiry did and return
 * their status; any other failure aborts. GET (shmd_kv_get, shmd_kv_get_view) outside a
 * transaction first tries the keyspace's lock-free read (kv_peek, keyspace.c): no transaction, no
 * lock, no allocation; it falls back to the transactional path when that read cannot answer.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kv/changelog.h"
#include "kv/cmd.h"
#include "kv/notify.h"

static int typed_begin(shmd_store_t *s, unsigned db, const void *key, size_t klen, kv_ctx_t *c) {
  if (db >= KV_NDB)
    return SHMD_EINVAL;
  for (int tries = 0;; tries++) {
    int rc = kv_begin(s, db, c);
    if (rc)
      return rc;
    if ((rc = kv_lock_stripes(c, 1u << kv_stripe_of(key, klen))) == 0)
      return 0;
    shmd_tx_abort(c->tx);
    /* persistence was turned on while this call waited for its stripe unlogged: again */
    if (rc != SHMD_EBUSY || c->aof || tries >= 3 || shmd_tx_depth(s) != 0)
      return rc;
  }
}

/* A typed write that changed the keyspace appends its command to the change log (changelog.c). */
static int logged(kv_ctx_t *c, int rc, int argc, const char *const argv[], const size_t lens[]) {
  return rc == 0 && c->aof ? shmd__aof_args(c, argc, argv, lens) : rc;
}

/* A typed write that succeeded bumps the key's WATCH version (see keyspace.c). */
static int touched(kv_ctx_t *c, const void *key, size_t klen, int rc) {
  return rc == 0 ? kv_touch(c, key, klen) : rc;
}

static int typed_end(kv_ctx_t *c, int rc) {
  if (rc == SHMD_ENOTFOUND || rc == SHMD_EEXIST || rc == SHMD_EWRONGTYPE || rc == SHMD_ERANGE) {
    int rc2 = kv_end(c, 0);
    return rc2 ? rc2 : rc;
  }
  return kv_end(c, rc);
}

static int copy_out(const void *src, size_t n, void *buf, size_t cap, size_t *len) {
  if (len)
    *len = n;
  if (cap && buf)
    memcpy(buf, src, n < cap ? n : cap);
  return n > cap ? SHMD_ERANGE : 0;
}

/* GET's answer from a lock-free read (keyspace.c, "Lock-free reads"): 0 (the value is
 * rec[sizeof(kv_rec_t) .. n)), SHMD_ENOTFOUND, SHMD_EWRONGTYPE, or 1 when the transactional path
 * must answer. */
static int get_peek(shmd_store_t *s, unsigned db, const void *key, size_t klen, unsigned char *rec, size_t *n) {
  if (s == NULL || (key == NULL && klen))
    return 1;
  int r = kv_peek(s, db, key, klen, rec, n);
  if (r == KV_PEEK_ABSENT)
    return SHMD_ENOTFOUND;
  if (r != KV_PEEK_FOUND)
    return 1;
  uint32_t type;
  memcpy(&type, rec, sizeof type);
  return type == KV_STRING ? 0 : SHMD_EWRONGTYPE;
}

int shmd_kv_get(shmd_store_t *s, unsigned db, const void *key, size_t klen, void *buf, size_t cap, size_t *len) {
  if (buf == NULL && cap)
    return SHMD_EINVAL;
  unsigned char rec[KV_PEEK_BUF];
  size_t n;
  int rc = get_peek(s, db, key, klen, rec, &n);
  if (rc == 0)
    return copy_out(rec + sizeof(kv_rec_t), n - sizeof(kv_rec_t), buf, cap, len);
  if (rc != 1)
    return rc;
  kv_ctx_t c;
  rc = typed_begin(s, db, key, klen, &c);
  if (rc)
    return rc;
  kv_ref_t ref;
  rc = kv_lookup_type(&c, key, klen, KV_STRING, &ref);
  if (rc == 0)
    rc = copy_out(ref.data, ref.len, buf, cap, len);
  return typed_end(&c, rc);
}

/* The thread's view buffer (shmd_kv_get_view): allocated on the thread's first view, grown for a
 * bigger value, freed when the thread exits. */
static pthread_once_t view_once = PTHREAD_ONCE_INIT;
static pthread_key_t view_key;
static int view_key_ok;
static __thread unsigned char *view_buf;
static __thread size_t view_cap;

static void view_free(void *p) { free(p); }
static void view_key_init(void) { view_key_ok = pthread_key_create(&view_key, view_free) == 0; }

/* Makes the thread's view buffer at least n bytes. 0 or SHMD_ENOMEM (the old buffer is kept). */
static int view_room(size_t n) {
  if (n <= view_cap)
    return 0;
  pthread_once(&view_once, view_key_init);
  if (!view_key_ok)
    return SHMD_ENOMEM;
  size_t cap = n < KV_PEEK_BUF ? KV_PEEK_BUF : n;
  unsigned char *b = realloc(view_buf, cap);
  if (b == NULL)
    return SHMD_ENOMEM;
  if (pthread_setspecific(view_key, b) != 0) {
    free(b);
    view_buf = NULL;
    view_cap = 0;
    return SHMD_ENOMEM;
  }
  view_buf = b;
  view_cap = cap;
  return 0;
}

int shmd_kv_get_view(shmd_store_t *s, unsigned db, const void *key, size_t klen, const void **val, size_t *len) {
  if (val == NULL)
    return SHMD_EINVAL;
  *val = NULL;
  int rc = view_room(KV_PEEK_BUF);
  if (rc)
    return rc;
  size_t n;
  rc = get_peek(s, db, key, klen, view_buf, &n);
  if (rc == 0) {
    *val = view_buf + sizeof(kv_rec_t);
    if (len)
      *len = n - sizeof(kv_rec_t);
    return 0;
  }
  if (rc != 1)
    return rc;
  kv_ctx_t c;
  if ((rc = typed_begin(s, db, key, klen, &c)))
    return rc;
  kv_ref_t ref;
  rc = kv_lookup_type(&c, key, klen, KV_STRING, &ref);
  if (rc == 0 && (rc = view_room(ref.len + 1)) == 0) {
    memcpy(view_buf, ref.data, ref.len);
    *val = view_buf;
    if (len)
      *len = ref.len;
  }
  return typed_end(&c, rc);
}

int shmd_kv_set(shmd_store_t *s, unsigned db, const void *key, size_t klen, const void *val, size_t vlen,
                unsigned flags) {
  if ((flags & ~3u) || flags == 3u)
    return SHMD_EINVAL;
  kv_ctx_t c;
  int rc = typed_begin(s, db, key, klen, &c);
  if (rc)
    return rc;
  if (flags) {
    kv_ref_t ref;
    rc = kv_lookup(&c, key, klen, &ref);
    if (rc == 0 && (flags & SHMD_KV_NX))
      return typed_end(&c, SHMD_EEXIST);
    if (rc == SHMD_ENOTFOUND && (flags & SHMD_KV_XX))
      return typed_end(&c, SHMD_ENOTFOUND);
    if (rc && rc != SHMD_ENOTFOUND)
      return typed_end(&c, rc);
  }
  rc = kv_put_string(&c, key, klen, val, vlen, NULL, 0, 0);
  const char *av[3] = {"SET", key, val};
  size_t al[3] = {3, klen, vlen};
  rc = logged(&c, rc, 3, av, al);
  return typed_end(&c, touched(&c, key, klen, rc));
}

int shmd_kv_del(shmd_store_t *s, unsigned db, const void *key, size_t klen) {
  kv_ctx_t c;
  int rc = typed_begin(s, db, key, klen, &c);
  if (rc)
    return rc;
  const char *av[2] = {"DEL", key};
  size_t al[2] = {3, klen};
  return typed_end(&c, touched(&c, key, klen, logged(&c, kv_delete(&c, key, klen), 2, av, al)));
}

int shmd_kv_hget(shmd_store_t *s, unsigned db, const void *key, size_t klen, const void *field, size_t flen,
                 void *buf, size_t cap, size_t *len) {
  kv_ctx_t c;
  int rc = typed_begin(s, db, key, klen, &c);
  if (rc)
    return rc;
  kv_ref_t ref;
  rc = kv_lookup_type(&c, key, klen, KV_HASH, &ref);
  if (rc == 0)
    rc = shmd_hash_get(s, ref.a, field, flen, buf, cap, len);
  return typed_end(&c, rc);
}

int shmd_kv_hset(shmd_store_t *s, unsigned db, const void *key, size_t klen, const void *field, size_t flen,
                 const void *val, size_t vlen, int *created) {
  kv_ctx_t c;
  int rc = typed_begin(s, db, key, klen, &c);
  if (rc)
    return rc;
  kv_ref_t ref;
  rc = shmd__kv_detach(&c, key, klen); /* a shared value (COPY) gets containers of its own */
  if (rc == 0)
    rc = kv_container(&c, key, klen, KV_HASH, 1, &ref);
  if (rc == 0)
    rc = shmd_hash_put(s, ref.a, field, flen, val, vlen, SHMD_HASH_UPSERT, created);
  const char *av[4] = {"HSET", key, field, val};
  size_t al[4] = {4, klen, flen, vlen};
  rc = logged(&c, rc, 4, av, al);
  return typed_end(&c, touched(&c, key, klen, rc));
}

int shmd_kv_zadd(shmd_store_t *s, unsigned db, const void *key, size_t klen, double score, const void *member,
                 size_t mlen, int *added) {
  if (isnan(score))
    return SHMD_EINVAL;
  kv_ctx_t c;
  int rc = typed_begin(s, db, key, klen, &c);
  if (rc)
    return rc;
  kv_ref_t ref;
  int a = 0, ch = 0;
  double out;
  rc = shmd__kv_detach(&c, key, klen); /* a shared value (COPY) gets containers of its own */
  if (rc == 0)
    rc = kv_container(&c, key, klen, KV_ZSET, 1, &ref);
  if (rc == 0)
    rc = shmd__kv_zadd_one(&c, &ref, member, mlen, score, 0, 0, 0, 0, 0, &a, &ch, &out);
  if (rc == 0 && added)
    *added = a;
  char sc[64];
  const char *av[4] = {"ZADD", key, sc, member};
  size_t al[4] = {4, klen, shmd__kv_fmt_double(score, sc, sizeof sc), mlen};
  rc = logged(&c, rc, 4, av, al);
  rc = typed_end(&c, touched(&c, key, klen, rc));
  if (rc == 0 && shmd_tx_depth(s) == 0) { /* wake a BZPOPMIN waiting on the key (kv/block.c) */
    const char *k = key;
    shmd__kv_block_signal(s, db, 1, &k, &klen);
  }
  return rc;
}

int shmd_kv_zrank(shmd_store_t *s, unsigned db, const void *key, size_t klen, const void *member, size_t mlen,
                  int reverse, uint64_t *rank) {
  kv_ctx_t c;
  int rc = typed_begin(s, db, key, klen, &c);
  if (rc)
    return rc;
  kv_ref_t ref;
  rc = kv_lookup_type(&c, key, klen, KV_ZSET, &ref);
  if (rc == 0)
    rc = shmd__kv_zrank(&c, &ref, member, mlen, reverse, rank);
  return typed_end(&c, rc);
}
