/* SPDX-License-Identifier: MIT */
/*
 * The store-format promise, checked: stores written by every earlier layout (the committed
 * fixtures tests/fixtures/store-layout-1.X.tar.xz, made by old commits, see README.md there) open
 * with today's library, read back exactly what was written (fixture_data.h: every key, type, value
 * and expiry, the named roots, the blocks and containers behind them), take writes of every kind
 * (new keys, changed and deleted ones, frees of old blocks, growth by new segments), pass the
 * allocator and keyspace checkers, and read back the same after a close and a reopen. Stores of a
 * newer minor or another major are refused with both versions named.
 *
 * Each test unpacks its fixture into its private directory (tar, xz); FIXTURES_DIR is set by
 * tests/meson.build.
 */
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>
#include <stddef.h>

#include "kv/kv_int.h"
#include "segments/store_int.h"
#include "support.h"
#include "tests/fixtures/fixture_data.h"

TestSuite(layouts, .init = ts_init, .fini = ts_fini, .timeout = 120);

/* ---------------------------------------------------------------------------------------------- */
/* Unpacking and opening */

static void unpack(const char *layout) {
  const char *fx = getenv("FIXTURES_DIR");
  cr_assert_not_null(fx, "FIXTURES_DIR is not set (run through meson test)");
  char tarball[512];
  snprintf(tarball, sizeof tarball, "%s/store-layout-%s.tar.xz", fx, layout);
  cr_assert_eq(access(tarball, R_OK), 0, "no fixture %s", tarball);
  char *argv[] = {"tar", "--no-same-owner", "-xJf", tarball, "-C", ts_dir, NULL};
  ts_run_t r = ts_run_prog(&(ts_run_opts_t){.merge_stderr = 1}, argv);
  cr_assert_eq(r.status, 0, "tar -xJf %s failed (%d): %s", tarball, r.status, r.out);
  ts_run_free(&r);
  /* A store is its owner's alone: the directory 0700, the files 0600 (what the writer made). */
  char path[512];
  snprintf(path, sizeof path, "%s/%s", ts_dir, FX_STORE);
  cr_assert_eq(chmod(path, 0700), 0);
  DIR *d = opendir(path);
  cr_assert_not_null(d);
  struct dirent *e;
  int files = 0;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    char f[1024];
    snprintf(f, sizeof f, "%s/%s", path, e->d_name);
    cr_assert_eq(chmod(f, 0600), 0);
    files++;
  }
  closedir(d);
  cr_assert_geq(files, 2, "fixture %s holds %d segment files", layout, files);
}

static shmd_store_t *open_fixture(void) {
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = ts_dir;
  o.flags = SHMD_OPEN_NOCREATE;
  shmd_store_t *s = NULL;
  int rc = shmd_open(FX_STORE, &o, &s);
  cr_assert_eq(rc, 0, "shmd_open: %s (%s)", shmd_err_name(rc), shmd_errdetail());
  return s;
}

/* ---------------------------------------------------------------------------------------------- */
/* Reading through the command interface */

static shmd_reply_t *run(shmd_store_t *s, unsigned db, int argc, const char *const *argv) {
  size_t lens[16];
  for (int i = 0; i < argc; i++)
    lens[i] = strlen(argv[i]);
  shmd_reply_t *r = NULL;
  int rc = shmd_kv_command_db(s, db, argc, argv, lens, &r);
  cr_assert_eq(rc, 0, "%s %s: %s (%s)", argv[0], argc > 1 ? argv[1] : "", shmd_err_name(rc),
               shmd_errdetail());
  cr_assert_neq(r->type, SHMD_REPLY_ERROR, "%s %s: %s", argv[0], argc > 1 ? argv[1] : "", r->str);
  return r;
}

#define RUN(s, db, ...)                                                                            \
  run((s), (db), (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)),            \
      (const char *[]){__VA_ARGS__})

static int64_t run_int(shmd_store_t *s, unsigned db, int argc, const char *const *argv) {
  shmd_reply_t *r = run(s, db, argc, argv);
  cr_assert_eq(r->type, SHMD_REPLY_INTEGER, "%s %s: reply type %d", argv[0], argv[1], r->type);
  int64_t v = r->integer;
  shmd_reply_free(r);
  return v;
}
#define INT(s, db, ...)                                                                            \
  run_int((s), (db), (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)),        \
          (const char *[]){__VA_ARGS__})

static void expect_type(shmd_store_t *s, unsigned db, const char *key, const char *type) {
  shmd_reply_t *r = RUN(s, db, "TYPE", key);
  cr_assert_eq(r->type, SHMD_REPLY_STATUS);
  cr_assert_str_eq(r->str, type, "TYPE %s: %s, expected %s", key, r->str, type);
  shmd_reply_free(r);
}

