/* SPDX-License-Identifier: MIT */
/*
 * What the workers of one shmdict-server share through the store (named root "shmdict.server"),
 * beside what the keyspace keeps for them (kv/notify.h: slots, pub/sub ring, blocked keys):
 *
 * - statistics per worker slot (clients, connections, commands, bytes, ...), published by each
 *   worker every cron tick with plain stores. INFO adds them up over the live workers, plus the
 *   totals of workers that died ("retired", added when their slot is reclaimed), so INFO answers
 *   for the whole server whichever worker a connection lands on, and its counters do not go back
 *   when a worker is killed.
 * - the client-id counter (one atomic add per connection), so CLIENT ID is unique server-wide.
 * - the options CONFIG SET changes: CONFIG SET on any worker stores them (a transaction under
 *   the area's lock, with a sequence number that is odd while they are written), every worker
 *   picks them up within a cron tick, and a worker the supervisor restarts starts with them. They
 *   are tagged with the server's run id, so a new server started on the same store begins from
 *   its own command line, as redis-server forgets CONFIG SET at restart.
 *
 * Statistics are best effort (a worker killed between two ticks loses up to 100 ms of counts);
 * the configuration is crash-safe (a writer killed half-way is rolled back by the lane protocol;
 * readers meanwhile keep what they have).
 */
#include <stdlib.h>
#include <string.h>

#include "kv/notify.h"
#include "server/server.h"

#define SH_ROOT "shmdict.server"
#define SH_MAGIC 0x31307672736d6873ull /* "shmsrv01" */
#define SH_CONFIG_BYTES 16384

enum { ST_CLIENTS, ST_CONNS, ST_REJECTED, ST_CMDS, ST_NET_IN, ST_NET_OUT, ST_BLOCKED, ST_PUBSUB, ST_OBL, ST_OPS, ST_N };

typedef struct sh_slot_s {
  uint64_t pid;
  uint64_t started_ms;
  uint64_t stat[ST_N];
  uint64_t reserved[4];
} sh_slot_t;

typedef struct sh_area_s {
  uint64_t magic;
  shmd_lock_t lock;
  uint64_t next_client_id;
  uint64_t config_seq; /* even: stable */
  uint64_t config_run;
  uint64_t config_len;
  uint64_t retired[ST_N];
  uint64_t reserved[16];
  sh_slot_t slot[KV_PS_SLOTS];
  char config[SH_CONFIG_BYTES];
} sh_area_t;

extern uint64_t srv_run_id;

static sh_area_t *area;
static shmd_ptr_t area_p;

static int area_get(void) {
  shmd_store_t *s = srv.store;
  if (shmd_root_get(s, SH_ROOT, &area_p) != 0) {
    shmd_tx_t *tx;
    shmd_ptr_t p;
    int rc = shmd_tx_begin(s, &tx);
    if (rc)
      return rc;
    if ((rc = shmd_tx_calloc(tx, sizeof(sh_area_t), &p))) {
      shmd_tx_abort(tx);
      return rc;
    }
    sh_area_t *a = shmd_resolve(s, p);
    a->magic = SH_MAGIC;
    a->next_client_id = 1;
    shmd_ptr_t existing;
    rc = shmd_root_set_nx(s, SH_ROOT, p, &existing);
    if (rc == SHMD_EEXIST) {
      shmd_tx_abort(tx);
      area_p = existing;
    } else if (rc) {
      shmd_tx_abort(tx);
      return rc;
    } else if ((rc = shmd_tx_commit(tx))) {
      return rc;
    } else {
      area_p = p;
    }
  }
  void *a;
  if (shmd_resolve_checked(s, area_p, sizeof(sh_area_t), &a))
    return SHMD_ECORRUPT;
  area = a;
  if (area->magic != SH_MAGIC)
    return SHMD_ECORRUPT;
  return 0;
}

/* Adds a dead worker's counters to the retired totals and clears its slot. */
static void retire(unsigned i) {
  sh_slot_t *sl = &area->slot[i];
  static const int cumulative[] = {ST_CONNS, ST_REJECTED, ST_CMDS, ST_NET_IN, ST_NET_OUT, ST_OBL};
  for (size_t k = 0; k < sizeof cumulative / sizeof cumulative[0]; k++) {
    uint64_t v = __atomic_exchange_n(&sl->stat[cumulative[k]], 0, __ATOMIC_RELAXED);
    __atomic_fetch_add(&area->retired[cumulative[k]], v, __ATOMIC_RELAXED);
  }
  for (int k = 0; k < ST_N; k++)
    __atomic_store_n(&sl->stat[k], 0, __ATOMIC_RELAXED);
  __atomic_store_n(&sl->pid, 0, __ATOMIC_RELEASE);
}

