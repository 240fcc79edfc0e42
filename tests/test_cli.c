/* SPDX-License-Identifier: MIT */
/*
 * Tests of the shmdict command-line tool. Most run the built binary (path in $SHMDICT_BIN, set by
 * tests/meson.build) with fork/exec as a user would, with SHMDICT_DIR pointing at the test's
 * private directory: single commands, piped standard input, quoting, exit codes and error
 * messages, the admin commands, dump/load round trips in both formats, and a dump piped into a
 * real private redis-server with `redis-cli --pipe`. The text helpers (quoting, the terminal reply
 * style, JSON and RESP) are also tested directly by including tools/cli_text.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <stdarg.h>

#include "support.h"
#include "tools/cli_text.c"

/* ---------------------------------------------------------------------------------------------- */
/* Running the binary */

/* The binary runs through the shared program runner (tests/support_cli.h): ts_cli(stdin or NULL,
 * "arg", ..., NULL), ts_runv(), ts_sh() for pipes between tools; each child is killed when its
 * resident memory passes 2 GiB or it stays silent for 60 s. */

#define expect_out(r, want)                                                                        \
  do {                                                                                             \
    cr_expect_eq((r).status, 0, "exit status %d, stderr: %s", (r).status, (r).err);                \
    cr_expect_str_eq((r).out, want);                                                               \
  } while (0)

/* Runs one command on store `st` and checks its output. */
static void cmd_ok(const char *st, const char *want, ...) {
  char *argv[64];
  int n = 0;
  argv[n++] = (char *)ts_cli_bin();
  argv[n++] = "-s";
  argv[n++] = (char *)st;
  va_list ap;
  va_start(ap, want);
  const char *a;
  while ((a = va_arg(ap, const char *)) != NULL && n < 63)
    argv[n++] = (char *)a;
  va_end(ap);
  argv[n] = NULL;
  ts_run_t r = ts_runv(NULL, 0, argv);
  cr_expect_eq(r.status, 0, "%s: exit status %d, stderr: %s", argv[3], r.status, r.err);
  cr_expect_str_eq(r.out, want, "%s: got '%s', want '%s'", argv[3], r.out, want);
  ts_run_free(&r);
}

TestSuite(cli, .init = ts_init, .fini = ts_fini, .timeout = 60);

/* ---------------------------------------------------------------------------------------------- */
/* Text helpers, directly */

static char *split_join(const char *line, int *argc) {
  cli_args_t a = {0};
  static char out[1024];
  if (cli_split_line(line, strlen(line), &a) < 0) {
    *argc = -1;
    return NULL;
  }
  out[0] = '\0';
  for (int i = 0; i < a.argc; i++) {
    strcat(out, "[");
    strncat(out, a.argv[i], a.lens[i]);
    strcat(out, "]");
  }
  *argc = a.argc;
  cli_args_free(&a);
  return out;
}

Test(cli, split_like_redis_cli) {
  int n;
  cr_expect_str_eq(split_join("SET  a   1", &n), "[SET][a][1]");
  cr_expect_eq(n, 3);
  cr_expect_str_eq(split_join("set \"a b\" 'c d'", &n), "[set][a b][c d]");
  cr_expect_str_eq(split_join("x \"\\x41\\x4a\\t\\\"q\\\\\"", &n), "[x][AJ\t\"q\\]");
  cr_expect_str_eq(split_join("x 'it\\'s' \"\"", &n), "[x][it's][]");
  cr_expect_str_eq(split_join("   ", &n), "");
  cr_expect_eq(n, 0);
  split_join("x \"open", &n);
  cr_expect_eq(n, -1);
  split_join("x \"a\"b", &n);
  cr_expect_eq(n, -1);
  split_join("x 'a", &n);
  cr_expect_eq(n, -1);
}

static char *tty_text(const shmd_reply_t *r) {
  static char buf[4096];
  FILE *f = fmemopen(buf, sizeof buf, "w");
  cli_print_tty(f, r);
  fclose(f);
  return buf;
}

Test(cli, tty_reply_style) {
  shmd_reply_t s = {.type = SHMD_REPLY_BULK, .str = "a\"b\n\x01", .len = 5};
  cr_expect_str_eq(tty_text(&s), "\"a\\\"b\\n\\x01\"\n");
  shmd_reply_t i = {.type = SHMD_REPLY_INTEGER, .integer = -5};
  cr_expect_str_eq(tty_text(&i), "(integer) -5\n");
  shmd_reply_t nil = {.type = SHMD_REPLY_NIL};
  cr_expect_str_eq(tty_text(&nil), "(nil)\n");
  shmd_reply_t e = {.type = SHMD_REPLY_ARRAY};
  cr_expect_str_eq(tty_text(&e), "(empty array)\n");
  shmd_reply_t inner[2] = {{.type = SHMD_REPLY_BULK, .str = "x", .len = 1}, {.type = SHMD_REPLY_INTEGER, .integer = 2}};
  shmd_reply_t el[3] = {{.type = SHMD_REPLY_BULK, .str = "a", .len = 1},
                        {.type = SHMD_REPLY_ARRAY, .elems = inner, .nelems = 2},
                        {.type = SHMD_REPLY_NIL}};
  shmd_reply_t arr = {.type = SHMD_REPLY_ARRAY, .elems = el, .nelems = 3};
  cr_expect_str_eq(tty_text(&arr), "1) \"a\"\n2) 1) \"x\"\n   2) (integer) 2\n3) (nil)\n");
}

Test(cli, json_and_resp_round_trip_bytes) {
  char bytes[256];
  for (int i = 0; i < 256; i++)
    bytes[i] = (char)i;
  const char *samples[] = {"plain", "caf\xc3\xa9 \xe2\x82\xac", "\xff\xfe", "\xc3"};
  for (int k = 0; k < 5; k++) {
    const char *p = k < 4 ? samples[k] : bytes;
    size_t n = k < 4 ? strlen(p) : sizeof bytes;
    cli_buf_t b = {0};
    cli_json_string(&b, p, n);
    size_t pos = 0;
    cli_json_t j;
    char err[128];
    cr_assert_eq(cli_json_parse(b.data, b.len, &pos, &j, err, sizeof err), 0, "%s: %s", b.data, err);
    cr_expect_eq(j.kind, CJ_STRING);
    cr_expect_eq(j.len, n);
    cr_expect(memcmp(j.str, p, n) == 0, "sample %d changed in a JSON round trip: %s", k, b.data);
    cli_json_free(&j);
    b.len = 0;
    const char *argv[2] = {"SET", p};
    size_t lens[2] = {3, n};
    cli_resp_command(&b, 2, argv, lens);
    cli_args_t a = {0};
    pos = 0;
    cr_assert_eq(cli_resp_parse(b.data, b.len, &pos, &a, err, sizeof err), 1, "%s", err);
    cr_expect_eq(a.argc, 2);
    cr_expect(a.lens[1] == n && memcmp(a.argv[1], p, n) == 0);
    cli_args_free(&a);
    cr_expect_eq(cli_resp_parse(b.data, b.len, &pos, &a, err, sizeof err), 0);
    b.len = 3; /* truncated */
    pos = 0;
    cr_expect_eq(cli_resp_parse(b.data, b.len, &pos, &a, err, sizeof err), -1);
    cli_buf_free(&b);
  }
}

