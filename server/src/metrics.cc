#include "metrics.h"

#include "gonfalon/rules/per_thread_cache.h"

#include <cstdio>

#include "gonfalon/rules/str_cat.h"

namespace gonfalon::server {
namespace {
const std::vector<double> kLatencyBounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                            0.01,   0.025,   0.05,   0.1,   0.25,   1,     5};
std::string Num(double d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", d);
  return buf;
}
// Prometheus metric names: [a-zA-Z_:][a-zA-Z0-9_:]*
std::string MetricName(const std::string& s) {
  std::string out;
  for (char c : s) out.push_back((isalnum(static_cast<unsigned char>(c)) || c == '_') ? c : '_');
  return out;
}
std::string LabelValue(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out.append("\\n");
      continue;
    }
    out.push_back(c);
  }
  return out;
}
}  // namespace

void Histogram::Observe(double seconds) {
  size_t i = 0;
  while (i < bounds_.size() && seconds > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += seconds;
  ++count_;
}

void Histogram::Add(const Histogram& other) {
  for (size_t i = 0; i < counts_.size() && i < other.counts_.size(); ++i) counts_[i] += other.counts_[i];
  sum_ += other.sum_;
  count_ += other.count_;
}

void Histogram::Write(const std::string& name, const std::string& labels, std::string& out) const {
  uint64_t cumulative = 0;
  std::string sep = labels.empty() ? "" : ",";
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    StrAppend(&out, name, "_bucket{", labels, sep, "le=\"", Num(bounds_[i]), "\"} ", cumulative, "\n");
  }
  cumulative += counts_.back();
  StrAppend(&out, name, "_bucket{", labels, sep, "le=\"+Inf\"} ", cumulative, "\n");
  std::string braces = labels.empty() ? "" : StrCat("{", labels, "}");
  StrAppend(&out, name, "_sum", braces, " ", Num(sum_), "\n");
  StrAppend(&out, name, "_count", braces, " ", count_, "\n");
}

Metrics::Metrics() : instance_(rules::NextInstanceId()), propagation_({0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}) {}

void Metrics::RecordRequest(const std::string& route, const std::string& method, int status,
                            double seconds) {
  // No allocation once a route has been seen: this runs for every request.
  struct ShardTag;
  using Shards = rules::PerThreadCache<ShardTag, char, unsigned, 2>;
  unsigned shard_index = Shards::Get(instance_, [&] { return next_shard_.fetch_add(1, std::memory_order_relaxed) % kShards; });
  Shard& shard = shards_[shard_index];
  std::lock_guard<std::mutex> l(shard.mu);
  auto it = shard.routes.find(route);
  if (it == shard.routes.end()) it = shard.routes.emplace(route, RouteStats(kLatencyBounds)).first;
  it->second.latency.Observe(seconds);
  AddCount(it->second, method, status, 1);
}

void Metrics::AddCount(RouteStats& r, const std::string& method, int status, uint64_t n) {
  for (auto& [m, st, total] : r.counts) {
    if (st == status && m == method) {
      total += n;
      return;
    }
  }
  r.counts.emplace_back(method, status, n);
}

void Metrics::RecordPropagation(double seconds) {
  std::lock_guard<std::mutex> l(mu_);
  propagation_.Observe(seconds);
}

