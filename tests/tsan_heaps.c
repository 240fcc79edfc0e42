/* SPDX-License-Identifier: MIT */
/*
 * The thread heaps' threaded scenarios without Criterion (whose inheritable arena cannot be set
 * up under ThreadSanitizer), for TSan builds: four threads pass blocks around a ring (every free
 * is a remote free), threads that allocate inside transactions and abort (reservations crossing
 * back into the heap), waves of short-lived threads; then shmd_alloc_check and the statistics.
 * Exit status 0 when everything holds. Uses a private directory under /dev/shm.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmdict.h"

#define CHECK(c, ...)                                                                              \
  do {                                                                                             \
    if (!(c)) {                                                                                    \
      fprintf(stderr, "tsan_heaps: " __VA_ARGS__);                                                 \
      fprintf(stderr, " (%s)\n", shmd_errdetail());                                                \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)

static int failures;
static shmd_store_t *S;

enum { NT = 4, RING = 128, OPS = 20000 };
static struct {
  pthread_mutex_t mu;
  uint64_t e[RING];
  int n;
} ring[NT];

static void *ring_thread(void *arg) {
  int me = (int)(intptr_t)arg;
  uint64_t x = (uint64_t)me * 0x9E3779B97F4A7C15ull + 1;
  for (int op = 0; op < OPS; op++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    shmd_ptr_t p;
    if (shmd_alloc(S, 1 + x % 900, &p) != 0) {
      CHECK(0, "alloc");
      continue;
    }
    memset(shmd_resolve(S, p), me, 1 + x % 900);
    pthread_mutex_lock(&ring[(me + 1) % NT].mu);
    if (ring[(me + 1) % NT].n < RING) {
      ring[(me + 1) % NT].e[ring[(me + 1) % NT].n++] = p.v;
      p.v = 0;
    }
    pthread_mutex_unlock(&ring[(me + 1) % NT].mu);
    if (p.v)
      CHECK(shmd_free(S, p) == 0, "free");
    pthread_mutex_lock(&ring[me].mu);
    while (ring[me].n > 0) {
      shmd_ptr_t q = {ring[me].e[--ring[me].n]};
      CHECK(shmd_free(S, q) == 0, "remote free");
    }
    pthread_mutex_unlock(&ring[me].mu);
    if (op % 97 == 0) {
      shmd_tx_t *tx;
      CHECK(shmd_tx_begin(S, &tx) == 0, "tx");
      for (int i = 0; i < 40; i++) {
        shmd_ptr_t r;
        CHECK(shmd_tx_alloc(tx, 48, &r) == 0, "tx alloc");
      }
      shmd_tx_abort(tx);
    }
  }
  return NULL;
}

static void *short_thread(void *arg) {
  (void)arg;
  shmd_ptr_t p[30];
  for (int i = 0; i < 30; i++)
    CHECK(shmd_alloc(S, 16 + (size_t)i * 40, &p[i]) == 0, "alloc in a short thread");
  for (int i = 0; i < 30; i++)
    CHECK(shmd_free(S, p[i]) == 0, "free in a short thread");
  return NULL;
}

int main(void) {
  char dir[] = "/dev/shm/shmdict-tsan-XXXXXX";
  if (mkdtemp(dir) == NULL)
    return 2;
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = dir;
  o.first_segment_bytes = 16u << 20;
  o.max_threads = 16;
  if (shmd_open("t", &o, &S) != 0)
    return 2;
  for (int i = 0; i < NT; i++)
    pthread_mutex_init(&ring[i].mu, NULL);
  pthread_t th[NT];
  for (int i = 0; i < NT; i++)
    pthread_create(&th[i], NULL, ring_thread, (void *)(intptr_t)i);
  for (int i = 0; i < NT; i++)
    pthread_join(th[i], NULL);
  for (int i = 0; i < NT; i++)
    while (ring[i].n > 0) {
      shmd_ptr_t q = {ring[i].e[--ring[i].n]};
      CHECK(shmd_free(S, q) == 0, "drain");
    }
  for (int wave = 0; wave < 100; wave++) {
    pthread_t t[6];
    for (int i = 0; i < 6; i++)
      pthread_create(&t[i], NULL, short_thread, NULL);
    for (int i = 0; i < 6; i++)
      pthread_join(t[i], NULL);
  }
  CHECK(shmd_alloc_check(S) == 0, "check");
  shmd_stats_t st;
  CHECK(shmd_stats(S, &st) == 0 && st.allocated_bytes == 0, "allocated bytes %llu",
        (unsigned long long)st.allocated_bytes);
  CHECK(st.heaps <= 16, "heaps %llu", (unsigned long long)st.heaps);
  shmd_close(S);
  shmd_drop("t", dir);
  rmdir(dir);
  printf("tsan_heaps: %d failures\n", failures);
  return failures != 0;
}
