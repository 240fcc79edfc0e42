// SPDX-License-Identifier: MIT
//
// shmdict.hpp: a header-only C++17 layer over shmdict's C API (include/shmdict.h).
//
// What it adds, and nothing more (every call is one or two C calls; no state of its own in shared
// memory, so C and C++ programs share a store byte for byte):
//
//   shmd::store          RAII handle: shmd::store::open(name, opts) ... closed by the destructor.
//   shmd::transaction    RAII transaction: commit() makes it permanent; leaving the scope without
//                        commit() — an exception, an early return — aborts it (every logged word
//                        restored, every allocation freed). shmd::transact(store, f) commits when
//                        f returns normally.
//   shmd::ptr<T>         a typed shmd_ptr_t (8 bytes, trivially copyable: store it in your
//                        shared structures), resolved with p.get(store) or checked with
//                        p.checked(store, n).
//   errors               std::error_code in shmd::category() (messages from shmd_strerror, values
//                        the negative SHMD_E* statuses, comparable with shmd::errc::*); every
//                        operation throws shmd::error (a std::system_error carrying
//                        shmd_errdetail()), and the main ones also have a noexcept overload taking
//                        a std::error_code& last, as std::filesystem does.
//   shmd::hash, shmd::list, shmd::array<T>, shmd::rbtree
//                        typed views (a store and a pointer; cheap to copy) over the containers,
//                        with input iterators that copy entries out in batches.
//   shmd::keyspace       the keyspace's typed calls (get/set/del/hget/hset/zadd/zrank...) and
//                        command(...) returning a shmd::reply.
//
// Threads: as in C, a transaction belongs to the thread that began it; handles may be shared by
// threads. Documentation: docs/cpp.md; a complete example: examples/evq.hpp.
#ifndef SHMD_HPP
#define SHMD_HPP

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "shmdict.h"

namespace shmd {

// ------------------------------------------------------------------------------------------------
// Errors

// The statuses of shmdict/error.h, as an enum that compares with std::error_code.
enum class errc : int {
  not_found = SHMD_ENOTFOUND,
  no_space = SHMD_ENOSPC,
  exists = SHMD_EEXIST,
  wrong_type = SHMD_EWRONGTYPE,
  corrupt = SHMD_ECORRUPT,
  version = SHMD_EVERSION,
  not_store = SHMD_ENOTSTORE,
  truncated = SHMD_ETRUNCATED,
  foreign = SHMD_EFOREIGN,
  checksum = SHMD_ECHECKSUM,
  invalid = SHMD_EINVAL,
  no_memory = SHMD_ENOMEM,
  io = SHMD_EIO,
  permission = SHMD_EPERM,
  no_store = SHMD_ENOENT,
  tx_full = SHMD_ETXFULL,
  too_big = SHMD_ETOOBIG,
  no_lane = SHMD_ENOLANE,
  busy = SHMD_EBUSY,
  range = SHMD_ERANGE,
  not_integer = SHMD_ENOTINT,
  not_float = SHMD_ENOTFLOAT,
  syntax = SHMD_ESYNTAX,
  overflow = SHMD_EOVERFLOW,
  not_supported = SHMD_ENOTSUP,
  loop = SHMD_ELOOP,
  aborted = SHMD_EABORTED,
};

class error_category_impl final : public std::error_category {
 public:
  const char *name() const noexcept override { return "shmdict"; }
  std::string message(int ev) const override { return shmd_strerror(ev); }
};

// The category of shmdict's statuses. One object per program (a function-local static).
inline const std::error_category &category() noexcept {
  static const error_category_impl c;
  return c;
}

inline std::error_code make_error_code(errc e) noexcept {
  return std::error_code(static_cast<int>(e), category());
}

// The error_code of a status (0 gives the empty code).
inline std::error_code status_code(int status) noexcept {
  return status ? std::error_code(status, category()) : std::error_code();
}

// What every throwing call throws: the status as code(), what() = "call: message (detail)".
class error : public std::system_error {
 public:
  error(int status, const std::string &what) : std::system_error(status_code(status), what) {}
  int status() const noexcept { return code().value(); }
};

namespace detail {
inline std::string describe(const char *what) {
  std::string d = shmd_errdetail();
  return d.empty() ? std::string(what) : std::string(what) + " (" + d + ")";
}
// Throws shmd::error for a negative status; returns it otherwise.
inline int check(int rc, const char *what) {
  if (rc < 0)
    throw error(rc, describe(what));
  return rc;
}
// Stores a negative status in ec (clears it otherwise); returns true on success.
inline bool to_ec(int rc, std::error_code &ec) noexcept {
  if (rc < 0) {
    ec = status_code(rc);
    return false;
  }
  ec.clear();
  return true;
}
}  // namespace detail

}  // namespace shmd

namespace std {
template <>
struct is_error_code_enum<shmd::errc> : true_type {};
}  // namespace std

namespace shmd {

class store;

// ------------------------------------------------------------------------------------------------
// ptr<T>: a typed segment-qualified relative pointer

template <class T>
class ptr {
 public:
  using element_type = T;

  constexpr ptr() noexcept : p_{0} {}
  constexpr explicit ptr(shmd_ptr_t p) noexcept : p_(p) {}

  constexpr shmd_ptr_t raw() const noexcept { return p_; }
  constexpr explicit operator bool() const noexcept { return p_.v != 0; }
  constexpr uint32_t segment() const noexcept { return shmd_ptr_segment(p_); }
  constexpr uint64_t offset() const noexcept { return shmd_ptr_offset(p_); }

