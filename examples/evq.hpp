// SPDX-License-Identifier: MIT
//
// evq.hpp: the event queue of examples/evq.c written with the C++ header shmdict.hpp.
//
// Same structure, same bytes in shared memory (a queue made here passes the C evq_check(), and C
// and C++ processes can push and consume on one queue), same protocol: one lock in the header taken
// through the transaction, every store to a shared word logged first (tx.set), events allocated
// through the transaction and freed after its commit. What C++ changes is the bookkeeping:
// shmd::ptr<T> instead of untyped pointers, and shmd::transaction, whose destructor aborts when an
// exception or an early return leaves the scope before commit(), so there is no `goto fail`.
// docs/custom-containers.md explains the protocol; docs/cpp.md the header.
#ifndef EVQ_HPP
#define EVQ_HPP

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "shmdict.hpp"

namespace evq {

inline constexpr uint64_t magic = 0x3171766574766571ull; // "qevtevq1", as evq.c
inline constexpr uint32_t max_capacity = 1u << 20, max_consumers = 256, max_event = 1u << 20;

struct event {
  uint64_t seq, len, sum, reserved;
  unsigned char *data() noexcept { return reinterpret_cast<unsigned char *>(this + 1); }
};
struct consumer {
  uint64_t taken, next_seq;
};
struct header {
  uint64_t magic;
  shmd_lock_t lock;
  uint32_t capacity, max_consumers;
  uint64_t head_seq, tail_seq;
  shmd::ptr<shmd::ptr<event>> ring;
  shmd::ptr<consumer> consumers;
  uint64_t reserved[2];
};
static_assert(sizeof(header) == 72 && offsetof(header, ring) == 40, "the layout of evq.c");

inline uint64_t fnv1a(const void *data, size_t len) noexcept {
  auto p = static_cast<const unsigned char *>(data);
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < len; i++)
    h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

class queue {
 public:
  queue(const shmd::store &s, shmd::ptr<header> q) noexcept : s_(s), q_(q) {}
  shmd::ptr<header> handle() const noexcept { return q_; }

  // Creates a queue (inside the caller's transaction if one is open).
  static queue create(const shmd::store &s, uint32_t capacity, uint32_t consumers) {
    if (!capacity || capacity > max_capacity || !consumers || consumers > max_consumers)
      throw shmd::error(SHMD_EINVAL, "evq::queue::create: sizes out of range");
    return shmd::transact(s, [&](shmd::transaction &tx) {
      auto hp = tx.calloc<header>();
      auto ring = tx.calloc<shmd::ptr<event>>(capacity * sizeof(shmd::ptr<event>));
      auto cons = tx.calloc<consumer>(consumers * sizeof(consumer));
      header *h = hp.get(s); // fresh memory: plain stores
      shmd_lock_init(&h->lock);
      h->capacity = capacity;
      h->max_consumers = consumers;
      h->ring = ring;
      h->consumers = cons;
      h->magic = magic;
      return queue(s, hp);
    });
  }

  // The queue under root `name`, created when absent; racing creators all get the winner's.
  static queue open(const shmd::store &s, const std::string &name, uint32_t capacity,
                    uint32_t consumers) {
    if (auto p = s.root<header>(name))
      return queue(s, *p);
    return shmd::transact(s, [&](shmd::transaction &tx) {
      queue q = create(s, capacity, consumers);
      auto won = s.set_root_nx(name, q.q_);
      if (won != q.q_) { // lost the race: give our blocks back after the commit
        header *h = q.q_.get(s);
        tx.free(h->ring);
        tx.free(h->consumers);
        tx.free(q.q_);
      }
      return queue(s, won);
    });
  }

  // Appends an event; its sequence number, or std::nullopt when a consumer lags `capacity`
  // events behind (back-pressure: nothing changed).
  std::optional<uint64_t> push(std::string_view data) {
    if (data.size() > max_event)
      throw shmd::error(SHMD_ETOOBIG, "evq::queue::push");
    shmd::transaction tx(s_);
    header *h = locked(tx);
    uint64_t head = h->head_seq, tail = h->tail_seq;
    shmd::ptr<event> *ring = h->ring.get(s_);
    if (tail - head == h->capacity) {
      if (min_cursor(h) == head) {
        tx.commit(); // an outcome, not a failure: release the lock, keep a caller's transaction
        return std::nullopt;
      }
      shmd::ptr<event> &slot = ring[head % h->capacity];
      tx.free(slot);                 // after the commit, exactly once
      tx.set(slot, shmd::ptr<event>());
      tx.set(h->head_seq, head + 1);
    }
    auto ep = tx.alloc<event>(sizeof(event) + data.size());
    event *e = ep.get(s_); // fresh: plain stores
    e->seq = tail;
    e->len = data.size();
    e->sum = fnv1a(data.data(), data.size());
    e->reserved = 0;
    if (!data.empty())
      std::memcpy(e->data(), data.data(), data.size());
    tx.set(ring[tail % h->capacity], ep); // logged, then stored
    tx.set(h->tail_seq, tail + 1);
    tx.commit(); // the commit point
    return tail;
  }

