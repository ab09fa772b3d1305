#pragma once
// ASSERT_OK / EXPECT_OK for absl::Status and absl::StatusOr: on failure they print the status
// (Debian's Abseil 20220623 ships no status matchers).
//
//   ASSERT_OK(store->Apply(cs));

#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "absl/status/statusor.h"

namespace gonfalon::testing {

inline std::string StatusText(const absl::Status& s) {
  std::ostringstream out;
  out << s;
  return out.str();
}
template <typename T>
std::string StatusText(const absl::StatusOr<T>& s) {
  return StatusText(s.status());
}

}  // namespace gonfalon::testing

#define GONFALON_STATUS_CHECK(check, expr)                                        \
  do {                                                                            \
    const auto& gonfalon_checked_ = (expr);                                       \
    check(gonfalon_checked_.ok()) << ::gonfalon::testing::StatusText(gonfalon_checked_); \
  } while (0)
#define ASSERT_OK(expr) GONFALON_STATUS_CHECK(ASSERT_TRUE, expr)
#define EXPECT_OK(expr) GONFALON_STATUS_CHECK(EXPECT_TRUE, expr)
