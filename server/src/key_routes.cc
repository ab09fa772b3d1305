// API keys: /api/v1/keys[/{id}], /api/v1/keys/{id}/rotate; /api/v1/session (the caller's own key).

#include "gonfalon/rules/str_cat.h"
#include "responses.h"
#include "routes.h"

namespace gonfalon::server {

using rules::Array;
using rules::Object;
using rules::Value;
using storage::ApiKey;
using storage::KeyKind;

namespace {
// The longest overlap a rotation grants the old secret: 30 days.
constexpr int64_t kMaxOverlapSeconds = 30LL * 24 * 3600;
}  // namespace

void AddKeyRoutes(Router& router, Services& s) {
  storage::Store& store = s.store;

  // Who the caller is, for a console to show what the token may do.
  router.Add("GET", "/api/v1/session", Access::kAdmin, [](const Call& c) {
    return Json(200, Value(Object{{"key", Value(c.key->id)},
                                  {"name", Value(c.key->name)},
                                  {"write", Value(c.key->write)},
                                  {"project", Value(c.key->project)}}));
  });
  router.Add("GET", "/api/v1/keys", Access::kAdminGlobal, [&store](const Call&) {
    TRY_ASSIGN(std::vector<ApiKey> keys, store.ListApiKeys());
    Array a;
    for (const ApiKey& k : keys) a.push_back(storage::ApiKeyToJson(k));
    return Json(200, Items(std::move(a)));
  });

  router.Add("POST", "/api/v1/keys", Access::kAdminGlobal, [&store](const Call& c) {
    TRY_ASSIGN(Value body, ObjectBody(c.req));
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
      return ErrorResponse(400, "invalid_argument", "kind: expected \"admin\", \"server\" or \"client\"", "kind");
    }
    TRY(Want(body, "name", Value::Type::kString, &v));
    if (v) spec.name = v->as_string();
    TRY(Want(body, "scope", Value::Type::kString, &v));
    if (v && v->as_string() != "read" && v->as_string() != "write") {
      return ErrorResponse(400, "invalid_argument", "scope: expected \"read\" or \"write\"", "scope");
    }
    spec.write = v == nullptr || v->as_string() == "write";
    TRY(Want(body, "project", Value::Type::kString, &v));
    if (v) spec.project = v->as_string();
    TRY(Want(body, "environment", Value::Type::kString, &v));
    if (v) spec.environment = v->as_string();
    if (spec.kind != KeyKind::kAdmin && (spec.project.empty() || spec.environment.empty())) {
      return ErrorResponse(400, "invalid_argument", "project: server and client keys need a project and an environment", "project");
    }
    TRY_ASSIGN(storage::NewApiKey made, store.CreateApiKey(spec));
    Value out = storage::ApiKeyToJson(made.key);
    out.Set("secret", Value(made.secret));
    return Json(201, out);
  });

  router.Add("GET", "/api/v1/keys/{id}", Access::kAdminGlobal, [&store](const Call& c) {
    TRY_ASSIGN(ApiKey k, store.GetApiKey(c.Param("id")));
    return Json(200, storage::ApiKeyToJson(k));
  });

  // Revoking a key also closes the streams it opened (SDK and OFREP alike).
  router.Add("DELETE", "/api/v1/keys/{id}", Access::kAdminGlobal, [&store, &s](const Call& c) {
    TRY(store.RevokeApiKey(c.Param("id")));
    s.hubs.CloseRevokedStreams();
    return NoContent();
  });

  router.Add("POST", "/api/v1/keys/{id}/rotate", Access::kAdminGlobal, [&store, &s](const Call& c) {
    int64_t overlap_s = 3600;
    if (!c.req.body.empty()) {
      TRY_ASSIGN(Value body, ObjectBody(c.req));
      const Value* v;
      TRY(Want(body, "overlapSeconds", Value::Type::kNumber, &v));
      if (v) {
        std::optional<int64_t> n = rules::IntegerIn(*v, 0, kMaxOverlapSeconds);
        if (!n.has_value()) {
          return ErrorResponse(400, "invalid_argument",
                               StrCat("overlapSeconds: expected an integer 0..", kMaxOverlapSeconds, " (30 days)"),
                               "overlapSeconds");
        }
        overlap_s = *n;
      }
    }
    TRY_ASSIGN(storage::NewApiKey made, store.RotateApiKey(c.Param("id"), overlap_s * 1000));
    // With no overlap the old secret stops now, and so do its streams; otherwise the
    // heartbeat closes them when the overlap ends.
    s.hubs.CloseRevokedStreams();
    Value out = storage::ApiKeyToJson(made.key);
    out.Set("secret", Value(made.secret));
    return Json(201, out);
  });
}

}  // namespace gonfalon::server
