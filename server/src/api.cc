#include "api.h"

#include <chrono>
#include <cmath>

#include "absl/container/flat_hash_map.h"
#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/dates.h"
#include "gonfalon/rules/status_macros.h"
#include "gonfalon/rules/evaluator.h"
#include "gonfalon/rules/str_cat.h"

namespace gonfalon::server {

using rules::Array;
using rules::Object;
using rules::Value;
using storage::ApiKey;
using storage::KeyKind;

namespace {

constexpr int kMaxHistoryLimit = 500;

Response Json(int status, const Value& v) {
  Response r;
  r.status = status;
  r.body = rules::ToJson(v);
  return r;
}

Response NoContent() {
  Response r;
  r.status = 204;
  r.content_type.clear();
  return r;
}

std::string ETag(int64_t version) { return StrCat("\"", version, "\""); }

// 304 when the client's If-None-Match is the current ETag.
std::optional<Response> NotModified(const Request& req, const std::string& etag) {
  const std::string* inm = req.Header("if-none-match");
  if (inm == nullptr || *inm != etag) return std::nullopt;
  Response r;
  r.status = 304;
  r.content_type.clear();
  r.headers.emplace_back("ETag", etag);
  return r;
}

Response WithETag(Response r, int64_t version) {
  r.headers.emplace_back("ETag", ETag(version));
  return r;
}

std::vector<std::string> SplitPath(const std::string& path) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) parts.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  return parts;
}

// If-Match: "n" (or n, or *). nullopt when absent or "*"; an error for anything else.
absl::StatusOr<std::optional<int64_t>> IfMatch(const Request& req) {
  const std::string* h = req.Header("if-match");
  if (h == nullptr || *h == "*") return std::optional<int64_t>();
  std::string v = *h;
  if (v.rfind("W/", 0) == 0) v = v.substr(2);
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  char* end = nullptr;
  long long n = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || n < 0) {
    return absl::InvalidArgumentError(StrCat("If-Match: expected an ETag such as \"3\", got ", *h));
  }
  return std::optional<int64_t>(n);
}

absl::StatusOr<Value> Body(const Request& req) {
  if (req.body.empty()) return absl::InvalidArgumentError("(body): a JSON body is required");
  absl::StatusOr<Value> v = rules::ParseJson(req.body);
  if (!v.ok()) return absl::InvalidArgumentError(StrCat("(body): ", v.status().message()));
  return v;
}

absl::StatusOr<Value> ObjectBody(const Request& req) {
  absl::StatusOr<Value> v = Body(req);
  if (v.ok() && !v->is_object()) {
    return absl::InvalidArgumentError(StrCat("(body): expected a JSON object, got ", rules::TypeName(v->type())));
  }
  return v;
}

// Reads an optional member of a given type; a wrong type is an error naming it.
absl::Status Want(const Value& obj, std::string_view name, Value::Type type, const Value** out) {
  *out = nullptr;
  const Value* v = obj.Find(name);
  if (v == nullptr || v->is_null()) return absl::OkStatus();
  if (v->type() != type) {
    return absl::InvalidArgumentError(StrCat(name, ": expected ", rules::TypeName(type), ", got ", rules::TypeName(v->type())));
  }
  *out = v;
  return absl::OkStatus();
}

#define TRY(expr)                                   \
  do {                                              \
    absl::Status try_status_ = (expr);              \
    if (!try_status_.ok()) return ErrorResponse(try_status_); \
  } while (0)

#define TRY_ASSIGN_IMPL(tmp, lhs, expr)            \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return ErrorResponse(tmp.status()); \
  lhs = std::move(*tmp)
#define TRY_ASSIGN(lhs, expr) TRY_ASSIGN_IMPL(GONFALON_STATUS_CONCAT(try_, __LINE__), lhs, expr)

Value Items(Array a) { return Value(Object{{"items", Value(std::move(a))}}); }

std::string Comment(const Request& req) {
  const std::string* c = req.Query("comment");
  return c == nullptr ? std::string() : *c;
}

storage::Actor ActorOf(const ApiKey& key) { return {StrCat("key:", key.id, key.name.empty() ? "" : StrCat(" (", key.name, ")"))}; }

// OFREP context: targetingKey is the key of a user context; a context with "kind" is taken
// as it is (DESIGN §4).
rules::Context OfrepContext(const Value* ctx, std::string& error_code) {
  error_code.clear();
  if (ctx == nullptr || ctx->is_null()) {
    error_code = "TARGETING_KEY_MISSING";
    return rules::Context::Invalid("no context");
  }
  if (!ctx->is_object()) {
    error_code = "INVALID_CONTEXT";
    return rules::Context::Invalid("context must be an object");
  }
  Value c = *ctx;
  const Value* tk = c.Find("targetingKey");
  if (c.Find("kind") != nullptr) {
    if (tk != nullptr && c.Find("key") == nullptr) c.Set("key", *tk);
    c.Erase("targetingKey");
  } else {
    if (tk == nullptr || !tk->is_string() || tk->as_string().empty()) {
      error_code = "TARGETING_KEY_MISSING";
      return rules::Context::Invalid("targetingKey is missing");
    }
    c.Set("key", *tk);
    c.Erase("targetingKey");
    c.Set("kind", Value("user"));
  }
  rules::Context out = rules::ContextFromJson(c);
  if (!out.valid()) error_code = "INVALID_CONTEXT";
  return out;
}

std::string OfrepReason(const rules::Detail& d) {
  switch (d.reason.kind) {
    case rules::ReasonKind::kOff:
      return "DISABLED";
    case rules::ReasonKind::kTargetMatch:
    case rules::ReasonKind::kRuleMatch:
      return "TARGETING_MATCH";
    case rules::ReasonKind::kFallthrough:
      if (d.via_rollout) return "SPLIT";
      return d.flag_has_targeting ? "DEFAULT" : "STATIC";
    case rules::ReasonKind::kPrerequisiteFailed:
      return "PREREQUISITE_FAILED";
    case rules::ReasonKind::kError:
      return "ERROR";
  }
  return "UNKNOWN";
}

// One OFREP evaluation result: success, or a failure with its HTTP status.
struct OfrepResult {
  int status = 200;
  Value body;
};

OfrepResult OfrepEvaluate(std::string_view key, const rules::Detail& d) {
  OfrepResult r;
  r.body.Set("key", Value(key));
  if (d.reason.kind == rules::ReasonKind::kError) {
    std::string code = "GENERAL";
    switch (d.reason.error_kind) {
      case rules::ErrorKind::kFlagNotFound:
        code = "FLAG_NOT_FOUND";
        r.status = 404;
        break;
      case rules::ErrorKind::kMalformedFlag:
        code = "PARSE_ERROR";
        r.status = 400;
        break;
      case rules::ErrorKind::kUserNotSpecified:
        code = "INVALID_CONTEXT";
        r.status = 400;
        break;
      default:
        r.status = 500;
    }
    r.body.Set("errorCode", Value(code));
    r.body.Set("errorDetails", Value(StrCat("evaluation error ", rules::ErrorKindName(d.reason.error_kind))));
    return r;
  }
  if (d.value != nullptr) r.body.Set("value", *d.value);  // absent: the caller's default (off, no off variation)
  r.body.Set("reason", Value(OfrepReason(d)));
  if (d.variation_index >= 0) r.body.Set("variant", Value(std::to_string(d.variation_index)));
  Value meta;
  meta.Set("flagVersion", Value(d.flag_version));
  meta.Set("gonfalonReason", Value(rules::ReasonKindName(d.reason.kind)));
  if (d.reason.in_experiment) meta.Set("inExperiment", Value(true));
  r.body.Set("metadata", std::move(meta));
  return r;
}

