// Change requests through the real server (issue 12, part 4): in an environment that requires
// an approval, admin writes answer 202 with a pending request instead of applying; tokens
// named for two people show that self-approval is refused, that another person's approval
// applies the change as its author's, that a request whose item moved since fails visibly,
// and that scheduled changes and release plans wait for approval too.

#include <gtest/gtest.h>

#include <string>

#include "gonfalon/rules/str_cat.h"
#include "server_fixture.h"

namespace gonfalon::e2e {
namespace {

constexpr char kEnv[] = "/api/v1/projects/shop/environments/production";

class ChangeRequestsE2eTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    MakeShop();
    ada_ = MakePerson("ada");
    bob_ = MakePerson("bob");
    auto approvals = Admin("PATCH", kEnv, R"({"approvals":{"requiredApprovals":1}})");
    ASSERT_EQ(approvals.status, 200) << approvals.body;
    ASSERT_EQ(J(approvals).Find("approvals")->Find("requiredApprovals")->as_number(), 1);
  }
  std::string MakePerson(const std::string& name) {
    auto r = Admin("POST", "/api/v1/keys", StrCat(R"({"kind":"admin","name":")", name, R"("})"));
    EXPECT_EQ(r.status, 201) << r.body;
    return J(r).Find("secret")->as_string();
  }
  HttpResponse As(const std::string& token, const std::string& method, const std::string& path, const std::string& body = "") {
    return Http(port(), method, path, body, Bearer(token));
  }
  bool CheckoutOn() {
    auto flag = J(Admin("GET", StrCat(kEnv, "/flags/checkout")));
    return flag.Find("on") != nullptr && flag.Find("on")->as_bool();
  }
  std::string RequestPath(const HttpResponse& opened) { return StrCat(kEnv, "/change-requests/", J(opened).Find("id")->as_string()); }

  std::string ada_, bob_;
};

TEST_F(ChangeRequestsE2eTest, AWriteWaitsForAnotherPersonsApprovalAndAppliesAsItsAuthors) {
  auto opened = As(ada_, "PATCH", StrCat(kEnv, "/flags/checkout?comment=launch"), R"({"on":true})");
  ASSERT_EQ(opened.status, 202) << opened.body;
  rules::Value request = J(opened);
  EXPECT_EQ(request.Find("status")->as_string(), "pending");
  EXPECT_EQ(request.Find("person")->as_string(), "ada");
  EXPECT_EQ(request.Find("kind")->as_string(), "changes");
  EXPECT_EQ(request.Find("items")->as_array()[0].Find("expectVersion")->as_number(), 1) << opened.body;
  EXPECT_FALSE(CheckoutOn());  // nothing applied yet
  auto pending = J(Admin("GET", StrCat(kEnv, "/change-requests?status=pending")));
  EXPECT_EQ(pending.Find("items")->as_array().size(), 1u);

  std::string path = RequestPath(opened);
  auto self = As(ada_, "POST", path + "/approve");
  EXPECT_EQ(self.status, 403) << self.body;
  EXPECT_NE(self.body.find("another person must approve"), std::string::npos) << self.body;
  EXPECT_EQ(As(bob_, "POST", path + "/comment", R"({"comment":"looks fine"})").status, 200);
  auto approved = As(bob_, "POST", path + "/approve", R"({"comment":"ship it"})");
  ASSERT_EQ(approved.status, 200) << approved.body;
  EXPECT_EQ(J(approved).Find("status")->as_string(), "applied") << approved.body;
  EXPECT_GT(J(approved).Find("sequence")->as_number(), 0);
  EXPECT_TRUE(CheckoutOn());
  auto last = J(Admin("GET", StrCat(kEnv, "/history?limit=1"))).Find("items")->as_array()[0];
  EXPECT_NE(last.Find("actor")->as_string().find("(ada)"), std::string::npos) << rules::ToJson(last);
  EXPECT_NE(last.Find("comment")->as_string().find("approved by bob"), std::string::npos) << rules::ToJson(last);
  // Done: no second approval.
  EXPECT_EQ(As(bob_, "POST", path + "/approve").status, 409);
}

