#include "http_server.h"

#include <array>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <limits>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/str_cat.h"
#include "log.h"
#include "memory_trimmer.h"
#include "responses.h"

namespace gonfalon::server {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;

namespace {

// Request bodies from this size on ask for free memory to be handed back (memory_trimmer.h).
constexpr size_t kLargeBody = 256 * 1024;
// So do bursts of at least this many change sets, once they end (memory_trimmer.h): at 100,000
// flags the scale benchmark's eight writers left ~10 MB free in the arenas.
constexpr uint64_t kBurstChangeSets = 50;
// And so does a catching up of slow streams, once they have caught up: what their queues held
// (events shared with other streams, kept alive by the laggards alone) is free then, and a
// burst's trim came before it. 1,000 streams that fell behind 30 s of eight writers left
// ~27 MB free that way at 100,000 flags.
constexpr uint64_t kBurstBacklogBytes = 1 << 20;

}  // namespace
using tcp = net::ip::tcp;

class Session;

class HttpServer::Impl {
 public:
  Impl(Api& api, Hubs& hubs, Metrics& metrics, ServerLimits limits)
      : api_(api), hubs_(hubs), metrics_(metrics), limits_(limits), acceptor_(ioc_), signals_(ioc_, SIGINT, SIGTERM),
        heartbeat_(ioc_), sweep_(ioc_), workers_(static_cast<size_t>(std::max(1, limits.worker_threads))),
        trimmer_(std::chrono::seconds(1), &metrics.memory_trims) {
  }
  ~Impl() { hubs_.WaitForFanOut(); }

  absl::StatusOr<int> Listen(const std::string& host, int port) {
    beast::error_code ec;
    auto address = net::ip::make_address(host, ec);
    if (ec) return rules::InvalidField("listen", StrCat("\"", host, "\" is not an IP address"));
    tcp::endpoint ep(address, static_cast<unsigned short>(port));
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) return absl::UnavailableError(StrCat("cannot listen on ", host, ":", port, ": ", ec.message()));
    return static_cast<int>(acceptor_.local_endpoint().port());
  }

  void Run() {
    signals_.async_wait([this](beast::error_code ec, int) {
      if (!ec) Shutdown();
    });
    DoAccept();
    ScheduleHeartbeat();
    ScheduleSweep();
    std::vector<std::thread> threads;
    for (int i = 1; i < std::max(1, limits_.io_threads); ++i) threads.emplace_back([this] { ioc_.run(); });
    ioc_.run();
    for (auto& t : threads) t.join();
    workers_.join();
    std::thread stopper;
    {
      std::lock_guard<std::mutex> l(mu_);
      stopper = std::move(stopper_);
    }
    if (stopper.joinable()) stopper.join();
  }

  void Shutdown();

  void Register(Session* s) {
    std::lock_guard<std::mutex> l(mu_);
    sessions_.insert(s);
  }
  void Unregister(Session* s) {
    std::lock_guard<std::mutex> l(mu_);
    sessions_.erase(s);
    cv_.notify_all();
  }

  bool stopping() const { return stopping_.load(); }
  bool sessions_empty() {
    std::lock_guard<std::mutex> l(mu_);
    return sessions_.empty();
  }
  Api& api() { return api_; }
  Hubs& hubs() { return hubs_; }
  Metrics& metrics() { return metrics_; }
  const ServerLimits& limits() const { return limits_; }
  net::thread_pool& workers() { return workers_; }
  MemoryTrimmer& trimmer() { return trimmer_; }

 private:
  void DoAccept();
  void ScheduleSweep();
  void ScheduleHeartbeat() {
    heartbeat_.expires_after(limits_.heartbeat);
    heartbeat_.async_wait([this](beast::error_code ec) {
      if (ec || stopping_) return;
      hubs_.Heartbeat();
      ScheduleHeartbeat();
    });
  }

