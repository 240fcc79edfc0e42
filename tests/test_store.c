/* SPDX-License-Identifier: MIT */
/*
 * Stores, segments, roots, transactions and recovery: open/create semantics, every bad-header
 * status, named roots, transaction rollback and nesting, and crash recovery of a lock held by a
 * killed process (mp_ / crash_ tests fork).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>

#include "segments/store_int.h"
#include "support.h"

TestSuite(store, .init = ts_init, .fini = ts_fini, .timeout = 60);

static void seg_path(char *out, size_t n, const char *store, const char *file) {
  snprintf(out, n, "%s/%s/%s", ts_dir, store, file);
}

Test(store, create_reopen_and_roots) {
  shmd_store_t *s = ts_open("a", 4 << 20, 4 << 20);
  shmd_ptr_t p;
  cr_assert_eq(shmd_alloc(s, 100, &p), 0);
  strcpy(shmd_resolve(s, p), "hello");
  cr_assert_eq(shmd_root_set(s, "greeting", p), 0);
  shmd_ptr_t q = shmd_ptr_null();
  cr_assert_eq(shmd_root_get(s, "greeting", &q), 0);
  cr_assert(shmd_ptr_eq(p, q));
  cr_assert_eq(shmd_root_get(s, "nothing", &q), SHMD_ENOTFOUND);
  cr_assert_eq(shmd_root_set_nx(s, "greeting", p, &q), SHMD_EEXIST);
  cr_assert(shmd_ptr_eq(p, q));
  shmd_close(s);

  s = ts_open("a", 1 << 20, 1 << 20); /* sizes of an existing store are its own */
  cr_assert_eq(shmd_root_get(s, "greeting", &q), 0);
  cr_assert_str_eq(shmd_resolve(s, q), "hello");
  cr_assert_eq(shmd_root_del(s, "greeting"), 0);
  cr_assert_eq(shmd_root_del(s, "greeting"), SHMD_ENOTFOUND);
  cr_assert_eq(shmd_free(s, q), 0);
  shmd_store_info_t info;
  cr_assert_eq(shmd_store_info(s, &info), 0);
  cr_assert_eq(info.segments, 1);
  cr_assert_eq(info.layout_major, SHMD_LAYOUT_MAJOR);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
  shmd_close(NULL);
}

/* The default first segment is small (a tiny store costs little of /dev/shm) and growth is
 * geometric: each growth segment twice the one before, up to the growth step; a block bigger than
 * that gets a segment of its own size. */
Test(store, small_first_segment_and_geometric_growth) {
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = ts_dir;
  shmd_store_t *s;
  cr_assert_eq(shmd_open("tiny", &o, &s), 0);
  uint64_t size;
  cr_assert_eq(shmd_segment_info(s, 0, &size, NULL, 0), 0);
  cr_expect_eq(size, 4u << 20, "first segment %llu bytes", (unsigned long long)size);
  /* allocate 1 MiB blocks until the store has 6 segments */
  shmd_store_info_t info;
  for (int i = 0; i < 400; i++) {
    shmd_ptr_t p;
    cr_assert_eq(shmd_alloc(s, 1u << 20, &p), 0);
    cr_assert_eq(shmd_store_info(s, &info), 0);
    if (info.segments >= 6)
      break;
  }
  cr_assert_geq(info.segments, 6);
  const uint64_t want[] = {4u << 20, 8u << 20, 16u << 20, 32u << 20, 64u << 20, 64u << 20};
  for (uint32_t i = 0; i < 6; i++) {
    cr_assert_eq(shmd_segment_info(s, i, &size, NULL, 0), 0);
    cr_expect_eq(size, want[i], "segment %u: %llu bytes, want %llu", i, (unsigned long long)size,
                 (unsigned long long)want[i]);
  }
  shmd_ptr_t big;
  cr_assert_eq(shmd_alloc(s, 100u << 20, &big), 0); /* bigger than the step: its own segment */
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}

