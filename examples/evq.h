/* SPDX-License-Identifier: MIT */
/*
 * evq: a bounded multi-producer event queue with per-consumer cursors, in a shmdict store.
 *
 * The worked example of docs/custom-containers.md: a crash-safe shared-memory structure built only
 * on shmdict's public API (shmdict/tx.h, ptr.h, store.h, alloc.h). Any number of processes push
 * events (byte strings); each consumer has a durable cursor (a subscription that survives the
 * death and restart of the consumer's process) and reads every event pushed after it subscribed,
 * in push order. The queue holds at most `capacity` events: a push into a full queue first drops
 * the oldest event if every consumer has read it, and otherwise fails with SHMD_ENOSPC, so a slow
 * consumer holds producers back instead of losing events (back-pressure).
 *
 * A game server uses it for what crosses process boundaries and must not be lost when one process
 * dies: match results from the game processes to the persister, to the ranking service and to the
 * anti-cheat process, each reading at its own pace.
 *
 * Every function is one shmdict transaction (or joins the caller's): a process killed at any
 * instruction leaves the queue as it was before the call or as it is after it, with no event
 * leaked or freed twice. evq_check() proves the invariants listed in evq.c.
 *
 * Statuses are shmdict's (shmdict/error.h): 0 on success, a negative SHMD_E* code on failure.
 */
#ifndef EVQ_H
#define EVQ_H

#include <stddef.h>
#include <stdint.h>

#include "shmdict.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EVQ_MAX_CAPACITY (1u << 20)  /* events a queue may hold */
#define EVQ_MAX_CONSUMERS 256u       /* consumer slots a queue may have */
#define EVQ_MAX_EVENT (1u << 20)     /* bytes in one event */

/*
 * Creates an empty queue for at most `capacity` events and `max_consumers` consumers and stores
 * its pointer in *out. Inside a transaction of the caller the queue is allocated as part of it.
 * Returns SHMD_EINVAL (sizes out of range), SHMD_ENOSPC, SHMD_ETXFULL; on failure nothing is
 * allocated.
 */
int evq_create(shmd_store_t *s, uint32_t capacity, uint32_t max_consumers, shmd_ptr_t *out);

/*
 * The queue under the named root `root`, created (with the sizes given) if there is none yet. Safe
 * when several processes race to create it: they all get the winner's queue. Returns the statuses
 * of evq_create() and shmd_root_set_nx().
 */
int evq_open(shmd_store_t *s, const char *root, uint32_t capacity, uint32_t max_consumers,
             shmd_ptr_t *out);

/* Frees the queue and every event it holds, in one transaction. Nobody may use it afterwards
 * (remove the root that names it first). Returns SHMD_ECORRUPT for a damaged queue. */
int evq_destroy(shmd_store_t *s, shmd_ptr_t q);

/*
 * Appends a copy of data[0 .. len) and stores its sequence number (0, 1, 2, ... in push order) in
 * *seq (may be NULL). When the queue is full, drops the oldest event if every consumer has read
 * it; otherwise returns SHMD_ENOSPC (a consumer lags `capacity` events behind). Also SHMD_ETOOBIG
 * (len > EVQ_MAX_EVENT), SHMD_ECORRUPT. On failure nothing is changed.
 */
int evq_push(shmd_store_t *s, shmd_ptr_t q, const void *data, size_t len, uint64_t *seq);

/*
 * Takes a free consumer slot and stores its number in *consumer: the consumer reads from the
 * oldest event held (`from_oldest`) or from the next event pushed. The slot stays taken until
 * evq_unsubscribe(), whatever happens to the process: store the number where the consumer's next
 * incarnation finds it. Returns SHMD_ENOSPC when every slot is taken.
 */
int evq_subscribe(shmd_store_t *s, shmd_ptr_t q, int from_oldest, uint32_t *consumer);

/* Frees a consumer slot. Returns SHMD_ENOTFOUND when the slot is not taken. */
int evq_unsubscribe(shmd_store_t *s, shmd_ptr_t q, uint32_t consumer);

/*
 * The consumer's next event, without consuming it: copies it into buf[0 .. min(cap, length)),
 * stores its length in *len and its sequence number in *seq (either may be NULL). Returns
 * SHMD_ENOTFOUND when the consumer has read everything, SHMD_ERANGE when the event is longer than
 * cap (the first cap bytes are copied), SHMD_EINVAL for a slot that is not taken.
 */
int evq_peek(shmd_store_t *s, shmd_ptr_t q, uint32_t consumer, void *buf, size_t cap, size_t *len,
             uint64_t *seq);

/*
 * Marks event `seq` (the one evq_peek() returned) as read by `consumer`. Peek, process, ack gives
 * at-least-once delivery: a consumer that dies before its ack sees the event again. Returns
 * SHMD_EINVAL when seq is not the consumer's next event (e.g. acked twice).
 */
int evq_ack(shmd_store_t *s, shmd_ptr_t q, uint32_t consumer, uint64_t seq);

/* evq_peek() and evq_ack() in one transaction (at-most-once delivery). On SHMD_ERANGE nothing is
 * consumed. */
int evq_poll(shmd_store_t *s, shmd_ptr_t q, uint32_t consumer, void *buf, size_t cap, size_t *len,
             uint64_t *seq);

typedef struct evq_stats_s {
  uint64_t capacity, max_consumers;
  uint64_t head_seq;  /* sequence number of the oldest event held */
  uint64_t tail_seq;  /* sequence number the next push gets */
  uint64_t consumers; /* slots taken */
  uint64_t max_lag;   /* events the slowest consumer has not read */
} evq_stats_t;

/* Fills *st under the queue's lock. Returns 0 or SHMD_ECORRUPT. */
int evq_stats(shmd_store_t *s, shmd_ptr_t q, evq_stats_t *st);

/* The cursor of `consumer` (the sequence number of its next event) in *next_seq. SHMD_EINVAL for a
 * slot that is not taken. */
int evq_cursor(shmd_store_t *s, shmd_ptr_t q, uint32_t consumer, uint64_t *next_seq);

/*
 * The invariant checker. Under the queue's lock, with every pointer bounds-checked and every walk
 * bounded by the capacity: the header is sane, head <= tail <= head + capacity, the ring holds an
 * event for exactly the sequence numbers [head, tail) in their slots (null elsewhere), each event
 * is a live allocation big enough for its length and carries its own sequence number and the
 * checksum of its bytes, and every taken consumer's cursor lies in [head, tail]. Returns 0 when
 * everything holds, SHMD_ECORRUPT otherwise (the place in evq_check_detail()), never crashes on
 * damage.
 */
int evq_check(shmd_store_t *s, shmd_ptr_t q);

/* What the last failing evq_check() of this thread found ("" when it found nothing). */
const char *evq_check_detail(void);

#ifdef __cplusplus
}
#endif
#endif /* EVQ_H */
