/* SPDX-License-Identifier: MIT */
/*
 * The allocator's invariant checker, shmd_alloc_check().
 *
 * For each segment, holding every class lock of the segment (by index) and then its buddy lock —
 * the allocator's lock order — it proves:
 *   - the page map tiles the data area: from page 0, every block head has a kind and an order, is
 *     aligned to its size, ends inside the area, and its interior pages are marked interior; so
 *     every page is in exactly one block (free, slab or large);
 *   - every free block is on the free list of its order exactly once, every list entry is a free
 *     block of that order, links agree both ways, and the counts match;
 *   - every slab's slots are each either free (on the slab's free list once, or past the bump
 *     pointer) or allocated, its in-use count and list membership agree, and the class's partial
 *     list holds exactly the slabs that are not full, with at most one empty slab, at its head;
 *   - the class, buddy and large-block counters equal what the walk found;
 *   - every object cached in a thread heap or the depot is an allocated slot of a slab of its class, and none is
 *     cached twice (see check_cached).
 * Every offset read from shared memory is bounds-checked and every walk is bounded by a count, so
 * a damaged store gives SHMD_ECORRUPT with the place in shmd_errdetail(), never a crash or a hang;
 * its lock waits are bounded too (segments/lockwait.h): a lock a live owner keeps holding gives
 * SHMD_EBUSY naming the holder.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_int.h"
#include "segments/err.h"
#include "segments/lockwait.h"

#define FAIL(...)                                                                                  \
  do {                                                                                             \
    shmd__set_detail(__VA_ARGS__);                                                                 \
    rc = SHMD_ECORRUPT;                                                                            \
    goto out;                                                                                      \
  } while (0)

struct class_seen {
  uint64_t slabs, inuse, partial, empty;
};

/* Checks the slab at `off`; `cb` is its page-map class byte, which a store of layout 1.4
 * (`pm_class`) sets to class + 1 exactly when no further object fits under the bump pointer, and
 * every other store leaves 0. */
static int check_slab(struct shmd__seg_hdr *h, uint32_t seg, uint64_t off, struct class_seen *seen,
                      unsigned char *bits, unsigned cb, int pm_class) {
  const struct shmd__slab *sl = (const struct shmd__slab *)(const void *)((unsigned char *)h + off);
  uint32_t c = sl->magic_class & 0xff;
  if ((sl->magic_class >> 8) != SLAB_MAGIC || c >= SHMD__NCLASSES) {
    shmd__set_detail("segment %u: slab at %llu has a bad header", seg, (unsigned long long)off);
    return SHMD_ECORRUPT;
  }
  uint32_t size = shmd__class_bytes[c];
  uint32_t cap = (SHMD_SLAB_BYTES - SHMD__SLAB_HDR) / size;
  if (sl->obj_bytes != size || sl->capacity != cap || sl->first_off != SHMD__SLAB_HDR ||
      sl->bump < SHMD__SLAB_HDR || sl->bump > SHMD__SLAB_HDR + cap * size ||
      (sl->bump - SHMD__SLAB_HDR) % size != 0 || sl->inuse > cap) {
    shmd__set_detail("segment %u: slab at %llu (class %u) has inconsistent geometry", seg,
                     (unsigned long long)off, c);
    return SHMD_ECORRUPT;
  }
  unsigned want_cb = pm_class && shmd__slab_full_bumped(sl->bump, size) ? c + 1 : 0;
  if (cb != want_cb) {
    shmd__set_detail("segment %u: slab at %llu (class %u): page-map class byte %02x, expected %02x", seg,
                     (unsigned long long)off, c, cb, want_cb);
    return SHMD_ECORRUPT;
  }
  uint32_t used_slots = (sl->bump - SHMD__SLAB_HDR) / size;
  memset(bits, 0, (cap + 7) / 8);
  uint32_t nfree = 0, o = sl->free_head;
  while (o != 0) {
    if (nfree >= used_slots || o < SHMD__SLAB_HDR || o >= sl->bump || (o - SHMD__SLAB_HDR) % size != 0) {
      shmd__set_detail("segment %u: slab at %llu: free list runs outside the used slots (cycle or "
                       "wild link)", seg, (unsigned long long)off);
      return SHMD_ECORRUPT;
    }
    uint32_t i = (o - SHMD__SLAB_HDR) / size;
    if (bits[i / 8] & (1u << (i % 8))) {
      shmd__set_detail("segment %u: slab at %llu: slot %u is on the free list twice (double free)", seg,
                       (unsigned long long)off, i);
      return SHMD_ECORRUPT;
    }
    bits[i / 8] |= (unsigned char)(1u << (i % 8));
    nfree++;
    o = *(const uint32_t *)(const void *)((const unsigned char *)sl + o);
  }
  if (sl->inuse != used_slots - nfree) {
    shmd__set_detail("segment %u: slab at %llu: in-use count %u, but %u used slots minus %u free", seg,
                     (unsigned long long)off, sl->inuse, used_slots, nfree);
    return SHMD_ECORRUPT;
  }
  uint32_t want = sl->inuse == cap ? SLIST_NONE : SLIST_PARTIAL;
  if (sl->list != want) {
    shmd__set_detail("segment %u: slab at %llu: on list %u, expected %u", seg, (unsigned long long)off, sl->list,
                     want);
    return SHMD_ECORRUPT;
  }
  struct class_seen *cs = &seen[c];
  cs->slabs++;
  cs->inuse += sl->inuse;
  cs->partial += want == SLIST_PARTIAL;
  cs->empty += sl->inuse == 0;
  return 0;
}

