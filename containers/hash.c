/* SPDX-License-Identifier: MIT */
/*
 * Hash: byte-string keys to byte-string values, chained buckets, incremental rehash (Redis dict.c
 * transplanted into shared memory and made crash-safe through the transaction API of tx.h).
 *
 * Layout
 * ------
 * The header (96 bytes) holds the kind word, the lock, the seed, the entry count, two bucket
 * tables (arrays of shmd_ptr_t chain heads, 2^log2 each) and rehash_idx. An entry is one
 * allocation:
 *
 *     +------+------+----------+----------+---------------------+-------------------------+
 *     | next | hash | key_word | val_word | key (inline, pad 8) | value (inline)          |
 *     |  8   |  8   |    4     |    4     |  or shmd_ptr_t      |  or shmd_ptr_t          |
 *     +------+------+----------+----------+---------------------+-------------------------+
 *
 * key_word / val_word hold the length in the low 31 bits and, in bit 31, whether the bytes live
 * out of line (a separate allocation of exactly the bytes, made with shmd_tx_alloc). Writers put
 * bytes out of line when they are longer than SHMD_HASH_INLINE_MAX; readers go by the bit, so the
 * threshold can change without a layout change. The full 64-bit hash is kept in the entry: chain
 * walks compare it before the key, rehash never touches keys, and SCAN uses it to never repeat.
 *
 * Incremental rehash, and where a key lives
 * -----------------------------------------
 * As in Redis, a resize allocates table 1 and then every operation moves one bucket of table 0
 * (visiting at most 10 empty ones), rehash_idx being the next bucket to move; when it reaches the
 * end, table 1 becomes table 0. One thing differs from Redis: where a key is, is a function of its
 * hash alone. A key whose table-0 bucket b0 = hash & mask0 is >= rehash_idx is in table 0, bucket
 * b0; otherwise it is in table 1, bucket hash & mask1. Redis puts new keys into table 1 and so
 * looks in both tables; here an insert goes where the rule says, so a lookup reads one chain.
 *
 * The rule also lets table 1 be allocated without being zeroed (zeroing a 128 MiB table would be
 * a 30 ms stall, which is what incremental rehash is meant to avoid). A bucket j of table 1 is
 * "live" once some table-0 bucket that maps onto it has been moved:
 *   - growth (mask1 wider): j is live iff (j & mask0) < rehash_idx; moving table-0 bucket i first
 *     sets its 2^(log2_1 - log2_0) images i, i + N0, ... to null;
 *   - shrink (mask1 narrower): j is live iff j < rehash_idx; moving bucket i < N1 first sets
 *     bucket i of table 1 to null, and the buckets i + k*N1 that follow pour into it.
 * Nothing reads a bucket that is not live. Writes that make a bucket live need no undo log: if the
 * transaction rolls back, rehash_idx goes back and the bucket is not live any more.
 *
 * SCAN
 * ----
 * Redis's reverse-binary cursor: visiting cursor v with the smaller table's mask m covers every
 * key with hash & m == v & m (one bucket of the small table and all its images in the big one).
 * Reverse the bits and this is an interval of the "reversed hash" space, [S, S + 2^(64-k)), where
 * S is rev(v & m) and k the bits of m; the next cursor is the start of the next interval. So a scan
 * is a monotonic sweep of the reversed hash space, and every key present throughout is met when
 * the sweep passes its position. Redis repeats keys after a shrink because the coarser mask moves
 * the interval start back before the cursor; we keep the exact position (the cursor reversed) and
 * skip keys whose reversed hash lies before it, so no key is ever returned twice. The safe
 * iterator is exactly this sweep, copying batches under the lock: it leaves nothing in shared
 * memory (no pause counter a dead process could leave set), and the caller may change the hash
 * freely between calls.
 *
 * Resizes: growth when count + 1 > N0 (load factor 1), shrink when count * 8 <= N0 (load factor
 * 1/8) to a load of about 1/2; one resize changes the size by at most 2^6, so that one rehash step
 * and one SCAN interval touch at most 64 buckets of the bigger table.
 *
 * Optimistic reads
 * ----------------
 * get and contains first try without the lock (design §9's seqlock readers, in the form that a
 * crash cannot break). The header's write_seq is bumped by every writer after it takes the lock
 * and before its first change (enter() of a writing call, or a get that moves a rehash bucket);
 * a reader
 *     s1 = write_seq (acquire); lock word (acquire) must be 0;
 *     read the header, the bucket, the chain, copy the value into a bounce buffer;
 *     acquire fence; lock word must still be 0 and write_seq still s1
 * and only then hands out what it read. Why this is enough: a writer holds the lock from before
 * its bump to after its last change (the outermost commit, or the end of a rollback, including a
 * recovery of a dead writer's transaction, which runs while the lock word still names the dead
 * lane). A reader whose reads overlapped a change either saw the lock taken at one of its two
 * checks, or saw a bump (the bump is ordered before the change by a release fence, the reader's
 * second check after its reads by an acquire fence). write_seq is not logged: a rollback leaves
 * it bumped, so a reader that saw a change that was later undone still fails. A writer that dies
 * holding the lock leaves the word set, and readers then take the locked path, which recovers it.
 * Checking the lock word is what makes one bump per writer enough (a seqlock would bump again at
 * the end, but the end of a nested transaction is the outermost commit, which the hash does not
 * see).
 *   A reader may meet anything: entries freed and reused under it, torn header words. So it reads
 * shared words once (relaxed atomics), bounds-checks every pointer against the segment it names
 * (opt_at: segments are never unmapped while the store is open, so a checked address can always
 * be read), keeps every offset and length it derives from an unlocked word (an inline key's
 * length, the value's offset and copy) inside the entry extent it checked (opt_in_extent), bounds
 * chain walks, writes nothing shared, and copies the value into a bounce buffer so that the
 * caller's buffer only ever receives validated bytes. Anything it cannot answer (an out-of-line
 * value, a key or value beyond the checked extent, a long chain, a failed validation four times in
 * a row, a held lock) goes to the locked path, which also reports corruption. Inside a transaction (shmd_tx_depth() > 0) reads
 * always take the lock, which the transaction keeps to its outermost commit, so that a get and a
 * put in one transaction stay one atomic step, as before. A get on the fast path does not move rehash
 * buckets; writes do (each moves at least one non-empty bucket, so a resize started by N writes
 * ends within N further writes, before the next one is due), and so does rehash_step().
 *
 * Locks: each call takes the hash's own lock (header.lock), through the calling thread's
 * transaction, and holds it to the outermost commit (except the optimistic get and contains
 * above, which take no lock); the allocator's locks are taken under it by
 * shmd_tx_alloc / shmd_tx_free (container -> allocator, as design §6 orders). The lock protects
 * every word of the header except the kind word's lifetime, both tables and all entries.
 */
#include "shmdict/hash.h"

#include <stdlib.h>
#include <string.h>

#include "segments/crash.h"
#include "segments/err.h"
#include "segments/os.h"
#include "segments/store_int.h" /* the segment table, for the optimistic readers' bounds checks */
#include "shmdict/alloc.h"
#include "shmdict/blob.h"
#include "shmdict/error.h"
#include "shmdict/tx.h"
#include "segments/lockwait.h"
#include "cont_int.h"
#include "hash_int.h"

/* ---------------------------------------------------------------------------------------------- */
/* Layout */

#define HASH_MAGIC SHMD__KIND(0x48534148) /* "HASH" (containers/cont_int.h) */

#define MIN_LOG2 2u          /* smallest table: 4 buckets */
#define MAX_LOG2 44u         /* 2^44 buckets * 8 bytes = 2^47 bytes, beyond any segment */
#define MAX_RESIZE_LOG2 6u   /* one resize changes the size by at most 2^6 */
#define REHASH_PER_OP 1u     /* buckets moved by each operation (Redis: 1) */
#define EMPTY_VISITS 10u     /* empty buckets visited per bucket of budget (Redis: 10) */
#define SHRINK_FILL 8u       /* shrink when count * 8 <= size */
#define OOL_BIT 0x80000000u
#define LEN_MASK 0x7fffffffu

typedef struct hhdr_s {
  uint64_t magic;
  shmd_lock_t lock;
  uint64_t seed;
  uint64_t count;         /* entries in both tables */
  shmd_ptr_t table[2];    /* bucket arrays; table[1] is non-null exactly while rehashing */
  uint32_t log2[2];       /* table sizes are 2^log2 (0 while the table is absent) */
  uint64_t rehash_idx;    /* next bucket of table 0 to move; 0 when not rehashing */
  uint64_t write_seq;     /* bumped by every writer before its first change (optimistic reads) */
  uint64_t reserved[3];
} hhdr_t;

enum {
  OFF_COUNT = offsetof(hhdr_t, count),
  OFF_TABLE0 = offsetof(hhdr_t, table),
  OFF_TABLE1 = offsetof(hhdr_t, table) + 8,
  OFF_LOG2 = offsetof(hhdr_t, log2),
  OFF_IDX = offsetof(hhdr_t, rehash_idx),
};
_Static_assert(sizeof(hhdr_t) == 96, "hash header is 96 bytes");
_Static_assert(offsetof(hhdr_t, log2) == 48 && offsetof(hhdr_t, rehash_idx) == 56, "layout");
_Static_assert(offsetof(hhdr_t, write_seq) == 64, "write_seq takes the first reserved word");

typedef struct hent_s {
  shmd_ptr_t next;
  uint64_t hash;
  uint32_t key_word; /* length | OOL_BIT */
  uint32_t val_word;
  unsigned char data[];
} hent_t;

#define ENT_HDR ((size_t)offsetof(hent_t, data))
_Static_assert(offsetof(hent_t, data) == 24, "entry header is 24 bytes");

static inline size_t word_len(uint32_t w) { return w & LEN_MASK; }
static inline int word_ool(uint32_t w) { return (w & OOL_BIT) != 0; }
static inline size_t round8(size_t n) { return (n + 7) & ~(size_t)7; }
/* Offset of the value (inline bytes or pointer) inside an entry. */
static inline size_t val_off(uint32_t kw) {
  return ENT_HDR + round8(word_ool(kw) ? sizeof(shmd_ptr_t) : word_len(kw));
}
static inline size_t ent_size(uint32_t kw, uint32_t vw) {
  return val_off(kw) + (word_ool(vw) ? sizeof(shmd_ptr_t) : word_len(vw));
}
static inline uint32_t make_word(size_t len) {
  return (uint32_t)len | (len > SHMD_HASH_INLINE_MAX ? OOL_BIT : 0);
}

