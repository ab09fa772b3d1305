// Scale benchmark (issue #10): one environment of N flags behind the real server, with S SDK
// streams open. Reports bulk load time, server RSS, restart to ready, a new stream's `put`
// (first byte and complete), one small write's acknowledgement and its propagation to the
// streams and to a C++ SDK listener (p50/p99), eight writers' throughput, and the SDK's
// initialization time and memory.
//
//   scale --server build/release/server/gonfalon --flags 100000 [--streams 1000] [--writes 500]
//         [--write-interval-ms 10] [--writer-seconds 5] [--explain 0] [--reader uring|recv]
//         [--reader-nice 19] [--reader-batch 32]
//
// The writes are 10 ms apart by default: with 1,000 streams one write's fan-out costs about as
// much CPU (the server's sends and this benchmark's reads of 1,000 sockets) as the two cores
// have in 10 ms, so each write meets the previous one's fan-out. A longer interval measures a
// write on a machine that is not already busy. --explain N prints the N slowest writes, each
// with when the previous write's event reached the first and the last stream and when its own
// reached the first, relative to its sending: whether it met a fan-out, and whether the server
// had published it long before its answer was heard.
//
// bench/scale.sh runs it for 100, 10,000 and 100,000 flags. Everything is on loopback; the
// server runs with synced writes, as in production, on a fresh data directory under $TMPDIR.
//
// The data: flags of four shapes (60 % plain on/off with a fallthrough, 20 % with two or three
// attribute rules, 10 % percentage rollouts, 10 % matching one of 20 segments of 10 to 10,000
// keys), created in bulk (1,000 flags per request, then their targeting in change sets of
// 1,000 items).
//
// Environment variables, for looking inside: GONFALON_SCALE_KEEP=1 keeps the data directory
// (and the server's stdout and stderr in it); GONFALON_SCALE_SAVE_PUT=FILE saves a `put`'s
// environment (for bench/snapshot_memory); GONFALON_SCALE_SMAPS=FILE copies the server's
// /proc/PID/smaps when the RSS 2 s after the writes is measured; GONFALON_SCALE_PAUSE_AFTER_WRITES=N
// pauses N seconds right after that measurement, and GONFALON_SCALE_PAUSE=N at the end (time for
// `gdb -p PID -batch -ex 'call (void)malloc_info(0, stdout)'`, whose output lands in server.out).
//
// The S streams connect as resuming SDKs (Last-Event-ID at the current sequence), so that the
// benchmark measures fan-out of changes rather than S copies of the whole environment; a new
// stream's full `put` is measured on its own connections.
#include <arpa/inet.h>
#include <liburing.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "gonfalon/sdk/client.h"

#include "loopback.h"

using Clock = std::chrono::steady_clock;

namespace {

using gonfalon::bench::ConnectLoopback;
using gonfalon::bench::RssKb;

constexpr const char* kAdmin = "gfa_scale_bench_admin_token_0123456789";

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "scale: %s\n", what.c_str());
  std::exit(1);
}


double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}


// A keep-alive HTTP/1.1 client for requests with Content-Length responses.
class Http {
 public:
  explicit Http(int port) : port_(port) {}
  ~Http() {
    if (fd_ >= 0) close(fd_);
  }
  // Returns the status; `body` receives the response body.
  int Request(const std::string& method, const std::string& path, const std::string& body, std::string* out = nullptr,
              const std::string& token = kAdmin) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (fd_ < 0) fd_ = ConnectLoopback(port_);
      if (fd_ < 0) return -1;
      std::string req = method + " " + path + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
                        "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                        "\r\n\r\n" + body;
      if (send(fd_, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
        Reset();
        continue;
      }
      std::string resp;
      char buf[65536];
      while (true) {
        ssize_t n = recv(fd_, buf, sizeof buf, 0);
        if (n <= 0) break;
        resp.append(buf, static_cast<size_t>(n));
        size_t he = resp.find("\r\n\r\n");
        if (he == std::string::npos) continue;
        size_t cl = resp.find("Content-Length: ");
        if (cl == std::string::npos || cl > he) cl = resp.find("content-length: ");
        size_t len = cl == std::string::npos || cl > he ? 0 : std::strtoul(resp.c_str() + cl + 16, nullptr, 10);
        // Room for the whole body at once: grown by doubling, a 60 MB body (the polling
        // payload) cost the benchmark more page faults than the server took to send it.
        if (resp.capacity() < he + 4 + len) resp.reserve(he + 4 + len);
        if (resp.size() < he + 4 + len) continue;
        int status = std::atoi(resp.c_str() + 9);
        if (out != nullptr) {
          resp.resize(he + 4 + len);
          resp.erase(0, he + 4);
          *out = std::move(resp);
        }
        return status;
      }
      Reset();
    }
    return -1;
  }

 private:
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  int port_;
  int fd_ = -1;
};

int64_t JsonInt(const std::string& body, const std::string& field) {
  size_t at = body.find("\"" + field + "\":");
  return at == std::string::npos ? -1 : std::atoll(body.c_str() + at + field.size() + 3);
}

// --- the server process ---

