// Experiment ingestion (DESIGN §8): batches of exposures and metric events joined to their
// units, with per-variation running sums kept in the same write as the unit states, so that
// results cost O(variations × metrics). Key layout: experiment_records.h.
#include <algorithm>
#include <charconv>
#include <map>
#include <utility>

#include "experiment_records.h"
#include "rocks_store.h"
#include "unit_state.h"

namespace gonfalon::storage::internal {

namespace {

// A unit's value for a metric from its events after first exposure.
double UnitValue(const Metric& m, double count, double sum) {
  double v = 0;
  switch (m.kind) {
    case MetricKind::kConversion:
      v = count > 0 ? 1 : 0;
      break;
    case MetricKind::kCount:
      v = count;
      break;
    case MetricKind::kSum:
      v = sum;
      break;
    case MetricKind::kMean:
      v = count > 0 ? sum / count : 0;
      break;
  }
  return m.cap.has_value() ? std::min(v, *m.cap) : v;
}

constexpr int64_t kDayMs = 24LL * 3600 * 1000;

}  // namespace

absl::Status RocksStore::PruneExperimentBatches() {
  // Batch ids are remembered for a day: a client retries a batch within minutes. A batch whose
  // id is still stored is a duplicate and writes nothing, so deleting while batches arrive
  // (the server prunes every hour) cannot drop a record written since the scan read it.
  constexpr int64_t kBatchMemoryMs = 24 * 3600 * 1000;
  int64_t cutoff = Now() - kBatchMemoryMs;
  std::vector<WriteOp> ops;
  // In chunks: a day of batches at a high rate is hundreds of thousands of ids.
  constexpr size_t kChunk = 10000;
  RETURN_IF_ERROR(Scan(kExperiments, "b/", nullptr, [&](std::string_view k, std::string_view v) -> absl::Status {
    int64_t at = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), at);
    if (ec != std::errc() || at < cutoff) ops.push_back(Delete(kExperiments, std::string(k)));
    if (ops.size() == kChunk) RETURN_IF_ERROR(WriteNow(std::exchange(ops, {})));
    return absl::OkStatus();
  }));
  return ops.empty() ? absl::OkStatus() : WriteNow(std::move(ops));
}

absl::StatusOr<std::optional<std::string>> RocksStore::GetExperimentRecord(const std::string& key) {
  auto pending = experiment_overlay_.find(key);
  if (pending != experiment_overlay_.end()) return std::optional<std::string>(pending->second.value);
  return Get(kExperiments, key);
}

void RocksStore::PruneExperimentOverlay() {
  uint64_t oldest_read = experiment_readers_.empty() ? UINT64_MAX : *experiment_readers_.begin();
  while (!experiment_retained_.empty() && experiment_retained_.front().durable_at <= oldest_read) {
    const RetainedBatch& b = experiment_retained_.front();
    for (const std::string& k : b.keys) {
      auto pending = experiment_overlay_.find(k);
      if (pending != experiment_overlay_.end() && pending->second.ticket == b.ticket) experiment_overlay_.erase(pending);
    }
    experiment_retained_.pop_front();
  }
}

