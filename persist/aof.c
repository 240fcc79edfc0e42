/* SPDX-License-Identifier: MIT */
/*
 * The persister and restore (include/shmdict/persist.h): the change-log ring of kv/changelog.c
 * copied to DIR/appendonly.aof, a file redis-check-aof and redis-server accept, and replayed into
 * a store. This layer sits above kv/ (it runs keyspace commands to write a base and to replay) and
 * is the only one that writes log files: like tools/, it calls open/write/fsync itself rather than
 * through segments/os.h, whose boundary is the store's own files.
 *
 * The persister
 * -------------
 * One per store: it claims the ring's persister_pid word with a compare-and-swap, taking it over
 * from a pid that is no longer alive (so the role passes on when its process dies). It reads the
 * log file it continues (persist/aof_parse.c): a torn tail a killed persister left is cut, and the
 * last record's sequence number found. Then:
 *   - a base when the store is not logging yet (first start, or a store restored or made anew) or
 *     when the ring lost records the file does not hold: in one transaction that holds the ring
 *     lock and every stripe (writers wait), logging is turned on, "#shmdict base=B", FLUSHALL and
 *     every key's commands are written, the file is fsynced, and the ring's tail jumps to head (the
 *     records before B are in the base). B is the next record's sequence number;
 *   - then a loop: read head under the ring lock (so only committed records are seen), write the
 *     records [tail, head) as "#shmdict seq=N" + commands (MULTI ... EXEC for several, SELECT when
 *     the database changes), skipping those with seq <= the file's last (a killed predecessor wrote
 *     them already), fsync by the policy, then publish tail / durable_seq and wake the writers that
 *     wait (policy always).
 * A persister killed anywhere leaves: records in the file but not consumed (its successor skips
 * them by seq), or a torn tail (cut by its successor), never a lost record.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kv/changelog.h"
#include "persist/aof_int.h"
#include "segments/err.h"
#include "segments/os.h"
#include "shmdict/tx.h"

int shmd__kv_lock_all(shmd_store_t *s, shmd_tx_t *tx); /* kv/keyspace.c */

/* ---------------------------------------------------------------------------------------------- */
/* Output buffer and file */

typedef struct out_s {
  char *b;
  size_t n, cap;
  int fail;
} out_t;

static void o_put(out_t *o, const void *p, size_t n) {
  if (o->fail)
    return;
  if (o->n + n > o->cap) {
    size_t cap = o->cap ? o->cap : 65536;
    while (cap < o->n + n)
      cap *= 2;
    char *nb = realloc(o->b, cap);
    if (!nb) {
      o->fail = 1;
      return;
    }
    o->b = nb;
    o->cap = cap;
  }
  memcpy(o->b + o->n, p, n);
  o->n += n;
}

static void o_fmt(out_t *o, const char *fmt, unsigned long long v) {
  char t[64];
  int k = snprintf(t, sizeof t, fmt, v);
  o_put(o, t, (size_t)k);
}

static void o_bulk(out_t *o, const void *p, size_t n) {
  o_fmt(o, "$%llu\r\n", n);
  o_put(o, p, n);
  o_put(o, "\r\n", 2);
}

static void o_cmd(out_t *o, int argc, const char *const *argv, const size_t *lens) {
  o_fmt(o, "*%llu\r\n", (unsigned long long)argc);
  for (int i = 0; i < argc; i++)
    o_bulk(o, argv[i], lens[i]);
}

static void o_word(out_t *o, const char *w) { o_cmd(o, 1, &w, &(size_t){strlen(w)}); }

static int io_fail(const char *what, const char *path) {
  shmd__set_detail("%s %s: %s", what, path, strerror(errno));
  return SHMD_EIO;
}

static int write_all(int fd, const char *p, size_t n, const char *path) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return io_fail("cannot write", path);
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int read_file(int fd, const char *path, char **out, size_t *len) {
  struct stat st;
  if (fstat(fd, &st))
    return io_fail("cannot stat", path);
  size_t n = (size_t)st.st_size, got = 0;
  char *b = malloc(n ? n : 1);
  if (!b)
    return SHMD_ENOMEM;
  while (got < n) {
    ssize_t r = pread(fd, b + got, n - got, (off_t)got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      free(b);
      return io_fail("cannot read", path);
    }
    if (r == 0)
      break;
    got += (size_t)r;
  }
  *out = b;
  *len = got;
  return 0;
}

