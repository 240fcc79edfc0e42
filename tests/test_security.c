/* SPDX-License-Identifier: MIT */
/*
 * Security and resource limits of the store's files (issue 12, items 1, 5 and 6), tested as the
 * outside audit attacked: with two real users. The suite runs as root (CI does); each test forks
 * children that drop to two unprivileged uids, ATTACKER (1111) and VICTIM (2222), in a store root
 * that both may use: a fresh directory made root-owned and sticky, 01777, like /dev/shm/shmdict.
 * Without root the multi-user tests are skipped.
 *   Item 1, store takeover: (a) a store directory made by the attacker, with modes that let them
 * in; (b) a symbolic link planted in place of the victim's store directory, pointing at the
 * attacker's store; (c) an empty directory made by the attacker, whose segment 0 the attacker then
 * swaps; plus the rules for the store root, root opening another user's store, and group-shared
 * stores. Item 5: RLIMIT_FSIZE answers SHMD_ENOSPC, never SIGXFSZ, and leaves no temporary or
 * spare file (at creation, at growth, in a bulk load by the CLI). Item 6: spare segment files of
 * killed processes are removed by the next open or growth and reported, those of live processes
 * never (the owner's lock, not its pid, decides). Tests that fork say mp_, tests that kill crash_.
 */
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "shmdict/hash.h"
#include "shmdict/kv.h"
#include "support.h"

/* Growth ahead of need (segments/store.c), driven here directly instead of through a hash. */
int shmd__grow_ahead(shmd_store_t *s, uint64_t want_data_bytes, int start);

#define MIB (UINT64_C(1) << 20)
#define ATTACKER 1111u
#define VICTIM 2222u
#define OUTSIDER 4444u
#define GROUP 3333u /* shared by ATTACKER and VICTIM in the group tests */

TestSuite(security, .init = ts_init, .fini = ts_fini, .timeout = 240);

/* ---------------------------------------------------------------------------------------------- */
/* Helpers */

static void need_root(void) {
  if (geteuid() != 0)
    cr_skip_test("needs root to switch between two users");
  /* The store root: root-owned and sticky, as /tmp and a root-made /dev/shm/shmdict are. */
  cr_assert_eq(chmod(ts_dir, 01777), 0);
}

/* Runs fn(arg) in a child as uid (group gid, supplementary groups `groups`) and returns its exit
 * status (128 + signal if killed). fn returns 0 for the expected outcome, else a code of its own
 * (and says what it saw on stderr). The child dies with the test process (support_crash.h). */
typedef struct {
  uint32_t uid, gid;
  const gid_t *groups;
  int ngroups;
  int (*fn)(void *);
  void *arg;
} as_arg_t;

static int as_child(ts_crash_child_t *cc) {
  const as_arg_t *a = cc->arg;
  if (setgroups((size_t)a->ngroups, a->groups) || setresgid(a->gid, a->gid, a->gid) || setresuid(a->uid, a->uid, a->uid))
    return 90;
  umask(077); /* the strictest umask: modes that the store needs must not depend on it */
  return a->fn(a->arg);
}

static int run_as(uint32_t uid, uint32_t gid, const gid_t *groups, int ngroups, int (*fn)(void *), void *arg) {
  as_arg_t a = {uid, gid, groups, ngroups, fn, arg};
  return ts_crash_run(NULL, &(ts_crash_spec_t){.what = "the other user", .fn = as_child, .arg = &a, .end = TS_END_ANY},
                      NULL);
}

/* Runs fn in a child (dying with the test) and returns its exit status. */
static int in_child(const char *what, ts_crash_fn fn, void *arg) {
  return ts_crash_run(NULL, &(ts_crash_spec_t){.what = what, .fn = fn, .arg = arg, .end = TS_END_ANY}, NULL);
}

static int as_user(uint32_t uid, int (*fn)(void *), void *arg) { return run_as(uid, uid, NULL, 0, fn, arg); }

static shmd_options_t sec_opts(void) { return ts_opts(4 * MIB, 4 * MIB); }

static int open_as(const char *name, const char *group, int flags, shmd_store_t **s) {
  shmd_options_t o = sec_opts();
  o.group = group;
  o.flags = (uint32_t)flags;
  *s = NULL;
  return shmd_open(name, &o, s);
}

static int kv2(shmd_store_t *s, const char *cmd, const char *k, const char *v, shmd_reply_t **out) {
  const char *argv[3] = {cmd, k, v};
  size_t lens[3] = {strlen(cmd), strlen(k), v ? strlen(v) : 0};
  return shmd_kv_command(s, v ? 3 : 2, argv, lens, out);
}

/* SET k v; 0 when the reply is OK. */
static int set_kv(shmd_store_t *s, const char *k, const char *v) {
  shmd_reply_t *r = NULL;
  int rc = kv2(s, "SET", k, v, &r);
  int ok = rc == 0 && r->type == SHMD_REPLY_STATUS;
  shmd_reply_free(r);
  return ok ? 0 : -1;
}

