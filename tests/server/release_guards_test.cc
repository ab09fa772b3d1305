// The guards' judgement (server/src/release_guards.h) on hand-made stage sums: when each kind
// passes, holds and fires, with its figures; the metric guard's level under repeated looks;
// Prometheus answers parsed and queries expanded.
#include "release_guards.h"

#include <gtest/gtest.h>

#include <random>

namespace gonfalon::server {
namespace {

using storage::GuardKind;
using storage::PlanGuard;

storage::ReleasePlan Plan(std::vector<PlanGuard> guards, size_t stages = 1) {
  storage::ReleasePlan p;
  p.id = "rp_test";
  p.project = "shop";
  p.environment = "production";
  p.flag = "checkout";
  p.control = 0;
  p.treatment = 1;
  p.stages.assign(stages, storage::PlanStage{50000, 0, 0});
  p.guards = std::move(guards);
  p.stage_started_ms = 1000;
  return p;
}

// Sums of a conversion metric "errors": units and events per variation (control, treatment).
storage::IterationSums Sums(double control_units, double control_events, double treatment_units, double treatment_events) {
  storage::IterationSums s;
  s.iteration.weights = {50000, 50000};
  s.units = {static_cast<int64_t>(control_units), static_cast<int64_t>(treatment_units)};
  s.metrics.push_back({"errors", {{control_units, control_events, control_events}, {treatment_units, treatment_events, treatment_events}}});
  return s;
}

const std::vector<storage::Metric> kMetrics = {
    storage::Metric{.key = "errors", .event_key = "error", .kind = storage::MetricKind::kConversion, .lower_is_better = true}};

PlanGuard MetricGuard(double min_effect = 0) {
  return PlanGuard{.kind = GuardKind::kMetric, .metric = "errors", .min_effect = min_effect};
}

TEST(ReleaseGuardsTest, TheMetricGuardFiresOnClearHarmOnlyAndSaysWhy) {
  storage::ReleasePlan plan = Plan({MetricGuard()});
  storage::IterationSums harmful = Sums(5000, 50, 5000, 250);  // errors 1 % vs 5 %
  GuardVerdict v = JudgeGuard(plan, 0, &harmful, kMetrics, nullptr, 2000);
  EXPECT_EQ(v.state, GuardState::kFire) << v.summary;
  EXPECT_NE(v.summary.find("worse than control"), std::string::npos) << v.summary;
  EXPECT_DOUBLE_EQ(v.figures.Find("difference")->as_number(), 0.04);
  EXPECT_GT(v.figures.Find("interval")->as_array()[0].as_number(), 0);
  EXPECT_DOUBLE_EQ(v.figures.Find("alpha")->as_number(), 0.05);
  EXPECT_EQ(v.figures.Find("treatment")->Find("units")->as_number(), 5000);
  // Better, equal, or too few units: no objection.
  storage::IterationSums better = Sums(5000, 250, 5000, 50);
  EXPECT_EQ(JudgeGuard(plan, 0, &better, kMetrics, nullptr, 2000).state, GuardState::kPass);
  storage::IterationSums same = Sums(5000, 50, 5000, 52);
  EXPECT_EQ(JudgeGuard(plan, 0, &same, kMetrics, nullptr, 2000).state, GuardState::kPass);
  storage::IterationSums few = Sums(50, 0, 50, 10);
  GuardVerdict waiting = JudgeGuard(plan, 0, &few, kMetrics, nullptr, 2000);
  EXPECT_EQ(waiting.state, GuardState::kPass);
  EXPECT_NE(waiting.summary.find("waiting for 100 units"), std::string::npos) << waiting.summary;
  // A harm smaller than minEffect is ignored.
  storage::ReleasePlan tolerant = Plan({MetricGuard(0.05)});
  EXPECT_EQ(JudgeGuard(tolerant, 0, &harmful, kMetrics, nullptr, 2000).state, GuardState::kPass);
  // A metric deleted since the plan started: the plan waits.
  EXPECT_EQ(JudgeGuard(plan, 0, &harmful, {}, nullptr, 2000).state, GuardState::kHold);
}

TEST(ReleaseGuardsTest, AlphaIsSharedByMetricGuardsAndStages) {
  storage::ReleasePlan plan = Plan({MetricGuard(), MetricGuard(), PlanGuard{.kind = GuardKind::kSampleRatio}}, 3);
  EXPECT_DOUBLE_EQ(MetricTestAlpha(plan), 0.05 / 6);
  plan.alpha = 0.1;
  plan.guards.pop_back();
  plan.guards.pop_back();
  EXPECT_DOUBLE_EQ(MetricTestAlpha(plan), 0.1 / 3);
}

// The bound the end-to-end A/A test relies on: judged after every 200 units (about as often
// as the scheduler looks while an SDK sends), an A/A stage is rolled back in at most alpha of
// runs; a real harm is still found.
TEST(ReleaseGuardsTest, AnAaStageLookedAtOftenFiresInAtMostAlphaOfRuns) {
  storage::ReleasePlan plan = Plan({MetricGuard()});
  plan.alpha = 0.1;  // a larger level, so that an error in the bound would show
  std::mt19937_64 rng(5);
  std::bernoulli_distribution error(0.02), worse(0.03);
  constexpr int kRuns = 300;
  int false_alarms = 0, found = 0;
  for (int run = 0; run < kRuns; ++run) {
    double e[3] = {0, 0, 0};
    bool fired_aa = false, fired_harm = false;
    for (int n = 1; n <= 10000; ++n) {
      e[0] += error(rng);
      e[1] += error(rng);
      e[2] += worse(rng);
      if (n % 200 != 0) continue;
      storage::IterationSums aa = Sums(n, e[0], n, e[1]);
      storage::IterationSums harm = Sums(n, e[0], n, e[2]);
      fired_aa = fired_aa || JudgeGuard(plan, 0, &aa, kMetrics, nullptr, 0).state == GuardState::kFire;
      fired_harm = fired_harm || JudgeGuard(plan, 0, &harm, kMetrics, nullptr, 0).state == GuardState::kFire;
    }
    false_alarms += fired_aa;
    found += fired_harm;
  }
  // alpha 10 %: 30 expected at most; P(Binomial(300, 0.1) >= 45) < 0.5 %.
  EXPECT_LE(false_alarms, 44);
  EXPECT_GE(found, kRuns / 2);  // 2 % vs 3 % errors, 10,000 units an arm
  std::printf("A/A stages rolled back: %d of %d; 2 %% vs 3 %% found: %d\n", false_alarms, kRuns, found);
}

TEST(ReleaseGuardsTest, TheThresholdGuardJudgesTheTreatmentAlone) {
  storage::ReleasePlan plan = Plan({PlanGuard{.kind = GuardKind::kThreshold, .metric = "errors", .max = 0.02}});
  storage::IterationSums high = Sums(5000, 0, 1000, 30);  // treatment 3 %
  GuardVerdict v = JudgeGuard(plan, 0, &high, kMetrics, nullptr, 0);
  EXPECT_EQ(v.state, GuardState::kFire);
  EXPECT_NE(v.summary.find("outside <= 0.02"), std::string::npos) << v.summary;
  storage::IterationSums ok = Sums(5000, 500, 1000, 10);  // control is not its business
  EXPECT_EQ(JudgeGuard(plan, 0, &ok, kMetrics, nullptr, 0).state, GuardState::kPass);
  storage::IterationSums everyone = Sums(0, 0, 2000, 100);  // a last stage at 100 %: no control
  EXPECT_EQ(JudgeGuard(plan, 0, &everyone, kMetrics, nullptr, 0).state, GuardState::kFire);
  storage::IterationSums few = Sums(0, 0, 50, 10);
  EXPECT_EQ(JudgeGuard(plan, 0, &few, kMetrics, nullptr, 0).state, GuardState::kPass);
}

TEST(ReleaseGuardsTest, APrometheusGuardHoldsUntilItHasAValueAndFiresOutsideItsRange) {
  storage::ReleasePlan plan = Plan({PlanGuard{.kind = GuardKind::kPrometheus, .max = 0.05, .url = "http://p:9090", .query = "up"}});
  EXPECT_EQ(JudgeGuard(plan, 0, nullptr, {}, nullptr, 0).state, GuardState::kHold);
  PrometheusReading failed{.time_ms = 1, .error = "connecting: Connection refused"};
  GuardVerdict f = JudgeGuard(plan, 0, nullptr, {}, &failed, 0);
  EXPECT_EQ(f.state, GuardState::kHold);
  EXPECT_NE(f.summary.find("Connection refused"), std::string::npos);
  PrometheusReading empty{.time_ms = 1};
  EXPECT_EQ(JudgeGuard(plan, 0, nullptr, {}, &empty, 0).state, GuardState::kHold);
  PrometheusReading nothing{.time_ms = 1, .values = {std::nan("")}};  // a rate of no requests
  EXPECT_EQ(JudgeGuard(plan, 0, nullptr, {}, &nothing, 0).state, GuardState::kHold);
  PrometheusReading fine{.time_ms = 1, .values = {0.01, 0.04, std::nan("")}};
  EXPECT_EQ(JudgeGuard(plan, 0, nullptr, {}, &fine, 0).state, GuardState::kPass);
  PrometheusReading bad{.time_ms = 1, .values = {0.01, 0.2}};
  GuardVerdict b = JudgeGuard(plan, 0, nullptr, {}, &bad, 0);
  EXPECT_EQ(b.state, GuardState::kFire);
  EXPECT_NE(b.summary.find("0.2 outside <= 0.05"), std::string::npos) << b.summary;
}

TEST(ReleaseGuardsTest, HealthChecksCatchASkewedSplitAndAStageWithoutTraffic) {
  storage::ReleasePlan plan = Plan({PlanGuard{.kind = GuardKind::kSampleRatio}, PlanGuard{.kind = GuardKind::kNoTraffic, .grace_ms = 5000}});
  storage::IterationSums even = Sums(5050, 0, 4950, 0);
  EXPECT_EQ(JudgeGuard(plan, 0, &even, {}, nullptr, 0).state, GuardState::kPass);
  storage::IterationSums skewed = Sums(5600, 0, 4400, 0);
  GuardVerdict srm = JudgeGuard(plan, 0, &skewed, {}, nullptr, 0);
  EXPECT_EQ(srm.state, GuardState::kFire);
  EXPECT_LT(srm.figures.Find("pValue")->as_number(), 0.001);
  storage::IterationSums none = Sums(0, 0, 0, 0);
  EXPECT_EQ(JudgeGuard(plan, 1, &none, {}, nullptr, 1000 + 4999).state, GuardState::kPass);  // within the grace
  EXPECT_EQ(JudgeGuard(plan, 1, &none, {}, nullptr, 1000 + 5000).state, GuardState::kFire);
  EXPECT_EQ(JudgeGuard(plan, 1, nullptr, {}, nullptr, 1000 + 5000).state, GuardState::kFire);
  EXPECT_EQ(JudgeGuard(plan, 1, &even, {}, nullptr, 1000 + 50000).state, GuardState::kPass);
}

TEST(ReleaseGuardsTest, PrometheusAnswersAreReadAndQueriesExpanded) {
  auto vec = ParsePrometheusAnswer(
      R"({"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1.5,"0.25"]},{"metric":{},"value":[1.5,"NaN"]}]}})");
  ASSERT_TRUE(vec.ok()) << vec.status();
  ASSERT_EQ(vec->size(), 2u);
  EXPECT_EQ((*vec)[0], 0.25);
  auto scalar = ParsePrometheusAnswer(R"({"status":"success","data":{"resultType":"scalar","result":[1.5,"3"]}})");
  ASSERT_TRUE(scalar.ok());
  EXPECT_EQ((*scalar)[0], 3);
  auto error = ParsePrometheusAnswer(R"({"status":"error","errorType":"bad_data","error":"parse error at char 3"})");
  EXPECT_NE(error.status().message().find("parse error at char 3"), std::string::npos);
  EXPECT_FALSE(ParsePrometheusAnswer("<html>").ok());
  EXPECT_FALSE(ParsePrometheusAnswer(R"({"status":"success","data":{"resultType":"matrix","result":[]}})").ok());
  EXPECT_FALSE(ParsePrometheusAnswer(R"({"status":"success","data":{"resultType":"vector","result":[{"value":[1,"x"]}]}})").ok());
  storage::ReleasePlan plan = Plan({});
  EXPECT_EQ(ExpandQuery(plan, R"(errors{flag="{{flag}}",variation="{{variation}}",env="{{environment}}"} {{nope}})"),
            R"(errors{flag="checkout",variation="1",env="production"} {{nope}})");
}

}  // namespace
}  // namespace gonfalon::server
