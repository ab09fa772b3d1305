#include "release_guards.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "gonfalon/rules/status_macros.h"
#include "gonfalon/rules/str_cat.h"
#include "gonfalon/stats/tests.h"
#include "http_client.h"
#include "log.h"

namespace gonfalon::server {

using rules::Object;
using rules::Value;
using storage::GuardKind;
using storage::PlanGuard;

std::string_view GuardStateName(GuardState s) {
  switch (s) {
    case GuardState::kPass:
      return "pass";
    case GuardState::kHold:
      return "hold";
    case GuardState::kFire:
      return "fire";
  }
  return "pass";
}

namespace {

// Prometheus is asked for at most this long (or the guard's interval, if shorter): the
// scheduler's thread waits for it.
constexpr int64_t kQueryTimeoutMs = 2000;
// The sequential sample-ratio check's level: a mismatch this unlikely by chance, ever.
constexpr double kSampleRatioAlpha = 0.001;

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}
std::string Signed(double v) { return v > 0 ? StrCat("+", Num(v)) : Num(v); }

GuardVerdict Verdict(GuardState state, std::string summary, Value figures = Value(Object{})) {
  return {state, std::move(summary), std::move(figures)};
}

stats::ArmSummary Arm(const storage::MetricSums& m) {
  return {m.units, m.units > 0 ? m.sum / m.units : 0, stats::SampleVariance(m.units, m.sum, m.sum_of_squares)};
}

Value ArmJson(const stats::ArmSummary& a) { return Value(Object{{"units", Value(a.n)}, {"mean", Value(a.mean)}}); }

// "within [min, max]" for the summary.
std::string Range(const PlanGuard& g) {
  if (g.min.has_value() && g.max.has_value()) return StrCat("[", Num(*g.min), ", ", Num(*g.max), "]");
  if (g.min.has_value()) return StrCat(">= ", Num(*g.min));
  return StrCat("<= ", Num(g.max.value_or(0)));
}
bool InRange(const PlanGuard& g, double v) {
  return (!g.min.has_value() || v >= *g.min) && (!g.max.has_value() || v <= *g.max);
}

GuardVerdict JudgeMetric(const storage::ReleasePlan& plan, const PlanGuard& g, const storage::IterationSums* sums,
                         const std::vector<storage::Metric>& metrics) {
  auto def = std::find_if(metrics.begin(), metrics.end(), [&](const storage::Metric& m) { return m.key == g.metric; });
  if (def == metrics.end()) return Verdict(GuardState::kHold, StrCat("metric \"", g.metric, "\" no longer exists"));
  if (sums == nullptr) return Verdict(GuardState::kPass, "no units yet");
  const std::vector<storage::MetricSums>* per = nullptr;
  for (const auto& [key, v] : sums->metrics) {
    if (key == g.metric) per = &v;
  }
  size_t c = static_cast<size_t>(plan.control), t = static_cast<size_t>(plan.treatment);
  if (per == nullptr || per->size() <= std::max(c, t)) {
    return Verdict(GuardState::kHold, StrCat("the stage's experiment iteration does not measure \"", g.metric, "\""));
  }
  stats::ArmSummary control = Arm((*per)[c]), treatment = Arm((*per)[t]);
  Value figures(Object{{"metric", Value(g.metric)}, {"control", ArmJson(control)}, {"treatment", ArmJson(treatment)}});
  std::string arms = StrCat("treatment ", Num(treatment.mean), " vs control ", Num(control.mean), " over ",
                            static_cast<int64_t>(treatment.n), "/", static_cast<int64_t>(control.n), " units");
  if (g.kind == GuardKind::kThreshold) {
    // The treatment alone (a last stage at 100 % has no control units).
    if (treatment.n < static_cast<double>(g.min_units)) {
      return Verdict(GuardState::kPass, StrCat("waiting for ", g.min_units, " treatment units: ", arms), std::move(figures));
    }
    figures.Set("range", Value(Range(g)));
    if (InRange(g, treatment.mean)) {
      return Verdict(GuardState::kPass, StrCat("metric ", g.metric, ": treatment ", Num(treatment.mean), " within ", Range(g)),
                     std::move(figures));
    }
    return Verdict(GuardState::kFire,
                   StrCat("metric ", g.metric, ": treatment ", Num(treatment.mean), " outside ", Range(g), " (", arms, ")"),
                   std::move(figures));
  }
  if (treatment.n < static_cast<double>(g.min_units) || control.n < static_cast<double>(g.min_units)) {
    return Verdict(GuardState::kPass, StrCat("waiting for ", g.min_units, " units per arm: ", arms), std::move(figures));
  }
  double a = MetricTestAlpha(plan);
  double level = 2 * a / (1 + a);  // two-sided level whose one side holds at a (docs/releases.md)
  stats::Interval ci = stats::SequentialInterval(treatment, control, level, g.expected_units);
  double difference = treatment.mean - control.mean;
  bool lower = def->lower_is_better;
  // Harm: the treatment is worse than control by more than minEffect, for sure.
  bool harm = lower ? ci.low > g.min_effect : ci.high < -g.min_effect;
  figures.Set("difference", Value(difference));
  if (std::isfinite(ci.low) && std::isfinite(ci.high)) {
    figures.Set("interval", Value(rules::Array{Value(ci.low), Value(ci.high)}));
  }
  figures.Set("alpha", Value(a));
  figures.Set("lowerIsBetter", Value(lower));
  figures.Set("minEffect", Value(g.min_effect));
  std::string text = StrCat("metric ", g.metric, " (", lower ? "lower" : "higher", " is better): ", arms, "; difference ",
                            Signed(difference), ", always-valid interval [", Signed(ci.low), ", ", Signed(ci.high), "] at a = ", Num(a));
  if (!harm) return Verdict(GuardState::kPass, text, std::move(figures));
  return Verdict(GuardState::kFire,
                 StrCat(text, ": worse than control", g.min_effect > 0 ? StrCat(" by more than ", Num(g.min_effect)) : ""),
                 std::move(figures));
}

}  // namespace

