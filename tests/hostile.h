/* SPDX-License-Identifier: MIT */
/*
 * Damaged stores, shared by the mutation loop of test_hostile.c and the libFuzzer target
 * (tests/fuzz/fuzz_store.c): build a small store that uses every structure (segment table, roots,
 * lanes, buddy and slab metadata in three segments, every keyspace type, inline and out-of-line
 * values, a hash in mid-rehash, a pending garbage list), keep a pristine copy of its files, apply
 * mutations to the files, restore only the pages that changed, and exercise a damaged store: open,
 * recover, check, read the statistics and the information `shmdict info` shows; when the checks
 * pass, read everything, write, check again. Every call must return a status; the caller (a child
 * process with an alarm, or libFuzzer under ASan) catches crashes and hangs.
 *
 * Mutations are of two sorts. Blind ones flip, zero or overwrite bytes anywhere (mostly live
 * words). Structure-aware ones (HS_FIELD) pick a named field of the on-memory layout -- a segment
 * header, the manifest and its segment table, the roots, a lane (its liveness mutex, state, log
 * lengths, undo entries, held locks, reservation and deferred-free counts), an allocator header
 * (offsets, counters, free-list heads, lock words), the thread heaps and the depot -- from a table
 * made from the pristine files (hs_fields), and give it a value chosen to break a bound: 0, all
 * ones, off by one, misaligned, a value that wraps a sum past 2^64, another field's value, a
 * plausible pointer (into a header, misaligned, into another segment). A segment header's checksum
 * is recomputed after a change to it (always for HS_FIELD, when the kind has HS_FIXSUM for the
 * blind ones), since anyone who can write the file can do the same: the checksum is corruption
 * detection only, and the damage must reach the validation behind it.
 */
#ifndef SHMD_TESTS_HOSTILE_H
#define SHMD_TESTS_HOSTILE_H

#include <dirent.h>
#include <stdarg.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc/alloc_int.h"
#include "kv/kv_int.h"
#include "segments/store_int.h"
#include "shmdict.h"
#include "shmdict/kv.h"
#include "shmdict/tx.h"
#include "tests/support_kv.h"
#include "tests/support_sys.h"

#define HS_MAXFILES 8
#define HS_MAXFIELDS 2048
#define HS_NAME "h"

typedef struct {
  char name[64];
  unsigned char *pristine;
  size_t size;
  uint32_t seg; /* segment index, from the file name */
  uint32_t *nz; /* indices of the non-zero 8-byte words: mutations mostly land on live data */
  size_t nnz;
} hs_file_t;

/* What a field holds, for the choice of hostile values. */
enum {
  HS_R_SIZE,  /* an offset, size, count or capacity */
  HS_R_PTR,   /* a shmd_ptr_t or a segment offset of a structure */
  HS_R_LOCK,  /* a shmd_lock_t word: holder lane + 1, waiters bit */
  HS_R_MUTEX, /* the lock word of a lane's robust liveness mutex (glibc __lock: owner tid) */
  HS_R_STATE, /* a lane's state */
  HS_R_OTHER  /* magic, version, ids, names, checksum */
};

/* A named field of the layout in one of the store's files. */
typedef struct {
  uint8_t file;   /* index in hs_t.f */
  uint8_t width;  /* 1, 2, 4 or 8 bytes */
  uint8_t role;   /* HS_R_* */
  uint8_t in_hdr; /* inside a segment header's checksummed bytes */
  uint32_t off;   /* byte offset in the file */
  char name[44];
} hs_field_t;

typedef struct {
  char dir[512];   /* the store directory passed as shmd_options_t.dir */
  char sdir[600];  /* dir/NAME */
  hs_file_t f[HS_MAXFILES];
  int nfiles;
  hs_field_t *fields; /* the structure-aware mutations' targets (hs_fields) */
  size_t nfields;
  uint32_t lanes;     /* lane count of the pristine store */
  struct {
    uint64_t ptr;     /* shmd_ptr_t of a container header of the keyspace */
    char what[24];
  } cont[64];
  int ncont;
  /* 0, or N: HS_FIELD may forge a lane's liveness mutex as held by a thread that does not exist,
   * and one HS_LANE in N also forges it and points one of the store's lock words at the lane
   * (issue 12 item 4's attack: the holder check must find the owner gone and recover). 0: such a
   * mutex word gets 0 or the owner-died bit, which recovery must handle. */
  int forge;
} hs_t;

static inline shmd_options_t hs_opts(const hs_t *h) {
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = h->dir;
  o.first_segment_bytes = 2u << 20;
  o.segment_bytes = 1u << 20;
  o.max_store_bytes = 8u << 20;
  o.max_threads = 4;
  o.flags = SHMD_OPEN_NOCREATE;
  return o;
}

static inline int hs_cmd(shmd_store_t *s, unsigned db, const char *line) { return ts_kv_line(s, db, line, NULL); }

/* xorshift64, for choices derived from one mutation's value: the tests' generator (support_sys.h). */
typedef ts_rng_t hs_rng_t;
static inline uint64_t hs_rand(hs_rng_t *g) { return ts_next(g); }

/* ---------------------------------------------------------------------------------------------- */
/* Patching fields: what anyone with write access to a segment file can do. */

/* FNV-1a, as the library's header checksum (segments/store.c). */
static inline uint64_t hs_fnv1a(const void *data, size_t len) {
  const unsigned char *p = data;
  uint64_t x = UINT64_C(1469598103934665603);
  for (size_t i = 0; i < len; i++) {
    x ^= p[i];
    x *= UINT64_C(1099511628211);
  }
  return x;
}

/* Recomputes the header checksum of the segment file open as fd. Returns 0 or -1. */
static inline int hs_fix_checksum(int fd) {
  struct shmd__seg_hdr hd;
  if (pread(fd, &hd, sizeof hd, 0) != (ssize_t)sizeof hd)
    return -1;
  hd.checksum = hs_fnv1a(&hd, offsetof(struct shmd__seg_hdr, checksum));
  return pwrite(fd, &hd.checksum, 8, (off_t)offsetof(struct shmd__seg_hdr, checksum)) == 8 ? 0 : -1;
}

/* Writes the `width` low bytes of `val` at byte `off` of the segment file `path` (little-endian,
 * as the layout) and, when they touch the checksummed part of the segment header, recomputes its
 * checksum. *old (when not NULL) receives the previous value. Returns 0 or -1. */
