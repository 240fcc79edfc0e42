// SPDX-License-Identifier: MIT
//
// evq_cpp: the C++ event queue (evq.hpp) from the command line, sharing the queue of evq_demo
// (root "evq" of store "evq_demo"): C and C++ processes push and consume on the same queue.
//
//   evq_cpp [-d DIR] [-s STORE] push EVENT...   |   evq_cpp [-d DIR] [-s STORE] poll CONSUMER
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "evq.hpp"

int main(int argc, char **argv) {
  shmd::options opt;
  std::string name = "evq_demo";
  int i = 1;
  for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
    if (!std::strcmp(argv[i], "-d"))
      opt.dir = argv[i + 1];
    else if (!std::strcmp(argv[i], "-s"))
      name = argv[i + 1];
  }
  if (i >= argc) {
    std::fprintf(stderr, "usage: evq_cpp [-d DIR] [-s STORE] push EVENT... | poll CONSUMER\n");
    return 2;
  }
  try {
    shmd::store s = shmd::store::open(name, opt);
    evq::queue q = evq::queue::open(s, "evq", 1024, 16);
    std::string cmd = argv[i++];
    if (cmd == "push") {
      for (; i < argc; i++) {
        auto seq = q.push(argv[i]);
        if (!seq) {
          std::fprintf(stderr, "evq_cpp: queue full (a consumer lags)\n");
          return 1;
        }
        std::printf("%llu\n", (unsigned long long)*seq);
      }
    } else if (cmd == "poll" && i < argc) {
      uint32_t c = (uint32_t)std::strtoul(argv[i], nullptr, 10);
      while (auto ev = q.poll(c))
        std::printf("%llu %s\n", (unsigned long long)ev->first, ev->second.c_str());
    } else {
      std::fprintf(stderr, "evq_cpp: unknown command %s\n", cmd.c_str());
      return 2;
    }
  } catch (const shmd::error &e) {
    std::fprintf(stderr, "evq_cpp: %s\n", e.what());
    return 1;
  }
  return 0;
}
