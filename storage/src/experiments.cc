// Experiments (DESIGN §8): metric definitions, iterations, and the join of exposures and
// metric events to units, with per-variation running sums kept in the same write as the unit
// states, so that results cost O(variations × metrics).
//
// Keys in the `experiments` column family:
//   m/{p}/{metric}                                  metric definition
//   i/{p}/{e}/{flag}/{n:016x}                       iteration n
//   h/{p}/{e}/{flag}/{n:016x}                       {"units":[per variation],"multiple":k}
//   s/{p}/{e}/{flag}/{n:016x}/{metric}/{variation}  [units, sum, sum of squares]
//   u/{p}/{e}/{iteration id}{kind}:{key}            a unit (binary, UnitState), iteration id =
//                                                   8 bytes of a hash of "{flag}/{n}": short keys
//                                                   keep the memtable's comparisons cheap
//   d/{p}/{e}/{flag}/{n:016x}/{day:016x}            the sums at the end of a UTC day (DaySums)
//   b/{p}/{e}/{batch id}                            time the batch was applied (pruned after a day)
// Everything of a project (environment) is under "{x}/{p}/" ("{x}/{p}/{e}/"), deleted with it.
#include <algorithm>
#include <charconv>
#include <cstring>
#include <map>

#include "rocks_store.h"
#include "unit_state.h"

