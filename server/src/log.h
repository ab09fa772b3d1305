#pragma once
// The server's log: one JSON object per line on stderr, every field escaped (request data
// such as paths and error messages cannot break or forge a line).
//
//   Log(LogLevel::kError, "publish failed", {{"environment", key}, {"error", status.message()}});
//   -> {"level":"error","msg":"publish failed","environment":"shop/production","error":"..."}
//
// Thread safety: any thread; each line is written with one call, so lines never interleave.

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace gonfalon::server {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

// A field's value: text (escaped as a JSON string) or a number.
using LogValue = std::variant<std::string_view, int64_t, double>;
struct LogField {
  std::string_view name;
  LogValue value;
  LogField(std::string_view n, std::string_view v) : name(n), value(v) {}
  LogField(std::string_view n, const std::string& v) : name(n), value(std::string_view(v)) {}
  LogField(std::string_view n, const char* v) : name(n), value(std::string_view(v)) {}
  LogField(std::string_view n, int64_t v) : name(n), value(v) {}
  LogField(std::string_view n, int v) : name(n), value(static_cast<int64_t>(v)) {}
  LogField(std::string_view n, double v) : name(n), value(v) {}
};

// The line as written (without the newline); exposed for tests.
std::string FormatLogLine(LogLevel level, std::string_view msg, std::initializer_list<LogField> fields);
void Log(LogLevel level, std::string_view msg, std::initializer_list<LogField> fields = {});

}  // namespace gonfalon::server
