/* SPDX-License-Identifier: MIT */
/*
 * Multi-process soak: 4 processes x 2 threads run a mixed workload on one store for a bounded time
 * (SHMDICT_SOAK_SECONDS, default 60; 20 under the sanitizers). Every thread owns some keys (strings,
 * a counter, a hash, a list, a set, a sorted set) and keeps a model of them, and also works on keys
 * all threads share (a counter, a set, a hash), reads other threads' keys, runs multi-key commands
 * and does raw allocations. Every few seconds the parent pauses everyone between two operations and
 * runs shmd_kv_check() and shmd_alloc_check() on the quiet store; at the end each thread compares
 * its keys with its model and the parent checks the shared keys against the sums of what the threads
 * did. The test forks (mp_).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "shmdict/kv.h"
#include "support.h"

#define MB (1024ull * 1024)
#define NPROC 4
#define NTHR 2
#define NK 8 /* own string keys per thread */

TestSuite(soak, .init = ts_init, .fini = ts_fini, .timeout = 300);

typedef struct {
  _Atomic uint32_t stop, paused, epoch;
  _Atomic uint32_t ack[NPROC * NTHR];
  _Atomic uint64_t incrs, sadds, ops;
  _Atomic uint32_t failures;
  char why[512];
} soak_ctl_t;

static soak_ctl_t *ctl;

static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (atomic_fetch_add(&ctl->failures, 1) == 0)
    vsnprintf(ctl->why, sizeof ctl->why, fmt, ap);
  va_end(ap);
}

typedef struct {
  shmd_store_t *s;
  int id; /* 0 .. NPROC * NTHR - 1 */
  uint64_t seed;
} thr_arg_t;

/* Runs a command given as a space-separated line; returns the reply or NULL (and records why). */
static shmd_reply_t *run(shmd_store_t *s, const char *line) {
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", line);
  const char *argv[64];
  size_t lens[64];
  int n = 0;
  char *save = NULL;
  for (char *p = strtok_r(buf, " ", &save); p && n < 64; p = strtok_r(NULL, " ", &save)) {
    argv[n] = p;
    lens[n++] = strlen(p);
  }
  shmd_reply_t *r = NULL;
  int rc = shmd_kv_command(s, n, argv, lens, &r);
  if (rc) {
    fail("%s: %s (%s)", line, shmd_strerror(rc), shmd_errdetail());
    return NULL;
  }
  if (r->type == SHMD_REPLY_ERROR && strncmp(line, "RENAME", 6) != 0) {
    fail("%s: %s", line, r->str);
    shmd_reply_free(r);
    return NULL;
  }
  return r;
}

static void run0(shmd_store_t *s, const char *line) { shmd_reply_free(run(s, line)); }

