/* SPDX-License-Identifier: MIT */
/*
 * OBJECT ENCODING | REFCOUNT | FREQ | IDLETIME | HELP (Redis's object.c), answering with Redis
 * 7.0's names where they apply to shmdict's encodings (docs/commands.md):
 *
 *   string   "int" (an integer of at most 20 characters, as Redis stores it), "embstr" (up to 44
 *            bytes), "raw" (longer) — decided from the value: shmdict stores every string as bytes
 *   list     "quicklist"  (a list of chunks; shmdict has no compact small-list form)
 *   hash     "hashtable"  set  "hashtable"  zset  "skiplist" (an ordered tree with ranks)
 *
 * REFCOUNT is the number of keys sharing a list, set, hash or sorted set value (COPY shares it
 * until a write detaches a copy: kv/copy.c), else 1, except the integers 0..9999, which Redis
 * answers with its shared-object count 2147483647. FREQ answers Redis's error for a store without an LFU policy
 * (shmdict has no maxmemory policies); IDLETIME answers 0 (shmdict does not track access times).
 * A missing key answers nil, as Redis (the key is looked up before the subcommand's work).
 */
#include "kv/cmd.h"

static const char *const object_help[] = {
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
};

#define OBJ_SHARED_INTEGERS 10000
#define OBJ_SHARED_REFCOUNT 2147483647LL

static const char *encoding_of(const kv_ref_t *ref, long long *intval, int *is_int) {
  *is_int = 0;
  switch (ref->rec->type) {
  case KV_STRING:
    if (ref->len <= 20 && parse_ll((const char *)ref->data, ref->len, intval) == 0) {
      *is_int = 1;
      return "int";
    }
    return ref->len <= 44 ? "embstr" : "raw";
  case KV_LIST: return "quicklist";
  case KV_HASH: return "hashtable";
  case KV_SET: return "hashtable";
  case KV_ZSET: return "skiplist";
  default: return "unknown";
  }
}

int shmd__kv_cmd_object(cc_t *x) {
  const char *sub = A(1);
  size_t sl = L(1);
  int known = eq(sub, sl, "encoding") || eq(sub, sl, "refcount") || eq(sub, sl, "freq") || eq(sub, sl, "idletime");
  if (eq(sub, sl, "help")) {
    if (x->argc != 2)
      return r_error(x->r, "ERR wrong number of arguments for 'object|help' command");
    int rc = r_array(x->r, sizeof object_help / sizeof object_help[0]);
    for (size_t i = 0; rc == 0 && i < sizeof object_help / sizeof object_help[0]; i++)
      rc = r_str(&x->r->elems[i], SHMD_REPLY_STATUS, object_help[i], strlen(object_help[i]));
    return rc;
  }
  if (!known)
    return r_error(x->r, "ERR unknown subcommand '%.*s'. Try OBJECT HELP.", (int)(sl > 128 ? 128 : sl), sub);
  if (x->argc != 3) {
    char lower[16];
    size_t n = sl < sizeof lower - 1 ? sl : sizeof lower - 1;
    for (size_t i = 0; i < n; i++)
      lower[i] = (char)(sub[i] >= 'A' && sub[i] <= 'Z' ? sub[i] + 32 : sub[i]);
    lower[n] = 0;
    return r_error(x->r, "ERR wrong number of arguments for 'object|%s' command", lower);
  }
  kv_ref_t ref;
  int rc = kv_lookup(x->c, A(2), L(2), &ref);
  if (rc == SHMD_ENOTFOUND)
    return r_nil(x->r);
  if (rc)
    return rc;
  long long v = 0;
  int is_int;
  const char *enc = encoding_of(&ref, &v, &is_int);
  if (eq(sub, sl, "encoding"))
    return r_bulk(x->r, enc, strlen(enc));
  if (eq(sub, sl, "refcount")) {
    kv_share_t *sh;
    if (ref.share.v) {
      if ((rc = kv_share_view(x->c->s, ref.share, ref.rec->type, &sh)))
        return rc;
      return r_int(x->r, (int64_t)sh->refs);
    }
    return r_int(x->r, is_int && v >= 0 && v < OBJ_SHARED_INTEGERS ? OBJ_SHARED_REFCOUNT : 1);
  }
  if (eq(sub, sl, "freq"))
    return r_error(x->r, "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note "
                         "that when switching between policies at runtime LRU and LFU data will take some time to "
                         "adjust.");
  return r_int(x->r, 0); /* IDLETIME */
}
