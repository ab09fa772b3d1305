#pragma once
// Compiled forms of flags and segments (internal to rules): everything evaluation needs,
// parsed once when an item enters a Snapshot.
//
// A compiled item owns its model and is immutable once built, so snapshots share it: a new
// snapshot recompiles only the items its change set names. Nothing else ever needs
// recompiling, because compiled items never point at other items: prerequisites and
// segmentMatch clauses name their target by key and are looked up in the evaluating
// snapshot's index (one hash probe each). A segment's key sets therefore live in the segment
// alone, and every flag that matches on it sees its new version in the next snapshot.

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "gonfalon/rules/bucketing.h"
#include "gonfalon/rules/context.h"
#include "gonfalon/rules/model.h"
#include "gonfalon/rules/snapshot.h"
#include "item_index.h"
#include "ordered_list.h"
#include "operators.h"
#include "re2/re2.h"

namespace gonfalon::rules::internal {

// One clause value, pre-parsed for its operator.
// What each operator needs is parsed once; one variant holds whichever it is (100,000 flags
// carry hundreds of thousands of these).
struct ClauseValue {
  const Value* raw = nullptr;
  // A version is on the heap: inline it would make every value of every clause 24 bytes
  // bigger (most clauses are `in`, which parses nothing). A segment's key is `raw`'s string,
  // so only its hash is kept (SegmentHash).
  struct SegmentHash {
    size_t hash;
  };
  std::variant<std::monostate, SegmentHash, double, std::unique_ptr<const SemVer>, std::unique_ptr<RE2>> parsed;

  // segmentMatch: the segment's key, hashed once (nullopt: not a string).
  std::optional<HashedKey> segment() const {
    const auto* s = std::get_if<SegmentHash>(&parsed);
    if (s == nullptr) return std::nullopt;
    return HashedKey::WithHash(raw->as_string(), s->hash);
  }
  // before / after: Unix milliseconds (null: not a date).
  const double* millis() const { return std::get_if<double>(&parsed); }
  // semVer*: the version (null: not a version).
  const SemVer* semver() const {
    const auto* v = std::get_if<std::unique_ptr<const SemVer>>(&parsed);
    return v != nullptr ? v->get() : nullptr;
  }
  // matches: the pattern (null when it does not compile).
  const RE2* regex() const {
    const auto* re = std::get_if<std::unique_ptr<RE2>>(&parsed);
    return re != nullptr ? re->get() : nullptr;
  }
};

struct CompiledClause {
  const Clause* model = nullptr;
  Op op = Op::kUnknown;
  bool negate = false;
  std::string_view context_kind;  // the model clause's, or "user" when absent
  AttributeRef attribute;    // invalid ref: the flag is malformed when this clause is reached
  std::vector<ClauseValue> values;
  // `in` with many string values: a hash set instead of a scan.
  // `in` with many strings: the model's strings, hashed (null: compare one by one).
  std::unique_ptr<const absl::flat_hash_set<absl::string_view>> string_set;
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
  std::unique_ptr<const CompiledRollout> rollout;  // on the heap: most results are a fixed variation
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
  const Prerequisite* model = nullptr;  // the flag is looked up by `key` when evaluated
  HashedKey key{""};
};

// What compiled flags and segments have in common: the model they own, their key, and their
// JSON. Built in place and never moved: `model` and the compiled parts point into `item`.
template <typename Model>
struct CompiledItem {
  // `json`: the item's JSON, encoded already (ItemJson::kEager), or empty to encode it from
  // `m` on first use.
  CompiledItem(Model m, std::string json) : item(std::move(m)), json_(std::move(json)), json_ready_(!json_.empty()) {}
  CompiledItem(const CompiledItem&) = delete;
  CompiledItem& operator=(const CompiledItem&) = delete;
  const std::string& key() const { return item.key; }
  // The item's JSON (codec's EncodeFlag or EncodeSegment), kept for the item's life:
  // payloads are assembled from these.
  const std::string& Json() const;

  // Written only while the item is compiled (CompileFlag, CompileSegment): const once shared.
  Model item;
  const Model* const model = &item;

 private:
  mutable std::once_flag json_once_;
  mutable std::string json_;
  const bool json_ready_;  // encoded at construction: json_ is never written again
};

struct CompiledFlag : CompiledItem<Flag> {
  using CompiledItem::CompiledItem;
  // Stable for a key across the snapshots that share it (exposure counters index by it).
  uint32_t ordinal = 0;
  // Prerequisites or segmentMatch clauses: its answer can change when another item changes.
  bool has_references = false;
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

struct CompiledSegment : CompiledItem<Segment> {
  using CompiledItem::CompiledItem;
  bool has_references = false;  // segmentMatch clauses in its rules
  // kind -> keys
  absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>> included;
  absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>> excluded;
  std::vector<CompiledSegmentRule> rules;
  BucketHasher hasher;
};

std::shared_ptr<const CompiledFlag> CompileFlag(Flag f, uint32_t ordinal, ItemJson json);
std::shared_ptr<const CompiledSegment> CompileSegment(Segment s, ItemJson json);

struct SnapshotData {
  int64_t sequence = 0;
  ItemJson item_json = ItemJson::kOnDemand;  // how Apply compiles the items it adds
  // Every item, archived and deleted-marked ones included (payloads carry them).
  ItemIndex<CompiledFlag> flags;
  ItemIndex<CompiledSegment> segments;
  // Key order (the flags' in shared chunks: ordered_list.h). `live_flags` omits flags marked
  // deleted (archived): what evaluation sees. The `referring_` lists hold the live items with
  // references (has_references), the only ones whose answers can change when another item does
  // (AffectedFlags scans them alone); `prerequisite_flags` those of them with prerequisites,
  // which AffectedFlags scans for every flag change. A change to an item in none of them leaves
  // their chunks shared.
  OrderedList<CompiledFlag> flag_order;
  OrderedList<CompiledFlag> live_flags;
  OrderedList<CompiledFlag> referring_flags;
  OrderedList<CompiledFlag> prerequisite_flags;
  std::vector<const CompiledSegment*> segment_order;
  std::vector<const CompiledSegment*> referring_segments;
  uint32_t ordinal_bound = 0;  // every flag's ordinal is below it

  // For evaluation: nullptr when absent or marked deleted.
  template <typename Key>
  const CompiledFlag* FindLiveFlag(const Key& key) const {
    const CompiledFlag* f = flags.Find(key);
    return f != nullptr && !f->model->deleted ? f : nullptr;
  }
  template <typename Key>
  const CompiledSegment* FindLiveSegment(const Key& key) const {
    const CompiledSegment* s = segments.Find(key);
    return s != nullptr && !s->model->deleted ? s : nullptr;
  }
};

}  // namespace gonfalon::rules::internal
