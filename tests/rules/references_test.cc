#include "gonfalon/rules/references.h"

#include <gtest/gtest.h>

#include <map>

#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/str_cat.h"

namespace gonfalon::rules {
namespace {

// A tiny environment of references, by key.
struct Items {
  std::map<std::string, ItemReferences, std::less<>> flags, segments;
  absl::StatusOr<const ItemReferences*> Find(ChangedKind kind, std::string_view key) const {
    const auto& items = kind == ChangedKind::kFlag ? flags : segments;
    auto it = items.find(key);
    return it == items.end() ? nullptr : &it->second;
  }
  void Flag(const std::string& key, std::vector<std::string> prereqs, size_t variations = 2) {
    ItemReferences r;
    for (auto& p : prereqs) r.prerequisites.push_back({p, 1});
    r.variations = variations;
    flags[key] = r;
  }
};

TEST(ReferencesTest, EachKindOfDanglingReferenceNamesItsField) {
  Items items;
  items.Flag("b", {}, 2);
  items.segments["beta"] = {};
  auto lookup = [&](ChangedKind k, std::string_view key) { return items.Find(k, key); };
  ItemReferences ok;
  ok.segments.push_back({"beta", "rules[0].clauses[0].values[0]"});
  ok.prerequisites.push_back({"b", 1});
  EXPECT_TRUE(CheckReferences(ChangedKind::kFlag, "a", ok, lookup).ok());

  ItemReferences no_segment;
  no_segment.segments.push_back({"gamma", "rules[1].clauses[0].values[2]"});
  absl::Status s = CheckReferences(ChangedKind::kSegment, "x", no_segment, lookup);
  EXPECT_EQ(ErrorField(s), "rules[1].clauses[0].values[2]");
  EXPECT_EQ(ErrorText(s), "no segment \"gamma\"");

  ItemReferences no_flag;
  no_flag.prerequisites = {{"b", 0}, {"zz", 0}};
  s = CheckReferences(ChangedKind::kFlag, "a", no_flag, lookup);
  EXPECT_EQ(ErrorField(s), "prerequisites[1].key");
  EXPECT_EQ(ErrorText(s), "no flag \"zz\"");

  ItemReferences bad_variation;
  bad_variation.prerequisites = {{"b", 2}};
  s = CheckReferences(ChangedKind::kFlag, "a", bad_variation, lookup);
  EXPECT_EQ(ErrorField(s), "prerequisites[0].variation");
  EXPECT_EQ(ErrorText(s), "variation 2 does not exist (flag \"b\" has 2 variations)");

  ItemReferences itself;
  itself.prerequisites = {{"a", 0}};
  s = CheckReferences(ChangedKind::kFlag, "a", itself, lookup);
  EXPECT_EQ(ErrorField(s), "prerequisites[0].key");
}

TEST(ReferencesTest, ReferencesOfJsonMatchReferencesOfTheModel) {
  auto json = ParseJson(R"({"key":"a","variations":[1,2,3],"prerequisites":[{"key":"b","variation":2}],
    "rules":[{"clauses":[{"attribute":"x","op":"in","values":["s"]}]},
             {"clauses":[{"attribute":"x","op":"in","values":[1]},{"attribute":"","op":"segmentMatch","values":["s1","s2"]}]}]})");
  ASSERT_TRUE(json.ok());
  ItemReferences r = ReferencesOf(*json, ChangedKind::kFlag);
  EXPECT_EQ(r.variations, 3u);
  ASSERT_EQ(r.prerequisites.size(), 1u);
  EXPECT_EQ(r.prerequisites[0].key, "b");
  EXPECT_EQ(r.prerequisites[0].variation, 2);
  ASSERT_EQ(r.segments.size(), 2u);
  EXPECT_EQ(r.segments[1].key, "s2");
  EXPECT_EQ(r.segments[1].where, "rules[1].clauses[1].values[1]");
  auto flag = DecodeFlag(*json);
  ASSERT_TRUE(flag.ok()) << flag.status();
  ItemReferences m = ReferencesOf(*flag);
  EXPECT_EQ(m.variations, r.variations);
  ASSERT_EQ(m.prerequisites.size(), 1u);
  EXPECT_EQ(m.prerequisites[0].key, r.prerequisites[0].key);
  EXPECT_EQ(m.prerequisites[0].variation, r.prerequisites[0].variation);
  ASSERT_EQ(m.segments.size(), r.segments.size());
  for (size_t i = 0; i < m.segments.size(); ++i) {
    EXPECT_EQ(m.segments[i].key, r.segments[i].key);
    EXPECT_EQ(m.segments[i].where, r.segments[i].where);
  }
}

TEST(ReferencesTest, CyclesAreFoundWhereverTheyAreReachableAndNamedByALinkTheCallerCanName) {
  Items items;
  items.Flag("a", {"b"});
  items.Flag("b", {"c"});
  items.Flag("c", {"d", "b"});  // c -> b closes b -> c -> b
  items.Flag("d", {});
  auto lookup = [&](ChangedKind k, std::string_view key) { return items.Find(k, key); };
  auto name_all = [](std::string_view flag, size_t j) { return StrCat(flag, "[", j, "]"); };
  absl::Status s = CheckNoPrerequisiteCycle({"a"}, lookup, name_all);
  EXPECT_EQ(ErrorText(s), "prerequisite cycle: b -> c -> b");
  EXPECT_EQ(ErrorField(s), "b[0]");  // the loop's first link
  // A caller that can name only c's links gets c's.
  s = CheckNoPrerequisiteCycle({"a"}, lookup, [](std::string_view flag, size_t j) {
    return flag == "c" ? StrCat("c[", j, "]") : std::string();
  });
  EXPECT_EQ(ErrorField(s), "c[1]");
  // Not reachable from d: no loop there.
  EXPECT_TRUE(CheckNoPrerequisiteCycle({"d"}, lookup, name_all).ok());
}

TEST(ReferencesTest, AVeryLongChainIsFollowedWithoutRecursion) {
  Items items;
  constexpr int kLength = 200000;
  for (int i = 0; i < kLength; ++i) items.Flag(StrCat("f", i), i + 1 < kLength ? std::vector<std::string>{StrCat("f", i + 1)} : std::vector<std::string>{});
  auto lookup = [&](ChangedKind k, std::string_view key) { return items.Find(k, key); };
  auto name_all = [](std::string_view flag, size_t j) { return std::string(flag); };
  EXPECT_TRUE(CheckNoPrerequisiteCycle({"f0"}, lookup, name_all).ok());
  items.Flag(StrCat("f", kLength - 1), {"f0"});
  absl::Status s = CheckNoPrerequisiteCycle({"f0"}, lookup, name_all);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorField(s), "f0");
}

}  // namespace
}  // namespace gonfalon::rules
