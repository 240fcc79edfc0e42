/* SPDX-License-Identifier: MIT */
/*
 * shmdict, the command-line tool: redis-cli for stores. `shmdict -s STORE CMD ARGS...` runs one
 * keyspace command through shmd_kv_command_db() — the same code a program linking the library
 * runs — and prints the reply as redis-cli does (raw on a pipe, annotated on a terminal). Without
 * a command it reads commands from standard input (an interactive prompt with readline on a
 * terminal). Without -s it runs the admin commands: list, info, check, drop, dump and load.
 * dump walks the keyspace with SCAN/TYPE/PTTL and the typed read commands and writes either a RESP
 * command stream that `redis-cli --pipe` accepts or JSON, one object per key; load executes
 * either back. --group NAME opens (and creates) stores shared by a group (see shmd_options_t.group).
 * Every error message says what to do next. Exit status: 0 ok, 1 a command failed, 2 usage or a
 * failed check.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#ifdef SHMD_HAVE_READLINE
#include <readline/history.h>
#include <readline/readline.h>
#endif

#include "shmdict.h"
#include "shmdict/kv.h"
#include "kv/cmdtable.h"
#include "tools/cli.h"

#define DEFAULT_DIR "/dev/shm/shmdict"
#define ADMIN_LOCK_WAIT_MS 10000 /* info, list, check, dump: report a lock held longer by a live process */
#define DUMP_BATCH 512 /* elements per HSET/RPUSH/SADD/ZADD command in a dump */

static const char *g_optdir;  /* -d, or NULL */
static const char *g_group;   /* --group, or NULL: a private store */
static char g_dir[4096];      /* the directory actually used, for messages */
static unsigned g_db;         /* -n */
static int g_progress;        /* stderr is a terminal */
static int g_raw = -1;        /* --raw 1, --no-raw 0, else -1: raw unless stdout is a terminal */

/* ---------------------------------------------------------------------------------------------- */
/* Messages */

static void usage(FILE *f) {
  fprintf(f,
          "usage: shmdict [-d DIR] [--group NAME] [-n DB] [--raw|--no-raw] [-x] -s STORE [COMMAND [ARG...]]\n"
          "       shmdict                     (a session on $SHMDICT_STORE, else the store 'default')\n"
          "       shmdict help [COMMAND|@GROUP]\n"
          "       shmdict [-d DIR] [--group NAME] list\n"
          "       shmdict [-d DIR] [--group NAME] info STORE\n"
          "       shmdict [-d DIR] [--group NAME] check STORE\n"
          "       shmdict [-d DIR] drop STORE\n"
          "       shmdict [-d DIR] [--group NAME] [-n DB] dump STORE [--format resp|json] [-o FILE]\n"
          "       shmdict [-d DIR] [--group NAME] [-n DB] load STORE [--format resp|json|text] [-i FILE]\n"
          "       shmdict [-d DIR] [--group NAME] persist STORE --dir PATH [--fsync always|everysec|no] [--ring BYTES]\n"
          "       shmdict [-d DIR] [--group NAME] restore STORE --from PATH\n"
          "\n"
          "  -d DIR    store directory (default: $SHMDICT_DIR, else " DEFAULT_DIR ")\n"
          "  --group NAME  a store shared by the members of group NAME (directory 2770, files\n"
          "            0660); without it a store is its owner's alone\n"
          "  -n DB     database number, 0 to 15 (default 0)\n"
          "  -s STORE  run COMMAND (a Redis command, e.g. SET key value) on STORE, or read\n"
          "            commands from standard input, one per line, with redis-cli's quoting\n"
          "  --raw     print replies raw even on a terminal; --no-raw: annotated even on a pipe\n"
          "  -x        read the command's last argument from standard input (all of it)\n"
          "  --version print the version\n"
          "  --max-reply BYTES  largest reply one command may build in memory, e.g. 64M or 2G\n"
          "            (default: $SHMDICT_MAX_REPLY, else 1G; a bigger one is an error reply)\n"
          "Exit status: 0 ok, 1 a command failed, 2 usage error or failed check.\n");
}

/* The whole input of `load`, freed by die() when a load stops half-way (so an error exit leaks
 * nothing LeakSanitizer could report). */
static char *load_input;

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("shmdict: ", stderr);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  free(load_input);
  exit(code);
}

/* Is the status a read-only file system rather than a permission (the library maps EROFS to
 * SHMD_EPERM)? Looks at the message and at the directory's mount flags. */
static int read_only_fs(int rc) {
  if (rc != SHMD_EPERM)
    return 0;
  if (strstr(shmd_errdetail(), strerror(EROFS)))
    return 1;
  struct statvfs v;
  return g_dir[0] && statvfs(g_dir, &v) == 0 && (v.f_flag & ST_RDONLY);
}

/* What to do about a status from the library. */
static const char *advice(int rc, const char *store) {
  static char buf[512];
  switch (rc) {
  case SHMD_ENOENT:
    snprintf(buf, sizeof buf, "create it by writing to it, e.g. `shmdict -s %s SET key value`, or check -d / $SHMDICT_DIR", store);
    break;
  case SHMD_EVERSION:
    return "use a shmdict build that matches the store's layout version";
  case SHMD_ENOTSTORE:
  case SHMD_ETRUNCATED:
  case SHMD_EFOREIGN:
  case SHMD_ECHECKSUM:
    snprintf(buf, sizeof buf, "check -d; if the files are garbage remove them with `shmdict drop %s`", store);
    break;
  case SHMD_ELOOP:
    return "symbolic links are never followed: if the link is yours remove it (rm), else use another store name or -d";
  case SHMD_ECORRUPT:
    snprintf(buf, sizeof buf, "run `shmdict check %s`; save what can be read with `shmdict dump %s -o FILE`, then `shmdict drop %s` and `shmdict load %s -i FILE`", store, store, store, store);
    break;
  case SHMD_EPERM:
    if (read_only_fs(rc)) /* EROFS: not a question of permissions */
      return "the file system is mounted read-only: a store needs a writable one (its lanes and locks are "
             "written even by reads); remount it read-write, or copy the store's directory to a writable one";
    return "a store is its owner's alone: run as its owner; a store shared by a group needs --group NAME";
  case SHMD_ENOSPC:
    return "free space on the file system, or raise the store's size limit or the file size limit (ulimit -f)";
  case SHMD_ENOLANE:
    return "too many threads use the store; retry when some have exited";
  case SHMD_EINVAL:
    return "store names are 1-64 characters of A-Z a-z 0-9 . _ - not starting with '.'";
  case SHMD_ENOMEM:
    return "free some memory and retry";
  case SHMD_EBUSY:
    return "a live process holds a lock of the store (named above); retry when it has let go";
  case SHMD_EIO:
    return "see the system error above; check the directory and its file system";
  default:
    return "see the message above";
  }
  return buf;
}

static void die_status(int code, int rc, const char *store, const char *what) {
  const char *d = shmd_errdetail();
  if (rc == SHMD_ENOENT)
    die(code, "store '%s' does not exist in %s (%s)", store, g_dir, advice(rc, store));
  const char *why = read_only_fs(rc) ? "read-only file system" : shmd_strerror(rc);
  die(code, "%s '%s' in %s: %s%s%s%s (%s)", what, store, g_dir, why, *d ? " [" : "", d, *d ? "]" : "",
      advice(rc, store));
}

/* ---------------------------------------------------------------------------------------------- */
/* Progress bar on a terminal */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Draws "what [#####-----]  45%  done/total" on stderr, at most 10 times a second; `final`
 * draws the last state and ends the line. Nothing when stderr is not a terminal. */
