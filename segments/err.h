/* SPDX-License-Identifier: MIT */
/* Internal: the per-thread detail message behind shmd_errdetail(), and the corruption breakpoint. */
#ifndef SHMD_SEGMENTS_ERR_H
#define SHMD_SEGMENTS_ERR_H

#include "shmdict/error.h"

/* Records a printf-style detail for the calling thread's last failure. */
void shmd__set_detail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Records "corruption at FILE:LINE: what" and returns SHMD_ECORRUPT (SQLite's CORRUPT_BKPT). */
int shmd__corrupt_at(const char *file, int line, const char *what);
#define SHMD_CORRUPT(what) shmd__corrupt_at(__FILE__, __LINE__, (what))
/* SHMD_CORRUPT() as an expression the compiler sees is a non-zero constant (SHMD_ECORRUPT), for
 * functions whose callers branch on it. */
#define SHMD_CORRUPT_RC(what) ((void)SHMD_CORRUPT(what), SHMD_ECORRUPT)
/* Evaluates the status `expr` and returns it from the calling function unless it is 0. */
#define SHMD_TRY(expr)                                                                             \
  do {                                                                                             \
    int shmd_try_rc_ = (expr);                                                                     \
    if (shmd_try_rc_ != 0)                                                                         \
      return shmd_try_rc_;                                                                         \
  } while (0)

#endif
