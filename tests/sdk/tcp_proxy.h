#pragma once
// A loopback TCP proxy for tests: it forwards every accepted connection to an upstream port
// and can pause traffic (connections stay open, nothing moves: a half-open link as seen from
// either end) or cut it (every open connection is closed at once). One thread, poll(2).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <thread>
#include <vector>

#include "../e2e/e2e_util.h"

namespace gonfalon::testing {

class TcpProxy {
 public:
  explicit TcpProxy(int upstream_port) : upstream_port_(upstream_port) {
    listen_fd_ = e2e::ListenLoopback(port_);
    if (listen_fd_ < 0) return;
    thread_ = std::thread([this] { Loop(); });
  }
  ~TcpProxy() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    for (Pair& p : pairs_) Close(p);
    if (listen_fd_ >= 0) ::close(listen_fd_);
  }
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  // The port clients connect to; 0 if the proxy could not listen.
  int port() const { return port_; }
  // Connections accepted so far.
  int connections() const { return accepted_.load(); }
  // Connections open now.
  int open() const { return open_.load(); }

  // Stops moving bytes in both directions; connections stay open and new ones are accepted
  // (and held the same way).
  void Pause() { paused_ = true; }
  void Resume() { paused_ = false; }
  // Closes every open connection at the next turn of the loop (within about 10 ms).
  void Cut() { ++cut_requests_; }

 private:
  struct Pair {
    int client = -1;
    int upstream = -1;
  };

  static void Close(Pair& p) {
    if (p.client >= 0) ::close(p.client);
    if (p.upstream >= 0) ::close(p.upstream);
    p.client = p.upstream = -1;
  }

  // Moves what is readable from `from` to `to`; false when either side is finished.
  static bool Forward(int from, int to) {
    char buf[16384];
    ssize_t n = ::read(from, buf, sizeof buf);
    if (n <= 0) return false;
    ssize_t sent = 0;
    while (sent < n) {
      ssize_t w = ::send(to, buf + sent, static_cast<size_t>(n - sent), MSG_NOSIGNAL);
      if (w <= 0) return false;
      sent += w;
    }
    return true;
  }

  void Loop() {
    int cuts_seen = 0;
    while (!stop_) {
      if (int cuts = cut_requests_.load(); cuts != cuts_seen) {
        cuts_seen = cuts;
        for (Pair& p : pairs_) Close(p);
        pairs_.clear();
        open_ = 0;
      }
      bool paused = paused_.load();
      std::vector<pollfd> fds;
      fds.push_back({listen_fd_, POLLIN, 0});
      for (const Pair& p : pairs_) {
        short ev = paused ? 0 : POLLIN;
        fds.push_back({p.client, ev, 0});
        fds.push_back({p.upstream, ev, 0});
      }
      if (::poll(fds.data(), fds.size(), 10) < 0 && errno != EINTR) return;
      if (fds[0].revents & POLLIN) {
        int client = ::accept(listen_fd_, nullptr, nullptr);
        if (client >= 0) {
          ++accepted_;
          int upstream = e2e::Connect(upstream_port_);
          if (upstream < 0) {
            ::close(client);
          } else {
            pairs_.push_back({client, upstream});
          }
        }
      }
      if (paused) {
        open_ = static_cast<int>(pairs_.size());
        continue;
      }
      std::vector<Pair> alive;
      for (size_t i = 0; i < pairs_.size() && 1 + 2 * i + 1 < fds.size(); ++i) {
        Pair p = pairs_[i];
        bool ok = true;
        if (fds[1 + 2 * i].revents & (POLLIN | POLLHUP | POLLERR)) ok = Forward(p.client, p.upstream);
        if (ok && (fds[2 + 2 * i].revents & (POLLIN | POLLHUP | POLLERR))) ok = Forward(p.upstream, p.client);
        if (ok) {
          alive.push_back(p);
        } else {
          Close(p);
        }
      }
      // Connections accepted in this turn were not polled yet.
      for (size_t i = (fds.size() - 1) / 2; i < pairs_.size(); ++i) alive.push_back(pairs_[i]);
      pairs_ = std::move(alive);
      open_ = static_cast<int>(pairs_.size());
    }
  }

  int upstream_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> paused_{false};
  std::atomic<int> cut_requests_{0};
  std::atomic<int> accepted_{0};
  std::atomic<int> open_{0};
  std::vector<Pair> pairs_;
};

}  // namespace gonfalon::testing
