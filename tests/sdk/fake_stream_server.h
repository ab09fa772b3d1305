#pragma once
// A scripted SSE server for SDK tests: for the n-th connection it reads the request head,
// records it, and sends what the script returns (an HTTP response head and chunked body),
// then keeps the connection open until the next connection or the end of the test. Lets a
// test send what the real server never would: malformed events, stale sequences, unknown
// event types.

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../e2e/e2e_util.h"

namespace gonfalon::testing {

// "HTTP/1.1 200 ..." head of an event stream with a chunked body.
inline std::string SseHead() {
  return "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
}
// One SSE event as one HTTP chunk.
inline std::string SseChunk(const std::string& id, const std::string& event, const std::string& data) {
  std::string text = "id: " + id + "\nevent: " + event + "\ndata: " + data + "\n\n";
  char size[16];
  std::snprintf(size, sizeof size, "%zx", text.size());
  return std::string(size) + "\r\n" + text + "\r\n";
}

class FakeStreamServer {
 public:
  // script(connection index, request head) -> bytes to send on that connection.
  explicit FakeStreamServer(std::function<std::string(int, const std::string&)> script) : script_(std::move(script)) {
    listen_fd_ = e2e::ListenLoopback(port_);
    if (listen_fd_ < 0) return;
    thread_ = std::thread([this] { Loop(); });
  }
  ~FakeStreamServer() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    for (int fd : open_) ::close(fd);
    if (listen_fd_ >= 0) ::close(listen_fd_);
  }
  FakeStreamServer(const FakeStreamServer&) = delete;
  FakeStreamServer& operator=(const FakeStreamServer&) = delete;

  int port() const { return port_; }
  int connections() const { return accepted_.load(); }
  // The request heads received so far, in order.
  std::vector<std::string> requests() const {
    std::lock_guard<std::mutex> l(mu_);
    return requests_;
  }

 private:
  void Loop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      // The previous connection ends when the client makes a new one.
      for (int old : open_) ::close(old);
      open_.clear();
      std::string head;
      auto deadline = e2e::Clock::now() + std::chrono::seconds(5);
      while (head.find("\r\n\r\n") == std::string::npos && e2e::ReadSome(fd, head, deadline)) {
      }
      int index = accepted_.load();
      {
        std::lock_guard<std::mutex> l(mu_);
        requests_.push_back(head);
      }
      ++accepted_;
      e2e::SendAll(fd, script_(index, head));
      open_.push_back(fd);
    }
  }

  std::function<std::string(int, const std::string&)> script_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  mutable std::mutex mu_;
  std::vector<std::string> requests_;  // REQUIRES: mu_
  std::vector<int> open_;              // the loop thread's own
};

}  // namespace gonfalon::testing
