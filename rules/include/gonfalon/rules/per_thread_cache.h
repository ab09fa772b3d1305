#pragma once
// PerThreadCache: each thread's few most recent (owner, key) -> value entries, in front of
// shared state that a hot path reads on every call (the snapshot of an environment, a key's
// authentication, a metrics shard) so that the steady state takes no lock and allocates
// nothing. The one per-thread cache of the code base.
//
// Entries are tagged with the owner's instance id, a number never reused within the process
// (NextInstanceId), so an entry of a destroyed owner is never mistaken for a new owner's.
// Eviction is round-robin over kSlots entries; what is evicted is simply made again.
//
// Thread safety: every thread has its own entries; nothing is shared.
//
//   struct ReaderCacheTag;
//   using Readers = PerThreadCache<ReaderCacheTag, char, std::unique_ptr<Reader>, 8>;
//   auto& r = Readers::Get(hub.instance(), [&] { return std::make_unique<Reader>(hub.cell()); });

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <utility>

namespace gonfalon::rules {

// A process-wide unique, never-reused id for an owner of per-thread cache entries.
inline uint64_t NextInstanceId() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

// Tag: a distinct type per cache, so that two caches with the same types do not share slots.
template <typename Tag, typename Key, typename Value, size_t kSlots>
class PerThreadCache {
 public:
  // The calling thread's entry for `owner` whose key satisfies `matches`, or nullptr.
  template <typename Matches>
  static Value* Find(uint64_t owner, Matches matches) {
    for (Entry& e : Slots().entries) {
      if (e.owner == owner && matches(static_cast<const Key&>(e.key))) return &e.value;
    }
    return nullptr;
  }
  // Stores an entry for (owner, key), evicting the oldest slot; returns the stored value.
  static Value& Put(uint64_t owner, Key key, Value value) {
    Table& t = Slots();
    Entry& e = t.entries[t.next++ % kSlots];
    e.owner = owner;
    e.key = std::move(key);
    e.value = std::move(value);
    return e.value;
  }
  // Find, or Put(make()) when absent.
  template <typename Matches, typename Make>
  static Value& Get(uint64_t owner, const Key& key, Matches matches, Make make) {
    if (Value* v = Find(owner, matches)) return *v;
    return Put(owner, key, make());
  }
  // For caches with one value per owner (Key unused): the owner's value, made when absent.
  template <typename Make>
  static Value& Get(uint64_t owner, Make make) {
    return Get(owner, Key{}, [](const Key&) { return true; }, make);
  }

 private:
  struct Entry {
    uint64_t owner = 0;  // 0: empty (instance ids start at 1)
    Key key{};
    Value value{};
  };
  struct Table {
    std::array<Entry, kSlots> entries;
    unsigned next = 0;
  };
  static Table& Slots() {
    thread_local Table table;
    return table;
  }
};

}  // namespace gonfalon::rules
