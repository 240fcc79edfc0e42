// SPDX-License-Identifier: MIT
//
// The C++ side of the benchmark shim (see shim.h): registers C benchmark functions with
// google-benchmark, runs their timed loops, measures the wall time of the timed region for the
// "ns_per_op" counter (and the calling thread's CPU time for "cpu_ns_per_op"), and wraps
// Boost.Interprocess's managed_shared_memory for the boost_ipc baseline. The benchmarks' only
// C++; everything it calls is C.

#include "shim.h"

#include <benchmark/benchmark.h>

#include <boost/interprocess/managed_shared_memory.hpp>
#include <boost/version.hpp>

#include <chrono>
#include <ctime>
#include <cstdio>
#include <exception>
#include <new>
#include <string>

// ------------------------------------------------------------------------------------------------
// Benchmark state.

struct shim_state_s {
  benchmark::State *st;
  std::chrono::steady_clock::time_point since; // start of the current timed stretch
  double wall_ns = 0;                           // timed wall time of finished stretches
  double cpu_since = 0;                         // thread CPU time at the start of the stretch
  double cpu_ns = 0;                            // timed thread CPU time of finished stretches
  bool started = false;                         // the loop has begun
  bool running = false;                         // the shim's clock is running
  double ops = 0;

  explicit shim_state_s(benchmark::State *s) : st(s) {}

  static double thread_cpu_ns() {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
  }
  void clock_start() {
    cpu_since = thread_cpu_ns();
    since = std::chrono::steady_clock::now();
    running = true;
  }
  void clock_stop() {
    if (!running)
      return;
    std::chrono::duration<double, std::nano> d = std::chrono::steady_clock::now() - since;
    wall_ns += d.count();
    cpu_ns += thread_cpu_ns() - cpu_since;
    running = false;
  }
};

namespace {

void run_one(benchmark::State &st, shim_fn_t fn, void *arg) {
  shim_state_s s(&st);
  fn(&s, arg);
  s.clock_stop();
  if (s.ops > 0 && !st.error_occurred()) {
    st.counters["ns_per_op"] = benchmark::Counter(s.wall_ns / s.ops);
    st.counters["cpu_ns_per_op"] = benchmark::Counter(s.cpu_ns / s.ops);
  }
}

} // namespace

extern "C" void shim_register(const char *name, shim_fn_t fn, void *arg) {
  benchmark::RegisterBenchmark(name, [fn, arg](benchmark::State &st) { run_one(st, fn, arg); });
}

extern "C" void shim_context(const char *key, const char *value) {
  benchmark::AddCustomContext(key, value);
}

extern "C" int shim_run(int argc, char **argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv))
    return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

extern "C" uint64_t shim_batch(shim_state_t *s) {
  if (!s->started) {
    s->started = true;
    uint64_t n = static_cast<uint64_t>(s->st->max_iterations);
    if (n > 0 && s->st->KeepRunningBatch(static_cast<benchmark::IterationCount>(n))) {
      s->clock_start();
      return n;
    }
    return 0;
  }
  s->clock_stop();
  // Finishes the run: nothing is left, so this returns false and stops google-benchmark's timer.
  while (s->st->KeepRunningBatch(1)) {
  }
  return 0;
}

extern "C" int shim_keep_running(shim_state_t *s) {
  if (!s->started) {
    s->started = true;
    if (!s->st->KeepRunning())
      return 0;
    s->clock_start();
    return 1;
  }
  if (s->st->KeepRunning())
    return 1;
  s->clock_stop();
  return 0;
}

extern "C" uint64_t shim_iterations(const shim_state_t *s) {
  return static_cast<uint64_t>(s->st->max_iterations);
}

extern "C" void shim_pause(shim_state_t *s) {
  s->clock_stop();
  s->st->PauseTiming();
}

extern "C" void shim_resume(shim_state_t *s) {
  s->st->ResumeTiming();
  s->clock_start();
}

extern "C" void shim_set_ops(shim_state_t *s, double ops) { s->ops = ops; }

extern "C" void shim_counter(shim_state_t *s, const char *name, double value) {
  s->st->counters[name] = benchmark::Counter(value);
}

extern "C" void shim_skip_with_error(shim_state_t *s, const char *msg) {
  s->clock_stop();
  s->st->SkipWithError(msg);
}

// ------------------------------------------------------------------------------------------------
// Boost.Interprocess baseline.

namespace {
namespace bip = boost::interprocess;
bip::managed_shared_memory *bipc_segment;
std::string bipc_name;
} // namespace

extern "C" int bipc_open(const char *name, size_t bytes, char *err, size_t err_len) {
  if (bipc_segment != nullptr) {
    std::snprintf(err, err_len, "a segment is already open");
    return -1;
  }
  try {
    bipc_segment = new bip::managed_shared_memory(bip::create_only, name, bytes);
    bipc_name = name;
    return 0;
  } catch (const bip::interprocess_exception &e) {
    std::snprintf(err, err_len, "managed_shared_memory(%s, %zu): %s", name, bytes, e.what());
    if (e.get_error_code() != bip::already_exists_error)
      bip::shared_memory_object::remove(name); // ours, if created before the failure
  } catch (const std::exception &e) {
    std::snprintf(err, err_len, "managed_shared_memory(%s, %zu): %s", name, bytes, e.what());
    bip::shared_memory_object::remove(name);
  }
  return -1;
}

extern "C" void *bipc_alloc(size_t size) { return bipc_segment->allocate(size, std::nothrow); }

extern "C" void bipc_free(void *p) { bipc_segment->deallocate(p); }

extern "C" void bipc_close(void) {
  if (bipc_segment == nullptr)
    return;
  delete bipc_segment;
  bipc_segment = nullptr;
  bip::shared_memory_object::remove(bipc_name.c_str());
}

extern "C" const char *bipc_version(void) { return BOOST_LIB_VERSION; }
