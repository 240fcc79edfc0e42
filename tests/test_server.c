/* SPDX-License-Identifier: MIT */
/*
 * Tests of shmdict-server, each against a real server started by the test on a free loopback
 * port with the test's private store directory (never the default), and where Redis's answer is
 * the reference, against a private redis-server 7.0 started the same way: the request parser
 * (RESP2 multibulk, inline commands, pipelining, malformed and hostile input) byte for byte,
 * replies in RESP2 and RESP3 byte for byte, AUTH and protected mode, the client limits, pub/sub
 * and every blocking pop across two worker processes and from the C API, the same store seen
 * from C and from the network, a worker killed while clients block, and SIGKILLed workers
 * restarted by the supervisor.
 */
#include <signal.h>
#include <sys/wait.h>

#include "server_support.h"
#include "shmdict.h"

static srvproc_t S;

static void fini_all(void) {
  server_stop(&S);
  redis_stop();
  ts_fini();
}

TestSuite(server, .init = ts_init, .fini = fini_all, .timeout = 120);

/* ---------------------------------------------------------------------------------------------- */
/* The request parser, byte for byte against redis-server */

typedef struct raw_case_s {
  const char *bytes;
  size_t len;
} raw_case_t;

#define RAW(s) {s, sizeof(s) - 1}

/* Sends bytes on a fresh connection and collects what comes back within 300 ms (or until EOF). */
static bytes_t raw_exchange(int port, const char *p, size_t n) {
  int fd = conn_open(port);
  conn_send(fd, p, n);
  bytes_t b = {0};
  conn_read(fd, &b, 0, 300);
  close(fd);
  return b;
}

Test(server, protocol_errors_match_redis) {
  int rport = redis_start();
  S = server_start(1, NULL);
  static char big_inline[70000], big_mbulk[70000], big_bulk[70000];
  memset(big_inline, 'x', sizeof big_inline);
  big_mbulk[0] = '*';
  memset(big_mbulk + 1, '1', sizeof big_mbulk - 1);
  memcpy(big_bulk, "*1\r\n$", 5);
  memset(big_bulk + 5, '1', sizeof big_bulk - 5);
  raw_case_t cases[] = {
      RAW("\r\n"),
      RAW("*-10\r\nPING\r\n"),
      RAW("*3000000000\r\n"),
      RAW("*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n"),
      RAW("*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n"),
      RAW("*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$2000000000\r\n"),
      RAW("*1\r\n$4\r\nPINGxx\r\n"),
      RAW("*a\r\n"),
      RAW("PING\r\n"),
      RAW("ping\n"),
      RAW("set \"a b\" c\r\nget \"a b\"\r\n"),
      RAW("set \"a\r\n"),
      RAW("echo \"\\x41\\n\\t\" 'it''s'\r\n"),
      RAW("echo 'it\\'s'\r\n"),
      RAW("echo \"a\"b\r\n"),
      RAW("*0\r\nPING\r\n"),
      RAW("*1\r\n$0\r\n\r\n"),
      RAW("   \r\nPING\r\n"),
      RAW("*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n"),
      {big_inline, sizeof big_inline},
      {big_mbulk, sizeof big_mbulk},
      {big_bulk, sizeof big_bulk},
      RAW("*1\r\n$4\r\nPI"),
      RAW("*\r\n"),
      RAW("*1\r\n$\r\n"),
      RAW("*1\r\n$+4\r\nPING\r\n"),
      RAW("*1\r\n$04\r\nPING\r\n"),
      RAW("*1\r\n$ 4\r\nPING\r\n"),
      RAW("*2\r\n$4\r\nECHO\r\n$3\r\nabc\r\n*1\r\n$4\r\nQUIT\r\nPING\r\n"),
      RAW("*1\r\n:4\r\n"),
      RAW("*1\r\r\n$4\r\nPING\r\n"),
      RAW("*1\n$4\r\nPING\r\n"),
      RAW("*2\r\n$4\r\nECHO\r\n\x00\r\n"),
      RAW("NOSUCH a\r\n"),
      RAW("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$3\r\nGET\r\n"),
      RAW("*-1\r\n*0\r\n*1\r\n$4\r\nPING\r\n"),
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    bytes_t want = raw_exchange(rport, cases[i].bytes, cases[i].len);
    bytes_t got = raw_exchange(S.port, cases[i].bytes, cases[i].len);
    cr_expect_eq(got.n, want.n, "case %zu (%.40s): got %zu bytes [%s], redis %zu [%s]", i, cases[i].bytes, got.n,
                 got.p ? got.p : "", want.n, want.p ? want.p : "");
    cr_expect(got.n == want.n && (got.n == 0 || memcmp(got.p, want.p, got.n) == 0),
              "case %zu (%.40s): got [%s], redis [%s]", i, cases[i].bytes, got.p ? got.p : "", want.p ? want.p : "");
    cr_expect_eq(got.eof, want.eof, "case %zu (%.40s): connection closed %d, redis %d", i, cases[i].bytes, got.eof,
                 want.eof);
    bytes_free(&want);
    bytes_free(&got);
  }
}

/* A request split at every byte boundary parses the same as whole. */
Test(server, requests_split_anywhere) {
  S = server_start(1, NULL);
  const char req[] = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n*2\r\n$3\r\nGET\r\n$3\r\nkey\r\nECHO inline\r\n";
  int fd = conn_open(S.port);
  for (size_t i = 0; i < sizeof req - 1; i++) {
    conn_send(fd, req + i, 1);
    usleep(200);
  }
  bytes_t b = {0};
  conn_read(fd, &b, 3, 3000);
  cr_expect_str_eq(b.p, "+OK\r\n$5\r\nvalue\r\n$6\r\ninline\r\n");
  bytes_free(&b);
  close(fd);
}

/* 20 000 pipelined commands in one write: every reply, in order. */
Test(server, pipelining) {
  S = server_start(1, NULL);
  bytes_t req = {0};
  for (int i = 0; i < 20000; i++) {
    char line[64];
    snprintf(line, sizeof line, i % 2 ? "GET k%d" : "SET k%d v%d", i / 2, i / 2);
    encode_line(&req, line);
  }
  int fd = conn_open(S.port);
  conn_send(fd, req.p, req.n);
  bytes_t rep = {0};
  conn_read(fd, &rep, 20000, 20000);
  size_t at = 0;
  for (int i = 0; i < 20000; i++) {
    size_t l = resp_reply_len(rep.p + at, rep.n - at);
    cr_assert_gt(l, 0, "reply %d missing", i);
    char want[64];
    if (i % 2 == 0)
      snprintf(want, sizeof want, "+OK\r\n");
    else
      snprintf(want, sizeof want, "$%d\r\nv%d\r\n", (int)strlen("v") + snprintf(NULL, 0, "%d", i / 2), i / 2);
    cr_assert(l == strlen(want) && memcmp(rep.p + at, want, l) == 0, "reply %d: %.*s", i, (int)l, rep.p + at);
    at += l;
  }
  cr_expect_eq(at, rep.n);
  bytes_free(&req);
  bytes_free(&rep);
  close(fd);
}