double MetricTestAlpha(const storage::ReleasePlan& plan) {
  size_t tests = 0;
  for (const PlanGuard& g : plan.guards) tests += g.kind == GuardKind::kMetric;
  return plan.alpha / static_cast<double>(std::max<size_t>(1, tests) * std::max<size_t>(1, plan.stages.size()));
}

std::string ExpandQuery(const storage::ReleasePlan& plan, const std::string& query) {
  const std::pair<std::string_view, std::string> holes[] = {{"{{flag}}", plan.flag},
                                                            {"{{variation}}", std::to_string(plan.treatment)},
                                                            {"{{environment}}", plan.environment},
                                                            {"{{project}}", plan.project}};
  std::string out;
  for (size_t i = 0; i < query.size();) {
    bool replaced = false;
    for (const auto& [hole, value] : holes) {
      if (query.compare(i, hole.size(), hole) == 0) {
        out += value;
        i += hole.size();
        replaced = true;
        break;
      }
    }
    if (!replaced) out.push_back(query[i++]);
  }
  return out;
}

absl::StatusOr<std::vector<double>> ParsePrometheusAnswer(std::string_view body) {
  absl::StatusOr<Value> json = rules::ParseJson(body);
  if (!json.ok()) return absl::InvalidArgumentError("the answer is not JSON");
  const Value* status = json->Find("status");
  if (status == nullptr || !status->is_string() || status->as_string() != "success") {
    const Value* error = json->Find("error");
    return absl::InvalidArgumentError(
        StrCat("Prometheus said: ", error != nullptr && error->is_string() ? error->as_string() : std::string("no success")));
  }
  const Value* data = json->Find("data");
  const Value* type = data != nullptr ? data->Find("resultType") : nullptr;
  const Value* result = data != nullptr ? data->Find("result") : nullptr;
  if (type == nullptr || !type->is_string() || result == nullptr || !result->is_array()) {
    return absl::InvalidArgumentError("the answer has no data.resultType and data.result");
  }
  // A sample is [time, "value"].
  auto sample = [](const Value& s) -> absl::StatusOr<double> {
    if (!s.is_array() || s.as_array().size() != 2 || !s.as_array()[1].is_string()) {
      return absl::InvalidArgumentError("a sample is not [time, \"value\"]");
    }
    const std::string& text = s.as_array()[1].as_string();
    char* end = nullptr;
    double v = std::strtod(text.c_str(), &end);
    if (end == text.c_str() || *end != '\0') return absl::InvalidArgumentError(StrCat("a sample's value \"", text, "\" is not a number"));
    return v;
  };
  std::vector<double> out;
  if (type->as_string() == "scalar") {
    ASSIGN_OR_RETURN(double v, sample(*result));
    out.push_back(v);
  } else if (type->as_string() == "vector") {
    for (const Value& series : result->as_array()) {
      const Value* value = series.Find("value");
      if (value == nullptr) return absl::InvalidArgumentError("a series has no value");
      ASSIGN_OR_RETURN(double v, sample(*value));
      out.push_back(v);
    }
  } else {
    return absl::InvalidArgumentError(StrCat("a ", type->as_string(), " result: expected an instant vector or a scalar"));
  }
  return out;
}

