// Release plans through the real server (issue 12, part 2): a plan of short stages widens the
// rollout by itself to completion, each step a change set by "release:<id>"; a hand edit of
// the traffic pauses it; roll back sends everyone to control; bad plans get precise errors.

#include <gtest/gtest.h>

#include <string>

#include "gonfalon/rules/str_cat.h"
#include "server_fixture.h"

namespace gonfalon::e2e {
namespace {

constexpr char kPlan[] = "/api/v1/projects/shop/environments/production/flags/checkout/release-plan";

class ReleasePlansE2eTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    MakeShop();
    auto on = Admin("POST", "/api/v1/projects/shop/environments/production/changesets",
                    R"({"items":[{"kind":"flag","key":"checkout","data":{"on":true,"fallthrough":{"variation":0},"offVariation":0}}]})");
    ASSERT_EQ(on.status, 200) << on.body;
  }
  std::string Status() {
    auto v = J(Admin("GET", kPlan));
    return v.Find("status") != nullptr ? v.Find("status")->as_string() : "";
  }
  // The share of 400 users served `true`.
  double TrueShare() {
    int yes = 0;
    for (int u = 0; u < 400; ++u) {
      auto r = Http(port(), "POST", "/sdk/v1/evaluate",
                    StrCat(R"({"context":{"kind":"user","key":"user-)", u, R"("},"flag":"checkout"})"), Bearer(server_key_));
      auto v = J(r);
      if (v.Find("value") != nullptr && v.Find("value")->is_bool() && v.Find("value")->as_bool()) ++yes;
    }
    return yes / 400.0;
  }
};

TEST_F(ReleasePlansE2eTest, APlanWidensByItselfToCompletion) {
  auto started = Admin("POST", kPlan, R"({"controlVariation":0,"treatmentVariation":1,"stages":[
      {"weight":10000,"minDurationMs":700},{"weight":50000,"minDurationMs":700},{"weight":100000}]})");
  ASSERT_EQ(started.status, 201) << started.body;
  std::string id = J(started).Find("id")->as_string();
  EXPECT_EQ(J(started).Find("status")->as_string(), "active");
  ASSERT_TRUE(Eventually([&] { return Status() == "completed"; }, std::chrono::seconds(15)));
  auto plan = J(Admin("GET", kPlan));
  EXPECT_EQ(plan.Find("stage")->as_number(), 2);
  EXPECT_EQ(plan.Find("events")->as_array().size(), 4u) << rules::ToJson(plan);
  EXPECT_TRUE(Eventually([&] { return TrueShare() == 1.0; }, std::chrono::seconds(5)));
  auto history = J(Admin("GET", "/api/v1/projects/shop/environments/production/history?limit=10"));
  int by_plan = 0;
  for (const rules::Value& rec : history.Find("items")->as_array()) {
    if (rec.Find("actor")->as_string() == "release:" + id) ++by_plan;
  }
  EXPECT_EQ(by_plan, 3);  // 10 %, 50 %, 100 %
  auto iterations = J(Admin("GET", "/api/v1/projects/shop/environments/production/flags/checkout/experiment"));
  ASSERT_NE(iterations.Find("iterations"), nullptr) << rules::ToJson(iterations);
  EXPECT_EQ(iterations.Find("iterations")->as_array().size(), 3u) << rules::ToJson(iterations);  // one per stage
}

TEST_F(ReleasePlansE2eTest, AHandEditPausesItAndRollBackSendsEveryoneToControl) {
  auto started = Admin("POST", kPlan, R"({"controlVariation":0,"treatmentVariation":1,"stages":[
      {"weight":20000,"minDurationMs":600000},{"weight":100000}]})");
  ASSERT_EQ(started.status, 201) << started.body;
  double share = TrueShare();
  EXPECT_GT(share, 0.12);
  EXPECT_LT(share, 0.28);
  // Someone turns the flag off by hand.
  auto off = Admin("POST", "/api/v1/projects/shop/environments/production/changesets",
                   R"({"items":[{"kind":"flag","key":"checkout","data":{"on":false,"fallthrough":{"variation":0},"offVariation":0}}]})");
  ASSERT_EQ(off.status, 200) << off.body;
  ASSERT_TRUE(Eventually([&] { return Status() == "paused"; }, std::chrono::seconds(10)));
  EXPECT_NE(J(Admin("GET", kPlan)).Find("reason")->as_string().find("changed by hand"), std::string::npos);
  EXPECT_EQ(Admin("POST", StrCat(kPlan, "/pause")).status, 409);  // already paused
  auto back = Admin("POST", StrCat(kPlan, "/rollback"), R"({"reason":"checkout errors"})");
  ASSERT_EQ(back.status, 200) << back.body;
  EXPECT_EQ(J(back).Find("status")->as_string(), "rolledBack");
  EXPECT_NE(J(back).Find("reason")->as_string().find("checkout errors"), std::string::npos);
  EXPECT_EQ(Admin("POST", StrCat(kPlan, "/resume")).status, 409);
  EXPECT_EQ(Admin("POST", StrCat(kPlan, "/launch")).status, 404);
}

