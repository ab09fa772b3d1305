// The periodic history prune: it runs every interval, counts its runs and failures, and a
// failure (a storage error) is retried at the next run.
#include "history_pruner.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "faulty_store.h"
#include "gonfalon/rules/str_cat.h"
#include "status_testing.h"
#include "wait_for.h"

namespace gonfalon::server {
namespace {

using namespace std::chrono_literals;

TEST(HistoryPrunerTest, RunsEveryIntervalAndAFailedRunIsCountedAndRetried) {
  auto dir = std::filesystem::temp_directory_path() / StrCat("gonfalon-pruner-", ::getpid());
  std::filesystem::remove_all(dir);
  ASSERT_OK_AND_ASSIGN(auto real, storage::Store::Open({.path = dir.string(), .sync = false, .min_free_bytes = 0}));
  storage::FaultyStore store(*real);
  store.Fail("PruneHistory", absl::ResourceExhaustedError("disk full"));
  std::atomic<uint64_t> runs{0}, failures{0};
  {
    HistoryPruner pruner(store, 20ms, runs, failures);
    ASSERT_TRUE(WaitFor([&] { return failures.load() >= 2; }, 10s));
    store.Heal("PruneHistory");
    uint64_t failed = failures.load();
    // Runs that succeeded: the count goes on once healed (a failed run counts its failure
    // first, so the difference may lag by one while it is being counted, never lead).
    auto succeeded = [&] { return static_cast<int64_t>(runs.load()) - static_cast<int64_t>(failures.load()); };
    ASSERT_TRUE(WaitFor([&] { return succeeded() >= 2; }, 10s));
    EXPECT_LE(failures.load(), failed + 1);  // at most the run in progress when healed
  }
  real.reset();
  std::filesystem::remove_all(dir);
}

TEST(HistoryPrunerTest, StopsWithoutWaitingForTheInterval) {
  auto dir = std::filesystem::temp_directory_path() / StrCat("gonfalon-pruner-stop-", ::getpid());
  std::filesystem::remove_all(dir);
  ASSERT_OK_AND_ASSIGN(auto real, storage::Store::Open({.path = dir.string(), .sync = false, .min_free_bytes = 0}));
  std::atomic<uint64_t> runs{0}, failures{0};
  auto start = std::chrono::steady_clock::now();
  { HistoryPruner pruner(*real, std::chrono::hours(1), runs, failures); }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_EQ(runs.load(), 0u);
  real.reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace gonfalon::server
