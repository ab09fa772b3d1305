// Snapshot::Apply against a snapshot built from scratch: a long random sequence of change sets
// (flags, segments, prerequisites, archives, deletes, stale versions, segment edits used by many
// flags) applied incrementally must, after every step, evaluate exactly as Snapshot::Build of
// the same data, assemble the same payload, and name in AffectedFlags every flag whose answer
// changed. Both ways a snapshot holds its items' JSON are checked: on demand (the SDK) and
// encoded when compiled, its models then without what only the JSON needs (the server).

#include <gtest/gtest.h>

#include <random>
#include <tuple>

#include "gonfalon/rules/change_set.h"
#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/evaluator.h"
#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/snapshot.h"
#include "gonfalon/rules/str_cat.h"
#include "status_testing.h"

namespace gonfalon::rules {
namespace {

constexpr int kFlagKeys = 40;
constexpr int kSegmentKeys = 8;

std::string FlagKey(int i) { return StrCat("flag-", i); }
std::string SegmentKey(int i) { return StrCat("seg-", i); }

class Generator {
 public:
  explicit Generator(uint32_t seed) : rng_(seed) {}

  int Uniform(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  bool Chance(int percent) { return Uniform(100) < percent; }

  Clause SomeClause() {
    Clause c;
    if (Chance(35)) {
      c.op = Op::kSegmentMatch;
      c.op_name = "segmentMatch";
      for (int n = 1 + Uniform(2); n > 0; --n) c.values.emplace_back(SegmentKey(Uniform(kSegmentKeys)));
    } else {
      c.context_kind = "user";
      c.attribute = Chance(50) ? "country" : "key";
      c.op = Op::kIn;
      c.op_name = "in";
      for (int n = 1 + Uniform(3); n > 0; --n) {
        c.values.emplace_back(c.attribute == "key" ? StrCat("u", Uniform(12)) : std::string(Chance(50) ? "FR" : "DE"));
      }
      c.negate = Chance(10);
    }
    return c;
  }

  Flag SomeFlag(const std::string& key) {
    Flag f;
    f.key = key;
    f.on = !Chance(15);
    f.salt = StrCat("salt-", Uniform(3));  // bucketing tells salts apart
    for (int v = 0; v < 3; ++v) f.variations.emplace_back(StrCat(key, "-v", v));
    f.off_variation = Chance(80) ? std::optional<int>(Uniform(3)) : std::nullopt;
    if (Chance(30)) {
      Rollout r;
      r.variations = {{0, 30000, false}, {1, 30000, false}, {2, 40000, false}};
      f.fallthrough.rollout = r;
    } else {
      f.fallthrough.variation = Uniform(3);
    }
    if (Chance(30)) f.targets.push_back({"user", {StrCat("u", Uniform(12)), StrCat("u", Uniform(12))}, Uniform(3)});
    for (int n = Uniform(3); n > 0; --n) {
      FlagRule r;
      r.id = StrCat("r", n);
      r.clauses.push_back(SomeClause());
      if (Chance(30)) r.clauses.push_back(SomeClause());
      r.variation_or_rollout.variation = Uniform(3);
      f.rules.push_back(std::move(r));
    }
    if (Chance(25)) f.prerequisites.push_back({FlagKey(Uniform(kFlagKeys)), Uniform(3)});
    f.client_side_availability.using_environment_id = Chance(50);
    f.deleted = Chance(5);  // archived: kept in the data, not evaluated
    if (Chance(50)) f.SetManagement({.name = StrCat(key, " name"), .description = "d", .tags = {"t"}});
    return f;
  }

  Segment SomeSegment(const std::string& key) {
    Segment s;
    s.key = key;
    s.salt = StrCat("s-", Uniform(3));
    for (int n = Uniform(5); n > 0; --n) s.included.push_back(StrCat("u", Uniform(12)));
    for (int n = Uniform(2); n > 0; --n) s.excluded.push_back(StrCat("u", Uniform(12)));
    if (Chance(40)) {
      SegmentRule r;
      r.clauses.push_back(SomeClause());  // may name another segment (or itself: a cycle)
      if (Chance(30)) r.weight = Uniform(100001);
      s.rules.push_back(std::move(r));
    }
    return s;
  }

  // A change set of 1..6 items against `env` (the versions it holds), some of them stale.
  ChangeSetEvent SomeChangeSet(const Environment& env, int64_t sequence) {
    ChangeSetEvent e;
    e.sequence = sequence;
    for (int n = 1 + Uniform(Chance(10) ? 20 : 6); n > 0; --n) {
      ChangedItem item;
      bool flag = !Chance(25);
      item.kind = flag ? ChangedKind::kFlag : ChangedKind::kSegment;
      item.key = flag ? FlagKey(Uniform(kFlagKeys)) : SegmentKey(Uniform(kSegmentKeys));
      int64_t current = 0;
      if (flag) {
        if (auto it = env.flags.find(item.key); it != env.flags.end()) current = it->second.version;
      } else if (auto it = env.segments.find(item.key); it != env.segments.end()) {
        current = it->second.version;
      }
      item.version = Chance(10) ? std::max<int64_t>(current - Uniform(2), 0) : current + 1 + Uniform(2);
      if (!Chance(12)) item.data = flag ? EncodeFlag(SomeFlag(item.key)) : EncodeSegment(SomeSegment(item.key));
      e.items.push_back(std::move(item));
    }
    return e;
  }

  std::vector<Context> Contexts() {
    std::vector<Context> out;
    for (int u = 0; u < 12; ++u) {
      out.push_back(Context::Builder("user", StrCat("u", u)).Set("country", Value(u % 2 == 0 ? "FR" : "DE")).Build());
    }
    return out;
  }

 private:
  std::mt19937 rng_;
};

std::string Describe(const Detail& d) {
  return StrCat(d.value == nullptr ? std::string("null") : ToJson(*d.value), " #", d.variation_index, " ",
                ToJson(ReasonToValue(d.reason)));
}

// Every flag key (present or not) for every context, as text.
std::vector<std::string> Answers(const Snapshot& snap, const std::vector<Context>& contexts) {
  std::vector<std::string> out;
  for (int f = 0; f < kFlagKeys; ++f) {
    std::string row = FlagKey(f);
    for (const Context& c : contexts) row += " | " + Describe(Evaluate(snap, FlagKey(f), c));
    out.push_back(std::move(row));
  }
  return out;
}

// One history per seed and way of holding JSON, each its own test (under AddressSanitizer one
// history takes tens of seconds).
class SnapshotApplyHistoryTest : public ::testing::TestWithParam<std::tuple<uint32_t, ItemJson>> {};

TEST_P(SnapshotApplyHistoryTest, IncrementalEqualsFromScratchOverARandomHistory) {
  {
    const auto [seed, item_json] = GetParam();
    const bool eager = item_json == ItemJson::kEager;
    SCOPED_TRACE(StrCat("seed ", seed, eager ? " eager" : " on demand"));
    Generator gen(seed);
    std::vector<Context> contexts = gen.Contexts();
    Environment reference;
    reference.sequence = 1;
    for (int i = 0; i < kFlagKeys / 2; ++i) {
      Flag f = gen.SomeFlag(FlagKey(i));
      f.version = 1;
      reference.flags.emplace(f.key, f);
    }
    for (int i = 0; i < kSegmentKeys / 2; ++i) {
      Segment s = gen.SomeSegment(SegmentKey(i));
      s.version = 1;
      reference.segments.emplace(s.key, s);
    }
    std::shared_ptr<const Snapshot> incremental = Snapshot::Build(reference, {}, item_json);
    for (int step = 0; step < 300; ++step) {
      SCOPED_TRACE(StrCat("step ", step));
      ChangeSetEvent event = gen.SomeChangeSet(reference, reference.sequence + 1);
      ASSERT_OK_AND_ASSIGN(AppliedChanges expected_changes, ApplyChangeSet(event, reference));
      AppliedChanges changes;
      ASSERT_OK_AND_ASSIGN(std::shared_ptr<const Snapshot> next, incremental->Apply(event, &changes));
      EXPECT_EQ(changes.flags, expected_changes.flags);
      EXPECT_EQ(changes.segments, expected_changes.segments);
      std::shared_ptr<const Snapshot> scratch = Snapshot::Build(reference);
      ASSERT_EQ(next->sequence(), reference.sequence);
      ASSERT_EQ(next->flag_count(), scratch->flag_count());
      for (size_t i = 0; i < next->flag_count(); ++i) {
        ASSERT_EQ(FlagModel(next->flag(i)).key, FlagModel(scratch->flag(i)).key);
      }
      std::vector<std::string> now = Answers(*next, contexts);
      std::vector<std::string> expected = Answers(*scratch, contexts);
      for (int f = 0; f < kFlagKeys; ++f) ASSERT_EQ(now[f], expected[f]);
      EXPECT_EQ(next->PayloadJson(), ToJson(EncodeEnvironment(reference)));
      EXPECT_EQ(next->ToEnvironment(), reference);
      // The lists (admin routes): every item in key order, deleted-marked ones included.
      std::vector<Snapshot::FlagEntry> flags = next->Flags();
      ASSERT_EQ(flags.size(), reference.flags.size());
      std::string flags_json = "[";
      std::string segments_json = "[";
      size_t n = 0;
      for (const auto& [k, f] : reference.flags) {
        EXPECT_EQ(flags[n].json, ToJson(EncodeFlag(f)));
        if (eager) {
          // What evaluation reads is there; what only the JSON needs is not.
          EXPECT_EQ(flags[n].model->key, f.key);
          EXPECT_EQ(flags[n].model->variations, f.variations);
          EXPECT_FALSE(flags[n].model->management.has_value());
          EXPECT_EQ(flags[n].model->salt, "");
        } else {
          EXPECT_EQ(*flags[n].model, f);
        }
        if (n++ > 0) flags_json += ',';
        flags_json += ToJson(EncodeFlag(f));
      }
      n = 0;
      for (const auto& [k, seg] : reference.segments) {
        if (n++ > 0) segments_json += ',';
        segments_json += ToJson(EncodeSegment(seg));
      }
      EXPECT_EQ(next->FlagsJsonArray(), flags_json + "]");
      EXPECT_EQ(next->SegmentsJsonArray(), segments_json + "]");
      // Whatever answers changed, AffectedFlags named.
      std::vector<std::string> before = Answers(*incremental, contexts);
      std::vector<std::string> affected = next->AffectedFlags(changes);
      for (int f = 0; f < kFlagKeys; ++f) {
        if (before[f] != now[f]) {
          EXPECT_TRUE(std::binary_search(affected.begin(), affected.end(), FlagKey(f)))
              << FlagKey(f) << " changed but is not named";
        }
      }
      // The old snapshot is untouched by its successor.
      incremental = std::move(next);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, SnapshotApplyHistoryTest,
                         ::testing::Combine(::testing::Values(1u, 2u, 3u, 4u),
                                            ::testing::Values(ItemJson::kOnDemand, ItemJson::kEager)),
                         [](const auto& info) {
                           return StrCat("seed", std::get<0>(info.param),
                                         std::get<1>(info.param) == ItemJson::kEager ? "_eager" : "_on_demand");
                         });

TEST(SnapshotApplyTest, SharesUnchangedItemsAndKeepsOrdinals) {
  Environment env;
  env.sequence = 1;
  for (int i = 0; i < 100; ++i) {
    Flag f;
    f.key = FlagKey(i);
    f.version = 1;
    f.variations = {Value(false), Value(true)};
    f.fallthrough.variation = 1;
    env.flags.emplace(f.key, f);
  }
  auto snap = Snapshot::Build(env);
  const auto* untouched = snap->FindFlag("flag-7");
  const auto* changed = snap->FindFlag("flag-9");
  uint32_t changed_ordinal = snap->FlagOrdinal(*changed);
  Flag f9 = FlagModel(*changed);
  f9.on = true;
  ChangeSetEvent e{2, 0, {{ChangedKind::kFlag, "flag-9", 2, EncodeFlag(f9)},
                         {ChangedKind::kFlag, "aaa-new", 1, EncodeFlag(f9)},
                         {ChangedKind::kFlag, "flag-3", 2, std::nullopt}}};
  ASSERT_OK_AND_ASSIGN(auto next, snap->Apply(e));
  EXPECT_EQ(next->FindFlag("flag-7"), untouched);  // the same compiled object, not a copy
  EXPECT_NE(next->FindFlag("flag-9"), changed);
  EXPECT_EQ(next->FlagOrdinal(*next->FindFlag("flag-9")), changed_ordinal);
  EXPECT_EQ(next->FlagOrdinal(*next->FindFlag("aaa-new")), 100u);
  EXPECT_EQ(next->ordinal_bound(), 101u);
  EXPECT_EQ(next->FindFlag("flag-3"), nullptr);
  EXPECT_EQ(next->flag_count(), 100u);
  EXPECT_EQ(FlagModel(next->flag(0)).key, "aaa-new");  // key order
  // The previous snapshot still answers as before.
  EXPECT_NE(snap->FindFlag("flag-3"), nullptr);
  EXPECT_EQ(snap->FindFlag("aaa-new"), nullptr);
  EXPECT_FALSE(FlagModel(*snap->FindFlag("flag-9")).on);
}

TEST(SnapshotApplyTest, AllOrNothingWhenAnItemDoesNotDecode) {
  Environment env;
  env.sequence = 1;
  auto snap = Snapshot::Build(env);
  Flag f;
  f.key = "good";
  f.variations = {Value(1)};
  ChangeSetEvent e{2, 0, {{ChangedKind::kFlag, "good", 1, EncodeFlag(f)},
                         {ChangedKind::kFlag, "bad", 1, Value(Object{{"variations", Value("not an array")}})}}};
  absl::StatusOr<std::shared_ptr<const Snapshot>> next = snap->Apply(e);
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(ErrorField(next.status()), "items[1].data.key") << next.status();
  EXPECT_EQ(snap->FindFlag("good"), nullptr);
}

TEST(SnapshotApplyTest, ParallelBuildEqualsSerial) {
  Generator gen(9);
  Environment env;
  env.sequence = 5;
  for (int i = 0; i < kFlagKeys; ++i) env.flags.emplace(FlagKey(i), gen.SomeFlag(FlagKey(i)));
  for (int i = 0; i < kSegmentKeys; ++i) env.segments.emplace(SegmentKey(i), gen.SomeSegment(SegmentKey(i)));
  int calls = 0;
  ParallelFor reversed = [&](size_t n, const std::function<void(size_t)>& work) {
    ++calls;
    for (size_t i = n; i > 0; --i) work(i - 1);  // any order must do
  };
  auto serial = Snapshot::Build(env);
  auto parallel = Snapshot::Build(env, reversed);
  EXPECT_EQ(calls, 2);
  std::vector<Context> contexts = gen.Contexts();
  EXPECT_EQ(Answers(*serial, contexts), Answers(*parallel, contexts));
  EXPECT_EQ(serial->PayloadJson(), parallel->PayloadJson());

  // Decoding in any order gives the same environment, and the first error in document order.
  std::string text = ToJson(EncodeEnvironment(env));
  ASSERT_OK_AND_ASSIGN(Environment decoded, ParseEnvironment(text, {}, reversed));
  EXPECT_EQ(decoded, env);
  absl::StatusOr<Environment> bad = ParseEnvironment(
      R"({"flags":{"a":{"variations":"x"},"b":{"variations":"y"}},"segments":{}})", {}, reversed);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("flags.a"), std::string::npos) << bad.status();
}

}  // namespace
}  // namespace gonfalon::rules
