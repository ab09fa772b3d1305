// Evaluator benchmarks (issue #2, docs/performance.md). Every case looks the flag up by key.
//   make bench   or   build/release/bench/rules_bench --benchmark_repetitions=5
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "alloc_counter.h"
#include "gonfalon/rules/change_set.h"
#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/evaluator.h"
#include "gonfalon/rules/snapshot.h"

namespace gonfalon::rules {
namespace {

Value Clause(const char* attr, const char* op, Array values) {
  return Value(Object{{"contextKind", Value("user")}, {"attribute", Value(attr)},
                      {"op", Value(op)}, {"values", Value(std::move(values))}});
}

Value BoolFlag(const std::string& key) {
  return *ParseJson(R"({"key":")" + key +
                    R"(","on":true,"salt":"s","variations":[false,true],"offVariation":0,"fallthrough":{"variation":1}})");
}

// with_references: one filler flag in ten matches the segment and one in fifty has a
// prerequisite, as in bench/scale's mix (AffectedFlags scans such flags).
Environment MakeEnvironment(int extra_flags, bool with_references = false) {
  Value flags{Object{}};
  flags.Set("a-bool", BoolFlag("a-bool"));
  Value three = BoolFlag("b-three-rules");
  Array countries;
  for (const char* c : {"FR", "DE", "IT", "ES", "NL", "BE", "PT", "AT", "PL", "SE"}) countries.emplace_back(c);
  three.Set("rules", Value(Array{
      Value(Object{{"id", Value("in-list")}, {"variation", Value(0)},
                   {"clauses", Value(Array{Clause("country", "in", countries)})}}),
      Value(Object{{"id", Value("prefix")}, {"variation", Value(0)},
                   {"clauses", Value(Array{Clause("email", "startsWith", Array{Value("qa-")})})}}),
      Value(Object{{"id", Value("older")}, {"variation", Value(1)},
                   {"clauses", Value(Array{Clause("age", "greaterThan", Array{Value(30)})})}}),
  }));
  three.Set("fallthrough", Value(Object{{"variation", Value(0)}}));
  flags.Set("b-three-rules", std::move(three));
  Value rollout = BoolFlag("c-rollout");
  rollout.Set("fallthrough", *ParseJson(R"({"rollout":{"variations":[{"variation":0,"weight":50000},{"variation":1,"weight":50000}]}})"));
  flags.Set("c-rollout", std::move(rollout));
  Value seg_flag = BoolFlag("d-segment");
  seg_flag.Set("rules", Value(Array{Value(Object{{"id", Value("seg")}, {"variation", Value(1)},
      {"clauses", Value(Array{Clause("", "segmentMatch", Array{Value("big")})})}})}));
  seg_flag.Set("fallthrough", Value(Object{{"variation", Value(0)}}));
  flags.Set("d-segment", std::move(seg_flag));
  // Filler flags for (e): a mix of plain, ruled and rollout flags.
  for (int i = 0; i < extra_flags; ++i) {
    std::string key = "flag-" + std::to_string(i);
    Value f = BoolFlag(key);
    if (i % 3 == 1) {
      f.Set("rules", Value(Array{Value(Object{{"id", Value("r")}, {"variation", Value(0)},
          {"clauses", Value(Array{Clause("country", "in", Array{Value("FR"), Value("DE")})})}})}));
    } else if (i % 3 == 2) {
      f.Set("fallthrough", *ParseJson(R"({"rollout":{"variations":[{"variation":0,"weight":50000},{"variation":1,"weight":50000}]}})"));
    }
    if (with_references && i % 10 == 0) {
      f.Set("rules", Value(Array{Value(Object{{"id", Value("seg")}, {"variation", Value(1)},
          {"clauses", Value(Array{Clause("", "segmentMatch", Array{Value("big")})})}})}));
    }
    if (with_references && i % 50 == 5) {
      f.Set("prerequisites", Value(Array{Value(Object{{"key", Value("a-bool")}, {"variation", Value(1)}})}));
    }
    flags.Set(key, std::move(f));
  }
  Array included;
  for (int i = 0; i < 10000; ++i) included.emplace_back("member-" + std::to_string(i));
  Value segments{Object{}};
  segments.Set("big", Value(Object{{"key", Value("big")}, {"included", Value(std::move(included))}}));
  return *DecodeEnvironment(Value(Object{{"flags", std::move(flags)}, {"segments", std::move(segments)}}));
}