  // The address in this process (shmd_resolve: no bounds check; nullptr for the null pointer).
  T *get(shmd_store_t *s) const noexcept { return static_cast<T *>(shmd_resolve(s, p_)); }
  inline T *get(const store &s) const noexcept;

  // The address, after checking that `count` objects of T (bytes for ptr<void>) lie inside the
  // store: for pointers read from shared memory that may be damaged. Throws errc::corrupt.
  inline T *checked(const store &s, size_t count = 1) const;
  inline T *checked(const store &s, size_t count, std::error_code &ec) const noexcept;

  // The same address as another type, or `bytes` further (fields of a struct: offsetof).
  template <class U>
  constexpr ptr<U> cast() const noexcept {
    return ptr<U>(p_);
  }
  template <class U = T>
  ptr<U> byte_offset(uint64_t bytes) const noexcept {
    return ptr<U>(shmd_ptr_add(p_, bytes));
  }
  // Element arithmetic for arrays of T.
  template <class U = T, class = std::enable_if_t<!std::is_void<U>::value>>
  ptr operator+(uint64_t n) const noexcept {
    return ptr(shmd_ptr_add(p_, n * sizeof(U)));
  }

  // The pointer of an address inside the store (null if it is in none of its segments).
  static inline ptr from(const store &s, const T *addr) noexcept;

  friend constexpr bool operator==(ptr a, ptr b) noexcept { return a.p_.v == b.p_.v; }
  friend constexpr bool operator!=(ptr a, ptr b) noexcept { return a.p_.v != b.p_.v; }

 private:
  static constexpr size_t unit() noexcept {
    if constexpr (std::is_void<T>::value)
      return 1;
    else
      return sizeof(T);
  }
  shmd_ptr_t p_;
};

static_assert(sizeof(ptr<int>) == sizeof(shmd_ptr_t), "ptr<T> is a shmd_ptr_t");
static_assert(std::is_trivially_copyable<ptr<int>>::value, "ptr<T> may live in shared memory");
static_assert(std::is_standard_layout<ptr<int>>::value, "ptr<T> may live in shared memory");

// ------------------------------------------------------------------------------------------------
// store

// shmd_options_t with owned strings. Zero sizes keep the library's defaults.
struct options {
  std::string dir;                 // store directory; empty: $SHMDICT_DIR, else /dev/shm/shmdict
  uint32_t flags = 0;              // SHMD_OPEN_NOCREATE | SHMD_OPEN_EXCL | SHMD_OPEN_POPULATE
  uint64_t first_segment_bytes = 0;
  uint64_t segment_bytes = 0;
  uint64_t max_store_bytes = 0;
  uint32_t file_mode = 0;
  uint32_t max_threads = 0;
  std::string group;               // empty: a private store

