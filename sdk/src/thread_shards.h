#pragma once
// ThreadShards<Shard>: one Shard per thread that uses its owner. The hot path finds its own
// through the per-thread cache (no lock); a miss (first use, or a thread that uses more owners
// than the cache holds) takes the lock and finds, or makes, the shard of this thread. The
// flusher visits them all with ForEach. Shards live as long as the owner.
//
// Thread safety: every method from any thread.

#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "gonfalon/rules/per_thread_cache.h"

namespace gonfalon::sdk::internal {

template <typename Shard>
class ThreadShards {
 public:
  Shard& ForThisThread() {
    using Cache = rules::PerThreadCache<ThreadShards, char, Shard*, 2>;
    return *Cache::Get(instance_, [&] {
      std::lock_guard<std::mutex> l(mu_);
      std::unique_ptr<Shard>& shard = shards_[std::this_thread::get_id()];
      if (shard == nullptr) shard = std::make_unique<Shard>();
      return shard.get();
    });
  }

  // fn(Shard&) for every shard, holding the lock a new shard takes.
  template <typename Fn>
  void ForEach(Fn fn) {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& [thread, shard] : shards_) fn(*shard);
  }

 private:
  const uint64_t instance_ = rules::NextInstanceId();
  std::mutex mu_;  // guards `shards_`
  std::map<std::thread::id, std::unique_ptr<Shard>> shards_;
};

}  // namespace gonfalon::sdk::internal
