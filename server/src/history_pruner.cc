#include "history_pruner.h"

#include <string>

#include "gonfalon/rules/str_cat.h"
#include "gonfalon/storage/store.h"
#include "log.h"

namespace gonfalon::server {

HistoryPruner::HistoryPruner(storage::Store& store, std::chrono::milliseconds interval, std::atomic<uint64_t>& runs,
                             std::atomic<uint64_t>& failures)
    : store_(store), interval_(interval), runs_(runs), failures_(failures), thread_([this] { Loop(); }) {}

HistoryPruner::~HistoryPruner() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void HistoryPruner::Loop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!cv_.wait_for(l, interval_, [&] { return stop_; })) {
    l.unlock();
    auto start = std::chrono::steady_clock::now();
    absl::Status s = store_.PruneHistory();
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
    if (!s.ok()) {
      // A full disk or a write error: the next run tries again. Nothing is half-pruned: each
      // batch of an environment's prune is one atomic write.
      ++failures_;
      Log(LogLevel::kWarn, "pruning history failed", {{"error", std::string(s.message())}, {"ms", static_cast<int64_t>(ms)}});
    } else if (ms >= 1000) {
      Log(LogLevel::kInfo, "history pruned", {{"ms", static_cast<int64_t>(ms)}});  // long work says so
    }
    ++runs_;
    l.lock();
  }
}

}  // namespace gonfalon::server