  Api& api_;
  Hubs& hubs_;
  Metrics& metrics_;
  ServerLimits limits_;
  net::io_context ioc_;
  tcp::acceptor acceptor_;
  net::signal_set signals_;
  net::steady_timer heartbeat_;
  net::steady_timer sweep_;  // closes connections past their request deadline
  net::thread_pool workers_;
  MemoryTrimmer trimmer_;
  // A trim after each burst of change sets (sampled by the sweep; I/O threads run the sweep
  // one at a time, the timer's handler never overlaps itself).
  BurstWatch burst_{kBurstChangeSets};
  BurstWatch backlog_{kBurstBacklogBytes};
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_set<Session*> sessions_;  // REQUIRES: mu_
  std::thread stopper_;                    // REQUIRES: mu_
};

// One connection: plain request/response, or, after a stream route, an SSE stream.
class Session : public std::enable_shared_from_this<Session>, public StreamSink {
 public:
  Session(tcp::socket&& socket, HttpServer::Impl& server)
      : stream_(std::move(socket)), server_(server), buffer_(64 * 1024) {
    server_.metrics().open_connections++;
  }
  // Every path that ends a session while the server runs goes through DoClose(), which
  // unregisters it; only at teardown, when the io_context destroys pending handlers after
  // Impl's lock and set are gone, does a session die without it (and then nothing sweeps).
  ~Session() override {
    server_.metrics().open_connections--;
    if (streaming_) server_.metrics().open_streams--;
  }

  void Start() {
    server_.Register(this);
    net::dispatch(stream_.get_executor(), beast::bind_front_handler(&Session::DoRead, shared_from_this()));
  }

  // Shutdown: idle connections close now, busy ones after their response, streams get a
  // final comment.
  void Stop() {
    auto self_or_null = weak_from_this().lock();  // null while being destroyed
    if (!self_or_null) return;
    net::post(stream_.get_executor(), [self = std::move(self_or_null)] {
      self->keep_alive_ = false;
      if (self->reading_) self->stream_.socket().cancel();
    });
  }

  // Called by the sweeper (HttpServer::Impl::ScheduleSweep) under the sessions lock.
  bool PastDeadline(int64_t now_ns) const { return deadline_ns_.load(std::memory_order_relaxed) < now_ns; }
  void Expire() {
    auto self_or_null = weak_from_this().lock();
    if (!self_or_null) return;
    net::post(stream_.get_executor(), [self = std::move(self_or_null)] {
      int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
      if (self->PastDeadline(now)) self->DoClose();
    });
  }

