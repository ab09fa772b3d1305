#include "memory_trimmer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "wait_for.h"

namespace gonfalon::server {
namespace {

using namespace std::chrono_literals;

TEST(MemoryTrimmerTest, RequestsInABurstCoalesceAndTrimsKeepTheirInterval) {
  MemoryTrimmer trimmer(std::chrono::milliseconds(300));
  EXPECT_EQ(trimmer.trims(), 0u);
  auto start = std::chrono::steady_clock::now();
  trimmer.Request();
  ASSERT_TRUE(WaitFor([&] { return trimmer.trims() >= 1; }, 10s));
  // Requests during the interval coalesce into one more trim, run once the interval is over:
  // at least 300 ms after the first trim, which ran after `start`.
  for (int i = 0; i < 100; ++i) trimmer.Request();
  ASSERT_TRUE(WaitFor([&] { return trimmer.trims() >= 2; }, 10s));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 300ms);
  EXPECT_EQ(trimmer.trims(), 2u);
}

TEST(MemoryTrimmerTest, WithoutRequestsNothingRunsAndDestructionDoesNotWait) {
  auto start = std::chrono::steady_clock::now();
  {
    MemoryTrimmer trimmer(std::chrono::hours(1));
    trimmer.Request();
    ASSERT_TRUE(WaitFor([&] { return trimmer.trims() == 1; }, 10s));
    trimmer.Request();  // waits out the hour unless destruction stops it
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST(BurstWatchTest, ABurstEndsAtTheFirstQuietSampleAndATrickleIsNoBurst) {
  BurstWatch watch(50);
  // A trickle: one change set a sample, a quiet sample now and then: never a burst.
  uint64_t total = 0;
  for (int i = 0; i < 200; ++i) {
    if (i % 3 != 2) ++total;
    EXPECT_FALSE(watch.Sample(total)) << i;
  }
  // 60 change sets over four busy samples, then quiet: the burst ends there, once.
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(watch.Sample(total += 15));
  EXPECT_TRUE(watch.Sample(total));
  EXPECT_FALSE(watch.Sample(total));
  // 49 between quiet samples is below the threshold; 50 in one sample is not.
  EXPECT_FALSE(watch.Sample(total += 49));
  EXPECT_FALSE(watch.Sample(total));
  EXPECT_FALSE(watch.Sample(total += 50));
  EXPECT_TRUE(watch.Sample(total));
}

TEST(MemoryTrimmerTest, EachTrimIsCounted) {
  std::atomic<uint64_t> counted{0};
  MemoryTrimmer trimmer(std::chrono::milliseconds(10), &counted);
  trimmer.Request();
  ASSERT_TRUE(WaitFor([&] { return counted.load() == 1; }, 10s));
  EXPECT_EQ(trimmer.trims(), 1u);
}

}  // namespace
}  // namespace gonfalon::server
