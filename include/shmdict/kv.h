/* SPDX-License-Identifier: MIT */
/*
 * The Redis-like keyspace: numbered databases of typed values (string, hash, list, set, sorted
 * set) with Redis's command names and semantics, as typed C functions for the hot paths and as one
 * generic entry point that takes an argument vector, so the command-line tool (and later a RESP
 * server) run exactly the same code. Every command is atomic and crash-safe (one transaction).
 */
#ifndef SHMD_KV_H
#define SHMD_KV_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "ptr.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reply of a command, mirroring Redis's reply types. */
typedef enum shmd_reply_type_e {
  SHMD_REPLY_STATUS = 1,  /* str: e.g. "OK" */
  SHMD_REPLY_ERROR = 2,   /* str: Redis's wording, e.g. "WRONGTYPE Operation against a key ..." */
  SHMD_REPLY_INTEGER = 3, /* integer */
  SHMD_REPLY_BULK = 4,    /* str, len (binary safe; str is NUL-terminated for convenience) */
  SHMD_REPLY_NIL = 5,     /* integer 0: Redis's null bulk ($-1); 1: its null array (*-1) */
  SHMD_REPLY_ARRAY = 6,   /* elems[0 .. nelems) */
} shmd_reply_type_t;

/* A fixed layout (elems is an array of them, so the size is ABI): replies of new kinds would get
 * new type values and use these fields. */
typedef struct shmd_reply_s {
  shmd_reply_type_t type;
  int64_t integer;
  char *str;
  size_t len;
  struct shmd_reply_s *elems;
  size_t nelems;
} shmd_reply_t;

/* Frees a reply and everything it owns. shmd_reply_free(NULL) is a no-op. */
SHMD_API void shmd_reply_free(shmd_reply_t *reply);

/*
 * Runs one command (argv[0] is its name, case-insensitive; lens[i] the byte length of argv[i]) on
 * database `db` of `store`, and stores a newly allocated reply in *reply. Command-level failures
 * (wrong type, syntax, not an integer, unknown command) are replies of type SHMD_REPLY_ERROR with
 * Redis's wording and a return of 0. A negative status is returned (and *reply left NULL) only
 * when the command could not run at all: SHMD_ENOMEM, SHMD_ENOLANE, SHMD_ECORRUPT, ...
 * A command is one transaction, so it can add only so many elements or touch so many keys at once
 * (about 110 new hash fields / set members / list elements, 55 sorted-set members, 120 MSET keys,
 * 16 keys of a set operation; see docs/commands.md): beyond that it answers an "ERR shmdict: ..."
 * error and changes nothing. A store that cannot grow gives Redis's "OOM ..." error reply.
 * A reply is built whole in this process's memory, so it is bounded: a command whose reply (and the
 * member copies it makes to build it) would take more than shmd_kv_max_reply() bytes answers
 * "ERR reply exceeds maximum allowed size (shmdict max-reply-bytes)" and changes nothing; an
 * argument longer than 512 MiB (Redis's proto-max-bulk-len) answers "ERR Protocol error: invalid
 * bulk length". Databases are 0 .. SHMD_KV_DATABASES - 1 (SHMD_EINVAL otherwise).
 */
SHMD_API int shmd_kv_command_db(shmd_store_t *store, unsigned db, int argc,
                                const char *const argv[], const size_t lens[],
                                shmd_reply_t **reply);

/* shmd_kv_command_db() on database 0. */
SHMD_API int shmd_kv_command(shmd_store_t *store, int argc, const char *const argv[],
                             const size_t lens[], shmd_reply_t **reply);

/* The default reply ceiling: 1 GiB, twice the largest string (proto-max-bulk-len, 512 MiB), so a
 * GET of any value fits, and Redis's default client-query-buffer-limit. */
#define SHMD_KV_MAX_REPLY_DEFAULT (UINT64_C(1) << 30)

/*
 * Sets the ceiling on the memory one command's reply may take in this process (the bound of
 * shmd_kv_command_db(), counted as the reply's memory: 48 bytes per array element plus each
 * string's bytes with malloc's overhead, at least 32). Process-wide, for every store and thread,
 * from the next command on. 0 restores SHMD_KV_MAX_REPLY_DEFAULT; values below 4096 are taken as
 * 4096; UINT64_MAX lifts the ceiling. Returns the previous ceiling. Cannot fail.
 */
SHMD_API uint64_t shmd_kv_set_max_reply(uint64_t bytes);

