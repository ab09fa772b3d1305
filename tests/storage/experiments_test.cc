// Experiments in the store: metric definitions, iterations, and the join of exposures and
// metric events to units, checked against a brute-force model of the same rules on seeded
// random data.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <thread>
#include <atomic>

#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/str_cat.h"
#include "store_test_util.h"
#include "testing.h"

namespace gonfalon::storage {
namespace {

class ExperimentsTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    MakeShop();
    FlagMeta m;
    m.key = "banner";
    m.variations = {rules::Value("a"), rules::Value("b"), rules::Value("c")};
    ASSERT_OK(store_->CreateFlag("shop", m, actor_, ""));
    ASSERT_OK(store_->PutMetric("shop", {.key = "buy", .event_key = "purchase", .kind = MetricKind::kConversion}));
    ASSERT_OK(store_->PutMetric("shop", {.key = "revenue", .event_key = "purchase", .kind = MetricKind::kSum, .cap = 50.0}));
    ASSERT_OK(store_->PutMetric("shop", {.key = "clicks", .event_key = "click", .kind = MetricKind::kCount}));
    ASSERT_OK(store_->PutMetric("shop", {.key = "basket", .event_key = "purchase", .kind = MetricKind::kMean,
                                         .lower_is_better = true}));
  }
  Iteration Spec() {
    Iteration it;
    it.control = 0;
    it.metrics = {"buy", "revenue", "clicks", "basket"};
    it.weights = {1, 1, 1};
    return it;
  }
};

TEST_F(ExperimentsTest, IterationsStartStopAndRefuseWhatDoesNotFit) {
  Iteration bad = Spec();
  bad.control = 3;
  EXPECT_EQ(rules::ErrorField(store_->StartIteration("shop", "production", "banner", bad).status()), "control");
  bad = Spec();
  bad.weights = {1, 1};
  EXPECT_EQ(rules::ErrorField(store_->StartIteration("shop", "production", "banner", bad).status()), "weights");
  bad = Spec();
  bad.metrics = {"buy", "nope"};
  auto unknown = store_->StartIteration("shop", "production", "banner", bad);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(rules::ErrorField(unknown.status()), "metrics[1]");
  EXPECT_EQ(store_->StartIteration("shop", "production", "nope", Spec()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->StopIteration("shop", "production", "banner").status().code(), absl::StatusCode::kFailedPrecondition);

  clock_ = 1000;
  ASSERT_OK_AND_ASSIGN(Iteration first, store_->StartIteration("shop", "production", "banner", Spec()));
  EXPECT_EQ(first.number, 1);
  EXPECT_EQ(first.started_ms, 1000);
  clock_ = 2000;
  ASSERT_OK_AND_ASSIGN(Iteration second, store_->StartIteration("shop", "production", "banner", Spec()));
  EXPECT_EQ(second.number, 2);
  clock_ = 3000;
  ASSERT_OK_AND_ASSIGN(Iteration stopped, store_->StopIteration("shop", "production", "banner"));
  EXPECT_EQ(stopped.ended_ms, 3000);
  Reopen();
  ASSERT_OK_AND_ASSIGN(std::vector<Iteration> all, store_->ListIterations("shop", "production", "banner"));
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].ended_ms, 2000);  // starting the second ended the first
  EXPECT_EQ(all[1].ended_ms, 3000);
  EXPECT_EQ(all[1].metrics, Spec().metrics);
  ASSERT_OK_AND_ASSIGN(std::vector<Metric> metrics, store_->ListMetrics("shop"));
  EXPECT_EQ(metrics.size(), 4u);
}

// What a unit contributes, by the rules of DESIGN §8, computed from the raw events.
struct Model {
  struct Unit {
    std::set<int> variations;
    int64_t first = INT64_MAX;
    std::vector<std::pair<int64_t, std::pair<std::string, double>>> events;  // time, (event, value)
  };
  std::map<std::string, Unit> units;
  MetricSums Sums(const Metric& m, int variation) const {
    MetricSums s;
    for (const auto& [key, u] : units) {
      if (u.variations.size() != 1 || *u.variations.begin() != variation) continue;
      double count = 0, total = 0;
      for (const auto& [t, ev] : u.events) {
        if (t < u.first || ev.first != m.event_key) continue;
        count += 1;
        total += ev.second;
      }
      double v = m.kind == MetricKind::kConversion ? (count > 0) : m.kind == MetricKind::kCount ? count
                 : m.kind == MetricKind::kSum ? total : (count > 0 ? total / count : 0);
      if (m.cap.has_value()) v = std::min(v, *m.cap);
      s.units += 1;
      s.sum += v;
      s.sum_of_squares += v * v;
    }
    return s;
  }
};

