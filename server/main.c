/* SPDX-License-Identifier: MIT */
/*
 * shmdict-server: the keyspace of a shmdict store over the Redis protocol. This file is the
 * supervisor: it reads the options (config file, then the command line, as redis-server does),
 * checks that the store opens and the port is free, creates the Unix socket, and forks
 * --processes workers (worker.c). Each worker opens the store itself and listens on its own
 * SO_REUSEPORT socket, so the kernel spreads new connections over the workers. A worker that
 * dies -- crash, SIGKILL, OOM killer -- is restarted at once; its clients reconnect to any worker
 * and find every acknowledged write in the store (each command commits before its reply is
 * sent). SIGTERM / SIGINT stop the workers and then the supervisor.
 *
 * The supervisor never opens the store while workers run and holds no lock in it, so it cannot
 * wedge them; the workers die with it (PR_SET_PDEATHSIG).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "server/server.h"

extern int srv_unix_listen_fd;
extern uint32_t srv_replaces_pid;
extern int srv_acl_load(const char *path, char *err, size_t errcap);

uint64_t srv_run_id;

static void usage(FILE *f) {
  fprintf(f,
          "Usage: shmdict-server [--config FILE] [--dir DIR] --store NAME [--port 6379] [--bind ADDR ...]\n"
          "                      [--unixsocket PATH] [--requirepass PW | --aclfile FILE] [--processes N]\n"
          "                      [--maxclients N] [--OPTION VALUE ...]\n"
          "       shmdict-server --version | --help\n"
          "\n"
          "Serves the keyspace of the shmdict store NAME (in DIR, default $SHMDICT_DIR or /dev/shm/shmdict)\n"
          "over the Redis protocol (RESP2 and RESP3) with N worker processes sharing the port. Any\n"
          "redis.conf-style option of docs/server.md may be given as --name value or in the config file.\n");
}

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Fails early, with the reason, when the port cannot be bound (the workers bind with
 * SO_REUSEPORT, so only a socket without it, i.e. another program, stops them). */
static int probe_bind(const char *addr, int port) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t sl;
  int family = strchr(addr, ':') ? AF_INET6 : AF_INET;
  if (family == AF_INET6) {
    struct sockaddr_in6 *a = (void *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, addr, &a->sin6_addr) != 1)
      return -2;
    sl = sizeof *a;
  } else {
    struct sockaddr_in *a = (void *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, addr, &a->sin_addr) != 1)
      return -2;
    sl = sizeof *a;
  }
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  int rc = bind(fd, (struct sockaddr *)&ss, sl);
  int e = errno;
  close(fd);
  errno = e;
  return rc;
}

static int make_unix_socket(const char *path, unsigned perm) {
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof a.sun_path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  strcpy(a.sun_path, path);
  unlink(path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0); /* inherited by the workers */
  if (fd < 0)
    return -1;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, cfg.tcp_backlog) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  if (perm)
    chmod(path, perm);
  return fd;
}

/* ---------------------------------------------------------------------------------------------- */
/* The supervisor */

typedef struct worker_s {
  pid_t pid;
  int64_t started_ms;
  int quick_failures;
} worker_t;

static worker_t workers[SRV_MAX_WORKERS];

static pid_t spawn(int i, uint32_t replaces) {
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    srv_log(LL_WARNING, "fork: %s", strerror(errno));
    return -1;
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
      _exit(0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGCHLD, SIG_DFL);
    srv_replaces_pid = replaces;
    _exit(worker_main(i));
  }
  workers[i].pid = pid;
  workers[i].started_ms = mono_ms();
  return pid;
}

