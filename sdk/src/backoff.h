#pragma once
// Reconnection delays: exponential from `initial` to `max`, with jitter (each delay is drawn
// from [delay/2, delay]), reset to `initial` after a connection has stayed up `reset_after`.
// Overflow-free however many attempts: the exponent stops growing once `max` is reached.

#include <chrono>
#include <cstdint>
#include <random>

namespace gonfalon::sdk::internal {

class Backoff {
 public:
  using ms = std::chrono::milliseconds;
  Backoff(ms initial, ms max, ms reset_after, uint64_t seed = std::random_device{}())
      : initial_(initial), max_(max), reset_after_(reset_after), rng_(seed) {}

  // The delay before the next attempt.
  ms Next() {
    ms base = initial_;
    for (int i = 0; i < attempts_ && base < max_; ++i) base *= 2;  // at most log2(max/initial) steps
    if (base > max_) base = max_;
    if (attempts_ < 64) ++attempts_;
    std::uniform_int_distribution<int64_t> jitter(base.count() / 2, base.count());
    return ms(jitter(rng_));
  }
  // A connection succeeded and lasted `up_for`: a stable one resets the schedule.
  void Connected(ms up_for) {
    if (up_for >= reset_after_) attempts_ = 0;
  }
  int attempts() const { return attempts_; }

 private:
  ms initial_, max_, reset_after_;
  int attempts_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace gonfalon::sdk::internal
