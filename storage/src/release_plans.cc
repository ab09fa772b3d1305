// Release plans (DESIGN §9), in the automation family:
//   rp/{p}/{e}/{flag}    the flag's latest plan
//   rpa/{p}/{e}/{flag}   empty, while that plan is active (what RunReleasePlans visits)
// Every change of traffic is a change set by "release:<id>" written in one batch with the
// plan's new state, so the plan and the flag never disagree after a crash.
//
// Each stage serves the flag's target (fallthrough or rule) an experiment rollout of two
// variations listed in variation order, control and treatment. Bucketing puts a unit at a
// fixed point of [0, 100000) (from the flag key, salt or seed, and its key); the listed
// variations take consecutive ranges in list order. Whichever of the two comes first, raising
// the treatment's weight moves only the boundary between them, away from the treatment's
// side: its range only widens, so a unit that got the treatment keeps it.

#include <algorithm>

#include "gonfalon/rules/json_fields.h"
#include "rocks_store.h"

namespace gonfalon::storage {

std::string_view PlanStatusName(PlanStatus s) {
  switch (s) {
    case PlanStatus::kActive:
      return "active";
    case PlanStatus::kPaused:
      return "paused";
    case PlanStatus::kCompleted:
      return "completed";
    case PlanStatus::kAborted:
      return "aborted";
    case PlanStatus::kRolledBack:
      return "rolledBack";
  }
  return "active";
}

std::string_view GuardKindName(GuardKind k) {
  switch (k) {
    case GuardKind::kMetric:
      return "metric";
    case GuardKind::kThreshold:
      return "threshold";
    case GuardKind::kPrometheus:
      return "prometheus";
    case GuardKind::kSampleRatio:
      return "sampleRatio";
    case GuardKind::kNoTraffic:
      return "noTraffic";
  }
  return "metric";
}

std::string_view GuardActionName(GuardAction a) {
  switch (a) {
    case GuardAction::kRollBack:
      return "rollback";
    case GuardAction::kPause:
      return "pause";
    case GuardAction::kNotify:
      return "notify";
  }
  return "rollback";
}

rules::Value PlanGuardToJson(const PlanGuard& g) {
  using rules::Value;
  Value out(rules::Object{{"kind", Value(GuardKindName(g.kind))}, {"action", Value(GuardActionName(g.action))}});
  switch (g.kind) {
    case GuardKind::kMetric:
      out.Set("metric", Value(g.metric));
      out.Set("minEffect", Value(g.min_effect));
      out.Set("expectedUnits", Value(g.expected_units));
      out.Set("minUnits", Value(g.min_units));
      break;
    case GuardKind::kThreshold:
      out.Set("metric", Value(g.metric));
      out.Set("minUnits", Value(g.min_units));
      break;
    case GuardKind::kPrometheus:
      out.Set("url", Value(g.url));
      out.Set("query", Value(g.query));
      out.Set("intervalMs", Value(g.interval_ms));
      break;
    case GuardKind::kSampleRatio:
      break;
    case GuardKind::kNoTraffic:
      out.Set("graceMs", Value(g.grace_ms));
      break;
  }
  if (g.min.has_value()) out.Set("min", Value(*g.min));
  if (g.max.has_value()) out.Set("max", Value(*g.max));
  return out;
}

namespace {

absl::Status GetOptDouble(const rules::Value& v, std::string_view name, std::string_view path, std::optional<double>& out) {
  const rules::Value* m = nullptr;
  RETURN_IF_ERROR(rules::GetMember(v, name, path, rules::Value::Type::kNumber, m));
  if (m != nullptr) out = m->as_number();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PlanGuard> PlanGuardFromJson(const rules::Value& v, const std::string& path) {
  RETURN_IF_ERROR(rules::RequireObject(v, path));
  PlanGuard g;
  std::string kind, action;
  RETURN_IF_ERROR(rules::GetString(v, "kind", path, kind));
  bool known = false;
  for (GuardKind k : {GuardKind::kMetric, GuardKind::kThreshold, GuardKind::kPrometheus, GuardKind::kSampleRatio, GuardKind::kNoTraffic}) {
    if (kind == GuardKindName(k)) g.kind = k, known = true;
  }
  if (!known) {
    return rules::InvalidField(rules::FieldPath(path, "kind"),
                               StrCat("expected metric, threshold, prometheus, sampleRatio or noTraffic, got \"", kind, "\""));
  }
  RETURN_IF_ERROR(rules::GetString(v, "action", path, action));
  known = action.empty();  // absent: roll back
  for (GuardAction a : {GuardAction::kRollBack, GuardAction::kPause, GuardAction::kNotify}) {
    if (action == GuardActionName(a)) g.action = a, known = true;
  }
  if (!known) return rules::InvalidField(rules::FieldPath(path, "action"), StrCat("expected rollback, pause or notify, got \"", action, "\""));
  // The members each kind takes; any other is a mistake worth naming.
  std::vector<std::string_view> allowed = {"kind", "action"};
  switch (g.kind) {
    case GuardKind::kMetric:
      allowed.insert(allowed.end(), {"metric", "minEffect", "expectedUnits", "minUnits"});
      break;
    case GuardKind::kThreshold:
      allowed.insert(allowed.end(), {"metric", "min", "max", "minUnits"});
      break;
    case GuardKind::kPrometheus:
      allowed.insert(allowed.end(), {"url", "query", "min", "max", "intervalMs"});
      break;
    case GuardKind::kSampleRatio:
      break;
    case GuardKind::kNoTraffic:
      allowed.push_back("graceMs");
      break;
  }
  for (const auto& [name, value] : v.as_object()) {
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      std::string list;
      for (std::string_view a : allowed) list = list.empty() ? std::string(a) : StrCat(list, ", ", a);
      return rules::InvalidField(rules::FieldPath(path, name), StrCat("unknown for a ", kind, " guard (", list, ")"));
    }
  }
  RETURN_IF_ERROR(rules::GetString(v, "metric", path, g.metric));
  std::optional<double> min_effect, expected;
  RETURN_IF_ERROR(GetOptDouble(v, "minEffect", path, min_effect));
  RETURN_IF_ERROR(GetOptDouble(v, "expectedUnits", path, expected));
  RETURN_IF_ERROR(GetOptDouble(v, "min", path, g.min));
  RETURN_IF_ERROR(GetOptDouble(v, "max", path, g.max));
  RETURN_IF_ERROR(rules::GetString(v, "url", path, g.url));
  RETURN_IF_ERROR(rules::GetString(v, "query", path, g.query));
  std::optional<int64_t> min_units, interval, grace;
  RETURN_IF_ERROR(rules::GetOptInt64(v, "minUnits", path, min_units));
  RETURN_IF_ERROR(rules::GetOptInt64(v, "intervalMs", path, interval));
  RETURN_IF_ERROR(rules::GetOptInt64(v, "graceMs", path, grace));
  if (min_effect.has_value()) g.min_effect = *min_effect;
  if (expected.has_value()) g.expected_units = *expected;
  if (min_units.has_value()) g.min_units = *min_units;
  if (interval.has_value()) g.interval_ms = *interval;
  if (grace.has_value()) g.grace_ms = *grace;
  bool needs_metric = g.kind == GuardKind::kMetric || g.kind == GuardKind::kThreshold;
  if (needs_metric && g.metric.empty()) return rules::InvalidField(rules::FieldPath(path, "metric"), "is required: a metric key of the project");
  if (g.min_effect < 0) return rules::InvalidField(rules::FieldPath(path, "minEffect"), "expected >= 0 (in the metric's units)");
  if (g.expected_units < 10) return rules::InvalidField(rules::FieldPath(path, "expectedUnits"), "expected >= 10");
  if (g.min_units < 1) return rules::InvalidField(rules::FieldPath(path, "minUnits"), "expected >= 1");
  bool bounded = g.kind == GuardKind::kThreshold || g.kind == GuardKind::kPrometheus;
  if (bounded && !g.min.has_value() && !g.max.has_value()) {
    return rules::InvalidField(path, StrCat("a ", kind, " guard needs min, max or both (the healthy range)"));
  }
  if (g.min.has_value() && g.max.has_value() && *g.min > *g.max) return rules::InvalidField(rules::FieldPath(path, "min"), "is above max");
  if (g.kind == GuardKind::kPrometheus) {
    if (g.url.rfind("http://", 0) != 0 || g.url.size() <= 7) {
      return rules::InvalidField(rules::FieldPath(path, "url"), "expected the Prometheus server as http://host:port");
    }
    if (g.query.empty()) return rules::InvalidField(rules::FieldPath(path, "query"), "is required (PromQL)");
    if (g.interval_ms < 200 || g.interval_ms > 3600000) return rules::InvalidField(rules::FieldPath(path, "intervalMs"), "expected 200 to 3600000");
  }
  if (g.grace_ms < 0) return rules::InvalidField(rules::FieldPath(path, "graceMs"), "expected >= 0");
  return g;
}

rules::Value ReleasePlanToJson(const ReleasePlan& p) {
  using rules::Object;
  using rules::Value;
  rules::Array stages, events;
  for (const PlanStage& s : p.stages) {
    stages.push_back(Value(Object{{"weight", Value(static_cast<int64_t>(s.weight))},
                                  {"minDurationMs", Value(s.min_duration_ms)},
                                  {"minUnits", Value(s.min_units)}}));
  }
  for (const PlanEvent& e : p.events) {
    Value ev(Object{{"timeMs", Value(e.time_ms)}, {"what", Value(e.what)}});
    if (e.sequence != 0) ev.Set("sequence", Value(e.sequence));
    events.push_back(std::move(ev));
  }
  Value out(Object{{"id", Value(p.id)},
                   {"project", Value(p.project)},
                   {"environment", Value(p.environment)},
                   {"flag", Value(p.flag)},
                   {"controlVariation", Value(static_cast<int64_t>(p.control))},
                   {"treatmentVariation", Value(static_cast<int64_t>(p.treatment))},
                   {"rule", Value(p.rule)},
                   {"stages", Value(std::move(stages))},
                   {"status", Value(PlanStatusName(p.status))},
                   {"stage", Value(static_cast<int64_t>(p.stage))},
                   {"stageStartedMs", Value(p.stage_started_ms)},
                   {"flagVersion", Value(p.flag_version)},
                   {"reason", Value(p.reason)},
                   {"createdBy", Value(p.created_by)},
                   {"createdMs", Value(p.created_ms)},
                   {"updatedMs", Value(p.updated_ms)},
                   {"version", Value(p.version)},
                   {"events", Value(std::move(events))}});
  rules::Array guards;
  for (const PlanGuard& g : p.guards) guards.push_back(PlanGuardToJson(g));
  out.Set("guards", Value(std::move(guards)));
  out.Set("alpha", Value(p.alpha));
  if (p.fired.has_value()) {
    const GuardFiring& f = *p.fired;
    out.Set("firedGuard", Value(Object{{"guard", Value(static_cast<int64_t>(f.guard))},
                                       {"kind", Value(static_cast<size_t>(f.guard) < p.guards.size()
                                                          ? GuardKindName(p.guards[static_cast<size_t>(f.guard)].kind)
                                                          : std::string_view())},
                                       {"stage", Value(static_cast<int64_t>(f.stage))},
                                       {"timeMs", Value(f.time_ms)},
                                       {"summary", Value(f.summary)},
                                       {"figures", f.figures}}));
  }
  return out;
}

namespace internal {

namespace {

constexpr size_t kMaxEvents = 100;

std::string PlanKey(std::string_view p, std::string_view e, std::string_view flag) { return StrCat("rp/", p, "/", e, "/", flag); }
std::string ActiveKey(std::string_view p, std::string_view e, std::string_view flag) {
  return StrCat("rpa/", p, "/", e, "/", flag);
}

}  // namespace

absl::StatusOr<ReleasePlan> ReleasePlanFromJson(const Value& v) {
  ReleasePlan p;
  RETURN_IF_ERROR(rules::GetString(v, "id", "", p.id));
  RETURN_IF_ERROR(rules::GetString(v, "project", "", p.project));
  RETURN_IF_ERROR(rules::GetString(v, "environment", "", p.environment));
  RETURN_IF_ERROR(rules::GetString(v, "flag", "", p.flag));
  RETURN_IF_ERROR(rules::GetInt(v, "controlVariation", "", p.control));
  RETURN_IF_ERROR(rules::GetInt(v, "treatmentVariation", "", p.treatment));
  RETURN_IF_ERROR(rules::GetString(v, "rule", "", p.rule));
  RETURN_IF_ERROR(rules::GetInt(v, "stage", "", p.stage));
  RETURN_IF_ERROR(rules::GetInt64(v, "stageStartedMs", "", p.stage_started_ms));
  RETURN_IF_ERROR(rules::GetInt64(v, "flagVersion", "", p.flag_version));
  RETURN_IF_ERROR(rules::GetString(v, "reason", "", p.reason));
  RETURN_IF_ERROR(rules::GetString(v, "createdBy", "", p.created_by));
  RETURN_IF_ERROR(rules::GetInt64(v, "createdMs", "", p.created_ms));
  RETURN_IF_ERROR(rules::GetInt64(v, "updatedMs", "", p.updated_ms));
  RETURN_IF_ERROR(rules::GetInt64(v, "version", "", p.version));
  std::string status;
  RETURN_IF_ERROR(rules::GetString(v, "status", "", status));
  bool known = false;
  for (PlanStatus s : {PlanStatus::kActive, PlanStatus::kPaused, PlanStatus::kCompleted, PlanStatus::kAborted, PlanStatus::kRolledBack}) {
    if (status == PlanStatusName(s)) {
      p.status = s;
      known = true;
    }
  }
  if (!known) return rules::InvalidField("status", StrCat("unknown status \"", status, "\""));
  ASSIGN_OR_RETURN(const rules::Array* stages, rules::GetArray(v, "stages", ""));
  if (stages != nullptr) {
    for (const Value& s : *stages) {
      PlanStage st;
      RETURN_IF_ERROR(rules::GetInt(s, "weight", "stages", st.weight));
      RETURN_IF_ERROR(rules::GetInt64(s, "minDurationMs", "stages", st.min_duration_ms));
      RETURN_IF_ERROR(rules::GetInt64(s, "minUnits", "stages", st.min_units));
      p.stages.push_back(st);
    }
  }
  ASSIGN_OR_RETURN(const rules::Array* guards, rules::GetArray(v, "guards", ""));
  if (guards != nullptr) {
    for (size_t i = 0; i < guards->size(); ++i) {
      ASSIGN_OR_RETURN(PlanGuard g, PlanGuardFromJson((*guards)[i], StrCat("guards[", i, "]")));
      p.guards.push_back(std::move(g));
    }
  }
  if (const Value* a = v.Find("alpha"); a != nullptr && a->is_number()) p.alpha = a->as_number();
  if (const Value* f = v.Find("firedGuard"); f != nullptr && f->is_object()) {
    GuardFiring g;
    g.plan_id = p.id;
    RETURN_IF_ERROR(rules::GetInt(*f, "guard", "firedGuard", g.guard));
    RETURN_IF_ERROR(rules::GetInt(*f, "stage", "firedGuard", g.stage));
    RETURN_IF_ERROR(rules::GetInt64(*f, "timeMs", "firedGuard", g.time_ms));
    RETURN_IF_ERROR(rules::GetString(*f, "summary", "firedGuard", g.summary));
    if (const Value* fig = f->Find("figures")) g.figures = *fig;
    p.fired = std::move(g);
  }
  ASSIGN_OR_RETURN(const rules::Array* events, rules::GetArray(v, "events", ""));
  if (events != nullptr) {
    for (const Value& e : *events) {
      PlanEvent ev;
      RETURN_IF_ERROR(rules::GetInt64(e, "timeMs", "events", ev.time_ms));
      RETURN_IF_ERROR(rules::GetString(e, "what", "events", ev.what));
      RETURN_IF_ERROR(rules::GetInt64(e, "sequence", "events", ev.sequence));
      p.events.push_back(std::move(ev));
    }
  }
  return p;
}

namespace {

void AddEvent(ReleasePlan& p, int64_t now, std::string what, int64_t sequence = 0) {
  p.events.push_back({now, std::move(what), sequence});
  if (p.events.size() > kMaxEvents) p.events.erase(p.events.begin());
}

std::string Percent(int weight) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g%%", weight / 1000.0);
  return buf;
}

// The plan's target on the flag: the fallthrough or the rule with the plan's id.
rules::VariationOrRollout* Target(rules::Flag& f, const std::string& rule) {
  if (rule.empty()) return &f.fallthrough;
  for (rules::FlagRule& r : f.rules) {
    if (r.id == rule) return &r.variation_or_rollout;
  }
  return nullptr;
}

// Serves the target the plan's two variations at `treatment_weight` (keeping the rollout's
// context kind and seed, so units keep their buckets).
void SetTraffic(rules::VariationOrRollout& target, const ReleasePlan& p, int treatment_weight) {
  rules::Rollout r;
  if (target.rollout.has_value()) {
    r.context_kind = target.rollout->context_kind;
    r.seed = target.rollout->seed;
  }
  r.kind = rules::RolloutKind::kExperiment;
  rules::WeightedVariation control{p.control, 100000 - treatment_weight, false};
  rules::WeightedVariation treatment{p.treatment, treatment_weight, false};
  if (p.control < p.treatment) {
    r.variations = {control, treatment};
  } else {
    r.variations = {treatment, control};
  }
  target.variation.reset();
  target.rollout.emplace(std::move(r));
}

}  // namespace

absl::StatusOr<ReleasePlan> RocksStore::ApplyPlanTraffic(ReleasePlan plan, int treatment_weight, const std::string& what,
                                                         const std::function<void(ReleasePlan&)>& update) {
  ASSIGN_OR_RETURN(rules::Flag f, GetFlag(plan.project, plan.environment, plan.flag));
  rules::VariationOrRollout* target = Target(f, plan.rule);
  if (target == nullptr) {
    return absl::FailedPreconditionError(StrCat("flag \"", plan.flag, "\" has no rule \"", plan.rule, "\""));
  }
  SetTraffic(*target, plan, treatment_weight);
  ChangeSet cs;
  cs.project = plan.project;
  cs.environment = plan.environment;
  cs.actor.id = StrCat("release:", plan.id);
  cs.actor.approved = true;  // its start was (where approvals are required)
  cs.comment = StrCat("release plan ", plan.id, ": ", what);
  cs.items.push_back({ItemKind::kFlag, plan.flag, f.version, rules::EncodeFlag(f), false});
  int64_t now = Now();
  // The stage's iteration measures the guards' metrics, against the plan's control.
  IterationDefaults iteration;
  iteration.control = plan.control;
  for (const PlanGuard& g : plan.guards) {
    bool metric = g.kind == GuardKind::kMetric || g.kind == GuardKind::kThreshold;
    if (metric && std::find(iteration.metrics.begin(), iteration.metrics.end(), g.metric) == iteration.metrics.end()) {
      iteration.metrics.push_back(g.metric);
    }
  }
  ReleasePlan out;
  std::string key = PlanKey(plan.project, plan.environment, plan.flag);
  std::string active = ActiveKey(plan.project, plan.environment, plan.flag);
  auto state_ops = [&](ReleasePlan& p, std::vector<WriteOp>& ops) {
    p.updated_ms = now;
    ++p.version;
    update(p);
    ops.push_back(Put(kAutomation, key, ToJson(ReleasePlanToJson(p))));
    ops.push_back(p.status == PlanStatus::kActive ? Put(kAutomation, active, "") : Delete(kAutomation, active));
  };
  absl::StatusOr<AppliedChangeSet> applied = ApplyWith(cs, [&](const AppliedChangeSet& a, std::vector<WriteOp>& ops) {
    out = plan;
    out.flag_version = a.items.empty() ? f.version : a.items[0].version;
    AddEvent(out, now, what, a.sequence);
    state_ops(out, ops);
  }, &iteration);
  if (!applied.ok()) return applied.status();
  if (applied->unchanged) {
    // The traffic was already so: only the plan's state changes.
    out = plan;
    out.flag_version = f.version;
    AddEvent(out, now, what);
    std::vector<WriteOp> ops;
    state_ops(out, ops);
    RETURN_IF_ERROR(WriteNow(std::move(ops)));
  }
  return out;
}

absl::Status RocksStore::StopPlan(ReleasePlan& plan, PlanStatus status, const std::string& what) {
  int64_t now = Now();
  plan.status = status;
  plan.updated_ms = now;
  ++plan.version;
  AddEvent(plan, now, what);
  return WriteNow({Put(kAutomation, PlanKey(plan.project, plan.environment, plan.flag), ToJson(ReleasePlanToJson(plan))),
                   Delete(kAutomation, ActiveKey(plan.project, plan.environment, plan.flag))});
}

absl::Status RocksStore::CheckReleasePlan(const ReleasePlan& spec) {
  ASSIGN_OR_RETURN(rules::Flag f, GetFlag(spec.project, spec.environment, spec.flag));
  int n = static_cast<int>(f.variations.size());
  if (spec.control < 0 || spec.control >= n) {
    return rules::InvalidField("controlVariation", StrCat("variation ", spec.control, " does not exist (the flag has ", n, ")"));
  }
  if (spec.treatment < 0 || spec.treatment >= n || spec.treatment == spec.control) {
    return rules::InvalidField("treatmentVariation", StrCat("expected a variation of the flag other than the control (0..", n - 1, ")"));
  }
  if (Target(f, spec.rule) == nullptr) return rules::InvalidField("rule", StrCat("flag \"", spec.flag, "\" has no rule \"", spec.rule, "\""));
  if (spec.stages.empty() || spec.stages.size() > 20) return rules::InvalidField("stages", "expected 1 to 20 stages");
  int last = 0;
  for (size_t i = 0; i < spec.stages.size(); ++i) {
    const PlanStage& st = spec.stages[i];
    std::string path = StrCat("stages[", i, "]");
    if (st.weight <= last || st.weight > 100000) {
      return rules::InvalidField(StrCat(path, ".weight"), StrCat("expected more than the stage before (", last, ") and at most 100000"));
    }
    if (st.min_duration_ms < 0) return rules::InvalidField(StrCat(path, ".minDurationMs"), "expected >= 0");
    if (st.min_units < 0) return rules::InvalidField(StrCat(path, ".minUnits"), "expected >= 0");
    last = st.weight;
  }
  if (!(spec.alpha > 0 && spec.alpha < 0.5)) return rules::InvalidField("alpha", "expected more than 0 and less than 0.5");
  if (spec.guards.size() > 20) return rules::InvalidField("guards", "at most 20 guards");
  ASSIGN_OR_RETURN(std::vector<Metric> metrics, ListMetrics(spec.project));
  for (size_t i = 0; i < spec.guards.size(); ++i) {
    const PlanGuard& g = spec.guards[i];
    if (g.kind != GuardKind::kMetric && g.kind != GuardKind::kThreshold) continue;
    if (std::none_of(metrics.begin(), metrics.end(), [&](const Metric& m) { return m.key == g.metric; })) {
      return rules::FieldError(absl::StatusCode::kNotFound, StrCat("guards[", i, "].metric"),
                               StrCat("no metric \"", g.metric, "\" in project \"", spec.project, "\" (PUT /api/v1/projects/",
                                      spec.project, "/metrics/", g.metric, " first)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ReleasePlan> RocksStore::StartReleasePlan(const ReleasePlan& spec, const Actor& actor) {
  RETURN_IF_ERROR(CheckWritable());
  RETURN_IF_ERROR(CheckReleasePlan(spec));
  ASSIGN_OR_RETURN(Environment env, GetEnvironment(spec.project, spec.environment));
  if (env.required_approvals > 0 && !actor.approved) return ApprovalRequired(env);
  bool has_ratio = false, has_traffic = false;
  for (const PlanGuard& g : spec.guards) {
    has_ratio = has_ratio || g.kind == GuardKind::kSampleRatio;
    has_traffic = has_traffic || g.kind == GuardKind::kNoTraffic;
  }
  std::lock_guard<std::mutex> l(plans_mu_);
  ASSIGN_OR_RETURN(std::optional<ReleasePlan> current, GetReleasePlan(spec.project, spec.environment, spec.flag));
  if (current.has_value() && (current->status == PlanStatus::kActive || current->status == PlanStatus::kPaused)) {
    return absl::FailedPreconditionError(StrCat("flag \"", spec.flag, "\" already has a ", PlanStatusName(current->status),
                                                " release plan (", current->id, "): abort or finish it first"));
  }
  ReleasePlan plan = spec;
  ASSIGN_OR_RETURN(std::string hex, RandomHex(6));
  plan.id = StrCat("rp_", hex);
  plan.status = PlanStatus::kActive;
  plan.stage = 0;
  plan.reason.clear();
  plan.events.clear();
  plan.created_by = actor.id;
  plan.created_ms = Now();
  plan.version = 0;
  plan.stage_started_ms = plan.created_ms;
  plan.fired.reset();
  // The built-in health checks, unless the plan names them (to choose their action).
  if (!has_ratio) plan.guards.push_back(PlanGuard{.kind = GuardKind::kSampleRatio, .action = GuardAction::kPause});
  if (!has_traffic) plan.guards.push_back(PlanGuard{.kind = GuardKind::kNoTraffic, .action = GuardAction::kPause});
  return ApplyPlanTraffic(plan, plan.stages[0].weight,
                          StrCat("started by ", actor.id, "; stage 1 of ", plan.stages.size(), ": ", Percent(plan.stages[0].weight)),
                          [](ReleasePlan&) {});
}

absl::StatusOr<std::optional<ReleasePlan>> RocksStore::GetReleasePlan(std::string_view project, std::string_view env,
                                                                      std::string_view flag) {
  std::string key = PlanKey(project, env, flag);
  ASSIGN_OR_RETURN(auto json, GetJson(kAutomation, key));
  if (!json.has_value()) {
    RETURN_IF_ERROR(GetFlag(project, env, flag).status());
    return std::optional<ReleasePlan>();
  }
  ASSIGN_OR_RETURN(ReleasePlan p, Decoded(ReleasePlanFromJson(*json), kAutomation, key));
  return std::optional<ReleasePlan>(std::move(p));
}

absl::StatusOr<ReleasePlan> RocksStore::ActOnReleasePlan(std::string_view project, std::string_view env,
                                                         std::string_view flag, PlanAction action, const Actor& actor,
                                                         std::string_view reason, const GuardFiring* guard) {
  RETURN_IF_ERROR(CheckWritable());
  std::lock_guard<std::mutex> l(plans_mu_);
  ASSIGN_OR_RETURN(std::optional<ReleasePlan> found, GetReleasePlan(project, env, flag));
  if (!found.has_value()) return absl::NotFoundError(StrCat("flag \"", flag, "\" has no release plan"));
  ReleasePlan plan = *std::move(found);
  bool running = plan.status == PlanStatus::kActive || plan.status == PlanStatus::kPaused;
  auto refuse = [&](std::string_view what) {
    return absl::FailedPreconditionError(StrCat("release plan ", plan.id, " is ", PlanStatusName(plan.status), ": cannot ", what));
  };
  std::string by = reason.empty() ? StrCat(" by ", actor.id) : StrCat(" by ", actor.id, ": ", reason);
  if (guard != nullptr) {
    // A guard judged this plan's current stage: a plan that moved on since is left alone.
    if (plan.id != guard->plan_id || plan.status != PlanStatus::kActive || plan.stage != guard->stage) {
      return absl::FailedPreconditionError(StrCat("release plan ", plan.id, " is no longer the active stage ", guard->stage + 1,
                                                  " of ", guard->plan_id, " that the guard judged"));
    }
    if (action != PlanAction::kPause && action != PlanAction::kRollBack) return absl::InvalidArgumentError("a guard pauses or rolls back");
    if (guard->guard < 0 || static_cast<size_t>(guard->guard) >= plan.guards.size()) return absl::InvalidArgumentError("no such guard");
    by = StrCat(" by guard ", guard->guard + 1, " (", GuardKindName(plan.guards[static_cast<size_t>(guard->guard)].kind), "): ",
                guard->summary);
    plan.fired = *guard;
  }
  int64_t now = Now();
  switch (action) {
    case PlanAction::kPause: {
      if (plan.status != PlanStatus::kActive) return refuse("pause");
      plan.reason = StrCat("paused", by);
      RETURN_IF_ERROR(StopPlan(plan, PlanStatus::kPaused, plan.reason));
      return plan;
    }
    case PlanAction::kResume: {
      if (plan.status != PlanStatus::kPaused) return refuse("resume");
      // The current stage again, from its start (and its traffic, in case it was edited).
      int weight = plan.stages[static_cast<size_t>(plan.stage)].weight;
      return ApplyPlanTraffic(plan, weight, StrCat("resumed", by, "; stage ", plan.stage + 1, ": ", Percent(weight)),
                              [&](ReleasePlan& p) {
                                p.status = PlanStatus::kActive;
                                p.reason.clear();
                                p.stage_started_ms = now;
                              });
    }
    case PlanAction::kAbort: {
      if (!running) return refuse("abort");
      plan.reason = StrCat("aborted", by);
      RETURN_IF_ERROR(StopPlan(plan, PlanStatus::kAborted, plan.reason));
      return plan;
    }
    case PlanAction::kRollBack: {
      if (!running && plan.status != PlanStatus::kCompleted) return refuse("roll back");
      std::string what = StrCat("rolled back", by, ": all traffic to control");
      return ApplyPlanTraffic(plan, 0, what, [&](ReleasePlan& p) {
        p.status = PlanStatus::kRolledBack;
        p.reason = what;
      });
    }
    case PlanAction::kComplete: {
      if (!running) return refuse("complete");
      std::string what = StrCat("completed", by, ": all traffic to treatment");
      return ApplyPlanTraffic(plan, 100000, what, [&](ReleasePlan& p) {
        p.status = PlanStatus::kCompleted;
        p.reason.clear();
      });
    }
  }
  return absl::InvalidArgumentError("unknown action");
}

absl::StatusOr<bool> RocksStore::AnyActiveReleasePlan() {
  bool any = false;
  absl::Status s = Scan(kAutomation, "rpa/", nullptr, [&](std::string_view, std::string_view) {
    any = true;
    return absl::CancelledError();
  });
  if (!s.ok() && s.code() != absl::StatusCode::kCancelled) return s;
  return any;
}

absl::StatusOr<std::vector<ReleasePlan>> RocksStore::ListActiveReleasePlans() {
  std::vector<std::string> active;
  RETURN_IF_ERROR(Scan(kAutomation, "rpa/", nullptr, [&](std::string_view k, std::string_view) {
    active.emplace_back(k.substr(4));
    return absl::OkStatus();
  }));
  std::vector<ReleasePlan> out;
  for (const std::string& where : active) {
    size_t a = where.find('/'), b = where.find('/', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;  // RunReleasePlans reports it
    absl::StatusOr<std::optional<ReleasePlan>> found = GetReleasePlan(where.substr(0, a), where.substr(a + 1, b - a - 1), where.substr(b + 1));
    if (absl::IsNotFound(found.status())) continue;  // the flag went; RunReleasePlans aborts it
    if (!found.ok()) return found.status();
    if (found->has_value() && (**found).status == PlanStatus::kActive) out.push_back(**std::move(found));
  }
  return out;
}

absl::StatusOr<std::vector<ReleasePlan>> RocksStore::RunReleasePlans(const std::set<std::string>& held) {
  RETURN_IF_ERROR(CheckWritable());
  std::lock_guard<std::mutex> l(plans_mu_);
  std::vector<std::string> active;
  RETURN_IF_ERROR(Scan(kAutomation, "rpa/", nullptr, [&](std::string_view k, std::string_view) {
    active.emplace_back(k.substr(4));
    return absl::OkStatus();
  }));
  std::vector<ReleasePlan> changed;
  int64_t now = Now();
  for (const std::string& where : active) {
    // "{p}/{e}/{flag}": none of them holds a '/'.
    size_t a = where.find('/'), b = where.find('/', a + 1);
    if (a == std::string::npos || b == std::string::npos) return absl::DataLossError(StrCat("release plan index \"", where, "\" is malformed"));
    std::string p = where.substr(0, a), e = where.substr(a + 1, b - a - 1), flag = where.substr(b + 1);
    absl::StatusOr<std::optional<ReleasePlan>> found = GetReleasePlan(p, e, flag);
    if (!found.ok() || !found->has_value() || (**found).status != PlanStatus::kActive) {
      if (found.ok() || absl::IsNotFound(found.status())) {
        RETURN_IF_ERROR(WriteNow({Delete(kAutomation, StrCat("rpa/", where))}));  // gone or no longer active
        continue;
      }
      return found.status();
    }
    ReleasePlan plan = **std::move(found);
    const PlanStage& stage = plan.stages[static_cast<size_t>(plan.stage)];
    absl::StatusOr<rules::Flag> flag_now = GetFlag(p, e, flag);
    if (absl::IsNotFound(flag_now.status())) {
      plan.reason = "aborted: the flag was deleted";
      RETURN_IF_ERROR(StopPlan(plan, PlanStatus::kAborted, plan.reason));
      changed.push_back(std::move(plan));
      continue;
    }
    if (!flag_now.ok()) return flag_now.status();
    rules::Flag f = *std::move(flag_now);
    if (f.version != plan.flag_version) {
      // Someone else changed the flag: if its traffic is not what the plan set, the plan
      // pauses and says so; other edits (targets, other rules) are fine.
      rules::Flag expected = f;
      rules::VariationOrRollout* want = Target(expected, plan.rule);
      rules::VariationOrRollout* have = Target(f, plan.rule);
      if (want != nullptr) SetTraffic(*want, plan, stage.weight);
      plan.updated_ms = now;
      ++plan.version;
      std::vector<WriteOp> ops;
      if (want == nullptr || have == nullptr || !(*want == *have) || !f.on) {
        plan.status = PlanStatus::kPaused;
        plan.reason = StrCat("paused: the flag's traffic was changed by hand (version ", f.version, ")");
        AddEvent(plan, now, plan.reason);
        ops.push_back(Delete(kAutomation, StrCat("rpa/", where)));
      }
      plan.flag_version = f.version;
      ops.push_back(Put(kAutomation, PlanKey(p, e, flag), ToJson(ReleasePlanToJson(plan))));
      RETURN_IF_ERROR(WriteNow(std::move(ops)));
      if (plan.status == PlanStatus::kPaused) {
        changed.push_back(std::move(plan));
        continue;
      }
    }
    if (held.count(plan.id) != 0) continue;  // a guard objects
    if (now - plan.stage_started_ms < stage.min_duration_ms) continue;
    if (stage.min_units > 0) {
      ASSIGN_OR_RETURN(std::vector<Iteration> iterations, ListIterations(p, e, flag));
      int64_t units = 0;
      if (!iterations.empty() && iterations.back().ended_ms == 0) {
        ASSIGN_OR_RETURN(IterationSums sums, GetIterationSums(p, e, flag, iterations.back().number));
        for (int64_t u : sums.units) units += u;
      }
      if (units < stage.min_units) continue;
    }
    bool last = static_cast<size_t>(plan.stage) + 1 == plan.stages.size();
    if (last) {
      RETURN_IF_ERROR(StopPlan(plan, PlanStatus::kCompleted,
                               StrCat("completed: stage ", plan.stage + 1, " of ", plan.stages.size(), " (", Percent(stage.weight),
                                      ") passed its gates")));
      changed.push_back(std::move(plan));
      continue;
    }
    int next = plan.stage + 1;
    int weight = plan.stages[static_cast<size_t>(next)].weight;
    absl::StatusOr<ReleasePlan> advanced =
        ApplyPlanTraffic(plan, weight, StrCat("stage ", next + 1, " of ", plan.stages.size(), ": ", Percent(weight)), [&](ReleasePlan& rp) {
          rp.stage = next;
          rp.stage_started_ms = now;
        });
    if (!advanced.ok()) {
      absl::StatusCode code = advanced.status().code();
      if (code == absl::StatusCode::kInternal || code == absl::StatusCode::kDataLoss || code == absl::StatusCode::kUnavailable ||
          code == absl::StatusCode::kResourceExhausted) {
        return advanced.status();
      }
      // The flag moved under us, or no longer takes the plan: the next run sees why.
      continue;
    }
    changed.push_back(*std::move(advanced));
  }
  return changed;
}

}  // namespace internal
}  // namespace gonfalon::storage
