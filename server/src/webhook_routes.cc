// Webhooks (webhooks.h): subscriptions and their delivery logs. Admin keys not limited to a
// project, as for API keys: a hook may receive every project's events.
//   POST   /api/v1/webhooks                   create; the answer shows the secret, once
//   GET    /api/v1/webhooks                   list
//   GET    /api/v1/webhooks/{id}              read
//   PATCH  /api/v1/webhooks/{id}              edit url, events, project, description, enabled (If-Match)
//   DELETE /api/v1/webhooks/{id}              delete, with its log
//   GET    /api/v1/webhooks/{id}/deliveries   the last deliveries, newest first
//   POST   /api/v1/webhooks/{id}/ping         queues a "ping" event to this hook

#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/str_cat.h"
#include "responses.h"
#include "routes.h"

namespace gonfalon::server {

using rules::Array;
using rules::Object;
using rules::Value;

namespace {

// Applies the fields of `body` to `hook`; every field checked, named when wrong.
absl::Status ReadHook(const Value& body, storage::Webhook& hook, bool creating) {
  for (const auto& [name, value] : body.as_object()) {
    if (name != "url" && name != "events" && name != "project" && name != "description" && name != "enabled" &&
        !(creating && name == "secret")) {
      return rules::InvalidField(name, creating ? "unknown field (url, events, project, description, enabled, secret)"
                                                : "cannot be edited (url, events, project, description, enabled can)");
    }
  }
  const Value* v;
  RETURN_IF_ERROR(Want(body, "url", Value::Type::kString, &v));
  if (v != nullptr) hook.url = v->as_string();
  if (creating && v == nullptr) return rules::InvalidField("url", "is required");
  if (hook.url.rfind("http://", 0) != 0 || hook.url.size() <= 7 || hook.url.size() > 2048 ||
      hook.url.find_first_of(" \r\n\t") != std::string::npos) {
    return rules::InvalidField("url", hook.url.rfind("https://", 0) == 0
                                          ? "https:// is not supported yet: use http:// (for example to a local TLS proxy)"
                                          : "expected http://host[:port]/path, at most 2048 characters");
  }
  RETURN_IF_ERROR(Want(body, "events", Value::Type::kArray, &v));
  if (v != nullptr) {
    hook.events.clear();
    for (size_t i = 0; i < v->as_array().size(); ++i) {
      const Value& e = v->as_array()[i];
      if (!e.is_string() || !IsWebhookEvent(e.as_string())) {
        return rules::InvalidField(StrCat("events[", i, "]"),
                                   "expected change.applied, scheduled_change.applied/.failed, "
                                   "release_plan.started/.advanced/.paused/.resumed/.completed/.rolled_back/.aborted, or ping");
      }
      hook.events.push_back(e.as_string());
    }
  }
  RETURN_IF_ERROR(Want(body, "project", Value::Type::kString, &v));
  if (v != nullptr) hook.project = v->as_string();
  RETURN_IF_ERROR(Want(body, "description", Value::Type::kString, &v));
  if (v != nullptr) hook.description = v->as_string();
  RETURN_IF_ERROR(Want(body, "enabled", Value::Type::kBool, &v));
  if (v != nullptr) hook.enabled = v->as_bool();
  if (creating) {
    RETURN_IF_ERROR(Want(body, "secret", Value::Type::kString, &v));
    if (v != nullptr) {
      if (v->as_string().size() < 16 || v->as_string().size() > 256) return rules::InvalidField("secret", "16..256 characters");
      hook.secret = v->as_string();
    }
  }
  return absl::OkStatus();
}

}  // namespace

void AddWebhookRoutes(Router& router, Services& s) {
  storage::Store& store = s.store;
  WebhookDispatcher& webhooks = s.webhooks;

  router.Add("POST", "/api/v1/webhooks", Access::kAdminGlobal, [&store, &webhooks](const Call& c) {
    TRY_ASSIGN(Value body, ObjectBody(c.req));
    storage::Webhook hook;
    TRY(ReadHook(body, hook, /*creating=*/true));
    if (!hook.project.empty()) TRY(store.GetProject(hook.project).status());
    TRY_ASSIGN(storage::Webhook made, store.CreateWebhook(hook, ActorOf(*c.key)));
    webhooks.HooksChanged();
    return WithETag(Json(201, storage::WebhookToJson(made, /*with_secret=*/true)), made.version);
  });

  router.Add("GET", "/api/v1/webhooks", Access::kAdminGlobal, [&store](const Call&) {
    TRY_ASSIGN(std::vector<storage::Webhook> all, store.ListWebhooks());
    Array out;
    for (const auto& h : all) out.push_back(storage::WebhookToJson(h));
    return Json(200, Items(std::move(out)));
  });

  router.Add("GET", "/api/v1/webhooks/{id}", Access::kAdminGlobal, [&store](const Call& c) {
    TRY_ASSIGN(storage::Webhook h, store.GetWebhook(c.Param("id")));
    return WithETag(Json(200, storage::WebhookToJson(h)), h.version);
  });

  router.Add("PATCH", "/api/v1/webhooks/{id}", Access::kAdminGlobal, [&store, &webhooks](const Call& c) {
    TRY_ASSIGN(std::optional<int64_t> if_match, IfMatch(c.req));
    TRY_ASSIGN(Value body, ObjectBody(c.req));
    TRY_ASSIGN(storage::Webhook hook, store.GetWebhook(c.Param("id")));
    TRY(ReadHook(body, hook, /*creating=*/false));
    if (!hook.project.empty()) TRY(store.GetProject(hook.project).status());
    auto updated = store.UpdateWebhook(hook, if_match);
    if (!updated.ok()) return ErrorResponse(updated.status(), if_match.has_value());
    webhooks.HooksChanged();
    return WithETag(Json(200, storage::WebhookToJson(*updated)), updated->version);
  });

  router.Add("DELETE", "/api/v1/webhooks/{id}", Access::kAdminGlobal, [&store, &webhooks](const Call& c) {
    TRY(store.DeleteWebhook(c.Param("id")));
    webhooks.HooksChanged();
    return NoContent();
  });

  router.Add("GET", "/api/v1/webhooks/{id}/deliveries", Access::kAdminGlobal, [&store](const Call& c) {
    TRY_ASSIGN(std::vector<storage::WebhookDelivery> log, store.ListWebhookDeliveries(c.Param("id")));
    Array out;
    for (const auto& d : log) out.push_back(storage::WebhookDeliveryToJson(d));
    return Json(200, Items(std::move(out)));
  });

  router.Add("POST", "/api/v1/webhooks/{id}/ping", Access::kAdminGlobal, [&store, &webhooks](const Call& c) {
    TRY_ASSIGN(storage::Webhook h, store.GetWebhook(c.Param("id")));
    webhooks.HooksChanged();  // a hook created on another server instance of the same store
    webhooks.Publish("ping", "", "", Value(Object{{"hook", Value(h.id)}}), h.id);
    return Json(202, Value(Object{{"queued", Value(true)}}));
  });
}

}  // namespace gonfalon::server
