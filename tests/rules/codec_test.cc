#include "status_testing.h"
#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/parallel_threads.h"

#include <gtest/gtest.h>

#include "tests/rules/fixture_loader.h"

namespace gonfalon::rules {
namespace {

// tests/fixtures/malformed/codec.json: each case names the exact message.
TEST(CodecTest, MalformedFixturesAreRejectedWithTheirPath) {
  auto files = testing::LoadJsonDir(GONFALON_FIXTURES_DIR "/malformed");
  ASSERT_FALSE(files.empty());
  int checked = 0;
  for (const auto& [file, json] : files) {
    for (const Value& c : json.Find("cases")->as_array()) {
      SCOPED_TRACE(file + ": " + c.Find("name")->as_string());
      DecodeOptions opt{.strict = c.Find("strict")->as_bool()};
      absl::StatusOr<Environment> env = DecodeEnvironment(*c.Find("data"), opt);
      if (c.Find("ok") != nullptr) {
        EXPECT_TRUE(env.ok()) << env.status();
      } else if (const Value* want = c.Find("error")) {
        ASSERT_FALSE(env.ok());
        EXPECT_EQ(env.status().code(), absl::StatusCode::kInvalidArgument);
        EXPECT_EQ(std::string(env.status().message()), want->as_string());
      } else {
        ASSERT_FALSE(env.ok());
        EXPECT_EQ(std::string(env.status().message()).rfind(c.Find("errorPrefix")->as_string(), 0), 0u)
            << env.status();
      }
      ++checked;
    }
  }
  EXPECT_GE(checked, 40);
}

TEST(CodecTest, InvalidJsonTextIsReported) {
  auto env = ParseEnvironment("{\"flags\": {");
  ASSERT_FALSE(env.ok());
  EXPECT_EQ(std::string(env.status().message()).rfind("invalid JSON: ", 0), 0u);
}

TEST(CodecTest, FlagRoundTripsEveryField) {
  Flag f;
  f.key = "checkout";
  f.version = 7;
  f.on = true;
  f.variations = {Value("a"), Value(Object{{"x", Value(1)}}), Value(2.5)};
  f.off_variation = 0;
  f.fallthrough.rollout = Rollout{RolloutKind::kExperiment, "org", "tier", 42,
                                  {{0, 60000, false}, {1, 40000, true}}};
  f.targets = {{"user", {"u1", "u2"}, 1}};
  f.context_targets = {{"org", {"acme"}, 2}, {"user", {}, 1}};
  Clause c;
  c.context_kind = "user";
  c.attribute = "/address/city";
  c.op = Op::kMatches;
  c.op_name = "matches";
  c.values = {Value("^Par")};
  c.negate = true;
  Clause legacy;
  legacy.attribute = "email";
  legacy.op = Op::kUnknown;
  legacy.op_name = "someFutureOp";
  f.rules = {{"r1", {c, legacy}, {2, std::nullopt}, true}};
  f.prerequisites = {{"other", 1}};
  f.salt = "s";
  f.track_events = true;
  f.track_events_fallthrough = true;
  f.client_side_availability = {true, true};
  f.SetManagement({.name = "Checkout",
                   .description = "New checkout",
                   .tags = {"web", "q3"},
                   .temporary = true,
                   .maintainer = "ada@example.com"});
  Value encoded = EncodeFlag(f);
  auto decoded = DecodeFlag(ParseJson(ToJson(encoded)).value());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_TRUE(*decoded == f);
  EXPECT_EQ(ToJson(EncodeFlag(*decoded)), ToJson(encoded));
}

TEST(CodecTest, ManagementMetadataIsAbsentWhenEmpty) {
  auto plain = DecodeFlag(ParseJson(R"({"key":"k","name":"","tags":[]})").value());
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->management.has_value());
  EXPECT_EQ(plain->Management().name, "");
  Flag f;
  f.key = "k";
  f.SetManagement({});
  EXPECT_FALSE(f.management.has_value());
  EXPECT_TRUE(f == *plain);
  auto named = DecodeFlag(ParseJson(R"({"key":"k","tags":["web"]})").value());
  ASSERT_TRUE(named.ok()) << named.status();
  ASSERT_TRUE(named->management.has_value());
  EXPECT_EQ(named->Management().tags, std::vector<std::string>{"web"});
}

TEST(CodecTest, CheckKnownMembersNamesTheFirstUnknownMemberAtAnyDepth) {
  Flag f;
  f.key = "checkout";
  f.variations = {Value(Object{{"anything", Value(1)}}), Value("b")};
  Clause c;
  c.attribute = "email";
  c.op = Op::kIn;
  c.op_name = "in";
  c.values = {Value(Object{{"any", Value("json")}})};
  f.rules = {{"r1", {c}, {1, std::nullopt}, false}};
  f.fallthrough.rollout = Rollout{RolloutKind::kRollout, std::nullopt, std::nullopt, std::nullopt, {{0, 50000, false}, {1, 50000, false}}};
  // Everything the encoder writes is known, whatever the variations and values hold.
  EXPECT_TRUE(CheckKnownMembers(EncodeFlag(f)).ok());
  Segment s;
  s.key = "beta";
  s.included = {"a"};
  EXPECT_TRUE(CheckKnownMembers(EncodeSegment(s)).ok());
  auto field_of = [](std::string_view json) {
    absl::Status st = CheckKnownMembers(ParseJson(json).value());
    return st.ok() ? std::string("ok") : ErrorField(st);
  };
  EXPECT_EQ(field_of(R"({"onn":true})"), "onn");
  EXPECT_EQ(field_of(R"({"key":"s","inclued":["a"]})"), "inclued");
  EXPECT_EQ(field_of(R"({"rules":[{"clauses":[{"atribute":"email","op":"in","values":["x"]}]}]})"), "rules[0].clauses[0].atribute");
  EXPECT_EQ(field_of(R"({"fallthrough":{"rollout":{"variations":[{"variation":0,"wieght":1}]}}})"), "fallthrough.rollout.variations[0].wieght");
  EXPECT_EQ(field_of(R"({"variations":[{"free":1}],"rules":[{"clauses":[{"values":[{"free":2}]}]}]})"), "ok");
}

TEST(CodecTest, SegmentRoundTripsEveryField) {
  Segment s;
  s.key = "beta";
  s.version = 3;
  s.included = {"u1"};
  s.excluded = {"u2"};
  s.included_contexts = {{"org", {"acme"}}};
  s.excluded_contexts = {{"org", {"evil"}}};
  Clause c;
  c.context_kind = "org";
  c.attribute = "tier";
  c.op = Op::kIn;
  c.op_name = "in";
  c.values = {Value("gold")};
  s.rules = {{"r", {c}, 25000, "name", "org"}};
  s.salt = "x";
  s.name = "Beta";
  s.tags = {"t"};
  auto decoded = DecodeSegment(EncodeSegment(s));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_TRUE(*decoded == s);
}

TEST(CodecTest, LegacyClientSideFieldMapsToEnvironmentIdAvailability) {
  auto f = DecodeFlag(ParseJson(R"({"key":"k","clientSide":true})").value());
  ASSERT_OK(f);
  EXPECT_TRUE(f->client_side_availability.using_environment_id);
  EXPECT_FALSE(f->client_side_availability.using_mobile_key);
}

TEST(CodecTest, MissingMapKeyIsTakenFromTheMap) {
  auto env = ParseEnvironment(R"({"flags":{"a":{"on":true}},"segments":{"s":{}}})");
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->flags.at("a").key, "a");
  EXPECT_EQ(env->segments.at("s").key, "s");
}