Test(store, open_flags_names_and_drop) {
  shmd_options_t o = ts_opts(4 << 20, 4 << 20);
  shmd_store_t *s = NULL;
  o.flags = SHMD_OPEN_NOCREATE;
  cr_assert_eq(shmd_open("missing", &o, &s), SHMD_ENOENT);
  cr_assert_null(s);
  o.flags = SHMD_OPEN_EXCL;
  cr_assert_eq(shmd_open("x", &o, &s), 0);
  shmd_close(s);
  cr_assert_eq(shmd_open("x", &o, &s), SHMD_EEXIST);
  cr_assert_eq(shmd_open("", &o, &s), SHMD_EINVAL);
  cr_assert_eq(shmd_open(".hidden", &o, &s), SHMD_EINVAL);
  cr_assert_eq(shmd_open("a/b", &o, &s), SHMD_EINVAL);
  o.flags = 0;
  o.first_segment_bytes = 64 << 10; /* too small for the lanes */
  cr_assert_eq(shmd_open("tiny", &o, &s), SHMD_EINVAL);
  cr_assert_neq(strlen(shmd_errdetail()), 0);
  /* segment files are 0600 */
  char path[512];
  seg_path(path, sizeof path, "x", "seg-00000");
  struct stat st;
  cr_assert_eq(stat(path, &st), 0);
  cr_assert_eq(st.st_mode & 0777, 0600);
  cr_assert_eq(shmd_drop("x", ts_dir), 0);
  cr_assert_eq(shmd_drop("x", ts_dir), SHMD_ENOENT);
  cr_assert_neq(stat(path, &st), 0);
}

Test(store, status_table) {
  cr_assert_str_eq(shmd_err_name(SHMD_ECORRUPT), "ECORRUPT");
  cr_assert_str_eq(shmd_strerror(0), "success");
  cr_assert_str_eq(shmd_strerror(12345), "unknown error");
  cr_assert_str_eq(shmd_err_name(SHMD_EVERSION), "EVERSION");
  cr_assert_lt(SHMD_ENOTFOUND, 0);
}

/* ---- bad headers: each case gives its own status ---- */

static void make_store(const char *name) {
  shmd_store_t *s = ts_open(name, 4 << 20, 1 << 20);
  shmd_ptr_t p;
  cr_assert_eq(shmd_alloc(s, 2 << 20, &p), 0); /* forces a second segment */
  cr_assert_eq(shmd_root_set(s, "big", p), 0);
  shmd_close(s);
}

static int reopen(const char *name) {
  shmd_options_t o = ts_opts(4 << 20, 1 << 20);
  o.flags = SHMD_OPEN_NOCREATE;
  shmd_store_t *s = NULL;
  int rc = shmd_open(name, &o, &s);
  if (rc == 0) {
    /* Segment 1 is attached lazily: resolving the root triggers validation. */
    shmd_ptr_t p;
    void *a;
    rc = shmd_root_get(s, "big", &p);
    if (rc == 0)
      rc = shmd_resolve_checked(s, p, 16, &a);
    if (rc == 0)
      rc = shmd_alloc_check(s);
    shmd_close(s);
  }
  return rc;
}

static void patch(const char *name, const char *file, long off, const void *bytes, size_t n) {
  char path[512];
  seg_path(path, sizeof path, name, file);
  int fd = open(path, O_RDWR);
  cr_assert_geq(fd, 0);
  cr_assert_eq(pwrite(fd, bytes, n, off), (ssize_t)n);
  close(fd);
}

static void find_seg1(const char *name, char *out, size_t n) {
  char dir[512];
  snprintf(dir, sizeof dir, "%s/%s", ts_dir, name);
  DIR *d = opendir(dir);
  struct dirent *e;
  out[0] = 0;
  while ((e = readdir(d)) != NULL)
    if (strncmp(e->d_name, "seg-00001-", 10) == 0)
      snprintf(out, n, "%s", e->d_name);
  closedir(d);
  cr_assert_neq(out[0], 0);
}