/* ---------------------------------------------------------------------------------------------- */
/* Replies, RESP2 and RESP3, byte for byte against redis-server */

static void compare_session(int rport, int sport, const char *const *lines, size_t n) {
  int r = conn_open(rport), s = conn_open(sport);
  for (size_t i = 0; i < n; i++) {
    char *want = cmd(r, lines[i]);
    char *got = cmd(s, lines[i]);
    cr_expect_str_eq(got, want, "%s", lines[i]);
    free(want);
    free(got);
  }
  close(r);
  close(s);
}

static const char *const common_lines[] = {
    "FLUSHALL", "PING", "PING hello", "ECHO x", "SET k v", "GET k", "GET nokey", "INCR n", "INCRBY n 10",
    "INCR k", "APPEND k w", "STRLEN k", "MGET k nokey n", "DEL k nokey", "EXISTS k n", "TYPE n",
    "HSET h f v", "HGET h f", "HGETALL h", "HGETALL nokey", "HKEYS h", "HINCRBY h c 5", "HDEL h f c",
    "RPUSH l a b c", "LRANGE l 0 -1", "LPOP l", "LPOP l 2", "LPOP nokey 2", "RPOP nokey", "LLEN l",
    "SADD s x", "SMEMBERS s", "SISMEMBER s x", "SINTER s", "SUNION s nokey", "SDIFF s nokey", "SCARD s",
    "SPOP s 1", "SPOP s 1", "ZADD z 1.5 a 2 b", "ZSCORE z a", "ZSCORE z nope", "ZINCRBY z 1 a",
    "ZRANGE z 0 -1", "ZRANGE z 0 -1 WITHSCORES", "ZRANGEBYSCORE z -inf +inf WITHSCORES", "ZRANK z a",
    "ZREVRANK z nomember", "ZCARD z", "ZADD z INCR 1 a", "ZADD z NX INCR 1 a", "ZPOPMIN z", "ZADD z 3 c 4 d",
    "ZPOPMAX z 2", "ZADD z 1 a 2 b", "ZMPOP 1 z MIN", "ZMPOP 1 nokey MIN", "LMPOP 1 nokey LEFT",
    "RPUSH l2 x y", "LMPOP 1 l2 RIGHT COUNT 5", "LMOVE nol d LEFT LEFT", "RPUSH l3 x", "LMOVE l3 d LEFT RIGHT",
    "ZADD zs 1 only", "ZSCAN zs 0", "HSCAN nokey 0", "SELECT 1", "GET k", "SET k1 v1", "DBSIZE", "SELECT 16", "SELECT x",
    "SELECT 0", "DBSIZE", "FLUSHDB", "DBSIZE", "FOO bar baz", "GET", "SET k", "CLIENT", "CLIENT FOO",
    "CLIENT SETNAME", "CLIENT SETNAME a\tb", "CLIENT SETNAME ab", "CLIENT GETNAME", "CONFIG GET",
    "CONFIG FOO", "CONFIG GET maxclients", "CONFIG GET save", "CONFIG GET appendonly", "CONFIG SET nosuch 1",
    "CONFIG SET maxclients abc", "CONFIG SET maxclients 10000", "SLOWLOG FOO", "PUBSUB CHANNELS",
    "PUBSUB NUMSUB a", "PUBSUB NUMPAT", "PUBLISH nobody m", "HELLO 4", "HELLO x", "HELLO 3 FOO",
    "AUTH x", "AUTH a b", "AUTH a b c", "COMMAND INFO nosuchcommand", "BLPOP l x", "BLPOP l -1",
    "BLPOP nol 0.01", "BRPOP nol 0.01", "BLMOVE nol d LEFT LEFT 0.01", "BLMOVE nol d UP LEFT 0.01",
    "BLMPOP 0.01 1 nol LEFT", "BZPOPMIN noz 0.01", "BZMPOP 0.01 1 noz MIN", "SET str x", "BLPOP str 0.01",
    "BLMPOP x 1 nol LEFT", "BLPOP nol 1e400", "BLPOP nol inf", "BLMPOP 0 0 l LEFT", "ZADD zz 1 a 2 b",
    "BZPOPMIN zz 0", "BZMPOP 0 1 zz MAX COUNT 3", "RPUSH l4 x", "BLMPOP 0 1 l4 LEFT COUNT 3",
    "RPUSH l5 x", "BLMOVE l5 d5 RIGHT LEFT 0", "RPUSH l5 y", "BRPOPLPUSH l5 d5 0", "RPUSH l6 a",
    "BLPOP l6 0", "RPUSH l6 b", "BRPOP nol l6 0", "FLUSHALL ASYNC SYNC", "MONITOR x", "QUIT x"};

Test(server, resp2_replies_match_redis) {
  int rport = redis_start();
  S = server_start(1, NULL);
  compare_session(rport, S.port, common_lines, sizeof common_lines / sizeof common_lines[0]);
}

Test(server, resp3_replies_match_redis) {
  int rport = redis_start();
  S = server_start(1, NULL);
  /* HELLO 3 answers an id that differs; switch both, then compare the rest */
  int r = conn_open(rport), s = conn_open(S.port);
  char *a = cmd(r, "HELLO 3"), *b = cmd(s, "HELLO 3");
  cr_expect(!strncmp(a, "%7\r\n", 4) && !strncmp(b, "%7\r\n", 4), "redis %s, shmdict %s", a, b);
  /* the same map up to the id */
  char *ai = strstr(a, "$2\r\nid\r\n:"), *bi = strstr(b, "$2\r\nid\r\n:");
  cr_assert(ai && bi);
  cr_expect_eq(ai - a, bi - b);
  cr_expect_str_eq(strchr(ai + 9, '\n'), strchr(bi + 9, '\n'));
  free(a);
  free(b);
  for (size_t i = 0; i < sizeof common_lines / sizeof common_lines[0]; i++) {
    if (!strncmp(common_lines[i], "QUIT", 4))
      continue;
    char *want = cmd(r, common_lines[i]);
    char *got = cmd(s, common_lines[i]);
    cr_expect_str_eq(got, want, "RESP3 %s", common_lines[i]);
    free(want);
    free(got);
  }
  close(r);
  close(s);
}

/* MULTI / EXEC / DISCARD / WATCH / UNWATCH (the keyspace's client state, server/multi.c): the
 * same session against redis-server byte for byte, in RESP2 and in RESP3 (EXEC's elements shaped
 * as their commands' replies); WATCH sees another connection's write. */
static const char *const multi_lines[] = {
    "FLUSHALL", "EXEC", "DISCARD", "UNWATCH", "MULTI", "MULTI", "WATCH k", "SET k 1", "INCR k", "RPUSH k x",
    "HSET h f v", "HGETALL h", "ZADD z 1.5 a", "ZSCORE z a", "ZRANGE z 0 -1 WITHSCORES", "LPOP nol 2", "ZMPOP 1 noz MIN",
    "PING", "SELECT 2", "SET k two", "SELECT 0", "GET k", "EXEC", "GET k", "MULTI", "SET k 5", "NOSUCH a", "GET",
    "EXEC", "GET k", "MULTI", "SET k 6", "DISCARD", "GET k", "MULTI", "EXEC", "MULTI", "SELECT 3", "SET k three",
    "EXEC", "GET k", "SELECT 0", "WATCH k", "SET k 7", "MULTI", "GET k", "EXEC", "WATCH k", "MULTI", "GET k", "EXEC",
    "WATCH k", "UNWATCH", "SET k 8", "MULTI", "GET k", "EXEC", "MULTI", "CLIENT SETNAME a", "EXEC"};

