// The SDK's per-unit exposure log: each (flag, variation, unit) once per interval, a bounded
// per-thread LRU in front, exact across threads, bounded in what it holds.
#include "exposure_log.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <thread>

namespace gonfalon::sdk::internal {
namespace {

std::set<std::string> Keys(const std::vector<UnitExposureEvent>& events) {
  std::set<std::string> out;
  for (const auto& e : events) out.insert(e.flag + "/" + std::to_string(e.variation) + "/" + e.unit_kind + ":" + e.unit_key);
  return out;
}

TEST(ExposureLogTest, EachExposureOncePerIntervalAndAgainInTheNext) {
  ExposureLog log(1000);
  for (int i = 0; i < 50; ++i) {
    log.Record(ExposureLog::FlagHash("checkout"), "checkout", 1, 3, "user", "alice");
    log.Record(ExposureLog::FlagHash("checkout"), "checkout", 1, 3, "user", "bob");
  }
  log.Record(ExposureLog::FlagHash("checkout"), "checkout", 0, 4, "user", "alice");  // another variation: a new exposure
  log.Record(ExposureLog::FlagHash("banner"), "banner", 1, 1, "org", "alice");
  int64_t dropped = 0;
  std::vector<UnitExposureEvent> first = log.Drain(dropped);
  EXPECT_EQ(Keys(first), (std::set<std::string>{"checkout/1/user:alice", "checkout/1/user:bob", "checkout/0/user:alice",
                                                 "banner/1/org:alice"}));
  EXPECT_EQ(dropped, 0);
  EXPECT_GT(first[0].time_ms, 0);
  EXPECT_TRUE(log.Drain(dropped).empty());  // nothing new
  log.Record(ExposureLog::FlagHash("checkout"), "checkout", 1, 3, "user", "alice");
  EXPECT_EQ(Keys(log.Drain(dropped)), (std::set<std::string>{"checkout/1/user:alice"}));
}

TEST(ExposureLogTest, TheCacheIsBoundedAndEvictsTheLeastRecentlyUsed) {
  ExposureLog log(1'000'000);
  // Far more units than the cache holds: the first ones are evicted and sent again when seen
  // again within the interval (the server keeps the first exposure); the most recent are not.
  const int n = static_cast<int>(ExposureLog::kSets * ExposureLog::kWays) * 4;
  for (int i = 0; i < n; ++i) log.Record(ExposureLog::FlagHash("f"), "f", 0, 1, "user", "u" + std::to_string(i));
  int64_t dropped = 0;
  EXPECT_EQ(log.Drain(dropped).size(), static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) log.Record(ExposureLog::FlagHash("f"), "f", 0, 1, "user", "u" + std::to_string(i));
  for (int i = n - 100; i < n; ++i) log.Record(ExposureLog::FlagHash("f"), "f", 0, 1, "user", "u" + std::to_string(i));  // recent: cached
  EXPECT_EQ(log.Drain(dropped).size(), static_cast<size_t>(n));
}

TEST(ExposureLogTest, OverCapacityExposuresAreDroppedAndCounted) {
  ExposureLog log(10);
  for (int i = 0; i < 25; ++i) log.Record(ExposureLog::FlagHash("f"), "f", 0, 1, "user", "u" + std::to_string(i));
  int64_t dropped = 0;
  EXPECT_EQ(log.Drain(dropped).size(), 10u);
  EXPECT_EQ(dropped, 15);
  log.Record(ExposureLog::FlagHash("f"), "f", 0, 1, "user", "later");  // room again after the drain
  EXPECT_EQ(log.Drain(dropped).size(), 1u);
  EXPECT_EQ(dropped, 15);
}

TEST(ExposureLogTest, ThreadsRecordingTheSameUnitsAreSentOnce) {
  ExposureLog log(100000);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) log.Record(ExposureLog::FlagHash("f"), "f", i % 2, 1, "user", "u" + std::to_string(i));
    });
  }
  for (auto& t : threads) t.join();
  int64_t dropped = 0;
  EXPECT_EQ(log.Drain(dropped).size(), 1000u);
}

}  // namespace
}  // namespace gonfalon::sdk::internal
