/* SPDX-License-Identifier: MIT */
/*
 * The allocator benchmark: shmdict's allocator against glibc malloc, mimalloc, jemalloc and
 * Boost.Interprocess, on the same workloads, in one binary, driven by google-benchmark through the
 * C shim (shim.h). Benchmarks are named "<workload>/<allocator>":
 *
 *   pair/16, pair/64, pair/256  allocate one object of that size, write to it, free it, in a loop;
 *   churn     a live set of 100 000 objects of random sizes 16-1024 B (built before the clock
 *             starts); each step frees a random one and allocates a new one of a random size;
 *             for shmdict the run also reports the store's metadata and fragmentation figures
 *             for the fresh live set (counters meta_pct, frag_pct, ...; see shmdict_space());
 *   xthread   two threads, larson-like: this one allocates (random sizes 16-1024 B) and passes the
 *             objects through a bounded single-producer single-consumer ring to a second thread,
 *             which reads and frees them (every free is a remote free);
 *   bulk      allocate 1 000 000 objects of 64 B, then free them all, in allocation order (after
 *             one untimed warm-up round).
 *
 * The figure to compare is the counter ns_per_op: wall time of the timed region per object (one
 * allocation plus one free). Every allocated object gets one 8-byte write (and xthread's consumer
 * reads it), as a program would: for shmdict that includes shmd_resolve(), the price of relative
 * pointers.
 *
 * The allocators, all called directly (no function pointer per operation, except glibc's):
 *   shmdict    shmd_alloc / shmd_free on a store in a private temporary directory under /dev/shm
 *              (never the default /dev/shm/shmdict), first segment 256 MiB; removed at exit;
 *   glibc      __libc_malloc / __libc_free, looked up in libc.so.6 itself: Debian's libmimalloc
 *              and libjemalloc both export malloc (and libmimalloc even __libc_malloc), so the
 *              names as linked would not reach glibc's allocator;
 *   mimalloc   mi_malloc / mi_free;
 *   jemalloc   mallocx / dallocx (flags 0);
 *   boost_ipc  managed_shared_memory::allocate / deallocate on a 256 MiB segment created with a
 *              private unique name in /dev/shm (see shim.cc), removed at exit;
 *   malloc     plain malloc / free, whatever the process resolves them to: only in bench_malloc,
 *              this file built with BA_PROCESS_MALLOC and linked with neither mimalloc nor jemalloc,
 *              where it is the only allocator. bench/run_shim.sh runs bench_malloc as is (glibc)
 *              and with libmimalloc, libjemalloc or libshmdict-malloc.so preloaded, so that all four
 *              are reached the way an unmodified program reaches them.
 * Each workload is written once (always-inline functions taking the allocator as a constant) and
 * instantiated per allocator, so every allocator's loop is compiled for it alone.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <gnu/libc-version.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef BA_PROCESS_MALLOC
/* bench_malloc: registers the process's malloc alone; these are never called. */
static inline void *mi_malloc(size_t n) { return (void)n, (void *)0; }
static inline void mi_free(void *p) { (void)p; }
static inline void *mallocx(size_t n, int flags) { return (void)n, (void)flags, (void *)0; }
static inline void dallocx(void *p, int flags) { (void)p, (void)flags; }
#else
#include <jemalloc/jemalloc.h>
#include <mimalloc.h>
#endif

#include "shim.h"
#include "shmdict.h"

#define BA_INLINE static inline __attribute__((always_inline))
#define BA_UNLIKELY(x) __builtin_expect(!!(x), 0)

enum {
  ARENA_BYTES = 256u << 20, /* shmdict first segment, Boost segment */
  CHURN_LIVE = 100000,
  CHURN_MIN = 16,
  CHURN_MAX = 1024,
  BULK_OBJS = 1000000,
  BULK_SIZE = 64,
  RING_SLOTS = 1024,   /* xthread: objects in flight at most */
  XRING_PUBLISH = 32, /* xthread: head and tail are published every this many objects */
};

typedef enum ba_kind_e {
  BA_SHMDICT,
  BA_GLIBC,
  BA_MIMALLOC,
  BA_JEMALLOC,
  BA_BOOST,
  BA_MALLOC, /* the process's malloc (see above) */
  BA_COUNT
} ba_kind_t;

