/* SPDX-License-Identifier: MIT */
/*
 * Tests of the worked custom container examples/evq.c (the event queue of
 * docs/custom-containers.md): its operations against their contract, its checker against damage,
 * several producer and consumer processes at once (mp_), and at least 300 SIGKILLs of a process
 * pushing and consuming at random moments (crash_), after each of which the store reopens, evq_check
 * and shmd_alloc_check pass and everything the killed process reported done is there.
 */
#include <fcntl.h>
#include <sched.h>

#include "examples/evq.h"
#include "tests/support.h"

TestSuite(evq, .init = ts_init, .fini = ts_fini);

static uint64_t allocated(shmd_store_t *s) {
  shmd_stats_t st;
  cr_assert_eq(shmd_stats(s, &st), 0);
  return st.allocated_bytes;
}

static void assert_checks(shmd_store_t *s, shmd_ptr_t q) {
  int rc = evq_check(s, q);
  cr_assert_eq(rc, 0, "evq_check: %s (%s)", shmd_strerror(rc), evq_check_detail());
  rc = shmd_alloc_check(s);
  cr_assert_eq(rc, 0, "shmd_alloc_check: %s (%s)", shmd_strerror(rc), shmd_errdetail());
}

Test(evq, push_peek_ack_poll) {
  shmd_store_t *s = ts_open("b", 4 << 20, 4 << 20);
  uint64_t before = allocated(s);
  shmd_ptr_t q;
  cr_assert_eq(evq_create(s, 8, 4, &q), 0);
  uint32_t c0, c1;
  cr_assert_eq(evq_subscribe(s, q, 0, &c0), 0);
  uint64_t seq;
  char buf[64];
  size_t len;
  cr_assert_eq(evq_peek(s, q, c0, buf, sizeof buf, &len, &seq), SHMD_ENOTFOUND);
  cr_assert_eq(evq_push(s, q, "hello", 5, &seq), 0);
  cr_assert_eq(seq, 0);
  cr_assert_eq(evq_push(s, q, "world!", 6, &seq), 0);
  cr_assert_eq(seq, 1);
  /* c1 subscribes from the next push: it does not see 0 and 1. */
  cr_assert_eq(evq_subscribe(s, q, 0, &c1), 0);
  cr_assert_neq(c0, c1);
  cr_assert_eq(evq_peek(s, q, c1, buf, sizeof buf, &len, &seq), SHMD_ENOTFOUND);
  /* Peek does not consume; ack does, once. */
  cr_assert_eq(evq_peek(s, q, c0, buf, sizeof buf, &len, &seq), 0);
  cr_assert_eq(seq, 0);
  cr_assert_eq(len, 5);
  cr_assert_eq(memcmp(buf, "hello", 5), 0);
  cr_assert_eq(evq_peek(s, q, c0, buf, sizeof buf, &len, &seq), 0);
  cr_assert_eq(seq, 0);
  cr_assert_eq(evq_ack(s, q, c0, 1), SHMD_EINVAL, "acking an event that is not the next one");
  cr_assert_eq(evq_ack(s, q, c0, 0), 0);
  cr_assert_eq(evq_ack(s, q, c0, 0), SHMD_EINVAL, "acked twice");
  /* A buffer too small: the start is copied, nothing is consumed. */
  cr_assert_eq(evq_poll(s, q, c0, buf, 3, &len, &seq), SHMD_ERANGE);
  cr_assert_eq(len, 6);
  cr_assert_eq(memcmp(buf, "wor", 3), 0);
  cr_assert_eq(evq_poll(s, q, c0, buf, sizeof buf, &len, &seq), 0);
  cr_assert_eq(seq, 1);
  cr_assert_eq(memcmp(buf, "world!", 6), 0);
  cr_assert_eq(evq_poll(s, q, c0, buf, sizeof buf, &len, &seq), SHMD_ENOTFOUND);
  /* Empty events are events. */
  cr_assert_eq(evq_push(s, q, NULL, 0, &seq), 0);
  cr_assert_eq(evq_poll(s, q, c1, buf, sizeof buf, &len, &seq), 0);
  cr_assert_eq(len, 0);
  cr_assert_eq(seq, 2);
  cr_assert_eq(evq_poll(s, q, 3, buf, sizeof buf, &len, &seq), SHMD_EINVAL, "slot not taken");
  cr_assert_eq(evq_poll(s, q, 99, buf, sizeof buf, &len, &seq), SHMD_EINVAL, "no such slot");
  evq_stats_t st;
  cr_assert_eq(evq_stats(s, q, &st), 0);
  cr_assert_eq(st.head_seq, 0);
  cr_assert_eq(st.tail_seq, 3);
  cr_assert_eq(st.consumers, 2);
  cr_assert_eq(st.max_lag, 1); /* c0 has not read event 2 */
  assert_checks(s, q);
  cr_assert_eq(evq_unsubscribe(s, q, c1), 0);
  cr_assert_eq(evq_unsubscribe(s, q, c1), SHMD_ENOTFOUND);
  cr_assert_eq(evq_destroy(s, q), 0);
  cr_assert_eq(allocated(s), before, "destroy freed everything");
  cr_assert_eq(shmd_alloc_check(s), 0);
  cr_assert_eq(evq_create(s, 0, 4, &q), SHMD_EINVAL);
  cr_assert_eq(evq_create(s, 4, EVQ_MAX_CONSUMERS + 1, &q), SHMD_EINVAL);
  shmd_close(s);
}

