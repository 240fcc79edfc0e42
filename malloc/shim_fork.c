/* SPDX-License-Identifier: MIT */
/*
 * fork() semantics under any malloc, for the shim's tests (tests/test_malloc_shim.c runs it
 * without the shim, with a private store and with a named shared store): a forked child must see
 * its parent's heap as it was at fork() and may scribble on it, free it and allocate more without
 * the parent seeing any of it. With a named store that is the shim's private snapshot (shim.c);
 * with glibc or the private store it is copy-on-write.
 *
 *   shim_fork            all of: a child that scribbles and frees; the parent changing its heap
 *                        the moment fork() returns (the child must see the old bytes); a
 *                        grandchild; forks from a multi-threaded parent (from the main thread and
 *                        from a worker) while the other threads allocate; forks interrupted by
 *                        a signal handler; posix_spawn and system()
 *   shim_fork forkfail   fork() failing (clone refused by a seccomp filter): returns -1 with
 *                        errno EAGAIN at once, and malloc still works (exit 77: no seccomp here)
 *   shim_fork nomem      the child cannot map its copy (RLIMIT_AS): a write to an inherited block
 *                        must kill the child, not reach the parent (named store only)
 *   shim_fork cost MIB N not a test: the time fork() takes in the parent (the named store's copy
 *                        included) with MIB MiB of live heap, over N forks (docs/bench.md)
 *
 * Exits 0 when everything held, 1 otherwise (what failed on stderr); prints one line that does
 * not depend on the allocator, so runs under different mallocs print the same. SHIM_EXPECT=1:
 * also check the blocks come from the shim (its shmdict_malloc_owns()).
 */
#include <dlfcn.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int failures;

static void fail(const char *what) {
  if (__atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED) <= 20)
    fprintf(stderr, "shim_fork: %s\n", what);
}

static void fill(unsigned char *p, size_t n, unsigned tag) {
  for (size_t i = 0; i < n; i++)
    p[i] = (unsigned char)(tag + i * 7);
}

static int good(const unsigned char *p, size_t n, unsigned tag) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != (unsigned char)(tag + i * 7))
      return 0;
  return 1;
}

/* Overwrites n bytes at p with c; the barrier keeps the compiler from dropping the stores as
 * dead (the block is freed, or the process exits, right after). */
static void scribble(void *p, int c, size_t n) {
  memset(p, c, n);
  __asm__ volatile("" : : "r"(p) : "memory");
}

/* Exit status of a child (128 + signal when killed). */
static int wait_child(pid_t pid) {
  int st = 0;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR)
      return -1;
  return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
}

static int from_shim(const void *p) {
  int (*owns)(const void *);
  void *f = dlsym(RTLD_DEFAULT, "shmdict_malloc_owns");
  if (f == NULL)
    return 0;
  memcpy(&owns, &f, sizeof f);
  return owns(p);
}

/* ---------------------------------------------------------------------------------------------- */
/* The parent's blocks: sizes from every kind of block (slab classes, large buddy blocks). */

enum { NBLK = 96 };
static unsigned char *blk[NBLK];
static size_t blk_len[NBLK];
static unsigned blk_tag[NBLK];

static size_t size_of(int i) {
  static const size_t sizes[] = {1, 24, 100, 500, 1000, 3000, 5000, 9000, 20000, 70000, 300000};
  return sizes[i % (int)(sizeof sizes / sizeof sizes[0])] + (size_t)i;
}

static void make_blocks(unsigned tag) {
  for (int i = 0; i < NBLK; i++) {
    blk_len[i] = size_of(i);
    blk[i] = malloc(blk_len[i]);
    if (blk[i] == NULL) {
      fail("malloc returned NULL");
      exit(1);
    }
    blk_tag[i] = tag + (unsigned)i;
    fill(blk[i], blk_len[i], blk_tag[i]);
  }
}

static int blocks_good(void) {
  for (int i = 0; i < NBLK; i++)
    if (!good(blk[i], blk_len[i], blk_tag[i]))
      return 0;
  return 1;
}

static void free_blocks(void) {
  for (int i = 0; i < NBLK; i++)
    free(blk[i]);
}

/* In a child: checks the inherited blocks, then scribbles on them, frees half, reallocs some,
 * allocates and frees more. Returns the exit code. */
