/* SPDX-License-Identifier: MIT */
/*
 * Slab caches: small objects (up to SHMD_SMALL_MAX bytes) in 64 KiB slabs, one size class per slab.
 *
 * Design
 * ------
 * Size classes are 16-byte steps up to 128 bytes, then eight per doubling (128, 144, 160, ...,
 * 256, 288, ...), so no class is more than 12.5% larger than the one below it: a request wastes at
 * most 12.5% of its size above 128 bytes and at most 15 bytes below (16-byte alignment).
 *
 * A slab is a buddy block of 16 pages, aligned to 64 KiB, so free() finds its header by masking
 * the offset. The header holds the class, a free list of returned objects (linked through their
 * first 4 bytes by slab offset), a bump pointer for objects never used yet (a new slab is not
 * touched beyond its header), and list links. Each class keeps, per segment, a list of partial
 * slabs; full slabs are on no list. An empty slab may stay on the list only as its head (the next
 * allocation takes it); any other empty slab goes back to the buddy allocator at once.
 *
 * The caller holds the class lock of (segment, class) inside an allocator step; taking a slab from
 * the buddy allocator additionally takes the segment's buddy lock (class -> buddy order).
 */
#include "alloc_int.h"
#include "segments/crash.h"
#include "segments/err.h"

/* clang-format off */
const uint32_t shmd__class_bytes[SHMD__NCLASSES] = {
  16, 32, 48, 64, 80, 96, 112, 128,
  144, 160, 176, 192, 208, 224, 240, 256,
  288, 320, 352, 384, 416, 448, 480, 512,
  576, 640, 704, 768, 832, 896, 960, 1024,
  1152, 1280, 1408, 1536, 1664, 1792, 1920, 2048,
  2304, 2560, 2816, 3072, 3328, 3584, 3840, 4096,
  4608, 5120, 5632, 6144, 6656, 7168, 7680, 8192,
};
/* clang-format on */

unsigned char shmd__class_of_granule[SHMD_SMALL_MAX / 16 + 1];
uint64_t shmd__class_recip[SHMD__NCLASSES];
static int class_table_ready;

static void class_table_init(void) {
  uint32_t c = 0;
  for (uint32_t g = 0; g <= SHMD_SMALL_MAX / 16; g++) {
    uint32_t bytes = g * 16;
    while (c < SHMD__NCLASSES - 1 && shmd__class_bytes[c] < bytes)
      c++;
    shmd__class_of_granule[g] = (unsigned char)c;
  }
  /* floor(2^32 / size) + 1: exact division for x < 2^16, since x * error < 2^-16 while a
   * fractional part of x / size is never above 1 - 1/8192. */
  for (uint32_t k = 0; k < SHMD__NCLASSES; k++)
    shmd__class_recip[k] = (UINT64_C(1) << 32) / shmd__class_bytes[k] + 1;
  __atomic_store_n(&class_table_ready, 1, __ATOMIC_RELEASE);
}

/* The tables are ready before any store can be opened (the fast paths read them directly). */
__attribute__((constructor)) static void class_table_ctor(void) { class_table_init(); }

uint32_t shmd__size_class(size_t size) {
  if (__builtin_expect(!__atomic_load_n(&class_table_ready, __ATOMIC_ACQUIRE), 0))
    class_table_init(); /* idempotent: racing initialisers write the same bytes */
  return shmd__class_of_granule[(size + 15) >> 4];
}

static inline struct shmd__slab *slab_at(struct shmd__seg_hdr *h, uint64_t off) {
  return (struct shmd__slab *)(void *)((unsigned char *)h + off);
}

static inline int slab_off_ok(struct shmd__seg_alloc *sa, uint64_t off) {
  return off >= sa->data_off && off + SHMD_SLAB_BYTES <= sa->data_off + sa->data_bytes &&
         ((off - sa->data_off) % SHMD_SLAB_BYTES) == 0;
}