namespace gonfalon::storage::internal {

namespace {

std::string IterationPrefix(std::string_view p, std::string_view e, std::string_view flag) {
  return StrCat("i/", p, "/", e, "/", flag, "/");
}
std::string Under(char kind, std::string_view p, std::string_view e, std::string_view flag, int64_t n) {
  return StrCat(std::string(1, kind), "/", p, "/", e, "/", flag, "/", SeqKey(n));
}

Value IterationToJson(const Iteration& it) {
  Array metrics, weights;
  for (const auto& m : it.metrics) metrics.emplace_back(m);
  for (double w : it.weights) weights.emplace_back(w);
  Value v(Object{{"number", Value(it.number)}, {"startedMs", Value(it.started_ms)}, {"endedMs", Value(it.ended_ms)},
                 {"control", Value(it.control)}, {"metrics", Value(std::move(metrics))},
                 {"weights", Value(std::move(weights))}, {"unitKind", Value(it.unit_kind)}});
  if (it.archived_ms != 0) v.Set("archivedMs", Value(it.archived_ms));
  if (it.flag_version != 0) v.Set("flagVersion", Value(it.flag_version));
  return v;
}

absl::StatusOr<Iteration> IterationFromJson(const Value& v) {
  Iteration it;
  RETURN_IF_ERROR(rules::GetInt64(v, "number", "", it.number));
  RETURN_IF_ERROR(rules::GetInt64(v, "startedMs", "", it.started_ms));
  RETURN_IF_ERROR(rules::GetInt64(v, "flagVersion", "", it.flag_version));
  RETURN_IF_ERROR(rules::GetInt64(v, "endedMs", "", it.ended_ms));
  RETURN_IF_ERROR(rules::GetInt(v, "control", "", it.control));
  RETURN_IF_ERROR(rules::GetStrings(v, "metrics", "", it.metrics));
  RETURN_IF_ERROR(rules::GetString(v, "unitKind", "", it.unit_kind));
  RETURN_IF_ERROR(rules::GetInt64(v, "archivedMs", "", it.archived_ms));  // absent: 0
  ASSIGN_OR_RETURN(const Array* weights, rules::GetArray(v, "weights", ""));
  if (weights != nullptr) {
    for (const Value& w : *weights) it.weights.push_back(w.as_number());
  }
  return it;
}

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

// 8 bytes that name an iteration in unit keys: FNV-1a 64 of "{flag}/{n}", big-endian.
std::string IterationId(std::string_view flag, int64_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : StrCat(flag, "/", n)) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(h >> (56 - 8 * i));
  return out;
}

std::string UnitPrefix(std::string_view p, std::string_view e, std::string_view flag, int64_t n) {
  return StrCat("u/", p, "/", e, "/", IterationId(flag, n));
}

// An iteration's header: units exposed to one variation only, per variation, and the units
// exposed to several.
struct Header {
  std::vector<int64_t> units;
  int64_t multiple = 0;
};

Header HeaderFromJson(const std::optional<Value>& json, size_t variations) {
  Header h{std::vector<int64_t>(variations, 0), 0};
  if (!json.has_value()) return h;
  if (const Value* u = json->Find("units"); u != nullptr && u->is_array()) {
    for (size_t i = 0; i < u->as_array().size() && i < variations; ++i) h.units[i] = static_cast<int64_t>(u->as_array()[i].as_number());
  }
  if (const Value* m = json->Find("multiple")) h.multiple = static_cast<int64_t>(m->as_number());
  return h;
}

Value HeaderToJson(const Header& h) {
  Array counts;
  for (int64_t c : h.units) counts.emplace_back(c);
  return Value(Object{{"units", Value(std::move(counts))}, {"multiple", Value(h.multiple)}});
}

// One metric's sums for one variation: [units, sum, sum of squares]; zero when absent.
MetricSums SumsFromJson(const std::optional<Value>& json) {
  if (!json.has_value() || !json->is_array() || json->as_array().size() != 3) return {};
  return {json->as_array()[0].as_number(), json->as_array()[1].as_number(), json->as_array()[2].as_number()};
}

Value SumsToJson(const MetricSums& s) { return Value(Array{Value(s.units), Value(s.sum), Value(s.sum_of_squares)}); }

// {"units":[...],"multiple":k,"sums":[per metric [per variation [units, sum, sum of squares]]]}
Value DayToJson(const DaySums& d) {
  Array units, metrics;
  for (int64_t u : d.units) units.emplace_back(u);
  for (const auto& per : d.metrics) {
    Array row;
    for (const MetricSums& m : per) row.push_back(SumsToJson(m));
    metrics.emplace_back(std::move(row));
  }
  return Value(Object{{"units", Value(std::move(units))}, {"multiple", Value(d.multiple_exposures)}, {"sums", Value(std::move(metrics))}});
}

DaySums DayFromJson(const Value& v, int64_t day_ms, size_t variations, size_t metrics) {
  DaySums d;
  d.day_ms = day_ms;
  Header h = HeaderFromJson(v, variations);
  d.units = std::move(h.units);
  d.multiple_exposures = h.multiple;
  d.metrics.assign(metrics, std::vector<MetricSums>(variations));
  const Value* sums = v.Find("sums");
  if (sums == nullptr || !sums->is_array()) return d;
  for (size_t m = 0; m < metrics && m < sums->as_array().size(); ++m) {
    const Value& per = sums->as_array()[m];
    if (!per.is_array()) continue;
    for (size_t x = 0; x < variations && x < per.as_array().size(); ++x) d.metrics[m][x] = SumsFromJson(per.as_array()[x]);
  }
  return d;
}

constexpr int64_t kDayMs = 24LL * 3600 * 1000;

}  // namespace

absl::Status RocksStore::PruneExperimentBatches() {
  // Batch ids are remembered for a day: a client retries a batch within minutes.
  constexpr int64_t kBatchMemoryMs = 24 * 3600 * 1000;
  int64_t cutoff = Now() - kBatchMemoryMs;
  std::vector<WriteOp> ops;
  RETURN_IF_ERROR(Scan(kExperiments, "b/", nullptr, [&](std::string_view k, std::string_view v) {
    int64_t at = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), at);
    if (ec != std::errc() || at < cutoff) ops.push_back(Delete(kExperiments, std::string(k)));
    return absl::OkStatus();
  }));
  return ops.empty() ? absl::OkStatus() : WriteNow(std::move(ops));
}