Test(store, bad_not_a_store) {
  make_store("b");
  patch("b", "seg-00000", 0, "GARBAGE!", 8);
  cr_assert_eq(reopen("b"), SHMD_ENOTSTORE, "%s", shmd_errdetail());
}

Test(store, bad_version_names_both) {
  make_store("b");
  char path[512];
  seg_path(path, sizeof path, "b", "seg-00000");
  int fd = open(path, O_RDWR);
  uint16_t major = SHMD_LAYOUT_MAJOR + 1;
  pwrite(fd, &major, 2, 8);
  close(fd);
  int rc = reopen("b");
  cr_assert_eq(rc, SHMD_EVERSION, "%s", shmd_err_name(rc));
  char want[64];
  snprintf(want, sizeof want, "%d.%d", SHMD_LAYOUT_MAJOR + 1, SHMD_LAYOUT_MINOR);
  cr_assert_not_null(strstr(shmd_errdetail(), want), "%s", shmd_errdetail());
  snprintf(want, sizeof want, "%d.%d", SHMD_LAYOUT_MAJOR, SHMD_LAYOUT_MINOR);
  cr_assert_not_null(strstr(shmd_errdetail(), want), "%s", shmd_errdetail());
}

Test(store, bad_checksum) {
  make_store("b");
  uint32_t flags = 0xdeadbeef;
  patch("b", "seg-00000", 36, &flags, 4); /* the flags word, covered by the checksum */
  cr_assert_eq(reopen("b"), SHMD_ECHECKSUM, "%s", shmd_errdetail());
}

Test(store, bad_truncated) {
  make_store("b");
  char name[64], path[512];
  find_seg1("b", name, sizeof name);
  seg_path(path, sizeof path, "b", name);
  cr_assert_eq(truncate(path, 8192), 0);
  cr_assert_eq(reopen("b"), SHMD_ECORRUPT); /* the root resolves into a truncated segment */
  cr_assert_not_null(strstr(shmd_errdetail(), "truncated") ?: strstr(shmd_errdetail(), "exist"), "%s",
                     shmd_errdetail());
  seg_path(path, sizeof path, "b", "seg-00000");
  cr_assert_eq(truncate(path, 100), 0);
  cr_assert_eq(reopen("b"), SHMD_ETRUNCATED, "%s", shmd_errdetail());
  cr_assert_eq(truncate(path, 0), 0);
  cr_assert_eq(reopen("b"), SHMD_ETRUNCATED, "%s", shmd_errdetail());
}

/*
 * Truncation between the header and the recorded size, for every segment of a store grown to
 * several: just past the header, 64 KiB, half, one page short, one byte short. The header is intact
 * in each case, so only the size checks can notice. Segment 0 must be refused at open, any other
 * segment at its lazy attach (shmd_attach_all()), each with ETRUNCATED and a detail that names the
 * file and its size. Each case runs in a child, so a check that is missing shows as a failure
 * naming the case rather than as a crash of the whole test.
 */
typedef struct {
  char name[64];
  unsigned char *bytes;
  uint64_t len;
} segcopy_t;

static void restore_files(const char *store, const segcopy_t *c, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) {
    char path[512];
    seg_path(path, sizeof path, store, c[i].name);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0, "%s", path);
    cr_assert_eq(ftruncate(fd, (off_t)c[i].len), 0);
    cr_assert_eq(pwrite(fd, c[i].bytes, c[i].len, 0), (ssize_t)c[i].len);
    close(fd);
  }
}

/* In a child: opens the store and attaches every segment; reports the status and the detail. */
typedef struct {
  char msg[600];
} open_msg_t;

