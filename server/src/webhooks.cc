#include "webhooks.h"

#include <openssl/hmac.h>

#include <algorithm>
#include <random>

#include "gonfalon/rules/str_cat.h"
#include "http_client.h"
#include "log.h"
#include "wall_clock.h"

namespace gonfalon::server {

using rules::Object;
using rules::Value;

bool IsWebhookEvent(std::string_view event) {
  for (const char* e : kWebhookEvents) {
    if (event == e) return true;
  }
  return false;
}

std::string WebhookSignature(std::string_view secret, std::string_view body) {
  unsigned char mac[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), reinterpret_cast<const unsigned char*>(body.data()),
       body.size(), mac, &len);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[mac[i] >> 4]);
    out.push_back(kHex[mac[i] & 15]);
  }
  return out;
}


WebhookDispatcher::WebhookDispatcher(storage::Store& store, Metrics& metrics)
    : WebhookDispatcher(store, metrics, Options{}) {}

WebhookDispatcher::WebhookDispatcher(storage::Store& store, Metrics& metrics, Options options)
    : store_(store), metrics_(metrics), options_(options) {
  for (int i = 0; i < std::max(1, options_.workers); ++i) workers_.emplace_back([this] { Work(); });
}

WebhookDispatcher::~WebhookDispatcher() {
  size_t dropped = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
    dropped = queue_.size();
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
  if (dropped > 0) Log(LogLevel::kWarn, "webhook deliveries dropped at shutdown", {{"count", std::to_string(dropped)}});
}

std::string WebhookDispatcher::NewId() {
  // REQUIRES: mu_. Unique within the process, and random across restarts.
  static const uint64_t prefix = std::random_device{}() ^ (static_cast<uint64_t>(std::random_device{}()) << 32);
  char buf[40];
  std::snprintf(buf, sizeof buf, "dl_%016llx%06llx", static_cast<unsigned long long>(prefix),
                static_cast<unsigned long long>(++next_id_ & 0xffffff));
  return buf;
}

void WebhookDispatcher::HooksChanged() {
  std::lock_guard<std::mutex> l(mu_);
  hooks_loaded_ = false;
}

void WebhookDispatcher::Publish(std::string_view event, std::string_view project, std::string_view environment,
                                Value data, std::string_view only_hook) {
  int64_t now = NowMs();
  std::shared_ptr<const std::string> body;
  std::unique_lock<std::mutex> l(mu_);
  if (!hooks_loaded_) {
    // Read under the lock so that a concurrent HooksChanged is not lost; hooks are few.
    absl::StatusOr<std::vector<storage::Webhook>> hooks = store_.ListWebhooks();
    if (!hooks.ok()) {
      Log(LogLevel::kError, "webhooks could not be read; event not sent", {{"event", event}, {"error", std::string(hooks.status().message())}});
      return;
    }
    hooks_ = *std::move(hooks);
    hooks_loaded_ = true;
  }
  for (const storage::Webhook& h : hooks_) {
    if (!only_hook.empty() ? h.id != only_hook : !h.enabled) continue;
    if (only_hook.empty() && !h.project.empty() && h.project != project) continue;
    if (only_hook.empty() && !h.events.empty() && std::find(h.events.begin(), h.events.end(), event) == h.events.end()) continue;
    if (queue_.size() >= options_.capacity) {
      ++metrics_.webhooks_dropped;
      continue;
    }
    if (body == nullptr) {
      body = std::make_shared<const std::string>(rules::ToJson(Value(Object{{"event", Value(event)},
                                                                             {"time", Value(now)},
                                                                             {"project", Value(project)},
                                                                             {"environment", Value(environment)},
                                                                             {"data", std::move(data)}})));
    }
    auto d = std::make_unique<Delivery>();
    d->id = NewId();
    d->hook = h;
    d->event = std::string(event);
    d->time_ms = now;
    d->body = body;
    d->next = std::chrono::steady_clock::now();
    queue_.push(std::move(d));
  }
  l.unlock();
  cv_.notify_one();
}

