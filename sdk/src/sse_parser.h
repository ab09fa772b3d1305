#pragma once
// Server-sent events parsing per the WHATWG EventSource rules: lines end in CRLF, LF or CR;
// "data" lines accumulate (joined by LF); "id" sets the last event id (ignored if it contains
// NUL); "retry" sets the reconnection time (digits only); lines starting with ':' are comments;
// a blank line dispatches the event (nothing is dispatched when there is no data). Bytes may be
// split anywhere across Feed() calls.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace gonfalon::sdk::internal {

struct SseEvent {
  std::string type = "message";
  std::string data;
  std::string id;  // the last event id in force when dispatched
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
  std::string line_;  // the current, unfinished line
  bool skip_lf_ = false;  // the previous chunk ended in CR: a leading LF belongs to it
  std::string type_;
  std::string data_;
  bool has_data_ = false;
  std::string last_id_;
  std::optional<int64_t> retry_ms_;
};

}  // namespace gonfalon::sdk::internal
