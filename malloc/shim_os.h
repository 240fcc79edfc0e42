/* SPDX-License-Identifier: MIT */
/*
 * The malloc shim's own system calls, all in shim_os.c: the ones that are its job as an LD_PRELOAD
 * library on top of the layers (its private store's directory, the fork hand-shake with a child,
 * finding glibc's functions). The store itself is reached only through the library (alloc_ext.h,
 * store_ext.h and the public API); see docs/architecture.md, "Where the OS is called".
 */
#ifndef SHMD_MALLOC_SHIM_OS_H
#define SHMD_MALLOC_SHIM_OS_H

#include <stddef.h>
#include <sys/types.h>

pid_t shim_os_getpid(void);
/* Creates a fresh directory PARENT/shmdict-malloc-XXXXXX (PARENT: /dev/shm when NULL or empty),
 * its path in dir[cap]. 0, or -1. */
int shim_os_make_private_dir(char *dir, size_t cap, const char *parent);
/* Unlinks every file in dir and in its subdirectories (one level): the segment files, once
 * mapped. */
void shim_os_sweep_files(const char *dir);
/* Removes dir/m and dir (empty by now). */
void shim_os_remove_dirs(const char *dir);
/* Creates dir and dir/m again (existing is fine). 1 when both are there, 0 otherwise. */
int shim_os_make_dirs(const char *dir);

/* The fork hand-shake: a socket pair (close-on-exec) the child writes one byte to once it has
 * its copy. open: 0, or -1 (fds stay -1). wait (the parent): closes the write end and waits for
 * the byte, EOF (the child died, or fork failed) or ms milliseconds, then closes the read end.
 * signal (the child; async-signal-safe): closes the read end, sends the byte, closes. */
int shim_os_sync_open(int fds[2]);
void shim_os_sync_wait(int fds[2], int ms);
void shim_os_sync_signal(int fds[2]);

/* The next definition of `name` after the shim's (dlsym(RTLD_NEXT)), or NULL. */
void *shim_os_next(const char *name);
/* pthread_atfork: 0, or -1. */
int shim_os_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void));

#endif