absl::StatusOr<Metric> RocksStore::PutMetric(std::string_view project, const Metric& in) {
  RETURN_IF_ERROR(CheckWritable());
  RETURN_IF_ERROR(ValidateKey(in.key, "key"));
  RETURN_IF_ERROR(ValidateKey(in.event_key, "eventKey"));
  if (in.cap.has_value() && !(*in.cap >= 0)) return rules::InvalidField("capValue", "expected a number >= 0");
  std::lock_guard<std::mutex> l(experiments_mu_);
  RETURN_IF_ERROR(GetProject(project).status());
  std::string key = StrCat("m/", project, "/", in.key);
  ASSIGN_OR_RETURN(auto existing, GetJson(kExperiments, key));
  Metric m = in;
  m.version = 1;
  m.created_ms = Now();
  if (existing.has_value()) {
    ASSIGN_OR_RETURN(Metric old, Decoded(MetricFromJson(*existing), kExperiments, key));
    m.version = old.version + 1;
    m.created_ms = old.created_ms;
  }
  if (m.name.empty()) m.name = m.key;
  metrics_cache_.erase(std::string(project));
  ++experiment_cache_generation_;
  RETURN_IF_ERROR(WriteNow({Put(kExperiments, key, ToJson(MetricToJson(m)))}));
  return m;
}

absl::StatusOr<std::vector<Metric>> RocksStore::ListMetrics(std::string_view project) {
  RETURN_IF_ERROR(GetProject(project).status());
  return ScanDecoded<Metric>(kExperiments, StrCat("m/", project, "/"), MetricFromJson);
}

absl::Status RocksStore::DeleteMetric(std::string_view project, std::string_view key) {
  RETURN_IF_ERROR(CheckWritable());
  std::lock_guard<std::mutex> l(experiments_mu_);
  std::string k = StrCat("m/", project, "/", key);
  ASSIGN_OR_RETURN(auto existing, Get(kExperiments, k));
  if (!existing.has_value()) return absl::NotFoundError(StrCat("metric \"", key, "\" does not exist in project \"", project, "\""));
  metrics_cache_.erase(std::string(project));
  ++experiment_cache_generation_;
  return WriteNow({Delete(kExperiments, k)});
}

absl::StatusOr<std::vector<Iteration>> RocksStore::ListIterations(std::string_view project, std::string_view env,
                                                                  std::string_view flag) {
  RETURN_IF_ERROR(GetFlag(project, env, flag).status());
  return ScanDecoded<Iteration>(kExperiments, IterationPrefix(project, env, flag), IterationFromJson);
}

absl::StatusOr<Iteration> RocksStore::StartIteration(std::string_view project, std::string_view env,
                                                     std::string_view flag, const Iteration& spec) {
  RETURN_IF_ERROR(CheckWritable());
  std::lock_guard<std::mutex> l(experiments_mu_);
  ASSIGN_OR_RETURN(rules::Flag f, GetFlag(project, env, flag));
  size_t n = f.variations.size();
  if (spec.control < 0 || static_cast<size_t>(spec.control) >= n) {
    return rules::InvalidField("control", StrCat("variation ", spec.control, " does not exist (the flag has ", n, " variations)"));
  }
  if (spec.weights.size() != n) {
    return rules::InvalidField("weights", StrCat("expected one weight per variation (", n, "), got ", spec.weights.size()));
  }
  for (size_t i = 0; i < n; ++i) {
    if (!(spec.weights[i] >= 0)) return rules::InvalidField(StrCat("weights[", i, "]"), "expected a number >= 0");
  }
  if (spec.metrics.empty()) return rules::InvalidField("metrics", "an experiment needs at least one metric");
  ASSIGN_OR_RETURN(std::vector<Metric> defined, ListMetrics(project));
  for (size_t i = 0; i < spec.metrics.size(); ++i) {
    bool known = std::any_of(defined.begin(), defined.end(), [&](const Metric& m) { return m.key == spec.metrics[i]; });
    if (!known) return rules::FieldError(absl::StatusCode::kNotFound, StrCat("metrics[", i, "]"), StrCat("no metric \"", spec.metrics[i], "\""));
  }
  RETURN_IF_ERROR(ValidateKey(spec.unit_kind, "unitKind"));
  ASSIGN_OR_RETURN(std::vector<Iteration> all, ScanDecoded<Iteration>(kExperiments, IterationPrefix(project, env, flag), IterationFromJson));
  std::vector<WriteOp> ops;
  int64_t now = Now();
  if (!all.empty() && all.back().ended_ms == 0) {
    Iteration running = all.back();
    running.ended_ms = now;
    ops.push_back(Put(kExperiments, Under('i', project, env, flag, running.number), ToJson(IterationToJson(running))));
  }
  Iteration it = spec;
  it.number = all.empty() ? 1 : all.back().number + 1;
  it.started_ms = now;
  it.ended_ms = 0;
  ops.push_back(Put(kExperiments, Under('i', project, env, flag, it.number), ToJson(IterationToJson(it))));
  running_cache_.erase(StrCat(project, "/", env));
  ++experiment_cache_generation_;
  RETURN_IF_ERROR(WriteNow(std::move(ops)));
  return it;
}

