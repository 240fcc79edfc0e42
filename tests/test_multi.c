/* SPDX-License-Identifier: MIT */
/*
 * Tests of MULTI / EXEC / DISCARD / WATCH / UNWATCH (kv/multi.c): Redis 7.0's replies and errors,
 * WATCH against changes by the same client, by the typed API and by another process (mp_), the
 * precision of the key versions, and crash atomicity: a child running EXEC batches is SIGKILLed at
 * random moments and at crash points inside EXEC (crash_), and every batch is afterwards found
 * either whole or not at all, with nothing leaked.
 */
#include <signal.h>

#include "shmdict/kv.h"
#include "support.h"

#define MB (1024ull * 1024)

/* One line through a client state (m) or, with m NULL, through the stateless entry point. */
static shmd_reply_t *mrun(shmd_store_t *s, shmd_kv_multi_t *m, const char *line) {
  ts_args_t a = {0};
  ts_args_split(&a, line);
  shmd_reply_t *r = NULL;
  int rc = m ? shmd_kv_multi_command(m, a.argc, (const char *const *)a.argv, a.lens, &r)
             : shmd_kv_command(s, a.argc, (const char *const *)a.argv, a.lens, &r);
  ts_args_free(&a);
  cr_assert_eq(rc, 0, "%s: %s", line, shmd_strerror(rc));
  return r;
}

#define MEXPECT(s, m, line, want)                                                                  \
  do {                                                                                             \
    shmd_reply_t *r_ = mrun((s), (m), (line));                                                     \
    cr_expect_str_eq(ts_show(r_), (want), "%s -> %s", (line), ts_show(r_));                              \
    shmd_reply_free(r_);                                                                           \
  } while (0)

static void check_all(shmd_store_t *s) {
  int rc = shmd_kv_check(s);
  cr_assert_eq(rc, 0, "kv_check: %s (%s)", shmd_strerror(rc), shmd_errdetail());
  rc = shmd_alloc_check(s);
  cr_assert_eq(rc, 0, "alloc_check: %s (%s)", shmd_strerror(rc), shmd_errdetail());
}

TestSuite(multi, .init = ts_init, .fini = ts_fini, .timeout = 240);

/* ---------------------------------------------------------------------------------------------- */
/* Replies */