uint64_t Fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

// A single-item write goes through a one-item change set, whose errors name "items[0]...".
// The client sent the item itself: "items[0].data.rules[1].op: ..." becomes "rules[1].op: ...",
// "items[0].key: ..." becomes "key: ...", and "items[0]: version conflict" and
// "items[0].delete: ..." lose their prefix.
absl::Status AsSingleItem(const absl::Status& st) {
  std::string msg(st.message());
  size_t strip = 0;
  if (msg.rfind("items[0].data.", 0) == 0) {
    strip = 14;
  } else if (msg.rfind("items[0].", 0) == 0) {
    strip = 9;
  } else if (msg.rfind("items[0]: ", 0) == 0) {
    strip = 10;
  }
  // A refused delete names no field of the request: "delete: segment \"s\" is used by ...".
  if (msg.compare(strip, 8, "delete: ") == 0) strip += 8;
  return absl::Status(st.code(), msg.substr(strip));
}

// Per-thread readers of each environment's snapshot cell: the steady state is one atomic load.
const rules::Snapshot* CurrentSnapshot(EnvironmentHub& hub) {
  thread_local absl::flat_hash_map<const EnvironmentHub*, std::unique_ptr<rules::SnapshotCell::Reader>> readers;
  auto& r = readers[&hub];
  if (!r) r = std::make_unique<rules::SnapshotCell::Reader>(hub.cell());
  return r->Get();
}

}  // namespace

Response ErrorResponse(int http_status, std::string_view code, std::string_view message, std::string_view field) {
  Value err;
  err.Set("code", Value(code));
  err.Set("message", Value(message));
  if (!field.empty()) err.Set("field", Value(field));
  Response r = Json(http_status, Value(Object{{"error", std::move(err)}}));
  return r;
}

Response ErrorResponse(const absl::Status& s, bool if_match) {
  std::string message(s.message());
  // Messages start with the field's path when there is one: "rules[2].op: unknown ...".
  std::string field;
  size_t colon = message.find(": ");
  if (colon != std::string::npos && message.substr(0, colon).find(' ') == std::string::npos) {
    field = message.substr(0, colon);
    if (field == "(body)" || field == "(root)") field.clear();
  }
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
      return ErrorResponse(400, "invalid_argument", message, field);
    case absl::StatusCode::kNotFound:
      return ErrorResponse(404, "not_found", message, field);
    case absl::StatusCode::kAlreadyExists:
      return ErrorResponse(409, "already_exists", message, field);
    case absl::StatusCode::kAborted:
      return if_match ? ErrorResponse(412, "precondition_failed", message, field)
                      : ErrorResponse(409, "conflict", message, field);
    case absl::StatusCode::kOutOfRange:
      return ErrorResponse(400, "out_of_range", message, field);
    case absl::StatusCode::kFailedPrecondition:
      return ErrorResponse(409, "failed_precondition", message, field);
    case absl::StatusCode::kUnauthenticated:
      return ErrorResponse(401, "unauthorized", message);
    case absl::StatusCode::kPermissionDenied:
      return ErrorResponse(403, "forbidden", message);
    default:
      return ErrorResponse(500, "internal", message);
  }
}

Value MergePatch(const Value& target, const Value& patch) {
  if (!patch.is_object()) return patch;
  Value result = target.is_object() ? target : Value(Object{});
  for (const auto& [k, v] : patch.as_object()) {
    if (v.is_null()) {
      result.Erase(k);
    } else {
      const Value* existing = result.Find(k);
      result.Set(k, MergePatch(existing ? *existing : Value(), v));
    }
  }
  return result;
}

bool Api::Blocking(const Request& req) {
  return req.method != "GET" && req.path.rfind("/api/", 0) == 0;
}

namespace {

}  // namespace

namespace {
std::atomic<uint64_t> next_api_instance{1};
}  // namespace

Api::Api(storage::Store& store, Hubs& hubs, Metrics& metrics)
    : store_(store), hubs_(hubs), metrics_(metrics), instance_(next_api_instance.fetch_add(1)) {}

void Api::ClearAuthCache() {
  std::lock_guard<std::mutex> l(auth_mu_);
  auth_cache_.clear();
  auth_generation_.fetch_add(1, std::memory_order_release);
}

