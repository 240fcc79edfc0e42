/* SPDX-License-Identifier: MIT */
/*
 * Stores and segments: creating, attaching, validating and growing the segment files of a store,
 * the per-process registry behind shmd_resolve(), and the named-root directory.
 *
 * Files are reached only through directory fds: the store root (DIR) is opened once by its path,
 * the store directory DIR/NAME with O_NOFOLLOW relative to it, and every segment file relative to
 * the store directory's fd, kept in the handle (see "Files and who may use them" below for the
 * checks of owner and mode that make a store its owner's alone).
 *
 * Creation is atomic: segment 0 is built in a temporary file and published with link(), which
 * fails if another process published first (the loser attaches to the winner's store). Growth
 * creates a new file with a random suffix (O_EXCL | O_NOFOLLOW, so a planted file or symlink is
 * never followed or overwritten), reserves its storage, initialises it, and commits by one
 * release-ordered store of the manifest's segment count under the grow lock. A process killed
 * before that store leaves an unreferenced file behind, never a half-published segment.
 *
 * Locks: the grow lock (last in the lock order) around growth; the roots lock around the named
 * roots; a process-local mutex around lazily mapping segments.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crash.h"
#include "err.h"
#include "os.h"
#include "store_int.h"

#define DEFAULT_DIR "/dev/shm/shmdict"
#define MIB (UINT64_C(1) << 20)

static pthread_mutex_t g_stores_mu = PTHREAD_MUTEX_INITIALIZER;
static void ahead_forget(shmd_store_t *s); /* growth ahead of need, below */
static void ahead_after_fork(void);
static void reclaim_orphans(shmd_store_t *s, shmd_spare_info_t *now);
static shmd_store_t *g_stores;
static uint64_t g_next_id;

uint64_t shmd__fnv1a(const void *data, size_t len) {
  const unsigned char *p = data;
  uint64_t h = UINT64_C(1469598103934665603);
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= UINT64_C(1099511628211);
  }
  return h;
}

static inline uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) & ~(a - 1); }
static inline uint64_t align_down(uint64_t x, uint64_t a) { return x & ~(a - 1); }

void shmd_options_init(shmd_options_t *opt) {
  memset(opt, 0, sizeof *opt);
  opt->struct_size = sizeof *opt;
  opt->first_segment_bytes = 4 * MIB; /* a tiny store costs little; growth doubles from there */
  opt->segment_bytes = 64 * MIB;
  opt->file_mode = 0600;
  opt->max_threads = 64;
}

static int valid_name(const char *name) {
  size_t n = name ? strlen(name) : 0;
  if (n == 0 || n > 64 || name[0] == '.')
    return 0;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-'))
      return 0;
  }
  return 1;
}

static const char *resolve_dir(const char *dir) {
  if (dir && dir[0])
    return dir;
  const char *env = shmd__os_getenv("SHMDICT_DIR");
  return (env && env[0]) ? env : DEFAULT_DIR;
}

static void seg_file_name(char *out, size_t len, uint32_t idx, uint32_t suffix) {
  if (idx == 0)
    snprintf(out, len, "seg-00000");
  else
    snprintf(out, len, "seg-%05u-%08x", idx, suffix);
}

/* ---------------------------------------------------------------------------------------------- */
/* Segment headers. */

static uint64_t hdr_checksum(const struct shmd__seg_hdr *h) {
  return shmd__fnv1a(h, offsetof(struct shmd__seg_hdr, checksum));
}

/* Fills the header of a fresh segment whose allocator metadata starts at alloc_off, and lets the
 * allocator initialise its metadata. Returns SHMD_EINVAL if the segment is too small. */
static int init_segment(const struct shmd__alloc_ops *ops, unsigned char *base, uint64_t size, uint32_t idx,
                        const unsigned char uuid[16], uint64_t alloc_off, uint64_t manifest_off,
                        uint32_t layout_minor) {
  struct shmd__seg_hdr *h = (struct shmd__seg_hdr *)(void *)base;
  if (alloc_off >= size)
    return SHMD_EINVAL;
  uint64_t meta = ops->meta_bytes(size - alloc_off);
  uint64_t data_off = align_up(alloc_off + meta, SHMD__DATA_ALIGN);
  if (data_off + 2 * SHMD__DATA_ALIGN > size) {
    shmd__set_detail("segment of %llu bytes is too small: its metadata ends at %llu and it needs "
                     "at least %llu bytes of data",
                     (unsigned long long)size, (unsigned long long)data_off,
                     (unsigned long long)(2 * SHMD__DATA_ALIGN));
    return SHMD_EINVAL;
  }
  memset(h, 0, sizeof *h);
  h->magic = SHMD__SEG_MAGIC;
  h->layout_major = SHMD_LAYOUT_MAJOR;
  h->layout_minor = layout_minor;
  h->hdr_bytes = sizeof *h;
  memcpy(h->store_uuid, uuid, 16);
  h->seg_index = idx;
  h->size_bytes = size;
  h->alloc_off = alloc_off;
  h->alloc_bytes = meta;
  h->data_off = data_off;
  h->data_bytes = align_down(size - data_off, SHMD_PAGE_BYTES);
  h->manifest_off = manifest_off;
  ops->seg_init(h);
  h->checksum = hdr_checksum(h);
  return 0;
}

/*
 * Validation of what a file says about itself.
 *
 * Every offset and size below is read from a file that anyone with write access to it may have
 * crafted. The header checksum does not change that: it is FNV-1a over the header, which detects
 * accidental damage (a torn or stray write) and nothing else, since whoever can write the header
 * can recompute it. So each offset and size is validated as if the checksum were absent, before
 * anything is read through it:
 *   - bounds are tested in a form that cannot wrap past 2^64: `b <= limit` first, then
 *     `a > limit - b` (never `a + b > limit`), and products as `n > limit / size`;
 *   - every offset at which a structure is read is aligned as that structure needs (8 bytes: its
 *     widest field), so no access is misaligned (undefined behaviour, reported by UBSan);
 *   - the areas of segment 0 follow each other in order without overlap: header, manifest, roots,
 *     lanes, allocator metadata, data area; all inside the segment and the mapping.
 * A value that fails gives SHMD_ECORRUPT with the file, the field and its value in
 * shmd_errdetail(). The allocator's own header (mutable, so not checksummed) is validated the same
 * way by shmd__sa_is_valid() (alloc/check.c) before any page map or free list is read.
 */

/* Largest segment a shmd_ptr_t can address (its offset has SHMD_PTR_OFFSET_BITS bits). */
#define SEG_MAX_BYTES (UINT64_C(1) << SHMD_PTR_OFFSET_BITS)
/* Alignment of every structure read at an offset the file gives (manifest, roots, lanes,
 * allocator metadata: their widest fields are 8 bytes). The library writes them 4 KiB aligned. */
#define STRUCT_ALIGN UINT64_C(8)

static int bad_field(const char *path, const char *what, const char *field, uint64_t value) {
  shmd__set_detail("%s: %s: %s %#llx is out of range or misaligned (crafted or damaged file)", path, what,
                   field, (unsigned long long)value);
  return SHMD_ECORRUPT;
}

/* The layout fields of a segment header whose checksum, magic and version were found good: sizes
 * and offsets inside the segment, in order, aligned. Overflow-free (see above). */
static int check_geometry(const struct shmd__seg_hdr *h, const char *path) {
  const char *w = "segment header";
  uint64_t size = h->size_bytes;
  if (size < SHMD__HDR_BYTES || size > SEG_MAX_BYTES)
    return bad_field(path, w, "size_bytes", size);
  if (h->alloc_off < SHMD__HDR_BYTES || h->alloc_off > size || h->alloc_off % STRUCT_ALIGN != 0)
    return bad_field(path, w, "alloc_off", h->alloc_off);
  if (h->alloc_bytes > size - h->alloc_off)
    return bad_field(path, w, "alloc_bytes", h->alloc_bytes);
  uint64_t meta_end = h->alloc_off + h->alloc_bytes; /* <= size: no wrap */
  if (h->data_off < meta_end || h->data_off > size || h->data_off % SHMD__DATA_ALIGN != 0)
    return bad_field(path, w, "data_off", h->data_off);
  if (h->data_bytes > size - h->data_off || h->data_bytes < SHMD__DATA_ALIGN ||
      h->data_bytes % SHMD_PAGE_BYTES != 0)
    return bad_field(path, w, "data_bytes", h->data_bytes);
  return 0;
}

uint64_t shmd__store_bytes(shmd_store_t *s) {
  uint32_t n = shmd__seg_count(s);
  uint64_t total = 0;
  for (uint32_t i = 0; i < n && i < SHMD__MAX_SEGS; i++) {
    uint64_t b = s->man->segs[i].size_bytes;
    total += b < SEG_MAX_BYTES ? b : SEG_MAX_BYTES; /* at most 2^12 * 2^48: no wrap */
  }
  return total;
}

int shmd__ptr_in_fixed_layout(shmd_store_t *s, shmd_ptr_t p, size_t len) {
  uint64_t off = shmd_ptr_offset(p); /* < 2^48, and len is a word: no wrap below */
  if (off < SHMD__HDR_BYTES)
    return 1;
  uint64_t lo = s->hdr0->manifest_off, hi = lo + offsetof(struct shmd__manifest, grow_lock);
  return shmd_ptr_segment(p) == 0 && off < hi && off + len > lo;
}