/* Walks one slab list of class c, checking membership and links. */
static int check_slab_list(struct shmd__seg_hdr *h, struct shmd__seg_alloc *sa, uint32_t seg, uint32_t c,
                           uint64_t head, uint32_t list, uint64_t expect) {
  const unsigned char *pm = shmd__pagemap(h, sa);
  uint64_t off = head, prev = 0, n = 0;
  while (off != 0) {
    if (n >= expect || off < sa->data_off || off + SHMD_SLAB_BYTES > sa->data_off + sa->data_bytes ||
        (off - sa->data_off) % SHMD_SLAB_BYTES != 0 ||
        pm[(off - sa->data_off) / SHMD_PAGE_BYTES] != (PM_SLAB | SHMD__SLAB_ORDER)) {
      shmd__set_detail("segment %u: class %u list %u: entry %llu is not one of its slabs (or a cycle)", seg, c,
                       list, (unsigned long long)n);
      return SHMD_ECORRUPT;
    }
    const struct shmd__slab *sl = (const struct shmd__slab *)(const void *)((unsigned char *)h + off);
    if ((sl->magic_class & 0xff) != c || sl->list != list || sl->prev != prev) {
      shmd__set_detail("segment %u: class %u list %u: slab at %llu has wrong class, list or back link", seg,
                       c, list, (unsigned long long)off);
      return SHMD_ECORRUPT;
    }
    prev = off;
    off = sl->next;
    n++;
  }
  if (n != expect) {
    shmd__set_detail("segment %u: class %u list %u holds %llu slabs, expected %llu", seg, c, list,
                     (unsigned long long)n, (unsigned long long)expect);
    return SHMD_ECORRUPT;
  }
  return 0;
}

/*
 * The segment header's fields were validated when the segment was attached (segments/store.c,
 * check_geometry): alloc_off is 8-aligned, alloc_off + alloc_bytes <= data_off, and the data area
 * lies inside the segment, so the sums of those fields below cannot wrap. The allocator header's
 * own words are mutable, hence not covered by the header's checksum, and untrusted: every bound is
 * tested in a form that cannot wrap (pagemap_off may hold anything).
 */
int shmd__sa_is_valid(const struct shmd__seg_hdr *h, const struct shmd__seg_alloc *sa) {
  uint64_t meta_end = h->alloc_off + h->alloc_bytes;
  if (h->alloc_bytes < sizeof *sa) /* the header itself lies inside the metadata */
    return 0;
  return sa->magic == SHMD__ALLOC_MAGIC && sa->data_off == h->data_off && sa->data_bytes == h->data_bytes &&
         sa->page_count == h->data_bytes / SHMD_PAGE_BYTES && sa->pagemap_off >= h->alloc_off + sizeof *sa &&
         sa->pagemap_off <= meta_end && sa->page_count <= meta_end - sa->pagemap_off &&
         sa->max_order <= SHMD__MAX_ORDER && (UINT64_C(1) << sa->max_order) <= sa->page_count;
}

/* ---- objects cached in thread heaps ---- */

struct cached {
  uint64_t off;
  uint32_t cls;
};

