#include <boost/asio/io_context.hpp>

#include "client_impl.h"

namespace gonfalon::sdk {

void Client::Impl::Close() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (closing_) return;
    closing_ = true;
    state_ = DataSourceState::kOff;
    if (ioc_ != nullptr) ioc_->stop();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  MaybeWriteCache(/*now=*/true);  // a change not yet written
  {
    std::lock_guard<std::mutex> l(events_mu_);
    stopping_events_ = true;  // the flusher sends what is pending once more, then stops
  }
  flush_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
}

bool Client::Impl::WaitForInitialization(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait_for(l, timeout, [&] { return from_stream_ || closing_ || state_ == DataSourceState::kOff; });
  return initialized_;
}

const Published* Client::Impl::Current() {
  // Keyed by client id (never reused), so a destroyed client's entry is never read again.
  struct ClientReaderTag;
  using Readers = rules::PerThreadCache<ClientReaderTag, char, std::unique_ptr<rules::PublishedCell<Published>::Reader>, 4>;
  auto& reader = Readers::Get(id_, [&] { return std::make_unique<rules::PublishedCell<Published>::Reader>(cell_); });
  return reader->Get();
}

Counters::Shard* Client::Impl::ShardFor(const Counters& c) {
  // By the table's instance id, not its address: a new table may reuse a freed one's.
  struct ShardTag;
  using Shards = rules::PerThreadCache<ShardTag, char, Counters::Shard*, 2>;
  return Shards::Get(c.instance, [&] { return c.ShardOfThisThread(); });
}

template <typename T, typename Extract>
Detail<T> Client::Impl::Eval(const rules::Context& ctx, std::string_view key, T def, Extract extract) {
  Detail<T> out{std::move(def), -1, {}};
  const Published* p = Current();
  if (p == nullptr) {
    out.reason.kind = rules::ReasonKind::kError;
    out.reason.error_kind = rules::ErrorKind::kClientNotReady;
    return out;
  }
  const auto* flag = p->snap->FindFlag(key);
  if (flag == nullptr) {
    out.reason.kind = rules::ReasonKind::kError;
    out.reason.error_kind = rules::ErrorKind::kFlagNotFound;
    return out;
  }
  rules::Detail d = rules::Evaluate(*p->snap, *flag, ctx);
  if (p->counters != nullptr) {
    const Counters& counters = *p->counters;
    const uint32_t ordinal = p->snap->FlagOrdinal(*flag);
    std::atomic<uint64_t>& c = ShardFor(counters)->counts[counters.base[ordinal] + static_cast<size_t>(d.variation_index + 1)];
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);  // one writer
    if (d.variation_index >= 0) RecordExposure(*flag, counters.key_hashes[ordinal], ctx, d);
  }
  out.reason = d.reason;
  if (d.value == nullptr) return out;  // an error, or off with no off variation: the default
  if (!extract(*d.value, out.value)) {
    out.reason = rules::Reason{};
    out.reason.kind = rules::ReasonKind::kError;
    out.reason.error_kind = rules::ErrorKind::kWrongType;
    return out;
  }
  out.variation_index = d.variation_index;
  // The reason's string_views point into the snapshot, which this thread's reader keeps
  // alive until its next Get(); callers that keep a Detail longer should copy them.
  return out;
}

void Client::Impl::RecordExposure(const rules::internal::CompiledFlag& flag, uint64_t flag_hash,
                                  const rules::Context& ctx, const rules::Detail& d) {
  const rules::Flag& model = rules::FlagModel(flag);
  if (d.reason.in_experiment) {
    // The unit is the key of the kind the rollout bucketed by.
    if (const rules::Context::Single* unit = ctx.Find(d.experiment_kind)) {
      exposure_log_.Record(flag_hash, model.key, d.variation_index, model.version, d.experiment_kind, unit->key.as_string());
    }
    return;
  }
  bool tracked = model.track_events;
  if (!tracked && d.reason.kind == rules::ReasonKind::kRuleMatch && d.reason.rule_index >= 0 &&
      static_cast<size_t>(d.reason.rule_index) < model.rules.size()) {
    tracked = model.rules[static_cast<size_t>(d.reason.rule_index)].track_events;
  }
  if (!tracked && d.reason.kind == rules::ReasonKind::kFallthrough) tracked = model.track_events_fallthrough;
  if (!tracked) return;
  for (const rules::Context::Single& unit : ctx.kinds()) {
    exposure_log_.Record(flag_hash, model.key, d.variation_index, model.version, unit.kind.as_string(), unit.key.as_string());
  }
}

Value Client::Impl::AllFlags(const rules::Context& ctx) {
  Value out{rules::Object{}};
  const Published* p = Current();
  if (p == nullptr) return out;
  rules::EvaluateAll(*p->snap, ctx, [&](std::string_view key, const rules::Detail& d) {
    if (d.value != nullptr) out.Set(key, *d.value);
  });
  return out;
}

