/* SPDX-License-Identifier: MIT */
/*
 * Durability (kv/changelog.c, persist/): the change log's propagation forms, what is and is not
 * logged, restore equal to the store, torn tails, hostile log files (random mutations: a clear
 * error or a reported truncation, never a crash; run under ASan in the sanitizer build), a real
 * redis-server loading the file, and the crash test: writers and the persister SIGKILLed at random
 * moments, then the store deleted and restored, holding every write acknowledged under fsync always.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>

#include "kv/changelog.h"
#include "tests/support.h"

#define MB (1u << 20)

static char logdir[300];

static void setup(void) {
  ts_init();
  snprintf(logdir, sizeof logdir, "%s/log", ts_dir);
}

TestSuite(aof, .init = setup, .fini = ts_fini);

/* ---------------------------------------------------------------------------------------------- */
/* Helpers */

static shmd_persister_t *start(shmd_store_t *s, int fsync) {
  shmd_persist_opts_t o = {.dir = logdir, .fsync = fsync, .ring_bytes = 1 * MB};
  shmd_persister_t *p = NULL;
  cr_assert_eq(shmd_persist_start(s, &o, &p), 0, "%s", shmd_errdetail());
  /* wait for the base: logging on */
  for (int i = 0; i < 5000; i++) {
    shmd__aof_t *a = NULL;
    if (shmd__aof_find(s, &a) == 0 && a && __atomic_load_n(&a->enabled, __ATOMIC_ACQUIRE))
      return p;
    ts_sleep_us(1000);
  }
  cr_assert_fail("the persister did not turn logging on");
  return p;
}

static char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "open %s", path);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)len + 1);
  cr_assert_eq(fread(b, 1, (size_t)len, f), (size_t)len);
  b[len] = 0;
  fclose(f);
  *n = (size_t)len;
  return b;
}

static void spit(const char *path, const char *b, size_t n) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  cr_assert_eq(fwrite(b, 1, n, f), n);
  fclose(f);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The keyspace of every database as sorted lines "db key type value expire". */
static char *canon(shmd_store_t *s) {
  size_t cap = 1 << 16, n = 0;
  char *out = malloc(cap);
  out[0] = 0;
  for (unsigned db = 0; db < SHMD_KV_DATABASES; db++) {
    shmd_reply_t *keys = ts_kv(s, db, "KEYS *");
    char **lines = calloc(keys->nelems + 1, sizeof *lines);
    for (size_t i = 0; i < keys->nelems; i++) {
      const char *k = keys->elems[i].str;
      shmd_reply_t *t = ts_kvf(s, db, "TYPE %s", k);
      char cmd[600];
      const char *ty = t->str;
      if (strcmp(ty, "string") == 0)
        snprintf(cmd, sizeof cmd, "GET %s", k);
      else if (strcmp(ty, "list") == 0)
        snprintf(cmd, sizeof cmd, "LRANGE %s 0 -1", k);
      else if (strcmp(ty, "hash") == 0)
        snprintf(cmd, sizeof cmd, "HGETALL %s", k);
      else if (strcmp(ty, "set") == 0)
        snprintf(cmd, sizeof cmd, "SMEMBERS %s", k);
      else
        snprintf(cmd, sizeof cmd, "ZRANGE %s 0 -1 WITHSCORES", k);
      shmd_reply_t *v = ts_kv(s, db, cmd);
      shmd_reply_t *e = ts_kvf(s, db, "PEXPIRETIME %s", k);
      int sorted = strcmp(ty, "set") == 0 || strcmp(ty, "hash") == 0;
      const char *shown = sorted ? ts_show_sorted(v) : ts_show(v);
      size_t l = strlen(shown) + strlen(k) + 64;
      lines[i] = malloc(l);
      snprintf(lines[i], l, "%u %s %s %s %lld", db, k, ty, shown, (long long)e->integer);
      shmd_reply_free(t);
      shmd_reply_free(v);
      shmd_reply_free(e);
    }
    qsort(lines, keys->nelems, sizeof *lines, cmp_str);
    for (size_t i = 0; i < keys->nelems; i++) {
      size_t l = strlen(lines[i]);
      while (n + l + 2 > cap)
        out = realloc(out, cap *= 2);
      memcpy(out + n, lines[i], l);
      n += l;
      out[n++] = '\n';
      out[n] = 0;
      free(lines[i]);
    }
    free(lines);
    shmd_reply_free(keys);
  }
  return out;
}

