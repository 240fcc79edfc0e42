/* SPDX-License-Identifier: MIT */
/*
 * The log file's reader: RESP arrays of bulk strings and '#' annotation lines, as Redis 7's AOF
 * loader and redis-check-aof read them, walked record by record for restore and for the persister
 * that continues a file. A file is untrusted input (a torn tail after a power cut, bit flips, a
 * file that is no log at all): every length is checked against what is left and against Redis's
 * limits before anything is allocated, an item cut by the end of the file is a torn tail (not an
 * error), and anything else that is not a log is SHMD_ECORRUPT with the offset.
 *
 * The records: the persister writes each ring record as an annotation "#shmdict seq=N" followed by
 * its commands (wrapped in MULTI ... EXEC when there are several), and a base as "#shmdict base=B"
 * followed by FLUSHALL and the keys' commands. A record whose seq is not above the last one seen is
 * a duplicate written again by a persister that took over from a killed one: its commands are
 * skipped (SELECTs are still followed: they are the same in both copies).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "persist/aof_int.h"
#include "segments/err.h"
#include "shmdict/error.h"

/* ---------------------------------------------------------------------------------------------- */
/* Items */

/* Reads "<digits>\r\n" at *p (the type byte is behind): 1 ok, 0 truncated, -1 bad. */
static int read_num(const char *b, size_t n, size_t *p, uint64_t max, uint64_t *out) {
  size_t i = *p;
  uint64_t v = 0;
  size_t digits = 0;
  while (i < n && b[i] >= '0' && b[i] <= '9') {
    if (digits++ > 18)
      return -1;
    v = v * 10 + (uint64_t)(b[i] - '0');
    i++;
  }
  if (i >= n)
    return 0;
  if (digits == 0 || b[i] != '\r')
    return -1;
  if (i + 1 >= n)
    return 0;
  if (b[i + 1] != '\n' || v > max)
    return -1;
  *p = i + 2;
  *out = v;
  return 1;
}

static int bad(aof_item_t *it, const char *fmt, size_t at) {
  snprintf(it->why, sizeof it->why, fmt, (unsigned long long)at);
  return AOF_BAD;
}

int shmd__aof_next(const char *b, size_t n, size_t *pos, aof_item_t *it) {
  size_t p = *pos;
  if (p >= n)
    return AOF_EOF;
  if (b[p] == '#') {
    const char *nl = memchr(b + p, '\n', n - p);
    if (nl == NULL)
      return AOF_TRUNCATED;
    size_t e = (size_t)(nl - b);
    it->note = b + p + 1;
    it->note_len = e - p - 1 - (e > p + 1 && b[e - 1] == '\r');
    *pos = e + 1;
    return AOF_NOTE;
  }
  if (b[p] != '*')
    return bad(it, "byte at offset %llu is neither '*' nor '#'", p);
  p++;
  uint64_t argc;
  int r = read_num(b, n, &p, AOF_ARGS_MAX, &argc);
  if (r <= 0)
    return r == 0 ? AOF_TRUNCATED : bad(it, "bad argument count at offset %llu", *pos);
  if (argc == 0)
    return bad(it, "empty command at offset %llu", *pos);
  if (argc > (n - p) / 4 + 1) /* each argument takes at least "$0\r\n\r\n": cannot fit */
    return AOF_TRUNCATED;
  if (argc > it->cap) {
    size_t cap = it->cap ? it->cap : 16;
    while (cap < argc)
      cap *= 2;
    const char **av = realloc(it->argv, cap * sizeof *av);
    if (av)
      it->argv = av;
    size_t *l = av ? realloc(it->lens, cap * sizeof *l) : NULL;
    if (l)
      it->lens = l;
    if (!av || !l) {
      snprintf(it->why, sizeof it->why, "out of memory");
      return AOF_BAD;
    }
    it->cap = cap;
  }
  for (uint64_t i = 0; i < argc; i++) {
    if (p >= n)
      return AOF_TRUNCATED;
    if (b[p] != '$')
      return bad(it, "expected '$' at offset %llu", p);
    size_t at = p++;
    uint64_t len;
    r = read_num(b, n, &p, AOF_BULK_MAX, &len);
    if (r <= 0)
      return r == 0 ? AOF_TRUNCATED : bad(it, "bad bulk length at offset %llu", at);
    if (len > n - p || n - p - len < 2)
      return AOF_TRUNCATED;
    if (b[p + len] != '\r' || b[p + len + 1] != '\n')
      return bad(it, "bulk string at offset %llu does not end with CR LF", at);
    it->argv[i] = b + p;
    it->lens[i] = (size_t)len;
    p += len + 2;
  }
  it->argc = (int)argc;
  *pos = p;
  return AOF_CMD;
}

