/* SPDX-License-Identifier: MIT */
/*
 * Damaged stores, shared by the mutation loop of test_hostile.c and the libFuzzer target
 * (tests/fuzz/fuzz_store.c): build a small store that uses every structure (segment table, roots,
 * lanes, buddy and slab metadata in three segments, every keyspace type, inline and out-of-line
 * values, a hash in mid-rehash, a pending garbage list), keep a pristine copy of its files, apply
 * mutations to the files, restore only the pages that changed, and exercise a damaged store: open,
 * recover, check; when the checks pass, read everything, write, check again. Every call must
 * return a status; the caller (a child process with an alarm, or libFuzzer under ASan) catches
 * crashes and hangs.
 */
#ifndef SHMD_TESTS_HOSTILE_H
#define SHMD_TESTS_HOSTILE_H

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmdict.h"
#include "shmdict/kv.h"
#include "shmdict/tx.h"

#define HS_MAXFILES 8
#define HS_NAME "h"

typedef struct {
  char name[64];
  unsigned char *pristine;
  size_t size;
  uint32_t *nz; /* indices of the non-zero 8-byte words: mutations mostly land on live data */
  size_t nnz;
} hs_file_t;

typedef struct {
  char dir[512];   /* the store directory passed as shmd_options_t.dir */
  char sdir[600];  /* dir/NAME */
  hs_file_t f[HS_MAXFILES];
  int nfiles;
} hs_t;

static inline shmd_options_t hs_opts(const hs_t *h) {
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = h->dir;
  o.first_segment_bytes = 2u << 20;
  o.segment_bytes = 1u << 20;
  o.max_store_bytes = 8u << 20;
  o.max_threads = 4;
  o.flags = SHMD_OPEN_NOCREATE;
  return o;
}

static inline int hs_cmd(shmd_store_t *s, unsigned db, const char *line) {
  const char *argv[128];
  size_t lens[128];
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", line);
  int n = 0;
  for (char *p = strtok(buf, " "); p && n < 128; p = strtok(NULL, " ")) {
    argv[n] = p;
    lens[n++] = strlen(p);
  }
  shmd_reply_t *r = NULL;
  int rc = shmd_kv_command_db(s, db, n, argv, lens, &r);
  shmd_reply_free(r);
  return rc;
}