TEST_F(ReleasePlansE2eTest, BadPlansGetPreciseErrors) {
  EXPECT_EQ(Admin("GET", kPlan).status, 404);
  auto narrowing = Admin("POST", kPlan, R"({"controlVariation":0,"treatmentVariation":1,"stages":[{"weight":50000},{"weight":20000}]})");
  EXPECT_EQ(narrowing.status, 400);
  EXPECT_NE(narrowing.body.find("stages[1].weight"), std::string::npos) << narrowing.body;
  auto same = Admin("POST", kPlan, R"({"controlVariation":1,"treatmentVariation":1,"stages":[{"weight":50000}]})");
  EXPECT_EQ(same.status, 400);
  EXPECT_NE(same.body.find("treatmentVariation"), std::string::npos) << same.body;
  auto unknown = Admin("POST", kPlan, R"({"controlVariation":0,"treatmentVariation":1,"stages":[{"weight":50000}],"guard":[]})");
  EXPECT_EQ(unknown.status, 400);
  EXPECT_NE(unknown.body.find("guard"), std::string::npos) << unknown.body;
  // Guards: each mistake named by its path.
  struct Bad {
    const char* guards;
    int status;
    const char* path;
  };
  for (const Bad& b : {Bad{R"([{"kind":"vibes"}])", 400, "guards[0].kind"},
                       Bad{R"([{"kind":"metric","action":"panic","metric":"errors"}])", 400, "guards[0].action"},
                       Bad{R"([{"kind":"metric"}])", 400, "guards[0].metric"},
                       Bad{R"([{"kind":"metric","metric":"nope"}])", 404, "guards[0].metric"},
                       Bad{R"([{"kind":"sampleRatio"},{"kind":"threshold","metric":"nope"}])", 400, "guards[1]"},
                       Bad{R"([{"kind":"metric","metric":"nope","url":"http://x"}])", 400, "guards[0].url"},
                       Bad{R"([{"kind":"prometheus","url":"https://p:9090","query":"up","max":1}])", 400, "guards[0].url"},
                       Bad{R"([{"kind":"prometheus","url":"http://p:9090","max":1}])", 400, "guards[0].query"},
                       Bad{R"([{"kind":"threshold","metric":"nope","min":2,"max":1}])", 400, "guards[0].min"},
                       Bad{R"({"kind":"metric"})", 400, "guards"}}) {
    auto r = Admin("POST", kPlan, StrCat(R"({"controlVariation":0,"treatmentVariation":1,"stages":[{"weight":50000}],"guards":)", b.guards, "}"));
    EXPECT_EQ(r.status, b.status) << b.guards << ": " << r.body;
    EXPECT_NE(r.body.find(b.path), std::string::npos) << b.guards << ": " << r.body;
  }
  auto alpha = Admin("POST", kPlan, R"({"controlVariation":0,"treatmentVariation":1,"stages":[{"weight":50000}],"alpha":0.7})");
  EXPECT_EQ(alpha.status, 400);
  EXPECT_NE(alpha.body.find("alpha"), std::string::npos) << alpha.body;
  auto wrong_type = Admin("POST", kPlan, R"({"controlVariation":0,"treatmentVariation":1,"stages":[{"weight":"half"}]})");
  EXPECT_EQ(wrong_type.status, 400);
  EXPECT_NE(wrong_type.body.find("stages[0].weight"), std::string::npos) << wrong_type.body;
  EXPECT_EQ(Admin("GET", kPlan).status, 404);  // nothing stored
}

}  // namespace
}  // namespace gonfalon::e2e