static void expect_string(shmd_store_t *s, unsigned db, const char *key, const void *val, size_t len) {
  static char buf[8192];
  size_t got = 0;
  int rc = shmd_kv_get(s, db, key, strlen(key), buf, sizeof buf, &got);
  cr_assert_eq(rc, 0, "GET %s: %s", key, shmd_err_name(rc));
  cr_assert_eq(got, len, "GET %s: %zu bytes, expected %zu", key, got, len);
  cr_assert(memcmp(buf, val, len) == 0, "GET %s: wrong bytes", key);
}

static void expect_hfield(shmd_store_t *s, const char *key, const char *field, const void *val,
                          size_t len) {
  static char buf[8192];
  size_t got = 0;
  int rc = shmd_kv_hget(s, 0, key, strlen(key), field, strlen(field), buf, sizeof buf, &got);
  cr_assert_eq(rc, 0, "HGET %s %s: %s", key, field, shmd_err_name(rc));
  cr_assert_eq(got, len, "HGET %s %s: %zu bytes", key, field, got);
  cr_assert(memcmp(buf, val, len) == 0, "HGET %s %s: wrong bytes", key, field);
}

static char *pattern(size_t n, unsigned seed) {
  char *b = malloc(n + 1);
  cr_assert_not_null(b);
  for (size_t i = 0; i < n; i++)
    b[i] = (char)fx_letter(i, seed);
  b[n] = 0;
  return b;
}

/* The reply's array elements must be the bulk strings want[0 .. n). */
static void expect_array(shmd_reply_t *r, const char *what, const char *const *want, size_t n) {
  cr_assert_eq(r->type, SHMD_REPLY_ARRAY, "%s: reply type %d", what, r->type);
  cr_assert_eq(r->nelems, n, "%s: %zu elements, expected %zu", what, r->nelems, n);
  for (size_t i = 0; i < n; i++)
    cr_assert(r->elems[i].len == strlen(want[i]) && memcmp(r->elems[i].str, want[i], r->elems[i].len) == 0,
              "%s: element %zu is '%.*s', expected '%s'", what, i, (int)r->elems[i].len, r->elems[i].str,
              want[i]);
  shmd_reply_free(r);
}

/* ---------------------------------------------------------------------------------------------- */
/* The known contents (fixture_data.h), before (written == 0) and after the writes of
 * write_more() (written == 1). */