static const char *const ba_names[BA_COUNT] = {"shmdict", "glibc", "mimalloc", "jemalloc",
                                               "boost_ipc", "malloc"};

/* ---------------------------------------------------------------------------------------------- */
/* Allocator state. */

/* glibc's own malloc and free, resolved in libc.so.6 by resolve_glibc(). */
static void *(*glibc_malloc)(size_t);
static void (*glibc_free)(void *);

static shmd_store_t *sd_store;
static char sd_dir[64];  /* private store directory, "" when none was created */
static const char sd_name[] = "bench";

static char bipc_path[64]; /* "/name" of the Boost segment, "" when none exists */

static int resolve_glibc(void) {
  void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  if (libc == NULL)
    return -1;
  /* dlsym on the libc handle searches libc.so.6 (and its own dependencies) only, so this is glibc's
   * allocator even when an earlier library exports a __libc_malloc of its own. */
  void *m = dlsym(libc, "__libc_malloc"), *f = dlsym(libc, "__libc_free");
  dlclose(libc);
  if (m == NULL || f == NULL)
    return -1;
  memcpy(&glibc_malloc, &m, sizeof m);
  memcpy(&glibc_free, &f, sizeof f);
  return 0;
}

/* Removes a directory tree (a store directory: two levels at most). Also called from the signal
 * handler: opendir() is not async-signal-safe, but at that point a leaked file is the worse
 * risk. */
