/* SPDX-License-Identifier: MIT */
/*
 * Lanes, locks, allocator steps, rollback and recovery: the segment layer's part of the crash
 * protocol of design §6. Transactions themselves (shmd_tx_*: what a lane records, commit, abort,
 * extension blocks, deferred frees) are the transaction layer's (tx/tx.c).
 *
 * Design
 * ------
 * Every thread that touches a store owns a lane in segment 0. It proves it is alive by holding the
 * lane's robust process-shared mutex (`live`) for as long as it owns the lane; the kernel marks
 * that mutex "owner died" when the thread or its process ends without releasing it.
 *
 * Locks (shmd_lock_t) are not pthread mutexes but one 32-bit futex word holding the holder's lane
 * index + 1 and a waiters bit: taking an uncontended lock is one compare-and-swap, releasing it one
 * exchange, about half the cost of a robust mutex (measured: docs/architecture.md). A waiter spins
 * briefly, then sleeps on the futex in 10 ms slices; after each slice it checks whether the holder
 * lane's `live` mutex is still held by a live thread (a non-blocking trylock; an EBUSY is judged
 * further, see "Who holds a lane": a holder that is no live owner of the store is declared dead).
 * If the trylock answers EOWNERDEAD (or succeeds: nobody owns the lane), the holder is dead and the
 * waiter, now owning `live`, recovers the lane:
 *
 *   1. roll back the allocator step's undo log (al_log) and release the allocator locks it held;
 *   2. if the operation was ACTIVE, roll back its undo log (op_log) newest-first, then mark the lane
 *      ABORTING (so the rollback is never repeated once the locks are released);
 *   3. release every lock the lane recorded in `held` (only those whose word still names the lane);
 *   4. free the operation's reservations (ABORTING) or finish its deferred frees (COMMITTED). Each
 *      free is an allocator step of the recovering thread that, in the same logged step, decrements
 *      the dead lane's reservation count or advances its free counter: killed half-way, recovery
 *      restarts where it stopped and never frees a block twice. This step, with the adoption of
 *      the lane's thread heap and the release of its extension blocks, is the transaction layer's:
 *      this file calls it through the store's tx_ops (lane_recover, tx/tx.c), never by name;
 *   5. mark the lane IDLE and unlock `live`; the lane can be claimed again.
 *
 * Rolling back words protected by locks the recoverer does not hold is safe: every such lock names
 * the dead lane, and any thread waiting for it finds `live` busy (held by the recoverer) and keeps
 * waiting until step 3 releases it. Step 4 needs allocator locks; a recoverer that is itself inside
 * an allocator step defers it (`pending`) to the end of its own step.
 *
 * Operations log before they store: the undo entry (shmd_ptr_t of the word, old value) is written,
 * the log length is published with release order, and a release fence separates it from the data
 * store, so that a process killed at any instruction has never made a change that its log does not
 * cover. Commit is the single store state = COMMITTED.
 *
 * Lock order: store -> keyspace stripes by index -> containers -> roots -> allocator class locks by
 * (segment, class) -> buddy -> grow. Locks are held until the outermost commit or abort (two-phase),
 * allocator locks only for one allocator step.
 *
 * A wait for a live holder is unbounded for application calls; a checker's (lockwait.h) and a
 * handle's with shmd_set_lock_wait() end with SHMD_EBUSY naming the holder.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crash.h"
#include "err.h"
#include "lockwait.h"
#include "os.h"
#include "store_int.h"

uint64_t shmd__fork_gen;
__attribute__((tls_model("initial-exec"))) _Thread_local struct shmd__thr *shmd__tl_thr;

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_key_t g_key; /* the thread's list of shmd__thr, one per store */

/* ---------------------------------------------------------------------------------------------- */
/* Undo logs. */

static int undo_one(shmd_store_t *s, const struct shmd__undo *u) {
  void *a;
  shmd_ptr_t p = {u->ptr};
  if ((shmd_ptr_offset(p) & 7) != 0 || shmd_resolve_checked(s, p, 8, &a) != 0)
    return SHMD_CORRUPT("undo log entry points outside the store");
  /* No operation logs a word of a segment header or of the manifest's fixed part (they never
   * change): such an entry is forged, and applying it would change the layout after its
   * validation. */
  if (shmd__ptr_in_fixed_layout(s, p, 8))
    return SHMD_CORRUPT("undo log entry points into a segment header or the manifest's fixed part");
  *(uint64_t *)a = u->old;
  return 0;
}

