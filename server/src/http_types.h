#pragma once
// Plain HTTP request and response types shared by the Beast front end (http_server.cc) and
// the handlers (api.cc), so that handlers need no Beast headers and are testable alone.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gonfalon::server {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // as received: path and query
  std::string path;    // percent-decoded path
  std::string raw_path;  // path before decoding (flag keys in OFREP URLs are decoded per segment)
  std::vector<std::pair<std::string, std::string>> query;  // decoded
  // Names lower-cased. Only the headers handlers read are kept (http_server.cc, kWanted):
  // authorization, x-api-key, if-match, if-none-match, last-event-id, host, origin,
  // x-forwarded-proto, x-forwarded-host.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string remote;

  // Header value by lower-case name, or nullptr.
  const std::string* Header(std::string_view name) const {
    for (const auto& [k, v] : headers) {
      if (k == name) return &v;
    }
    return nullptr;
  }
  const std::string* Query(std::string_view name) const {
    for (const auto& [k, v] : query) {
      if (k == name) return &v;
    }
    return nullptr;
  }
};

// An SSE stream the front end should open instead of sending a plain response.
struct StreamRequest {
  enum class Kind : uint8_t { kSdk, kOfrep };
  Kind kind = Kind::kSdk;
  std::string project;
  std::string environment;
  std::optional<int64_t> last_event_id;
  std::string key_id;        // the key that opened it: revoking the key closes the stream
  bool client_side = false;  // OFREP with a client-side key: only its flags' changes notify
};

struct Response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // A large body owned elsewhere, written from where it is instead of copied (the polling
  // payload, which the hub keeps per sequence): when `shared_body` is set, the bytes are
  // `shared_view` (inside it) and `body` is unused. Body() is the body either way.
  std::shared_ptr<const std::string> shared_body;
  std::string_view shared_view;
  std::string_view Body() const { return shared_body != nullptr ? shared_view : std::string_view(body); }
  std::string content_type = "application/json";
  std::optional<StreamRequest> stream;
  // For metrics: the route pattern that handled the request ("/api/v1/projects/{p}").
  std::string route = "unmatched";
};

// Splits "a/b%2Fc" style paths: decodes %XX; returns false on a malformed escape.
bool PercentDecode(std::string_view in, std::string& out, bool plus_is_space = false);
// Parses "a=1&b=two" (decoded) into pairs.
std::vector<std::pair<std::string, std::string>> ParseQuery(std::string_view q);

}  // namespace gonfalon::server
