/* SPDX-License-Identifier: MIT */
/*
 * Hostile and damaged stores. A mutation loop flips, zeroes and overwrites bytes of the files of a
 * real store (headers, manifest, lanes, allocator metadata, containers, values) and then opens,
 * recovers, checks, reads and writes it in a child process: every call must return a status, never
 * crash, hang or trip a sanitizer (see hostile.h). Then the planted-file cases test_store.c does
 * not already cover: a segment file missing, a FIFO or a directory where a segment file goes, a
 * symlink planted for an existing store's segment (nothing followed, overwritten or deleted, also
 * by shmd_drop), another user without access, and file modes. Regressions for what the loop found
 * are at the end, one test each. Tests that fork say so (mp_).
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>

#include "hostile.h"
#include "support.h"

TestSuite(hostile, .init = ts_init, .fini = ts_fini, .timeout = 240);

static int sanitized(void) {
#if defined(__SANITIZE_ADDRESS__)
  return 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return 1;
#endif
#endif
  return 0;
}

static void hs_setup(hs_t *h) {
  memset(h, 0, sizeof *h);
  snprintf(h->dir, sizeof h->dir, "%s", ts_dir);
  cr_assert_eq(hs_build(h), 0, "building the store: %s", shmd_errdetail());
  cr_assert_geq(h->nfiles, 3, "expected three segments, got %d", h->nfiles);
  cr_assert_gt(h->nfields, 300, "field table of %zu entries", h->nfields);
  /* On by default since lane mutexes held by no live owner are recovered (issue 12 item 4): one
   * HS_LANE in 16 forges (each such store waits the 2 s the holder check takes);
   * SHMDICT_HOSTILE_FORGE=N forges one in N, 0 turns it off. */
  h->forge = getenv("SHMDICT_HOSTILE_FORGE") ? atoi(getenv("SHMDICT_HOSTILE_FORGE")) : 16;
}

static void hs_free(hs_t *h) {
  for (int i = 0; i < h->nfiles; i++) {
    free(h->f[i].pristine);
    free(h->f[i].nz);
  }
  free(h->fields);
}

/* Runs hs_exercise() in a child bounded in time (the pristine exercise takes tens of ms; a slow
 * loop counts as a hang); returns the child's status, TS_HUNG for a hang. */
static int exercise_child(ts_crash_child_t *cc) {
  int ok = 0;
  int rc = hs_exercise(cc->arg, &ok);
  ts_crash_report(cc, &ok);
  return rc ? 3 : 0;
}

static void take_ok(const void *rec, void *arg) { memcpy(arg, rec, sizeof(int)); }

static int exercise_in_child(hs_t *h, int *checked_ok) {
  *checked_ok = -1;
  return ts_crash_run(NULL,
                      &(ts_crash_spec_t){.what = "the exercise", .fn = exercise_child, .arg = h,
                                         .rec_size = sizeof(int), .on_rec = take_ok, .rec_arg = checked_ok,
                                         .timeout_ms = sanitized() ? 30000 : 10000, .hang_ok = 1,
                                         .end = TS_END_ANY},
                      NULL);
}

/* Runs fn(arg) in a child that must end within `secs` seconds (a hang fails the test, saying so);
 * returns its exit status. */
static int in_child(const char *what, ts_crash_fn fn, void *arg, long secs) {
  return ts_crash_run(NULL,
                      &(ts_crash_spec_t){.what = what, .fn = fn, .arg = arg, .timeout_ms = secs * 1000,
                                         .end = TS_END_ANY},
                      NULL);
}

Test(hostile, mp_mutation_loop, .timeout = 86400) { /* long runs; meson bounds CI */
  hs_t h;
  hs_setup(&h);
  long iters = getenv("SHMDICT_HOSTILE_ITERS") ? atol(getenv("SHMDICT_HOSTILE_ITERS"))
                                                : (sanitized() ? 600 : 1500);
  ts_rng_t g = {ts_seed("mp_mutation_loop")};
  /* SHMDICT_HOSTILE_REPLAY="file,kind,pos,val;..." runs one given mutation program */
  const char *replay = getenv("SHMDICT_HOSTILE_REPLAY");
  if (replay)
    iters = 1;
  int opened_clean = 0, refused = 0;
  for (long it = 0; it < iters; it++) {
    cr_assert_eq(hs_restore(&h), 0);
    hs_mut_t mu[8];
    int n = ts_below(&g, 10) < 7 ? 1 : 2 + (int)ts_below(&g, 7);
    for (int i = 0; replay && i < 8; i++) {
      unsigned f, k, pos;
      unsigned long long v;
      int used = 0;
      if (sscanf(replay, "%u,%u,%u,%llu%n", &f, &k, &pos, &v, &used) != 4) {
        n = i;
        break;
      }
      mu[i] = (hs_mut_t){(uint8_t)f, (uint8_t)k, pos, v};
      hs_apply(&h, &mu[i]);
      replay += used;
      n = i + 1;
      if (*replay == ';')
        replay++;
    }
    for (int i = 0; !replay && i < n; i++) {
      /* segment 0 (headers, manifest, roots, lanes, metadata, most values) gets most of them */
      mu[i].file = (uint8_t)(ts_below(&g, 4) ? 0 : 1 + ts_below(&g, 7));
      mu[i].pos = (uint32_t)ts_next(&g);
      mu[i].val = ts_below(&g, 3) ? ts_next(&g) : ts_below(&g, 5000);
      uint64_t sort = ts_below(&g, 100);
      if (sort < 40) {
        /* structure-aware: a named field of the layout, checksum recomputed (hostile.h) */
        mu[i].kind = HS_FIELD;
        mu[i].val = ts_next(&g);
      } else if (sort < 50) {
        /* structure-aware: a lane left as a dead thread's, with stale or forged logs */
        mu[i].kind = HS_LANE;
        mu[i].val = ts_next(&g);
      } else {
        uint64_t k = ts_below(&g, 100);
        mu[i].kind = (uint8_t)(k < 20 ? HS_FLIP : k < 35 ? HS_ZERO : k < 50 ? HS_SET : k < 65 ? HS_COPY
                               : k < 78 ? HS_ADD : k < 90 ? HS_ANY : k < 98 ? HS_RANGE : HS_TRUNC);
        if (ts_below(&g, 8) == 0)
          mu[i].kind |= HS_FIXSUM; /* blind damage to a header, its checksum recomputed */
      }
      hs_apply(&h, &mu[i]);
    }
    int ok;
    int st = exercise_in_child(&h, &ok);
    if (st != 0) {
      /* keep the damaged files for a post-mortem: the same mutations on a fresh copy */
      char save[256];
      snprintf(save, sizeof save, "/tmp/shmdict-hostile-fail-XXXXXX");
      if (hs_restore(&h) == 0 && mkdtemp(save)) {
        for (int i = 0; i < n; i++)
          hs_apply(&h, &mu[i]);
        ts_run_t cp = ts_sh("cp -a %s %s/", h.sdir, save);
        if (cp.status == 0)
          cr_log_error("damaged store saved in %s/%s", save, HS_NAME);
        ts_run_free(&cp);
      }
      for (int i = 0; i < n; i++)
        cr_log_error("mutation %d: file %u kind %u pos %u val %llu%s%s", i, mu[i].file % h.nfiles, mu[i].kind,
                     mu[i].pos, (unsigned long long)mu[i].val, (mu[i].kind & 0x7f) % HS_NKINDS == HS_FIELD ? ": " : "",
                     (mu[i].kind & 0x7f) % HS_NKINDS == HS_FIELD ? h.fields[mu[i].pos % h.nfields].name : "");
      char prog[1024];
      size_t pl = 0;
      for (int i = 0; i < n && pl < sizeof prog - 64; i++)
        pl += (size_t)snprintf(prog + pl, sizeof prog - pl, "%s%u,%u,%u,%llu", i ? ";" : "", mu[i].file, mu[i].kind,
                               mu[i].pos, (unsigned long long)mu[i].val);
      cr_log_error("replay: SHMDICT_HOSTILE_REPLAY='%s'", prog);
      cr_assert_fail("iteration %ld: the exercise ended with %d (%s)", it, st,
                     st == TS_HUNG ? "hang" : st == 3 ? "a call returned a non-status" : "crash");
    }
    opened_clean += ok == 1;
    refused += ok == 0;
  }
  cr_log_info("%ld damaged stores: %d passed the checks (damage in unused bytes or values), %d were refused or "
              "reported corrupt",
              iters, opened_clean, refused);
  hs_free(&h);
}