  // The C struct; valid while this object lives (it points into the strings).
  shmd_options_t c_options() const noexcept {
    shmd_options_t o;
    shmd_options_init(&o);
    o.flags = flags;
    if (!dir.empty())
      o.dir = dir.c_str();
    if (first_segment_bytes)
      o.first_segment_bytes = first_segment_bytes;
    if (segment_bytes)
      o.segment_bytes = segment_bytes;
    if (max_store_bytes)
      o.max_store_bytes = max_store_bytes;
    if (file_mode)
      o.file_mode = file_mode;
    if (max_threads)
      o.max_threads = max_threads;
    if (!group.empty())
      o.group = group.c_str();
    return o;
  }
};

class keyspace;

// An open store. Move-only; the destructor closes it (shmd_close).
class store {
 public:
  store() noexcept = default;
  // Adopts a handle from shmd_open().
  explicit store(shmd_store_t *s) noexcept : s_(s) {}
  store(store &&o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  store &operator=(store &&o) noexcept {
    if (this != &o) {
      close();
      s_ = std::exchange(o.s_, nullptr);
    }
    return *this;
  }
  store(const store &) = delete;
  store &operator=(const store &) = delete;
  ~store() { close(); }

  // Opens (or creates) the store `name` (shmd_open). Throws shmd::error.
  static store open(const std::string &name, const options &opt = options()) {
    shmd_options_t o = opt.c_options();
    shmd_store_t *s = nullptr;
    detail::check(shmd_open(name.c_str(), &o, &s), "shmd_open");
    return store(s);
  }
  // The same without exceptions: an empty store and ec set on failure.
  static store open(const std::string &name, const options &opt, std::error_code &ec) noexcept {
    shmd_options_t o = opt.c_options();
    shmd_store_t *s = nullptr;
    detail::to_ec(shmd_open(name.c_str(), &o, &s), ec);
    return store(s);
  }
  // Removes a store's files (shmd_drop); false when there was no such store.
  static bool drop(const std::string &name, const std::string &dir = std::string()) {
    int rc = shmd_drop(name.c_str(), dir.empty() ? nullptr : dir.c_str());
    if (rc == SHMD_ENOENT)
      return false;
    detail::check(rc, "shmd_drop");
    return true;
  }

  void close() noexcept {
    shmd_close(s_);
    s_ = nullptr;
  }
  shmd_store_t *get() const noexcept { return s_; }
  explicit operator bool() const noexcept { return s_ != nullptr; }
  std::string name() const { return shmd_store_name(s_); }
  std::string dir() const { return shmd_store_dir(s_); }

  // Named roots.
  template <class T = void>
  std::optional<ptr<T>> root(const std::string &name) const {
    shmd_ptr_t p;
    int rc = shmd_root_get(s_, name.c_str(), &p);
    if (rc == SHMD_ENOTFOUND)
      return std::nullopt;
    detail::check(rc, "shmd_root_get");
    return ptr<T>(p);
  }
  template <class T>
  void set_root(const std::string &name, ptr<T> p) const {
    detail::check(shmd_root_set(s_, name.c_str(), p.raw()), "shmd_root_set");
  }
  // Sets the root only if absent; returns the root's value afterwards (p, or the winner's).
  template <class T>
  ptr<T> set_root_nx(const std::string &name, ptr<T> p) const {
    shmd_ptr_t existing;
    int rc = shmd_root_set_nx(s_, name.c_str(), p.raw(), &existing);
    if (rc == SHMD_EEXIST)
      return ptr<T>(existing);
    detail::check(rc, "shmd_root_set_nx");
    return p;
  }
  bool del_root(const std::string &name) const {
    int rc = shmd_root_del(s_, name.c_str());
    if (rc == SHMD_ENOTFOUND)
      return false;
    detail::check(rc, "shmd_root_del");
    return true;
  }

  // Allocator (outside transactions: the caller owns the block; see transaction::alloc).
  template <class T = void>
  ptr<T> alloc(size_t bytes = sizeof(std::conditional_t<std::is_void<T>::value, char, T>)) {
    shmd_ptr_t p;
    detail::check(shmd_alloc(s_, bytes, &p), "shmd_alloc");
    return ptr<T>(p);
  }
  template <class T>
  void free(ptr<T> p) {
    detail::check(shmd_free(s_, p.raw()), "shmd_free");
  }

  shmd_store_info_t info() const {
    shmd_store_info_t i;
    detail::check(shmd_store_info(s_, &i), "shmd_store_info");
    return i;
  }
  shmd_stats_t stats() const {
    shmd_stats_t st;
    detail::check(shmd_stats(s_, &st), "shmd_stats");
    return st;
  }
  // The allocator's invariant checker; throws errc::corrupt with the place in what().
  void alloc_check() const { detail::check(shmd_alloc_check(s_), "shmd_alloc_check"); }
  bool alloc_check(std::error_code &ec) const noexcept { return detail::to_ec(shmd_alloc_check(s_), ec); }
  // Recovers dead threads' operations now; returns how many.
  int recover() { return detail::check(shmd_recover(s_), "shmd_recover"); }

  inline keyspace kv(unsigned db = 0) const noexcept;

 private:
  shmd_store_t *s_ = nullptr;
};

template <class T>
T *ptr<T>::get(const store &s) const noexcept {
  return get(s.get());
}
template <class T>
T *ptr<T>::checked(const store &s, size_t count, std::error_code &ec) const noexcept {
  void *a = nullptr;
  if (!detail::to_ec(shmd_resolve_checked(s.get(), p_, count * unit(), &a), ec))
    return nullptr;
  return static_cast<T *>(a);
}
template <class T>
T *ptr<T>::checked(const store &s, size_t count) const {
  void *a = nullptr;
  detail::check(shmd_resolve_checked(s.get(), p_, count * unit(), &a), "shmd_resolve_checked");
  return static_cast<T *>(a);
}
template <class T>
ptr<T> ptr<T>::from(const store &s, const T *addr) noexcept {
  return ptr<T>(shmd_ptr_from_addr(s.get(), addr));
}

// ------------------------------------------------------------------------------------------------
// transaction

// A transaction of the calling thread (shmd_tx_begin: joins one already open on this store).
// commit() ends it; the destructor aborts it if commit() was not called, so an exception or an
// early return rolls back every logged store and frees every allocation. Not copyable or movable:
// it belongs to the scope (and thread) that began it.
class transaction {
 public:
  explicit transaction(const store &s) : s_(s.get()) {
    detail::check(shmd_tx_begin(s_, &tx_), "shmd_tx_begin");
    open_ = true;
  }
  // Without exceptions: check ec (or active()) before using it.
  transaction(const store &s, std::error_code &ec) noexcept : s_(s.get()) {
    open_ = detail::to_ec(shmd_tx_begin(s_, &tx_), ec);
  }
  transaction(const transaction &) = delete;
  transaction &operator=(const transaction &) = delete;
  ~transaction() {
    if (open_)
      shmd_tx_abort(tx_);
  }

  bool active() const noexcept { return open_; }
  shmd_tx_t *get() const noexcept { return tx_; }
  shmd_store_t *store_handle() const noexcept { return s_; }

  // Ends this level (shmd_tx_commit). Throws errc::aborted when an inner level aborted (the whole
  // transaction was rolled back). Either way the transaction is over.
  void commit() {
    open_ = false;
    detail::check(shmd_tx_commit(tx_), "shmd_tx_commit");
  }
  bool commit(std::error_code &ec) noexcept {
    open_ = false;
    return detail::to_ec(shmd_tx_commit(tx_), ec);
  }
  void abort() noexcept {
    if (open_)
      shmd_tx_abort(tx_);
    open_ = false;
  }

  // Takes a lock in shared memory until the outermost commit or abort.
  void lock(ptr<shmd_lock_t> l) { detail::check(shmd_tx_lock(tx_, l.raw()), "shmd_tx_lock"); }
  void lock(shmd_lock_t &l) { lock(ptr<shmd_lock_t>(shmd_ptr_from_addr(s_, &l))); }

