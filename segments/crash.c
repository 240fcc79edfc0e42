/* SPDX-License-Identifier: MIT */
/*
 * Test-only crash points (see crash.h). The library never kills a process unless the environment
 * asks for it: this exists so that crash tests can stop a process at an exact step of an
 * operation, in addition to SIGKILLs at random moments.
 */
#include "crash.h"

#include <stdlib.h>
#include <string.h>

#include "os.h"

int shmd__crash_armed;
static char crash_name[128];
static size_t crash_prefix_len; /* > 0: match names starting with crash_name[0..len) */
static long crash_left;

void shmd__crash_init(void) {
  const char *env = shmd__os_getenv("SHMDICT_CRASH_POINT");
  if (env == NULL || env[0] == '\0' || shmd__crash_armed)
    return;
  const char *colon = strchr(env, ':');
  size_t n = colon ? (size_t)(colon - env) : strlen(env);
  if (n == 0 || n >= sizeof(crash_name))
    return;
  memcpy(crash_name, env, n);
  crash_name[n] = '\0';
  crash_prefix_len = 0;
  if (crash_name[n - 1] == '*') {
    crash_name[n - 1] = '\0';
    crash_prefix_len = n - 1;
  }
  crash_left = colon ? strtol(colon + 1, NULL, 10) : 1;
  if (crash_left < 1)
    crash_left = 1;
  shmd__crash_armed = 1;
}

void shmd__crash_hit(const char *name) {
  int match = crash_prefix_len ? strncmp(name, crash_name, crash_prefix_len) == 0
                               : strcmp(name, crash_name) == 0;
  if (match && __atomic_sub_fetch(&crash_left, 1, __ATOMIC_SEQ_CST) == 0)
    shmd__os_kill_self();
}
