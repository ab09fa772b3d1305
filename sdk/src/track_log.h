// The Track() events of one flush interval, kept as packed records in a growing byte buffer
// per tracking thread: appending one copies a few short strings under that thread's own lock,
// with no allocation once the buffer has grown to the interval's size (it keeps that size for
// the next interval).
#pragma once

#include <cstdint>
#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "gonfalon/rules/context.h"
#include "thread_shards.h"

namespace gonfalon::sdk::internal {

class TrackLog;

// Record layout: a TrackHeader, the event name, then per unit a TrackUnitHeader, its kind,
// its key.
struct TrackHeader {
  int64_t time_ms;
  double value;
  uint32_t event_len;
  uint32_t units;
  uint32_t has_value;
};
struct TrackUnitHeader {
  uint32_t kind_len, key_len;
};

// A byte buffer of packed records.
struct TrackChunk {
  std::unique_ptr<char[]> data;
  size_t cap = 0, used = 0, count = 0;
};

// One interval's records (from every thread), taken by the flusher; read them with Next.
class TrackRecords {
 public:
  struct Record {
    std::string_view event;
    double value = 0;
    bool has_value = false;
    int64_t time_ms = 0;
    uint32_t units = 0;              // the context's kinds, in its order:
    const char* unit_data = nullptr;  // read `units` of them with NextUnit, starting here
  };
  // The (kind, key) at `cursor`, which moves past it.
  static std::pair<std::string_view, std::string_view> NextUnit(const char*& cursor);

  size_t size() const { return count_; }
  // The next record, or false past the last.
  bool Next(Record& r);

 private:
  friend class TrackLog;
  struct Taken {
    void* shard;  // the TrackLog shard the chunk came from (it outlives the records)
    TrackChunk chunk;
  };
  std::vector<Taken> chunks_;
  size_t count_ = 0, chunk_ = 0, read_ = 0;
};

// Appending takes the calling thread's own buffer (found through a per-thread cache) under a
// lock that only the flusher ever contends for; the capacity is shared through one counter.
class TrackLog {
 public:
  explicit TrackLog(size_t capacity) : capacity_(capacity) {}

  // Appends one event unless `capacity` are held (then it is counted as dropped).
  // Returns false when dropped.
  bool Append(std::string_view event, std::optional<double> value, int64_t time_ms, const rules::Context& ctx) {
    if (held_.fetch_add(1, std::memory_order_relaxed) >= capacity_) {
      held_.fetch_sub(1, std::memory_order_relaxed);
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    const auto& kinds = ctx.kinds();
    size_t need = sizeof(TrackHeader) + event.size();
    for (const auto& k : kinds) need += sizeof(TrackUnitHeader) + k.kind.as_string().size() + k.key.as_string().size();
    Shard& s = shards_.ForThisThread();
    std::lock_guard<std::mutex> l(s.mu);
    TrackChunk& c = s.current;
    if (c.used + need > c.cap) Grow(s, c.used + need);
    char* p = c.data.get() + c.used;
    TrackHeader h{time_ms, value.value_or(0), static_cast<uint32_t>(event.size()), static_cast<uint32_t>(kinds.size()),
                  value.has_value() ? 1u : 0u};
    std::memcpy(p, &h, sizeof h);
    p += sizeof h;
    std::memcpy(p, event.data(), event.size());
    p += event.size();
    for (const auto& k : kinds) {
      const std::string& kind = k.kind.as_string();
      const std::string& key = k.key.as_string();
      TrackUnitHeader u{static_cast<uint32_t>(kind.size()), static_cast<uint32_t>(key.size())};
      std::memcpy(p, &u, sizeof u);
      p += sizeof u;
      std::memcpy(p, kind.data(), kind.size());
      p += kind.size();
      std::memcpy(p, key.data(), key.size());
      p += key.size();
    }
    c.used += need;
    ++c.count;
    return true;
  }

  // Everything held. Each thread goes on in the buffer last given back to Recycle (its pages
  // already mapped); a thread that tracked nothing in the interval gives its buffers up.
  TrackRecords Take() {
    TrackRecords out;
    shards_.ForEach([&](Shard& shard) {
      std::lock_guard<std::mutex> l(shard.mu);
      if (shard.current.count == 0) {
        shard.current = TrackChunk{};
        shard.spare = TrackChunk{};
        return;
      }
      out.count_ += shard.current.count;
      out.chunks_.push_back({&shard, std::exchange(shard.current, std::move(shard.spare))});
      shard.spare = TrackChunk{};
    });
    held_.fetch_sub(out.count_, std::memory_order_relaxed);
    return out;
  }

  // Gives a sent interval's buffers back to their threads for the next interval.
  void Recycle(TrackRecords&& sent) {
    for (auto& t : sent.chunks_) {
      Shard& s = *static_cast<Shard*>(t.shard);
      std::lock_guard<std::mutex> l(s.mu);
      if (t.chunk.cap > s.spare.cap) {
        t.chunk.used = t.chunk.count = 0;
        s.spare = std::move(t.chunk);
      }
    }
  }

  // Events refused so far.
  int64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  struct Shard {
    std::mutex mu;  // guards the chunks (the owning thread appends; the flusher takes)
    TrackChunk current, spare;
  };

  static void Grow(Shard& s, size_t need) {
    TrackChunk& c = s.current;
    size_t cap = std::max<size_t>(c.cap * 2, 4096);
    while (cap < need) cap *= 2;
    auto grown = std::make_unique_for_overwrite<char[]>(cap);
    if (c.used > 0) std::memcpy(grown.get(), c.data.get(), c.used);
    c.data = std::move(grown);
    c.cap = cap;
  }


  const size_t capacity_;
  std::atomic<size_t> held_{0};
  std::atomic<int64_t> dropped_{0};
  ThreadShards<Shard> shards_;
};

inline bool TrackRecords::Next(Record& r) {
  while (chunk_ < chunks_.size() && read_ >= chunks_[chunk_].chunk.used) {
    ++chunk_;
    read_ = 0;
  }
  if (chunk_ >= chunks_.size()) return false;
  const char* base = chunks_[chunk_].chunk.data.get();
  const char* p = base + read_;
  TrackHeader h;
  std::memcpy(&h, p, sizeof h);
  p += sizeof h;
  r.event = std::string_view(p, h.event_len);
  p += h.event_len;
  r.value = h.value;
  r.has_value = h.has_value != 0;
  r.time_ms = h.time_ms;
  r.units = h.units;
  r.unit_data = p;
  for (uint32_t i = 0; i < h.units; ++i) {
    TrackUnitHeader u;
    std::memcpy(&u, p, sizeof u);
    p += sizeof u + u.kind_len + u.key_len;
  }
  read_ = static_cast<size_t>(p - base);
  return true;
}

inline std::pair<std::string_view, std::string_view> TrackRecords::NextUnit(const char*& cursor) {
  TrackUnitHeader u;
  std::memcpy(&u, cursor, sizeof u);
  cursor += sizeof u;
  std::string_view kind(cursor, u.kind_len);
  cursor += u.kind_len;
  std::string_view key(cursor, u.key_len);
  cursor += u.key_len;
  return {kind, key};
}

}  // namespace gonfalon::sdk::internal
