/* SPDX-License-Identifier: MIT */
/*
 * Tests of OBJECT (kv/object.c): the replies and errors redis-server 7.0 gives (recorded from
 * redis-server 7.0 for the same commands), and shmdict's encoding names for each type.
 */
#include "shmdict/kv.h"
#include "support.h"

TestSuite(object, .init = ts_init, .fini = ts_fini, .timeout = 60);

static shmd_reply_t *run1(shmd_store_t *s, const char *a0, const char *a1, const char *a2, const char *a3) {
  const char *argv[4] = {a0, a1, a2, a3};
  size_t lens[4] = {0};
  int n = 0;
  while (n < 4 && argv[n]) {
    lens[n] = strlen(argv[n]);
    n++;
  }
  shmd_reply_t *r = NULL;
  cr_assert_eq(shmd_kv_command(s, n, argv, lens, &r), 0);
  return r;
}

static void expect_str(shmd_store_t *s, shmd_reply_type_t t, const char *want, const char *a0, const char *a1,
                       const char *a2, const char *a3) {
  shmd_reply_t *r = run1(s, a0, a1, a2, a3);
  cr_expect_eq(r->type, t, "%s %s %s: type %d", a1, a2 ? a2 : "", a3 ? a3 : "", (int)r->type);
  if (want)
    cr_expect(r->len == strlen(want) && memcmp(r->str, want, r->len) == 0, "%s %s: '%.*s', want '%s'", a1,
              a2 ? a2 : "", (int)r->len, r->str, want);
  shmd_reply_free(r);
}

static void expect_int(shmd_store_t *s, long long want, const char *a1, const char *a2) {
  shmd_reply_t *r = run1(s, "OBJECT", a1, a2, NULL);
  cr_expect(r->type == SHMD_REPLY_INTEGER && r->integer == want, "%s %s: type %d, %lld", a1, a2, (int)r->type,
            (long long)r->integer);
  shmd_reply_free(r);
}

Test(object, replies_as_redis_7_0) {
  shmd_store_t *s = ts_open("o", 8u << 20, 8u << 20);
  shmd_reply_free(run1(s, "SET", "k", "123", NULL));
  shmd_reply_free(run1(s, "SET", "e", "hello", NULL));
  shmd_reply_free(run1(s, "SET", "r", "0123456789012345678901234567890123456789012345", NULL));
  shmd_reply_free(run1(s, "SET", "big", "100000", NULL));
  shmd_reply_free(run1(s, "RPUSH", "l", "a", NULL));
  shmd_reply_free(run1(s, "HSET", "h", "f", "v"));
  shmd_reply_free(run1(s, "SADD", "st", "m", NULL));
  shmd_reply_free(run1(s, "ZADD", "z", "1", "m"));
  shmd_reply_t *r = run1(s, "OBJECT", "HELP", NULL, NULL);
  cr_assert_eq(r->type, SHMD_REPLY_ARRAY);
  cr_expect_eq(r->nelems, 15);
  cr_expect_str_eq(r->elems[0].str, "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:");
  cr_expect_str_eq(r->elems[14].str, "    Prints this help.");
  cr_expect_eq(r->elems[1].type, SHMD_REPLY_STATUS);
  shmd_reply_free(r);
  expect_str(s, SHMD_REPLY_BULK, "int", "OBJECT", "ENCODING", "k", NULL);
  expect_str(s, SHMD_REPLY_BULK, "int", "OBJECT", "encoding", "big", NULL);
  expect_str(s, SHMD_REPLY_BULK, "embstr", "OBJECT", "ENCODING", "e", NULL);
  expect_str(s, SHMD_REPLY_BULK, "raw", "OBJECT", "ENCODING", "r", NULL);
  expect_str(s, SHMD_REPLY_BULK, "quicklist", "OBJECT", "ENCODING", "l", NULL);
  expect_str(s, SHMD_REPLY_BULK, "hashtable", "OBJECT", "ENCODING", "h", NULL);
  expect_str(s, SHMD_REPLY_BULK, "hashtable", "OBJECT", "ENCODING", "st", NULL);
  expect_str(s, SHMD_REPLY_BULK, "skiplist", "OBJECT", "ENCODING", "z", NULL);
  expect_str(s, SHMD_REPLY_NIL, NULL, "OBJECT", "ENCODING", "nokey", NULL);
  expect_str(s, SHMD_REPLY_NIL, NULL, "OBJECT", "FREQ", "nokey", NULL);
  expect_str(s, SHMD_REPLY_NIL, NULL, "OBJECT", "IDLETIME", "nokey", NULL);
  expect_int(s, 2147483647, "REFCOUNT", "k"); /* Redis's shared integers 0..9999 */
  expect_int(s, 1, "REFCOUNT", "big");
  expect_int(s, 1, "REFCOUNT", "h");
  expect_int(s, 0, "IDLETIME", "k");
  expect_str(s, SHMD_REPLY_ERROR,
             "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when "
             "switching between policies at runtime LRU and LFU data will take some time to adjust.",
             "OBJECT", "FREQ", "k", NULL);
  expect_str(s, SHMD_REPLY_ERROR, "ERR unknown subcommand 'FOO'. Try OBJECT HELP.", "OBJECT", "FOO", "k", NULL);
  expect_str(s, SHMD_REPLY_ERROR, "ERR wrong number of arguments for 'object|encoding' command", "OBJECT", "ENCODING",
             NULL, NULL);
  expect_str(s, SHMD_REPLY_ERROR, "ERR wrong number of arguments for 'object|encoding' command", "OBJECT", "ENCODING",
             "k", "extra");
  expect_str(s, SHMD_REPLY_ERROR, "ERR wrong number of arguments for 'object' command", "OBJECT", NULL, NULL, NULL);
  expect_str(s, SHMD_REPLY_ERROR, "ERR wrong number of arguments for 'object|help' command", "OBJECT", "HELP", "x",
             NULL);
  shmd_close(s);
}
