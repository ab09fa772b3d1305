#pragma once
// End-to-end helpers: the real `gonfalon serve` binary on port 0 over loopback, a minimal
// blocking HTTP/1.1 client, and an SSE reader that decodes chunked bodies. Every wait has a
// deadline.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

extern char** environ;

namespace gonfalon::e2e {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

inline constexpr char kAdminToken[] = "gfa_e2e_admin_token_0123456789";

inline std::string TempDir(const std::string& tag) {
  auto dir = std::filesystem::temp_directory_path() /
             ("gonfalon-e2e-" + tag + "-" + std::to_string(::getpid()) + "-" +
              std::to_string(Clock::now().time_since_epoch().count()));
  std::filesystem::create_directories(dir);
  return dir.string();
}

// A socket listening on 127.0.0.1 at a port the kernel picks (written to `port`), or -1.
inline int ListenLoopback(int& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 64) != 0) {
    ::close(fd);
    return -1;
  }
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  port = ntohs(addr.sin_port);
  return fd;
}

// Wall-clock time in Unix milliseconds (what executeAt and the server's records use).
inline int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Waits for a condition, polling it, until `timeout`; returns its last value.
template <typename Pred>
bool Eventually(Pred pred, std::chrono::milliseconds timeout = 10s) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (pred()) return true;
    ::usleep(10'000);  // polling the condition, not waiting for a result
  }
  return pred();
}

// A connected loopback socket, or -1.
inline int Connect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

inline bool SendAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

// Reads what arrives before `deadline` into buf; false on EOF/error/timeout.
inline bool ReadSome(int fd, std::string& buf, Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return false;
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(left)) <= 0) return false;
  char chunk[16384];
  ssize_t n = ::read(fd, chunk, sizeof chunk);
  if (n <= 0) return false;
  buf.append(chunk, static_cast<size_t>(n));
  return true;
}

struct HttpResponse {
  int status = 0;  // 0: no response (connection closed or timed out)
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  std::string Header(const std::string& name) const {
    for (const auto& [k, v] : headers) {
      if (k == name) return v;
    }
    return "";
  }
};

// Parses one response from `buf` (Content-Length or chunked); nullopt if incomplete.
inline std::optional<HttpResponse> ParseResponse(std::string& buf) {
  size_t end = buf.find("\r\n\r\n");
  if (end == std::string::npos) return std::nullopt;
  HttpResponse r;
  std::string head = buf.substr(0, end);
  r.status = std::atoi(head.c_str() + head.find(' ') + 1);
  size_t pos = head.find("\r\n");
  bool chunked = false;
  size_t length = 0;
  while (pos != std::string::npos && pos < head.size()) {
    size_t next = head.find("\r\n", pos + 2);
    std::string line = head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
    size_t colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      if (name == "content-length") length = std::stoul(value);
      if (name == "transfer-encoding" && value == "chunked") chunked = true;
      r.headers.emplace_back(name, value);
    }
    pos = next;
  }
  size_t body_start = end + 4;
  if (!chunked) {
    if (buf.size() < body_start + length) return std::nullopt;
    r.body = buf.substr(body_start, length);
    buf.erase(0, body_start + length);
    return r;
  }
  size_t p = body_start;
  std::string body;
  while (true) {
    size_t le = buf.find("\r\n", p);
    if (le == std::string::npos) return std::nullopt;
    size_t n = std::stoul(buf.substr(p, le - p), nullptr, 16);
    if (buf.size() < le + 2 + n + 2) return std::nullopt;
    body.append(buf, le + 2, n);
    p = le + 2 + n + 2;
    if (n == 0) break;
  }
  r.body = std::move(body);
  buf.erase(0, p);
  return r;
}

inline HttpResponse Http(int port, const std::string& method, const std::string& path, const std::string& body = "",
                         const std::vector<std::pair<std::string, std::string>>& headers = {},
                         std::chrono::milliseconds timeout = 10s) {
  int fd = Connect(port);
  if (fd < 0) return {};
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) + "\r\nConnection: close\r\n";
  for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  req += "\r\n" + body;
  HttpResponse out;
  SendAll(fd, req);  // the server may answer (413) before taking the whole body: read anyway
  {
    std::string buf;
    auto deadline = Clock::now() + timeout;
    while (true) {
      if (auto r = ParseResponse(buf)) {
        out = std::move(*r);
        break;
      }
      if (!ReadSome(fd, buf, deadline)) break;
    }
  }
  ::close(fd);
  return out;
}

inline std::vector<std::pair<std::string, std::string>> Bearer(const std::string& token) {
  return {{"Authorization", "Bearer " + token}};
}

struct SseEvent {
  std::string id, event, data;
};

// An open SSE stream: the status line and headers, then events as they arrive.
class SseStream {
 public:
  SseStream(int port, const std::string& path, const std::vector<std::pair<std::string, std::string>>& headers) {
    fd_ = Connect(port);
    if (fd_ < 0) return;
    std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n";
    for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
    SendAll(fd_, req + "\r\n");
    auto deadline = Clock::now() + 10s;
    while (raw_.find("\r\n\r\n") == std::string::npos) {
      if (!ReadSome(fd_, raw_, deadline)) return;
    }
    size_t end = raw_.find("\r\n\r\n");
    status_ = std::atoi(raw_.c_str() + raw_.find(' ') + 1);
    raw_.erase(0, end + 4);
  }
  ~SseStream() { Close(); }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int status() const { return status_; }

