// Scheduled changes: a change set applied later, once, by the scheduler (scheduler.h).
//   POST   /api/v1/projects/{p}/environments/{e}/scheduled-changes        schedule
//   GET    /api/v1/projects/{p}/environments/{e}/scheduled-changes        list (?status=)
//   GET    /api/v1/projects/{p}/environments/{e}/scheduled-changes/{id}   read
//   PATCH  /api/v1/projects/{p}/environments/{e}/scheduled-changes/{id}   edit (If-Match: version)
//   DELETE /api/v1/projects/{p}/environments/{e}/scheduled-changes/{id}   cancel (kept, "canceled")

#include "gonfalon/rules/dates.h"
#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/str_cat.h"
#include "responses.h"
#include "routes.h"
#include "wall_clock.h"

namespace gonfalon::server {

using rules::Array;
using rules::Value;

namespace {

// A change may be scheduled up to this far in the past (it then runs at once): clocks differ.
constexpr int64_t kPastSlackMs = 60'000;

// `executeAt`: RFC 3339 or Unix milliseconds, not more than a minute ago.
absl::StatusOr<int64_t> ExecuteAt(const Value& v) {
  std::optional<double> ms;
  if (v.is_number()) ms = v.as_number();
  if (v.is_string()) ms = rules::ParseRfc3339Millis(v.as_string());
  if (!ms.has_value() || !(*ms > 0 && *ms < 9.2e15)) {
    return rules::InvalidField("executeAt", "expected an RFC 3339 date-time or Unix milliseconds");
  }
  auto at = static_cast<int64_t>(*ms);
  if (at < NowMs() - kPastSlackMs) return rules::InvalidField("executeAt", "is in the past");
  return at;
}

Response Record(int status, const storage::ScheduledChange& c) { return Json(status, storage::ScheduledChangeToJson(c)); }

}  // namespace

void AddScheduleRoutes(Router& router, Services& s) {
  storage::Store& store = s.store;
  Scheduler& scheduler = s.scheduler;
  const std::string base = "/api/v1/projects/{p}/environments/{e}/scheduled-changes";

  router.Add("POST", base, Access::kAdmin, [&store, &scheduler, &s](const Call& c) {
    TRY_ASSIGN(Value body, ObjectBody(c.req));
    storage::ScheduledChange spec;
    spec.project = c.Param("p");
    spec.environment = c.Param("e");
    const Value* at = body.Find("executeAt");
    if (at == nullptr || at->is_null()) return ErrorResponse(400, "invalid_argument", "executeAt: is required", "executeAt");
    TRY_ASSIGN(spec.execute_at_ms, ExecuteAt(*at));
    const Value* v;
    TRY(Want(body, "comment", Value::Type::kString, &v));
    if (v) spec.comment = v->as_string();
    TRY(Want(body, "ignoreConflicts", Value::Type::kBool, &v));
    spec.ignore_conflicts = v != nullptr && v->as_bool();
    TRY(Want(body, "items", Value::Type::kArray, &v));
    if (v == nullptr) return ErrorResponse(400, "invalid_argument", "items: is required", "items");
    TRY(ParseChangeItems(*v, spec.items));
    absl::StatusOr<storage::ScheduledChange> done = store.ScheduleChange(spec, ActorOf(*c.key));
    if (storage::IsApprovalRequired(done.status())) {
      return OpenChangeRequestResponse(s, c, {.kind = storage::RequestKind::kSchedule, .schedule = spec, .comment = spec.comment});
    }
    TRY_ASSIGN(storage::ScheduledChange made, std::move(done));
    scheduler.Wake();
    return Record(201, made);
  });

  router.Add("GET", base, Access::kAdmin, [&store](const Call& c) {
    const std::string* status = c.req.Query("status");
    if (status != nullptr && *status != "scheduled" && *status != "applied" && *status != "failed" && *status != "canceled") {
      return ErrorResponse(400, "invalid_argument", "status: expected scheduled, applied, failed or canceled", "status");
    }
    TRY_ASSIGN(std::vector<storage::ScheduledChange> all, store.ListScheduledChanges(c.Param("p"), c.Param("e")));
    Array out;
    for (const auto& sc : all) {
      if (status == nullptr || storage::ScheduleStatusName(sc.status) == *status) out.push_back(storage::ScheduledChangeToJson(sc));
    }
    return Json(200, Items(std::move(out)));
  });

  router.Add("GET", base + "/{id}", Access::kAdmin, [&store](const Call& c) {
    TRY_ASSIGN(storage::ScheduledChange sc, store.GetScheduledChange(c.Param("p"), c.Param("e"), c.Param("id")));
    return Record(200, sc);
  });

  router.Add("PATCH", base + "/{id}", Access::kAdmin, [&store, &scheduler](const Call& c) {
    TRY_ASSIGN(Value body, ObjectBody(c.req));
    storage::ScheduleEdit edit;
    TRY_ASSIGN(edit.expect_version, IfMatch(c.req));
    if (const Value* at = body.Find("executeAt"); at != nullptr && !at->is_null()) {
      TRY_ASSIGN(int64_t ms, ExecuteAt(*at));
      edit.execute_at_ms = ms;
    }
    const Value* v;
    TRY(Want(body, "comment", Value::Type::kString, &v));
    if (v) edit.comment = v->as_string();
    TRY(Want(body, "ignoreConflicts", Value::Type::kBool, &v));
    if (v) edit.ignore_conflicts = v->as_bool();
    TRY(Want(body, "items", Value::Type::kArray, &v));
    if (v) {
      std::vector<storage::ItemChange> items;
      TRY(ParseChangeItems(*v, items));
      edit.items = std::move(items);
    }
    for (const auto& [name, value] : body.as_object()) {
      if (name != "executeAt" && name != "comment" && name != "ignoreConflicts" && name != "items") {
        return ErrorResponse(400, "invalid_argument", StrCat(name, ": cannot be edited (executeAt, comment, ignoreConflicts, items can)"), name);
      }
    }
    absl::StatusOr<storage::ScheduledChange> sc =
        store.EditScheduledChange(c.Param("p"), c.Param("e"), c.Param("id"), edit, ActorOf(*c.key));
    if (!sc.ok()) return ErrorResponse(sc.status(), /*if_match=*/edit.expect_version.has_value());
    scheduler.Wake();
    return Record(200, *sc);
  });

  router.Add("DELETE", base + "/{id}", Access::kAdmin, [&store, &scheduler](const Call& c) {
    TRY_ASSIGN(storage::ScheduledChange sc, store.CancelScheduledChange(c.Param("p"), c.Param("e"), c.Param("id"), ActorOf(*c.key)));
    scheduler.Wake();
    return Record(200, sc);
  });
}

}  // namespace gonfalon::server