absl::StatusOr<Iteration> RocksStore::StopIteration(std::string_view project, std::string_view env,
                                                    std::string_view flag) {
  RETURN_IF_ERROR(CheckWritable());
  std::lock_guard<std::mutex> l(experiments_mu_);
  ASSIGN_OR_RETURN(std::vector<Iteration> all, ListIterations(project, env, flag));
  if (all.empty() || all.back().ended_ms != 0) {
    return absl::FailedPreconditionError(StrCat("flag \"", flag, "\" has no running experiment iteration"));
  }
  Iteration it = all.back();
  it.ended_ms = Now();
  running_cache_.erase(StrCat(project, "/", env));
  ++experiment_cache_generation_;
  RETURN_IF_ERROR(WriteNow({Put(kExperiments, Under('i', project, env, flag, it.number), ToJson(IterationToJson(it)))}));
  return it;
}

namespace {

// The experiment rollouts of a flag that is on: the fallthrough's and each rule's (by rule id).
// Empty: the flag runs no experiment. A change of this is a change of the experiment's
// allocation, which ends its iteration.
std::vector<std::pair<std::string, rules::Rollout>> ExperimentAllocation(const std::optional<Value>& json) {
  std::vector<std::pair<std::string, rules::Rollout>> out;
  if (!json.has_value()) return out;
  absl::StatusOr<rules::Flag> f = rules::DecodeFlag(*json);
  if (!f.ok() || !f->on) return out;
  auto add = [&](const std::string& where, const rules::VariationOrRollout& vr) {
    if (vr.rollout.has_value() && vr.rollout->kind == rules::RolloutKind::kExperiment) out.emplace_back(where, *vr.rollout);
  };
  add("fallthrough", f->fallthrough);
  for (const rules::FlagRule& r : f->rules) add(StrCat("rule:", r.id), r.variation_or_rollout);
  return out;
}

// Whether the flag's JSON has an experiment rollout at all: a look at a few members, so that
// change sets of flags without experiments (nearly all) decode nothing more.
bool MentionsExperiment(const std::optional<Value>& json) {
  if (!json.has_value()) return false;
  auto experiment = [](const Value* vr) {
    const Value* r = vr != nullptr ? vr->Find("rollout") : nullptr;
    const Value* k = r != nullptr ? r->Find("kind") : nullptr;
    return k != nullptr && k->is_string() && k->as_string() == "experiment";
  };
  if (experiment(json->Find("fallthrough"))) return true;
  const Value* rules = json->Find("rules");
  if (rules == nullptr || !rules->is_array()) return false;
  for (const Value& r : rules->as_array()) {
    if (experiment(&r)) return true;
  }
  return false;
}

size_t VariationCount(const std::optional<Value>& json) {
  const Value* v = json.has_value() ? json->Find("variations") : nullptr;
  return v != nullptr && v->is_array() ? v->as_array().size() : 0;
}

}  // namespace