static void multi_session(int resp3) {
  int rport = redis_start();
  S = server_start(1, NULL);
  int r = conn_open(rport), s = conn_open(S.port);
  if (resp3) {
    free(cmd(r, "HELLO 3"));
    free(cmd(s, "HELLO 3"));
  }
  for (size_t i = 0; i < sizeof multi_lines / sizeof multi_lines[0]; i++) {
    /* CLIENT inside MULTI: Redis queues it, the server refuses it (docs/server.md); skip its
     * reply and EXEC's, which differ accordingly */
    int differs = !strcmp(multi_lines[i], "CLIENT SETNAME a") || (i > 0 && !strcmp(multi_lines[i - 1], "CLIENT SETNAME a"));
    char *want = cmd(r, multi_lines[i]);
    char *got = cmd(s, multi_lines[i]);
    if (!differs)
      cr_expect_str_eq(got, want, "%s %s", resp3 ? "RESP3" : "RESP2", multi_lines[i]);
    free(want);
    free(got);
  }
  /* WATCH, then another connection writes the key: EXEC answers a null array */
  int r2 = conn_open(rport), s2 = conn_open(S.port);
  const char *steps[][2] = {{"a", "WATCH w"}, {"b", "SET w x"}, {"a", "MULTI"}, {"a", "SET done 1"},
                            {"a", "EXEC"}, {"a", "GET done"}, {"a", "WATCH w"}, {"b", "GET w"},
                            {"a", "MULTI"}, {"a", "SET done 2"}, {"a", "EXEC"}, {"a", "GET done"}};
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    int first = steps[i][0][0] == 'a';
    char *want = cmd(first ? r : r2, steps[i][1]);
    char *got = cmd(first ? s : s2, steps[i][1]);
    cr_expect_str_eq(got, want, "%s %s (connection %s)", resp3 ? "RESP3" : "RESP2", steps[i][1], steps[i][0]);
    free(want);
    free(got);
  }
  close(r);
  close(s);
  close(r2);
  close(s2);
}

Test(server, multi_exec_watch_match_redis_resp2) { multi_session(0); }
Test(server, multi_exec_watch_match_redis_resp3) { multi_session(1); }

/* Subscribed contexts: RESP2 allows only the pub/sub commands, PING answers an array; RESP3
 * allows everything and pushes. */
