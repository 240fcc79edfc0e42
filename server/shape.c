/* SPDX-License-Identifier: MIT */
/*
 * Writing a keyspace reply tree as RESP2 or RESP3, the way redis-server 7.0 types each command's
 * reply (its addReply* calls). The keyspace builds one tree per reply with the RESP2 types
 * (status, error, integer, bulk, nil, array), which is all RESP2 and the CLI need; RESP3 has
 * more types, and Redis picks them per command: maps (HGETALL), sets (SMEMBERS, SINTER, ...),
 * doubles (ZSCORE, ZINCRBY, ZADD INCR, ZMSCORE, the scores of ZRANGE WITHSCORES / ZPOPMIN /
 * ZMPOP, which also become [member, score] pairs), and a nil that is a null array in RESP2 for
 * some commands (LPOP/RPOP with a count, LMPOP, ZMPOP). This file holds that knowledge, per
 * command name, so the keyspace stays protocol-free. Each rule is checked against a real
 * redis-server in tests/test_server (the RESP3 comparison).
 */
#include <string.h>
#include <strings.h>

#include "server/server.h"

enum {
  SH_DEFAULT,
  SH_NILARR_IF_COUNT, /* LPOP / RPOP: nil is a null array when a count was given */
  SH_MAP,             /* HGETALL */
  SH_SET,             /* SMEMBERS, SINTER, SUNION, SDIFF */
  SH_SET_IF_COUNT,    /* SPOP with a count */
  SH_DOUBLE,          /* ZSCORE, ZINCRBY, ZADD (INCR) */
  SH_DOUBLES,         /* ZMSCORE */
  SH_WITHSCORES,      /* ZRANGE..., when WITHSCORES: [member, double] pairs */
  SH_ZPOP,            /* ZPOPMIN / ZPOPMAX: flat [m, d] without a count, pairs with one */
  SH_ZMPOP,           /* ZMPOP: null array; [key, [[m, d], ...]] */
  SH_NILARR,          /* LMPOP */
  SH_PAIRS_IF_WITHVALUES, /* HRANDFIELD WITHVALUES */
};

static const struct {
  const char *name;
  int shape;
} shapes[] = {
    {"lpop", SH_NILARR_IF_COUNT},  {"rpop", SH_NILARR_IF_COUNT},   {"hgetall", SH_MAP},
    {"smembers", SH_SET},          {"sinter", SH_SET},             {"sunion", SH_SET},
    {"sdiff", SH_SET},             {"spop", SH_SET_IF_COUNT},      {"zscore", SH_DOUBLE},
    {"zincrby", SH_DOUBLE},        {"zadd", SH_DOUBLE},            {"zmscore", SH_DOUBLES},
    {"zrange", SH_WITHSCORES},     {"zrangebyscore", SH_WITHSCORES}, {"zrevrange", SH_WITHSCORES},
    {"zrevrangebyscore", SH_WITHSCORES}, {"zunion", SH_WITHSCORES}, {"zinter", SH_WITHSCORES},
    {"zdiff", SH_WITHSCORES},      {"zrandmember", SH_WITHSCORES}, {"zpopmin", SH_ZPOP},
    {"zpopmax", SH_ZPOP},          {"zmpop", SH_ZMPOP},            {"lmpop", SH_NILARR},
    {"hrandfield", SH_PAIRS_IF_WITHVALUES},
};

static int shape_of(const char *name) {
  /* a short scan over a static table, comparing whole names only when the first letters agree */
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    if (shapes[i].name[0] == name[0] && shapes[i].name[1] == name[1] && !strcmp(shapes[i].name, name))
      return shapes[i].shape;
  return SH_DEFAULT;
}

static void emit(obuf_t *o, int proto, const shmd_reply_t *r, int nil_array) {
  switch (r->type) {
  case SHMD_REPLY_STATUS:
    resp_status(o, r->str, r->len);
    break;
  case SHMD_REPLY_ERROR:
    resp_error(o, r->str, r->len);
    break;
  case SHMD_REPLY_INTEGER:
    resp_int(o, r->integer);
    break;
  case SHMD_REPLY_BULK:
    resp_bulk(o, r->str, r->len);
    break;
  case SHMD_REPLY_NIL:
    if (nil_array)
      resp_null_array(o, proto);
    else
      resp_null(o, proto);
    break;
  case SHMD_REPLY_ARRAY:
    resp_array(o, (long long)r->nelems);
    for (size_t i = 0; i < r->nelems; i++)
      emit(o, proto, &r->elems[i], 0);
    break;
  default:
    resp_error(o, "ERR shmdict: unknown reply type", 31);
  }
}