/* The hash of a key: shmd_hash_bytes() of blob.h (xxh3-64) with the hash's seed. */
static inline uint64_t hash_key(const void *key, size_t len, uint64_t seed) {
  return shmd_hash_bytes(key, len, seed);
}

static inline uint64_t rev64(uint64_t v) {
  v = ((v >> 1) & UINT64_C(0x5555555555555555)) | ((v & UINT64_C(0x5555555555555555)) << 1);
  v = ((v >> 2) & UINT64_C(0x3333333333333333)) | ((v & UINT64_C(0x3333333333333333)) << 2);
  v = ((v >> 4) & UINT64_C(0x0F0F0F0F0F0F0F0F)) | ((v & UINT64_C(0x0F0F0F0F0F0F0F0F)) << 4);
  return __builtin_bswap64(v);
}

/* ---------------------------------------------------------------------------------------------- */
/* Entering and leaving: one call = begin, lock, validate ... commit (or abort) */

typedef struct hctx_s {
  shmd_store_t *s;
  shmd_tx_t *tx;
  shmd_ptr_t hp;
  hhdr_t *hd;
  shmd_ptr_t *t[2];   /* resolved tables (t[1] NULL unless rehashing) */
  uint64_t mask[2];
  uint64_t seed;
  unsigned hlogged;   /* header words (bit = offset / 8) already logged in this call */
  int dirty;          /* a change is half-made: a failure now must abort, not commit */
  int bumped;         /* write_seq was bumped in this call */
} hctx_t;

static inline int rehashing(const hctx_t *c) { return c->t[1] != NULL; }

static inline int kind_status(uint64_t magic) { return shmd__kind_status(magic, HASH_MAGIC, "hash: bad kind word"); }

/* Walks are bounded by the hash's count: a damaged count must not exceed what the store could
 * hold (an entry takes a block of at least 32 bytes), or a cycle in a chain would be walked for
 * days. Computed only for big counts, so that ordinary calls do not pay for it. */
#define COUNT_CHEAP (UINT64_C(1) << 20)
static int count_possible(shmd_store_t *s, uint64_t count) {
  return count <= COUNT_CHEAP || count <= shmd__store_bytes(s) / 32;
}

/* Validates the header of a locked hash and resolves its tables into the context. */
static int validate(hctx_t *c) {
  hhdr_t *hd = c->hd;
  int rc = kind_status(hd->magic);
  if (rc)
    return rc;
  if (!count_possible(c->s, hd->count))
    return SHMD_CORRUPT("hash: count larger than the store could hold");
  uint32_t l0 = hd->log2[0], l1 = hd->log2[1];
  c->seed = hd->seed;
  c->t[0] = c->t[1] = NULL;
  c->mask[0] = c->mask[1] = 0;
  if (shmd_ptr_is_null(hd->table[0])) {
    if (l0 != 0 || !shmd_ptr_is_null(hd->table[1]) || l1 != 0 || hd->count != 0 ||
        hd->rehash_idx != 0)
      return SHMD_CORRUPT("hash: header of an empty hash");
    return 0;
  }
  if (l0 < MIN_LOG2 || l0 > MAX_LOG2)
    return SHMD_CORRUPT("hash: table 0 size");
  void *a;
  if ((hd->table[0].v & 7) != 0 || (hd->table[1].v & 7) != 0)
    return SHMD_CORRUPT("hash: misaligned table");
  if (shmd_resolve_checked(c->s, hd->table[0], (size_t)8 << l0, &a))
    return SHMD_CORRUPT("hash: table 0 outside the store");
  c->t[0] = a;
  c->mask[0] = (UINT64_C(1) << l0) - 1;
  if (shmd_ptr_is_null(hd->table[1])) {
    if (l1 != 0 || hd->rehash_idx != 0)
      return SHMD_CORRUPT("hash: rehash state without table 1");
    return 0;
  }
  if (l1 < MIN_LOG2 || l1 > MAX_LOG2 || l1 == l0 ||
      (l1 > l0 ? l1 - l0 : l0 - l1) > MAX_RESIZE_LOG2)
    return SHMD_CORRUPT("hash: table 1 size");
  if (hd->rehash_idx >= (UINT64_C(1) << l0))
    return SHMD_CORRUPT("hash: rehash_idx past table 0");
  if (shmd_resolve_checked(c->s, hd->table[1], (size_t)8 << l1, &a))
    return SHMD_CORRUPT("hash: table 1 outside the store");
  c->t[1] = a;
  c->mask[1] = (UINT64_C(1) << l1) - 1;
  return 0;
}

/* Announces a writer to optimistic readers (see "Optimistic reads" above): bumps write_seq, once
 * per call, before the call's first change to the header, a table or an entry. The caller holds
 * the lock. The bump is not logged: a rollback must not take it back (a reader that saw the
 * half-made change must fail its validation), and a counter that moved is harmless. */
static void write_begin(hctx_t *c) {
  if (c->bumped)
    return;
  uint64_t v = __atomic_load_n(&c->hd->write_seq, __ATOMIC_RELAXED);
  __atomic_store_n(&c->hd->write_seq, v + 1, __ATOMIC_RELEASE);
  __atomic_thread_fence(__ATOMIC_RELEASE); /* the bump before every store that follows */
  c->bumped = 1;
}

/* Begins (or joins) a transaction, takes the hash's lock and validates the header
 * (containers/cont_int.h); a writer (`write`) also bumps write_seq. On failure the transaction
 * level is closed again. */
static int enter_mode(shmd_store_t *s, shmd_ptr_t h, hctx_t *c, int write) {
  memset(c, 0, sizeof *c);
  c->s = s;
  c->hp = h;
  if (s == NULL)
    return SHMD_EINVAL;
  void *a;
  int rc = shmd__cont_enter(s, h, sizeof(hhdr_t), offsetof(hhdr_t, lock), HASH_MAGIC,
                            "hash: header pointer outside the store", "hash: bad kind word", &a, &c->tx);
  if (rc)
    return rc;
  c->hd = a;
  if ((rc = validate(c)))
    return shmd_tx_end(c->tx, rc); /* nothing was changed */
  if (write)
    write_begin(c);
  return 0;
}

/* enter() for calls that may change the hash, enter_ro() for calls that only read it. */
static inline int enter(shmd_store_t *s, shmd_ptr_t h, hctx_t *c) { return enter_mode(s, h, c, 1); }
static inline int enter_ro(shmd_store_t *s, shmd_ptr_t h, hctx_t *c) {
  return enter_mode(s, h, c, 0);
}

/* Ends the call's transaction level. A failure while a change is half-made (dirty) aborts (the
 * caller's transaction, if any, then fails too); any other outcome commits what is consistent,
 * also after complete changes (a rehash step moved a bucket before a lookup missed). */
static int leave(hctx_t *c, int rc) {
  int erc = shmd_tx_end(c->tx, rc < 0 && !c->dirty ? 0 : rc);
  return rc ? rc : erc;
}

static int room(hctx_t *c, size_t words, size_t allocs, size_t frees) {
  size_t w, a, f;
  shmd_tx_room(c->tx, &w, &a, &f);
  return w >= words && a >= allocs && f >= frees;
}

/* Like room(), but grows the transaction when it is short (an atomic step must not stop half-way):
 * 0, SHMD_ENOSPC or SHMD_ETXFULL. */
static int need_room(hctx_t *c, size_t words, size_t allocs, size_t frees) {
  return room(c, words, allocs, frees) ? 0 : shmd_tx_reserve(c->tx, words, allocs, frees);
}