GuardVerdict JudgeGuard(const storage::ReleasePlan& plan, size_t index, const storage::IterationSums* sums,
                        const std::vector<storage::Metric>& metrics, const PrometheusReading* reading, int64_t now_ms) {
  const PlanGuard& g = plan.guards[index];
  switch (g.kind) {
    case GuardKind::kMetric:
    case GuardKind::kThreshold:
      return JudgeMetric(plan, g, sums, metrics);
    case GuardKind::kPrometheus: {
      if (reading == nullptr) return Verdict(GuardState::kHold, "waiting for the first query");
      if (!reading->error.empty()) return Verdict(GuardState::kHold, StrCat("the query failed: ", reading->error));
      std::vector<double> known;  // NaN (e.g. a rate of nothing) says nothing either way
      for (double v : reading->values) {
        if (!std::isnan(v)) known.push_back(v);
      }
      if (known.empty()) return Verdict(GuardState::kHold, "the query returned no data");
      rules::Array values;
      for (double v : known) values.emplace_back(v);
      Value figures(Object{{"values", Value(std::move(values))}, {"range", Value(Range(g))}, {"timeMs", Value(reading->time_ms)}});
      for (double v : known) {
        if (!InRange(g, v)) {
          return Verdict(GuardState::kFire, StrCat("prometheus: ", Num(v), " outside ", Range(g), " for ", ExpandQuery(plan, g.query)),
                         std::move(figures));
        }
      }
      return Verdict(GuardState::kPass, StrCat("prometheus: ", Num(known.front()), " within ", Range(g)), std::move(figures));
    }
    case GuardKind::kSampleRatio: {
      if (sums == nullptr) return Verdict(GuardState::kPass, "no units yet");
      std::vector<double> observed(sums->units.begin(), sums->units.end());
      stats::SequentialSampleRatioResult r = stats::SequentialSampleRatio(observed, sums->iteration.weights, kSampleRatioAlpha);
      rules::Array units, weights;
      for (double u : observed) units.emplace_back(u);
      for (double w : sums->iteration.weights) weights.emplace_back(w);
      Value figures(Object{{"units", Value(std::move(units))}, {"weights", Value(std::move(weights))}, {"pValue", Value(r.p_value)}});
      std::string text = StrCat("units per variation ", rules::ToJson(figures.Find("units") ? *figures.Find("units") : Value()),
                                " for weights ", rules::ToJson(*figures.Find("weights")), ", always-valid p = ", Num(r.p_value));
      if (!r.mismatch) return Verdict(GuardState::kPass, text, std::move(figures));
      return Verdict(GuardState::kFire, StrCat("sample-ratio mismatch: ", text, " < ", Num(kSampleRatioAlpha)), std::move(figures));
    }
    case GuardKind::kNoTraffic: {
      int64_t units = 0;
      if (sums != nullptr) {
        for (int64_t u : sums->units) units += u;
        units += sums->multiple_exposures;
      }
      int64_t quiet = now_ms - plan.stage_started_ms;
      Value figures(Object{{"units", Value(units)}, {"stageAgeMs", Value(quiet)}, {"graceMs", Value(g.grace_ms)}});
      if (units > 0 || quiet < g.grace_ms) return Verdict(GuardState::kPass, StrCat(units, " units this stage"), std::move(figures));
      return Verdict(GuardState::kFire, StrCat("no traffic: no unit exposed ", quiet / 1000, " s into the stage (grace ", g.grace_ms / 1000, " s)"),
                     std::move(figures));
    }
  }
  return Verdict(GuardState::kPass, "");
}

