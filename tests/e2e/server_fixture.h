#pragma once
// The fixture of the server end-to-end suites: the real binary on port 0, an admin client,
// and a project "shop" with flags and keys.

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "e2e_util.h"
#include "gonfalon/rules/value.h"

namespace gonfalon::e2e {

class ServerTest : public ::testing::Test {
 protected:
  // Extra `gonfalon serve` arguments of a suite.
  virtual std::vector<std::string> ServerArgs() const { return {}; }
  void SetUp() override {
    server_ = std::make_unique<ServerProcess>(TempDir("server"), ServerArgs());
    ASSERT_GT(server_->port(), 0) << "server did not start: " << server_->output();
  }
  int port() const { return server_->port(); }

  HttpResponse Admin(const std::string& method, const std::string& path, const std::string& body = "",
                     std::vector<std::pair<std::string, std::string>> extra = {}) {
    auto h = Bearer(kAdminToken);
    for (auto& e : extra) h.push_back(e);
    return Http(port(), method, path, body, h);
  }
  static rules::Value J(const HttpResponse& r) {
    auto v = rules::ParseJson(r.body);
    return v.ok() ? *v : rules::Value();
  }
  // Project "shop" (production, staging), boolean flag "checkout", and SDK keys.
  void MakeShop() {
    ASSERT_EQ(Admin("POST", "/api/v1/projects", R"({"key":"shop","environments":["production","staging"]})").status, 201);
    ASSERT_EQ(Admin("POST", "/api/v1/projects/shop/flags", R"({"key":"checkout","variations":[false,true]})").status, 201);
    ASSERT_EQ(Admin("POST", "/api/v1/projects/shop/flags",
                    R"({"key":"web-banner","variations":["a","b"],"clientSideAvailability":{"usingEnvironmentId":true}})").status, 201);
    server_key_ = MakeKey("server", "production");
    client_key_ = MakeKey("client", "production");
    auto r = Admin("POST", "/api/v1/keys", R"({"kind":"admin","scope":"read"})");
    read_key_ = J(r).Find("secret")->as_string();
  }
  std::string MakeKey(const std::string& kind, const std::string& env) {
    auto r = Admin("POST", "/api/v1/keys", R"({"kind":")" + kind + R"(","project":"shop","environment":")" + env + R"("})");
    EXPECT_EQ(r.status, 201) << r.body;
    return J(r).Find("secret")->as_string();
  }

  std::unique_ptr<ServerProcess> server_;
  std::string server_key_, client_key_, read_key_;
};


}  // namespace gonfalon::e2e