static int child_work(void) {
  if (!blocks_good())
    return 10; /* the snapshot is not the parent's heap at fork time */
  for (int i = 0; i < NBLK; i++) {
    scribble(blk[i], 0xEE, blk_len[i]);
    if (i % 3 == 0) {
      free(blk[i]);
      blk[i] = NULL;
    } else if (i % 3 == 1) {
      unsigned char *r = realloc(blk[i], blk_len[i] * 2 + 10);
      if (r == NULL)
        return 11;
      scribble(r, 0xDD, blk_len[i] * 2 + 10);
      blk[i] = r;
    }
  }
  for (int i = 0; i < 3000; i++) {
    size_t n = 1 + (size_t)(i * 37) % 40000;
    unsigned char *p = malloc(n);
    if (p == NULL)
      return 12;
    scribble(p, 0xCC, n);
    if (i % 2)
      free(p);
  }
  for (int i = 0; i < NBLK; i++)
    free(blk[i]);
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Single-threaded forks. */

static void t_scribble(void) {
  make_blocks(1);
  pid_t pid = fork();
  if (pid < 0) {
    fail("fork failed");
    return;
  }
  if (pid == 0)
    _exit(child_work());
  int st = wait_child(pid);
  if (st != 0) {
    fprintf(stderr, "shim_fork: scribbling child ended with %d\n", st);
    fail("scribbling child");
  }
  if (!blocks_good())
    fail("the child's writes or frees reached the parent's blocks");
  /* The parent's blocks are still its own: reuse them, free them. */
  for (int i = 0; i < NBLK; i++)
    fill(blk[i], blk_len[i], blk_tag[i] + 1);
  free_blocks();
}

/* The parent changes its heap the moment fork() returns; the child must see the old bytes. A
 * filler heap makes the child's copy (named store) take a while, so a parent that did not wait
 * for it would usually win. */
static void t_parent_races(void) {
  enum { FILL = 400 };
  unsigned char *filler[FILL];
  for (int i = 0; i < FILL; i++) {
    filler[i] = malloc(20000 + (size_t)i * 10);
    if (filler[i] == NULL) {
      fail("filler malloc");
      return;
    }
    memset(filler[i], 0x5A, 20000 + (size_t)i * 10);
  }
  for (int round = 0; round < 5; round++) {
    make_blocks(50 + (unsigned)round);
    pid_t pid = fork();
    if (pid < 0) {
      fail("fork failed");
      break;
    }
    if (pid == 0)
      _exit(blocks_good() && filler[FILL - 1][0] == 0x5A && filler[FILL - 1][19999] == 0x5A ? 0 : 20);
    for (int i = 0; i < NBLK; i++) /* at once: before the child could look */
      scribble(blk[i], 0x11, blk_len[i]);
    scribble(filler[FILL - 1], 0x22, 20000);
    int st = wait_child(pid);
    if (st != 0) {
      fprintf(stderr, "shim_fork: round %d: the child saw the parent's writes after fork (%d)\n", round, st);
      fail("the child's heap is not the parent's at fork time");
    }
    memset(filler[FILL - 1], 0x5A, 20000);
    free_blocks();
  }
  for (int i = 0; i < FILL; i++)
    free(filler[i]);
}

/* A child that forks: the grandchild scribbles, the child's copy must not change. */
static void t_grandchild(void) {
  make_blocks(100);
  pid_t pid = fork();
  if (pid < 0) {
    fail("fork failed");
    return;
  }
  if (pid == 0) {
    pid_t g = fork();
    if (g < 0)
      _exit(30);
    if (g == 0)
      _exit(child_work());
    if (wait_child(g) != 0)
      _exit(31);
    if (!blocks_good())
      _exit(32);
    _exit(child_work());
  }
  int st = wait_child(pid);
  if (st != 0) {
    fprintf(stderr, "shim_fork: child with a grandchild ended with %d\n", st);
    fail("grandchild");
  }
  if (!blocks_good())
    fail("a grandchild's or child's writes reached the parent");
  free_blocks();
}

/* ---------------------------------------------------------------------------------------------- */
/* Forks from a multi-threaded parent. */

static int stop_workers;

static void *worker(void *arg) {
  uint64_t s = (uintptr_t)arg * 2654435761u + 1;
  unsigned char *live[64] = {0};
  size_t len[64] = {0};
  while (!__atomic_load_n(&stop_workers, __ATOMIC_RELAXED)) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    int i = (int)(s % 64);
    if (live[i]) {
      if (!good(live[i], len[i], (unsigned)i))
        fail("a worker's block damaged");
      free(live[i]);
      live[i] = NULL;
    } else {
      len[i] = 1 + (size_t)(s >> 8) % (s % 5 == 0 ? 100000 : 2000);
      live[i] = malloc(len[i]);
      if (live[i] == NULL) {
        fail("worker malloc");
        break;
      }
      fill(live[i], len[i], (unsigned)i);
    }
  }
  for (int i = 0; i < 64; i++)
    free(live[i]);
  return NULL;
}