static inline int hs_patch_file(const char *path, uint64_t off, unsigned width, uint64_t val, uint64_t *old) {
  int fd = open(path, O_RDWR | O_NOFOLLOW);
  if (fd < 0)
    return -1;
  uint64_t prev = 0;
  int rc = pread(fd, &prev, width, (off_t)off) == (ssize_t)width ? 0 : -1;
  if (rc == 0 && pwrite(fd, &val, width, (off_t)off) != (ssize_t)width)
    rc = -1;
  if (rc == 0 && off < offsetof(struct shmd__seg_hdr, checksum))
    rc = hs_fix_checksum(fd);
  close(fd);
  if (old)
    *old = prev;
  return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* The field table of the structure-aware mutations. */

static inline void hs_field(hs_t *h, int file, uint64_t off, unsigned width, int role, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static inline void hs_field(hs_t *h, int file, uint64_t off, unsigned width, int role, const char *fmt, ...) {
  if (h->nfields >= HS_MAXFIELDS || off + width > h->f[file].size)
    return;
  hs_field_t *x = &h->fields[h->nfields++];
  x->file = (uint8_t)file;
  x->width = (uint8_t)width;
  x->role = (uint8_t)role;
  x->in_hdr = off < offsetof(struct shmd__seg_hdr, checksum);
  x->off = (uint32_t)off;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(x->name, sizeof x->name, fmt, ap);
  va_end(ap);
}

static inline uint64_t hs_word(const hs_t *h, int file, uint64_t off, unsigned width) {
  uint64_t v = 0;
  if (off + width <= h->f[file].size)
    memcpy(&v, h->f[file].pristine + off, width);
  return v;
}

/* The file holding segment `seg`, or -1. */
static inline int hs_file_of(const hs_t *h, uint64_t seg) {
  for (int i = 0; i < h->nfiles; i++)
    if (h->f[i].seg == seg)
      return i;
  return -1;
}

/* File and byte offset of a shmd_ptr_t of the pristine store; -1 when it names no file. */
static inline int hs_locate(const hs_t *h, uint64_t ptr, uint64_t *off) {
  if (ptr == 0)
    return -1;
  int fi = hs_file_of(h, (ptr >> SHMD_PTR_OFFSET_BITS) - 1);
  *off = ptr & SHMD_PTR_OFFSET_MASK;
  return fi >= 0 && *off < h->f[fi].size ? fi : -1;
}

#define HS_F(file, base, type, member, role, ...)                                                  \
  hs_field(h, file, (base) + offsetof(type, member), sizeof(((type *)0)->member), role, __VA_ARGS__)

/* Fills h->fields from the pristine files. Returns 0 or -1. */
static inline int hs_fields(hs_t *h) {
  h->fields = calloc(HS_MAXFIELDS, sizeof *h->fields);
  if (h->fields == NULL)
    return -1;
  h->nfields = 0;
  for (int fi = 0; fi < h->nfiles; fi++) {
    uint32_t sg = h->f[fi].seg;
    /* the segment header (checksummed) */
    HS_F(fi, 0, struct shmd__seg_hdr, magic, HS_R_OTHER, "seg%u.hdr.magic", sg);
    HS_F(fi, 0, struct shmd__seg_hdr, layout_major, HS_R_OTHER, "seg%u.hdr.layout_major", sg);
    HS_F(fi, 0, struct shmd__seg_hdr, layout_minor, HS_R_OTHER, "seg%u.hdr.layout_minor", sg);
    HS_F(fi, 0, struct shmd__seg_hdr, hdr_bytes, HS_R_SIZE, "seg%u.hdr.hdr_bytes", sg);
    hs_field(h, fi, offsetof(struct shmd__seg_hdr, store_uuid), 8, HS_R_OTHER, "seg%u.hdr.store_uuid", sg);
    HS_F(fi, 0, struct shmd__seg_hdr, seg_index, HS_R_SIZE, "seg%u.hdr.seg_index", sg);
    HS_F(fi, 0, struct shmd__seg_hdr, flags, HS_R_OTHER, "seg%u.hdr.flags", sg);
    HS_F(fi, 0, struct shmd__seg_hdr, size_bytes, HS_R_SIZE, "seg%u.hdr.size_bytes", sg);
    HS_F(fi, 0, struct shmd__seg_hdr, alloc_off, HS_R_SIZE, "seg%u.hdr.alloc_off", sg);
    HS_F(fi, 0, struct shmd__seg_hdr, alloc_bytes, HS_R_SIZE, "seg%u.hdr.alloc_bytes", sg);
    HS_F(fi, 0, struct shmd__seg_hdr, data_off, HS_R_SIZE, "seg%u.hdr.data_off", sg);
    HS_F(fi, 0, struct shmd__seg_hdr, data_bytes, HS_R_SIZE, "seg%u.hdr.data_bytes", sg);
    HS_F(fi, 0, struct shmd__seg_hdr, manifest_off, HS_R_SIZE, "seg%u.hdr.manifest_off", sg);
    HS_F(fi, 0, struct shmd__seg_hdr, reserved[0], HS_R_OTHER, "seg%u.hdr.reserved[0]", sg);
    HS_F(fi, 0, struct shmd__seg_hdr, checksum, HS_R_OTHER, "seg%u.hdr.checksum", sg);
    /* the allocator's header: mutable, not checksummed */
    uint64_t ao = hs_word(h, fi, offsetof(struct shmd__seg_hdr, alloc_off), 8);
    if (ao + sizeof(struct shmd__seg_alloc) <= h->f[fi].size) {
      const struct shmd__seg_alloc *sa = (const void *)(h->f[fi].pristine + ao);
      HS_F(fi, ao, struct shmd__seg_alloc, magic, HS_R_OTHER, "seg%u.alloc.magic", sg);
      HS_F(fi, ao, struct shmd__seg_alloc, data_off, HS_R_SIZE, "seg%u.alloc.data_off", sg);
      HS_F(fi, ao, struct shmd__seg_alloc, data_bytes, HS_R_SIZE, "seg%u.alloc.data_bytes", sg);
      HS_F(fi, ao, struct shmd__seg_alloc, page_count, HS_R_SIZE, "seg%u.alloc.page_count", sg);
      HS_F(fi, ao, struct shmd__seg_alloc, pagemap_off, HS_R_SIZE, "seg%u.alloc.pagemap_off", sg);
      HS_F(fi, ao, struct shmd__seg_alloc, max_order, HS_R_SIZE, "seg%u.alloc.max_order", sg);
      HS_F(fi, ao, struct shmd__seg_alloc, nclasses, HS_R_SIZE, "seg%u.alloc.nclasses", sg);
      HS_F(fi, ao, struct shmd__seg_alloc, buddy_lock.word, HS_R_LOCK, "seg%u.alloc.buddy_lock", sg);
      HS_F(fi, ao, struct shmd__seg_alloc, free_pages, HS_R_SIZE, "seg%u.alloc.free_pages", sg);
      HS_F(fi, ao, struct shmd__seg_alloc, large_blocks, HS_R_SIZE, "seg%u.alloc.large_blocks", sg);
      HS_F(fi, ao, struct shmd__seg_alloc, large_pages, HS_R_SIZE, "seg%u.alloc.large_pages", sg);
      for (uint32_t o = 0; o <= SHMD__MAX_ORDER; o++)
        if (sa->free_count[o] || o < 3) {
          HS_F(fi, ao, struct shmd__seg_alloc, free_head[o], HS_R_PTR, "seg%u.alloc.free_head[%u]", sg, o);
          HS_F(fi, ao, struct shmd__seg_alloc, free_count[o], HS_R_SIZE, "seg%u.alloc.free_count[%u]", sg, o);
        }
      for (uint32_t c = 0; c < SHMD__NCLASSES; c++)
        if (sa->cls[c].slabs || c == 0) {
          HS_F(fi, ao, struct shmd__seg_alloc, cls[c].lock.word, HS_R_LOCK, "seg%u.alloc.cls[%u].lock", sg, c);
          HS_F(fi, ao, struct shmd__seg_alloc, cls[c].partial_head, HS_R_PTR, "seg%u.alloc.cls[%u].partial", sg, c);
          HS_F(fi, ao, struct shmd__seg_alloc, cls[c].slabs, HS_R_SIZE, "seg%u.alloc.cls[%u].slabs", sg, c);
        }
    }
    if (sg != 0)
      continue;
    /* segment 0: the manifest, its segment table, the roots, the lanes */
    uint64_t mo = hs_word(h, fi, offsetof(struct shmd__seg_hdr, manifest_off), 8);
    if (mo + sizeof(struct shmd__manifest) > h->f[fi].size)
      continue;
    const struct shmd__manifest *m = (const void *)(h->f[fi].pristine + mo);
    HS_F(fi, mo, struct shmd__manifest, magic, HS_R_OTHER, "man.magic");
    hs_field(h, fi, mo + offsetof(struct shmd__manifest, boot_id), 8, HS_R_OTHER, "man.boot_id");
    HS_F(fi, mo, struct shmd__manifest, created_unix, HS_R_OTHER, "man.created_unix");
    HS_F(fi, mo, struct shmd__manifest, first_seg_bytes, HS_R_SIZE, "man.first_seg_bytes");
    HS_F(fi, mo, struct shmd__manifest, grow_seg_bytes, HS_R_SIZE, "man.grow_seg_bytes");
    HS_F(fi, mo, struct shmd__manifest, max_store_bytes, HS_R_SIZE, "man.max_store_bytes");
    HS_F(fi, mo, struct shmd__manifest, file_mode, HS_R_OTHER, "man.file_mode");
    HS_F(fi, mo, struct shmd__manifest, lane_count, HS_R_SIZE, "man.lane_count");
    HS_F(fi, mo, struct shmd__manifest, lane_bytes, HS_R_SIZE, "man.lane_bytes");
    HS_F(fi, mo, struct shmd__manifest, lanes_off, HS_R_SIZE, "man.lanes_off");
    HS_F(fi, mo, struct shmd__manifest, roots_off, HS_R_SIZE, "man.roots_off");
    HS_F(fi, mo, struct shmd__manifest, root_cap, HS_R_SIZE, "man.root_cap");
    HS_F(fi, mo, struct shmd__manifest, max_segments, HS_R_SIZE, "man.max_segments");
    HS_F(fi, mo, struct shmd__manifest, op_log_cap, HS_R_SIZE, "man.op_log_cap");
    HS_F(fi, mo, struct shmd__manifest, grow_lock.word, HS_R_LOCK, "man.grow_lock");
    HS_F(fi, mo, struct shmd__manifest, roots_lock.word, HS_R_LOCK, "man.roots_lock");
    HS_F(fi, mo, struct shmd__manifest, seg_count, HS_R_SIZE, "man.seg_count");
    HS_F(fi, mo, struct shmd__manifest, recoveries, HS_R_SIZE, "man.recoveries");
    HS_F(fi, mo, struct shmd__manifest, reserved2[SHMD__MAN_HEAP_DIR], HS_R_PTR, "man.heap_dir");
    HS_F(fi, mo, struct shmd__manifest, reserved2[SHMD__MAN_DEPOT], HS_R_PTR, "man.depot");
    for (uint32_t i = 0; i <= m->seg_count && i < SHMD__MAX_SEGS; i++) {
      HS_F(fi, mo, struct shmd__manifest, segs[i].size_bytes, HS_R_SIZE, "man.segs[%u].size_bytes", i);
      HS_F(fi, mo, struct shmd__manifest, segs[i].suffix, HS_R_OTHER, "man.segs[%u].suffix", i);
    }
    /* roots: the used ones and the first free one */
    int free_seen = 0;
    for (uint32_t i = 0; i < m->root_cap && m->roots_off + (i + 1) * sizeof(struct shmd__root) <= h->f[fi].size;
         i++) {
      uint64_t ro = m->roots_off + i * sizeof(struct shmd__root);
      const struct shmd__root *r = (const void *)(h->f[fi].pristine + ro);
      if (r->name[0] == 0 && free_seen++)
        continue;
      hs_field(h, fi, ro, 8, HS_R_OTHER, "root[%u].name", i);
      HS_F(fi, ro, struct shmd__root, ptr, HS_R_PTR, "root[%u].ptr", i);
    }
    /* lanes */
    h->lanes = m->lane_count;
    for (uint32_t i = 0; i < m->lane_count && i < 16; i++) {
      uint64_t lo = m->lanes_off + i * m->lane_bytes;
      if (lo + sizeof(struct shmd__lane) + 2 * sizeof(struct shmd__undo) > h->f[fi].size)
        break;
      hs_field(h, fi, lo + offsetof(struct shmd__lane, live), 4, HS_R_MUTEX, "lane%u.live.__lock", i);
      hs_field(h, fi, lo + offsetof(struct shmd__lane, live) + 4, 4, HS_R_SIZE, "lane%u.live.__count", i);
      hs_field(h, fi, lo + offsetof(struct shmd__lane, live) + 8, 4, HS_R_OTHER, "lane%u.live.__owner", i);
      hs_field(h, fi, lo + offsetof(struct shmd__lane, live) + 12, 4, HS_R_SIZE, "lane%u.live.__nusers", i);
      hs_field(h, fi, lo + offsetof(struct shmd__lane, live) + 16, 4, HS_R_OTHER, "lane%u.live.__kind", i);
      hs_field(h, fi, lo + offsetof(struct shmd__lane, live) + 24, 8, HS_R_PTR, "lane%u.live.__list.prev", i);
      hs_field(h, fi, lo + offsetof(struct shmd__lane, live) + 32, 8, HS_R_PTR, "lane%u.live.__list.next", i);
      HS_F(fi, lo, struct shmd__lane, state, HS_R_STATE, "lane%u.state", i);
      HS_F(fi, lo, struct shmd__lane, owner_pid, HS_R_OTHER, "lane%u.owner_pid", i);
      HS_F(fi, lo, struct shmd__lane, owner_tid, HS_R_OTHER, "lane%u.owner_tid", i);
      HS_F(fi, lo, struct shmd__lane, held_count, HS_R_SIZE, "lane%u.held_count", i);
      HS_F(fi, lo, struct shmd__lane, al_held_count, HS_R_SIZE, "lane%u.al_held_count", i);
      HS_F(fi, lo, struct shmd__lane, al_len, HS_R_SIZE, "lane%u.al_len", i);
      HS_F(fi, lo, struct shmd__lane, op_len, HS_R_SIZE, "lane%u.op_len", i);
      HS_F(fi, lo, struct shmd__lane, dfree_count, HS_R_SIZE, "lane%u.dfree_count", i);
      HS_F(fi, lo, struct shmd__lane, resv_count, HS_R_SIZE, "lane%u.resv_count", i);
      HS_F(fi, lo, struct shmd__lane, dfree_done, HS_R_SIZE, "lane%u.dfree_done", i);
      HS_F(fi, lo, struct shmd__lane, ext, HS_R_PTR, "lane%u.ext", i);
      HS_F(fi, lo, struct shmd__lane, ext_new, HS_R_PTR, "lane%u.ext_new", i);
      HS_F(fi, lo, struct shmd__lane, ext_old, HS_R_PTR, "lane%u.ext_old", i);
      for (uint32_t k = 0; k < 2; k++) {
        HS_F(fi, lo, struct shmd__lane, held[k], HS_R_PTR, "lane%u.held[%u]", i, k);
        HS_F(fi, lo, struct shmd__lane, al_held[k], HS_R_PTR, "lane%u.al_held[%u]", i, k);
        HS_F(fi, lo, struct shmd__lane, resv[k], HS_R_PTR, "lane%u.resv[%u]", i, k);
        HS_F(fi, lo, struct shmd__lane, dfree[k], HS_R_PTR, "lane%u.dfree[%u]", i, k);
        HS_F(fi, lo, struct shmd__lane, al_log[k].ptr, HS_R_PTR, "lane%u.al_log[%u].ptr", i, k);
        HS_F(fi, lo, struct shmd__lane, al_log[k].old, HS_R_SIZE, "lane%u.al_log[%u].old", i, k);
        uint64_t uo = lo + sizeof(struct shmd__lane) + k * sizeof(struct shmd__undo);
        hs_field(h, fi, uo, 8, HS_R_PTR, "lane%u.op_log[%u].ptr", i, k);
        hs_field(h, fi, uo + 8, 8, HS_R_SIZE, "lane%u.op_log[%u].old", i, k);
      }
    }
    /* the keyspace's container headers (hashes, lists, trees: magic, lock, then their counts,
     * tables, links, sizes) */
    for (int k = 0; k < h->ncont; k++) {
      uint64_t co;
      int cf = hs_locate(h, h->cont[k].ptr, &co);
      if (cf < 0)
        continue;
      hs_field(h, cf, co + 8, 4, HS_R_LOCK, "%s.lock", h->cont[k].what);
      for (unsigned w = 2; w < 8; w++) {
        uint64_t v = hs_word(h, cf, co + 8 * w, 8);
        int ptr = (v >> SHMD_PTR_OFFSET_BITS) >= 1 && (v >> SHMD_PTR_OFFSET_BITS) <= (uint64_t)h->nfiles;
        hs_field(h, cf, co + 8 * w, 8, ptr ? HS_R_PTR : HS_R_SIZE, "%s.w%u", h->cont[k].what, w);
      }
    }
    /* thread heaps (their directory, found through the manifest) and the depot */
    uint64_t off;
    int df = hs_locate(h, m->reserved2[SHMD__MAN_HEAP_DIR], &off);
    if (df >= 0 && off + sizeof(struct shmd__heap_dir) <= h->f[df].size) {
      const struct shmd__heap_dir *d = (const void *)(h->f[df].pristine + off);
      HS_F(df, off, struct shmd__heap_dir, magic, HS_R_OTHER, "heapdir.magic");
      HS_F(df, off, struct shmd__heap_dir, lanes, HS_R_SIZE, "heapdir.lanes");
      for (uint32_t i = 0; i < d->lanes && i < m->lane_count && i < 16 &&
                           off + sizeof *d + 8 * (i + 1) <= h->f[df].size; i++) {
        hs_field(h, df, off + sizeof *d + 8 * i, 8, HS_R_PTR, "heapdir.heap[%u]", i);
        uint64_t ho;
        int hf = hs_locate(h, d->heap[i], &ho);
        if (hf < 0 || ho + sizeof(struct shmd__heap) > h->f[hf].size)
          continue;
        const struct shmd__heap *hp = (const void *)(h->f[hf].pristine + ho);
        HS_F(hf, ho, struct shmd__heap, magic, HS_R_OTHER, "heap%u.magic", i);
        HS_F(hf, ho, struct shmd__heap, lane_idx, HS_R_SIZE, "heap%u.lane_idx", i);
        for (uint32_t c = 0; c < SHMD__NCLASSES; c++)
          if (hp->bin[c].count || c == 0) {
            HS_F(hf, ho, struct shmd__heap, bin[c].count, HS_R_SIZE, "heap%u.bin[%u].count", i, c);
            HS_F(hf, ho, struct shmd__heap, bin[c].limit, HS_R_SIZE, "heap%u.bin[%u].limit", i, c);
            HS_F(hf, ho, struct shmd__heap, slot[c][0], HS_R_PTR, "heap%u.slot[%u][0]", i, c);
          }
      }
    }
    df = hs_locate(h, m->reserved2[SHMD__MAN_DEPOT], &off);
    if (df >= 0 && off + sizeof(struct shmd__depot) <= h->f[df].size) {
      const struct shmd__depot *d = (const void *)(h->f[df].pristine + off);
      HS_F(df, off, struct shmd__depot, magic, HS_R_OTHER, "depot.magic");
      HS_F(df, off, struct shmd__depot, cap, HS_R_SIZE, "depot.cap");
      HS_F(df, off, struct shmd__depot, reserved[0], HS_R_PTR, "depot.self");
      for (uint32_t c = 0; c < SHMD__NCLASSES; c++)
        if (d->cls[c].bin.count || c == 0) {
          HS_F(df, off, struct shmd__depot, cls[c].lock.word, HS_R_LOCK, "depot.cls[%u].lock", c);
          HS_F(df, off, struct shmd__depot, cls[c].bin.count, HS_R_SIZE, "depot.cls[%u].count", c);
          HS_F(df, off, struct shmd__depot, cls[c].bin.limit, HS_R_SIZE, "depot.cls[%u].limit", c);
          HS_F(df, off, struct shmd__depot, slot[c][0], HS_R_PTR, "depot.slot[%u][0]", c);
        }
    }
  }
  return 0;
}

/* A hostile shmd_ptr_t chosen by r: into a segment header, misaligned, at or past a segment's end,
 * anywhere, at a live word of the store (often a real block or structure), or into a segment that
 * does not exist. */
static inline uint64_t hs_ptr_value(const hs_t *h, uint64_t r) {
  int f = (int)(r % (uint64_t)h->nfiles);
  const hs_file_t *hf = &h->f[f];
  uint64_t seg = hf->seg, o;
  switch ((r >> 8) % 6) {
  case 0: o = ((r >> 16) % 28) * 8; break;          /* a segment header word */
  case 1: o = ((r >> 16) % hf->size) | 1; break;    /* misaligned */
  case 2: o = hf->size - ((r >> 16) % 16); break;   /* at the end */
  case 3: o = (r >> 16) & SHMD_PTR_OFFSET_MASK; break;
  case 4: /* the value of a live word that looks like a pointer of this store */
    if (hf->nnz) {
      uint64_t w = ((const uint64_t *)(const void *)hf->pristine)[hf->nz[(r >> 16) % hf->nnz]];
      if ((w >> SHMD_PTR_OFFSET_BITS) >= 1 && (w >> SHMD_PTR_OFFSET_BITS) <= (uint64_t)h->nfiles)
        return w;
      o = (hf->nz[(r >> 16) % hf->nnz]) * UINT64_C(8); /* a live word itself */
      break;
    }
    /* fall through */
  default: o = ((r >> 16) % hf->size) & ~(uint64_t)7; break;
  }
  if ((r >> 59) == 0)
    seg = (r >> 20) % 70000; /* a segment that does not exist */
  return ((seg + 1) << SHMD_PTR_OFFSET_BITS) | (o & SHMD_PTR_OFFSET_MASK);
}

/* A hostile value for field x whose pristine value is `orig`, chosen by `val`: values that break a
 * bound (0, all ones, off by one, misaligned, a sum that wraps past 2^64, a huge one), another
 * field's value, plausible pointers, lock words naming lanes, lane states. */
static inline uint64_t hs_field_value(const hs_t *h, const hs_field_t *x, uint64_t orig, uint64_t val) {
  uint64_t r = val >> 8, size = h->f[x->file].size, v;
  unsigned bits = x->width * 8u;
  switch (val % 26) {
  case 0: v = 0; break;
  case 1: v = 1; break;
  case 2: v = UINT64_MAX; break;
  case 3: v = orig + 1; break;
  case 4: v = orig - 1; break;
  case 5: v = orig + 4; break;  /* misaligned */
  case 6: v = orig + 8; break;
  case 7: v = orig - 8; break;
  case 8: v = orig ^ (UINT64_C(1) << (r % bits)); break;
  case 9: v = orig * 2; break;
  case 10: v = UINT64_C(1) << (bits - 1); break;
  case 11: v = -(UINT64_C(1) << 40); break;       /* with a size of 2^40: wraps to 0 */
  case 12: v = -orig; break;                      /* orig + v wraps to 0 */
  case 13: v = size - orig + (r % 3) * 8; break;  /* a sum just at / past the segment's end */
  case 14: v = size; break;
  case 15: v = UINT64_C(1) << (r % 64); break;
  case 16: { /* another field's pristine value */
    const hs_field_t *y = &h->fields[r % h->nfields];
    v = hs_word(h, y->file, y->off, y->width);
    break;
  }
  case 17: v = r % 5000; break;
  case 18: v = r; break;
  case 19: v = orig + (UINT64_C(1) << 40); break;
  default: /* role-specific */
    switch (x->role) {
    case HS_R_PTR:
      v = hs_ptr_value(h, r);
      if (x->file == 0 && (r >> 61) == 1)
        v &= SHMD_PTR_OFFSET_MASK; /* a plain offset (free lists, partial lists) */
      break;
    case HS_R_LOCK: /* a lane (that may not exist) holds it, maybe with waiters */
      v = (r % (h->lanes + 3)) | ((r >> 8) & 1 ? SHMD__LOCK_WAITERS : 0);
      break;
    case HS_R_STATE: v = r % 6; break;
    case HS_R_MUTEX: /* a robust mutex's owner word: a tid, with or without the owner-died bit */
      v = ((r >> 8) & 1 ? 0x40000000u : 0) | (r % 100000);
      break;
    default: v = orig + (uint64_t)((int64_t)(r % 65) - 32); break;
    }
  }
  if (x->role == HS_R_MUTEX && !h->forge && (uint32_t)v != 0)
    v |= 0x40000000u; /* FUTEX_OWNER_DIED: recovery takes it over; never a live-looking owner */
  return v;
}
#undef HS_F

/* ---------------------------------------------------------------------------------------------- */
/* The keyspace's containers (their headers get fields too), collected while the store is open. */

static inline void hs_cont(hs_t *h, shmd_ptr_t p, const char *fmt, unsigned a, unsigned b) {
  if (p.v == 0 || h->ncont >= (int)(sizeof h->cont / sizeof h->cont[0]))
    return;
  h->cont[h->ncont].ptr = p.v;
  snprintf(h->cont[h->ncont].what, sizeof h->cont[0].what, fmt, a, b);
  h->ncont++;
}

typedef struct {
  hs_t *h;
  unsigned db;
} hs_collect_t;

static inline int hs_collect_visit(const void *key, size_t klen, const void *val, size_t vlen, void *arg) {
  (void)key;
  (void)klen;
  hs_collect_t *c = arg;
  kv_rec_t r;
  shmd_ptr_t p[2];
  if (vlen != sizeof r + sizeof p)
    return 0; /* a string */
  memcpy(&r, val, sizeof r);
  memcpy(p, (const unsigned char *)val + sizeof r, sizeof p);
  hs_cont(c->h, p[0], "db%u.type%u", c->db, r.type);
  hs_cont(c->h, p[1], "db%u.tree%u", c->db, r.type);
  return 0;
}

static inline void hs_collect(hs_t *h, shmd_store_t *s) {
  h->ncont = 0;
  for (unsigned db = 0; db < SHMD_KV_DATABASES; db++) {
    shmd_tx_t *tx;
    shmd_ptr_t dp;
    kv_db_t *d;
    if (shmd_tx_begin(s, &tx))
      return;
    int rc = kv_db_get(tx, db, 0, &dp);
    shmd_tx_commit(tx);
    if (rc || kv_db_view(s, dp, &d))
      continue;
    hs_cont(h, d->garbage, "db%u.garbage", db, 0);
    hs_collect_t c = {h, db};
    for (unsigned i = 0; i < KV_STRIPES; i++) {
      hs_cont(h, d->stripe[i], "db%u.stripe%u", db, i);
      uint64_t cur = 0;
      do
        if (shmd_hash_scan(s, d->stripe[i], cur, 100, hs_collect_visit, &c, &cur))
          break;
      while (cur);
    }
  }
}

/* Builds the store in h->dir and snapshots its files. Returns 0 or -1. */
static inline int hs_build(hs_t *h) {
  snprintf(h->sdir, sizeof h->sdir, "%s/%s", h->dir, HS_NAME);
  shmd_options_t o = hs_opts(h);
  o.flags = 0;
  shmd_store_t *s;
  if (shmd_open(HS_NAME, &o, &s))
    return -1;
  char line[4096];
  int rc = 0;
  rc |= hs_cmd(s, 0, "SET str short");
  memset(line, 0, sizeof line);
  strcpy(line, "SET long ");
  memset(line + 9, 'L', 600);
  rc |= hs_cmd(s, 0, line);
  rc |= hs_cmd(s, 0, "SET num 12345");
  rc |= hs_cmd(s, 0, "SET ttl x");
  rc |= hs_cmd(s, 0, "EXPIRE ttl 100000");
  size_t pos = (size_t)sprintf(line, "HSET hash");
  for (int i = 0; i < 40; i++)
    pos += (size_t)sprintf(line + pos, " f%d %s%d", i, i % 5 ? "v" : "a-longer-value-that-is-not-inline-", i);
  rc |= hs_cmd(s, 0, line);
  pos = (size_t)sprintf(line, "RPUSH list");
  for (int i = 0; i < 30; i++)
    pos += (size_t)sprintf(line + pos, " e%d", i);
  rc |= hs_cmd(s, 0, line);
  pos = (size_t)sprintf(line, "SADD set");
  for (int i = 0; i < 30; i++)
    pos += (size_t)sprintf(line + pos, " m%d", i);
  rc |= hs_cmd(s, 0, line);
  pos = (size_t)sprintf(line, "ZADD zset");
  for (int i = 0; i < 40; i++)
    pos += (size_t)sprintf(line + pos, " %d z%d", i * 7 % 13, i);
  rc |= hs_cmd(s, 0, line);
  for (int i = 0; i < 40; i++) {
    sprintf(line, "SET k%d value%d", i, i);
    rc |= hs_cmd(s, 3, line);
  }
  rc |= hs_cmd(s, 3, "SADD s3 a b c d");
  /* a raw block in a growth segment, and small ones, reachable from roots */
  shmd_ptr_t big, small;
  rc |= shmd_alloc(s, 600u << 10, &big);
  rc |= shmd_alloc(s, 100, &small);
  if (rc == 0) {
    memset(shmd_resolve(s, big), 0x5a, 4096);
    memset(shmd_resolve(s, small), 0xa5, 100);
    rc |= shmd_root_set(s, "big", big);
    rc |= shmd_root_set(s, "small", small);
  }
  shmd_ptr_t big2;
  rc |= shmd_alloc(s, 700u << 10, &big2);
  if (rc == 0)
    rc |= shmd_root_set(s, "big2", big2);
  rc |= shmd_kv_check(s) | shmd_alloc_check(s);
  hs_collect(h, s);
  shmd_close(s);
  if (rc)
    return -1;
  DIR *d = opendir(h->sdir);
  struct dirent *e;
  h->nfiles = 0;
  while (d && (e = readdir(d)) != NULL && h->nfiles < HS_MAXFILES) {
    if (strncmp(e->d_name, "seg-", 4) != 0)
      continue;
    hs_file_t *f = &h->f[h->nfiles++];
    snprintf(f->name, sizeof f->name, "%s", e->d_name);
    char path[700];
    snprintf(path, sizeof path, "%s/%s", h->sdir, e->d_name);
    int fd = open(path, O_RDONLY);
    struct stat st;
    fstat(fd, &st);
    f->size = (size_t)st.st_size;
    f->pristine = malloc(f->size);
    if (pread(fd, f->pristine, f->size, 0) != (ssize_t)f->size)
      rc = -1;
    close(fd);
    f->nz = malloc(f->size / 8 * sizeof *f->nz);
    f->nnz = 0;
    for (size_t w = 0; w < f->size / 8; w++)
      if (((uint64_t *)f->pristine)[w])
        f->nz[f->nnz++] = (uint32_t)w;
  }
  if (d)
    closedir(d);
  /* segment 0 first, so that a mutation program names files stably */
  for (int i = 1; i < h->nfiles; i++)
    if (strcmp(h->f[i].name, "seg-00000") == 0) {
      hs_file_t t = h->f[0];
      h->f[0] = h->f[i];
      h->f[i] = t;
    }
  for (int i = 0; i < h->nfiles; i++)
    h->f[i].seg = (uint32_t)strtoul(h->f[i].name + 4, NULL, 10);
  if (rc == 0)
    rc = hs_fields(h);
  return rc;
}

/* Puts every file back as it was built (rewriting only the pages that differ) and removes files
 * the exercise created. Returns 0 or -1. */
static inline int hs_restore(hs_t *h) {
  DIR *d = opendir(h->sdir);
  if (d == NULL) {
    mkdir(h->sdir, 0700);
    d = opendir(h->sdir);
  }
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    int ours = 0;
    for (int i = 0; i < h->nfiles; i++)
      ours |= strcmp(e->d_name, h->f[i].name) == 0;
    if (!ours) {
      char path[700];
      snprintf(path, sizeof path, "%s/%s", h->sdir, e->d_name);
      unlink(path);
    }
  }
  if (d)
    closedir(d);
  int rc = 0;
  for (int i = 0; i < h->nfiles; i++) {
    hs_file_t *f = &h->f[i];
    char path[700];
    snprintf(path, sizeof path, "%s/%s", h->sdir, f->name);
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW, 0600);
    if (fd < 0) {
      unlink(path);
      fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW, 0600);
    }
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
      rc = -1;
      continue;
    }
    if ((size_t)st.st_size != f->size) {
      if (ftruncate(fd, 0) || ftruncate(fd, (off_t)f->size) ||
          pwrite(fd, f->pristine, f->size, 0) != (ssize_t)f->size)
        rc = -1;
      close(fd);
      continue;
    }
    unsigned char *m = mmap(NULL, f->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
      rc = -1;
      continue;
    }
    for (size_t off = 0; off < f->size; off += 4096) {
      size_t n = f->size - off < 4096 ? f->size - off : 4096;
      if (memcmp(m + off, f->pristine + off, n))
        memcpy(m + off, f->pristine + off, n);
    }
    munmap(m, f->size);
  }
  return rc;
}

