/* SPDX-License-Identifier: MIT */
/*
 * Hash: a map from byte-string keys to byte-string values in shared memory.
 *
 * Chained buckets in power-of-two tables with Redis-style incremental rehash: when the table must
 * grow (load factor 1) or shrink (load factor 1/8), a second table is allocated and every later
 * operation moves a bounded number of buckets into it, so no single call pays for the whole
 * resize; shmd_hash_rehash_step() lets an application do that work from an idle loop. Small keys
 * and values (up to SHMD_HASH_INLINE_MAX bytes) live inline in their entry, one allocation per
 * entry; larger ones are separate allocations. Keys are hashed with xxh3 and a seed chosen per
 * hash when it is created.
 *
 * A hash is addressed by the shmd_ptr_t that shmd_hash_create() returns, from any process that has
 * the store open. Every function takes the hash's own lock (a shmd_lock_t in its header) inside a
 * transaction: called outside a transaction, each call is one atomic, crash-safe step; called
 * inside the caller's transaction (shmd_tx_begin(), see tx.h), it joins it, so a keyspace command
 * that touches several structures commits or rolls back as a whole, and the hash's lock stays held
 * until the caller's outermost commit. Exception: called outside a transaction, shmd_hash_get()
 * and shmd_hash_contains() first read without the lock and validate what they read against a
 * counter every writer bumps and the lock word (a seqlock that survives crashed writers;
 * containers/hash.c explains it); they take the lock only when a writer holds it or a validation
 * fails, so readers neither wait for each other nor write to shared memory. Inside a transaction
 * they take the lock like every other call, so a get and a put in one transaction stay atomic.
 * Statuses that only report an outcome (SHMD_ENOTFOUND,
 * SHMD_EEXIST, SHMD_ERANGE) never abort the caller's transaction; real failures (SHMD_ENOSPC,
 * SHMD_ETXFULL, SHMD_ECORRUPT) may, and then say so.
 *
 * Limits: keys and values are 0 .. SHMD_HASH_LEN_MAX bytes (SHMD_ETOOBIG beyond).
 */
#ifndef SHMD_HASH_H
#define SHMD_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "ptr.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest key or value. */
#define SHMD_HASH_LEN_MAX 0x7fffffffu
/* Keys and values up to this many bytes are stored inline in their entry. */
#define SHMD_HASH_INLINE_MAX 512u

/* Modes of shmd_hash_put(). */
typedef enum shmd_hash_mode_e {
  SHMD_HASH_UPSERT = 0, /* insert the key, or replace its value (Redis HSET / SET) */
  SHMD_HASH_INSERT = 1, /* only insert: SHMD_EEXIST if the key exists (SET NX / HSETNX) */
  SHMD_HASH_UPDATE = 2, /* only replace: SHMD_ENOTFOUND if the key is absent (SET XX) */
} shmd_hash_mode_t;

/* ---------------------------------------------------------------------------------------------- */
/* Create and destroy */

/*
 * Creates an empty hash with room for about `expected` entries before its first resize (0 for the
 * smallest table, allocated at the first insert) and stores its pointer in *out. Inside a
 * transaction the hash is allocated as part of it (freed again if it aborts), so the caller can
 * link it into its own structures atomically; outside one, the caller owns the new hash and should
 * record it (e.g. shmd_root_set()) at once. Returns SHMD_ENOSPC, SHMD_ETOOBIG, SHMD_ETXFULL or
 * SHMD_ENOLANE; on failure nothing is allocated and *out is unchanged.
 */
SHMD_API int shmd_hash_create(shmd_store_t *s, size_t expected, shmd_ptr_t *out);

/*
 * Frees the hash `h` and everything it owns. Outside a transaction it works in pieces, one
 * transaction per batch of entries, each leaving a valid (smaller) hash, and finally frees the
 * tables and the header: if the process dies half-way, what remains is a valid hash that can be
 * destroyed again (and this works in a full store: no step needs store space). Inside the caller's
 * transaction everything happens in that transaction, which grows to hold it all (shmd_tx_reserve):
 * atomic, but it needs store space for the bookkeeping (about 40 bytes per entry); SHMD_ENOSPC then,
 * and the caller's transaction is marked aborted. Returns SHMD_EINVAL if `h` is not a hash,
 * SHMD_ECORRUPT if it is damaged (the caller's transaction is then aborted).
 */
SHMD_API int shmd_hash_destroy(shmd_store_t *s, shmd_ptr_t h);

/* ---------------------------------------------------------------------------------------------- */
/* Single-key operations */

/*
 * Sets key -> value according to `mode`. `created` (may be NULL) receives 1 if a new entry was
 * inserted, 0 if an existing value was replaced. Returns SHMD_EEXIST (SHMD_HASH_INSERT and the key
 * exists), SHMD_ENOTFOUND (SHMD_HASH_UPDATE and the key is absent), SHMD_ETOOBIG (key or value
 * longer than SHMD_HASH_LEN_MAX), SHMD_EINVAL (bad mode, not a hash), SHMD_ENOSPC, SHMD_ETXFULL,
 * SHMD_ECORRUPT. On failure the contents are unchanged (the call may still have moved buckets of a
 * resize in progress, which changes nothing visible).
 */