/* Validates a mapped segment header. `uuid` NULL: segment 0 (any store). */
static int check_header(const struct shmd__seg_hdr *h, uint64_t file_size, uint32_t idx,
                        const unsigned char *uuid, const char *path) {
  if (file_size < sizeof(uint64_t) || h->magic != SHMD__SEG_MAGIC) {
    if (file_size == 0) {
      shmd__set_detail("%s is empty (truncated segment)", path);
      return SHMD_ETRUNCATED;
    }
    shmd__set_detail("%s is not a shmdict segment (bad magic)", path);
    return SHMD_ENOTSTORE;
  }
  if (file_size < SHMD__HDR_BYTES) {
    shmd__set_detail("%s is %llu bytes, shorter than a segment header", path,
                     (unsigned long long)file_size);
    return SHMD_ETRUNCATED;
  }
  if (h->layout_major != SHMD_LAYOUT_MAJOR || h->layout_minor > SHMD_LAYOUT_MINOR) {
    shmd__set_detail("%s has layout version %u.%u; this library (layout %u.%u) opens %u.0 to %u.%u",
                     path, h->layout_major, h->layout_minor, SHMD_LAYOUT_MAJOR, SHMD_LAYOUT_MINOR,
                     SHMD_LAYOUT_MAJOR, SHMD_LAYOUT_MAJOR, SHMD_LAYOUT_MINOR);
    return SHMD_EVERSION;
  }
  if (h->checksum != hdr_checksum(h)) {
    shmd__set_detail("%s: segment header checksum mismatch (stored %016llx, computed %016llx)", path,
                     (unsigned long long)h->checksum, (unsigned long long)hdr_checksum(h));
    return SHMD_ECHECKSUM;
  }
  if (uuid && memcmp(h->store_uuid, uuid, 16) != 0) {
    shmd__set_detail("%s belongs to another store (store id differs)", path);
    return SHMD_EFOREIGN;
  }
  if (h->size_bytes > file_size) {
    shmd__set_detail("%s is %llu bytes but its header says %llu (truncated segment)", path,
                     (unsigned long long)file_size, (unsigned long long)h->size_bytes);
    return SHMD_ETRUNCATED;
  }
  if (h->seg_index != idx) {
    shmd__set_detail("%s holds segment %u where segment %u was expected", path, h->seg_index, idx);
    return idx == 0 ? SHMD_ECORRUPT : SHMD_EFOREIGN;
  }
  return check_geometry(h, path);
}

/* ---------------------------------------------------------------------------------------------- */
/* Files and who may use them. */

/*
 * The store root DIR (default /dev/shm/shmdict) may be shared by all users of a machine, like
 * /tmp; each store in it is its owner's alone. A local user who may write DIR could otherwise
 * take another's store over (the audit of issue 12): (a) make DIR/NAME before its owner does,
 * with a mode and files that let them in, and read what the owner then writes; (b) plant a
 * symbolic link DIR/NAME -> a store of their own, so that the victim writes into it; (c) make an
 * empty DIR/NAME for the victim to fill, then swap segment files in it (the owner of a directory
 * may rename and remove anything in it). So:
 *
 *  - Nothing below DIR is reached by a path: DIR is opened once (its path is the caller's, links
 *    in it are followed), DIR/NAME with O_DIRECTORY|O_NOFOLLOW relative to DIR's fd, and every
 *    file with O_NOFOLLOW relative to the store directory's fd, which the handle keeps. A link in
 *    place of the directory or of a file answers SHMD_ELOOP; the checks below are made on what
 *    was opened (fstat of the fd), so nothing can be swapped between a check and a use.
 *  - DIR must belong to the caller or root, and when group or others may write it, it must be
 *    sticky: otherwise its owner, or anyone who may write it, could rename the stores in it.
 *  - A private store (the default): the store directory and every file must belong to the caller
 *    (root included: root opens only stores root owns) and must not be writable by group or
 *    others. Who may write the directory may replace files in it; who may write a file may
 *    change the store. Root could technically open any store, but a store that root grows gets
 *    root-owned segment files its owner cannot open, and a privileged process should not be the
 *    one to trust files an unprivileged user controls: root runs as the owner instead (setpriv,
 *    sudo -u).
 *  - A group-shared store (shmd_options_t.group): directory 02770, files 0660, all of the group.
 *    On open they must be of that group and give others no access; their owner may be any user,
 *    because only a member of a group (or root) can give a file or directory that group, and only
 *    members may create files in a 02770 directory. DIR may then also be the group's (owned by
 *    anyone, group writable without the sticky bit), but not setgid to the group and writable by
 *    others: there anyone could make directories of the group. The group must be named on every
 *    open; a group-writable store is never accepted on its own say-so (a group both users belong
 *    to, such as "users", would otherwise be an open door).
 */
struct access {
  uint32_t uid;      /* the caller's effective uid */
  int shared;        /* a group-shared store */
  uint32_t gid;      /* its group */
  const char *group; /* as the caller named it, for messages */
};

static int check_root(const struct shmd__os_stat *st, const char *path, const struct access *a) {
  if (st->kind != SHMD__OS_DIR) {
    shmd__set_detail("store root %s is not a directory", path);
    return SHMD_EINVAL;
  }
  int group_dir = a->shared && st->gid == a->gid;
  if (st->uid != a->uid && st->uid != 0 && !group_dir) {
    shmd__set_detail("store root %s is owned by uid %u, expected %u or root: its owner could rename or replace "
                     "the stores in it (use a directory of your own: -d DIR or $SHMDICT_DIR)",
                     path, st->uid, a->uid);
    return SHMD_EPERM;
  }
  if ((st->perm & 0022) != 0 && !(st->perm & SHMD__OS_STICKY) && !(group_dir && !(st->perm & 0002))) {
    shmd__set_detail("store root %s is writable by %s and not sticky (mode %04o): they could rename or replace "
                     "the stores in it (chmod +t or chmod go-w)",
                     path, (st->perm & 0002) ? "others" : "its group", st->perm);
    return SHMD_EPERM;
  }
  if (group_dir && (st->perm & SHMD__OS_SETGID) && (st->perm & 0002)) {
    shmd__set_detail("store root %s is setgid to group %s and writable by others (mode %04o): users outside the "
                     "group could make directories of the group in it",
                     path, a->group, st->perm);
    return SHMD_EPERM;
  }
  return 0;
}

static int check_store_dir(const struct shmd__os_stat *st, const char *path, const struct access *a) {
  if (st->kind != SHMD__OS_DIR) {
    shmd__set_detail("%s exists and is not a directory", path);
    return SHMD_EINVAL;
  }
  if (!a->shared) {
    if ((st->perm & (SHMD__OS_SETGID | 0070)) == (SHMD__OS_SETGID | 0070) && !(st->perm & 0007)) {
      shmd__set_detail("store directory %s is a store shared by gid %u (mode %04o): open it with the group "
                       "option (shmdict --group NAME)",
                       path, st->gid, st->perm);
      return SHMD_EPERM;
    }
    if (st->uid != a->uid) {
      shmd__set_detail("store directory %s is owned by uid %u, expected %u (a store is its owner's alone; "
                       "%s)",
                       path, st->uid, a->uid,
                       a->uid == 0 ? "root opens only stores root owns: run as the owner"
                                   : "someone else made this name: use another name or directory");
      return SHMD_EPERM;
    }
    if (st->perm & 0022) {
      shmd__set_detail("store directory %s is writable by group/others (mode %04o): a private store's must not "
                       "be (a store shared by a group is opened with the group option, shmdict --group NAME)",
                       path, st->perm);
      return SHMD_EPERM;
    }
    return 0;
  }
  if (st->gid != a->gid) {
    shmd__set_detail("store directory %s belongs to gid %u, not to group %s (gid %u): not a store shared by "
                     "that group",
                     path, st->gid, a->group, a->gid);
    return SHMD_EPERM;
  }
  if (st->perm & 0007) {
    shmd__set_detail("store directory %s of a store shared by group %s gives others access (mode %04o, "
                     "expected 2770)",
                     path, a->group, st->perm);
    return SHMD_EPERM;
  }
  return 0;
}

/* A segment (or spare) file of store s, opened as `path`. */
static int check_file(shmd_store_t *s, const struct shmd__os_stat *st, const char *path) {
  if (st->kind != SHMD__OS_REG) {
    shmd__set_detail("%s is not a regular file", path);
    return SHMD_ENOTSTORE;
  }
  if (!s->shared) {
    if (st->uid != s->owner_uid) {
      shmd__set_detail("segment file %s is owned by uid %u, expected %u (the store's owner)", path, st->uid,
                       s->owner_uid);
      return SHMD_EPERM;
    }
    if (st->perm & 0022) {
      shmd__set_detail("segment file %s is writable by group/others (mode %04o)", path, st->perm);
      return SHMD_EPERM;
    }
    return 0;
  }
  if (st->gid != s->gid) {
    shmd__set_detail("segment file %s belongs to gid %u, expected the store's group (gid %u)", path, st->gid,
                     s->gid);
    return SHMD_EPERM;
  }
  if (st->perm & 0007) {
    shmd__set_detail("segment file %s of a group-shared store gives others access (mode %04o, expected 0660)",
                     path, st->perm);
    return SHMD_EPERM;
  }
  return 0;
}

static int check_file_fd(shmd_store_t *s, int fd, const char *path) {
  struct shmd__os_stat st;
  int rc = shmd__os_fstat(fd, &st);
  return rc ? rc : check_file(s, &st, path);
}

/* Opens segment file `name` of s (known as `path`) and checks it. */
static int open_seg_file(shmd_store_t *s, const char *name, const char *path, int *fd) {
  struct shmd__os_dir d = {s->dirfd, s->path};
  struct shmd__os_stat st;
  int rc = shmd__os_openat(&d, name, fd);
  if (rc == SHMD_EPERM && shmd__os_fstatat(&d, name, &st) == 0) {
    /* Not even openable: say why when the checks would refuse it anyway (whose it is). */
    if (check_file(s, &st, path) == 0)
      shmd__set_detail("segment file %s (mode %04o, uid %u, gid %u) cannot be opened: permission denied", path,
                       st.perm, st.uid, st.gid);
    return SHMD_EPERM;
  }
  if (rc == 0) {
    rc = check_file_fd(s, *fd, path);
    if (rc) {
      shmd__os_close(*fd);
      *fd = -1;
    }
  }
  return rc;
}

/* Opens the store root `dir` into *fd, creating it (one level: its parent must exist) when
 * `create`, and checks it. */