static void progress(const char *what, uint64_t done, uint64_t total, int final) {
  static double last;
  if (!g_progress)
    return;
  double t = now_s();
  if (!final && t - last < 0.1)
    return;
  last = t;
  int width = 30;
  uint64_t shown = total && done > total ? total : done;
  int fill = total ? (int)((double)shown * width / (double)total) : (int)(done / 1000 % (uint64_t)width);
  char bar[64];
  for (int i = 0; i < width; i++)
    bar[i] = total ? (i < fill ? '#' : '-') : (i == fill ? '#' : '-');
  bar[width] = '\0';
  if (total)
    fprintf(stderr, "\r%s [%s] %3d%% %" PRIu64 "/%" PRIu64 "  ", what, bar,
            (int)((double)shown * 100 / (double)total), done, total);
  else
    fprintf(stderr, "\r%s [%s] %" PRIu64 "  ", what, bar, done);
  if (final)
    fputc('\n', stderr);
  fflush(stderr);
}

/* The progress of a restore (bytes of the log replayed), with the rate. */
static void restore_progress(void *arg, uint64_t done, uint64_t total) {
  (void)arg;
  static double t0;
  if (t0 == 0)
    t0 = now_s();
  progress("restore", done, total, done == total);
  if (done == total && now_s() > t0)
    fprintf(stderr, "restore: %.1f MB/s\n", (double)total / 1e6 / (now_s() - t0));
}

/* ---------------------------------------------------------------------------------------------- */
/* Stores and commands */

static shmd_store_t *open_store(const char *name, int create) {
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = g_optdir;
  o.group = g_group;
  if (!create)
    o.flags |= SHMD_OPEN_NOCREATE;
  shmd_store_t *s = NULL;
  int rc = shmd_open(name, &o, &s);
  if (rc < 0)
    die_status(1, rc, name, "cannot open store");
  return s;
}

/* Opens an existing store; NULL when there is none (any other failure ends the tool). */
static shmd_store_t *try_open_store(const char *name) {
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = g_optdir;
  o.group = g_group;
  o.flags |= SHMD_OPEN_NOCREATE;
  shmd_store_t *s = NULL;
  int rc = shmd_open(name, &o, &s);
  if (rc == SHMD_ENOENT)
    return NULL;
  if (rc < 0)
    die_status(1, rc, name, "cannot open store");
  return s;
}

/* Runs one command; a negative status (the command could not run) ends the tool. */
static shmd_reply_t *kv_run(shmd_store_t *s, int argc, const char *const argv[], const size_t lens[]) {
  shmd_reply_t *r = NULL;
  int rc = shmd_kv_command_db(s, g_db, argc, argv, lens, &r);
  if (rc < 0) {
    const char *d = shmd_errdetail();
    die(1, "(error) %s failed on store '%s': %s%s%s%s (%s)", argv[0], shmd_store_name(s), shmd_strerror(rc),
        *d ? " [" : "", d, *d ? "]" : "", advice(rc, shmd_store_name(s)));
  }
  return r;
}

/* kv_run with NUL-terminated words, up to 4. */
static shmd_reply_t *kv_runv(shmd_store_t *s, int argc, const char *a0, const char *a1, size_t l1,
                             const char *a2, const char *a3) {
  const char *argv[4] = {a0, a1, a2, a3};
  size_t lens[4] = {strlen(a0), l1, a2 ? strlen(a2) : 0, a3 ? strlen(a3) : 0};
  return kv_run(s, argc, argv, lens);
}

static void print_error_reply(const shmd_reply_t *r) {
  fputs("(error) ", stderr);
  fwrite(r->str, 1, r->len, stderr);
  if (r->len >= 19 && strncmp(r->str, "ERR unknown command", 19) == 0)
    fputs(" (see docs/commands.md for the supported commands)", stderr);
  fputc('\n', stderr);
}

/* The session's client state (current database, MULTI queue, watched keys), as a redis-cli
 * connection has it. */
static shmd_kv_multi_t *g_client;
static const char *g_store_name; /* -s */
static shmd_store_t *g_store;    /* NULL while -s names a store that does not exist */
static int g_session;            /* reading commands from standard input */

/* A missing store is created by a command that writes (and, in a session, by MULTI / WATCH, which
 * lead to writes); reading commands answer "no such store" and create nothing. An unknown command
 * or a wrong number of arguments answers Redis's error either way. Returns the store, or NULL
 * after printing the error. */
static shmd_store_t *store_for(int argc, const char *const argv[], const size_t lens[]) {
  if (g_store)
    return g_store;
  shmd_reply_t r;
  memset(&r, 0, sizeof r);
  int rc;
  const shmd__kv_cmd_t *cmd = shmd__kv_cmd_check(argc, argv, lens, &r, &rc);
  if (cmd == NULL) {
    if (rc == 0) {
      print_error_reply(&r);
      free(r.str);
    } else {
      fprintf(stderr, "(error) %s\n", shmd_strerror(rc));
    }
    return NULL;
  }
  int creates = (cmd->flags & KV_CMD_WRITE) || (g_session && strcmp(cmd->group, "transactions") == 0);
  if (!creates) {
    fprintf(stderr, "(error) no such store '%s' in %s (%s)\n", g_store_name, g_dir, advice(SHMD_ENOENT, g_store_name));
    return NULL;
  }
  g_store = open_store(g_store_name, 1);
  return g_store;
}

/* Runs a command through the session's client state and prints its reply. Returns 0, or 1 for an
 * error reply. */
static int run_and_print(shmd_store_t *s, int argc, const char *const argv[], const size_t lens[], int tty) {
  shmd_reply_t *r = NULL;
  if (s == NULL && (s = store_for(argc, argv, lens)) == NULL)
    return 1;
  if (g_client == NULL) {
    int rc = shmd_kv_multi_new(s, g_db, &g_client);
    if (rc < 0)
      die_status(1, rc, shmd_store_name(s), "cannot start a session");
  }
  int rc = shmd_kv_multi_command(g_client, argc, argv, lens, &r);
  g_db = shmd_kv_multi_db(g_client);
  if (rc < 0) { /* could not run at all: say so, and let a session go on */
    const char *d = shmd_errdetail();
    fprintf(stderr, "(error) %s failed on store '%s': %s%s%s%s (%s)\n", argv[0], shmd_store_name(s),
            shmd_strerror(rc), *d ? " [" : "", d, *d ? "]" : "", advice(rc, shmd_store_name(s)));
    return 1;
  }
  int bad = r->type == SHMD_REPLY_ERROR;
  if (bad)
    print_error_reply(r);
  else if (g_raw == 0 || (g_raw < 0 && tty))
    cli_print_tty(stdout, r);
  else
    cli_print_raw(stdout, r);
  shmd_reply_free(r);
  fflush(stdout);
  return bad;
}

/* ---------------------------------------------------------------------------------------------- */
/* Help, from the command table (kv/commands.def) */

static void help_command(FILE *f, const shmd__kv_cmd_t *c) {
  fprintf(f, "\n  %s\n  summary: %s\n  group: %s\n\n", c->syntax, c->summary, c->group);
}

/* `help`, `help COMMAND`, `help @group`, as redis-cli. Returns 0, or 1 for an unknown topic. */
static int help(int argc, const char *const argv[]) {
  size_t n = shmd__kv_cmd_count();
  if (argc < 2) {
    printf("shmdict %s, redis-cli for shmdict stores\n"
           "Type: \"help @<group>\" to list the commands of a group (",
           SHMD_TOOL_VERSION);
    const char *seen[32];
    size_t ns = 0;
    for (size_t i = 0; i < n; i++) {
      const char *g = shmd__kv_cmd_at(i)->group;
      size_t k = 0;
      while (k < ns && strcmp(seen[k], g) != 0)
        k++;
      if (k == ns && ns < 32) {
        seen[ns++] = g;
        printf("%s@%s", ns > 1 ? ", " : "", g);
      }
    }
    printf(")\n      \"help <command>\" for help on <command>\n"
           "      \"quit\" to exit\n");
    return 0;
  }
  int found = 0;
  if (argv[1][0] == '@') {
    for (size_t i = 0; i < n; i++) {
      const shmd__kv_cmd_t *c = shmd__kv_cmd_at(i);
      if (strcasecmp(c->group, argv[1] + 1) == 0) {
        help_command(stdout, c);
        found = 1;
      }
    }
  } else {
    const shmd__kv_cmd_t *c = shmd__kv_cmd_find(argv[1], strlen(argv[1]));
    if (c) {
      help_command(stdout, c);
      found = 1;
    }
  }
  if (!found)
    fprintf(stderr, "(error) no help for '%s' (type \"help\" for the groups; docs/commands.md lists every command)\n",
            argv[1]);
  fflush(stdout);
  return !found;
}