static void verify_keyspace(shmd_store_t *s, int written) {
  char k[64], v[64];
  /* Strings. */
  expect_type(s, 0, "s:small", "string");
  expect_string(s, 0, "s:small", "hello", 5);
  expect_string(s, 0, "s:int", written ? "12346" : "12345", 5);
  expect_string(s, 0, "s:empty", "", 0);
  char *big = pattern(FX_BIG_STR, FX_SEED_SBIG);
  expect_string(s, 0, "s:big", big, FX_BIG_STR);
  free(big);
  cr_assert_eq(INT(s, 0, "STRLEN", "s:big"), FX_BIG_STR);
  /* Hashes. */
  if (written) {
    cr_assert_eq(INT(s, 0, "EXISTS", "h:small"), 0, "h:small was deleted");
  } else {
    expect_type(s, 0, "h:small", "hash");
    cr_assert_eq(INT(s, 0, "HLEN", "h:small"), 3);
    expect_hfield(s, "h:small", "a", "1", 1);
    expect_hfield(s, "h:small", "b", "2", 1);
    expect_hfield(s, "h:small", "c", "3", 1);
  }
  expect_type(s, 0, "h:big", "hash");
  int hn = FX_HASH_N + written;
  cr_assert_eq(INT(s, 0, "HLEN", "h:big"), hn + 1);
  for (int i = 0; i < hn; i++) {
    snprintf(k, sizeof k, "f%03d", i);
    snprintf(v, sizeof v, "v%03d", i);
    expect_hfield(s, "h:big", k, v, strlen(v));
  }
  big = pattern(FX_BIG_FIELD, FX_SEED_BIGFIELD);
  expect_hfield(s, "h:big", "bigfield", big, FX_BIG_FIELD);
  free(big);
  /* Lists. */
  expect_type(s, 0, "l:small", "list");
  expect_array(RUN(s, 0, "LRANGE", "l:small", "0", "-1"), "LRANGE l:small",
               (const char *[]){"a", "b", "c"}, 3);
  expect_type(s, 0, "l:big", "list");
  shmd_reply_t *r = RUN(s, 0, "LRANGE", "l:big", "0", "-1");
  size_t ln = FX_LIST_N + 2 + (size_t)written;
  cr_assert_eq(r->type, SHMD_REPLY_ARRAY);
  cr_assert_eq(r->nelems, ln, "LRANGE l:big: %zu elements", r->nelems);
  cr_assert_str_eq(r->elems[0].str, "head");
  for (int i = 0; i < FX_LIST_N; i++) {
    snprintf(k, sizeof k, "e%04d", i);
    cr_assert_str_eq(r->elems[1 + i].str, k);
  }
  big = pattern(FX_BIG_STR, FX_SEED_LBIG);
  cr_assert(r->elems[FX_LIST_N + 1].len == FX_BIG_STR && memcmp(r->elems[FX_LIST_N + 1].str, big, FX_BIG_STR) == 0,
            "l:big's long element differs");
  free(big);
  if (written)
    cr_assert_str_eq(r->elems[FX_LIST_N + 2].str, "tail");
  shmd_reply_free(r);
  /* Sets. */
  expect_type(s, 0, "set:small", "set");
  cr_assert_eq(INT(s, 0, "SCARD", "set:small"), 3);
  cr_assert_eq(INT(s, 0, "SISMEMBER", "set:small", "x"), 1);
  cr_assert_eq(INT(s, 0, "SISMEMBER", "set:small", "y"), 1);
  cr_assert_eq(INT(s, 0, "SISMEMBER", "set:small", "z"), 1);
  cr_assert_eq(INT(s, 0, "SISMEMBER", "set:small", "w"), 0);
  expect_type(s, 0, "set:big", "set");
  int sn = FX_SET_N + written;
  cr_assert_eq(INT(s, 0, "SCARD", "set:big"), sn);
  for (int i = 0; i < sn; i++) {
    snprintf(k, sizeof k, "m%03d", i);
    cr_assert_eq(INT(s, 0, "SISMEMBER", "set:big", k), 1, "set:big lacks %s", k);
  }
  cr_assert_eq(INT(s, 0, "SISMEMBER", "set:big", "m999"), 0);
  /* Sorted sets. */
  expect_type(s, 0, "z:small", "zset");
  expect_array(RUN(s, 0, "ZRANGE", "z:small", "0", "-1", "WITHSCORES"), "ZRANGE z:small",
               (const char *[]){"c", "-3", "a", "1", "b", "2.5"}, 6);
  expect_type(s, 0, "z:big", "zset");
  int zn = FX_ZSET_N + written;
  cr_assert_eq(INT(s, 0, "ZCARD", "z:big"), zn);
  for (int i = 0; i < FX_ZSET_N; i++) {
    snprintf(k, sizeof k, "z%03d", i);
    r = RUN(s, 0, "ZSCORE", "z:big", k);
    cr_assert_eq(r->type, SHMD_REPLY_BULK, "ZSCORE z:big %s", k);
    cr_assert_eq(strtod(r->str, NULL), fx_zscore(i), "ZSCORE z:big %s: %s", k, r->str);
    shmd_reply_free(r);
  }
  uint64_t rank = 0;
  cr_assert_eq(shmd_kv_zrank(s, 0, "z:big", 5, "z150", 4, 0, &rank), 0);
  cr_assert_eq(rank, 150);
  if (written) {
    cr_assert_eq(shmd_kv_zrank(s, 0, "z:big", 5, "z300", 4, 1, &rank), 0);
    cr_assert_eq(rank, 0, "z300 (score 1000) is the highest");
  }
  /* Expiry: the live ones keep theirs, the expired one is gone, the others have none. */
  expect_string(s, 0, "ttl:live", "alive", 5);
  int64_t ttl = INT(s, 0, "TTL", "ttl:live");
  cr_assert(ttl > 0 && ttl <= FX_TTL_SECONDS, "TTL ttl:live = %lld", (long long)ttl);
  ttl = INT(s, 0, "TTL", "ttl:hash");
  cr_assert(ttl > 0 && ttl <= FX_TTL_SECONDS, "TTL ttl:hash = %lld", (long long)ttl);
  expect_type(s, 0, "ttl:hash", "hash");
  cr_assert_eq(INT(s, 0, "EXISTS", "ttl:gone"), 0, "ttl:gone expired long ago");
  cr_assert_eq(INT(s, 0, "TTL", "ttl:gone"), -2);
  cr_assert_eq(shmd_kv_get(s, 0, "ttl:gone", 8, NULL, 0, NULL), SHMD_ENOTFOUND);
  cr_assert_eq(INT(s, 0, "TTL", "s:small"), -1);
  cr_assert_eq(INT(s, 0, "TTL", "l:big"), -1);
  /* Written after the growth, over several segments. */
  expect_string(s, 0, "after:growth", "yes", 3);
  if (written) {
    cr_assert_eq(INT(s, 0, "EXISTS", "l:after"), 0, "l:after was deleted");
  } else {
    r = RUN(s, 0, "LRANGE", "l:after", "0", "-1");
    cr_assert_eq(r->nelems, FX_AFTER_N);
    for (unsigned j = 0; j < FX_AFTER_N; j++) {
      char *e = pattern(FX_AFTER_BYTES, j);
      cr_assert(r->elems[j].len == FX_AFTER_BYTES && memcmp(r->elems[j].str, e, FX_AFTER_BYTES) == 0,
                "l:after element %u differs", j);
      free(e);
    }
    shmd_reply_free(r);
  }
  /* The other database, and only there. */
  expect_string(s, FX_DB, "db3:key", "in db 3", 7);
  expect_array(RUN(s, FX_DB, "LRANGE", "db3:list", "0", "-1"), "LRANGE db3:list",
               (const char *[]){"x", "y"}, 2);
  cr_assert_eq(INT(s, 0, "EXISTS", "db3:key"), 0);
  cr_assert_eq(INT(s, FX_DB, "EXISTS", "s:small"), 0);
  /* The key names, all of them (KEYS leaves the expired key out). */
  r = RUN(s, 0, "KEYS", "*");
  size_t nkeys = 16 - 2 * (size_t)written + 6 * (size_t)written;
  cr_assert_eq(r->nelems, nkeys, "KEYS *: %zu keys, expected %zu", r->nelems, nkeys);
  shmd_reply_free(r);
  if (written) {
    expect_string(s, 0, "n:str", "new", 3);
    ttl = INT(s, 0, "TTL", "n:str");
    cr_assert(ttl > 0 && ttl <= 1000, "TTL n:str = %lld", (long long)ttl);
    expect_hfield(s, "n:hash", "f", "v", 1);
    expect_array(RUN(s, 0, "LRANGE", "n:list", "0", "-1"), "LRANGE n:list", (const char *[]){"1", "2"}, 2);
    cr_assert_eq(INT(s, 0, "SCARD", "n:set"), 2);
    expect_array(RUN(s, 0, "ZRANGE", "n:zset", "0", "-1"), "ZRANGE n:zset", (const char *[]){"one", "two"}, 2);
    r = RUN(s, 0, "LRANGE", "n:big", "0", "-1");
    cr_assert_eq(r->nelems, 300);
    shmd_reply_free(r);
  }
}

