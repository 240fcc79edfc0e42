/* SPDX-License-Identifier: MIT */
/*
 * Stores: named sets of shared-memory segments.
 *
 * A store NAME lives in the directory DIR/NAME/ (DIR from the options, else $SHMDICT_DIR, else
 * /dev/shm/shmdict). Segment 0 holds the manifest, the named roots and the lanes; the store grows by
 * adding segment files and never moves an existing one, so shmd_ptr_t values stay valid for ever.
 * On tmpfs a store is POSIX shared memory; on a disk directory it persists across reboots.
 *
 * A shmd_store_t is a process-local handle. Any number of processes and threads may have the same
 * store open; every operation is safe against concurrent use and against any process being killed
 * at any instruction (see docs/architecture.md, "crash protocol").
 */
#ifndef SHMD_STORE_H
#define SHMD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "ptr.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The layout version this library writes. It opens stores with the same major and a minor less
 * than or equal to its own, and refuses anything else with SHMD_EVERSION. */
#define SHMD_LAYOUT_MAJOR 1
#define SHMD_LAYOUT_MINOR 5

/* Flags for shmd_options_t.flags. */
enum {
  SHMD_OPEN_NOCREATE = 1u << 0, /* fail with SHMD_ENOENT instead of creating a missing store */
  SHMD_OPEN_EXCL = 1u << 1,     /* fail with SHMD_EEXIST if the store already exists */
  SHMD_OPEN_POPULATE = 1u << 2, /* pre-fault every segment on attach (warm, slower attach) */
};

/*
 * Options for shmd_open(). Initialise with shmd_options_init() and then set what you need; the
 * struct_size field lets a newer library accept options from an older application.
 * Sizes are only used when the store is created; an existing store keeps its own.
 *
 * Who may open a store. A store is its owner's alone: its directory DIR/NAME and every file in
 * it must belong to the calling process's effective uid and must not be writable by group or
 * others; a symbolic link in place of the directory or of a file is never followed (SHMD_ELOOP).
 * Anything else is refused with SHMD_EPERM and a detail naming the path and the reason ("store
 * directory /x/y is owned by uid 1111, expected 2222"). This holds for root too: root opens only
 * stores root owns (run as the owner to use another user's store). DIR itself must belong to the
 * caller or root and, when others may write it, be sticky (as /tmp): then nobody else can rename
 * or replace the stores in it. When the library creates DIR it makes it 01777 if the caller is
 * root (a shared directory like /tmp) and 0700 otherwise (a directory of an ordinary user is no
 * use to others, who refuse it).
 *   A group-shared store (`group` set) is the exception, for programs of several users: its
 * directory is made 02770 and its files 0660, all of that group; on open the directory and files
 * must be of that group and give others no access, and may belong to any user (a file or
 * directory gets a group only from a member of it or from root). DIR may then also belong to the
 * group instead of the caller. Opening a group-shared store without `group`, or a private store
 * with it, is refused with SHMD_EPERM.
 */
typedef struct shmd_options_s {
  uint32_t struct_size;         /* sizeof(shmd_options_t), set by shmd_options_init() */
  uint32_t flags;               /* SHMD_OPEN_* */
  const char *dir;              /* store directory; NULL: $SHMDICT_DIR, else /dev/shm/shmdict */
  uint64_t first_segment_bytes; /* size of segment 0 (default 4 MiB: 64 lanes take about 1 MiB) */
  uint64_t segment_bytes;       /* growth step (default 64 MiB): each segment added by growth is
                                   twice the one before it, up to this size (geometric growth
                                   from a small first segment; a block that needs more gets a
                                   segment of its own size) */
  uint64_t max_store_bytes;     /* total size limit, 0 = unlimited (default 0) */
  uint32_t file_mode;           /* mode of created files (default 0600); group and others may get
                                   read bits (e.g. 0640), never write bits (SHMD_EINVAL): see `group` */
  uint32_t max_threads;         /* lanes: threads that may use the store at once (default 64) */
  const char *group;            /* NULL (default): a private store. A group name or number: a store
                                   shared by that group's members (see above; file_mode is then
                                   ignored). Added after max_threads: older applications, whose
                                   struct_size ends before it, get a private store. */
} shmd_options_t;

/* Fills *opt with the defaults. Cannot fail. */
SHMD_API void shmd_options_init(shmd_options_t *opt);