/* Local commands of the command loop: QUIT/EXIT leave, HELP prints the table's help. Returns 2 to
 * quit, 1 when handled, -1 when handled with an error, else 0. (SELECT, MULTI and the rest of a
 * connection's state are the client state's: shmd_kv_multi_command().) */
static int local_command(cli_args_t *a, int tty) {
  (void)tty;
  if (strcasecmp(a->argv[0], "quit") == 0 || strcasecmp(a->argv[0], "exit") == 0)
    return 2;
  if (strcasecmp(a->argv[0], "help") == 0)
    return help(a->argc, (const char *const *)a->argv) ? -1 : 1;
  return 0;
}

/* One line of input: split, run, print. Returns 0 ok, 1 error, 2 quit. */
static int run_line(shmd_store_t *s, const char *line, size_t len, int tty) {
  cli_args_t a = {0};
  if (cli_split_line(line, len, &a) < 0) {
    fprintf(stderr, "(error) Invalid argument(s): unbalanced quotes (close every \" and ', and follow a closing quote with a space)\n");
    return 1;
  }
  int rc = 0;
  if (a.argc > 0) {
    int l = local_command(&a, tty);
    if (l == 2)
      rc = 2;
    else if (l < 0)
      rc = 1;
    else if (l == 0)
      rc = run_and_print(s, a.argc, (const char *const *)a.argv, a.lens, tty);
  }
  cli_args_free(&a);
  return rc;
}

#ifdef SHMD_HAVE_READLINE
/* TAB completion of command names (the table's, plus the session's own words), in the case the
 * user started typing in (upper case on an empty word, as redis-cli shows them). */
static char *complete_name(const char *text, int state) {
  static size_t idx, len;
  static const char *const extra[] = {"select", "help", "quit", "exit"};
  if (state == 0) {
    idx = 0;
    len = strlen(text);
  }
  size_t n = shmd__kv_cmd_count();
  int lower = len > 0 && text[0] >= 'a' && text[0] <= 'z';
  while (idx < n + sizeof extra / sizeof extra[0]) {
    const char *name = idx < n ? shmd__kv_cmd_at(idx)->name : extra[idx - n];
    idx++;
    if (strncasecmp(name, text, len) == 0) {
      char *m = strdup(name);
      for (char *p = m; m && !lower && *p; p++)
        *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
      return m;
    }
  }
  return NULL;
}

static char **complete(const char *text, int start, int end) {
  (void)end;
  rl_attempted_completion_over = 1; /* never file names */
  /* only the first word of the line is a command name (and HELP's argument) */
  int first = 1;
  for (int k = 0; k < start; k++)
    if (rl_line_buffer[k] != ' ' && rl_line_buffer[k] != '\t')
      first = 0;
  if (!first && strncasecmp(rl_line_buffer, "help ", 5) != 0)
    return NULL;
  return rl_completion_matches(text, complete_name);
}
#endif

static int command_loop(shmd_store_t *s, const char *name) {
  int failed = 0;
#ifdef SHMD_HAVE_READLINE
  if (isatty(STDIN_FILENO) && isatty(STDOUT_FILENO)) {
    rl_readline_name = "shmdict";
    rl_attempted_completion_function = complete;
    char hist[4096] = "";
    const char *home = getenv("HOME");
    if (home)
      snprintf(hist, sizeof hist, "%s/.shmdict_history", home);
    using_history();
    if (hist[0] && read_history(hist) != 0)
      write_history(hist); /* creates the file, which append_history() needs */
    for (;;) {
      char prompt[128];
      const char *tx = shmd_kv_multi_active(g_client) ? "(TX)" : "";
      if (g_db)
        snprintf(prompt, sizeof prompt, "%s[%u]%s> ", name, g_db, tx);
      else
        snprintf(prompt, sizeof prompt, "%s%s> ", name, tx);
      char *line = readline(prompt);
      if (line == NULL)
        break;
      if (line[0]) {
        add_history(line);
        if (hist[0])
          append_history(1, hist);
      }
      int rc = run_line(s, line, strlen(line), 1);
      free(line);
      if (rc == 2)
        break;
    }
    if (hist[0])
      history_truncate_file(hist, 1000);
    return 0;
  }
#endif
  int tty = isatty(STDOUT_FILENO);
  int prompt = tty && isatty(STDIN_FILENO);
  char *line = NULL;
  size_t cap = 0;
  for (;;) {
    if (prompt) {
      const char *tx = shmd_kv_multi_active(g_client) ? "(TX)" : "";
      if (g_db)
        printf("%s[%u]%s> ", name, g_db, tx);
      else
        printf("%s%s> ", name, tx);
      fflush(stdout);
    }
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0)
      break;
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
      n--;
    int rc = run_line(s, line, (size_t)n, tty);
    if (rc == 2)
      break;
    failed |= rc;
  }
  free(line);
  return failed;
}

/* ---------------------------------------------------------------------------------------------- */
/* Formatting helpers */

static const char *human(uint64_t b, char *buf, size_t n) {
  const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = (double)b;
  int i = 0;
  while (v >= 1024 && i < 4) {
    v /= 1024;
    i++;
  }
  if (i == 0)
    snprintf(buf, n, "%" PRIu64 " B", b);
  else
    snprintf(buf, n, "%.1f %s", v, u[i]);
  return buf;
}

/* Keys in the store's database `db`, or -1 if the keyspace refuses DBSIZE there. */
static int64_t dbsize(shmd_store_t *s, unsigned db) {
  unsigned save = g_db;
  g_db = db;
  shmd_reply_t *r = kv_runv(s, 1, "DBSIZE", NULL, 0, NULL, NULL);
  g_db = save;
  int64_t n = r->type == SHMD_REPLY_INTEGER ? r->integer : -1;
  shmd_reply_free(r);
  return n;
}

/* ---------------------------------------------------------------------------------------------- */
/* list, info, check, drop */

static int cmd_list(void) {
  DIR *d = opendir(g_dir);
  if (d == NULL) {
    if (errno == ENOENT) {
      fprintf(stderr, "shmdict: no stores: %s does not exist (stores are created on first write, "
                      "e.g. `shmdict -s NAME SET key value`; or check -d / $SHMDICT_DIR)\n", g_dir);
      return 0;
    }
    die(1, "cannot read %s: %s (check -d and the directory's permissions)", g_dir, strerror(errno));
  }
  char **names = NULL;
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    char path[8192];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", g_dir, e->d_name);
    if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
      continue;
    names = cli_xrealloc(names, (n + 1) * sizeof *names);
    names[n++] = strdup(e->d_name);
  }
  closedir(d);
  for (size_t i = 0; i + 1 < n; i++) /* few stores: a simple sort */
    for (size_t j = i + 1; j < n; j++)
      if (strcmp(names[i], names[j]) > 0) {
        char *t = names[i];
        names[i] = names[j];
        names[j] = t;
      }
  printf("%-24s %12s %9s %12s\n", "STORE", "SIZE", "SEGMENTS", "KEYS");
  for (size_t i = 0; i < n; i++) {
    shmd_options_t o;
    shmd_options_init(&o);
    o.dir = g_optdir;
    o.group = g_group;
    o.flags = SHMD_OPEN_NOCREATE;
    shmd_store_t *s = NULL;
    int rc = shmd_open(names[i], &o, &s);
    if (rc < 0) {
      printf("%-24s (cannot open: %s; %s)\n", names[i], shmd_strerror(rc), advice(rc, names[i]));
    } else {
      shmd_set_lock_wait(s, ADMIN_LOCK_WAIT_MS);
      shmd_store_info_t info;
      shmd_store_info(s, &info);
      uint64_t keys = 0;
      for (unsigned db = 0; db < SHMD_KV_DATABASES; db++) {
        shmd_kv_info_t ki;
        if (shmd_kv_info(s, db, &ki) == 0)
          keys += ki.keys;
      }
      char hb[32];
      printf("%-24s %12s %9" PRIu32 " %12" PRIu64 "\n", names[i], human(info.store_bytes, hb, sizeof hb),
             info.segments, keys);
      shmd_close(s);
    }
    free(names[i]);
  }
  free(names);
  return 0;
}