static void emit_double(obuf_t *o, int proto, const shmd_reply_t *r) {
  if (r->type == SHMD_REPLY_BULK)
    resp_double_str(o, proto, r->str, r->len);
  else
    emit(o, proto, r, 0);
}

/* A flat array [m, s, m, s ...] as pairs [[m, d], ...]. */
static void emit_pairs(obuf_t *o, int proto, const shmd_reply_t *r, int doubles) {
  if (r->type != SHMD_REPLY_ARRAY || r->nelems % 2) {
    emit(o, proto, r, 0);
    return;
  }
  resp_array(o, (long long)(r->nelems / 2));
  for (size_t i = 0; i + 1 < r->nelems; i += 2) {
    resp_array(o, 2);
    emit(o, proto, &r->elems[i], 0);
    if (doubles)
      emit_double(o, proto, &r->elems[i + 1]);
    else
      emit(o, proto, &r->elems[i + 1], 0);
  }
}

static int has_arg(int argc, const char **argv, const size_t *lens, const char *word) {
  size_t n = strlen(word);
  for (int i = 2; i < argc; i++)
    if (lens[i] == n && !strncasecmp(argv[i], word, n))
      return 1;
  return 0;
}

void srv_write_reply(client_t *c, const char *cmd, int argc, const char **argv, const size_t *lens,
                     const shmd_reply_t *r) {
  obuf_t *o = &c->out;
  int proto = c->resp;
  if (r->type == SHMD_REPLY_ERROR) {
    resp_error(o, r->str, r->len);
    return;
  }
  int sh = shape_of(cmd);
  if (proto < 3) {
    int nilarr = (sh == SH_NILARR_IF_COUNT && argc == 3) || sh == SH_NILARR || sh == SH_ZMPOP;
    emit(o, proto, r, nilarr);
    return;
  }
  switch (sh) {
  case SH_MAP:
    if (r->type == SHMD_REPLY_ARRAY && r->nelems % 2 == 0) {
      resp_map(o, proto, (long long)(r->nelems / 2));
      for (size_t i = 0; i < r->nelems; i++)
        emit(o, proto, &r->elems[i], 0);
      return;
    }
    break;
  case SH_SET_IF_COUNT:
    if (argc != 3)
      break;
    /* fall through */
  case SH_SET:
    if (r->type == SHMD_REPLY_ARRAY) {
      resp_set(o, proto, (long long)r->nelems);
      for (size_t i = 0; i < r->nelems; i++)
        emit(o, proto, &r->elems[i], 0);
      return;
    }
    break;
  case SH_DOUBLE:
    emit_double(o, proto, r);
    return;
  case SH_DOUBLES:
    if (r->type == SHMD_REPLY_ARRAY) {
      resp_array(o, (long long)r->nelems);
      for (size_t i = 0; i < r->nelems; i++)
        emit_double(o, proto, &r->elems[i]);
      return;
    }
    break;
  case SH_WITHSCORES:
    if (has_arg(argc, argv, lens, "WITHSCORES")) {
      emit_pairs(o, proto, r, 1);
      return;
    }
    break;
  case SH_PAIRS_IF_WITHVALUES:
    if (has_arg(argc, argv, lens, "WITHVALUES")) {
      emit_pairs(o, proto, r, 0);
      return;
    }
    break;
  case SH_ZPOP:
    if (argc == 3) {
      emit_pairs(o, proto, r, 1);
      return;
    }
    if (r->type == SHMD_REPLY_ARRAY) {
      resp_array(o, (long long)r->nelems);
      for (size_t i = 0; i < r->nelems; i++) {
        if (i % 2)
          emit_double(o, proto, &r->elems[i]);
        else
          emit(o, proto, &r->elems[i], 0);
      }
      return;
    }
    break;
  case SH_ZMPOP:
    if (r->type == SHMD_REPLY_ARRAY && r->nelems == 2 && r->elems[1].type == SHMD_REPLY_ARRAY) {
      resp_array(o, 2);
      emit(o, proto, &r->elems[0], 0);
      const shmd_reply_t *ps = &r->elems[1];
      resp_array(o, (long long)ps->nelems);
      for (size_t i = 0; i < ps->nelems; i++) {
        const shmd_reply_t *p = &ps->elems[i];
        if (p->type == SHMD_REPLY_ARRAY && p->nelems == 2) {
          resp_array(o, 2);
          emit(o, proto, &p->elems[0], 0);
          emit_double(o, proto, &p->elems[1]);
        } else {
          emit(o, proto, p, 0);
        }
      }
      return;
    }
    break;
  default:
    break;
  }
  emit(o, proto, r, 0);
}
