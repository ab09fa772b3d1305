// Scheduled changes through the real server (issue 12, part 1): one fires at its time and
// reaches evaluations, one due while the server was down runs once at restart and says how
// late, a conflicting one fails with its reason, and bad requests get precise errors.

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "gonfalon/rules/str_cat.h"
#include "server_fixture.h"

namespace gonfalon::e2e {
namespace {

constexpr char kScheduled[] = "/api/v1/projects/shop/environments/production/scheduled-changes";
constexpr char kTurnOn[] =
    R"([{"kind":"flag","key":"checkout","data":{"on":true,"fallthrough":{"variation":1},"offVariation":0}}])";


class ScheduledChangesE2eTest : public ServerTest {
 protected:
  // Schedules kTurnOn (or `items`) `in_ms` from now; returns the record.
  rules::Value Schedule(int64_t in_ms, const std::string& items = kTurnOn, const std::string& extra = "") {
    auto r = Admin("POST", kScheduled,
                   StrCat(R"({"executeAt":)", NowMs() + in_ms, R"(,"comment":"launch","items":)", items, extra, "}"));
    EXPECT_EQ(r.status, 201) << r.body;
    return J(r);
  }
  rules::Value Get(const std::string& id) { return J(Admin("GET", StrCat(kScheduled, "/", id))); }
  std::string StatusOf(const std::string& id) {
    rules::Value v = Get(id);
    return v.Find("status") != nullptr ? v.Find("status")->as_string() : "";
  }
  bool Evaluates(bool want) {
    auto r = Http(port(), "POST", "/sdk/v1/evaluate", R"({"context":{"kind":"user","key":"u1"},"flag":"checkout"})",
                  Bearer(server_key_));
    auto v = J(r);
    return r.status == 200 && v.Find("value") != nullptr && v.Find("value")->is_bool() && v.Find("value")->as_bool() == want;
  }
};

TEST_F(ScheduledChangesE2eTest, FiresWithinASecondOfItsTimeAndReachesEvaluations) {
  MakeShop();
  ASSERT_TRUE(Evaluates(false));
  rules::Value made = Schedule(1500);
  std::string id = made.Find("id")->as_string();
  EXPECT_EQ(made.Find("status")->as_string(), "scheduled");
  EXPECT_EQ(made.Find("items")->as_array()[0].Find("expectVersion")->as_number(), 1);
  ASSERT_TRUE(Eventually([&] { return StatusOf(id) == "applied"; }, std::chrono::seconds(10)));
  rules::Value done = Get(id);
  EXPECT_LE(done.Find("lateByMs")->as_number(), 1000) << rules::ToJson(done);
  EXPECT_GE(done.Find("ranMs")->as_number(), done.Find("executeAtMs")->as_number());
  EXPECT_TRUE(Eventually([&] { return Evaluates(true); }, std::chrono::seconds(5)));
  auto history = J(Admin("GET", "/api/v1/projects/shop/environments/production/history?limit=1"));
  const rules::Value& rec = history.Find("items")->as_array()[0];
  EXPECT_EQ(rec.Find("sequence")->as_number(), done.Find("sequence")->as_number());
  EXPECT_EQ(rec.Find("actor")->as_string().rfind(StrCat("scheduler:", id, " for key:"), 0), 0u) << rec.Find("actor")->as_string();
  EXPECT_EQ(rec.Find("comment")->as_string(), "launch");
  auto metrics = Admin("GET", "/metrics");
  EXPECT_NE(metrics.body.find("gonfalon_scheduled_changes_applied_total 1"), std::string::npos);
}

TEST_F(ScheduledChangesE2eTest, OneDueWhileTheServerWasDownRunsOnceAtRestartAndSaysHowLate) {
  MakeShop();
  rules::Value made = Schedule(1000);
  std::string id = made.Find("id")->as_string();
  int64_t due = static_cast<int64_t>(made.Find("executeAtMs")->as_number());
  ASSERT_EQ(server_->Kill(SIGTERM), 0);
  // Down until well past its time.
  ASSERT_TRUE(Eventually([&] { return NowMs() > due + 1500; }, std::chrono::seconds(10)));
  server_->Start();
  ASSERT_GT(port(), 0) << server_->output();
  ASSERT_TRUE(Eventually([&] { return StatusOf(id) == "applied"; }, std::chrono::seconds(10)));
  EXPECT_GE(Get(id).Find("lateByMs")->as_number(), 1500);
  // Once: one change set by the scheduler, also after another restart.
  ASSERT_EQ(server_->Kill(SIGTERM), 0);
  server_->Start();
  ASSERT_GT(port(), 0) << server_->output();
  ASSERT_TRUE(Eventually([&] { return Admin("GET", "/readyz").status == 200; }, std::chrono::seconds(10)));
  auto history = J(Admin("GET", "/api/v1/projects/shop/environments/production/history?limit=50"));
  int by_scheduler = 0;
  for (const rules::Value& rec : history.Find("items")->as_array()) {
    if (rec.Find("actor")->as_string().rfind("scheduler:", 0) == 0) ++by_scheduler;
  }
  EXPECT_EQ(by_scheduler, 1);
  EXPECT_EQ(Get(id).Find("version")->as_number(), 2);
}

TEST_F(ScheduledChangesE2eTest, AnItemThatMovedFailsItWithTheReason) {
  MakeShop();
  std::string id = Schedule(1200).Find("id")->as_string();
  auto edit = Admin("POST", "/api/v1/projects/shop/environments/production/changesets",
                    R"({"items":[{"kind":"flag","key":"checkout","data":{"on":false,"fallthrough":{"variation":1},"offVariation":0,)"
                    R"("targets":[{"variation":1,"values":["someone"]}]}}]})");
  ASSERT_EQ(edit.status, 200) << edit.body;
  ASSERT_TRUE(Eventually([&] { return StatusOf(id) == "failed"; }, std::chrono::seconds(10)));
  rules::Value failed = Get(id);
  EXPECT_NE(failed.Find("reason")->as_string().find("is at version 2, not 1"), std::string::npos) << rules::ToJson(failed);
  EXPECT_EQ(failed.Find("sequence"), nullptr);
  EXPECT_TRUE(Evaluates(false));  // the hand edit stands
  auto listed = J(Admin("GET", StrCat(kScheduled, "?status=failed")));
  EXPECT_EQ(listed.Find("items")->as_array().size(), 1u);
}

TEST_F(ScheduledChangesE2eTest, BadRequestsGetPreciseErrorsAndEditsFollowTheVersion) {
  MakeShop();
  auto missing = Admin("POST", kScheduled, StrCat(R"({"items":)", kTurnOn, "}"));
  EXPECT_EQ(missing.status, 400);
  EXPECT_NE(missing.body.find("executeAt"), std::string::npos) << missing.body;
  auto past = Admin("POST", kScheduled, StrCat(R"({"executeAt":"2020-01-01T00:00:00Z","items":)", kTurnOn, "}"));
  EXPECT_EQ(past.status, 400);
  EXPECT_NE(past.body.find("in the past"), std::string::npos) << past.body;
  auto bad_data = Admin("POST", kScheduled, StrCat(R"({"executeAt":)", NowMs() + 60000,
                                                   R"(,"items":[{"kind":"flag","key":"checkout","data":{"on":"yes"}}]})"));
  EXPECT_EQ(bad_data.status, 400) << bad_data.body;
  EXPECT_NE(bad_data.body.find("items[0].data.on"), std::string::npos) << bad_data.body;
  EXPECT_EQ(Admin("GET", StrCat(kScheduled, "/sc_000000000000")).status, 404);
  EXPECT_EQ(J(Admin("GET", kScheduled)).Find("items")->as_array().size(), 0u);  // nothing stored

  std::string id = Schedule(60000).Find("id")->as_string();
  auto moved = Admin("PATCH", StrCat(kScheduled, "/", id), StrCat(R"({"executeAt":)", NowMs() + 120000, R"(,"comment":"later"})"),
                     {{"If-Match", "\"1\""}});
  ASSERT_EQ(moved.status, 200) << moved.body;
  EXPECT_EQ(J(moved).Find("version")->as_number(), 2);
  auto stale = Admin("PATCH", StrCat(kScheduled, "/", id), R"({"comment":"x"})", {{"If-Match", "\"1\""}});
  EXPECT_EQ(stale.status, 412) << stale.body;
  auto unknown_field = Admin("PATCH", StrCat(kScheduled, "/", id), R"({"status":"applied"})");
  EXPECT_EQ(unknown_field.status, 400) << unknown_field.body;
  auto canceled = Admin("DELETE", StrCat(kScheduled, "/", id));
  ASSERT_EQ(canceled.status, 200) << canceled.body;
  EXPECT_EQ(J(canceled).Find("status")->as_string(), "canceled");
  EXPECT_EQ(Admin("DELETE", StrCat(kScheduled, "/", id)).status, 409);
}

}  // namespace
}  // namespace gonfalon::e2e
