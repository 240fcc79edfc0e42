/* SPDX-License-Identifier: MIT */
/*
 * The durability verbs of the shmdict tool: `persist STORE --dir PATH [--fsync POLICY] [--ring
 * BYTES]` runs the store's persister in the foreground until SIGINT / SIGTERM, and `restore STORE
 * --from PATH` replays a log into a store (include/shmdict/persist.h, docs/durability.md).
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmdict.h"
#include "tools/cli.h"

static volatile int persist_stop;

static void on_signal(int sig) {
  (void)sig;
  persist_stop = 1;
}

static void print_note(void *arg, const char *line) {
  (void)arg;
  fprintf(stderr, "shmdict persist: %s\n", line);
}

int cli_persist(shmd_store_t *s, const char *name, const char *dir, const char *fsync, uint64_t ring) {
  shmd_persist_opts_t o = {0};
  o.dir = dir;
  o.ring_bytes = ring;
  o.note = print_note;
  if (fsync == NULL || strcmp(fsync, "everysec") == 0)
    o.fsync = SHMD_AOF_FSYNC_EVERYSEC;
  else if (strcmp(fsync, "always") == 0)
    o.fsync = SHMD_AOF_FSYNC_ALWAYS;
  else if (strcmp(fsync, "no") == 0)
    o.fsync = SHMD_AOF_FSYNC_NO;
  else {
    fprintf(stderr, "shmdict: unknown fsync policy '%s' (use always, everysec or no)\n", fsync);
    return 2;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  fprintf(stderr, "shmdict persist: store '%s' -> %s/%s (fsync %s); stop with Ctrl-C or SIGTERM\n", name, dir,
          SHMD_AOF_FILE, fsync ? fsync : "everysec");
  int rc = shmd_persist_run(s, &o, &persist_stop);
  if (rc) {
    const char *d = shmd_errdetail();
    fprintf(stderr, "shmdict: the persister of '%s' stopped: %s%s%s%s\n", name, shmd_strerror(rc), *d ? " [" : "", d,
            *d ? "]" : "");
    return 1;
  }
  fprintf(stderr, "shmdict persist: stopped; the store keeps logging into its ring until a persister runs again\n");
  return 0;
}

int cli_restore(shmd_store_t *s, const char *name, const char *from,
                void (*progress)(void *arg, uint64_t done, uint64_t total)) {
  shmd_restore_report_t r;
  memset(&r, 0, sizeof r);
  int rc = shmd_restore(s, from, &r, progress, NULL);
  if (r.truncated)
    printf("AOF analyzed: filename=%s, size=%" PRIu64 ", ok_up_to=%" PRIu64 ", diff=%" PRIu64
           "\nthe log ends in an incomplete record (a torn tail): it was not applied (redis-check-aof --fix "
           "would cut it)\n",
           from, r.bytes, r.valid_bytes, r.bytes - r.valid_bytes);
  if (rc) {
    const char *d = shmd_errdetail();
    fprintf(stderr, "shmdict: cannot restore '%s' from %s: %s%s%s%s (%" PRIu64 " commands were applied)\n", name, from,
            shmd_strerror(rc), *d ? " [" : "", d, *d ? "]" : "", r.commands);
    return 1;
  }
  printf("restored '%s' from %s: %" PRIu64 " commands applied, %" PRIu64 " duplicates skipped, %" PRIu64
         " error replies, last sequence %" PRIu64 "\n",
         name, from, r.commands, r.skipped, r.errors, r.last_seq);
  return 0;
}
