#pragma once
// Snapshot: one environment's flags and segments compiled for evaluation (DESIGN §5).
//
// Compiling is where the expensive work happens: regexes are compiled with RE2, semantic
// versions and dates parsed, target and segment key sets hashed, bucketing prefixes
// pre-hashed. Evaluating against a snapshot (evaluator.h) then only reads.
//
// A Snapshot is immutable once built. Writers build a new one and publish it (SnapshotCell);
// readers keep the shared_ptr for as long as they use results that point into it.
//
// Snapshots share what did not change: Apply makes the next snapshot from a change set by
// compiling only the items the change set names; every other compiled item (and its encoded
// JSON) is shared with the previous snapshot. References between items (prerequisites,
// segmentMatch) are resolved by key in the evaluating snapshot, so no other item needs
// recompiling and one evaluation only ever sees one snapshot's items.
//
// Thread safety: a const Snapshot may be evaluated from any number of threads at once.
//
//   std::shared_ptr<const Snapshot> snap = Snapshot::Build(std::move(env));
//   Detail d = Evaluate(*snap, "checkout", context);
//   auto next = snap->Apply(change_set);   // StatusOr<shared_ptr<const Snapshot>>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "gonfalon/rules/change_set.h"
#include "gonfalon/rules/model.h"
#include "gonfalon/rules/parallel.h"

namespace gonfalon::rules {

namespace internal {
struct CompiledFlag;
struct CompiledSegment;
struct SnapshotData;
}  // namespace internal

// When a snapshot encodes its items' JSON, which it keeps for payloads (PayloadJson, the lists).
enum class ItemJson : uint8_t {
  // On first use, from the model each compiled item keeps whole (the SDK, which seldom
  // assembles a payload).
  kOnDemand,
  // When the item is compiled; the compiled item's model then drops what only the JSON needs
  // and evaluation does not read: management metadata (names, descriptions, tags), salts,
  // target and segment key lists (compiled into hash sets), known operators' names. The server, which serves every
  // item's JSON: at 100,000 flags this keeps ~20 MB less (docs/performance.md, "Scale").
  // Flags() then returns models without those; ToEnvironment() decodes the JSON.
  kEager,
};

class Snapshot {
 public:
  // Never fails: data that cannot be evaluated (a bad regex, a variation out of range, a
  // missing prerequisite) compiles into something that evaluates as LaunchDarkly would
  // (no match, MALFORMED_FLAG, PREREQUISITE_FAILED). Items are compiled through `parallel`
  // when given (each item alone: none refers to another's compiled form). Snapshots that
  // Apply derives compile their items with the same `json`.
  static std::shared_ptr<const Snapshot> Build(Environment env, const ParallelFor& parallel = {},
                                               ItemJson json = ItemJson::kOnDemand);
  ~Snapshot();
  Snapshot(const Snapshot&) = delete;
  Snapshot& operator=(const Snapshot&) = delete;

  // The next snapshot: this one with `event` applied by ApplyChangeSet's rules (each item
  // replaces or removes the item of its key only if newer; all or nothing, the error names
  // the item). Compiles only the named items. `changes`, when given, receives what changed.
  absl::StatusOr<std::shared_ptr<const Snapshot>> Apply(const ChangeSetEvent& event,
                                                        AppliedChanges* changes = nullptr) const;

  int64_t sequence() const;
  // Flags that evaluate (archived ones excluded), in key order.
  size_t flag_count() const;
  const internal::CompiledFlag& flag(size_t i) const;
  // The compiled flag with this key, or nullptr (absent or archived).
  const internal::CompiledFlag* FindFlag(std::string_view key) const;
  // A number for each flag, below ordinal_bound(), that stays the same for a key in the
  // snapshots Apply derives from this one (while the flag exists): per-flag tables indexed by
  // it survive updates.
  uint32_t FlagOrdinal(const internal::CompiledFlag& f) const;
  uint32_t ordinal_bound() const;

  // The environment as JSON, {"sequence":n,"flags":{...},"segments":{...}} (codec.h's
  // EncodeEnvironment), assembled from each item's JSON, which is encoded once per item
  // version and shared between snapshots.
  std::string PayloadJson() const;
  // The same appended to `out`, with room reserved for `room_after` more bytes (framing), so
  // that a framed payload is written once, into one buffer.
  void AppendPayloadJson(std::string& out, size_t room_after = 0) const;
  // Every flag it holds, archived ones included, in key order, with its JSON, without copying
  // (lists; the pointers and views live as long as the snapshot). ItemJson::kEager: the models
  // lack what only the JSON needs (management metadata, salts, target lists): read those from
  // `json`.
  struct FlagEntry {
    const Flag* model;
    std::string_view json;
  };
  std::vector<FlagEntry> Flags() const;
  // Every flag's or segment's JSON as one array, in key order, from each item's kept JSON
  // (the same bytes the `put` carries).
  std::string FlagsJsonArray() const;
  std::string SegmentsJsonArray() const;
  // The data the snapshot holds, decoded (tests and tools; costs a copy of everything).
  Environment ToEnvironment() const;
  // The flags whose evaluation may differ after `changes`: the changed flags, flags that
  // match on a changed segment (directly or through other segments), and, transitively,
  // flags that have any of those as a prerequisite. Key order.
  std::vector<std::string> AffectedFlags(const AppliedChanges& changes) const;

  // For the evaluator.
  const internal::SnapshotData& data() const { return *d_; }

 private:
  Snapshot();
  std::unique_ptr<internal::SnapshotData> d_;
};

}  // namespace gonfalon::rules
