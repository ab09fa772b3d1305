#include "gonfalon/rules/snapshot.h"

#include "compiled.h"

namespace gonfalon::rules {
namespace internal {
namespace {

// Above this many string values an `in` clause looks values up in a hash set.
constexpr size_t kStringSetThreshold = 8;

CompiledClause CompileClause(const Clause& c, const SnapshotData& d) {
  CompiledClause cc;
  cc.model = &c;
  cc.op = c.op;
  cc.negate = c.negate;
  cc.context_kind = c.context_kind.value_or("user");
  // Without contextKind (older data) the attribute is a plain name, never a path.
  cc.attribute = AttributeRef::Parse(c.attribute, /*literal=*/!c.context_kind.has_value());
  size_t strings = 0;
  for (const Value& v : c.values) {
    ClauseValue cv;
    cv.raw = &v;
    switch (c.op) {
      case Op::kBefore:
      case Op::kAfter:
        cv.millis = ToUnixMillis(v);
        break;
      case Op::kSemVerEqual:
      case Op::kSemVerLessThan:
      case Op::kSemVerGreaterThan:
        if (v.is_string()) cv.semver = ParseSemVer(v.as_string());
        break;
      case Op::kMatches:
        if (v.is_string()) {
          RE2::Options options;
          options.set_log_errors(false);
          auto re = std::make_unique<RE2>(v.as_string(), options);
          if (re->ok()) cv.regex = std::move(re);
        }
        break;
      case Op::kSegmentMatch:
        if (v.is_string()) {
          auto it = d.segment_index.find(v.as_string());
          if (it != d.segment_index.end()) cv.segment = it->second;
        }
        break;
      default:
        break;
    }
    if (v.is_string()) ++strings;
    cc.values.push_back(std::move(cv));
  }
  if (c.op == Op::kIn && strings > kStringSetThreshold) {
    cc.use_string_set = true;
    for (const Value& v : c.values) {
      if (v.is_string()) cc.string_set.insert(v.as_string());
    }
  }
  return cc;
}

std::vector<CompiledClause> CompileClauses(const std::vector<Clause>& clauses,
                                           const SnapshotData& d) {
  std::vector<CompiledClause> out;
  out.reserve(clauses.size());
  for (const Clause& c : clauses) out.push_back(CompileClause(c, d));
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
  out.rollout = std::move(cr);
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

void CompileFlag(const Flag& f, SnapshotData& d, CompiledFlag& cf) {
  cf.model = &f;
  // Anything that can make the answer depend on the context or on other flags (OFREP STATIC
  // only without any of it).
  cf.has_targeting = !f.targets.empty() || !f.context_targets.empty() || !f.rules.empty() || !f.prerequisites.empty();
  for (const Prerequisite& p : f.prerequisites) {
    CompiledPrerequisite cp;
    cp.model = &p;
    auto it = d.flag_index.find(p.key);
    if (it != d.flag_index.end()) cp.flag = it->second;
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
  for (const FlagRule& r : f.rules) {
    CompiledRule cr;
    cr.model = &r;
    cr.clauses = CompileClauses(r.clauses, d);
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

void CompileSegment(const Segment& s, const SnapshotData& d, CompiledSegment& cs) {
  cs.model = &s;
  if (!s.included.empty()) AddKeys(cs.included, "user", s.included);
  if (!s.excluded.empty()) AddKeys(cs.excluded, "user", s.excluded);
  for (const SegmentTarget& t : s.included_contexts) AddKeys(cs.included, t.context_kind, t.values);
  for (const SegmentTarget& t : s.excluded_contexts) AddKeys(cs.excluded, t.context_kind, t.values);
  cs.hasher = BucketHasher(s.key, s.salt);
  for (const SegmentRule& r : s.rules) {
    CompiledSegmentRule cr;
    cr.model = &r;
    cr.clauses = CompileClauses(r.clauses, d);
    if (r.weight.has_value()) cr.weight = static_cast<double>(*r.weight) / 100000.0;
    cr.rollout_context_kind = r.rollout_context_kind.value_or("user");
    cr.bucket_by = AttributeRef::Parse(r.bucket_by.value_or("key"),
                                       /*literal=*/!r.rollout_context_kind.has_value());
    cs.rules.push_back(std::move(cr));
  }
}

}  // namespace

void SnapshotData::Compile(Snapshot& snap) {
  SnapshotData& d = *snap.d_;
  // Indices first, so that references (prerequisites, segmentMatch) resolve in one pass.
  for (const auto& [key, s] : d.env.segments) {
    if (s.deleted) continue;
    d.segment_index.emplace(key, static_cast<int>(d.segment_index.size()));
  }
  for (const auto& [key, f] : d.env.flags) {
    if (f.deleted) continue;
    d.flag_index.emplace(key, static_cast<int>(d.flag_index.size()));
  }
  d.segments.resize(d.segment_index.size());
  d.flags.resize(d.flag_index.size());
  // Segment rules may reference other segments; compile after all indices exist.
  for (const auto& [key, s] : d.env.segments) {
    if (s.deleted) continue;
    CompileSegment(s, d, d.segments[d.segment_index.find(key)->second]);
  }
  for (const auto& [key, f] : d.env.flags) {
    if (f.deleted) continue;
    int index = d.flag_index.find(key)->second;
    d.flags[index].index = index;
    CompileFlag(f, d, d.flags[index]);
  }
}

}  // namespace internal

Snapshot::Snapshot() : d_(std::make_unique<internal::SnapshotData>()) {}
Snapshot::~Snapshot() = default;

std::shared_ptr<const Snapshot> Snapshot::Build(Environment env) {
  // The compiled structures point into env, so it moves into its final place first.
  std::shared_ptr<Snapshot> snap(new Snapshot());
  snap->d_->env = std::move(env);
  internal::SnapshotData::Compile(*snap);
  return snap;
}

int64_t Snapshot::sequence() const { return d_->env.sequence; }
const Environment& Snapshot::environment() const { return d_->env; }
size_t Snapshot::flag_count() const { return d_->flags.size(); }
const internal::CompiledFlag& Snapshot::flag(size_t i) const { return d_->flags[i]; }
size_t Snapshot::FlagIndex(const internal::CompiledFlag& f) const {
  return static_cast<size_t>(&f - d_->flags.data());
}

const internal::CompiledFlag* Snapshot::FindFlag(std::string_view key) const {
  auto it = d_->flag_index.find(absl::string_view(key.data(), key.size()));
  return it == d_->flag_index.end() ? nullptr : &d_->flags[it->second];
}

}  // namespace gonfalon::rules