/* One mutation: file index, kind, position, value. A mutation program is a sequence of these;
 * the fuzzer's input is one, the mutation loop draws them at random. */
typedef struct {
  uint8_t file;
  uint8_t kind;
  uint32_t pos;
  uint64_t val;
} hs_mut_t;

enum {
  HS_FLIP,    /* flip bit val % 64 of a live word */
  HS_ZERO,    /* zero a live word */
  HS_SET,     /* set a live word to val */
  HS_COPY,    /* set a live word to another live word's value (pointer-like) */
  HS_ADD,     /* add a small signed delta */
  HS_ANY,     /* set any word (pos over the whole file) to val */
  HS_RANGE,   /* fill 8 .. 4096 bytes at any position with a byte */
  HS_TRUNC,   /* truncate the file */
  HS_FIELD,   /* structure-aware: field pos % nfields (any file) gets hs_field_value(val) */
  HS_LANE,    /* structure-aware: lane pos % lanes looks like a dead thread's (hs_lane) */
  HS_NKINDS
};
#define HS_FIXSUM 0x80 /* kind flag: recompute the file's header checksum afterwards */

/*
 * Makes lane `idx` of segment 0 (file fd) look like the lane of a thread that died in the middle
 * of something, as recovery at the next open will find it: a state (idle, active, committed,
 * aborting or none of these), an undo log and an allocator step's log of 1 to 4 entries, held
 * locks, reservations and deferred frees with their counts. With `val` & 1 the entries are the
 * lane's own stale ones (left by the operations that built the store: real pointers and old
 * values, rolled back out of order); otherwise they are forged by hs_ptr_value (into a header,
 * misaligned, past an end, real blocks) with hostile old values.
 */
