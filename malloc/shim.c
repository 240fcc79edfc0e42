/* SPDX-License-Identifier: MIT */
/*
 * libshmdict-malloc.so: malloc, free and friends served from a shmdict store, for running
 * unmodified programs with LD_PRELOAD (allocator benchmarks, and a whole-program test of the
 * allocator).
 *
 *   LD_PRELOAD=libshmdict-malloc.so prog          a private store per process (default)
 *   SHMDICT_MALLOC_STORE=name [SHMDICT_MALLOC_DIR=dir]  a named, shared store instead
 *
 * Private store: created in a fresh directory /dev/shm/shmdict-malloc-XXXXXX (or under
 * $SHMDICT_MALLOC_DIR), its segment files sparse (no reservation) and mapped MAP_PRIVATE, the
 * first (1 GiB of address space) then turned into anonymous memory, so the store behaves like
 * the memory malloc normally gets: a forked child gets a copy-on-write copy, exactly as with
 * malloc, and its own lanes and thread heaps in it. The files are unlinked as soon as they are
 * mapped (nothing else may open them) and the directory exists only while the store adds a
 * segment (grow_dir), so even a process that execs or is killed leaves nothing behind.
 *
 * Named store: mapped shared as any store, so without more a forked child would share every
 * block with its parent (a shell updating its job table in the child would change the parent's).
 * So the child gets malloc's usual fork semantics by other means: inside fork() (the atfork child
 * handler) it replaces each segment it has mapped by private anonymous memory holding the same
 * bytes (shmd__alloc_private_snapshot(), alloc_ext.h), and from then on its writes are its own
 * and it sees the store as it was when it forked. Only what it can need is copied: metadata (segment 0's lanes only as far as they
 * mean anything) and the blocks the page map does not call free; a copy of all 64 MiB would make
 * every fork of a shell slow. The parent's forking thread waits in its atfork parent handler
 * until the child says it has copied (a socket pair; EOF if the child died first, and at most
 * SNAP_WAIT_MS), so the copy is of the parent's heap at the moment of fork(). Other threads of a
 * multi-threaded parent keep running meanwhile, on their lock-free fast paths only (the fork lock
 * below holds up the rest), and the child may see their writes made during the copy; POSIX lets
 * such a child call only async-signal-safe functions until it execs, and the copy itself uses
 * only system calls and memcpy. The child then serves nothing from the store (g_serve = 0: new
 * blocks from glibc, frees of the store's blocks ignored, realloc copies them out) rather than
 * allocate in its copy: that would need a lane of its own in a copy whose lanes belong to the
 * parent's threads, and growing would create segment files in the shared directory and change
 * the files' view of the store; a child of a shell execs soon anyway. Its children inherit the
 * private copy copy-on-write, as with the private store. vfork() and posix_spawn() run no atfork
 * handlers and share the parent's memory until exec anyway: nothing to do there.
 *
 * Re-entrancy: the library itself calls malloc (process-local handles, thread contexts, the
 * checker's buffers). A thread-local guard sends every allocation made while the shim is inside
 * the library, or before the store is ready, to glibc's own allocator (__libc_malloc); free()
 * tells the two apart by address (a pointer inside one of the store's segments is the store's).
 *
 * fork(): the lock-free fast paths touch only the calling thread's heap; everything else runs
 * under a process-wide read lock that the pthread_atfork prepare handler takes for writing, so no
 * other thread holds an allocator lock when the child's copy is made (glibc's malloc does the same
 * with its arena locks).
 *
 * glibc semantics kept: malloc(0) returns a unique pointer; free(NULL) does nothing; realloc(NULL,
 * n) is malloc(n) and realloc(p, 0) frees p and returns NULL; calloc checks n * size for overflow;
 * every block is 16-byte aligned; posix_memalign / aligned_alloc / memalign / valloc / pvalloc give
 * page alignment from the store's buddy blocks and larger alignments from glibc; errors set ENOMEM
 * or return EINVAL as glibc does. Allocation failures in the store (a full /dev/shm, all lanes
 * taken by live threads) fall back to glibc's allocator rather than fail.
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc/alloc_ext.h"
#include "shim_os.h"
#include "shmdict.h"

#define SHIM_EXPORT __attribute__((visibility("default")))

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

enum { ST_NONE, ST_INIT, ST_READY, ST_FAILED };

static shmd_store_t *g_store; /* published with release order once usable */
static int g_state;
static int g_private;
static pid_t g_owner;
static char g_dir[256];
static uint32_t g_swept_segs;
static int g_serve = 1; /* 0: a forked child of a named-store process (see fork_child) */
static pthread_rwlock_t g_fork = PTHREAD_RWLOCK_INITIALIZER;
/* Initial-exec: the shim is loaded at start-up (LD_PRELOAD), so its TLS is static; the default model
 * for a shared object would call __tls_get_addr in every malloc. */
