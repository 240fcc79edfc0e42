/* SPDX-License-Identifier: MIT */
/*
 * Internal: the on-memory layout of segments, the manifest, roots and lanes, the process-local
 * store handle, and the lane / lock / allocator-step interface that alloc/ builds on. The segment
 * layer's header: included by segments/ and by the layers built on it (alloc/, tx/, and
 * containers/ for the bounds its optimistic readers and walks need); kv/ and programs do not.
 *
 * Layout of segment 0 (other segments have only the header, allocator metadata and data):
 *
 *   0          4 KiB              ...                                        data_off (64 KiB aligned)
 *   | header   | manifest (+ segment table) | roots | lanes ... | allocator metadata | data area ...
 *
 * Everything here is versioned by SHMD_LAYOUT_MAJOR/MINOR: new fields go into the reserved words.
 */
#ifndef SHMD_SEGMENTS_STORE_INT_H
#define SHMD_SEGMENTS_STORE_INT_H

#include <pthread.h>
#include <stdint.h>

#include "shmdict/alloc.h"
#include "shmdict/error.h"
#include "shmdict/ptr.h"
#include "shmdict/store.h"
#include "shmdict/tx.h"
#include "store_ext.h"

#define SHMD__SEG_MAGIC UINT64_C(0x3154434944444d48)  /* "HMDDICT1" little-endian */
#define SHMD__MAN_MAGIC UINT64_C(0x54534546494e414d)  /* "MANIFEST" */
#define SHMD__HDR_BYTES 4096u
#define SHMD__MAX_SEGS 4096u        /* segments per store (manifest table size) */
#define SHMD__ROOT_CAP 1024u
#define SHMD__DATA_ALIGN 65536u     /* data areas start 64 KiB aligned (slab masking) */

/* Lane capacities. */
#define SHMD__OP_LOG_CAP 2048u
#define SHMD__AL_LOG_CAP 512u
#define SHMD__HELD_CAP 32u
#define SHMD__AL_HELD_CAP 64u /* the checker holds every class lock of a segment */
#define SHMD__RESV_CAP 128u
#define SHMD__DFREE_CAP 512u

/* ---------------------------------------------------------------------------------------------- */
/* Shared-memory structures. */

struct shmd__seg_hdr {
  uint64_t magic;
  uint16_t layout_major, layout_minor;
  uint32_t hdr_bytes;
  unsigned char store_uuid[16];
  uint32_t seg_index;
  uint32_t flags;
  uint64_t size_bytes;
  uint64_t alloc_off;   /* allocator metadata */
  uint64_t alloc_bytes;
  uint64_t data_off;    /* data area, SHMD__DATA_ALIGN aligned */
  uint64_t data_bytes;
  uint64_t manifest_off; /* segment 0 only */
  uint64_t reserved[16];
  uint64_t checksum;     /* FNV-1a of everything above; the header never changes after creation */
};

struct shmd__seg_entry {
  uint64_t size_bytes;
  uint32_t suffix; /* file name is seg-%05u-%08x (index, suffix); segment 0 is seg-00000 */
  uint32_t flags;
};

struct shmd__root {
  char name[SHMD_ROOT_NAME_MAX + 1];
  uint64_t ptr;
};

struct shmd__manifest {
  uint64_t magic;
  char boot_id[40];
  uint64_t created_unix;
  uint64_t first_seg_bytes, grow_seg_bytes, max_store_bytes;
  uint32_t file_mode;
  uint32_t lane_count;
  uint64_t lane_bytes, lanes_off;
  uint64_t roots_off;
  uint32_t root_cap;
  uint32_t max_segments;
  uint32_t op_log_cap;
  uint32_t pad0;
  uint64_t reserved[16];
  /* Mutable part. */
  shmd_lock_t grow_lock;  /* last in the lock order: segment creation */
  shmd_lock_t roots_lock; /* the named-root directory */
  uint32_t seg_count;     /* published with release order: the commit point of growth */
  uint32_t pad1;
  uint64_t recoveries;
  uint64_t reserved2[16]; /* [SHMD__MAN_HEAP_DIR]: thread heaps (alloc/heap.c), layout 1.2;
                           * [SHMD__MAN_DEPOT]: the depot (alloc/heap.c), layout 1.3 */
  struct shmd__seg_entry segs[SHMD__MAX_SEGS];
};

