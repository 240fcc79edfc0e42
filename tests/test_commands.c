/* SPDX-License-Identifier: MIT */
/*
 * Tests of the command table (kv/commands.def through kv/cmdtable.h): every entry is well formed,
 * the O(1) lookup finds each name in any case and nothing else, shmd_kv_command_db() takes each
 * command's arity from the table, with Redis's wording, and docs/commands.md's command list is the
 * one tools/gen_commands_md prints from the table.
 */
#include <ctype.h>

#include "kv/cmdtable.h"
#include "shmdict/kv.h"
#include "support.h"

TestSuite(commands, .init = ts_init, .fini = ts_fini);

static const char *const groups[] = {"generic", "server", "connection", "string", "bitmap", "hash", "list", "set", "sorted-set",
                                     "transactions"};

Test(commands, entries_are_well_formed) {
  size_t n = shmd__kv_cmd_count();
  cr_assert_gt(n, 70);
  cr_assert_null(shmd__kv_cmd_at(n));
  for (size_t i = 0; i < n; i++) {
    const shmd__kv_cmd_t *c = shmd__kv_cmd_at(i);
    cr_assert_not_null(c);
    cr_assert_eq(strlen(c->name), c->name_len, "%s", c->name);
    for (size_t k = 0; k < c->name_len; k++)
      cr_assert(islower((unsigned char)c->name[k]) || c->name[k] == '_', "%s: names are lower case", c->name); /* sort_ro */
    cr_assert_neq(c->arity, 0, "%s", c->name);
    /* Key positions: none (0, 0, 0), or first >= 1 with a step >= 1 and a last that is not
     * before first; every key position must fit in the arity's minimum. */
    if (c->first_key == 0) {
      cr_assert(c->last_key == 0 && c->key_step == 0, "%s", c->name);
    } else {
      cr_assert(c->first_key >= 1 && c->key_step >= 1, "%s", c->name);
      cr_assert(c->last_key < 0 || c->last_key >= c->first_key, "%s", c->name);
      int min_argc = c->arity > 0 ? c->arity : -c->arity;
      cr_assert_lt(c->first_key, min_argc, "%s: the first key must be a required argument", c->name);
      if (c->last_key > 0)
        cr_assert_lt(c->last_key, min_argc, "%s", c->name);
    }
    /* At most one of write / readonly (neither: PING, ECHO, TIME and the transaction commands, as
     * in Redis); a command with keys reads or writes them, except WATCH; only known flag bits. */
    cr_assert_leq(!!(c->flags & KV_CMD_WRITE) + !!(c->flags & KV_CMD_READONLY), 1, "%s", c->name);
    if (!(c->flags & (KV_CMD_WRITE | KV_CMD_READONLY)) && strcmp(c->group, "transactions") != 0)
      cr_assert_eq(c->first_key, 0, "%s: a command with keys reads or writes them", c->name);
    cr_assert_eq(c->flags & ~((1u << KV_CMD_NFLAGS) - 1), 0, "%s", c->name);
    int known = 0;
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++)
      known |= strcmp(c->group, groups[g]) == 0;
    cr_assert(known, "%s: group %s", c->name, c->group);
    /* The syntax starts with the name in capitals; the summary is one short line. */
    for (size_t k = 0; k < c->name_len; k++)
      cr_assert_eq(c->syntax[k], toupper((unsigned char)c->name[k]), "%s: %s", c->name, c->syntax);
    cr_assert(c->syntax[c->name_len] == 0 || c->syntax[c->name_len] == ' ', "%s", c->syntax);
    size_t sl = strlen(c->summary);
    cr_assert(sl > 5 && sl <= 100 && c->summary[sl - 1] == '.' && !strchr(c->summary, '\n'), "%s: %s", c->name,
              c->summary);
    cr_assert_not_null(c->handler, "%s", c->name);
  }
}