GuardMonitor::GuardMonitor(storage::Store& store, Metrics& metrics, WebhookDispatcher& webhooks)
    : store_(store), metrics_(metrics), webhooks_(webhooks) {}

void GuardMonitor::Query(const storage::ReleasePlan& plan, int64_t now_ms) {
  for (size_t i = 0; i < plan.guards.size(); ++i) {
    const PlanGuard& g = plan.guards[i];
    if (g.kind != GuardKind::kPrometheus) continue;
    auto found = readings_.find({plan.id, i});
    if (found != readings_.end() && now_ms - found->second.time_ms < g.interval_ms) continue;
    std::string base = g.url;
    while (!base.empty() && base.back() == '/') base.pop_back();
    HttpRequest req;
    req.url = StrCat(base, "/api/v1/query?query=", UrlEncode(ExpandQuery(plan, g.query)));
    req.timeout = std::chrono::milliseconds(std::min(kQueryTimeoutMs, g.interval_ms));
    req.body_limit = 1 << 20;
    HttpAnswer a = HttpCall(req);
    PrometheusReading r;
    r.time_ms = now_ms;
    if (a.status == 0) {
      r.error = a.error;
    } else {
      absl::StatusOr<std::vector<double>> values = ParsePrometheusAnswer(a.body);
      if (values.ok()) {
        r.values = *std::move(values);
      } else {
        r.error = a.status / 100 == 2 ? std::string(values.status().message()) : StrCat("HTTP ", a.status, ": ", values.status().message());
      }
    }
    readings_[{plan.id, i}] = std::move(r);
  }
}

void GuardMonitor::Act(const storage::ReleasePlan& plan, size_t index, const GuardVerdict& v, int64_t now_ms) {
  const PlanGuard& g = plan.guards[index];
  std::string where = StrCat(plan.project, "/", plan.environment, "/", plan.flag);
  if (g.action == storage::GuardAction::kNotify) {
    std::string key = StrCat(plan.id, "/", plan.stage, "/", index);
    if (!notified_.insert(key).second) return;
    ++metrics_.guard_notifications;
    Log(LogLevel::kWarn, "release plan guard fired (notify)",
        {{"plan", plan.id}, {"flag", where}, {"guard", std::to_string(index + 1)}, {"why", v.summary}});
    webhooks_.Publish("release_plan.guard_fired", plan.project, plan.environment,
                      Value(Object{{"plan", storage::ReleasePlanToJson(plan)},
                                   {"guard", Value(static_cast<int64_t>(index))},
                                   {"kind", Value(storage::GuardKindName(g.kind))},
                                   {"stage", Value(static_cast<int64_t>(plan.stage))},
                                   {"summary", Value(v.summary)},
                                   {"figures", v.figures}}));
    return;
  }
  storage::GuardFiring firing{plan.id, static_cast<int>(index), plan.stage, now_ms, v.summary, v.figures};
  bool rollback = g.action == storage::GuardAction::kRollBack;
  absl::StatusOr<storage::ReleasePlan> acted =
      store_.ActOnReleasePlan(plan.project, plan.environment, plan.flag,
                              rollback ? storage::PlanAction::kRollBack : storage::PlanAction::kPause,
                              storage::Actor{StrCat("release:", plan.id)}, "", &firing);
  if (!acted.ok()) {
    // A plan that moved on since it was judged is judged again at the next look.
    if (!absl::IsFailedPrecondition(acted.status())) {
      Log(LogLevel::kError, "a guard could not act on its release plan; retrying",
          {{"plan", plan.id}, {"flag", where}, {"error", std::string(acted.status().message())}});
    }
    return;
  }
  ++(rollback ? metrics_.guard_rollbacks : metrics_.guard_pauses);
  Log(LogLevel::kWarn, rollback ? "release plan rolled back by a guard" : "release plan paused by a guard",
      {{"plan", plan.id}, {"flag", where}, {"guard", std::to_string(index + 1)}, {"why", v.summary}});
  webhooks_.Publish(rollback ? "release_plan.rolled_back" : "release_plan.paused", plan.project, plan.environment,
                    storage::ReleasePlanToJson(*acted));
}