static uint64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------------------------------------- */
/* The base */

/* Runs a read command in the base's transaction (joined: its locks are held already). */
static int q(shmd_store_t *s, unsigned db, shmd_reply_t **r, int argc, const char **argv) {
  size_t lens[8];
  for (int i = 0; i < argc; i++)
    lens[i] = strlen(argv[i]);
  return shmd_kv_command_db(s, db, argc, argv, lens, r);
}

/* Writes elems[from ..) of an array reply as `cmd key e...` commands of at most 512 elements,
 * `pairs` elements at a time (2 for HSET / ZADD; ZADD takes them as score member: `swap`). */
static void batches(out_t *o, const char *cmd, const char *key, size_t klen, const shmd_reply_t *r, int pairs, int swap) {
  size_t per = 512 / (size_t)pairs * (size_t)pairs;
  for (size_t i = 0; i < r->nelems; i += per) {
    size_t k = r->nelems - i < per ? r->nelems - i : per;
    o_fmt(o, "*%llu\r\n", 2 + k);
    o_bulk(o, cmd, strlen(cmd));
    o_bulk(o, key, klen);
    for (size_t j = 0; j < k; j += (size_t)pairs) {
      const shmd_reply_t *e = &r->elems[i + j];
      if (pairs == 2 && swap) {
        o_bulk(o, e[1].str, e[1].len);
        o_bulk(o, e[0].str, e[0].len);
      } else {
        for (int m = 0; m < pairs; m++)
          o_bulk(o, e[m].str, e[m].len);
      }
    }
  }
}

static int dump_key(shmd_store_t *s, unsigned db, const char *key, size_t klen, out_t *o) {
  size_t tl[2] = {4, klen};
  const char *ta[2] = {"TYPE", key};
  shmd_reply_t *t = NULL, *v = NULL, *e = NULL;
  int rc = shmd_kv_command_db(s, db, 2, ta, tl, &t);
  if (rc)
    return rc;
  const char *type = t->type == SHMD_REPLY_STATUS ? t->str : "none";
  const char *rd = NULL;
  if (strcmp(type, "string") == 0)
    rd = "GET";
  else if (strcmp(type, "list") == 0)
    rd = "LRANGE";
  else if (strcmp(type, "hash") == 0)
    rd = "HGETALL";
  else if (strcmp(type, "set") == 0)
    rd = "SMEMBERS";
  else if (strcmp(type, "zset") == 0)
    rd = "ZRANGE";
  if (rd == NULL) {
    shmd_reply_free(t);
    return 0; /* gone meanwhile (cannot happen under the locks) */
  }
  const char *ra[5] = {rd, key, "0", "-1", "WITHSCORES"};
  size_t rl[5] = {strlen(rd), klen, 1, 2, 10};
  int ra_n = rd[0] == 'L' ? 4 : rd[0] == 'Z' ? 5 : 2;
  if ((rc = shmd_kv_command_db(s, db, ra_n, ra, rl, &v)))
    goto out;
  if (v->type == SHMD_REPLY_BULK) {
    const char *av[3] = {"SET", key, v->str};
    size_t al[3] = {3, klen, v->len};
    o_cmd(o, 3, av, al);
  } else if (v->type == SHMD_REPLY_ARRAY && v->nelems) {
    if (rd[0] == 'L')
      batches(o, "RPUSH", key, klen, v, 1, 0);
    else if (rd[0] == 'H')
      batches(o, "HSET", key, klen, v, 2, 0);
    else if (rd[0] == 'S')
      batches(o, "SADD", key, klen, v, 1, 0);
    else
      batches(o, "ZADD", key, klen, v, 2, 1);
  }
  const char *ea[2] = {"PEXPIRETIME", key};
  size_t el[2] = {11, klen};
  if ((rc = shmd_kv_command_db(s, db, 2, ea, el, &e)))
    goto out;
  if (e->type == SHMD_REPLY_INTEGER && e->integer > 0) {
    char ms[32];
    int n = snprintf(ms, sizeof ms, "%lld", (long long)e->integer);
    const char *av[3] = {"PEXPIREAT", key, ms};
    size_t al[3] = {9, klen, (size_t)n};
    o_cmd(o, 3, av, al);
  }
out:
  shmd_reply_free(t);
  shmd_reply_free(v);
  shmd_reply_free(e);
  return rc;
}

