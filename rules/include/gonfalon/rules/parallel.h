#pragma once
// ParallelFor: how rules spreads independent work (decoding or compiling many items). Rules'
// own code never starts a thread: the server and the SDK pass ThreadsParallelFor
// (parallel_threads.h).

#include <cstddef>
#include <functional>

namespace gonfalon::rules {

// Runs work(i) for every i in [0, count), in any order, possibly on several threads at once,
// and returns when all are done. An empty ParallelFor means: one after the other.
using ParallelFor = std::function<void(size_t count, const std::function<void(size_t i)>& work)>;

inline void RunEach(size_t count, const ParallelFor& parallel, const std::function<void(size_t)>& work) {
  if (parallel) {
    parallel(count, work);
  } else {
    for (size_t i = 0; i < count; ++i) work(i);
  }
}

}  // namespace gonfalon::rules