TEST_F(ExperimentsTest, UnitsJoinedAcrossBatchesMatchABruteForceModel) {
  clock_ = 10000;
  ASSERT_OK_AND_ASSIGN(Iteration it, store_->StartIteration("shop", "production", "banner", Spec()));
  std::mt19937_64 rng(99);
  Model model;
  std::vector<UnitExposure> exposures;
  std::vector<UnitEvent> events;
  for (int u = 0; u < 400; ++u) {
    std::string key = "u" + std::to_string(u);
    int variation = static_cast<int>(rng() % 3);
    int64_t first = 10000 + static_cast<int64_t>(rng() % 1000);
    exposures.push_back({"banner", variation, "user", key, first});
    model.units[key].variations.insert(variation);
    model.units[key].first = first;
    if (u % 25 == 0) {  // seen again with another variation: left out
      int other = (variation + 1) % 3;
      exposures.push_back({"banner", other, "user", key, first + 5});
      model.units[key].variations.insert(other);
    } else if (u % 7 == 0) {
      exposures.push_back({"banner", variation, "user", key, first + 50});  // again, same one
    }
    for (int e = static_cast<int>(rng() % 4); e > 0; --e) {
      // Some events come before the unit's first exposure (not counted).
      int64_t t = first - 200 + static_cast<int64_t>(rng() % 800);
      bool purchase = rng() % 2 == 0;
      double value = purchase ? static_cast<double>(rng() % 40) : 1;
      events.push_back({purchase ? "purchase" : "click", {{"device", "d1"}, {"user", key}}, value, t});
      model.units[key].events.push_back({t, {purchase ? "purchase" : "click", value}});
    }
  }
  // Units never exposed, events before the iteration, and exposures of another kind count for nothing.
  events.push_back({"purchase", {{"user", "stranger"}}, 10, 10500});
  events.push_back({"purchase", {{"user", "u1"}}, 10, 5000});
  exposures.push_back({"banner", 1, "device", "d1", 10500});
  // In batches, in random order; one batch is sent twice.
  std::shuffle(exposures.begin(), exposures.end(), rng);
  std::shuffle(events.begin(), events.end(), rng);
  size_t batches = 7;
  for (size_t b = 0; b < batches; ++b) {
    std::vector<UnitExposure> ex(exposures.begin() + b * exposures.size() / batches, exposures.begin() + (b + 1) * exposures.size() / batches);
    std::vector<UnitEvent> ev;
    // Exposures of a batch travel with the events sent after them: all events go in the last batch.
    if (b + 1 == batches) ev = events;
    ASSERT_OK_AND_ASSIGN(storage::ExperimentBatchResult applied, store_->RecordExperimentBatch("shop", "production", "batch-" + std::to_string(b), ex, ev));
    EXPECT_FALSE(applied.duplicate);
    EXPECT_TRUE(applied.refused.empty());
  }
  ASSERT_OK_AND_ASSIGN(ExperimentBatchResult again, store_->RecordExperimentBatch("shop", "production", "batch-3", {exposures[0]}, {}));
  EXPECT_TRUE(again.duplicate);
  Reopen();  // durable
  ASSERT_OK_AND_ASSIGN(IterationSums sums, store_->GetIterationSums("shop", "production", "banner", it.number));
  int64_t multiple = 0;
  std::vector<int64_t> units(3, 0);
  for (const auto& [key, u] : model.units) {
    if (u.variations.size() > 1) ++multiple; else ++units[*u.variations.begin()];
  }
  EXPECT_EQ(sums.multiple_exposures, multiple);
  EXPECT_EQ(sums.units, units);
  ASSERT_OK_AND_ASSIGN(std::vector<Metric> metrics, store_->ListMetrics("shop"));
  ASSERT_EQ(sums.metrics.size(), 4u);
  for (const auto& [key, per] : sums.metrics) {
    const Metric& m = *std::find_if(metrics.begin(), metrics.end(), [&](const Metric& d) { return d.key == key; });
    for (int v = 0; v < 3; ++v) {
      MetricSums want = model.Sums(m, v);
      EXPECT_EQ(per[v].units, want.units) << key << " " << v;
      EXPECT_NEAR(per[v].sum, want.sum, 1e-9) << key << " " << v;
      EXPECT_NEAR(per[v].sum_of_squares, want.sum_of_squares, 1e-6) << key << " " << v;
    }
  }
}