Test(multi, replies_as_redis) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  shmd_kv_multi_t *m;
  cr_assert_eq(shmd_kv_multi_new(s, 0, &m), 0);
  MEXPECT(s, m, "EXEC", "-ERR EXEC without MULTI");
  MEXPECT(s, m, "DISCARD", "-ERR DISCARD without MULTI");
  MEXPECT(s, m, "MULTI", "+OK");
  cr_expect_eq(shmd_kv_multi_active(m), 1);
  MEXPECT(s, m, "MULTI", "-ERR MULTI calls can not be nested");
  MEXPECT(s, m, "WATCH k", "-ERR WATCH inside MULTI is not allowed");
  MEXPECT(s, m, "SET k 1", "+QUEUED");
  MEXPECT(s, m, "INCR k", "+QUEUED");
  MEXPECT(s, m, "RPUSH k x", "+QUEUED"); /* WRONGTYPE at EXEC: the others still run */
  MEXPECT(s, m, "GET k", "+QUEUED");
  MEXPECT(s, m, "UNWATCH", "+QUEUED");
  /* nothing ran yet, for this client or another */
  MEXPECT(s, NULL, "EXISTS k", ":0");
  MEXPECT(s, m, "EXEC",
          "[+OK,:2,-WRONGTYPE Operation against a key holding the wrong kind of value,\"2\",+OK]");
  cr_expect_eq(shmd_kv_multi_active(m), 0);
  MEXPECT(s, m, "EXEC", "-ERR EXEC without MULTI");

  /* a queued command that is unknown or has the wrong arity aborts EXEC; MULTI nested does not */
  MEXPECT(s, m, "MULTI", "+OK");
  MEXPECT(s, m, "SET k 5", "+QUEUED");
  MEXPECT(s, m, "NOSUCH a", "-ERR unknown command 'NOSUCH', with args beginning with: 'a' ");
  MEXPECT(s, m, "SET k 6", "+QUEUED");
  MEXPECT(s, m, "EXEC", "-EXECABORT Transaction discarded because of previous errors.");
  MEXPECT(s, m, "GET k", "\"2\"");
  MEXPECT(s, m, "MULTI", "+OK");
  MEXPECT(s, m, "GET", "-ERR wrong number of arguments for 'get' command");
  MEXPECT(s, m, "EXEC", "-EXECABORT Transaction discarded because of previous errors.");
  MEXPECT(s, m, "MULTI", "+OK");
  MEXPECT(s, m, "MULTI", "-ERR MULTI calls can not be nested");
  MEXPECT(s, m, "SET k 7", "+QUEUED");
  MEXPECT(s, m, "EXEC", "[+OK]");
  MEXPECT(s, m, "GET k", "\"7\"");

  /* DISCARD drops the queue; an empty EXEC answers an empty array */
  MEXPECT(s, m, "MULTI", "+OK");
  MEXPECT(s, m, "SET k 8", "+QUEUED");
  MEXPECT(s, m, "DISCARD", "+OK");
  MEXPECT(s, m, "GET k", "\"7\"");
  MEXPECT(s, m, "MULTI", "+OK");
  MEXPECT(s, m, "EXEC", "[]");

  /* SELECT inside MULTI switches the database for the rest of the batch, and after it */
  MEXPECT(s, m, "MULTI", "+OK");
  MEXPECT(s, m, "SELECT 3", "+QUEUED");
  MEXPECT(s, m, "SET k three", "+QUEUED");
  MEXPECT(s, m, "SELECT 99", "+QUEUED");
  MEXPECT(s, m, "SELECT x", "+QUEUED");
  MEXPECT(s, m, "GET k", "+QUEUED");
  MEXPECT(s, m, "EXEC",
          "[+OK,+OK,-ERR DB index is out of range,-ERR value is not an integer or out of range,\"three\"]");
  cr_expect_eq(shmd_kv_multi_db(m), 3);
  MEXPECT(s, m, "SELECT 0", "+OK");
  MEXPECT(s, m, "GET k", "\"7\"");
  MEXPECT(s, m, "SELECT", "-ERR wrong number of arguments for 'select' command");

  /* the stateless entry point cannot hold a transaction and says so */
  MEXPECT(s, NULL, "EXEC", "-ERR EXEC without MULTI");
  MEXPECT(s, NULL, "DISCARD", "-ERR DISCARD without MULTI");
  MEXPECT(s, NULL, "UNWATCH", "+OK");
  shmd_reply_t *r = mrun(s, NULL, "MULTI");
  cr_expect_eq(r->type, SHMD_REPLY_ERROR);
  shmd_reply_free(r);

  /* the typed forms */
  cr_expect_eq(shmd_kv_multi_exec(m, &r), SHMD_EINVAL);
  cr_expect_eq(shmd_kv_multi_begin(m), 0);
  cr_expect_eq(shmd_kv_multi_begin(m), SHMD_EEXIST);
  cr_expect_eq(shmd_kv_watch(m, "k", 1), SHMD_EINVAL);
  MEXPECT(s, m, "INCR n", "+QUEUED");
  cr_assert_eq(shmd_kv_multi_exec(m, &r), 0);
  cr_expect_str_eq(ts_show(r), "[:1]");
  shmd_reply_free(r);
  check_all(s);
  shmd_kv_multi_free(m);
  shmd_kv_multi_free(NULL);
  shmd_close(s);
}