Test(commands, flag_names_are_redis_names) {
  cr_assert_str_eq(shmd__kv_cmd_flag_name(KV_CMD_WRITE), "write");
  cr_assert_str_eq(shmd__kv_cmd_flag_name(KV_CMD_READONLY), "readonly");
  cr_assert_str_eq(shmd__kv_cmd_flag_name(KV_CMD_DENYOOM), "denyoom");
  cr_assert_str_eq(shmd__kv_cmd_flag_name(KV_CMD_ADMIN), "admin");
  cr_assert_str_eq(shmd__kv_cmd_flag_name(KV_CMD_FAST), "fast");
  cr_assert_null(shmd__kv_cmd_flag_name(0));
  cr_assert_null(shmd__kv_cmd_flag_name(KV_CMD_WRITE | KV_CMD_FAST));
  cr_assert_null(shmd__kv_cmd_flag_name(1u << KV_CMD_NFLAGS));
}

/* Finds every name as written, upper-cased and in mixed case; near misses find nothing. */
static void check_lookups(void) {
  for (size_t i = 0; i < shmd__kv_cmd_count(); i++) {
    const shmd__kv_cmd_t *c = shmd__kv_cmd_at(i);
    char buf[64];
    cr_assert_lt(c->name_len + 2, sizeof buf);
    memcpy(buf, c->name, c->name_len + 1);
    cr_assert_eq(shmd__kv_cmd_find(buf, c->name_len), c, "%s", c->name);
    for (size_t k = 0; k < c->name_len; k++)
      buf[k] = (char)toupper((unsigned char)buf[k]);
    cr_assert_eq(shmd__kv_cmd_find(buf, c->name_len), c, "%s", buf);
    for (size_t k = 0; k < c->name_len; k += 2)
      buf[k] = (char)tolower((unsigned char)buf[k]);
    cr_assert_eq(shmd__kv_cmd_find(buf, c->name_len), c, "%s", buf);
    /* a prefix, an extension, a changed byte, a NUL in the name */
    if (c->name_len > 1 && shmd__kv_cmd_find(buf, c->name_len - 1) != NULL)
      cr_assert_str_neq(shmd__kv_cmd_find(buf, c->name_len - 1)->name, c->name);
    buf[c->name_len] = 'x';
    buf[c->name_len + 1] = 0;
    const shmd__kv_cmd_t *ext = shmd__kv_cmd_find(buf, c->name_len + 1);
    cr_assert(ext == NULL || ext != c, "%s", buf);
    buf[c->name_len] = 0;
    cr_assert_null(shmd__kv_cmd_find(buf, c->name_len + 1), "%s with a NUL", c->name);
    buf[0] = (char)(buf[0] ^ 0x80);
    cr_assert_null(shmd__kv_cmd_find(buf, c->name_len), "%s with a high bit", c->name);
  }
  cr_assert_null(shmd__kv_cmd_find("", 0));
  cr_assert_null(shmd__kv_cmd_find("foo", 3));
  cr_assert_null(shmd__kv_cmd_find("select", 6));
  cr_assert_null(shmd__kv_cmd_find("zremrangebyrankx", 16));
  cr_assert_eq(shmd__kv_cmd_find("GETX", 3), shmd__kv_cmd_find("get", 3)); /* the length decides */
  char longname[300];
  memset(longname, 'a', sizeof longname);
  cr_assert_null(shmd__kv_cmd_find(longname, sizeof longname));
}

Test(commands, lookup_finds_every_name_in_any_case_and_nothing_else) { check_lookups(); }

/* Runs `name` with argc - 1 arguments "1" and returns the reply (the shared runner, support_kv.h). */
static shmd_reply_t *run_argc(shmd_store_t *s, const char *name, int argc) {
  ts_args_t a = {0};
  ts_args_add(&a, name, strlen(name));
  for (int i = 1; i < argc; i++)
    ts_args_add(&a, "1", 1);
  shmd_reply_t *r = NULL;
  int rc = ts_kv_args(s, 0, &a, &r);
  ts_args_free(&a);
  cr_assert_eq(rc, 0, "%s argc %d: %s", name, argc, shmd_strerror(rc));
  return r;
}

