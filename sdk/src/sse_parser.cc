#include "sse_parser.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <new>

namespace gonfalon::sdk::internal {

void GrowableBuffer::Append(std::string_view bytes) {
  if (size_ + bytes.size() + kPadding > capacity_) {
    size_t want = std::max({size_ + bytes.size() + kPadding, capacity_ * 2, size_t{256}});
    void* grown = std::realloc(data_, want);
    if (grown == nullptr) throw std::bad_alloc();  // as std::string would
    data_ = static_cast<char*>(grown);
    capacity_ = want;
  }
  if (!bytes.empty()) std::memcpy(data_ + size_, bytes.data(), bytes.size());
  size_ += bytes.size();
}

void GrowableBuffer::ShrinkIfLarge() {
  if (capacity_ <= 64 * 1024) return;
  std::free(data_);
  data_ = nullptr;
  size_ = capacity_ = 0;
}

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
      line_.Append(std::string_view(p, left));
      return;
    }
    skip_lf_ = *eol == '\r';
    if (line_.size() == 0) {
      Line(std::string_view(p, static_cast<size_t>(eol - p)));  // a whole line in this chunk
    } else {
      line_.Append(std::string_view(p, static_cast<size_t>(eol - p)));
      Line(line_.view());
      line_.clear();
      line_.ShrinkIfLarge();
    }
    p = eol + 1;
  }
}

void SseParser::Line(std::string_view line) {
  if (line.empty()) {
    // Dispatch.
    if (has_data_) {
      SseEvent e;
      e.type = type_.empty() ? "message" : type_;
      e.data = data_.view().substr(data_begin_);
      e.id = last_id_;
      on_event_(e);
    }
    type_.clear();
    data_.clear();
    data_.ShrinkIfLarge();
    data_begin_ = 0;
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
    if (has_data_) {
      data_.Append("\n");
      data_.Append(value);
    } else if (line.data() == line_.data()) {
      // The line is the whole of line_ (a large one, which came in several chunks): take its
      // buffer instead of copying it; the data starts after "data: ".
      data_.swap(line_);
      line_.clear();
      data_begin_ = static_cast<size_t>(value.data() - data_.data());
    } else {
      data_.clear();
      data_begin_ = 0;
      data_.Append(value);
    }
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
