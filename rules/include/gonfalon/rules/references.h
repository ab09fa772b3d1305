#pragma once
// What flags and segments point at, and the one rule for it: every `segmentMatch` names a
// segment that exists, every prerequisite a flag that exists with the variation it asks for, a
// flag is not its own prerequisite, and prerequisites never loop. The codec checks a whole
// environment with it (DecodeEnvironment, strict) and the store a change set against what is
// stored (storage/src/references.cc); both report the same messages.
//
// Pure: items are found through a lookup the caller provides.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "gonfalon/rules/change_set.h"
#include "gonfalon/rules/model.h"
#include "gonfalon/rules/value.h"

namespace gonfalon::rules {

// The references of one flag or segment.
struct ItemReferences {
  struct SegmentUse {
    std::string key;
    std::string where;  // inside the item: "rules[0].clauses[1].values[0]"
  };
  struct PrerequisiteUse {
    std::string key;
    int64_t variation = 0;
  };
  std::vector<SegmentUse> segments;
  std::vector<PrerequisiteUse> prerequisites;  // in the order of "prerequisites"
  size_t variations = 0;                       // a flag's variation count
};

ItemReferences ReferencesOf(const Flag& flag);
ItemReferences ReferencesOf(const Segment& segment);
// From an item's JSON (as stored); parts that are not well-formed are skipped (the codec
// refuses them before this matters).
ItemReferences ReferencesOf(const Value& item, ChangedKind kind);

// An item as it is (or will be): its references, or nullptr when it does not exist.
using ReferenceLookup = absl::FunctionRef<absl::StatusOr<const ItemReferences*>(ChangedKind, std::string_view)>;

// The references of item `key` resolve. Errors are InvalidArgument about a field inside the item
// ("rules[0].clauses[1].values[0]", "prerequisites[2].key", "prerequisites[2].variation").
absl::Status CheckReferences(ChangedKind kind, std::string_view key, const ItemReferences& refs,
                             ReferenceLookup lookup);

// Follows prerequisites depth first from the flags `roots`; each flag is visited once, and every
// loop reachable from the roots is found. A loop is an InvalidArgument with the message
// "prerequisite cycle: a -> b -> a", about the field `field_of(flag, j)` names for the first
// link of the loop (flag's prerequisites[j]) that it can name ("" for one it cannot).
absl::Status CheckNoPrerequisiteCycle(const std::vector<std::string>& roots, ReferenceLookup lookup,
                                      absl::FunctionRef<std::string(std::string_view flag, size_t index)> field_of);

}  // namespace gonfalon::rules
