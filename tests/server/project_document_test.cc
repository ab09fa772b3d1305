// The project document and its plan (server/src/project_document.h), without a server: what
// an export holds and leaves out, the plan of each kind of change (create, change field by
// field, delete only with prune), the salt kept when a document has none, malformed
// documents named by path; and the YAML form of the same tree.
#include "project_document.h"

#include <gtest/gtest.h>

#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/field_error.h"
#include "yaml_json.h"

namespace gonfalon::server {
namespace {

using rules::Value;

Value J(const char* text) { return rules::ParseJson(text).value(); }

ProjectState Shop() {
  ProjectState s;
  s.project = "shop";
  s.environments = {"production", "staging"};
  storage::FlagMeta m;
  m.key = "checkout";
  m.name = "Checkout";
  m.variations = {Value(false), Value(true)};
  m.version = 3;
  s.flags.push_back(m);
  for (const char* env : {"production", "staging"}) {
    rules::Flag f = rules::DecodeFlag(J(R"({"key":"checkout","version":5,"on":true,"salt":"s1","offVariation":0,
        "fallthrough":{"variation":1},"variations":[false,true],"name":"Checkout"})")).value();
    s.data[env].flags.emplace("checkout", f);
    rules::Segment seg = rules::DecodeSegment(J(R"({"key":"beta","version":2,"included":["u1"],"salt":"b"})")).value();
    s.data[env].segments.emplace("beta", seg);
  }
  s.metrics.push_back(storage::Metric{.key = "errors", .event_key = "error", .lower_is_better = true, .version = 1});
  return s;
}

const PlannedChange* Find(const Plan& p, std::string_view kind, std::string_view key, std::string_view env = "") {
  for (const PlannedChange& c : p.changes) {
    if (c.kind == kind && c.key == key && c.environment == env) return &c;
  }
  return nullptr;
}

TEST(ProjectDocumentTest, TheExportIsSortedWithoutVolatileFieldsAndPlansNoChangeAgainstItself) {
  ProjectState s = Shop();
  Value doc = ExportDocument(s, std::nullopt);
  std::string text = rules::ToJson(doc);
  EXPECT_EQ(text.find("\"version\""), std::string::npos) << text;
  EXPECT_EQ(text.find("createdMs"), std::string::npos) << text;
  EXPECT_EQ(doc.as_object()[0].first, "flags");  // keys sorted
  const Value* prod = doc.Find("flags")->Find("checkout")->Find("environments")->Find("production");
  ASSERT_NE(prod, nullptr) << text;
  EXPECT_EQ(prod->Find("variations"), nullptr);  // project level, beside "environments"
  EXPECT_TRUE(prod->Find("on")->as_bool());
  Plan plan = MakePlan(s, doc, true).value();
  EXPECT_TRUE(plan.changes.empty()) << PlanJsonToText(PlanToJson(plan));
  Value one_env = ExportDocument(s, "staging");
  EXPECT_EQ(one_env.Find("flags")->Find("checkout")->Find("environments")->Find("production"), nullptr);
  // One environment's document, applied with prune, deletes nothing of the others.
  EXPECT_TRUE(MakePlan(s, one_env, true).value().changes.empty());
}

TEST(ProjectDocumentTest, EachKindOfChangeIsPlannedFieldByField) {
  ProjectState s = Shop();
  Value doc = ExportDocument(s, std::nullopt);
  Value* flags = doc.FindMutable("flags");
  flags->FindMutable("checkout")->Set("name", Value("Checkout v2"));
  flags->FindMutable("checkout")->FindMutable("environments")->FindMutable("production")->Set("on", Value(false));
  flags->Set("search", J(R"({"variations":["a","b"],"environments":{"production":{"on":true,"fallthrough":{"variation":1},"offVariation":0}}})"));
  doc.FindMutable("segments")->FindMutable("production")->FindMutable("beta")->Set("included", J(R"(["u1","u2"])"));
  doc.FindMutable("metrics")->Set("latency", J(R"({"eventKey":"latency","kind":"mean","successCriteria":"lower"})"));
  Plan plan = MakePlan(s, doc, false).value();
  const PlannedChange* meta = Find(plan, "flag", "checkout");
  ASSERT_NE(meta, nullptr);
  ASSERT_EQ(meta->fields.size(), 1u);
  EXPECT_EQ(meta->fields[0].path, "name");
  EXPECT_EQ(meta->fields[0].before->as_string(), "Checkout");
  EXPECT_EQ(meta->fields[0].after->as_string(), "Checkout v2");
  const PlannedChange* on = Find(plan, "flagTargeting", "checkout", "production");
  ASSERT_NE(on, nullptr);
  ASSERT_EQ(on->fields.size(), 1u);
  EXPECT_EQ(on->fields[0].path, "on");
  EXPECT_EQ(Find(plan, "flagTargeting", "checkout", "staging"), nullptr);
  const PlannedChange* created = Find(plan, "flag", "search");
  ASSERT_NE(created, nullptr);
  EXPECT_EQ(created->action, "create");
  const PlannedChange* search = Find(plan, "flagTargeting", "search", "production");
  ASSERT_NE(search, nullptr);
  EXPECT_EQ(search->action, "create");
  EXPECT_EQ(search->after.Find("salt"), nullptr);  // the store chooses it
  const PlannedChange* seg = Find(plan, "segment", "beta", "production");
  ASSERT_NE(seg, nullptr);
  EXPECT_EQ(seg->fields[0].path, "included");
  ASSERT_NE(Find(plan, "metric", "latency"), nullptr);
  // Applied in order: metrics, flags, then environments' items.
  EXPECT_EQ(plan.changes.front().kind, "metric");
  EXPECT_EQ(plan.changes.back().kind, "segment");
  std::string text = PlanJsonToText(PlanToJson(plan));
  EXPECT_NE(text.find("~ flag checkout (production) targeting\n    on: true -> false\n"), std::string::npos) << text;
  EXPECT_NE(text.find("~ flag checkout\n    name: \"Checkout\" -> \"Checkout v2\"\n"), std::string::npos) << text;
  EXPECT_NE(text.find("6 changes."), std::string::npos) << text;
}

TEST(ProjectDocumentTest, DeletesOnlyWithPruneAndTheSaltStaysWhenTheDocumentHasNone) {
  ProjectState s = Shop();
  Value doc = J(R"({"project":"shop","flags":{"checkout":{"variations":[false,true],"name":"Checkout",
      "environments":{"production":{"on":true,"offVariation":0,"fallthrough":{"variation":1}}}}},"segments":{"production":{}}})");
  Plan kept = MakePlan(s, doc, false).value();
  EXPECT_TRUE(kept.changes.empty()) << PlanJsonToText(PlanToJson(kept));  // no salt: the flag's stays
  Plan pruned = MakePlan(s, doc, true).value();
  ASSERT_NE(Find(pruned, "segment", "beta", "production"), nullptr);
  EXPECT_EQ(Find(pruned, "segment", "beta", "production")->action, "delete");
  EXPECT_EQ(Find(pruned, "segment", "beta", "staging"), nullptr);  // staging is not in the document
  ASSERT_NE(Find(pruned, "metric", "errors"), nullptr);
  EXPECT_EQ(Find(pruned, "metric", "errors")->action, "delete");
  // The token changes with any version.
  ProjectState moved = s;
  moved.data["staging"].flags.at("checkout").version = 6;
  EXPECT_NE(StateToken(moved), StateToken(s));
  EXPECT_EQ(StateToken(Shop()), StateToken(s));
}