TEST_F(ChangeRequestsE2eTest, ARequestWhoseItemMovedSinceFailsVisibly) {
  auto first = As(ada_, "PATCH", StrCat(kEnv, "/flags/checkout"), R"({"on":true})");
  auto second = As(ada_, "PATCH", StrCat(kEnv, "/flags/checkout"), R"({"offVariation":1})");
  ASSERT_EQ(first.status, 202);
  ASSERT_EQ(second.status, 202);
  ASSERT_EQ(J(As(bob_, "POST", RequestPath(first) + "/approve")).Find("status")->as_string(), "applied");
  auto conflict = As(bob_, "POST", RequestPath(second) + "/approve");
  ASSERT_EQ(conflict.status, 200) << conflict.body;
  EXPECT_EQ(J(conflict).Find("status")->as_string(), "failed");
  EXPECT_NE(J(conflict).Find("reason")->as_string().find("version"), std::string::npos) << conflict.body;
  auto flag = J(Admin("GET", StrCat(kEnv, "/flags/checkout")));
  EXPECT_EQ(flag.Find("offVariation")->as_number(), 0);  // not applied
  auto failed = J(Admin("GET", StrCat(kEnv, "/change-requests?status=failed")));
  EXPECT_EQ(failed.Find("items")->as_array().size(), 1u);
}

TEST_F(ChangeRequestsE2eTest, DeclinedRequestsStayUnappliedAndOtherWritesWaitToo) {
  auto opened = As(ada_, "POST", StrCat(kEnv, "/changesets"),
                   R"({"comment":"both","items":[{"kind":"flag","key":"checkout","data":{"on":true,"fallthrough":{"variation":1},"offVariation":0}}]})");
  ASSERT_EQ(opened.status, 202) << opened.body;
  auto declined = As(bob_, "POST", RequestPath(opened) + "/decline", R"({"comment":"not on a Friday"})");
  ASSERT_EQ(declined.status, 200);
  EXPECT_EQ(J(declined).Find("status")->as_string(), "declined");
  EXPECT_EQ(As(bob_, "POST", RequestPath(opened) + "/approve").status, 409);
  EXPECT_FALSE(CheckoutOn());
  // Segments wait too; a bad item is refused at once, with its field, and opens nothing.
  EXPECT_EQ(As(ada_, "POST", StrCat(kEnv, "/segments"), R"({"key":"beta","included":["u1"]})").status, 202);
  auto bad = As(ada_, "POST", StrCat(kEnv, "/changesets"), R"({"items":[{"kind":"flag","key":"checkout","data":{"on":"yes"}}]})");
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_EQ(J(Admin("GET", StrCat(kEnv, "/change-requests"))).Find("items")->as_array().size(), 2u);
  EXPECT_EQ(Admin("GET", StrCat(kEnv, "/change-requests?status=nope")).status, 400);
  EXPECT_EQ(Admin("GET", StrCat(kEnv, "/change-requests/cr_000000000000")).status, 404);
  // The staging environment requires nothing: writes apply at once.
  EXPECT_EQ(As(ada_, "PATCH", "/api/v1/projects/shop/environments/staging/flags/checkout", R"({"on":true})").status, 200);
}

