/* SPDX-License-Identifier: MIT */
/*
 * INFO (Redis's genRedisInfoString) for shmdict-server. Sections server, clients, memory,
 * persistence, stats, replication, cpu, keyspace, and shmdict (the store and the workers),
 * with Redis's field names so monitoring that reads INFO works. Across workers: the clients and
 * stats sections add up every live worker of the store (shared.c) plus the totals of workers
 * that died; the server section describes the worker that answers (process_id, its uptime) and
 * says how many workers there are; memory is the store's (what the data takes, shared by all);
 * keyspace is read from the store, so every worker reports the same.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "kv/cmdtable.h"
#include "server/server.h"

extern uint64_t srv_run_id;

static void add(obuf_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(obuf_t *o, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0)
    obuf_add(o, buf, (size_t)(n < (int)sizeof buf ? n : (int)sizeof buf - 1));
}

static void human(uint64_t n, char *out, size_t cap) {
  const char *units = "BKMGTP";
  double d = (double)n;
  int u = 0;
  while (d >= 1024 && u < 5) {
    d /= 1024;
    u++;
  }
  if (u == 0)
    snprintf(out, cap, "%lluB", (unsigned long long)n);
  else
    snprintf(out, cap, "%.2f%c", d, units[u]);
}

static int want(int argc, const char **argv, const size_t *lens, const char *sec, int is_default) {
  if (argc <= 1)
    return is_default;
  for (int i = 1; i < argc; i++) {
    if (strlen(sec) == lens[i] && !strncasecmp(argv[i], sec, lens[i]))
      return 1;
    if ((lens[i] == 3 && !strncasecmp(argv[i], "all", 3)) || (lens[i] == 10 && !strncasecmp(argv[i], "everything", 10)))
      return 1;
    if (lens[i] == 7 && !strncasecmp(argv[i], "default", 7) && is_default)
      return 1;
  }
  return 0;
}

void srv_info(client_t *c, int argc, const char **argv, const size_t *lens) {
  obuf_t o = {0};
  int sections = 0;
  srv_totals_t t;
  srv_shared_totals(&t);
  uint64_t now = srv_now_ms();
  if (want(argc, argv, lens, "server", 1)) {
    struct utsname un;
    uname(&un);
    add(&o, "# Server\r\n");
    add(&o, "redis_version:%s\r\n", SRV_REDIS_VERSION);
    add(&o, "redis_git_sha1:00000000\r\nredis_git_dirty:0\r\nredis_build_id:0\r\n");
    add(&o, "redis_mode:standalone\r\n");
    add(&o, "os:%s %s %s\r\n", un.sysname, un.release, un.machine);
    add(&o, "arch_bits:%d\r\n", (int)(sizeof(long) * 8));
    add(&o, "multiplexing_api:libuv %s\r\n", uv_version_string());
    add(&o, "process_id:%d\r\n", (int)getpid());
    add(&o, "process_supervised:no\r\n");
    add(&o, "run_id:%016llx%016llx%08llx\r\n", (unsigned long long)srv_run_id, (unsigned long long)srv_run_id,
        (unsigned long long)(srv_run_id >> 32));
    add(&o, "tcp_port:%d\r\n", cfg.port);
    add(&o, "server_time_usec:%llu\r\n", (unsigned long long)srv_now_us());
    add(&o, "uptime_in_seconds:%llu\r\n", (unsigned long long)((now - srv.start_ms) / 1000));
    add(&o, "uptime_in_days:%llu\r\n", (unsigned long long)((now - srv.start_ms) / 86400000));
    add(&o, "hz:10\r\nconfigured_hz:10\r\n");
    add(&o, "executable:shmdict-server\r\n");
    add(&o, "config_file:%s\r\n", cfg.config_file ? cfg.config_file : "");
    add(&o, "shmdict_version:%s\r\n", SHMD_SERVER_VERSION);
    add(&o, "shmdict_store:%s\r\n", cfg.store ? cfg.store : "");
    add(&o, "shmdict_workers:%llu\r\n", (unsigned long long)t.workers);
    add(&o, "shmdict_worker_index:%d\r\n", srv.index);
    add(&o, "shmdict_worker_slot:%d\r\n", srv.slot);
    sections++;
  }
  if (want(argc, argv, lens, "clients", 1)) {
    if (sections++)
      add(&o, "\r\n");
    add(&o, "# Clients\r\n");
    add(&o, "connected_clients:%llu\r\n", (unsigned long long)t.clients);
    add(&o, "cluster_connections:0\r\n");
    add(&o, "maxclients:%llu\r\n", (unsigned long long)cfg.maxclients);
    add(&o, "client_recent_max_input_buffer:0\r\nclient_recent_max_output_buffer:0\r\n");
    add(&o, "blocked_clients:%llu\r\n", (unsigned long long)t.blocked);
    add(&o, "tracking_clients:0\r\n");
    add(&o, "clients_in_timeout_table:%llu\r\n", (unsigned long long)t.blocked);
    add(&o, "pubsub_clients:%llu\r\n", (unsigned long long)t.pubsub_clients);
    add(&o, "worker_connected_clients:%llu\r\n", (unsigned long long)srv.nclients);
  }
  if (want(argc, argv, lens, "memory", 1)) {
    if (sections++)
      add(&o, "\r\n");
    static shmd_stats_t st; /* big (per-class arrays): not on the stack */
    memset(&st, 0, sizeof st);
    shmd_stats(srv.store, &st);
    shmd_store_info_t si;
    memset(&si, 0, sizeof si);
    shmd_store_info(srv.store, &si);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    char h1[32], h2[32], h3[32];
    human(st.allocated_bytes, h1, sizeof h1);
    human((uint64_t)ru.ru_maxrss * 1024, h2, sizeof h2);
    human(si.store_bytes, h3, sizeof h3);
    add(&o, "# Memory\r\n");
    add(&o, "used_memory:%llu\r\n", (unsigned long long)st.allocated_bytes);
    add(&o, "used_memory_human:%s\r\n", h1);
    add(&o, "used_memory_rss:%llu\r\n", (unsigned long long)ru.ru_maxrss * 1024);
    add(&o, "used_memory_rss_human:%s\r\n", h2);
    add(&o, "maxmemory:0\r\nmaxmemory_human:0B\r\nmaxmemory_policy:noeviction\r\n");
    add(&o, "mem_allocator:shmdict\r\n");
    add(&o, "shmdict_store_bytes:%llu\r\n", (unsigned long long)si.store_bytes);
    add(&o, "shmdict_store_human:%s\r\n", h3);
    add(&o, "shmdict_segments:%llu\r\n", (unsigned long long)si.segments);
  }
  if (want(argc, argv, lens, "persistence", 1)) {
    if (sections++)
      add(&o, "\r\n");
    add(&o, "# Persistence\r\n");
    add(&o, "loading:0\r\nasync_loading:0\r\n");
    add(&o, "rdb_changes_since_last_save:0\r\nrdb_bgsave_in_progress:0\r\nrdb_last_save_time:%llu\r\n",
        (unsigned long long)(srv.start_ms / 1000));
    add(&o, "rdb_last_bgsave_status:ok\r\nrdb_saves:0\r\n");
    add(&o, "aof_enabled:0\r\naof_rewrite_in_progress:0\r\naof_last_write_status:ok\r\n");
    add(&o, "shmdict_persistence:%s\r\n",
        "the data lives in the store's segment files; every acknowledged write is in the store");
  }
  if (want(argc, argv, lens, "stats", 1)) {
    if (sections++)
      add(&o, "\r\n");
    add(&o, "# Stats\r\n");
    add(&o, "total_connections_received:%llu\r\n", (unsigned long long)t.conns);
    add(&o, "total_commands_processed:%llu\r\n", (unsigned long long)t.cmds);
    add(&o, "instantaneous_ops_per_sec:%llu\r\n", (unsigned long long)t.ops_per_sec);
    add(&o, "total_net_input_bytes:%llu\r\n", (unsigned long long)t.net_in);
    add(&o, "total_net_output_bytes:%llu\r\n", (unsigned long long)t.net_out);
    add(&o, "rejected_connections:%llu\r\n", (unsigned long long)t.rejected);
    add(&o, "client_output_buffer_limit_disconnections:%llu\r\n", (unsigned long long)t.obl_closed);
    add(&o, "pubsub_channels:%llu\r\n", (unsigned long long)srv_pubsub_local_channels());
    add(&o, "pubsub_patterns:%llu\r\n", (unsigned long long)srv_pubsub_local_patterns());
    add(&o, "keyspace_hits:0\r\nkeyspace_misses:0\r\n");
  }
  if (want(argc, argv, lens, "replication", 1)) {
    if (sections++)
      add(&o, "\r\n");
    add(&o, "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n");
  }
  if (want(argc, argv, lens, "cpu", 1)) {
    if (sections++)
      add(&o, "\r\n");
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    add(&o, "# CPU\r\n");
    add(&o, "used_cpu_sys:%ld.%06ld\r\n", (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec);
    add(&o, "used_cpu_user:%ld.%06ld\r\n", (long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec);
  }
  if (want(argc, argv, lens, "keyspace", 1)) {
    if (sections++)
      add(&o, "\r\n");
    add(&o, "# Keyspace\r\n");
    /* keys from DBSIZE (O(1)); the keyspace does not count keys with a TTL, so expires and
     * avg_ttl are 0 (docs/server.md) */
    for (unsigned db = 0; db < SHMD_KV_DATABASES; db++) {
      uint64_t keys = 0;
      if (shmd__kv_dbsize(srv.store, db, &keys) != 0 || keys == 0)
        continue;
      add(&o, "db%u:keys=%llu,expires=0,avg_ttl=0\r\n", db, (unsigned long long)keys);
    }
  }
  resp_verbatim(&c->out, c->resp, o.buf ? o.buf : "", o.len);
  obuf_free(&o);
}