static __thread __attribute__((tls_model("initial-exec"))) int t_guard; /* inside the library: use glibc */

/* ---------------------------------------------------------------------------------------------- */
/* The store. */

static void at_exit(void) {
  if (!g_private || shim_os_getpid() != g_owner)
    return;
  t_guard++;
  shim_os_sweep_files(g_dir); /* the segment files (mapped already; only this process uses them) */
  shim_os_remove_dirs(g_dir);
  t_guard--;
  /* The mappings stay: other threads and later destructors may still use their memory. */
}

/* ---------------------------------------------------------------------------------------------- */
/* fork() of a named-store process: the child's private snapshot. */

static int g_snapshot;              /* 1: this process's store mappings are private memory already */
static int g_sync[2] = {-1, -1};    /* child -> parent: "copied" (one byte, or EOF if it died) */
enum { SNAP_WAIT_MS = 10000 };      /* the parent gives up waiting after this (a stopped child) */

static void fork_prepare(void) {
  if (__atomic_load_n(&g_state, __ATOMIC_ACQUIRE) != ST_READY)
    return;
  int saved = errno;
  pthread_rwlock_wrlock(&g_fork);
  /* Without the socket pair (no descriptors left) the child still makes its copy; the parent
   * just does not wait for it. */
  if (!g_private && !g_snapshot)
    (void)shim_os_sync_open(g_sync);
  errno = saved; /* fork's errno is the caller's */
}
static void fork_parent(void) {
  if (__atomic_load_n(&g_state, __ATOMIC_ACQUIRE) != ST_READY)
    return;
  int saved = errno;
  /* Still holding the write lock: no other thread's slow path changes the page map meanwhile. */
  /* Until the child has made its copy (a byte), or died (EOF: the write ends are all closed), or
   * fork failed (no child: EOF at once), or SNAP_WAIT_MS passed (a child stopped by a debugger
   * must not hang its parent forever). */
  if (g_sync[0] >= 0)
    shim_os_sync_wait(g_sync, SNAP_WAIT_MS);
  pthread_rwlock_unlock(&g_fork);
  errno = saved;
}
static void fork_child(void) {
  if (__atomic_load_n(&g_state, __ATOMIC_ACQUIRE) != ST_READY)
    return;
  int saved = errno;
  /* The child's thread has a new tid: unlocking would not recognise it as the writer. */
  pthread_rwlock_init(&g_fork, NULL);
  if (!g_private) {
    /* The child of a named-store process serves nothing from the store: new blocks come from
     * glibc, frees of the store's blocks are ignored, realloc copies them out (see the comment at
     * the top). Its mappings become a private snapshot, then the parent may go on. */
    __atomic_store_n(&g_serve, 0, __ATOMIC_RELEASE);
    if (!g_snapshot) {
      shmd__alloc_private_snapshot(g_store); /* replaces the mappings (alloc_ext.h) */
      g_snapshot = 1;
    }
    if (g_sync[0] >= 0)
      shim_os_sync_signal(g_sync);
  }
  errno = saved;
}

