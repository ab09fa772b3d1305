#pragma once
// OrderedList: a snapshot's items in key order, in chunks that snapshots share (internal to
// rules).
//
// A snapshot lists its flags in key order twice (all of them for payloads and lists, the live
// ones for evaluating every flag), 100,000 pointers each at 100,000 flags. Copying both for
// every change set made publishing one small change cost O(n) (measured in the server: ~0.4 ms
// at the median, ~2 ms at p99, on the path an admin write waits for). The list is held as
// chunks of kChunk pointers, each immutable and shared by shared_ptr: a change set that only
// replaces items (an edit of existing flags, the common case) clones just the chunks holding
// them; one that inserts or removes an item rebuilds the list (a flag created, deleted or
// archived). Chunks of 8,192 pointers (64 KB): with 1,024, a burst of writes left the server
// 20-60 MB larger at 100,000 flags (many small clones scattered among long-lived items), and a
// clone of 64 KB is still a few microseconds.
//
// Thread safety: a const OrderedList may be read from any number of threads.

#include <algorithm>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "item_index.h"

namespace gonfalon::rules::internal {

template <typename Node>
class OrderedList {
 public:
  static constexpr size_t kChunk = 8192;

  OrderedList() = default;
  // `nodes` in key order.
  explicit OrderedList(const std::vector<const Node*>& nodes) : size_(nodes.size()) {
    chunks_.reserve((nodes.size() + kChunk - 1) / kChunk);
    for (size_t i = 0; i < nodes.size(); i += kChunk) {
      size_t end = std::min(nodes.size(), i + kChunk);
      chunks_.push_back(std::make_shared<const std::vector<const Node*>>(nodes.begin() + static_cast<std::ptrdiff_t>(i),
                                                                         nodes.begin() + static_cast<std::ptrdiff_t>(end)));
    }
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const Node* operator[](size_t i) const { return (*chunks_[i / kChunk])[i % kChunk]; }

  class const_iterator {
   public:
    const_iterator(const OrderedList* list, size_t i) : list_(list), i_(i) {}
    const Node* operator*() const { return (*list_)[i_]; }
    const_iterator& operator++() {
      ++i_;
      return *this;
    }
    bool operator!=(const const_iterator& o) const { return i_ != o.i_; }
    bool operator==(const const_iterator& o) const { return i_ == o.i_; }

   private:
    const OrderedList* list_;
    size_t i_;
  };
  const_iterator begin() const { return const_iterator(this, 0); }
  const_iterator end() const { return const_iterator(this, size_); }

  std::vector<const Node*> Flat() const {
    std::vector<const Node*> out;
    out.reserve(size_);
    for (const auto& c : chunks_) out.insert(out.end(), c->begin(), c->end());
    return out;
  }

  // The list with the (sorted, unique) `keys` replaced, inserted or removed: each key's node
  // from `index` if it exists there and `keep(node)`. `merge` makes the flat list when the
  // set of keys changes (MergeOrder in snapshot.cc).
  template <typename Keep, typename Merge>
  OrderedList Changed(const std::vector<std::string>& keys, const ItemIndex<Node>& index, Keep keep, Merge merge) const {
    OrderedList out = *this;
    std::vector<std::vector<const Node*>*> cloned(chunks_.size(), nullptr);  // this call's own copies
    for (std::string_view k : keys) {
      const Node* now = index.Find(k);
      bool kept = now != nullptr && keep(*now);
      size_t pos = LowerBound(k);
      bool listed = pos < size_ && std::string_view((*this)[pos]->key()) == k;
      if (listed != kept) return OrderedList(merge(Flat(), keys, index, keep));  // inserted or removed
      if (!kept) continue;
      size_t c = pos / kChunk;
      if (cloned[c] == nullptr) {
        auto copy = std::make_shared<std::vector<const Node*>>(*chunks_[c]);
        cloned[c] = copy.get();
        out.chunks_[c] = std::move(copy);
      }
      (*cloned[c])[pos % kChunk] = now;
    }
    return out;
  }

 private:
  // The position of the first node whose key is not less than `k`.
  size_t LowerBound(std::string_view k) const {
    auto chunk = std::partition_point(chunks_.begin(), chunks_.end(),
                                      [&](const auto& c) { return std::string_view(c->back()->key()) < k; });
    if (chunk == chunks_.end()) return size_;
    auto in = std::lower_bound((*chunk)->begin(), (*chunk)->end(), k,
                               [](const Node* n, std::string_view key) { return std::string_view(n->key()) < key; });
    return static_cast<size_t>(chunk - chunks_.begin()) * kChunk + static_cast<size_t>(in - (*chunk)->begin());
  }

  std::vector<std::shared_ptr<const std::vector<const Node*>>> chunks_;
  size_t size_ = 0;
};

}  // namespace gonfalon::rules::internal
