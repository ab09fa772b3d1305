// The rules-engine cases (a)-(c) through the SDK's public Client API (issue #5), 1 and 2
// threads; the client runs offline from a flag file so only evaluation is measured.
//   build/release/bench/sdk_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "gonfalon/sdk/client.h"

namespace {

using gonfalon::rules::Context;
using gonfalon::rules::Value;

constexpr char kFlags[] = R"({"flags":{
 "a-bool":{"key":"a-bool","on":true,"salt":"s","variations":[false,true],"offVariation":0,"fallthrough":{"variation":1}},
 "b-three-rules":{"key":"b-three-rules","on":true,"salt":"s","variations":[false,true],"offVariation":0,"fallthrough":{"variation":0},
  "rules":[
   {"id":"in-list","variation":0,"clauses":[{"contextKind":"user","attribute":"country","op":"in","values":["FR","DE","IT","ES","NL","BE","PT","AT","PL","SE"]}]},
   {"id":"prefix","variation":0,"clauses":[{"contextKind":"user","attribute":"email","op":"startsWith","values":["qa-"]}]},
   {"id":"older","variation":1,"clauses":[{"contextKind":"user","attribute":"age","op":"greaterThan","values":[30]}]}]},
 "c-rollout":{"key":"c-rollout","on":true,"salt":"s","variations":[false,true],"offVariation":0,
  "fallthrough":{"rollout":{"variations":[{"variation":0,"weight":50000},{"variation":1,"weight":50000}]}}}}})";

// An online client (exposure counting on) whose server is unreachable, serving the flags from
// its cache file: what is measured is evaluation plus counting, no network.
gonfalon::sdk::Client& TheClient() {
  static gonfalon::sdk::Client* client = [] {
    std::string path = (std::filesystem::temp_directory_path() / "gonfalon-sdk-bench-flags.json").string();
    std::ofstream(path) << kFlags;
    auto* c = new gonfalon::sdk::Client({.base_url = "http://127.0.0.1:9", .sdk_key = "gfs_bench",
                                         .cache_file = path, .logger = [](auto, auto) {}});
    c->WaitForInitialization(std::chrono::milliseconds(200));
    return c;
  }();
  return *client;
}

Context User(const std::string& key) {
  return Context::Builder("user", key).Set("country", Value("US")).Set("email", Value("someone@example.com")).Set("age", Value(42)).Build();
}

void BM_SdkBoolFlagOn(benchmark::State& state) {
  auto& client = TheClient();
  Context ctx = User("user-1");
  for (auto _ : state) benchmark::DoNotOptimize(client.BoolVariation(ctx, "a-bool", false));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SdkBoolFlagOn)->ThreadRange(1, 2)->UseRealTime();

void BM_SdkThreeRulesMatchLast(benchmark::State& state) {
  auto& client = TheClient();
  Context ctx = User("user-1");
  if (!client.BoolVariation(ctx, "b-three-rules", false)) state.SkipWithError("wrong rule");
  for (auto _ : state) benchmark::DoNotOptimize(client.BoolVariation(ctx, "b-three-rules", false));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SdkThreeRulesMatchLast)->ThreadRange(1, 2)->UseRealTime();

void BM_SdkRollout5050(benchmark::State& state) {
  auto& client = TheClient();
  static std::vector<Context>* users = [] {
    auto* v = new std::vector<Context>();
    for (int i = 0; i < 100000; ++i) v->push_back(User("user-" + std::to_string(i)));
    return v;
  }();
  size_t i = state.thread_index() * 50000;
  for (auto _ : state) {
    benchmark::DoNotOptimize(client.BoolVariation((*users)[i], "c-rollout", false));
    if (++i == users->size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SdkRollout5050)->ThreadRange(1, 2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
