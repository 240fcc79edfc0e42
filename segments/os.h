/* SPDX-License-Identifier: MIT */
/*
 * The OS boundary (mimalloc's prim.h idea): every mmap, open, ftruncate, futex and friends of the
 * library goes through these functions, implemented in os_posix.c (a Windows port adds
 * os_win32.c). They return 0 or a negative SHMD_E* status, set shmd_errdetail() on failure with
 * the errno text, and never print.
 */
#ifndef SHMD_SEGMENTS_OS_H
#define SHMD_SEGMENTS_OS_H

#include <stddef.h>
#include <stdint.h>

/*
 * Files of a store are reached only through directory fds (openat and friends), never by a path
 * below the store root: the root is opened once by the path the caller gave, each directory below
 * it and every file with O_NOFOLLOW relative to its parent's fd. A symbolic link anywhere below
 * the root answers SHMD_ELOOP; nothing is ever followed, overwritten or removed through one.
 * `path` of a shmd__os_dir is for messages only (every detail names the full path).
 */
struct shmd__os_dir {
  int fd;           /* an open directory */
  const char *path; /* its path, for messages */
};

/* What the store's access checks need to know of a file (from fstat / fstatat). */
enum { SHMD__OS_REG = 1, SHMD__OS_DIR = 2, SHMD__OS_LNK = 3, SHMD__OS_OTHER = 4 };
struct shmd__os_stat {
  uint32_t kind;        /* SHMD__OS_* */
  uint32_t perm;        /* permission bits, 07777 (setuid, setgid, sticky, rwx for u/g/o) */
  uint32_t uid, gid;
  uint64_t nlink;       /* 0: the file or directory was removed */
  uint64_t dev, ino;
  uint64_t size_bytes;
  uint64_t alloc_bytes; /* storage actually allocated (blocks) */
};
#define SHMD__OS_STICKY 01000u
#define SHMD__OS_SETGID 02000u

/* Opens the directory `path`, following symbolic links in it (the path is the caller's), for use
 * as a shmd__os_dir. SHMD_ENOENT if missing, SHMD_EINVAL if not a directory. */
int shmd__os_open_dir(const char *path, int *fd);
/* Opens directory `name` inside d without following a symbolic link: SHMD_ELOOP for a link
 * (detail: "... is a symbolic link"), SHMD_EINVAL for something that is not a directory,
 * SHMD_ENOENT if missing, SHMD_EPERM if not searchable. */
int shmd__os_open_dirat(const struct shmd__os_dir *d, const char *name, int *fd);
/* Creates directory `name` inside d with exactly the permission bits `perm` (not narrowed by the
 * umask) and, when gid >= 0, that group; returns its fd (opened as shmd__os_open_dirat does) in
 * *fd. SHMD_EEXIST if `name` exists (nothing is changed then); SHMD_EPERM when the group cannot
 * be set (the caller is not a member); on failure after mkdir the new directory is removed. */
int shmd__os_mkdirat(const struct shmd__os_dir *d, const char *name, uint32_t perm, int64_t gid, int *fd);
/* fstat of an fd; fstatat of `name` in d, not following a symbolic link (kind SHMD__OS_LNK). */
int shmd__os_fstat(int fd, struct shmd__os_stat *st);
int shmd__os_fstatat(const struct shmd__os_dir *d, const char *name, struct shmd__os_stat *st);
/* Creates a new regular file `name` in d exclusively (O_CREAT|O_EXCL|O_NOFOLLOW), with exactly
 * the permission bits `perm`, and reserves `size` bytes of storage for it (posix_fallocate), so
 * that a full file system answers now with SHMD_ENOSPC instead of SIGBUS later. A size beyond
 * RLIMIT_FSIZE answers SHMD_ENOSPC (naming the limit) before anything is reserved, so no SIGXFSZ
 * is ever raised. On failure the file is removed. Returns the fd in *fd. */
/* How a store's files are made and mapped (the handle's os_how, from its open flags). SHMD__OS_SPARSE:
 * shmd__os_createat() reserves no storage (ftruncate only) and sets no error detail. SHMD__OS_PRIVATE:
 * shmd__os_map() maps MAP_PRIVATE. Either: no transparent huge pages. */
