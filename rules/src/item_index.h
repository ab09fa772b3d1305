#pragma once
// ItemIndex: a key -> immutable node map that snapshots share (internal to rules).
//
// The keys are split over kShards hash shards, each an immutable map held by shared_ptr.
// Copying an index copies the shard pointers only; Put and Erase then clone just the shards
// they touch (once per copy), so a new snapshot that changes k items costs O(k) map work plus
// one copy of the shard array, whatever the number of items. Keys are views of the nodes'
// own keys (`Node::key()`), so a shard holds no strings of its own.
//
// Thread safety: a const ItemIndex may be read from any number of threads; Put and Erase on
// an index nobody else reads (the snapshot being built).

#include <array>
#include <bitset>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"

namespace gonfalon::rules::internal {

// A key with its hash computed once (at compile time for references): the index picks the
// shard and probes the shard's map with the same hash.
struct HashedKey {
  explicit HashedKey(absl::string_view k) : key(k), hash(absl::Hash<absl::string_view>{}(key)) {}
  explicit HashedKey(std::string_view k) : HashedKey(absl::string_view(k.data(), k.size())) {}
  explicit HashedKey(const std::string& k) : HashedKey(absl::string_view(k)) {}
  explicit HashedKey(const char* k) : HashedKey(absl::string_view(k)) {}
  // `hash` must be what the constructors compute for `k` (kept from an earlier HashedKey).
  static HashedKey WithHash(std::string_view k, size_t hash) { return HashedKey(absl::string_view(k.data(), k.size()), hash); }
  absl::string_view key;
  size_t hash;

 private:
  HashedKey(absl::string_view k, size_t h) : key(k), hash(h) {}
};

template <typename Node>
class ItemIndex {
 public:
  static constexpr size_t kShards = 256;

  ItemIndex() = default;
  ItemIndex(const ItemIndex& other) : shards_(other.shards_), size_(other.size_) {}  // nothing owned yet
  ItemIndex& operator=(const ItemIndex& other) {
    shards_ = other.shards_;
    owned_.reset();
    size_ = other.size_;
    return *this;
  }

  const Node* Find(std::string_view key) const { return Find(HashedKey(key)); }
  const Node* Find(const HashedKey& key) const {
    const std::shared_ptr<Shard>& shard = shards_[ShardOf(key.hash)];
    if (shard == nullptr) return nullptr;
    auto it = shard->find(key);
    return it == shard->end() ? nullptr : it->second.get();
  }
  size_t size() const { return size_; }

  // Inserts or replaces the node of node->key().
  void Put(std::shared_ptr<const Node> node) {
    HashedKey k(node->key());
    Shard& shard = Own(ShardOf(k.hash));
    // Erase first: the stored key views the old node's key, which dies with the old node.
    if (shard.erase(k) == 0) ++size_;
    shard.emplace(k, std::move(node));
  }
  void Erase(std::string_view key) {
    HashedKey k(key);
    size_t i = ShardOf(k.hash);
    if (shards_[i] == nullptr || !shards_[i]->contains(k)) return;
    Own(i).erase(k);
    --size_;
  }

 private:
  // A shard's map keeps each key's hash with it, so that cloning a shard (Own) rehashes no key:
  // at 100,000 flags rehashing a shard's ~400 keys was a third of what applying a change cost
  // the server (docs/performance.md, "Session 20"). A HashedKey probes it without hashing.
  struct KeyHash {
    using is_transparent = void;
    size_t operator()(absl::string_view k) const { return absl::Hash<absl::string_view>{}(k); }
    size_t operator()(const HashedKey& k) const { return k.hash; }
  };
  struct KeyEq {
    using is_transparent = void;
    static absl::string_view View(absl::string_view k) { return k; }
    static absl::string_view View(const HashedKey& k) { return k.key; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const { return View(a) == View(b); }
  };
  using Shard = absl::flat_hash_map<HashedKey, std::shared_ptr<const Node>, KeyHash, KeyEq>;

  static size_t ShardOf(size_t hash) { return (hash >> 40) % kShards; }
  Shard& Own(size_t i) {
    if (!owned_[i]) {
      shards_[i] = shards_[i] == nullptr ? std::make_shared<Shard>() : std::make_shared<Shard>(*shards_[i]);
      owned_[i] = true;
    }
    return *shards_[i];
  }

  std::array<std::shared_ptr<Shard>, kShards> shards_;
  std::bitset<kShards> owned_;  // shards this index cloned and may change
  size_t size_ = 0;
};

}  // namespace gonfalon::rules::internal
