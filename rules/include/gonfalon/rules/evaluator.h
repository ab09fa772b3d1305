#pragma once
// The evaluator: flag + context -> value, variation index and reason (DESIGN §2).
//
// Evaluation is total: it never throws and never fails its caller; problems come back as an
// ERROR reason with an ErrorKind, and the caller serves its default. Scalar results allocate
// nothing: the value points into the Snapshot, which must outlive the Detail.
//
// Thread safety: any number of threads may evaluate against one Snapshot at once.
//
//   Detail d = Evaluate(*snapshot, "checkout", ctx);
//   if (d.value != nullptr && d.value->is_bool()) use(d.value->as_bool());
//
//   Trace trace;                                   // the optional explain trace
//   Evaluate(*snapshot, "checkout", ctx, &trace);  // trace.steps() is a JSON array

#include <cstdint>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "gonfalon/rules/context.h"
#include "gonfalon/rules/snapshot.h"
#include "gonfalon/rules/value.h"

namespace gonfalon::rules {

// The longest prerequisite chain (flags, the evaluated one included) that evaluates; a longer
// one is MALFORMED_FLAG, and the store refuses to write one.
inline constexpr int kMaxPrerequisiteChain = 64;

enum class ReasonKind : uint8_t {
  kOff,
  kFallthrough,
  kTargetMatch,
  kRuleMatch,
  kPrerequisiteFailed,
  kError,
};

enum class ErrorKind : uint8_t {
  kNone,
  kFlagNotFound,
  kMalformedFlag,
  kUserNotSpecified,
  kWrongType,
  kClientNotReady,
  kException,
};

// "OFF", "FALLTHROUGH", ... and "FLAG_NOT_FOUND", "MALFORMED_FLAG", ...
std::string_view ReasonKindName(ReasonKind k);
std::string_view ErrorKindName(ErrorKind k);

struct Reason {
  ReasonKind kind = ReasonKind::kError;
  ErrorKind error_kind = ErrorKind::kNone;
  int rule_index = -1;                // RULE_MATCH
  std::string_view rule_id;           // RULE_MATCH; points into the snapshot
  std::string_view prerequisite_key;  // PREREQUISITE_FAILED; points into the snapshot
  bool in_experiment = false;         // RULE_MATCH / FALLTHROUGH through an experiment
};

struct Detail {
  const Value* value = nullptr;  // nullptr: no variation (an error, or off with no offVariation)
  int variation_index = -1;
  Reason reason;
  // For OFREP: whether a FALLTHROUGH came through a rollout, and whether the flag has any
  // targets or rules at all (a STATIC result).
  bool via_rollout = false;
  bool flag_has_targeting = false;
  int64_t flag_version = 0;
  // With reason.in_experiment: the context kind the rollout bucketed by (the experiment's unit
  // kind); points into the snapshot.
  std::string_view experiment_kind;
};

// Collects the explain trace (ext): each prerequisite, target list, rule and clause tried, the
// attribute values read, the bucket value and the boundaries it fell between.
class Trace {
 public:
  const Value& steps() const { return steps_; }
  Value& mutable_steps() { return steps_; }

 private:
  Value steps_{Array{}};
};

Detail Evaluate(const Snapshot& snapshot, std::string_view flag_key, const Context& context,
                Trace* trace = nullptr);
Detail Evaluate(const Snapshot& snapshot, const internal::CompiledFlag& flag,
                const Context& context, Trace* trace = nullptr);

// Evaluates every flag, in key order. Client-side callers pass `client_side_only` to skip flags
// not available to client SDKs.
void EvaluateAll(const Snapshot& snapshot, const Context& context,
                 absl::FunctionRef<void(std::string_view key, const Detail&)> each,
                 bool client_side_only = false);

// The reason as LaunchDarkly writes it: {"kind":"RULE_MATCH","ruleIndex":0,"ruleId":"r1"}.
Value ReasonToValue(const Reason& reason);
// {"value":..., "variationIndex":n, "reason":{...}}; "variationIndex" omitted when absent.
Value DetailToValue(const Detail& detail);

// Read access to compiled flags for callers that need the model (server, SDK).
const Flag& FlagModel(const internal::CompiledFlag& flag);

}  // namespace gonfalon::rules