const Snapshot& Snap() {
  static auto snap = Snapshot::Build(MakeEnvironment(0));
  return *snap;
}

Context User(const std::string& key) {
  return Context::Builder("user", key)
      .Set("country", Value("US"))
      .Set("email", Value("someone@example.com"))
      .Set("age", Value(42))
      .Build();
}

void ReportAllocations(benchmark::State& state, uint64_t before) {
  state.counters["allocs/eval"] = benchmark::Counter(
      static_cast<double>(bench::Allocations() - before) / static_cast<double>(state.iterations()));
  state.SetItemsProcessed(state.iterations());
}

// (a) A boolean flag that is on, with no targets or rules.
void BM_BoolFlagOn(benchmark::State& state) {
  const Snapshot& snap = Snap();
  Context ctx = User("user-1");
  uint64_t before = bench::Allocations();
  for (auto _ : state) {
    Detail d = Evaluate(snap, "a-bool", ctx);
    benchmark::DoNotOptimize(d);
  }
  ReportAllocations(state, before);
}
BENCHMARK(BM_BoolFlagOn);

// (b) Three rules (`in` a list, `startsWith`, `greaterThan`); the context matches the last.
void BM_ThreeRulesMatchLast(benchmark::State& state) {
  const Snapshot& snap = Snap();
  Context ctx = User("user-1");
  if (Evaluate(snap, "b-three-rules", ctx).reason.rule_index != 2) state.SkipWithError("wrong rule");
  uint64_t before = bench::Allocations();
  for (auto _ : state) {
    Detail d = Evaluate(snap, "b-three-rules", ctx);
    benchmark::DoNotOptimize(d);
  }
  ReportAllocations(state, before);
}
BENCHMARK(BM_ThreeRulesMatchLast)->ThreadRange(1, 2)->UseRealTime();

// (c) A 50/50 rollout over 100k distinct context keys.
const std::vector<Context>& ManyUsers() {
  static auto* users = [] {
    auto* v = new std::vector<Context>();
    v->reserve(100000);
    for (int i = 0; i < 100000; ++i) v->push_back(User("user-" + std::to_string(i)));
    return v;
  }();
  return *users;
}

void BM_Rollout5050(benchmark::State& state) {
  const Snapshot& snap = Snap();
  const std::vector<Context>& users = ManyUsers();
  size_t i = state.thread_index() * 50000;
  int64_t second = 0;
  uint64_t before = bench::Allocations();
  for (auto _ : state) {
    Detail d = Evaluate(snap, "c-rollout", users[i]);
    second += d.variation_index;
    if (++i == users.size()) i = 0;
  }
  ReportAllocations(state, before);
  state.counters["share_v1"] = benchmark::Counter(
      static_cast<double>(second) / static_cast<double>(state.iterations()), benchmark::Counter::kAvgThreads);
}
BENCHMARK(BM_Rollout5050)->ThreadRange(1, 2)->UseRealTime();

// (d) segmentMatch against a segment of 10k included keys (half the contexts are members).
void BM_SegmentMatch10k(benchmark::State& state) {
  const Snapshot& snap = Snap();
  std::vector<Context> users;
  for (int i = 0; i < 1024; ++i) {
    users.push_back(User((i % 2 ? "member-" : "stranger-") + std::to_string(i * 7)));
  }
  size_t i = 0;
  uint64_t before = bench::Allocations();
  for (auto _ : state) {
    Detail d = Evaluate(snap, "d-segment", users[i]);
    benchmark::DoNotOptimize(d);
    i = (i + 1) & 1023;
  }
  ReportAllocations(state, before);
}
BENCHMARK(BM_SegmentMatch10k)->ThreadRange(1, 2)->UseRealTime();