/*
 * Opens the store `name`, creating it when it does not exist (unless SHMD_OPEN_NOCREATE), and
 * stores a new handle in *out. `opt` may be NULL for defaults. Names are 1..64 bytes of
 * [A-Za-z0-9._-], not starting with '.'.
 * Attaching maps segment 0 only; other segments are mapped lazily when first used. Opening also
 * recovers what dead processes left behind (their unfinished operations are rolled back).
 * Opening also removes the spare segment files that killed processes left behind (see
 * shmd_spare_info()).
 * Flags other than the SHMD_OPEN_* above are refused with SHMD_EINVAL.
 * On failure returns SHMD_ENOENT, SHMD_EEXIST, SHMD_EINVAL, SHMD_ENOSPC, SHMD_EPERM (a store or
 * directory the caller may not use, see shmd_options_t), SHMD_EIO, SHMD_ENOTSTORE,
 * SHMD_EVERSION, SHMD_ETRUNCATED, SHMD_EFOREIGN, SHMD_ECHECKSUM, SHMD_ECORRUPT or SHMD_ELOOP (a
 * symbolic link) with the detail in shmd_errdetail(), and leaves *out unchanged. It may leave
 * behind an empty store directory it created, never a file.
 * SHMD_ECORRUPT names the file, field and value when a segment header or the manifest holds an
 * offset or size out of bounds or misaligned (validated whatever the checksum says), or when a
 * dead lane's log cannot be recovered.
 */
SHMD_API int shmd_open(const char *name, const shmd_options_t *opt, shmd_store_t **out);

/*
 * Releases the calling thread's hold on the store and drops the handle. The mapping goes away once
 * no other thread of this process still holds the store (threads release it when they exit or call
 * shmd_thread_detach()). Data stays in the store. shmd_close(NULL) is a no-op. Cannot fail.
 */
SHMD_API void shmd_close(shmd_store_t *store);

/*
 * Releases the calling thread's lane (its per-thread slot in the store) so that another thread may
 * use it. Optional: a thread's lane is released when it exits. Must not be called inside a
 * transaction. Cannot fail; a no-op if the thread holds no lane.
 */
SHMD_API void shmd_thread_detach(shmd_store_t *store);

/*
 * Removes the store's files and directory. Processes that have it open keep their mappings (as
 * with shm_unlink). `dir` may be NULL (see shmd_options_t.dir). Nothing is followed: a symbolic
 * link in place of a file is removed itself, never its target, and one in place of the store
 * directory is refused with SHMD_ELOOP. Returns SHMD_ENOENT if there is no such store, SHMD_EBUSY
 * if the directory holds files that are not the store's (they are left), SHMD_EIO / SHMD_EPERM
 * on system failure (who may remove what is the system's permissions' decision).
 */
SHMD_API int shmd_drop(const char *name, const char *dir);

/* A number that identifies this handle within the process: unique among all handles the process
 * ever opened (never reused after a close, unlike the handle's address), never 0. For caches keyed
 * by store. Cannot fail. */
SHMD_API uint64_t shmd_store_id(const shmd_store_t *store);

/* The store's name and directory as given when it was opened. Cannot fail. */
SHMD_API const char *shmd_store_name(const shmd_store_t *store);
SHMD_API const char *shmd_store_dir(const shmd_store_t *store);

/* ---------------------------------------------------------------------------------------------- */
/* Named roots: a small directory in segment 0 that maps names (1..55 bytes) to shmd_ptr_t. They
 * are how a process finds its data again after attaching. */

#define SHMD_ROOT_NAME_MAX 55

/* Sets root `name` to `p`, replacing any earlier value. Returns SHMD_EINVAL for a bad name or a
 * null `p`, SHMD_ENOSPC when the directory is full. On failure nothing is changed. */
SHMD_API int shmd_root_set(shmd_store_t *store, const char *name, shmd_ptr_t p);

/* Sets root `name` to `p` only if it does not exist; SHMD_EEXIST (and *existing set, if not
 * NULL) if it does. Lets several processes race to create a structure, and all use the winner's.
 * Inside a transaction of the caller it joins it (the root is set only if that transaction
 * commits); SHMD_EEXIST does not abort the caller's transaction, so the loser of a race can
 * shmd_tx_free() its block in the same transaction and commit. */
SHMD_API int shmd_root_set_nx(shmd_store_t *store, const char *name, shmd_ptr_t p,
                              shmd_ptr_t *existing);

/* Looks up root `name`. Returns SHMD_ENOTFOUND if absent (leaving *out unchanged). */
SHMD_API int shmd_root_get(shmd_store_t *store, const char *name, shmd_ptr_t *out);

/* Removes root `name` (does not free what it pointed to). Returns SHMD_ENOTFOUND if absent. */
SHMD_API int shmd_root_del(shmd_store_t *store, const char *name);

/* Calls fn(name, ptr, arg) for every root, in directory order, until fn returns non-zero (that
 * value is returned). Returns 0 after the last root. */
