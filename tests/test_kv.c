/* SPDX-License-Identifier: MIT */
/*
 * Tests of the keyspace (kv/): every command through shmd_kv_command with its options, edge cases
 * and Redis's error wording; the typed functions; big deletes through the garbage list; a property
 * test of random commands against an in-process model; two writer processes; and a crash test
 * (a child SIGKILLed while running random commands, reporting each completed command through a
 * pipe; afterwards shmd_kv_check and shmd_alloc_check pass and every reported effect is visible).
 */
#include <ctype.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>

#include "shmdict/kv.h"
#include "support.h"

#define MB (1024ull * 1024)

/* Splits a command line on spaces; "..." quotes (no escapes) allow spaces and empty strings. */
static int split(const char *line, char **argv, size_t *lens, int max) {
  int n = 0;
  const char *p = line;
  while (*p && n < max) {
    while (*p == ' ')
      p++;
    if (!*p)
      break;
    const char *st;
    size_t len;
    if (*p == '"') {
      st = ++p;
      while (*p && *p != '"')
        p++;
      len = (size_t)(p - st);
      if (*p)
        p++;
    } else {
      st = p;
      while (*p && *p != ' ')
        p++;
      len = (size_t)(p - st);
    }
    argv[n] = strndup(st, len);
    lens[n] = len;
    n++;
  }
  return n;
}

static shmd_reply_t *run_db(shmd_store_t *s, unsigned db, const char *line) {
  char *argv[256];
  size_t lens[256];
  int n = split(line, argv, lens, 256);
  shmd_reply_t *r = NULL;
  int rc = shmd_kv_command_db(s, db, n, (const char *const *)argv, lens, &r);
  for (int i = 0; i < n; i++)
    free(argv[i]);
  cr_assert_eq(rc, 0, "%s: %s", line, shmd_strerror(rc));
  return r;
}
static shmd_reply_t *run(shmd_store_t *s, const char *line) { return run_db(s, 0, line); }

/* Renders a reply compactly: status +OK, error -ERR..., integer :n, bulk "x", nil (nil), arrays
 * [a,b]. */
static void render(const shmd_reply_t *r, char *buf, size_t cap, size_t *pos) {
  int n = 0;
  switch (r->type) {
  case SHMD_REPLY_STATUS: n = snprintf(buf + *pos, cap - *pos, "+%s", r->str); break;
  case SHMD_REPLY_ERROR: n = snprintf(buf + *pos, cap - *pos, "-%s", r->str); break;
  case SHMD_REPLY_INTEGER: n = snprintf(buf + *pos, cap - *pos, ":%lld", (long long)r->integer); break;
  case SHMD_REPLY_BULK: n = snprintf(buf + *pos, cap - *pos, "\"%.*s\"", (int)r->len, r->str); break;
  case SHMD_REPLY_NIL: n = snprintf(buf + *pos, cap - *pos, "(nil)"); break;
  case SHMD_REPLY_ARRAY:
    n = snprintf(buf + *pos, cap - *pos, "[");
    *pos += (size_t)n;
    for (size_t i = 0; i < r->nelems; i++) {
      if (i) {
        n = snprintf(buf + *pos, cap - *pos, ",");
        *pos += (size_t)n;
      }
      render(&r->elems[i], buf, cap, pos);
    }
    n = snprintf(buf + *pos, cap - *pos, "]");
    break;
  }
  *pos += (size_t)n;
  if (*pos >= cap)
    *pos = cap - 1;
}

static char *show(const shmd_reply_t *r) {
  static char buf[65536];
  size_t pos = 0;
  buf[0] = 0;
  render(r, buf, sizeof buf, &pos);
  return buf;
}

/* Runs `line` and expects the rendered reply `want`. */
#define EXPECT(s, line, want)                                                                      \
  do {                                                                                             \
    shmd_reply_t *r_ = run((s), (line));                                                           \
    cr_expect_str_eq(show(r_), (want), "%s -> %s", (line), show(r_));                                              \
    shmd_reply_free(r_);                                                                           \
  } while (0)

