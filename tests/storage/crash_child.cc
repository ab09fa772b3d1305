// Child process of the crash test: applies 3-segment change sets to the store in argv[1] with
// synced writes and prints "ack <sequence> <n>" after each one is acknowledged, until it is
// killed (or, to stay bounded, after 20,000 change sets or 60 s).
#include <chrono>
#include <cstdio>
#include <string>

#include "gonfalon/storage/store.h"

using namespace gonfalon;

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  auto opened = storage::Store::Open({.path = argv[1], .sync = true});
  if (!opened.ok()) {
    std::fprintf(stderr, "open: %s\n", std::string(opened.status().message()).c_str());
    return 1;
  }
  storage::Store& store = **opened;
  storage::Actor actor{"crash-child"};
  if (!store.GetProject("p").ok()) {
    if (!store.CreateProject({.key = "p"}, actor).ok()) return 1;
  }
  if (!store.GetEnvironment("p", "e").ok()) {
    if (!store.CreateEnvironment("p", {.key = "e"}, actor).ok()) return 1;
  }
  // Continue the counter from what is stored.
  int64_t n = 0;
  if (auto a = store.GetSegment("p", "e", "a"); a.ok() && !a->included.empty()) {
    n = std::stoll(a->included[0]);
  }
  std::printf("ready %lld\n", static_cast<long long>(n));
  std::fflush(stdout);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (int i = 0; i < 20000 && std::chrono::steady_clock::now() < deadline; ++i) {
    ++n;
    storage::ChangeSet cs;
    cs.project = "p";
    cs.environment = "e";
    cs.actor = actor;
    for (const char* key : {"a", "b", "c"}) {
      rules::Value data(rules::Object{{"included", rules::Value(rules::Array{rules::Value(std::to_string(n))})}});
      cs.items.push_back({storage::ItemKind::kSegment, key, std::nullopt, data, false});
    }
    auto applied = store.Apply(cs);
    if (!applied.ok()) {
      std::fprintf(stderr, "apply: %s\n", std::string(applied.status().message()).c_str());
      return 1;
    }
    std::printf("ack %lld %lld\n", static_cast<long long>(applied->sequence), static_cast<long long>(n));
    std::fflush(stdout);
  }
  return 0;
}
