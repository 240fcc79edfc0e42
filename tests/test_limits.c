/* SPDX-License-Identifier: MIT */
/*
 * Resource limits: a full file system at creation and at growth (simulated with RLIMIT_FSIZE in a
 * child, never by filling the machine), the store's size limit through the keyspace, a store of
 * hundreds of segments attached lazily by another process, and keys and values of 0 bytes and of
 * hundreds of MiB. Tests that fork say so (mp_).
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>

#include "shmdict/kv.h"
#include "support.h"

#define MB (1024ull * 1024)

TestSuite(limits, .init = ts_init, .fini = ts_fini, .timeout = 240);

static int count_files(const char *store) {
  char dir[512];
  snprintf(dir, sizeof dir, "%s/%s", ts_dir, store);
  DIR *d = opendir(dir);
  if (d == NULL)
    return -1;
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d)) != NULL)
    n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
  closedir(d);
  return n;
}

/* One command of up to three words, the third binary (l2 bytes): ts_kv_vec (support_kv.h). */
static int kv(shmd_store_t *s, const char *a0, const char *a1, const void *a2, size_t l2, shmd_reply_t **out) {
  const char *argv[3] = {a0, a1, a2};
  size_t lens[3] = {strlen(a0), a1 ? strlen(a1) : 0, l2};
  return ts_kv_vec(s, 0, a2 ? 3 : a1 ? 2 : 1, argv, lens, out);
}

static void check_all(shmd_store_t *s) {
  int rc = shmd_alloc_check(s);
  cr_assert_eq(rc, 0, "alloc_check: %s (%s)", shmd_strerror(rc), shmd_errdetail());
  rc = shmd_kv_check(s);
  cr_assert_eq(rc, 0, "kv_check: %s (%s)", shmd_strerror(rc), shmd_errdetail());
}

/* In a child limited to `limit` bytes per file: SIGXFSZ ignored, so writes fail with EFBIG. */
static void limit_file_size(uint64_t limit) {
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit rl = {limit, limit};
  if (setrlimit(RLIMIT_FSIZE, &rl))
    _exit(20);
}

static int no_space_at_creation(ts_crash_child_t *cc) {
  (void)cc;
  limit_file_size(1 * MB);
  shmd_options_t o = ts_opts(4 * MB, 1 * MB);
  shmd_store_t *s = NULL;
  int rc = shmd_open("full", &o, &s);
  if (rc != SHMD_ENOSPC || s != NULL)
    return 1;
  if (strlen(shmd_errdetail()) == 0)
    return 2;
  return 0;
}

Test(limits, mp_no_space_at_creation) {
  /* creating a store on a full file system must answer ENOSPC */
  ts_crash_run(NULL,
               &(ts_crash_spec_t){.what = "the creator on a full file system", .fn = no_space_at_creation,
                                  .end = TS_END_EXIT0},
               NULL);
  /* nothing half-created: no segment 0, no temporary file (an empty directory may stay) */
  int n = count_files("full");
  cr_assert(n <= 0, "%d files left behind", n);
  /* and the name is usable once there is room */
  shmd_store_t *s = ts_open("full", 4 * MB, 1 * MB);
  check_all(s);
  shmd_close(s);
}