/* The pristine store passes every check and the whole exercise (so that the loop above tests the
 * damage, not the exercise). */
Test(hostile, pristine_exercise_is_clean) {
  hs_t h;
  hs_setup(&h);
  int ok;
  cr_assert_eq(exercise_in_child(&h, &ok), 0);
  cr_assert_eq(ok, 1);
  cr_assert_eq(hs_restore(&h), 0);
  cr_assert_eq(exercise_in_child(&h, &ok), 0);
  cr_assert_eq(ok, 1);
  hs_free(&h);
}

/* Every field of the segment headers (checksum recomputed), the manifest, its segment table and
 * the roots, each given each of hostile.h's 20 generic hostile values (0, all ones, off by one,
 * misaligned, sums that wrap past 2^64, the file's size, another field's value...; the first 12
 * under ASan, a shorter slice): open, the
 * statistics and information `shmdict info` shows, recovery and both checks answer a status,
 * never crash or hang (and with the checks passed, reads and writes too). Issue 12 item 3: before
 * the overflow-free validation, alloc_off = 2^64 - 2^40 with alloc_bytes = 2^40 passed the header
 * check and the allocator checker read far outside the segment (SIGSEGV).
 * SHMDICT_HOSTILE_SWEEP=all sweeps every field of the table with all 26 kinds of value (lanes,
 * allocator headers, container headers, heaps and the depot too: about 13 000 stores). */
Test(hostile, mp_hostile_header_fields, .timeout = 86400) { /* long runs: see the comment */
  hs_t h;
  hs_setup(&h);
  int all = getenv("SHMDICT_HOSTILE_SWEEP") && strcmp(getenv("SHMDICT_HOSTILE_SWEEP"), "all") == 0;
  ts_rng_t g = {20261212};
  long runs = 0, passed = 0;
  for (size_t fi = 0; fi < h.nfields; fi++) {
    const hs_field_t *x = &h.fields[fi];
    if (!all && strstr(x->name, ".hdr.") == NULL && strncmp(x->name, "man.", 4) != 0 &&
        strncmp(x->name, "root[", 5) != 0)
      continue;
    /* CI: the 20 generic values (the first 12, the bound breakers, under ASan: a shorter slice) */
    for (uint64_t choice = 0; choice < (all ? 26u : sanitized() ? 12u : 20u); choice++) {
      hs_mut_t mu = {0, HS_FIELD, (uint32_t)fi, choice + 26 * (ts_next(&g) >> 8)};
      cr_assert_eq(hs_restore(&h), 0);
      hs_apply(&h, &mu);
      int ok;
      int st = exercise_in_child(&h, &ok);
      char path[700];
      snprintf(path, sizeof path, "%s/%s", h.sdir, h.f[x->file].name);
      uint64_t now = 0;
      int fd = open(path, O_RDONLY);
      if (fd >= 0) {
        if (pread(fd, &now, x->width, x->off) != (ssize_t)x->width)
          now = 0;
        close(fd);
      }
      cr_assert_eq(st, 0, "%s = %#llx (value choice %llu): the exercise ended with %d (%s); replay with "
                   "SHMDICT_HOSTILE_REPLAY='0,%u,%u,%llu'", x->name, (unsigned long long)now,
                   (unsigned long long)choice, st,
                   st == 128 + SIGALRM ? "hang" : st == 3 ? "a call returned a non-status" : "crash",
                   HS_FIELD, mu.pos, (unsigned long long)mu.val);
      runs++;
      passed += ok == 1;
    }
  }
  cr_log_info("%ld hostile field values: %ld stores passed the checks, the others were refused or reported corrupt",
              runs, passed);
  cr_assert_gt(runs, 900);
  hs_free(&h);
}

/* ---- planted and missing files ---- */

static void store_path(char *out, size_t n, const char *store, const char *file) {
  snprintf(out, n, "%s/%s/%s", ts_dir, store, file);
}

static void find_seg(const char *store, const char *prefix, char *out, size_t n) {
  char dir[512];
  snprintf(dir, sizeof dir, "%s/%s", ts_dir, store);
  DIR *d = opendir(dir);
  cr_assert_not_null(d);
  struct dirent *e;
  out[0] = 0;
  while ((e = readdir(d)) != NULL)
    if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
      snprintf(out, n, "%s", e->d_name);
  closedir(d);
  cr_assert_neq(out[0], 0, "no %s* in %s", prefix, dir);
}

static void make_two_segment_store(const char *name) {
  shmd_store_t *s = ts_open(name, 4 << 20, 1 << 20);
  shmd_ptr_t p;
  cr_assert_eq(shmd_alloc(s, 700 << 10, &p), 0);
  cr_assert_eq(shmd_root_set(s, "big", p), 0);
  char *b = shmd_resolve(s, p);
  strcpy(b, "in segment 1");
  shmd_close(s);
}

static int use_big(const char *name, int *resolve_rc) {
  shmd_options_t o = ts_opts(4 << 20, 1 << 20);
  o.flags = SHMD_OPEN_NOCREATE;
  shmd_store_t *s = NULL;
  int rc = shmd_open(name, &o, &s);
  if (rc)
    return rc;
  shmd_ptr_t p;
  void *a;
  cr_assert_eq(shmd_root_get(s, "big", &p), 0);
  *resolve_rc = shmd_resolve_checked(s, p, 16, &a);
  rc = shmd_alloc_check(s);
  /* the rest of the store stays usable */
  shmd_ptr_t q;
  cr_assert_eq(shmd_alloc(s, 100, &q), 0);
  cr_assert_eq(shmd_free(s, q), 0);
  shmd_close(s);
  return rc;
}

Test(hostile, segment_file_missing) {
  make_two_segment_store("m");
  char name[64], path[512];
  find_seg("m", "seg-00001-", name, sizeof name);
  store_path(path, sizeof path, "m", name);
  cr_assert_eq(unlink(path), 0);
  int rrc = 0;
  cr_assert_eq(use_big("m", &rrc), SHMD_ECORRUPT, "%s", shmd_errdetail());
  cr_assert_eq(rrc, SHMD_ECORRUPT);
  cr_assert_not_null(strstr(shmd_errdetail(), name), "detail names the file: %s", shmd_errdetail());
  /* nothing was created in its place */
  struct stat st;
  cr_assert_neq(stat(path, &st), 0);
}