  // A free consumer slot, reading from the oldest event held or from the next push; std::nullopt
  // when every slot is taken.
  std::optional<uint32_t> subscribe(bool from_oldest) {
    shmd::transaction tx(s_);
    header *h = locked(tx);
    consumer *c = h->consumers.get(s_);
    for (uint32_t i = 0; i < h->max_consumers; i++) {
      if (c[i].taken)
        continue;
      tx.set(c[i].next_seq, from_oldest ? h->head_seq : h->tail_seq);
      tx.set(c[i].taken, uint64_t(1));
      tx.commit();
      return i;
    }
    tx.commit();
    return std::nullopt;
  }

  // Reads and consumes the consumer's next event in one transaction (evq_poll): its sequence
  // number and bytes, or std::nullopt when there is nothing new.
  std::optional<std::pair<uint64_t, std::string>> poll(uint32_t who) {
    shmd::transaction tx(s_);
    header *h = locked(tx);
    consumer &c = slot(h, who);
    if (c.next_seq == h->tail_seq) {
      tx.commit();
      return std::nullopt;
    }
    uint64_t seq = c.next_seq;
    event *e = event_at(h, seq);
    std::string bytes(reinterpret_cast<const char *>(e->data()), e->len);
    tx.set(c.next_seq, seq + 1);
    tx.commit();
    return std::make_pair(seq, std::move(bytes));
  }

  uint64_t cursor(uint32_t who) {
    shmd::transaction tx(s_);
    uint64_t n = slot(locked(tx), who).next_seq;
    tx.commit();
    return n;
  }
  std::pair<uint64_t, uint64_t> head_tail() {
    shmd::transaction tx(s_);
    header *h = locked(tx);
    std::pair<uint64_t, uint64_t> r(h->head_seq, h->tail_seq);
    tx.commit();
    return r;
  }

 private:
  // Takes the lock and validates the header (untrusted memory: checked pointers, bounded sizes).
  header *locked(shmd::transaction &tx) {
    tx.lock(q_.byte_offset<shmd_lock_t>(offsetof(header, lock)));
    header *h = q_.checked(s_);
    if (h->magic != magic || !h->capacity || h->capacity > max_capacity || !h->max_consumers ||
        h->max_consumers > max_consumers || h->head_seq > h->tail_seq ||
        h->tail_seq - h->head_seq > h->capacity)
      throw shmd::error(SHMD_ECORRUPT, "evq: bad header");
    h->ring.checked(s_, h->capacity);
    h->consumers.checked(s_, h->max_consumers);
    return h;
  }
  consumer &slot(header *h, uint32_t who) {
    consumer *c = h->consumers.get(s_);
    if (who >= h->max_consumers || !c[who].taken)
      throw shmd::error(SHMD_EINVAL, "evq: consumer slot not taken");
    if (c[who].next_seq < h->head_seq || c[who].next_seq > h->tail_seq)
      throw shmd::error(SHMD_ECORRUPT, "evq: cursor outside [head, tail]");
    return c[who];
  }
  event *event_at(header *h, uint64_t seq) {
    shmd::ptr<event> p = h->ring.get(s_)[seq % h->capacity];
    event *e = p.checked(s_);
    if (e->seq != seq || e->len > max_event)
      throw shmd::error(SHMD_ECORRUPT, "evq: event does not match its slot");
    p.cast<void>().checked(s_, sizeof(event) + e->len);
    return e;
  }
  uint64_t min_cursor(header *h) {
    uint64_t lo = h->tail_seq;
    consumer *c = h->consumers.get(s_);
    for (uint32_t i = 0; i < h->max_consumers; i++)
      if (c[i].taken && c[i].next_seq < lo)
        lo = c[i].next_seq;
    return lo;
  }

  const shmd::store &s_;
  shmd::ptr<header> q_;
};

} // namespace evq

#endif // EVQ_HPP
