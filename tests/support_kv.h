/* SPDX-License-Identifier: MIT */
/*
 * The one runner of keyspace commands in-process for the tests: argument vectors, command lines
 * and word lists run through shmd_kv_command_db(), and the compact rendering of a reply the tests
 * compare with. The first part is free of Criterion (the torture, the threads program and the
 * damaged-store exercise of the fuzzer use it too, and children of the suites, which must not
 * assert); the second, for the Criterion suites, asserts the status (tests/support.c).
 */
#ifndef SHMD_TESTS_SUPPORT_KV_H
#define SHMD_TESTS_SUPPORT_KV_H

#include <stddef.h>

#include "shmdict.h"
#include "shmdict/kv.h"

/* ---- free of Criterion (tests/support_kv.c) ---- */

/* An argument vector that owns copies of its words: ts_args_t a = {0}; ... ts_args_free(&a). */
typedef struct {
  int argc, cap;
  char **argv;
  size_t *lens;
} ts_args_t;

/* Appends one word of `len` bytes (any bytes). */
void ts_args_add(ts_args_t *a, const void *word, size_t len);
/* Appends one word made by printf. */
void ts_args_addf(ts_args_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends the words of a command line: spaces separate them, "..." quotes (no escapes) allow spaces
 * and empty words. Returns the number of words appended. */
int ts_args_split(ts_args_t *a, const char *line);
/* Frees the words; the vector is empty (and reusable) afterwards. */
void ts_args_free(ts_args_t *a);

/* Runs a command on database db. Returns shmd_kv_command_db()'s status; the reply goes to *out
 * (the caller frees it) when out != NULL and is freed otherwise. */
int ts_kv_args(shmd_store_t *s, unsigned db, const ts_args_t *a, shmd_reply_t **out);
/* The same for argc words argv[i] of lens[i] bytes; lens NULL: C strings. */
int ts_kv_vec(shmd_store_t *s, unsigned db, int argc, const char *const *argv, const size_t *lens,
              shmd_reply_t **out);
/* The same for a command line (ts_args_split()). */
int ts_kv_line(shmd_store_t *s, unsigned db, const char *line, shmd_reply_t **out);
/* The same for the C strings after `out`, up to a NULL: ts_kv_words(s, 0, &r, "SET", k, v, NULL). */
int ts_kv_words(shmd_store_t *s, unsigned db, shmd_reply_t **out, ...);

/* Runs a command line and frees the reply: 0, the status when it is not 0, or TS_KV_EREPLY when
 * the reply is an error. */
#define TS_KV_EREPLY (-1000)
int ts_kv_do(shmd_store_t *s, unsigned db, const char *line);

/* Renders a reply compactly into buf (cut at cap - 1 bytes): status +OK, error -ERR..., integer
 * :n, bulk "x", nil (nil), arrays [a,b]. Returns buf. */
char *ts_reply_render(const shmd_reply_t *r, char *buf, size_t cap);

/* ---- for the Criterion suites (tests/support.c): a status other than 0 fails the test ---- */

/* Runs a command line on database db; returns the reply (the caller frees it). */
shmd_reply_t *ts_kv(shmd_store_t *s, unsigned db, const char *line);
/* The same for a line made by printf. */
shmd_reply_t *ts_kvf(shmd_store_t *s, unsigned db, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Runs argc C-string words; an error reply fails the test too unless allow_error. */
shmd_reply_t *ts_kv_strs(shmd_store_t *s, unsigned db, int allow_error, int argc, const char *const *argv);
/* TS_KV(s, db, "HGET", "h", "f"): a command that must succeed (no error reply); its reply.
 * TS_KV_INT(...): the same, and the reply must be an integer: its value. */
#define TS_KV(s, db, ...)                                                                          \
  ts_kv_strs((s), (db), 0, (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)),   \
             (const char *[]){__VA_ARGS__})
#define TS_KV_INT(s, db, ...)                                                                      \
  ts_kv_int(TS_KV((s), (db), __VA_ARGS__))
/* The integer of an integer reply (freed); another reply fails the test. */
long long ts_kv_int(shmd_reply_t *r);

/* The rendering of r (ts_reply_render), in a buffer that the next call reuses. */
const char *ts_show(const shmd_reply_t *r);
/* The same for an array of bulks, sorted (sets and hash orders): [a,b,c]. */
const char *ts_show_sorted(const shmd_reply_t *r);

/* Runs `line` on database 0 of s and expects the rendered reply `want` (cr_expect: the test goes
 * on). TS_EXPECT_SET compares the sorted rendering. */
#define TS_EXPECT(s, line, want)                                                                   \
  do {                                                                                             \
    shmd_reply_t *r_ = ts_kv((s), 0, (line));                                                      \
    cr_expect_str_eq(ts_show(r_), (want), "%s -> %s", (line), ts_show(r_));                        \
    shmd_reply_free(r_);                                                                           \
  } while (0)
#define TS_EXPECT_SET(s, line, want)                                                               \
  do {                                                                                             \
    shmd_reply_t *r_ = ts_kv((s), 0, (line));                                                      \
    cr_expect_str_eq(ts_show_sorted(r_), (want), "%s -> %s", (line), ts_show_sorted(r_));          \
    shmd_reply_free(r_);                                                                           \
  } while (0)

#endif
