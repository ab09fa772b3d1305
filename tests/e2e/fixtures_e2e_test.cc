// The golden fixtures of tests/fixtures/rules through the real server: each file's flags and
// segments are written through the admin API and every case is evaluated with POST
// /sdk/v1/evaluate, so the server, the SDK and the rules engine are held to the same answers.
// Data the store refuses to keep (cycles, dangling references, malformed flags) cannot reach
// an evaluation through the server; its cases are counted apart and the rest must all agree.
#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <set>

#include "gonfalon/rules/str_cat.h"
#include "gonfalon/rules/value.h"
#include "server_fixture.h"
#include "tests/rules/fixture_loader.h"

namespace gonfalon::e2e {
namespace {

using rules::Object;
using rules::Value;

TEST_F(ServerTest, GoldenFixturesEvaluateAsExpectedThroughSdkEvaluate) {
  size_t checked = 0, unstorable = 0;
  int n = 0;
  for (auto& [file, json] : testing::LoadJsonDir(GONFALON_FIXTURES_DIR "/rules")) {
    SCOPED_TRACE(file);
    std::string project = StrCat("fx", n++);
    std::string api = "/api/v1/projects/" + project;
    ASSERT_EQ(Admin("POST", "/api/v1/projects", StrCat(R"({"key":")", project, R"(","environments":["e"]})")).status, 201);
    auto key = Admin("POST", "/api/v1/keys", StrCat(R"({"kind":"server","project":")", project, R"(","environment":"e"})"));
    ASSERT_EQ(key.status, 201);
    std::string sdk_key = J(key).Find("secret")->as_string();
    const Value& data = *json.Find("data");
    // Every flag at the project level first, so that references between them resolve.
    for (const auto& [fkey, flag] : data.Find("flags")->as_object()) {
      Value meta(Object{{"key", Value(fkey)}, {"variations", flag.Find("variations") ? *flag.Find("variations") : Value(rules::Array{})}});
      Admin("POST", api + "/flags", rules::ToJson(meta));
    }
    std::set<std::string> stored, stored_segments;
    for (const auto& [skey, seg] : data.Find("segments")->as_object()) {
      if (seg.Find("deleted") != nullptr && seg.Find("deleted")->as_bool()) continue;  // deleted: absent
      if (Admin("POST", api + "/environments/e/segments", rules::ToJson(seg)).status == 201) stored_segments.insert(skey);
    }
    for (const auto& [fkey, flag] : data.Find("flags")->as_object()) {
      Value body = flag;
      body.Erase("version");
      bool deleted = body.Find("deleted") != nullptr && body.Find("deleted")->as_bool();
      body.Erase("deleted");
      if (Admin("PUT", api + "/environments/e/flags/" + fkey, rules::ToJson(body)).status != 200) continue;
      if (deleted && Admin("PATCH", api + "/flags/" + fkey, R"({"archived":true})").status != 200) continue;
      stored.insert(fkey);
    }
    // Whether a flag and everything it depends on (prerequisites, segments) was stored as
    // written; a flag absent from the data is a case about an unknown flag.
    std::function<bool(const std::string&, int)> intact = [&](const std::string& key, int depth) {
      const Value* flag = data.Find("flags")->Find(key);
      if (flag == nullptr) return true;
      if (stored.count(key) == 0 || depth > 70) return false;
      if (const Value* prereqs = flag->Find("prerequisites")) {
        for (const Value& p : prereqs->as_array()) {
          if (p.Find("key") && !intact(p.Find("key")->as_string(), depth + 1)) return false;
        }
      }
      std::string text = rules::ToJson(*flag);
      for (const auto& [skey, seg] : data.Find("segments")->as_object()) {
        if (stored_segments.count(skey) == 0 && text.find("\"" + skey + "\"") != std::string::npos) return false;
      }
      return true;
    };
    for (const Value& c : json.Find("cases")->as_array()) {
      const std::string& flag = c.Find("flag")->as_string();
      if (!intact(flag, 0)) {
        ++unstorable;
        continue;
      }
      SCOPED_TRACE(c.Find("name")->as_string());
      Value request(Object{{"context", *c.Find("context")}, {"flag", Value(flag)}});
      auto r = Http(port(), "POST", "/sdk/v1/evaluate", rules::ToJson(request), Bearer(sdk_key));
      const Value& expect = *c.Find("expect");
      if (r.status == 400) {
        // An invalid context is refused by the API before evaluation; the engine says why.
        EXPECT_EQ(expect.Find("reason")->Find("kind")->as_string(), "ERROR") << r.body;
        ++checked;
        continue;
      }
      ASSERT_EQ(r.status, 200) << r.body;
      Value got = J(r);
      EXPECT_EQ(rules::ToJson(*got.Find("reason")), rules::ToJson(*expect.Find("reason")));
      const Value* value = got.Find("value");
      EXPECT_TRUE((value ? *value : Value()) == *expect.Find("value")) << r.body;
      const Value* want_index = expect.Find("variationIndex");
      const Value* got_index = got.Find("variationIndex");
      EXPECT_EQ(got_index ? got_index->as_number() : -1, want_index ? want_index->as_number() : -1) << r.body;
      ++checked;
    }
  }
  std::printf("fixture cases through /sdk/v1/evaluate: %zu checked, %zu with data the store refuses\n", checked, unstorable);
  EXPECT_GE(checked, 200u);
}

}  // namespace
}  // namespace gonfalon::e2e