/* Sorted rendering of an array of bulks (for sets and hash orders). */
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static char *show_sorted(const shmd_reply_t *r) {
  static char buf[65536];
  cr_assert_eq(r->type, SHMD_REPLY_ARRAY);
  char **v = calloc(r->nelems + 1, sizeof *v);
  for (size_t i = 0; i < r->nelems; i++)
    v[i] = r->elems[i].str;
  qsort(v, r->nelems, sizeof *v, cmp_str);
  size_t pos = 0;
  pos += (size_t)snprintf(buf, sizeof buf, "[");
  for (size_t i = 0; i < r->nelems; i++)
    pos += (size_t)snprintf(buf + pos, sizeof buf - pos, "%s%s", i ? "," : "", v[i]);
  snprintf(buf + pos, sizeof buf - pos, "]");
  free(v);
  return buf;
}
#define EXPECT_SET(s, line, want)                                                                  \
  do {                                                                                             \
    shmd_reply_t *r_ = run((s), (line));                                                           \
    cr_expect_str_eq(show_sorted(r_), (want), "%s -> %s", (line), show_sorted(r_));                                       \
    shmd_reply_free(r_);                                                                           \
  } while (0)

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
  EXPECT(s, "FOO a b", "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' ");
  EXPECT(s, "nosuch", "-ERR unknown command 'nosuch', with args beginning with: ");
  EXPECT(s, "GET", "-ERR wrong number of arguments for 'get' command");
  EXPECT(s, "get a b", "-ERR wrong number of arguments for 'get' command");
  EXPECT(s, "set a", "-ERR wrong number of arguments for 'set' command");
  EXPECT(s, "MSET a 1 b", "-ERR wrong number of arguments for 'mset' command");
  EXPECT(s, "HSET h f", "-ERR wrong number of arguments for 'hset' command");
  EXPECT(s, "HSET h f v g", "-ERR wrong number of arguments for 'hset' command");
  EXPECT(s, "SET a 1 FOO", "-ERR syntax error");
  EXPECT(s, "SET a 1 NX XX", "-ERR syntax error");
  EXPECT(s, "INCRBY a x", "-ERR value is not an integer or out of range");
  EXPECT(s, "lpush l x", ":1");
  EXPECT(s, "get l", WT);
  EXPECT(s, "incr l", WT);
  EXPECT(s, "hget l f", WT);
  EXPECT(s, "sadd l f", WT);
  EXPECT(s, "zadd l 1 f", WT);
  EXPECT(s, "set s v", "+OK");
  EXPECT(s, "lpush s x", WT);
  EXPECT(s, "llen s", WT);
  EXPECT(s, "zscore s x", WT);
  EXPECT(s, "smembers s", WT);
  EXPECT(s, "sinter s l", WT);
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
  EXPECT(s, "SET a 1", "+OK");
  EXPECT(s, "SET b 2", "+OK");
  EXPECT(s, "RPUSH c x", ":1");
  EXPECT(s, "EXISTS a b c d a", ":4");
  EXPECT(s, "DEL a d", ":1");
  EXPECT(s, "TYPE a", "+none");
  EXPECT(s, "TYPE b", "+string");
  EXPECT(s, "TYPE c", "+list");
  EXPECT(s, "HSET h f v", ":1");
  EXPECT(s, "SADD st m", ":1");
  EXPECT(s, "ZADD z 1 m", ":1");
  EXPECT(s, "TYPE h", "+hash");
  EXPECT(s, "TYPE st", "+set");
  EXPECT(s, "TYPE z", "+zset");
  EXPECT(s, "DBSIZE", ":5");
  EXPECT_SET(s, "KEYS *", "[b,c,h,st,z]");
  EXPECT_SET(s, "KEYS ?", "[b,c,h,z]");
  EXPECT_SET(s, "KEYS [a-c]", "[b,c]");
  EXPECT_SET(s, "KEYS s*", "[st]");
  EXPECT_SET(s, "KEYS [^bc]*", "[h,st,z]");
  EXPECT(s, "RENAME nosuch x", "-ERR no such key");
  EXPECT(s, "RENAME c c2", "+OK");
  EXPECT(s, "LRANGE c2 0 -1", "[\"x\"]");
  EXPECT(s, "EXISTS c", ":0");
  EXPECT(s, "RENAME b h", "+OK"); /* overwrites the hash */
  EXPECT(s, "GET h", "\"2\"");
  EXPECT(s, "RENAME h h", "+OK");
  EXPECT(s, "DBSIZE", ":4");
  /* SCAN: every key exactly once in a full iteration. */
  for (int i = 0; i < 300; i++) {
    char line[64];
    snprintf(line, sizeof line, "SET k%d %d", i, i);
    shmd_reply_free(run(s, line));
  }
  int seen[300] = {0};
  unsigned long long cur = 0;
  int steps = 0;
  do {
    char line[64];
    snprintf(line, sizeof line, "SCAN %llu MATCH k* COUNT 7", cur);
    shmd_reply_t *r = run(s, line);
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
  EXPECT(s, "SCAN 0 TYPE zset COUNT 1000", "[\"0\",[\"z\"]]");
  EXPECT(s, "SCAN x", "-ERR invalid cursor");
  EXPECT(s, "SCAN 0 COUNT 0", "-ERR syntax error");
  EXPECT(s, "SCAN 0 FOO 1", "-ERR syntax error");
  EXPECT(s, "DBSIZE", ":304");
  EXPECT(s, "FLUSHDB", "+OK");
  EXPECT(s, "DBSIZE", ":0");
  EXPECT(s, "KEYS *", "[]");
  EXPECT(s, "GET k1", "(nil)");
  check_all(s);
  EXPECT(s, "SET k1 v", "+OK");
  EXPECT(s, "GET k1", "\"v\"");
  /* databases are separate */
  shmd_reply_t *r = run_db(s, 3, "GET k1");
  cr_expect_eq(r->type, SHMD_REPLY_NIL);
  shmd_reply_free(r);
  shmd_reply_free(run_db(s, 3, "SET k1 three"));
  r = run_db(s, 3, "GET k1");
  cr_expect_str_eq(r->str, "three");
  shmd_reply_free(r);
  EXPECT(s, "GET k1", "\"v\"");
  check_all(s);
  shmd_close(s);
}

