// Change sets, history and restore of an environment.

#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/dates.h"
#include "gonfalon/rules/str_cat.h"
#include "responses.h"
#include "routes.h"

namespace gonfalon::server {

using rules::Array;
using rules::Object;
using rules::Value;

namespace {

constexpr int kMaxHistoryLimit = 500;

}  // namespace

absl::Status ParseChangeItems(const Value& items, std::vector<storage::ItemChange>& out) {
  for (size_t i = 0; i < items.as_array().size(); ++i) {
    const Value& it = items.as_array()[i];
    std::string path = StrCat("items[", i, "]");
    if (!it.is_object()) return rules::InvalidField(path, "expected an object");
    storage::ItemChange change;
    const Value* f;
    absl::Status st = Want(it, "kind", Value::Type::kString, &f);
    if (!st.ok() || f == nullptr || (f->as_string() != "flag" && f->as_string() != "segment")) {
      return rules::InvalidField(StrCat(path, ".kind"), "expected \"flag\" or \"segment\"");
    }
    change.kind = f->as_string() == "flag" ? storage::ItemKind::kFlag : storage::ItemKind::kSegment;
    st = Want(it, "key", Value::Type::kString, &f);
    if (!st.ok() || f == nullptr) return rules::InvalidField(StrCat(path, ".key"), "expected a string");
    change.key = f->as_string();
    RETURN_IF_ERROR(Want(it, "expectVersion", Value::Type::kNumber, &f, StrCat(path, ".")));
    if (f) {
      change.expect_version = rules::IntegerIn(*f, 0, rules::kMaxJsonInteger);
      if (!change.expect_version.has_value()) {
        return rules::InvalidField(StrCat(path, ".expectVersion"), "expected a version (an integer >= 0)");
      }
    }
    RETURN_IF_ERROR(Want(it, "delete", Value::Type::kBool, &f, StrCat(path, ".")));
    change.remove = f != nullptr && f->as_bool();
    if (const Value* d = it.Find("data"); d != nullptr && !d->is_null()) change.data = *d;
    out.push_back(std::move(change));
  }
  return absl::OkStatus();
}

namespace {

Response HistoryPage(storage::Store& store, const Call& c, std::optional<storage::ItemKind> kind,
                     std::optional<std::string> item) {
  // `after` pages back from a sequence (the `next` of the previous page); `before` is its old name.
  const char* cursor_name = c.req.Query("after") != nullptr ? "after" : "before";
  std::optional<int64_t> before;
  if (c.req.Query(cursor_name) != nullptr) {
    TRY_ASSIGN(before, QueryInt(c.req, cursor_name, 0, INT64_MAX, 0));
  }
  TRY_ASSIGN(int64_t limit, QueryInt(c.req, "limit", 1, kMaxHistoryLimit, 50));
  TRY_ASSIGN(storage::HistoryPage page, store.History(c.Param("p"), c.Param("e"), kind, item, before, static_cast<int>(limit)));
  Array a;
  for (const auto& rec : page.records) a.push_back(storage::AuditRecordToJson(rec));
  Value out = Items(std::move(a));
  if (page.next_after.has_value()) out.Set("next", Value(*page.next_after));
  return Json(200, out);
}

}  // namespace

void AddChangeRoutes(Router& router, Services& s) {
  storage::Store& store = s.store;

  router.Add("POST", "/api/v1/projects/{p}/environments/{e}/changesets", Access::kAdmin, [&store, &s](const Call& c) {
    TRY_ASSIGN(Value body, ObjectBody(c.req));
    storage::ChangeSet cs;
    cs.project = c.Param("p");
    cs.environment = c.Param("e");
    cs.actor = ActorOf(*c.key);
    const Value* v;
    TRY(Want(body, "comment", Value::Type::kString, &v));
    if (v) cs.comment = v->as_string();
    const Value* items;
    TRY(Want(body, "items", Value::Type::kArray, &items));
    if (items == nullptr) return ErrorResponse(400, "invalid_argument", "items: is required", "items");
    TRY(ParseChangeItems(*items, cs.items));
    absl::StatusOr<storage::AppliedChangeSet> done = store.Apply(cs);
    if (storage::IsApprovalRequired(done.status())) {
      return OpenChangeRequestResponse(s, c, {.kind = storage::RequestKind::kChanges, .items = cs.items, .comment = cs.comment});
    }
    TRY_ASSIGN(storage::AppliedChangeSet applied, std::move(done));
    Array out;
    for (const auto& a : applied.items) {
      Value item(Object{{"kind", Value(storage::ItemKindName(a.kind))}, {"key", Value(a.key)}, {"version", Value(a.version)}});
      if (a.deleted) item.Set("deleted", Value(true));
      out.push_back(std::move(item));
    }
    Value result(Object{{"sequence", Value(applied.sequence)}, {"items", Value(std::move(out))}});
    if (applied.unchanged) result.Set("unchanged", Value(true));
    return Json(200, result);
  });

  router.Add("GET", "/api/v1/projects/{p}/environments/{e}/history", Access::kAdmin, [&store](const Call& c) {
    return HistoryPage(store, c, std::nullopt, std::nullopt);
  });
  router.Add("GET", "/api/v1/projects/{p}/environments/{e}/flags/{f}/history", Access::kAdmin, [&store](const Call& c) {
    return HistoryPage(store, c, storage::ItemKind::kFlag, c.Param("f"));
  });
  router.Add("GET", "/api/v1/projects/{p}/environments/{e}/segments/{s}/history", Access::kAdmin, [&store](const Call& c) {
    return HistoryPage(store, c, storage::ItemKind::kSegment, c.Param("s"));
  });

  router.Add("POST", "/api/v1/projects/{p}/environments/{e}/restore", Access::kAdmin, [&store](const Call& c) {
    const std::string& project = c.Param("p");
    const std::string& env = c.Param("e");
    TRY_ASSIGN(Value body, ObjectBody(c.req));
    const Value* seq;
    TRY(Want(body, "sequence", Value::Type::kNumber, &seq));
    const Value* time = body.Find("time");
    if ((seq == nullptr) == (time == nullptr || time->is_null())) {
      return ErrorResponse(400, "invalid_argument", "sequence: give exactly one of \"sequence\" and \"time\"", "sequence");
    }
    int64_t target = 0;
    if (seq != nullptr) {
      // Sequences are integers up to 2^53 (they travel as JSON numbers).
      std::optional<int64_t> n = rules::IntegerIn(*seq, 0, rules::kMaxJsonInteger);
      if (!n.has_value()) return ErrorResponse(400, "invalid_argument", "sequence: expected an integer 0..2^53", "sequence");
      target = *n;
    } else {
      std::optional<double> ms;
      if (time->is_number()) ms = time->as_number();
      else if (time->is_string()) ms = rules::ParseRfc3339Millis(time->as_string());
      if (!ms.has_value() || !(*ms >= -9.2e18 && *ms <= 9.2e18)) {
        return ErrorResponse(400, "invalid_argument", "time: expected RFC 3339 or Unix milliseconds", "time");
      }
      TRY_ASSIGN(target, store.SequenceAtTime(project, env, static_cast<int64_t>(*ms)));
    }
    const Value* dry;
    TRY(Want(body, "dryRun", Value::Type::kBool, &dry));
    const Value* only_flag;
    const Value* only_segment;
    TRY(Want(body, "flag", Value::Type::kString, &only_flag));
    TRY(Want(body, "segment", Value::Type::kString, &only_segment));
    const Value* comment;
    TRY(Want(body, "comment", Value::Type::kString, &comment));
    std::optional<storage::ItemKind> kind;
    std::optional<std::string> item;
    if (only_flag) {
      kind = storage::ItemKind::kFlag;
      item = only_flag->as_string();
    } else if (only_segment) {
      kind = storage::ItemKind::kSegment;
      item = only_segment->as_string();
    }
    bool dry_run = dry && dry->as_bool();
    TRY_ASSIGN(storage::RestorePlan plan, store.Restore(project, env, target, kind, item, dry_run, ActorOf(*c.key),
                                                       comment ? comment->as_string() : ""));
    Array items;
    for (const auto& it : plan.items) {
      items.push_back(Value(Object{{"kind", Value(storage::ItemKindName(it.kind))}, {"key", Value(it.key)},
                                   {"before", it.before}, {"after", it.after}}));
    }
    Value out(Object{{"targetSequence", Value(plan.target_sequence)}, {"dryRun", Value(dry_run)},
                     {"items", Value(std::move(items))}});
    if (plan.applied.has_value()) out.Set("sequence", Value(plan.applied->sequence));
    return Json(200, out);
  });
}

}  // namespace gonfalon::server
