#pragma once
// Client::Impl: the SDK client behind gonfalon/sdk/client.h. One class, its members defined by
// subsystem so that a reader finds each by file name:
//   client.cc             evaluation, status, closing, and the public Client's methods
//   stream_connection.cc  the SSE connection to the server: connect, read, resume, back off
//   data_updates.cc       making new data current: a put, a change set, the cache or flag file
//   data_file.cc          reading the flag or cache file; writing the cache
//   listeners.cc          flag and value change listeners
//   event_sender.cc       custom events, exposure counts and unit exposures sent to the server
// exposure_counters.h holds the per-thread exposure counters, exposure_log.h the per-unit
// exposures of experiments. Internal to the SDK.

#include "gonfalon/sdk/client.h"

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
#include "exposure_counters.h"
#include "exposure_log.h"
#include "track_log.h"
#include "gonfalon/rules/change_set.h"
#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/parallel_threads.h"
#include "gonfalon/rules/per_thread_cache.h"
#include "gonfalon/rules/snapshot_cell.h"
#include "gonfalon/rules/str_cat.h"
#include "sse_parser.h"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace gonfalon::sdk {

using Clock = std::chrono::steady_clock;
using rules::Value;
using internal::Counters;
using internal::Published;

// A Track() call waiting for the next flush: the event, its value, and every key of the context
// by kind (the server joins it to the units of running experiments). The first kind is held
// inline, so that tracking for a single-kind context with short strings allocates nothing.
class Client::Impl {
 public:
  explicit Impl(Config cfg)
      : cfg_(std::move(cfg)),
        id_(rules::NextInstanceId()),
        counting_(cfg_.send_events && !cfg_.offline),
        exposure_log_(cfg_.event_capacity),
        track_log_(cfg_.event_capacity) {
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

  // Events (event_sender.cc).
  void Track(std::string_view event, const rules::Context& ctx, std::optional<double> value);
  void Flush();

  // Evaluation and status (client.cc).
  void Close();
  bool WaitForInitialization(std::chrono::milliseconds timeout);

  // The snapshot for this thread: a cached pointer, re-loaded only after a publish.
  const Published* Current();

  // This thread's shard of `c` (made on first use; `c` owns it).
  static Counters::Shard* ShardFor(const Counters& c);
  template <typename T, typename Extract>
  Detail<T> Eval(const rules::Context& ctx, std::string_view key, T def, Extract extract);
  Value AllFlags(const rules::Context& ctx);
  Status GetStatus() const;

  // Listeners (listeners.cc).
  uint64_t AddFlagListener(std::function<void(const std::string&)> fn);
  uint64_t AddValueListener(std::string key, rules::Context ctx,
                            std::function<void(const Value&, const Value&)> fn);
  void RemoveListener(uint64_t id);

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
  void SetError(std::string err);

  // The flag or cache file (data_file.cc).
  bool LoadFile(const std::string& path, DataSource source, std::string& err);

  // Making new data current (data_updates.cc).
  // Makes a whole new data set current (a `put`, the cache, the flag file): every flag whose
  // version differs from what was served counts as changed.
  void PublishAll(rules::Environment env, DataSource source);

  // Makes `snap` current: publishes it, writes the cache, tells listeners about `changed`.
  // `applied`: the flags a change set wrote (null: a whole new data set).
  void Publish(std::shared_ptr<const rules::Snapshot> snap, DataSource source, std::vector<std::string> changed,
               const std::vector<std::string>* applied);
  bool HasFlagListeners();  // listeners.cc

  // The cache is rewritten whole, so after a `changes` event at most once per
  // kCacheWriteInterval; a change left unwritten is written by a later event, a heartbeat or
  // Close.
  static constexpr std::chrono::seconds kCacheWriteInterval{1};
  void MaybeWriteCache(bool now);

  // On the stream thread. The listeners run without listeners_mu_ held.
  void NotifyListeners(const rules::Snapshot& snap, const std::vector<std::string>& changed);

  // The stream connection (stream_connection.cc).
  // Applies one SSE event; returns false if the stream must be dropped (bad data).
  bool OnEvent(const internal::SseEvent& e);

  // One connection attempt; returns when the connection ends. Sets `refused` on 401/403.
  void Connect(bool& refused, Clock::time_point& connected_at);
  std::pair<std::string, std::string> HostPort() const;
  void StreamLoop();

  // Sending events (event_sender.cc).
  void FlushLoop();

  // Records the unit's exposure when the evaluation came through an experiment rollout or a
  // flag or rule with trackEvents (client.cc).
  void RecordExposure(const rules::internal::CompiledFlag& flag, uint64_t flag_hash, const rules::Context& ctx,
                      const rules::Detail& d);

  // Swaps every exposure counter to zero (current and retired snapshots) and posts the counts,
  // the unit exposures and the Track events, in batches of at most kBatchItems items; what
  // cannot be delivered is dropped and counted.
  void SendEvents(internal::TrackRecords& metrics);
  static constexpr size_t kBatchItems = 2000;

  // Posts one batch under a fresh batch id; a batch that failed for a reason a retry can fix
  // (no connection, a timeout, 429, 5xx) is sent once more, with the same id, after a second,
  // so the server never counts it twice. Returns an error message, empty when delivered;
  // `unreachable` says the retry failed too in a way a retry should fix (the server is down).
  std::string PostBatch(rules::Value body, bool* unreachable);

  // One POST with connect and read deadlines; returns an error message, empty on 2xx.
  // `retry` says whether the failure is one a retry may fix.
  std::string Post(const std::string& target, const std::string& body, bool* retry = nullptr);

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
  Clock::time_point stream_opened_{};  // the stream thread's own: when the last stream's headers came
  bool initialized_ = false;
  bool from_stream_ = false;
  bool closing_ = false;
  DataSourceState state_ = DataSourceState::kInitializing;
  DataSource source_ = DataSource::kNone;
  std::string last_error_;
  Clock::time_point data_time_{};
  boost::asio::io_context* ioc_ = nullptr;  // the stream connection's, while it runs
  std::thread thread_;
  mutable std::mutex events_mu_;  // guards the event fields below (Track, Flush, the flusher)
  std::condition_variable flush_cv_;
  internal::ExposureLog exposure_log_;
  internal::TrackLog track_log_;  // has its own lock
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

}  // namespace gonfalon::sdk
