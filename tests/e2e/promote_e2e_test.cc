// Comparing and promoting environments through the real server (issue 13, part 2): what
// differs between staging and production, field by field; a promotion that needs a segment
// production lacks is refused and writes nothing; with the segment it is one change set after
// which the two compare equal, production keeping its own salt.

#include <gtest/gtest.h>

#include <string>

#include "gonfalon/rules/str_cat.h"
#include "server_fixture.h"

namespace gonfalon::e2e {
namespace {

constexpr char kStaging[] = "/api/v1/projects/shop/environments/staging";
constexpr char kProduction[] = "/api/v1/projects/shop/environments/production";

class PromoteE2eTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    MakeShop();
    ASSERT_EQ(Admin("POST", StrCat(kStaging, "/segments"), R"({"key":"beta","included":["ada"]})").status, 201);
    auto patched = Admin("PATCH", StrCat(kStaging, "/flags/checkout"),
                         R"({"on":true,"rules":[{"id":"beta","clauses":[{"contextKind":"user","attribute":"key","op":"segmentMatch","values":["beta"]}],"variation":1}]})");
    ASSERT_EQ(patched.status, 200) << patched.body;
  }
  int64_t Sequence(const char* env) { return static_cast<int64_t>(J(Admin("GET", env)).Find("sequence")->as_number()); }
  std::string Salt(const char* env) { return J(Admin("GET", StrCat(env, "/flags/checkout"))).Find("salt")->as_string(); }
};

TEST_F(PromoteE2eTest, CompareShowsWhatDiffersFieldByField) {
  auto r = Admin("GET", "/api/v1/projects/shop/compare?from=staging&to=production");
  ASSERT_EQ(r.status, 200) << r.body;
  rules::Value v = J(r);
  ASSERT_EQ(v.Find("flags")->as_array().size(), 1u) << r.body;  // checkout; web-banner is the same
  const rules::Value& checkout = v.Find("flags")->as_array()[0];
  EXPECT_EQ(checkout.Find("key")->as_string(), "checkout");
  EXPECT_EQ(checkout.Find("status")->as_string(), "different");
  std::string fields = rules::ToJson(*checkout.Find("fields"));
  EXPECT_NE(fields.find(R"({"path":"on","from":true,"to":false})"), std::string::npos) << fields;
  EXPECT_NE(fields.find(R"("path":"rules")"), std::string::npos) << fields;
  EXPECT_EQ(fields.find("salt"), std::string::npos) << fields;  // each environment has its own
  EXPECT_EQ(rules::ToJson(*v.Find("segments")), R"([{"key":"beta","status":"onlyInFrom"}])");
  EXPECT_EQ(v.Find("same")->as_number(), 1);
  // One flag; and mistakes.
  EXPECT_EQ(J(Admin("GET", "/api/v1/projects/shop/compare?from=staging&to=production&flag=web-banner")).Find("flags")->as_array().size(), 0u);
  EXPECT_EQ(Admin("GET", "/api/v1/projects/shop/compare?from=staging&to=production&flag=nope").status, 404);
  EXPECT_EQ(Admin("GET", "/api/v1/projects/shop/compare?from=staging").status, 400);
  EXPECT_EQ(Admin("GET", "/api/v1/projects/shop/compare?from=staging&to=qa").status, 404);
}

TEST_F(PromoteE2eTest, APromotionNeedsItsSegmentsAndThenMakesTheEnvironmentsEqual) {
  int64_t before = Sequence(kProduction);
  std::string salt = Salt(kProduction);
  auto missing = Admin("POST", "/api/v1/projects/shop/promote", R"({"from":"staging","to":"production","flags":["checkout"]})");
  EXPECT_EQ(missing.status, 409) << missing.body;
  EXPECT_NE(missing.body.find(R"(needs segment \"beta\", which production does not have)"), std::string::npos) << missing.body;
  EXPECT_EQ(Sequence(kProduction), before);  // nothing written
  auto promoted = Admin("POST", "/api/v1/projects/shop/promote",
                        R"({"from":"staging","to":"production","flags":["checkout"],"segments":["beta"],"comment":"release 42"})");
  ASSERT_EQ(promoted.status, 200) << promoted.body;
  EXPECT_EQ(J(promoted).Find("sequence")->as_number(), before + 1);  // one change set
  auto compared = J(Admin("GET", "/api/v1/projects/shop/compare?from=staging&to=production"));
  EXPECT_EQ(compared.Find("flags")->as_array().size(), 0u) << rules::ToJson(compared);
  EXPECT_EQ(compared.Find("segments")->as_array().size(), 0u) << rules::ToJson(compared);
  EXPECT_EQ(Salt(kProduction), salt);
  auto history = J(Admin("GET", StrCat(kProduction, "/history?limit=1"))).Find("items")->as_array()[0];
  EXPECT_EQ(history.Find("comment")->as_string(), "release 42 (promoted from staging)");
  // Bad requests name their field.
  auto unknown = Admin("POST", "/api/v1/projects/shop/promote", R"({"from":"staging","to":"production","flags":["nope"]})");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_NE(unknown.body.find("flags[0]"), std::string::npos) << unknown.body;
  EXPECT_EQ(Admin("POST", "/api/v1/projects/shop/promote", R"({"from":"staging","to":"production"})").status, 400);
  EXPECT_EQ(Admin("POST", "/api/v1/projects/shop/promote", R"({"from":"staging","to":"staging","flags":["checkout"]})").status, 400);
  EXPECT_EQ(Admin("POST", "/api/v1/projects/shop/promote", R"({"from":"staging","to":"production","flags":"checkout"})").status, 400);
}

TEST_F(PromoteE2eTest, APromotionIntoAnEnvironmentThatRequiresApprovalWaits) {
  ASSERT_EQ(Admin("PATCH", kProduction, R"({"approvals":{"requiredApprovals":1}})").status, 200);
  auto r = Admin("POST", "/api/v1/projects/shop/promote", R"({"from":"staging","to":"production","flags":["checkout"],"segments":["beta"]})");
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(J(r).Find("items")->as_array().size(), 2u);
  EXPECT_FALSE(J(Admin("GET", StrCat(kProduction, "/flags/checkout"))).Find("on")->as_bool());
}

}  // namespace
}  // namespace gonfalon::e2e
