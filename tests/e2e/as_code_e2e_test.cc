// Flags as code through the real binary (issue 13, part 1): `gonfalon export` and `gonfalon
// apply` against real servers. A project exported, applied to an empty server and exported
// again gives the same document; --plan exits 2 on drift and 0 without; applying twice makes
// no second change set; a change made between the plan and the apply fails it; --prune
// deletes only with the flag; an environment that requires approval gets a change request;
// a malformed file is refused with its path and writes nothing.

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "gonfalon/rules/str_cat.h"
#include "server_fixture.h"

namespace gonfalon::e2e {
namespace {

constexpr char kEnv[] = "/api/v1/projects/shop/environments/production";

class AsCodeE2eTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    MakeShop();
    dir_ = TempDir("as-code");
    ASSERT_EQ(Admin("PATCH", StrCat(kEnv, "/flags/checkout"),
                    R"({"on":true,"rules":[{"id":"beta","clauses":[{"contextKind":"user","attribute":"email","op":"endsWith","values":["@example.com"]}],"variation":1}]})")
                  .status,
              200);
    ASSERT_EQ(Admin("POST", StrCat(kEnv, "/segments"), R"({"key":"beta","included":["u1","u2"]})").status, 201);
    ASSERT_EQ(Admin("PUT", "/api/v1/projects/shop/metrics/errors", R"({"eventKey":"error","kind":"conversion","successCriteria":"lower"})").status, 201);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  // `gonfalon <args…> --url … --token …`; stdout and stderr together.
  std::string Cli(std::vector<std::string> args, int* code, int server_port = 0) {
    std::vector<std::string> argv = {GONFALON_BINARY};
    for (auto& a : args) argv.push_back(a);
    argv.insert(argv.end(), {"--url", StrCat("http://127.0.0.1:", server_port ? server_port : port()), "--token", kAdminToken});
    return RunCommand(argv, code, true);
  }
  std::string Write(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  std::string Read(const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::string dir_;
};

TEST_F(AsCodeE2eTest, AnExportAppliedToAnEmptyServerExportsTheSame) {
  for (std::string format : {"yaml", "json"}) {
    int code = -1;
    std::string file = dir_ + "/shop." + format;
    std::string said = Cli({"export", "--project", "shop", "--format", format, "-o", file}, &code);
    ASSERT_EQ(code, 0) << said;
    std::string first = Read(file);
    EXPECT_NE(first.find("endsWith"), std::string::npos) << first;
    EXPECT_EQ(first.find("version:"), std::string::npos) << "no volatile fields: " << first;
    EXPECT_EQ(first.find("\"version\""), std::string::npos) << "no volatile fields: " << first;
    ServerProcess empty;
    ASSERT_GT(empty.port(), 0);
    said = Cli({"apply", "-f", file}, &code, empty.port());
    ASSERT_EQ(code, 0) << said;
    EXPECT_NE(said.find("+ project shop"), std::string::npos) << said;
    EXPECT_NE(said.find("applied to production"), std::string::npos) << said;
    std::string again = dir_ + "/again." + format;
    ASSERT_EQ((Cli({"export", "--project", "shop", "--format", format, "-o", again}, &code, empty.port()), code), 0);
    EXPECT_EQ(Read(again), first) << format;
    // Applying it again changes nothing: no change set.
    int64_t sequence = static_cast<int64_t>(
        J(Http(empty.port(), "GET", "/api/v1/projects/shop/environments/production", "", Bearer(kAdminToken))).Find("sequence")->as_number());
    said = Cli({"apply", "-f", file}, &code, empty.port());
    EXPECT_EQ(code, 0) << said;
    EXPECT_NE(said.find("No changes"), std::string::npos) << said;
    EXPECT_EQ(J(Http(empty.port(), "GET", "/api/v1/projects/shop/environments/production", "", Bearer(kAdminToken))).Find("sequence")->as_number(),
              sequence);
  }
}

TEST_F(AsCodeE2eTest, PlanShowsDriftFieldByFieldAndExitsTwo) {
  int code = -1;
  std::string file = dir_ + "/shop.yaml";
  ASSERT_EQ((Cli({"export", "--project", "shop", "-o", file}, &code), code), 0);
  EXPECT_EQ((Cli({"apply", "-f", file, "--plan"}, &code), code), 0);  // no drift
  // Someone changes production by hand: the repository's file now differs.
  ASSERT_EQ(Admin("PATCH", StrCat(kEnv, "/flags/checkout"), R"({"offVariation":1})").status, 200);
  ASSERT_EQ(Admin("PATCH", StrCat(kEnv, "/segments/beta"), R"({"included":["u1","u2","u3"]})").status, 200);
  std::string plan = Cli({"apply", "-f", file, "--plan"}, &code);
  EXPECT_EQ(code, 2) << plan;
  EXPECT_NE(plan.find("~ flag checkout (production) targeting\n    offVariation: 1 -> 0"), std::string::npos) << plan;
  EXPECT_NE(plan.find("~ segment beta (production)\n    included: [\"u1\",\"u2\",\"u3\"] -> [\"u1\",\"u2\"]"), std::string::npos) << plan;
  EXPECT_NE(plan.find("2 changes."), std::string::npos) << plan;
  // A new flag, a changed name, a deleted metric with --prune only.
  std::string text = Read(file);
  text.replace(text.find("metrics:"), 8, "metrics: {}\nold_metrics:");
  Write("edited.yaml", text);
  plan = Cli({"apply", "-f", dir_ + "/edited.yaml", "--plan"}, &code);
  EXPECT_EQ(code, 1) << plan;  // old_metrics: unknown member, named
  EXPECT_NE(plan.find("old_metrics"), std::string::npos) << plan;
}

TEST_F(AsCodeE2eTest, AChangeBetweenThePlanAndTheApplyFailsItAndPruneDeletesOnlyWhenAsked) {
  auto doc = J(Admin("GET", "/api/v1/projects/shop/export"));
  // Drop the segment and the metric from the document; turn the flag off.
  doc.FindMutable("segments")->FindMutable("production")->Erase("beta");
  doc.Erase("metrics");
  doc.FindMutable("flags")->FindMutable("checkout")->FindMutable("environments")->FindMutable("production")->Set("on", rules::Value(false));
  auto plan = Admin("POST", "/api/v1/projects/shop/apply?dryRun=true", rules::ToJson(doc));
  ASSERT_EQ(plan.status, 200) << plan.body;
  EXPECT_EQ(J(plan).Find("changes")->as_array().size(), 1u) << plan.body;  // without prune: only the flag
  std::string token = J(plan).Find("planToken")->as_string();
  ASSERT_EQ(Admin("PATCH", StrCat(kEnv, "/flags/checkout"), R"({"offVariation":1})").status, 200);  // meanwhile
  auto stale = Admin("POST", StrCat("/api/v1/projects/shop/apply?planToken=", token), rules::ToJson(doc));
  EXPECT_EQ(stale.status, 409) << stale.body;
  EXPECT_TRUE(J(Admin("GET", StrCat(kEnv, "/flags/checkout"))).Find("on")->as_bool());  // nothing applied
  // With prune: the segment is referenced by nothing, so it goes; the metric too.
  auto pruned = Admin("POST", "/api/v1/projects/shop/apply?prune=true", rules::ToJson(doc));
  ASSERT_EQ(pruned.status, 200) << pruned.body;
  EXPECT_EQ(Admin("GET", StrCat(kEnv, "/segments/beta")).status, 404);
  EXPECT_EQ(Admin("GET", "/api/v1/projects/shop/metrics/errors").status, 404);
  EXPECT_FALSE(J(Admin("GET", StrCat(kEnv, "/flags/checkout"))).Find("on")->as_bool());
  // The staging segments the document did not mention were not touched by prune.
  EXPECT_EQ(J(Admin("POST", "/api/v1/projects/shop/apply?dryRun=true&prune=true", rules::ToJson(doc))).Find("changes")->as_array().size(), 0u);
}

TEST_F(AsCodeE2eTest, AnEnvironmentThatRequiresApprovalGetsAChangeRequest) {
  ASSERT_EQ(Admin("PATCH", kEnv, R"({"approvals":{"requiredApprovals":1}})").status, 200);
  auto doc = J(Admin("GET", "/api/v1/projects/shop/export"));
  doc.FindMutable("flags")->FindMutable("checkout")->FindMutable("environments")->FindMutable("production")->Set("on", rules::Value(false));
  std::string file = Write("shop.json", rules::ToJson(doc));
  int code = -1;
  std::string said = Cli({"apply", "-f", file}, &code);
  ASSERT_EQ(code, 0) << said;
  EXPECT_NE(said.find("production requires approval: change request cr_"), std::string::npos) << said;
  EXPECT_TRUE(J(Admin("GET", StrCat(kEnv, "/flags/checkout"))).Find("on")->as_bool());  // waits
  EXPECT_EQ(J(Admin("GET", StrCat(kEnv, "/change-requests?status=pending"))).Find("items")->as_array().size(), 1u);
}

TEST_F(AsCodeE2eTest, MalformedFilesAreRefusedWithTheirPathAndWriteNothing) {
  int code = -1;
  int64_t sequence = static_cast<int64_t>(J(Admin("GET", kEnv)).Find("sequence")->as_number());
  struct Bad {
    std::string text;
    std::string says;
  };
  for (const Bad& b : {Bad{"project: shop\nflags: [oops", "YAML line"},
                       Bad{"project: shop\nflags:\n  checkout:\n    environments:\n      production:\n        on: \"yes\"\n",
                           "flags.checkout.environments.production.on"},
                       Bad{"project: shop\nflags:\n  checkout:\n    on: true\n", "flags.checkout.on"},
                       Bad{"project: shop\nflags:\n  checkout:\n    environments:\n      production:\n        variations: [1]\n",
                           "flags.checkout.environments.production.variations"},
                       Bad{"project: other\n", "project"},
                       Bad{"{\"project\": \"shop\", \"flags\": 3}", "flags: expected an object"},
                       Bad{"project: shop\nsegments:\n  production:\n    beta:\n      included: 7\n", "segments.production.beta.included"}}) {
    std::string said = Cli({"apply", "-f", Write("bad.yaml", b.text), "--project", "shop"}, &code);
    EXPECT_EQ(code, 1) << b.text << "\n" << said;
    EXPECT_NE(said.find(b.says), std::string::npos) << b.text << "\n" << said;
  }
  EXPECT_EQ(J(Admin("GET", kEnv)).Find("sequence")->as_number(), sequence);
  EXPECT_EQ(J(Admin("GET", "/api/v1/projects/shop/export")).Find("flags")->Find("checkout")->Find("environments")->Find("production")->Find("on")->as_bool(),
            true);
  EXPECT_EQ((Cli({"apply"}, &code), code), 2);
  EXPECT_EQ((Cli({"export"}, &code), code), 2);
  std::string said = Cli({"export", "--project", "nope"}, &code);
  EXPECT_EQ(code, 1) << said;
  EXPECT_NE(said.find("HTTP 404"), std::string::npos) << said;
  said = Cli({"export", "--project", "shop", "--env", "qa"}, &code);
  EXPECT_EQ(code, 1) << said;
  EXPECT_NE(said.find("no environment \"qa\""), std::string::npos) << said;
  EXPECT_EQ((Cli({"apply", "-f", dir_ + "/missing.yaml"}, &code), code), 1);
}

}  // namespace
}  // namespace gonfalon::e2e
