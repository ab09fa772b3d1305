// Records of experiments in the `experiments` column family: their keys and JSON forms
// (the key layout is in experiment_records.h).
#include "experiment_records.h"

#include "rocks_store.h"

namespace gonfalon::storage::internal {

std::string IterationPrefix(std::string_view p, std::string_view e, std::string_view flag) {
  return StrCat("i/", p, "/", e, "/", flag, "/");
}
std::string Under(char kind, std::string_view p, std::string_view e, std::string_view flag, int64_t n) {
  return StrCat(std::string(1, kind), "/", p, "/", e, "/", flag, "/", SeqKey(n));
}

Value IterationToJson(const Iteration& it) {
  Array metrics, weights;
  for (const auto& m : it.metrics) metrics.emplace_back(m);
  for (double w : it.weights) weights.emplace_back(w);
  Value v(Object{{"number", Value(it.number)}, {"startedMs", Value(it.started_ms)}, {"endedMs", Value(it.ended_ms)},
                 {"control", Value(it.control)}, {"metrics", Value(std::move(metrics))},
                 {"weights", Value(std::move(weights))}, {"unitKind", Value(it.unit_kind)}});
  if (it.archived_ms != 0) v.Set("archivedMs", Value(it.archived_ms));
  if (it.flag_version != 0) v.Set("flagVersion", Value(it.flag_version));
  return v;
}

absl::StatusOr<Iteration> IterationFromJson(const Value& v) {
  Iteration it;
  RETURN_IF_ERROR(rules::GetInt64(v, "number", "", it.number));
  RETURN_IF_ERROR(rules::GetInt64(v, "startedMs", "", it.started_ms));
  RETURN_IF_ERROR(rules::GetInt64(v, "flagVersion", "", it.flag_version));
  RETURN_IF_ERROR(rules::GetInt64(v, "endedMs", "", it.ended_ms));
  RETURN_IF_ERROR(rules::GetInt(v, "control", "", it.control));
  RETURN_IF_ERROR(rules::GetStrings(v, "metrics", "", it.metrics));
  RETURN_IF_ERROR(rules::GetString(v, "unitKind", "", it.unit_kind));
  RETURN_IF_ERROR(rules::GetInt64(v, "archivedMs", "", it.archived_ms));  // absent: 0
  ASSIGN_OR_RETURN(const Array* weights, rules::GetArray(v, "weights", ""));
  if (weights != nullptr) {
    for (const Value& w : *weights) it.weights.push_back(w.as_number());
  }
  return it;
}

namespace {

// 8 bytes that name an iteration in unit keys: FNV-1a 64 of "{flag}/{n}", big-endian.
std::string IterationId(std::string_view flag, int64_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : StrCat(flag, "/", n)) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(h >> (56 - 8 * i));
  return out;
}

}  // namespace

std::string UnitPrefix(std::string_view p, std::string_view e, std::string_view flag, int64_t n) {
  return StrCat("u/", p, "/", e, "/", IterationId(flag, n));
}

Header HeaderFromJson(const std::optional<Value>& json, size_t variations) {
  Header h{std::vector<int64_t>(variations, 0), 0};
  if (!json.has_value()) return h;
  if (const Value* u = json->Find("units"); u != nullptr && u->is_array()) {
    for (size_t i = 0; i < u->as_array().size() && i < variations; ++i) h.units[i] = static_cast<int64_t>(u->as_array()[i].as_number());
  }
  if (const Value* m = json->Find("multiple")) h.multiple = static_cast<int64_t>(m->as_number());
  return h;
}

Value HeaderToJson(const Header& h) {
  Array counts;
  for (int64_t c : h.units) counts.emplace_back(c);
  return Value(Object{{"units", Value(std::move(counts))}, {"multiple", Value(h.multiple)}});
}

MetricSums SumsFromJson(const std::optional<Value>& json) {
  if (!json.has_value() || !json->is_array() || json->as_array().size() != 3) return {};
  return {json->as_array()[0].as_number(), json->as_array()[1].as_number(), json->as_array()[2].as_number()};
}

Value SumsToJson(const MetricSums& s) { return Value(Array{Value(s.units), Value(s.sum), Value(s.sum_of_squares)}); }

Value DayToJson(const DaySums& d) {
  Array units, metrics;
  for (int64_t u : d.units) units.emplace_back(u);
  for (const auto& per : d.metrics) {
    Array row;
    for (const MetricSums& m : per) row.push_back(SumsToJson(m));
    metrics.emplace_back(std::move(row));
  }
  return Value(Object{{"units", Value(std::move(units))}, {"multiple", Value(d.multiple_exposures)}, {"sums", Value(std::move(metrics))}});
}

DaySums DayFromJson(const Value& v, int64_t day_ms, size_t variations, size_t metrics) {
  DaySums d;
  d.day_ms = day_ms;
  Header h = HeaderFromJson(v, variations);
  d.units = std::move(h.units);
  d.multiple_exposures = h.multiple;
  d.metrics.assign(metrics, std::vector<MetricSums>(variations));
  const Value* sums = v.Find("sums");
  if (sums == nullptr || !sums->is_array()) return d;
  for (size_t m = 0; m < metrics && m < sums->as_array().size(); ++m) {
    const Value& per = sums->as_array()[m];
    if (!per.is_array()) continue;
    for (size_t x = 0; x < variations && x < per.as_array().size(); ++x) d.metrics[m][x] = SumsFromJson(per.as_array()[x]);
  }
  return d;
}

}  // namespace gonfalon::storage::internal
