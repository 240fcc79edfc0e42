/* SPDX-License-Identifier: MIT */
/*
 * Internal to shmdict-server: the RESP request parser (multibulk and inline, as redis-server
 * 7.0's processMultibulkBuffer / processInlineBuffer) and the output buffer with the RESP2 / RESP3
 * encoders. Pure code: no sockets, no store, so the fuzz target (tests/fuzz/fuzz_resp.c) and the
 * unit tests drive it directly.
 */
#ifndef SHMD_SERVER_RESP_H
#define SHMD_SERVER_RESP_H

#include <stddef.h>
#include <stdint.h>

/* Redis's limits (server.h, config.c). */
#define RESP_INLINE_MAX (64 * 1024)       /* PROTO_INLINE_MAX_SIZE */
#define RESP_UNAUTH_MAX_ARGS 10           /* multibulk count of a client that must still AUTH */
#define RESP_UNAUTH_MAX_BULK 16384        /* bulk length of a client that must still AUTH */
#define RESP_MAX_ARGS 2147483647LL        /* INT_MAX: "invalid multibulk length" above */

/* ---------------------------------------------------------------------------------------------- */
/* Requests */

/*
 * Parse state of one connection: the command being read may arrive in any number of pieces. The
 * arguments are (offset, length) pairs into the caller's query buffer, never copies: a complete
 * command's arguments point into the buffer ("parse in place"). Inline commands are unquoted in
 * place (the unquoted text is never longer than the quoted). The arrays grow as arguments arrive
 * (never from a count the client claims) and are kept for the next command, so a connection in a
 * steady state allocates nothing.
 */
typedef struct resp_parser_s {
  int kind;           /* 0 between commands, 1 multibulk, 2 inline */
  long long left;     /* multibulk: arguments still to read */
  long long bulk;     /* multibulk: length of the argument being read, -1 before its header */
  size_t argc;
  size_t cap;
  size_t *off, *len;  /* argument i is buf[off[i] .. off[i] + len[i]) */
  size_t argv_cap;
  const char **argv;  /* filled by resp_argv() */
} resp_parser_t;

/* Limits the parser enforces. */
typedef struct resp_limits_s {
  long long max_bulk; /* proto-max-bulk-len (512 MiB) */
  int unauth;         /* the client must still authenticate: Redis's smaller limits apply */
} resp_limits_t;

enum { RESP_MORE = 0, RESP_CMD = 1, RESP_ERR = -1, RESP_NOMEM = -2 };

/*
 * Parses from buf[*pos .. len). Returns RESP_CMD when a whole command was read (its arguments in
 * p->argc / p->off / p->len; argc may be 0 for an empty inline line or a "*0" / "*-1" multibulk,
 * which Redis skips), RESP_MORE when more bytes are needed (*pos has advanced past what is done),
 * RESP_ERR with *err set to Redis's error text (without "ERR "; the caller replies and closes the
 * connection), RESP_NOMEM when an argument array could not grow. Inline commands are unquoted
 * in place, so buf is written. After RESP_CMD, call resp_reset() before parsing the next command.
 */
int resp_parse(resp_parser_t *p, char *buf, size_t len, size_t *pos, const resp_limits_t *lim, const char **err,
               char *errbuf, size_t errcap);

/* Forgets the current command (keeps the arrays). Cannot fail. */
void resp_reset(resp_parser_t *p);

/* Fills p->argv with pointers into buf for the current command; returns p->argv or NULL when it
 * could not grow. */
const char **resp_argv(resp_parser_t *p, const char *buf);

/* How many bytes the command in progress still needs at least (0 when unknown): the caller's
 * buffer grows towards it as bytes arrive, never beyond what arrived. */
size_t resp_need(const resp_parser_t *p);

/* Frees the arrays. Cannot fail. */
void resp_free(resp_parser_t *p);

/* Redis's sdssplitargs over line[0 .. n), in place: the arguments are stored as offsets from line
 * in off[] / len[] (grown as needed). Returns the count, or -1 for unbalanced quotes, -2 when an
 * array could not grow. */
long resp_split_inline(char *line, size_t n, size_t **off, size_t **len, size_t *cap);

/* ---------------------------------------------------------------------------------------------- */
/* Output */

/* A growable output buffer: bytes [pos, len) are still to be sent. */
typedef struct obuf_s {
  char *buf;
  size_t len, cap, pos;
  int oom; /* an append failed: the connection must be closed */
} obuf_t;

/* Makes room for n more bytes; returns a pointer to write them at (then obuf_commit), or NULL
 * (o->oom set) when memory is short. */
char *obuf_room(obuf_t *o, size_t n);
static inline void obuf_commit(obuf_t *o, size_t n) { o->len += n; }
void obuf_add(obuf_t *o, const void *p, size_t n);
/* Drops sent bytes (moves the rest to the front, or empties). Cannot fail. */
void obuf_compact(obuf_t *o);
void obuf_free(obuf_t *o);
static inline size_t obuf_pending(const obuf_t *o) { return o->len - o->pos; }

/* RESP writers (Redis's addReply* family). `proto` is 2 or 3 where the encoding differs. */
void resp_status(obuf_t *o, const char *s, size_t n);     /* +s */
void resp_error(obuf_t *o, const char *s, size_t n);      /* -s (newlines replaced by spaces) */
void resp_errorf(obuf_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void resp_int(obuf_t *o, long long v);                    /* :v */
void resp_bulk(obuf_t *o, const void *p, size_t n);       /* $n p */
void resp_bulkstr(obuf_t *o, const char *s);
void resp_bulkll(obuf_t *o, long long v);
void resp_null(obuf_t *o, int proto);                     /* $-1 / _ */
void resp_null_array(obuf_t *o, int proto);               /* *-1 / _ */
void resp_array(obuf_t *o, long long n);                  /* *n */
void resp_map(obuf_t *o, int proto, long long n);         /* *2n / %n */
void resp_set(obuf_t *o, int proto, long long n);         /* *n / ~n */
void resp_push(obuf_t *o, int proto, long long n);        /* *n / >n */
void resp_double_str(obuf_t *o, int proto, const char *s, size_t n); /* $ / , of an already printed double */
void resp_verbatim(obuf_t *o, int proto, const char *s, size_t n);   /* $ / =n txt: */
void resp_bool(obuf_t *o, int proto, int v);              /* :0/:1 / #f/#t */

#endif
