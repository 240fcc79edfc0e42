/* SPDX-License-Identifier: MIT */
/*
 * Tests of blobs (containers/blob.c): create, view, compare, hash, free on commit and on abort,
 * and that damaged pointers or lengths come back as SHMD_ECORRUPT instead of a crash.
 */
#include <xxhash.h>

#include "shmdict/blob.h"
#include "support.h"

TestSuite(blob, .init = ts_init, .fini = ts_fini);

static shmd_ptr_t make_blob(shmd_store_t *s, const void *data, size_t len) {
  shmd_tx_t *tx;
  shmd_ptr_t p = shmd_ptr_null();
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  int rc = shmd_blob_create(tx, data, len, &p);
  cr_assert_eq(rc, 0, "create: %s", shmd_strerror(rc));
  cr_assert_eq(shmd_tx_commit(tx), 0);
  return p;
}

static void free_blob(shmd_store_t *s, shmd_ptr_t p) {
  shmd_tx_t *tx;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(shmd_blob_free(tx, p), 0);
  cr_assert_eq(shmd_tx_commit(tx), 0);
}

Test(blob, roundtrip_sizes) {
  shmd_store_t *s = ts_open("b", 16u << 20, 16u << 20);
  size_t sizes[] = {0, 1, 7, 8, 15, 16, 100, 4095, 8192, 8193, 70000, 1u << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    unsigned char *buf = malloc(n + 1);
    for (size_t j = 0; j < n; j++)
      buf[j] = (unsigned char)(j * 31 + i);
    shmd_ptr_t p = make_blob(s, buf, n);
    const void *d;
    size_t len;
    cr_assert_eq(shmd_blob_view(s, p, &d, &len), 0);
    cr_assert_eq(len, n);
    cr_assert(n == 0 || memcmp(d, buf, n) == 0);
    cr_assert_eq(((const char *)d)[n], '\0', "NUL terminator");
    size_t l2 = 12345;
    cr_assert_eq(shmd_blob_len(s, p, &l2), 0);
    cr_assert_eq(l2, n);
    cr_assert_geq(shmd_usable_size(s, p), shmd_blob_alloc_size(n));
    uint64_t h;
    cr_assert_eq(shmd_blob_hash(s, p, 42, &h), 0);
    cr_assert_eq(h, (uint64_t)XXH3_64bits_withSeed(buf, n, 42));
    cr_assert_eq(h, shmd_hash_bytes(buf, n, 42));
    int c = 99;
    cr_assert_eq(shmd_blob_cmp(s, p, buf, n, &c), 0);
    cr_assert_eq(c, 0);
    if (n > 0) {
      cr_assert_eq(shmd_blob_cmp(s, p, buf, n - 1, &c), 0);
      cr_assert_gt(c, 0, "longer blob sorts after its prefix");
      buf[n - 1]++;
      cr_assert_eq(shmd_blob_cmp(s, p, buf, n, &c), 0);
      cr_assert_lt(c, 0);
    }
    buf[n] = 0;
    cr_assert_eq(shmd_blob_cmp(s, p, buf, n + 1, &c), 0);
    cr_assert_lt(c, 0, "prefix sorts first");
    free_blob(s, p);
    free(buf);
  }
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}

Test(blob, bytes_cmp_order) {
  cr_assert_eq(shmd_bytes_cmp("", 0, "", 0), 0);
  cr_assert_lt(shmd_bytes_cmp(NULL, 0, "a", 1), 0);
  cr_assert_gt(shmd_bytes_cmp("a", 1, NULL, 0), 0);
  cr_assert_lt(shmd_bytes_cmp("ab", 2, "b", 1), 0);
  cr_assert_gt(shmd_bytes_cmp("b", 1, "ab", 2), 0);
  cr_assert_lt(shmd_bytes_cmp("ab", 2, "abc", 3), 0);
  cr_assert_gt(shmd_bytes_cmp("\xff", 1, "\x01", 1), 0, "bytes compare unsigned");
}

Test(blob, hash_seeds_differ) {
  cr_assert_neq(shmd_hash_bytes("key", 3, 1), shmd_hash_bytes("key", 3, 2));
  cr_assert_eq(shmd_hash_bytes("key", 3, 7), shmd_hash_bytes("key", 3, 7));
  cr_assert_neq(shmd_hash_bytes("key", 3, 7), shmd_hash_bytes("kez", 3, 7));
}

Test(blob, abort_frees) {
  shmd_store_t *s = ts_open("b", 16u << 20, 16u << 20);
  shmd_stats_t before, after;
  cr_assert_eq(shmd_stats(s, &before), 0);
  shmd_tx_t *tx;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  shmd_ptr_t p, q;
  cr_assert_eq(shmd_blob_create(tx, "hello", 5, &p), 0);
  void *d;
  cr_assert_eq(shmd_blob_create_uninit(tx, 20000, &q, &d), 0);
  memset(d, 'x', 20000);
  shmd_tx_abort(tx);
  cr_assert_eq(shmd_stats(s, &after), 0);
  cr_assert_eq(after.allocated_bytes, before.allocated_bytes);
  cr_assert_eq(shmd_alloc_check(s), 0, "%s", shmd_errdetail());
  shmd_close(s);
}

Test(blob, corrupt_inputs) {
  shmd_store_t *s = ts_open("b", 16u << 20, 16u << 20);
  const void *d;
  size_t len;
  uint64_t h;
  int c;
  cr_assert_eq(shmd_blob_view(s, shmd_ptr_null(), &d, &len), SHMD_ECORRUPT);
  cr_assert_eq(shmd_blob_view(s, shmd_ptr_make(0, (1ull << 40)), &d, &len), SHMD_ECORRUPT);
  cr_assert_eq(shmd_blob_view(s, shmd_ptr_make(999, 64), &d, &len), SHMD_ECORRUPT);
  cr_assert_eq(shmd_blob_hash(s, shmd_ptr_null(), 0, &h), SHMD_ECORRUPT);
  cr_assert_eq(shmd_blob_cmp(s, shmd_ptr_null(), "a", 1, &c), SHMD_ECORRUPT);
  /* A blob whose length word was damaged. */
  shmd_ptr_t p = make_blob(s, "abc", 3);
  uint64_t *lw = shmd_resolve(s, p);
  *lw = UINT64_MAX;
  cr_assert_eq(shmd_blob_view(s, p, &d, &len), SHMD_ECORRUPT);
  *lw = (16u << 20);
  cr_assert_eq(shmd_blob_view(s, p, &d, &len), SHMD_ECORRUPT, "length past the segment");
  *lw = 3;
  cr_assert_eq(shmd_blob_view(s, p, &d, &len), 0);
  free_blob(s, p);
  shmd_close(s);
}
