#include "exposure_recorder.h"

#include "gonfalon/rules/str_cat.h"
#include "log.h"
#include "wall_clock.h"

namespace gonfalon::server {

ExposureRecorder::ExposureRecorder(storage::Store& store, Metrics& metrics, std::chrono::milliseconds interval)
    : store_(store), metrics_(metrics), interval_(interval), thread_([this] { Loop(); }) {}

ExposureRecorder::~ExposureRecorder() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void ExposureRecorder::Record(const std::string& project, const std::string& env, std::string_view flag,
                              const rules::Detail& d, const rules::Context& ctx) {
  if (!d.reason.in_experiment || d.variation_index < 0) return;
  const rules::Context::Single* unit = ctx.Find(d.experiment_kind);
  if (unit == nullptr) return;
  const std::string& key = unit->key.as_string();
  std::string id = StrCat(project, "/", env, "/", flag, "/", d.variation_index, "/", d.experiment_kind, ":", key);
  bool wake = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (count_ >= kCapacity) {  // checked first: `seen_` stays bounded too
      ++metrics_.events_dropped;
      return;
    }
    if (!seen_.insert(std::move(id)).second) return;
    pending_[{project, env}].push_back(
        {std::string(flag), d.variation_index, std::string(d.experiment_kind), key, NowMs(), d.flag_version});
    wake = ++count_ == kFlushAt;
  }
  if (wake) cv_.notify_all();
}

void ExposureRecorder::Flush() {
  std::unique_lock<std::mutex> l(mu_);
  uint64_t want = ++flushes_requested_;
  cv_.notify_all();
  cv_.wait(l, [&] { return flushes_done_ >= want || stop_; });
}

void ExposureRecorder::FlushIfPending() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (count_ == 0) return;
  }
  Flush();
}

void ExposureRecorder::Loop() {
  std::unique_lock<std::mutex> l(mu_);
  while (true) {
    cv_.wait_for(l, interval_, [&] { return stop_ || count_ >= kFlushAt || flushes_requested_ > flushes_done_; });
    uint64_t requested = flushes_requested_;
    bool last = stop_;
    Batches batches = std::move(pending_);
    pending_.clear();
    seen_.clear();
    count_ = 0;
    l.unlock();
    Write(std::move(batches));
    l.lock();
    flushes_done_ = requested;
    cv_.notify_all();
    if (last) return;
  }
}

void ExposureRecorder::Write(Batches batches) {
  for (auto& [where, exposures] : batches) {
    // No batch id: nothing retries these, and each exposure is written once.
    auto r = store_.RecordExperimentBatch(where.first, where.second, "", exposures, {});
    if (!r.ok()) {
      metrics_.events_dropped += exposures.size();
      std::string error(r.status().message());
      Log(LogLevel::kWarn, "server-side exposures dropped",
          {{"project", where.first}, {"environment", where.second}, {"count", static_cast<int64_t>(exposures.size())},
           {"error", error}});
      continue;
    }
    metrics_.events_accepted += exposures.size() - r->refused.size();
    metrics_.events_dropped += r->refused.size();
  }
}

}  // namespace gonfalon::server