  // Logs the current contents of an object in the store before it is changed.
  template <class T>
  void log(const T &obj, size_t bytes = sizeof(T)) {
    shmd_ptr_t p = shmd_ptr_from_addr(s_, &obj);
    detail::check(shmd_tx_log(tx_, p, bytes), "shmd_tx_log");
  }
  template <class T>
  void log(ptr<T> p, size_t bytes) {
    detail::check(shmd_tx_log(tx_, p.raw(), bytes), "shmd_tx_log");
  }
  // Logs `field` (a trivially copyable object in the store), then stores `value` in it.
  template <class T, class V>
  void set(T &field, V &&value) {
    static_assert(std::is_trivially_copyable<T>::value, "only plain data lives in shared memory");
    if constexpr (sizeof(T) == 8 && alignof(T) == 8) {
      T v = static_cast<T>(std::forward<V>(value));
      uint64_t w;
      std::memcpy(&w, &v, 8);
      detail::check(shmd_tx_set64(tx_, &field, w), "shmd_tx_set64");
    } else {
      log(field);
      field = static_cast<T>(std::forward<V>(value));
    }
  }

  // Allocates through the transaction: freed again if it aborts or its thread dies first.
  template <class T = void>
  ptr<T> alloc(size_t bytes = sizeof(std::conditional_t<std::is_void<T>::value, char, T>)) {
    shmd_ptr_t p;
    detail::check(shmd_tx_alloc(tx_, bytes, &p), "shmd_tx_alloc");
    return ptr<T>(p);
  }
  template <class T = void>
  ptr<T> calloc(size_t bytes = sizeof(std::conditional_t<std::is_void<T>::value, char, T>)) {
    shmd_ptr_t p;
    detail::check(shmd_tx_calloc(tx_, bytes, &p), "shmd_tx_calloc");
    return ptr<T>(p);
  }
  // Frees p after the commit, exactly once (nothing if the transaction aborts).
  template <class T>
  void free(ptr<T> p) {
    detail::check(shmd_tx_free(tx_, p.raw()), "shmd_tx_free");
  }
  // Grows the transaction's lists so that this much more cannot fail for room (shmd_tx_reserve).
  void reserve(size_t log_words, size_t allocs, size_t frees) {
    detail::check(shmd_tx_reserve(tx_, log_words, allocs, frees), "shmd_tx_reserve");
  }

 private:
  shmd_store_t *s_;
  shmd_tx_t *tx_ = nullptr;
  bool open_ = false;
};

// Runs f(tx) in a transaction and commits when f returns normally; if f throws, the transaction
// aborts and the exception propagates. Returns what f returns.
template <class F>
auto transact(const store &s, F &&f) -> decltype(f(std::declval<transaction &>())) {
  transaction tx(s);
  if constexpr (std::is_void<decltype(f(tx))>::value) {
    f(tx);
    tx.commit();
  } else {
    auto r = f(tx);
    tx.commit();
    return r;
  }
}

// ------------------------------------------------------------------------------------------------
// Container views. Each is a store handle and a pointer: cheap to copy, valid while the store is
// open and the container exists. Keys and values are byte strings (std::string_view in,
// std::string out).

namespace detail {
// Calls fill(buf, cap, &len) with a buffer that grows until the value fits; returns the status.
template <class Fill>
int copy_out(std::string &out, Fill &&fill) {
  out.resize(out.capacity() > 64 ? out.capacity() : 64);
  for (;;) {
    size_t len = 0;
    int rc = fill(&out[0], out.size(), &len);
    if (rc == SHMD_ERANGE || (rc == 0 && len > out.size())) {
      out.resize(len);
      continue;
    }
    if (rc == 0)
      out.resize(len);
    return rc;
  }
}
}  // namespace detail

class hash {
 public:
  hash(const store &s, ptr<void> h) noexcept : s_(s.get()), h_(h) {}
  static hash create(const store &s, size_t expected = 0) {
    shmd_ptr_t p;
    detail::check(shmd_hash_create(s.get(), expected, &p), "shmd_hash_create");
    return hash(s, ptr<void>(p));
  }
  ptr<void> handle() const noexcept { return h_; }

  // HSET: true when the key is new.
  bool put(std::string_view k, std::string_view v) {
    int created = 0;
    detail::check(shmd_hash_put(s_, h_.raw(), k.data(), k.size(), v.data(), v.size(),
                                SHMD_HASH_UPSERT, &created), "shmd_hash_put");
    return created != 0;
  }
  // Inserts only: false (and no change) when the key exists.
  bool insert(std::string_view k, std::string_view v) {
    int rc = shmd_hash_put(s_, h_.raw(), k.data(), k.size(), v.data(), v.size(), SHMD_HASH_INSERT,
                           nullptr);
    if (rc == SHMD_EEXIST)
      return false;
    detail::check(rc, "shmd_hash_put");
    return true;
  }
  std::optional<std::string> get(std::string_view k) const {
    std::string out;
    int rc = detail::copy_out(out, [&](char *b, size_t cap, size_t *len) {
      return shmd_hash_get(s_, h_.raw(), k.data(), k.size(), b, cap, len);
    });
    if (rc == SHMD_ENOTFOUND)
      return std::nullopt;
    detail::check(rc, "shmd_hash_get");
    return out;
  }
  bool contains(std::string_view k) const {
    return detail::check(shmd_hash_contains(s_, h_.raw(), k.data(), k.size()), "shmd_hash_contains") == 1;
  }
  bool erase(std::string_view k) {
    int rc = shmd_hash_del(s_, h_.raw(), k.data(), k.size());
    if (rc == SHMD_ENOTFOUND)
      return false;
    detail::check(rc, "shmd_hash_del");
    return true;
  }
  uint64_t size() const {
    uint64_t n;
    detail::check(shmd_hash_len(s_, h_.raw(), &n), "shmd_hash_len");
    return n;
  }
  void check() const { detail::check(shmd_hash_check(s_, h_.raw()), "shmd_hash_check"); }
  void destroy() { detail::check(shmd_hash_destroy(s_, h_.raw()), "shmd_hash_destroy"); }

