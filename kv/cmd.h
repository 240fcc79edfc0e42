/* SPDX-License-Identifier: MIT */
/*
 * Internal: what the command handlers share (the Redis server.h of the keyspace): the command
 * context, the error texts, key lookups that reply for a missing key, the SCAN family, and the
 * helpers one type's file lends another (a set is a hash with empty values; the typed C API adds
 * sorted-set members as ZADD does). Handlers live in db.c (keys and databases) and t_string.c,
 * t_hash.c, t_list.c, t_set.c, t_zset.c (one file per type); dispatch.c runs them.
 */
#ifndef SHMD_KV_CMD_H
#define SHMD_KV_CMD_H

#include "kv/cmdtable.h"
#include "kv/kv_int.h"
#include "kv/reply.h"
#include "kv/util.h"

typedef const char *const *argv_t;

#define ERR_WRONGTYPE "WRONGTYPE Operation against a key holding the wrong kind of value"
#define ERR_SYNTAX "ERR syntax error"
#define ERR_NOTINT "ERR value is not an integer or out of range"
#define ERR_NOTFLOAT "ERR value is not a valid float"
#define ERR_OVERFLOW "ERR increment or decrement would overflow"
/* Redis 7.0's SRANDMEMBER count range is -LONG_MAX .. LONG_MAX (getRangeLongFromObjectOrReply),
 * with this wording (sic: "must between"), checked before the key is looked up. */
#define ERR_COUNT_RANGE "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"
#define ERR_BIG_REPLY "ERR reply exceeds maximum allowed size (shmdict max-reply-bytes)"
#define ERR_BIG_STRING "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
#define ERR_BIG_ARG "ERR Protocol error: invalid bulk length"

/* A running command: its keyspace context (transaction, locked stripes, now), its arguments and
 * the reply it fills. */
typedef struct cmdctx_s {
  kv_ctx_t *c;
  int argc;
  argv_t argv;
  const size_t *lens;
  shmd_reply_t *r;
  const char *name; /* the command's name in the table (lower case), for error texts */
} cc_t;

#define A(i) (x->argv[i])
#define L(i) (x->lens[i])
#define WRONGTYPE() r_error(x->r, ERR_WRONGTYPE)

/* ---------------------------------------------------------------------------------------------- */
/* Lookups and the SCAN family (db.c) */

/* Looks up the container of `type` at key A(1); replies nil / 0 / empty (via `missing`) when absent
 * and WRONGTYPE for another type. Returns 1 to go on, 0 when replied, negative on failure. */
enum { MISS_NIL, MISS_ZERO, MISS_EMPTY, MISS_NILARR };
int shmd__kv_need(cc_t *x, uint32_t type, int missing, kv_ref_t *ref);
static inline int need(cc_t *x, uint32_t type, int missing, kv_ref_t *ref) {
  return shmd__kv_need(x, type, missing, ref);
}

/* HSCAN / SSCAN / ZSCAN key cursor [MATCH p] [COUNT n]; mode 0 keys, 1 key+val, 2 key+score. */
int shmd__kv_xscan(cc_t *x, uint32_t type, int mode);

/* ---------------------------------------------------------------------------------------------- */
/* Hash containers, shared by hashes and sets (t_hash.c) */

/* HDEL / SREM, HEXISTS / SISMEMBER, HLEN / SCARD, HKEYS.. / SMEMBERS for the key type `type`. */
int shmd__kv_del_members(cc_t *x, int type);
int shmd__kv_has_member(cc_t *x, int type);
int shmd__kv_count_members(cc_t *x, int type);
int shmd__kv_hash_walk(cc_t *x, uint32_t type, int keys, int vals);

/* A walk over a hash container collecting keys and/or values that match pat (NULL: all). */
typedef struct hwalk_s {
  vec_t v;
  int keys, vals;
  const char *pat;
  size_t pl;
} hwalk_t;
int shmd__kv_hwalk_visit(const void *k, size_t kl, const void *val, size_t vl, void *arg);

/* Random keys of the non-empty hash container h, as SRANDMEMBER picks them (t_set.c): one
 * without a count; with a count, up to count distinct ones, or -count with repeats when count is
 * negative. Copies into *out (the caller frees it). */