static int rollback(shmd_store_t *s, struct shmd__undo *log, uint32_t n, uint32_t cap) {
  if (n > cap)
    return SHMD_CORRUPT("undo log length beyond its capacity");
  for (uint32_t i = n; i-- > 0;) {
    int rc = undo_one(s, &log[i]);
    if (rc)
      return rc;
    SHMD_CRASH_POINT("undo.word");
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/*
 * Extension blocks (their essay is in tx/tx.c, which grows and releases them): what recovery needs
 * to read a lane's records wherever they live, the lane or its block.
 */

struct shmd__lane_ext *shmd__lane_ext_view(shmd_store_t *s, struct shmd__lane *x, int *rc) {
  *rc = 0;
  uint64_t v = __atomic_load_n(&x->ext, __ATOMIC_ACQUIRE);
  if (v == 0)
    return NULL;
  void *a;
  if ((v & 7) || shmd_resolve_checked(s, (shmd_ptr_t){v}, sizeof(struct shmd__lane_ext), &a)) {
    *rc = SHMD_CORRUPT("lane extension block outside the store");
    return NULL;
  }
  struct shmd__lane_ext *e = a;
  if (e->magic != SHMD__EXT_MAGIC || e->op_cap > SHMD__EXT_MAX || e->held_cap > SHMD__EXT_MAX ||
      e->resv_cap > SHMD__EXT_MAX || e->dfree_cap > SHMD__EXT_MAX ||
      shmd_resolve_checked(s, (shmd_ptr_t){v}, shmd__ext_bytes(e->op_cap, e->held_cap, e->resv_cap, e->dfree_cap),
                           &a)) {
    *rc = SHMD_CORRUPT("lane extension block is damaged");
    return NULL;
  }
  return e;
}

/* Thread heaps (store_int.h): a dead lane's reservation or deferred free i, for alloc/heap.c. */
uint64_t *shmd__lane_record(shmd_store_t *s, struct shmd__lane *x, int which, uint64_t i) {
  int rc;
  struct shmd__lane_ext *e = shmd__lane_ext_view(s, x, &rc);
  if (rc)
    return NULL;
  if (which == 0)
    return shmd__vslot(x->resv, SHMD__RESV_CAP, e ? shmd__ext_resv(e) : NULL, e ? e->resv_cap : 0, i);
  return shmd__vslot(x->dfree, SHMD__DFREE_CAP, e ? shmd__ext_dfree(e) : NULL, e ? e->dfree_cap : 0, i);
}

int shmd__lane_rollback_op(shmd_store_t *s, struct shmd__lane *x, struct shmd__lane_ext *e, uint32_t n) {
  uint32_t cap = s->man->op_log_cap;
  if (n <= cap)
    return rollback(s, x->op_log, n, cap);
  if (e == NULL || n - cap > e->op_cap)
    return SHMD_CORRUPT("undo log length beyond its capacity");
  int rc = rollback(s, shmd__ext_op(e), n - cap, e->op_cap);
  return rc ? rc : rollback(s, x->op_log, cap, cap);
}

/* ---------------------------------------------------------------------------------------------- */
/* Locks. */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

void shmd__futex_wake_all(uint32_t *w) { shmd__os_futex_wake(w, 0x7fffffff); }

/* Releases the lock at `lockp` if its word still names lane `idx`. */
static void release_if_owner(shmd_store_t *s, uint64_t lockp, uint32_t idx) {
  void *a;
  if (shmd_resolve_checked(s, (shmd_ptr_t){lockp}, sizeof(uint32_t), &a) != 0 || (lockp & 3) ||
      shmd__ptr_in_fixed_layout(s, (shmd_ptr_t){lockp}, sizeof(uint32_t))) /* no lock lives there */
    return;
  uint32_t *w = a;
  uint32_t cur = __atomic_load_n(w, __ATOMIC_ACQUIRE);
  while (SHMD__LOCK_OWNER(cur) == idx + 1) {
    if (__atomic_compare_exchange_n(w, &cur, 0, 0, __ATOMIC_RELEASE, __ATOMIC_ACQUIRE)) {
      shmd__futex_wake_all(w);
      break;
    }
  }
}

static int recover_locked(shmd_store_t *s, struct shmd__thr *t, uint32_t idx, int can_free);

/* Tries to take lane l's liveness mutex without blocking. Returns 1 when this thread now owns it
 * (the previous owner is dead, made consistent, or there was none), 0 when a live thread (its
 * owner, or a recoverer) holds it, or SHMD_ECORRUPT when the mutex is unusable. */
#ifdef __GLIBC__
/* The kind word glibc stores in a mutex made by shmd__lane_init_mutex(). glibc dispatches on it
 * (normal, robust, priority-inheriting, lock-elided with TSX instructions...), so a damaged one
 * sends pthread_mutex_trylock() down any of those paths: found by the mutation loop, a kind with
 * the elision bit executed xbegin, SIGILL on a CPU without TSX. It is checked first. */
static int g_live_kind = -1;
static pthread_once_t g_kind_once = PTHREAD_ONCE_INIT;
static void live_kind_init(void) {
  pthread_mutex_t m;
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  if (pthread_mutex_init(&m, &a) == 0) {
    g_live_kind = m.__data.__kind;
    pthread_mutex_destroy(&m);
  }
  pthread_mutexattr_destroy(&a);
}
#endif

static int live_trylock(struct shmd__lane *l) {
#ifdef __GLIBC__
  pthread_once(&g_kind_once, live_kind_init);
  if (__atomic_load_n(&l->live.m.__data.__kind, __ATOMIC_RELAXED) != g_live_kind)
    return SHMD_CORRUPT("lane liveness mutex is damaged (its kind word)");
#endif
  int r = pthread_mutex_trylock(&l->live.m);
  if (r == EBUSY)
    return 0;
  if (r == EOWNERDEAD)
    pthread_mutex_consistent(&l->live.m);
  else if (r != 0)
    return SHMD_CORRUPT("lane liveness mutex unusable");
  return 1;
}

/* The calling thread as a lane owner, computed before its trylock so that recording it after is
 * three stores. */
struct owner_id {
  uint64_t pidns;
  uint32_t pid, tid;
};
static struct owner_id owner_me(void) { return (struct owner_id){shmd__os_pidns(), shmd__os_pid(), shmd__os_tid()}; }

/* Records `me` as the owner of lane l, whose `live` mutex it has just taken. The tid is stored
 * last: it is what holder_verdict() matches. */
static void lane_claim_owner(struct shmd__lane *l, struct owner_id me) {
  __atomic_store_n(&l->owner_pidns, me.pidns, __ATOMIC_RELAXED);
  __atomic_store_n(&l->owner_pid, me.pid, __ATOMIC_RELAXED);
  __atomic_store_n(&l->owner_tid, me.tid, __ATOMIC_RELEASE);
}

/* Forgets lane l's owner (released, or recovered by a thread that does not keep the lane). */
static void lane_clear_owner(struct shmd__lane *l) {
  __atomic_store_n(&l->owner_tid, 0, __ATOMIC_RELEASE);
  __atomic_store_n(&l->owner_pid, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&l->owner_pidns, 0, __ATOMIC_RELAXED);
}

/*
 * Who holds a lane
 * ----------------
 * A robust mutex answers EOWNERDEAD only when the kernel saw its holder die. A `live` mutex that
 * answers EBUSY although no live thread of this store holds it would make every waiter for the
 * lane's locks wait for ever: after a reboot of a file-backed store whose lanes were not
 * re-initialised (store.c: a boot id that is unknown on one side, or a recorded owner that still
 * looks alive), or when someone wrote the mutex (a forged or damaged lane). So an EBUSY is judged
 * from the mutex word itself (glibc: the robust-futex word of the kernel's ABI, holder tid |
 * FUTEX_WAITERS | FUTEX_OWNER_DIED) and the owners the lanes record (pid, tid, pid namespace):
 *
 *   - the holder's tid is the recorded owner of some lane (itself, or the recoverer's own lane),
 *     recorded from our pid namespace, and that thread of that process exists: a live holder.
 *     Recorded from another or an unknown namespace: the numbers mean nothing here, taken as live;
 *   - it is recorded but that owner is gone, and no thread with the tid exists: gone, at once;
 *   - no lane records it as a live owner: gone once a waiter has seen the very same word for
 *     HOLDER_GRACE_NS. The only legitimate holders without a record are a thread between taking
 *     `live` and recording itself (lane_claim_owner: three stores after the trylock returns) and one between
 *     clearing its record and unlocking (thr_release, its lane idle: taking that over is harmless);
 *     the grace covers them being descheduled.
 *
 * A gone holder is declared dead the way the kernel would have done it: the word goes from the
 * value judged to FUTEX_OWNER_DIED (keeping FUTEX_WAITERS) by compare-and-swap, so exactly one
 * trylock then answers EOWNERDEAD and the lane is recovered as usual; a word that changed in
 * between is left alone. A live holder is waited for (application calls) or reported after a
 * bound (checkers, shmd_set_lock_wait()). Without glibc, whose word layout this relies on, only
 * EOWNERDEAD counts.
 */
#define HOLDER_GRACE_NS (UINT64_C(2) * 1000 * 1000 * 1000)

/* A waiter's memory of a holder without a record: which lane, which word, seen since when. */
struct suspect {
  uint32_t lane, word;
  uint64_t since_ns;
};

#ifdef __GLIBC__
#define ROBUST_TID_MASK 0x3fffffffu   /* FUTEX_TID_MASK (linux/futex.h) */
#define ROBUST_OWNER_DIED 0x40000000u /* FUTEX_OWNER_DIED */
#define ROBUST_WAITERS 0x80000000u    /* FUTEX_WAITERS */

static inline uint32_t *live_word(struct shmd__lane *l) { return (uint32_t *)(void *)&l->live.m.__data.__lock; }

enum { HOLDER_LIVE, HOLDER_GONE, HOLDER_UNRECORDED };

/* Judges the holder of lane x's `live` mutex from its word (see above). */
static int holder_verdict(shmd_store_t *s, uint32_t x, uint32_t word) {
  uint32_t tid = word & ROBUST_TID_MASK;
  if (tid == 0 || (word & ROBUST_OWNER_DIED) || tid == shmd__os_tid())
    return HOLDER_LIVE; /* changing under us (look again later), or this very thread */
  uint64_t ns = shmd__os_pidns();
  if (ns == 0)
    return HOLDER_LIVE; /* our own namespace is unknown: no number can be judged */
  uint32_t n = s->man->lane_count;
  int recorded = 0;
  for (uint32_t k = 0; k < n; k++) {
    struct shmd__lane *y = shmd__lane_at(s, (x + k) % n);
    if (__atomic_load_n(&y->owner_tid, __ATOMIC_ACQUIRE) != tid)
      continue;
    uint32_t pid = __atomic_load_n(&y->owner_pid, __ATOMIC_RELAXED);
    if (__atomic_load_n(&y->owner_pidns, __ATOMIC_RELAXED) != ns || pid == 0 || shmd__os_thread_alive(pid, tid) != 0)
      return HOLDER_LIVE;
    recorded = 1;
  }
  int alive = shmd__os_thread_alive(0, tid);
  if (alive < 0)
    return HOLDER_LIVE;
  return recorded && alive == 0 ? HOLDER_GONE : HOLDER_UNRECORDED;
}
#endif

/* Lane x's `live` answered EBUSY. Returns 1 when its holder is gone and was declared dead (a
 * trylock now answers EOWNERDEAD), else 0. `sus` is the waiter's memory of a holder without a
 * record; NULL (no waiting caller) judges only what is certain at once. */
static int holder_gone(shmd_store_t *s, uint32_t x, struct suspect *sus) {
#ifdef __GLIBC__
  struct shmd__lane *l = shmd__lane_at(s, x);
  uint32_t *lw = live_word(l);
  uint32_t word = __atomic_load_n(lw, __ATOMIC_ACQUIRE);
  int v = holder_verdict(s, x, word);
  if (v == HOLDER_UNRECORDED && sus != NULL) {
    uint64_t now = shmd__os_now_ns();
    if (sus->lane != x || sus->word != word) {
      *sus = (struct suspect){x, word, now};
      return 0;
    }
    if (now - sus->since_ns < HOLDER_GRACE_NS)
      return 0;
    v = HOLDER_GONE;
  } else if (sus != NULL) {
    sus->lane = UINT32_MAX;
  }
  if (v != HOLDER_GONE)
    return 0;
  uint32_t dead = (word & ROBUST_WAITERS) | ROBUST_OWNER_DIED;
  if (!__atomic_compare_exchange_n(lw, &word, dead, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
    return 0;
  if (dead & ROBUST_WAITERS)
    shmd__os_futex_wake(lw, 1); /* as the kernel does for a dead holder */
  return 1;
#else
  (void)s, (void)x, (void)sus;
  return 0;
#endif
}

/* Releases the `live` mutex of a lane this thread recovered but does not keep. */
static void live_unlock_recovered(struct shmd__lane *l) {
  lane_clear_owner(l);
  pthread_mutex_unlock(&l->live.m);
}

/*
 * Checks whether lane `idx` has a live owner; if not, recovers it. Returns 1 if it recovered (or
 * found the lane ownerless), 0 if the owner is alive or somebody else is recovering, 2 if it took
 * the lock word `w` (not NULL) over, or a status. While this thread holds the ownerless lane's
 * `live` mutex no thread can own that lane, so a lock word that still names it after recovery is
 * stale (a lock initialised to garbage, or a word the lane never recorded) and is taken over.
 * A holder of `live` that is not a live owner (see "Who holds a lane") counts as dead; `sus` as
 * for holder_gone().
 */
static int check_dead(shmd_store_t *s, struct shmd__thr *t, uint32_t idx, uint32_t *w, struct suspect *sus) {
  if (idx >= s->man->lane_count)
    return SHMD_CORRUPT("lock names a lane that does not exist");
  if (idx == t->lane_idx)
    return 0;
  struct shmd__lane *l = shmd__lane_at(s, idx);
  int r = live_trylock(l);
  if (r == 0 && holder_gone(s, idx, sus))
    r = live_trylock(l);
  if (r <= 0)
    return r;
  int rc = recover_locked(s, t, idx, !t->in_al);
  if (rc >= 0 && w != NULL) {
    uint32_t cur = __atomic_load_n(w, __ATOMIC_RELAXED);
    while (SHMD__LOCK_OWNER(cur) == idx + 1) {
      if (__atomic_compare_exchange_n(w, &cur, (t->lane_idx + 1) | SHMD__LOCK_WAITERS, 0, __ATOMIC_ACQUIRE,
                                      __ATOMIC_RELAXED)) {
        rc = 2;
        break;
      }
    }
  }
  live_unlock_recovered(l);
  return rc < 0 ? rc : rc == 2 ? 2 : 1;
}

/* A bounded wait for lock word w ran out (started at start_ns): SHMD_EBUSY naming the holder. */
static int held_too_long(shmd_store_t *s, uint32_t owner, uint64_t start_ns) {
  uint64_t waited = shmd__os_now_ns() - start_ns;
  unsigned long long ds = (unsigned long long)(waited / 100000000u); /* tenths of a second */
  struct shmd__lane *l = owner >= 1 && owner <= s->man->lane_count ? shmd__lane_at(s, owner - 1) : NULL;
  uint32_t pid = l ? __atomic_load_n(&l->owner_pid, __ATOMIC_RELAXED) : 0;
  if (pid != 0)
    shmd__set_detail("lock held by pid %u, lane %u, for %llu.%llu s", pid, owner - 1, ds / 10, ds % 10);
  else
    shmd__set_detail("lock held by lane %u (no owner recorded), for %llu.%llu s", owner - 1, ds / 10, ds % 10);
  return SHMD_EBUSY;
}

int shmd__lock_slow(shmd_store_t *s, struct shmd__thr *t, uint32_t *w) {
  uint32_t me = t->lane_idx + 1;
  uint32_t cur = __atomic_load_n(w, __ATOMIC_RELAXED);
  if (SHMD__LOCK_OWNER(cur) == me)
    return 1;
  for (int spin = 0; spin < 200; spin++) {
    cpu_relax();
    cur = __atomic_load_n(w, __ATOMIC_RELAXED);
    if (cur == 0 && __atomic_compare_exchange_n(w, &cur, me, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
      return 0;
  }
  /* The bound of this wait: the thread's checker deadline, the handle's shmd_set_lock_wait(). */
  uint64_t start = shmd__os_now_ns(), deadline = t->wait_deadline_ns;
  uint64_t bound = __atomic_load_n(&s->lock_wait_ns, __ATOMIC_RELAXED);
  if (bound != 0 && (deadline == 0 || start + bound < deadline))
    deadline = start + bound;
  struct suspect sus = {UINT32_MAX, 0, 0};
  for (;;) {
    cur = __atomic_load_n(w, __ATOMIC_RELAXED);
    if (cur == 0) {
      /* Others may still sleep: keep the waiters bit so our release wakes them. */
      if (__atomic_compare_exchange_n(w, &cur, me | SHMD__LOCK_WAITERS, 0, __ATOMIC_ACQUIRE,
                                      __ATOMIC_RELAXED))
        return 0;
      continue;
    }
    if (!(cur & SHMD__LOCK_WAITERS)) {
      if (!__atomic_compare_exchange_n(w, &cur, cur | SHMD__LOCK_WAITERS, 0, __ATOMIC_RELAXED,
                                       __ATOMIC_RELAXED))
        continue;
      cur |= SHMD__LOCK_WAITERS;
    }
    shmd__os_futex_wait(w, cur, 10 * 1000 * 1000);
    uint32_t now = __atomic_load_n(w, __ATOMIC_RELAXED);
    if (now != 0 && SHMD__LOCK_OWNER(now) == SHMD__LOCK_OWNER(cur)) {
      uint32_t owner = SHMD__LOCK_OWNER(now);
      if (owner == 0 || owner > s->man->lane_count) {
        /* A lock word naming no lane can only come from corruption; take the lock over. */
        if (__atomic_compare_exchange_n(w, &now, me | SHMD__LOCK_WAITERS, 0, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED))
          return 0;
        continue;
      }
      int rc = check_dead(s, t, owner - 1, w, &sus);
      if (rc < 0)
        return rc;
      if (rc == 2)
        return 0;
    }
    if (deadline != 0 && now != 0 && shmd__os_now_ns() >= deadline)
      return held_too_long(s, SHMD__LOCK_OWNER(now), start);
  }
}

/* ---------------------------------------------------------------------------------------------- */
/* Bounded waits (lockwait.h, shmd_set_lock_wait()). */

void shmd_set_lock_wait(shmd_store_t *store, uint32_t max_ms) {
  if (store != NULL)
    __atomic_store_n(&store->lock_wait_ns, (uint64_t)max_ms * 1000000u, __ATOMIC_RELAXED);
}

uint64_t shmd__check_wait_begin(shmd_store_t *s) {
  int rc;
  struct shmd__thr *t = shmd__thr(s, &rc);
  if (t == NULL)
    return 0;
  uint64_t saved = t->wait_deadline_ns, d = shmd__os_now_ns() + (uint64_t)SHMD__CHECK_WAIT_MS * 1000000u;
  if (saved == 0 || d < saved)
    t->wait_deadline_ns = d;
  return saved;
}

void shmd__check_wait_end(shmd_store_t *s, uint64_t saved) {
  int rc;
  struct shmd__thr *t = shmd__thr(s, &rc);
  if (t != NULL)
    t->wait_deadline_ns = saved;
}

/* ---------------------------------------------------------------------------------------------- */
/* Allocator steps. */

int shmd__al_lock(shmd_store_t *s, struct shmd__thr *t, uint32_t seg, shmd_lock_t *lock) {
  struct shmd__lane *l = t->lane;
  uint32_t n = l->al_held_count;
  if (n >= SHMD__AL_HELD_CAP)
    return SHMD_CORRUPT("allocator step takes too many locks");
  /* Record the intent before taking the lock, so a recoverer can always release it. */
  l->al_held[n] = (((uint64_t)seg + 1) << SHMD_PTR_OFFSET_BITS) |
                  (uint64_t)((unsigned char *)lock - s->map->base[seg + 1]);
  t->al_addr[n] = &lock->word;
  __atomic_store_n(&l->al_held_count, n + 1, __ATOMIC_RELEASE);
  t->in_al = 1;
  int rc = shmd__lock(s, t, &lock->word);
  if (rc < 0) {
    __atomic_store_n(&l->al_held_count, n, __ATOMIC_RELEASE);
    if (n == 0)
      t->in_al = 0;
    return rc;
  }
  return 0;
}

static inline void al_release_locks(struct shmd__thr *t) {
  struct shmd__lane *l = t->lane;
  uint32_t n = l->al_held_count;
  /* Unlocking before the count is cleared is fine: a recoverer releases only words that still
   * name this lane. */
  for (uint32_t i = n; i-- > 0;)
    shmd__unlock(t->al_addr[i]);
  __atomic_store_n(&l->al_held_count, 0, __ATOMIC_RELEASE);
  t->in_al = 0;
}

void shmd__al_commit(shmd_store_t *s, struct shmd__thr *t) {
  SHMD_CRASH_POINT("alloc.step.before_commit");
  __atomic_store_n(&t->lane->al_len, 0, __ATOMIC_RELEASE);
  SHMD_CRASH_POINT("alloc.step.after_commit");
  al_release_locks(t);
  if (__builtin_expect(t->npending != 0, 0))
    shmd__run_pending(s, t);
  if (__builtin_expect(t->release_due, 0))
    s->alloc_ops->release(s, t);
}

void shmd__al_abort(shmd_store_t *s, struct shmd__thr *t) {
  struct shmd__lane *l = t->lane;
  (void)rollback(s, l->al_log, l->al_len, SHMD__AL_LOG_CAP);
  __atomic_store_n(&l->al_len, 0, __ATOMIC_RELEASE);
  al_release_locks(t);
}

/* ---------------------------------------------------------------------------------------------- */
/* Recovery. */

void shmd__lane_reset(struct shmd__lane *l) {
  l->op_len = 0;
  l->dfree_count = 0;
  l->held_count = 0;
  l->resv_count = 0;
  l->dfree_done = 0;
  __atomic_store_n(&l->state, SHMD__LANE_IDLE, __ATOMIC_RELEASE);
}

/*
 * A recoverer that died inside the allocator step freeing one of x's blocks left that step (which
 * also changed x's reservation or free counter) in its own allocator log. Before x's frees are
 * finished, every such dead step is rolled back, or the counter would be read half-changed and a
 * block freed twice or never. A live lane cannot be touching x: only x's recoverer does, and that
 * is the caller, who holds x's `live`.
 */
void shmd__settle_dead_steps(shmd_store_t *s, struct shmd__thr *t, uint32_t x) {
  for (uint32_t j = 0; j < s->man->lane_count; j++) {
    if (j == x || j == t->lane_idx)
      continue;
    struct shmd__lane *l = shmd__lane_at(s, j);
    if (__atomic_load_n(&l->al_len, __ATOMIC_ACQUIRE) == 0)
      continue;
    if (live_trylock(l) != 1)
      continue;
    (void)recover_locked(s, t, j, 0); /* rolls its step back; its own frees are queued */
    live_unlock_recovered(l);
  }
}

/*
 * Recovers lane `idx`, whose `live` mutex the caller holds (so no live thread owns the lane).
 * Steps 1-3 of the essay here; step 4 (the lane's frees, its heap, its extension blocks) is the
 * transaction layer's, reached through the store's tx_ops. Only if `can_free`: otherwise the lane
 * is queued on t->pending when step 4 has work to do.
 */
static int recover_locked(shmd_store_t *s, struct shmd__thr *t, uint32_t idx, int can_free) {
  struct shmd__lane *x = shmd__lane_at(s, idx);
  int counted = 0;
  uint32_t al_len = __atomic_load_n(&x->al_len, __ATOMIC_ACQUIRE);
  if (al_len > 0 || x->al_held_count > 0) {
    int rc = rollback(s, x->al_log, al_len, SHMD__AL_LOG_CAP);
    if (rc)
      return rc;
    __atomic_store_n(&x->al_len, 0, __ATOMIC_RELEASE);
    uint32_t n = x->al_held_count;
    if (n > SHMD__AL_HELD_CAP)
      n = SHMD__AL_HELD_CAP;
    for (uint32_t i = n; i-- > 0;)
      release_if_owner(s, x->al_held[i], idx);
    x->al_held_count = 0;
    counted = 1;
  }
  uint32_t st = __atomic_load_n(&x->state, __ATOMIC_ACQUIRE);
  int erc;
  struct shmd__lane_ext *e = shmd__lane_ext_view(s, x, &erc);
  if (erc)
    return erc;
  if (st == SHMD__LANE_ACTIVE) {
    int rc = shmd__lane_rollback_op(s, x, e, __atomic_load_n(&x->op_len, __ATOMIC_ACQUIRE));
    if (rc)
      return rc;
    __atomic_store_n(&x->op_len, 0, __ATOMIC_RELEASE);
    SHMD_CRASH_POINT("recover.rolled_back");
    __atomic_store_n(&x->state, SHMD__LANE_ABORTING, __ATOMIC_RELEASE);
    st = SHMD__LANE_ABORTING;
    counted = 1;
  } else if (st == SHMD__LANE_COMMITTED) {
    counted = 1;
  } else if (st != SHMD__LANE_IDLE && st != SHMD__LANE_ABORTING) {
    return SHMD_CORRUPT("lane state word is invalid");
  }
  /* A count beyond the lane's and its extension's capacity is damage: only recorded slots can
   * name locks (and only words that still name this lane are released), so the walk stops at the
   * capacity instead of counting down from up to 2^32 (found by the fuzzer: a 30 s open). */
  uint32_t n = x->held_count;
  uint64_t held_cap = SHMD__HELD_CAP + (e ? e->held_cap : 0);
  if (n > held_cap)
    n = (uint32_t)held_cap;
  for (uint32_t i = n; i-- > 0;) {
    uint64_t *h = shmd__held_slot(x, e, i);
    if (h != NULL)
      release_if_owner(s, *h, idx);
  }
  x->held_count = 0;
  if (n)
    counted = 1;
  if (counted)
    __atomic_add_fetch(&s->man->recoveries, 1, __ATOMIC_RELAXED);
  /* Step 4, the transaction layer's (tx/tx.c): the lane's heap, frees and extension blocks. */
  int rc = s->tx_ops->lane_recover(s, t, idx, can_free);
  if (rc == SHMD__RECOVER_LATER) {
    if (t->npending < sizeof t->pending / sizeof t->pending[0])
      t->pending[t->npending++] = idx;
    rc = 0;
  }
  return rc;
}

void shmd__run_pending(shmd_store_t *s, struct shmd__thr *t) {
  while (t->npending > 0 && !t->in_al) {
    uint32_t idx = t->pending[--t->npending];
    struct shmd__lane *l = shmd__lane_at(s, idx);
    if (live_trylock(l) != 1)
      continue; /* claimed or being recovered by someone else, who finishes it */
    (void)recover_locked(s, t, idx, 1);
    live_unlock_recovered(l);
  }
}

int shmd_recover(shmd_store_t *store) {
  int rc;
  struct shmd__thr *t = shmd__thr(store, &rc);
  if (t == NULL)
    return rc;
  if (t->in_al || t->depth > 0)
    return SHMD_EBUSY;
  int count = 0;
  for (uint32_t i = 0; i < store->man->lane_count; i++) {
    if (i == t->lane_idx)
      continue;
    rc = check_dead(store, t, i, NULL, NULL);
    if (rc < 0)
      return rc;
    count += rc;
  }
  return count;
}

/* ---------------------------------------------------------------------------------------------- */
/* Claiming and releasing lanes. */

static void thread_exit(void *head);

static void once_init(void) {
  pthread_key_create(&g_key, thread_exit);
}

/* Releases thread context t (its lane) and drops its reference on the store. */
static void thr_release(struct shmd__thr *t) {
  shmd_store_t *s = t->store;
  if (t->fork_gen == shmd__fork_gen) {
    /* The transaction layer ends an open transaction and returns what the thread's heap caches
     * (tx/tx.c) while the lane is still this thread's. */
    s->tx_ops->thread_end(s, t);
    lane_clear_owner(t->lane);
    pthread_mutex_unlock(&t->lane->live.m);
    if (shmd__tl_thr == t)
      shmd__tl_thr = NULL;
    free(t);
    shmd__store_unref(s);
  }
  /* A context inherited across fork belongs to the parent's thread: leave its lane alone. */
}

static void thread_exit(void *head) {
  struct shmd__thr *t = head;
  while (t) {
    struct shmd__thr *next = t->next_of_thread;
    thr_release(t);
    t = next;
  }
  shmd__tl_thr = NULL;
}

struct shmd__thr *shmd__thr_slow(shmd_store_t *s, int *rc) {
  pthread_once(&g_once, once_init);
  struct shmd__thr *head = pthread_getspecific(g_key), **pp = &head;
  for (struct shmd__thr *t = head; t; pp = &t->next_of_thread, t = t->next_of_thread) {
    if (t->store == s && t->fork_gen == shmd__fork_gen) {
      shmd__tl_thr = t;
      return t;
    }
  }
  (void)pp;
  if (__atomic_load_n(&s->closing, __ATOMIC_ACQUIRE)) {
    *rc = SHMD_EINVAL;
    return NULL;
  }
  struct shmd__thr *t = calloc(1, sizeof *t);
  if (t == NULL) {
    *rc = SHMD_ENOMEM;
    return NULL;
  }
  t->store = s;
  t->fork_gen = shmd__fork_gen;
  uint32_t n = s->man->lane_count;
  struct owner_id me = owner_me();
  uint32_t start = me.tid % n;
  for (uint32_t k = 0; k < n; k++) {
    uint32_t i = (start + k) % n;
    struct shmd__lane *l = shmd__lane_at(s, i);
    if (live_trylock(l) != 1)
      continue;
    /* Recorded at once, so that a waiter judging who holds `live` finds this thread (lane.c,
     * "Who holds a lane"), also while it recovers the lane below. */
    lane_claim_owner(l, me);
    t->lane = l;
    t->lane_idx = i;
    shmd__thr_set_ext(t, NULL);
    /* A lane left by a dead owner (or reset after a reboot) is recovered before it is reused; its
     * leftover frees run as steps of this very lane. */
    int rr = recover_locked(s, t, i, 1);
    if (rr < 0) {
      live_unlock_recovered(l);
      free(t);
      *rc = rr;
      return NULL;
    }
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
    /* Drop contexts inherited from before a fork (they are the parent's). */
    struct shmd__thr *keep = NULL;
    for (struct shmd__thr *o = head, *nx; o; o = nx) {
      nx = o->next_of_thread;
      if (o->fork_gen == shmd__fork_gen) {
        o->next_of_thread = keep;
        keep = o;
      }
    }
    t->next_of_thread = keep;
    pthread_setspecific(g_key, t);
    shmd__tl_thr = t;
    return t;
  }
  free(t);
  shmd__set_detail("all %u lanes of the store are owned by live threads", n);
  *rc = SHMD_ENOLANE;
  return NULL;
}

/* Releases the calling thread's context for s, if any. */
void shmd__thr_detach(shmd_store_t *s) {
  pthread_once(&g_once, once_init);
  struct shmd__thr *head = pthread_getspecific(g_key), *prev = NULL;
  for (struct shmd__thr *t = head; t; prev = t, t = t->next_of_thread) {
    if (t->store == s && t->fork_gen == shmd__fork_gen) {
      if (prev)
        prev->next_of_thread = t->next_of_thread;
      else
        pthread_setspecific(g_key, t->next_of_thread);
      thr_release(t);
      return;
    }
  }
}

void shmd_thread_detach(shmd_store_t *store) {
  if (store)
    shmd__thr_detach(store);
}

static void atfork_child(void) {
  __atomic_add_fetch(&shmd__fork_gen, 1, __ATOMIC_RELAXED);
  shmd__tl_thr = NULL;
  shmd__stores_after_fork();
}

void shmd__lane_global_init(void) {
  pthread_once(&g_once, once_init);
  static int atfork_done;
  if (!__atomic_exchange_n(&atfork_done, 1, __ATOMIC_ACQ_REL))
    (void)shmd__os_atfork_child(atfork_child); /* cannot fail short of memory, and then forks are rare */
}

/* For store.c's boot id rule: 1 when some lane may still have a live owner in this pid namespace
 * (a recorded owner pid that exists, or a `live` mutex held by a thread that exists), else 0. */
int shmd__lanes_owned(shmd_store_t *s) {
  for (uint32_t i = 0; i < s->man->lane_count; i++) {
    struct shmd__lane *l = shmd__lane_at(s, i);
    uint32_t pid = __atomic_load_n(&l->owner_pid, __ATOMIC_RELAXED);
    if (pid != 0 && shmd__os_pid_alive(pid) != 0)
      return 1;
#ifdef __GLIBC__
    uint32_t word = __atomic_load_n(live_word(l), __ATOMIC_RELAXED);
    if ((word & ROBUST_TID_MASK) != 0 && !(word & ROBUST_OWNER_DIED) &&
        shmd__os_thread_alive(0, word & ROBUST_TID_MASK) != 0)
      return 1;
#endif
  }
  return 0;
}

/* Initialises the liveness mutex of a lane (store creation and after a reboot). */
int shmd__lane_init_mutex(struct shmd__lane *l) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  int r = pthread_mutex_init(&l->live.m, &a);
  pthread_mutexattr_destroy(&a);
  return r == 0 ? 0 : SHMD_EIO;
}