static int cached_cmp(const void *a, const void *b) {
  const struct cached *x = a, *y = b;
  return x->off < y->off ? -1 : x->off > y->off ? 1 : (int)x->cls - (int)y->cls;
}

/* Collects the cached entries of segment seg from every heap and the depot; *n entries in a
 * malloc'd array. */
static int collect_cached(shmd_store_t *s, uint32_t seg, struct cached **out, size_t *n) {
  size_t cap = 256, k = 0;
  struct cached *v = malloc(cap * sizeof *v);
  if (v == NULL)
    return SHMD_ENOMEM;
  for (uint32_t i = 0; i < s->man->lane_count; i++) {
    struct shmd__heap *hp = shmd__heap_of(s, i);
    if (hp == NULL)
      continue;
    for (uint32_t c = 0; c < SHMD__NCLASSES; c++) {
      struct shmd__heap_bin b = hp->bin[c];
      if (b.count > b.limit || b.limit > SHMD__HEAP_CAP) {
        free(v);
        shmd__set_detail("thread heap of lane %u: class %u holds %u objects, its limit is %u", i, c, b.count,
                         b.limit);
        return SHMD_ECORRUPT;
      }
      for (uint32_t j = 0; j < b.count; j++) {
        shmd_ptr_t p = {__atomic_load_n(&hp->slot[c][j], __ATOMIC_RELAXED)};
        if (p.v == 0 || shmd_ptr_segment(p) >= shmd__seg_count(s)) { /* count read after the slot */
          /* Below its count a slot always holds an object (written before the count): the
           * allocator would hand this value out as a block. */
          free(v);
          shmd__set_detail("thread heap of lane %u: class %u slot %u holds %#llx, not a block of this store", i, c,
                           j, (unsigned long long)p.v);
          return SHMD_ECORRUPT;
        }
        if (shmd_ptr_segment(p) != seg)
          continue;
        if (k == cap) {
          struct cached *w = realloc(v, 2 * cap * sizeof *v);
          if (w == NULL) {
            free(v);
            return SHMD_ENOMEM;
          }
          v = w;
          cap *= 2;
        }
        v[k].off = shmd_ptr_offset(p);
        v[k].cls = c;
        k++;
      }
    }
  }
  /* The depot's stacks, likewise (objects move between heaps and the depot without slab locks,
   * never to or from a slab). */
  struct shmd__depot *dp = shmd__depot_of(s);
  for (uint32_t c = 0; dp != NULL && c < SHMD__NCLASSES; c++) {
    struct shmd__heap_bin b = dp->cls[c].bin;
    if (b.count > b.limit || b.limit > SHMD__DEPOT_CAP) {
      free(v);
      shmd__set_detail("depot: class %u holds %u objects, its limit is %u", c, b.count, b.limit);
      return SHMD_ECORRUPT;
    }
    for (uint32_t j = 0; j < b.count; j++) {
      shmd_ptr_t p = {__atomic_load_n(&dp->slot[c][j], __ATOMIC_RELAXED)};
      if (p.v == 0 || shmd_ptr_segment(p) >= shmd__seg_count(s)) { /* count read after the slot */
        free(v);
        shmd__set_detail("depot: class %u slot %u holds %#llx, not a block of this store", c, j,
                         (unsigned long long)p.v);
        return SHMD_ECORRUPT;
      }
      if (shmd_ptr_segment(p) != seg)
        continue;
      if (k == cap) {
        struct cached *w = realloc(v, 2 * cap * sizeof *v);
        if (w == NULL) {
          free(v);
          return SHMD_ENOMEM;
        }
        v = w;
        cap *= 2;
      }
      v[k].off = shmd_ptr_offset(p);
      v[k].cls = c;
      k++;
    }
  }
  qsort(v, k, sizeof *v, cached_cmp);
  *out = v;
  *n = k;
  return 0;
}

/*
 * With every class lock of the segment held (so no refill or flush moves an object of this
 * segment between a slab and a heap), every object a heap caches must be an allocated slot of a
 * slab of its class: heaps only ever hold objects taken from slabs. Entries are read while their
 * owners may run, but any value a slot below its count holds during the check is such an object
 * (a concurrent pop leaves the value with the user, a push stores another allocated object).
 * A duplicate (the same object cached twice: a double free) is reported only if a second reading
 * of all heaps finds the same entries, since an object freed into another heap between the two
 * reads of a busy store would look cached twice.
 */