/* GET k into out; 1 found, 0 nil, -1 failure. */
static int get_kv(shmd_store_t *s, const char *k, char *out, size_t n) {
  shmd_reply_t *r = NULL;
  int rc = kv2(s, "GET", k, NULL, &r);
  int res = -1;
  if (rc == 0 && r->type == SHMD_REPLY_BULK) {
    snprintf(out, n, "%.*s", (int)r->len, r->str);
    res = 1;
  } else if (rc == 0 && r->type == SHMD_REPLY_NIL) {
    res = 0;
  }
  shmd_reply_free(r);
  return res;
}

static void path_of(char *out, size_t n, const char *a, const char *b) {
  if (b)
    snprintf(out, n, "%s/%s/%s", ts_dir, a, b);
  else
    snprintf(out, n, "%s/%s", ts_dir, a);
}

/* chmod of every file in store directory `name` (the attacker opening its store up). */
static void chmod_files(const char *name, mode_t mode) {
  char dir[512];
  path_of(dir, sizeof dir, name, NULL);
  DIR *d = opendir(dir);
  if (d == NULL)
    return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    chmod(p, mode);
  }
  closedir(d);
}

/* Files in store directory `name` whose names start with `prefix` (all but . and .. for ""). */
static int count_files(const char *name, const char *prefix) {
  char dir[512];
  path_of(dir, sizeof dir, name, NULL);
  DIR *d = opendir(dir);
  if (d == NULL)
    return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strncmp(e->d_name, prefix, strlen(prefix)) == 0)
      n++;
  closedir(d);
  return n;
}

static int expect(int cond, int code, const char *what) {
  if (!cond)
    fprintf(stderr, "[child %d] %s (detail: %s)\n", (int)getpid(), what, shmd_errdetail());
  return cond ? 0 : code;
}

/* ---------------------------------------------------------------------------------------------- */
/* Item 1: store takeover by another local user */

/* The attacker makes store `arg` with a planted key, then opens it to everyone: 0777, 0666. */
static int attacker_plants_open_store(void *arg) {
  shmd_store_t *s;
  if (open_as(arg, NULL, 0, &s) || set_kv(s, "planted", "1"))
    return 1;
  shmd_close(s);
  char dir[512];
  path_of(dir, sizeof dir, arg, NULL);
  chmod_files(arg, 0666);
  return chmod(dir, 0777) ? 2 : 0;
}

/* The victim stores a secret in store `arg`: must be refused, with EPERM naming the owner. */
static int victim_writes_secret_refused(void *arg) {
  shmd_store_t *s;
  int rc = open_as(arg, NULL, 0, &s);
  if (rc == 0) {
    int w = set_kv(s, "password", "hunter2");
    fprintf(stderr, "[victim] opened %s and SET password: %s\n", (char *)arg, w == 0 ? "OK" : "failed");
    shmd_close(s);
    return 1;
  }
  if (rc != SHMD_EPERM)
    return expect(0, 2, "expected SHMD_EPERM");
  return expect(strstr(shmd_errdetail(), "owned by uid 1111, expected 2222") != NULL, 3, "detail names both uids");
}

/* The attacker looks for the victim's secret in store `arg`: must not find it. */
static int attacker_finds_no_secret(void *arg) {
  shmd_store_t *s;
  if (open_as(arg, NULL, SHMD_OPEN_NOCREATE, &s))
    return 0; /* gone or refused: nothing to read either */
  char v[64] = "";
  int got = get_kv(s, "password", v, sizeof v);
  shmd_close(s);
  if (got == 1)
    fprintf(stderr, "[attacker] read the victim's password: %s\n", v);
  return got == 1 ? 1 : 0;
}

/* (a) The attacker pre-creates the victim's store with a 0777 directory and 0666 files. Before the
 * fix the victim's SET answered OK and the attacker read the value back. */
Test(security, mp_attack_a_store_made_by_another_user) {
  need_root();
  cr_assert_eq(as_user(ATTACKER, attacker_plants_open_store, "sessions"), 0);
  cr_assert_eq(as_user(VICTIM, victim_writes_secret_refused, "sessions"), 0,
               "the victim must refuse a store directory another user made");
  cr_assert_eq(as_user(ATTACKER, attacker_finds_no_secret, "sessions"), 0, "the attacker read the secret");
}

/* (b) A symbolic link in place of the victim's store, to the attacker's own (open) store. */
static int attacker_plants_link(void *arg) {
  (void)arg;
  if (attacker_plants_open_store("mine"))
    return 1;
  char target[512], link[512];
  path_of(target, sizeof target, "mine", NULL);
  path_of(link, sizeof link, "sess2", NULL);
  return symlink(target, link) ? 2 : 0;
}

static int victim_refuses_link(void *arg) {
  shmd_store_t *s;
  int rc = open_as(arg, NULL, 0, &s);
  if (rc == 0) {
    set_kv(s, "password", "hunter2");
    shmd_close(s);
    return expect(0, 1, "the victim opened a store through a symbolic link");
  }
  if (rc != SHMD_ELOOP)
    return expect(0, 2, "expected SHMD_ELOOP");
  return expect(strstr(shmd_errdetail(), "symbolic link") != NULL, 3, "detail says symbolic link");
}

Test(security, mp_attack_b_symlink_to_the_attackers_store) {
  need_root();
  cr_assert_eq(as_user(ATTACKER, attacker_plants_link, NULL), 0);
  cr_assert_eq(as_user(VICTIM, victim_refuses_link, "sess2"), 0, "the victim must not follow the link");
  cr_assert_eq(as_user(ATTACKER, attacker_finds_no_secret, "mine"), 0, "the victim wrote into the attacker's store");
  struct stat st;
  char link[512];
  path_of(link, sizeof link, "sess2", NULL);
  cr_assert_eq(lstat(link, &st), 0);
  cr_assert(S_ISLNK(st.st_mode), "the planted link is left alone");
}

