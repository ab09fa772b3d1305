// Flags as code (docs/flags-as-code.md; the document and plan are in project_document.h):
//   GET  /api/v1/projects/{p}/export[?env=E]                       the project as a document
//   POST /api/v1/projects/{p}/apply[?dryRun=true][&prune=true][&planToken=T]   body: a document
// dryRun answers the plan (item by item, field by field) and its planToken; without it the
// plan is applied: metrics, then the flags' project-level parts, then one change set per
// environment guarded by the versions just read (in an environment that requires approvals, a
// change request instead), then flags the document no longer lists (prune only). A planToken
// from an earlier dry run makes the apply refuse (409) if anything changed since.

#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/str_cat.h"
#include "project_document.h"
#include "responses.h"
#include "routes.h"

namespace gonfalon::server {

using rules::Object;
using rules::Value;

namespace {

// What the project holds now; with `may_be_missing`, a project that does not exist is an
// empty state the plan creates.
absl::StatusOr<ProjectState> ReadState(storage::Store& store, const std::string& project, bool may_be_missing = false) {
  ProjectState s;
  s.project = project;
  absl::Status found = store.GetProject(project).status();
  if (may_be_missing && absl::IsNotFound(found)) {
    RETURN_IF_ERROR(storage::ValidateKey(project, "project"));
    s.exists = false;
    return s;
  }
  RETURN_IF_ERROR(found);
  ASSIGN_OR_RETURN(s.flags, store.ListFlagMeta(project));
  ASSIGN_OR_RETURN(std::vector<storage::Environment> envs, store.ListEnvironments(project));
  for (const storage::Environment& e : envs) {
    s.environments.push_back(e.key);
    ASSIGN_OR_RETURN(s.data[e.key], store.LoadEnvironment(project, e.key));
  }
  ASSIGN_OR_RETURN(s.metrics, store.ListMetrics(project));
  return s;
}

bool QueryFlag(const Request& req, std::string_view name) {
  const std::string* v = req.Query(name);
  return v != nullptr && (*v == "true" || *v == "1" || v->empty());
}

// A change set's field ("items[2].data.rules[0].op") as the document's path.
absl::Status AsDocumentPath(const absl::Status& s, const std::vector<std::string>& item_paths) {
  std::string field = rules::ErrorField(s);
  if (field.rfind("items[", 0) != 0) return s;
  size_t close = field.find(']');
  size_t index = static_cast<size_t>(std::atoi(field.c_str() + 6));
  if (close == std::string::npos || index >= item_paths.size()) return s;
  std::string rest = field.substr(close + 1);
  if (rest.rfind(".data", 0) == 0) rest = rest.substr(5);
  if (!rest.empty() && rest[0] == '.') rest = rest.substr(1);
  return rules::FieldError(s.code(), rest.empty() ? item_paths[index] : StrCat(item_paths[index], rest[0] == '[' ? "" : ".", rest),
                           rules::ErrorText(s));
}

}  // namespace

void AddAsCodeRoutes(Router& router, Services& s) {
  storage::Store& store = s.store;

  router.Add("GET", "/api/v1/projects/{p}/export", Access::kAdmin, [&store](const Call& c) {
    TRY_ASSIGN(ProjectState state, ReadState(store, c.Param("p")));
    std::optional<std::string> env;
    if (const std::string* e = c.req.Query("env"); e != nullptr) {
      if (std::find(state.environments.begin(), state.environments.end(), *e) == state.environments.end()) {
        return ErrorResponse(404, "not_found", StrCat("project \"", c.Param("p"), "\" has no environment \"", *e, "\""), "env");
      }
      env = *e;
    }
    return Json(200, ExportDocument(state, env));
  });

  router.Add("POST", "/api/v1/projects/{p}/apply", Access::kAdmin, [&s](const Call& c) {
    storage::Store& store = s.store;
    const std::string& project = c.Param("p");
    TRY_ASSIGN(Value doc, ObjectBody(c.req));
    bool prune = QueryFlag(c.req, "prune");
    TRY_ASSIGN(ProjectState state, ReadState(store, project, true));
    TRY_ASSIGN(Plan plan, MakePlan(state, doc, prune));
    if (QueryFlag(c.req, "dryRun")) return Json(200, PlanToJson(plan));
    if (const std::string* token = c.req.Query("planToken"); token != nullptr && *token != plan.token) {
      return ErrorResponse(409, "conflict", "the project changed since the plan: make the plan again (apply --plan) and review it");
    }
    storage::Actor actor = ActorOf(*c.key);
    std::string comment = Comment(c.req);
    if (comment.empty()) comment = "apply";
    // 1. The project and environments it lacks, metrics, and the flags' project-level parts
    // (creating a flag adds it, off, in every environment).
    std::vector<storage::FlagMeta> created;
    for (const PlannedChange& ch : plan.changes) {
      if (ch.kind == "project") {
        TRY(store.CreateProject({.key = ch.key}, actor).status());
      } else if (ch.kind == "environment") {
        TRY(store.CreateEnvironment(project, {.key = ch.key}, actor).status());
      } else if (ch.kind == "metric" && ch.action != "delete") {
        Value full = ch.after;
        full.Set("key", Value(ch.key));
        TRY_ASSIGN(storage::Metric m, storage::MetricFromJson(full));
        TRY(store.PutMetric(project, m).status());
      } else if (ch.kind == "metric") {
        TRY(store.DeleteMetric(project, ch.key));
      } else if (ch.kind == "flag" && ch.action == "create") {
        Value full = ch.after;
        full.Set("key", Value(ch.key));
        TRY_ASSIGN(storage::FlagMeta m, storage::FlagMetaFromJson(full));
        created.push_back(std::move(m));
      } else if (ch.kind == "flag" && ch.action == "change") {
        Value full = ch.after;
        full.Set("key", Value(ch.key));
        TRY_ASSIGN(storage::FlagMeta m, storage::FlagMetaFromJson(full));
        auto current = std::find_if(state.flags.begin(), state.flags.end(), [&](const storage::FlagMeta& f) { return f.key == ch.key; });
        absl::StatusOr<storage::FlagMeta> updated = store.UpdateFlagMeta(project, m, current->version, actor, comment);
        if (!updated.ok()) return ErrorResponse(rules::WithFieldPrefix(updated.status(), StrCat("flags.", ch.key)));
      }
    }
    if (!created.empty()) {
      absl::StatusOr<std::vector<storage::FlagMeta>> made = store.CreateFlags(project, created, actor, comment);
      if (!made.ok()) return ErrorResponse(made.status());
    }
    // 2. One change set per environment, against the items as they are now.
    rules::Array applied, requests;
    std::map<std::string, std::vector<const PlannedChange*>> by_env;
    for (const PlannedChange& ch : plan.changes) {
      if (ch.kind == "flagTargeting" || ch.kind == "segment") by_env[ch.environment].push_back(&ch);
    }
    for (const auto& [env, changes] : by_env) {
      TRY_ASSIGN(rules::Environment now, store.LoadEnvironment(project, env));
      storage::ChangeSet cs;
      cs.project = project;
      cs.environment = env;
      cs.actor = actor;
      cs.comment = comment;
      std::vector<std::string> paths;
      for (const PlannedChange* ch : changes) {
        bool flag = ch->kind == "flagTargeting";
        int64_t version = 0;
        if (flag) {
          auto it = now.flags.find(ch->key);
          if (it != now.flags.end()) version = it->second.version;
        } else {
          auto it = now.segments.find(ch->key);
          if (it != now.segments.end()) version = it->second.version;
        }
        std::optional<Value> data;
        if (ch->action != "delete") data = ch->after;
        cs.items.push_back({flag ? storage::ItemKind::kFlag : storage::ItemKind::kSegment, ch->key, version, std::move(data),
                            ch->action == "delete"});
        paths.push_back(flag ? StrCat("flags.", ch->key, ".environments.", env) : StrCat("segments.", env, ".", ch->key));
      }
      absl::StatusOr<storage::AppliedChangeSet> done = store.Apply(cs);
      if (storage::IsApprovalRequired(done.status())) {
        storage::ChangeRequest spec{.project = project, .environment = env, .kind = storage::RequestKind::kChanges, .items = cs.items,
                                    .comment = comment};
        absl::StatusOr<storage::ChangeRequest> opened = store.OpenChangeRequest(spec, actor);
        if (!opened.ok()) return ErrorResponse(AsDocumentPath(opened.status(), paths));
        s.webhooks.Publish("change_request.opened", project, env, storage::ChangeRequestToJson(*opened));
        requests.push_back(Value(Object{{"environment", Value(env)}, {"changeRequest", Value(opened->id)}}));
        continue;
      }
      if (!done.ok()) return ErrorResponse(AsDocumentPath(done.status(), paths));
      applied.push_back(Value(Object{{"environment", Value(env)}, {"sequence", Value(done->sequence)}}));
    }
    // 3. Flags the document no longer lists (prune).
    for (const PlannedChange& ch : plan.changes) {
      if (ch.kind == "flag" && ch.action == "delete") TRY(store.DeleteFlag(project, ch.key, actor, comment));
    }
    Value out = PlanToJson(plan);
    out.Set("applied", Value(std::move(applied)));
    out.Set("changeRequests", Value(std::move(requests)));
    return Json(200, out);
  });
}

}  // namespace gonfalon::server
