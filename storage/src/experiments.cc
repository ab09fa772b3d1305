// Experiment definitions and results (DESIGN §8): metrics, iterations (started, stopped and
// archived by hand or by the changes of a flag's experiment rollout), and the sums an
// iteration's results are computed from. Ingestion: experiment_ingest.cc; key layout:
// experiment_records.h.
#include <algorithm>
#include <map>

#include "experiment_records.h"
#include "rocks_store.h"

namespace gonfalon::storage::internal {

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
