#pragma once
// Dates as the `before`/`after` operators read them, for callers outside the evaluator
// (the admin API's restore-to-time).

#include <optional>
#include <string_view>

namespace gonfalon::rules {

// RFC 3339 date-time ("2024-05-01T12:00:00Z", "...+02:00", fractional seconds) to Unix
// milliseconds; nullopt if it is not one.
std::optional<double> ParseRfc3339Millis(std::string_view s);

}  // namespace gonfalon::rules
