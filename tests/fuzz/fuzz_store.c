/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: damaged stores. The input is a mutation program (up to 16 records of 14 bytes:
 * file, kind, position, value; see hostile.h) applied to the files of a small real store, which
 * is then opened, its statistics and information read, recovered and checked, and -- when the
 * checks pass -- read and written. Any crash, hang or sanitizer report is a bug. The store is built
 * once per process and restored (changed pages only) before each input.
 *   Kinds are blind (bytes anywhere) or structure-aware (HS_FIELD: a named field of a segment
 * header, the manifest and its segment table, the roots, a lane, an allocator header, a thread
 * heap or the depot, given a value that breaks a bound); bit 0x80 of a blind kind aims it at a
 * segment header and recomputes the header's checksum, as HS_FIELD always does for header fields,
 * so that the damage reaches the validation behind the checksum. A lane's liveness mutex is forged
 * as held by a thread that does not exist in one lane mutation in 16 (SHMDICT_HOSTILE_FORGE=N: one in
 * N, 0: never; hostile.h).
 *
 * Build (clang, optional): CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined
 *   -Db_lundef=false -Dbench=false && ninja -C build-fuzz tests/fuzz_store
 * Run: build-fuzz/tests/fuzz_store -max_total_time=600 -timeout=20 CORPUS_DIR
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../hostile.h"

static hs_t hs;
static int ready;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!ready) {
    snprintf(hs.dir, sizeof hs.dir, "/dev/shm/shmdict-fuzz-XXXXXX");
    if (!mkdtemp(hs.dir) || hs_build(&hs))
      abort();
    hs.forge = getenv("SHMDICT_HOSTILE_FORGE") ? atoi(getenv("SHMDICT_HOSTILE_FORGE")) : 16;
    ready = 1;
  }
  if (hs_restore(&hs))
    abort();
  for (size_t i = 0; i + 14 <= size && i < 16 * 14; i += 14) {
    hs_mut_t mu;
    mu.file = data[i];
    mu.kind = data[i + 1];
    memcpy(&mu.pos, data + i + 2, 4);
    memcpy(&mu.val, data + i + 6, 8);
    hs_apply(&hs, &mu);
  }
  int ok;
  if (hs_exercise(&hs, &ok))
    abort(); /* a call returned something that is not a status */
  return 0;
}
