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

#include <algorithm>
#include <array>
#include <atomic>
#include <ctime>
#include <cstdint>
#include <cstring>
#include <memory>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include "gonfalon/rules/per_thread_cache.h"
#include "thread_shards.h"

namespace gonfalon::sdk::internal {

// Time stamps of SDK events, Unix milliseconds. Exposures (rare: once per unit and interval)
// read the precise clock. Track events (the caller's hot path) read the coarse clock, a few
// nanoseconds instead of ~20, which may lag the precise one by a tick or more (~6 ms measured):
// so that an event tracked after an evaluation is never stamped before its exposure (and
// then not counted), a Track stamp is at least the latest exposure stamp
// (ExposureLog::NotBefore).
inline int64_t PreciseTimeMs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}
inline int64_t CoarseTimeMs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

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
  static constexpr size_t kSets = 1024;  // 4,096 remembered exposures, 32 KiB, per evaluating thread

  explicit ExposureLog(size_t capacity) : capacity_(capacity) {}

  // The hash of a flag key that Record takes (computed once per flag, not per evaluation).
  static uint64_t FlagHash(std::string_view flag) { return Mix(0x243f6a8885a308d3ULL, flag); }

  // On the evaluating thread. `flag_hash` is FlagHash(flag).
  void Record(uint64_t flag_hash, std::string_view flag, int variation, int64_t flag_version, std::string_view unit_kind,
              std::string_view unit_key) {
    uint64_t h = Hash(flag_hash, variation, unit_kind, unit_key);
    Shard& s = shards_.ForThisThread();
    uint64_t interval = interval_.load(std::memory_order_relaxed);
    if (s.interval != interval) {
      std::memset(s.cache.data(), 0, sizeof(uint64_t) * s.cache.size());
      s.interval = interval;
    }
    uint64_t* set = &s.cache[(h % kSets) * kWays];
    if (set[0] == h) return;
    for (size_t w = 1; w < kWays; ++w) {
      if (set[w] == h) {
        for (size_t i = w; i > 0; --i) set[i] = set[i - 1];  // move to front
        set[0] = h;
        return;
      }
    }
    for (size_t i = kWays - 1; i > 0; --i) set[i] = set[i - 1];  // evict the least recently used
    set[0] = h;
    if (pending_.fetch_add(1, std::memory_order_relaxed) >= capacity_) {
      pending_.fetch_sub(1, std::memory_order_relaxed);
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    int64_t now = PreciseTimeMs();
    int64_t latest = latest_ms_.load(std::memory_order_relaxed);
    while (latest < now && !latest_ms_.compare_exchange_weak(latest, now, std::memory_order_relaxed)) {
    }
    std::lock_guard<std::mutex> l(s.mu);
    s.pending.push_back({std::string(flag), variation, flag_version, std::string(unit_kind), std::string(unit_key), now});
  }

  // A time stamp for an event that happens now: the coarse clock, but never before an exposure
  // already recorded.
  int64_t NotBefore() const { return std::max(CoarseTimeMs(), latest_ms_.load(std::memory_order_relaxed)); }

  // On the flusher: everything pending, each (flag, variation, unit) once; starts a new
  // interval. Adds what was dropped since the last call to `dropped`.
  std::vector<UnitExposureEvent> Drain(int64_t& dropped) {
    std::vector<UnitExposureEvent> out;
    {
      shards_.ForEach([&](Shard& s) {
        std::lock_guard<std::mutex> sl(s.mu);
        for (auto& e : s.pending) out.push_back(std::move(e));
        s.pending.clear();
      });
    }
    interval_.fetch_add(1, std::memory_order_relaxed);
    pending_.fetch_sub(out.size(), std::memory_order_relaxed);
    dropped += dropped_.exchange(0, std::memory_order_relaxed);
    // Two threads may each have recorded the same exposure once.
    std::unordered_set<uint64_t> seen;
    size_t kept = 0;
    for (size_t i = 0; i < out.size(); ++i) {
      if (!seen.insert(Hash(FlagHash(out[i].flag), out[i].variation, out[i].unit_kind, out[i].unit_key)).second) continue;
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

  // A 64-bit hash of short strings, inlined: 8 bytes at a time, each step a bijection of the
  // state (xor, odd multiply, xor-shift), so strings of one length that differ in one word
  // never collide. Not for untrusted input (no seed); a collision would only hide one exposure.
  static uint64_t Mix(uint64_t h, std::string_view s) {
    const char* p = s.data();
    size_t n = s.size();
    h ^= n * 0x9e3779b97f4a7c15ULL;
    while (n >= 8) {
      uint64_t w;
      std::memcpy(&w, p, 8);
      h = (h ^ w) * 0xff51afd7ed558ccdULL;
      h ^= h >> 32;
      p += 8;
      n -= 8;
    }
    if (n > 0) {
      // The last 1..7 bytes, every one of them read (overlapping reads), without a byte loop.
      uint64_t w;
      if (n >= 4) {
        uint32_t a, b;
        std::memcpy(&a, p, 4);
        std::memcpy(&b, p + n - 4, 4);
        w = (static_cast<uint64_t>(a) << 32) | b;
      } else {
        w = static_cast<uint64_t>(static_cast<unsigned char>(p[0])) | static_cast<uint64_t>(static_cast<unsigned char>(p[n / 2])) << 8 |
            static_cast<uint64_t>(static_cast<unsigned char>(p[n - 1])) << 16;
      }
      h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
      h ^= h >> 29;
    }
    return h;
  }
  static uint64_t Hash(uint64_t flag_hash, int variation, std::string_view kind, std::string_view key) {
    uint64_t h = Mix(Mix(flag_hash + static_cast<uint64_t>(variation) * 0x51ed27, kind), key);
    h = (h ^ (h >> 31)) * 0x94d049bb133111ebULL;
    h ^= h >> 29;
    return h == 0 ? 1 : h;
  }


  const size_t capacity_;
  std::atomic<uint64_t> interval_{1};
  std::atomic<size_t> pending_{0};
  std::atomic<int64_t> dropped_{0};
  std::atomic<int64_t> latest_ms_{0};  // the latest exposure stamp
  ThreadShards<Shard> shards_;
};

}  // namespace gonfalon::sdk::internal
