/* SPDX-License-Identifier: MIT */
/*
 * The keyspace's read path in instructions, for callgrind: N random GETs of string keys through
 * the typed keyspace call (shmd_kv_get), its borrowed view (shmd_kv_get_view), the generic command
 * entry point (shmd_kv_command "GET") and, as the yardstick, the same keys and values in one hash
 * container (shmd_hash_get), each in its own non-inlined function, so that
 *
 *   valgrind --tool=callgrind --toggle-collect='get_*' build/bench/bench_kvpath 100000 200000
 *   callgrind_annotate --inclusive=yes callgrind.out.PID | grep get_
 *
 * gives each path's instructions per GET (inclusive cost / N). Keys are "k:<i>" (as bench_kv's),
 * values 32 bytes; the key sequence is the same for every path. Instruction counts do not depend
 * on the machine's load, which is why the read path's breakdown in docs/bench.md uses them.
 * The store lives in a private temporary directory under /dev/shm and is removed at exit.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmdict.h"

static char (*keys)[16];
static size_t *klen;

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static inline uint64_t rng(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

__attribute__((noinline)) static long get_hash(shmd_store_t *s, shmd_ptr_t h, long nkeys, long n) {
  uint64_t seed = 42;
  long bad = 0;
  for (long k = 0; k < n; k++) {
    uint64_t i = rng(&seed) % (uint64_t)nkeys;
    char buf[64];
    size_t len;
    bad += shmd_hash_get(s, h, keys[i], klen[i], buf, sizeof buf, &len) != 0;
  }
  return bad;
}

__attribute__((noinline)) static long get_kv(shmd_store_t *s, long nkeys, long n) {
  uint64_t seed = 42;
  long bad = 0;
  for (long k = 0; k < n; k++) {
    uint64_t i = rng(&seed) % (uint64_t)nkeys;
    char buf[64];
    size_t len;
    bad += shmd_kv_get(s, 0, keys[i], klen[i], buf, sizeof buf, &len) != 0;
  }
  return bad;
}

#ifndef BK_NO_VIEW /* to build it against a library from before shmd_kv_get_view() */
__attribute__((noinline)) static long get_kv_view(shmd_store_t *s, long nkeys, long n) {
  uint64_t seed = 42;
  long bad = 0;
  for (long k = 0; k < n; k++) {
    uint64_t i = rng(&seed) % (uint64_t)nkeys;
    const void *v;
    size_t len;
    bad += shmd_kv_get_view(s, 0, keys[i], klen[i], &v, &len) != 0;
  }
  return bad;
}
#endif

__attribute__((noinline)) static long get_cmd(shmd_store_t *s, long nkeys, long n) {
  uint64_t seed = 42;
  long bad = 0;
  for (long k = 0; k < n; k++) {
    uint64_t i = rng(&seed) % (uint64_t)nkeys;
    const char *argv[2] = {"GET", keys[i]};
    size_t lens[2] = {3, klen[i]};
    shmd_reply_t *r = NULL;
    bad += shmd_kv_command(s, 2, argv, lens, &r) != 0 || r->type != SHMD_REPLY_BULK;
    shmd_reply_free(r);
  }
  return bad;
}

int main(int argc, char **argv) {
  long nkeys = argc > 1 ? atol(argv[1]) : 100000, n = argc > 2 ? atol(argv[2]) : 200000;
  if (nkeys < 1 || n < 1)
    return 2;
  char dir[] = "/dev/shm/shmdict-kvpath-XXXXXX";
  if (mkdtemp(dir) == NULL)
    return 2;
  keys = calloc((size_t)nkeys, sizeof *keys);
  klen = calloc((size_t)nkeys, sizeof *klen);
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = dir;
  o.flags = SHMD_OPEN_EXCL;
  o.first_segment_bytes = 256u << 20;
  o.segment_bytes = 256u << 20;
  shmd_store_t *s = NULL;
  shmd_ptr_t h;
  int rc = keys && klen ? shmd_open("kvpath", &o, &s) : SHMD_ENOMEM;
  if (rc == 0)
    rc = shmd_hash_create(s, 0, &h);
  char value[32];
  memset(value, 'v', sizeof value);
  for (long i = 0; rc == 0 && i < nkeys; i++) {
    klen[i] = (size_t)snprintf(keys[i], sizeof keys[i], "k:%ld", i);
    rc = shmd_kv_set(s, 0, keys[i], klen[i], value, sizeof value, 0);
    if (rc == 0)
      rc = shmd_hash_put(s, h, keys[i], klen[i], value, sizeof value, SHMD_HASH_UPSERT, NULL);
  }
  long bad = 0;
  if (rc == 0) {
    double t0 = now_ns();
    bad += get_hash(s, h, nkeys, n);
    double t1 = now_ns();
    bad += get_kv(s, nkeys, n);
    double t2 = now_ns();
#ifndef BK_NO_VIEW
    bad += get_kv_view(s, nkeys, n);
#endif
    double t3 = now_ns();
    bad += get_cmd(s, nkeys, n);
    double t4 = now_ns();
    /* wall time: noise on a busy machine; the instruction counts are the figures to compare */
    printf("ns per get (wall): hash %.0f, kv %.0f, kv_view %.0f, cmd %.0f\n", (t1 - t0) / n, (t2 - t1) / n,
           (t3 - t2) / n, (t4 - t3) / n);
  } else {
    fprintf(stderr, "bench_kvpath: %s\n", shmd_strerror(rc));
  }
  shmd_close(s);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "bench_kvpath: could not remove %s\n", dir);
  printf("%ld keys, %ld gets per path, %ld failed\n", nkeys, n, bad);
  return rc || bad ? 1 : 0;
}
