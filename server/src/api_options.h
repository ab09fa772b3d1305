#pragma once
// Settings of the HTTP API that come from `gonfalon serve`'s configuration.

#include <cstdint>
#include <string>
#include <vector>

namespace gonfalon::server {

struct ApiOptions {
  // The server's address as clients reach it ("https://flags.example.com"), used in the URLs
  // it hands out (OFREP eventStreams). Empty: http:// and the request's Host header.
  std::string public_base_url;
  // Take the scheme and host of handed-out URLs from X-Forwarded-Proto / X-Forwarded-Host.
  // Only behind a proxy that sets them: otherwise any client could choose the URL.
  bool trust_forwarded_headers = false;
  // Origins allowed to call the OFREP and SDK evaluation routes from a browser (CORS);
  // "*" allows any. Empty: no CORS headers (browsers refuse cross-origin calls).
  std::vector<std::string> cors_origins;
  // The wait before a failed webhook delivery's first retry (doubled after each).
  int64_t webhook_retry_ms = 1000;
};

}  // namespace gonfalon::server