Test(evq, full_queue_drops_read_events_and_holds_back_producers) {
  shmd_store_t *s = ts_open("f", 4 << 20, 4 << 20);
  uint64_t before = allocated(s);
  shmd_ptr_t q;
  cr_assert_eq(evq_create(s, 4, 2, &q), 0);
  uint64_t seq;
  char buf[16];
  size_t len;
  /* Nobody subscribed: the queue keeps the last 4 events, like a history buffer. */
  for (int i = 0; i < 10; i++) {
    snprintf(buf, sizeof buf, "e%d", i);
    cr_assert_eq(evq_push(s, q, buf, strlen(buf), &seq), 0);
    cr_assert_eq(seq, (uint64_t)i);
  }
  uint32_t c;
  cr_assert_eq(evq_subscribe(s, q, 1, &c), 0); /* from the oldest held: e6 */
  cr_assert_eq(evq_peek(s, q, c, buf, sizeof buf, &len, &seq), 0);
  cr_assert_eq(seq, 6);
  cr_assert_eq(memcmp(buf, "e6", 2), 0);
  /* Full and c has read nothing: back-pressure, and nothing changed. */
  cr_assert_eq(evq_push(s, q, "x", 1, &seq), SHMD_ENOSPC);
  evq_stats_t st;
  cr_assert_eq(evq_stats(s, q, &st), 0);
  cr_assert_eq(st.tail_seq, 10);
  cr_assert_eq(st.max_lag, 4);
  /* c reads one: exactly one more push fits. */
  cr_assert_eq(evq_poll(s, q, c, buf, sizeof buf, &len, &seq), 0);
  cr_assert_eq(evq_push(s, q, "x", 1, &seq), 0);
  cr_assert_eq(seq, 10);
  cr_assert_eq(evq_push(s, q, "y", 1, &seq), SHMD_ENOSPC);
  assert_checks(s, q);
  cr_assert_eq(evq_destroy(s, q), 0);
  cr_assert_eq(allocated(s), before);
  shmd_close(s);
}

Test(evq, open_creates_once_and_survives_reopen) {
  shmd_store_t *s = ts_open("o", 4 << 20, 4 << 20);
  shmd_ptr_t q1, q2;
  cr_assert_eq(evq_open(s, "events", 16, 4, &q1), 0);
  cr_assert_eq(evq_open(s, "events", 99, 9, &q2), 0);
  cr_assert_eq(q1.v, q2.v);
  uint32_t c;
  cr_assert_eq(evq_subscribe(s, q1, 0, &c), 0);
  cr_assert_eq(evq_push(s, q1, "kept", 4, NULL), 0);
  shmd_close(s);
  s = ts_open("o", 4 << 20, 4 << 20);
  cr_assert_eq(evq_open(s, "events", 16, 4, &q2), 0);
  cr_assert_eq(q1.v, q2.v);
  char buf[8];
  size_t len;
  cr_assert_eq(evq_poll(s, q2, c, buf, sizeof buf, &len, NULL), 0, "the subscription survived");
  cr_assert_eq(memcmp(buf, "kept", 4), 0);
  assert_checks(s, q2);
  shmd_close(s);
}