static int open_attach_child(ts_crash_child_t *cc) {
  shmd_options_t o = ts_opts(4 << 20, 1 << 20);
  o.flags = SHMD_OPEN_NOCREATE;
  shmd_store_t *s = NULL;
  int rc = shmd_open((const char *)cc->arg, &o, &s);
  if (rc == 0)
    rc = shmd_attach_all(s, 0);
  open_msg_t m = {{0}};
  snprintf(m.msg, sizeof m.msg, "%d %s", rc, shmd_errdetail());
  ts_crash_report(cc, &m);
  return 0;
}

static void take_msg(const void *rec, void *arg) { memcpy(arg, rec, sizeof(open_msg_t)); }

static int open_and_attach(const char *store, char *detail, size_t dn) {
  open_msg_t m = {{0}};
  int st = ts_crash_run(NULL,
                        &(ts_crash_spec_t){.what = "the opener", .fn = open_attach_child, .arg = (void *)store,
                                           .rec_size = sizeof m, .on_rec = take_msg, .rec_arg = &m,
                                           .end = TS_END_ANY},
                        NULL);
  if (st != 0) {
    snprintf(detail, dn, "the child died with status %d (signal %d)", st, st > 128 && st < TS_HUNG ? st - 128 : 0);
    return 1000 + st;
  }
  char *sp = strchr(m.msg, ' ');
  snprintf(detail, dn, "%s", sp ? sp + 1 : "");
  return atoi(m.msg);
}

Test(store, truncated_between_header_and_recorded_size) {
  shmd_store_t *s = ts_open("tr", 4 << 20, 1 << 20);
  shmd_ptr_t p;
  for (int i = 0; i < 3; i++)
    cr_assert_eq(shmd_alloc(s, (size_t)(1 + i) << 20, &p), 0); /* each grows the store */
  shmd_store_info_t info;
  cr_assert_eq(shmd_store_info(s, &info), 0);
  cr_assert_geq(info.segments, 4);
  uint32_t nseg = info.segments;
  segcopy_t *c = calloc(nseg, sizeof *c);
  for (uint32_t i = 0; i < nseg; i++)
    cr_assert_eq(shmd_segment_info(s, i, &c[i].len, c[i].name, sizeof c[i].name), 0);
  shmd_close(s);
  for (uint32_t i = 0; i < nseg; i++) {
    char path[512];
    seg_path(path, sizeof path, "tr", c[i].name);
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0);
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    cr_assert_eq((uint64_t)st.st_size, c[i].len, "%s: file size and recorded size", c[i].name);
    c[i].bytes = malloc(c[i].len);
    cr_assert_eq(pread(fd, c[i].bytes, c[i].len, 0), (ssize_t)c[i].len);
    close(fd);
  }
  char detail[600];
  cr_assert_eq(open_and_attach("tr", detail, sizeof detail), 0, "the pristine store: %s", detail);
  int cases = 0;
  for (uint32_t i = 0; i < nseg; i++) {
    uint64_t full = c[i].len;
    const uint64_t sizes[] = {SHMD__HDR_BYTES + 1, SHMD__HDR_BYTES + 4096, 64 << 10, full / 2,
                              full - 4096, full - 1};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
      uint64_t to = sizes[k];
      cr_assert(to > SHMD__HDR_BYTES && to < full);
      restore_files("tr", c, nseg);
      char path[512];
      seg_path(path, sizeof path, "tr", c[i].name);
      cr_assert_eq(truncate(path, (off_t)to), 0);
      int rc = open_and_attach("tr", detail, sizeof detail);
      cr_expect_eq(rc, SHMD_ETRUNCATED, "segment %u (%s) cut to %llu of %llu bytes: %s (%s)", i,
                   c[i].name, (unsigned long long)to, (unsigned long long)full,
                   rc > -1000 && rc < 0 ? shmd_err_name(rc) : "no error", detail);
      char num[32];
      snprintf(num, sizeof num, "%llu", (unsigned long long)to);
      cr_expect(strstr(detail, c[i].name) && strstr(detail, "truncated") && strstr(detail, num),
                "segment %u cut to %llu: the detail should name the file, its size and say "
                "truncated: %s", i, (unsigned long long)to, detail);
      cases++;
    }
  }
  restore_files("tr", c, nseg);
  cr_assert_eq(open_and_attach("tr", detail, sizeof detail), 0, "restored: %s", detail);
  cr_log_info("%d truncations of %u segments", cases, nseg);
  for (uint32_t i = 0; i < nseg; i++)
    free(c[i].bytes);
  free(c);
}