/* Unlinks slab `off` from the class list whose head is *head. */
static int slist_remove(struct shmd__thr *t, uint32_t seg, struct shmd__seg_hdr *h, struct shmd__seg_alloc *sa,
                        uint64_t *head, uint64_t off) {
  struct shmd__slab *sl = slab_at(h, off);
  if ((sl->prev && !slab_off_ok(sa, sl->prev)) || (sl->next && !slab_off_ok(sa, sl->next)))
    return SHMD_CORRUPT("slab list link out of bounds");
  if (sl->prev) {
    struct shmd__slab *p = slab_at(h, sl->prev);
    shmd__log8(t, seg, h, &p->next);
    p->next = sl->next;
  } else {
    if (*head != off)
      return SHMD_CORRUPT("slab list head does not match");
    shmd__log8(t, seg, h, head);
    *head = sl->next;
  }
  if (sl->next) {
    struct shmd__slab *n = slab_at(h, sl->next);
    shmd__log8(t, seg, h, &n->prev);
    n->prev = sl->prev;
  }
  shmd__log8(t, seg, h, &sl->prev);
  shmd__log8(t, seg, h, &sl->next);
  sl->prev = sl->next = 0;
  return 0;
}

static void slist_push(struct shmd__thr *t, uint32_t seg, struct shmd__seg_hdr *h, uint64_t *head, uint64_t off) {
  struct shmd__slab *sl = slab_at(h, off);
  shmd__log8(t, seg, h, &sl->prev);
  shmd__log8(t, seg, h, &sl->next);
  sl->prev = 0;
  sl->next = *head;
  if (*head) {
    struct shmd__slab *n = slab_at(h, *head);
    shmd__log8(t, seg, h, &n->prev);
    n->prev = off;
  }
  shmd__log8(t, seg, h, head);
  *head = off;
}

static inline void set_list(struct shmd__thr *t, uint32_t seg, struct shmd__seg_hdr *h, struct shmd__slab *sl,
                            uint32_t list) {
  shmd__log8(t, seg, h, &sl->bump);
  sl->list = list;
}

/* The page-map byte that holds the class of the slab at segment offset `off` (layout 1.4, see
 * alloc_int.h). */
static inline unsigned char *class_byte(struct shmd__seg_hdr *h, struct shmd__seg_alloc *sa, uint64_t off) {
  return shmd__pagemap(h, sa) + (off - sa->data_off) / SHMD_PAGE_BYTES + SHMD__PM_CLASS_PAGE;
}

/* After the bump pointer of slab `sl` (class c, at `off`) moved: once no further object fits, on a
 * store of layout 1.4, the slab's class goes into its page-map byte (logged). */
static inline void note_bump(shmd_store_t *s, struct shmd__thr *t, uint32_t seg, struct shmd__seg_hdr *h,
                             struct shmd__seg_alloc *sa, struct shmd__slab *sl, uint64_t off, uint32_t c) {
  if (shmd__slab_full_bumped(sl->bump, sl->obj_bytes) && shmd__pm_class_on(s->hdr0)) {
    unsigned char *cb = class_byte(h, sa, off);
    shmd__log_byte(t, seg, h, cb);
    __atomic_store_n(cb, (unsigned char)(c + 1), __ATOMIC_RELAXED); /* read by the lock-free free */
  }
}

/* Takes a new slab for class c from the buddy allocator. Returns its offset in *out, already on the
 * partial list. SHMD_ENOSPC when the segment has no free 64 KiB block. */
static int slab_get(shmd_store_t *s, struct shmd__thr *t, uint32_t seg, struct shmd__seg_hdr *h,
                    struct shmd__seg_alloc *sa, uint32_t c, uint64_t *out) {
  struct shmd__class *cl = &sa->cls[c];
  int rc = shmd__al_lock(s, t, seg, &sa->buddy_lock);
  if (rc)
    return rc;
  uint64_t page;
  rc = shmd__buddy_alloc(t, seg, h, SHMD__SLAB_ORDER, PM_SLAB, &page);
  if (rc)
    return rc;
  uint64_t off = sa->data_off + page * SHMD_PAGE_BYTES;
  /* The block was free: its header is fresh memory (a rollback returns the block to the buddy
   * lists, so these stores need no log). */
  struct shmd__slab *sl = slab_at(h, off);
  uint32_t size = shmd__class_bytes[c];
  sl->magic_class = (SLAB_MAGIC << 8) | c;
  sl->obj_bytes = size;
  sl->first_off = SHMD__SLAB_HDR;
  sl->capacity = (SHMD_SLAB_BYTES - SHMD__SLAB_HDR) / size;
  sl->free_head = 0;
  sl->inuse = 0;
  __atomic_store_n(&sl->bump, SHMD__SLAB_HDR, __ATOMIC_RELAXED); /* read unlocked by the fast free */
  sl->list = SLIST_NONE;
  sl->prev = sl->next = 0;
  shmd__log8(t, seg, h, &cl->slabs);
  cl->slabs++;
  SHMD_CRASH_POINT("slab.new");
  slist_push(t, seg, h, &cl->partial_head, off);
  set_list(t, seg, h, slab_at(h, off), SLIST_PARTIAL);
  *out = off;
  return 0;
}

