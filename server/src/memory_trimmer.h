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
// Thread safety: Request() from any thread; it never blocks.

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace gonfalon::server {

class MemoryTrimmer {
 public:
  explicit MemoryTrimmer(std::chrono::milliseconds interval = std::chrono::seconds(1));
  ~MemoryTrimmer();
  MemoryTrimmer(const MemoryTrimmer&) = delete;
  MemoryTrimmer& operator=(const MemoryTrimmer&) = delete;

  void Request();
  // Trims run so far (for tests and metrics).
  uint64_t trims() const;

 private:
  void Loop();

  const std::chrono::milliseconds interval_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool pending_ = false;  // REQUIRES: mu_
  bool stop_ = false;     // REQUIRES: mu_
  uint64_t trims_ = 0;    // REQUIRES: mu_
  std::thread thread_;
};

}  // namespace gonfalon::server
