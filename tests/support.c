/* SPDX-License-Identifier: MIT */
/*
 * The Criterion side of the test support (support.h): the test's private directory, and the
 * keyspace command helpers that fail the test on a status (support_kv.h, second part).
 */
#include "tests/support.h"

#include <stdarg.h>

char ts_dir[256];

shmd_reply_t *ts_kv(shmd_store_t *s, unsigned db, const char *line) {
  shmd_reply_t *r = NULL;
  int rc = ts_kv_line(s, db, line, &r);
  cr_assert_eq(rc, 0, "%s: %s (%s)", line, shmd_strerror(rc), shmd_errdetail());
  return r;
}

shmd_reply_t *ts_kvf(shmd_store_t *s, unsigned db, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  cr_assert_geq(n, 0);
  char *line = malloc((size_t)n + 1);
  cr_assert_not_null(line);
  va_start(ap, fmt);
  vsnprintf(line, (size_t)n + 1, fmt, ap);
  va_end(ap);
  shmd_reply_t *r = ts_kv(s, db, line);
  free(line);
  return r;
}

shmd_reply_t *ts_kv_strs(shmd_store_t *s, unsigned db, int allow_error, int argc, const char *const *argv) {
  shmd_reply_t *r = NULL;
  int rc = ts_kv_vec(s, db, argc, argv, NULL, &r);
  cr_assert_eq(rc, 0, "%s %s: %s (%s)", argv[0], argc > 1 ? argv[1] : "", shmd_err_name(rc), shmd_errdetail());
  cr_assert(allow_error || r->type != SHMD_REPLY_ERROR, "%s %s: %s", argv[0], argc > 1 ? argv[1] : "", r->str);
  return r;
}

long long ts_kv_int(shmd_reply_t *r) {
  cr_assert_eq(r->type, SHMD_REPLY_INTEGER, "reply %s, not an integer", ts_show(r));
  long long v = r->integer;
  shmd_reply_free(r);
  return v;
}

const char *ts_show(const shmd_reply_t *r) {
  static char buf[65536];
  return ts_reply_render(r, buf, sizeof buf);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

const char *ts_show_sorted(const shmd_reply_t *r) {
  static char buf[65536];
  cr_assert_eq(r->type, SHMD_REPLY_ARRAY, "reply %s, not an array", ts_show(r));
  char **v = calloc(r->nelems + 1, sizeof *v);
  cr_assert_not_null(v);
  for (size_t i = 0; i < r->nelems; i++)
    v[i] = r->elems[i].str;
  qsort(v, r->nelems, sizeof *v, cmp_str);
  size_t pos = (size_t)snprintf(buf, sizeof buf, "[");
  for (size_t i = 0; i < r->nelems && pos < sizeof buf; i++)
    pos += (size_t)snprintf(buf + pos, sizeof buf - pos, "%s%s", i ? "," : "", v[i]);
  if (pos < sizeof buf)
    snprintf(buf + pos, sizeof buf - pos, "]");
  free(v);
  return buf;
}
