// Release plans in the store, on its fake clock: the first stage is applied at start, a stage
// advances only when its time and unit gates pass (units counted in its experiment
// iteration), the last one completes the plan; a hand edit of the traffic pauses it, resume
// re-applies the stage; roll back sends all traffic to control; bad plans are refused.
#include <gtest/gtest.h>

#include <set>

#include "gonfalon/rules/evaluator.h"
#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/snapshot.h"
#include "gonfalon/rules/str_cat.h"
#include "store_test_util.h"

namespace gonfalon::storage {
namespace {

class ReleasePlansTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    MakeShop();
    ASSERT_OK(ApplyOne(ItemKind::kFlag, "checkout", R"({"on":true,"fallthrough":{"variation":0},"offVariation":0})").status());
  }
  ReleasePlan Spec() {
    ReleasePlan p;
    p.project = "shop";
    p.environment = "production";
    p.flag = "checkout";
    p.control = 0;
    p.treatment = 1;
    p.stages = {{10000, 60'000, 0}, {50000, 60'000, 100}, {100000, 0, 0}};
    return p;
  }
  // The fallthrough's weights: {control, treatment}.
  std::pair<int, int> Weights() {
    auto f = store_->GetFlag("shop", "production", "checkout");
    if (!f.ok() || !f->fallthrough.rollout.has_value()) return {-1, -1};
    int w[2] = {0, 0};
    for (const auto& wv : f->fallthrough.rollout->variations) w[wv.variation] = wv.weight;
    return {w[0], w[1]};
  }
  // `n` units exposed in the flag's running iteration.
  void Expose(int n, int from) {
    std::vector<UnitExposure> ex;
    for (int i = 0; i < n; ++i) ex.push_back({"checkout", i % 2, "user", gonfalon::StrCat("u", from + i), clock_.load()});
    ASSERT_OK(store_->RecordExperimentBatch("shop", "production", "", ex, {}).status());
  }
};

TEST_F(ReleasePlansTest, StagesAdvanceOnTheirGatesAndTheLastCompletesThePlan) {
  ASSERT_OK_AND_ASSIGN(ReleasePlan plan, store_->StartReleasePlan(Spec(), Actor{"ada"}));
  EXPECT_EQ(plan.status, PlanStatus::kActive);
  EXPECT_EQ(plan.stage, 0);
  EXPECT_EQ(Weights(), (std::pair<int, int>{90000, 10000}));
  ASSERT_OK_AND_ASSIGN(HistoryPage h, store_->History("shop", "production", std::nullopt, std::nullopt, std::nullopt, 1));
  EXPECT_EQ(h.records[0].actor, "release:" + plan.id);
  ASSERT_OK_AND_ASSIGN(auto iterations, store_->ListIterations("shop", "production", "checkout"));
  ASSERT_EQ(iterations.size(), 1u);  // the stage is an experiment iteration
  EXPECT_EQ(iterations[0].ended_ms, 0);

  clock_ += 59'999;  // not yet
  ASSERT_OK_AND_ASSIGN(auto changed, store_->RunReleasePlans());
  EXPECT_TRUE(changed.empty());
  clock_ += 1;
  ASSERT_OK_AND_ASSIGN(changed, store_->RunReleasePlans());
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].stage, 1);
  EXPECT_EQ(Weights(), (std::pair<int, int>{50000, 50000}));
  ASSERT_OK_AND_ASSIGN(iterations, store_->ListIterations("shop", "production", "checkout"));
  ASSERT_EQ(iterations.size(), 2u);  // a new allocation: a new iteration

  // Stage 2 needs 100 units besides its minute.
  clock_ += 120'000;
  Expose(60, 0);
  ASSERT_OK_AND_ASSIGN(changed, store_->RunReleasePlans());
  EXPECT_TRUE(changed.empty());
  Expose(40, 60);
  ASSERT_OK_AND_ASSIGN(changed, store_->RunReleasePlans());
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].stage, 2);
  EXPECT_EQ(Weights(), (std::pair<int, int>{0, 100000}));
  ASSERT_OK_AND_ASSIGN(changed, store_->RunReleasePlans());  // the last stage has no gate
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].status, PlanStatus::kCompleted);
  ASSERT_OK_AND_ASSIGN(bool any, store_->AnyActiveReleasePlan());
  EXPECT_FALSE(any);
  ASSERT_OK_AND_ASSIGN(std::optional<ReleasePlan> stored, store_->GetReleasePlan("shop", "production", "checkout"));
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->status, PlanStatus::kCompleted);
  EXPECT_EQ(stored->events.size(), 4u);  // started, stage 2, stage 3, completed
  // Reopened, it is as it was.
  Reopen();
  ASSERT_OK_AND_ASSIGN(stored, store_->GetReleasePlan("shop", "production", "checkout"));
  EXPECT_EQ(stored->status, PlanStatus::kCompleted);
}

