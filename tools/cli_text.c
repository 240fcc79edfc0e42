/* SPDX-License-Identifier: MIT */
/*
 * Text handling for the shmdict command-line tool: redis-cli's quoting rules for command lines,
 * redis-cli's two reply styles (raw when the output is a pipe, annotated and quoted on a
 * terminal), and the two formats of `dump` and `load` — RESP, the command stream that
 * `redis-cli --pipe` accepts, and JSON, one object per key. Parsers here read untrusted files, so
 * every length is checked against the input's end.
 */
#include "tools/cli.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------- */
/* Buffers and argument vectors */

void *cli_xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (q == NULL) {
    fprintf(stderr, "shmdict: out of memory (free some memory or work on a smaller store)\n");
    exit(1);
  }
  return q;
}

void *cli_xmalloc(size_t n) { return cli_xrealloc(NULL, n); }

static void buf_reserve(cli_buf_t *b, size_t more) {
  if (b->len + more + 1 <= b->cap)
    return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + more + 1)
    cap *= 2;
  b->data = cli_xrealloc(b->data, cap);
  b->cap = cap;
}

void cli_buf_put(cli_buf_t *b, const void *p, size_t n) {
  buf_reserve(b, n);
  if (n)
    memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void cli_buf_puts(cli_buf_t *b, const char *s) { cli_buf_put(b, s, strlen(s)); }

void cli_buf_printf(cli_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  buf_reserve(b, (size_t)n);
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

void cli_buf_free(cli_buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

void cli_args_push(cli_args_t *a, const char *p, size_t n) {
  if (a->argc == a->cap) {
    a->cap = a->cap ? a->cap * 2 : 8;
    a->argv = cli_xrealloc(a->argv, (size_t)a->cap * sizeof *a->argv);
    a->lens = cli_xrealloc(a->lens, (size_t)a->cap * sizeof *a->lens);
  }
  char *s = cli_xmalloc(n + 1);
  if (n)
    memcpy(s, p, n);
  s[n] = '\0';
  a->argv[a->argc] = s;
  a->lens[a->argc] = n;
  a->argc++;
}

void cli_args_free(cli_args_t *a) {
  for (int i = 0; i < a->argc; i++)
    free(a->argv[i]);
  free(a->argv);
  free(a->lens);
  memset(a, 0, sizeof *a);
}

/* ---------------------------------------------------------------------------------------------- */
/* redis-cli's quoting (sdssplitargs) */

static int hexval(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = tolower(c);
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

int cli_split_line(const char *line, size_t len, cli_args_t *a) {
  size_t i = 0;
  cli_buf_t cur = {0};
  for (;;) {
    while (i < len && isspace((unsigned char)line[i]))
      i++;
    if (i >= len)
      break;
    int inq = 0, insq = 0, done = 0;
    cur.len = 0;
    while (!done) {
      if (inq) {
        if (i >= len)
          goto unbalanced;
        if (line[i] == '\\' && i + 3 < len && line[i + 1] == 'x' && hexval(line[i + 2]) >= 0 &&
            hexval(line[i + 3]) >= 0) {
          char c = (char)(hexval(line[i + 2]) * 16 + hexval(line[i + 3]));
          cli_buf_put(&cur, &c, 1);
          i += 3;
        } else if (line[i] == '\\' && i + 1 < len) {
          char c;
          i++;
          switch (line[i]) {
          case 'n': c = '\n'; break;
          case 'r': c = '\r'; break;
          case 't': c = '\t'; break;
          case 'b': c = '\b'; break;
          case 'a': c = '\a'; break;
          default: c = line[i]; break;
          }
          cli_buf_put(&cur, &c, 1);
        } else if (line[i] == '"') {
          if (i + 1 < len && !isspace((unsigned char)line[i + 1]))
            goto unbalanced;
          done = 1;
        } else {
          cli_buf_put(&cur, &line[i], 1);
        }
      } else if (insq) {
        if (i >= len)
          goto unbalanced;
        if (line[i] == '\\' && i + 1 < len && line[i + 1] == '\'') {
          i++;
          cli_buf_put(&cur, "'", 1);
        } else if (line[i] == '\'') {
          if (i + 1 < len && !isspace((unsigned char)line[i + 1]))
            goto unbalanced;
          done = 1;
        } else {
          cli_buf_put(&cur, &line[i], 1);
        }
      } else {
        if (i >= len) {
          done = 1;
          break;
        }
        switch (line[i]) {
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
          cli_buf_put(&cur, &line[i], 1);
          break;
        }
      }
      if (i < len)
        i++;
    }
    cli_args_push(a, cur.data ? cur.data : "", cur.len);
  }
  cli_buf_free(&cur);
  return 0;
unbalanced:
  cli_buf_free(&cur);
  cli_args_free(a);
  return -1;
}

/* ---------------------------------------------------------------------------------------------- */
/* Reply formatting */

static void print_raw_inner(FILE *f, const shmd_reply_t *r) {
  switch (r->type) {
  case SHMD_REPLY_STATUS:
  case SHMD_REPLY_ERROR:
  case SHMD_REPLY_BULK:
    fwrite(r->str, 1, r->len, f);
    break;
  case SHMD_REPLY_INTEGER:
    fprintf(f, "%lld", (long long)r->integer);
    break;
  case SHMD_REPLY_NIL:
    break;
  case SHMD_REPLY_ARRAY:
    for (size_t i = 0; i < r->nelems; i++) {
      if (i > 0)
        fputc('\n', f);
      print_raw_inner(f, &r->elems[i]);
    }
    break;
  }
}

void cli_print_raw(FILE *f, const shmd_reply_t *r) {
  print_raw_inner(f, r);
  fputc('\n', f);
}

/* sdscatrepr: a quoted, escaped string. */
static void print_repr(FILE *f, const char *s, size_t n) {
  fputc('"', f);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    switch (c) {
    case '\\': fputs("\\\\", f); break;
    case '"': fputs("\\\"", f); break;
    case '\n': fputs("\\n", f); break;
    case '\r': fputs("\\r", f); break;
    case '\t': fputs("\\t", f); break;
    case '\a': fputs("\\a", f); break;
    case '\b': fputs("\\b", f); break;
    default:
      if (isprint(c))
        fputc(c, f);
      else
        fprintf(f, "\\x%02x", c);
    }
  }
  fputc('"', f);
}

static void print_tty_inner(FILE *f, const shmd_reply_t *r, const char *prefix) {
  switch (r->type) {
  case SHMD_REPLY_ERROR:
    fputs("(error) ", f);
    fwrite(r->str, 1, r->len, f);
    fputc('\n', f);
    break;
  case SHMD_REPLY_STATUS:
    fwrite(r->str, 1, r->len, f);
    fputc('\n', f);
    break;
  case SHMD_REPLY_INTEGER:
    fprintf(f, "(integer) %lld\n", (long long)r->integer);
    break;
  case SHMD_REPLY_BULK:
    print_repr(f, r->str, r->len);
    fputc('\n', f);
    break;
  case SHMD_REPLY_NIL:
    fputs("(nil)\n", f);
    break;
  case SHMD_REPLY_ARRAY: {
    if (r->nelems == 0) {
      fputs("(empty array)\n", f);
      break;
    }
    int idxlen = 0;
    size_t i = r->nelems;
    do {
      idxlen++;
      i /= 10;
    } while (i);
    size_t plen = strlen(prefix);
    char *sub = cli_xmalloc(plen + (size_t)idxlen + 3);
    memcpy(sub, prefix, plen);
    memset(sub + plen, ' ', (size_t)idxlen + 2);
    sub[plen + (size_t)idxlen + 2] = '\0';
    for (i = 0; i < r->nelems; i++) {
      fprintf(f, "%s%*zu) ", i == 0 ? "" : prefix, idxlen, i + 1);
      print_tty_inner(f, &r->elems[i], sub);
    }
    free(sub);
    break;
  }
  }
}

void cli_print_tty(FILE *f, const shmd_reply_t *r) { print_tty_inner(f, r, ""); }

/* ---------------------------------------------------------------------------------------------- */
/* RESP */

void cli_resp_command(cli_buf_t *b, int argc, const char *const argv[], const size_t lens[]) {
  cli_buf_printf(b, "*%d\r\n", argc);
  for (int i = 0; i < argc; i++) {
    cli_buf_printf(b, "$%zu\r\n", lens[i]);
    cli_buf_put(b, argv[i], lens[i]);
    cli_buf_put(b, "\r\n", 2);
  }
}

/* Reads "<digits>\r\n" at *pos. */
static int resp_number(const char *p, size_t n, size_t *pos, long long *out) {
  size_t i = *pos;
  long long v = 0;
  int digits = 0;
  while (i < n && p[i] >= '0' && p[i] <= '9' && digits < 18) {
    v = v * 10 + (p[i] - '0');
    i++;
    digits++;
  }
  if (digits == 0 || i + 1 >= n || p[i] != '\r' || p[i + 1] != '\n')
    return -1;
  *pos = i + 2;
  *out = v;
  return 0;
}

int cli_resp_parse(const char *p, size_t n, size_t *pos, cli_args_t *a, char *err, size_t errlen) {
  size_t i = *pos;
  while (i < n && (p[i] == '\r' || p[i] == '\n'))
    i++;
  if (i >= n) {
    *pos = i;
    return 0;
  }
  long long argc;
  if (p[i] != '*') {
    snprintf(err, errlen, "expected '*' (a RESP array) at byte %zu", i);
    return -1;
  }
  i++;
  if (resp_number(p, n, &i, &argc) < 0 || argc < 1 || argc > (1 << 24)) {
    snprintf(err, errlen, "bad array length at byte %zu", i);
    return -1;
  }
  for (long long k = 0; k < argc; k++) {
    long long len;
    if (i >= n || p[i] != '$') {
      snprintf(err, errlen, "expected '$' (a bulk string) at byte %zu", i);
      goto fail;
    }
    i++;
    if (resp_number(p, n, &i, &len) < 0 || (size_t)len > n - i || n - i - (size_t)len < 2 ||
        p[i + (size_t)len] != '\r' || p[i + (size_t)len + 1] != '\n') {
      snprintf(err, errlen, "bad or truncated bulk string at byte %zu", i);
      goto fail;
    }
    cli_args_push(a, p + i, (size_t)len);
    i += (size_t)len + 2;
  }
  *pos = i;
  return 1;
fail:
  cli_args_free(a);
  return -1;
}

/* ---------------------------------------------------------------------------------------------- */
/* JSON */

/* Length of the valid UTF-8 sequence at p (n bytes available), 0 if invalid. */
static size_t utf8_len(const unsigned char *p, size_t n) {
  size_t need;
  uint32_t cp;
  if (p[0] < 0x80)
    return 1;
  if ((p[0] & 0xE0) == 0xC0) {
    need = 2;
    cp = p[0] & 0x1F;
  } else if ((p[0] & 0xF0) == 0xE0) {
    need = 3;
    cp = p[0] & 0x0F;
  } else if ((p[0] & 0xF8) == 0xF0) {
    need = 4;
    cp = p[0] & 0x07;
  } else {
    return 0;
  }
  if (need > n)
    return 0;
  for (size_t i = 1; i < need; i++) {
    if ((p[i] & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (p[i] & 0x3F);
  }
  if ((need == 2 && cp < 0x80) || (need == 3 && cp < 0x800) || (need == 4 && cp < 0x10000) ||
      cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return need;
}

void cli_json_string(cli_buf_t *b, const char *s, size_t n) {
  cli_buf_put(b, "\"", 1);
  const unsigned char *p = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    unsigned char c = p[i];
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      cli_buf_put(b, e, 2);
      i++;
    } else if (c == '\n') {
      cli_buf_puts(b, "\\n");
      i++;
    } else if (c == '\t') {
      cli_buf_puts(b, "\\t");
      i++;
    } else if (c == '\r') {
      cli_buf_puts(b, "\\r");
      i++;
    } else if (c < 0x20 || c == 0x7F) {
      cli_buf_printf(b, "\\u%04x", c);
      i++;
    } else if (c < 0x80) {
      cli_buf_put(b, &p[i], 1);
      i++;
    } else {
      /* Valid UTF-8 goes through as is; any other byte becomes \u0080..\u00ff. A valid sequence
       * never decodes to a single code point below 0x100 that we would confuse with a byte,
       * because the loader maps \u0080-\u00ff escapes (and only escapes) back to bytes. */
      size_t l = utf8_len(p + i, n - i);
      if (l) {
        cli_buf_put(b, p + i, l);
        i += l;
      } else {
        cli_buf_printf(b, "\\u%04x", c);
        i++;
      }
    }
  }
  cli_buf_put(b, "\"", 1);
}

void cli_json_free(cli_json_t *j) {
  if (j == NULL)
    return;
  free(j->str);
  for (size_t i = 0; i < j->nitems; i++)
    cli_json_free(&j->items[i]);
  free(j->items);
  memset(j, 0, sizeof *j);
}

typedef struct {
  const char *p;
  size_t n, i;
  char *err;
  size_t errlen;
  int depth;
} jparser_t;

static void jskip(jparser_t *jp) {
  while (jp->i < jp->n && isspace((unsigned char)jp->p[jp->i]))
    jp->i++;
}

static int jfail(jparser_t *jp, const char *what) {
  snprintf(jp->err, jp->errlen, "%s at byte %zu", what, jp->i);
  return -1;
}

static int jstring(jparser_t *jp, cli_buf_t *out) {
  jp->i++; /* opening quote */
  while (jp->i < jp->n) {
    unsigned char c = (unsigned char)jp->p[jp->i];
    if (c == '"') {
      jp->i++;
      return 0;
    }
    if (c != '\\') {
      cli_buf_put(out, &jp->p[jp->i], 1);
      jp->i++;
      continue;
    }
    if (jp->i + 1 >= jp->n)
      break;
    char e = jp->p[jp->i + 1];
    jp->i += 2;
    char ch;
    switch (e) {
    case 'n': ch = '\n'; break;
    case 't': ch = '\t'; break;
    case 'r': ch = '\r'; break;
    case 'b': ch = '\b'; break;
    case 'f': ch = '\f'; break;
    case '/': ch = '/'; break;
    case '\\': ch = '\\'; break;
    case '"': ch = '"'; break;
    case 'u': {
      if (jp->i + 4 > jp->n)
        return jfail(jp, "truncated \\u escape");
      uint32_t cp = 0;
      for (int k = 0; k < 4; k++) {
        int h = hexval(jp->p[jp->i + (size_t)k]);
        if (h < 0)
          return jfail(jp, "bad \\u escape");
        cp = cp * 16 + (uint32_t)h;
      }
      jp->i += 4;
      if (cp >= 0xD800 && cp <= 0xDBFF && jp->i + 6 <= jp->n && jp->p[jp->i] == '\\' &&
          jp->p[jp->i + 1] == 'u') {
        uint32_t lo = 0;
        int ok = 1;
        for (int k = 0; k < 4; k++) {
          int h = hexval(jp->p[jp->i + 2 + (size_t)k]);
          if (h < 0)
            ok = 0;
          lo = lo * 16 + (uint32_t)(h < 0 ? 0 : h);
        }
        if (ok && lo >= 0xDC00 && lo <= 0xDFFF) {
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          jp->i += 6;
        }
      }
      unsigned char u[4];
      size_t ul;
      if (cp < 0x100) { /* a byte (see cli_json_string) */
        u[0] = (unsigned char)cp;
        ul = 1;
      } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xC0 | (cp >> 6));
        u[1] = (unsigned char)(0x80 | (cp & 0x3F));
        ul = 2;
      } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xE0 | (cp >> 12));
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (unsigned char)(0x80 | (cp & 0x3F));
        ul = 3;
      } else {
        u[0] = (unsigned char)(0xF0 | (cp >> 18));
        u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (unsigned char)(0x80 | (cp & 0x3F));
        ul = 4;
      }
      cli_buf_put(out, u, ul);
      continue;
    }
    default:
      return jfail(jp, "bad escape in string");
    }
    cli_buf_put(out, &ch, 1);
  }
  return jfail(jp, "unterminated string");
}