static void remove_dir(const char *path) {
  DIR *d = opendir(path);
  if (d != NULL) {
    struct dirent *e;
    char sub[512];
    while ((e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
        continue;
      snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
      if (unlink(sub) != 0)
        remove_dir(sub);
    }
    closedir(d);
  }
  rmdir(path);
}

/* Releases everything this process created in /dev/shm. Runs at exit. */
static void cleanup(void) {
  bipc_close();
  if (bipc_path[0] != '\0') {
    shm_unlink(bipc_path); /* normally already gone */
    bipc_path[0] = '\0';
  }
  if (sd_store != NULL) {
    shmd_close(sd_store);
    sd_store = NULL;
    shmd_drop(sd_name, sd_dir);
  }
  if (sd_dir[0] != '\0') {
    remove_dir(sd_dir);
    sd_dir[0] = '\0';
  }
}

/* SIGINT / SIGTERM / SIGHUP / SIGPIPE: remove our files (without touching the allocators, which
 * the signal may have interrupted), then die of the signal. */
static void on_signal(int sig) {
  if (bipc_path[0] != '\0')
    shm_unlink(bipc_path);
  if (sd_dir[0] != '\0')
    remove_dir(sd_dir);
  signal(sig, SIG_DFL);
  raise(sig);
}

/* A random 32-bit tag for private names. */
static unsigned name_tag(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (unsigned)(ts.tv_nsec ^ (ts.tv_sec << 20) ^ ((long)getpid() << 8));
}

/* Creates what allocator `a` needs the first time a benchmark uses it (so that listing the
 * benchmarks creates nothing). Returns 0, or -1 after marking the run as failed. */
static int ba_prepare(shim_state_t *st, ba_kind_t a) {
  char err[512];
  switch (a) {
  case BA_GLIBC:
    if (glibc_malloc == NULL) {
      shim_skip_with_error(st, "glibc's __libc_malloc was not found in libc.so.6");
      return -1;
    }
    return 0;
  case BA_MIMALLOC:
  case BA_JEMALLOC:
  case BA_MALLOC:
    return 0;
  case BA_BOOST:
    if (bipc_path[0] != '\0')
      return 0;
    snprintf(bipc_path, sizeof bipc_path, "/shmdict-bench-boost-%d-%08x", (int)getpid(),
             name_tag());
    if (bipc_open(bipc_path + 1, ARENA_BYTES, err, sizeof err) != 0) {
      bipc_path[0] = '\0';
      shim_skip_with_error(st, err);
      return -1;
    }
    return 0;
  case BA_SHMDICT:
    if (sd_store != NULL)
      return 0;
    snprintf(sd_dir, sizeof sd_dir, "/dev/shm/shmdict-bench-XXXXXX");
    if (mkdtemp(sd_dir) == NULL) {
      sd_dir[0] = '\0';
      shim_skip_with_error(st, "mkdtemp(/dev/shm/shmdict-bench-XXXXXX) failed");
      return -1;
    }
    shmd_options_t o;
    shmd_options_init(&o);
    o.dir = sd_dir;
    o.flags = SHMD_OPEN_EXCL;
    o.first_segment_bytes = ARENA_BYTES;
    int rc = shmd_open(sd_name, &o, &sd_store);
    if (rc != 0) {
      snprintf(err, sizeof err, "shmd_open(%s in %s): %s (%s)", sd_name, sd_dir, shmd_strerror(rc),
               shmd_errdetail());
      remove_dir(sd_dir);
      sd_dir[0] = '\0';
      sd_store = NULL;
      shim_skip_with_error(st, err);
      return -1;
    }
    return 0;
  default:
    return -1;
  }
}

/* ---------------------------------------------------------------------------------------------- */
/* The allocators behind one interface. A handle is the pointer's bits (shmd_ptr_t.v for shmdict);
 * 0 means failure. With `a` a constant, each switch folds to one call. */

BA_INLINE uint64_t ba_alloc(ba_kind_t a, size_t size) {
  switch (a) {
  case BA_SHMDICT: {
    shmd_ptr_t p;
    if (BA_UNLIKELY(shmd_alloc(sd_store, size, &p) != 0))
      return 0;
    return p.v;
  }
  case BA_GLIBC:
    return (uint64_t)(uintptr_t)glibc_malloc(size);
  case BA_MIMALLOC:
    return (uint64_t)(uintptr_t)mi_malloc(size);
  case BA_JEMALLOC:
    return (uint64_t)(uintptr_t)mallocx(size, 0);
  case BA_BOOST:
    return (uint64_t)(uintptr_t)bipc_alloc(size);
  case BA_MALLOC:
    return (uint64_t)(uintptr_t)malloc(size);
  default:
    return 0;
  }
}

/* Frees handle `h`; returns non-zero when the allocator reported an error. */
BA_INLINE int ba_free(ba_kind_t a, uint64_t h) {
  switch (a) {
  case BA_SHMDICT: {
    shmd_ptr_t p = {h};
    return shmd_free(sd_store, p) != 0;
  }
  case BA_GLIBC:
    glibc_free((void *)(uintptr_t)h);
    return 0;
  case BA_MIMALLOC:
    mi_free((void *)(uintptr_t)h);
    return 0;
  case BA_JEMALLOC:
    dallocx((void *)(uintptr_t)h, 0);
    return 0;
  case BA_BOOST:
    bipc_free((void *)(uintptr_t)h);
    return 0;
  case BA_MALLOC:
    free((void *)(uintptr_t)h);
    return 0;
  default:
    return 1;
  }
}

/* The address of handle `h` in this process. */
BA_INLINE uint64_t *ba_addr(ba_kind_t a, uint64_t h) {
  if (a == BA_SHMDICT) {
    shmd_ptr_t p = {h};
    return (uint64_t *)shmd_resolve(sd_store, p);
  }
  return (uint64_t *)(uintptr_t)h;
}

/* ---------------------------------------------------------------------------------------------- */
/* Random numbers: xorshift64*, fixed seeds so that every allocator sees the same sequence. */

BA_INLINE uint64_t rng_next(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * UINT64_C(0x2545F4914F6CDD1D);
}

/* Maps 32 random bits to [0, n) without a division. */
BA_INLINE uint32_t rng_below(uint32_t bits32, uint32_t n) {
  return (uint32_t)(((uint64_t)bits32 * n) >> 32);
}

BA_INLINE size_t random_size(uint32_t bits32) {
  return CHURN_MIN + rng_below(bits32, CHURN_MAX - CHURN_MIN + 1);
}

static void fail_run(shim_state_t *st, ba_kind_t a, const char *what) {
  char msg[256];
  if (a == BA_SHMDICT)
    snprintf(msg, sizeof msg, "%s failed: %s", what, shmd_errdetail());
  else
    snprintf(msg, sizeof msg, "%s failed (%s)", what, ba_names[a]);
  shim_skip_with_error(st, msg);
}

/* ---------------------------------------------------------------------------------------------- */
/* Workloads. */

BA_INLINE void run_pair(shim_state_t *st, ba_kind_t a, size_t size) {
  if (ba_prepare(st, a) != 0)
    return;
  uint64_t ops = 0;
  int errors = 0;
  for (uint64_t n; (n = shim_batch(st)) != 0;) {
    for (uint64_t i = 0; i < n; i++) {
      uint64_t h = ba_alloc(a, size);
      if (BA_UNLIKELY(h == 0)) {
        fail_run(st, a, "allocation");
        return;
      }
      *ba_addr(a, h) = i;
      errors |= ba_free(a, h);
    }
    ops += n;
  }
  if (errors) {
    fail_run(st, a, "free");
    return;
  }
  shim_set_ops(st, (double)ops);
}

/* Frees the first `n` handles of `h`. */
BA_INLINE int free_all(ba_kind_t a, uint64_t *h, size_t n) {
  int errors = 0;
  for (size_t i = 0; i < n; i++)
    if (h[i] != 0)
      errors |= ba_free(a, h[i]);
  return errors;
}

/* shmdict's space figures for a live set (issue 2's other goals: allocator metadata at most 2% of
 * a segment, size-class internal fragmentation at most 12.5%), as counters of the run:
 *   meta_pct       allocator metadata (page maps, class tables) / store size;
 *   all_meta_pct   all metadata (segment headers, manifest, lanes, allocator) / store size;
 *   frag_pct       internal fragmentation: (usable - requested) / usable bytes of the live objects;
 *   slab_free_pct  free slots inside slabs / slab bytes (memory the live set strands in slabs). */
static void shmdict_space(shim_state_t *st, uint64_t requested_bytes) {
  shmd_stats_t ss;
  if (shmd_stats(sd_store, &ss) != 0 || ss.store_bytes == 0)
    return;
  shim_counter(st, "meta_pct", 100.0 * (double)ss.alloc_meta_bytes / (double)ss.store_bytes);
  shim_counter(st, "all_meta_pct", 100.0 * (double)ss.meta_bytes / (double)ss.store_bytes);
  if (ss.small_bytes_inuse > 0) {
    double usable = (double)ss.small_bytes_inuse;
    shim_counter(st, "frag_pct", 100.0 * (usable - (double)requested_bytes) / usable);
  }
  if (ss.slab_bytes > 0)
    shim_counter(st, "slab_free_pct", 100.0 * (double)ss.slab_free_bytes / (double)ss.slab_bytes);
}

BA_INLINE void run_churn(shim_state_t *st, ba_kind_t a) {
  if (ba_prepare(st, a) != 0)
    return;
  uint64_t *live = calloc(CHURN_LIVE, sizeof *live);
  if (live == NULL) {
    shim_skip_with_error(st, "out of memory");
    return;
  }
  uint64_t rng = UINT64_C(0x9E3779B97F4A7C15), requested = 0;
  for (size_t j = 0; j < CHURN_LIVE; j++) {
    size_t size = random_size((uint32_t)rng_next(&rng));
    requested += size;
    live[j] = ba_alloc(a, size);
    if (live[j] == 0) {
      free_all(a, live, j);
      free(live);
      fail_run(st, a, "allocation (set-up)");
      return;
    }
    *ba_addr(a, live[j]) = j;
  }
  if (a == BA_SHMDICT)
    shmdict_space(st, requested);

  uint64_t ops = 0;
  int errors = 0, failed = 0;
  for (uint64_t n; (n = shim_batch(st)) != 0;) {
    for (uint64_t i = 0; i < n; i++) {
      uint64_t r = rng_next(&rng);
      uint32_t j = rng_below((uint32_t)(r >> 32), CHURN_LIVE);
      errors |= ba_free(a, live[j]);
      live[j] = ba_alloc(a, random_size((uint32_t)r));
      if (BA_UNLIKELY(live[j] == 0)) {
        failed = 1;
        break;
      }
      *ba_addr(a, live[j]) = i;
    }
    if (failed)
      break;
    ops += n;
  }

  errors |= free_all(a, live, CHURN_LIVE);
  free(live);
  if (failed)
    fail_run(st, a, "allocation");
  else if (errors)
    fail_run(st, a, "free");
  else
    shim_set_ops(st, (double)ops);
}

/* Allocates BULK_OBJS objects into h[], then frees them; returns how many it got. */
BA_INLINE size_t bulk_round(ba_kind_t a, uint64_t *h, int *errors) {
  size_t got = 0;
  for (; got < BULK_OBJS; got++) {
    h[got] = ba_alloc(a, BULK_SIZE);
    if (BA_UNLIKELY(h[got] == 0))
      break;
    *ba_addr(a, h[got]) = got;
  }
  *errors |= free_all(a, h, got);
  return got;
}

BA_INLINE void run_bulk(shim_state_t *st, ba_kind_t a) {
  if (ba_prepare(st, a) != 0)
    return;
  uint64_t *h = calloc(BULK_OBJS, sizeof *h);
  if (h == NULL) {
    shim_skip_with_error(st, "out of memory");
    return;
  }
  memset(h, 0, BULK_OBJS * sizeof *h); /* fault its pages in before the clock starts */
  uint64_t ops = 0;
  int errors = 0, failed = 0;
  /* One untimed warm-up round, so that every allocator is measured in its steady state (memory
   * already obtained from the kernel and faulted in) rather than on first-touch page faults. */
  failed = bulk_round(a, h, &errors) != BULK_OBJS;
  for (uint64_t n; !failed && (n = shim_batch(st)) != 0;) {
    for (uint64_t round = 0; round < n && !failed; round++) {
      size_t got = bulk_round(a, h, &errors);
      failed = got != BULK_OBJS;
      ops += got;
    }
  }
  free(h);
  if (failed)
    fail_run(st, a, "allocation");
  else if (errors)
    fail_run(st, a, "free");
  else
    shim_set_ops(st, (double)ops);
}

/* xthread: a bounded single-producer single-consumer ring. head (written by the producer) and
 * tail (written by the consumer) count objects since the start. Both publish in batches, so that
 * the ring's own cache-line traffic stays small next to the allocators': the producer stores head
 * every XRING_PUBLISH objects (and before it waits), the consumer stores tail every XRING_PUBLISH
 * frees (or when it has freed everything published). The producer rereads tail only when the ring
 * looks full. */
typedef struct xring_s {
  _Alignas(64) _Atomic uint64_t head;
  _Alignas(64) _Atomic uint64_t tail;
  _Alignas(64) _Atomic int stop;
  int errors;   /* consumer's free errors, read after join */
  uint64_t sum; /* consumer's reads, so that they are not optimised away */
  _Alignas(64) uint64_t slot[RING_SLOTS];
} xring_t;

/* One step of a wait loop. Spins with the pause hint for a while, then yields the CPU: on a
 * machine with as many busy threads as cores, the thread we wait for may not be running. */
BA_INLINE void cpu_relax(unsigned *spins) {
  if (++*spins < 4096) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  } else {
    sched_yield();
  }
}