TEST_F(ReleasePlansTest, AHandEditOfTheTrafficPausesItAndResumeReappliesTheStage) {
  ASSERT_OK_AND_ASSIGN(ReleasePlan plan, store_->StartReleasePlan(Spec(), Actor{"ada"}));
  // Editing something else (targets) does not pause it.
  ASSERT_OK_AND_ASSIGN(rules::Flag f, store_->GetFlag("shop", "production", "checkout"));
  ChangeSet cs;
  cs.project = "shop";
  cs.environment = "production";
  cs.actor = actor_;
  rules::Flag edited = f;
  edited.targets.push_back({"user", {"qa"}, 1});
  cs.items.push_back({ItemKind::kFlag, "checkout", f.version, rules::EncodeFlag(edited), false});
  ASSERT_OK(store_->Apply(cs).status());
  ASSERT_OK_AND_ASSIGN(auto changed, store_->RunReleasePlans());
  EXPECT_TRUE(changed.empty());
  // Sending everyone to the treatment by hand does.
  ASSERT_OK(ApplyOne(ItemKind::kFlag, "checkout", R"({"on":true,"fallthrough":{"variation":1},"offVariation":0})").status());
  ASSERT_OK_AND_ASSIGN(changed, store_->RunReleasePlans());
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].status, PlanStatus::kPaused);
  EXPECT_NE(changed[0].reason.find("changed by hand"), std::string::npos) << changed[0].reason;
  clock_ += 3'600'000;  // paused: nothing moves
  ASSERT_OK_AND_ASSIGN(changed, store_->RunReleasePlans());
  EXPECT_TRUE(changed.empty());
  EXPECT_EQ(Weights(), (std::pair<int, int>{-1, -1}));  // the hand edit stands
  ASSERT_OK_AND_ASSIGN(ReleasePlan resumed, store_->ActOnReleasePlan("shop", "production", "checkout", PlanAction::kResume, Actor{"ada"}, ""));
  EXPECT_EQ(resumed.status, PlanStatus::kActive);
  EXPECT_EQ(resumed.stage_started_ms, clock_.load());
  EXPECT_EQ(Weights(), (std::pair<int, int>{90000, 10000}));
  EXPECT_EQ(store_->ActOnReleasePlan("shop", "production", "checkout", PlanAction::kResume, actor_, "").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ReleasePlansTest, RollBackSendsEveryoneToControlAndANewPlanMayStart) {
  ASSERT_OK(store_->StartReleasePlan(Spec(), Actor{"ada"}).status());
  EXPECT_EQ(store_->StartReleasePlan(Spec(), Actor{"ada"}).status().code(), absl::StatusCode::kFailedPrecondition);  // one at a time
  ASSERT_OK_AND_ASSIGN(ReleasePlan back, store_->ActOnReleasePlan("shop", "production", "checkout", PlanAction::kRollBack, Actor{"bob"}, "errors up"));
  EXPECT_EQ(back.status, PlanStatus::kRolledBack);
  EXPECT_NE(back.reason.find("errors up"), std::string::npos);
  EXPECT_EQ(Weights(), (std::pair<int, int>{100000, 0}));
  ASSERT_OK_AND_ASSIGN(HistoryPage h, store_->History("shop", "production", std::nullopt, std::nullopt, std::nullopt, 1));
  EXPECT_NE(h.records[0].comment.find("rolled back by bob: errors up"), std::string::npos) << h.records[0].comment;
  ASSERT_OK_AND_ASSIGN(ReleasePlan again, store_->StartReleasePlan(Spec(), Actor{"ada"}));
  EXPECT_NE(again.id, back.id);
  ASSERT_OK_AND_ASSIGN(ReleasePlan done, store_->ActOnReleasePlan("shop", "production", "checkout", PlanAction::kComplete, Actor{"ada"}, ""));
  EXPECT_EQ(done.status, PlanStatus::kCompleted);
  EXPECT_EQ(Weights(), (std::pair<int, int>{0, 100000}));
}

