// Flags at the project level (/api/v1/projects/{p}/flags[/{f}]), flags as evaluated in an
// environment (.../environments/{e}/flags[/{f}]) and segments (.../environments/{e}/segments).

#include <algorithm>

#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/str_cat.h"
#include "responses.h"
#include "routes.h"

namespace gonfalon::server {

using rules::Array;
using rules::Object;
using rules::Value;

namespace {

// A single-item write goes through a one-item change set, whose errors name "items[0]...".
// The client sent the item itself: field "items[0].data.rules[1].op" becomes "rules[1].op" and
// "items[0].key" becomes "key"; "items[0].delete" and "items[0].expectVersion" (If-Match) name
// no field of the request.
absl::Status AsSingleItem(const absl::Status& st) {
  std::string field = rules::ErrorField(st);
  std::string_view inner = field;
  for (std::string_view prefix : {"items[0].data.", "items[0].data", "items[0].", "items[0]"}) {
    if (inner.substr(0, prefix.size()) == prefix) {
      inner.remove_prefix(prefix.size());
      break;
    }
  }
  if (inner == "delete" || inner == "expectVersion") inner = {};
  return rules::FieldError(st.code(), inner, rules::ErrorText(st));
}

// Applies one item as a change set in the call's environment; `cs` is the change set (what a
// change request holds when the environment requires approvals).
absl::StatusOr<storage::AppliedChangeSet> ApplyOne(storage::Store& store, const Call& c, storage::ItemKind kind,
                                                   const std::string& key, std::optional<Value> data, bool remove,
                                                   std::optional<int64_t> expect, storage::ChangeSet& cs) {
  cs.project = c.Param("p");
  cs.environment = c.Param("e");
  cs.actor = ActorOf(*c.key);
  cs.comment = Comment(c.req);
  cs.items.push_back({kind, key, expect, std::move(data), remove});
  return store.Apply(cs);
}

// The answer to a single-item write that waits for approvals.
Response Requested(Services& s, const Call& c, const storage::ChangeSet& cs) {
  return OpenChangeRequestResponse(s, c, {.kind = storage::RequestKind::kChanges, .items = cs.items, .comment = cs.comment});
}

// The environment's published snapshot. Whether the environment exists is read from storage
// first (one point read; Hubs::Get leaves that to the caller): a deleted one answers 404.
absl::StatusOr<std::shared_ptr<const rules::Snapshot>> PublishedSnapshot(Services& s, const std::string& project,
                                                                         const std::string& env) {
  RETURN_IF_ERROR(s.store.GetEnvironment(project, env).status());
  ASSIGN_OR_RETURN(std::shared_ptr<EnvironmentHub> hub, s.hubs.Get(project, env));
  std::shared_ptr<const rules::Snapshot> snap = hub->cell().Load();
  if (snap == nullptr) return absl::UnavailableError(StrCat("environment \"", env, "\" is not loaded"));
  return snap;
}

// A flag as a list shows it (GET …/flags?fields=summary), from its compiled model and its JSON,
// which alone holds its name and tags (the hub's snapshots drop them from their models).
Value FlagSummary(const rules::Flag& f, std::string_view json) {
  auto variation = [&](std::optional<int> i) {
    return i.has_value() && *i >= 0 && static_cast<size_t>(*i) < f.variations.size() ? f.variations[static_cast<size_t>(*i)] : Value();
  };
  Value serves;
  if (!f.on) {
    serves = Value(Object{{"off", variation(f.off_variation)}});
  } else if (f.fallthrough.rollout.has_value()) {
    Array split;
    for (const rules::WeightedVariation& w : f.fallthrough.rollout->variations) {
      split.push_back(Value(Object{{"weight", Value(static_cast<int64_t>(w.weight))}, {"value", variation(w.variation)}}));
    }
    serves = Value(Object{{"rollout", Value(std::move(split))}});
  } else {
    serves = Value(Object{{"variation", variation(f.fallthrough.variation)}});
  }
  // Our own encoding of the flag: it parses. Absent members are the codec's empty values.
  Value meta = rules::ParseJsonMembers(json, {"name", "tags"}).value_or(Value());
  const Value* name = meta.Find("name");
  const Value* tags = meta.Find("tags");
  return Value(Object{{"key", Value(f.key)},
                      {"name", name != nullptr ? *name : Value("")},
                      {"version", Value(f.version)},
                      {"on", Value(f.on)},
                      {"tags", tags != nullptr ? *tags : Value(Array())},
                      {"serves", std::move(serves)}});
}

// The project-level fields of a flag, which an environment's PUT/PATCH cannot change.
constexpr std::string_view kProjectLevelFields[] = {"variations", "name", "description", "tags",
                                                    "temporary", "maintainer", "clientSideAvailability"};

// A write to a flag in one environment that would change a project-level field is refused
// with the field named, rather than silently ignored.
absl::Status CheckNoProjectLevelChange(const Value& current, const Value& doc, std::string_view project,
                                       std::string_view flag) {
  for (std::string_view field : kProjectLevelFields) {
    const Value* now = current.Find(field);
    const Value* wanted = doc.Find(field);
    if (wanted == nullptr) continue;  // absent: keeps the project's
    if (now != nullptr ? *now == *wanted : wanted->is_null()) continue;
    return rules::InvalidField(field, StrCat("is set for the whole project; change it with PATCH /api/v1/projects/",
                                             project, "/flags/", flag));
  }
  return absl::OkStatus();
}

}  // namespace

void AddFlagRoutes(Router& router, Services& s) {
  storage::Store& store = s.store;

  // ---- project level ----
  router.Add("GET", "/api/v1/projects/{p}/flags", Access::kAdmin, [&store](const Call& c) {
    TRY_ASSIGN(std::vector<storage::FlagMeta> metas, store.ListFlagMeta(c.Param("p")));
    const std::string* tag = c.req.Query("tag");
    const std::string* state = c.req.Query("state");
    const std::string* q = c.req.Query("q");
    if (state && *state != "active" && *state != "archived" && *state != "all") {
      return ErrorResponse(400, "invalid_argument", "state: expected active, archived or all", "state");
    }
    std::string st = state ? *state : "active";
    Array a;
    for (const auto& meta : metas) {
      if (tag && std::find(meta.tags.begin(), meta.tags.end(), *tag) == meta.tags.end()) continue;
      if (st == "active" && meta.archived) continue;
      if (st == "archived" && !meta.archived) continue;
      if (q && meta.key.find(*q) == std::string::npos && meta.name.find(*q) == std::string::npos &&
          meta.description.find(*q) == std::string::npos) {
        continue;
      }
      a.push_back(storage::FlagMetaToJson(meta));
    }
    return Json(200, Items(std::move(a)));
  });

  router.Add("POST", "/api/v1/projects/{p}/flags", Access::kAdmin, [&store](const Call& c) {
    TRY_ASSIGN(Value body, ObjectBody(c.req));
    // {"flags":[...]}: many flags in one commit, all or nothing.
    if (const Value* list = body.Find("flags"); list != nullptr && body.Find("key") == nullptr) {
      if (!list->is_array()) return ErrorResponse(400, "invalid_argument", "flags: expected an array of flags", "flags");
      std::vector<storage::FlagMeta> metas;
      metas.reserve(list->as_array().size());
      for (size_t i = 0; i < list->as_array().size(); ++i) {
        absl::StatusOr<storage::FlagMeta> meta = storage::FlagMetaFromJson(list->as_array()[i]);
        if (!meta.ok()) {
          return ErrorResponse(rules::WithFieldPrefix(meta.status(), StrCat("flags[", i, "]")));
        }
        metas.push_back(std::move(*meta));
      }
      TRY_ASSIGN(std::vector<storage::FlagMeta> created, store.CreateFlags(c.Param("p"), metas, ActorOf(*c.key), Comment(c.req)));
      rules::Array out;
      out.reserve(created.size());
      for (const storage::FlagMeta& m : created) out.push_back(storage::FlagMetaToJson(m));
      return Json(201, Value(rules::Object{{"flags", Value(std::move(out))}}));
    }
    TRY_ASSIGN(storage::FlagMeta meta, storage::FlagMetaFromJson(body));
    TRY_ASSIGN(storage::FlagMeta created, store.CreateFlag(c.Param("p"), meta, ActorOf(*c.key), Comment(c.req)));
    return WithETag(Json(201, storage::FlagMetaToJson(created)), created.version);
  });

  router.Add("GET", "/api/v1/projects/{p}/flags/{f}", Access::kAdmin, [&store](const Call& c) {
    TRY_ASSIGN(storage::FlagMeta meta, store.GetFlagMeta(c.Param("p"), c.Param("f")));
    return WithETag(Json(200, storage::FlagMetaToJson(meta)), meta.version);
  });

  auto replace_meta = [&store](const Call& c) {
    const std::string& flag = c.Param("f");
    TRY_ASSIGN(std::optional<int64_t> if_match, IfMatch(c.req));
    TRY_ASSIGN(storage::FlagMeta current, store.GetFlagMeta(c.Param("p"), flag));
    TRY_ASSIGN(Value body, ObjectBody(c.req));
    Value doc = c.req.method == "PATCH" ? MergePatch(storage::FlagMetaToJson(current), body) : body;
    if (const Value* k = doc.Find("key"); k != nullptr && !(k->is_string() && k->as_string() == flag)) {
      return ErrorResponse(400, "invalid_argument", StrCat("key: does not match the flag in the URL (\"", flag, "\")"), "key");
    }
    doc.Set("key", Value(flag));
    TRY_ASSIGN(storage::FlagMeta meta, storage::FlagMetaFromJson(doc));
    auto updated = store.UpdateFlagMeta(c.Param("p"), meta, if_match.value_or(0), ActorOf(*c.key), Comment(c.req));
    if (!updated.ok()) return ErrorResponse(updated.status(), if_match.has_value());
    return WithETag(Json(200, storage::FlagMetaToJson(*updated)), updated->version);
  };
  router.Add("PUT", "/api/v1/projects/{p}/flags/{f}", Access::kAdmin, replace_meta);
  router.Add("PATCH", "/api/v1/projects/{p}/flags/{f}", Access::kAdmin, replace_meta);

  router.Add("DELETE", "/api/v1/projects/{p}/flags/{f}", Access::kAdmin, [&store](const Call& c) {
    TRY(store.DeleteFlag(c.Param("p"), c.Param("f"), ActorOf(*c.key), Comment(c.req)));
    return NoContent();
  });

  // ---- per environment ----
  // ?fields=summary: what a list shows, a fraction of the size at 10,000 flags:
  // {"key","name","version","on","tags","serves":{"off":v}|{"variation":v}|{"rollout":[{"weight","value"}]}}
  // Lists come from the published snapshot (what evaluations see; an admin write is in it once
  // answered), not from storage: no read of the whole environment, and the full form is the
  // flags' kept JSON.
  router.Add("GET", "/api/v1/projects/{p}/environments/{e}/flags", Access::kAdmin, [&s](const Call& c) {
    const std::string* fields = c.req.Query("fields");
    if (fields != nullptr && *fields != "summary") return ErrorResponse(400, "invalid_argument", "fields: expected summary", "fields");
    TRY_ASSIGN(std::shared_ptr<const rules::Snapshot> snap, PublishedSnapshot(s, c.Param("p"), c.Param("e")));
    if (fields == nullptr) return JsonText(200, StrCat("{\"items\":", snap->FlagsJsonArray(), "}"));
    std::vector<rules::Snapshot::FlagEntry> flags = snap->Flags();
    Array a;
    a.reserve(flags.size());
    for (const rules::Snapshot::FlagEntry& f : flags) a.push_back(FlagSummary(*f.model, f.json));
    return Json(200, Items(std::move(a)));
  });

  router.Add("GET", "/api/v1/projects/{p}/environments/{e}/flags/{f}", Access::kAdmin, [&store](const Call& c) {
    TRY_ASSIGN(rules::Flag f, store.GetFlag(c.Param("p"), c.Param("e"), c.Param("f")));
    return WithETag(Json(200, rules::EncodeFlag(f)), f.version);
  });

  auto write_flag = [&store, &s](const Call& c) {
    const std::string& flag = c.Param("f");
    TRY_ASSIGN(std::optional<int64_t> if_match, IfMatch(c.req));
    TRY_ASSIGN(Value body, ObjectBody(c.req));
    TRY_ASSIGN(rules::Flag current, store.GetFlag(c.Param("p"), c.Param("e"), flag));
    Value current_json = rules::EncodeFlag(current);
    if (c.req.method == "PATCH") {
      // A fallthrough given a variation or a rollout serves that instead of what it served
      // before: the other member goes (a plain merge patch would keep both, which is refused).
      if (Value* ft = body.FindMutable("fallthrough"); ft != nullptr && ft->is_object()) {
        bool variation = ft->Find("variation") != nullptr, rollout = ft->Find("rollout") != nullptr;
        if (variation && !rollout) ft->Set("rollout", Value());
        if (rollout && !variation) ft->Set("variation", Value());
      }
    }
    Value doc = c.req.method == "PATCH" ? MergePatch(current_json, body) : body;
    TRY(CheckNoProjectLevelChange(current_json, doc, c.Param("p"), flag));
    // Patch what was read: a concurrent write between the read and this one is a conflict.
    std::optional<int64_t> expect = if_match;
    if (c.req.method == "PATCH" && !expect.has_value()) expect = current.version;
    storage::ChangeSet cs;
    auto applied = ApplyOne(store, c, storage::ItemKind::kFlag, flag, doc, false, expect, cs);
    if (storage::IsApprovalRequired(applied.status())) return Requested(s, c, cs);
    if (!applied.ok()) return ErrorResponse(AsSingleItem(applied.status()), if_match.has_value());
    TRY_ASSIGN(rules::Flag f, store.GetFlag(c.Param("p"), c.Param("e"), flag));
    return WithETag(Json(200, rules::EncodeFlag(f)), f.version);
  };
  router.Add("PUT", "/api/v1/projects/{p}/environments/{e}/flags/{f}", Access::kAdmin, write_flag);
  router.Add("PATCH", "/api/v1/projects/{p}/environments/{e}/flags/{f}", Access::kAdmin, write_flag);

  router.Add("GET", "/api/v1/projects/{p}/environments/{e}/flags/{f}/events", Access::kAdmin, [&store](const Call& c) {
    TRY_ASSIGN(std::vector<storage::ExposureCount> counts, store.GetExposureCounts(c.Param("p"), c.Param("e"), c.Param("f")));
    Array a;
    for (const auto& x : counts) {
      a.push_back(Value(Object{{"hour", Value(x.hour_ms)}, {"variation", Value(x.variation)}, {"count", Value(x.count)}}));
    }
    return Json(200, Items(std::move(a)));
  });

  // ---- segments ----
  router.Add("GET", "/api/v1/projects/{p}/environments/{e}/segments", Access::kAdmin, [&s](const Call& c) {
    TRY_ASSIGN(std::shared_ptr<const rules::Snapshot> snap, PublishedSnapshot(s, c.Param("p"), c.Param("e")));
    return JsonText(200, StrCat("{\"items\":", snap->SegmentsJsonArray(), "}"));
  });

  router.Add("POST", "/api/v1/projects/{p}/environments/{e}/segments", Access::kAdmin, [&store, &s](const Call& c) {
    TRY_ASSIGN(Value body, ObjectBody(c.req));
    const Value* k;
    TRY(Want(body, "key", Value::Type::kString, &k));
    if (k == nullptr) return ErrorResponse(400, "invalid_argument", "key: is required", "key");
    std::string seg = k->as_string();
    storage::ChangeSet cs;
    auto applied = ApplyOne(store, c, storage::ItemKind::kSegment, seg, body, false, 0, cs);
    if (storage::IsApprovalRequired(applied.status())) return Requested(s, c, cs);
    if (!applied.ok()) {
      if (absl::IsAborted(applied.status())) {
        return ErrorResponse(409, "already_exists", StrCat("segment \"", seg, "\" already exists"), "key");
      }
      return ErrorResponse(AsSingleItem(applied.status()));
    }
    TRY_ASSIGN(rules::Segment created, store.GetSegment(c.Param("p"), c.Param("e"), seg));
    return WithETag(Json(201, rules::EncodeSegment(created)), created.version);
  });

  router.Add("GET", "/api/v1/projects/{p}/environments/{e}/segments/{s}", Access::kAdmin, [&store](const Call& c) {
    TRY_ASSIGN(rules::Segment seg, store.GetSegment(c.Param("p"), c.Param("e"), c.Param("s")));
    return WithETag(Json(200, rules::EncodeSegment(seg)), seg.version);
  });

  auto write_segment = [&store, &s](const Call& c) {
    const std::string& seg = c.Param("s");
    bool remove = c.req.method == "DELETE";
    TRY_ASSIGN(std::optional<int64_t> if_match, IfMatch(c.req));
    std::optional<Value> doc;
    std::optional<int64_t> expect = if_match;
    if (!remove) {
      TRY_ASSIGN(Value body, ObjectBody(c.req));
      doc = body;
      if (c.req.method == "PATCH") {
        TRY_ASSIGN(rules::Segment current, store.GetSegment(c.Param("p"), c.Param("e"), seg));
        doc = MergePatch(rules::EncodeSegment(current), body);
        if (!expect.has_value()) expect = current.version;
      }
    }
    storage::ChangeSet cs;
    auto applied = ApplyOne(store, c, storage::ItemKind::kSegment, seg, doc, remove, expect, cs);
    if (storage::IsApprovalRequired(applied.status())) return Requested(s, c, cs);
    if (!applied.ok()) return ErrorResponse(AsSingleItem(applied.status()), if_match.has_value());
    if (remove) return NoContent();
    TRY_ASSIGN(rules::Segment updated, store.GetSegment(c.Param("p"), c.Param("e"), seg));
    return WithETag(Json(200, rules::EncodeSegment(updated)), updated.version);
  };
  router.Add("PUT", "/api/v1/projects/{p}/environments/{e}/segments/{s}", Access::kAdmin, write_segment);
  router.Add("PATCH", "/api/v1/projects/{p}/environments/{e}/segments/{s}", Access::kAdmin, write_segment);
  router.Add("DELETE", "/api/v1/projects/{p}/environments/{e}/segments/{s}", Access::kAdmin, write_segment);
}

}  // namespace gonfalon::server