struct Server {
  pid_t pid = 0;
  int port = 0;
  Clock::duration start_to_listen{};
};

Server StartServer(const std::string& binary, const std::string& dir) {
  std::string out = dir + "/server.out";
  std::filesystem::remove(out);  // not the previous run's port
  auto t0 = Clock::now();
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    int err = open((dir + "/server.err").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(err, 2);
    setenv("GONFALON_ADMIN_TOKEN", kAdmin, 1);
    execl(binary.c_str(), binary.c_str(), "serve", "--listen", "127.0.0.1:0", "--data-dir", dir.c_str(),
          "--max-connections", "20000", "--max-streams", "20000", nullptr);
    _exit(127);
  }
  Server s;
  s.pid = pid;
  auto deadline = Clock::now() + std::chrono::seconds(120);
  while (Clock::now() < deadline) {
    std::ifstream in(out);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t at = text.find("listening on http://127.0.0.1:");
    if (at != std::string::npos) {
      s.port = std::atoi(text.c_str() + at + 30);
      s.start_to_listen = Clock::now() - t0;
      return s;
    }
    if (waitpid(pid, nullptr, WNOHANG) == pid) Die("the server exited; see " + dir + "/server.err");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling a log file for the port
  }
  Die("the server did not listen within 120 s");
}

// Pauses for the seconds the environment variable `variable` gives, if set, saying which server
// to look at (gdb -p, /proc). True when it paused.
bool PauseIfAsked(const char* variable, const Server& server) {
  const char* pause = std::getenv(variable);
  if (pause == nullptr) return false;
  std::printf("server pid %d on port %d: pausing %s s\n", static_cast<int>(server.pid), server.port, pause);
  std::fflush(stdout);
  std::this_thread::sleep_for(std::chrono::seconds(std::atoi(pause)));
  return true;
}

void StopServer(Server& s) {
  kill(s.pid, SIGTERM);
  waitpid(s.pid, nullptr, 0);
  s.pid = 0;
}

// Time from process start to /readyz 200.
double WaitReady(const Server& s, Clock::time_point t0) {
  Http h(s.port);
  auto deadline = Clock::now() + std::chrono::seconds(300);
  while (Clock::now() < deadline) {
    if (h.Request("GET", "/readyz", "") == 200) return Ms(Clock::now() - t0);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // polling readiness, as a load balancer does
  }
  Die("the server did not become ready");
}

// --- data ---

std::string FlagKey(int i) {
  char b[32];
  std::snprintf(b, sizeof b, "flag-%06d", i);
  return b;
}

std::string SegmentJson(int s) {
  int keys = s == 0 ? 10000 : std::max(10, 10000 >> s);
  std::string j = "{\"included\":[";
  for (int k = 0; k < keys; ++k) j += (k ? ",\"" : "\"") + std::string("user-") + std::to_string(k * 7 + s) + "\"";
  return j + "]}";
}

std::string FlagTargeting(int i) {
  int shape = i % 10;
  if (shape < 6) {
    return std::string("{\"on\":") + (i % 3 ? "true" : "false") + ",\"fallthrough\":{\"variation\":" +
           std::to_string(i % 2) + "},\"offVariation\":0}";
  }
  if (shape < 8) {
    return R"({"on":true,"offVariation":0,"fallthrough":{"variation":0},"rules":[)"
           R"({"clauses":[{"contextKind":"user","attribute":"country","op":"in","values":["FR","DE","IT"]}],"variation":1},)"
           R"({"clauses":[{"contextKind":"user","attribute":"email","op":"endsWith","values":["@example.com"]},)"
           R"({"contextKind":"user","attribute":"plan","op":"in","values":["pro","enterprise"]}],"variation":1},)"
           R"({"clauses":[{"contextKind":"user","attribute":"version","op":"semVerGreaterThan","values":["2.3.0"]}],"variation":0}]})";
  }
  if (shape == 8) {
    return R"({"on":true,"offVariation":0,"fallthrough":{"rollout":{"variations":[{"variation":0,"weight":90000},{"variation":1,"weight":10000}]}}})";
  }
  return R"({"on":true,"offVariation":0,"fallthrough":{"variation":0},"rules":[{"clauses":[{"contextKind":"user","attribute":"key","op":"segmentMatch","values":["segment-)" +
         std::to_string(i % 20) + R"("]}],"variation":1}]})";
}