static shmd_store_t *restored(const char *name, const char *from, shmd_restore_report_t *rep) {
  shmd_store_t *s = ts_open(name, 4 * MB, 4 * MB);
  int rc = shmd_restore(s, from, rep, NULL, NULL);
  cr_assert_eq(rc, 0, "restore: %s (%s)", shmd_strerror(rc), shmd_errdetail());
  return s;
}

static char *log_text(size_t *n) {
  char path[400];
  snprintf(path, sizeof path, "%s/%s", logdir, SHMD_AOF_FILE);
  return slurp(path, n);
}

/* ---------------------------------------------------------------------------------------------- */
/* Forms and round trips */

static const char *workload[] = {
    "SET s1 hello",         "APPEND s1 world",       "INCRBYFLOAT f 1.25",  "INCRBYFLOAT f 0.5",
    "HSET h a 1 b 2",       "HINCRBYFLOAT h a 0.5",  "SADD st a b c d e",   "SPOP st",
    "SPOP st 2",            "SET e1 v EX 1000",      "SETEX e2 1000 v",     "PSETEX e3 1000000 v",
    "SET e4 v",             "EXPIRE e4 500",         "PEXPIRE e4 600000",   "PERSIST e1",
    "GETEX e2 PX 99999",    "SET g v",               "GETDEL g",            "RPUSH l a b c d",
    "LPOP l",               "LMOVE l l2 LEFT RIGHT", "ZADD z 1 a 2 b 3 c",  "ZINCRBY z 5 a",
    "ZPOPMIN z",            "DEL nothing",           "SET n 10",            "INCRBY n 5",
    "RENAME n n2",          "SINTERSTORE st2 st st", "SET x 1 NX",          "SET x 2 XX EX 100",
};

/* The log holds binary payloads (RESTORE): search all n bytes, not up to a NUL. */
static const char *in_log(const char *b, size_t n, const char *what) { return memmem(b, n, what, strlen(what)); }

