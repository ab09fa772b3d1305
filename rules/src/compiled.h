#pragma once
// Compiled forms of flags and segments (internal to rules): everything evaluation needs,
// resolved and parsed once when a Snapshot is built.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "gonfalon/rules/bucketing.h"
#include "gonfalon/rules/context.h"
#include "gonfalon/rules/model.h"
#include "gonfalon/rules/snapshot.h"
#include "operators.h"
#include "re2/re2.h"

namespace gonfalon::rules::internal {

// One clause value, pre-parsed for its operator.
struct ClauseValue {
  const Value* raw = nullptr;
  std::optional<double> millis;      // before / after
  std::optional<SemVer> semver;      // semVer*
  std::unique_ptr<RE2> regex;        // matches; null when the pattern does not compile
  int segment = -1;                  // segmentMatch: index into SnapshotData::segments
};

struct CompiledClause {
  const Clause* model = nullptr;
  Op op = Op::kUnknown;
  bool negate = false;
  std::string context_kind;  // "user" when absent
  AttributeRef attribute;    // invalid ref: the flag is malformed when this clause is reached
  std::vector<ClauseValue> values;
  // `in` with many string values: a hash set instead of a scan.
  absl::flat_hash_set<std::string> string_set;
  bool use_string_set = false;
};

struct CompiledRollout {
  RolloutKind kind = RolloutKind::kRollout;
  std::string context_kind;
  AttributeRef bucket_by;
  BucketHasher hasher;
  struct Bucket {
    int variation;
    double upper;  // cumulative weight / 100000
    bool untracked;
  };
  std::vector<Bucket> buckets;
};

struct CompiledVariationOrRollout {
  int variation = -1;
  std::optional<CompiledRollout> rollout;
};

struct CompiledTarget {
  std::string context_kind;
  int variation = 0;
  absl::flat_hash_set<std::string> values;
};

struct CompiledRule {
  const FlagRule* model = nullptr;
  std::vector<CompiledClause> clauses;
  CompiledVariationOrRollout result;
};

struct CompiledPrerequisite {
  const Prerequisite* model = nullptr;
  int flag = -1;  // index into SnapshotData::flags; -1: no such flag
};

struct CompiledFlag {
  const Flag* model = nullptr;
  int index = 0;
  bool has_targeting = false;  // any targets or rules (OFREP STATIC otherwise)
  std::vector<CompiledPrerequisite> prerequisites;
  std::vector<CompiledTarget> targets;  // in LaunchDarkly's order (contextTargets, user deferral)
  std::vector<CompiledRule> rules;
  CompiledVariationOrRollout fallthrough;
};

struct CompiledSegmentRule {
  const SegmentRule* model = nullptr;
  std::vector<CompiledClause> clauses;
  std::optional<double> weight;  // fraction 0..1
  std::string rollout_context_kind;
  AttributeRef bucket_by;
};

struct CompiledSegment {
  const Segment* model = nullptr;
  // kind -> keys
  absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>> included;
  absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>> excluded;
  std::vector<CompiledSegmentRule> rules;
  BucketHasher hasher;
};

struct SnapshotData {
  Environment env;
  std::vector<CompiledFlag> flags;  // key order
  absl::flat_hash_map<std::string, int> flag_index;
  std::vector<CompiledSegment> segments;
  absl::flat_hash_map<std::string, int> segment_index;

  static void Compile(Snapshot& snap);
};

}  // namespace gonfalon::rules::internal