Test(kv, expiry) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  EXPECT(s, "SET a 1", "+OK");
  EXPECT(s, "TTL a", ":-1");
  EXPECT(s, "PTTL a", ":-1");
  EXPECT(s, "TTL nokey", ":-2");
  EXPECT(s, "PTTL nokey", ":-2");
  EXPECT(s, "EXPIRE nokey 10", ":0");
  EXPECT(s, "EXPIRE a 100", ":1");
  EXPECT(s, "TTL a", ":100");
  EXPECT(s, "EXPIRE a 50 GT", ":0");
  EXPECT(s, "EXPIRE a 200 GT", ":1");
  EXPECT(s, "EXPIRE a 300 LT", ":0");
  EXPECT(s, "EXPIRE a 300 NX", ":0");
  EXPECT(s, "EXPIRE a 300 XX", ":1");
  EXPECT(s, "EXPIRE a 300 NX XX", "-ERR NX and XX, GT or LT options at the same time are not compatible");
  EXPECT(s, "EXPIRE a 300 GT LT", "-ERR GT and LT options at the same time are not compatible");
  EXPECT(s, "EXPIRE a x", "-ERR value is not an integer or out of range");
  EXPECT(s, "EXPIRE a 1 FOO", "-ERR Unsupported option FOO");
  EXPECT(s, "PERSIST a", ":1");
  EXPECT(s, "PERSIST a", ":0");
  EXPECT(s, "PERSIST nokey", ":0");
  EXPECT(s, "TTL a", ":-1");
  EXPECT(s, "PEXPIRE a 100000", ":1");
  shmd_reply_t *r = run(s, "PTTL a");
  cr_expect(r->integer > 99000 && r->integer <= 100000);
  shmd_reply_free(r);
  EXPECT(s, "SET a 1", "+OK"); /* SET clears the TTL */
  EXPECT(s, "TTL a", ":-1");
  EXPECT(s, "SET a 1 EX 10", "+OK");
  EXPECT(s, "TTL a", ":10");
  EXPECT(s, "SET a 2 KEEPTTL", "+OK");
  EXPECT(s, "TTL a", ":10");
  EXPECT(s, "INCR a", ":3"); /* INCR keeps the TTL */
  EXPECT(s, "TTL a", ":10");
  EXPECT(s, "SET a 1 EX 0", "-ERR invalid expire time in 'set' command");
  EXPECT(s, "SET a 1 PX -5", "-ERR invalid expire time in 'set' command");
  EXPECT(s, "SET a 1 EX x", "-ERR value is not an integer or out of range");
  EXPECT(s, "SET a 1 EX 10 PX 10", "-ERR syntax error");
  EXPECT(s, "EXPIRE a 0", ":1"); /* a past time deletes */
  EXPECT(s, "EXISTS a", ":0");
  EXPECT(s, "RPUSH l a b", ":2");
  EXPECT(s, "EXPIRE l -1", ":1");
  EXPECT(s, "EXISTS l", ":0");
  /* lazy expiry */
  EXPECT(s, "SET p v PX 30", "+OK");
  EXPECT(s, "HSET h f v", ":1");
  EXPECT(s, "PEXPIRE h 30", ":1");
  usleep(60000);
  EXPECT(s, "GET p", "(nil)");
  EXPECT(s, "EXISTS h", ":0");
  EXPECT(s, "HSET h f v", ":1");
  EXPECT(s, "TTL h", ":-1");
  /* active expiry */
  for (int i = 0; i < 100; i++) {
    char line[64];
    snprintf(line, sizeof line, "SET e%d v PX 20", i);
    shmd_reply_free(run(s, line));
  }
  EXPECT(s, "SADD big a b c", ":3");
  EXPECT(s, "PEXPIRE big 20", ":1");
  usleep(40000);
  EXPECT(s, "DBSIZE", ":102");
  size_t total = 0;
  for (int i = 0; i < 200; i++) {
    size_t n = 0;
    cr_assert_eq(shmd_kv_expire_step(s, 0, 10, &n), 0);
    total += n;
  }
  cr_expect_eq(total, 101);
  EXPECT(s, "DBSIZE", ":1");
  check_all(s);
  shmd_close(s);
}