  // Input iterator over the entries (the safe iterator: every entry present for the whole walk is
  // visited exactly once, whatever others change meanwhile). Entries are copies.
  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = std::pair<std::string_view, std::string_view>;
    using difference_type = std::ptrdiff_t;
    using pointer = const value_type *;
    using reference = const value_type &;

    iterator() = default;
    iterator(shmd_store_t *s, shmd_ptr_t h) {
      shmd_hash_iter_t *it;
      detail::check(shmd_hash_iter_new(s, h, &it), "shmd_hash_iter_new");
      it_.reset(it, shmd_hash_iter_free);
      ++*this;
    }
    reference operator*() const { return cur_; }
    pointer operator->() const { return &cur_; }
    iterator &operator++() {
      const void *k, *v;
      size_t kl, vl;
      int rc = shmd_hash_iter_next(it_.get(), &k, &kl, &v, &vl);
      if (rc == SHMD_ENOTFOUND) {
        it_.reset();
        return *this;
      }
      detail::check(rc, "shmd_hash_iter_next");
      cur_ = {std::string_view(static_cast<const char *>(k), kl),
              std::string_view(static_cast<const char *>(v), vl)};
      return *this;
    }
    friend bool operator==(const iterator &a, const iterator &b) noexcept { return a.it_ == b.it_; }
    friend bool operator!=(const iterator &a, const iterator &b) noexcept { return a.it_ != b.it_; }

   private:
    std::shared_ptr<shmd_hash_iter_t> it_;
    value_type cur_;
  };
  iterator begin() const { return iterator(s_, h_.raw()); }
  iterator end() const noexcept { return iterator(); }

 private:
  shmd_store_t *s_;
  ptr<void> h_;
};

class list {
 public:
  list(const store &s, ptr<void> l) noexcept : s_(s.get()), l_(l) {}
  static list create(const store &s) {
    shmd_ptr_t p;
    detail::check(shmd_list_create(s.get(), &p), "shmd_list_create");
    return list(s, ptr<void>(p));
  }
  ptr<void> handle() const noexcept { return l_; }

  uint64_t push_back(std::string_view v) { return push(SHMD_LIST_TAIL, v); }
  uint64_t push_front(std::string_view v) { return push(SHMD_LIST_HEAD, v); }
  std::optional<std::string> pop_front() { return pop(SHMD_LIST_HEAD); }
  std::optional<std::string> pop_back() { return pop(SHMD_LIST_TAIL); }
  // LINDEX (negative counts from the tail).
  std::optional<std::string> at(int64_t index) const {
    std::string out;
    int rc = detail::copy_out(out, [&](char *b, size_t cap, size_t *len) {
      return shmd_list_index(s_, l_.raw(), index, b, cap, len);
    });
    if (rc == SHMD_ENOTFOUND)
      return std::nullopt;
    detail::check(rc, "shmd_list_index");
    return out;
  }
  void set(int64_t index, std::string_view v) {
    detail::check(shmd_list_set(s_, l_.raw(), index, v.data(), v.size()), "shmd_list_set");
  }
  uint64_t size() const {
    uint64_t n;
    detail::check(shmd_list_len(s_, l_.raw(), &n), "shmd_list_len");
    return n;
  }
  void check() const { detail::check(shmd_list_check(s_, l_.raw()), "shmd_list_check"); }
  void destroy() { detail::check(shmd_list_destroy(s_, l_.raw()), "shmd_list_destroy"); }

  // Input iterator, head to tail (reverse: tail to head), copying batches of 64 elements under one
  // lock hold each (shmd_list_iter_next).
  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = std::string;
    using difference_type = std::ptrdiff_t;
    using pointer = const std::string *;
    using reference = const std::string &;

    iterator() = default;
    iterator(shmd_store_t *s, shmd_ptr_t l, bool reverse) : st_(std::make_shared<state>()) {
      st_->s = s;
      shmd_list_iter_init(&st_->it, l, reverse ? 1 : 0);
      ++*this;
    }
    reference operator*() const { return st_->batch[st_->pos]; }
    pointer operator->() const { return &st_->batch[st_->pos]; }
    iterator &operator++() {
      if (++st_->pos < st_->batch.size())
        return *this;
      st_->batch.clear();
      st_->pos = 0;
      size_t visited = 0;
      detail::check(shmd_list_iter_next(st_->s, &st_->it, 64, &collect, &st_->batch, &visited),
                    "shmd_list_iter_next");
      if (st_->batch.empty())
        st_.reset();
      return *this;
    }
    friend bool operator==(const iterator &a, const iterator &b) noexcept { return a.st_ == b.st_; }
    friend bool operator!=(const iterator &a, const iterator &b) noexcept { return a.st_ != b.st_; }

