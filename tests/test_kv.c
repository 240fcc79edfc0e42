/* SPDX-License-Identifier: MIT */
/*
 * Tests of the keyspace (kv/): every command through shmd_kv_command with its options, edge cases
 * and Redis's error wording; the typed functions; big deletes through the garbage list; a property
 * test of random commands against an in-process model; two writer processes; and crash tests
 * (a child SIGKILLed while running random commands, reporting each completed command to the crash
 * harness; afterwards shmd_kv_check and shmd_alloc_check pass and every reported effect is
 * visible). Commands run through the shared runner and children through the crash harness
 * (tests/support_kv.h, tests/support_crash.h).
 */
#include <ctype.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>

#include "kv/kv_int.h"
#include "shmdict/kv.h"
#include "support.h"

#define MB (1024ull * 1024)

/* Commands run through the shared runner (tests/support_kv.h): ts_kv() and TS_EXPECT() fail the
 * test on a status; ts_show() renders a reply; children, which must not assert, use ts_kv_do(). */
static void check_all(shmd_store_t *s) {
  int rc = shmd_kv_check(s);
  cr_assert_eq(rc, 0, "kv_check: %s (%s)", shmd_strerror(rc), shmd_errdetail());
  rc = shmd_alloc_check(s);
  cr_assert_eq(rc, 0, "alloc_check: %s (%s)", shmd_strerror(rc), shmd_errdetail());
}

#define WT "-WRONGTYPE Operation against a key holding the wrong kind of value"

TestSuite(kv, .init = ts_init, .fini = ts_fini, .timeout = 120);

Test(kv, errors_and_dispatch) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  TS_EXPECT(s, "FOO a b", "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' ");
  TS_EXPECT(s, "nosuch", "-ERR unknown command 'nosuch', with args beginning with: ");
  TS_EXPECT(s, "GET", "-ERR wrong number of arguments for 'get' command");
  TS_EXPECT(s, "get a b", "-ERR wrong number of arguments for 'get' command");
  TS_EXPECT(s, "set a", "-ERR wrong number of arguments for 'set' command");
  TS_EXPECT(s, "MSET a 1 b", "-ERR wrong number of arguments for 'mset' command");
  TS_EXPECT(s, "HSET h f", "-ERR wrong number of arguments for 'hset' command");
  TS_EXPECT(s, "HSET h f v g", "-ERR wrong number of arguments for 'hset' command");
  TS_EXPECT(s, "SET a 1 FOO", "-ERR syntax error");
  TS_EXPECT(s, "SET a 1 NX XX", "-ERR syntax error");
  TS_EXPECT(s, "INCRBY a x", "-ERR value is not an integer or out of range");
  TS_EXPECT(s, "lpush l x", ":1");
  TS_EXPECT(s, "get l", WT);
  TS_EXPECT(s, "incr l", WT);
  TS_EXPECT(s, "hget l f", WT);
  TS_EXPECT(s, "sadd l f", WT);
  TS_EXPECT(s, "zadd l 1 f", WT);
  TS_EXPECT(s, "set s v", "+OK");
  TS_EXPECT(s, "lpush s x", WT);
  TS_EXPECT(s, "llen s", WT);
  TS_EXPECT(s, "zscore s x", WT);
  TS_EXPECT(s, "smembers s", WT);
  TS_EXPECT(s, "sinter s l", WT);
  shmd_reply_t *r = NULL;
  const char *av[] = {"get", "a"};
  size_t lv[] = {3, 1};
  cr_expect_eq(shmd_kv_command_db(s, 16, 2, av, lv, &r), SHMD_EINVAL);
  cr_expect_null(r);
  check_all(s);
  shmd_close(s);
}

Test(kv, keys) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  TS_EXPECT(s, "SET a 1", "+OK");
  TS_EXPECT(s, "SET b 2", "+OK");
  TS_EXPECT(s, "RPUSH c x", ":1");
  TS_EXPECT(s, "EXISTS a b c d a", ":4");
  TS_EXPECT(s, "DEL a d", ":1");
  TS_EXPECT(s, "TYPE a", "+none");
  TS_EXPECT(s, "TYPE b", "+string");
  TS_EXPECT(s, "TYPE c", "+list");
  TS_EXPECT(s, "HSET h f v", ":1");
  TS_EXPECT(s, "SADD st m", ":1");
  TS_EXPECT(s, "ZADD z 1 m", ":1");
  TS_EXPECT(s, "TYPE h", "+hash");
  TS_EXPECT(s, "TYPE st", "+set");
  TS_EXPECT(s, "TYPE z", "+zset");
  TS_EXPECT(s, "DBSIZE", ":5");
  TS_EXPECT_SET(s, "KEYS *", "[b,c,h,st,z]");
  TS_EXPECT_SET(s, "KEYS ?", "[b,c,h,z]");
  TS_EXPECT_SET(s, "KEYS [a-c]", "[b,c]");
  TS_EXPECT_SET(s, "KEYS s*", "[st]");
  TS_EXPECT_SET(s, "KEYS [^bc]*", "[h,st,z]");
  TS_EXPECT(s, "RENAME nosuch x", "-ERR no such key");
  TS_EXPECT(s, "RENAME c c2", "+OK");
  TS_EXPECT(s, "LRANGE c2 0 -1", "[\"x\"]");
  TS_EXPECT(s, "EXISTS c", ":0");
  TS_EXPECT(s, "RENAME b h", "+OK"); /* overwrites the hash */
  TS_EXPECT(s, "GET h", "\"2\"");
  TS_EXPECT(s, "RENAME h h", "+OK");
  TS_EXPECT(s, "DBSIZE", ":4");
  /* SCAN: every key exactly once in a full iteration. */
  for (int i = 0; i < 300; i++) {
    char line[64];
    snprintf(line, sizeof line, "SET k%d %d", i, i);
    shmd_reply_free(ts_kv(s, 0, line));
  }
  int seen[300] = {0};
  unsigned long long cur = 0;
  int steps = 0;
  do {
    char line[64];
    snprintf(line, sizeof line, "SCAN %llu MATCH k* COUNT 7", cur);
    shmd_reply_t *r = ts_kv(s, 0, line);
    cr_assert_eq(r->type, SHMD_REPLY_ARRAY);
    cr_assert_eq(r->nelems, 2);
    cur = strtoull(r->elems[0].str, NULL, 10);
    for (size_t i = 0; i < r->elems[1].nelems; i++)
      seen[atoi(r->elems[1].elems[i].str + 1)]++;
    shmd_reply_free(r);
    steps++;
  } while (cur != 0 && steps < 10000);
  for (int i = 0; i < 300; i++)
    cr_expect_eq(seen[i], 1, "k%d seen %d times", i, seen[i]);
  TS_EXPECT(s, "SCAN 0 TYPE zset COUNT 1000", "[\"0\",[\"z\"]]");
  TS_EXPECT(s, "SCAN x", "-ERR invalid cursor");
  TS_EXPECT(s, "SCAN 0 COUNT 0", "-ERR syntax error");
  TS_EXPECT(s, "SCAN 0 FOO 1", "-ERR syntax error");
  TS_EXPECT(s, "DBSIZE", ":304");
  TS_EXPECT(s, "FLUSHDB", "+OK");
  TS_EXPECT(s, "DBSIZE", ":0");
  TS_EXPECT(s, "KEYS *", "[]");
  TS_EXPECT(s, "GET k1", "(nil)");
  check_all(s);
  TS_EXPECT(s, "SET k1 v", "+OK");
  TS_EXPECT(s, "GET k1", "\"v\"");
  /* databases are separate */
  shmd_reply_t *r = ts_kv(s, 3, "GET k1");
  cr_expect_eq(r->type, SHMD_REPLY_NIL);
  shmd_reply_free(r);
  shmd_reply_free(ts_kv(s, 3, "SET k1 three"));
  r = ts_kv(s, 3, "GET k1");
  cr_expect_str_eq(r->str, "three");
  shmd_reply_free(r);
  TS_EXPECT(s, "GET k1", "\"v\"");
  check_all(s);
  shmd_close(s);
}

Test(kv, expiry) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  TS_EXPECT(s, "SET a 1", "+OK");
  TS_EXPECT(s, "TTL a", ":-1");
  TS_EXPECT(s, "PTTL a", ":-1");
  TS_EXPECT(s, "TTL nokey", ":-2");
  TS_EXPECT(s, "PTTL nokey", ":-2");
  TS_EXPECT(s, "EXPIRE nokey 10", ":0");
  TS_EXPECT(s, "EXPIRE a 100", ":1");
  TS_EXPECT(s, "TTL a", ":100");
  TS_EXPECT(s, "EXPIRE a 50 GT", ":0");
  TS_EXPECT(s, "EXPIRE a 200 GT", ":1");
  TS_EXPECT(s, "EXPIRE a 300 LT", ":0");
  TS_EXPECT(s, "EXPIRE a 300 NX", ":0");
  TS_EXPECT(s, "EXPIRE a 300 XX", ":1");
  TS_EXPECT(s, "EXPIRE a 300 NX XX", "-ERR NX and XX, GT or LT options at the same time are not compatible");
  TS_EXPECT(s, "EXPIRE a 300 GT LT", "-ERR GT and LT options at the same time are not compatible");
  TS_EXPECT(s, "EXPIRE a x", "-ERR value is not an integer or out of range");
  TS_EXPECT(s, "EXPIRE a 1 FOO", "-ERR Unsupported option FOO");
  TS_EXPECT(s, "PERSIST a", ":1");
  TS_EXPECT(s, "PERSIST a", ":0");
  TS_EXPECT(s, "PERSIST nokey", ":0");
  TS_EXPECT(s, "TTL a", ":-1");
  TS_EXPECT(s, "PEXPIRE a 100000", ":1");
  shmd_reply_t *r = ts_kv(s, 0, "PTTL a");
  cr_expect(r->integer > 99000 && r->integer <= 100000);
  shmd_reply_free(r);
  TS_EXPECT(s, "SET a 1", "+OK"); /* SET clears the TTL */
  TS_EXPECT(s, "TTL a", ":-1");
  TS_EXPECT(s, "SET a 1 EX 10", "+OK");
  TS_EXPECT(s, "TTL a", ":10");
  TS_EXPECT(s, "SET a 2 KEEPTTL", "+OK");
  TS_EXPECT(s, "TTL a", ":10");
  TS_EXPECT(s, "INCR a", ":3"); /* INCR keeps the TTL */
  TS_EXPECT(s, "TTL a", ":10");
  TS_EXPECT(s, "SET a 1 EX 0", "-ERR invalid expire time in 'set' command");
  TS_EXPECT(s, "SET a 1 PX -5", "-ERR invalid expire time in 'set' command");
  TS_EXPECT(s, "SET a 1 EX x", "-ERR value is not an integer or out of range");
  TS_EXPECT(s, "SET a 1 EX 10 PX 10", "-ERR syntax error");
  TS_EXPECT(s, "EXPIRE a 0", ":1"); /* a past time deletes */
  TS_EXPECT(s, "EXISTS a", ":0");
  TS_EXPECT(s, "RPUSH l a b", ":2");
  TS_EXPECT(s, "EXPIRE l -1", ":1");
  TS_EXPECT(s, "EXISTS l", ":0");
  /* lazy expiry */
  TS_EXPECT(s, "SET p v PX 30", "+OK");
  TS_EXPECT(s, "HSET h f v", ":1");
  TS_EXPECT(s, "PEXPIRE h 30", ":1");
  usleep(60000);
  TS_EXPECT(s, "GET p", "(nil)");
  TS_EXPECT(s, "EXISTS h", ":0");
  TS_EXPECT(s, "HSET h f v", ":1");
  TS_EXPECT(s, "TTL h", ":-1");
  /* active expiry */
  for (int i = 0; i < 100; i++) {
    char line[64];
    snprintf(line, sizeof line, "SET e%d v PX 20", i);
    shmd_reply_free(ts_kv(s, 0, line));
  }
  TS_EXPECT(s, "SADD big a b c", ":3");
  TS_EXPECT(s, "PEXPIRE big 20", ":1");
  usleep(40000);
  TS_EXPECT(s, "DBSIZE", ":102");
  size_t total = 0;
  for (int i = 0; i < 200; i++) {
    size_t n = 0;
    cr_assert_eq(shmd_kv_expire_step(s, 0, 10, &n), 0);
    total += n;
  }
  cr_expect_eq(total, 101);
  TS_EXPECT(s, "DBSIZE", ":1");
  check_all(s);
  shmd_close(s);
}

Test(kv, strings) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  TS_EXPECT(s, "GET a", "(nil)");
  TS_EXPECT(s, "SET a hello", "+OK");
  TS_EXPECT(s, "GET a", "\"hello\"");
  TS_EXPECT(s, "SET a x NX", "(nil)");
  TS_EXPECT(s, "SET b x XX", "(nil)");
  TS_EXPECT(s, "SET a world XX", "+OK");
  TS_EXPECT(s, "SET a again GET", "\"world\"");
  TS_EXPECT(s, "SET n1 v NX GET", "(nil)");
  TS_EXPECT(s, "GET n1", "\"v\"");
  TS_EXPECT(s, "SET n1 w NX GET", "\"v\"");
  TS_EXPECT(s, "GET n1", "\"v\"");
  TS_EXPECT(s, "RPUSH l x", ":1");
  TS_EXPECT(s, "SET l v GET", WT);
  TS_EXPECT(s, "SET l v", "+OK"); /* overwrites any type */
  TS_EXPECT(s, "GET l", "\"v\"");
  TS_EXPECT(s, "SET e \"\"", "+OK");
  TS_EXPECT(s, "GET e", "\"\"");
  TS_EXPECT(s, "STRLEN e", ":0");
  TS_EXPECT(s, "GETDEL a", "\"again\"");
  TS_EXPECT(s, "GETDEL a", "(nil)");
  TS_EXPECT(s, "MSET a 1 b 2 c 3", "+OK");
  TS_EXPECT(s, "RPUSH lst x", ":1");
  TS_EXPECT(s, "MGET a b nokey c lst", "[\"1\",\"2\",(nil),\"3\",(nil)]");
  TS_EXPECT(s, "SETNX a 9", ":0");
  TS_EXPECT(s, "SETNX z 9", ":1");
  TS_EXPECT(s, "INCR cnt", ":1");
  TS_EXPECT(s, "INCRBY cnt 41", ":42");
  TS_EXPECT(s, "DECR cnt", ":41");
  TS_EXPECT(s, "DECRBY cnt 50", ":-9");
  TS_EXPECT(s, "INCRBY cnt -1", ":-10");
  TS_EXPECT(s, "SET big 9223372036854775807", "+OK");
  TS_EXPECT(s, "INCR big", "-ERR increment or decrement would overflow");
  TS_EXPECT(s, "SET big -9223372036854775808", "+OK");
  TS_EXPECT(s, "DECR big", "-ERR increment or decrement would overflow");
  TS_EXPECT(s, "SET s abc", "+OK");
  TS_EXPECT(s, "INCR s", "-ERR value is not an integer or out of range");
  TS_EXPECT(s, "SET s \" 1\"", "+OK");
  TS_EXPECT(s, "INCR s", "-ERR value is not an integer or out of range");
  TS_EXPECT(s, "SET s 01", "+OK");
  TS_EXPECT(s, "INCR s", "-ERR value is not an integer or out of range");
  TS_EXPECT(s, "INCRBY s 99999999999999999999", "-ERR value is not an integer or out of range");
  TS_EXPECT(s, "INCRBYFLOAT f 10.5", "\"10.5\"");
  TS_EXPECT(s, "INCRBYFLOAT f 0.1", "\"10.6\"");
  TS_EXPECT(s, "INCRBYFLOAT f -5", "\"5.6\"");
  TS_EXPECT(s, "SET f 5.0e3", "+OK");
  TS_EXPECT(s, "INCRBYFLOAT f 2.0e2", "\"5200\"");
  TS_EXPECT(s, "INCRBYFLOAT f x", "-ERR value is not a valid float");
  TS_EXPECT(s, "INCRBYFLOAT s 1", "\"2\"");
  TS_EXPECT(s, "SET s abc", "+OK");
  TS_EXPECT(s, "INCRBYFLOAT s 1", "-ERR value is not a valid float");
  TS_EXPECT(s, "INCRBYFLOAT f inf", "-ERR increment would produce NaN or Infinity");
  TS_EXPECT(s, "APPEND ap Hello", ":5");
  TS_EXPECT(s, "APPEND ap \" World\"", ":11");
  TS_EXPECT(s, "GET ap", "\"Hello World\"");
  TS_EXPECT(s, "STRLEN ap", ":11");
  TS_EXPECT(s, "STRLEN nokey", ":0");
  TS_EXPECT(s, "SET gr \"This is a string\"", "+OK");
  TS_EXPECT(s, "GETRANGE gr 0 3", "\"This\"");
  TS_EXPECT(s, "GETRANGE gr -3 -1", "\"ing\"");
  TS_EXPECT(s, "GETRANGE gr 0 -1", "\"This is a string\"");
  TS_EXPECT(s, "GETRANGE gr 10 100", "\"string\"");
  TS_EXPECT(s, "GETRANGE gr 5 3", "\"\"");
  TS_EXPECT(s, "GETRANGE gr -1 -5", "\"\"");
  TS_EXPECT(s, "GETRANGE nokey 0 -1", "\"\"");
  TS_EXPECT(s, "GETRANGE gr a 1", "-ERR value is not an integer or out of range");
  TS_EXPECT(s, "SET sr \"Hello World\"", "+OK");
  TS_EXPECT(s, "SETRANGE sr 6 Redis", ":11");
  TS_EXPECT(s, "GET sr", "\"Hello Redis\"");
  TS_EXPECT(s, "SETRANGE pad 3 ab", ":5");
  shmd_reply_t *r = ts_kv(s, 0, "GET pad");
  cr_expect_eq(r->len, 5);
  cr_expect(memcmp(r->str, "\0\0\0ab", 5) == 0);
  shmd_reply_free(r);
  TS_EXPECT(s, "SETRANGE sr -1 x", "-ERR offset is out of range");
  TS_EXPECT(s, "SETRANGE none 5 \"\"", ":0");
  TS_EXPECT(s, "EXISTS none", ":0");
  TS_EXPECT(s, "SETRANGE sr 0 \"\"", ":11");
  TS_EXPECT(s, "SETRANGE sr 536870912 x", "-ERR string exceeds maximum allowed size (proto-max-bulk-len)");
  TS_EXPECT(s, "APPEND lst x", WT);
  TS_EXPECT(s, "STRLEN lst", WT);
  TS_EXPECT(s, "GETRANGE lst 0 1", WT);
  TS_EXPECT(s, "SETRANGE lst 0 1", WT);
  /* a big string (out of line) */
  char *line = malloc(20000);
  strcpy(line, "SET huge ");
  memset(line + 9, 'x', 10000);
  line[10009] = 0;
  TS_EXPECT(s, line, "+OK");
  TS_EXPECT(s, "STRLEN huge", ":10000");
  TS_EXPECT(s, "APPEND huge yy", ":10002");
  TS_EXPECT(s, "GETRANGE huge 9998 -1", "\"xxyy\"");
  free(line);
  check_all(s);
  shmd_close(s);
}

Test(kv, hashes) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  TS_EXPECT(s, "HSET h a 1 b 2", ":2");
  TS_EXPECT(s, "HSET h a 3 c 4", ":1");
  TS_EXPECT(s, "HGET h a", "\"3\"");
  TS_EXPECT(s, "HGET h x", "(nil)");
  TS_EXPECT(s, "HGET nokey x", "(nil)");
  TS_EXPECT(s, "HMSET h d 5", "+OK");
  TS_EXPECT(s, "HSETNX h a 9", ":0");
  TS_EXPECT(s, "HSETNX h e 9", ":1");
  TS_EXPECT(s, "HMGET h a x e", "[\"3\",(nil),\"9\"]");
  TS_EXPECT(s, "HMGET nokey a b", "[(nil),(nil)]");
  TS_EXPECT(s, "HLEN h", ":5");
  TS_EXPECT(s, "HLEN nokey", ":0");
  TS_EXPECT(s, "HEXISTS h a", ":1");
  TS_EXPECT(s, "HEXISTS h x", ":0");
  TS_EXPECT(s, "HEXISTS nokey x", ":0");
  TS_EXPECT_SET(s, "HKEYS h", "[a,b,c,d,e]");
  TS_EXPECT_SET(s, "HVALS h", "[2,3,4,5,9]");
  TS_EXPECT(s, "HKEYS nokey", "[]");
  shmd_reply_t *r = ts_kv(s, 0, "HGETALL h");
  cr_expect_eq(r->nelems, 10);
  for (size_t i = 0; i < r->nelems; i += 2)
    if (strcmp(r->elems[i].str, "a") == 0)
      cr_expect_str_eq(r->elems[i + 1].str, "3");
  shmd_reply_free(r);
  TS_EXPECT(s, "HDEL h a x b", ":2");
  TS_EXPECT(s, "HDEL nokey a", ":0");
  TS_EXPECT(s, "HINCRBY h c 10", ":14");
  TS_EXPECT(s, "HINCRBY h new -3", ":-3");
  TS_EXPECT(s, "HINCRBY h2 f 1", ":1");
  TS_EXPECT(s, "HSET h str abc", ":1");
  TS_EXPECT(s, "HINCRBY h str 1", "-ERR hash value is not an integer");
  TS_EXPECT(s, "HINCRBY h c x", "-ERR value is not an integer or out of range");
  TS_EXPECT(s, "HSET h m 9223372036854775807", ":1");
  TS_EXPECT(s, "HINCRBY h m 1", "-ERR increment or decrement would overflow");
  TS_EXPECT(s, "HDEL h2 f", ":1");
  TS_EXPECT(s, "EXISTS h2", ":0"); /* emptied hash is deleted */
  for (int i = 0; i < 100; i++) {
    char line[64];
    snprintf(line, sizeof line, "HSET hs f%d v%d", i, i);
    shmd_reply_free(ts_kv(s, 0, line));
  }
  int seen[100] = {0};
  unsigned long long cur = 0;
  int steps = 0;
  do {
    char line[64];
    snprintf(line, sizeof line, "HSCAN hs %llu COUNT 9", cur);
    r = ts_kv(s, 0, line);
    cur = strtoull(r->elems[0].str, NULL, 10);
    cr_assert_eq(r->elems[1].nelems % 2, 0);
    for (size_t i = 0; i < r->elems[1].nelems; i += 2) {
      int k = atoi(r->elems[1].elems[i].str + 1);
      cr_expect_eq(atoi(r->elems[1].elems[i + 1].str + 1), k);
      seen[k]++;
    }
    shmd_reply_free(r);
  } while (cur != 0 && ++steps < 1000);
  for (int i = 0; i < 100; i++)
    cr_expect_eq(seen[i], 1);
  r = ts_kv(s, 0, "HSCAN hs 0 MATCH f7? COUNT 1000");
  cr_expect_str_eq(r->elems[0].str, "0");
  cr_expect_eq(r->elems[1].nelems, 20);
  shmd_reply_free(r);
  TS_EXPECT(s, "HSCAN nokey 0", "[\"0\",[]]");
  r = ts_kv(s, 0, "HSCAN hs 0 MATCH f1 COUNT 1000");
  cr_expect_str_eq(ts_show(&r->elems[1]), "[\"f1\",\"v1\"]");
  shmd_reply_free(r);
  check_all(s);
  shmd_close(s);
}

