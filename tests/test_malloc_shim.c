/* SPDX-License-Identifier: MIT */
/*
 * libshmdict-malloc.so: real programs run with LD_PRELOAD of the shim and without it, and their
 * outputs compared: a python3 script, sort on a large file, a multi-threaded program of ours that
 * also forks (malloc/shim_threads.c), our fork-semantics program (malloc/shim_fork.c), a bash
 * script that forks a lot, and redis-server under redis-benchmark when both are installed. The
 * shim's private stores go to the test's private directory (SHMDICT_MALLOC_DIR), which must be
 * empty again after each run (the store is removed at exit); a named shared store
 * (SHMDICT_MALLOC_STORE) is created there too, and checked with shmd_alloc_check() after the
 * programs that used it have ended. These tests fork and exec.
 */
#include <dirent.h>
#include <fcntl.h>

#include "support.h"

TestSuite(mp_shim, .init = ts_init, .fini = ts_fini, .timeout = 300);

static const char *shim_so(void) {
  const char *p = getenv("SHMDICT_MALLOC_SO");
  cr_assert_not_null(p, "SHMDICT_MALLOC_SO is not set (run through meson test)");
  return p;
}

/* Runs `cmd` with /bin/sh, stdout into `out`; with the shim when `shim` (1: private store,
 * 2: the named store "shared"). Returns the exit status (128 + signal when killed). */
static int run(const char *cmd, const char *out, int shim) {
  char dir[300], preload[600];
  snprintf(dir, sizeof dir, "SHMDICT_MALLOC_DIR=%s", ts_dir);
  snprintf(preload, sizeof preload, "LD_PRELOAD=%s", shim ? shim_so() : "");
  const char *env[4] = {dir, NULL, NULL, NULL};
  if (shim) {
    env[1] = preload;
    env[2] = shim == 2 ? "SHMDICT_MALLOC_STORE=shared" : NULL;
  }
  char *argv[] = {"/bin/sh", "-c", (char *)cmd, NULL};
  /* no bound on silence or memory: the programs run here decide how long and how much */
  ts_run_t r = ts_run_prog(&(ts_run_opts_t){.env = env, .idle_ms = -1, .rss_limit = UINT64_MAX}, argv);
  FILE *f = fopen(out, "wb");
  cr_assert_not_null(f, "%s", out);
  cr_assert_eq(fwrite(r.out, 1, r.outlen, f), r.outlen);
  fclose(f);
  if (r.errlen)
    fprintf(stderr, "%s", r.err); /* where it went before: the test's standard error */
  int st = r.status;
  ts_run_free(&r);
  return st;
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "%s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
  b[n] = 0;
  fclose(f);
  *len = (size_t)n;
  return b;
}

/* No private store left behind in the test directory. */
static void no_leftover(void) {
  DIR *d = opendir(ts_dir);
  cr_assert_not_null(d);
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    cr_assert_null(strstr(e->d_name, "shmdict-malloc-"), "left behind: %s", e->d_name);
  closedir(d);
}

/* Runs cmd without and with the shim and compares the outputs. */
static void same_output(const char *what, const char *cmd) {
  char a[512], b[512];
  snprintf(a, sizeof a, "%s/%s.plain", ts_dir, what);
  snprintf(b, sizeof b, "%s/%s.shim", ts_dir, what);
  cr_assert_eq(run(cmd, a, 0), 0, "%s without the shim failed", what);
  int st = run(cmd, b, 1);
  cr_assert_eq(st, 0, "%s under the shim ended with %d", what, st);
  size_t na, nb;
  char *x = slurp(a, &na), *y = slurp(b, &nb);
  cr_assert_gt(na, 0, "%s printed nothing", what);
  cr_assert(na == nb && memcmp(x, y, na) == 0, "%s: outputs differ (%zu vs %zu bytes)", what, na, nb);
  free(x);
  free(y);
  unlink(a);
  unlink(b);
  no_leftover();
}

