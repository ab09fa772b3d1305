// Guarded release plans driven by the C++ SDK against the real server binary (issue 12): the
// SDK evaluates the flag for simulated users and reports their errors with TrackError; the
// server's guards judge each stage from those events. A canary whose treatment fails 5 % of
// users against 1 % for control is rolled back by itself before its second stage, with the
// guard and its figures in the plan and the history; a healthy plan widens to 100 %; twenty
// A/A plans at once are rolled back no more often than their alpha allows.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <thread>

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

std::string PlanPath(std::string_view flag) {
  return StrCat("/api/v1/projects/shop/environments/production/flags/", flag, "/release-plan");
}

class SdkReleaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<ServerProcess>();
    ASSERT_GT(server_->port(), 0) << server_->output();
    Admin("POST", "/api/v1/projects", R"({"key":"shop","environments":["production"]})");
    auto key = Http(server_->port(), "POST", "/api/v1/keys", R"({"kind":"server","project":"shop","environment":"production"})",
                    Bearer(kAdminToken));
    sdk_key_ = rules::ParseJson(key.body)->Find("secret")->as_string();
  }
  // A boolean flag, on, serving false, with a conversion metric on its errors.
  void MakeFlag(const std::string& flag) {
    Admin("POST", "/api/v1/projects/shop/flags", StrCat(R"({"key":")", flag, R"(","variations":[false,true]})"));
    Admin("PATCH", StrCat("/api/v1/projects/shop/environments/production/flags/", flag), R"({"on":true,"fallthrough":{"variation":0}})");
    Admin("PUT", StrCat("/api/v1/projects/shop/metrics/errors-", flag),
          StrCat(R"({"eventKey":"error.)", flag, R"(","kind":"conversion","successCriteria":"lower"})"));
  }
  void Admin(const std::string& method, const std::string& path, const std::string& body = "") {
    auto r = Http(server_->port(), method, path, body, Bearer(kAdminToken));
    ASSERT_LT(r.status, 300) << method << " " << path << ": " << r.body;
  }
  rules::Value Get(const std::string& path) {
    auto r = Http(server_->port(), "GET", path, "", Bearer(kAdminToken));
    auto json = rules::ParseJson(r.body);
    return json.ok() ? *json : rules::Value();
  }
  std::string Status(std::string_view flag) {
    rules::Value plan = Get(PlanPath(flag));
    return plan.Find("status") != nullptr ? plan.Find("status")->as_string() : "";
  }
  Config MakeConfig() {
    Config c;
    c.base_url = StrCat("http://127.0.0.1:", server_->port());
    c.sdk_key = sdk_key_;
    c.flush_interval = 600s;  // only Flush() sends
    c.event_capacity = 200000;
    c.logger = [](LogLevel, std::string_view) {};
    return c;
  }
  // Sends users (in batches of `batch`, each flushed, one batch every `pace` at most: steady
  // traffic that the guards look at twice a second) through `flags`: each user evaluates each
  // flag once and, per flag, meets an error with the chance its variation has. Stops when
  // `done` holds after a batch, or at `max_users` or the deadline; returns the users sent.
  int Traffic(Client& client, const std::vector<std::string>& flags, const double error_rate[2], int batch, int max_users,
              const std::function<bool()>& done, std::chrono::seconds deadline = 90s,
              std::chrono::milliseconds pace = std::chrono::milliseconds(25)) {
    std::mt19937_64 rng(3);
    std::uniform_real_distribution<double> u(0, 1);
    auto until = std::chrono::steady_clock::now() + deadline;
    int sent = 0;
    while (sent < max_users && std::chrono::steady_clock::now() < until) {
      auto next = std::chrono::steady_clock::now() + pace;
      for (int i = 0; i < batch; ++i, ++sent) {
        auto ctx = rules::Context::Builder("user", StrCat("user-", sent)).Build();
        for (const std::string& flag : flags) {
          bool treated = client.BoolVariation(ctx, flag, false);
          if (u(rng) < error_rate[treated ? 1 : 0]) client.TrackError(ctx, flag);
        }
      }
      client.Flush();
      if (done()) break;
      std::this_thread::sleep_until(next);  // the load's rate, not a wait for a result
    }
    return sent;
  }

  std::unique_ptr<ServerProcess> server_;
  std::string sdk_key_;
};

