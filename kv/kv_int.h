/* SPDX-License-Identifier: MIT */
/*
 * Internals of the keyspace shared by keyspace.c (layout, records, garbage, check) and
 * the command files (dispatch.c, db.c, t_*.c, api.c). See the essay at the top of keyspace.c.
 */
#ifndef SHMD_KV_INT_H
#define SHMD_KV_INT_H

#include <stddef.h>
#include <stdint.h>

#include "shmdict/btree.h"
#include "shmdict/error.h"
#include "shmdict/hash.h"
#include "shmdict/kv.h"
#include "shmdict/list.h"
#include "shmdict/rbtree.h"
#include "shmdict/tx.h"

#define KV_NDB SHMD_KV_DATABASES
#define KV_STRIPES 8u
#define KV_STRING_MAX (512ull * 1024 * 1024) /* Redis's proto-max-bulk-len */

/* Value types (record type word). KV_STRIPE only appears on the garbage list. */
enum { KV_STRING = 1, KV_LIST = 2, KV_SET = 3, KV_HASH = 4, KV_ZSET = 5, KV_STRIPE = 6 };

typedef struct kv_db_s {
  uint64_t magic;
  shmd_ptr_t garbage; /* list container of kv_garbage_t */
  shmd_lock_t stripe_lock[KV_STRIPES];
  shmd_ptr_t stripe[KV_STRIPES];
  shmd_ptr_t versions; /* kv_ver_t: the WATCH versions (0 in databases made before them) */
  uint64_t flush_seq;  /* bumped (not logged) by every FLUSHDB before it swaps a stripe hash, for
                        * the lock-free readers (keyspace.c, "Lock-free reads"); 0 in older stores */
  shmd_ptr_t aof;      /* database 0 only: the change log (kv/changelog.c), 0 until made */
  uint64_t reserved[5];
} kv_db_t;

/* Key versions for WATCH (see "Key versions" in keyspace.c; made on a database's first WATCH): per database a directory with the
 * epoch that FLUSHDB bumps (under every stripe lock) and one block of counters per stripe (guarded
 * by that stripe's lock); a key's counter is chosen by a hash of its bytes. Each block fits a slab
 * (4 KiB), so a database's versions cost 32 KiB of small objects. */
#define KV_VER_SLOTS 511u /* per stripe */
typedef struct kv_ver_s {
  uint64_t magic;
  uint64_t epoch;
  shmd_ptr_t stripe[KV_STRIPES]; /* kv_ver_stripe_t */
} kv_ver_t;
typedef struct kv_ver_stripe_s {
  uint64_t magic;
  uint64_t slot[KV_VER_SLOTS];
} kv_ver_stripe_t;

typedef struct kv_rec_s {
  uint32_t type;
  uint32_t pad;    /* flags: KV_REC_SHARED */
  uint64_t expire; /* absolute Unix ms, 0 = none */
} kv_rec_t;

/* A container value shared by several records (COPY; see "Shared values" in keyspace.c): the
 * record's flag KV_REC_SHARED says its first pointer names a kv_share_t (its second is null),
 * which holds the containers and the number of records naming it. */
#define KV_REC_SHARED 1u
typedef struct kv_share_s {
  uint64_t magic;
  uint64_t refs; /* records naming this block (>= 1) */
  uint32_t type; /* KV_LIST .. KV_ZSET, as the records say */
  uint32_t pad;
  shmd_ptr_t a, b; /* the containers, as an unshared record holds them */
} kv_share_t;

typedef struct kv_garbage_s {
  uint32_t type;
  uint32_t pad;
  shmd_ptr_t a, b;
} kv_garbage_t;

typedef struct kv_ctx_s {
  shmd_store_t *s;
  shmd_tx_t *tx;
  shmd_ptr_t dbp;
  kv_db_t *db;
  unsigned dbi;
  unsigned locked; /* stripes held */
  int garbage;     /* something was put on the garbage list: drain it after the commit */
  size_t drain_budget; /* drain steps after the commit (0: until the list is empty) */
  uint64_t now;
  void *aof; /* the change log (shmd__aof_t) when this transaction logs its writes, else NULL */
} kv_ctx_t;