static void *forking_worker(void *arg) {
  (void)arg;
  for (int k = 0; k < 5; k++) {
    pid_t pid = fork();
    if (pid < 0) {
      fail("fork from a worker failed");
      break;
    }
    if (pid == 0)
      _exit(child_work()); /* the main thread's blocks: it does not change them meanwhile */
    if (wait_child(pid) != 0)
      fail("child of a worker thread");
  }
  return NULL;
}

static void t_threads(void) {
  make_blocks(200);
  pthread_t th[3], fw;
  for (int i = 0; i < 3; i++)
    pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)(i + 1));
  for (int k = 0; k < 15; k++) {
    pid_t pid = fork();
    if (pid < 0) {
      fail("fork failed");
      break;
    }
    if (pid == 0)
      _exit(child_work());
    int st = wait_child(pid);
    if (st != 0) {
      fprintf(stderr, "shim_fork: child of a threaded parent ended with %d\n", st);
      fail("child of a multi-threaded parent");
    }
    if (!blocks_good())
      fail("a child's writes reached the multi-threaded parent");
  }
  pthread_create(&fw, NULL, forking_worker, NULL);
  pthread_join(fw, NULL);
  __atomic_store_n(&stop_workers, 1, __ATOMIC_RELAXED);
  for (int i = 0; i < 3; i++)
    pthread_join(th[i], NULL);
  if (!blocks_good())
    fail("the main thread's blocks changed");
  free_blocks();
}

/* ---------------------------------------------------------------------------------------------- */
/* A signal handler interrupting the parent's wait; posix_spawn and system(). */

static volatile sig_atomic_t ticks;
static void on_alarm(int sig) {
  (void)sig;
  ticks++;
}

static void t_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm; /* no SA_RESTART: blocking calls fail with EINTR */
  sigaction(SIGALRM, &sa, NULL);
  struct itimerval it = {{0, 200}, {0, 200}};
  setitimer(ITIMER_REAL, &it, NULL);
  make_blocks(300);
  for (int k = 0; k < 20; k++) {
    pid_t pid = fork();
    if (pid < 0) {
      if (errno == EINTR || errno == EAGAIN)
        continue; /* fork may be interrupted itself; not what this checks */
      fail("fork failed");
      break;
    }
    if (pid == 0) {
      struct itimerval off = {{0, 0}, {0, 0}};
      setitimer(ITIMER_REAL, &off, NULL);
      _exit(child_work());
    }
    if (wait_child(pid) != 0)
      fail("child forked while signals arrive");
  }
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  signal(SIGALRM, SIG_DFL);
  if (!blocks_good())
    fail("blocks changed while signals arrived");
  free_blocks();
}

static void t_spawn(void) {
  make_blocks(400);
  pid_t pid;
  char *argv[] = {"sh", "-c", "exit 7", NULL};
  if (posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ) != 0)
    fail("posix_spawn failed");
  else if (wait_child(pid) != 7)
    fail("posix_spawn'd shell did not exit 7");
  int st = system("exit 3");
  if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 3)
    fail("system(\"exit 3\")");
  if (!blocks_good())
    fail("blocks changed by posix_spawn or system");
  free_blocks();
}

/* ---------------------------------------------------------------------------------------------- */
/* Separate runs (a fresh process: not itself a forked child of the store). */

