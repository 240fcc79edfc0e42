/* SPDX-License-Identifier: MIT */
/*
 * Internal helpers of the shmdict command-line tool (never installed): redis-cli's line quoting,
 * reply formatting in redis-cli's two styles, a growable byte buffer, RESP and JSON encoding, and
 * the small parsers `load` needs to read them back.
 */
#ifndef SHMD_TOOLS_CLI_H
#define SHMD_TOOLS_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "shmdict/kv.h"

/* A growable byte buffer. Allocation failure exits the tool with a message (a CLI may). */
typedef struct cli_buf_s {
  char *data;
  size_t len, cap;
} cli_buf_t;

void cli_buf_put(cli_buf_t *b, const void *p, size_t n);
void cli_buf_puts(cli_buf_t *b, const char *s);
void cli_buf_printf(cli_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli_buf_free(cli_buf_t *b);
void *cli_xmalloc(size_t n);
void *cli_xrealloc(void *p, size_t n);

/* An argument vector owned by the caller; free with cli_args_free(). */
typedef struct cli_args_s {
  int argc, cap;
  char **argv;
  size_t *lens;
} cli_args_t;

void cli_args_push(cli_args_t *a, const char *p, size_t n);
void cli_args_free(cli_args_t *a);

/*
 * Splits one line into arguments with redis-cli's rules (sdssplitargs): words separated by
 * blanks; "double quotes" with \n \r \t \b \a \xHH and \<char> escapes; 'single quotes' with \'.
 * A closing quote must be followed by a blank or the end. Returns 0, or -1 for unbalanced quotes
 * (then *a is emptied).
 */
int cli_split_line(const char *line, size_t len, cli_args_t *a);

/* Prints a reply the way redis-cli does with output to a pipe (raw) or to a terminal (tty).
 * Error replies are not printed here (the caller sends them to stderr). */
void cli_print_raw(FILE *f, const shmd_reply_t *r);
void cli_print_tty(FILE *f, const shmd_reply_t *r);

/* Appends one RESP command (an array of bulk strings). */
void cli_resp_command(cli_buf_t *b, int argc, const char *const argv[], const size_t lens[]);

/* Appends a JSON string literal for n bytes: bytes 0x80-0xFF that are not part of valid UTF-8 are
 * written as \u0080-\u00FF, so every byte string survives a round trip through cli_json_parse. */
void cli_json_string(cli_buf_t *b, const char *p, size_t n);

/* A parsed JSON value. */
typedef enum { CJ_NULL, CJ_BOOL, CJ_NUMBER, CJ_STRING, CJ_ARRAY, CJ_OBJECT } cli_json_kind_t;
typedef struct cli_json_s {
  cli_json_kind_t kind;
  char *str; /* CJ_STRING bytes / CJ_NUMBER text (NUL-terminated) */
  size_t len;
  struct cli_json_s *items; /* CJ_ARRAY: values; CJ_OBJECT: key, value, key, value ... */
  size_t nitems;
} cli_json_t;

/* Parses one JSON value starting at *pos (leading blanks skipped) and advances *pos past it.
 * Returns 0, or -1 with a message in err. */
int cli_json_parse(const char *p, size_t n, size_t *pos, cli_json_t *out, char *err, size_t errlen);
void cli_json_free(cli_json_t *j);

/*
 * Reads one RESP command (an array of bulk strings) at *pos and advances *pos. Returns 1 with the
 * arguments in *a, 0 at the end of input, -1 on malformed input (message in err).
 */
int cli_resp_parse(const char *p, size_t n, size_t *pos, cli_args_t *a, char *err, size_t errlen);

/* The durability verbs (cli_persist.c): exit statuses as the tool's. */
int cli_persist(shmd_store_t *s, const char *name, const char *dir, const char *fsync, uint64_t ring);
int cli_restore(shmd_store_t *s, const char *name, const char *from,
                void (*progress)(void *arg, uint64_t done, uint64_t total));

#endif
