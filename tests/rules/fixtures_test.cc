// Runs every golden case of tests/fixtures/rules against the evaluator, both on the data as
// written and after an encode/decode round trip.
#include <gtest/gtest.h>

#include <map>
#include <memory>

#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/evaluator.h"
#include "tests/rules/fixture_loader.h"

namespace gonfalon::rules {
namespace {

struct LoadedFile {
  std::string name;
  Value json;
  std::shared_ptr<const Snapshot> snapshot;
  std::shared_ptr<const Snapshot> round_tripped;
};

struct Case {
  const LoadedFile* file;
  const Value* json;
};

const std::vector<std::unique_ptr<LoadedFile>>& Files() {
  static auto* files = [] {
    auto* out = new std::vector<std::unique_ptr<LoadedFile>>();
    for (auto& [name, json] : testing::LoadJsonDir(GONFALON_FIXTURES_DIR "/rules")) {
      auto f = std::make_unique<LoadedFile>();
      f->name = name;
      f->json = std::move(json);
      auto env = DecodeEnvironment(*f->json.Find("data"));
      if (env.ok()) {
        f->snapshot = Snapshot::Build(*env);
        auto again = DecodeEnvironment(ParseJson(ToJson(EncodeEnvironment(*env))).value());
        if (again.ok()) f->round_tripped = Snapshot::Build(*again);
      }
      out->push_back(std::move(f));
    }
    return out;
  }();
  return *files;
}

std::vector<Case> AllCases() {
  std::vector<Case> cases;
  for (const auto& f : Files()) {
    const Value* list = f->json.Find("cases");
    if (list == nullptr) continue;
    for (const Value& c : list->as_array()) cases.push_back({f.get(), &c});
  }
  return cases;
}

// Keeps ctest's test list readable: the case's own name instead of its bytes.
void PrintTo(const Case& c, std::ostream* os) { *os << c.json->Find("name")->as_string(); }

class FixtureTest : public ::testing::TestWithParam<Case> {};

void Check(const Snapshot& snap, const Value& c) {
  const Value& expect = *c.Find("expect");
  Context ctx = ContextFromJson(*c.Find("context"));
  Detail d = Evaluate(snap, c.Find("flag")->as_string(), ctx);
  Value got = DetailToValue(d);
  EXPECT_EQ(ToJson(*got.Find("reason")), ToJson(*expect.Find("reason")));
  EXPECT_TRUE(*got.Find("value") == *expect.Find("value"))
      << "value " << ToJson(*got.Find("value")) << ", want " << ToJson(*expect.Find("value"));
  const Value* want_index = expect.Find("variationIndex");
  EXPECT_EQ(d.variation_index, want_index == nullptr ? -1 : int(want_index->as_number()));
}

TEST_P(FixtureTest, EvaluatesAsExpected) {
  const Case& c = GetParam();
  ASSERT_NE(c.file->snapshot, nullptr) << c.file->name << ": data does not decode";
  SCOPED_TRACE(c.file->name + ": " + c.json->Find("name")->as_string());
  Check(*c.file->snapshot, *c.json);
}

TEST_P(FixtureTest, EvaluatesTheSameAfterRoundTrip) {
  const Case& c = GetParam();
  ASSERT_NE(c.file->round_tripped, nullptr) << c.file->name << ": round trip does not decode";
  SCOPED_TRACE(c.file->name + ": " + c.json->Find("name")->as_string());
  Check(*c.file->round_tripped, *c.json);
}

// Each case as one test, named after the file and its index.
std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  std::string n = info.param.file->name.substr(0, info.param.file->name.find('.'));
  n += "_" + std::to_string(info.index);
  for (char& ch : n) {
    if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return n;
}

INSTANTIATE_TEST_SUITE_P(Golden, FixtureTest, ::testing::ValuesIn(AllCases()), CaseName);

TEST(FixtureSetTest, HasAtLeast150Cases) { EXPECT_GE(AllCases().size(), 150u); }

TEST(FixtureSetTest, EveryFileDecodesAndRoundTripsToEqualData) {
  for (const auto& f : Files()) {
    SCOPED_TRACE(f->name);
    auto env = DecodeEnvironment(*f->json.Find("data"));
    ASSERT_TRUE(env.ok()) << env.status();
    auto again = DecodeEnvironment(EncodeEnvironment(*env));
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_TRUE(*env == *again);
  }
}

}  // namespace
}  // namespace gonfalon::rules