static int no_space_at_growth(ts_crash_child_t *cc) {
  (void)cc;
  const size_t val_bytes = 3000; /* the size of the values the parent stored */
  limit_file_size(1 * MB); /* existing files are not touched; a new segment cannot be made */
  shmd_options_t o = ts_opts(4 * MB, 2 * MB);
  shmd_store_t *c = NULL;
  if (shmd_open("g", &o, &c))
    return 1;
  shmd_ptr_t p;
  if (shmd_alloc(c, 3 * MB, &p) != SHMD_ENOSPC)
    return 2;
  /* through the keyspace: Redis's OOM error reply, nothing changed */
  char *big = malloc(3 * MB);
  memset(big, 'b', 3 * MB);
  shmd_reply_t *r = NULL;
  if (kv(c, "SET", "big", big, 3 * MB, &r) || r->type != SHMD_REPLY_ERROR || strncmp(r->str, "OOM", 3))
    return 3;
  shmd_reply_free(r);
  free(big);
  /* still usable for reads, frees and allocations that fit */
  if (kv(c, "GET", "k7", NULL, 0, &r) || r->type != SHMD_REPLY_BULK || r->len != val_bytes)
    return 4;
  shmd_reply_free(r);
  /* The store is full (segment 0's lanes leave it about 1 MiB of data): what a free gives back
   * serves an allocation of its size, whichever cache (the thread's heap) holds it now. */
  if (kv(c, "DEL", "k8", NULL, 0, NULL) || shmd_alloc(c, val_bytes, &p) || shmd_free(c, p))
    return 5;
  shmd_store_info_t info;
  if (shmd_store_info(c, &info) || info.segments != 1)
    return 6;
  if (shmd_alloc_check(c) || shmd_kv_check(c))
    return 7;
  shmd_close(c);
  return 0;
}

Test(limits, mp_no_space_at_growth) {
  shmd_store_t *s = ts_open("g", 4 * MB, 2 * MB);
  static char val[3000];
  memset(val, 'v', sizeof val);
  for (int i = 0; i < 100; i++) {
    char key[16];
    sprintf(key, "k%d", i);
    cr_assert_eq(kv(s, "SET", key, val, sizeof val, NULL), 0);
  }
  shmd_stats_t st0;
  cr_assert_eq(shmd_stats(s, &st0), 0);
  shmd_close(s);
  ts_crash_run(NULL,
               &(ts_crash_spec_t){.what = "the writer on a full file system", .fn = no_space_at_growth,
                                  .end = TS_END_EXIT0},
               NULL);
  cr_assert_eq(count_files("g"), 1, "no half-created segment file is left");
  s = ts_open("g", 4 * MB, 2 * MB);
  shmd_store_info_t info;
  cr_assert_eq(shmd_store_info(s, &info), 0);
  cr_assert_eq(info.segments, 1, "nothing half-created in the manifest");
  check_all(s);
  /* with room again, growth works */
  shmd_ptr_t p;
  cr_assert_eq(shmd_alloc(s, 3 * MB, &p), 0);
  cr_assert_eq(shmd_free(s, p), 0);
  check_all(s);
  shmd_close(s);
}

/* The configured maximum through the keyspace: SETs until the OOM error reply, then deleting frees
 * room for more; the store never exceeds its limit. (test_alloc checks the allocator alone.) */
Test(limits, max_store_bytes_through_the_keyspace) {
  shmd_options_t o = ts_opts(4 * MB, 1 * MB);
  o.max_store_bytes = 8 * MB;
  shmd_store_t *s = NULL;
  cr_assert_eq(shmd_open("m", &o, &s), 0);
  static char val[100000];
  memset(val, 'x', sizeof val);
  int stored = 0;
  for (int i = 0; i < 200; i++) {
    char key[16];
    sprintf(key, "k%d", i);
    shmd_reply_t *r = NULL;
    cr_assert_eq(kv(s, "SET", key, val, sizeof val, &r), 0);
    int oom = r->type == SHMD_REPLY_ERROR;
    if (oom)
      cr_assert_eq(strncmp(r->str, "OOM", 3), 0, "%s", r->str);
    shmd_reply_free(r);
    if (oom)
      break;
    stored++;
  }
  cr_assert(stored > 10 && stored < 80, "stored %d values of 100 kB in an 8 MiB store", stored);
  shmd_store_info_t info;
  cr_assert_eq(shmd_store_info(s, &info), 0);
  cr_assert_leq(info.store_bytes, 8 * MB);
  check_all(s);
  cr_assert_eq(kv(s, "DEL", "k0", NULL, 0, NULL), 0);
  cr_assert_eq(kv(s, "DEL", "k1", NULL, 0, NULL), 0);
  shmd_reply_t *r = NULL;
  cr_assert_eq(kv(s, "SET", "again", val, sizeof val, &r), 0);
  cr_assert_eq(r->type, SHMD_REPLY_STATUS, "room again after deleting: %s", r->str);
  shmd_reply_free(r);
  check_all(s);
  shmd_close(s);
}