/* ---------------------------------------------------------------------------------------------- */
/* The binary */

Test(cli, single_commands_print_like_redis_cli_on_a_pipe) {
  cmd_ok("t", "OK\n", "SET", "a", "1", NULL);
  cmd_ok("t", "1\n", "GET", "a", NULL);
  cmd_ok("t", "\n", "GET", "missing", NULL);
  cmd_ok("t", "2\n", "INCR", "a", NULL);
  cmd_ok("t", "3\n", "RPUSH", "l", "x", "", "z", NULL);
  cmd_ok("t", "x\n\nz\n", "LRANGE", "l", "0", "-1", NULL);
  cmd_ok("t", "\n", "LRANGE", "nolist", "0", "-1", NULL);
  cmd_ok("t", "1\n", "HSET", "h", "f", "v", NULL);
  cmd_ok("t", "f\nv\n", "HGETALL", "h", NULL);
  cmd_ok("t", "1\n", "ZADD", "z", "1.5", "m", NULL);
  cmd_ok("t", "m\n1.5\n", "ZRANGE", "z", "0", "-1", "WITHSCORES", NULL);
  cmd_ok("t", "string\n", "TYPE", "a", NULL);
}

Test(cli, piped_stdin_runs_each_line) {
  ts_run_t r = ts_cli("SET a 1\nGET a\n\nGET nope\r\nINCR a\n", "-s", "t", NULL);
  expect_out(r, "OK\n1\n\n2\n");
  cr_expect_str_eq(r.err, "");
  ts_run_free(&r);
  /* an error in the middle: later lines still run, exit status 1 */
  r = ts_cli("SET s x\nLPUSH s y\nGET s\n", "-s", "t", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect_str_eq(r.out, "OK\nx\n");
  cr_expect(strstr(r.err, "(error) WRONGTYPE Operation against a key holding the wrong kind of value"), "%s", r.err);
  ts_run_free(&r);
  /* SELECT switches the database of the session */
  r = ts_cli("SELECT 3\nSET k db3\n", "-s", "t", NULL);
  expect_out(r, "OK\nOK\n");
  ts_run_free(&r);
  cmd_ok("t", "\n", "GET", "k", NULL);
  ts_run_t r3 = ts_cli(NULL, "-n", "3", "-s", "t", "GET", "k", NULL);
  expect_out(r3, "db3\n");
  ts_run_free(&r3);
}

Test(cli, quoting_on_stdin) {
  ts_run_t r = ts_cli("SET q \"a b\\n\\x41\"\nGET q\nSET s 'it\\'s here'\nGET s\n", "-s", "t", NULL);
  expect_out(r, "OK\na b\nA\nOK\nit's here\n");
  ts_run_free(&r);
  r = ts_cli("SET q \"unterminated\nGET q\n", "-s", "t", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "unbalanced quotes"), "%s", r.err);
  cr_expect_str_eq(r.out, "a b\nA\n");
  ts_run_free(&r);
}

/* A store that does not exist: reading and admin commands answer "no such store" (exit 1) and
 * create nothing; an unknown command or a wrong arity answers Redis's error and creates nothing;
 * a write creates it; a session creates it at its first write. */
static int store_exists(const char *name) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", ts_dir, name);
  struct stat st;
  return stat(path, &st) == 0;
}

Test(cli, missing_store_answers_no_such_store_and_creates_nothing) {
  const char *const reads[][3] = {{"GET", "k", NULL}, {"EXISTS", "k", NULL}, {"DBSIZE", NULL, NULL},
                                  {"KEYS", "*", NULL}, {"TYPE", "k", NULL}, {"PING", NULL, NULL}};
  for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
    ts_run_t r = ts_cli(NULL, "-s", "typo", reads[i][0], reads[i][1], reads[i][2], NULL);
    cr_expect_eq(r.status, 1, "%s: exit %d", reads[i][0], r.status);
    cr_expect_str_eq(r.out, "");
    cr_expect(strstr(r.err, "no such store 'typo'"), "%s: %s", reads[i][0], r.err);
    cr_expect(!store_exists("typo"), "%s created the store", reads[i][0]);
    ts_run_free(&r);
  }
  ts_run_t r = ts_cli(NULL, "-s", "typo", "NOSUCH", "x", NULL);
  cr_expect(r.status == 1 && strstr(r.err, "ERR unknown command 'NOSUCH'"), "%s", r.err);
  ts_run_free(&r);
  r = ts_cli(NULL, "-s", "typo", "SET", "k", NULL);
  cr_expect(r.status == 1 && strstr(r.err, "ERR wrong number of arguments for 'set' command"), "%s", r.err);
  ts_run_free(&r);
  const char *admin[] = {"info", "check", "dump"};
  for (size_t i = 0; i < 3; i++) {
    r = ts_cli(NULL, admin[i], "typo", NULL);
    cr_expect_eq(r.status, 1, "%s: exit %d", admin[i], r.status);
    ts_run_free(&r);
  }
  r = ts_cli("GET a\nGET b\n", "-s", "typo", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(!store_exists("typo"), "a session of reads created the store");
  ts_run_free(&r);
  /* writes create it: one-shot, and in a session at the first write */
  cmd_ok("typo", "1\n", "RPUSH", "l", "x", NULL);
  cr_expect(store_exists("typo"));
  r = ts_cli("GET a\nSET a 1\nGET a\n", "-s", "fresh", NULL);
  cr_expect_eq(r.status, 1); /* the first GET failed */
  cr_expect_str_eq(r.out, "OK\n1\n");
  cr_expect(store_exists("fresh"));
  ts_run_free(&r);
}

/* A store on a file system mounted read-only: the error says so and does not tell the user to
 * fix permissions (the library maps EROFS to SHMD_EPERM). Needs root to mount a tmpfs; skipped
 * otherwise. */