TEST_F(ExperimentsTest, NothingRunsNothingCountsAndOldBatchIdsAreForgottenAfterADay) {
  clock_ = 1000;
  ASSERT_OK_AND_ASSIGN(ExperimentBatchResult applied, store_->RecordExperimentBatch("shop", "production", "b1",
                                                                   {{"banner", 0, "user", "u1", 1000}}, {}));
  EXPECT_FALSE(applied.duplicate);
  EXPECT_TRUE(applied.refused.empty());  // no iteration runs: nothing to be early for
  ASSERT_OK_AND_ASSIGN(Iteration it, store_->StartIteration("shop", "production", "banner", Spec()));
  ASSERT_OK_AND_ASSIGN(IterationSums sums, store_->GetIterationSums("shop", "production", "banner", it.number));
  EXPECT_EQ(sums.units, (std::vector<int64_t>{0, 0, 0}));
  EXPECT_TRUE(store_->RecordExperimentBatch("shop", "production", "b1", {}, {})->duplicate);
  clock_ = 1000 + 25 * 3600 * 1000;
  ASSERT_OK(store_->PruneHistory());
  EXPECT_FALSE(store_->RecordExperimentBatch("shop", "production", "b1", {}, {})->duplicate);
}

// More ids than one chunk of the prune's deletions: every expired one is forgotten, the
// recent one is kept.
TEST_F(ExperimentsTest, MoreExpiredBatchIdsThanOneChunkAreAllForgotten) {
  clock_ = 1000;
  for (int i = 0; i < 10050; ++i) {
    ASSERT_OK(store_->RecordExperimentBatch("shop", "production", StrCat("old", i), {}, {}).status());
  }
  clock_ = 1000 + 25 * 3600 * 1000;
  ASSERT_OK(store_->RecordExperimentBatch("shop", "production", "recent", {}, {}).status());
  ASSERT_OK(store_->PruneHistory());
  EXPECT_FALSE(store_->RecordExperimentBatch("shop", "production", "old0", {}, {})->duplicate);
  EXPECT_FALSE(store_->RecordExperimentBatch("shop", "production", "old10049", {}, {})->duplicate);
  EXPECT_TRUE(store_->RecordExperimentBatch("shop", "production", "recent", {}, {})->duplicate);
}

TEST_F(ExperimentsTest, ExposuresBeforeTheRunningIterationAreRefusedByIndex) {
  clock_ = 50000;
  ASSERT_OK_AND_ASSIGN(Iteration it, store_->StartIteration("shop", "production", "banner", Spec()));
  ASSERT_OK_AND_ASSIGN(ExperimentBatchResult r,
                       store_->RecordExperimentBatch("shop", "production", "b2",
                                                     {{"banner", 0, "user", "u1", 50001},
                                                      {"banner", 1, "user", "u2", 49999},
                                                      {"banner", 2, "user", "u3", 50000}},
                                                     {}));
  ASSERT_EQ(r.refused.size(), 1u);
  EXPECT_EQ(r.refused[0].first, 1u);
  EXPECT_EQ(r.refused[0].second, "before iteration 1 of the experiment started");
  ASSERT_OK_AND_ASSIGN(IterationSums sums, store_->GetIterationSums("shop", "production", "banner", it.number));
  EXPECT_EQ(sums.units, (std::vector<int64_t>{1, 0, 1}));
}

