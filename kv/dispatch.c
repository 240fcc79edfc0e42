/* SPDX-License-Identifier: MIT */
/*
 * The generic command entry point (Redis's call() in server.c): shmd_kv_command_db().
 *
 * It looks the command up in a table that, like Redis's, gives each command its arity and its key
 * positions (first, last, step). Before the handler runs, the dispatcher opens one transaction and
 * takes the stripe locks of all the command's keys in stripe-index order (commands without fixed
 * key positions, KEYS / SCAN / DBSIZE / FLUSHDB, take every stripe), so a multi-key command is one
 * atomic step and lock order never inverts. Handlers validate their arguments and the types of
 * their keys before they change anything; a handler that ends with an error reply has its
 * transaction aborted (undoing, e.g., lazy expiry it triggered), otherwise it commits. Container
 * failures that are not Redis errors map to replies: SHMD_ENOSPC -> Redis's OOM error,
 * SHMD_ETXFULL -> an ERR naming the transaction limit (2^26 entries per list beyond the lane's
 * own: only a command of tens of millions of elements meets it); SHMD_ECORRUPT, SHMD_ENOLANE,
 * SHMD_ENOMEM are returned as statuses.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/cmd.h"

enum { F_ALL = 1 }; /* takes every stripe */

typedef struct cmd_s {
  const char *name;
  int arity; /* > 0 exact, < 0 at least -arity */
  int (*fn)(cc_t *);
  int first, last, step; /* key positions (last < 0: from the end) */
  unsigned flags;
} cmd_t;

