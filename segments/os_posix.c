/* SPDX-License-Identifier: MIT */
/*
 * POSIX (Linux) implementation of the OS boundary in os.h. This is the only file of the library
 * that calls mmap, open, posix_fallocate, futex and the other system interfaces, so a port to
 * another system replaces this file and nothing else.
 */
#include "os.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "shmdict/error.h"

/* The status for an errno value. */
static int code_of(int e) {
  switch (e) {
  case ENOENT:
    return SHMD_ENOENT;
  case EEXIST:
    return SHMD_EEXIST;
  case ENOSPC:
  case EDQUOT:
  case EFBIG:
    return SHMD_ENOSPC;
  case EACCES:
  case EPERM:
  case EROFS:
    return SHMD_EPERM;
  case ELOOP:
    return SHMD_ELOOP;
  case ENOTEMPTY:
    return SHMD_EBUSY;
  case ENOMEM:
    return SHMD_ENOMEM;
  case EINVAL:
  case ENAMETOOLONG:
    return SHMD_EINVAL;
  default:
    return SHMD_EIO;
  }
}

static int from_errno(int e, const char *what, const char *path) {
  shmd__set_detail("%s %s: %s", what, path ? path : "", strerror(e));
  return code_of(e);
}

/* Sets the detail "WHAT DIR/NAME: errno text" and returns the errno's status. */
static int at_errno(int e, const char *what, const struct shmd__os_dir *d, const char *name) {
  shmd__set_detail("%s %s/%s: %s", what, d->path, name, strerror(e));
  return code_of(e);
}

/* ---------------------------------------------------------------------------------------------- */
/* Directories and files, relative to directory fds. */

static void fill_stat(const struct stat *st, struct shmd__os_stat *out) {
  memset(out, 0, sizeof *out);
  out->kind = S_ISREG(st->st_mode)   ? SHMD__OS_REG
              : S_ISDIR(st->st_mode) ? SHMD__OS_DIR
              : S_ISLNK(st->st_mode) ? SHMD__OS_LNK
                                     : SHMD__OS_OTHER;
  out->perm = (uint32_t)(st->st_mode & 07777);
  out->uid = (uint32_t)st->st_uid;
  out->gid = (uint32_t)st->st_gid;
  out->nlink = (uint64_t)st->st_nlink;
  out->dev = (uint64_t)st->st_dev;
  out->ino = (uint64_t)st->st_ino;
  out->size_bytes = (uint64_t)st->st_size;
  out->alloc_bytes = (uint64_t)st->st_blocks * 512;
}

int shmd__os_fstat(int fd, struct shmd__os_stat *out) {
  struct stat st;
  if (fstat(fd, &st) != 0)
    return from_errno(errno, "stat", "an open file");
  fill_stat(&st, out);
  return 0;
}

