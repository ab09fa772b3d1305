// The rules-engine cases (a)-(c) through the SDK's public Client API (issue #5), 1 and 2
// threads; the client serves its cache file with the server unreachable, so only evaluation
// (and exposure counting) is measured.
//   build/release/bench/sdk_bench --benchmark_filter=Sdk --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//
// Propagation: the real `gonfalon serve` on port 0 over loopback, one streaming Client, and
// admin writes (PATCH of a flag's targeting); each iteration is the time from sending the write
// to the Client's flag-change listener running. p50/p99 are reported as counters.
//   build/release/bench/sdk_bench --benchmark_filter=Propagation
#include <benchmark/benchmark.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <vector>

#include "../tests/e2e/e2e_util.h"
#include "gonfalon/rules/value.h"
#include "exposure_log.h"
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
  "fallthrough":{"rollout":{"variations":[{"variation":0,"weight":50000},{"variation":1,"weight":50000}]}}},
 "d-experiment":{"key":"d-experiment","on":true,"salt":"s","variations":[false,true],"offVariation":0,
  "fallthrough":{"rollout":{"kind":"experiment","seed":3,"variations":[{"variation":0,"weight":50000},{"variation":1,"weight":50000}]}}}}})";

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

const std::vector<Context>& Users() {
  static std::vector<Context>* users = [] {
    auto* v = new std::vector<Context>();
    for (int i = 0; i < 100000; ++i) v->push_back(User("user-" + std::to_string(i)));
    return v;
  }();
  return *users;
}

