// What an environment costs in memory, part by part (issue #10, docs/performance.md):
//
//   GONFALON_SCALE_SAVE_PUT=/tmp/env.json build/release/bench/scale --flags 100000 --streams 0 --writes 0
//   build/release/bench/snapshot_memory /tmp/env.json           (as the SDK holds it)
//   build/release/bench/snapshot_memory /tmp/env.json --eager   (as the server holds it)
//   build/release/bench/snapshot_memory /tmp/env.json --threads=2   (decoding on two threads)
//
// Reads an environment's JSON (a `put` or polling body), then measures with mallinfo2 the heap
// each step keeps: the JSON text itself, the decoded model (rules::Environment), the compiled
// snapshot built from it (the model moves into the compiled items), and each item's encoded
// JSON once a payload has been assembled. With --eager the snapshot encodes each item's JSON
// as it compiles it and drops what only the JSON needs (rules::ItemJson::kEager), as the
// server's are. It also times decoding (ParseEnvironment, on --threads) and compiling (one
// thread). The figures are heap bytes in use (malloc's own
// overhead per block included), not RSS; the process's RSS is printed beside them.
#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>

#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/parallel_threads.h"
#include "gonfalon/rules/snapshot.h"
#include "gonfalon/rules/value.h"

namespace {

size_t HeapInUse() {
  struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;  // small blocks in the arenas + blocks mapped on their own
}

long RssKb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}

void Report(const char* what, size_t bytes, size_t flags) {
  std::printf("%-44s %8.1f MB  %6.0f B/flag   (RSS now %ld MB)\n", what, static_cast<double>(bytes) / 1e6,
              flags > 0 ? static_cast<double>(bytes) / static_cast<double>(flags) : 0.0, RssKb() / 1024);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace gonfalon::rules;
  bool eager = false;
  int threads = 1;
  bool usage = argc < 2;
  for (int i = 2; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--eager") {
      eager = true;
    } else if (a.rfind("--threads=", 0) == 0) {
      threads = std::atoi(argv[i] + 10);
      usage = usage || threads < 1;
    } else {
      usage = true;
    }
  }
  if (usage) {
    std::fprintf(stderr, "usage: %s ENVIRONMENT.json [--eager] [--threads=N]   (a put or polling body)\n", argv[0]);
    return 2;
  }
  size_t start = HeapInUse();
  std::string text;
  {
    std::ifstream in(argv[1], std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "cannot read %s\n", argv[1]);
      return 1;
    }
    in.seekg(0, std::ios::end);
    text.resize(static_cast<size_t>(in.tellg()));
    in.seekg(0);
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
  }
  size_t with_text = HeapInUse();
  auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<Environment> env = ParseEnvironment(text, {}, threads > 1 ? ThreadsParallelFor(threads) : ParallelFor());
  auto t1 = std::chrono::steady_clock::now();
  if (!env.ok()) {
    std::fprintf(stderr, "%s: %s\n", argv[1], std::string(env.status().message()).c_str());
    return 1;
  }
  size_t flags = env->flags.size();
  size_t rules = 0, clauses = 0;
  for (const auto& [key, f] : env->flags) {
    rules += f.rules.size();
    for (const FlagRule& r : f.rules) clauses += r.clauses.size();
  }
  std::printf("%s: %zu flags (%zu rules, %zu clauses), %zu segments, %.1f MB of JSON\n", argv[1], flags, rules, clauses,
              env->segments.size(), static_cast<double>(text.size()) / 1e6);
  std::printf("sizeof: Flag %zu, FlagRule %zu, Clause %zu, Value %zu, Segment %zu\n", sizeof(Flag), sizeof(FlagRule),
              sizeof(Clause), sizeof(Value), sizeof(Segment));
  size_t json_bytes = text.size();
  std::string().swap(text);  // frees it (assigning an empty string would keep the buffer)
  size_t model = HeapInUse();
  Report("the JSON text", with_text - start, flags);
  Report("decoded: the model (rules::Environment)", model - start, flags);
  auto t3 = std::chrono::steady_clock::now();
  std::shared_ptr<const Snapshot> snap = Snapshot::Build(std::move(*env), {}, eager ? ItemJson::kEager : ItemJson::kOnDemand);
  auto t4 = std::chrono::steady_clock::now();
  auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
  std::printf("time on %d thread(s): decode %.0f ms, compile %.0f ms\n", threads, ms(t1 - t0), ms(t4 - t3));
  env = Environment();
  size_t compiled = HeapInUse();
  Report(eager ? "compiled: the snapshot, model and JSON included" : "compiled: the snapshot, model included",
         compiled - start, flags);
  Report("  of which compiling added", compiled - model, flags);
  {
    std::string payload = snap->PayloadJson();  // encodes every item's JSON once and keeps it
    size_t with_payload = HeapInUse();
    Report("a payload assembled (kept by a `put`)", payload.capacity(), flags);
    Report("each item's JSON, kept by its compiled item", with_payload - compiled - payload.capacity(), flags);
  }
  size_t all = HeapInUse();
  Report("the snapshot with its items' JSON", all - start, flags);
  std::printf("that is %.2f x the environment's JSON\n", static_cast<double>(all - start) / static_cast<double>(json_bytes));
  malloc_trim(0);  // what parsing left free goes back to the system, as the server's trimmer does
  std::printf("RSS after malloc_trim: %ld MB\n", RssKb() / 1024);
  return 0;
}