Test(kv, lists) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  TS_EXPECT(s, "RPUSH l a b c", ":3");
  TS_EXPECT(s, "LPUSH l z y", ":5");
  TS_EXPECT(s, "LRANGE l 0 -1", "[\"y\",\"z\",\"a\",\"b\",\"c\"]");
  TS_EXPECT(s, "LRANGE l -2 100", "[\"b\",\"c\"]");
  TS_EXPECT(s, "LRANGE l 3 1", "[]");
  TS_EXPECT(s, "LRANGE nokey 0 -1", "[]");
  TS_EXPECT(s, "LLEN l", ":5");
  TS_EXPECT(s, "LLEN nokey", ":0");
  TS_EXPECT(s, "LINDEX l 0", "\"y\"");
  TS_EXPECT(s, "LINDEX l -1", "\"c\"");
  TS_EXPECT(s, "LINDEX l 5", "(nil)");
  TS_EXPECT(s, "LINDEX l x", "-ERR value is not an integer or out of range");
  TS_EXPECT(s, "LPOP l", "\"y\"");
  TS_EXPECT(s, "RPOP l", "\"c\"");
  TS_EXPECT(s, "LPOP l 2", "[\"z\",\"a\"]");
  TS_EXPECT(s, "RPOP l 5", "[\"b\"]");
  TS_EXPECT(s, "EXISTS l", ":0");
  TS_EXPECT(s, "LPOP l", "(nil)");
  TS_EXPECT(s, "LPOP l 2", "(nil)");
  TS_EXPECT(s, "LPOP l -1", "-ERR value is out of range, must be positive");
  TS_EXPECT(s, "RPUSH l a b a c a", ":5");
  TS_EXPECT(s, "LPOP l 0", "[]");
  TS_EXPECT(s, "LSET l 1 B", "+OK");
  TS_EXPECT(s, "LSET l 10 B", "-ERR index out of range");
  TS_EXPECT(s, "LSET nokey 0 B", "-ERR no such key");
  TS_EXPECT(s, "LREM l -1 a", ":1");
  TS_EXPECT(s, "LRANGE l 0 -1", "[\"a\",\"B\",\"a\",\"c\"]");
  TS_EXPECT(s, "LREM l 0 a", ":2");
  TS_EXPECT(s, "LREM nokey 0 a", ":0");
  TS_EXPECT(s, "LINSERT l BEFORE c x", ":3");
  TS_EXPECT(s, "LINSERT l AFTER c y", ":4");
  TS_EXPECT(s, "LINSERT l AFTER nopivot y", ":-1");
  TS_EXPECT(s, "LINSERT nokey AFTER c y", ":0");
  TS_EXPECT(s, "LINSERT l MIDDLE c y", "-ERR syntax error");
  TS_EXPECT(s, "LRANGE l 0 -1", "[\"B\",\"x\",\"c\",\"y\"]");
  TS_EXPECT(s, "LTRIM l 1 2", "+OK");
  TS_EXPECT(s, "LRANGE l 0 -1", "[\"x\",\"c\"]");
  TS_EXPECT(s, "LTRIM l 5 10", "+OK");
  TS_EXPECT(s, "EXISTS l", ":0");
  TS_EXPECT(s, "LTRIM nokey 0 1", "+OK");
  check_all(s);
  shmd_close(s);
}

/* The keyspace commands added for the server (and the CLI): replies as redis-server 7.0 gave
 * them for the same commands (the probe is in the server tests). */
Test(kv, server_commands_and_non_blocking_pops) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  TS_EXPECT(s, "PING", "+PONG");
  TS_EXPECT(s, "PING hello", "\"hello\"");
  TS_EXPECT(s, "PING a b", "-ERR wrong number of arguments for 'ping' command");
  TS_EXPECT(s, "ECHO x", "\"x\"");
  shmd_reply_t *t = ts_kv(s, 0, "TIME");
  cr_assert_eq(t->type, SHMD_REPLY_ARRAY);
  cr_assert_eq(t->nelems, 2);
  long long secs = atoll(t->elems[0].str), us = atoll(t->elems[1].str);
  cr_expect(secs > 1600000000 && us >= 0 && us < 1000000, "TIME %s %s", t->elems[0].str, t->elems[1].str);
  shmd_reply_free(t);
  /* LMOVE */
  TS_EXPECT(s, "RPUSH l a b c", ":3");
  TS_EXPECT(s, "LMOVE l d UP LEFT", "-ERR syntax error");
  TS_EXPECT(s, "LMOVE nol d LEFT RIGHT", "(nil)");
  TS_EXPECT(s, "SET str x", "+OK");
  TS_EXPECT(s, "LMOVE l str LEFT RIGHT", WT);
  TS_EXPECT(s, "LMOVE str l LEFT RIGHT", WT);
  TS_EXPECT(s, "LMOVE l l LEFT RIGHT", "\"a\"");
  TS_EXPECT(s, "LRANGE l 0 -1", "[\"b\",\"c\",\"a\"]");
  TS_EXPECT(s, "LMOVE l d RIGHT LEFT", "\"a\"");
  TS_EXPECT(s, "RPUSH one x", ":1");
  TS_EXPECT(s, "LMOVE one one LEFT LEFT", "\"x\"");
  TS_EXPECT(s, "LRANGE one 0 -1", "[\"x\"]");
  TS_EXPECT(s, "LMOVE one other LEFT LEFT", "\"x\"");
  TS_EXPECT(s, "EXISTS one", ":0");
  /* LMPOP */
  TS_EXPECT(s, "DEL l d other", ":3");
  TS_EXPECT(s, "RPUSH l a b c", ":3");
  TS_EXPECT(s, "LMPOP 0 l LEFT", "-ERR numkeys should be greater than 0");
  TS_EXPECT(s, "LMPOP x l LEFT", "-ERR numkeys should be greater than 0");
  TS_EXPECT(s, "LMPOP 3 l LEFT", "-ERR syntax error");
  TS_EXPECT(s, "LMPOP 1 l UP", "-ERR syntax error");
  TS_EXPECT(s, "LMPOP 1 l LEFT COUNT 0", "-ERR count should be greater than 0");
  TS_EXPECT(s, "LMPOP 1 l LEFT COUNT", "-ERR syntax error");
  TS_EXPECT(s, "LMPOP 1 l LEFT COUNT 1 COUNT 2", "-ERR syntax error");
  TS_EXPECT(s, "LMPOP 2 str l LEFT", WT);
  TS_EXPECT(s, "LMPOP 1 l LEFT", "[\"l\",[\"a\"]]");
  TS_EXPECT(s, "LMPOP 2 nol l RIGHT COUNT 10", "[\"l\",[\"c\",\"b\"]]");
  TS_EXPECT(s, "EXISTS l", ":0");
  TS_EXPECT(s, "LMPOP 1 l LEFT", "(nil)");
  /* ZPOPMIN, ZPOPMAX, ZMPOP */
  TS_EXPECT(s, "ZADD z 1 a 2 b 3 c", ":3");
  TS_EXPECT(s, "ZPOPMIN z -1", "-ERR value is out of range, must be positive");
  TS_EXPECT(s, "ZPOPMIN z 1 2", "-ERR syntax error");
  TS_EXPECT(s, "ZPOPMIN z 0", "[]");
  TS_EXPECT(s, "ZPOPMIN noz", "[]");
  TS_EXPECT(s, "ZPOPMIN str", WT);
  TS_EXPECT(s, "ZPOPMAX z", "[\"c\",\"3\"]");
  TS_EXPECT(s, "ZPOPMIN z 5", "[\"a\",\"1\",\"b\",\"2\"]");
  TS_EXPECT(s, "EXISTS z", ":0");
  TS_EXPECT(s, "ZADD z 1 a 2 b 3 c", ":3");
  TS_EXPECT(s, "ZMPOP 1 z MED", "-ERR syntax error");
  TS_EXPECT(s, "ZMPOP 0 z MIN", "-ERR numkeys should be greater than 0");
  TS_EXPECT(s, "ZMPOP 1 noz MIN", "(nil)");
  TS_EXPECT(s, "ZMPOP 2 noz z MAX COUNT 2", "[\"z\",[[\"c\",\"3\"],[\"b\",\"2\"]]]");
  TS_EXPECT(s, "ZMPOP 1 z MIN COUNT 5", "[\"z\",[[\"a\",\"1\"]]]");
  TS_EXPECT(s, "EXISTS z", ":0");
  /* FLUSHALL empties every database, in one command, and keeps working from any database */
  TS_EXPECT(s, "SET a 1", "+OK");
  shmd_reply_free(ts_kv(s, 3, "SET b 2"));
  shmd_reply_free(ts_kv(s, 7, "SET c 3"));
  TS_EXPECT(s, "FLUSHALL x", "-ERR syntax error");
  TS_EXPECT(s, "FLUSHALL ASYNC SYNC", "-ERR syntax error");
  shmd_reply_t *r = ts_kv(s, 7, "FLUSHALL SYNC");
  cr_expect_str_eq(ts_show(r), "+OK");
  shmd_reply_free(r);
  TS_EXPECT(s, "DBSIZE", ":0");
  r = ts_kv(s, 3, "DBSIZE");
  cr_expect_str_eq(ts_show(r), ":0");
  shmd_reply_free(r);
  TS_EXPECT(s, "FLUSHALL", "+OK");
  check_all(s);
  shmd_close(s);
}

Test(kv, sets) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  TS_EXPECT(s, "SADD s a b c", ":3");
  TS_EXPECT(s, "SADD s a d", ":1");
  TS_EXPECT(s, "SCARD s", ":4");
  TS_EXPECT(s, "SCARD nokey", ":0");
  TS_EXPECT(s, "SISMEMBER s a", ":1");
  TS_EXPECT(s, "SISMEMBER s x", ":0");
  TS_EXPECT(s, "SISMEMBER nokey x", ":0");
  TS_EXPECT_SET(s, "SMEMBERS s", "[a,b,c,d]");
  TS_EXPECT(s, "SMEMBERS nokey", "[]");
  TS_EXPECT(s, "SREM s a x", ":1");
  TS_EXPECT(s, "SADD t c d e", ":3");
  TS_EXPECT_SET(s, "SINTER s t", "[c,d]");
  TS_EXPECT_SET(s, "SUNION s t", "[b,c,d,e]");
  TS_EXPECT_SET(s, "SDIFF s t", "[b]");
  TS_EXPECT_SET(s, "SDIFF t s", "[e]");
  TS_EXPECT_SET(s, "SINTER s nokey", "[]");
  TS_EXPECT_SET(s, "SUNION s nokey", "[b,c,d]");
  TS_EXPECT_SET(s, "SDIFF nokey s", "[]");
  TS_EXPECT_SET(s, "SDIFF s nokey", "[b,c,d]");
  shmd_reply_t *r = ts_kv(s, 0, "SRANDMEMBER s");
  cr_expect(r->type == SHMD_REPLY_BULK && strchr("bcd", r->str[0]));
  shmd_reply_free(r);
  TS_EXPECT_SET(s, "SRANDMEMBER s 10", "[b,c,d]");
  r = ts_kv(s, 0, "SRANDMEMBER s 2");
  cr_expect_eq(r->nelems, 2);
  cr_expect_str_neq(r->elems[0].str, r->elems[1].str);
  shmd_reply_free(r);
  r = ts_kv(s, 0, "SRANDMEMBER s -7");
  cr_expect_eq(r->nelems, 7);
  shmd_reply_free(r);
  TS_EXPECT(s, "SRANDMEMBER nokey", "(nil)");
  TS_EXPECT(s, "SRANDMEMBER nokey 3", "[]");
  r = ts_kv(s, 0, "SPOP s");
  cr_expect(r->type == SHMD_REPLY_BULK);
  shmd_reply_free(r);
  TS_EXPECT(s, "SCARD s", ":2");
  r = ts_kv(s, 0, "SPOP s 5");
  cr_expect_eq(r->nelems, 2);
  shmd_reply_free(r);
  TS_EXPECT(s, "EXISTS s", ":0");
  TS_EXPECT(s, "SPOP s", "(nil)");
  TS_EXPECT(s, "SPOP t -1", "-ERR value is out of range, must be positive");
  for (int i = 0; i < 50; i++) {
    char line[64];
    snprintf(line, sizeof line, "SADD big m%d", i);
    shmd_reply_free(ts_kv(s, 0, line));
  }
  int seen[50] = {0};
  unsigned long long cur = 0;
  do {
    char line[64];
    snprintf(line, sizeof line, "SSCAN big %llu", cur);
    r = ts_kv(s, 0, line);
    cur = strtoull(r->elems[0].str, NULL, 10);
    for (size_t i = 0; i < r->elems[1].nelems; i++)
      seen[atoi(r->elems[1].elems[i].str + 1)]++;
    shmd_reply_free(r);
  } while (cur != 0);
  for (int i = 0; i < 50; i++)
    cr_expect_eq(seen[i], 1);
  /* SRANDMEMBER without a count reaches (nearly) every member; SPOP until empty pops each once */
  int hits[50] = {0}, distinct = 0;
  for (int i = 0; i < 3000; i++) {
    r = ts_kv(s, 0, "SRANDMEMBER big");
    cr_assert_eq(r->type, SHMD_REPLY_BULK);
    int k = atoi(r->str + 1);
    distinct += hits[k]++ == 0;
    shmd_reply_free(r);
  }
  cr_expect_geq(distinct, 45, "only %d distinct members", distinct);
  int popped[50] = {0};
  for (int i = 0; i < 50; i++) {
    r = ts_kv(s, 0, "SPOP big");
    cr_assert_eq(r->type, SHMD_REPLY_BULK);
    popped[atoi(r->str + 1)]++;
    shmd_reply_free(r);
  }
  for (int i = 0; i < 50; i++)
    cr_expect_eq(popped[i], 1);
  TS_EXPECT(s, "EXISTS big", ":0");
  check_all(s);
  shmd_close(s);
}

Test(kv, zsets) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  TS_EXPECT(s, "ZADD z 1 a 2 b 3 c", ":3");
  TS_EXPECT(s, "ZADD z 10 a 4 d", ":1");
  TS_EXPECT(s, "ZADD z CH 11 a 4 d 5 e", ":2");
  TS_EXPECT(s, "ZSCORE z a", "\"11\"");
  TS_EXPECT(s, "ZSCORE z x", "(nil)");
  TS_EXPECT(s, "ZSCORE nokey x", "(nil)");
  TS_EXPECT(s, "ZCARD z", ":5");
  TS_EXPECT(s, "ZCARD nokey", ":0");
  TS_EXPECT(s, "ZRANGE z 0 -1", "[\"b\",\"c\",\"d\",\"e\",\"a\"]");
  TS_EXPECT(s, "ZRANGE z 0 1 WITHSCORES", "[\"b\",\"2\",\"c\",\"3\"]");
  TS_EXPECT(s, "ZRANGE z 0 1 REV", "[\"a\",\"e\"]");
  TS_EXPECT(s, "ZRANGE z -2 -1", "[\"e\",\"a\"]");
  TS_EXPECT(s, "ZRANGE z 5 10", "[]");
  TS_EXPECT(s, "ZRANGE z 2 4 BYSCORE", "[\"b\",\"c\",\"d\"]");
  TS_EXPECT(s, "ZRANGE z (2 4 BYSCORE", "[\"c\",\"d\"]");
  TS_EXPECT(s, "ZRANGE z 2 (4 BYSCORE", "[\"b\",\"c\"]");
  TS_EXPECT(s, "ZRANGE z -inf +inf BYSCORE LIMIT 1 2", "[\"c\",\"d\"]");
  TS_EXPECT(s, "ZRANGE z +inf -inf BYSCORE REV LIMIT 0 2 WITHSCORES", "[\"a\",\"11\",\"e\",\"5\"]");
  TS_EXPECT(s, "ZRANGE z 4 2 BYSCORE REV", "[\"d\",\"c\",\"b\"]");
  TS_EXPECT(s, "ZRANGE z 0 1 LIMIT 0 1", "-ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX");
  TS_EXPECT(s, "ZRANGE z x 1 BYSCORE", "-ERR min or max is not a float");
  TS_EXPECT(s, "ZRANGE z a b", "-ERR value is not an integer or out of range");
  TS_EXPECT(s, "ZRANGE z 0 1 FOO", "-ERR syntax error");
  TS_EXPECT(s, "ZRANGEBYSCORE z 3 +inf", "[\"c\",\"d\",\"e\",\"a\"]");
  TS_EXPECT(s, "ZRANGEBYSCORE z 3 +inf WITHSCORES LIMIT 1 1", "[\"d\",\"4\"]");
  TS_EXPECT(s, "ZRANGEBYSCORE z (3 (5", "[\"d\"]");
  TS_EXPECT(s, "ZRANGEBYSCORE nokey 0 1", "[]");
  TS_EXPECT(s, "ZCOUNT z -inf +inf", ":5");
  TS_EXPECT(s, "ZCOUNT z (2 4", ":2");
  TS_EXPECT(s, "ZCOUNT z 5 1", ":0");
  TS_EXPECT(s, "ZCOUNT nokey 0 1", ":0");
  TS_EXPECT(s, "ZCOUNT z x 1", "-ERR min or max is not a float");
  TS_EXPECT(s, "ZRANK z b", ":0");
  TS_EXPECT(s, "ZRANK z a", ":4");
  TS_EXPECT(s, "ZREVRANK z a", ":0");
  TS_EXPECT(s, "ZRANK z x", "(nil)");
  TS_EXPECT(s, "ZRANK nokey x", "(nil)");
  TS_EXPECT(s, "ZINCRBY z 1.5 b", "\"3.5\"");
  TS_EXPECT(s, "ZINCRBY z 1 new", "\"1\"");
  TS_EXPECT(s, "ZINCRBY z x new", "-ERR value is not a valid float");
  TS_EXPECT(s, "ZADD z INCR 1 new", "\"2\"");
  TS_EXPECT(s, "ZADD z NX INCR 1 new", "(nil)");
  TS_EXPECT(s, "ZADD z XX INCR 1 nonew", "(nil)");
  TS_EXPECT(s, "ZADD z XX 100 nonew", ":0");
  TS_EXPECT(s, "ZADD nz XX 100 nonew", ":0");
  TS_EXPECT(s, "EXISTS nz", ":0");
  TS_EXPECT(s, "ZADD z NX 100 a", ":0");
  TS_EXPECT(s, "ZSCORE z a", "\"11\"");
  TS_EXPECT(s, "ZADD z GT CH 5 a", ":0");
  TS_EXPECT(s, "ZADD z GT CH 12 a", ":1");
  TS_EXPECT(s, "ZADD z LT CH 13 a", ":0");
  TS_EXPECT(s, "ZADD z LT CH 1 a", ":1");
  TS_EXPECT(s, "ZADD z GT 7 brandnew", ":1"); /* GT/LT still add new members */
  TS_EXPECT(s, "ZADD z NX XX 1 a", "-ERR XX and NX options at the same time are not compatible");
  TS_EXPECT(s, "ZADD z NX GT 1 a", "-ERR GT, LT, and/or NX options at the same time are not compatible");
  TS_EXPECT(s, "ZADD z INCR 1 a 2 b", "-ERR INCR option supports a single increment-element pair");
  TS_EXPECT(s, "ZADD z 1", "-ERR wrong number of arguments for 'zadd' command");
  TS_EXPECT(s, "ZADD z 1 a 2", "-ERR syntax error");
  TS_EXPECT(s, "ZADD z x a", "-ERR value is not a valid float");
  TS_EXPECT(s, "ZADD z nan a", "-ERR value is not a valid float");
  TS_EXPECT(s, "ZADD z inf infm", ":1");
  TS_EXPECT(s, "ZINCRBY z -inf infm", "-ERR resulting score is not a number (NaN)");
  TS_EXPECT(s, "ZSCORE z infm", "\"inf\"");
  TS_EXPECT(s, "ZADD z 0.1 tenth", ":1");
  TS_EXPECT(s, "ZSCORE z tenth", "\"0.10000000000000001\"");
  TS_EXPECT(s, "ZREM z tenth infm nokey", ":2");
  TS_EXPECT(s, "ZREM nokey a", ":0");
  TS_EXPECT(s, "ZRANGE z 0 -1 WITHSCORES",
         "[\"a\",\"1\",\"new\",\"2\",\"c\",\"3\",\"b\",\"3.5\",\"d\",\"4\",\"e\",\"5\",\"brandnew\",\"7\"]");
  TS_EXPECT(s, "ZREMRANGEBYRANK z 1 2", ":2");
  TS_EXPECT(s, "ZRANGE z 0 -1", "[\"a\",\"b\",\"d\",\"e\",\"brandnew\"]");
  TS_EXPECT(s, "ZREMRANGEBYRANK z -2 -1", ":2");
  TS_EXPECT(s, "ZREMRANGEBYRANK z 5 9", ":0");
  TS_EXPECT(s, "ZREMRANGEBYRANK z 0 -1", ":3");
  TS_EXPECT(s, "EXISTS z", ":0");
  /* same score: members ordered by bytes */
  TS_EXPECT(s, "ZADD y 1 b 1 a 1 c 0 z", ":4");
  TS_EXPECT(s, "ZRANGE y 0 -1", "[\"z\",\"a\",\"b\",\"c\"]");
  TS_EXPECT(s, "ZADD y -0 neg", ":1");
  TS_EXPECT(s, "ZRANGEBYSCORE y 0 0", "[\"neg\",\"z\"]");
  shmd_reply_t *r = ts_kv(s, 0, "ZSCAN y 0 COUNT 100");
  cr_expect_str_eq(r->elems[0].str, "0");
  cr_expect_eq(r->elems[1].nelems, 10);
  shmd_reply_free(r);
  check_all(s);
  shmd_close(s);
}

