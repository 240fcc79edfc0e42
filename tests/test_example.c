/* SPDX-License-Identifier: MIT */
/*
 * Tests of the guild_friends example, run as a user runs it: the built executable (path in the
 * environment variable GUILD_FRIENDS, set by tests/meson.build) on a small store in the test's
 * private directory. A build run and an attach run must print the same answers; a run killed in the
 * middle of an update batch (--crash-during-update, which SIGKILLs itself inside a transaction)
 * must be followed by a run that reports a recovery, answers, and finds records and leaderboards
 * consistent and the store's checkers happy.
 */
#include "support.h"

#define PLAYERS "3000"

/* Runs the example with `args` (a shell word list) in the private directory; returns its exit
 * status (128 + signal when killed) and its standard output in out (malloc'd). */
static int run_example(const char *args, char **out) {
  const char *exe = getenv("GUILD_FRIENDS");
  cr_assert_not_null(exe, "GUILD_FRIENDS is not set (run through meson test)");
  char cmdline[2048];
  snprintf(cmdline, sizeof cmdline, "'%s' -d '%s' -s gf %s 2>&1", exe, ts_dir, args);
  char *argv[] = {"/bin/sh", "-c", cmdline, NULL};
  ts_run_t r = ts_run_prog(NULL, argv);
  free(r.err);
  *out = r.out;
  cr_log_info("$ %s\n%s", cmdline, r.out);
  return r.status;
}

/* The "answer: " lines of an output, concatenated. */
static char *answers_of(const char *out) {
  char *a = calloc(1, strlen(out) + 1);
  cr_assert_not_null(a);
  for (const char *p = out; (p = strstr(p, "answer: ")) != NULL;) {
    if (p != out && p[-1] != '\n') {
      p++;
      continue;
    }
    const char *e = strchr(p, '\n');
    size_t l = e ? (size_t)(e - p + 1) : strlen(p);
    strncat(a, p, l);
    p += l;
  }
  return a;
}

TestSuite(example, .init = ts_init, .fini = ts_fini, .timeout = 120);

Test(example, build_then_attach) {
  char *o1, *o2;
  cr_assert_eq(run_example("-n " PLAYERS, &o1), 0);
  cr_assert(strstr(o1, "built 3000 players") != NULL, "no build line");
  cr_assert(strstr(o1, "memory: store") != NULL, "no memory line");
  cr_assert(strstr(o1, "consistency: ok") != NULL);
  cr_assert_eq(run_example("--check", &o2), 0);
  cr_assert(strstr(o2, "attached to store 'gf'") != NULL, "second run did not attach");
  cr_assert(strstr(o2, "built ") == NULL, "second run built again");
  cr_assert(strstr(o2, "attach (shmd_open): ") != NULL, "no timing line");
  cr_assert(strstr(o2, "check: ok") != NULL);
  char *a1 = answers_of(o1), *a2 = answers_of(o2);
  cr_assert(strlen(a1) > 0 && strstr(a1, "top 10 of guild") && strstr(a1, "friends of player") &&
                strstr(a1, "rank of player"),
            "missing answers:\n%s", a1);
  cr_assert_str_eq(a1, a2, "answers differ between the build and the attach run");
  free(a1), free(a2), free(o1), free(o2);
}

Test(example, friends_as_sets_same_answers) {
  char *o1, *o2;
  cr_assert_eq(run_example("-n " PLAYERS, &o1), 0);
  cr_assert_eq(run_example("-s gf_sets -n " PLAYERS " --friends-as-sets --check", &o2), 0);
  char *a1 = answers_of(o1), *a2 = answers_of(o2);
  /* Same generator, same data; only the friends line differs (the blob keeps the generated order
   * and duplicates, the set prints its distinct ids sorted): compare all the other lines. */
  char *f1 = strstr(a1, "answer: friends"), *f2 = strstr(a2, "answer: friends");
  cr_assert(f1 && f2);
  cr_assert_eq(f1 - a1, f2 - a2);
  cr_assert(strncmp(a1, a2, (size_t)(f1 - a1)) == 0, "answers before the friends line differ");
  cr_assert_str_eq(strchr(f1, '\n'), strchr(f2, '\n'));
  free(a1), free(a2), free(o1), free(o2);
}

Test(example, crash_during_update_then_recover) {
  char *o;
  cr_assert_eq(run_example("-n " PLAYERS, &o), 0);
  free(o);
  int st = run_example("--crash-during-update", &o);
  cr_assert_eq(st, 128 + SIGKILL, "the crash run exited with %d, not SIGKILL", st);
  cr_assert(strstr(o, "killing myself") != NULL);
  free(o);
  cr_assert_eq(run_example("--check", &o), 0);
  const char *r = strstr(o, "recoveries so far: ");
  cr_assert_not_null(r);
  cr_assert(strtoul(r + strlen("recoveries so far: "), NULL, 10) >= 1, "no recovery counted:\n%s", o);
  cr_assert(strstr(o, "consistency: ok") != NULL, "records and leaderboards disagree:\n%s", o);
  cr_assert(strstr(o, "check: ok") != NULL);
  cr_assert(strstr(o, "answer: top 10 of guild") != NULL);
  free(o);
  /* A second crash and recovery on the same store. */
  cr_assert_eq(run_example("--crash-during-update", &o), 128 + SIGKILL);
  free(o);
  cr_assert_eq(run_example("--check", &o), 0);
  cr_assert(strstr(o, "consistency: ok") != NULL);
  free(o);
}

Test(example, interrupted_build_is_rebuilt) {
  /* A store without the marker key (as a killed build leaves it) is dropped and built again. */
  shmd_options_t opt;
  shmd_options_init(&opt);
  opt.dir = ts_dir;
  shmd_store_t *s = NULL;
  cr_assert_eq(shmd_open("gf", &opt, &s), 0);
  cr_assert_eq(shmd_kv_set(s, 0, "p:0", 3, "x", 1, 0), 0);
  shmd_close(s);
  char *o;
  cr_assert_eq(run_example("-n 500", &o), 0);
  cr_assert(strstr(o, "has no marker") != NULL);
  cr_assert(strstr(o, "built 500 players") != NULL);
  free(o);
}
