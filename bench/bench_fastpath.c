/* SPDX-License-Identifier: MIT */
/*
 * The allocator's fast path in instructions: N alloc/free pairs of one size through shmdict's
 * thread heap and through mimalloc, each in its own non-inlined function, so that
 *
 *   valgrind --tool=callgrind --toggle-collect=pairs_shmdict --toggle-collect=pairs_mimalloc \
 *       build/bench/bench_fastpath 64 100000
 *   callgrind_annotate --inclusive=yes callgrind.out.PID | grep pairs_
 *
 * gives each allocator's instructions per pair (inclusive cost / (N + 1000): the warm-up calls the
 * same function with 1000), loop and the one 8-byte
 * write per object included, as in bench_alloc's pair/SIZE. The warm-up before the measured
 * loops fills the thread heap and mimalloc's page, so the figures are the steady state.
 * The store lives in a private temporary directory under /dev/shm and is removed at exit.
 */
#include <mimalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmdict.h"

__attribute__((noinline)) static int pairs_shmdict(shmd_store_t *s, size_t size, long n) {
  int err = 0;
  for (long i = 0; i < n; i++) {
    shmd_ptr_t p;
    err |= shmd_alloc(s, size, &p);
    *(volatile long *)shmd_resolve(s, p) = i;
    err |= shmd_free(s, p);
  }
  return err;
}

__attribute__((noinline)) static int pairs_mimalloc(size_t size, long n) {
  for (long i = 0; i < n; i++) {
    void *p = mi_malloc(size);
    *(volatile long *)p = i;
    mi_free(p);
  }
  return 0;
}

int main(int argc, char **argv) {
  size_t size = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
  long n = argc > 2 ? strtol(argv[2], NULL, 10) : 100000;
  char dir[] = "/dev/shm/shmdict-fastpath-XXXXXX";
  if (mkdtemp(dir) == NULL)
    return 1;
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = dir;
  o.first_segment_bytes = 64u << 20;
  shmd_store_t *s;
  int rc = shmd_open("fp", &o, &s);
  if (rc) {
    fprintf(stderr, "shmd_open: %s\n", shmd_strerror(rc));
    rmdir(dir);
    return 1;
  }
  int err = pairs_shmdict(s, size, 1000) | pairs_mimalloc(size, 1000); /* warm-up */
  err |= pairs_shmdict(s, size, n);
  err |= pairs_mimalloc(size, n);
  shmd_close(s);
  shmd_drop("fp", dir);
  rmdir(dir);
  printf("%ld pairs of %zu bytes each: %s\n", n, size, err ? "errors" : "ok");
  return err != 0;
}