SHMD_API int shmd_hash_put(shmd_store_t *s, shmd_ptr_t h, const void *key, size_t key_len,
                           const void *val, size_t val_len, shmd_hash_mode_t mode, int *created);

/*
 * Looks key up and copies its value into buf[0 .. buf_len). *val_len (may be NULL) receives the
 * full length of the value. If the value is longer than buf_len, the first buf_len bytes are
 * copied and SHMD_ERANGE is returned, so a caller can retry with a buffer of *val_len bytes (buf
 * may be NULL when buf_len is 0, to ask for the length). Returns SHMD_ENOTFOUND if the key is
 * absent (then buf and *val_len are untouched), SHMD_EINVAL, SHMD_ECORRUPT.
 */
SHMD_API int shmd_hash_get(shmd_store_t *s, shmd_ptr_t h, const void *key, size_t key_len,
                           void *buf, size_t buf_len, size_t *val_len);

/*
 * Like shmd_hash_get(), but stores in *val a copy of the value made with malloc() (free() it),
 * followed by a NUL byte that is not counted in *val_len, so text values can be used as C strings.
 * Returns SHMD_ENOTFOUND, SHMD_ENOMEM, SHMD_EINVAL, SHMD_ECORRUPT; on failure *val and *val_len
 * are unchanged.
 */
SHMD_API int shmd_hash_get_alloc(shmd_store_t *s, shmd_ptr_t h, const void *key, size_t key_len,
                                 void **val, size_t *val_len);

/* Returns 1 if the key is present, 0 if not, or a negative status (SHMD_EINVAL, SHMD_ECORRUPT). */
SHMD_API int shmd_hash_contains(shmd_store_t *s, shmd_ptr_t h, const void *key, size_t key_len);

/*
 * Removes the key and its value. Returns SHMD_ENOTFOUND if it is absent, SHMD_ETXFULL,
 * SHMD_EINVAL, SHMD_ECORRUPT; on failure the contents are unchanged.
 */
SHMD_API int shmd_hash_del(shmd_store_t *s, shmd_ptr_t h, const void *key, size_t key_len);

/* Stores the number of entries in *len. Returns 0, SHMD_EINVAL or SHMD_ECORRUPT. */
SHMD_API int shmd_hash_len(shmd_store_t *s, shmd_ptr_t h, uint64_t *len);

/* ---------------------------------------------------------------------------------------------- */
/* Zero-copy access inside the caller's transaction (for the keyspace and other structures built
 * on the hash). These must be called inside a transaction (SHMD_EINVAL otherwise); the hash's lock
 * is then held until the caller's outermost commit or abort, and the addresses stay valid until
 * then, unless the caller changes or deletes that key through another call. */

/* A fixed layout: more about an entry would come through a new function. */
typedef struct shmd_hash_ref_s {
  const void *key;    /* the entry's key bytes */
  size_t key_len;
  void *val;          /* the value bytes, 8-byte aligned when stored inline */
  size_t val_len;
  shmd_ptr_t val_ptr; /* store pointer to the value bytes, to shmd_tx_log() before changing them */
} shmd_hash_ref_t;

/*
 * Looks key up and fills *ref with the addresses of its key and value in shared memory. To change
 * value bytes in place (same length), call shmd_tx_log(tx, ref->val_ptr + offset, n) first.
 * Returns SHMD_ENOTFOUND if absent (*ref untouched), SHMD_EINVAL, SHMD_ECORRUPT.
 */
SHMD_API int shmd_hash_get_ref(shmd_store_t *s, shmd_ptr_t h, const void *key, size_t key_len,
                               shmd_hash_ref_t *ref);

/*
 * Like shmd_hash_put() with a value of `val_len` bytes that the caller writes afterwards: *ref
 * receives the entry, whose val_len value bytes are zero-filled and already logged (or freshly
 * allocated), so the caller may write them without shmd_tx_log() until its transaction ends. A ref
 * obtained earlier for the same key is invalid after this call. Statuses as shmd_hash_put().
 */
SHMD_API int shmd_hash_put_ref(shmd_store_t *s, shmd_ptr_t h, const void *key, size_t key_len,
                               size_t val_len, shmd_hash_mode_t mode, int *created,
                               shmd_hash_ref_t *ref);

/* ---------------------------------------------------------------------------------------------- */
/* Iteration */

/* Called for each entry by shmd_hash_scan() and shmd_hash_foreach(), with the hash's lock held:
 * the bytes are valid only during the call, and the callback must not change the hash. A non-zero
 * return value stops the walk and is returned by the walker. */
typedef int (*shmd_hash_visit_fn)(const void *key, size_t key_len, const void *val, size_t val_len,
                                  void *arg);

