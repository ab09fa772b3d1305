#include "gonfalon/rules/context.h"

#include <gtest/gtest.h>

namespace gonfalon::rules {
namespace {

TEST(AttributeRefTest, ParsesPlainNamesAndPaths) {
  EXPECT_EQ(AttributeRef::Parse("email").components(), (std::vector<std::string>{"email"}));
  EXPECT_EQ(AttributeRef::Parse("/address/city").components(),
            (std::vector<std::string>{"address", "city"}));
  EXPECT_EQ(AttributeRef::Parse("/a~1b/c~0d").components(),
            (std::vector<std::string>{"a/b", "c~d"}));
  EXPECT_EQ(AttributeRef::Parse("/x", /*literal=*/true).components(),
            (std::vector<std::string>{"/x"}));
}

TEST(AttributeRefTest, RejectsInvalidReferences) {
  for (const char* bad : {"", "/", "//", "/a//b", "/a/", "/~", "/a~2", "/a~"}) {
    AttributeRef r = AttributeRef::Parse(bad);
    EXPECT_FALSE(r.valid()) << bad;
    EXPECT_FALSE(r.error().empty()) << bad;
    EXPECT_TRUE(r.components().empty()) << bad;
  }
  EXPECT_EQ(AttributeRef::Parse("/a//b").error(), R"(attribute reference "/a//b" has an empty component)");
  EXPECT_EQ(AttributeRef::Parse("email").error(), "");
  EXPECT_EQ(AttributeRef().error(), "");
  EXPECT_FALSE(AttributeRef().valid());
}

TEST(AttributeRefTest, RecognisesBuiltins) {
  EXPECT_TRUE(AttributeRef::Parse("kind").is_kind());
  EXPECT_TRUE(AttributeRef::Parse("/kind").is_kind());
  EXPECT_FALSE(AttributeRef::Parse("/kind/x").is_kind());
  EXPECT_EQ(AttributeRef::Parse("key").builtin(), AttributeRef::Builtin::kKey);
}

TEST(ContextTest, ReadsSingleKind) {
  Context c = ContextFromJson(*ParseJson(R"({"kind":"org","key":"acme","tier":"gold","anonymous":true})"));
  ASSERT_TRUE(c.valid()) << c.error();
  EXPECT_FALSE(c.is_multi());
  EXPECT_EQ(c.Get("org", AttributeRef::Parse("tier"))->as_string(), "gold");
  EXPECT_EQ(c.Get("org", AttributeRef::Parse("key"))->as_string(), "acme");
  EXPECT_TRUE(c.Get("org", AttributeRef::Parse("anonymous"))->as_bool());
  EXPECT_EQ(c.Get("user", AttributeRef::Parse("key")), nullptr);
}

TEST(ContextTest, ReadsMultiKind) {
  Context c = ContextFromJson(
      *ParseJson(R"({"kind":"multi","user":{"key":"u1","address":{"city":"Oslo"}},"org":{"key":"o"}})"));
  ASSERT_TRUE(c.valid()) << c.error();
  EXPECT_TRUE(c.is_multi());
  EXPECT_EQ(c.Get("user", AttributeRef::Parse("/address/city"))->as_string(), "Oslo");
  EXPECT_EQ(c.Get("org", AttributeRef::Parse("key"))->as_string(), "o");
}

TEST(ContextTest, InvalidContextsCarryTheirError) {
  struct Case {
    const char* json;
    const char* error;
  } cases[] = {
      {R"({"kind":"user"})", "context of kind \"user\" needs a string \"key\""},
      {R"({"kind":"user","key":""})", "context of kind \"user\" has an empty key"},
      {R"({"kind":"kind","key":"x"})", "invalid context kind \"kind\""},
      {R"({"kind":"multi"})", "multi-kind context has no kinds"},
      {R"({"kind":3,"key":"x"})", "context \"kind\" must be a string"},
      {R"({"kind":"user","key":"x","anonymous":"yes"})",
       "context of kind \"user\": \"anonymous\" must be a boolean"},
      {R"([1])", "context must be a JSON object"},
  };
  for (const Case& c : cases) {
    Context ctx = ContextFromJson(*ParseJson(c.json));
    EXPECT_FALSE(ctx.valid()) << c.json;
    EXPECT_EQ(ctx.error(), c.error) << c.json;
  }
}

TEST(ContextTest, BuilderMakesMultiKindContexts) {
  Context c = Context::Builder("user", "u1").Set("plan", Value("gold")).AddKind("org", "acme").Build();
  ASSERT_TRUE(c.valid()) << c.error();
  EXPECT_TRUE(c.is_multi());
  EXPECT_EQ(ToJson(c.ToValue()), R"({"kind":"multi","user":{"key":"u1","plan":"gold"},"org":{"key":"acme"}})");
  EXPECT_FALSE(Context::Builder("user", "u1").AddKind("user", "u2").Build().valid());
  EXPECT_FALSE(Context::Builder("user", "").Build().valid());
}

TEST(ContextTest, ToValueRoundTrips) {
  auto json = ParseJson(R"({"kind":"device","key":"d1","os":"linux"})");
  Context c = ContextFromJson(*json);
  EXPECT_TRUE(c.ToValue() == *json);
}

}  // namespace
}  // namespace gonfalon::rules

namespace gonfalon::rules {
namespace {

// Attribute lookups are binary searches over sorted attributes; duplicates keep the last.
TEST(ContextTest, ManyAttributesAreAllFoundAndDuplicatesKeepTheLast) {
  std::string json = R"({"kind":"user","key":"u")";
  for (int i = 0; i < 5000; ++i) json += ",\"a" + std::to_string(i) + "\":" + std::to_string(i);
  json += "}";
  Context c = ContextFromJson(*ParseJson(json));
  ASSERT_TRUE(c.valid());
  const Context::Single* user = c.Find("user");
  ASSERT_NE(user, nullptr);
  for (int i = 0; i < 5000; i += 499) {
    const Value* v = Context::Get(*user, AttributeRef::Parse("a" + std::to_string(i)));
    ASSERT_NE(v, nullptr) << i;
    EXPECT_EQ(v->as_number(), i);
  }
  EXPECT_EQ(Context::Get(*user, AttributeRef::Parse("missing")), nullptr);
  Context built = Context::Builder("user", "u").Set("x", Value(1)).Set("x", Value(2)).Build();
  EXPECT_EQ(Context::Get(*built.Find("user"), AttributeRef::Parse("x"))->as_number(), 2);
  EXPECT_EQ(ToJson(built.ToValue()), R"({"kind":"user","key":"u","x":2})");
}

}  // namespace
}  // namespace gonfalon::rules
