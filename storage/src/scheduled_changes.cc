// Scheduled changes (DESIGN §9): a change set stored with the time to apply it, applied once
// by RunDueScheduledChanges. Records live in the automation family: sc/{p}/{e}/{id} holds the
// change, and while it is scheduled due/{executeAt:016x}/{p}/{e}/{id} (empty) puts it in time
// order for the scheduler. Applying writes the change set, the record's new status and the
// removal of its due entry in one batch, so a change runs once even if the process dies
// around it.

#include <algorithm>
#include <ctime>

#include "gonfalon/rules/json_fields.h"
#include "rocks_store.h"

namespace gonfalon::storage {

std::string_view ScheduleStatusName(ScheduleStatus s) {
  switch (s) {
    case ScheduleStatus::kScheduled:
      return "scheduled";
    case ScheduleStatus::kApplied:
      return "applied";
    case ScheduleStatus::kFailed:
      return "failed";
    case ScheduleStatus::kCanceled:
      return "canceled";
  }
  return "scheduled";
}

namespace {

std::string Rfc3339(int64_t ms) {
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&secs, &utc);
  char buf[40];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms % 1000));
  return buf;
}

}  // namespace

rules::Value internal::ItemChangesToJson(const std::vector<ItemChange>& changes) {
  using rules::Object;
  using rules::Value;
  rules::Array items;
  for (const ItemChange& it : changes) {
    Value item(Object{{"kind", Value(ItemKindName(it.kind))}, {"key", Value(it.key)}});
    if (it.expect_version.has_value()) item.Set("expectVersion", Value(*it.expect_version));
    if (it.remove) item.Set("delete", Value(true));
    if (it.data.has_value()) item.Set("data", *it.data);
    items.push_back(std::move(item));
  }
  return Value(std::move(items));
}

rules::Value ScheduledChangeToJson(const ScheduledChange& c) {
  using rules::Object;
  using rules::Value;
  Value items = internal::ItemChangesToJson(c.items);
  Value out(Object{{"id", Value(c.id)},
                   {"project", Value(c.project)},
                   {"environment", Value(c.environment)},
                   {"executeAt", Value(Rfc3339(c.execute_at_ms))},
                   {"executeAtMs", Value(c.execute_at_ms)},
                   {"comment", Value(c.comment)},
                   {"items", std::move(items)},
                   {"ignoreConflicts", Value(c.ignore_conflicts)},
                   {"status", Value(ScheduleStatusName(c.status))},
                   {"createdBy", Value(c.created_by)},
                   {"createdMs", Value(c.created_ms)},
                   {"updatedMs", Value(c.updated_ms)},
                   {"version", Value(c.version)}});
  if (!c.edited_by.empty()) out.Set("editedBy", Value(c.edited_by));
  if (c.ran_ms != 0) {
    out.Set("ranMs", Value(c.ran_ms));
    out.Set("lateByMs", Value(std::max<int64_t>(0, c.ran_ms - c.execute_at_ms)));
  }
  if (c.sequence != 0) out.Set("sequence", Value(c.sequence));
  if (c.unchanged) out.Set("unchanged", Value(true));
  if (!c.reason.empty()) out.Set("reason", Value(c.reason));
  return out;
}

