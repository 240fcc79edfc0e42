/* SPDX-License-Identifier: MIT */
/*
 * evq_demo: the event queue of evq.c from the command line, so that several processes (shells)
 * can push and consume through one store and see what survives a kill.
 *
 *   evq_demo [-d DIR] [-s STORE] push EVENT...     push each argument, print its sequence number
 *   evq_demo [-d DIR] [-s STORE] subscribe [--oldest]   take a consumer slot, print its number
 *   evq_demo [-d DIR] [-s STORE] poll CONSUMER [MAX]    print up to MAX (default all) new events
 *   evq_demo [-d DIR] [-s STORE] unsubscribe CONSUMER
 *   evq_demo [-d DIR] [-s STORE] stats | check
 *
 * The queue lives under the root "evq" of store STORE (default "evq_demo"), created on first use
 * with room for 1024 events and 16 consumers. Exit status 0 on success, 1 on failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evq.h"

static int die(const char *what, int rc) {
  fprintf(stderr, "evq_demo: %s: %s%s%s\n", what, shmd_strerror(rc), *shmd_errdetail() ? " - " : "",
          shmd_errdetail());
  return 1;
}

int main(int argc, char **argv) {
  shmd_options_t opt;
  shmd_options_init(&opt);
  const char *name = "evq_demo";
  int i = 1;
  for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
    if (!strcmp(argv[i], "-d"))
      opt.dir = argv[i + 1];
    else if (!strcmp(argv[i], "-s"))
      name = argv[i + 1];
    else
      break;
  }
  if (i >= argc) {
    fprintf(stderr, "usage: evq_demo [-d DIR] [-s STORE] push|subscribe|poll|unsubscribe|stats|check ...\n");
    return 2;
  }
  const char *cmd = argv[i++];
  shmd_store_t *s;
  shmd_ptr_t q;
  int rc = shmd_open(name, &opt, &s);
  if (rc)
    return die("open", rc);
  if ((rc = evq_open(s, "evq", 1024, 16, &q)))
    return die("evq_open", rc);
  int status = 0;
  if (!strcmp(cmd, "push")) {
    for (; i < argc && status == 0; i++) {
      uint64_t seq;
      if ((rc = evq_push(s, q, argv[i], strlen(argv[i]), &seq)))
        status = die("push", rc);
      else
        printf("%llu\n", (unsigned long long)seq);
    }
  } else if (!strcmp(cmd, "subscribe")) {
    uint32_t c;
    int oldest = i < argc && !strcmp(argv[i], "--oldest");
    if ((rc = evq_subscribe(s, q, oldest, &c)))
      status = die("subscribe", rc);
    else
      printf("%u\n", c);
  } else if (!strcmp(cmd, "poll") && i < argc) {
    uint32_t c = (uint32_t)strtoul(argv[i], NULL, 10);
    unsigned long max = i + 1 < argc ? strtoul(argv[i + 1], NULL, 10) : (unsigned long)-1;
    static char buf[EVQ_MAX_EVENT];
    for (unsigned long n = 0; n < max; n++) {
      size_t len;
      uint64_t seq;
      rc = evq_poll(s, q, c, buf, sizeof buf, &len, &seq);
      if (rc == SHMD_ENOTFOUND)
        break;
      if (rc) {
        status = die("poll", rc);
        break;
      }
      printf("%llu %.*s\n", (unsigned long long)seq, (int)len, buf);
    }
  } else if (!strcmp(cmd, "unsubscribe") && i < argc) {
    if ((rc = evq_unsubscribe(s, q, (uint32_t)strtoul(argv[i], NULL, 10))))
      status = die("unsubscribe", rc);
  } else if (!strcmp(cmd, "stats")) {
    evq_stats_t st;
    if ((rc = evq_stats(s, q, &st)))
      status = die("stats", rc);
    else
      printf("capacity %llu head %llu tail %llu held %llu consumers %llu max_lag %llu\n",
             (unsigned long long)st.capacity, (unsigned long long)st.head_seq,
             (unsigned long long)st.tail_seq, (unsigned long long)(st.tail_seq - st.head_seq),
             (unsigned long long)st.consumers, (unsigned long long)st.max_lag);
  } else if (!strcmp(cmd, "check")) {
    if ((rc = evq_check(s, q)))
      status = die(evq_check_detail(), rc);
    else if ((rc = shmd_alloc_check(s)))
      status = die("allocator", rc);
    else
      printf("ok\n");
  } else {
    fprintf(stderr, "evq_demo: unknown command %s\n", cmd);
    status = 2;
  }
  shmd_close(s);
  return status;
}