Test(cli, read_only_file_system_is_not_called_a_permission_problem) {
  char mnt[4200];
  snprintf(mnt, sizeof mnt, "%s/rofs", ts_dir);
  cr_assert_eq(mkdir(mnt, 0700), 0);
  ts_run_t r = ts_sh("mount -t tmpfs -o size=16m tmpfs %s", mnt);
  int mounted = r.status == 0;
  ts_run_free(&r);
  if (!mounted)
    cr_skip_test("cannot mount a tmpfs here (not root?)");
  r = ts_cli(NULL, "-d", mnt, "-s", "st", "SET", "a", "b", NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  r = ts_sh("mount -o remount,ro %s", mnt);
  cr_expect_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  const char *cases[][5] = {{"-s", "st", "GET", "a", NULL}, {"info", "st", NULL}, {"-s", "new", "SET", "a", "b"}};
  for (int i = 0; i < 3; i++) {
    r = ts_cli(NULL, "-d", mnt, cases[i][0], cases[i][1], cases[i][2], cases[i][3], cases[i][4], NULL);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "read-only file system") && strstr(r.err, "mounted read-only") &&
                  !strstr(r.err, "owner's alone") && !strstr(r.err, "permission denied]("),
              "%s: %s", cases[i][0], r.err);
    ts_run_free(&r);
  }
  r = ts_sh("umount %s", mnt);
  cr_expect_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
}

Test(cli, errors_say_what_to_do_and_set_exit_codes) {
  cmd_ok("t", "OK\n", "SET", "s", "x", NULL);
  ts_run_t r = ts_cli(NULL, "-s", "t", "LPUSH", "s", "y", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect_str_eq(r.out, "");
  cr_expect(strncmp(r.err, "(error) WRONGTYPE", 17) == 0, "%s", r.err);
  ts_run_free(&r);
  r = ts_cli(NULL, "-s", "t", "NOSUCHCOMMAND", "x", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "(error) ERR unknown command"), "%s", r.err);
  ts_run_free(&r);
  r = ts_cli(NULL, "info", "nosuch", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "store 'nosuch' does not exist in ") && strstr(r.err, ts_dir) &&
                strstr(r.err, "create it by writing to it"),
            "%s", r.err);
  ts_run_free(&r);
  r = ts_cli(NULL, "-s", "bad/name", "GET", "a", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "store names are"), "%s", r.err);
  ts_run_free(&r);
  r = ts_cli(NULL, NULL); /* a session on the store "default" with nothing to run: creates nothing */
  cr_expect_eq(r.status, 0, "%s", r.err);
  cr_expect(!store_exists("default"));
  ts_run_free(&r);
  r = ts_cli(NULL, "-q", NULL);
  cr_expect_eq(r.status, 2);
  cr_expect(strstr(r.err, "unknown option '-q'") && strstr(r.err, "--help"), "%s", r.err);
  ts_run_free(&r);
  r = ts_cli(NULL, "-n", "16", "-s", "t", "GET", "a", NULL);
  cr_expect_eq(r.status, 2);
  cr_expect(strstr(r.err, "from 0 to 15"), "%s", r.err);
  ts_run_free(&r);
  r = ts_cli("SELECT 99\nGET s\n", "-s", "t", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect_str_eq(r.out, "x\n");
  cr_expect(strstr(r.err, "(error) ERR DB index is out of range"), "%s", r.err);
  ts_run_free(&r);
  r = ts_cli(NULL, "frobnicate", NULL);
  cr_expect_eq(r.status, 2);
  cr_expect(strstr(r.err, "shmdict -s STORE frobnicate"), "%s", r.err);
  ts_run_free(&r);
  r = ts_cli(NULL, "drop", "nosuch", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "does not exist") && strstr(r.err, "shmdict list"), "%s", r.err);
  ts_run_free(&r);
  r = ts_cli(NULL, "-d", "/nonexistent-shmdict-dir", "list", NULL);
  cr_expect_eq(r.status, 0);
  cr_expect(strstr(r.err, "does not exist"), "%s", r.err);
  ts_run_free(&r);
}

#if defined(__SANITIZE_ADDRESS__)
#define CLI_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CLI_ASAN 1
#endif
#endif

/* SRANDMEMBER with LLONG_MIN answers Redis 7.0's range error; a count of -(2^63 - 1) on an
 * existing set is refused at once, also under `ulimit -v 2000000` (not in ASan builds, whose
 * shadow memory needs terabytes of address space; runv's RSS limit guards every run); --max-reply and $SHMDICT_MAX_REPLY set the ceiling,
 * and a bad size is a usage error; a dump stops with advice instead of skipping a key that is
 * bigger than the ceiling. */