// An SDK that has not yet heard of a new allocation still serves the old one for a moment;
// its exposures say which flag version they were evaluated at, and those from before the
// version that started the running iteration are refused (else a 100 % stage would count
// control units, a sample-ratio mismatch that is not one).
TEST_F(ExperimentsTest, ExposuresEvaluatedBeforeTheIterationsFlagVersionAreRefused) {
  clock_ = 1000;
  auto rollout = [&](int treatment) {
    return gonfalon::StrCat(R"({"on":true,"offVariation":0,"fallthrough":{"rollout":{"kind":"experiment","variations":[)",
                  R"({"variation":0,"weight":)", 100000 - treatment, R"(},{"variation":1,"weight":)", treatment, "}]}}}");
  };
  ASSERT_OK_AND_ASSIGN(AppliedChangeSet first, ApplyOne(ItemKind::kFlag, "banner", rollout(50000).c_str()));
  clock_ = 2000;
  ASSERT_OK_AND_ASSIGN(AppliedChangeSet second, ApplyOne(ItemKind::kFlag, "banner", rollout(100000).c_str()));
  int64_t old_version = first.items[0].version, version = second.items[0].version;
  ASSERT_OK_AND_ASSIGN(auto iterations, store_->ListIterations("shop", "production", "banner"));
  ASSERT_EQ(iterations.size(), 2u);
  EXPECT_EQ(iterations[1].flag_version, version);
  ASSERT_OK_AND_ASSIGN(ExperimentBatchResult r,
                       store_->RecordExperimentBatch("shop", "production", "",
                                                     {{"banner", 0, "user", "stale", 2001, old_version},
                                                      {"banner", 1, "user", "fresh", 2001, version},
                                                      {"banner", 1, "user", "unknown", 2001, 0}},
                                                     {}));
  ASSERT_EQ(r.refused.size(), 1u);
  EXPECT_EQ(r.refused[0].first, 0u);
  EXPECT_EQ(r.refused[0].second, gonfalon::StrCat("evaluated at flag version ", old_version, ", before iteration 2 of the experiment started (version ",
                                        version, ")"));
  ASSERT_OK_AND_ASSIGN(IterationSums sums, store_->GetIterationSums("shop", "production", "banner", 2));
  EXPECT_EQ(sums.units, (std::vector<int64_t>{0, 2, 0}));
}

TEST_F(ExperimentsTest, ADeletedProjectTakesItsExperimentsAlong) {
  clock_ = 1000;
  ASSERT_OK(store_->StartIteration("shop", "production", "banner", Spec()));
  ASSERT_OK(store_->RecordExperimentBatch("shop", "production", "b1", {{"banner", 0, "user", "u1", 1000}}, {}).status());
  ASSERT_OK(store_->DeleteProject("shop", actor_));
  MakeShop();
  FlagMeta m;
  m.key = "banner";
  m.variations = {rules::Value("a"), rules::Value("b"), rules::Value("c")};
  ASSERT_OK(store_->CreateFlag("shop", m, actor_, ""));
  // Nothing of the old project shows: no metrics, no iterations, no units, no batch ids.
  EXPECT_TRUE(store_->ListMetrics("shop")->empty());
  EXPECT_TRUE(store_->ListIterations("shop", "production", "banner")->empty());
  ASSERT_OK(store_->PutMetric("shop", {.key = "buy", .event_key = "purchase", .kind = MetricKind::kConversion}));
  Iteration spec = Spec();
  spec.metrics = {"buy"};
  ASSERT_OK_AND_ASSIGN(Iteration it, store_->StartIteration("shop", "production", "banner", spec));
  EXPECT_EQ(it.number, 1);
  ASSERT_OK_AND_ASSIGN(ExperimentBatchResult again,
                       store_->RecordExperimentBatch("shop", "production", "b1", {{"banner", 1, "user", "u1", 1000}}, {}));
  EXPECT_FALSE(again.duplicate);
  ASSERT_OK_AND_ASSIGN(IterationSums sums, store_->GetIterationSums("shop", "production", "banner", 1));
  EXPECT_EQ(sums.units, (std::vector<int64_t>{0, 1, 0}));  // u1 is new: not a multiple exposure
  EXPECT_EQ(sums.multiple_exposures, 0);
}

