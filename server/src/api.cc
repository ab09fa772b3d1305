#include "api.h"

#include <chrono>
#include <optional>

#include "gonfalon/rules/per_thread_cache.h"
#include "gonfalon/rules/str_cat.h"
#include "responses.h"
#include "routes.h"
#include "wall_clock.h"

namespace gonfalon::server {

using storage::ApiKey;
using storage::KeyKind;

namespace {
bool IsWrite(const std::string& method) { return method != "GET" && method != "HEAD"; }
}  // namespace

storage::Actor ActorOf(const ApiKey& key) {
  return {StrCat("key:", key.id, key.name.empty() ? "" : StrCat(" (", key.name, ")")), key.name.empty() ? StrCat("key:", key.id) : key.name};
}

Api::Api(storage::Store& store, Hubs& hubs, Metrics& metrics, ApiOptions options)
    : store_(store), hubs_(hubs), metrics_(metrics), options_(std::move(options)),
      instance_(rules::NextInstanceId()) {
  exposures_ = std::make_unique<ExposureRecorder>(store_, metrics_);
  WebhookDispatcher::Options hooks;
  hooks.first_retry = std::chrono::milliseconds(options_.webhook_retry_ms);
  webhooks_ = std::make_unique<WebhookDispatcher>(store_, metrics_, hooks);
  scheduler_ = std::make_unique<Scheduler>(store_, metrics_, *webhooks_);
  services_ = std::make_unique<Services>(Services{store_, hubs_, metrics_, options_, ready_, *exposures_, *scheduler_, *webhooks_});
  AddOperationsRoutes(router_, *services_);
  AddProjectRoutes(router_, *services_);
  AddFlagRoutes(router_, *services_);
  AddChangeRoutes(router_, *services_);
  AddKeyRoutes(router_, *services_);
  AddSdkRoutes(router_, *services_);
  AddOfrepRoutes(router_, *services_);
  AddExperimentRoutes(router_, *services_);
  AddScheduleRoutes(router_, *services_);
  AddWebhookRoutes(router_, *services_);
  AddReleasePlanRoutes(router_, *services_);
  AddChangeRequestRoutes(router_, *services_);
  AddAsCodeRoutes(router_, *services_);
  AddPromoteRoutes(router_, *services_);
  AddReleaseMetricsRoutes(router_, *services_);
  AddConsoleRoutes(router_, *services_);
}

void Api::ChangeApplied(const storage::AppliedChangeSet& applied) { webhooks_->ChangeApplied(applied); }

void Api::set_ready(bool ready) {
  ready_ = ready;
  // Scheduled changes run once every environment is loaded (one overdue since before a
  // restart runs now).
  if (ready) scheduler_->Start();
}

Api::~Api() = default;

namespace {
bool AdminWrite(const Request& req) { return IsWrite(req.method) && req.path.rfind("/api/", 0) == 0; }
}  // namespace

// Admin writes, and SDK event batches: each waits for its write to be durable (an fsync), so
// on the I/O threads two of them would hold up every other request, and only two batches
// could share a group commit.
bool Api::Blocking(const Request& req) {
  return AdminWrite(req) || (req.method == "POST" && req.path == "/sdk/v1/events");
}

Response Api::Handle(const Request& req) {
  if (req.method == "OPTIONS") {
    if (std::optional<Response> preflight = Preflight(req)) return std::move(*preflight);
  }
  Response r = router_.Dispatch(req, [this](Access access, Call& call) { return Authorize(access, call); });
  if (AdminWrite(req) && r.status < 300) {
    // Read your writes: a successful write returns once evaluations and streams on this
    // server see it.
    hubs_.Drain();
  }
  AddCorsHeaders(req, r);
  return r;
}

void Api::HandleBlocking(const Request& req, absl::FunctionRef<void(Response)> respond) {
  std::optional<Hubs::WriteScope> write;
  if (AdminWrite(req)) write.emplace(hubs_);
  respond(Handle(req));
}

std::optional<Response> Api::Authorize(Access access, Call& call) {
  if (access == Access::kPublic) return std::nullopt;
  absl::StatusOr<std::shared_ptr<const ApiKey>> auth = Authenticate(call.req, access == Access::kOfrepStream);
  if (!auth.ok()) return ErrorResponse(auth.status());
  const ApiKey& key = **auth;
  switch (access) {
    case Access::kPublic:
      break;
    case Access::kAdmin:
    case Access::kAdminGlobal: {
      if (key.kind != KeyKind::kAdmin) {
        return ErrorResponse(403, "forbidden", StrCat("the admin API needs an admin key, not a ", storage::KeyKindName(key.kind), " key"));
      }
      if (IsWrite(call.req.method) && !key.write) return ErrorResponse(403, "forbidden", "this admin key is read-only");
      if (access == Access::kAdminGlobal && !key.project.empty()) {
        return ErrorResponse(403, "forbidden", "API keys and webhooks need an admin key not limited to a project");
      }
      const std::string& project = call.Param("p");
      if (!key.project.empty() && !project.empty() && project != key.project) {
        return ErrorResponse(403, "forbidden", StrCat("this key is limited to project \"", key.project, "\""));
      }
      break;
    }
    case Access::kServerSdk:
      if (key.kind != KeyKind::kServer) {
        return ErrorResponse(403, "forbidden", StrCat("SDK routes need a server-side SDK key, not a ", storage::KeyKindName(key.kind), " key"));
      }
      break;
    case Access::kOfrep:
    case Access::kOfrepStream:
      if (key.kind == KeyKind::kAdmin) {
        return ErrorResponse(403, "forbidden", "OFREP needs a server-side or client-side SDK key, not an admin key");
      }
      break;
  }
  call.key = std::move(*auth);
  return std::nullopt;
}

// Who is calling: the key behind the credentials, or an error.
absl::StatusOr<std::shared_ptr<const ApiKey>> Api::Authenticate(const Request& req, bool allow_query_token) {
  constexpr auto kCacheTtl = std::chrono::seconds(5);
  std::string_view presented;
  if (const std::string* a = req.Header("authorization")) {
    if (a->size() > 7 && (a->compare(0, 7, "Bearer ") == 0 || a->compare(0, 7, "bearer ") == 0)) {
      presented = std::string_view(*a).substr(7);
    } else {
      return absl::UnauthenticatedError("Authorization: expected \"Bearer <key>\"");
    }
  } else if (const std::string* k = req.Header("x-api-key")) {
    // OFREP's own header (its OpenAPI document names it); accepted wherever a key is.
    presented = *k;
  } else if (const std::string* t = req.Query("token"); t != nullptr && allow_query_token) {
    // Only a derived stream token (never a key's secret, which would end up in logs), checked
    // without the caches: a stream authenticates once per connection.
    absl::StatusOr<ApiKey> key = store_.AuthenticateStreamToken(*t);
    if (!key.ok()) {
      if (absl::IsNotFound(key.status())) {
        return absl::UnauthenticatedError(StrCat("token: ", key.status().message(),
                                                 " (use the eventStreams URL of a bulk evaluation)"));
      }
      return key.status();
    }
    return std::make_shared<const ApiKey>(std::move(*key));
  }
  if (presented.empty()) return absl::UnauthenticatedError("credentials required: Authorization: Bearer <key>");
  auto now = std::chrono::steady_clock::now();

  // In front of the shared cache, a few entries per thread, so that the evaluation routes
  // take no lock: valid while no admin write has cleared the caches since they were filled.
  struct AuthCacheTag;
  struct Local {
    uint64_t generation = 0;
    CachedKey entry;
  };
  using LocalCache = rules::PerThreadCache<AuthCacheTag, std::string, Local, 4>;
  // Read before any lookup: an entry filled from an older generation is not used.
  uint64_t generation = store_.KeysGeneration();
  if (Local* l = LocalCache::Find(instance_, [&](const std::string& secret) { return secret == presented; })) {
    if (l->generation == generation && l->entry.expires > now) return l->entry.key;
  }
  auto remember = [&](const CachedKey& entry) { LocalCache::Put(instance_, std::string(presented), Local{generation, entry}); };

  std::string key_text(presented);
  {
    std::lock_guard<std::mutex> l(auth_mu_);
    auto it = auth_cache_.find(key_text);
    if (it != auth_cache_.end() && it->second.generation == generation && it->second.expires > now) {
      remember(it->second);
      return it->second.key;
    }
  }
  absl::StatusOr<ApiKey> key = store_.Authenticate(key_text);
  if (!key.ok()) {
    if (absl::IsNotFound(key.status())) return absl::UnauthenticatedError(key.status().message());
    return key.status();
  }
  // A key that expires (rotation overlap) is not cached past its expiry.
  auto ttl = kCacheTtl;
  if (key->expires_ms != 0) {
    int64_t left = key->expires_ms - NowMs();
    ttl = std::min<std::chrono::seconds>(ttl, std::chrono::seconds(std::max<int64_t>(left / 1000, 0)));
  }
  CachedKey entry{std::make_shared<const ApiKey>(std::move(*key)), now + ttl, generation};
  std::lock_guard<std::mutex> l(auth_mu_);
  // A key was written meanwhile: this answer may be stale already, so it is not cached.
  if (store_.KeysGeneration() != generation) return entry.key;
  if (auth_cache_.size() > 10000) auth_cache_.clear();
  auth_cache_[key_text] = entry;
  remember(entry);
  return entry.key;
}

// ------------------------------------------------------------------ CORS

namespace {
// Routes a browser may call cross-origin: OFREP (client-side keys) and its stream.
bool CorsRoute(const Request& req) { return req.raw_path.rfind("/ofrep/", 0) == 0; }
}  // namespace

const std::string* Api::AllowedOrigin(const Request& req) const {
  if (options_.cors_origins.empty() || !CorsRoute(req)) return nullptr;
  const std::string* origin = req.Header("origin");
  if (origin == nullptr) return nullptr;
  for (const std::string& o : options_.cors_origins) {
    if (o == "*" || o == *origin) return origin;
  }
  return nullptr;
}

std::optional<Response> Api::Preflight(const Request& req) const {
  if (!CorsRoute(req) || req.Header("origin") == nullptr) return std::nullopt;
  const std::string* origin = AllowedOrigin(req);
  if (origin == nullptr) {
    Response r = ErrorResponse(403, "forbidden", "origin not allowed (serve --cors-origins)");
    r.route = "preflight";
    return r;
  }
  Response r = NoContent();
  r.headers.emplace_back("Access-Control-Allow-Origin", *origin);
  r.headers.emplace_back("Vary", "Origin");
  r.headers.emplace_back("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
  r.headers.emplace_back("Access-Control-Allow-Headers", "Authorization, X-API-Key, Content-Type, If-None-Match, Last-Event-ID");
  r.headers.emplace_back("Access-Control-Max-Age", "600");
  r.route = "preflight";
  return r;
}

void Api::AddCorsHeaders(const Request& req, Response& r) const {
  const std::string* origin = AllowedOrigin(req);
  if (origin == nullptr) return;
  r.headers.emplace_back("Access-Control-Allow-Origin", *origin);
  r.headers.emplace_back("Vary", "Origin");
  r.headers.emplace_back("Access-Control-Expose-Headers", "ETag");
}

}  // namespace gonfalon::server