Test(cli, huge_replies_are_refused_and_the_ceiling_is_an_option) {
  cmd_ok("t", "3\n", "SADD", "st", "a", "b", "c", NULL);
  ts_run_t r = ts_cli(NULL, "-s", "t", "SRANDMEMBER", "st", "-9223372036854775808", NULL);
  cr_expect_eq(r.status, 1, "exit status %d, stderr: %s", r.status, r.err);
  cr_expect_str_eq(r.err, "(error) ERR value is out of range, value must between -9223372036854775807 and "
                          "9223372036854775807\n");
  ts_run_free(&r);
#ifndef CLI_ASAN
  r = ts_sh("ulimit -v 2000000 && exec %s -s t SRANDMEMBER st -9223372036854775807", ts_cli_bin());
  cr_expect_eq(r.status, 1, "exit status %d, stderr: %s", r.status, r.err);
  cr_expect_str_eq(r.err, "(error) ERR reply exceeds maximum allowed size (shmdict max-reply-bytes)\n");
  ts_run_free(&r);
#endif
  r = ts_cli(NULL, "-s", "t", "SRANDMEMBER", "st", "-100", NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  cr_expect_eq(r.outlen, 200);
  ts_run_free(&r);
  r = ts_cli(NULL, "--max-reply", "4K", "-s", "t", "SRANDMEMBER", "st", "-100", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect_str_eq(r.out, "");
  cr_expect_str_eq(r.err, "(error) ERR reply exceeds maximum allowed size (shmdict max-reply-bytes)\n");
  ts_run_free(&r);
  setenv("SHMDICT_MAX_REPLY", "4096", 1);
  r = ts_cli(NULL, "-s", "t", "SRANDMEMBER", "st", "-100", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "max-reply-bytes"), "%s", r.err);
  ts_run_free(&r);
  r = ts_cli(NULL, "--max-reply", "1G", "-s", "t", "SRANDMEMBER", "st", "-100", NULL); /* the option wins */
  cr_expect_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  setenv("SHMDICT_MAX_REPLY", "lots", 1);
  r = ts_cli(NULL, "-s", "t", "SCARD", "st", NULL);
  cr_expect_eq(r.status, 2);
  cr_expect(strstr(r.err, "$SHMDICT_MAX_REPLY needs a size in bytes") && strstr(r.err, "'lots'"), "%s", r.err);
  ts_run_free(&r);
  unsetenv("SHMDICT_MAX_REPLY");
  r = ts_cli(NULL, "--max-reply", "12Q", "-s", "t", "SCARD", "st", NULL);
  cr_expect_eq(r.status, 2);
  cr_expect(strstr(r.err, "--max-reply needs a size in bytes"), "%s", r.err);
  ts_run_free(&r);
  r = ts_cli(NULL, "--max-reply", NULL);
  cr_expect_eq(r.status, 2);
  cr_expect(strstr(r.err, "--max-reply needs a value"), "%s", r.err);
  ts_run_free(&r);
  /* a set of 300 members is more than a 4 KiB ceiling: the dump fails and says what to do */
  cli_buf_t in = {0};
  cli_buf_puts(&in, "SADD big");
  for (int i = 0; i < 300; i++)
    cli_buf_printf(&in, " member-%d", i);
  cli_buf_puts(&in, "\n");
  r = ts_runv(in.data, in.len, (char *[]){(char *)ts_cli_bin(), "-s", "t", NULL});
  cr_expect_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  cli_buf_free(&in);
  r = ts_cli(NULL, "--max-reply", "4K", "dump", "t", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "key 'big' is bigger than the reply ceiling of 4096 bytes") && strstr(r.err, "--max-reply"),
            "%s", r.err);
  ts_run_free(&r);
  r = ts_cli(NULL, "dump", "t", NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  cr_expect(strstr(r.out, "member-299"));
  ts_run_free(&r);
}

Test(cli, list_info_check_drop) {
  ts_run_t r = ts_cli("SET a 1\nHSET h f v\nRPUSH l x\nSADD s m\nZADD z 1 m\nPEXPIRE a 100000\n", "-s", "one", NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  cmd_ok("two", "OK\n", "SET", "b", "2", NULL);
  r = ts_cli(NULL, "list", NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  cr_expect(strstr(r.out, "STORE") && strstr(r.out, "SEGMENTS"), "%s", r.out);
  char *one = strstr(r.out, "\none "), *two = strstr(r.out, "\ntwo ");
  cr_expect(one && two && one < two, "%s", r.out);
  cr_expect(one && strstr(one, " 5\n") != NULL, "store one should have 5 keys: %s", r.out);
  ts_run_free(&r);
  char other[512];
  snprintf(other, sizeof other, "%s/other", ts_dir);
  r = ts_cli(NULL, "-d", other, "-s", "three", "SET", "k", "v", NULL);
  expect_out(r, "OK\n");
  ts_run_free(&r);
  r = ts_cli(NULL, "-d", other, "list", NULL);
  cr_expect(strstr(r.out, "\nthree ") && !strstr(r.out, "\none "), "-d is not used: %s", r.out);
  ts_run_free(&r);
  r = ts_cli(NULL, "info", "one", NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  const char *want[] = {"segments:", "memory by size class:", "fragmentation", "recoveries:", "lanes:",
                        "db0: 5 keys (string 1, hash 1, list 1, set 1, zset 1; 1 with an expiry"};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    cr_expect(strstr(r.out, want[i]), "info lacks '%s':\n%s", want[i], r.out);
  ts_run_free(&r);
  r = ts_cli(NULL, "check", "one", NULL);
  expect_out(r, "ok\n");
  cr_expect_str_eq(r.err, "", "no progress bar when stderr is a pipe");
  ts_run_free(&r);
  r = ts_cli(NULL, "drop", "one", NULL);
  expect_out(r, "");
  ts_run_free(&r);
  r = ts_cli(NULL, "list", NULL);
  cr_expect(strstr(r.out, "\none ") == NULL && strstr(r.out, "\ntwo "), "%s", r.out);
  ts_run_free(&r);
  r = ts_cli(NULL, "check", "one", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "does not exist"), "%s", r.err);
  ts_run_free(&r);
}

/*
 * The figures `list` and `info` print, checked to the character against what the library reports
 * (shmd_store_info, shmd_segment_info, shmd_segment_stats, shmd_stats, shmd_kv_info), on a store
 * of known sizes: a 64 MiB first segment, 16 MiB growth step, 1 GiB limit, grown by one segment,
 * keys in two databases, a large block of exactly 1 MiB and small objects of several classes. Sizes
 * are binary (KiB = 1024 bytes), with one decimal: a few are spelled out literally below, so a
 * formatter that divides by 1000, or that turns exactly 1024 of a unit into "1024.0", is caught.
 */
static void iec(uint64_t b, char *out, size_t n) {
  static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  if (b < 1024) {
    snprintf(out, n, "%llu B", (unsigned long long)b);
    return;
  }
  int i = 0;
  uint64_t div = 1;
  while (i < 4 && b / div >= 1024) {
    div *= 1024;
    i++;
  }
  snprintf(out, n, "%.1f %s", (double)b / (double)div, unit[i]);
}

/* The output holds `line` as a whole line. */
#define expect_line(out, ...)                                                                      \
  do {                                                                                             \
    char want_[512], pat_[520];                                                                    \
    snprintf(want_, sizeof want_, __VA_ARGS__);                                                    \
    snprintf(pat_, sizeof pat_, "\n%s\n", want_);                                                  \
    cr_expect(strstr(out, pat_) != NULL, "expected the line\n%s\nin\n%s", want_, out);             \
  } while (0)

Test(cli, list_and_info_print_exact_sizes) {
  shmd_options_t o = ts_opts(64u << 20, 16u << 20);
  o.max_store_bytes = 1u << 30;
  shmd_store_t *s;
  cr_assert_eq(shmd_open("sz", &o, &s), 0);
  shmd_ptr_t big, mib;
  cr_assert_eq(shmd_alloc(s, 40u << 20, &big), 0); /* more than segment 0 has: grows the store */
  cr_assert_eq(shmd_alloc(s, 1u << 20, &mib), 0);  /* exactly 1 MiB */
  cr_assert_eq(shmd_root_set(s, "big", big), 0);
  cr_assert_eq(shmd_root_set(s, "mib", mib), 0);
  shmd_close(s);
  ts_run_t r = ts_cli("SET a 1\nRPUSH l x y z\nHSET h f v g w\nSADD st m\n", "-s", "sz", NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  r = ts_cli("SET b 2\nSET c 3\n", "-n", "3", "-s", "sz", NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  /* What the library says, the store quiet. */
  cr_assert_eq(shmd_open("sz", &o, &s), 0);
  shmd_store_info_t in;
  cr_assert_eq(shmd_store_info(s, &in), 0);
  shmd_stats_t st;
  cr_assert_eq(shmd_stats(s, &st), 0);
  cr_assert_eq(in.segments, 2);
  cr_assert_eq(in.store_bytes, st.store_bytes);
  uint64_t keys = 0;
  for (unsigned db = 0; db < SHMD_KV_DATABASES; db++) {
    shmd_kv_info_t ki;
    cr_assert_eq(shmd_kv_info(s, db, &ki), 0);
    keys += ki.keys;
  }
  cr_assert_eq(keys, 6);
  char b1[64], b2[64], b3[64], fname[2][256];
  uint64_t segsz[2];
  shmd_segment_stats_t ss[2];
  for (uint32_t i = 0; i < 2; i++) {
    cr_assert_eq(shmd_segment_info(s, i, &segsz[i], fname[i], sizeof fname[i]), 0);
    cr_assert_eq(shmd_segment_stats(s, i, &ss[i]), 0);
  }
  shmd_close(s);

  r = ts_cli(NULL, "list", NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  iec(in.store_bytes, b1, sizeof b1);
  expect_line(r.out, "%-24s %12s %9u %12llu", "sz", b1, 2u, (unsigned long long)keys);
  ts_run_free(&r);

  r = ts_cli(NULL, "info", "sz", NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  const char *out = r.out;
  /* the known sizes, literally */
  cr_assert_eq(segsz[0], 64u << 20);
  iec(in.store_bytes, b1, sizeof b1);
  expect_line(out, "size:         %s (limit 1.0 GiB, growth step 16.0 MiB)", b1);
  expect_line(out, "segments:     2");
  iec(ss[0].free_bytes, b2, sizeof b2);
  iec(ss[0].largest_free_block, b3, sizeof b3);
  expect_line(out, "  %4u  %-24s %10s  free %10s  largest free block %s", 0u, "seg-00000", "64.0 MiB", b2, b3);
  iec(segsz[1], b1, sizeof b1);
  iec(ss[1].free_bytes, b2, sizeof b2);
  iec(ss[1].largest_free_block, b3, sizeof b3);
  expect_line(out, "  %4u  %-24s %10s  free %10s  largest free block %s", 1u, fname[1], b1, b2, b3);
  expect_line(out, "recoveries:   0 (operations of dead processes rolled back or finished)");
  expect_line(out, "roots:        %u", in.roots);
  /* the memory figures: 64 MiB + 1 MiB of large blocks (the 40 MiB block is a 64 MiB buddy block) */
  cr_assert_eq(st.large_bytes_inuse, 65u << 20);
  cr_assert_eq(st.large_blocks, 2);
  iec(st.allocated_bytes, b1, sizeof b1);
  iec(st.small_bytes_inuse, b2, sizeof b2);
  expect_line(out, "  allocated:  %s (small: %s in %llu objects; large: 65.0 MiB in 2 blocks)", b1, b2,
              (unsigned long long)st.small_objs_inuse);
  iec(st.free_bytes, b1, sizeof b1);
  iec(st.largest_free_block, b2, sizeof b2);
  expect_line(out, "  free:       %s (largest free block %s)", b1, b2);
  iec(st.meta_bytes, b1, sizeof b1);
  iec(st.alloc_meta_bytes, b2, sizeof b2);
  expect_line(out, "  metadata:   %s (allocator %s)", b1, b2);
  cr_assert_gt(st.slab_bytes, 0);
  double frag = 100.0 * (double)(st.slab_free_bytes + st.slab_overhead_bytes) / (double)st.slab_bytes;
  iec(st.slab_bytes, b1, sizeof b1);
  iec(st.slab_free_bytes, b2, sizeof b2);
  iec(st.slab_overhead_bytes, b3, sizeof b3);
  expect_line(out, "  slabs:      %s; free slots %s, overhead %s (fragmentation %.1f%% of slab bytes)", b1, b2,
              b3, frag);
  int classes = 0;
  for (uint32_t c = 0; c < st.nclasses && c < SHMD_STATS_MAX_CLASSES; c++) {
    const shmd_class_stats_t *k = &st.classes[c];
    if (k->slabs == 0)
      continue;
    classes++;
    uint64_t cap = k->slabs * k->objs_per_slab;
    iec(k->bytes_inuse, b1, sizeof b1);
    expect_line(out, "  %8u %8llu %12llu %12s %5.1f%%", k->obj_bytes, (unsigned long long)k->slabs,
                (unsigned long long)k->objs_inuse, b1, 100.0 * (double)k->objs_inuse / (double)cap);
  }
  cr_assert_gt(classes, 1);
  expect_line(out, "  db0: 4 keys (string 1, hash 1, list 1, set 1, zset 0; 0 with an expiry; 0 containers "
                   "awaiting release)");
  expect_line(out, "  db3: 2 keys (string 2, hash 0, list 0, set 0, zset 0; 0 with an expiry; 0 containers "
                   "awaiting release)");
  ts_run_free(&r);
}

/* Fills bytes [from, to) of the store's first segment with 0xA5. */
static void trash_segment(const char *store, off_t from, off_t to) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", ts_dir, store);
  DIR *d = opendir(path);
  cr_assert_not_null(d);
  struct dirent *e;
  char seg[1024] = "";
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.' && seg[0] == '\0')
      snprintf(seg, sizeof seg, "%s/%s", path, e->d_name);
  closedir(d);
  int fd = open(seg, O_RDWR);
  cr_assert(fd >= 0, "%s", seg);
  struct stat st;
  fstat(fd, &st);
  char junk[4096];
  memset(junk, 0xA5, sizeof junk);
  for (off_t off = from; off + 4096 <= st.st_size && off < to; off += 4096)
    cr_assert(pwrite(fd, junk, 4096, off) == 4096);
  close(fd);
}

Test(cli, check_fails_with_exit_2_on_damage) {
  /* The manifest itself: the store cannot be opened, which is the check's answer. */
  cmd_ok("bad", "OK\n", "SET", "a", "1", NULL);
  trash_segment("bad", 4096, 8 << 20);
  ts_run_t r = ts_cli(NULL, "check", "bad", NULL);
  cr_expect_eq(r.status, 2, "status %d out %s err %s", r.status, r.out, r.err);
  cr_expect(strncmp(r.out, "check failed", 12) == 0, "%s", r.out);
  cr_expect(strstr(r.err, "failed its check") && strstr(r.err, "shmdict load bad"), "%s", r.err);
  ts_run_free(&r);
  /* The data area under a few thousand keys: the allocator or the keyspace checker notices. */
  cli_buf_t in = {0};
  for (int i = 0; i < 3000; i++)
    cli_buf_printf(&in, "SET key:%d value-%d\nHSET h:%d f %d\n", i, i, i % 50, i);
  r = ts_cli(in.data, "-s", "bad2", NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  cli_buf_free(&in);
  r = ts_cli(NULL, "check", "bad2", NULL);
  expect_out(r, "ok\n");
  ts_run_free(&r);
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = ts_dir;
  shmd_store_t *s = NULL;
  cr_assert_eq(shmd_open("bad2", &o, &s), 0);
  shmd_stats_t st;
  cr_assert_eq(shmd_stats(s, &st), 0);
  uint64_t meta = st.meta_bytes;
  shmd_close(s);
  off_t data = (off_t)((meta + 4095) & ~(uint64_t)4095); /* the data area starts after the metadata */
  trash_segment("bad2", data, data + (4 << 20));
  r = ts_cli(NULL, "check", "bad2", NULL);
  cr_expect_eq(r.status, 2, "status %d out %s err %s", r.status, r.out, r.err);
  cr_expect(strncmp(r.out, "check failed", 12) == 0, "%s", r.out);
  ts_run_free(&r);
}

static const char *FILL =
    "SET s hello\n"
    "SET bin \"\\x00\\xff\\r\\n\\\"q\"\n"
    "SET big xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
    "HSET h f1 v1 f2 \"v 2\" \"\" empty\n"
    "RPUSH l a b c \"\" a\n"
    "SADD st x y z\n"
    "ZADD z 1 one 2.5 two -3 neg\n"
    "SET e expiring\n"
    "PEXPIRE e 500000\n";

/* Reads the FILL data back with deterministic commands (hash and set order may differ). */
static const char *READBACK =
    "GET s\nGET bin\nSTRLEN big\nHGET h f1\nHGET h f2\nHGET h \"\"\nHLEN h\nLRANGE l 0 -1\n"
    "SCARD st\nSISMEMBER st x\nSISMEMBER st z\nZRANGE z 0 -1 WITHSCORES\nGET e\nTYPE h\nTYPE z\n";
static const char *READBACK_OUT =
    "hello\n\x00\xff\r\n\"q\n100\nv1\nv 2\nempty\n3\na\nb\nc\n\na\n3\n1\n1\nneg\n-3\none\n1\ntwo\n2.5\nexpiring\nhash\nzset\n";

static void expect_readback(const char *st) {
  ts_run_t r = ts_cli(READBACK, "-s", st, NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  size_t want_len = strlen("hello\n") + 7 /* the binary value and its newline */ + strlen("100\nv1\nv 2\nempty\n3\na\nb\nc\n\na\n3\n1\n1\nneg\n-3\none\n1\ntwo\n2.5\nexpiring\nhash\nzset\n");
  cr_expect_eq(r.outlen, want_len, "readback of %s: %zu bytes, want %zu:\n%s", st, r.outlen, want_len, r.out);
  cr_expect(r.outlen == want_len && memcmp(r.out, READBACK_OUT, want_len) == 0, "readback of %s:\n%s", st, r.out);
  ts_run_free(&r);
  ts_run_t t = ts_cli(NULL, "-s", st, "PTTL", "e", NULL);
  long long left = atoll(t.out);
  cr_expect(left > 400000 && left <= 500000, "expiry lost: PTTL %s", t.out);
  ts_run_free(&t);
}

static void dump_load_round_trip(const char *format) {
  ts_run_t r = ts_cli(FILL, "-s", "src", NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  expect_readback("src");
  char file[512];
  snprintf(file, sizeof file, "%s/dump.%s", ts_dir, format);
  r = ts_cli(NULL, "dump", "src", "--format", format, "-o", file, NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  cr_expect_str_eq(r.err, "", "no progress bar when stderr is a pipe");
  ts_run_free(&r);
  r = ts_cli(NULL, "load", "dst", "-i", file, NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  cr_expect_str_eq(r.err, "");
  ts_run_free(&r);
  expect_readback("dst");
  /* dump to stdout, load from stdin */
  r = ts_cli(NULL, "dump", "src", "--format", format, NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  char *argv[] = {(char *)ts_cli_bin(), "load", "dst2", "--format", (char *)format, NULL};
  ts_run_t l = ts_runv(r.out, r.outlen, argv);
  cr_expect_eq(l.status, 0, "%s", l.err);
  ts_run_free(&l);
  ts_run_free(&r);
  expect_readback("dst2");
}

Test(cli, dump_load_round_trip_json) {
  dump_load_round_trip("json");
  char file[512];
  snprintf(file, sizeof file, "%s/dump.json", ts_dir);
  FILE *f = fopen(file, "r");
  cr_assert_not_null(f);
  char line[4096];
  int lines = 0, found = 0;
  while (fgets(line, sizeof line, f)) {
    lines++;
    cr_expect(line[0] == '{', "%s", line);
    if (strstr(line, "\"key\":\"l\",\"type\":\"list\",\"value\":[\"a\",\"b\",\"c\",\"\",\"a\"]"))
      found = 1;
  }
  fclose(f);
  cr_expect_eq(lines, 8, "one object per key");
  cr_expect(found, "the list's line is not as documented");
}

Test(cli, dump_load_round_trip_resp) { dump_load_round_trip("resp"); }

static size_t count_of(const char *hay, size_t n, const char *needle) {
  size_t c = 0, l = strlen(needle);
  for (size_t i = 0; i + l <= n; i++)
    if (memcmp(hay + i, needle, l) == 0)
      c++;
  return c;
}

Test(cli, dump_load_batches_large_collections) {
  cli_buf_t in = {0};
  /* built 40 elements per command: the keyspace bounds the elements one command may add */
  for (int i = 0; i < 1300; i++)
    cli_buf_printf(&in, "%s e%d%s", i % 40 == 0 ? "RPUSH big" : "", i, i % 40 == 39 || i == 1299 ? "\n" : "");
  for (int i = 0; i < 1100; i++)
    cli_buf_printf(&in, "%s f%d v%d%s", i % 40 == 0 ? "HSET hh" : "", i, i, i % 40 == 39 || i == 1099 ? "\n" : "");
  for (int i = 0; i < 1000; i++)
    cli_buf_printf(&in, "%s m%d%s", i % 40 == 0 ? "SADD ss" : "", i, i % 40 == 39 || i == 999 ? "\n" : "");
  for (int i = 0; i < 1000; i++)
    cli_buf_printf(&in, "%s %d.25 z%d%s", i % 20 == 0 ? "ZADD zz" : "", i, i, i % 20 == 19 || i == 999 ? "\n" : "");
  ts_run_t r = ts_cli(in.data, "-s", "src", NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  cli_buf_free(&in);
  r = ts_cli(NULL, "dump", "src", NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  cr_expect_eq(count_of(r.out, r.outlen, "$5\r\nRPUSH\r\n"), 3, "1300 elements in batches of 512");
  cr_expect_eq(count_of(r.out, r.outlen, "$4\r\nHSET\r\n"), 3);
  cr_expect_eq(count_of(r.out, r.outlen, "$4\r\nSADD\r\n"), 2);
  cr_expect_eq(count_of(r.out, r.outlen, "$4\r\nZADD\r\n"), 2);
  char *argv[] = {(char *)ts_cli_bin(), "load", "dst", NULL};
  ts_run_t l = ts_runv(r.out, r.outlen, argv);
  cr_expect_eq(l.status, 0, "%s", l.err);
  ts_run_free(&l);
  ts_run_free(&r);
  const char *q = "LLEN big\nHLEN hh\nSCARD ss\nZCARD zz\nLRANGE big 0 -1\nZRANGE zz 0 -1 WITHSCORES\nHGET hh f1099\n";
  ts_run_t a = ts_cli(q, "-s", "src", NULL), b = ts_cli(q, "-s", "dst", NULL);
  cr_expect_eq(a.status, 0);
  cr_expect(strncmp(a.out, "1300\n1100\n1000\n1000\ne0\n", 22) == 0, "%.40s", a.out);
  cr_expect(a.outlen == b.outlen && memcmp(a.out, b.out, a.outlen) == 0, "the loaded copy differs");
  ts_run_free(&a);
  ts_run_free(&b);
}

Test(cli, load_text_commands_and_bad_input) {
  ts_run_t r = ts_cli("SET a 1\nRPUSH l \"x y\"\n", "load", "t", NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  cmd_ok("t", "x y\n", "LRANGE", "l", "0", "-1", NULL);
  r = ts_cli("*2\r\n$3\r\nGET\r\n$10\r\nshort\r\n", "load", "t", "--format", "resp", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "not a valid RESP stream"), "%s", r.err);
  ts_run_free(&r);
  r = ts_cli("{\"key\": 1}\n", "load", "t", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "expected"), "%s", r.err);
  ts_run_free(&r);
  r = ts_cli("SET a 1\nLPUSH a x\n", "load", "t", NULL);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "WRONGTYPE") && strstr(r.err, "1 of 2 commands failed"), "%s", r.err);
  ts_run_free(&r);
}

/* Runs the binary on a pseudo-terminal (stdin, stdout and stderr), typing `typed` (if any) and
 * then end-of-file; returns everything it printed. */
static char *run_pty(const char *typed, char *const args[]) {
  int master;
  pid_t pid = forkpty(&master, NULL, NULL, NULL);
  cr_assert(pid >= 0, "forkpty: %s", strerror(errno));
  if (pid == 0) {
    char *argv[16];
    int n = 0;
    argv[n++] = (char *)ts_cli_bin();
    for (int i = 0; args[i] && n < 15; i++)
      argv[n++] = args[i];
    argv[n] = NULL;
    setenv("HOME", ts_dir, 1); /* history goes to the test's directory */
    setenv("TERM", "dumb", 1);
    execv(argv[0], argv);
    _exit(127);
  }
  if (typed) {
    usleep(200000);
    for (const char *p = typed; *p; p++) {
      cr_assert(write(master, p, 1) == 1);
      if (*p == '\r')
        usleep(100000);
    }
    char eof = 4;
    cr_assert(write(master, &eof, 1) == 1);
  }
  cli_buf_t out = {0};
  char buf[4096];
  for (;;) {
    struct pollfd p = {master, POLLIN, 0};
    if (poll(&p, 1, 20000) <= 0)
      break;
    ssize_t n = read(master, buf, sizeof buf);
    if (n <= 0)
      break; /* EIO once the child has exited */
    cli_buf_put(&out, buf, (size_t)n);
  }
  close(master);
  cr_expect_eq(ts_wait(pid), 0, "exit status on a terminal; output: %s", out.data);
  return out.data ? out.data : strdup("");
}

Test(cli, terminal_output_prompt_history_and_progress) {
  ts_run_t r = ts_cli("RPUSH l a b\nSET s 1\n", "-s", "t", NULL);
  ts_run_free(&r);
  char *o = run_pty(NULL, (char *[]){"-s", "t", "LRANGE", "l", "0", "-1", NULL});
  cr_expect_str_eq(o, "1) \"a\"\r\n2) \"b\"\r\n");
  free(o);
  o = run_pty(NULL, (char *[]){"-s", "t", "INCR", "s", NULL});
  cr_expect_str_eq(o, "(integer) 2\r\n");
  free(o);
  o = run_pty("GET s\rGET nope\r", (char *[]){"-s", "t", NULL});
  cr_expect(strstr(o, "t> ") && strstr(o, "\"2\"\r\n") && strstr(o, "(nil)\r\n"), "interactive session: %s", o);
  free(o);
  char hist[512];
  snprintf(hist, sizeof hist, "%s/.shmdict_history", ts_dir);
  FILE *f = fopen(hist, "r");
  cr_expect_not_null(f, "no history file in $HOME");
  if (f) {
    char line[256] = "";
    cr_expect(fgets(line, sizeof line, f) && strcmp(line, "GET s\n") == 0, "history: %s", line);
    fclose(f);
  }
  char file[512];
  snprintf(file, sizeof file, "%s/d.resp", ts_dir);
  o = run_pty(NULL, (char *[]){"dump", "t", "-o", file, NULL});
  cr_expect(strstr(o, "dump [") && strstr(o, "100% 2/2"), "no progress bar on a terminal: %s", o);
  free(o);
  o = run_pty(NULL, (char *[]){"check", "t", NULL});
  cr_expect(strstr(o, "check: ") && strstr(o, "ok\r\n"), "%s", o);
  free(o);
  /* dump to the terminal itself: the data alone, no bar interleaved with it */
  o = run_pty(NULL, (char *[]){"dump", "t", NULL});
  cr_expect(strstr(o, "RPUSH") && !strstr(o, "dump ["), "a bar mixed into a dump on the terminal: %s", o);
  free(o);
  /* TAB completes command names (upper case on a word typed in upper case, lower on lower) */
  o = run_pty("LRA\tl 0 -1\rhstrl\t\r", (char *[]){"-s", "t", NULL});
  cr_expect(strstr(o, "LRANGE l 0 -1") && strstr(o, "1) \"a\"") && strstr(o, "hstrlen "), "TAB completion: %s", o);
  free(o);
  /* --raw on a terminal prints as on a pipe */
  o = run_pty(NULL, (char *[]){"--raw", "-s", "t", "LRANGE", "l", "0", "-1", NULL});
  cr_expect_str_eq(o, "a\r\nb\r\n");
  free(o);
}

/* --version, help from the command table, -x, --no-raw, a session without arguments on
 * $SHMDICT_STORE, and dump's note on the named roots it leaves out. */
Test(cli, version_help_x_raw_and_default_session) {
  ts_run_t r = ts_cli(NULL, "--version", NULL);
  cr_expect(r.status == 0 && strncmp(r.out, "shmdict ", 8) == 0, "%s", r.out);
  ts_run_free(&r);
  r = ts_cli(NULL, "help", "get", NULL);
  expect_out(r, "\n  GET key\n  summary: A key's string value.\n  group: string\n\n");
  ts_run_free(&r);
  r = ts_cli(NULL, "help", "@transactions", NULL);
  cr_expect(r.status == 0 && strstr(r.out, "  MULTI\n") && strstr(r.out, "  WATCH key [key ...]\n"), "%s", r.out);
  ts_run_free(&r);
  r = ts_cli(NULL, "help", "nosuch", NULL);
  cr_expect(r.status == 1 && strstr(r.err, "no help for 'nosuch'"), "%s", r.err);
  ts_run_free(&r);
  r = ts_cli("HELP SET\nhelp\n", "-s", "t", NULL);
  cr_expect(r.status == 0 && strstr(r.out, "  SET key value [NX|XX]") && strstr(r.out, "help @<group>"), "%s", r.out);
  ts_run_free(&r);
  /* -x: the last argument is all of standard input, final newline included (redis-cli) */
  r = ts_cli("two\nlines\n", "-x", "-s", "t", "SET", "k", NULL);
  expect_out(r, "OK\n");
  ts_run_free(&r);
  r = ts_cli(NULL, "--no-raw", "-s", "t", "GET", "k", NULL);
  expect_out(r, "\"two\\nlines\\n\"\n");
  ts_run_free(&r);
  r = ts_cli(NULL, "-s", "t", "STRLEN", "k", NULL);
  expect_out(r, "10\n");
  ts_run_free(&r);
  /* no arguments: a session on $SHMDICT_STORE */
  setenv("SHMDICT_STORE", "t", 1);
  r = ts_cli("GET k\nSTRLEN k\n", NULL);
  unsetenv("SHMDICT_STORE");
  expect_out(r, "two\nlines\n\n10\n");
  ts_run_free(&r);
  /* dump names the roots it leaves out (the library's own "shmdict.*" ones are not counted) */
  shmd_store_t *s = ts_open("t", 0, 0);
  shmd_ptr_t p;
  cr_assert_eq(shmd_alloc(s, 64, &p), 0);
  cr_assert_eq(shmd_root_set(s, "my.table", p), 0);
  cr_assert_eq(shmd_root_set(s, "my.other", p), 0);
  shmd_close(s);
  r = ts_cli(NULL, "dump", "t", NULL);
  cr_expect(r.status == 0 && strstr(r.err, "dump: 2 named roots (structures outside the keyspace"), "%s", r.err);
  ts_run_free(&r);
}

/* ---------------------------------------------------------------------------------------------- */
/* Into a real Redis */

static pid_t redis_pid;

static void redis_fini(void) {
  if (redis_pid > 0) {
    ts_stop(redis_pid, 0);
    redis_pid = 0;
  }
  ts_fini();
}

/* Starts a private redis-server (ts_redis_start); returns its port. */
static int redis_start(void) {
  ts_run_t w = ts_sh("command -v redis-server && command -v redis-cli");
  cr_assert_eq(w.status, 0, "redis-server or redis-cli is not installed: run scripts/setup.sh");
  ts_run_free(&w);
  return ts_redis_start(&redis_pid);
}

Test(cli, dump_resp_into_real_redis, .fini = redis_fini) {
  ts_run_t r = ts_cli(FILL, "-s", "src", NULL);
  cr_assert_eq(r.status, 0, "%s", r.err);
  ts_run_free(&r);
  int port = redis_start();
  r = ts_sh("'%s' dump src --format resp | redis-cli -p %d --pipe", ts_cli_bin(), port);
  cr_expect_eq(r.status, 0, "%s %s", r.out, r.err);
  cr_expect(strstr(r.out, "errors: 0, replies: 9"), "redis-cli --pipe said: %s %s", r.out, r.err);
  ts_run_free(&r);
  /* Read back through redis-cli with the same deterministic commands. */
  char script[512];
  snprintf(script, sizeof script, "%s/readback", ts_dir);
  FILE *f = fopen(script, "w");
  fputs(READBACK, f);
  fclose(f);
  r = ts_sh("redis-cli -p %d < '%s'", port, script);
  ts_run_t mine = ts_cli(READBACK, "-s", "src", NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  cr_expect_eq(r.outlen, mine.outlen, "redis:\n%s\nshmdict:\n%s", r.out, mine.out);
  cr_expect(r.outlen == mine.outlen && memcmp(r.out, mine.out, r.outlen) == 0, "redis:\n%s\nshmdict:\n%s", r.out,
            mine.out);
  ts_run_free(&mine);
  ts_run_free(&r);
  r = ts_sh("redis-cli -p %d pttl e", port);
  long long left = atoll(r.out);
  cr_expect(left > 400000 && left <= 500000, "expiry did not reach Redis: PTTL %s", r.out);
  ts_run_free(&r);
  r = ts_sh("redis-cli -p %d dbsize", port);
  cr_expect_str_eq(r.out, "8\n");
  ts_run_free(&r);
}
