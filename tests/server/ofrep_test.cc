// The OFREP mapping alone: contexts in, results out (no sockets).
#include "ofrep.h"

#include <gtest/gtest.h>

#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/snapshot.h"

namespace gonfalon::server {
namespace {

using rules::ParseJson;
using rules::Value;

TEST(OfrepContextTest, TargetingKeyBecomesAUserContextsKey) {
  std::string code;
  Value in = *ParseJson(R"({"targetingKey":"u1","country":"FR"})");
  rules::Context c = OfrepContext(&in, code);
  ASSERT_TRUE(code.empty()) << code;
  EXPECT_EQ(rules::ToJson(c.ToValue()), R"({"kind":"user","key":"u1","country":"FR"})");
}

TEST(OfrepContextTest, AContextWithKindIsTakenAsItIs) {
  std::string code;
  Value in = *ParseJson(R"({"kind":"multi","user":{"key":"u1"},"org":{"key":"acme"}})");
  rules::Context c = OfrepContext(&in, code);
  EXPECT_TRUE(code.empty());
  EXPECT_TRUE(c.valid());
}

TEST(OfrepContextTest, MissingOrBadContextsGetOfrepCodes) {
  std::string code;
  OfrepContext(nullptr, code);
  EXPECT_EQ(code, "TARGETING_KEY_MISSING");
  Value no_key = *ParseJson(R"({"country":"FR"})");
  OfrepContext(&no_key, code);
  EXPECT_EQ(code, "TARGETING_KEY_MISSING");
  Value not_object = *ParseJson("[1]");
  OfrepContext(&not_object, code);
  EXPECT_EQ(code, "INVALID_CONTEXT");
}

class OfrepEvaluationTest : public ::testing::Test {
 protected:
  rules::Detail Eval(const char* flags, const char* key) {
    auto env = rules::ParseEnvironment(flags);
    EXPECT_TRUE(env.ok()) << env.status();
    snap_ = rules::Snapshot::Build(std::move(*env));
    return rules::Evaluate(*snap_, key, rules::Context::Builder("user", "u1").Build());
  }
  std::shared_ptr<const rules::Snapshot> snap_;
};

TEST_F(OfrepEvaluationTest, ReasonsMapToOfrepNames) {
  const char* flags = R"({"flags":{
    "plain":{"key":"plain","on":true,"variations":[1,2],"fallthrough":{"variation":1}},
    "off":{"key":"off","on":false,"variations":[1,2],"offVariation":0,"fallthrough":{"variation":1}},
    "gated":{"key":"gated","on":true,"variations":[1,2],"fallthrough":{"variation":1},
             "prerequisites":[{"key":"plain","variation":1}]},
    "split":{"key":"split","on":true,"variations":[1,2],"salt":"s",
             "fallthrough":{"rollout":{"variations":[{"variation":0,"weight":50000},{"variation":1,"weight":50000}]}}}}})";
  EXPECT_EQ(OfrepReason(Eval(flags, "plain")), "STATIC");
  EXPECT_EQ(OfrepReason(Eval(flags, "off")), "DISABLED");
  // Prerequisites can change the answer: not STATIC.
  EXPECT_EQ(OfrepReason(Eval(flags, "gated")), "DEFAULT");
  EXPECT_EQ(OfrepReason(Eval(flags, "split")), "SPLIT");
  OfrepResult r = OfrepEvaluation("plain", Eval(flags, "plain"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(rules::ToJson(r.body),
            R"({"key":"plain","value":2,"reason":"STATIC","variant":"1","metadata":{"flagVersion":0,"gonfalonReason":"FALLTHROUGH"}})");
}

TEST_F(OfrepEvaluationTest, ErrorsMapToOfrepCodesAndStatuses) {
  OfrepResult missing = OfrepEvaluation("nope", Eval(R"({"flags":{}})", "nope"));
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.body.Find("errorCode")->as_string(), "FLAG_NOT_FOUND");
  OfrepResult malformed = OfrepEvaluation(
      "bad", Eval(R"({"flags":{"bad":{"key":"bad","on":true,"variations":[1],"fallthrough":{"variation":5}}}})", "bad"));
  EXPECT_EQ(malformed.status, 400);
  EXPECT_EQ(malformed.body.Find("errorCode")->as_string(), "PARSE_ERROR");
}

TEST(OfrepContextHashTest, SameContextSameHashOtherContextOtherHash) {
  auto a = rules::Context::Builder("user", "u1").Build();
  auto b = rules::Context::Builder("user", "u2").Build();
  EXPECT_EQ(ContextHash(a), ContextHash(rules::Context::Builder("user", "u1").Build()));
  EXPECT_NE(ContextHash(a), ContextHash(b));
  EXPECT_LT(ContextHash(a), 1ULL << 48);
}

}  // namespace
}  // namespace gonfalon::server