  // The next event (comments skipped unless `with_comments`), or nullopt at the deadline/EOF.
  std::optional<SseEvent> Next(std::chrono::milliseconds timeout, bool with_comments = false) {
    auto deadline = Clock::now() + timeout;
    while (true) {
      Dechunk();
      size_t end = text_.find("\n\n");
      if (end != std::string::npos) {
        std::string block = text_.substr(0, end);
        text_.erase(0, end + 2);
        SseEvent e;
        bool comment_only = true;
        size_t p = 0;
        while (p <= block.size()) {
          size_t nl = block.find('\n', p);
          std::string line = block.substr(p, nl == std::string::npos ? std::string::npos : nl - p);
          if (line.rfind("id: ", 0) == 0) e.id = line.substr(4), comment_only = false;
          else if (line.rfind("event: ", 0) == 0) e.event = line.substr(7), comment_only = false;
          else if (line.rfind("data: ", 0) == 0) e.data += line.substr(6), comment_only = false;
          else if (line.rfind(": ", 0) == 0) e.data = line.substr(2);
          if (nl == std::string::npos) break;
          p = nl + 1;
        }
        if (comment_only) {
          if (with_comments) {
            e.event = "comment";
            return e;
          }
          continue;
        }
        return e;
      }
      if (fd_ < 0 || !ReadSome(fd_, raw_, deadline)) return std::nullopt;
    }
  }

 private:
  void Dechunk() {
    while (true) {
      size_t le = raw_.find("\r\n");
      if (le == std::string::npos) return;
      size_t n = std::stoul(raw_.substr(0, le), nullptr, 16);
      if (raw_.size() < le + 2 + n + 2) return;
      text_.append(raw_, le + 2, n);
      raw_.erase(0, le + 2 + n + 2);
    }
  }
  int fd_ = -1;
  int status_ = 0;
  std::string raw_;   // chunked bytes
  std::string text_;  // decoded event text
};

// Runs a command to its end and returns what it wrote to stdout ("" if it could not start),
// and to stderr too with `with_stderr`.
inline std::string RunCommand(std::vector<std::string> args, int* exit_code = nullptr, bool with_stderr = false) {
  int fds[2];
  if (pipe(fds) != 0) return "";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  if (with_stderr) posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  std::string out;
  if (rc == 0) {
    auto deadline = Clock::now() + 30s;
    while (ReadSome(fds[0], out, deadline)) {
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (exit_code != nullptr) *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  ::close(fds[0]);
  return out;
}

// The real server binary in a temporary data directory, on a free port.
class ServerProcess {
 public:
  explicit ServerProcess(std::string data_dir = TempDir("server"), std::vector<std::string> extra = {})
      : data_dir_(std::move(data_dir)) {
    Start(std::move(extra));
  }
  ~ServerProcess() {
    Kill(SIGKILL);
    if (owns_dir_) std::filesystem::remove_all(data_dir_);
  }
  void Start(std::vector<std::string> extra = {}) {
    int fds[2];
    if (pipe(fds) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::vector<std::string> args = {GONFALON_BINARY, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir_,
                                     "--heartbeat-seconds", "1", "--read-timeout-seconds", "2"};
    for (auto& e : extra) args.push_back(e);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_strings;
    for (char** e = environ; *e; ++e) env_strings.emplace_back(*e);
    env_strings.push_back(std::string("GONFALON_ADMIN_TOKEN=") + kAdminToken);
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    if (posix_spawn(&pid_, GONFALON_BINARY, &actions, nullptr, argv.data(), envp.data()) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    out_fd_ = fds[0];
    // Wait for "listening on http://127.0.0.1:PORT".
    std::string buf;
    auto deadline = Clock::now() + 20s;
    while (port_ == 0 && ReadSome(out_fd_, buf, deadline)) {
      size_t at = buf.find("listening on http://127.0.0.1:");
      if (at != std::string::npos && buf.find(' ', at + 30) != std::string::npos) port_ = std::atoi(buf.c_str() + at + 30);
    }
    output_ = buf;
  }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::string& data_dir() const { return data_dir_; }
  const std::string& output() const { return output_; }
  void keep_dir() { owns_dir_ = false; }

  // Sends a signal and waits (up to `timeout`) for the exit; returns the exit status or -1.
  int Kill(int sig, std::chrono::milliseconds timeout = 10s) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    auto deadline = Clock::now() + timeout;
    int status = 0;
    while (Clock::now() < deadline) {
      pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        ::close(out_fd_);
        port_ = 0;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      usleep(10'000);  // polling the child's exit, not waiting for a result
    }
    ::kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    pid_ = -1;
    ::close(out_fd_);
    port_ = 0;
    return -1;
  }

 private:
  std::string data_dir_;
  bool owns_dir_ = true;
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int port_ = 0;
  std::string output_;
};

}  // namespace gonfalon::e2e
