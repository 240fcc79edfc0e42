/* SPDX-License-Identifier: MIT */
/*
 * The RESP request parser and reply writers of shmdict-server (redis-server 7.0's networking.c:
 * processMultibulkBuffer, processInlineBuffer, sdssplitargs, and the addReply* family).
 *
 * Parsing in place
 * ----------------
 * A connection's bytes arrive in its query buffer; the parser walks them and records each
 * argument as (offset, length) in that buffer: nothing is copied, and a complete command is run
 * straight from the buffer. The state between reads (arguments still to come, the length of the
 * argument being read) is kept, so a command split over many reads is not re-parsed from its
 * start. Lengths the client claims are checked against the limits and never allocated up front:
 * the caller grows its buffer as bytes arrive (resp_need() says how far the current command will
 * need it at least), so "*2147483647" or "$536870912" costs nothing until the bytes come.
 *
 * Fidelity: the checks, their order and the error texts are Redis 7.0's, including its quirks,
 * because clients and tests match them byte for byte: header lines are found with strchr, so a
 * NUL byte before the '\r' means "no line yet"; the two bytes after a bulk argument are skipped
 * without being checked; an inline line ends at its first NUL; "*0" and "*-5" are empty commands.
 */
#include "server/resp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/util.h"

/* ---------------------------------------------------------------------------------------------- */
/* Helpers */

/* strchr(buf + from, c) within buf[from .. len): the index of c, or -1 when there is none or a NUL
 * byte comes first (the C string ends there, as in Redis's sds). */
static long find_char(const char *buf, size_t from, size_t len, char c) {
  for (size_t i = from; i < len; i++) {
    if (buf[i] == c)
      return (long)i;
    if (buf[i] == 0)
      return -1;
  }
  return -1;
}

static int grow_args(size_t **off, size_t **len, size_t *cap, size_t need) {
  if (need <= *cap)
    return 0;
  size_t n = *cap ? *cap * 2 : 16;
  while (n < need)
    n *= 2;
  size_t *o = realloc(*off, n * sizeof *o);
  if (o == NULL)
    return -1;
  *off = o;
  size_t *l = realloc(*len, n * sizeof *l);
  if (l == NULL)
    return -1;
  *len = l;
  *cap = n;
  return 0;
}

void resp_reset(resp_parser_t *p) {
  p->kind = 0;
  p->left = 0;
  p->bulk = -1;
  p->argc = 0;
}

void resp_free(resp_parser_t *p) {
  free(p->off);
  free(p->len);
  free(p->argv);
  memset(p, 0, sizeof *p);
  p->bulk = -1;
}

const char **resp_argv(resp_parser_t *p, const char *buf) {
  if (p->argc > p->argv_cap) {
    size_t n = p->argv_cap ? p->argv_cap : 16;
    while (n < p->argc)
      n *= 2;
    const char **a = realloc(p->argv, n * sizeof *a);
    if (a == NULL)
      return NULL;
    p->argv = a;
    p->argv_cap = n;
  }
  for (size_t i = 0; i < p->argc; i++)
    p->argv[i] = buf + p->off[i];
  return p->argv;
}