absl::StatusOr<ExperimentBatchResult> RocksStore::RecordExperimentBatch(std::string_view project, std::string_view env,
                                                                        std::string_view batch_id,
                                                                        const std::vector<UnitExposure>& exposures,
                                                                        const std::vector<UnitEvent>& events) {
  RETURN_IF_ERROR(CheckWritable());
  std::unique_lock<std::mutex> l(experiments_mu_);
  std::string batch_key = StrCat("b/", project, "/", env, "/", batch_id);
  // Planned under the lock, the units read without it, joined under it again. If the running
  // iterations or metrics changed while the lock was released, the plan is made again, and
  // then read under the lock.
  for (int attempt = 0;; ++attempt) {
    int64_t now = Now();
    if (!batch_id.empty()) {
      ASSIGN_OR_RETURN(auto seen, GetExperimentRecord(batch_key));
      if (seen.has_value()) return ExperimentBatchResult{.duplicate = true};
    }
    // The running iterations of the environment, by flag, and the metrics they use (cached).
    ASSIGN_OR_RETURN(const auto* running, RunningIterations(project, env));
    if (running->empty()) {
      if (!batch_id.empty()) RETURN_IF_ERROR(WriteNow({Put(kExperiments, batch_key, std::to_string(now))}));
      return ExperimentBatchResult{};
    }
    ASSIGN_OR_RETURN(const auto* metrics, MetricsOf(project));
    // Per running iteration: its metrics' definitions by position (null: deleted since).
    struct Running {
      std::string_view flag;
      const Iteration* it;
      std::string unit_prefix;
      std::vector<const Metric*> defs;
      Header* header = nullptr;                      // loaded on first use
      std::vector<std::vector<MetricSums*>> cells;  // [metric][variation], loaded on first use
    };
    std::map<std::string_view, Running> iterations;
    for (const auto& [flag, it] : *running) {
      Running r{flag, &it, UnitPrefix(project, env, flag, it.number), {}};
      for (const std::string& m : it.metrics) {
        auto def = metrics->find(m);
        r.defs.push_back(def == metrics->end() ? nullptr : &def->second);
      }
      r.cells.assign(it.metrics.size(), std::vector<MetricSums*>(it.weights.size(), nullptr));
      iterations.emplace(flag, std::move(r));
    }
    // The working set: unit states, headers and sums read once, written once.
    absl::flat_hash_map<std::string, std::optional<UnitState>> units;
    std::map<std::string, Header> headers;
    std::map<std::string, MetricSums> sums;
    auto json_record = [&](const std::string& key) -> absl::StatusOr<std::optional<Value>> {
      ASSIGN_OR_RETURN(auto text, GetExperimentRecord(key));
      if (!text.has_value()) return std::optional<Value>();
      ASSIGN_OR_RETURN(Value v, ParseStored(kExperiments, key, *text));
      return std::optional<Value>(std::move(v));
    };
    // Which unit each item touches, found once: an exposure's unit in its flag's iteration (empty
    // key: none), and an event's unit in every iteration with a metric on its event key.
    std::vector<std::string> exposure_units(exposures.size());
    for (size_t i = 0; i < exposures.size(); ++i) {
      auto r = iterations.find(exposures[i].flag);
      if (r != iterations.end() && exposures[i].unit_kind == r->second.it->unit_kind) {
        exposure_units[i] = StrCat(r->second.unit_prefix, exposures[i].unit_kind, ":", exposures[i].unit_key);
      }
    }
    struct EventUnit {
      const UnitEvent* event;
      Running* r;
      std::string key;
    };
    std::vector<EventUnit> event_units;
    for (const UnitEvent& ev : events) {
      for (auto& [flag, r] : iterations) {
        bool affected = std::any_of(r.defs.begin(), r.defs.end(), [&](const Metric* m) { return m != nullptr && m->event_key == ev.event_key; });
        auto who = std::find_if(ev.units.begin(), ev.units.end(), [&](const auto& u) { return u.first == r.it->unit_kind; });
        if (affected && who != ev.units.end()) event_units.push_back({&ev, &r, StrCat(r.unit_prefix, who->first, ":", who->second)});
      }
    }
    // Every unit the batch touches (a batch of 1,000 events reads ~1,000), in one MultiGet made
    // without the lock on the first attempt; then, under the lock, what is in the overlay
    // (pending, or durable since the read began) replaces what the read saw.
    std::vector<std::pair<const std::string*, size_t>> wanted;  // key, metric count
    {
      auto want = [&](const std::string& key, size_t metric_count) {
        if (units.emplace(key, std::nullopt).second) wanted.emplace_back(&key, metric_count);
      };
      for (size_t i = 0; i < exposures.size(); ++i) {
        if (!exposure_units[i].empty()) want(exposure_units[i], iterations.find(exposures[i].flag)->second.it->metrics.size());
      }
      for (const EventUnit& eu : event_units) want(eu.key, eu.r->it->metrics.size());
    }
    std::vector<std::string> wanted_keys;
    wanted_keys.reserve(wanted.size());
    for (const auto& w : wanted) wanted_keys.push_back(*w.first);
    absl::StatusOr<std::vector<std::optional<std::string>>> stored;
    if (attempt == 0) {
      uint64_t generation = experiment_cache_generation_;
      auto reader = experiment_readers_.insert(experiment_durable_);
      l.unlock();
      stored = MultiGet(kExperiments, wanted_keys);
      l.lock();
      experiment_readers_.erase(reader);
      if (experiment_cache_generation_ != generation) {
        PruneExperimentOverlay();
        continue;  // planned with iterations or metrics that changed: plan again
      }
      if (!batch_id.empty()) {
        // A batch with the same id may have been enqueued meanwhile.
        ASSIGN_OR_RETURN(auto seen, GetExperimentRecord(batch_key));
        if (seen.has_value()) {
          PruneExperimentOverlay();
          return ExperimentBatchResult{.duplicate = true};
        }
      }
    } else {
      stored = MultiGet(kExperiments, wanted_keys);
    }
    // Overlay records first; then the retained ones this read no longer needs can go.
    absl::Status read = stored.status();
    for (size_t i = 0; read.ok() && i < wanted.size(); ++i) {
      const auto& [key, metric_count] = wanted[i];
      auto pending = experiment_overlay_.find(*key);
      const std::string* value = pending != experiment_overlay_.end() ? &pending->second.value
                                 : (*stored)[i].has_value()            ? &*(*stored)[i]
                                                                       : nullptr;
      if (value == nullptr) continue;
      std::optional<UnitState> u = DecodeUnit(*value, metric_count);
      if (!u.has_value()) {
        read = absl::DataLossError(StrCat("unit state ", Hex(reinterpret_cast<const unsigned char*>(key->data()), key->size()),
                                          " is malformed (", value->size(), " bytes)"));
        break;
      }
      units[*key] = *std::move(u);
    }
    PruneExperimentOverlay();
    RETURN_IF_ERROR(read);
    auto header = [&](const std::string& key, size_t variations) -> absl::StatusOr<Header*> {
      auto it = headers.find(key);
      if (it == headers.end()) {
        ASSIGN_OR_RETURN(auto json, json_record(key));
        it = headers.emplace(key, HeaderFromJson(json, variations)).first;
      }
      return &it->second;
    };
    auto sum = [&](const std::string& key) -> absl::StatusOr<MetricSums*> {
      auto it = sums.find(key);
      if (it == sums.end()) {
        ASSIGN_OR_RETURN(auto json, json_record(key));
        it = sums.emplace(key, SumsFromJson(json)).first;
      }
      return &it->second;
    };
    // The sums of metric i for variation v of an iteration, read once per batch.
    auto cell = [&](Running& r, size_t i, int v) -> absl::StatusOr<MetricSums*> {
      MetricSums*& c = r.cells[i][static_cast<size_t>(v)];
      if (c == nullptr) {
        ASSIGN_OR_RETURN(c, sum(StrCat(Under('s', project, env, r.flag, r.it->number), "/", r.it->metrics[i], "/", v)));
      }
      return c;
    };
    // Adds (sign +1) or removes (-1) a unit's contribution to its variation's sums.
    auto contribute = [&](Running& r, const UnitState& u, double sign) -> absl::Status {
      for (size_t i = 0; i < r.defs.size(); ++i) {
        if (r.defs[i] == nullptr) continue;
        double value = UnitValue(*r.defs[i], u.totals[i].first, u.totals[i].second);
        ASSIGN_OR_RETURN(MetricSums* s, cell(r, i, u.variation));
        s->units += sign;
        s->sum += sign * value;
        s->sum_of_squares += sign * value * value;
      }
      return absl::OkStatus();
    };
    ExperimentBatchResult result;
    for (size_t i = 0; i < exposures.size(); ++i) {
      const UnitExposure& e = exposures[i];
      auto r = iterations.find(e.flag);
      if (r == iterations.end()) continue;
      const Iteration& it = *r->second.it;
      if (e.time_ms < it.started_ms) {
        result.refused.emplace_back(i, StrCat("before iteration ", it.number, " of the experiment started"));
        continue;
      }
      if (e.flag_version != 0 && e.flag_version < it.flag_version) {
        result.refused.emplace_back(i, StrCat("evaluated at flag version ", e.flag_version, ", before iteration ", it.number,
                                              " of the experiment started (version ", it.flag_version, ")"));
        continue;
      }
      if (exposure_units[i].empty() || e.variation < 0 || static_cast<size_t>(e.variation) >= it.weights.size()) {
        continue;  // another unit kind, or a variation the iteration does not have
      }
      std::optional<UnitState>* state = &units.find(exposure_units[i])->second;
      if (r->second.header == nullptr) {
        ASSIGN_OR_RETURN(r->second.header, header(Under('h', project, env, e.flag, it.number), it.weights.size()));
      }
      Header* h = r->second.header;
      if (!state->has_value()) {
        UnitState u;
        u.variation = e.variation;
        u.first_ms = e.time_ms;
        u.totals.resize(it.metrics.size());
        h->units[e.variation] += 1;
        RETURN_IF_ERROR(contribute(r->second, u, +1));
        *state = std::move(u);
      } else if (!(*state)->multiple && (*state)->variation != e.variation) {
        // Seen with two variations: out of the analysis, and counted.
        RETURN_IF_ERROR(contribute(r->second, **state, -1));
        h->units[(*state)->variation] -= 1;
        h->multiple += 1;
        (*state)->multiple = true;
      } else if (!(*state)->multiple && e.time_ms < (*state)->first_ms) {
        (*state)->first_ms = e.time_ms;  // batches may arrive out of order
      }
    }
    for (EventUnit& eu : event_units) {
      const UnitEvent& ev = *eu.event;
      Running& r = *eu.r;
      if (ev.time_ms < r.it->started_ms) continue;
      std::optional<UnitState>& state = units.find(eu.key)->second;
      // Only events after the unit's first exposure count; a unit never exposed is not in it.
      if (!state.has_value() || state->multiple || ev.time_ms < state->first_ms) continue;
      for (size_t i = 0; i < r.defs.size(); ++i) {
        const Metric* m = r.defs[i];
        if (m == nullptr || m->event_key != ev.event_key) continue;
        auto& [count, total] = state->totals[i];
        double before = UnitValue(*m, count, total);
        count += 1;
        total += ev.value;
        double after = UnitValue(*m, count, total);
        ASSIGN_OR_RETURN(MetricSums* s, cell(r, i, state->variation));
        s->sum += after - before;
        s->sum_of_squares += after * after - before * before;
      }
    }
    // The daily series: every iteration this batch touched gets today's record of its whole sums
    // (overwritten by each batch of the day, so it holds the day's last state).
    std::vector<std::pair<std::string, std::string>> days;
    for (auto& [flag, r] : iterations) {
      bool touched = r.header != nullptr;
      for (const auto& per : r.cells) {
        for (MetricSums* c : per) touched = touched || c != nullptr;
      }
      if (!touched) continue;
      if (r.header == nullptr) {
        ASSIGN_OR_RETURN(r.header, header(Under('h', project, env, flag, r.it->number), r.it->weights.size()));
      }
      DaySums day;
      day.units = r.header->units;
      day.multiple_exposures = r.header->multiple;
      for (size_t i = 0; i < r.cells.size(); ++i) {
        day.metrics.emplace_back();
        for (size_t v = 0; v < r.cells[i].size(); ++v) {
          ASSIGN_OR_RETURN(MetricSums* c, cell(r, i, static_cast<int>(v)));
          day.metrics.back().push_back(*c);
        }
      }
      days.emplace_back(StrCat(Under('d', project, env, flag, r.it->number), "/", SeqKey(now - now % kDayMs)), ToJson(DayToJson(day)));
    }
    std::vector<WriteOp> ops;
    ops.reserve(units.size() + headers.size() + sums.size() + days.size() + 1);
    for (auto& [key, json] : days) ops.push_back(Put(kExperiments, std::move(key), std::move(json)));
    // Unit states in key order: RocksDB's memtable inserts each key next to the one inserted
    // before it (the skip list keeps that splice), so sorted keys skip most of the comparisons
    // that ~1,000 keys scattered over the memtable would cost.
    std::vector<std::pair<const std::string*, const UnitState*>> written_units;
    written_units.reserve(units.size());
    for (const auto& [key, state] : units) {
      if (state.has_value()) written_units.emplace_back(&key, &*state);
    }
    std::sort(written_units.begin(), written_units.end(), [](const auto& a, const auto& b) { return *a.first < *b.first; });
    for (const auto& [key, state] : written_units) ops.push_back(Put(kExperiments, *key, EncodeUnit(*state)));
    for (const auto& [key, h] : headers) ops.push_back(Put(kExperiments, key, ToJson(HeaderToJson(h))));
    for (const auto& [key, s] : sums) ops.push_back(Put(kExperiments, key, ToJson(SumsToJson(s))));
    if (!batch_id.empty()) ops.push_back(Put(kExperiments, batch_key, std::to_string(now)));
    // Enqueued in order under experiments_mu_, then committed without it: the next batch reads
    // this one's records from the overlay while this one's fsync runs. The batch is
    // acknowledged only once its own write is durable.
    uint64_t ticket = ++experiment_ticket_;
    std::vector<std::string> keys;
    keys.reserve(ops.size());
    for (const WriteOp& op : ops) {
      keys.push_back(op.key);
      experiment_overlay_[op.key] = PendingRecord{ticket, op.value};
    }
    CommitQueue::Writer w;
    w.ops = std::move(ops);
    queue_.Enqueue(w);
    l.unlock();
    absl::Status written = queue_.Wait(w);
    l.lock();
    if (!written.ok()) {
      for (const std::string& k : keys) {
        auto pending = experiment_overlay_.find(k);
        if (pending != experiment_overlay_.end() && pending->second.ticket == ticket) experiment_overlay_.erase(pending);
      }
      return Poison(written);
    }
    experiment_retained_.push_back({++experiment_durable_, ticket, std::move(keys)});
    PruneExperimentOverlay();
    return result;
  }
}

}  // namespace gonfalon::storage::internal
