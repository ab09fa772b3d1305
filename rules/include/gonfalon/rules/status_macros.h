#pragma once
// The two Status macros Debian's Abseil (20220623) does not ship.
//
//   RETURN_IF_ERROR(DoThing());
//   ASSIGN_OR_RETURN(Foo foo, MakeFoo());

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define GONFALON_STATUS_CONCAT_INNER(a, b) a##b
#define GONFALON_STATUS_CONCAT(a, b) GONFALON_STATUS_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                          \
  do {                                                 \
    ::absl::Status gonfalon_status_ = (expr);          \
    if (!gonfalon_status_.ok()) return gonfalon_status_; \
  } while (0)

#define GONFALON_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return tmp.status();                  \
  lhs = std::move(*tmp)

#define ASSIGN_OR_RETURN(lhs, expr) \
  GONFALON_ASSIGN_OR_RETURN_IMPL(GONFALON_STATUS_CONCAT(statusor_, __LINE__), lhs, expr)