TEST(CodecTest, SequenceRoundTrips) {
  auto env = ParseEnvironment(R"({"sequence":42,"flags":{}})");
  ASSERT_OK(env);
  EXPECT_EQ(env->sequence, 42);
  EXPECT_EQ(EncodeEnvironment(*env).Find("sequence")->as_number(), 42);
}

// A Value built by code may repeat a key (parsed JSON cannot: the last one wins there). The
// first one is decoded into the environment; the others are still decoded for their errors.
TEST(CodecTest, ARepeatedKeyInABuiltObjectKeepsTheFirstAndStillChecksTheOthers) {
  auto flag = [](bool on) {
    return Value(Object{{"on", Value(on)}, {"variations", Value(Array{Value(false), Value(true)})},
                        {"fallthrough", Value(Object{{"variation", Value(1)}})}});
  };
  Value twice(Object{{"flags", Value(Object{{"a", flag(true)}, {"b", flag(false)}, {"a", flag(false)}})}});
  ASSERT_OK_AND_ASSIGN(Environment env, DecodeEnvironment(twice, {}, ThreadsParallelFor(2)));
  ASSERT_EQ(env.flags.size(), 2u);
  EXPECT_TRUE(env.flags.at("a").on);
  EXPECT_FALSE(env.flags.at("b").on);

  Value bad_second(Object{{"flags", Value(Object{{"a", flag(true)}, {"a", Value(Object{{"on", Value(1)}})}})}});
  absl::StatusOr<Environment> refused = DecodeEnvironment(bad_second);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(std::string(refused.status().message()).find("flags.a.on"), std::string::npos) << refused.status();
}

}  // namespace
}  // namespace gonfalon::rules
