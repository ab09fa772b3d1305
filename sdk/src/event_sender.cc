#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <random>

#include "client_impl.h"

namespace gonfalon::sdk {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {
// 128 random bits as hex: a batch id that no other client or batch shares.
std::string NewBatchId() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(rng()));
  return buf;
}
}  // namespace

void Client::Impl::Track(std::string_view event, const rules::Context& ctx, std::optional<double> value) {
  if (!counting_) {
    std::lock_guard<std::mutex> l(events_mu_);
    ++events_dropped_;
    return;
  }
  track_log_.Append(event, value, exposure_log_.NotBefore(), ctx);
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
    l.unlock();
    internal::TrackRecords metrics = track_log_.Take();
    SendEvents(metrics);
    track_log_.Recycle(std::move(metrics));
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

void Client::Impl::SendEvents(internal::TrackRecords& metrics) {
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
      for (auto& [thread, shard] : t->shards) {
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
  int64_t dropped = 0;
  std::vector<internal::UnitExposureEvent> units = exposure_log_.Drain(dropped);
  if (dropped > 0) {
    std::lock_guard<std::mutex> l(events_mu_);
    events_dropped_ += dropped;
  }
  // Batches of at most kBatchItems items: the hourly counts go with the first.
  size_t next_metric = 0, next_unit = 0;
  bool first = true;
  while (first || next_metric < metrics.size() || next_unit < units.size()) {
    rules::Array metric_items, unit_items;
    size_t room = kBatchItems;
    for (; next_unit < units.size() && room > 0; ++next_unit, --room) {
      const auto& u = units[next_unit];
      unit_items.push_back(Value(rules::Object{{"flag", Value(u.flag)},
                                               {"variation", Value(u.variation)},
                                               {"flagVersion", Value(u.flag_version)},
                                               {"unitKind", Value(u.unit_kind)},
                                               {"unitKey", Value(u.unit_key)},
                                               {"time", Value(u.time_ms)}}));
    }
    for (; next_metric < metrics.size() && room > 0; ++next_metric, --room) {
      internal::TrackRecords::Record m;
      metrics.Next(m);
      rules::Object keys;
      keys.reserve(m.units);
      const char* cursor = m.unit_data;
      for (uint32_t u = 0; u < m.units; ++u) {
        auto [kind, key] = internal::TrackRecords::NextUnit(cursor);
        keys.emplace_back(std::string(kind), Value(std::string(key)));
      }
      Value e(rules::Object{{"event", Value(std::string(m.event))}, {"time", Value(m.time_ms)}, {"units", Value(std::move(keys))}});
      if (m.has_value) e.Set("value", Value(m.value));
      metric_items.push_back(std::move(e));
    }
    if (first && exposures.empty() && metric_items.empty() && unit_items.empty()) return;
    size_t count = metric_items.size() + unit_items.size();
    Value body(rules::Object{{"exposures", Value(first ? std::move(exposures) : rules::Array{})},
                             {"metrics", Value(std::move(metric_items))},
                             {"exposedUnits", Value(std::move(unit_items))}});
    first = false;
    bool unreachable = false;
    std::string error = PostBatch(std::move(body), &unreachable);
    if (!error.empty()) {
      // A server that refused this batch may take the next; one that failed twice in a way a
      // retry should have fixed is not asked again with the rest of this interval's events.
      if (unreachable) count += (metrics.size() - next_metric) + (units.size() - next_unit);
      Log(LogLevel::kWarn, StrCat(count, " events dropped: ", error));
      std::lock_guard<std::mutex> l(events_mu_);
      events_dropped_ += static_cast<int64_t>(count);
      if (unreachable) return;
    }
  }
}

std::string Client::Impl::PostBatch(Value body, bool* unreachable) {
  body.Set("batchId", Value(NewBatchId()));
  std::string json = rules::ToJson(body);
  bool retry = false;
  std::string error = Post("/sdk/v1/events", json, &retry);
  if (error.empty() || !retry) return error;
  {
    // Once more after a second, unless the client is closing.
    std::unique_lock<std::mutex> l(events_mu_);
    if (!stopping_events_) flush_cv_.wait_for(l, std::chrono::seconds(1), [&] { return stopping_events_; });
  }
  error = Post("/sdk/v1/events", json, &retry);
  *unreachable = !error.empty() && retry;
  return error;
}

std::string Client::Impl::Post(const std::string& target, const std::string& body, bool* retry) {
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
  if (!error.empty()) {
    if (retry != nullptr) *retry = true;  // no connection, or no answer in time
    return error;
  }
  if (res.result_int() / 100 != 2) {
    error = StrCat("HTTP ", res.result_int(), ": ", res.body());
    if (retry != nullptr) *retry = res.result_int() == 429 || res.result_int() >= 500;
  }
  return error;
}

}  // namespace gonfalon::sdk