BA_INLINE void *run_consumer(xring_t *r, ba_kind_t a) {
  uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed), sum = 0;
  int errors = 0;
  unsigned spins = 0;
  for (;;) {
    uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    if (t == head) {
      if (atomic_load_explicit(&r->stop, memory_order_acquire) &&
          atomic_load_explicit(&r->head, memory_order_acquire) == t)
        break;
      cpu_relax(&spins);
      continue;
    }
    spins = 0;
    /* At most XRING_PUBLISH frees per store of tail, so that a producer waiting on a full ring
     * resumes soon instead of alternating with the consumer. */
    uint64_t end = head - t > XRING_PUBLISH ? t + XRING_PUBLISH : head;
    for (; t != end; t++) {
      uint64_t h = r->slot[t % RING_SLOTS];
      sum += *ba_addr(a, h);
      errors |= ba_free(a, h);
    }
    atomic_store_explicit(&r->tail, t, memory_order_release);
  }
  r->errors = errors;
  r->sum = sum;
  if (a == BA_SHMDICT)
    shmd_thread_detach(sd_store);
  return NULL;
}

BA_INLINE void run_xthread(shim_state_t *st, ba_kind_t a, void *(*consumer)(void *)) {
  if (ba_prepare(st, a) != 0)
    return;
  xring_t *r = aligned_alloc(64, sizeof *r);
  if (r == NULL) {
    shim_skip_with_error(st, "out of memory");
    return;
  }
  memset(r, 0, sizeof *r);
  pthread_t thread;
  if (pthread_create(&thread, NULL, consumer, r) != 0) {
    free(r);
    shim_skip_with_error(st, "pthread_create failed");
    return;
  }

  uint64_t rng = UINT64_C(0xD1B54A32D192ED03), head = 0, tail = 0, ops = 0;
  int failed = 0;
  for (uint64_t n; (n = shim_batch(st)) != 0;) {
    for (uint64_t i = 0; i < n; i++) {
      uint64_t h = ba_alloc(a, random_size((uint32_t)rng_next(&rng)));
      if (BA_UNLIKELY(h == 0)) {
        failed = 1;
        break;
      }
      *ba_addr(a, h) = i;
      if (BA_UNLIKELY(head - tail >= RING_SLOTS)) {
        atomic_store_explicit(&r->head, head, memory_order_release);
        unsigned spins = 0;
        while ((tail = atomic_load_explicit(&r->tail, memory_order_acquire)) + RING_SLOTS <= head)
          cpu_relax(&spins);
      }
      r->slot[head % RING_SLOTS] = h;
      head++;
      if (head % XRING_PUBLISH == 0)
        atomic_store_explicit(&r->head, head, memory_order_release);
    }
    /* The consumer's last frees belong to the measurement. */
    atomic_store_explicit(&r->head, head, memory_order_release);
    unsigned spins = 0;
    while (atomic_load_explicit(&r->tail, memory_order_acquire) != head)
      cpu_relax(&spins);
    if (failed)
      break;
    ops += n;
  }
  atomic_store_explicit(&r->stop, 1, memory_order_release);
  pthread_join(thread, NULL);
  int errors = r->errors;
  free(r);
  if (failed)
    fail_run(st, a, "allocation");
  else if (errors)
    fail_run(st, a, "free");
  else
    shim_set_ops(st, (double)ops);
}