Test(kv, strings) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  EXPECT(s, "GET a", "(nil)");
  EXPECT(s, "SET a hello", "+OK");
  EXPECT(s, "GET a", "\"hello\"");
  EXPECT(s, "SET a x NX", "(nil)");
  EXPECT(s, "SET b x XX", "(nil)");
  EXPECT(s, "SET a world XX", "+OK");
  EXPECT(s, "SET a again GET", "\"world\"");
  EXPECT(s, "SET n1 v NX GET", "(nil)");
  EXPECT(s, "GET n1", "\"v\"");
  EXPECT(s, "SET n1 w NX GET", "\"v\"");
  EXPECT(s, "GET n1", "\"v\"");
  EXPECT(s, "RPUSH l x", ":1");
  EXPECT(s, "SET l v GET", WT);
  EXPECT(s, "SET l v", "+OK"); /* overwrites any type */
  EXPECT(s, "GET l", "\"v\"");
  EXPECT(s, "SET e \"\"", "+OK");
  EXPECT(s, "GET e", "\"\"");
  EXPECT(s, "STRLEN e", ":0");
  EXPECT(s, "GETDEL a", "\"again\"");
  EXPECT(s, "GETDEL a", "(nil)");
  EXPECT(s, "MSET a 1 b 2 c 3", "+OK");
  EXPECT(s, "RPUSH lst x", ":1");
  EXPECT(s, "MGET a b nokey c lst", "[\"1\",\"2\",(nil),\"3\",(nil)]");
  EXPECT(s, "SETNX a 9", ":0");
  EXPECT(s, "SETNX z 9", ":1");
  EXPECT(s, "INCR cnt", ":1");
  EXPECT(s, "INCRBY cnt 41", ":42");
  EXPECT(s, "DECR cnt", ":41");
  EXPECT(s, "DECRBY cnt 50", ":-9");
  EXPECT(s, "INCRBY cnt -1", ":-10");
  EXPECT(s, "SET big 9223372036854775807", "+OK");
  EXPECT(s, "INCR big", "-ERR increment or decrement would overflow");
  EXPECT(s, "SET big -9223372036854775808", "+OK");
  EXPECT(s, "DECR big", "-ERR increment or decrement would overflow");
  EXPECT(s, "SET s abc", "+OK");
  EXPECT(s, "INCR s", "-ERR value is not an integer or out of range");
  EXPECT(s, "SET s \" 1\"", "+OK");
  EXPECT(s, "INCR s", "-ERR value is not an integer or out of range");
  EXPECT(s, "SET s 01", "+OK");
  EXPECT(s, "INCR s", "-ERR value is not an integer or out of range");
  EXPECT(s, "INCRBY s 99999999999999999999", "-ERR value is not an integer or out of range");
  EXPECT(s, "INCRBYFLOAT f 10.5", "\"10.5\"");
  EXPECT(s, "INCRBYFLOAT f 0.1", "\"10.6\"");
  EXPECT(s, "INCRBYFLOAT f -5", "\"5.6\"");
  EXPECT(s, "SET f 5.0e3", "+OK");
  EXPECT(s, "INCRBYFLOAT f 2.0e2", "\"5200\"");
  EXPECT(s, "INCRBYFLOAT f x", "-ERR value is not a valid float");
  EXPECT(s, "INCRBYFLOAT s 1", "\"2\"");
  EXPECT(s, "SET s abc", "+OK");
  EXPECT(s, "INCRBYFLOAT s 1", "-ERR value is not a valid float");
  EXPECT(s, "INCRBYFLOAT f inf", "-ERR increment would produce NaN or Infinity");
  EXPECT(s, "APPEND ap Hello", ":5");
  EXPECT(s, "APPEND ap \" World\"", ":11");
  EXPECT(s, "GET ap", "\"Hello World\"");
  EXPECT(s, "STRLEN ap", ":11");
  EXPECT(s, "STRLEN nokey", ":0");
  EXPECT(s, "SET gr \"This is a string\"", "+OK");
  EXPECT(s, "GETRANGE gr 0 3", "\"This\"");
  EXPECT(s, "GETRANGE gr -3 -1", "\"ing\"");
  EXPECT(s, "GETRANGE gr 0 -1", "\"This is a string\"");
  EXPECT(s, "GETRANGE gr 10 100", "\"string\"");
  EXPECT(s, "GETRANGE gr 5 3", "\"\"");
  EXPECT(s, "GETRANGE gr -1 -5", "\"\"");
  EXPECT(s, "GETRANGE nokey 0 -1", "\"\"");
  EXPECT(s, "GETRANGE gr a 1", "-ERR value is not an integer or out of range");
  EXPECT(s, "SET sr \"Hello World\"", "+OK");
  EXPECT(s, "SETRANGE sr 6 Redis", ":11");
  EXPECT(s, "GET sr", "\"Hello Redis\"");
  EXPECT(s, "SETRANGE pad 3 ab", ":5");
  shmd_reply_t *r = run(s, "GET pad");
  cr_expect_eq(r->len, 5);
  cr_expect(memcmp(r->str, "\0\0\0ab", 5) == 0);
  shmd_reply_free(r);
  EXPECT(s, "SETRANGE sr -1 x", "-ERR offset is out of range");
  EXPECT(s, "SETRANGE none 5 \"\"", ":0");
  EXPECT(s, "EXISTS none", ":0");
  EXPECT(s, "SETRANGE sr 0 \"\"", ":11");
  EXPECT(s, "SETRANGE sr 536870912 x", "-ERR string exceeds maximum allowed size (proto-max-bulk-len)");
  EXPECT(s, "APPEND lst x", WT);
  EXPECT(s, "STRLEN lst", WT);
  EXPECT(s, "GETRANGE lst 0 1", WT);
  EXPECT(s, "SETRANGE lst 0 1", WT);
  /* a big string (out of line) */
  char *line = malloc(20000);
  strcpy(line, "SET huge ");
  memset(line + 9, 'x', 10000);
  line[10009] = 0;
  EXPECT(s, line, "+OK");
  EXPECT(s, "STRLEN huge", ":10000");
  EXPECT(s, "APPEND huge yy", ":10002");
  EXPECT(s, "GETRANGE huge 9998 -1", "\"xxyy\"");
  free(line);
  check_all(s);
  shmd_close(s);
}