static int supervise(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigprocmask(SIG_BLOCK, &set, NULL);
  for (int i = 0; i < cfg.processes; i++)
    if (spawn(i, 0) < 0)
      return 1;
  int exit_code = 0;
  for (;;) {
    siginfo_t si;
    struct timespec ts = {1, 0};
    int sig = sigtimedwait(&set, &si, &ts);
    if (sig == SIGTERM || sig == SIGINT) {
      srv_log(LL_WARNING, "Received %s scheduling shutdown...", sig == SIGINT ? "SIGINT" : "SIGTERM");
      break;
    }
    /* reap (SIGCHLD, or a periodic look) */
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
      int i;
      for (i = 0; i < cfg.processes; i++)
        if (workers[i].pid == pid)
          break;
      if (i == cfg.processes)
        continue;
      int64_t lived = mono_ms() - workers[i].started_ms;
      if (WIFSIGNALED(st))
        srv_log(LL_WARNING, "Worker %d (pid %d) killed by signal %d after %lld ms; restarting it", i, (int)pid,
                WTERMSIG(st), (long long)lived);
      else
        srv_log(LL_WARNING, "Worker %d (pid %d) exited with status %d after %lld ms; restarting it", i, (int)pid,
                WEXITSTATUS(st), (long long)lived);
      /* A worker that keeps failing at start (store or port trouble) is not restarted for ever. */
      if (WIFEXITED(st) && WEXITSTATUS(st) != 0 && lived < 2000) {
        if (++workers[i].quick_failures >= 5) {
          srv_log(LL_WARNING, "Worker %d failed to start 5 times in a row: stopping the server", i);
          exit_code = 1;
          workers[i].pid = 0;
          goto stop;
        }
        usleep(100000u * (unsigned)workers[i].quick_failures);
      } else {
        workers[i].quick_failures = 0;
      }
      if (spawn(i, (uint32_t)pid) < 0) {
        exit_code = 1;
        goto stop;
      }
    }
  }
stop:
  for (int i = 0; i < cfg.processes; i++)
    if (workers[i].pid > 0)
      kill(workers[i].pid, SIGTERM);
  int64_t deadline = mono_ms() + 10000;
  for (;;) {
    int alive = 0;
    for (int i = 0; i < cfg.processes; i++) {
      if (workers[i].pid <= 0)
        continue;
      int st;
      pid_t r = waitpid(workers[i].pid, &st, WNOHANG);
      if (r == workers[i].pid || (r < 0 && errno == ECHILD))
        workers[i].pid = 0;
      else
        alive++;
    }
    if (!alive)
      break;
    if (mono_ms() > deadline) {
      for (int i = 0; i < cfg.processes; i++)
        if (workers[i].pid > 0)
          kill(workers[i].pid, SIGKILL);
      deadline = mono_ms() + 1000000;
    }
    usleep(10000);
  }
  srv_log(LL_WARNING, "shmdict-server is now ready to exit, bye bye...");
  return exit_code;
}

/* ---------------------------------------------------------------------------------------------- */
/* Options */