Test(kv, typed_api) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  char buf[64];
  size_t len = 0;
  cr_expect_eq(shmd_kv_get(s, 0, "k", 1, buf, sizeof buf, &len), SHMD_ENOTFOUND);
  cr_expect_eq(shmd_kv_set(s, 0, "k", 1, "value", 5, 0), 0);
  cr_expect_eq(shmd_kv_set(s, 0, "k", 1, "v2", 2, SHMD_KV_NX), SHMD_EEXIST);
  cr_expect_eq(shmd_kv_set(s, 0, "q", 1, "v2", 2, SHMD_KV_XX), SHMD_ENOTFOUND);
  cr_expect_eq(shmd_kv_set(s, 0, "q", 1, "v2", 2, 3), SHMD_EINVAL);
  cr_expect_eq(shmd_kv_get(s, 0, "k", 1, buf, sizeof buf, &len), 0);
  cr_expect_eq(len, 5);
  cr_expect(memcmp(buf, "value", 5) == 0);
  cr_expect_eq(shmd_kv_get(s, 0, "k", 1, buf, 2, &len), SHMD_ERANGE);
  cr_expect_eq(shmd_kv_get(s, 1, "k", 1, buf, sizeof buf, &len), SHMD_ENOTFOUND);
  cr_expect_eq(shmd_kv_get(s, 99, "k", 1, buf, sizeof buf, &len), SHMD_EINVAL);
  int created = -1;
  cr_expect_eq(shmd_kv_hset(s, 0, "h", 1, "f", 1, "x", 1, &created), 0);
  cr_expect_eq(created, 1);
  cr_expect_eq(shmd_kv_hset(s, 0, "h", 1, "f", 1, "yy", 2, &created), 0);
  cr_expect_eq(created, 0);
  cr_expect_eq(shmd_kv_hget(s, 0, "h", 1, "f", 1, buf, sizeof buf, &len), 0);
  cr_expect_eq(len, 2);
  cr_expect_eq(shmd_kv_hget(s, 0, "h", 1, "g", 1, buf, sizeof buf, &len), SHMD_ENOTFOUND);
  cr_expect_eq(shmd_kv_hget(s, 0, "k", 1, "g", 1, buf, sizeof buf, &len), SHMD_EWRONGTYPE);
  cr_expect_eq(shmd_kv_hset(s, 0, "k", 1, "f", 1, "x", 1, NULL), SHMD_EWRONGTYPE);
  cr_expect_eq(shmd_kv_get(s, 0, "h", 1, buf, sizeof buf, &len), SHMD_EWRONGTYPE);
  int added = -1;
  cr_expect_eq(shmd_kv_zadd(s, 0, "z", 1, 5, "a", 1, &added), 0);
  cr_expect_eq(added, 1);
  cr_expect_eq(shmd_kv_zadd(s, 0, "z", 1, 1, "b", 1, &added), 0);
  cr_expect_eq(shmd_kv_zadd(s, 0, "z", 1, 7, "a", 1, &added), 0);
  cr_expect_eq(added, 0);
  cr_expect_eq(shmd_kv_zadd(s, 0, "z", 1, NAN, "a", 1, &added), SHMD_EINVAL);
  uint64_t rank = 9;
  cr_expect_eq(shmd_kv_zrank(s, 0, "z", 1, "a", 1, 0, &rank), 0);
  cr_expect_eq(rank, 1);
  cr_expect_eq(shmd_kv_zrank(s, 0, "z", 1, "a", 1, 1, &rank), 0);
  cr_expect_eq(rank, 0);
  cr_expect_eq(shmd_kv_zrank(s, 0, "z", 1, "c", 1, 0, &rank), SHMD_ENOTFOUND);
  cr_expect_eq(shmd_kv_zrank(s, 0, "k", 1, "c", 1, 0, &rank), SHMD_EWRONGTYPE);
  cr_expect_eq(shmd_kv_del(s, 0, "z", 1), 0);
  cr_expect_eq(shmd_kv_del(s, 0, "z", 1), SHMD_ENOTFOUND);
  shmd_kv_info_t info;
  cr_expect_eq(shmd_kv_info(s, 0, &info), 0);
  cr_expect_eq(info.keys, 2);
  cr_expect_eq(info.strings, 1);
  cr_expect_eq(info.hashes, 1);
  cr_expect_eq(info.garbage, 0);
  check_all(s);
  shmd_close(s);
}

/* Big containers: deleting, overwriting, expiring and flushing them goes through the garbage list
 * in pieces; afterwards nothing is left allocated. */