static inline void hs_lane(hs_t *h, int fd, uint32_t idx, uint64_t val) {
  const hs_file_t *f = &h->f[0];
  uint64_t mo = hs_word(h, 0, offsetof(struct shmd__seg_hdr, manifest_off), 8);
  if (mo + sizeof(struct shmd__manifest) > f->size)
    return;
  const struct shmd__manifest *m = (const void *)(f->pristine + mo);
  uint64_t lo = m->lanes_off + (uint64_t)idx * m->lane_bytes;
  if (m->lane_count == 0 || lo + sizeof(struct shmd__lane) + 4 * sizeof(struct shmd__undo) > f->size)
    return;
  hs_rng_t g = {val | 1};
  int stale = val & 1;
  uint32_t st = (uint32_t)(hs_rand(&g) % 5), nop = 1 + (uint32_t)(hs_rand(&g) % 4), nal = (uint32_t)(hs_rand(&g) % 3);
  uint32_t nheld = (uint32_t)(hs_rand(&g) % 3), nresv = (uint32_t)(hs_rand(&g) % 3), ndf = (uint32_t)(hs_rand(&g) % 3);
#define HS_PUT(field, v)                                                                           \
  do {                                                                                             \
    __typeof__(((struct shmd__lane *)0)->field) v_ = (__typeof__(v_))(v);                          \
    pwrite(fd, &v_, sizeof v_, (off_t)(lo + offsetof(struct shmd__lane, field)));                  \
  } while (0)
  HS_PUT(state, st);
  HS_PUT(op_len, nop);
  HS_PUT(al_len, nal);
  HS_PUT(held_count, nheld);
  HS_PUT(al_held_count, hs_rand(&g) % 3);
  HS_PUT(resv_count, nresv);
  HS_PUT(dfree_count, ndf);
  HS_PUT(dfree_done, hs_rand(&g) % 4 == 0 ? ndf + 1 : 0);
  if (!stale) {
    for (uint32_t k = 0; k < 4; k++) {
      struct shmd__undo u = {hs_ptr_value(h, hs_rand(&g)), hs_rand(&g) % 3 ? hs_rand(&g) : hs_rand(&g) % 5000};
      pwrite(fd, &u, sizeof u, (off_t)(lo + sizeof(struct shmd__lane) + k * sizeof u));
      struct shmd__undo a = {hs_ptr_value(h, hs_rand(&g)), hs_rand(&g)};
      pwrite(fd, &a, sizeof a, (off_t)(lo + offsetof(struct shmd__lane, al_log) + k * sizeof a));
      HS_PUT(held[k], hs_ptr_value(h, hs_rand(&g)));
      HS_PUT(al_held[k], hs_ptr_value(h, hs_rand(&g)));
      HS_PUT(resv[k], hs_ptr_value(h, hs_rand(&g)));
      HS_PUT(dfree[k], hs_ptr_value(h, hs_rand(&g)));
    }
  }
  if (hs_rand(&g) % 4 == 0)
    HS_PUT(ext, hs_ptr_value(h, hs_rand(&g)));
#undef HS_PUT
}

