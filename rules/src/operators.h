#pragma once
// Clause operator primitives: semantic versions and dates (internal to rules).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gonfalon/rules/value.h"

namespace gonfalon::rules::internal {

// Semantic version 2.0.0, parsed leniently as LaunchDarkly does: "2" and "2.1" mean "2.0.0"
// and "2.1.0". Build metadata is parsed and ignored in comparisons.
struct SemVer {
  uint64_t major = 0, minor = 0, patch = 0;
  std::vector<std::string> prerelease;  // identifiers
};
std::optional<SemVer> ParseSemVer(std::string_view s);
// <0, 0, >0 by semver precedence.
int CompareSemVer(const SemVer& a, const SemVer& b);

// RFC 3339 date-time to Unix milliseconds (fractional part kept).
std::optional<double> ParseRfc3339(std::string_view s);
// A string in RFC 3339 or a number of Unix milliseconds.
std::optional<double> ToUnixMillis(const Value& v);

}  // namespace gonfalon::rules::internal
