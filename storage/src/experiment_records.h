#pragma once
// Records of experiments (DESIGN §8), shared by their definitions and results (experiments.cc)
// and their ingestion (experiment_ingest.cc). Internal to gonfalon::storage.
//
// Keys in the `experiments` column family:
//   m/{p}/{metric}                                  metric definition
//   i/{p}/{e}/{flag}/{n:016x}                       iteration n
//   h/{p}/{e}/{flag}/{n:016x}                       {"units":[per variation],"multiple":k}
//   s/{p}/{e}/{flag}/{n:016x}/{metric}/{variation}  [units, sum, sum of squares]
//   u/{p}/{e}/{iteration id}{kind}:{key}            a unit (binary, UnitState), iteration id =
//                                                   8 bytes of a hash of "{flag}/{n}": short keys
//                                                   keep the memtable's comparisons cheap
//   d/{p}/{e}/{flag}/{n:016x}/{day:016x}            the sums at the end of a UTC day (DaySums)
//   b/{p}/{e}/{batch id}                            time the batch was applied (pruned after a day)
// Everything of a project (environment) is under "{x}/{p}/" ("{x}/{p}/{e}/"), deleted with it.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "gonfalon/rules/value.h"
#include "gonfalon/storage/store.h"

namespace gonfalon::storage::internal {

// "i/{p}/{e}/{flag}/": the iterations of a flag.
std::string IterationPrefix(std::string_view p, std::string_view e, std::string_view flag);
// "{kind}/{p}/{e}/{flag}/{n:016x}": iteration n's record of that kind (i, h, s, d).
std::string Under(char kind, std::string_view p, std::string_view e, std::string_view flag, int64_t n);
// "u/{p}/{e}/{iteration id}": the units of iteration n.
std::string UnitPrefix(std::string_view p, std::string_view e, std::string_view flag, int64_t n);

rules::Value IterationToJson(const Iteration& it);
absl::StatusOr<Iteration> IterationFromJson(const rules::Value& v);

// An iteration's header: units exposed to one variation only, per variation, and the units
// exposed to several.
struct Header {
  std::vector<int64_t> units;
  int64_t multiple = 0;
};
Header HeaderFromJson(const std::optional<rules::Value>& json, size_t variations);  // absent: zeros
rules::Value HeaderToJson(const Header& h);

// One metric's sums for one variation: [units, sum, sum of squares]; zero when absent.
MetricSums SumsFromJson(const std::optional<rules::Value>& json);
rules::Value SumsToJson(const MetricSums& s);

// {"units":[...],"multiple":k,"sums":[per metric [per variation [units, sum, sum of squares]]]}
rules::Value DayToJson(const DaySums& d);
DaySums DayFromJson(const rules::Value& v, int64_t day_ms, size_t variations, size_t metrics);

}  // namespace gonfalon::storage::internal
