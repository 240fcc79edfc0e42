/* SPDX-License-Identifier: MIT */
/*
 * Test-only crash points. Code that has a step worth killing a process inside marks it with
 * SHMD_CRASH_POINT("module.step"). When the environment variable SHMDICT_CRASH_POINT is set to
 * "module.step" or "module.step:N" when the store is opened, the process sends itself SIGKILL the
 * N-th time (default 1st) it passes that point. A prefix ending in '*' ("alloc.*:7") counts every
 * point whose name starts with the prefix. Unarmed, a point costs one predictable branch.
 */
#ifndef SHMD_SEGMENTS_CRASH_H
#define SHMD_SEGMENTS_CRASH_H

extern int shmd__crash_armed;
void shmd__crash_hit(const char *name);
/* Reads SHMDICT_CRASH_POINT (called by shmd_open; harmless to call again). */
void shmd__crash_init(void);

#define SHMD_CRASH_POINT(name)                                                                     \
  do {                                                                                             \
    if (__builtin_expect(shmd__crash_armed, 0))                                                    \
      shmd__crash_hit(name);                                                                       \
  } while (0)

#endif