static shmd_ptr_t root(shmd_store_t *s, const char *name) {
  shmd_ptr_t p = shmd_ptr_null();
  int rc = shmd_root_get(s, name, &p);
  cr_assert_eq(rc, 0, "root %s: %s", name, shmd_err_name(rc));
  return p;
}

static void expect_block(shmd_store_t *s, const char *name, uint64_t size) {
  shmd_ptr_t p = root(s, name);
  cr_assert_geq(shmd_usable_size(s, p), size, "root %s: block of %zu bytes", name, shmd_usable_size(s, p));
  unsigned char *b = NULL;
  cr_assert_eq(shmd_resolve_checked(s, p, (size_t)size, (void **)&b), 0, "%s", shmd_errdetail());
  for (uint64_t i = 0; i < size; i++)
    if (b[i] != fx_byte((size_t)i))
      cr_assert_fail("root %s: byte %llu is %02x, expected %02x", name, (unsigned long long)i, b[i],
                     fx_byte((size_t)i));
}

static void verify_roots(shmd_store_t *s, int written) {
  char k[32], v[32], buf[64];
  size_t len;
  if (written) {
    shmd_ptr_t p;
    cr_assert_eq(shmd_root_get(s, "fx_block", &p), SHMD_ENOTFOUND, "fx_block was freed");
    expect_block(s, "fx_new", 3u << 20);
  } else {
    expect_block(s, "fx_block", 1000);
  }
  expect_block(s, "fx_large", FX_LARGE);
  shmd_ptr_t h = root(s, "fx_hash");
  uint64_t n = 0;
  cr_assert_eq(shmd_hash_len(s, h, &n), 0);
  cr_assert_eq(n, (uint64_t)FX_ROOT_HASH_N + (uint64_t)written);
  for (int i = 0; i < FX_ROOT_HASH_N + written; i++) {
    snprintf(k, sizeof k, "k%02d", i);
    snprintf(v, sizeof v, "val%02d", i);
    cr_assert_eq(shmd_hash_get(s, h, k, strlen(k), buf, sizeof buf, &len), 0, "fx_hash %s", k);
    cr_assert(len == strlen(v) && memcmp(buf, v, len) == 0, "fx_hash %s", k);
  }
  cr_assert_eq(shmd_hash_check(s, h), 0, "%s", shmd_errdetail());
  shmd_ptr_t l = root(s, "fx_list");
  cr_assert_eq(shmd_list_len(s, l, &n), 0);
  cr_assert_eq(n, (uint64_t)FX_ROOT_LIST_N + (uint64_t)written);
  for (int i = 0; i < FX_ROOT_LIST_N + written; i++) {
    snprintf(v, sizeof v, "item%02d", i);
    cr_assert_eq(shmd_list_index(s, l, i, buf, sizeof buf, &len), 0);
    cr_assert(len == strlen(v) && memcmp(buf, v, len) == 0, "fx_list %d", i);
  }
  cr_assert_eq(shmd_list_check(s, l), 0, "%s", shmd_errdetail());
  shmd_ptr_t t = root(s, "fx_tree");
  cr_assert_eq(shmd_rbtree_len(s, t, &n), 0);
  cr_assert_eq(n, (uint64_t)FX_ROOT_TREE_N + (uint64_t)written);
  for (int i = 0; i < FX_ROOT_TREE_N + written; i++) {
    snprintf(k, sizeof k, "t%02d", i);
    snprintf(v, sizeof v, "tv%02d", i);
    cr_assert_eq(shmd_rbtree_get(s, t, k, strlen(k), buf, sizeof buf, &len), 0, "fx_tree %s", k);
    cr_assert(len == strlen(v) && memcmp(buf, v, len) == 0, "fx_tree %s", k);
  }
  cr_assert_eq(shmd_rbtree_check(s, t), 0, "%s", shmd_errdetail());
  shmd_ptr_t a = root(s, "fx_array");
  cr_assert_eq(shmd_array_len(s, a, &n), 0);
  cr_assert_eq(n, (uint64_t)FX_ROOT_ARRAY_N + (uint64_t)written);
  for (uint64_t i = 0; i < n; i++) {
    uint64_t e = 0;
    cr_assert_eq(shmd_array_get(s, a, i, &e), 0);
    cr_assert_eq(e, i * i, "fx_array[%llu]", (unsigned long long)i);
  }
  cr_assert_eq(shmd_array_check(s, a), 0, "%s", shmd_errdetail());
}