/* Logs a header word once per call. */
static int log_hdr(hctx_t *c, size_t off) {
  unsigned bit = 1u << (off / 8);
  if (c->hlogged & bit)
    return 0;
  int rc = shmd_tx_log(c->tx, shmd_ptr_add(c->hp, off), 8);
  if (rc == 0)
    c->hlogged |= bit;
  return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* Entries */

/* The address of an entry (NULL for a pointer no entry can have: misaligned or into no segment). */
static inline hent_t *ent_at(hctx_t *c, shmd_ptr_t p) {
  return (p.v & 7) == 0 ? shmd_resolve(c->s, p) : NULL;
}

/* Address of a key's or value's bytes (inline, or the out-of-line block). NULL if corrupt. */
static inline void *ent_key(hctx_t *c, hent_t *e) {
  if (!word_ool(e->key_word))
    return e->data;
  shmd_ptr_t p;
  memcpy(&p, e->data, sizeof p);
  return shmd_resolve(c->s, p);
}
static inline shmd_ptr_t ent_val_ptr(hent_t *e, shmd_ptr_t ep) {
  size_t off = val_off(e->key_word);
  if (!word_ool(e->val_word))
    return shmd_ptr_add(ep, off);
  shmd_ptr_t p;
  memcpy(&p, (unsigned char *)e + off, sizeof p);
  return p;
}
static inline void *ent_val(hctx_t *c, hent_t *e) {
  size_t off = val_off(e->key_word);
  if (!word_ool(e->val_word))
    return (unsigned char *)e + off;
  shmd_ptr_t p;
  memcpy(&p, (unsigned char *)e + off, sizeof p);
  return shmd_resolve(c->s, p);
}

/* Where a key with hash hv lives: table and bucket (the rule of the essay above). */
static inline void locate(const hctx_t *c, uint64_t hv, int *ti, uint64_t *bi) {
  uint64_t b0 = hv & c->mask[0];
  if (rehashing(c) && b0 < c->hd->rehash_idx) {
    *ti = 1;
    *bi = hv & c->mask[1];
  } else {
    *ti = 0;
    *bi = b0;
  }
}

/* Is bucket j of table 1 live (see the essay)? */
static inline int t1_live(const hctx_t *c, uint64_t j) {
  uint64_t idx = c->hd->rehash_idx;
  return c->mask[1] > c->mask[0] ? (j & c->mask[0]) < idx : j < idx;
}

/* A found entry, and the link that points to it (a bucket slot or the previous entry's next). */
typedef struct hfound_s {
  shmd_ptr_t *link;   /* address of the link */
  shmd_ptr_t link_p;  /* its store pointer, for the undo log */
  hent_t *e;
  shmd_ptr_t ep;
  int ti;             /* table and bucket of the chain */
  uint64_t bi;
} hfound_t;

/* Looks key up. Returns 1 and fills *f if found, 0 if not (f->link then is the chain head), or
 * SHMD_ECORRUPT. */
static int find(hctx_t *c, const void *key, size_t klen, uint64_t hv, hfound_t *f) {
  f->e = NULL;
  f->link = NULL;
  if (c->t[0] == NULL)
    return 0;
  locate(c, hv, &f->ti, &f->bi);
  shmd_ptr_t tp = c->hd->table[f->ti];
  shmd_ptr_t *link = &c->t[f->ti][f->bi];
  shmd_ptr_t link_p = shmd_ptr_add(tp, f->bi * 8);
  f->link = link;
  f->link_p = link_p;
  uint64_t limit = c->hd->count;
  for (uint64_t steps = 0; !shmd_ptr_is_null(*link); steps++) {
    if (steps >= limit)
      return SHMD_CORRUPT("hash: chain longer than the count");
    shmd_ptr_t ep = *link;
    hent_t *e = ent_at(c, ep);
    if (e == NULL)
      return SHMD_CORRUPT("hash: entry pointer into no segment");
    if (e->hash == hv && word_len(e->key_word) == klen) {
      const void *k = ent_key(c, e);
      if (k == NULL)
        return SHMD_CORRUPT("hash: key pointer into no segment");
      if (klen == 0 || memcmp(k, key, klen) == 0) {
        f->link = link;
        f->link_p = link_p;
        f->e = e;
        f->ep = ep;
        return 1;
      }
    }
    link = &e->next;
    link_p = ep; /* next is the first word of the entry */
  }
  return 0;
}

/* Frees what an entry owns out of line (not the entry), and the entry if `with_entry`. */
static int free_entry(hctx_t *c, hent_t *e, shmd_ptr_t ep, int free_key, int free_val,
                      int with_entry) {
  int rc;
  shmd_ptr_t p;
  if (free_key && word_ool(e->key_word)) {
    memcpy(&p, e->data, sizeof p);
    if ((rc = shmd_tx_free(c->tx, p)))
      return rc;
  }
  if (free_val && word_ool(e->val_word)) {
    memcpy(&p, (unsigned char *)e + val_off(e->key_word), sizeof p);
    if ((rc = shmd_tx_free(c->tx, p)))
      return rc;
  }
  return with_entry ? shmd_tx_free(c->tx, ep) : 0;
}

/* Allocates an out-of-line block holding `len` bytes (copied from src unless NULL: zero-filled). */
static int alloc_block(hctx_t *c, const void *src, size_t len, shmd_ptr_t *out) {
  shmd_ptr_t p;
  int rc = src ? shmd_tx_alloc(c->tx, len, &p) : shmd_tx_calloc(c->tx, len, &p);
  if (rc)
    return rc;
  if (src)
    memcpy(shmd_resolve(c->s, p), src, len);
  *out = p;
  return 0;
}

/* Builds a new, unlinked entry. The key comes from `key` (copied, out of line if long) or, when
 * key_from is not NULL, from that entry (an out-of-line key block is then shared: the caller frees
 * the old entry without its key). The value is copied from val, or zero-filled if val is NULL. */
static int build_entry(hctx_t *c, uint64_t hv, const void *key, size_t klen, const hent_t *key_from,
                       const void *val, size_t vlen, shmd_ptr_t *out, hent_t **out_e) {
  uint32_t kw = key_from ? key_from->key_word : make_word(klen);
  uint32_t vw = make_word(vlen);
  shmd_ptr_t ep, kb = shmd_ptr_null(), vb = shmd_ptr_null();
  int rc;
  /* A failure frees the blocks already made: a committed transaction keeps its reservations, and
   * a failed put commits (it changed nothing visible). shmd_tx_free of a reservation frees it at
   * the commit, and not at all if the transaction aborts (the abort frees the reservation). */
  if (!key_from && word_ool(kw) && (rc = alloc_block(c, key, klen, &kb)))
    return rc;
  if (word_ool(vw) && (rc = alloc_block(c, val, vlen, &vb))) {
    if (!shmd_ptr_is_null(kb) && shmd_tx_free(c->tx, kb))
      c->dirty = 1; /* cannot happen (room was checked); abort rather than leak */
    return rc;
  }
  if ((rc = shmd_tx_alloc(c->tx, ent_size(kw, vw), &ep))) {
    if ((!shmd_ptr_is_null(kb) && shmd_tx_free(c->tx, kb)) ||
        (!shmd_ptr_is_null(vb) && shmd_tx_free(c->tx, vb)))
      c->dirty = 1;
    return rc;
  }
  hent_t *e = shmd_resolve(c->s, ep);
  e->next = shmd_ptr_null();
  e->hash = hv;
  e->key_word = kw;
  e->val_word = vw;
  if (key_from)
    memcpy(e->data, key_from->data, word_ool(kw) ? sizeof(shmd_ptr_t) : word_len(kw));
  else if (word_ool(kw))
    memcpy(e->data, &kb, sizeof kb);
  else if (klen)
    memcpy(e->data, key, klen);
  unsigned char *v = (unsigned char *)e + val_off(kw);
  if (word_ool(vw))
    memcpy(v, &vb, sizeof vb);
  else if (val)
    memcpy(v, val, vlen);
  else
    memset(v, 0, vlen);
  SHMD_CRASH_POINT("hash.insert.alloc");
  *out = ep;
  *out_e = e;
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Incremental rehash */

/* Makes the table-1 images of table-0 bucket i live (null), before bucket i is moved. These
 * writes need no log (see the essay). */
static void init_images(hctx_t *c, uint64_t i) {
  if (c->mask[1] > c->mask[0]) {
    uint64_t n0 = c->mask[0] + 1;
    for (uint64_t j = i; j <= c->mask[1]; j += n0)
      c->t[1][j] = shmd_ptr_null();
  } else if (i <= c->mask[1]) {
    c->t[1][i] = shmd_ptr_null();
  }
}

/* Ends a rehash: table 1 becomes table 0; the old table is freed after the commit. */
static int finish_rehash(hctx_t *c) {
  hhdr_t *hd = c->hd;
  int rc;
  if ((rc = shmd_tx_free(c->tx, hd->table[0])))
    return rc;
  if ((rc = log_hdr(c, OFF_TABLE0)) || (rc = log_hdr(c, OFF_TABLE1)) ||
      (rc = log_hdr(c, OFF_LOG2)) || (rc = log_hdr(c, OFF_IDX)))
    return rc;
  hd->table[0] = hd->table[1];
  hd->log2[0] = hd->log2[1];
  hd->table[1] = shmd_ptr_null();
  hd->log2[1] = 0;
  hd->rehash_idx = 0;
  c->t[0] = c->t[1];
  c->mask[0] = c->mask[1];
  c->t[1] = NULL;
  c->mask[1] = 0;
  return 0;
}

/*
 * Moves up to `n` non-empty buckets of table 0 (visiting at most 10 * n empty ones), keeping
 * `reserve_words` of undo log free for the caller's own changes; stops early when the transaction
 * has no room for the next bucket. Each bucket is moved completely or not at all. *moved (may be
 * NULL) counts the buckets passed. Returns 0 or a failure (dirty is set: the caller aborts).
 */
static int rehash_buckets(hctx_t *c, uint64_t n, size_t reserve_words, uint64_t *moved) {
  if (!rehashing(c) || n == 0)
    return 0;
  hhdr_t *hd = c->hd;
  uint64_t n0 = c->mask[0] + 1, empty = n * EMPTY_VISITS, passed = 0;
  int rc = 0;
  int shrink = c->mask[1] < c->mask[0];
  /* the header words a step and the finish write, and one free for the old table */
  size_t fixed = 8 + reserve_words;
  if (!room(c, fixed, 0, 1))
    return 0;
  if ((rc = log_hdr(c, OFF_IDX)))
    return rc;
  while (n > 0 && hd->rehash_idx < n0) {
    uint64_t i = hd->rehash_idx;
    shmd_ptr_t *slot = &c->t[0][i];
    if (shmd_ptr_is_null(*slot)) {
      init_images(c, i);
      hd->rehash_idx = i + 1;
      passed++;
      if (--empty == 0)
        break;
      continue;
    }
    /* Count the chain, so the whole bucket fits in the log (each entry's next, the table-0 slot,
     * the table-1 slot when it was live before). */
    uint64_t k = 0, limit = hd->count;
    for (shmd_ptr_t p = *slot; !shmd_ptr_is_null(p); k++) {
      if (k >= limit)
        return c->dirty = 1, SHMD_CORRUPT("hash: chain longer than the count (rehash)");
      hent_t *e = ent_at(c, p);
      if (e == NULL)
        return c->dirty = 1, SHMD_CORRUPT("hash: entry pointer into no segment (rehash)");
      if ((e->hash & c->mask[0]) != i)
        return c->dirty = 1, SHMD_CORRUPT("hash: entry in the wrong bucket (rehash)");
      p = e->next;
    }
    if (!room(c, fixed + k + 3, 0, 1))
      break;
    c->dirty = 1;
    init_images(c, i);
    /* A table-1 bucket that was live before this step needs its slot logged: only in a shrink,
     * for buckets past the first N1 (they pour into buckets made live earlier). */
    if (shrink && i > c->mask[1] &&
        (rc = shmd_tx_log(c->tx, shmd_ptr_add(hd->table[1], (i & c->mask[1]) * 8), 8)))
      return rc; /* a shrink pours the whole bucket into one bucket of table 1 */
    shmd_ptr_t p = *slot;
    while (!shmd_ptr_is_null(p)) {
      hent_t *e = ent_at(c, p);
      shmd_ptr_t next = e->next;
      uint64_t dst = e->hash & c->mask[1];
      if ((rc = shmd_tx_log(c->tx, p, 8)))
        return rc;
      e->next = c->t[1][dst];
      c->t[1][dst] = p;
      SHMD_CRASH_POINT("hash.rehash.mid_bucket");
      p = next;
    }
    if ((rc = shmd_tx_log(c->tx, shmd_ptr_add(hd->table[0], i * 8), 8)))
      return rc;
    *slot = shmd_ptr_null();
    hd->rehash_idx = i + 1;
    c->dirty = 0;
    passed++;
    n--;
  }
  if (hd->rehash_idx == n0) {
    c->dirty = 1;
    if ((rc = finish_rehash(c)))
      return rc;
    c->dirty = 0;
    SHMD_CRASH_POINT("hash.rehash.finished");
  }
  if (moved)
    *moved += passed;
  return 0;
}

static uint32_t log2_ceil(uint64_t n) {
  uint32_t l = 0;
  while (l < 63 && (UINT64_C(1) << l) < n)
    l++;
  return l;
}

/* Starts a resize to 2^new_log2 buckets (or allocates the first table). A failure to allocate is
 * not an error for the operation that asked (it goes on with the old table): returns 0 then. */
static int start_resize(hctx_t *c, uint32_t new_log2) {
  hhdr_t *hd = c->hd;
  if (new_log2 < MIN_LOG2)
    new_log2 = MIN_LOG2;
  if (new_log2 > MAX_LOG2)
    new_log2 = MAX_LOG2;
  if (rehashing(c) || (c->t[0] && new_log2 == hd->log2[0]))
    return 0;
  if (need_room(c, 8, 1, 0))
    return 0; /* no space for the new table: keep the current one */
  shmd_ptr_t tp;
  int rc;
  if (c->t[0] == NULL) {
    if (shmd_tx_calloc(c->tx, (size_t)8 << new_log2, &tp))
      return 0;
    if ((rc = log_hdr(c, OFF_TABLE0)) || (rc = log_hdr(c, OFF_LOG2)))
      return c->dirty = 1, rc;
    hd->table[0] = tp;
    hd->log2[0] = new_log2;
    c->t[0] = shmd_resolve(c->s, tp);
    c->mask[0] = (UINT64_C(1) << new_log2) - 1;
    return 0;
  }
  uint32_t l0 = hd->log2[0];
  if (new_log2 > l0 + MAX_RESIZE_LOG2)
    new_log2 = l0 + MAX_RESIZE_LOG2;
  if (new_log2 + MAX_RESIZE_LOG2 < l0)
    new_log2 = l0 - MAX_RESIZE_LOG2;
  /* Not zeroed: buckets become live one by one (see the essay). */
  if (shmd_tx_alloc(c->tx, (size_t)8 << new_log2, &tp))
    return 0;
  if ((rc = log_hdr(c, OFF_TABLE1)) || (rc = log_hdr(c, OFF_LOG2)) || (rc = log_hdr(c, OFF_IDX)))
    return c->dirty = 1, rc;
  hd->table[1] = tp;
  hd->log2[1] = new_log2;
  hd->rehash_idx = 0;
  c->t[1] = shmd_resolve(c->s, tp);
  c->mask[1] = (UINT64_C(1) << new_log2) - 1;
  SHMD_CRASH_POINT("hash.resize");
  return 0;
}

static int grow_if_needed(hctx_t *c) {
  if (c->t[0] == NULL)
    return start_resize(c, MIN_LOG2);
  if (rehashing(c) || c->hd->count + 1 <= c->mask[0] + 1)
    return 0;
  return start_resize(c, log2_ceil(c->hd->count + 1));
}

static int shrink_if_needed(hctx_t *c) {
  if (c->t[0] == NULL || rehashing(c) || c->hd->log2[0] <= MIN_LOG2 ||
      c->hd->count * SHRINK_FILL > c->mask[0] + 1)
    return 0;
  return start_resize(c, log2_ceil(c->hd->count * 2));
}

/* ---------------------------------------------------------------------------------------------- */
/* Create and destroy */

int shmd_hash_create(shmd_store_t *s, size_t expected, shmd_ptr_t *out) {
  if (s == NULL || out == NULL)
    return SHMD_EINVAL;
  shmd_tx_t *tx;
  int rc = shmd_tx_begin(s, &tx);
  if (rc)
    return rc;
  shmd_ptr_t hp, tp = shmd_ptr_null();
  uint32_t l0 = 0;
  if (expected > 0) {
    l0 = log2_ceil(expected);
    if (l0 < MIN_LOG2)
      l0 = MIN_LOG2;
    if (l0 > MAX_LOG2) {
      shmd_tx_commit(tx);
      return SHMD_ETOOBIG;
    }
  }
  if ((rc = shmd_tx_calloc(tx, sizeof(hhdr_t), &hp)) ||
      (l0 && (rc = shmd_tx_calloc(tx, (size_t)8 << l0, &tp)))) {
    shmd_tx_abort(tx);
    return rc;
  }
  hhdr_t *hd = shmd_resolve(s, hp);
  uint64_t seed[2];
  shmd__os_random(seed, sizeof seed);
  shmd_lock_init(&hd->lock);
  hd->seed = seed[0] ^ seed[1];
  hd->count = 0;
  hd->table[0] = tp;
  hd->table[1] = shmd_ptr_null();
  hd->log2[0] = l0;
  hd->log2[1] = 0;
  hd->rehash_idx = 0;
  __atomic_store_n(&hd->magic, HASH_MAGIC, __ATOMIC_RELEASE);
  if ((rc = shmd_tx_commit(tx)))
    return rc;
  *out = hp;
  return 0;
}

/*
 * One piece of a destroy: removes entries bucket by bucket (table 0 from `*pos`, then table 1),
 * as long as the transaction has room, each removal leaving a valid hash; when nothing is left,
 * frees the tables and the header. *pos is a process-local hint of where the entries start.
 * Returns 0 when the hash is gone, 1 when the transaction ran out of room, or a failure.
 */
static int destroy_piece(hctx_t *c, uint64_t *pos, int grow) {
  hhdr_t *hd = c->hd;
  int rc;
  uint64_t n0 = c->t[0] ? c->mask[0] + 1 : 0, n1 = c->t[1] ? c->mask[1] + 1 : 0;
  uint64_t steps = 0, limit = hd->count;
  if (*pos > n0 + n1)
    *pos = 0;
  for (int pass = 0; pass < 2 && hd->count > 0; pass++) {
    /* a second pass from 0 in case *pos was a stale hint */
    for (uint64_t b = pass ? 0 : *pos; b < n0 + n1 && hd->count > 0; b++) {
      int ti = b >= n0;
      uint64_t bi = ti ? b - n0 : b;
      if (ti ? !t1_live(c, bi) : (rehashing(c) && bi < hd->rehash_idx))
        continue;
      shmd_ptr_t *slot = &c->t[ti][bi];
      if (shmd_ptr_is_null(*slot))
        continue;
      int logged = 0;
      while (!shmd_ptr_is_null(*slot)) {
        if (!room(c, 4, 0, 3)) {
          if (!grow) {
            *pos = b;
            return 1;
          }
          /* Inside a caller's transaction: all or nothing, so the transaction grows. */
          if ((rc = shmd_tx_reserve(c->tx, 4 * 64, 0, 3 * 64)))
            return c->dirty = 1, rc;
        }
        if (steps++ >= limit)
          return c->dirty = 1, SHMD_CORRUPT("hash: more entries than the count (destroy)");
        shmd_ptr_t ep = *slot;
        hent_t *e = ent_at(c, ep);
        if (e == NULL)
          return c->dirty = 1, SHMD_CORRUPT("hash: entry pointer into no segment (destroy)");
        c->dirty = 1;
        if (!logged) {
          if ((rc = shmd_tx_log(c->tx, shmd_ptr_add(hd->table[ti], bi * 8), 8)))
            return rc;
          logged = 1;
        }
        if ((rc = log_hdr(c, OFF_COUNT)))
          return rc;
        *slot = e->next;
        hd->count--;
        if ((rc = free_entry(c, e, ep, 1, 1, 1)))
          return rc;
        c->dirty = 0;
      }
    }
  }
  if (hd->count > 0)
    return c->dirty = 1, SHMD_CORRUPT("hash: count larger than the entries (destroy)");
  if (!room(c, 2, 0, 3)) {
    if (!grow) {
      *pos = 0;
      return 1;
    }
    if ((rc = shmd_tx_reserve(c->tx, 2, 0, 3)))
      return c->dirty = 1, rc;
  }
  c->dirty = 1;
  if ((rc = shmd_tx_log(c->tx, c->hp, 8)))
    return rc;
  hd->magic = 0;
  if ((c->t[1] && (rc = shmd_tx_free(c->tx, hd->table[1]))) ||
      (c->t[0] && (rc = shmd_tx_free(c->tx, hd->table[0]))) ||
      (rc = shmd_tx_free(c->tx, c->hp)))
    return rc;
  c->dirty = 0;
  return 0;
}

int shmd_hash_destroy(shmd_store_t *s, shmd_ptr_t h) {
  int nested = s != NULL && shmd_tx_depth(s) > 0;
  uint64_t pos = 0;
  for (;;) {
    hctx_t c;
    int rc = enter(s, h, &c);
    if (rc)
      return rc;
    rc = destroy_piece(&c, &pos, nested);
    if (rc == 1) {
      SHMD_CRASH_POINT("hash.destroy.piece");
      if (nested)
        return leave(&c, SHMD_ETXFULL);
      if ((rc = leave(&c, 0)))
        return rc;
      continue;
    }
    return leave(&c, rc);
  }
}

/* ---------------------------------------------------------------------------------------------- */
/* Single-key operations */

/* Log words one put may need besides rehash: the link, the count, the entry's words, an inline
 * value rewritten in place, the header words of a resize. */
static size_t put_words(size_t vlen) {
  return 16 + (vlen <= SHMD_HASH_INLINE_MAX ? round8(vlen) / 8 + 1 : 0);
}

static void fill_ref(hctx_t *c, hent_t *e, shmd_ptr_t ep, shmd_hash_ref_t *ref) {
  ref->key = ent_key(c, e);
  ref->key_len = word_len(e->key_word);
  ref->val = ent_val(c, e);
  ref->val_len = word_len(e->val_word);
  ref->val_ptr = ent_val_ptr(e, ep);
}

/* The body of put and put_ref (val NULL: a zero-filled value the caller writes). */
static int put_locked(hctx_t *c, const void *key, size_t klen, const void *val, size_t vlen,
                      shmd_hash_mode_t mode, int *created, shmd_hash_ref_t *ref) {
  size_t need = put_words(vlen);
  int rc = need_room(c, need, 4, 4);
  if (rc || (rc = rehash_buckets(c, REHASH_PER_OP, need, NULL)))
    return rc;
  hhdr_t *hd = c->hd;
  uint64_t hv = hash_key(key, klen, c->seed);
  hfound_t f;
  int found = find(c, key, klen, hv, &f);
  if (found < 0)
    return found;
  if (found) {
    if (mode == SHMD_HASH_INSERT)
      return SHMD_EEXIST;
    hent_t *e = f.e;
    uint32_t ow = e->val_word, nw = make_word(vlen);
    size_t voff = val_off(e->key_word);
    if (!word_ool(ow) && !word_ool(nw) && round8(word_len(ow)) == round8(vlen)) {
      /* Same inline footprint: rewrite in place. */
      c->dirty = 1;
      if ((rc = shmd_tx_log(c->tx, shmd_ptr_add(f.ep, 16), 8)) ||
          (rc = shmd_tx_log(c->tx, shmd_ptr_add(f.ep, voff), round8(vlen))))
        return rc;
      e->val_word = nw;
      if (val && vlen)
        memcpy((unsigned char *)e + voff, val, vlen);
      else if (vlen)
        memset((unsigned char *)e + voff, 0, vlen);
    } else if (word_ool(ow) && word_ool(nw)) {
      /* Both out of line: swap the value block. */
      shmd_ptr_t vb, old;
      if ((rc = alloc_block(c, val, vlen, &vb)))
        return rc;
      memcpy(&old, (unsigned char *)e + voff, sizeof old);
      c->dirty = 1;
      if ((rc = shmd_tx_log(c->tx, shmd_ptr_add(f.ep, 16), 8)) ||
          (rc = shmd_tx_log(c->tx, shmd_ptr_add(f.ep, voff), 8)))
        return rc;
      e->val_word = nw;
      memcpy((unsigned char *)e + voff, &vb, sizeof vb);
      if ((rc = shmd_tx_free(c->tx, old)))
        return rc;
    } else {
      /* A new entry of the new size, taking over the key, in the old one's place. */
      shmd_ptr_t np;
      hent_t *ne;
      if ((rc = build_entry(c, hv, NULL, 0, e, val, vlen, &np, &ne)))
        return rc;
      ne->next = e->next;
      c->dirty = 1;
      if ((rc = shmd_tx_log(c->tx, f.link_p, 8)))
        return rc;
      *f.link = np;
      if ((rc = free_entry(c, e, f.ep, 0, 1, 1)))
        return rc;
      e = ne;
      f.ep = np;
    }
    c->dirty = 0;
    if (created)
      *created = 0;
    if (ref)
      fill_ref(c, e, f.ep, ref);
    return 0;
  }
  if (mode == SHMD_HASH_UPDATE)
    return SHMD_ENOTFOUND;
  if ((rc = grow_if_needed(c)))
    return rc;
  if (c->t[0] == NULL)
    return SHMD_ENOSPC; /* could not allocate the first table */
  shmd_ptr_t np;
  hent_t *ne;
  if ((rc = build_entry(c, hv, key, klen, NULL, val, vlen, &np, &ne)))
    return rc;
  int ti;
  uint64_t bi;
  locate(c, hv, &ti, &bi);
  c->dirty = 1;
  if ((rc = shmd_tx_log(c->tx, shmd_ptr_add(hd->table[ti], bi * 8), 8)) ||
      (rc = log_hdr(c, OFF_COUNT)))
    return rc;
  ne->next = c->t[ti][bi];
  c->t[ti][bi] = np;
  hd->count++;
  c->dirty = 0;
  SHMD_CRASH_POINT("hash.insert.linked");
  if (created)
    *created = 1;
  if (ref)
    fill_ref(c, ne, np, ref);
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Growth ahead of need */

/*
 * After an insert, outside the hash's lock: tells the allocator what is coming so that it can
 * prepare the store's next segment before an insert needs it (shmd_alloc_expect(); a segment
 * reserved on the insert path is a 20-100 ms stall). Once the hash is half way to its next resize,
 * it announces the next bucket table (8 << (log2 + 1) bytes), which the allocator prepares a spare
 * for when it is big and no free block can hold it. Best effort: nothing here can fail the insert.
 */
static inline void expect_growth(shmd_store_t *s, uint64_t count, uint32_t log2_now) {
  uint64_t next_table = 0;
  if (log2_now < MAX_LOG2 && count * 2 > (UINT64_C(1) << log2_now))
    next_table = (uint64_t)8 << (log2_now + 1);
  (void)shmd_alloc_expect(s, (size_t)next_table);
}

static int check_put_args(const void *key, size_t klen, const void *val, size_t vlen,
                          shmd_hash_mode_t mode) {
  if ((key == NULL && klen) || (val == NULL && vlen))
    return SHMD_EINVAL;
  if (mode != SHMD_HASH_UPSERT && mode != SHMD_HASH_INSERT && mode != SHMD_HASH_UPDATE)
    return SHMD_EINVAL;
  if (klen > SHMD_HASH_LEN_MAX || vlen > SHMD_HASH_LEN_MAX)
    return SHMD_ETOOBIG;
  return 0;
}

int shmd_hash_put(shmd_store_t *s, shmd_ptr_t h, const void *key, size_t key_len, const void *val,
                  size_t val_len, shmd_hash_mode_t mode, int *created) {
  int rc = check_put_args(key, key_len, val, val_len, mode);
  if (rc)
    return rc;
  static const unsigned char empty[1];
  if (val == NULL)
    val = empty; /* NULL means "zero-fill" to put_locked */
  hctx_t c;
  if ((rc = enter(s, h, &c)))
    return rc;
  int made = 0;
  int prc = put_locked(&c, key, key_len, val, val_len, mode, &made, NULL);
  uint64_t count = c.hd->count;
  uint32_t l2 = c.hd->log2[0] > c.hd->log2[1] ? c.hd->log2[0] : c.hd->log2[1];
  rc = leave(&c, prc);
  if (created && prc == 0)
    *created = made;
  if (rc == 0 && made)
    expect_growth(s, count, l2);
  return rc;
}

int shmd_hash_put_ref(shmd_store_t *s, shmd_ptr_t h, const void *key, size_t key_len,
                      size_t val_len, shmd_hash_mode_t mode, int *created, shmd_hash_ref_t *ref) {
  if (s == NULL || ref == NULL || shmd_tx_depth(s) == 0)
    return SHMD_EINVAL;
  int rc = check_put_args(key, key_len, NULL, 0, mode);
  if (rc == 0 && val_len > SHMD_HASH_LEN_MAX)
    rc = SHMD_ETOOBIG;
  if (rc)
    return rc;
  hctx_t c;
  if ((rc = enter(s, h, &c)))
    return rc;
  int made = 0;
  int prc = put_locked(&c, key, key_len, NULL, val_len, mode, &made, ref);
  uint64_t count = c.hd->count;
  uint32_t l2 = c.hd->log2[0] > c.hd->log2[1] ? c.hd->log2[0] : c.hd->log2[1];
  rc = leave(&c, prc);
  if (created && prc == 0)
    *created = made;
  if (rc == 0 && made)
    expect_growth(s, count, l2);
  return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* Optimistic reads (get and contains without the lock; the essay at the top) */

#define OPT_TRIES 4u      /* validations that may fail before a reader takes the lock */
#define OPT_MAX_CHAIN 64u /* longer chains (or a torn count) go to the locked path */
/* The bytes after an entry's header that a reader may touch: key and value both inline (at most
 * 2 * SHMD_HASH_INLINE_MAX + 7 of padding), and up to 63 bytes beyond a short value, which the
 * value copy reads as one fixed 64-byte block. */
#define OPT_ENT_MAX (2 * (size_t)SHMD_HASH_INLINE_MAX + 8 + 64)
/* The extent of an entry that opt_find() bounds-checks (opt_at) before it reads the entry. */
#define OPT_EXTENT (ENT_HDR + OPT_ENT_MAX)

/*
 * Does [off, off + len) of an entry lie inside the checked extent? Every offset and length an
 * optimistic reader derives from words it read without the lock (the key word gives the key's
 * inline length and the value's offset, the value word the value's length) goes through this
 * before a byte is read there: a torn or reused entry can hold any word, e.g. a key word without
 * the out-of-line bit whose length runs far past the entry (SHMD_HASH_INLINE_MAX is a writer's
 * threshold, not a promise: readers go by the bit). Overflow-free; the locked path, which reads a
 * consistent entry, answers what falls outside.
 */
static inline int opt_in_extent(size_t off, size_t len) {
  return off <= OPT_EXTENT && len <= OPT_EXTENT - off;
}

/* Key equality; short keys (8 to 16 bytes, the common case) by two overlapping word loads. */
static inline int key_eq(const void *a, const void *b, size_t n) {
  if (n >= 8 && n <= 16) {
    uint64_t a0, a1, b0, b1;
    memcpy(&a0, a, 8);
    memcpy(&b0, b, 8);
    memcpy(&a1, (const unsigned char *)a + n - 8, 8);
    memcpy(&b1, (const unsigned char *)b + n - 8, 8);
    return ((a0 ^ b0) | (a1 ^ b1)) == 0;
  }
  return n == 0 || memcmp(a, b, n) == 0;
}

enum { OPT_ABSENT = 0, OPT_FOUND = 1, OPT_LOCKED = -1 };

static inline uint64_t ld64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline uint32_t ld32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

/* A bounds-checked address of [p, p + len), or NULL: a pointer read without the lock may be
 * anything, and must neither fault nor record a corruption (the locked path decides that). The
 * inline form of shmd_resolve_checked() over the process's segment table (segments/store_int.h):
 * the hot path of a get follows three pointers, and the call was a third of its instructions. A
 * segment this process has not mapped yet goes through shmd_resolve_checked(), which maps it. */
static inline void *opt_at(shmd_store_t *s, shmd_ptr_t p, size_t len) {
  uint64_t idx = p.v >> SHMD_PTR_OFFSET_BITS, off = p.v & SHMD_PTR_OFFSET_MASK;
  unsigned char *base = __atomic_load_n(&s->map->base[idx], __ATOMIC_ACQUIRE);
  if (__builtin_expect(base == NULL, 0)) {
    void *a;
    /* a segment that exists (so no corruption detail is recorded for a torn pointer) */
    if (idx == 0 || idx > shmd__seg_count(s) || (p.v & 7) != 0 ||
        shmd_resolve_checked(s, p, len, &a) != 0)
      return NULL;
    return a;
  }
  uint64_t size = s->seg_size[idx]; /* written before base[idx] was published */
  if ((p.v & 7) != 0 || off > size || len > size - off)
    return NULL;
  return base + off;
}

/* Copies n <= 64 bytes with at most two overlapping fixed-size moves (no call, no loop). */
static inline void copy_small(unsigned char *d, const unsigned char *v, size_t n) {
  if (n >= 32) {
    memcpy(d, v, 32);
    memcpy(d + n - 32, v + n - 32, 32);
  } else if (n >= 16) {
    memcpy(d, v, 16);
    memcpy(d + n - 16, v + n - 16, 16);
  } else if (n >= 8) {
    memcpy(d, v, 8);
    memcpy(d + n - 8, v + n - 8, 8);
  } else {
    for (size_t i = 0; i < n; i++)
      d[i] = v[i];
  }
}

/*
 * One unlocked attempt to find key (hash hv) in the hash at hd, copying its value (inline values
 * only) into vbuf (room for SHMD_HASH_INLINE_MAX + 64 bytes) and its length into *vlen when vbuf
 * is not NULL. Reads every shared word once, checks every pointer and size it follows, never
 * writes to shared memory. Returns OPT_FOUND, OPT_ABSENT, or OPT_LOCKED for anything it cannot
 * answer without the lock (an out-of-line value, a long chain, a state that does not add up).
 * The caller validates. Kept lean on purpose: the instructions of one get decide how far the
 * processor can run ahead into the next one and overlap its cache misses with this one's.
 */
static inline int opt_find(shmd_store_t *s, hhdr_t *hd, const void *key, size_t klen, uint64_t hv,
                           unsigned char *vbuf, size_t *vlen) {
  shmd_ptr_t tp = {ld64(&hd->table[0].v)};
  uint32_t tl = ld32(&hd->log2[0]);
  uint64_t b = hv & ((UINT64_C(1) << (tl & 63)) - 1);
  if (__builtin_expect(ld64(&hd->table[1].v) != 0, 0)) {
    /* Rehashing: the rule of the essay says which table holds the key. */
    uint32_t l1 = ld32(&hd->log2[1]);
    if (l1 < MIN_LOG2 || l1 > MAX_LOG2)
      return OPT_LOCKED;
    if (b < ld64(&hd->rehash_idx)) {
      tp.v = ld64(&hd->table[1].v);
      tl = l1;
      b = hv & ((UINT64_C(1) << l1) - 1);
    }
  }
  if (shmd_ptr_is_null(tp))
    return OPT_ABSENT;
  if (tl < MIN_LOG2 || tl > MAX_LOG2)
    return OPT_LOCKED;
  shmd_ptr_t *tab = opt_at(s, tp, (size_t)8 << tl);
  if (tab == NULL)
    return OPT_LOCKED;
  shmd_ptr_t p = {ld64(&tab[b].v)};
  for (unsigned steps = 0; !shmd_ptr_is_null(p); steps++) {
    /* An entry that fits this key and an inline value: header, key (or its pointer), value. */
    hent_t *e = opt_at(s, p, ENT_HDR + OPT_ENT_MAX);
    if (e == NULL || steps >= OPT_MAX_CHAIN)
      return OPT_LOCKED; /* also an entry within OPT_ENT_MAX of its segment's end: rare */
    uint32_t kw = ld32(&e->key_word);
    if (ld64(&e->hash) == hv && word_len(kw) == klen) {
      const void *k = e->data;
      /* the key's bytes (inline) or its pointer (out of line) must lie in the checked extent */
      if (!opt_in_extent(ENT_HDR, word_ool(kw) ? sizeof(shmd_ptr_t) : klen))
        return OPT_LOCKED;
      if (__builtin_expect(word_ool(kw), 0)) {
        shmd_ptr_t q;
        memcpy(&q, e->data, sizeof q);
        if ((k = opt_at(s, q, klen)) == NULL)
          return OPT_LOCKED;
      }
      if (key_eq(k, key, klen)) {
        if (vbuf == NULL)
          return OPT_FOUND;
        uint32_t vw = ld32(&e->val_word);
        size_t n = word_len(vw), voff = val_off(kw);
        if (word_ool(vw) || n > SHMD_HASH_INLINE_MAX || !opt_in_extent(voff, n <= 64 ? 64 : n))
          return OPT_LOCKED;
        const unsigned char *v = (const unsigned char *)e + voff;
        if (n <= 64)
          memcpy(vbuf, v, 64); /* one fixed-size copy: inside the checked extent (just checked) */
        else
          memcpy(vbuf, v, n);
        *vlen = n;
        return OPT_FOUND;
      }
    }
    p.v = ld64(&e->next.v);
  }
  return OPT_ABSENT;
}

/*
 * get / contains without the lock: a few optimistic attempts, each validated by write_seq and the
 * lock word (the essay). Returns OPT_FOUND or OPT_ABSENT for a validated answer, OPT_LOCKED when
 * the caller must take the locked path (a writer holds the lock, or the attempts failed).
 */
static inline int opt_lookup(shmd_store_t *s, shmd_ptr_t h, const void *key, size_t klen,
                             unsigned char *vbuf, size_t *vlen, int check_depth) {
  if (s == NULL || (key == NULL && klen) || klen > SHMD_HASH_LEN_MAX)
    return OPT_LOCKED;
  /* Inside a transaction a read takes the lock and keeps it to the outermost commit, as it always
   * did: a get-then-put in one transaction stays atomic (two-phase locking). (shmd__hash_peek's
   * caller has checked this already.) */
  if (check_depth && shmd_tx_depth(s) != 0)
    return OPT_LOCKED;
  hhdr_t *hd = opt_at(s, h, sizeof(hhdr_t));
  if (hd == NULL)
    return OPT_LOCKED;
  for (unsigned attempt = 0; attempt < OPT_TRIES; attempt++) {
    uint64_t seq = __atomic_load_n(&hd->write_seq, __ATOMIC_ACQUIRE);
    if (__atomic_load_n(&hd->lock.word, __ATOMIC_ACQUIRE) != 0 || ld64(&hd->magic) != HASH_MAGIC)
      return OPT_LOCKED; /* a writer is at work (or died at work): wait for it on the lock */
    uint64_t hv = hash_key(key, klen, ld64(&hd->seed));
    int r = opt_find(s, hd, key, klen, hv, vbuf, vlen);
    __atomic_thread_fence(__ATOMIC_ACQUIRE); /* the reads above before the validation below */
    if (__atomic_load_n(&hd->lock.word, __ATOMIC_RELAXED) == 0 &&
        __atomic_load_n(&hd->write_seq, __ATOMIC_RELAXED) == seq)
      return r;
  }
  return OPT_LOCKED;
}

/* The optimistic get alone, for the keyspace's lock-free read path (containers/hash_int.h). */
int shmd__hash_peek(shmd_store_t *s, shmd_ptr_t h, const void *key, size_t klen, unsigned char *vbuf,
                    size_t *vlen) {
  int r = opt_lookup(s, h, key, klen, vbuf, vlen, 0);
  return r == OPT_FOUND ? 1 : r == OPT_ABSENT ? 0 : -1;
}

/* Enters, does this operation's share of the rehash, and finds the key. `write`: the caller may
 * change the entry it finds (get_ref: the keyspace writes through the reference). */
static int lookup(shmd_store_t *s, shmd_ptr_t h, const void *key, size_t klen, hctx_t *c,
                  hfound_t *f, int write) {
  if (key == NULL && klen)
    return SHMD_EINVAL;
  int rc = enter_mode(s, h, c, write);
  if (rc)
    return rc;
  if (klen > SHMD_HASH_LEN_MAX)
    return leave(c, SHMD_ENOTFOUND);
  if (rehashing(c))
    write_begin(c); /* the rehash step below moves a bucket */
  if ((rc = rehash_buckets(c, REHASH_PER_OP, 0, NULL)))
    return leave(c, rc);
  rc = find(c, key, klen, hash_key(key, klen, c->seed), f);
  if (rc == 0)
    rc = SHMD_ENOTFOUND;
  if (rc < 0)
    return leave(c, rc);
  return 0;
}

int shmd_hash_get(shmd_store_t *s, shmd_ptr_t h, const void *key, size_t key_len, void *buf,
                  size_t buf_len, size_t *val_len) {
  if (buf == NULL && buf_len)
    return SHMD_EINVAL;
  /* The value goes through a bounce buffer, so that buf is only written with validated bytes. */
  unsigned char bounce[SHMD_HASH_INLINE_MAX + 64];
  size_t on = 0;
  int r = opt_lookup(s, h, key, key_len, bounce, &on, 1);
  if (r == OPT_ABSENT)
    return SHMD_ENOTFOUND;
  if (r == OPT_FOUND) {
    size_t copy = on < buf_len ? on : buf_len;
    if (copy <= 64)
      copy_small(buf, bounce, copy);
    else
      memcpy(buf, bounce, copy);
    if (val_len)
      *val_len = on;
    return on > buf_len ? SHMD_ERANGE : 0;
  }
  hctx_t c;
  hfound_t f;
  int rc = lookup(s, h, key, key_len, &c, &f, 0);
  if (rc)
    return rc;
  size_t n = word_len(f.e->val_word);
  const void *v = ent_val(&c, f.e);
  if (v == NULL)
    return leave(&c, SHMD_CORRUPT("hash: value pointer into no segment"));
  size_t copy = n < buf_len ? n : buf_len;
  if (copy)
    memcpy(buf, v, copy);
  if (val_len)
    *val_len = n;
  return leave(&c, n > buf_len ? SHMD_ERANGE : 0);
}

int shmd_hash_get_alloc(shmd_store_t *s, shmd_ptr_t h, const void *key, size_t key_len, void **val,
                        size_t *val_len) {
  if (val == NULL)
    return SHMD_EINVAL;
  hctx_t c;
  hfound_t f;
  int rc = lookup(s, h, key, key_len, &c, &f, 0);
  if (rc)
    return rc;
  size_t n = word_len(f.e->val_word);
  const void *v = ent_val(&c, f.e);
  if (v == NULL)
    return leave(&c, SHMD_CORRUPT("hash: value pointer into no segment"));
  unsigned char *copy = malloc(n + 1);
  if (copy == NULL)
    return leave(&c, SHMD_ENOMEM);
  memcpy(copy, v, n);
  copy[n] = '\0';
  *val = copy;
  if (val_len)
    *val_len = n;
  return leave(&c, 0);
}

int shmd_hash_contains(shmd_store_t *s, shmd_ptr_t h, const void *key, size_t key_len) {
  int r = opt_lookup(s, h, key, key_len, NULL, NULL, 1);
  if (r != OPT_LOCKED)
    return r;
  hctx_t c;
  hfound_t f;
  int rc = lookup(s, h, key, key_len, &c, &f, 0);
  if (rc == SHMD_ENOTFOUND)
    return 0;
  if (rc)
    return rc;
  rc = leave(&c, 0);
  return rc ? rc : 1;
}

int shmd_hash_get_ref(shmd_store_t *s, shmd_ptr_t h, const void *key, size_t key_len,
                      shmd_hash_ref_t *ref) {
  if (s == NULL || ref == NULL || shmd_tx_depth(s) == 0)
    return SHMD_EINVAL;
  hctx_t c;
  hfound_t f;
  int rc = lookup(s, h, key, key_len, &c, &f, 1);
  if (rc)
    return rc;
  shmd_hash_ref_t r;
  fill_ref(&c, f.e, f.ep, &r);
  if (r.key == NULL || r.val == NULL)
    return leave(&c, SHMD_CORRUPT("hash: key or value pointer into no segment"));
  *ref = r;
  return leave(&c, 0);
}

int shmd_hash_del(shmd_store_t *s, shmd_ptr_t h, const void *key, size_t key_len) {
  if (key == NULL && key_len)
    return SHMD_EINVAL;
  hctx_t c;
  int rc = enter(s, h, &c);
  if (rc)
    return rc;
  if ((rc = need_room(&c, 16, 1, 4)) || (rc = rehash_buckets(&c, REHASH_PER_OP, 16, NULL)))
    return leave(&c, rc);
  hfound_t f;
  rc = find(&c, key, key_len, hash_key(key, key_len, c.seed), &f);
  if (rc <= 0)
    return leave(&c, rc == 0 ? SHMD_ENOTFOUND : rc);
  c.dirty = 1;
  if ((rc = shmd_tx_log(c.tx, f.link_p, 8)) || (rc = log_hdr(&c, OFF_COUNT)))
    return leave(&c, rc);
  *f.link = f.e->next;
  c.hd->count--;
  SHMD_CRASH_POINT("hash.delete.unlinked");
  if ((rc = free_entry(&c, f.e, f.ep, 1, 1, 1)))
    return leave(&c, rc);
  c.dirty = 0;
  return leave(&c, shrink_if_needed(&c));
}

int shmd_hash_len(shmd_store_t *s, shmd_ptr_t h, uint64_t *len) {
  if (len == NULL)
    return SHMD_EINVAL;
  hctx_t c;
  int rc = enter_ro(s, h, &c);
  if (rc)
    return rc;
  *len = c.hd->count;
  return leave(&c, 0);
}

int shmd_hash_stats(shmd_store_t *s, shmd_ptr_t h, shmd_hash_stats_t *st) {
  if (st == NULL)
    return SHMD_EINVAL;
  hctx_t c;
  int rc = enter_ro(s, h, &c);
  if (rc)
    return rc;
  memset(st, 0, sizeof *st);
  st->count = c.hd->count;
  st->buckets[0] = c.t[0] ? c.mask[0] + 1 : 0;
  st->buckets[1] = c.t[1] ? c.mask[1] + 1 : 0;
  st->rehashing = rehashing(&c);
  st->rehash_idx = c.hd->rehash_idx;
  st->seed = c.seed;
  return leave(&c, 0);
}

/* ---------------------------------------------------------------------------------------------- */
/* SCAN, the safe iterator and foreach */

/* An entry handed to a scan callback: key, value and the stored hash. */
typedef int (*scan_cb)(hctx_t *c, hent_t *e, shmd_ptr_t ep, const void *key, const void *val,
                       void *arg);

/* Walks one chain, bounded by *budget steps, calling cb for entries whose reversed hash is at or
 * after `from` (all when from is 0). Pointers are checked: a scan may run over a damaged store. */
static int scan_chain(hctx_t *c, shmd_ptr_t head, uint64_t from, uint64_t *budget, scan_cb cb,
                      void *arg) {
  for (shmd_ptr_t p = head; !shmd_ptr_is_null(p);) {
    if ((*budget)-- == 0)
      return SHMD_CORRUPT("hash: more entries than the count (scan)");
    void *a;
    if ((p.v & 7) != 0 || shmd_resolve_checked(c->s, p, ENT_HDR, &a))
      return SHMD_CORRUPT("hash: entry pointer outside the store (scan)");
    hent_t *e = a;
    uint32_t kw = e->key_word, vw = e->val_word;
    if (shmd_resolve_checked(c->s, p, ent_size(kw, vw), &a))
      return SHMD_CORRUPT("hash: entry extends outside the store (scan)");
    const void *k = e->data, *v = (unsigned char *)e + val_off(kw);
    shmd_ptr_t q;
    void *b;
    if (word_ool(kw)) {
      memcpy(&q, e->data, sizeof q);
      if (shmd_resolve_checked(c->s, q, word_len(kw), &b))
        return SHMD_CORRUPT("hash: key block outside the store (scan)");
      k = b;
    }
    if (word_ool(vw)) {
      memcpy(&q, v, sizeof q);
      if (shmd_resolve_checked(c->s, q, word_len(vw), &b))
        return SHMD_CORRUPT("hash: value block outside the store (scan)");
      v = b;
    }
    shmd_ptr_t next = e->next;
    if (from == 0 || rev64(e->hash) >= from) {
      int rc = cb(c, e, p, k, v, arg);
      if (rc)
        return rc;
    }
    p = next;
  }
  return 0;
}

/*
 * Visits one SCAN interval starting at *cursor (the keys whose hash agrees with the cursor on the
 * smaller table's mask, minus those before the exact position) and advances *cursor; 0 after the
 * last interval. *buckets counts the buckets read. On a failure or a non-zero cb, *cursor is left.
 */
static int scan_interval(hctx_t *c, uint64_t *cursor, uint64_t *buckets, scan_cb cb, void *arg) {
  if (c->t[0] == NULL) {
    *cursor = 0;
    return 0;
  }
  uint64_t R = rev64(*cursor);
  uint64_t ms = c->mask[0];
  if (rehashing(c) && c->mask[1] < ms)
    ms = c->mask[1];
  unsigned k = (unsigned)__builtin_popcountll(ms);
  uint64_t span_mask = ~UINT64_C(0) >> k; /* low 64 - k bits */
  uint64_t S = R & ~span_mask, E = S + span_mask + 1; /* E wraps to 0 after the last interval */
  uint64_t from = S == R ? 0 : R;
  uint64_t b = *cursor & ms;
  uint64_t budget = c->hd->count + 1;
  int rc;
  hhdr_t *hd = c->hd;
  if (!rehashing(c)) {
    (*buckets)++;
    if ((rc = scan_chain(c, c->t[0][b], from, &budget, cb, arg)))
      return rc;
  } else {
    int small = c->mask[1] < c->mask[0]; /* the table with mask ms */
    int big = !small;
    uint64_t nsmall = ms + 1;
    int small_live = small ? t1_live(c, b) : 1; /* table-0 buckets are always readable */
    if (small_live) {
      (*buckets)++;
      if ((rc = scan_chain(c, c->t[small][b], from, &budget, cb, arg)))
        return rc;
    }
    for (uint64_t j = b; j <= c->mask[big]; j += nsmall) {
      if (big == 1 && !t1_live(c, j))
        continue;
      if (big == 0 && j < hd->rehash_idx)
        continue; /* moved: empty */
      (*buckets)++;
      if ((rc = scan_chain(c, c->t[big][j], from, &budget, cb, arg)))
        return rc;
    }
  }
  *cursor = rev64(E);
  return 0;
}

typedef struct scan_user_s {
  shmd_hash_visit_fn fn;
  void *arg;
  size_t emitted;
} scan_user_t;

static int scan_user_cb(hctx_t *c, hent_t *e, shmd_ptr_t ep, const void *key, const void *val,
                        void *arg) {
  (void)ep;
  (void)c;
  scan_user_t *u = arg;
  u->emitted++;
  return u->fn(key, word_len(e->key_word), val, word_len(e->val_word), u->arg);
}

int shmd_hash_scan(shmd_store_t *s, shmd_ptr_t h, uint64_t cursor, size_t count,
                   shmd_hash_visit_fn fn, void *arg, uint64_t *next_cursor) {
  if (fn == NULL || next_cursor == NULL)
    return SHMD_EINVAL;
  if (count == 0)
    count = 1;
  hctx_t c;
  int rc = enter_ro(s, h, &c);
  if (rc)
    return rc;
  scan_user_t u = {fn, arg, 0};
  uint64_t buckets = 0, cur = cursor;
  /* saturating: a COUNT near 2^63 must not wrap to a small bucket budget */
  uint64_t max_buckets = (uint64_t)count > UINT64_MAX / EMPTY_VISITS ? UINT64_MAX : (uint64_t)count * EMPTY_VISITS;
  do {
    if ((rc = scan_interval(&c, &cur, &buckets, scan_user_cb, &u)))
      return leave(&c, rc);
  } while (cur != 0 && u.emitted < count && buckets < max_buckets);
  *next_cursor = cur;
  return leave(&c, 0);
}

static uint64_t fingerprint(const hhdr_t *hd) {
  uint64_t words[6] = {hd->table[0].v, hd->table[1].v, hd->log2[0], hd->log2[1], hd->count,
                       hd->rehash_idx};
  return shmd_hash_bytes(words, sizeof words, 0);
}

typedef struct foreach_s {
  shmd_hash_visit_fn fn;
  void *arg;
  uint64_t fp;
} foreach_t;

static int foreach_cb(hctx_t *c, hent_t *e, shmd_ptr_t ep, const void *key, const void *val,
                      void *arg) {
  (void)ep;
  foreach_t *f = arg;
  int rc = f->fn(key, word_len(e->key_word), val, word_len(e->val_word), f->arg);
  if (rc)
    return rc;
  return fingerprint(c->hd) == f->fp ? 0 : SHMD_EBUSY;
}

int shmd_hash_foreach(shmd_store_t *s, shmd_ptr_t h, shmd_hash_visit_fn fn, void *arg) {
  if (fn == NULL)
    return SHMD_EINVAL;
  hctx_t c;
  int rc = enter_ro(s, h, &c);
  if (rc)
    return rc;
  foreach_t f = {fn, arg, fingerprint(c.hd)};
  uint64_t budget = c.hd->count + 1;
  for (int ti = 0; ti < 2 && rc == 0; ti++) {
    if (c.t[ti] == NULL)
      continue;
    for (uint64_t b = 0; b <= c.mask[ti] && rc == 0; b++) {
      if (ti == 1 ? !t1_live(&c, b) : (rehashing(&c) && b < c.hd->rehash_idx))
        continue;
      rc = scan_chain(&c, c.t[ti][b], 0, &budget, foreach_cb, &f);
    }
  }
  return leave(&c, rc);
}

struct shmd_hash_iter_s {
  shmd_store_t *s;
  shmd_ptr_t h;
  uint64_t cursor;
  int done;
  unsigned char *buf; /* records: klen u64, vlen u64, key (pad 8), value (pad 8) */
  size_t cap, len, pos;
};

#define ITER_BATCH_BYTES (64u << 10)
#define ITER_BATCH_BUCKETS 1024u

static int iter_cb(hctx_t *c, hent_t *e, shmd_ptr_t ep, const void *key, const void *val,
                   void *arg) {
  (void)ep;
  (void)c;
  shmd_hash_iter_t *it = arg;
  size_t kl = word_len(e->key_word), vl = word_len(e->val_word);
  size_t need = 16 + round8(kl) + round8(vl);
  if (it->len + need > it->cap) {
    size_t cap = it->cap ? it->cap : 4096;
    while (cap < it->len + need)
      cap *= 2;
    unsigned char *nb = realloc(it->buf, cap);
    if (nb == NULL)
      return SHMD_ENOMEM;
    it->buf = nb;
    it->cap = cap;
  }
  unsigned char *r = it->buf + it->len;
  uint64_t lens[2] = {kl, vl};
  memcpy(r, lens, 16);
  if (kl)
    memcpy(r + 16, key, kl);
  if (vl)
    memcpy(r + 16 + round8(kl), val, vl);
  it->len += need;
  return 0;
}

int shmd_hash_iter_new(shmd_store_t *s, shmd_ptr_t h, shmd_hash_iter_t **out) {
  if (out == NULL)
    return SHMD_EINVAL;
  hctx_t c;
  int rc = enter_ro(s, h, &c); /* validates the kind now rather than at the first next */
  if (rc)
    return rc;
  if ((rc = leave(&c, 0)))
    return rc;
  shmd_hash_iter_t *it = calloc(1, sizeof *it);
  if (it == NULL)
    return SHMD_ENOMEM;
  it->s = s;
  it->h = h;
  *out = it;
  return 0;
}

/* Copies the next batch of whole intervals under the lock. */
static int iter_fill(shmd_hash_iter_t *it) {
  hctx_t c;
  int rc = enter_ro(it->s, it->h, &c);
  if (rc)
    return rc;
  it->len = it->pos = 0;
  uint64_t buckets = 0;
  while (!it->done && it->len < ITER_BATCH_BYTES && buckets < ITER_BATCH_BUCKETS) {
    size_t mark = it->len;
    if ((rc = scan_interval(&c, &it->cursor, &buckets, iter_cb, it))) {
      it->len = mark; /* the interval is redone by the next fill */
      if (mark > 0 && rc == SHMD_ENOMEM)
        rc = 0; /* deliver what we have first */
      break;
    }
    if (it->cursor == 0)
      it->done = 1;
  }
  return leave(&c, rc);
}

int shmd_hash_iter_next(shmd_hash_iter_t *it, const void **key, size_t *key_len, const void **val,
                        size_t *val_len) {
  if (it == NULL)
    return SHMD_EINVAL;
  while (it->pos >= it->len) {
    if (it->done)
      return SHMD_ENOTFOUND;
    int rc = iter_fill(it);
    if (rc)
      return rc;
  }
  unsigned char *r = it->buf + it->pos;
  uint64_t lens[2];
  memcpy(lens, r, 16);
  if (key)
    *key = r + 16;
  if (key_len)
    *key_len = (size_t)lens[0];
  if (val)
    *val = r + 16 + round8((size_t)lens[0]);
  if (val_len)
    *val_len = (size_t)lens[1];
  it->pos += 16 + round8((size_t)lens[0]) + round8((size_t)lens[1]);
  return 0;
}

void shmd_hash_iter_free(shmd_hash_iter_t *it) {
  if (it == NULL)
    return;
  free(it->buf);
  free(it);
}

/* ---------------------------------------------------------------------------------------------- */
/* Maintenance */

/* Is a resize due that has not started (a shrink, or a growth an allocation failure postponed)? */
static int resize_due(const hctx_t *c) {
  if (c->t[0] == NULL || rehashing(c))
    return 0;
  uint64_t n0 = c->mask[0] + 1, count = c->hd->count;
  return count + 1 > n0 || (c->hd->log2[0] > MIN_LOG2 && count * SHRINK_FILL <= n0);
}

int shmd_hash_rehash_step(shmd_store_t *s, shmd_ptr_t h, size_t budget) {
  int nested = s != NULL && shmd_tx_depth(s) > 0;
  uint64_t left = budget;
  for (;;) {
    hctx_t c;
    int rc = enter(s, h, &c);
    if (rc)
      return rc;
    if (c.t[0] == NULL)
      return leave(&c, 0);
    /* Redis's cron: start a due shrink (or a growth an allocation failure postponed). */
    if (!rehashing(&c) && ((rc = shrink_if_needed(&c)) || (rc = grow_if_needed(&c))))
      return leave(&c, rc);
    if (!rehashing(&c) || left == 0)
      return leave(&c, rehashing(&c));
    uint64_t chunk = nested || left < 64 ? left : 64, moved = 0;
    if ((rc = rehash_buckets(&c, chunk, 0, &moved)))
      return leave(&c, rc);
    int more = rehashing(&c) || resize_due(&c);
    if ((rc = leave(&c, 0)))
      return rc;
    left = left > chunk ? left - chunk : 0;
    if (!more || nested || left == 0 || moved == 0)
      return more;
  }
}

/* ---------------------------------------------------------------------------------------------- */
/* The invariant checker */

typedef struct check_s {
  uint64_t seen;
} check_t;

static int check_block(hctx_t *c, shmd_ptr_t p, size_t len, const char *what) {
  void *a;
  if (shmd_resolve_checked(c->s, p, len ? len : 1, &a) || shmd_usable_size(c->s, p) < len)
    return SHMD_CORRUPT(what);
  return 0;
}

static int check_cb(hctx_t *c, hent_t *e, shmd_ptr_t ep, const void *key, const void *val,
                    void *arg) {
  (void)val;
  check_t *k = arg;
  k->seen++;
  int rc;
  if ((rc = check_block(c, ep, ent_size(e->key_word, e->val_word), "hash: entry not allocated")))
    return rc;
  shmd_ptr_t q;
  if (word_ool(e->key_word)) {
    memcpy(&q, e->data, sizeof q);
    if ((rc = check_block(c, q, word_len(e->key_word), "hash: key block not allocated")))
      return rc;
  }
  if (word_ool(e->val_word)) {
    memcpy(&q, (unsigned char *)e + val_off(e->key_word), sizeof q);
    if ((rc = check_block(c, q, word_len(e->val_word), "hash: value block not allocated")))
      return rc;
  }
  if (hash_key(key, word_len(e->key_word), c->seed) != e->hash)
    return SHMD_CORRUPT("hash: stored hash does not match the key");
  return 0;
}

typedef struct check_bucket_s {
  check_t *k;
  int ti;
  uint64_t bi;
} check_bucket_t;

static int check_bucket_cb(hctx_t *c, hent_t *e, shmd_ptr_t ep, const void *key, const void *val,
                           void *arg) {
  check_bucket_t *cb = arg;
  int ti;
  uint64_t bi;
  locate(c, e->hash, &ti, &bi);
  if (ti != cb->ti || bi != cb->bi)
    return SHMD_CORRUPT("hash: entry in the wrong bucket");
  return check_cb(c, e, ep, key, val, cb->k);
}

static int hash_check_body(shmd_store_t *s, shmd_ptr_t h);

/* The public checker: its lock waits are bounded (segments/lockwait.h). */
int shmd_hash_check(shmd_store_t *s, shmd_ptr_t h) {
  uint64_t w = shmd__check_wait_begin(s);
  int rc = hash_check_body(s, h);
  shmd__check_wait_end(s, w);
  return rc;
}

static int hash_check_body(shmd_store_t *s, shmd_ptr_t h) {
  hctx_t c;
  int rc = enter_ro(s, h, &c);
  if (rc)
    return rc;
  hhdr_t *hd = c.hd;
  if (!shmd_ptr_is_null(hd->table[0]) &&
      (rc = check_block(&c, hd->table[0], (size_t)8 << hd->log2[0], "hash: table 0 not allocated")))
    return leave(&c, rc);
  if (!shmd_ptr_is_null(hd->table[1]) &&
      (rc = check_block(&c, hd->table[1], (size_t)8 << hd->log2[1], "hash: table 1 not allocated")))
    return leave(&c, rc);
  if ((rc = check_block(&c, h, sizeof(hhdr_t), "hash: header not allocated")))
    return leave(&c, rc);
  check_t k = {0};
  uint64_t budget = hd->count + 1;
  for (int ti = 0; ti < 2 && rc == 0; ti++) {
    if (c.t[ti] == NULL)
      continue;
    for (uint64_t b = 0; b <= c.mask[ti] && rc == 0; b++) {
      if (ti == 1 && !t1_live(&c, b))
        continue;
      if (ti == 0 && rehashing(&c) && b < hd->rehash_idx) {
        if (!shmd_ptr_is_null(c.t[0][b]))
          rc = SHMD_CORRUPT("hash: moved bucket of table 0 not empty");
        continue;
      }
      check_bucket_t cb = {&k, ti, b};
      rc = scan_chain(&c, c.t[ti][b], 0, &budget, check_bucket_cb, &cb);
    }
  }
  if (rc == 0 && k.seen != hd->count)
    rc = SHMD_CORRUPT("hash: count does not match the entries");
  return leave(&c, rc);
}