// Who is calling: the key behind the credentials, or an error.
absl::StatusOr<std::shared_ptr<const ApiKey>> Api::Authenticate(const Request& req, bool allow_query_token) {
  constexpr auto kCacheTtl = std::chrono::seconds(5);
  const std::string* secret = nullptr;
  std::string_view bearer;
  if (const std::string* a = req.Header("authorization")) {
    if (a->size() > 7 && (a->compare(0, 7, "Bearer ") == 0 || a->compare(0, 7, "bearer ") == 0)) {
      bearer = std::string_view(*a).substr(7);
    } else {
      return absl::UnauthenticatedError("Authorization: expected \"Bearer <key>\"");
    }
  } else if (const std::string* k = req.Header("x-api-key")) {
    secret = k;
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
  std::string_view presented = secret != nullptr ? std::string_view(*secret) : bearer;
  if (presented.empty()) return absl::UnauthenticatedError("credentials required: Authorization: Bearer <key>");
  auto now = std::chrono::steady_clock::now();

  // In front of the shared cache, a few entries per thread, so that the evaluation routes
  // take no lock: valid while no admin write has cleared the caches since they were filled.
  struct Local {
    uint64_t api = 0;  // instance_
    uint64_t generation = 0;
    std::string secret;
    CachedKey entry;
  };
  thread_local Local local[4];
  thread_local unsigned next_local = 0;
  uint64_t generation = auth_generation_.load(std::memory_order_acquire);
  for (const Local& l : local) {
    if (l.api == instance_ && l.generation == generation && l.entry.expires > now && l.secret == presented) return l.entry.key;
  }
  auto remember = [&](const CachedKey& entry) {
    Local& l = local[next_local++ % 4];
    l.api = instance_;
    l.generation = generation;
    l.secret.assign(presented);
    l.entry = entry;
  };

  std::string key_text(presented);
  {
    std::lock_guard<std::mutex> l(auth_mu_);
    auto it = auth_cache_.find(key_text);
    if (it != auth_cache_.end() && it->second.expires > now) {
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
    int64_t left = key->expires_ms - std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::system_clock::now().time_since_epoch()).count();
    ttl = std::min<std::chrono::seconds>(ttl, std::chrono::seconds(std::max<int64_t>(left / 1000, 0)));
  }
  CachedKey entry{std::make_shared<const ApiKey>(std::move(*key)), now + ttl};
  std::lock_guard<std::mutex> l(auth_mu_);
  // Cleared meanwhile: this key may be stale already, so it is not cached.
  if (auth_generation_.load(std::memory_order_relaxed) != generation) return entry.key;
  if (auth_cache_.size() > 10000) auth_cache_.clear();
  auth_cache_[key_text] = entry;
  remember(entry);
  return entry.key;
}

Response Api::Handle(const Request& req) {
  std::vector<std::string> parts = SplitPath(req.path);
  if (req.path == "/healthz") {
    Response r = Json(200, Value(Object{{"status", Value("ok")}}));
    r.route = "/healthz";
    return r;
  }
  if (req.path == "/readyz") {
    Response r = ready_ ? Json(200, Value(Object{{"status", Value("ready")}}))
                        : ErrorResponse(503, "not_ready", "starting or shutting down");
    r.route = "/readyz";
    return r;
  }
  if (req.path == "/metrics") {
    Response r;
    r.body = metrics_.Render();
    r.content_type = "text/plain; version=0.0.4";
    r.route = "/metrics";
    return r;
  }
  if (parts.size() >= 2 && parts[0] == "api" && parts[1] == "v1") {
    Response r = HandleAdmin(req, parts);
    if (Blocking(req) && r.status < 300) {
      ClearAuthCache();  // a key may have been revoked, rotated or deleted with its project
    }
    // Read your writes: a successful write returns once evaluations and streams on this
    // server see it.
    if (Blocking(req) && r.status < 300) hubs_.Drain();
    return r;
  }
  if (parts.size() >= 2 && parts[0] == "sdk" && parts[1] == "v1") return HandleSdk(req, parts);
  if (parts.size() >= 2 && parts[0] == "ofrep" && parts[1] == "v1") return HandleOfrep(req);
  return ErrorResponse(404, "not_found", StrCat("no route for ", req.path));
}

// ------------------------------------------------------------------ admin

Response Api::HandleAdmin(const Request& req, const std::vector<std::string>& parts) {
  const std::string& m = req.method;
  // parts: api v1 ...
  std::vector<std::string> p(parts.begin() + 2, parts.end());

  absl::StatusOr<std::shared_ptr<const ApiKey>> auth = Authenticate(req, false);
  auto finish = [&](Response r, std::string pattern) {
    r.route = std::move(pattern);
    return r;
  };
  if (!auth.ok()) return finish(ErrorResponse(auth.status()), "/api/v1/*");
  const ApiKey& key = **auth;
  if (key.kind != KeyKind::kAdmin) {
    return finish(ErrorResponse(403, "forbidden", StrCat("the admin API needs an admin key, not a ", storage::KeyKindName(key.kind), " key")), "/api/v1/*");
  }
  bool write = m != "GET" && m != "HEAD";
  if (write && !key.write) return finish(ErrorResponse(403, "forbidden", "this admin key is read-only"), "/api/v1/*");
  storage::Actor actor = ActorOf(key);
  auto project_allowed = [&](const std::string& project) { return key.project.empty() || key.project == project; };
  auto method_not_allowed = [&](const char* allow, std::string pattern) {
    Response r = ErrorResponse(405, "method_not_allowed", StrCat(m, " is not allowed here; allowed: ", allow));
    r.headers.emplace_back("Allow", allow);
    return finish(std::move(r), std::move(pattern));
  };

  // ---- /api/v1/keys ----
  if (!p.empty() && p[0] == "keys") {
    if (!key.project.empty()) {
      return finish(ErrorResponse(403, "forbidden", "managing keys needs an admin key not limited to a project"), "/api/v1/keys");
    }
    if (p.size() == 1) {
      if (m == "GET") {
        TRY_ASSIGN(std::vector<ApiKey> keys, store_.ListApiKeys());
        Array a;
        for (const ApiKey& k : keys) a.push_back(storage::ApiKeyToJson(k));
        return finish(Json(200, Items(std::move(a))), "/api/v1/keys");
      }
      if (m == "POST") {
        TRY_ASSIGN(Value body, ObjectBody(req));
        ApiKey spec;
        const Value* v;
        TRY(Want(body, "kind", Value::Type::kString, &v));
        std::string kind = v ? v->as_string() : "";
        if (kind == "admin") {
          spec.kind = KeyKind::kAdmin;
        } else if (kind == "server") {
          spec.kind = KeyKind::kServer;
        } else if (kind == "client") {
          spec.kind = KeyKind::kClient;
        } else {
          return finish(ErrorResponse(400, "invalid_argument", "kind: expected \"admin\", \"server\" or \"client\"", "kind"), "/api/v1/keys");
        }
        TRY(Want(body, "name", Value::Type::kString, &v));
        if (v) spec.name = v->as_string();
        TRY(Want(body, "scope", Value::Type::kString, &v));
        if (v && v->as_string() != "read" && v->as_string() != "write") {
          return finish(ErrorResponse(400, "invalid_argument", "scope: expected \"read\" or \"write\"", "scope"), "/api/v1/keys");
        }
        spec.write = v == nullptr || v->as_string() == "write";
        TRY(Want(body, "project", Value::Type::kString, &v));
        if (v) spec.project = v->as_string();
        TRY(Want(body, "environment", Value::Type::kString, &v));
        if (v) spec.environment = v->as_string();
        if (spec.kind != KeyKind::kAdmin && (spec.project.empty() || spec.environment.empty())) {
          return finish(ErrorResponse(400, "invalid_argument", "project: server and client keys need a project and an environment", "project"), "/api/v1/keys");
        }
        TRY_ASSIGN(storage::NewApiKey made, store_.CreateApiKey(spec));
        Value out = storage::ApiKeyToJson(made.key);
        out.Set("secret", Value(made.secret));
        return finish(Json(201, out), "/api/v1/keys");
      }
      return method_not_allowed("GET, POST", "/api/v1/keys");
    }
    if (p.size() == 2) {
      if (m == "GET") {
        TRY_ASSIGN(ApiKey k, store_.GetApiKey(p[1]));
        return finish(Json(200, storage::ApiKeyToJson(k)), "/api/v1/keys/{id}");
      }
      if (m == "DELETE") {
        TRY(store_.RevokeApiKey(p[1]));
        return finish(NoContent(), "/api/v1/keys/{id}");
      }
      return method_not_allowed("GET, DELETE", "/api/v1/keys/{id}");
    }
    if (p.size() == 3 && p[2] == "rotate") {
      if (m != "POST") return method_not_allowed("POST", "/api/v1/keys/{id}/rotate");
      int64_t overlap_s = 3600;
      if (!req.body.empty()) {
        TRY_ASSIGN(Value body, ObjectBody(req));
        const Value* v;
        TRY(Want(body, "overlapSeconds", Value::Type::kNumber, &v));
        if (v) overlap_s = static_cast<int64_t>(v->as_number());
        if (overlap_s < 0) return finish(ErrorResponse(400, "invalid_argument", "overlapSeconds: must be 0 or more", "overlapSeconds"), "/api/v1/keys/{id}/rotate");
      }
      TRY_ASSIGN(storage::NewApiKey made, store_.RotateApiKey(p[1], overlap_s * 1000));
      Value out = storage::ApiKeyToJson(made.key);
      out.Set("secret", Value(made.secret));
      return finish(Json(201, out), "/api/v1/keys/{id}/rotate");
    }
    return finish(ErrorResponse(404, "not_found", StrCat("no route for ", req.path)), "/api/v1/keys");
  }

  if (p.empty() || p[0] != "projects") {
    return finish(ErrorResponse(404, "not_found", StrCat("no route for ", req.path)), "/api/v1/*");
  }

  // ---- /api/v1/projects ----
  if (p.size() == 1) {
    if (m == "GET") {
      TRY_ASSIGN(std::vector<storage::Project> projects, store_.ListProjects());
      Array a;
      for (const auto& pr : projects) {
        if (project_allowed(pr.key)) a.push_back(storage::ProjectToJson(pr));
      }
      return finish(Json(200, Items(std::move(a))), "/api/v1/projects");
    }
    if (m == "POST") {
      if (!key.project.empty()) return finish(ErrorResponse(403, "forbidden", "this key is limited to one project"), "/api/v1/projects");
      TRY_ASSIGN(Value body, ObjectBody(req));
      storage::Project pr;
      const Value* v;
      TRY(Want(body, "key", Value::Type::kString, &v));
      if (v) pr.key = v->as_string();
      TRY(Want(body, "name", Value::Type::kString, &v));
      if (v) pr.name = v->as_string();
      TRY(Want(body, "description", Value::Type::kString, &v));
      if (v) pr.description = v->as_string();
      const Value* envs;
      TRY(Want(body, "environments", Value::Type::kArray, &envs));
      if (envs) {
        for (size_t i = 0; i < envs->as_array().size(); ++i) {
          const Value& e = envs->as_array()[i];
          if (!e.is_string()) return finish(ErrorResponse(400, "invalid_argument", StrCat("environments[", i, "]: expected an environment key"), StrCat("environments[", i, "]")), "/api/v1/projects");
          TRY(storage::ValidateKey(e.as_string(), StrCat("environments[", i, "]")));
        }
      }
      TRY_ASSIGN(storage::Project created, store_.CreateProject(pr, actor));
      if (envs) {
        for (const Value& e : envs->as_array()) {
          TRY(store_.CreateEnvironment(created.key, {.key = e.as_string()}, actor).status());
        }
      }
      return finish(WithETag(Json(201, storage::ProjectToJson(created)), created.version), "/api/v1/projects");
    }
    return method_not_allowed("GET, POST", "/api/v1/projects");
  }

  const std::string& project = p[1];
  if (!project_allowed(project)) {
    return finish(ErrorResponse(403, "forbidden", StrCat("this key is limited to project \"", key.project, "\"")), "/api/v1/projects/{p}");
  }
  TRY_ASSIGN(std::optional<int64_t> if_match, IfMatch(req));

  if (p.size() == 2) {
    std::string pattern = "/api/v1/projects/{p}";
    if (m == "GET") {
      TRY_ASSIGN(storage::Project pr, store_.GetProject(project));
      return finish(WithETag(Json(200, storage::ProjectToJson(pr)), pr.version), pattern);
    }
    if (m == "PATCH") {
      TRY_ASSIGN(storage::Project pr, store_.GetProject(project));
      TRY_ASSIGN(Value body, ObjectBody(req));
      Value merged = MergePatch(storage::ProjectToJson(pr), body);
      const Value* v;
      TRY(Want(merged, "name", Value::Type::kString, &v));
      pr.name = v ? v->as_string() : pr.name;
      TRY(Want(merged, "description", Value::Type::kString, &v));
      pr.description = v ? v->as_string() : "";
      auto updated = store_.UpdateProject(pr, if_match.value_or(0), actor);
      if (!updated.ok()) return finish(ErrorResponse(updated.status(), true), pattern);
      return finish(WithETag(Json(200, storage::ProjectToJson(*updated)), updated->version), pattern);
    }
    if (m == "DELETE") {
      TRY(store_.DeleteProject(project, actor));
      return finish(NoContent(), pattern);
    }
    return method_not_allowed("GET, PATCH, DELETE", pattern);
  }

  // ---- project-level flags ----
  if (p[2] == "flags") {
    if (p.size() == 3) {
      std::string pattern = "/api/v1/projects/{p}/flags";
      if (m == "GET") {
        TRY_ASSIGN(std::vector<storage::FlagMeta> metas, store_.ListFlagMeta(project));
        const std::string* tag = req.Query("tag");
        const std::string* state = req.Query("state");
        const std::string* q = req.Query("q");
        if (state && *state != "active" && *state != "archived" && *state != "all") {
          return finish(ErrorResponse(400, "invalid_argument", "state: expected active, archived or all", "state"), pattern);
        }
        Array a;
        for (const auto& meta : metas) {
          if (tag && std::find(meta.tags.begin(), meta.tags.end(), *tag) == meta.tags.end()) continue;
          std::string st = state ? *state : "active";
          if (st == "active" && meta.archived) continue;
          if (st == "archived" && !meta.archived) continue;
          if (q && meta.key.find(*q) == std::string::npos && meta.name.find(*q) == std::string::npos &&
              meta.description.find(*q) == std::string::npos) {
            continue;
          }
          a.push_back(storage::FlagMetaToJson(meta));
        }
        return finish(Json(200, Items(std::move(a))), pattern);
      }
      if (m == "POST") {
        TRY_ASSIGN(Value body, ObjectBody(req));
        TRY_ASSIGN(storage::FlagMeta meta, storage::FlagMetaFromJson(body));
        TRY_ASSIGN(storage::FlagMeta created, store_.CreateFlag(project, meta, actor, Comment(req)));
        return finish(WithETag(Json(201, storage::FlagMetaToJson(created)), created.version), pattern);
      }
      return method_not_allowed("GET, POST", pattern);
    }
    std::string pattern = "/api/v1/projects/{p}/flags/{f}";
    const std::string& flag = p[3];
    if (p.size() == 4) {
      if (m == "GET") {
        TRY_ASSIGN(storage::FlagMeta meta, store_.GetFlagMeta(project, flag));
        return finish(WithETag(Json(200, storage::FlagMetaToJson(meta)), meta.version), pattern);
      }
      if (m == "PUT" || m == "PATCH") {
        TRY_ASSIGN(storage::FlagMeta current, store_.GetFlagMeta(project, flag));
        TRY_ASSIGN(Value body, ObjectBody(req));
        Value doc = body;
        if (m == "PATCH") {
          Value base = storage::FlagMetaToJson(current);
          doc = MergePatch(base, body);
        }
        if (const Value* k = doc.Find("key"); k != nullptr && !(k->is_string() && k->as_string() == flag)) {
          return finish(ErrorResponse(400, "invalid_argument", StrCat("key: does not match the flag in the URL (\"", flag, "\")"), "key"), pattern);
        }
        doc.Set("key", Value(flag));
        TRY_ASSIGN(storage::FlagMeta meta, storage::FlagMetaFromJson(doc));
        auto updated = store_.UpdateFlagMeta(project, meta, if_match.value_or(0), actor, Comment(req));
        if (!updated.ok()) return finish(ErrorResponse(updated.status(), true), pattern);
        return finish(WithETag(Json(200, storage::FlagMetaToJson(*updated)), updated->version), pattern);
      }
      if (m == "DELETE") {
        TRY(store_.DeleteFlag(project, flag, actor, Comment(req)));
        return finish(NoContent(), pattern);
      }
      return method_not_allowed("GET, PUT, PATCH, DELETE", pattern);
    }
    return finish(ErrorResponse(404, "not_found", StrCat("no route for ", req.path)), pattern);
  }

  if (p[2] != "environments") return finish(ErrorResponse(404, "not_found", StrCat("no route for ", req.path)), "/api/v1/projects/{p}/*");

  // ---- environments ----
  if (p.size() == 3) {
    std::string pattern = "/api/v1/projects/{p}/environments";
    if (m == "GET") {
      TRY_ASSIGN(std::vector<storage::Environment> envs, store_.ListEnvironments(project));
      Array a;
      for (const auto& e : envs) a.push_back(storage::EnvironmentToJson(e));
      return finish(Json(200, Items(std::move(a))), pattern);
    }
    if (m == "POST") {
      TRY_ASSIGN(Value body, ObjectBody(req));
      storage::Environment e;
      const Value* v;
      TRY(Want(body, "key", Value::Type::kString, &v));
      if (v) e.key = v->as_string();
      TRY(Want(body, "name", Value::Type::kString, &v));
      if (v) e.name = v->as_string();
      TRY_ASSIGN(storage::Environment created, store_.CreateEnvironment(project, e, actor));
      return finish(WithETag(Json(201, storage::EnvironmentToJson(created)), created.version), pattern);
    }
    return method_not_allowed("GET, POST", pattern);
  }
  const std::string& env = p[3];
  if (p.size() == 4) {
    std::string pattern = "/api/v1/projects/{p}/environments/{e}";
    if (m == "GET") {
      TRY_ASSIGN(storage::Environment e, store_.GetEnvironment(project, env));
      return finish(WithETag(Json(200, storage::EnvironmentToJson(e)), e.version), pattern);
    }
    if (m == "PATCH") {
      TRY_ASSIGN(storage::Environment e, store_.GetEnvironment(project, env));
      TRY_ASSIGN(Value body, ObjectBody(req));
      const Value* v;
      TRY(Want(body, "name", Value::Type::kString, &v));
      if (v) e.name = v->as_string();
      auto updated = store_.UpdateEnvironment(project, e, if_match.value_or(0), actor);
      if (!updated.ok()) return finish(ErrorResponse(updated.status(), true), pattern);
      return finish(WithETag(Json(200, storage::EnvironmentToJson(*updated)), updated->version), pattern);
    }
    if (m == "DELETE") {
      TRY(store_.DeleteEnvironment(project, env, actor));
      return finish(NoContent(), pattern);
    }
    return method_not_allowed("GET, PATCH, DELETE", pattern);
  }
  const std::string& what = p[4];

  // Applies one item as a change set; If-Match (or `expect`) guards it.
  auto apply_one = [&](storage::ItemKind kind, const std::string& item_key, std::optional<Value> data,
                       bool remove, std::optional<int64_t> expect) -> absl::StatusOr<storage::AppliedChangeSet> {
    storage::ChangeSet cs;
    cs.project = project;
    cs.environment = env;
    cs.actor = actor;
    cs.comment = Comment(req);
    cs.items.push_back({kind, item_key, expect, std::move(data), remove});
    return store_.Apply(cs);
  };

  // ---- per-environment flags ----
  if (what == "flags") {
    if (p.size() == 5) {
      std::string pattern = "/api/v1/projects/{p}/environments/{e}/flags";
      if (m != "GET") return method_not_allowed("GET", pattern);
      TRY_ASSIGN(rules::Environment data, store_.LoadEnvironment(project, env));
      Array a;
      for (const auto& [k, f] : data.flags) a.push_back(rules::EncodeFlag(f));
      return finish(Json(200, Items(std::move(a))), pattern);
    }
    const std::string& flag = p[5];
    if (p.size() == 7 && p[6] == "history") {
      // handled below with the other history routes
    } else if (p.size() == 7 && p[6] == "events") {
      std::string pattern = "/api/v1/projects/{p}/environments/{e}/flags/{f}/events";
      if (m != "GET") return method_not_allowed("GET", pattern);
      TRY_ASSIGN(std::vector<storage::ExposureCount> counts, store_.GetExposureCounts(project, env, flag));
      Array a;
      for (const auto& c : counts) {
        a.push_back(Value(Object{{"hour", Value(c.hour_ms)}, {"variation", Value(c.variation)}, {"count", Value(c.count)}}));
      }
      return finish(Json(200, Items(std::move(a))), pattern);
    } else if (p.size() == 6) {
      std::string pattern = "/api/v1/projects/{p}/environments/{e}/flags/{f}";
      if (m == "GET") {
        TRY_ASSIGN(rules::Flag f, store_.GetFlag(project, env, flag));
        return finish(WithETag(Json(200, rules::EncodeFlag(f)), f.version), pattern);
      }
      if (m == "PUT" || m == "PATCH") {
        TRY_ASSIGN(Value body, ObjectBody(req));
        Value doc = body;
        std::optional<int64_t> expect = if_match;
        if (m == "PATCH") {
          TRY_ASSIGN(rules::Flag current, store_.GetFlag(project, env, flag));
          doc = MergePatch(rules::EncodeFlag(current), body);
          // Patch what was read: a concurrent write between the read and this one is a conflict.
          if (!expect.has_value()) expect = current.version;
        }
        auto applied = apply_one(storage::ItemKind::kFlag, flag, doc, false, expect);
        if (!applied.ok()) {
          return finish(ErrorResponse(AsSingleItem(applied.status()), if_match.has_value()), pattern);
        }
        TRY_ASSIGN(rules::Flag f, store_.GetFlag(project, env, flag));
        return finish(WithETag(Json(200, rules::EncodeFlag(f)), f.version), pattern);
      }
      return method_not_allowed("GET, PUT, PATCH", pattern);
    } else {
      return finish(ErrorResponse(404, "not_found", StrCat("no route for ", req.path)), "/api/v1/projects/{p}/environments/{e}/flags/*");
    }
  }

  // ---- segments ----
  if (what == "segments" && !(p.size() == 7 && p[6] == "history")) {
    if (p.size() == 5) {
      std::string pattern = "/api/v1/projects/{p}/environments/{e}/segments";
      if (m == "GET") {
        TRY_ASSIGN(rules::Environment data, store_.LoadEnvironment(project, env));
        Array a;
        for (const auto& [k, s] : data.segments) a.push_back(rules::EncodeSegment(s));
        return finish(Json(200, Items(std::move(a))), pattern);
      }
      if (m == "POST") {
        TRY_ASSIGN(Value body, ObjectBody(req));
        const Value* k;
        TRY(Want(body, "key", Value::Type::kString, &k));
        if (k == nullptr) return finish(ErrorResponse(400, "invalid_argument", "key: is required", "key"), pattern);
        std::string seg = k->as_string();
        auto applied = apply_one(storage::ItemKind::kSegment, seg, body, false, 0);
        if (!applied.ok()) {
          if (absl::IsAborted(applied.status())) {
            return finish(ErrorResponse(409, "already_exists", StrCat("segment \"", seg, "\" already exists"), "key"), pattern);
          }
          return finish(ErrorResponse(AsSingleItem(applied.status())), pattern);
        }
        TRY_ASSIGN(rules::Segment s, store_.GetSegment(project, env, seg));
        return finish(WithETag(Json(201, rules::EncodeSegment(s)), s.version), pattern);
      }
      return method_not_allowed("GET, POST", pattern);
    }
    if (p.size() == 6) {
      std::string pattern = "/api/v1/projects/{p}/environments/{e}/segments/{s}";
      const std::string& seg = p[5];
      if (m == "GET") {
        TRY_ASSIGN(rules::Segment s, store_.GetSegment(project, env, seg));
        return finish(WithETag(Json(200, rules::EncodeSegment(s)), s.version), pattern);
      }
      if (m == "PUT" || m == "PATCH" || m == "DELETE") {
        std::optional<Value> doc;
        std::optional<int64_t> expect = if_match;
        if (m != "DELETE") {
          TRY_ASSIGN(Value body, ObjectBody(req));
          doc = body;
          if (m == "PATCH") {
            TRY_ASSIGN(rules::Segment current, store_.GetSegment(project, env, seg));
            doc = MergePatch(rules::EncodeSegment(current), body);
            if (!expect.has_value()) expect = current.version;
          }
        }
        auto applied = apply_one(storage::ItemKind::kSegment, seg, doc, m == "DELETE", expect);
        if (!applied.ok()) {
          return finish(ErrorResponse(AsSingleItem(applied.status()), if_match.has_value()), pattern);
        }
        if (m == "DELETE") return finish(NoContent(), pattern);
        TRY_ASSIGN(rules::Segment s, store_.GetSegment(project, env, seg));
        return finish(WithETag(Json(200, rules::EncodeSegment(s)), s.version), pattern);
      }
      return method_not_allowed("GET, PUT, PATCH, DELETE", pattern);
    }
  }

  // ---- change sets ----
  if (what == "changesets" && p.size() == 5) {
    std::string pattern = "/api/v1/projects/{p}/environments/{e}/changesets";
    if (m != "POST") return method_not_allowed("POST", pattern);
    TRY_ASSIGN(Value body, ObjectBody(req));
    storage::ChangeSet cs;
    cs.project = project;
    cs.environment = env;
    cs.actor = actor;
    const Value* v;
    TRY(Want(body, "comment", Value::Type::kString, &v));
    if (v) cs.comment = v->as_string();
    const Value* items;
    TRY(Want(body, "items", Value::Type::kArray, &items));
    if (items == nullptr) return finish(ErrorResponse(400, "invalid_argument", "items: is required", "items"), pattern);
    for (size_t i = 0; i < items->as_array().size(); ++i) {
      const Value& it = items->as_array()[i];
      std::string path = StrCat("items[", i, "]");
      if (!it.is_object()) return finish(ErrorResponse(400, "invalid_argument", StrCat(path, ": expected an object"), path), pattern);
      storage::ItemChange change;
      const Value* f;
      absl::Status st = Want(it, "kind", Value::Type::kString, &f);
      if (!st.ok() || f == nullptr || (f->as_string() != "flag" && f->as_string() != "segment")) {
        return finish(ErrorResponse(400, "invalid_argument", StrCat(path, ".kind: expected \"flag\" or \"segment\""), path + ".kind"), pattern);
      }
      change.kind = f->as_string() == "flag" ? storage::ItemKind::kFlag : storage::ItemKind::kSegment;
      st = Want(it, "key", Value::Type::kString, &f);
      if (!st.ok() || f == nullptr) return finish(ErrorResponse(400, "invalid_argument", StrCat(path, ".key: expected a string"), path + ".key"), pattern);
      change.key = f->as_string();
      st = Want(it, "expectVersion", Value::Type::kNumber, &f);
      if (!st.ok()) return finish(ErrorResponse(400, "invalid_argument", StrCat(path, ".", st.message()), path + ".expectVersion"), pattern);
      if (f) change.expect_version = static_cast<int64_t>(f->as_number());
      st = Want(it, "delete", Value::Type::kBool, &f);
      if (!st.ok()) return finish(ErrorResponse(400, "invalid_argument", StrCat(path, ".", st.message()), path + ".delete"), pattern);
      change.remove = f != nullptr && f->as_bool();
      if (const Value* d = it.Find("data"); d != nullptr && !d->is_null()) change.data = *d;
      cs.items.push_back(std::move(change));
    }
    TRY_ASSIGN(storage::AppliedChangeSet applied, store_.Apply(cs));
    Array out;
    for (const auto& a : applied.items) {
      Value item(Object{{"kind", Value(storage::ItemKindName(a.kind))}, {"key", Value(a.key)}, {"version", Value(a.version)}});
      if (a.deleted) item.Set("deleted", Value(true));
      out.push_back(std::move(item));
    }
    return finish(Json(200, Value(Object{{"sequence", Value(applied.sequence)}, {"items", Value(std::move(out))}})), pattern);
  }

  // ---- history ----
  bool env_history = what == "history" && p.size() == 5;
  bool item_history = p.size() == 7 && p[6] == "history" && (what == "flags" || what == "segments");
  if (env_history || item_history) {
    std::string pattern = env_history ? "/api/v1/projects/{p}/environments/{e}/history"
                                      : StrCat("/api/v1/projects/{p}/environments/{e}/", what, "/{key}/history");
    if (m != "GET") return method_not_allowed("GET", pattern);
    std::optional<int64_t> before;
    const std::string* cursor = req.Query("after");
    if (cursor == nullptr) cursor = req.Query("before");
    if (cursor != nullptr) {
      char* end = nullptr;
      long long n = std::strtoll(cursor->c_str(), &end, 10);
      if (cursor->empty() || *end != '\0' || n < 0) return finish(ErrorResponse(400, "invalid_argument", "after: expected a sequence number", "after"), pattern);
      before = n;
    }
    int limit = 50;
    if (const std::string* l = req.Query("limit")) {
      char* end = nullptr;
      long n = std::strtol(l->c_str(), &end, 10);
      if (l->empty() || *end != '\0' || n < 1 || n > kMaxHistoryLimit) {
        return finish(ErrorResponse(400, "invalid_argument", StrCat("limit: expected 1..", kMaxHistoryLimit), "limit"), pattern);
      }
      limit = static_cast<int>(n);
    }
    std::optional<storage::ItemKind> kind;
    std::optional<std::string> item;
    if (item_history) {
      kind = what == "flags" ? storage::ItemKind::kFlag : storage::ItemKind::kSegment;
      item = p[5];
    }
    TRY_ASSIGN(storage::HistoryPage page, store_.History(project, env, kind, item, before, limit));
    Array a;
    for (const auto& rec : page.records) a.push_back(storage::AuditRecordToJson(rec));
    Value out = Items(std::move(a));
    if (page.next_after.has_value()) out.Set("next", Value(*page.next_after));
    return finish(Json(200, out), pattern);
  }

  // ---- restore ----
  if (what == "restore" && p.size() == 5) {
    std::string pattern = "/api/v1/projects/{p}/environments/{e}/restore";
    if (m != "POST") return method_not_allowed("POST", pattern);
    TRY_ASSIGN(Value body, ObjectBody(req));
    const Value* seq;
    const Value* time;
    TRY(Want(body, "sequence", Value::Type::kNumber, &seq));
    time = body.Find("time");
    if ((seq == nullptr) == (time == nullptr || time->is_null())) {
      return finish(ErrorResponse(400, "invalid_argument", "sequence: give exactly one of \"sequence\" and \"time\"", "sequence"), pattern);
    }
    int64_t target = 0;
    if (seq != nullptr) {
      target = static_cast<int64_t>(seq->as_number());
    } else {
      std::optional<double> ms;
      if (time->is_number()) ms = time->as_number();
      else if (time->is_string()) ms = rules::ParseRfc3339Millis(time->as_string());
      if (!ms.has_value()) return finish(ErrorResponse(400, "invalid_argument", "time: expected RFC 3339 or Unix milliseconds", "time"), pattern);
      TRY_ASSIGN(target, store_.SequenceAtTime(project, env, static_cast<int64_t>(*ms)));
    }
    const Value* dry;
    TRY(Want(body, "dryRun", Value::Type::kBool, &dry));
    const Value* only_flag;
    const Value* only_segment;
    TRY(Want(body, "flag", Value::Type::kString, &only_flag));
    TRY(Want(body, "segment", Value::Type::kString, &only_segment));
    const Value* comment;
    TRY(Want(body, "comment", Value::Type::kString, &comment));
    std::optional<storage::ItemKind> kind;
    std::optional<std::string> item;
    if (only_flag) {
      kind = storage::ItemKind::kFlag;
      item = only_flag->as_string();
    } else if (only_segment) {
      kind = storage::ItemKind::kSegment;
      item = only_segment->as_string();
    }
    TRY_ASSIGN(storage::RestorePlan plan, store_.Restore(project, env, target, kind, item, dry && dry->as_bool(), actor,
                                                        comment ? comment->as_string() : ""));
    Array items;
    for (const auto& it : plan.items) {
      items.push_back(Value(Object{{"kind", Value(storage::ItemKindName(it.kind))}, {"key", Value(it.key)},
                                   {"before", it.before}, {"after", it.after}}));
    }
    Value out(Object{{"targetSequence", Value(plan.target_sequence)}, {"dryRun", Value(dry && dry->as_bool())},
                     {"items", Value(std::move(items))}});
    if (plan.applied.has_value()) out.Set("sequence", Value(plan.applied->sequence));
    return finish(Json(200, out), pattern);
  }

  return finish(ErrorResponse(404, "not_found", StrCat("no route for ", req.path)), "/api/v1/projects/{p}/environments/{e}/*");
}

// ------------------------------------------------------------------ SDK routes

Response Api::HandleSdk(const Request& req, const std::vector<std::string>& parts) {
  std::string route = parts.size() >= 3 ? StrCat("/sdk/v1/", parts[2]) : "/sdk/v1/*";
  auto finish = [&](Response r) {
    r.route = route;
    return r;
  };
  bool known = parts.size() == 3 && (parts[2] == "stream" || parts[2] == "flags" || parts[2] == "evaluate" || parts[2] == "events");
  if (!known) return finish(ErrorResponse(404, "not_found", StrCat("no route for ", req.path)));
  const char* allowed = (parts[2] == "stream" || parts[2] == "flags") ? "GET" : "POST";
  if (req.method != allowed) {
    Response r = ErrorResponse(405, "method_not_allowed", StrCat(req.method, " is not allowed here; allowed: ", allowed));
    r.headers.emplace_back("Allow", allowed);
    return finish(std::move(r));
  }
  absl::StatusOr<std::shared_ptr<const ApiKey>> auth_or = Authenticate(req, false);
  if (!auth_or.ok()) return finish(ErrorResponse(auth_or.status()));
  const ApiKey* auth = auth_or->get();
  if (auth->kind != KeyKind::kServer) {
    return finish(ErrorResponse(403, "forbidden", StrCat("SDK routes need a server-side SDK key, not a ", storage::KeyKindName(auth->kind), " key")));
  }
  auto hub_or = hubs_.Get(auth->project, auth->environment);
  if (!hub_or.ok()) return finish(ErrorResponse(hub_or.status()));
  EnvironmentHub& hub = **hub_or;

  if (parts[2] == "stream") {
    Response r;
    StreamRequest s;
    s.kind = StreamRequest::Kind::kSdk;
    s.project = auth->project;
    s.environment = auth->environment;
    if (const std::string* last = req.Header("last-event-id"); last != nullptr && !last->empty()) {
      char* end = nullptr;
      long long n = std::strtoll(last->c_str(), &end, 10);
      if (*end == '\0' && n >= 0) s.last_event_id = n;
    }
    r.stream = std::move(s);
    return finish(std::move(r));
  }
  if (parts[2] == "flags") {
    auto [seq, payload] = hub.payload();
    std::string etag = ETag(seq);
    if (auto not_modified = NotModified(req, etag)) return finish(std::move(*not_modified));
    Response r;
    r.body = *payload;
    r.headers.emplace_back("ETag", etag);
    return finish(std::move(r));
  }
  if (parts[2] == "evaluate") {
    TRY_ASSIGN(Value body, ObjectBody(req));
    const Value* ctx_json = body.Find("context");
    if (ctx_json == nullptr) return finish(ErrorResponse(400, "invalid_argument", "context: is required", "context"));
    rules::Context ctx = rules::ContextFromJson(*ctx_json);
    if (!ctx.valid()) return finish(ErrorResponse(400, "invalid_argument", StrCat("context: ", ctx.error()), "context"));
    const Value* flag;
    const Value* explain;
    TRY(Want(body, "flag", Value::Type::kString, &flag));
    TRY(Want(body, "explain", Value::Type::kBool, &explain));
    bool want_trace = explain != nullptr && explain->as_bool();
    const rules::Snapshot* snap = CurrentSnapshot(hub);
    auto one = [&](std::string_view key, const rules::Detail& d, const rules::Trace* trace) {
      Value v = rules::DetailToValue(d);
      if (trace != nullptr) v.Set("trace", trace->steps());
      return v;
    };
    if (flag != nullptr) {
      rules::Trace trace;
      rules::Detail d = rules::Evaluate(*snap, flag->as_string(), ctx, want_trace ? &trace : nullptr);
      ++metrics_.evaluations;
      Value v = one(flag->as_string(), d, want_trace ? &trace : nullptr);
      v.Set("flag", Value(flag->as_string()));
      Response r = Json(200, v);
      r.headers.emplace_back("ETag", ETag(snap->sequence()));
      return finish(std::move(r));
    }
    Value flags{Object{}};
    for (size_t i = 0; i < snap->flag_count(); ++i) {
      const auto& cf = snap->flag(i);
      rules::Trace trace;
      rules::Detail d = rules::Evaluate(*snap, cf, ctx, want_trace ? &trace : nullptr);
      flags.Set(rules::FlagModel(cf).key, one(rules::FlagModel(cf).key, d, want_trace ? &trace : nullptr));
    }
    metrics_.evaluations += snap->flag_count();
    Response r = Json(200, Value(Object{{"sequence", Value(snap->sequence())}, {"flags", std::move(flags)}}));
    return finish(std::move(r));
  }
  // events
  TRY_ASSIGN(Value body, ObjectBody(req));
  std::vector<storage::ExposureCount> exposures;
  std::vector<storage::MetricCount> metrics;
  int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  auto hour_of = [](int64_t ms) { return ms - ms % 3600000; };
  const Value* list;
  TRY(Want(body, "exposures", Value::Type::kArray, &list));
  size_t accepted = 0;
  if (list != nullptr) {
    for (size_t i = 0; i < list->as_array().size(); ++i) {
      const Value& e = list->as_array()[i];
      std::string path = StrCat("exposures[", i, "]");
      const Value* f = e.Find("flag");
      const Value* var = e.Find("variation");
      const Value* count = e.Find("count");
      const Value* time = e.Find("time");
      if (!e.is_object() || f == nullptr || !f->is_string() || f->as_string().empty()) {
        metrics_.events_dropped += list->as_array().size();
        return finish(ErrorResponse(400, "invalid_argument", StrCat(path, ".flag: expected a flag key"), path + ".flag"));
      }
      if (var != nullptr && !(var->is_number() && var->as_number() == std::floor(var->as_number()))) {
        metrics_.events_dropped += list->as_array().size();
        return finish(ErrorResponse(400, "invalid_argument", StrCat(path, ".variation: expected an integer"), path + ".variation"));
      }
      if (count != nullptr && !(count->is_number() && count->as_number() >= 1 && count->as_number() <= 1e9)) {
        metrics_.events_dropped += list->as_array().size();
        return finish(ErrorResponse(400, "invalid_argument", StrCat(path, ".count: expected 1..1e9"), path + ".count"));
      }
      if (time != nullptr && !time->is_number()) {
        metrics_.events_dropped += list->as_array().size();
        return finish(ErrorResponse(400, "invalid_argument", StrCat(path, ".time: expected Unix milliseconds"), path + ".time"));
      }
      exposures.push_back({f->as_string(), var ? static_cast<int>(var->as_number()) : -1,
                           hour_of(time ? static_cast<int64_t>(time->as_number()) : now_ms),
                           count ? static_cast<int64_t>(count->as_number()) : 1});
    }
  }
  TRY(Want(body, "metrics", Value::Type::kArray, &list));
  if (list != nullptr) {
    for (size_t i = 0; i < list->as_array().size(); ++i) {
      const Value& e = list->as_array()[i];
      std::string path = StrCat("metrics[", i, "]");
      const Value* name = e.Find("event");
      const Value* value = e.Find("value");
      const Value* time = e.Find("time");
      if (!e.is_object() || name == nullptr || !name->is_string() || name->as_string().empty() ||
          storage::ValidateKey(name->as_string(), "event").code() != absl::StatusCode::kOk) {
        metrics_.events_dropped += list->as_array().size();
        return finish(ErrorResponse(400, "invalid_argument", StrCat(path, ".event: expected an event key of [A-Za-z0-9._-]"), path + ".event"));
      }
      if (value != nullptr && !value->is_number() && !value->is_null()) {
        metrics_.events_dropped += list->as_array().size();
        return finish(ErrorResponse(400, "invalid_argument", StrCat(path, ".value: expected a number"), path + ".value"));
      }
      metrics.push_back({name->as_string(), hour_of(time && time->is_number() ? static_cast<int64_t>(time->as_number()) : now_ms), 1,
                         value && value->is_number() ? value->as_number() : 0});
    }
  }
  TRY(store_.AddEventCounts(auth->project, auth->environment, exposures, metrics));
  accepted = exposures.size() + metrics.size();
  metrics_.events_accepted += accepted;
  Response r = Json(202, Value(Object{{"accepted", Value(static_cast<int64_t>(accepted))}}));
  return finish(std::move(r));
}

// ------------------------------------------------------------------ OFREP

Response Api::HandleOfrep(const Request& req) {
  const std::string prefix = "/ofrep/v1/evaluate/flags";
  std::string route;
  bool single = false, stream = false, config = false;
  std::string flag_key;
  if (req.path == prefix) {
    route = prefix;
  } else if (req.raw_path.rfind(prefix + "/", 0) == 0) {
    single = true;
    route = prefix + "/{key}";
    // The key is the whole rest of the path, percent-decoded (it may contain '/').
    if (!PercentDecode(std::string_view(req.raw_path).substr(prefix.size() + 1), flag_key) || flag_key.empty()) {
      Response r = ErrorResponse(400, "invalid_argument", "flag key: malformed percent-encoding");
      r.route = route;
      return r;
    }
  } else if (req.path == "/ofrep/v1/stream") {
    stream = true;
    route = "/ofrep/v1/stream";
  } else if (req.path == "/ofrep/v1/configuration") {
    config = true;
    route = "/ofrep/v1/configuration";
  } else {
    Response r = ErrorResponse(404, "not_found", StrCat("no route for ", req.path));
    r.route = "/ofrep/v1/*";
    return r;
  }
  auto finish = [&](Response r) {
    r.route = route;
    return r;
  };
  const char* allowed = (stream || config) ? "GET" : "POST";
  if (req.method != allowed) {
    Response r = ErrorResponse(405, "method_not_allowed", StrCat(req.method, " is not allowed here; allowed: ", allowed));
    r.headers.emplace_back("Allow", allowed);
    return finish(std::move(r));
  }
  absl::StatusOr<std::shared_ptr<const ApiKey>> auth_or = Authenticate(req, stream);
  if (!auth_or.ok()) return finish(ErrorResponse(auth_or.status()));
  const ApiKey* auth = auth_or->get();
  if (auth->kind == KeyKind::kAdmin) {
    return finish(ErrorResponse(403, "forbidden", "OFREP needs a server-side or client-side SDK key, not an admin key"));
  }
  bool client_side = auth->kind == KeyKind::kClient;
  if (config) {
    Value cfg(Object{{"name", Value("gonfalon")},
                     {"capabilities", *rules::ParseJson(R"({"cacheInvalidation":{"polling":{"enabled":true,"minPollingIntervalMs":1000}},"flagEvaluation":{"supportedTypes":["int","float","string","boolean","object"]}})")}});
    return finish(Json(200, cfg));
  }
  auto hub_or = hubs_.Get(auth->project, auth->environment);
  if (!hub_or.ok()) return finish(ErrorResponse(hub_or.status()));
  EnvironmentHub& hub = **hub_or;
  if (stream) {
    Response r;
    r.stream = StreamRequest{StreamRequest::Kind::kOfrep, auth->project, auth->environment, std::nullopt};
    return finish(std::move(r));
  }
  Value body(Object{});
  if (!req.body.empty()) {
    absl::StatusOr<Value> parsed = rules::ParseJson(req.body);
    if (!parsed.ok() || !parsed->is_object()) {
      Value err(Object{{"errorCode", Value("PARSE_ERROR")},
                       {"errorDetails", Value(parsed.ok() ? "the body must be a JSON object" : std::string(parsed.status().message()))}});
      if (single) err.Set("key", Value(flag_key));
      return finish(Json(400, err));
    }
    body = std::move(*parsed);
  }
  std::string error_code;
  rules::Context ctx = OfrepContext(body.Find("context"), error_code);
  if (!error_code.empty()) {
    Value err(Object{{"errorCode", Value(error_code)}, {"errorDetails", Value(ctx.error())}});
    if (single) err.Set("key", Value(flag_key));
    return finish(Json(400, err));
  }
  const rules::Snapshot* snap = CurrentSnapshot(hub);
  if (single) {
    const auto* cf = snap->FindFlag(flag_key);
    rules::Detail d;
    if (cf == nullptr || (client_side && !rules::FlagModel(*cf).client_side_availability.using_environment_id)) {
      d.reason.kind = rules::ReasonKind::kError;
      d.reason.error_kind = rules::ErrorKind::kFlagNotFound;
    } else {
      d = rules::Evaluate(*snap, *cf, ctx);
    }
    ++metrics_.evaluations;
    OfrepResult r = OfrepEvaluate(flag_key, d);
    if (r.status == 404) r.body.Set("errorDetails", Value(StrCat("flag \"", flag_key, "\" not found")));
    return finish(Json(r.status, r.body));
  }
  // Bulk: ETag over the published sequence and the context.
  std::string etag = StrCat("\"", snap->sequence(), "-", Fnv1a(rules::ToJson(ctx.ToValue())) & 0xffffffffffffULL, "\"");
  if (auto not_modified = NotModified(req, etag)) return finish(std::move(*not_modified));
  Array flags;
  rules::EvaluateAll(*snap, ctx, [&](std::string_view key, const rules::Detail& d) {
    flags.push_back(OfrepEvaluate(key, d).body);
  }, client_side);
  metrics_.evaluations += flags.size();
  std::string host = req.Header("host") ? *req.Header("host") : "localhost";
  Value streams(Array{Value(Object{{"type", Value("sse")},
                                   {"url", Value(StrCat("http://", host, "/ofrep/v1/stream?token=", store_.StreamToken(auth->id)))},
                                   {"inactivityDelaySec", Value(120)}})});
  Value out(Object{{"flags", Value(std::move(flags))}, {"eventStreams", std::move(streams)},
                   {"metadata", Value(Object{{"sequence", Value(snap->sequence())}})}});
  Response r = Json(200, out);
  r.headers.emplace_back("ETag", etag);
  return finish(std::move(r));
}

}  // namespace gonfalon::server
