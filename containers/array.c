/* SPDX-License-Identifier: MIT */
/*
 * Arrays: growable vectors of fixed-size elements in shared memory (include/shmdict/array.h).
 *
 * Layout. The header (64 bytes) holds the kind word, the array's lock, the element size, the
 * length, the capacity and a pointer to the element buffer; the buffer is one allocation of
 * capacity * elem_bytes bytes (null while the capacity is 0).
 *
 * Crash safety. Every operation runs in a transaction holding the array's lock. Changes to the
 * header words and to elements that are, or were at the start of the transaction, inside the
 * array are undo-logged before the store. Two cases avoid logging element bytes:
 *   - growth and the "copy" path of insert/remove build a new buffer (fresh memory needs no log),
 *     then switch the header's data and capacity words (logged) and free the old buffer at commit;
 *   - pop and truncate change only the length word.
 * Insert and remove in the middle move the tail of the array by one element. That move is logged
 * when its bytes take at most half the room left in the transaction's log (and at most 8 KiB);
 * otherwise (a long tail, or a caller's transaction that has already used much of its log) the
 * operation writes the result into a new buffer instead, which costs an allocation and a copy of
 * the whole array but only three logged words, so its size is unbounded.
 *
 * Locks: the array's own lock (shmd_lock_t in the header) protects the header and the buffer. It is
 * a container lock in the store's order (store -> keyspace stripes -> containers -> allocator).
 */
#include "shmdict/array.h"

#include <stddef.h>
#include <string.h>

#include "segments/crash.h"
#include "shmdict/alloc.h"
#include "shmdict/error.h"
#include "segments/lockwait.h"
#include "cont_int.h"

/* ---------------------------------------------------------------------------------------------- */
/* Layout */

#define ARRAY_MAGIC SHMD__KIND(0x59525241) /* "ARRY" (containers/cont_int.h) */

/* Limit on the buffer size: no segment is larger than 2^48 and this leaves room for arithmetic. */
#define ARRAY_BYTES_MAX (UINT64_C(1) << 47)

typedef struct array_hdr_s {
  uint64_t magic;
  shmd_lock_t lock;
  uint64_t elem_bytes;
  uint64_t length;   /* elements in use */
  uint64_t capacity; /* elements the buffer holds; data and capacity are adjacent (one log) */
  shmd_ptr_t data;
  uint64_t reserved[2];
} array_hdr_t;

_Static_assert(sizeof(array_hdr_t) == 64, "array header is 64 bytes");
_Static_assert(offsetof(array_hdr_t, data) == offsetof(array_hdr_t, capacity) + 8,
               "capacity and data are adjacent");

/* An array entered under its lock. */
typedef struct array_ctx_s {
  shmd_store_t *s;
  shmd_tx_t *tx;
  shmd_ptr_t hp;
  array_hdr_t *h;
  unsigned char *data; /* resolved buffer (NULL when capacity is 0) */
  size_t es;           /* element size */
  uint64_t len, cap;
} array_ctx_t;

/* ---------------------------------------------------------------------------------------------- */
/* Entering and leaving */

/* Validates the header words of a locked array and resolves its buffer. */
static int array_validate(array_ctx_t *c) {
  array_hdr_t *h = c->h;
  uint64_t es = h->elem_bytes, len = h->length, cap = h->capacity;
  if (es == 0 || es > SHMD_ARRAY_ELEM_MAX || len > cap || cap > ARRAY_BYTES_MAX / es)
    return SHMD_ECORRUPT;
  c->es = (size_t)es;
  c->len = len;
  c->cap = cap;
  c->data = NULL;
  if (cap == 0)
    return shmd_ptr_is_null(h->data) ? 0 : SHMD_ECORRUPT;
  void *d;
  if (shmd_resolve_checked(c->s, h->data, (size_t)(cap * es), &d))
    return SHMD_ECORRUPT;
  c->data = d;
  return 0;
}

