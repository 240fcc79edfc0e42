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
#include <linux/futex.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "shmdict/error.h"

static int from_errno(int e, const char *what, const char *path) {
  shmd__set_detail("%s %s: %s", what, path ? path : "", strerror(e));
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
  case ENOMEM:
    return SHMD_ENOMEM;
  case EINVAL:
  case ENAMETOOLONG:
    return SHMD_EINVAL;
  default:
    return SHMD_EIO;
  }
}

int shmd__os_is_dir(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int mkdir_one(const char *path, uint32_t mode) {
  /* The directory gives group / others search and read access when the files give them any. */
  mode_t dmode = 0700 | ((mode & 0070) ? 0070 : 0) | ((mode & 0007) ? 0007 : 0);
  if (mkdir(path, dmode) == 0) {
    (void)chmod(path, dmode); /* not narrowed by the umask */
    return 0;
  }
  if (errno != EEXIST)
    return from_errno(errno, "mkdir", path);
  struct stat st;
  if (lstat(path, &st) != 0)
    return from_errno(errno, "stat", path);
  if (S_ISLNK(st.st_mode)) {
    shmd__set_detail("%s is a symbolic link; refusing to follow it", path);
    return SHMD_ELOOP;
  }
  if (!S_ISDIR(st.st_mode)) {
    shmd__set_detail("%s exists and is not a directory", path);
    return SHMD_EINVAL;
  }
  return 0;
}

int shmd__os_mkdir(const char *path, uint32_t mode) {
  char parent[4096];
  size_t n = strlen(path);
  if (n >= sizeof parent)
    return SHMD_EINVAL;
  memcpy(parent, path, n + 1);
  char *slash = strrchr(parent, '/');
  if (slash && slash != parent) {
    *slash = '\0';
    struct stat st;
    if (stat(parent, &st) != 0) {
      /* $SHMDICT_DIR itself may not exist yet: a shared directory, so other users' stores can
       * live in it too (sticky, like /tmp). */
      if (mkdir(parent, 01777) != 0 && errno != EEXIST)
        return from_errno(errno, "mkdir", parent);
      (void)chmod(parent, 01777);
    }
  }
  return mkdir_one(path, mode);
}

_Thread_local int shmd__os_private_maps; /* see os.h (the malloc shim's private stores) */
_Thread_local int shmd__os_sparse_files;

int shmd__os_create(const char *path, uint32_t mode, uint64_t size, int *fd) {
  int f = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
  if (f < 0)
    return from_errno(errno, "create", path);
  /* Private mappings never write the file: reserving its storage would only double the memory.
   * (No error text on this path: the malloc shim creates files from inside malloc.) */
  if (shmd__os_sparse_files) {
    if (ftruncate(f, (off_t)size) == 0) {
      *fd = f;
      return 0;
    }
    close(f);
    unlink(path);
    return SHMD_EIO;
  }
  int e = posix_fallocate(f, 0, (off_t)size);
  if (e != 0) {
    int rc = from_errno(e, "reserve space for", path);
    if (e == EOPNOTSUPP || e == EINVAL) {
      /* File systems without fallocate: fall back to ftruncate (no reservation). */
      if (ftruncate(f, (off_t)size) == 0) {
        *fd = f;
        return 0;
      }
      rc = from_errno(errno, "ftruncate", path);
    }
    close(f);
    unlink(path);
    return rc;
  }
  *fd = f;
  return 0;
}

int shmd__os_create_empty(const char *path, uint32_t mode, int *fd) {
  int f = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
  if (f < 0)
    return from_errno(errno, "create", path);
  *fd = f;
  return 0;
}

int shmd__os_reserve(int fd, uint64_t off, uint64_t len) {
  int e = posix_fallocate(fd, (off_t)off, (off_t)len);
  if (e == 0)
    return 0;
  if (e == EOPNOTSUPP)
    e = EINVAL;
  return from_errno(e, "reserve space for", "a spare segment");
}

int shmd__os_open(const char *path, int *fd) {
  int f = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  if (f < 0)
    return from_errno(errno, "open", path);
  struct stat st;
  if (fstat(f, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(f);
    shmd__set_detail("%s is not a regular file", path);
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

int shmd__os_map(int fd, uint64_t size, void **out) {
  void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, shmd__os_private_maps ? MAP_PRIVATE : MAP_SHARED,
                 fd, 0);
  if (p == MAP_FAILED)
    return from_errno(errno, "mmap", "segment");
#ifdef MADV_HUGEPAGE
  /* Large stores live on TLB misses: ask for transparent huge pages. Takes effect where the file
   * system allows it (tmpfs with shmem_enabled=advise, or huge=within_size mounts); harmless
   * elsewhere, so the result is ignored. Not for sparse files (the malloc shim's private stores):
   * there every first touch of a page would allocate a whole huge page (measured: 51 MB resident
   * after creating a 1 GiB store, against 2 MB without). */
  if (size >= (UINT64_C(4) << 20) && !shmd__os_sparse_files && !shmd__os_private_maps)
    (void)madvise(p, (size_t)size, MADV_HUGEPAGE);
#endif
  *out = p;
  return 0;
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

int shmd__os_unlink(const char *path) {
  if (unlink(path) != 0)
    return from_errno(errno, "unlink", path);
  return 0;
}

int shmd__os_rmdir(const char *path) {
  if (rmdir(path) != 0)
    return from_errno(errno, "rmdir", path);
  return 0;
}

int shmd__os_link(const char *from, const char *to) {
  if (link(from, to) != 0)
    return from_errno(errno, "link", to);
  return 0;
}

int shmd__os_flock(int fd, int exclusive) {
  while (flock(fd, exclusive ? LOCK_EX : LOCK_SH) != 0) {
    if (errno != EINTR)
      return from_errno(errno, "flock", "segment 0");
  }
  return 0;
}

int shmd__os_funlock(int fd) {
  flock(fd, LOCK_UN);
  return 0;
}

int shmd__os_list_dir(const char *path, int (*fn)(const char *name, void *arg), void *arg) {
  DIR *d = opendir(path);
  if (d == NULL)
    return from_errno(errno, "open directory", path);
  struct dirent *e;
  int rc = 0;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    rc = fn(e->d_name, arg);
  }
  closedir(d);
  return rc;
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
  FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
  if (f == NULL)
    return;
  if (fgets(out, 40, f) == NULL)
    out[0] = '\0';
  fclose(f);
  out[strcspn(out, "\n")] = '\0';
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