absl::Status RocksStore::IterationsForChange(std::string_view project, std::string_view env,
                                             const std::vector<PreparedItem>& items, std::vector<WriteOp>& ops,
                                             const IterationDefaults* defaults) {
  bool any = std::any_of(items.begin(), items.end(), [](const PreparedItem& i) {
    return i.kind == ItemKind::kFlag && (MentionsExperiment(i.before) || MentionsExperiment(i.after));
  });
  if (!any) return absl::OkStatus();
  std::lock_guard<std::mutex> l(experiments_mu_);
  int64_t now = Now();
  for (const PreparedItem& item : items) {
    if (item.kind != ItemKind::kFlag || !(MentionsExperiment(item.before) || MentionsExperiment(item.after))) continue;
    auto before = ExperimentAllocation(item.before);
    auto after = ExperimentAllocation(item.after);
    if (before == after) continue;
    ASSIGN_OR_RETURN(std::vector<Iteration> all,
                     ScanDecoded<Iteration>(kExperiments, IterationPrefix(project, env, item.key), IterationFromJson));
    if (!all.empty() && all.back().ended_ms == 0) {
      Iteration running = all.back();
      running.ended_ms = now;  // its allocation changed, or the experiment was switched off
      ops.push_back(Put(kExperiments, Under('i', project, env, item.key, running.number), ToJson(IterationToJson(running))));
    }
    if (after.empty()) continue;
    // A new iteration on the new allocation, with the metrics and control of the last one.
    const rules::Rollout& rollout = after.front().second;
    size_t n = VariationCount(item.after);
    Iteration it;
    it.number = all.empty() ? 1 : all.back().number + 1;
    it.started_ms = now;
    it.flag_version = VersionOf(item.after);
    it.unit_kind = rollout.context_kind.value_or("user");
    it.weights.assign(n, 0);
    for (const rules::WeightedVariation& w : rollout.variations) {
      if (!w.untracked && w.variation >= 0 && static_cast<size_t>(w.variation) < n) it.weights[w.variation] += w.weight;
    }
    if (!all.empty()) {
      it.metrics = all.back().metrics;
      it.control = static_cast<size_t>(all.back().control) < n ? all.back().control : 0;
    }
    if (defaults != nullptr) {
      // A release plan's stage: its control, its guards' metrics first, then the others.
      if (defaults->control >= 0 && static_cast<size_t>(defaults->control) < n) it.control = defaults->control;
      std::vector<std::string> metrics = defaults->metrics;
      for (std::string& m : it.metrics) {
        if (std::find(metrics.begin(), metrics.end(), m) == metrics.end()) metrics.push_back(std::move(m));
      }
      it.metrics = std::move(metrics);
    }
    ops.push_back(Put(kExperiments, Under('i', project, env, item.key, it.number), ToJson(IterationToJson(it))));
  }
  return absl::OkStatus();  // the caller drops the cached running iterations once these are stored
}

void RocksStore::ForgetRunningIterations(std::string_view project, std::string_view env) {
  std::lock_guard<std::mutex> l(experiments_mu_);
  running_cache_.erase(StrCat(project, "/", env));
  ++experiment_cache_generation_;
}

absl::StatusOr<const std::map<std::string, Iteration, std::less<>>*> RocksStore::RunningIterations(
    std::string_view project, std::string_view env) {
  std::string where = StrCat(project, "/", env);
  auto cached = running_cache_.find(where);
  if (cached != running_cache_.end()) return &cached->second;
  std::map<std::string, Iteration, std::less<>> running;
  std::string prefix = StrCat("i/", project, "/", env, "/");
  RETURN_IF_ERROR(Scan(kExperiments, prefix, nullptr, [&](std::string_view k, std::string_view v) -> absl::Status {
    ASSIGN_OR_RETURN(Value json, ParseStored(kExperiments, k, v));
    ASSIGN_OR_RETURN(Iteration it, Decoded(IterationFromJson(json), kExperiments, k));
    if (it.ended_ms != 0) return absl::OkStatus();
    // "i/{p}/{e}/{flag}/{n}": the flag is the segment before the number.
    std::string_view rest = k.substr(prefix.size());
    running[std::string(rest.substr(0, rest.rfind('/')))] = std::move(it);
    return absl::OkStatus();
  }));
  return &running_cache_.emplace(std::move(where), std::move(running)).first->second;
}