Test(kv, hashes) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  EXPECT(s, "HSET h a 1 b 2", ":2");
  EXPECT(s, "HSET h a 3 c 4", ":1");
  EXPECT(s, "HGET h a", "\"3\"");
  EXPECT(s, "HGET h x", "(nil)");
  EXPECT(s, "HGET nokey x", "(nil)");
  EXPECT(s, "HMSET h d 5", "+OK");
  EXPECT(s, "HSETNX h a 9", ":0");
  EXPECT(s, "HSETNX h e 9", ":1");
  EXPECT(s, "HMGET h a x e", "[\"3\",(nil),\"9\"]");
  EXPECT(s, "HMGET nokey a b", "[(nil),(nil)]");
  EXPECT(s, "HLEN h", ":5");
  EXPECT(s, "HLEN nokey", ":0");
  EXPECT(s, "HEXISTS h a", ":1");
  EXPECT(s, "HEXISTS h x", ":0");
  EXPECT(s, "HEXISTS nokey x", ":0");
  EXPECT_SET(s, "HKEYS h", "[a,b,c,d,e]");
  EXPECT_SET(s, "HVALS h", "[2,3,4,5,9]");
  EXPECT(s, "HKEYS nokey", "[]");
  shmd_reply_t *r = run(s, "HGETALL h");
  cr_expect_eq(r->nelems, 10);
  for (size_t i = 0; i < r->nelems; i += 2)
    if (strcmp(r->elems[i].str, "a") == 0)
      cr_expect_str_eq(r->elems[i + 1].str, "3");
  shmd_reply_free(r);
  EXPECT(s, "HDEL h a x b", ":2");
  EXPECT(s, "HDEL nokey a", ":0");
  EXPECT(s, "HINCRBY h c 10", ":14");
  EXPECT(s, "HINCRBY h new -3", ":-3");
  EXPECT(s, "HINCRBY h2 f 1", ":1");
  EXPECT(s, "HSET h str abc", ":1");
  EXPECT(s, "HINCRBY h str 1", "-ERR hash value is not an integer");
  EXPECT(s, "HINCRBY h c x", "-ERR value is not an integer or out of range");
  EXPECT(s, "HSET h m 9223372036854775807", ":1");
  EXPECT(s, "HINCRBY h m 1", "-ERR increment or decrement would overflow");
  EXPECT(s, "HDEL h2 f", ":1");
  EXPECT(s, "EXISTS h2", ":0"); /* emptied hash is deleted */
  for (int i = 0; i < 100; i++) {
    char line[64];
    snprintf(line, sizeof line, "HSET hs f%d v%d", i, i);
    shmd_reply_free(run(s, line));
  }
  int seen[100] = {0};
  unsigned long long cur = 0;
  int steps = 0;
  do {
    char line[64];
    snprintf(line, sizeof line, "HSCAN hs %llu COUNT 9", cur);
    r = run(s, line);
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
  r = run(s, "HSCAN hs 0 MATCH f7? COUNT 1000");
  cr_expect_str_eq(r->elems[0].str, "0");
  cr_expect_eq(r->elems[1].nelems, 20);
  shmd_reply_free(r);
  EXPECT(s, "HSCAN nokey 0", "[\"0\",[]]");
  r = run(s, "HSCAN hs 0 MATCH f1 COUNT 1000");
  cr_expect_str_eq(show(&r->elems[1]), "[\"f1\",\"v1\"]");
  shmd_reply_free(r);
  check_all(s);
  shmd_close(s);
}

