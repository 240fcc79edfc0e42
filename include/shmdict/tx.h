/* SPDX-License-Identifier: MIT */
/*
 * Locks and transactions: the crash protocol, for people who build their own shared-memory
 * structures (the containers and the keyspace are built on exactly this API).
 *
 * A transaction belongs to the calling thread and runs in its lane, a slot in segment 0. Inside it:
 *   - shmd_tx_lock() takes a shmd_lock_t (locks are held until commit or abort; take them in a fixed
 *     order — store, keyspace stripes by index, containers, then the allocator's own);
 *   - before every store to shared memory that other processes can reach, shmd_tx_log() records the
 *     old contents in the lane's undo log;
 *   - shmd_tx_alloc() allocates a block that is freed again if the transaction does not commit;
 *   - shmd_tx_free() frees a block only after the commit, exactly once.
 * If the thread dies at any instruction, the next thread that waits for one of its locks (or the
 * next shmd_open / shmd_recover) rolls the transaction back, frees its reservations and releases
 * its locks; a transaction that had committed has its remaining frees finished instead.
 *
 * Transactions nest: shmd_tx_begin() inside a transaction of the same thread and store joins it,
 * and only the outermost commit commits. This is how a keyspace command that touches several
 * containers is one atomic step.
 */
#ifndef SHMD_TX_H
#define SHMD_TX_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "ptr.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A lock in shared memory: 8 bytes, zero-initialised means unlocked. It records which lane holds
 * it, so that a waiter can find out whether the holder died and recover. Waiting costs nothing on
 * the uncontended path (one compare-and-swap to take, one exchange to release).
 */
typedef struct shmd_lock_s {
  uint32_t word;     /* 0 = free; else holder lane + 1 in the low 16 bits, bit 31 = waiters */
  uint32_t reserved; /* must be 0 */
} shmd_lock_t;

/* Initialises a lock to the unlocked state (equivalent to zero-filling it). Cannot fail. */
static inline void shmd_lock_init(shmd_lock_t *lock) {
  lock->word = 0;
  lock->reserved = 0;
}

typedef struct shmd_tx_s shmd_tx_t;

/*
 * Starts a transaction of the calling thread on `store` (or joins the one already open) and stores
 * its handle in *tx. Claims a lane for the thread on first use. Returns SHMD_ENOLANE if all lanes
 * are owned by live threads. On failure nothing is changed.
 */
SHMD_API int shmd_tx_begin(shmd_store_t *store, shmd_tx_t **tx);

/*
 * Takes the lock at `lock` (a shmd_ptr_t to a shmd_lock_t in the store) and keeps it until the
 * outermost commit or abort. Taking a lock the transaction already holds is a no-op. If the holder
 * died, recovers its transaction first. Returns SHMD_ECORRUPT for a pointer that is not inside the
 * store; SHMD_ENOSPC or SHMD_ETXFULL if the list of held locks cannot grow (see below).
 */
SHMD_API int shmd_tx_lock(shmd_tx_t *tx, shmd_ptr_t lock);

/*
 * Records the current contents of [p, p + len) in the undo log; the caller then may change those
 * bytes. The range is widened to whole aligned 8-byte words, so the caller must hold the lock(s)
 * protecting those words. Memory the transaction allocated itself needs no logging. Returns
 * SHMD_ENOSPC or SHMD_ETXFULL when the log cannot grow to hold the range (nothing is logged
 * then), SHMD_ECORRUPT for a pointer outside the store.
 */
SHMD_API int shmd_tx_log(shmd_tx_t *tx, shmd_ptr_t p, size_t len);

/* Logs the 8-byte word at `addr` (an address inside the store, 8-byte aligned) and stores `value`
 * there. Returns as shmd_tx_log(); on failure nothing is changed. */
SHMD_API int shmd_tx_set64(shmd_tx_t *tx, void *addr, uint64_t value);

/*
 * Allocates `size` bytes as part of the transaction: if it aborts or its thread dies before the
 * commit, the block is freed. Returns SHMD_ENOSPC, SHMD_ETOOBIG or SHMD_ETXFULL (the list of
 * reservations cannot grow, see below); on failure nothing is allocated.
 */
