#include "gonfalon/rules/snapshot.h"

#include <algorithm>

#include "compiled.h"
#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/str_cat.h"

namespace gonfalon::rules {
namespace internal {
namespace {

// Above this many string values an `in` clause looks values up in a hash set.
constexpr size_t kStringSetThreshold = 8;

// The key-ordered list `before` with the (sorted, unique) `keys` replaced, inserted or
// removed: each key's node from `index` if it exists and `keep(node)`. The ranges between
// changed keys are copied whole, and positions found by binary search, so the cost is a copy
// of the pointers plus O(k log n) key comparisons.
template <typename Node, typename Keep>
std::vector<const Node*> MergeOrder(const std::vector<const Node*>& before, const std::vector<std::string>& keys,
                                    const ItemIndex<Node>& index, Keep keep) {
  std::vector<const Node*> out;
  out.reserve(before.size() + keys.size());
  auto it = before.begin();
  for (std::string_view k : keys) {
    auto pos = std::lower_bound(it, before.end(), k,
                                [](const Node* n, std::string_view key) { return std::string_view(n->key()) < key; });
    out.insert(out.end(), it, pos);
    it = pos;
    if (it != before.end() && std::string_view((*it)->key()) == k) ++it;  // replaced or removed
    if (const Node* n = index.Find(k); n != nullptr && keep(*n)) out.push_back(n);
  }
  out.insert(out.end(), it, before.end());
  return out;
}

bool IsLive(const CompiledFlag& f) { return !f.model->deleted; }
bool IsReferring(const CompiledFlag& f) { return !f.model->deleted && f.has_references; }
bool HasPrerequisites(const CompiledFlag& f) { return !f.model->deleted && !f.model->prerequisites.empty(); }
bool IsReferringSegment(const CompiledSegment& s) { return !s.model->deleted && s.has_references; }

bool HasSegmentMatch(const std::vector<Clause>& clauses) {
  for (const Clause& c : clauses) {
    if (c.op == Op::kSegmentMatch) return true;
  }
  return false;
}


CompiledClause CompileClause(const Clause& c) {
  CompiledClause cc;
  cc.model = &c;
  cc.op = c.op;
  cc.negate = c.negate;
  cc.context_kind = c.context_kind.has_value() ? std::string_view(*c.context_kind) : std::string_view("user");
  // Without contextKind (older data) the attribute is a plain name, never a path.
  cc.attribute = AttributeRef::Parse(c.attribute, /*literal=*/!c.context_kind.has_value());
  size_t strings = 0;
  cc.values.reserve(c.values.size());  // exactly: kept for the item's life
  for (const Value& v : c.values) {
    ClauseValue cv;
    cv.raw = &v;
    switch (c.op) {
      case Op::kBefore:
      case Op::kAfter:
        if (std::optional<double> millis = ToUnixMillis(v)) cv.parsed = *millis;
        break;
      case Op::kSemVerEqual:
      case Op::kSemVerLessThan:
      case Op::kSemVerGreaterThan:
        if (v.is_string()) {
          if (std::optional<SemVer> version = ParseSemVer(v.as_string())) {
            cv.parsed = std::make_unique<const SemVer>(std::move(*version));
          }
        }
        break;
      case Op::kMatches:
        if (v.is_string()) {
          RE2::Options options;
          options.set_log_errors(false);
          auto re = std::make_unique<RE2>(v.as_string(), options);
          if (re->ok()) cv.parsed = std::move(re);
        }
        break;
      case Op::kSegmentMatch:
        if (v.is_string()) cv.parsed.emplace<ClauseValue::SegmentHash>(HashedKey(v.as_string()).hash);
        break;
      default:
        break;
    }
    if (v.is_string()) ++strings;
    cc.values.push_back(std::move(cv));
  }
  if (c.op == Op::kIn && strings > kStringSetThreshold) {
    auto set = std::make_unique<absl::flat_hash_set<absl::string_view>>();
    set->reserve(strings);
    for (const Value& v : c.values) {
      if (v.is_string()) set->insert(absl::string_view(v.as_string()));
    }
    cc.string_set = std::move(set);
  }
  return cc;
}

std::vector<CompiledClause> CompileClauses(const std::vector<Clause>& clauses) {
  std::vector<CompiledClause> out;
  out.reserve(clauses.size());
  for (const Clause& c : clauses) out.push_back(CompileClause(c));
  return out;
}

CompiledVariationOrRollout CompileResult(const VariationOrRollout& vr, const Flag& f) {
  CompiledVariationOrRollout out;
  if (vr.variation.has_value()) {
    out.variation = *vr.variation;
    return out;
  }
  if (!vr.rollout.has_value()) return out;  // malformed when reached
  const Rollout& r = *vr.rollout;
  CompiledRollout cr;
  cr.kind = r.kind;
  cr.context_kind = r.context_kind.value_or("user");
  if (r.kind == RolloutKind::kExperiment) {
    cr.bucket_by = AttributeRef::Parse("key");  // experiments always bucket by key
  } else {
    cr.bucket_by =
        AttributeRef::Parse(r.bucket_by.value_or("key"), /*literal=*/!r.context_kind.has_value());
  }
  cr.hasher = r.seed.has_value() ? BucketHasher(*r.seed) : BucketHasher(f.key, f.salt);
  // Accumulate exactly as LaunchDarkly does, so boundary buckets fall the same way.
  double sum = 0;
  for (const WeightedVariation& w : r.variations) {
    sum += static_cast<double>(w.weight) / 100000.0;
    cr.buckets.push_back({w.variation, sum, w.untracked});
  }
  out.rollout = std::make_unique<const CompiledRollout>(std::move(cr));
  return out;
}

void AddTarget(const std::string& kind, const std::vector<std::string>& values, int variation,
               CompiledFlag& cf) {
  CompiledTarget t;
  t.context_kind = kind;
  t.variation = variation;
  t.values.reserve(values.size());
  for (const std::string& v : values) t.values.insert(v);
  cf.targets.push_back(std::move(t));
}

void CompileFlagInto(CompiledFlag& cf) {
  const Flag& f = cf.item;
  cf.has_references = !f.prerequisites.empty();
  for (const FlagRule& r : f.rules) cf.has_references = cf.has_references || HasSegmentMatch(r.clauses);
  // Anything that can make the answer depend on the context or on other flags (OFREP STATIC
  // only without any of it).
  cf.has_targeting = !f.targets.empty() || !f.context_targets.empty() || !f.rules.empty() || !f.prerequisites.empty();
  for (const Prerequisite& p : f.prerequisites) {
    CompiledPrerequisite cp;
    cp.model = &p;
    cp.key = HashedKey(p.key);
    cf.prerequisites.push_back(cp);
  }
  // LaunchDarkly's order: contextTargets in order, where an entry of kind "user" stands for the
  // `targets` entry of the same variation (its own values are ignored, as LaunchDarkly's
  // evaluators do); without contextTargets, `targets` alone.
  if (f.context_targets.empty()) {
    for (const Target& t : f.targets) AddTarget("user", t.values, t.variation, cf);
  } else {
    for (const Target& ct : f.context_targets) {
      if (ct.context_kind == "user") {
        for (const Target& t : f.targets) {
          if (t.variation == ct.variation) {
            AddTarget("user", t.values, t.variation, cf);
            break;
          }
        }
      } else {
        AddTarget(ct.context_kind, ct.values, ct.variation, cf);
      }
    }
  }
  cf.rules.reserve(f.rules.size());
  for (const FlagRule& r : f.rules) {
    CompiledRule cr;
    cr.model = &r;
    cr.clauses = CompileClauses(r.clauses);
    cr.result = CompileResult(r.variation_or_rollout, f);
    cf.rules.push_back(std::move(cr));
  }
  cf.fallthrough = CompileResult(f.fallthrough, f);
}

void AddKeys(absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>>& into,
             const std::string& kind, const std::vector<std::string>& keys) {
  auto& set = into[kind];
  for (const std::string& k : keys) set.insert(k);
}

void CompileSegmentInto(CompiledSegment& cs) {
  const Segment& s = cs.item;
  for (const SegmentRule& r : s.rules) cs.has_references = cs.has_references || HasSegmentMatch(r.clauses);
  if (!s.included.empty()) AddKeys(cs.included, "user", s.included);
  if (!s.excluded.empty()) AddKeys(cs.excluded, "user", s.excluded);
  for (const SegmentTarget& t : s.included_contexts) AddKeys(cs.included, t.context_kind, t.values);
  for (const SegmentTarget& t : s.excluded_contexts) AddKeys(cs.excluded, t.context_kind, t.values);
  cs.hasher = BucketHasher(s.key, s.salt);
  for (const SegmentRule& r : s.rules) {
    CompiledSegmentRule cr;
    cr.model = &r;
    cr.clauses = CompileClauses(r.clauses);
    if (r.weight.has_value()) cr.weight = static_cast<double>(*r.weight) / 100000.0;
    cr.rollout_context_kind = r.rollout_context_kind.value_or("user");
    cr.bucket_by = AttributeRef::Parse(r.bucket_by.value_or("key"),
                                       /*literal=*/!r.rollout_context_kind.has_value());
    cs.rules.push_back(std::move(cr));
  }
}

void AppendKey(std::string& out, const std::string& key) {
  out += ToJson(Value(key));
  out += ':';
}

}  // namespace

namespace {
Value EncodeItem(const Flag& f) { return EncodeFlag(f); }
Value EncodeItem(const Segment& s) { return EncodeSegment(s); }
}  // namespace

template <typename Model>
const std::string& CompiledItem<Model>::Json() const {
  if (json_ready_) return json_;
  std::call_once(json_once_, [this] {
    json_ = ToJson(EncodeItem(item));
    json_.shrink_to_fit();  // kept for the item's life: without the encoder's growth slack (~45 %)
  });
  return json_;
}
template struct CompiledItem<Flag>;
template struct CompiledItem<Segment>;

namespace {

template <typename T>
void Free(T& x) {
  T().swap(x);  // clear() would keep the capacity
}

void DropJsonOnly(std::vector<Clause>& clauses) {
  for (Clause& c : clauses) {
    if (c.op != Op::kUnknown) Free(c.op_name);  // OpName(op) says it
  }
}

// What only the item's JSON needs, once that is encoded and the item compiled (ItemJson::kEager):
// the compiled parts hold the salt's hash state and copies of the target and segment keys in
// hash sets, and point only at members kept.
void DropJsonOnly(Flag& f) {
  Free(f.salt);
  f.management.reset();
  for (Target& t : f.targets) Free(t.values);
  for (Target& t : f.context_targets) Free(t.values);
  for (FlagRule& r : f.rules) DropJsonOnly(r.clauses);
}

void DropJsonOnly(Segment& s) {
  Free(s.salt);
  Free(s.name);
  Free(s.description);
  Free(s.tags);
  Free(s.included);
  Free(s.excluded);
  for (SegmentTarget& t : s.included_contexts) Free(t.values);
  for (SegmentTarget& t : s.excluded_contexts) Free(t.values);
  for (SegmentRule& r : s.rules) DropJsonOnly(r.clauses);
}

// The compiled item, its JSON encoded now (kEager) or on first use.
template <typename Compiled, typename Model, typename Encode, typename CompileInto>
std::shared_ptr<Compiled> CompileItem(Model m, ItemJson mode, Encode encode, CompileInto compile_into) {
  std::string json;
  if (mode == ItemJson::kEager) {
    json = ToJson(encode(m));
    json.shrink_to_fit();  // kept for the item's life: without the encoder's growth slack
  }
  auto c = std::make_shared<Compiled>(std::move(m), std::move(json));
  compile_into(*c);
  if (mode == ItemJson::kEager) DropJsonOnly(c->item);
  return c;
}

}  // namespace

std::shared_ptr<const CompiledFlag> CompileFlag(Flag f, uint32_t ordinal, ItemJson json) {
  auto cf = CompileItem<CompiledFlag>(std::move(f), json, EncodeFlag, CompileFlagInto);
  cf->ordinal = ordinal;
  return cf;
}

std::shared_ptr<const CompiledSegment> CompileSegment(Segment s, ItemJson json) {
  return CompileItem<CompiledSegment>(std::move(s), json, EncodeSegment, CompileSegmentInto);
}

}  // namespace internal

using internal::CompiledFlag;
using internal::CompiledSegment;

Snapshot::Snapshot() : d_(std::make_unique<internal::SnapshotData>()) {}
Snapshot::~Snapshot() = default;

std::shared_ptr<const Snapshot> Snapshot::Build(Environment env, const ParallelFor& parallel, ItemJson json) {
  std::shared_ptr<Snapshot> snap(new Snapshot());
  internal::SnapshotData& d = *snap->d_;
  d.sequence = env.sequence;
  d.item_json = json;
  // The decoded flags, taken out of the map one node each (no copy): each is freed as soon as it
  // is compiled, below.
  std::vector<std::map<std::string, Flag, std::less<>>::node_type> flags;
  flags.reserve(env.flags.size());
  while (!env.flags.empty()) flags.push_back(env.flags.extract(env.flags.begin()));
  std::vector<Segment> segments;
  segments.reserve(env.segments.size());
  for (auto& [key, s] : env.segments) segments.push_back(std::move(s));
  // Compiled side by side (each item alone: no item refers to another's compiled form), then
  // indexed; the maps were in key order, and so are the vectors.
  std::vector<std::shared_ptr<const CompiledFlag>> compiled_flags(flags.size());
  std::vector<std::shared_ptr<const CompiledSegment>> compiled_segments(segments.size());
  // Copied, not moved: an environment just decoded has its items' strings and vectors scattered
  // between the freed pieces of the JSON they were decoded from, and would pin those pages for
  // the snapshot's life; copies are laid out together, and the decoded ones all go (+0.1 s and
  // -23 MB of RSS at 100,000 flags, docs/performance.md). Each decoded flag goes as soon as its
  // copy is compiled, so that the next copies fill the room it leaves: freed all at the end, the
  // decoded flags left the snapshot's items with thousands of holes between them, pages that
  // the heap could not hand back (RSS after a start at 100,000 flags 211 -> 198 MB, session 28).
  RunEach(flags.size(), parallel, [&](size_t i) {
    compiled_flags[i] = internal::CompileFlag(flags[i].mapped(), static_cast<uint32_t>(i), json);
    flags[i] = {};
  });
  RunEach(segments.size(), parallel,
                 [&](size_t i) { compiled_segments[i] = internal::CompileSegment(std::move(segments[i]), json); });
  d.ordinal_bound = static_cast<uint32_t>(compiled_flags.size());
  std::vector<const CompiledFlag*> flag_order, live_flags, referring_flags, prerequisite_flags;
  flag_order.reserve(compiled_flags.size());
  for (auto& f : compiled_flags) {
    flag_order.push_back(f.get());
    d.flags.Put(std::move(f));
  }
  for (const CompiledFlag* f : flag_order) {
    if (internal::IsLive(*f)) live_flags.push_back(f);
    if (internal::IsReferring(*f)) referring_flags.push_back(f);
    if (internal::HasPrerequisites(*f)) prerequisite_flags.push_back(f);
  }
  d.flag_order = internal::OrderedList<CompiledFlag>(flag_order);
  d.live_flags = internal::OrderedList<CompiledFlag>(live_flags);
  d.referring_flags = internal::OrderedList<CompiledFlag>(referring_flags);
  d.prerequisite_flags = internal::OrderedList<CompiledFlag>(prerequisite_flags);
  d.segment_order.reserve(compiled_segments.size());
  for (auto& s : compiled_segments) {
    d.segment_order.push_back(s.get());
    if (internal::IsReferringSegment(*s)) d.referring_segments.push_back(s.get());
    d.segments.Put(std::move(s));
  }
  return snap;
}

absl::StatusOr<std::shared_ptr<const Snapshot>> Snapshot::Apply(const ChangeSetEvent& event,
                                                                AppliedChanges* changes) const {
  absl::StatusOr<std::vector<DecodedChange>> decoded = DecodeChanges(event);
  if (!decoded.ok()) return decoded.status();
  std::shared_ptr<Snapshot> next(new Snapshot());
  internal::SnapshotData& n = *next->d_;
  const internal::SnapshotData& d = *d_;
  n.flags = d.flags;  // shares every shard until Put or Erase touches it
  n.segments = d.segments;
  n.ordinal_bound = d.ordinal_bound;
  n.item_json = d.item_json;
  n.sequence = std::max(d.sequence, event.sequence);
  AppliedChanges applied;
  for (DecodedChange& c : *decoded) {
    if (c.kind == ChangedKind::kFlag) {
      const CompiledFlag* old = n.flags.Find(c.key);
      if (old != nullptr && old->model->version >= c.version) continue;  // only if newer
      if (c.flag.has_value()) {
        uint32_t ordinal = old != nullptr ? old->ordinal : n.ordinal_bound++;
        n.flags.Put(internal::CompileFlag(std::move(*c.flag), ordinal, n.item_json));
      } else {
        n.flags.Erase(c.key);
      }
      applied.flags.push_back(c.key);
    } else {
      const CompiledSegment* old = n.segments.Find(c.key);
      if (old != nullptr && old->model->version >= c.version) continue;
      if (c.segment.has_value()) {
        n.segments.Put(internal::CompileSegment(std::move(*c.segment), n.item_json));
      } else {
        n.segments.Erase(c.key);
      }
      applied.segments.push_back(c.key);
    }
  }
  applied.SortAndDedup();
  const std::vector<std::string>& flag_keys = applied.flags;
  const std::vector<std::string>& segment_keys = applied.segments;
  auto all = [](const auto&) { return true; };
  if (flag_keys.empty()) {
    n.flag_order = d.flag_order;
    n.live_flags = d.live_flags;
    n.referring_flags = d.referring_flags;
    n.prerequisite_flags = d.prerequisite_flags;
  } else {
    n.flag_order = d.flag_order.Changed(flag_keys, n.flags, all);
    n.live_flags = d.live_flags.Changed(flag_keys, n.flags, internal::IsLive);
    n.referring_flags = d.referring_flags.Changed(flag_keys, n.flags, internal::IsReferring);
    n.prerequisite_flags = d.prerequisite_flags.Changed(flag_keys, n.flags, internal::HasPrerequisites);
  }
  if (segment_keys.empty()) {
    n.segment_order = d.segment_order;
    n.referring_segments = d.referring_segments;
  } else {
    n.segment_order = internal::MergeOrder(d.segment_order, segment_keys, n.segments, all);
    n.referring_segments = internal::MergeOrder(d.referring_segments, segment_keys, n.segments, internal::IsReferringSegment);
  }
  if (changes != nullptr) *changes = std::move(applied);
  return std::shared_ptr<const Snapshot>(std::move(next));
}

int64_t Snapshot::sequence() const { return d_->sequence; }
size_t Snapshot::flag_count() const { return d_->live_flags.size(); }
const CompiledFlag& Snapshot::flag(size_t i) const { return *d_->live_flags[i]; }
uint32_t Snapshot::FlagOrdinal(const CompiledFlag& f) const { return f.ordinal; }
uint32_t Snapshot::ordinal_bound() const { return d_->ordinal_bound; }

const CompiledFlag* Snapshot::FindFlag(std::string_view key) const { return d_->FindLiveFlag(key); }

namespace {

// Items' JSON joined by commas, each after its key (`"key":`) when `keyed`: the payload's maps
// and the lists' arrays. JoinedSize is what to reserve for it.
template <typename List>
size_t JoinedSize(const List& items, bool keyed) {
  size_t size = 0;
  for (const auto* i : items) size += i->Json().size() + 1 + (keyed ? i->key().size() + 3 : 0);
  return size;
}

template <typename List>
void AppendJoined(std::string& out, const List& items, bool keyed) {
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    if (keyed) internal::AppendKey(out, items[i]->key());
    out += items[i]->Json();
  }
}

template <typename List>
std::string JsonArray(const List& items) {
  std::string out;
  out.reserve(JoinedSize(items, /*keyed=*/false) + 2);
  out += '[';
  AppendJoined(out, items, /*keyed=*/false);
  out += ']';
  return out;
}

}  // namespace

