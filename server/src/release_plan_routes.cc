// Release plans (DESIGN §9; storage/src/release_plans.cc): one per flag and environment.
//   GET  /api/v1/projects/{p}/environments/{e}/flags/{f}/release-plan            the latest plan
//   POST /api/v1/projects/{p}/environments/{e}/flags/{f}/release-plan            start one
//        {controlVariation, treatmentVariation, rule?, stages, guards?, alpha?}
//   POST /api/v1/projects/{p}/environments/{e}/flags/{f}/release-plan/{action}   pause, resume,
//        abort, rollback, complete ({"reason"} optional)

#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/json_fields.h"
#include "gonfalon/rules/str_cat.h"
#include "responses.h"
#include "routes.h"

namespace gonfalon::server {

using rules::Value;

namespace {

absl::StatusOr<storage::ReleasePlan> ReadPlan(const Value& body) {
  for (const auto& [name, value] : body.as_object()) {
    if (name != "controlVariation" && name != "treatmentVariation" && name != "rule" && name != "stages" && name != "guards" &&
        name != "alpha") {
      return rules::InvalidField(name, "unknown field (controlVariation, treatmentVariation, rule, stages, guards, alpha)");
    }
  }
  storage::ReleasePlan plan;
  std::optional<int> control, treatment;
  RETURN_IF_ERROR(rules::GetOptInt(body, "controlVariation", "", control));
  RETURN_IF_ERROR(rules::GetOptInt(body, "treatmentVariation", "", treatment));
  if (!control.has_value()) return rules::InvalidField("controlVariation", "is required");
  if (!treatment.has_value()) return rules::InvalidField("treatmentVariation", "is required");
  plan.control = *control;
  plan.treatment = *treatment;
  RETURN_IF_ERROR(rules::GetString(body, "rule", "", plan.rule));
  ASSIGN_OR_RETURN(const rules::Array* stages, rules::GetArray(body, "stages", ""));
  if (stages == nullptr) return rules::InvalidField("stages", "is required");
  for (size_t i = 0; i < stages->size(); ++i) {
    const Value& s = (*stages)[i];
    std::string path = StrCat("stages[", i, "]");
    if (!s.is_object()) return rules::InvalidField(StrCat("stages[", i, "]"), "expected {weight, minDurationMs, minUnits}");
    storage::PlanStage st;
    std::optional<int> weight;
    RETURN_IF_ERROR(rules::GetOptInt(s, "weight", path, weight));
    if (!weight.has_value()) return rules::InvalidField(StrCat(path, ".weight"), "is required (thousandths of a percent)");
    st.weight = *weight;
    RETURN_IF_ERROR(rules::GetInt64(s, "minDurationMs", path, st.min_duration_ms));
    RETURN_IF_ERROR(rules::GetInt64(s, "minUnits", path, st.min_units));
    plan.stages.push_back(st);
  }
  ASSIGN_OR_RETURN(const rules::Array* guards, rules::GetArray(body, "guards", ""));
  if (guards != nullptr) {
    for (size_t i = 0; i < guards->size(); ++i) {
      ASSIGN_OR_RETURN(storage::PlanGuard g, storage::PlanGuardFromJson((*guards)[i], StrCat("guards[", i, "]")));
      plan.guards.push_back(std::move(g));
    }
  }
  const Value* alpha = nullptr;
  RETURN_IF_ERROR(rules::GetMember(body, "alpha", "", Value::Type::kNumber, alpha));
  if (alpha != nullptr) plan.alpha = alpha->as_number();
  return plan;
}

}  // namespace

void AddReleasePlanRoutes(Router& router, Services& s) {
  storage::Store& store = s.store;
  Scheduler& scheduler = s.scheduler;
  WebhookDispatcher& webhooks = s.webhooks;
  const std::string base = "/api/v1/projects/{p}/environments/{e}/flags/{f}/release-plan";

  router.Add("GET", base, Access::kAdmin, [&store, &scheduler](const Call& c) {
    TRY_ASSIGN(std::optional<storage::ReleasePlan> plan, store.GetReleasePlan(c.Param("p"), c.Param("e"), c.Param("f")));
    if (!plan.has_value()) return ErrorResponse(404, "not_found", StrCat("flag \"", c.Param("f"), "\" has no release plan"));
    Value out = storage::ReleasePlanToJson(*plan);
    if (plan->status == storage::PlanStatus::kActive) {
      Value status = scheduler.GuardStatus(plan->id);  // null until first judged
      if (!status.is_null()) out.Set("guardStatus", std::move(status));
    }
    return Json(200, out);
  });

  router.Add("POST", base, Access::kAdmin, [&store, &scheduler, &webhooks, &s](const Call& c) {
    TRY_ASSIGN(Value body, ObjectBody(c.req));
    TRY_ASSIGN(storage::ReleasePlan spec, ReadPlan(body));
    spec.project = c.Param("p");
    spec.environment = c.Param("e");
    spec.flag = c.Param("f");
    absl::StatusOr<storage::ReleasePlan> started = store.StartReleasePlan(spec, ActorOf(*c.key));
    if (storage::IsApprovalRequired(started.status())) {
      return OpenChangeRequestResponse(s, c, {.kind = storage::RequestKind::kReleasePlan, .plan = spec});
    }
    TRY_ASSIGN(storage::ReleasePlan plan, std::move(started));
    webhooks.Publish("release_plan.started", plan.project, plan.environment, storage::ReleasePlanToJson(plan));
    scheduler.Wake();
    return Json(201, storage::ReleasePlanToJson(plan));
  });

  router.Add("POST", base + "/{action}", Access::kAdmin, [&store, &scheduler, &webhooks](const Call& c) {
    const std::string& name = c.Param("action");
    storage::PlanAction action;
    std::string_view event;
    if (name == "pause") {
      action = storage::PlanAction::kPause, event = "release_plan.paused";
    } else if (name == "resume") {
      action = storage::PlanAction::kResume, event = "release_plan.resumed";
    } else if (name == "abort") {
      action = storage::PlanAction::kAbort, event = "release_plan.aborted";
    } else if (name == "rollback") {
      action = storage::PlanAction::kRollBack, event = "release_plan.rolled_back";
    } else if (name == "complete") {
      action = storage::PlanAction::kComplete, event = "release_plan.completed";
    } else {
      return ErrorResponse(404, "not_found", StrCat("no action \"", name, "\" (pause, resume, abort, rollback, complete)"));
    }
    std::string reason;
    if (!c.req.body.empty()) {
      TRY_ASSIGN(Value body, ObjectBody(c.req));
      const Value* r;
      TRY(Want(body, "reason", Value::Type::kString, &r));
      if (r != nullptr) reason = r->as_string();
    }
    TRY_ASSIGN(storage::ReleasePlan plan,
               store.ActOnReleasePlan(c.Param("p"), c.Param("e"), c.Param("f"), action, ActorOf(*c.key), reason));
    webhooks.Publish(event, plan.project, plan.environment, storage::ReleasePlanToJson(plan));
    scheduler.Wake();
    return Json(200, storage::ReleasePlanToJson(plan));
  });
}

}  // namespace gonfalon::server
