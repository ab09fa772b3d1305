#include "gonfalon/rules/split_json.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "gonfalon/rules/codec.h"
#include "status_testing.h"

namespace gonfalon::rules {
namespace {

// Each split item, and rest, as ParseJson gives them: compared as encoded text, so that the
// members' order counts too.
void ExpectSameAsParseJson(std::string_view text, const SplitJson& doc, std::string_view name) {
  ASSERT_OK_AND_ASSIGN(Value whole, ParseJson(text));
  const Value* items = whole.Find(name);
  ASSERT_NE(items, nullptr);
  ASSERT_EQ(doc.ItemCount(name), items->as_object().size());
  for (size_t i = 0; i < doc.ItemCount(name); ++i) {
    EXPECT_EQ(doc.ItemKey(name, i), items->as_object()[i].first);
    ASSERT_OK_AND_ASSIGN(Value item, doc.Item(name, i));
    EXPECT_EQ(ToJson(item), ToJson(items->as_object()[i].second)) << i;
  }
  Object rest;
  for (const auto& [member, value] : whole.as_object()) {
    if (!doc.IsSplit(member)) rest.emplace_back(member, value);
  }
  EXPECT_EQ(ToJson(doc.rest()), ToJson(Value(std::move(rest))));
}

TEST(SplitJsonTest, ItemsAndTheRestAreWhatParseJsonGives) {
  const std::string text = R"( {"sequence": 7, "flags": {"b": {"key":"b","on":true,"v":[1,{"x":null}]},
      "a\u00e9": "not an object", "c": [1,2]}, "other": {"deep": [[]]}, "segments": {}} )";
  ASSERT_OK_AND_ASSIGN(SplitJson doc, SplitJson::Parse(text, {"flags", "segments"}));
  EXPECT_TRUE(doc.IsSplit("flags"));
  EXPECT_TRUE(doc.IsSplit("segments"));
  EXPECT_EQ(doc.ItemCount("segments"), 0u);
  EXPECT_EQ(doc.ItemKey("flags", 1), "a\u00e9");  // keys are unescaped
  ExpectSameAsParseJson(text, doc, "flags");
  EXPECT_EQ(ToJson(doc.rest()), R"({"sequence":7,"other":{"deep":[[]]}})");
}

TEST(SplitJsonTest, RepeatedNamesKeepTheFirstPlaceAndTheLastValue) {
  // As ParseJson: a repeated item key keeps its first place with its last value; a repeated
  // split member replaces the earlier one, whatever the types.
  const std::string items = R"({"flags": {"x": 1, "y": 2, "x": 3}})";
  ASSERT_OK_AND_ASSIGN(SplitJson doc, SplitJson::Parse(items, {"flags"}));
  ExpectSameAsParseJson(items, doc, "flags");

  ASSERT_OK_AND_ASSIGN(SplitJson object_last, SplitJson::Parse(R"({"flags": 5, "a": 1, "flags": {"k": true}})", {"flags"}));
  ASSERT_TRUE(object_last.IsSplit("flags"));
  EXPECT_EQ(object_last.ItemCount("flags"), 1u);
  EXPECT_EQ(ToJson(object_last.rest()), R"({"a":1})");

  ASSERT_OK_AND_ASSIGN(SplitJson number_last, SplitJson::Parse(R"({"flags": {"k": true}, "a": 1, "flags": 5})", {"flags"}));
  EXPECT_FALSE(number_last.IsSplit("flags"));
  EXPECT_EQ(number_last.ItemCount("flags"), 0u);
  EXPECT_EQ(ToJson(number_last.rest()), R"({"flags":5,"a":1})");  // at its first place
}

TEST(SplitJsonTest, WhatCannotBeSplitStaysInTheRest) {
  ASSERT_OK_AND_ASSIGN(SplitJson array, SplitJson::Parse("[1, 2]", {"flags"}));
  EXPECT_EQ(ToJson(array.rest()), "[1,2]");
  ASSERT_OK_AND_ASSIGN(SplitJson scalar, SplitJson::Parse(" \"x\" ", {"flags"}));
  EXPECT_EQ(ToJson(scalar.rest()), "\"x\"");
  ASSERT_OK_AND_ASSIGN(SplitJson wrong, SplitJson::Parse(R"({"flags": [1]})", {"flags"}));
  EXPECT_FALSE(wrong.IsSplit("flags"));
  EXPECT_EQ(ToJson(wrong.rest()), R"({"flags":[1]})");
}

