/* SPDX-License-Identifier: MIT */
/*
 * Internal to persist/: the log file's reader (aof_parse.c), shared by the persister (which scans
 * the file it continues, to cut a torn tail and find the last record) and restore.
 */
#ifndef SHMD_PERSIST_AOF_INT_H
#define SHMD_PERSIST_AOF_INT_H

#include <stddef.h>
#include <stdint.h>

#include "shmdict/persist.h"

/* Longest bulk argument accepted (Redis's proto-max-bulk-len) and most arguments per command. */
#define AOF_BULK_MAX (UINT64_C(512) << 20)
#define AOF_ARGS_MAX (UINT64_C(1) << 24)

enum { AOF_EOF = 0, AOF_CMD = 1, AOF_NOTE = 2, AOF_TRUNCATED = -1, AOF_BAD = -2 };

typedef struct aof_item_s {
  int argc;
  const char **argv; /* into the buffer; owned by the reader (grown as needed) */
  size_t *lens;
  size_t cap;
  const char *note; /* AOF_NOTE: the line after '#', without CR LF */
  size_t note_len;
  char why[160];    /* AOF_BAD: what is wrong */
} aof_item_t;

/* Reads the item at *pos of buf[0 .. n): a RESP array of bulk strings (AOF_CMD), an annotation line
 * starting with '#' (AOF_NOTE), the end (AOF_EOF), an item cut by the end (AOF_TRUNCATED) or bytes
 * that are no log (AOF_BAD, why says what). *pos moves past a complete item only. AOF_BAD with
 * it->why "out of memory" when the argument arrays cannot grow. */
int shmd__aof_next(const char *buf, size_t n, size_t *pos, aof_item_t *it);
void shmd__aof_item_free(aof_item_t *it);

/* A log walked to its end, as restore and the persister see it. The callback gets each command to
 * apply (db is the SELECTed database; in_multi tells a command between MULTI and EXEC, which comes
 * with first = 1 on the first of a batch and is applied at EXEC), and returns 0 or a negative
 * status that stops the walk. */
typedef struct aof_walk_s {
  uint64_t last_seq;    /* the last record's sequence number (after a base: base - 1 at least) */
  uint64_t valid;       /* end of the last complete item outside MULTI */
  uint64_t commands, skipped;
  int truncated;
  int saw_base;
} aof_walk_t;

typedef int (*aof_apply_fn)(void *arg, unsigned db, int argc, const char *const *argv, const size_t *lens);
typedef int (*aof_batch_fn)(void *arg, int begin); /* MULTI (begin 1) and EXEC (begin 0) of a batch applied */

/* Walks buf; apply may be NULL (a scan). Returns 0 (a torn tail is w->truncated, not an error),
 * SHMD_ECORRUPT with the offset in shmd_errdetail(), or what apply / batch returned. */
int shmd__aof_walk(const char *buf, size_t n, aof_walk_t *w, aof_apply_fn apply, aof_batch_fn batch, void *arg,
                   void (*progress)(void *arg, uint64_t done, uint64_t total), void *parg);

#endif