absl::StatusOr<const std::map<std::string, Metric, std::less<>>*> RocksStore::MetricsOf(std::string_view project) {
  auto cached = metrics_cache_.find(project);
  if (cached != metrics_cache_.end()) return &cached->second;
  std::map<std::string, Metric, std::less<>> metrics;
  ASSIGN_OR_RETURN(std::vector<Metric> all, ListMetrics(project));
  for (Metric& m : all) metrics.emplace(m.key, std::move(m));
  return &metrics_cache_.emplace(std::string(project), std::move(metrics)).first->second;
}

absl::StatusOr<std::optional<std::string>> RocksStore::GetExperimentRecord(const std::string& key) {
  auto pending = experiment_overlay_.find(key);
  if (pending != experiment_overlay_.end()) return std::optional<std::string>(pending->second.value);
  return Get(kExperiments, key);
}

void RocksStore::ForgetExperimentCaches() {
  std::lock_guard<std::mutex> l(experiments_mu_);
  running_cache_.clear();
  metrics_cache_.clear();
  ++experiment_cache_generation_;
  // Records of batches already durable may belong to what was deleted: read from the database.
  for (const RetainedBatch& b : experiment_retained_) {
    for (const std::string& k : b.keys) {
      auto pending = experiment_overlay_.find(k);
      if (pending != experiment_overlay_.end() && pending->second.ticket == b.ticket) experiment_overlay_.erase(pending);
    }
  }
  experiment_retained_.clear();
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

absl::StatusOr<Iteration> RocksStore::ArchiveIteration(std::string_view project, std::string_view env,
                                                       std::string_view flag, int64_t number) {
  RETURN_IF_ERROR(CheckWritable());
  std::lock_guard<std::mutex> l(experiments_mu_);
  std::string key = Under('i', project, env, flag, number);
  ASSIGN_OR_RETURN(auto json, GetJson(kExperiments, key));
  if (!json.has_value()) {
    RETURN_IF_ERROR(GetFlag(project, env, flag).status());
    return absl::NotFoundError(StrCat("flag \"", flag, "\" has no experiment iteration ", number));
  }
  ASSIGN_OR_RETURN(Iteration it, Decoded(IterationFromJson(*json), kExperiments, key));
  if (it.ended_ms == 0) {
    return absl::FailedPreconditionError(StrCat("iteration ", number, " of flag \"", flag, "\" is running: stop it first"));
  }
  if (it.archived_ms != 0) return it;
  it.archived_ms = Now();
  std::string units = UnitPrefix(project, env, flag, number);
  RETURN_IF_ERROR(WriteNow({DeleteRange(kExperiments, units, PrefixEnd(units)), Put(kExperiments, key, ToJson(IterationToJson(it)))}));
  return it;
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

absl::StatusOr<IterationSums> RocksStore::GetIterationSums(std::string_view project, std::string_view env,
                                                           std::string_view flag, int64_t number) {
  SnapshotHolder snap(db_);
  std::string key = Under('i', project, env, flag, number);
  ASSIGN_OR_RETURN(auto json, GetJson(kExperiments, key, snap.get()));
  if (!json.has_value()) {
    RETURN_IF_ERROR(GetFlag(project, env, flag).status());
    return absl::NotFoundError(StrCat("flag \"", flag, "\" has no experiment iteration ", number));
  }
  IterationSums out;
  ASSIGN_OR_RETURN(out.iteration, Decoded(IterationFromJson(*json), kExperiments, key));
  size_t variations = out.iteration.weights.size();
  ASSIGN_OR_RETURN(auto h, GetJson(kExperiments, Under('h', project, env, flag, number), snap.get()));
  Header header = HeaderFromJson(h, variations);
  out.units = std::move(header.units);
  out.multiple_exposures = header.multiple;
  for (const std::string& m : out.iteration.metrics) {
    std::vector<MetricSums> per(variations);
    for (size_t v = 0; v < variations; ++v) {
      ASSIGN_OR_RETURN(auto s, GetJson(kExperiments, StrCat(Under('s', project, env, flag, number), "/", m, "/", v), snap.get()));
      per[v] = SumsFromJson(s);
    }
    out.metrics.emplace_back(m, std::move(per));
  }
  std::string days = StrCat(Under('d', project, env, flag, number), "/");
  RETURN_IF_ERROR(Scan(kExperiments, days, snap.get(), [&](std::string_view k, std::string_view v) -> absl::Status {
    std::optional<int64_t> day = ParseSeqKey(k.substr(days.size()));
    if (!day.has_value()) return absl::DataLossError(StrCat("daily record key \"", k, "\" has no day"));
    ASSIGN_OR_RETURN(Value json, ParseStored(kExperiments, k, v));
    out.days.push_back(DayFromJson(json, *day, variations, out.iteration.metrics.size()));
    return absl::OkStatus();
  }));
  return out;
}

}  // namespace gonfalon::storage::internal

namespace gonfalon::storage {

std::string_view MetricKindName(MetricKind k) {
  switch (k) {
    case MetricKind::kConversion:
      return "conversion";
    case MetricKind::kCount:
      return "count";
    case MetricKind::kSum:
      return "sum";
    case MetricKind::kMean:
      return "mean";
  }
  return "conversion";
}

using rules::Array;
using rules::Object;
using rules::Value;

rules::Value MetricToJson(const Metric& m) {
  Value v(Object{{"key", Value(m.key)}, {"name", Value(m.name)}, {"eventKey", Value(m.event_key)},
                 {"kind", Value(MetricKindName(m.kind))},
                 {"successCriteria", Value(m.lower_is_better ? "lower" : "higher")},
                 {"version", Value(m.version)}, {"createdMs", Value(m.created_ms)}});
  if (m.cap.has_value()) v.Set("capValue", Value(*m.cap));
  return v;
}

absl::StatusOr<Metric> MetricFromJson(const rules::Value& v) {
  Metric m;
  std::string kind = "conversion", criteria = "higher";
  RETURN_IF_ERROR(rules::GetString(v, "key", "", m.key));
  RETURN_IF_ERROR(rules::GetString(v, "name", "", m.name));
  RETURN_IF_ERROR(rules::GetString(v, "eventKey", "", m.event_key));
  RETURN_IF_ERROR(rules::GetString(v, "kind", "", kind));  // stays "conversion" when absent
  RETURN_IF_ERROR(rules::GetString(v, "successCriteria", "", criteria));
  RETURN_IF_ERROR(rules::GetInt64(v, "version", "", m.version));
  RETURN_IF_ERROR(rules::GetInt64(v, "createdMs", "", m.created_ms));
  const Value* cap = nullptr;
  RETURN_IF_ERROR(rules::GetMember(v, "capValue", "", Value::Type::kNumber, cap));
  if (cap != nullptr) m.cap = cap->as_number();
  std::optional<MetricKind> parsed = ParseMetricKind(kind);
  if (!parsed.has_value()) return rules::InvalidField("kind", StrCat("expected conversion, count, sum or mean, got \"", kind, "\""));
  m.kind = *parsed;
  if (criteria != "higher" && criteria != "lower") {
    return rules::InvalidField("successCriteria", "expected \"higher\" or \"lower\"");
  }
  m.lower_is_better = criteria == "lower";
  return m;
}

std::optional<MetricKind> ParseMetricKind(std::string_view name) {
  for (MetricKind k : {MetricKind::kConversion, MetricKind::kCount, MetricKind::kSum, MetricKind::kMean}) {
    if (MetricKindName(k) == name) return k;
  }
  return std::nullopt;
}

}  // namespace gonfalon::storage