TEST(SplitJsonTest, InvalidJsonIsReportedByParseOrByTheItem) {
  for (std::string_view bad : {R"({"flags": {)", R"({"flags": {"a": 1 "b": 2}})", R"({"a": 1} x)", R"({"a": 1}})",
                               R"({"a": tru})", R"({"a": "\x"})", "", R"({"flags": {"a": {}}, "b": [1,]})"}) {
    absl::StatusOr<SplitJson> doc = SplitJson::Parse(bad, {"flags"});
    ASSERT_FALSE(doc.ok()) << bad;
    EXPECT_EQ(std::string(doc.status().message()).rfind("invalid JSON: ", 0), 0u) << bad << ": " << doc.status();
  }
  // Inside an item, the error comes when the item is converted (each is validated then).
  ASSERT_OK_AND_ASSIGN(SplitJson doc, SplitJson::Parse(R"({"flags": {"a": {"on": tru}, "b": [1, 2,]}})", {"flags"}));
  for (size_t i = 0; i < 2; ++i) {
    absl::StatusOr<Value> item = doc.Item("flags", i);
    ASSERT_FALSE(item.ok()) << i;
    EXPECT_EQ(std::string(item.status().message()).rfind("invalid JSON: ", 0), 0u) << item.status();
  }
}

TEST(SplitJsonTest, TheDepthLimitCountsFromTheRoot) {
  // An item sits at depth 2, so it may nest kMaxJsonDepth - 2 more levels, as in ParseJson.
  auto nested = [](int levels) { return std::string(levels, '[') + std::string(levels, ']'); };
  std::string ok = R"({"flags": {"a": )" + nested(kMaxJsonDepth - 1) + "}}";
  std::string deep = R"({"flags": {"a": )" + nested(kMaxJsonDepth) + "}}";
  ASSERT_OK(ParseJson(ok));
  ASSERT_FALSE(ParseJson(deep).ok());
  ASSERT_OK_AND_ASSIGN(SplitJson fits, SplitJson::Parse(ok, {"flags"}));
  EXPECT_OK(fits.Item("flags", 0));
  ASSERT_OK_AND_ASSIGN(SplitJson too_deep, SplitJson::Parse(deep, {"flags"}));
  EXPECT_FALSE(too_deep.Item("flags", 0).ok());
  // The same in a member that is not split.
  EXPECT_OK(SplitJson::Parse(R"({"other": )" + nested(kMaxJsonDepth) + "}", {"flags"}));
  EXPECT_FALSE(SplitJson::Parse(R"({"other": )" + nested(kMaxJsonDepth + 1) + "}", {"flags"}).ok());
}

TEST(SplitJsonTest, PaddedTextIsParsedInPlace) {
  std::string text = R"({"flags": {"a": {"on": true}}, "sequence": 3})";
  std::string buffer = text + std::string(kJsonPadding, ' ');
  ASSERT_OK_AND_ASSIGN(SplitJson doc, SplitJson::Parse(PaddedJson{std::string_view(buffer.data(), text.size())}, {"flags"}));
  ExpectSameAsParseJson(text, doc, "flags");
}

// ParseEnvironment goes through SplitJson; DecodeEnvironment through one tree. Both give the
// same environment, and the same first error.
TEST(SplitJsonTest, ParseEnvironmentAgreesWithDecodingTheWholeTree) {
  std::string good = R"({"sequence": 9, "flags": {
      "f1": {"key": "f1", "version": 2, "on": true, "variations": [false, true], "offVariation": 0,
             "fallthrough": {"variation": 1}, "prerequisites": [{"key": "f2", "variation": 0}]},
      "f2": {"on": false, "variations": ["a", "b"], "offVariation": 1, "fallthrough": {"variation": 0}},
      "f1": {"key": "f1", "version": 3, "on": true, "variations": [false, true], "offVariation": 0,
             "fallthrough": {"variation": 0}}},
    "segments": {"s": {"included": ["u1"], "version": 4}}})";
  ASSERT_OK_AND_ASSIGN(Environment split, ParseEnvironment(good, {.strict = true}));
  ASSERT_OK_AND_ASSIGN(Environment tree, DecodeEnvironment(*ParseJson(good), {.strict = true}));
  EXPECT_TRUE(split == tree);
  EXPECT_EQ(split.sequence, 9);
  EXPECT_EQ(split.flags.at("f1").version, 3);  // the repeated key's last value
  EXPECT_EQ(split.flags.at("f2").key, "f2");   // the map key stands for a missing "key"

  for (std::string_view bad : {R"({"flags": {"a": {"key": "b"}}})", R"({"flags": {"a": {"on": 1}, "b": 2}})",
                               R"({"flags": [1]})", R"({"sequence": "x"})", R"([])",
                               R"({"flags": {"a": {"prerequisites": [{"key": "nowhere", "variation": 0}],
                                    "variations": [1], "fallthrough": {"variation": 0}}}})"}) {
    absl::StatusOr<Environment> by_split = ParseEnvironment(bad, {.strict = true});
    absl::StatusOr<Environment> by_tree = DecodeEnvironment(*ParseJson(bad), {.strict = true});
    ASSERT_FALSE(by_split.ok()) << bad;
    EXPECT_EQ(by_split.status(), by_tree.status()) << bad;
  }
}

}  // namespace
}  // namespace gonfalon::rules
