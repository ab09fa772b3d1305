// Experiments through the real server (issue 11): a metric, an iteration started on a flag,
// simulated users' exposures and conversions sent as SDK event batches, and the results route.

#include <gtest/gtest.h>

#include <atomic>
#include <ctime>
#include <random>
#include <thread>
#include <string>

#include "gonfalon/rules/str_cat.h"
#include "server_fixture.h"

namespace gonfalon::e2e {
namespace {

constexpr char kExperiment[] = "/api/v1/projects/shop/environments/production/flags/checkout/experiment";

class ExperimentsE2eTest : public ServerTest {
 protected:
  HttpResponse Events(const std::string& body) {
    return Http(port(), "POST", "/sdk/v1/events", body, Bearer(server_key_));
  }
};

TEST_F(ExperimentsE2eTest, SimulatedUsersWithAKnownEffectGiveResultsThatCoverIt) {
  MakeShop();
  auto metric = Admin("PUT", "/api/v1/projects/shop/metrics/buy", R"({"eventKey":"purchase","kind":"conversion"})");
  ASSERT_EQ(metric.status, 201) << metric.body;
  auto started = Admin("POST", kExperiment, R"({"action":"start","controlVariation":0,"metrics":["buy"],"weights":[50,50]})");
  ASSERT_EQ(started.status, 201) << started.body;
  EXPECT_EQ(J(started).Find("iteration")->as_number(), 1);

  // 4,000 users split at random; variation 1 converts at 20 %, variation 0 at 10 %.
  std::mt19937_64 rng(2026);
  int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  int units[2] = {0, 0};
  for (int batch = 0; batch < 4; ++batch) {
    std::string exposed, metrics;
    for (int i = 0; i < 1000; ++i) {
      std::string user = StrCat("user-", batch, "-", i);
      int v = static_cast<int>(rng() % 2);
      ++units[v];
      StrAppend(&exposed, exposed.empty() ? "" : ",", R"({"flag":"checkout","variation":)", v,
                       R"(,"unitKey":")", user, R"(","time":)", now + 1000, "}");
      if (std::uniform_real_distribution<double>(0, 1)(rng) < (v == 1 ? 0.20 : 0.10)) {
        StrAppend(&metrics, metrics.empty() ? "" : ",", R"({"event":"purchase","units":{"user":")", user,
                         R"("},"time":)", now + 2000, "}");
      }
    }
    std::string body = StrCat(R"({"batchId":"b)", batch, R"(","exposedUnits":[)", exposed, R"(],"metrics":[)", metrics, "]}");
    auto r = Events(body);
    ASSERT_EQ(r.status, 202) << r.body;
    EXPECT_EQ(J(r).Find("rejected")->as_array().size(), 0u) << r.body;
    if (batch == 2) {
      // Sent again after a timeout: applied once.
      auto again = Events(body);
      ASSERT_EQ(again.status, 202);
      EXPECT_TRUE(J(again).Find("duplicate")->as_bool()) << again.body;
    }
  }
  // An exposure from before the iteration started is refused by index; the rest of its batch counts.
  auto early = Events(StrCat(R"({"exposedUnits":[{"flag":"checkout","variation":0,"unitKey":"late-comer"},)",
                             R"({"flag":"checkout","variation":1,"unitKey":"early-bird","time":)", now - 600000, "}]}"));
  ASSERT_EQ(early.status, 202) << early.body;
  ++units[0];
  rules::Value early_answer = J(early);
  EXPECT_EQ(early_answer.Find("accepted")->as_number(), 1) << early.body;
  ASSERT_EQ(early_answer.Find("rejected")->as_array().size(), 1u) << early.body;
  const rules::Value& refused = early_answer.Find("rejected")->as_array()[0];
  EXPECT_EQ(refused.Find("list")->as_string(), "exposedUnits");
  EXPECT_EQ(refused.Find("index")->as_number(), 1);
  EXPECT_EQ(refused.Find("reason")->as_string(), "before iteration 1 of the experiment started");

  auto results = Admin("GET", std::string(kExperiment) + "/results");
  ASSERT_EQ(results.status, 200) << results.body;
  rules::Value res = J(results);
  EXPECT_EQ(res.Find("units")->as_array()[0].as_number(), units[0]);
  EXPECT_EQ(res.Find("units")->as_array()[1].as_number(), units[1]);
  EXPECT_FALSE(res.Find("sampleRatio")->Find("mismatch")->as_bool());
  // The daily series: everything happened today, so one day that matches the totals.
  ASSERT_EQ(res.Find("daily")->as_array().size(), 1u) << results.body;
  const rules::Value& today = res.Find("daily")->as_array()[0];
  char day[16];
  time_t t = static_cast<time_t>(now / 1000);
  tm utc{};
  gmtime_r(&t, &utc);
  std::strftime(day, sizeof day, "%Y-%m-%d", &utc);
  EXPECT_EQ(today.Find("day")->as_string(), day);
  EXPECT_EQ(rules::ToJson(*today.Find("units")), rules::ToJson(*res.Find("units")));
  const rules::Value& today_treatment = today.Find("metrics")->as_array()[0].Find("variations")->as_array()[1];
  const rules::Value& treatment = res.Find("metrics")->as_array()[0].Find("variations")->as_array()[1];
  EXPECT_EQ(today_treatment.Find("mean")->as_number(), treatment.Find("mean")->as_number());
  EXPECT_EQ(rules::ToJson(*today_treatment.Find("differenceInterval")), rules::ToJson(*treatment.Find("differenceInterval")));
  const rules::Array& interval = treatment.Find("differenceInterval")->as_array();
  EXPECT_LT(interval[0].as_number(), 0.10) << results.body;  // covers the true lift of 0.10
  EXPECT_GT(interval[1].as_number(), 0.10) << results.body;
  EXPECT_LT(treatment.Find("pValue")->as_number(), 1e-6);
  EXPECT_GT(treatment.Find("chanceToBeatControl")->as_number(), 0.999);
  const rules::Array& sequential = treatment.Find("sequentialInterval")->as_array();
  EXPECT_LT(sequential[0].as_number(), interval[0].as_number());  // wider: it may be peeked at
  EXPECT_GT(sequential[0].as_number(), 0);

  auto csv = Admin("GET", std::string(kExperiment) + "/results?format=csv");
  ASSERT_EQ(csv.status, 200);
  EXPECT_EQ(csv.body.rfind("metric,variation,control,units,", 0), 0u) << csv.body;
  EXPECT_NE(csv.body.find(StrCat("\nbuy,1,false,", units[1], ",")), std::string::npos) << csv.body;
  EXPECT_EQ(Admin("GET", std::string(kExperiment) + "/results?iteration=9").status, 400);

  auto stopped = Admin("POST", kExperiment, R"({"action":"stop"})");
  ASSERT_EQ(stopped.status, 200) << stopped.body;
  EXPECT_NE(J(stopped).Find("endedAt"), nullptr);
  // After the stop nothing more counts.
  auto late = Events(R"({"exposedUnits":[{"flag":"checkout","variation":0,"unitKey":"late"}]})");
  ASSERT_EQ(late.status, 202);
  EXPECT_EQ(J(Admin("GET", std::string(kExperiment) + "/results")).Find("units")->as_array()[0].as_number(), units[0]);
  // Archived: the unit states go, the results stay.
  EXPECT_EQ(Admin("POST", kExperiment, R"({"action":"archive","iteration":2})").status, 404);
  auto archived = Admin("POST", kExperiment, R"({"action":"archive","iteration":1})");
  ASSERT_EQ(archived.status, 200) << archived.body;
  EXPECT_NE(J(archived).Find("archivedAt"), nullptr);
  EXPECT_EQ(J(Admin("GET", std::string(kExperiment) + "/results")).Find("units")->as_array()[0].as_number(), units[0]);
  // A metric deleted afterwards still shows the sums it had, marked.
  ASSERT_EQ(Admin("DELETE", "/api/v1/projects/shop/metrics/buy").status, 204);
  rules::Value after = J(Admin("GET", std::string(kExperiment) + "/results"));
  const rules::Value& buy = after.Find("metrics")->as_array()[0];
  EXPECT_TRUE(buy.Find("definitionDeleted")->as_bool());
  EXPECT_EQ(buy.Find("kind"), nullptr);
  EXPECT_EQ(buy.Find("variations")->as_array()[1].Find("units")->as_number(), units[1]);
}

