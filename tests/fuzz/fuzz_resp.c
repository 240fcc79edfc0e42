/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: shmdict-server's request parser (server/resp.c). The input's first byte picks
 * the limits (authenticated or not, the maximum bulk length) and a chunk size; the rest is a byte
 * stream a client could send. The stream is parsed twice, as the worker does it: once with all
 * bytes available, once arriving in chunks of the chosen size (1..16 bytes), each new chunk
 * appended to the buffer. Both runs must produce the same commands (argument count and bytes)
 * and end the same way (more bytes needed, or the same protocol error); every argument must lie
 * inside what was received; nothing may crash or read out of bounds (ASan, UBSan). This is the
 * parse-in-place, never-allocate-a-claim parser: a wrong offset shows up as a difference.
 *
 * Build (clang): CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined
 *   -Db_lundef=false -Dbench=false -Db_lto=false && ninja -C build-fuzz tests/fuzz_resp
 * Run: build-fuzz/tests/fuzz_resp -max_total_time=600 CORPUS_DIR
 * Without -Dfuzz, the same file builds tests/fuzz_resp_smoke (a meson test): a fixed number of
 * random and mutated inputs through the same check, with a seed printed for replay.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/resp.h"

typedef struct run_s {
  char *out;        /* commands, serialised: argc, then (len, bytes) per argument */
  size_t n, cap;
  int end;          /* RESP_MORE or RESP_ERR */
  char err[160];
} run_t;

static void put(run_t *r, const void *p, size_t n) {
  if (r->n + n > r->cap) {
    r->cap = (r->n + n) * 2 + 64;
    r->out = realloc(r->out, r->cap);
    if (r->out == NULL)
      abort();
  }
  memcpy(r->out + r->n, p, n);
  r->n += n;
}

/* Parses data[0 .. size) arriving `chunk` bytes at a time (0: all at once). */
static void parse_stream(const uint8_t *data, size_t size, size_t chunk, const resp_limits_t *lim, run_t *r) {
  char *buf = malloc(size + 1);
  if (buf == NULL)
    abort();
  size_t len = 0, pos = 0;
  resp_parser_t p;
  memset(&p, 0, sizeof p);
  p.bulk = -1;
  r->end = RESP_MORE;
  size_t fed = 0;
  for (;;) {
    size_t add = chunk ? chunk : size;
    if (add > size - fed)
      add = size - fed;
    memcpy(buf + len, data + fed, add);
    len += add;
    fed += add;
    for (;;) {
      const char *err = NULL;
      char eb[128];
      int rc = resp_parse(&p, buf, len, &pos, lim, &err, eb, sizeof eb);
      if (rc == RESP_MORE)
        break;
      if (rc == RESP_ERR) {
        r->end = RESP_ERR;
        snprintf(r->err, sizeof r->err, "%s", err);
        goto done;
      }
      if (rc != RESP_CMD)
        abort(); /* out of memory: not expected for inputs this size */
      uint64_t argc = p.argc;
      put(r, &argc, sizeof argc);
      for (size_t i = 0; i < p.argc; i++) {
        if (p.off[i] > len || p.len[i] > len - p.off[i] || p.off[i] + p.len[i] > pos)
          abort(); /* an argument outside the bytes consumed */
        uint64_t l = p.len[i];
        put(r, &l, sizeof l);
        put(r, buf + p.off[i], p.len[i]);
      }
      const char **argv = resp_argv(&p, buf);
      if (p.argc && (argv == NULL || argv[0] != buf + p.off[0]))
        abort();
      resp_reset(&p);
    }
    if (fed == size)
      break;
  }
done:
  resp_free(&p);
  free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  uint8_t mode = data[0];
  resp_limits_t lim = {(mode & 1) ? 1024 : 512LL * 1024 * 1024, (mode >> 1) & 1};
  size_t chunk = 1 + ((mode >> 2) & 15);
  run_t whole = {0}, pieces = {0};
  parse_stream(data + 1, size - 1, 0, &lim, &whole);
  parse_stream(data + 1, size - 1, chunk, &lim, &pieces);
  if (whole.end != pieces.end || whole.n != pieces.n || (whole.n && memcmp(whole.out, pieces.out, whole.n)) ||
      strcmp(whole.err, pieces.err))
    abort();
  free(whole.out);
  free(pieces.out);
  return 0;
}

#ifdef RESP_FUZZ_MAIN
/* The smoke run: random and mutated requests through the same check. */
int main(void) {
  const char *env = getenv("SHMDICT_TEST_SEED");
  uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
  printf("fuzz_resp_smoke: seed %llu (replay with SHMDICT_TEST_SEED=%llu)\n", (unsigned long long)seed,
         (unsigned long long)seed);
  static const char *const seeds[] = {
      "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n", "PING\r\n", "set \"a\\x41b\" 'c\\'d' e\r\n", "*0\r\n*-1\r\n",
      "*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n*1\r\n$4\r\nPING\r\n", "\r\n\n  \r\n", "*1\r\n$4\r\nPINGxx\r\n",
      "*2\r\n$3\r\nGET\r\n$100000\r\nab", "GET \"unterminated\r\n", "*12\r\n", "*1\r\n$16385\r\n"};
  uint64_t x = seed | 1;
  int runs = 20000;
  uint8_t buf[600];
  for (int i = 0; i < runs; i++) {
    size_t n;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    buf[0] = (uint8_t)x;
    if (i % 4 == 0) {
      n = 1 + (size_t)(x >> 8) % (sizeof buf - 1);
      for (size_t k = 1; k < n; k++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        static const char special[] = "*$\r\n-0123456789\" '\\x";
        buf[k] = x % 7 == 0 ? (uint8_t)special[x % (sizeof special - 1)] : (uint8_t)(x >> 16);
      }
    } else {
      n = 1;
      int parts = 1 + (int)((x >> 20) % 4);
      for (int k = 0; k < parts; k++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        const char *s = seeds[x % (sizeof seeds / sizeof seeds[0])];
        size_t l = strlen(s);
        if (n + l > sizeof buf)
          break;
        memcpy(buf + n, s, l);
        n += l;
      }
      for (int k = 0; k < (int)((x >> 30) % 4); k++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        if (n > 1)
          buf[1 + (x >> 8) % (n - 1)] = (uint8_t)(x >> 24);
      }
    }
    LLVMFuzzerTestOneInput(buf, n);
  }
  printf("[====] Synthesis: Tested: 1 | Passing: 1 | Failing: 0 | Crashing: 0\n");
  return 0;
}
#endif