struct shmd__undo {
  uint64_t ptr; /* shmd_ptr_t of an 8-byte aligned word */
  uint64_t old;
};

enum { SHMD__LANE_IDLE = 0, SHMD__LANE_ACTIVE = 1, SHMD__LANE_COMMITTED = 2, SHMD__LANE_ABORTING = 3 };

/*
 * A lane: the per-thread slot of a writer (PMDK's word). `live` is a robust process-shared mutex
 * the owning thread holds for as long as it owns the lane: a waiter that finds it answering
 * EOWNERDEAD knows the owner died. The two undo logs are the operation's (op_log) and the
 * allocator step's (al_log, a nested top-level action that commits on its own).
 */
struct shmd__lane {
  union {
    pthread_mutex_t m;
    unsigned char pad[64];
  } live;
  uint32_t state;
  uint32_t owner_pid, owner_tid;
  uint32_t held_count;
  uint32_t al_held_count;
  uint32_t al_len;
  uint32_t op_len;
  uint32_t dfree_count;
  uint64_t resv_count; /* changed only inside allocator steps (own 8-byte word: logged alone) */
  uint64_t dfree_done; /* likewise */
  /* The extension block (struct shmd__lane_ext) continuing held/resv/dfree/op_log past their
   * fixed capacities, and the two words of its crash-safe growth (see tx/tx.c, "Extension blocks"). */
  uint64_t ext, ext_new, ext_old;
  /* The owner's pid namespace (shmd__os_pidns(), 0 unknown), recorded with owner_pid/owner_tid:
   * their numbers are judged only by processes of the same namespace (lane.c, "Who holds a lane").
   * Was reserved (zero) before; a store written by an older library leaves it 0. */
  uint64_t owner_pidns;
  uint64_t held[SHMD__HELD_CAP];       /* shmd_ptr_t of locks the operation holds or is taking */
  uint64_t al_held[SHMD__AL_HELD_CAP]; /* locks of the allocator step */
  uint64_t resv[SHMD__RESV_CAP];       /* blocks allocated by the operation (freed on rollback) */
  uint64_t dfree[SHMD__DFREE_CAP];     /* blocks to free after commit */
  struct shmd__undo al_log[SHMD__AL_LOG_CAP];
  struct shmd__undo op_log[]; /* op_log_cap entries */
};

/*
 * A lane's extension block: where a transaction's held locks, reservations, deferred frees and undo
 * entries go once the lane's fixed arrays are full. Element i of an array whose fixed capacity is C
 * lives in the lane for i < C, else at index i - C of the block's array. The capacities never
 * change after the block is created; growing allocates a bigger block and switches `ext` to it.
 */
#define SHMD__EXT_MAGIC UINT64_C(0x3154584545444d48) /* "HMDEEXT1" */
#define SHMD__EXT_MAX (UINT32_C(1) << 26)           /* entries per array of one block: 1 GiB of undo entries */
struct shmd__lane_ext {
  uint64_t magic;
  uint32_t op_cap, held_cap, resv_cap, dfree_cap;
  uint64_t pad;
  /* struct shmd__undo op[op_cap]; uint64_t held[held_cap], resv[resv_cap], dfree[dfree_cap]; */
};
static inline struct shmd__undo *shmd__ext_op(struct shmd__lane_ext *e) {
  return (struct shmd__undo *)(void *)(e + 1);
}
static inline uint64_t *shmd__ext_held(struct shmd__lane_ext *e) {
  return (uint64_t *)(void *)(shmd__ext_op(e) + e->op_cap);
}
static inline uint64_t *shmd__ext_resv(struct shmd__lane_ext *e) { return shmd__ext_held(e) + e->held_cap; }
static inline uint64_t *shmd__ext_dfree(struct shmd__lane_ext *e) { return shmd__ext_resv(e) + e->resv_cap; }
static inline uint64_t shmd__ext_bytes(uint64_t op_cap, uint64_t held_cap, uint64_t resv_cap, uint64_t dfree_cap) {
  return sizeof(struct shmd__lane_ext) + op_cap * sizeof(struct shmd__undo) + (held_cap + resv_cap + dfree_cap) * 8;
}