static void check_all(shmd_store_t *s) {
  int rc = shmd_alloc_check(s);
  cr_assert_eq(rc, 0, "shmd_alloc_check: %s (%s)", shmd_err_name(rc), shmd_errdetail());
  rc = shmd_kv_check(s);
  cr_assert_eq(rc, 0, "shmd_kv_check: %s (%s)", shmd_err_name(rc), shmd_errdetail());
}

/* ---------------------------------------------------------------------------------------------- */
/* Writes of every kind on the old store */

static void write_more(shmd_store_t *s) {
  shmd_reply_free(RUN(s, 0, "INCR", "s:int"));
  shmd_reply_free(RUN(s, 0, "HSET", "h:big", "f300", "v300"));
  shmd_reply_free(RUN(s, 0, "RPUSH", "l:big", "tail"));
  shmd_reply_free(RUN(s, 0, "SADD", "set:big", "m300"));
  shmd_reply_free(RUN(s, 0, "ZADD", "z:big", "1000", "z300"));
  cr_assert_eq(INT(s, 0, "DEL", "h:small"), 1);
  cr_assert_eq(INT(s, 0, "DEL", "l:after"), 1); /* a big list over several segments */
  int rc;
  do
    rc = shmd_kv_drain(s, 0, 0);
  while (rc == 1);
  cr_assert_eq(rc, 0, "shmd_kv_drain: %s", shmd_err_name(rc));
  shmd_reply_free(RUN(s, 0, "SET", "n:str", "new"));
  shmd_reply_free(RUN(s, 0, "EXPIRE", "n:str", "1000"));
  shmd_reply_free(RUN(s, 0, "HSET", "n:hash", "f", "v"));
  shmd_reply_free(RUN(s, 0, "RPUSH", "n:list", "1", "2"));
  shmd_reply_free(RUN(s, 0, "SADD", "n:set", "a", "b"));
  shmd_reply_free(RUN(s, 0, "ZADD", "n:zset", "1", "one", "2", "two"));
  char e[600];
  memset(e, 'n', sizeof e - 1);
  e[sizeof e - 1] = 0;
  for (int i = 0; i < 300; i++)
    shmd_reply_free(RUN(s, 0, "RPUSH", "n:big", e));
  /* Roots: free an old block, add to the old containers, grow the store by a new segment. */
  shmd_ptr_t p = root(s, "fx_block");
  cr_assert_eq(shmd_free(s, p), 0);
  cr_assert_eq(shmd_root_del(s, "fx_block"), 0);
  shmd_store_info_t before, after;
  cr_assert_eq(shmd_store_info(s, &before), 0);
  cr_assert_eq(shmd_alloc(s, 3u << 20, &p), 0, "%s", shmd_errdetail());
  unsigned char *b = shmd_resolve(s, p);
  for (size_t i = 0; i < (3u << 20); i++)
    b[i] = fx_byte(i);
  cr_assert_eq(shmd_root_set(s, "fx_new", p), 0);
  cr_assert_eq(shmd_store_info(s, &after), 0);
  cr_assert_gt(after.segments, before.segments, "the store did not grow");
  cr_assert_eq(shmd_hash_put(s, root(s, "fx_hash"), "k50", 3, "val50", 5, SHMD_HASH_UPSERT, NULL), 0);
  cr_assert_eq(shmd_list_push(s, root(s, "fx_list"), SHMD_LIST_TAIL, "item20", 6, NULL), 0);
  cr_assert_eq(shmd_rbtree_put(s, root(s, "fx_tree"), "t50", 3, "tv50", 4, SHMD_RBTREE_UPSERT, NULL), 0);
  uint64_t e100 = 100 * 100;
  cr_assert_eq(shmd_array_push(s, root(s, "fx_array"), &e100), 0);
}

