#pragma once
// simdjson's DOM to Value, shared by value.cc (whole documents) and split_json.cc (one item of
// a large document at a time). Internal to rules: nothing outside rules/src sees simdjson.

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gonfalon/rules/value.h"
#include "simdjson.h"

namespace gonfalon::rules::internal {

// Converts `e`, found at `depth` in its document (the root is 0), into `out`. Objects keep their
// members in order; of duplicate names the last value wins, at the first one's place. Fails past
// kMaxJsonDepth.
absl::Status ConvertJson(simdjson::dom::element e, int depth, Value& out);

// ParseJson for a document found at `depth` in a larger one (the depth limit counts from there).
absl::StatusOr<Value> ParseJsonAt(std::string_view text, int depth);

}  // namespace gonfalon::rules::internal
