/* SPDX-License-Identifier: MIT */
/*
 * Internal: the keyspace's change log (kv/changelog.c), a ring in the store that every committed
 * keyspace write appends the Redis commands reproducing it to, inside the write's own transaction,
 * and that a persister (persist/aof.c) copies to an append-only file. See the essay at the top of
 * changelog.c and docs/durability.md.
 */
#ifndef SHMD_KV_CHANGELOG_H
#define SHMD_KV_CHANGELOG_H

#include <stddef.h>
#include <stdint.h>

#include "kv/kv_int.h"
#include "kv/cmdtable.h"
#include "shmdict/kv.h"
#include "shmdict/persist.h"

#define SHMD__AOF_MAGIC 0x31666f61646d6873ull /* "shmdaof1" */
#define SHMD__AOF_REC_MAGIC 0x63657241u       /* "Arec" */

/* The ring header, in shared memory (named by the `aof` word of database 0's kv_db_t). Words up
 * to `data` change only under `lock` inside a writer's transaction (logged), or at creation;
 * the persister's words after `pad` are its own (atomic stores, never logged). */
typedef struct shmd__aof_s {
  uint64_t magic;
  shmd_lock_t lock;    /* held by every keyspace transaction of a store with persistence on */
  uint64_t head;       /* ring byte position (monotonic) where the next record goes */
  uint64_t next_seq;   /* sequence number of the next record (from 1) */
  uint64_t enabled;    /* 1: writes are logged */
  uint64_t policy;     /* SHMD_AOF_FSYNC_* */
  uint64_t cap_bytes;  /* ring size, a power of two */
  shmd_ptr_t data;     /* cap_bytes bytes */
  uint64_t pad[8];
  /* the persister's */
  uint64_t tail;       /* ring position up to which the records are in the file */
  uint64_t tail_seq;   /* sequence number of the record at tail */
  uint64_t durable_seq;  /* every record with seq <= durable_seq is fsynced (policy always) */
  uint32_t durable_word; /* futex word: bumped with durable_seq and tail */
  uint32_t kick;         /* futex word: bumped by writers that wait (policy always) */
  uint32_t persister_pid; /* the active persister, 0 none */
  uint32_t pad2;
  uint64_t persisted_seq; /* every record with seq <= persisted_seq is written to the file */
  uint64_t reserved[13];
} shmd__aof_t;

/* A record in the ring (8-byte aligned): this header, then ncmds entries of {u32 db, u32 bytes,
 * RESP bytes, zero padding to 8}. */
typedef struct shmd__aof_rec_s {
  uint32_t magic;
  uint32_t ncmds;
  uint32_t body_bytes;
  uint32_t pad;
  uint64_t seq;
} shmd__aof_rec_t;

enum { SHMD__AOF_REC_HDR = sizeof(shmd__aof_rec_t) };

/* The ring of store s (NULL in *out when none was made yet). Returns 0 or SHMD_ECORRUPT. */
int shmd__aof_find(shmd_store_t *s, shmd__aof_t **out);
/* Makes the ring (cap_bytes rounded up to a power of two, at least 64 KiB) when there is none;
 * *out gets it. Persistence stays off (enabled = 0). Runs in a transaction of its own. */
int shmd__aof_create(shmd_store_t *s, uint64_t cap_bytes, shmd__aof_t **out);
/* Reads ring bytes [pos, pos + n) (wrapping) into dst. */
void shmd__aof_read(shmd_store_t *s, const shmd__aof_t *a, uint64_t pos, void *dst, size_t n);

/* Hooks of the keyspace (keyspace.c, dispatch.c, api.c, multi.c). */

/* kv_begin / kv_ctx_join: on a store with persistence on, takes the ring lock (before any stripe:
 * store -> kv root -> change log -> stripes) and sets c->aof. Returns 0 or the lock's status. */
int shmd__aof_enter(kv_ctx_t *c);
/* kv_lock_stripes after the stripes are held: persistence was turned on while this transaction
 * did not log? SHMD_EBUSY then (the caller retries from the start), else 0. */
int shmd__aof_recheck(kv_ctx_t *c);
/* Lazy expiry deleted key: appends "DEL key". */
int shmd__aof_expired(kv_ctx_t *c, const void *key, size_t len);
/* A write command that changed the keyspace: appends its propagation form (see changelog.c). */
int shmd__aof_command(kv_ctx_t *c, const shmd__kv_cmd_t *cmd, int argc, const char *const argv[],
                      const size_t lens[], const shmd_reply_t *r);
/* Appends the command argv[0 .. argc) as it is (typed C API writes). */
int shmd__aof_args(kv_ctx_t *c, int argc, const char *const argv[], const size_t lens[]);
/* After the outermost commit: under policy always, waits until the persister has fsynced this
 * thread's last record. When no persister is alive for SHMD__AOF_WAIT_MS, returns SHMD_EBUSY: the
 * write is done (committed, in the ring) but not known to be on disk; else 0. */
#define SHMD__AOF_WAIT_MS 5000u
int shmd__aof_after_commit(shmd_store_t *s);

/* Expiry clock of the calling thread: frozen (nothing expires, relative times are not used) while
 * a log is replayed or a base written; see kv_now_ms(). */
void shmd__kv_clock_freeze(int on);

#endif