/* (c) The attacker makes an empty directory for the victim's store; once the victim has filled
 * it, the attacker (who owns the directory) swaps segment 0 for one of its own store's. */
static int attacker_makes_empty_dir(void *arg) {
  char dir[512];
  path_of(dir, sizeof dir, arg, NULL);
  if (mkdir(dir, 0700) || chmod(dir, 0777))
    return 1;
  return 0;
}

static int attacker_swaps_segment0(void *arg) {
  if (attacker_plants_open_store("evil"))
    return 1;
  char seg0[512], old[512], evil0[512];
  path_of(seg0, sizeof seg0, arg, "seg-00000");
  path_of(old, sizeof old, arg, "victims-old-seg");
  path_of(evil0, sizeof evil0, "evil", "seg-00000");
  (void)rename(seg0, old); /* there only if the victim's creation was accepted */
  return link(evil0, seg0) ? 2 : 0;
}

static int victim_reads_refused(void *arg) {
  shmd_store_t *s;
  int rc = open_as(arg, NULL, 0, &s);
  if (rc == 0) {
    char v[64] = "";
    int got = get_kv(s, "planted", v, sizeof v);
    shmd_close(s);
    return expect(0, got == 1 ? 1 : 4, got == 1 ? "the victim reads the attacker's data" : "the victim opened it");
  }
  return expect(rc == SHMD_EPERM, 2, "expected SHMD_EPERM");
}

Test(security, mp_attack_c_empty_dir_then_swapped_segment) {
  need_root();
  cr_assert_eq(as_user(ATTACKER, attacker_makes_empty_dir, "sess3"), 0);
  cr_assert_eq(as_user(VICTIM, victim_writes_secret_refused, "sess3"), 0,
               "the victim must not create its store in another user's directory");
  cr_assert_eq(as_user(ATTACKER, attacker_swaps_segment0, "sess3"), 0);
  cr_assert_eq(as_user(VICTIM, victim_reads_refused, "sess3"), 0, "the victim must not attach the swapped store");
}

/* A store the owner made, later opened up (0777 directory, 0666 files) by whoever could: refused
 * by its own owner too, file by file (a segment file of the wrong owner or mode). */
static int owner_makes_store(void *arg) {
  shmd_store_t *s;
  if (open_as(arg, NULL, 0, &s) || set_kv(s, "k", "v"))
    return 1;
  shmd_ptr_t p; /* a second segment */
  if (shmd_alloc(s, 5 * MIB, &p))
    return 2;
  shmd_close(s);
  return 0;
}

static int owner_opens_expecting(void *arg) {
  shmd_store_t *s;
  int rc = open_as("own", NULL, SHMD_OPEN_NOCREATE, &s);
  if (rc == 0) {
    rc = shmd_attach_all(s, 0);
    shmd_close(s);
  }
  const char *want = arg;
  if (want == NULL)
    return expect(rc == 0, 1, "the owner's own clean store opens");
  return expect(rc == SHMD_EPERM && strstr(shmd_errdetail(), want) != NULL, 2, want);
}

Test(security, mp_modes_and_owners_of_a_private_store) {
  need_root();
  cr_assert_eq(as_user(VICTIM, owner_makes_store, "own"), 0);
  cr_assert_eq(as_user(VICTIM, owner_opens_expecting, NULL), 0);
  char dir[512], seg1[512];
  path_of(dir, sizeof dir, "own", NULL);
  cr_assert_eq(chmod(dir, 0770), 0);
  cr_assert_eq(as_user(VICTIM, owner_opens_expecting, "is writable by group/others (mode 0770)"), 0);
  cr_assert_eq(chmod(dir, 0700), 0);
  /* a segment file writable by others; then one owned by someone else (root here) */
  DIR *d = opendir(dir);
  struct dirent *e;
  seg1[0] = '\0';
  while ((e = readdir(d)) != NULL)
    if (strncmp(e->d_name, "seg-00001-", 10) == 0)
      snprintf(seg1, sizeof seg1, "%s/%s", dir, e->d_name);
  closedir(d);
  cr_assert_neq(seg1[0], '\0');
  cr_assert_eq(chmod(seg1, 0606), 0);
  cr_assert_eq(as_user(VICTIM, owner_opens_expecting, "writable by group/others (mode 0606)"), 0);
  cr_assert_eq(chmod(seg1, 0600), 0);
  cr_assert_eq(chown(seg1, 0, 0), 0);
  cr_assert_eq(as_user(VICTIM, owner_opens_expecting, "owned by uid 0, expected 2222"), 0);
  cr_assert_eq(chown(seg1, VICTIM, VICTIM), 0);
  cr_assert_eq(as_user(VICTIM, owner_opens_expecting, NULL), 0);
}

/* Root opens only stores root owns: a user's store is refused (and not grown with root-owned
 * files the owner could not open). */