/* Inside the caller's transaction the queue's changes commit or roll back with the caller's. */
Test(evq, joins_the_callers_transaction) {
  shmd_store_t *s = ts_open("t", 4 << 20, 4 << 20);
  shmd_ptr_t q;
  cr_assert_eq(evq_create(s, 8, 2, &q), 0);
  uint32_t c;
  cr_assert_eq(evq_subscribe(s, q, 0, &c), 0);
  shmd_tx_t *tx;
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(evq_push(s, q, "a", 1, NULL), 0);
  cr_assert_eq(evq_push(s, q, "b", 1, NULL), 0);
  char buf[4];
  /* An outcome status inside the transaction does not abort it. */
  cr_assert_eq(evq_ack(s, q, c, 7), SHMD_EINVAL);
  shmd_tx_abort(tx);
  evq_stats_t st;
  cr_assert_eq(evq_stats(s, q, &st), 0);
  cr_assert_eq(st.tail_seq, 0, "both pushes rolled back");
  cr_assert_eq(shmd_tx_begin(s, &tx), 0);
  cr_assert_eq(evq_push(s, q, "a", 1, NULL), 0);
  cr_assert_eq(evq_ack(s, q, c, 7), SHMD_EINVAL);
  cr_assert_eq(shmd_tx_commit(tx), 0);
  cr_assert_eq(evq_poll(s, q, c, buf, sizeof buf, NULL, NULL), 0);
  assert_checks(s, q);
  shmd_close(s);
}