TEST_F(ExperimentsE2eTest, BadItemsAreRefusedOneByOneAndBadRequestsNameTheirField) {
  MakeShop();
  ASSERT_EQ(Admin("PUT", "/api/v1/projects/shop/metrics/buy", R"({"eventKey":"purchase"})").status, 201);
  auto r = Events(R"({"exposedUnits":[{"flag":"checkout","variation":5,"unitKey":"u1"},
                                       {"flag":"nope","variation":0,"unitKey":"u1"},
                                       {"flag":"checkout","variation":1},
                                       {"flag":"checkout","variation":1,"unitKey":"u2"}],
                      "metrics":[{"event":"purchase","units":"u1"}]})");
  ASSERT_EQ(r.status, 202) << r.body;
  rules::Value answer = J(r);
  ASSERT_NE(answer.Find("rejected"), nullptr) << r.body;
  const rules::Array& rejected = answer.Find("rejected")->as_array();
  ASSERT_EQ(rejected.size(), 4u) << r.body;
  EXPECT_EQ(rejected[0].Find("field")->as_string(), "metrics[0].units");
  EXPECT_EQ(rejected[1].Find("field")->as_string(), "exposedUnits[0].variation");
  EXPECT_EQ(rejected[2].Find("field")->as_string(), "exposedUnits[1].flag");
  EXPECT_EQ(rejected[3].Find("field")->as_string(), "exposedUnits[2].unitKey");
  EXPECT_EQ(rejected[3].Find("list")->as_string(), "exposedUnits");
  EXPECT_EQ(rejected[3].Find("index")->as_number(), 2);
  EXPECT_EQ(rejected[0].Find("index")->as_number(), 0);
  EXPECT_EQ(answer.Find("accepted")->as_number(), 1);

  auto bad = Admin("PUT", "/api/v1/projects/shop/metrics/x", R"({"eventKey":"e","kind":"median"})");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(J(bad).Find("error")->Find("field")->as_string(), "kind");
  auto no_metric = Admin("POST", kExperiment, R"({"action":"start","metrics":["nope"],"weights":[1,1]})");
  EXPECT_EQ(no_metric.status, 404) << no_metric.body;
  EXPECT_EQ(J(no_metric).Find("error")->Find("field")->as_string(), "metrics[0]");
  auto weights = Admin("POST", kExperiment, R"({"action":"start","metrics":["buy"],"weights":[1]})");
  EXPECT_EQ(weights.status, 400);
  EXPECT_EQ(J(weights).Find("error")->Find("field")->as_string(), "weights");
  EXPECT_EQ(Admin("POST", kExperiment, R"({"action":"stop"})").status, 409);
  EXPECT_EQ(Admin("GET", std::string(kExperiment) + "/results").status, 404);
}