std::string Snapshot::PayloadJson() const {
  std::string out;
  AppendPayloadJson(out);
  return out;
}

void Snapshot::AppendPayloadJson(std::string& out, size_t room_after) const {
  const internal::SnapshotData& d = *d_;
  size_t size = 64 + JoinedSize(d.flag_order, /*keyed=*/true) + JoinedSize(d.segment_order, /*keyed=*/true);
  out.reserve(out.size() + size + room_after);
  out += StrCat("{\"sequence\":", d.sequence, ",\"flags\":{");
  AppendJoined(out, d.flag_order, /*keyed=*/true);
  out += "},\"segments\":{";
  AppendJoined(out, d.segment_order, /*keyed=*/true);
  out += "}}";
}

std::vector<Snapshot::FlagEntry> Snapshot::Flags() const {
  std::vector<FlagEntry> out;
  out.reserve(d_->flag_order.size());
  for (const CompiledFlag* f : d_->flag_order) out.push_back({f->model, f->Json()});
  return out;
}

std::string Snapshot::FlagsJsonArray() const { return JsonArray(d_->flag_order); }
std::string Snapshot::SegmentsJsonArray() const { return JsonArray(d_->segment_order); }

Environment Snapshot::ToEnvironment() const {
  if (d_->item_json == ItemJson::kEager) {
    // The models lack what only the JSON holds; the JSON is what was compiled.
    absl::StatusOr<Environment> env = ParseEnvironment(PayloadJson());
    if (env.ok()) return *std::move(env);
  }
  Environment env;
  env.sequence = d_->sequence;
  for (const CompiledFlag* f : d_->flag_order) env.flags.emplace_hint(env.flags.end(), f->key(), f->item);
  for (const CompiledSegment* s : d_->segment_order) env.segments.emplace_hint(env.segments.end(), s->key(), s->item);
  return env;
}