/* ---------------------------------------------------------------------------------------------- */
/* Process-local state. */

struct shmd__alloc_ops; /* the allocator's callbacks, see below */
struct shmd__tx_ops;    /* the transaction layer's callbacks, see below */

/* Per thread and store: the thread's lane and transaction. This is what shmd_tx_t points to. */
struct shmd__thr {
  shmd_store_t *store;
  struct shmd__lane *lane;
  uint32_t lane_idx;
  uint32_t depth;      /* transaction nesting */
  uint32_t in_al;      /* inside an allocator step */
  uint32_t *al_addr[SHMD__AL_HELD_CAP]; /* process-local addresses of the step's locks */
  int doomed;          /* an inner level aborted */
  uint32_t clean_from; /* levels 1 .. clean_from - 1 changed something, deeper ones nothing: see
                          tx/tx.c, "Which levels changed something" */
  uint32_t mark_op, mark_dfree; /* the lane's op_len and dfree_count when clean_from was settled */
  uint64_t mark_resv;           /* likewise its resv_count */
  struct shmd__lane_ext *ext; /* the lane's extension block (process-local address) or NULL */
  uint64_t op_room;    /* entries the op log holds now: the lane's own plus the extension's */
  uint64_t resv_room;  /* likewise for reservations */
  uint64_t *alloc_word; /* where an allocation in mode 2 records its block (see alloc_ops) */
  uint64_t fork_gen;
  uint32_t pending[8]; /* dead lanes whose frees are still to be finished */
  uint32_t npending;
  struct shmd__thr *next_of_thread; /* the thread's list over all stores */
  /* ---- thread heaps (alloc/heap.c) ---- */
  void *heap;          /* this lane's heap in shared memory (process address), NULL until first use */
  uint32_t heap_state; /* 0 = not attached yet, 1 = attached, 2 = none (no room: run without) */
  void *depot;         /* the store's depot (process address), NULL when it has none */
  uint32_t depot_seg;  /* the segment the depot lives in (for the step log) */
  /* ---- returning free pages to the kernel (private stores only, alloc/buddy.c) ---- */
  uint64_t freed_pages; /* pages this thread gave back to the buddy allocators since the last release */
  int release_due;      /* set by a buddy free, acted on by shmd__al_commit once no lock is held */
  /* ---- bounded lock waits (lane.c) ---- */
  uint64_t wait_deadline_ns; /* a checker's deadline (shmd__os_now_ns() clock) for every lock wait; 0: none */
};

