/* SPDX-License-Identifier: MIT */
/*
 * Internal to shmdict-server: a small process-local hash map from byte strings to pointers
 * (chained, power-of-two tables that double), for the worker's pub/sub tables and its blocked
 * keys. Process memory only; nothing here is shared.
 */
#ifndef SHMD_SERVER_STRMAP_H
#define SHMD_SERVER_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct strmap_ent_s {
  struct strmap_ent_s *next;
  uint64_t hash;
  void *val;
  size_t len;
  char key[]; /* len bytes, NUL-terminated */
} strmap_ent_t;

typedef struct strmap_s {
  strmap_ent_t **tab;
  size_t mask; /* table size - 1 (0 with no table) */
  size_t count;
} strmap_t;

/* The entry for key, or NULL. */
strmap_ent_t *strmap_get(const strmap_t *m, const void *key, size_t len);
/* The entry for key, created with val NULL when absent (*created set). NULL when out of memory. */
strmap_ent_t *strmap_put(strmap_t *m, const void *key, size_t len, int *created);
/* Removes the entry for key (returns its value, or NULL). */
void *strmap_del(strmap_t *m, const void *key, size_t len);
/* Calls fn for each entry (fn must not change the map). */
void strmap_each(const strmap_t *m, void (*fn)(strmap_ent_t *e, void *arg), void *arg);
void strmap_free(strmap_t *m);

#endif