   private:
    struct state {
      shmd_store_t *s;
      shmd_list_iter_t it;
      std::vector<std::string> batch;
      size_t pos = 0;
    };
    static int collect(const void *data, size_t len, void *arg) {
      static_cast<std::vector<std::string> *>(arg)->emplace_back(static_cast<const char *>(data), len);
      return 0;
    }
    std::shared_ptr<state> st_;
  };
  iterator begin() const { return iterator(s_, l_.raw(), false); }
  iterator end() const noexcept { return iterator(); }
  iterator rbegin() const { return iterator(s_, l_.raw(), true); }

 private:
  uint64_t push(int where, std::string_view v) {
    uint64_t n;
    detail::check(shmd_list_push(s_, l_.raw(), where, v.data(), v.size(), &n), "shmd_list_push");
    return n;
  }
  std::optional<std::string> pop(int where) {
    std::string out;
    int rc = detail::copy_out(out, [&](char *b, size_t cap, size_t *len) {
      return shmd_list_pop(s_, l_.raw(), where, b, cap, len);
    });
    if (rc == SHMD_ENOTFOUND)
      return std::nullopt;
    detail::check(rc, "shmd_list_pop");
    return out;
  }
  shmd_store_t *s_;
  ptr<void> l_;
};

// A growable array of trivially copyable T (elem_size = sizeof(T), checked when attaching).
template <class T>
class array {
  static_assert(std::is_trivially_copyable<T>::value, "array elements are copied bytewise");

 public:
  array(const store &s, ptr<void> a) : s_(s.get()), a_(a) {
    size_t es;
    detail::check(shmd_array_elem_size(s_, a_.raw(), &es), "shmd_array_elem_size");
    if (es != sizeof(T))
      throw error(SHMD_EINVAL, "shmd::array: element size of the stored array differs from sizeof(T)");
  }
  static array create(const store &s, uint64_t capacity = 0) {
    shmd_ptr_t p;
    detail::check(shmd_array_create(s.get(), sizeof(T), capacity, &p), "shmd_array_create");
    return array(s, ptr<void>(p));
  }
  ptr<void> handle() const noexcept { return a_; }

  uint64_t size() const {
    uint64_t n;
    detail::check(shmd_array_len(s_, a_.raw(), &n), "shmd_array_len");
    return n;
  }
  void push_back(const T &v) { detail::check(shmd_array_push(s_, a_.raw(), &v), "shmd_array_push"); }
  std::optional<T> pop_back() {
    T v;
    int rc = shmd_array_pop(s_, a_.raw(), &v);
    if (rc == SHMD_ENOTFOUND)
      return std::nullopt;
    detail::check(rc, "shmd_array_pop");
    return v;
  }
  // Element i (a copy); throws errc::range past the end.
  T get(uint64_t i) const {
    T v;
    detail::check(shmd_array_get(s_, a_.raw(), i, &v), "shmd_array_get");
    return v;
  }
  T operator[](uint64_t i) const { return get(i); }
  void set(uint64_t i, const T &v) { detail::check(shmd_array_set(s_, a_.raw(), i, &v), "shmd_array_set"); }
  void reserve(uint64_t n) { detail::check(shmd_array_reserve(s_, a_.raw(), n), "shmd_array_reserve"); }
  void check() const { detail::check(shmd_array_check(s_, a_.raw()), "shmd_array_check"); }
  void destroy() { detail::check(shmd_array_destroy(s_, a_.raw()), "shmd_array_destroy"); }

  // Input iterator by index: reads element i when dereferenced (others may change the array
  // meanwhile; the end is the length when begin() was called).
  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = const T *;
    using reference = T;

    iterator(const array *a, uint64_t i) noexcept : a_(a), i_(i) {}
    T operator*() const { return a_->get(i_); }
    iterator &operator++() noexcept {
      ++i_;
      return *this;
    }
    friend bool operator==(const iterator &x, const iterator &y) noexcept { return x.i_ == y.i_; }
    friend bool operator!=(const iterator &x, const iterator &y) noexcept { return x.i_ != y.i_; }

   private:
    const array *a_;
    uint64_t i_;
  };
  iterator begin() const noexcept { return iterator(this, 0); }
  iterator end() const { return iterator(this, size()); }

 private:
  shmd_store_t *s_;
  ptr<void> a_;
};

// An ordered map (rank/select in O(log n)). Keys as the ordering chosen at creation expects:
// any bytes (SHMD_RBTREE_BYTES), or 8 bytes of an int64_t / double (rbtree::key_of).
class rbtree {
 public:
  using entry = std::pair<std::string, std::string>;

  rbtree(const store &s, ptr<void> t) noexcept : s_(s.get()), t_(t) {}
  static rbtree create(const store &s, shmd_rbtree_order_t order = SHMD_RBTREE_BYTES) {
    shmd_ptr_t p;
    detail::check(shmd_rbtree_create(s.get(), order, &p), "shmd_rbtree_create");
    return rbtree(s, ptr<void>(p));
  }
  ptr<void> handle() const noexcept { return t_; }

  // The 8 key bytes of a number, for SHMD_RBTREE_I64 / SHMD_RBTREE_DOUBLE trees.
  template <class N, class = std::enable_if_t<std::is_arithmetic<N>::value && sizeof(N) == 8>>
  static std::string key_of(N n) {
    return std::string(reinterpret_cast<const char *>(&n), 8);
  }