int shmd__os_fstatat(const struct shmd__os_dir *d, const char *name, struct shmd__os_stat *out) {
  struct stat st;
  if (fstatat(d->fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return at_errno(errno, "stat", d, name);
  fill_stat(&st, out);
  return 0;
}

int shmd__os_open_dir(const char *path, int *fd) {
  int f = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (f < 0) {
    int e = errno;
    if (e == ENOTDIR) {
      shmd__set_detail("%s is not a directory", path);
      return SHMD_EINVAL;
    }
    return from_errno(e, "open directory", path);
  }
  *fd = f;
  return 0;
}

/* The status and detail for a failed open of `name` in d with O_NOFOLLOW (and O_DIRECTORY when
 * `dir`): a symbolic link shows as ELOOP (a file) or ENOTDIR (a directory), so look. */
static int open_failed(const struct shmd__os_dir *d, const char *name, int e, int dir) {
  struct stat st;
  if ((e == ELOOP || e == ENOTDIR || e == EMLINK) && fstatat(d->fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISLNK(st.st_mode)) {
      shmd__set_detail("%s/%s is a symbolic link; refusing to follow it", d->path, name);
      return SHMD_ELOOP;
    }
    if (dir && !S_ISDIR(st.st_mode)) {
      shmd__set_detail("%s/%s exists and is not a directory", d->path, name);
      return SHMD_EINVAL;
    }
  }
  return at_errno(e, "open", d, name);
}

int shmd__os_open_dirat(const struct shmd__os_dir *d, const char *name, int *fd) {
  int f = openat(d->fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (f < 0)
    return open_failed(d, name, errno, 1);
  *fd = f;
  return 0;
}

int shmd__os_mkdirat(const struct shmd__os_dir *d, const char *name, uint32_t perm, int64_t gid, int *fd) {
  if (mkdirat(d->fd, name, 0700) != 0) {
    if (errno == EEXIST)
      return SHMD_EEXIST;
    return at_errno(errno, "mkdir", d, name);
  }
  /* Made 0700 first: nobody else can use it before its group and mode are right. The group comes
   * first (chown may clear the setgid bit), then the exact mode, not narrowed by the umask. */
  int f = openat(d->fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  int rc = 0;
  if (f < 0) {
    rc = open_failed(d, name, errno, 1);
  } else if (gid >= 0 && fchown(f, (uid_t)-1, (gid_t)gid) != 0) {
    int e = errno;
    shmd__set_detail("cannot give %s/%s to group %lld: %s (only a member of the group can)", d->path, name,
                     (long long)gid, strerror(e));
    rc = code_of(e);
  } else if (fchmod(f, (mode_t)perm) != 0) {
    rc = at_errno(errno, "chmod", d, name);
  }
  if (rc) {
    if (f >= 0)
      close(f);
    (void)unlinkat(d->fd, name, AT_REMOVEDIR);
    return rc;
  }
  *fd = f;
  return 0;
}


/* RLIMIT_FSIZE: a file may not grow beyond it. Exceeding it raises SIGXFSZ, whose default action
 * kills the process, and the library must never let a signal escape for a resource limit. The
 * alternative, blocking SIGXFSZ around the call, is not enough on its own: the kernel sends it to
 * the calling thread, where it would stay pending and be delivered the moment the caller's mask is
 * restored, unless the library consumed it (and then it could eat a SIGXFSZ the application had
 * pending for its own reasons), and it costs two more system calls per reservation piece. So the
 * limit is read (one cheap system call, the limit is per process) and a reservation that would
 * cross it is refused before the call: the kernel never raises the signal. A limit lowered by
 * another thread between the check and the call is the one gap; an application doing that should
 * ignore SIGXFSZ, and then the call answers EFBIG, which maps to SHMD_ENOSPC too. */
static int fsize_allows(uint64_t end, int quiet, const struct shmd__os_dir *d, const char *name) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_FSIZE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || end <= (uint64_t)rl.rlim_cur)
    return 0;
  if (!quiet)
    shmd__set_detail("%s%s%s would reach %llu bytes, beyond the file size limit RLIMIT_FSIZE of %llu bytes "
                     "(ulimit -f)",
                     d ? d->path : "", d ? "/" : "", name, (unsigned long long)end,
                     (unsigned long long)rl.rlim_cur);
  return SHMD_ENOSPC;
}

static int create_at(const struct shmd__os_dir *d, const char *name, uint32_t perm, int *fd) {
  int f = openat(d->fd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (f < 0) {
    if (errno == EEXIST)
      return SHMD_EEXIST; /* also a planted symlink: never followed (O_EXCL) */
    return at_errno(errno, "create", d, name);
  }
  /* The exact mode, not narrowed by the umask (a group-shared store needs its 0660). */
  if ((perm & 07777) != 0600 && fchmod(f, (mode_t)perm) != 0) {
    int rc = at_errno(errno, "chmod", d, name);
    close(f);
    unlinkat(d->fd, name, 0);
    return rc;
  }
  *fd = f;
  return 0;
}

int shmd__os_createat(const struct shmd__os_dir *d, const char *name, uint32_t perm, uint64_t size, unsigned how,
                      int *fd) {
  /* No error text on the sparse path: the malloc shim creates files from inside malloc. */
  int sparse = (how & SHMD__OS_SPARSE) != 0;
  int rc = fsize_allows(size, sparse, d, name);
  if (rc)
    return rc;
  int f;
  if (sparse) {
    f = openat(d->fd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)perm);
    if (f < 0)
      return errno == EEXIST ? SHMD_EEXIST : errno == ENOENT ? SHMD_ENOENT : SHMD_EIO;
    /* Private mappings never write the file: reserving its storage would only double the memory. */
    if (ftruncate(f, (off_t)size) == 0) {
      *fd = f;
      return 0;
    }
    close(f);
    unlinkat(d->fd, name, 0);
    return SHMD_EIO;
  }
  rc = create_at(d, name, perm, &f);
  if (rc)
    return rc;
  int e = posix_fallocate(f, 0, (off_t)size);
  if (e != 0) {
    rc = at_errno(e, "reserve space for", d, name);
    if (e == EOPNOTSUPP || e == EINVAL) {
      /* File systems without fallocate: fall back to ftruncate (no reservation). */
      if (ftruncate(f, (off_t)size) == 0) {
        *fd = f;
        return 0;
      }
      rc = at_errno(errno, "ftruncate", d, name);
    }
    close(f);
    unlinkat(d->fd, name, 0);
    return rc;
  }
  *fd = f;
  return 0;
}

int shmd__os_create_emptyat(const struct shmd__os_dir *d, const char *name, uint32_t perm, int *fd) {
  return create_at(d, name, perm, fd);
}

int shmd__os_reserve(int fd, uint64_t off, uint64_t len) {
  if (len > UINT64_MAX - off)
    return SHMD_EINVAL;
  int rc = fsize_allows(off + len, 0, NULL, "a spare segment");
  if (rc)
    return rc;
  int e = posix_fallocate(fd, (off_t)off, (off_t)len);
  if (e == 0)
    return 0;
  if (e == EOPNOTSUPP)
    e = EINVAL;
  return from_errno(e, "reserve space for", "a spare segment");
}

int shmd__os_openat(const struct shmd__os_dir *d, const char *name, int *fd) {
  int f = openat(d->fd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  if (f < 0)
    return open_failed(d, name, errno, 0);
  struct stat st;
  if (fstat(f, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(f);
    shmd__set_detail("%s/%s is not a regular file", d->path, name);
    return SHMD_ENOTSTORE;
  }
  *fd = f;
  return 0;
}

int shmd__os_file_size(int fd, uint64_t *size) {
  struct stat st;
  if (fstat(fd, &st) != 0)
    return from_errno(errno, "stat", "segment");
  *size = (uint64_t)st.st_size;
  return 0;
}

int shmd__os_map(int fd, uint64_t size, unsigned how, void **out) {
  void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, how & SHMD__OS_PRIVATE ? MAP_PRIVATE : MAP_SHARED,
                 fd, 0);
  if (p == MAP_FAILED)
    return from_errno(errno, "mmap", "segment");
#ifdef MADV_HUGEPAGE
  /* Large stores live on TLB misses: ask for transparent huge pages. Takes effect where the file
   * system allows it (tmpfs with shmem_enabled=advise, or huge=within_size mounts); harmless
   * elsewhere, so the result is ignored. Not for sparse files (the malloc shim's private stores):
   * there every first touch of a page would allocate a whole huge page (measured: 51 MB resident
   * after creating a 1 GiB store, against 2 MB without). */
  if (size >= (UINT64_C(4) << 20) && how == 0)
    (void)madvise(p, (size_t)size, MADV_HUGEPAGE);
#endif
  *out = p;
  return 0;
}

int shmd__os_remap_private(void *base, uint64_t size, int readonly_on_fail,
                           void (*fill)(unsigned char *dst, const unsigned char *src, uint64_t size, void *arg),
                           void *arg) {
  void *tmp = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (tmp != MAP_FAILED) {
    fill(tmp, base, size, arg);
    if (mremap(tmp, (size_t)size, (size_t)size, MREMAP_MAYMOVE | MREMAP_FIXED, base) != MAP_FAILED)
      return 0;
    munmap(tmp, (size_t)size);
  }
  if (readonly_on_fail)
    mprotect(base, (size_t)size, PROT_READ);
  return SHMD_ENOMEM;
}

int shmd__os_resident(void *base, uint64_t size, unsigned char *vec) {
  return mincore(base, (size_t)size, vec) == 0 ? 0 : SHMD_EIO;
}

void shmd__os_unmap(void *addr, uint64_t size) {
  if (addr)
    munmap(addr, (size_t)size);
}

void shmd__os_populate(void *addr, uint64_t size) {
#ifdef MADV_POPULATE_WRITE
  if (madvise(addr, (size_t)size, MADV_POPULATE_WRITE) == 0)
    return;
#endif
  volatile unsigned char *p = addr;
  for (uint64_t i = 0; i < size; i += 4096)
    (void)p[i];
}

void shmd__os_release(void *addr, uint64_t size) {
  static long pg;
  if (pg == 0)
    pg = sysconf(_SC_PAGESIZE) > 0 ? sysconf(_SC_PAGESIZE) : 4096;
  uintptr_t a = ((uintptr_t)addr + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
  uintptr_t e = ((uintptr_t)addr + (uintptr_t)size) & ~((uintptr_t)pg - 1);
  if (e > a)
    (void)madvise((void *)a, e - a, MADV_DONTNEED);
}

void shmd__os_close(int fd) {
  if (fd >= 0)
    close(fd);
}

int shmd__os_unlinkat(const struct shmd__os_dir *d, const char *name) {
  if (unlinkat(d->fd, name, 0) != 0)
    return at_errno(errno, "unlink", d, name);
  return 0;
}

int shmd__os_rmdirat(const struct shmd__os_dir *d, const char *name) {
  if (unlinkat(d->fd, name, AT_REMOVEDIR) != 0)
    return at_errno(errno, "rmdir", d, name);
  return 0;
}

int shmd__os_linkat(const struct shmd__os_dir *d, const char *from, const char *to) {
  if (linkat(d->fd, from, d->fd, to, 0) != 0)
    return at_errno(errno, "link", d, to);
  return 0;
}

int shmd__os_flock(int fd, int exclusive) {
  while (flock(fd, exclusive ? LOCK_EX : LOCK_SH) != 0) {
    if (errno != EINTR)
      return from_errno(errno, "flock", "segment 0");
  }
  return 0;
}

int shmd__os_trylock(int fd) {
  while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK)
      return SHMD_EBUSY;
    if (errno != EINTR)
      return from_errno(errno, "flock", "a spare file");
  }
  return 0;
}

int shmd__os_funlock(int fd) {
  flock(fd, LOCK_UN);
  return 0;
}

int shmd__os_list_dirat(const struct shmd__os_dir *d, int (*fn)(const char *name, void *arg), void *arg) {
  /* A directory stream of its own: fdopendir takes over the fd it is given. */
  int f = openat(d->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *dir = f >= 0 ? fdopendir(f) : NULL;
  if (dir == NULL) {
    int e = errno;
    if (f >= 0)
      close(f);
    return from_errno(e, "read directory", d->path);
  }
  struct dirent *e;
  int rc = 0;
  while (rc == 0 && (e = readdir(dir)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    rc = fn(e->d_name, arg);
  }
  closedir(dir);
  return rc;
}

int shmd__os_remove_if_unlocked(const struct shmd__os_dir *d, const char *name, struct shmd__os_stat *out) {
  /* Read-only suffices for flock; O_NONBLOCK so that a FIFO planted under the name cannot block. */
  int f = openat(d->fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (f < 0)
    return errno == ENOENT ? SHMD_ENOENT : SHMD_EPERM;
  struct stat st, now;
  int rc = SHMD_ENOTSTORE;
  if (fstat(f, &st) == 0 && S_ISREG(st.st_mode)) {
    fill_stat(&st, out);
    rc = shmd__os_trylock(f);
    if (rc == SHMD_EBUSY) {
      rc = 0; /* its owner lives */
    } else if (rc == 0) {
      /* Dead owner. Remove the name only while it still names the file locked here (its owner may
       * have removed it meanwhile, e.g. when the spare became a segment under another name). */
      rc = SHMD_ENOENT;
      if (fstatat(d->fd, name, &now, AT_SYMLINK_NOFOLLOW) == 0 && now.st_dev == st.st_dev &&
          now.st_ino == st.st_ino && unlinkat(d->fd, name, 0) == 0)
        rc = 1;
    }
  }
  close(f);
  return rc;
}

void shmd__os_replace_fd(int fd, int by) {
  if (fd >= 0 && by >= 0 && fd != by) {
    (void)dup3(by, fd, O_CLOEXEC);
    close(by);
  }
}

uint32_t shmd__os_euid(void) { return (uint32_t)geteuid(); }

int shmd__os_group_id(const char *name, uint32_t *gid) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(name, &end, 10);
  if (name[0] >= '0' && name[0] <= '9' && *end == '\0' && errno == 0 && v < UINT32_MAX) {
    *gid = (uint32_t)v;
    return 0;
  }
  struct group gr, *res = NULL;
  char buf[16384];
  int e = getgrnam_r(name, &gr, buf, sizeof buf, &res);
  if (e != 0 || res == NULL) {
    shmd__set_detail("there is no group named \"%s\"%s%s", name, e ? ": " : "", e ? strerror(e) : "");
    return SHMD_ENOENT;
  }
  *gid = (uint32_t)res->gr_gid;
  return 0;
}

void shmd__os_random(void *buf, size_t len) {
  unsigned char *p = buf;
  while (len > 0) {
    ssize_t n = getrandom(p, len, 0);
    if (n <= 0) {
      /* Fallback: the clock and pid; uniqueness, not secrecy, is what callers need. */
      uint64_t x = shmd__os_now_ns() ^ ((uint64_t)getpid() << 32);
      for (size_t i = 0; i < len; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        p[i] = (unsigned char)x;
      }
      return;
    }
    p += n;
    len -= (size_t)n;
  }
}

void shmd__os_boot_id(char out[40]) {
  out[0] = '\0';
  /* Test-only (os.h): read another file instead, to stand for an unreadable or a changed id. */
  const char *path = shmd__os_getenv("SHMDICT_TEST_BOOT_ID_FILE");
  FILE *f = fopen(path && path[0] ? path : "/proc/sys/kernel/random/boot_id", "re");
  if (f == NULL)
    return;
  if (fgets(out, 40, f) == NULL)
    out[0] = '\0';
  fclose(f);
  out[strcspn(out, "\n")] = '\0';
}

const char *shmd__os_getenv(const char *name) { return getenv(name); }

void shmd__os_kill_self(void) {
  for (;;)
    kill(getpid(), SIGKILL);
}

int shmd__os_atfork_child(void (*child)(void)) {
  int e = pthread_atfork(NULL, NULL, child);
  if (e) {
    shmd__set_detail("pthread_atfork: %s", strerror(e));
    return SHMD_ENOMEM;
  }
  return 0;
}

uint32_t shmd__os_pid(void) { return (uint32_t)getpid(); }
uint32_t shmd__os_tid(void) { return (uint32_t)syscall(SYS_gettid); }

uint64_t shmd__os_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t shmd__os_unix_time(void) { return (uint64_t)time(NULL); }

uint64_t shmd__os_unix_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t shmd__os_unix_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void shmd__os_futex_wait(uint32_t *addr, uint32_t val, uint64_t timeout_ns) {
  struct timespec ts, *tp = NULL;
  if (timeout_ns) {
    ts.tv_sec = (time_t)(timeout_ns / 1000000000ull);
    ts.tv_nsec = (long)(timeout_ns % 1000000000ull);
    tp = &ts;
  }
  syscall(SYS_futex, addr, FUTEX_WAIT, val, tp, NULL, 0);
}

void shmd__os_futex_wake(uint32_t *addr, int n) { syscall(SYS_futex, addr, FUTEX_WAKE, n, NULL, NULL, 0); }

void shmd__os_yield(void) { sched_yield(); }

/* ---------------------------------------------------------------------------------------------- */
/* Liveness of processes and threads (segments/lane.c: who holds a lane, whether a reboot left the
 * lanes unowned). */

int shmd__os_pid_alive(uint32_t pid) {
  if (pid == 0 || pid > INT32_MAX)
    return 0;
  if (kill((pid_t)pid, 0) == 0 || errno == EPERM)
    return 1;
  return errno == ESRCH ? 0 : -1;
}

int shmd__os_thread_alive(uint32_t pid, uint32_t tid) {
  if (tid == 0 || tid > INT32_MAX || pid > INT32_MAX)
    return 0;
  long r = pid ? syscall(SYS_tgkill, (pid_t)pid, (pid_t)tid, 0) : syscall(SYS_tkill, (pid_t)tid, 0);
  if (r == 0 || errno == EPERM)
    return 1;
  return errno == ESRCH ? 0 : -1; /* EINVAL, ENOSYS (a seccomp filter...): cannot tell */
}

uint64_t shmd__os_pidns(void) {
  struct stat st;
  if (stat("/proc/self/ns/pid", &st) != 0)
    return 0;
  return (uint64_t)st.st_ino;
}