void WebhookDispatcher::ChangeApplied(const storage::AppliedChangeSet& a) {
  rules::Array list;
  for (const storage::AppliedItem& it : a.items) {
    Value item(Object{{"kind", Value(storage::ItemKindName(it.kind))}, {"key", Value(it.key)}, {"version", Value(it.version)}});
    if (it.deleted) item.Set("deleted", Value(true));
    list.push_back(std::move(item));
  }
  Publish("change.applied", a.project, a.environment,
          Value(Object{{"sequence", Value(a.sequence)},
                       {"time", Value(a.time_ms)},
                       {"actor", Value(a.actor)},
                       {"comment", Value(a.comment)},
                       {"items", Value(std::move(list))}}));
}

std::pair<int, std::string> WebhookDispatcher::Attempt(const Delivery& d) {
  HttpRequest req;
  req.method = "POST";
  req.url = d.hook.url;
  req.headers = {{"Content-Type", "application/json"},
                 {"X-Gonfalon-Event", d.event},
                 {"X-Gonfalon-Delivery", d.id},
                 {"X-Gonfalon-Signature", StrCat("sha256=", WebhookSignature(d.hook.secret, *d.body))}};
  req.body = *d.body;
  req.timeout = options_.timeout;
  HttpAnswer a = HttpCall(req);  // what the receiver says is not kept beyond its status
  if (a.status == 0) return {0, a.error};
  if (a.status / 100 != 2) return {a.status, StrCat("HTTP ", a.status)};
  return {a.status, ""};
}

void WebhookDispatcher::Finish(const Delivery& d, int status, const std::string& error, bool delivered) {
  if (delivered) {
    ++metrics_.webhooks_delivered;
  } else {
    ++metrics_.webhooks_failed;
    Log(LogLevel::kWarn, "webhook delivery failed",
        {{"hook", d.hook.id}, {"delivery", d.id}, {"event", d.event}, {"attempts", std::to_string(d.attempts)}, {"error", error}});
  }
  storage::WebhookDelivery out;
  out.id = d.id;
  out.hook_id = d.hook.id;
  out.event = d.event;
  out.time_ms = d.time_ms;
  out.done_ms = NowMs();
  out.attempts = d.attempts;
  out.delivered = delivered;
  out.http_status = status;
  out.error = error;
  if (absl::Status s = store_.RecordWebhookDelivery(out); !s.ok()) {
    Log(LogLevel::kError, "webhook delivery log not written", {{"hook", d.hook.id}, {"error", std::string(s.message())}});
  }
}

void WebhookDispatcher::Work() {
  std::unique_lock<std::mutex> l(mu_);
  while (true) {
    if (stop_) return;
    if (queue_.empty()) {
      cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
      continue;
    }
    if (queue_.top()->next > std::chrono::steady_clock::now()) {
      auto wake = queue_.top()->next;
      cv_.wait_until(l, wake, [&] { return stop_ || queue_.empty() || queue_.top()->next <= std::chrono::steady_clock::now(); });
      continue;
    }
    // const_cast: the element leaves the queue right away (priority_queue has no pop-and-take).
    std::unique_ptr<Delivery> d = std::move(const_cast<std::unique_ptr<Delivery>&>(queue_.top()));
    queue_.pop();
    l.unlock();
    ++d->attempts;
    auto [status, error] = Attempt(*d);
    bool delivered = error.empty();
    if (delivered || d->attempts >= options_.attempts) {
      Finish(*d, status, error, delivered);
      l.lock();
      continue;
    }
    d->next = std::chrono::steady_clock::now() + options_.first_retry * (1 << (d->attempts - 1));
    l.lock();
    queue_.push(std::move(d));
    cv_.notify_one();  // another worker may wait for a later delivery than this retry
  }
}

}  // namespace gonfalon::server