TEST_F(ExperimentsE2eTest, OfrepAndNativeEvaluationsOfAnExperimentFlagRecordExposuresThemselves) {
  MakeShop();
  ASSERT_EQ(Admin("PUT", "/api/v1/projects/shop/metrics/buy", R"({"eventKey":"purchase"})").status, 201);
  ASSERT_EQ(Admin("PATCH", "/api/v1/projects/shop/environments/production/flags/checkout",
                  R"({"on":true,"fallthrough":{"variation":null,"rollout":{"kind":"experiment","seed":5,
                      "variations":[{"variation":0,"weight":50000},{"variation":1,"weight":50000}]}}})").status, 200);
  ASSERT_EQ(Admin("POST", kExperiment, R"({"action":"start","metrics":["buy"],"weights":[1,1]})").status, 201);
  int served[2] = {0, 0};
  for (int i = 0; i < 300; ++i) {
    std::string user = StrCat("ofrep-", i);
    HttpResponse r;
    for (int again = 0; again < 2; ++again) {  // twice: one exposure
      r = i < 200 ? Http(port(), "POST", "/ofrep/v1/evaluate/flags/checkout", StrCat(R"({"context":{"targetingKey":")", user, R"("}})"),
                         Bearer(server_key_))
                  : Http(port(), "POST", "/sdk/v1/evaluate", StrCat(R"({"flag":"checkout","context":{"kind":"user","key":")", user, R"("}})"),
                         Bearer(server_key_));
      ASSERT_EQ(r.status, 200) << r.body;
    }
    rules::Value v = J(r);
    ++served[v.Find("value")->as_bool() ? 1 : 0];
  }
  // A bulk evaluation exposes too.
  ASSERT_EQ(Http(port(), "POST", "/ofrep/v1/evaluate/flags", R"({"context":{"targetingKey":"bulk-user"}})", Bearer(server_key_)).status, 200);
  // Written by the server's recorder within about a second.
  rules::Value res;
  EXPECT_TRUE(Eventually([&] {
    res = J(Admin("GET", std::string(kExperiment) + "/results"));
    const rules::Value* units = res.Find("units");
    return units != nullptr && units->as_array()[0].as_number() + units->as_array()[1].as_number() == 301;
  })) << rules::ToJson(res);
  EXPECT_GE(res.Find("units")->as_array()[0].as_number(), served[0]);
  EXPECT_LE(res.Find("units")->as_array()[0].as_number(), served[0] + 1);
  EXPECT_EQ(res.Find("multipleExposures")->as_number(), 0);
}

