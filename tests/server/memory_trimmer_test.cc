#include "memory_trimmer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace gonfalon::server {
namespace {

using namespace std::chrono_literals;

bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

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

}  // namespace
}  // namespace gonfalon::server
