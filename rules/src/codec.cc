#include "gonfalon/rules/codec.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "gonfalon/rules/str_cat.h"
#include "gonfalon/rules/context.h"
#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/json_fields.h"
#include "gonfalon/rules/references.h"
#include "gonfalon/rules/split_json.h"
#include "gonfalon/rules/status_macros.h"
#include "re2/re2.h"

namespace gonfalon::rules {
namespace {

constexpr int kMaxWeight = 100000;

std::string Field(std::string_view path, std::string_view name) { return FieldPath(path, name); }
std::string Index(std::string_view path, size_t i) { return StrCat(path, "[", i, "]"); }
absl::Status Err(std::string_view path, std::string_view message) { return InvalidField(path, message); }

absl::Status CheckKey(const std::string& key, std::string_view path) {
  if (key.empty()) return Err(Field(path, "key"), "is required");
  return absl::OkStatus();
}

absl::Status DecodeClause(const Value& json, std::string_view path, DecodeOptions opt,
                          Clause& c) {
  RETURN_IF_ERROR(RequireObject(json, path));
  RETURN_IF_ERROR(GetOptString(json, "contextKind", path, c.context_kind));
  RETURN_IF_ERROR(GetString(json, "attribute", path, c.attribute));
  RETURN_IF_ERROR(GetString(json, "op", path, c.op_name));
  RETURN_IF_ERROR(GetBool(json, "negate", path, c.negate));
  ASSIGN_OR_RETURN(const Array* values, GetArray(json, "values", path));
  if (values != nullptr) c.values = *values;
  c.op = ParseOp(c.op_name);
  if (c.op_name.empty()) return Err(Field(path, "op"), "is required");
  if (!opt.strict) return absl::OkStatus();
  if (c.op == Op::kUnknown) {
    return Err(Field(path, "op"), StrCat("unknown operator \"", c.op_name, "\""));
  }
  if (c.op != Op::kSegmentMatch) {
    if (c.attribute.empty()) return Err(Field(path, "attribute"), "is required");
    if (c.context_kind.has_value()) {
      AttributeRef ref = AttributeRef::Parse(c.attribute);
      if (!ref.valid()) return Err(Field(path, "attribute"), ref.error());
      if (!IsValidKind(*c.context_kind)) {
        return Err(Field(path, "contextKind"),
                   StrCat("invalid context kind \"", *c.context_kind, "\""));
      }
    }
  }
  for (size_t i = 0; i < c.values.size(); ++i) {
    const Value& v = c.values[i];
    std::string vp = Index(Field(path, "values"), i);
    if (c.op == Op::kMatches) {
      if (!v.is_string()) return WrongType(vp, "a regular expression string", v);
      RE2 re(v.as_string(), RE2::Quiet);
      if (!re.ok()) return Err(vp, StrCat("invalid regular expression: ", re.error()));
    }
    if (c.op == Op::kSegmentMatch && !v.is_string()) return WrongType(vp, "a segment key", v);
  }
  return absl::OkStatus();
}

absl::Status DecodeClauses(const Value& json, std::string_view path, DecodeOptions opt,
                           std::vector<Clause>& out) {
  ASSIGN_OR_RETURN(const Array* arr, GetArray(json, "clauses", path));
  if (arr == nullptr) return absl::OkStatus();
  std::string p = Field(path, "clauses");
  out.resize(arr->size());
  for (size_t i = 0; i < arr->size(); ++i) {
    RETURN_IF_ERROR(DecodeClause((*arr)[i], Index(p, i), opt, out[i]));
  }
  return absl::OkStatus();
}

absl::Status CheckVariation(int index, size_t count, std::string_view path, DecodeOptions opt) {
  if (opt.strict && (index < 0 || static_cast<size_t>(index) >= count)) {
    return Err(path, StrCat("variation ", index, " does not exist (the flag has ", count,
                                  " variations)"));
  }
  return absl::OkStatus();
}

absl::Status DecodeRollout(const Value& json, std::string_view path, DecodeOptions opt,
                           size_t variation_count, Rollout& r) {
  RETURN_IF_ERROR(RequireObject(json, path));
  std::string kind;
  RETURN_IF_ERROR(GetString(json, "kind", path, kind));
  if (kind == "experiment") {
    r.kind = RolloutKind::kExperiment;
  } else if (kind.empty() || kind == "rollout") {
    r.kind = RolloutKind::kRollout;
  } else if (opt.strict) {
    return Err(Field(path, "kind"),
               StrCat("unknown rollout kind \"", kind, "\" (rollout or experiment)"));
  }
  RETURN_IF_ERROR(GetOptString(json, "contextKind", path, r.context_kind));
  RETURN_IF_ERROR(GetOptString(json, "bucketBy", path, r.bucket_by));
  RETURN_IF_ERROR(GetOptInt64(json, "seed", path, r.seed));
  ASSIGN_OR_RETURN(const Array* arr, GetArray(json, "variations", path));
  std::string vp = Field(path, "variations");
  if (arr != nullptr) {
    r.variations.resize(arr->size());
    int64_t total = 0;
    for (size_t i = 0; i < arr->size(); ++i) {
      const Value& wv = (*arr)[i];
      std::string p = Index(vp, i);
      RETURN_IF_ERROR(RequireObject(wv, p));
      WeightedVariation& w = r.variations[i];
      RETURN_IF_ERROR(GetInt(wv, "variation", p, w.variation));
      RETURN_IF_ERROR(GetInt(wv, "weight", p, w.weight));
      RETURN_IF_ERROR(GetBool(wv, "untracked", p, w.untracked));
      RETURN_IF_ERROR(CheckVariation(w.variation, variation_count, Field(p, "variation"), opt));
      if (opt.strict && (w.weight < 0 || w.weight > kMaxWeight)) {
        return Err(Field(p, "weight"), StrCat("must be between 0 and ", kMaxWeight));
      }
      total += w.weight;
    }
    if (opt.strict && total != kMaxWeight) {
      return Err(vp, StrCat("weights add up to ", total, ", not ", kMaxWeight));
    }
  }
  if (opt.strict && r.variations.empty()) return Err(vp, "a rollout needs at least one variation");
  if (opt.strict && r.bucket_by.has_value()) {
    AttributeRef ref = AttributeRef::Parse(*r.bucket_by, !r.context_kind.has_value());
    if (!ref.valid()) return Err(Field(path, "bucketBy"), ref.error());
  }
  return absl::OkStatus();
}

// `variation` and `rollout` members of `json` (a rule or the fallthrough object).
absl::Status DecodeVariationOrRollout(const Value& json, std::string_view path, DecodeOptions opt,
                                      size_t variation_count, bool required,
                                      VariationOrRollout& out) {
  RETURN_IF_ERROR(GetOptInt(json, "variation", path, out.variation));
  if (out.variation.has_value()) {
    RETURN_IF_ERROR(CheckVariation(*out.variation, variation_count, Field(path, "variation"), opt));
  }
  if (const Value* r = Member(json, "rollout"); r != nullptr) {
    Rollout rollout;
    RETURN_IF_ERROR(DecodeRollout(*r, Field(path, "rollout"), opt, variation_count, rollout));
    out.rollout = std::move(rollout);
  }
  if (opt.strict && required && !out.variation.has_value() && !out.rollout.has_value()) {
    return Err(path, "needs a \"variation\" or a \"rollout\"");
  }
  if (opt.strict && out.variation.has_value() && out.rollout.has_value()) {
    return Err(path, "give either \"variation\" or \"rollout\", not both");
  }
  return absl::OkStatus();
}

absl::Status DecodeTargets(const Value& json, std::string_view name, std::string_view path,
                           DecodeOptions opt, size_t variation_count, bool with_kind,
                           std::vector<Target>& out) {
  ASSIGN_OR_RETURN(const Array* arr, GetArray(json, name, path));
  if (arr == nullptr) return absl::OkStatus();
  std::string base = Field(path, name);
  out.resize(arr->size());
  for (size_t i = 0; i < arr->size(); ++i) {
    std::string p = Index(base, i);
    RETURN_IF_ERROR(RequireObject((*arr)[i], p));
    Target& t = out[i];
    t.context_kind = "user";
    if (with_kind) RETURN_IF_ERROR(GetString((*arr)[i], "contextKind", p, t.context_kind));
    RETURN_IF_ERROR(GetStrings((*arr)[i], "values", p, t.values));
    RETURN_IF_ERROR(GetInt((*arr)[i], "variation", p, t.variation));
    RETURN_IF_ERROR(CheckVariation(t.variation, variation_count, Field(p, "variation"), opt));
  }
  return absl::OkStatus();
}

absl::Status DecodeSegmentTargets(const Value& json, std::string_view name, std::string_view path,
                                  std::vector<SegmentTarget>& out) {
  ASSIGN_OR_RETURN(const Array* arr, GetArray(json, name, path));
  if (arr == nullptr) return absl::OkStatus();
  std::string base = Field(path, name);
  out.resize(arr->size());
  for (size_t i = 0; i < arr->size(); ++i) {
    std::string p = Index(base, i);
    RETURN_IF_ERROR(RequireObject((*arr)[i], p));
    RETURN_IF_ERROR(GetString((*arr)[i], "contextKind", p, out[i].context_kind));
    if (out[i].context_kind.empty()) out[i].context_kind = "user";
    RETURN_IF_ERROR(GetStrings((*arr)[i], "values", p, out[i].values));
  }
  return absl::OkStatus();
}

absl::Status DecodeFlagAt(const Value& json, std::string_view path, DecodeOptions opt, Flag& f) {
  RETURN_IF_ERROR(RequireObject(json, path));
  RETURN_IF_ERROR(GetString(json, "key", path, f.key));
  RETURN_IF_ERROR(CheckKey(f.key, path));
  RETURN_IF_ERROR(GetInt64(json, "version", path, f.version));
  RETURN_IF_ERROR(GetBool(json, "on", path, f.on));
  ASSIGN_OR_RETURN(const Array* variations, GetArray(json, "variations", path));
  if (variations != nullptr) f.variations = *variations;
  const size_t n = f.variations.size();
  RETURN_IF_ERROR(GetOptInt(json, "offVariation", path, f.off_variation));
  if (f.off_variation.has_value()) {
    RETURN_IF_ERROR(CheckVariation(*f.off_variation, n, Field(path, "offVariation"), opt));
  }
  if (const Value* ft = Member(json, "fallthrough"); ft != nullptr) {
    std::string p = Field(path, "fallthrough");
    RETURN_IF_ERROR(RequireObject(*ft, p));
    RETURN_IF_ERROR(DecodeVariationOrRollout(*ft, p, opt, n, /*required=*/true, f.fallthrough));
  } else if (opt.strict) {
    return Err(Field(path, "fallthrough"), "is required");
  }
  RETURN_IF_ERROR(DecodeTargets(json, "targets", path, opt, n, false, f.targets));
  RETURN_IF_ERROR(DecodeTargets(json, "contextTargets", path, opt, n, true, f.context_targets));
  ASSIGN_OR_RETURN(const Array* rules, GetArray(json, "rules", path));
  if (rules != nullptr) {
    std::string base = Field(path, "rules");
    f.rules.resize(rules->size());
    for (size_t i = 0; i < rules->size(); ++i) {
      std::string p = Index(base, i);
      const Value& rj = (*rules)[i];
      RETURN_IF_ERROR(RequireObject(rj, p));
      FlagRule& r = f.rules[i];
      RETURN_IF_ERROR(GetString(rj, "id", p, r.id));
      RETURN_IF_ERROR(DecodeClauses(rj, p, opt, r.clauses));
      RETURN_IF_ERROR(DecodeVariationOrRollout(rj, p, opt, n, true, r.variation_or_rollout));
      RETURN_IF_ERROR(GetBool(rj, "trackEvents", p, r.track_events));
    }
  }
  ASSIGN_OR_RETURN(const Array* prereqs, GetArray(json, "prerequisites", path));
  if (prereqs != nullptr) {
    std::string base = Field(path, "prerequisites");
    f.prerequisites.resize(prereqs->size());
    for (size_t i = 0; i < prereqs->size(); ++i) {
      std::string p = Index(base, i);
      RETURN_IF_ERROR(RequireObject((*prereqs)[i], p));
      RETURN_IF_ERROR(GetString((*prereqs)[i], "key", p, f.prerequisites[i].key));
      RETURN_IF_ERROR(CheckKey(f.prerequisites[i].key, p));
      RETURN_IF_ERROR(GetInt((*prereqs)[i], "variation", p, f.prerequisites[i].variation));
    }
  }
  RETURN_IF_ERROR(GetString(json, "salt", path, f.salt));
  RETURN_IF_ERROR(GetBool(json, "trackEvents", path, f.track_events));
  RETURN_IF_ERROR(GetBool(json, "trackEventsFallthrough", path, f.track_events_fallthrough));
  if (const Value* csa = Member(json, "clientSideAvailability"); csa != nullptr) {
    std::string p = Field(path, "clientSideAvailability");
    RETURN_IF_ERROR(RequireObject(*csa, p));
    RETURN_IF_ERROR(GetBool(*csa, "usingMobileKey", p, f.client_side_availability.using_mobile_key));
    RETURN_IF_ERROR(
        GetBool(*csa, "usingEnvironmentId", p, f.client_side_availability.using_environment_id));
  } else {
    // Older LaunchDarkly data says only "clientSide".
    RETURN_IF_ERROR(
        GetBool(json, "clientSide", path, f.client_side_availability.using_environment_id));
  }
  RETURN_IF_ERROR(GetBool(json, "deleted", path, f.deleted));
  FlagManagement m;
  RETURN_IF_ERROR(GetString(json, "name", path, m.name));
  RETURN_IF_ERROR(GetString(json, "description", path, m.description));
  RETURN_IF_ERROR(GetStrings(json, "tags", path, m.tags));
  RETURN_IF_ERROR(GetBool(json, "temporary", path, m.temporary));
  RETURN_IF_ERROR(GetString(json, "maintainer", path, m.maintainer));
  f.SetManagement(std::move(m));
  return absl::OkStatus();
}

absl::Status DecodeSegmentAt(const Value& json, std::string_view path, DecodeOptions opt,
                             Segment& s) {
  RETURN_IF_ERROR(RequireObject(json, path));
  RETURN_IF_ERROR(GetString(json, "key", path, s.key));
  RETURN_IF_ERROR(CheckKey(s.key, path));
  RETURN_IF_ERROR(GetInt64(json, "version", path, s.version));
  RETURN_IF_ERROR(GetStrings(json, "included", path, s.included));
  RETURN_IF_ERROR(GetStrings(json, "excluded", path, s.excluded));
  RETURN_IF_ERROR(DecodeSegmentTargets(json, "includedContexts", path, s.included_contexts));
  RETURN_IF_ERROR(DecodeSegmentTargets(json, "excludedContexts", path, s.excluded_contexts));
  ASSIGN_OR_RETURN(const Array* rules, GetArray(json, "rules", path));
  if (rules != nullptr) {
    std::string base = Field(path, "rules");
    s.rules.resize(rules->size());
    for (size_t i = 0; i < rules->size(); ++i) {
      std::string p = Index(base, i);
      const Value& rj = (*rules)[i];
      RETURN_IF_ERROR(RequireObject(rj, p));
      SegmentRule& r = s.rules[i];
      RETURN_IF_ERROR(GetString(rj, "id", p, r.id));
      RETURN_IF_ERROR(DecodeClauses(rj, p, opt, r.clauses));
      RETURN_IF_ERROR(GetOptInt(rj, "weight", p, r.weight));
      if (opt.strict && r.weight.has_value() && (*r.weight < 0 || *r.weight > kMaxWeight)) {
        return Err(Field(p, "weight"), StrCat("must be between 0 and ", kMaxWeight));
      }
      RETURN_IF_ERROR(GetOptString(rj, "bucketBy", p, r.bucket_by));
      RETURN_IF_ERROR(GetOptString(rj, "rolloutContextKind", p, r.rollout_context_kind));
    }
  }
  RETURN_IF_ERROR(GetString(json, "salt", path, s.salt));
  RETURN_IF_ERROR(GetBool(json, "deleted", path, s.deleted));
  RETURN_IF_ERROR(GetString(json, "name", path, s.name));
  RETURN_IF_ERROR(GetString(json, "description", path, s.description));
  RETURN_IF_ERROR(GetStrings(json, "tags", path, s.tags));
  return absl::OkStatus();
}

// Map member of the environment payload: each entry's key must equal its map key (or be
// absent, in which case the map key is taken).
template <typename T, typename DecodeFn>
absl::Status DecodeItem(std::string_view map, std::string_view key, const Value& item, DecodeOptions opt,
                        DecodeFn decode, T& out) {
  std::string p = StrCat(map, ".", key);
  const Value* k = item.is_object() ? item.Find("key") : nullptr;
  if (k != nullptr && k->is_string() && !k->as_string().empty() && k->as_string() != key) {
    return Err(Field(p, "key"), StrCat("\"", k->as_string(), "\" does not match its map key \"", key, "\""));
  }
  if (item.is_object() && (k == nullptr || k->is_null())) {
    Value with_key = item;  // the map key stands for a missing "key" (a copy only then)
    with_key.Set("key", Value(key));
    return decode(with_key, p, opt, out);
  }
  return decode(item, p, opt, out);
}

// The map's entries for `count` keys, made before decoding so that each item is decoded in place
// (from several threads: the map itself is not touched then). A repeated key (possible in a Value
// built by code) gets nullptr: the first one wins, and DecodeInto decodes the others only for
// their errors. On an error the caller drops the whole map.
template <typename T, typename KeyAt>
std::vector<T*> PlaceItems(std::map<std::string, T, std::less<>>& out, size_t count, KeyAt key_at) {
  std::vector<T*> slots(count);
  for (size_t i = 0; i < count; ++i) {
    auto [it, inserted] = out.try_emplace(std::string(key_at(i)));
    slots[i] = inserted ? &it->second : nullptr;
  }
  return slots;
}

template <typename T, typename DecodeFn>
absl::Status DecodeInto(std::string_view map, std::string_view key, const Value& item, DecodeOptions opt,
                        DecodeFn decode, T* slot) {
  if (slot != nullptr) return DecodeItem(map, key, item, opt, decode, *slot);
  T ignored;
  return DecodeItem(map, key, item, opt, decode, ignored);
}

template <typename T, typename DecodeFn>
absl::Status DecodeMap(const Value& json, std::string_view name, DecodeOptions opt, DecodeFn decode,
                       std::map<std::string, T, std::less<>>& out, const ParallelFor& parallel = {}) {
  const Value* m = Member(json, name);
  if (m == nullptr) return absl::OkStatus();
  if (!m->is_object()) return WrongType(name, "an object keyed by key", *m);
  const auto& members = m->as_object();
  std::vector<T*> slots = PlaceItems(out, members.size(), [&](size_t i) -> std::string_view { return members[i].first; });
  std::vector<absl::Status> errors(members.size());
  RunEach(members.size(), parallel, [&](size_t i) {
    errors[i] = DecodeInto(name, members[i].first, members[i].second, opt, decode, slots[i]);
  });
  for (size_t i = 0; i < members.size(); ++i) RETURN_IF_ERROR(errors[i]);
  return absl::OkStatus();
}

// DecodeMap for a member that SplitJson split: each item is converted, decoded and freed in
// turn, so the document never exists as one tree.
template <typename T, typename DecodeFn>
absl::Status DecodeSplitMap(const SplitJson& doc, std::string_view name, DecodeOptions opt, DecodeFn decode,
                            std::map<std::string, T, std::less<>>& out, const ParallelFor& parallel) {
  if (!doc.IsSplit(name)) return DecodeMap(doc.rest(), name, opt, decode, out, parallel);
  size_t count = doc.ItemCount(name);
  std::vector<T*> slots = PlaceItems(out, count, [&](size_t i) { return doc.ItemKey(name, i); });
  std::vector<absl::Status> errors(count);
  RunEach(count, parallel, [&](size_t i) {
    absl::StatusOr<Value> item = doc.Item(name, i);
    errors[i] = item.ok() ? DecodeInto(name, doc.ItemKey(name, i), *item, opt, decode, slots[i]) : item.status();
  });
  for (size_t i = 0; i < count; ++i) RETURN_IF_ERROR(errors[i]);
  return absl::OkStatus();
}

// --- encoding ---

Value Strings(const std::vector<std::string>& v) {
  Array a;
  a.reserve(v.size());
  for (const auto& s : v) a.emplace_back(s);
  return Value(std::move(a));
}

Value EncodeClause(const Clause& c) {
  Value v;
  if (c.context_kind.has_value()) v.Set("contextKind", Value(*c.context_kind));
  v.Set("attribute", Value(c.attribute));
  v.Set("op", Value(c.op_name.empty() ? std::string(OpName(c.op)) : c.op_name));
  v.Set("values", Value(Array(c.values)));
  v.Set("negate", Value(c.negate));
  return v;
}

Value EncodeClauses(const std::vector<Clause>& clauses) {
  Array a;
  for (const Clause& c : clauses) a.push_back(EncodeClause(c));
  return Value(std::move(a));
}

Value EncodeRollout(const Rollout& r) {
  Value v;
  if (r.kind == RolloutKind::kExperiment) v.Set("kind", Value("experiment"));
  if (r.context_kind.has_value()) v.Set("contextKind", Value(*r.context_kind));
  if (r.bucket_by.has_value()) v.Set("bucketBy", Value(*r.bucket_by));
  if (r.seed.has_value()) v.Set("seed", Value(*r.seed));
  Array vars;
  for (const WeightedVariation& w : r.variations) {
    Value wv;
    wv.Set("variation", Value(w.variation));
    wv.Set("weight", Value(w.weight));
    if (w.untracked) wv.Set("untracked", Value(true));
    vars.push_back(std::move(wv));
  }
  v.Set("variations", Value(std::move(vars)));
  return v;
}

void EncodeVariationOrRollout(const VariationOrRollout& vr, Value& into) {
  if (vr.variation.has_value()) into.Set("variation", Value(*vr.variation));
  if (vr.rollout.has_value()) into.Set("rollout", EncodeRollout(*vr.rollout));
}

Value EncodeTargets(const std::vector<Target>& targets, bool with_kind) {
  Array a;
  for (const Target& t : targets) {
    Value v;
    if (with_kind) v.Set("contextKind", Value(t.context_kind));
    v.Set("values", Strings(t.values));
    v.Set("variation", Value(t.variation));
    a.push_back(std::move(v));
  }
  return Value(std::move(a));
}

Value EncodeSegmentTargets(const std::vector<SegmentTarget>& targets) {
  Array a;
  for (const SegmentTarget& t : targets) {
    Value v;
    v.Set("contextKind", Value(t.context_kind));
    v.Set("values", Strings(t.values));
    a.push_back(std::move(v));
  }
  return Value(std::move(a));
}

void SetIfNotEmpty(Value& v, std::string_view name, const std::string& s) {
  if (!s.empty()) v.Set(name, Value(s));
}

}  // namespace

namespace {
// Every member name the decoders above read, at any depth (with `version`, which they leave to
// the store, and `deleted`).
constexpr std::string_view kMemberNames[] = {
    "attribute", "bucketBy", "clauses", "clientSide", "clientSideAvailability", "contextKind", "contextTargets",
    "deleted", "description", "excluded", "excludedContexts", "fallthrough", "id", "included", "includedContexts",
    "key", "kind", "maintainer", "name", "negate", "offVariation", "on", "op", "prerequisites", "rollout",
    "rolloutContextKind", "rules", "salt", "seed", "tags", "targets", "temporary", "trackEvents",
    "trackEventsFallthrough", "untracked", "usingEnvironmentId", "usingMobileKey", "values", "variation",
    "variations", "version", "weight"};

absl::Status CheckMembers(const Value& v, const std::string& path, bool top) {
  if (v.is_array()) {
    for (size_t i = 0; i < v.as_array().size(); ++i) RETURN_IF_ERROR(CheckMembers(v.as_array()[i], StrCat(path, "[", i, "]"), false));
    return absl::OkStatus();
  }
  if (!v.is_object()) return absl::OkStatus();
  for (const auto& [name, member] : v.as_object()) {
    std::string p = FieldPath(path, name);
    if (std::find(std::begin(kMemberNames), std::end(kMemberNames), name) == std::end(kMemberNames)) {
      return InvalidField(p, "unknown field (docs/data-model.md lists a flag's and a segment's fields)");
    }
    if (name == "values" || (top && name == "variations")) continue;  // any JSON
    RETURN_IF_ERROR(CheckMembers(member, p, false));
  }
  return absl::OkStatus();
}
}  // namespace

absl::Status CheckKnownMembers(const Value& item) { return CheckMembers(item, "", true); }

absl::StatusOr<Flag> DecodeFlag(const Value& json, DecodeOptions options) {
  Flag f;
  RETURN_IF_ERROR(DecodeFlagAt(json, "", options, f));
  return f;
}

absl::StatusOr<Segment> DecodeSegment(const Value& json, DecodeOptions options) {
  Segment s;
  RETURN_IF_ERROR(DecodeSegmentAt(json, "", options, s));
  return s;
}

namespace {
// DecodeEnvironment's steps; `decode_maps` fills the flags and the segments.
template <typename DecodeMaps>
absl::StatusOr<Environment> DecodeEnvironmentWith(const Value& json, DecodeOptions options, DecodeMaps decode_maps) {
  RETURN_IF_ERROR(RequireObject(json, ""));
  Environment env;
  RETURN_IF_ERROR(GetInt64(json, "sequence", "", env.sequence));
  RETURN_IF_ERROR(decode_maps(env));
  if (options.strict) RETURN_IF_ERROR(CheckReferences(env));
  return env;
}
}  // namespace

absl::StatusOr<Environment> DecodeEnvironment(const Value& json, DecodeOptions options, const ParallelFor& parallel) {
  return DecodeEnvironmentWith(json, options, [&](Environment& env) -> absl::Status {
    RETURN_IF_ERROR(DecodeMap<Flag>(json, "flags", options, DecodeFlagAt, env.flags, parallel));
    return DecodeMap<Segment>(json, "segments", options, DecodeSegmentAt, env.segments, parallel);
  });
}

namespace {
absl::StatusOr<Environment> DecodeSplitEnvironment(const SplitJson& doc, DecodeOptions options,
                                                   const ParallelFor& parallel) {
  return DecodeEnvironmentWith(doc.rest(), options, [&](Environment& env) -> absl::Status {
    RETURN_IF_ERROR(DecodeSplitMap<Flag>(doc, "flags", options, DecodeFlagAt, env.flags, parallel));
    return DecodeSplitMap<Segment>(doc, "segments", options, DecodeSegmentAt, env.segments, parallel);
  });
}
}  // namespace

absl::StatusOr<Environment> ParseEnvironment(std::string_view text, DecodeOptions options, const ParallelFor& parallel) {
  ASSIGN_OR_RETURN(SplitJson doc, SplitJson::Parse(text, {"flags", "segments"}));
  return DecodeSplitEnvironment(doc, options, parallel);
}

absl::StatusOr<Environment> ParseEnvironment(PaddedJson text, DecodeOptions options, const ParallelFor& parallel) {
  ASSIGN_OR_RETURN(SplitJson doc, SplitJson::Parse(text, {"flags", "segments"}));
  return DecodeSplitEnvironment(doc, options, parallel);
}

absl::Status CheckReferences(const Environment& env) {
  absl::flat_hash_map<std::string_view, ItemReferences> flags, segments;
  flags.reserve(env.flags.size());
  segments.reserve(env.segments.size());
  for (const auto& [key, flag] : env.flags) flags.emplace(key, ReferencesOf(flag));
  for (const auto& [key, segment] : env.segments) segments.emplace(key, ReferencesOf(segment));
  auto lookup = [&](ChangedKind kind, std::string_view key) -> absl::StatusOr<const ItemReferences*> {
    const auto& items = kind == ChangedKind::kFlag ? flags : segments;
    auto it = items.find(key);
    return it == items.end() ? nullptr : &it->second;
  };
  for (const auto& [key, flag] : env.flags) {
    RETURN_IF_ERROR(WithFieldPrefix(CheckReferences(ChangedKind::kFlag, key, flags.at(key), lookup), StrCat("flags.", key)));
  }
  for (const auto& [key, segment] : env.segments) {
    RETURN_IF_ERROR(
        WithFieldPrefix(CheckReferences(ChangedKind::kSegment, key, segments.at(key), lookup), StrCat("segments.", key)));
  }
  std::vector<std::string> roots;
  roots.reserve(env.flags.size());
  for (const auto& [key, flag] : env.flags) roots.push_back(key);
  return CheckNoPrerequisiteCycle(roots, lookup, [](std::string_view flag, size_t j) {
    return StrCat("flags.", flag, ".prerequisites[", j, "].key");
  });
}

Value EncodeFlag(const Flag& f) {
  Value v;
  v.Set("key", Value(f.key));
  v.Set("version", Value(f.version));
  v.Set("on", Value(f.on));
  v.Set("variations", Value(Array(f.variations)));
  if (f.off_variation.has_value()) v.Set("offVariation", Value(*f.off_variation));
  Value ft{Object{}};
  EncodeVariationOrRollout(f.fallthrough, ft);
  v.Set("fallthrough", std::move(ft));
  v.Set("targets", EncodeTargets(f.targets, false));
  v.Set("contextTargets", EncodeTargets(f.context_targets, true));
  Array rules;
  for (const FlagRule& r : f.rules) {
    Value rv;
    rv.Set("id", Value(r.id));
    rv.Set("clauses", EncodeClauses(r.clauses));
    EncodeVariationOrRollout(r.variation_or_rollout, rv);
    rv.Set("trackEvents", Value(r.track_events));
    rules.push_back(std::move(rv));
  }
  v.Set("rules", Value(std::move(rules)));
  Array prereqs;
  for (const Prerequisite& p : f.prerequisites) {
    Value pv;
    pv.Set("key", Value(p.key));
    pv.Set("variation", Value(p.variation));
    prereqs.push_back(std::move(pv));
  }
  v.Set("prerequisites", Value(std::move(prereqs)));
  v.Set("salt", Value(f.salt));
  v.Set("trackEvents", Value(f.track_events));
  v.Set("trackEventsFallthrough", Value(f.track_events_fallthrough));
  Value csa;
  csa.Set("usingMobileKey", Value(f.client_side_availability.using_mobile_key));
  csa.Set("usingEnvironmentId", Value(f.client_side_availability.using_environment_id));
  v.Set("clientSideAvailability", std::move(csa));
  v.Set("deleted", Value(f.deleted));
  const FlagManagement& m = f.Management();
  SetIfNotEmpty(v, "name", m.name);
  SetIfNotEmpty(v, "description", m.description);
  if (!m.tags.empty()) v.Set("tags", Strings(m.tags));
  if (m.temporary) v.Set("temporary", Value(true));
  SetIfNotEmpty(v, "maintainer", m.maintainer);
  return v;
}

Value EncodeSegment(const Segment& s) {
  Value v;
  v.Set("key", Value(s.key));
  v.Set("version", Value(s.version));
  v.Set("included", Strings(s.included));
  v.Set("excluded", Strings(s.excluded));
  v.Set("includedContexts", EncodeSegmentTargets(s.included_contexts));
  v.Set("excludedContexts", EncodeSegmentTargets(s.excluded_contexts));
  Array rules;
  for (const SegmentRule& r : s.rules) {
    Value rv;
    rv.Set("id", Value(r.id));
    rv.Set("clauses", EncodeClauses(r.clauses));
    if (r.weight.has_value()) rv.Set("weight", Value(*r.weight));
    if (r.bucket_by.has_value()) rv.Set("bucketBy", Value(*r.bucket_by));
    if (r.rollout_context_kind.has_value()) {
      rv.Set("rolloutContextKind", Value(*r.rollout_context_kind));
    }
    rules.push_back(std::move(rv));
  }
  v.Set("rules", Value(std::move(rules)));
  v.Set("salt", Value(s.salt));
  v.Set("deleted", Value(s.deleted));
  SetIfNotEmpty(v, "name", s.name);
  SetIfNotEmpty(v, "description", s.description);
  if (!s.tags.empty()) v.Set("tags", Strings(s.tags));
  return v;
}

Value EncodeEnvironment(const Environment& env) {
  Value v;
  v.Set("sequence", Value(env.sequence));
  // Map keys are unique: members are appended without Set's duplicate scan (linear, not
  // quadratic, in the number of flags).
  Object flags;
  flags.reserve(env.flags.size());
  for (const auto& [key, f] : env.flags) flags.emplace_back(key, EncodeFlag(f));
  v.Set("flags", Value(std::move(flags)));
  Object segments;
  segments.reserve(env.segments.size());
  for (const auto& [key, s] : env.segments) segments.emplace_back(key, EncodeSegment(s));
  v.Set("segments", Value(std::move(segments)));
  return v;
}

}  // namespace gonfalon::rules