typedef struct kv_ref_s {
  kv_rec_t *rec;
  shmd_ptr_t rec_ptr;
  unsigned char *data; /* string bytes */
  size_t len;          /* string length */
  shmd_ptr_t a, b;     /* containers (a shared value's: read through its kv_share_t) */
  shmd_ptr_t share;    /* the kv_share_t of a shared value, else null */
} kv_ref_t;

typedef struct kv_info_acc_s {
  uint64_t keys[8];
  uint64_t expires;
  uint64_t garbage;
} kv_info_acc_t;

uint64_t kv_now_ms(void);
unsigned kv_stripe_of(const void *key, size_t len);
int kv_db_view(shmd_store_t *s, shmd_ptr_t dp, kv_db_t **out);
int kv_db_get(shmd_tx_t *tx, unsigned dbi, int create, shmd_ptr_t *out);
/* kv_db_get with create, in a transaction of its own (before a command's: see keyspace.c). */
int kv_db_ensure(shmd_store_t *s, unsigned dbi, shmd_ptr_t *out);
int kv_begin(shmd_store_t *s, unsigned dbi, kv_ctx_t *c);
int kv_end(kv_ctx_t *c, int rc);
int kv_lock_stripes(kv_ctx_t *c, unsigned mask);
shmd_ptr_t kv_stripe_hash(kv_ctx_t *c, const void *key, size_t len);
int kv_lookup(kv_ctx_t *c, const void *key, size_t len, kv_ref_t *ref);
/* The lock-free read (keyspace.c, "Lock-free reads"): key's record copied into buf (room for
 * KV_PEEK_BUF bytes): a kv_rec_t and the value bytes, *len bytes in all. Returns KV_PEEK_FOUND,
 * KV_PEEK_ABSENT, or KV_PEEK_LOCKED when the caller must take its transactional path (inside a
 * transaction, a writer at work, an expired key to delete, a value too big for the fast path, a
 * database not made yet, anything that looks damaged). Never writes shared memory. */
#define KV_PEEK_BUF (SHMD_HASH_INLINE_MAX + 64)
enum { KV_PEEK_LOCKED = -1, KV_PEEK_ABSENT = 0, KV_PEEK_FOUND = 1 };
int kv_peek(shmd_store_t *s, unsigned dbi, const void *key, size_t len, unsigned char *buf, size_t *vlen);
int kv_lookup_type(kv_ctx_t *c, const void *key, size_t len, uint32_t type, kv_ref_t *ref);
int kv_delete(kv_ctx_t *c, const void *key, size_t len);
int kv_put_string(kv_ctx_t *c, const void *key, size_t klen, const void *v1, size_t l1,
                  const void *v2, size_t l2, uint64_t expire);
int kv_put_container(kv_ctx_t *c, const void *key, size_t klen, uint32_t type, shmd_ptr_t a,
                     shmd_ptr_t b, uint64_t expire);
int kv_set_expire(kv_ctx_t *c, kv_ref_t *ref, uint64_t expire);
int kv_container(kv_ctx_t *c, const void *key, size_t klen, uint32_t type, int create,
                 kv_ref_t *ref);
int kv_drop_if_empty(kv_ctx_t *c, const void *key, size_t klen, kv_ref_t *ref);
int kv_flushdb(kv_ctx_t *c);

/* The ordered half of a sorted set (kv/t_zset.c): an order-statistic B+tree in stores of layout 1.5
 * and later, the red-black map in older ones (their library must still open them); the tree's own
 * kind word tells which, so these work on both. SHMD_ECORRUPT when t is neither. */
