#pragma once
// Counts heap allocations in a benchmark binary: include from exactly one .cc, which then
// replaces global operator new. Benchmarks report allocations per evaluation from it.

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace gonfalon::bench {
inline std::atomic<uint64_t> g_allocations{0};
inline uint64_t Allocations() { return g_allocations.load(std::memory_order_relaxed); }
}  // namespace gonfalon::bench

void* operator new(std::size_t n) {
  gonfalon::bench::g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
