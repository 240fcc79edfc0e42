/* SPDX-License-Identifier: MIT */
/*
 * The command table and the generic command entry point, shmd_kv_command_db() (Redis's
 * server.c: the table and call()).
 *
 * The table is built from kv/commands.def: per command its arity, key positions (first, last,
 * step), Redis 7.0 flags, handler and help texts. A name is found in O(1) (see "Lookup"); the
 * arity is checked from the table before the handler runs, with Redis's "ERR wrong number of
 * arguments for '...' command". Before the handler runs, the dispatcher opens one transaction and
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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/cmd.h"
#include "kv/cmdtable.h"
#include "kv/notify.h"

/* ---------------------------------------------------------------------------------------------- */
/* The table */

static const shmd__kv_cmd_t commands[] = {
#define KV_CMD(name, arity, first, last, step, flags, handler, group, syntax, summary) \
  {#name, sizeof #name - 1, arity, first, last, step, flags, group, syntax, summary, shmd__kv_cmd_##handler},
#include "kv/commands.def"
#undef KV_CMD
};

#define KV_NCMDS (sizeof commands / sizeof commands[0])

static const char *const flag_names[] = {
#define XX(u, str, d) str,
    SHMD_KV_CMD_FLAGS(XX)
#undef XX
};

size_t shmd__kv_cmd_count(void) { return KV_NCMDS; }

const shmd__kv_cmd_t *shmd__kv_cmd_at(size_t i) { return i < KV_NCMDS ? &commands[i] : NULL; }

const char *shmd__kv_cmd_flag_name(unsigned flag) {
  for (unsigned b = 0; b < KV_CMD_NFLAGS; b++)
    if (flag == 1u << b)
      return flag_names[b];
  return NULL;
}

/* ---------------------------------------------------------------------------------------------- */
/* Lookup
 *
 * Names hash (FNV-1a over the ASCII-lower-cased bytes) into an open-addressing table of
 * KV_CMD_SLOTS slots, each the table index + 1 of a command or 0, probed linearly; the table is at
 * most half full, so a lookup ends at an empty slot after a probe or two. A name longer than the
 * longest command is rejected before hashing. The slots are built once per process by the first
 * lookup, which claims the job with a compare-and-swap (0 -> 1) and publishes it with a release
 * store (2); a lookup that meets a build in progress scans the table instead of waiting, so no
 * lock is taken and nothing blocks (and a child forked in the middle of a build keeps scanning:
 * slower, still right). Matching is ASCII case-insensitive and independent of the locale.
 */

#define KV_CMD_SLOTS 512u
_Static_assert(KV_NCMDS * 2 <= KV_CMD_SLOTS, "the command hash table must stay at most half full");
_Static_assert(KV_NCMDS < UINT16_MAX, "slots hold a table index + 1 in 16 bits");

static uint16_t cmd_slot[KV_CMD_SLOTS];
static size_t cmd_name_max;
static int cmd_slots_state; /* 0 not built, 1 being built, 2 ready */

static inline unsigned char ascii_lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c; }

static uint32_t name_hash(const char *s, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++)
    h = (h ^ ascii_lower((unsigned char)s[i])) * 16777619u;
  return h;
}

static int name_is(const shmd__kv_cmd_t *c, const char *s, size_t n) {
  if (c->name_len != n)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (ascii_lower((unsigned char)s[i]) != (unsigned char)c->name[i])
      return 0;
  return 1;
}

static void build_slots(void) {
  for (size_t k = 0; k < KV_NCMDS; k++) {
    const shmd__kv_cmd_t *c = &commands[k];
    if (c->name_len > cmd_name_max)
      cmd_name_max = c->name_len;
    size_t i = name_hash(c->name, c->name_len) & (KV_CMD_SLOTS - 1);
    while (cmd_slot[i] != 0)
      i = (i + 1) & (KV_CMD_SLOTS - 1);
    cmd_slot[i] = (uint16_t)(k + 1);
  }
}

static const shmd__kv_cmd_t *scan_table(const char *name, size_t len) {
  for (size_t k = 0; k < KV_NCMDS; k++)
    if (name_is(&commands[k], name, len))
      return &commands[k];
  return NULL;
}