static int check_cached(shmd_store_t *s, struct shmd__seg_hdr *h, struct shmd__seg_alloc *sa, uint32_t seg,
                        unsigned char *bits) {
  struct cached *v = NULL, *w = NULL;
  size_t n = 0, m = 0;
  int rc = collect_cached(s, seg, &v, &n);
  if (rc)
    return rc;
  const unsigned char *pm = shmd__pagemap(h, sa);
  uint64_t cur_slab = UINT64_MAX;
  int dup = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    uint64_t off = v[i].off;
    if (off < sa->data_off || off >= sa->data_off + sa->data_bytes) {
      shmd__set_detail("segment %u: a thread heap or the depot caches offset %llu, outside the data area", seg,
                       (unsigned long long)off);
      rc = SHMD_ECORRUPT;
      break;
    }
    uint64_t spg = ((off - sa->data_off) / SHMD_PAGE_BYTES) & ~(uint64_t)(SHMD_SLAB_BYTES / SHMD_PAGE_BYTES - 1);
    uint64_t slab = sa->data_off + spg * SHMD_PAGE_BYTES;
    const struct shmd__slab *sl = (const struct shmd__slab *)(const void *)((unsigned char *)h + slab);
    if (pm[spg] != (PM_SLAB | SHMD__SLAB_ORDER) || (sl->magic_class & 0xff) != v[i].cls) {
      shmd__set_detail("segment %u: a thread heap or the depot caches offset %llu as class %u, but it is not in "
                       "a slab of that class", seg, (unsigned long long)off, v[i].cls);
      rc = SHMD_ECORRUPT;
      break;
    }
    uint32_t size = shmd__class_bytes[v[i].cls], obj = (uint32_t)(off - slab);
    if (obj < SHMD__SLAB_HDR || (obj - SHMD__SLAB_HDR) % size != 0 || obj >= sl->bump) {
      shmd__set_detail("segment %u: a thread heap or the depot caches offset %llu, not an allocated slot of its "
                       "slab", seg, (unsigned long long)off);
      rc = SHMD_ECORRUPT;
      break;
    }
    if (slab != cur_slab) {
      /* The slab's free slots (its free list was validated by check_slab). */
      cur_slab = slab;
      memset(bits, 0, SHMD_SLAB_BYTES / 16 / 8 + 1);
      uint32_t o = sl->free_head, walked = 0;
      while (o != 0 && walked++ < SHMD_SLAB_BYTES / 16) {
        uint32_t k = (o - SHMD__SLAB_HDR) / size;
        bits[k / 8] |= (unsigned char)(1u << (k % 8));
        o = *(const uint32_t *)(const void *)((const unsigned char *)sl + o);
      }
    }
    uint32_t k = (obj - SHMD__SLAB_HDR) / size;
    if (bits[k / 8] & (1u << (k % 8))) {
      shmd__set_detail("segment %u: offset %llu is both cached (thread heap or depot) and free in its slab", seg,
                       (unsigned long long)off);
      rc = SHMD_ECORRUPT;
      break;
    }
    if (i > 0 && v[i - 1].off == off)
      dup = 1;
  }
  if (rc == 0 && dup) {
    rc = collect_cached(s, seg, &w, &m);
    if (rc == 0 && m == n && memcmp(v, w, n * sizeof *v) == 0) {
      for (size_t i = 1; i < n; i++)
        if (v[i - 1].off == v[i].off) {
          shmd__set_detail("segment %u: offset %llu is cached twice in thread heaps or the depot (double free)", seg,
                           (unsigned long long)v[i].off);
          rc = SHMD_ECORRUPT;
          break;
        }
    }
  }
  free(v);
  free(w);
  return rc;
}