/* The named store "shared" in the test directory is consistent (every process using it ended). */
static void named_store_consistent(void) {
  char seg[512];
  snprintf(seg, sizeof seg, "%s/shared/seg-00000", ts_dir);
  cr_assert_eq(access(seg, F_OK), 0, "the named store was created in SHMDICT_MALLOC_DIR");
  shmd_options_t o = ts_opts(0, 0);
  o.flags = SHMD_OPEN_NOCREATE;
  shmd_store_t *s;
  cr_assert_eq(shmd_open("shared", &o, &s), 0, "%s", shmd_errdetail());
  int rc = shmd_alloc_check(s);
  cr_assert_eq(rc, 0, "%s: %s", shmd_strerror(rc), shmd_errdetail());
  shmd_close(s);
}

static int have(const char *prog) {
  ts_run_t r = ts_sh("command -v %s >/dev/null 2>&1", prog);
  ts_run_free(&r);
  return r.status == 0;
}

Test(mp_shim, threads_fork_and_short_threads) {
  const char *bin = getenv("SHIM_THREADS");
  cr_assert_not_null(bin);
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "SHIM_EXPECT=0 %s", bin);
  same_output("threads", cmd);
  /* And it really ran on the shim's store. */
  char out[512];
  snprintf(out, sizeof out, "%s/expect.out", ts_dir);
  snprintf(cmd, sizeof cmd, "SHIM_EXPECT=1 %s", bin);
  cr_assert_eq(run(cmd, out, 1), 0, "shim_threads did not get its blocks from the shim");
  no_leftover();
}

Test(mp_shim, python3_script) {
  cr_assert(have("python3"));
  const char *script =
      "python3 -c '\n"
      "import json, collections, random\n"
      "random.seed(7)\n"
      "d = {}\n"
      "for i in range(150000):\n"
      "    d[str(i)] = [i] * (i % 40) + [str(i) * (i % 9)]\n"
      "c = collections.Counter(len(v) for v in d.values())\n"
      "s = sorted(d.items(), key=lambda kv: (len(kv[1]), kv[0]))\n"
      "blob = json.dumps(s[:3000])\n"
      "big = [bytearray(random.randrange(1, 200000)) for _ in range(200)]\n"
      "print(len(d), sorted(c.items())[:5], len(blob), sum(map(len, big)), hash(tuple(s[-1][1][:3])))\n"
      "'";
  same_output("python3", script);
}

Test(mp_shim, sort_large_file) {
  cr_assert(have("sort"));
  char path[512], cmd[2048];
  snprintf(path, sizeof path, "%s/lines.txt", ts_dir);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  ts_rng_t r = {12345};
  for (int i = 0; i < 400000; i++) { /* about 16 MB */
    int n = 5 + (int)ts_below(&r, 60);
    for (int j = 0; j < n; j++)
      fputc('a' + (int)ts_below(&r, 26), f);
    fprintf(f, " %llu\n", (unsigned long long)ts_below(&r, 1000000));
  }
  fclose(f);
  snprintf(cmd, sizeof cmd, "sort %s | cksum && sort -k2,2n -S 8M --parallel=2 %s | tail -n 3", path, path);
  same_output("sort", cmd);
  unlink(path);
}

Test(mp_shim, named_shared_store) {
  /* SHMDICT_MALLOC_STORE: a named store, kept (it is the user's). shim_threads forks while its
   * threads run, and its child scribbles on and frees blocks it inherited: the child's private
   * snapshot of the store must keep that from the parent (and from the store's files). */
  const char *bin = getenv("SHIM_THREADS");
  char a[512], b[512];
  snprintf(a, sizeof a, "%s/named.plain", ts_dir);
  snprintf(b, sizeof b, "%s/named.shim", ts_dir);
  cr_assert_eq(run(bin, a, 0), 0);
  cr_assert_eq(run(bin, b, 2), 0);
  cr_assert_eq(run(bin, b, 2), 0, "a second process on the same named store");
  size_t na, nb;
  char *x = slurp(a, &na), *y = slurp(b, &nb);
  cr_assert(na == nb && memcmp(x, y, na) == 0, "outputs differ: [%s] vs [%s]", x, y);
  free(x);
  free(y);
  named_store_consistent(); /* after both processes ended */
}