TEST(ProjectDocumentTest, MalformedDocumentsAreRefusedWithTheirPath) {
  ProjectState s = Shop();
  struct Bad {
    const char* doc;
    const char* field;
  };
  for (const Bad& b : {Bad{R"([])", ""},
                       Bad{R"({"flagz":{}})", "flagz"},
                       Bad{R"({"project":"other"})", "project"},
                       Bad{R"({"flags":{"checkout":{"on":true}}})", "flags.checkout.on"},
                       Bad{R"({"flags":{"checkout":{"variations":"x"}}})", "flags.checkout.variations"},
                       Bad{R"({"flags":{"bad key":{}}})", "flags.bad key"},
                       Bad{R"({"flags":{"checkout":{"variations":[false,true],"environments":{"production":{"fallthrough":{"variation":0},"offVariation":0,"rules":[{"clauses":"x"}]}}}}})",
                           "flags.checkout.environments.production.rules[0].clauses"},
                       Bad{R"({"segments":{"production":{"beta":{"included":"u1"}}}})", "segments.production.beta.included"},
                       Bad{R"({"segments":{"production":{"beta":{"includd":["u1"]}}}})", "segments.production.beta.includd"},
                       Bad{R"({"flags":{"checkout":{"variations":[false,true],"environments":{"production":{"onn":true,"fallthrough":{"variation":0},"offVariation":0}}}}})",
                           "flags.checkout.environments.production.onn"},
                       Bad{R"({"flags":{"checkout":{"variations":[false,true],"environments":{"production":{"fallthrough":{"variation":0,"weight":3},"offVariation":0}}}}})",
                           "flags.checkout.environments.production.fallthrough.weight"},
                       Bad{R"({"metrics":{"m":{"kind":"median"}}})", "metrics.m.kind"}}) {
    absl::StatusOr<Plan> p = MakePlan(s, J(b.doc), false);
    ASSERT_FALSE(p.ok()) << b.doc;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << b.doc << ": " << p.status();
    EXPECT_EQ(rules::ErrorField(p.status()), b.field) << b.doc << ": " << p.status();
  }
  // A new environment is planned, not refused.
  Plan plan = MakePlan(s, J(R"({"segments":{"qa":{}}})"), false).value();
  ASSERT_NE(Find(plan, "environment", "qa"), nullptr);
}

TEST(YamlTest, TheSameTreeAsJsonWithQuotedStringsStayingStrings) {
  Value doc = J(R"({"b":{"n":1,"x":2.5,"t":true,"s":"true","one":"1","z":null,"e":[],"o":{}},"a":["x",{"k":-3}]})");
  std::string yaml = ToYaml(doc);
  EXPECT_NE(yaml.find("s: \"true\""), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("e: []"), std::string::npos) << yaml;
  absl::StatusOr<Value> back = ParseYaml(yaml);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, doc) << yaml;
  absl::StatusOr<Value> plain = ParseYaml("on: true\nname: beta\ncount: 12\nratio: 0.5\nnothing: ~\nlist: [a, 2]\n");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(*plain, J(R"({"on":true,"name":"beta","count":12,"ratio":0.5,"nothing":null,"list":["a",2]})"));
  absl::StatusOr<Value> broken = ParseYaml("a: [1, 2\nb: 3\n");
  EXPECT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find("YAML line"), std::string::npos) << broken.status();
  EXPECT_FALSE(ParseYaml("a: 1\na: 2\n").ok());  // a duplicate key is a mistake
}

}  // namespace
}  // namespace gonfalon::server
