#include "gonfalon/sdk/client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <algorithm>
#include <condition_variable>
#include <map>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "backoff.h"
#include "gonfalon/rules/change_set.h"
#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/parallel_threads.h"
#include "gonfalon/rules/per_thread_cache.h"
#include "gonfalon/rules/snapshot_cell.h"
#include "gonfalon/rules/str_cat.h"
#include "sse_parser.h"

namespace gonfalon::sdk {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using rules::Value;

namespace {

// Exposure counters: one slot per (flag, variation + 1), slot 0 of each flag for "no
// variation" (the caller's default), laid out by flag ordinal (Snapshot::FlagOrdinal). Each
// evaluating thread counts in a shard of its own — a plain relaxed load and store, no locked
// instruction, no shared cache line — and the flusher sends the growth of every shard since it
// last looked. Successive snapshots share one Counters while the layout still fits them (no
// new flag, no changed variation count), so a change costs nothing here.
struct Counters {
  struct Shard {
    explicit Shard(size_t n) : counts(std::make_unique<std::atomic<uint64_t>[]>(n)), reported(n, 0) {}
    std::unique_ptr<std::atomic<uint64_t>[]> counts;  // written by one thread only
    std::vector<uint64_t> reported;                   // the flusher's: what was already sent
  };
  const uint64_t instance = rules::NextInstanceId();  // tells tables apart in per-thread caches
  std::vector<uint32_t> base;     // ordinal_bound() + 1 entries; base[o + 1] ends flag o's slots
  std::vector<std::string> keys;  // by ordinal; "" for none
  size_t slots = 0;
  mutable std::mutex shards_mu;  // guards `shards` (taken once per thread and by the flusher)
  mutable std::vector<std::unique_ptr<Shard>> shards;

  explicit Counters(const rules::Snapshot& snap) {
    const uint32_t bound = snap.ordinal_bound();
    std::vector<uint32_t> sizes(bound, 0);
    keys.resize(bound);
    for (size_t i = 0; i < snap.flag_count(); ++i) {
      const auto& f = snap.flag(i);
      uint32_t o = snap.FlagOrdinal(f);
      sizes[o] = static_cast<uint32_t>(rules::FlagModel(f).variations.size() + 1);
      keys[o] = rules::FlagModel(f).key;
    }
    base.reserve(bound + 1);
    for (uint32_t o = 0; o < bound; ++o) {
      base.push_back(static_cast<uint32_t>(slots));
      slots += sizes[o];
    }
    base.push_back(static_cast<uint32_t>(slots));
  }
  // Whether this layout still fits `snap`, whose flags differ from the snapshot it was made for
  // only in `changed` (a removed flag keeps its slots, unused).
  bool Fits(const rules::Snapshot& snap, const std::vector<std::string>& changed) const {
    if (snap.ordinal_bound() + 1 != base.size()) return false;
    for (const std::string& k : changed) {
      const auto* f = snap.FindFlag(k);
      if (f == nullptr) continue;
      uint32_t o = snap.FlagOrdinal(*f);
      if (keys[o] != k || base[o + 1] - base[o] != rules::FlagModel(*f).variations.size() + 1) return false;
    }
    return true;
  }
  Shard* NewShard() const {
    std::lock_guard<std::mutex> l(shards_mu);
    shards.push_back(std::make_unique<Shard>(slots));
    return shards.back().get();
  }
};

// What evaluations read: the snapshot, and the counters (null when events are off).
struct Published {
  std::shared_ptr<const rules::Snapshot> snap;
  std::shared_ptr<const Counters> counters;
};
}  // namespace

class Client::Impl {
 public:
  explicit Impl(Config cfg)
      : cfg_(std::move(cfg)), id_(rules::NextInstanceId()), counting_(cfg_.send_events && !cfg_.offline) {
    if (!cfg_.logger) {
      cfg_.logger = [](LogLevel level, std::string_view msg) {
        if (level >= LogLevel::kWarn) std::fprintf(stderr, "gonfalon sdk: %.*s\n", static_cast<int>(msg.size()), msg.data());
      };
    }
    if (cfg_.offline) {
      std::string err;
      if (!LoadFile(cfg_.flag_file, DataSource::kFile, err)) SetError(StrCat("offline flag file: ", err));
      std::lock_guard<std::mutex> l(mu_);
      state_ = DataSourceState::kOff;
      return;
    }
    if (!cfg_.cache_file.empty()) {
      std::string err;
      if (!LoadFile(cfg_.cache_file, DataSource::kCache, err)) Log(LogLevel::kInfo, StrCat("no usable cache: ", err));
    }
    thread_ = std::thread([this] { StreamLoop(); });
    if (counting_) flusher_ = std::thread([this] { FlushLoop(); });
  }