static const cmd_t commands[] = {
    {"del", -2, shmd__kv_cmd_del, 1, -1, 1, 0},
    {"unlink", -2, shmd__kv_cmd_del, 1, -1, 1, 0},
    {"exists", -2, shmd__kv_cmd_exists, 1, -1, 1, 0},
    {"type", 2, shmd__kv_cmd_type, 1, 1, 1, 0},
    {"rename", 3, shmd__kv_cmd_rename, 1, 2, 1, 0},
    {"keys", 2, shmd__kv_cmd_keys, 0, 0, 0, F_ALL},
    {"scan", -2, shmd__kv_cmd_scan, 0, 0, 0, F_ALL},
    {"dbsize", 1, shmd__kv_cmd_dbsize, 0, 0, 0, F_ALL},
    {"flushdb", -1, shmd__kv_cmd_flushdb, 0, 0, 0, F_ALL},
    {"expire", -3, shmd__kv_cmd_expire, 1, 1, 1, 0},
    {"pexpire", -3, shmd__kv_cmd_pexpire, 1, 1, 1, 0},
    {"ttl", 2, shmd__kv_cmd_ttl, 1, 1, 1, 0},
    {"pttl", 2, shmd__kv_cmd_pttl, 1, 1, 1, 0},
    {"persist", 2, shmd__kv_cmd_persist, 1, 1, 1, 0},
    {"set", -3, shmd__kv_cmd_set, 1, 1, 1, 0},
    {"get", 2, shmd__kv_cmd_get, 1, 1, 1, 0},
    {"getdel", 2, shmd__kv_cmd_getdel, 1, 1, 1, 0},
    {"mget", -2, shmd__kv_cmd_mget, 1, -1, 1, 0},
    {"mset", -3, shmd__kv_cmd_mset, 1, -1, 2, 0},
    {"setnx", 3, shmd__kv_cmd_setnx, 1, 1, 1, 0},
    {"incr", 2, shmd__kv_cmd_incr, 1, 1, 1, 0},
    {"decr", 2, shmd__kv_cmd_decr, 1, 1, 1, 0},
    {"incrby", 3, shmd__kv_cmd_incrby, 1, 1, 1, 0},
    {"decrby", 3, shmd__kv_cmd_decrby, 1, 1, 1, 0},
    {"incrbyfloat", 3, shmd__kv_cmd_incrbyfloat, 1, 1, 1, 0},
    {"append", 3, shmd__kv_cmd_append, 1, 1, 1, 0},
    {"strlen", 2, shmd__kv_cmd_strlen, 1, 1, 1, 0},
    {"getrange", 4, shmd__kv_cmd_getrange, 1, 1, 1, 0},
    {"setrange", 4, shmd__kv_cmd_setrange, 1, 1, 1, 0},
    {"hset", -4, shmd__kv_cmd_hset, 1, 1, 1, 0},
    {"hmset", -4, shmd__kv_cmd_hset, 1, 1, 1, 0},
    {"hsetnx", 4, shmd__kv_cmd_hsetnx, 1, 1, 1, 0},
    {"hget", 3, shmd__kv_cmd_hget, 1, 1, 1, 0},
    {"hmget", -3, shmd__kv_cmd_hmget, 1, 1, 1, 0},
    {"hdel", -3, shmd__kv_cmd_hdel, 1, 1, 1, 0},
    {"hexists", 3, shmd__kv_cmd_hexists, 1, 1, 1, 0},
    {"hlen", 2, shmd__kv_cmd_hlen, 1, 1, 1, 0},
    {"hkeys", 2, shmd__kv_cmd_hkeys, 1, 1, 1, 0},
    {"hvals", 2, shmd__kv_cmd_hvals, 1, 1, 1, 0},
    {"hgetall", 2, shmd__kv_cmd_hgetall, 1, 1, 1, 0},
    {"hincrby", 4, shmd__kv_cmd_hincrby, 1, 1, 1, 0},
    {"hscan", -3, shmd__kv_cmd_hscan, 1, 1, 1, 0},
    {"lpush", -3, shmd__kv_cmd_lpush, 1, 1, 1, 0},
    {"rpush", -3, shmd__kv_cmd_rpush, 1, 1, 1, 0},
    {"lpop", -2, shmd__kv_cmd_lpop, 1, 1, 1, 0},
    {"rpop", -2, shmd__kv_cmd_rpop, 1, 1, 1, 0},
    {"llen", 2, shmd__kv_cmd_llen, 1, 1, 1, 0},
    {"lindex", 3, shmd__kv_cmd_lindex, 1, 1, 1, 0},
    {"lrange", 4, shmd__kv_cmd_lrange, 1, 1, 1, 0},
    {"lset", 4, shmd__kv_cmd_lset, 1, 1, 1, 0},
    {"lrem", 4, shmd__kv_cmd_lrem, 1, 1, 1, 0},
    {"ltrim", 4, shmd__kv_cmd_ltrim, 1, 1, 1, 0},
    {"linsert", 5, shmd__kv_cmd_linsert, 1, 1, 1, 0},
    {"sadd", -3, shmd__kv_cmd_sadd, 1, 1, 1, 0},
    {"srem", -3, shmd__kv_cmd_srem, 1, 1, 1, 0},
    {"sismember", 3, shmd__kv_cmd_sismember, 1, 1, 1, 0},
    {"smembers", 2, shmd__kv_cmd_smembers, 1, 1, 1, 0},
    {"scard", 2, shmd__kv_cmd_scard, 1, 1, 1, 0},
    {"spop", -2, shmd__kv_cmd_spop, 1, 1, 1, 0},
    {"srandmember", -2, shmd__kv_cmd_srandmember, 1, 1, 1, 0},
    {"sinter", -2, shmd__kv_cmd_sinter, 1, -1, 1, 0},
    {"sunion", -2, shmd__kv_cmd_sunion, 1, -1, 1, 0},
    {"sdiff", -2, shmd__kv_cmd_sdiff, 1, -1, 1, 0},
    {"sscan", -3, shmd__kv_cmd_sscan, 1, 1, 1, 0},
    {"zadd", -4, shmd__kv_cmd_zadd, 1, 1, 1, 0},
    {"zrem", -3, shmd__kv_cmd_zrem, 1, 1, 1, 0},
    {"zscore", 3, shmd__kv_cmd_zscore, 1, 1, 1, 0},
    {"zincrby", 4, shmd__kv_cmd_zincrby, 1, 1, 1, 0},
    {"zcard", 2, shmd__kv_cmd_zcard, 1, 1, 1, 0},
    {"zrank", 3, shmd__kv_cmd_zrank, 1, 1, 1, 0},
    {"zrevrank", 3, shmd__kv_cmd_zrevrank, 1, 1, 1, 0},
    {"zrange", -4, shmd__kv_cmd_zrange, 1, 1, 1, 0},
    {"zrangebyscore", -4, shmd__kv_cmd_zrangebyscore, 1, 1, 1, 0},
    {"zcount", 4, shmd__kv_cmd_zcount, 1, 1, 1, 0},
    {"zremrangebyrank", 4, shmd__kv_cmd_zremrangebyrank, 1, 1, 1, 0},
    {"zscan", -3, shmd__kv_cmd_zscan, 1, 1, 1, 0},
};

