#pragma once
// A rules::ParallelFor on `threads` short-lived threads (a whole data set compiled at once).

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "gonfalon/rules/snapshot.h"

namespace gonfalon::sdk::internal {

inline rules::ParallelFor ThreadsParallelFor(int threads) {
  return [threads](size_t count, const std::function<void(size_t)>& work) {
    size_t n = std::min<size_t>(static_cast<size_t>(std::max(threads, 1)), std::max<size_t>(count / 512, 1));
    std::atomic<size_t> next{0};
    auto run = [&] {
      // Blocks of 64 items: few atomic operations, and the threads stay busy to the end.
      for (size_t begin; (begin = next.fetch_add(64)) < count;) {
        for (size_t i = begin; i < std::min(begin + 64, count); ++i) work(i);
      }
    };
    std::vector<std::thread> helpers;
    for (size_t t = 1; t < n; ++t) helpers.emplace_back(run);
    run();
    for (auto& h : helpers) h.join();
  };
}

}  // namespace gonfalon::sdk::internal
