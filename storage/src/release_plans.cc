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
  return out;
}

namespace internal {

namespace {

constexpr size_t kMaxEvents = 100;

std::string PlanKey(std::string_view p, std::string_view e, std::string_view flag) { return StrCat("rp/", p, "/", e, "/", flag); }
std::string ActiveKey(std::string_view p, std::string_view e, std::string_view flag) {
  return StrCat("rpa/", p, "/", e, "/", flag);
}

absl::StatusOr<ReleasePlan> PlanFromJson(const Value& v) {
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
  cs.comment = StrCat("release plan ", plan.id, ": ", what);
  cs.items.push_back({ItemKind::kFlag, plan.flag, f.version, rules::EncodeFlag(f), false});
  int64_t now = Now();
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
  });
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

absl::StatusOr<ReleasePlan> RocksStore::StartReleasePlan(const ReleasePlan& spec, const Actor& actor) {
  RETURN_IF_ERROR(CheckWritable());
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
  ASSIGN_OR_RETURN(ReleasePlan p, Decoded(PlanFromJson(*json), kAutomation, key));
  return std::optional<ReleasePlan>(std::move(p));
}

absl::StatusOr<ReleasePlan> RocksStore::ActOnReleasePlan(std::string_view project, std::string_view env,
                                                         std::string_view flag, PlanAction action, const Actor& actor,
                                                         std::string_view reason) {
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

absl::StatusOr<std::vector<ReleasePlan>> RocksStore::RunReleasePlans() {
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