std::vector<std::string> Snapshot::AffectedFlags(const AppliedChanges& changes) const {
  const internal::SnapshotData& d = *d_;
  absl::flat_hash_set<std::string_view> segments(changes.segments.begin(), changes.segments.end());
  auto names_any = [](const std::vector<Clause>& clauses, const auto& set) {
    for (const Clause& c : clauses) {
      if (c.op != Op::kSegmentMatch) continue;
      for (const Value& v : c.values) {
        if (v.is_string() && set.contains(std::string_view(v.as_string()))) return true;
      }
    }
    return false;
  };
  // Segments that match on changed segments change too, to a fixed point.
  for (bool grew = !segments.empty(); grew;) {
    grew = false;
    for (const CompiledSegment* s : d.referring_segments) {
      if (segments.contains(std::string_view(s->key()))) continue;
      for (const SegmentRule& r : s->model->rules) {
        if (names_any(r.clauses, segments)) {
          segments.insert(s->key());
          grew = true;
          break;
        }
      }
    }
  }
  absl::flat_hash_set<std::string_view> flags(changes.flags.begin(), changes.flags.end());
  if (!segments.empty()) {
    for (const CompiledFlag* f : d.referring_flags) {
      for (const FlagRule& r : f->model->rules) {
        if (names_any(r.clauses, segments)) {
          flags.insert(f->key());
          break;
        }
      }
    }
  }
  // Flags whose prerequisites changed, transitively.
  for (bool grew = !flags.empty(); grew;) {
    grew = false;
    for (const CompiledFlag* f : d.prerequisite_flags) {
      if (flags.contains(std::string_view(f->key()))) continue;
      for (const Prerequisite& p : f->model->prerequisites) {
        if (flags.contains(std::string_view(p.key))) {
          flags.insert(f->key());
          grew = true;
          break;
        }
      }
    }
  }
  std::vector<std::string> out(flags.begin(), flags.end());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace gonfalon::rules