  ~Impl() { Close(); }

  void Track(std::string_view event, const rules::Context& ctx, std::optional<double> value) {
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

  void Flush() {
    if (!counting_) return;
    std::unique_lock<std::mutex> l(events_mu_);
    uint64_t want = flushes_done_ + 1;
    flush_requested_ = true;
    flush_cv_.notify_all();
    flush_cv_.wait_for(l, cfg_.connect_timeout * 2 + std::chrono::seconds(1),
                       [&] { return flushes_done_ >= want || flusher_stopped_; });
  }

  void Close() {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (closing_) return;
      closing_ = true;
      state_ = DataSourceState::kOff;
      if (ioc_ != nullptr) ioc_->stop();
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    MaybeWriteCache(/*now=*/true);  // a change not yet written
    {
      std::lock_guard<std::mutex> l(events_mu_);
      stopping_events_ = true;  // the flusher sends what is pending once more, then stops
    }
    flush_cv_.notify_all();
    if (flusher_.joinable()) flusher_.join();
  }

  bool WaitForInitialization(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, timeout, [&] { return from_stream_ || closing_ || state_ == DataSourceState::kOff; });
    return initialized_;
  }

  // The snapshot for this thread: a cached pointer, re-loaded only after a publish.
  const Published* Current() {
    // Keyed by client id (never reused), so a destroyed client's entry is never read again.
    struct ClientReaderTag;
    using Readers = rules::PerThreadCache<ClientReaderTag, char, std::unique_ptr<rules::PublishedCell<Published>::Reader>, 4>;
    auto& reader = Readers::Get(id_, [&] { return std::make_unique<rules::PublishedCell<Published>::Reader>(cell_); });
    return reader->Get();
  }

  // This thread's shard of `c` (made on first use; `c` owns it).
  static Counters::Shard* ShardFor(const Counters& c) {
    // By the table's instance id, not its address: a new table may reuse a freed one's.
    struct ShardTag;
    using Shards = rules::PerThreadCache<ShardTag, char, Counters::Shard*, 2>;
    return Shards::Get(c.instance, [&] { return c.NewShard(); });
  }

  template <typename T, typename Extract>
  Detail<T> Eval(const rules::Context& ctx, std::string_view key, T def, Extract extract) {
    Detail<T> out{std::move(def), -1, {}};
    const Published* p = Current();
    if (p == nullptr) {
      out.reason.kind = rules::ReasonKind::kError;
      out.reason.error_kind = rules::ErrorKind::kClientNotReady;
      return out;
    }
    const auto* flag = p->snap->FindFlag(key);
    if (flag == nullptr) {
      out.reason.kind = rules::ReasonKind::kError;
      out.reason.error_kind = rules::ErrorKind::kFlagNotFound;
      return out;
    }
    rules::Detail d = rules::Evaluate(*p->snap, *flag, ctx);
    if (p->counters != nullptr) {
      const Counters& counters = *p->counters;
      std::atomic<uint64_t>& c =
          ShardFor(counters)->counts[counters.base[p->snap->FlagOrdinal(*flag)] + static_cast<size_t>(d.variation_index + 1)];
      c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);  // one writer
    }
    out.reason = d.reason;
    if (d.value == nullptr) return out;  // an error, or off with no off variation: the default
    if (!extract(*d.value, out.value)) {
      out.reason = rules::Reason{};
      out.reason.kind = rules::ReasonKind::kError;
      out.reason.error_kind = rules::ErrorKind::kWrongType;
      return out;
    }
    out.variation_index = d.variation_index;
    // The reason's string_views point into the snapshot, which this thread's reader keeps
    // alive until its next Get(); callers that keep a Detail longer should copy them.
    return out;
  }