static int check_segment(shmd_store_t *s, struct shmd__thr *t, uint32_t seg) {
  struct shmd__seg_hdr *h = shmd__seg(s, seg);
  if (h == NULL) {
    char why[256]; /* the detail buffer cannot be both the format's argument and its output */
    snprintf(why, sizeof why, "%s", shmd_errdetail());
    shmd__set_detail("segment %u of the manifest cannot be mapped: %s", seg, why);
    return SHMD_ECORRUPT;
  }
  struct shmd__seg_alloc *sa = shmd__sa(h);
  if (!shmd__sa_is_valid(h, sa)) {
    shmd__set_detail("segment %u: allocator metadata header is damaged", seg);
    return SHMD_ECORRUPT;
  }
  int rc = 0;
  for (uint32_t c = 0; c < SHMD__NCLASSES && rc == 0; c++)
    rc = shmd__al_lock(s, t, seg, &sa->cls[c].lock);
  if (rc == 0)
    rc = shmd__al_lock(s, t, seg, &sa->buddy_lock);
  if (rc) {
    shmd__al_abort(s, t);
    return rc;
  }
  const unsigned char *pm = shmd__pagemap(h, sa);
  uint64_t npages = sa->page_count;
  unsigned char *onlist = calloc(npages / 8 + 1, 1);
  unsigned char *slotbits = malloc(SHMD_SLAB_BYTES / 16 / 8 + 1);
  struct class_seen seen[SHMD__NCLASSES];
  uint64_t free_seen[SHMD__MAX_ORDER + 1] = {0}, free_pages = 0, large_blocks = 0, large_pages = 0;
  memset(seen, 0, sizeof seen);
  if (onlist == NULL || slotbits == NULL) {
    rc = SHMD_ENOMEM;
    goto out;
  }
  /* Free lists first: mark their heads. */
  for (uint32_t o = 0; o <= sa->max_order; o++) {
    uint64_t off = sa->free_head[o], prev = 0, n = 0;
    while (off != 0) {
      if (n >= sa->free_count[o] || off < sa->data_off || off >= sa->data_off + sa->data_bytes ||
          (off - sa->data_off) % SHMD_PAGE_BYTES != 0)
        FAIL("segment %u: free list of order %u: entry %llu out of bounds, or longer than its count %llu", seg,
             o, (unsigned long long)n, (unsigned long long)sa->free_count[o]);
      uint64_t pg = (off - sa->data_off) / SHMD_PAGE_BYTES;
      if (pm[pg] != (PM_FREE | o))
        FAIL("segment %u: free list of order %u holds page %llu, which the page map marks %02x", seg, o,
             (unsigned long long)pg, pm[pg]);
      if (onlist[pg / 8] & (1u << (pg % 8)))
        FAIL("segment %u: page %llu is on a free list twice", seg, (unsigned long long)pg);
      onlist[pg / 8] |= (unsigned char)(1u << (pg % 8));
      const struct shmd__fblock *b = (const struct shmd__fblock *)(const void *)((unsigned char *)h + off);
      if (b->prev != prev)
        FAIL("segment %u: free list of order %u: back link of page %llu is wrong", seg, o,
             (unsigned long long)pg);
      prev = off;
      off = b->next;
      n++;
    }
    if (n != sa->free_count[o])
      FAIL("segment %u: free list of order %u holds %llu blocks, its count says %llu", seg, o,
           (unsigned long long)n, (unsigned long long)sa->free_count[o]);
  }
  for (uint32_t o = sa->max_order + 1; o <= SHMD__MAX_ORDER; o++)
    if (sa->free_head[o] || sa->free_count[o])
      FAIL("segment %u: free list of order %u above the maximum order is not empty", seg, o);
  /* Tile the data area. */
  for (uint64_t p = 0; p < npages;) {
    unsigned char b = pm[p];
    uint32_t o = b & PM_ORDER;
    unsigned kind = b & PM_KIND;
    if (kind == 0 || o > sa->max_order || (p & ((UINT64_C(1) << o) - 1)) != 0 || p + (UINT64_C(1) << o) > npages)
      FAIL("segment %u: page %llu: page-map byte %02x is not a valid block head", seg, (unsigned long long)p, b);
    for (uint64_t i = 1; i < (UINT64_C(1) << o); i++)
      if (pm[p + i] != 0 && !(kind == PM_SLAB && i == SHMD__PM_CLASS_PAGE)) /* checked by check_slab */
        FAIL("segment %u: page %llu inside the block at page %llu is marked %02x", seg,
             (unsigned long long)(p + i), (unsigned long long)p, pm[p + i]);
    if (kind == PM_FREE) {
      if (!(onlist[p / 8] & (1u << (p % 8))))
        FAIL("segment %u: free block at page %llu (order %u) is on no free list (leaked)", seg,
             (unsigned long long)p, o);
      free_seen[o]++;
      free_pages += UINT64_C(1) << o;
    } else if (kind == PM_SLAB) {
      if (o != SHMD__SLAB_ORDER)
        FAIL("segment %u: slab at page %llu has order %u", seg, (unsigned long long)p, o);
      rc = check_slab(h, seg, sa->data_off + p * SHMD_PAGE_BYTES, seen, slotbits, pm[p + SHMD__PM_CLASS_PAGE],
                      shmd__pm_class_on(s->hdr0));
      if (rc)
        goto out;
    } else {
      large_blocks++;
      large_pages += UINT64_C(1) << o;
    }
    p += UINT64_C(1) << o;
  }
  if (free_pages != sa->free_pages)
    FAIL("segment %u: %llu free pages found, the counter says %llu", seg, (unsigned long long)free_pages,
         (unsigned long long)sa->free_pages);
  if (large_blocks != sa->large_blocks || large_pages != sa->large_pages)
    FAIL("segment %u: %llu large blocks / %llu pages found, counters say %llu / %llu", seg,
         (unsigned long long)large_blocks, (unsigned long long)large_pages, (unsigned long long)sa->large_blocks,
         (unsigned long long)sa->large_pages);
  for (uint32_t c = 0; c < SHMD__NCLASSES; c++) {
    struct shmd__class *cl = &sa->cls[c];
    if (cl->slabs != seen[c].slabs)
      FAIL("segment %u: class %u (%u bytes): slab counter %llu, found %llu", seg, c, shmd__class_bytes[c],
           (unsigned long long)cl->slabs, (unsigned long long)seen[c].slabs);
    if ((rc = check_slab_list(h, sa, seg, c, cl->partial_head, SLIST_PARTIAL, seen[c].partial)) != 0)
      goto out;
    /* The list was validated above, so its head may be followed. */
    if (seen[c].empty > 1 ||
        (seen[c].empty == 1 &&
         ((const struct shmd__slab *)(const void *)((unsigned char *)h + cl->partial_head))->inuse != 0))
      FAIL("segment %u: class %u keeps %llu empty slabs; at most one, at the head of its list", seg, c,
           (unsigned long long)seen[c].empty);
  }
  rc = check_cached(s, h, sa, seg, slotbits);
out:
  free(onlist);
  free(slotbits);
  shmd__al_commit(s, t); /* nothing was logged: this only releases the locks */
  return rc;
}

