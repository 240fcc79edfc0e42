/* SPDX-License-Identifier: MIT */
/*
 * Status codes: shmd_strerror() and shmd_err_name() generated from the one table in error.h, and
 * the per-thread detail message that says which file, version or errno a failure was about.
 */
#include <stdarg.h>
#include <stdio.h>

#include "err.h"
#include "shmdict/error.h"

static _Thread_local char detail[512];

const char *shmd_strerror(int status) {
  switch (status) {
  case 0:
    return "success";
#define XX(name, msg)                                                                              \
  case SHMD_##name:                                                                                \
    return msg;
    SHMD_ERRNO_MAP(XX)
#undef XX
  default:
    return "unknown error";
  }
}

const char *shmd_err_name(int status) {
  switch (status) {
  case 0:
    return "OK";
#define XX(name, msg)                                                                              \
  case SHMD_##name:                                                                                \
    return #name;
    SHMD_ERRNO_MAP(XX)
#undef XX
  default:
    return "UNKNOWN";
  }
}

const char *shmd_errdetail(void) { return detail; }

void shmd__set_detail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
}

int shmd__corrupt_at(const char *file, int line, const char *what) {
  shmd__set_detail("corruption detected at %s:%d: %s", file, line, what);
  return SHMD_ECORRUPT;
}
