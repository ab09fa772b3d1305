#include "gonfalon/rules/evaluator.h"

#include <algorithm>

#include "compiled.h"

namespace gonfalon::rules {

using internal::ClauseValue;
using internal::CompiledClause;
using internal::CompiledFlag;
using internal::CompiledRollout;
using internal::CompiledSegment;
using internal::CompiledVariationOrRollout;
using internal::SnapshotData;

namespace {

// Deeper prerequisite or segment nesting than this is treated as malformed.
// Prerequisite chains and segment nesting deeper than this evaluate as MALFORMED_FLAG; the
// store refuses prerequisite chains longer than kMaxPrerequisiteChain when they are written.
constexpr int kMaxDepth = kMaxPrerequisiteChain;
static_assert(kMaxPrerequisiteChain <= 64, "the evaluation stacks hold 64 entries");

enum class Match : uint8_t { kNo, kYes, kMalformed };

Match Negate(bool matched, bool negate) { return (matched != negate) ? Match::kYes : Match::kNo; }

struct EvalState {
  // A constructor rather than aggregate initialisation: the stacks must stay uninitialised
  // (zeroing 1 KiB per evaluation would cost more than evaluating a simple flag).
  EvalState(const SnapshotData& data, const Context& context, Trace* t)
      : d(data), ctx(context), trace(t) {}

