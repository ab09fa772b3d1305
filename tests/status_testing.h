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

// ASSERT_OK_AND_ASSIGN(T x, expr): asserts that the StatusOr `expr` is ok (printing its status
// otherwise) and declares x from its value.
#define GONFALON_CONCAT_INNER(a, b) a##b
#define GONFALON_CONCAT(a, b) GONFALON_CONCAT_INNER(a, b)
#define ASSERT_OK_AND_ASSIGN(decl, expr) \
  GONFALON_ASSERT_OK_AND_ASSIGN_IMPL(GONFALON_CONCAT(gonfalon_statusor_, __LINE__), decl, expr)
#define GONFALON_ASSERT_OK_AND_ASSIGN_IMPL(var, decl, expr)                   \
  auto var = (expr);                                                          \
  ASSERT_TRUE(var.ok()) << ::gonfalon::testing::StatusText(var);              \
  decl = std::move(*var)