/* Builds the store in h->dir and snapshots its files. Returns 0 or -1. */
static inline int hs_build(hs_t *h) {
  snprintf(h->sdir, sizeof h->sdir, "%s/%s", h->dir, HS_NAME);
  shmd_options_t o = hs_opts(h);
  o.flags = 0;
  shmd_store_t *s;
  if (shmd_open(HS_NAME, &o, &s))
    return -1;
  char line[4096];
  int rc = 0;
  rc |= hs_cmd(s, 0, "SET str short");
  memset(line, 0, sizeof line);
  strcpy(line, "SET long ");
  memset(line + 9, 'L', 600);
  rc |= hs_cmd(s, 0, line);
  rc |= hs_cmd(s, 0, "SET num 12345");
  rc |= hs_cmd(s, 0, "SET ttl x");
  rc |= hs_cmd(s, 0, "EXPIRE ttl 100000");
  size_t pos = (size_t)sprintf(line, "HSET hash");
  for (int i = 0; i < 40; i++)
    pos += (size_t)sprintf(line + pos, " f%d %s%d", i, i % 5 ? "v" : "a-longer-value-that-is-not-inline-", i);
  rc |= hs_cmd(s, 0, line);
  pos = (size_t)sprintf(line, "RPUSH list");
  for (int i = 0; i < 30; i++)
    pos += (size_t)sprintf(line + pos, " e%d", i);
  rc |= hs_cmd(s, 0, line);
  pos = (size_t)sprintf(line, "SADD set");
  for (int i = 0; i < 30; i++)
    pos += (size_t)sprintf(line + pos, " m%d", i);
  rc |= hs_cmd(s, 0, line);
  pos = (size_t)sprintf(line, "ZADD zset");
  for (int i = 0; i < 40; i++)
    pos += (size_t)sprintf(line + pos, " %d z%d", i * 7 % 13, i);
  rc |= hs_cmd(s, 0, line);
  for (int i = 0; i < 40; i++) {
    sprintf(line, "SET k%d value%d", i, i);
    rc |= hs_cmd(s, 3, line);
  }
  rc |= hs_cmd(s, 3, "SADD s3 a b c d");
  /* a raw block in a growth segment, and small ones, reachable from roots */
  shmd_ptr_t big, small;
  rc |= shmd_alloc(s, 600u << 10, &big);
  rc |= shmd_alloc(s, 100, &small);
  if (rc == 0) {
    memset(shmd_resolve(s, big), 0x5a, 4096);
    memset(shmd_resolve(s, small), 0xa5, 100);
    rc |= shmd_root_set(s, "big", big);
    rc |= shmd_root_set(s, "small", small);
  }
  shmd_ptr_t big2;
  rc |= shmd_alloc(s, 700u << 10, &big2);
  if (rc == 0)
    rc |= shmd_root_set(s, "big2", big2);
  rc |= shmd_kv_check(s) | shmd_alloc_check(s);
  shmd_close(s);
  if (rc)
    return -1;
  DIR *d = opendir(h->sdir);
  struct dirent *e;
  h->nfiles = 0;
  while (d && (e = readdir(d)) != NULL && h->nfiles < HS_MAXFILES) {
    if (strncmp(e->d_name, "seg-", 4) != 0)
      continue;
    hs_file_t *f = &h->f[h->nfiles++];
    snprintf(f->name, sizeof f->name, "%s", e->d_name);
    char path[700];
    snprintf(path, sizeof path, "%s/%s", h->sdir, e->d_name);
    int fd = open(path, O_RDONLY);
    struct stat st;
    fstat(fd, &st);
    f->size = (size_t)st.st_size;
    f->pristine = malloc(f->size);
    if (pread(fd, f->pristine, f->size, 0) != (ssize_t)f->size)
      rc = -1;
    close(fd);
    f->nz = malloc(f->size / 8 * sizeof *f->nz);
    f->nnz = 0;
    for (size_t w = 0; w < f->size / 8; w++)
      if (((uint64_t *)f->pristine)[w])
        f->nz[f->nnz++] = (uint32_t)w;
  }
  if (d)
    closedir(d);
  /* segment 0 first, so that a mutation program names files stably */
  for (int i = 1; i < h->nfiles; i++)
    if (strcmp(h->f[i].name, "seg-00000") == 0) {
      hs_file_t t = h->f[0];
      h->f[0] = h->f[i];
      h->f[i] = t;
    }
  return rc;
}

/* Puts every file back as it was built (rewriting only the pages that differ) and removes files
 * the exercise created. Returns 0 or -1. */
static inline int hs_restore(hs_t *h) {
  DIR *d = opendir(h->sdir);
  if (d == NULL) {
    mkdir(h->sdir, 0700);
    d = opendir(h->sdir);
  }
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    int ours = 0;
    for (int i = 0; i < h->nfiles; i++)
      ours |= strcmp(e->d_name, h->f[i].name) == 0;
    if (!ours) {
      char path[700];
      snprintf(path, sizeof path, "%s/%s", h->sdir, e->d_name);
      unlink(path);
    }
  }
  if (d)
    closedir(d);
  int rc = 0;
  for (int i = 0; i < h->nfiles; i++) {
    hs_file_t *f = &h->f[i];
    char path[700];
    snprintf(path, sizeof path, "%s/%s", h->sdir, f->name);
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW, 0600);
    if (fd < 0) {
      unlink(path);
      fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW, 0600);
    }
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
      rc = -1;
      continue;
    }
    if ((size_t)st.st_size != f->size) {
      if (ftruncate(fd, 0) || ftruncate(fd, (off_t)f->size) ||
          pwrite(fd, f->pristine, f->size, 0) != (ssize_t)f->size)
        rc = -1;
      close(fd);
      continue;
    }
    unsigned char *m = mmap(NULL, f->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
      rc = -1;
      continue;
    }
    for (size_t off = 0; off < f->size; off += 4096) {
      size_t n = f->size - off < 4096 ? f->size - off : 4096;
      if (memcmp(m + off, f->pristine + off, n))
        memcpy(m + off, f->pristine + off, n);
    }
    munmap(m, f->size);
  }
  return rc;
}