// A 50/50 rollout over range(0) distinct users (1,000: units evaluated again and again, as in
// an application; 100,000: the first evaluations of new units), through `client`.
void Rollout(benchmark::State& state, gonfalon::sdk::Client& client, const char* flag) {
  const std::vector<Context>& users = Users();
  const size_t n = static_cast<size_t>(state.range(0));
  size_t i = state.thread_index() * n / 2;
  for (auto _ : state) {
    benchmark::DoNotOptimize(client.BoolVariation(users[i], flag, false));
    if (++i == n) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
void BM_SdkRollout5050(benchmark::State& state) { Rollout(state, TheClient(), "c-rollout"); }
BENCHMARK(BM_SdkRollout5050)->Arg(1000)->Arg(100000)->ThreadRange(1, 2)->UseRealTime();

// The same rollout as an experiment: each evaluation also records the unit's exposure (a hit
// in the thread's LRU for a unit already recorded in this flush interval).
void BM_SdkExperiment5050(benchmark::State& state) { Rollout(state, TheClient(), "d-experiment"); }
BENCHMARK(BM_SdkExperiment5050)->Arg(1000)->Arg(100000)->ThreadRange(1, 2)->UseRealTime();

// The same experiment flag through a client with events off (no counting, no exposures): the
// difference to BM_SdkExperiment5050 is what events cost an evaluation.
void BM_SdkExperiment5050EventsOff(benchmark::State& state) {
  static gonfalon::sdk::Client* client = [] {
    std::string path = (std::filesystem::temp_directory_path() / "gonfalon-sdk-bench-flags-off.json").string();
    std::ofstream(path) << kFlags;
    auto* c = new gonfalon::sdk::Client({.base_url = "http://127.0.0.1:9", .sdk_key = "gfs_bench", .cache_file = path,
                                         .send_events = false, .logger = [](auto, auto) {}});
    c->WaitForInitialization(std::chrono::milliseconds(200));
    return c;
  }();
  Rollout(state, *client, "d-experiment");
}
BENCHMARK(BM_SdkExperiment5050EventsOff)->Arg(1000)->ThreadRange(1, 2)->UseRealTime();

// ExposureLog::Record alone, for units already recorded in this interval (the common case):
// the hash of flag, kind and key and one probe of the thread's LRU.
void BM_ExposureRecordHit(benchmark::State& state) {
  static auto* log = new gonfalon::sdk::internal::ExposureLog(1'000'000);
  static const uint64_t flag_hash = gonfalon::sdk::internal::ExposureLog::FlagHash("d-experiment");
  std::vector<std::string> keys;
  for (int k = 0; k < state.range(0); ++k) keys.push_back("user-" + std::to_string(k));
  for (const auto& k : keys) log->Record(flag_hash, "d-experiment", 1, 1, "user", k);
  size_t i = 0;
  for (auto _ : state) {
    log->Record(flag_hash, "d-experiment", 1, 1, "user", keys[i]);
    if (++i == keys.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ExposureRecordHit)->Arg(1)->Arg(1000)->ThreadRange(1, 2)->UseRealTime();

// Track on the caller's thread: the client's buffer is taken and sent by the flusher when
// asked, after each run of 200,000 calls per thread (outside the timed loop), so the buffer
// never fills and no flusher competes for the CPU while Track is timed. (The server is
// unreachable: the flush is a refused connection, a retry a second later, and a drop.) Two
// warm-up intervals first touch both of the client's buffers, as an application's first
// intervals do: what is measured is the steady state, in memory already mapped.
void BM_SdkTrack(benchmark::State& state) {
  static gonfalon::sdk::Client* client = [] {
    auto* c = new gonfalon::sdk::Client({.base_url = "http://127.0.0.1:9", .sdk_key = "gfs_bench",
                                         .flush_interval = std::chrono::hours(1), .event_capacity = 500000,
                                         .logger = [](auto, auto) {}});
    for (int interval = 0; interval < 2; ++interval) {
      for (int n = 0; n < 400000; ++n) c->Track("purchase", Users()[n % 1000], 9.5);
      c->Flush();
    }
    return c;
  }();
  const std::vector<Context>& users = Users();
  size_t i = state.thread_index() * 500;
  for (auto _ : state) {
    client->Track("purchase", users[i], 9.5);
    if (++i == 1000) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) client->Flush();
}
BENCHMARK(BM_SdkTrack)->Iterations(200000)->ThreadRange(1, 2)->UseRealTime();

void BM_Propagation(benchmark::State& state) {
  using namespace gonfalon::e2e;
  using Ms = std::chrono::milliseconds;
  ServerProcess server;
  if (server.port() <= 0) {
    state.SkipWithError(("server did not start: " + server.output()).c_str());
    return;
  }
  int port = server.port();
  auto admin = [&](const std::string& method, const std::string& path, const std::string& body) {
    return Http(port, method, path, body, Bearer(kAdminToken));
  };
  admin("POST", "/api/v1/projects", R"({"key":"bench","environments":["production"]})");
  admin("POST", "/api/v1/projects/bench/flags", R"({"key":"rollout","variations":[false,true]})");
  auto key = admin("POST", "/api/v1/keys", R"({"kind":"server","project":"bench","environment":"production"})");
  auto parsed = gonfalon::rules::ParseJson(key.body);
  if (key.status != 201 || !parsed.ok() || !parsed->Find("secret")) {
    state.SkipWithError(("no SDK key: " + key.body).c_str());
    return;
  }
  gonfalon::sdk::Client client({.base_url = "http://127.0.0.1:" + std::to_string(port),
                                .sdk_key = parsed->Find("secret")->as_string(),
                                .send_events = false,
                                .logger = [](auto, auto) {}});
  if (!client.WaitForInitialization(Ms(10000))) {
    state.SkipWithError("the client did not initialize");
    return;
  }
  std::mutex mu;
  std::condition_variable cv;
  int64_t fired = 0;
  Clock::time_point fired_at;
  client.OnFlagChange([&](const std::string&) {
    auto now = Clock::now();
    std::lock_guard<std::mutex> lock(mu);
    ++fired;
    fired_at = now;
    cv.notify_all();
  });
  std::vector<double> micros;
  int64_t lost = 0;
  int weight = 0;
  for (auto _ : state) {
    weight = (weight + 997) % 100000;
    std::string body = R"({"on":true,"fallthrough":{"variation":null,"rollout":{"variations":[{"variation":0,"weight":)" +
                       std::to_string(weight) + R"(},{"variation":1,"weight":)" + std::to_string(100000 - weight) + "}]}}}";
    int64_t before;
    {
      std::lock_guard<std::mutex> lock(mu);
      before = fired;
    }
    auto sent_at = Clock::now();
    auto r = admin("PATCH", "/api/v1/projects/bench/environments/production/flags/rollout", body);
    if (r.status != 200) {
      state.SkipWithError(("admin write failed: " + r.body).c_str());
      return;
    }
    std::unique_lock<std::mutex> lock(mu);
    if (!cv.wait_for(lock, Ms(5000), [&] { return fired > before; })) {
      ++lost;
      state.SetIterationTime(5.0);
      continue;
    }
    double seconds = std::chrono::duration<double>(fired_at - sent_at).count();
    micros.push_back(seconds * 1e6);
    state.SetIterationTime(seconds);
  }
  std::sort(micros.begin(), micros.end());
  auto pct = [&](double p) { return micros.empty() ? 0.0 : micros[std::min(micros.size() - 1, static_cast<size_t>(p * micros.size()))]; };
  state.counters["p50_us"] = pct(0.50);
  state.counters["p99_us"] = pct(0.99);
  state.counters["max_us"] = micros.empty() ? 0.0 : micros.back();
  state.counters["lost"] = static_cast<double>(lost);
}
BENCHMARK(BM_Propagation)->Iterations(500)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