Test(hostile, fifo_or_directory_where_a_segment_goes) {
  make_two_segment_store("f");
  char name[64], path[512];
  find_seg("f", "seg-00001-", name, sizeof name);
  store_path(path, sizeof path, "f", name);
  cr_assert_eq(unlink(path), 0);
  cr_assert_eq(mkfifo(path, 0600), 0); /* opening a FIFO for reading alone would block */
  int rrc = 0;
  cr_assert_eq(use_big("f", &rrc), SHMD_ECORRUPT, "%s", shmd_errdetail());
  cr_assert_eq(rrc, SHMD_ECORRUPT);
  struct stat st;
  cr_assert_eq(lstat(path, &st), 0);
  cr_assert(S_ISFIFO(st.st_mode), "the FIFO is left alone");
  cr_assert_eq(unlink(path), 0);
  cr_assert_eq(mkdir(path, 0700), 0);
  cr_assert_eq(use_big("f", &rrc), SHMD_ECORRUPT, "%s", shmd_errdetail());
  cr_assert_eq(lstat(path, &st), 0);
  cr_assert(S_ISDIR(st.st_mode));
  /* the same in place of segment 0: a status, not a hang */
  store_path(path, sizeof path, "f", "seg-00000");
  cr_assert_eq(unlink(path), 0);
  cr_assert_eq(mkfifo(path, 0600), 0);
  shmd_options_t o = ts_opts(4 << 20, 1 << 20);
  shmd_store_t *s = NULL;
  int rc = shmd_open("f", &o, &s);
  cr_assert_lt(rc, 0);
  cr_assert_null(s);
  cr_assert_eq(lstat(path, &st), 0);
  cr_assert(S_ISFIFO(st.st_mode));
}

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
  cr_assert_geq(fd, 0);
  cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
}

static void expect_file(const char *path, const char *text) {
  char buf[64] = {0};
  int fd = open(path, O_RDONLY);
  cr_assert_geq(fd, 0, "%s is gone", path);
  cr_assert_eq(read(fd, buf, sizeof buf - 1), (ssize_t)strlen(text));
  close(fd);
  cr_assert_str_eq(buf, text);
}

Test(hostile, symlinks_planted_in_an_existing_store) {
  make_two_segment_store("l");
  char victim[512], name[64], path[512];
  snprintf(victim, sizeof victim, "%s/victim", ts_dir);
  write_file(victim, "precious");
  /* a symlink in place of segment 1 */
  find_seg("l", "seg-00001-", name, sizeof name);
  store_path(path, sizeof path, "l", name);
  cr_assert_eq(unlink(path), 0);
  cr_assert_eq(symlink(victim, path), 0);
  int rrc = 0;
  cr_assert_eq(use_big("l", &rrc), SHMD_ECORRUPT);
  cr_assert_eq(rrc, SHMD_ECORRUPT);
  cr_assert_not_null(strstr(shmd_errdetail(), "symbolic link") ?: strstr(shmd_errdetail(), "link"), "%s",
                     shmd_errdetail());
  expect_file(victim, "precious");
  /* a symlink in place of segment 0 of an existing store (a copy of the real file elsewhere) */
  char real0[512], copy0[512];
  store_path(real0, sizeof real0, "l", "seg-00000");
  snprintf(copy0, sizeof copy0, "%s/copy0", ts_dir);
  cr_assert_eq(rename(real0, copy0), 0);
  cr_assert_eq(symlink(copy0, real0), 0);
  shmd_options_t o = ts_opts(4 << 20, 1 << 20);
  shmd_store_t *s = NULL;
  cr_assert_eq(shmd_open("l", &o, &s), SHMD_ELOOP, "%s", shmd_errdetail());
  cr_assert_null(s);
  struct stat st;
  cr_assert_eq(lstat(real0, &st), 0);
  cr_assert(S_ISLNK(st.st_mode), "the planted link is neither replaced nor removed");
  /* a planted extra link: dropping the store removes the link, never its target */
  char extra[512];
  store_path(extra, sizeof extra, "l", "seg-00002-deadbeef");
  cr_assert_eq(symlink(victim, extra), 0);
  cr_assert_eq(shmd_drop("l", ts_dir), 0);
  expect_file(victim, "precious");
  cr_assert_eq(stat(copy0, &st), 0, "the symlinked segment 0's target survives the drop");
}

Test(hostile, store_directory_is_a_symlink) {
  char real[512], link[512], victim[512];
  snprintf(real, sizeof real, "%s/elsewhere", ts_dir);
  cr_assert_eq(mkdir(real, 0700), 0);
  snprintf(victim, sizeof victim, "%s/keep", real);
  write_file(victim, "precious");
  snprintf(link, sizeof link, "%s/sl", ts_dir);
  cr_assert_eq(symlink(real, link), 0);
  shmd_options_t o = ts_opts(4 << 20, 1 << 20);
  shmd_store_t *s = NULL;
  int rc = shmd_open("sl", &o, &s);
  /* either refused, or a store is made inside the target directory; the target's files live on */
  if (rc == 0)
    shmd_close(s);
  else
    cr_assert_null(s);
  rc = shmd_drop("sl", ts_dir);
  cr_assert(hs_status_ok(rc));
  expect_file(victim, "precious");
}

Test(hostile, files_not_ours) {
  char dir[512], path[512];
  snprintf(dir, sizeof dir, "%s/n", ts_dir);
  cr_assert_eq(mkdir(dir, 0700), 0);
  store_path(path, sizeof path, "n", "seg-00000");
  shmd_options_t o = ts_opts(4 << 20, 1 << 20);
  shmd_store_t *s = NULL;
  /* a text file, a zero-filled file of a plausible size, random bytes */
  write_file(path, "just some text, not a store\n");
  int rc = shmd_open("n", &o, &s);
  cr_assert(rc == SHMD_ETRUNCATED || rc == SHMD_ENOTSTORE, "%s", shmd_err_name(rc));
  cr_assert_null(s);
  expect_file(path, "just some text, not a store\n");
  cr_assert_eq(truncate(path, 4 << 20), 0);
  cr_assert_eq(shmd_open("n", &o, &s), SHMD_ENOTSTORE, "%s", shmd_errdetail());
  int fd = open(path, O_WRONLY);
  ts_rng_t g = {42};
  for (int i = 0; i < 1024; i++) {
    uint64_t v = ts_next(&g);
    cr_assert_eq(write(fd, &v, 8), 8);
  }
  close(fd);
  cr_assert_eq(shmd_open("n", &o, &s), SHMD_ENOTSTORE);
  cr_assert_neq(strlen(shmd_errdetail()), 0);
  struct stat st;
  cr_assert_eq(stat(path, &st), 0);
  cr_assert_eq(st.st_size, 4 << 20, "a file that is not ours is not resized");
}

Test(hostile, file_modes) {
  make_two_segment_store("p");
  char dir[512];
  snprintf(dir, sizeof dir, "%s/p", ts_dir);
  DIR *d = opendir(dir);
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat st;
    cr_assert_eq(lstat(path, &st), 0);
    cr_assert(S_ISREG(st.st_mode));
    cr_assert_eq(st.st_mode & 0777, 0600, "%s has mode %o", e->d_name, st.st_mode & 0777);
    n++;
  }
  closedir(d);
  cr_assert_eq(n, 2);
  struct stat st;
  cr_assert_eq(stat(dir, &st), 0);
  cr_assert_eq(st.st_mode & 0077, 0, "the store directory is private: %o", st.st_mode & 0777);
}

static int other_user_child(ts_crash_child_t *cc) {
  (void)cc;
  if (setgid(65534) || setuid(65534))
    return 10;
  shmd_options_t o = ts_opts(4 << 20, 1 << 20);
  o.flags = SHMD_OPEN_NOCREATE;
  shmd_store_t *s = NULL;
  int rc = shmd_open("u", &o, &s);
  if (rc != SHMD_EPERM || s != NULL)
    return 11;
  if (strlen(shmd_errdetail()) == 0)
    return 12;
  /* the same for creating a new store in a directory it may not write */
  o.flags = 0;
  rc = shmd_open("u2", &o, &s);
  if (rc != SHMD_EPERM || s != NULL)
    return 13;
  return 0;
}

/* Another user without access: refused with EPERM and a message naming the file, not a crash.
 * Needs root to switch users; skipped otherwise. */