static int cmd_info(const char *name) {
  shmd_store_t *s = open_store(name, 0);
  shmd_set_lock_wait(s, ADMIN_LOCK_WAIT_MS);
  shmd_store_info_t in;
  shmd_store_info(s, &in);
  shmd_stats_t st;
  int rc = shmd_stats(s, &st);
  if (rc < 0)
    die_status(1, rc, name, "cannot read statistics of store");
  char b1[32], b2[32], b3[32], b4[32];
  time_t created = (time_t)in.created_unix;
  char when[64];
  strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime(&created));
  printf("store:        %s\n", name);
  printf("directory:    %s\n", g_dir);
  printf("layout:       %" PRIu32 ".%" PRIu32 "\n", in.layout_major, in.layout_minor);
  printf("created:      %s\n", when);
  printf("size:         %s (limit %s, growth step %s)\n", human(in.store_bytes, b1, sizeof b1),
         in.max_store_bytes ? human(in.max_store_bytes, b2, sizeof b2) : "none",
         human(in.segment_bytes, b3, sizeof b3));
  printf("segments:     %" PRIu32 "\n", in.segments);
  for (uint32_t i = 0; i < in.segments; i++) {
    uint64_t sz = 0;
    char fname[256] = "";
    if (shmd_segment_info(s, i, &sz, fname, sizeof fname) == 0) {
      shmd_segment_stats_t ss;
      if (shmd_segment_stats(s, i, &ss) == 0)
        printf("  %4" PRIu32 "  %-24s %10s  free %10s  largest free block %s\n", i, fname,
               human(sz, b1, sizeof b1), human(ss.free_bytes, b2, sizeof b2),
               human(ss.largest_free_block, b3, sizeof b3));
      else
        printf("  %4" PRIu32 "  %-24s %10s\n", i, fname, human(sz, b1, sizeof b1));
    }
  }
  shmd_spare_info_t sp;
  if (shmd_spare_info(s, &sp) == 0)
    printf("spare files:  %" PRIu64 " of live processes (%s); orphans of dead processes removed: %" PRIu64
           " (%s)\n",
           sp.live_files, human(sp.live_bytes, b1, sizeof b1), sp.orphan_files, human(sp.orphan_bytes, b2, sizeof b2));
  printf("lanes:        %" PRIu32 " in use of %" PRIu32 "\n", in.lanes_in_use, in.lanes);
  printf("recoveries:   %" PRIu64 " (operations of dead processes rolled back or finished)\n", in.recoveries);
  printf("roots:        %" PRIu32 "\n", in.roots);
  printf("memory:\n");
  printf("  allocated:  %s (small: %s in %" PRIu64 " objects; large: %s in %" PRIu64 " blocks)\n",
         human(st.allocated_bytes, b1, sizeof b1), human(st.small_bytes_inuse, b2, sizeof b2), st.small_objs_inuse,
         human(st.large_bytes_inuse, b3, sizeof b3), st.large_blocks);
  printf("  free:       %s (largest free block %s)\n", human(st.free_bytes, b1, sizeof b1),
         human(st.largest_free_block, b2, sizeof b2));
  printf("  metadata:   %s (allocator %s)\n", human(st.meta_bytes, b1, sizeof b1),
         human(st.alloc_meta_bytes, b2, sizeof b2));
  double frag = st.slab_bytes ? 100.0 * (double)(st.slab_free_bytes + st.slab_overhead_bytes) / (double)st.slab_bytes : 0;
  printf("  slabs:      %s; free slots %s, overhead %s (fragmentation %.1f%% of slab bytes)\n",
         human(st.slab_bytes, b1, sizeof b1), human(st.slab_free_bytes, b2, sizeof b2),
         human(st.slab_overhead_bytes, b3, sizeof b3), frag);
  printf("memory by size class:\n");
  printf("  %8s %8s %12s %12s %6s\n", "CLASS", "SLABS", "OBJECTS", "BYTES", "FULL");
  for (uint32_t i = 0; i < st.nclasses && i < SHMD_STATS_MAX_CLASSES; i++) {
    const shmd_class_stats_t *c = &st.classes[i];
    if (c->slabs == 0)
      continue;
    uint64_t cap = c->slabs * c->objs_per_slab;
    printf("  %8" PRIu32 " %8" PRIu64 " %12" PRIu64 " %12s %5.1f%%\n", c->obj_bytes, c->slabs, c->objs_inuse,
           human(c->bytes_inuse, b4, sizeof b4), cap ? 100.0 * (double)c->objs_inuse / (double)cap : 0.0);
  }
  printf("keys:\n");
  for (unsigned db = 0; db < SHMD_KV_DATABASES; db++) {
    shmd_kv_info_t ki;
    if ((rc = shmd_kv_info(s, db, &ki)) < 0)
      die_status(1, rc, name, "cannot read the keyspace of store");
    if (ki.keys == 0 && db != 0)
      continue;
    printf("  db%u: %" PRIu64 " keys (string %" PRIu64 ", hash %" PRIu64 ", list %" PRIu64 ", set %" PRIu64
           ", zset %" PRIu64 "; %" PRIu64 " with an expiry; %" PRIu64 " containers awaiting release)\n",
           db, ki.keys, ki.strings, ki.hashes, ki.lists, ki.sets, ki.zsets, ki.expires, ki.garbage);
  }
  shmd_close(s);
  return 0;
}

static int cmd_check(const char *name) {
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = g_optdir;
  o.group = g_group;
  o.flags = SHMD_OPEN_NOCREATE;
  shmd_store_t *s = NULL;
  int rc = shmd_open(name, &o, &s);
  if (rc == SHMD_ENOENT || rc == SHMD_EPERM || rc == SHMD_EINVAL || rc == SHMD_ENOMEM || rc == SHMD_ENOLANE)
    die_status(1, rc, name, "cannot open store");
  if (rc < 0) { /* the store itself is damaged: that is the check's answer */
    const char *d = shmd_errdetail();
    printf("check failed: the store cannot be opened: %s%s%s%s\n", shmd_strerror(rc), *d ? " [" : "", d, *d ? "]" : "");
    fprintf(stderr, "shmdict: store '%s' failed its check (if you have a dump, `shmdict drop %s` and "
                    "`shmdict load %s -i FILE`)\n", name, name, name);
    return 2;
  }
  shmd_set_lock_wait(s, ADMIN_LOCK_WAIT_MS);
  progress("check: allocator", 0, 2, 0);
  rc = shmd_alloc_check(s);
  const char *what = "allocator";
  if (rc == 0) {
    progress("check: keyspace ", 1, 2, 1);
    what = "keyspace";
    rc = shmd_kv_check(s);
  }
  progress("check: done     ", 2, 2, 1);
  /* Orphaned spare files are no damage: opening removed them; say so. */
  shmd_spare_info_t sp;
  if (shmd_spare_info(s, &sp) == 0 && sp.orphan_files > 0) {
    char b1[32];
    printf("removed %" PRIu64 " orphaned spare file%s of dead processes (%s)\n", sp.orphan_files,
           sp.orphan_files == 1 ? "" : "s", human(sp.orphan_bytes, b1, sizeof b1));
  }
  if (rc == SHMD_EBUSY) { /* a live process kept a lock past the bound: not a verdict on the store */
    printf("check incomplete in the %s: %s [%s]\n", what, shmd_strerror(rc), shmd_errdetail());
    fprintf(stderr, "shmdict: store '%s' is busy; run the check again when that process has let go "
                    "(or end it: a dead holder's work is rolled back)\n", name);
    shmd_close(s);
    return 1;
  }
  if (rc < 0) {
    const char *d = shmd_errdetail();
    printf("check failed in the %s: %s%s%s%s\n", what, shmd_strerror(rc), *d ? " [" : "", d, *d ? "]" : "");
    fprintf(stderr, "shmdict: store '%s' failed its check (save what can be read with `shmdict dump %s -o FILE`, "
                    "then `shmdict drop %s` and `shmdict load %s -i FILE`)\n", name, name, name, name);
    shmd_close(s);
    return 2;
  }
  puts("ok");
  shmd_close(s);
  return 0;
}