/*
 * Allocates one object of class c from segment seg; the caller holds the class lock in a step.
 * Stores the segment offset in *out. SHMD_ENOSPC if the segment has neither a partial slab nor room
 * for a new one.
 */
int shmd__slab_alloc(shmd_store_t *s, struct shmd__thr *t, uint32_t seg, struct shmd__seg_hdr *h, uint32_t c,
                     uint64_t *out) {
  struct shmd__seg_alloc *sa = shmd__sa(h);
  struct shmd__class *cl = &sa->cls[c];
  uint64_t off = cl->partial_head;
  if (off == 0) {
    int rc = slab_get(s, t, seg, h, sa, c, &off);
    if (rc)
      return rc;
  } else if (!slab_off_ok(sa, off)) {
    return SHMD_CORRUPT("partial-slab list head out of bounds");
  }
  struct shmd__slab *sl = slab_at(h, off);
  uint32_t size = sl->obj_bytes, obj;
  if (sl->obj_bytes != shmd__class_bytes[c] || sl->inuse >= sl->capacity)
    return SHMD_CORRUPT("slab on the partial list is not a partial slab of its class");
  shmd__log8(t, seg, h, &sl->free_head);
  if (sl->free_head) {
    obj = sl->free_head;
    if (obj < SHMD__SLAB_HDR || obj + size > SHMD_SLAB_BYTES || obj >= sl->bump)
      return SHMD_CORRUPT("slab free list points outside the slab");
    sl->free_head = *(uint32_t *)(void *)((unsigned char *)sl + obj);
  } else {
    obj = sl->bump;
    if (obj + size > SHMD_SLAB_BYTES)
      return SHMD_CORRUPT("slab bump pointer beyond capacity");
    shmd__log8(t, seg, h, &sl->bump);
    __atomic_store_n(&sl->bump, obj + size, __ATOMIC_RELAXED); /* read unlocked by the fast free */
    note_bump(s, t, seg, h, sa, sl, off, c);
  }
  sl->inuse++;
  if (sl->inuse == sl->capacity) {
    int rc = slist_remove(t, seg, h, sa, &cl->partial_head, off);
    if (rc)
      return rc;
    set_list(t, seg, h, sl, SLIST_NONE);
  }
  *out = off + obj;
  return 0;
}

/*
 * Takes up to `want` objects of class c for a thread heap's refill, slab by slab: each slab's two
 * header words are logged once however many objects it gives (the per-object path logs them per
 * object). Stops early when the allocator log runs short of room for another slab.
 */
int shmd__slab_alloc_batch(shmd_store_t *s, struct shmd__thr *t, uint32_t seg, struct shmd__seg_hdr *h,
                           uint32_t c, uint64_t *out, uint32_t want, uint32_t *got) {
  struct shmd__seg_alloc *sa = shmd__sa(h);
  struct shmd__class *cl = &sa->cls[c];
  uint32_t n = 0;
  while (n < want) {
    if (n > 0 && shmd__al_room(t) < 8u * (sa->max_order + 2) + 40u)
      break;
    uint64_t off = cl->partial_head;
    if (off == 0) {
      int rc = slab_get(s, t, seg, h, sa, c, &off);
      if (rc) {
        if (n > 0 && rc == SHMD_ENOSPC)
          break;
        return rc;
      }
    } else if (!slab_off_ok(sa, off)) {
      return SHMD_CORRUPT("partial-slab list head out of bounds");
    }
    struct shmd__slab *sl = slab_at(h, off);
    uint32_t size = sl->obj_bytes;
    if (size != shmd__class_bytes[c] || sl->inuse >= sl->capacity)
      return SHMD_CORRUPT("slab on the partial list is not a partial slab of its class");
    shmd__log8(t, seg, h, &sl->free_head);
    shmd__log8(t, seg, h, &sl->bump);
    uint64_t base = (((uint64_t)seg + 1) << SHMD_PTR_OFFSET_BITS) | off;
    while (n < want && sl->inuse < sl->capacity) {
      uint32_t obj = sl->free_head;
      if (obj) {
        if (obj < SHMD__SLAB_HDR || obj + size > SHMD_SLAB_BYTES || obj >= sl->bump)
          return SHMD_CORRUPT("slab free list points outside the slab");
        sl->free_head = *(uint32_t *)(void *)((unsigned char *)sl + obj);
      } else {
        obj = sl->bump;
        if (obj + size > SHMD_SLAB_BYTES)
          return SHMD_CORRUPT("slab bump pointer beyond capacity");
        __atomic_store_n(&sl->bump, obj + size, __ATOMIC_RELAXED);
        note_bump(s, t, seg, h, sa, sl, off, c);
      }
      sl->inuse++;
      out[n++] = base + obj;
    }
    if (sl->inuse == sl->capacity) {
      int rc = slist_remove(t, seg, h, sa, &cl->partial_head, off);
      if (rc)
        return rc;
      sl->list = SLIST_NONE; /* its word (bump) is logged above */
    }
  }
  *got = n;
  return 0;
}