static void *soak_thread(void *argp) {
  thr_arg_t *a = argp;
  shmd_store_t *s = a->s;
  int id = a->id;
  ts_rng_t g = {a->seed};
  char str[NK][64];
  int has[NK] = {0};
  long long counter = 0;
  int64_t hval[32];
  int hhas[32] = {0};
  long long list_head = 0, list_tail = 0; /* elements list_head .. list_tail - 1 */
  uint64_t set_mask = 0;
  int zhas[32] = {0};
  long long zscore[32];
  shmd_ptr_t raw[16] = {{0}};
  size_t raw_size[16] = {0};
  uint32_t seen = atomic_load(&ctl->epoch);
  char line[512];
  for (uint64_t n = 0; !atomic_load(&ctl->stop); n++) {
    while (atomic_load(&ctl->paused)) {
      uint32_t e = atomic_load(&ctl->epoch);
      if (e != seen) {
        seen = e;
        atomic_store(&ctl->ack[id], e);
      }
      usleep(200);
    }
    int k = (int)ts_below(&g, NK), f = (int)ts_below(&g, 32);
    switch (ts_below(&g, 16)) {
    case 0: {
      snprintf(str[k], sizeof str[k], "v%d.%llu", id, (unsigned long long)n);
      snprintf(line, sizeof line, "SET t%d:s%d %s", id, k, str[k]);
      run0(s, line);
      has[k] = 1;
      break;
    }
    case 1:
      snprintf(line, sizeof line, "DEL t%d:s%d", id, k);
      run0(s, line);
      has[k] = 0;
      break;
    case 2: {
      int k2 = (int)ts_below(&g, NK);
      snprintf(str[k], sizeof str[k], "m%llu", (unsigned long long)n);
      snprintf(str[k2], sizeof str[k2], "n%llu", (unsigned long long)n);
      snprintf(line, sizeof line, "MSET t%d:s%d %s t%d:s%d %s", id, k, str[k], id, k2, str[k2]);
      run0(s, line);
      has[k] = has[k2] = 1;
      break;
    }
    case 3: {
      long long d = (long long)ts_below(&g, 100) - 50;
      snprintf(line, sizeof line, "INCRBY t%d:c %lld", id, d);
      run0(s, line);
      counter += d;
      break;
    }
    case 4:
      hval[f] = (int64_t)n;
      snprintf(line, sizeof line, "HSET t%d:h f%d %lld", id, f, (long long)n);
      run0(s, line);
      hhas[f] = 1;
      break;
    case 5:
      snprintf(line, sizeof line, "HDEL t%d:h f%d", id, f);
      run0(s, line);
      hhas[f] = 0;
      break;
    case 6:
      snprintf(line, sizeof line, "RPUSH t%d:l %lld", id, list_tail++);
      run0(s, line);
      break;
    case 7:
      snprintf(line, sizeof line, "LPOP t%d:l", id);
      run0(s, line);
      if (list_head < list_tail)
        list_head++;
      break;
    case 8:
      snprintf(line, sizeof line, "%s t%d:set m%d", f & 1 ? "SADD" : "SREM", id, f);
      run0(s, line);
      set_mask = f & 1 ? set_mask | 1ull << f : set_mask & ~(1ull << f);
      break;
    case 9: {
      long long sc = (long long)ts_below(&g, 1000);
      int add = ts_below(&g, 3) != 0;
      if (add)
        snprintf(line, sizeof line, "ZADD t%d:z %lld m%d", id, sc, f);
      else
        snprintf(line, sizeof line, "ZREM t%d:z m%d", id, f);
      run0(s, line);
      zhas[f] = add;
      zscore[f] = sc;
      break;
    }
    case 10:
      run0(s, "INCR shared:cnt");
      atomic_fetch_add(&ctl->incrs, 1);
      break;
    case 11:
      snprintf(line, sizeof line, "SADD shared:set t%d.%llu", id, (unsigned long long)n);
      run0(s, line);
      atomic_fetch_add(&ctl->sadds, 1);
      break;
    case 12:
      snprintf(line, sizeof line, "HSET shared:h f%d t%d", f, id);
      run0(s, line);
      break;
    case 13: {
      /* reads of other threads' keys, and a scan */
      int o = (int)ts_below(&g, NPROC * NTHR);
      snprintf(line, sizeof line, "MGET t%d:s0 t%d:s1 t%d:s%d", o, o, o, k);
      run0(s, line);
      snprintf(line, sizeof line, "ZRANGE t%d:z 0 5 WITHSCORES", o);
      run0(s, line);
      run0(s, "SCAN 0 COUNT 20");
      break;
    }
    case 14: {
      int r = (int)ts_below(&g, 16);
      if (raw[r].v) {
        unsigned char *b = shmd_resolve(s, raw[r]);
        if (b[0] != (unsigned char)id || b[raw_size[r] - 1] != (unsigned char)r)
          fail("thread %d: raw block %d damaged", id, r);
        if (shmd_free(s, raw[r]))
          fail("thread %d: free: %s", id, shmd_errdetail());
        raw[r].v = 0;
      } else {
        raw_size[r] = ts_below(&g, 4) ? 2 + ts_below(&g, 3000) : 10000 + ts_below(&g, 300000);
        if (shmd_alloc(s, raw_size[r], &raw[r]))
          fail("thread %d: alloc: %s", id, shmd_errdetail());
        unsigned char *b = shmd_resolve(s, raw[r]);
        b[0] = (unsigned char)id;
        b[raw_size[r] - 1] = (unsigned char)r;
      }
      break;
    }
    default: {
      /* RENAME between two own string keys */
      int k2 = (int)ts_below(&g, NK);
      snprintf(line, sizeof line, "RENAME t%d:s%d t%d:s%d", id, k, id, k2);
      run0(s, line);
      if (has[k] && k != k2) {
        memcpy(str[k2], str[k], sizeof str[k]);
        has[k2] = 1;
        has[k] = 0;
      }
      break;
    }
    }
    atomic_fetch_add(&ctl->ops, 1);
    if (atomic_load(&ctl->failures))
      break;
  }
  /* compare with the model */
  for (int k = 0; k < NK; k++) {
    snprintf(line, sizeof line, "GET t%d:s%d", id, k);
    shmd_reply_t *r = run(s, line);
    if (r && (has[k] ? r->type != SHMD_REPLY_BULK || strcmp(r->str, str[k]) : r->type != SHMD_REPLY_NIL))
      fail("thread %d: key s%d is %s, model %s", id, k, r->type == SHMD_REPLY_BULK ? r->str : "nil",
           has[k] ? str[k] : "nil");
    shmd_reply_free(r);
  }
  snprintf(line, sizeof line, "GET t%d:c", id);
  shmd_reply_t *r = run(s, line);
  if (r && counter != (r->type == SHMD_REPLY_BULK ? atoll(r->str) : 0))
    fail("thread %d: counter %s, model %lld", id, r->str ? r->str : "nil", counter);
  shmd_reply_free(r);
  for (int f = 0; f < 32; f++) {
    snprintf(line, sizeof line, "HGET t%d:h f%d", id, f);
    r = run(s, line);
    if (r && (hhas[f] ? r->type != SHMD_REPLY_BULK || atoll(r->str) != hval[f] : r->type != SHMD_REPLY_NIL))
      fail("thread %d: hash field %d differs", id, f);
    shmd_reply_free(r);
    snprintf(line, sizeof line, "ZSCORE t%d:z m%d", id, f);
    r = run(s, line);
    if (r && (zhas[f] ? r->type != SHMD_REPLY_BULK || atoll(r->str) != zscore[f] : r->type != SHMD_REPLY_NIL))
      fail("thread %d: zset member %d differs", id, f);
    shmd_reply_free(r);
    snprintf(line, sizeof line, "SISMEMBER t%d:set m%d", id, f);
    r = run(s, line);
    if (r && r->integer != (int64_t)(set_mask >> f & 1))
      fail("thread %d: set member %d differs", id, f);
    shmd_reply_free(r);
  }
  snprintf(line, sizeof line, "LRANGE t%d:l 0 -1", id);
  r = run(s, line);
  if (r) {
    if ((long long)r->nelems != list_tail - list_head)
      fail("thread %d: list has %zu elements, model %lld", id, r->nelems, list_tail - list_head);
    for (size_t i = 0; i < r->nelems && !atomic_load(&ctl->failures); i++)
      if (atoll(r->elems[i].str) != list_head + (long long)i)
        fail("thread %d: list element %zu is %s", id, i, r->elems[i].str);
  }
  shmd_reply_free(r);
  for (int i = 0; i < 16; i++)
    if (raw[i].v)
      shmd_free(s, raw[i]);
  shmd_thread_detach(s);
  return NULL;
}