Test(aof, forms_and_round_trip) {
  shmd_store_t *s = ts_open("src", 8 * MB, 8 * MB);
  ts_kv_do(s, 0, "SET before 1"); /* in the base */
  shmd_persister_t *p = start(s, SHMD_AOF_FSYNC_NO);
  for (size_t i = 0; i < sizeof workload / sizeof *workload; i++)
    shmd_reply_free(ts_kv(s, 0, workload[i]));
  ts_kv_do(s, 3, "SET indb3 yes");
  /* RESTORE with a relative TTL is logged with the absolute one (ABSTTL); COPY shares */
  shmd_reply_t *d = ts_kv(s, 0, "DUMP h");
  cr_assert_eq(d->type, SHMD_REPLY_BULK);
  const char *rv[] = {"RESTORE", "hr", "500000", d->str};
  size_t rl[] = {7, 2, 6, d->len};
  shmd_reply_t *rr = NULL;
  cr_assert_eq(shmd_kv_command_db(s, 0, 4, rv, rl, &rr), 0);
  cr_assert_str_eq(ts_show(rr), "+OK");
  shmd_reply_free(rr);
  shmd_reply_free(d);
  ts_kv_do(s, 0, "COPY hr hc");
  ts_kv_do(s, 0, "HSET hc a 7");
  /* typed C API */
  cr_assert_eq(shmd_kv_set(s, 0, "t1", 2, "v1", 2, 0), 0);
  int created;
  cr_assert_eq(shmd_kv_hset(s, 0, "th", 2, "f", 1, "v", 1, &created), 0);
  cr_assert_eq(shmd_kv_zadd(s, 0, "tz", 2, 0.1, "m", 1, NULL), 0);
  cr_assert_eq(shmd_kv_set(s, 0, "t2", 2, "v2", 2, 0), 0);
  cr_assert_eq(shmd_kv_del(s, 0, "t1", 2), 0);
  /* a caller's transaction of two commands: one record, MULTI ... EXEC */
  shmd_tx_t *tx;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  ts_kv_do(s, 0, "SET c1 1");
  ts_kv_do(s, 5, "SET c2 2");
  cr_assert_eq(shmd_tx_commit(tx), 0);
  cr_assert_eq(shmd_persist_stop(p), 0, "%s", shmd_errdetail());

  size_t n;
  char *b = log_text(&n);
  cr_expect_null(in_log(b, n, "SPOP"), "SPOP is logged as SREM");
  cr_expect_not_null(in_log(b, n, "$4\r\nSREM\r\n"));
  cr_expect_null(in_log(b, n, "INCRBYFLOAT"), "INCRBYFLOAT is logged as SET KEEPTTL");
  cr_expect_not_null(in_log(b, n, "$7\r\nKEEPTTL\r\n"));
  cr_expect_null(in_log(b, n, "$6\r\nEXPIRE\r\n"), "relative expiries are logged as absolute");
  cr_expect_null(in_log(b, n, "SETEX"));
  cr_expect_null(in_log(b, n, "$2\r\nEX\r\n"));
  cr_expect_not_null(in_log(b, n, "$9\r\nPEXPIREAT\r\n"));
  cr_expect_not_null(in_log(b, n, "$4\r\nPXAT\r\n"));
  cr_expect_null(in_log(b, n, "GETDEL"));
  cr_expect_not_null(in_log(b, n, "#shmdict base=1\r\n"));
  cr_expect_not_null(in_log(b, n, "$6\r\nABSTTL\r\n"), "RESTORE's relative TTL is logged as an absolute one");
  cr_expect_null(in_log(b, n, "$6\r\n500000\r\n"));
  cr_expect_not_null(in_log(b, n, "$5\r\nMULTI\r\n"), "the caller's transaction is one MULTI record");
  free(b);

  shmd_restore_report_t rep;
  shmd_store_t *r = restored("dst", logdir, &rep);
  cr_expect_eq(rep.truncated, 0);
  cr_expect_eq(rep.errors, 0, "no command of the log answers an error");
  char *a = canon(s), *c = canon(r);
  cr_expect_str_eq(c, a, "the restored keyspace equals the store's");
  cr_expect_not_null(strstr(a, "3 indb3"));
  cr_expect_not_null(strstr(a, "0 t2 "));
  free(a);
  free(c);
  shmd_close(r);
  shmd_close(s);
}

/* Errors, aborted transactions and reads leave no record. */
Test(aof, only_committed_changes_are_logged) {
  shmd_store_t *s = ts_open("src", 8 * MB, 8 * MB);
  shmd_persister_t *p = start(s, SHMD_AOF_FSYNC_NO);
  ts_kv_do(s, 0, "SET str v");
  shmd_reply_free(ts_kv(s, 0, "LPUSH str wrongtype1")); /* WRONGTYPE */
  shmd_reply_free(ts_kv(s, 0, "SET nx1 a"));
  shmd_reply_free(ts_kv(s, 0, "SET nx1 bbb NX")); /* not done */
  shmd_reply_free(ts_kv(s, 0, "GET str"));
  shmd_tx_t *tx;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  ts_kv_do(s, 0, "SET aborted1 1");
  shmd_tx_abort(tx);
  cr_assert_eq(shmd_persist_stop(p), 0);
  size_t n;
  char *b = log_text(&n);
  cr_expect_null(strstr(b, "wrongtype1"));
  cr_expect_null(strstr(b, "aborted1"));
  cr_expect_null(strstr(b, "$3\r\nGET\r\n"));
  cr_expect_null(strstr(b, "bbb"), "a SET NX that did nothing is not logged");
  cr_expect_not_null(strstr(b, "nx1"));
  free(b);
  shmd_close(s);
}