struct shmd_store_s {
  shmd_segmap_t *map; /* must stay first: shmd_resolve() reads it */
  uint64_t *seg_size; /* [SHMD_MAX_SEGMENTS + 1], bytes mapped per map->base entry */
  uint64_t id;        /* process-unique handle id */
  char name[72];
  char dir[4096];
  char path[4200];
  int fd0;
  struct shmd__seg_hdr *hdr0;
  struct shmd__manifest *man;
  unsigned char *lanes;
  pthread_mutex_t attach_mu;
  int refs; /* the open plus one per thread holding a lane; atomic */
  int closing;
  uint32_t alloc_hint[SHMD_STATS_MAX_CLASSES + 1]; /* process-local: segment to try first */
  uint32_t large_hint;
  struct shmd_store_s *next_store; /* global list, for fork handling */
  int private_maps; /* opened with private mappings (the malloc shim's stores): free pages may be
                       given back to the kernel, see alloc/buddy.c shmd__buddy_release */
  unsigned os_how;  /* SHMD__OS_PRIVATE, SHMD__OS_SPARSE: from SHMD__OPEN_PRIVATE / _SPARSE */
  /* ---- the store's files (store.c, "Files and who may use them") ---- */
  int dirfd;          /* the store directory (O_DIRECTORY|O_NOFOLLOW): every file is reached through it */
  uint32_t owner_uid; /* a private store: the uid owning its directory and every file (the opener) */
  int shared;         /* opened as a group-shared store (shmd_options_t.group) */
  uint32_t gid;       /* a group-shared store's group */
  uint64_t orphan_files, orphan_bytes; /* orphaned spare files this handle removed (atomic) */
  uint64_t lock_wait_ns; /* shmd_set_lock_wait(): bound of one lock wait by this handle's threads; 0: none */
  /* ---- the callbacks of the layers above, handed down when the store is opened ---- */
  const struct shmd__alloc_ops *alloc_ops; /* set from shmd__store_open()'s ops: alloc/'s table */
  const struct shmd__tx_ops *tx_ops;       /* likewise: tx/'s table */
};
/* The inline shmd_resolve() (include/shmdict/ptr.h) reads the map through the opaque handle; the
 * ABI check (abi/suppressions.ini) lets members after it change. */
_Static_assert(__builtin_offsetof(struct shmd_store_s, map) == 0, "the segment map is the store's first member");

/* ---------------------------------------------------------------------------------------------- */
/* Helpers. */

static inline struct shmd__lane *shmd__lane_at(shmd_store_t *s, uint32_t idx) {
  return (struct shmd__lane *)(void *)(s->lanes + (uint64_t)idx * s->man->lane_bytes);
}

static inline uint32_t shmd__seg_count(shmd_store_t *s) {
  return __atomic_load_n(&s->man->seg_count, __ATOMIC_ACQUIRE);
}

/* Header of segment `seg`, mapping it if needed; NULL if it does not exist or cannot be mapped. */
struct shmd__seg_hdr *shmd__seg_slow(shmd_store_t *s, uint32_t seg);
static inline struct shmd__seg_hdr *shmd__seg(shmd_store_t *s, uint32_t seg) {
  unsigned char *b = __atomic_load_n(&s->map->base[seg + 1], __ATOMIC_ACQUIRE);
  if (__builtin_expect(b != NULL, 1))
    return (struct shmd__seg_hdr *)(void *)b;
  return shmd__seg_slow(s, seg);
}

/* The calling thread's lane context for `s`, claiming a lane on first use. NULL with *rc set on
 * failure (SHMD_ENOLANE, SHMD_ENOMEM). */
struct shmd__thr *shmd__thr_slow(shmd_store_t *s, int *rc);
extern uint64_t shmd__fork_gen;
extern __attribute__((tls_model("initial-exec"))) _Thread_local struct shmd__thr *shmd__tl_thr;

static inline struct shmd__thr *shmd__thr(shmd_store_t *s, int *rc) {
  struct shmd__thr *t = shmd__tl_thr;
  if (__builtin_expect(t != NULL && t->store == s && t->fork_gen == shmd__fork_gen, 1))
    return t;
  return shmd__thr_slow(s, rc);
}

/* ---- locks ---- */
#define SHMD__LOCK_WAITERS 0x80000000u
#define SHMD__LOCK_OWNER(w) ((w)&0xffffu)

/* Takes the lock word at `w` for the thread's lane. Returns 0 when taken, 1 when the lane already
 * held it, or SHMD_ECORRUPT. Waiting for a dead holder recovers its lane. */