/*
 * One step of a SCAN (Redis's reverse-binary cursor): start with cursor 0 and call again with
 * *next_cursor until it is 0. Each step visits buckets until about `count` entries (at least 1)
 * were passed to fn, or 10 * count buckets were visited. Guarantees: an entry present for the
 * whole scan is passed to fn at least once, across any number of table growths and shrinks and
 * with other processes changing the hash between steps; and, unlike Redis, never twice (a key
 * deleted and inserted again during the scan may be missed, but is not repeated either). Entries
 * added or removed during the scan may or may not be visited. If fn returns non-zero the step
 * stops, that value is returned and *next_cursor is left unchanged (scanning again from the same
 * cursor may repeat some entries). Returns 0, SHMD_EINVAL, SHMD_ECORRUPT.
 */
SHMD_API int shmd_hash_scan(shmd_store_t *s, shmd_ptr_t h, uint64_t cursor, size_t count,
                            shmd_hash_visit_fn fn, void *arg, uint64_t *next_cursor);

/*
 * Calls fn for every entry, all under the lock in one transaction (others wait meanwhile: use the
 * iterator or SCAN for big hashes that others use). fn must not change the hash: if the hash's
 * tables or count change during a call of fn (Redis's iterator fingerprint), the walk stops with
 * SHMD_EBUSY. Returns 0, fn's non-zero value, SHMD_EBUSY, SHMD_EINVAL or SHMD_ECORRUPT.
 */
SHMD_API int shmd_hash_foreach(shmd_store_t *s, shmd_ptr_t h, shmd_hash_visit_fn fn, void *arg);

/*
 * A safe iterator: it visits every entry present for the whole iteration exactly once, however
 * the hash changes in between (the caller may delete the current entry or any other, insert, and
 * other processes may do the same; the table may grow or shrink). It holds no lock and leaves no
 * state in shared memory between calls: it copies batches of entries under the lock (a SCAN that
 * remembers its exact position), so a process that dies while iterating blocks nobody.
 */
typedef struct shmd_hash_iter_s shmd_hash_iter_t;

/* Creates an iterator over `h` in *out (process-local memory). Returns SHMD_ENOMEM, SHMD_EINVAL
 * (not a hash), SHMD_ECORRUPT; on failure *out is unchanged. */
SHMD_API int shmd_hash_iter_new(shmd_store_t *s, shmd_ptr_t h, shmd_hash_iter_t **out);

/*
 * Advances to the next entry and points *key / *val at copies of its bytes (valid until the next
 * call or shmd_hash_iter_free(); either output pair may be NULL). Returns 0, SHMD_ENOTFOUND at the
 * end, SHMD_ENOMEM, SHMD_EINVAL or SHMD_ECORRUPT (the hash was destroyed or damaged).
 */
SHMD_API int shmd_hash_iter_next(shmd_hash_iter_t *it, const void **key, size_t *key_len,
                                 const void **val, size_t *val_len);

/* Frees an iterator. NULL is a no-op. Cannot fail. */
SHMD_API void shmd_hash_iter_free(shmd_hash_iter_t *it);

/* ---------------------------------------------------------------------------------------------- */
/* Maintenance */

/*
 * Does up to `budget` buckets of resize work (and visits at most 10 * budget empty buckets), and
 * starts a shrink that is due (Redis does that from its cron): call it from an idle loop. Outside a
 * transaction the work is split into several short transactions. Returns 1 if more rehash work
 * remains, 0 if the hash is not resizing, or a negative status (SHMD_EINVAL, SHMD_ECORRUPT,
 * SHMD_ENOLANE).
 */
SHMD_API int shmd_hash_rehash_step(shmd_store_t *s, shmd_ptr_t h, size_t budget);

/* Facts about a hash's tables, for tests, tools and benchmarks. A fixed layout: filled whole,
 * reserved words with zeros; a later field takes reserved words in place. */
typedef struct shmd_hash_stats_s {
  uint64_t count;        /* entries */
  uint64_t buckets[2];   /* sizes of table 0 and table 1 (0 when absent) */
  uint64_t rehash_idx;   /* next table-0 bucket to move, while rehashing */
  int rehashing;         /* 1 while a resize is in progress */
  uint64_t seed;         /* the hash seed */
  uint64_t reserved[4];  /* zero */
} shmd_hash_stats_t;

/* Fills *st. Returns 0, SHMD_EINVAL or SHMD_ECORRUPT. */
SHMD_API int shmd_hash_stats(shmd_store_t *s, shmd_ptr_t h, shmd_hash_stats_t *st);

/*
 * The invariant checker: under the lock, verifies the header, both tables during a resize (the
 * buckets of table 0 below rehash_idx are empty), that every entry lies in the bucket its hash
 * selects, that its stored hash matches its key, that every pointer lies inside the store and
 * names a live allocation big enough for what it holds, and that the count matches. Every walk is
 * bounded by the count. Returns 0 if everything holds, SHMD_EINVAL if `h` is not a hash,
 * SHMD_ECORRUPT (with the place in shmd_errdetail()) otherwise; never crashes on damage. Waits for
 * the lock at most 10 s (or the handle's shmd_set_lock_wait() bound), then SHMD_EBUSY.
 */
SHMD_API int shmd_hash_check(shmd_store_t *s, shmd_ptr_t h);

#ifdef __cplusplus
}
#endif
#endif /* SHMD_HASH_H */
