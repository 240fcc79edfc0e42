/* SPDX-License-Identifier: MIT */
/*
 * A multi-threaded malloc workout for the shim's tests (tests/test_malloc_shim.c runs it with and
 * without LD_PRELOAD=libshmdict-malloc.so and compares the output): threads that allocate, fill,
 * realloc and free blocks of every size class and some large ones; frees of blocks another thread
 * allocated (passed through a mutex-protected queue); aligned allocations; a fork whose child
 * allocates and frees, modifies blocks it inherited, frees half of them, and exits while the
 * parent checks its own blocks are unchanged (copy-on-write, or the named store's private
 * snapshot); and waves of short-lived threads. Prints a checksum that depends only on the data,
 * so a run under any correct malloc prints the same line. The
 * environment variable SHIM_EXPECT=1 makes it also check that its blocks come from the shim
 * (the shim's shmdict_malloc_owns()) and report it on stderr.
 */
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { THREADS = 4, OPS = 60000, LIVE = 512, QCAP = 4096 };

static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned char *q[QCAP];
static size_t q_len[QCAP];
static int q_n;
static int failures;

static uint64_t rng(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static void fill(unsigned char *p, size_t n, uint64_t tag) {
  for (size_t i = 0; i < n; i++)
    p[i] = (unsigned char)(tag + i * 31);
}

static int good(const unsigned char *p, size_t n, uint64_t tag) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != (unsigned char)(tag + i * 31))
      return 0;
  return 1;
}

static void fail(const char *what) {
  if (__atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED) <= 10)
    fprintf(stderr, "shim_threads: %s\n", what);
}

struct targ {
  uint64_t seed;
  uint64_t sum;
};

static void *worker(void *arg) {
  struct targ *a = arg;
  uint64_t s = a->seed;
  unsigned char *live[LIVE] = {0};
  size_t len[LIVE] = {0};
  for (int op = 0; op < OPS; op++) {
    int i = (int)(rng(&s) % LIVE);
    if (live[i] == NULL) {
      uint64_t k = rng(&s) % 100;
      size_t n = k < 85 ? 1 + rng(&s) % 600 : k < 99 ? 1 + rng(&s) % 9000 : 1 + rng(&s) % 300000;
      live[i] = k % 7 == 0 ? calloc(1, n) : malloc(n);
      if (live[i] == NULL) {
        fail("malloc returned NULL");
        continue;
      }
      if (((uintptr_t)live[i] & (n >= 16 ? 15 : n >= 8 ? 7 : 0)) != 0) /* max_align_t, or the size's */
        fail("block not aligned for its size");
      if (malloc_usable_size(live[i]) < n)
        fail("usable size below the request");
      if (k % 7 == 0)
        for (size_t j = 0; j < n; j++)
          if (live[i][j] != 0) {
            fail("calloc block not zeroed");
            break;
          }
      len[i] = n;
      fill(live[i], n, (uint64_t)i);
    } else {
      if (!good(live[i], len[i], (uint64_t)i))
        fail("block contents damaged");
      a->sum += live[i][len[i] / 2] + len[i];
      uint64_t what = rng(&s) % 10;
      if (what < 3) {
        /* Mostly small and medium; one in ten large, so large blocks grow and shrink in place. */
        size_t n = rng(&s) % 10 == 0 ? 1 + rng(&s) % 300000 : 1 + rng(&s) % 20000;
        unsigned char *r = realloc(live[i], n);
        if (r == NULL) {
          fail("realloc returned NULL");
          continue;
        }
        if (malloc_usable_size(r) < n)
          fail("usable size below the realloc request");
        size_t keep = n < len[i] ? n : len[i];
        if (!good(r, keep, (uint64_t)i))
          fail("realloc lost contents");
        live[i] = r;
        len[i] = n;
        fill(r, n, (uint64_t)i);
      } else if (what < 6) {
        /* Hand it to whichever thread comes next: a free of another thread's block. */
        pthread_mutex_lock(&q_mu);
        if (q_n < QCAP) {
          q[q_n] = live[i];
          q_len[q_n] = len[i];
          q_n++;
          live[i] = NULL;
        }
        pthread_mutex_unlock(&q_mu);
        if (live[i] != NULL) {
          free(live[i]);
          live[i] = NULL;
        }
      } else {
        free(live[i]);
        live[i] = NULL;
      }
    }
    if (op % 64 == 0) {
      pthread_mutex_lock(&q_mu);
      while (q_n > 0) {
        q_n--;
        if (!good(q[q_n], q_len[q_n], q[q_n][0]))
          fail("queued block damaged");
        free(q[q_n]);
      }
      pthread_mutex_unlock(&q_mu);
    }
    if (op % 1000 == 0) {
      void *p = NULL;
      size_t al = (size_t)16 << (rng(&s) % 9); /* 16 .. 4096 */
      if (posix_memalign(&p, al, 100 + rng(&s) % 5000) != 0 || ((uintptr_t)p & (al - 1)) != 0)
        fail("posix_memalign");
      free(p);
      p = aligned_alloc(64, 640);
      if (p == NULL || ((uintptr_t)p & 63) != 0)
        fail("aligned_alloc");
      free(p);
    }
  }
  for (int i = 0; i < LIVE; i++)
    free(live[i]);
  return NULL;
}