Test(server, pubsub_context_matches_redis) {
  int rport = redis_start();
  S = server_start(1, NULL);
  static const char *const resp2[] = {"SUBSCRIBE a b", "GET k", "PING", "PING x", "SUBSCRIBE a",
                                      "UNSUBSCRIBE zz", "UNSUBSCRIBE b", "PSUBSCRIBE p*", "PUNSUBSCRIBE p*",
                                      "CLIENT LIST", "UNSUBSCRIBE a", "PUNSUBSCRIBE", "UNSUBSCRIBE", "PING"};
  compare_session(rport, S.port, resp2, sizeof resp2 / sizeof resp2[0]);
  static const char *const resp3[] = {"HELLO 3 SETNAME x", "SUBSCRIBE a", "GET k", "PING", "UNSUBSCRIBE a",
                                      "PSUBSCRIBE p*", "PUNSUBSCRIBE p*", "UNSUBSCRIBE", "PUNSUBSCRIBE", "RESET",
                                      "SUBSCRIBE a", "PING x", "RESET", "MONITOR", "RESET"};
  int r = conn_open(rport), s = conn_open(S.port);
  for (size_t i = 0; i < sizeof resp3 / sizeof resp3[0]; i++) {
    char *want = cmd(r, resp3[i]);
    char *got = cmd(s, resp3[i]);
    if (i == 0) { /* the id differs */
      cr_expect_eq(strlen(got) > 0 && got[0] == '%', 1, "%s", got);
    } else {
      cr_expect_str_eq(got, want, "%s", resp3[i]);
    }
    free(want);
    free(got);
  }
  close(r);
  close(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* Hostile input */

/* Claimed lengths are checked against the limits and never allocated before the bytes arrive:
 * 64 connections each claiming a 500 MB argument (and 2^31 - 1 arguments) leave the worker's
 * memory where it was; the limits answer Redis's errors and close. */
Test(server, huge_claims_allocate_nothing) {
  S = server_start(1, NULL);
  pid_t w[4];
  cr_assert_eq(server_workers(&S, w, 4), 1);
  int probe = conn_open(S.port);
  CMD_EQ(probe, "PING", "+PONG\r\n");
  long before = rss_kib(w[0]);
  int fds[64];
  for (int i = 0; i < 64; i++) {
    fds[i] = conn_open(S.port);
    const char *req = i % 2 ? "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$500000000\r\nabc" : "*2147483647\r\n$3\r\nSET\r\n";
    conn_send(fds[i], req, strlen(req));
  }
  CMD_EQ(probe, "PING", "+PONG\r\n");
  long after = rss_kib(w[0]);
  cr_expect_lt(after - before, 16 * 1024, "the worker grew by %ld KiB for claims it did not receive", after - before);
  for (int i = 0; i < 64; i++)
    close(fds[i]);
  /* beyond the limits: refused, connection closed */
  bytes_t b = raw_exchange(S.port, "*1\r\n$536870913\r\n", 17);
  cr_expect_str_eq(b.p, "-ERR Protocol error: invalid bulk length\r\n");
  cr_expect(b.eof);
  bytes_free(&b);
  b = raw_exchange(S.port, "*2147483648\r\n", 13);
  cr_expect_str_eq(b.p, "-ERR Protocol error: invalid multibulk length\r\n");
  cr_expect(b.eof);
  bytes_free(&b);
  CMD_EQ(probe, "PING", "+PONG\r\n");
  close(probe);
}

/* Random bytes and mutated requests never crash or wedge a worker: after each, PING answers. */
Test(server, random_garbage_never_hurts) {
  S = server_start(1, NULL);
  ts_rng_t g = {ts_seed("random_garbage_never_hurts")};
  static const char *const seeds[] = {"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n", "PING\r\n", "*1\r\n$4\r\nPING\r\n",
                                      "set \"a\\x41\" 'b'\r\n", "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"};
  for (int round = 0; round < 300; round++) {
    char buf[512];
    size_t n;
    if (round % 3 == 0) {
      n = 1 + ts_below(&g, sizeof buf);
      for (size_t i = 0; i < n; i++)
        buf[i] = (char)ts_below(&g, 256);
    } else {
      const char *sd = seeds[ts_below(&g, 5)];
      n = strlen(sd);
      memcpy(buf, sd, n);
      for (int k = 0; k < 1 + (int)ts_below(&g, 4); k++)
        buf[ts_below(&g, n)] = (char)ts_below(&g, 256);
    }
    int fd = conn_open(S.port);
    conn_send(fd, buf, n);
    bytes_t b = {0};
    conn_read(fd, &b, 0, 20);
    bytes_free(&b);
    close(fd);
  }
  int fd = conn_open(S.port);
  CMD_EQ(fd, "PING", "+PONG\r\n");
  close(fd);
  cr_expect_eq(kill(S.pid, 0), 0);
}

/* ---------------------------------------------------------------------------------------------- */
/* AUTH, protected mode, limits */

Test(server, auth_matches_redis) {
  S = server_start(1, "--requirepass", "pw", NULL);
  int fd = conn_open(S.port);
  CMD_EQ(fd, "FOO", "-ERR unknown command 'FOO', with args beginning with: \r\n");
  CMD_EQ(fd, "GET", "-ERR wrong number of arguments for 'get' command\r\n");
  CMD_EQ(fd, "GET k", "-NOAUTH Authentication required.\r\n");
  CMD_EQ(fd, "PING", "-NOAUTH Authentication required.\r\n");
  CMD_EQ(fd, "HELLO 3",
         "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> "
         "<pass> option can be used to authenticate the client and select the RESP protocol version at the same "
         "time\r\n");
  CMD_EQ(fd, "AUTH a b c", "-ERR syntax error\r\n");
  CMD_EQ(fd, "AUTH wrong", "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
  CMD_EQ(fd, "AUTH default wrong", "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
  CMD_EQ(fd, "HELLO 3 AUTH default", "-ERR Syntax error in HELLO option 'AUTH'\r\n");
  /* unauthenticated clients get Redis's smaller protocol limits */
  bytes_t b = raw_exchange(S.port, "*11\r\n", 5);
  cr_expect_str_eq(b.p, "-ERR Protocol error: unauthenticated multibulk length\r\n");
  cr_expect(b.eof);
  bytes_free(&b);
  b = raw_exchange(S.port, "*1\r\n$16385\r\n", 12);
  cr_expect_str_eq(b.p, "-ERR Protocol error: unauthenticated bulk length\r\n");
  bytes_free(&b);
  CMD_EQ(fd, "AUTH pw", "+OK\r\n");
  CMD_EQ(fd, "SET k v", "+OK\r\n");
  int fd2 = conn_open(S.port);
  char *h = cmd(fd2, "HELLO 2 AUTH default pw SETNAME me");
  cr_expect(!strncmp(h, "*14\r\n", 5), "%s", h);
  free(h);
  CMD_EQ(fd2, "CLIENT GETNAME", "$2\r\nme\r\n");
  CMD_EQ(fd2, "RESET", "+RESET\r\n");
  CMD_EQ(fd2, "GET k", "-NOAUTH Authentication required.\r\n");
  close(fd2);
  /* CONFIG SET requirepass reaches every worker, and a restarted one */
  CMD_EQ(fd, "CONFIG SET requirepass pw2", "+OK\r\n");
  fd2 = conn_open(S.port);
  CMD_EQ(fd2, "AUTH pw", "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
  CMD_EQ(fd2, "AUTH pw2", "+OK\r\n");
  close(fd2);
  close(fd);
}

Test(server, aclfile_users) {
  char path[300];
  snprintf(path, sizeof path, "%s/users.acl", ts_dir);
  FILE *f = fopen(path, "w");
  fputs("user default off\nuser app on >s3cret ~* &* +@all\nuser old off >x allkeys\n", f);
  fclose(f);
  S = server_start(1, "--aclfile", path, NULL);
  int fd = conn_open(S.port);
  CMD_EQ(fd, "GET k", "-NOAUTH Authentication required.\r\n");
  CMD_EQ(fd, "AUTH app wrong", "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
  CMD_EQ(fd, "AUTH old x", "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
  CMD_EQ(fd, "AUTH app s3cret", "+OK\r\n");
  CMD_EQ(fd, "GET k", "$-1\r\n");
  close(fd);
  server_stop(&S);
  /* a default user without a password: clients start logged in as it; others log in with AUTH */
  f = fopen(path, "w");
  fputs("user default on nopass\nuser app on >s3cret\n", f);
  fclose(f);
  S = server_start(1, "--aclfile", path, NULL);
  fd = conn_open(S.port);
  CMD_EQ(fd, "GET k", "$-1\r\n");
  CMD_EQ(fd, "AUTH app s3cret", "+OK\r\n");
  CMD_EQ(fd, "AUTH app nope", "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
  close(fd);
  server_stop(&S);
  /* a rule that would restrict a user is refused at start, never ignored */
  f = fopen(path, "w");
  fputs("user app on >pw ~cache:* +get\n", f);
  fclose(f);
  ts_run_t r = ts_sh("'%s' --dir '%s' --store s --port %d --aclfile '%s' 2>&1", server_bin(), ts_dir,
                     ts_free_port(), path);
  cr_expect_neq(r.status, 0);
  cr_expect(strstr(r.out, "not supported"), "%s", r.out);
  ts_run_free(&r);
}

/* Protected mode: without a password, only loopback clients are served. Needs a non-loopback
 * address on this machine to connect from. */
Test(server, protected_mode) {
  ts_run_t h = ts_sh("hostname -I 2>/dev/null");
  char ip[64] = "";
  sscanf(h.out, "%63s", ip);
  ts_run_free(&h);
  struct in_addr ia;
  if (ip[0] == 0 || inet_pton(AF_INET, ip, &ia) != 1 || (ntohl(ia.s_addr) >> 24) == 127)
    cr_skip_test("no non-loopback IPv4 address on this machine");
  S = server_start(1, "--bind", "0.0.0.0", NULL);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)S.port);
  a.sin_addr = ia;
  cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  bytes_t b = {0};
  conn_send(fd, "PING\r\n", 6);
  conn_read(fd, &b, 1, 2000);
  cr_expect(b.p && !strncmp(b.p, "-DENIED Redis is running in protected mode", 42), "%s", b.p ? b.p : "");
  bytes_free(&b);
  close(fd);
  int lo = conn_open(S.port);
  CMD_EQ(lo, "PING", "+PONG\r\n");
  CMD_EQ(lo, "CONFIG SET protected-mode no", "+OK\r\n");
  fd = socket(AF_INET, SOCK_STREAM, 0);
  cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  CMD_EQ(fd, "PING", "+PONG\r\n");
  close(fd);
  close(lo);
}

Test(server, maxclients_timeout_and_buffer_limits) {
  S = server_start(2, "--maxclients", "4", "--timeout", "1", NULL);
  int fds[4];
  for (int i = 0; i < 4; i++) {
    fds[i] = conn_open(S.port);
    CMD_EQ(fds[i], "PING", "+PONG\r\n");
  }
  /* the limit holds across the two workers */
  usleep(300000);
  int extra = conn_open(S.port);
  bytes_t b = {0};
  conn_read(extra, &b, 1, 2000);
  cr_expect_str_eq(b.p ? b.p : "", "-ERR max number of clients reached\r\n");
  bytes_free(&b);
  close(extra);
  /* idle clients go after `timeout` seconds */
  usleep(2500000);
  for (int i = 0; i < 4; i++) {
    bytes_t e = {0};
    conn_read(fds[i], &e, 1, 500);
    cr_expect(e.eof, "client %d was not closed after the idle timeout", i);
    bytes_free(&e);
    close(fds[i]);
  }
  /* query buffer limit */
  int fd = conn_open(S.port);
  CMD_EQ(fd, "CONFIG SET timeout 0", "+OK\r\n");
  CMD_EQ(fd, "CONFIG SET client-query-buffer-limit 1mb", "+OK\r\n");
  CMD_EQ(fd, "CONFIG GET client-query-buffer-limit", "*2\r\n$25\r\nclient-query-buffer-limit\r\n$7\r\n1048576\r\n");
  usleep(300000); /* the other worker picks the limit up within a cron tick */
  int big = conn_open(S.port);
  char head[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3000000\r\n";
  conn_send(big, head, strlen(head));
  static char chunk[65536];
  memset(chunk, 'x', sizeof chunk);
  int closed = 0;
  for (int i = 0; i < 40 && !closed; i++)
    closed = send(big, chunk, sizeof chunk, MSG_NOSIGNAL) < 0;
  b = (bytes_t){0};
  conn_read(big, &b, 0, 1000);
  cr_expect(closed || b.eof, "a 3 MB argument passed a 1 MB query buffer limit");
  bytes_free(&b);
  close(big);
  /* a pub/sub client that does not read is closed at the pubsub class's hard limit */
  char *ok = cmd_args(fd, "CONFIG", "SET", "client-output-buffer-limit", "pubsub 256kb 128kb 1", NULL);
  cr_expect_str_eq(ok, "+OK\r\n");
  free(ok);
  usleep(300000);
  int sub = socket(AF_INET, SOCK_STREAM, 0);
  int rcv = 4096; /* before connect, so the window stays small */
  setsockopt(sub, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  struct sockaddr_in sa = {0};
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)S.port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cr_assert_eq(connect(sub, (struct sockaddr *)&sa, sizeof sa), 0);
  CMD_EQ(sub, "SUBSCRIBE flood", "*3\r\n$9\r\nsubscribe\r\n$5\r\nflood\r\n:1\r\n");
  static char msg[8192];
  memset(msg, 'm', sizeof msg - 1);
  const char *argv[3] = {"PUBLISH", "flood", msg};
  size_t lens[3] = {7, 5, sizeof msg - 1};
  bytes_t req = {0};
  encode(&req, 3, argv, lens);
  for (int i = 0; i < 2000; i++) { /* 16 MB: more than the kernel's socket buffers hold */
    conn_send(fd, req.p, req.n);
    bytes_t r = {0};
    conn_read(fd, &r, 1, 2000);
    bytes_free(&r);
  }
  bytes_free(&req);
  usleep(300000);
  char *info = cmd(fd, "INFO stats");
  cr_expect(strstr(info, "client_output_buffer_limit_disconnections:1"), "%s", info);
  free(info);
  close(sub);
  close(fd);
}

/* ---------------------------------------------------------------------------------------------- */
/* The same store from C and from the network */

static shmd_store_t *open_store(void) {
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = ts_dir;
  shmd_store_t *s = NULL;
  int rc = shmd_open("s", &o, &s);
  cr_assert_eq(rc, 0, "%s", shmd_strerror(rc));
  return s;
}

Test(server, in_process_reader_and_network_see_each_other_at_once) {
  S = server_start(2, NULL);
  shmd_store_t *st = open_store();
  int fd = conn_open(S.port);
  for (int i = 0; i < 200; i++) {
    char line[64], val[32], buf[64];
    snprintf(line, sizeof line, "SET net%d v%d", i, i);
    CMD_EQ(fd, line, "+OK\r\n");
    size_t n = 0;
    snprintf(val, sizeof val, "v%d", i);
    snprintf(line, sizeof line, "net%d", i);
    cr_assert_eq(shmd_kv_get(st, 0, line, strlen(line), buf, sizeof buf, &n), 0, "%s", line);
    cr_assert(n == strlen(val) && !memcmp(buf, val, n));
    /* and the reverse: written in process, read over the network right away */
    snprintf(line, sizeof line, "c%d", i);
    cr_assert_eq(shmd_kv_set(st, 0, line, strlen(line), val, strlen(val), 0), 0);
    char want[64];
    snprintf(want, sizeof want, "$%zu\r\n%s\r\n", strlen(val), val);
    snprintf(line, sizeof line, "GET c%d", i);
    CMD_EQ(fd, line, want);
  }
  close(fd);
  shmd_close(st);
}

/* ---------------------------------------------------------------------------------------------- */
/* Pub/sub across workers and from the C API */

/* Opens connections until there is one on each of the two workers. */
static void one_per_worker(int port, int fds[2]) {
  fds[0] = fds[1] = -1;
  int spare[64], ns = 0;
  for (int i = 0; i < 64 && (fds[0] < 0 || fds[1] < 0); i++) {
    int fd = conn_open(port);
    int w = worker_of(fd);
    if (w >= 0 && w < 2 && fds[w] < 0)
      fds[w] = fd;
    else
      spare[ns++] = fd;
  }
  for (int i = 0; i < ns; i++)
    close(spare[i]);
  cr_assert(fds[0] >= 0 && fds[1] >= 0, "the kernel never gave a connection to both workers");
}

Test(server, mp_pubsub_across_workers_and_from_c) {
  S = server_start(2, NULL);
  int sub[2], pub[2];
  one_per_worker(S.port, sub);
  one_per_worker(S.port, pub);
  CMD_EQ(sub[0], "SUBSCRIBE news", "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n");
  CMD_EQ(sub[1], "PSUBSCRIBE n*", "*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:1\r\n");
  /* the registry counts both workers' subscribers */
  CMD_EQ(pub[0], "PUBSUB NUMSUB news", "*2\r\n$4\r\nnews\r\n:1\r\n");
  CMD_EQ(pub[1], "PUBSUB NUMPAT", ":1\r\n");
  CMD_EQ(pub[1], "PUBSUB CHANNELS", "*1\r\n$4\r\nnews\r\n");
  CMD_EQ(pub[0], "PUBLISH news m1", ":2\r\n");
  CMD_EQ(pub[1], "PUBLISH news m2", ":2\r\n");
  CMD_EQ(pub[1], "PUBLISH nothing m3", ":1\r\n");
  shmd_store_t *st = open_store();
  uint64_t n = 0;
  cr_assert_eq(shmd_kv_publish(st, "news", 4, "c4", 2, &n), 0);
  cr_expect_eq(n, 2);
  bytes_t b = {0};
  conn_read(sub[0], &b, 3, 3000);
  cr_expect_str_eq(b.p ? b.p : "",
                   "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nm1\r\n*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nm2\r\n"
                   "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nc4\r\n");
  bytes_free(&b);
  conn_read(sub[1], &b, 4, 3000);
  cr_expect_str_eq(b.p ? b.p : "",
                   "*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nm1\r\n"
                   "*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nm2\r\n"
                   "*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$7\r\nnothing\r\n$2\r\nm3\r\n"
                   "*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nc4\r\n");
  bytes_free(&b);
  /* a subscriber that goes away is no longer counted */
  close(sub[0]);
  usleep(200000);
  CMD_EQ(pub[1], "PUBSUB NUMSUB news", "*2\r\n$4\r\nnews\r\n:0\r\n");
  shmd_close(st);
  close(sub[1]);
  close(pub[0]);
  close(pub[1]);
}

/* A killed worker's subscriptions stop counting once the supervisor has replaced it. */
Test(server, crash_killed_subscriber_worker_is_forgotten) {
  S = server_start(2, NULL);
  int sub[2], probe[2];
  one_per_worker(S.port, sub);
  one_per_worker(S.port, probe);
  CMD_EQ(sub[0], "SUBSCRIBE ch", "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
  CMD_EQ(sub[1], "SUBSCRIBE ch", "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
  CMD_EQ(probe[1], "PUBLISH ch x", ":2\r\n");
  char *pidline = cmd(sub[0], "PING");
  free(pidline);
  /* find worker 0's pid from INFO on its connection */
  char *info = cmd(probe[0], "INFO server");
  char *p = strstr(info, "process_id:");
  cr_assert_not_null(p);
  pid_t w0 = atoi(p + 11);
  free(info);
  kill(w0, SIGKILL);
  usleep(1500000);
  CMD_EQ(probe[1], "PUBLISH ch y", ":1\r\n");
  close(sub[0]);
  close(sub[1]);
  close(probe[0]);
  close(probe[1]);
}

/* ---------------------------------------------------------------------------------------------- */
/* Blocking pops across workers and from the C API */

static void push_c(shmd_store_t *st, const char *line) {
  char *copy = strdup(line);
  const char *argv[16];
  size_t lens[16];
  int argc = 0;
  for (char *t = strtok(copy, " "); t && argc < 16; t = strtok(NULL, " ")) {
    argv[argc] = t;
    lens[argc++] = strlen(t);
  }
  shmd_reply_t *r = NULL;
  cr_assert_eq(shmd_kv_command(st, argc, argv, lens, &r), 0);
  cr_assert_neq(r->type, SHMD_REPLY_ERROR, "%s: %s", line, r->str);
  shmd_reply_free(r);
  free(copy);
}

/* Sends a blocking command on one worker, checks it blocks, wakes it from the other worker (or
 * from C), and compares the reply. */
static void block_case(int waiter, int pusher, shmd_store_t *st, const char *blocking, const char *push,
                       const char *want) {
  bytes_t req = {0}, b = {0};
  encode_line(&req, blocking);
  conn_send(waiter, req.p, req.n);
  bytes_free(&req);
  conn_read(waiter, &b, 1, 150);
  cr_expect_eq(b.n, 0, "%s answered before the push: %s", blocking, b.p);
  if (pusher >= 0) {
    char *r = cmd(pusher, push);
    cr_expect(r[0] == ':' || r[0] == '+', "%s: %s", push, r);
    free(r);
  } else {
    push_c(st, push);
  }
  conn_read(waiter, &b, 1, 3000);
  cr_expect_str_eq(b.p ? b.p : "<nothing>", want, "%s woken by %s%s", blocking, push, pusher < 0 ? " (C API)" : "");
  bytes_free(&b);
}

Test(server, mp_blocking_pops_across_workers_and_from_c) {
  S = server_start(2, NULL);
  int a[2];
  one_per_worker(S.port, a);
  shmd_store_t *st = open_store();
  for (int dir = 0; dir < 3; dir++) {
    /* dir 0: waiter on worker 0, pusher on worker 1; 1: the reverse; 2: pushed from C */
    int waiter = a[dir == 1], pusher = dir == 2 ? -1 : a[dir != 1];
    block_case(waiter, pusher, st, "BLPOP q1 q2 0", "RPUSH q2 x", "*2\r\n$2\r\nq2\r\n$1\r\nx\r\n");
    block_case(waiter, pusher, st, "BRPOP q1 5", "RPUSH q1 a b", "*2\r\n$2\r\nq1\r\n$1\r\nb\r\n");
    push_c(st, "DEL q1");
    block_case(waiter, pusher, st, "BLMOVE src dst RIGHT LEFT 0", "LPUSH src e", "$1\r\ne\r\n");
    block_case(waiter, pusher, st, "BRPOPLPUSH src dst 0", "LPUSH src f", "$1\r\nf\r\n");
    block_case(waiter, pusher, st, "BLMPOP 0 2 m1 m2 RIGHT COUNT 2", "RPUSH m2 1 2 3",
               "*2\r\n$2\r\nm2\r\n*2\r\n$1\r\n3\r\n$1\r\n2\r\n");
    push_c(st, "DEL m2");
    block_case(waiter, pusher, st, "BZPOPMIN z1 z2 0", "ZADD z2 5 five", "*3\r\n$2\r\nz2\r\n$4\r\nfive\r\n$1\r\n5\r\n");
    block_case(waiter, pusher, st, "BZPOPMAX z1 0", "ZADD z1 1 one 2 two", "*3\r\n$2\r\nz1\r\n$3\r\ntwo\r\n$1\r\n2\r\n");
    push_c(st, "DEL z1");
    block_case(waiter, pusher, st, "BZMPOP 0 1 z3 MIN COUNT 5", "ZADD z3 1 a 2 b",
               "*2\r\n$2\r\nz3\r\n*2\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n*2\r\n$1\r\nb\r\n$1\r\n2\r\n");
  }
  CMD_EQ(a[0], "LRANGE dst 0 -1", "*6\r\n$1\r\nf\r\n$1\r\ne\r\n$1\r\nf\r\n$1\r\ne\r\n$1\r\nf\r\n$1\r\ne\r\n");
  shmd_close(st);
}

/* Timeouts, clients served first come first served, RESP3 forms. */
Test(server, blocking_timeouts_order_and_resp3) {
  S = server_start(1, NULL);
  int c1 = conn_open(S.port), c2 = conn_open(S.port), p = conn_open(S.port);
  uint64_t t0 = now_ms();
  CMD_EQ(c1, "BLPOP nothing 0.2", "*-1\r\n");
  uint64_t took = now_ms() - t0;
  cr_expect(took >= 190 && took < 1500, "BLPOP 0.2 took %llu ms", (unsigned long long)took);
  bytes_t req = {0}, b1 = {0}, b2 = {0};
  encode_line(&req, "BLPOP q 0");
  conn_send(c1, req.p, req.n);
  usleep(50000);
  conn_send(c2, req.p, req.n);
  bytes_free(&req);
  usleep(50000);
  CMD_EQ(p, "RPUSH q a", ":1\r\n");
  conn_read(c1, &b1, 1, 2000);
  cr_expect_str_eq(b1.p ? b1.p : "", "*2\r\n$1\r\nq\r\n$1\r\na\r\n");
  conn_read(c2, &b2, 1, 200);
  cr_expect_eq(b2.n, 0, "the second client was served before its turn: %s", b2.p);
  CMD_EQ(p, "RPUSH q b", ":1\r\n");
  conn_read(c2, &b2, 1, 2000);
  cr_expect_str_eq(b2.p ? b2.p : "", "*2\r\n$1\r\nq\r\n$1\r\nb\r\n");
  bytes_free(&b1);
  bytes_free(&b2);
  /* a command pipelined behind a blocked one runs once it is served */
  req = (bytes_t){0};
  encode_line(&req, "BLPOP r 0");
  encode_line(&req, "ECHO after");
  conn_send(c1, req.p, req.n);
  bytes_free(&req);
  usleep(100000);
  CMD_EQ(p, "LPUSH r x", ":1\r\n");
  b1 = (bytes_t){0};
  conn_read(c1, &b1, 2, 2000);
  cr_expect_str_eq(b1.p ? b1.p : "", "*2\r\n$1\r\nr\r\n$1\r\nx\r\n$5\r\nafter\r\n");
  bytes_free(&b1);
  /* RESP3 */
  char *h = cmd(c2, "HELLO 3");
  free(h);
  CMD_EQ(c2, "BLPOP nothing 0.05", "_\r\n");
  CMD_EQ(p, "ZADD z 2.5 m", ":1\r\n");
  CMD_EQ(c2, "BZPOPMIN z 0", "*3\r\n$1\r\nz\r\n$1\r\nm\r\n,2.5\r\n");
  /* a client that disconnects while blocked is forgotten: the element stays */
  req = (bytes_t){0};
  encode_line(&req, "BLPOP gone 0");
  conn_send(c2, req.p, req.n);
  bytes_free(&req);
  usleep(50000);
  close(c2);
  usleep(100000);
  CMD_EQ(p, "RPUSH gone g", ":1\r\n");
  usleep(100000);
  CMD_EQ(p, "LLEN gone", ":1\r\n");
  close(c1);
  close(p);
}

/* ---------------------------------------------------------------------------------------------- */
/* Killing workers */

/* A worker killed while its clients block takes no element with it: the pushed elements stay in
 * the list and the next client gets them. */
Test(server, crash_worker_killed_while_clients_block_loses_no_element) {
  S = server_start(2, NULL);
  int a[2];
  one_per_worker(S.port, a);
  bytes_t req = {0};
  encode_line(&req, "BLPOP jobs 0");
  conn_send(a[0], req.p, req.n);
  bytes_free(&req);
  /* INFO clients on worker 1 sums what each worker publishes to the store in its cron (every
   * 100 ms): wait for worker 0's figure rather than assume one cron period (a loaded machine
   * delays it). */
  char *info = NULL;
  for (int i = 0; i < 60; i++) {
    usleep(50000);
    free(info);
    info = cmd(a[1], "INFO clients");
    if (strstr(info, "blocked_clients:1"))
      break;
  }
  cr_expect(strstr(info, "blocked_clients:1"), "%s", info);
  free(info);
  /* kill worker 0 (the one whose client blocks), then push from worker 1 */
  pid_t w[4];
  int nw = server_workers(&S, w, 4);
  cr_assert_eq(nw, 2);
  int fdw = a[1];
  char *me = cmd(fdw, "INFO server");
  pid_t w1 = atoi(strstr(me, "process_id:") + 11);
  free(me);
  pid_t w0 = w[0] == w1 ? w[1] : w[0];
  kill(w0, SIGKILL);
  usleep(200000);
  CMD_EQ(a[1], "RPUSH jobs j1 j2", ":2\r\n");
  usleep(300000);
  CMD_EQ(a[1], "LRANGE jobs 0 -1", "*2\r\n$2\r\nj1\r\n$2\r\nj2\r\n");
  CMD_EQ(a[1], "BLPOP jobs 0", "*2\r\n$4\r\njobs\r\n$2\r\nj1\r\n");
  close(a[0]);
  close(a[1]);
}

/* SIGKILLed workers are restarted, keep the port, and every acknowledged write is still there. */
Test(server, crash_supervisor_restarts_killed_workers) {
  S = server_start(2, NULL);
  int fd = conn_open(S.port);
  for (int i = 0; i < 100; i++) {
    char line[64];
    snprintf(line, sizeof line, "SET ack%d %d", i, i);
    CMD_EQ(fd, line, "+OK\r\n");
  }
  close(fd);
  for (int round = 0; round < 3; round++) {
    pid_t w[4];
    int nw = server_workers(&S, w, 4);
    cr_assert_eq(nw, 2);
    kill(w[round % 2], SIGKILL);
    usleep(500000);
    nw = server_workers(&S, w, 4);
    cr_expect_eq(nw, 2, "the supervisor did not restart the worker");
  }
  for (int k = 0; k < 8; k++) { /* connections land on both workers */
    fd = conn_open(S.port);
    for (int i = 0; i < 100; i += 7) {
      char line[64], want[64];
      snprintf(line, sizeof line, "GET ack%d", i);
      snprintf(want, sizeof want, "$%d\r\n%d\r\n", snprintf(NULL, 0, "%d", i), i);
      CMD_EQ(fd, line, want);
    }
    close(fd);
  }
  cr_expect_eq(server_stop(&S), 0);
}

/* ---------------------------------------------------------------------------------------------- */
/* Real clients: redis-cli (--pipe, --scan, --bigkeys), python3-redis, hiredis */

/* Runs a shell command (ts_sh); returns its standard output (malloc'd) and exit status. */
static char *shell(int *status, const char *fmt, ...) {
  char line[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  ts_run_t r = ts_sh("%s", line);
  *status = r.status;
  free(r.err);
  return r.out;
}

Test(server, redis_cli_pipe_scan_bigkeys) {
  S = server_start(2, NULL);
  char path[300];
  snprintf(path, sizeof path, "%s/pipe.resp", ts_dir);
  FILE *f = fopen(path, "w");
  for (int i = 0; i < 5000; i++)
    fprintf(f, "*3\r\n$3\r\nSET\r\n$%d\r\nkey:%d\r\n$%d\r\nv%d\r\n", 4 + snprintf(NULL, 0, "%d", i), i,
            1 + snprintf(NULL, 0, "%d", i), i);
  fputs("*4\r\n$5\r\nRPUSH\r\n$4\r\nlist\r\n$1\r\na\r\n$1\r\nb\r\n", f);
  fputs("*4\r\n$4\r\nHSET\r\n$4\r\nhash\r\n$1\r\nf\r\n$3\r\nval\r\n", f);
  fputs("*4\r\n$4\r\nZADD\r\n$4\r\nzset\r\n$1\r\n1\r\n$1\r\nm\r\n", f);
  fputs("*3\r\n$4\r\nSADD\r\n$3\r\nset\r\n$1\r\nx\r\n", f);
  fputs("*3\r\n$3\r\nSET\r\n$7\r\nbiggest\r\n$20\r\n01234567890123456789\r\n", f);
  fclose(f);
  int st;
  char *out = shell(&st, "redis-cli -p %d --pipe < '%s' 2>&1", S.port, path);
  cr_expect_eq(st, 0, "%s", out);
  cr_expect(strstr(out, "errors: 0, replies: 5005"), "redis-cli --pipe said: %s", out);
  free(out);
  /* --scan: every key of the pattern once (SCAN across the stripes), the same set as KEYS */
  out = shell(&st, "redis-cli -p %d --scan --pattern 'key:49*' | sort | md5sum", S.port);
  char *keys = shell(&st, "redis-cli -p %d KEYS 'key:49*' | sort | md5sum", S.port);
  cr_expect_str_eq(out, keys);
  free(out);
  free(keys);
  out = shell(&st, "redis-cli -p %d --scan --pattern 'key:49*' | wc -l", S.port);
  cr_expect_eq(atoi(out), 111, "%s", out);
  free(out);
  out = shell(&st, "redis-cli -p %d --bigkeys 2>&1", S.port);
  cr_expect_eq(st, 0, "%s", out);
  cr_expect(strstr(out, "Biggest string found '\"biggest\"' has 20 bytes"), "%s", out);
  cr_expect(strstr(out, "Biggest   list found '\"list\"' has 2 items"), "%s", out);
  cr_expect(strstr(out, "Biggest   hash found '\"hash\"' has 1 fields"), "%s", out);
  cr_expect(strstr(out, "Biggest   zset found '\"zset\"' has 1 members"), "%s", out);
  cr_expect(strstr(out, "5001 strings with"), "%s", out);
  free(out);
  /* commands on standard input: redis-cli prints the same as for a real redis-server */
  int rport = redis_start();
  const char *script = "GET key:7\\nSET key:7 v7\\nLRANGE list 0 -1\\nRPUSH list a b\\nLRANGE list 0 -1\\n"
                       "INCR key:7\\nHGETALL hash\\nZSCORE zset m\\nSELECT 3\\nDBSIZE\\nNOSUCH\\n";
  out = shell(&st, "printf '%s' | redis-cli -p %d 2>&1", script, S.port);
  char *want = shell(&st, "printf 'RPUSH list a b\\nHSET hash f val\\nZADD zset 1 m\\n' | redis-cli -p %d >/dev/null; "
                          "printf '%s' | redis-cli -p %d 2>&1", rport, script, rport);
  /* the first GET differs (the key exists here only); compare from the second line on */
  cr_expect_str_eq(strchr(out, '\n'), strchr(want, '\n'));
  free(out);
  free(want);
}

Test(server, python3_redis_client) {
  S = server_start(2, NULL);
  if (access("/usr/bin/python3", X_OK) != 0)
    cr_skip_test("no /usr/bin/python3 (Debian's, with python3-redis)");
  char path[300];
  snprintf(path, sizeof path, "%s/client.py", ts_dir);
  FILE *f = fopen(path, "w");
  fprintf(f,
          "import redis, sys, threading, time\n"
          "r = redis.Redis(port=%d, decode_responses=True)\n"
          "assert r.ping()\n"
          "assert r.set('greeting', 'hi') and r.get('greeting') == 'hi'\n"
          "assert r.incr('n') == 1 and r.incrby('n', 41) == 42\n"
          "r.hset('h', mapping={'a': '1', 'b': '2'})\n"
          "assert r.hgetall('h') == {'a': '1', 'b': '2'}\n"
          "assert r.zadd('z', {'x': 1.5, 'y': 2}) == 2 and r.zscore('z', 'x') == 1.5\n"
          "assert r.zrange('z', 0, -1, withscores=True) == [('x', 1.5), ('y', 2.0)]\n"
          "p = r.pipeline(transaction=False)\n"
          "for i in range(1000): p.set('p%%d' %% i, i)\n"
          "assert all(p.execute())\n"
          "assert r.mget('p0', 'p999', 'nope') == ['0', '999', None]\n"
          "assert r.dbsize() == 1004\n"
          "assert sorted(r.scan_iter(match='p99*')) == ['p99'] + ['p99%%d' %% i for i in range(10)]\n"
          "ps = r.pubsub(); ps.subscribe('news')\n"
          "assert ps.get_message(timeout=1)['type'] == 'subscribe'\n"
          "r2 = redis.Redis(port=%d, decode_responses=True)\n"
          "assert r2.publish('news', 'hello') == 1\n"
          "m = ps.get_message(timeout=2)\n"
          "assert m and m['data'] == 'hello', m\n"
          "threading.Timer(0.2, lambda: r2.rpush('jobs', 'j')).start()\n"
          "assert r.blpop('jobs', timeout=3) == ('jobs', 'j')\n"
          "assert r.client_setname('py') and r.client_getname() == 'py'\n"
          "assert int(r.info('keyspace')['db0']['keys']) == 1004\n"
          "assert r.config_get('maxclients') == {'maxclients': '10000'}\n"
          "try:\n"
          "    r.lpush('greeting', 'x'); sys.exit('no WRONGTYPE')\n"
          "except redis.ResponseError as e:\n"
          "    assert str(e).startswith('WRONGTYPE'), e\n"
          "print('python3-redis ok')\n",
          S.port, S.port);
  fclose(f);
  int st;
  char *out = shell(&st, "/usr/bin/python3 '%s' 2>&1", path);
  cr_expect_eq(st, 0, "%s", out);
  cr_expect(strstr(out, "python3-redis ok"), "%s", out);
  free(out);
}

#include <hiredis/hiredis.h>

Test(server, hiredis_client) {
  S = server_start(2, NULL);
  redisContext *h = redisConnect("127.0.0.1", S.port);
  cr_assert(h && !h->err, "hiredis: %s", h ? h->errstr : "no context");
  redisReply *r = redisCommand(h, "SET %s %b", "bin", "a\0b", (size_t)3);
  cr_expect_str_eq(r->str, "OK");
  freeReplyObject(r);
  r = redisCommand(h, "GET bin");
  cr_expect(r->type == REDIS_REPLY_STRING && r->len == 3 && memcmp(r->str, "a\0b", 3) == 0);
  freeReplyObject(r);
  /* a pipeline of 1000 appended commands */
  for (int i = 0; i < 1000; i++)
    redisAppendCommand(h, "RPUSH list %d", i);
  for (int i = 0; i < 1000; i++) {
    void *vr;
    cr_assert_eq(redisGetReply(h, &vr), REDIS_OK);
    r = vr;
    cr_assert_eq(r->type, REDIS_REPLY_INTEGER);
    cr_assert_eq(r->integer, i + 1);
    freeReplyObject(r);
  }
  r = redisCommand(h, "LRANGE list 998 -1");
  cr_expect(r->type == REDIS_REPLY_ARRAY && r->elements == 2 && !strcmp(r->element[1]->str, "999"));
  freeReplyObject(r);
  r = redisCommand(h, "HSET h f v");
  freeReplyObject(r);
  r = redisCommand(h, "HGETALL h");
  cr_expect(r->type == REDIS_REPLY_ARRAY && r->elements == 2);
  freeReplyObject(r);
  r = redisCommand(h, "ZADD z 3.25 m");
  freeReplyObject(r);
  r = redisCommand(h, "ZSCORE z m");
  cr_expect_str_eq(r->str, "3.25");
  freeReplyObject(r);
  r = redisCommand(h, "INCR bin");
  cr_expect(r->type == REDIS_REPLY_ERROR && !strcmp(r->str, "ERR value is not an integer or out of range"));
  freeReplyObject(r);
  redisFree(h);
}
