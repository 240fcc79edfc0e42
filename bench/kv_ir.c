/* SPDX-License-Identifier: MIT */
/*
 * kv_ir: instruction counts per keyspace operation under callgrind, for before/after comparisons
 * of a code change on a busy machine (where wall time is noise). It builds a smaller copy of
 * bench_kv's data in a private store (NKEYS string keys "k:<i>" of 32 bytes, NKEYS / 1000 sorted
 * sets "z:<j>" of 1 000 members "m:<i>", j = i mod (NKEYS / 1000)), then runs OPS operations of one
 * kind with i (and the ZADD score) drawn as bench_kv draws them, with callgrind collecting only
 * around that loop:
 *
 *   kv_get    shmd_kv_get(k:i)          kv_zadd   shmd_kv_zadd(z:j, random score, m:i)
 *   kv_set    shmd_kv_set(k:i, v)       kv_zrank  shmd_kv_zrank(z:j, m:i)
 *
 * Run through bench/kv_ir.sh, which builds it against a build directory's libshmdict.a and
 * prints Ir per operation. Outside valgrind the client requests do nothing.
 *
 *   kv_ir DIR OP OPS [NKEYS]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <valgrind/callgrind.h>

#include "shmdict.h"

static uint64_t rng(uint64_t *s) { /* splitmix64, as bench_kv */
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: kv_ir DIR kv_get|kv_set|kv_zadd|kv_zrank OPS [NKEYS]\n");
    return 2;
  }
  const char *op = argv[2];
  uint64_t ops = strtoull(argv[3], NULL, 10);
  uint64_t nkeys = argc > 4 ? strtoull(argv[4], NULL, 10) : 100000;
  uint64_t ncont = nkeys / 1000 ? nkeys / 1000 : 1;
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = argv[1];
  o.flags = SHMD_OPEN_EXCL;
  o.first_segment_bytes = 256u << 20;
  o.segment_bytes = 256u << 20;
  shmd_store_t *s;
  int rc = shmd_open("kvir", &o, &s);
  if (rc) {
    fprintf(stderr, "kv_ir: shmd_open: %s\n", shmd_strerror(rc));
    return 1;
  }
  char value[32];
  memset(value, 'v', sizeof value);
  char k[32], z[32], m[32];
  for (uint64_t i = 0; i < nkeys; i++) {
    snprintf(k, sizeof k, "k:%" PRIu64, i);
    snprintf(z, sizeof z, "z:%" PRIu64, i % ncont);
    snprintf(m, sizeof m, "m:%" PRIu64, i);
    if ((rc = shmd_kv_set(s, 0, k, strlen(k), value, sizeof value, 0)) ||
        (rc = shmd_kv_zadd(s, 0, z, strlen(z), (double)(i * 7919 % 1000003), m, strlen(m), NULL))) {
      fprintf(stderr, "kv_ir: loading: %s\n", shmd_strerror(rc));
      return 1;
    }
  }
  uint64_t seed = 42, errors = 0;
  char buf[64];
  size_t len;
  uint64_t rank;
  CALLGRIND_ZERO_STATS;
  CALLGRIND_TOGGLE_COLLECT;
  for (uint64_t n = 0; n < ops; n++) {
    uint64_t i = rng(&seed) % nkeys, score = rng(&seed) % 1000003;
    if (op[3] == 'g') {
      snprintf(k, sizeof k, "k:%" PRIu64, i);
      errors += shmd_kv_get(s, 0, k, strlen(k), buf, sizeof buf, &len) != 0;
    } else if (op[3] == 's') {
      snprintf(k, sizeof k, "k:%" PRIu64, i);
      errors += shmd_kv_set(s, 0, k, strlen(k), value, sizeof value, 0) != 0;
    } else {
      snprintf(z, sizeof z, "z:%" PRIu64, i % ncont);
      snprintf(m, sizeof m, "m:%" PRIu64, i);
      if (op[4] == 'a')
        errors += shmd_kv_zadd(s, 0, z, strlen(z), (double)score, m, strlen(m), NULL) != 0;
      else
        errors += shmd_kv_zrank(s, 0, z, strlen(z), m, strlen(m), 0, &rank) != 0;
    }
  }
  CALLGRIND_TOGGLE_COLLECT;
  if (errors)
    fprintf(stderr, "kv_ir: %" PRIu64 " operations failed\n", errors);
  shmd_close(s);
  return errors != 0;
}
