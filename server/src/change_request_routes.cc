// Change requests (DESIGN §9; storage/src/change_requests.cc). In an environment that requires
// approvals, the write routes (change sets, flag and segment edits, scheduled changes, release
// plans) answer 202 with a pending request instead of applying (OpenChangeRequestResponse).
//   GET  /api/v1/projects/{p}/environments/{e}/change-requests[?status=]    newest first
//   GET  /api/v1/projects/{p}/environments/{e}/change-requests/{id}
//   POST /api/v1/projects/{p}/environments/{e}/change-requests/{id}/{approve|decline|comment}
//        {"comment"?}
//   POST /api/v1/projects/{p}/environments/{e}/change-requests/{id}/apply   an approved one
// The environment's approval settings are in PATCH …/environments/{e} ({"approvals":{…}}).

#include "gonfalon/rules/str_cat.h"
#include "responses.h"
#include "routes.h"

namespace gonfalon::server {

using rules::Value;

namespace {

// Webhooks and the scheduler hear of what a review or an apply did (an explicit apply of an
// approved request announces only its outcome: its approval was announced when it came).
void Announce(Services& s, const storage::ChangeRequest& r, bool explicit_apply) {
  Value body = storage::ChangeRequestToJson(r);
  switch (r.status) {
    case storage::RequestStatus::kPending:
      return;
    case storage::RequestStatus::kApproved:
      s.webhooks.Publish("change_request.approved", r.project, r.environment, body);
      return;
    case storage::RequestStatus::kDeclined:
      s.webhooks.Publish("change_request.declined", r.project, r.environment, body);
      return;
    case storage::RequestStatus::kApplied:
    case storage::RequestStatus::kFailed:
      if (!explicit_apply) s.webhooks.Publish("change_request.approved", r.project, r.environment, body);
      s.webhooks.Publish(r.status == storage::RequestStatus::kApplied ? "change_request.applied" : "change_request.failed",
                         r.project, r.environment, body);
      if (r.status == storage::RequestStatus::kApplied && r.kind != storage::RequestKind::kChanges) s.scheduler.Wake();
      return;
  }
}

}  // namespace

Response OpenChangeRequestResponse(Services& s, const Call& c, storage::ChangeRequest spec) {
  if (spec.project.empty()) spec.project = c.Param("p");
  if (spec.environment.empty()) spec.environment = c.Param("e");
  if (spec.comment.empty()) spec.comment = Comment(c.req);
  if (const std::string* apply = c.req.Query("autoApply"); apply != nullptr) spec.auto_apply = *apply != "false";
  TRY_ASSIGN(storage::ChangeRequest r, s.store.OpenChangeRequest(spec, ActorOf(*c.key)));
  Value body = storage::ChangeRequestToJson(r);
  s.webhooks.Publish("change_request.opened", r.project, r.environment, body);
  Response out = Json(202, body);
  out.headers.emplace_back("Location", StrCat("/api/v1/projects/", r.project, "/environments/", r.environment, "/change-requests/", r.id));
  return out;
}

void AddChangeRequestRoutes(Router& router, Services& s) {
  storage::Store& store = s.store;
  const std::string base = "/api/v1/projects/{p}/environments/{e}/change-requests";

  router.Add("GET", base, Access::kAdmin, [&store](const Call& c) {
    std::optional<storage::RequestStatus> status;
    if (const std::string* q = c.req.Query("status"); q != nullptr) {
      status = storage::ParseRequestStatus(*q);
      if (!status.has_value()) {
        return ErrorResponse(400, "invalid_argument", "status: expected pending, approved, applied, declined or failed", "status");
      }
    }
    TRY_ASSIGN(std::vector<storage::ChangeRequest> all, store.ListChangeRequests(c.Param("p"), c.Param("e"), status));
    rules::Array out;
    for (const auto& r : all) out.push_back(storage::ChangeRequestToJson(r));
    return Json(200, Items(std::move(out)));
  });

  router.Add("GET", base + "/{id}", Access::kAdmin, [&store](const Call& c) {
    TRY_ASSIGN(storage::ChangeRequest r, store.GetChangeRequest(c.Param("p"), c.Param("e"), c.Param("id")));
    return Json(200, storage::ChangeRequestToJson(r));
  });

  router.Add("POST", base + "/{id}/{action}", Access::kAdmin, [&s](const Call& c) {
    const std::string& action = c.Param("action");
    std::string comment;
    if (!c.req.body.empty()) {
      TRY_ASSIGN(Value body, ObjectBody(c.req));
      const Value* v;
      TRY(Want(body, "comment", Value::Type::kString, &v));
      if (v != nullptr) comment = v->as_string();
    }
    absl::StatusOr<storage::ChangeRequest> r;
    if (action == "apply") {
      r = s.store.ApplyChangeRequest(c.Param("p"), c.Param("e"), c.Param("id"), ActorOf(*c.key));
    } else if (action == "approve" || action == "decline" || action == "comment") {
      storage::Review review = action == "approve"   ? storage::Review::kApprove
                               : action == "decline" ? storage::Review::kDecline
                                                     : storage::Review::kComment;
      if (review == storage::Review::kComment && comment.empty()) {
        return ErrorResponse(400, "invalid_argument", "comment: is required", "comment");
      }
      r = s.store.ReviewChangeRequest(c.Param("p"), c.Param("e"), c.Param("id"), review, ActorOf(*c.key), comment);
    } else {
      return ErrorResponse(404, "not_found", StrCat("no action \"", action, "\" (approve, decline, comment, apply)"));
    }
    if (!r.ok()) return ErrorResponse(r.status());
    if (action != "comment") Announce(s, *r, action == "apply");
    return Json(200, storage::ChangeRequestToJson(*r));
  });
}

}  // namespace gonfalon::server