static void *short_lived(void *arg) {
  uintptr_t k = (uintptr_t)arg;
  char *p[20];
  for (int i = 0; i < 20; i++) {
    p[i] = malloc(16 + (k + (uintptr_t)i) % 700);
    if (p[i] == NULL) {
      fail("malloc in a short thread");
      return NULL;
    }
    p[i][0] = (char)i;
  }
  for (int i = 0; i < 20; i += 2)
    free(p[i]);
  char **rest = malloc(10 * sizeof *rest); /* the odd ones are freed by the joiner */
  if (rest == NULL)
    return NULL;
  for (int i = 0; i < 10; i++)
    rest[i] = p[2 * i + 1];
  return rest;
}

static int from_shim(const void *p) {
  int (*owns)(const void *);
  void *f = dlsym(RTLD_DEFAULT, "shmdict_malloc_owns");
  if (f == NULL)
    return 0;
  memcpy(&owns, &f, sizeof f);
  return owns(p);
}

int main(void) {
  char *probe = malloc(100);
  if (getenv("SHIM_EXPECT") && atoi(getenv("SHIM_EXPECT"))) {
    int yes = from_shim(probe);
    fprintf(stderr, "shim_threads: blocks from the shim: %s\n", yes ? "yes" : "no");
    if (!yes)
      return 3;
  }
  /* Blocks the fork's child will scribble on; the parent's copy must not change. */
  enum { INHERIT = 200 };
  unsigned char *inh[INHERIT];
  for (int i = 0; i < INHERIT; i++) {
    inh[i] = malloc(50 + (size_t)i * 10);
    fill(inh[i], 50 + (size_t)i * 10, (uint64_t)i + 1000);
  }
  pthread_t th[THREADS];
  struct targ a[THREADS];
  for (int i = 0; i < THREADS; i++) {
    a[i] = (struct targ){(uint64_t)i * 7919 + 17, 0};
    pthread_create(&th[i], NULL, worker, &a[i]);
  }
  pid_t pid = fork(); /* while the workers run */
  if (pid == 0) {
    for (int i = 0; i < INHERIT; i++) {
      if (!good(inh[i], 50 + (size_t)i * 10, (uint64_t)i + 1000))
        _exit(5);
      memset(inh[i], 0xEE, 50 + (size_t)i * 10);
      if (i % 2)
        free(inh[i]);
    }
    for (int i = 0; i < 5000; i++) {
      char *p = malloc(1 + (size_t)i % 3000);
      p[0] = 1;
      free(p);
    }
    _exit(0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    fail("the forked child failed");
  for (int i = 0; i < THREADS; i++)
    pthread_join(th[i], NULL);
  for (int i = 0; i < INHERIT; i++) {
    if (!good(inh[i], 50 + (size_t)i * 10, (uint64_t)i + 1000))
      fail("the child's writes reached the parent's blocks (no copy-on-write)");
    free(inh[i]);
  }
  /* Waves of short-lived threads. */
  for (int wave = 0; wave < 150; wave++) {
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
      pthread_create(&t[i], NULL, short_lived, (void *)(uintptr_t)(wave * 8 + i));
    for (int i = 0; i < 8; i++) {
      char **rest = NULL;
      pthread_join(t[i], (void **)&rest);
      if (rest == NULL) {
        fail("short thread");
        continue;
      }
      for (int j = 0; j < 10; j++) {
        if (rest[j][0] != (char)(2 * j + 1))
          fail("short thread's block damaged");
        free(rest[j]);
      }
      free(rest);
    }
  }
  free(probe);
  uint64_t sum = 0;
  for (int i = 0; i < THREADS; i++)
    sum += a[i].sum;
  printf("shim_threads: checksum %llu, failures %d\n", (unsigned long long)sum, failures);
  return failures != 0;
}