/* One set of benchmark functions per allocator. */
#define BA_INSTANTIATE(KIND, tag)                                                                  \
  static void bm_pair_##tag(shim_state_t *st, void *arg) {                                         \
    run_pair(st, KIND, (size_t)(uintptr_t)arg);                                                    \
  }                                                                                                \
  static void bm_churn_##tag(shim_state_t *st, void *arg) {                                        \
    (void)arg;                                                                                     \
    run_churn(st, KIND);                                                                           \
  }                                                                                                \
  static void *consumer_##tag(void *ring) { return run_consumer(ring, KIND); }                     \
  static void bm_xthread_##tag(shim_state_t *st, void *arg) {                                      \
    (void)arg;                                                                                     \
    run_xthread(st, KIND, consumer_##tag);                                                         \
  }                                                                                                \
  static void bm_bulk_##tag(shim_state_t *st, void *arg) {                                         \
    (void)arg;                                                                                     \
    run_bulk(st, KIND);                                                                            \
  }

BA_INSTANTIATE(BA_SHMDICT, shmdict)
BA_INSTANTIATE(BA_GLIBC, glibc)
BA_INSTANTIATE(BA_MIMALLOC, mimalloc)
BA_INSTANTIATE(BA_JEMALLOC, jemalloc)
BA_INSTANTIATE(BA_BOOST, boost)
BA_INSTANTIATE(BA_MALLOC, malloc)