static int jvalue(jparser_t *jp, cli_json_t *out) {
  memset(out, 0, sizeof *out);
  jskip(jp);
  if (jp->i >= jp->n)
    return jfail(jp, "unexpected end of input");
  if (++jp->depth > 64)
    return jfail(jp, "nesting too deep");
  char c = jp->p[jp->i];
  int rc = 0;
  if (c == '"') {
    cli_buf_t b = {0};
    rc = jstring(jp, &b);
    out->kind = CJ_STRING;
    out->str = b.data ? b.data : cli_xmalloc(1);
    if (!b.data)
      out->str[0] = '\0';
    out->len = b.len;
  } else if (c == '[' || c == '{') {
    int obj = c == '{';
    char close = obj ? '}' : ']';
    out->kind = obj ? CJ_OBJECT : CJ_ARRAY;
    size_t cap = 0;
    jp->i++;
    jskip(jp);
    if (jp->i < jp->n && jp->p[jp->i] == close) {
      jp->i++;
    } else {
      for (;;) {
        if (out->nitems + 2 > cap) {
          cap = cap ? cap * 2 : 8;
          out->items = cli_xrealloc(out->items, cap * sizeof *out->items);
        }
        if (obj) {
          jskip(jp);
          if (jp->i >= jp->n || jp->p[jp->i] != '"') {
            rc = jfail(jp, "expected a string key");
            break;
          }
          if ((rc = jvalue(jp, &out->items[out->nitems])) < 0) {
            out->nitems++;
            break;
          }
          out->nitems++;
          jskip(jp);
          if (jp->i >= jp->n || jp->p[jp->i] != ':') {
            rc = jfail(jp, "expected ':'");
            break;
          }
          jp->i++;
        }
        rc = jvalue(jp, &out->items[out->nitems]);
        out->nitems++;
        if (rc < 0)
          break;
        jskip(jp);
        if (jp->i < jp->n && jp->p[jp->i] == ',') {
          jp->i++;
          continue;
        }
        if (jp->i < jp->n && jp->p[jp->i] == close) {
          jp->i++;
          break;
        }
        rc = jfail(jp, obj ? "expected ',' or '}'" : "expected ',' or ']'");
        break;
      }
    }
  } else if (c == '-' || (c >= '0' && c <= '9')) {
    size_t s = jp->i;
    while (jp->i < jp->n && strchr("+-0123456789.eE", jp->p[jp->i]) != NULL)
      jp->i++;
    out->kind = CJ_NUMBER;
    out->len = jp->i - s;
    out->str = cli_xmalloc(out->len + 1);
    memcpy(out->str, jp->p + s, out->len);
    out->str[out->len] = '\0';
  } else if (jp->n - jp->i >= 4 && memcmp(jp->p + jp->i, "true", 4) == 0) {
    out->kind = CJ_BOOL;
    jp->i += 4;
  } else if (jp->n - jp->i >= 5 && memcmp(jp->p + jp->i, "false", 5) == 0) {
    out->kind = CJ_BOOL;
    jp->i += 5;
  } else if (jp->n - jp->i >= 4 && memcmp(jp->p + jp->i, "null", 4) == 0) {
    out->kind = CJ_NULL;
    jp->i += 4;
  } else {
    rc = jfail(jp, "unexpected character");
  }
  jp->depth--;
  return rc;
}

int cli_json_parse(const char *p, size_t n, size_t *pos, cli_json_t *out, char *err, size_t errlen) {
  jparser_t jp = {p, n, *pos, err, errlen, 0};
  int rc = jvalue(&jp, out);
  if (rc < 0) {
    cli_json_free(out);
    return -1;
  }
  *pos = jp.i;
  return 0;
}