/* fork() fails: the shim's parent handler must not wait for a child that does not exist. */
static int forkfail(void) {
  unsigned char *b = malloc(1000);
  fill(b, 1000, 9);
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EAGAIN & SECCOMP_RET_DATA)),
  };
  struct sock_fprog prog = {(unsigned short)(sizeof f / sizeof f[0]), f};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
    fprintf(stderr, "shim_fork: no seccomp filter here (%s)\n", strerror(errno));
    return 77;
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  errno = 0;
  pid_t pid = fork();
  int e = errno;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
  if (pid == 0)
    _exit(0);
  if (pid > 0) {
    fail("fork succeeded despite the filter");
    wait_child(pid);
  } else if (e != EAGAIN) {
    fprintf(stderr, "shim_fork: fork failed with errno %d, not EAGAIN\n", e);
    fail("fork's errno");
  }
  if (secs > 2.0) {
    fprintf(stderr, "shim_fork: the failed fork took %.1f s\n", secs);
    fail("the parent waited for a child that was never made");
  }
  unsigned char *c = malloc(50000); /* the fork lock was released */
  if (c == NULL)
    fail("malloc after a failed fork");
  free(c);
  if (!good(b, 1000, 9))
    fail("block changed");
  free(b);
  printf("shim_fork: forkfail ok\n");
  return failures != 0;
}

/* The child's copy cannot be mapped: the child must not be able to write to the parent's heap. */
static int nomem(void) {
  unsigned char *b = malloc(1000);
  fill(b, 1000, 5);
  long pages = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL || fscanf(f, "%ld", &pages) != 1) {
    fail("reading /proc/self/statm");
    return 1;
  }
  fclose(f);
  rlim_t lim = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (16u << 20); /* below a 64 MiB segment */
  struct rlimit rl = {lim, lim};
  if (setrlimit(RLIMIT_AS, &rl) != 0) {
    fail("setrlimit");
    return 1;
  }
  pid_t pid = fork();
  if (pid < 0) {
    fail("fork failed");
    return 1;
  }
  if (pid == 0) {
    volatile unsigned char *v = b; /* a plain memset before _exit could be optimised away */
    for (int i = 0; i < 1000; i++)
      v[i] = 0xEE; /* must fault: the segment is read-only in this child */
    _exit(0);
  }
  int st = wait_child(pid);
  if (st != 128 + SIGSEGV && st != 128 + SIGBUS) {
    fprintf(stderr, "shim_fork: the child without a copy ended with %d, not killed by SIGSEGV\n", st);
    fail("child without a copy");
  }
  if (!good(b, 1000, 5))
    fail("the child's write reached the parent");
  free(b);
  printf("shim_fork: nomem ok\n");
  return failures != 0;
}

/* The cost of fork() with `mib` MiB of live heap: half in blocks of 100-1000 bytes, half in
 * blocks of 20-200 KB; the child exits at once. Prints median, mean and minimum. */
static int cost(size_t mib, int n) {
  size_t live = 0;
  uint32_t r = 1;
  while (live < mib << 20) {
    r = r * 1103515245u + 12345u;
    size_t k = live < mib << 19 ? 100 + r % 900 : 20000 + r % 180000;
    unsigned char *p = malloc(k);
    if (p == NULL)
      return 1;
    memset(p, 1, k); /* kept: the live heap */
    live += k;
  }
  double t[1000], sum = 0;
  if (n < 1 || n > 1000)
    n = 21;
  for (int i = 0; i < n; i++) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pid_t pid = fork();
    if (pid == 0)
      _exit(0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (pid < 0)
      return 1;
    wait_child(pid);
    t[i] = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) * 1e-6;
    sum += t[i];
  }
  for (int i = 1; i < n; i++) /* insertion sort: n is small */
    for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
      double x = t[j];
      t[j] = t[j - 1];
      t[j - 1] = x;
    }
  printf("shim_fork: %zu MiB live, %d forks: fork() in the parent takes median %.3f ms, mean %.3f ms, "
         "min %.3f ms\n", mib, n, t[n / 2], sum / n, t[0]);
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0); /* nothing buffered twice by forked children */
  if (argc > 1 && strcmp(argv[1], "forkfail") == 0)
    return forkfail();
  if (argc > 1 && strcmp(argv[1], "nomem") == 0)
    return nomem();
  if (argc > 3 && strcmp(argv[1], "cost") == 0)
    return cost(strtoul(argv[2], NULL, 10), atoi(argv[3]));
  if (getenv("SHIM_EXPECT") && atoi(getenv("SHIM_EXPECT"))) {
    void *probe = malloc(100);
    int yes = from_shim(probe);
    free(probe);
    if (!yes) {
      fprintf(stderr, "shim_fork: blocks do not come from the shim\n");
      return 3;
    }
  }
  t_scribble();
  t_parent_races();
  t_grandchild();
  t_threads();
  t_signals();
  t_spawn();
  printf("shim_fork: scribble, parent_races, grandchild, threads, signals, spawn: failures %d\n", failures);
  return failures != 0;
}
