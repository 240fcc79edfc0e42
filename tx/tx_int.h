/* SPDX-License-Identifier: MIT */
/*
 * Internal: what the transaction layer (tx/) offers the file that composes the layers (tx/open.c).
 * Included by tx/ only; containers/ and kv/ use the public tx.h (shmd_tx_*, shmd_tx_end()).
 */
#ifndef SHMD_TX_TX_INT_H
#define SHMD_TX_TX_INT_H

#include "segments/store_int.h"

/* The transaction layer's callbacks for the segment layer (tx.c), handed to shmd__store_open(). */
const struct shmd__tx_ops *shmd__tx_layer_ops(void);

#endif
