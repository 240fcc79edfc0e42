/* SPDX-License-Identifier: MIT */
/*
 * Internal: what the keyspace keeps for shmdict-server and for the processes that share its store
 * (kv/pubsub.c and kv/block.c): worker slots, the pub/sub ring, the subscription registry, the
 * blocked-key table and the wake-up word. The server (server/) is the only user besides the
 * keyspace itself; shmd_kv_publish() in include/shmdict/kv.h is the public entry.
 *
 * Everything hangs off the named root "shmdict.pubsub", created by the first server worker that
 * attaches (shmd__kv_ps_attach). A store no server ever served has no such root: publishing
 * there reaches nobody, and pushes skip the blocked-key check after one cached root lookup.
 */
#ifndef SHMD_KV_NOTIFY_H
#define SHMD_KV_NOTIFY_H

#include <stddef.h>
#include <stdint.h>

#include "shmdict/kv.h"
#include "shmdict/tx.h"

#define KV_PS_SLOTS 64u       /* worker slots (the server's --processes is at most this) */
#define KV_PS_BUCKETS 1024u   /* blocked-key buckets (by a hash of db and key) */
#define KV_PS_REC_HDR 24u     /* ring record header bytes */

/* One worker slot. Written only by its owner (and by whoever reclaims it when it died). */
typedef struct kv_ps_slot_s {
  uint32_t pid;        /* owner, 0 = free */
  uint32_t reserved0;
  uint64_t pidns;      /* the owner's pid namespace (shmd__os_pidns) */
  shmd_ptr_t channels; /* hash container: channel -> uint64 count of this worker's subscribers */
  shmd_ptr_t patterns; /* hash container: pattern -> uint64 count */
  uint64_t started_ms;
  uint64_t reserved[3];
} kv_ps_slot_t;

typedef struct kv_ps_root_s {
  uint64_t magic;
  uint64_t ring_bytes;   /* size of the ring (a power of two) */
  shmd_lock_t lock;      /* slots, ring writers, the registry pointers */
  shmd_ptr_t ring;       /* ring_bytes of records */
  uint64_t head;         /* bytes published so far (monotonic); readers read up to it */
  uint64_t dirty_to;     /* bytes a writer may have written so far (>= head, monotonic) */
  uint64_t messages;     /* messages published */
  uint32_t wake;         /* futex word: bumped after a publish and after a push that someone waits on */
  uint32_t reserved1;
  uint64_t slot_mask;    /* claimed slots */
  uint64_t blocked_slots; /* slots with at least one blocked client: pushes skip the buckets at 0 */
  uint64_t reserved[7];
  kv_ps_slot_t slot[KV_PS_SLOTS];
  uint64_t blocked[KV_PS_BUCKETS];    /* per bucket: the slots with a client blocked on a key of it */
  uint32_t bucket_seq[KV_PS_BUCKETS]; /* per bucket: bumped by a push while blocked[] is not 0 */
} kv_ps_root_t;

/* A message read from the ring. */
typedef struct kv_ps_msg_s {
  const char *channel;
  size_t channel_len;
  const char *message;
  size_t message_len;
} kv_ps_msg_t;

/* ---------------------------------------------------------------------------------------------- */
/* Slots and the ring (pubsub.c) */

/*
 * Attaches a server worker: creates the root (with a ring of ring_bytes, rounded up to a power of
 * two) if the store has none, then claims a slot for the calling process: the slot of `dead_pid`
 * when given (the supervisor reaped that worker: its slot is reclaimed whatever its pid says now),
 * else a free one, else one whose owner process is gone. A reclaimed slot's registry and blocked
 * bits are cleared first. Returns 0 with *slot and *root, SHMD_EBUSY when all slots belong to live
 * processes, or a store error.
 */
int shmd__kv_ps_attach(shmd_store_t *s, uint64_t ring_bytes, uint32_t dead_pid, int *slot, kv_ps_root_t **root);
/* Releases the slot (clears its registry and blocked bits). */
void shmd__kv_ps_detach(shmd_store_t *s, int slot);
/* Reclaims the slots of owners that are gone; returns the mask of slots reclaimed (0 if none). */
uint64_t shmd__kv_ps_reap(shmd_store_t *s);
/* The root, if a server ever attached (NULL otherwise); cached per thread. */
kv_ps_root_t *shmd__kv_ps_root(shmd_store_t *s);

/* Appends a message to the ring and wakes every waiter; *receivers (may be NULL) gets the number
 * of subscribers (channel and pattern) registered in the live slots. */
int shmd__kv_ps_publish(shmd_store_t *s, const void *channel, size_t clen, const void *msg, size_t mlen,
                        uint64_t *receivers);

/*
 * Reads the next message after *pos into buf (grown with realloc as needed; *cap its size).
 * Returns 1 with *m filled and *pos advanced, 0 when there is nothing new, or 2 when the reader
 * fell more than a ring behind (messages were lost: *pos jumps to the head) or found a damaged
 * record (the same). A reader starts from shmd__kv_ps_head().
 */
int shmd__kv_ps_read(kv_ps_root_t *r, shmd_store_t *s, uint64_t *pos, char **buf, size_t *cap, kv_ps_msg_t *m);
uint64_t shmd__kv_ps_head(const kv_ps_root_t *r);

/* Registry: this slot's subscriber count of a channel (pattern != 0: of a pattern) changes by
 * delta (+1 / -1); at 0 the entry goes. */
int shmd__kv_ps_count(shmd_store_t *s, int slot, int pattern, const void *name, size_t len, int delta);
/* Calls fn for every registry entry of the live slots (pattern != 0: the patterns). */
int shmd__kv_ps_foreach(shmd_store_t *s, int pattern,
                        int (*fn)(const void *name, size_t len, uint64_t count, void *arg), void *arg);
/* The subscribers of a channel across the live slots (channel subscriptions only). */
int shmd__kv_ps_numsub(shmd_store_t *s, const void *channel, size_t len, uint64_t *count);

/* ---------------------------------------------------------------------------------------------- */
/* Blocked keys (block.c) */

/* The bucket of key in database db. */
unsigned shmd__kv_block_bucket(unsigned db, const void *key, size_t len);
/* Marks (on != 0) or unmarks this slot as having clients blocked on keys of `bucket`. Marking is
 * a full fence, so a push that commits after it is seen to need a wake-up. */
void shmd__kv_block_mark(kv_ps_root_t *r, int slot, unsigned bucket, int on);
/* Marks or unmarks this slot as having any blocked client (mark it before its buckets). */
void shmd__kv_block_slot(kv_ps_root_t *r, int slot, int on);
/* After a command changed keys: for each key whose bucket has a blocked client anywhere, bumps
 * its bucket's sequence and wakes the waiters. Cheap when nobody waits (one load per key). */
void shmd__kv_block_signal(shmd_store_t *s, unsigned db, int nkeys, const char *const keys[], const size_t lens[]);
/* Bumps the wake-up word and wakes every waiter. */
void shmd__kv_ps_wake(kv_ps_root_t *r);

#endif
