#include "client_impl.h"

namespace gonfalon::sdk {

uint64_t Client::Impl::AddFlagListener(std::function<void(const std::string&)> fn) {
  auto entry = std::make_shared<FlagListener>();
  entry->fn = std::move(fn);
  std::lock_guard<std::mutex> l(listeners_mu_);
  flag_listeners_.emplace(++next_listener_, std::move(entry));
  return next_listener_;
}

uint64_t Client::Impl::AddValueListener(std::string key, rules::Context ctx, std::function<void(const Value&, const Value&)> fn) {
  Value current;
  if (auto p = cell_.Load()) {
    rules::Detail d = rules::Evaluate(*p->snap, key, ctx);
    if (d.value != nullptr) current = *d.value;
  }
  auto entry = std::make_shared<ValueListener>();
  entry->key = std::move(key);
  entry->ctx = std::move(ctx);
  entry->fn = std::move(fn);
  entry->last = std::move(current);
  std::lock_guard<std::mutex> l(listeners_mu_);
  value_listeners_.emplace(++next_listener_, std::move(entry));
  return next_listener_;
}

void Client::Impl::RemoveListener(uint64_t id) {
  std::lock_guard<std::mutex> l(listeners_mu_);
  if (auto it = flag_listeners_.find(id); it != flag_listeners_.end()) {
    it->second->removed = true;
    flag_listeners_.erase(it);
  }
  if (auto it = value_listeners_.find(id); it != value_listeners_.end()) {
    it->second->removed = true;
    value_listeners_.erase(it);
  }
}

bool Client::Impl::HasFlagListeners() {
  std::lock_guard<std::mutex> l(listeners_mu_);
  return !flag_listeners_.empty();
}

void Client::Impl::NotifyListeners(const rules::Snapshot& snap, const std::vector<std::string>& changed) {
  std::vector<std::shared_ptr<FlagListener>> flag_listeners;
  std::vector<std::shared_ptr<ValueListener>> value_listeners;
  {
    std::lock_guard<std::mutex> l(listeners_mu_);
    for (auto& [id, fl] : flag_listeners_) flag_listeners.push_back(fl);
    for (auto& [id, vl] : value_listeners_) value_listeners.push_back(vl);
  }
  for (const std::string& key : changed) {
    for (const auto& fl : flag_listeners) {
      if (!fl->removed) fl->fn(key);
    }
  }
  for (const auto& vl : value_listeners) {
    if (vl->removed) continue;
    rules::Detail d = rules::Evaluate(snap, vl->key, vl->ctx);
    Value now = d.value == nullptr ? Value() : *d.value;
    if (!(now == vl->last)) {
      Value old = std::move(vl->last);
      vl->last = now;
      vl->fn(old, now);
    }
  }
}

}  // namespace gonfalon::sdk