static int open_root(const char *dir, const struct access *a, int create, int *fd) {
  int rc = shmd__os_open_dir(dir, fd);
  if (rc == SHMD_ENOENT && create) {
    char parent[4096];
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
      n--;
    if (n >= sizeof parent)
      return SHMD_EINVAL;
    memcpy(parent, dir, n);
    parent[n] = '\0';
    char *slash = strrchr(parent, '/');
    const char *pdir = parent, *last = slash ? slash + 1 : parent;
    if (slash == NULL)
      pdir = ".";
    else if (slash == parent)
      pdir = "/";
    else
      *slash = '\0';
    int pfd;
    rc = shmd__os_open_dir(pdir, &pfd);
    if (rc)
      return rc;
    struct shmd__os_dir pd = {pfd, pdir};
    /* Root's is a shared directory like /tmp (root owned, sticky: each store in it is its owner's
     * alone). An ordinary user's would be no use to others (they refuse a root owned by another
     * user): private; for a group-shared store, the group's (sticky: members cannot rename each
     * other's stores). */
    uint32_t perm = a->uid == 0 ? 01777 : a->shared ? 01770 : 0700;
    rc = shmd__os_mkdirat(&pd, last, perm, a->uid != 0 && a->shared ? (int64_t)a->gid : -1, fd);
    shmd__os_close(pfd);
    if (rc == SHMD_EEXIST) /* made meanwhile by another process */
      rc = shmd__os_open_dir(dir, fd);
    if (rc)
      return rc;
  } else if (rc) {
    return rc;
  }
  struct shmd__os_stat st;
  rc = shmd__os_fstat(*fd, &st);
  if (rc == 0)
    rc = check_root(&st, dir, a);
  if (rc) {
    shmd__os_close(*fd);
    *fd = -1;
  }
  return rc;
}

/* Opens and checks the directory of store s inside the root `rootfd` into *fd (its owner in
 * *owner), creating it when `create` (with the mode for files of mode `file_perm`). */
static int open_store_dir(const shmd_store_t *s, int rootfd, const struct access *a, int create, uint32_t file_perm,
                          int *fd, uint32_t *owner) {
  struct shmd__os_dir rd = {rootfd, s->dir};
  int rc = shmd__os_open_dirat(&rd, s->name, fd), opening = 1;
  if (rc == SHMD_ENOENT && create) {
    /* Group and others may search and list the directory when the files let them read. */
    uint32_t perm = a->shared ? 02770 : 0700 | ((file_perm & 0040) ? 0050 : 0) | ((file_perm & 0004) ? 0005 : 0);
    rc = shmd__os_mkdirat(&rd, s->name, perm, a->shared ? (int64_t)a->gid : -1, fd);
    opening = rc == SHMD_EEXIST;
    if (rc == SHMD_EEXIST)
      rc = shmd__os_open_dirat(&rd, s->name, fd);
  }
  struct shmd__os_stat st;
  if (rc == SHMD_EPERM && opening && shmd__os_fstatat(&rd, s->name, &st) == 0) {
    /* Not even readable: say why when the checks would refuse it anyway (whose it is). */
    if (check_store_dir(&st, s->path, a) == 0)
      shmd__set_detail("store directory %s (mode %04o, uid %u, gid %u) cannot be read: permission denied", s->path,
                       st.perm, st.uid, st.gid);
    return SHMD_EPERM;
  }
  if (rc)
    return rc;
  rc = shmd__os_fstat(*fd, &st);
  if (rc == 0)
    rc = check_store_dir(&st, s->path, a);
  if (rc) {
    shmd__os_close(*fd);
    *fd = -1;
    return rc;
  }
  *owner = st.uid;
  return 0;
}

/*
 * The store directory was removed while s is open (nlink 0: files can no longer be made in it) and
 * may be there again under its name: the malloc shim's private stores remove their directory
 * after every growth so that a killed process leaves nothing behind, and make it again for the
 * next. Opens the name again with every check of an open and makes s->dirfd refer to it, unless
 * the new directory holds another store's segment 0 (this one was dropped and the name reused).
 * Returns 0 when s->dirfd now refers to a usable directory, else a status (nothing changed).
 */
static int dir_refresh(shmd_store_t *s) {
  struct shmd__os_stat st, st0;
  if (shmd__os_fstat(s->dirfd, &st) != 0 || st.nlink != 0)
    return SHMD_ENOENT; /* not removed: the failure was a real one */
  char group[16];
  snprintf(group, sizeof group, "%u", s->gid);
  struct access a = {shmd__os_euid(), s->shared, s->gid, group};
  int rootfd = -1, fd = -1;
  uint32_t owner = 0;
  int rc = open_root(s->dir, &a, 0, &rootfd);
  if (rc == 0) {
    rc = open_store_dir(s, rootfd, &a, 0, 0, &fd, &owner);
    shmd__os_close(rootfd);
  }
  if (rc == 0 && !s->shared && owner != s->owner_uid)
    rc = SHMD_EPERM;
  if (rc == 0) {
    struct shmd__os_dir nd = {fd, s->path};
    if (shmd__os_fstatat(&nd, "seg-00000", &st0) == 0 &&
        (shmd__os_fstat(s->fd0, &st) != 0 || st.dev != st0.dev || st.ino != st0.ino)) {
      shmd__set_detail("%s was removed and now holds another store", s->path);
      rc = SHMD_ENOENT;
    }
  }
  if (rc) {
    shmd__os_close(fd);
    return rc;
  }
  shmd__os_replace_fd(s->dirfd, fd);
  return 0;
}

/* The permission bits of files that growth creates in s: the store's own choice, but never writable
 * by others (the manifest is shared memory: untrusted). */
static uint32_t grow_file_perm(shmd_store_t *s) {
  return s->shared ? 0660 : 0600 | (s->man->file_mode & 0044);
}

/* ---------------------------------------------------------------------------------------------- */
/* Registry and lazy attach. */

static int attach_seg(shmd_store_t *s, uint32_t seg) {
  /* seg_count and max_segments are mutable words of the manifest: a table index is bounded by
   * the table's own size too. */
  if (seg >= shmd__seg_count(s) || seg >= s->man->max_segments || seg >= SHMD__MAX_SEGS)
    return SHMD_ENOTFOUND;
  if (__atomic_load_n(&s->map->base[seg + 1], __ATOMIC_ACQUIRE))
    return 0;
  pthread_mutex_lock(&s->attach_mu);
  int rc = 0;
  if (__atomic_load_n(&s->map->base[seg + 1], __ATOMIC_ACQUIRE) == NULL) {
    struct shmd__seg_entry e = s->man->segs[seg];
    char name[64], path[4300];
    seg_file_name(name, sizeof name, seg, e.suffix);
    snprintf(path, sizeof path, "%s/%s", s->path, name);
    int fd = -1;
    uint64_t fsize = 0;
    void *addr = NULL;
    rc = open_seg_file(s, name, path, &fd);
    if (rc == 0)
      rc = shmd__os_file_size(fd, &fsize);
    if (rc == 0 && (e.size_bytes < SHMD__HDR_BYTES || e.size_bytes > SEG_MAX_BYTES))
      rc = bad_field(path, "manifest", "segment table entry's size_bytes", e.size_bytes);
    if (rc == 0 && fsize < e.size_bytes) {
      shmd__set_detail("%s is %llu bytes, the manifest says %llu (truncated segment)", path,
                       (unsigned long long)fsize, (unsigned long long)e.size_bytes);
      rc = SHMD_ETRUNCATED;
    }
    if (rc == 0)
      rc = shmd__os_map(fd, e.size_bytes, s->os_how, &addr);
    shmd__os_close(fd);
    if (rc == 0) {
      rc = check_header(addr, e.size_bytes, seg, s->hdr0->store_uuid, path);
      if (rc != 0) {
        shmd__os_unmap(addr, e.size_bytes);
      } else {
        s->seg_size[seg + 1] = e.size_bytes;
        __atomic_store_n(&s->map->base[seg + 1], (unsigned char *)addr, __ATOMIC_RELEASE);
      }
    }
  }
  pthread_mutex_unlock(&s->attach_mu);
  return rc;
}

void *shmd_resolve_slow(shmd_store_t *store, shmd_ptr_t p) {
  uint64_t idx = p.v >> SHMD_PTR_OFFSET_BITS;
  if (idx == 0 || attach_seg(store, (uint32_t)idx - 1) != 0)
    return NULL;
  return store->map->base[idx] + shmd_ptr_offset(p);
}

int shmd_resolve_checked(shmd_store_t *store, shmd_ptr_t p, size_t len, void **out) {
  uint64_t idx = p.v >> SHMD_PTR_OFFSET_BITS;
  if (idx == 0)
    return SHMD_CORRUPT("null pointer followed");
  unsigned char *base = __atomic_load_n(&store->map->base[idx], __ATOMIC_ACQUIRE);
  if (base == NULL) {
    if (attach_seg(store, (uint32_t)idx - 1) != 0)
      return SHMD_CORRUPT("pointer into a segment that does not exist");
    base = store->map->base[idx];
  }
  uint64_t off = shmd_ptr_offset(p), size = store->seg_size[idx];
  if (off > size || len > size - off)
    return SHMD_CORRUPT("pointer beyond the end of its segment");
  *out = base + off;
  return 0;
}

shmd_ptr_t shmd_ptr_from_addr(shmd_store_t *store, const void *addr) {
  const unsigned char *a = addr;
  uint32_t n = shmd__seg_count(store);
  for (uint32_t i = 1; i <= n; i++) {
    unsigned char *b = __atomic_load_n(&store->map->base[i], __ATOMIC_ACQUIRE);
    if (b && a >= b && a < b + store->seg_size[i])
      return shmd_ptr_make(i - 1, (uint64_t)(a - b));
  }
  return shmd_ptr_null();
}

struct shmd__seg_hdr *shmd__seg_slow(shmd_store_t *s, uint32_t seg) {
  if (seg >= SHMD_MAX_SEGMENTS || attach_seg(s, seg) != 0)
    return NULL;
  return (struct shmd__seg_hdr *)(void *)s->map->base[seg + 1];
}

/* ---------------------------------------------------------------------------------------------- */
/* Handles. */