  Value AllFlags(const rules::Context& ctx) {
    Value out{rules::Object{}};
    const Published* p = Current();
    if (p == nullptr) return out;
    rules::EvaluateAll(*p->snap, ctx, [&](std::string_view key, const rules::Detail& d) {
      if (d.value != nullptr) out.Set(key, *d.value);
    });
    return out;
  }

  uint64_t AddFlagListener(std::function<void(const std::string&)> fn) {
    auto entry = std::make_shared<FlagListener>();
    entry->fn = std::move(fn);
    std::lock_guard<std::mutex> l(listeners_mu_);
    flag_listeners_.emplace(++next_listener_, std::move(entry));
    return next_listener_;
  }

  uint64_t AddValueListener(std::string key, rules::Context ctx,
                            std::function<void(const Value&, const Value&)> fn) {
    Value current;
    if (auto p = cell_.Load()) {
      rules::Detail d = rules::Evaluate(*p->snap, key, ctx);
      if (d.value != nullptr) current = *d.value;
    }
    auto entry = std::make_shared<ValueListener>();
    entry->key = std::move(key);
    entry->ctx = std::move(ctx);
    entry->fn = std::move(fn);
    entry->last = std::move(current);
    std::lock_guard<std::mutex> l(listeners_mu_);
    value_listeners_.emplace(++next_listener_, std::move(entry));
    return next_listener_;
  }

  void RemoveListener(uint64_t id) {
    std::lock_guard<std::mutex> l(listeners_mu_);
    if (auto it = flag_listeners_.find(id); it != flag_listeners_.end()) {
      it->second->removed = true;
      flag_listeners_.erase(it);
    }
    if (auto it = value_listeners_.find(id); it != value_listeners_.end()) {
      it->second->removed = true;
      value_listeners_.erase(it);
    }
  }