typedef struct ba_fns_s {
  shim_fn_t pair, churn, xthread, bulk;
} ba_fns_t;

#define BA_FNS(tag) {bm_pair_##tag, bm_churn_##tag, bm_xthread_##tag, bm_bulk_##tag}
static const ba_fns_t ba_fns[BA_COUNT] = {BA_FNS(shmdict), BA_FNS(glibc), BA_FNS(mimalloc),
                                          BA_FNS(jemalloc), BA_FNS(boost), BA_FNS(malloc)};

/* ---------------------------------------------------------------------------------------------- */

/* Whether allocator a is benchmarked by this binary: every one but the process's malloc, or, in
 * bench_malloc, that one alone. */
static int ba_registered(int a) {
#ifdef BA_PROCESS_MALLOC
  return a == BA_MALLOC;
#else
  return a != BA_MALLOC;
#endif
}

static void register_all(void) {
  static const unsigned pair_sizes[] = {16, 64, 256};
  char name[64];
  for (size_t s = 0; s < sizeof pair_sizes / sizeof pair_sizes[0]; s++)
    for (int a = 0; a < BA_COUNT; a++)
      if (ba_registered(a)) {
        snprintf(name, sizeof name, "pair/%u/%s", pair_sizes[s], ba_names[a]);
        shim_register(name, ba_fns[a].pair, (void *)(uintptr_t)pair_sizes[s]);
      }
  for (int a = 0; a < BA_COUNT; a++)
    if (ba_registered(a)) {
      snprintf(name, sizeof name, "churn/%s", ba_names[a]);
      shim_register(name, ba_fns[a].churn, NULL);
    }
  for (int a = 0; a < BA_COUNT; a++)
    if (ba_registered(a)) {
      snprintf(name, sizeof name, "xthread/%s", ba_names[a]);
      shim_register(name, ba_fns[a].xthread, NULL);
    }
  for (int a = 0; a < BA_COUNT; a++)
    if (ba_registered(a)) {
      snprintf(name, sizeof name, "bulk/%s", ba_names[a]);
      shim_register(name, ba_fns[a].bulk, NULL);
    }
}