static void store_free(shmd_store_t *s) {
  if (s->map) {
    for (uint32_t i = 1; i <= SHMD__MAX_SEGS; i++)
      if (s->map->base[i])
        shmd__os_unmap(s->map->base[i], s->seg_size[i]);
  }
  shmd__os_close(s->fd0);
  shmd__os_close(s->dirfd);
  free(s->map);
  free(s->seg_size);
  pthread_mutex_destroy(&s->attach_mu);
  free(s);
}

void shmd__store_unref(shmd_store_t *s) {
  if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0) {
    pthread_mutex_lock(&g_stores_mu);
    for (shmd_store_t **pp = &g_stores; *pp; pp = &(*pp)->next_store) {
      if (*pp == s) {
        *pp = s->next_store;
        break;
      }
    }
    pthread_mutex_unlock(&g_stores_mu);
    store_free(s);
  }
}

/* In a child after fork: only the forking thread exists; the handle's references are the open
 * ones (the parent's threads' lanes are not ours). */
void shmd__stores_after_fork(void) {
  ahead_after_fork();
  pthread_mutex_init(&g_stores_mu, NULL);
  for (shmd_store_t *s = g_stores; s; s = s->next_store) {
    pthread_mutex_init(&s->attach_mu, NULL);
    s->refs = s->closing ? 0 : 1;
  }
}

static shmd_store_t *store_new(const char *name, const char *dir) {
  shmd_store_t *s = calloc(1, sizeof *s);
  if (s == NULL)
    return NULL;
  s->map = calloc(1, sizeof *s->map);
  s->seg_size = calloc(SHMD_MAX_SEGMENTS + 1, sizeof(uint64_t));
  if (s->map == NULL || s->seg_size == NULL) {
    free(s->map);
    free(s->seg_size);
    free(s);
    return NULL;
  }
  s->fd0 = -1;
  s->dirfd = -1;
  snprintf(s->name, sizeof s->name, "%s", name);
  snprintf(s->dir, sizeof s->dir, "%s", dir);
  snprintf(s->path, sizeof s->path, "%s/%s", dir, name);
  pthread_mutex_init(&s->attach_mu, NULL);
  s->refs = 1;
  s->id = __atomic_add_fetch(&g_next_id, 1, __ATOMIC_RELAXED);
  return s;
}

/* ---------------------------------------------------------------------------------------------- */
/* Creating and attaching. */

static uint64_t lane_bytes_for(uint32_t op_cap) {
  return align_up(sizeof(struct shmd__lane) + (uint64_t)op_cap * sizeof(struct shmd__undo), 64);
}

/* Holds the advisory lock that marks file `name` of s (open as fd) as its creator's for as long
 * as the creator lives (see shmd_spare_info), and makes sure the name still names that file: an
 * orphan sweep may have found the file before the lock was taken and removed it. Returns 0 or
 * SHMD_EBUSY (the file is not ours to use any more; close it, the sweep removes it). */
static int lock_own_file(shmd_store_t *s, const char *name, int fd) {
  struct shmd__os_dir d = {s->dirfd, s->path};
  struct shmd__os_stat a, b;
  if (shmd__os_trylock(fd) != 0 || shmd__os_fstat(fd, &a) != 0 || shmd__os_fstatat(&d, name, &b) != 0 ||
      a.dev != b.dev || a.ino != b.ino)
    return SHMD_EBUSY;
  return 0;
}

static int create_store(shmd_store_t *s, const shmd_options_t *o, uint32_t perm) {
  int rc;
  uint32_t lanes = o->max_threads ? o->max_threads : 64;
  if (lanes > 4096) {
    shmd__set_detail("max_threads %u is above the limit of 4096", lanes);
    return SHMD_EINVAL;
  }
  uint64_t man_off = SHMD__HDR_BYTES;
  uint64_t roots_off = man_off + align_up(sizeof(struct shmd__manifest), SHMD_PAGE_BYTES);
  uint64_t lanes_off = roots_off + align_up(SHMD__ROOT_CAP * sizeof(struct shmd__root), SHMD_PAGE_BYTES);
  uint64_t lane_bytes = lane_bytes_for(SHMD__OP_LOG_CAP);
  uint64_t alloc_off = lanes_off + align_up(lanes * lane_bytes, SHMD_PAGE_BYTES);
  uint64_t size = align_up(o->first_segment_bytes, SHMD__DATA_ALIGN);
  if (o->max_store_bytes && size > o->max_store_bytes) {
    shmd__set_detail("first segment (%llu bytes) is larger than max_store_bytes (%llu)",
                     (unsigned long long)size, (unsigned long long)o->max_store_bytes);
    return SHMD_EINVAL;
  }
  if (size < alloc_off + 4 * SHMD__DATA_ALIGN) {
    shmd__set_detail("first segment of %llu bytes is too small: %u lanes and the manifest need "
                     "%llu bytes, plus room for data",
                     (unsigned long long)size, lanes, (unsigned long long)alloc_off);
    return SHMD_EINVAL;
  }
  unsigned char rnd[20];
  shmd__os_random(rnd, sizeof rnd);
  char tmp[64];
  snprintf(tmp, sizeof tmp, ".seg-00000.tmp-%02x%02x%02x%02x", rnd[16], rnd[17], rnd[18], rnd[19]);
  struct shmd__os_dir d = {s->dirfd, s->path};
  int fd;
  rc = shmd__os_createat(&d, tmp, perm, size, s->os_how, &fd);
  if (rc)
    return rc;
  /* Locked while this process builds it, so that no orphan sweep takes it (a sweep runs only in an
   * existing store: when one got it first, another process published segment 0 already). */
  if (lock_own_file(s, tmp, fd) != 0) {
    shmd__os_close(fd);
    return SHMD_EEXIST;
  }
  void *addr;
  rc = shmd__os_map(fd, size, s->os_how, &addr);
  if (rc) {
    shmd__os_unlinkat(&d, tmp);
    shmd__os_close(fd);
    return rc;
  }
  unsigned char *base = addr;
  struct shmd__manifest *m = (struct shmd__manifest *)(void *)(base + man_off);
  m->magic = SHMD__MAN_MAGIC;
  shmd__os_boot_id(m->boot_id);
  m->created_unix = shmd__os_unix_time();
  m->first_seg_bytes = size;
  m->grow_seg_bytes = align_up(o->segment_bytes ? o->segment_bytes : 64 * MIB, SHMD__DATA_ALIGN);
  m->max_store_bytes = o->max_store_bytes;
  m->file_mode = perm;
  m->lane_count = lanes;
  m->lane_bytes = lane_bytes;
  m->lanes_off = lanes_off;
  m->roots_off = roots_off;
  m->root_cap = SHMD__ROOT_CAP;
  m->max_segments = SHMD__MAX_SEGS;
  m->op_log_cap = SHMD__OP_LOG_CAP;
  m->segs[0].size_bytes = size;
  m->seg_count = 1;
  for (uint32_t i = 0; i < lanes; i++) {
    rc = shmd__lane_init_mutex((struct shmd__lane *)(void *)(base + lanes_off + i * lane_bytes));
    if (rc)
      break;
  }
  if (rc == 0)
    rc = init_segment(s->alloc_ops, base, size, 0, rnd, alloc_off, man_off, SHMD_LAYOUT_MINOR);
  shmd__os_unmap(addr, size);
  if (rc == 0)
    rc = shmd__os_linkat(&d, tmp, "seg-00000");
  if (rc == SHMD_ENOENT) /* the temporary file was swept away: someone else's store exists */
    rc = SHMD_EEXIST;
  shmd__os_unlinkat(&d, tmp);
  shmd__os_close(fd); /* the lock goes with the last reference (fd and mapping) */
  return rc;
}

/* Validates the manifest of segment 0 (its offset was validated by attach_store): the lanes and
 * roots areas it places, its capacities and its segment table. Overflow-free, see "Validation of
 * what a file says about itself" above. */
static int check_manifest(shmd_store_t *s, const char *path) {
  const struct shmd__seg_hdr *h = s->hdr0;
  const struct shmd__manifest *m = s->man;
  const char *w = "manifest";
  if (m->magic != SHMD__MAN_MAGIC) {
    shmd__set_detail("%s: manifest magic is wrong (corrupted store)", path);
    return SHMD_ECORRUPT;
  }
  /* In order: manifest | roots | lanes | allocator metadata (alloc_off, validated with the header). */
  uint64_t man_end = h->manifest_off + sizeof(struct shmd__manifest), alloc_off = h->alloc_off;
  if (man_end > alloc_off)
    return bad_field(path, w, "manifest_off", h->manifest_off);
  if (m->roots_off < man_end || m->roots_off > alloc_off || m->roots_off % STRUCT_ALIGN != 0)
    return bad_field(path, w, "roots_off", m->roots_off);
  if (m->lanes_off < m->roots_off || m->lanes_off > alloc_off || m->lanes_off % STRUCT_ALIGN != 0)
    return bad_field(path, w, "lanes_off", m->lanes_off);
  if (m->root_cap > (m->lanes_off - m->roots_off) / sizeof(struct shmd__root))
    return bad_field(path, w, "root_cap", m->root_cap);
  if (m->op_log_cap == 0 || m->op_log_cap > (1u << 20))
    return bad_field(path, w, "op_log_cap", m->op_log_cap);
  if (m->lane_count == 0 || m->lane_count > 4096)
    return bad_field(path, w, "lane_count", m->lane_count);
  if (m->lane_bytes < lane_bytes_for(m->op_log_cap) || m->lane_bytes % STRUCT_ALIGN != 0 ||
      m->lane_bytes > (alloc_off - m->lanes_off) / m->lane_count)
    return bad_field(path, w, "lane_bytes", m->lane_bytes);
  if (m->max_segments == 0 || m->max_segments > SHMD__MAX_SEGS)
    return bad_field(path, w, "max_segments", m->max_segments);
  uint32_t n = __atomic_load_n(&m->seg_count, __ATOMIC_ACQUIRE);
  if (n == 0 || n > m->max_segments)
    return bad_field(path, w, "seg_count", n);
  if (m->segs[0].size_bytes != h->size_bytes)
    return bad_field(path, w, "segs[0].size_bytes", m->segs[0].size_bytes);
  /* The other entries are validated again when their segment is attached (attach_seg); bounding
   * them here keeps sums over the table (growth, info) far from wrapping. */
  for (uint32_t i = 1; i < n; i++)
    if (m->segs[i].size_bytes < SHMD__HDR_BYTES || m->segs[i].size_bytes > SEG_MAX_BYTES) {
      char field[48];
      snprintf(field, sizeof field, "segs[%u].size_bytes", i);
      return bad_field(path, w, field, m->segs[i].size_bytes);
    }
  if (m->grow_seg_bytes > SEG_MAX_BYTES)
    return bad_field(path, w, "grow_seg_bytes", m->grow_seg_bytes);
  return 0;
}