/* A key that lazy expiry deletes (in a read) is logged as DEL, and replay does not expire. */
Test(aof, lazy_expiry_is_logged_as_del) {
  shmd_store_t *s = ts_open("src", 8 * MB, 8 * MB);
  shmd_persister_t *p = start(s, SHMD_AOF_FSYNC_NO);
  ts_kv_do(s, 0, "SET gone v PX 30");
  ts_kv_do(s, 0, "SET stays v PX 100000000");
  ts_sleep_us(60000);
  shmd_reply_t *r = ts_kv(s, 0, "GET gone");
  cr_assert_eq(r->type, SHMD_REPLY_NIL);
  shmd_reply_free(r);
  cr_assert_eq(shmd_persist_stop(p), 0);
  size_t n;
  char *b = log_text(&n);
  cr_expect_not_null(strstr(b, "$3\r\nDEL\r\n$4\r\ngone\r\n"));
  free(b);
  shmd_restore_report_t rep;
  shmd_store_t *d = restored("dst", logdir, &rep);
  char *a = canon(s), *c = canon(d);
  cr_expect_str_eq(c, a);
  free(a);
  free(c);
  shmd_close(d);
  shmd_close(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* Torn tails and hostile files */

static char *make_log(size_t *n) {
  shmd_store_t *s = ts_open("src", 8 * MB, 8 * MB);
  ts_kv_do(s, 0, "HSET base f v");
  shmd_persister_t *p = start(s, SHMD_AOF_FSYNC_NO);
  for (int i = 0; i < 40; i++)
    shmd_reply_free(ts_kvf(s, (unsigned)i % 3, "RPUSH list%d a%d b c", i % 5, i));
  shmd_tx_t *tx;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  ts_kv_do(s, 0, "SET m1 1");
  ts_kv_do(s, 1, "SET m2 2");
  cr_assert_eq(shmd_tx_commit(tx), 0);
  cr_assert_eq(shmd_persist_stop(p), 0);
  shmd_close(s);
  return log_text(n);
}

Test(aof, torn_tail_is_cut_at_the_last_complete_record) {
  size_t n;
  char *b = make_log(&n);
  char cut[400];
  snprintf(cut, sizeof cut, "%s/cut.aof", ts_dir);
  size_t from = n > 300 ? n - 300 : 0;
  int cuts = 0;
  for (size_t len = from; len <= n; len += 5) {
    spit(cut, b, len);
    shmd_restore_report_t rep;
    char name[32];
    snprintf(name, sizeof name, "t%zu", len);
    shmd_store_t *d = restored(name, cut, &rep);
    cr_assert_leq(rep.valid_bytes, len);
    cr_assert_eq(rep.truncated, rep.valid_bytes < len, "cut at %zu: valid %llu, truncated %d", len,
                 (unsigned long long)rep.valid_bytes, rep.truncated);
    cuts += rep.truncated;
    /* the prefix up to valid_bytes restores to the same state, without a truncation */
    spit(cut, b, rep.valid_bytes);
    shmd_restore_report_t rep2;
    snprintf(name, sizeof name, "u%zu", len);
    shmd_store_t *e = restored(name, cut, &rep2);
    cr_assert_eq(rep2.truncated, 0);
    char *x = canon(d), *y = canon(e);
    cr_assert_str_eq(x, y);
    free(x);
    free(y);
    shmd_close(d);
    shmd_close(e);
    char dir[400];
    snprintf(dir, sizeof dir, "%s/t%zu", ts_dir, len);
    ts_rmtree(dir);
    snprintf(dir, sizeof dir, "%s/u%zu", ts_dir, len);
    ts_rmtree(dir);
  }
  cr_expect_gt(cuts, 0);
  free(b);
}

Test(aof, hostile_files_give_an_error_never_a_crash) {
  size_t n;
  char *b = make_log(&n);
  ts_rng_t g = {ts_seed("aof.hostile")};
  char path[400];
  snprintf(path, sizeof path, "%s/bad.aof", ts_dir);
  shmd_store_t *d = ts_open("dst", 8 * MB, 8 * MB);
  char *m = malloc(n + 64);
  static const char *inserts[] = {"$99999999999999\r\n", "*99999999\r\n",      "$-1\r\n",
                                  "*0\r\n",              "#\r\n",              "*1\r\n$4\r\nEXEC\r\n",
                                  "*1\r\n$5\r\nMULTI\r\n", "*2\r\n$6\r\nSELECT\r\n$2\r\n99\r\n"};
  int corrupt = 0, ok = 0;
  for (int round = 0; round < 600; round++) {
    size_t len = n;
    memcpy(m, b, n);
    int kind = (int)ts_below(&g, 4);
    if (kind == 0) { /* bit flips */
      for (int k = 0, flips = 1 + (int)ts_below(&g, 4); k < flips; k++)
        m[ts_below(&g, len)] ^= (char)(1 << ts_below(&g, 8));
    } else if (kind == 1) { /* a random byte */
      m[ts_below(&g, len)] = (char)ts_below(&g, 256);
    } else if (kind == 2) { /* truncation */
      len = ts_below(&g, n);
    } else { /* a hostile item spliced in */
      const char *ins = inserts[ts_below(&g, sizeof inserts / sizeof *inserts)];
      size_t at = ts_below(&g, n), il = strlen(ins);
      memcpy(m + at, ins, il);
      memcpy(m + at + il, b + at, n - at < 64 - il ? n - at : 64 - il);
      len = at + il + (n - at < 64 - il ? n - at : 64 - il);
    }
    spit(path, m, len);
    shmd_restore_report_t rep;
    int rc = shmd_restore(d, path, &rep, NULL, NULL);
    cr_assert(rc == 0 || rc == SHMD_ECORRUPT, "round %d (kind %d): %s (%s)", round, kind, shmd_strerror(rc),
              shmd_errdetail());
    if (rc == SHMD_ECORRUPT) {
      cr_assert(strlen(shmd_errdetail()) > 0, "a damaged log names what is wrong");
      corrupt++;
    } else {
      ok++;
    }
  }
  cr_assert_eq(shmd_kv_check(d), 0, "the store stays consistent");
  cr_log_info("hostile: %d refused as damaged, %d applied (possibly truncated)", corrupt, ok);
  cr_expect_gt(corrupt, 0);
  free(m);
  free(b);
  shmd_close(d);
}

/* ---------------------------------------------------------------------------------------------- */
/* A real redis-server loads the file; redis-check-aof accepts it */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
  char cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  return system(cmd);
}

Test(aof, redis_loads_the_log) {
  if (sh("command -v redis-server >/dev/null 2>&1 && command -v redis-check-aof >/dev/null 2>&1") != 0)
    cr_skip_test("redis-server / redis-check-aof not installed (scripts/setup.sh)");
  shmd_store_t *s = ts_open("src", 8 * MB, 8 * MB);
  ts_kv_do(s, 0, "RPUSH before x y");
  shmd_persister_t *p = start(s, SHMD_AOF_FSYNC_EVERYSEC);
  for (size_t i = 0; i < sizeof workload / sizeof *workload; i++)
    shmd_reply_free(ts_kv(s, 0, workload[i]));
  ts_kv_do(s, 2, "SET two 2");
  cr_assert_eq(shmd_persist_stop(p), 0);
  cr_expect_eq(sh("redis-check-aof %s/%s 2>&1 | grep -q 'is valid'", logdir, SHMD_AOF_FILE), 0,
               "redis-check-aof accepts the log");
  int port = 20000 + (int)(getpid() % 20000);
  cr_assert_eq(sh("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly yes --dir %s --appendfilename %s "
                  "--daemonize yes --pidfile %s/redis.pid --logfile %s/redis.log",
                  port, logdir, SHMD_AOF_FILE, ts_dir, ts_dir),
               0);
  int up = 0;
  for (int i = 0; i < 200 && !up; i++) {
    up = sh("redis-cli -p %d PING 2>/dev/null | grep -q PONG", port) == 0;
    if (!up)
      ts_sleep_us(50000);
  }
  cr_assert(up, "redis-server loaded the log and answers");
  for (unsigned db = 0; db < 3; db++) {
    shmd_reply_t *keys = ts_kv(s, db, "KEYS *");
    cr_expect_eq(sh("test \"$(redis-cli -p %d -n %u DBSIZE)\" = %zu", port, db, keys->nelems), 0,
                 "db %u holds %zu keys in redis too", db, keys->nelems);
    shmd_reply_free(keys);
  }
  cr_expect_eq(sh("test \"$(redis-cli -p %d GET f)\" = 1.75", port), 0, "INCRBYFLOAT's value");
  cr_expect_eq(sh("test \"$(redis-cli -p %d LRANGE before 0 -1 | tr '\\n' ,)\" = x,y,", port), 0, "the base's list");
  cr_expect_eq(sh("test \"$(redis-cli -p %d SCARD st)\" = 2", port), 0, "SPOP's effect");
  sh("redis-cli -p %d SHUTDOWN NOSAVE >/dev/null 2>&1", port);
  shmd_close(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* The crash test: writers and the persister killed at random; restore holds every acknowledged
 * write (fsync always) */

typedef struct {
  uint32_t round, i;
} ack_t;

typedef struct {
  uint32_t *acked; /* per round: writes 0 .. acked - 1 were acknowledged */
  uint32_t rounds;
} model_t;

static void on_ack(const void *rec, void *arg) {
  const ack_t *a = rec;
  model_t *m = arg;
  if (a->round < m->rounds && a->i + 1 > m->acked[a->round])
    m->acked[a->round] = a->i + 1;
}

static uint32_t cur_round;

static int writer(ts_crash_child_t *c) {
  for (uint32_t i = 0;; i++) {
    char k[32], v[32];
    int kl = snprintf(k, sizeof k, "r%u:%u", cur_round, i), vl = snprintf(v, sizeof v, "%u", i * 7);
    const char *av[3] = {"SET", k, v};
    size_t al[3] = {3, (size_t)kl, (size_t)vl};
    shmd_reply_t *r = NULL;
    int rc = shmd_kv_command_db(c->s, 3, 3, av, al, &r);
    if (rc == 0 && r->type == SHMD_REPLY_STATUS) {
      ack_t a = {cur_round, i};
      ts_crash_report(c, &a);
    }
    shmd_reply_free(r);
    if (rc != 0 && rc != SHMD_EBUSY)
      return 3;
  }
}

static int persister(ts_crash_child_t *c) {
  shmd_persist_opts_t o = {.dir = logdir, .fsync = SHMD_AOF_FSYNC_ALWAYS, .ring_bytes = 1 * MB};
  static volatile int stop;
  int rc = shmd_persist_run(c->s, &o, &stop);
  return rc ? 4 : 0;
}

Test(aof, crash_writers_and_persister_always, .timeout = 900) {
  ts_crash_t t;
  ts_crash_begin(&t, "aof.crash_writers_and_persister_always");
  shmd_store_t *s = ts_open("crash", 8 * MB, 8 * MB);
  ts_kv_do(s, 0, "SET base 1");
  shmd_close(s);
  const uint32_t rounds = 320;
  model_t m = {calloc(rounds, sizeof(uint32_t)), rounds};
  ts_crash_spec_t ps = {.what = "the persister", .fn = persister, .store = "crash", .opts = ts_opts(8 * MB, 8 * MB),
                        .end = TS_END_EXIT0_OR_KILLED, .timeout_ms = 600000};
  ts_crash_proc_t *pp = ts_crash_start(&t, &ps);
  int writer_kills = 0, persister_kills = 0;
  for (uint32_t round = 0; round < rounds; round++) {
    cur_round = round;
    if (ts_below(&t.rng, 3) == 0) /* kill the persister too, at a random moment of this round */
      ts_crash_kill_in(pp, 500 + ts_below(&t.rng, 20000));
    ts_crash_res_t res;
    ts_crash_run(&t,
                 &(ts_crash_spec_t){.what = "the writer", .fn = writer, .store = "crash", .opts = ts_opts(8 * MB, 8 * MB),
                                    .seed = ts_next(&t.rng), .kill_lo_us = 2000, .kill_hi_us = 25000,
                                    .end = TS_END_KILLED, .rec_size = sizeof(ack_t), .on_rec = on_ack, .rec_arg = &m},
                 &res);
    writer_kills += res.killed_by_us;
    if (ts_crash_ended(pp)) { /* killed: the next persister takes over */
      ts_crash_res_t pr;
      ts_crash_finish(pp, &pr);
      persister_kills += pr.killed_by_us;
      pp = ts_crash_start(&t, &ps);
    }
  }
  ts_crash_kill(pp);
  ts_crash_res_t pr;
  ts_crash_finish(pp, &pr);
  persister_kills += pr.killed_by_us;
  cr_log_info("aof crash: %d writer kills, %d persister kills", writer_kills, persister_kills);
  cr_assert_geq(writer_kills + persister_kills, 300);

  /* The machine is lost: only the log is left. Restore a copy of it into a new store. */
  size_t n;
  char *b = log_text(&n);
  char copy[400];
  snprintf(copy, sizeof copy, "%s/logcopy.aof", ts_dir);
  spit(copy, b, n);
  free(b);
  shmd_restore_report_t rep;
  shmd_store_t *d = restored("after", copy, &rep);
  cr_log_info("restore: %llu commands, %llu duplicates skipped, truncated %d", (unsigned long long)rep.commands,
              (unsigned long long)rep.skipped, rep.truncated);
  cr_assert_eq(rep.errors, 0);
  uint64_t acked = 0;
  for (uint32_t r = 0; r < rounds; r++)
    for (uint32_t i = 0; i < m.acked[r]; i++) {
      char want[32];
      snprintf(want, sizeof want, "%u", i * 7);
      shmd_reply_t *v = ts_kvf(d, 3, "GET r%u:%u", r, i);
      cr_assert_eq(v->type, SHMD_REPLY_BULK, "acknowledged write r%u:%u is in the restored store", r, i);
      cr_assert_str_eq(v->str, want);
      shmd_reply_free(v);
      acked++;
    }
  cr_log_info("aof crash: %llu acknowledged writes, all restored", (unsigned long long)acked);
  cr_assert_gt(acked, 0);

  /* A last persister drains the ring: the log then restores to exactly the store. */
  s = ts_crash_open("crash", 8 * MB, 8 * MB);
  ts_crash_check(s, TS_CHECK_ALLOC, NULL);
  shmd_persist_opts_t o = {.dir = logdir, .fsync = SHMD_AOF_FSYNC_ALWAYS};
  volatile int stop = 1;
  cr_assert_eq(shmd_persist_run(s, &o, &stop), 0, "%s", shmd_errdetail());
  shmd_store_t *e = restored("final", logdir, &rep);
  char *x = canon(s), *y = canon(e);
  cr_assert_str_eq(y, x, "after the drain, the log restores to exactly the store");
  free(x);
  free(y);
  shmd_close(e);
  shmd_close(d);
  shmd_close(s);
  free(m.acked);
  ts_crash_end(&t);
}
