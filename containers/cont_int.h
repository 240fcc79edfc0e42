/* SPDX-License-Identifier: MIT */
/*
 * Internal: what the containers (containers/) share, written once: the kind word every container
 * header starts with, and entering a container for an operation (header resolved and checked, a
 * transaction level begun or joined, the container's lock taken). Leaving is shmd_tx_end() of the
 * public tx.h, which commits, or aborts only when the level changed something. Included by
 * containers/ only; the layers above use the public headers.
 */
#ifndef SHMD_CONTAINERS_CONT_INT_H
#define SHMD_CONTAINERS_CONT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "segments/err.h"
#include "shmdict/error.h"
#include "shmdict/ptr.h"
#include "shmdict/tx.h"

/* Kind words: "SHMD" in the low 32 bits marks a shmdict container, the high 32 bits name the kind
 * (four ASCII letters, little-endian: SHMD__KIND(0x48534148) is "HASH"). */
#define SHMD__KIND_MARK UINT64_C(0x444D4853) /* "SHMD" */
#define SHMD__KIND(name32) (((uint64_t)(name32) << 32) | SHMD__KIND_MARK)

/* 0 when `magic` is `kind`; SHMD_EINVAL for a container of another kind (the caller's mistake);
 * SHMD_ECORRUPT, recording "<what>: bad kind word", for anything else. Cannot fail otherwise. */
#define shmd__kind_status(magic, kind, what) shmd__kind_status_at((magic), (kind), __FILE__, __LINE__, (what))
static inline int shmd__kind_status_at(uint64_t magic, uint64_t kind, const char *file, int line, const char *what) {
  if (magic == kind)
    return 0;
  if ((magic & UINT64_C(0xFFFFFFFF)) == SHMD__KIND_MARK)
    return SHMD_EINVAL;
  shmd__corrupt_at(file, line, what);
  return SHMD_ECORRUPT;
}

/*
 * Enters the container at `p`, whose header of `hdr_bytes` starts with its kind word and holds its
 * lock word at byte `lock_off`: checks that p is 8-aligned and the header inside the store
 * (SHMD_ECORRUPT, recording `what_ptr`), that the kind word is `kind` before taking a "lock"
 * inside it and again under the lock (it may have been destroyed while this thread waited), begins
 * (or joins) a transaction level and takes the lock. On success *hdr is the header's address, *tx
 * the level, which the caller ends with shmd_tx_end(*tx, rc); on failure no level is left open and
 * the status is returned (shmd__kind_status()'s, or the transaction's).
 */
#define shmd__cont_enter(s, p, hdr_bytes, lock_off, kind, what_ptr, what_kind, hdr, tx)                \
  shmd__cont_enter_at((s), (p), (hdr_bytes), (lock_off), (kind), __FILE__, __LINE__, (what_ptr), (what_kind), (hdr), (tx))
static inline int shmd__cont_enter_at(shmd_store_t *s, shmd_ptr_t p, size_t hdr_bytes, size_t lock_off,
                                      uint64_t kind, const char *file, int line, const char *what_ptr,
                                      const char *what_kind, void **hdr, shmd_tx_t **tx) {
  void *a;
  if ((p.v & 7) != 0 || shmd_resolve_checked(s, p, hdr_bytes, &a)) { /* blocks are 16-aligned */
    shmd__corrupt_at(file, line, what_ptr);
    return SHMD_ECORRUPT;
  }
  const uint64_t *magic = (const uint64_t *)a;
  int rc = shmd__kind_status_at(__atomic_load_n(magic, __ATOMIC_ACQUIRE), kind, file, line, what_kind);
  if (rc)
    return rc;
  if ((rc = shmd_tx_begin(s, tx)))
    return rc;
  if ((rc = shmd_tx_lock(*tx, shmd_ptr_add(p, lock_off))) == 0 &&
      (rc = shmd__kind_status_at(*magic, kind, file, line, what_kind)) == 0) {
    *hdr = a;
    return 0;
  }
  (void)shmd_tx_end(*tx, rc); /* nothing was changed: a caller's transaction goes on */
  return rc;
}

#endif
