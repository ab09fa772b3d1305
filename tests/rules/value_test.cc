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

TEST(ValueTest, EscapesWhatJsonRequiresBetweenPlainRuns) {
  std::string out;
  AppendJsonString("plain \"q\" a\\b\n\r\t\b\f\x01\x1f end \xc3\xa9\x7f", out);
  EXPECT_EQ(out, R"("plain \"q\" a\\b\n\r\t\b\f\u0001\u001f end )" "\xc3\xa9\x7f\"");
  out.clear();
  AppendJsonString("", out);
  AppendJsonString("\"", out);
  AppendJsonString("abc", out);
  EXPECT_EQ(out, R"("""\"""abc")");
}

TEST(ValueTest, ParsesOnlyTheMembersAskedFor) {
  auto v = ParseJsonMembers(R"({"key":"k","tags":["a","b"],"rules":[{"x":1}],"name":"N"})", {"name", "tags", "absent"});
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(ToJson(*v), R"({"name":"N","tags":["a","b"]})");  // in the order asked, absent ones left out
  EXPECT_FALSE(ParseJsonMembers("[1]", {"name"}).ok());
  auto bad = ParseJsonMembers(R"({"name":)", {"name"});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(std::string(bad.status().message()).rfind("invalid JSON", 0), 0u);
}

TEST(ValueTest, ParsesOnlyTheMembersAskedForOfAnArraysElements) {
  auto v = ParseJsonMembers(
      R"({"sequence":7,"items":[{"kind":"flag","key":"a","before":{"rules":[1,2]}},3,{"key":"b"}],"other":[1]})",
      {"sequence", "items", "absent"}, "items", {"kind", "key"});
  ASSERT_OK(v);
  EXPECT_EQ(ToJson(*v), R"({"sequence":7,"items":[{"kind":"flag","key":"a"},null,{"key":"b"}]})");
  // A member named as the array that is not one is converted whole.
  auto scalar = ParseJsonMembers(R"({"items":{"x":[1]}})", {"items"}, "items", {"kind"});
  ASSERT_OK(scalar);
  EXPECT_EQ(ToJson(*scalar), R"({"items":{"x":[1]}})");
  EXPECT_FALSE(ParseJsonMembers("[1]", {"items"}, "items", {"key"}).ok());
  auto bad = ParseJsonMembers(R"({"items":[{"key":)", {"items"}, "items", {"key"});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(std::string(bad.status().message()).rfind("invalid JSON", 0), 0u);
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

namespace gonfalon::rules {
namespace {

// Objects past a few members find duplicates through a hash index (parsing stays linear): the
// last duplicate still wins and member order is kept.
TEST(ValueTest, AHundredThousandMemberObjectParsesWithDuplicatesResolved) {
  std::string json = "{";
  for (int i = 0; i < 100000; ++i) json += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":" + std::to_string(i);
  json += ",\"k5\":\"again\",\"k99999\":-1}";
  auto v = ParseJson(json);
  ASSERT_OK(v);
  ASSERT_EQ(v->as_object().size(), 100000u);
  EXPECT_EQ(v->as_object()[0].first, "k0");
  EXPECT_EQ(v->as_object()[99999].first, "k99999");
  EXPECT_EQ(v->Find("k5")->as_string(), "again");
  EXPECT_EQ(v->Find("k99999")->as_number(), -1);
  EXPECT_EQ(v->Find("k77777")->as_number(), 77777);
}

TEST(ValueTest, SmallObjectsResolveDuplicatesToo) {
  auto v = ParseJson(R"({"a":1,"b":2,"a":3})");
  ASSERT_OK(v);
  EXPECT_EQ(ToJson(*v), R"({"a":3,"b":2})");
}

}  // namespace
}  // namespace gonfalon::rules

namespace gonfalon::rules {
namespace {

TEST(ValueTest, IntegerInTakesWholeNumbersInRangeOnly) {
  EXPECT_EQ(IntegerIn(Value(3), 0, 5), 3);
  EXPECT_EQ(IntegerIn(Value(-1), -1, 5), -1);
  EXPECT_EQ(IntegerIn(Value(kMaxJsonInteger), 0, kMaxJsonInteger), kMaxJsonInteger);
  EXPECT_FALSE(IntegerIn(Value(2.5), 0, 5).has_value());
  EXPECT_FALSE(IntegerIn(Value(6), 0, 5).has_value());
  EXPECT_FALSE(IntegerIn(Value(-2), -1, 5).has_value());
  EXPECT_FALSE(IntegerIn(Value(1.8446744073709552e19), 0, kMaxJsonInteger).has_value());
  EXPECT_FALSE(IntegerIn(Value("3"), 0, 5).has_value());
}

}  // namespace
}  // namespace gonfalon::rules