/* The current reply ceiling in bytes. Cannot fail. */
SHMD_API uint64_t shmd_kv_max_reply(void);

/* ---------------------------------------------------------------------------------------------- */
/* Transactions: MULTI / EXEC / DISCARD / WATCH / UNWATCH (a command batch)
 *
 * A shmd_kv_multi_t is one client's state, as a Redis connection has it: its current database
 * (SELECT), whether it is inside MULTI, the commands queued since, and the keys it WATCHes. It is
 * process-local memory, used by one thread at a time (a server keeps one per connection; the CLI
 * one per session). EXEC runs the queued commands as ONE transaction of the store: they all take
 * effect or, if the process dies anywhere before the commit, none of them does (recovery rolls the
 * whole batch back); other processes never see a part of it (EXEC holds the stripe locks of every
 * key of the batch from before the first command to after the last). WATCH sees changes made by
 * any process (key versions kept in the store, see docs/architecture.md).
 *
 * Replies are Redis 7.0's: "+OK" for MULTI, "+QUEUED" for each queued command; a queued command
 * that is unknown or has the wrong number of arguments answers its error at once and makes EXEC
 * answer "EXECABORT Transaction discarded because of previous errors."; MULTI inside MULTI answers
 * "ERR MULTI calls can not be nested", WATCH inside MULTI "ERR WATCH inside MULTI is not allowed",
 * EXEC / DISCARD without MULTI "ERR EXEC without MULTI" / "ERR DISCARD without MULTI". EXEC
 * answers an array with one reply per queued command (an error reply of one command does not stop
 * the others, as in Redis), or SHMD_REPLY_NIL when a watched key changed since WATCH (nothing
 * ran). EXEC, DISCARD and a failed EXEC all end MULTI and forget the watched keys. shmdict's own
 * difference: a command that fails for a reason Redis has no per-command answer for (the store is
 * full, the reply is over the ceiling) rolls the whole batch back, and EXEC answers that error.
 */
typedef struct shmd_kv_multi_s shmd_kv_multi_t;

/* Creates a client state on `store` (which must outlive it) with current database `db`. Returns
 * 0, SHMD_EINVAL (db out of range, NULL arguments) or SHMD_ENOMEM; on failure *out is NULL. */
SHMD_API int shmd_kv_multi_new(shmd_store_t *store, unsigned db, shmd_kv_multi_t **out);

/* Discards any queued commands, forgets the watched keys and frees the state. NULL is a no-op. */
SHMD_API void shmd_kv_multi_free(shmd_kv_multi_t *m);

/*
 * Runs one command as a client would send it: MULTI, EXEC, DISCARD, WATCH, UNWATCH and SELECT act
 * on the state; inside MULTI any other command is checked (name, arity) and queued; outside MULTI
 * it runs at once as shmd_kv_command_db() on the current database. Stores a newly allocated reply
 * in *reply; returns 0, or a negative status as shmd_kv_command_db() does (*reply NULL then).
 */
SHMD_API int shmd_kv_multi_command(shmd_kv_multi_t *m, int argc, const char *const argv[], const size_t lens[],
                                   shmd_reply_t **reply);

/* The client's current database (SELECT changes it). Cannot fail. */
SHMD_API unsigned shmd_kv_multi_db(const shmd_kv_multi_t *m);

/* 1 between MULTI and the EXEC or DISCARD that ends it, else 0. Cannot fail. */
SHMD_API int shmd_kv_multi_active(const shmd_kv_multi_t *m);

/* The typed forms of the commands above, for programs that batch without building argument
 * vectors: WATCH one key of the current database (SHMD_EINVAL inside MULTI, and for the first
 * WATCH on a database from inside a transaction the caller holds open, which would have to create
 * the database's version counters; otherwise 0 or a status as shmd_kv_command_db()), UNWATCH (cannot fail), MULTI (SHMD_EEXIST inside MULTI), and
 * EXEC (the reply as above; SHMD_EINVAL without MULTI). DISCARD: shmd_kv_multi_discard() (no-op
 * outside MULTI). Commands are queued with shmd_kv_multi_command(). */
SHMD_API int shmd_kv_watch(shmd_kv_multi_t *m, const void *key, size_t key_len);
SHMD_API void shmd_kv_unwatch(shmd_kv_multi_t *m);
SHMD_API int shmd_kv_multi_begin(shmd_kv_multi_t *m);
SHMD_API int shmd_kv_multi_exec(shmd_kv_multi_t *m, shmd_reply_t **reply);
SHMD_API void shmd_kv_multi_discard(shmd_kv_multi_t *m);