  // Upsert: true when the key is new.
  bool put(std::string_view k, std::string_view v) {
    int inserted = 0;
    detail::check(shmd_rbtree_put(s_, t_.raw(), k.data(), k.size(), v.data(), v.size(),
                                  SHMD_RBTREE_UPSERT, &inserted), "shmd_rbtree_put");
    return inserted != 0;
  }
  std::optional<std::string> get(std::string_view k) const {
    std::string out;
    int rc = detail::copy_out(out, [&](char *b, size_t cap, size_t *len) {
      return shmd_rbtree_get(s_, t_.raw(), k.data(), k.size(), b, cap, len);
    });
    if (rc == SHMD_ENOTFOUND)
      return std::nullopt;
    detail::check(rc, "shmd_rbtree_get");
    return out;
  }
  bool erase(std::string_view k) {
    int rc = shmd_rbtree_delete(s_, t_.raw(), k.data(), k.size());
    if (rc == SHMD_ENOTFOUND)
      return false;
    detail::check(rc, "shmd_rbtree_delete");
    return true;
  }
  uint64_t size() const {
    uint64_t n;
    detail::check(shmd_rbtree_len(s_, t_.raw(), &n), "shmd_rbtree_len");
    return n;
  }
  std::optional<uint64_t> rank(std::string_view k) const {
    uint64_t r;
    int rc = shmd_rbtree_rank(s_, t_.raw(), k.data(), k.size(), &r);
    if (rc == SHMD_ENOTFOUND)
      return std::nullopt;
    detail::check(rc, "shmd_rbtree_rank");
    return r;
  }
  // The entry of rank i.
  std::optional<entry> select(uint64_t i) const {
    return fetch([&](shmd_rbtree_item_t *it) { return shmd_rbtree_select(s_, t_.raw(), i, it); });
  }
  // The first entry >= k.
  std::optional<entry> lower_bound(std::string_view k) const {
    return fetch([&](shmd_rbtree_item_t *it) {
      return shmd_rbtree_lower_bound(s_, t_.raw(), k.data(), k.size(), it);
    });
  }
  void check() const { detail::check(shmd_rbtree_check(s_, t_.raw()), "shmd_rbtree_check"); }
  void destroy() { detail::check(shmd_rbtree_destroy(s_, t_.raw()), "shmd_rbtree_destroy"); }

  // Input iterator in key order from a starting key: each step seeks the entry after the last key
  // (shmd_rbtree_next), so it survives concurrent changes.
  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = entry;
    using difference_type = std::ptrdiff_t;
    using pointer = const entry *;
    using reference = const entry &;

    iterator() = default;
    iterator(const rbtree *t, std::optional<entry> e) : t_(t), cur_(std::move(e)) {}
    reference operator*() const { return *cur_; }
    pointer operator->() const { return &*cur_; }
    iterator &operator++() {
      std::string last = std::move(cur_->first);
      cur_ = t_->fetch([&](shmd_rbtree_item_t *it) {
        return shmd_rbtree_next(t_->s_, t_->t_.raw(), last.data(), last.size(), it);
      });
      return *this;
    }
    friend bool operator==(const iterator &a, const iterator &b) noexcept {
      return a.cur_.has_value() == b.cur_.has_value() && (!a.cur_ || a.cur_->first == b.cur_->first);
    }
    friend bool operator!=(const iterator &a, const iterator &b) noexcept { return !(a == b); }

   private:
    const rbtree *t_ = nullptr;
    std::optional<entry> cur_;
  };
  iterator begin() const { return iterator(this, select(0)); }
  iterator end() const noexcept { return iterator(); }
  iterator from(std::string_view k) const { return iterator(this, lower_bound(k)); }

 private:
  // Copies an entry out, growing the buffers until it fits.
  template <class Seek>
  std::optional<entry> fetch(Seek &&seek) const {
    entry e;
    e.first.resize(64);
    e.second.resize(64);
    for (;;) {
      shmd_rbtree_item_t it{};
      it.key = &e.first[0];
      it.key_cap = e.first.size();
      it.val = &e.second[0];
      it.val_cap = e.second.size();
      int rc = seek(&it);
      if (rc == SHMD_ENOTFOUND)
        return std::nullopt;
      detail::check(rc, "shmd_rbtree seek");
      if (it.key_len > e.first.size() || it.val_len > e.second.size()) {
        e.first.resize(it.key_len > e.first.size() ? it.key_len : e.first.size());
        e.second.resize(it.val_len > e.second.size() ? it.val_len : e.second.size());
        continue;
      }
      e.first.resize(it.key_len);
      e.second.resize(it.val_len);
      return e;
    }
  }
  shmd_store_t *s_;
  ptr<void> t_;
};

// ------------------------------------------------------------------------------------------------
// The keyspace

// A reply of keyspace::command(): owns the C reply; elements are views into it.
class reply_view {
 public:
  explicit reply_view(const shmd_reply_t *r) noexcept : r_(r) {}
  shmd_reply_type_t type() const noexcept { return r_->type; }
  bool is_error() const noexcept { return r_->type == SHMD_REPLY_ERROR; }
  bool is_nil() const noexcept { return r_->type == SHMD_REPLY_NIL; }
  // Status, error and bulk replies: the bytes.
  std::string_view str() const noexcept { return r_->str ? std::string_view(r_->str, r_->len) : std::string_view(); }
  int64_t integer() const noexcept { return r_->integer; }
  size_t size() const noexcept { return r_->type == SHMD_REPLY_ARRAY ? r_->nelems : 0; }
  reply_view operator[](size_t i) const noexcept { return reply_view(&r_->elems[i]); }
  const shmd_reply_t *get() const noexcept { return r_; }