/*
 * The boot id rule. After a reboot every lane of a file-backed store belongs to a dead world, yet
 * its robust mutexes still look held (the kernel that would have marked their holders dead is
 * gone), so they are re-initialised under an exclusive flock and recovery then finds every lane
 * ownerless. Re-initialising a mutex that a live thread holds would roll back that thread's
 * acknowledged work, so it happens only when the lanes are provably unowned: the manifest's boot
 * id and ours are both known and differ, AND no lane records an owner pid that exists here or has
 * its mutex held by a thread that exists (shmd__lanes_owned). An unknown id on either side (a store
 * created or opened where /proc/sys/kernel/random/boot_id cannot be read: a chroot, systemd's
 * ProcSubset=pid, a sandbox) is never a reboot: a manifest without one gets ours (same kernel,
 * same boot), and otherwise nothing changes. Lanes not re-initialised are recovered only through
 * the robust-mutex protocol and lane.c's judgement of who holds a lane. Tests play the ids with
 * SHMDICT_TEST_BOOT_ID_FILE (os.h).
 */
static int boot_check(shmd_store_t *s, int fd) {
  char boot[40], rec[40];
  memset(boot, 0, sizeof boot);
  shmd__os_boot_id(boot);
  if (boot[0] == '\0')
    return 0; /* ours is unknown: never a reboot */
  memcpy(rec, s->man->boot_id, sizeof rec);
  rec[sizeof rec - 1] = '\0';
  if (strcmp(rec, boot) == 0)
    return 0;
  int rc = shmd__os_flock(fd, 1);
  if (rc)
    return rc;
  memcpy(rec, s->man->boot_id, sizeof rec); /* again, under the lock: another opener may have acted */
  rec[sizeof rec - 1] = '\0';
  if (rec[0] == '\0') {
    memcpy(s->man->boot_id, boot, sizeof boot); /* the store's was unknown: record ours, no reboot */
  } else if (strcmp(rec, boot) != 0 && !shmd__lanes_owned(s)) {
    for (uint32_t i = 0; i < s->man->lane_count; i++) {
      struct shmd__lane *l = shmd__lane_at(s, i);
      shmd__lane_init_mutex(l);
      l->owner_pid = l->owner_tid = 0;
      l->owner_pidns = 0;
    }
    memcpy(s->man->boot_id, boot, sizeof boot);
  }
  shmd__os_funlock(fd);
  return 0;
}

static int attach_store(shmd_store_t *s, int fd) {
  char seg0[4300];
  snprintf(seg0, sizeof seg0, "%s/seg-00000", s->path);
  uint64_t fsize;
  int rc = shmd__os_file_size(fd, &fsize);
  if (rc)
    return rc;
  if (fsize == 0) {
    shmd__set_detail("%s is empty (truncated segment)", seg0);
    return SHMD_ETRUNCATED;
  }
  void *addr;
  rc = shmd__os_map(fd, fsize, s->os_how, &addr);
  if (rc)
    return rc;
  rc = check_header(addr, fsize, 0, NULL, seg0);
  if (rc) {
    shmd__os_unmap(addr, fsize);
    return rc;
  }
  struct shmd__seg_hdr *h = addr;
  s->map->base[1] = addr;
  s->seg_size[1] = fsize;
  s->hdr0 = h;
  s->fd0 = fd;
  if (h->manifest_off < SHMD__HDR_BYTES || h->manifest_off > h->size_bytes ||
      sizeof(struct shmd__manifest) > h->size_bytes - h->manifest_off || h->manifest_off % STRUCT_ALIGN != 0)
    return bad_field(seg0, "segment header", "manifest_off", h->manifest_off);
  s->man = (struct shmd__manifest *)(void *)((unsigned char *)addr + h->manifest_off);
  rc = check_manifest(s, seg0);
  if (rc)
    return rc;
  s->lanes = (unsigned char *)addr + s->man->lanes_off; /* bounds checked by check_manifest */
  return boot_check(s, fd);
}

int shmd__store_open(const char *name, const shmd_options_t *opt, const struct shmd__store_ops *ops,
                     shmd_store_t **out) {
  shmd__set_detail("%s", "");
  shmd__lane_global_init();
  shmd__crash_init();
  shmd_options_t o;
  shmd_options_init(&o);
  if (opt) {
    size_t n = opt->struct_size && opt->struct_size < sizeof o ? opt->struct_size : sizeof o;
    memcpy(&o, opt, n);
    o.struct_size = sizeof o;
    if (o.first_segment_bytes == 0)
      o.first_segment_bytes = 4 * MIB;
    if (o.file_mode == 0)
      o.file_mode = 0600;
  }
  if (out == NULL || !valid_name(name)) {
    shmd__set_detail("invalid store name \"%s\": use 1-64 characters of [A-Za-z0-9._-], not "
                     "starting with '.'", name ? name : "(null)");
    return SHMD_EINVAL;
  }
  const char *dir = resolve_dir(o.dir);
  if (strlen(dir) > 4000)
    return SHMD_EINVAL;
  struct access a = {shmd__os_euid(), o.group != NULL, 0, o.group};
  if (a.shared) {
    if (o.group[0] == '\0' || strlen(o.group) > 255) {
      shmd__set_detail("invalid group name \"%s\"", o.group);
      return SHMD_EINVAL;
    }
    int rc = shmd__os_group_id(o.group, &a.gid);
    if (rc)
      return rc;
  } else if (o.file_mode & 0022) {
    shmd__set_detail("file_mode %04o would let group/others write the store; a store shared by a group "
                     "is opened with the group option",
                     o.file_mode);
    return SHMD_EINVAL;
  }
  uint32_t perm = a.shared ? 0660 : 0600 | (o.file_mode & 0044);
  shmd_store_t *s = store_new(name, dir);
  if (s == NULL)
    return SHMD_ENOMEM;
  s->alloc_ops = ops->alloc;
  s->tx_ops = ops->tx;
  s->private_maps = (o.flags & SHMD__OPEN_PRIVATE) != 0;
  s->os_how = (o.flags & SHMD__OPEN_PRIVATE ? SHMD__OS_PRIVATE : 0u) | (o.flags & SHMD__OPEN_SPARSE ? SHMD__OS_SPARSE : 0u);
  int create = !(o.flags & SHMD_OPEN_NOCREATE);
  int rootfd = -1;
  int created = 0, rc = open_root(dir, &a, create, &rootfd);
  if (rc == 0) {
    rc = open_store_dir(s, rootfd, &a, create, perm, &s->dirfd, &s->owner_uid);
    shmd__os_close(rootfd);
    s->shared = a.shared;
    s->gid = a.gid;
  }
  char seg0[4300];
  snprintf(seg0, sizeof seg0, "%s/seg-00000", s->path);
  int fd = -1;
  for (int attempt = 0; rc == 0 && attempt < 8; attempt++) {
    rc = open_seg_file(s, "seg-00000", seg0, &fd);
    if (rc == SHMD_ENOENT && create) {
      rc = create_store(s, &o, perm);
      if (rc == 0)
        created = 1;
      else if (rc != SHMD_EEXIST)
        break;
      rc = 0;
      continue;
    }
    break;
  }
  if (rc == 0 && fd < 0)
    rc = SHMD_EEXIST; /* lost every race (8 times): give up */
  if (rc == SHMD_ENOENT)
    shmd__set_detail("store \"%s\" does not exist in %s", name, dir);
  if (rc == 0 && (o.flags & SHMD_OPEN_EXCL) && !created) {
    shmd__set_detail("store \"%s\" already exists in %s", name, dir);
    rc = SHMD_EEXIST;
  }
  if (rc) {
    shmd__os_close(fd);
    store_free(s);
    return rc;
  }
  rc = attach_store(s, fd);
  if (rc) {
    if (s->fd0 < 0)
      shmd__os_close(fd);
    store_free(s);
    return rc;
  }
  pthread_mutex_lock(&g_stores_mu);
  s->next_store = g_stores;
  g_stores = s;
  pthread_mutex_unlock(&g_stores_mu);
  reclaim_orphans(s, NULL); /* spare files of killed processes */
  if (o.flags & SHMD_OPEN_POPULATE)
    (void)shmd_attach_all(s, 1);
  /* Finish what dead processes left behind, so the opener starts from a clean store. */
  rc = shmd_recover(s);
  if (rc < 0 && rc != SHMD_ENOLANE) {
    shmd_close(s);
    return rc;
  }
  *out = s;
  return 0;
}

void shmd_close(shmd_store_t *store) {
  if (store == NULL)
    return;
  shmd__thr_detach(store);
  __atomic_store_n(&store->closing, 1, __ATOMIC_RELEASE);
  ahead_forget(store);
  shmd__store_unref(store);
}

uint64_t shmd_store_id(const shmd_store_t *store) { return store->id; }
const char *shmd_store_name(const shmd_store_t *store) { return store->name; }
const char *shmd_store_dir(const shmd_store_t *store) { return store->dir; }

struct drop_ctx {
  struct shmd__os_dir d;
  int rc;
};

static int drop_entry(const char *name, void *arg) {
  struct drop_ctx *c = arg;
  if (strncmp(name, "seg-", 4) != 0 && strncmp(name, ".seg-", 5) != 0)
    return 0;
  struct shmd__os_stat st;
  if (shmd__os_fstatat(&c->d, name, &st) == 0 && st.kind == SHMD__OS_DIR)
    return 0;
  int rc = shmd__os_unlinkat(&c->d, name); /* a symbolic link is removed itself, never its target */
  if (rc && rc != SHMD_ENOENT)
    c->rc = rc;
  return 0;
}