/* FLUSHALL inside a batch locks the databases that exist and creates none of the others. */
Test(multi, flushall_in_a_batch_creates_no_database) {
  /* the same data in two stores, flushed by a plain FLUSHALL and by one in a batch: the batch
   * must leave the store as the plain one (which creates no database) does */
  uint64_t bytes[2];
  for (int batch = 0; batch < 2; batch++) {
    shmd_store_t *s = ts_open(batch ? "b" : "a", 8 * MB, 8 * MB);
    shmd_kv_multi_t *m;
    cr_assert_eq(shmd_kv_multi_new(s, 0, &m), 0);
    MEXPECT(s, m, "SET k v", "+OK");
    MEXPECT(s, m, "SELECT 2", "+OK");
    MEXPECT(s, m, "SET k2 v", "+OK");
    if (batch) {
      MEXPECT(s, m, "MULTI", "+OK");
      MEXPECT(s, m, "FLUSHALL", "+QUEUED");
      MEXPECT(s, m, "DBSIZE", "+QUEUED");
      MEXPECT(s, m, "EXEC", "[+OK,:0]");
    } else {
      MEXPECT(s, m, "FLUSHALL", "+OK");
    }
    for (unsigned d = 0; d < 16; d++)
      cr_assert_eq(shmd_kv_drain(s, d, 0), 0);
    shmd_stats_t st;
    cr_assert_eq(shmd_stats(s, &st), 0);
    bytes[batch] = st.allocated_bytes;
    check_all(s);
    shmd_kv_multi_free(m);
    shmd_close(s);
  }
  cr_expect_eq(bytes[1], bytes[0], "a FLUSHALL batch left %llu bytes allocated, a plain FLUSHALL %llu",
               (unsigned long long)bytes[1], (unsigned long long)bytes[0]);
}

/* ---------------------------------------------------------------------------------------------- */
/* WATCH */

/* WATCH k, then `change` (run by another client, NULL: nothing), then a batch: nil when want_abort. */
static void watch_case(shmd_store_t *s, const char *setup, const char *watch, const char *change, int want_abort) {
  MEXPECT(s, NULL, "FLUSHDB", "+OK");
  if (setup)
    shmd_reply_free(mrun(s, NULL, setup));
  shmd_kv_multi_t *m;
  cr_assert_eq(shmd_kv_multi_new(s, 0, &m), 0);
  MEXPECT(s, m, watch, "+OK");
  if (change)
    shmd_reply_free(mrun(s, NULL, change));
  MEXPECT(s, m, "MULTI", "+OK");
  MEXPECT(s, m, "SET done 1", "+QUEUED");
  shmd_reply_t *r = mrun(s, m, "EXEC");
  cr_expect_str_eq(ts_show(r), want_abort ? "(nil)" : "[+OK]", "setup %s, %s, change %s: %s", setup ? setup : "-",
                   watch, change ? change : "-", ts_show(r));
  shmd_reply_free(r);
  MEXPECT(s, NULL, "EXISTS done", want_abort ? ":0" : ":1");
  shmd_kv_multi_free(m);
}