/*
 * The manifest is not covered by the header's checksum (it changes), so opening checks every field
 * that places something: the lanes must end before the allocator metadata, the roots before the
 * lanes and after the manifest, the lane size must hold the undo log, the segment counts must be
 * within the table. Each field is set just past its bound (one lane, one root, 8 bytes), in a copy
 * of a pristine segment 0: each must be refused with ECORRUPT naming the manifest, never opened.
 */
static void patch_u32(int fd, off_t off, uint32_t v) { cr_assert_eq(pwrite(fd, &v, 4, off), 4); }
static void patch_u64(int fd, off_t off, uint64_t v) { cr_assert_eq(pwrite(fd, &v, 8, off), 8); }

Test(store, manifest_fields_just_past_their_bounds) {
  make_store("mf");
  char path[512];
  seg_path(path, sizeof path, "mf", "seg-00000");
  int fd = open(path, O_RDONLY);
  cr_assert_geq(fd, 0);
  struct stat st;
  cr_assert_eq(fstat(fd, &st), 0);
  size_t len = (size_t)st.st_size;
  unsigned char *pristine = malloc(len);
  cr_assert_eq(pread(fd, pristine, len, 0), (ssize_t)len);
  close(fd);
  struct shmd__seg_hdr h;
  struct shmd__manifest m;
  memcpy(&h, pristine, sizeof h);
  cr_assert_lt(h.manifest_off + sizeof m, len);
  memcpy(&m, pristine + h.manifest_off, sizeof m);
  const off_t mo = (off_t)h.manifest_off;
  const uint64_t lanes_end = m.lanes_off + (uint64_t)m.lane_count * m.lane_bytes;
  cr_assert_leq(lanes_end, h.alloc_off);
  cr_assert_leq(m.roots_off + (uint64_t)m.root_cap * sizeof(struct shmd__root), m.lanes_off);
  enum { LANES_PLUS_ONE, LANES_ZERO, LANES_SHIFTED, LOG_CAP_TOO_BIG, ROOTS_PLUS_ONE, ROOTS_IN_MANIFEST,
         SEGS_PAST_MAX, SEGS_ZERO, MAX_SEGS_PAST_TABLE, SEG0_SIZE, NCASES };
  static const char *what[NCASES] = {
      "lane_count one lane past the allocator metadata", "lane_count 0",
      "lanes_off 8 bytes past the room for the lanes", "op_log_cap larger than a lane holds",
      "root_cap one root past the lanes", "roots_off 8 bytes inside the manifest",
      "seg_count past max_segments", "seg_count 0", "max_segments past the segment table",
      "segment 0's size one page short in the manifest"};
  for (int k = 0; k < NCASES; k++) {
    fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pwrite(fd, pristine, len, 0), (ssize_t)len);
    switch (k) {
    case LANES_PLUS_ONE:
      cr_assert_gt(lanes_end + m.lane_bytes, h.alloc_off);
      patch_u32(fd, mo + (off_t)offsetof(struct shmd__manifest, lane_count), m.lane_count + 1);
      break;
    case LANES_ZERO:
      patch_u32(fd, mo + (off_t)offsetof(struct shmd__manifest, lane_count), 0);
      break;
    case LANES_SHIFTED:
      patch_u64(fd, mo + (off_t)offsetof(struct shmd__manifest, lanes_off), m.lanes_off + (h.alloc_off - lanes_end) + 8);
      break;
    case LOG_CAP_TOO_BIG:
      patch_u32(fd, mo + (off_t)offsetof(struct shmd__manifest, op_log_cap), m.op_log_cap * 2);
      break;
    case ROOTS_PLUS_ONE:
      patch_u32(fd, mo + (off_t)offsetof(struct shmd__manifest, root_cap),
                m.root_cap + (uint32_t)((m.lanes_off - m.roots_off) / sizeof(struct shmd__root) - m.root_cap) + 1);
      break;
    case ROOTS_IN_MANIFEST:
      patch_u64(fd, mo + (off_t)offsetof(struct shmd__manifest, roots_off), h.manifest_off + sizeof m - 8);
      break;
    case SEGS_PAST_MAX:
      patch_u32(fd, mo + (off_t)offsetof(struct shmd__manifest, seg_count), m.max_segments + 1);
      break;
    case SEGS_ZERO:
      patch_u32(fd, mo + (off_t)offsetof(struct shmd__manifest, seg_count), 0);
      break;
    case MAX_SEGS_PAST_TABLE:
      patch_u32(fd, mo + (off_t)offsetof(struct shmd__manifest, max_segments), SHMD__MAX_SEGS + 1);
      break;
    case SEG0_SIZE:
      patch_u64(fd, mo + (off_t)offsetof(struct shmd__manifest, segs[0].size_bytes), h.size_bytes - 4096);
      break;
    }
    close(fd);
    char detail[600];
    int rc = open_and_attach("mf", detail, sizeof detail);
    cr_expect_eq(rc, SHMD_ECORRUPT, "%s: %s (%s)", what[k],
                 rc > -1000 && rc < 0 ? shmd_err_name(rc) : "opened", detail);
    cr_expect(strstr(detail, "manifest") != NULL, "%s: the detail should name the manifest: %s", what[k],
              detail);
  }
  fd = open(path, O_RDWR);
  cr_assert_eq(pwrite(fd, pristine, len, 0), (ssize_t)len);
  close(fd);
  char detail[600];
  cr_assert_eq(open_and_attach("mf", detail, sizeof detail), 0, "restored: %s", detail);
  free(pristine);
}

