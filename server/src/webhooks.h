#pragma once
// Webhook delivery (DESIGN §9): each event is POSTed as JSON to every enabled hook that wants
// it, signed with HMAC-SHA256 of the body under the hook's secret
// (`X-Gonfalon-Signature: sha256=<hex>`), retried with exponential backoff (1, 2, 4, 8 s: five
// attempts) when the receiver fails or is unreachable, and its outcome kept in the hook's
// delivery log. Publishing only queues: a slow or dead receiver never slows a write. The queue
// is bounded (kCapacity); past it, and at shutdown, deliveries are dropped and counted.
//
// Body: {"event","time","project","environment","data"}; headers X-Gonfalon-Event and
// X-Gonfalon-Delivery (the delivery id, the same on every attempt).
//
// Thread safety: every method from any thread.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <queue>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "gonfalon/rules/value.h"
#include "gonfalon/storage/store.h"
#include "metrics.h"

namespace gonfalon::server {

// The event types a hook can ask for.
inline constexpr const char* kWebhookEvents[] = {
    "change.applied",          "scheduled_change.applied", "scheduled_change.failed", "release_plan.started",
    "release_plan.advanced",   "release_plan.paused",      "release_plan.resumed",    "release_plan.completed",
    "release_plan.rolled_back", "release_plan.aborted",    "release_plan.guard_fired", "change_request.opened",
    "change_request.approved", "change_request.declined", "change_request.applied", "change_request.failed", "ping"};
bool IsWebhookEvent(std::string_view event);

// HMAC-SHA256 of `body` under `secret`, as lowercase hex.
std::string WebhookSignature(std::string_view secret, std::string_view body);

class WebhookDispatcher {
 public:
  struct Options {
    int attempts = 5;
    std::chrono::milliseconds first_retry{1000};  // doubled after each failure
    std::chrono::milliseconds timeout{5000};      // per attempt: connect, send, answer
    int workers = 2;
    size_t capacity = 10000;
  };
  WebhookDispatcher(storage::Store& store, Metrics& metrics);
  WebhookDispatcher(storage::Store& store, Metrics& metrics, Options options);
  ~WebhookDispatcher();  // stops the workers; what is still queued is dropped (and logged)
  WebhookDispatcher(const WebhookDispatcher&) = delete;
  WebhookDispatcher& operator=(const WebhookDispatcher&) = delete;

  // Queues the event for every hook that wants it. `only_hook`: for that hook alone (ping).
  void Publish(std::string_view event, std::string_view project, std::string_view environment, rules::Value data,
               std::string_view only_hook = {});
  // Every durable change set.
  void ChangeApplied(const storage::AppliedChangeSet& applied);
  // Hooks were created, edited or deleted: read them again before the next event.
  void HooksChanged();

 private:
  struct Delivery {
    std::string id;
    storage::Webhook hook;
    std::string event;
    int64_t time_ms = 0;
    std::shared_ptr<const std::string> body;
    int attempts = 0;
    std::chrono::steady_clock::time_point next;
  };
  struct Later {
    bool operator()(const std::unique_ptr<Delivery>& a, const std::unique_ptr<Delivery>& b) const {
      return a->next > b->next;
    }
  };
  void Work();
  // One attempt: the HTTP status (0: none) and an error message (empty: 2xx).
  std::pair<int, std::string> Attempt(const Delivery& d);
  void Finish(const Delivery& d, int status, const std::string& error, bool delivered);
  std::string NewId();

  storage::Store& store_;
  Metrics& metrics_;
  const Options options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<std::unique_ptr<Delivery>, std::vector<std::unique_ptr<Delivery>>, Later> queue_;  // REQUIRES: mu_
  bool hooks_loaded_ = false;             // REQUIRES: mu_
  std::vector<storage::Webhook> hooks_;   // REQUIRES: mu_
  bool stop_ = false;                     // REQUIRES: mu_
  uint64_t next_id_ = 0;                  // REQUIRES: mu_
  std::vector<std::thread> workers_;
};

}  // namespace gonfalon::server
