/* SPDX-License-Identifier: MIT */
/*
 * The shmdict side of the differential test (tests/kvdiff.py): reads commands as RESP arrays of
 * bulk strings on stdin, runs each with shmd_kv_command_db() on a store, and writes each reply on
 * stdout as redis-server 7.0 would over RESP2, flushed per reply. SELECT is a connection command
 * (a Redis client's current database), so it is answered here, with Redis's texts; everything else
 * goes to the keyspace. Usage: kvdiff_driver DIR STORE (the store is created in DIR, 256 MiB).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shmdict.h"

static void put_reply(FILE *o, const shmd_reply_t *r) {
  switch (r->type) {
  case SHMD_REPLY_STATUS: fprintf(o, "+%s\r\n", r->str); break;
  case SHMD_REPLY_ERROR: fprintf(o, "-%s\r\n", r->str); break;
  case SHMD_REPLY_INTEGER: fprintf(o, ":%lld\r\n", (long long)r->integer); break;
  case SHMD_REPLY_BULK:
    fprintf(o, "$%zu\r\n", r->len);
    fwrite(r->str, 1, r->len, o);
    fputs("\r\n", o);
    break;
  case SHMD_REPLY_NIL: fputs(r->integer ? "*-1\r\n" : "$-1\r\n", o); break;
  case SHMD_REPLY_ARRAY:
    fprintf(o, "*%zu\r\n", r->nelems);
    for (size_t i = 0; i < r->nelems; i++)
      put_reply(o, &r->elems[i]);
    break;
  default: fputs("-ERR driver: unknown reply type\r\n", o); break;
  }
}

/* Reads a "<c><number>\r\n" line; returns the number, -2 at EOF or on a malformed line. */
static long long read_head(FILE *in, int c) {
  int ch = fgetc(in);
  if (ch == EOF || ch != c)
    return -2;
  char line[64];
  if (!fgets(line, sizeof line, in))
    return -2;
  return strtoll(line, NULL, 10);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: kvdiff_driver DIR STORE\n");
    return 2;
  }
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = argv[1];
  o.first_segment_bytes = 256ull << 20;
  o.segment_bytes = 256ull << 20;
  shmd_store_t *s;
  int rc = shmd_open(argv[2], &o, &s);
  if (rc) {
    fprintf(stderr, "kvdiff_driver: open: %s (%s)\n", shmd_strerror(rc), shmd_errdetail());
    return 1;
  }
  shmd_kv_set_max_reply(64ull << 20);
  unsigned db = 0;
  for (;;) {
    long long n = read_head(stdin, '*');
    if (n < 1)
      break;
    char **av = calloc((size_t)n, sizeof *av);
    size_t *lv = calloc((size_t)n, sizeof *lv);
    for (long long i = 0; i < n; i++) {
      long long l = read_head(stdin, '$');
      if (l < 0)
        return 1;
      av[i] = malloc((size_t)l + 3);
      if (fread(av[i], 1, (size_t)l + 2, stdin) != (size_t)l + 2)
        return 1;
      av[i][l] = 0;
      lv[i] = (size_t)l;
    }
    if (lv[0] == 6 && strncasecmp(av[0], "select", 6) == 0) {
      char *end;
      errno = 0;
      long long v = n == 2 ? strtoll(av[1], &end, 10) : 0;
      if (n != 2)
        fputs("-ERR wrong number of arguments for 'select' command\r\n", stdout);
      else if (lv[1] == 0 || *end || errno)
        fputs("-ERR value is not an integer or out of range\r\n", stdout);
      else if (v < 0 || v >= SHMD_KV_DATABASES)
        fputs("-ERR DB index is out of range\r\n", stdout);
      else {
        db = (unsigned)v;
        fputs("+OK\r\n", stdout);
      }
    } else {
      shmd_reply_t *r = NULL;
      rc = shmd_kv_command_db(s, db, (int)n, (const char *const *)av, lv, &r);
      if (rc)
        fprintf(stdout, "-DRIVER %s (%s)\r\n", shmd_strerror(rc), shmd_errdetail());
      else
        put_reply(stdout, r);
      shmd_reply_free(r);
    }
    fflush(stdout);
    for (long long i = 0; i < n; i++)
      free(av[i]);
    free(av);
    free(lv);
  }
  shmd_close(s);
  return 0;
}
