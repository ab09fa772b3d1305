#include "client_impl.h"

#include <malloc.h>

namespace gonfalon::sdk {

void Client::Impl::PublishAll(rules::Environment env, DataSource source) {
  auto snap = rules::Snapshot::Build(std::move(env), rules::ThreadsParallelFor(cfg_.compile_threads));
  std::shared_ptr<const rules::Snapshot> old;
  {
    std::lock_guard<std::mutex> l(mu_);
    old = data_;
  }
  std::vector<std::string> changed;
  if (HasFlagListeners()) {
    for (size_t i = 0; i < snap->flag_count(); ++i) {
      const rules::Flag& f = rules::FlagModel(snap->flag(i));
      const auto* before = old != nullptr ? old->FindFlag(f.key) : nullptr;
      if (before == nullptr || rules::FlagModel(*before).version != f.version) changed.push_back(f.key);
    }
    if (old != nullptr) {
      for (size_t i = 0; i < old->flag_count(); ++i) {
        const std::string& k = rules::FlagModel(old->flag(i)).key;
        if (snap->FindFlag(k) == nullptr) changed.push_back(k);
      }
    }
  }
  Publish(std::move(snap), source, std::move(changed), nullptr);
  // The decoded environment and its JSON tree are gone; their pages are free but still the
  // process's until trimmed (Config::trim_memory_after_full_update).
  if (cfg_.trim_memory_after_full_update) malloc_trim(0);
}

void Client::Impl::Publish(std::shared_ptr<const rules::Snapshot> snap, DataSource source, std::vector<std::string> changed, const std::vector<std::string>* applied) {
  const bool whole = applied == nullptr;
  {
    std::lock_guard<std::mutex> l(mu_);
    data_ = snap;
    sequence_ = snap->sequence();
    std::shared_ptr<const Counters> counters;
    if (counting_) {
      std::shared_ptr<const Published> current = cell_.Load();
      if (!whole && current != nullptr && current->counters->Fits(*snap, *applied)) {
        counters = current->counters;
      } else {
        counters = std::make_shared<const Counters>(*snap);
        // The old counters still count for readers that have not moved on: the flusher
        // drains them until nobody else holds them.
        if (current != nullptr) retired_.push_back(current->counters);
      }
    }
    cell_.Publish(std::make_shared<const Published>(Published{snap, std::move(counters)}));
    initialized_ = true;
    source_ = source;
    data_time_ = Clock::now();
    if (source == DataSource::kStream) state_ = DataSourceState::kValid;
    if (source == DataSource::kStream) cache_dirty_ = true;
  }
  MaybeWriteCache(/*now=*/whole);
  NotifyListeners(*snap, changed);
  // WaitForInitialization returns only now, so listeners added after it never hear about
  // the initial data.
  if (source == DataSource::kStream) {
    std::lock_guard<std::mutex> l(mu_);
    from_stream_ = true;
  }
  cv_.notify_all();
}

}  // namespace gonfalon::sdk