  const SnapshotData& d;
  const Context& ctx;
  Trace* trace;
  int flag_depth = 0;
  int segment_depth = 0;
  bool cycle = false;  // a prerequisite cycle was found: the outermost flag is malformed
  const CompiledFlag* flag_stack[kMaxDepth];
  const CompiledSegment* segment_stack[kMaxDepth];
};

void AddStep(Trace* trace, Value step) {
  if (trace != nullptr) trace->mutable_steps().mutable_array().push_back(std::move(step));
}

// Builds the step only when a trace is wanted: the common path must not allocate.
template <typename MakeStep>
void AddStepLazy(Trace* trace, MakeStep make) {
  if (trace != nullptr) trace->mutable_steps().mutable_array().push_back(make());
}

bool MatchOne(Op op, const Value& u, const ClauseValue& cv) {
  const Value& v = *cv.raw;
  switch (op) {
    case Op::kIn:
      return u == v;
    case Op::kStartsWith:
      return u.is_string() && v.is_string() && u.as_string().starts_with(v.as_string());
    case Op::kEndsWith:
      return u.is_string() && v.is_string() && u.as_string().ends_with(v.as_string());
    case Op::kContains:
      return u.is_string() && v.is_string() &&
             u.as_string().find(v.as_string()) != std::string::npos;
    case Op::kMatches:
      return u.is_string() && cv.regex() != nullptr && RE2::PartialMatch(u.as_string(), *cv.regex());
    case Op::kLessThan:
      return u.is_number() && v.is_number() && u.as_number() < v.as_number();
    case Op::kLessThanOrEqual:
      return u.is_number() && v.is_number() && u.as_number() <= v.as_number();
    case Op::kGreaterThan:
      return u.is_number() && v.is_number() && u.as_number() > v.as_number();
    case Op::kGreaterThanOrEqual:
      return u.is_number() && v.is_number() && u.as_number() >= v.as_number();
    case Op::kBefore:
    case Op::kAfter: {
      const double* millis = cv.millis();
      if (millis == nullptr) return false;
      std::optional<double> um = internal::ToUnixMillis(u);
      if (!um.has_value()) return false;
      return op == Op::kBefore ? *um < *millis : *um > *millis;
    }
    case Op::kSemVerEqual:
    case Op::kSemVerLessThan:
    case Op::kSemVerGreaterThan: {
      const internal::SemVer* version = cv.semver();
      if (version == nullptr || !u.is_string()) return false;
      std::optional<internal::SemVer> us = internal::ParseSemVer(u.as_string());
      if (!us.has_value()) return false;
      int c = internal::CompareSemVer(*us, *version);
      return op == Op::kSemVerEqual ? c == 0 : (op == Op::kSemVerLessThan ? c < 0 : c > 0);
    }
    case Op::kSegmentMatch:
    case Op::kUnknown:
      return false;
  }
  return false;
}

bool MatchAny(const CompiledClause& c, const Value& u) {
  if (c.string_set != nullptr && u.is_string()) {
    return c.string_set->contains(absl::string_view(u.as_string()));
  }
  for (const ClauseValue& cv : c.values) {
    if (MatchOne(c.op, u, cv)) return true;
  }
  return false;
}

Match MatchSegment(EvalState& s, const CompiledSegment& seg, Value* trace_out);

// Evaluates one clause. `trace_out`, when set, receives what the clause read and decided.
Match MatchClause(EvalState& s, const CompiledClause& c, Value* trace_out) {
  if (trace_out != nullptr) {
    trace_out->Set("contextKind", Value(c.context_kind));
    trace_out->Set("attribute", Value(c.model->attribute));
    // Known operators' names may be dropped from the model (ItemJson::kEager).
    trace_out->Set("op", c.op == Op::kUnknown ? Value(c.model->op_name) : Value(OpName(c.op)));
    trace_out->Set("values", Value(Array(c.model->values)));
    if (c.negate) trace_out->Set("negate", Value(true));
  }
  auto done = [&](Match m) {
    if (trace_out != nullptr) {
      if (m == Match::kMalformed) {
        trace_out->Set("malformed", Value(true));
      } else {
        trace_out->Set("matched", Value(m == Match::kYes));
      }
    }
    return m;
  };
  if (c.op == Op::kSegmentMatch) {
    Value segs{Array{}};
    bool matched = false;
    for (const ClauseValue& cv : c.values) {
      std::optional<internal::HashedKey> key = cv.segment();
      const CompiledSegment* seg = key.has_value() ? s.d.FindLiveSegment(*key) : nullptr;
      if (seg == nullptr) continue;  // unknown or deleted segment: no match
      Value seg_trace;
      Match m = MatchSegment(s, *seg, trace_out ? &seg_trace : nullptr);
      if (trace_out != nullptr) segs.mutable_array().push_back(std::move(seg_trace));
      if (m == Match::kMalformed) return done(Match::kMalformed);
      if (m == Match::kYes) {
        matched = true;
        break;
      }
    }
    if (trace_out != nullptr) trace_out->Set("segments", std::move(segs));
    return done(Negate(matched, c.negate));
  }
  if (c.op == Op::kUnknown) return done(Match::kNo);  // never matches, negated or not
  if (!c.attribute.valid()) return done(Match::kMalformed);
  if (c.attribute.is_kind()) {
    // "kind" reads the kinds of the context, whatever the clause's contextKind.
    bool matched = false;
    for (const Context::Single& part : s.ctx.kinds()) {
      if (MatchAny(c, part.kind)) {
        matched = true;
        break;
      }
    }
    return done(Negate(matched, c.negate));
  }
  const Context::Single* part = s.ctx.Find(c.context_kind);
  if (part == nullptr) return done(Match::kNo);  // absent kind: no match, negate or not
  const Value* u = Context::Get(*part, c.attribute);
  if (trace_out != nullptr) trace_out->Set("read", u == nullptr ? Value() : *u);
  if (u == nullptr || u->is_null()) return done(Match::kNo);
  bool matched = false;
  if (u->is_array()) {
    for (const Value& e : u->as_array()) {
      if (MatchAny(c, e)) {
        matched = true;
        break;
      }
    }
  } else {
    matched = MatchAny(c, *u);
  }
  return done(Negate(matched, c.negate));
}

Match MatchClauses(EvalState& s, const std::vector<CompiledClause>& clauses, Value* trace_out) {
  Value list{Array{}};
  Match result = Match::kYes;
  for (const CompiledClause& c : clauses) {
    Value ct;
    Match m = MatchClause(s, c, trace_out ? &ct : nullptr);
    if (trace_out != nullptr) list.mutable_array().push_back(std::move(ct));
    if (m != Match::kYes) {
      result = m;
      break;
    }
  }
  if (trace_out != nullptr) trace_out->Set("clauses", std::move(list));
  return result;
}

// Bucket of the context for (kind, attribute) under `hasher`; `found` says whether the
// context has that kind at all.
double BucketFor(const EvalState& s, const std::string& kind, const AttributeRef& by,
                 const BucketHasher& hasher, bool& found, Value* trace_out) {
  found = false;
  const Context::Single* part = s.ctx.Find(kind);
  if (part == nullptr) return 0;
  found = true;
  const Value* v = Context::Get(*part, by);
  char buf[24];
  std::string_view input;
  if (v == nullptr || !BucketableString(*v, buf, input)) return 0;
  double b = hasher.Bucket(input);
  if (trace_out != nullptr) trace_out->Set("input", Value(input));
  return b;
}

bool SegmentKeyListed(const EvalState& s,
                      const absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>>& m) {
  for (const auto& [kind, keys] : m) {
    const Context::Single* part = s.ctx.Find(kind);
    if (part != nullptr && keys.contains(absl::string_view(part->key.as_string()))) return true;
  }
  return false;
}

Match MatchSegment(EvalState& s, const CompiledSegment& seg, Value* trace_out) {
  if (trace_out != nullptr) trace_out->Set("segment", Value(seg.model->key));
  for (int i = 0; i < s.segment_depth; ++i) {
    if (s.segment_stack[i] == &seg) return Match::kMalformed;  // segments reference in a cycle
  }
  if (s.segment_depth >= kMaxDepth) return Match::kMalformed;
  if (SegmentKeyListed(s, seg.included)) {
    if (trace_out != nullptr) trace_out->Set("result", Value("included"));
    return Match::kYes;
  }
  if (SegmentKeyListed(s, seg.excluded)) {
    if (trace_out != nullptr) trace_out->Set("result", Value("excluded"));
    return Match::kNo;
  }
  s.segment_stack[s.segment_depth++] = &seg;
  Match result = Match::kNo;
  Value rules_trace{Array{}};
  for (size_t i = 0; i < seg.rules.size(); ++i) {
    const internal::CompiledSegmentRule& r = seg.rules[i];
    Value rt;
    if (trace_out != nullptr) rt.Set("index", Value(static_cast<int>(i)));
    Match m = MatchClauses(s, r.clauses, trace_out ? &rt : nullptr);
    if (m == Match::kYes && r.weight.has_value()) {
      if (!r.bucket_by.valid()) {
        m = Match::kMalformed;
      } else {
        bool found;
        double b = BucketFor(s, r.rollout_context_kind, r.bucket_by, seg.hasher, found,
                             trace_out ? &rt : nullptr);
        if (trace_out != nullptr) {
          rt.Set("bucket", Value(b));
          rt.Set("weight", Value(*r.weight));
        }
        m = b < *r.weight ? Match::kYes : Match::kNo;
      }
    }
    if (trace_out != nullptr) rules_trace.mutable_array().push_back(std::move(rt));
    if (m != Match::kNo) {
      result = m;
      break;
    }
  }
  --s.segment_depth;
  if (trace_out != nullptr) {
    trace_out->Set("rules", std::move(rules_trace));
    trace_out->Set("result", Value(result == Match::kYes ? "rule" : "no match"));
  }
  return result;
}

// The result builders write into the caller's Detail in place: copying Reason/Detail by value
// through several frames costs more (store-forwarding stalls) than evaluating a simple flag.

void SetError(Detail& out, ErrorKind kind) {
  out.value = nullptr;
  out.variation_index = -1;
  out.reason = Reason{};
  out.reason.kind = ReasonKind::kError;
  out.reason.error_kind = kind;
  out.via_rollout = false;
}

// Serves variation `index` (out.reason already set), or MALFORMED_FLAG when it does not exist.
void Serve(const CompiledFlag& f, int index, Detail& out) {
  const std::vector<Value>& vars = f.model->variations;
  if (index < 0 || static_cast<size_t>(index) >= vars.size()) {
    SetError(out, ErrorKind::kMalformedFlag);
    return;
  }
  out.value = &vars[index];
  out.variation_index = index;
}

void ServeOff(const CompiledFlag& f, Detail& out) {
  if (f.model->off_variation.has_value()) Serve(f, *f.model->off_variation, out);
}

void ServeResult(EvalState& s, const CompiledFlag& f, const CompiledVariationOrRollout& r,
                 Detail& out) {
  if (r.variation >= 0) {
    Serve(f, r.variation, out);
    return;
  }
  if (r.rollout == nullptr) {
    SetError(out, ErrorKind::kMalformedFlag);
    return;
  }
  const CompiledRollout& ro = *r.rollout;
  if (ro.buckets.empty() || !ro.bucket_by.valid()) {
    SetError(out, ErrorKind::kMalformedFlag);
    return;
  }
  Value bt;
  Value* bucket_trace = nullptr;
  if (s.trace != nullptr) {
    bt.Set("step", Value("bucket"));
    bucket_trace = &bt;
  }
  bool found;
  double b = BucketFor(s, ro.context_kind, ro.bucket_by, ro.hasher, found, bucket_trace);
  // The bucket falls under the first cumulative boundary above it; past the last (weights
  // summing to less than 100%), the last variation serves.
  size_t chosen = ro.buckets.size() - 1;
  for (size_t i = 0; i < ro.buckets.size(); ++i) {
    if (b < ro.buckets[i].upper) {
      chosen = i;
      break;
    }
  }
  const CompiledRollout::Bucket& bucket = ro.buckets[chosen];
  if (bucket_trace != nullptr) {
    bt.Set("contextKind", Value(ro.context_kind));
    bt.Set("bucket", Value(b));
    bt.Set("from", Value(chosen == 0 ? 0.0 : ro.buckets[chosen - 1].upper));
    bt.Set("to", Value(bucket.upper));
    bt.Set("variation", Value(bucket.variation));
    if (!found) bt.Set("contextKindMissing", Value(true));
    AddStep(s.trace, std::move(bt));
  }
  out.reason.in_experiment = ro.kind == RolloutKind::kExperiment && found && !bucket.untracked;
  if (out.reason.in_experiment) out.experiment_kind = ro.context_kind;
  out.via_rollout = true;
  Serve(f, bucket.variation, out);
}

void EvaluateFlag(EvalState& s, const CompiledFlag& f, Detail& out) {
  if (!f.model->on) {
    AddStepLazy(s.trace, [] { return Value(Object{{"step", Value("off")}}); });
    out.reason.kind = ReasonKind::kOff;
    ServeOff(f, out);
    return;
  }
  for (const internal::CompiledPrerequisite& p : f.prerequisites) {
    bool ok = false;
    const CompiledFlag* prerequisite = s.d.FindLiveFlag(p.key);
    if (prerequisite == nullptr) {
      AddStepLazy(s.trace, [&] {
        return Value(Object{{"step", Value("prerequisite")},
                            {"key", Value(p.model->key)},
                            {"missing", Value(true)}});
      });
    } else {
      const CompiledFlag& pf = *prerequisite;
      for (int i = 0; i < s.flag_depth; ++i) {
        if (s.flag_stack[i] == &pf) s.cycle = true;
      }
      if (s.cycle || s.flag_depth >= kMaxDepth) {
        s.cycle = true;
        SetError(out, ErrorKind::kMalformedFlag);
        return;
      }
      s.flag_stack[s.flag_depth++] = &pf;
      Detail pd;
      EvaluateFlag(s, pf, pd);
      --s.flag_depth;
      // A prerequisite that cannot be evaluated makes this flag malformed too (as LaunchDarkly's
      // evaluators do), rather than a failed prerequisite.
      if (s.cycle || pd.reason.kind == ReasonKind::kError) {
        SetError(out, ErrorKind::kMalformedFlag);
        return;
      }
      ok = pf.model->on && pd.variation_index == p.model->variation;
      AddStepLazy(s.trace, [&] {
        return Value(Object{{"step", Value("prerequisite")},
                            {"key", Value(p.model->key)},
                            {"on", Value(pf.model->on)},
                            {"required", Value(p.model->variation)},
                            {"got", Value(pd.variation_index)},
                            {"ok", Value(ok)}});
      });
    }
    if (!ok) {
      out.reason.kind = ReasonKind::kPrerequisiteFailed;
      out.reason.prerequisite_key = p.model->key;
      ServeOff(f, out);
      return;
    }
  }
  for (const internal::CompiledTarget& t : f.targets) {
    const Context::Single* part = s.ctx.Find(t.context_kind);
    bool hit = part != nullptr && t.values.contains(absl::string_view(part->key.as_string()));
    if (s.trace != nullptr) {
      AddStep(s.trace, Value(Object{{"step", Value("targets")},
                                    {"contextKind", Value(t.context_kind)},
                                    {"variation", Value(t.variation)},
                                    {"matched", Value(hit)}}));
    }
    if (hit) {
      out.reason.kind = ReasonKind::kTargetMatch;
      Serve(f, t.variation, out);
      return;
    }
  }
  for (size_t i = 0; i < f.rules.size(); ++i) {
    const internal::CompiledRule& rule = f.rules[i];
    Value rt;
    Value* rule_trace = nullptr;
    if (s.trace != nullptr) {
      rt.Set("step", Value("rule"));
      rt.Set("index", Value(static_cast<int>(i)));
      rt.Set("id", Value(rule.model->id));
      rule_trace = &rt;
    }
    Match m = MatchClauses(s, rule.clauses, rule_trace);
    if (rule_trace != nullptr) {
      rt.Set("matched", Value(m == Match::kYes));
      AddStep(s.trace, std::move(rt));
    }
    if (m == Match::kMalformed) {
      SetError(out, ErrorKind::kMalformedFlag);
      return;
    }
    if (m == Match::kYes) {
      out.reason.kind = ReasonKind::kRuleMatch;
      out.reason.rule_index = static_cast<int>(i);
      out.reason.rule_id = rule.model->id;
      ServeResult(s, f, rule.result, out);
      return;
    }
  }
  AddStepLazy(s.trace, [] { return Value(Object{{"step", Value("fallthrough")}}); });
  out.reason.kind = ReasonKind::kFallthrough;
  ServeResult(s, f, f.fallthrough, out);
}

}  // namespace

Detail Evaluate(const Snapshot& snapshot, const CompiledFlag& flag, const Context& context,
                Trace* trace) {
  Detail d;
  d.flag_version = flag.model->version;
  d.flag_has_targeting = flag.has_targeting;
  if (!context.valid()) {
    SetError(d, ErrorKind::kUserNotSpecified);
    return d;
  }
  // Prerequisites and segments are looked up in `snapshot`, whichever snapshot `flag` is from.
  EvalState s(snapshot.data(), context, trace);
  s.flag_stack[0] = &flag;
  s.flag_depth = 1;
  EvaluateFlag(s, flag, d);
  return d;
}

Detail Evaluate(const Snapshot& snapshot, std::string_view flag_key, const Context& context,
                Trace* trace) {
  const CompiledFlag* f = snapshot.FindFlag(flag_key);
  if (f == nullptr) {
    Detail d;
    SetError(d, ErrorKind::kFlagNotFound);
    return d;
  }
  return Evaluate(snapshot, *f, context, trace);
}

void EvaluateAll(const Snapshot& snapshot, const Context& context,
                 absl::FunctionRef<void(std::string_view key, const Detail&)> each,
                 bool client_side_only) {
  for (const CompiledFlag* f : snapshot.data().live_flags) {
    if (client_side_only && !f->model->client_side_availability.using_environment_id) continue;
    each(f->model->key, Evaluate(snapshot, *f, context, nullptr));
  }
}

const Flag& FlagModel(const CompiledFlag& flag) { return *flag.model; }

std::string_view ReasonKindName(ReasonKind k) {
  switch (k) {
    case ReasonKind::kOff:
      return "OFF";
    case ReasonKind::kFallthrough:
      return "FALLTHROUGH";
    case ReasonKind::kTargetMatch:
      return "TARGET_MATCH";
    case ReasonKind::kRuleMatch:
      return "RULE_MATCH";
    case ReasonKind::kPrerequisiteFailed:
      return "PREREQUISITE_FAILED";
    case ReasonKind::kError:
      return "ERROR";
  }
  return "ERROR";
}

std::string_view ErrorKindName(ErrorKind k) {
  switch (k) {
    case ErrorKind::kNone:
      return "";
    case ErrorKind::kFlagNotFound:
      return "FLAG_NOT_FOUND";
    case ErrorKind::kMalformedFlag:
      return "MALFORMED_FLAG";
    case ErrorKind::kUserNotSpecified:
      return "USER_NOT_SPECIFIED";
    case ErrorKind::kWrongType:
      return "WRONG_TYPE";
    case ErrorKind::kClientNotReady:
      return "CLIENT_NOT_READY";
    case ErrorKind::kException:
      return "EXCEPTION";
  }
  return "EXCEPTION";
}

Value ReasonToValue(const Reason& r) {
  Value v;
  v.Set("kind", Value(ReasonKindName(r.kind)));
  switch (r.kind) {
    case ReasonKind::kRuleMatch:
      v.Set("ruleIndex", Value(r.rule_index));
      v.Set("ruleId", Value(r.rule_id));
      if (r.in_experiment) v.Set("inExperiment", Value(true));
      break;
    case ReasonKind::kFallthrough:
      if (r.in_experiment) v.Set("inExperiment", Value(true));
      break;
    case ReasonKind::kPrerequisiteFailed:
      v.Set("prerequisiteKey", Value(r.prerequisite_key));
      break;
    case ReasonKind::kError:
      v.Set("errorKind", Value(ErrorKindName(r.error_kind)));
      break;
    default:
      break;
  }
  return v;
}

Value DetailToValue(const Detail& d) {
  Value v;
  v.Set("value", d.value == nullptr ? Value() : *d.value);
  if (d.variation_index >= 0) v.Set("variationIndex", Value(d.variation_index));
  v.Set("reason", ReasonToValue(d.reason));
  return v;
}

}  // namespace gonfalon::rules