// (e) All flags for one context over 10k flags (time is per whole pass).
void BM_AllFlags10k(benchmark::State& state) {
  static auto snap = Snapshot::Build(MakeEnvironment(10000));
  Context ctx = User("user-1");
  size_t count = 0;
  for (auto _ : state) {
    EvaluateAll(*snap, ctx, [&](std::string_view, const Detail& d) {
      benchmark::DoNotOptimize(d);
      ++count;
    });
  }
  state.SetItemsProcessed(static_cast<int64_t>(count));
}
BENCHMARK(BM_AllFlags10k)->Unit(benchmark::kMicrosecond);

// The change set that switches filler flag `key` off (version 2), next after `base`.
ChangeSetEvent SwitchOff(const Snapshot& base, const std::string& key) {
  Value changed = BoolFlag(key);
  changed.Set("on", Value(false));
  ChangeSetEvent event;
  event.sequence = base.sequence() + 1;
  event.items.push_back({ChangedKind::kFlag, key, 2, changed});
  return event;
}

// A change costs what it changes (issue 10): the next snapshot from one small change set
// (one flag switched off) over environments of 100, 10,000 and 100,000 flags. Each iteration
// applies it to the same base snapshot, as the hub applies each change set to the last one.
void BM_ApplyOneFlagChange(benchmark::State& state) {
  auto base = Snapshot::Build(MakeEnvironment(static_cast<int>(state.range(0))));
  ChangeSetEvent event = SwitchOff(*base, "flag-0");
  for (auto _ : state) {
    auto next = base->Apply(event);
    benchmark::DoNotOptimize(next);
  }
  state.SetComplexityN(state.range(0));
}
BENCHMARK(BM_ApplyOneFlagChange)->Arg(100)->Arg(10000)->Arg(100000)->Unit(benchmark::kMicrosecond)->Complexity();

// Changes that add an item to the snapshot's ordered lists or take it out of them: a flag
// created (it enters every list), and a flag whose segment rule is removed (it leaves the list
// of flags that refer to segments). Each costs the chunks it touches, not the environment.
void BM_ApplyFlagCreated(benchmark::State& state) {
  auto base = Snapshot::Build(MakeEnvironment(static_cast<int>(state.range(0)), /*with_references=*/true));
  ChangeSetEvent event;
  event.sequence = base->sequence() + 1;
  event.items.push_back({ChangedKind::kFlag, "flag-1a", 1, BoolFlag("flag-1a")});  // sorts inside the list
  for (auto _ : state) {
    auto next = base->Apply(event);
    benchmark::DoNotOptimize(next);
  }
  state.SetComplexityN(state.range(0));
}
BENCHMARK(BM_ApplyFlagCreated)->Arg(100)->Arg(10000)->Arg(100000)->Unit(benchmark::kMicrosecond)->Complexity();

void BM_ApplySegmentRuleRemoved(benchmark::State& state) {
  auto base = Snapshot::Build(MakeEnvironment(static_cast<int>(state.range(0)), /*with_references=*/true));
  ChangeSetEvent event = SwitchOff(*base, "flag-10");  // filler flag 10 matches the segment; the change has no rule
  for (auto _ : state) {
    auto next = base->Apply(event);
    benchmark::DoNotOptimize(next);
  }
  state.SetComplexityN(state.range(0));
}
BENCHMARK(BM_ApplySegmentRuleRemoved)->Arg(100)->Arg(10000)->Arg(100000)->Unit(benchmark::kMicrosecond)->Complexity();