Test(multi, watch_sees_changes) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  watch_case(s, "SET k 1", "WATCH k", NULL, 0);
  watch_case(s, "SET k 1", "WATCH k", "SET k 2", 1);
  watch_case(s, "SET k 1", "WATCH k", "SET k 1", 1); /* same value: still a write, as in Redis */
  watch_case(s, "SET k 1", "WATCH k", "DEL k", 1);
  watch_case(s, "SET k 1", "WATCH k", "EXPIRE k 100", 1);
  watch_case(s, "SET k 1", "WATCH k", "APPEND k x", 1);
  watch_case(s, "SET k 1", "WATCH k", "RENAME k k2", 1);
  watch_case(s, "SET j 1", "WATCH k", "RENAME j k", 1);
  watch_case(s, "SET k 1", "WATCH k", "FLUSHDB", 1);
  watch_case(s, NULL, "WATCH k", "SET k 1", 1);         /* created */
  watch_case(s, NULL, "WATCH a b c k", "HSET k f v", 1); /* one of several */
  watch_case(s, "HSET k f v", "WATCH k", "HSET k g w", 1);
  watch_case(s, "RPUSH k a", "WATCH k", "LPOP k", 1);
  watch_case(s, "SADD k a", "WATCH k", "SADD k b", 1);
  watch_case(s, "ZADD k 1 a", "WATCH k", "ZINCRBY k 1 a", 1);
  watch_case(s, "SET k 1", "WATCH k", "GET k", 0);   /* reads change nothing */
  watch_case(s, "SET k 1", "WATCH k", "SET other 1", 0);
  watch_case(s, "SADD k a", "WATCH k", "SADD k a", 0); /* a write command that changed nothing */
  watch_case(s, NULL, "WATCH k", "DEL k", 0);          /* nothing to delete */
  watch_case(s, "SET k 1", "WATCH k", "SET k 2 NX", 0); /* refused */
  watch_case(s, "SET k 1", "WATCH k", "LPUSH k x", 0);  /* WRONGTYPE */
  watch_case(s, "SET k 1", "WATCH k", "UNWATCH", 0);    /* another client's UNWATCH */
  /* the typed API bumps versions too */
  MEXPECT(s, NULL, "FLUSHDB", "+OK");
  shmd_kv_multi_t *m;
  cr_assert_eq(shmd_kv_multi_new(s, 0, &m), 0);
  cr_assert_eq(shmd_kv_watch(m, "h", 1), 0);
  cr_assert_eq(shmd_kv_hset(s, 0, "h", 1, "f", 1, "v", 1, NULL), 0);
  MEXPECT(s, m, "MULTI", "+OK");
  MEXPECT(s, m, "SET done 1", "+QUEUED");
  MEXPECT(s, m, "EXEC", "(nil)");
  /* EXEC forgets the watches: the next batch runs */
  MEXPECT(s, m, "MULTI", "+OK");
  MEXPECT(s, m, "SET done 1", "+QUEUED");
  MEXPECT(s, m, "EXEC", "[+OK]");
  /* the client's own write aborts its EXEC too; UNWATCH forgets */
  MEXPECT(s, m, "WATCH h", "+OK");
  MEXPECT(s, m, "HSET h f w", ":0");
  MEXPECT(s, m, "MULTI", "+OK");
  MEXPECT(s, m, "EXEC", "(nil)");
  MEXPECT(s, m, "WATCH h", "+OK");
  MEXPECT(s, m, "HSET h f x", ":0");
  MEXPECT(s, m, "UNWATCH", "+OK");
  MEXPECT(s, m, "MULTI", "+OK");
  MEXPECT(s, m, "EXEC", "[]");
  /* a watched key in another database */
  MEXPECT(s, m, "SELECT 2", "+OK");
  MEXPECT(s, m, "WATCH k", "+OK");
  MEXPECT(s, m, "SELECT 0", "+OK");
  MEXPECT(s, m, "SET k 1", "+OK"); /* database 0's k: not the watched one */
  MEXPECT(s, m, "MULTI", "+OK");
  MEXPECT(s, m, "EXEC", "[]");
  MEXPECT(s, m, "SELECT 2", "+OK");
  MEXPECT(s, m, "WATCH k", "+OK");
  MEXPECT(s, m, "SET k 1", "+OK");
  MEXPECT(s, m, "MULTI", "+OK");
  MEXPECT(s, m, "EXEC", "(nil)");
  shmd_kv_multi_free(m);
  check_all(s);
  shmd_close(s);
}

/* A key that expires between WATCH and EXEC aborts it (Redis 7.0); one that was already expired
 * at WATCH does not. */