int shmd_drop(const char *name, const char *dir) {
  shmd__set_detail("%s", "");
  if (!valid_name(name)) {
    shmd__set_detail("invalid store name \"%s\"", name ? name : "(null)");
    return SHMD_EINVAL;
  }
  dir = resolve_dir(dir);
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int rootfd, fd;
  int rc = shmd__os_open_dir(dir, &rootfd);
  if (rc == 0) {
    struct shmd__os_dir rd = {rootfd, dir};
    rc = shmd__os_open_dirat(&rd, name, &fd);
    if (rc == 0) {
      struct drop_ctx c = {{fd, path}, 0};
      rc = shmd__os_list_dirat(&c.d, drop_entry, &c);
      shmd__os_close(fd);
      if (rc == 0)
        rc = c.rc;
      if (rc == 0)
        rc = shmd__os_rmdirat(&rd, name);
      if (rc == SHMD_EBUSY)
        shmd__set_detail("%s still holds files that are not shmdict segments; they were left in place", path);
    }
    shmd__os_close(rootfd);
  }
  if (rc == SHMD_ENOENT)
    shmd__set_detail("store \"%s\" does not exist in %s", name, dir);
  return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* Growth ahead of need (spare segments). */

/*
 * Reserving a new segment's storage (posix_fallocate, which on tmpfs allocates and zeroes every
 * page) costs about 0.3 ms per MiB: 20-40 ms for a 64 MiB segment, 100 ms for 256 MiB, paid by
 * whichever insert needs the memory. Without the reservation a full tmpfs would answer a page
 * fault with SIGBUS. So a process prepares the next segment ahead of need, as a *spare*: a file
 * ".seg-spare-<pid>-<random>" created empty and reserved in SPARE_CHUNK pieces, one piece per
 * shmd__grow_ahead() call (the allocator's shmd_alloc_expect() calls it: the hash calls that
 * after its inserts, and it starts a spare once the store runs low, see alloc/front.c). shmd__grow() then links a spare that is big enough to its segment name,
 * maps it and publishes it: no reservation on that path, and still no unbacked page, because
 * the spare was reserved completely before it became a segment. A reservation that fails
 * (ENOSPC, RLIMIT_FSIZE, max_store_bytes) only drops the spare; shmd__grow() then does what it
 * always did, and answers SHMD_ENOSPC when the space is not there.
 *   Spares are process-local state (never in the manifest). Two slots: one the size of a growth
 * segment, one for a big block announced ahead (the hash's next bucket table).
 *   Orphans. A spare of a process that dies would stay behind (the audit of issue 12 counted 351
 * of them, 2.1 GB, beside a 198 MB store after a kill test). So a spare carries its owner: the
 * owner holds an advisory lock (flock) on it from the moment it has its name until the name is
 * gone, and the kernel drops that lock when the process dies. reclaim_orphans() (at open, at every
 * growth, and in shmd_spare_info) removes every spare it can lock. The pid in the name is only for
 * people reading the directory: a pid is no proof of life (a dead owner's pid may be reused
 * within seconds, and a store shared between containers sees pids of other pid namespaces),
 * while the lock needs neither /proc nor the same namespace, only the same file. The owner takes
 * the lock right after creating the file and then checks that the name still names its file
 * (lock_own_file): a sweep that found the file first, unlocked, has removed it, and the owner
 * drops it. The same protocol covers segment 0's temporary file during creation.
 *   A forked child shares its parent's locks through the inherited fds and mappings, so it drops
 * the inherited spares at once (shmd__stores_after_fork): a dead parent's spares must not live on
 * in a child that never touches the store.
 */
#define SPARE_CHUNK (UINT64_C(32) << 10)
#define SPARE_SLOTS 2

struct spare {
  int fd;             /* -1: slot empty */
  uint32_t pid;       /* the process that made it (a forked child must not use it) */
  uint64_t size;      /* target size */
  uint64_t reserved;  /* bytes reserved (and faulted in here) so far; == size: ready */
  void *addr;         /* mapped at creation, so that growth need not map or fault it */
  char name[64];      /* in the store directory */
};

struct ahead {
  shmd_store_t *s;
  uint64_t id;
  pthread_mutex_t mu;
  int failed;         /* a reservation failed: no new spares until the next growth */
  struct spare sp[SPARE_SLOTS];
  struct ahead *next;
};

static pthread_mutex_t g_ahead_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ahead *g_ahead;
static int g_ahead_busy; /* spares being reserved, all stores (a cheap "nothing to do") */

static void spare_drop(shmd_store_t *s, struct spare *sp, int unlink_file) {
  if (sp->fd < 0)
    return;
  if (sp->pid == shmd__os_pid()) {
    if (unlink_file) {
      struct shmd__os_dir d = {s->dirfd, s->path};
      shmd__os_unlinkat(&d, sp->name); /* while still locked: no sweep can take it for an orphan */
    }
    if (sp->reserved < sp->size)
      __atomic_fetch_sub(&g_ahead_busy, 1, __ATOMIC_RELAXED);
  }
  shmd__os_unmap(sp->addr, sp->size);
  sp->addr = NULL;
  shmd__os_close(sp->fd);
  sp->fd = -1;
}

/* The spare state of store s (created when `create`), locked; NULL if none. */
static struct ahead *ahead_lock(shmd_store_t *s, int create) {
  pthread_mutex_lock(&g_ahead_mu);
  struct ahead *a = g_ahead;
  while (a != NULL && !(a->s == s && a->id == s->id))
    a = a->next;
  if (a == NULL && create) {
    a = calloc(1, sizeof *a);
    if (a != NULL) {
      a->s = s;
      a->id = s->id;
      pthread_mutex_init(&a->mu, NULL);
      for (int i = 0; i < SPARE_SLOTS; i++)
        a->sp[i].fd = -1;
      a->next = g_ahead;
      g_ahead = a;
    }
  }
  if (a != NULL)
    pthread_mutex_lock(&a->mu);
  pthread_mutex_unlock(&g_ahead_mu);
  if (a != NULL) {
    uint32_t pid = shmd__os_pid();
    for (int i = 0; i < SPARE_SLOTS; i++)
      if (a->sp[i].fd >= 0 && a->sp[i].pid != pid)
        spare_drop(s, &a->sp[i], 0); /* inherited over fork: the parent's, not ours */
  }
  return a;
}

/* Removes the spares of a store being closed. */
static void ahead_forget(shmd_store_t *s) {
  pthread_mutex_lock(&g_ahead_mu);
  struct ahead **pp = &g_ahead;
  while (*pp != NULL && !((*pp)->s == s && (*pp)->id == s->id))
    pp = &(*pp)->next;
  struct ahead *a = *pp;
  if (a != NULL)
    *pp = a->next;
  pthread_mutex_unlock(&g_ahead_mu);
  if (a == NULL)
    return;
  pthread_mutex_lock(&a->mu);
  for (int i = 0; i < SPARE_SLOTS; i++)
    spare_drop(s, &a->sp[i], 1);
  pthread_mutex_unlock(&a->mu);
  pthread_mutex_destroy(&a->mu);
  free(a);
}

/* In a child after fork: the parent's spares are not the child's, and holding their fds and
 * mappings would hold their owner locks (shared by fork) for as long as the child lives, so a dead
 * parent's spares would never be orphans. Dropped now, without removing the files. Only the
 * forking thread exists: the locks of the list are made anew, as shmd__stores_after_fork does. */
static void ahead_after_fork(void) {
  pthread_mutex_init(&g_ahead_mu, NULL);
  for (struct ahead *a = g_ahead; a != NULL; a = a->next) {
    pthread_mutex_init(&a->mu, NULL);
    for (int i = 0; i < SPARE_SLOTS; i++) {
      struct spare *sp = &a->sp[i];
      if (sp->fd >= 0) {
        shmd__os_unmap(sp->addr, sp->size);
        sp->addr = NULL;
        shmd__os_close(sp->fd);
        sp->fd = -1;
      }
    }
  }
  g_ahead_busy = 0;
}

/* Spare files and temporary files of segment 0 are orphans when nobody holds their lock. */
static int orphan_candidate(const char *name) {
  return strncmp(name, ".seg-spare-", 11) == 0 || strncmp(name, ".seg-00000.tmp-", 15) == 0;
}

struct orphan_scan {
  struct shmd__os_dir d;
  shmd_spare_info_t found;
};

static int orphan_visit(const char *name, void *arg) {
  struct orphan_scan *c = arg;
  if (!orphan_candidate(name))
    return 0;
  struct shmd__os_stat st;
  int rc = shmd__os_remove_if_unlocked(&c->d, name, &st);
  if (rc == 1) {
    c->found.orphan_files++;
    c->found.orphan_bytes += st.alloc_bytes;
  } else if (rc == 0) {
    c->found.live_files++;
    c->found.live_bytes += st.alloc_bytes;
  }
  return 0;
}

/* Removes the orphaned spare files of store s (see the essay above), adds them to the handle's
 * count, and, when `now` is not NULL, reports what it found there (live spares and the orphans
 * removed by this sweep). Returns 0 or a status from reading the directory. Never blocks on a
 * lock; costs one directory read plus an open per spare file. */
static int reclaim_dir(shmd_store_t *s, shmd_spare_info_t *now) {
  struct orphan_scan c;
  memset(&c, 0, sizeof c);
  c.d.fd = s->dirfd;
  c.d.path = s->path;
  int rc = shmd__os_list_dirat(&c.d, orphan_visit, &c);
  __atomic_add_fetch(&s->orphan_files, c.found.orphan_files, __ATOMIC_RELAXED);
  __atomic_add_fetch(&s->orphan_bytes, c.found.orphan_bytes, __ATOMIC_RELAXED);
  if (now)
    *now = c.found;
  return rc;
}

static void reclaim_orphans(shmd_store_t *s, shmd_spare_info_t *now) { (void)reclaim_dir(s, now); }

int shmd_spare_info(shmd_store_t *store, shmd_spare_info_t *info) {
  shmd_spare_info_t now;
  memset(&now, 0, sizeof now);
  int rc = reclaim_dir(store, &now);
  memset(info, 0, sizeof *info);
  info->live_files = now.live_files;
  info->live_bytes = now.live_bytes;
  info->orphan_files = __atomic_load_n(&store->orphan_files, __ATOMIC_RELAXED);
  info->orphan_bytes = __atomic_load_n(&store->orphan_bytes, __ATOMIC_RELAXED);
  return rc;
}

/* The size of a plain growth segment added as segment n: geometric growth, twice the segment
 * before it, up to the growth step (grow_seg_bytes). A store with a small first segment (the
 * default 4 MiB) grows by 8, 16, 32 MiB and then by the step, so a tiny store stays tiny and a big
 * one still grows by big segments; with a first segment of at least half the step (any store made
 * before) every growth segment is the step, as before. Every process computes the same from the
 * manifest's sizes. */
static uint64_t plain_grow_bytes(struct shmd__manifest *m, uint32_t n) {
  uint64_t prev = n ? m->segs[n - 1].size_bytes : m->first_seg_bytes;
  uint64_t g = prev >= m->grow_seg_bytes / 2 ? m->grow_seg_bytes : 2 * prev;
  return align_up(g, SHMD__DATA_ALIGN);
}

/* The size of the segment that growth by a block of min_data_bytes creates (0: a plain growth
 * segment), as shmd__grow() computes it, for segment n. */
static uint64_t grow_size(shmd_store_t *s, uint32_t n, uint64_t min_data_bytes) {
  struct shmd__manifest *m = s->man;
  uint64_t need = align_up(min_data_bytes + SHMD__HDR_BYTES +
                               s->alloc_ops->meta_bytes(min_data_bytes) + 2 * SHMD__DATA_ALIGN,
                           SHMD__DATA_ALIGN);
  uint64_t g = plain_grow_bytes(m, n);
  return g > need ? g : need;
}

/* Reserves the next piece of a spare (the whole rest when `all`). On failure drops it. */
static int spare_step(struct ahead *a, struct spare *sp, int all) {
  while (sp->reserved < sp->size) {
    uint64_t n = sp->size - sp->reserved;
    if (!all && n > SPARE_CHUNK)
      n = SPARE_CHUNK;
    int rc = shmd__os_reserve(sp->fd, sp->reserved, n);
    if (rc) {
      spare_drop(a->s, sp, 1);
      a->failed = 1;
      return rc;
    }
    /* Fault the reserved pages into this process's mapping now (they exist: no SIGBUS), so the
     * insert that turns the spare into a segment does not take thousands of page faults. */
    shmd__os_populate((unsigned char *)sp->addr + sp->reserved, n);
    sp->reserved += n;
    if (sp->reserved == sp->size)
      __atomic_fetch_sub(&g_ahead_busy, 1, __ATOMIC_RELAXED);
    if (!all)
      break;
  }
  return 0;
}

/*
 * One step of growth ahead of need for store s (see the essay above): when `start`, makes sure a
 * spare that can hold a block of want_data_bytes (0: a growth segment) exists or is being
 * reserved; then reserves one SPARE_CHUNK of a spare in progress. Never blocks on other threads
 * (skips the step instead), never fails the caller: returns 1 while a spare is in progress, else 0.
 * When to start one is the allocator's decision (shmd_alloc_expect(), alloc/front.c).
 */
int shmd__grow_ahead(shmd_store_t *s, uint64_t want_data_bytes, int start) {
  if (s == NULL || __atomic_load_n(&s->closing, __ATOMIC_ACQUIRE))
    return 0;
  if (!start && __atomic_load_n(&g_ahead_busy, __ATOMIC_RELAXED) == 0)
    return 0;
  struct ahead *a = ahead_lock(s, start);
  if (a == NULL)
    return 0;
  struct shmd__manifest *m = s->man;
  if (start && !a->failed) {
    uint64_t size = grow_size(s, shmd__seg_count(s), want_data_bytes);
    int have = 0, slot = want_data_bytes ? 1 : 0; /* slot 0: growth segment, 1: big block */
    for (int i = 0; i < SPARE_SLOTS; i++)
      if (a->sp[i].fd >= 0 && a->sp[i].size >= size)
        have = 1;
    uint64_t total = 0;
    uint32_t n = shmd__seg_count(s);
    for (uint32_t i = 0; i < n; i++)
      total += m->segs[i].size_bytes;
    if (m->max_store_bytes && total + size > m->max_store_bytes)
      have = 1; /* could never become a segment */
    if (n >= m->max_segments)
      have = 1;
    if (!have) {
      struct spare *sp = &a->sp[slot];
      spare_drop(s, sp, 1); /* a smaller big-block spare is replaced by a bigger one */
      uint32_t suffix;
      shmd__os_random(&suffix, sizeof suffix);
      snprintf(sp->name, sizeof sp->name, ".seg-spare-%u-%08x", shmd__os_pid(), suffix);
      sp->fd = -1;
      int fd;
      void *addr = NULL;
      struct shmd__os_dir d = {s->dirfd, s->path};
      if (shmd__os_create_emptyat(&d, sp->name, grow_file_perm(s), &fd) == 0) {
        if (lock_own_file(s, sp->name, fd) != 0) {
          shmd__os_close(fd); /* a sweep took it for an orphan and removes it */
        } else if (shmd__os_map(fd, size, s->os_how, &addr) == 0) {
          sp->fd = fd;
          sp->addr = addr;
          sp->pid = shmd__os_pid();
          sp->size = size;
          sp->reserved = 0;
          __atomic_fetch_add(&g_ahead_busy, 1, __ATOMIC_RELAXED);
        } else {
          shmd__os_unlinkat(&d, sp->name);
          shmd__os_close(fd);
        }
      }
      if (sp->fd < 0)
        a->failed = 1;
      pthread_mutex_unlock(&a->mu);
      return sp->fd >= 0; /* one system-call-heavy step per call: the first piece comes next */
    }
  }
  int busy = 0;
  for (int i = 0; i < SPARE_SLOTS; i++) {
    struct spare *sp = &a->sp[i];
    if (sp->fd >= 0 && sp->reserved < sp->size && !busy) {
      spare_step(a, sp, 0);
      busy = sp->fd >= 0 && sp->reserved < sp->size;
    }
  }
  pthread_mutex_unlock(&a->mu);
  return busy;
}

/* Takes a spare of at least `size` bytes and at most `limit` (0: any) for growth: finishes its
 * reservation if needed and returns its fd (the caller links sp_name to the segment's name and
 * unlinks sp_name, holding the fd, and so the lock, until then), with its size in *got and its
 * mapping in *addr; -1 if there is none. */
static int spare_take(shmd_store_t *s, uint64_t size, uint64_t limit, uint64_t *got,
                      void **addr, char *sp_name, size_t name_len) {
  struct ahead *a = ahead_lock(s, 0);
  if (a == NULL)
    return -1;
  int best = -1;
  for (int i = 0; i < SPARE_SLOTS; i++) {
    struct spare *sp = &a->sp[i];
    if (sp->fd >= 0 && sp->size >= size && (limit == 0 || sp->size <= limit) &&
        (best < 0 || sp->size < a->sp[best].size))
      best = i;
  }
  int fd = -1;
  if (best >= 0 && spare_step(a, &a->sp[best], 1) == 0) {
    struct spare *sp = &a->sp[best];
    fd = sp->fd;
    *got = sp->size;
    *addr = sp->addr;
    sp->addr = NULL;
    snprintf(sp_name, name_len, "%s", sp->name);
    sp->fd = -1; /* handed over */
  }
  a->failed = 0; /* the store grew: spares may be tried again */
  pthread_mutex_unlock(&a->mu);
  return fd;
}

/* ---------------------------------------------------------------------------------------------- */
/* Growth. */

int shmd__grow(shmd_store_t *s, struct shmd__thr *t, uint32_t seen_count, uint64_t min_data_bytes) {
  struct shmd__manifest *m = s->man;
  int rc = shmd__al_lock(s, t, 0, &m->grow_lock);
  if (rc)
    return rc;
  uint32_t n = shmd__seg_count(s);
  if (n != seen_count) {
    shmd__al_commit(s, t);
    return 1;
  }
  if (n >= m->max_segments) {
    shmd__al_commit(s, t);
    shmd__set_detail("the store has the maximum of %u segments", m->max_segments);
    return SHMD_ENOSPC;
  }
  uint64_t total = 0;
  for (uint32_t i = 0; i < n; i++)
    total += m->segs[i].size_bytes;
  /* Metadata of a segment: header + allocator metadata (~1/4096 of the data) + alignment. */
  uint64_t need = align_up(min_data_bytes + SHMD__HDR_BYTES + s->alloc_ops->meta_bytes(min_data_bytes) +
                               2 * SHMD__DATA_ALIGN, SHMD__DATA_ALIGN);
  uint64_t size = grow_size(s, n, min_data_bytes);
  uint64_t left = 0;
  if (m->max_store_bytes) {
    left = m->max_store_bytes > total ? m->max_store_bytes - total : 0;
    left = align_down(left, SHMD__DATA_ALIGN);
    if (size > left)
      size = left;
    if (size < need) {
      shmd__al_commit(s, t);
      shmd__set_detail("the store is at its size limit (%llu of %llu bytes)", (unsigned long long)total,
                       (unsigned long long)m->max_store_bytes);
      return SHMD_ENOSPC;
    }
  }
  reclaim_orphans(s, NULL); /* spare files of killed processes */
  char name[64], sp_name[64];
  struct shmd__os_dir d = {s->dirfd, s->path};
  uint32_t suffix = 0;
  int fd = -1;
  /* A spare reserved ahead of time (see above) becomes the segment without a reservation here. */
  uint64_t sp_size = 0;
  void *addr = NULL;
  int sp_fd = spare_take(s, size, left, &sp_size, &addr, sp_name, sizeof sp_name);
  rc = SHMD_EEXIST;
  for (int attempt = 0; attempt < 16 && sp_fd >= 0; attempt++) {
    shmd__os_random(&suffix, sizeof suffix);
    seg_file_name(name, sizeof name, n, suffix);
    rc = shmd__os_linkat(&d, sp_name, name);
    if (rc != SHMD_EEXIST)
      break;
  }
  if (sp_fd >= 0) {
    shmd__os_unlinkat(&d, sp_name); /* still locked by sp_fd: no sweep takes it meanwhile */
    if (rc == 0) {
      fd = sp_fd;
      size = sp_size;
    } else {
      shmd__os_unmap(addr, sp_size);
      addr = NULL;
      shmd__os_close(sp_fd);
    }
  }
  int refreshed = 0;
  for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
    shmd__os_random(&suffix, sizeof suffix);
    seg_file_name(name, sizeof name, n, suffix);
    rc = shmd__os_createat(&d, name, grow_file_perm(s), size, s->os_how, &fd);
    if (rc == SHMD_ENOENT && !refreshed++ && dir_refresh(s) == 0)
      continue; /* the directory had been removed and is there again (the malloc shim's) */
    if (rc != SHMD_EEXIST && rc != SHMD_ELOOP)
      break;
  }
  if (rc) {
    shmd__al_commit(s, t);
    return rc;
  }
  rc = addr != NULL ? 0 : shmd__os_map(fd, size, s->os_how, &addr);
  shmd__os_close(fd);
  if (rc == 0) {
    /* A segment added to an older store keeps the store's layout (segment 0's), so the library
     * that made the store can still open it after a newer one grew it (test_layouts). */
    rc = init_segment(s->alloc_ops, addr, size, n, s->hdr0->store_uuid, SHMD__HDR_BYTES, 0, s->hdr0->layout_minor);
    if (rc)
      shmd__os_unmap(addr, size);
  }
  if (rc) {
    shmd__os_unlinkat(&d, name);
    shmd__al_commit(s, t);
    return rc;
  }
  SHMD_CRASH_POINT("grow.before_commit");
  m->segs[n].size_bytes = size;
  m->segs[n].suffix = suffix;
  m->segs[n].flags = 0;
  s->seg_size[n + 1] = size;
  __atomic_store_n(&s->map->base[n + 1], (unsigned char *)addr, __ATOMIC_RELEASE);
  __atomic_store_n(&m->seg_count, n + 1, __ATOMIC_RELEASE); /* the commit point */
  SHMD_CRASH_POINT("grow.after_commit");
  shmd__al_commit(s, t);
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Information. */

static struct shmd__root *roots_of(shmd_store_t *s) {
  return (struct shmd__root *)(void *)((unsigned char *)s->hdr0 + s->man->roots_off);
}

int shmd_store_info(shmd_store_t *store, shmd_store_info_t *info) {
  const struct shmd__manifest *m = store->man;
  memset(info, 0, sizeof *info);
  info->layout_major = store->hdr0->layout_major;
  info->layout_minor = store->hdr0->layout_minor;
  info->segments = shmd__seg_count(store);
  info->lanes = m->lane_count;
  for (uint32_t i = 0; i < m->lane_count; i++)
    if (__atomic_load_n(&shmd__lane_at(store, i)->owner_pid, __ATOMIC_RELAXED) != 0)
      info->lanes_in_use++;
  const struct shmd__root *r = roots_of(store);
  for (uint32_t i = 0; i < m->root_cap; i++)
    if (r[i].name[0] != '\0')
      info->roots++;
  for (uint32_t i = 0; i < info->segments && i < m->max_segments; i++)
    info->store_bytes += m->segs[i].size_bytes;
  info->max_store_bytes = m->max_store_bytes;
  info->segment_bytes = m->grow_seg_bytes;
  info->recoveries = __atomic_load_n(&m->recoveries, __ATOMIC_RELAXED);
  info->created_unix = m->created_unix;
  memcpy(info->uuid, store->hdr0->store_uuid, 16);
  return 0;
}

int shmd_segment_info(shmd_store_t *store, uint32_t index, uint64_t *size_bytes, char *name, size_t name_len) {
  /* seg_count is a mutable word of the manifest: the table's own bounds come first */
  if (index >= shmd__seg_count(store) || index >= store->man->max_segments || index >= SHMD__MAX_SEGS)
    return SHMD_ENOTFOUND;
  if (size_bytes)
    *size_bytes = store->man->segs[index].size_bytes;
  if (name && name_len)
    seg_file_name(name, name_len, index, store->man->segs[index].suffix);
  return 0;
}

int shmd_attach_all(shmd_store_t *store, int populate) {
  uint32_t n = shmd__seg_count(store);
  for (uint32_t i = 0; i < n; i++) {
    int rc = attach_seg(store, i);
    if (rc)
      return rc;
    if (populate)
      shmd__os_populate(store->map->base[i + 1], store->seg_size[i + 1]);
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* For the malloc shim (store_ext.h): its private stores, and the snapshot a forked child of a
 * named-store process takes. */

uint32_t shmd__store_seg_count(shmd_store_t *s) { return shmd__seg_count(s); }

/* Copies the resident pages of the mapping (the rest of a sparse private file mapping reads zero). */
struct resident_arg {
  const unsigned char *vec;
};
static void copy_resident(unsigned char *dst, const unsigned char *src, uint64_t size, void *arg) {
  const struct resident_arg *r = arg;
  for (uint64_t i = 0; i < size / 4096; i++)
    if (r->vec[i] & 1)
      memcpy(dst + i * 4096, src + i * 4096, 4096);
}

void shmd__store_anonymize_first(shmd_store_t *s) {
  unsigned char *base = s->map->base[1];
  uint64_t size = s->seg_size[1];
  unsigned char *vec = malloc(size / 4096);
  if (vec == NULL || base == NULL)
    goto out;
  if (shmd__os_resident(base, size, vec) == 0) {
    struct resident_arg r = {vec};
    (void)shmd__os_remap_private(base, size, 0, copy_resident, &r);
  }
out:
  free(vec);
}

/* Whether n bytes at p (8-byte aligned, n a multiple of 8) are all zero. */
static int zero_words(const unsigned char *p, uint64_t n) {
  const uint64_t *w = (const uint64_t *)(const void *)p;
  uint64_t k = n / 8, i = 0;
  for (; i + 8 <= k; i += 8)
    if ((w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7]) != 0)
      return 0;
  for (; i < k; i++)
    if (w[i] != 0)
      return 0;
  return 1;
}

void shmd__store_copy_range(unsigned char *dst, const unsigned char *src, uint64_t from, uint64_t to) {
  while (from < to) {
    uint64_t end = (from | (SHMD_PAGE_BYTES - 1)) + 1;
    if (end > to)
      end = to;
    if (!zero_words(src + from, end - from))
      memcpy(dst + from, src + from, end - from);
    from = end;
  }
}

/* The lanes are most of segment 0's metadata (256 lanes of about 47 KiB, nearly all undo-log
 * room), so copying only their meaningful part is what keeps a small program's fork cheap. */
void shmd__store_copy_meta(unsigned char *dst, const unsigned char *src, uint64_t end, uint32_t seg) {
  const struct shmd__seg_hdr *h = (const struct shmd__seg_hdr *)(const void *)src;
  const struct shmd__manifest *m;
  uint64_t lanes_off, lane_bytes, mo;
  uint32_t lanes, op_cap;
  if (seg != 0 || end < SHMD__HDR_BYTES)
    goto whole;
  mo = h->manifest_off; /* read once: other processes may write */
  if (mo < SHMD__HDR_BYTES || mo > end || sizeof *m > end - mo)
    goto whole;
  m = (const struct shmd__manifest *)(const void *)(src + mo);
  lanes_off = m->lanes_off;
  lane_bytes = m->lane_bytes;
  lanes = m->lane_count;
  op_cap = m->op_log_cap;
  if (lanes > 4096 || op_cap > (1u << 20) || lane_bytes > end ||
      lane_bytes < sizeof(struct shmd__lane) + (uint64_t)op_cap * sizeof(struct shmd__undo) ||
      ((lanes_off | lane_bytes) & 7) != 0 || lanes_off > end || lanes * lane_bytes > end - lanes_off)
    goto whole;
  shmd__store_copy_range(dst, src, 0, lanes_off);
  for (uint32_t i = 0; i < lanes; i++) {
    uint64_t at = lanes_off + i * lane_bytes;
    const volatile struct shmd__lane *l = (const volatile struct shmd__lane *)(const void *)(src + at);
    uint64_t al = l->al_len, op = l->op_len;
    if (al > SHMD__AL_LOG_CAP)
      al = SHMD__AL_LOG_CAP;
    if (op > op_cap)
      op = op_cap; /* the rest is in the extension block, a block of the data area */
    shmd__store_copy_range(dst, src, at, at + offsetof(struct shmd__lane, al_log));
    at += offsetof(struct shmd__lane, al_log);
    shmd__store_copy_range(dst, src, at, at + al * sizeof(struct shmd__undo));
    at = lanes_off + i * lane_bytes + sizeof(struct shmd__lane);
    shmd__store_copy_range(dst, src, at, at + op * sizeof(struct shmd__undo));
  }
  shmd__store_copy_range(dst, src, lanes_off + lanes * lane_bytes, end);
  return;
whole:
  shmd__store_copy_range(dst, src, 0, end);
}

struct private_copy_arg {
  shmd__seg_fill_fn fill;
  uint32_t seg;
};
static void private_copy_fill(unsigned char *dst, const unsigned char *src, uint64_t size, void *arg) {
  const struct private_copy_arg *a = arg;
  a->fill(dst, src, size, a->seg);
}

void shmd__store_private_copy(shmd_store_t *s, shmd__seg_fill_fn fill) {
  for (uint32_t i = 1; i <= SHMD_MAX_SEGMENTS; i++) {
    unsigned char *base = s->map->base[i];
    if (base == NULL)
      continue;
    uint64_t size = (s->seg_size[i] + SHMD_PAGE_BYTES - 1) & ~(uint64_t)(SHMD_PAGE_BYTES - 1);
    struct private_copy_arg a = {fill, i - 1};
    (void)shmd__os_remap_private(base, size, 1, private_copy_fill, &a);
  }
}