// Creates the project, the segments and the flags in bulk; returns the environment's sequence.
int64_t BulkLoad(int port, int flags) {
  Http h(port);
  std::string body;
  if (h.Request("POST", "/api/v1/projects", R"({"key":"bench","environments":["production"]})", &body) != 201) {
    Die("create project: " + body);
  }
  const std::string env = "/api/v1/projects/bench/environments/production";
  std::string segs = "{\"comment\":\"segments\",\"items\":[";
  for (int s = 0; s < 20; ++s) {
    segs += (s ? "," : "") + std::string("{\"kind\":\"segment\",\"key\":\"segment-") + std::to_string(s) +
            "\",\"data\":" + SegmentJson(s) + "}";
  }
  if (h.Request("POST", env + "/changesets", segs + "]}", &body) != 200) Die("segments: " + body);
  constexpr int kBatch = 1000;
  for (int first = 0; first < flags; first += kBatch) {
    int last = std::min(flags, first + kBatch);
    std::string create = "{\"flags\":[";
    std::string targeting = "{\"comment\":\"bulk targeting\",\"items\":[";
    for (int i = first; i < last; ++i) {
      create += (i > first ? "," : "") + std::string("{\"key\":\"") + FlagKey(i) +
                "\",\"variations\":[false,true],\"tags\":[\"scale\"],\"description\":\"a flag of the scale benchmark\"}";
      targeting += (i > first ? "," : "") + std::string("{\"kind\":\"flag\",\"key\":\"") + FlagKey(i) +
                   "\",\"data\":" + FlagTargeting(i) + "}";
    }
    if (h.Request("POST", "/api/v1/projects/bench/flags", create + "]}", &body) != 201) Die("bulk create: " + body);
    if (h.Request("POST", env + "/changesets", targeting + "]}", &body) != 200) Die("bulk targeting: " + body);
  }
  h.Request("GET", env, "", &body);
  return JsonInt(body, "sequence");
}

std::string MakeSdkKey(int port) {
  Http h(port);
  std::string body;
  if (h.Request("POST", "/api/v1/keys", R"({"kind":"server","project":"bench","environment":"production"})", &body) !=
      201) {
    Die("create key: " + body);
  }
  size_t at = body.find("\"secret\":\"");
  return body.substr(at + 10, body.find('"', at + 10) - at - 10);
}

// --- streams ---

// An SSE stream read with little memory: chunked decoding, and of each event only its
// `id:` and `event:` lines are kept.
struct Stream {
  int fd = -1;
  bool headers_done = false;
  std::string head;     // response headers until complete
  size_t chunk_left = 0;  // data bytes left in the current chunk
  bool in_trailer = false;  // the CRLF after a chunk's data
  std::string size_line;
  std::string line;       // the current SSE line (first 64 bytes)
  size_t line_len = 0;
  int64_t id = -1;
  int64_t last_changes_id = -1;  // the last `changes` event's id
  std::string event;
  size_t bytes = 0;       // body bytes seen
  Clock::time_point first_byte{};
  std::vector<std::tuple<std::string, int64_t, Clock::time_point>> events;  // (event, id, when) completed
};

void FeedSse(Stream& s, const char* p, size_t n, Clock::time_point now) {
  if (s.bytes == 0 && n > 0) s.first_byte = now;
  s.bytes += n;
  // Line by line with memchr: this reader shares the server's two cores, so it spends as
  // little of them as it can.
  const char* end = p + n;
  while (p < end) {
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
    const char* stop = nl ? nl : end;
    size_t len = static_cast<size_t>(stop - p);
    if (s.line.size() < 64) s.line.append(p, std::min(len, 64 - s.line.size()));
    s.line_len += len;
    if (!nl) break;
    p = nl + 1;
    if (s.line_len == 0) {  // blank line: the event is complete
      if (!s.event.empty()) s.events.emplace_back(s.event, s.id, now);
      if (s.event == "changes") s.last_changes_id = std::max(s.last_changes_id, s.id);
      s.event.clear();
      s.id = -1;
    } else if (s.line.rfind("id: ", 0) == 0) {
      s.id = std::atoll(s.line.c_str() + 4);
    } else if (s.line.rfind("event: ", 0) == 0) {
      s.event = s.line.substr(7);
    }
    s.line.clear();
    s.line_len = 0;
  }
}

void Feed(Stream& s, const char* p, size_t n, Clock::time_point now) {
  size_t i = 0;
  if (!s.headers_done) {
    s.head.append(p, n);
    size_t end = s.head.find("\r\n\r\n");
    if (end == std::string::npos) return;
    if (s.head.compare(0, 12, "HTTP/1.1 200") != 0) Die("stream refused: " + s.head.substr(0, 200));
    std::string rest = s.head.substr(end + 4);
    s.headers_done = true;
    s.head.clear();
    Feed(s, rest.data(), rest.size(), now);
    return;
  }
  while (i < n) {
    if (s.chunk_left > 0) {
      size_t take = std::min(s.chunk_left, n - i);
      FeedSse(s, p + i, take, now);
      s.chunk_left -= take;
      i += take;
      if (s.chunk_left == 0) s.in_trailer = true;
      continue;
    }
    char c = p[i++];
    if (s.in_trailer) {
      if (c == '\n') s.in_trailer = false;
      continue;
    }
    if (c == '\n') {
      s.chunk_left = std::strtoul(s.size_line.c_str(), nullptr, 16);
      s.size_line.clear();
      continue;
    }
    if (c != '\r') s.size_line.push_back(c);
  }
}