Test(multi, watch_and_expiry) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  shmd_kv_multi_t *m;
  cr_assert_eq(shmd_kv_multi_new(s, 0, &m), 0);
  MEXPECT(s, m, "SET k 1 PX 30", "+OK");
  MEXPECT(s, m, "WATCH k", "+OK");
  usleep(60 * 1000);
  MEXPECT(s, m, "MULTI", "+OK");
  MEXPECT(s, m, "SET done 1", "+QUEUED");
  MEXPECT(s, m, "EXEC", "(nil)");
  MEXPECT(s, m, "SET k 1 PX 10", "+OK");
  usleep(30 * 1000);
  MEXPECT(s, m, "WATCH k", "+OK");
  MEXPECT(s, m, "MULTI", "+OK");
  MEXPECT(s, m, "SET done 2", "+QUEUED");
  MEXPECT(s, m, "EXEC", "[+OK]");
  MEXPECT(s, m, "GET done", "\"2\"");
  shmd_kv_multi_free(m);
  shmd_close(s);
}

/* The other process of mp_watch_other_process: sets 200 other keys, and k too when *arg is 1. */
static int other_writer(ts_crash_child_t *cc) {
  int touch_k = *(const int *)cc->arg;
  shmd_store_t *c = cc->s;
  char key[32];
  for (int i = 0; i < 200; i++) {
    snprintf(key, sizeof key, "other%d", i);
    if (shmd_kv_set(c, 0, key, strlen(key), "v", 1, 0))
      return 3;
  }
  if (touch_k && shmd_kv_set(c, 0, "k", 1, "2", 1, 0))
    return 4;
  shmd_close(c);
  return 0;
}

/* Another process's change is seen; its unrelated changes are not (on 200 other keys, 4096
 * counters: a false abort here would mean the versions are not per key). */
Test(multi, mp_watch_other_process) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  shmd_kv_multi_t *m;
  cr_assert_eq(shmd_kv_multi_new(s, 0, &m), 0);
  MEXPECT(s, m, "SET k 1", "+OK");
  for (int round = 0; round < 2; round++) {
    MEXPECT(s, m, "WATCH k", "+OK");
    int touch_k = round == 1;
    ts_crash_run(NULL,
                 &(ts_crash_spec_t){.what = "the other writer", .fn = other_writer, .arg = &touch_k, .store = "t",
                                    .opts = ts_opts(8 * MB, 8 * MB), .end = TS_END_EXIT0},
                 NULL);
    MEXPECT(s, m, "MULTI", "+OK");
    MEXPECT(s, m, "INCR n", "+QUEUED");
    MEXPECT(s, m, "EXEC", round == 0 ? "[:1]" : "(nil)");
  }
  shmd_kv_multi_free(m);
  check_all(s);
  shmd_close(s);
}

/* Two processes each run WATCH/GET/MULTI/SET n+1/EXEC loops on one counter: optimistic locking
 * must make every successful EXEC count exactly once. */
enum { COUNTER_PROCS = 2, COUNTER_INCS = 300 };

static int counter_child(ts_crash_child_t *cc) {
  shmd_store_t *c = cc->s;
  shmd_kv_multi_t *m = NULL;
  if (shmd_kv_multi_new(c, 0, &m))
    return 2;
  for (int done = 0; done < COUNTER_INCS;) {
    char buf[32];
    size_t len;
    if (shmd_kv_watch(m, "ctr", 3) || shmd_kv_get(c, 0, "ctr", 3, buf, sizeof buf - 1, &len))
      return 3;
    buf[len] = 0;
    char next[32];
    snprintf(next, sizeof next, "%lld", atoll(buf) + 1);
    const char *argv[] = {"SET", "ctr", next};
    size_t lens[] = {3, 3, strlen(next)};
    shmd_reply_t *r = NULL;
    if (shmd_kv_multi_begin(m) || shmd_kv_multi_command(m, 3, argv, lens, &r))
      return 4;
    shmd_reply_free(r);
    if (shmd_kv_multi_exec(m, &r))
      return 5;
    if (r->type == SHMD_REPLY_ARRAY)
      done++;
    else if (r->type != SHMD_REPLY_NIL)
      return 6;
    shmd_reply_free(r);
  }
  shmd_kv_multi_free(m);
  shmd_close(c);
  return 0;
}