const shmd__kv_cmd_t *shmd__kv_cmd_find(const char *name, size_t len) {
  int st = __atomic_load_n(&cmd_slots_state, __ATOMIC_ACQUIRE);
  if (st != 2) {
    int expect = 0;
    if (st != 0 || !__atomic_compare_exchange_n(&cmd_slots_state, &expect, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
      return scan_table(name, len);
    build_slots();
    __atomic_store_n(&cmd_slots_state, 2, __ATOMIC_RELEASE);
  }
  if (len == 0 || len > cmd_name_max)
    return NULL;
  for (size_t i = name_hash(name, len) & (KV_CMD_SLOTS - 1);; i = (i + 1) & (KV_CMD_SLOTS - 1)) {
    unsigned k = cmd_slot[i];
    if (k == 0)
      return NULL;
    if (name_is(&commands[k - 1], name, len))
      return &commands[k - 1];
  }
}

/* ---------------------------------------------------------------------------------------------- */
/* Running a command */

static int unknown_cmd(shmd_reply_t *r, int argc, argv_t argv, const size_t *lens) {
  char buf[1024];
  size_t n = (size_t)snprintf(buf, sizeof buf, "ERR unknown command '%.*s', with args beginning with: ",
                              (int)(lens[0] > 128 ? 128 : lens[0]), argv[0]);
  for (int i = 1; i < argc && n < sizeof buf - 200; i++)
    n += (size_t)snprintf(buf + n, sizeof buf - n, "'%.*s' ", (int)(lens[i] > 128 ? 128 : lens[i]), argv[i]);
  return r_str(r, SHMD_REPLY_ERROR, buf, n < sizeof buf ? n : sizeof buf - 1);
}

/* After a write command committed: wake the processes whose clients block on its keys (kv/block.c). */
static void signal_keys(shmd_store_t *s, unsigned db, const shmd__kv_cmd_t *cmd, int argc, argv_t argv,
                        const size_t *lens) {
  if (cmd->first_key == 0)
    return;
  int last = cmd->last_key < 0 ? argc + cmd->last_key : cmd->last_key;
  const char *keys[16];
  size_t kl[16];
  int n = 0;
  for (int i = cmd->first_key; i <= last && i < argc; i += cmd->key_step) {
    keys[n] = argv[i];
    kl[n++] = lens[i];
    if (n == 16) {
      shmd__kv_block_signal(s, db, n, keys, kl);
      n = 0;
    }
  }
  shmd__kv_block_signal(s, db, n, keys, kl);
}

int shmd__kv_run(shmd_store_t *s, unsigned db, const shmd__kv_cmd_t *cmd, int argc, const char *const argv[],
                 const size_t lens[], shmd_reply_t *r) {
  int rc;
  /* Redis refuses a bulk argument longer than proto-max-bulk-len before it parses the command, so
   * no stored string, field or member is ever longer than that. */
  for (int i = 1; i < argc; i++)
    if (lens[i] > KV_STRING_MAX)
      return r_error(r, ERR_BIG_ARG);
  uint64_t max = shmd_kv_max_reply();
  kv_budget_t budget = {max, max, 0};
  if (!(cmd->flags & (KV_CMD_WRITE | KV_CMD_READONLY))) {
    /* PING, ECHO, TIME: no keys, nothing to lock, no transaction. */
    cc_t x = {NULL, argc, argv, lens, r};
    shmd__kv_budget_set(&budget);
    rc = cmd->handler(&x);
    shmd__kv_budget_set(NULL);
    if (budget.over && rc == 0)
      rc = SHMD_ENOMEM;
    if (rc) {
      shmd__kv_reply_clear(r);
      memset(r, 0, sizeof *r);
      rc = budget.over ? r_error(r, ERR_BIG_REPLY) : rc;
    }
    return rc;
  }
  kv_ctx_t c;
  if ((rc = kv_begin(s, db, &c)))
    return rc;
  unsigned mask = 0;
  if (cmd->handler == shmd__kv_cmd_flushall) {
    mask = 0; /* takes every database's stripes itself, in database order (db.c) */
  } else if (cmd->first_key == 0) { /* no key arguments (KEYS, SCAN, DBSIZE, FLUSHDB): every stripe */
    mask = (1u << KV_STRIPES) - 1;
  } else {
    int last = cmd->last_key < 0 ? argc + cmd->last_key : cmd->last_key;
    for (int i = cmd->first_key; i <= last && i < argc; i += cmd->key_step)
      mask |= 1u << kv_stripe_of(argv[i], lens[i]);
  }
  cc_t x = {&c, argc, argv, lens, r};
  rc = kv_lock_stripes(&c, mask);
  if (rc == 0) {
    shmd__kv_budget_set(&budget);
    rc = cmd->handler(&x);
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
    if (rc == 0 && (cmd->flags & KV_CMD_WRITE) && shmd_tx_depth(s) == 0) {
      signal_keys(s, db, cmd, argc, argv, lens);
      if (cmd->handler == shmd__kv_cmd_flushall)
        for (unsigned d = 0; d < KV_NDB; d++)
          if (d != db)
            (void)shmd_kv_drain(s, d, 0);
    }
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
  return rc;
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
  const shmd__kv_cmd_t *cmd = shmd__kv_cmd_find(argv[0], lens[0]);
  int rc;
  if (cmd == NULL)
    rc = unknown_cmd(r, argc, argv, lens);
  else if ((cmd->arity > 0 && argc != cmd->arity) || (cmd->arity < 0 && argc < -cmd->arity))
    rc = r_error(r, "ERR wrong number of arguments for '%s' command", cmd->name);
  else
    rc = shmd__kv_run(s, db, cmd, argc, argv, lens, r);
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
