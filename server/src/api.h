#pragma once
// The HTTP API's handlers: admin (/api/v1), evaluation (native and OFREP), SDK polling and
// events, operations. They take and return plain Request/Response values (http_types.h); the
// Beast front end (http_server.h) owns sockets, limits and streams.

#include <chrono>
#include <mutex>
#include <string>

#include "absl/container/flat_hash_map.h"

#include "gonfalon/storage/store.h"
#include "http_types.h"
#include "hub.h"
#include "metrics.h"

namespace gonfalon::server {

class Api {
 public:
  Api(storage::Store& store, Hubs& hubs, Metrics& metrics);

  // Handles one request. May block on storage (writes wait for their fsync): the front end
  // runs requests for which Blocking() is true off its I/O threads.
  Response Handle(const Request& req);
  static bool Blocking(const Request& req);

  void set_ready(bool ready) { ready_ = ready; }

 private:
  Response HandleAdmin(const Request& req, const std::vector<std::string>& parts);
  Response HandleSdk(const Request& req, const std::vector<std::string>& parts);
  Response HandleOfrep(const Request& req);

  // Recently seen secrets -> keys, so that evaluations skip the hash and the RocksDB reads.
  // Entries live a few seconds; any admin write through this API clears them all (it bumps
  // auth_generation_, which also invalidates the per-thread caches in front of auth_cache_).
  absl::StatusOr<std::shared_ptr<const storage::ApiKey>> Authenticate(const Request& req, bool allow_query_token);
  void ClearAuthCache();

  storage::Store& store_;
  Hubs& hubs_;
  Metrics& metrics_;
  std::atomic<bool> ready_{false};
  std::mutex auth_mu_;
  struct CachedKey {
    std::shared_ptr<const storage::ApiKey> key;
    std::chrono::steady_clock::time_point expires;
  };
  absl::flat_hash_map<std::string, CachedKey> auth_cache_;  // REQUIRES: auth_mu_
  std::atomic<uint64_t> auth_generation_{0};
  const uint64_t instance_;  // tells Api objects apart in the per-thread caches
};

// {"error":{"code","message","field"}} from a Status; `if_match` turns conflicts into 412.
Response ErrorResponse(const absl::Status& status, bool if_match = false);
Response ErrorResponse(int http_status, std::string_view code, std::string_view message,
                       std::string_view field = {});

// RFC 7386 JSON merge patch.
rules::Value MergePatch(const rules::Value& target, const rules::Value& patch);

}  // namespace gonfalon::server