Test(hostile, mp_other_user_is_refused) {
  if (geteuid() != 0) {
    cr_log_info("not root: skipped");
    return;
  }
  make_two_segment_store("u");
  chmod(ts_dir, 0755); /* the parent is traversable; the store's own directory and files are not */
  cr_assert_eq(in_child("the other user", other_user_child, NULL, 60), 0);
  int rrc = 0;
  cr_assert_eq(use_big("u", &rrc), 0, "the owner still opens it");
  cr_assert_eq(rrc, 0);
}

/* ---- regressions: one test per bug the mutation loop found ---- */

#include "kv/kv_int.h"

typedef struct {
  const char *key;
  shmd_ptr_t a;
} find_t;

static int find_visit(const void *key, size_t klen, const void *val, size_t vlen, void *arg) {
  find_t *f = arg;
  if (klen == strlen(f->key) && memcmp(key, f->key, klen) == 0 && vlen == sizeof(kv_rec_t) + 16)
    memcpy(&f->a, (const char *)val + sizeof(kv_rec_t), 8);
  return 0;
}

/* The container behind a key of database 0 (walks the stripe hashes). */
static shmd_ptr_t container_of_key(shmd_store_t *s, const char *key) {
  shmd_tx_t *tx;
  shmd_ptr_t dp;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(kv_db_get(tx, 0, 0, &dp), 0);
  cr_assert_eq(shmd_tx_commit(tx), 0);
  kv_db_t *d;
  cr_assert_eq(kv_db_view(s, dp, &d), 0);
  find_t f = {key, shmd_ptr_null()};
  for (unsigned i = 0; i < KV_STRIPES; i++) {
    uint64_t cur = 0;
    do
      cr_assert_eq(shmd_hash_scan(s, d->stripe[i], cur, 100, find_visit, &f, &cur), 0);
    while (cur);
  }
  cr_assert_neq(f.a.v, 0, "key %s not found", key);
  return f.a;
}

static int kv_line(shmd_store_t *s, const char *line) { return hs_cmd(s, 0, line); }

/* DEL of a damaged hash, then a drain: statuses, not a crash or a hang. */
static int del_damaged_hash_child(ts_crash_child_t *cc) {
  (void)cc;
  shmd_options_t o = ts_opts(4 << 20, 1 << 20);
  shmd_store_t *c;
  if (shmd_open("g", &o, &c))
    return 2;
  int rc = kv_line(c, "DEL hk");
  if (!hs_status_ok(rc))
    return 3;
  rc = shmd_kv_drain(c, 0, 0);
  return rc == SHMD_ECORRUPT ? 0 : 4;
}

/* Found by the loop: a hash on the garbage list whose entries the scan lists but a lookup by key
 * cannot find (its seed damaged) made every drain step "progress" for ever: DEL hung. Now the
 * drain answers SHMD_ECORRUPT. */
Test(hostile, mp_drain_of_undeletable_hash_does_not_hang) {
  shmd_store_t *s = ts_open("g", 4 << 20, 1 << 20);
  char line[2048];
  size_t pos = (size_t)sprintf(line, "HSET hk");
  for (int i = 0; i < 40; i++)
    pos += (size_t)sprintf(line + pos, " f%d v%d", i, i);
  cr_assert_eq(kv_line(s, line), 0);
  shmd_ptr_t h = container_of_key(s, "hk");
  shmd_hash_stats_t st;
  cr_assert_eq(shmd_hash_stats(s, h, &st), 0);
  uint64_t *w = shmd_resolve(s, h);
  int found = 0;
  for (int i = 0; i < 32 && !found; i++)
    if (w[i] == st.seed) {
      w[i] ^= 0x5555;
      found = 1;
    }
  cr_assert(found, "hash seed not found in the header");
  cr_assert_eq(in_child("the deleter", del_damaged_hash_child, NULL, 20), 0, "DEL of a damaged hash must end with a status");
  shmd_close(s);
}

#include "alloc/alloc_int.h"
#include "segments/store_int.h"

/* Found by the loop: shmd_stats(), shmd_usable_size() and shmd_free() used the page count and
 * offsets of a damaged allocator header (a SIGSEGV far outside the segment). Now ECORRUPT (0 from
 * shmd_usable_size), as the checker. */
Test(hostile, stats_with_damaged_allocator_header) {
  shmd_store_t *s = ts_open("st", 4 << 20, 1 << 20);
  shmd_ptr_t p;
  cr_assert_eq(shmd_alloc(s, 100, &p), 0);
  shmd_stats_t st;
  cr_assert_eq(shmd_stats(s, &st), 0);
  struct shmd__seg_alloc *sa = shmd__sa(shmd__seg(s, 0));
  uint64_t saved = sa->page_count;
  sa->page_count = UINT64_C(1) << 40;
  cr_assert_eq(shmd_stats(s, &st), SHMD_ECORRUPT);
  cr_assert_eq(shmd_alloc_check(s), SHMD_ECORRUPT);
  sa->page_count = saved;
  uint64_t off = sa->pagemap_off;
  sa->pagemap_off = UINT64_C(1) << 44;
  cr_assert_eq(shmd_stats(s, &st), SHMD_ECORRUPT);
  cr_assert_eq(shmd_usable_size(s, p), 0);
  cr_assert_eq(shmd_free(s, p), SHMD_ECORRUPT);
  sa->pagemap_off = off;
  cr_assert_eq(shmd_free(s, p), 0);
  cr_assert_eq(shmd_stats(s, &st), 0);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}

/* Found by the loop under UBSan: a list link damaged to an odd address was bounds-checked but not
 * alignment-checked, and reading the node through it is undefined behaviour (UBSan: misaligned
 * access). Now ECORRUPT. Meaningful in the sanitizer build, harmless elsewhere. */
Test(hostile, misaligned_list_link) {
  shmd_store_t *s = ts_open("al", 4 << 20, 1 << 20);
  cr_assert_eq(kv_line(s, "RPUSH l a b c"), 0);
  shmd_ptr_t l = container_of_key(s, "l");
  uint64_t *w = shmd_resolve(s, l); /* the header: magic, lock, then the sentinel's next link */
  cr_assert_eq(w[2] >> 48, l.v >> 48, "word 2 of the header is not a link");
  w[2] += 2; /* an odd node address */
  cr_assert_eq(shmd_kv_check(s), SHMD_ECORRUPT);
  shmd_close(s);
}

/* Found by the fuzzer under UBSan: a manifest whose lane (or root) offset is in bounds but not
 * 8-aligned was accepted, and every lane access was then misaligned. Now refused as ECORRUPT. */
Test(hostile, misaligned_lane_offset_is_refused) {
  shmd_store_t *s = ts_open("lo", 4 << 20, 1 << 20);
  shmd_close(s);
  char path[512];
  store_path(path, sizeof path, "lo", "seg-00000");
  int fd = open(path, O_RDWR);
  cr_assert_geq(fd, 0);
  struct shmd__seg_hdr h;
  cr_assert_eq(pread(fd, &h, sizeof h, 0), (ssize_t)sizeof h);
  off_t at = (off_t)(h.manifest_off + offsetof(struct shmd__manifest, lanes_off));
  uint64_t lanes_off;
  cr_assert_eq(pread(fd, &lanes_off, 8, at), 8);
  lanes_off += 4;
  cr_assert_eq(pwrite(fd, &lanes_off, 8, at), 8);
  /* one lane fewer, so that the shifted lanes still end in bounds */
  off_t cat = (off_t)(h.manifest_off + offsetof(struct shmd__manifest, lane_count));
  uint32_t lane_count;
  cr_assert_eq(pread(fd, &lane_count, 4, cat), 4);
  lane_count--;
  cr_assert_eq(pwrite(fd, &lane_count, 4, cat), 4);
  close(fd);
  shmd_options_t o = ts_opts(4 << 20, 1 << 20);
  o.flags = SHMD_OPEN_NOCREATE;
  s = NULL;
  cr_assert_eq(shmd_open("lo", &o, &s), SHMD_ECORRUPT, "%s", shmd_errdetail());
  cr_assert_null(s);
}