/* One of the processes, on the store the harness opened: NTHR threads until the control says stop. */
static int soak_process(ts_crash_child_t *cc) {
  int p = *(const int *)cc->arg;
  uint64_t seed = cc->seed;
  shmd_store_t *s = cc->s;
  pthread_t th[NTHR];
  thr_arg_t args[NTHR];
  for (int t = 0; t < NTHR; t++) {
    args[t] = (thr_arg_t){s, p * NTHR + t, seed + (uint64_t)(p * NTHR + t) * 7919};
    pthread_create(&th[t], NULL, soak_thread, &args[t]);
  }
  for (int t = 0; t < NTHR; t++)
    pthread_join(th[t], NULL);
  shmd_close(s);
  return 0;
}

static int sanitized(void) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return 1;
#else
  return 0;
#endif
}

static void pause_and_check(shmd_store_t *s) {
  uint32_t e = atomic_fetch_add(&ctl->epoch, 1) + 1;
  atomic_store(&ctl->paused, 1);
  uint64_t t0 = (uint64_t)time(NULL);
  for (int i = 0; i < NPROC * NTHR; i++)
    while (atomic_load(&ctl->ack[i]) != e && !atomic_load(&ctl->failures)) {
      cr_assert_lt((uint64_t)time(NULL) - t0, 30, "thread %d did not pause within 30 s (blocked?)", i);
      usleep(500);
    }
  int rc = shmd_kv_check(s);
  cr_assert_eq(rc, 0, "kv_check: %s (%s)", shmd_strerror(rc), shmd_errdetail());
  rc = shmd_alloc_check(s);
  cr_assert_eq(rc, 0, "alloc_check: %s (%s)", shmd_strerror(rc), shmd_errdetail());
  atomic_store(&ctl->paused, 0);
}

