/* SPDX-License-Identifier: MIT */
/*
 * Internal: the hash's optimistic (lock-free, validated) lookup on its own, without the locked
 * path behind it, for the keyspace's read path (kv/keyspace.c, "Lock-free reads"). The keyspace
 * cannot fall back to the hash's own locked path there: a stripe hash read without its stripe lock
 * may have been swapped out by FLUSHDB and freed meanwhile, and locking a freed block would write
 * to it. So the keyspace takes this answer only when it is validated, and otherwise runs its
 * transactional path, which holds the stripe lock.
 */
#ifndef SHMD_CONTAINERS_HASH_INT_H
#define SHMD_CONTAINERS_HASH_INT_H

#include <stddef.h>

#include "shmdict/hash.h"

/* The buffer shmd__hash_peek() needs: an inline value plus a fixed-size copy's slack. */
#define SHMD__HASH_PEEK_BUF (SHMD_HASH_INLINE_MAX + 64)

/*
 * Looks key up in hash h without taking its lock (the "Optimistic reads" of hash.c): reads only
 * (never writes shared memory, never records a corruption detail), bounds-checks every pointer it
 * follows, and validates its reads against the hash's write_seq and lock word. Returns 1 when key
 * was found, with its value (an inline value only: at most SHMD_HASH_INLINE_MAX bytes) copied to
 * vbuf[0 .. *vlen) (vbuf has room for SHMD__HASH_PEEK_BUF bytes; bytes past *vlen are garbage);
 * 0 when key is absent; -1 when it cannot answer without the lock (a writer holds it, the value
 * is out of line, validation failed a few times, h is no hash, or h's header lies outside the
 * store). h may be any value: a block that was a hash and was freed is read, not written. It does
 * not look at the calling thread's transaction: the caller must be outside any (shmd_tx_depth()
 * == 0; inside one, reads must take the lock so that a read and a later write stay atomic).
 */
int shmd__hash_peek(shmd_store_t *s, shmd_ptr_t h, const void *key, size_t klen, unsigned char *vbuf,
                    size_t *vlen);

#endif