/* Found by the fuzzer under UBSan: the keyspace root named by a damaged root entry (or a database
 * pointer) at an odd address was bounds-checked only; reading it was misaligned. Now ECORRUPT. */
Test(hostile, misaligned_keyspace_root) {
  shmd_store_t *s = ts_open("kr", 4 << 20, 1 << 20);
  cr_assert_eq(kv_line(s, "SET a b"), 0);
  shmd_close(s);
  s = ts_open("kr", 4 << 20, 1 << 20); /* a fresh handle: no cached root */
  shmd_ptr_t root = shmd_ptr_null();
  int found = 0;
  struct shmd__root *r = (struct shmd__root *)(void *)((unsigned char *)shmd__seg(s, 0) + s->man->roots_off);
  for (uint32_t i = 0; i < s->man->root_cap && !found; i++)
    if (r[i].name[0] && r[i].ptr) {
      root.v = r[i].ptr;
      r[i].ptr += 1; /* the only root: the keyspace's */
      found = 1;
    }
  cr_assert(found);
  cr_assert_eq(shmd_kv_check(s), SHMD_ECORRUPT);
  size_t len;
  cr_assert_eq(shmd_kv_get(s, 0, "a", 1, NULL, 0, &len), SHMD_ECORRUPT);
  (void)root;
  shmd_close(s);
}

static int mutex_kind_child(ts_crash_child_t *cc) {
  (void)cc;
  shmd_options_t o = ts_opts(4 << 20, 1 << 20);
  shmd_store_t *c = NULL;
  int rc = shmd_open("mk", &o, &c);
  if (rc == 0)
    rc = shmd_recover(c);
  return rc == SHMD_ECORRUPT ? 0 : 1;
}

/* Found by the loop: a damaged kind word in a lane's liveness mutex sent glibc's trylock down its
 * lock-elision path (xbegin: SIGILL on a CPU without TSX). Now ECORRUPT, checked before the call. */
Test(hostile, damaged_lane_mutex_kind) {
  shmd_store_t *s = ts_open("mk", 4 << 20, 1 << 20);
  shmd_ptr_t p;
  cr_assert_eq(shmd_alloc(s, 100, &p), 0); /* this thread's lane is claimed now */
  uint32_t victim = UINT32_MAX;
  for (uint32_t i = 0; i < s->man->lane_count && victim == UINT32_MAX; i++)
    if (shmd__lane_at(s, i)->owner_pid != (uint32_t)getpid())
      victim = i;
  cr_assert_neq(victim, UINT32_MAX);
  struct shmd__lane *l = shmd__lane_at(s, victim);
  int saved = l->live.m.__data.__kind;
  l->live.m.__data.__kind = saved | 256; /* glibc's PTHREAD_MUTEX_ELISION_NP */
  cr_assert_eq(in_child("the opener", mutex_kind_child, NULL, 60), 0, "a damaged lane mutex must give ECORRUPT (132 = SIGILL)");
  l->live.m.__data.__kind = saved;
  cr_assert_geq(shmd_recover(s), 0);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}

/* Found by the loop: a depot (or thread heap) count raised by damage exposes empty slots below it,
 * and the checks skipped empty slots, so they passed a store whose next allocation returned the
 * null pointer as a block (HSET then wrote through it). Now the checks report such a slot. */
Test(hostile, raised_cache_count_is_reported) {
  shmd_store_t *s = ts_open("cc", 4 << 20, 1 << 20);
  shmd_ptr_t p[100];
  for (int i = 0; i < 100; i++)
    cr_assert_eq(shmd_alloc(s, 48, &p[i]), 0);
  for (int i = 0; i < 100; i++)
    cr_assert_eq(shmd_free(s, p[i]), 0); /* the heap fills, half of it goes to the depot */
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  struct shmd__depot *d = shmd__depot_of(s);
  cr_assert_not_null(d, "stores of layout 1.3 have a depot");
  uint32_t c = 0;
  while (c < SHMD__NCLASSES && d->cls[c].bin.count == 0)
    c++;
  cr_assert_lt(c, SHMD__NCLASSES, "the frees reached the depot");
  uint32_t saved = d->cls[c].bin.count;
  cr_assert_lt(saved, d->cls[c].bin.limit);
  d->cls[c].bin.count = saved + 1;
  cr_assert_eq(shmd_alloc_check(s), SHMD_ECORRUPT);
  cr_log_info("%s", shmd_errdetail());
  d->cls[c].bin.count = saved;
  /* The same for a thread heap (one object out first, so that its stack is not full). */
  shmd_ptr_t x;
  cr_assert_eq(shmd_alloc(s, 48, &x), 0);
  struct shmd__heap *hp = NULL;
  for (uint32_t i = 0; i < s->man->lane_count && hp == NULL; i++)
    hp = shmd__heap_of(s, i);
  cr_assert_not_null(hp);
  uint32_t n = hp->bin[c].count;
  cr_assert_lt(n, hp->bin[c].limit);
  hp->slot[c][n] = 0;
  hp->bin[c].count = n + 1;
  cr_assert_eq(shmd_alloc_check(s), SHMD_ECORRUPT);
  hp->bin[c].count = n;
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  cr_assert_eq(shmd_free(s, x), 0);
  shmd_close(s);
}

/* Layout 1.4: a slab whose every slot has been handed out carries its class in the page map, and
 * the lock-free free trusts it. The checker holds it to the slab header: a wrong class byte, one on
 * a slab that is not full yet, or one left on a free block is reported. Frees of the full slab's
 * objects still work and keep the byte. */
Test(hostile, page_map_class_byte) {
  shmd_store_t *s = ts_open("cb", 4 << 20, 1 << 20);
  struct shmd__seg_hdr *h = shmd__seg(s, 0);
  struct shmd__seg_alloc *sa = shmd__sa(h);
  unsigned char *pm = shmd__pagemap(h, sa);
  cr_assert_eq(h->layout_minor, SHMD_LAYOUT_MINOR);
  /* 1000 objects of 1024 bytes: 63 to a slab, so the first slabs fill up. */
  enum { N = 1000 };
  static shmd_ptr_t p[N];
  for (int i = 0; i < N; i++)
    cr_assert_eq(shmd_alloc(s, 1024, &p[i]), 0);
  uint64_t page = (shmd_ptr_offset(p[0]) - sa->data_off) / SHMD_PAGE_BYTES & ~(uint64_t)15;
  const struct shmd__slab *sl = (const void *)((unsigned char *)h + sa->data_off + page * SHMD_PAGE_BYTES);
  uint32_t c = sl->magic_class & 0xff;
  cr_assert_eq(pm[page], PM_SLAB | SHMD__SLAB_ORDER);
  cr_assert_eq(pm[page + SHMD__PM_CLASS_PAGE], c + 1, "a full slab of class %u has class byte %02x", c,
               pm[page + SHMD__PM_CLASS_PAGE]);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  pm[page + SHMD__PM_CLASS_PAGE] = (unsigned char)(c + 2);
  cr_assert_eq(shmd_alloc_check(s), SHMD_ECORRUPT);
  cr_assert(strstr(shmd_errdetail(), "class byte") != NULL, "%s", shmd_errdetail());
  pm[page + SHMD__PM_CLASS_PAGE] = 0;
  cr_assert_eq(shmd_alloc_check(s), SHMD_ECORRUPT);
  pm[page + SHMD__PM_CLASS_PAGE] = (unsigned char)(c + 1);
  for (int i = 0; i < N; i++)
    cr_assert_eq(shmd_free(s, p[i]), 0);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}

/* A store of layout 1.3 (before the page-map class byte) opened by this library: its slabs never
 * get the byte, so a 1.3 library can still open it afterwards, and the checker accepts it. */
