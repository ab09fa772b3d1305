#include <map>

#include "rocks_store.h"


namespace gonfalon::storage::internal {

absl::Status RocksStore::AddEventCounts(std::string_view project, std::string_view env, const std::vector<ExposureCount>& exposures, const std::vector<MetricCount>& metrics) {
  RETURN_IF_ERROR(CheckWritable());
  std::lock_guard<std::mutex> l(events_mu_);  // read-add-write of counters
  // Summed per key first: a batch holds many events of one hour, each key is read and written once.
  std::string prefix = EnvPrefix(project, env);
  std::map<std::string, int64_t> exposure_counts;
  for (const ExposureCount& x : exposures) {
    exposure_counts[StrCat(prefix, "x/", x.flag, "/", SeqKey(x.hour_ms), "/", x.variation)] += x.count;
  }
  std::map<std::string, std::pair<int64_t, double>> metric_counts;
  for (const MetricCount& m : metrics) {
    auto& [count, sum] = metric_counts[StrCat(prefix, "m/", m.event, "/", SeqKey(m.hour_ms))];
    count += m.count;
    sum += m.sum;
  }
  rocksdb::WriteBatch batch;
  for (const auto& [key, add] : exposure_counts) {
    ASSIGN_OR_RETURN(auto old, GetJson(kEvents, key));
    int64_t count = old.has_value() && old->Find("count") ? static_cast<int64_t>(old->Find("count")->as_number()) : 0;
    batch.Put(cfs_[kEvents], key, ToJson(Value(Object{{"count", Value(count + add)}})));
  }
  for (const auto& [key, add] : metric_counts) {
    ASSIGN_OR_RETURN(auto old, GetJson(kEvents, key));
    int64_t count = old.has_value() && old->Find("count") ? static_cast<int64_t>(old->Find("count")->as_number()) : 0;
    double sum = old.has_value() && old->Find("sum") ? old->Find("sum")->as_number() : 0;
    batch.Put(cfs_[kEvents], key, ToJson(Value(Object{{"count", Value(count + add.first)}, {"sum", Value(sum + add.second)}})));
  }
  return FromRocks(db_->Write(rocksdb::WriteOptions(), &batch), "writing event counts");
}

absl::StatusOr<std::vector<ExposureCount>> RocksStore::GetExposureCounts(std::string_view project, std::string_view env, std::string_view flag) {
  std::vector<ExposureCount> out;
  std::string prefix = StrCat(EnvPrefix(project, env), "x/", flag, "/");
  RETURN_IF_ERROR(Scan(kEvents, prefix, nullptr, [&](std::string_view k, std::string_view v) {
    ASSIGN_OR_RETURN(Value json, ParseStored(kEvents, k, v));
    std::string_view rest = k.substr(prefix.size());  // {hour}/{variation}
    ExposureCount c;
    c.flag = std::string(flag);
    std::optional<int64_t> hour = ParseSeqKey(rest.substr(0, std::min<size_t>(rest.size(), 16)));
    std::string_view var = rest.size() > 17 && rest[16] == '/' ? rest.substr(17) : std::string_view();
    int variation = 0;
    auto [end, ec] = std::from_chars(var.data(), var.data() + var.size(), variation);
    if (!hour.has_value() || var.empty() || ec != std::errc() || end != var.data() + var.size()) {
      return absl::DataLossError(StrCat("exposure count key \"", k, "\" is not {hour}/{variation}"));
    }
    c.hour_ms = *hour;
    c.variation = variation;
    c.count = static_cast<int64_t>(json.Find("count") ? json.Find("count")->as_number() : 0);
    out.push_back(std::move(c));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<MetricCount>> RocksStore::GetMetricCounts(std::string_view project, std::string_view env, std::string_view event) {
  std::vector<MetricCount> out;
  std::string prefix = StrCat(EnvPrefix(project, env), "m/", event, "/");
  RETURN_IF_ERROR(Scan(kEvents, prefix, nullptr, [&](std::string_view k, std::string_view v) {
    ASSIGN_OR_RETURN(Value json, ParseStored(kEvents, k, v));
    MetricCount c;
    c.event = std::string(event);
    std::optional<int64_t> hour = ParseSeqKey(k.substr(prefix.size()));
    if (!hour.has_value()) return absl::DataLossError(StrCat("metric count key \"", k, "\" does not end in an hour"));
    c.hour_ms = *hour;
    c.count = static_cast<int64_t>(json.Find("count") ? json.Find("count")->as_number() : 0);
    c.sum = json.Find("sum") ? json.Find("sum")->as_number() : 0;
    out.push_back(std::move(c));
    return absl::OkStatus();
  }));
  return out;
}

}  // namespace gonfalon::storage::internal