/* Hundreds of segments, each made by growth, attached lazily by another process. */
enum { HUNDREDS_N = 400 };

static int hundreds_child(ts_crash_child_t *cc) {
  (void)cc;
  enum { N = HUNDREDS_N };
  shmd_options_t o = ts_opts(4 * MB, 256 << 10);
  shmd_store_t *c;
  if (shmd_open("h", &o, &c))
    return 1;
  shmd_ptr_t t;
  if (shmd_root_get(c, "table", &t))
    return 2;
  shmd_ptr_t *q = shmd_resolve(c, t);
  for (int i = 0; i < N; i++) {
    unsigned char *b;
    if (shmd_resolve_checked(c, q[i], 120 << 10, (void **)&b) || b[0] != (unsigned char)i ||
        b[(120 << 10) - 1] != (unsigned char)i)
      return 3;
  }
  if (shmd_alloc_check(c))
    return 4;
  for (int i = 0; i < N; i += 2)
    if (shmd_free(c, q[i]))
      return 5;
  shmd_close(c);
  return 0;
}

Test(limits, mp_hundreds_of_segments) {
  enum { N = HUNDREDS_N };
  shmd_store_t *s = ts_open("h", 4 * MB, 256 << 10);
  static shmd_ptr_t p[N];
  for (int i = 0; i < N; i++) {
    cr_assert_eq(shmd_alloc(s, 120 << 10, &p[i]), 0, "block %d: %s", i, shmd_errdetail());
    memset(shmd_resolve(s, p[i]), (unsigned char)i, 120 << 10);
  }
  shmd_store_info_t info;
  cr_assert_eq(shmd_store_info(s, &info), 0);
  cr_assert_geq(info.segments, 190, "only %u segments", info.segments);
  shmd_ptr_t table;
  cr_assert_eq(shmd_alloc(s, sizeof p, &table), 0);
  memcpy(shmd_resolve(s, table), p, sizeof p);
  cr_assert_eq(shmd_root_set(s, "table", table), 0);
  ts_crash_run(NULL, &(ts_crash_spec_t){.what = "the other process", .fn = hundreds_child, .end = TS_END_EXIT0}, NULL);
  for (int i = 1; i < N; i += 2)
    cr_assert_eq(shmd_free(s, p[i]), 0);
  cr_assert_eq(shmd_free(s, table), 0);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_stats_t st;
  cr_assert_eq(shmd_stats(s, &st), 0);
  cr_assert_eq(st.large_blocks, 0);
  shmd_close(s);
}

/* Empty keys, fields, members and values in every type. */
Test(limits, zero_byte_keys_and_values) {
  shmd_store_t *s = ts_open("z", 4 * MB, 4 * MB);
  const char *e = "";
  static const char *const cmds[][5] = {
      {"SET", "", "", NULL},        {"HSET", "h", "", "", NULL}, {"HSET", "h", "f", "", NULL},
      {"RPUSH", "l", "", NULL},     {"SADD", "s", "", NULL},     {"ZADD", "z", "0", "", NULL},
      {"APPEND", "a", "", NULL},
  };
  (void)e;
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
    int argc = 0;
    size_t lens[5];
    while (argc < 5 && cmds[i][argc]) {
      lens[argc] = strlen(cmds[i][argc]);
      argc++;
    }
    shmd_reply_t *r = NULL;
    cr_assert_eq(shmd_kv_command(s, argc, (const char *const *)cmds[i], lens, &r), 0);
    cr_assert_neq(r->type, SHMD_REPLY_ERROR, "%s: %s", cmds[i][0], r->str);
    shmd_reply_free(r);
  }
  /* SET "" "" then GET "" answers an empty bulk string, not nil; an empty field holds "" */
  char buf[4];
  size_t len = 99;
  cr_assert_eq(shmd_kv_get(s, 0, "", 0, buf, sizeof buf, &len), 0);
  cr_assert_eq(len, 0);
  cr_assert_eq(shmd_kv_hget(s, 0, "h", 1, "", 0, buf, sizeof buf, &len), 0);
  cr_assert_eq(len, 0);
  cr_assert_eq(shmd_kv_set(s, 0, "", 0, "x", 1, SHMD_KV_XX), 0);
  cr_assert_eq(shmd_kv_get(s, 0, "", 0, buf, sizeof buf, &len), 0);
  cr_assert_eq(len, 1);
  shmd_reply_t *r = NULL;
  cr_assert_eq(kv(s, "STRLEN", "a", NULL, 0, &r), 0);
  cr_assert_eq(r->integer, 0, "APPEND of nothing makes an empty string");
  shmd_reply_free(r);
  shmd_ptr_t p;
  cr_assert_eq(shmd_alloc(s, 0, &p), 0);
  cr_assert_geq(shmd_usable_size(s, p), 1);
  cr_assert_eq(shmd_free(s, p), 0);
  check_all(s);
  cr_assert_eq(shmd_kv_del(s, 0, "", 0), 0);
  check_all(s);
  shmd_close(s);
}