SHMD_API int shmd_root_foreach(shmd_store_t *store, int (*fn)(const char *name, shmd_ptr_t p,
                               void *arg), void *arg);

/* ---------------------------------------------------------------------------------------------- */

/* Facts about a store, filled by shmd_store_info(). A fixed layout: the library fills the whole
 * struct, reserved words with zeros; a field added later takes reserved words in place, so the
 * size and the offsets of the fields above never change and a program built against an older
 * library reads 0 where a newer one would report something. */
typedef struct shmd_store_info_s {
  uint32_t layout_major, layout_minor;
  uint32_t segments;            /* segments in the manifest */
  uint32_t lanes;               /* lane slots (max threads) */
  uint32_t lanes_in_use;        /* lanes currently owned by live threads */
  uint32_t roots;               /* named roots in use */
  uint64_t store_bytes;         /* sum of segment sizes */
  uint64_t max_store_bytes;     /* configured limit, 0 = none */
  uint64_t segment_bytes;       /* growth segment size */
  uint64_t recoveries;          /* operations of dead threads rolled back or finished */
  uint64_t created_unix;        /* creation time, seconds since the epoch */
  unsigned char uuid[16];
  uint64_t reserved[8];         /* zero; later fields take these words (docs/api.md, ABI) */
} shmd_store_info_t;

/* Fills *info. Returns 0; cannot fail on a valid handle. */
SHMD_API int shmd_store_info(shmd_store_t *store, shmd_store_info_t *info);

/* Size and file name of segment `index`. Returns SHMD_ENOTFOUND past the last segment. `name`
 * receives the file name (not the path) when `name_len` > 0. */
SHMD_API int shmd_segment_info(shmd_store_t *store, uint32_t index, uint64_t *size_bytes,
                               char *name, size_t name_len);

/*
 * Finds lanes whose owner thread died and finishes their recovery now (roll back or complete their
 * unfinished operation, free their reservations). Opening a store and shmd_alloc_check() do this
 * too; others meet dead owners lazily when they wait for a lock a dead thread held.
 * Returns the number of lanes recovered, or a negative status (SHMD_ECORRUPT).
 */
SHMD_API int shmd_recover(shmd_store_t *store);

/*
 * Spare segment files: a process that grows a store prepares its next segment ahead of need as a
 * file ".seg-spare-<pid>-<random>" in the store directory (docs/architecture.md, "Growth ahead of
 * need"). Its owner holds an advisory lock (flock) on it for as long as it lives; the kernel drops
 * the lock when the process dies, so a spare nobody holds locked is an orphan, whatever became of
 * its pid. Orphans, and the temporary files of a store creation that was killed, are removed
 * automatically when a store is opened and when it grows.
 */
typedef struct shmd_spare_info_s {
  uint64_t live_files, live_bytes;     /* spares of live processes (this one's included) now */
  uint64_t orphan_files, orphan_bytes; /* orphans this handle removed: at open, growth and now */
  uint64_t reserved[4];                /* zero; fixed layout as shmd_store_info_t */
} shmd_spare_info_t;

/* Looks at the store directory now, removes orphaned spare files and fills *info (bytes are the
 * storage the files hold). Returns 0, or SHMD_EIO / SHMD_EPERM / SHMD_ENOENT when the directory
 * cannot be read (then *info holds what was known before). */
SHMD_API int shmd_spare_info(shmd_store_t *store, shmd_spare_info_t *info);

/* Maps every segment now and, if `populate`, touches every page (a warm start). Returns 0 or a
 * status from mapping a segment. */
SHMD_API int shmd_attach_all(shmd_store_t *store, int populate);

/*
 * Bounds how long a thread of this handle waits for a lock another thread holds: at most `max_ms`
 * milliseconds per wait (0, the default: as long as the holder lives, which is what an application
 * wants). A lock still held by a live owner when the bound passes makes the call fail with
 * SHMD_EBUSY and shmd_errdetail() naming the holder ("lock held by pid N, lane L, for S s"); the
 * call fails the way it does on a damaged lock word (its transaction rolls back). A holder that is
 * dead, or not a live owner of this store (a forged or stale lock), is recovered as usual, bound or
 * not. Meant for tools that must answer rather than wait (`shmdict info`, `dump`); the checkers
 * (shmd_alloc_check(), shmd_kv_check(), shmd_*_check()) bound their waits on their own, to 10 s or
 * this bound if smaller. Cannot fail; a NULL store is a no-op.
 */
SHMD_API void shmd_set_lock_wait(shmd_store_t *store, uint32_t max_ms);

#ifdef __cplusplus
}
#endif
#endif /* SHMD_STORE_H */
