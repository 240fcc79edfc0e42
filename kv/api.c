/* SPDX-License-Identifier: MIT */
/*
 * The typed C API of the keyspace (include/shmdict/kv.h): shmd_kv_get / set / del / hget / hset /
 * zadd / zrank. Each runs the same code as the command it mirrors, without building a reply: one
 * transaction (joining the caller's, if any) that locks the key's stripe. Redis-level outcomes
 * (not found, exists, wrong type, buffer too small) commit whatever lazy expiry did and return
 * their status; any other failure aborts.
 */
#include <math.h>
#include <string.h>

#include "kv/cmd.h"
#include "kv/notify.h"

static int typed_begin(shmd_store_t *s, unsigned db, const void *key, size_t klen, kv_ctx_t *c) {
  if (db >= KV_NDB)
    return SHMD_EINVAL;
  int rc = kv_begin(s, db, c);
  if (rc)
    return rc;
  if ((rc = kv_lock_stripes(c, 1u << kv_stripe_of(key, klen))))
    shmd_tx_abort(c->tx);
  return rc;
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

int shmd_kv_get(shmd_store_t *s, unsigned db, const void *key, size_t klen, void *buf, size_t cap, size_t *len) {
  kv_ctx_t c;
  int rc = typed_begin(s, db, key, klen, &c);
  if (rc)
    return rc;
  kv_ref_t ref;
  rc = kv_lookup_type(&c, key, klen, KV_STRING, &ref);
  if (rc == 0)
    rc = copy_out(ref.data, ref.len, buf, cap, len);
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
  return typed_end(&c, touched(&c, key, klen, rc));
}

int shmd_kv_del(shmd_store_t *s, unsigned db, const void *key, size_t klen) {
  kv_ctx_t c;
  int rc = typed_begin(s, db, key, klen, &c);
  if (rc)
    return rc;
  return typed_end(&c, touched(&c, key, klen, kv_delete(&c, key, klen)));
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
