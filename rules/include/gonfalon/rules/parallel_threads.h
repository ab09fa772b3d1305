#pragma once
// ThreadsParallelFor: the ParallelFor (parallel.h) that the server and the SDK pass to rules.
// The one file of rules that starts threads (the module boundary check allows <thread> here
// and nowhere else in rules); included only where a whole data set is decoded or compiled.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <functional>
#include <thread>
#include <vector>

#include "gonfalon/rules/parallel.h"

namespace gonfalon::rules {

// A ParallelFor on up to `threads` short-lived threads (the caller's included), handing out
// blocks of 64 items; one thread below 512 items, where starting threads does not pay.
inline ParallelFor ThreadsParallelFor(int threads) {
  return [threads](size_t count, const std::function<void(size_t)>& work) {
    size_t n = std::min<size_t>(static_cast<size_t>(std::max(threads, 1)), std::max<size_t>(count / 512, 1));
    std::atomic<size_t> next{0};
    auto run = [&] {
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

}  // namespace gonfalon::rules