int main(int argc, char **argv) {
  srv_config_defaults(&cfg);
  const char *dir_env = getenv("SHMDICT_DIR");
  if (dir_env && *dir_env)
    cfg.dir = strdup(dir_env);
  char err[512];
  /* the config file first, the command line over it */
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(argv[i], "--version") || !strcmp(argv[i], "-v")) {
      printf("shmdict-server v=%s (Redis protocol %s)\n", SHMD_SERVER_VERSION, SRV_REDIS_VERSION);
      return 0;
    }
    if (!strcmp(argv[i], "--config") && i + 1 < argc) {
      cfg.config_file = strdup(argv[i + 1]);
      if (srv_config_load_file(&cfg, argv[i + 1], err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
      }
      i++;
    }
  }
  for (int i = 1; i < argc;) {
    if (!strcmp(argv[i], "--config")) {
      i += 2;
      continue;
    }
    if (strncmp(argv[i], "--", 2) != 0 || argv[i][2] == 0) {
      fprintf(stderr, "shmdict-server: unexpected argument '%s' (options are --name value)\n", argv[i]);
      usage(stderr);
      return 1;
    }
    const char *av[64];
    size_t lv[64];
    int ac = 0;
    av[ac] = argv[i] + 2;
    lv[ac++] = strlen(argv[i] + 2);
    i++;
    while (i < argc && !(argv[i][0] == '-' && argv[i][1] == '-' && argv[i][2] != 0) && ac < 64) {
      av[ac] = argv[i];
      lv[ac++] = strlen(argv[i]);
      i++;
    }
    if (ac == 1) { /* --flag alone: "yes" (Redis accepts --protected-mode with no value as yes) */
      av[ac] = "yes";
      lv[ac++] = 3;
    }
    if (srv_config_set(&cfg, ac, av, lv, 1, err, sizeof err)) {
      fprintf(stderr, "shmdict-server: --%s: %s\n", av[0], err);
      return 1;
    }
  }
  if (cfg.store == NULL) {
    fprintf(stderr, "shmdict-server: --store NAME is required\n");
    usage(stderr);
    return 1;
  }
  if (cfg.requirepass && cfg.aclfile) {
    fprintf(stderr, "shmdict-server: use --requirepass or --aclfile, not both\n");
    return 1;
  }
  if (cfg.aclfile && srv_acl_load(cfg.aclfile, err, sizeof err)) {
    fprintf(stderr, "shmdict-server: %s\n", err);
    return 1;
  }
  if (cfg.port == 0 && cfg.unixsocket == NULL) {
    fprintf(stderr, "shmdict-server: nothing to listen on (--port 0 and no --unixsocket)\n");
    return 1;
  }
  getrandom(&srv_run_id, sizeof srv_run_id, 0);

  /* The store must open (it is created when missing), and the port must be free. */
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = cfg.dir;
  if (cfg.store_segment_bytes) {
    o.first_segment_bytes = cfg.store_segment_bytes;
    o.segment_bytes = cfg.store_segment_bytes;
  }
  shmd_store_t *s;
  int rc = shmd_open(cfg.store, &o, &s);
  if (rc) {
    fprintf(stderr, "shmdict-server: cannot open store '%s'%s%s: %s (%s)\n", cfg.store, cfg.dir ? " in " : "",
            cfg.dir ? cfg.dir : "", shmd_strerror(rc), shmd_errdetail());
    return 1;
  }
  shmd_close(s);
  if (cfg.port) {
    int nb = cfg.nbind ? cfg.nbind : 1;
    for (int i = 0; i < nb; i++) {
      const char *a = cfg.nbind ? cfg.bind[i] : "127.0.0.1";
      int optional = a[0] == '-';
      if (optional)
        a++;
      int r = probe_bind(a, cfg.port);
      if (r == -2) {
        fprintf(stderr, "shmdict-server: bad bind address '%s'\n", a);
        return 1;
      }
      if (r < 0 && !optional) {
        fprintf(stderr, "shmdict-server: could not bind %s:%d: %s\n", a, cfg.port, strerror(errno));
        return 1;
      }
    }
  }
  if (cfg.unixsocket) {
    srv_unix_listen_fd = make_unix_socket(cfg.unixsocket, cfg.unixsocketperm);
    if (srv_unix_listen_fd < 0) {
      fprintf(stderr, "shmdict-server: could not create Unix socket %s: %s\n", cfg.unixsocket, strerror(errno));
      return 1;
    }
  }
  if (cfg.pidfile) {
    FILE *f = fopen(cfg.pidfile, "w");
    if (f) {
      fprintf(f, "%d\n", (int)getpid());
      fclose(f);
    }
  }
  srv_log(LL_NOTICE, "shmdict-server %s starting: store '%s'%s%s, port %d, %d worker%s", SHMD_SERVER_VERSION,
          cfg.store, cfg.dir ? " in " : "", cfg.dir ? cfg.dir : "", cfg.port, cfg.processes,
          cfg.processes == 1 ? "" : "s");
  rc = supervise();
  if (cfg.unixsocket)
    unlink(cfg.unixsocket);
  if (cfg.pidfile)
    unlink(cfg.pidfile);
  return rc;
}