Test(store, bad_foreign_segment) {
  make_store("b");
  make_store("c");
  char nb[64], nc[64], pb[512], pc[512];
  find_seg1("b", nb, sizeof nb);
  find_seg1("c", nc, sizeof nc);
  seg_path(pb, sizeof pb, "b", nb);
  seg_path(pc, sizeof pc, "c", nc);
  cr_assert_eq(rename(pc, pb), 0); /* c's segment 1 swapped in under b's name */
  shmd_options_t o = ts_opts(4 << 20, 1 << 20);
  shmd_store_t *s;
  cr_assert_eq(shmd_open("b", &o, &s), 0);
  shmd_ptr_t p;
  cr_assert_eq(shmd_root_get(s, "big", &p), 0);
  void *a;
  cr_assert_eq(shmd_resolve_checked(s, p, 16, &a), SHMD_ECORRUPT);
  cr_assert_null(shmd_resolve(s, p));
  cr_assert_not_null(strstr(shmd_errdetail(), "another store"), "%s", shmd_errdetail());
  cr_assert_eq(shmd_alloc_check(s), SHMD_ECORRUPT);
  shmd_close(s);
}

Test(store, symlink_planted_is_not_followed) {
  char dir[512], path[512], target[512];
  snprintf(dir, sizeof dir, "%s/evil", ts_dir);
  mkdir(dir, 0700);
  snprintf(target, sizeof target, "%s/victim", ts_dir);
  int fd = open(target, O_CREAT | O_WRONLY, 0600);
  write(fd, "precious", 8);
  close(fd);
  snprintf(path, sizeof path, "%s/seg-00000", dir);
  cr_assert_eq(symlink(target, path), 0);
  shmd_options_t o = ts_opts(4 << 20, 1 << 20);
  shmd_store_t *s = NULL;
  int rc = shmd_open("evil", &o, &s);
  cr_assert_neq(rc, 0);
  cr_assert_null(s);
  char buf[16] = {0};
  fd = open(target, O_RDONLY);
  read(fd, buf, 8);
  close(fd);
  cr_assert_str_eq(buf, "precious");
}