std::set<std::string> GuardMonitor::Check(const std::vector<storage::ReleasePlan>& active, int64_t now_ms) {
  std::set<std::string> held;
  std::map<std::string, std::vector<storage::Metric>> metrics;  // by project, for this look
  std::set<std::string> ids;
  for (const storage::ReleasePlan& plan : active) {
    ids.insert(plan.id);
    std::string where = StrCat(plan.project, "/", plan.environment, "/", plan.flag);
    // The current stage's data: the flag's running iteration.
    std::optional<storage::IterationSums> sums;
    absl::Status read = [&]() -> absl::Status {
      if (metrics.find(plan.project) == metrics.end()) {
        ASSIGN_OR_RETURN(metrics[plan.project], store_.ListMetrics(plan.project));
      }
      ASSIGN_OR_RETURN(std::vector<storage::Iteration> its, store_.ListIterations(plan.project, plan.environment, plan.flag));
      if (!its.empty() && its.back().ended_ms == 0) {
        ASSIGN_OR_RETURN(sums, store_.GetIterationSums(plan.project, plan.environment, plan.flag, its.back().number));
      }
      return absl::OkStatus();
    }();
    if (!read.ok()) {
      if (!absl::IsNotFound(read)) {
        Log(LogLevel::kError, "release plan guards could not read their data; the plan waits",
            {{"plan", plan.id}, {"flag", where}, {"error", std::string(read.message())}});
      }
      held.insert(plan.id);
      continue;
    }
    Query(plan, now_ms);
    std::vector<GuardVerdict> verdicts;
    rules::Array status;
    for (size_t i = 0; i < plan.guards.size(); ++i) {
      auto reading = readings_.find({plan.id, i});
      verdicts.push_back(JudgeGuard(plan, i, sums.has_value() ? &*sums : nullptr, metrics[plan.project],
                                    reading == readings_.end() ? nullptr : &reading->second, now_ms));
      const GuardVerdict& v = verdicts.back();
      status.push_back(Value(Object{{"guard", Value(static_cast<int64_t>(i))},
                                    {"kind", Value(storage::GuardKindName(plan.guards[i].kind))},
                                    {"action", Value(storage::GuardActionName(plan.guards[i].action))},
                                    {"state", Value(GuardStateName(v.state))},
                                    {"summary", Value(v.summary)},
                                    {"figures", v.figures}}));
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      status_[plan.id] = Value(Object{{"checkedMs", Value(now_ms)}, {"stage", Value(static_cast<int64_t>(plan.stage))},
                                      {"guards", Value(std::move(status))}});
    }
    // One action per look: a rollback before a pause; every notify (once per stage).
    std::optional<size_t> rollback, pause;
    for (size_t i = 0; i < verdicts.size(); ++i) {
      if (verdicts[i].state == GuardState::kPass) continue;
      held.insert(plan.id);
      if (verdicts[i].state != GuardState::kFire) continue;
      storage::GuardAction a = plan.guards[i].action;
      if (a == storage::GuardAction::kRollBack && !rollback) rollback = i;
      if (a == storage::GuardAction::kPause && !pause) pause = i;
      if (a == storage::GuardAction::kNotify) Act(plan, i, verdicts[i], now_ms);
    }
    if (rollback) {
      Act(plan, *rollback, verdicts[*rollback], now_ms);
    } else if (pause) {
      Act(plan, *pause, verdicts[*pause], now_ms);
    }
  }
  // Forget plans that are no longer active.
  for (auto it = readings_.begin(); it != readings_.end();) it = ids.count(it->first.first) ? std::next(it) : readings_.erase(it);
  for (auto it = notified_.begin(); it != notified_.end();) {
    it = ids.count(it->substr(0, it->find('/'))) ? std::next(it) : notified_.erase(it);
  }
  std::lock_guard<std::mutex> l(mu_);
  for (auto it = status_.begin(); it != status_.end();) it = ids.count(it->first) ? std::next(it) : status_.erase(it);
  return held;
}

Value GuardMonitor::Status(const std::string& id) const {
  std::lock_guard<std::mutex> l(mu_);
  auto found = status_.find(id);
  return found == status_.end() ? Value() : found->second;
}

}  // namespace gonfalon::server