static const char *object_of(const void *addr) {
  Dl_info info;
  if (addr != NULL && dladdr(addr, &info) != 0 && info.dli_fname != NULL)
    return info.dli_fname;
  return "unknown";
}

static void add_context(void) {
  char buf[256];
  void *process_malloc = dlsym(RTLD_DEFAULT, "malloc");
  shim_context("process_malloc", object_of(process_malloc));
  void *gm;
  memcpy(&gm, &glibc_malloc, sizeof gm);
  snprintf(buf, sizeof buf, "%s %s (%s)", gnu_get_libc_version(), "__libc_malloc", object_of(gm));
  shim_context("glibc", buf);
#ifndef BA_PROCESS_MALLOC
  snprintf(buf, sizeof buf, "%d.%d.%d", mi_version() / 100, mi_version() / 10 % 10,
           mi_version() % 10);
  shim_context("mimalloc", buf);
  snprintf(buf, sizeof buf, "%d.%d.%d", JEMALLOC_VERSION_MAJOR, JEMALLOC_VERSION_MINOR,
           JEMALLOC_VERSION_BUGFIX);
  shim_context("jemalloc", buf);
#endif
  shim_context("boost", bipc_version());
  snprintf(buf, sizeof buf, "layout %d.%d, first segment %u MiB", SHMD_LAYOUT_MAJOR,
           SHMD_LAYOUT_MINOR, ARENA_BYTES >> 20);
  shim_context("shmdict", buf);
  /* Worst internal fragmentation a single small request can see, above the 16-byte steps. */
  double worst = 0;
  size_t worst_at = 0;
  for (size_t n = 129; n <= SHMD_SMALL_MAX; n++) {
    size_t g = shmd_good_size(n);
    double w = (double)(g - n) / (double)g;
    if (w > worst) {
      worst = w;
      worst_at = n;
    }
  }
  snprintf(buf, sizeof buf, "%.2f%% (a %zu-byte request gets %zu)", 100.0 * worst, worst_at,
           shmd_good_size(worst_at));
  shim_context("shmdict_worst_class_waste_above_128", buf);
}

int main(int argc, char **argv) {
  resolve_glibc();
  register_all();
  add_context();
  atexit(cleanup);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGHUP, on_signal);
  signal(SIGPIPE, on_signal); /* e.g. output piped into head */
  int rc = shim_run(argc, argv);
  cleanup();
  return rc;
}