  Status GetStatus() const {
    std::lock_guard<std::mutex> l(mu_);
    Status s;
    s.initialized = initialized_;
    s.state = state_;
    s.source = source_;
    s.last_error = last_error_;
    s.sequence = sequence_;
    if (initialized_) s.data_age = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - data_time_);
    std::lock_guard<std::mutex> e(events_mu_);
    s.events_dropped = events_dropped_;
    return s;
  }

 private:
  // Listeners are shared with a notification in progress, which runs them without the lock
  // (so that a listener may add or remove listeners); `removed` stops calls not yet made.
  struct FlagListener {
    std::function<void(const std::string&)> fn;
    std::atomic<bool> removed{false};
  };
  struct ValueListener {
    std::string key;
    rules::Context ctx;
    std::function<void(const Value&, const Value&)> fn;
    Value last;  // only the stream thread reads or writes it after registration
    std::atomic<bool> removed{false};
  };

  void Log(LogLevel level, std::string_view msg) { cfg_.logger(level, msg); }
  void SetError(std::string err) {
    Log(LogLevel::kWarn, err);
    std::lock_guard<std::mutex> l(mu_);
    last_error_ = std::move(err);
  }

  bool LoadFile(const std::string& path, DataSource source, std::string& err) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      err = StrCat("cannot open ", path);
      return false;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    absl::StatusOr<rules::Environment> env =
        rules::ParseEnvironment(ss.str(), {}, rules::ThreadsParallelFor(cfg_.compile_threads));
    if (!env.ok()) {
      err = StrCat(path, ": ", env.status().message());
      return false;
    }
    PublishAll(std::move(*env), source);
    return true;
  }

  // Makes a whole new data set current (a `put`, the cache, the flag file): every flag whose
  // version differs from what was served counts as changed.
  void PublishAll(rules::Environment env, DataSource source) {
    auto snap = rules::Snapshot::Build(std::move(env), rules::ThreadsParallelFor(cfg_.compile_threads));
    std::shared_ptr<const rules::Snapshot> old;
    {
      std::lock_guard<std::mutex> l(mu_);
      old = data_;
    }
    std::vector<std::string> changed;
    if (HasFlagListeners()) {
      for (size_t i = 0; i < snap->flag_count(); ++i) {
        const rules::Flag& f = rules::FlagModel(snap->flag(i));
        const auto* before = old != nullptr ? old->FindFlag(f.key) : nullptr;
        if (before == nullptr || rules::FlagModel(*before).version != f.version) changed.push_back(f.key);
      }
      if (old != nullptr) {
        for (size_t i = 0; i < old->flag_count(); ++i) {
          const std::string& k = rules::FlagModel(old->flag(i)).key;
          if (snap->FindFlag(k) == nullptr) changed.push_back(k);
        }
      }
    }
    Publish(std::move(snap), source, std::move(changed), nullptr);
  }

  // Makes `snap` current: publishes it, writes the cache, tells listeners about `changed`.
  // `applied`: the flags a change set wrote (null: a whole new data set).
  void Publish(std::shared_ptr<const rules::Snapshot> snap, DataSource source, std::vector<std::string> changed,
               const std::vector<std::string>* applied) {
    const bool whole = applied == nullptr;
    {
      std::lock_guard<std::mutex> l(mu_);
      data_ = snap;
      sequence_ = snap->sequence();
      std::shared_ptr<const Counters> counters;
      if (counting_) {
        std::shared_ptr<const Published> current = cell_.Load();
        if (!whole && current != nullptr && current->counters->Fits(*snap, *applied)) {
          counters = current->counters;
        } else {
          counters = std::make_shared<const Counters>(*snap);
          // The old counters still count for readers that have not moved on: the flusher
          // drains them until nobody else holds them.
          if (current != nullptr) retired_.push_back(current->counters);
        }
      }
      cell_.Publish(std::make_shared<const Published>(Published{snap, std::move(counters)}));
      initialized_ = true;
      source_ = source;
      data_time_ = Clock::now();
      if (source == DataSource::kStream) state_ = DataSourceState::kValid;
      if (source == DataSource::kStream) cache_dirty_ = true;
    }
    MaybeWriteCache(/*now=*/whole);
    NotifyListeners(*snap, changed);
    // WaitForInitialization returns only now, so listeners added after it never hear about
    // the initial data.
    if (source == DataSource::kStream) {
      std::lock_guard<std::mutex> l(mu_);
      from_stream_ = true;
    }
    cv_.notify_all();
  }

  bool HasFlagListeners() {
    std::lock_guard<std::mutex> l(listeners_mu_);
    return !flag_listeners_.empty();
  }

  // The cache is rewritten whole, so after a `changes` event at most once per
  // kCacheWriteInterval; a change left unwritten is written by a later event, a heartbeat or
  // Close.
  static constexpr std::chrono::seconds kCacheWriteInterval{1};
  void MaybeWriteCache(bool now) {
    if (cfg_.cache_file.empty()) return;
    std::shared_ptr<const rules::Snapshot> snap;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (!cache_dirty_ || data_ == nullptr) return;
      if (!now && Clock::now() - cache_written_ < kCacheWriteInterval) return;
      cache_dirty_ = false;
      cache_written_ = Clock::now();
      snap = data_;
    }
    std::string text = snap->PayloadJson();
    // Write aside, then rename: a crash leaves either the old cache or the new one.
    std::string tmp = cfg_.cache_file + ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out << text;
      out.flush();
      if (!out) {
        Log(LogLevel::kWarn, StrCat("cannot write cache ", tmp));
        return;
      }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, cfg_.cache_file, ec);
    if (ec) Log(LogLevel::kWarn, StrCat("cannot replace cache ", cfg_.cache_file, ": ", ec.message()));
  }

  // On the stream thread. The listeners run without listeners_mu_ held.
  void NotifyListeners(const rules::Snapshot& snap, const std::vector<std::string>& changed) {
    std::vector<std::shared_ptr<FlagListener>> flag_listeners;
    std::vector<std::shared_ptr<ValueListener>> value_listeners;
    {
      std::lock_guard<std::mutex> l(listeners_mu_);
      for (auto& [id, fl] : flag_listeners_) flag_listeners.push_back(fl);
      for (auto& [id, vl] : value_listeners_) value_listeners.push_back(vl);
    }
    for (const std::string& key : changed) {
      for (const auto& fl : flag_listeners) {
        if (!fl->removed) fl->fn(key);
      }
    }
    for (const auto& vl : value_listeners) {
      if (vl->removed) continue;
      rules::Detail d = rules::Evaluate(snap, vl->key, vl->ctx);
      Value now = d.value == nullptr ? Value() : *d.value;
      if (!(now == vl->last)) {
        Value old = std::move(vl->last);
        vl->last = now;
        vl->fn(old, now);
      }
    }
  }

  // --- the stream ---

  // Applies one SSE event; returns false if the stream must be dropped (bad data).
  bool OnEvent(const internal::SseEvent& e) {
    if (e.type == "put") {
      auto t0 = Clock::now();
      absl::StatusOr<rules::Environment> env =
          rules::ParseEnvironment(e.data, {}, rules::ThreadsParallelFor(cfg_.compile_threads));
      if (!env.ok()) {
        SetError(StrCat("bad put event: ", env.status().message()));
        return false;
      }
      size_t flags = env->flags.size();
      auto t1 = Clock::now();
      PublishAll(std::move(*env), DataSource::kStream);
      auto ms = [](Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
      Log(LogLevel::kInfo, StrCat("put: ", flags, " flags, ", e.data.size(), " bytes decoded in ", ms(t1 - t0),
                                  " ms, compiled and published in ", ms(Clock::now() - t1), " ms"));
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

  // One connection attempt; returns when the connection ends. Sets `refused` on 401/403.
  void Connect(bool& refused, Clock::time_point& connected_at) {
    auto [host, port] = HostPort();
    std::string url = host + ":" + port;
    net::io_context ioc;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (closing_) return;
      ioc_ = &ioc;
    }
    beast::tcp_stream stream(ioc);
    beast::flat_buffer buffer(64 * 1024);
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

  // --- events ---

  void FlushLoop() {
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

  // Swaps every exposure counter to zero (current and retired snapshots) and posts the counts
  // with the Track events; what cannot be delivered is dropped and counted.
  void SendEvents(std::vector<Value> metrics) {
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

  // One POST with connect and read deadlines; returns an error message, empty on 2xx.
  std::string Post(const std::string& target, const std::string& body) {
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

  std::pair<std::string, std::string> HostPort() const {
    std::string url = cfg_.base_url;
    if (url.rfind("http://", 0) == 0) url = url.substr(7);
    while (!url.empty() && url.back() == '/') url.pop_back();
    size_t colon = url.rfind(':');
    if (colon == std::string::npos) return {url, "80"};
    return {url.substr(0, colon), url.substr(colon + 1)};
  }

  void StreamLoop() {
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

  Config cfg_;
  const uint64_t id_;
  rules::PublishedCell<Published> cell_;
  const bool counting_ = false;  // set in the constructor: events on and not offline
  mutable std::mutex mu_;  // guards the fields below (never taken by evaluations)
  std::vector<std::shared_ptr<const Counters>> retired_;  // replaced counters not yet drained
  std::condition_variable cv_;
  std::shared_ptr<const rules::Snapshot> data_;  // what is served (the cell's snapshot)
  int64_t sequence_ = -1;                          // the last change set applied
  bool cache_dirty_ = false;                       // data_ differs from the cache file
  Clock::time_point cache_written_{};
  bool initialized_ = false;
  bool from_stream_ = false;
  bool closing_ = false;
  DataSourceState state_ = DataSourceState::kInitializing;
  DataSource source_ = DataSource::kNone;
  std::string last_error_;
  Clock::time_point data_time_{};
  net::io_context* ioc_ = nullptr;
  std::thread thread_;
  mutable std::mutex events_mu_;  // guards the event fields below (Track, Flush, the flusher)
  std::condition_variable flush_cv_;
  std::vector<Value> pending_metrics_;
  int64_t events_dropped_ = 0;
  uint64_t flushes_done_ = 0;
  bool flush_requested_ = false;
  bool stopping_events_ = false;
  bool flusher_stopped_ = false;
  std::thread flusher_;
  std::mutex listeners_mu_;  // guards the maps below; never held while a listener runs
  uint64_t next_listener_ = 0;
  std::map<uint64_t, std::shared_ptr<FlagListener>> flag_listeners_;
  std::map<uint64_t, std::shared_ptr<ValueListener>> value_listeners_;
};

namespace {
bool AsBool(const Value& v, bool& out) {
  if (!v.is_bool()) return false;
  out = v.as_bool();
  return true;
}
bool AsString(const Value& v, std::string& out) {
  if (!v.is_string()) return false;
  out = v.as_string();
  return true;
}
bool AsInt(const Value& v, int64_t& out) {
  if (!v.is_number()) return false;
  out = static_cast<int64_t>(v.as_number());  // LaunchDarkly truncates a non-integral number
  return true;
}
bool AsDouble(const Value& v, double& out) {
  if (!v.is_number()) return false;
  out = v.as_number();
  return true;
}
bool AsJson(const Value& v, Value& out) {
  out = v;
  return true;
}
}  // namespace

Client::Client(Config config) : impl_(std::make_unique<Impl>(std::move(config))) {}
Client::~Client() { impl_->Close(); }
bool Client::WaitForInitialization(std::chrono::milliseconds timeout) { return impl_->WaitForInitialization(timeout); }

Detail<bool> Client::BoolVariationDetail(const rules::Context& c, std::string_view k, bool d) { return impl_->Eval(c, k, d, AsBool); }
Detail<std::string> Client::StringVariationDetail(const rules::Context& c, std::string_view k, std::string d) { return impl_->Eval(c, k, std::move(d), AsString); }
Detail<int64_t> Client::IntVariationDetail(const rules::Context& c, std::string_view k, int64_t d) { return impl_->Eval(c, k, d, AsInt); }
Detail<double> Client::DoubleVariationDetail(const rules::Context& c, std::string_view k, double d) { return impl_->Eval(c, k, d, AsDouble); }
Detail<Value> Client::JsonVariationDetail(const rules::Context& c, std::string_view k, Value d) { return impl_->Eval(c, k, std::move(d), AsJson); }

bool Client::BoolVariation(const rules::Context& c, std::string_view k, bool d) { return BoolVariationDetail(c, k, d).value; }
std::string Client::StringVariation(const rules::Context& c, std::string_view k, std::string d) { return StringVariationDetail(c, k, std::move(d)).value; }
int64_t Client::IntVariation(const rules::Context& c, std::string_view k, int64_t d) { return IntVariationDetail(c, k, d).value; }
double Client::DoubleVariation(const rules::Context& c, std::string_view k, double d) { return DoubleVariationDetail(c, k, d).value; }
Value Client::JsonVariation(const rules::Context& c, std::string_view k, Value d) { return JsonVariationDetail(c, k, std::move(d)).value; }

Value Client::AllFlags(const rules::Context& ctx) { return impl_->AllFlags(ctx); }
void Client::Track(std::string_view event, const rules::Context& ctx, std::optional<double> value) {
  impl_->Track(event, ctx, value);
}
void Client::Flush() { impl_->Flush(); }
Client::ListenerId Client::OnFlagChange(std::function<void(const std::string&)> l) { return impl_->AddFlagListener(std::move(l)); }
Client::ListenerId Client::OnValueChange(std::string key, rules::Context ctx,
                                         std::function<void(const Value&, const Value&)> l) {
  return impl_->AddValueListener(std::move(key), std::move(ctx), std::move(l));
}
void Client::RemoveListener(ListenerId id) { impl_->RemoveListener(id); }
Status Client::GetStatus() const { return impl_->GetStatus(); }
void Client::Close() { impl_->Close(); }

}  // namespace gonfalon::sdk