/* ---- transactions ---- */

Test(store, tx_rollback_nesting_and_deferred_free) {
  shmd_store_t *s = ts_open("t", 4 << 20, 4 << 20);
  shmd_ptr_t cell;
  cr_assert_eq(shmd_alloc(s, 64, &cell), 0);
  uint64_t *w = shmd_resolve(s, cell);
  w[0] = 1;
  w[1] = 2;
  shmd_stats_t st0, st;
  shmd_stats(s, &st0);

  shmd_tx_t *tx;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_tx_log(tx, cell, 16), 0);
  w[0] = 100;
  w[1] = 200;
  shmd_ptr_t fresh;
  cr_assert_eq(shmd_tx_alloc(tx, 1000, &fresh), 0);
  shmd_tx_abort(tx);
  cr_assert_eq(w[0], 1);
  cr_assert_eq(w[1], 2);
  shmd_stats(s, &st);
  cr_assert_eq(st.allocated_bytes, st0.allocated_bytes, "aborted allocation must be freed");

  /* nested: inner abort dooms the outer */
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_tx_set64(tx, &w[0], 7), 0);
  shmd_tx_t *inner;
  cr_assert_eq(shmd_tx_begin(s, &inner), 0);
  cr_assert_eq(shmd_tx_depth(s), 2);
  shmd_tx_abort(inner);
  cr_assert_eq(shmd_tx_commit(tx), SHMD_EABORTED);
  cr_assert_eq(w[0], 1);
  cr_assert_eq(shmd_tx_depth(s), 0);

  /* commit: frees happen after, exactly once */
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_tx_set64(tx, &w[0], 9), 0);
  cr_assert_eq(shmd_tx_free(tx, cell), 0);
  shmd_stats(s, &st);
  cr_assert_eq(st.allocated_bytes, st0.allocated_bytes, "freed before commit");
  cr_assert_eq(shmd_tx_commit(tx), 0);
  shmd_stats(s, &st);
  cr_assert_eq(st.allocated_bytes, st0.allocated_bytes - 64);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}

Test(store, tx_log_grows_past_the_lane) {
  shmd_store_t *s = ts_open("t", 8 << 20, 4 << 20);
  shmd_ptr_t big;
  cr_assert_eq(shmd_alloc(s, 64 << 10, &big), 0);
  memset(shmd_resolve(s, big), 0x11, 64 << 10);
  shmd_tx_t *tx;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  size_t words;
  shmd_tx_room(tx, &words, NULL, NULL);
  /* More than the lane holds in place: the log continues in an extension block. */
  cr_assert_eq(shmd_tx_log(tx, big, (words + 1000) * 8), 0);
  memset(shmd_resolve(s, big), 0xAB, (words + 1000) * 8);
  shmd_tx_abort(tx);
  const unsigned char *b = shmd_resolve(s, big);
  for (size_t i = 0; i < (64 << 10); i++)
    cr_assert_eq(b[i], 0x11, "byte %zu not restored", i);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_stats_t st;
  cr_assert_eq(shmd_stats(s, &st), 0);
  cr_assert_eq(st.allocated_bytes, shmd_usable_size(s, big), "the extension block was not freed");
  shmd_close(s);
}

static void *hold_lane(void *arg) {
  shmd_store_t *s = arg;
  shmd_ptr_t p;
  return (void *)(intptr_t)shmd_alloc(s, 16, &p);
}