extern uint32_t srv_replaces_pid;

int srv_shared_attach(void) {
  kv_ps_root_t *root;
  int rc = shmd__kv_ps_attach(srv.store, cfg.pubsub_ring_bytes, srv_replaces_pid, &srv.slot, &root);
  if (rc) {
    srv_log(LL_WARNING, "Worker %d: cannot claim a worker slot in the store: %s", srv.index, shmd_strerror(rc));
    return -1;
  }
  if ((rc = area_get())) {
    srv_log(LL_WARNING, "Worker %d: cannot set up the server area in the store: %s", srv.index, shmd_strerror(rc));
    return -1;
  }
  if (area->slot[srv.slot].pid)
    retire((unsigned)srv.slot); /* the slot's previous owner died */
  area->slot[srv.slot].started_ms = srv.start_ms;
  __atomic_store_n(&area->slot[srv.slot].pid, (uint64_t)getpid(), __ATOMIC_RELEASE);
  srv_shared_cron(); /* adopt a CONFIG SET made by this server's other workers */
  return 0;
}

void srv_shared_detach(void) {
  if (area == NULL)
    return;
  retire((unsigned)srv.slot);
  shmd__kv_ps_detach(srv.store, srv.slot);
}

uint64_t srv_shared_next_client_id(void) {
  return area ? __atomic_fetch_add(&area->next_client_id, 1, __ATOMIC_RELAXED) : 0;
}

static void read_config(void) {
  uint64_t seq = __atomic_load_n(&area->config_seq, __ATOMIC_ACQUIRE);
  if ((seq & 1) || seq == srv.config_gen || seq == 0)
    return;
  if (__atomic_load_n(&area->config_run, __ATOMIC_RELAXED) != srv_run_id)
    return;
  uint64_t len = __atomic_load_n(&area->config_len, __ATOMIC_RELAXED);
  if (len > SH_CONFIG_BYTES)
    return;
  char *buf = malloc(len ? len : 1);
  if (buf == NULL)
    return;
  memcpy(buf, area->config, len);
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
  if (__atomic_load_n(&area->config_seq, __ATOMIC_RELAXED) == seq) {
    srv_config_unpack(&cfg, buf, len);
    srv.config_gen = seq;
  }
  free(buf);
}

int srv_shared_config_set(void) {
  char *buf = malloc(SH_CONFIG_BYTES);
  if (buf == NULL)
    return -1;
  size_t len = srv_config_pack(&cfg, buf, SH_CONFIG_BYTES);
  shmd_store_t *s = srv.store;
  shmd_tx_t *tx;
  int rc = shmd_tx_begin(s, &tx);
  if (rc) {
    free(buf);
    return -1;
  }
  rc = shmd_tx_lock(tx, shmd_ptr_add(area_p, offsetof(sh_area_t, lock)));
  if (rc == 0)
    rc = shmd_tx_log(tx, shmd_ptr_add(area_p, offsetof(sh_area_t, config_seq)), 3 * sizeof(uint64_t));
  if (rc == 0 && len)
    rc = shmd_tx_log(tx, shmd_ptr_add(area_p, offsetof(sh_area_t, config)), len);
  if (rc) {
    shmd_tx_abort(tx);
    free(buf);
    return -1;
  }
  uint64_t seq = area->config_seq;
  __atomic_store_n(&area->config_seq, seq | 1, __ATOMIC_RELEASE); /* odd: being written */
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  area->config_run = srv_run_id;
  area->config_len = len;
  memcpy(area->config, buf, len);
  __atomic_thread_fence(__ATOMIC_RELEASE);
  uint64_t done = (seq | 1) + 1;
  __atomic_store_n(&area->config_seq, done, __ATOMIC_RELEASE);
  rc = shmd_tx_commit(tx);
  free(buf);
  if (rc == 0)
    srv.config_gen = done;
  return rc ? -1 : 0;
}