Test(security, mp_root_refuses_a_users_store) {
  need_root();
  cr_assert_eq(as_user(VICTIM, owner_makes_store, "users"), 0);
  shmd_store_t *s = NULL;
  shmd_options_t o = sec_opts();
  int rc = shmd_open("users", &o, &s);
  cr_assert_eq(rc, SHMD_EPERM, "root opened a user's store: %s", shmd_strerror(rc));
  cr_assert_null(s);
  cr_assert(strstr(shmd_errdetail(), "owned by uid 2222, expected 0"), "%s", shmd_errdetail());
  cr_assert_eq(shmd_open("roots", &o, &s), 0, "root's own store in the same directory: %s", shmd_errdetail());
  shmd_close(s);
}

/* The store root: it must belong to the caller or root, and be sticky when others may write it. */
static int victim_opens_in(void *arg) {
  shmd_options_t o = sec_opts();
  o.dir = arg;
  shmd_store_t *s = NULL;
  int rc = shmd_open("x", &o, &s);
  shmd_close(s);
  return rc == 0 ? 0 : rc == SHMD_EPERM ? 1 : 2;
}

static int attacker_makes_root(void *arg) {
  return mkdir(arg, 0700) || chmod(arg, 01777) ? 1 : 0;
}

Test(security, mp_store_root_must_be_trusted) {
  need_root();
  char att[512], loose[512], made[512];
  path_of(att, sizeof att, "attackers-root", NULL);
  path_of(loose, sizeof loose, "loose-root", NULL);
  path_of(made, sizeof made, "made-root", NULL);
  /* a sticky root owned by another user: its owner may rename anything in it */
  cr_assert_eq(as_user(ATTACKER, attacker_makes_root, att), 0);
  cr_assert_eq(as_user(VICTIM, victim_opens_in, att), 1, "a root owned by another user must be refused");
  /* a root writable by others without the sticky bit, even if it is the caller's own */
  cr_assert_eq(mkdir(loose, 0700), 0);
  cr_assert_eq(chown(loose, VICTIM, VICTIM), 0);
  cr_assert_eq(chmod(loose, 0777), 0);
  cr_assert_eq(as_user(VICTIM, victim_opens_in, loose), 1, "a non-sticky world-writable root must be refused");
  cr_assert_eq(chmod(loose, 01777), 0);
  cr_assert_eq(as_user(VICTIM, victim_opens_in, loose), 0, "a sticky root of one's own is fine");
  /* a root the library makes for an ordinary user is private (nobody else could use it anyway) */
  cr_assert_eq(as_user(VICTIM, victim_opens_in, made), 0);
  struct stat st;
  cr_assert_eq(stat(made, &st), 0);
  cr_assert_eq(st.st_mode & 07777, 0700, "made %o", st.st_mode & 07777);
  /* and root's is a shared directory like /tmp */
  char rootmade[512];
  path_of(rootmade, sizeof rootmade, "root-made", NULL);
  shmd_options_t o = sec_opts();
  o.dir = rootmade;
  shmd_store_t *s = NULL;
  cr_assert_eq(shmd_open("r", &o, &s), 0, "%s", shmd_errdetail());
  shmd_close(s);
  cr_assert_eq(stat(rootmade, &st), 0);
  cr_assert_eq(st.st_mode & 07777, 01777, "made %o", st.st_mode & 07777);
  cr_assert_eq(as_user(VICTIM, victim_opens_in, rootmade), 0, "others use root's shared directory");
}

/* ---- group-shared stores ---- */

static const gid_t g_members[1] = {GROUP};

static int member_creates(void *arg) {
  (void)arg;
  shmd_store_t *s;
  if (open_as("team", "3333", 0, &s))
    return expect(0, 1, "a member creates the group store");
  int rc = set_kv(s, "from", "attacker-uid");
  shmd_close(s);
  return rc ? 2 : 0;
}

static int member_uses(void *arg) {
  (void)arg;
  shmd_store_t *s;
  if (open_as("team", "3333", SHMD_OPEN_NOCREATE, &s))
    return expect(0, 1, "another member opens the group store");
  char v[64] = "";
  if (get_kv(s, "from", v, sizeof v) != 1 || strcmp(v, "attacker-uid") != 0)
    return 2;
  shmd_ptr_t p; /* growth by this member: a file of its own, of the group */
  if (shmd_alloc(s, 5 * MIB, &p) || set_kv(s, "big", "grown by the victim uid"))
    return 3;
  shmd_close(s);
  return 0;
}

static int member_reads_growth(void *arg) {
  (void)arg;
  shmd_store_t *s;
  if (open_as("team", "3333", SHMD_OPEN_NOCREATE, &s))
    return 1;
  int rc = shmd_attach_all(s, 0);
  char v[64] = "";
  int got = get_kv(s, "big", v, sizeof v);
  shmd_close(s);
  return expect(rc == 0 && got == 1, 2, "the creator attaches the other member's segment");
}

static int open_expect(const char *group, int want, const char *detail) {
  shmd_store_t *s;
  int rc = open_as("team", group, SHMD_OPEN_NOCREATE, &s);
  shmd_close(s);
  if (rc != want)
    fprintf(stderr, "[child] got %s, expected %s\n", shmd_err_name(rc), shmd_err_name(want));
  return expect(rc == want && (detail == NULL || strstr(shmd_errdetail(), detail)), 1, detail ? detail : "status");
}