Test(store, lanes_run_out_and_come_back) {
  shmd_options_t o = ts_opts(4 << 20, 4 << 20);
  o.max_threads = 2;
  shmd_store_t *s;
  cr_assert_eq(shmd_open("l", &o, &s), 0);
  shmd_ptr_t p;
  cr_assert_eq(shmd_alloc(s, 16, &p), 0); /* lane 1 of 2: this thread */
  for (int i = 0; i < 20; i++) {          /* threads that exit give their lane back */
    pthread_t th;
    void *ret;
    pthread_create(&th, NULL, hold_lane, s);
    pthread_join(th, &ret);
    cr_assert_eq((intptr_t)ret, 0);
  }
  shmd_store_info_t info;
  shmd_store_info(s, &info);
  cr_assert_eq(info.lanes, 2);
  cr_assert_eq(info.lanes_in_use, 1);
  shmd_close(s);
}

/* ---- crash: a process killed while holding a lock ---- */

/* Takes the cell's lock, allocates and writes inside a transaction, says ready, and waits there to
 * be killed. */
static int hold_lock_child(ts_crash_child_t *cc) {
  shmd_store_t *c = cc->s;
  shmd_tx_t *tx;
  shmd_ptr_t p, junk;
  if (shmd_tx_begin(c, &tx) || shmd_root_get(c, "cell", &p) || shmd_tx_lock(tx, p) || shmd_tx_alloc(tx, 5000, &junk) ||
      shmd_tx_set64(tx, (uint64_t *)shmd_resolve(c, p) + 1, 999))
    return 2;
  ts_crash_ready(cc);
  for (;;)
    pause(); /* killed here, holding the lock, mid-transaction */
}

Test(store, crash_lock_holder_killed_no_deadlock) {
  shmd_store_t *s = ts_open("k", 4 << 20, 4 << 20);
  shmd_ptr_t cell;
  cr_assert_eq(shmd_alloc(s, 64, &cell), 0);
  memset(shmd_resolve(s, cell), 0, 64); /* word 0: a shmd_lock_t; word 1: data it protects */
  cr_assert_eq(shmd_root_set(s, "cell", cell), 0);
  ts_crash_proc_t *p = ts_crash_start(NULL, &(ts_crash_spec_t){.what = "the lock holder", .fn = hold_lock_child,
                                                               .store = "k", .opts = ts_opts(4 << 20, 4 << 20),
                                                               .ready = 1, .end = TS_END_KILLED});
  ts_crash_wait_ready(p);
  shmd_stats_t st;
  shmd_stats(s, &st);
  uint64_t during = st.allocated_bytes;
  ts_crash_kill(p);
  ts_crash_finish(p, NULL);
  /* Another process (this one) takes the same lock: it must recover, not hang. */
  shmd_tx_t *tx;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_tx_lock(tx, cell), 0);
  cr_assert_eq(((uint64_t *)shmd_resolve(s, cell))[1], 0, "the dead transaction's store was rolled back");
  cr_assert_eq(shmd_tx_commit(tx), 0);
  shmd_stats(s, &st);
  cr_assert_lt(st.allocated_bytes, during, "the dead transaction's allocation was freed");
  cr_assert_geq(st.recoveries, 1);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}

Test(store, garbage_lock_word_is_taken_over) {
  shmd_store_t *s = ts_open("g", 4 << 20, 4 << 20);
  shmd_ptr_t cell;
  cr_assert_eq(shmd_alloc(s, 64, &cell), 0);
  /* Every lane index in turn: lanes no thread owns, and the index of this very thread's lane
   * (a garbage word that happens to name us must not be mistaken for a lock we took). */
  for (uint32_t lane = 1; lane <= 64; lane++) {
    *(uint32_t *)shmd_resolve(s, cell) = lane;
    shmd_tx_t *tx;
    cr_assert_eq(shmd_tx_begin(s, &tx), 0);
    cr_assert_eq(shmd_tx_lock(tx, cell), 0);
    cr_assert_eq(shmd_tx_commit(tx), 0);
    cr_assert_eq(*(uint32_t *)shmd_resolve(s, cell), 0, "word naming lane %u not released", lane - 1);
  }
  shmd_close(s);
}