enum { SHMD__OS_PRIVATE = 1u << 0, SHMD__OS_SPARSE = 1u << 1 };
int shmd__os_createat(const struct shmd__os_dir *d, const char *name, uint32_t perm, uint64_t size, unsigned how,
                      int *fd);
/* Creates a new, empty regular file exclusively (as shmd__os_createat) without reserving storage;
 * shmd__os_reserve() then reserves it piece by piece. Returns the fd in *fd. */
int shmd__os_create_emptyat(const struct shmd__os_dir *d, const char *name, uint32_t perm, int *fd);
/* Reserves (posix_fallocate) bytes [off, off + len) of the file, extending it as needed. Returns
 * SHMD_ENOSPC when they cannot be backed, also (before trying, so that no SIGXFSZ is raised) when
 * off + len is beyond RLIMIT_FSIZE; SHMD_EINVAL on file systems without fallocate (no reservation
 * is possible there). */
int shmd__os_reserve(int fd, uint64_t off, uint64_t len);
/* Opens existing regular file `name` in d read-write without following a symbolic link
 * (SHMD_ELOOP). SHMD_ENOENT if missing, SHMD_ENOTSTORE if not a regular file. */
int shmd__os_openat(const struct shmd__os_dir *d, const char *name, int *fd);
/* The file's size in bytes. */
int shmd__os_file_size(int fd, uint64_t *size);
/* Maps `size` bytes of `fd` read-write: shared, or private with SHMD__OS_PRIVATE in `how`. */
int shmd__os_map(int fd, uint64_t size, unsigned how, void **out);
void shmd__os_unmap(void *addr, uint64_t size);
/* Replaces the mapping [base, base + size) (size a multiple of the page size) by private anonymous
 * memory that fill(dst, base, size, arg) writes first (dst: the new memory, all zero; the old
 * mapping still readable). Returns 0, or SHMD_ENOMEM when the new memory cannot be had or put in
 * place: then the old mapping stays, made read-only if `readonly_on_fail`. Only system calls and
 * fill(): async-signal-safe as long as fill() is (the malloc shim's forked children). */
int shmd__os_remap_private(void *base, uint64_t size, int readonly_on_fail,
                           void (*fill)(unsigned char *dst, const unsigned char *src, uint64_t size, void *arg),
                           void *arg);
/* Whether each page of [base, base + size) is resident (mincore): vec[i] & 1 for page i; vec holds
 * size / 4096 bytes. SHMD_EIO on failure. */
int shmd__os_resident(void *base, uint64_t size, unsigned char *vec);
/* Touches every page of a mapping (populate). */
void shmd__os_populate(void *addr, uint64_t size);
/* Drops the pages of [addr, addr + size) of a private mapping (the next touch reads zeros or the
 * file's bytes and allocates afresh); the range is narrowed to whole system pages. A refusal by the
 * system is ignored: the pages stay, nothing else changes. */
void shmd__os_release(void *addr, uint64_t size);
void shmd__os_close(int fd);
/* Removes file `name` of d (a symbolic link itself, never its target); SHMD_ENOENT if it did
 * not exist. */
int shmd__os_unlinkat(const struct shmd__os_dir *d, const char *name);
/* Removes the empty directory `name` of d. */
int shmd__os_rmdirat(const struct shmd__os_dir *d, const char *name);
/* Hard-links `from` to `to`, both in d, failing with SHMD_EEXIST if `to` exists (atomic
 * publication). A symbolic link `from` is linked as a link, never followed. */
int shmd__os_linkat(const struct shmd__os_dir *d, const char *from, const char *to);
/* Advisory whole-file lock on fd: exclusive or shared, blocking. */
int shmd__os_flock(int fd, int exclusive);
/* Tries to take an exclusive advisory lock on fd without waiting: 0 when taken, SHMD_EBUSY when
 * another open file (of this or another process) holds one. The kernel drops a process's lock when
 * the process dies, whatever its pid becomes: a liveness test that survives pid reuse and works
 * across pid namespaces. */
