/* SPDX-License-Identifier: MIT */
/*
 * Blocking pops across processes: the store side (Redis's blocked.c signalKeyAsReady, made
 * cross-process). A server worker whose client blocks in BLPOP / BZPOPMIN / ... marks its slot's
 * bit in the bucket of each key (a hash of database and key into KV_PS_BUCKETS buckets). Every
 * keyspace write command, in any process, checks after its commit the buckets of its keys: when a
 * bucket has a bit set, it bumps that bucket's sequence number and the wake-up word and wakes the
 * waiters (futex). A woken worker retries the pops of its clients on buckets whose sequence moved.
 *
 * Nothing is popped for a client before the client is served: the worker runs the pop (LMPOP,
 * ZMPOP, LMOVE) in its own transaction when it retries and writes the reply at once, so a worker
 * killed while its clients block takes no element with it; the elements stay in the list for the
 * next client. The bits are plain atomics, not logged: a worker killed with bits set leaves extra
 * wake-ups until its slot is reclaimed (which clears them), never a missed one.
 *
 * Missed wake-ups: the worker marks the bucket (a full fence) before it tries the pop a second
 * time; the pusher commits its push before it reads the bucket (a full fence). So either the
 * worker's second try sees the element or the pusher sees the bit. A pusher that looked for the
 * root before any server attached looks again within 100 ms (kv/pubsub.c's cache); the workers
 * also compare the sequences every 100 ms and retry every blocked client once a second, which
 * bounds any delay.
 */
#include <string.h>

#include "kv/kv_int.h"
#include "kv/notify.h"
#include "segments/os.h"
#include "shmdict/blob.h"

#define KV_BLOCK_SEED 0x626c6f636b6564ull

unsigned shmd__kv_block_bucket(unsigned db, const void *key, size_t len) {
  return (unsigned)((shmd_hash_bytes(key, len, KV_BLOCK_SEED) + db * 0x9E3779B97F4A7C15ull) >> 40) % KV_PS_BUCKETS;
}

void shmd__kv_block_mark(kv_ps_root_t *r, int slot, unsigned bucket, int on) {
  if (slot < 0 || slot >= (int)KV_PS_SLOTS || bucket >= KV_PS_BUCKETS)
    return;
  if (on)
    __atomic_fetch_or(&r->blocked[bucket], 1ull << slot, __ATOMIC_SEQ_CST);
  else
    __atomic_fetch_and(&r->blocked[bucket], ~(1ull << slot), __ATOMIC_SEQ_CST);
}

void shmd__kv_block_slot(kv_ps_root_t *r, int slot, int on) {
  if (slot < 0 || slot >= (int)KV_PS_SLOTS)
    return;
  if (on)
    __atomic_fetch_or(&r->blocked_slots, 1ull << slot, __ATOMIC_SEQ_CST);
  else
    __atomic_fetch_and(&r->blocked_slots, ~(1ull << slot), __ATOMIC_SEQ_CST);
}

void shmd__kv_block_signal(shmd_store_t *s, unsigned db, int nkeys, const char *const keys[], const size_t lens[]) {
  if (nkeys <= 0)
    return;
  kv_ps_root_t *r = shmd__kv_ps_root(s);
  if (r == NULL)
    return;
  __atomic_thread_fence(__ATOMIC_SEQ_CST); /* the commit before the reads of the bits */
  if (__atomic_load_n(&r->blocked_slots, __ATOMIC_RELAXED) == 0)
    return; /* nobody blocks anywhere: no key to hash (the common case, one load) */
  int woke = 0;
  for (int i = 0; i < nkeys; i++) {
    unsigned b = shmd__kv_block_bucket(db, keys[i], lens[i]);
    if (__atomic_load_n(&r->blocked[b], __ATOMIC_RELAXED) == 0)
      continue;
    __atomic_fetch_add(&r->bucket_seq[b], 1, __ATOMIC_SEQ_CST);
    woke = 1;
  }
  if (woke)
    shmd__kv_ps_wake(r);
}