/* Every segment file of the fixture's store carries layout 1.`minor`: segments a newer library adds
 * to an older store keep the store's layout, so the library that made the store can still open it. */
static void expect_segments_of_layout(uint32_t minor) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", ts_dir, FX_STORE);
  DIR *d = opendir(path);
  cr_assert_not_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, "seg-", 4) != 0)
      continue;
    char f[800];
    snprintf(f, sizeof f, "%s/%s", path, e->d_name);
    struct shmd__seg_hdr h;
    int fd = open(f, O_RDONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(read(fd, &h, sizeof h), (ssize_t)sizeof h);
    close(fd);
    cr_assert_eq(h.layout_minor, minor, "%s has layout %u.%u in a store of layout 1.%u", e->d_name,
                 h.layout_major, h.layout_minor, minor);
    n++;
  }
  closedir(d);
  cr_assert_geq(n, 3, "only %d segment files", n);
}

/* Features newer than the store's layout are held back: thread heaps (1.2) on 1.0 and 1.1 stores,
 * and transactions bigger than a lane (extension blocks, 1.1) on a 1.0 store, which answers
 * ETXFULL naming the layout instead. */
static void expect_features_held_back(shmd_store_t *s, uint32_t minor) {
  if (minor < 2)
    cr_assert_eq(s->man->reserved2[SHMD__MAN_HEAP_DIR], 0, "a 1.%u store got thread heaps", minor);
  else
    cr_assert_neq(s->man->reserved2[SHMD__MAN_HEAP_DIR], 0, "a 1.%u store got no thread heaps", minor);
  const int nf = 400; /* more undo entries and allocations than a lane holds in place */
  const char **argv = calloc(2 + 2 * (size_t)nf, sizeof *argv);
  size_t *lens = calloc(2 + 2 * (size_t)nf, sizeof *lens);
  char (*bufs)[16] = calloc((size_t)nf, sizeof *bufs);
  argv[0] = "HSET";
  argv[1] = "held:back";
  for (int i = 0; i < nf; i++) {
    snprintf(bufs[i], sizeof bufs[i], "f%d", i);
    argv[2 + 2 * i] = bufs[i];
    argv[3 + 2 * i] = bufs[i];
  }
  for (int i = 0; i < 2 + 2 * nf; i++)
    lens[i] = strlen(argv[i]);
  shmd_reply_t *r = NULL;
  int rc = shmd_kv_command(s, 2 + 2 * nf, argv, lens, &r);
  if (minor < 1) {
    cr_assert(rc == SHMD_ETXFULL || (rc == 0 && r != NULL && r->type == SHMD_REPLY_ERROR),
              "a 1.%u store took a transaction bigger than a lane: rc %s", minor, shmd_err_name(rc));
  } else {
    cr_assert_eq(rc, 0, "%s", shmd_errdetail());
    cr_assert(r != NULL && r->type == SHMD_REPLY_INTEGER && r->integer == nf);
  }
  shmd_reply_free(r);
  free(argv);
  free(lens);
  free(bufs);
}

/* Sorted sets of a store older than 1.5 stay on the rbtree, old ones and new ones alike (so its
 * library can still open it); 1.5 stores make B+trees. Every sorted-set command works on both: ranks,
 * score and lex ranges, updates that move entries, pops, removals by range, stores, and a set big
 * enough to split and merge tree nodes; the checkers pass after each step. */
