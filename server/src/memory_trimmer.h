#pragma once
// Hands memory that malloc keeps free back to the system after large writes.
//
// A write of a large body (a big segment, many flags at once) leaves its parse buffers and copies
// free in malloc's arenas, which glibc keeps: 40 PATCHes of a 1 MB segment held ~90 MB that way.
// Request() asks for a malloc_trim; a thread of its own runs one soon after, at most once per
// `interval` (a trim walks the arenas under their locks), and always once after the last request,
// so memory settles within `interval` of the last large write. Mapping large blocks instead
// (M_MMAP_THRESHOLD) would cost every change set's snapshot vectors a page fault per page:
// writes/s fell by 30 % at 100,000 flags (docs/performance.md, "Large items").
//
// A burst of change sets leaves the same behind (each one's request, decoded items, compiled
// snapshot and stream buffers): BurstWatch tells the HTTP server's sweep when one has ended.
// So do slow streams catching up (the events their queues kept alive): the sweep watches the
// bytes written from those queues the same way.
//
// Thread safety: Request() from any thread; it never blocks.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace gonfalon::server {

class MemoryTrimmer {
 public:
  // `counted`, when given, is incremented after each trim (a metric).
  explicit MemoryTrimmer(std::chrono::milliseconds interval = std::chrono::seconds(1),
                         std::atomic<uint64_t>* counted = nullptr);
  ~MemoryTrimmer();
  MemoryTrimmer(const MemoryTrimmer&) = delete;
  MemoryTrimmer& operator=(const MemoryTrimmer&) = delete;

  void Request();
  // Trims run so far (for tests and metrics).
  uint64_t trims() const;

 private:
  void Loop();

  const std::chrono::milliseconds interval_;
  std::atomic<uint64_t>* const counted_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool pending_ = false;  // REQUIRES: mu_
  bool stop_ = false;     // REQUIRES: mu_
  uint64_t trims_ = 0;    // REQUIRES: mu_
  std::thread thread_;
};

// Watches the running count of change sets published, sampled at a steady period: a burst is
// `threshold` change sets or more published with no quiet sample (none published since the
// previous one) in between, and it ends at the first quiet sample. Not thread-safe: one caller.
class BurstWatch {
 public:
  explicit BurstWatch(uint64_t threshold) : threshold_(threshold) {}
  // True when the burst just ended.
  bool Sample(uint64_t published_total) {
    if (published_total != last_) {
      run_ += published_total - last_;
      last_ = published_total;
      return false;
    }
    bool ended = run_ >= threshold_;
    run_ = 0;
    return ended;
  }

 private:
  const uint64_t threshold_;
  uint64_t last_ = 0;
  uint64_t run_ = 0;  // published since the last quiet sample
};

}  // namespace gonfalon::server
