#pragma once
// The HTTP API: the route table (router.h) over the handlers of each resource (routes.h),
// authentication, and what follows an admin write (read-your-writes). Handlers take and
// return plain Request/Response values (http_types.h); the Beast front end (http_server.h)
// owns sockets, limits and streams.
//
// Thread safety: Handle() from any number of threads.

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"

#include "api_options.h"
#include "gonfalon/storage/store.h"
#include "http_types.h"
#include "hub.h"
#include "metrics.h"
#include "router.h"

namespace gonfalon::server {
struct Services;
class ExposureRecorder;
class Scheduler;
class WebhookDispatcher;
}

namespace gonfalon::server {

class Api {
 public:
  Api(storage::Store& store, Hubs& hubs, Metrics& metrics, ApiOptions options = {});
  ~Api();

  // Handles one request. May block on storage (writes wait for their fsync): the front end
  // runs requests for which Blocking() is true off its I/O threads.
  Response Handle(const Request& req);
  static bool Blocking(const Request& req);
  // Handles a request for which Blocking() is true and passes its response to `respond`, on the
  // calling thread. For an admin write, what is published meanwhile is sent to the streams only
  // after `respond` returns (Hubs::WriteScope): the fan-out, which keeps both cores busy for a
  // few ms at 1,000 streams, no longer competes with the answer.
  void HandleBlocking(const Request& req, absl::FunctionRef<void(Response)> respond);

  void set_ready(bool ready);
  // Every durable change set (the store's change listener calls it): webhooks.
  void ChangeApplied(const storage::AppliedChangeSet& applied);
  const ApiOptions& options() const { return options_; }

 private:
  std::optional<Response> Authorize(Access access, Call& call);
  // CORS (ApiOptions::cors_origins): the request's Origin when it may call this route.
  const std::string* AllowedOrigin(const Request& req) const;
  std::optional<Response> Preflight(const Request& req) const;
  void AddCorsHeaders(const Request& req, Response& r) const;
  // Recently seen secrets -> keys, so that evaluations skip the hash and the RocksDB reads.
  // Entries live a few seconds, and only while the store's KeysGeneration is the one they
  // were read under: a key created, revoked or rotated (or revoked with its project) voids
  // them all, here and in the per-thread caches in front of auth_cache_. Other writes leave
  // them (clearing them on every admin write made each write re-read its own key: ~0.1 ms).
  absl::StatusOr<std::shared_ptr<const storage::ApiKey>> Authenticate(const Request& req, bool allow_query_token);

  storage::Store& store_;
  Hubs& hubs_;
  Metrics& metrics_;
  const ApiOptions options_;
  std::atomic<bool> ready_{false};
  std::unique_ptr<ExposureRecorder> exposures_;  // before services_, which refers to it
  std::unique_ptr<WebhookDispatcher> webhooks_;  // likewise
  std::unique_ptr<Scheduler> scheduler_;         // likewise (after webhooks_, which it uses)
  std::unique_ptr<Services> services_;  // what the handlers use; stable address
  Router router_;
  std::mutex auth_mu_;
  struct CachedKey {
    std::shared_ptr<const storage::ApiKey> key;
    std::chrono::steady_clock::time_point expires;
    uint64_t generation;  // the store's KeysGeneration before the key was read
  };
  absl::flat_hash_map<std::string, CachedKey> auth_cache_;  // REQUIRES: auth_mu_
  const uint64_t instance_;  // tells Api objects apart in the per-thread caches
};

}  // namespace gonfalon::server