int shmd__lock_slow(shmd_store_t *s, struct shmd__thr *t, uint32_t *w);
static inline int shmd__lock(shmd_store_t *s, struct shmd__thr *t, uint32_t *w) {
  uint32_t me = t->lane_idx + 1, exp = 0;
  if (__builtin_expect(__atomic_compare_exchange_n(w, &exp, me, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED), 1))
    return 0;
  return shmd__lock_slow(s, t, w);
}
void shmd__futex_wake_all(uint32_t *w);
static inline void shmd__unlock(uint32_t *w) {
  uint32_t old = __atomic_exchange_n(w, 0, __ATOMIC_RELEASE);
  if (__builtin_expect(old & SHMD__LOCK_WAITERS, 0))
    shmd__futex_wake_all(w);
}

/* ---- allocator steps (nested top-level actions) ----
 * al_lock records the lock in the lane's al_held list and takes it; al_log records the 8-byte word
 * at addr (inside segment `seg`) before the caller changes it; al_commit ends the step (the log is
 * emptied, the point of no return) and releases the step's locks. A step must not be nested. */
int shmd__al_lock(shmd_store_t *s, struct shmd__thr *t, uint32_t seg, shmd_lock_t *lock);
static inline void shmd__al_log(struct shmd__thr *t, uint32_t seg, const unsigned char *segbase,
                                void *addr) {
  struct shmd__lane *l = t->lane;
  uint32_t n = l->al_len;
  l->al_log[n].ptr = (((uint64_t)seg + 1) << SHMD_PTR_OFFSET_BITS) | (uint64_t)((unsigned char *)addr - segbase);
  l->al_log[n].old = *(uint64_t *)addr;
  __atomic_store_n(&l->al_len, n + 1, __ATOMIC_RELEASE);
  __atomic_thread_fence(__ATOMIC_RELEASE); /* the entry is visible before the store it protects */
}
/* Room left in the allocator log. */
static inline uint32_t shmd__al_room(struct shmd__thr *t) { return SHMD__AL_LOG_CAP - t->lane->al_len; }
void shmd__al_commit(shmd_store_t *s, struct shmd__thr *t);
/* Rolls back an unfinished step of the calling thread (used on errors inside the allocator). */
void shmd__al_abort(shmd_store_t *s, struct shmd__thr *t);

/* Runs recovery work deferred while the thread was inside an allocator step. */
void shmd__run_pending(shmd_store_t *s, struct shmd__thr *t);

/* Finds the segment holding a lane field: lanes live in segment 0. */
static inline uint64_t shmd__lane_word_ptr(shmd_store_t *s, void *addr) {
  return shmd_ptr_make(0, (uint64_t)((unsigned char *)addr - s->map->base[1])).v;
}

/* ---- growth ---- */
/* Adds a segment whose data area holds at least `min_data_bytes`, unless the segment count is no
 * longer `seen_count` (someone else grew: returns 1, try again). */
int shmd__grow(shmd_store_t *s, struct shmd__thr *t, uint32_t seen_count, uint64_t min_data_bytes);
/* One step of growth ahead of need (store.c, "Growth ahead of need"; the allocator's
 * shmd_alloc_expect() decides when): when `start`, makes sure a spare that can hold a block of
 * want_data_bytes (0: a growth segment) exists or is being reserved; then reserves one piece of a
 * spare in progress. Never blocks on other threads (skips the step instead) and never fails the
 * caller: returns 1 while a spare is in progress, else 0. */
int shmd__grow_ahead(shmd_store_t *s, uint64_t want_data_bytes, int start);

/* ---- the callbacks of the layers above (process memory, handed to shmd__store_open()) ---- */

/* The allocator's (alloc/front.c). */
struct shmd__alloc_ops {
  /* Bytes of allocator metadata for a data area of at most `data_bytes`. */
  uint64_t (*meta_bytes)(uint64_t data_bytes);
  /* Initialises the metadata of a fresh, not yet published segment. */
  void (*seg_init)(struct shmd__seg_hdr *hdr);
  /* Gives the pages of big free blocks back to the kernel (private stores), as allocator steps of
   * thread t (which holds no allocator lock). Called by shmd__al_commit when t->release_due. */
  void (*release)(shmd_store_t *s, struct shmd__thr *t);
};

