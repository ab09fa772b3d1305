#include "gonfalon/rules/evaluator.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "gonfalon/rules/codec.h"

namespace gonfalon::rules {
namespace {

std::shared_ptr<const Snapshot> Build(const char* json, ItemJson item_json = ItemJson::kOnDemand) {
  auto env = ParseEnvironment(json);
  EXPECT_TRUE(env.ok()) << env.status();
  return Snapshot::Build(std::move(*env), {}, item_json);
}

constexpr char kData[] = R"({
  "flags": {
    "rollout": {"key": "rollout", "on": true, "salt": "s", "variations": ["a", "b"],
      "fallthrough": {"rollout": {"variations": [{"variation": 0, "weight": 50000},
                                                  {"variation": 1, "weight": 50000}]}}},
    "ruled": {"key": "ruled", "on": true, "variations": [false, true], "fallthrough": {"variation": 0},
      "rules": [{"id": "r0", "clauses": [{"contextKind": "user", "attribute": "country", "op": "in",
                                          "values": ["FR"]}], "variation": 1}]},
    "gated": {"key": "gated", "on": true, "variations": [false, true], "offVariation": 0,
      "fallthrough": {"variation": 1}, "prerequisites": [{"key": "ruled", "variation": 1}],
      "clientSideAvailability": {"usingEnvironmentId": true}}
  }
})";

TEST(EvaluatorTest, ValuePointsIntoTheSnapshot) {
  auto snap = Build(kData);
  Context ctx = Context::Builder("user", "u1").Set("country", Value("FR")).Build();
  Detail d = Evaluate(*snap, "ruled", ctx);
  ASSERT_NE(d.value, nullptr);
  EXPECT_EQ(d.value, &FlagModel(*snap->FindFlag("ruled")).variations[1]);
  EXPECT_EQ(d.reason.rule_id, "r0");
}

TEST(EvaluatorTest, ExplainTraceShowsRulesClausesAndValuesRead) {
  // Also when the compiled model no longer holds the operator's name (the server's snapshots).
  for (ItemJson item_json : {ItemJson::kOnDemand, ItemJson::kEager}) {
    auto snap = Build(kData, item_json);
    Context ctx = Context::Builder("user", "u1").Set("country", Value("DE")).Build();
    Trace trace;
    Evaluate(*snap, "ruled", ctx, &trace);
    std::string json = ToJson(trace.steps());
    EXPECT_EQ(json,
              R"([{"step":"rule","index":0,"id":"r0","clauses":[{"contextKind":"user","attribute":"country","op":"in","values":["FR"],"read":"DE","matched":false}],"matched":false},{"step":"fallthrough"}])");
  }
}

TEST(EvaluatorTest, EagerJsonSnapshotsKeepTheJsonAndDropWhatOnlyItNeeds) {
  auto eager = Build(kData, ItemJson::kEager);
  auto on_demand = Build(kData);
  // The same payload, though the compiled models lack the salt (bucketing used it first).
  EXPECT_EQ(eager->PayloadJson(), on_demand->PayloadJson());
  EXPECT_NE(eager->PayloadJson().find(R"("salt":"s")"), std::string::npos);
  EXPECT_EQ(FlagModel(*eager->FindFlag("rollout")).salt, "");
  EXPECT_EQ(FlagModel(*on_demand->FindFlag("rollout")).salt, "s");
  EXPECT_EQ(eager->ToEnvironment(), on_demand->ToEnvironment());
  for (int i = 0; i < 200; ++i) {
    Context ctx = Context::Builder("user", "u" + std::to_string(i)).Build();
    EXPECT_EQ(Evaluate(*eager, "rollout", ctx).variation_index, Evaluate(*on_demand, "rollout", ctx).variation_index);
  }
}

TEST(EvaluatorTest, ExplainTraceShowsTheBucketAndItsBoundaries) {
  auto snap = Build(kData);
  Trace trace;
  Detail d = Evaluate(*snap, "rollout", Context::Builder("user", "u1").Build(), &trace);
  const Value* bucket = nullptr;
  for (const Value& step : trace.steps().as_array()) {
    if (step.Find("step")->as_string() == "bucket") bucket = &step;
  }
  ASSERT_NE(bucket, nullptr) << ToJson(trace.steps());
  double b = bucket->Find("bucket")->as_number();
  EXPECT_GE(b, bucket->Find("from")->as_number());
  EXPECT_LT(b, bucket->Find("to")->as_number());
  EXPECT_EQ(bucket->Find("variation")->as_number(), d.variation_index);
  EXPECT_EQ(bucket->Find("input")->as_string(), "u1");
}

TEST(EvaluatorTest, ExplainTraceShowsPrerequisites) {
  auto snap = Build(kData);
  Trace trace;
  Evaluate(*snap, "gated", Context::Builder("user", "u1").Build(), &trace);
  EXPECT_NE(ToJson(trace.steps()).find(R"({"step":"prerequisite","key":"ruled","on":true,"required":1,"got":0,"ok":false})"),
            std::string::npos)
      << ToJson(trace.steps());
}

TEST(EvaluatorTest, EvaluateAllVisitsEveryFlagInKeyOrder) {
  auto snap = Build(kData);
  std::vector<std::string> keys;
  EvaluateAll(*snap, Context::Builder("user", "u1").Build(),
              [&](std::string_view key, const Detail&) { keys.emplace_back(key); });
  EXPECT_EQ(keys, (std::vector<std::string>{"gated", "rollout", "ruled"}));
  keys.clear();
  EvaluateAll(
      *snap, Context::Builder("user", "u1").Build(),
      [&](std::string_view key, const Detail&) { keys.emplace_back(key); }, /*client_side_only=*/true);
  EXPECT_EQ(keys, (std::vector<std::string>{"gated"}));
}

TEST(EvaluatorTest, ReasonEncodingMatchesLaunchDarkly) {
  Reason r;
  r.kind = ReasonKind::kRuleMatch;
  r.rule_index = 2;
  r.rule_id = "abc";
  r.in_experiment = true;
  EXPECT_EQ(ToJson(ReasonToValue(r)), R"({"kind":"RULE_MATCH","ruleIndex":2,"ruleId":"abc","inExperiment":true})");
  Reason e;
  e.kind = ReasonKind::kError;
  e.error_kind = ErrorKind::kWrongType;
  EXPECT_EQ(ToJson(ReasonToValue(e)), R"({"kind":"ERROR","errorKind":"WRONG_TYPE"})");
}

TEST(EvaluatorTest, ConcurrentEvaluationsAgreeWithSingleThreaded) {
  auto snap = Build(kData);
  std::vector<Context> contexts;
  std::vector<int> expected;
  for (int i = 0; i < 200; ++i) {
    contexts.push_back(Context::Builder("user", "user-" + std::to_string(i)).Build());
    expected.push_back(Evaluate(*snap, "rollout", contexts.back()).variation_index);
  }
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int round = 0; round < 50; ++round) {
        for (size_t i = 0; i < contexts.size(); ++i) {
          if (Evaluate(*snap, "rollout", contexts[i]).variation_index != expected[i]) ++mismatches;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
  // Both variations actually occur, so the comparison above means something.
  EXPECT_NE(std::count(expected.begin(), expected.end(), 0), 0);
  EXPECT_NE(std::count(expected.begin(), expected.end(), 1), 0);
}

}  // namespace
}  // namespace gonfalon::rules