// What the SDK does for each change when a flag listener is registered: apply it, then name the
// flags whose answers may have changed, in an environment where one flag in ten refers to a
// segment and one in fifty has a prerequisite. The changed flag is not a prerequisite.
void BM_ApplyAndAffectedFlags(benchmark::State& state) {
  auto base = Snapshot::Build(MakeEnvironment(static_cast<int>(state.range(0)), /*with_references=*/true));
  ChangeSetEvent event = SwitchOff(*base, "flag-1");
  for (auto _ : state) {
    AppliedChanges applied;
    auto next = base->Apply(event, &applied);
    std::vector<std::string> affected = (*next)->AffectedFlags(applied);
    if (affected.size() != 1) state.SkipWithError("expected only the changed flag");
    benchmark::DoNotOptimize(affected);
  }
  state.SetComplexityN(state.range(0));
}
BENCHMARK(BM_ApplyAndAffectedFlags)->Arg(100)->Arg(10000)->Arg(100000)->Unit(benchmark::kMicrosecond)->Complexity();

// Loading: decode a 10k-flag payload from JSON text and compile its snapshot.
void BM_ParseAndCompile10kFlags(benchmark::State& state) {
  std::string text = ToJson(EncodeEnvironment(MakeEnvironment(10000)));
  for (auto _ : state) {
    auto env = ParseEnvironment(text);
    auto snap = Snapshot::Build(std::move(*env));
    benchmark::DoNotOptimize(snap);
  }
  state.counters["MB"] = static_cast<double>(text.size()) / 1e6;
}
BENCHMARK(BM_ParseAndCompile10kFlags)->Unit(benchmark::kMillisecond);

// The explain trace, for scale: it allocates by design.
void BM_ThreeRulesWithTrace(benchmark::State& state) {
  const Snapshot& snap = Snap();
  Context ctx = User("user-1");
  for (auto _ : state) {
    Trace trace;
    Detail d = Evaluate(snap, "b-three-rules", ctx, &trace);
    benchmark::DoNotOptimize(d);
  }
}
BENCHMARK(BM_ThreeRulesWithTrace);

// A context with N attributes (issue 9, defect 13: 2.1 s for 40k attributes, quadratic):
// parsed from JSON, turned into a Context and evaluated against three rules, as an OFREP or
// /sdk/v1/evaluate request would. The cost should grow linearly with N.
void BM_WideContext(benchmark::State& state) {
  const Snapshot& snap = Snap();
  std::string json = R"({"kind":"user","key":"user-1","country":"SE","email":"a@b.c","age":70)";
  for (int64_t i = 0; i < state.range(0); ++i) json += ",\"attr" + std::to_string(i) + "\":" + std::to_string(i);
  json += "}";
  for (auto _ : state) {
    Context ctx = ContextFromJson(*ParseJson(json));
    Detail d = Evaluate(snap, "b-three-rules", ctx);
    benchmark::DoNotOptimize(d);
    benchmark::DoNotOptimize(ctx.ToValue());
  }
  state.SetComplexityN(state.range(0));
}
BENCHMARK(BM_WideContext)->RangeMultiplier(4)->Range(1 << 10, 1 << 16)->Unit(benchmark::kMillisecond)->Complexity();

// Parsing one JSON object of N members (the duplicate-key check once scanned all members).
void BM_ParseWideObject(benchmark::State& state) {
  std::string json = "{";
  for (int64_t i = 0; i < state.range(0); ++i) json += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":" + std::to_string(i);
  json += "}";
  for (auto _ : state) benchmark::DoNotOptimize(ParseJson(json));
  state.SetComplexityN(state.range(0));
}
BENCHMARK(BM_ParseWideObject)->RangeMultiplier(10)->Range(1000, 100000)->Unit(benchmark::kMillisecond)->Complexity();

}  // namespace
}  // namespace gonfalon::rules

BENCHMARK_MAIN();
