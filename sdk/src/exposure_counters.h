#pragma once
// The SDK's exposure counters, and what evaluations read (a snapshot with its counters).

#include <atomic>
#include <cstdint>
#include <memory>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "exposure_log.h"
#include "gonfalon/rules/per_thread_cache.h"
#include "gonfalon/rules/snapshot.h"

namespace gonfalon::sdk::internal {

// Exposure counters: one slot per (flag, variation + 1), slot 0 of each flag for "no
// variation" (the caller's default), laid out by flag ordinal (Snapshot::FlagOrdinal). Each
// evaluating thread counts in a shard of its own — a plain relaxed load and store, no locked
// instruction, no shared cache line — and the flusher sends the growth of every shard since it
// last looked. Successive snapshots share one Counters while the layout still fits them (no
// new flag, no changed variation count), so a change costs nothing here.
struct Counters {
  struct Shard {
    explicit Shard(size_t n) : counts(std::make_unique<std::atomic<uint64_t>[]>(n)), reported(n, 0) {}
    std::unique_ptr<std::atomic<uint64_t>[]> counts;  // written by one thread only
    std::vector<uint64_t> reported;                   // the flusher's: what was already sent
  };
  const uint64_t instance = rules::NextInstanceId();  // tells tables apart in per-thread caches
  std::vector<uint32_t> base;     // ordinal_bound() + 1 entries; base[o + 1] ends flag o's slots
  std::vector<std::string> keys;  // by ordinal; "" for none
  std::vector<uint64_t> key_hashes;  // by ordinal: ExposureLog::FlagHash(keys[o])
  size_t slots = 0;
  mutable std::mutex shards_mu;  // guards `shards` (taken once per thread and by the flusher)
  mutable std::map<std::thread::id, std::unique_ptr<Shard>> shards;

  explicit Counters(const rules::Snapshot& snap) {
    const uint32_t bound = snap.ordinal_bound();
    std::vector<uint32_t> sizes(bound, 0);
    keys.resize(bound);
    for (size_t i = 0; i < snap.flag_count(); ++i) {
      const auto& f = snap.flag(i);
      uint32_t o = snap.FlagOrdinal(f);
      sizes[o] = static_cast<uint32_t>(rules::FlagModel(f).variations.size() + 1);
      keys[o] = rules::FlagModel(f).key;
    }
    base.reserve(bound + 1);
    for (uint32_t o = 0; o < bound; ++o) {
      base.push_back(static_cast<uint32_t>(slots));
      slots += sizes[o];
    }
    base.push_back(static_cast<uint32_t>(slots));
    key_hashes.reserve(bound);
    for (const std::string& k : keys) key_hashes.push_back(ExposureLog::FlagHash(k));
  }
  // Whether this layout still fits `snap`, whose flags differ from the snapshot it was made for
  // only in `changed` (a removed flag keeps its slots, unused).
  bool Fits(const rules::Snapshot& snap, const std::vector<std::string>& changed) const {
    if (snap.ordinal_bound() + 1 != base.size()) return false;
    for (const std::string& k : changed) {
      const auto* f = snap.FindFlag(k);
      if (f == nullptr) continue;
      uint32_t o = snap.FlagOrdinal(*f);
      if (keys[o] != k || base[o + 1] - base[o] != rules::FlagModel(*f).variations.size() + 1) return false;
    }
    return true;
  }
  // The calling thread's shard, made on its first use. Called on a per-thread cache miss,
  // which may happen more than once per thread (a thread that uses several clients).
  Shard* ShardOfThisThread() const {
    std::lock_guard<std::mutex> l(shards_mu);
    std::unique_ptr<Shard>& shard = shards[std::this_thread::get_id()];
    if (shard == nullptr) shard = std::make_unique<Shard>(slots);
    return shard.get();
  }
};

// What evaluations read: the snapshot, and the counters (null when events are off).
struct Published {
  std::shared_ptr<const rules::Snapshot> snap;
  std::shared_ptr<const Counters> counters;
};

}  // namespace gonfalon::sdk::internal