/* One mutation: file index, kind, position, value. A mutation program is a sequence of these;
 * the fuzzer's input is one, the mutation loop draws them at random. */
typedef struct {
  uint8_t file;
  uint8_t kind;
  uint32_t pos;
  uint64_t val;
} hs_mut_t;

enum {
  HS_FLIP,    /* flip bit val % 64 of a live word */
  HS_ZERO,    /* zero a live word */
  HS_SET,     /* set a live word to val */
  HS_COPY,    /* set a live word to another live word's value (pointer-like) */
  HS_ADD,     /* add a small signed delta */
  HS_ANY,     /* set any word (pos over the whole file) to val */
  HS_RANGE,   /* fill 8 .. 4096 bytes at any position with a byte */
  HS_TRUNC,   /* truncate the file */
  HS_NKINDS
};

static inline void hs_apply(hs_t *h, const hs_mut_t *mu) {
  if (h->nfiles == 0)
    return;
  hs_file_t *f = &h->f[mu->file % h->nfiles];
  char path[700];
  snprintf(path, sizeof path, "%s/%s", h->sdir, f->name);
  int fd = open(path, O_RDWR | O_NOFOLLOW);
  if (fd < 0)
    return;
  size_t words = f->size / 8;
  size_t w = f->nnz ? f->nz[mu->pos % f->nnz] : mu->pos % words;
  uint64_t v = 0;
  pread(fd, &v, 8, (off_t)(w * 8));
  switch (mu->kind % HS_NKINDS) {
  case HS_FLIP: v ^= 1ull << (mu->val % 64); break;
  case HS_ZERO: v = 0; break;
  case HS_SET: v = mu->val; break;
  case HS_COPY: v = f->nnz ? ((uint64_t *)f->pristine)[f->nz[mu->val % f->nnz]] : mu->val; break;
  case HS_ADD: v += (uint64_t)((int64_t)(mu->val % 33) - 16); break;
  case HS_ANY: w = mu->pos % words; v = mu->val; break;
  case HS_RANGE: {
    size_t off = (size_t)mu->pos % f->size, len = 8 + (size_t)(mu->val >> 8) % 4089;
    if (off + len > f->size)
      len = f->size - off;
    unsigned char buf[4096];
    memset(buf, (int)(mu->val & 0xff), len);
    pwrite(fd, buf, len, (off_t)off);
    close(fd);
    return;
  }
  default:
    ftruncate(fd, (off_t)(mu->pos % f->size));
    close(fd);
    return;
  }
  pwrite(fd, &v, 8, (off_t)(w * 8));
  close(fd);
}

/* A status must be 0 or one of the table's codes. */
static inline int hs_status_ok(int rc) { return rc >= 0 || strcmp(shmd_err_name(rc), "UNKNOWN") != 0; }

