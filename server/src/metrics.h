#pragma once
// Server metrics in Prometheus text format (GET /metrics).

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <tuple>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace gonfalon::server {

class Histogram {
 public:
  // Upper bounds in seconds.
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}
  void Observe(double seconds);
  void Add(const Histogram& other);  // same bounds
  void Write(const std::string& name, const std::string& labels, std::string& out) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // guarded by the owner's mutex
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  Metrics();
  void RecordRequest(const std::string& route, const std::string& method, int status, double seconds);
  void RecordPropagation(double seconds);

  std::atomic<uint64_t> evaluations{0};
  std::atomic<int64_t> open_streams{0};
  std::atomic<int64_t> open_connections{0};
  std::atomic<uint64_t> streams_dropped_slow{0};
  // Bytes written from slow streams' queues (what their sockets did not take at once).
  std::atomic<uint64_t> stream_backlog_bytes_sent{0};
  std::atomic<uint64_t> events_accepted{0};
  std::atomic<uint64_t> events_dropped{0};
  std::atomic<uint64_t> change_sets_published{0};
  std::atomic<uint64_t> stream_fan_outs{0};  // rounds of sends to an environment's streams
  // Publications whose fan-out waited for the admin writes in progress to be answered
  // (Hubs::WriteScope).
  std::atomic<uint64_t> stream_fan_outs_deferred{0};
  // Whole environments read from storage: at first use, and to repair (hub.h).
  std::atomic<uint64_t> environment_loads{0};
  std::atomic<uint64_t> environment_repairs{0};
  std::atomic<uint64_t> change_log_reads{0};
  // Scheduled changes run by the scheduler (scheduler.h), by outcome.
  std::atomic<uint64_t> scheduled_applied{0};
  std::atomic<uint64_t> scheduled_failed{0};
  // Release plan guards that fired (release_guards.h), by what they did.
  std::atomic<uint64_t> guard_rollbacks{0};
  std::atomic<uint64_t> guard_pauses{0};
  std::atomic<uint64_t> guard_notifications{0};
  // Webhook deliveries (webhooks.h): delivered, failed after every attempt, dropped (queue full).
  std::atomic<uint64_t> webhooks_delivered{0};
  std::atomic<uint64_t> webhooks_failed{0};
  std::atomic<uint64_t> webhooks_dropped{0};
  // Free heap handed back to the system (memory_trimmer.h).
  std::atomic<uint64_t> memory_trims{0};
  // Runs of the history pruner (history_pruner.h), and those that failed.
  std::atomic<uint64_t> history_prunes{0};
  std::atomic<uint64_t> history_prune_failures{0};

  // Extra gauges read at scrape time (RocksDB figures).
  void SetGaugeSource(std::function<std::vector<std::pair<std::string, int64_t>>()> source) {
    gauges_ = std::move(source);
  }
  std::string Render() const;

 private:
  struct RouteStats {
    explicit RouteStats(std::vector<double> bounds) : latency(std::move(bounds)) {}
    Histogram latency;
    std::vector<std::tuple<std::string, int, uint64_t>> counts;  // method, status, n (few entries)
  };
  using Routes = std::map<std::string, RouteStats, std::less<>>;
  // Adds n to the (method, status) count of a route.
  static void AddCount(RouteStats& r, const std::string& method, int status, uint64_t n);
  // Requests are recorded in one shard per I/O thread (threads take shards round-robin), so
  // that two threads rarely contend for a lock; Render() merges the shards.
  struct alignas(64) Shard {
    mutable std::mutex mu;
    Routes routes;  // REQUIRES: mu
  };
  static constexpr unsigned kShards = 4;
  Shard shards_[kShards];
  std::atomic<unsigned> next_shard_{0};
  const uint64_t instance_;  // tells Metrics objects apart in the per-thread shard cache
  mutable std::mutex mu_;
  Histogram propagation_;  // REQUIRES: mu_
  std::function<std::vector<std::pair<std::string, int64_t>>()> gauges_;
};

}  // namespace gonfalon::server