SHMD_API int shmd_tx_alloc(shmd_tx_t *tx, size_t size, shmd_ptr_t *out);

/* Like shmd_tx_alloc() and zero-fills the block. */
SHMD_API int shmd_tx_calloc(shmd_tx_t *tx, size_t size, shmd_ptr_t *out);

/*
 * Frees `p` when the transaction commits (exactly once, even if the thread dies half-way through
 * the frees); if it aborts, nothing is freed. Returns SHMD_ENOSPC or SHMD_ETXFULL when the list of
 * pending frees cannot grow (see below), SHMD_EINVAL for the null pointer.
 */
SHMD_API int shmd_tx_free(shmd_tx_t *tx, shmd_ptr_t p);

/*
 * How big a transaction can be. Each thread's lane holds 32 locks, 128 reservations, 512 pending
 * frees and the store's undo-log capacity (2048 words by default) in place; a transaction that
 * needs more continues those lists in an extension block allocated from the store, which the
 * outermost commit or abort frees again. So an operation is limited by the store's free space,
 * not by the lane, up to 2^26 entries of each list beyond the lane's own (SHMD_ETXFULL past that).
 * When the store is full, growing the lists fails with SHMD_ENOSPC.
 */

/* Space left in the transaction without growing its lists: undo-log words, reservations and
 * pending frees. Lets a long operation (destroying a big structure) commit in pieces and so never
 * need store space while it frees. Cannot fail. */
SHMD_API void shmd_tx_room(const shmd_tx_t *tx, size_t *log_words, size_t *allocs, size_t *frees);

/*
 * Grows the transaction's lists so that `log_words` more undo words, `allocs` more allocations and
 * `frees` more pending frees fit: after it succeeds, that many shmd_tx_log words, shmd_tx_alloc
 * reservations and shmd_tx_free calls cannot fail for lack of room. An operation that must not stop
 * half-way calls it first. Returns 0, SHMD_ENOSPC (no store space for the lists) or SHMD_ETXFULL
 * (beyond the limit above); nothing changes on failure except possibly a bigger block.
 */
SHMD_API int shmd_tx_reserve(shmd_tx_t *tx, size_t log_words, size_t allocs, size_t frees);

/*
 * Ends one level of begin. Only the outermost commit does anything: the changes become permanent
 * in one store, the locks are released, then the deferred frees run. If an inner level aborted,
 * the outermost commit rolls everything back instead and returns SHMD_EABORTED. Otherwise returns
 * 0 (or SHMD_ECORRUPT if finishing the frees met a corrupted block; the commit has happened then).
 */
SHMD_API int shmd_tx_commit(shmd_tx_t *tx);

/*
 * Aborts. At the outermost level: restores every logged word, frees the reservations, releases the
 * locks. At an inner level: ends that level and marks the transaction aborted, so that the
 * outermost commit rolls back (the caller above learns it from SHMD_EABORTED). Cannot fail.
 */
SHMD_API void shmd_tx_abort(shmd_tx_t *tx);

/*
 * Ends one level of begin by the outcome `rc` of the work done in it, the way a function that
 * begins a level to make one change ends it: rc >= 0 commits the level (shmd_tx_commit()); rc < 0
 * aborts it (shmd_tx_abort()) only if this level changed something -- logged a word, allocated or
 * freed a block, itself or through levels nested in it -- and otherwise commits it, so that a
 * failure that changed nothing (a missing key, a wrong kind, an argument error) does not doom a
 * caller's transaction. Locks the level took stay held until the outermost level ends, as always.
 * Returns rc, or the commit's status when rc >= 0 and the commit failed (SHMD_EABORTED,
 * SHMD_ECORRUPT); SHMD_EINVAL for a null tx or one with no level open.
 */
SHMD_API int shmd_tx_end(shmd_tx_t *tx, int rc);

/* The store a transaction belongs to. */
SHMD_API shmd_store_t *shmd_tx_store(const shmd_tx_t *tx);

/* Nesting depth of the calling thread's transaction on `store`: 0 outside any transaction. */
SHMD_API unsigned shmd_tx_depth(shmd_store_t *store);

#ifdef __cplusplus
}
#endif
#endif /* SHMD_TX_H */
