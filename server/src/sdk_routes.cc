// /sdk/v1: the SDK stream, polling, native evaluation and events (server-side SDK keys); and
// POST /api/v1/projects/{p}/environments/{e}/evaluate, the same evaluation with its explain
// trace for people (admin keys).

#include <charconv>
#include <chrono>
#include <cmath>

#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/evaluator.h"
#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/str_cat.h"
#include "responses.h"
#include "routes.h"
#include "wall_clock.h"

namespace gonfalon::server {

using rules::Array;
using rules::Object;
using rules::Value;

namespace {

// Event times the server takes: up to an hour ahead (clock skew), back to the history's
// retention (an SDK that was offline for a while).
constexpr int64_t kMaxEventFutureMs = 3600LL * 1000;
constexpr int64_t kMaxEventAgeMs = 30LL * 24 * 3600 * 1000;

// One refused item of an events batch: `field` names the list, the index and the member
// ("exposedUnits[3].time"); ForEachEvent fills in `list` and `index`.
struct Rejection {
  std::string field;
  std::string reason;
  std::string list;
  size_t index = 0;
};

// The time of an event: Unix milliseconds in the accepted window.
std::optional<Rejection> CheckTime(const Value* time, const std::string& path, int64_t now_ms, int64_t& out) {
  out = now_ms;
  if (time == nullptr) return std::nullopt;
  std::optional<int64_t> t = rules::IntegerIn(*time, 0, 9'000'000'000'000'000);
  if (!t.has_value()) return Rejection{path + ".time", "expected Unix milliseconds"};
  out = *t;
  if (out > now_ms + kMaxEventFutureMs) return Rejection{path + ".time", "more than an hour in the future"};
  if (out < now_ms - kMaxEventAgeMs) return Rejection{path + ".time", "older than 30 days"};
  return std::nullopt;
}

// An item's "flag" and "variation": a flag of the environment, and a variation index from
// `lowest` (-1: the caller's default was served) to its last. `fallback` stands for an absent
// variation (nullopt: required).
std::optional<Rejection> CheckFlagVariation(const Value& e, const std::string& path, const rules::Snapshot& snap,
                                            int64_t lowest, std::optional<int64_t> fallback, std::string& flag_out,
                                            int& variation_out) {
  const Value* f = e.Find("flag");
  const Value* var = e.Find("variation");
  if (f == nullptr || !f->is_string() || f->as_string().empty()) return Rejection{path + ".flag", "expected a flag key"};
  const auto* flag = snap.FindFlag(f->as_string());
  if (flag == nullptr) return Rejection{path + ".flag", StrCat("no flag \"", f->as_string(), "\" in this environment")};
  int64_t variations = static_cast<int64_t>(rules::FlagModel(*flag).variations.size());
  std::optional<int64_t> variation = var != nullptr ? rules::IntegerIn(*var, lowest, variations - 1) : fallback;
  if (!variation.has_value()) return Rejection{path + ".variation", StrCat("expected a variation index ", lowest, "..", variations - 1)};
  flag_out = f->as_string();
  variation_out = static_cast<int>(*variation);
  return std::nullopt;
}

// Reads each item of the batch's list `name` with read(item, path, index), which returns why it
// refuses the item or nullopt; refusals (and items that are not objects) go to `rejected`.
template <typename Read>
absl::Status ForEachEvent(const Value& body, std::string_view name, std::vector<Rejection>& rejected, Read read) {
  const Value* list;
  RETURN_IF_ERROR(Want(body, name, Value::Type::kArray, &list));
  if (list == nullptr) return absl::OkStatus();
  for (size_t i = 0; i < list->as_array().size(); ++i) {
    const Value& e = list->as_array()[i];
    std::string path = StrCat(name, "[", i, "]");
    std::optional<Rejection> refused = e.is_object() ? read(e, path, i) : Rejection{path, "expected an object"};
    if (refused.has_value()) {
      refused->list = std::string(name);
      refused->index = i;
      rejected.push_back(std::move(*refused));
    }
  }
  return absl::OkStatus();
}

Response Events(const Call& c, Services& s, EnvironmentHub& hub) {
  TRY_ASSIGN(Value body, ObjectBody(c.req));
  const rules::Snapshot* snap = CurrentSnapshot(hub);
  std::vector<storage::ExposureCount> exposures;
  std::vector<storage::MetricCount> metrics;
  std::vector<storage::UnitExposure> unit_exposures;
  std::vector<storage::UnitEvent> unit_events;
  std::vector<Rejection> rejected;
  int64_t now_ms = NowMs();
  auto hour_of = [](int64_t ms) { return ms - ms % 3600000; };

  TRY(ForEachEvent(body, "exposures", rejected, [&](const Value& e, const std::string& path, size_t) -> std::optional<Rejection> {
    std::string flag;
    int variation;
    // -1 (also when absent): the caller's default was served.
    if (auto bad = CheckFlagVariation(e, path, *snap, -1, -1, flag, variation)) return bad;
    const Value* count = e.Find("count");
    std::optional<int64_t> n = count != nullptr ? rules::IntegerIn(*count, 1, 1'000'000'000) : 1;
    if (!n.has_value()) return Rejection{path + ".count", "expected an integer 1..1e9"};
    int64_t time_ms;
    if (auto bad = CheckTime(e.Find("time"), path, now_ms, time_ms)) return bad;
    exposures.push_back({flag, variation, hour_of(time_ms), *n});
    return std::nullopt;
  }));
  TRY(ForEachEvent(body, "metrics", rejected, [&](const Value& e, const std::string& path, size_t) -> std::optional<Rejection> {
    const Value* name = e.Find("event");
    const Value* value = e.Find("value");
    if (name == nullptr || !name->is_string() || !storage::ValidateKey(name->as_string(), "event").ok()) {
      return Rejection{path + ".event", "expected an event key of 1..128 [A-Za-z0-9._-]"};
    }
    if (value != nullptr && !value->is_null() && !(value->is_number() && std::isfinite(value->as_number()))) {
      return Rejection{path + ".value", "expected a number"};
    }
    int64_t time_ms;
    if (auto bad = CheckTime(e.Find("time"), path, now_ms, time_ms)) return bad;
    // Optional, for experiments: the context's keys by kind, to join the event to its units.
    const Value* units = e.Find("units");
    if (units != nullptr && !units->is_null()) {
      if (!units->is_object()) return Rejection{path + ".units", "expected an object of context kind -> key"};
      storage::UnitEvent unit_event{name->as_string(), {}, value && value->is_number() ? value->as_number() : 1, time_ms};
      for (const auto& [kind, key] : units->as_object()) {
        if (!key.is_string() || key.as_string().empty()) return Rejection{StrCat(path, ".units.", kind), "expected a context key"};
        unit_event.units.emplace_back(kind, key.as_string());
      }
      unit_events.push_back(std::move(unit_event));
    }
    metrics.push_back({name->as_string(), hour_of(time_ms), 1, value && value->is_number() ? value->as_number() : 0});
    return std::nullopt;
  }));
  // Experiments: which variation each unit was served (DESIGN §8).
  std::vector<size_t> unit_exposure_index;  // of each unit exposure in the list
  TRY(ForEachEvent(body, "exposedUnits", rejected, [&](const Value& e, const std::string& path, size_t index) -> std::optional<Rejection> {
    std::string flag;
    int variation;
    if (auto bad = CheckFlagVariation(e, path, *snap, 0, std::nullopt, flag, variation)) return bad;
    // The flag's version the SDK evaluated: an exposure from before the running iteration's
    // allocation is refused (storage::UnitExposure).
    int64_t flag_version = 0;
    if (const Value* version = e.Find("flagVersion"); version != nullptr) {
      if (!rules::IntegerIn(*version, 0, INT64_MAX)) return Rejection{path + ".flagVersion", "expected an integer >= 0"};
      flag_version = static_cast<int64_t>(version->as_number());
    }
    const Value* kind = e.Find("unitKind");
    const Value* key = e.Find("unitKey");
    if (kind != nullptr && !(kind->is_string() && storage::ValidateKey(kind->as_string(), "unitKind").ok())) {
      return Rejection{path + ".unitKind", "expected a context kind"};
    }
    if (key == nullptr || !key->is_string() || key->as_string().empty() || key->as_string().size() > 1024) {
      return Rejection{path + ".unitKey", "expected a context key of 1..1024 characters"};
    }
    int64_t time_ms;
    if (auto bad = CheckTime(e.Find("time"), path, now_ms, time_ms)) return bad;
    unit_exposures.push_back({flag, variation, kind != nullptr ? kind->as_string() : "user", key->as_string(), time_ms, flag_version});
    unit_exposure_index.push_back(index);
    return std::nullopt;
  }));
  const Value* batch;
  TRY(Want(body, "batchId", Value::Type::kString, &batch));
  std::string batch_id = batch != nullptr ? batch->as_string() : "";
  if (batch_id.size() > 128) return ErrorResponse(400, "invalid_argument", "batchId: at most 128 characters", "batchId");
  size_t accepted = exposures.size() + metrics.size() + unit_exposures.size();
  if (accepted == 0 && !rejected.empty()) {
    // Nothing usable: the batch itself is wrong.
    s.metrics.events_dropped += rejected.size();
    return ErrorResponse(400, "invalid_argument", StrCat(rejected[0].field, ": ", rejected[0].reason), rejected[0].field);
  }
  // The experiment join first: it is durable and remembers the batch id, so a batch retried
  // after a timeout is applied once (its hourly counts are then skipped too).
  if (!unit_exposures.empty() || !unit_events.empty() || !batch_id.empty()) {
    if (!unit_events.empty()) s.exposures.FlushIfPending();  // exposures of server-side evaluations first
    TRY_ASSIGN(storage::ExperimentBatchResult joined,
               s.store.RecordExperimentBatch(hub.project(), hub.environment(), batch_id, unit_exposures, unit_events));
    if (joined.duplicate) {
      return Json(202, Value(Object{{"accepted", Value(int64_t{0})}, {"rejected", Value(Array{})}, {"duplicate", Value(true)}}));
    }
    for (const auto& [i, reason] : joined.refused) {
      size_t index = unit_exposure_index[i];
      rejected.push_back({StrCat("exposedUnits[", index, "].time"), reason, "exposedUnits", index});
    }
    accepted -= joined.refused.size();
  }
  TRY(s.store.AddEventCounts(hub.project(), hub.environment(), exposures, metrics));
  s.metrics.events_accepted += accepted;
  s.metrics.events_dropped += rejected.size();
  Array refused;
  for (const Rejection& r : rejected) {
    refused.push_back(Value(Object{{"list", Value(r.list)}, {"index", Value(static_cast<int64_t>(r.index))},
                                   {"field", Value(r.field)}, {"reason", Value(r.reason)}}));
  }
  return Json(202, Value(Object{{"accepted", Value(static_cast<int64_t>(accepted))}, {"rejected", Value(std::move(refused))}}));
}

// The request body's "context", required and valid.
absl::StatusOr<rules::Context> BodyContext(const Value& body) {
  const Value* json = body.Find("context");
  if (json == nullptr) return rules::InvalidField("context", "is required");
  rules::Context ctx = rules::ContextFromJson(*json);
  if (!ctx.valid()) return rules::InvalidField("context", ctx.error());
  return ctx;
}

Response Evaluate(const Call& c, Services& s, EnvironmentHub& hub) {
  TRY_ASSIGN(Value body, ObjectBody(c.req));
  TRY_ASSIGN(rules::Context ctx, BodyContext(body));
  const Value* flag;
  const Value* explain;
  TRY(Want(body, "flag", Value::Type::kString, &flag));
  TRY(Want(body, "explain", Value::Type::kBool, &explain));
  bool want_trace = explain != nullptr && explain->as_bool();
  const rules::Snapshot* snap = CurrentSnapshot(hub);
  auto one = [&](const rules::Detail& d, const rules::Trace* trace) {
    Value v = rules::DetailToValue(d);
    if (trace != nullptr) v.Set("trace", trace->steps());
    return v;
  };
  if (flag != nullptr) {
    rules::Trace trace;
    rules::Detail d = rules::Evaluate(*snap, flag->as_string(), ctx, want_trace ? &trace : nullptr);
    ++s.metrics.evaluations;
    s.exposures.Record(hub.project(), hub.environment(), flag->as_string(), d, ctx);
    Value v = one(d, want_trace ? &trace : nullptr);
    v.Set("flag", Value(flag->as_string()));
    return WithETag(Json(200, v), snap->sequence());
  }
  Object flags;
  flags.reserve(snap->flag_count());
  for (size_t i = 0; i < snap->flag_count(); ++i) {
    const auto& cf = snap->flag(i);
    rules::Trace trace;
    rules::Detail d = rules::Evaluate(*snap, cf, ctx, want_trace ? &trace : nullptr);
    s.exposures.Record(hub.project(), hub.environment(), rules::FlagModel(cf).key, d, ctx);
    // Keys are unique in a snapshot: appended without a duplicate check.
    flags.emplace_back(rules::FlagModel(cf).key, one(d, want_trace ? &trace : nullptr));
  }
  s.metrics.evaluations += snap->flag_count();
  return Json(200, Value(Object{{"sequence", Value(snap->sequence())}, {"flags", Value(std::move(flags))}}));
}

}  // namespace

void AddSdkRoutes(Router& router, Services& s) {
  // The environment of the calling key, or an error response.
  auto hub_of = [&s](const Call& c) { return s.hubs.Get(c.key->project, c.key->environment); };

  router.Add("GET", "/sdk/v1/stream", Access::kServerSdk, [hub_of](const Call& c) {
    TRY(hub_of(c).status());
    Response r;
    StreamRequest stream;
    stream.kind = StreamRequest::Kind::kSdk;
    stream.project = c.key->project;
    stream.environment = c.key->environment;
    stream.key_id = c.key->id;
    if (const std::string* last = c.req.Header("last-event-id"); last != nullptr && !last->empty()) {
      int64_t n = -1;
      auto [end, ec] = std::from_chars(last->data(), last->data() + last->size(), n);
      if (ec == std::errc() && end == last->data() + last->size() && n >= 0) stream.last_event_id = n;
    }
    r.stream = std::move(stream);
    return r;
  });

  router.Add("GET", "/sdk/v1/flags", Access::kServerSdk, [hub_of](const Call& c) {
    TRY_ASSIGN(std::shared_ptr<EnvironmentHub> hub, hub_of(c));
    EnvironmentHub::PutEvent put = hub->Put();
    std::string etag = ETag(put.sequence);
    if (auto not_modified = NotModified(c.req, etag)) return std::move(*not_modified);
    Response r;
    r.shared_body = put.chunk;  // the put's own bytes: a 60 MB payload is not copied per poll
    r.shared_view = put.payload();
    r.headers.emplace_back("ETag", etag);
    return r;
  });

  router.Add("POST", "/sdk/v1/evaluate", Access::kServerSdk, [hub_of, &s](const Call& c) {
    TRY_ASSIGN(std::shared_ptr<EnvironmentHub> hub, hub_of(c));
    return Evaluate(c, s, *hub);
  });

  router.Add("POST", "/sdk/v1/events", Access::kServerSdk, [hub_of, &s](const Call& c) {
    TRY_ASSIGN(std::shared_ptr<EnvironmentHub> hub, hub_of(c));
    return Events(c, s, *hub);
  });

  // For people (the console's Evaluate page): one flag for one context, with the explain
  // trace, as the SDKs would evaluate it now. No exposure is recorded: nobody was served.
  router.Add("POST", "/api/v1/projects/{p}/environments/{e}/evaluate", Access::kAdmin, [&s](const Call& c) {
    TRY_ASSIGN(std::shared_ptr<EnvironmentHub> hub, s.hubs.Get(c.Param("p"), c.Param("e")));
    TRY_ASSIGN(Value body, ObjectBody(c.req));
    TRY_ASSIGN(rules::Context ctx, BodyContext(body));
    const Value* flag;
    TRY(Want(body, "flag", Value::Type::kString, &flag));
    if (flag == nullptr) return ErrorResponse(400, "invalid_argument", "flag: is required", "flag");
    const rules::Snapshot* snap = CurrentSnapshot(*hub);
    rules::Trace trace;
    rules::Detail d = rules::Evaluate(*snap, flag->as_string(), ctx, &trace);
    Value v = rules::DetailToValue(d);
    v.Set("flag", Value(flag->as_string()));
    v.Set("sequence", Value(snap->sequence()));
    v.Set("trace", trace.steps());
    return Json(200, v);
  });
}

}  // namespace gonfalon::server
