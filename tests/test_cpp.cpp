// SPDX-License-Identifier: MIT
//
// Tests of the C++ header include/shmdict.hpp (Criterion from C++): error codes and exceptions,
// the RAII transaction (commit, abort on exception and on early return, nesting), shmd::ptr<T>,
// the container views and their iterators, the keyspace's typed calls and command replies, and
// the C++ event queue examples/evq.hpp, which must be byte-compatible with examples/evq.c (the C
// checker checks a queue the C++ code built, including after SIGKILLs of a C++ producer).
#include <criterion/criterion.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>
#include <signal.h>
#include <stdexcept>
#include <string>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vector>

#include "examples/evq.h"
#include "examples/evq.hpp"
#include "shmdict.hpp"
extern "C" {
#include "tests/support_crash.h"
#include "tests/support_sys.h"
}

static char dir[256];

static void setup(void) {
  snprintf(dir, sizeof dir, "/dev/shm/shmdict-cpp-XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  setenv("SHMDICT_DIR", dir, 1);
}
static void teardown(void) {
  ts_crash_fini(); /* after a failed crash test: which run failed */
  ts_rmtree(dir);
}

TestSuite(cpp, .init = setup, .fini = teardown);

static shmd::options small() {
  shmd::options o;
  o.dir = dir;
  o.first_segment_bytes = 8 << 20;
  o.segment_bytes = 8 << 20;
  return o;
}

Test(cpp, errors_are_error_codes_and_exceptions) {
  std::error_code ec = shmd::errc::not_found;
  cr_assert_eq(ec.value(), SHMD_ENOTFOUND);
  cr_assert_str_eq(ec.category().name(), "shmdict");
  cr_assert_eq(ec.message(), std::string(shmd_strerror(SHMD_ENOTFOUND)));
  shmd::options o = small();
  o.flags = SHMD_OPEN_NOCREATE;
  // The error_code form: no exception, an empty store.
  shmd::store s = shmd::store::open("missing", o, ec);
  cr_assert(!s);
  cr_assert(ec == shmd::errc::no_store, "%s", ec.message().c_str());
  // The throwing form.
  bool thrown = false;
  try {
    shmd::store::open("missing", o);
  } catch (const shmd::error &e) {
    thrown = true;
    cr_assert_eq(e.status(), SHMD_ENOENT);
    cr_assert(e.code() == shmd::errc::no_store);
    cr_assert(std::string(e.what()).find("shmd_open") != std::string::npos, "%s", e.what());
  }
  cr_assert(thrown);
  try {
    shmd::store::open("bad/name", small());
    cr_assert_fail("a bad name opened");
  } catch (const std::system_error &e) { // catchable as the standard type
    cr_assert(e.code() == shmd::errc::invalid, "%s", e.what());
  }
}

struct counter {
  shmd_lock_t lock;
  uint64_t value;
  shmd::ptr<uint64_t> extra;
};

static uint64_t allocated(const shmd::store &s) { return s.stats().allocated_bytes; }

Test(cpp, transaction_commits_or_aborts_by_scope) {
  shmd::store s = shmd::store::open("tx", small());
  auto cp = shmd::transact(s, [&](shmd::transaction &tx) {
    auto p = tx.calloc<counter>();
    s.set_root("c", p);
    return p;
  });
  counter *c = cp.get(s);
  cr_assert_eq(s.root<counter>("c").value(), cp);
  uint64_t base = allocated(s);
  // Committed.
  {
    shmd::transaction tx(s);
    tx.lock(c->lock);
    tx.set(c->value, 5u);
    tx.commit();
  }
  cr_assert_eq(c->value, 5);
  // An exception leaves the scope: rolled back, the allocation freed.
  try {
    shmd::transact(s, [&](shmd::transaction &tx) {
      tx.lock(c->lock);
      tx.set(c->value, 6u);
      tx.set(c->extra, tx.alloc<uint64_t>());
      throw std::runtime_error("boom");
    });
    cr_assert_fail("no exception");
  } catch (const std::runtime_error &) {
  }
  cr_assert_eq(c->value, 5);
  cr_assert(!c->extra);
  cr_assert_eq(allocated(s), base, "the aborted allocation was freed");
  // An early return without commit(): rolled back too.
  auto early = [&]() {
    shmd::transaction tx(s);
    tx.lock(c->lock);
    tx.set(c->value, 7u);
    if (c->value == 7)
      return; // forgot to commit
    tx.commit();
  };
  early();
  cr_assert_eq(c->value, 5);
  // Nesting: an inner scope that aborts makes the outer commit fail with errc::aborted.
  {
    shmd::transaction outer(s);
    outer.lock(c->lock);
    outer.set(c->value, 8u);
    {
      shmd::transaction inner(s);
      inner.set(c->value, 9u);
    } // aborts
    std::error_code ec;
    cr_assert(!outer.commit(ec));
    cr_assert(ec == shmd::errc::aborted, "%s", ec.message().c_str());
  }
  cr_assert_eq(c->value, 5);
  // A transaction frees after the commit.
  shmd::transact(s, [&](shmd::transaction &tx) {
    tx.lock(c->lock);
    tx.set(c->extra, tx.alloc<uint64_t>());
  });
  cr_assert(allocated(s) > base);
  shmd::transact(s, [&](shmd::transaction &tx) {
    tx.lock(c->lock);
    tx.free(c->extra);
    tx.set(c->extra, shmd::ptr<uint64_t>());
  });
  cr_assert_eq(allocated(s), base);
  s.alloc_check();
}

Test(cpp, ptr_is_a_typed_shmd_ptr) {
  shmd::store s = shmd::store::open("p", small());
  auto arr = s.alloc<uint32_t>(16 * sizeof(uint32_t));
  for (uint32_t i = 0; i < 16; i++)
    (arr + i).get(s)[0] = i * 3;
  cr_assert_eq((arr + 5).get(s)[0], 15);
  cr_assert_eq(shmd::ptr<uint32_t>::from(s, arr.get(s) + 7), arr + 7);
  cr_assert_eq(arr.checked(s, 16), arr.get(s));
  std::error_code ec;
  shmd::ptr<uint32_t> wild(shmd_ptr_make(0, (1ull << 40)));
  cr_assert_null(wild.checked(s, 1, ec));
  cr_assert(ec == shmd::errc::corrupt);
  cr_assert(!shmd::ptr<int>());
  cr_assert_eq(arr.cast<char>().raw().v, arr.raw().v);
  s.free(arr);
  s.alloc_check();
}

Test(cpp, container_views_and_iterators) {
  shmd::store s = shmd::store::open("c", small());
  // hash
  shmd::hash h = shmd::hash::create(s);
  std::map<std::string, std::string> model;
  for (int i = 0; i < 300; i++) {
    std::string k = "k" + std::to_string(i), v(size_t(i % 700), char('a' + i % 26));
    cr_assert(h.put(k, v));
    model[k] = v;
  }
  cr_assert(!h.put("k1", "again"));
  model["k1"] = "again";
  cr_assert(!h.insert("k2", "no"));
  cr_assert_eq(h.get("k299").value(), model["k299"]);
  cr_assert(!h.get("nope"));
  cr_assert(h.erase("k3"));
  cr_assert(!h.erase("k3"));
  model.erase("k3");
  cr_assert_eq(h.size(), model.size());
  std::map<std::string, std::string> seen;
  for (auto &kv : h)
    cr_assert(seen.emplace(std::string(kv.first), std::string(kv.second)).second, "visited twice");
  cr_assert(seen == model, "the iterator visits every entry once");
  h.check();
  // list
  shmd::list l = shmd::list::create(s);
  for (int i = 0; i < 200; i++)
    l.push_back(std::to_string(i));
  l.push_front("first");
  cr_assert_eq(l.size(), 201);
  cr_assert_eq(l.at(0).value(), "first");
  cr_assert_eq(l.at(-1).value(), "199");
  std::vector<std::string> all(l.begin(), l.end());
  cr_assert_eq(all.size(), 201);
  cr_assert_eq(all[1], "0");
  cr_assert_eq(all[200], "199");
  std::vector<std::string> rev(l.rbegin(), l.end());
  cr_assert_eq(rev.front(), "199");
  cr_assert_eq(l.pop_front().value(), "first");
  cr_assert_eq(l.pop_back().value(), "199");
  l.check();
  // array<T>
  struct point {
    int32_t x, y;
  };
  auto a = shmd::array<point>::create(s);
  for (int i = 0; i < 100; i++)
    a.push_back(point{i, -i});
  cr_assert_eq(a.size(), 100);
  cr_assert_eq(a[42].y, -42);
  a.set(42, point{1, 2});
  int64_t sum = 0;
  for (point p : a)
    sum += p.x;
  cr_assert_eq(sum, 99 * 100 / 2 - 42 + 1);
  cr_assert_eq(a.pop_back().value().x, 99);
  try {
    (void)a.get(1000);
    cr_assert_fail("no range error");
  } catch (const shmd::error &e) {
    cr_assert(e.code() == shmd::errc::range);
  }
  try {
    shmd::array<uint32_t> wrong(s, a.handle());
    cr_assert_fail("element size not checked");
  } catch (const shmd::error &e) {
    cr_assert(e.code() == shmd::errc::invalid);
  }
  a.check();
  // rbtree, numeric keys
  auto t = shmd::rbtree::create(s, SHMD_RBTREE_I64);
  for (int64_t i = 100; i > 0; i--)
    t.put(shmd::rbtree::key_of(i * 10), "v" + std::to_string(i));
  cr_assert_eq(t.size(), 100);
  cr_assert_eq(t.rank(shmd::rbtree::key_of(int64_t(500))).value(), 49);
  auto e = t.select(0).value();
  int64_t k0;
  std::memcpy(&k0, e.first.data(), 8);
  cr_assert_eq(k0, 10);
  std::vector<int64_t> keys;
  for (auto it = t.from(shmd::rbtree::key_of(int64_t(955))); it != t.end(); ++it) {
    int64_t k;
    std::memcpy(&k, it->first.data(), 8);
    keys.push_back(k);
  }
  cr_assert_eq(keys.size(), 5);
  cr_assert_eq(keys[0], 960);
  cr_assert_eq(keys[4], 1000);
  size_t n = 0;
  for (auto &en : t)
    n += !en.second.empty();
  cr_assert_eq(n, 100);
  cr_assert(t.erase(shmd::rbtree::key_of(int64_t(10))));
  t.check();
  // long values go through the growing buffers
  std::string big(100000, 'x');
  t.put(shmd::rbtree::key_of(int64_t(1)), big);
  cr_assert_eq(t.select(0).value().second.size(), big.size());
  h.put("big", big);
  cr_assert_eq(h.get("big").value(), big);
  h.destroy();
  l.destroy();
  a.destroy();
  t.destroy();
  s.alloc_check();
}

Test(cpp, keyspace_typed_calls_and_replies) {
  shmd::store s = shmd::store::open("kv", small());
  shmd::keyspace kv = s.kv();
  cr_assert(!kv.get("a"));
  cr_assert(kv.set("a", "1"));
  cr_assert(!kv.set("a", "2", SHMD_KV_NX));
  cr_assert_eq(kv.get("a").value(), "1");
  cr_assert(kv.set("a", std::string(5000, 'z'), SHMD_KV_XX));
  cr_assert_eq(kv.get("a").value().size(), 5000);
  cr_assert(kv.hset("h", "f", "v"));
  cr_assert(!kv.hset("h", "f", "w"));
  cr_assert_eq(kv.hget("h", "f").value(), "w");
  cr_assert(!kv.hget("h", "g"));
  cr_assert(kv.zadd("z", 3, "c"));
  cr_assert(kv.zadd("z", 1, "a"));
  cr_assert(kv.zadd("z", 2, "b"));
  cr_assert_eq(kv.zrank("z", "c").value(), 2);
  cr_assert_eq(kv.zrank("z", "c", true).value(), 0);
  std::error_code ec;
  kv.get("h", ec);
  cr_assert(ec == shmd::errc::wrong_type);
  try {
    kv.get("z");
    cr_assert_fail("no WRONGTYPE");
  } catch (const shmd::error &e) {
    cr_assert(e.code() == shmd::errc::wrong_type);
  }
  shmd::reply r = kv.command({"ZRANGE", "z", "0", "-1", "WITHSCORES"});
  cr_assert_eq(r.type(), SHMD_REPLY_ARRAY);
  cr_assert_eq(r.size(), 6);
  cr_assert(r[0].str() == "a");
  cr_assert(r[5].str() == "3");
  shmd::reply e = kv.command({"INCR", "h"});
  cr_assert(e.is_error());
  cr_assert(e.str().substr(0, 9) == "WRONGTYPE");
  cr_assert_eq(kv.command({"DBSIZE"}).integer(), 3);
  cr_assert(kv.command({"GET", "nope"}).is_nil());
  cr_assert(kv.del("a"));
  cr_assert(!kv.del("a"));
  cr_assert_eq(kv.info().zsets, 1);
  shmd::keyspace db3 = s.kv(3);
  db3.set("only-in-3", "x");
  cr_assert(!kv.get("only-in-3"));
  kv.check();
}

// The C++ queue and the C queue are one structure.
Test(cpp, evq_cpp_is_the_c_queue) {
  shmd::store s = shmd::store::open("evq", small());
  evq::queue q = evq::queue::open(s, "events", 8, 4);
  cr_assert_eq(evq::queue::open(s, "events", 99, 9).handle(), q.handle());
  uint32_t c = q.subscribe(false).value();
  for (int i = 0; i < 8; i++)
    cr_assert_eq(q.push("event " + std::to_string(i)).value(), (uint64_t)i);
  cr_assert(!q.push("full"), "back-pressure");
  // The C checker and the C consumer read what C++ wrote.
  shmd_ptr_t cq = q.handle().raw();
  cr_assert_eq(evq_check(s.get(), cq), 0, "%s", evq_check_detail());
  char buf[32];
  size_t len;
  uint64_t seq;
  cr_assert_eq(evq_poll(s.get(), cq, c, buf, sizeof buf, &len, &seq), 0);
  cr_assert_eq(std::string(buf, len), "event 0");
  auto got = q.poll(c).value();
  cr_assert_eq(got.first, 1);
  cr_assert_eq(got.second, "event 1");
  // C pushes, C++ reads; the oldest read event is dropped when full.
  cr_assert_eq(evq_push(s.get(), cq, "from C", 6, &seq), 0);
  cr_assert_eq(seq, 8);
  auto ht = q.head_tail();
  cr_assert_eq(ht.first, 1);
  cr_assert_eq(ht.second, 9);
  for (uint64_t i = 2; i < 8; i++)
    cr_assert_eq(q.poll(c).value().first, i);
  cr_assert_eq(q.poll(c).value().second, "from C");
  cr_assert(!q.poll(c));
  try {
    q.poll(3);
    cr_assert_fail("slot 3 is not taken");
  } catch (const shmd::error &e) {
    cr_assert(e.code() == shmd::errc::invalid);
  }
  cr_assert_eq(evq_check(s.get(), cq), 0, "%s", evq_check_detail());
  s.alloc_check();
}

// The C++ producer of crash_cpp_producer_killed (a child of the crash harness): pushes until it
// is killed, consuming one event as consumer *arg when the queue is full.
static int cpp_producer(ts_crash_child_t *cc) {
  uint32_t c = *static_cast<const uint32_t *>(cc->arg);
  try {
    shmd::store cs = shmd::store::open("k", small());
    evq::queue cq = evq::queue::open(cs, "q", 32, 2);
    for (uint64_t i = 0;; i++) {
      if (!cq.push(std::string(8 + i % 200, char('a' + i % 26))))
        cq.poll(c); // full: consume one
    }
  } catch (...) {
    return 3;
  }
}

// A C++ producer killed at random moments: the queue passes the C checker after every kill.
Test(cpp, crash_cpp_producer_killed, .timeout = 120) {
  shmd::store s = shmd::store::open("k", small());
  evq::queue q = evq::queue::open(s, "q", 32, 2);
  uint32_t c = q.subscribe(false).value();
  uint64_t last_tail = 0;
  ts_crash_t t;
  ts_crash_begin(&t, "cpp.crash_cpp_producer_killed");
  for (int k = 0; k < 60; k++) {
    ts_crash_spec_t sp = {};
    sp.what = "the C++ producer";
    sp.fn = cpp_producer;
    sp.arg = &c;
    sp.kill_after_us = ts_below(&t.rng, 40) * 50; // 0 .. 1.95 ms, by steps of 50 us
    if (sp.kill_after_us == 0)
      sp.kill_after_us = 1; // 0 means never: at once is 1 us after the fork
    sp.end = TS_END_KILLED;
    ts_crash_run(&t, &sp, nullptr);
    cr_assert_geq(s.recover(), 0);
    cr_assert_eq(evq_check(s.get(), q.handle().raw()), 0, "kill %d: %s", k, evq_check_detail());
    s.alloc_check();
    auto ht = q.head_tail();
    cr_assert_geq(ht.second, last_tail);
    last_tail = ht.second;
  }
  ts_crash_end(&t);
  cr_assert_gt(last_tail, 0);
}