/* malloc/shim_fork.c: fork semantics (a scribbling child, a parent that changes its heap the
 * moment fork returns, a grandchild, forks from a multi-threaded parent and from a worker thread,
 * a signal interrupting the parent's wait, posix_spawn and system()) without the shim, with a
 * private store and with a named one; then, on the named store, a failing fork and a child that
 * cannot map its copy. */
Test(mp_shim, fork_semantics_all_stores) {
  const char *bin = getenv("SHIM_FORK");
  cr_assert_not_null(bin, "SHIM_FORK is not set (run through meson test)");
  char out[3][512], cmd[1024];
  snprintf(cmd, sizeof cmd, "SHIM_EXPECT=0 %s", bin);
  snprintf(out[0], sizeof out[0], "%s/fork.plain", ts_dir);
  cr_assert_eq(run(cmd, out[0], 0), 0, "shim_fork failed without the shim");
  snprintf(cmd, sizeof cmd, "SHIM_EXPECT=1 %s", bin);
  for (int shim = 1; shim <= 2; shim++) {
    snprintf(out[shim], sizeof out[shim], "%s/fork.%d", ts_dir, shim);
    int st = run(cmd, out[shim], shim);
    cr_assert_eq(st, 0, "shim_fork on the %s store ended with %d", shim == 1 ? "private" : "named", st);
    size_t na, nb;
    char *x = slurp(out[0], &na), *y = slurp(out[shim], &nb);
    cr_assert(na > 0 && na == nb && memcmp(x, y, na) == 0, "outputs differ: [%s] vs [%s]", x, y);
    free(x);
    free(y);
  }
  no_leftover();
  snprintf(cmd, sizeof cmd, "%s forkfail", bin);
  int st = run(cmd, out[2], 2);
  if (st == 77)
    cr_log_warn("no seccomp filter here: the failing fork was not tried");
  else
    cr_assert_eq(st, 0, "shim_fork forkfail ended with %d", st);
  snprintf(cmd, sizeof cmd, "%s nomem", bin);
  cr_assert_eq(run(cmd, out[2], 2), 0, "shim_fork nomem: the child without a copy wrote to the parent");
  named_store_consistent();
}

/* bash on a named store: command substitutions, pipelines, subshells and background jobs that
 * change their copies of the shell's variables, wait; the output must be the same as without the
 * shim. (It used to crash: the child's writes to inherited blocks reached the parent.) */
