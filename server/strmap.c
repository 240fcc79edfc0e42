/* SPDX-License-Identifier: MIT */
/*
 * A small chained hash map from byte strings to pointers, in process memory (see strmap.h). The
 * table doubles when the load passes 1 and is rebuilt at once (the maps hold channel names and
 * blocked keys of one worker: small, and never on the hot path of data commands).
 */
#include "server/strmap.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash_bytes(const void *p, size_t n) {
  const unsigned char *s = p;
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ s[i]) * 1099511628211ull;
  return h ^ (h >> 29);
}

strmap_ent_t *strmap_get(const strmap_t *m, const void *key, size_t len) {
  if (m->tab == NULL)
    return NULL;
  uint64_t h = hash_bytes(key, len);
  for (strmap_ent_t *e = m->tab[h & m->mask]; e; e = e->next)
    if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0)
      return e;
  return NULL;
}

static int grow(strmap_t *m) {
  size_t n = m->tab ? (m->mask + 1) * 2 : 16;
  strmap_ent_t **t = calloc(n, sizeof *t);
  if (t == NULL)
    return -1;
  if (m->tab) {
    for (size_t i = 0; i <= m->mask; i++)
      for (strmap_ent_t *e = m->tab[i], *next; e; e = next) {
        next = e->next;
        e->next = t[e->hash & (n - 1)];
        t[e->hash & (n - 1)] = e;
      }
    free(m->tab);
  }
  m->tab = t;
  m->mask = n - 1;
  return 0;
}

strmap_ent_t *strmap_put(strmap_t *m, const void *key, size_t len, int *created) {
  strmap_ent_t *e = strmap_get(m, key, len);
  if (created)
    *created = 0;
  if (e)
    return e;
  if ((m->tab == NULL || m->count >= m->mask + 1) && grow(m))
    return NULL;
  e = malloc(sizeof *e + len + 1);
  if (e == NULL)
    return NULL;
  e->hash = hash_bytes(key, len);
  e->val = NULL;
  e->len = len;
  memcpy(e->key, key, len);
  e->key[len] = 0;
  e->next = m->tab[e->hash & m->mask];
  m->tab[e->hash & m->mask] = e;
  m->count++;
  if (created)
    *created = 1;
  return e;
}

void *strmap_del(strmap_t *m, const void *key, size_t len) {
  if (m->tab == NULL)
    return NULL;
  uint64_t h = hash_bytes(key, len);
  for (strmap_ent_t **pp = &m->tab[h & m->mask]; *pp; pp = &(*pp)->next) {
    strmap_ent_t *e = *pp;
    if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0) {
      *pp = e->next;
      void *v = e->val;
      free(e);
      m->count--;
      return v;
    }
  }
  return NULL;
}

void strmap_each(const strmap_t *m, void (*fn)(strmap_ent_t *e, void *arg), void *arg) {
  if (m->tab == NULL)
    return;
  for (size_t i = 0; i <= m->mask; i++)
    for (strmap_ent_t *e = m->tab[i], *next; e; e = next) {
      next = e->next;
      fn(e, arg);
    }
}

void strmap_free(strmap_t *m) {
  if (m->tab)
    for (size_t i = 0; i <= m->mask; i++)
      for (strmap_ent_t *e = m->tab[i], *next; e; e = next) {
        next = e->next;
        free(e);
      }
  free(m->tab);
  memset(m, 0, sizeof *m);
}
