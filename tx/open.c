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
#include "segments/err.h"
#include "segments/store_int.h"
#include "tx_int.h"

int shmd__open_ext(const char *name, const shmd_options_t *opt, shmd_store_t **out) {
  const struct shmd__store_ops ops = {shmd__alloc_layer_ops(), shmd__tx_layer_ops()};
  return shmd__store_open(name, opt, &ops, out);
}

int shmd_open(const char *name, const shmd_options_t *opt, shmd_store_t **out) {
  /* The internal flags (SHMD__OPEN_SPARSE, _PRIVATE) make a store that other processes cannot
   * share safely; only the malloc shim asks for them, through shmd__open_ext(). Unknown bits
   * are refused rather than ignored, so a flag of a newer version is never silently dropped. */
  if (opt && (opt->flags & ~SHMD__OPEN_PUBLIC)) {
    shmd__set_detail("shmd_open: unknown flags 0x%x in shmd_options_t.flags", opt->flags & ~SHMD__OPEN_PUBLIC);
    return SHMD_EINVAL;
  }
  return shmd__open_ext(name, opt, out);
}