/* Writes every key of every database to o as commands (the base's body). */
static int dump_all(shmd_store_t *s, out_t *o, uint64_t *keys) {
  for (unsigned db = 0; db < SHMD_KV_DATABASES; db++) {
    char cur[32] = "0";
    int selected = 0;
    do {
      shmd_reply_t *r = NULL;
      const char *av[4] = {"SCAN", cur, "COUNT", "1000"};
      int rc = q(s, db, &r, 4, av);
      if (rc)
        return rc;
      if (r->type != SHMD_REPLY_ARRAY || r->nelems != 2 || r->elems[0].type != SHMD_REPLY_BULK) {
        shmd_reply_free(r);
        return SHMD_CORRUPT_RC("SCAN reply of an unexpected shape");
      }
      snprintf(cur, sizeof cur, "%.*s", (int)r->elems[0].len, r->elems[0].str);
      const shmd_reply_t *ks = &r->elems[1];
      for (size_t i = 0; rc == 0 && i < ks->nelems; i++) {
        if (!selected) {
          char d[4];
          int n = snprintf(d, sizeof d, "%u", db);
          const char *sv[2] = {"SELECT", d};
          size_t sl[2] = {6, (size_t)n};
          o_cmd(o, 2, sv, sl);
          selected = 1;
        }
        rc = dump_key(s, db, ks->elems[i].str, ks->elems[i].len, o);
        ++*keys;
      }
      shmd_reply_free(r);
      if (rc)
        return rc;
      if (o->fail)
        return SHMD_ENOMEM;
    } while (strcmp(cur, "0") != 0);
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* The persister */

typedef struct pers_s {
  shmd_store_t *s;
  shmd__aof_t *a;
  int fd;
  int policy;
  char path[4096];
  uint64_t last_seq; /* the file holds every record up to here */
  int cur_db;        /* the SELECTed database at the file's end, -1 unknown */
  const shmd_persist_opts_t *opts;
} pers_t;

static void note(pers_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(pers_t *p, const char *fmt, ...) {
  if (!p->opts->note)
    return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  p->opts->note(p->opts->note_arg, line);
}

static int do_fsync(pers_t *p) { return fdatasync(p->fd) ? io_fail("cannot fsync", p->path) : 0; }

/* Publishes the persister's progress and wakes the writers that wait for it. */
static void publish(shmd__aof_t *a, uint64_t tail, uint64_t tail_seq, uint64_t written, uint64_t durable) {
  __atomic_store_n(&a->tail_seq, tail_seq, __ATOMIC_RELEASE);
  __atomic_store_n(&a->tail, tail, __ATOMIC_RELEASE);
  __atomic_store_n(&a->persisted_seq, written, __ATOMIC_RELEASE);
  if (durable > __atomic_load_n(&a->durable_seq, __ATOMIC_ACQUIRE))
    __atomic_store_n(&a->durable_seq, durable, __ATOMIC_RELEASE);
  __atomic_add_fetch(&a->durable_word, 1, __ATOMIC_ACQ_REL);
  shmd__os_futex_wake(&a->durable_word, 1 << 30);
}

/* Opens the file, cuts a torn tail, finds the last record. */
static int open_log(pers_t *p) {
  const char *dir = p->opts->dir;
  if (mkdir(dir, 0700) && errno != EEXIST)
    return io_fail("cannot make the log directory", dir);
  snprintf(p->path, sizeof p->path, "%s/%s", dir, SHMD_AOF_FILE);
  p->fd = open(p->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (p->fd < 0)
    return io_fail("cannot open", p->path);
  char *b;
  size_t n;
  int rc = read_file(p->fd, p->path, &b, &n);
  if (rc)
    return rc;
  aof_walk_t w;
  rc = shmd__aof_walk(b, n, &w, NULL, NULL, NULL, NULL, NULL);
  free(b);
  if (rc)
    return rc;
  if (w.valid < n) {
    if (ftruncate(p->fd, (off_t)w.valid))
      return io_fail("cannot cut the torn tail of", p->path);
    note(p, "cut a torn tail of %llu bytes at offset %llu of %s (as redis-check-aof --fix)",
         (unsigned long long)(n - w.valid), (unsigned long long)w.valid, p->path);
    if ((rc = do_fsync(p)))
      return rc;
  }
  if (lseek(p->fd, 0, SEEK_END) < 0)
    return io_fail("cannot seek in", p->path);
  p->last_seq = w.saw_base ? w.last_seq : 0;
  p->cur_db = -1;
  return w.saw_base ? 1 : 0;
}

/* Writes a base (see the essay): logging on, writers held while the keyspace is written. */
static int write_base(pers_t *p) {
  shmd_store_t *s = p->s;
  shmd__aof_t *a = p->a;
  shmd_tx_t *tx;
  int rc = shmd_tx_begin(s, &tx);
  if (rc)
    return rc;
  out_t o = {0};
  uint64_t keys = 0, t0 = now_ms();
  shmd__kv_clock_freeze(1); /* nothing expires under the base: its commands carry the expiries */
  if ((rc = shmd_tx_lock(tx, shmd_ptr_from_addr(s, &a->lock))) ||
      (rc = shmd_tx_set64(tx, &a->enabled, 1)) || (rc = shmd_tx_set64(tx, &a->policy, (uint64_t)p->policy)) ||
      (rc = shmd__kv_lock_all(s, tx)))
    goto fail;
  uint64_t base = a->next_seq;
  o_fmt(&o, "#shmdict base=%llu\r\n", base);
  o_word(&o, "FLUSHALL");
  if ((rc = dump_all(s, &o, &keys)))
    goto fail;
  o_put(&o, "#shmdict base-end\r\n", 19);
  if (o.fail) {
    rc = SHMD_ENOMEM;
    goto fail;
  }
  if ((rc = write_all(p->fd, o.b, o.n, p->path)) || (rc = do_fsync(p)))
    goto fail;
  p->last_seq = base - 1;
  p->cur_db = -1;
  publish(a, a->head, base, base - 1, base - 1);
  shmd__kv_clock_freeze(0);
  free(o.b);
  rc = shmd_tx_commit(tx);
  note(p, "wrote a base of %llu keys at sequence %llu in %llu ms (writers waited)", (unsigned long long)keys,
       (unsigned long long)base, (unsigned long long)(now_ms() - t0));
  return rc;
fail:
  shmd__kv_clock_freeze(0);
  free(o.b);
  shmd_tx_abort(tx);
  return rc;
}

/* Reads {head, next_seq} under the ring lock: only committed records lie before head then. */
static int read_head(pers_t *p, uint64_t *head) {
  shmd_tx_t *tx;
  int rc = shmd_tx_begin(p->s, &tx);
  if (rc)
    return rc;
  if ((rc = shmd_tx_lock(tx, shmd_ptr_from_addr(p->s, &p->a->lock)))) {
    shmd_tx_abort(tx);
    return rc;
  }
  *head = __atomic_load_n(&p->a->head, __ATOMIC_ACQUIRE);
  return shmd_tx_commit(tx);
}

/* Encodes records [tail, head) into o. *seq: in, the tail's; out, the one after the last. */
static int encode(pers_t *p, out_t *o, uint64_t tail, uint64_t head, uint64_t *seq) {
  shmd__aof_t *a = p->a;
  char *body = NULL;
  size_t body_cap = 0;
  int rc = 0;
  for (uint64_t pos = tail; pos < head;) {
    shmd__aof_rec_t h;
    if (head - pos < sizeof h)
      return SHMD_CORRUPT_RC("change log record cut");
    shmd__aof_read(p->s, a, pos, &h, sizeof h);
    if (h.magic != SHMD__AOF_REC_MAGIC || h.seq != *seq || h.ncmds == 0 || h.body_bytes > head - pos - sizeof h ||
        h.body_bytes < 8 * (uint64_t)h.ncmds) {
      rc = SHMD_CORRUPT_RC("change log record header");
      break;
    }
    if (h.body_bytes > body_cap) {
      char *nb = realloc(body, h.body_bytes);
      if (!nb) {
        rc = SHMD_ENOMEM;
        break;
      }
      body = nb;
      body_cap = h.body_bytes;
    }
    shmd__aof_read(p->s, a, pos + sizeof h, body, h.body_bytes);
    if (h.seq > p->last_seq) {
      o_fmt(o, "#shmdict seq=%llu\r\n", h.seq);
      if (h.ncmds > 1)
        o_word(o, "MULTI");
      size_t off = 0;
      for (uint32_t i = 0; i < h.ncmds; i++) {
        uint32_t eh[2];
        if (h.body_bytes - off < 8) {
          rc = SHMD_CORRUPT_RC("change log entry cut");
          break;
        }
        memcpy(eh, body + off, 8);
        size_t entry = 8 + (((size_t)eh[1] + 7) & ~(size_t)7);
        if (eh[0] >= SHMD_KV_DATABASES || entry > h.body_bytes - off) {
          rc = SHMD_CORRUPT_RC("change log entry");
          break;
        }
        if ((int)eh[0] != p->cur_db) {
          char d[4];
          int n = snprintf(d, sizeof d, "%u", eh[0]);
          const char *sv[2] = {"SELECT", d};
          size_t sl[2] = {6, (size_t)n};
          o_cmd(o, 2, sv, sl);
          p->cur_db = (int)eh[0];
        }
        o_put(o, body + off + 8, eh[1]);
        off += entry;
      }
      if (rc)
        break;
      if (h.ncmds > 1)
        o_word(o, "EXEC");
    }
    pos += sizeof h + h.body_bytes;
    ++*seq;
  }
  free(body);
  if (rc == 0 && o->fail)
    rc = SHMD_ENOMEM;
  return rc;
}

static int claim(shmd__aof_t *a) {
  uint32_t me = shmd__os_pid();
  for (;;) {
    uint32_t old = __atomic_load_n(&a->persister_pid, __ATOMIC_ACQUIRE);
    if (old != 0 && (old == me || shmd__os_pid_alive(old))) {
      shmd__set_detail("process %u runs the persister of this store already", old);
      return SHMD_EBUSY;
    }
    if (__atomic_compare_exchange_n(&a->persister_pid, &old, me, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
      return 0;
  }
}

int shmd_persist_run(shmd_store_t *s, const shmd_persist_opts_t *opts, volatile int *stop) {
  if (!s || !opts || !opts->dir || !stop || opts->fsync < SHMD_AOF_FSYNC_NO || opts->fsync > SHMD_AOF_FSYNC_ALWAYS)
    return SHMD_EINVAL;
  pers_t p = {s, NULL, -1, opts->fsync, "", 0, -1, opts};
  int rc = shmd__aof_create(s, opts->ring_bytes ? opts->ring_bytes : SHMD_AOF_RING_DEFAULT, &p.a);
  if (rc)
    return rc;
  if ((rc = claim(p.a)))
    return rc;
  shmd__aof_t *a = p.a;
  rc = open_log(&p);
  if (rc >= 0) {
    int has_base = rc;
    rc = 0;
    uint64_t tseq = __atomic_load_n(&a->tail_seq, __ATOMIC_ACQUIRE);
    if (!has_base || !a->enabled || tseq > p.last_seq + 1)
      rc = write_base(&p);
    else if (a->policy != (uint64_t)p.policy) {
      shmd_tx_t *tx;
      if ((rc = shmd_tx_begin(s, &tx)) == 0) {
        if ((rc = shmd_tx_lock(tx, shmd_ptr_from_addr(s, &a->lock))) == 0)
          rc = shmd_tx_set64(tx, &a->policy, (uint64_t)p.policy);
        rc = rc ? (shmd_tx_abort(tx), rc) : shmd_tx_commit(tx);
      }
    }
  }
  uint64_t last_sync = now_ms();
  int dirty = 0;
  out_t o = {0};
  while (rc == 0) {
    int stopping = *stop; /* a stop asked for ends the loop once what was committed before is written */
    uint64_t head, tail = __atomic_load_n(&a->tail, __ATOMIC_ACQUIRE);
    uint64_t seq = __atomic_load_n(&a->tail_seq, __ATOMIC_ACQUIRE);
    uint32_t kick = __atomic_load_n(&a->kick, __ATOMIC_ACQUIRE);
    if ((rc = read_head(&p, &head)))
      break;
    if (head == tail) {
      if (dirty && p.policy == SHMD_AOF_FSYNC_EVERYSEC && now_ms() - last_sync >= 1000) {
        if ((rc = do_fsync(&p)))
          break;
        last_sync = now_ms();
        dirty = 0;
        publish(a, tail, seq, seq - 1, seq - 1);
      }
      if (stopping)
        break;
      shmd__os_futex_wait(&a->kick, kick, 10 * 1000000ull);
      continue;
    }
    o.n = 0;
    if ((rc = encode(&p, &o, tail, head, &seq)))
      break;
    if ((rc = write_all(p.fd, o.b, o.n, p.path)))
      break;
    if (p.policy == SHMD_AOF_FSYNC_ALWAYS && (rc = do_fsync(&p)))
      break;
    p.last_seq = seq - 1;
    dirty = p.policy != SHMD_AOF_FSYNC_ALWAYS;
    uint64_t durable = __atomic_load_n(&a->durable_seq, __ATOMIC_ACQUIRE);
    if (p.policy == SHMD_AOF_FSYNC_EVERYSEC && now_ms() - last_sync >= 1000) {
      if ((rc = do_fsync(&p)))
        break;
      last_sync = now_ms();
      dirty = 0;
    }
    publish(a, head, seq, seq - 1, dirty || p.policy == SHMD_AOF_FSYNC_NO ? durable : seq - 1);
  }
  free(o.b);
  if (p.fd >= 0) {
    if (rc == 0 && p.policy != SHMD_AOF_FSYNC_NO)
      rc = do_fsync(&p);
    close(p.fd);
  }
  uint32_t me = shmd__os_pid();
  __atomic_compare_exchange_n(&a->persister_pid, &me, 0, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
  return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* The persister's thread */

struct shmd_persister_s {
  pthread_t th;
  shmd_store_t *s;
  shmd_persist_opts_t o;
  char *dir;
  volatile int stop;
  int rc;
};

static void *pers_main(void *arg) {
  shmd_persister_t *p = arg;
  p->rc = shmd_persist_run(p->s, &p->o, &p->stop);
  return NULL;
}

int shmd_persist_start(shmd_store_t *s, const shmd_persist_opts_t *opts, shmd_persister_t **out) {
  if (!s || !opts || !opts->dir || !out)
    return SHMD_EINVAL;
  shmd_persister_t *p = calloc(1, sizeof *p);
  char *dir = strdup(opts->dir);
  if (!p || !dir) {
    free(p);
    free(dir);
    return SHMD_ENOMEM;
  }
  p->s = s;
  p->o = *opts;
  p->o.dir = p->dir = dir;
  int e = pthread_create(&p->th, NULL, pers_main, p);
  if (e) {
    free(dir);
    free(p);
    shmd__set_detail("cannot start the persister's thread: %s", strerror(e));
    return SHMD_EIO;
  }
  *out = p;
  return 0;
}

int shmd_persist_stop(shmd_persister_t *p) {
  if (!p)
    return 0;
  p->stop = 1;
  pthread_join(p->th, NULL);
  int rc = p->rc;
  free(p->dir);
  free(p);
  return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* Restore */

typedef struct rest_s {
  shmd_store_t *s;
  shmd_tx_t *tx;
  uint64_t errors;
} rest_t;

static int rest_apply(void *arg, unsigned db, int argc, const char *const *argv, const size_t *lens) {
  rest_t *r = arg;
  shmd_reply_t *rep = NULL;
  int rc = shmd_kv_command_db(r->s, db, argc, argv, lens, &rep);
  if (rc)
    return rc;
  if (rep->type == SHMD_REPLY_ERROR)
    r->errors++;
  shmd_reply_free(rep);
  return 0;
}

static int rest_batch(void *arg, int begin) {
  rest_t *r = arg;
  if (begin)
    return shmd_tx_begin(r->s, &r->tx);
  int rc = shmd_tx_commit(r->tx);
  r->tx = NULL;
  return rc;
}

int shmd_restore(shmd_store_t *s, const char *path, shmd_restore_report_t *rep,
                 void (*progress)(void *arg, uint64_t done, uint64_t total), void *parg) {
  if (!s || !path)
    return SHMD_EINVAL;
  char full[4096];
  struct stat st;
  if (stat(path, &st))
    return io_fail("cannot find the log", path);
  snprintf(full, sizeof full, S_ISDIR(st.st_mode) ? "%s/" SHMD_AOF_FILE : "%s", path);
  int fd = open(full, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return io_fail("cannot open", full);
  char *b;
  size_t n;
  int rc = read_file(fd, full, &b, &n);
  close(fd);
  if (rc)
    return rc;
  rest_t r = {s, NULL, 0};
  aof_walk_t w;
  shmd__kv_clock_freeze(1);
  rc = shmd__aof_walk(b, n, &w, rest_apply, rest_batch, &r, progress, parg);
  shmd__kv_clock_freeze(0);
  if (r.tx)
    shmd_tx_abort(r.tx);
  free(b);
  if (rep) {
    rep->commands = w.commands;
    rep->skipped = w.skipped;
    rep->errors = r.errors;
    rep->last_seq = w.last_seq;
    rep->bytes = n;
    rep->valid_bytes = w.valid;
    rep->truncated = w.truncated;
  }
  return rc;
}
