#include "gonfalon/rules/change_set.h"
#include "gonfalon/rules/field_error.h"

#include <gtest/gtest.h>

#include "gonfalon/rules/codec.h"
#include "status_testing.h"

namespace gonfalon::rules {
namespace {

Environment Env() {
  auto env = ParseEnvironment(R"({"sequence":5,"flags":{
    "a":{"key":"a","version":3,"on":true,"variations":[false,true],"fallthrough":{"variation":1}},
    "b":{"key":"b","version":1,"on":false,"variations":[1,2],"offVariation":0,"fallthrough":{"variation":0}}},
    "segments":{"s":{"key":"s","version":2,"included":["u1"]}}})");
  EXPECT_OK(env);
  return *env;
}

TEST(ChangeSetTest, EncodesAndDecodesTheWireFormat) {
  ChangeSetEvent e{43, 1700000000000, {}};
  e.items.push_back({ChangedKind::kFlag, "a", 4, *ParseJson(R"({"key":"a","on":false})")});
  e.items.push_back({ChangedKind::kSegment, "s", 3, std::nullopt});
  std::string json = EncodeChangeSetEvent(e);
  EXPECT_EQ(json, R"({"sequence":43,"time":1700000000000,"items":[{"kind":"flag","key":"a","version":4,"data":{"key":"a","on":false}},)"
                  R"({"kind":"segment","key":"s","version":3,"deleted":true}]})");
  auto back = DecodeChangeSetEvent(json);
  ASSERT_OK(back);
  EXPECT_EQ(back->sequence, 43);
  EXPECT_EQ(back->time_ms, 1700000000000);
  ASSERT_EQ(back->items.size(), 2u);
  EXPECT_EQ(back->items[0].kind, ChangedKind::kFlag);
  EXPECT_TRUE(back->items[0].data.has_value());
  EXPECT_FALSE(back->items[1].data.has_value());
  EXPECT_EQ(EncodeChangeSetEvent(*back), json);
}

TEST(ChangeSetTest, DecodingNamesTheFieldAtFault) {
  struct Bad {
    const char* json;
    const char* message;
  } bad[] = {
      {R"([1])", "expected an object"},
      {R"({"items":[]})", "sequence: expected an integer >= 0"},
      {R"({"sequence":-1,"items":[]})", "sequence: expected an integer >= 0"},
      {R"({"sequence":1})", "items: expected an array"},
      {R"({"sequence":1,"items":[{"kind":"rule","key":"a","version":1,"deleted":true}]})", "items[0].kind: expected \"flag\" or \"segment\""},
      {R"({"sequence":1,"items":[{"kind":"flag","key":"","version":1,"deleted":true}]})", "items[0].key: expected a non-empty string"},
      {R"({"sequence":1,"items":[{"kind":"flag","key":"a","deleted":true}]})", "items[0].version: expected an integer >= 0"},
      {R"({"sequence":1,"items":[{"kind":"flag","key":"a","version":1}]})", "items[0]: expected exactly one of \"data\" and \"deleted\":true"},
      {R"({"sequence":1,"items":[{"kind":"flag","key":"a","version":1,"data":3}]})", "items[0].data: expected an object"},
  };
  for (const Bad& b : bad) {
    auto e = DecodeChangeSetEvent(b.json);
    ASSERT_FALSE(e.ok()) << b.json;
    EXPECT_EQ(e.status().message(), b.message) << b.json;
    // The field travels as data: the message's prefix, or none for the whole document.
    std::string message = b.message;
    size_t colon = message.find(": ");
    EXPECT_EQ(ErrorField(e.status()), colon == std::string::npos ? "" : message.substr(0, colon)) << b.json;
  }
}

TEST(ChangeSetTest, ApplyReplacesAddsAndDeletesOnlyNewerItems) {
  Environment env = Env();
  auto e = DecodeChangeSetEvent(R"({"sequence":6,"items":[
    {"kind":"flag","key":"a","version":4,"data":{"key":"a","on":false,"variations":[false,true],"offVariation":0,"fallthrough":{"variation":1}}},
    {"kind":"flag","key":"b","version":1,"deleted":true},
    {"kind":"flag","key":"c","version":1,"data":{"key":"c","on":true,"variations":["x"],"fallthrough":{"variation":0}}},
    {"kind":"segment","key":"s","version":3,"deleted":true}]})");
  ASSERT_OK(e);
  auto applied = ApplyChangeSet(*e, env);
  ASSERT_OK(applied);
  EXPECT_EQ(env.sequence, 6);
  EXPECT_FALSE(env.flags.at("a").on);
  EXPECT_EQ(env.flags.at("a").version, 4);
  EXPECT_TRUE(env.flags.count("b"));  // version 1 is not newer than what is held
  EXPECT_TRUE(env.flags.count("c"));
  EXPECT_FALSE(env.segments.count("s"));
  EXPECT_EQ(applied->flags, (std::vector<std::string>{"a", "c"}));
  EXPECT_EQ(applied->segments, (std::vector<std::string>{"s"}));
}

TEST(ChangeSetTest, AnItemThatDoesNotDecodeLeavesTheEnvironmentAsItWas) {
  Environment env = Env();
  Environment before = env;
  auto e = DecodeChangeSetEvent(R"({"sequence":6,"items":[
    {"kind":"flag","key":"a","version":4,"data":{"key":"a","on":false,"variations":[false,true],"fallthrough":{"variation":1}}},
    {"kind":"flag","key":"z","version":1,"data":{"key":"z","on":"yes"}}]})");
  ASSERT_OK(e);
  auto applied = ApplyChangeSet(*e, env);
  ASSERT_FALSE(applied.ok());
  EXPECT_EQ(ErrorField(applied.status()), "items[1].data.on") << applied.status();
  EXPECT_EQ(applied.status().message(), "items[1].data.on: expected a boolean, got string (flag \"z\")");
  EXPECT_TRUE(env == before);
}

}  // namespace
}  // namespace gonfalon::rules