Test(hostile, layout_1_3_store_gets_no_class_byte) {
  shmd_store_t *s = ts_open("old", 4 << 20, 1 << 20);
  shmd_close(s);
  char path[512];
  snprintf(path, sizeof path, "%s/old/seg-00000", ts_dir);
  int fd = open(path, O_RDWR);
  cr_assert_geq(fd, 0);
  struct shmd__seg_hdr hd;
  cr_assert_eq(pread(fd, &hd, sizeof hd, 0), (ssize_t)sizeof hd);
  hd.layout_minor = 3;
  hd.checksum = shmd__fnv1a(&hd, offsetof(struct shmd__seg_hdr, checksum));
  cr_assert_eq(pwrite(fd, &hd, sizeof hd, 0), (ssize_t)sizeof hd);
  close(fd);
  s = ts_open("old", 4 << 20, 1 << 20);
  struct shmd__seg_hdr *h = shmd__seg(s, 0);
  cr_assert_eq(h->layout_minor, 3);
  struct shmd__seg_alloc *sa = shmd__sa(h);
  const unsigned char *pm = shmd__pagemap(h, sa);
  enum { N = 1000 };
  static shmd_ptr_t p[N];
  for (int i = 0; i < N; i++)
    cr_assert_eq(shmd_alloc(s, 1024, &p[i]), 0);
  for (uint64_t pg = 0; pg < sa->page_count; pg++)
    if (pm[pg] == (PM_SLAB | SHMD__SLAB_ORDER))
      cr_assert_eq(pm[pg + SHMD__PM_CLASS_PAGE], 0, "a 1.3 store's slab at page %llu got a class byte",
                   (unsigned long long)pg);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  for (int i = 0; i < N; i++)
    cr_assert_eq(shmd_free(s, p[i]), 0);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}

/* Found by mp_hostile_header_fields under UBSan (issue 12): the manifest's pointers to the heap
 * directory and the depot, and the directory's pointers to heaps, were bounds-checked but not
 * alignment-checked, so a misaligned one was read misaligned (in recovery at open, in statistics
 * and in the checker). Now such a pointer names no structure, and the checker reports it instead
 * of passing a store whose cached objects it can no longer see. */
Test(hostile, misaligned_heap_pointers) {
  shmd_store_t *s = ts_open("hp", 4 << 20, 1 << 20);
  shmd_ptr_t p[40];
  for (int i = 0; i < 40; i++)
    cr_assert_eq(shmd_alloc(s, 48, &p[i]), 0);
  for (int i = 0; i < 40; i++)
    cr_assert_eq(shmd_free(s, p[i]), 0);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  struct shmd__heap_dir *d = shmd_resolve(s, (shmd_ptr_t){s->man->reserved2[SHMD__MAN_HEAP_DIR]});
  cr_assert_not_null(d);
  cr_assert_eq(d->magic, SHMD__HDIR_MAGIC);
  cr_assert_not_null(shmd__depot_of(s));
  uint32_t lane = 0;
  while (lane < d->lanes && d->heap[lane] == 0)
    lane++;
  cr_assert_lt(lane, d->lanes, "a heap exists");
  uint64_t *words[3] = {&s->man->reserved2[SHMD__MAN_HEAP_DIR], &s->man->reserved2[SHMD__MAN_DEPOT], &d->heap[lane]};
  for (int k = 0; k < 3; k++) {
    uint64_t saved = *words[k];
    *words[k] = saved + 4;
    shmd_stats_t st;
    cr_assert_eq(shmd_stats(s, &st), 0);
    cr_assert_eq(shmd_alloc_check(s), SHMD_ECORRUPT, "pointer %d", k);
    cr_log_info("%s", shmd_errdetail());
    *words[k] = saved;
  }
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}

static int undo_layout_child(ts_crash_child_t *cc) {
  (void)cc;
  shmd_options_t o = ts_opts(4 << 20, 1 << 20);
  o.flags = SHMD_OPEN_NOCREATE;
  shmd_store_t *s = NULL;
  int rc = shmd_open("ul", &o, &s);
  if (rc == 0) {
    shmd_stats_t sst;
    rc = shmd_stats(s, &sst);
    if (rc == 0)
      rc = shmd_alloc_check(s);
    shmd_close(s);
  }
  return rc == SHMD_ECORRUPT ? 0 : 1;
}

/* Found by the structure-aware lane mutations (HS_LANE, issue 12): a dead lane's undo log whose
 * entries point into a segment header or the manifest's fixed part was rolled back by the recovery
 * at open, after those words had been validated: a header's alloc_off, the manifest's roots_off,
 * lane_bytes or lane_count changed under the library's feet (SIGSEGV in the checker and in
 * statistics). Now such an entry is refused as ECORRUPT and nothing is written there. */
Test(hostile, mp_forged_undo_into_fixed_layout) {
  make_two_segment_store("ul");
  char p0[512], p1[512], n1[64];
  store_path(p0, sizeof p0, "ul", "seg-00000");
  find_seg("ul", "seg-00001-", n1, sizeof n1);
  store_path(p1, sizeof p1, "ul", n1);
  struct shmd__seg_hdr h;
  struct shmd__manifest m;
  int fd = open(p0, O_RDWR);
  cr_assert_geq(fd, 0);
  cr_assert_eq(pread(fd, &h, sizeof h, 0), (ssize_t)sizeof h);
  cr_assert_eq(pread(fd, &m, sizeof m, (off_t)h.manifest_off), (ssize_t)sizeof m);
  close(fd);
  const struct {
    uint32_t seg;
    uint64_t off;
    uint64_t old;
  } target[] = {
      {1, offsetof(struct shmd__seg_hdr, alloc_off), UINT64_C(1) << 63},
      {0, offsetof(struct shmd__seg_hdr, alloc_off), UINT64_C(1) << 44},
      {0, h.manifest_off + offsetof(struct shmd__manifest, roots_off), UINT64_C(0x7fffffff0000)},
      {0, h.manifest_off + offsetof(struct shmd__manifest, lane_bytes), UINT64_C(0x7fffffff0000)},
      {0, h.manifest_off + offsetof(struct shmd__manifest, file_mode), UINT64_C(0x7fff000001ff)},
  };
  uint64_t lane = m.lanes_off + (m.lane_count - 1) * m.lane_bytes; /* the last lane: never used */
  for (size_t k = 0; k < sizeof target / sizeof target[0]; k++) {
    const char *tp = target[k].seg ? p1 : p0;
    unsigned char before[8192], after[8192];
    fd = open(tp, O_RDONLY);
    cr_assert_eq(pread(fd, before, sizeof before, 0), (ssize_t)sizeof before);
    close(fd);
    /* the dead lane: an active operation whose one undo entry names the target word */
    fd = open(p0, O_RDWR);
    uint32_t st = SHMD__LANE_ACTIVE, n = 1;
    struct shmd__undo u = {((uint64_t)target[k].seg + 1) << SHMD_PTR_OFFSET_BITS | target[k].off, target[k].old};
    cr_assert_eq(pwrite(fd, &st, 4, (off_t)(lane + offsetof(struct shmd__lane, state))), 4);
    cr_assert_eq(pwrite(fd, &n, 4, (off_t)(lane + offsetof(struct shmd__lane, op_len))), 4);
    cr_assert_eq(pwrite(fd, &u, sizeof u, (off_t)(lane + sizeof(struct shmd__lane))), (ssize_t)sizeof u);
    close(fd);
    cr_assert_eq(in_child("the opener", undo_layout_child, NULL, 20), 0, "target %zu: open must answer ECORRUPT (139 = SIGSEGV)", k);
    fd = open(tp, O_RDONLY);
    cr_assert_eq(pread(fd, after, sizeof after, 0), (ssize_t)sizeof after);
    close(fd);
    cr_assert_eq(memcmp(before, after, sizeof before), 0, "target %zu: the fixed layout was written", k);
    /* put the lane back to idle for the next target */
    fd = open(p0, O_RDWR);
    st = SHMD__LANE_IDLE;
    n = 0;
    cr_assert_eq(pwrite(fd, &st, 4, (off_t)(lane + offsetof(struct shmd__lane, state))), 4);
    cr_assert_eq(pwrite(fd, &n, 4, (off_t)(lane + offsetof(struct shmd__lane, op_len))), 4);
    close(fd);
  }
  int rrc = 0;
  cr_assert_eq(use_big("ul", &rrc), 0, "%s", shmd_errdetail());
  cr_assert_eq(rrc, 0);
}

