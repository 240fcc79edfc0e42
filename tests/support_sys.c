/* SPDX-License-Identifier: MIT */
/*
 * Criterion-free helpers of the tests (see support_sys.h): processes, crash points, the seed, the
 * clock and the directory remover. Linked into every suite and into the plain test programs.
 */
#include "tests/support_sys.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "segments/crash.h"

uint64_t ts_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t ts_now_us(void) { return ts_now_ns() / 1000u; }

void ts_sleep_us(uint64_t us) {
  struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

pid_t ts_fork(void) {
  pid_t parent = getpid();
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0 && (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent))
    _exit(99); /* the parent is gone already */
  return pid;
}

pid_t ts_fork_detached(void) {
  fflush(NULL);
  return fork();
}

int ts_status(int wstatus) {
  if (WIFSIGNALED(wstatus))
    return 128 + WTERMSIG(wstatus);
  return WEXITSTATUS(wstatus);
}

int ts_reap(pid_t pid, int *status) {
  int st = 0;
  pid_t r;
  while ((r = waitpid(pid, &st, WNOHANG)) < 0 && errno == EINTR)
    ;
  if (r < 0)
    return -1;
  if (r == 0)
    return 0;
  *status = ts_status(st);
  return 1;
}

int ts_wait_for(pid_t pid, long timeout_ms) {
  int st = 0;
  if (timeout_ms < 0) {
    while (waitpid(pid, &st, 0) < 0)
      if (errno != EINTR)
        return -1;
    return ts_status(st);
  }
  uint64_t end = ts_now_us() + (uint64_t)timeout_ms * 1000u, nap = 50;
  for (;;) {
    int r = ts_reap(pid, &st);
    if (r != 0)
      return r < 0 ? -1 : st;
    if (ts_now_us() >= end) {
      ts_kill_wait(pid);
      return TS_HUNG;
    }
    ts_sleep_us(nap);
    if (nap < 5000)
      nap *= 2;
  }
}

int ts_kill_wait(pid_t pid) {
  kill(pid, SIGKILL);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR)
      return -1;
  return ts_status(st);
}

uint64_t ts_rss_bytes(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
  FILE *f = fopen(path, "r");
  unsigned long long size = 0, resident = 0;
  if (f) {
    if (fscanf(f, "%llu %llu", &size, &resident) != 2)
      resident = 0;
    fclose(f);
  }
  return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

int ts_write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

void ts_crash_point_set(const char *point) {
  if (point != NULL)
    setenv("SHMDICT_CRASH_POINT", point, 1);
  else
    unsetenv("SHMDICT_CRASH_POINT");
}

void ts_crash_point_arm(const char *point) {
  ts_crash_point_set(point);
  shmd__crash_init();
}

uint64_t ts_seed_value(void) {
  const char *env = getenv("SHMDICT_TEST_SEED");
  if (env != NULL && *env != '\0')
    return strtoull(env, NULL, 0);
  return (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
}

void ts_rmtree(const char *path) {
  DIR *d = opendir(path);
  if (d == NULL) {
    unlink(path);
    return;
  }
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    char sub[1024];
    if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= (int)sizeof sub)
      continue; /* longer than any path the tests make */
    struct stat st;
    if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
      ts_rmtree(sub);
    else
      unlink(sub);
  }
  closedir(d);
  rmdir(path);
}
