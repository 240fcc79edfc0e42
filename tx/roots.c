/* SPDX-License-Identifier: MIT */
/*
 * Named roots: the store's directory of names for its top structures (shmd_root_*), a fixed table
 * in segment 0 (the manifest places it, segments/store.c validates where) changed only inside a
 * transaction under the manifest's roots lock, so a crash half-way through a set or delete is
 * rolled back like any other operation. A layer of its own would be too little; it lives with the
 * transactions it is built on.
 *
 * Locks: the roots lock (manifest), after the containers' in the lock order.
 */
#include <stddef.h>
#include <string.h>

#include "segments/err.h"
#include "segments/store_int.h"
#include "shmdict/store.h"
#include "shmdict/tx.h"

/* ---------------------------------------------------------------------------------------------- */
/* Named roots. */

static struct shmd__root *roots_of(shmd_store_t *s) {
  return (struct shmd__root *)(void *)((unsigned char *)s->hdr0 + s->man->roots_off);
}

static shmd_ptr_t roots_lock_ptr(shmd_store_t *s) {
  return shmd_ptr_make(0, s->hdr0->manifest_off + offsetof(struct shmd__manifest, roots_lock));
}

static int root_name_ok(const char *name) {
  size_t n = name ? strlen(name) : 0;
  if (n == 0 || n > SHMD_ROOT_NAME_MAX) {
    shmd__set_detail("root names are 1 to %d bytes", SHMD_ROOT_NAME_MAX);
    return 0;
  }
  return 1;
}

/* Finds `name`; *slot gets the first free slot when absent. */
static struct shmd__root *root_find(shmd_store_t *s, const char *name, struct shmd__root **slot) {
  struct shmd__root *r = roots_of(s);
  *slot = NULL;
  for (uint32_t i = 0; i < s->man->root_cap; i++) {
    if (r[i].name[0] == '\0') {
      if (*slot == NULL)
        *slot = &r[i];
      continue;
    }
    if (strncmp(r[i].name, name, sizeof r[i].name) == 0)
      return &r[i];
  }
  return NULL;
}

static int root_put(shmd_store_t *store, const char *name, shmd_ptr_t p, int nx, shmd_ptr_t *existing) {
  if (!root_name_ok(name) || p.v == 0)
    return SHMD_EINVAL;
  shmd_tx_t *tx;
  int rc = shmd_tx_begin(store, &tx);
  if (rc)
    return rc;
  rc = shmd_tx_lock(tx, roots_lock_ptr(store));
  if (rc)
    goto fail;
  struct shmd__root *slot, *r = root_find(store, name, &slot);
  if (r && nx) {
    if (existing)
      *existing = (shmd_ptr_t){r->ptr};
    /* Nothing changed: end the level with a commit, so that an enclosing transaction of the
     * caller is not marked aborted by an answer it may expect (racing creators). */
    rc = shmd_tx_commit(tx);
    return rc ? rc : SHMD_EEXIST;
  }
  if (r == NULL)
    r = slot;
  if (r == NULL) {
    shmd__set_detail("the named-root directory is full (%u roots)", store->man->root_cap);
    rc = SHMD_ENOSPC;
    goto fail;
  }
  rc = shmd_tx_log(tx, shmd_ptr_from_addr(store, r), sizeof *r);
  if (rc)
    goto fail;
  memset(r->name, 0, sizeof r->name);
  memcpy(r->name, name, strlen(name));
  r->ptr = p.v;
  return shmd_tx_commit(tx);
fail:
  shmd_tx_abort(tx);
  return rc;
}

int shmd_root_set(shmd_store_t *store, const char *name, shmd_ptr_t p) {
  return root_put(store, name, p, 0, NULL);
}

int shmd_root_set_nx(shmd_store_t *store, const char *name, shmd_ptr_t p, shmd_ptr_t *existing) {
  return root_put(store, name, p, 1, existing);
}

int shmd_root_get(shmd_store_t *store, const char *name, shmd_ptr_t *out) {
  if (!root_name_ok(name))
    return SHMD_EINVAL;
  shmd_tx_t *tx;
  int rc = shmd_tx_begin(store, &tx);
  if (rc)
    return rc;
  rc = shmd_tx_lock(tx, roots_lock_ptr(store));
  if (rc == 0) {
    struct shmd__root *slot, *r = root_find(store, name, &slot);
    if (r)
      *out = (shmd_ptr_t){r->ptr};
    else
      rc = SHMD_ENOTFOUND;
  }
  int rc2 = shmd_tx_commit(tx);
  return rc ? rc : rc2;
}

int shmd_root_del(shmd_store_t *store, const char *name) {
  if (!root_name_ok(name))
    return SHMD_EINVAL;
  shmd_tx_t *tx;
  int rc = shmd_tx_begin(store, &tx);
  if (rc)
    return rc;
  rc = shmd_tx_lock(tx, roots_lock_ptr(store));
  if (rc)
    goto fail;
  struct shmd__root *slot, *r = root_find(store, name, &slot);
  if (r == NULL) {
    rc = SHMD_ENOTFOUND;
    goto fail;
  }
  rc = shmd_tx_log(tx, shmd_ptr_from_addr(store, r), sizeof *r);
  if (rc)
    goto fail;
  memset(r, 0, sizeof *r);
  return shmd_tx_commit(tx);
fail:
  shmd_tx_abort(tx);
  return rc;
}

int shmd_root_foreach(shmd_store_t *store, int (*fn)(const char *name, shmd_ptr_t p, void *arg), void *arg) {
  struct shmd__root *r = roots_of(store);
  for (uint32_t i = 0; i < store->man->root_cap; i++) {
    char name[SHMD_ROOT_NAME_MAX + 1];
    shmd_ptr_t p = {__atomic_load_n(&r[i].ptr, __ATOMIC_ACQUIRE)};
    memcpy(name, r[i].name, sizeof name);
    name[SHMD_ROOT_NAME_MAX] = '\0';
    if (name[0] == '\0' || p.v == 0)
      continue;
    int rc = fn(name, p, arg);
    if (rc)
      return rc;
  }
  return 0;
}
