// `gonfalon import --from launchdarkly` through the real binary (issue 13, part 4): the demo
// payload taken into a new project evaluates, on the server, exactly as `gonfalon eval`
// evaluates the payload itself (the evaluator the LaunchDarkly fixtures check); a payload
// with every field kind goes across, and what Gonfalon cannot take is listed with its path
// while the rest is imported; a second import changes nothing; malformed payloads write
// nothing.

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "gonfalon/rules/str_cat.h"
#include "server_fixture.h"

namespace gonfalon::e2e {
namespace {

const std::string kDemo = std::string(GONFALON_FIXTURES_DIR) + "/../../demo/flags.json";

class ImportE2eTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    dir_ = TempDir("import");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Import(const std::string& file, int* code, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {GONFALON_BINARY, "import", "--from", "launchdarkly", file, "--project", "shop", "--env", "production",
                                     "--url", StrCat("http://127.0.0.1:", port()), "--token", kAdminToken};
    for (auto& e : extra) argv.push_back(e);
    return RunCommand(argv, code, true);
  }
  std::string Write(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  std::string dir_;
};

TEST_F(ImportE2eTest, TheDemoPayloadEvaluatesOnTheServerAsTheEvaluatorEvaluatesIt) {
  int code = -1;
  std::string said = Import(kDemo, &code);
  ASSERT_EQ(code, 0) << said;
  EXPECT_NE(said.find("6 flags and 1 segments"), std::string::npos) << said;
  EXPECT_NE(said.find("+ project shop"), std::string::npos) << said;
  // Project-level parts came along.
  auto meta = J(Admin("GET", "/api/v1/projects/shop/flags/new-checkout"));
  EXPECT_EQ(meta.Find("name")->as_string(), "New checkout");
  // Contexts that reach targets, rules, segments, rollouts and prerequisites.
  std::vector<std::string> contexts = {
      R"({"kind":"user","key":"qa-1"})",
      R"({"kind":"user","key":"alice"})",
      R"({"kind":"user","key":"mallory","betaOptIn":true})",
      R"({"kind":"user","key":"carol","email":"carol@example.com","country":"FR"})",
      R"({"kind":"device","key":"d1","appVersion":"5.0.1"})",
      R"({"kind":"multi","user":{"key":"dan","country":"DE"},"device":{"key":"d2","appVersion":"1.0.0"}})"};
  for (int u = 0; u < 40; ++u) contexts.push_back(StrCat(R"({"kind":"user","key":"user-)", u, R"("})"));
  std::string jsonl;
  for (const std::string& c : contexts) jsonl += c + "\n";
  std::string contexts_file = Write("contexts.jsonl", jsonl);
  std::string expected = RunCommand({GONFALON_BINARY, "eval", "--data", kDemo, "--contexts", contexts_file}, &code);
  ASSERT_EQ(code, 0);
  std::string server_key = J(Admin("POST", "/api/v1/keys", R"({"kind":"server","project":"shop","environment":"production"})")).Find("secret")->as_string();
  int compared = 0;
  std::istringstream lines(expected);
  for (std::string line; std::getline(lines, line);) {
    rules::Value want = rules::ParseJson(line).value();
    auto got = Http(port(), "POST", "/sdk/v1/evaluate",
                    StrCat(R"({"context":)", rules::ToJson(*want.Find("context")), R"(,"flag":")", want.Find("flag")->as_string(), R"("})"),
                    Bearer(server_key));
    ASSERT_EQ(got.status, 200) << got.body;
    rules::Value v = J(got);
    EXPECT_EQ(rules::ToJson(*v.Find("value")), rules::ToJson(*want.Find("value"))) << line << "\n" << got.body;
    EXPECT_EQ(rules::ToJson(*v.Find("reason")), rules::ToJson(*want.Find("reason"))) << line << "\n" << got.body;
    ++compared;
  }
  EXPECT_EQ(compared, static_cast<int>(contexts.size()) * 6);
  // Again: nothing to do.
  said = Import(kDemo, &code);
  EXPECT_EQ(code, 0) << said;
  EXPECT_NE(said.find("No changes"), std::string::npos) << said;
}

TEST_F(ImportE2eTest, WhatCannotBeTakenIsListedWithItsPathAndTheRestIsImported) {
  std::string payload = R"({
    "flags": {
      "full": {"key":"full","version":12,"on":true,"salt":"f1","offVariation":0,"variations":["a","b","c"],
               "targets":[{"values":["u1"],"variation":2}],
               "contextTargets":[{"contextKind":"org","values":["acme"],"variation":1}],
               "prerequisites":[{"key":"gate","variation":1}],
               "rules":[{"id":"r1","clauses":[{"contextKind":"user","attribute":"/address/city","op":"in","values":["Paris"],"negate":true}],
                         "rollout":{"kind":"experiment","seed":7,"contextKind":"user","bucketBy":"key",
                                    "variations":[{"variation":0,"weight":60000},{"variation":1,"weight":40000,"untracked":true}]},
                         "trackEvents":true}],
               "fallthrough":{"variation":1},"trackEvents":true,"trackEventsFallthrough":true,
               "clientSideAvailability":{"usingEnvironmentId":true,"usingMobileKey":false},
               "debugEventsUntilDate":null,"excludeFromSummaries":true,"deleted":false},
      "gate": {"key":"gate","on":true,"variations":[false,true],"offVariation":0,"fallthrough":{"variation":1}},
      "gone": {"key":"gone","deleted":true,"variations":[false,true]},
      "broken": {"key":"broken","on":true,"variations":[false,true],"offVariation":0,"fallthrough":{"variation":0},
                 "rules":[{"clauses":[{"attribute":"x","op":"looksLike","values":[1]}],"variation":1}]}
    },
    "segments": {
      "org": {"key":"org","included":["a"],"excluded":["b"],"includedContexts":[{"contextKind":"org","values":["acme"]}],
              "rules":[{"clauses":[{"attribute":"plan","op":"in","values":["pro"]}],"weight":50000,"bucketBy":"key"}],"salt":"s","version":3},
      "huge": {"key":"huge","unbounded":true,"generation":4}
    }})";
  int code = -1;
  std::string said = Import(Write("payload.json", payload), &code);
  ASSERT_EQ(code, 0) << said;
  EXPECT_NE(said.find("not taken: flags.full.excludeFromSummaries: not part of Gonfalon's flag model"), std::string::npos) << said;
  EXPECT_NE(said.find("not taken: flags.gone: deleted in LaunchDarkly"), std::string::npos) << said;
  EXPECT_NE(said.find("not taken: flags.broken.rules[0].clauses[0].op: unknown operator \"looksLike\""), std::string::npos) << said;
  EXPECT_NE(said.find("not taken: segments.huge.unbounded"), std::string::npos) << said;
  EXPECT_NE(said.find("2 flags and 1 segments"), std::string::npos) << said;
  auto full = J(Admin("GET", "/api/v1/projects/shop/environments/production/flags/full"));
  EXPECT_EQ(full.Find("salt")->as_string(), "f1");
  EXPECT_EQ(rules::ToJson(*full.Find("rules")->as_array()[0].Find("rollout")),
            R"({"kind":"experiment","contextKind":"user","bucketBy":"key","seed":7,"variations":[{"variation":0,"weight":60000},{"variation":1,"weight":40000,"untracked":true}]})")
      << rules::ToJson(full);
  EXPECT_EQ(full.Find("contextTargets")->as_array().size(), 1u);
  EXPECT_EQ(Admin("GET", "/api/v1/projects/shop/environments/production/flags/broken").status, 404);
  EXPECT_EQ(Admin("GET", "/api/v1/projects/shop/environments/production/segments/huge").status, 404);
  EXPECT_EQ(J(Admin("GET", "/api/v1/projects/shop/environments/production/segments/org")).Find("salt")->as_string(), "s");
}

TEST_F(ImportE2eTest, MalformedPayloadsAreRefusedAndWriteNothing) {
  int code = -1;
  for (const char* bad : {"{not json", R"({"flags":[]})", R"({"flagz":{}})", R"([1,2])"}) {
    std::string said = Import(Write("bad.json", bad), &code);
    EXPECT_EQ(code, 1) << bad << "\n" << said;
  }
  EXPECT_EQ(Admin("GET", "/api/v1/projects/shop").status, 404);  // nothing created
  std::string said = Import(Write("bad.json", R"({"flags":[]})"), &code);
  EXPECT_NE(said.find("flags: expected an object"), std::string::npos) << said;
  EXPECT_EQ((Import(dir_ + "/missing.json", &code), code), 1);
  EXPECT_EQ((RunCommand({GONFALON_BINARY, "import", "--from", "unleash", "x", "--project", "p", "--env", "e"}, &code, true), code), 2);
}

}  // namespace
}  // namespace gonfalon::e2e