 private:
  const shmd_reply_t *r_;
};

class reply : public reply_view {
 public:
  explicit reply(shmd_reply_t *r) noexcept : reply_view(r), own_(r, shmd_reply_free) {}

 private:
  std::unique_ptr<shmd_reply_t, void (*)(shmd_reply_t *)> own_;
};

// One database of a store's keyspace: the typed calls of shmdict/kv.h. Each is one transaction
// (joining an open transaction of the caller). Not-found is std::nullopt or false, never an error.
class keyspace {
 public:
  keyspace(shmd_store_t *s, unsigned db) noexcept : s_(s), db_(db) {}
  unsigned db() const noexcept { return db_; }

  std::optional<std::string> get(std::string_view k) const {
    std::error_code ec;
    auto v = get(k, ec);
    if (ec)
      throw error(ec.value(), detail::describe("shmd_kv_get"));
    return v;
  }
  std::optional<std::string> get(std::string_view k, std::error_code &ec) const {
    std::string out;
    int rc = detail::copy_out(out, [&](char *b, size_t cap, size_t *len) {
      return shmd_kv_get(s_, db_, k.data(), k.size(), b, cap, len);
    });
    if (rc == SHMD_ENOTFOUND) {
      ec.clear();
      return std::nullopt;
    }
    if (!detail::to_ec(rc, ec))
      return std::nullopt;
    return out;
  }
  // SET with flags SHMD_KV_NX / SHMD_KV_XX: false when the flag prevented it.
  bool set(std::string_view k, std::string_view v, unsigned flags = 0) {
    std::error_code ec;
    bool done = set(k, v, flags, ec);
    if (ec)
      throw error(ec.value(), detail::describe("shmd_kv_set"));
    return done;
  }
  bool set(std::string_view k, std::string_view v, unsigned flags, std::error_code &ec) noexcept {
    int rc = shmd_kv_set(s_, db_, k.data(), k.size(), v.data(), v.size(), flags);
    if (rc == SHMD_EEXIST || rc == SHMD_ENOTFOUND) {
      ec.clear();
      return false;
    }
    return detail::to_ec(rc, ec);
  }
  bool del(std::string_view k) { return found(shmd_kv_del(s_, db_, k.data(), k.size()), "shmd_kv_del"); }
  std::optional<std::string> hget(std::string_view k, std::string_view f) const {
    std::string out;
    int rc = detail::copy_out(out, [&](char *b, size_t cap, size_t *len) {
      return shmd_kv_hget(s_, db_, k.data(), k.size(), f.data(), f.size(), b, cap, len);
    });
    if (rc == SHMD_ENOTFOUND)
      return std::nullopt;
    detail::check(rc, "shmd_kv_hget");
    return out;
  }
  // HSET: true when the field is new.
  bool hset(std::string_view k, std::string_view f, std::string_view v) {
    int created = 0;
    detail::check(shmd_kv_hset(s_, db_, k.data(), k.size(), f.data(), f.size(), v.data(), v.size(),
                               &created), "shmd_kv_hset");
    return created != 0;
  }
  // ZADD: true when the member is new.
  bool zadd(std::string_view k, double score, std::string_view m) {
    int added = 0;
    detail::check(shmd_kv_zadd(s_, db_, k.data(), k.size(), score, m.data(), m.size(), &added),
                  "shmd_kv_zadd");
    return added != 0;
  }
  std::optional<uint64_t> zrank(std::string_view k, std::string_view m, bool reverse = false) const {
    uint64_t r;
    int rc = shmd_kv_zrank(s_, db_, k.data(), k.size(), m.data(), m.size(), reverse, &r);
    if (rc == SHMD_ENOTFOUND)
      return std::nullopt;
    detail::check(rc, "shmd_kv_zrank");
    return r;
  }
  // Any command, e.g. command({"ZRANGE", "top", "0", "9", "REV", "WITHSCORES"}). Command-level
  // errors (WRONGTYPE, syntax...) are replies with is_error(); a command that could not run at
  // all throws.
  reply command(std::initializer_list<std::string_view> args) const {
    return command(std::vector<std::string_view>(args));
  }
  reply command(const std::vector<std::string_view> &args) const {
    std::vector<const char *> argv;
    std::vector<size_t> lens;
    argv.reserve(args.size());
    lens.reserve(args.size());
    for (auto a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    shmd_reply_t *r = nullptr;
    detail::check(shmd_kv_command_db(s_, db_, static_cast<int>(args.size()), argv.data(), lens.data(), &r),
                  "shmd_kv_command");
    return reply(r);
  }
  shmd_kv_info_t info() const {
    shmd_kv_info_t i;
    detail::check(shmd_kv_info(s_, db_, &i), "shmd_kv_info");
    return i;
  }
  // shmd_kv_check (every database).
  void check() const { detail::check(shmd_kv_check(s_), "shmd_kv_check"); }

 private:
  bool found(int rc, const char *what) {
    if (rc == SHMD_ENOTFOUND)
      return false;
    detail::check(rc, what);
    return true;
  }
  shmd_store_t *s_;
  unsigned db_;
};

keyspace store::kv(unsigned db) const noexcept { return keyspace(s_, db); }

}  // namespace shmd

#endif  // SHMD_HPP
