/* SPDX-License-Identifier: MIT */
/*
 * The in-process keyspace command runner of the tests, the part free of Criterion (see
 * support_kv.h): argument vectors, line splitting, running, and rendering replies.
 */
#include "tests/support_kv.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n);
  if (q == NULL) {
    fprintf(stderr, "tests: out of memory\n");
    abort();
  }
  return q;
}

void ts_args_add(ts_args_t *a, const void *word, size_t len) {
  if (a->argc == a->cap) {
    a->cap = a->cap ? 2 * a->cap : 16;
    a->argv = xrealloc(a->argv, (size_t)a->cap * sizeof *a->argv);
    a->lens = xrealloc(a->lens, (size_t)a->cap * sizeof *a->lens);
  }
  char *c = xrealloc(NULL, len + 1);
  if (len)
    memcpy(c, word, len);
  c[len] = '\0';
  a->argv[a->argc] = c;
  a->lens[a->argc++] = len;
}

void ts_args_addf(ts_args_t *a, const char *fmt, ...) {
  char b[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(b, sizeof b, fmt, ap);
  va_end(ap);
  if (n < 0)
    n = 0;
  if ((size_t)n < sizeof b) {
    ts_args_add(a, b, (size_t)n);
    return;
  }
  char *big = xrealloc(NULL, (size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  ts_args_add(a, big, (size_t)n);
  free(big);
}

int ts_args_split(ts_args_t *a, const char *line) {
  int n = 0;
  const char *p = line;
  while (*p) {
    while (*p == ' ')
      p++;
    if (!*p)
      break;
    const char *st;
    size_t len;
    if (*p == '"') {
      st = ++p;
      while (*p && *p != '"')
        p++;
      len = (size_t)(p - st);
      if (*p)
        p++;
    } else {
      st = p;
      while (*p && *p != ' ')
        p++;
      len = (size_t)(p - st);
    }
    ts_args_add(a, st, len);
    n++;
  }
  return n;
}

void ts_args_free(ts_args_t *a) {
  for (int i = 0; i < a->argc; i++)
    free(a->argv[i]);
  free(a->argv);
  free(a->lens);
  a->argc = a->cap = 0;
  a->argv = NULL;
  a->lens = NULL;
}

int ts_kv_vec(shmd_store_t *s, unsigned db, int argc, const char *const *argv, const size_t *lens,
              shmd_reply_t **out) {
  size_t own[32], *l = NULL;
  if (lens == NULL) {
    l = argc <= 32 ? own : xrealloc(NULL, (size_t)argc * sizeof *l);
    for (int i = 0; i < argc; i++)
      l[i] = strlen(argv[i]);
    lens = l;
  }
  shmd_reply_t *r = NULL;
  int rc = shmd_kv_command_db(s, db, argc, argv, lens, &r);
  if (l != NULL && l != own)
    free(l);
  if (out != NULL)
    *out = r;
  else
    shmd_reply_free(r);
  return rc;
}

int ts_kv_args(shmd_store_t *s, unsigned db, const ts_args_t *a, shmd_reply_t **out) {
  return ts_kv_vec(s, db, a->argc, (const char *const *)a->argv, a->lens, out);
}

int ts_kv_line(shmd_store_t *s, unsigned db, const char *line, shmd_reply_t **out) {
  ts_args_t a = {0};
  ts_args_split(&a, line);
  int rc = ts_kv_args(s, db, &a, out);
  ts_args_free(&a);
  return rc;
}

int ts_kv_words(shmd_store_t *s, unsigned db, shmd_reply_t **out, ...) {
  ts_args_t a = {0};
  va_list ap;
  va_start(ap, out);
  const char *w;
  while ((w = va_arg(ap, const char *)) != NULL)
    ts_args_add(&a, w, strlen(w));
  va_end(ap);
  int rc = ts_kv_args(s, db, &a, out);
  ts_args_free(&a);
  return rc;
}

int ts_kv_do(shmd_store_t *s, unsigned db, const char *line) {
  shmd_reply_t *r = NULL;
  int rc = ts_kv_line(s, db, line, &r);
  if (rc == 0 && r->type == SHMD_REPLY_ERROR)
    rc = TS_KV_EREPLY;
  shmd_reply_free(r);
  return rc;
}

static void render(const shmd_reply_t *r, char *buf, size_t cap, size_t *pos) {
  int n = 0;
  switch (r->type) {
  case SHMD_REPLY_STATUS: n = snprintf(buf + *pos, cap - *pos, "+%s", r->str); break;
  case SHMD_REPLY_ERROR: n = snprintf(buf + *pos, cap - *pos, "-%s", r->str); break;
  case SHMD_REPLY_INTEGER: n = snprintf(buf + *pos, cap - *pos, ":%lld", (long long)r->integer); break;
  case SHMD_REPLY_BULK: n = snprintf(buf + *pos, cap - *pos, "\"%.*s\"", (int)r->len, r->str); break;
  case SHMD_REPLY_NIL: n = snprintf(buf + *pos, cap - *pos, "(nil)"); break;
  case SHMD_REPLY_ARRAY:
    n = snprintf(buf + *pos, cap - *pos, "[");
    *pos += (size_t)n;
    if (*pos >= cap)
      *pos = cap - 1;
    for (size_t i = 0; i < r->nelems; i++) {
      if (i) {
        n = snprintf(buf + *pos, cap - *pos, ",");
        *pos += (size_t)n;
        if (*pos >= cap)
          *pos = cap - 1;
      }
      render(&r->elems[i], buf, cap, pos);
    }
    n = snprintf(buf + *pos, cap - *pos, "]");
    break;
  }
  *pos += (size_t)n;
  if (*pos >= cap)
    *pos = cap - 1;
}

char *ts_reply_render(const shmd_reply_t *r, char *buf, size_t cap) {
  size_t pos = 0;
  buf[0] = '\0';
  if (r == NULL)
    snprintf(buf, cap, "(no reply)");
  else
    render(r, buf, cap, &pos);
  return buf;
}