TEST_F(ExperimentsTest, TheDailySeriesKeepsEachDaysLastSums) {
  const int64_t day = 24LL * 3600 * 1000;
  clock_ = 10 * day + 1000;
  ASSERT_OK_AND_ASSIGN(Iteration it, store_->StartIteration("shop", "production", "banner", Spec()));
  ASSERT_OK(store_->RecordExperimentBatch("shop", "production", "", {{"banner", 0, "user", "u1", clock_}}, {}).status());
  ASSERT_OK(store_->RecordExperimentBatch("shop", "production", "", {{"banner", 1, "user", "u2", clock_ + 1}},
                                          {{"purchase", {{"user", "u2"}}, 20, clock_ + 2}}).status());
  clock_ = 11 * day + 5;  // the next day
  ASSERT_OK(store_->RecordExperimentBatch("shop", "production", "", {{"banner", 2, "user", "u3", clock_}}, {}).status());
  // A batch that touches no running iteration adds no day.
  ASSERT_OK(store_->RecordExperimentBatch("shop", "production", "", {{"checkout", 0, "user", "u4", clock_}}, {}).status());
  ASSERT_OK_AND_ASSIGN(IterationSums sums, store_->GetIterationSums("shop", "production", "banner", it.number));
  ASSERT_EQ(sums.days.size(), 2u);
  EXPECT_EQ(sums.days[0].day_ms, 10 * day);
  EXPECT_EQ(sums.days[0].units, (std::vector<int64_t>{1, 1, 0}));
  EXPECT_EQ(sums.days[1].day_ms, 11 * day);
  EXPECT_EQ(sums.days[1].units, (std::vector<int64_t>{1, 1, 1}));
  // "buy" (conversion) is the first metric: u2 converted on day 10, and still counts on day 11.
  ASSERT_EQ(sums.days[1].metrics.size(), 4u);
  EXPECT_EQ(sums.days[0].metrics[0][1].sum, 1);
  EXPECT_EQ(sums.days[1].metrics[0][1].sum, 1);
  EXPECT_EQ(sums.days[1].metrics[0][2].units, 1);
}

TEST_F(ExperimentsTest, ArchivingAnEndedIterationDeletesItsUnitsAndKeepsItsSums) {
  clock_ = 1000;
  ASSERT_OK_AND_ASSIGN(Iteration it, store_->StartIteration("shop", "production", "banner", Spec()));
  std::vector<UnitExposure> exposures;
  for (int i = 0; i < 300; ++i) exposures.push_back({"banner", i % 3, "user", "u" + std::to_string(i), 1000});
  ASSERT_OK(store_->RecordExperimentBatch("shop", "production", "", exposures, {}).status());
  EXPECT_EQ(store_->ArchiveIteration("shop", "production", "banner", it.number).status().code(),
            absl::StatusCode::kFailedPrecondition);  // still running
  ASSERT_OK(store_->StopIteration("shop", "production", "banner").status());
  auto unit_states = [&]() -> int64_t {
    store_.reset();
    absl::StatusOr<int64_t> n = testing::CountRaw(dir_ + "/db", "experiments", "u/shop/production/");
    Reopen();
    return n.ok() ? *n : -1;
  };
  EXPECT_EQ(unit_states(), 300);
  ASSERT_OK_AND_ASSIGN(Iteration archived, store_->ArchiveIteration("shop", "production", "banner", it.number));
  EXPECT_EQ(unit_states(), 0);
  EXPECT_EQ(archived.archived_ms, 1000);
  EXPECT_EQ(store_->ListIterations("shop", "production", "banner")->back().archived_ms, 1000);
  ASSERT_OK_AND_ASSIGN(IterationSums sums, store_->GetIterationSums("shop", "production", "banner", it.number));
  EXPECT_EQ(sums.units, (std::vector<int64_t>{100, 100, 100}));
}