static void expect_zsets_of_layout(shmd_store_t *s, uint32_t minor) {
  int want = minor >= 5;
  cr_assert_eq(shmd__kv_zset_is_btree(s, 0, "z:big", 5), want, "z:big of a 1.%u store", minor);
  cr_assert_eq(shmd__kv_zset_is_btree(s, 0, "n:zset", 6), want, "n:zset written into a 1.%u store", minor);
  /* old set: a score change moves the entry, and moves it back */
  char k[32], v[32];
  snprintf(k, sizeof k, "%.17g", fx_zscore(7));
  shmd_reply_free(RUN(s, 0, "ZINCRBY", "z:big", "5000", "z007"));
  uint64_t rank = 0;
  cr_assert_eq(shmd_kv_zrank(s, 0, "z:big", 5, "z007", 4, 1, &rank), 0);
  cr_assert_eq(rank, 0, "z007 moved to the top");
  shmd_reply_free(RUN(s, 0, "ZADD", "z:big", k, "z007"));
  cr_assert_eq(shmd_kv_zrank(s, 0, "z:big", 5, "z007", 4, 0, &rank), 0);
  cr_assert_eq(rank, 7, "z007 back at rank 7");
  cr_assert_eq(INT(s, 0, "ZCOUNT", "z:big", "-inf", "+inf"), FX_ZSET_N + 1);
  cr_assert_eq(INT(s, 0, "ZLEXCOUNT", "z:small", "-", "+"), 3);
  expect_array(RUN(s, 0, "ZRANGEBYSCORE", "z:small", "(-3", "+inf", "WITHSCORES"), "ZRANGEBYSCORE z:small",
               (const char *[]){"a", "1", "b", "2.5"}, 4);
  expect_array(RUN(s, 0, "ZRANGE", "z:small", "0", "0", "REV"), "ZRANGE z:small REV", (const char *[]){"b"}, 1);
  /* a copy of the old set into a new key (the store's kind), then removals by range and pops (a
   * 1.0 store has no transactions bigger than a lane: small steps there) */
  if (minor >= 1) {
    cr_assert_eq(INT(s, 0, "ZUNIONSTORE", "n:zu", "2", "z:big", "z:small"), FX_ZSET_N + 1 + 3);
    cr_assert_eq(INT(s, 0, "ZREMRANGEBYRANK", "n:zu", "0", "99"), 100);
  } else {
    cr_assert_eq(INT(s, 0, "ZUNIONSTORE", "n:zu", "1", "z:small"), 3);
    for (int i = 0; i < FX_ZSET_N + 1 - 100; i++) {
      snprintf(k, sizeof k, "z%03d", 100 + i);
      snprintf(v, sizeof v, "%.17g", i == FX_ZSET_N - 100 ? 1000.0 : fx_zscore(100 + i));
      shmd_reply_free(RUN(s, 0, "ZADD", "n:zu", v, k));
    }
  }
  cr_assert_eq(shmd__kv_zset_is_btree(s, 0, "n:zu", 4), want);
  cr_assert_eq(INT(s, 0, "ZCARD", "n:zu"), FX_ZSET_N + 4 - 100);
  shmd_reply_free(RUN(s, 0, "ZPOPMAX", "n:zu", "10"));
  cr_assert_eq(INT(s, 0, "ZCARD", "n:zu"), FX_ZSET_N + 4 - 110);
  check_all(s);
  /* a new set big enough for several tree levels, emptied by ranges: splits, then merges */
  for (int i = 0; i < 2000; i++) {
    snprintf(k, sizeof k, "%d", (i * 7919) % 2003);
    snprintf(v, sizeof v, "member-%05d", i);
    shmd_reply_free(RUN(s, 0, "ZADD", "n:zbig", k, v));
  }
  cr_assert_eq(shmd__kv_zset_is_btree(s, 0, "n:zbig", 6), want);
  cr_assert_eq(INT(s, 0, "ZCARD", "n:zbig"), 2000);
  check_all(s);
  if (minor >= 1) {
    cr_assert_eq(INT(s, 0, "ZREMRANGEBYSCORE", "n:zbig", "0", "999"), 997);
    cr_assert_eq(INT(s, 0, "ZREMRANGEBYRANK", "n:zbig", "0", "-2"), 1002);
  } else {
    for (int left = 1999; left > 0; left -= left < 10 ? left : 10) {
      snprintf(k, sizeof k, "%d", (left < 10 ? left : 10) - 1);
      cr_assert_eq(INT(s, 0, "ZREMRANGEBYRANK", "n:zbig", "0", k), left < 10 ? left : 10);
    }
  }
  cr_assert_eq(INT(s, 0, "ZCARD", "n:zbig"), 1);
  check_all(s);
  cr_assert_eq(INT(s, 0, "DEL", "n:zu", "n:zbig"), 2);
  int rc;
  do
    rc = shmd_kv_drain(s, 0, 0);
  while (rc == 1);
  cr_assert_eq(rc, 0);
}

/* ---------------------------------------------------------------------------------------------- */
/* The tests */

