// An experiment driven through the C++ SDK against the real server binary (issue 11): 20,000
// simulated users evaluate an experiment flag (each twice: the exposure is sent once), convert
// and fail at known rates per variation through Track and TrackError, and the results route
// must report intervals that cover the true effects.
#include <gtest/gtest.h>

#include <random>
#include <thread>
#include <string>

#include "../e2e/e2e_util.h"
#include "gonfalon/rules/str_cat.h"
#include "gonfalon/rules/value.h"
#include "gonfalon/sdk/client.h"

namespace gonfalon::sdk {
namespace {

using e2e::Bearer;
using e2e::Http;
using e2e::kAdminToken;
using e2e::ServerProcess;
using namespace std::chrono_literals;

constexpr char kExperiment[] = "/api/v1/projects/shop/environments/production/flags/checkout/experiment";

class SdkExperimentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<ServerProcess>();
    ASSERT_GT(server_->port(), 0) << server_->output();
    Admin("POST", "/api/v1/projects", R"({"key":"shop","environments":["production"]})");
    Admin("POST", "/api/v1/projects/shop/flags", R"({"key":"checkout","variations":["classic","one-page"]})");
    Admin("POST", "/api/v1/projects/shop/flags", R"({"key":"banner","variations":[false,true]})");
    Admin("PATCH", "/api/v1/projects/shop/environments/production/flags/checkout",
          R"({"on":true,"fallthrough":{"variation":null,"rollout":{"kind":"experiment","seed":11,
              "variations":[{"variation":0,"weight":50000},{"variation":1,"weight":50000}]}}})");
    Admin("PATCH", "/api/v1/projects/shop/environments/production/flags/banner", R"({"on":true,"fallthrough":{"variation":1},"trackEvents":true})");
    Admin("PUT", "/api/v1/projects/shop/metrics/buy", R"({"eventKey":"purchase","kind":"conversion"})");
    Admin("PUT", "/api/v1/projects/shop/metrics/failures", R"({"eventKey":"error.checkout","kind":"conversion","successCriteria":"lower"})");
    Admin("PUT", "/api/v1/projects/shop/metrics/basket", R"({"eventKey":"purchase","kind":"mean"})");
    Admin("POST", kExperiment, R"({"action":"start","controlVariation":0,"metrics":["buy","failures","basket"],"weights":[50,50]})");
    auto key = Http(server_->port(), "POST", "/api/v1/keys", R"({"kind":"server","project":"shop","environment":"production"})", Bearer(kAdminToken));
    sdk_key_ = rules::ParseJson(key.body)->Find("secret")->as_string();
  }
  void Admin(const std::string& method, const std::string& path, const std::string& body) {
    auto r = Http(server_->port(), method, path, body, Bearer(kAdminToken));
    ASSERT_LT(r.status, 300) << method << " " << path << ": " << r.body;
  }
  Config MakeConfig() {
    Config c;
    c.base_url = "http://127.0.0.1:" + std::to_string(server_->port());
    c.sdk_key = sdk_key_;
    c.flush_interval = 600s;  // only Flush() sends
    c.event_capacity = 50000;
    c.logger = [](LogLevel, std::string_view) {};
    return c;
  }
  rules::Value Results() {
    auto r = Http(server_->port(), "GET", std::string(kExperiment) + "/results", "", Bearer(kAdminToken));
    EXPECT_EQ(r.status, 200) << r.body;
    auto json = rules::ParseJson(r.body);
    return json.ok() ? *json : rules::Value();
  }

  std::unique_ptr<ServerProcess> server_;
  std::string sdk_key_;
};

// The treatment row of metric `key` in the results.
const rules::Value* Treatment(const rules::Value& results, std::string_view key) {
  for (const rules::Value& m : results.Find("metrics")->as_array()) {
    if (m.Find("key")->as_string() == key) return &m.Find("variations")->as_array()[1];
  }
  return nullptr;
}