static const cmd_t *find_cmd(const char *name, size_t len) {
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (eq(name, len, commands[i].name))
      return &commands[i];
  return NULL;
}

static int unknown_cmd(shmd_reply_t *r, int argc, argv_t argv, const size_t *lens) {
  char buf[1024];
  size_t n = (size_t)snprintf(buf, sizeof buf, "ERR unknown command '%.*s', with args beginning with: ",
                              (int)(lens[0] > 128 ? 128 : lens[0]), argv[0]);
  for (int i = 1; i < argc && n < sizeof buf - 200; i++)
    n += (size_t)snprintf(buf + n, sizeof buf - n, "'%.*s' ", (int)(lens[i] > 128 ? 128 : lens[i]), argv[i]);
  return r_str(r, SHMD_REPLY_ERROR, buf, n < sizeof buf ? n : sizeof buf - 1);
}

int shmd_kv_command_db(shmd_store_t *s, unsigned db, int argc, const char *const argv[], const size_t lens[],
                       shmd_reply_t **reply) {
  if (s == NULL || reply == NULL || argc < 1 || argv == NULL || lens == NULL)
    return SHMD_EINVAL;
  if (db >= KV_NDB)
    return SHMD_EINVAL;
  shmd_reply_t *r = calloc(1, sizeof *r);
  if (r == NULL)
    return SHMD_ENOMEM;
  const cmd_t *cmd = find_cmd(argv[0], lens[0]);
  int rc;
  if (cmd == NULL) {
    rc = unknown_cmd(r, argc, argv, lens);
    goto done;
  }
  if ((cmd->arity > 0 && argc != cmd->arity) || (cmd->arity < 0 && argc < -cmd->arity)) {
    rc = r_error(r, "ERR wrong number of arguments for '%s' command", cmd->name);
    goto done;
  }
  /* Redis refuses a bulk argument longer than proto-max-bulk-len before it parses the command, so
   * no stored string, field or member is ever longer than that. */
  for (int i = 1; i < argc; i++)
    if (lens[i] > KV_STRING_MAX) {
      rc = r_error(r, ERR_BIG_ARG);
      goto done;
    }
  kv_ctx_t c;
  if ((rc = kv_begin(s, db, &c)))
    goto done;
  unsigned mask = 0;
  if (cmd->flags & F_ALL) {
    mask = (1u << KV_STRIPES) - 1;
  } else {
    int last = cmd->last < 0 ? argc + cmd->last : cmd->last;
    for (int i = cmd->first; i <= last && i < argc; i += cmd->step)
      mask |= 1u << kv_stripe_of(argv[i], lens[i]);
  }
  cc_t x = {&c, argc, argv, lens, r};
  uint64_t max = shmd_kv_max_reply();
  kv_budget_t budget = {max, max, 0};
  rc = kv_lock_stripes(&c, mask);
  if (rc == 0) {
    shmd__kv_budget_set(&budget);
    rc = cmd->fn(&x);
    shmd__kv_budget_set(NULL);
    if (budget.over && rc == 0)
      rc = SHMD_ENOMEM; /* a failed charge that a handler did not pass on still fails the command */
  }
  if (rc == 0 && r->type == SHMD_REPLY_ERROR) {
    shmd_tx_abort(c.tx);
  } else if (rc == 0) {
    rc = kv_end(&c, 0);
    if (rc == SHMD_EABORTED)
      rc = SHMD_ECORRUPT;
  } else {
    kv_end(&c, rc);
    shmd__kv_reply_clear(r);
    memset(r, 0, sizeof *r);
    if (budget.over)
      rc = r_error(r, ERR_BIG_REPLY);
    else if (rc == SHMD_EWRONGTYPE)
      rc = r_error(r, ERR_WRONGTYPE);
    else if (rc == SHMD_ENOSPC)
      rc = r_error(r, "OOM command not allowed when used memory > 'maxmemory'.");
    else if (rc == SHMD_ETXFULL)
      rc = r_error(r, "ERR shmdict: the command needs a bigger transaction than one can hold (too many elements at once)");
    else if (rc == SHMD_ETOOBIG)
      rc = r_error(r, ERR_BIG_STRING);
  }
done:
  if (rc) {
    shmd_reply_free(r);
    return rc;
  }
  *reply = r;
  return 0;
}

int shmd_kv_command(shmd_store_t *s, int argc, const char *const argv[], const size_t lens[], shmd_reply_t **reply) {
  return shmd_kv_command_db(s, 0, argc, argv, lens, reply);
}
