#pragma once
// Guards of release plans (DESIGN §9; docs/releases.md, "Guards"). The scheduler asks the
// GuardMonitor every half second to judge every active plan's current stage: each guard
// passes, holds (the plan may not advance: it cannot judge yet) or fires (it acts: roll back
// or pause through the store, as the plan's own change set, or notify). JudgeGuard is the
// pure part, on the stage's experiment sums; the monitor adds Prometheus queries, acts and
// remembers the latest verdicts for GET …/release-plan.
//
// Statistics of the metric guard: the plan's alpha is shared by its metric guards and stages
// (Bonferroni: each test runs at a = alpha / (metric guards × stages)); each is one-sided (it
// looks for harm only) and always valid, so looking every half second costs nothing: it fires
// when the always-valid interval at two-sided level 2a/(1+a) lies wholly on the harmful side
// beyond minEffect (docs/releases.md derives why that level bounds the one-sided error by a).

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "gonfalon/rules/value.h"
#include "gonfalon/storage/store.h"
#include "metrics.h"
#include "webhooks.h"

namespace gonfalon::server {

enum class GuardState : uint8_t { kPass, kHold, kFire };
std::string_view GuardStateName(GuardState s);  // "pass", "hold", "fire"

struct GuardVerdict {
  GuardState state = GuardState::kPass;
  std::string summary;   // one line, with its figures
  rules::Value figures;  // an object: the numbers it judged
};

// The latest answer of a Prometheus guard's query.
struct PrometheusReading {
  int64_t time_ms = 0;
  std::string error;            // the query failed: why
  std::vector<double> values;   // one per series (empty: no data)
};

// The level each metric test of `plan` runs at: alpha / (metric guards × stages).
double MetricTestAlpha(const storage::ReleasePlan& plan);

// Judges guard `index` of `plan` on its current stage. `sums` is the stage's iteration (null:
// none yet), `metrics` the project's definitions, `reading` the guard's latest Prometheus
// answer (null: none yet).
GuardVerdict JudgeGuard(const storage::ReleasePlan& plan, size_t index, const storage::IterationSums* sums,
                        const std::vector<storage::Metric>& metrics, const PrometheusReading* reading, int64_t now_ms);

// A Prometheus guard's query with its placeholders filled in: {{flag}}, {{variation}} (the
// treatment's index), {{environment}}, {{project}}.
std::string ExpandQuery(const storage::ReleasePlan& plan, const std::string& query);
// The values of a Prometheus /api/v1/query answer (vector or scalar); an error when it is not
// a successful one.
absl::StatusOr<std::vector<double>> ParsePrometheusAnswer(std::string_view body);

class GuardMonitor {
 public:
  GuardMonitor(storage::Store& store, Metrics& metrics, WebhookDispatcher& webhooks);

  // Judges every guard of the `active` plans and acts on those that fire. Returns the ids of
  // the plans that may not advance now (a guard holds, or fired and only notified).
  std::set<std::string> Check(const std::vector<storage::ReleasePlan>& active, int64_t now_ms);
  // The latest verdicts of plan `id` ({"checkedMs", "guards":[{"state","summary","figures"}]}),
  // or null when it has not been judged.
  rules::Value Status(const std::string& id) const;

 private:
  // Queries the Prometheus guards of `plan` that are due.
  void Query(const storage::ReleasePlan& plan, int64_t now_ms);
  void Act(const storage::ReleasePlan& plan, size_t index, const GuardVerdict& v, int64_t now_ms);

  storage::Store& store_;
  Metrics& metrics_;
  WebhookDispatcher& webhooks_;
  // Only the scheduler's thread calls Check, so these need no lock:
  std::map<std::pair<std::string, size_t>, PrometheusReading> readings_;  // (plan id, guard)
  std::set<std::string> notified_;  // "{plan}/{stage}/{guard}": notify once per stage
  mutable std::mutex mu_;
  std::map<std::string, rules::Value> status_;  // REQUIRES: mu_ (read by GET)
};

}  // namespace gonfalon::server
