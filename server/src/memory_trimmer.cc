#include "memory_trimmer.h"

#include <malloc.h>

namespace gonfalon::server {

MemoryTrimmer::MemoryTrimmer(std::chrono::milliseconds interval, std::atomic<uint64_t>* counted)
    : interval_(interval), counted_(counted) {
  thread_ = std::thread([this] { Loop(); });
}

MemoryTrimmer::~MemoryTrimmer() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void MemoryTrimmer::Request() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (pending_) return;
    pending_ = true;
  }
  cv_.notify_all();
}

uint64_t MemoryTrimmer::trims() const {
  std::lock_guard<std::mutex> l(mu_);
  return trims_;
}

void MemoryTrimmer::Loop() {
  std::unique_lock<std::mutex> l(mu_);
  while (true) {
    cv_.wait(l, [&] { return stop_ || pending_; });
    if (stop_) return;
    pending_ = false;
    l.unlock();
    malloc_trim(0);
    l.lock();
    ++trims_;
    if (counted_ != nullptr) counted_->fetch_add(1, std::memory_order_relaxed);
    // Requests that arrive meanwhile wait for the next round, one interval on.
    cv_.wait_for(l, interval_, [&] { return stop_; });
  }
}

}  // namespace gonfalon::server