TEST_F(SdkExperimentTest, TwentyThousandUsersThroughTheSdkGiveIntervalsThatCoverTheTrueEffects) {
  Client client(MakeConfig());
  ASSERT_TRUE(client.WaitForInitialization(10s));
  // True rates: conversion 10 % vs 13 %; errors 4 % vs 2 %; basket 50 vs 55 (normal, sd 10).
  const double convert[2] = {0.10, 0.13}, fail[2] = {0.04, 0.02}, basket[2] = {50, 55};
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0, 1);
  int units[2] = {0, 0};
  for (int i = 0; i < 20000; ++i) {
    auto ctx = rules::Context::Builder("user", StrCat("user-", i)).Build();
    auto d = client.StringVariationDetail(ctx, "checkout", "classic");
    ASSERT_TRUE(d.reason.in_experiment);
    int v = d.variation_index;
    ASSERT_TRUE(v == 0 || v == 1);
    ++units[v];
    EXPECT_EQ(client.StringVariation(ctx, "checkout", "classic"), d.value);  // again: one exposure
    if (u(rng) < convert[v]) client.Track("purchase", ctx, std::normal_distribution<double>(basket[v], 10)(rng));
    if (u(rng) < fail[v]) client.TrackError(ctx, "checkout");
    if (i % 1000 == 0) client.Flush();  // several flushes: dedupe holds within each
  }
  client.BoolVariation(rules::Context::Builder("user", "user-0").Build(), "banner", false);  // trackEvents
  client.Flush();
  EXPECT_EQ(client.GetStatus().events_dropped, 0);

  rules::Value results = Results();
  ASSERT_NE(results.Find("units"), nullptr);
  EXPECT_EQ(results.Find("units")->as_array()[0].as_number(), units[0]);
  EXPECT_EQ(results.Find("units")->as_array()[1].as_number(), units[1]);
  EXPECT_EQ(results.Find("multipleExposures")->as_number(), 0);
  EXPECT_FALSE(results.Find("sampleRatio")->Find("mismatch")->as_bool());
  struct Expected {
    const char* metric;
    double effect;
  };
  for (const Expected& e : {Expected{"buy", convert[1] - convert[0]}, Expected{"failures", fail[1] - fail[0]},
                            // A unit without a purchase has a basket of 0 (docs/experiments.md).
                            Expected{"basket", convert[1] * basket[1] - convert[0] * basket[0]}}) {
    const rules::Value* row = Treatment(results, e.metric);
    ASSERT_NE(row, nullptr) << e.metric;
    ASSERT_NE(row->Find("differenceInterval"), nullptr) << e.metric << ": " << rules::ToJson(results);
    const rules::Array& ci = row->Find("differenceInterval")->as_array();
    EXPECT_LT(ci[0].as_number(), e.effect) << e.metric;
    EXPECT_GT(ci[1].as_number(), e.effect) << e.metric;
    // Detected: the interval excludes no effect.
    EXPECT_TRUE(ci[0].as_number() > 0 || ci[1].as_number() < 0) << e.metric;
  }
  // Fewer failures is better: the treatment beats control on that metric.
  EXPECT_GT(Treatment(results, "failures")->Find("chanceToBeatControl")->as_number(), 0.95);
}

TEST_F(SdkExperimentTest, ExposuresAreSentOncePerIntervalAndAgainInTheNext) {
  // What the server accepted, from its metrics: each flush below sends one hourly count and one
  // unit exposure, however often alice evaluates.
  auto accepted = [&] {
    auto r = Http(server_->port(), "GET", "/metrics", "", {});
    size_t at = r.body.find("\ngonfalon_sdk_events_accepted_total ");
    return at == std::string::npos ? -1.0 : std::stod(r.body.substr(at + 36));
  };
  Client client(MakeConfig());
  ASSERT_TRUE(client.WaitForInitialization(10s));
  auto alice = rules::Context::Builder("user", "alice").Build();
  double before = accepted();
  ASSERT_GE(before, 0);
  for (int round = 1; round <= 3; ++round) {
    for (int i = 0; i < 100; ++i) client.StringVariation(alice, "checkout", "classic");
    client.Flush();
    EXPECT_EQ(accepted(), before + 2 * round) << "round " << round;
  }
  rules::Value results = Results();
  EXPECT_EQ(results.Find("units")->as_array()[0].as_number() + results.Find("units")->as_array()[1].as_number(), 1);
  EXPECT_EQ(results.Find("multipleExposures")->as_number(), 0);
}

TEST_F(SdkExperimentTest, ALatencyTimerTracksTheMillisecondsOfItsScope) {
  Admin("PUT", "/api/v1/projects/shop/metrics/latency", R"({"eventKey":"checkout-latency","kind":"mean","successCriteria":"lower"})");
  Admin("POST", kExperiment, R"({"action":"start","controlVariation":0,"metrics":["latency"],"weights":[50,50]})");
  Client client(MakeConfig());
  ASSERT_TRUE(client.WaitForInitialization(10s));
  auto alice = rules::Context::Builder("user", "alice").Build();
  int v = client.StringVariationDetail(alice, "checkout", "classic").variation_index;
  auto start = std::chrono::steady_clock::now();
  {
    auto timer = client.StartTimer("checkout-latency", alice);
    std::this_thread::sleep_for(30ms);  // the work being timed
  }
  double elapsed = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  auto stopped = client.StartTimer("checkout-latency", alice);
  stopped.Stop();  // tracked now (about 0 ms), not again by the destructor
  client.Flush();
  rules::Value results = Results();
  const rules::Value& row = results.Find("metrics")->as_array()[0].Find("variations")->as_array()[static_cast<size_t>(v)];
  ASSERT_EQ(row.Find("units")->as_number(), 1) << rules::ToJson(results);
  // The unit's value is the mean of its two timings: (30+ ms + ~0 ms) / 2.
  EXPECT_GE(row.Find("mean")->as_number(), 15.0);
  EXPECT_LE(row.Find("mean")->as_number(), elapsed / 2 + 1);
}

}  // namespace
}  // namespace gonfalon::sdk
