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

/* Creates directory `path` (mode 0700 | group/other bits of `mode`) if it does not exist; also
 * its parent, one level (for $SHMDICT_DIR itself). A symlink at `path` gives SHMD_ELOOP. */
int shmd__os_mkdir(const char *path, uint32_t mode);
/* Creates a new regular file exclusively (O_CREAT|O_EXCL|O_NOFOLLOW), mode `mode`, and reserves
 * `size` bytes of storage for it (posix_fallocate), so that a full file system answers now with
 * SHMD_ENOSPC instead of SIGBUS later. On failure the file is removed. Returns the fd in *fd. */
int shmd__os_create(const char *path, uint32_t mode, uint64_t size, int *fd);
/* Creates a new, empty regular file exclusively (as shmd__os_create) without reserving storage;
 * shmd__os_reserve() then reserves it piece by piece. Returns the fd in *fd. */
int shmd__os_create_empty(const char *path, uint32_t mode, int *fd);
/* Reserves (posix_fallocate) bytes [off, off + len) of the file, extending it as needed. Returns
 * SHMD_ENOSPC (or the errno's code, e.g. EFBIG under RLIMIT_FSIZE) when they cannot be backed;
 * SHMD_EINVAL on file systems without fallocate (no reservation is possible there). */
int shmd__os_reserve(int fd, uint64_t off, uint64_t len);
/* Opens an existing file read-write without following symlinks. SHMD_ENOENT if missing. */
int shmd__os_open(const char *path, int *fd);
/* The file's size in bytes. */
int shmd__os_file_size(int fd, uint64_t *size);
/* Maps `size` bytes of `fd` shared, read-write. */
int shmd__os_map(int fd, uint64_t size, void **out);
/* Set only by the malloc shim (malloc/), on the calling thread, around its calls into its own
 * per-process store (so other stores of the program are not affected). private_maps: map segments
 * MAP_PRIVATE (the store behaves like anonymous memory: copy-on-write across fork; no other
 * process can share it). sparse_files: do not reserve file storage (ftruncate only). */
extern _Thread_local int shmd__os_private_maps;
extern _Thread_local int shmd__os_sparse_files;
void shmd__os_unmap(void *addr, uint64_t size);
/* Touches every page of a mapping (populate). */
void shmd__os_populate(void *addr, uint64_t size);
/* Drops the pages of [addr, addr + size) of a private mapping (the next touch reads zeros or the
 * file's bytes and allocates afresh); the range is narrowed to whole system pages. A refusal by the
 * system is ignored: the pages stay, nothing else changes. */
void shmd__os_release(void *addr, uint64_t size);
void shmd__os_close(int fd);
/* Removes a file; SHMD_ENOENT if it did not exist. */
int shmd__os_unlink(const char *path);
int shmd__os_rmdir(const char *path);
/* Hard-links `from` to `to`, failing with SHMD_EEXIST if `to` exists (atomic publication). */
int shmd__os_link(const char *from, const char *to);
/* Advisory whole-file lock on fd: exclusive or shared, blocking. */
int shmd__os_flock(int fd, int exclusive);
int shmd__os_funlock(int fd);
/* Lists the regular files and symlinks of a directory, calling fn(name, arg) for each. */
int shmd__os_list_dir(const char *path, int (*fn)(const char *name, void *arg), void *arg);
/* Is `path` an existing directory (not followed if a symlink)? */
int shmd__os_is_dir(const char *path);

/* 16 random bytes (getrandom). */
void shmd__os_random(void *buf, size_t len);
/* The boot id of the running kernel (36 chars + NUL), or "" when unavailable. */
void shmd__os_boot_id(char out[40]);
uint32_t shmd__os_pid(void);
uint32_t shmd__os_tid(void);
uint64_t shmd__os_now_ns(void);
uint64_t shmd__os_unix_time(void);
/* Wall-clock time in milliseconds since the Unix epoch (CLOCK_REALTIME): the keyspace's expiry
 * clock. Cannot fail. */
uint64_t shmd__os_unix_ms(void);
/* Futex on a 32-bit word in shared memory: wait while *addr == val, at most timeout_ns (0 = no
 * limit); wake up to n waiters. */
void shmd__os_futex_wait(uint32_t *addr, uint32_t val, uint64_t timeout_ns);
void shmd__os_futex_wake(uint32_t *addr, int n);
void shmd__os_yield(void);

#endif