Test(kv, lists) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  EXPECT(s, "RPUSH l a b c", ":3");
  EXPECT(s, "LPUSH l z y", ":5");
  EXPECT(s, "LRANGE l 0 -1", "[\"y\",\"z\",\"a\",\"b\",\"c\"]");
  EXPECT(s, "LRANGE l -2 100", "[\"b\",\"c\"]");
  EXPECT(s, "LRANGE l 3 1", "[]");
  EXPECT(s, "LRANGE nokey 0 -1", "[]");
  EXPECT(s, "LLEN l", ":5");
  EXPECT(s, "LLEN nokey", ":0");
  EXPECT(s, "LINDEX l 0", "\"y\"");
  EXPECT(s, "LINDEX l -1", "\"c\"");
  EXPECT(s, "LINDEX l 5", "(nil)");
  EXPECT(s, "LINDEX l x", "-ERR value is not an integer or out of range");
  EXPECT(s, "LPOP l", "\"y\"");
  EXPECT(s, "RPOP l", "\"c\"");
  EXPECT(s, "LPOP l 2", "[\"z\",\"a\"]");
  EXPECT(s, "RPOP l 5", "[\"b\"]");
  EXPECT(s, "EXISTS l", ":0");
  EXPECT(s, "LPOP l", "(nil)");
  EXPECT(s, "LPOP l 2", "(nil)");
  EXPECT(s, "LPOP l -1", "-ERR value is out of range, must be positive");
  EXPECT(s, "RPUSH l a b a c a", ":5");
  EXPECT(s, "LPOP l 0", "[]");
  EXPECT(s, "LSET l 1 B", "+OK");
  EXPECT(s, "LSET l 10 B", "-ERR index out of range");
  EXPECT(s, "LSET nokey 0 B", "-ERR no such key");
  EXPECT(s, "LREM l -1 a", ":1");
  EXPECT(s, "LRANGE l 0 -1", "[\"a\",\"B\",\"a\",\"c\"]");
  EXPECT(s, "LREM l 0 a", ":2");
  EXPECT(s, "LREM nokey 0 a", ":0");
  EXPECT(s, "LINSERT l BEFORE c x", ":3");
  EXPECT(s, "LINSERT l AFTER c y", ":4");
  EXPECT(s, "LINSERT l AFTER nopivot y", ":-1");
  EXPECT(s, "LINSERT nokey AFTER c y", ":0");
  EXPECT(s, "LINSERT l MIDDLE c y", "-ERR syntax error");
  EXPECT(s, "LRANGE l 0 -1", "[\"B\",\"x\",\"c\",\"y\"]");
  EXPECT(s, "LTRIM l 1 2", "+OK");
  EXPECT(s, "LRANGE l 0 -1", "[\"x\",\"c\"]");
  EXPECT(s, "LTRIM l 5 10", "+OK");
  EXPECT(s, "EXISTS l", ":0");
  EXPECT(s, "LTRIM nokey 0 1", "+OK");
  check_all(s);
  shmd_close(s);
}

Test(kv, sets) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  EXPECT(s, "SADD s a b c", ":3");
  EXPECT(s, "SADD s a d", ":1");
  EXPECT(s, "SCARD s", ":4");
  EXPECT(s, "SCARD nokey", ":0");
  EXPECT(s, "SISMEMBER s a", ":1");
  EXPECT(s, "SISMEMBER s x", ":0");
  EXPECT(s, "SISMEMBER nokey x", ":0");
  EXPECT_SET(s, "SMEMBERS s", "[a,b,c,d]");
  EXPECT(s, "SMEMBERS nokey", "[]");
  EXPECT(s, "SREM s a x", ":1");
  EXPECT(s, "SADD t c d e", ":3");
  EXPECT_SET(s, "SINTER s t", "[c,d]");
  EXPECT_SET(s, "SUNION s t", "[b,c,d,e]");
  EXPECT_SET(s, "SDIFF s t", "[b]");
  EXPECT_SET(s, "SDIFF t s", "[e]");
  EXPECT_SET(s, "SINTER s nokey", "[]");
  EXPECT_SET(s, "SUNION s nokey", "[b,c,d]");
  EXPECT_SET(s, "SDIFF nokey s", "[]");
  EXPECT_SET(s, "SDIFF s nokey", "[b,c,d]");
  shmd_reply_t *r = run(s, "SRANDMEMBER s");
  cr_expect(r->type == SHMD_REPLY_BULK && strchr("bcd", r->str[0]));
  shmd_reply_free(r);
  EXPECT_SET(s, "SRANDMEMBER s 10", "[b,c,d]");
  r = run(s, "SRANDMEMBER s 2");
  cr_expect_eq(r->nelems, 2);
  cr_expect_str_neq(r->elems[0].str, r->elems[1].str);
  shmd_reply_free(r);
  r = run(s, "SRANDMEMBER s -7");
  cr_expect_eq(r->nelems, 7);
  shmd_reply_free(r);
  EXPECT(s, "SRANDMEMBER nokey", "(nil)");
  EXPECT(s, "SRANDMEMBER nokey 3", "[]");
  r = run(s, "SPOP s");
  cr_expect(r->type == SHMD_REPLY_BULK);
  shmd_reply_free(r);
  EXPECT(s, "SCARD s", ":2");
  r = run(s, "SPOP s 5");
  cr_expect_eq(r->nelems, 2);
  shmd_reply_free(r);
  EXPECT(s, "EXISTS s", ":0");
  EXPECT(s, "SPOP s", "(nil)");
  EXPECT(s, "SPOP t -1", "-ERR value is out of range, must be positive");
  for (int i = 0; i < 50; i++) {
    char line[64];
    snprintf(line, sizeof line, "SADD big m%d", i);
    shmd_reply_free(run(s, line));
  }
  int seen[50] = {0};
  unsigned long long cur = 0;
  do {
    char line[64];
    snprintf(line, sizeof line, "SSCAN big %llu", cur);
    r = run(s, line);
    cur = strtoull(r->elems[0].str, NULL, 10);
    for (size_t i = 0; i < r->elems[1].nelems; i++)
      seen[atoi(r->elems[1].elems[i].str + 1)]++;
    shmd_reply_free(r);
  } while (cur != 0);
  for (int i = 0; i < 50; i++)
    cr_expect_eq(seen[i], 1);
  check_all(s);
  shmd_close(s);
}