int shmd__os_trylock(int fd);
int shmd__os_funlock(int fd);
/* Calls fn(name, arg) for every entry of directory d but "." and "..", until fn returns non-zero
 * (that value is returned). */
int shmd__os_list_dirat(const struct shmd__os_dir *d, int (*fn)(const char *name, void *arg), void *arg);
/*
 * The orphan test for a file that its creator holds locked (shmd__os_trylock) for as long as it
 * lives: opens regular file `name` of d (never following a link, never blocking), and when no
 * process holds its lock, removes it. Returns 1 when removed (*st describes it), 0 when its owner
 * lives (*st describes it), or a negative status when it is no such file or is gone (nothing
 * done).
 */
int shmd__os_remove_if_unlocked(const struct shmd__os_dir *d, const char *name, struct shmd__os_stat *st);

/* Makes fd refer to what `by` refers to (atomically, for threads using fd meanwhile: they see the
 * old or the new file) and closes `by`. Cannot fail on valid fds. */
void shmd__os_replace_fd(int fd, int by);

/* The effective uid of the calling process. */
uint32_t shmd__os_euid(void);
/* The gid of group `name` (a group name, or a decimal number). SHMD_ENOENT if there is none. */
int shmd__os_group_id(const char *name, uint32_t *gid);

/* 16 random bytes (getrandom). */
void shmd__os_random(void *buf, size_t len);
/* The boot id of the running kernel (36 chars + NUL), or "" when unavailable. Test-only: when the
 * environment variable SHMDICT_TEST_BOOT_ID_FILE names a file, that file is read instead of
 * /proc/sys/kernel/random/boot_id (a missing file stands for an unreadable id). The tests use it
 * to play a reboot or a sandbox; it is not an interface for applications. */
void shmd__os_boot_id(char out[40]);
uint32_t shmd__os_pid(void);
uint32_t shmd__os_tid(void);
uint64_t shmd__os_now_ns(void);
uint64_t shmd__os_unix_time(void);
/* Wall-clock time in milliseconds since the Unix epoch (CLOCK_REALTIME): the keyspace's expiry
 * clock. Cannot fail. */
uint64_t shmd__os_unix_ms(void);
/* The same in microseconds (the keyspace's TIME command). Cannot fail. */
uint64_t shmd__os_unix_us(void);
/* Futex on a 32-bit word in shared memory: wait while *addr == val, at most timeout_ns (0 = no
 * limit); wake up to n waiters. */
void shmd__os_futex_wait(uint32_t *addr, uint32_t val, uint64_t timeout_ns);
void shmd__os_futex_wake(uint32_t *addr, int n);
void shmd__os_yield(void);

/* ---- the process ---- */
/* The value of environment variable `name`, or NULL when it is unset. The library reads only its
 * own variables (SHMDICT_DIR, the test-only SHMDICT_CRASH_POINT and SHMDICT_TEST_BOOT_ID_FILE).
 * Cannot fail. */
const char *shmd__os_getenv(const char *name);
/* Kills the calling process with SIGKILL (the test-only crash points, segments/crash.c); does not
 * return. */
void shmd__os_kill_self(void) __attribute__((noreturn));
/* Registers `child` to run in the child after every fork() (pthread_atfork). SHMD_ENOMEM when it
 * cannot be registered. */
int shmd__os_atfork_child(void (*child)(void));

/* ---- liveness of processes and threads, in the caller's pid namespace ---- */
/* 1 when process `pid` exists (signal 0 succeeds or is refused for permission), 0 when it does not
 * (or pid is 0), -1 when the system does not say. */
int shmd__os_pid_alive(uint32_t pid);
/* 1 when thread `tid` exists and belongs to process `pid` (any process when pid is 0), 0 when it
 * does not (or tid is 0), -1 when the system does not say. */
int shmd__os_thread_alive(uint32_t pid, uint32_t tid);
/* An identifier of the caller's pid namespace (the inode of /proc/self/ns/pid), 0 when unknown.
 * Pids and tids are comparable only between processes with the same non-zero identifier. */
uint64_t shmd__os_pidns(void);

#endif
