#include "log.h"

#include <unistd.h>

#include "gonfalon/rules/value.h"

namespace gonfalon::server {
namespace {
std::string_view LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}
}  // namespace

std::string FormatLogLine(LogLevel level, std::string_view msg, std::initializer_list<LogField> fields) {
  std::string line = "{\"level\":\"";
  line += LevelName(level);
  line += "\",\"msg\":";
  rules::AppendJsonString(msg, line);
  for (const LogField& f : fields) {
    line += ',';
    rules::AppendJsonString(f.name, line);
    line += ':';
    if (const auto* s = std::get_if<std::string_view>(&f.value)) {
      rules::AppendJsonString(*s, line);
    } else if (const auto* i = std::get_if<int64_t>(&f.value)) {
      line += std::to_string(*i);
    } else {
      rules::AppendJsonNumber(std::get<double>(f.value), line);
    }
  }
  line += '}';
  return line;
}

void Log(LogLevel level, std::string_view msg, std::initializer_list<LogField> fields) {
  std::string line = FormatLogLine(level, msg, fields);
  line += '\n';
  // One write per line: lines from several threads never interleave.
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

}  // namespace gonfalon::server
