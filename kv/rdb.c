/* SPDX-License-Identifier: MIT */
/*
 * DUMP and RESTORE with redis-server 7.0's payload format (Redis's cluster.c verifyDumpPayload /
 * createDumpPayload and the object half of rdb.c), so a value moves between shmdict and Redis in
 * either direction:
 *
 *   payload = <RDB type byte> <RDB object> <RDB version: 2 bytes LE> <CRC64: 8 bytes LE>
 *
 * The CRC is Redis's crc64 (Jones polynomial, reflected, init 0) of everything before it; the
 * version is 10 (Redis 7.0's RDB_VERSION); a payload of a later version is refused as Redis
 * refuses it.
 *
 * DUMP writes the plain encodings, which Redis 7.0 reads (and converts to its compact ones where
 * its thresholds say so): a string as RDB_TYPE_STRING (integer-encoded when Redis would, never
 * LZF-compressed), a list as RDB_TYPE_LIST_QUICKLIST_2 with listpack nodes of at most 8 KiB (one
 * element per node when bigger), a set as RDB_TYPE_SET, a hash as RDB_TYPE_HASH, a sorted set as
 * RDB_TYPE_ZSET_2 (binary doubles). The values are read through the read commands' handlers
 * (GET's record, LRANGE, SMEMBERS, HGETALL, ZRANGE WITHSCORES), so DUMP does not depend on how a
 * type keeps its elements.
 *
 * RESTORE reads every encoding Redis 7.0 writes or reads for these types: strings raw,
 * integer-encoded (8/16/32 bits) and LZF-compressed; LIST, LIST_ZIPLIST, LIST_QUICKLIST
 * (ziplist nodes), LIST_QUICKLIST_2 (plain and listpack nodes); SET, SET_INTSET; ZSET (text
 * doubles), ZSET_2, ZSET_ZIPLIST, ZSET_LISTPACK; HASH, HASH_ZIPLIST, HASH_LISTPACK. Not read:
 * HASH_ZIPMAP (RDB 2's, which Redis 7.0 never writes), modules and streams (shmdict has neither):
 * "ERR Bad data format". The payload is untrusted: it is decoded completely (every listpack,
 * ziplist and intset checked entry by entry, as Redis's sanitize-dump-payload yes does, duplicates
 * included) into process memory before the keyspace is touched, so a malformed payload changes
 * nothing, inside EXEC too. Nothing is allocated from a length field: arrays grow with the
 * elements actually read, a string length must fit in the bytes left, an LZF length must be
 * reachable from its compressed size (at most 88 times it) and at most 512 MiB. Then the value is
 * built through the write commands' handlers (RPUSH, SADD, HSET, ZADD in batches), in the
 * command's transaction: a kill leaves all of it or none.
 */
#include "kv/rdb.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/cmd.h"
#include "segments/err.h"

/* ---------------------------------------------------------------------------------------------- */
/* CRC64 (Redis's crc64.c: Jones polynomial 0xad93d23594c935a9, reflected in and out, init 0) */

#define CRC64_JONES_REFLECTED 0x95ac9329ac4bc9b5ull /* 0xad93d23594c935a9 bit-reversed */

static uint64_t crc64_table[256];
static pthread_once_t crc64_once = PTHREAD_ONCE_INIT;

static void crc64_init(void) {
  for (unsigned i = 0; i < 256; i++) {
    uint64_t c = i;
    for (int k = 0; k < 8; k++)
      c = (c & 1) ? (c >> 1) ^ CRC64_JONES_REFLECTED : c >> 1;
    crc64_table[i] = c;
  }
}

uint64_t shmd__kv_crc64(uint64_t crc, const void *p, size_t n) {
  pthread_once(&crc64_once, crc64_init);
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    crc = crc64_table[(crc ^ b[i]) & 0xff] ^ (crc >> 8);
  return crc;
}

/* ---------------------------------------------------------------------------------------------- */
/* RDB constants (Redis 7.0's rdb.h) */

enum {
  RDB_TYPE_STRING = 0,
  RDB_TYPE_LIST = 1,
  RDB_TYPE_SET = 2,
  RDB_TYPE_ZSET = 3,
  RDB_TYPE_HASH = 4,
  RDB_TYPE_ZSET_2 = 5,
  RDB_TYPE_HASH_ZIPMAP = 9,
  RDB_TYPE_LIST_ZIPLIST = 10,
  RDB_TYPE_SET_INTSET = 11,
  RDB_TYPE_ZSET_ZIPLIST = 12,
  RDB_TYPE_HASH_ZIPLIST = 13,
  RDB_TYPE_LIST_QUICKLIST = 14,
  RDB_TYPE_HASH_LISTPACK = 16,
  RDB_TYPE_ZSET_LISTPACK = 17,
  RDB_TYPE_LIST_QUICKLIST_2 = 18,
};
#define RDB_6BITLEN 0
#define RDB_14BITLEN 1
#define RDB_32BITLEN 0x80
#define RDB_64BITLEN 0x81
#define RDB_ENCVAL 3
#define RDB_ENC_INT8 0
#define RDB_ENC_INT16 1
#define RDB_ENC_INT32 2
#define RDB_ENC_LZF 3
#define QUICKLIST_NODE_PLAIN 1
#define QUICKLIST_NODE_PACKED 2
#define LP_NODE_BYTES 8192 /* Redis's list-max-listpack-size -2 */
#define LZF_MAX_RATIO 88u  /* a 3-byte back reference makes at most 264 bytes */

/* ---------------------------------------------------------------------------------------------- */
/* The decoded value: elements pointing into the payload or into blocks the value owns */

