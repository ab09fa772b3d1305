#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "client_impl.h"

namespace gonfalon::sdk {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

bool Client::Impl::OnEvent(const internal::SseEvent& e) {
  if (e.type == "put") {
    auto t0 = Clock::now();
    absl::StatusOr<rules::Environment> env =
        rules::ParseEnvironment(rules::PaddedJson{e.data}, {}, rules::ThreadsParallelFor(cfg_.compile_threads));
    if (!env.ok()) {
      SetError(StrCat("bad put event: ", env.status().message()));
      return false;
    }
    size_t flags = env->flags.size();
    auto t1 = Clock::now();
    PublishAll(std::move(*env), DataSource::kStream);
    auto ms = [](Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
    Log(LogLevel::kInfo, StrCat("put: ", flags, " flags, ", e.data.size(), " bytes received ", ms(t0 - stream_opened_),
                                " ms after the stream opened, decoded in ", ms(t1 - t0), " ms, compiled and published in ",
                                ms(Clock::now() - t1), " ms"));
    return true;
  }
  if (e.type != "changes") return true;  // unknown events are ignored
  // The one decoder and the one "apply" of the wire format (rules/change_set.h and
  // Snapshot::Apply), shared with the server: all items decode, or none is applied; only
  // the named items are compiled.
  absl::StatusOr<rules::ChangeSetEvent> event = rules::DecodeChangeSetEvent(e.data);
  if (!event.ok()) {
    SetError(StrCat("bad changes event: ", event.status().message()));
    return false;
  }
  std::shared_ptr<const rules::Snapshot> current;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (data_ == nullptr || event->sequence <= sequence_) return true;  // already have it
    current = data_;
  }
  rules::AppliedChanges applied;
  absl::StatusOr<std::shared_ptr<const rules::Snapshot>> next = current->Apply(*event, &applied);
  if (!next.ok()) {
    SetError(StrCat("bad changes event: ", next.status().message()));
    return false;
  }
  if (applied.flags.empty() && applied.segments.empty()) {
    // Nothing observable changed (all items were stale); still record the sequence.
    std::lock_guard<std::mutex> l(mu_);
    sequence_ = event->sequence;
    data_time_ = Clock::now();
    return true;
  }
  // Listeners hear of every flag whose answer may have changed (a segment's users, and
  // flags depending on changed flags as prerequisites).
  std::vector<std::string> changed;
  if (HasFlagListeners()) changed = (*next)->AffectedFlags(applied);
  Publish(std::move(*next), DataSource::kStream, std::move(changed), &applied.flags);
  return true;
}

void Client::Impl::Connect(bool& refused, Clock::time_point& connected_at) {
  auto [host, port] = HostPort();
  std::string url = host + ":" + port;
  net::io_context ioc;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (closing_) return;
    ioc_ = &ioc;
  }
  beast::tcp_stream stream(ioc);
  // Beast reads at most what the buffer has room for (512 bytes while it is empty): reserved,
  // a 60 MB `put` takes ~1,000 reads instead of ~117,000.
  beast::flat_buffer buffer(64 * 1024);
  buffer.reserve(64 * 1024);
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);
  std::vector<char> body_buffer(256 * 1024);  // a `put` can be tens of MB
  char* body = body_buffer.data();
  bool bad_event = false;  // OnEvent refused an event (and said why): the stream is dropped
  internal::SseParser sse(
      [&](const internal::SseEvent& e) {
        if (bad_event || OnEvent(e)) return;
        bad_event = true;
        beast::error_code ignored;
        stream.socket().close(ignored);
      },
      [&](std::string_view) {
        {
          std::lock_guard<std::mutex> l(mu_);
          data_time_ = Clock::now();  // a heartbeat confirms the data is current
        }
        MaybeWriteCache(/*now=*/false);
      });
  std::string last_id;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (sequence_ >= 0 && initialized_) last_id = std::to_string(sequence_);
  }
  http::request<http::empty_body> req(http::verb::get, "/sdk/v1/stream", 11);
  req.set(http::field::host, url);
  req.set(http::field::authorization, "Bearer " + cfg_.sdk_key);
  req.set(http::field::accept, "text/event-stream");
  req.set(http::field::user_agent, "gonfalon-cpp-sdk/0.1");
  if (!last_id.empty()) req.set("Last-Event-ID", last_id);

  std::string error;
  std::function<void()> read_body;
  read_body = [&] {
    parser.get().body().data = body;
    parser.get().body().size = body_buffer.size();
    stream.expires_after(cfg_.read_timeout);
    // read_some: deliver each event as it arrives, not when the body buffer fills.
    http::async_read_some(stream, buffer, parser, [&](beast::error_code ec, std::size_t) {
      if (ec == http::error::need_buffer) ec = {};
      size_t n = body_buffer.size() - parser.get().body().size;
      if (n > 0) sse.Feed(std::string_view(body, n));
      if (bad_event) return;  // last_error keeps the reason, not the socket's
      if (ec) {
        error = ec == beast::error::timeout ? "no data or heartbeat within the read timeout" : ec.message();
        return;
      }
      if (parser.is_done()) {
        error = "the server ended the stream";
        return;
      }
      read_body();
    });
  };
  tcp::resolver resolver(ioc);
  resolver.async_resolve(host, port, [&](beast::error_code ec, tcp::resolver::results_type results) {
    if (ec) {
      error = StrCat("cannot resolve ", host, ": ", ec.message());
      return;
    }
    stream.expires_after(cfg_.connect_timeout);
    stream.async_connect(results, [&](beast::error_code ec, const tcp::endpoint&) {
      if (ec) {
        error = StrCat("cannot connect to ", cfg_.base_url, ": ", ec.message());
        return;
      }
      http::async_write(stream, req, [&](beast::error_code ec, std::size_t) {
        if (ec) {
          error = ec.message();
          return;
        }
        stream.expires_after(cfg_.read_timeout);
        http::async_read_header(stream, buffer, parser, [&](beast::error_code ec, std::size_t) {
          if (ec) {
            error = ec.message();
            return;
          }
          unsigned status = parser.get().result_int();
          if (status == 401 || status == 403) {
            refused = true;
            error = StrCat("the server refused the SDK key (HTTP ", status, ")");
            return;
          }
          if (status != 200) {
            error = StrCat("unexpected HTTP ", status, " from the stream");
            return;
          }
          connected_at = Clock::now();
          stream_opened_ = connected_at;
          {
            // Resumed with data already in hand: the server sends only what is missing
            // (maybe nothing), so an open stream means the data is current again.
            std::lock_guard<std::mutex> l(mu_);
            if (from_stream_) {
              state_ = DataSourceState::kValid;
              data_time_ = connected_at;
            }
          }
          read_body();
        });
      });
    });
  });
  ioc.run();
  {
    std::lock_guard<std::mutex> l(mu_);
    ioc_ = nullptr;
    if (closing_) return;
  }
  if (!error.empty()) SetError(error);
}