int shmd__kv_rand_members(cc_t *x, shmd_ptr_t h, int with_count, long long count, vec_t *out);
/* A thread's xorshift random numbers (t_set.c). */
uint64_t shmd__kv_rng(void);
/* SINTERCARD's numkeys at A(i): 1 .. the arguments left; `low` is the text for a bad or small
 * number. 1 with *nk, 0 when replied. */
int shmd__kv_parse_numkeys(cc_t *x, int i, const char *low, long long *nk);
/* HRANDFIELD / ZRANDMEMBER key [count [withword]] for a hash / sorted set key (t_hash.c). */
int shmd__kv_randfield(cc_t *x, uint32_t type, const char *withword);

/* ---------------------------------------------------------------------------------------------- */
/* Sorted sets, for the typed C API (t_zset.c) */

/* ZADD of one member with the options as flags: 0 done, 1 not done (NX/XX/GT/LT), 2 the result
 * would be NaN, negative on failure. */
int shmd__kv_zadd_one(kv_ctx_t *c, kv_ref_t *ref, const void *m, size_t ml, double score, int nx, int xx,
                      int gt, int lt, int incr, int *added, int *changed, double *out);
/* The 0-based rank of member m (rev: from the highest score). */
int shmd__kv_zrank(kv_ctx_t *c, kv_ref_t *ref, const void *m, size_t ml, int rev, uint64_t *rank);

/* ---------------------------------------------------------------------------------------------- */
/* LMPOP / ZMPOP (t_list.c) */

/* Parses "numkeys key... <w0|w1> [COUNT count]" starting at argument `at` with Redis's errors:
 * 1 with *where = 0 (w0) or 1 (w1) and *count (1 when absent), or 0 when it replied an error. */
int shmd__kv_parse_mpop(cc_t *x, int at, const char *w0, const char *w1, long long *numkeys, int *where,
                        long long *count);

/* ---------------------------------------------------------------------------------------------- */
/* Running commands (dispatch.c), for shmd_kv_command_db() and EXEC (multi.c) */

/* The stripes of the command's keys (every stripe for a command without key positions). */
unsigned shmd__kv_cmd_stripes(const shmd__kv_cmd_t *cmd, int argc, const char *const argv[], const size_t lens[]);
/* Runs a checked command on database db in one transaction (joining the thread's open one) and
 * fills r. Alone (exec_budget NULL): an error reply rolls the transaction back, a status that is a
 * Redis error (OOM, WRONGTYPE, reply too big, ...) becomes that error reply. Inside EXEC
 * (exec_budget: the whole EXEC's reply budget): an error reply keeps the transaction going, and
 * any negative status is returned as is (the level is aborted, so EXEC's commit rolls back).
 * *garbage (may be NULL) is or-ed with 1 when the command put something on the garbage list. */
int shmd__kv_cmd_run(shmd_store_t *s, unsigned db, const shmd__kv_cmd_t *cmd, int argc, const char *const argv[],
                     const size_t lens[], shmd_reply_t *r, kv_budget_t *exec_budget, int *garbage);
/* Makes r the Redis error reply for a status that has one (reply too big when `over`, WRONGTYPE,
 * OOM, transaction full, string too big) and returns 0; returns rc itself for the others. */
int shmd__kv_error_of(int rc, int over, shmd_reply_t *r);
/* After a write command committed (outside any caller's transaction): wakes the processes whose
 * clients block on its keys (kv/block.c). Cannot fail. */
void shmd__kv_signal_keys(shmd_store_t *s, unsigned db, const shmd__kv_cmd_t *cmd, int argc, const char *const argv[],
                          const size_t lens[]);

/* Does cmd change a list, set, hash or sorted set in place (so its keys are detached from a shared
 * value first; kv/copy.c)? 1 or 0. */
int shmd__kv_cmd_detaches(const shmd__kv_cmd_t *cmd);

/* ---------------------------------------------------------------------------------------------- */
/* The handlers: shmd__kv_cmd_<handler>() for each line of the command table */

#define KV_CMD(name, arity, first, last, step, flags, handler, group, syntax, summary) \
  int shmd__kv_cmd_##handler(cc_t *x);
#include "kv/commands.def"
#undef KV_CMD

#endif