#define HS_CALL(expr)                                                                              \
  do {                                                                                             \
    int rc_ = (expr);                                                                              \
    if (!hs_status_ok(rc_)) {                                                                      \
      fprintf(stderr, "hostile: %s returned %d, not a status\n", #expr, rc_);                      \
      return -1;                                                                                   \
    }                                                                                              \
  } while (0)

static inline int hs_foreach_root(const char *name, shmd_ptr_t p, void *arg) {
  (void)name;
  shmd_store_t *s = arg;
  void *a;
  if (shmd_resolve_checked(s, p, 1, &a) == 0)
    (void)shmd_usable_size(s, p);
  return 0;
}

/* Opens the (possibly damaged) store and uses it. Returns 0 when every call returned a status,
 * -1 otherwise; *checked_ok receives 1 when the checks passed after open. */
static inline int hs_exercise(hs_t *h, int *checked_ok) {
  shmd_options_t o = hs_opts(h);
  shmd_store_t *s = NULL;
  *checked_ok = 0;
  int rc = shmd_open(HS_NAME, &o, &s);
  HS_CALL(rc);
  if (rc)
    return 0;
  int bad = 0;
  HS_CALL(shmd_recover(s));
  int c1 = shmd_alloc_check(s), c2 = shmd_kv_check(s);
  HS_CALL(c1);
  HS_CALL(c2);
  *checked_ok = c1 == 0 && c2 == 0;
  shmd_store_info_t info;
  HS_CALL(shmd_store_info(s, &info));
  shmd_stats_t st;
  HS_CALL(shmd_stats(s, &st));
  HS_CALL(shmd_root_foreach(s, hs_foreach_root, s));
  if (!*checked_ok) {
    /* The checks found the damage and said so: that is the promise for a damaged store. Reads and
     * writes follow pointers without bounds checks on their hot paths, so they are exercised on
     * stores the checks pass (damage the checks cannot see must not crash them). */
    shmd_close(s);
    return 0;
  }
  for (unsigned db = 0; db < 4; db++) {
    shmd_kv_info_t ki;
    HS_CALL(shmd_kv_info(s, db, &ki));
  }
  static const char *reads[] = {
      "GET str", "GET long", "GET num", "TTL ttl", "GET ttl", "TYPE hash", "HGETALL hash", "HGET hash f7",
      "HLEN hash", "LRANGE list 0 -1", "LINDEX list 17", "LLEN list", "SMEMBERS set", "SISMEMBER set m3",
      "SCARD set", "ZRANGE zset 0 -1 WITHSCORES", "ZRANGEBYSCORE zset 2 9", "ZRANK zset z5", "ZSCORE zset z9",
      "ZCARD zset", "KEYS *", "DBSIZE", "SCAN 0", "SCAN 0 COUNT 1000", "EXISTS str hash list set zset",
      "MGET str long num",
  };
  for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++)
    HS_CALL(hs_cmd(s, 0, reads[i]));
  HS_CALL(hs_cmd(s, 3, "KEYS *"));
  HS_CALL(hs_cmd(s, 3, "SMEMBERS s3"));
  static const char *writes[] = {
      "SET str other",  "SET new 1",        "APPEND long xyz",       "INCR num",         "HSET hash f1 x f99 y",
      "HDEL hash f2 f3", "RPUSH list x y",  "LPOP list",             "RPOP list",        "LSET list 3 q",
      "SADD set m99 m3", "SREM set m4",     "ZADD zset 1.5 z1 3 n",  "ZREM zset z2",     "DEL str num",
      "RENAME long long2", "EXPIRE hash 1000", "PERSIST ttl",        "DEL hash",         "DEL zset",
  };
  for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++)
    HS_CALL(hs_cmd(s, 0, writes[i]));
  HS_CALL(hs_cmd(s, 3, "FLUSHDB"));
  HS_CALL(shmd_kv_drain(s, 0, 0));
  HS_CALL(shmd_kv_drain(s, 3, 0));
  size_t expired;
  HS_CALL(shmd_kv_expire_step(s, 0, 100, &expired));
  shmd_ptr_t p;
  if (shmd_root_get(s, "small", &p) == 0)
    HS_CALL(shmd_free(s, p));
  if (shmd_root_get(s, "big", &p) == 0) {
    HS_CALL(shmd_realloc(s, &p, 100000));
  }
  for (int i = 0; i < 20; i++) {
    HS_CALL(shmd_alloc(s, (size_t)(16 << (i % 12)), &p));
  }
  HS_CALL(shmd_alloc(s, 1u << 20, &p)); /* growth */
  HS_CALL(shmd_alloc_check(s));
  HS_CALL(shmd_kv_check(s));
  shmd_close(s);
  return bad;
}

#endif