TEST_F(ReleasePlansTest, BadPlansAreRefusedWithTheField) {
  auto with = [&](auto edit) {
    ReleasePlan p = Spec();
    edit(p);
    return store_->StartReleasePlan(p, actor_).status();
  };
  auto field_of = [](const absl::Status& s) { return std::string(s.message()); };
  absl::Status s = with([](ReleasePlan& p) { p.treatment = 0; });
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(field_of(s).find("treatmentVariation"), std::string::npos) << s;
  s = with([](ReleasePlan& p) { p.control = 5; });
  EXPECT_NE(field_of(s).find("controlVariation"), std::string::npos) << s;
  s = with([](ReleasePlan& p) { p.stages[1].weight = 5000; });  // narrows
  EXPECT_NE(field_of(s).find("stages[1].weight"), std::string::npos) << s;
  s = with([](ReleasePlan& p) { p.stages.clear(); });
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  s = with([](ReleasePlan& p) { p.rule = "no-such-rule"; });
  EXPECT_NE(field_of(s).find("rule"), std::string::npos) << s;
  s = with([](ReleasePlan& p) { p.flag = "nope"; });
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(auto none, store_->GetReleasePlan("shop", "production", "checkout"));
  EXPECT_FALSE(none.has_value());
  EXPECT_EQ(Weights(), (std::pair<int, int>{-1, -1}));  // untouched
}

TEST_F(ReleasePlansTest, AUnitThatGotTheTreatmentKeepsItAsTheWeightGrows) {
  // Both orders of the two variations in the rollout: treatment listed second, then first.
  for (auto [control, treatment] : {std::pair{0, 1}, std::pair{1, 0}}) {
    ReleasePlan spec = Spec();
    spec.control = control;
    spec.treatment = treatment;
    spec.stages = {{5000, 0, 0}, {20000, 0, 0}, {50000, 0, 0}, {100000, 0, 0}};
    ASSERT_OK(store_->StartReleasePlan(spec, actor_).status());
    std::set<int> before;
    for (size_t stage = 0; stage < spec.stages.size(); ++stage) {
      if (stage > 0) ASSERT_OK(store_->RunReleasePlans().status());
      ASSERT_OK_AND_ASSIGN(rules::Environment env, store_->LoadEnvironment("shop", "production"));
      auto snap = rules::Snapshot::Build(std::move(env));
      std::set<int> now;
      for (int u = 0; u < 4000; ++u) {
        rules::Detail d = rules::Evaluate(*snap, "checkout", rules::Context::Builder("user", gonfalon::StrCat("user-", u)).Build());
        if (d.variation_index == treatment) now.insert(u);
      }
      for (int u : before) EXPECT_TRUE(now.count(u)) << "unit " << u << " lost the treatment at stage " << stage + 1;
      double share = now.size() / 4000.0, want = spec.stages[stage].weight / 100000.0;
      EXPECT_NEAR(share, want, 0.03) << "stage " << stage + 1;
      before = std::move(now);
    }
    ASSERT_OK_AND_ASSIGN(std::optional<ReleasePlan> last, store_->GetReleasePlan("shop", "production", "checkout"));
    ASSERT_OK(store_->RunReleasePlans().status());  // completes it
    ASSERT_OK_AND_ASSIGN(last, store_->GetReleasePlan("shop", "production", "checkout"));
    EXPECT_EQ(last->status, PlanStatus::kCompleted);
  }
}

