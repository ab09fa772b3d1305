#pragma once
// Prunes the change log and the audit by age while the server runs.
//
// The store drops the entry that leaves the `retain_changes` window in the same batch as the
// change set that pushes it out, but age (`retain_ms`) and remembered experiment batch ids (a
// day) only go when Store::PruneHistory runs: at start, and then here, every `interval`. A
// run locks one environment at a time, for a batch of at most 1,000 change sets, and stops
// reading its audit at the first entry still kept, so in a steady state it costs a read per
// environment.
//
// Thread safety: constructed and destroyed on one thread; the work runs on a thread of its own.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace gonfalon::storage {
class Store;
}  // namespace gonfalon::storage

namespace gonfalon::server {

class HistoryPruner {
 public:
  // `runs` (metrics) is incremented after each run, `failures` too after a failed one.
  HistoryPruner(storage::Store& store, std::chrono::milliseconds interval, std::atomic<uint64_t>& runs,
                std::atomic<uint64_t>& failures);
  ~HistoryPruner();  // waits for a run in progress
  HistoryPruner(const HistoryPruner&) = delete;
  HistoryPruner& operator=(const HistoryPruner&) = delete;

 private:
  void Loop();

  storage::Store& store_;
  const std::chrono::milliseconds interval_;
  std::atomic<uint64_t>& runs_;
  std::atomic<uint64_t>& failures_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // REQUIRES: mu_
  std::thread thread_;
};

}  // namespace gonfalon::server