static inline void hs_apply(hs_t *h, const hs_mut_t *mu) {
  if (h->nfiles == 0)
    return;
  unsigned kind = (mu->kind & 0x7fu) % HS_NKINDS;
  hs_file_t *f = &h->f[mu->file % h->nfiles];
  if (kind == HS_LANE) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s", h->sdir, h->f[0].name);
    int fd = open(path, O_RDWR | O_NOFOLLOW);
    uint32_t idx = h->lanes ? mu->pos % h->lanes : 0;
    if (fd >= 0) {
      hs_lane(h, fd, idx, mu->val);
      close(fd);
    }
    if (h->forge > 0 && ((mu->val >> 1) % (uint64_t)h->forge) == 0) {
      /* h->forge: the lane's liveness mutex held by a thread that does not exist,
       * and one of the store's lock words naming the lane (issue 12 item 4's attack) */
      uint64_t mo = hs_word(h, 0, offsetof(struct shmd__seg_hdr, manifest_off), 8);
      const struct shmd__manifest *m = (const void *)(h->f[0].pristine + mo);
      hs_patch_file(path, m->lanes_off + (uint64_t)idx * m->lane_bytes, 4, 1 + (mu->val >> 3) % 30000, NULL);
      for (size_t k = 0, n = (size_t)(mu->val >> 20) % h->nfields; k < h->nfields; k++) {
        const hs_field_t *x = &h->fields[(n + k) % h->nfields];
        if (x->role != HS_R_LOCK)
          continue;
        char lp[700];
        snprintf(lp, sizeof lp, "%s/%s", h->sdir, h->f[x->file].name);
        hs_patch_file(lp, x->off, 4, idx + 1, NULL);
        break;
      }
    }
    return;
  }
  if (kind == HS_FIELD) {
    if (h->nfields == 0)
      return;
    const hs_field_t *x = &h->fields[mu->pos % h->nfields];
    f = &h->f[x->file];
    char path[700];
    snprintf(path, sizeof path, "%s/%s", h->sdir, f->name);
    uint64_t v = hs_field_value(h, x, hs_word(h, x->file, x->off, x->width), mu->val);
    hs_patch_file(path, x->off, x->width, v, NULL); /* recomputes the checksum of a header field */
    return;
  }
  char path[700];
  snprintf(path, sizeof path, "%s/%s", h->sdir, f->name);
  int fd = open(path, O_RDWR | O_NOFOLLOW);
  if (fd < 0)
    return;
  size_t words = f->size / 8, hwords = offsetof(struct shmd__seg_hdr, checksum) / 8;
  size_t w = f->nnz ? f->nz[mu->pos % f->nnz] : mu->pos % words;
  int fix = (mu->kind & HS_FIXSUM) != 0 && f->size >= sizeof(struct shmd__seg_hdr);
  if (fix) /* damage to the header, which only the recomputed checksum lets through */
    w = mu->pos % hwords;
  if (kind == HS_ANY)
    w = fix ? mu->pos % hwords : mu->pos % words;
  uint64_t v = 0;
  pread(fd, &v, 8, (off_t)(w * 8));
  switch (kind) {
  case HS_FLIP: v ^= 1ull << (mu->val % 64); break;
  case HS_ZERO: v = 0; break;
  case HS_SET: v = mu->val; break;
  case HS_COPY: v = f->nnz ? ((uint64_t *)f->pristine)[f->nz[mu->val % f->nnz]] : mu->val; break;
  case HS_ADD: v += (uint64_t)((int64_t)(mu->val % 33) - 16); break;
  case HS_ANY: v = mu->val; break;
  case HS_RANGE: {
    size_t off = (size_t)mu->pos % (fix ? hwords * 8 : f->size), len = 8 + (size_t)(mu->val >> 8) % 4089;
    if (off + len > f->size)
      len = f->size - off;
    unsigned char buf[4096];
    memset(buf, (int)(mu->val & 0xff), len);
    pwrite(fd, buf, len, (off_t)off);
    if (fix)
      hs_fix_checksum(fd);
    close(fd);
    return;
  }
  default:
    ftruncate(fd, (off_t)(mu->pos % f->size));
    close(fd);
    return;
  }
  pwrite(fd, &v, 8, (off_t)(w * 8));
  if (fix)
    hs_fix_checksum(fd);
  close(fd);
}

