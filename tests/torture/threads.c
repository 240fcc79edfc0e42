/* SPDX-License-Identifier: MIT */
/*
 * Threads of one process on one store, for ThreadSanitizer (Criterion's forking runner cannot start
 * under TSan, so test_soak cannot be used there): --threads threads run keyspace commands on shared
 * and private keys and raw allocations for --seconds, then the store is checked. Exit status 0 when
 * every call succeeded and the checks pass; TSan reports races on its own.
 *
 * meson setup build-tsan -Db_sanitize=thread -Db_lundef=false -Dbench=false -Db_lto=false
 * ninja -C build-tsan tests/torture/threads && build-tsan/tests/torture/threads --threads 4 --seconds 20
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmdict.h"
#include "shmdict/kv.h"
#include "tests/support_kv.h"

static shmd_store_t *store;
static atomic_int stop, failures;
static atomic_ulong ops;

static void run(const char *line) {
  shmd_reply_t *r = NULL;
  if (ts_kv_line(store, 0, line, &r) || (r->type == SHMD_REPLY_ERROR && strncmp(line, "RENAME", 6))) {
    fprintf(stderr, "threads: %s failed\n", line);
    atomic_fetch_add(&failures, 1);
  }
  shmd_reply_free(r);
}

static void *worker(void *arg) {
  long id = (long)arg;
  unsigned seed = (unsigned)id * 7919u + 1;
  shmd_ptr_t raw[8] = {{0}};
  char line[128];
  while (!atomic_load(&stop)) {
    int k = rand_r(&seed) % 16, x = rand_r(&seed);
    switch (x % 10) {
    case 0: snprintf(line, sizeof line, "SET k%d v%d", k, x); run(line); break;
    case 1: snprintf(line, sizeof line, "HSET h%d f%d %d", k % 3, x % 60, x); run(line); break;
    case 2: snprintf(line, sizeof line, "HDEL h%d f%d", k % 3, x % 60); run(line); break;
    case 3: snprintf(line, sizeof line, "RPUSH l%d %d", k % 3, x); run(line); break;
    case 4: snprintf(line, sizeof line, "LPOP l%d", k % 3); run(line); break;
    case 5: snprintf(line, sizeof line, "ZADD z %d m%d", x % 1000, x % 200); run(line); break;
    case 6: snprintf(line, sizeof line, "MSET k%d a k%d b", k, (k + 1) % 16); run(line); break;
    case 7: snprintf(line, sizeof line, "DEL k%d h%d", k, k % 3); run(line); break;
    case 8: run("INCR counter"); break;
    default: {
      int r = x % 8;
      if (raw[r].v) {
        if (shmd_free(store, raw[r]))
          atomic_fetch_add(&failures, 1);
        raw[r].v = 0;
      } else if (shmd_alloc(store, 16 + (size_t)(x % 20000), &raw[r])) {
        atomic_fetch_add(&failures, 1);
      } else {
        memset(shmd_resolve(store, raw[r]), (int)id, 16);
      }
    }
    }
    atomic_fetch_add(&ops, 1);
  }
  for (int r = 0; r < 8; r++)
    if (raw[r].v)
      shmd_free(store, raw[r]);
  shmd_thread_detach(store);
  return NULL;
}

int main(int argc, char **argv) {
  int nthreads = 4, seconds = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--threads") == 0)
      nthreads = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--seconds") == 0)
      seconds = atoi(argv[i + 1]);
  }
  char dir[] = "/dev/shm/shmdict-threads-XXXXXX";
  if (!mkdtemp(dir))
    return 2;
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = dir;
  o.first_segment_bytes = 16u << 20;
  o.segment_bytes = 8u << 20;
  if (shmd_open("t", &o, &store))
    return 2;
  pthread_t th[64];
  for (long i = 0; i < nthreads && i < 64; i++)
    pthread_create(&th[i], NULL, worker, (void *)i);
  sleep((unsigned)seconds);
  atomic_store(&stop, 1);
  for (int i = 0; i < nthreads && i < 64; i++)
    pthread_join(th[i], NULL);
  int rc1 = shmd_kv_check(store), rc2 = shmd_alloc_check(store);
  printf("threads: %d threads, %d s, %lu operations, %d failures, kv_check %s, alloc_check %s\n", nthreads,
         seconds, (unsigned long)atomic_load(&ops), atomic_load(&failures), shmd_err_name(rc1), shmd_err_name(rc2));
  shmd_close(store);
  shmd_drop("t", dir);
  rmdir(dir);
  return atomic_load(&failures) || rc1 || rc2;
}
