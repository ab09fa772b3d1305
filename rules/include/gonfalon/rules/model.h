#pragma once
// The flag and segment data model (DESIGN §2), as decoded from JSON.
//
// These are plain structs: the codec (codec.h) fills them from JSON and writes them back, and
// Snapshot (snapshot.h) compiles them for evaluation. Field names follow the JSON names, which
// are compatible with LaunchDarkly's server-side flag data. Fields marked (ext) are Gonfalon's
// own management metadata and are never evaluated.
//
// Thread safety: plain values; const instances may be shared between threads.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gonfalon/rules/heap_optional.h"
#include "gonfalon/rules/value.h"

namespace gonfalon::rules {

// Clause operators. kUnknown keeps data from newer writers evaluable: it never matches.
enum class Op : uint8_t {
  kUnknown,
  kIn,
  kStartsWith,
  kEndsWith,
  kContains,
  kMatches,
  kLessThan,
  kLessThanOrEqual,
  kGreaterThan,
  kGreaterThanOrEqual,
  kBefore,
  kAfter,
  kSemVerEqual,
  kSemVerLessThan,
  kSemVerGreaterThan,
  kSegmentMatch,
};
// "in", "startsWith", ...; "" for kUnknown.
std::string_view OpName(Op op);
// Exact, case-sensitive; kUnknown when the name is not one of the 15.
Op ParseOp(std::string_view name);

struct Clause {
  std::optional<std::string> context_kind;  // absent: "user", and attribute is a plain name
  std::string attribute;
  Op op = Op::kUnknown;
  std::string op_name;  // as written, so unknown operators round-trip
  std::vector<Value> values;
  bool negate = false;
  bool operator==(const Clause&) const = default;
};

struct WeightedVariation {
  int variation = 0;
  int weight = 0;  // 0..100000
  bool untracked = false;
  bool operator==(const WeightedVariation&) const = default;
};

enum class RolloutKind : uint8_t { kRollout, kExperiment };

struct Rollout {
  RolloutKind kind = RolloutKind::kRollout;
  std::optional<std::string> context_kind;  // default "user"
  std::optional<std::string> bucket_by;     // default "key"; ignored for experiments
  std::optional<int64_t> seed;
  std::vector<WeightedVariation> variations;
  bool operator==(const Rollout&) const = default;
};

// Either a fixed variation or a rollout (a flag with neither is malformed when reached).
struct VariationOrRollout {
  std::optional<int> variation;
  HeapOptional<Rollout> rollout;  // on the heap: most rules serve a fixed variation
  bool operator==(const VariationOrRollout&) const = default;
};

struct Target {
  std::string context_kind;  // "user" for the legacy `targets` list
  std::vector<std::string> values;
  int variation = 0;
  bool operator==(const Target&) const = default;
};

struct FlagRule {
  std::string id;
  std::vector<Clause> clauses;
  VariationOrRollout variation_or_rollout;
  bool track_events = false;
  bool operator==(const FlagRule&) const = default;
};

struct Prerequisite {
  std::string key;
  int variation = 0;
  bool operator==(const Prerequisite&) const = default;
};

struct ClientSideAvailability {
  bool using_mobile_key = false;
  bool using_environment_id = false;
  bool operator==(const ClientSideAvailability&) const = default;
};

// (ext) A flag's management metadata: the same in every environment of a project, never
// evaluated.
struct FlagManagement {
  std::string name;
  std::string description;
  std::vector<std::string> tags;
  bool temporary = false;
  std::string maintainer;
  bool empty() const { return name.empty() && description.empty() && tags.empty() && !temporary && maintainer.empty(); }
  bool operator==(const FlagManagement&) const = default;
};

struct Flag {
  std::string key;
  int64_t version = 0;
  bool on = false;
  std::vector<Value> variations;
  std::optional<int> off_variation;
  VariationOrRollout fallthrough;
  std::vector<Target> targets;          // user kind
  std::vector<Target> context_targets;  // any kind; a "user" entry with no values defers to targets
  std::vector<FlagRule> rules;
  std::vector<Prerequisite> prerequisites;
  std::string salt;
  bool track_events = false;
  bool track_events_fallthrough = false;
  ClientSideAvailability client_side_availability;
  bool deleted = false;
  // (ext) On the heap and absent when empty (SetManagement): evaluation never reads it, and a
  // snapshot that keeps its items' JSON drops it from its compiled flags (ItemJson::kEager).
  HeapOptional<FlagManagement> management;
  bool operator==(const Flag&) const = default;

  // The management metadata, or an empty one when absent.
  const FlagManagement& Management() const;
  // Sets it; an empty `m` leaves it absent, so that equal flags compare equal.
  void SetManagement(FlagManagement m);
};

struct SegmentTarget {
  std::string context_kind;
  std::vector<std::string> values;
  bool operator==(const SegmentTarget&) const = default;
};

struct SegmentRule {
  std::string id;
  std::vector<Clause> clauses;
  std::optional<int> weight;  // 0..100000; absent: every context matching the clauses
  std::optional<std::string> bucket_by;
  std::optional<std::string> rollout_context_kind;
  bool operator==(const SegmentRule&) const = default;
};

struct Segment {
  std::string key;
  int64_t version = 0;
  std::vector<std::string> included;  // user kind
  std::vector<std::string> excluded;  // user kind
  std::vector<SegmentTarget> included_contexts;
  std::vector<SegmentTarget> excluded_contexts;
  std::vector<SegmentRule> rules;
  std::string salt;
  bool deleted = false;
  // (ext)
  std::string name;
  std::string description;
  std::vector<std::string> tags;
  bool operator==(const Segment&) const = default;
};

// One environment's data: the payload of `gonfalon eval --data`, the stream's `put` and
// GET /sdk/v1/flags.
struct Environment {
  int64_t sequence = 0;
  std::map<std::string, Flag, std::less<>> flags;
  std::map<std::string, Segment, std::less<>> segments;
  bool operator==(const Environment&) const = default;
};

}  // namespace gonfalon::rules
