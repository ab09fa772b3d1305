#pragma once
// Exposures the server records itself (DESIGN §8): an OFREP or /sdk/v1/evaluate evaluation that
// comes through an experiment rollout exposes the unit (the key of the kind the rollout buckets
// by) to the variation, so that OpenFeature users in any language get experiment results
// without sending events.
//
// Record() queues the exposure (each (environment, flag, variation, unit) once per interval)
// and returns; a thread of its own joins the queue to the running iterations through
// Store::RecordExperimentBatch, one batch per environment, every `interval` or as soon as
// kFlushAt exposures wait. At most kCapacity wait; more are dropped and counted
// (Metrics::events_dropped). Flush() writes what waits now (tests, shutdown).
//
// Thread safety: every method from any thread.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "gonfalon/rules/context.h"
#include "gonfalon/rules/evaluator.h"
#include "gonfalon/storage/store.h"
#include "metrics.h"

namespace gonfalon::server {

class ExposureRecorder {
 public:
  static constexpr size_t kFlushAt = 5000;
  static constexpr size_t kCapacity = 200000;

  ExposureRecorder(storage::Store& store, Metrics& metrics,
                   std::chrono::milliseconds interval = std::chrono::seconds(1));
  ~ExposureRecorder();  // flushes what waits
  ExposureRecorder(const ExposureRecorder&) = delete;
  ExposureRecorder& operator=(const ExposureRecorder&) = delete;

  // Queues the unit's exposure if `d` came through an experiment rollout; otherwise nothing.
  void Record(const std::string& project, const std::string& env, std::string_view flag, const rules::Detail& d,
              const rules::Context& ctx);
  void Flush();
  // Flush() if anything waits: an events batch calls it first, so that metric events sent right
  // after a server-side evaluation find the unit's exposure.
  void FlushIfPending();

 private:
  using Batches = std::map<std::pair<std::string, std::string>, std::vector<storage::UnitExposure>>;
  void Loop();
  void Write(Batches batches);

  storage::Store& store_;
  Metrics& metrics_;
  const std::chrono::milliseconds interval_;
  std::mutex mu_;
  std::condition_variable cv_;
  Batches pending_;                    // REQUIRES: mu_; by (project, environment)
  std::unordered_set<std::string> seen_;  // REQUIRES: mu_; this interval's exposures
  size_t count_ = 0;                   // REQUIRES: mu_; exposures in pending_
  bool stop_ = false;                  // REQUIRES: mu_
  uint64_t flushes_requested_ = 0;     // REQUIRES: mu_
  uint64_t flushes_done_ = 0;          // REQUIRES: mu_
  std::mutex write_mu_;                // one writer at a time (the loop or Flush)
  std::thread thread_;
};

}  // namespace gonfalon::server