/* Checks the kind word, begins (or joins) a transaction, takes the array's lock and validates the
 * header (containers/cont_int.h). The caller ends with shmd_tx_end(c->tx, rc). */
static int array_enter(shmd_store_t *s, shmd_ptr_t a, array_ctx_t *c) {
  void *addr;
  c->s = s;
  c->hp = a;
  int rc = shmd__cont_enter(s, a, sizeof(array_hdr_t), offsetof(array_hdr_t, lock), ARRAY_MAGIC,
                            "array: header pointer outside the store", "array: bad kind word", &addr, &c->tx);
  if (rc)
    return rc;
  c->h = addr;
  if ((rc = array_validate(c)))
    return shmd_tx_end(c->tx, rc); /* nothing changed: releases the lock (or leaves the caller's tx as is) */
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Buffer changes */

static int set_len(array_ctx_t *c, uint64_t len) {
  int rc = shmd_tx_set64(c->tx, &c->h->length, len);
  if (rc == 0) {
    c->len = len;
  }
  return rc;
}

/* Logs bytes [off, off + n) of the buffer before they are changed. */
static int log_bytes(array_ctx_t *c, uint64_t off, uint64_t n) {
  if (n == 0)
    return 0;
  return shmd_tx_log(c->tx, shmd_ptr_add(c->h->data, off), (size_t)n);
}

/* Undo-log words a change of bytes [off, off + n) needs, plus slack for the header words. */
static size_t log_words_for(uint64_t off, uint64_t n) {
  uint64_t first = off & ~UINT64_C(7), last = (off + n + 7) & ~UINT64_C(7);
  return (size_t)((last - first) / 8) + 8;
}

/* Whether a move of bytes [off, off + n) should be logged: only when it takes at most half of the
 * room left (so a caller's transaction keeps room for its other steps) and at most
 * MOVE_LOG_MAX_WORDS (beyond that, logging costs about as much as copying into a new buffer). */
#define MOVE_LOG_MAX_WORDS 1024u

static int log_room_for(array_ctx_t *c, uint64_t off, uint64_t n) {
  size_t words, allocs, frees;
  shmd_tx_room(c->tx, &words, &allocs, &frees);
  size_t need = log_words_for(off, n);
  return need <= words / 2 && need <= MOVE_LOG_MAX_WORDS;
}

/* Allocates a new buffer of `cap` elements (fresh memory, needs no log); *out gets the address. */
static int new_buffer(array_ctx_t *c, uint64_t cap, shmd_ptr_t *p, unsigned char **out) {
  if (cap > ARRAY_BYTES_MAX / c->es)
    return SHMD_ETOOBIG;
  int rc = shmd_tx_alloc(c->tx, (size_t)(cap * c->es), p);
  if (rc)
    return rc;
  *out = shmd_resolve(c->s, *p);
  return 0;
}

/* Switches the header to buffer `p` of `cap` elements and frees the old buffer at commit. */
static int switch_buffer(array_ctx_t *c, shmd_ptr_t p, unsigned char *addr, uint64_t cap) {
  shmd_ptr_t old = c->h->data;
  int rc = shmd_tx_reserve(c->tx, 2, 0, 1);
  if (rc || (rc = shmd_tx_log(c->tx, shmd_ptr_add(c->hp, offsetof(array_hdr_t, capacity)), 16)))
    return rc;
  SHMD_CRASH_POINT("array.grow.switch");
  c->h->capacity = cap;
  c->h->data = p;
  c->cap = cap;
  c->data = addr;
  if (!shmd_ptr_is_null(old) && (rc = shmd_tx_free(c->tx, old)))
    return rc; /* cannot happen: room was checked */
  return 0;
}

/* Moves the elements into a new buffer of `cap` elements (cap >= len). */
static int regrow(array_ctx_t *c, uint64_t cap) {
  shmd_ptr_t p = shmd_ptr_null();
  unsigned char *d = NULL;
  int rc;
  if (cap > 0) {
    if ((rc = new_buffer(c, cap, &p, &d)))
      return rc;
    if (c->len)
      memcpy(d, c->data, (size_t)(c->len * c->es));
    SHMD_CRASH_POINT("array.grow.copied");
  }
  return switch_buffer(c, p, d, cap);
}

/* Capacity after growth to room for `need` elements: doubling, at least 4 and at least `need`,
 * at most what ARRAY_BYTES_MAX allows (a larger `need` makes new_buffer fail with ETOOBIG). */
static uint64_t grown_capacity(const array_ctx_t *c, uint64_t need) {
  uint64_t max = ARRAY_BYTES_MAX / c->es;
  uint64_t cap = c->cap * 2 < 4 ? 4 : c->cap * 2;
  if (cap < need)
    cap = need;
  if (cap > max)
    cap = need > max ? need : max;
  return cap;
}

/*
 * Inserts `elem` before index `idx` (idx <= len). Three ways, cheapest first:
 *   - room in the buffer and the moved tail fits the log: log the tail, memmove, write;
 *   - full buffer: a new, doubled buffer assembled as prefix + elem + tail (no element log);
 *   - room in the buffer but the tail is too long to log: the same, at the same capacity.
 */
static int insert_at(array_ctx_t *c, uint64_t idx, const void *elem) {
  size_t es = c->es;
  uint64_t len = c->len;
  int rc;
  if (len < c->cap) {
    uint64_t off = idx * es, n = (len + 1 - idx) * es; /* bytes [off, off + n) change */
    if (log_room_for(c, off, n) && (rc = log_bytes(c, off, n)) != SHMD_ETXFULL) {
      if (rc)
        return rc;
      if (idx < len)
        memmove(c->data + off + es, c->data + off, (size_t)(n - es));
      SHMD_CRASH_POINT("array.move");
      memcpy(c->data + off, elem, es);
      return set_len(c, len + 1);
    }
  }
  uint64_t cap = len < c->cap ? c->cap : grown_capacity(c, len + 1);
  shmd_ptr_t p;
  unsigned char *d;
  if ((rc = new_buffer(c, cap, &p, &d)))
    return rc;
  if (idx)
    memcpy(d, c->data, (size_t)(idx * es));
  memcpy(d + idx * es, elem, es);
  if (idx < len)
    memcpy(d + (idx + 1) * es, c->data + idx * es, (size_t)((len - idx) * es));
  SHMD_CRASH_POINT("array.grow.copied");
  if ((rc = switch_buffer(c, p, d, cap)))
    return rc;
  return set_len(c, len + 1);
}

/* Removes index `idx` (idx < len), moving the tail down; see insert_at for the two ways. */
static int remove_at(array_ctx_t *c, uint64_t idx) {
  size_t es = c->es;
  uint64_t len = c->len;
  uint64_t off = idx * es, n = (len - 1 - idx) * es; /* bytes [off, off + n) change */
  int rc;
  if (n == 0)
    return set_len(c, len - 1);
  if (log_room_for(c, off, n) && (rc = log_bytes(c, off, n)) != SHMD_ETXFULL) {
    if (rc)
      return rc;
    memmove(c->data + off, c->data + off + es, (size_t)n);
    SHMD_CRASH_POINT("array.move");
    return set_len(c, len - 1);
  }
  shmd_ptr_t p;
  unsigned char *d;
  if ((rc = new_buffer(c, c->cap, &p, &d)))
    return rc;
  memcpy(d, c->data, (size_t)off);
  memcpy(d + off, c->data + off + es, (size_t)n);
  if ((rc = switch_buffer(c, p, d, c->cap)))
    return rc;
  return set_len(c, len - 1);
}

/* ---------------------------------------------------------------------------------------------- */
/* Public API */

int shmd_array_create(shmd_store_t *s, size_t elem_bytes, uint64_t capacity, shmd_ptr_t *out) {
  if (elem_bytes == 0 || elem_bytes > SHMD_ARRAY_ELEM_MAX)
    return SHMD_EINVAL;
  if (capacity > ARRAY_BYTES_MAX / elem_bytes)
    return SHMD_ETOOBIG;
  shmd_tx_t *tx;
  int rc = shmd_tx_begin(s, &tx);
  if (rc)
    return rc;
  shmd_ptr_t hp, dp = shmd_ptr_null();
  if ((rc = shmd_tx_calloc(tx, sizeof(array_hdr_t), &hp)))
    goto fail;
  if (capacity && (rc = shmd_tx_alloc(tx, (size_t)(capacity * elem_bytes), &dp)))
    goto fail;
  array_hdr_t *h = shmd_resolve(s, hp);
  shmd_lock_init(&h->lock);
  h->elem_bytes = elem_bytes;
  h->length = 0;
  h->capacity = capacity;
  h->data = dp;
  __atomic_store_n(&h->magic, ARRAY_MAGIC, __ATOMIC_RELEASE);
  if ((rc = shmd_tx_commit(tx)))
    return rc;
  *out = hp;
  return 0;
fail:
  shmd_tx_abort(tx);
  return rc;
}

int shmd_array_destroy(shmd_store_t *s, shmd_ptr_t a) {
  array_ctx_t c;
  int rc = array_enter(s, a, &c);
  if (rc)
    return rc;
  if ((rc = shmd_tx_reserve(c.tx, 1, 0, 2)) || (rc = shmd_tx_set64(c.tx, &c.h->magic, 0)))
    return shmd_tx_end(c.tx, rc);
  if (!shmd_ptr_is_null(c.h->data) && (rc = shmd_tx_free(c.tx, c.h->data)))
    return shmd_tx_end(c.tx, rc);
  rc = shmd_tx_free(c.tx, a);
  return shmd_tx_end(c.tx, rc);
}

int shmd_array_len(shmd_store_t *s, shmd_ptr_t a, uint64_t *len) {
  array_ctx_t c;
  int rc = array_enter(s, a, &c);
  if (rc)
    return rc;
  *len = c.len;
  return shmd_tx_end(c.tx, 0);
}

int shmd_array_capacity(shmd_store_t *s, shmd_ptr_t a, uint64_t *capacity) {
  array_ctx_t c;
  int rc = array_enter(s, a, &c);
  if (rc)
    return rc;
  *capacity = c.cap;
  return shmd_tx_end(c.tx, 0);
}

int shmd_array_elem_size(shmd_store_t *s, shmd_ptr_t a, size_t *elem_bytes) {
  array_ctx_t c;
  int rc = array_enter(s, a, &c);
  if (rc)
    return rc;
  *elem_bytes = c.es;
  return shmd_tx_end(c.tx, 0);
}

int shmd_array_push(shmd_store_t *s, shmd_ptr_t a, const void *elem) {
  array_ctx_t c;
  int rc = array_enter(s, a, &c);
  if (rc)
    return rc;
  return shmd_tx_end(c.tx, insert_at(&c, c.len, elem));
}

int shmd_array_pop(shmd_store_t *s, shmd_ptr_t a, void *out) {
  array_ctx_t c;
  int rc = array_enter(s, a, &c);
  if (rc)
    return rc;
  if (c.len == 0)
    return shmd_tx_end(c.tx, SHMD_ENOTFOUND);
  if ((rc = set_len(&c, c.len - 1)) == 0 && out != NULL)
    memcpy(out, c.data + c.len * c.es, c.es);
  return shmd_tx_end(c.tx, rc);
}

int shmd_array_get(shmd_store_t *s, shmd_ptr_t a, uint64_t index, void *out) {
  return shmd_array_get_range(s, a, index, 1, out);
}

int shmd_array_get_range(shmd_store_t *s, shmd_ptr_t a, uint64_t index, uint64_t count,
                         void *out) {
  array_ctx_t c;
  int rc = array_enter(s, a, &c);
  if (rc)
    return rc;
  if (index > c.len || count > c.len - index)
    return shmd_tx_end(c.tx, SHMD_ERANGE);
  if (count)
    memcpy(out, c.data + index * c.es, (size_t)(count * c.es));
  return shmd_tx_end(c.tx, 0);
}

int shmd_array_set(shmd_store_t *s, shmd_ptr_t a, uint64_t index, const void *elem) {
  array_ctx_t c;
  int rc = array_enter(s, a, &c);
  if (rc)
    return rc;
  if (index >= c.len)
    return shmd_tx_end(c.tx, SHMD_ERANGE);
  if ((rc = log_bytes(&c, index * c.es, c.es)) == 0) {
    memcpy(c.data + index * c.es, elem, c.es);
  }
  return shmd_tx_end(c.tx, rc);
}

int shmd_array_insert(shmd_store_t *s, shmd_ptr_t a, uint64_t index, const void *elem) {
  array_ctx_t c;
  int rc = array_enter(s, a, &c);
  if (rc)
    return rc;
  if (index > c.len)
    return shmd_tx_end(c.tx, SHMD_ERANGE);
  return shmd_tx_end(c.tx, insert_at(&c, index, elem));
}

int shmd_array_remove(shmd_store_t *s, shmd_ptr_t a, uint64_t index, void *out) {
  array_ctx_t c;
  int rc = array_enter(s, a, &c);
  if (rc)
    return rc;
  if (index >= c.len)
    return shmd_tx_end(c.tx, SHMD_ERANGE);
  if (out != NULL)
    memcpy(out, c.data + index * c.es, c.es);
  return shmd_tx_end(c.tx, remove_at(&c, index));
}

int shmd_array_reserve(shmd_store_t *s, shmd_ptr_t a, uint64_t capacity) {
  array_ctx_t c;
  int rc = array_enter(s, a, &c);
  if (rc)
    return rc;
  if (capacity <= c.cap)
    return shmd_tx_end(c.tx, 0);
  if (capacity > ARRAY_BYTES_MAX / c.es)
    return shmd_tx_end(c.tx, SHMD_ETOOBIG);
  return shmd_tx_end(c.tx, regrow(&c, capacity));
}

int shmd_array_truncate(shmd_store_t *s, shmd_ptr_t a, uint64_t len) {
  array_ctx_t c;
  int rc = array_enter(s, a, &c);
  if (rc)
    return rc;
  if (len > c.len)
    return shmd_tx_end(c.tx, SHMD_ERANGE);
  if (len == c.len)
    return shmd_tx_end(c.tx, 0);
  return shmd_tx_end(c.tx, set_len(&c, len));
}

int shmd_array_shrink_to_fit(shmd_store_t *s, shmd_ptr_t a) {
  array_ctx_t c;
  int rc = array_enter(s, a, &c);
  if (rc)
    return rc;
  if (c.cap == c.len)
    return shmd_tx_end(c.tx, 0);
  return shmd_tx_end(c.tx, regrow(&c, c.len));
}

static int array_check_body(shmd_store_t *s, shmd_ptr_t a);

/* The public checker: its lock waits are bounded (segments/lockwait.h). */
int shmd_array_check(shmd_store_t *s, shmd_ptr_t a) {
  uint64_t w = shmd__check_wait_begin(s);
  int rc = array_check_body(s, a);
  shmd__check_wait_end(s, w);
  return rc;
}

static int array_check_body(shmd_store_t *s, shmd_ptr_t a) {
  array_ctx_t c;
  int rc = array_enter(s, a, &c);
  if (rc)
    return rc;
  if (c.cap > 0) {
    size_t usable = shmd_usable_size(s, c.h->data);
    if (usable < c.cap * c.es)
      rc = SHMD_ECORRUPT;
  }
  return shmd_tx_end(c.tx, rc);
}
