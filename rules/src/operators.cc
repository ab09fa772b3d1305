#include "operators.h"

#include "gonfalon/rules/dates.h"

#include <cctype>

namespace gonfalon::rules::internal {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// A numeric identifier: digits, no leading zero unless it is "0".
std::optional<uint64_t> ParseNumericId(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  if (s.size() > 1 && s[0] == '0') return std::nullopt;
  uint64_t n = 0;
  for (char c : s) {
    if (!IsDigit(c)) return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  return n;
}

bool IsIdentChar(char c) {
  return IsDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}

bool AllDigits(std::string_view s) {
  for (char c : s) {
    if (!IsDigit(c)) return false;
  }
  return true;
}

// Dot-separated identifiers, each non-empty [0-9A-Za-z-]; numeric ones without leading zeros
// when `numeric_rule` (prerelease) applies.
bool SplitIdentifiers(std::string_view s, bool numeric_rule, std::vector<std::string>* out) {
  if (s.empty()) return false;
  size_t start = 0;
  while (true) {
    size_t dot = s.find('.', start);
    std::string_view id = s.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (id.empty()) return false;
    for (char c : id) {
      if (!IsIdentChar(c)) return false;
    }
    if (numeric_rule && AllDigits(id) && id.size() > 1 && id[0] == '0') return false;
    if (out != nullptr) out->emplace_back(id);
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

int DaysFromCivil(int y, unsigned m, unsigned d) {
  // Howard Hinnant's days_from_civil: days since 1970-01-01 in the proleptic Gregorian calendar.
  y -= m <= 2;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int>(doe) - 719468;
}

bool ReadFixed(std::string_view s, size_t pos, size_t len, int& out) {
  if (pos + len > s.size()) return false;
  int n = 0;
  for (size_t i = pos; i < pos + len; ++i) {
    if (!IsDigit(s[i])) return false;
    n = n * 10 + (s[i] - '0');
  }
  out = n;
  return true;
}

}  // namespace

std::optional<SemVer> ParseSemVer(std::string_view s) {
  // Split off build metadata, then the prerelease.
  std::string_view core = s;
  size_t plus = core.find('+');
  if (plus != std::string_view::npos) {
    if (!SplitIdentifiers(core.substr(plus + 1), false, nullptr)) return std::nullopt;
    core = core.substr(0, plus);
  }
  SemVer v;
  size_t dash = core.find('-');
  if (dash != std::string_view::npos) {
    if (!SplitIdentifiers(core.substr(dash + 1), true, &v.prerelease)) return std::nullopt;
    core = core.substr(0, dash);
  }
  uint64_t* parts[3] = {&v.major, &v.minor, &v.patch};
  size_t start = 0;
  for (int i = 0; i < 3; ++i) {
    size_t dot = core.find('.', start);
    std::string_view part = core.substr(start, dot == std::string_view::npos ? dot : dot - start);
    std::optional<uint64_t> n = ParseNumericId(part);
    if (!n.has_value()) return std::nullopt;
    *parts[i] = *n;
    if (dot == std::string_view::npos) return v;  // missing minor/patch mean 0
    if (i == 2) return std::nullopt;              // a fourth component
    start = dot + 1;
  }
  return v;
}

int CompareSemVer(const SemVer& a, const SemVer& b) {
  auto cmp = [](uint64_t x, uint64_t y) { return x < y ? -1 : (x > y ? 1 : 0); };
  if (int c = cmp(a.major, b.major)) return c;
  if (int c = cmp(a.minor, b.minor)) return c;
  if (int c = cmp(a.patch, b.patch)) return c;
  // A version without prerelease ranks above one with.
  if (a.prerelease.empty() || b.prerelease.empty()) {
    return a.prerelease.empty() == b.prerelease.empty() ? 0 : (a.prerelease.empty() ? 1 : -1);
  }
  size_t n = std::min(a.prerelease.size(), b.prerelease.size());
  for (size_t i = 0; i < n; ++i) {
    const std::string& x = a.prerelease[i];
    const std::string& y = b.prerelease[i];
    bool xn = AllDigits(x), yn = AllDigits(y);
    if (xn && yn) {
      // No leading zeros, so longer means larger.
      if (x.size() != y.size()) return x.size() < y.size() ? -1 : 1;
      if (int c = x.compare(y)) return c < 0 ? -1 : 1;
    } else if (xn != yn) {
      return xn ? -1 : 1;  // numeric identifiers rank below alphanumeric ones
    } else if (int c = x.compare(y)) {
      return c < 0 ? -1 : 1;
    }
  }
  return cmp(a.prerelease.size(), b.prerelease.size());
}

std::optional<double> ParseRfc3339(std::string_view s) {
  // YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)
  int year, month, day, hour, minute, second;
  if (!ReadFixed(s, 0, 4, year) || s.size() < 20 || s[4] != '-' || !ReadFixed(s, 5, 2, month) ||
      s[7] != '-' || !ReadFixed(s, 8, 2, day) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
      !ReadFixed(s, 11, 2, hour) || s[13] != ':' || !ReadFixed(s, 14, 2, minute) ||
      s[16] != ':' || !ReadFixed(s, 17, 2, second)) {
    return std::nullopt;
  }
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12 || day < 1 || day > kDays[month - 1] || hour > 23 || minute > 59 ||
      second > 60) {
    return std::nullopt;
  }
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (month == 2 && day == 29 && !leap) return std::nullopt;
  size_t pos = 19;
  // Fractional seconds as an integer count of 10^-digits seconds (first 9 digits), so that
  // ".123" is exactly 123 ms.
  double fraction_ms = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    uint64_t frac = 0;
    double denom = 1;
    size_t digits = 0;
    while (pos < s.size() && IsDigit(s[pos])) {
      if (digits < 9) {
        frac = frac * 10 + static_cast<uint64_t>(s[pos] - '0');
        denom *= 10;
      }
      ++pos;
      ++digits;
    }
    if (digits == 0) return std::nullopt;
    fraction_ms = static_cast<double>(frac) * 1000.0 / denom;
  }
  if (pos >= s.size()) return std::nullopt;
  int offset_minutes = 0;
  if (s[pos] == 'Z' || s[pos] == 'z') {
    ++pos;
  } else if (s[pos] == '+' || s[pos] == '-') {
    int oh, om;
    if (!ReadFixed(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
        !ReadFixed(s, pos + 4, 2, om) || oh > 23 || om > 59) {
      return std::nullopt;
    }
    offset_minutes = (oh * 60 + om) * (s[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  double days = DaysFromCivil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  double secs = days * 86400.0 + hour * 3600.0 + minute * 60.0 + second - offset_minutes * 60.0;
  return secs * 1000.0 + fraction_ms;
}

std::optional<double> ToUnixMillis(const Value& v) {
  if (v.is_number()) return v.as_number();
  if (v.is_string()) return ParseRfc3339(v.as_string());
  return std::nullopt;
}

}  // namespace gonfalon::rules::internal

namespace gonfalon::rules {
std::optional<double> ParseRfc3339Millis(std::string_view s) { return internal::ParseRfc3339(s); }
}  // namespace gonfalon::rules