Test(multi, mp_watch_counter) {
  shmd_store_t *s = ts_open("t", 8 * MB, 8 * MB);
  MEXPECT(s, NULL, "SET ctr 0", "+OK");
  ts_crash_proc_t *pr[COUNTER_PROCS];
  for (int p = 0; p < COUNTER_PROCS; p++)
    pr[p] = ts_crash_start(NULL, &(ts_crash_spec_t){.what = p ? "counter 1" : "counter 0", .fn = counter_child,
                                                    .store = "t", .opts = ts_opts(8 * MB, 8 * MB),
                                                    .end = TS_END_EXIT0});
  ts_crash_wait_all(pr, COUNTER_PROCS);
  for (int p = 0; p < COUNTER_PROCS; p++)
    ts_crash_finish(pr[p], NULL);
  char want[32];
  snprintf(want, sizeof want, "\"%d\"", COUNTER_PROCS * COUNTER_INCS);
  MEXPECT(s, NULL, "GET ctr", want);
  check_all(s);
  shmd_close(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* Crash atomicity */

/* Batch i: SET a i, SET b i, INCR cnt, RPUSH l i, HSET h f i, SADD big m0..m59 then DEL big (a
 * garbage drain after the commit), ZADD z i m<i>, SET c<i> i. All or nothing. */
static int crash_child(ts_crash_child_t *cc) {
  shmd_store_t *s = cc->s;
  shmd_kv_multi_t *m = NULL;
  if (shmd_kv_multi_new(s, 0, &m))
    return 2;
  char line[2048];
  for (uint32_t i = 1;; i++) {
    const char *fmt[] = {"SET a %u", "SET b %u", "INCR cnt", "RPUSH l %u", "HSET h f %u", NULL, "DEL big",
                         "ZADD z %u m%u", "SET c%u x"};
    shmd_reply_t *r = NULL;
    const char *mu[] = {"MULTI"};
    size_t ml[] = {5};
    if (shmd_kv_multi_command(m, 1, mu, ml, &r))
      return 3;
    shmd_reply_free(r);
    for (size_t k = 0; k < sizeof fmt / sizeof fmt[0]; k++) {
      if (fmt[k] == NULL) {
        size_t pos = (size_t)snprintf(line, sizeof line, "SADD big");
        for (int e = 0; e < 60; e++)
          pos += (size_t)snprintf(line + pos, sizeof line - pos, " m%d", e);
      } else {
        snprintf(line, sizeof line, fmt[k], i, i);
      }
      ts_args_t a = {0};
      ts_args_split(&a, line);
      int rc = shmd_kv_multi_command(m, a.argc, (const char *const *)a.argv, a.lens, &r);
      ts_args_free(&a);
      if (rc || r->type != SHMD_REPLY_STATUS)
        return 4;
      shmd_reply_free(r);
    }
    if (shmd_kv_multi_exec(m, &r) || r->type != SHMD_REPLY_ARRAY)
      return 5;
    shmd_reply_free(r);
    ts_crash_report(cc, &i);
  }
}

/* on_rec: the number of the last batch reported done. */
static void take_batch(const void *rec, void *arg) { memcpy(arg, rec, sizeof(uint32_t)); }

static long long get_int(shmd_store_t *s, const char *line) {
  shmd_reply_t *r = mrun(s, NULL, line);
  long long v = r->type == SHMD_REPLY_NIL ? 0 : r->type == SHMD_REPLY_INTEGER ? r->integer : atoll(r->str);
  shmd_reply_free(r);
  return v;
}

static void crash_verify(shmd_store_t *s, uint32_t done, long long before) {
  long long a = get_int(s, "GET a"), b = get_int(s, "GET b"), cnt = get_int(s, "GET cnt") - before;
  long long h = get_int(s, "HGET h f"), llen = get_int(s, "LLEN l") - before, zc = get_int(s, "ZCARD z") - before;
  long long keys = get_int(s, "DBSIZE");
  cr_assert(a == b && b == h, "a %lld b %lld h %lld", a, b, h);
  cr_assert(cnt == a && llen == a && zc == a, "batch %lld: cnt %lld llen %lld zcard %lld", a, cnt, llen, zc);
  cr_assert(a == done || a == done + 1, "batch %lld found, %u reported", a, done);
  cr_assert_eq(get_int(s, "EXISTS big"), 0);
  /* a, b, cnt, l, h, z and one c<i> per batch run (of this round and the ones before) */
  char line[64];
  snprintf(line, sizeof line, "EXISTS c%lld", a);
  cr_assert_eq(a ? get_int(s, line) : 0, a ? 1 : 0);
  snprintf(line, sizeof line, "EXISTS c%lld", a + 1);
  cr_assert_eq(get_int(s, line), 0, "batch %lld left a key of the next batch", a);
  (void)keys;
}

Test(multi, crash_exec_is_atomic) {
  int rounds = getenv("SHMDICT_MULTI_CRASH_ROUNDS") ? atoi(getenv("SHMDICT_MULTI_CRASH_ROUNDS")) : 60;
  ts_crash_t t;
  ts_crash_begin(&t, "multi.crash_exec_is_atomic");
  shmd_store_t *s0 = ts_open("t", 16 * MB, 16 * MB);
  MEXPECT(s0, NULL, "SET warm x", "+OK");
  MEXPECT(s0, NULL, "FLUSHDB", "+OK");
  cr_assert_eq(shmd_kv_drain(s0, 0, 0), 0);
  shmd_stats_t st0;
  cr_assert_eq(shmd_stats(s0, &st0), 0);
  shmd_close(s0);
  static const char *points[] = {"kv.exec.command", "kv.exec.commit", "hash.*", "list.*", "kv.drain.step"};
  for (int round = 0; round < rounds; round++) {
    /* each round starts from an empty database, so counts compare with the batch number */
    shmd_store_t *s = ts_open("t", 16 * MB, 16 * MB);
    MEXPECT(s, NULL, "FLUSHDB", "+OK");
    shmd_close(s);
    int use_point = round % 2 == 1;
    char pointbuf[64];
    if (use_point)
      snprintf(pointbuf, sizeof pointbuf, "%s:%u", points[ts_below(&t.rng, 5)], (unsigned)(1 + ts_below(&t.rng, 200)));
    uint32_t done = 0;
    ts_crash_spec_t sp = {.what = "the MULTI/EXEC runner", .fn = crash_child, .store = "t",
                          .opts = ts_opts(16 * MB, 16 * MB), .end = TS_END_KILLED, .rec_size = sizeof(uint32_t),
                          .on_rec = take_batch, .rec_arg = &done};
    ts_crash_point_or_window(&sp, use_point ? pointbuf : NULL, 300000, 2000, 2000 + 39999);
    ts_crash_run(&t, &sp, NULL);
    cr_log_info("round %d: %u batches reported%s%s", round, done, use_point ? ", crash point " : "",
                use_point ? pointbuf : "");
    s = ts_crash_open("t", 16 * MB, 16 * MB);
    check_all(s);
    crash_verify(s, done, 0);
    cr_assert_eq(shmd_kv_drain(s, 0, 0), 0);
    check_all(s);
    shmd_close(s);
  }
  ts_crash_end(&t);
  /* nothing leaked: after a FLUSHDB and a full drain the store holds what it held at the start */
  shmd_store_t *s = ts_open("t", 16 * MB, 16 * MB);
  MEXPECT(s, NULL, "FLUSHDB", "+OK");
  cr_assert_eq(shmd_kv_drain(s, 0, 0), 0);
  check_all(s);
  shmd_stats_t st1;
  cr_assert_eq(shmd_stats(s, &st1), 0);
  cr_expect_eq(st1.allocated_bytes, st0.allocated_bytes, "%llu bytes allocated, %llu at the start",
               (unsigned long long)st1.allocated_bytes, (unsigned long long)st0.allocated_bytes);
  shmd_close(s);
}