typedef struct {
  const char *key;
  const void *val;
} val_find_t;

static int val_visit(const void *key, size_t klen, const void *val, size_t vlen, void *arg) {
  (void)vlen;
  val_find_t *f = arg;
  if (klen == strlen(f->key) && memcmp(key, f->key, klen) == 0)
    f->val = val;
  return 0;
}

/* The word of the store (in a data area) that holds v; NULL if none. */
static uint64_t *word_holding(shmd_store_t *s, uint64_t v) {
  shmd_store_info_t in;
  cr_assert_eq(shmd_store_info(s, &in), 0);
  for (uint32_t i = 0; i < in.segments; i++) {
    struct shmd__seg_hdr *h = shmd__seg(s, i);
    uint64_t *w = (uint64_t *)(void *)((unsigned char *)h + h->data_off);
    for (uint64_t k = 0; k < h->data_bytes / 8; k++)
      if (w[k] == v)
        return &w[k];
  }
  return NULL;
}

/* Found in the audit of issue 12 (offsets the checkers derive from stored words): a blob pointer
 * (a list element longer than SHMD_LIST_INLINE_MAX), the out-of-line value block of a key (read
 * as a record by shmd_kv_info(), which `shmdict info` calls without checking the hashes first) and
 * an array header were bounds-checked but not alignment-checked, so a damaged odd pointer was read
 * misaligned (UBSan). Now ECORRUPT (or a record copied out). Meaningful in the sanitizer build. */
Test(hostile, misaligned_blob_value_and_array_pointers) {
  shmd_store_t *s = ts_open("mb", 4 << 20, 1 << 20);
  /* a list element in a blob */
  static char line[6000];
  strcpy(line, "RPUSH bl ");
  memset(line + 9, 'b', 5000);
  cr_assert_eq(kv_line(s, line), 0);
  shmd_ptr_t l = container_of_key(s, "bl");
  uint64_t *hw = shmd_resolve(s, l); /* magic, lock, head.next, head.prev, count */
  uint64_t *node = shmd_resolve(s, (shmd_ptr_t){hw[2]}); /* next, prev, len_flags, blob */
  cr_assert_neq(node[2] & ~(UINT64_C(1) << 63), 0);
  cr_assert_eq(shmd_kv_check(s), 0, "%s", shmd_errdetail());
  node[3] += 1;
  cr_assert_eq(shmd_kv_check(s), SHMD_ECORRUPT);
  node[3] -= 1;
  /* a string value out of line */
  strcpy(line, "SET long ");
  memset(line + 9, 'L', 600);
  line[609] = 0;
  cr_assert_eq(kv_line(s, line), 0);
  shmd_tx_t *tx;
  shmd_ptr_t dp;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(kv_db_get(tx, 0, 0, &dp), 0);
  cr_assert_eq(shmd_tx_commit(tx), 0);
  kv_db_t *d;
  cr_assert_eq(kv_db_view(s, dp, &d), 0);
  val_find_t f = {"long", NULL};
  for (unsigned i = 0; i < KV_STRIPES && f.val == NULL; i++) {
    uint64_t cur = 0;
    do
      cr_assert_eq(shmd_hash_scan(s, d->stripe[i], cur, 100, val_visit, &f, &cur), 0);
    while (cur);
  }
  cr_assert_not_null(f.val);
  shmd_ptr_t q = shmd_ptr_from_addr(s, f.val);
  uint64_t *w = word_holding(s, q.v);
  cr_assert_not_null(w, "the entry naming the value block");
  *w += 1;
  for (unsigned db = 0; db < SHMD_KV_DATABASES; db++) {
    shmd_kv_info_t ki;
    cr_assert(hs_status_ok(shmd_kv_info(s, db, &ki)));
  }
  cr_assert_eq(shmd_kv_check(s), SHMD_ECORRUPT);
  *w -= 1;
  cr_assert_eq(shmd_kv_check(s), 0, "%s", shmd_errdetail());
  /* an array header */
  shmd_ptr_t a;
  cr_assert_eq(shmd_array_create(s, 8, 4, &a), 0);
  cr_assert_eq(shmd_array_check(s, a), 0);
  cr_assert_eq(shmd_array_check(s, (shmd_ptr_t){a.v + 4}), SHMD_ECORRUPT);
  shmd_close(s);
}

static int count_visit(const void *d, size_t len, void *arg) {
  (void)d;
  (void)len;
  ++*(uint64_t *)arg;
  return 0;
}

typedef struct {
  shmd_store_t *s;
  shmd_ptr_t hp, lp;
  int which;
} cycle_arg_t;

/* Through the parent's mapping: the checks and walks answer ECORRUPT, not hang. */
static int cycle_child(ts_crash_child_t *cc) {
  const cycle_arg_t *a = cc->arg;
  int rc = shmd_kv_check(a->s);
  if (rc != SHMD_ECORRUPT)
    return 1;
  for (unsigned db = 0; db < SHMD_KV_DATABASES; db++) {
    shmd_kv_info_t ki;
    if (!hs_status_ok(shmd_kv_info(a->s, db, &ki)))
      return 2;
  }
  uint64_t n = 0;
  rc = a->which ? shmd_list_range(a->s, a->lp, 0, -1, count_visit, &n) : shmd_hash_check(a->s, a->hp);
  return rc == SHMD_ECORRUPT ? 0 : 3;
}

/* Found in the audit of issue 12: a hash or list walk is bounded by the container's own count, so
 * a damaged count (2^50) with a cycle in a chain (an entry or node linking to itself) made
 * shmd_kv_check() (hash checker), shmd_kv_info() (`shmdict info`: hash walks and the garbage list)
 * and a list range run for days. Now a count larger than the store could hold is ECORRUPT. */