TEST_F(ExperimentsTest, ConcurrentBatchesBuildOnEachOthersPendingWrites) {
  // Four writers at once: each batch commits outside the experiment lock while the next one
  // joins against its records in flight. Each writer's batch b exposes 50 new units and sends
  // one purchase of 10 for each unit of its batch b-1, so the totals do not depend on how the
  // writers interleave; lost updates of the shared sums would show.
  clock_ = 1000;
  ASSERT_OK_AND_ASSIGN(Iteration it, store_->StartIteration("shop", "production", "banner", Spec()));
  constexpr int kWriters = 4, kBatches = 30, kUnits = 50;
  std::vector<std::thread> writers;
  std::atomic<int> failures{0};
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int b = 0; b <= kBatches; ++b) {
        std::vector<UnitExposure> ex;
        std::vector<UnitEvent> ev;
        for (int u = 0; u < kUnits; ++u) {
          if (b < kBatches) ex.push_back({"banner", u % 3, "user", gonfalon::StrCat("w", w, "-b", b, "-u", u), 1000});
          if (b > 0) ev.push_back({"purchase", {{"user", gonfalon::StrCat("w", w, "-b", b - 1, "-u", u)}}, 10, 1001});
        }
        if (!store_->RecordExperimentBatch("shop", "production", gonfalon::StrCat("w", w, "-", b), ex, ev).ok()) ++failures;
      }
    });
  }
  for (auto& t : writers) t.join();
  EXPECT_EQ(failures.load(), 0);
  ASSERT_OK_AND_ASSIGN(IterationSums sums, store_->GetIterationSums("shop", "production", "banner", it.number));
  // Unit u of a batch gets variation u % 3: 17, 17 and 16 of every 50.
  std::vector<int64_t> want(3, 0);
  for (int u = 0; u < kUnits; ++u) want[u % 3] += kWriters * kBatches;
  EXPECT_EQ(sums.units, want);
  // "buy" (conversion) and "revenue" (sum, capped at 50): every unit bought once for 10.
  for (const auto& [key, per] : sums.metrics) {
    for (int v = 0; v < 3; ++v) {
      if (key == "buy") {
        EXPECT_EQ(per[v].sum, want[v]) << v;
      } else if (key == "revenue") {
        EXPECT_EQ(per[v].sum, 10.0 * want[v]) << v;
      }
      EXPECT_EQ(per[v].units, want[v]) << key << " " << v;
    }
  }
}

TEST_F(ExperimentsTest, ConcurrentBatchesOnTheSameUnitsLoseNoEvent) {
  // Units are read without the experiment lock and joined under it: a batch that became
  // durable while another one read must still count in that one's join. Four writers click
  // the same 30 units in each round (units 0-29, then 30-59, ...), so every unit ends with
  // exactly 80 clicks; a stale read would lose some, in the sum and the sum of squares.
  clock_ = 1000;
  ASSERT_OK_AND_ASSIGN(Iteration it, store_->StartIteration("shop", "production", "banner", Spec()));
  constexpr int kWriters = 4, kRounds = 40, kPerBatch = 30, kUnits = 60;
  std::vector<UnitExposure> exposed;
  for (int u = 0; u < kUnits; ++u) exposed.push_back({"banner", u % 3, "user", gonfalon::StrCat("u", u), 1000});
  ASSERT_OK(store_->RecordExperimentBatch("shop", "production", "expose", exposed, {}).status());
  std::vector<std::thread> writers;
  std::atomic<int> failures{0};
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int b = 0; b < kRounds; ++b) {
        std::vector<UnitEvent> ev;
        for (int i = 0; i < kPerBatch; ++i) ev.push_back({"click", {{"user", gonfalon::StrCat("u", (b * kPerBatch + i) % kUnits)}}, 1, 1001});
        if (!store_->RecordExperimentBatch("shop", "production", gonfalon::StrCat("w", w, "-", b), {}, ev).ok()) ++failures;
      }
    });
  }
  for (auto& t : writers) t.join();
  EXPECT_EQ(failures.load(), 0);
  ASSERT_OK_AND_ASSIGN(IterationSums sums, store_->GetIterationSums("shop", "production", "banner", it.number));
  constexpr double kClicks = kWriters * kRounds * kPerBatch / kUnits;  // 80 per unit
  for (const auto& [key, per] : sums.metrics) {
    if (key != "clicks") continue;
    for (int v = 0; v < 3; ++v) {
      EXPECT_EQ(per[v].units, 20) << v;
      EXPECT_EQ(per[v].sum, 20 * kClicks) << v;
      EXPECT_EQ(per[v].sum_of_squares, 20 * kClicks * kClicks) << v;
    }
  }
}

}  // namespace
}  // namespace gonfalon::storage
