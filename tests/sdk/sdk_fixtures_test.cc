// The golden fixtures of tests/fixtures/rules through the public SDK Client (loaded from a flag
// file, offline), so that the SDK and the rules engine can never disagree.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/evaluator.h"
#include "gonfalon/sdk/client.h"
#include "tests/rules/fixture_loader.h"

namespace gonfalon::sdk {
namespace {

using rules::Value;

TEST(SdkFixturesTest, EveryGoldenCaseEvaluatesAsExpectedThroughTheClient) {
  size_t checked = 0;
  for (auto& [name, json] : testing::LoadJsonDir(GONFALON_FIXTURES_DIR "/rules")) {
    SCOPED_TRACE(name);
    std::filesystem::path file = std::filesystem::temp_directory_path() /
                                 ("gonfalon-sdk-fixture-" + std::to_string(::getpid()) + "-" + name);
    std::ofstream(file) << rules::ToJson(*json.Find("data"));
    Config cfg;
    cfg.offline = true;
    cfg.flag_file = file.string();
    cfg.send_events = false;
    Client client(cfg);
    ASSERT_TRUE(client.WaitForInitialization(std::chrono::seconds(5))) << client.GetStatus().last_error;
    for (const Value& c : json.Find("cases")->as_array()) {
      SCOPED_TRACE(c.Find("name")->as_string());
      const Value& expect = *c.Find("expect");
      rules::Context ctx = rules::ContextFromJson(*c.Find("context"));
      Detail<Value> d = client.JsonVariationDetail(ctx, c.Find("flag")->as_string(), Value("caller-default"));
      EXPECT_EQ(rules::ToJson(rules::ReasonToValue(d.reason)), rules::ToJson(*expect.Find("reason")));
      // No variation in the fixture: the caller's default is served (a variation may be null).
      const Value* want_index = expect.Find("variationIndex");
      Value want = want_index == nullptr && expect.Find("value")->is_null() ? Value("caller-default") : *expect.Find("value");
      EXPECT_TRUE(d.value == want) << "value " << rules::ToJson(d.value) << ", want " << rules::ToJson(want);
      EXPECT_EQ(d.variation_index, want_index == nullptr ? -1 : static_cast<int>(want_index->as_number()));
      ++checked;
    }
    std::filesystem::remove(file);
  }
  EXPECT_GE(checked, 150u);
}

}  // namespace
}  // namespace gonfalon::sdk
