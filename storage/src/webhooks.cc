// Webhook subscriptions and their delivery logs, in the automation family:
//   wh/{id}                       the hook (with its secret, which signs deliveries)
//   wd/{hook}/{doneMs:016x}{id}   one delivery's outcome; the last kWebhookLogSize are kept

#include "gonfalon/rules/json_fields.h"
#include "rocks_store.h"

namespace gonfalon::storage {

rules::Value WebhookToJson(const Webhook& w, bool with_secret) {
  using rules::Object;
  using rules::Value;
  rules::Array events;
  for (const std::string& e : w.events) events.push_back(Value(e));
  Value out(Object{{"id", Value(w.id)},
                   {"url", Value(w.url)},
                   {"events", Value(std::move(events))},
                   {"project", Value(w.project)},
                   {"description", Value(w.description)},
                   {"enabled", Value(w.enabled)},
                   {"createdBy", Value(w.created_by)},
                   {"createdMs", Value(w.created_ms)},
                   {"version", Value(w.version)}});
  if (with_secret) out.Set("secret", Value(w.secret));
  return out;
}

rules::Value WebhookDeliveryToJson(const WebhookDelivery& d) {
  using rules::Object;
  using rules::Value;
  Value out(Object{{"id", Value(d.id)},
                   {"hook", Value(d.hook_id)},
                   {"event", Value(d.event)},
                   {"timeMs", Value(d.time_ms)},
                   {"doneMs", Value(d.done_ms)},
                   {"attempts", Value(static_cast<int64_t>(d.attempts))},
                   {"delivered", Value(d.delivered)},
                   {"httpStatus", Value(static_cast<int64_t>(d.http_status))}});
  if (!d.error.empty()) out.Set("error", Value(d.error));
  return out;
}

namespace internal {

namespace {

absl::StatusOr<Webhook> WebhookFromJson(const Value& v) {
  Webhook w;
  RETURN_IF_ERROR(rules::GetString(v, "id", "", w.id));
  RETURN_IF_ERROR(rules::GetString(v, "url", "", w.url));
  RETURN_IF_ERROR(rules::GetString(v, "secret", "", w.secret));
  RETURN_IF_ERROR(rules::GetStrings(v, "events", "", w.events));
  RETURN_IF_ERROR(rules::GetString(v, "project", "", w.project));
  RETURN_IF_ERROR(rules::GetString(v, "description", "", w.description));
  RETURN_IF_ERROR(rules::GetBool(v, "enabled", "", w.enabled));
  RETURN_IF_ERROR(rules::GetString(v, "createdBy", "", w.created_by));
  RETURN_IF_ERROR(rules::GetInt64(v, "createdMs", "", w.created_ms));
  RETURN_IF_ERROR(rules::GetInt64(v, "version", "", w.version));
  return w;
}

absl::StatusOr<WebhookDelivery> DeliveryFromJson(const Value& v) {
  WebhookDelivery d;
  RETURN_IF_ERROR(rules::GetString(v, "id", "", d.id));
  RETURN_IF_ERROR(rules::GetString(v, "hook", "", d.hook_id));
  RETURN_IF_ERROR(rules::GetString(v, "event", "", d.event));
  RETURN_IF_ERROR(rules::GetInt64(v, "timeMs", "", d.time_ms));
  RETURN_IF_ERROR(rules::GetInt64(v, "doneMs", "", d.done_ms));
  RETURN_IF_ERROR(rules::GetInt(v, "attempts", "", d.attempts));
  RETURN_IF_ERROR(rules::GetBool(v, "delivered", "", d.delivered));
  RETURN_IF_ERROR(rules::GetInt(v, "httpStatus", "", d.http_status));
  RETURN_IF_ERROR(rules::GetString(v, "error", "", d.error));
  return d;
}

std::string HookKey(std::string_view id) { return StrCat("wh/", id); }
std::string LogPrefix(std::string_view hook) { return StrCat("wd/", hook, "/"); }

// The record a hook is stored as: the JSON form plus its secret.
std::string Stored(const Webhook& w) { return ToJson(WebhookToJson(w, /*with_secret=*/true)); }

}  // namespace

absl::StatusOr<Webhook> RocksStore::CreateWebhook(const Webhook& spec, const Actor& actor) {
  RETURN_IF_ERROR(CheckWritable());
  if (spec.url.empty()) return rules::InvalidField("url", "is required");
  Webhook w = spec;
  ASSIGN_OR_RETURN(std::string id, RandomHex(6));
  w.id = StrCat("wh_", id);
  if (w.secret.empty()) {
    ASSIGN_OR_RETURN(std::string secret, RandomHex(24));
    w.secret = StrCat("whsec_", secret);
  }
  w.created_by = actor.id;
  w.created_ms = Now();
  w.version = 1;
  std::lock_guard<std::mutex> l(webhooks_mu_);
  RETURN_IF_ERROR(WriteNow({Put(kAutomation, HookKey(w.id), Stored(w))}));
  return w;
}

absl::StatusOr<std::vector<Webhook>> RocksStore::ListWebhooks() {
  return ScanDecoded<Webhook>(kAutomation, "wh/", WebhookFromJson);
}

absl::StatusOr<Webhook> RocksStore::GetWebhook(std::string_view id) {
  std::string key = HookKey(id);
  ASSIGN_OR_RETURN(auto json, GetJson(kAutomation, key));
  if (!json.has_value()) return absl::NotFoundError(StrCat("webhook \"", id, "\" does not exist"));
  return Decoded(WebhookFromJson(*json), kAutomation, key);
}

absl::StatusOr<Webhook> RocksStore::UpdateWebhook(const Webhook& hook, std::optional<int64_t> expect_version) {
  RETURN_IF_ERROR(CheckWritable());
  if (hook.url.empty()) return rules::InvalidField("url", "is required");
  std::lock_guard<std::mutex> l(webhooks_mu_);
  ASSIGN_OR_RETURN(Webhook w, GetWebhook(hook.id));
  if (expect_version.has_value() && *expect_version != w.version) {
    return VersionConflict(StrCat("webhook \"", hook.id, "\""), w.version, *expect_version);
  }
  w.url = hook.url;
  w.events = hook.events;
  w.project = hook.project;
  w.description = hook.description;
  w.enabled = hook.enabled;
  ++w.version;
  RETURN_IF_ERROR(WriteNow({Put(kAutomation, HookKey(w.id), Stored(w))}));
  return w;
}

absl::Status RocksStore::DeleteWebhook(std::string_view id) {
  RETURN_IF_ERROR(CheckWritable());
  std::lock_guard<std::mutex> l(webhooks_mu_);
  RETURN_IF_ERROR(GetWebhook(id).status());
  std::string log = LogPrefix(id);
  return WriteNow({Delete(kAutomation, HookKey(id)), DeleteRange(kAutomation, log, PrefixEnd(log))});
}

absl::Status RocksStore::RecordWebhookDelivery(const WebhookDelivery& d) {
  RETURN_IF_ERROR(CheckWritable());
  std::lock_guard<std::mutex> l(webhooks_mu_);
  // A hook deleted while its delivery was in flight keeps no log.
  ASSIGN_OR_RETURN(auto hook, GetJson(kAutomation, HookKey(d.hook_id)));
  if (!hook.has_value()) return absl::OkStatus();
  std::string prefix = LogPrefix(d.hook_id);
  std::vector<std::string> keys;
  RETURN_IF_ERROR(Scan(kAutomation, prefix, nullptr, [&](std::string_view k, std::string_view) {
    keys.emplace_back(k);
    return absl::OkStatus();
  }));
  rocksdb::WriteBatch batch;
  batch.Put(cfs_[kAutomation], StrCat(prefix, SeqKey(d.done_ms), d.id), ToJson(WebhookDeliveryToJson(d)));
  // Oldest first: keep the newest kWebhookLogSize - 1 besides this one.
  for (size_t i = 0; i + (kWebhookLogSize - 1) < keys.size(); ++i) batch.Delete(cfs_[kAutomation], keys[i]);
  return FromRocks(db_->Write(rocksdb::WriteOptions(), &batch), "writing a webhook delivery");
}

absl::StatusOr<std::vector<WebhookDelivery>> RocksStore::ListWebhookDeliveries(std::string_view hook_id) {
  RETURN_IF_ERROR(GetWebhook(hook_id).status());
  ASSIGN_OR_RETURN(std::vector<WebhookDelivery> out, ScanDecoded<WebhookDelivery>(kAutomation, LogPrefix(hook_id), DeliveryFromJson));
  std::reverse(out.begin(), out.end());
  return out;
}

}  // namespace internal
}  // namespace gonfalon::storage