static int outsider_refused(void *arg) { return open_expect("3333", SHMD_EPERM, arg); }
static int member_without_group_refused(void *arg) { return open_expect(NULL, SHMD_EPERM, arg); }
static int member_with_group(void *arg) { return open_expect("3333", arg ? SHMD_EPERM : 0, arg); }

Test(security, mp_group_shared_store) {
  need_root();
  cr_assert_eq(run_as(ATTACKER, ATTACKER, g_members, 1, member_creates, NULL), 0);
  char dir[512], seg0[512];
  path_of(dir, sizeof dir, "team", NULL);
  path_of(seg0, sizeof seg0, "team", "seg-00000");
  struct stat st;
  cr_assert_eq(stat(dir, &st), 0);
  cr_assert_eq(st.st_mode & 07777, 02770, "directory %o (the umask was 077)", st.st_mode & 07777);
  cr_assert_eq(st.st_gid, GROUP);
  cr_assert_eq(stat(seg0, &st), 0);
  cr_assert_eq(st.st_mode & 07777, 0660, "file %o", st.st_mode & 07777);
  cr_assert_eq(st.st_gid, GROUP);
  /* another member uses it and grows it; the creator sees the growth */
  cr_assert_eq(run_as(VICTIM, VICTIM, g_members, 1, member_uses, NULL), 0);
  cr_assert_eq(count_files("team", "seg-00001-"), 1);
  cr_assert_eq(run_as(ATTACKER, ATTACKER, g_members, 1, member_reads_growth, NULL), 0);
  /* someone outside the group; a member who does not say it is a group store */
  cr_assert_eq(as_user(OUTSIDER, outsider_refused, NULL), 0);
  cr_assert_eq(run_as(VICTIM, VICTIM, g_members, 1, member_without_group_refused, "open it with the group option"), 0);
  /* a group store whose directory lets others in */
  cr_assert_eq(chmod(dir, 02777), 0);
  cr_assert_eq(run_as(VICTIM, VICTIM, g_members, 1, member_with_group, "gives others access"), 0);
  cr_assert_eq(chmod(dir, 02770), 0);
  cr_assert_eq(chmod(seg0, 0666), 0);
  cr_assert_eq(run_as(VICTIM, VICTIM, g_members, 1, member_with_group, "gives others access"), 0);
  cr_assert_eq(chmod(seg0, 0660), 0);
  cr_assert_eq(run_as(VICTIM, VICTIM, g_members, 1, member_with_group, NULL), 0);
  /* the directory given to another group */
  cr_assert_eq(chown(dir, (uid_t)-1, OUTSIDER), 0);
  cr_assert_eq(run_as(VICTIM, VICTIM, g_members, 1, member_with_group, "not to group 3333"), 0);
}

static int private_store_opened_as_group(void *arg) {
  (void)arg;
  shmd_store_t *s;
  if (open_as("priv", NULL, 0, &s))
    return 1;
  shmd_close(s);
  int rc = open_as("priv", "3333", 0, &s);
  shmd_close(s);
  return expect(rc == SHMD_EPERM, 2, "a private store opened with the group option is refused");
}

static int non_member_creates_group_store(void *arg) {
  (void)arg;
  shmd_store_t *s;
  int rc = open_as("notmine", "3333", 0, &s);
  shmd_close(s);
  return expect(rc == SHMD_EPERM && strstr(shmd_errdetail(), "group"), 1, "a non-member cannot make a group store");
}

