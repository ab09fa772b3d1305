#pragma once
// gonfalon::sdk::Client — evaluates flags in-process from a local copy of one environment,
// kept current over the server's SSE stream (DESIGN §6, docs/sdk.md).
//
// Evaluation never blocks and never throws: it reads the current compiled snapshot through a
// per-thread cached pointer (one atomic load in the steady state), and any problem — unknown
// flag, wrong type, no data yet — returns the caller's default with the matching reason.
// While the server is unreachable the last known data keeps serving; the stream reconnects
// with exponential backoff and jitter (1 s to 30 s, reset after a stable minute) and resumes
// with Last-Event-ID.
//
// Thread safety: every method may be called from any thread. Listeners run on the client's
// stream thread with no lock held: a listener may evaluate, add or remove listeners (itself
// included); it must not call Close(). RemoveListener() does not wait for a call already
// running on the stream thread, but no call starts after it returns.
//
//   gonfalon::sdk::Client client({.base_url = "http://127.0.0.1:8070", .sdk_key = key});
//   client.WaitForInitialization(std::chrono::seconds(5));
//   auto ctx = gonfalon::rules::Context::Builder("user", "alice").Build();
//   if (client.BoolVariation(ctx, "new-checkout", false)) { ... }

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "gonfalon/rules/context.h"
#include "gonfalon/rules/evaluator.h"
#include "gonfalon/rules/value.h"

namespace gonfalon::sdk {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

struct Config {
  std::string base_url = "http://127.0.0.1:8070";  // http://host:port
  std::string sdk_key;                             // a server-side SDK key (gfs_...)
  std::chrono::milliseconds connect_timeout{5000};
  // No byte (not even a heartbeat) for this long: the connection is taken as dead.
  std::chrono::milliseconds read_timeout{45000};
  std::chrono::milliseconds initial_retry_delay{1000};
  std::chrono::milliseconds max_retry_delay{30000};
  std::chrono::milliseconds stable_connection{60000};  // resets the retry schedule
  bool offline = false;     // no network: evaluate from flag_file
  std::string flag_file;    // offline mode: a payload as `gonfalon eval --data` reads
  // Optional: last known data, read at start; written after a `put` and at most once a second
  // after changes (the last change by the next heartbeat or Close at the latest).
  std::string cache_file;
  // Threads that compile a whole data set (a `put`, the cache, the flag file).
  int compile_threads = 2;
  // Once a whole data set is current, hand back to the system the memory its decoding used and
  // freed (glibc's malloc_trim: at 100,000 flags the process's RSS goes from +470 to +200 MB;
  // a few tens of ms, after WaitForInitialization has returned). Off for a process that
  // manages its heap itself.
  bool trim_memory_after_full_update = true;
  // Events, posted to /sdk/v1/events in the background every flush_interval: exposure counts
  // (per flag and variation), the Track() events (at most event_capacity held), and the units
  // exposed to experiment flags (and flags or rules with trackEvents), each (flag, variation,
  // unit) once per interval, at most event_capacity per interval. A batch that fails is
  // retried once with the same id; what cannot be sent is dropped and counted
  // (Status::events_dropped).
  bool send_events = true;
  std::chrono::milliseconds flush_interval{10000};
  size_t event_capacity = 10000;
  std::function<void(LogLevel, std::string_view)> logger;  // default: warnings and errors to stderr
};

enum class DataSourceState {
  kInitializing,  // no data from the stream yet
  kValid,         // streaming
  kInterrupted,   // lost the stream; serving the last known data while reconnecting
  kOff,           // offline mode, closed, or the key was refused (401/403): no reconnect
};

enum class DataSource { kNone, kStream, kCache, kFile };

struct Status {
  bool initialized = false;  // some data is being served (stream, cache or file)
  DataSourceState state = DataSourceState::kInitializing;
  DataSource source = DataSource::kNone;
  std::string last_error;
  int64_t sequence = -1;                   // of the data being served
  std::chrono::milliseconds data_age{0};   // since that data was last confirmed current
  int64_t events_dropped = 0;              // Track events over capacity or not deliverable
};

// The result of a ...VariationDetail call.
//
// Lifetime: `reason.rule_id` and `reason.prerequisite_key` are views into the flag data the
// evaluation used. They stay valid until the same thread's next evaluation through this
// client (which may move to newer data); copy them (std::string(d.reason.rule_id)) to keep
// them longer. `value` and the other fields are owned.
template <typename T>
struct Detail {
  T value;
  int variation_index = -1;
  rules::Reason reason;
};

class Client {
 public:
  explicit Client(Config config);
  ~Client();  // Close()
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Waits until the stream has delivered data, or `timeout`. Returns whether any data is being
  // served (stream, cache or flag file). Never waits longer than `timeout`.
  bool WaitForInitialization(std::chrono::milliseconds timeout);