void srv_shared_cron(void) {
  if (area == NULL)
    return;
  sh_slot_t *sl = &area->slot[srv.slot];
  uint64_t v[ST_N] = {0};
  v[ST_CLIENTS] = srv.nclients;
  v[ST_CONNS] = srv.stat_conns;
  v[ST_REJECTED] = srv.stat_rejected;
  v[ST_CMDS] = srv.stat_cmds;
  v[ST_NET_IN] = srv.stat_net_in;
  v[ST_NET_OUT] = srv.stat_net_out;
  v[ST_BLOCKED] = srv.nblocked;
  v[ST_PUBSUB] = srv.npubsub;
  v[ST_OBL] = srv.stat_obl_closed;
  v[ST_OPS] = srv.ops_per_sec;
  for (int k = 0; k < ST_N; k++)
    __atomic_store_n(&sl->stat[k], v[k], __ATOMIC_RELAXED);
  read_config();
  /* reclaim the slots of workers that died (this server's or another's) */
  static unsigned tick;
  if (++tick % 10 == 0) {
    uint64_t gone = shmd__kv_ps_reap(srv.store);
    for (unsigned i = 0; i < KV_PS_SLOTS; i++)
      if (gone & (1ull << i))
        retire(i);
  }
}

void srv_shared_totals(srv_totals_t *t) {
  memset(t, 0, sizeof *t);
  if (area == NULL) {
    t->clients = srv.nclients;
    return;
  }
  kv_ps_root_t *r = shmd__kv_ps_root(srv.store);
  uint64_t mask = r ? __atomic_load_n(&r->slot_mask, __ATOMIC_ACQUIRE) : 0;
  for (unsigned i = 0; i < KV_PS_SLOTS; i++) {
    if (i == (unsigned)srv.slot) {
      t->workers++;
      t->clients += srv.nclients;
      t->conns += srv.stat_conns;
      t->rejected += srv.stat_rejected;
      t->cmds += srv.stat_cmds;
      t->net_in += srv.stat_net_in;
      t->net_out += srv.stat_net_out;
      t->blocked += srv.nblocked;
      t->obl_closed += srv.stat_obl_closed;
      t->ops_per_sec += srv.ops_per_sec;
      t->pubsub_clients += srv.npubsub;
      continue;
    }
    sh_slot_t *sl = &area->slot[i];
    if (!(mask & (1ull << i)) || __atomic_load_n(&sl->pid, __ATOMIC_ACQUIRE) == 0)
      continue;
    t->workers++;
    t->clients += __atomic_load_n(&sl->stat[ST_CLIENTS], __ATOMIC_RELAXED);
    t->conns += __atomic_load_n(&sl->stat[ST_CONNS], __ATOMIC_RELAXED);
    t->rejected += __atomic_load_n(&sl->stat[ST_REJECTED], __ATOMIC_RELAXED);
    t->cmds += __atomic_load_n(&sl->stat[ST_CMDS], __ATOMIC_RELAXED);
    t->net_in += __atomic_load_n(&sl->stat[ST_NET_IN], __ATOMIC_RELAXED);
    t->net_out += __atomic_load_n(&sl->stat[ST_NET_OUT], __ATOMIC_RELAXED);
    t->blocked += __atomic_load_n(&sl->stat[ST_BLOCKED], __ATOMIC_RELAXED);
    t->pubsub_clients += __atomic_load_n(&sl->stat[ST_PUBSUB], __ATOMIC_RELAXED);
    t->obl_closed += __atomic_load_n(&sl->stat[ST_OBL], __ATOMIC_RELAXED);
    t->ops_per_sec += __atomic_load_n(&sl->stat[ST_OPS], __ATOMIC_RELAXED);
  }
  t->conns += __atomic_load_n(&area->retired[ST_CONNS], __ATOMIC_RELAXED);
  t->rejected += __atomic_load_n(&area->retired[ST_REJECTED], __ATOMIC_RELAXED);
  t->cmds += __atomic_load_n(&area->retired[ST_CMDS], __ATOMIC_RELAXED);
  t->net_in += __atomic_load_n(&area->retired[ST_NET_IN], __ATOMIC_RELAXED);
  t->net_out += __atomic_load_n(&area->retired[ST_NET_OUT], __ATOMIC_RELAXED);
  t->obl_closed += __atomic_load_n(&area->retired[ST_OBL], __ATOMIC_RELAXED);
}