static void shim_init(void) {
  int exp = ST_NONE;
  if (!__atomic_compare_exchange_n(&g_state, &exp, ST_INIT, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
    return; /* another thread initialises (meanwhile: glibc) */
  t_guard++;
  const char *name = getenv("SHMDICT_MALLOC_STORE");
  shmd_options_t o;
  shmd_options_init(&o);
  /* Private store: a large first segment costs only address space (sparse, anonymous). */
  o.first_segment_bytes = name != NULL && name[0] != '\0' ? 64u << 20 : UINT64_C(1) << 30;
  o.segment_bytes = 256u << 20;
  o.max_threads = 256;
  shmd_store_t *s = NULL;
  const char *dir = getenv("SHMDICT_MALLOC_DIR");
  int rc;
  if (name != NULL && name[0] != '\0') {
    o.dir = dir;
    rc = shmd__open_ext(name, &o, &s);
  } else {
    rc = shim_os_make_private_dir(g_dir, sizeof g_dir, dir) == 0 ? 0 : SHMD_EIO;
    if (rc == 0) {
      g_private = 1;
      g_owner = shim_os_getpid();
      o.dir = g_dir;
      /* Create (shared mapping, so the initialised metadata reaches the sparse file), close, and
       * attach again privately (store_ext.h: the handle keeps the flags for its growth too). */
      o.flags = SHMD_OPEN_EXCL | SHMD__OPEN_SPARSE;
      rc = shmd__open_ext("m", &o, &s);
      if (rc == 0) {
        shmd_close(s);
        s = NULL;
        o.flags = SHMD_OPEN_NOCREATE | SHMD__OPEN_SPARSE | SHMD__OPEN_PRIVATE;
        rc = shmd__open_ext("m", &o, &s);
      }
      if (rc == 0) {
        g_swept_segs = 1;
        shmd__store_anonymize_first(s); /* anonymous memory, as malloc normally gets */
        atexit(at_exit);
      }
      at_exit(); /* the files are mapped: remove them and the directories now (see grow_dir) */
    }
  }
  if (rc == 0) {
    (void)shim_os_atfork(fork_prepare, fork_parent, fork_child);
    __atomic_store_n(&g_store, s, __ATOMIC_RELEASE);
    __atomic_store_n(&g_state, ST_READY, __ATOMIC_RELEASE);
  } else {
    __atomic_store_n(&g_state, ST_FAILED, __ATOMIC_RELEASE);
  }
  t_guard--;
}

/* The store is opened by a constructor, as soon as the shim is loaded, never lazily from inside
 * malloc: a malloc called by glibc while it holds one of its own locks (setlocale's, for one)
 * must not run the library's open (which formats error texts through the locale). Until then, and
 * if opening failed, everything goes to glibc. */
__attribute__((constructor)) static void shim_ctor(void) { shim_init(); }

/* The store that serves new allocations (NULL: glibc does). */
static inline shmd_store_t *store(void) {
  return __builtin_expect(g_serve, 1) ? __atomic_load_n(&g_store, __ATOMIC_ACQUIRE) : NULL;
}

/* Around every call into the library that may take allocator locks or map segments. */
static inline void enter(void) {
  t_guard++;
  pthread_rwlock_rdlock(&g_fork);
}
static inline void leave(shmd_store_t *s) {
  pthread_rwlock_unlock(&g_fork);
  if (g_private) {
    uint32_t segs = shmd__store_seg_count(s);
    if (segs != g_swept_segs) {
      g_swept_segs = segs; /* a segment was added: unlink its file, remove the dirs */
      if (shim_os_getpid() == g_owner)
        at_exit();
      else
        shim_os_sweep_files(g_dir);
    }
  }
  t_guard--;
}

/* Private store: its directory exists only while a segment is being added, so that a process
 * that execs or is killed leaves nothing behind. An allocation that failed for want of it (the
 * store could not grow) re-creates it and tries again; leave() removes it again. */
static int grow_dir(void) {
  if (!g_private || shim_os_getpid() != g_owner)
    return 0;
  return shim_os_make_dirs(g_dir);
}

static void *store_alloc(shmd_store_t *s, size_t n) {
  shmd_ptr_t p;
  if (__builtin_expect(shmd__alloc_fast(s, n, &p), 1))
    return shmd_resolve(s, p);
  int saved = errno;
  enter();
  int rc = shmd_alloc(s, n, &p);
  if (rc != 0 && grow_dir()) {
    rc = shmd_alloc(s, n, &p);
    g_swept_segs = 0; /* leave() sweeps */
  }
  leave(s);
  errno = saved;
  return rc == 0 ? shmd_resolve(s, p) : NULL;
}

/* The store's pointer for address a, or null when a is not in the store. */
static inline shmd_ptr_t ours(shmd_store_t *s, const void *a) { return s ? shmd_ptr_from_addr(s, a) : shmd_ptr_null(); }

/* ---------------------------------------------------------------------------------------------- */
/* The malloc API. */

SHIM_EXPORT void *malloc(size_t n) {
  shmd_store_t *s;
  if (__builtin_expect(!t_guard, 1) && (s = store()) != NULL) {
    void *p = store_alloc(s, n);
    if (__builtin_expect(p != NULL, 1))
      return p;
  }
  return __libc_malloc(n);
}

SHIM_EXPORT void free(void *a) {
  if (a == NULL)
    return;
  shmd_store_t *s = __atomic_load_n(&g_store, __ATOMIC_ACQUIRE);
  shmd_ptr_t p = ours(s, a);
  if (p.v == 0) {
    __libc_free(a);
    return;
  }
  if (__builtin_expect(!g_serve, 0))
    return; /* the parent's block (fork_child) */
  if (__builtin_expect(shmd__free_fast(s, p), 1))
    return;
  if (t_guard)
    return; /* a store block freed from inside the library: cannot happen; never recurse */
  enter();
  (void)shmd_free(s, p);
  leave(s);
}

SHIM_EXPORT void *calloc(size_t n, size_t size) {
  if (size && n > SIZE_MAX / size) {
    errno = ENOMEM;
    return NULL;
  }
  shmd_store_t *s;
  if (!t_guard && (s = store()) != NULL) {
    void *p = store_alloc(s, n * size);
    if (p != NULL) {
      memset(p, 0, n * size);
      return p;
    }
  }
  return __libc_calloc(n, size);
}

static size_t (*libc_usable)(void *);

static size_t usable(shmd_store_t *s, void *a, shmd_ptr_t p) {
  if (p.v)
    return shmd_usable_size(s, p);
  if (libc_usable == NULL) {
    t_guard++;
    void *f = shim_os_next("malloc_usable_size");
    t_guard--;
    if (f == NULL)
      return 0;
    memcpy(&libc_usable, &f, sizeof f);
  }
  return libc_usable(a);
}

SHIM_EXPORT void *realloc(void *a, size_t n) {
  if (a == NULL)
    return malloc(n);
  if (n == 0) {
    free(a);
    return NULL;
  }
  shmd_store_t *s = __atomic_load_n(&g_store, __ATOMIC_ACQUIRE);
  shmd_ptr_t p = ours(s, a);
  if (p.v == 0)
    return __libc_realloc(a, n);
  size_t have = shmd_usable_size(s, p);
  if (n <= have && shmd_good_size(n) * 2 > have && g_serve)
    return a;
  /* A large block that stays large: into its free buddies, or shrunk, without a copy. */
  if (g_serve && have > SHMD_SMALL_MAX && n > SHMD_SMALL_MAX) {
    int saved = errno;
    enter();
    int rc = shmd__resize_in_place(s, p, n);
    leave(s);
    errno = saved;
    if (rc == 0)
      return a;
  }
  void *b = malloc(n);
  if (b == NULL)
    return NULL; /* errno is ENOMEM; a is untouched */
  memcpy(b, a, n < have ? n : have);
  free(a);
  return b;
}

SHIM_EXPORT void *reallocarray(void *a, size_t n, size_t size) {
  if (size && n > SIZE_MAX / size) {
    errno = ENOMEM;
    return NULL;
  }
  return realloc(a, n * size);
}

SHIM_EXPORT size_t malloc_usable_size(void *a) {
  if (a == NULL)
    return 0;
  shmd_store_t *s = __atomic_load_n(&g_store, __ATOMIC_ACQUIRE);
  return usable(s, a, ours(s, a));
}

/* Aligned blocks: up to 16 bytes every block; up to a page the store's buddy blocks (a request
 * above the largest slab class gets one, page aligned); larger alignments from glibc. */
static void *aligned(size_t align, size_t n) {
  if (align <= 16)
    return malloc(n);
  shmd_store_t *s;
  if (align <= 4096 && !t_guard && (s = store()) != NULL) {
    void *p = store_alloc(s, n > SHMD_SMALL_MAX ? n : SHMD_SMALL_MAX + 1);
    if (p != NULL && ((uintptr_t)p & (align - 1)) == 0)
      return p;
    if (p != NULL)
      free(p);
  }
  return __libc_memalign(align, n);
}

static inline int pow2(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

SHIM_EXPORT int posix_memalign(void **out, size_t align, size_t n) {
  if (!pow2(align) || align % sizeof(void *) != 0)
    return EINVAL;
  int saved = errno;
  void *p = aligned(align, n);
  if (p == NULL)
    return ENOMEM;
  errno = saved;
  *out = p;
  return 0;
}

SHIM_EXPORT void *aligned_alloc(size_t align, size_t n) {
  if (!pow2(align)) {
    errno = EINVAL;
    return NULL;
  }
  return aligned(align, n);
}

SHIM_EXPORT void *memalign(size_t align, size_t n) {
  if (align > SIZE_MAX / 2 + 1) {
    errno = EINVAL;
    return NULL;
  }
  size_t a = 1;
  while (a < align) /* glibc rounds a non-power of two up */
    a <<= 1;
  return aligned(a, n);
}

SHIM_EXPORT void *valloc(size_t n) { return aligned(4096, n); }

SHIM_EXPORT void *pvalloc(size_t n) {
  if (n > SIZE_MAX - 4095) {
    errno = ENOMEM;
    return NULL;
  }
  size_t r = (n + 4095) & ~(size_t)4095;
  return aligned(4096, r ? r : 4096);
}

/* For tests and curious programs (found with dlsym): 1 when p is a block of the shim's store. */
SHIM_EXPORT int shmdict_malloc_owns(const void *p) {
  return p != NULL && ours(__atomic_load_n(&g_store, __ATOMIC_ACQUIRE), p).v != 0;
}