/* The transaction layer's (tx/tx.c). */
#define SHMD__RECOVER_LATER 1 /* lane_recover(): work is left that needs allocator steps */
struct shmd__tx_ops {
  /* Step 4 of recovering lane idx, whose `live` mutex the caller (thread t) owns, after the segment
   * layer rolled back its allocator step and operation log and released its locks (steps 1-3,
   * lane.c): adopts the lane's thread heap, frees its reservations (ABORTING) or finishes its
   * deferred frees (COMMITTED), releases its extension blocks, and leaves it IDLE. When !can_free
   * (t is inside an allocator step) it only resets what needs no allocator step and returns
   * SHMD__RECOVER_LATER if more is left: the caller queues the lane (t->pending) and runs it again
   * with can_free once its step is over. Otherwise 0 or a status. */
  int (*lane_recover)(shmd_store_t *s, struct shmd__thr *t, uint32_t idx, int can_free);
  /* Thread context t gives its lane up (thread exit, shmd_thread_detach, shmd_close): aborts its
   * open transaction, finishes queued recoveries and returns what its heap caches, while the lane
   * is still t's. Cannot fail (what cannot be done now is left for the lane's next owner). */
  void (*thread_end)(shmd_store_t *s, struct shmd__thr *t);
};
#define SHMD__MAN_HEAP_DIR 0 /* index in shmd__manifest.reserved2: shmd_ptr_t of the heap directory */
#define SHMD__MAN_DEPOT 1    /* index in shmd__manifest.reserved2: shmd_ptr_t of the depot (layout 1.3) */
/* ---- thread heaps: lane records the heap code must read for a dead lane (lane.c) ---- */
/* Address of element i of lane x's reservations (which = 0) or deferred frees (which = 1),
 * continuing into its extension block; NULL when i is beyond both or the block is damaged. */
uint64_t *shmd__lane_record(shmd_store_t *s, struct shmd__lane *x, int which, uint64_t i);

/* ---- reading a lane's records (lane.c), for recovery and the transaction layer ---- */
/* Element i of an array that an extension block continues: the lane's for i < cap, else the
 * block's; NULL beyond both. */
static inline uint64_t *shmd__vslot(uint64_t *lane_arr, uint64_t cap, uint64_t *ext_arr, uint64_t ext_cap,
                                    uint64_t i) {
  if (i < cap)
    return &lane_arr[i];
  if (ext_arr != NULL && i - cap < ext_cap)
    return &ext_arr[i - cap];
  return NULL;
}
/* Held lock i of lane l whose extension block is e (may be NULL). */
static inline uint64_t *shmd__held_slot(struct shmd__lane *l, struct shmd__lane_ext *e, uint64_t i) {
  return shmd__vslot(l->held, SHMD__HELD_CAP, e ? shmd__ext_held(e) : NULL, e ? e->held_cap : 0, i);
}
/* Whether lane x names any extension block (current, being switched to, or the switched-from). */
static inline int shmd__ext_any(const struct shmd__lane *x) { return (x->ext | x->ext_new | x->ext_old) != 0; }
/* Checked view of lane x's extension block: NULL with *rc = 0 when it has none, NULL with *rc =
 * SHMD_ECORRUPT when the word names no valid block. */
struct shmd__lane_ext *shmd__lane_ext_view(shmd_store_t *s, struct shmd__lane *x, int *rc);
/* Sets thread t's cached view of its own lane's extension block and the room it gives. */
static inline void shmd__thr_set_ext(struct shmd__thr *t, struct shmd__lane_ext *e) {
  t->ext = e;
  t->op_room = (uint64_t)t->store->man->op_log_cap + (e ? e->op_cap : 0);
  t->resv_room = SHMD__RESV_CAP + (e ? e->resv_cap : 0);
}
/* Rolls back lane x's operation log (n entries, continued in extension block e) newest-first.
 * SHMD_ECORRUPT for an entry outside the store or in its fixed layout, or a length beyond the
 * capacity (entries up to the bad one are rolled back). */