static void layout_round_trip(const char *layout, uint32_t minor) {
  unpack(layout);
  shmd_store_t *s = open_fixture();
  shmd_store_info_t in;
  cr_assert_eq(shmd_store_info(s, &in), 0);
  cr_assert_eq(in.layout_major, 1);
  cr_assert_eq(in.layout_minor, minor, "the fixture of layout %s says %u.%u", layout, in.layout_major,
               in.layout_minor);
  cr_assert_geq(in.segments, 2, "the fixture has %u segments", in.segments);
  cr_assert_eq(in.lanes, FX_THREADS);
  check_all(s);
  verify_keyspace(s, 0);
  verify_roots(s, 0);
  write_more(s);
  check_all(s);
  verify_keyspace(s, 1);
  verify_roots(s, 1);
  expect_features_held_back(s, minor);
  shmd_reply_free(RUN(s, 0, "DEL", "held:back"));
  expect_zsets_of_layout(s, minor);
  check_all(s);
  shmd_close(s);
  expect_segments_of_layout(minor);

  s = open_fixture();
  cr_assert_eq(shmd_store_info(s, &in), 0);
  cr_assert_eq(in.layout_major, 1);
  cr_assert_leq(in.layout_minor, SHMD_LAYOUT_MINOR);
  check_all(s);
  verify_keyspace(s, 1);
  verify_roots(s, 1);
  shmd_close(s);
}

Test(layouts, layout_1_0) { layout_round_trip("1.0", 0); }
Test(layouts, layout_1_1) { layout_round_trip("1.1", 1); }
Test(layouts, layout_1_2) { layout_round_trip("1.2", 2); }
Test(layouts, layout_1_3) { layout_round_trip("1.3", 3); }
Test(layouts, layout_1_4) { layout_round_trip("1.4", 4); }
Test(layouts, layout_1_5) { layout_round_trip("1.5", 5); }

/* Every layout this library writes has a fixture: a new minor needs a new one (README.md). */
Test(layouts, every_minor_has_a_fixture) {
  const char *fx = getenv("FIXTURES_DIR");
  cr_assert_not_null(fx);
  for (unsigned m = 0; m <= SHMD_LAYOUT_MINOR; m++) {
    char path[512];
    snprintf(path, sizeof path, "%s/store-layout-%u.%u.tar.xz", fx, SHMD_LAYOUT_MAJOR, m);
    cr_assert_eq(access(path, R_OK), 0, "no fixture for layout %u.%u: make one with tests/fixtures/make.sh",
                 SHMD_LAYOUT_MAJOR, m);
  }
}

/* Rewrites the version of the fixture's segment 0 (with a valid header checksum, so that only the
 * version can be the reason for a refusal). */
static void set_version(uint16_t major, uint16_t minor) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s/seg-00000", ts_dir, FX_STORE);
  int fd = open(path, O_RDWR);
  cr_assert_geq(fd, 0);
  struct shmd__seg_hdr hd;
  cr_assert_eq(pread(fd, &hd, sizeof hd, 0), (ssize_t)sizeof hd);
  hd.layout_major = major;
  hd.layout_minor = minor;
  hd.checksum = shmd__fnv1a(&hd, offsetof(struct shmd__seg_hdr, checksum));
  cr_assert_eq(pwrite(fd, &hd, sizeof hd, 0), (ssize_t)sizeof hd);
  close(fd);
}

static void expect_refused(unsigned major, unsigned minor) {
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = ts_dir;
  o.flags = SHMD_OPEN_NOCREATE;
  shmd_store_t *s = NULL;
  int rc = shmd_open(FX_STORE, &o, &s);
  cr_assert_eq(rc, SHMD_EVERSION, "a store of layout %u.%u: %s (%s)", major, minor, shmd_err_name(rc),
               shmd_errdetail());
  cr_assert_null(s);
  char want[32];
  snprintf(want, sizeof want, "layout version %u.%u", major, minor);
  cr_assert_not_null(strstr(shmd_errdetail(), want), "the store's version is not named: %s", shmd_errdetail());
  snprintf(want, sizeof want, "(layout %u.%u)", SHMD_LAYOUT_MAJOR, SHMD_LAYOUT_MINOR);
  cr_assert_not_null(strstr(shmd_errdetail(), want), "the library's version is not named: %s", shmd_errdetail());
}

Test(layouts, newer_minor_refused_naming_both) {
  unpack("1.4");
  set_version(SHMD_LAYOUT_MAJOR, SHMD_LAYOUT_MINOR + 1);
  expect_refused(SHMD_LAYOUT_MAJOR, SHMD_LAYOUT_MINOR + 1);
  /* Refusing it changed nothing: with its version back, it opens and holds what it held. */
  set_version(SHMD_LAYOUT_MAJOR, 4);
  shmd_store_t *s = open_fixture();
  verify_keyspace(s, 0);
  shmd_close(s);
}

Test(layouts, other_major_refused_naming_both) {
  unpack("1.4");
  set_version(SHMD_LAYOUT_MAJOR + 1, 0);
  expect_refused(SHMD_LAYOUT_MAJOR + 1, 0);
  set_version(0, 9);
  expect_refused(0, 9);
}