TEST_F(ExperimentsE2eTest, AServerKilledMidIngestionLosesNoAcknowledgedBatchAndCountsNoRetryTwice) {
  MakeShop();
  ASSERT_EQ(Admin("PUT", "/api/v1/projects/shop/metrics/clicks", R"({"eventKey":"click","kind":"count"})").status, 201);
  ASSERT_EQ(Admin("POST", kExperiment, R"({"action":"start","metrics":["clicks"],"weights":[1,1]})").status, 201);
  int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  // 60 batches of 100 new units, each unit exposed and clicking exactly once.
  std::vector<std::string> batches;
  for (int b = 0; b < 60; ++b) {
    std::string exposed, clicks;
    for (int i = 0; i < 100; ++i) {
      std::string unit = StrCat("u-", b, "-", i);
      StrAppend(&exposed, i ? "," : "", R"({"flag":"checkout","variation":)", i % 2, R"(,"unitKey":")", unit, R"(","time":)", now + 1000, "}");
      StrAppend(&clicks, i ? "," : "", R"({"event":"click","units":{"user":")", unit, R"("},"time":)", now + 2000, "}");
    }
    batches.push_back(StrCat(R"({"batchId":"kill-)", b, R"(","exposedUnits":[)", exposed, R"(],"metrics":[)", clicks, "]}"));
  }
  // A client posts them one after another while the server is killed under it.
  std::atomic<int> acknowledged{0};
  std::atomic<bool> stop{false};
  std::vector<bool> acked(batches.size(), false);
  int server_port = port();
  std::thread poster([&] {
    for (size_t b = 0; b < batches.size() && !stop; ++b) {
      HttpResponse r = Http(server_port, "POST", "/sdk/v1/events", batches[b], Bearer(server_key_), 2s);
      if (r.status == 202) {
        acked[b] = true;
        ++acknowledged;
      }
    }
  });
  ASSERT_TRUE(Eventually([&] { return acknowledged.load() >= 10; }));
  std::string dir = server_->data_dir();
  server_->keep_dir();
  server_->Kill(SIGKILL);
  stop = true;
  poster.join();
  int acked_before_kill = acknowledged.load();
  server_ = std::make_unique<ServerProcess>(dir, std::vector<std::string>{"--listen", StrCat("127.0.0.1:", server_port)});
  ASSERT_EQ(port(), server_port) << server_->output();
  // Every acknowledged batch survived the kill.
  rules::Value after_restart = J(Admin("GET", std::string(kExperiment) + "/results"));
  ASSERT_NE(after_restart.Find("units"), nullptr) << rules::ToJson(after_restart);
  double units_after_restart = after_restart.Find("units")->as_array()[0].as_number() + after_restart.Find("units")->as_array()[1].as_number();
  EXPECT_GE(units_after_restart, 100.0 * acked_before_kill);
  // The client retries everything it sent (it cannot know what the server applied): the
  // acknowledged ones are duplicates; the rest apply once.
  int duplicates = 0;
  for (size_t b = 0; b < batches.size(); ++b) {
    HttpResponse r = Http(port(), "POST", "/sdk/v1/events", batches[b], Bearer(server_key_));
    ASSERT_EQ(r.status, 202) << r.body;
    if (J(r).Find("duplicate") != nullptr) ++duplicates;
    if (acked[b]) {
      EXPECT_NE(J(r).Find("duplicate"), nullptr) << "batch " << b << " was acknowledged before the kill";
    }
  }
  EXPECT_GE(duplicates, acked_before_kill);
  rules::Value res = J(Admin("GET", std::string(kExperiment) + "/results"));
  EXPECT_EQ(res.Find("units")->as_array()[0].as_number(), 3000);
  EXPECT_EQ(res.Find("units")->as_array()[1].as_number(), 3000);
  // Each unit clicked once: a batch counted twice would raise a mean above 1.
  for (const rules::Value& row : res.Find("metrics")->as_array()[0].Find("variations")->as_array()) {
    EXPECT_EQ(row.Find("mean")->as_number(), 1.0) << rules::ToJson(res);
    EXPECT_EQ(row.Find("standardDeviation")->as_number(), 0.0);
  }
}

