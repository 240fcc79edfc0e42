/* SPDX-License-Identifier: MIT */
/*
 * Durability: the change log of a store's keyspace copied to an append-only file on disk (a valid
 * Redis 7 AOF), and the restore of a store from such a file. docs/durability.md says what each
 * failure keeps.
 *
 * A persister runs for a store, in any process attached to it (shmd_persist_run() in a thread of
 * the caller's, shmd_persist_start() in a thread of its own, or `shmdict persist`). Exactly one is
 * active per store; it passes to another process when its process dies. Its first start on a
 * store writes a base (every key, while writers wait) and turns logging on; from then on every
 * committed keyspace write is recorded in the store's change-log ring in its own transaction, and
 * the persister appends the records to DIR/appendonly.aof with the fsync policy asked for.
 */
#ifndef SHMD_PERSIST_H
#define SHMD_PERSIST_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* fsync policies, as Redis's appendfsync. */
enum {
  SHMD_AOF_FSYNC_NO = 0,       /* write(2) only: the OS flushes when it likes */
  SHMD_AOF_FSYNC_EVERYSEC = 1, /* fsync at most once a second: a power cut loses up to ~1 s */
  SHMD_AOF_FSYNC_ALWAYS = 2,   /* a write returns after the fsync of its record */
};

#define SHMD_AOF_FILE "appendonly.aof"
#define SHMD_AOF_RING_DEFAULT (UINT64_C(16) << 20)

typedef struct shmd_persist_opts_s {
  const char *dir;     /* directory of the log (made 0700 if missing); the file is SHMD_AOF_FILE */
  int fsync;           /* SHMD_AOF_FSYNC_* */
  uint64_t ring_bytes; /* size of the change-log ring when it is made (0: SHMD_AOF_RING_DEFAULT) */
  /* Called (when not NULL) with a line of news: base written, torn tail cut, ... */
  void (*note)(void *arg, const char *line);
  void *note_arg;
} shmd_persist_opts_t;

/*
 * Runs the persister of `store` in the calling thread until *stop becomes non-zero (checked every
 * few milliseconds; what was committed before is written first) or a failure. Returns SHMD_EBUSY when another live process's persister is
 * active for the store, SHMD_EIO (errno in shmd_errdetail()) when the log cannot be written,
 * SHMD_ECORRUPT for a log file whose middle is not a log, or 0 after a stop. A torn tail left by a
 * killed persister is cut (and noted). The store stays logging after it returns: records collect
 * in the ring until a persister runs again.
 */
SHMD_API int shmd_persist_run(shmd_store_t *store, const shmd_persist_opts_t *opts, volatile int *stop);

typedef struct shmd_persister_s shmd_persister_t;

/* Runs shmd_persist_run() in a new thread. The options are copied. Returns SHMD_ENOMEM or
 * SHMD_EIO when the thread cannot start. */
SHMD_API int shmd_persist_start(shmd_store_t *store, const shmd_persist_opts_t *opts, shmd_persister_t **out);

/* Stops the thread, waits for it and returns its status (what shmd_persist_run returned).
 * shmd_persist_stop(NULL) returns 0. */
SHMD_API int shmd_persist_stop(shmd_persister_t *p);

typedef struct shmd_restore_report_s {
  uint64_t commands;    /* commands applied */
  uint64_t skipped;     /* commands of records already applied (a persister hand-over) */
  uint64_t errors;      /* commands that answered an error reply (counted, not fatal) */
  uint64_t last_seq;    /* the last record's sequence number */
  uint64_t bytes;       /* bytes of the file read */
  uint64_t valid_bytes; /* bytes up to the end of the last complete record */
  int truncated;        /* 1: a torn tail (valid_bytes < bytes) was cut */
} shmd_restore_report_t;

/*
 * Replays the log file `path` (a file, or a directory holding SHMD_AOF_FILE) into `store`: the
 * commands run as they were logged, each record atomically, with expiry frozen while it runs (as
 * Redis loads an AOF). An incomplete last record (a torn tail after a power cut) is not applied and
 * reported in *rep (truncated, valid_bytes); the file is not changed. A file that is not a log,
 * or whose middle is damaged, gives SHMD_ECORRUPT with the offset in shmd_errdetail() (commands
 * before it stay applied). progress (may be NULL) is called now and then with bytes done and total.
 */
SHMD_API int shmd_restore(shmd_store_t *store, const char *path, shmd_restore_report_t *rep,
                          void (*progress)(void *arg, uint64_t done, uint64_t total), void *arg);

#ifdef __cplusplus
}
#endif
#endif /* SHMD_PERSIST_H */