typedef struct arena_s {
  struct arena_s *next;
  size_t used, cap;
  unsigned char data[];
} arena_t;

void shmd__kv_rdb_free(kv_rdbval_t *v) {
  arena_t *a = v->arena;
  while (a) {
    arena_t *n = a->next;
    free(a);
    a = n;
  }
  free(v->it);
  free(v->score);
  memset(v, 0, sizeof *v);
}

/* n bytes owned by v. NULL when out of memory. */
static unsigned char *arena_alloc(kv_rdbval_t *v, size_t n) {
  arena_t *a = v->arena;
  if (a == NULL || a->cap - a->used < n) {
    size_t cap = n > 65536 ? n : 65536;
    if ((a = malloc(sizeof *a + cap)) == NULL)
      return NULL;
    a->used = 0;
    a->cap = cap;
    if (n > 4096 && v->arena) { /* a big block: behind the current one, which keeps filling */
      a->next = ((arena_t *)v->arena)->next;
      ((arena_t *)v->arena)->next = a;
    } else {
      a->next = v->arena;
      v->arena = a;
    }
  }
  unsigned char *p = a->data + a->used;
  a->used += n;
  return p;
}

static int add_item(kv_rdbval_t *v, const void *p, size_t n) {
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 16;
    kv_rdbitem_t *it = realloc(v->it, cap * sizeof *it);
    if (it == NULL)
      return SHMD_ENOMEM;
    v->it = it;
    v->cap = cap;
  }
  v->it[v->n].p = p;
  v->it[v->n].n = n;
  v->n++;
  return 0;
}

static int add_int(kv_rdbval_t *v, long long x) {
  char buf[24];
  int n = snprintf(buf, sizeof buf, "%lld", x);
  unsigned char *p = arena_alloc(v, (size_t)n);
  if (p == NULL)
    return SHMD_ENOMEM;
  memcpy(p, buf, (size_t)n);
  return add_item(v, p, (size_t)n);
}