  bool BoolVariation(const rules::Context& ctx, std::string_view key, bool default_value);
  std::string StringVariation(const rules::Context& ctx, std::string_view key, std::string default_value);
  int64_t IntVariation(const rules::Context& ctx, std::string_view key, int64_t default_value);
  double DoubleVariation(const rules::Context& ctx, std::string_view key, double default_value);
  rules::Value JsonVariation(const rules::Context& ctx, std::string_view key, rules::Value default_value);

  Detail<bool> BoolVariationDetail(const rules::Context& ctx, std::string_view key, bool default_value);
  Detail<std::string> StringVariationDetail(const rules::Context& ctx, std::string_view key, std::string default_value);
  Detail<int64_t> IntVariationDetail(const rules::Context& ctx, std::string_view key, int64_t default_value);
  Detail<double> DoubleVariationDetail(const rules::Context& ctx, std::string_view key, double default_value);
  Detail<rules::Value> JsonVariationDetail(const rules::Context& ctx, std::string_view key, rules::Value default_value);

  // Every flag's value for the context: {"key": value, ...} (flags with no value are left out).
  rules::Value AllFlags(const rules::Context& ctx);

  // A custom metric event (e.g. "purchase", 9.5), sent with the next flush with every key of
  // the context by kind, so that the server joins it to the units of running experiments.
  // Never blocks on the network; over event_capacity it is dropped and counted.
  void Track(std::string_view event, const rules::Context& ctx, std::optional<double> value = std::nullopt);

  // Release health, both plain Track underneath (define metrics on these event keys):
  // An error the application met while serving `ctx`: event "error", or "error.<flag>" when
  // the error is put down to one flag.
  void TrackError(const rules::Context& ctx, std::string_view flag = {});

  // Measures until destroyed (or Stop()), then tracks `event` with the elapsed milliseconds as
  // its value:   { auto t = client.StartTimer("checkout-latency", ctx); ...work... }
  class LatencyTimer {
   public:
    LatencyTimer(LatencyTimer&& other) noexcept;
    LatencyTimer& operator=(LatencyTimer&&) = delete;
    LatencyTimer(const LatencyTimer&) = delete;
    ~LatencyTimer() { Stop(); }
    // Tracks now (once); later calls and the destructor do nothing.
    void Stop();

   private:
    friend class Client;
    LatencyTimer(Client* client, std::string event, rules::Context ctx);
    Client* client_;
    std::string event_;
    rules::Context ctx_;
    std::chrono::steady_clock::time_point start_;
  };
  // The context is copied; the client must outlive the timer.
  [[nodiscard]] LatencyTimer StartTimer(std::string_view event, rules::Context ctx);
  // Sends what is pending now and waits for it (at most about two connect timeouts).
  void Flush();

  using ListenerId = uint64_t;
  // Called with a flag's key whenever a change arrives for it (any context).
  ListenerId OnFlagChange(std::function<void(const std::string& key)> listener);
  // Called when the flag's value for this context changes (old value, new value).
  ListenerId OnValueChange(std::string key, rules::Context ctx,
                           std::function<void(const rules::Value& old_value, const rules::Value& new_value)> listener);
  void RemoveListener(ListenerId id);

  Status GetStatus() const;

  // Stops streaming and flushes pending events. Evaluations keep serving the last data.
  // Idempotent.
  void Close();

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace gonfalon::sdk
