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
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"

namespace gonfalon::rules::internal {

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

  const Node* Find(std::string_view key) const {
    absl::string_view k(key.data(), key.size());
    const std::shared_ptr<Shard>& shard = shards_[ShardOf(k)];
    if (shard == nullptr) return nullptr;
    auto it = shard->find(k);
    return it == shard->end() ? nullptr : it->second.get();
  }
  // The shared node, for a snapshot that keeps it.
  std::shared_ptr<const Node> FindShared(std::string_view key) const {
    absl::string_view k(key.data(), key.size());
    const std::shared_ptr<Shard>& shard = shards_[ShardOf(k)];
    if (shard == nullptr) return nullptr;
    auto it = shard->find(k);
    return it == shard->end() ? nullptr : it->second;
  }
  size_t size() const { return size_; }

  // Inserts or replaces the node of node->key().
  void Put(std::shared_ptr<const Node> node) {
    absl::string_view k(node->key().data(), node->key().size());
    Shard& shard = Own(ShardOf(k));
    // Erase first: the stored key views the old node's key, which dies with the old node.
    if (shard.erase(k) == 0) ++size_;
    shard.emplace(k, std::move(node));
  }
  void Erase(std::string_view key) {
    absl::string_view k(key.data(), key.size());
    size_t i = ShardOf(k);
    if (shards_[i] == nullptr || !shards_[i]->contains(k)) return;
    Own(i).erase(k);
    --size_;
  }

 private:
  using Shard = absl::flat_hash_map<absl::string_view, std::shared_ptr<const Node>>;

  static size_t ShardOf(absl::string_view key) {
    // The map hashes the key again with its own seed-mixed low bits; the shard takes high bits.
    return (absl::Hash<absl::string_view>{}(key) >> 40) % kShards;
  }
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
