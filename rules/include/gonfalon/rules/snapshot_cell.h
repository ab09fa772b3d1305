#pragma once
// SnapshotCell: where the current Snapshot of an environment is published (DESIGN §5).
//
// One writer publishes complete snapshots; any number of readers evaluate against them. A
// reader keeps a SnapshotCell::Reader (one per thread or per session): in the steady state
// Get() is one acquire load of a version counter and no reference-count traffic; only after a
// publish does it take the cell's short lock once to pick up the new pointer. A publish holds
// that lock just for a pointer swap (the old snapshot is released outside it), so publishing
// never makes an evaluation wait for compilation or I/O. Old snapshots are freed when their
// last reader moves on.
//
// This is the one place in rules that knows about threads; it uses no clock or I/O.
//
// Thread safety: Publish from one thread at a time; Load and Reader::Get from any thread
// (each Reader object from one thread at a time).
//
//   SnapshotCell cell;
//   cell.Publish(Snapshot::Build(env));
//   thread_local SnapshotCell::Reader reader(cell);
//   const Snapshot* snap = reader.Get();

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "gonfalon/rules/snapshot.h"

namespace gonfalon::rules {

// The cell holds any immutable published value; SnapshotCell is the usual one.
template <typename T>
class PublishedCell {
 public:
  void Publish(std::shared_ptr<const T> snapshot) {
    std::shared_ptr<const T> old;
    {
      std::lock_guard<std::mutex> l(mu_);
      old = std::move(current_);
      current_ = std::move(snapshot);
      version_.fetch_add(1, std::memory_order_release);
    }
    // `old` is released here, outside the lock.
  }

  std::shared_ptr<const T> Load() const {
    std::lock_guard<std::mutex> l(mu_);
    return current_;
  }

  uint64_t version() const { return version_.load(std::memory_order_acquire); }

  class Reader {
   public:
    explicit Reader(const PublishedCell& cell) : cell_(&cell) {}
    // The current snapshot, or nullptr before the first publish. Valid until the next Get().
    const T* Get() {
      uint64_t v = cell_->version();
      if (v != seen_) {
        cached_ = cell_->Load();
        seen_ = v;
      }
      return cached_.get();
    }
    // Shared ownership, for results that must outlive the next Get().
    const std::shared_ptr<const T>& Shared() {
      Get();
      return cached_;
    }

   private:
    const PublishedCell* cell_;
    uint64_t seen_ = ~uint64_t{0};
    std::shared_ptr<const T> cached_;
  };

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const T> current_;  // REQUIRES: mu_ held
  std::atomic<uint64_t> version_{0};
};

using SnapshotCell = PublishedCell<Snapshot>;

}  // namespace gonfalon::rules
