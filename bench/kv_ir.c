/* SPDX-License-Identifier: MIT */
/*
 * kv_ir: instruction counts per keyspace operation under callgrind, for before/after comparisons
 * of a code change on a busy machine (where wall time is noise). It builds a smaller copy of
 * bench_kv's data in a private store (NKEYS string keys "k:<i>" of 32 bytes, NKEYS / 1000 sorted
 * sets "z:<j>" of 1 000 members "m:<i>", j = i mod (NKEYS / 1000)), then runs OPS operations of one
 * kind with i (and the ZADD score) drawn as bench_kv draws them, with callgrind collecting only
 * around that loop (the arguments are formatted before it, so only the library's calls count):
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
  /* The operations' arguments, formatted before collection starts (only the calls are counted). */
  uint64_t seed = 42, errors = 0;
  char (*ka)[24] = malloc(ops * 24), (*za)[24] = malloc(ops * 24), (*ma)[24] = malloc(ops * 24);
  double *sa = malloc(ops * sizeof *sa);
  if (!ka || !za || !ma || !sa)
    return 1;
  for (uint64_t n = 0; n < ops; n++) {
    uint64_t i = rng(&seed) % nkeys, score = rng(&seed) % 1000003;
    snprintf(ka[n], 24, "k:%" PRIu64, i);
    snprintf(za[n], 24, "z:%" PRIu64, i % ncont);
    snprintf(ma[n], 24, "m:%" PRIu64, i);
    sa[n] = (double)score;
  }
  char buf[64];
  size_t len;
  uint64_t rank;
  int which = op[3] == 'g' ? 0 : op[3] == 's' ? 1 : op[4] == 'a' ? 2 : 3;
  CALLGRIND_ZERO_STATS;
  CALLGRIND_TOGGLE_COLLECT;
  for (uint64_t n = 0; n < ops; n++) {
    switch (which) {
    case 0: errors += shmd_kv_get(s, 0, ka[n], strlen(ka[n]), buf, sizeof buf, &len) != 0; break;
    case 1: errors += shmd_kv_set(s, 0, ka[n], strlen(ka[n]), value, sizeof value, 0) != 0; break;
    case 2: errors += shmd_kv_zadd(s, 0, za[n], strlen(za[n]), sa[n], ma[n], strlen(ma[n]), NULL) != 0; break;
    default: errors += shmd_kv_zrank(s, 0, za[n], strlen(za[n]), ma[n], strlen(ma[n]), 0, &rank) != 0; break;
    }
  }
  CALLGRIND_TOGGLE_COLLECT;
  if (errors)
    fprintf(stderr, "kv_ir: %" PRIu64 " operations failed\n", errors);
  shmd_close(s);
  return errors != 0;
}
