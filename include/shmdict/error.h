/* SPDX-License-Identifier: MIT */
/*
 * shmdict status codes.
 *
 * Every fallible function returns an int: 0 (SHMD_OK) on success or one of the negative SHMD_E*
 * codes below. One X-macro table generates the enum, shmd_strerror() and shmd_err_name(), so a code,
 * its name and its message can never drift apart (libuv's scheme).
 */
#ifndef SHMD_ERROR_H
#define SHMD_ERROR_H

#include "api.h"

#ifdef __cplusplus
extern "C" {
#endif

/* XX(name, message). Codes are assigned in order, starting at -1; never reorder, only append. */
#define SHMD_ERRNO_MAP(XX)                                                                         \
  XX(ENOTFOUND, "not found")                                                                       \
  XX(ENOSPC, "no space left in the store or on its file system")                                  \
  XX(EEXIST, "already exists")                                                                     \
  XX(EWRONGTYPE, "operation against a key holding the wrong kind of value")                        \
  XX(ECORRUPT, "store is corrupted")                                                               \
  XX(EVERSION, "store layout version is not supported by this library")                            \
  XX(ENOTSTORE, "not a shmdict store")                                                             \
  XX(ETRUNCATED, "segment file is truncated")                                                      \
  XX(EFOREIGN, "segment belongs to another store")                                                 \
  XX(ECHECKSUM, "segment header checksum mismatch")                                                \
  XX(EINVAL, "invalid argument")                                                                   \
  XX(ENOMEM, "out of process memory")                                                              \
  XX(EIO, "system call failed")                                                                    \
  XX(EPERM, "permission denied")                                                                   \
  XX(ENOENT, "store does not exist")                                                               \
  XX(ETXFULL, "transaction log is full")                                                           \
  XX(ETOOBIG, "size too large")                                                                    \
  XX(ENOLANE, "too many threads attached to the store")                                            \
  XX(EBUSY, "resource busy")                                                                       \
  XX(ERANGE, "value out of range")                                                                 \
  XX(ENOTINT, "value is not an integer or out of range")                                           \
  XX(ENOTFLOAT, "value is not a valid float")                                                      \
  XX(ESYNTAX, "syntax error")                                                                      \
  XX(EOVERFLOW, "increment or decrement would overflow")                                           \
  XX(ENOTSUP, "operation not supported")                                                           \
  XX(ELOOP, "symbolic link where a store directory or file was expected")                         \
  XX(EABORTED, "transaction was aborted")

typedef enum shmd_status_e {
  SHMD_OK = 0,
#define SHMD__ERR_ENUM(name, msg) SHMD__ERRIDX_##name,
  SHMD__ERRIDX_FIRST_ = 0,
  SHMD_ERRNO_MAP(SHMD__ERR_ENUM)
#undef SHMD__ERR_ENUM
  SHMD__ERRIDX_END_
} shmd_status_t;

/* The public codes are the negated indices: SHMD_ENOTFOUND == -1, SHMD_ENOSPC == -2, ... */
enum {
#define SHMD__ERR_CODE(name, msg) SHMD_##name = -(int)SHMD__ERRIDX_##name,
  SHMD_ERRNO_MAP(SHMD__ERR_CODE)
#undef SHMD__ERR_CODE
};

/* A static, human-readable message for a status code ("unknown error" for values not in the
 * table). Never returns NULL; cannot fail. */
SHMD_API const char *shmd_strerror(int status);

/* The symbolic name of a status code, e.g. "ECORRUPT" ("OK" for 0, "UNKNOWN" otherwise). Cannot
 * fail. */
SHMD_API const char *shmd_err_name(int status);

/* A more detailed description of the last failure in the calling thread: which file, which
 * versions, which errno. Valid until the thread's next shmdict call; empty when the last failing
 * call left no detail. Never returns NULL; cannot fail. */
SHMD_API const char *shmd_errdetail(void);

#ifdef __cplusplus
}
#endif
#endif /* SHMD_ERROR_H */