Test(mp_shim, bash_forks_on_named_store) {
  if (!have("bash"))
    cr_skip_test("bash not installed");
  char script[512], a[512], b[512], cmd[1024];
  snprintf(script, sizeof script, "%s/forks.sh", ts_dir);
  FILE *f = fopen(script, "w");
  cr_assert_not_null(f);
  fputs("set -u\n"
        "declare -a arr; declare -A map\n"
        "for i in $(seq 1 300); do arr+=(\"item-$i-$(printf '%05d' $((i * 7)))\"); map[k$i]=$((i * i)); done\n"
        "total=0\n"
        "for i in $(seq 1 30); do\n"
        "  v=$(echo \"${arr[$i]}\" | tr 'a-z' 'A-Z')\n"
        "  w=$( (arr[$i]=changed; map[k$i]=0; unset 'arr[0]'; echo \"${arr[$i]}:${map[k$i]}:${#arr[@]}\") )\n"
        "  x=$(f() { local s=$1; for j in 1 2 3; do s=\"$s.$j\"; done; echo \"$s\"; }; f \"${arr[$((i + 1))]}\")\n"
        "  total=$((total + ${map[k$i]}))\n"
        "  echo \"$i $v $w $x ${arr[$i]} ${map[k$i]} ${#arr[@]}\"\n"
        "done\n"
        "for j in 1 2 3 4 5 6; do\n"
        "  (arr=(); map=(); big=$(printf 'x%.0s' $(seq 1 2000)); echo \"job $j ${#big} ${#arr[@]}\" > \"$JOBDIR/job$j\") &\n"
        "done\n"
        "(exit 3) & p=$!\n"
        "wait $p; echo \"status $?\"\n"
        "wait\n"
        "cat \"$JOBDIR\"/job* | sort; rm -f \"$JOBDIR\"/job*\n"
        "printf '%s\\n' \"${arr[@]:0:50}\" | while read -r line; do arr[0]=$line; echo \"${#arr[@]} $line\"; done | tail -n 3\n"
        "read -r p q <<< \"$(echo one two)\"; echo \"$p-$q\"\n"
        "sum=0; while read -r n; do sum=$((sum + n)); done < <(seq 1 100); echo \"sum=$sum\"\n"
        "echo \"${#arr[@]} ${#map[@]} ${arr[0]} ${arr[299]} total=$total\"\n",
        f);
  fclose(f);
  snprintf(a, sizeof a, "%s/bash.plain", ts_dir);
  snprintf(b, sizeof b, "%s/bash.shim", ts_dir);
  snprintf(cmd, sizeof cmd, "JOBDIR=%s bash %s", ts_dir, script);
  cr_assert_eq(run(cmd, a, 0), 0, "the script failed without the shim");
  for (int k = 0; k < 2; k++) { /* twice: the second run finds the store in use before */
    int st = run(cmd, b, 2);
    cr_assert_eq(st, 0, "bash on the named store ended with %d", st);
    size_t na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    cr_assert(na > 1000, "the script printed too little (%zu bytes)", na);
    cr_assert(na == nb && memcmp(x, y, na) == 0, "outputs differ (%zu vs %zu bytes)", na, nb);
    free(x);
    free(y);
  }
  named_store_consistent();
}

Test(mp_shim, redis_server_under_benchmark) {
  if (!have("redis-server") || !have("redis-benchmark") || !have("redis-cli")) {
    cr_skip_test("redis-server / redis-benchmark / redis-cli not installed");
  }
  for (int shim = 0; shim <= 1; shim++) {
    int port = 20000 + (int)(getpid() % 20000);
    char cmd[2048], out[512];
    snprintf(out, sizeof out, "%s/redis.%d", ts_dir, shim);
    snprintf(cmd, sizeof cmd,
             "timeout 240 redis-server --port %d --save '' --appendonly no --daemonize no --dir %s >/dev/null 2>&1 & "
             "srv=$!; for i in $(seq 50); do redis-cli -p %d ping >/dev/null 2>&1 && break; sleep 0.1; done; "
             "env -u LD_PRELOAD timeout 180 redis-benchmark -p %d -q -n 20000 -d 100 -t set,get,lpush,lpop,sadd,hset >/dev/null && "
             "env -u LD_PRELOAD redis-cli -p %d dbsize; env -u LD_PRELOAD redis-cli -p %d llen mylist; "
             "env -u LD_PRELOAD redis-cli -p %d shutdown nosave >/dev/null 2>&1; wait $srv; true",
             port, ts_dir, port, port, port, port, port);
    cr_assert_eq(run(cmd, out, shim), 0);
  }
  size_t na, nb;
  char a[512], b[512];
  snprintf(a, sizeof a, "%s/redis.0", ts_dir);
  snprintf(b, sizeof b, "%s/redis.1", ts_dir);
  char *x = slurp(a, &na), *y = slurp(b, &nb);
  cr_log_info("redis without / with the shim: %s / %s", x, y);
  cr_assert(na > 0 && na == nb && memcmp(x, y, na) == 0, "redis outputs differ: [%s] vs [%s]", x, y);
  free(x);
  free(y);
  no_leftover();
}
