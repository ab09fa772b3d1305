// Environments side by side (docs/flags-as-code.md, "Compare and promote"):
//   GET  /api/v1/projects/{p}/compare?from=staging&to=production[&flag=K]
//        per flag and segment whose targeting differs: the fields, from → to; items only in one
//   POST /api/v1/projects/{p}/promote {"from","to","flags":[…],"segments":[…],"comment"?}
//        copies their targeting from → to as one change set (a change request where approvals
//        are required); refused, naming what is missing, when a flag needs a segment the
//        target has not and the promotion does not bring.
// Salts are left out of both: each environment keeps its own, so units keep their buckets.

#include <set>

#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/json_fields.h"
#include "gonfalon/rules/str_cat.h"
#include "project_document.h"
#include "responses.h"
#include "routes.h"

namespace gonfalon::server {

using rules::Object;
using rules::Value;

namespace {

Value NoSalt(Value v) {
  v.Erase("salt");
  return v;
}

Value FieldsJson(const std::vector<FieldChange>& fields) {
  rules::Array out;
  for (const FieldChange& f : fields) {
    Value field(Object{{"path", Value(f.path)}});
    if (f.before.has_value()) field.Set("from", *f.before);
    if (f.after.has_value()) field.Set("to", *f.after);
    out.push_back(std::move(field));
  }
  return Value(std::move(out));
}

// The segments a flag's targeting matches on (clauses with op segmentMatch).
std::set<std::string> SegmentsUsed(const Value& targeting) {
  std::set<std::string> out;
  const Value* rules = targeting.Find("rules");
  if (rules == nullptr || !rules->is_array()) return out;
  for (const Value& r : rules->as_array()) {
    const Value* clauses = r.Find("clauses");
    if (clauses == nullptr || !clauses->is_array()) continue;
    for (const Value& c : clauses->as_array()) {
      const Value* op = c.Find("op");
      const Value* values = c.Find("values");
      if (op == nullptr || !op->is_string() || op->as_string() != "segmentMatch" || values == nullptr || !values->is_array()) continue;
      for (const Value& v : values->as_array()) {
        if (v.is_string()) out.insert(v.as_string());
      }
    }
  }
  return out;
}

absl::StatusOr<std::pair<rules::Environment, rules::Environment>> LoadPair(storage::Store& store, const std::string& project,
                                                                           const std::string& from, const std::string& to) {
  if (from.empty()) return rules::InvalidField("from", "is required (an environment)");
  if (to.empty()) return rules::InvalidField("to", "is required (an environment)");
  if (from == to) return rules::InvalidField("to", "is the same environment as from");
  absl::StatusOr<rules::Environment> a = store.LoadEnvironment(project, from);
  if (!a.ok()) return rules::WithFieldPrefix(a.status(), "from");
  absl::StatusOr<rules::Environment> b = store.LoadEnvironment(project, to);
  if (!b.ok()) return rules::WithFieldPrefix(b.status(), "to");
  return std::make_pair(*std::move(a), *std::move(b));
}

}  // namespace

void AddPromoteRoutes(Router& router, Services& s) {
  storage::Store& store = s.store;

  router.Add("GET", "/api/v1/projects/{p}/compare", Access::kAdmin, [&store](const Call& c) {
    std::string from = c.req.Query("from") ? *c.req.Query("from") : "";
    std::string to = c.req.Query("to") ? *c.req.Query("to") : "";
    const std::string* only = c.req.Query("flag");
    TRY_ASSIGN(auto envs, LoadPair(store, c.Param("p"), from, to));
    const auto& [a, b] = envs;
    rules::Array flags, segments;
    int64_t same = 0;
    auto compare = [&](const std::string& key, const std::optional<Value>& x, const std::optional<Value>& y, rules::Array& out) {
      if (x.has_value() && y.has_value()) {
        std::vector<FieldChange> fields = DiffFields(NoSalt(*x), NoSalt(*y));
        if (fields.empty()) {
          ++same;
          return;
        }
        out.push_back(Value(Object{{"key", Value(key)}, {"status", Value("different")}, {"fields", FieldsJson(fields)}}));
      } else {
        out.push_back(Value(Object{{"key", Value(key)}, {"status", Value(x.has_value() ? "onlyInFrom" : "onlyInTo")}}));
      }
    };
    std::set<std::string> keys;
    for (const auto& [k, f] : a.flags) keys.insert(k);
    for (const auto& [k, f] : b.flags) keys.insert(k);
    if (only != nullptr && !keys.count(*only)) return ErrorResponse(404, "not_found", StrCat("no flag \"", *only, "\""), "flag");
    for (const std::string& k : keys) {
      if (only != nullptr && k != *only) continue;
      auto x = a.flags.find(k), y = b.flags.find(k);
      compare(k, x == a.flags.end() ? std::nullopt : std::optional<Value>(FlagTargeting(x->second)),
              y == b.flags.end() ? std::nullopt : std::optional<Value>(FlagTargeting(y->second)), flags);
    }
    if (only == nullptr) {
      keys.clear();
      for (const auto& [k, seg] : a.segments) keys.insert(k);
      for (const auto& [k, seg] : b.segments) keys.insert(k);
      for (const std::string& k : keys) {
        auto x = a.segments.find(k), y = b.segments.find(k);
        compare(k, x == a.segments.end() ? std::nullopt : std::optional<Value>(SegmentDocument(x->second)),
                y == b.segments.end() ? std::nullopt : std::optional<Value>(SegmentDocument(y->second)), segments);
      }
    }
    return Json(200, Value(Object{{"from", Value(from)}, {"to", Value(to)}, {"flags", Value(std::move(flags))},
                                  {"segments", Value(std::move(segments))}, {"same", Value(same)}}));
  });

  router.Add("POST", "/api/v1/projects/{p}/promote", Access::kAdmin, [&s](const Call& c) {
    storage::Store& store = s.store;
    const std::string& project = c.Param("p");
    TRY_ASSIGN(Value body, ObjectBody(c.req));
    for (const auto& [name, value] : body.as_object()) {
      if (name != "from" && name != "to" && name != "flags" && name != "segments" && name != "comment") {
        return ErrorResponse(400, "invalid_argument", StrCat(name, ": unknown field (from, to, flags, segments, comment)"), name);
      }
    }
    std::string from, to, comment;
    TRY(rules::GetString(body, "from", "", from));
    TRY(rules::GetString(body, "to", "", to));
    TRY(rules::GetString(body, "comment", "", comment));
    std::vector<std::string> flag_keys, segment_keys;
    TRY(rules::GetStrings(body, "flags", "", flag_keys));
    TRY(rules::GetStrings(body, "segments", "", segment_keys));
    if (flag_keys.empty() && segment_keys.empty()) {
      return ErrorResponse(400, "invalid_argument", "flags: name at least one flag or segment to promote", "flags");
    }
    TRY_ASSIGN(auto envs, LoadPair(store, project, from, to));
    const auto& [a, b] = envs;
    storage::ChangeSet cs;
    cs.project = project;
    cs.environment = to;
    cs.actor = ActorOf(*c.key);
    cs.comment = comment.empty() ? StrCat("promoted from ", from) : StrCat(comment, " (promoted from ", from, ")");
    std::set<std::string> brought(segment_keys.begin(), segment_keys.end());
    for (size_t i = 0; i < segment_keys.size(); ++i) {
      const std::string& k = segment_keys[i];
      auto x = a.segments.find(k);
      if (x == a.segments.end()) {
        return ErrorResponse(404, "not_found", StrCat("segments[", i, "]: ", from, " has no segment \"", k, "\""), StrCat("segments[", i, "]"));
      }
      Value data = NoSalt(SegmentDocument(x->second));
      auto y = b.segments.find(k);
      int64_t version = 0;
      if (y != b.segments.end()) {
        version = y->second.version;
        data.Set("salt", Value(y->second.salt));
      }
      data.Set("key", Value(k));
      cs.items.push_back({storage::ItemKind::kSegment, k, version, std::move(data), false});
    }
    for (size_t i = 0; i < flag_keys.size(); ++i) {
      const std::string& k = flag_keys[i];
      std::string path = StrCat("flags[", i, "]");
      auto x = a.flags.find(k);
      auto y = b.flags.find(k);
      if (x == a.flags.end() || y == b.flags.end()) {
        return ErrorResponse(404, "not_found", StrCat(path, ": no flag \"", k, "\" in ", x == a.flags.end() ? from : to), path);
      }
      Value targeting = FlagTargeting(x->second);
      for (const std::string& seg : SegmentsUsed(targeting)) {
        if (!b.segments.count(seg) && !brought.count(seg)) {
          return ErrorResponse(409, "failed_precondition",
                               StrCat(path, ": flag \"", k, "\" needs segment \"", seg, "\", which ", to,
                                      " does not have: promote it too (\"segments\": [\"", seg, "\"])"),
                               path);
        }
      }
      // The whole flag as `to` has it, with `from`'s targeting (and `to`'s own salt).
      Value data = rules::EncodeFlag(y->second);
      for (const auto& [name, value] : targeting.as_object()) {
        if (name != "salt") data.Set(name, value);
      }
      data.Erase("version");
      cs.items.push_back({storage::ItemKind::kFlag, k, y->second.version, std::move(data), false});
    }
    absl::StatusOr<storage::AppliedChangeSet> done = store.Apply(cs);
    if (storage::IsApprovalRequired(done.status())) {
      return OpenChangeRequestResponse(
          s, c, {.project = project, .environment = to, .kind = storage::RequestKind::kChanges, .items = cs.items, .comment = cs.comment});
    }
    if (!done.ok()) return ErrorResponse(done.status());
    return Json(200, Value(Object{{"environment", Value(to)}, {"sequence", Value(done->sequence)}, {"unchanged", Value(done->unchanged)}}));
  });
}

}  // namespace gonfalon::server
