/* SPDX-License-Identifier: MIT */
/*
 * The malloc shim's own system calls (shim_os.h): its private store's directory, the fork
 * hand-shake between parent and child, and dlsym. The shim's other files make none; the store's
 * mappings, files and formats belong to the library below it (docs/architecture.md).
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shim_os.h"

pid_t shim_os_getpid(void) { return getpid(); }

int shim_os_make_private_dir(char *dir, size_t cap, const char *parent) {
  snprintf(dir, cap, "%s/shmdict-malloc-XXXXXX", parent && parent[0] ? parent : "/dev/shm");
  return mkdtemp(dir) ? 0 : -1;
}

void shim_os_sweep_files(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL)
    return;
  struct dirent *e;
  char path[512];
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (unlink(path) != 0) {
      /* the store's own directory */
      DIR *sd = opendir(path);
      if (sd != NULL) {
        struct dirent *f;
        char sub[800];
        while ((f = readdir(sd)) != NULL)
          if (f->d_name[0] != '.' || (strcmp(f->d_name, ".") && strcmp(f->d_name, ".."))) {
            snprintf(sub, sizeof sub, "%s/%s", path, f->d_name);
            unlink(sub);
          }
        closedir(sd);
      }
    }
  }
  closedir(d);
}

void shim_os_remove_dirs(const char *dir) {
  char path[512];
  snprintf(path, sizeof path, "%s/m", dir);
  rmdir(path);
  rmdir(dir);
}

int shim_os_make_dirs(const char *dir) {
  char path[512];
  snprintf(path, sizeof path, "%s/m", dir);
  if (mkdir(dir, 0700) != 0 && errno != EEXIST)
    return 0;
  if (mkdir(path, 0700) != 0 && errno != EEXIST)
    return 0;
  return 1;
}

int shim_os_sync_open(int fds[2]) {
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0)
    return 0;
  fds[0] = fds[1] = -1;
  return -1;
}

void shim_os_sync_wait(int fds[2], int ms) {
  close(fds[1]);
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    clock_gettime(CLOCK_MONOTONIC, &t);
    long spent = (long)(t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
    struct pollfd p = {.fd = fds[0], .events = POLLIN};
    int r = poll(&p, 1, spent >= ms ? 0 : (int)(ms - spent));
    if (r >= 0 || errno != EINTR)
      break; /* readable (the byte, or EOF), timed out, or poll failed */
  }
  close(fds[0]);
  fds[0] = fds[1] = -1;
}

void shim_os_sync_signal(int fds[2]) {
  close(fds[0]);
  /* MSG_NOSIGNAL: a parent that gave up waiting has closed its end; no SIGPIPE for that. */
  while (send(fds[1], "", 1, MSG_NOSIGNAL) < 0 && errno == EINTR)
    ;
  close(fds[1]);
  fds[0] = fds[1] = -1;
}

void *shim_os_next(const char *name) { return dlsym(RTLD_NEXT, name); }

int shim_os_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void)) {
  return pthread_atfork(prepare, parent, child) == 0 ? 0 : -1;
}