/* ---------------------------------------------------------------------------------------------- */
/* Databases, typed hot-path functions and maintenance.
 *
 * The typed functions run the same code as the commands (one transaction each, joining the
 * caller's open transaction if any) and return: SHMD_OK (0), SHMD_ENOTFOUND (no such key / field /
 * member, or an expired key), SHMD_EEXIST (SHMD_KV_NX and the key exists), SHMD_ENOSPC (store
 * full), SHMD_EWRONGTYPE (the key holds another type), SHMD_ECORRUPT; also SHMD_EINVAL (database
 * out of range, bad flags), SHMD_ENOMEM, SHMD_ENOLANE, SHMD_ETXFULL. On failure nothing is changed.
 */

/* Number of databases (0 .. SHMD_KV_DATABASES - 1), as Redis's default. */
#define SHMD_KV_DATABASES 16u

/* Flags of shmd_kv_set(). */
enum {
  SHMD_KV_NX = 1u, /* only set if the key does not exist: SHMD_EEXIST otherwise */
  SHMD_KV_XX = 2u, /* only set if the key exists: SHMD_ENOTFOUND otherwise */
};

/*
 * GET: copies the string value of `key` into buf[0 .. min(cap, length)) and stores its full length
 * in *len (may be NULL); buf may be NULL with cap 0 to ask for the length. Returns SHMD_ERANGE
 * when the value is longer than cap (the first cap bytes are copied), SHMD_ENOTFOUND,
 * SHMD_EWRONGTYPE. Outside a transaction, a value of up to about 500 bytes is read without any
 * lock, transaction or allocation (a validated lock-free read that retries a few times while
 * writers change the key, then waits for them on the locks); the copy is always one whole value.
 */
SHMD_API int shmd_kv_get(shmd_store_t *store, unsigned db, const void *key, size_t key_len,
                         void *buf, size_t cap, size_t *len);

/*
 * GET without a copy into the caller's memory: stores in *val a pointer to the string value of
 * `key` and its length in *len (may be NULL). The bytes are a snapshot taken when the call ran
 * (whole: never part of an old value and part of a new one), in a buffer that belongs to the
 * calling thread: they stay valid and unchanged until this thread's next shmd_kv_get_view() call
 * (on any store) or its exit, whatever other threads and processes do to the key meanwhile. Do
 * not free it, and do not pass a pointer into it as the key of the next call. Outside a
 * transaction a value of up to about 500 bytes is read without any lock, transaction or
 * allocation (the thread's buffer is allocated on its first call and grown for a bigger value);
 * otherwise it runs as shmd_kv_get() does. Returns 0, SHMD_ENOTFOUND, SHMD_EWRONGTYPE, SHMD_EINVAL
 * (val NULL, database out of range), SHMD_ENOMEM (the buffer could not grow), or a status as
 * shmd_kv_get(); on failure *val is NULL.
 */
SHMD_API int shmd_kv_get_view(shmd_store_t *store, unsigned db, const void *key, size_t key_len,
                              const void **val, size_t *len);

/* SET key value [NX|XX] (flags SHMD_KV_NX / SHMD_KV_XX; 0 = always). Replaces any value of any
 * type and clears its expiry, as SET does. SHMD_ETOOBIG for a value longer than 512 MiB (Redis's
 * proto-max-bulk-len). */
SHMD_API int shmd_kv_set(shmd_store_t *store, unsigned db, const void *key, size_t key_len,
                         const void *val, size_t val_len, unsigned flags);

/* DEL key: SHMD_ENOTFOUND if absent. Big containers are freed in pieces after the unlink (see
 * shmd_kv_drain()). */
SHMD_API int shmd_kv_del(shmd_store_t *store, unsigned db, const void *key, size_t key_len);

/* HGET: copies field's value as shmd_kv_get() does. */
SHMD_API int shmd_kv_hget(shmd_store_t *store, unsigned db, const void *key, size_t key_len,
                          const void *field, size_t field_len, void *buf, size_t cap, size_t *len);

/* HSET key field value; *created (may be NULL) receives 1 when the field is new. */
SHMD_API int shmd_kv_hset(shmd_store_t *store, unsigned db, const void *key, size_t key_len,
                          const void *field, size_t field_len, const void *val, size_t val_len,
                          int *created);

/* ZADD key score member; *added (may be NULL) receives 1 when the member is new. SHMD_EINVAL for
 * a NaN score. */