namespace internal {

namespace {

std::string RecordKey(std::string_view p, std::string_view e, std::string_view id) {
  return StrCat("sc/", p, "/", e, "/", id);
}
std::string DueKey(int64_t at, std::string_view p, std::string_view e, std::string_view id) {
  return StrCat("due/", SeqKey(std::max<int64_t>(at, 0)), "/", p, "/", e, "/", id);
}

}  // namespace

absl::StatusOr<std::vector<ItemChange>> ItemChangesFromJson(const Value& v) {
  std::vector<ItemChange> out;
  ASSIGN_OR_RETURN(const rules::Array* items, rules::GetArray(v, "items", ""));
  if (items == nullptr) return out;
  for (const Value& it : *items) {
    ItemChange ic;
    std::string kind;
    RETURN_IF_ERROR(rules::GetString(it, "kind", "items", kind));
    ic.kind = kind == "segment" ? ItemKind::kSegment : ItemKind::kFlag;
    RETURN_IF_ERROR(rules::GetString(it, "key", "items", ic.key));
    std::optional<int64_t> expect;
    RETURN_IF_ERROR(rules::GetOptInt64(it, "expectVersion", "items", expect));
    ic.expect_version = expect;
    RETURN_IF_ERROR(rules::GetBool(it, "delete", "items", ic.remove));
    if (const Value* d = it.Find("data"); d != nullptr && !d->is_null()) ic.data = *d;
    out.push_back(std::move(ic));
  }
  return out;
}

absl::StatusOr<ScheduledChange> ScheduledChangeFromJson(const Value& v) {
  ScheduledChange c;
  RETURN_IF_ERROR(rules::GetString(v, "id", "", c.id));
  RETURN_IF_ERROR(rules::GetString(v, "project", "", c.project));
  RETURN_IF_ERROR(rules::GetString(v, "environment", "", c.environment));
  RETURN_IF_ERROR(rules::GetInt64(v, "executeAtMs", "", c.execute_at_ms));
  RETURN_IF_ERROR(rules::GetString(v, "comment", "", c.comment));
  RETURN_IF_ERROR(rules::GetBool(v, "ignoreConflicts", "", c.ignore_conflicts));
  RETURN_IF_ERROR(rules::GetString(v, "createdBy", "", c.created_by));
  RETURN_IF_ERROR(rules::GetString(v, "editedBy", "", c.edited_by));
  RETURN_IF_ERROR(rules::GetInt64(v, "createdMs", "", c.created_ms));
  RETURN_IF_ERROR(rules::GetInt64(v, "updatedMs", "", c.updated_ms));
  RETURN_IF_ERROR(rules::GetInt64(v, "version", "", c.version));
  RETURN_IF_ERROR(rules::GetInt64(v, "ranMs", "", c.ran_ms));
  RETURN_IF_ERROR(rules::GetInt64(v, "sequence", "", c.sequence));
  RETURN_IF_ERROR(rules::GetBool(v, "unchanged", "", c.unchanged));
  RETURN_IF_ERROR(rules::GetString(v, "reason", "", c.reason));
  std::string status;
  RETURN_IF_ERROR(rules::GetString(v, "status", "", status));
  bool known = false;
  for (ScheduleStatus s : {ScheduleStatus::kScheduled, ScheduleStatus::kApplied, ScheduleStatus::kFailed, ScheduleStatus::kCanceled}) {
    if (status == ScheduleStatusName(s)) {
      c.status = s;
      known = true;
    }
  }
  if (!known) return rules::InvalidField("status", StrCat("unknown status \"", status, "\""));
  ASSIGN_OR_RETURN(c.items, ItemChangesFromJson(v));
  return c;
}

absl::Status RocksStore::PrepareSchedule(std::string_view project, std::string_view env_key, std::vector<ItemChange>& items) {
  RETURN_IF_ERROR(CheckItemShapes(items));
  EnvState& env = Env(project, env_key);
  std::lock_guard<std::mutex> l(env.mu);
  RETURN_IF_ERROR(RequireEnv(env, project, env_key));
  for (size_t i = 0; i < items.size(); ++i) {
    ItemChange& it = items[i];
    std::string path = StrCat("items[", i, "]");
    ASSIGN_OR_RETURN(auto before, ReadItem(env, it.kind, it.key));
    int64_t version = VersionOf(before);
    if (it.expect_version.has_value() && *it.expect_version != version) {
      return rules::WithFieldPrefix(VersionConflict(StrCat(ItemKindName(it.kind), " \"", it.key, "\""), version, *it.expect_version),
                                    StrCat(path, ".expectVersion"));
    }
    it.expect_version = version;
    if (it.remove && !before.has_value()) {
      return rules::FieldError(absl::StatusCode::kNotFound, path, StrCat("segment \"", it.key, "\" does not exist"));
    }
    if (it.data.has_value()) RETURN_IF_ERROR(PrepareUpsert(project, it, path, version + 1, before).status());
  }
  return absl::OkStatus();
}

absl::StatusOr<ScheduledChange> RocksStore::ScheduleChange(const ScheduledChange& spec, const Actor& actor) {
  RETURN_IF_ERROR(CheckWritable());
  if (spec.execute_at_ms <= 0) return rules::InvalidField("executeAt", "is required");
  ASSIGN_OR_RETURN(Environment env, GetEnvironment(spec.project, spec.environment));
  if (env.required_approvals > 0 && !actor.approved) return ApprovalRequired(env);
  ScheduledChange c = spec;
  RETURN_IF_ERROR(PrepareSchedule(c.project, c.environment, c.items));
  ASSIGN_OR_RETURN(std::string hex, RandomHex(6));
  c.id = StrCat("sc_", hex);
  c.created_by = actor.id;
  c.edited_by.clear();
  c.created_ms = c.updated_ms = Now();
  c.version = 1;
  c.status = ScheduleStatus::kScheduled;
  c.ran_ms = c.sequence = 0;
  c.unchanged = false;
  c.reason.clear();
  std::lock_guard<std::mutex> l(schedule_mu_);
  RETURN_IF_ERROR(WriteNow({Put(kAutomation, RecordKey(c.project, c.environment, c.id), ToJson(ScheduledChangeToJson(c))),
                            Put(kAutomation, DueKey(c.execute_at_ms, c.project, c.environment, c.id), "")}));
  return c;
}

absl::StatusOr<ScheduledChange> RocksStore::GetScheduledChange(std::string_view project, std::string_view env,
                                                               std::string_view id) {
  std::string key = RecordKey(project, env, id);
  ASSIGN_OR_RETURN(auto json, GetJson(kAutomation, key));
  if (!json.has_value()) {
    RETURN_IF_ERROR(GetEnvironment(project, env).status());
    return absl::NotFoundError(StrCat("scheduled change \"", id, "\" does not exist in ", project, "/", env));
  }
  return Decoded(ScheduledChangeFromJson(*json), kAutomation, key);
}

absl::StatusOr<std::vector<ScheduledChange>> RocksStore::ListScheduledChanges(std::string_view project,
                                                                              std::string_view env) {
  RETURN_IF_ERROR(GetEnvironment(project, env).status());
  ASSIGN_OR_RETURN(std::vector<ScheduledChange> all,
                   ScanDecoded<ScheduledChange>(kAutomation, StrCat("sc/", project, "/", env, "/"), ScheduledChangeFromJson));
  std::stable_sort(all.begin(), all.end(), [](const ScheduledChange& a, const ScheduledChange& b) {
    return a.execute_at_ms < b.execute_at_ms;
  });
  return all;
}

absl::StatusOr<ScheduledChange> RocksStore::EditScheduledChange(std::string_view project, std::string_view env,
                                                                std::string_view id, const ScheduleEdit& edit,
                                                                const Actor& actor) {
  RETURN_IF_ERROR(CheckWritable());
  if (edit.execute_at_ms.has_value() && *edit.execute_at_ms <= 0) return rules::InvalidField("executeAt", "is required");
  {
    // What it would apply changes: in an environment that requires approvals, cancel it and
    // schedule again through a change request.
    ASSIGN_OR_RETURN(Environment e, GetEnvironment(project, env));
    if (e.required_approvals > 0 && !actor.approved) return ApprovalRequired(e);
  }
  std::vector<ItemChange> items;
  if (edit.items.has_value()) {
    items = *edit.items;
    RETURN_IF_ERROR(PrepareSchedule(project, env, items));
  }
  std::lock_guard<std::mutex> l(schedule_mu_);
  ASSIGN_OR_RETURN(ScheduledChange c, GetScheduledChange(project, env, id));
  if (edit.expect_version.has_value() && *edit.expect_version != c.version) {
    return VersionConflict(StrCat("scheduled change \"", id, "\""), c.version, *edit.expect_version);
  }
  if (c.status != ScheduleStatus::kScheduled) {
    return absl::FailedPreconditionError(StrCat("scheduled change \"", id, "\" is ", ScheduleStatusName(c.status), ": only a scheduled one can be edited"));
  }
  std::vector<WriteOp> ops;
  if (edit.execute_at_ms.has_value() && *edit.execute_at_ms != c.execute_at_ms) {
    ops.push_back(Delete(kAutomation, DueKey(c.execute_at_ms, project, env, id)));
    c.execute_at_ms = *edit.execute_at_ms;
    ops.push_back(Put(kAutomation, DueKey(c.execute_at_ms, project, env, id), ""));
  }
  if (edit.comment.has_value()) c.comment = *edit.comment;
  if (edit.items.has_value()) c.items = std::move(items);
  if (edit.ignore_conflicts.has_value()) c.ignore_conflicts = *edit.ignore_conflicts;
  c.edited_by = actor.id;
  c.updated_ms = Now();
  ++c.version;
  ops.push_back(Put(kAutomation, RecordKey(project, env, id), ToJson(ScheduledChangeToJson(c))));
  RETURN_IF_ERROR(WriteNow(std::move(ops)));
  return c;
}

absl::StatusOr<ScheduledChange> RocksStore::CancelScheduledChange(std::string_view project, std::string_view env,
                                                                  std::string_view id, const Actor& actor) {
  RETURN_IF_ERROR(CheckWritable());
  std::lock_guard<std::mutex> l(schedule_mu_);
  ASSIGN_OR_RETURN(ScheduledChange c, GetScheduledChange(project, env, id));
  if (c.status != ScheduleStatus::kScheduled) {
    return absl::FailedPreconditionError(StrCat("scheduled change \"", id, "\" is ", ScheduleStatusName(c.status), ": only a scheduled one can be canceled"));
  }
  c.status = ScheduleStatus::kCanceled;
  c.edited_by = actor.id;
  c.updated_ms = Now();
  ++c.version;
  RETURN_IF_ERROR(WriteNow({Delete(kAutomation, DueKey(c.execute_at_ms, project, env, id)),
                            Put(kAutomation, RecordKey(project, env, id), ToJson(ScheduledChangeToJson(c)))}));
  return c;
}

absl::StatusOr<std::optional<int64_t>> RocksStore::NextScheduledChangeDue() {
  std::optional<int64_t> next;
  absl::Status s = Scan(kAutomation, "due/", nullptr, [&](std::string_view k, std::string_view) -> absl::Status {
    next = k.size() > 21 ? ParseSeqKey(k.substr(4, 16)) : std::nullopt;
    if (!next.has_value()) return absl::DataLossError(StrCat("scheduled change index key \"", k, "\" has no time"));
    return absl::CancelledError();  // the first is the earliest: stop
  });
  if (!s.ok() && s.code() != absl::StatusCode::kCancelled) return s;
  return next;
}

absl::StatusOr<std::vector<ScheduledChange>> RocksStore::RunDueScheduledChanges() {
  RETURN_IF_ERROR(CheckWritable());
  std::lock_guard<std::mutex> l(schedule_mu_);
  int64_t now = Now();
  // The due entries up to now, oldest first: "due/{at}/{p}/{e}/{id}".
  std::vector<std::string> due;
  absl::Status scanned = Scan(kAutomation, "due/", nullptr, [&](std::string_view k, std::string_view) -> absl::Status {
    std::optional<int64_t> at = k.size() > 21 ? ParseSeqKey(k.substr(4, 16)) : std::nullopt;
    if (!at.has_value()) return absl::DataLossError(StrCat("scheduled change index key \"", k, "\" has no time"));
    if (*at > now) return absl::CancelledError();  // later ones are not due
    due.emplace_back(k);
    return absl::OkStatus();
  });
  if (!scanned.ok() && scanned.code() != absl::StatusCode::kCancelled) return scanned;
  std::vector<ScheduledChange> ran;
  for (const std::string& key : due) {
    // Keys, environments and ids hold no '/' (ValidateKey).
    std::string_view rest = std::string_view(key).substr(21);
    size_t a = rest.find('/'), b = a == std::string_view::npos ? a : rest.find('/', a + 1);
    if (b == std::string_view::npos || rest.find('/', b + 1) != std::string_view::npos) {
      return absl::DataLossError(StrCat("scheduled change index key \"", key, "\" is malformed"));
    }
    std::string p(rest.substr(0, a)), e(rest.substr(a + 1, b - a - 1)), id(rest.substr(b + 1));
    absl::StatusOr<ScheduledChange> found = GetScheduledChange(p, e, id);
    if (!found.ok() || found->status != ScheduleStatus::kScheduled) {
      // Its project or environment was deleted, or it no longer waits: drop the entry.
      if (found.ok() || absl::IsNotFound(found.status())) {
        RETURN_IF_ERROR(WriteNow({Delete(kAutomation, key)}));
        continue;
      }
      return found.status();
    }
    ScheduledChange c = *std::move(found);
    ChangeSet cs;
    cs.project = p;
    cs.environment = e;
    cs.items = c.items;
    if (c.ignore_conflicts) {
      for (ItemChange& it : cs.items) it.expect_version.reset();
    }
    cs.actor.id = StrCat("scheduler:", id, " for ", c.created_by);
    cs.actor.approved = true;  // its scheduling was (where approvals are required)
    cs.comment = c.comment.empty() ? StrCat("scheduled change ", id) : c.comment;
    c.ran_ms = Now();
    c.updated_ms = c.ran_ms;
    ++c.version;
    std::string record_key = RecordKey(p, e, id);
    absl::StatusOr<AppliedChangeSet> applied = ApplyWith(cs, [&](const AppliedChangeSet& a, std::vector<WriteOp>& ops) {
      c.status = ScheduleStatus::kApplied;
      c.sequence = a.sequence;
      ops.push_back(Put(kAutomation, record_key, ToJson(ScheduledChangeToJson(c))));
      ops.push_back(Delete(kAutomation, key));
    });
    if (applied.ok() && !applied->unchanged) {
      ran.push_back(std::move(c));
      continue;
    }
    if (applied.ok()) {
      c.status = ScheduleStatus::kApplied;
      c.unchanged = true;
      c.sequence = 0;
    } else {
      absl::StatusCode code = applied.status().code();
      bool refused = code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kFailedPrecondition ||
                     code == absl::StatusCode::kNotFound || code == absl::StatusCode::kAborted ||
                     code == absl::StatusCode::kAlreadyExists || code == absl::StatusCode::kOutOfRange;
      if (!refused) return applied.status();  // storage failed: it stays due
      c.status = ScheduleStatus::kFailed;
      c.reason = std::string(applied.status().message());
    }
    RETURN_IF_ERROR(WriteNow({Put(kAutomation, record_key, ToJson(ScheduledChangeToJson(c))), Delete(kAutomation, key)}));
    ran.push_back(std::move(c));
  }
  return ran;
}

}  // namespace internal
}  // namespace gonfalon::storage