std::string Metrics::Render() const {
  std::string out;
  auto gauge = [&](const char* name, const char* help, const char* type, double v) {
    StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n", name, " ", Num(v), "\n");
  };
  Routes routes;  // the shards merged
  for (const Shard& shard : shards_) {
    std::lock_guard<std::mutex> l(shard.mu);
    for (const auto& [route, r] : shard.routes) {
      auto it = routes.find(route);
      if (it == routes.end()) it = routes.emplace(route, RouteStats(kLatencyBounds)).first;
      it->second.latency.Add(r.latency);
      for (const auto& [method, status, n] : r.counts) AddCount(it->second, method, status, n);
    }
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    out += "# HELP gonfalon_http_requests_total HTTP requests by route, method and status.\n";
    out += "# TYPE gonfalon_http_requests_total counter\n";
    for (const auto& [route, r] : routes) {
      for (const auto& [method, status, n] : r.counts) {
        StrAppend(&out, "gonfalon_http_requests_total{route=\"", LabelValue(route), "\",method=\"",
                  LabelValue(method), "\",status=\"", status, "\"} ", n, "\n");
      }
    }
    out += "# HELP gonfalon_http_request_duration_seconds Time to handle a request, by route.\n";
    out += "# TYPE gonfalon_http_request_duration_seconds histogram\n";
    for (const auto& [route, r] : routes) {
      r.latency.Write("gonfalon_http_request_duration_seconds", StrCat("route=\"", LabelValue(route), "\""), out);
    }
    out += "# HELP gonfalon_change_propagation_seconds From a change set's commit to its event being queued on every stream.\n";
    out += "# TYPE gonfalon_change_propagation_seconds histogram\n";
    propagation_.Write("gonfalon_change_propagation_seconds", "", out);
  }
  gauge("gonfalon_evaluations_total", "Flag evaluations served.", "counter", static_cast<double>(evaluations.load()));
  gauge("gonfalon_open_streams", "Open SSE streams (SDK and OFREP).", "gauge", static_cast<double>(open_streams.load()));
  gauge("gonfalon_open_connections", "Open HTTP connections.", "gauge", static_cast<double>(open_connections.load()));
  gauge("gonfalon_streams_dropped_slow_total", "Streams disconnected because the client fell behind.", "counter",
        static_cast<double>(streams_dropped_slow.load()));
  gauge("gonfalon_stream_backlog_bytes_sent_total",
        "Bytes written to streams from their queues, after their sockets had not taken them at once.", "counter",
        static_cast<double>(stream_backlog_bytes_sent.load()));
  gauge("gonfalon_sdk_events_accepted_total", "SDK exposure and metric events accepted.", "counter",
        static_cast<double>(events_accepted.load()));
  gauge("gonfalon_sdk_events_dropped_total", "SDK events rejected or dropped.", "counter",
        static_cast<double>(events_dropped.load()));
  gauge("gonfalon_scheduled_changes_applied_total", "Scheduled changes the scheduler applied.", "counter",
        static_cast<double>(scheduled_applied.load()));
  gauge("gonfalon_scheduled_changes_failed_total", "Scheduled changes that failed when due (conflict, invalid).", "counter",
        static_cast<double>(scheduled_failed.load()));
  gauge("gonfalon_release_guard_rollbacks_total", "Release plans a guard rolled back.", "counter",
        static_cast<double>(guard_rollbacks.load()));
  gauge("gonfalon_release_guard_pauses_total", "Release plans a guard paused.", "counter", static_cast<double>(guard_pauses.load()));
  gauge("gonfalon_release_guard_notifications_total", "Guards that fired with action notify (once per stage).", "counter",
        static_cast<double>(guard_notifications.load()));
  gauge("gonfalon_webhook_deliveries_total", "Webhook deliveries a receiver accepted.", "counter",
        static_cast<double>(webhooks_delivered.load()));
  gauge("gonfalon_webhook_failures_total", "Webhook deliveries that failed every attempt.", "counter",
        static_cast<double>(webhooks_failed.load()));
  gauge("gonfalon_webhook_dropped_total", "Webhook deliveries dropped because the queue was full.", "counter",
        static_cast<double>(webhooks_dropped.load()));
  gauge("gonfalon_change_sets_published_total", "Change sets published to snapshots and streams.", "counter",
        static_cast<double>(change_sets_published.load()));
  gauge("gonfalon_stream_fan_outs_total",
        "Rounds of sends to an environment's streams (change sets published meanwhile share one).", "counter",
        static_cast<double>(stream_fan_outs.load()));
  gauge("gonfalon_stream_fan_outs_deferred_total",
        "Publications whose sending to the streams waited for the admin writes in progress to be answered.",
        "counter", static_cast<double>(stream_fan_outs_deferred.load()));
  gauge("gonfalon_environment_loads_total", "Whole environments read from storage and compiled (first use and repairs).",
        "counter", static_cast<double>(environment_loads.load()));
  gauge("gonfalon_environment_repairs_total",
        "Whole-environment reloads because a change set could not be applied incrementally.", "counter",
        static_cast<double>(environment_repairs.load()));
  gauge("gonfalon_change_log_reads_total",
        "Publications that read committed change sets back from storage (the ones in memory had a gap).", "counter",
        static_cast<double>(change_log_reads.load()));
  gauge("gonfalon_memory_trims_total",
        "Times free heap was handed back to the system (after large request bodies and bursts of change sets).",
        "counter", static_cast<double>(memory_trims.load()));
  gauge("gonfalon_history_prunes_total", "Periodic runs pruning the change log and audit by age (--prune-interval-seconds), failed ones included.",
        "counter", static_cast<double>(history_prunes.load()));
  gauge("gonfalon_history_prune_failures_total", "Periodic history prunes that failed (retried at the next run).", "counter",
        static_cast<double>(history_prune_failures.load()));
  if (gauges_) {
    for (const auto& [name, v] : gauges_()) {
      std::string n = "gonfalon_storage_" + MetricName(name);
      gauge(n.c_str(), ("Storage figure " + name + ".").c_str(), "gauge", static_cast<double>(v));
    }
  }
  return out;
}

}  // namespace gonfalon::server
