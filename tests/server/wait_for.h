#pragma once
// Waiting on a condition with a deadline, for tests of the server's threads (never a sleep
// and then an assertion).
//
//   ASSERT_TRUE(WaitFor([&] { return trimmer.trims() >= 1; }));

#include <chrono>
#include <thread>

namespace gonfalon::server {

// Polls `pred` every 5 ms until it holds (true) or `timeout` has passed (false; `pred` is
// asked once more at the deadline).
template <typename Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling a condition with a deadline
  }
  return pred();
}

}  // namespace gonfalon::server
