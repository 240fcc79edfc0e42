/* SPDX-License-Identifier: MIT */
/*
 * The Redis-like keyspace: numbered databases of typed values (string, hash, list, set, sorted
 * set) with Redis's command names and semantics, as typed C functions for the hot paths and as one
 * generic entry point that takes an argument vector, so the command-line tool (and later a RESP
 * server) run exactly the same code. Every command is atomic and crash-safe (one transaction).
 */
#ifndef SHMD_KV_H
#define SHMD_KV_H

#include <stddef.h>
#include <stdint.h>

#include "ptr.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reply of a command, mirroring Redis's reply types. */
typedef enum shmd_reply_type_e {
  SHMD_REPLY_STATUS = 1,  /* str: e.g. "OK" */
  SHMD_REPLY_ERROR = 2,   /* str: Redis's wording, e.g. "WRONGTYPE Operation against a key ..." */
  SHMD_REPLY_INTEGER = 3, /* integer */
  SHMD_REPLY_BULK = 4,    /* str, len (binary safe; str is NUL-terminated for convenience) */
  SHMD_REPLY_NIL = 5,
  SHMD_REPLY_ARRAY = 6,   /* elems[0 .. nelems) */
} shmd_reply_type_t;

typedef struct shmd_reply_s {
  shmd_reply_type_t type;
  int64_t integer;
  char *str;
  size_t len;
  struct shmd_reply_s *elems;
  size_t nelems;
} shmd_reply_t;

/* Frees a reply and everything it owns. shmd_reply_free(NULL) is a no-op. */
void shmd_reply_free(shmd_reply_t *reply);

/*
 * Runs one command (argv[0] is its name, case-insensitive; lens[i] the byte length of argv[i]) on
 * database `db` of `store`, and stores a newly allocated reply in *reply. Command-level failures
 * (wrong type, syntax, not an integer, unknown command) are replies of type SHMD_REPLY_ERROR with
 * Redis's wording and a return of 0. A negative status is returned (and *reply left NULL) only
 * when the command could not run at all: SHMD_ENOMEM, SHMD_ENOLANE, SHMD_ECORRUPT, ...
 */
int shmd_kv_command_db(shmd_store_t *store, unsigned db, int argc, const char *const argv[], const size_t lens[],
                       shmd_reply_t **reply);

/* shmd_kv_command_db() on database 0. */
int shmd_kv_command(shmd_store_t *store, int argc, const char *const argv[], const size_t lens[],
                    shmd_reply_t **reply);

#ifdef __cplusplus
}
#endif
#endif /* SHMD_KV_H */