void shmd__aof_item_free(aof_item_t *it) {
  free(it->argv);
  free(it->lens);
  it->argv = NULL;
  it->lens = NULL;
  it->cap = 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* The walk */

typedef struct qcmd_s {
  int argc;
  const char **argv;
  size_t *lens;
} qcmd_t;

typedef struct queue_s {
  qcmd_t *q;
  size_t n, cap;
} queue_t;

static void queue_clear(queue_t *q) {
  for (size_t i = 0; i < q->n; i++) {
    free(q->q[i].argv);
    free(q->q[i].lens);
  }
  q->n = 0;
}

static int queue_push(queue_t *q, const aof_item_t *it) {
  if (q->n == q->cap) {
    size_t cap = q->cap ? q->cap * 2 : 16;
    qcmd_t *nq = realloc(q->q, cap * sizeof *nq);
    if (nq == NULL)
      return SHMD_ENOMEM;
    q->q = nq;
    q->cap = cap;
  }
  qcmd_t *c = &q->q[q->n];
  c->argv = malloc((size_t)it->argc * sizeof *c->argv);
  c->lens = malloc((size_t)it->argc * sizeof *c->lens);
  if (!c->argv || !c->lens) {
    free(c->argv);
    free(c->lens);
    return SHMD_ENOMEM;
  }
  memcpy(c->argv, it->argv, (size_t)it->argc * sizeof *c->argv);
  memcpy(c->lens, it->lens, (size_t)it->argc * sizeof *c->lens);
  c->argc = it->argc;
  q->n++;
  return 0;
}

static int is(const char *a, size_t n, const char *lit) { return strlen(lit) == n && strncasecmp(a, lit, n) == 0; }

/* SELECT db: 1 and *db when the command is a valid SELECT, 0 when it is no SELECT, -1 a bad one. */
static int select_of(int argc, const char *const *argv, const size_t *lens, unsigned *db) {
  if (!is(argv[0], lens[0], "SELECT"))
    return 0;
  if (argc != 2 || lens[1] == 0 || lens[1] > 2)
    return -1;
  unsigned v = 0;
  for (size_t i = 0; i < lens[1]; i++) {
    if (argv[1][i] < '0' || argv[1][i] > '9')
      return -1;
    v = v * 10 + (unsigned)(argv[1][i] - '0');
  }
  if (v >= 16)
    return -1;
  *db = v;
  return 1;
}

static int parse_note(const char *s, size_t n, const char *key, uint64_t *out) {
  size_t kl = strlen(key);
  if (n <= kl || memcmp(s, key, kl) != 0)
    return 0;
  uint64_t v = 0;
  for (size_t i = kl; i < n; i++) {
    if (s[i] < '0' || s[i] > '9' || v > UINT64_MAX / 10 - 10)
      return 0;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  *out = v;
  return 1;
}

int shmd__aof_walk(const char *buf, size_t n, aof_walk_t *w, aof_apply_fn apply, aof_batch_fn batch, void *arg,
                   void (*progress)(void *arg, uint64_t done, uint64_t total), void *parg) {
  aof_item_t it = {0};
  queue_t q = {0};
  size_t pos = 0;
  unsigned db = 0;
  int in_multi = 0, in_base = 0, skip = 0, rc = 0;
  uint64_t pend = 0, base_seq = 0;
  memset(w, 0, sizeof *w);
  for (uint64_t items = 0;; items++) {
    if (progress && (items & 4095) == 0)
      progress(parg, pos, n);
    size_t at = pos;
    int k = shmd__aof_next(buf, n, &pos, &it);
    if (k == AOF_EOF)
      break;
    if (k == AOF_TRUNCATED) {
      w->truncated = 1;
      break;
    }
    if (k == AOF_BAD) {
      if (strcmp(it.why, "out of memory") == 0)
        rc = SHMD_ENOMEM;
      else
        rc = SHMD_CORRUPT_RC("log file damaged"), shmd__set_detail("the log is damaged: %s (after %llu commands)", it.why,
                                                                   (unsigned long long)w->commands);
      break;
    }
    if (k == AOF_NOTE) {
      uint64_t v;
      if (in_multi) {
        rc = SHMD_CORRUPT_RC("annotation inside MULTI");
        shmd__set_detail("the log is damaged: an annotation inside MULTI at offset %llu", (unsigned long long)at);
        break;
      }
      /* A record counts (last_seq, valid) once its command or MULTI ... EXEC is complete; a base
       * once its end annotation is there. */
      if (!in_base && parse_note(it.note, it.note_len, "shmdict seq=", &v)) {
        skip = v <= w->last_seq;
        pend = v;
      } else if (parse_note(it.note, it.note_len, "shmdict base=", &v) && v > 0) {
        skip = 0;
        in_base = 1;
        base_seq = v;
        pend = 0;
      } else if (in_base && it.note_len == 16 && memcmp(it.note, "shmdict base-end", 16) == 0) {
        in_base = 0;
        w->saw_base = 1;
        w->last_seq = base_seq - 1;
        w->valid = pos;
      }
      continue;
    }
    if (is(it.argv[0], it.lens[0], "MULTI") && it.argc == 1) {
      if (in_multi) {
        rc = SHMD_CORRUPT_RC("nested MULTI");
        shmd__set_detail("the log is damaged: MULTI inside MULTI at offset %llu", (unsigned long long)at);
        break;
      }
      in_multi = 1;
      continue;
    }
    if (is(it.argv[0], it.lens[0], "EXEC") && it.argc == 1) {
      if (!in_multi) {
        rc = SHMD_CORRUPT_RC("EXEC without MULTI");
        shmd__set_detail("the log is damaged: EXEC without MULTI at offset %llu", (unsigned long long)at);
        break;
      }
      in_multi = 0;
      if (!skip && apply && batch && (rc = batch(arg, 1)))
        break;
      for (size_t i = 0; rc == 0 && i < q.n; i++) {
        int sel = select_of(q.q[i].argc, q.q[i].argv, q.q[i].lens, &db);
        if (sel < 0) {
          rc = SHMD_CORRUPT_RC("bad SELECT");
          shmd__set_detail("the log is damaged: a bad SELECT in the MULTI before offset %llu", (unsigned long long)pos);
        } else if (sel == 0 && skip) {
          w->skipped++;
        } else if (sel == 0) {
          w->commands++;
          if (apply)
            rc = apply(arg, db, q.q[i].argc, q.q[i].argv, q.q[i].lens);
        }
      }
      queue_clear(&q);
      if (!skip && apply && batch) {
        int rc2 = batch(arg, 0);
        if (rc == 0)
          rc = rc2;
      }
      if (rc)
        break;
      if (!in_base) {
        w->valid = pos;
        if (pend && !skip)
          w->last_seq = pend;
        pend = 0;
      }
      continue;
    }
    if (in_multi) {
      if ((rc = queue_push(&q, &it)))
        break;
      continue;
    }
    int sel = select_of(it.argc, it.argv, it.lens, &db);
    if (sel < 0) {
      rc = SHMD_CORRUPT_RC("bad SELECT");
      shmd__set_detail("the log is damaged: a bad SELECT at offset %llu", (unsigned long long)at);
      break;
    }
    if (sel == 0 && skip) {
      w->skipped++;
    } else if (sel == 0) {
      w->commands++;
      if (apply && (rc = apply(arg, db, it.argc, it.argv, it.lens)))
        break;
    }
    if (!in_base) {
      w->valid = pos;
      if (pend && !skip)
        w->last_seq = pend;
      pend = 0;
    }
  }
  if (rc == 0 && (in_multi || in_base))
    w->truncated = 1; /* a MULTI the end cut: not applied */
  if (rc == 0 && w->valid < n)
    w->truncated = 1;
  if (progress && rc == 0)
    progress(parg, n, n);
  queue_clear(&q);
  free(q.q);
  shmd__aof_item_free(&it);
  return rc;
}