std::pair<std::string, std::string> Client::Impl::HostPort() const {
  std::string url = cfg_.base_url;
  if (url.rfind("http://", 0) == 0) url = url.substr(7);
  while (!url.empty() && url.back() == '/') url.pop_back();
  size_t colon = url.rfind(':');
  if (colon == std::string::npos) return {url, "80"};
  return {url.substr(0, colon), url.substr(colon + 1)};
}

void Client::Impl::StreamLoop() {
  internal::Backoff backoff(cfg_.initial_retry_delay, cfg_.max_retry_delay, cfg_.stable_connection);
  while (true) {
    bool refused = false;
    Clock::time_point connected_at{};
    Connect(refused, connected_at);
    std::unique_lock<std::mutex> l(mu_);
    if (closing_) return;
    if (refused) {
      state_ = DataSourceState::kOff;  // a bad key does not get better by retrying
      cv_.notify_all();
      return;
    }
    if (state_ == DataSourceState::kValid) state_ = DataSourceState::kInterrupted;
    if (connected_at != Clock::time_point{}) {
      backoff.Connected(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - connected_at));
    }
    auto delay = backoff.Next();
    cv_.wait_for(l, delay, [&] { return closing_; });
    if (closing_) return;
  }
}

}  // namespace gonfalon::sdk
