/* SPDX-License-Identifier: MIT */
/*
 * Internal: Redis 7.0's DUMP payload format (kv/rdb.c): the CRC64, the decoder RESTORE uses (and
 * COPY's and the tests' callers may), and the encoder behind DUMP.
 */
#ifndef SHMD_KV_RDB_H
#define SHMD_KV_RDB_H

#include <stddef.h>
#include <stdint.h>

#include "kv/kv_int.h"

/* Redis 7.0's RDB_VERSION, written in every payload; payloads of a later version are refused. */
#define SHMD_KV_RDB_VERSION 10

/* Decoder results besides 0 and the SHMD_E* statuses (SHMD_ENOMEM): positive on purpose so they
 * can never be mistaken for a status. */
#define RDB_BADVER 1 /* "ERR DUMP payload version or checksum are wrong" */
#define RDB_BAD 2    /* "ERR Bad data format" */

/* Redis's crc64 (Jones polynomial, reflected, init 0): crc64(0, "123456789", 9) is
 * 0xe9c6d914c4b8d9ca. Continues from crc. Cannot fail. */
uint64_t shmd__kv_crc64(uint64_t crc, const void *p, size_t n);

typedef struct kv_rdbitem_s {
  const unsigned char *p;
  size_t n;
} kv_rdbitem_t;

/* A decoded value: type KV_STRING (one item), KV_LIST (the elements in order), KV_SET (the
 * members), KV_HASH (field, value, field, value, ...), KV_ZSET (the members, with score[i] the
 * score of it[i]). Items point into the payload or into blocks the value owns. */
typedef struct kv_rdbval_s {
  uint32_t type;
  kv_rdbitem_t *it;
  size_t n, cap;
  double *score;
  size_t nscore, scap;
  void *arena;
} kv_rdbval_t;

/* Checks a payload's footer (length, version, CRC): 0 or RDB_BADVER. */
int shmd__kv_rdb_verify(const unsigned char *p, size_t n);
/* Decodes a whole payload into *v (free it with shmd__kv_rdb_free). Returns 0, RDB_BADVER,
 * RDB_BAD (malformed: nothing to free then) or SHMD_ENOMEM. Never reads outside p[0 .. n). */
int shmd__kv_rdb_decode(const unsigned char *p, size_t n, kv_rdbval_t *v);
/* Frees what v owns and zeroes it. Cannot fail. */
void shmd__kv_rdb_free(kv_rdbval_t *v);

struct cmdctx_s;
/* DUMP's payload of key in x's database (the caller holds its stripe): a malloc'ed buffer the
 * caller frees. SHMD_ENOTFOUND when there is no such key. */
int shmd__kv_dump_value(struct cmdctx_s *x, const void *key, size_t klen, unsigned char **out, size_t *outlen);

/* Makes key (absent) in x's database hold the decoded value v, with expiry `expire` (absolute Unix
 * ms, 0 none), through the write handlers (RPUSH, SADD, HSET, ZADD; in x's transaction). */
int shmd__kv_rdb_build(struct cmdctx_s *x, const void *key, size_t klen, const kv_rdbval_t *v, uint64_t expire);

#endif