Status Client::Impl::GetStatus() const {
  std::lock_guard<std::mutex> l(mu_);
  Status s;
  s.initialized = initialized_;
  s.state = state_;
  s.source = source_;
  s.last_error = last_error_;
  s.sequence = sequence_;
  if (initialized_) s.data_age = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - data_time_);
  std::lock_guard<std::mutex> e(events_mu_);
  s.events_dropped = events_dropped_ + track_log_.dropped();
  return s;
}

void Client::Impl::SetError(std::string err) {
  Log(LogLevel::kWarn, err);
  std::lock_guard<std::mutex> l(mu_);
  last_error_ = std::move(err);
}

namespace {
bool AsBool(const Value& v, bool& out) {
  if (!v.is_bool()) return false;
  out = v.as_bool();
  return true;
}
bool AsString(const Value& v, std::string& out) {
  if (!v.is_string()) return false;
  out = v.as_string();
  return true;
}
bool AsInt(const Value& v, int64_t& out) {
  if (!v.is_number()) return false;
  out = static_cast<int64_t>(v.as_number());  // LaunchDarkly truncates a non-integral number
  return true;
}
bool AsDouble(const Value& v, double& out) {
  if (!v.is_number()) return false;
  out = v.as_number();
  return true;
}
bool AsJson(const Value& v, Value& out) {
  out = v;
  return true;
}
}  // namespace

Client::Client(Config config) : impl_(std::make_unique<Impl>(std::move(config))) {}
Client::~Client() { impl_->Close(); }
bool Client::WaitForInitialization(std::chrono::milliseconds timeout) { return impl_->WaitForInitialization(timeout); }

Detail<bool> Client::BoolVariationDetail(const rules::Context& c, std::string_view k, bool d) { return impl_->Eval(c, k, d, AsBool); }
Detail<std::string> Client::StringVariationDetail(const rules::Context& c, std::string_view k, std::string d) { return impl_->Eval(c, k, std::move(d), AsString); }
Detail<int64_t> Client::IntVariationDetail(const rules::Context& c, std::string_view k, int64_t d) { return impl_->Eval(c, k, d, AsInt); }
Detail<double> Client::DoubleVariationDetail(const rules::Context& c, std::string_view k, double d) { return impl_->Eval(c, k, d, AsDouble); }
Detail<Value> Client::JsonVariationDetail(const rules::Context& c, std::string_view k, Value d) { return impl_->Eval(c, k, std::move(d), AsJson); }

bool Client::BoolVariation(const rules::Context& c, std::string_view k, bool d) { return BoolVariationDetail(c, k, d).value; }
std::string Client::StringVariation(const rules::Context& c, std::string_view k, std::string d) { return StringVariationDetail(c, k, std::move(d)).value; }
int64_t Client::IntVariation(const rules::Context& c, std::string_view k, int64_t d) { return IntVariationDetail(c, k, d).value; }
double Client::DoubleVariation(const rules::Context& c, std::string_view k, double d) { return DoubleVariationDetail(c, k, d).value; }
Value Client::JsonVariation(const rules::Context& c, std::string_view k, Value d) { return JsonVariationDetail(c, k, std::move(d)).value; }

Value Client::AllFlags(const rules::Context& ctx) { return impl_->AllFlags(ctx); }
void Client::Track(std::string_view event, const rules::Context& ctx, std::optional<double> value) {
  impl_->Track(event, ctx, value);
}
void Client::Flush() { impl_->Flush(); }
void Client::TrackError(const rules::Context& ctx, std::string_view flag) {
  if (flag.empty()) {
    impl_->Track("error", ctx, 1.0);
    return;
  }
  std::string event = "error.";
  event.append(flag);
  impl_->Track(event, ctx, 1.0);
}

Client::LatencyTimer::LatencyTimer(Client* client, std::string event, rules::Context ctx)
    : client_(client), event_(std::move(event)), ctx_(std::move(ctx)), start_(std::chrono::steady_clock::now()) {}
Client::LatencyTimer::LatencyTimer(LatencyTimer&& other) noexcept
    : client_(std::exchange(other.client_, nullptr)),
      event_(std::move(other.event_)),
      ctx_(std::move(other.ctx_)),
      start_(other.start_) {}
void Client::LatencyTimer::Stop() {
  if (client_ == nullptr) return;
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_).count();
  std::exchange(client_, nullptr)->Track(event_, ctx_, ms);
}
Client::LatencyTimer Client::StartTimer(std::string_view event, rules::Context ctx) {
  return LatencyTimer(this, std::string(event), std::move(ctx));
}
Client::ListenerId Client::OnFlagChange(std::function<void(const std::string&)> l) { return impl_->AddFlagListener(std::move(l)); }
Client::ListenerId Client::OnValueChange(std::string key, rules::Context ctx,
                                         std::function<void(const Value&, const Value&)> l) {
  return impl_->AddValueListener(std::move(key), std::move(ctx), std::move(l));
}
void Client::RemoveListener(ListenerId id) { impl_->RemoveListener(id); }
Status Client::GetStatus() const { return impl_->GetStatus(); }
void Client::Close() { impl_->Close(); }

}  // namespace gonfalon::sdk
