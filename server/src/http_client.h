#pragma once
// A small blocking HTTP/1.1 client for the server's own outgoing calls (webhook deliveries,
// Prometheus queries): plain http:// only, one request per connection, one deadline for
// resolve, connect, send and answer, and a bound on the answer's size.

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace gonfalon::server {

struct HttpRequest {
  std::string method = "GET";
  std::string url;  // http://host[:port][/path][?query]
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::chrono::milliseconds timeout{5000};
  size_t body_limit = 64 * 1024;  // of the answer
};

struct HttpAnswer {
  int status = 0;     // 0: no answer (see error)
  std::string body;
  std::string error;  // why there is no answer: "connecting: Connection refused", ...
};

HttpAnswer HttpCall(const HttpRequest& request);

// "http://host[:port][/path]" -> host, port ("80" by default), target ("/" by default);
// false when `url` is not one.
bool SplitHttpUrl(const std::string& url, std::string& host, std::string& port, std::string& target);

// `s` with every byte but unreserved ones percent-encoded, for a query parameter.
std::string UrlEncode(std::string_view s);

}  // namespace gonfalon::server