static int is_arity_error(const shmd_reply_t *r, const char *name) {
  char want[128];
  snprintf(want, sizeof want, "ERR wrong number of arguments for '%s' command", name);
  return r->type == SHMD_REPLY_ERROR && strcmp(r->str, want) == 0;
}

/* Every command answers Redis's arity error, byte for byte, one argument short of its arity (and
 * one past an exact arity), named in lower case whatever case it was called in; at its arity it
 * runs (whatever it then answers, it is not the arity error). */
Test(commands, arity_errors_come_from_the_table) {
  shmd_store_t *s = ts_open("arity", 4 << 20, 4 << 20);
  for (size_t i = 0; i < shmd__kv_cmd_count(); i++) {
    const shmd__kv_cmd_t *c = shmd__kv_cmd_at(i);
    char upper[64];
    for (size_t k = 0; k <= c->name_len; k++)
      upper[k] = (char)toupper((unsigned char)c->name[k]);
    int need = c->arity > 0 ? c->arity : -c->arity;
    shmd_reply_t *r;
    if (need > 1) {
      r = run_argc(s, upper, need - 1);
      cr_assert(is_arity_error(r, c->name), "%s with %d arguments: %s", upper, need - 1, r->str ? r->str : "");
      shmd_reply_free(r);
    }
    if (c->arity > 0) {
      r = run_argc(s, c->name, need + 1);
      cr_assert(is_arity_error(r, c->name), "%s with %d arguments: %s", c->name, need + 1, r->str ? r->str : "");
      shmd_reply_free(r);
    }
    r = run_argc(s, c->name, need);
    cr_assert(!is_arity_error(r, c->name), "%s with its arity %d", c->name, need);
    shmd_reply_free(r);
  }
  shmd_close(s);
}

/* Reads all of a stream into a NUL-terminated malloc'd string. */
static char *slurp(FILE *f) {
  size_t n = 0, cap = 1 << 16;
  char *p = malloc(cap);
  cr_assert_not_null(p);
  size_t got;
  while ((got = fread(p + n, 1, cap - n - 1, f)) > 0) {
    n += got;
    if (cap - n - 1 == 0) {
      cap *= 2;
      p = realloc(p, cap);
      cr_assert_not_null(p);
    }
  }
  p[n] = 0;
  return p;
}

/* docs/commands.md holds, between its markers, exactly what tools/gen_commands_md prints. */
Test(commands, docs_list_is_generated_from_the_table) {
  const char *gen = getenv("GEN_COMMANDS_MD"), *md = getenv("COMMANDS_MD");
  cr_assert(gen && md, "GEN_COMMANDS_MD / COMMANDS_MD are not set (run the tests with `meson test`)");
  char *argv[] = {(char *)gen, NULL};
  ts_run_t g = ts_runv(NULL, 0, argv); /* the shared program runner, support_cli.h */
  cr_assert_eq(g.status, 0, "%s failed: %s", gen, g.err);
  char *want = g.out;
  FILE *f = fopen(md, "rb");
  cr_assert_not_null(f, "%s", md);
  char *doc = slurp(f);
  fclose(f);
  const char *end_mark = "<!-- END generated -->\n";
  cr_assert(strncmp(want, "<!-- BEGIN generated", 20) == 0 && strstr(want, end_mark) != NULL);
  char *a = strstr(doc, "<!-- BEGIN generated");
  char *z = a ? strstr(a, end_mark) : NULL;
  cr_assert(a && z, "%s has no generated section", md);
  z += strlen(end_mark);
  size_t n = (size_t)(z - a);
  if (n != strlen(want) || memcmp(a, want, n) != 0) {
    size_t i = 0;
    while (i < n && want[i] && a[i] == want[i])
      i++;
    size_t line = 1;
    for (size_t k = 0; k < i; k++)
      line += a[k] == '\n';
    cr_assert_fail("%s's command list differs from the table at line %zu of the section (run `%s --update %s`)",
                   md, line, gen, md);
  }
  ts_run_free(&g);
  free(doc);
}