SHMD_API int shmd_kv_zadd(shmd_store_t *store, unsigned db, const void *key, size_t key_len,
                          double score, const void *member, size_t member_len, int *added);

/* ZRANK (reverse != 0: ZREVRANK): the 0-based rank of member in *rank. */
SHMD_API int shmd_kv_zrank(shmd_store_t *store, unsigned db, const void *key, size_t key_len,
                           const void *member, size_t member_len, int reverse, uint64_t *rank);

/*
 * Active expiry step: visits about `budget` keys (0: 20) of database `db`, continuing where the
 * previous call of this thread stopped (one stripe after another), and deletes those whose expiry
 * has passed; *expired (may be NULL) receives how many. Also does up to `budget` steps of freeing
 * deleted big values (see shmd_kv_drain()). Call it from an idle loop, as Redis's active expire
 * cycle. Returns 0 or a negative status.
 */
SHMD_API int shmd_kv_expire_step(shmd_store_t *store, unsigned db, size_t budget, size_t *expired);

/*
 * Frees containers of deleted keys that are still on database `db`'s garbage list (left by a
 * process that died after a DEL, or by another in the middle of freeing them), in steps of one
 * short transaction each; at most `budget` steps (0: until the list is empty). Must be called
 * outside a transaction (SHMD_EINVAL). Returns 0 when nothing is left, 1 when work remains, or a
 * negative status.
 */
SHMD_API int shmd_kv_drain(shmd_store_t *store, unsigned db, size_t budget);

/*
 * Verifies the keyspace of every database: every stripe hash (shmd_hash_check), every value
 * record, every value container (list / hash / rbtree check) and every container on the garbage
 * lists. Run it on a quiet store (the containers are checked one after another, not under one
 * lock). Returns 0, SHMD_ECORRUPT (detail in shmd_errdetail()), SHMD_ENOMEM, or SHMD_EBUSY when
 * a live owner keeps a lock it needs for 10 s in all (or the handle's shmd_set_lock_wait() bound,
 * if smaller; the holder in shmd_errdetail()). A store without a keyspace is fine.
 */
SHMD_API int shmd_kv_check(shmd_store_t *store);

/*
 * PUBLISH channel message from C: the message reaches the subscribers of every shmdict-server
 * worker serving this store (SUBSCRIBE channel, or a PSUBSCRIBE pattern that matches it), exactly
 * as a PUBLISH sent to one of them does. *receivers (may be NULL) receives the number of
 * subscriptions it was delivered to, counted as Redis's PUBLISH counts them (channel subscribers
 * plus matching pattern subscriptions) across the workers. A store that no server has served has
 * nobody to deliver to: returns 0 with *receivers = 0 and stores nothing. Messages travel through
 * a ring in the store (pubsub-ring-bytes, 8 MiB by default); one bigger than half the ring gives
 * SHMD_ETOOBIG. Also SHMD_EINVAL, SHMD_ENOLANE, SHMD_ECORRUPT. Never blocks on a subscriber: a
 * subscriber too slow to keep up is disconnected by its server, as Redis does.
 */
SHMD_API int shmd_kv_publish(shmd_store_t *store, const void *channel, size_t channel_len, const void *message,
                             size_t message_len, uint64_t *receivers);

/* Redis's glob match (KEYS, SCAN MATCH): `*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\x`. Returns 1 when
 * str[0 .. slen) matches pattern[0 .. plen), else 0. Cannot fail. */
SHMD_API int shmd_kv_glob(const char *pattern, size_t plen, const char *str, size_t slen);

/* Keys per type in one database, for tools. A fixed layout: filled whole, reserved words with
 * zeros; a later field (a new type's count) takes reserved words in place. */
typedef struct shmd_kv_info_s {
  uint64_t keys; /* all keys (including expired ones not yet deleted) */
  uint64_t strings, hashes, lists, sets, zsets;
  uint64_t expires;     /* keys with an expiry */
  uint64_t garbage;     /* containers waiting on the garbage list */
  uint64_t reserved[8]; /* zero */
} shmd_kv_info_t;

/* Fills *info for database `db` (walks every key under the stripe locks). Returns 0, SHMD_EINVAL,
 * SHMD_ECORRUPT, SHMD_ENOMEM. */
SHMD_API int shmd_kv_info(shmd_store_t *store, unsigned db, shmd_kv_info_t *info);

#ifdef __cplusplus
}
#endif
#endif /* SHMD_KV_H */