class Streams {
 public:
  // keep_completed: keep every completed event for TakeCompleted (one stream's `put`). The
  // benchmark shares the server's two cores, so the 1,000 streams keep only what is measured:
  // the arrival times of `changes`, while recording.
  //
  // `batched`: the ready streams are read with one io_uring submission per epoll round instead
  // of one `recv` each, which halves this reader's CPU (system calls are most of it on this VM;
  // bench/uring_fanout.cc); the round's events are timed when the batch completes, at most a
  // batch's reading later than each arrived. Falls back to `recv` where io_uring is refused.
  //
  // `nice`: the reading thread's nice value; `per_round`: streams read per epoll round (at most
  // kMaxReady). A round is one system call that this kernel does not preempt.
  explicit Streams(int port, const std::string& key, bool keep_completed = false, bool batched = false, int nice = 0,
                   int per_round = kMaxReady)
      : port_(port),
        key_(key),
        ep_(epoll_create1(0)),
        keep_completed_(keep_completed),
        nice_(nice),
        max_ready_(std::clamp(per_round, 1, kMaxReady)) {
    if (batched && io_uring_queue_init(kMaxReady, &ring_, 0) == 0) {
      ring_ok_ = true;
      slots_.resize(kMaxReady * kSlotBytes);
    }
  }
  ~Streams() {
    stop_ = true;
    if (pump_.joinable()) pump_.join();
    for (auto& s : streams_) close(s->fd);
    close(ep_);
    if (ring_ok_) io_uring_queue_exit(&ring_);
  }
  bool batched() const { return ring_ok_; }
  int per_round() const { return max_ready_; }
  // Opens one stream; `last_event_id` < 0: a new stream (gets a `put`).
  size_t Open(int64_t last_event_id) {
    int fd = ConnectLoopback(port_);
    if (fd < 0) Die("stream connect failed");
    std::string req = "GET /sdk/v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key_ + "\r\n";
    if (last_event_id >= 0) req += "Last-Event-ID: " + std::to_string(last_event_id) + "\r\n";
    req += "\r\n";
    send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    std::lock_guard<std::mutex> l(mu_);
    auto s = std::make_unique<Stream>();
    s->fd = fd;
    streams_.push_back(std::move(s));
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.u64 = streams_.size() - 1;
    epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &e);
    return streams_.size() - 1;
  }
  void Start() {
    pump_ = std::thread([this] {
      // Below the server's threads and the measuring writer's: see Options::reader_nice.
      if (nice_ != 0) setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), nice_);
      while (!stop_) Pump(50);
    });
  }
  // fn(streams, arrivals): arrivals maps a `changes` id to its receive times on all streams.
  template <typename Fn>
  void With(Fn fn) {
    std::lock_guard<std::mutex> l(mu_);
    fn(streams_, arrivals_);
  }
  void Pump(int timeout_ms) {
    epoll_event events[kMaxReady];
    int k = epoll_wait(ep_, events, max_ready_, timeout_ms);
    std::lock_guard<std::mutex> l(mu_);
    if (ring_ok_ && k > 0) return ReadBatch(events, k);
    for (int i = 0; i < k; ++i) {
      size_t index = events[i].data.u64;
      Stream& s = *streams_[index];
      static thread_local std::vector<char> buf(1 << 20);
      // Each read is timed on its own: a 60 MB `put` takes many, and completes with the last.
      // One recv per readiness unless it fills the buffer: epoll is level-triggered and
      // reports what is left, and a second recv only to hear EAGAIN doubles this reader's
      // system calls, which take the cores the server is measured on.
      while (true) {
        ssize_t r = recv(s.fd, buf.data(), buf.size(), 0);
        if (r <= 0) break;
        Feed(s, buf.data(), static_cast<size_t>(r), Clock::now());
        if (static_cast<size_t>(r) < buf.size()) break;
      }
      Collect(index);
    }
  }
  // One io_uring submission reads every ready stream once (what is left is reported again by
  // the level-triggered epoll). REQUIRES: mu_ held.
  void ReadBatch(const epoll_event* events, int k) {
    for (int i = 0; i < k; ++i) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      io_uring_prep_recv(sqe, streams_[events[i].data.u64]->fd, &slots_[static_cast<size_t>(i) * kSlotBytes],
                         kSlotBytes, MSG_DONTWAIT);
      io_uring_sqe_set_data64(sqe, static_cast<uint64_t>(i));
    }
    int done = 0;
    std::vector<int>& got = got_;
    got.assign(static_cast<size_t>(k), 0);
    while (done < k) {
      if (io_uring_submit_and_wait(&ring_, static_cast<unsigned>(k - done)) < 0) Die("io_uring_submit_and_wait failed");
      io_uring_cqe* cqe = nullptr;
      unsigned head = 0, seen = 0;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        got[io_uring_cqe_get_data64(cqe)] = cqe->res;
        ++seen;
      }
      io_uring_cq_advance(&ring_, seen);
      done += static_cast<int>(seen);
    }
    auto now = Clock::now();
    for (int i = 0; i < k; ++i) {
      size_t index = events[i].data.u64;
      if (got[static_cast<size_t>(i)] > 0) {
        Feed(*streams_[index], &slots_[static_cast<size_t>(i) * kSlotBytes], static_cast<size_t>(got[static_cast<size_t>(i)]), now);
      }
      Collect(index);
    }
  }
  // Records the stream's completed events. REQUIRES: mu_ held.
  void Collect(size_t index) {
    Stream& s = *streams_[index];
    for (auto& [event, id, now] : s.events) {
      if (event == "changes" && recording_) {
        std::vector<Clock::time_point>& times = arrivals_[id];
        if (times.empty()) times.reserve(streams_.size());
        times.push_back(now);
      }
      if (keep_completed_) completed_.emplace_back(index, event, now);
    }
    s.events.clear();
  }
  // The lowest `changes` id every stream has read up to (-1 before any).
  int64_t MinChangesId() {
    std::lock_guard<std::mutex> l(mu_);
    int64_t lowest = std::numeric_limits<int64_t>::max();
    for (const auto& st : streams_) lowest = std::min(lowest, st->last_changes_id);
    return streams_.empty() ? -1 : lowest;
  }
  // Stops recording arrivals (the streams are still read).
  void StopRecording() {
    std::lock_guard<std::mutex> l(mu_);
    recording_ = false;
  }
  // The stream's completed events so far.
  std::vector<std::tuple<size_t, std::string, Clock::time_point>> TakeCompleted() {
    std::lock_guard<std::mutex> l(mu_);
    return std::exchange(completed_, {});
  }

 private:
  static constexpr int kMaxReady = 256;         // streams read per round, at most
  static constexpr size_t kSlotBytes = 16384;  // per stream and round (the rest comes next round)
  int port_;
  std::string key_;
  int ep_;
  io_uring ring_{};
  bool ring_ok_ = false;
  std::vector<char> slots_;
  std::vector<int> got_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Stream>> streams_;
  std::unordered_map<int64_t, std::vector<Clock::time_point>> arrivals_;
  std::vector<std::tuple<size_t, std::string, Clock::time_point>> completed_;
  bool keep_completed_;
  int nice_;
  int max_ready_;
  bool recording_ = true;
  std::atomic<bool> stop_{false};
  std::thread pump_;
};