/* Returns an empty slab on the partial list to the buddy allocator. */
static int slab_release(shmd_store_t *s, struct shmd__thr *t, uint32_t seg, struct shmd__seg_hdr *h,
                        struct shmd__seg_alloc *sa, struct shmd__class *cl, uint64_t off) {
  int rc = slist_remove(t, seg, h, sa, &cl->partial_head, off);
  if (rc)
    return rc;
  set_list(t, seg, h, slab_at(h, off), SLIST_NONE);
  rc = shmd__al_lock(s, t, seg, &sa->buddy_lock);
  if (rc)
    return rc;
  shmd__log8(t, seg, h, &cl->slabs);
  cl->slabs--;
  unsigned char *cb = class_byte(h, sa, off); /* a free block's interior page-map bytes are 0 */
  if (*cb != 0) {
    shmd__log_byte(t, seg, h, cb);
    __atomic_store_n(cb, 0, __ATOMIC_RELAXED);
  }
  rc = shmd__buddy_free(t, seg, h, (off - sa->data_off) / SHMD_PAGE_BYTES, SHMD__SLAB_ORDER);
  if (rc)
    return rc;
  SHMD_CRASH_POINT("slab.release");
  return 0;
}

/*
 * Frees the object at segment offset `off` in the slab at `slab_off`; the caller holds the class
 * lock of the slab's class in a step. SHMD_EINVAL if `off` is not an object start of that slab.
 */
int shmd__slab_free(shmd_store_t *s, struct shmd__thr *t, uint32_t seg, struct shmd__seg_hdr *h, uint64_t slab_off,
                    uint64_t off) {
  struct shmd__seg_alloc *sa = shmd__sa(h);
  struct shmd__slab *sl = slab_at(h, slab_off);
  uint32_t c = sl->magic_class & 0xff;
  if ((sl->magic_class >> 8) != SLAB_MAGIC || c >= SHMD__NCLASSES || sl->obj_bytes != shmd__class_bytes[c])
    return SHMD_CORRUPT("slab header damaged");
  struct shmd__class *cl = &sa->cls[c];
  uint32_t obj = (uint32_t)(off - slab_off);
  if (obj < sl->first_off || (obj - sl->first_off) % sl->obj_bytes != 0 || obj >= sl->bump || sl->inuse == 0)
    return SHMD_EINVAL;
  int was_full = sl->inuse == sl->capacity;
  shmd__log8(t, seg, h, &sl->free_head);
  *(uint32_t *)(void *)((unsigned char *)sl + obj) = sl->free_head;
  sl->free_head = obj;
  sl->inuse--;
  if (was_full) {
    /* Back on the partial list, at its head. An empty slab kept at the head (see below) is
     * demoted by this push, so it goes back to the buddy allocator now. */
    uint64_t head = cl->partial_head;
    if (head) {
      if (!slab_off_ok(sa, head))
        return SHMD_CORRUPT("partial-slab list head out of bounds");
      if (slab_at(h, head)->inuse == 0) {
        int rc = slab_release(s, t, seg, h, sa, cl, head);
        if (rc)
          return rc;
      }
    }
    slist_push(t, seg, h, &cl->partial_head, slab_off);
    set_list(t, seg, h, sl, SLIST_PARTIAL);
  } else if (sl->inuse == 0 && cl->partial_head != slab_off) {
    /* An empty slab stays only at the head of the partial list, where the next allocation of the
     * class takes it (so an alloc/free pair moves nothing between lists and keeps no counter);
     * any other empty slab goes back to the buddy allocator. */
    int rc = slab_release(s, t, seg, h, sa, cl, slab_off);
    if (rc)
      return rc;
  }
  return 0;
}
