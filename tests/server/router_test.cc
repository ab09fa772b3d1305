#include "router.h"

#include <gtest/gtest.h>

#include "gonfalon/rules/value.h"

namespace gonfalon::server {
namespace {

Request Req(std::string method, std::string raw_path) {
  Request r;
  r.method = std::move(method);
  r.raw_path = raw_path;
  PercentDecode(raw_path, r.path);
  return r;
}

Response Echo(const Call& c) {
  Response r;
  r.body = c.Param("p") + "|" + c.Param("f") + "|" + c.Param("key");
  return r;
}

std::optional<Response> AllowAll(Access, Call&) { return std::nullopt; }

class RouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    router_.Add("GET", "/api/v1/projects/{p}", Access::kAdmin, Echo);
    router_.Add("PATCH", "/api/v1/projects/{p}", Access::kAdmin, Echo);
    router_.Add("GET", "/api/v1/projects/{p}/flags/{f}", Access::kAdmin, Echo);
    router_.Add("POST", "/ofrep/v1/evaluate/flags", Access::kOfrep, Echo);
    router_.Add("POST", "/ofrep/v1/evaluate/flags/{key...}", Access::kOfrep, Echo);
  }
  Router router_;
};

TEST_F(RouterTest, MatchesParametersAndLabelsTheRoute) {
  Response r = router_.Dispatch(Req("GET", "/api/v1/projects/shop/flags/checkout"), AllowAll);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "shop|checkout|");
  EXPECT_EQ(r.route, "/api/v1/projects/{p}/flags/{f}");
}

TEST_F(RouterTest, ParametersAreDecodedAfterMatchingSoAnEscapedSlashStaysInside) {
  Response r = router_.Dispatch(Req("GET", "/api/v1/projects/a%2Fb"), AllowAll);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "a/b||");
}

TEST_F(RouterTest, ARestParameterTakesTheRestOfThePathSlashesIncluded) {
  Response r = router_.Dispatch(Req("POST", "/ofrep/v1/evaluate/flags/team/new%20checkout"), AllowAll);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "||team/new checkout");
  EXPECT_EQ(r.route, "/ofrep/v1/evaluate/flags/{key}");
  EXPECT_EQ(router_.Dispatch(Req("POST", "/ofrep/v1/evaluate/flags"), AllowAll).route, "/ofrep/v1/evaluate/flags");
}

TEST_F(RouterTest, UnknownPathIs404Unmatched) {
  Response r = router_.Dispatch(Req("GET", "/api/v1/nothing"), AllowAll);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.route, "unmatched");
  EXPECT_NE(r.body.find("not_found"), std::string::npos);
}

TEST_F(RouterTest, KnownPathWrongMethodIs405WithAllowAndTheRouteLabel) {
  Response r = router_.Dispatch(Req("DELETE", "/api/v1/projects/shop"), AllowAll);
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.route, "/api/v1/projects/{p}");
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0].first, "Allow");
  EXPECT_EQ(r.headers[0].second, "GET, HEAD, PATCH");
}

TEST_F(RouterTest, HeadIsServedByTheGetHandler) {
  Response r = router_.Dispatch(Req("HEAD", "/api/v1/projects/shop"), AllowAll);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "shop||");  // the front end drops it
}

TEST_F(RouterTest, TheAuthorizerSeesTheAccessAndParamsAndItsRefusalIsLabelled) {
  Access seen = Access::kPublic;
  std::string project;
  Response r = router_.Dispatch(Req("GET", "/api/v1/projects/shop"), [&](Access a, Call& c) -> std::optional<Response> {
    seen = a;
    project = c.Param("p");
    Response refused;
    refused.status = 403;
    return refused;
  });
  EXPECT_EQ(seen, Access::kAdmin);
  EXPECT_EQ(project, "shop");
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.route, "/api/v1/projects/{p}");
}

TEST_F(RouterTest, AMalformedEscapeIsA400) {
  Response r = router_.Dispatch(Req("GET", "/api/v1/projects/%zz"), AllowAll);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.route, "/api/v1/projects/{p}");
}

}  // namespace
}  // namespace gonfalon::server
