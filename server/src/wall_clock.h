#pragma once
// The wall clock as the server keeps times (stored records, events, expiries): Unix
// milliseconds.

#include <chrono>
#include <cstdint>
#include <ctime>
#include <string>

namespace gonfalon::server {

inline int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The UTC day of a time, "2026-12-01".
inline std::string UtcDay(int64_t ms) {
  time_t t = static_cast<time_t>(ms / 1000);
  tm utc{};
  gmtime_r(&t, &utc);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &utc);
  return buf;
}

}  // namespace gonfalon::server