int shmd__lane_rollback_op(shmd_store_t *s, struct shmd__lane *x, struct shmd__lane_ext *e, uint32_t n);
/* Empties lane l's transaction records and marks it IDLE (its owner, or its recoverer). */
void shmd__lane_reset(struct shmd__lane *l);
/* Rolls back the unfinished allocator steps of dead lanes other than x and t's own (recoverers of
 * x that died inside a free step of x's), so that x's counters are whole before x's frees are
 * finished. The caller owns x's `live` mutex. */
void shmd__settle_dead_steps(shmd_store_t *s, struct shmd__thr *t, uint32_t x);

/* Slot i of the calling thread's reservations (i < t->resv_room). */
static inline uint64_t *shmd__resv_slot(struct shmd__thr *t, uint64_t i) {
  return i < SHMD__RESV_CAP ? &t->lane->resv[i] : &shmd__ext_resv(t->ext)[i - SHMD__RESV_CAP];
}

/* What the layers above the segment layer hand it when a store is opened (process memory, never
 * shared memory): the allocator's callbacks. Every pointer must be set. */
struct shmd__store_ops {
  const struct shmd__alloc_ops *alloc;
  const struct shmd__tx_ops *tx;
};

/* Opens (creating unless SHMD_OPEN_NOCREATE) store `name` as shmd_open() documents, with the
 * callbacks `ops` of the layers above recorded in the handle before anything needs them (segment
 * creation, recovery of dead lanes). The public shmd_open() is defined by the layer that composes
 * the callbacks (tx/open.c). */
int shmd__store_open(const char *name, const shmd_options_t *opt, const struct shmd__store_ops *ops,
                     shmd_store_t **out);

/* ---- between the segment layer's own files (store.c and lane.c; no other layer calls these) ---- */
/* lane.c: the process-wide setup of lanes (the thread key, the fork handler), once per process. */
void shmd__lane_global_init(void);
/* lane.c: initialises lane l's robust process-shared `live` mutex (store creation, after a
 * reboot). 0 or SHMD_EIO. */
int shmd__lane_init_mutex(struct shmd__lane *l);
/* lane.c: 1 when some lane of s may still have a live owner in this pid namespace (store.c's boot
 * id rule), else 0. */
int shmd__lanes_owned(shmd_store_t *s);
/* lane.c: the calling thread gives up its lane of s (shmd_close, shmd_thread_detach). */
void shmd__thr_detach(shmd_store_t *s);
/* store.c: drops one reference to the handle (a thread that held a lane); the last one frees it. */
void shmd__store_unref(shmd_store_t *s);
/* store.c: in a forked child (lane.c's fork handler), drops the spare segments inherited from the
 * parent and resets the handles' locks and references: only the forking thread exists. */
void shmd__stores_after_fork(void);

/* FNV-1a, for header checksums (corruption detection only: anyone who can write a header can
 * recompute it; see segments/store.c, "Validation of what a file says about itself"). */
uint64_t shmd__fnv1a(const void *data, size_t len);

/* Bytes of all the store's segments (as the manifest lists them now): a bound for walks whose own
 * count is a word of the store, so that a damaged count cannot make them run for ever (no
 * structure holds more entries than the store has bytes for). Cannot fail. */
uint64_t shmd__store_bytes(shmd_store_t *s);

/* Whether the `len` bytes at p touch the part of the layout that never changes after creation and
 * was validated once, when the store or segment was attached: a segment's header page (the first
 * SHMD__HDR_BYTES) or the fixed part of the manifest (up to its lock words). Recovery applies logs
 * and releases locks that a dead lane recorded; it must never write there, whatever a damaged or
 * crafted lane says. Cannot fail. */
int shmd__ptr_in_fixed_layout(shmd_store_t *s, shmd_ptr_t p, size_t len);

#endif