TEST_F(ChangeRequestsE2eTest, ScheduledChangesAndReleasePlansStartOnlyWhenApproved) {
  auto scheduled = As(ada_, "POST", StrCat(kEnv, "/scheduled-changes"),
                      StrCat(R"({"executeAt":)", NowMs() + 1500, R"(,"items":[{"kind":"flag","key":"checkout","data":{"on":true,"fallthrough":{"variation":0},"offVariation":0}}]})"));
  ASSERT_EQ(scheduled.status, 202) << scheduled.body;
  EXPECT_EQ(J(scheduled).Find("kind")->as_string(), "schedule");
  EXPECT_EQ(J(Admin("GET", StrCat(kEnv, "/scheduled-changes"))).Find("items")->as_array().size(), 0u);
  auto approved = J(As(bob_, "POST", RequestPath(scheduled) + "/approve"));
  ASSERT_EQ(approved.Find("status")->as_string(), "applied") << rules::ToJson(approved);
  std::string sc = approved.Find("resultId")->as_string();
  EXPECT_TRUE(Eventually([&] { return CheckoutOn(); }, std::chrono::seconds(10)));  // it ran, approved
  auto ran = J(Admin("GET", StrCat(kEnv, "/scheduled-changes/", sc)));
  EXPECT_EQ(ran.Find("status")->as_string(), "applied") << rules::ToJson(ran);

  const std::string plan = StrCat(kEnv, "/flags/checkout/release-plan");
  auto requested = As(ada_, "POST", plan, R"({"controlVariation":0,"treatmentVariation":1,"stages":[{"weight":20000,"minDurationMs":600000},{"weight":100000}]})");
  ASSERT_EQ(requested.status, 202) << requested.body;
  EXPECT_EQ(Admin("GET", plan).status, 404);  // no plan yet
  auto started = J(As(bob_, "POST", RequestPath(requested) + "/approve"));
  ASSERT_EQ(started.Find("status")->as_string(), "applied") << rules::ToJson(started);
  auto active = J(Admin("GET", plan));
  EXPECT_EQ(active.Find("status")->as_string(), "active");
  EXPECT_EQ(active.Find("id")->as_string(), started.Find("resultId")->as_string());
  EXPECT_NE(active.Find("createdBy")->as_string().find("(ada)"), std::string::npos);
  // A rollback never waits for approval.
  auto back = As(ada_, "POST", plan + "/rollback", R"({"reason":"errors"})");
  ASSERT_EQ(back.status, 200) << back.body;
  EXPECT_EQ(J(back).Find("status")->as_string(), "rolledBack");
}

TEST_F(ChangeRequestsE2eTest, ApprovalSettingsAreCheckedAndAnExplicitApplyIsPossible) {
  EXPECT_EQ(Admin("PATCH", kEnv, R"({"approvals":{"requiredApprovals":11}})").status, 400);
  EXPECT_EQ(Admin("PATCH", kEnv, R"({"approvals":{"required":1}})").status, 400);
  EXPECT_EQ(Admin("PATCH", kEnv, R"({"approvals":{"requiredApprovals":2}})").status, 200);
  auto opened = As(ada_, "PATCH", StrCat(kEnv, "/flags/checkout?autoApply=false"), R"({"on":true})");
  ASSERT_EQ(opened.status, 202) << opened.body;
  EXPECT_EQ(J(opened).Find("requiredApprovals")->as_number(), 2);
  EXPECT_EQ(J(As(bob_, "POST", RequestPath(opened) + "/approve")).Find("status")->as_string(), "pending");  // 1 of 2
  EXPECT_EQ(As(bob_, "POST", RequestPath(opened) + "/approve").status, 409);  // bob twice
  EXPECT_EQ(As(ada_, "POST", RequestPath(opened) + "/apply").status, 409);    // not approved yet
  std::string carol = MakePerson("carol");
  EXPECT_EQ(J(As(carol, "POST", RequestPath(opened) + "/approve")).Find("status")->as_string(), "approved");
  EXPECT_FALSE(CheckoutOn());  // waits for the explicit apply
  auto applied = As(ada_, "POST", RequestPath(opened) + "/apply");
  ASSERT_EQ(applied.status, 200) << applied.body;
  EXPECT_EQ(J(applied).Find("status")->as_string(), "applied");
  EXPECT_TRUE(CheckoutOn());
  // Lifting the requirement waits for the two approvals it lifts; raising it does not wait.
  auto lift = As(ada_, "PATCH", kEnv, R"({"approvals":{"requiredApprovals":0}})");
  ASSERT_EQ(lift.status, 202) << lift.body;
  EXPECT_EQ(J(lift).Find("kind")->as_string(), "approvalSettings");
  EXPECT_EQ(J(lift).Find("approvalSettings")->Find("requiredApprovals")->as_number(), 0);
  EXPECT_EQ(J(Admin("GET", kEnv)).Find("approvals")->Find("requiredApprovals")->as_number(), 2);
  EXPECT_EQ(J(As(bob_, "POST", RequestPath(lift) + "/approve")).Find("status")->as_string(), "pending");
  EXPECT_EQ(J(As(carol, "POST", RequestPath(lift) + "/approve")).Find("status")->as_string(), "applied");
  EXPECT_EQ(J(Admin("GET", kEnv)).Find("approvals")->Find("requiredApprovals")->as_number(), 0);
  EXPECT_EQ(Admin("PATCH", kEnv, R"({"approvals":{"requiredApprovals":1}})").status, 200);
}

}  // namespace
}  // namespace gonfalon::e2e