  // A stream's event, from any thread (the hub's sender, the heartbeat, this session's
  // strand). When nothing is queued or being written it goes straight to the socket from the
  // calling thread, without a trip through the I/O threads: a fan-out to 1,000 streams then
  // does not queue 1,000 handlers in front of the requests' responses. What the socket does
  // not take at once (a slow client) is queued and written by the strand, in order.
  void Send(std::shared_ptr<const std::string> chunk) override {
    std::unique_lock<std::mutex> l(send_mu_);
    if (send_closed_) return;
    long written = 0;  // what the socket took of `chunk` at once, or -errno
    if (queue_.empty() && !writing_ && fd_ >= 0) {
      ssize_t n = ::send(fd_, chunk->data(), chunk->size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      written = n < 0 ? -errno : n;
    }
    AfterDirectWrite(std::move(l), std::move(chunk), written);
  }

  // The hub's sender writes a round's chunks in batches (send_batch.h): the same as Send, with
  // the socket write submitted by the batch between these two calls.
  int BeginDirectSend() override {
    send_mu_.lock();
    if (send_closed_ || !queue_.empty() || writing_ || fd_ < 0) {
      send_mu_.unlock();
      return -1;
    }
    return fd_;
  }
  void EndDirectSend(std::shared_ptr<const std::string> chunk, long result) override {
    AfterDirectWrite(std::unique_lock<std::mutex>(send_mu_, std::adopt_lock), std::move(chunk), result);
  }

  void Close(std::shared_ptr<const std::string> last) override {
    if (last) Send(std::move(last));
    net::post(stream_.get_executor(), [self = shared_from_this()]() mutable {
      self->close_after_drain_ = true;
      std::unique_lock<std::mutex> l(self->send_mu_);
      bool writing = self->writing_;
      l.unlock();
      if (!writing) self->DoClose();
    });
  }

 private:
  // `written`: what a write of `chunk` straight to the socket returned (bytes, or -errno), 0
  // when none was tried. Queues the rest (a slow client), or closes on a socket error.
  // REQUIRES: `l` holds send_mu_.
  void AfterDirectWrite(std::unique_lock<std::mutex> l, std::shared_ptr<const std::string> chunk, long written) {
    if (written == static_cast<long>(chunk->size())) return;
    if (written < 0 && written != -EAGAIN && written != -EWOULDBLOCK) {
      l.unlock();
      net::post(stream_.get_executor(), [self = shared_from_this()] { self->DoClose(); });
      return;
    }
    // The rest is queued as a position in the shared chunk, never as a copy: under a burst a
    // round's buffer reaches every stream whose socket is full, and 1,000 copies of it were
    // hundreds of MB.
    size_t offset = written > 0 ? static_cast<size_t>(written) : 0;
    if (queue_.size() >= server_.limits().stream_queue_limit) {
      send_closed_ = true;
      l.unlock();
      server_.metrics().streams_dropped_slow++;
      // The client reconnects with Last-Event-ID and catches up.
      net::post(stream_.get_executor(), [self = shared_from_this()] { self->DoClose(); });
      return;
    }
    queue_.push_back({std::move(chunk), offset});
    if (writing_) return;
    writing_ = true;
    l.unlock();
    net::post(stream_.get_executor(), [self = shared_from_this()] { self->DoWrite(); });
  }

  void DoRead() {
    if (server_.stopping()) return DoClose();
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_.limits().max_header_bytes));
    parser_->body_limit(server_.limits().max_body_bytes);
    // The deadline covers reading the request, handling it and writing the response; the
    // sweeper enforces it. (A tcp_stream timeout would arm and cancel a timer for every read
    // and write: measurable at 50k requests/s.)
    ArmDeadline(server_.limits().read_timeout);
    reading_ = true;
    http::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&Session::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, std::size_t) {
    reading_ = false;
    if (ec == http::error::header_limit) return SendErrorAndClose(431, "request_header_fields_too_large", "headers larger than the limit");
    if (ec == http::error::body_limit) return SendErrorAndClose(413, "payload_too_large", StrCat("body larger than ", server_.limits().max_body_bytes, " bytes"));
    // A slow sender (or an idle keep-alive connection) past the read deadline: tcp_stream has
    // already closed the socket, so there is no 408 to send.
    if (ec == beast::error::timeout) return DoClose();
    if (ec == http::error::buffer_overflow) return SendErrorAndClose(431, "request_header_fields_too_large", "request too large");
    if (ec && ec.category() == beast::error_code(http::error::end_of_stream).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
      return SendErrorAndClose(400, "bad_request", StrCat("malformed HTTP: ", ec.message()));
    }
    if (ec) return DoClose();

    auto& msg = parser_->get();
    Request req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    std::string_view target = req.target;
    size_t q = target.find('?');
    req.raw_path = std::string(target.substr(0, q));
    if (!PercentDecode(req.raw_path, req.path)) {
      return SendErrorAndClose(400, "bad_request", "malformed percent-encoding in the path");
    }
    if (q != std::string_view::npos) req.query = ParseQuery(target.substr(q + 1));
    // Only the headers the handlers read are copied (names lower-cased): copying every
    // header of every request shows up at 50k requests/s.
    static constexpr std::string_view kWanted[] = {"authorization", "x-api-key", "if-match", "if-none-match",
                                                   "last-event-id", "host", "origin", "x-forwarded-proto",
                                                   "x-forwarded-host", "accept-encoding"};
    for (const auto& field : msg) {
      std::string_view raw = field.name_string();
      char lower[24];
      if (raw.size() > sizeof lower) continue;
      for (size_t i = 0; i < raw.size(); ++i) {
        char c = raw[i];
        lower[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
      }
      std::string_view name(lower, raw.size());
      for (std::string_view w : kWanted) {
        if (name == w) {
          req.headers.emplace_back(std::string(name), std::string(field.value()));
          break;
        }
      }
    }
    req.body = std::move(msg.body());
    keep_alive_ = keep_alive_ && msg.keep_alive() && !server_.stopping();
    version_ = msg.version();
    started_ = std::chrono::steady_clock::now();
    parser_.reset();
    method_ = req.method;
    if (Api::Blocking(req)) {
      // The request is in: a write that may commit is always answered, however long it waits
      // for its turn, the fsync and publication; only the response's write is bounded
      // (RespondFromWorker arms a deadline for what the socket did not take at once).
      DisarmDeadline();
      blocking_ = true;
      {
        std::lock_guard<std::mutex> l(send_mu_);
        fd_ = stream_.socket().native_handle();
      }
      net::post(server_.workers(), [self = shared_from_this(), req = std::move(req), keep_alive = keep_alive_]() mutable {
        self->server_.api().HandleBlocking(req, [&](Response r) {
          if (r.stream) {  // not a blocking route's answer today; handled as any other request's
            net::post(self->stream_.get_executor(), [self, r = std::move(r)]() mutable { self->OnResponse(std::move(r)); });
          } else {
            self->RespondFromWorker(std::move(r), keep_alive);
          }
        });
        size_t body_bytes = req.body.size();
        req = Request();
        if (body_bytes >= kLargeBody) self->server_.trimmer().Request();
      });
      return;
    }
    OnResponse(server_.api().Handle(req));
  }

  void OnResponse(Response r) {
    if (r.stream && static_cast<size_t>(std::max<int64_t>(server_.metrics().open_streams.load(), 0)) >= server_.limits().max_streams) {
      Response busy = ErrorResponse(503, "unavailable", "too many open streams; retry later");
      busy.route = r.route;
      busy.headers.emplace_back("Retry-After", "5");
      r = std::move(busy);
    }
    Record(r);
    if (r.stream) return StartStream(*r.stream);
    out_.clear();
    SerializeResponse(r, keep_alive_, out_, /*inline_shared_body=*/false);
    if (r.shared_body != nullptr && SendsBody(r)) {
      shared_body_ = std::move(r.shared_body);  // written after out_, from where it is
      shared_view_ = r.shared_view;
    }
    // The request's deadline (DoRead) still runs and bounds this write too; after a blocking
    // write, whose deadline was lifted, a write deadline of its own.
    if (blocking_) {
      blocking_ = false;
      ArmDeadline(server_.limits().write_timeout);
    }
    WriteOut(0);
  }

  // A blocking request's response, on the worker that handled it: written to the socket from
  // here when the socket takes it at once (it nearly always does), and only what it did not
  // take goes through the I/O threads. Posted whole to them, it waited until an I/O thread got
  // a core: with 1,000 streams fed on two cores that wait was 2.3 ms at p90 and 4.9 ms at p99
  // of an admin write's acknowledgement (docs/performance.md, "Scale"). The session's own
  // state is touched on its strand alone: here only what the request fixed before it was
  // posted (method, version, start) and the descriptor under send_mu_, which DoClose clears
  // before the socket is closed.
  void RespondFromWorker(Response r, bool keep_alive) {
    Record(r);
    std::string out;
    SerializeResponse(r, keep_alive, out, /*inline_shared_body=*/true);
    size_t sent = 0;
    {
      std::lock_guard<std::mutex> l(send_mu_);
      if (!send_closed_ && fd_ >= 0) {
        ssize_t n = ::send(fd_, out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) sent = static_cast<size_t>(n);
      }
    }
    net::post(stream_.get_executor(), [self = shared_from_this(), out = std::move(out), sent]() mutable {
      self->blocking_ = false;
      if (self->closed_) return;
      if (sent == out.size()) return self->AfterResponse({});
      self->out_ = std::move(out);
      self->ArmDeadline(self->server_.limits().write_timeout);
      self->WriteOut(sent);
    });
  }

  // The request's metrics and its log line.
  void Record(const Response& r) {
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    server_.metrics().RecordRequest(r.route, method_, r.stream ? 200 : r.status, seconds);
    if (server_.limits().log_requests) {
      Log(LogLevel::kDebug, "request",
          {{"method", method_}, {"route", r.route}, {"status", r.stream ? 200 : r.status},
           {"us", static_cast<int64_t>(seconds * 1e6)}});
    }
  }

  // On the strand: out_ from `offset` on, then AfterResponse.
  void WriteOut(size_t offset) {
    std::array<net::const_buffer, 2> buffers{net::buffer(out_) + offset,
                                             net::buffer(shared_view_.data(), shared_view_.size())};
    net::async_write(stream_.socket(), buffers, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (self->out_.capacity() > 64 * 1024) std::string().swap(self->out_);  // after a large response
      self->shared_body_.reset();
      self->shared_view_ = {};
      self->AfterResponse(ec);
    });
  }

  // On the strand, once the response is written: the next request, or the close.
  void AfterResponse(beast::error_code ec) {
    if (ec) return DoClose();
    if (linger_) return DoLinger();
    if (!keep_alive_) return DoClose();
    DoRead();
  }

  // 1xx, 204 and 304 have no body and no Content-Length; a HEAD response has the GET
  // response's Content-Length and no body.
  static bool StatusHasBody(int status) { return !(status == 204 || status == 304 || (status >= 100 && status < 200)); }
  bool SendsBody(const Response& r) const { return StatusHasBody(r.status) && method_ != "HEAD"; }

  // The whole response, head and body, into `out` (out_'s capacity is reused from request to
  // request): one buffer and one write, without Beast's message and serializer, which cost
  // several percent of a small request at 50k requests/s. A shared body is appended too when
  // `inline_shared_body`; otherwise the caller writes it after `out` (when SendsBody).
  void SerializeResponse(const Response& r, bool keep_alive, std::string& out, bool inline_shared_body) const {
    auto reason = http::obsolete_reason(static_cast<http::status>(r.status));
    StrAppend(&out, version_ == 10 ? "HTTP/1.0 " : "HTTP/1.1 ", r.status, " ",
              std::string_view(reason.data(), reason.size()), "\r\nServer: gonfalon\r\n");
    auto header = [&out](std::string_view name, std::string_view value) {
      // Values come from handlers; a line break in one would split the response.
      if (value.find_first_of("\r\n") != std::string_view::npos) return;
      StrAppend(&out, name, ": ", value, "\r\n");
    };
    if (!r.content_type.empty()) header("Content-Type", r.content_type);
    for (const auto& [k, v] : r.headers) header(k, v);
    if (StatusHasBody(r.status)) StrAppend(&out, "Content-Length: ", r.Body().size(), "\r\n");
    if (!keep_alive) {
      out += "Connection: close\r\n";
    } else if (version_ == 10) {
      out += "Connection: keep-alive\r\n";
    }
    out += "\r\n";
    if (!SendsBody(r)) return;
    if (r.shared_body == nullptr) {
      out += r.body;
    } else if (inline_shared_body) {
      out += r.shared_view;
    }
  }

  // After refusing a request whose body is still arriving: stop sending, read and discard
  // what the client is still sending (bounded in time), then close. Closing at once with unread
  // data would reset the connection and the client could lose the error response.
  void DoLinger() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.expires_after(std::chrono::seconds(2));
    stream_.async_read_some(net::buffer(discard_), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->DoClose();
      self->DoLinger();
    });
  }

  void SendErrorAndClose(int status, const char* code, const std::string& message) {
    keep_alive_ = false;
    linger_ = true;
    Response r = ErrorResponse(status, code, message);
    r.route = "rejected";
    started_ = std::chrono::steady_clock::now();
    method_ = parser_ && parser_->is_header_done() ? std::string(parser_->get().method_string()) : "?";
    parser_.reset();
    OnResponse(std::move(r));
  }

  void StartStream(const StreamRequest& s) {
    streaming_ = true;
    DisarmDeadline();  // a stream's writes have their own timeout (DoWrite)
    server_.metrics().open_streams++;
    buffer_.clear();
    buffer_.shrink_to_fit();
    {
      std::lock_guard<std::mutex> l(send_mu_);
      fd_ = stream_.socket().native_handle();
    }
    Send(std::make_shared<const std::string>(
        "HTTP/1.1 200 OK\r\nServer: gonfalon\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        "Connection: keep-alive\r\nX-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n"));
    auto hub = server_.hubs().Get(s.project, s.environment);
    if (!hub.ok()) return DoClose();
    if (s.kind == StreamRequest::Kind::kSdk) {
      server_.hubs().AddSdkStream(**hub, shared_from_this(), s.last_event_id, s.key_id);
    } else {
      server_.hubs().AddOfrepStream(**hub, shared_from_this(), s.key_id, s.client_side);
    }
    WatchForClose();
  }

  // A stream's client sends nothing; a read completes only when it goes away.
  void WatchForClose() {
    stream_.socket().async_read_some(net::buffer(discard_), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->DoClose();
      self->WatchForClose();
    });
  }

  // On the strand, with writing_ set by whoever queued the first chunk (Send).
  void DoWrite() {
    if (closed_) return;
    stream_.expires_after(server_.limits().write_timeout);
    // Everything queued goes in one gathered write (up to 64 chunks): a stream that fell
    // behind catches up with one system call, not one per event. Chunks queued meanwhile are
    // appended behind these (the strings themselves never move).
    std::vector<Queued> chunks;
    {
      std::lock_guard<std::mutex> l(send_mu_);
      size_t n = std::min<size_t>(queue_.size(), 64);
      chunks.assign(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
    }
    std::vector<net::const_buffer> buffers;
    buffers.reserve(chunks.size());
    for (const auto& c : chunks) buffers.push_back(net::buffer(*c.chunk) + c.offset);
    net::async_write(stream_.socket(), buffers, [self = shared_from_this(), chunks = std::move(chunks)](beast::error_code ec, std::size_t sent) {
      self->server_.metrics().stream_backlog_bytes_sent.fetch_add(sent, std::memory_order_relaxed);
      std::unique_lock<std::mutex> l(self->send_mu_);
      if (ec || self->closed_) {
        self->queue_.clear();
        self->writing_ = false;
        l.unlock();
        return self->DoClose();
      }
      self->queue_.erase(self->queue_.begin(), self->queue_.begin() + static_cast<std::ptrdiff_t>(chunks.size()));
      if (!self->queue_.empty()) {
        l.unlock();
        return self->DoWrite();
      }
      self->writing_ = false;
      // Caught up: a queue that grew while the client lagged (up to stream_queue_limit entries,
      // 12 KB) is not kept for every stream that once fell behind.
      if (self->queue_.capacity() > kKeptQueueCapacity) std::vector<Queued>().swap(self->queue_);
      l.unlock();
      self->stream_.expires_never();
      if (self->close_after_drain_) self->DoClose();
    });
  }

  void ArmDeadline(std::chrono::steady_clock::duration d) {
    deadline_ns_.store((std::chrono::steady_clock::now() + d).time_since_epoch().count(), std::memory_order_relaxed);
  }
  void DisarmDeadline() { deadline_ns_.store(std::numeric_limits<int64_t>::max(), std::memory_order_relaxed); }

  void DoClose() {
    if (closed_) return;
    closed_ = true;
    DisarmDeadline();
    {
      // After this no thread sends to the descriptor, which closing may hand to a new connection.
      std::lock_guard<std::mutex> l(send_mu_);
      send_closed_ = true;
      fd_ = -1;
      queue_.clear();  // an in-flight write holds its own references to its chunks
    }
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
    server_.Unregister(this);
  }

  beast::tcp_stream stream_;
  HttpServer::Impl& server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::string method_;
  unsigned version_ = 11;
  bool keep_alive_ = true;
  bool reading_ = false;
  bool blocking_ = false;  // the request in progress runs on the worker pool (Api::Blocking)
  bool streaming_ = false;
  bool closed_ = false;
  bool close_after_drain_ = false;
  bool linger_ = false;
  std::chrono::steady_clock::time_point started_;
  std::atomic<int64_t> deadline_ns_{std::numeric_limits<int64_t>::max()};  // steady clock
  // A stream's outgoing events (Send): what the socket did not take at once, in order.
  std::mutex send_mu_;
  struct Queued {
    std::shared_ptr<const std::string> chunk;  // shared with the other streams
    size_t offset = 0;                         // where this stream's write of it resumes
  };
  static constexpr size_t kKeptQueueCapacity = 16;
  std::vector<Queued> queue_;  // REQUIRES: send_mu_
  bool writing_ = false;      // REQUIRES: send_mu_; the strand writes (or is about to write) queue_
  bool send_closed_ = false;  // REQUIRES: send_mu_
  int fd_ = -1;               // REQUIRES: send_mu_; the socket, while a stream may send to it
  std::string out_;  // the response being written
  std::shared_ptr<const std::string> shared_body_;  // and its shared body, written after out_
  std::string_view shared_view_;
  char discard_[64];
};

void HttpServer::Impl::DoAccept() {
  acceptor_.async_accept(net::make_strand(ioc_), [this](beast::error_code ec, tcp::socket socket) {
    if (ec) {
      if (!acceptor_.is_open() || stopping_) return;
      return DoAccept();
    }
    size_t open;
    {
      std::lock_guard<std::mutex> l(mu_);
      open = sessions_.size();
    }
    // Streams do not count against the connection limit (they have their own, max_streams).
    int64_t streams = std::max<int64_t>(metrics_.open_streams.load(), 0);
    size_t plain = open > static_cast<size_t>(streams) ? open - static_cast<size_t>(streams) : 0;
    if (plain >= limits_.max_connections || stopping_) {
      static const std::string body =
          "{\"error\":{\"code\":\"unavailable\",\"message\":\"too many connections; retry later\"}}";
      static const std::string busy =
          StrCat("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n",
                 "Content-Length: ", body.size(), "\r\n\r\n", body);
      beast::error_code ignored;
      socket.non_blocking(true, ignored);
      socket.write_some(net::buffer(busy), ignored);
      socket.close(ignored);
    } else {
      socket.set_option(tcp::no_delay(true), ec);
      std::make_shared<Session>(std::move(socket), *this)->Start();
    }
    DoAccept();
  });
}

// Every 100 ms: sessions past their deadline (a slow sender, an idle keep-alive connection, a
// response the client does not read) are closed. A deadline is thus enforced within 100 ms.
void HttpServer::Impl::ScheduleSweep() {
  sweep_.expires_after(std::chrono::milliseconds(100));
  sweep_.async_wait([this](beast::error_code ec) {
    if (ec) return;
    int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
    {
      std::lock_guard<std::mutex> l(mu_);
      for (Session* s : sessions_) {
        if (s->PastDeadline(now)) s->Expire();
      }
    }
    bool burst_ended = burst_.Sample(metrics_.change_sets_published.load(std::memory_order_relaxed));
    bool caught_up = backlog_.Sample(metrics_.stream_backlog_bytes_sent.load(std::memory_order_relaxed));
    if (burst_ended || caught_up) trimmer_.Request();
    if (!stopping_ || !sessions_empty()) ScheduleSweep();
  });
}

void HttpServer::Impl::Shutdown() {
  if (stopping_.exchange(true)) return;
  api_.set_ready(false);
  net::post(ioc_, [this] {
    beast::error_code ec;
    acceptor_.close(ec);
    signals_.cancel(ec);
    heartbeat_.cancel();
  });
  hubs_.CloseAll("server shutting down");
  {
    std::lock_guard<std::mutex> l(mu_);
    for (Session* s : sessions_) s->Stop();
  }
  // Wait (off the I/O threads) for in-flight requests to finish, then stop. Run() joins it.
  std::lock_guard<std::mutex> l(mu_);
  stopper_ = std::thread([this] {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, limits_.shutdown_grace, [&] { return sessions_.empty(); });
    l.unlock();
    ioc_.stop();
  });
}

HttpServer::HttpServer(Api& api, Hubs& hubs, Metrics& metrics, ServerLimits limits)
    : impl_(std::make_unique<Impl>(api, hubs, metrics, limits)) {}
HttpServer::~HttpServer() = default;
absl::StatusOr<int> HttpServer::Listen(const std::string& host, int port) { return impl_->Listen(host, port); }
void HttpServer::Run() { impl_->Run(); }
void HttpServer::Shutdown() { impl_->Shutdown(); }

}  // namespace gonfalon::server
