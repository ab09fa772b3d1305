#pragma once
// OrderedList: a snapshot's items in key order, in chunks that snapshots share (internal to
// rules).
//
// A snapshot lists its flags in key order four times (all of them for payloads and lists, the
// live ones for evaluating every flag, those that refer to segments, those with
// prerequisites), 100,000 pointers each at 100,000 flags. Copying them for every change set
// made publishing one small change cost O(n) (measured in the server: ~0.4 ms at the median,
// ~2 ms at p99, on the path an admin write waits for). The list is held as chunks, each
// immutable and shared by shared_ptr; a change set clones only the chunks that hold the items
// it replaces, inserts or removes (a flag created, deleted, archived, or given or stripped of a
// segment rule or a prerequisite). Rebuilding the whole list for an insertion or a removal
// cost 0.1 ms at 100,000 flags with warm caches, and in the server over 1 ms: the 800 KB
// copies were fresh memory, each page a fault (~12 us apiece on this host's virtual machine).
//
// Chunks start at kChunk pointers (64 KB; with 1,024, a burst of writes left the server 20-60
// MB larger at 100,000 flags: many small clones scattered among long-lived items) and are
// split in two past 2 * kChunk; an emptied chunk is dropped, and once the chunks are many for
// the list's size it is laid out again (amortized O(1) per change). Indexing finds the chunk by
// binary search over their start positions (a few dozen at most); iteration walks chunk by
// chunk.
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
  using Chunk = std::vector<const Node*>;

 public:
  static constexpr size_t kChunk = 8192;

  OrderedList() = default;
  // `nodes` in key order.
  explicit OrderedList(const std::vector<const Node*>& nodes) { Layout(nodes); }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const Node* operator[](size_t i) const {
    size_t c = static_cast<size_t>(std::upper_bound(starts_.begin(), starts_.end(), i) - starts_.begin()) - 1;
    return (*chunks_[c])[i - starts_[c]];
  }

  class const_iterator {
   public:
    const_iterator(const OrderedList* list, size_t chunk) : list_(list), chunk_(chunk) {}
    const Node* operator*() const { return (*list_->chunks_[chunk_])[offset_]; }
    const_iterator& operator++() {
      if (++offset_ == list_->chunks_[chunk_]->size()) {
        ++chunk_;
        offset_ = 0;
      }
      return *this;
    }
    bool operator==(const const_iterator& o) const { return chunk_ == o.chunk_ && offset_ == o.offset_; }
    bool operator!=(const const_iterator& o) const { return !(*this == o); }

   private:
    const OrderedList* list_;
    size_t chunk_;
    size_t offset_ = 0;
  };
  const_iterator begin() const { return const_iterator(this, 0); }
  const_iterator end() const { return const_iterator(this, chunks_.size()); }

  std::vector<const Node*> Flat() const {
    std::vector<const Node*> out;
    out.reserve(size_);
    for (const auto& c : chunks_) out.insert(out.end(), c->begin(), c->end());
    return out;
  }

  // The list with the (sorted, unique) `keys` replaced, inserted or removed: each key's node
  // from `index` if it exists there and `keep(node)`. Chunks that hold none of the keys are
  // shared with this list.
  template <typename Keep>
  OrderedList Changed(const std::vector<std::string>& keys, const ItemIndex<Node>& index, Keep keep) const {
    OrderedList out = *this;
    std::vector<Chunk*> owned;  // chunks this call cloned, so a second key there does not clone again
    auto own = [&](size_t c) -> Chunk* {
      for (Chunk* o : owned) {
        if (o == out.chunks_[c].get()) return o;
      }
      auto copy = std::make_shared<Chunk>();
      copy->reserve(out.chunks_[c]->size() + 1);
      copy->assign(out.chunks_[c]->begin(), out.chunks_[c]->end());
      owned.push_back(copy.get());
      out.chunks_[c] = std::move(copy);
      return owned.back();
    };
    for (std::string_view k : keys) {
      const Node* now = index.Find(k);
      bool kept = now != nullptr && keep(*now);
      auto [c, offset] = out.LowerBound(k);
      bool listed = c < out.chunks_.size() && std::string_view((*out.chunks_[c])[offset]->key()) == k;
      if (listed && kept) {
        (*own(c))[offset] = now;
      } else if (listed) {
        Chunk* chunk = own(c);
        chunk->erase(chunk->begin() + static_cast<std::ptrdiff_t>(offset));
        --out.size_;
        if (chunk->empty()) {
          std::erase(owned, chunk);
          out.chunks_.erase(out.chunks_.begin() + static_cast<std::ptrdiff_t>(c));
        }
        out.Restart(c);
      } else if (kept) {
        if (out.chunks_.empty()) {
          out.chunks_.push_back(std::make_shared<Chunk>());
          c = 0;
          offset = 0;
        } else if (c == out.chunks_.size()) {  // after every key: onto the last chunk, or a new one once it is full
          c = out.chunks_.size() - 1;
          offset = out.chunks_[c]->size();
          if (offset >= kChunk) {
            out.chunks_.push_back(std::make_shared<Chunk>());
            ++c;
            offset = 0;
          }
        }
        Chunk* chunk = own(c);
        chunk->insert(chunk->begin() + static_cast<std::ptrdiff_t>(offset), now);
        ++out.size_;
        if (chunk->size() > 2 * kChunk) {
          auto tail = std::make_shared<Chunk>(chunk->begin() + static_cast<std::ptrdiff_t>(kChunk), chunk->end());
          chunk->resize(kChunk);
          owned.push_back(tail.get());
          out.chunks_.insert(out.chunks_.begin() + static_cast<std::ptrdiff_t>(c + 1), std::move(tail));
        }
        out.Restart(c);
      }
    }
    // Many removals leave many small chunks: lay the list out again once they are twice as
    // many as it needs (after at least a chunk's worth of removals since the last layout).
    if (out.chunks_.size() > 2 * (out.size_ / kChunk) + 4) out.Layout(out.Flat());
    return out;
  }

  // How many chunks the two lists share (for tests).
  size_t SharedChunks(const OrderedList& other) const {
    size_t n = 0;
    for (const auto& c : chunks_) {
      for (const auto& o : other.chunks_) n += c == o ? 1 : 0;
    }
    return n;
  }
  size_t chunk_count() const { return chunks_.size(); }

 private:
  void Layout(const std::vector<const Node*>& nodes) {
    chunks_.clear();
    chunks_.reserve((nodes.size() + kChunk - 1) / kChunk);
    for (size_t i = 0; i < nodes.size(); i += kChunk) {
      size_t end = std::min(nodes.size(), i + kChunk);
      chunks_.push_back(std::make_shared<const Chunk>(nodes.begin() + static_cast<std::ptrdiff_t>(i),
                                                      nodes.begin() + static_cast<std::ptrdiff_t>(end)));
    }
    size_ = nodes.size();
    Restart(0);
  }

  // Recomputes the start positions of chunks c and after.
  void Restart(size_t c) {
    starts_.resize(chunks_.size());
    size_t at = c == 0 ? 0 : starts_[c - 1] + chunks_[c - 1]->size();
    for (size_t i = c; i < chunks_.size(); ++i) {
      starts_[i] = at;
      at += chunks_[i]->size();
    }
  }

  // The chunk and offset of the first node whose key is not less than `k`; (chunk count, 0)
  // if there is none.
  std::pair<size_t, size_t> LowerBound(std::string_view k) const {
    auto chunk = std::partition_point(chunks_.begin(), chunks_.end(),
                                      [&](const auto& c) { return std::string_view(c->back()->key()) < k; });
    if (chunk == chunks_.end()) return {chunks_.size(), 0};
    auto in = std::lower_bound((*chunk)->begin(), (*chunk)->end(), k,
                               [](const Node* n, std::string_view key) { return std::string_view(n->key()) < key; });
    return {static_cast<size_t>(chunk - chunks_.begin()), static_cast<size_t>(in - (*chunk)->begin())};
  }

  std::vector<std::shared_ptr<const Chunk>> chunks_;  // none empty
  std::vector<size_t> starts_;                        // starts_[c]: the position of chunks_[c]'s first node
  size_t size_ = 0;
};

}  // namespace gonfalon::rules::internal
