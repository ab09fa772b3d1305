#include "sse_parser.h"

#include <charconv>
#include <cstring>

namespace gonfalon::sdk::internal {

void SseParser::Feed(std::string_view bytes) {
  // Line ends are searched with memchr, and the bytes between copied in one piece: a `put` is
  // one data line of tens of MB.
  const char* p = bytes.data();
  const char* end = p + bytes.size();
  while (p < end) {
    if (skip_lf_) {
      skip_lf_ = false;
      if (*p == '\n') {
        ++p;
        continue;
      }
    }
    size_t left = static_cast<size_t>(end - p);
    const char* lf = static_cast<const char*>(std::memchr(p, '\n', left));
    const char* cr = static_cast<const char*>(std::memchr(p, '\r', lf != nullptr ? static_cast<size_t>(lf - p) : left));
    const char* eol = cr != nullptr ? cr : lf;
    if (eol == nullptr) {
      line_.append(p, left);
      return;
    }
    line_.append(p, static_cast<size_t>(eol - p));
    skip_lf_ = *eol == '\r';
    Line(line_);
    line_.clear();
    p = eol + 1;
  }
}

void SseParser::Line(std::string_view line) {
  if (line.empty()) {
    // Dispatch.
    if (has_data_) {
      SseEvent e;
      e.type = type_.empty() ? "message" : type_;
      e.data = std::move(data_);
      e.id = last_id_;
      on_event_(e);
    }
    type_.clear();
    data_.clear();
    has_data_ = false;
    return;
  }
  if (line[0] == ':') {
    if (on_comment_) on_comment_(line.substr(line.size() > 1 && line[1] == ' ' ? 2 : 1));
    return;
  }
  size_t colon = line.find(':');
  std::string_view field = line.substr(0, colon);
  std::string_view value;
  if (colon != std::string_view::npos) {
    value = line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  }
  if (field == "event") {
    type_ = std::string(value);
  } else if (field == "data") {
    if (has_data_) data_.push_back('\n');
    data_.append(value);
    has_data_ = true;
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) last_id_ = std::string(value);
  } else if (field == "retry") {
    int64_t ms = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), ms);
    if (!value.empty() && value.size() < 12 && ec == std::errc() && end == value.data() + value.size() && ms >= 0) {
      retry_ms_ = ms;
    }
  }
  // Other fields are ignored.
}

}  // namespace gonfalon::sdk::internal
