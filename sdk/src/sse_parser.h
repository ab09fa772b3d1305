#pragma once
// Server-sent events parsing per the WHATWG EventSource rules: lines end in CRLF, LF or CR;
// "data" lines accumulate (joined by LF); "id" sets the last event id (ignored if it contains
// NUL); "retry" sets the reconnection time (digits only); lines starting with ':' are comments;
// a blank line dispatches the event (nothing is dispatched when there is no data). Bytes may be
// split anywhere across Feed() calls.
//
// A `put` is one data line of tens of MB. Its bytes are copied once, into a buffer grown with
// realloc (which moves a large block's pages instead of copying and touching them again), and
// handed to the event without another copy: SseEvent::data is a view, valid during the
// callback, with rules::kJsonPadding spare bytes after it (rules::PaddedJson).

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "gonfalon/rules/split_json.h"

namespace gonfalon::sdk::internal {

struct SseEvent {
  std::string type = "message";
  std::string_view data;  // valid only during the callback; padded (see above)
  std::string id;         // the last event id in force when dispatched
};

// Bytes in a block grown with realloc, always with kPadding spare bytes after them.
class GrowableBuffer {
 public:
  static constexpr size_t kPadding = rules::kJsonPadding;
  GrowableBuffer() = default;
  GrowableBuffer(const GrowableBuffer&) = delete;
  GrowableBuffer& operator=(const GrowableBuffer&) = delete;
  ~GrowableBuffer() { std::free(data_); }

  void Append(std::string_view bytes);
  void clear() { size_ = 0; }
  // Gives a large block back (a `put`'s) so that it is not held until the next one.
  void ShrinkIfLarge();
  void swap(GrowableBuffer& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    std::swap(capacity_, other.capacity_);
  }
  const char* data() const { return data_; }
  size_t size() const { return size_; }
  std::string_view view() const { return {data_, size_}; }

 private:
  char* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

class SseParser {
 public:
  using EventFn = std::function<void(const SseEvent&)>;
  using CommentFn = std::function<void(std::string_view)>;
  SseParser(EventFn on_event, CommentFn on_comment = {})
      : on_event_(std::move(on_event)), on_comment_(std::move(on_comment)) {}

  void Feed(std::string_view bytes);
  const std::string& last_event_id() const { return last_id_; }
  std::optional<int64_t> retry_ms() const { return retry_ms_; }

 private:
  void Line(std::string_view line);

  EventFn on_event_;
  CommentFn on_comment_;
  GrowableBuffer line_;  // the current, unfinished line
  bool skip_lf_ = false;  // the previous chunk ended in CR: a leading LF belongs to it
  std::string type_;
  GrowableBuffer data_;
  size_t data_begin_ = 0;  // data_ may be a whole line taken over, "data: " included
  bool has_data_ = false;
  std::string last_id_;
  std::optional<int64_t> retry_ms_;
};

}  // namespace gonfalon::sdk::internal
