/* SPDX-License-Identifier: MIT */
/*
 * Tests of COPY (kv/copy.c): Redis 7.0's replies and order of checks (kvdiff compares them with a
 * real redis-server too), every type, the time to live, DB, REPLACE, independence of the copies
 * (a write to one leaves the other as it was), and that nothing leaks.
 */
#include "shmdict/kv.h"
#include "support.h"
#include "support_kv.h"

TestSuite(copy, .init = ts_init, .fini = ts_fini, .timeout = 120);

static void mk_all(shmd_store_t *s) {
  shmd_reply_free(ts_kv(s, 0, "SET str hello"));
  shmd_reply_free(ts_kv(s, 0, "RPUSH list a b c"));
  shmd_reply_free(ts_kv(s, 0, "SADD set x y z"));
  shmd_reply_free(ts_kv(s, 0, "HSET hash f 1 g 2"));
  shmd_reply_free(ts_kv(s, 0, "ZADD zset 1 a 2 b -inf c"));
}

Test(copy, replies_as_redis_7_0) {
  shmd_store_t *s = ts_open("r", 8u << 20, 8u << 20);
  mk_all(s);
  TS_EXPECT(s, "COPY str str", "-ERR source and destination objects are the same");
  TS_EXPECT(s, "COPY str str DB 0", "-ERR source and destination objects are the same");
  TS_EXPECT(s, "COPY nokey k2", ":0");
  TS_EXPECT(s, "COPY str list", ":0");
  TS_EXPECT(s, "COPY str k FOO", "-ERR syntax error");
  TS_EXPECT(s, "COPY str k DB", "-ERR syntax error");
  TS_EXPECT(s, "COPY str k DB abc", "-ERR value is not an integer or out of range");
  TS_EXPECT(s, "COPY str k DB 16", "-ERR DB index is out of range");
  TS_EXPECT(s, "COPY str k DB -1", "-ERR DB index is out of range");
  TS_EXPECT(s, "COPY str k DB 4294967296",
            "-ERR value is out of range, value must between -2147483648 and 2147483647");
  TS_EXPECT(s, "COPY nokey nokey", "-ERR source and destination objects are the same");
  TS_EXPECT(s, "EXISTS k", ":0");
  const char *types[] = {"str", "list", "set", "hash", "zset"};
  for (int i = 0; i < 5; i++) {
    char line[64];
    snprintf(line, sizeof line, "COPY %s %s2", types[i], types[i]);
    TS_EXPECT(s, line, ":1");
    snprintf(line, sizeof line, "COPY %s %s2", types[i], types[i]);
    TS_EXPECT(s, line, ":0");
    snprintf(line, sizeof line, "COPY %s str2 REPLACE", types[i]);
    TS_EXPECT(s, line, ":1");
  }
  TS_EXPECT(s, "GET str2", "-WRONGTYPE Operation against a key holding the wrong kind of value");
  TS_EXPECT(s, "ZRANGE str2 0 -1 WITHSCORES", "[\"c\",\"-inf\",\"a\",\"1\",\"b\",\"2\"]");
  TS_EXPECT(s, "GET str", "\"hello\"");
  TS_EXPECT(s, "LRANGE list2 0 -1", "[\"a\",\"b\",\"c\"]");
  TS_EXPECT_SET(s, "SMEMBERS set2", "[x,y,z]");
  TS_EXPECT_SET(s, "HGETALL hash2", "[1,2,f,g]");
  cr_expect_eq(shmd_kv_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}

Test(copy, ttl_and_other_database) {
  shmd_store_t *s = ts_open("t", 8u << 20, 8u << 20);
  mk_all(s);
  shmd_reply_free(ts_kv(s, 0, "PEXPIRE list 100000"));
  shmd_reply_free(ts_kv(s, 0, "PEXPIRE str 100000"));
  TS_EXPECT(s, "COPY list l DB 3", ":1");
  TS_EXPECT(s, "COPY str st DB 3", ":1");
  TS_EXPECT(s, "COPY set set DB 3", ":1");
  TS_EXPECT(s, "COPY set set DB 3", ":0");
  TS_EXPECT(s, "COPY hash set DB 3 REPLACE", ":1");
  shmd_reply_t *r = ts_kv(s, 3, "PTTL l");
  cr_expect(r->type == SHMD_REPLY_INTEGER && r->integer > 90000 && r->integer <= 100000, "%s", ts_show(r));
  shmd_reply_free(r);
  r = ts_kv(s, 3, "PTTL st");
  cr_expect(r->type == SHMD_REPLY_INTEGER && r->integer > 90000 && r->integer <= 100000, "%s", ts_show(r));
  shmd_reply_free(r);
  r = ts_kv(s, 3, "HGETALL set");
  cr_expect_str_eq(ts_show_sorted(r), "[1,2,f,g]");
  shmd_reply_free(r);
  r = ts_kv(s, 3, "LRANGE l 0 -1");
  cr_expect_str_eq(ts_show(r), "[\"a\",\"b\",\"c\"]");
  shmd_reply_free(r);
  TS_EXPECT(s, "TTL set", ":-1");
  cr_expect_eq(shmd_kv_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}

/* Writes to either copy leave the other as it was, for every write path of every type. */
Test(copy, copies_are_independent) {
  shmd_store_t *s = ts_open("i", 8u << 20, 8u << 20);
  shmd_reply_free(ts_kv(s, 0, "SET x 1")); /* the keyspace and database 0 exist from here on */
  shmd_reply_free(ts_kv(s, 0, "DEL x"));
  shmd_stats_t st0;
  cr_assert_eq(shmd_stats(s, &st0), 0);
  mk_all(s);
  const char *pairs[][3] = {
      {"list", "RPUSH list d", "LRANGE list2 0 -1"},  {"list", "LSET list2 0 q", "LRANGE list 0 -1"},
      {"set", "SADD set w", "SMEMBERS set2"},         {"set", "SREM set2 x", "SMEMBERS set"},
      {"hash", "HSET hash f 9", "HGETALL hash2"},     {"hash", "HDEL hash2 g", "HGETALL hash"},
      {"zset", "ZINCRBY zset 5 a", "ZRANGE zset2 0 -1 WITHSCORES"},
      {"zset", "ZREM zset2 b", "ZRANGE zset 0 -1 WITHSCORES"},
      {"list", "LPOP list2", "LRANGE list 0 -1"},
      {"set", "SMOVE set set2 y", "SMEMBERS set2"},
  };
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
    char line[80];
    snprintf(line, sizeof line, "COPY %s %s2 REPLACE", pairs[i][0], pairs[i][0]);
    TS_EXPECT(s, line, ":1");
    shmd_reply_t *before = ts_kv(s, 0, pairs[i][2]);
    char want[512];
    snprintf(want, sizeof want, "%s", ts_show_sorted(before));
    shmd_reply_free(before);
    if (strncmp(pairs[i][1], "SMOVE", 5) == 0) { /* the write goes to the copy: compare the source */
      shmd_reply_free(ts_kv(s, 0, pairs[i][1]));
      TS_EXPECT_SET(s, "SMEMBERS set", "[w,x,z]");
      continue;
    }
    shmd_reply_free(ts_kv(s, 0, pairs[i][1]));
    shmd_reply_t *after = ts_kv(s, 0, pairs[i][2]);
    cr_expect_str_eq(ts_show_sorted(after), want, "%s changed %s", pairs[i][1], pairs[i][2]);
    shmd_reply_free(after);
    cr_expect_eq(shmd_kv_check(s), 0, "%s", shmd_errdetail());
  }
  /* nothing leaks: with every key gone and drained, the store holds what it held at the start */
  TS_EXPECT(s, "FLUSHDB", "+OK");
  cr_assert_eq(shmd_kv_drain(s, 0, 0), 0);
  shmd_stats_t st1;
  cr_assert_eq(shmd_stats(s, &st1), 0);
  cr_expect_eq(st1.allocated_bytes, st0.allocated_bytes, "%llu bytes allocated, %llu at the start",
               (unsigned long long)st1.allocated_bytes, (unsigned long long)st0.allocated_bytes);
  shmd_close(s);
}
