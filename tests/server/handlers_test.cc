// The API's handlers without sockets: Api::Handle over a real store in a temporary directory,
// wrapped so that a test can make any storage call fail the way storage can fail.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>

#include "api.h"
#include "faulty_store.h"
#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/str_cat.h"
#include "gonfalon/rules/value.h"
#include "status_testing.h"

namespace gonfalon::server {
namespace {

using rules::Value;

class HandlersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           StrCat("gonfalon-handlers-", ::getpid(), "-", ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    ASSERT_OK_AND_ASSIGN(real_, storage::Store::Open({.path = dir_.string(), .sync = false, .min_free_bytes = 0}));
    store_ = std::make_unique<storage::FaultyStore>(*real_);
    hubs_ = std::make_unique<Hubs>(*store_, metrics_);
    api_ = std::make_unique<Api>(*store_, *hubs_, metrics_);
    api_->set_ready(true);
    storage::ApiKey spec;
    spec.kind = storage::KeyKind::kAdmin;
    spec.write = true;
    ASSERT_OK_AND_ASSIGN(storage::NewApiKey admin, store_->CreateApiKey(spec));
    admin_ = admin.secret;
    ASSERT_EQ(Call("POST", "/api/v1/projects", R"({"key":"shop","environments":["production"]})").status, 201);
  }
  void TearDown() override {
    api_.reset();
    hubs_.reset();
    store_.reset();
    real_.reset();
    std::filesystem::remove_all(dir_);
  }

  Response Call(const std::string& method, const std::string& path, const std::string& body = "") {
    Request req;
    req.method = method;
    req.target = path;
    req.path = path;
    req.raw_path = path;
    req.headers = {{"authorization", "Bearer " + admin_}};
    req.body = body;
    return api_->Handle(req);
  }
  static Value Error(const Response& r) {
    auto v = rules::ParseJson(r.body);
    const Value* e = v.ok() ? v->Find("error") : nullptr;
    return e != nullptr ? *e : Value();
  }
  static std::string Member(const Value& v, const char* name) {
    const Value* m = v.Find(name);
    return m != nullptr && m->is_string() ? m->as_string() : "";
  }

  std::filesystem::path dir_;
  std::unique_ptr<storage::Store> real_;
  std::unique_ptr<storage::FaultyStore> store_;
  Metrics metrics_;
  std::unique_ptr<Hubs> hubs_;
  std::unique_ptr<Api> api_;
  std::string admin_;
};

TEST_F(HandlersTest, AdminRoutesAnswerAndLabelTheirRoute) {
  Response created = Call("POST", "/api/v1/projects/shop/flags", R"({"key":"checkout","variations":[false,true]})");
  EXPECT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(created.route, "/api/v1/projects/{p}/flags");
  Response got = Call("GET", "/api/v1/projects/shop/environments/production/flags/checkout");
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(got.route, "/api/v1/projects/{p}/environments/{e}/flags/{f}");
  EXPECT_NE(got.body.find("\"key\":\"checkout\""), std::string::npos) << got.body;
}

TEST_F(HandlersTest, EachStorageFailureHasItsStatusAndTheRouteLabelStays) {
  struct Case {
    absl::Status failure;
    int status;
    const char* code;
  } cases[] = {
      {absl::UnavailableError("store closing"), 503, "unavailable"},
      {absl::ResourceExhaustedError("disk full: 1 MiB free"), 507, "insufficient_storage"},
      {absl::DataLossError("corrupt value in projects at key \"shop\""), 500, "internal"},
      {absl::InternalError("io error"), 500, "internal"},
  };
  for (const Case& c : cases) {
    store_->Fail("GetProject", c.failure);
    Response r = Call("GET", "/api/v1/projects/shop");
    EXPECT_EQ(r.status, c.status) << c.failure;
    EXPECT_EQ(Member(Error(r), "code"), c.code) << r.body;
    EXPECT_EQ(Member(Error(r), "message"), std::string(c.failure.message())) << r.body;
    // Counted under its route, not as "unmatched" (the failure happens inside the handler).
    EXPECT_EQ(r.route, "/api/v1/projects/{p}");
  }
  store_->Heal("GetProject");
  EXPECT_EQ(Call("GET", "/api/v1/projects/shop").status, 200);
}

// Authenticated keys are cached until a key is written: other admin writes leave the cache
// (clearing it made each write read its own key again), a key created or revoked voids it.
TEST_F(HandlersTest, TheKeyCacheOutlivesFlagWritesButNotKeyWrites) {
  ASSERT_EQ(Call("POST", "/api/v1/projects/shop/flags", R"({"key":"checkout","variations":[false,true]})").status, 201);
  store_->Fail("Authenticate", absl::UnavailableError("key store down"));
  for (int i = 0; i < 3; ++i) {
    Response r = Call("POST", "/api/v1/projects/shop/environments/production/changesets",
                      StrCat(R"({"items":[{"kind":"flag","key":"checkout","data":{"on":)", i % 2 == 0 ? "true" : "false",
                             R"(,"fallthrough":{"variation":1},"offVariation":0}}]})"));
    EXPECT_EQ(r.status, 200) << r.body;  // the cached key: storage not asked
  }
  storage::ApiKey spec;
  spec.kind = storage::KeyKind::kServer;
  spec.project = "shop";
  spec.environment = "production";
  ASSERT_OK(store_->CreateApiKey(spec).status());
  Response after = Call("GET", "/api/v1/projects/shop/flags/checkout");
  EXPECT_EQ(after.status, 503) << after.body;  // asked storage again, which failed
  store_->Heal("Authenticate");
  EXPECT_EQ(Call("GET", "/api/v1/projects/shop/flags/checkout").status, 200);
}

TEST_F(HandlersTest, AWriteThatStorageRefusesAnswersWithoutWaitingOrWriting) {
  store_->Fail("CreateFlag", absl::ResourceExhaustedError("disk full"));
  Response r = Call("POST", "/api/v1/projects/shop/flags", R"({"key":"checkout","variations":[false,true]})");
  EXPECT_EQ(r.status, 507) << r.body;
  store_->Heal("CreateFlag");
  EXPECT_EQ(Call("GET", "/api/v1/projects/shop/flags/checkout").status, 404);
}

TEST_F(HandlersTest, TheFieldOfAStorageErrorIsReportedAsData) {
  store_->Fail("Apply", rules::FieldError(absl::StatusCode::kInvalidArgument, "items[0].data.rules[3].clauses[0].op",
                                          "unknown operator \"near\""));
  Response r = Call("POST", "/api/v1/projects/shop/environments/production/changesets",
                    R"({"items":[{"kind":"segment","key":"beta","data":{"key":"beta"}}]})");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(Member(Error(r), "field"), "items[0].data.rules[3].clauses[0].op");
  // A message that merely looks like "field: text" names no field.
  store_->Fail("Apply", absl::InvalidArgumentError("items: text that is not a field error"));
  r = Call("POST", "/api/v1/projects/shop/environments/production/changesets",
           R"({"items":[{"kind":"segment","key":"beta","data":{"key":"beta"}}]})");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(Error(r).Find("field"), nullptr) << r.body;
  // A single-item write reports the field inside the item.
  store_->Heal("Apply");
  r = Call("PUT", "/api/v1/projects/shop/environments/production/segments/beta",
           R"({"rules":[{"clauses":[{"attribute":"a","op":"near","values":[]}]}]})");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(Member(Error(r), "field"), "rules[0].clauses[0].op") << r.body;
}

}  // namespace
}  // namespace gonfalon::server