TEST_F(SdkReleaseTest, ACanaryThatFailsMoreIsRolledBackByItselfBeforeItsSecondStage) {
  MakeFlag("checkout");
  // Stage 1 could only end by hand (a minute); the guard must end it first.
  Admin("POST", PlanPath("checkout"), R"({"controlVariation":0,"treatmentVariation":1,
      "stages":[{"weight":20000,"minDurationMs":60000},{"weight":50000,"minDurationMs":60000},{"weight":100000}],
      "guards":[{"kind":"metric","metric":"errors-checkout","action":"rollback"}]})");
  std::string id = Get(PlanPath("checkout")).Find("id")->as_string();
  Client client(MakeConfig());
  ASSERT_TRUE(client.WaitForInitialization(10s));
  const double errors[2] = {0.01, 0.05};
  int users = Traffic(client, {"checkout"}, errors, 500, 60000, [&] { return Status("checkout") != "active"; });
  ASSERT_TRUE(e2e::Eventually([&] { return Status("checkout") == "rolledBack"; }, 5s)) << Status("checkout") << " after " << users << " users";
  rules::Value plan = Get(PlanPath("checkout"));
  EXPECT_EQ(plan.Find("stage")->as_number(), 0) << "rolled back in its first stage";
  const rules::Value* fired = plan.Find("firedGuard");
  ASSERT_NE(fired, nullptr) << rules::ToJson(plan);
  EXPECT_EQ(fired->Find("kind")->as_string(), "metric");
  const rules::Value* figures = fired->Find("figures");
  double control = figures->Find("control")->Find("mean")->as_number();
  double treatment = figures->Find("treatment")->Find("mean")->as_number();
  EXPECT_GT(treatment - control, 0.01) << rules::ToJson(*fired);
  EXPECT_GT(figures->Find("interval")->as_array()[0].as_number(), 0) << rules::ToJson(*fired);
  std::printf("rolled back after %d users: %s\n", users, fired->Find("summary")->as_string().c_str());
  // History: the rollback is the plan's own change set, with the guard's figures.
  rules::Value history = Get("/api/v1/projects/shop/environments/production/history?limit=1");
  const rules::Value& last = history.Find("items")->as_array()[0];
  EXPECT_EQ(last.Find("actor")->as_string(), "release:" + id);
  EXPECT_NE(last.Find("comment")->as_string().find("rolled back by guard 1 (metric)"), std::string::npos) << rules::ToJson(last);
  // Everyone is back on control, in the SDK too.
  EXPECT_TRUE(e2e::Eventually([&] {
    for (int u = 0; u < 200; ++u) {
      if (client.BoolVariation(rules::Context::Builder("user", StrCat("user-", u)).Build(), "checkout", true)) return false;
    }
    return true;
  }));
  auto metrics = Http(server_->port(), "GET", "/metrics", "", {});
  EXPECT_NE(metrics.body.find("\ngonfalon_release_guard_rollbacks_total 1\n"), std::string::npos);
}

TEST_F(SdkReleaseTest, AHealthyPlanWidensToEveryone) {
  MakeFlag("search");
  Admin("POST", PlanPath("search"), R"({"controlVariation":0,"treatmentVariation":1,"alpha":0.01,
      "stages":[{"weight":20000,"minUnits":1500},{"weight":50000,"minUnits":1500},{"weight":100000,"minUnits":500}],
      "guards":[{"kind":"metric","metric":"errors-search"},{"kind":"threshold","metric":"errors-search","max":0.05}]})");
  Client client(MakeConfig());
  ASSERT_TRUE(client.WaitForInitialization(10s));
  const double errors[2] = {0.01, 0.01};
  int users = Traffic(client, {"search"}, errors, 250, 100000, [&] { return Status("search") != "active"; });
  ASSERT_TRUE(e2e::Eventually([&] { return Status("search") != "active"; }, 5s));
  rules::Value plan = Get(PlanPath("search"));
  ASSERT_EQ(plan.Find("status")->as_string(), "completed") << rules::ToJson(plan);
  EXPECT_EQ(plan.Find("stage")->as_number(), 2);
  std::printf("completed after %d users\n", users);
  EXPECT_TRUE(e2e::Eventually([&] {
    for (int u = 0; u < 200; ++u) {
      if (!client.BoolVariation(rules::Context::Builder("user", StrCat("new-", u)).Build(), "search", false)) return false;
    }
    return true;
  }));
}

// Twenty plans whose treatment is the control in disguise (both fail 2 % of users), at the
// default alpha 0.05, judged every half second while the traffic flows. Each plan is rolled
// back with a chance of at most alpha (docs/releases.md), so the number rolled back is at
// most Binomial(20, 0.05): P(5 or more) < 0.3 %. A test that looked at a fixed-horizon
// p-value as often would roll back far more.
TEST_F(SdkReleaseTest, TwentyAaPlansAreRolledBackNoMoreOftenThanAlphaAllows) {
  std::vector<std::string> flags;
  for (int i = 0; i < 20; ++i) {
    flags.push_back(StrCat("aa-", i));
    MakeFlag(flags.back());
    Admin("POST", PlanPath(flags.back()), StrCat(R"({"controlVariation":0,"treatmentVariation":1,
        "stages":[{"weight":50000,"minUnits":4000},{"weight":100000,"minUnits":500}],
        "guards":[{"kind":"metric","metric":"errors-)", flags.back(), R"("}]})"));
  }
  Client client(MakeConfig());
  ASSERT_TRUE(client.WaitForInitialization(10s));
  const double errors[2] = {0.02, 0.02};
  auto settled = [&] {
    for (const std::string& f : flags) {
      if (Status(f) == "active") return false;
    }
    return true;
  };
  int users = Traffic(client, flags, errors, 100, 20000, settled, 100s);
  ASSERT_TRUE(e2e::Eventually(settled, 5s)) << "after " << users << " users";
  int rolled_back = 0, completed = 0;
  for (const std::string& f : flags) {
    std::string s = Status(f);
    rolled_back += s == "rolledBack";
    completed += s == "completed";
  }
  std::printf("A/A: %d of 20 plans rolled back, %d completed, after %d users\n", rolled_back, completed, users);
  EXPECT_LE(rolled_back, 4);
  EXPECT_EQ(rolled_back + completed, 20) << "none paused (sample ratio) or stuck";
}

}  // namespace
}  // namespace gonfalon::sdk
