/* SPDX-License-Identifier: MIT */
/*
 * Internal: the command table (kv/commands.def), read-only. shmd_kv_command_db() runs commands
 * from it; the future server's COMMAND command, the tool's help and completion, and the generator
 * of docs/commands.md's list (tools/gen_commands_md.c) read it through the functions below.
 */
#ifndef SHMD_KV_CMDTABLE_H
#define SHMD_KV_CMDTABLE_H

#include <stddef.h>
#include <stdint.h>

/* Command flags: Redis 7.0's names (COMMAND INFO) for the ones that apply to the keyspace.
 * XX(NAME, "name", what it says). They describe; the dispatcher does not act on them yet. */
#define SHMD_KV_CMD_FLAGS(XX)                                                                    \
  XX(WRITE, "write", "may change the keyspace")                                                  \
  XX(READONLY, "readonly", "reads only (lazy expiry may still delete an expired key)")           \
  XX(DENYOOM, "denyoom", "may need memory (Redis refuses it up front when over maxmemory)")      \
  XX(ADMIN, "admin", "administrative")                                                           \
  XX(FAST, "fast", "O(1) or O(log n), as Redis marks it")

enum {
#define XX(u, s, d) KV_CMD_BIT_##u,
  SHMD_KV_CMD_FLAGS(XX)
#undef XX
  KV_CMD_NFLAGS
};
enum {
#define XX(u, s, d) KV_CMD_##u = 1u << KV_CMD_BIT_##u,
  SHMD_KV_CMD_FLAGS(XX)
#undef XX
};

struct cmdctx_s;

/* One command (see the field notes at the top of commands.def). */
typedef struct shmd__kv_cmd_s {
  const char *name;   /* lower case */
  size_t name_len;    /* strlen(name) */
  int arity;          /* > 0: exactly arity arguments; < 0: at least -arity (the name counts) */
  int first_key;      /* argv index of the first key; 0: the command has no key arguments */
  int last_key;       /* argv index of the last key; < 0 counts from the end (-1: the last) */
  int key_step;       /* distance between keys */
  unsigned flags;     /* KV_CMD_WRITE, ... */
  const char *group;  /* Redis's command group: "generic", "string", ... */
  const char *syntax; /* e.g. "GET key" */
  const char *summary;
  int (*handler)(struct cmdctx_s *x);
} shmd__kv_cmd_t;

/* The number of commands in the table. Cannot fail. */
size_t shmd__kv_cmd_count(void);
/* The i-th command in table order (commands.def's), or NULL when i >= shmd__kv_cmd_count(). */
const shmd__kv_cmd_t *shmd__kv_cmd_at(size_t i);
/* The command named name[0 .. len) (ASCII case-insensitive), or NULL when there is none.
 * O(1): an open-addressing hash table built on first use (see dispatch.c). Cannot fail. */
const shmd__kv_cmd_t *shmd__kv_cmd_find(const char *name, size_t len);
/* The name of one flag bit ("write", ...), or NULL for a bit that is not a flag. */
const char *shmd__kv_cmd_flag_name(unsigned flag);

/*
 * Runs `cmd` (from shmd__kv_cmd_find(); the caller has checked its arity) on database `db` as
 * shmd_kv_command_db() does, filling *r, which the caller zeroed and frees what it holds with
 * shmd__kv_reply_clear() (kv/reply.h). For the server, which looks the name up itself and keeps
 * the reply on its stack. Returns 0 or a negative status (r is then empty).
 */
struct shmd_reply_s;
struct shmd_store_s;
int shmd__kv_run(struct shmd_store_s *s, unsigned db, const shmd__kv_cmd_t *cmd, int argc, const char *const argv[],
                 const size_t lens[], struct shmd_reply_s *r);

/* The number of keys of database db (DBSIZE), 0 for a database never used, which is not created.
 * For INFO keyspace. Returns 0 or a negative status. */
int shmd__kv_dbsize(struct shmd_store_s *s, unsigned db, uint64_t *keys);

#endif