Test(hostile, mp_huge_count_with_cycle_does_not_hang) {
  shmd_store_t *s = ts_open("hc", 4 << 20, 1 << 20);
  cr_assert_eq(kv_line(s, "HSET hk f1 v1 f2 v2 f3 v3"), 0);
  cr_assert_eq(kv_line(s, "RPUSH lk a b c"), 0);
  shmd_ptr_t hp = container_of_key(s, "hk"), lp = container_of_key(s, "lk");
  uint64_t *hw = shmd_resolve(s, hp); /* magic, lock, seed, count, table[0], table[1], log2, ... */
  uint64_t *tab = shmd_resolve(s, (shmd_ptr_t){hw[4]});
  uint32_t log2 = (uint32_t)hw[6];
  uint64_t *ent = NULL;
  for (uint64_t b = 0; b < (UINT64_C(1) << log2) && ent == NULL; b++)
    if (tab[b])
      ent = shmd_resolve(s, (shmd_ptr_t){tab[b]});
  cr_assert_not_null(ent);
  uint64_t *lw = shmd_resolve(s, lp); /* magic, lock, head.next, head.prev, count */
  uint64_t *node = shmd_resolve(s, (shmd_ptr_t){lw[2]});
  for (int which = 0; which < 2; which++) {
    uint64_t *cw = which ? &lw[4] : &hw[3], *nw = which ? &node[0] : &ent[0], saved[2] = {*cw, *nw};
    *cw = UINT64_C(1) << 50;                                  /* the count */
    *nw = which ? lw[2] : shmd_ptr_from_addr(s, ent).v;       /* the next link: itself */
    cycle_arg_t ca = {s, hp, lp, which};
    int st = in_child(which ? "the list walker" : "the hash walker", cycle_child, &ca, 20);
    *cw = saved[0];
    *nw = saved[1];
    cr_assert_eq(st, 0, "%s: a status", which ? "list" : "hash");
  }
  cr_assert_eq(shmd_kv_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}

static int held_count_child(ts_crash_child_t *cc) {
  (void)cc;
  shmd_options_t o = ts_opts(4 << 20, 1 << 20);
  o.flags = SHMD_OPEN_NOCREATE;
  shmd_store_t *c = NULL;
  int rc = shmd_open("hk", &o, &c);
  if (rc == 0) {
    rc = shmd_alloc_check(c);
    shmd_close(c);
  }
  return hs_status_ok(rc) ? 0 : 1;
}

/* Found by the libFuzzer target (issue 12): recovery walked a dead lane's held locks from its
 * count down, whatever the count: a damaged held_count of 2^32 - 1 made every open take 11 s (30 s
 * under ASan). The walk now stops at the lane's capacity; opening takes milliseconds. */
Test(hostile, mp_damaged_held_count_is_bounded) {
  shmd_store_t *s = ts_open("hk", 4 << 20, 1 << 20);
  shmd_close(s);
  char p0[512];
  store_path(p0, sizeof p0, "hk", "seg-00000");
  struct shmd__seg_hdr h;
  struct shmd__manifest m;
  int fd = open(p0, O_RDWR);
  cr_assert_geq(fd, 0);
  cr_assert_eq(pread(fd, &h, sizeof h, 0), (ssize_t)sizeof h);
  cr_assert_eq(pread(fd, &m, sizeof m, (off_t)h.manifest_off), (ssize_t)sizeof m);
  uint32_t n = UINT32_MAX;
  uint64_t lane = m.lanes_off + (m.lane_count - 1) * m.lane_bytes;
  cr_assert_eq(pwrite(fd, &n, 4, (off_t)(lane + offsetof(struct shmd__lane, held_count))), 4);
  close(fd);
  cr_assert_eq(in_child("the opener", held_count_child, NULL, 5), 0,
               "open and check of a store with a damaged held_count (bounded to 5 s)");
}

/* Found in the audit of issue 12: the allocator header's page-map offset was tested as
 * pagemap_off + page_count <= end, which a pagemap_off near 2^64 wraps: statistics, the checker,
 * shmd_usable_size and shmd_free then read the page map far outside the segment (SIGSEGV). Now
 * every bound of that header is tested in a form that cannot wrap. */
Test(hostile, allocator_header_offsets_that_wrap) {
  shmd_store_t *s = ts_open("aw", 4 << 20, 1 << 20);
  shmd_ptr_t p;
  cr_assert_eq(shmd_alloc(s, 100000, &p), 0); /* a large block: its free takes the checked path */
  struct shmd__seg_hdr *h = shmd__seg(s, 0);
  struct shmd__seg_alloc *sa = shmd__sa(h);
  uint64_t saved = sa->pagemap_off;
  /* wrapping sums, and a page map over the allocator header itself */
  const uint64_t bad[] = {-(sa->page_count / 2), -(UINT64_C(1) << 20), UINT64_MAX, h->alloc_off + 8};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    sa->pagemap_off = bad[i];
    shmd_stats_t st;
    shmd_segment_stats_t ss;
    cr_assert_eq(shmd_stats(s, &st), SHMD_ECORRUPT, "pagemap_off %#llx", (unsigned long long)bad[i]);
    cr_assert_eq(shmd_segment_stats(s, 0, &ss), SHMD_ECORRUPT);
    cr_assert_eq(shmd_alloc_check(s), SHMD_ECORRUPT);
    cr_assert_eq(shmd_usable_size(s, p), 0);
    cr_assert_eq(shmd_free(s, p), SHMD_ECORRUPT);
  }
  sa->pagemap_off = saved;
  cr_assert_eq(shmd_free(s, p), 0);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}

static int seg_count_child(ts_crash_child_t *cc) {
  shmd_store_t *c = NULL;
  shmd_options_t o = *(const shmd_options_t *)cc->arg;
  o.flags = SHMD_OPEN_NOCREATE;
  if (shmd_open("sc", &o, &c) != 0)
    return 0; /* refused: fine too */
  shmd_store_info_t in;
  if (shmd_store_info(c, &in) != 0 || in.segments != 65535)
    return 2; /* the forged count is what this test is about */
  for (uint32_t i = 0; i < in.segments; i++) { /* as `shmdict info` */
    uint64_t sz;
    char name[64];
    int rc = shmd_segment_info(c, i, &sz, name, sizeof name);
    if ((i < SHMD__MAX_SEGS) != (rc == 0)) /* table entries answer (zeros), the rest ENOTFOUND */
      return 3;
  }
  shmd_stats_t sst;
  if (shmd_stats(c, &sst) != SHMD_ECORRUPT || shmd_alloc_check(c) != SHMD_ECORRUPT)
    return 4;
  shmd_close(c);
  return 0;
}

/* Found in the audit of issue 12: the manifest's segment count is a mutable word (growth's commit
 * point), validated at open but writable afterwards, e.g. by the recovery of a dead lane whose log
 * covers it. shmd_segment_info() trusted it as the bound of the 4096-entry segment table, and
 * `shmdict info` asks for every segment the count names: with 65535 it read up to 1 MiB past the
 * table, past the end of this 512 KiB segment 0 (into whatever is mapped next, or SIGSEGV). Now
 * the table's own bounds come first (SHMD_ENOTFOUND). */
Test(hostile, mp_segment_count_beyond_the_table) {
  shmd_options_t o = ts_opts(512 << 10, 1 << 20);
  o.max_threads = 1;
  shmd_store_t *s = NULL;
  cr_assert_eq(shmd_open("sc", &o, &s), 0, "%s", shmd_errdetail());
  shmd_close(s);
  char p0[512];
  store_path(p0, sizeof p0, "sc", "seg-00000");
  struct shmd__seg_hdr h;
  struct shmd__manifest m;
  int fd = open(p0, O_RDWR);
  cr_assert_geq(fd, 0);
  cr_assert_eq(pread(fd, &h, sizeof h, 0), (ssize_t)sizeof h);
  cr_assert_eq(pread(fd, &m, sizeof m, (off_t)h.manifest_off), (ssize_t)sizeof m);
  cr_assert_lt(h.size_bytes, UINT64_C(1) << 20);
  /* the only lane: a dead operation whose log holds the segment count's word (count 65535) */
  uint64_t lane = m.lanes_off;
  uint32_t st = SHMD__LANE_ACTIVE, n = 1;
  struct shmd__undo u = {(UINT64_C(1) << SHMD_PTR_OFFSET_BITS) | (h.manifest_off + offsetof(struct shmd__manifest, seg_count)),
                         65535};
  cr_assert_eq(pwrite(fd, &st, 4, (off_t)(lane + offsetof(struct shmd__lane, state))), 4);
  cr_assert_eq(pwrite(fd, &n, 4, (off_t)(lane + offsetof(struct shmd__lane, op_len))), 4);
  cr_assert_eq(pwrite(fd, &u, sizeof u, (off_t)(lane + sizeof(struct shmd__lane))), (ssize_t)sizeof u);
  close(fd);
  int ws = in_child("the opener", seg_count_child, &o, 20);
  cr_assert_eq(ws, 0, "the child ended with %d (3: an entry past the table answered; 139: SIGSEGV)", ws);
}
