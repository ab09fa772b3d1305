#pragma once
// The SDK's per-unit exposure events (DESIGN §8): which variation each unit (context key of the
// experiment's kind) was served, for the experiment join on the server.
//
// The hot path is an evaluation of an experiment flag, so recording must cost a few
// nanoseconds when the (flag, variation, unit) was already recorded in this flush interval —
// the common case, since a unit evaluates the same flag again and again. Each evaluating
// thread has a shard of its own: a bounded LRU cache of what it recorded (set-associative, 4
// ways, move to front on a hit, the least recently used way evicted), read and written by that
// thread only, with no lock and no atomic read-modify-write. Only an exposure the cache has not
// seen takes the shard's mutex (uncontended but for the flusher) to append to the pending list.
// The flusher drains every shard, removes duplicates across threads exactly, and starts a new
// interval: each shard clears its cache when it sees the interval number change.
//
// Bounded: at most `capacity` exposures pending per flush; more are dropped and counted.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "gonfalon/rules/per_thread_cache.h"

namespace gonfalon::sdk::internal {

struct UnitExposureEvent {
  std::string flag;
  int variation = 0;
  int64_t flag_version = 0;
  std::string unit_kind;
  std::string unit_key;
  int64_t time_ms = 0;
};

class ExposureLog {
 public:
  static constexpr size_t kWays = 4;
  static constexpr size_t kSets = 4096;  // 16,384 remembered exposures per thread

  explicit ExposureLog(size_t capacity) : capacity_(capacity) {}

  // On the evaluating thread.
  void Record(std::string_view flag, int variation, int64_t flag_version, std::string_view unit_kind,
              std::string_view unit_key) {
    uint64_t h = Hash(flag, variation, unit_kind, unit_key);
    Shard& s = ShardForThread();
    uint64_t interval = interval_.load(std::memory_order_relaxed);
    if (s.interval != interval) {
      std::memset(s.cache.data(), 0, sizeof(uint64_t) * s.cache.size());
      s.interval = interval;
    }
    uint64_t* set = &s.cache[(h % kSets) * kWays];
    if (set[0] == h) return;
    for (size_t w = 1; w < kWays; ++w) {
      if (set[w] == h) {
        std::memmove(set + 1, set, w * sizeof(uint64_t));  // move to front
        set[0] = h;
        return;
      }
    }
    std::memmove(set + 1, set, (kWays - 1) * sizeof(uint64_t));  // evict the last used
    set[0] = h;
    if (pending_.fetch_add(1, std::memory_order_relaxed) >= capacity_) {
      pending_.fetch_sub(1, std::memory_order_relaxed);
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch()).count();
    std::lock_guard<std::mutex> l(s.mu);
    s.pending.push_back({std::string(flag), variation, flag_version, std::string(unit_kind), std::string(unit_key), now});
  }

  // On the flusher: everything pending, each (flag, variation, unit) once; starts a new
  // interval. Adds what was dropped since the last call to `dropped`.
  std::vector<UnitExposureEvent> Drain(int64_t& dropped) {
    std::vector<UnitExposureEvent> out;
    {
      std::lock_guard<std::mutex> l(shards_mu_);
      for (auto& s : shards_) {
        std::lock_guard<std::mutex> sl(s->mu);
        for (auto& e : s->pending) out.push_back(std::move(e));
        s->pending.clear();
      }
    }
    interval_.fetch_add(1, std::memory_order_relaxed);
    pending_.fetch_sub(out.size(), std::memory_order_relaxed);
    dropped += dropped_.exchange(0, std::memory_order_relaxed);
    // Two threads may each have recorded the same exposure once.
    std::unordered_set<uint64_t> seen;
    size_t kept = 0;
    for (size_t i = 0; i < out.size(); ++i) {
      if (!seen.insert(Hash(out[i].flag, out[i].variation, out[i].unit_kind, out[i].unit_key)).second) continue;
      if (kept != i) out[kept] = std::move(out[i]);
      ++kept;
    }
    out.resize(kept);
    return out;
  }

 private:
  struct Shard {
    std::array<uint64_t, kSets * kWays> cache{};  // 0: empty (a hash of 0 is made 1)
    uint64_t interval = 0;
    std::mutex mu;  // guards `pending`
    std::vector<UnitExposureEvent> pending;
  };

  static uint64_t Hash(std::string_view flag, int variation, std::string_view kind, std::string_view key) {
    std::hash<std::string_view> hs;
    uint64_t h = hs(key);
    h ^= hs(flag) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h ^= hs(kind) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h = (h ^ static_cast<uint64_t>(variation + 1)) * 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h == 0 ? 1 : h;
  }

  Shard& ShardForThread() {
    struct ExposureShardTag;
    using Shards = rules::PerThreadCache<ExposureShardTag, char, Shard*, 2>;
    return *Shards::Get(instance_, [&] {
      std::lock_guard<std::mutex> l(shards_mu_);
      shards_.push_back(std::make_unique<Shard>());
      return shards_.back().get();
    });
  }

  const uint64_t instance_ = rules::NextInstanceId();
  const size_t capacity_;
  std::atomic<uint64_t> interval_{1};
  std::atomic<size_t> pending_{0};
  std::atomic<int64_t> dropped_{0};
  std::mutex shards_mu_;  // guards `shards_` (taken once per thread and by the flusher)
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace gonfalon::sdk::internal