Test(kv, zsets) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  EXPECT(s, "ZADD z 1 a 2 b 3 c", ":3");
  EXPECT(s, "ZADD z 10 a 4 d", ":1");
  EXPECT(s, "ZADD z CH 11 a 4 d 5 e", ":2");
  EXPECT(s, "ZSCORE z a", "\"11\"");
  EXPECT(s, "ZSCORE z x", "(nil)");
  EXPECT(s, "ZSCORE nokey x", "(nil)");
  EXPECT(s, "ZCARD z", ":5");
  EXPECT(s, "ZCARD nokey", ":0");
  EXPECT(s, "ZRANGE z 0 -1", "[\"b\",\"c\",\"d\",\"e\",\"a\"]");
  EXPECT(s, "ZRANGE z 0 1 WITHSCORES", "[\"b\",\"2\",\"c\",\"3\"]");
  EXPECT(s, "ZRANGE z 0 1 REV", "[\"a\",\"e\"]");
  EXPECT(s, "ZRANGE z -2 -1", "[\"e\",\"a\"]");
  EXPECT(s, "ZRANGE z 5 10", "[]");
  EXPECT(s, "ZRANGE z 2 4 BYSCORE", "[\"b\",\"c\",\"d\"]");
  EXPECT(s, "ZRANGE z (2 4 BYSCORE", "[\"c\",\"d\"]");
  EXPECT(s, "ZRANGE z 2 (4 BYSCORE", "[\"b\",\"c\"]");
  EXPECT(s, "ZRANGE z -inf +inf BYSCORE LIMIT 1 2", "[\"c\",\"d\"]");
  EXPECT(s, "ZRANGE z +inf -inf BYSCORE REV LIMIT 0 2 WITHSCORES", "[\"a\",\"11\",\"e\",\"5\"]");
  EXPECT(s, "ZRANGE z 4 2 BYSCORE REV", "[\"d\",\"c\",\"b\"]");
  EXPECT(s, "ZRANGE z 0 1 LIMIT 0 1", "-ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX");
  EXPECT(s, "ZRANGE z x 1 BYSCORE", "-ERR min or max is not a float");
  EXPECT(s, "ZRANGE z a b", "-ERR value is not an integer or out of range");
  EXPECT(s, "ZRANGE z 0 1 FOO", "-ERR syntax error");
  EXPECT(s, "ZRANGEBYSCORE z 3 +inf", "[\"c\",\"d\",\"e\",\"a\"]");
  EXPECT(s, "ZRANGEBYSCORE z 3 +inf WITHSCORES LIMIT 1 1", "[\"d\",\"4\"]");
  EXPECT(s, "ZRANGEBYSCORE z (3 (5", "[\"d\"]");
  EXPECT(s, "ZRANGEBYSCORE nokey 0 1", "[]");
  EXPECT(s, "ZCOUNT z -inf +inf", ":5");
  EXPECT(s, "ZCOUNT z (2 4", ":2");
  EXPECT(s, "ZCOUNT z 5 1", ":0");
  EXPECT(s, "ZCOUNT nokey 0 1", ":0");
  EXPECT(s, "ZCOUNT z x 1", "-ERR min or max is not a float");
  EXPECT(s, "ZRANK z b", ":0");
  EXPECT(s, "ZRANK z a", ":4");
  EXPECT(s, "ZREVRANK z a", ":0");
  EXPECT(s, "ZRANK z x", "(nil)");
  EXPECT(s, "ZRANK nokey x", "(nil)");
  EXPECT(s, "ZINCRBY z 1.5 b", "\"3.5\"");
  EXPECT(s, "ZINCRBY z 1 new", "\"1\"");
  EXPECT(s, "ZINCRBY z x new", "-ERR value is not a valid float");
  EXPECT(s, "ZADD z INCR 1 new", "\"2\"");
  EXPECT(s, "ZADD z NX INCR 1 new", "(nil)");
  EXPECT(s, "ZADD z XX INCR 1 nonew", "(nil)");
  EXPECT(s, "ZADD z XX 100 nonew", ":0");
  EXPECT(s, "ZADD nz XX 100 nonew", ":0");
  EXPECT(s, "EXISTS nz", ":0");
  EXPECT(s, "ZADD z NX 100 a", ":0");
  EXPECT(s, "ZSCORE z a", "\"11\"");
  EXPECT(s, "ZADD z GT CH 5 a", ":0");
  EXPECT(s, "ZADD z GT CH 12 a", ":1");
  EXPECT(s, "ZADD z LT CH 13 a", ":0");
  EXPECT(s, "ZADD z LT CH 1 a", ":1");
  EXPECT(s, "ZADD z GT 7 brandnew", ":1"); /* GT/LT still add new members */
  EXPECT(s, "ZADD z NX XX 1 a", "-ERR XX and NX options at the same time are not compatible");
  EXPECT(s, "ZADD z NX GT 1 a", "-ERR GT, LT, and/or NX options at the same time are not compatible");
  EXPECT(s, "ZADD z INCR 1 a 2 b", "-ERR INCR option supports a single increment-element pair");
  EXPECT(s, "ZADD z 1", "-ERR wrong number of arguments for 'zadd' command");
  EXPECT(s, "ZADD z 1 a 2", "-ERR syntax error");
  EXPECT(s, "ZADD z x a", "-ERR value is not a valid float");
  EXPECT(s, "ZADD z nan a", "-ERR value is not a valid float");
  EXPECT(s, "ZADD z inf infm", ":1");
  EXPECT(s, "ZINCRBY z -inf infm", "-ERR resulting score is not a number (NaN)");
  EXPECT(s, "ZSCORE z infm", "\"inf\"");
  EXPECT(s, "ZADD z 0.1 tenth", ":1");
  EXPECT(s, "ZSCORE z tenth", "\"0.10000000000000001\"");
  EXPECT(s, "ZREM z tenth infm nokey", ":2");
  EXPECT(s, "ZREM nokey a", ":0");
  EXPECT(s, "ZRANGE z 0 -1 WITHSCORES",
         "[\"a\",\"1\",\"new\",\"2\",\"c\",\"3\",\"b\",\"3.5\",\"d\",\"4\",\"e\",\"5\",\"brandnew\",\"7\"]");
  EXPECT(s, "ZREMRANGEBYRANK z 1 2", ":2");
  EXPECT(s, "ZRANGE z 0 -1", "[\"a\",\"b\",\"d\",\"e\",\"brandnew\"]");
  EXPECT(s, "ZREMRANGEBYRANK z -2 -1", ":2");
  EXPECT(s, "ZREMRANGEBYRANK z 5 9", ":0");
  EXPECT(s, "ZREMRANGEBYRANK z 0 -1", ":3");
  EXPECT(s, "EXISTS z", ":0");
  /* same score: members ordered by bytes */
  EXPECT(s, "ZADD y 1 b 1 a 1 c 0 z", ":4");
  EXPECT(s, "ZRANGE y 0 -1", "[\"z\",\"a\",\"b\",\"c\"]");
  EXPECT(s, "ZADD y -0 neg", ":1");
  EXPECT(s, "ZRANGEBYSCORE y 0 0", "[\"neg\",\"z\"]");
  shmd_reply_t *r = run(s, "ZSCAN y 0 COUNT 100");
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
  shmd_reply_free(run(s, "SET warm x"));
  shmd_reply_free(run(s, "FLUSHDB"));
  cr_assert_eq(shmd_stats(s, &st0), 0);
  const char *kinds[] = {"HSET bh f%d v%d", "RPUSH bl %d-%d", "SADD bs m%d-%d", "ZADD bz %d m%d"};
  for (int round = 0; round < 3; round++) {
    for (int k = 0; k < 4; k++)
      for (int i = 0; i < 3000; i++) {
        char line[64];
        snprintf(line, sizeof line, kinds[k], i, i);
        shmd_reply_t *r = run(s, line);
        cr_assert_eq(r->type, SHMD_REPLY_INTEGER, "%s: %s", line, show(r));
        shmd_reply_free(r);
      }
    if (round == 0) {
      EXPECT(s, "DEL bh bl bs bz", ":4");
    } else if (round == 2) {
      EXPECT(s, "FLUSHDB", "+OK");
    } else {
      EXPECT(s, "MSET bh 1 bl 2 bs 3 bz 4", "+OK");
      EXPECT(s, "DEL bh bl bs bz", ":4");
    }
    EXPECT(s, "DBSIZE", ":0");
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