Test(soak, mp_four_processes_two_threads) {
  int secs = getenv("SHMDICT_SOAK_SECONDS") ? atoi(getenv("SHMDICT_SOAK_SECONDS")) : sanitized() ? 20 : 60;
  uint64_t seed = ts_seed("mp_four_processes_two_threads");
  ctl = mmap(NULL, sizeof *ctl, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  cr_assert_neq(ctl, MAP_FAILED);
  memset(ctl, 0, sizeof *ctl);
  shmd_store_t *s = ts_open("soak", 32 * MB, 16 * MB);
  ts_crash_proc_t *kids[NPROC];
  int idx[NPROC];
  for (int p = 0; p < NPROC; p++) {
    idx[p] = p;
    /* they run for the whole soak: their bound is its length and two minutes more */
    kids[p] = ts_crash_start(NULL, &(ts_crash_spec_t){.what = "a soak process", .fn = soak_process, .arg = &idx[p],
                                                      .seed = seed, .store = "soak", .opts = ts_opts(32 * MB, 16 * MB),
                                                      .timeout_ms = (long)secs * 1000 + 120000, .end = TS_END_EXIT0});
  }
  int checks = 0;
  for (time_t end = time(NULL) + secs; time(NULL) < end && !atomic_load(&ctl->failures);) {
    sleep(secs >= 20 ? 5 : 1);
    pause_and_check(s);
    checks++;
  }
  atomic_store(&ctl->stop, 1);
  for (int p = 0; p < NPROC; p++)
    ts_crash_finish(kids[p], NULL);
  cr_assert_eq(atomic_load(&ctl->failures), 0, "%s", ctl->why);
  int rc = shmd_kv_check(s);
  cr_assert_eq(rc, 0, "kv_check: %s (%s)", shmd_strerror(rc), shmd_errdetail());
  rc = shmd_alloc_check(s);
  cr_assert_eq(rc, 0, "alloc_check: %s (%s)", shmd_strerror(rc), shmd_errdetail());
  /* the shared keys hold exactly what all threads did */
  shmd_reply_t *r = NULL;
  const char *a1[] = {"GET", "shared:cnt"};
  size_t l1[] = {3, 10};
  cr_assert_eq(shmd_kv_command(s, 2, a1, l1, &r), 0);
  uint64_t incrs = atomic_load(&ctl->incrs);
  cr_assert_eq(r->type == SHMD_REPLY_BULK ? strtoull(r->str, NULL, 10) : 0, incrs, "shared counter");
  shmd_reply_free(r);
  const char *a2[] = {"SCARD", "shared:set"};
  size_t l2[] = {5, 10};
  cr_assert_eq(shmd_kv_command(s, 2, a2, l2, &r), 0);
  cr_assert_eq((uint64_t)r->integer, atomic_load(&ctl->sadds), "shared set");
  shmd_reply_free(r);
  cr_log_info("soak: %d s, %llu operations, %d pauses with checks, 0 differences", secs,
              (unsigned long long)atomic_load(&ctl->ops), checks);
  shmd_close(s);
  munmap(ctl, sizeof *ctl);
}
