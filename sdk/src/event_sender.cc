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

void Client::Impl::Track(std::string_view event, const rules::Context& ctx, std::optional<double> value) {
  std::lock_guard<std::mutex> l(events_mu_);
  if (!counting_ || pending_metrics_.size() >= cfg_.event_capacity) {
    ++events_dropped_;
    return;
  }
  Value e(rules::Object{{"event", Value(event)},
                        {"time", Value(std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::system_clock::now().time_since_epoch()).count())}});
  if (value.has_value()) e.Set("value", Value(*value));
  (void)ctx;  // counted per environment; contexts are not sent (privacy by default)
  pending_metrics_.push_back(std::move(e));
}

void Client::Impl::Flush() {
  if (!counting_) return;
  std::unique_lock<std::mutex> l(events_mu_);
  uint64_t want = flushes_done_ + 1;
  flush_requested_ = true;
  flush_cv_.notify_all();
  flush_cv_.wait_for(l, cfg_.connect_timeout * 2 + std::chrono::seconds(1),
                     [&] { return flushes_done_ >= want || flusher_stopped_; });
}

void Client::Impl::FlushLoop() {
  std::unique_lock<std::mutex> l(events_mu_);
  while (true) {
    flush_cv_.wait_for(l, cfg_.flush_interval, [&] { return flush_requested_ || stopping_events_; });
    bool last = stopping_events_;
    flush_requested_ = false;
    std::vector<Value> metrics = std::move(pending_metrics_);
    pending_metrics_.clear();
    l.unlock();
    SendEvents(std::move(metrics));
    l.lock();
    ++flushes_done_;
    flush_cv_.notify_all();
    if (last) {
      flusher_stopped_ = true;
      flush_cv_.notify_all();
      return;
    }
  }
}

void Client::Impl::SendEvents(std::vector<Value> metrics) {
  std::vector<std::shared_ptr<const Counters>> tables;
  {
    std::lock_guard<std::mutex> l(mu_);
    tables = retired_;
    if (auto current = cell_.Load()) tables.push_back(current->counters);
  }
  rules::Array exposures;
  for (const auto& t : tables) {
    std::vector<uint64_t> grown(t->slots, 0);
    {
      std::lock_guard<std::mutex> l(t->shards_mu);
      for (auto& shard : t->shards) {
        for (size_t slot = 0; slot < t->slots; ++slot) {
          uint64_t now = shard->counts[slot].load(std::memory_order_relaxed);
          grown[slot] += now - shard->reported[slot];
          shard->reported[slot] = now;
        }
      }
    }
    for (size_t o = 0; o < t->keys.size(); ++o) {
      for (size_t slot = t->base[o]; slot < t->base[o + 1]; ++slot) {
        if (grown[slot] == 0) continue;
        exposures.push_back(Value(rules::Object{
            {"flag", Value(t->keys[o])},
            {"variation", Value(static_cast<int>(slot - t->base[o]) - 1)},
            {"count", Value(static_cast<int64_t>(std::min<uint64_t>(grown[slot], 1000000000)))}}));
      }
    }
  }
  {
    // Retired tables nobody else holds any more have been drained for the last time.
    std::lock_guard<std::mutex> l(mu_);
    tables.clear();
    retired_.erase(std::remove_if(retired_.begin(), retired_.end(),
                                  [](const std::shared_ptr<const Counters>& t) { return t.use_count() == 1; }),
                   retired_.end());
  }
  if (exposures.empty() && metrics.empty()) return;
  size_t count = metrics.size();
  std::string body = rules::ToJson(Value(rules::Object{{"exposures", Value(std::move(exposures))},
                                                       {"metrics", Value(rules::Array(std::move(metrics)))}}));
  std::string error = Post("/sdk/v1/events", body);
  if (!error.empty()) {
    Log(LogLevel::kWarn, StrCat("events dropped: ", error));
    std::lock_guard<std::mutex> l(events_mu_);
    events_dropped_ += static_cast<int64_t>(count);
  }
}

std::string Client::Impl::Post(const std::string& target, const std::string& body) {
  auto [host, port] = HostPort();
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  beast::flat_buffer buffer;
  http::request<http::string_body> req(http::verb::post, target, 11);
  req.set(http::field::host, host);
  req.set(http::field::authorization, "Bearer " + cfg_.sdk_key);
  req.set(http::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  http::response<http::string_body> res;
  std::string error;
  tcp::resolver resolver(ioc);
  resolver.async_resolve(host, port, [&](beast::error_code ec, tcp::resolver::results_type results) {
    if (ec) {
      error = ec.message();
      return;
    }
    stream.expires_after(cfg_.connect_timeout);
    stream.async_connect(results, [&](beast::error_code ec, const tcp::endpoint&) {
      if (ec) {
        error = ec.message();
        return;
      }
      http::async_write(stream, req, [&](beast::error_code ec, std::size_t) {
        if (ec) {
          error = ec.message();
          return;
        }
        http::async_read(stream, buffer, res, [&](beast::error_code ec, std::size_t) {
          if (ec) error = ec.message();
        });
      });
    });
  });
  ioc.run();
  if (error.empty() && res.result_int() / 100 != 2) error = StrCat("HTTP ", res.result_int(), ": ", res.body());
  return error;
}

}  // namespace gonfalon::sdk