/* A value of hundreds of MiB (and a key of a few MiB): stored by growth into a segment big enough,
 * read back exactly, appended to, deleted; the space comes back. Sized down under the sanitizers,
 * whose shadow memory doubles the cost. */
Test(limits, huge_values_and_keys) {
  size_t vbytes = getenv("SHMDICT_HUGE_MB") ? (size_t)atol(getenv("SHMDICT_HUGE_MB")) * MB : 300 * MB;
#if defined(__SANITIZE_ADDRESS__)
  vbytes = 96 * MB;
#endif
  size_t kbytes = 4 * MB;
  shmd_store_t *s = ts_open("huge", 16 * MB, 16 * MB);
  shmd_stats_t st0;
  cr_assert_eq(shmd_stats(s, &st0), 0);
  unsigned char *v = malloc(vbytes), *k = malloc(kbytes);
  cr_assert_not_null(v);
  for (size_t i = 0; i < vbytes; i += 4096)
    v[i] = (unsigned char)(i / 4096);
  memset(k, 'k', kbytes);
  k[kbytes - 1] = '!';
  cr_assert_eq(shmd_kv_set(s, 0, k, kbytes, v, vbytes, 0), 0, "%s", shmd_errdetail());
  unsigned char *back = malloc(vbytes + 16);
  size_t len = 0;
  cr_assert_eq(shmd_kv_get(s, 0, k, kbytes, back, vbytes + 16, &len), 0);
  cr_assert_eq(len, vbytes);
  cr_assert_eq(memcmp(back, v, vbytes), 0);
  /* the same key with one byte less is another key */
  cr_assert_eq(shmd_kv_get(s, 0, k, kbytes - 1, NULL, 0, &len), SHMD_ENOTFOUND);
  /* a huge hash field value and list element too */
  cr_assert_eq(shmd_kv_hset(s, 0, "h", 1, k, kbytes, v, vbytes / 4, NULL), 0);
  cr_assert_eq(shmd_kv_hget(s, 0, "h", 1, k, kbytes, back, vbytes, &len), 0);
  cr_assert_eq(len, vbytes / 4);
  cr_assert_eq(memcmp(back, v, len), 0);
  check_all(s);
  cr_assert_eq(shmd_kv_del(s, 0, k, kbytes), 0);
  cr_assert_eq(shmd_kv_del(s, 0, "h", 1), 0);
  cr_assert_eq(shmd_kv_drain(s, 0, 0), 0);
  check_all(s);
  shmd_stats_t st1;
  cr_assert_eq(shmd_stats(s, &st1), 0);
  cr_assert_leq(st1.allocated_bytes, st0.allocated_bytes + 64 * 1024,
                "space of the huge values came back: %llu -> %llu", (unsigned long long)st0.allocated_bytes,
                (unsigned long long)st1.allocated_bytes);
  free(v);
  free(k);
  free(back);
  shmd_close(s);
}