Test(kv, big_deletes) {
  shmd_store_t *s = ts_open("t", 32 * MB, 32 * MB);
  shmd_stats_t st0;
  shmd_reply_free(ts_kv(s, 0, "SET warm x"));
  shmd_reply_free(ts_kv(s, 0, "FLUSHDB"));
  cr_assert_eq(shmd_stats(s, &st0), 0);
  const char *kinds[] = {"HSET bh f%d v%d", "RPUSH bl %d-%d", "SADD bs m%d-%d", "ZADD bz %d m%d"};
  for (int round = 0; round < 3; round++) {
    for (int k = 0; k < 4; k++)
      for (int i = 0; i < 3000; i++) {
        char line[64];
        snprintf(line, sizeof line, kinds[k], i, i);
        shmd_reply_t *r = ts_kv(s, 0, line);
        cr_assert_eq(r->type, SHMD_REPLY_INTEGER, "%s: %s", line, ts_show(r));
        shmd_reply_free(r);
      }
    if (round == 0) {
      TS_EXPECT(s, "DEL bh bl bs bz", ":4");
    } else if (round == 2) {
      TS_EXPECT(s, "FLUSHDB", "+OK");
    } else {
      TS_EXPECT(s, "MSET bh 1 bl 2 bs 3 bz 4", "+OK");
      TS_EXPECT(s, "DEL bh bl bs bz", ":4");
    }
    TS_EXPECT(s, "DBSIZE", ":0");
    shmd_kv_info_t info;
    cr_expect_eq(shmd_kv_info(s, 0, &info), 0);
    cr_expect_eq(info.garbage, 0);
    check_all(s);
  }
  shmd_stats_t st1;
  cr_assert_eq(shmd_stats(s, &st1), 0);
  cr_expect_eq(st1.small_objs_inuse, st0.small_objs_inuse, "%llu vs %llu objects",
               (unsigned long long)st1.small_objs_inuse, (unsigned long long)st0.small_objs_inuse);
  cr_expect_eq(st1.large_blocks, st0.large_blocks);
  shmd_close(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* Property test: random commands against an in-process model, compared after every step. */

#define NKEYS 6
#define NF 8
#define LMAX 40
enum { T_NONE, T_STR, T_HASH, T_LIST, T_SET, T_ZSET };
typedef struct mkey_s {
  int type;
  char str[256];
  int present[NF];
  int val[NF]; /* hash value / zset score */
  int list[LMAX];
  int llen;
} mkey_t;

static int model_count(const mkey_t *k) {
  int n = 0;
  for (int f = 0; f < NF; f++)
    n += k->present[f];
  return n;
}

/* The expected rendering of key k's full contents, and the command that dumps it. */
static void model_dump(const mkey_t *k, int ki, char *cmd, char *want) {
  size_t pos = 0;
  switch (k->type) {
  case T_NONE:
    sprintf(cmd, "TYPE k%d", ki);
    strcpy(want, "+none");
    break;
  case T_STR:
    sprintf(cmd, "GET k%d", ki);
    sprintf(want, "\"%s\"", k->str);
    break;
  case T_HASH: /* sorted "f=v" */
    sprintf(cmd, "HGETALL k%d", ki);
    pos += (size_t)sprintf(want, "[");
    for (int f = 0, first = 1; f < NF; f++)
      if (k->present[f]) {
        pos += (size_t)sprintf(want + pos, "%sf%d=%d", first ? "" : ",", f, k->val[f]);
        first = 0;
      }
    sprintf(want + pos, "]");
    break;
  case T_LIST:
    sprintf(cmd, "LRANGE k%d 0 -1", ki);
    pos += (size_t)sprintf(want, "[");
    for (int i = 0; i < k->llen; i++)
      pos += (size_t)sprintf(want + pos, "%s\"v%d\"", i ? "," : "", k->list[i]);
    sprintf(want + pos, "]");
    break;
  case T_SET:
    sprintf(cmd, "SMEMBERS k%d", ki);
    pos += (size_t)sprintf(want, "[");
    for (int f = 0, first = 1; f < NF; f++)
      if (k->present[f]) {
        pos += (size_t)sprintf(want + pos, "%sf%d", first ? "" : ",", f);
        first = 0;
      }
    sprintf(want + pos, "]");
    break;
  case T_ZSET: {
    sprintf(cmd, "ZRANGE k%d 0 -1 WITHSCORES", ki);
    pos += (size_t)sprintf(want, "[");
    int first = 1;
    for (int sc = -5; sc <= 20; sc++)
      for (int f = 0; f < NF; f++)
        if (k->present[f] && k->val[f] == sc) {
          pos += (size_t)sprintf(want + pos, "%s\"f%d\",\"%d\"", first ? "" : ",", f, sc);
          first = 0;
        }
    sprintf(want + pos, "]");
    break;
  }
  }
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void compare_key(shmd_store_t *s, const mkey_t *k, int ki) {
  char cmd[64], want[4096];
  model_dump(k, ki, cmd, want);
  shmd_reply_t *r = ts_kv(s, 0, cmd);
  if (k->type == T_HASH) {
    /* render as sorted f=v */
    char *pairs[NF * 2];
    int n = 0;
    cr_assert_eq(r->type, SHMD_REPLY_ARRAY);
    for (size_t i = 0; i + 1 < r->nelems; i += 2) {
      pairs[n] = malloc(64);
      snprintf(pairs[n], 64, "%s=%s", r->elems[i].str, r->elems[i + 1].str);
      n++;
    }
    qsort(pairs, (size_t)n, sizeof *pairs, cmp_str);
    char got[4096];
    size_t pos = (size_t)sprintf(got, "[");
    for (int i = 0; i < n; i++) {
      pos += (size_t)sprintf(got + pos, "%s%s", i ? "," : "", pairs[i]);
      free(pairs[i]);
    }
    sprintf(got + pos, "]");
    cr_assert_str_eq(got, want, "%s", cmd);
  } else if (k->type == T_SET) {
    cr_assert_str_eq(ts_show_sorted(r), want, "%s", cmd);
  } else {
    cr_assert_str_eq(ts_show(r), want, "%s", cmd);
  }
  shmd_reply_free(r);
}

/* One random step: runs a command on the store and applies it to the model; returns the expected
 * rendered reply in `want` (or "" when the reply is not compared). */
static void model_step(ts_rng_t *g, mkey_t *m, char *cmd, char *want, int *touched) {
  int ki = (int)ts_below(g, NKEYS);
  mkey_t *k = &m[ki];
  int f = (int)ts_below(g, NF), v = (int)ts_below(g, 10);
  int op = (int)ts_below(g, 32);
  *touched = ki;
  want[0] = 0;
#define WRONG(t) (k->type != T_NONE && k->type != (t))
  switch (op) {
  case 0: /* SET */
    sprintf(cmd, "SET k%d s%d", ki, v);
    memset(k, 0, sizeof *k);
    k->type = T_STR;
    sprintf(k->str, "s%d", v);
    strcpy(want, "+OK");
    break;
  case 1:
    sprintf(cmd, "APPEND k%d x%d", ki, v);
    if (WRONG(T_STR)) { strcpy(want, WT); break; }
    if (k->type == T_NONE) { memset(k, 0, sizeof *k); k->type = T_STR; }
    if (strlen(k->str) < 200) {
      strcat(k->str, "x");
      sprintf(k->str + strlen(k->str), "%d", v);
      sprintf(want, ":%zu", strlen(k->str));
    } else {
      sprintf(cmd, "STRLEN k%d", ki);
      sprintf(want, ":%zu", strlen(k->str));
    }
    break;
  case 2:
    sprintf(cmd, "DEL k%d", ki);
    sprintf(want, ":%d", k->type != T_NONE);
    memset(k, 0, sizeof *k);
    break;
  case 3:
    sprintf(cmd, "HSET k%d f%d %d", ki, f, v);
    if (WRONG(T_HASH)) { strcpy(want, WT); break; }
    if (k->type == T_NONE) { memset(k, 0, sizeof *k); k->type = T_HASH; }
    sprintf(want, ":%d", !k->present[f]);
    k->present[f] = 1;
    k->val[f] = v;
    break;
  case 4:
    sprintf(cmd, "HDEL k%d f%d", ki, f);
    if (WRONG(T_HASH)) { strcpy(want, WT); break; }
    sprintf(want, ":%d", k->type == T_HASH && k->present[f]);
    k->present[f] = 0;
    if (k->type == T_HASH && model_count(k) == 0) k->type = T_NONE;
    break;
  case 5:
    sprintf(cmd, "HGET k%d f%d", ki, f);
    if (WRONG(T_HASH)) { strcpy(want, WT); break; }
    if (k->type == T_HASH && k->present[f]) sprintf(want, "\"%d\"", k->val[f]);
    else strcpy(want, "(nil)");
    break;
  case 6:
  case 7:
    sprintf(cmd, "%s k%d v%d", op == 6 ? "LPUSH" : "RPUSH", ki, v);
    if (WRONG(T_LIST)) { strcpy(want, WT); break; }
    if (k->llen >= LMAX) { sprintf(cmd, "LLEN k%d", ki); sprintf(want, ":%d", k->llen); break; }
    if (k->type == T_NONE) { memset(k, 0, sizeof *k); k->type = T_LIST; }
    if (op == 6) {
      memmove(k->list + 1, k->list, sizeof(int) * (size_t)k->llen);
      k->list[0] = v;
    } else {
      k->list[k->llen] = v;
    }
    k->llen++;
    sprintf(want, ":%d", k->llen);
    break;
  case 8:
  case 9:
    sprintf(cmd, "%s k%d", op == 8 ? "LPOP" : "RPOP", ki);
    if (WRONG(T_LIST)) { strcpy(want, WT); break; }
    if (k->type == T_NONE) { strcpy(want, "(nil)"); break; }
    if (op == 8) {
      sprintf(want, "\"v%d\"", k->list[0]);
      memmove(k->list, k->list + 1, sizeof(int) * (size_t)(k->llen - 1));
    } else {
      sprintf(want, "\"v%d\"", k->list[k->llen - 1]);
    }
    if (--k->llen == 0) k->type = T_NONE;
    break;
  case 10: {
    int idx = (int)ts_below(g, 12) - 6;
    sprintf(cmd, "LINDEX k%d %d", ki, idx);
    if (WRONG(T_LIST)) { strcpy(want, WT); break; }
    int i = idx < 0 ? idx + k->llen : idx;
    if (k->type == T_LIST && i >= 0 && i < k->llen) sprintf(want, "\"v%d\"", k->list[i]);
    else strcpy(want, "(nil)");
    break;
  }
  case 11: {
    int cnt = (int)ts_below(g, 5) - 2;
    sprintf(cmd, "LREM k%d %d v%d", ki, cnt, v);
    if (WRONG(T_LIST)) { strcpy(want, WT); break; }
    int removed = 0;
    if (k->type == T_LIST) {
      int lim = cnt == 0 ? LMAX : abs(cnt);
      if (cnt >= 0) {
        for (int i = 0; i < k->llen && removed < lim;)
          if (k->list[i] == v) { memmove(k->list + i, k->list + i + 1, sizeof(int) * (size_t)(k->llen - i - 1)); k->llen--; removed++; }
          else i++;
      } else {
        for (int i = k->llen - 1; i >= 0 && removed < lim; i--)
          if (k->list[i] == v) { memmove(k->list + i, k->list + i + 1, sizeof(int) * (size_t)(k->llen - i - 1)); k->llen--; removed++; }
      }
      if (k->llen == 0) k->type = T_NONE;
    }
    sprintf(want, ":%d", removed);
    break;
  }
  case 12:
    sprintf(cmd, "SADD k%d f%d", ki, f);
    if (WRONG(T_SET)) { strcpy(want, WT); break; }
    if (k->type == T_NONE) { memset(k, 0, sizeof *k); k->type = T_SET; }
    sprintf(want, ":%d", !k->present[f]);
    k->present[f] = 1;
    break;
  case 13:
    sprintf(cmd, "SREM k%d f%d", ki, f);
    if (WRONG(T_SET)) { strcpy(want, WT); break; }
    sprintf(want, ":%d", k->type == T_SET && k->present[f]);
    k->present[f] = 0;
    if (k->type == T_SET && model_count(k) == 0) k->type = T_NONE;
    break;
  case 14:
    sprintf(cmd, "SISMEMBER k%d f%d", ki, f);
    if (WRONG(T_SET)) { strcpy(want, WT); break; }
    sprintf(want, ":%d", k->type == T_SET && k->present[f]);
    break;
  case 15:
  case 16:
    sprintf(cmd, "ZADD k%d %d f%d", ki, v, f);
    if (WRONG(T_ZSET)) { strcpy(want, WT); break; }
    if (k->type == T_NONE) { memset(k, 0, sizeof *k); k->type = T_ZSET; }
    sprintf(want, ":%d", !k->present[f]);
    k->present[f] = 1;
    k->val[f] = v;
    break;
  case 17:
    sprintf(cmd, "ZREM k%d f%d", ki, f);
    if (WRONG(T_ZSET)) { strcpy(want, WT); break; }
    sprintf(want, ":%d", k->type == T_ZSET && k->present[f]);
    k->present[f] = 0;
    if (k->type == T_ZSET && model_count(k) == 0) k->type = T_NONE;
    break;
  case 18: {
    sprintf(cmd, "ZRANK k%d f%d", ki, f);
    if (WRONG(T_ZSET)) { strcpy(want, WT); break; }
    if (k->type != T_ZSET || !k->present[f]) { strcpy(want, "(nil)"); break; }
    int rank = 0;
    for (int o = 0; o < NF; o++)
      if (k->present[o] && (k->val[o] < k->val[f] || (k->val[o] == k->val[f] && o < f))) rank++;
    sprintf(want, ":%d", rank);
    break;
  }
  case 19: {
    sprintf(cmd, "ZINCRBY k%d 1 f%d", ki, f);
    if (WRONG(T_ZSET)) { strcpy(want, WT); break; }
    if (k->type == T_NONE) { memset(k, 0, sizeof *k); k->type = T_ZSET; }
    if (!k->present[f]) { k->present[f] = 1; k->val[f] = 0; }
    if (k->val[f] >= 20) { sprintf(cmd, "ZSCORE k%d f%d", ki, f); sprintf(want, "\"%d\"", k->val[f]); break; }
    k->val[f]++;
    sprintf(want, "\"%d\"", k->val[f]);
    break;
  }
  case 20:
    sprintf(cmd, "INCR k%d", ki);
    if (WRONG(T_STR)) { strcpy(want, WT); break; }
    if (k->type == T_NONE) { memset(k, 0, sizeof *k); k->type = T_STR; strcpy(k->str, "0"); }
    if (k->str[0] == 's' || k->str[0] == 'x' || strchr(k->str, 'x')) { strcpy(want, "-ERR value is not an integer or out of range"); break; }
    sprintf(k->str, "%lld", atoll(k->str) + 1);
    sprintf(want, ":%s", k->str);
    break;
  case 21: {
    int k2 = (int)ts_below(g, NKEYS);
    sprintf(cmd, "RENAME k%d k%d", ki, k2);
    if (k->type == T_NONE) { strcpy(want, "-ERR no such key"); break; }
    strcpy(want, "+OK");
    if (k2 != ki) { m[k2] = *k; memset(k, 0, sizeof *k); }
    break;
  }
  case 22:
    sprintf(cmd, "TYPE k%d", ki);
    sprintf(want, "+%s", (const char *[]){"none", "string", "hash", "list", "set", "zset"}[k->type]);
    break;
  case 24: { /* LTRIM */
    int a = (int)ts_below(g, 13) - 6, b = (int)ts_below(g, 13) - 6;
    sprintf(cmd, "LTRIM k%d %d %d", ki, a, b);
    if (WRONG(T_LIST)) { strcpy(want, WT); break; }
    strcpy(want, "+OK");
    if (k->type != T_LIST) break;
    int n = k->llen;
    if (a < 0) a += n;
    if (b < 0) b += n;
    if (a < 0) a = 0;
    if (b >= n) b = n - 1;
    if (a > b || a >= n) { memset(k, 0, sizeof *k); break; }
    memmove(k->list, k->list + a, sizeof(int) * (size_t)(b - a + 1));
    k->llen = b - a + 1;
    break;
  }
  case 25: { /* LSET */
    int idx = (int)ts_below(g, 12) - 6;
    sprintf(cmd, "LSET k%d %d v%d", ki, idx, v);
    if (WRONG(T_LIST)) { strcpy(want, WT); break; }
    if (k->type != T_LIST) { strcpy(want, "-ERR no such key"); break; }
    int i = idx < 0 ? idx + k->llen : idx;
    if (i < 0 || i >= k->llen) { strcpy(want, "-ERR index out of range"); break; }
    k->list[i] = v;
    strcpy(want, "+OK");
    break;
  }
  case 26: { /* LINSERT */
    int after = (int)ts_below(g, 2), pv = (int)ts_below(g, 10);
    sprintf(cmd, "LINSERT k%d %s v%d v%d", ki, after ? "AFTER" : "BEFORE", pv, v);
    if (WRONG(T_LIST)) { strcpy(want, WT); break; }
    if (k->type != T_LIST) { strcpy(want, ":0"); break; }
    if (k->llen >= LMAX) { sprintf(cmd, "LLEN k%d", ki); sprintf(want, ":%d", k->llen); break; }
    int i = 0;
    while (i < k->llen && k->list[i] != pv) i++;
    if (i == k->llen) { strcpy(want, ":-1"); break; }
    if (after) i++;
    memmove(k->list + i + 1, k->list + i, sizeof(int) * (size_t)(k->llen - i));
    k->list[i] = v;
    k->llen++;
    sprintf(want, ":%d", k->llen);
    break;
  }
  case 27: { /* ZCOUNT */
    int lo = (int)ts_below(g, 12) - 1, hi = (int)ts_below(g, 12) - 1, xl = (int)ts_below(g, 2), xh = (int)ts_below(g, 2);
    sprintf(cmd, "ZCOUNT k%d %s%d %s%d", ki, xl ? "(" : "", lo, xh ? "(" : "", hi);
    if (WRONG(T_ZSET)) { strcpy(want, WT); break; }
    int n = 0;
    for (int o = 0; k->type == T_ZSET && o < NF; o++)
      if (k->present[o] && (xl ? k->val[o] > lo : k->val[o] >= lo) && (xh ? k->val[o] < hi : k->val[o] <= hi)) n++;
    sprintf(want, ":%d", n);
    break;
  }
  case 28: { /* ZRANGEBYSCORE ... LIMIT */
    int lo = (int)ts_below(g, 12) - 1, hi = (int)ts_below(g, 12) - 1, off = (int)ts_below(g, 4), cnt = (int)ts_below(g, 6) - 1;
    sprintf(cmd, "ZRANGEBYSCORE k%d %d %d LIMIT %d %d", ki, lo, hi, off, cnt);
    if (WRONG(T_ZSET)) { strcpy(want, WT); break; }
    size_t pos = (size_t)sprintf(want, "[");
    int idx = 0, out = 0;
    for (int sc = -5; sc <= 20 && k->type == T_ZSET; sc++)
      for (int o = 0; o < NF; o++)
        if (k->present[o] && k->val[o] == sc && sc >= lo && sc <= hi) {
          if (idx++ < off) continue;
          if (cnt >= 0 && out >= cnt) continue;
          pos += (size_t)sprintf(want + pos, "%s\"f%d\"", out ? "," : "", o);
          out++;
        }
    sprintf(want + pos, "]");
    break;
  }
  case 29: { /* HINCRBY */
    int d = (int)ts_below(g, 7) - 3;
    sprintf(cmd, "HINCRBY k%d f%d %d", ki, f, d);
    if (WRONG(T_HASH)) { strcpy(want, WT); break; }
    if (k->type == T_NONE) { memset(k, 0, sizeof *k); k->type = T_HASH; }
    if (!k->present[f]) { k->present[f] = 1; k->val[f] = 0; }
    k->val[f] += d;
    sprintf(want, ":%d", k->val[f]);
    break;
  }
  case 30: { /* MGET */
    int k2 = (int)ts_below(g, NKEYS);
    sprintf(cmd, "MGET k%d nokey k%d", ki, k2);
    size_t pos = (size_t)sprintf(want, "[");
    if (k->type == T_STR) pos += (size_t)sprintf(want + pos, "\"%s\",", k->str);
    else pos += (size_t)sprintf(want + pos, "(nil),");
    pos += (size_t)sprintf(want + pos, "(nil),");
    if (m[k2].type == T_STR) pos += (size_t)sprintf(want + pos, "\"%s\"", m[k2].str);
    else pos += (size_t)sprintf(want + pos, "(nil)");
    sprintf(want + pos, "]");
    break;
  }
  default: {
    int n = 0;
    for (int i = 0; i < NKEYS; i++) n += m[i].type != T_NONE;
    strcpy(cmd, "DBSIZE");
    sprintf(want, ":%d", n);
    break;
  }
  }
}

Test(kv, prop_model) {
  shmd_store_t *s = ts_open("t", 16 * MB, 16 * MB);
  ts_rng_t g = {ts_seed("prop_model")};
  mkey_t m[NKEYS];
  memset(m, 0, sizeof m);
  int steps = getenv("SHMDICT_KV_STEPS") ? atoi(getenv("SHMDICT_KV_STEPS")) : 50000;
  for (int step = 0; step < steps; step++) {
    char cmd[256], want[4096];
    int ki;
    model_step(&g, m, cmd, want, &ki);
    shmd_reply_t *r = ts_kv(s, 0, cmd);
    cr_assert_str_eq(ts_show(r), want, "step %d: %s", step, cmd);
    shmd_reply_free(r);
    compare_key(s, &m[ki], ki);
    if (step < 2000 && step % 50 == 0)
      check_all(s);
  }
  for (int i = 0; i < NKEYS; i++)
    compare_key(s, &m[i], i);
  check_all(s);
  shmd_close(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* Two processes on one store: writer 0 and writer 1 (the argument of the child's function), run by
 * the crash harness on store "t", both read at once; each must exit 0 within timeout_ms. */

static void run_two_writers(ts_crash_fn fn, long timeout_ms) {
  static const int ids[2] = {0, 1};
  ts_crash_proc_t *p[2];
  for (int w = 0; w < 2; w++) {
    ts_crash_spec_t sp = {.what = w ? "writer 1" : "writer 0", .fn = fn, .arg = (void *)&ids[w], .store = "t",
                          .opts = ts_opts(16 * MB, 16 * MB), .end = TS_END_EXIT0, .timeout_ms = timeout_ms};
    p[w] = ts_crash_start(NULL, &sp);
  }
  ts_crash_wait_all(p, 2);
  for (int w = 0; w < 2; w++)
    ts_crash_finish(p[w], NULL);
}

enum { TWO_WRITERS_OPS = 20000 };

static int two_writers_child(ts_crash_child_t *c) {
  int w = *(const int *)c->arg;
  for (int i = 0; i < TWO_WRITERS_OPS; i++) {
    char b[4][64];
    snprintf(b[0], 64, "INCR counter");
    snprintf(b[1], 64, "RPUSH list w%d-%d", w, i);
    snprintf(b[2], 64, "HSET h f%d-%d %d", w, i, i);
    snprintf(b[3], 64, "MSET a%d %d b%d %d", w, i, w, i);
    for (int k = 0; k < 4; k++)
      if (ts_kv_do(c->s, 0, b[k]) != 0)
        return 3;
  }
  shmd_close(c->s);
  return 0;
}

Test(kv, mp_two_writers) {
  shmd_store_t *s = ts_open("t", 16 * MB, 16 * MB);
  const int n = TWO_WRITERS_OPS;
  run_two_writers(two_writers_child, 120000);
  char want[64];
  snprintf(want, sizeof want, "\"%d\"", 2 * n);
  TS_EXPECT(s, "GET counter", want);
  snprintf(want, sizeof want, ":%d", 2 * n);
  TS_EXPECT(s, "LLEN list", want);
  TS_EXPECT(s, "HLEN h", want);
  snprintf(want, sizeof want, "[\"%d\",\"%d\",\"%d\",\"%d\"]", n - 1, n - 1, n - 1, n - 1);
  TS_EXPECT(s, "MGET a0 b0 a1 b1", want);
  /* each writer's list elements are in its own order */
  shmd_reply_t *r = ts_kv(s, 0, "LRANGE list 0 -1");
  int next[2] = {0, 0};
  for (size_t i = 0; i < r->nelems; i++) {
    int w, k;
    cr_assert_eq(sscanf(r->elems[i].str, "w%d-%d", &w, &k), 2);
    cr_assert_eq(k, next[w]);
    next[w]++;
  }
  shmd_reply_free(r);
  check_all(s);
  shmd_close(s);
}

/* FLUSHDB swaps every stripe that is not a fresh hash, also an empty one that kept a bucket table
 * after its keys were deleted one by one: a flushed and drained database holds exactly what it
 * held after the first flush (multi/crash_exec_is_atomic compares the allocator's bytes so, and
 * failed 1216 against 1184 when the last round left a stripe whose only key, "big", was deleted). */
Test(kv, flushdb_leaves_fresh_stripes) {
  shmd_store_t *s = ts_open("t", 16 * MB, 16 * MB);
  TS_EXPECT(s, "SET warm x", "+OK");
  TS_EXPECT(s, "FLUSHDB", "+OK");
  cr_assert_eq(shmd_kv_drain(s, 0, 0), 0);
  shmd_stats_t st0, st1;
  cr_assert_eq(shmd_stats(s, &st0), 0);
  TS_EXPECT(s, "SET big x", "+OK");
  TS_EXPECT(s, "DEL big", ":1");
  TS_EXPECT(s, "FLUSHDB", "+OK");
  cr_assert_eq(shmd_kv_drain(s, 0, 0), 0);
  cr_assert_eq(shmd_stats(s, &st1), 0);
  cr_assert_eq(st1.allocated_bytes, st0.allocated_bytes, "%llu bytes allocated after the second flush, %llu after the first",
               (unsigned long long)st1.allocated_bytes, (unsigned long long)st0.allocated_bytes);
  check_all(s);
  shmd_close(s);
}

/* GET's lock-free path and the borrowed view: the answers are the transactional path's. */
Test(kv, get_view_and_lockfree_get) {
  shmd_store_t *s = ts_open("t", 16 * MB, 16 * MB);
  const void *v;
  size_t n = 0;
  char buf[8];
  cr_assert_eq(shmd_kv_get_view(s, 0, "k", 1, &v, &n), SHMD_ENOTFOUND);
  cr_assert_null(v);
  cr_assert_eq(shmd_kv_set(s, 0, "k", 1, "hello", 5, 0), 0);
  cr_assert_eq(shmd_kv_get_view(s, 0, "k", 1, &v, &n), 0);
  cr_assert_eq(n, 5);
  cr_assert_eq(memcmp(v, "hello", 5), 0);
  /* a snapshot: the view does not change when the key does (until this thread's next view) */
  cr_assert_eq(shmd_kv_set(s, 0, "k", 1, "world!", 6, 0), 0);
  cr_assert_eq(memcmp(v, "hello", 5), 0);
  cr_assert_eq(shmd_kv_get_view(s, 0, "k", 1, &v, &n), 0);
  cr_assert(n == 6 && memcmp(v, "world!", 6) == 0);
  /* the copying call: a short buffer gets the prefix and SHMD_ERANGE, as before */
  cr_assert_eq(shmd_kv_get(s, 0, "k", 1, buf, 3, &n), SHMD_ERANGE);
  cr_assert(n == 6 && memcmp(buf, "wor", 3) == 0);
  cr_assert_eq(shmd_kv_get(s, 0, "k", 1, NULL, 0, &n), SHMD_ERANGE);
  cr_assert_eq(shmd_kv_get(s, 0, "k", 1, NULL, 4, &n), SHMD_EINVAL);
  /* wrong type, through every way */
  cr_assert_eq(shmd_kv_hset(s, 0, "h", 1, "f", 1, "v", 1, NULL), 0);
  cr_assert_eq(shmd_kv_get(s, 0, "h", 1, buf, sizeof buf, &n), SHMD_EWRONGTYPE);
  cr_assert_eq(shmd_kv_get_view(s, 0, "h", 1, &v, &n), SHMD_EWRONGTYPE);
  TS_EXPECT(s, "GET h", WT);
  TS_EXPECT(s, "GET k", "\"world!\"");
  TS_EXPECT(s, "GET nokey", "(nil)");
  /* a value too big for the lock-free path (out of line in the hash) comes through the locks */
  static char big[5000];
  memset(big, 'b', sizeof big);
  big[4999] = 'e';
  cr_assert_eq(shmd_kv_set(s, 0, "big", 3, big, sizeof big, 0), 0);
  cr_assert_eq(shmd_kv_get_view(s, 0, "big", 3, &v, &n), 0);
  cr_assert(n == sizeof big && memcmp(v, big, n) == 0);
  /* an expired key: the read answers "not found" and lazy expiry deletes it (in a transaction) */
  TS_EXPECT(s, "SET e v PX 1", "+OK");
  TS_EXPECT(s, "SET e2 v PX 1", "+OK");
  TS_EXPECT(s, "SET e3 v PX 1", "+OK");
  TS_EXPECT(s, "DBSIZE", ":6");
  usleep(5000);
  cr_assert_eq(shmd_kv_get(s, 0, "e", 1, buf, sizeof buf, &n), SHMD_ENOTFOUND);
  cr_assert_eq(shmd_kv_get_view(s, 0, "e2", 2, &v, &n), SHMD_ENOTFOUND);
  TS_EXPECT(s, "GET e3", "(nil)");
  TS_EXPECT(s, "DBSIZE", ":3");
  /* inside a transaction the read takes the locks and sees the transaction's own writes */
  shmd_tx_t *tx;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_kv_set(s, 0, "k", 1, "in-tx", 5, 0), 0);
  cr_assert_eq(shmd_kv_get_view(s, 0, "k", 1, &v, &n), 0);
  cr_assert(n == 5 && memcmp(v, "in-tx", 5) == 0);
  shmd_tx_abort(tx);
  cr_assert_eq(shmd_kv_get(s, 0, "k", 1, buf, sizeof buf, &n), 0);
  cr_assert(n == 6 && memcmp(buf, "world!", 6) == 0);
  /* after FLUSHDB (stripe hashes swapped) the lock-free path finds nothing */
  TS_EXPECT(s, "FLUSHDB", "+OK");
  cr_assert_eq(shmd_kv_get_view(s, 0, "k", 1, &v, &n), SHMD_ENOTFOUND);
  cr_assert_eq(shmd_kv_get(s, 3, "k", 1, buf, sizeof buf, &n), SHMD_ENOTFOUND); /* a database made by the read */
  cr_assert_eq(shmd_kv_get_view(s, SHMD_KV_DATABASES, "k", 1, &v, &n), SHMD_EINVAL);
  check_all(s);
  shmd_close(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* Lock-free GET under concurrent writers: readers (shmd_kv_get, shmd_kv_get_view, GET through
 * shmd_kv_command) hammer a few hot keys while writer processes overwrite them with values of
 * another length, delete them, set them with a 1-3 ms expiry, turn them into hashes, grow and
 * shrink the stripe hashes by thousands of filler keys (incremental rehash both ways) and FLUSHDB
 * (stripe hashes swapped and drained). Every value a reader gets must be one complete value some
 * writer wrote: it carries (generation, key), its length is a function of both, and every byte. */

enum { RW_KEYS = 6, RW_FILL = 3000 };

/* The value a writer writes to hot key idx in generation gen: 8 to 407 bytes. */
static size_t rw_value(uint32_t gen, uint32_t idx, unsigned char *out) {
  size_t n = 8 + (gen * 37u + idx * 11u) % 400u;
  memcpy(out, &gen, 4);
  memcpy(out + 4, &idx, 4);
  for (size_t j = 8; j < n; j++)
    out[j] = (unsigned char)(gen * 131u + idx * 7u + j);
  return n;
}

/* 1 when v[0 .. n) is exactly the value of some generation for key idx. */
static int rw_whole(const unsigned char *v, size_t n, uint32_t idx) {
  if (n < 8)
    return 0;
  uint32_t gen, k;
  memcpy(&gen, v, 4);
  memcpy(&k, v + 4, 4);
  unsigned char want[512];
  return k == idx && rw_value(gen, idx, want) == n && memcmp(want, v, n) == 0;
}

static int rw_cmd(shmd_store_t *s, int argc, const char *const *argv, const size_t *lens) {
  shmd_reply_t *r = NULL;
  int rc = shmd_kv_command(s, argc, argv, lens, &r);
  if (rc == 0 && r->type == SHMD_REPLY_ERROR)
    rc = -1000;
  shmd_reply_free(r);
  return rc;
}

static void rw_writer(int w, uint64_t seed, uint64_t until_us) {
  shmd_options_t o = ts_opts(64 * MB, 64 * MB);
  shmd_store_t *s = NULL;
  if (shmd_open("t", &o, &s))
    _exit(2);
  ts_rng_t g = {seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(w + 1))};
  uint32_t gen = (uint32_t)w;
  int fill = 0, grow = 1;
  for (uint64_t it = 0; ts_now_us() < until_us; it++) {
    char key[32], fkey[32];
    uint32_t idx = (uint32_t)ts_below(&g, RW_KEYS);
    size_t kl = (size_t)snprintf(key, sizeof key, "hk:%u", idx);
    unsigned char v[512];
    size_t vl = rw_value(gen += 2, idx, v);
    unsigned op = (unsigned)ts_below(&g, 100);
    int rc;
    if (op < 60) {
      rc = shmd_kv_set(s, 0, key, kl, v, vl, 0);
    } else if (op < 72) {
      rc = shmd_kv_del(s, 0, key, kl);
      rc = rc == SHMD_ENOTFOUND ? 0 : rc;
    } else if (op < 87) {
      char px[8];
      const char *argv[5] = {"SET", key, (const char *)v, "PX", px};
      size_t lens[5] = {3, kl, vl, 2, (size_t)snprintf(px, sizeof px, "%u", 1 + (unsigned)ts_below(&g, 3))};
      rc = rw_cmd(s, 5, argv, lens);
    } else if (op < 95) {
      rc = shmd_kv_hset(s, 0, key, kl, "f", 1, v, vl, NULL);
      rc = rc == SHMD_EWRONGTYPE ? 0 : rc;
    } else if (op < 99 || w != 0) {
      rc = shmd_kv_set(s, 0, key, kl, v, vl, SHMD_KV_XX);
      rc = rc == SHMD_ENOTFOUND ? 0 : rc;
    } else {
      const char *argv[1] = {"FLUSHDB"};
      size_t lens[1] = {7};
      rc = rw_cmd(s, 1, argv, lens);
      fill = 0, grow = 1;
    }
    if (rc) {
      fprintf(stderr, "writer %d: op %u on %s: %s\n", w, op, key, shmd_strerror(rc));
      _exit(3);
    }
    /* fillers: grow the stripe hashes by RW_FILL keys, then shrink them back (rehash both ways) */
    size_t fl = (size_t)snprintf(fkey, sizeof fkey, "fill:%d:%d", w, fill);
    if (grow) {
      rc = shmd_kv_set(s, 0, fkey, fl, "x", 1, 0);
      if (++fill == RW_FILL)
        grow = 0;
    } else {
      rc = shmd_kv_del(s, 0, fkey, fl);
      rc = rc == SHMD_ENOTFOUND ? 0 : rc;
      if (--fill == 0)
        grow = 1;
    }
    if (rc) {
      fprintf(stderr, "writer %d: filler %s: %s\n", w, fkey, shmd_strerror(rc));
      _exit(3);
    }
  }
  shmd_close(s);
  _exit(0);
}

static void rw_reader(int rd, uint64_t seed, uint64_t until_us) {
  shmd_options_t o = ts_opts(64 * MB, 64 * MB);
  shmd_store_t *s = NULL;
  if (shmd_open("t", &o, &s))
    _exit(2);
  ts_rng_t g = {seed ^ (0x51afd7ed558ccd1dull * (uint64_t)(rd + 1))};
  uint64_t found = 0, absent = 0, wrong = 0;
  for (uint64_t it = 0; ts_now_us() < until_us; it++) {
    char key[32];
    uint32_t idx = (uint32_t)ts_below(&g, RW_KEYS);
    size_t kl = (size_t)snprintf(key, sizeof key, "hk:%u", idx), n = 0;
    unsigned char buf[512];
    const unsigned char *v = buf;
    int rc, how = (int)(it % 3);
    if (how == 0) {
      rc = shmd_kv_get(s, 0, key, kl, buf, sizeof buf, &n);
    } else if (how == 1) {
      const void *view;
      rc = shmd_kv_get_view(s, 0, key, kl, &view, &n);
      v = view;
    } else {
      const char *argv[2] = {"GET", key};
      size_t lens[2] = {3, kl};
      shmd_reply_t *r = NULL;
      rc = shmd_kv_command(s, 2, argv, lens, &r);
      if (rc == 0 && r->type == SHMD_REPLY_BULK && r->len <= sizeof buf)
        memcpy(buf, r->str, n = r->len);
      else if (rc == 0 && r->type == SHMD_REPLY_NIL)
        rc = SHMD_ENOTFOUND;
      else if (rc == 0 && r->type == SHMD_REPLY_ERROR && strncmp(r->str, "WRONGTYPE", 9) == 0)
        rc = SHMD_EWRONGTYPE;
      else if (rc == 0)
        rc = -1000;
      shmd_reply_free(r);
    }
    if (rc == 0 && !rw_whole(v, n, idx)) {
      fprintf(stderr, "reader %d (way %d): %s holds a value no writer wrote (%zu bytes)\n", rd, how, key, n);
      _exit(10);
    }
    if (rc && rc != SHMD_ENOTFOUND && rc != SHMD_EWRONGTYPE) {
      fprintf(stderr, "reader %d (way %d): %s: %s\n", rd, how, key, shmd_strerror(rc));
      _exit(11);
    }
    found += rc == 0, absent += rc == SHMD_ENOTFOUND, wrong += rc == SHMD_EWRONGTYPE;
  }
  fprintf(stderr, "reader %d: %llu values, %llu absent, %llu wrong type\n", rd, (unsigned long long)found,
          (unsigned long long)absent, (unsigned long long)wrong);
  shmd_close(s);
  _exit(found >= 100 ? 0 : 12);
}

Test(kv, mp_lockfree_get_sees_whole_values, .timeout = 120) {
  shmd_store_t *s = ts_open("t", 64 * MB, 64 * MB);
  uint64_t seed = ts_seed("mp_lockfree_get_sees_whole_values");
  for (uint32_t i = 0; i < RW_KEYS; i++) { /* every hot key starts with a value */
    char key[32];
    unsigned char v[512];
    size_t kl = (size_t)snprintf(key, sizeof key, "hk:%u", i), vl = rw_value(1000001u, i, v);
    cr_assert_eq(shmd_kv_set(s, 0, key, kl, v, vl, 0), 0);
  }
  uint64_t until = ts_now_us() + 3000000;
  pid_t kids[4];
  for (int k = 0; k < 4; k++) {
    kids[k] = fork();
    cr_assert_neq(kids[k], -1);
    if (kids[k] == 0) {
      if (k < 2)
        rw_writer(k, seed, until);
      rw_reader(k - 2, seed, until);
    }
  }
  for (int k = 0; k < 4; k++)
    cr_assert_eq(ts_wait(kids[k]), 0, "%s %d failed (exit status above)", k < 2 ? "writer" : "reader", k < 2 ? k : k - 2);
  check_all(s);
  shmd_close(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* Crash test: a child runs random commands and reports each completed one to the crash harness; it
 * is SIGKILLed at random moments (and at crash points inside commands and garbage drains). After
 * each kill the store reopens, the checks pass and every reported command's effect is visible. */

/* Operation i of round `round`: a command whose effect can be checked afterwards. Every 6th
 * operation builds a big hash / list / zset and deletes it (garbage drains to kill inside). Each
 * completed operation is reported as its number (a uint32_t record). */
static int crash_child(ts_crash_child_t *c) {
  int round = *(const int *)c->arg;
  shmd_store_t *s = c->s;
  char *line = malloc(65536);
  if (line == NULL)
    return 2;
  for (uint32_t i = 0;; i++) {
    int kind = (int)(i % 6);
    switch (kind) {
    case 0: sprintf(line, "SET r%d-s%u v%u", round, i, i); break;
    case 1: sprintf(line, "HSET h%d f%u %u", round % 3, i + (uint32_t)round * 1000000u, i); break;
    case 2: sprintf(line, "SADD s%d m%d-%u", round % 3, round, i); break;
    case 3: sprintf(line, "ZADD z%d %u m%d-%u", round % 3, i, round, i); break;
    case 4: sprintf(line, "RPUSH l%d e%d-%u", round % 3, round, i); break;
    default: {
      /* garbage: a big value, then its deletion */
      int t = (int)((i / 6) % 3);
      size_t pos = (size_t)sprintf(line, "%s big%d", t == 0 ? "HSET" : t == 1 ? "RPUSH" : "ZADD", round);
      for (int j = 0; j < 40; j++)
        pos += (size_t)sprintf(line + pos, t == 2 ? " %d m%d" : " f%d x%d", j, j);
      if (ts_kv_do(s, 0, line))
        return 4;
      sprintf(line, "DEL big%d", round);
      break;
    }
    }
    if (ts_kv_do(s, 0, line))
      return 5;
    ts_crash_report(c, &i);
    if (i % 97 == 0) {
      /* database 1: some keys with big values, then FLUSHDB (stripe hashes on the garbage list) */
      for (int j = 0; j < 20; j++) {
        size_t pos = (size_t)sprintf(line, "SADD x%d", j);
        for (int e = 0; e < 30; e++)
          pos += (size_t)sprintf(line + pos, " e%d", e);
        if (ts_kv_do(s, 1, line))
          return 7;
      }
      shmd_reply_t *r = NULL;
      if (ts_kv_line(s, 1, "FLUSHDB", &r) || r->type != SHMD_REPLY_STATUS)
        return 8;
      shmd_reply_free(r);
    }
  }
}

/* on_rec: the number of operations reported done (the last record's number + 1). */
static void take_done(const void *rec, void *arg) {
  uint32_t v;
  memcpy(&v, rec, sizeof v);
  *(uint32_t *)arg = v + 1;
}

static void crash_verify(shmd_store_t *s, int round, uint32_t done) {
  for (uint32_t i = 0; i < done; i++) {
    char line[128], want[128];
    switch (i % 6) {
    case 0:
      sprintf(line, "GET r%d-s%u", round, i);
      sprintf(want, "\"v%u\"", i);
      break;
    case 1:
      sprintf(line, "HGET h%d f%u", round % 3, i + (uint32_t)round * 1000000u);
      sprintf(want, "\"%u\"", i);
      break;
    case 2:
      sprintf(line, "SISMEMBER s%d m%d-%u", round % 3, round, i);
      strcpy(want, ":1");
      break;
    case 3:
      sprintf(line, "ZSCORE z%d m%d-%u", round % 3, round, i);
      sprintf(want, "\"%u\"", i);
      break;
    case 4: {
      /* list: element order is checked as a whole below */
      continue;
    }
    default:
      sprintf(line, "EXISTS big%d", round);
      strcpy(want, ":0");
      if (i + 1 != done) /* the last reported DEL may be followed by an unreported HSET big */
        continue;
      break;
    }
    shmd_reply_t *r = ts_kv(s, 0, line);
    cr_assert_str_eq(ts_show(r), want, "round %d op %u: %s", round, i, line);
    shmd_reply_free(r);
  }
  /* every reported RPUSH is in the list, in order */
  char line[64];
  sprintf(line, "LRANGE l%d 0 -1", round % 3);
  shmd_reply_t *r = ts_kv(s, 0, line);
  uint32_t expect = 4;
  for (size_t k = 0; k < r->nelems; k++) {
    int rr;
    unsigned v;
    cr_assert_eq(sscanf(r->elems[k].str, "e%d-%u", &rr, &v), 2);
    if (rr != round)
      continue;
    cr_assert_eq(v, expect, "list element %u, expected %u", v, expect);
    expect += 6;
  }
  cr_assert(expect >= done, "list lost reported pushes: next %u, done %u", expect, done);
  shmd_reply_free(r);
}

Test(kv, crash_random_kill) {
  int rounds = getenv("SHMDICT_KV_CRASH_ROUNDS") ? atoi(getenv("SHMDICT_KV_CRASH_ROUNDS")) : 120;
  ts_crash_t t;
  ts_crash_begin(&t, "kv.crash_random_kill");
  shmd_store_t *s0 = ts_open("t", 16 * MB, 16 * MB);
  shmd_close(s0);
  static const char *points[] = {"kv.command.commit", "kv.drain.step", "kv.drain.committed", "hash.*", "list.*"};
  for (int round = 0; round < rounds; round++) {
    int use_point = round % 3 == 2;
    char pointbuf[64];
    if (use_point)
      snprintf(pointbuf, sizeof pointbuf, "%s:%u", points[ts_below(&t.rng, 5)], (unsigned)(1 + ts_below(&t.rng, 400)));
    uint32_t done = 0;
    ts_crash_spec_t sp = {.what = "the command runner", .fn = crash_child, .arg = &round, .store = "t",
                          .opts = ts_opts(16 * MB, 16 * MB), .end = TS_END_KILLED, .rec_size = sizeof(uint32_t),
                          .on_rec = take_done, .rec_arg = &done};
    ts_crash_point_or_window(&sp, use_point ? pointbuf : NULL, 200000, 2000, 2000 + 29999);
    ts_crash_run(&t, &sp, NULL);
    cr_log_info("round %d: %u commands reported done%s%s", round, done, use_point ? ", crash point " : "",
                use_point ? pointbuf : "");
    shmd_store_t *s = ts_crash_open("t", 16 * MB, 16 * MB);
    check_all(s);
    crash_verify(s, round, done);
    cr_assert_eq(shmd_kv_drain(s, 0, 0), 0);
    cr_assert_eq(shmd_kv_drain(s, 1, 0), 0);
    shmd_kv_info_t info;
    cr_assert_eq(shmd_kv_info(s, 0, &info), 0);
    cr_assert_eq(info.garbage, 0);
    cr_assert_eq(shmd_kv_info(s, 1, &info), 0);
    cr_assert_eq(info.garbage, 0);
    check_all(s);
    shmd_close(s);
  }
  ts_crash_end(&t);
}

/* Two processes running multi-key commands over the same keys in different orders (MSET, DEL of
 * several keys, RENAME, SUNION, FLUSHDB on another database): stripe locks are taken in index
 * order, so nothing deadlocks, and the keyspace stays consistent. */
static int multikey_child(ts_crash_child_t *c) {
  int w = *(const int *)c->arg;
  ts_rng_t g = {(uint64_t)(w + 1) * 0x9E3779B97F4A7C15ull};
  for (int i = 0; i < 20000; i++) {
    char line[256];
    int a = (int)ts_below(&g, 12), b = (int)ts_below(&g, 12), k = (int)ts_below(&g, 12);
    switch (ts_below(&g, 6)) {
    case 0: snprintf(line, sizeof line, "MSET k%d %d k%d %d k%d %d", a, i, b, i, k, i); break;
    case 1: snprintf(line, sizeof line, "DEL k%d k%d k%d", k, b, a); break;
    case 2: snprintf(line, sizeof line, "RENAME k%d k%d", a, b); break;
    case 3: snprintf(line, sizeof line, "SADD k%d m%d", a + 12, i % 7); break;
    case 4: snprintf(line, sizeof line, "SUNION k%d k%d k%d", a + 12, b + 12, k + 12); break;
    default: snprintf(line, sizeof line, "MGET k%d k%d k%d k%d", a, b, k, a + 12); break;
    }
    int rc = ts_kv_do(c->s, 0, line);
    if (rc && rc != TS_KV_EREPLY) /* "no such key" from RENAME is fine */
      return 3;
    if (i % 500 == 0 && ts_kv_line(c->s, 1 + (unsigned)w, "FLUSHDB", NULL) != 0)
      return 4;
  }
  shmd_close(c->s);
  return 0;
}

Test(kv, mp_multikey_no_deadlock, .timeout = 60) {
  shmd_store_t *s = ts_open("t", 16 * MB, 16 * MB);
  run_two_writers(multikey_child, 60000);
  check_all(s);
  shmd_close(s);
}

/* FLUSHALL from different databases in two processes at once, between writes to those databases:
 * it takes every database's stripes in database order, so it never deadlocks. */
static int flushall_child(ts_crash_child_t *c) {
  int w = *(const int *)c->arg;
  for (int i = 0; i < 3000; i++) {
    unsigned db = w ? 9u - (unsigned)(i % 8) : (unsigned)(i % 8);
    char key[32];
    snprintf(key, sizeof key, "k%d", i % 50);
    shmd_reply_t *r = NULL;
    int rc = i % 10 == 0 ? ts_kv_words(c->s, db, &r, "FLUSHALL", NULL) : ts_kv_words(c->s, db, &r, "SET", key, "v", NULL);
    if (rc || r->type == SHMD_REPLY_ERROR)
      return 3;
    shmd_reply_free(r);
  }
  shmd_close(c->s);
  return 0;
}

Test(kv, mp_flushall_from_any_database_no_deadlock, .timeout = 60) {
  shmd_store_t *s = ts_open("t", 16 * MB, 16 * MB);
  run_two_writers(flushall_child, 60000);
  check_all(s);
  shmd_close(s);
}

Test(kv, glob) {
  struct {
    const char *p, *s;
    int m;
  } cases[] = {
      {"*", "", 0} /* as Redis stringmatchlen; KEYS * and MATCH * skip matching */, {"*", "abc", 1},      {"a*", "abc", 1},    {"a*c", "abc", 1},
      {"a*d", "abc", 0},    {"?", "a", 1},        {"?", "", 0},        {"??", "a", 0},
      {"h?llo", "hello", 1}, {"h[ae]llo", "hallo", 1}, {"h[ae]llo", "hillo", 0},
      {"h[^e]llo", "hallo", 1}, {"h[^e]llo", "hello", 0}, {"h[a-b]llo", "hbllo", 1},
      {"h[b-a]llo", "hbllo", 1}, {"h[a-b]llo", "hcllo", 0}, {"\\*", "*", 1}, {"\\*", "a", 0},
      {"a\\?b", "a?b", 1},  {"a**b", "ab", 1},    {"*b*", "abc", 1},   {"[", "[", 0},
      {"[a", "a", 1},       {"abc", "abcd", 0},   {"abcd", "abc", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    cr_expect_eq(shmd_kv_glob(cases[i].p, strlen(cases[i].p), cases[i].s, strlen(cases[i].s)), cases[i].m,
                 "glob(%s, %s)", cases[i].p, cases[i].s);
}

/* A store closed, dropped and created again in the same process may get the same handle and
 * mapping addresses: nothing cached per store may outlive the handle. */
Test(kv, reopen_same_name_after_drop) {
  for (int round = 0; round < 4; round++) {
    shmd_store_t *s = ts_open("again", 8 << 20, 8 << 20);
    char key[32];
    for (int i = 0; i < 500 * round; i++) {
      int n = snprintf(key, sizeof key, "k%d", i);
      cr_assert_eq(shmd_kv_set(s, 0, key, (size_t)n, "v", 1, 0), 0);
    }
    int rc = shmd_kv_set(s, 0, "last", 4, "x", 1, 0);
    cr_assert_eq(rc, 0, "round %d: %s", round, shmd_strerror(rc));
    char buf[8];
    size_t len = 0;
    cr_assert_eq(shmd_kv_get(s, 0, "last", 4, buf, sizeof buf, &len), 0);
    cr_assert_eq(shmd_kv_check(s), 0, "%s", shmd_errdetail());
    shmd_close(s);
    cr_assert_eq(shmd_drop("again", ts_dir), 0);
  }
}

/* ---- commands bigger than a lane's transaction capacity (extension blocks) ---- */

/* A command built from `n` generated arguments after the fixed `head` words; run_gen_rc() runs it
 * and returns the status (for children), run_gen() fails the test on a status. */
typedef const char *(*arg_fn)(int i, char *buf);
static int run_gen_rc(shmd_store_t *s, const char *const *head, int nhead, int n, arg_fn fn, shmd_reply_t **out) {
  ts_args_t a = {0};
  for (int i = 0; i < nhead; i++)
    ts_args_add(&a, head[i], strlen(head[i]));
  char buf[64];
  for (int i = 0; i < n; i++) {
    const char *w = fn(i, buf);
    ts_args_add(&a, w, strlen(w));
  }
  int rc = ts_kv_args(s, 0, &a, out);
  ts_args_free(&a);
  return rc;
}
static shmd_reply_t *run_gen(shmd_store_t *s, const char *const *head, int nhead, int n, arg_fn fn) {
  shmd_reply_t *r = NULL;
  int rc = run_gen_rc(s, head, nhead, n, fn, &r);
  cr_assert_eq(rc, 0, "%s with %d arguments: %s", head[0], n, shmd_strerror(rc));
  return r;
}

static const char *fv_pair(int i, char *b) { /* field i, value i (alternating) */
  snprintf(b, 64, i % 2 ? "value-%d-xxxxxxxxxxxxxxxxxxxxxxxx" : "field-%d", i / 2);
  return b;
}
static const char *member(int i, char *b) { snprintf(b, 64, "m%d", i); return b; }
static const char *score_member(int i, char *b) {
  if (i % 2 == 0)
    snprintf(b, 64, "%d", (i / 2) * 3 % 1000);
  else
    snprintf(b, 64, "z%d", i / 2);
  return b;
}
static const char *key_val(int i, char *b) { snprintf(b, 64, i % 2 ? "v%d" : "bk%d", i / 2); return b; }
static const char *setkey(int i, char *b) { snprintf(b, 64, "set%d", i); return b; }

Test(kv, big_commands_are_one_transaction) {
  shmd_store_t *s = ts_open("big", 64 * MB, 64 * MB);
  const char *hset[] = {"HSET", "h"};
  cr_assert_eq(ts_kv_int(run_gen(s, hset, 2, 2 * 20000, fv_pair)), 20000);
  TS_EXPECT(s, "HLEN h", ":20000");
  TS_EXPECT(s, "HGET h field-19999", "\"value-19999-xxxxxxxxxxxxxxxxxxxxxxxx\"");
  const char *zadd[] = {"ZADD", "z"};
  cr_assert_eq(ts_kv_int(run_gen(s, zadd, 2, 2 * 5000, score_member)), 5000);
  TS_EXPECT(s, "ZCARD z", ":5000");
  TS_EXPECT(s, "ZRANGE z 0 1", "[\"z0\",\"z1000\"]");
  const char *rpush[] = {"RPUSH", "l"};
  cr_assert_eq(ts_kv_int(run_gen(s, rpush, 2, 10000, member)), 10000);
  TS_EXPECT(s, "LINDEX l 9999", "\"m9999\"");
  const char *mset[] = {"MSET"};
  shmd_reply_t *r = run_gen(s, mset, 1, 2 * 3000, key_val);
  cr_assert_str_eq(ts_show(r), "+OK");
  shmd_reply_free(r);
  TS_EXPECT(s, "GET bk2999", "\"v2999\"");
  /* 200 sets read by one SUNION: 200 container locks in one transaction. */
  for (int i = 0; i < 200; i++) {
    char line[64];
    snprintf(line, sizeof line, "SADD set%d a%d common", i, i);
    shmd_reply_free(ts_kv(s, 0, line));
  }
  const char *sunion[] = {"SUNION"};
  r = run_gen(s, sunion, 1, 200, setkey);
  cr_assert_eq(r->type, SHMD_REPLY_ARRAY);
  cr_assert_eq(r->nelems, 201);
  shmd_reply_free(r);
  /* Removals of thousands at once. */
  TS_EXPECT(s, "LTRIM l 4000 -1", "+OK");
  TS_EXPECT(s, "LLEN l", ":6000");
  TS_EXPECT(s, "ZREMRANGEBYRANK z 0 2999", ":3000");
  TS_EXPECT(s, "ZCARD z", ":2000");
  const char *sadd[] = {"SADD", "s"};
  cr_assert_eq(ts_kv_int(run_gen(s, sadd, 2, 8000, member)), 8000);
  r = ts_kv(s, 0, "SPOP s 5000");
  cr_assert_eq(r->nelems, 5000);
  shmd_reply_free(r);
  TS_EXPECT(s, "SCARD s", ":3000");
  const char *hdel[] = {"HDEL", "h"};
  /* fields field-0..field-14999 and as many value strings that are no fields */
  cr_assert_eq(ts_kv_int(run_gen(s, hdel, 2, 2 * 15000, fv_pair)), 15000);
  TS_EXPECT(s, "HLEN h", ":5000");
  check_all(s);
  shmd_close(s);
}

/* A process killed inside a command of thousands of elements leaves all of it or none of it. */
static int g_gen;
static const char *gen_pair(int i, char *b) {
  if (i % 2)
    snprintf(b, 64, "%d", g_gen);
  else
    snprintf(b, 64, "f%d", i / 2);
  return b;
}

/* Writes generation after generation of HSET big f0 <gen> ... f2999 <gen> from the one after
 * *arg, reporting each completed generation (an int record). */
static int big_child(ts_crash_child_t *c) {
  const char *head[] = {"HSET", "big"};
  for (g_gen = *(const int *)c->arg + 1;; g_gen++) {
    shmd_reply_t *r = NULL;
    if (run_gen_rc(c->s, head, 2, 2 * 3000, gen_pair, &r) != 0)
      return 4;
    shmd_reply_free(r);
    ts_crash_report(c, &g_gen);
  }
}

static void take_int(const void *rec, void *arg) { memcpy(arg, rec, sizeof(int)); }

Test(kv, crash_inside_a_big_command) {
  ts_crash_t t;
  ts_crash_begin(&t, "kv.crash_inside_a_big_command");
  shmd_store_t *s0 = ts_open("bc", 32 * MB, 32 * MB);
  shmd_close(s0);
  int last = 0;
  for (int round = 0; round < 15; round++) {
    int done = last;
    ts_crash_spec_t sp = {.what = "the HSET runner", .fn = big_child, .arg = &last, .store = "bc",
                          .opts = ts_opts(32 * MB, 32 * MB), .kill_lo_us = 3000, .kill_hi_us = 3000 + 39999,
                          .end = TS_END_KILLED, .rec_size = sizeof(int), .on_rec = take_int, .rec_arg = &done};
    ts_crash_run(&t, &sp, NULL);
    shmd_store_t *s = ts_crash_open("bc", 32 * MB, 32 * MB);
    check_all(s);
    shmd_reply_t *r = ts_kv(s, 0, "HGETALL big");
    cr_assert_eq(r->type, SHMD_REPLY_ARRAY);
    if (done == 0 && r->nelems == 0) { /* nothing ever committed */
      shmd_reply_free(r);
      shmd_close(s);
      continue;
    }
    cr_assert_eq(r->nelems, 2 * 3000, "round %d: %zu fields", round, r->nelems / 2);
    int seen = atoi(r->elems[1].str);
    cr_assert(seen == done || seen == done + 1, "round %d: generation %d, reported %d", round, seen, done);
    for (size_t i = 1; i < r->nelems; i += 2)
      cr_assert_eq(atoi(r->elems[i].str), seen, "round %d: a field of another generation", round);
    shmd_reply_free(r);
    last = seen;
    shmd_close(s);
  }
  ts_crash_end(&t);
  cr_assert_gt(last, 0, "no big command ever completed");
}

/* A sorted set of a few thousand members (a tree of three levels) against a model: random adds,
 * score changes and removals with many equal scores (members break the ties), then ranks, reverse
 * ranks, counts, and ranges by rank, by score with LIMIT, reversed, compared with the model's
 * sorted order; the checker (tree and hash entry by entry) after each round. */
typedef struct zm_s {
  int score[4000];
  char present[4000];
} zm_t;
static int zm_cmp(const void *a, const void *b, void *arg) {
  const zm_t *m = arg;
  int x = *(const int *)a, y = *(const int *)b;
  if (m->score[x] != m->score[y])
    return m->score[x] < m->score[y] ? -1 : 1;
  return x < y ? -1 : x > y; /* "m%05d": byte order is numeric order */
}
static size_t zm_sorted(zm_t *m, int *out) {
  size_t n = 0;
  for (int i = 0; i < 4000; i++)
    if (m->present[i])
      out[n++] = i;
  qsort_r(out, n, sizeof *out, zm_cmp, m);
  return n;
}

Test(kv, big_sorted_set_against_a_model, .timeout = 300) {
  shmd_store_t *s = ts_open("zm", 64 * MB, 64 * MB);
  ts_rng_t g = {ts_seed("big_sorted_set_against_a_model")};
  static zm_t m;
  static int order[4000];
  memset(&m, 0, sizeof m);
  char line[256], want[256];
  for (int round = 0; round < 6; round++) {
    for (int k = 0; k < 1500; k++) {
      int id = (int)ts_below(&g, 4000), sc = (int)ts_below(&g, 300);
      if (ts_below(&g, 5) == 0) {
        sprintf(line, "ZREM zb m%05d", id);
        sprintf(want, ":%d", m.present[id]);
        m.present[id] = 0;
      } else {
        sprintf(line, "ZADD zb %d m%05d", sc, id);
        sprintf(want, ":%d", !m.present[id]);
        m.present[id] = 1;
        m.score[id] = sc;
      }
      shmd_reply_t *r = ts_kv(s, 0, line);
      cr_assert_str_eq(ts_show(r), want, "%s", line);
      shmd_reply_free(r);
    }
    check_all(s);
    size_t n = zm_sorted(&m, order);
    sprintf(line, "ZCARD zb");
    shmd_reply_t *r = ts_kv(s, 0, line);
    cr_assert_eq(r->integer, (long long)n);
    shmd_reply_free(r);
    for (int q = 0; q < 40; q++) {
      size_t at = ts_below(&g, n);
      int id = order[at];
      sprintf(line, "ZRANK zb m%05d", id);
      r = ts_kv(s, 0, line);
      cr_assert_eq(r->integer, (long long)at, "%s: %lld, model %zu", line, r->integer, at);
      shmd_reply_free(r);
      sprintf(line, "ZREVRANK zb m%05d", id);
      r = ts_kv(s, 0, line);
      cr_assert_eq(r->integer, (long long)(n - 1 - at), "%s", line);
      shmd_reply_free(r);
      /* scores [lo, hi], LIMIT off cnt, ascending or descending */
      int lo = (int)ts_below(&g, 300), hi = lo + (int)ts_below(&g, 40);
      int off = (int)ts_below(&g, 30), cnt = 1 + (int)ts_below(&g, 60), rev = (int)ts_below(&g, 2);
      size_t first = 0, last = 0; /* the model's interval [first, last) of scores in [lo, hi] */
      while (first < n && m.score[order[first]] < lo)
        first++;
      last = first;
      while (last < n && m.score[order[last]] <= hi)
        last++;
      sprintf(line, "ZCOUNT zb %d %d", lo, hi);
      r = ts_kv(s, 0, line);
      cr_assert_eq(r->integer, (long long)(last - first), "%s", line);
      shmd_reply_free(r);
      if (rev)
        sprintf(line, "ZRANGE zb %d %d BYSCORE REV LIMIT %d %d WITHSCORES", hi, lo, off, cnt);
      else
        sprintf(line, "ZRANGE zb %d %d BYSCORE LIMIT %d %d WITHSCORES", lo, hi, off, cnt);
      r = ts_kv(s, 0, line);
      size_t k = 0;
      for (size_t j = off; j < last - first && k < (size_t)cnt; j++, k++) {
        int e = order[rev ? last - 1 - j : first + j];
        char mb[16], sb[16];
        sprintf(mb, "m%05d", e);
        sprintf(sb, "%d", m.score[e]);
        cr_assert(2 * k + 1 < r->nelems, "%s: %zu elements, model has more", line, r->nelems);
        cr_assert_str_eq(r->elems[2 * k].str, mb, "%s: element %zu", line, k);
        cr_assert_str_eq(r->elems[2 * k + 1].str, sb, "%s: score %zu", line, k);
      }
      cr_assert_eq(r->nelems, 2 * k, "%s: %zu elements, model %zu", line, r->nelems / 2, k);
      shmd_reply_free(r);
      /* ranks [a, a + 50], reversed half of the time */
      size_t a = ts_below(&g, n);
      sprintf(line, "ZRANGE zb %zu %zu%s", a, a + 50, rev ? " REV" : "");
      r = ts_kv(s, 0, line);
      size_t want_n = n - a < 51 ? n - a : 51;
      cr_assert_eq(r->nelems, want_n, "%s", line);
      for (size_t j = 0; j < want_n; j++) {
        char mb[16];
        sprintf(mb, "m%05d", order[rev ? n - 1 - a - j : a + j]);
        cr_assert_str_eq(r->elems[j].str, mb, "%s: element %zu", line, j);
      }
      shmd_reply_free(r);
    }
    cr_assert_eq(shmd__kv_zset_is_btree(s, 0, "zb", 2), 1);
  }
  /* pops from both ends drain it in order */
  size_t n = zm_sorted(&m, order);
  shmd_reply_t *r = ts_kv(s, 0, "ZPOPMIN zb 100");
  for (size_t j = 0; j < 100 && j < n; j++) {
    char mb[16];
    sprintf(mb, "m%05d", order[j]);
    cr_assert_str_eq(r->elems[2 * j].str, mb, "ZPOPMIN element %zu", j);
  }
  shmd_reply_free(r);
  r = ts_kv(s, 0, "ZPOPMAX zb 100");
  for (size_t j = 0; j < 100 && j < n; j++) {
    char mb[16];
    sprintf(mb, "m%05d", order[n - 1 - j]);
    cr_assert_str_eq(r->elems[2 * j].str, mb, "ZPOPMAX element %zu", j);
  }
  shmd_reply_free(r);
  check_all(s);
  shmd_close(s);
}

/* Sorted sets under kills: a child runs a fixed sequence of sorted-set commands on one set that
 * grows to a few thousand members (its tree splits, borrows and merges as members are added,
 * moved by new scores, popped and removed by ranges) plus ZUNIONSTORE copies, reporting each
 * command it finished; it is killed at a random moment or at a crash point inside the tree's
 * restructuring. After each kill the store's checkers pass (shmd_kv_check verifies the tree with
 * its container's checker and that tree and member hash agree), and the sets equal those of a
 * second store that ran the first `done` commands of the sequence, or `done + 1` (the killed
 * command may have committed before it was reported). */
static void zcrash_line(uint32_t i, char *line) {
  uint32_t m = (i * 2654435761u) % 4000, sc = (i * 7919u) % 5003;
  switch (i % 16) {
  case 0: case 1: case 2: case 3: case 4: case 5: case 6: case 7:
    sprintf(line, "ZADD zc %u m%u %u n%u", sc, m, sc / 2, (m * 7) % 4000);
    break;
  case 8: sprintf(line, "ZINCRBY zc %u m%u", sc % 100, (m * 3) % 4000); break;
  case 9: sprintf(line, "ZREM zc m%u n%u m%u", m, m, (m + 1) % 4000); break;
  case 10: sprintf(line, "ZPOPMIN zc %u", 1 + i % 7); break;
  case 11: sprintf(line, "ZREMRANGEBYSCORE zc %u %u", sc, sc + 15); break;
  case 12: sprintf(line, "ZREMRANGEBYRANK zc %u %u", i % 50, i % 50 + i % 9); break;
  case 13: sprintf(line, "ZADD zc GT %u m%u", sc, (m * 5) % 4000); break;
  case 14:
    if (i % 64 == 14)
      sprintf(line, "ZUNIONSTORE zd 2 zc zd WEIGHTS 1 0.5");
    else
      sprintf(line, "ZADD zd %u d%u", sc, m % 300);
    break;
  default: sprintf(line, "ZPOPMAX zd 2"); break;
  }
}

static int zcrash_same(shmd_store_t *a, shmd_store_t *b) {
  static const char *const q[] = {"ZRANGE zc 0 -1 WITHSCORES", "ZRANGE zd 0 -1 WITHSCORES"};
  for (int k = 0; k < 2; k++) {
    shmd_reply_t *x = ts_kv(a, 0, q[k]), *y = ts_kv(b, 0, q[k]);
    int same = x->type == y->type && x->nelems == y->nelems;
    for (size_t j = 0; same && j < x->nelems; j++)
      same = x->elems[j].len == y->elems[j].len && memcmp(x->elems[j].str, y->elems[j].str, x->elems[j].len) == 0;
    shmd_reply_free(x);
    shmd_reply_free(y);
    if (!same)
      return 0;
  }
  return 1;
}

Test(kv, crash_sorted_set_tree_restructuring, .timeout = 300) {
  int rounds = getenv("SHMDICT_KV_CRASH_ROUNDS") ? atoi(getenv("SHMDICT_KV_CRASH_ROUNDS")) / 3 : 40;
  ts_rng_t g = {ts_seed("crash_sorted_set_tree_restructuring")};
  static const char *points[] = {"btree.split", "btree.merge", "btree.borrow", "btree.grow", "btree.shrink",
                                 "btree.put.inserted", "btree.delete.removed", "btree.*", "kv.command.commit",
                                 "kv.command.commit", "kv.command.commit"}; /* after all changes */
  shmd_store_t *s0 = ts_open("zc", 32 * MB, 32 * MB);
  shmd_close(s0);
  shmd_store_t *model = ts_open("zm", 32 * MB, 32 * MB);
  uint32_t applied = 0; /* commands of the sequence the model has run */
  char line[128];
  int points_hit = 0;
  for (int round = 0; round < rounds; round++) {
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    int use_point = round % 2 == 1;
    char pointbuf[64];
    snprintf(pointbuf, sizeof pointbuf, "%s:%u", points[ts_below(&g, sizeof points / sizeof points[0])],
             (unsigned)(1 + ts_below(&g, 60)));
    pid_t pid = fork();
    if (pid == 0) {
      close(pfd[0]);
      if (use_point)
        setenv("SHMDICT_CRASH_POINT", pointbuf, 1);
      shmd_options_t o = ts_opts(32 * MB, 32 * MB);
      shmd_store_t *s = NULL;
      if (shmd_open("zc", &o, &s))
        _exit(2);
      for (uint32_t i = applied;; i++) {
        zcrash_line(i, line);
        if (ts_kv_do(s, 0, line))
          _exit(5);
        if (write(pfd[1], &i, sizeof i) != sizeof i)
          _exit(6);
      }
    }
    close(pfd[1]);
    int st = 0;
    if (!use_point) {
      usleep((useconds_t)(3000 + ts_below(&g, 40000)));
      kill(pid, SIGKILL);
      st = ts_wait(pid);
    } else {
      int t;
      for (t = 0; t < 300 && waitpid(pid, &st, WNOHANG) != pid; t++)
        usleep(1000);
      if (t == 300) {
        kill(pid, SIGKILL);
        st = ts_wait(pid);
      } else {
        points_hit++;
        st = WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
      }
    }
    cr_assert_eq(st, 128 + SIGKILL, "round %d: child ended with status %d", round, st);
    uint32_t done = applied, v;
    while (read(pfd[0], &v, sizeof v) == sizeof v)
      done = v + 1;
    close(pfd[0]);
    shmd_store_t *s = ts_open("zc", 32 * MB, 32 * MB);
    check_all(s);
    for (; applied < done; applied++) {
      zcrash_line(applied, line);
      cr_assert_eq(ts_kv_do(model, 0, line), 0, "model: %s", line);
    }
    if (!zcrash_same(s, model)) { /* the killed command committed but was not reported */
      zcrash_line(applied++, line);
      cr_assert_eq(ts_kv_do(model, 0, line), 0, "model: %s", line);
      cr_assert(zcrash_same(s, model), "round %d (%s%s): the sets match neither %u nor %u commands", round,
                use_point ? "crash point " : "random kill", use_point ? pointbuf : "", done, done + 1);
    }
    cr_log_info("round %d: %u commands%s%s", round, applied, use_point ? ", crash point " : "",
                use_point ? pointbuf : "");
    int kind = shmd__kv_zset_is_btree(s, 0, "zc", 2);
    if (kind == SHMD_ENOTFOUND) { /* nothing ran yet (a slow child), or the pops emptied it */
      shmd_reply_t *zr = ts_kv(model, 0, "ZCARD zc");
      cr_assert_eq(zr->integer, 0, "round %d: zc is missing, the model has %lld members", round, zr->integer);
      shmd_reply_free(zr);
    } else {
      cr_assert_eq(kind, 1, "round %d: zc is not a B+tree (%d)", round, kind);
    }
    shmd_close(s);
  }
  shmd_reply_t *r = ts_kv(model, 0, "ZCARD zc");
  cr_assert_gt(r->integer, 200, "the set stayed small (%lld members): no deep tree", (long long)r->integer);
  shmd_reply_free(r);
  cr_assert_gt(points_hit, 0, "no crash point was reached");
  check_all(model);
  shmd_close(model);
}

/* A process killed between allocating the keyspace root and publishing it (the store's very first
 * keyspace command) leaks nothing: the block was a transaction reservation, and recovery frees it.
 * Also: a racing creator that loses inside a caller's transaction does not abort that transaction. */
static int set_k_child(ts_crash_child_t *c) { return ts_kv_do(c->s, 0, "SET k v") == 0 ? 0 : 4; }

Test(kv, crash_while_creating_the_keyspace_root) {
  shmd_store_t *s = ts_open("kr", 8 * MB, 8 * MB);
  shmd_stats_t st;
  cr_assert_eq(shmd_stats(s, &st), 0);
  uint64_t before = st.allocated_bytes;
  shmd_close(s);
  ts_crash_t t;
  ts_crash_begin(&t, "kv.crash_while_creating_the_keyspace_root");
  ts_crash_run(&t,
               &(ts_crash_spec_t){.what = "the first SET", .fn = set_k_child, .store = "kr", .opts = ts_opts(8 * MB, 8 * MB),
                                  .point = "kv.root.allocated", .end = TS_END_KILLED},
               NULL);
  ts_crash_end(&t);
  s = ts_open("kr", 8 * MB, 8 * MB);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  cr_assert_eq(shmd_stats(s, &st), 0);
  cr_assert_eq(st.allocated_bytes, before, "the unpublished keyspace root leaked: %llu bytes allocated, %llu before",
               (unsigned long long)st.allocated_bytes, (unsigned long long)before);
  shmd_ptr_t rp;
  cr_assert_eq(shmd_root_get(s, "shmdict.kv", &rp), SHMD_ENOTFOUND);
  TS_EXPECT(s, "SET k v", "+OK");
  TS_EXPECT(s, "GET k", "\"v\"");
  check_all(s);

  /* Losing a root race inside a transaction: SHMD_EEXIST, and the transaction still commits. */
  shmd_tx_t *tx;
  shmd_ptr_t p, existing;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_tx_alloc(tx, 64, &p), 0);
  cr_assert_eq(shmd_root_set_nx(s, "shmdict.kv", p, &existing), SHMD_EEXIST);
  cr_assert_eq(shmd_root_get(s, "shmdict.kv", &rp), 0);
  cr_assert(shmd_ptr_eq(existing, rp));
  cr_assert_eq(shmd_tx_free(tx, p), 0);
  cr_assert_eq(shmd_tx_commit(tx), 0);
  check_all(s);
  shmd_close(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* Replies a request may make as big as it likes: Redis's range error for LLONG_MIN, a ceiling on
 * the memory of one reply (shmd_kv_set_max_reply), and strings no longer than proto-max-bulk-len.
 * A regression here could exhaust the host, so the dangerous commands run in a forked child under
 * RLIMIT_AS and a timer. */

#include <sys/mman.h>
#include <sys/resource.h>

#define ERR_LLONG_MIN "-ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"
#define ERR_BIG_REPLY "-ERR reply exceeds maximum allowed size (shmdict max-reply-bytes)"

/* The address space of this process now, in bytes (VmSize). */
static uint64_t vm_size_now(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long long pages = 0;
  if (f) {
    if (fscanf(f, "%llu", &pages) != 1)
      pages = 0;
    fclose(f);
  }
  return (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

typedef struct bounded_s {
  int status;          /* the child's exit status (128 + signal if killed, TS_HUNG after 60 s) */
  char reply[512];     /* the rendered reply, or "status: ..." when the command could not run */
  double seconds;      /* how long the command ran */
  long maxrss_growth_kb; /* peak RSS during the command minus the RSS before it */
} bounded_t;

typedef struct {
  const char *name, *line;
  uint64_t max_reply;
} bounded_arg_t;

/* The child of run_bounded(): limits its address space, opens the store, runs the command and
 * reports a bounded_t record. */
static int bounded_child(ts_crash_child_t *c) {
  const bounded_arg_t *a = c->arg;
  uint64_t now = vm_size_now(), lim = UINT64_C(2) << 30;
  if (now + (UINT64_C(1) << 30) > lim)
    lim = now + (UINT64_C(1) << 30);
  struct rlimit rl = {lim, lim};
  if (setrlimit(RLIMIT_AS, &rl) != 0)
    return 94;
  shmd_options_t o = ts_opts(8 * MB, 8 * MB);
  shmd_store_t *cs = NULL;
  if (shmd_open(a->name, &o, &cs))
    return 95;
  if (a->max_reply)
    shmd_kv_set_max_reply(a->max_reply);
  ts_args_t args = {0};
  ts_args_split(&args, a->line);
  struct rusage ru0, ru1;
  getrusage(RUSAGE_SELF, &ru0);
  uint64_t t0 = ts_now_ns();
  shmd_reply_t *r = NULL;
  int rc = ts_kv_args(cs, 0, &args, &r);
  uint64_t t1 = ts_now_ns();
  getrusage(RUSAGE_SELF, &ru1);
  bounded_t b = {0};
  b.seconds = (double)(t1 - t0) / 1e9;
  b.maxrss_growth_kb = ru1.ru_maxrss - ru0.ru_maxrss;
  if (rc)
    snprintf(b.reply, sizeof b.reply, "status: %s", shmd_strerror(rc));
  else
    ts_reply_render(r, b.reply, sizeof b.reply);
  shmd_reply_free(r);
  ts_args_free(&args);
  shmd_close(cs);
  ts_crash_report(c, &b);
  return 0;
}

static void take_bounded(const void *rec, void *arg) { memcpy(arg, rec, sizeof(bounded_t)); }

/*
 * Runs one command on store `name` in a child of the crash harness whose address space is limited
 * to max(2 GiB, now + 1 GiB) (RLIMIT_AS), that is killed after 60 s and once its RSS passes 2 GiB,
 * so a regression that tries to build a reply of 2^63 elements fails this test instead of taking
 * the host down. The child reports the rendered reply, the time and its peak RSS growth as a
 * record. Under ASan the address-space limit is "now + 1 GiB" of a process that reserved terabytes
 * for its shadow, and ASan's small-object allocator maps inside its own reservation, so there it
 * bounds only the big arrays: the RSS watch bounds the rest.
 */
static bounded_t run_bounded(const char *name, uint64_t max_reply, const char *line) {
  bounded_arg_t a = {name, line, max_reply};
  bounded_t b = {0};
  ts_crash_res_t res;
  ts_crash_spec_t sp = {.what = line, .fn = bounded_child, .arg = &a, .timeout_ms = 60000, .hang_ok = 1,
                        .rss_limit = UINT64_C(2) << 30, .end = TS_END_ANY, .rec_size = sizeof b,
                        .on_rec = take_bounded, .rec_arg = &b};
  int st = ts_crash_run(NULL, &sp, &res);
  b.status = st;
  if (res.records != 1)
    snprintf(b.reply, sizeof b.reply, "(the child reported nothing)");
  return b;
}

#define EXPECT_BOUNDED(name, max_reply, line, want)                                                \
  do {                                                                                             \
    bounded_t b_ = run_bounded((name), (max_reply), (line));                                       \
    cr_expect_eq(b_.status, 0, "%s: the child exited with %d (128 + signal: killed)", (line), b_.status); \
    cr_expect_str_eq(b_.reply, (want), "%s -> %s", (line), b_.reply);                              \
    cr_expect_lt(b_.seconds, 10.0, "%s took %.1f s", (line), b_.seconds);                          \
    cr_expect_lt(b_.maxrss_growth_kb, 256L * 1024, "%s grew the RSS by %ld KiB", (line), b_.maxrss_growth_kb); \
  } while (0)

/* SRANDMEMBER with LLONG_MIN answers Redis 7.0's range error (its count range is -LONG_MAX ..
 * LONG_MAX), whether the set exists or not, instead of negating LLONG_MIN. */
Test(kv, srandmember_llong_min_is_redis_range_error) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  TS_EXPECT(s, "SADD st a b c", ":3");
  TS_EXPECT(s, "SRANDMEMBER nokey -9223372036854775808", ERR_LLONG_MIN);
  TS_EXPECT(s, "SRANDMEMBER nokey -9223372036854775807", "[]");
  TS_EXPECT_SET(s, "SRANDMEMBER st 9223372036854775807", "[a,b,c]");
  shmd_close(s);
  EXPECT_BOUNDED("t", 0, "SRANDMEMBER st -9223372036854775808", ERR_LLONG_MIN);
  EXPECT_BOUNDED("t", 0, "SPOP st -9223372036854775808", "-ERR value is out of range, must be positive");
  s = ts_open("t", 8 * MB, 8 * MB);
  TS_EXPECT(s, "SCARD st", ":3");
  check_all(s);
  shmd_close(s);
}

/* A huge negative count on an existing set (a reply of 2^62 or 2^63 - 1 elements) is refused at
 * once with the ceiling's error, without building anything; a missing set still answers []. */
Test(kv, mp_huge_negative_count_is_refused_in_bounded_memory) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  TS_EXPECT(s, "SADD st a b c", ":3");
  shmd_close(s);
  EXPECT_BOUNDED("t", 0, "SRANDMEMBER st -9223372036854775807", ERR_BIG_REPLY);
  EXPECT_BOUNDED("t", 0, "SRANDMEMBER st -4611686018427387904", ERR_BIG_REPLY);
  /* 40 million elements: refused by the up-front estimate with the default 1 GiB ceiling */
  EXPECT_BOUNDED("t", 0, "SRANDMEMBER st -40000000", ERR_BIG_REPLY);
  /* a ceiling of 1 MiB: 100 000 elements are more than it allows */
  EXPECT_BOUNDED("t", 1 << 20, "SRANDMEMBER st -100000", ERR_BIG_REPLY);
  EXPECT_BOUNDED("t", 0, "SRANDMEMBER nokey -9223372036854775807", "[]");
  s = ts_open("t", 8 * MB, 8 * MB);
  TS_EXPECT(s, "SCARD st", ":3");
  check_all(s);
  shmd_close(s);
}

/* The ceiling (shmd_kv_set_max_reply) holds for every reply whose size the data or the request
 * chooses, an over-large command changes nothing, and the default comes back with 0. */
Test(kv, reply_ceiling_is_respected) {
  cr_assert_eq(shmd_kv_max_reply(), SHMD_KV_MAX_REPLY_DEFAULT);
  shmd_store_t *s = ts_open("t", 32 * MB, 32 * MB);
  const char *sadd[] = {"SADD", "s"};
  cr_assert_eq(ts_kv_int(run_gen(s, sadd, 2, 3000, member)), 3000);
  const char *rpush[] = {"RPUSH", "l"};
  cr_assert_eq(ts_kv_int(run_gen(s, rpush, 2, 3000, member)), 3000);
  const char *hset[] = {"HSET", "h"};
  cr_assert_eq(ts_kv_int(run_gen(s, hset, 2, 2 * 3000, fv_pair)), 3000);
  shmd_reply_t *r = NULL;
  const char *zadd[] = {"ZADD", "z"};
  cr_assert_eq(ts_kv_int(run_gen(s, zadd, 2, 2 * 3000, score_member)), 3000);
  const char *mset[] = {"MSET"};
  r = run_gen(s, mset, 1, 2 * 3000, key_val);
  cr_assert_str_eq(ts_show(r), "+OK");
  shmd_reply_free(r);
  char *big = malloc(300000);
  memset(big, 'x', 300000);
  const char *setv[] = {"SET", "str", big};
  size_t setl[] = {3, 3, 300000};
  cr_assert_eq(shmd_kv_command(s, 3, setv, setl, &r), 0);
  cr_assert_str_eq(ts_show(r), "+OK");
  shmd_reply_free(r);
  free(big);
  /* All fit under the default ceiling. */
  r = ts_kv(s, 0, "SMEMBERS s");
  cr_expect_eq(r->nelems, 3000);
  shmd_reply_free(r);
  r = ts_kv(s, 0, "SRANDMEMBER s -5000");
  cr_expect_eq(r->nelems, 5000);
  shmd_reply_free(r);
  /* 64 KiB: about 800 small elements at most (48 bytes each plus a string of at least 32). */
  cr_assert_eq(shmd_kv_set_max_reply(64 * 1024), SHMD_KV_MAX_REPLY_DEFAULT);
  cr_assert_eq(shmd_kv_max_reply(), 64 * 1024);
  const char *over[] = {
      "SMEMBERS s", "SRANDMEMBER s -1000", "SRANDMEMBER s 3000", "LRANGE l 0 -1", "HGETALL h",
      "HKEYS h", "HVALS h", "ZRANGE z 0 -1", "ZRANGE z 0 -1 WITHSCORES", "ZRANGEBYSCORE z -inf +inf",
      "KEYS *", "GET str", "GETRANGE str 0 -1", "SUNION s l2", "SINTER s s", "SDIFF s nokey",
      "SSCAN s 0 COUNT 100000", "HSCAN h 0 COUNT 100000", "ZSCAN z 0 COUNT 100000",
  };
  for (size_t i = 0; i < sizeof over / sizeof over[0]; i++)
    TS_EXPECT(s, over[i], ERR_BIG_REPLY);
  /* SPOP with a count that cannot be answered pops nothing; LPOP likewise. */
  TS_EXPECT(s, "SPOP s 3000", ERR_BIG_REPLY);
  TS_EXPECT(s, "SCARD s", ":3000");
  TS_EXPECT(s, "LPOP l 3000", ERR_BIG_REPLY);
  TS_EXPECT(s, "LLEN l", ":3000");
  /* Small replies still work. */
  TS_EXPECT(s, "GETRANGE str 0 3", "\"xxxx\"");
  r = ts_kv(s, 0, "SRANDMEMBER s -100");
  cr_expect_eq(r->nelems, 100);
  shmd_reply_free(r);
  /* a small sample of a big set copies no set: 100 distinct members of 3000 */
  r = ts_kv(s, 0, "SRANDMEMBER s 100");
  cr_expect_eq(r->nelems, 100);
  for (size_t i = 1; i < r->nelems; i++)
    cr_expect_str_neq(r->elems[i - 1].str, r->elems[i].str);
  shmd_reply_free(r);
  r = ts_kv(s, 0, "SPOP s 10");
  cr_expect_eq(r->nelems, 10);
  shmd_reply_free(r);
  TS_EXPECT(s, "SCARD s", ":2990");
  r = ts_kv(s, 0, "LRANGE l 0 99");
  cr_expect_eq(r->nelems, 100);
  shmd_reply_free(r);
  TS_EXPECT(s, "SCAN 0 COUNT 9223372036854775807", ERR_BIG_REPLY);
  r = ts_kv(s, 0, "SCAN 0 COUNT 10");
  cr_expect_eq(r->type, SHMD_REPLY_ARRAY);
  shmd_reply_free(r);
  /* 0 restores the default; tiny values are raised to the 4 KiB minimum. */
  cr_assert_eq(shmd_kv_set_max_reply(1), 64 * 1024);
  cr_assert_eq(shmd_kv_max_reply(), 4096);
  TS_EXPECT(s, "SET k v", "+OK");
  cr_assert_eq(shmd_kv_set_max_reply(0), 4096);
  cr_assert_eq(shmd_kv_max_reply(), SHMD_KV_MAX_REPLY_DEFAULT);
  r = ts_kv(s, 0, "HGETALL h");
  cr_expect_eq(r->nelems, 6000);
  shmd_reply_free(r);
  check_all(s);
  shmd_close(s);
}

/* No string longer than proto-max-bulk-len (512 MiB) is ever stored: an argument beyond it is
 * Redis's protocol error, APPEND / SETRANGE growth beyond it Redis's size error, and the typed
 * shmd_kv_set() answers SHMD_ETOOBIG. The 512 MiB + 1 argument is an untouched anonymous mapping
 * (no memory is used unless something reads it). Also integer edge cases of the other commands,
 * each as redis-server 7.0 answers it. */
Test(kv, string_limits_and_integer_edges) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  size_t huge = (size_t)512 * MB + 1;
  char *p = mmap(NULL, huge, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  cr_assert_neq(p, MAP_FAILED);
  const char *setv[] = {"SET", "k", p};
  size_t setl[] = {3, 1, huge};
  shmd_reply_t *r = NULL;
  cr_assert_eq(shmd_kv_command(s, 3, setv, setl, &r), 0);
  cr_expect_str_eq(ts_show(r), "-ERR Protocol error: invalid bulk length");
  shmd_reply_free(r);
  cr_expect_eq(shmd_kv_set(s, 0, "k", 1, p, huge, 0), SHMD_ETOOBIG);
  munmap(p, huge);
  TS_EXPECT(s, "EXISTS k", ":0");
  TS_EXPECT(s, "SET k abc", "+OK");
  TS_EXPECT(s, "SETRANGE k 536870912 x", "-ERR string exceeds maximum allowed size (proto-max-bulk-len)");
  TS_EXPECT(s, "SETRANGE k 9223372036854775807 x", "-ERR string exceeds maximum allowed size (proto-max-bulk-len)");
  TS_EXPECT(s, "SETRANGE k -9223372036854775808 x", "-ERR offset is out of range");
  TS_EXPECT(s, "GETRANGE k -9223372036854775808 9223372036854775807", "\"abc\"");
  TS_EXPECT(s, "GETRANGE k -9223372036854775808 -9223372036854775808", "\"a\"");
  TS_EXPECT(s, "GETRANGE nokey -9223372036854775808 9223372036854775807", "\"\"");
  TS_EXPECT(s, "INCRBY n 9223372036854775807", ":9223372036854775807");
  TS_EXPECT(s, "INCRBY n 1", "-ERR increment or decrement would overflow");
  TS_EXPECT(s, "DECRBY m -9223372036854775808", "-ERR decrement would overflow");
  TS_EXPECT(s, "DECRBY m 9223372036854775807", ":-9223372036854775807");
  TS_EXPECT(s, "DECRBY m 2", "-ERR increment or decrement would overflow");
  TS_EXPECT(s, "INCRBY m -9223372036854775808", "-ERR increment or decrement would overflow");
  TS_EXPECT(s, "HINCRBY h f 9223372036854775807", ":9223372036854775807");
  TS_EXPECT(s, "HINCRBY h f 1", "-ERR increment or decrement would overflow");
  TS_EXPECT(s, "RPUSH l a b c", ":3");
  TS_EXPECT(s, "LPOP l -9223372036854775808", "-ERR value is out of range, must be positive");
  TS_EXPECT(s, "LRANGE l -9223372036854775808 9223372036854775807", "[\"a\",\"b\",\"c\"]");
  TS_EXPECT(s, "LINDEX l -9223372036854775808", "(nil)");
  TS_EXPECT(s, "LSET l -9223372036854775808 x", "-ERR index out of range");
  TS_EXPECT(s, "LREM l -9223372036854775808 a", ":1");
  TS_EXPECT(s, "LTRIM l -9223372036854775808 9223372036854775807", "+OK");
  TS_EXPECT(s, "LRANGE l 0 -1", "[\"b\",\"c\"]");
  TS_EXPECT(s, "ZADD z 1 a", ":1");
  TS_EXPECT(s, "ZRANGE z -9223372036854775808 9223372036854775807", "[\"a\"]");
  TS_EXPECT(s, "ZRANGE z 0 -1 BYSCORE LIMIT -9223372036854775808 -9223372036854775808", "[]");
  TS_EXPECT(s, "ZRANGEBYSCORE z -inf +inf LIMIT 0 -9223372036854775808", "[\"a\"]");
  TS_EXPECT(s, "ZREMRANGEBYRANK z -9223372036854775808 9223372036854775807", ":1");
  TS_EXPECT(s, "SCAN 0 COUNT -9223372036854775808", "-ERR syntax error");
  TS_EXPECT(s, "SET g hello", "+OK");
  TS_EXPECT(s, "EXPIRE g -9223372036854775808", "-ERR invalid expire time in 'expire' command");
  TS_EXPECT(s, "EXPIRE g 9223372036854775807", "-ERR invalid expire time in 'expire' command");
  TS_EXPECT(s, "PEXPIRE g 9223372036854775807", "-ERR invalid expire time in 'pexpire' command");
  TS_EXPECT(s, "SET k v EX 9223372036854775807", "-ERR invalid expire time in 'set' command");
  TS_EXPECT(s, "SET k v PX 9223372036854775807", "-ERR invalid expire time in 'set' command");
  TS_EXPECT(s, "SET k v EXAT 9223372036854775807", "-ERR invalid expire time in 'set' command");
  TS_EXPECT(s, "PEXPIRE g -9223372036854775808", ":1");
  TS_EXPECT(s, "EXISTS g", ":0");
  check_all(s);
  shmd_close(s);
}

/* Every example of issue 15's first list, as redis-server 7.0.15 answers it (checked with
 * tests/kvdiff.py --script): long number strings re-read, score bounds strtod accepts, repeated
 * options, the order key -> type -> arguments, and Redis's error texts. */
Test(kv, issue15_examples_byte_exact) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  /* INCRBYFLOAT's own 310-character output is read back; a 130-digit score is a score */
  /* 1e308 in long double, printed "%.17Lf" (308 digits) as Redis prints it */
  static const char e308[] = "\""
  "9999999999999999999668587965584564566056009984741556720779704799492173486883806187210012692188853932"
  "0446747225054013223152134749593960583597420814430196418767959100019603190778663109604507106667939153"
  "3957889389145605435630612683649016186302170865892534448816237913008557573181424245104527282550463439"
  "28578048"
  "\"";
  TS_EXPECT(s, "INCRBYFLOAT k 1e308", e308);
  TS_EXPECT(s, "INCRBYFLOAT k 0", e308);
  TS_EXPECT(s, "ZADD z 1 a 2 b", ":2");
  TS_EXPECT(s, "ZADD z 1.0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "00000000000000000000000000000000000000000001 c", ":1");
  TS_EXPECT(s, "ZRANGEBYSCORE z ( +inf", "[\"a\",\"c\",\"b\"]");
  TS_EXPECT(s, "ZRANGEBYSCORE z \"\" +inf", "[\"a\",\"c\",\"b\"]");
  TS_EXPECT(s, "ZRANGEBYSCORE z \" 1\" +inf", "[\"a\",\"c\",\"b\"]");
  TS_EXPECT(s, "ZRANGEBYSCORE z 1e400 +inf", "[]");
  TS_EXPECT(s, "ZRANGEBYSCORE z -inf 1e400", "[\"a\",\"c\",\"b\"]");
  TS_EXPECT(s, "ZCOUNT z (1 1e400", ":1");
  TS_EXPECT(s, "ZRANGEBYSCORE z nan +inf", "-ERR min or max is not a float");
  /* repeated options */
  TS_EXPECT(s, "ZRANGE z 0 -1 REV REV", "-ERR syntax error");
  TS_EXPECT(s, "ZRANGE z 0 -1 BYSCORE BYSCORE", "-ERR syntax error");
  TS_EXPECT(s, "SET k v EX 100 EX 200", "+OK");
  TS_EXPECT(s, "TTL k", ":200");
  TS_EXPECT(s, "SET k v EX 0 FOO", "-ERR syntax error");
  TS_EXPECT(s, "SET k v EX 0", "-ERR invalid expire time in 'set' command");
  /* the key and its type before the arguments */
  TS_EXPECT(s, "LINDEX nokey abc", "(nil)");
  TS_EXPECT(s, "LSET z abc x", WT);
  TS_EXPECT(s, "INCRBYFLOAT z abc", WT);
  TS_EXPECT(s, "HSCAN nokey 0 COUNT 0", "[\"0\",[]]");
  TS_EXPECT(s, "EXPIRE k abc FOO", "-ERR Unsupported option FOO");
  /* texts */
  TS_EXPECT(s, "SADD s a b c", ":3");
  TS_EXPECT(s, "SPOP s abc", "-ERR value is out of range, must be positive");
  TS_EXPECT(s, "SRANDMEMBER s -9223372036854775808",
         "-ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807");
  TS_EXPECT(s, "INCRBYFLOAT d 1e-4940", "\"0\"");
  TS_EXPECT(s, "HSET h f v", ":1");
  TS_EXPECT(s, "HSCAN h \" 0\"", "-ERR invalid cursor");
  /* the unknown-command text: no CR / LF, the argument list stops once it reaches 128 bytes */
  char a1[201];
  memset(a1, 'a', 200);
  a1[200] = 0;
  const char *uv[] = {"FOO\r\nBAR", a1, "next"};
  size_t ul[] = {8, 200, 4};
  shmd_reply_t *r = NULL;
  cr_assert_eq(shmd_kv_command(s, 3, uv, ul, &r), 0);
  char want[400];
  snprintf(want, sizeof want, "-ERR unknown command 'FOO  BAR', with args beginning with: '%.128s' ", a1);
  cr_expect_str_eq(ts_show(r), want);
  shmd_reply_free(r);
  check_all(s);
  shmd_close(s);
}

/* The string and generic commands added for issue 15, with Redis 7.0's replies. */
Test(kv, issue15_string_and_generic_commands) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  TS_EXPECT(s, "SETEX k 100 v", "+OK");
  TS_EXPECT(s, "TTL k", ":100");
  TS_EXPECT(s, "SETEX k 0 v", "-ERR invalid expire time in 'setex' command");
  TS_EXPECT(s, "PSETEX k abc v", "-ERR value is not an integer or out of range");
  TS_EXPECT(s, "PSETEX p 100000 v", "+OK");
  TS_EXPECT(s, "PTTL p", ":100000");
  TS_EXPECT(s, "GETEX k PERSIST", "\"v\"");
  TS_EXPECT(s, "TTL k", ":-1");
  TS_EXPECT(s, "GETEX k EX 50", "\"v\"");
  TS_EXPECT(s, "TTL k", ":50");
  TS_EXPECT(s, "GETEX k EX 50 PERSIST", "-ERR syntax error");
  TS_EXPECT(s, "GETEX nokey EX abc", "(nil)");
  TS_EXPECT(s, "GETEX k EX abc", "-ERR value is not an integer or out of range");
  TS_EXPECT(s, "GETEX k PXAT 1", "\"v\"");
  TS_EXPECT(s, "EXISTS k", ":0");
  TS_EXPECT(s, "SET g old EX 100", "+OK");
  TS_EXPECT(s, "GETSET g new", "\"old\"");
  TS_EXPECT(s, "TTL g", ":-1");
  TS_EXPECT(s, "GETSET nokey2 x", "(nil)");
  TS_EXPECT(s, "MSETNX a 1 b 2", ":1");
  TS_EXPECT(s, "MSETNX b 3 c 4", ":0");
  TS_EXPECT(s, "EXISTS c", ":0");
  TS_EXPECT(s, "MSETNX a 1 b", "-ERR wrong number of arguments for 'msetnx' command");
  TS_EXPECT(s, "SET sub \"This is a string\"", "+OK");
  TS_EXPECT(s, "SUBSTR sub 0 3", "\"This\"");
  TS_EXPECT(s, "EXPIREAT a 4102444800", ":1");
  TS_EXPECT(s, "EXPIRETIME a", ":4102444800");
  TS_EXPECT(s, "PEXPIRETIME a", ":4102444800000");
  TS_EXPECT(s, "PEXPIREAT a 4102444800123 GT", ":1");
  TS_EXPECT(s, "PEXPIRETIME a", ":4102444800123");
  TS_EXPECT(s, "EXPIRETIME b", ":-1");
  TS_EXPECT(s, "EXPIRETIME nokey", ":-2");
  TS_EXPECT(s, "EXPIREAT b 1", ":1");
  TS_EXPECT(s, "EXISTS b", ":0");
  TS_EXPECT(s, "EXPIREAT a abc FOO", "-ERR Unsupported option FOO");
  TS_EXPECT(s, "RENAMENX a sub", ":0");
  TS_EXPECT(s, "RENAMENX a a", ":0");
  TS_EXPECT(s, "RENAMENX nokey x", "-ERR no such key");
  TS_EXPECT(s, "RENAMENX a a2", ":1");
  TS_EXPECT(s, "EXPIRETIME a2", ":4102444800");
  TS_EXPECT(s, "TOUCH a2 a2 nokey sub", ":3");
  TS_EXPECT(s, "MOVE a2 1", ":1");
  TS_EXPECT(s, "EXISTS a2", ":0");
  TS_EXPECT(s, "MOVE sub 0", "-ERR source and destination objects are the same");
  TS_EXPECT(s, "MOVE sub 16", "-ERR DB index is out of range");
  TS_EXPECT(s, "MOVE sub 4294967296", "-ERR value is out of range, value must between -2147483648 and 2147483647");
  TS_EXPECT(s, "MOVE nokey 1", ":0");
  shmd_reply_t *r = ts_kv(s, 1, "GET a2");
  cr_expect_str_eq(ts_show(r), "\"1\"");
  shmd_reply_free(r);
  r = ts_kv(s, 1, "EXPIRETIME a2");
  cr_expect_str_eq(ts_show(r), ":4102444800");
  shmd_reply_free(r);
  r = ts_kv(s, 1, "SET sub other");
  shmd_reply_free(r);
  TS_EXPECT(s, "MOVE sub 1", ":0"); /* exists there */
  r = ts_kv(s, 2, "RANDOMKEY");
  cr_expect_str_eq(ts_show(r), "(nil)");
  shmd_reply_free(r);
  for (int i = 0; i < 20; i++) {
    r = ts_kv(s, 0, "RANDOMKEY");
    cr_expect(r->type == SHMD_REPLY_BULK && (!strcmp(r->str, "sub") || !strcmp(r->str, "p") || !strcmp(r->str, "g") ||
                                             !strcmp(r->str, "nokey2")), "%s", ts_show(r));
    shmd_reply_free(r);
  }
  check_all(s);
  shmd_close(s);
}

Test(kv, issue15_hash_list_set_commands) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  TS_EXPECT(s, "HINCRBYFLOAT h f 10.5", "\"10.5\"");
  TS_EXPECT(s, "HINCRBYFLOAT h f 0.1", "\"10.6\"");
  TS_EXPECT(s, "HINCRBYFLOAT h f inf", "-ERR value is NaN or Infinity");
  TS_EXPECT(s, "HINCRBYFLOAT h f abc", "-ERR value is not a valid float");
  TS_EXPECT(s, "HSET h s abc", ":1");
  TS_EXPECT(s, "HINCRBYFLOAT h s 1", "-ERR hash value is not a float");
  TS_EXPECT(s, "HSTRLEN h s", ":3");
  TS_EXPECT(s, "HSTRLEN h nofield", ":0");
  TS_EXPECT(s, "HSTRLEN nokey f", ":0");
  TS_EXPECT(s, "HRANDFIELD nokey", "(nil)");
  TS_EXPECT(s, "HRANDFIELD nokey 5", "[]");
  TS_EXPECT_SET(s, "HRANDFIELD h 10", "[f,s]");
  TS_EXPECT(s, "HRANDFIELD h 0", "[]");
  TS_EXPECT(s, "HRANDFIELD h 1 FOO", "-ERR syntax error");
  TS_EXPECT(s, "HRANDFIELD h -9223372036854775807 WITHVALUES", "-ERR value is out of range");
  shmd_reply_t *r = ts_kv(s, 0, "HRANDFIELD h -5 WITHVALUES");
  cr_expect_eq(r->nelems, 10);
  shmd_reply_free(r);
  TS_EXPECT(s, "LPUSHX l a", ":0");
  TS_EXPECT(s, "EXISTS l", ":0");
  TS_EXPECT(s, "RPUSH l a b c a", ":4");
  TS_EXPECT(s, "LPUSHX l z", ":5");
  TS_EXPECT(s, "RPUSHX l a", ":6");
  TS_EXPECT(s, "LPUSHX h x", WT);
  TS_EXPECT(s, "LPOS l a", ":1");
  TS_EXPECT(s, "LPOS l a RANK 2", ":4");
  TS_EXPECT(s, "LPOS l a RANK -1", ":5");
  TS_EXPECT(s, "LPOS l a COUNT 0", "[:1,:4,:5]");
  TS_EXPECT(s, "LPOS l a COUNT 2 RANK -1", "[:5,:4]");
  TS_EXPECT(s, "LPOS l a COUNT 0 MAXLEN 2", "[:1]");
  TS_EXPECT(s, "LPOS l nope", "(nil)");
  TS_EXPECT(s, "LPOS l nope COUNT 1", "[]");
  TS_EXPECT(s, "LPOS l a RANK 0", "-ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or "
                               "use negative to start from the end of the list");
  TS_EXPECT(s, "LPOS l a COUNT -1", "-ERR COUNT can't be negative");
  TS_EXPECT(s, "LPOS nokey a COUNT 1", "[]");
  TS_EXPECT(s, "RPOPLPUSH l l2", "\"a\"");
  TS_EXPECT(s, "RPOPLPUSH l l", "\"a\"");
  TS_EXPECT(s, "LRANGE l 0 -1", "[\"a\",\"z\",\"a\",\"b\",\"c\"]");
  TS_EXPECT(s, "RPOPLPUSH nokey l", "(nil)");
  TS_EXPECT(s, "SADD s1 a b c", ":3");
  TS_EXPECT(s, "SADD s2 b c d", ":3");
  TS_EXPECT(s, "SMISMEMBER s1 a d a", "[:1,:0,:1]");
  TS_EXPECT(s, "SMISMEMBER nokey a", "[:0]");
  TS_EXPECT(s, "SINTERSTORE d s1 s2", ":2");
  TS_EXPECT_SET(s, "SMEMBERS d", "[b,c]");
  TS_EXPECT(s, "SUNIONSTORE d s1 s2", ":4");
  TS_EXPECT(s, "SDIFFSTORE d s1 s2", ":1");
  TS_EXPECT_SET(s, "SMEMBERS d", "[a]");
  TS_EXPECT(s, "SET str x", "+OK");
  TS_EXPECT(s, "SINTERSTORE str s1 nokey", ":0");
  TS_EXPECT(s, "EXISTS str", ":0");
  TS_EXPECT(s, "SINTERSTORE d s1 h", WT);
  TS_EXPECT(s, "SINTERCARD 2 s1 s2", ":2");
  TS_EXPECT(s, "SINTERCARD 2 s1 s2 LIMIT 1", ":1");
  TS_EXPECT(s, "SINTERCARD 0 s1", "-ERR numkeys should be greater than 0");
  TS_EXPECT(s, "SINTERCARD 3 s1 s2", "-ERR Number of keys can't be greater than number of args");
  TS_EXPECT(s, "SINTERCARD 1 s1 LIMIT -1", "-ERR LIMIT can't be negative");
  TS_EXPECT(s, "SMOVE s1 s2 a", ":1");
  TS_EXPECT(s, "SMOVE s1 s2 a", ":0");
  TS_EXPECT(s, "SMOVE nokey h a", ":0");
  TS_EXPECT(s, "SMOVE s1 h b", WT);
  TS_EXPECT(s, "SMOVE s1 s1 b", ":1");
  TS_EXPECT(s, "SMOVE s1 new b", ":1");
  TS_EXPECT(s, "SMOVE s1 new c", ":1");
  TS_EXPECT(s, "EXISTS s1", ":0");
  TS_EXPECT_SET(s, "SMEMBERS new", "[b,c]");
  check_all(s);
  shmd_close(s);
}

Test(kv, issue15_sorted_set_commands) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  TS_EXPECT(s, "ZADD lx 0 a 0 b 0 c 0 d 0 e", ":5");
  TS_EXPECT(s, "ZRANGEBYLEX lx - +", "[\"a\",\"b\",\"c\",\"d\",\"e\"]");
  TS_EXPECT(s, "ZRANGEBYLEX lx [b (d", "[\"b\",\"c\"]");
  TS_EXPECT(s, "ZRANGEBYLEX lx (b + LIMIT 1 2", "[\"d\",\"e\"]");
  TS_EXPECT(s, "ZREVRANGEBYLEX lx + [c", "[\"e\",\"d\",\"c\"]");
  TS_EXPECT(s, "ZRANGE lx [e [b BYLEX REV LIMIT 0 2", "[\"e\",\"d\"]");
  TS_EXPECT(s, "ZRANGEBYLEX lx a +", "-ERR min or max not valid string range item");
  TS_EXPECT(s, "ZRANGEBYLEX lx - + WITHSCORES", "-ERR syntax error, WITHSCORES not supported in combination with BYLEX");
  TS_EXPECT(s, "ZLEXCOUNT lx [b [d", ":3");
  TS_EXPECT(s, "ZLEXCOUNT lx + -", ":0");
  TS_EXPECT(s, "ZREMRANGEBYLEX lx [a (c", ":2");
  TS_EXPECT(s, "ZRANGE lx 0 -1", "[\"c\",\"d\",\"e\"]");
  /* mixed scores: Redis's listpack walk from the first member >= min while members stay <= max */
  TS_EXPECT(s, "ZADD mx 1 b 2 a 3 c", ":3");
  TS_EXPECT(s, "ZRANGEBYLEX mx [a [b", "[\"b\",\"a\"]");
  TS_EXPECT(s, "ZRANGEBYLEX mx [b [b", "[\"b\",\"a\"]"); /* redis-server 7.0.15 answers the same */
  TS_EXPECT(s, "ZADD z 1 a 2 b 3 c 4 d", ":4");
  TS_EXPECT(s, "ZREVRANGE z 0 1 WITHSCORES", "[\"d\",\"4\",\"c\",\"3\"]");
  TS_EXPECT(s, "ZREVRANGEBYSCORE z (4 2", "[\"c\",\"b\"]");
  TS_EXPECT(s, "ZREVRANGE z 0 1 LIMIT 0 1", "-ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX");
  TS_EXPECT(s, "ZRANGE z 0 1 LIMIT 0 1", "-ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX");
  TS_EXPECT(s, "ZRANGESTORE dst z 1 2", ":2");
  TS_EXPECT(s, "ZRANGE dst 0 -1 WITHSCORES", "[\"b\",\"2\",\"c\",\"3\"]");
  TS_EXPECT(s, "ZRANGESTORE dst z 5 1 BYSCORE", ":0");
  TS_EXPECT(s, "EXISTS dst", ":0");
  TS_EXPECT(s, "ZRANGESTORE dst z 0 -1 WITHSCORES", "-ERR syntax error");
  TS_EXPECT(s, "ZREMRANGEBYSCORE z (1 2", ":1");
  TS_EXPECT(s, "ZMSCORE z a b nope", "[\"1\",(nil),(nil)]");
  TS_EXPECT(s, "ZMSCORE nokey a", "[(nil)]");
  TS_EXPECT(s, "ZADD z1 1 a 2 b", ":2");
  TS_EXPECT(s, "ZADD z2 10 b 20 c", ":2");
  TS_EXPECT(s, "SADD st a c", ":2");
  TS_EXPECT(s, "ZUNION 2 z1 z2 WITHSCORES", "[\"a\",\"1\",\"b\",\"12\",\"c\",\"20\"]");
  TS_EXPECT(s, "ZUNION 2 z1 z2 WEIGHTS 2 1 AGGREGATE MAX WITHSCORES", "[\"a\",\"2\",\"b\",\"10\",\"c\",\"20\"]");
  TS_EXPECT(s, "ZINTER 2 z1 z2 WITHSCORES", "[\"b\",\"12\"]");
  TS_EXPECT(s, "ZINTER 2 z1 st WITHSCORES", "[\"a\",\"2\"]");
  TS_EXPECT(s, "ZDIFF 2 z1 z2", "[\"a\"]");
  TS_EXPECT(s, "ZDIFF 2 z1 z2 WEIGHTS 1 1", "-ERR syntax error");
  TS_EXPECT(s, "ZINTERCARD 2 z1 z2", ":1");
  TS_EXPECT(s, "ZINTERCARD 0 z1", "-ERR at least 1 input key is needed for 'zintercard' command");
  TS_EXPECT(s, "ZUNION 3 z1 z2", "-ERR syntax error");
  TS_EXPECT(s, "ZUNION 2 z1 z2 WEIGHTS 1 x", "-ERR weight value is not a float");
  TS_EXPECT(s, "ZUNIONSTORE out 2 z1 z2", ":3");
  TS_EXPECT(s, "ZRANGE out 0 -1 WITHSCORES", "[\"a\",\"1\",\"b\",\"12\",\"c\",\"20\"]");
  TS_EXPECT(s, "ZINTERSTORE out 2 z1 nokey", ":0");
  TS_EXPECT(s, "EXISTS out", ":0");
  TS_EXPECT(s, "ZDIFFSTORE out 1 z2", ":2");
  TS_EXPECT(s, "SET str x", "+OK");
  TS_EXPECT(s, "ZUNION 2 z1 str", WT);
  TS_EXPECT(s, "ZRANDMEMBER nokey", "(nil)");
  TS_EXPECT_SET(s, "ZRANDMEMBER z1 5", "[a,b]");
  shmd_reply_t *r = ts_kv(s, 0, "ZRANDMEMBER z1 -3 WITHSCORES");
  cr_expect_eq(r->nelems, 6);
  shmd_reply_free(r);
  check_all(s);
  shmd_close(s);
}

/* The multi-key commands that write more than one key, killed at random: each command is all or
 * nothing. Invariants: SMOVE keeps the members of s1 + s2; RPOPLPUSH rotates a list of 50; MOVE
 * and RENAMENX keep exactly one copy of a key (across databases / names); ZUNIONSTORE /
 * ZINTERSTORE / SINTERSTORE / SUNIONSTORE / ZRANGESTORE leave their destination with one complete
 * result. */
static const char *const mk_cmds[] = {"SMOVE s1 s2 m", "SMOVE s2 s1 m", "RPOPLPUSH l l", "MOVE mk 1", "RENAMENX rn rn2",
                                      "RENAMENX rn2 rn", "ZUNIONSTORE zd 2 z1 z2", "ZINTERSTORE zd 2 z1 z2",
                                      "SINTERSTORE sd s1 s2", "SUNIONSTORE sd s1 s2", "ZRANGESTORE zr z1 0 99"};

/* Runs the commands of mk_cmds in a random order (seeded by the spec) until it is killed. */
static int multikey_store_child(ts_crash_child_t *c) {
  ts_rng_t cg = {c->seed};
  for (;;) {
    unsigned k = (unsigned)ts_below(&cg, sizeof mk_cmds / sizeof mk_cmds[0]);
    char line[128];
    if (k < 2)
      snprintf(line, sizeof line, "%s%d", mk_cmds[k], (int)ts_below(&cg, 400));
    else
      snprintf(line, sizeof line, "%s", mk_cmds[k]);
    if (ts_kv_line(c->s, 0, line, NULL) != 0)
      return 3;
    if (k == 3 && ts_kv_line(c->s, 1, "MOVE mk 0", NULL) != 0) /* and back */
      return 3;
  }
}

Test(kv, crash_multikey_store_commands_are_all_or_nothing) {
  shmd_store_t *s = ts_open("mk", 32 * MB, 32 * MB);
  for (int i = 0; i < 400; i++) {
    char line[128];
    snprintf(line, sizeof line, "SADD s1 m%d", i);
    shmd_reply_free(ts_kv(s, 0, line));
    snprintf(line, sizeof line, "ZADD z1 %d a%d %d b%d", i, i, i, i);
    shmd_reply_free(ts_kv(s, 0, line));
    snprintf(line, sizeof line, "ZADD z2 %d b%d %d c%d", i, i, i, i);
    shmd_reply_free(ts_kv(s, 0, line));
    if (i < 50) {
      snprintf(line, sizeof line, "RPUSH l e%d", i);
      shmd_reply_free(ts_kv(s, 0, line));
    }
  }
  TS_EXPECT(s, "SET mk v", "+OK");
  TS_EXPECT(s, "SET rn v", "+OK");
  shmd_close(s);
  int completed = 0;
  ts_crash_t t;
  ts_crash_begin(&t, "kv.crash_multikey_store");
  for (int round = 0; round < 12; round++) {
    ts_crash_run(&t,
                 &(ts_crash_spec_t){.what = "the multi-key writer", .fn = multikey_store_child,
                                    .seed = (uint64_t)round * 7919 + 1, .store = "mk", .opts = ts_opts(32 * MB, 32 * MB),
                                    .kill_lo_us = 20000, .kill_hi_us = 20000 + 59999, .end = TS_END_KILLED},
                 NULL);
    s = ts_crash_open("mk", 32 * MB, 32 * MB);
    check_all(s);
    shmd_reply_t *a = ts_kv(s, 0, "SCARD s1"), *b = ts_kv(s, 0, "SCARD s2");
    cr_assert_eq(a->integer + b->integer, 400, "round %d: SMOVE lost or doubled a member", round);
    shmd_reply_free(a);
    shmd_reply_free(b);
    TS_EXPECT(s, "LLEN l", ":50");
    a = ts_kv(s, 0, "EXISTS mk");
    b = ts_kv(s, 1, "EXISTS mk");
    cr_assert_eq(a->integer + b->integer, 1, "round %d: MOVE left %lld + %lld copies", round, (long long)a->integer,
                 (long long)b->integer);
    shmd_reply_free(a);
    shmd_reply_free(b);
    TS_EXPECT(s, "EXISTS rn rn2", ":1");
    a = ts_kv(s, 0, "ZCARD zd");
    completed += a->integer > 0;
    cr_assert(a->integer == 0 || a->integer == 400 || a->integer == 1200, "round %d: ZCARD zd %lld", round,
              (long long)a->integer);
    shmd_reply_free(a);
    a = ts_kv(s, 0, "ZCARD zr");
    cr_assert(a->integer == 0 || a->integer == 100, "round %d: ZCARD zr %lld", round, (long long)a->integer);
    shmd_reply_free(a);
    a = ts_kv(s, 0, "SCARD sd");
    b = ts_kv(s, 0, "SCARD s2");
    /* SINTERSTORE's result is s1 & s2 = empty (disjoint), SUNIONSTORE's has 400 members */
    cr_assert(a->integer == 0 || a->integer == 400, "round %d: SCARD sd %lld", round, (long long)a->integer);
    shmd_reply_free(a);
    shmd_reply_free(b);
    shmd_close(s);
  }
  ts_crash_end(&t);
  cr_assert_gt(completed, 0, "no ZUNIONSTORE / ZINTERSTORE ever completed before a kill");
}

/* SETBIT GETBIT BITCOUNT BITPOS BITOP, with redis-server 7.0's answers. */
Test(kv, issue15_bitmap_commands) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  TS_EXPECT(s, "SETBIT b 7 1", ":0");
  TS_EXPECT(s, "SETBIT b 7 1", ":1");
  TS_EXPECT(s, "GET b", "\"\x01\"");
  TS_EXPECT(s, "SETBIT b 1 1", ":0");
  TS_EXPECT(s, "GETBIT b 1", ":1");
  TS_EXPECT(s, "GETBIT b 100", ":0");
  TS_EXPECT(s, "GETBIT nokey 0", ":0");
  TS_EXPECT(s, "SETBIT b -1 1", "-ERR bit offset is not an integer or out of range");
  TS_EXPECT(s, "SETBIT b 4294967296 1", "-ERR bit offset is not an integer or out of range");
  TS_EXPECT(s, "SETBIT b 0 2", "-ERR bit is not an integer or out of range");
  TS_EXPECT(s, "SET f foobar", "+OK");
  TS_EXPECT(s, "BITCOUNT f", ":26");
  TS_EXPECT(s, "BITCOUNT f 0 0", ":4");
  TS_EXPECT(s, "BITCOUNT f 1 1", ":6");
  TS_EXPECT(s, "BITCOUNT f 5 30 BIT", ":17");
  TS_EXPECT(s, "BITCOUNT f -1 -100 FOO", ":0");
  TS_EXPECT(s, "BITCOUNT f 0 1 FOO", "-ERR syntax error");
  TS_EXPECT(s, "BITCOUNT f 0", "-ERR syntax error");
  TS_EXPECT(s, "BITCOUNT nokey 0", ":0");
  TS_EXPECT(s, "SET p \"\xff\xf0\"", "+OK");
  TS_EXPECT(s, "BITPOS p 0", ":12");
  TS_EXPECT(s, "BITPOS p 1 1", ":8");
  TS_EXPECT(s, "BITPOS p 0 0 0", ":-1");
  TS_EXPECT(s, "BITPOS p 1 2 -1 BIT", ":2");
  TS_EXPECT(s, "BITPOS p 2", "-ERR The bit argument must be 1 or 0.");
  TS_EXPECT(s, "BITPOS nokey 0", ":0");
  TS_EXPECT(s, "BITPOS nokey 1", ":-1");
  TS_EXPECT(s, "SET a abc", "+OK");
  TS_EXPECT(s, "SET c \"   \"", "+OK");
  TS_EXPECT(s, "BITOP OR d a c", ":3");
  TS_EXPECT(s, "GET d", "\"abc\"");
  TS_EXPECT(s, "BITOP XOR d a a", ":3");
  TS_EXPECT(s, "BITCOUNT d", ":0");
  TS_EXPECT(s, "BITOP NOT d a c", "-ERR BITOP NOT must be called with a single source key.");
  TS_EXPECT(s, "BITOP AND d nokey nokey2", ":0");
  TS_EXPECT(s, "EXISTS d", ":0");
  TS_EXPECT(s, "RPUSH l x", ":1");
  TS_EXPECT(s, "BITOP AND d a l", WT);
  TS_EXPECT(s, "SETBIT l 0 1", WT);
  check_all(s);
  shmd_close(s);
}

/* SORT / SORT_RO: numeric, ALPHA, DESC, LIMIT, STORE, BY nosort, GET # and GET constant as Redis
 * 7.0 answers them; BY / GET key patterns refused on purpose. */
Test(kv, issue15_sort) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  TS_EXPECT(s, "RPUSH l 3 1 2 10", ":4");
  TS_EXPECT(s, "SORT l", "[\"1\",\"2\",\"3\",\"10\"]");
  TS_EXPECT(s, "SORT l DESC LIMIT 1 2", "[\"3\",\"2\"]");
  TS_EXPECT(s, "SORT l ALPHA", "[\"1\",\"10\",\"2\",\"3\"]");
  TS_EXPECT(s, "SORT l BY nosort DESC", "[\"10\",\"2\",\"1\",\"3\"]");
  TS_EXPECT(s, "SORT l GET # GET c LIMIT 0 1", "[\"1\",(nil)]");
  TS_EXPECT(s, "SORT l STORE dst", ":4");
  TS_EXPECT(s, "LRANGE dst 0 -1", "[\"1\",\"2\",\"3\",\"10\"]");
  TS_EXPECT(s, "SORT_RO l STORE dst", "-ERR syntax error");
  TS_EXPECT(s, "SORT nokey STORE dst", ":0");
  TS_EXPECT(s, "EXISTS dst", ":0");
  TS_EXPECT(s, "RPUSH bad 1 x", ":2");
  TS_EXPECT(s, "SORT bad", "-ERR One or more scores can't be converted into double");
  TS_EXPECT(s, "SORT bad ALPHA", "[\"1\",\"x\"]");
  TS_EXPECT(s, "SADD st b a c", ":3");
  TS_EXPECT(s, "SORT st ALPHA DESC", "[\"c\",\"b\",\"a\"]");
  TS_EXPECT(s, "SORT st BY nosort STORE d2", ":3");
  TS_EXPECT(s, "LRANGE d2 0 -1", "[\"a\",\"b\",\"c\"]");
  TS_EXPECT(s, "ZADD z 1 b 2 a", ":2");
  TS_EXPECT(s, "SORT z BY nosort", "[\"b\",\"a\"]");
  TS_EXPECT(s, "SET str x", "+OK");
  TS_EXPECT(s, "SORT str", WT);
  TS_EXPECT(s, "SORT l BY w_*", "-ERR SORT BY with a key pattern is not supported by shmdict (no key lookups by pattern)");
  TS_EXPECT(s, "SORT l GET h_*->f", "-ERR SORT GET with a key pattern is not supported by shmdict (no key lookups by pattern)");
  check_all(s);
  shmd_close(s);
}

/* LCS, with the examples of Redis's documentation (redis-server 7.0 gives the same). */
Test(kv, issue15_lcs) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  TS_EXPECT(s, "MSET key1 ohmytext key2 mynewtext", "+OK");
  TS_EXPECT(s, "LCS key1 key2", "\"mytext\"");
  TS_EXPECT(s, "LCS key1 key2 LEN", ":6");
  TS_EXPECT(s, "LCS key1 key2 IDX", "[\"matches\",[[[:4,:7],[:5,:8]],[[:2,:3],[:0,:1]]],\"len\",:6]");
  TS_EXPECT(s, "LCS key1 key2 IDX MINMATCHLEN 4 WITHMATCHLEN", "[\"matches\",[[[:4,:7],[:5,:8],:4]],\"len\",:6]");
  TS_EXPECT(s, "LCS key1 key2 IDX LEN", "-ERR If you want both the length and indexes, please just use IDX.");
  TS_EXPECT(s, "LCS key1 nokey", "\"\"");
  TS_EXPECT(s, "RPUSH l x", ":1");
  TS_EXPECT(s, "LCS key1 l", "-ERR The specified keys must contain string values");
  check_all(s);
  shmd_close(s);
}

/* BITFIELD / BITFIELD_RO with Redis's documented examples and overflow modes. */
Test(kv, issue15_bitfield) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  TS_EXPECT(s, "BITFIELD mykey INCRBY i5 100 1 GET u4 0", "[:1,:0]");
  TS_EXPECT(s, "BITFIELD mykey INCRBY u2 100 1 OVERFLOW SAT INCRBY u2 102 1", "[:1,:1]");
  TS_EXPECT(s, "BITFIELD mykey INCRBY u2 100 1 OVERFLOW SAT INCRBY u2 102 1", "[:2,:2]");
  TS_EXPECT(s, "BITFIELD mykey INCRBY u2 100 1 OVERFLOW SAT INCRBY u2 102 1", "[:3,:3]");
  TS_EXPECT(s, "BITFIELD mykey INCRBY u2 100 1 OVERFLOW SAT INCRBY u2 102 1", "[:0,:3]");
  TS_EXPECT(s, "BITFIELD f OVERFLOW FAIL INCRBY u2 102 5", "[(nil)]");
  TS_EXPECT(s, "STRLEN f", ":13"); /* created and grown even though the write failed, as in Redis */
  TS_EXPECT(s, "BITFIELD h SET i8 #1 -100 GET i8 8 GET u8 #1", "[:0,:-100,:156]");
  TS_EXPECT(s, "BITFIELD_RO h GET i8 #1", "[:-100]");
  TS_EXPECT(s, "BITFIELD_RO h SET i8 0 1", "-ERR BITFIELD_RO only supports the GET subcommand");
  TS_EXPECT(s, "BITFIELD h GET u64 0", "-ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.");
  TS_EXPECT(s, "BITFIELD h OVERFLOW FOO", "-ERR Invalid OVERFLOW type specified");
  TS_EXPECT(s, "BITFIELD h GET u8 -1", "-ERR bit offset is not an integer or out of range");
  TS_EXPECT(s, "BITFIELD h GET u8 0 FOO", "-ERR syntax error");
  TS_EXPECT(s, "BITFIELD nokey GET u8 0", "[:0]");
  TS_EXPECT(s, "EXISTS nokey", ":0");
  check_all(s);
  shmd_close(s);
}
