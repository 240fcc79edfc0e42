/* SPDX-License-Identifier: MIT */
/*
 * Internal: bounded lock waits for the checkers (segments/lane.c). A checker brackets its work with
 * shmd__check_wait_begin() / shmd__check_wait_end(): every lock wait of the calling thread in
 * between ends by a deadline (SHMD__CHECK_WAIT_MS from the outermost begin, or the handle's
 * shmd_set_lock_wait() bound if smaller) with SHMD_EBUSY naming the holder, instead of waiting for
 * a live holder for ever. Nested brackets keep the earliest deadline.
 */
#ifndef SHMD_SEGMENTS_LOCKWAIT_H
#define SHMD_SEGMENTS_LOCKWAIT_H

#include <stdint.h>

#include "shmdict/store.h"

#define SHMD__CHECK_WAIT_MS 10000u

/* Starts a bounded section; returns what shmd__check_wait_end() restores. Cannot fail (a thread
 * that cannot get a lane takes no lock either). */
uint64_t shmd__check_wait_begin(shmd_store_t *s);
void shmd__check_wait_end(shmd_store_t *s, uint64_t saved);

#endif