/* A status must be 0 or one of the table's codes. */
static inline int hs_status_ok(int rc) { return rc >= 0 || strcmp(shmd_err_name(rc), "UNKNOWN") != 0; }

#define HS_CALL(expr)                                                                              \
  do {                                                                                             \
    int rc_ = (expr);                                                                              \
    if (!hs_status_ok(rc_)) {                                                                      \
      fprintf(stderr, "hostile: %s returned %d, not a status\n", #expr, rc_);                      \
      return -1;                                                                                   \
    }                                                                                              \
  } while (0)

static inline int hs_foreach_root(const char *name, shmd_ptr_t p, void *arg) {
  (void)name;
  shmd_store_t *s = arg;
  void *a;
  if (shmd_resolve_checked(s, p, 1, &a) == 0)
    (void)shmd_usable_size(s, p);
  return 0;
}

/* Opens the (possibly damaged) store and uses it. Returns 0 when every call returned a status,
 * -1 otherwise; *checked_ok receives 1 when the checks passed after open. */
static inline int hs_exercise(hs_t *h, int *checked_ok) {
  shmd_options_t o = hs_opts(h);
  shmd_store_t *s = NULL;
  *checked_ok = 0;
  int rc = shmd_open(HS_NAME, &o, &s);
  HS_CALL(rc);
  if (rc)
    return 0;
  /* What `shmdict info` reads, before any check, as the command does. */
  shmd_store_info_t info;
  HS_CALL(shmd_store_info(s, &info));
  shmd_stats_t st;
  HS_CALL(shmd_stats(s, &st));
  for (uint32_t i = 0; i < info.segments && i < SHMD__MAX_SEGS + 16; i++) { /* as `info` does */
    uint64_t sz;
    char name[64];
    shmd_segment_stats_t ss;
    HS_CALL(shmd_segment_info(s, i, &sz, name, sizeof name));
    HS_CALL(shmd_segment_stats(s, i, &ss));
  }
  for (unsigned db = 0; db < SHMD_KV_DATABASES; db++) {
    shmd_kv_info_t ki;
    HS_CALL(shmd_kv_info(s, db, &ki));
  }
  int bad = 0;
  HS_CALL(shmd_recover(s));
  int c1 = shmd_alloc_check(s), c2 = shmd_kv_check(s);
  HS_CALL(c1);
  HS_CALL(c2);
  *checked_ok = c1 == 0 && c2 == 0;
  HS_CALL(shmd_root_foreach(s, hs_foreach_root, s));
  if (!*checked_ok) {
    /* The checks found the damage and said so: that is the promise for a damaged store. Reads and
     * writes follow pointers without bounds checks on their hot paths, so they are exercised on
     * stores the checks pass (damage the checks cannot see must not crash them). */
    shmd_close(s);
    return 0;
  }
  static const char *reads[] = {
      "GET str", "GET long", "GET num", "TTL ttl", "GET ttl", "TYPE hash", "HGETALL hash", "HGET hash f7",
      "HLEN hash", "LRANGE list 0 -1", "LINDEX list 17", "LLEN list", "SMEMBERS set", "SISMEMBER set m3",
      "SCARD set", "ZRANGE zset 0 -1 WITHSCORES", "ZRANGEBYSCORE zset 2 9", "ZRANK zset z5", "ZSCORE zset z9",
      "ZCARD zset", "KEYS *", "DBSIZE", "SCAN 0", "SCAN 0 COUNT 1000", "EXISTS str hash list set zset",
      "MGET str long num",
  };
  for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++)
    HS_CALL(hs_cmd(s, 0, reads[i]));
  HS_CALL(hs_cmd(s, 3, "KEYS *"));
  HS_CALL(hs_cmd(s, 3, "SMEMBERS s3"));
  static const char *writes[] = {
      "SET str other",  "SET new 1",        "APPEND long xyz",       "INCR num",         "HSET hash f1 x f99 y",
      "HDEL hash f2 f3", "RPUSH list x y",  "LPOP list",             "RPOP list",        "LSET list 3 q",
      "SADD set m99 m3", "SREM set m4",     "ZADD zset 1.5 z1 3 n",  "ZREM zset z2",     "DEL str num",
      "RENAME long long2", "EXPIRE hash 1000", "PERSIST ttl",        "DEL hash",         "DEL zset",
  };
  for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++)
    HS_CALL(hs_cmd(s, 0, writes[i]));
  HS_CALL(hs_cmd(s, 3, "FLUSHDB"));
  HS_CALL(shmd_kv_drain(s, 0, 0));
  HS_CALL(shmd_kv_drain(s, 3, 0));
  size_t expired;
  HS_CALL(shmd_kv_expire_step(s, 0, 100, &expired));
  shmd_ptr_t p;
  if (shmd_root_get(s, "small", &p) == 0)
    HS_CALL(shmd_free(s, p));
  if (shmd_root_get(s, "big", &p) == 0) {
    HS_CALL(shmd_realloc(s, &p, 100000));
  }
  for (int i = 0; i < 20; i++) {
    HS_CALL(shmd_alloc(s, (size_t)(16 << (i % 12)), &p));
  }
  HS_CALL(shmd_alloc(s, 1u << 20, &p)); /* growth */
  HS_CALL(shmd_alloc_check(s));
  HS_CALL(shmd_kv_check(s));
  shmd_close(s);
  return bad;
}

#endif
