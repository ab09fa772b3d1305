#pragma once
// The HTTP/1.1 front end on Boost.Beast: connections, limits, keep-alive, SSE streams and
// graceful shutdown. Beast and Asio headers stay inside http_server.cc.
//
// One strand per connection; requests on a connection are handled one at a time (pipelined
// requests wait their turn). Handlers that may block on storage run on a small worker pool so
// that evaluations on the I/O threads never wait behind an fsync.

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "api.h"
#include "hub.h"
#include "metrics.h"

namespace gonfalon::server {

struct ServerLimits {
  size_t max_header_bytes = 8 * 1024;   // larger: 431
  size_t max_body_bytes = 1024 * 1024;  // larger: 413
  std::chrono::milliseconds read_timeout{30'000};  // to receive a whole request; also keep-alive idle
  std::chrono::milliseconds write_timeout{30'000};  // a stream that cannot take a write this long is dropped
  // Plain (request/response) connections and SSE streams are counted apart, so that streams
  // can never lock out health checks, evaluations and admin writes.
  size_t max_connections = 10'000;      // plain connections; more: 503 and close
  size_t max_streams = 10'000;          // open SSE streams; more: the stream request gets 503
  size_t stream_queue_limit = 512;      // events queued for one slow stream before it is dropped
  std::chrono::milliseconds heartbeat{15'000};
  std::chrono::milliseconds shutdown_grace{5'000};
  int io_threads = 2;
  // Admin writes block here (the fsync, then the wait until the change is published): they
  // mostly wait, so enough threads let concurrent writers share one group commit.
  int worker_threads = 32;
  bool log_requests = false;
};

class HttpServer {
 public:
  HttpServer(Api& api, Hubs& hubs, Metrics& metrics, ServerLimits limits);
  ~HttpServer();

  // Binds; returns the port (useful with port 0).
  absl::StatusOr<int> Listen(const std::string& host, int port);
  // Serves until Shutdown() completes; also shuts down on SIGINT/SIGTERM.
  void Run();
  // Stops accepting, lets in-flight requests finish, closes streams with a final comment,
  // closes idle connections, and makes Run() return (within the grace period). Thread-safe.
  void Shutdown();

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace gonfalon::server