// A new stream's `put`: first byte and complete, on its own connection.
std::pair<double, double> MeasurePut(int port, const std::string& key) {
  Streams one(port, key, /*keep_completed=*/true);
  auto t0 = Clock::now();
  one.Open(-1);
  auto deadline = Clock::now() + std::chrono::seconds(120);
  while (Clock::now() < deadline) {
    one.Pump(100);
    double first = -1;
    one.With([&](auto& streams, auto&) {
      if (streams[0]->bytes > 0) first = Ms(streams[0]->first_byte - t0);
    });
    for (auto& [i, event, when] : one.TakeCompleted()) {
      if (event == "put") return {first, Ms(when - t0)};
    }
  }
  Die("no put within 120 s");
}

struct Options {
  std::string server = "build/release/server/gonfalon";
  int flags = 100000;
  int streams = 1000;
  int writes = 500;
  int writer_seconds = 5;
  int write_interval_ms = 10;
  int explain = 0;
  bool batched_reader = true;  // --reader uring (default) | recv
  // The 1,000 streams' reader stands in for SDKs on other machines, yet shares the two cores
  // with the server and with the thread that sends the writes and times their answers. At
  // nice 19, reading at most 32 streams per system call, it no longer keeps that thread
  // waiting for a core after its answer has come (bench/explain_writes.py shows where a slow
  // write's time went); what it costs itself is counted in the propagation figures, which
  // it times. --reader-nice 0 --reader-batch 256 is how sessions 22-26 measured.
  int reader_nice = 19;
  int reader_batch = 32;
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--server") o.server = argv[i + 1];
    else if (a == "--flags") o.flags = std::atoi(argv[i + 1]);
    else if (a == "--streams") o.streams = std::atoi(argv[i + 1]);
    else if (a == "--writes") o.writes = std::atoi(argv[i + 1]);
    else if (a == "--writer-seconds") o.writer_seconds = std::atoi(argv[i + 1]);
    else if (a == "--write-interval-ms") o.write_interval_ms = std::atoi(argv[i + 1]);
    else if (a == "--reader-nice") o.reader_nice = std::atoi(argv[i + 1]);
    else if (a == "--reader-batch") o.reader_batch = std::atoi(argv[i + 1]);
    else if (a == "--explain") o.explain = std::atoi(argv[i + 1]);
    else if (a == "--reader" && (std::string(argv[i + 1]) == "uring" || std::string(argv[i + 1]) == "recv"))
      o.batched_reader = std::string(argv[i + 1]) == "uring";
    else Die("unknown option " + a);
  }
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, nullptr, _IOLBF, 0);
  std::string dir = std::filesystem::temp_directory_path() / ("gonfalon-scale-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::printf("== %d flags, %d streams (server %s, data in %s)\n", o.flags, o.streams, o.server.c_str(), dir.c_str());

  Server server = StartServer(o.server, dir);
  auto t_load = Clock::now();
  int64_t seq = BulkLoad(server.port, o.flags);
  double load_s = Ms(Clock::now() - t_load) / 1000;
  std::string key = MakeSdkKey(server.port);
  Http probe(server.port);
  probe.Request("GET", "/sdk/v1/flags", "", nullptr, key);  // the environment loaded once
  std::printf("bulk load: %.2f s (%.0f flags/s), sequence %lld\n", load_s, o.flags / load_s, static_cast<long long>(seq));
  std::printf("server RSS after load: %.0f MB\n", RssKb(server.pid) / 1024.0);

  // Restart to ready.
  StopServer(server);
  auto t_restart = Clock::now();
  server = StartServer(o.server, dir);
  double ready_ms = WaitReady(server, t_restart);
  std::printf("restart to ready: %.0f ms (listening after %.0f ms)\n", ready_ms, Ms(server.start_to_listen));
  std::printf("server RSS after restart: %.0f MB\n", RssKb(server.pid) / 1024.0);
  key = MakeSdkKey(server.port);
  {
    Http h(server.port);
    std::string body;
    h.Request("GET", "/api/v1/projects/bench/environments/production", "", &body);
    seq = JsonInt(body, "sequence");
  }

  // A new stream's put, twice (the first builds it, the second shares it until a change).
  for (int i = 0; i < 2; ++i) {
    auto [first, complete] = MeasurePut(server.port, key);
    std::printf("new stream's put (%s): first byte %.1f ms, complete %.1f ms\n", i == 0 ? "built" : "shared", first,
                complete);
  }
  {
    std::string payload;
    Http h(server.port);
    auto t0 = Clock::now();
    h.Request("GET", "/sdk/v1/flags", "", &payload, key);
    std::printf("polling GET /sdk/v1/flags: %.1f ms, %.1f MB\n", Ms(Clock::now() - t0), payload.size() / 1e6);
    // The environment as the SDK gets it, for bench/snapshot_memory.
    if (const char* save = std::getenv("GONFALON_SCALE_SAVE_PUT"); save != nullptr) {
      std::ofstream(save, std::ios::binary) << payload;
      std::printf("saved the payload to %s\n", save);
    }
  }

  // The C++ SDK.
  long self_before = RssKb(0);
  gonfalon::sdk::Config cfg;
  cfg.base_url = "http://127.0.0.1:" + std::to_string(server.port);
  cfg.sdk_key = key;
  cfg.send_events = false;
  cfg.logger = [](gonfalon::sdk::LogLevel level, std::string_view msg) {
    if (level >= gonfalon::sdk::LogLevel::kInfo) std::printf("  sdk: %.*s\n", static_cast<int>(msg.size()), msg.data());
  };
  auto t_sdk = Clock::now();
  gonfalon::sdk::Client sdk(cfg);
  if (!sdk.WaitForInitialization(std::chrono::seconds(120))) Die("the SDK did not initialize");
  double sdk_init_ms = Ms(Clock::now() - t_sdk);
  std::printf("SDK initialization: %.0f ms, RSS +%.0f MB\n", sdk_init_ms, (RssKb(0) - self_before) / 1024.0);
  // The SDK hands back what decoding freed just after it reports initialized
  // (Config::trim_memory_after_full_update).
  std::this_thread::sleep_for(std::chrono::seconds(1));
  std::printf("SDK RSS 1 s later: +%.0f MB\n", (RssKb(0) - self_before) / 1024.0);
  std::mutex sdk_mu;
  std::unordered_map<std::string, std::vector<Clock::time_point>> sdk_heard;  // key -> each time heard
  sdk.OnFlagChange([&](const std::string& k) {
    std::lock_guard<std::mutex> l(sdk_mu);
    sdk_heard[k].push_back(Clock::now());
  });

  // The streams, resuming at the current sequence.
  long rss_before_streams = RssKb(server.pid);
  Streams streams(server.port, key, /*keep_completed=*/false, o.batched_reader, o.reader_nice, o.reader_batch);
  for (int i = 0; i < o.streams; ++i) streams.Open(seq);
  streams.Start();
  std::this_thread::sleep_for(std::chrono::seconds(1));  // let the connections settle before writing
  std::printf("streams: %d open, server RSS %.0f MB (+%.1f KB per stream); read %s, up to %d a round, at nice %d\n",
              o.streams, RssKb(server.pid) / 1024.0,
              (RssKb(server.pid) - rss_before_streams) / static_cast<double>(std::max(o.streams, 1)),
              streams.batched() ? "in io_uring batches" : "with recv", streams.per_round(), o.reader_nice);

  // One writer: small writes, one at a time, each to its own flag (so the SDK listener can tell
  // them apart), --write-interval-ms apart (10 ms).
  std::vector<double> ack_ms, stream_ms, sdk_ms;
  std::vector<std::pair<int64_t, Clock::time_point>> sent;  // sequence, send time
  std::vector<std::pair<std::string, Clock::time_point>> sent_keys;
  {
    Http h(server.port);
    std::string body;
    for (int i = 0; i < o.writes; ++i) {
      std::string flag = FlagKey((i * 7919) % o.flags);
      // A target key of its own makes every write a real change (a no-op write makes no change set).
      std::string req = R"({"items":[{"kind":"flag","key":")" + flag +
                        R"(","data":{"on":true,"fallthrough":{"variation":1},"offVariation":0,"targets":[{"values":["w)" +
                        std::to_string(i) + R"("],"variation":0}]}}]})";
      auto t0 = Clock::now();
      int status = h.Request("POST", "/api/v1/projects/bench/environments/production/changesets", req, &body);
      auto t1 = Clock::now();
      if (status != 200) Die("write: " + body);
      ack_ms.push_back(Ms(t1 - t0));
      sent.emplace_back(JsonInt(body, "sequence"), t0);
      sent_keys.emplace_back(flag, t0);
      std::this_thread::sleep_for(std::chrono::milliseconds(o.write_interval_ms));  // pacing the writes
    }
  }
  // Wait (with a deadline) until every stream has every change set, then collect.
  auto deadline = Clock::now() + std::chrono::seconds(60);
  size_t expected = sent.size() * static_cast<size_t>(o.streams), got = 0;
  while (Clock::now() < deadline) {
    got = 0;
    streams.With([&](auto&, auto& arrivals) {
      for (auto& [s, t] : sent) {
        auto it = arrivals.find(s);
        if (it != arrivals.end()) got += it->second.size();
      }
    });
    if (got >= expected) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // polling the pump's tally
  }
  streams.With([&](auto&, auto& arrivals) {
    for (auto& [s, t0] : sent) {
      for (auto t : arrivals[s]) stream_ms.push_back(Ms(t - t0));
    }
  });
  if (o.explain > 0) {
    std::vector<size_t> order(ack_ms.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ack_ms[a] > ack_ms[b]; });
    order.resize(std::min(order.size(), static_cast<size_t>(o.explain)));
    streams.With([&](auto&, auto& arrivals) {
      auto window = [&](int64_t seq, Clock::time_point from) -> std::pair<double, double> {
        auto it = arrivals.find(seq);
        if (it == arrivals.end() || it->second.empty()) return {0, 0};
        auto [lo, hi] = std::minmax_element(it->second.begin(), it->second.end());
        return {Ms(*lo - from), Ms(*hi - from)};
      };
      for (size_t i : order) {
        auto [prev_first, prev_last] = i > 0 ? window(sent[i - 1].first, sent[i].second) : std::pair<double, double>{0, 0};
        double own_first = window(sent[i].first, sent[i].second).first;
        // The monotonic clock's reading at the sending (steady_clock is CLOCK_MONOTONIC here), to find
        // the write in a `perf record -k mono` trace.
        double sent_at = std::chrono::duration<double>(sent[i].second.time_since_epoch()).count();
        std::printf("  write %zu acknowledged in %.2f ms: the previous write's event reached the streams %.2f..%.2f ms, "
                    "its own the first stream %.2f ms after it was sent (sent at %.6f s)\n",
                    i, ack_ms[i], prev_first, prev_last, own_first, sent_at);
      }
    });
  }
  streams.StopRecording();
  {
    auto sdk_deadline = Clock::now() + std::chrono::seconds(30);
    while (Clock::now() < sdk_deadline) {
      {
        std::lock_guard<std::mutex> l(sdk_mu);
        size_t heard = 0;
        for (auto& [k, times] : sdk_heard) heard += times.size();
        if (heard >= sent_keys.size()) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling the listener's tally
    }
    // The n-th write to a flag is matched with the n-th time the listener heard of it.
    std::lock_guard<std::mutex> l(sdk_mu);
    std::unordered_map<std::string, size_t> nth;
    for (auto& [k, t0] : sent_keys) {
      size_t n = nth[k]++;
      auto it = sdk_heard.find(k);
      if (it != sdk_heard.end() && n < it->second.size()) sdk_ms.push_back(Ms(it->second[n] - t0));
    }
  }
  std::printf("write acknowledged (synced): p50 %.2f ms, p99 %.2f ms (%zu writes, %d ms apart)\n",
              Percentile(ack_ms, 0.5), Percentile(ack_ms, 0.99), ack_ms.size(), o.write_interval_ms);
  std::printf("propagation to %d streams: p50 %.2f ms, p99 %.2f ms (%zu of %zu events)\n", o.streams,
              Percentile(stream_ms, 0.5), Percentile(stream_ms, 0.99), got, expected);
  std::printf("propagation to the SDK listener: p50 %.2f ms, p99 %.2f ms (%zu of %zu)\n", Percentile(sdk_ms, 0.5),
              Percentile(sdk_ms, 0.99), sdk_ms.size(), sent_keys.size());

  // Eight writers, each toggling its own flag as fast as acknowledgements come back.
  std::atomic<int64_t> last_sequence{-1};  // the highest sequence a write was answered with
  Clock::time_point writes_end;
  {
    std::atomic<int64_t> done{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> writers;
    std::vector<std::vector<double>> lat(8);
    for (int w = 0; w < 8; ++w) {
      writers.emplace_back([&, w] {
        Http h(server.port);
        std::string body;
        std::string flag = FlagKey((w * 104729 + 13) % o.flags);
        for (int i = 0; !stop; ++i) {
          std::string req = R"({"items":[{"kind":"flag","key":")" + flag +
                            R"(","data":{"on":true,"fallthrough":{"variation":0},"offVariation":0,"targets":[{"values":["w)" +
                            std::to_string(i) + R"("],"variation":1}]}}]})";
          auto t0 = Clock::now();
          if (h.Request("POST", "/api/v1/projects/bench/environments/production/changesets", req, &body) != 200) {
            Die("writer: " + body);
          }
          lat[w].push_back(Ms(Clock::now() - t0));
          if (size_t at = body.find("\"sequence\":"); at != std::string::npos) {
            int64_t seq = std::atoll(body.c_str() + at + 11);
            int64_t seen = last_sequence.load();
            while (seq > seen && !last_sequence.compare_exchange_weak(seen, seq)) {
            }
          }
          ++done;
        }
      });
    }
    auto t0 = Clock::now();
    std::this_thread::sleep_for(std::chrono::seconds(o.writer_seconds));  // the measurement window
    stop = true;
    for (auto& t : writers) t.join();
    writes_end = Clock::now();
    double secs = Ms(writes_end - t0) / 1000;
    std::vector<double> all;
    for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
    std::printf("eight writers: %.0f change sets/s (acknowledged p50 %.2f ms, p99 %.2f ms)\n", done / secs,
                Percentile(all, 0.5), Percentile(all, 0.99));
  }
  std::printf("server RSS after the writes: %.0f MB\n", RssKb(server.pid) / 1024.0);
  // The server hands back what a burst left free in malloc's arenas once it ends (a quiet
  // 100 ms, then at most a second: memory_trimmer.h).
  std::this_thread::sleep_for(std::chrono::seconds(2));
  std::printf("server RSS 2 s after the writes: %.0f MB\n", RssKb(server.pid) / 1024.0);
  if (const char* smaps = std::getenv("GONFALON_SCALE_SMAPS"); smaps != nullptr) {
    // The server's mappings at this point, for a breakdown of the RSS (heap, stacks, code).
    // (Read, not copied: /proc files report a size of 0.)
    std::ifstream in("/proc/" + std::to_string(server.pid) + "/smaps");
    std::ofstream(smaps) << in.rdbuf();
  }
  // Time to look at the server as the figure above saw it, before a `put` is built again.
  PauseIfAsked("GONFALON_SCALE_PAUSE_AFTER_WRITES", server);
  if (o.streams > 0 && last_sequence >= 0) {
    // This reader shares the server's two cores and falls behind the eight writers' events
    // (hundreds of MB of them after 30 s); the server then holds what each stream's socket has
    // not taken (up to its queue limit per stream). Measured again once every stream has read
    // the last write's event, so that the figure is the server's own, not this reader's lag.
    auto deadline = Clock::now() + std::chrono::seconds(120);
    while (streams.MinChangesId() < last_sequence && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (streams.MinChangesId() < last_sequence) {
      std::printf("streams: not all caught up with sequence %lld within 120 s (the slowest at %lld)\n",
                  static_cast<long long>(last_sequence.load()), static_cast<long long>(streams.MinChangesId()));
    } else {
      std::printf("streams caught up with sequence %lld %.1f s after the writes\n",
                  static_cast<long long>(last_sequence.load()), Ms(Clock::now() - writes_end) / 1000);
      std::this_thread::sleep_for(std::chrono::seconds(2));
      std::printf("server RSS 2 s after the streams caught up: %.0f MB\n", RssKb(server.pid) / 1024.0);
    }
  }
  {
    // The writes released the put built before them; the next is assembled from the items' JSON.
    auto [first, complete] = MeasurePut(server.port, key);
    std::printf("new stream's put after the writes (reassembled): first byte %.1f ms, complete %.1f ms\n", first,
                complete);
  }
  {
    Http h(server.port);
    std::string metrics;
    h.Request("GET", "/metrics", "", &metrics);
    auto metric = [&](const std::string& name) {
      size_t at = metrics.find("\n" + name + " ");
      return at == std::string::npos ? -1.0 : std::atof(metrics.c_str() + at + name.size() + 2);
    };
    std::printf("server: %.0f change sets published in %.0f fan-outs; %.0f whole-environment loads, %.0f repairs\n",
                metric("gonfalon_change_sets_published_total"), metric("gonfalon_stream_fan_outs_total"),
                metric("gonfalon_environment_loads_total"), metric("gonfalon_environment_repairs_total"));
    std::printf("server RocksDB memory: memtables %.1f MB, block caches %.1f MB, table readers %.1f MB\n",
                metric("gonfalon_storage_rocksdb_cur_size_all_mem_tables") / 1e6,
                metric("gonfalon_storage_rocksdb_block_cache_usage") / 1e6,
                metric("gonfalon_storage_rocksdb_estimate_table_readers_mem") / 1e6);
  }
  // Time to look at the server before it stops.
  if (PauseIfAsked("GONFALON_SCALE_PAUSE", server)) {
    std::printf("server RSS after the pause: %.0f MB\n", RssKb(server.pid) / 1024.0);
  }
  sdk.Close();
  StopServer(server);
  if (std::getenv("GONFALON_SCALE_KEEP") == nullptr) std::filesystem::remove_all(dir);
  return 0;
}
