#pragma once
// Snapshot: one environment's flags and segments compiled for evaluation (DESIGN §5).
//
// Building a Snapshot is where the expensive work happens: regexes are compiled with RE2,
// semantic versions and dates parsed, target and segment key sets hashed, prerequisite and
// segment references resolved to indices, bucketing prefixes pre-hashed. Evaluating against it
// (evaluator.h) then only reads.
//
// A Snapshot is immutable once built. Writers build a new one and publish it (SnapshotCell);
// readers keep the shared_ptr for as long as they use results that point into it.
//
// Thread safety: a const Snapshot may be evaluated from any number of threads at once.
//
//   std::shared_ptr<const Snapshot> snap = Snapshot::Build(std::move(env));
//   Detail d = Evaluate(*snap, "checkout", context);

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "gonfalon/rules/model.h"

namespace gonfalon::rules {

namespace internal {
struct CompiledFlag;
struct CompiledSegment;
struct SnapshotData;
}  // namespace internal

class Snapshot {
 public:
  // Never fails: data that cannot be evaluated (a bad regex, a variation out of range, a
  // missing prerequisite) compiles into something that evaluates as LaunchDarkly would
  // (no match, MALFORMED_FLAG, PREREQUISITE_FAILED).
  static std::shared_ptr<const Snapshot> Build(Environment env);
  ~Snapshot();
  Snapshot(const Snapshot&) = delete;
  Snapshot& operator=(const Snapshot&) = delete;

  int64_t sequence() const;
  // The data the snapshot was built from.
  const Environment& environment() const;
  size_t flag_count() const;
  // The compiled flag with this key, or nullptr (deleted flags are absent).
  const internal::CompiledFlag* FindFlag(std::string_view key) const;
  // The i-th compiled flag in key order, i < flag_count().
  const internal::CompiledFlag& flag(size_t i) const;
  // The position of one of this snapshot's flags: flag(FlagIndex(f)) is f.
  size_t FlagIndex(const internal::CompiledFlag& f) const;
  // For the evaluator.
  const internal::SnapshotData& data() const { return *d_; }

 private:
  friend struct internal::SnapshotData;
  Snapshot();
  std::unique_ptr<internal::SnapshotData> d_;
};

}  // namespace gonfalon::rules
