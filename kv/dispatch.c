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

#include "kv/changelog.h"
#include "kv/cmd.h"
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

/* Redis 7.0's processCommand text: the name cut at 128 bytes, then quoted arguments while the
 * list is shorter than 128 bytes (each cut to what is left of the 128), C strings (a NUL ends an
 * argument), CR and LF turned into spaces. */
static size_t cstrlen(const char *p, size_t n) {
  const char *z = memchr(p, 0, n);
  return z ? (size_t)(z - p) : n;
}
static int unknown_cmd(shmd_reply_t *r, int argc, argv_t argv, const size_t *lens) {
  char args[512], buf[1024];
  size_t an = 0;
  args[0] = 0;
  for (int i = 1; i < argc && an < 128; i++) {
    size_t l = cstrlen(argv[i], lens[i]);
    if (l > 128 - an)
      l = 128 - an;
    an += (size_t)snprintf(args + an, sizeof args - an, "'%.*s' ", (int)l, argv[i]);
  }
  size_t l0 = cstrlen(argv[0], lens[0]);
  int n = snprintf(buf, sizeof buf, "ERR unknown command '%.*s', with args beginning with: %s",
                   (int)(l0 > 128 ? 128 : l0), argv[0], args);
  size_t len = n < 0 ? 0 : (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1;
  for (size_t i = 0; i < len; i++)
    if (buf[i] == '\r' || buf[i] == '\n')
      buf[i] = ' ';
  return r_str(r, SHMD_REPLY_ERROR, buf, len);
}

/* After a write command committed: wake the processes whose clients block on its keys (kv/block.c). */
void shmd__kv_signal_keys(shmd_store_t *s, unsigned db, const shmd__kv_cmd_t *cmd, int argc, const char *const argv[],
                          const size_t lens[]) {
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

/* Redis refuses a bulk argument longer than proto-max-bulk-len before it parses the command, so
 * no stored string, field or member is ever longer than that. 0, or 1 with r the error. */
static int big_arg(int argc, const size_t lens[], shmd_reply_t *r, int *rc) {
  for (int i = 1; i < argc; i++)
    if (lens[i] > KV_STRING_MAX) {
      *rc = r_error(r, ERR_BIG_ARG);
      return 1;
    }
  return 0;
}

const shmd__kv_cmd_t *shmd__kv_cmd_check(int argc, const char *const argv[], const size_t lens[], shmd_reply_t *r,
                                         int *rc) {
  *rc = 0;
  const shmd__kv_cmd_t *cmd = shmd__kv_cmd_find(argv[0], lens[0]);
  if (cmd == NULL) {
    *rc = unknown_cmd(r, argc, argv, lens);
    return NULL;
  }
  if ((cmd->arity > 0 && argc != cmd->arity) || (cmd->arity < 0 && argc < -cmd->arity)) {
    *rc = r_error(r, "ERR wrong number of arguments for '%s' command", cmd->name);
    return NULL;
  }
  if (big_arg(argc, lens, r, rc))
    return NULL;
  return cmd;
}

unsigned shmd__kv_cmd_stripes(const shmd__kv_cmd_t *cmd, int argc, const char *const argv[], const size_t lens[]) {
  if (cmd->handler == shmd__kv_cmd_flushall || cmd->handler == shmd__kv_cmd_move || cmd->handler == shmd__kv_cmd_copy)
    return 0; /* takes the stripes of every database it uses itself, in database order (db.c, copy.c) */
  if (cmd->first_key == 0 || (cmd->flags & KV_CMD_MOVABLEKEYS))
    /* no key arguments (KEYS, SCAN, DBSIZE, FLUSHDB), or keys the positions do not say (LMPOP's
     * numkeys, ZUNIONSTORE's sources, SORT's STORE): every stripe */
    return (1u << KV_STRIPES) - 1;
  unsigned mask = 0;
  int last = cmd->last_key < 0 ? argc + cmd->last_key : cmd->last_key;
  for (int i = cmd->first_key; i <= last && i < argc; i += cmd->key_step)
    mask |= 1u << kv_stripe_of(argv[i], lens[i]);
  return mask;
}

/* Did the transaction change anything since `before` (shmd_tx_room's three counts)? Every store
 * to shared memory is logged, allocated or freed in it, so the counts move; the lists only grow
 * within a transaction, and when one grows into a bigger extension its room jumps instead. */
static int tx_moved(shmd_tx_t *tx, const size_t before[3]) {
  size_t now[3];
  shmd_tx_room(tx, &now[0], &now[1], &now[2]);
  return now[0] != before[0] || now[1] != before[1] || now[2] != before[2];
}

int shmd__kv_error_of(int rc, int over, shmd_reply_t *r) {
  if (over)
    return r_error(r, ERR_BIG_REPLY);
  if (rc == SHMD_EWRONGTYPE)
    return r_error(r, ERR_WRONGTYPE);
  if (rc == SHMD_ENOSPC)
    return r_error(r, "OOM command not allowed when used memory > 'maxmemory'.");
  if (rc == SHMD_ETXFULL)
    return r_error(r, "ERR shmdict: the command needs a bigger transaction than one can hold (too many elements at once)");
  if (rc == SHMD_ETOOBIG)
    return r_error(r, ERR_BIG_STRING);
  if (rc == SHMD_EBUSY) /* the change log is full, or persistence started under the command */
    return r_error(r, "ERR shmdict: %s", shmd_errdetail());
  return rc;
}

/* GET outside a transaction: the keyspace's lock-free read (kv_peek, keyspace.c), no transaction,
 * no lock. Returns 0 with the reply built, a negative status, or 1 when the command must run the
 * transactional way. The value fits in KV_PEEK_BUF bytes, below any reply ceiling (at least
 * 4096), so the reply needs no budget. */
static int get_peek(shmd_store_t *s, unsigned db, const char *key, size_t klen, shmd_reply_t *r) {
  unsigned char rec[KV_PEEK_BUF];
  size_t n;
  int p = kv_peek(s, db, key, klen, rec, &n);
  if (p == KV_PEEK_ABSENT)
    return r_nil(r);
  if (p != KV_PEEK_FOUND)
    return 1;
  uint32_t type;
  memcpy(&type, rec, sizeof type);
  if (type != KV_STRING)
    return r_error(r, ERR_WRONGTYPE);
  int rc = r_bulk(r, rec + sizeof(kv_rec_t), n - sizeof(kv_rec_t));
  if (rc) {
    shmd__kv_reply_clear(r);
    memset(r, 0, sizeof *r);
  }
  return rc;
}

int shmd__kv_cmd_run(shmd_store_t *s, unsigned db, const shmd__kv_cmd_t *cmd, int argc, const char *const argv[],
                     const size_t lens[], shmd_reply_t *r, kv_budget_t *exec_budget, int *garbage) {
  int rc;
  uint64_t max = shmd_kv_max_reply();
  kv_budget_t own = {max, max, 0};
  kv_budget_t *budget = exec_budget ? exec_budget : &own;
  if (!(cmd->flags & (KV_CMD_WRITE | KV_CMD_READONLY))) {
    /* PING, ECHO, TIME (and the transaction commands' stateless answers): no keys, nothing to
     * lock, no transaction. */
    cc_t x = {NULL, argc, argv, lens, r, cmd->name};
    shmd__kv_budget_set(budget);
    rc = cmd->handler(&x);
    shmd__kv_budget_set(NULL);
    if (budget->over && rc == 0)
      rc = SHMD_ENOMEM;
    if (rc) {
      shmd__kv_reply_clear(r);
      memset(r, 0, sizeof *r);
      if (!exec_budget)
        rc = budget->over ? r_error(r, ERR_BIG_REPLY) : rc;
    }
    return rc;
  }
  if (cmd->handler == shmd__kv_cmd_move && argc == 3) {
    /* MOVE creates its target database as Redis would have it, before its transaction */
    long long d;
    shmd_ptr_t dp;
    if (shmd__kv_parse_ll(argv[2], lens[2], &d) == 0 && d >= 0 && d < KV_NDB && (rc = kv_db_ensure(s, (unsigned)d, &dp)))
      return rc;
  }
  if (cmd->handler == shmd__kv_cmd_copy) /* so does COPY ... DB n */
    for (int i = 3; i + 1 < argc; i++) {
      long long d;
      shmd_ptr_t dp;
      if (eq(argv[i], lens[i], "db") && shmd__kv_parse_ll(argv[i + 1], lens[i + 1], &d) == 0 && d >= 0 &&
          d < KV_NDB && (rc = kv_db_ensure(s, (unsigned)d, &dp)))
        return rc;
    }
  if (cmd->handler == shmd__kv_cmd_get && exec_budget == NULL && (rc = get_peek(s, db, argv[1], lens[1], r)) <= 0)
    return rc;
  kv_ctx_t c;
  for (int tries = 0;; tries++) {
    if ((rc = kv_begin(s, db, &c)))
      return rc;
    rc = kv_lock_stripes(&c, shmd__kv_cmd_stripes(cmd, argc, argv, lens));
    /* persistence was turned on while this command waited for its stripes unlogged: again */
    if (rc == SHMD_EBUSY && c.aof == NULL && tries < 3 && exec_budget == NULL && shmd_tx_depth(s) == 1) {
      shmd_tx_abort(c.tx);
      continue;
    }
    break;
  }
  cc_t x = {&c, argc, argv, lens, r, cmd->name};
  size_t room[3];
  if (rc == 0) {
    shmd_tx_room(c.tx, &room[0], &room[1], &room[2]);
    shmd__kv_budget_set(budget);
    if (shmd__kv_cmd_detaches(cmd)) {
      /* a shared value (COPY) gets containers of its own before the command changes it: every
       * key the command may write (all arguments when the positions do not say: LMPOP, ZMPOP) */
      int movable = (cmd->flags & KV_CMD_MOVABLEKEYS) != 0;
      int first = movable ? 1 : cmd->first_key, last = movable ? argc - 1 : cmd->last_key < 0 ? argc + cmd->last_key : cmd->last_key;
      for (int i = first; rc == 0 && i <= last && i < argc; i += movable ? 1 : cmd->key_step)
        rc = shmd__kv_detach(&c, argv[i], lens[i]);
    }
    if (rc == 0)
      rc = cmd->handler(&x);
    shmd__kv_budget_set(NULL);
    if (budget->over && rc == 0)
      rc = SHMD_ENOMEM; /* a failed charge that a handler did not pass on still fails the command */
  }
  /* WATCH: a write command that changed something bumps the versions of its keys (lazy expiry
   * bumps the key it deletes itself, in any command; FLUSHDB / FLUSHALL bump the epoch). */
  int moved = rc == 0 && r->type != SHMD_REPLY_ERROR && (cmd->flags & KV_CMD_WRITE) && tx_moved(c.tx, room);
  /* The change log: a write that changed something appends its propagation form (changelog.c). */
  if (moved && c.aof)
    rc = shmd__aof_command(&c, cmd, argc, argv, lens, r);
  if (rc == 0 && moved && cmd->first_key) {
    int last = cmd->last_key < 0 ? argc + cmd->last_key : cmd->last_key;
    for (int i = cmd->first_key; rc == 0 && i <= last && i < argc; i += cmd->key_step)
      rc = kv_touch(&c, argv[i], lens[i]);
  }
  if (garbage)
    *garbage |= c.garbage;
  if (rc == 0 && r->type == SHMD_REPLY_ERROR) {
    if (exec_budget) /* inside EXEC: the others go on; the handler changed nothing before its error */
      rc = kv_end(&c, 0);
    else
      shmd_tx_abort(c.tx);
  } else if (rc == 0) {
    int outer = exec_budget == NULL && shmd_tx_depth(s) == 1;
    rc = kv_end(&c, 0);
    if (rc == SHMD_EABORTED)
      rc = SHMD_ECORRUPT;
    if (rc == 0 && (cmd->flags & KV_CMD_WRITE) && outer) {
      shmd__kv_signal_keys(s, db, cmd, argc, argv, lens);
      if (cmd->handler == shmd__kv_cmd_flushall)
        for (unsigned d = 0; d < KV_NDB; d++)
          if (d != db)
            (void)shmd_kv_drain(s, d, 0);
    }
  } else {
    kv_end(&c, rc);
    shmd__kv_reply_clear(r);
    memset(r, 0, sizeof *r);
    if (!exec_budget) /* EXEC maps the status itself: the whole transaction is gone */
      rc = shmd__kv_error_of(rc, budget->over, r);
  }
  return rc;
}

int shmd__kv_run(shmd_store_t *s, unsigned db, const shmd__kv_cmd_t *cmd, int argc, const char *const argv[],
                 const size_t lens[], shmd_reply_t *r) {
  int rc;
  if (big_arg(argc, lens, r, &rc))
    return rc;
  return shmd__kv_cmd_run(s, db, cmd, argc, argv, lens, r, NULL, NULL);
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
  int rc;
  const shmd__kv_cmd_t *cmd = shmd__kv_cmd_check(argc, argv, lens, r, &rc);
  if (cmd)
    rc = shmd__kv_cmd_run(s, db, cmd, argc, argv, lens, r, NULL, NULL);
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