static int alloc_check(shmd_store_t *store) {
  int rc;
  struct shmd__thr *t = shmd__thr(store, &rc);
  if (t == NULL)
    return rc;
  if (t->depth == 0 && !t->in_al) {
    rc = shmd_recover(store);
    if (rc < 0)
      return rc;
  }
  /* The manifest's words naming the heap directory and the depot, and the directory's words
   * naming heaps: 0, or a structure that validates. Otherwise the heaps or the depot named would
   * be ignored, and the objects they cache lost. */
  const struct shmd__manifest *m = store->man;
  struct shmd__heap_dir *d = shmd__heap_dir(store);
  if (d == NULL && __atomic_load_n(&m->reserved2[SHMD__MAN_HEAP_DIR], __ATOMIC_ACQUIRE) != 0) {
    shmd__set_detail("the manifest's heap directory pointer %#llx names no heap directory",
                     (unsigned long long)m->reserved2[SHMD__MAN_HEAP_DIR]);
    return SHMD_ECORRUPT;
  }
  for (uint32_t i = 0; d != NULL && i < d->lanes; i++)
    if (__atomic_load_n(&d->heap[i], __ATOMIC_ACQUIRE) != 0 && shmd__heap_of(store, i) == NULL) {
      shmd__set_detail("the heap directory's pointer %#llx for lane %u names no thread heap",
                       (unsigned long long)d->heap[i], i);
      return SHMD_ECORRUPT;
    }
  if (shmd__depot_of(store) == NULL && __atomic_load_n(&m->reserved2[SHMD__MAN_DEPOT], __ATOMIC_ACQUIRE) != 0) {
    shmd__set_detail("the manifest's depot pointer %#llx names no depot",
                     (unsigned long long)m->reserved2[SHMD__MAN_DEPOT]);
    return SHMD_ECORRUPT;
  }
  uint32_t n = shmd__seg_count(store);
  for (uint32_t i = 0; i < n; i++) {
    rc = check_segment(store, t, i);
    if (rc)
      return rc;
  }
  return 0;
}

int shmd_alloc_check(shmd_store_t *store) {
  uint64_t w = shmd__check_wait_begin(store);
  int rc = alloc_check(store);
  shmd__check_wait_end(store, w);
  return rc;
}