size_t resp_need(const resp_parser_t *p) {
  if (p->kind == 1 && p->bulk >= 0)
    return (size_t)p->bulk + 2;
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Inline commands: sdssplitargs, in place */

static int is_space(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }
static int is_hex(int c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
static int hex_val(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return c - 'A' + 10;
}

long resp_split_inline(char *line, size_t n, size_t **off, size_t **len, size_t *cap) {
  /* The line as a C string: it ends at n or at its first NUL byte. */
  size_t end = 0;
  while (end < n && line[end] != 0)
    end++;
#define AT(i) ((i) < end ? (unsigned char)line[i] : 0)
  size_t p = 0, w = 0;
  long argc = 0;
  for (;;) {
    while (AT(p) && is_space(AT(p)))
      p++;
    if (!AT(p))
      return argc;
    int inq = 0, insq = 0, done = 0;
    size_t start = w;
    while (!done) {
      int c = AT(p);
      if (inq) {
        if (c == '\\' && AT(p + 1) == 'x' && is_hex(AT(p + 2)) && is_hex(AT(p + 3))) {
          line[w++] = (char)(hex_val(AT(p + 2)) * 16 + hex_val(AT(p + 3)));
          p += 3;
        } else if (c == '\\' && AT(p + 1)) {
          p++;
          int e = AT(p);
          switch (e) {
          case 'n': e = '\n'; break;
          case 'r': e = '\r'; break;
          case 't': e = '\t'; break;
          case 'b': e = '\b'; break;
          case 'a': e = '\a'; break;
          default: break;
          }
          line[w++] = (char)e;
        } else if (c == '"') {
          if (AT(p + 1) && !is_space(AT(p + 1)))
            return -1;
          done = 1;
        } else if (!c) {
          return -1;
        } else {
          line[w++] = (char)c;
        }
      } else if (insq) {
        if (c == '\\' && AT(p + 1) == '\'') {
          p++;
          line[w++] = '\'';
        } else if (c == '\'') {
          if (AT(p + 1) && !is_space(AT(p + 1)))
            return -1;
          done = 1;
        } else if (!c) {
          return -1;
        } else {
          line[w++] = (char)c;
        }
      } else {
        switch (c) {
        case ' ': case '\n': case '\r': case '\t': case '\0':
          done = 1;
          break;
        case '"':
          inq = 1;
          break;
        case '\'':
          insq = 1;
          break;
        default:
          line[w++] = (char)c;
          break;
        }
      }
      if (AT(p))
        p++;
    }
    if (grow_args(off, len, cap, (size_t)argc + 1))
      return -2;
    (*off)[argc] = start;
    (*len)[argc] = w - start;
    argc++;
  }
#undef AT
}

/* ---------------------------------------------------------------------------------------------- */
/* The parser */

static int fail(const char **err, const char *msg) {
  *err = msg;
  return RESP_ERR;
}

static int parse_inline(resp_parser_t *p, char *buf, size_t len, size_t *pos, const char **err) {
  long nl = find_char(buf, *pos, len, '\n');
  if (nl < 0) {
    if (len - *pos > RESP_INLINE_MAX)
      return fail(err, "Protocol error: too big inline request");
    return RESP_MORE;
  }
  size_t end = (size_t)nl, skip = 1;
  if (end != *pos && buf[end - 1] == '\r')
    end--, skip++;
  long n = resp_split_inline(buf + *pos, end - *pos, &p->off, &p->len, &p->cap);
  if (n == -1)
    return fail(err, "Protocol error: unbalanced quotes in request");
  if (n < 0)
    return RESP_NOMEM;
  for (long i = 0; i < n; i++)
    p->off[i] += *pos;
  p->argc = (size_t)n;
  *pos = end + skip;
  return RESP_CMD;
}

int resp_parse(resp_parser_t *p, char *buf, size_t len, size_t *pos, const resp_limits_t *lim, const char **err,
               char *errbuf, size_t errcap) {
  if (p->kind == 0) {
    if (*pos >= len)
      return RESP_MORE;
    if (buf[*pos] != '*') {
      p->kind = 2;
    } else {
      long nl = find_char(buf, *pos, len, '\r');
      if (nl < 0) {
        if (len - *pos > RESP_INLINE_MAX)
          return fail(err, "Protocol error: too big mbulk count string");
        return RESP_MORE;
      }
      if ((size_t)nl + 2 > len) /* the '\n' (or whatever follows the '\r') has not arrived */
        return RESP_MORE;
      long long ll;
      if (shmd__kv_parse_ll(buf + *pos + 1, (size_t)nl - *pos - 1, &ll) || ll > RESP_MAX_ARGS)
        return fail(err, "Protocol error: invalid multibulk length");
      if (ll > RESP_UNAUTH_MAX_ARGS && lim->unauth)
        return fail(err, "Protocol error: unauthenticated multibulk length");
      *pos = (size_t)nl + 2;
      if (ll <= 0) { /* an empty command: skipped */
        p->argc = 0;
        return RESP_CMD;
      }
      p->kind = 1;
      p->left = ll;
      p->bulk = -1;
      p->argc = 0;
    }
  }
  if (p->kind == 2)
    return parse_inline(p, buf, len, pos, err);

  while (p->left > 0) {
    if (p->bulk < 0) {
      long nl = find_char(buf, *pos, len, '\r');
      if (nl < 0) {
        if (len - *pos > RESP_INLINE_MAX)
          return fail(err, "Protocol error: too big bulk count string");
        return RESP_MORE;
      }
      if ((size_t)nl + 2 > len)
        return RESP_MORE;
      if (buf[*pos] != '$') {
        /* Redis formats this with %c into a C string: a NUL byte ends the message there. */
        if (buf[*pos] == 0)
          snprintf(errbuf, errcap, "Protocol error: expected '$', got '");
        else
          snprintf(errbuf, errcap, "Protocol error: expected '$', got '%c'", buf[*pos]);
        *err = errbuf;
        return RESP_ERR;
      }
      long long ll;
      if (shmd__kv_parse_ll(buf + *pos + 1, (size_t)nl - *pos - 1, &ll) || ll < 0 || ll > lim->max_bulk)
        return fail(err, "Protocol error: invalid bulk length");
      if (ll > RESP_UNAUTH_MAX_BULK && lim->unauth)
        return fail(err, "Protocol error: unauthenticated bulk length");
      *pos = (size_t)nl + 2;
      p->bulk = ll;
    }
    if (len - *pos < (size_t)p->bulk + 2)
      return RESP_MORE;
    if (grow_args(&p->off, &p->len, &p->cap, p->argc + 1))
      return RESP_NOMEM;
    p->off[p->argc] = *pos;
    p->len[p->argc] = (size_t)p->bulk;
    p->argc++;
    *pos += (size_t)p->bulk + 2; /* the two bytes after the argument are not checked (Redis) */
    p->bulk = -1;
    p->left--;
  }
  return RESP_CMD;
}

/* ---------------------------------------------------------------------------------------------- */
/* The output buffer */

char *obuf_room(obuf_t *o, size_t n) {
  if (o->oom)
    return NULL;
  if (o->cap - o->len < n) {
    if (o->pos > 0 && o->pos >= o->len / 2) {
      obuf_compact(o);
      if (o->cap - o->len >= n)
        return o->buf + o->len;
    }
    size_t cap = o->cap ? o->cap : 16384;
    while (cap - o->len < n) {
      if (cap > SIZE_MAX / 2) {
        o->oom = 1;
        return NULL;
      }
      cap *= 2;
    }
    char *b = realloc(o->buf, cap);
    if (b == NULL) {
      o->oom = 1;
      return NULL;
    }
    o->buf = b;
    o->cap = cap;
  }
  return o->buf + o->len;
}

void obuf_add(obuf_t *o, const void *p, size_t n) {
  char *w = obuf_room(o, n);
  if (w == NULL)
    return;
  memcpy(w, p, n);
  o->len += n;
}

void obuf_compact(obuf_t *o) {
  if (o->pos == 0)
    return;
  if (o->pos >= o->len) {
    o->pos = o->len = 0;
    return;
  }
  memmove(o->buf, o->buf + o->pos, o->len - o->pos);
  o->len -= o->pos;
  o->pos = 0;
}

void obuf_free(obuf_t *o) {
  free(o->buf);
  memset(o, 0, sizeof *o);
}

/* ---------------------------------------------------------------------------------------------- */
/* RESP writers */

/* Writes prefix, v, "\r\n" (Redis's _addReplyLongLongWithPrefix). */
static void prefixed_ll(obuf_t *o, char prefix, long long v) {
  char *w = obuf_room(o, 24);
  if (w == NULL)
    return;
  char tmp[24];
  unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
  int n = 0;
  do {
    tmp[n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  size_t k = 0;
  w[k++] = prefix;
  if (v < 0)
    w[k++] = '-';
  while (n)
    w[k++] = tmp[--n];
  w[k++] = '\r';
  w[k++] = '\n';
  o->len += k;
}

static void line(obuf_t *o, char prefix, const char *s, size_t n) {
  char *w = obuf_room(o, n + 3);
  if (w == NULL)
    return;
  w[0] = prefix;
  memcpy(w + 1, s, n);
  w[n + 1] = '\r';
  w[n + 2] = '\n';
  o->len += n + 3;
}

void resp_status(obuf_t *o, const char *s, size_t n) { line(o, '+', s, n); }

void resp_error(obuf_t *o, const char *s, size_t n) {
  char *w = obuf_room(o, n + 3);
  if (w == NULL)
    return;
  w[0] = '-';
  for (size_t i = 0; i < n; i++)
    w[i + 1] = (s[i] == '\r' || s[i] == '\n') ? ' ' : s[i];
  w[n + 1] = '\r';
  w[n + 2] = '\n';
  o->len += n + 3;
}

void resp_errorf(obuf_t *o, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0)
    n = 0;
  if ((size_t)n >= sizeof buf)
    n = sizeof buf - 1;
  resp_error(o, buf, (size_t)n);
}

void resp_int(obuf_t *o, long long v) { prefixed_ll(o, ':', v); }

void resp_bulk(obuf_t *o, const void *p, size_t n) {
  char *w = obuf_room(o, n + 32);
  if (w == NULL)
    return;
  prefixed_ll(o, '$', (long long)n);
  w = o->buf + o->len;
  memcpy(w, p, n);
  w[n] = '\r';
  w[n + 1] = '\n';
  o->len += n + 2;
}

void resp_bulkstr(obuf_t *o, const char *s) { resp_bulk(o, s, strlen(s)); }

void resp_bulkll(obuf_t *o, long long v) {
  char b[32];
  int n = snprintf(b, sizeof b, "%lld", v);
  resp_bulk(o, b, (size_t)n);
}

void resp_null(obuf_t *o, int proto) {
  if (proto >= 3)
    obuf_add(o, "_\r\n", 3);
  else
    obuf_add(o, "$-1\r\n", 5);
}

void resp_null_array(obuf_t *o, int proto) {
  if (proto >= 3)
    obuf_add(o, "_\r\n", 3);
  else
    obuf_add(o, "*-1\r\n", 5);
}

void resp_array(obuf_t *o, long long n) { prefixed_ll(o, '*', n); }
void resp_map(obuf_t *o, int proto, long long n) {
  if (proto >= 3)
    prefixed_ll(o, '%', n);
  else
    prefixed_ll(o, '*', 2 * n);
}
void resp_set(obuf_t *o, int proto, long long n) { prefixed_ll(o, proto >= 3 ? '~' : '*', n); }
void resp_push(obuf_t *o, int proto, long long n) { prefixed_ll(o, proto >= 3 ? '>' : '*', n); }

void resp_double_str(obuf_t *o, int proto, const char *s, size_t n) {
  if (proto >= 3)
    line(o, ',', s, n);
  else
    resp_bulk(o, s, n);
}

void resp_verbatim(obuf_t *o, int proto, const char *s, size_t n) {
  if (proto < 3) {
    resp_bulk(o, s, n);
    return;
  }
  prefixed_ll(o, '=', (long long)n + 4);
  obuf_add(o, "txt:", 4);
  obuf_add(o, s, n);
  obuf_add(o, "\r\n", 2);
}

void resp_bool(obuf_t *o, int proto, int v) {
  if (proto >= 3)
    obuf_add(o, v ? "#t\r\n" : "#f\r\n", 4);
  else
    obuf_add(o, v ? ":1\r\n" : ":0\r\n", 4);
}
