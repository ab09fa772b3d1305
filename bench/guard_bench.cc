// Release plan guards at size (issue 12, docs/performance.md "Release automation"): the cost
// of one look of the scheduler over N active plans, each with a metric guard, a threshold
// guard and the two health checks, on a stage with 1,000 exposed units: list the active
// plans, judge every guard (GuardMonitor::Check), and run the plans' gates.
//   build/release/bench/guard_bench --benchmark_repetitions=3
// The database lives under $GONFALON_BENCH_DIR (default ./build/bench-data).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <string>

#include "gonfalon/rules/str_cat.h"
#include "gonfalon/storage/store.h"
#include "metrics.h"
#include "release_guards.h"
#include "webhooks.h"
#include "wall_clock.h"

namespace gonfalon::server {
namespace {

using rules::Value;

struct Fixture {
  std::unique_ptr<storage::Store> store;
  int plans = 0;
};

Fixture& Shop(int plans) {
  // Kept to the end of the process (not destroyed at exit, after RocksDB's own statics).
  static auto* made = new std::map<int, Fixture>;
  Fixture& f = (*made)[plans];
  if (f.store) return f;
  const char* base = std::getenv("GONFALON_BENCH_DIR");
  std::string dir = StrCat(base ? base : "build/bench-data", "/guards-", plans);
  std::filesystem::remove_all(dir);
  f.store = std::move(*storage::Store::Open({.path = dir, .sync = false}));
  f.plans = plans;
  storage::Actor a{"bench"};
  (void)f.store->CreateProject({.key = "shop"}, a);
  (void)f.store->CreateEnvironment("shop", {.key = "production"}, a);
  (void)f.store->PutMetric("shop", {.key = "errors", .event_key = "error", .kind = storage::MetricKind::kConversion, .lower_is_better = true});
  for (int i = 0; i < plans; ++i) {
    std::string flag = StrCat("flag-", i);
    storage::FlagMeta m;
    m.key = flag;
    m.variations = {Value(false), Value(true)};
    (void)f.store->CreateFlag("shop", m, a, "");
    storage::ChangeSet on;
    on.project = "shop";
    on.environment = "production";
    on.actor = a;
    on.items.push_back({storage::ItemKind::kFlag, flag, std::nullopt,
                        Value(rules::Object{{"on", Value(true)}, {"fallthrough", Value(rules::Object{{"variation", Value(0)}})},
                                            {"offVariation", Value(0)}}),
                        false});
    (void)f.store->Apply(on);
    storage::ReleasePlan plan;
    plan.project = "shop";
    plan.environment = "production";
    plan.flag = flag;
    plan.stages = {{50000, 3'600'000, 0}, {100000, 0, 0}};  // never advances during the bench
    plan.guards = {storage::PlanGuard{.kind = storage::GuardKind::kMetric, .metric = "errors"},
                   storage::PlanGuard{.kind = storage::GuardKind::kThreshold, .action = storage::GuardAction::kPause,
                                      .metric = "errors", .max = 0.5}};
    auto started = f.store->StartReleasePlan(plan, a);
    if (!started.ok()) std::abort();
    // 1,000 units a stage, 1 % of them failing, on both sides alike.
    std::vector<storage::UnitExposure> exposures;
    std::vector<storage::UnitEvent> events;
    int64_t now = NowMs();
    for (int u = 0; u < 1000; ++u) {
      std::string key = StrCat("u", u);
      exposures.push_back({flag, u % 2, "user", key, now - 1, started->flag_version});
      if (u % 100 == 0) events.push_back({"error", {{"user", key}}, 1, now});
    }
    if (!f.store->RecordExperimentBatch("shop", "production", "", exposures, events).ok()) std::abort();
  }
  return f;
}

void BM_GuardLook(benchmark::State& state) {
  Fixture& f = Shop(static_cast<int>(state.range(0)));
  Metrics metrics;
  WebhookDispatcher webhooks(*f.store, metrics);
  GuardMonitor monitor(*f.store, metrics, webhooks);
  for (auto _ : state) {
    auto active = f.store->ListActiveReleasePlans();
    std::set<std::string> held = monitor.Check(*active, NowMs());
    auto changed = f.store->RunReleasePlans(held);
    if (!changed.ok() || active->size() != static_cast<size_t>(f.plans) || !changed->empty()) {
      state.SkipWithError("the plans did not stay active");
      break;
    }
  }
  state.counters["plans"] = f.plans;
}
BENCHMARK(BM_GuardLook)->Arg(10)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace gonfalon::server

BENCHMARK_MAIN();
