#include "status_testing.h"
#include "gonfalon/rules/value.h"

#include <gtest/gtest.h>

namespace gonfalon::rules {
namespace {

TEST(ValueTest, ParsesEveryType) {
  auto v = ParseJson(R"({"n":null,"b":true,"i":-3,"d":2.5,"s":"x","a":[1,"y"],"o":{"k":false}})");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_TRUE(v->Find("n")->is_null());
  EXPECT_TRUE(v->Find("b")->as_bool());
  EXPECT_EQ(v->Find("i")->as_number(), -3);
  EXPECT_EQ(v->Find("d")->as_number(), 2.5);
  EXPECT_EQ(v->Find("s")->as_string(), "x");
  EXPECT_EQ(v->Find("a")->as_array().size(), 2u);
  EXPECT_FALSE(v->Find("o")->Find("k")->as_bool());
  EXPECT_EQ(v->Find("missing"), nullptr);
}

TEST(ValueTest, EncodesCompactlyAndRoundTrips) {
  std::string text = R"({"a":[1,2.5,-7,true,null,"q\"\\\n\u0001"],"b":{}})";
  auto v = ParseJson(text);
  ASSERT_OK(v);
  EXPECT_EQ(ToJson(*v), text);
  EXPECT_TRUE(*ParseJson(ToJson(*v)) == *v);
}

TEST(ValueTest, LargeIntegersPrintWithoutExponent) {
  EXPECT_EQ(ToJson(Value(1609459200000.0)), "1609459200000");
  EXPECT_EQ(ToJson(Value(0.1)), "0.1");
  EXPECT_EQ(ToJson(Value(1e300)), "1e+300");
}

TEST(ValueTest, EqualityIgnoresMemberOrderAndNumberForm) {
  EXPECT_TRUE(*ParseJson(R"({"a":1,"b":2})") == *ParseJson(R"({"b":2.0,"a":1})"));
  EXPECT_FALSE(*ParseJson(R"({"a":1})") == *ParseJson(R"({"a":1,"b":2})"));
  EXPECT_FALSE(Value(1) == Value("1"));
  EXPECT_FALSE(Value(true) == Value(1));
}

TEST(ValueTest, RejectsMalformedJson) {
  for (const char* bad : {"", "{", "[1,]", "{\"a\" 1}", "tru", "\"unterminated", "{} extra"}) {
    auto v = ParseJson(bad);
    EXPECT_FALSE(v.ok()) << bad;
    if (!v.ok()) {
      EXPECT_EQ(std::string(v.status().message()).rfind("invalid JSON", 0), 0u);
    }
  }
}

TEST(ValueTest, RejectsNestingDeeperThanTheLimit) {
  std::string deep = std::string(kMaxJsonDepth + 5, '[') + std::string(kMaxJsonDepth + 5, ']');
  auto v = ParseJson(deep);
  ASSERT_FALSE(v.ok());
  std::string ok = std::string(kMaxJsonDepth - 1, '[') + std::string(kMaxJsonDepth - 1, ']');
  EXPECT_OK(ParseJson(ok));
}

TEST(ValueTest, DuplicateMembersKeepTheLast) {
  auto v = ParseJson(R"({"a":1,"a":2})");
  ASSERT_OK(v);
  EXPECT_EQ(v->as_object().size(), 1u);
  EXPECT_EQ(v->Find("a")->as_number(), 2);
}

TEST(ValueTest, SetAndEraseMembers) {
  Value v;
  v.Set("a", Value(1));
  v.Set("b", Value(2));
  v.Set("a", Value(3));
  EXPECT_EQ(ToJson(v), R"({"a":3,"b":2})");
  EXPECT_TRUE(v.Erase("a"));
  EXPECT_FALSE(v.Erase("a"));
  EXPECT_EQ(ToJson(v), R"({"b":2})");
}

}  // namespace
}  // namespace gonfalon::rules
