/* SPDX-License-Identifier: MIT */
/*
 * ts_rmtree(): removes a directory tree (a test's private store directory). Free of Criterion, so
 * that the plain test programs (tests/torture) share it with the Criterion suites (support.h).
 */
#ifndef SHMD_TESTS_RMTREE_H
#define SHMD_TESTS_RMTREE_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static inline void ts_rmtree(const char *path) {
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

#endif