Test(security, mp_group_option_mismatches) {
  need_root();
  cr_assert_eq(run_as(VICTIM, VICTIM, g_members, 1, private_store_opened_as_group, NULL), 0);
  cr_assert_eq(as_user(OUTSIDER, non_member_creates_group_store, NULL), 0);
  shmd_options_t o = sec_opts();
  o.group = "no-such-group-here";
  shmd_store_t *s = NULL;
  cr_assert_eq(shmd_open("g", &o, &s), SHMD_ENOENT);
  cr_assert(strstr(shmd_errdetail(), "no-such-group-here"), "%s", shmd_errdetail());
  /* a private store's files may be readable, never writable, by group or others */
  o = sec_opts();
  o.file_mode = 0660;
  cr_assert_eq(shmd_open("g", &o, &s), SHMD_EINVAL);
  o.file_mode = 0640;
  cr_assert_eq(shmd_open("g", &o, &s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* Item 5: RLIMIT_FSIZE answers SHMD_ENOSPC, never SIGXFSZ */

static void limit_fsize(uint64_t bytes) {
  signal(SIGXFSZ, SIG_DFL); /* the default action kills: nothing may raise it */
  struct rlimit rl = {bytes, bytes};
  if (setrlimit(RLIMIT_FSIZE, &rl))
    _exit(70);
}

static int fsize_at_creation(ts_crash_child_t *cc) {
  (void)cc;
  limit_fsize(1 * MIB);
  shmd_store_t *s = NULL;
  shmd_options_t o = sec_opts();
  int rc = shmd_open("full", &o, &s);
  if (rc != SHMD_ENOSPC || s != NULL)
    return 1;
  return strstr(shmd_errdetail(), "RLIMIT_FSIZE") ? 0 : 2;
}

Test(security, mp_rlimit_fsize_at_creation) {
  int st = in_child("the creator", fsize_at_creation, NULL);
  cr_assert_neq(st, 128 + SIGXFSZ, "killed by SIGXFSZ");
  cr_assert_eq(st, 0, "child: %d", st);
  cr_assert_eq(count_files("full", ""), 0, "a temporary file was left behind");
}

static int fsize_at_growth(ts_crash_child_t *cc) {
  shmd_options_t o = *(const shmd_options_t *)cc->arg;
  shmd_store_t *s;
  if (shmd_open("g", &o, &s))
    return 1;
  limit_fsize(3 * MIB); /* segment 0 is larger already; nothing new can be backed */
  shmd_ptr_t h;
  if (shmd_hash_create(s, 0, &h))
    return 2;
  char key[32], val[200];
  memset(val, 'v', sizeof val);
  int enospc = 0;
  for (unsigned i = 0; i < 60000 && enospc < 100; i++) {
    int n = snprintf(key, sizeof key, "key:%u", i);
    int rc = shmd_hash_put(s, h, key, (size_t)n, val, sizeof val, SHMD_HASH_INSERT, NULL);
    if (rc == SHMD_ENOSPC)
      enospc++;
    else if (rc)
      return 3;
  }
  if (enospc == 0)
    return 4;
  if (shmd_alloc_check(s))
    return 5;
  return 0; /* no close: what a killed or exiting process leaves is what counts */
}

/* Growth under the limit: a hash's inserts prepare spares ahead and then grow; every reservation
 * beyond the limit is refused before it is tried, the spares are dropped, inserts end with
 * SHMD_ENOSPC. */
Test(security, mp_rlimit_fsize_at_growth) {
  shmd_options_t o = ts_opts(8 * MIB, 4 * MIB);
  shmd_store_t *s;
  cr_assert_eq(shmd_open("g", &o, &s), 0);
  shmd_close(s);
  int st = in_child("the writer", fsize_at_growth, &o);
  cr_assert_neq(st, 128 + SIGXFSZ, "killed by SIGXFSZ");
  cr_assert_eq(st, 0, "child: %d", st);
  cr_assert_eq(count_files("g", ".seg-spare-"), 0, "a spare file was left behind");
  cr_assert_eq(count_files("g", ""), 1, "only segment 0");
}

/* The audit's case: `shmdict load` (a bulk load) under ulimit -f. */
Test(security, mp_rlimit_fsize_bulk_load_by_the_cli) {
  const char *bin = getenv("SHMDICT_BIN");
  cr_assert_not_null(bin, "SHMDICT_BIN is not set (meson test sets it)");
  shmd_options_t o = ts_opts(8 * MIB, 4 * MIB);
  shmd_store_t *s;
  cr_assert_eq(shmd_open("bulk", &o, &s), 0);
  shmd_close(s);
  char input[512];
  snprintf(input, sizeof input, "%s/input.txt", ts_dir);
  FILE *f = fopen(input, "w");
  cr_assert_not_null(f);
  for (int i = 0; i < 40000; i++)
    fprintf(f, "SET key:%d %0200d\n", i, i);
  fclose(f);
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "ulimit -f 3072; exec '%s' -d '%s' load bulk --format text -i '%s' 2>/dev/null", bin,
           ts_dir, input);
  signal(SIGXFSZ, SIG_DFL); /* inherited by the shell and the tool: the limit would kill */
  char *argv[] = {"/bin/sh", "-c", cmd, NULL};
  ts_run_t r = ts_run_prog(NULL, argv);
  int st = r.status;
  ts_run_free(&r);
  cr_assert_neq(st, 128 + SIGXFSZ, "shmdict load was killed by SIGXFSZ");
  cr_assert_eq(st, 1, "shmdict load must report the commands that failed (exit 1), got %d", st);
  cr_assert_eq(count_files("bulk", ".seg-"), 0, "a spare or temporary file was left behind");
  cr_assert_eq(count_files("bulk", ""), 1, "only segment 0");
}

/* ---------------------------------------------------------------------------------------------- */
/* Item 6: spare files of killed processes */

static void take_pid(const void *rec, void *arg) { memcpy(arg, rec, sizeof(pid_t)); }

/* In a child: opens `name`, prepares two spares (a growth segment and a 6 MiB block) completely,
 * forks a sleeper when `fork_sleeper` (its pid is the record it sends), says so and waits to be
 * killed. */
static int spare_holder(ts_crash_child_t *cc) {
  int fork_sleeper = cc->arg != NULL;
  shmd_store_t *s = cc->s;
  while (shmd__grow_ahead(s, 0, 1))
    ;
  while (shmd__grow_ahead(s, 6 * MIB, 1))
    ;
  pid_t sleeper = 0;
  if (fork_sleeper) {
    sleeper = ts_fork_detached();
    if (sleeper == 0) {
      alarm(60); /* outlives its parent on purpose: a bound instead of the parent-death signal */
      for (;;)
        pause();
    }
  }
  ts_crash_report(cc, &sleeper);
  for (;;)
    pause();
  return 0; /* not reached */
}

/* Starts a spare holder for `name` and returns it once its spares are ready. */
static ts_crash_proc_t *start_holder(const char *name, int fork_sleeper, pid_t *sleeper) {
  static pid_t sl;
  sl = 0;
  ts_crash_proc_t *p = ts_crash_start(NULL, &(ts_crash_spec_t){.what = "the spare holder", .fn = spare_holder,
                                                               .arg = fork_sleeper ? &sl : NULL, .store = name,
                                                               .opts = sec_opts(), .rec_size = sizeof(pid_t),
                                                               .on_rec = take_pid, .rec_arg = &sl,
                                                               .end = TS_END_KILLED});
  cr_assert_eq(ts_crash_wait_records(p, 1, 60000), 1, "the spare holder died");
  if (sleeper)
    *sleeper = sl;
  return p;
}

static void kill_holder(ts_crash_proc_t *p) {
  ts_crash_kill(p);
  ts_crash_finish(p, NULL); /* it must have died by SIGKILL */
}

Test(security, crash_spares_of_a_killed_process_are_removed_at_open) {
  shmd_options_t o = sec_opts();
  shmd_store_t *s;
  cr_assert_eq(shmd_open("sp", &o, &s), 0);
  shmd_close(s);
  ts_crash_proc_t *pid = start_holder("sp", 0, NULL);
  cr_assert_eq(count_files("sp", ".seg-spare-"), 2, "the holder prepared two spares");
  kill_holder(pid);
  cr_assert_eq(count_files("sp", ".seg-spare-"), 2, "the killed holder's spares are still there");
  cr_assert_eq(shmd_open("sp", &o, &s), 0, "%s", shmd_errdetail());
  cr_assert_eq(count_files("sp", ".seg-spare-"), 0, "opening removes the dead process's spares");
  shmd_spare_info_t si;
  cr_assert_eq(shmd_spare_info(s, &si), 0);
  cr_assert_eq(si.orphan_files, 2);
  cr_assert_geq(si.orphan_bytes, 4 * MIB + 6 * MIB, "bytes reported: %llu", (unsigned long long)si.orphan_bytes);
  cr_assert_eq(si.live_files, 0);
  shmd_close(s);
}

Test(security, crash_spares_of_a_killed_process_are_removed_by_growth) {
  shmd_options_t o = sec_opts();
  shmd_store_t *s;
  cr_assert_eq(shmd_open("sp", &o, &s), 0); /* opened before the kill: only growth can see it */
  ts_crash_proc_t *pid = start_holder("sp", 0, NULL);
  kill_holder(pid);
  cr_assert_eq(count_files("sp", ".seg-spare-"), 2);
  shmd_ptr_t p;
  cr_assert_eq(shmd_alloc(s, 5 * MIB, &p), 0, "%s", shmd_errdetail()); /* grows */
  cr_assert_eq(count_files("sp", ".seg-spare-"), 0, "growth removes the dead process's spares");
  shmd_spare_info_t si;
  cr_assert_eq(shmd_spare_info(s, &si), 0);
  cr_assert_eq(si.orphan_files, 2);
  cr_assert_eq(shmd_free(s, p), 0);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}

/* The inode of the first file of store `name` whose name starts with `prefix`, 0 if none. */
static ino_t ino_of(const char *name, const char *prefix) {
  char dir[512];
  path_of(dir, sizeof dir, name, NULL);
  DIR *d = opendir(dir);
  ino_t ino = 0;
  struct dirent *e;
  while (d != NULL && ino == 0 && (e = readdir(d)) != NULL)
    if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
      ino = e->d_ino;
  if (d != NULL)
    closedir(d);
  return ino;
}

/* The live holder: prepares a spare, says ready, and once let go grows: segment 0's data area is
 * small (its lanes take most of 4 MiB), so the spare must still be there, and become the segment. */
static int live_holder(ts_crash_child_t *cc) {
  shmd_store_t *s = cc->s;
  while (shmd__grow_ahead(s, 0, 1))
    ;
  ino_t spare = ino_of("sp", ".seg-spare-");
  if (spare == 0)
    return 2;
  ts_crash_ready(cc);
  shmd_ptr_t x;
  if (shmd_alloc(s, 1 * MIB, &x))
    return 3;
  shmd_store_info_t in;
  if (shmd_store_info(s, &in) || in.segments != 2)
    return 4;
  if (ino_of("sp", "seg-00001-") != spare)
    return 5;
  shmd_close(s);
  return 0;
}

/* A live process's spares are never taken, and it still grows from them afterwards. */
Test(security, mp_spares_of_a_live_process_are_kept) {
  shmd_options_t o = sec_opts();
  ts_crash_proc_t *p = ts_crash_start(NULL, &(ts_crash_spec_t){.what = "the live holder", .fn = live_holder,
                                                               .store = "sp", .opts = o, .ready = 1,
                                                               .end = TS_END_ANY});
  ts_crash_wait_ready(p);
  cr_assert_eq(count_files("sp", ".seg-spare-"), 1);
  shmd_store_t *s;
  cr_assert_eq(shmd_open("sp", &o, &s), 0);
  shmd_spare_info_t si;
  cr_assert_eq(shmd_spare_info(s, &si), 0);
  cr_assert_eq(si.live_files, 1, "the live process's spare is reported live");
  cr_assert_eq(si.orphan_files, 0);
  cr_assert_eq(count_files("sp", ".seg-spare-"), 1, "a live process's spare was removed");
  shmd_close(s);
  ts_crash_go(p);
  int st = ts_crash_finish(p, NULL);
  cr_assert_eq(st, 0, "the holder could not grow from its own spare (%d)", st);
  cr_assert_eq(count_files("sp", ".seg-spare-"), 0);
}

/* Creates and locks spare file `arg`, says ready, and waits to be killed. */
static int locker(ts_crash_child_t *cc) {
  int f = open(cc->arg, O_CREAT | O_EXCL | O_RDWR, 0600);
  if (f < 0 || flock(f, LOCK_EX))
    return 1;
  ts_crash_ready(cc);
  for (;;)
    pause();
}

/* The lock decides, not the pid: a spare named after a live pid but locked by nobody is an orphan;
 * one named after a pid that does not exist but locked by a live process is not. */
Test(security, mp_spare_liveness_is_the_lock_not_the_pid) {
  shmd_options_t o = sec_opts();
  shmd_store_t *s;
  cr_assert_eq(shmd_open("sp", &o, &s), 0);
  shmd_close(s);
  char unlocked[512], locked[512], name[64];
  snprintf(name, sizeof name, ".seg-spare-%d-0badf00d", (int)getpid()); /* this process lives */
  path_of(unlocked, sizeof unlocked, "sp", name);
  path_of(locked, sizeof locked, "sp", ".seg-spare-999999999-0000beef"); /* no such pid */
  int fd = open(unlocked, O_CREAT | O_EXCL | O_RDWR, 0600);
  cr_assert_geq(fd, 0);
  cr_assert_eq(ftruncate(fd, 65536), 0);
  close(fd);
  ts_crash_proc_t *pid = ts_crash_start(NULL, &(ts_crash_spec_t){.what = "the locker", .fn = locker, .arg = locked,
                                                                 .ready = 1, .end = TS_END_KILLED});
  ts_crash_wait_ready(pid);
  cr_assert_eq(shmd_open("sp", &o, &s), 0);
  struct stat st;
  cr_assert_neq(stat(unlocked, &st), 0, "an unlocked spare is an orphan, whatever pid its name says");
  cr_assert_eq(stat(locked, &st), 0, "a locked spare lives, whatever pid its name says");
  shmd_spare_info_t si;
  cr_assert_eq(shmd_spare_info(s, &si), 0);
  cr_assert_eq(si.orphan_files, 1);
  cr_assert_eq(si.live_files, 1);
  shmd_close(s);
  kill_holder(pid);
  cr_assert_eq(shmd_open("sp", &o, &s), 0);
  cr_assert_neq(stat(locked, &st), 0, "its holder died: an orphan now");
  shmd_close(s);
}

/* A child forked by the holder inherits its fds and mappings (and so its locks): it must drop the
 * parent's spares, or a dead parent's spares would live as long as the child. */
Test(security, crash_spares_do_not_live_on_in_a_forked_child) {
  shmd_options_t o = sec_opts();
  shmd_store_t *s;
  cr_assert_eq(shmd_open("sp", &o, &s), 0);
  shmd_close(s);
  pid_t sleeper = 0;
  ts_crash_proc_t *pid = start_holder("sp", 1, &sleeper);
  cr_assert_gt(sleeper, 0);
  kill_holder(pid);
  cr_assert_eq(shmd_open("sp", &o, &s), 0);
  int left = count_files("sp", ".seg-spare-");
  kill(sleeper, SIGKILL); /* the holder's child, reparented: not ours to wait for */
  cr_assert_eq(left, 0, "the spares of a dead process live on in its forked child");
  shmd_close(s);
}

/* shmd_drop removes a dead process's spares with the store (they are dot files). */
Test(security, crash_drop_removes_orphaned_spares) {
  shmd_options_t o = sec_opts();
  shmd_store_t *s;
  cr_assert_eq(shmd_open("sp", &o, &s), 0);
  shmd_close(s);
  kill_holder(start_holder("sp", 0, NULL));
  cr_assert_eq(count_files("sp", ".seg-spare-"), 2);
  cr_assert_eq(shmd_drop("sp", ts_dir), 0, "%s", shmd_errdetail());
  cr_assert_eq(count_files("sp", ""), -1, "the store directory is gone");
}

/* `shmdict info` and `shmdict check` report the orphans that opening removed. */
static char *run_cli(const char *args) {
  static char out[65536];
  ts_run_t r = ts_sh("'%s' -d '%s' %s 2>&1", ts_cli_bin(), ts_dir, args);
  snprintf(out, sizeof out, "%s", r.out);
  ts_run_free(&r);
  return out;
}

Test(security, crash_cli_reports_orphaned_spares) {
  shmd_options_t o = sec_opts();
  shmd_store_t *s;
  cr_assert_eq(shmd_open("sp", &o, &s), 0);
  shmd_close(s);
  kill_holder(start_holder("sp", 0, NULL));
  char *out = run_cli("info sp");
  cr_assert(strstr(out, "orphans of dead processes removed: 2 ("), "%s", out);
  cr_assert_eq(count_files("sp", ".seg-spare-"), 0);
  kill_holder(start_holder("sp", 0, NULL));
  out = run_cli("check sp");
  cr_assert(strstr(out, "removed 2 orphaned spare files of dead processes (") && strstr(out, "\nok\n"), "%s", out);
  out = run_cli("check sp");
  cr_assert_str_eq(out, "ok\n");
}