int kv_ztree_create(shmd_store_t *s, shmd_ptr_t *out); /* the kind the store's layout takes */
int kv_ztree_is_btree(shmd_store_t *s, shmd_ptr_t t);  /* 1 B+tree, 0 rbtree, or < 0 */
int kv_ztree_len(shmd_store_t *s, shmd_ptr_t t, uint64_t *out);
int kv_ztree_destroy(shmd_store_t *s, shmd_ptr_t t);
int kv_ztree_destroy_step(shmd_store_t *s, shmd_ptr_t t, size_t max, uint64_t *remaining);
/* The container's checker, plus: its ordering is the sorted sets' (score, member). */
int kv_ztree_check(shmd_store_t *s, shmd_ptr_t t);
int kv_ztree_walk_rank(shmd_store_t *s, shmd_ptr_t t, uint64_t start, size_t max, int reverse,
                       shmd_btree_visit_fn fn, void *arg, size_t *visited);
/* A live sorted set's two halves agree: as many members in hash h as in tree t, and every tree
 * entry's member in the hash with the same score (bitwise). SHMD_ECORRUPT with a detail if not. */
int kv_zset_check(shmd_store_t *s, shmd_ptr_t h, shmd_ptr_t t);
/* For tests: 1 when the sorted set at key (database db) is on a B+tree, 0 on an rbtree, or < 0
 * (SHMD_ENOTFOUND, SHMD_EWRONGTYPE, ...). Runs in a transaction of its own. */
int shmd__kv_zset_is_btree(shmd_store_t *s, unsigned db, const void *key, size_t klen);

/* Shared values (keyspace.c, copy.c). kv_share_view() checks a block (magic, type, count);
 * kv_share_make() turns the unshared container record `ref` (of key) into a shared one with a
 * fresh block of count 1 (logged), *share naming it; kv_share_put() makes key (absent) a record
 * naming share, with expiry `expire`, and counts it. shmd__kv_detach() (copy.c) gives key, when
 * its value is shared, containers of its own: every write to a container goes through it (the
 * dispatcher for the commands that change a value in place, the typed C API). */
int kv_share_view(shmd_store_t *s, shmd_ptr_t p, uint32_t type, kv_share_t **out);
int kv_share_make(kv_ctx_t *c, kv_ref_t *ref, shmd_ptr_t *share);
int kv_share_put(kv_ctx_t *c, const void *key, size_t klen, uint32_t type, shmd_ptr_t share, uint64_t expire);
int shmd__kv_detach(kv_ctx_t *c, const void *key, size_t klen);
/* Removes key's record without releasing its value (the caller has dropped its reference). */
int kv_unlink_record(kv_ctx_t *c, const void *key, size_t klen);

/* WATCH versions: kv_touch() bumps key's counter (logged: a rollback restores it), kv_touch_all()
 * the database's epoch (FLUSHDB); kv_version() reads both into v[0], v[1]. The caller holds the
 * key's stripe lock. */
int kv_touch(kv_ctx_t *c, const void *key, size_t len);
int kv_touch_all(kv_ctx_t *c);
int kv_version(kv_ctx_t *c, const void *key, size_t len, uint64_t v[2]);
/* 1 when key's record exists but its expiry has passed (lazy expiry has not deleted it yet), else
 * 0; negative on failure. Changes nothing. */
int kv_peek_expired(kv_ctx_t *c, const void *key, size_t len);
/* Makes sure database dbi (and, when `versions`, its WATCH version block: on the first WATCH) exist,
 * each created in a transaction of its own, outside any the caller will open. */
int kv_db_prepare(shmd_store_t *s, unsigned dbi, int versions);
/* 1 when database dbi exists, 0 when not (nothing is created but the keyspace root), or < 0. */
int kv_db_exists(shmd_store_t *s, unsigned dbi);
/* Fills c for database dbi inside the thread's open transaction tx, without a nesting level of
 * its own (EXEC's context per database: it takes the stripe locks up front). */
int kv_ctx_join(shmd_store_t *s, unsigned dbi, shmd_tx_t *tx, kv_ctx_t *c);

#endif
