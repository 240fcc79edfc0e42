/* SPDX-License-Identifier: MIT */
/*
 * shmd_open(): the one place that composes the layers. The segment layer opens a store's files and
 * recovers dead lanes; to do either it calls back into the layers above it (the allocator sizes and
 * initialises a new segment's metadata and gives pages back; the transaction layer finishes a dead
 * lane's frees and adopts its thread heap), and it reaches them only through the callbacks handed
 * to it here, at run time, in the store handle. Nothing in segments/ names a symbol of a layer above
 * it, and the build checks that (meson.build: the layer link checks).
 */
#include "alloc/alloc_int.h"
#include "segments/store_int.h"
#include "tx_int.h"

int shmd_open(const char *name, const shmd_options_t *opt, shmd_store_t **out) {
  const struct shmd__store_ops ops = {shmd__alloc_layer_ops(), shmd__tx_layer_ops()};
  return shmd__store_open(name, opt, &ops, out);
}
