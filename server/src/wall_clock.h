#pragma once
// The wall clock as the server keeps times (stored records, events, expiries): Unix
// milliseconds.

#include <chrono>
#include <cstdint>

namespace gonfalon::server {

inline int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace gonfalon::server
