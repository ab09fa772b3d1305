// Release metrics through the real server (issue 13, part 3): a release, its kill switch and
// a second release read back from history with the changes behind each figure; bad
// parameters are named.

#include <gtest/gtest.h>

#include <string>

#include "gonfalon/rules/str_cat.h"
#include "server_fixture.h"

namespace gonfalon::e2e {
namespace {

constexpr char kEnv[] = "/api/v1/projects/shop/environments/production";

class ReleaseMetricsE2eTest : public ServerTest {};

TEST_F(ReleaseMetricsE2eTest, AReleaseAndItsKillSwitchAreReadBackFromHistory) {
  MakeShop();
  ASSERT_EQ(Admin("PATCH", StrCat(kEnv, "/flags/checkout"), R"({"on":true,"fallthrough":{"variation":1}})").status, 200);
  ASSERT_EQ(Admin("PATCH", StrCat(kEnv, "/flags/checkout"), R"({"on":false})").status, 200);
  ASSERT_EQ(Admin("PATCH", StrCat(kEnv, "/flags/web-banner"), R"({"on":true,"fallthrough":{"variation":1}})").status, 200);
  auto r = Admin("GET", StrCat(kEnv, "/release-metrics"));
  ASSERT_EQ(r.status, 200) << r.body;
  rules::Value m = J(r);
  EXPECT_EQ(m.Find("releases")->Find("count")->as_number(), 2) << r.body;
  EXPECT_EQ(m.Find("changeFailureRate")->Find("failed")->as_number(), 1) << r.body;
  EXPECT_DOUBLE_EQ(m.Find("changeFailureRate")->Find("rate")->as_number(), 0.5);
  const rules::Value& failure = m.Find("changeFailureRate")->Find("items")->as_array()[0];
  EXPECT_EQ(failure.Find("flag")->as_string(), "checkout");
  EXPECT_EQ(failure.Find("how")->as_string(), "killSwitch");
  EXPECT_EQ(m.Find("leadTime")->Find("count")->as_number(), 2);
  EXPECT_EQ(m.Find("timeToRestore")->Find("count")->as_number(), 1);
  // Narrowed definitions; an empty window.
  auto only_on = J(Admin("GET", StrCat(kEnv, "/release-metrics?release=fullRollout")));
  EXPECT_EQ(only_on.Find("releases")->Find("count")->as_number(), 0);
  auto old = J(Admin("GET", StrCat(kEnv, "/release-metrics?from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z")));
  EXPECT_EQ(old.Find("releases")->Find("count")->as_number(), 0);
  EXPECT_TRUE(old.Find("changeFailureRate")->Find("rate")->is_null());
  // Mistakes are named.
  struct Bad {
    const char* query;
    const char* field;
  };
  for (const Bad& b : {Bad{"?release=shipped", "release"}, Bad{"?failure=oops", "failure"}, Bad{"?from=yesterday", "from"},
                       Bad{"?from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z", "from"}, Bad{"?failureWindowHours=0", "failureWindowHours"}}) {
    auto bad = Admin("GET", StrCat(kEnv, "/release-metrics", b.query));
    EXPECT_EQ(bad.status, 400) << b.query << ": " << bad.body;
    EXPECT_EQ(J(bad).Find("error")->Find("field")->as_string(), b.field) << b.query << ": " << bad.body;
  }
  EXPECT_EQ(Admin("GET", "/api/v1/projects/shop/environments/qa/release-metrics").status, 404);
}

}  // namespace
}  // namespace gonfalon::e2e