/* The checker can fail: damage of each kind it claims to find is found, without a crash. */
Test(evq, check_finds_damage) {
  shmd_store_t *s = ts_open("d", 4 << 20, 4 << 20);
  shmd_ptr_t q;
  cr_assert_eq(evq_create(s, 4, 2, &q), 0);
  uint32_t c;
  cr_assert_eq(evq_subscribe(s, q, 0, &c), 0);
  uint64_t seq;
  cr_assert_eq(evq_push(s, q, "payload", 7, &seq), 0);
  cr_assert_eq(evq_push(s, q, "second", 6, &seq), 0);
  assert_checks(s, q);
  /* The header is the first block; its layout is evq.c's (magic, lock, sizes, head, tail, ...). */
  uint64_t *hdr = shmd_resolve(s, q);
  shmd_ptr_t ring = {hdr[5]}, cons = {hdr[6]};
  shmd_ptr_t *slots = shmd_resolve(s, ring);
  unsigned char *ev = shmd_resolve(s, slots[0]);
  /* A flipped payload byte (a torn write). */
  ev[32] ^= 1;
  cr_assert_eq(evq_check(s, q), SHMD_ECORRUPT);
  cr_assert(strstr(evq_check_detail(), "checksum"), "%s", evq_check_detail());
  ev[32] ^= 1;
  cr_assert_eq(evq_check(s, q), 0);
  /* An event in the wrong slot. */
  shmd_ptr_t t = slots[0];
  slots[0] = slots[1];
  slots[1] = t;
  cr_assert_eq(evq_check(s, q), SHMD_ECORRUPT);
  slots[1] = slots[0];
  slots[0] = t;
  /* A slot past the tail that is not null. */
  slots[3] = slots[0];
  cr_assert_eq(evq_check(s, q), SHMD_ECORRUPT);
  cr_assert(strstr(evq_check_detail(), "not null"), "%s", evq_check_detail());
  slots[3].v = 0;
  /* A pointer out of the store. */
  shmd_ptr_t saved = slots[1];
  slots[1].v = UINT64_C(0x0001ffffffffff00);
  cr_assert_eq(evq_check(s, q), SHMD_ECORRUPT);
  slots[1] = saved;
  /* A cursor past the tail; head past tail. */
  uint64_t *cw = shmd_resolve(s, cons);
  cw[1] = 99;
  cr_assert_eq(evq_check(s, q), SHMD_ECORRUPT);
  cr_assert_eq(evq_poll(s, q, c, NULL, 0, NULL, NULL), SHMD_ECORRUPT, "operations refuse it too");
  cw[1] = 0;
  hdr[3] = 5;
  cr_assert_eq(evq_check(s, q), SHMD_ECORRUPT);
  hdr[3] = 0;
  hdr[0] ^= 1;
  cr_assert_eq(evq_check(s, q), SHMD_ECORRUPT);
  hdr[0] ^= 1;
  assert_checks(s, q);
  shmd_close(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* Several processes. */

#define MP_PRODUCERS 3
#define MP_EVENTS 1500

typedef struct {
  uint32_t producer, counter;
  unsigned char fill[24];
} mp_event_t;

/* The children of mp_producers_and_consumers, on the store the crash harness opened for them;
 * *arg is the producer's id or the consumer's number. */
static int mp_producer(ts_crash_child_t *cc) {
  uint32_t id = *(const uint32_t *)cc->arg;
  shmd_store_t *s = cc->s;
  shmd_ptr_t q;
  if (shmd_root_get(s, "q", &q))
    return 3;
  for (uint32_t k = 0; k < MP_EVENTS; k++) {
    mp_event_t e = {id, k, {0}};
    memset(e.fill, (int)(k * 7 + id), sizeof e.fill);
    int rc;
    while ((rc = evq_push(s, q, &e, sizeof e, NULL)) == SHMD_ENOSPC)
      sched_yield(); /* a consumer lags: wait for it */
    if (rc)
      return 4;
  }
  shmd_close(s);
  return 0;
}

static int mp_consumer(ts_crash_child_t *cc) {
  uint32_t c = *(const uint32_t *)cc->arg;
  shmd_store_t *s = cc->s;
  shmd_ptr_t q;
  if (shmd_root_get(s, "q", &q))
    return 3;
  uint32_t next[MP_PRODUCERS] = {0};
  uint64_t last = 0;
  for (int got = 0; got < MP_PRODUCERS * MP_EVENTS;) {
    mp_event_t e;
    size_t len;
    uint64_t seq;
    int rc = evq_poll(s, q, c, &e, sizeof e, &len, &seq);
    if (rc == SHMD_ENOTFOUND) {
      sched_yield();
      continue;
    }
    if (rc || len != sizeof e || e.producer >= MP_PRODUCERS)
      return 5;
    /* Each producer's events arrive in its order, none missing; sequence numbers only grow. */
    if (e.counter != next[e.producer]++ || (got > 0 && seq != last + 1))
      return 6;
    for (size_t i = 0; i < sizeof e.fill; i++)
      if (e.fill[i] != (unsigned char)(e.counter * 7 + e.producer))
        return 7;
    last = seq;
    got++;
  }
  shmd_close(s);
  return 0;
}

Test(evq, mp_producers_and_consumers) {
  shmd_store_t *s = ts_open("mp", 8 << 20, 8 << 20);
  shmd_ptr_t q;
  cr_assert_eq(evq_open(s, "q", 32, 4, &q), 0);
  uint32_t c[2];
  cr_assert_eq(evq_subscribe(s, q, 0, &c[0]), 0);
  cr_assert_eq(evq_subscribe(s, q, 0, &c[1]), 0);
  ts_crash_proc_t *p[MP_PRODUCERS + 2];
  uint32_t ids[MP_PRODUCERS];
  static const char *const names[] = {"consumer 0", "consumer 1", "producer 0", "producer 1", "producer 2"};
  _Static_assert(MP_PRODUCERS + 2 == sizeof names / sizeof names[0], "a name for each process");
  for (uint32_t i = 0; i < MP_PRODUCERS + 2; i++) {
    if (i >= 2)
      ids[i - 2] = i - 2;
    p[i] = ts_crash_start(NULL, &(ts_crash_spec_t){.what = names[i], .fn = i < 2 ? mp_consumer : mp_producer,
                                                   .arg = i < 2 ? &c[i] : &ids[i - 2], .store = "mp",
                                                   .opts = ts_opts(8 << 20, 8 << 20), .end = TS_END_EXIT0});
  }
  ts_crash_wait_all(p, MP_PRODUCERS + 2);
  for (int i = 0; i < MP_PRODUCERS + 2; i++)
    ts_crash_finish(p[i], NULL);
  evq_stats_t st;
  cr_assert_eq(evq_stats(s, q, &st), 0);
  cr_assert_eq(st.tail_seq, MP_PRODUCERS * MP_EVENTS);
  cr_assert_eq(st.max_lag, 0);
  assert_checks(s, q);
  shmd_close(s);
}

/* ---------------------------------------------------------------------------------------------- */
/* SIGKILL at random moments. */

/* What the child reports through the pipe after each operation committed. */
typedef struct {
  uint32_t kind; /* 1: pushed seq; 2 + c: consumer c consumed seq */
  uint32_t pad;
  uint64_t seq;
} report_t;

/* The payload of an event: its length and bytes follow from a 64-bit tag, so a consumer can tell a
 * whole event from a torn one without knowing who pushed it. */
static size_t payload(uint64_t tag, unsigned char *buf) {
  size_t len = 8 + (size_t)(tag % 300);
  memcpy(buf, &tag, 8);
  for (size_t i = 8; i < len; i++)
    buf[i] = (unsigned char)(tag >> (i % 56));
  return len;
}

static int payload_ok(const unsigned char *buf, size_t len) {
  uint64_t tag;
  unsigned char want[512];
  if (len < 8)
    return 0;
  memcpy(&tag, buf, 8);
  return payload(tag, want) == len && memcmp(want, buf, len) == 0;
}

/* The child of crash_kill_300_times, on the store the harness opened; *arg the two consumers. */
static int crash_child(ts_crash_child_t *cc) {
  const uint32_t *cons = cc->arg;
  shmd_store_t *s = cc->s;
  shmd_ptr_t q;
  if (shmd_root_get(s, "q", &q))
    return 3;
  ts_rng_t r = {cc->seed};
  unsigned char buf[512];
  for (;;) {
    uint64_t x = ts_next(&r);
    report_t rep = {0, 0, 0};
    int rc;
    if (x % 10 < 6) {
      size_t len = payload(ts_next(&r), buf);
      rc = evq_push(s, q, buf, len, &rep.seq);
      if (rc == 0)
        rep.kind = 1;
      else if (rc != SHMD_ENOSPC)
        return 4;
    } else {
      uint32_t c = (uint32_t)(x >> 32) & 1;
      size_t len;
      if (x % 10 < 8) {
        rc = evq_poll(s, q, cons[c], buf, sizeof buf, &len, &rep.seq);
      } else { /* peek, then ack: at-least-once */
        rc = evq_peek(s, q, cons[c], buf, sizeof buf, &len, &rep.seq);
        if (rc == 0)
          rc = evq_ack(s, q, cons[c], rep.seq);
      }
      if (rc == 0) {
        if (!payload_ok(buf, len))
          return 6; /* a torn or foreign event */
        rep.kind = 2 + c;
      } else if (rc != SHMD_ENOTFOUND) {
        return 5;
      }
    }
    if (rep.kind)
      ts_crash_report(cc, &rep);
  }
}

/* What the parent learns from the reports: the tail and cursors they promise. */
typedef struct {
  uint64_t pushed, consumed[2];
} reported_t;

static void take_report(const void *rec, void *arg) {
  report_t rep;
  memcpy(&rep, rec, sizeof rep);
  reported_t *rd = arg;
  if (rep.kind == 1 && rep.seq + 1 > rd->pushed)
    rd->pushed = rep.seq + 1;
  else if (rep.kind >= 2 && rep.seq + 1 > rd->consumed[rep.kind - 2])
    rd->consumed[rep.kind - 2] = rep.seq + 1;
}

Test(evq, crash_kill_300_times, .timeout = 240) {
  shmd_store_t *s = ts_open("k", 8 << 20, 8 << 20);
  shmd_ptr_t q;
  cr_assert_eq(evq_open(s, "q", 48, 4, &q), 0);
  uint32_t cons[2];
  cr_assert_eq(evq_subscribe(s, q, 0, &cons[0]), 0);
  cr_assert_eq(evq_subscribe(s, q, 0, &cons[1]), 0);
  ts_crash_t t;
  ts_crash_begin(&t, "evq.crash_kill_300_times");
  reported_t rd = {0, {0, 0}}; /* reported done: tail, cursors must be at least */
  uint64_t last_tail = 0, last_cur[2] = {0, 0}, recovered = 0;
  int kills = 0;
  const int want = 300;
  for (int round = 0; kills < want; round++) {
    uint64_t child_seed = ts_next(&t.rng);
    /* From 0 (often inside shmd_open) to 3 ms, by steps of 50 us. */
    uint64_t after = ts_below(&t.rng, 61) * 50;
    ts_crash_run(&t,
                 &(ts_crash_spec_t){.what = "the pusher and poller", .fn = crash_child, .arg = cons, .seed = child_seed,
                                    .store = "k", .opts = ts_opts(8 << 20, 8 << 20), .end = TS_END_KILLED,
                                    /* 0 means never: a kill at once is 1 us after the fork */
                                    .kill_after_us = after ? after : 1, .rec_size = sizeof(report_t),
                                    .on_rec = take_report, .rec_arg = &rd},
                 NULL);
    kills++;
    /* Now and then a fresh handle: shmd_open recovers. Otherwise shmd_recover does it. */
    if (round % 20 == 19) {
      shmd_close(s);
      s = ts_open("k", 8 << 20, 8 << 20);
    } else {
      int n = shmd_recover(s);
      cr_assert_geq(n, 0, "shmd_recover: %s", shmd_strerror(n));
    }
    assert_checks(s, q);
    evq_stats_t es;
    cr_assert_eq(evq_stats(s, q, &es), 0);
    cr_assert_geq(es.tail_seq, rd.pushed, "a push reported done is gone (kill %d)", kills);
    cr_assert_geq(es.tail_seq, last_tail);
    last_tail = es.tail_seq;
    for (int c = 0; c < 2; c++) {
      uint64_t cur;
      cr_assert_eq(evq_cursor(s, q, cons[c], &cur), 0);
      cr_assert_geq(cur, rd.consumed[c], "a consumption reported done is undone (kill %d)", kills);
      cr_assert_geq(cur, last_cur[c]);
      last_cur[c] = cur;
    }
  }
  ts_crash_end(&t);
  shmd_store_info_t info;
  cr_assert_eq(shmd_store_info(s, &info), 0);
  recovered = info.recoveries;
  cr_log_info("%d kills, %llu events pushed, cursors %llu %llu, %llu recoveries", kills,
              (unsigned long long)last_tail, (unsigned long long)last_cur[0],
              (unsigned long long)last_cur[1], (unsigned long long)recovered);
  cr_assert_gt(last_tail, 100, "the children did work between the kills");
  cr_assert_gt(recovered, 0, "some kills landed inside a transaction");
  shmd_close(s);
}

/* Pushes numbered events (8 + n % 100 bytes of payload(n)) into the queue *arg until killed; the
 * store is the one the harness opened, and the crash point is armed once it is open, so the
 * first tx.before_commit counted is the first push's. */
typedef struct {
  shmd_ptr_t q;
} pusher_arg_t;

static int pusher_child(ts_crash_child_t *cc) {
  const pusher_arg_t *a = cc->arg;
  unsigned char buf[512];
  for (uint64_t n = 0;; n++) {
    size_t len = payload(n, buf);
    int rc = evq_push(cc->s, a->q, buf, len, NULL);
    if (rc != 0 && rc != SHMD_ENOSPC)
      return 4;
  }
}

/* A push killed just before its commit (the crash point tx.before_commit, armed at the k-th push
 * for k = 1 .. 12) leaves the queue as before the push: the tail, the ring slot and the event's
 * block all rolled back together, and the checks pass. (A kill at a random moment rarely lands in
 * that window; this aims at it.) */
Test(evq, crash_push_killed_before_its_commit) {
  shmd_store_t *s = ts_open("p", 8 << 20, 8 << 20);
  shmd_ptr_t q;
  cr_assert_eq(evq_open(s, "q", 16, 2, &q), 0);
  shmd_close(s);
  pusher_arg_t a = {q};
  ts_crash_t t;
  ts_crash_begin(&t, "evq.crash_push_killed_before_its_commit");
  uint64_t last_tail = 0;
  for (unsigned k = 1; k <= 12; k++) {
    char point[64];
    snprintf(point, sizeof point, "tx.before_commit:%u", k);
    ts_crash_run(&t,
                 &(ts_crash_spec_t){.what = "the pusher", .fn = pusher_child, .arg = &a, .store = "p",
                                    .opts = ts_opts(8 << 20, 8 << 20), .point = point, .arm_when_open = 1,
                                    .end = TS_END_KILLED},
                 NULL);
    s = ts_crash_open("p", 8 << 20, 8 << 20);
    ts_crash_check(s, TS_CHECK_RECOVER, NULL);
    assert_checks(s, q);
    evq_stats_t es;
    cr_assert_eq(evq_stats(s, q, &es), 0);
    /* the k-1 pushes before the killed one committed (a full queue drops its oldest) */
    cr_assert_eq(es.tail_seq, last_tail + k - 1, "%s: tail %llu, want %llu", ts_crash_where(),
                 (unsigned long long)es.tail_seq, (unsigned long long)(last_tail + k - 1));
    last_tail = es.tail_seq;
    shmd_close(s);
  }
  ts_crash_end(&t);
}