// Guards are kept with the plan (with the health checks it did not name), the stage's
// iteration measures their metrics against the plan's control, a held plan does not advance,
// and a guard's rollback records what it saw, once, on the stage it judged.
TEST_F(ReleasePlansTest, GuardsAreKeptHoldThePlanAndRecordTheirFiring) {
  ASSERT_OK(store_->PutMetric("shop", {.key = "errors", .event_key = "error", .kind = MetricKind::kConversion, .lower_is_better = true}));
  ReleasePlan spec = Spec();
  spec.control = 1;
  spec.treatment = 0;
  spec.stages = {{10000, 0, 0}, {100000, 0, 0}};
  spec.guards = {PlanGuard{.kind = GuardKind::kMetric, .metric = "errors"},
                 PlanGuard{.kind = GuardKind::kNoTraffic, .action = GuardAction::kNotify, .grace_ms = 1000}};
  spec.alpha = 0.1;
  ASSERT_OK_AND_ASSIGN(ReleasePlan plan, store_->StartReleasePlan(spec, actor_));
  ASSERT_EQ(plan.guards.size(), 3u);  // + the sample-ratio check, pausing
  EXPECT_EQ(plan.guards[2].kind, GuardKind::kSampleRatio);
  EXPECT_EQ(plan.guards[2].action, GuardAction::kPause);
  ASSERT_OK_AND_ASSIGN(std::optional<ReleasePlan> stored, store_->GetReleasePlan("shop", "production", "checkout"));
  ASSERT_EQ(stored->guards.size(), 3u);
  EXPECT_EQ(stored->guards[1].grace_ms, 1000);
  EXPECT_EQ(stored->guards[1].action, GuardAction::kNotify);
  EXPECT_EQ(stored->alpha, 0.1);
  ASSERT_OK_AND_ASSIGN(auto iterations, store_->ListIterations("shop", "production", "checkout"));
  ASSERT_EQ(iterations.size(), 1u);
  EXPECT_EQ(iterations[0].metrics, std::vector<std::string>{"errors"});
  EXPECT_EQ(iterations[0].control, 1);
  ASSERT_OK_AND_ASSIGN(auto active, store_->ListActiveReleasePlans());
  ASSERT_EQ(active.size(), 1u);
  EXPECT_EQ(active[0].id, plan.id);

  // Held: no advance although its gates pass.
  ASSERT_OK_AND_ASSIGN(auto changed, store_->RunReleasePlans({plan.id}));
  EXPECT_TRUE(changed.empty());
  ASSERT_OK_AND_ASSIGN(stored, store_->GetReleasePlan("shop", "production", "checkout"));
  EXPECT_EQ(stored->stage, 0);

  // A guard's judgement of another plan, or of another stage, is refused.
  GuardFiring firing{plan.id, 0, 0, clock_.load(), "metric errors: worse", rules::Value(rules::Object{{"difference", rules::Value(0.04)}})};
  GuardFiring stale = firing;
  stale.plan_id = "rp_000000000000";
  EXPECT_EQ(store_->ActOnReleasePlan("shop", "production", "checkout", PlanAction::kRollBack, actor_, "", &stale).status().code(),
            absl::StatusCode::kFailedPrecondition);
  stale = firing;
  stale.stage = 1;
  EXPECT_EQ(store_->ActOnReleasePlan("shop", "production", "checkout", PlanAction::kRollBack, actor_, "", &stale).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_OK_AND_ASSIGN(ReleasePlan back, store_->ActOnReleasePlan("shop", "production", "checkout", PlanAction::kRollBack,
                                                                  Actor{"release:" + plan.id}, "", &firing));
  EXPECT_EQ(back.status, PlanStatus::kRolledBack);
  EXPECT_EQ(Weights(), (std::pair<int, int>{0, 100000}));  // variation 1, the control, has it all
  ASSERT_TRUE(back.fired.has_value());
  EXPECT_NE(back.reason.find("by guard 1 (metric): metric errors: worse"), std::string::npos) << back.reason;
  ASSERT_OK_AND_ASSIGN(stored, store_->GetReleasePlan("shop", "production", "checkout"));
  ASSERT_TRUE(stored->fired.has_value());
  EXPECT_EQ(stored->fired->guard, 0);
  EXPECT_EQ(stored->fired->summary, "metric errors: worse");
  EXPECT_EQ(stored->fired->figures.Find("difference")->as_number(), 0.04);
  ASSERT_OK_AND_ASSIGN(HistoryPage h, store_->History("shop", "production", std::nullopt, std::nullopt, std::nullopt, 1));
  EXPECT_EQ(h.records[0].actor, "release:" + plan.id);
  EXPECT_NE(h.records[0].comment.find("metric errors: worse"), std::string::npos) << h.records[0].comment;
  // Once: the plan is no longer active.
  EXPECT_EQ(store_->ActOnReleasePlan("shop", "production", "checkout", PlanAction::kRollBack, actor_, "", &firing).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_OK_AND_ASSIGN(active, store_->ListActiveReleasePlans());
  EXPECT_TRUE(active.empty());
}

TEST_F(ReleasePlansTest, AGuardOnAMetricThatDoesNotExistIsRefused) {
  ReleasePlan spec = Spec();
  spec.guards = {PlanGuard{.kind = GuardKind::kThreshold, .metric = "latency", .max = 100}};
  absl::Status s = store_->StartReleasePlan(spec, actor_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("guards[0].metric"), std::string::npos) << s;
  spec.guards.clear();
  spec.alpha = 0;
  EXPECT_EQ(store_->StartReleasePlan(spec, actor_).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->GetReleasePlan("shop", "production", "checkout")->has_value(), false);
}

}  // namespace
}  // namespace gonfalon::storage
