// Change requests (DESIGN §9), in the automation family:
//   cr/{p}/{e}/{id}   the request, with its reviews and outcome
// An environment with requiredApprovals > 0 refuses unapproved writes (ApprovalRequired, below,
// from Apply, ScheduleChange and StartReleasePlan); the API opens a request instead. A
// request's change set is applied as its author, in one batch with the request's new status.

#include <algorithm>

#include "absl/strings/cord.h"
#include "gonfalon/rules/json_fields.h"
#include "records.h"
#include "rocks_store.h"

namespace gonfalon::storage {

namespace {
constexpr char kApprovalMark[] = "gonfalon.dev/approval-required";
}  // namespace

bool IsApprovalRequired(const absl::Status& s) {
  return s.code() == absl::StatusCode::kFailedPrecondition && s.GetPayload(kApprovalMark).has_value();
}

std::string_view RequestKindName(RequestKind k) {
  switch (k) {
    case RequestKind::kChanges:
      return "changes";
    case RequestKind::kSchedule:
      return "schedule";
    case RequestKind::kReleasePlan:
      return "releasePlan";
    case RequestKind::kApprovalSettings:
      return "approvalSettings";
  }
  return "changes";
}

std::string_view RequestStatusName(RequestStatus s) {
  switch (s) {
    case RequestStatus::kPending:
      return "pending";
    case RequestStatus::kApproved:
      return "approved";
    case RequestStatus::kApplied:
      return "applied";
    case RequestStatus::kDeclined:
      return "declined";
    case RequestStatus::kFailed:
      return "failed";
  }
  return "pending";
}

std::optional<RequestStatus> ParseRequestStatus(std::string_view name) {
  for (RequestStatus s : {RequestStatus::kPending, RequestStatus::kApproved, RequestStatus::kApplied, RequestStatus::kDeclined,
                          RequestStatus::kFailed}) {
    if (name == RequestStatusName(s)) return s;
  }
  return std::nullopt;
}

rules::Value ChangeRequestToJson(const ChangeRequest& r) {
  using rules::Object;
  using rules::Value;
  rules::Array reviews;
  for (const RequestReview& v : r.reviews) {
    reviews.push_back(Value(Object{{"verdict", Value(v.verdict)},
                                   {"actor", Value(v.actor)},
                                   {"person", Value(v.person)},
                                   {"timeMs", Value(v.time_ms)},
                                   {"comment", Value(v.comment)}}));
  }
  int64_t approvals = std::count_if(r.reviews.begin(), r.reviews.end(), [](const RequestReview& v) { return v.verdict == "approve"; });
  Value out(Object{{"id", Value(r.id)},
                   {"project", Value(r.project)},
                   {"environment", Value(r.environment)},
                   {"kind", Value(RequestKindName(r.kind))},
                   {"comment", Value(r.comment)},
                   {"autoApply", Value(r.auto_apply)},
                   {"createdBy", Value(r.created_by)},
                   {"person", Value(r.person)},
                   {"createdMs", Value(r.created_ms)},
                   {"updatedMs", Value(r.updated_ms)},
                   {"version", Value(r.version)},
                   {"status", Value(RequestStatusName(r.status))},
                   {"requiredApprovals", Value(static_cast<int64_t>(r.required_approvals))},
                   {"approvals", Value(approvals)},
                   {"reviews", Value(std::move(reviews))}});
  if (r.kind == RequestKind::kChanges) out.Set("items", internal::ItemChangesToJson(r.items));
  if (r.schedule.has_value()) out.Set("schedule", ScheduledChangeToJson(*r.schedule));
  if (r.plan.has_value()) out.Set("plan", ReleasePlanToJson(*r.plan));
  if (r.settings.has_value()) {
    out.Set("approvalSettings", Value(Object{{"requiredApprovals", Value(static_cast<int64_t>(r.settings->required_approvals))},
                                             {"allowSelfApproval", Value(r.settings->allow_self_approval)}}));
  }
  if (!r.reason.empty()) out.Set("reason", Value(r.reason));
  if (r.sequence != 0) out.Set("sequence", Value(r.sequence));
  if (!r.result_id.empty()) out.Set("resultId", Value(r.result_id));
  return out;
}

namespace internal {

absl::Status ApprovalRequired(const Environment& e) {
  absl::Status s = absl::FailedPreconditionError(
      StrCat("environment \"", e.key, "\" requires ", e.required_approvals, e.required_approvals == 1 ? " approval" : " approvals",
             ": the change waits in a change request"));
  s.SetPayload(kApprovalMark, absl::Cord("1"));
  return s;
}

namespace {

std::string RequestKey(std::string_view p, std::string_view e, std::string_view id) { return StrCat("cr/", p, "/", e, "/", id); }

absl::StatusOr<ChangeRequest> RequestFromJson(const Value& v) {
  ChangeRequest r;
  std::string kind, status;
  int64_t required = 0;
  RETURN_IF_ERROR(rules::GetString(v, "id", "", r.id));
  RETURN_IF_ERROR(rules::GetString(v, "project", "", r.project));
  RETURN_IF_ERROR(rules::GetString(v, "environment", "", r.environment));
  RETURN_IF_ERROR(rules::GetString(v, "kind", "", kind));
  RETURN_IF_ERROR(rules::GetString(v, "comment", "", r.comment));
  RETURN_IF_ERROR(rules::GetBool(v, "autoApply", "", r.auto_apply));
  RETURN_IF_ERROR(rules::GetString(v, "createdBy", "", r.created_by));
  RETURN_IF_ERROR(rules::GetString(v, "person", "", r.person));
  RETURN_IF_ERROR(rules::GetInt64(v, "createdMs", "", r.created_ms));
  RETURN_IF_ERROR(rules::GetInt64(v, "updatedMs", "", r.updated_ms));
  RETURN_IF_ERROR(rules::GetInt64(v, "version", "", r.version));
  RETURN_IF_ERROR(rules::GetString(v, "status", "", status));
  RETURN_IF_ERROR(rules::GetInt64(v, "requiredApprovals", "", required));
  RETURN_IF_ERROR(rules::GetString(v, "reason", "", r.reason));
  RETURN_IF_ERROR(rules::GetInt64(v, "sequence", "", r.sequence));
  RETURN_IF_ERROR(rules::GetString(v, "resultId", "", r.result_id));
  r.required_approvals = static_cast<int>(required);
  bool known = false;
  for (RequestKind k : {RequestKind::kChanges, RequestKind::kSchedule, RequestKind::kReleasePlan, RequestKind::kApprovalSettings}) {
    if (kind == RequestKindName(k)) r.kind = k, known = true;
  }
  if (const Value* a = v.Find("approvalSettings"); a != nullptr && a->is_object()) {
    ChangeRequest::Settings settings;
    int64_t count = 0;
    RETURN_IF_ERROR(rules::GetInt64(*a, "requiredApprovals", "approvalSettings", count));
    RETURN_IF_ERROR(rules::GetBool(*a, "allowSelfApproval", "approvalSettings", settings.allow_self_approval));
    settings.required_approvals = static_cast<int>(count);
    r.settings = settings;
  }
  std::optional<RequestStatus> parsed = ParseRequestStatus(status);
  if (!known || !parsed.has_value()) return rules::InvalidField("kind", StrCat("unknown kind or status \"", kind, "\"/\"", status, "\""));
  r.status = *parsed;
  ASSIGN_OR_RETURN(r.items, ItemChangesFromJson(v));
  if (const Value* s = v.Find("schedule"); s != nullptr && s->is_object()) {
    ASSIGN_OR_RETURN(ScheduledChange c, ScheduledChangeFromJson(*s));
    r.schedule = std::move(c);
  }
  if (const Value* p = v.Find("plan"); p != nullptr && p->is_object()) {
    ASSIGN_OR_RETURN(ReleasePlan plan, ReleasePlanFromJson(*p));
    r.plan = std::move(plan);
  }
  ASSIGN_OR_RETURN(const rules::Array* reviews, rules::GetArray(v, "reviews", ""));
  if (reviews != nullptr) {
    for (const Value& rv : *reviews) {
      RequestReview review;
      RETURN_IF_ERROR(rules::GetString(rv, "verdict", "reviews", review.verdict));
      RETURN_IF_ERROR(rules::GetString(rv, "actor", "reviews", review.actor));
      RETURN_IF_ERROR(rules::GetString(rv, "person", "reviews", review.person));
      RETURN_IF_ERROR(rules::GetInt64(rv, "timeMs", "reviews", review.time_ms));
      RETURN_IF_ERROR(rules::GetString(rv, "comment", "reviews", review.comment));
      r.reviews.push_back(std::move(review));
    }
  }
  return r;
}

std::string PersonOf(const Actor& a) { return a.person.empty() ? a.id : a.person; }

// Errors of storage itself: the request stays approved, to be applied again.
bool StorageFailure(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kResourceExhausted:
      return true;
    default:
      return false;
  }
}

}  // namespace

absl::Status RocksStore::WriteRequest(ChangeRequest& r, std::vector<WriteOp>* ops) {
  r.updated_ms = Now();
  ++r.version;
  WriteOp op = Put(kAutomation, RequestKey(r.project, r.environment, r.id), ToJson(ChangeRequestToJson(r)));
  if (ops != nullptr) {
    ops->push_back(std::move(op));
    return absl::OkStatus();
  }
  return WriteNow({std::move(op)});
}

absl::StatusOr<ChangeRequest> RocksStore::OpenChangeRequest(const ChangeRequest& spec, const Actor& actor) {
  RETURN_IF_ERROR(CheckWritable());
  ASSIGN_OR_RETURN(Environment env, GetEnvironment(spec.project, spec.environment));
  if (env.required_approvals <= 0) {
    return absl::FailedPreconditionError(StrCat("environment \"", env.key, "\" requires no approval: write the change directly"));
  }
  ChangeRequest r = spec;
  switch (r.kind) {
    case RequestKind::kChanges:
      if (r.items.empty()) return rules::InvalidField("items", "a change request needs at least one item");
      RETURN_IF_ERROR(CheckItemShapes(r.items));
      RETURN_IF_ERROR(PrepareSchedule(r.project, r.environment, r.items));  // validated, versions taken
      break;
    case RequestKind::kSchedule:
      if (!r.schedule.has_value()) return absl::InvalidArgumentError("a schedule request needs the scheduled change");
      if (r.schedule->execute_at_ms <= 0) return rules::InvalidField("executeAt", "is required");
      r.schedule->project = r.project;
      r.schedule->environment = r.environment;
      RETURN_IF_ERROR(PrepareSchedule(r.project, r.environment, r.schedule->items));
      break;
    case RequestKind::kReleasePlan:
      if (!r.plan.has_value()) return absl::InvalidArgumentError("a release plan request needs the plan");
      r.plan->project = r.project;
      r.plan->environment = r.environment;
      RETURN_IF_ERROR(CheckReleasePlan(*r.plan));
      break;
    case RequestKind::kApprovalSettings:
      if (!r.settings.has_value()) return absl::InvalidArgumentError("an approval settings request needs the settings");
      break;
  }
  ASSIGN_OR_RETURN(std::string hex, RandomHex(6));
  r.id = StrCat("cr_", hex);
  r.created_by = actor.id;
  r.person = PersonOf(actor);
  r.created_ms = Now();
  r.version = 0;
  r.status = RequestStatus::kPending;
  r.required_approvals = env.required_approvals;
  r.reviews.clear();
  r.reason.clear();
  r.sequence = 0;
  r.result_id.clear();
  std::lock_guard<std::mutex> l(requests_mu_);
  RETURN_IF_ERROR(WriteRequest(r, nullptr));
  return r;
}

absl::StatusOr<ChangeRequest> RocksStore::GetChangeRequest(std::string_view project, std::string_view env, std::string_view id) {
  std::string key = RequestKey(project, env, id);
  ASSIGN_OR_RETURN(auto json, GetJson(kAutomation, key));
  if (!json.has_value()) {
    RETURN_IF_ERROR(GetEnvironment(project, env).status());
    return absl::NotFoundError(StrCat("change request \"", id, "\" does not exist in ", project, "/", env));
  }
  return Decoded(RequestFromJson(*json), kAutomation, key);
}

absl::StatusOr<std::vector<ChangeRequest>> RocksStore::ListChangeRequests(std::string_view project, std::string_view env,
                                                                          std::optional<RequestStatus> status) {
  RETURN_IF_ERROR(GetEnvironment(project, env).status());
  ASSIGN_OR_RETURN(std::vector<ChangeRequest> all,
                   ScanDecoded<ChangeRequest>(kAutomation, StrCat("cr/", project, "/", env, "/"), RequestFromJson));
  if (status.has_value()) {
    all.erase(std::remove_if(all.begin(), all.end(), [&](const ChangeRequest& r) { return r.status != *status; }), all.end());
  }
  std::stable_sort(all.begin(), all.end(), [](const ChangeRequest& a, const ChangeRequest& b) { return a.created_ms > b.created_ms; });
  return all;
}

absl::StatusOr<ChangeRequest> RocksStore::ApplyApproved(ChangeRequest r) {
  std::string approvers;
  for (const RequestReview& v : r.reviews) {
    if (v.verdict == "approve") approvers = approvers.empty() ? v.person : StrCat(approvers, ", ", v.person);
  }
  Actor as{r.created_by, r.person, true};  // the author's change, approved
  std::string note = StrCat("change request ", r.id, ", approved by ", approvers);
  absl::Status outcome;
  switch (r.kind) {
    case RequestKind::kChanges: {
      ChangeSet cs;
      cs.project = r.project;
      cs.environment = r.environment;
      cs.items = r.items;
      cs.actor = as;
      cs.comment = r.comment.empty() ? note : StrCat(r.comment, " (", note, ")");
      ChangeRequest done = r;
      absl::StatusOr<AppliedChangeSet> applied = ApplyWith(cs, [&](const AppliedChangeSet& a, std::vector<WriteOp>& ops) {
        done.status = RequestStatus::kApplied;
        done.sequence = a.sequence;
        (void)WriteRequest(done, &ops);  // with the change set, in one batch
      });
      if (applied.ok() && !applied->unchanged) return done;
      if (applied.ok()) {  // already as written: nothing to apply, the request is done
        r.status = RequestStatus::kApplied;
        r.sequence = applied->sequence;
        RETURN_IF_ERROR(WriteRequest(r, nullptr));
        return r;
      }
      outcome = applied.status();
      break;
    }
    case RequestKind::kSchedule: {
      ScheduledChange c = *r.schedule;
      c.comment = c.comment.empty() ? note : StrCat(c.comment, " (", note, ")");
      absl::StatusOr<ScheduledChange> made = ScheduleChange(c, as);
      if (made.ok()) r.result_id = made->id;
      outcome = made.status();
      break;
    }
    case RequestKind::kReleasePlan: {
      absl::StatusOr<ReleasePlan> started = StartReleasePlan(*r.plan, as);
      if (started.ok()) r.result_id = started->id;
      outcome = started.status();
      break;
    }
    case RequestKind::kApprovalSettings: {
      absl::StatusOr<Environment> env = GetEnvironment(r.project, r.environment);
      if (env.ok()) {
        env->required_approvals = r.settings->required_approvals;
        env->allow_self_approval = r.settings->allow_self_approval;
        env = UpdateEnvironment(r.project, *env, 0, as);
      }
      outcome = env.status();
      break;
    }
  }
  if (!outcome.ok() && StorageFailure(outcome)) return outcome;  // stays approved
  r.status = outcome.ok() ? RequestStatus::kApplied : RequestStatus::kFailed;
  if (!outcome.ok()) r.reason = std::string(outcome.message());
  RETURN_IF_ERROR(WriteRequest(r, nullptr));
  return r;
}

absl::StatusOr<ChangeRequest> RocksStore::ReviewChangeRequest(std::string_view project, std::string_view env_key, std::string_view id,
                                                              Review review, const Actor& actor, std::string_view comment) {
  RETURN_IF_ERROR(CheckWritable());
  std::lock_guard<std::mutex> l(requests_mu_);
  ASSIGN_OR_RETURN(ChangeRequest r, GetChangeRequest(project, env_key, id));
  std::string_view verb = review == Review::kApprove ? "approve" : review == Review::kDecline ? "decline" : "comment";
  if (r.status != RequestStatus::kPending) {
    return absl::FailedPreconditionError(StrCat("change request ", r.id, " is ", RequestStatusName(r.status), ": cannot ", verb));
  }
  std::string person = PersonOf(actor);
  if (review == Review::kApprove) {
    ASSIGN_OR_RETURN(Environment env, GetEnvironment(project, env_key));
    if (person == r.person && !env.allow_self_approval) {
      return absl::PermissionDeniedError(StrCat(person, " opened change request ", r.id, ": another person must approve it"));
    }
    for (const RequestReview& v : r.reviews) {
      if (v.verdict == "approve" && v.person == person) {
        return absl::FailedPreconditionError(StrCat(person, " already approved change request ", r.id));
      }
    }
  }
  r.reviews.push_back({std::string(verb), actor.id, person, Now(), std::string(comment)});
  if (review == Review::kDecline) r.status = RequestStatus::kDeclined;
  int approvals = static_cast<int>(std::count_if(r.reviews.begin(), r.reviews.end(), [](const RequestReview& v) { return v.verdict == "approve"; }));
  if (review == Review::kApprove && approvals >= r.required_approvals) r.status = RequestStatus::kApproved;
  RETURN_IF_ERROR(WriteRequest(r, nullptr));
  if (r.status == RequestStatus::kApproved && r.auto_apply) return ApplyApproved(std::move(r));
  return r;
}

absl::StatusOr<ChangeRequest> RocksStore::ApplyChangeRequest(std::string_view project, std::string_view env, std::string_view id,
                                                             const Actor& actor) {
  RETURN_IF_ERROR(CheckWritable());
  std::lock_guard<std::mutex> l(requests_mu_);
  ASSIGN_OR_RETURN(ChangeRequest r, GetChangeRequest(project, env, id));
  if (r.status != RequestStatus::kApproved) {
    return absl::FailedPreconditionError(StrCat("change request ", r.id, " is ", RequestStatusName(r.status), ": only an approved one applies"));
  }
  return ApplyApproved(std::move(r));
}

}  // namespace internal
}  // namespace gonfalon::storage