static int cmd_drop(const char *name) {
  int rc = shmd_drop(name, g_optdir);
  if (rc == SHMD_ENOENT)
    die(1, "store '%s' does not exist in %s (nothing to drop; see `shmdict list`, or check -d / $SHMDICT_DIR)",
        name, g_dir);
  if (rc < 0)
    die_status(1, rc, name, "cannot drop store");
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* dump */

typedef struct {
  int json;
  cli_buf_t out;
  FILE *f;
} dumper_t;

static void emit(dumper_t *d, cli_args_t *cmd) {
  cli_resp_command(&d->out, cmd->argc, (const char *const *)cmd->argv, cmd->lens);
  cli_args_free(cmd);
}

static void flush_out(dumper_t *d) {
  if (d->out.len && fwrite(d->out.data, 1, d->out.len, d->f) != d->out.len)
    die(1, "cannot write the dump: %s (check the disk space and the output path)", strerror(errno));
  d->out.len = 0;
}

/* Emits `cmd key` followed by `per` items of the reply per element group, in batches. */
static void emit_batched(dumper_t *d, const char *cmdname, const shmd_reply_t *key, const shmd_reply_t *items,
                         size_t group, int swap) {
  size_t i = 0;
  while (i < items->nelems) {
    cli_args_t c = {0};
    cli_args_push(&c, cmdname, strlen(cmdname));
    cli_args_push(&c, key->str, key->len);
    for (size_t k = 0; k < DUMP_BATCH && i + group <= items->nelems; k++, i += group) {
      if (swap) { /* ZRANGE gives member, score; ZADD wants score, member */
        cli_args_push(&c, items->elems[i + 1].str, items->elems[i + 1].len);
        cli_args_push(&c, items->elems[i].str, items->elems[i].len);
      } else {
        for (size_t g = 0; g < group; g++)
          cli_args_push(&c, items->elems[i + g].str, items->elems[i + g].len);
      }
    }
    if (c.argc == 2) { /* a trailing partial group: malformed reply */
      cli_args_free(&c);
      break;
    }
    emit(d, &c);
  }
}

static void json_items(cli_buf_t *b, const shmd_reply_t *items, int kind) {
  /* kind 0: array of strings, 1: object of pairs, 2: array of [member, score] */
  cli_buf_puts(b, kind == 1 ? "{" : "[");
  size_t step = kind == 0 ? 1 : 2;
  for (size_t i = 0; i + step <= items->nelems; i += step) {
    if (i)
      cli_buf_puts(b, ",");
    if (kind == 0) {
      cli_json_string(b, items->elems[i].str, items->elems[i].len);
    } else if (kind == 1) {
      cli_json_string(b, items->elems[i].str, items->elems[i].len);
      cli_buf_puts(b, ":");
      cli_json_string(b, items->elems[i + 1].str, items->elems[i + 1].len);
    } else {
      cli_buf_puts(b, "[");
      cli_json_string(b, items->elems[i].str, items->elems[i].len);
      cli_buf_puts(b, ",");
      cli_json_string(b, items->elems[i + 1].str, items->elems[i + 1].len);
      cli_buf_puts(b, "]");
    }
  }
  cli_buf_puts(b, kind == 1 ? "}" : "]");
}

/* Dumps one key. Returns 1 if written, 0 if it vanished meanwhile. */
static int dump_key(dumper_t *d, shmd_store_t *s, const shmd_reply_t *key) {
  shmd_reply_t *t = kv_runv(s, 2, "TYPE", key->str, key->len, NULL, NULL);
  char type[16];
  snprintf(type, sizeof type, "%s", t->str ? t->str : "none");
  shmd_reply_free(t);
  shmd_reply_t *v = NULL;
  int kind = -1;
  const char *cmd = NULL;
  if (strcmp(type, "string") == 0) {
    v = kv_runv(s, 2, "GET", key->str, key->len, NULL, NULL);
    cmd = "SET";
  } else if (strcmp(type, "hash") == 0) {
    v = kv_runv(s, 2, "HGETALL", key->str, key->len, NULL, NULL);
    cmd = "HSET";
    kind = 1;
  } else if (strcmp(type, "list") == 0) {
    v = kv_runv(s, 4, "LRANGE", key->str, key->len, "0", "-1");
    cmd = "RPUSH";
    kind = 0;
  } else if (strcmp(type, "set") == 0) {
    v = kv_runv(s, 2, "SMEMBERS", key->str, key->len, NULL, NULL);
    cmd = "SADD";
    kind = 0;
  } else if (strcmp(type, "zset") == 0) {
    const char *argv[5] = {"ZRANGE", key->str, "0", "-1", "WITHSCORES"};
    size_t lens[5] = {6, key->len, 1, 2, 10};
    v = kv_run(s, 5, argv, lens);
    cmd = "ZADD";
    kind = 2;
  } else if (strcmp(type, "none") == 0) {
    return 0;
  } else {
    fprintf(stderr, "shmdict: skipping key '%.*s' of unknown type '%s' (this shmdict is older than the store)\n",
            (int)key->len, key->str, type);
    return 0;
  }
  if (v->type == SHMD_REPLY_ERROR && strstr(v->str, "max-reply-bytes")) {
    /* not a property of the key: a dump that skipped it would silently lose it */
    print_error_reply(v);
    die(1, "key '%.*s' is bigger than the reply ceiling of %" PRIu64 " bytes; dump again with a higher "
           "--max-reply (e.g. --max-reply 8G)", (int)key->len, key->str, shmd_kv_max_reply());
  }
  if (v->type == SHMD_REPLY_ERROR) {
    fprintf(stderr, "shmdict: skipping key '%.*s': ", (int)key->len, key->str);
    print_error_reply(v);
    shmd_reply_free(v);
    return 0;
  }
  if (v->type == SHMD_REPLY_NIL || (kind >= 0 && (v->type != SHMD_REPLY_ARRAY || v->nelems == 0))) {
    shmd_reply_free(v); /* vanished between TYPE and the read */
    return 0;
  }
  shmd_reply_t *p = kv_runv(s, 2, "PTTL", key->str, key->len, NULL, NULL);
  int64_t pttl = p->type == SHMD_REPLY_INTEGER ? p->integer : -1;
  shmd_reply_free(p);
  if (pttl == -2) {
    shmd_reply_free(v);
    return 0;
  }
  int64_t at = pttl >= 0 ? now_ms() + pttl : -1;
  if (d->json) {
    cli_buf_t *b = &d->out;
    cli_buf_puts(b, "{\"key\":");
    cli_json_string(b, key->str, key->len);
    cli_buf_printf(b, ",\"type\":\"%s\",\"value\":", type);
    if (kind < 0)
      cli_json_string(b, v->str, v->len);
    else
      json_items(b, v, kind);
    if (at >= 0)
      cli_buf_printf(b, ",\"expire_at_ms\":%" PRId64, at);
    cli_buf_puts(b, "}\n");
  } else {
    if (kind < 0) {
      cli_args_t c = {0};
      cli_args_push(&c, "SET", 3);
      cli_args_push(&c, key->str, key->len);
      cli_args_push(&c, v->str, v->len);
      emit(d, &c);
    } else {
      emit_batched(d, cmd, key, v, kind == 0 ? 1 : 2, kind == 2);
    }
    if (at >= 0) {
      char num[32];
      int n = snprintf(num, sizeof num, "%" PRId64, at);
      cli_args_t c = {0};
      cli_args_push(&c, "PEXPIREAT", 9);
      cli_args_push(&c, key->str, key->len);
      cli_args_push(&c, num, (size_t)n);
      emit(d, &c);
    }
  }
  shmd_reply_free(v);
  if (d->out.len >= (1u << 20))
    flush_out(d);
  return 1;
}

/* Counts the named roots that are not the library's own ("shmdict.*": the keyspace, pub/sub, the
 * server's area): the structures a program keeps outside the keyspace, which dump leaves out. */
static int count_foreign_root(const char *root, shmd_ptr_t p, void *arg) {
  (void)p;
  if (strncmp(root, "shmdict.", 8) != 0)
    ++*(uint64_t *)arg;
  return 0;
}

static int cmd_dump(const char *name, int json, const char *outpath) {
  shmd_store_t *s = open_store(name, 0);
  shmd_set_lock_wait(s, ADMIN_LOCK_WAIT_MS);
  dumper_t d = {json, {0}, stdout};
  if (outpath && strcmp(outpath, "-") != 0) {
    d.f = fopen(outpath, "wb");
    if (d.f == NULL)
      die(1, "cannot create %s: %s (check the path and its permissions)", outpath, strerror(errno));
  }
  int64_t total = dbsize(s, g_db);
  if (total < 0)
    die(1, "database %u of store '%s' cannot be read (use -n with an existing database number)", g_db, name);
  if (d.f == stdout && isatty(STDOUT_FILENO))
    g_progress = 0; /* the data goes to the terminal: a bar would interleave with it */
  uint64_t done = 0;
  char cursor[32] = "0";
  do {
    const char *argv[4] = {"SCAN", cursor, "COUNT", "512"};
    size_t lens[4] = {4, strlen(cursor), 5, 3};
    shmd_reply_t *r = kv_run(s, 4, argv, lens);
    if (r->type == SHMD_REPLY_ERROR) {
      print_error_reply(r);
      die(1, "SCAN failed while dumping '%s' (run `shmdict check %s`)", name, name);
    }
    if (r->type != SHMD_REPLY_ARRAY || r->nelems != 2 || r->elems[1].type != SHMD_REPLY_ARRAY)
      die(1, "SCAN gave a malformed reply while dumping '%s' (run `shmdict check %s`)", name, name);
    snprintf(cursor, sizeof cursor, "%.*s", (int)r->elems[0].len, r->elems[0].str);
    for (size_t i = 0; i < r->elems[1].nelems; i++) {
      done += (uint64_t)dump_key(&d, s, &r->elems[1].elems[i]);
      progress("dump", done, (uint64_t)total, 0);
    }
    shmd_reply_free(r);
  } while (strcmp(cursor, "0") != 0);
  flush_out(&d);
  progress("dump", done, done, 1); /* keys that expired or were deleted meanwhile: done is all */
  cli_buf_free(&d.out);
  if (d.f != stdout) {
    if (fclose(d.f) != 0)
      die(1, "cannot write %s: %s (check the disk space)", outpath, strerror(errno));
  } else if (fflush(stdout) != 0) {
    die(1, "cannot write the dump: %s", strerror(errno));
  }
  uint64_t roots = 0;
  (void)shmd_root_foreach(s, count_foreign_root, &roots);
  if (roots)
    fprintf(stderr, "shmdict: dump: %" PRIu64 " named root%s (structures outside the keyspace, made with "
                    "shmd_root_set) %s not included\n", roots, roots == 1 ? "" : "s", roots == 1 ? "is" : "are");
  shmd_close(s);
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* load */

typedef struct {
  shmd_store_t *s;
  uint64_t commands, errors;
} loader_t;

static void load_exec(loader_t *l, cli_args_t *c, size_t where);

/*
 * The keyspace runs each command in one transaction, whose capacity bounds how many elements one
 * HSET / RPUSH / SADD / ZADD may add (a command that does not fit fails whole, changing nothing).
 * A dump's batches are sized for Redis, so a batch that does not fit is run as two halves, in
 * order, recursively. Returns 1 if the command was split (and run), 0 if it cannot be split.
 */
static int load_split(loader_t *l, cli_args_t *c, size_t where) {
  size_t group;
  if (strcasecmp(c->argv[0], "RPUSH") == 0 || strcasecmp(c->argv[0], "SADD") == 0)
    group = 1;
  else if (strcasecmp(c->argv[0], "HSET") == 0 || strcasecmp(c->argv[0], "ZADD") == 0)
    group = 2;
  else
    return 0;
  size_t items = ((size_t)c->argc - 2) / group;
  if (c->argc < 2 || ((size_t)c->argc - 2) % group != 0 || items < 2)
    return 0;
  if (group == 2 && c->argv[0][0] != 'H' && c->argv[0][0] != 'h') { /* ZADD with options: no */
    char *end;
    strtod(c->argv[2], &end);
    if (*end != '\0' && strcasecmp(c->argv[2], "inf") != 0 && strcasecmp(c->argv[2], "+inf") != 0 &&
        strcasecmp(c->argv[2], "-inf") != 0)
      return 0;
  }
  size_t half = items / 2;
  for (int part = 0; part < 2; part++) {
    cli_args_t h = {0};
    cli_args_push(&h, c->argv[0], c->lens[0]);
    cli_args_push(&h, c->argv[1], c->lens[1]);
    size_t from = part == 0 ? 0 : half, to = part == 0 ? half : items;
    for (size_t i = from * group; i < to * group; i++)
      cli_args_push(&h, c->argv[2 + i], c->lens[2 + i]);
    load_exec(l, &h, where);
    cli_args_free(&h);
  }
  return 1;
}

/* Executes one loaded command; PEXPIREAT becomes PEXPIRE with the time left (a key whose time is
 * past is deleted), so loading does not depend on the keyspace knowing PEXPIREAT. */
static void load_exec(loader_t *l, cli_args_t *c, size_t where) {
  if (c->argc == 3 && strcasecmp(c->argv[0], "PEXPIREAT") == 0) {
    char *end;
    long long at = strtoll(c->argv[2], &end, 10);
    if (*end == '\0') {
      long long left = at - (long long)now_ms();
      free(c->argv[0]);
      free(c->argv[2]);
      char num[32];
      int n = snprintf(num, sizeof num, "%lld", left > 0 ? left : 1);
      c->argv[0] = strdup(left > 0 ? "PEXPIRE" : "DEL");
      c->lens[0] = strlen(c->argv[0]);
      c->argv[2] = strdup(num);
      c->lens[2] = (size_t)n;
      if (left <= 0)
        c->argc = 2;
    }
  }
  shmd_reply_t *r = kv_run(l->s, c->argc, (const char *const *)c->argv, c->lens);
  if (r->type == SHMD_REPLY_ERROR && strstr(r->str, "needs a bigger transaction") != NULL &&
      load_split(l, c, where)) {
    shmd_reply_free(r);
    return;
  }
  l->commands++;
  if (r->type == SHMD_REPLY_ERROR) {
    if (++l->errors <= 10) {
      fprintf(stderr, "\nshmdict: command %" PRIu64 " (%s, input byte %zu): ", l->commands, c->argv[0], where);
      print_error_reply(r);
    }
  }
  shmd_reply_free(r);
}

static const cli_json_t *jget(const cli_json_t *o, const char *k) {
  for (size_t i = 0; i + 1 < o->nitems; i += 2)
    if (o->items[i].kind == CJ_STRING && strcmp(o->items[i].str, k) == 0)
      return &o->items[i + 1];
  return NULL;
}

/* Turns one JSON object of `dump --format json` into commands. Returns 0 or -1 (bad shape). */
static int load_json_object(loader_t *l, const cli_json_t *o, size_t where) {
  if (o->kind != CJ_OBJECT)
    return -1;
  const cli_json_t *key = jget(o, "key"), *type = jget(o, "type"), *val = jget(o, "value"),
                   *at = jget(o, "expire_at_ms");
  if (!key || key->kind != CJ_STRING || !type || type->kind != CJ_STRING || !val)
    return -1;
  const char *t = type->str;
  if (strcmp(t, "string") == 0) {
    if (val->kind != CJ_STRING)
      return -1;
    cli_args_t c = {0};
    cli_args_push(&c, "SET", 3);
    cli_args_push(&c, key->str, key->len);
    cli_args_push(&c, val->str, val->len);
    load_exec(l, &c, where);
    cli_args_free(&c);
  } else {
    const char *cmd;
    int zs = 0;
    if (strcmp(t, "hash") == 0 && val->kind == CJ_OBJECT)
      cmd = "HSET";
    else if (strcmp(t, "list") == 0 && val->kind == CJ_ARRAY)
      cmd = "RPUSH";
    else if (strcmp(t, "set") == 0 && val->kind == CJ_ARRAY)
      cmd = "SADD";
    else if (strcmp(t, "zset") == 0 && val->kind == CJ_ARRAY)
      cmd = "ZADD", zs = 1;
    else
      return -1;
    size_t i = 0;
    while (i < val->nitems) {
      cli_args_t c = {0};
      cli_args_push(&c, cmd, strlen(cmd));
      cli_args_push(&c, key->str, key->len);
      for (size_t k = 0; k < DUMP_BATCH && i < val->nitems; k++, i++) {
        const cli_json_t *it = &val->items[i];
        if (zs) {
          if (it->kind != CJ_ARRAY || it->nitems != 2 || it->items[0].kind != CJ_STRING ||
              (it->items[1].kind != CJ_STRING && it->items[1].kind != CJ_NUMBER)) {
            cli_args_free(&c);
            return -1;
          }
          cli_args_push(&c, it->items[1].str, it->items[1].len);
          cli_args_push(&c, it->items[0].str, it->items[0].len);
        } else {
          if (it->kind != CJ_STRING) {
            cli_args_free(&c);
            return -1;
          }
          cli_args_push(&c, it->str, it->len);
        }
      }
      load_exec(l, &c, where);
      cli_args_free(&c);
    }
  }
  if (at && at->kind == CJ_NUMBER) {
    cli_args_t c = {0};
    cli_args_push(&c, "PEXPIREAT", 9);
    cli_args_push(&c, key->str, key->len);
    cli_args_push(&c, at->str, at->len);
    load_exec(l, &c, where);
    cli_args_free(&c);
  }
  return 0;
}

static char *read_all(const char *path, size_t *len) {
  int fd = STDIN_FILENO;
  if (path && strcmp(path, "-") != 0) {
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      die(1, "cannot open %s: %s (check the path given to -i)", path, strerror(errno));
  }
  cli_buf_t b = {0};
  char tmp[1 << 16];
  for (;;) {
    ssize_t n = read(fd, tmp, sizeof tmp);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      die(1, "cannot read %s: %s", path ? path : "standard input", strerror(errno));
    if (n == 0)
      break;
    cli_buf_put(&b, tmp, (size_t)n);
  }
  if (fd != STDIN_FILENO)
    close(fd);
  *len = b.len;
  return b.data ? b.data : cli_xmalloc(1);
}

static int cmd_load(const char *name, const char *format, const char *inpath) {
  size_t n;
  char *p = load_input = read_all(inpath, &n);
  size_t pos = 0;
  while (pos < n && (p[pos] == ' ' || p[pos] == '\n' || p[pos] == '\r' || p[pos] == '\t'))
    pos++;
  if (format == NULL) /* guess from the first byte */
    format = pos < n && p[pos] == '{' ? "json" : pos < n && p[pos] == '*' ? "resp" : "text";
  shmd_store_t *s = open_store(name, 1);
  loader_t l = {s, 0, 0};
  char err[256];
  if (strcmp(format, "resp") == 0) {
    for (;;) {
      cli_args_t c = {0};
      size_t at = pos;
      int rc = cli_resp_parse(p, n, &pos, &c, err, sizeof err);
      if (rc == 0)
        break;
      if (rc < 0)
        die(1, "%s is not a valid RESP stream: %s (after %" PRIu64 " commands; use --format json or text if it is another format)",
            inpath ? inpath : "input", err, l.commands);
      load_exec(&l, &c, at);
      cli_args_free(&c);
      progress("load", pos, n, 0);
    }
  } else if (strcmp(format, "json") == 0) {
    for (;;) {
      while (pos < n && (p[pos] == ' ' || p[pos] == '\n' || p[pos] == '\r' || p[pos] == '\t'))
        pos++;
      if (pos >= n)
        break;
      cli_json_t o;
      size_t at = pos;
      if (cli_json_parse(p, n, &pos, &o, err, sizeof err) < 0)
        die(1, "%s is not valid JSON: %s (after %" PRIu64 " commands)", inpath ? inpath : "input", err, l.commands);
      if (load_json_object(&l, &o, at) < 0)
        die(1, "object at byte %zu of %s is not a key of `shmdict dump --format json` (expected "
               "{\"key\":..,\"type\":\"string|hash|list|set|zset\",\"value\":..})", at, inpath ? inpath : "input");
      cli_json_free(&o);
      progress("load", pos, n, 0);
    }
  } else if (strcmp(format, "text") == 0) {
    while (pos < n) {
      size_t e = pos;
      while (e < n && p[e] != '\n')
        e++;
      size_t len = e - pos;
      if (len && p[pos + len - 1] == '\r')
        len--;
      cli_args_t c = {0};
      if (cli_split_line(p + pos, len, &c) < 0)
        die(1, "unbalanced quotes at byte %zu of %s (close every \" and ')", pos, inpath ? inpath : "input");
      if (c.argc)
        load_exec(&l, &c, pos);
      cli_args_free(&c);
      pos = e + 1;
      progress("load", pos > n ? n : pos, n, 0);
    }
  } else {
    die(2, "unknown format '%s' (use --format resp, json or text)", format);
  }
  progress("load", n, n, 1);
  free(p);
  load_input = NULL;
  shmd_close(s);
  if (l.errors) {
    fprintf(stderr, "shmdict: %" PRIu64 " of %" PRIu64 " commands failed (see the errors above; load into an empty "
                    "store or database to avoid WRONGTYPE errors)\n", l.errors, l.commands);
    return 1;
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */

/* Parses a byte count for --max-reply / $SHMDICT_MAX_REPLY: digits with an optional K, M, G or T
 * (binary multiples). Returns 0, or -1 for anything else, 0 or an overflow. */
static int parse_bytes(const char *v, uint64_t *out) {
  if (v == NULL || *v < '0' || *v > '9')
    return -1;
  errno = 0;
  char *end;
  unsigned long long n = strtoull(v, &end, 10);
  if (errno || end == v)
    return -1;
  unsigned shift = 0;
  if (*end) {
    const char *units = "KMGT";
    const char *u = strchr(units, end[0] & ~0x20);
    if (u == NULL || end[1] != '\0')
      return -1;
    shift = 10u * (unsigned)(u - units + 1);
  }
  if (n == 0 || n > (UINT64_MAX >> shift))
    return -1;
  *out = (uint64_t)n << shift;
  return 0;
}

static const char *need_store(int argc, char **argv, int i, const char *cmd) {
  if (i >= argc)
    die(2, "%s needs a store name: shmdict %s STORE (see `shmdict list`)", cmd, cmd);
  return argv[i];
}

int main(int argc, char **argv) {
  const char *store = NULL, *max_reply = getenv("SHMDICT_MAX_REPLY"), *max_reply_from = "$SHMDICT_MAX_REPLY";
  int i = 1, from_stdin = 0;
  for (; i < argc && argv[i][0] == '-'; i++) {
    const char *o = argv[i];
    if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0) {
      usage(stdout);
      return 0;
    }
    if (strcmp(o, "--version") == 0 || strcmp(o, "-v") == 0) {
      printf("shmdict %s\n", SHMD_TOOL_VERSION);
      return 0;
    }
    if (strcmp(o, "--raw") == 0 || strcmp(o, "--no-raw") == 0) {
      g_raw = o[2] == 'r';
      continue;
    }
    if (strcmp(o, "-x") == 0) {
      from_stdin = 1;
      continue;
    }
    if (strcmp(o, "--") == 0) {
      i++;
      break;
    }
    if (strcmp(o, "--max-reply") == 0) {
      if (i + 1 >= argc) {
        fprintf(stderr, "shmdict: option --max-reply needs a value (see `shmdict --help`)\n");
        return 2;
      }
      max_reply = argv[++i];
      max_reply_from = "--max-reply";
      continue;
    }
    if (strcmp(o, "-d") != 0 && strcmp(o, "-s") != 0 && strcmp(o, "-n") != 0 && strcmp(o, "--group") != 0) {
      fprintf(stderr, "shmdict: unknown option '%s' (see `shmdict --help`)\n", o);
      return 2;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "shmdict: option %s needs a value (see `shmdict --help`)\n", o);
      return 2;
    }
    const char *v = argv[++i];
    if (o[1] == '-') {
      if (v[0] == '\0') {
        fprintf(stderr, "shmdict: --group needs a group name or number\n");
        return 2;
      }
      g_group = v;
    } else if (o[1] == 'd') {
      g_optdir = v;
    } else if (o[1] == 's') {
      store = v;
    } else {
      char *end;
      unsigned long db = strtoul(v, &end, 10);
      if (*end || end == v || db >= SHMD_KV_DATABASES) {
        fprintf(stderr, "shmdict: -n needs a database number from 0 to %u, got '%s'\n", SHMD_KV_DATABASES - 1, v);
        return 2;
      }
      g_db = (unsigned)db;
    }
  }
  if (max_reply && *max_reply) {
    uint64_t bytes;
    if (parse_bytes(max_reply, &bytes)) {
      fprintf(stderr, "shmdict: %s needs a size in bytes such as 1048576, 64M or 2G, got '%s'\n", max_reply_from, max_reply);
      return 2;
    }
    shmd_kv_set_max_reply(bytes);
  }
  const char *env = getenv("SHMDICT_DIR");
  snprintf(g_dir, sizeof g_dir, "%s", g_optdir ? g_optdir : env && *env ? env : DEFAULT_DIR);
  g_progress = isatty(STDERR_FILENO);

  if (store == NULL && i >= argc) { /* no command: a session, as redis-cli without arguments */
    const char *e = getenv("SHMDICT_STORE");
    store = e && *e ? e : "default";
  }
  if (i < argc && strcasecmp(argv[i], "help") == 0 && (store || i + 2 >= argc))
    return help(argc - i, (const char *const *)argv + i);
  if (store) {
    g_store_name = store;
    shmd_store_t *s = try_open_store(store);
    g_store = s;
    int rc;
    if (i < argc) {
      int n = argc - i + from_stdin;
      const char **av = cli_xmalloc((size_t)n * sizeof *av);
      size_t *lens = cli_xmalloc((size_t)n * sizeof *lens);
      for (int k = i; k < argc; k++) {
        av[k - i] = argv[k];
        lens[k - i] = strlen(argv[k]);
      }
      char *in = NULL;
      if (from_stdin) { /* -x: all of standard input, as it is (redis-cli keeps a final newline) */
        cli_buf_t b = {0};
        char buf[65536];
        size_t got;
        while ((got = fread(buf, 1, sizeof buf, stdin)) > 0)
          cli_buf_put(&b, buf, got);
        cli_buf_put(&b, "", 1);
        in = b.data;
        av[n - 1] = in;
        lens[n - 1] = b.len - 1;
      }
      rc = run_and_print(s, n, av, lens, isatty(STDOUT_FILENO));
      free(in);
      free(av);
      free(lens);
    } else {
      g_session = 1;
      rc = command_loop(s, store);
    }
    shmd_kv_multi_free(g_client);
    shmd_close(g_store);
    return rc;
  }
  const char *cmd = argv[i++];
  if (strcmp(cmd, "list") == 0)
    return cmd_list();
  if (strcmp(cmd, "info") == 0)
    return cmd_info(need_store(argc, argv, i, cmd));
  if (strcmp(cmd, "check") == 0)
    return cmd_check(need_store(argc, argv, i, cmd));
  if (strcmp(cmd, "drop") == 0)
    return cmd_drop(need_store(argc, argv, i, cmd));
  if (strcmp(cmd, "dump") == 0 || strcmp(cmd, "load") == 0) {
    const char *name = need_store(argc, argv, i++, cmd);
    const char *format = NULL, *file = NULL;
    int load = cmd[0] == 'l';
    for (; i < argc; i++) {
      if (strcmp(argv[i], "--format") == 0 && i + 1 < argc) {
        format = argv[++i];
      } else if (strcmp(argv[i], load ? "-i" : "-o") == 0 && i + 1 < argc) {
        file = argv[++i];
      } else {
        fprintf(stderr, "shmdict: unexpected argument '%s' (usage: shmdict %s STORE [--format FORMAT] [%s FILE])\n",
                argv[i], cmd, load ? "-i" : "-o");
        return 2;
      }
    }
    if (load)
      return cmd_load(name, format, file);
    if (format && strcmp(format, "resp") != 0 && strcmp(format, "json") != 0)
      die(2, "unknown format '%s' (use --format resp or --format json)", format);
    return cmd_dump(name, format && strcmp(format, "json") == 0, file);
  }
  if (strcmp(cmd, "persist") == 0 || strcmp(cmd, "restore") == 0) {
    const char *name = need_store(argc, argv, i++, cmd);
    const char *dir = NULL, *fsync = NULL, *ring = NULL;
    int restore = cmd[0] == 'r';
    for (; i < argc; i++) {
      if (!restore && strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
        dir = argv[++i];
      else if (!restore && strcmp(argv[i], "--fsync") == 0 && i + 1 < argc)
        fsync = argv[++i];
      else if (!restore && strcmp(argv[i], "--ring") == 0 && i + 1 < argc)
        ring = argv[++i];
      else if (restore && strcmp(argv[i], "--from") == 0 && i + 1 < argc)
        dir = argv[++i];
      else
        die(2, "unexpected argument '%s' (usage: shmdict %s)", argv[i],
            restore ? "restore STORE --from PATH" : "persist STORE --dir PATH [--fsync always|everysec|no] [--ring BYTES]");
    }
    if (dir == NULL)
      die(2, "%s needs %s PATH (the log directory)", cmd, restore ? "--from" : "--dir");
    uint64_t ring_bytes = 0;
    if (ring && parse_bytes(ring, &ring_bytes))
      die(2, "--ring needs a size in bytes such as 16M, got '%s'", ring);
    shmd_store_t *s = open_store(name, 1);
    int rc = restore ? cli_restore(s, name, dir, g_progress ? restore_progress : NULL)
                     : cli_persist(s, name, dir, fsync, ring_bytes);
    shmd_close(s);
    return rc;
  }
  fprintf(stderr, "shmdict: unknown command '%s' (admin commands: list, info, check, drop, dump, load, persist, restore; "
                  "to run a Redis command use `shmdict -s STORE %s ...`)\n", cmd, cmd);
  return 2;
}
