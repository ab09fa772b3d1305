// Fan-out benchmark (issue #4): N open SDK streams, M change sets per second through the admin
// API; reports propagation p50/p99 (change set sent -> event read on a stream), lost events and
// the server's memory per idle stream. Loopback only; bounded in count and time.
//   fanout PORT ADMIN_TOKEN SDK_KEY STREAMS RATE SECONDS [SERVER_PID]
// (bench/fanout.sh starts a server and runs it.)
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "loopback.h"

using Clock = std::chrono::steady_clock;

namespace {

using gonfalon::bench::ConnectLoopback;
using gonfalon::bench::RssKb;



struct Stream {
  int fd;
  std::string raw;   // bytes after the headers, chunked
  std::string text;  // decoded
  bool headers_done = false;
  bool got_put = false;
  std::vector<int64_t> seqs;  // `changes` ids received
};

// Decodes chunks and pulls out complete events; returns the ids of `changes` events.
void Parse(Stream& s, std::vector<int64_t>& ids) {
  if (!s.headers_done) {
    size_t end = s.raw.find("\r\n\r\n");
    if (end == std::string::npos) return;
    s.raw.erase(0, end + 4);
    s.headers_done = true;
  }
  while (true) {
    size_t le = s.raw.find("\r\n");
    if (le == std::string::npos) break;
    size_t n = std::strtoul(s.raw.c_str(), nullptr, 16);
    if (s.raw.size() < le + 2 + n + 2) break;
    s.text.append(s.raw, le + 2, n);
    s.raw.erase(0, le + 2 + n + 2);
  }
  while (true) {
    size_t end = s.text.find("\n\n");
    if (end == std::string::npos) break;
    std::string ev = s.text.substr(0, end);
    s.text.erase(0, end + 2);
    if (ev.find("event: put") != std::string::npos) s.got_put = true;
    if (ev.find("event: changes") != std::string::npos && ev.rfind("id: ", 0) == 0) {
      ids.push_back(std::atoll(ev.c_str() + 4));
    }
  }
}

std::string Post(int& fd, int port, const std::string& path, const std::string& token, const std::string& body) {
  if (fd < 0) fd = ConnectLoopback(port);
  std::string req = "POST " + path + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
                    "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string resp;
  char buf[8192];
  while (true) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      close(fd);
      fd = -1;
      return resp;
    }
    resp.append(buf, static_cast<size_t>(n));
    size_t he = resp.find("\r\n\r\n");
    if (he == std::string::npos) continue;
    size_t cl = resp.find("Content-Length: ");
    size_t len = cl == std::string::npos ? 0 : std::strtoul(resp.c_str() + cl + 16, nullptr, 10);
    if (resp.size() >= he + 4 + len) return resp.substr(he + 4, len);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr, "usage: fanout PORT ADMIN_TOKEN SDK_KEY STREAMS RATE SECONDS [SERVER_PID]\n");
    return 2;
  }
  int port = std::atoi(argv[1]);
  std::string admin = argv[2], sdk = argv[3];
  int n = std::atoi(argv[4]);
  int rate = std::atoi(argv[5]);
  int seconds = std::atoi(argv[6]);
  int server_pid = argc > 7 ? std::atoi(argv[7]) : 0;
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);

  long rss_before = server_pid ? RssKb(server_pid) : 0;
  std::vector<Stream> streams;
  streams.reserve(static_cast<size_t>(n));
  int ep = epoll_create1(0);
  std::string req = "GET /sdk/v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + sdk + "\r\n\r\n";
  auto t_open = Clock::now();
  for (int i = 0; i < n; ++i) {
    int fd = ConnectLoopback(port);
    if (fd < 0) {
      std::fprintf(stderr, "connect %d failed\n", i);
      return 1;
    }
    send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    streams.push_back({fd});
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.u32 = static_cast<uint32_t>(i);
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
  }
  std::mutex mu;
  std::unordered_map<int64_t, Clock::time_point> sent_at;
  std::vector<double> latencies_ms;
  std::atomic<bool> writing_done{false};
  int puts = 0;
  auto pump = [&](int timeout_ms) {
    epoll_event events[256];
    int k = epoll_wait(ep, events, 256, timeout_ms);
    auto now = Clock::now();
    for (int i = 0; i < k; ++i) {
      Stream& s = streams[events[i].data.u32];
      char buf[65536];
      while (true) {
        ssize_t r = recv(s.fd, buf, sizeof buf, 0);
        if (r <= 0) break;
        s.raw.append(buf, static_cast<size_t>(r));
      }
      bool had_put = s.got_put;
      std::vector<int64_t> ids;
      Parse(s, ids);
      if (!had_put && s.got_put) ++puts;
      if (!ids.empty()) {
        std::lock_guard<std::mutex> l(mu);
        for (int64_t id : ids) {
          s.seqs.push_back(id);
          auto it = sent_at.find(id);
          if (it != sent_at.end()) latencies_ms.push_back(std::chrono::duration<double, std::milli>(now - it->second).count());
        }
      }
    }
  };
  auto deadline = Clock::now() + std::chrono::seconds(60);
  while (puts < n && Clock::now() < deadline) pump(100);
  double open_s = std::chrono::duration<double>(Clock::now() - t_open).count();
  long rss_after = server_pid ? RssKb(server_pid) : 0;
  std::printf("streams: %d open, %d got their put in %.2f s\n", n, puts, open_s);
  if (server_pid) {
    std::printf("server RSS: %ld KiB before, %ld KiB with the streams: %.0f bytes per idle stream\n", rss_before,
                rss_after, n ? (rss_after - rss_before) * 1024.0 / n : 0.0);
  }
  for (int i = 0; i < 20; ++i) pump(50);  // settle
  int64_t next_seq = 1;
  {
    int fd = ConnectLoopback(port);
    std::string get = "GET /api/v1/projects/bench/environments/production HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer " + admin + "\r\n\r\n";
    send(fd, get.data(), get.size(), MSG_NOSIGNAL);
    std::string resp;
    char buf[4096];
    for (ssize_t r; (r = recv(fd, buf, sizeof buf, 0)) > 0;) resp.append(buf, static_cast<size_t>(r));
    close(fd);
    size_t at = resp.find("\"sequence\":");
    if (at != std::string::npos) next_seq = std::atoll(resp.c_str() + at + 11) + 1;
  }
  std::thread writer([&] {
    int fd = -1;
    auto start = Clock::now();
    for (int i = 0; i < rate * seconds; ++i) {
      auto when = start + std::chrono::microseconds(static_cast<int64_t>(i * 1e6 / rate));
      std::this_thread::sleep_until(when);  // pacing the writes, not waiting for a result
      // The only writer: the change set will get the next sequence, so its send time is
      // recorded before the request (the event can reach streams before the response returns).
      int64_t expect = next_seq + i;
      {
        std::lock_guard<std::mutex> l(mu);
        sent_at[expect] = Clock::now();
      }
      std::string body = R"({"comment":"fanout","items":[{"kind":"segment","key":"fanout","data":{"included":[")" +
                         std::to_string(i) + R"("]}}]})";
      std::string resp = Post(fd, port, "/api/v1/projects/bench/environments/production/changesets", admin, body);
      size_t at = resp.find("\"sequence\":");
      if (at == std::string::npos || std::atoll(resp.c_str() + at + 11) != expect) {
        std::fprintf(stderr, "write failed or out of sequence: %s\n", resp.c_str());
        std::lock_guard<std::mutex> l(mu);
        sent_at.erase(expect);
        return;
      }
    }
    if (fd >= 0) close(fd);
    writing_done = true;
  });
  while (!writing_done) pump(20);
  writer.join();
  // Late sequences may have arrived before their send time was recorded; count them now.
  auto end = Clock::now() + std::chrono::seconds(5);
  size_t expected = sent_at.size() * static_cast<size_t>(n);
  while (Clock::now() < end && latencies_ms.size() < expected) pump(50);
  size_t received = 0;
  for (auto& s : streams) {
    for (int64_t id : s.seqs) received += sent_at.count(id);
  }
  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto pct = [&](double p) {
    return latencies_ms.empty() ? 0.0 : latencies_ms[std::min(latencies_ms.size() - 1, static_cast<size_t>(p * latencies_ms.size()))];
  };
  std::printf("change sets: %zu sent at %d/s for %d s; events expected %zu, received %zu, lost %zu\n", sent_at.size(),
              rate, seconds, expected, received, expected - std::min(expected, received));
  std::printf("propagation (admin write sent -> event read on a stream): p50 %.2f ms, p99 %.2f ms, max %.2f ms (%zu samples)\n",
              pct(0.5), pct(0.99), latencies_ms.empty() ? 0.0 : latencies_ms.back(), latencies_ms.size());
  for (auto& s : streams) close(s.fd);
  return received == expected ? 0 : 1;
}