static int add_score(kv_rdbval_t *v, double d) {
  if (isnan(d))
    return RDB_BAD;
  if (v->nscore == v->scap) {
    size_t cap = v->scap ? v->scap * 2 : 16;
    double *s = realloc(v->score, cap * sizeof *s);
    if (s == NULL)
      return SHMD_ENOMEM;
    v->score = s;
    v->scap = cap;
  }
  v->score[v->nscore++] = d;
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Reading the RDB object */

typedef struct rd_s {
  const unsigned char *p;
  size_t left;
} rd_t;

static int rd_bytes(rd_t *r, size_t n, const unsigned char **out) {
  if (n > r->left)
    return RDB_BAD;
  *out = r->p;
  r->p += n;
  r->left -= n;
  return 0;
}

static int rd_byte(rd_t *r, unsigned *out) {
  const unsigned char *b;
  int rc = rd_bytes(r, 1, &b);
  if (rc == 0)
    *out = b[0];
  return rc;
}

/* rdbLoadLenByRef: a length, or (*enc set) an encoding type of a special string. */
static int rd_len(rd_t *r, uint64_t *len, int *enc) {
  unsigned b0;
  const unsigned char *b;
  int rc = rd_byte(r, &b0);
  if (rc)
    return rc;
  *enc = 0;
  switch (b0 >> 6) {
  case RDB_6BITLEN: *len = b0 & 0x3f; return 0;
  case RDB_14BITLEN:
    if ((rc = rd_bytes(r, 1, &b)))
      return rc;
    *len = ((uint64_t)(b0 & 0x3f) << 8) | b[0];
    return 0;
  case RDB_ENCVAL:
    *enc = 1;
    *len = b0 & 0x3f;
    return 0;
  default:
    if (b0 == RDB_32BITLEN) {
      if ((rc = rd_bytes(r, 4, &b)))
        return rc;
      *len = (uint64_t)b[0] << 24 | (uint64_t)b[1] << 16 | (uint64_t)b[2] << 8 | b[3];
      return 0;
    }
    if (b0 == RDB_64BITLEN) {
      if ((rc = rd_bytes(r, 8, &b)))
        return rc;
      *len = 0;
      for (int i = 0; i < 8; i++)
        *len = *len << 8 | b[i];
      return 0;
    }
    return RDB_BAD;
  }
}

static int rd_count(rd_t *r, uint64_t *n) {
  int enc;
  int rc = rd_len(r, n, &enc);
  return rc ? rc : enc ? RDB_BAD : 0;
}

/* Redis's lzf_decompress with its input checks: the output must be exactly `out_len` bytes. */
static int lzf_unpack(const unsigned char *in, size_t in_len, unsigned char *out, size_t out_len) {
  const unsigned char *ip = in, *in_end = in + in_len;
  unsigned char *op = out, *out_end = out + out_len;
  while (ip < in_end) {
    unsigned ctrl = *ip++;
    if (ctrl < 32) { /* a literal run of ctrl + 1 bytes */
      size_t n = ctrl + 1u;
      if ((size_t)(out_end - op) < n || (size_t)(in_end - ip) < n)
        return RDB_BAD;
      memcpy(op, ip, n);
      op += n;
      ip += n;
    } else { /* a back reference */
      size_t n = ctrl >> 5;
      size_t back = ((size_t)(ctrl & 0x1f) << 8) + 1;
      if (ip >= in_end)
        return RDB_BAD;
      if (n == 7) {
        n += *ip++;
        if (ip >= in_end)
          return RDB_BAD;
      }
      back += *ip++;
      n += 2;
      if ((size_t)(out_end - op) < n || back > (size_t)(op - out))
        return RDB_BAD;
      const unsigned char *ref = op - back;
      for (size_t i = 0; i < n; i++) /* may overlap: byte by byte */
        op[i] = ref[i];
      op += n;
    }
  }
  return op == out_end ? 0 : RDB_BAD;
}

/* rdbGenericLoadStringObject: *p, *n name the bytes (in the payload or in v's arena). */
static int rd_string(rd_t *r, kv_rdbval_t *v, const unsigned char **p, size_t *n) {
  uint64_t len;
  int enc;
  const unsigned char *b;
  int rc = rd_len(r, &len, &enc);
  if (rc)
    return rc;
  if (!enc) {
    if ((rc = rd_bytes(r, len, &b)))
      return rc;
    *p = b;
    *n = (size_t)len;
    return 0;
  }
  long long x;
  char buf[24];
  switch (len) {
  case RDB_ENC_INT8:
    if ((rc = rd_bytes(r, 1, &b)))
      return rc;
    x = (signed char)b[0];
    break;
  case RDB_ENC_INT16:
    if ((rc = rd_bytes(r, 2, &b)))
      return rc;
    x = (int16_t)(uint16_t)(b[0] | b[1] << 8);
    break;
  case RDB_ENC_INT32:
    if ((rc = rd_bytes(r, 4, &b)))
      return rc;
    x = (int32_t)((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24);
    break;
  case RDB_ENC_LZF: {
    uint64_t clen, ulen;
    if ((rc = rd_count(r, &clen)) || (rc = rd_count(r, &ulen)))
      return rc;
    if (clen == 0 || ulen == 0 || ulen > KV_STRING_MAX || ulen / LZF_MAX_RATIO > clen)
      return RDB_BAD;
    if ((rc = rd_bytes(r, clen, &b)))
      return rc;
    unsigned char *out = arena_alloc(v, (size_t)ulen);
    if (out == NULL)
      return SHMD_ENOMEM;
    if ((rc = lzf_unpack(b, (size_t)clen, out, (size_t)ulen)))
      return rc;
    *p = out;
    *n = (size_t)ulen;
    return 0;
  }
  default: return RDB_BAD;
  }
  int k = snprintf(buf, sizeof buf, "%lld", x);
  unsigned char *out = arena_alloc(v, (size_t)k);
  if (out == NULL)
    return SHMD_ENOMEM;
  memcpy(out, buf, (size_t)k);
  *p = out;
  *n = (size_t)k;
  return 0;
}

static int rd_add_string(rd_t *r, kv_rdbval_t *v) {
  const unsigned char *p;
  size_t n;
  int rc = rd_string(r, v, &p, &n);
  return rc ? rc : add_item(v, p, n);
}

/* rdbLoadDoubleValue (RDB_TYPE_ZSET): a length byte, 253 NaN, 254 +inf, 255 -inf, else text. */
static int rd_text_double(rd_t *r, double *d) {
  unsigned n;
  const unsigned char *b;
  int rc = rd_byte(r, &n);
  if (rc)
    return rc;
  if (n == 253)
    return RDB_BAD; /* NaN: no score */
  if (n == 254 || n == 255) {
    *d = n == 254 ? INFINITY : -INFINITY;
    return 0;
  }
  if ((rc = rd_bytes(r, n, &b)))
    return rc;
  char buf[256];
  memcpy(buf, b, n);
  buf[n] = 0;
  char *end;
  *d = strtod(buf, &end);
  return end == buf || isnan(*d) ? RDB_BAD : 0;
}

/* rdbLoadBinaryDoubleValue (RDB_TYPE_ZSET_2): 8 bytes, little-endian IEEE 754. */
static int rd_bin_double(rd_t *r, double *d) {
  const unsigned char *b;
  int rc = rd_bytes(r, 8, &b);
  if (rc)
    return rc;
  uint64_t u = 0;
  for (int i = 7; i >= 0; i--)
    u = u << 8 | b[i];
  memcpy(d, &u, sizeof *d);
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* The compact blobs: listpack, ziplist, intset. Each appends its elements to v. */

static uint64_t le(const unsigned char *b, int n) {
  uint64_t u = 0;
  for (int i = n - 1; i >= 0; i--)
    u = u << 8 | b[i];
  return u;
}

static long long sext(uint64_t u, int bits) {
  if (bits < 64 && (u & (1ull << (bits - 1))))
    u |= ~0ull << bits;
  return (long long)u;
}

/* The listpack back-length of an entry of l bytes (lpEncodeBacklen); returns its size. */
static size_t lp_backlen(uint64_t l, unsigned char out[5]) {
  if (l <= 127) {
    out[0] = (unsigned char)l;
    return 1;
  }
  size_t n = l < 16383 ? 2 : l < 2097151 ? 3 : l < 268435455 ? 4 : 5;
  out[0] = (unsigned char)(l >> (7 * (n - 1)));
  for (size_t i = 1; i < n; i++)
    out[i] = (unsigned char)(((l >> (7 * (n - 1 - i))) & 127) | 128);
  return n;
}

static int listpack_read(const unsigned char *lp, size_t size, kv_rdbval_t *v) {
  if (size < 7 || le(lp, 4) != size || lp[size - 1] != 0xff)
    return RDB_BAD;
  uint64_t hdr_count = le(lp + 4, 2), count = 0;
  size_t i = 6;
  int rc;
  while (i < size - 1) {
    const unsigned char *e = lp + i;
    size_t avail = size - 1 - i, hl, dl = 0;
    unsigned b = e[0];
    long long x = 0;
    int is_int = 1;
    if (b < 0x80) { /* 7-bit unsigned */
      hl = 1;
      x = b;
    } else if ((b & 0xc0) == 0x80) { /* 6-bit string length */
      hl = 1;
      dl = b & 0x3f;
      is_int = 0;
    } else if ((b & 0xe0) == 0xc0) { /* 13-bit int */
      hl = 2;
      if (avail < 2)
        return RDB_BAD;
      x = sext(((uint64_t)(b & 0x1f) << 8) | e[1], 13);
    } else if ((b & 0xf0) == 0xe0) { /* 12-bit string length */
      hl = 2;
      if (avail < 2)
        return RDB_BAD;
      dl = ((size_t)(b & 0x0f) << 8) | e[1];
      is_int = 0;
    } else if (b == 0xf0) { /* 32-bit string length */
      hl = 5;
      if (avail < 5)
        return RDB_BAD;
      dl = (size_t)le(e + 1, 4);
      is_int = 0;
    } else if (b >= 0xf1 && b <= 0xf4) {
      static const int bytes[] = {2, 3, 4, 8};
      int nb = bytes[b - 0xf1];
      hl = 1 + (size_t)nb;
      if (avail < hl)
        return RDB_BAD;
      x = sext(le(e + 1, nb), nb * 8);
    } else {
      return RDB_BAD; /* 0xf5..0xfe are no encoding; 0xff is the end, before it */
    }
    if (hl > avail || dl > avail - hl)
      return RDB_BAD;
    unsigned char bl[5];
    size_t bn = lp_backlen(hl + dl, bl);
    if (bn > avail - hl - dl || memcmp(e + hl + dl, bl, bn) != 0)
      return RDB_BAD;
    if ((rc = is_int ? add_int(v, x) : add_item(v, e + hl, dl)))
      return rc;
    count++;
    i += hl + dl + bn;
  }
  if (i != size - 1 || (hdr_count != 65535 && hdr_count != count))
    return RDB_BAD;
  return 0;
}

static int ziplist_read(const unsigned char *zl, size_t size, kv_rdbval_t *v) {
  if (size < 11 || le(zl, 4) != size || zl[size - 1] != 0xff)
    return RDB_BAD;
  uint64_t tail = le(zl + 4, 4), hdr_count = le(zl + 8, 2), count = 0;
  size_t i = 10, prev = 0, last = 10;
  int rc;
  while (i < size - 1) {
    const unsigned char *e = zl + i;
    size_t avail = size - 1 - i, pl, hl, dl = 0;
    uint64_t prevlen;
    if (e[0] < 254) {
      pl = 1;
      prevlen = e[0];
    } else if (e[0] == 254 && avail >= 5) {
      pl = 5;
      prevlen = le(e + 1, 4);
    } else {
      return RDB_BAD;
    }
    if (prevlen != prev || pl >= avail)
      return RDB_BAD;
    const unsigned char *h = e + pl;
    size_t ha = avail - pl;
    unsigned b = h[0];
    long long x = 0;
    int is_int = 1;
    if (b < 0xc0) { /* strings: the top two bits say the length's size (ZIP_STR_MASK) */
      is_int = 0;
      if (b < 0x40) {
        hl = 1;
        dl = b & 0x3f;
      } else if (b < 0x80) {
        hl = 2;
        if (ha < 2)
          return RDB_BAD;
        dl = ((size_t)(b & 0x3f) << 8) | h[1];
      } else {
        hl = 5;
        if (ha < 5)
          return RDB_BAD;
        dl = (size_t)((uint64_t)h[1] << 24 | (uint64_t)h[2] << 16 | (uint64_t)h[3] << 8 | h[4]);
      }
    } else if (b == 0xc0 || b == 0xd0 || b == 0xe0 || b == 0xf0 || b == 0xfe) {
      int nb = b == 0xc0 ? 2 : b == 0xd0 ? 4 : b == 0xe0 ? 8 : b == 0xf0 ? 3 : 1;
      hl = 1 + (size_t)nb;
      if (ha < hl)
        return RDB_BAD;
      x = sext(le(h + 1, nb), nb * 8);
    } else if (b >= 0xf1 && b <= 0xfd) {
      hl = 1;
      x = (long long)(b & 0x0f) - 1;
    } else {
      return RDB_BAD;
    }
    if (hl > ha || dl > ha - hl)
      return RDB_BAD;
    if ((rc = is_int ? add_int(v, x) : add_item(v, h + hl, dl)))
      return rc;
    count++;
    last = i;
    prev = pl + hl + dl;
    i += prev;
  }
  if (i != size - 1 || tail != last || (hdr_count != 65535 && hdr_count != count))
    return RDB_BAD;
  return 0;
}

static int intset_read(const unsigned char *is, size_t size, kv_rdbval_t *v) {
  if (size < 8)
    return RDB_BAD;
  uint64_t enc = le(is, 4), n = le(is + 4, 4);
  if ((enc != 2 && enc != 4 && enc != 8) || n == 0 || n > (size - 8) / enc || 8 + n * enc != size)
    return RDB_BAD;
  long long prev = 0;
  for (uint64_t i = 0; i < n; i++) {
    long long x = sext(le(is + 8 + i * enc, (int)enc), (int)enc * 8);
    if (i > 0 && x <= prev) /* sorted, no duplicates */
      return RDB_BAD;
    prev = x;
    int rc = add_int(v, x);
    if (rc)
      return rc;
  }
  return 0;
}

/* A blob (an RDB string) holding a listpack / ziplist / intset. */
static int rd_blob(rd_t *r, kv_rdbval_t *v, int (*read)(const unsigned char *, size_t, kv_rdbval_t *)) {
  const unsigned char *p;
  size_t n;
  int rc = rd_string(r, v, &p, &n);
  return rc ? rc : read(p, n, v);
}

/* ---------------------------------------------------------------------------------------------- */
/* Checks after decoding: pairs, scores, duplicates (Redis's "Duplicate ... detected") */

static int item_cmp(const void *a, const void *b) {
  const kv_rdbitem_t *x = *(const kv_rdbitem_t *const *)a, *y = *(const kv_rdbitem_t *const *)b;
  if (x->n != y->n)
    return x->n < y->n ? -1 : 1;
  return x->n ? memcmp(x->p, y->p, x->n) : 0;
}

/* Are the items 0, step, 2 * step, ... distinct? 0, RDB_BAD, or SHMD_ENOMEM. */
static int distinct(const kv_rdbval_t *v, size_t step) {
  size_t n = v->n / step;
  if (n < 2)
    return 0;
  const kv_rdbitem_t **ix = malloc(n * sizeof *ix);
  if (ix == NULL)
    return SHMD_ENOMEM;
  for (size_t i = 0; i < n; i++)
    ix[i] = &v->it[i * step];
  qsort(ix, n, sizeof *ix, item_cmp);
  int rc = 0;
  for (size_t i = 1; i < n && rc == 0; i++)
    if (item_cmp(&ix[i - 1], &ix[i]) == 0)
      rc = RDB_BAD;
  free(ix);
  return rc;
}

/* Splits flat (member, score) pairs read from a ziplist / listpack into members and scores. */
static int split_scores(kv_rdbval_t *v) {
  if (v->n % 2)
    return RDB_BAD;
  size_t n = v->n / 2;
  for (size_t i = 0; i < n; i++) {
    double d;
    const kv_rdbitem_t *s = &v->it[2 * i + 1];
    if (s->n == 0 || s->n >= 128) /* zzlStrtod reads at most 127 characters */
      return RDB_BAD;
    char buf[128];
    memcpy(buf, s->p, s->n);
    buf[s->n] = 0;
    char *end;
    d = strtod(buf, &end);
    if (end != buf + s->n)
      return RDB_BAD;
    int rc = add_score(v, d);
    if (rc)
      return rc;
    v->it[i] = v->it[2 * i];
  }
  v->n = n;
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Decoding a payload */

int shmd__kv_rdb_verify(const unsigned char *p, size_t n) {
  if (n < 10)
    return RDB_BADVER;
  unsigned ver = p[n - 10] | (unsigned)p[n - 9] << 8;
  if (ver > SHMD_KV_RDB_VERSION)
    return RDB_BADVER;
  uint64_t crc = shmd__kv_crc64(0, p, n - 8);
  return crc == le(p + n - 8, 8) ? 0 : RDB_BADVER;
}

int shmd__kv_rdb_decode(const unsigned char *p, size_t n, kv_rdbval_t *v) {
  memset(v, 0, sizeof *v);
  int rc = shmd__kv_rdb_verify(p, n);
  if (rc)
    return rc;
  /* Redis reads the object from the whole payload, footer included (an object cut short may run
   * into it and still load), and ignores bytes after it: the same here. */
  rd_t r = {p, n};
  unsigned type;
  uint64_t count;
  if ((rc = rd_byte(&r, &type)))
    goto out;
  switch (type) {
  case RDB_TYPE_STRING:
    v->type = KV_STRING;
    rc = rd_add_string(&r, v);
    break;
  case RDB_TYPE_LIST:
  case RDB_TYPE_SET:
    v->type = type == RDB_TYPE_LIST ? KV_LIST : KV_SET;
    if ((rc = rd_count(&r, &count)))
      break;
    for (uint64_t i = 0; rc == 0 && i < count; i++)
      rc = rd_add_string(&r, v);
    break;
  case RDB_TYPE_HASH:
    v->type = KV_HASH;
    if ((rc = rd_count(&r, &count)))
      break;
    for (uint64_t i = 0; rc == 0 && i < count; i++)
      if ((rc = rd_add_string(&r, v)) == 0)
        rc = rd_add_string(&r, v);
    break;
  case RDB_TYPE_ZSET:
  case RDB_TYPE_ZSET_2:
    v->type = KV_ZSET;
    if ((rc = rd_count(&r, &count)))
      break;
    for (uint64_t i = 0; rc == 0 && i < count; i++) {
      double d;
      if ((rc = rd_add_string(&r, v)) == 0)
        rc = type == RDB_TYPE_ZSET ? rd_text_double(&r, &d) : rd_bin_double(&r, &d);
      if (rc == 0)
        rc = add_score(v, d);
    }
    break;
  case RDB_TYPE_LIST_ZIPLIST:
    v->type = KV_LIST;
    rc = rd_blob(&r, v, ziplist_read);
    break;
  case RDB_TYPE_SET_INTSET:
    v->type = KV_SET;
    rc = rd_blob(&r, v, intset_read);
    break;
  case RDB_TYPE_ZSET_ZIPLIST:
  case RDB_TYPE_ZSET_LISTPACK:
    v->type = KV_ZSET;
    if ((rc = rd_blob(&r, v, type == RDB_TYPE_ZSET_ZIPLIST ? ziplist_read : listpack_read)) == 0)
      rc = split_scores(v);
    break;
  case RDB_TYPE_HASH_ZIPLIST:
  case RDB_TYPE_HASH_LISTPACK:
    v->type = KV_HASH;
    if ((rc = rd_blob(&r, v, type == RDB_TYPE_HASH_ZIPLIST ? ziplist_read : listpack_read)) == 0 && v->n % 2)
      rc = RDB_BAD;
    break;
  case RDB_TYPE_LIST_QUICKLIST:
  case RDB_TYPE_LIST_QUICKLIST_2:
    v->type = KV_LIST;
    if ((rc = rd_count(&r, &count)))
      break;
    for (uint64_t i = 0; rc == 0 && i < count; i++) {
      uint64_t container = QUICKLIST_NODE_PACKED;
      if (type == RDB_TYPE_LIST_QUICKLIST_2 && (rc = rd_count(&r, &container)))
        break;
      if (container == QUICKLIST_NODE_PLAIN)
        rc = rd_add_string(&r, v);
      else if (container == QUICKLIST_NODE_PACKED)
        rc = rd_blob(&r, v, type == RDB_TYPE_LIST_QUICKLIST ? ziplist_read : listpack_read);
      else
        rc = RDB_BAD;
    }
    break;
  default: rc = RDB_BAD; break; /* zipmap, modules, streams, or no type at all */
  }
  if (rc)
    goto out;
  /* No empty containers (Redis: "empty keys"), no duplicate members or fields. */
  if (v->type != KV_STRING && v->n == 0)
    rc = RDB_BAD;
  else if (v->type == KV_SET || v->type == KV_ZSET)
    rc = distinct(v, 1);
  else if (v->type == KV_HASH)
    rc = distinct(v, 2);
out:
  if (rc)
    shmd__kv_rdb_free(v);
  return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* Writing a payload */

typedef struct wr_s {
  unsigned char *p;
  size_t n, cap;
  int rc;
} wr_t;

static unsigned char *wr_room(wr_t *w, size_t n) {
  if (w->rc)
    return NULL;
  if (w->cap - w->n < n) {
    size_t cap = w->cap ? w->cap : 256;
    while (cap - w->n < n)
      cap *= 2;
    unsigned char *p = realloc(w->p, cap);
    if (p == NULL) {
      w->rc = SHMD_ENOMEM;
      return NULL;
    }
    w->p = p;
    w->cap = cap;
  }
  unsigned char *p = w->p + w->n;
  w->n += n;
  return p;
}

static void wr_bytes(wr_t *w, const void *p, size_t n) {
  unsigned char *d = wr_room(w, n);
  if (d && n)
    memcpy(d, p, n);
}

static void wr_byte(wr_t *w, unsigned b) {
  unsigned char c = (unsigned char)b;
  wr_bytes(w, &c, 1);
}

static void wr_le(wr_t *w, uint64_t u, int n) {
  unsigned char b[8];
  for (int i = 0; i < n; i++)
    b[i] = (unsigned char)(u >> (8 * i));
  wr_bytes(w, b, (size_t)n);
}

/* rdbSaveLen */
static void wr_len(wr_t *w, uint64_t len) {
  if (len < 64) {
    wr_byte(w, (unsigned)len);
  } else if (len < 16384) {
    wr_byte(w, (unsigned)(len >> 8) | 0x40);
    wr_byte(w, (unsigned)(len & 0xff));
  } else if (len <= UINT32_MAX) {
    wr_byte(w, RDB_32BITLEN);
    for (int i = 3; i >= 0; i--)
      wr_byte(w, (unsigned)(len >> (8 * i)) & 0xff);
  } else {
    wr_byte(w, RDB_64BITLEN);
    for (int i = 7; i >= 0; i--)
      wr_byte(w, (unsigned)(len >> (8 * i)) & 0xff);
  }
}

/* rdbSaveRawString without compression: integer-encoded when rdbTryIntegerEncoding would. */
static void wr_string(wr_t *w, const void *p, size_t n) {
  long long x;
  if (n > 0 && n <= 11 && parse_ll(p, n, &x) == 0 && x >= INT32_MIN && x <= INT32_MAX) {
    if (x >= -128 && x <= 127) {
      wr_byte(w, (RDB_ENCVAL << 6) | RDB_ENC_INT8);
      wr_le(w, (uint64_t)x, 1);
    } else if (x >= -32768 && x <= 32767) {
      wr_byte(w, (RDB_ENCVAL << 6) | RDB_ENC_INT16);
      wr_le(w, (uint64_t)x, 2);
    } else {
      wr_byte(w, (RDB_ENCVAL << 6) | RDB_ENC_INT32);
      wr_le(w, (uint64_t)x, 4);
    }
    return;
  }
  wr_len(w, n);
  wr_bytes(w, p, n);
}

/* The size of one listpack string entry of n bytes (header, data, back-length). */
static size_t lp_entry_size(size_t n) {
  unsigned char bl[5];
  size_t hl = n < 64 ? 1 : n < 4096 ? 2 : 5;
  return hl + n + lp_backlen(hl + n, bl);
}

static void lp_put(wr_t *w, const void *p, size_t n) {
  unsigned char bl[5];
  size_t hl;
  if (n < 64) {
    hl = 1;
    wr_byte(w, 0x80 | (unsigned)n);
  } else if (n < 4096) {
    hl = 2;
    wr_byte(w, 0xe0 | (unsigned)(n >> 8));
    wr_byte(w, (unsigned)(n & 0xff));
  } else {
    hl = 5;
    wr_byte(w, 0xf0);
    wr_le(w, n, 4);
  }
  wr_bytes(w, p, n);
  wr_bytes(w, bl, lp_backlen(hl + n, bl));
}

/* A list as RDB_TYPE_LIST_QUICKLIST_2: listpack nodes of at most LP_NODE_BYTES (or one element). */
static void wr_list(wr_t *w, const shmd_reply_t *e, size_t n) {
  size_t nodes = 0;
  for (size_t i = 0, sz = 0, k = 0; i < n; i++) {
    size_t es = lp_entry_size(e[i].len);
    if (k == 0 || sz + es > LP_NODE_BYTES) {
      nodes++;
      sz = 7;
      k = 0;
    }
    sz += es;
    k++;
  }
  wr_len(w, nodes);
  for (size_t i = 0; i < n;) {
    size_t sz = 7 + lp_entry_size(e[i].len), j = i + 1;
    while (j < n && sz + lp_entry_size(e[j].len) <= LP_NODE_BYTES)
      sz += lp_entry_size(e[j++].len);
    wr_len(w, QUICKLIST_NODE_PACKED);
    wr_len(w, sz);
    wr_le(w, sz, 4);
    wr_le(w, j - i < 65535 ? j - i : 65535, 2);
    for (; i < j; i++)
      lp_put(w, e[i].str, e[i].len);
    wr_byte(w, 0xff);
  }
}

static void wr_footer(wr_t *w) {
  wr_le(w, SHMD_KV_RDB_VERSION, 2);
  if (w->rc == 0)
    wr_le(w, shmd__kv_crc64(0, w->p, w->n), 8);
}

/* ---------------------------------------------------------------------------------------------- */
/* The commands */

/* Runs another command's handler on x's context (same transaction, same locks) into *out. */
static int nested(cc_t *x, const char *name, int argc, const char *const *argv, const size_t *lens,
                  shmd_reply_t *out) {
  const shmd__kv_cmd_t *cmd = shmd__kv_cmd_find(name, strlen(name));
  if (cmd == NULL)
    return SHMD_EINVAL;
  memset(out, 0, sizeof *out);
  cc_t y = {x->c, argc, argv, lens, out, cmd->name};
  int rc = cmd->handler(&y);
  if (rc == 0 && out->type == SHMD_REPLY_ERROR) { /* cannot happen on a key of the right type */
    shmd__set_detail("kv: %s inside %s answered %.*s", name, x->name, (int)out->len, out->str);
    rc = SHMD_ECORRUPT;
  }
  if (rc) {
    shmd__kv_reply_clear(out);
    memset(out, 0, sizeof *out);
  }
  return rc;
}

int shmd__kv_dump_value(cc_t *x, const void *key, size_t klen, unsigned char **out, size_t *outlen) {
  kv_ref_t ref;
  int rc = kv_lookup(x->c, key, klen, &ref);
  if (rc)
    return rc;
  wr_t w = {NULL, 0, 0, 0};
  shmd_reply_t v;
  memset(&v, 0, sizeof v);
  const char *argv[5] = {NULL, key, "0", "-1", "WITHSCORES"};
  size_t lens[5] = {0, klen, 1, 2, 10};
  switch (ref.rec->type) {
  case KV_STRING:
    wr_byte(&w, RDB_TYPE_STRING);
    wr_string(&w, ref.data, ref.len);
    break;
  case KV_LIST:
    argv[0] = "lrange";
    if ((rc = nested(x, "lrange", 4, argv, lens, &v)) == 0) {
      wr_byte(&w, RDB_TYPE_LIST_QUICKLIST_2);
      wr_list(&w, v.elems, v.nelems);
    }
    break;
  case KV_SET:
    argv[0] = "smembers";
    if ((rc = nested(x, "smembers", 2, argv, lens, &v)) == 0) {
      wr_byte(&w, RDB_TYPE_SET);
      wr_len(&w, v.nelems);
      for (size_t i = 0; i < v.nelems; i++)
        wr_string(&w, v.elems[i].str, v.elems[i].len);
    }
    break;
  case KV_HASH:
    argv[0] = "hgetall";
    if ((rc = nested(x, "hgetall", 2, argv, lens, &v)) == 0) {
      wr_byte(&w, RDB_TYPE_HASH);
      wr_len(&w, v.nelems / 2);
      for (size_t i = 0; i < v.nelems; i++)
        wr_string(&w, v.elems[i].str, v.elems[i].len);
    }
    break;
  case KV_ZSET:
    argv[0] = "zrange";
    if ((rc = nested(x, "zrange", 5, argv, lens, &v)) == 0) {
      wr_byte(&w, RDB_TYPE_ZSET_2);
      wr_len(&w, v.nelems / 2);
      for (size_t i = 0; rc == 0 && i + 1 < v.nelems; i += 2) {
        double d;
        if (parse_double(v.elems[i + 1].str, v.elems[i + 1].len, &d)) {
          /* ZRANGE prints what parse_double reads back ("inf" included) */
          shmd__set_detail("kv: DUMP could not read back the score %.*s", (int)v.elems[i + 1].len, v.elems[i + 1].str);
          rc = SHMD_ECORRUPT;
          break;
        }
        uint64_t u;
        memcpy(&u, &d, sizeof u);
        wr_string(&w, v.elems[i].str, v.elems[i].len);
        wr_le(&w, u, 8);
      }
    }
    break;
  default: rc = SHMD_ECORRUPT; break;
  }
  shmd__kv_reply_clear(&v);
  if (rc == 0) {
    wr_footer(&w);
    rc = w.rc;
  }
  if (rc) {
    free(w.p);
    return rc;
  }
  *out = w.p;
  *outlen = w.n;
  return 0;
}

int shmd__kv_cmd_dump(cc_t *x) {
  unsigned char *p;
  size_t n;
  int rc = shmd__kv_dump_value(x, A(1), L(1), &p, &n);
  if (rc == SHMD_ENOTFOUND)
    return r_nil(x->r);
  if (rc)
    return rc;
  rc = r_bulk(x->r, p, n);
  free(p);
  return rc;
}

/* Builds the decoded container value v at key (absent) through the write handlers, in batches. */
#define RESTORE_BATCH 512
static int build(cc_t *x, const void *key, size_t klen, const kv_rdbval_t *v) {
  const char *argv[2 + 2 * RESTORE_BATCH];
  size_t lens[2 + 2 * RESTORE_BATCH];
  char scores[RESTORE_BATCH][32];
  const char *name = v->type == KV_LIST ? "rpush" : v->type == KV_SET ? "sadd" : v->type == KV_HASH ? "hset" : "zadd";
  size_t per = v->type == KV_HASH ? 2 : 1; /* items per element */
  size_t elems = v->n / per;
  argv[0] = name;
  lens[0] = strlen(name);
  argv[1] = key;
  lens[1] = klen;
  for (size_t i = 0; i < elems;) {
    int argc = 2;
    size_t end = elems - i < RESTORE_BATCH ? elems : i + RESTORE_BATCH;
    for (size_t k = 0; i < end; i++, k++) {
      if (v->type == KV_ZSET) {
        lens[argc] = fmt_double(v->score[i], scores[k], sizeof scores[k]);
        argv[argc++] = scores[k];
      }
      for (size_t j = 0; j < per; j++) {
        argv[argc] = (const char *)v->it[i * per + j].p;
        lens[argc++] = v->it[i * per + j].n;
      }
    }
    shmd_reply_t r;
    int rc = nested(x, name, argc, argv, lens, &r);
    shmd__kv_reply_clear(&r);
    if (rc)
      return rc;
  }
  return 0;
}

int shmd__kv_rdb_build(cc_t *x, const void *key, size_t klen, const kv_rdbval_t *v, uint64_t expire) {
  if (v->type == KV_STRING)
    return kv_put_string(x->c, key, klen, v->it[0].p, v->it[0].n, NULL, 0, expire);
  kv_ref_t ref;
  int rc = build(x, key, klen, v);
  if (rc == 0 && expire && (rc = kv_lookup(x->c, key, klen, &ref)) == 0)
    rc = kv_set_expire(x->c, &ref, expire);
  return rc;
}

/* RESTORE key ttl serialized-value [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ frequency], in
 * Redis 7.0's order of checks (restoreCommand). IDLETIME and FREQ are checked and ignored:
 * shmdict keeps neither access times nor frequencies. */
int shmd__kv_cmd_restore(cc_t *x) {
  int replace = 0, absttl = 0;
  long long idle = -1, freq = -1, ttl;
  for (int j = 4; j < x->argc; j++) {
    int more = x->argc - j - 1;
    if (eq(A(j), L(j), "replace")) {
      replace = 1;
    } else if (eq(A(j), L(j), "absttl")) {
      absttl = 1;
    } else if (eq(A(j), L(j), "idletime") && more >= 1 && freq == -1) {
      if (parse_ll(A(j + 1), L(j + 1), &idle))
        return r_error(x->r, ERR_NOTINT);
      if (idle < 0)
        return r_error(x->r, "ERR Invalid IDLETIME value, must be >= 0");
      j++;
    } else if (eq(A(j), L(j), "freq") && more >= 1 && idle == -1) {
      if (parse_ll(A(j + 1), L(j + 1), &freq))
        return r_error(x->r, ERR_NOTINT);
      if (freq < 0 || freq > 255)
        return r_error(x->r, "ERR Invalid FREQ value, must be >= 0 and <= 255");
      j++;
    } else {
      return r_error(x->r, ERR_SYNTAX);
    }
  }
  kv_ref_t ref;
  int rc = kv_lookup(x->c, A(1), L(1), &ref);
  if (rc && rc != SHMD_ENOTFOUND)
    return rc;
  int exists = rc == 0;
  if (exists && !replace)
    return r_error(x->r, "BUSYKEY Target key name already exists.");
  if (parse_ll(A(2), L(2), &ttl))
    return r_error(x->r, ERR_NOTINT);
  if (ttl < 0)
    return r_error(x->r, "ERR Invalid TTL value, must be >= 0");
  kv_rdbval_t v;
  rc = shmd__kv_rdb_decode((const unsigned char *)A(3), L(3), &v);
  if (rc == RDB_BADVER)
    return r_error(x->r, "ERR DUMP payload version or checksum are wrong");
  if (rc == RDB_BAD)
    return r_error(x->r, "ERR Bad data format");
  if (rc)
    return rc;
  if (exists && (rc = kv_delete(x->c, A(1), L(1))))
    goto out;
  uint64_t expire = 0;
  if (ttl) {
    expire = absttl ? (uint64_t)ttl : (uint64_t)ttl > UINT64_MAX - x->c->now ? UINT64_MAX : x->c->now + (uint64_t)ttl;
    if (expire <= x->c->now) { /* already expired: the old value is gone, nothing is made */
      rc = r_ok(x->r);
      goto out;
    }
  }
  if ((rc = shmd__kv_rdb_build(x, A(1), L(1), &v, expire)) == 0)
    rc = r_ok(x->r);
out:
  shmd__kv_rdb_free(&v);
  return rc;
}
