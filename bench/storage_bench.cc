// Storage benchmarks (issue #3, docs/performance.md).
//   build/release/bench/storage_bench --benchmark_repetitions=3
// The database lives under $GONFALON_BENCH_DIR (default ./build/bench-data), on the disk that
// holds the data directory in production, because fsync cost is the point.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <condition_variable>
#include <mutex>
#include <atomic>
#include <thread>
#include <vector>

#include "gonfalon/rules/evaluator.h"
#include "gonfalon/storage/store.h"

namespace gonfalon::storage {
namespace {

using rules::Value;

std::string BenchDir(const std::string& name) {
  const char* base = std::getenv("GONFALON_BENCH_DIR");
  std::string dir = std::string(base ? base : "build/bench-data") + "/" + name;
  std::filesystem::remove_all(dir);
  return dir;
}

std::unique_ptr<Store> OpenShop(const std::string& name, bool sync, int flags,
                                int64_t wal_prefill_bytes = Options().wal_prefill_bytes) {
  auto store = std::move(*Store::Open({.path = BenchDir(name), .sync = sync, .wal_prefill_bytes = wal_prefill_bytes}));
  Actor a{"bench"};
  (void)store->CreateProject({.key = "shop"}, a);
  (void)store->CreateEnvironment("shop", {.key = "production"}, a);
  for (int i = 0; i < flags; ++i) {
    FlagMeta m;
    m.key = "flag-" + std::to_string(i);
    m.variations = {Value(false), Value(true)};
    (void)store->CreateFlag("shop", m, a, "");
  }
  return store;
}

ChangeSet Toggle(const std::string& flag, bool on) {
  ChangeSet cs;
  cs.project = "shop";
  cs.environment = "production";
  cs.actor = {"bench"};
  Value data(rules::Object{{"on", Value(on)}, {"fallthrough", Value(rules::Object{{"variation", Value(1)}})},
                           {"offVariation", Value(0)}});
  cs.items.push_back({ItemKind::kFlag, flag, std::nullopt, data, false});
  return cs;
}

// Per-thread acknowledgement latencies, merged for percentiles. Every access holds the lock,
// and thread 0 reads only after every thread of the run has added its own (WaitForAll): the
// threads leave the benchmark loop together, but add their latencies after it, each at its own
// pace (reading unlocked while another thread appended crashed about half of the runs).
struct Latencies {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<double> us;
  int added = 0;
  void Reset() {
    std::lock_guard<std::mutex> l(mu);
    us.clear();
    added = 0;
  }
  void Add(const std::vector<double>& v) {
    std::lock_guard<std::mutex> l(mu);
    us.insert(us.end(), v.begin(), v.end());
    ++added;
    cv.notify_all();
  }
  void WaitForAll(int threads) {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return added >= threads; });
  }
  double Percentile(double p) {
    std::lock_guard<std::mutex> l(mu);
    if (us.empty()) return 0;
    std::sort(us.begin(), us.end());
    return us[std::min(us.size() - 1, static_cast<size_t>(p * static_cast<double>(us.size())))];
  }
};

// Threads that keep every core busy while they live (a loaded server: fan-out, requests).
class BusyThreads {
 public:
  explicit BusyThreads(int n) {
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([this] {
        while (!stop_.load(std::memory_order_relaxed)) benchmark::DoNotOptimize(stop_);
      });
    }
  }
  ~BusyThreads() {
    stop_ = true;
    for (auto& t : threads_) t.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

// Single-flag change sets, `threads` writers each toggling its own flag in one environment;
// `busy` spinning threads beside them, and WAL files prefilled with `wal_prefill_bytes` zeros.
void RunWriters(benchmark::State& state, bool sync, int busy = 0,
                int64_t wal_prefill_bytes = Options().wal_prefill_bytes) {
  static std::unique_ptr<Store> store;
  static std::unique_ptr<BusyThreads> spinners;
  static Latencies lat;
  if (state.thread_index() == 0) {
    store.reset();  // the previous run's database, before its directory is reused
    store = OpenShop(sync ? "writers-sync" : "writers-nosync", sync, 8, wal_prefill_bytes);
    lat.Reset();
    spinners = std::make_unique<BusyThreads>(busy);
  }
  std::vector<double> mine;
  std::string flag = "flag-" + std::to_string(state.thread_index() % 8);
  bool on = false;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    auto r = store->Apply(Toggle(flag, on = !on));
    mine.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    if (!r.ok()) state.SkipWithError(std::string(r.status().message()).c_str());
  }
  lat.Add(mine);
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    lat.WaitForAll(state.threads());
    spinners.reset();
    state.counters["p50_us"] = lat.Percentile(0.5);
    state.counters["p99_us"] = lat.Percentile(0.99);
    // Closed here, with every thread done: a Store left to static destruction at exit would
    // close RocksDB after RocksDB's own statics are gone (free(): invalid pointer).
    store.reset();
  }
}

void BM_ChangeSetSynced(benchmark::State& state) { RunWriters(state, true); }
BENCHMARK(BM_ChangeSetSynced)->Threads(1)->Threads(8)->UseRealTime()->MinTime(2);

// One writer, synced: args are the busy threads beside it and the WAL prefill in MiB (0: plain
// appends, whose fdatasync must also write the file's new size; see storage/src/prefilled_wal.h).
void BM_ChangeSetSyncedWal(benchmark::State& state) {
  RunWriters(state, true, static_cast<int>(state.range(0)), state.range(1) << 20);
}
BENCHMARK(BM_ChangeSetSyncedWal)
    ->ArgNames({"busy", "prefill_mb"})
    ->Args({0, 0})
    ->Args({0, 8})
    ->Args({2, 0})
    ->Args({2, 8})
    ->UseRealTime()
    ->MinTime(2);

void BM_ChangeSetUnsynced(benchmark::State& state) { RunWriters(state, false); }
BENCHMARK(BM_ChangeSetUnsynced)->Threads(1)->Threads(8)->UseRealTime()->MinTime(2);

// Load a 10k-flag environment from RocksDB and compile its evaluation snapshot.
void BM_LoadAndCompile10kFlags(benchmark::State& state) {
  // Never destroyed (see RunWriters): released to the end of the process.
  static Store* store = OpenShop("load-10k", false, 10000).release();
  for (auto _ : state) {
    auto env = store->LoadEnvironment("shop", "production");
    if (!env.ok()) state.SkipWithError("load failed");
    auto snap = rules::Snapshot::Build(std::move(*env));
    benchmark::DoNotOptimize(snap);
  }
}
BENCHMARK(BM_LoadAndCompile10kFlags)->Unit(benchmark::kMillisecond)->MinTime(2);

// Read the 100 change sets after a sequence (a stream resuming).
void BM_ChangesSince100(benchmark::State& state) {
  static Store* store = [] {  // never destroyed (see RunWriters)
    auto s = OpenShop("changes", false, 1);
    for (int i = 0; i < 1000; ++i) (void)s->Apply(Toggle("flag-0", i % 2));
    return s.release();
  }();
  int64_t seq = *store->Sequence("shop", "production");
  for (auto _ : state) {
    auto changes = store->ChangesSince("shop", "production", seq - 100);
    if (!changes.ok() || changes->size() != 100) state.SkipWithError("wrong count");
    benchmark::DoNotOptimize(changes);
  }
}
BENCHMARK(BM_ChangesSince100)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace gonfalon::storage

BENCHMARK_MAIN();