TEST_F(ExperimentsE2eTest, IterationsStartAndEndWithTheExperimentRolloutsAllocation) {
  MakeShop();
  ASSERT_EQ(Admin("PUT", "/api/v1/projects/shop/metrics/buy", R"({"eventKey":"purchase"})").status, 201);
  const std::string flag = "/api/v1/projects/shop/environments/production/flags/checkout";
  auto iterations = [&] {
    rules::Value v = J(Admin("GET", kExperiment));
    return v.Find("iterations") != nullptr ? v.Find("iterations")->as_array() : rules::Array{};
  };
  // Switching an experiment rollout on starts iteration 1 (no metrics yet: none was chosen).
  ASSERT_EQ(Admin("PATCH", flag, R"({"on":true,"fallthrough":{"variation":null,"rollout":{"kind":"experiment","seed":1,
      "variations":[{"variation":0,"weight":50000},{"variation":1,"weight":50000}]}}})").status, 200);
  rules::Array its = iterations();
  ASSERT_EQ(its.size(), 1u);
  EXPECT_EQ(its[0].Find("endedAt"), nullptr);
  EXPECT_EQ(rules::ToJson(*its[0].Find("weights")), "[50000,50000]");
  EXPECT_EQ(its[0].Find("unitKind")->as_string(), "user");
  // By hand: metrics and control for the next iteration.
  ASSERT_EQ(Admin("POST", kExperiment, R"({"action":"start","controlVariation":1,"metrics":["buy"],"weights":[1,1]})").status, 201);
  // A change that leaves the allocation alone (a rule that serves a fixed variation) keeps it.
  ASSERT_EQ(Admin("PATCH", flag, R"({"rules":[{"id":"staff","variation":1,"clauses":[{"attribute":"staff","op":"in","values":[true]}]}]})").status, 200);
  EXPECT_EQ(iterations().size(), 2u);
  // A new split ends iteration 2 and starts 3 with its metrics and control.
  ASSERT_EQ(Admin("PATCH", flag, R"({"fallthrough":{"rollout":{"kind":"experiment","seed":1,
      "variations":[{"variation":0,"weight":20000},{"variation":1,"weight":80000}]}}})").status, 200);
  its = iterations();
  ASSERT_EQ(its.size(), 3u);
  EXPECT_NE(its[1].Find("endedAt"), nullptr);
  EXPECT_EQ(its[2].Find("endedAt"), nullptr);
  EXPECT_EQ(rules::ToJson(*its[2].Find("weights")), "[20000,80000]");
  EXPECT_EQ(rules::ToJson(*its[2].Find("metrics")), R"(["buy"])");
  EXPECT_EQ(its[2].Find("controlVariation")->as_number(), 1);
  // Switching the flag off ends it; none runs.
  ASSERT_EQ(Admin("PATCH", flag, R"({"on":false})").status, 200);
  its = iterations();
  ASSERT_EQ(its.size(), 3u);
  EXPECT_NE(its[2].Find("endedAt"), nullptr);
  EXPECT_EQ(Admin("POST", kExperiment, R"({"action":"stop"})").status, 409);
}

}  // namespace
}  // namespace gonfalon::e2e
