// /api/v1/projects[/{p}] and /api/v1/projects/{p}/environments[/{e}].

#include "gonfalon/rules/str_cat.h"
#include "responses.h"
#include "routes.h"

namespace gonfalon::server {

using rules::Array;
using rules::Value;

void AddProjectRoutes(Router& router, Services& s) {
  storage::Store& store = s.store;

  router.Add("GET", "/api/v1/projects", Access::kAdmin, [&store](const Call& c) {
    TRY_ASSIGN(std::vector<storage::Project> projects, store.ListProjects());
    Array a;
    for (const auto& pr : projects) {
      if (c.key->project.empty() || c.key->project == pr.key) a.push_back(storage::ProjectToJson(pr));
    }
    return Json(200, Items(std::move(a)));
  });

  router.Add("POST", "/api/v1/projects", Access::kAdmin, [&store](const Call& c) {
    if (!c.key->project.empty()) return ErrorResponse(403, "forbidden", "this key is limited to one project");
    TRY_ASSIGN(Value body, ObjectBody(c.req));
    storage::Project pr;
    const Value* v;
    TRY(Want(body, "key", Value::Type::kString, &v));
    if (v) pr.key = v->as_string();
    TRY(Want(body, "name", Value::Type::kString, &v));
    if (v) pr.name = v->as_string();
    TRY(Want(body, "description", Value::Type::kString, &v));
    if (v) pr.description = v->as_string();
    const Value* envs;
    TRY(Want(body, "environments", Value::Type::kArray, &envs));
    if (envs) {
      for (size_t i = 0; i < envs->as_array().size(); ++i) {
        const Value& e = envs->as_array()[i];
        std::string field = StrCat("environments[", i, "]");
        if (!e.is_string()) return ErrorResponse(400, "invalid_argument", StrCat(field, ": expected an environment key"), field);
        TRY(storage::ValidateKey(e.as_string(), field));
      }
    }
    storage::Actor actor = ActorOf(*c.key);
    TRY_ASSIGN(storage::Project created, store.CreateProject(pr, actor));
    if (envs) {
      for (const Value& e : envs->as_array()) {
        TRY(store.CreateEnvironment(created.key, {.key = e.as_string()}, actor).status());
      }
    }
    return WithETag(Json(201, storage::ProjectToJson(created)), created.version);
  });

  router.Add("GET", "/api/v1/projects/{p}", Access::kAdmin, [&store](const Call& c) {
    TRY_ASSIGN(storage::Project pr, store.GetProject(c.Param("p")));
    return WithETag(Json(200, storage::ProjectToJson(pr)), pr.version);
  });

  router.Add("PATCH", "/api/v1/projects/{p}", Access::kAdmin, [&store](const Call& c) {
    TRY_ASSIGN(std::optional<int64_t> if_match, IfMatch(c.req));
    TRY_ASSIGN(storage::Project pr, store.GetProject(c.Param("p")));
    TRY_ASSIGN(Value body, ObjectBody(c.req));
    Value merged = MergePatch(storage::ProjectToJson(pr), body);
    const Value* v;
    TRY(Want(merged, "name", Value::Type::kString, &v));
    pr.name = v ? v->as_string() : pr.name;
    TRY(Want(merged, "description", Value::Type::kString, &v));
    pr.description = v ? v->as_string() : "";
    auto updated = store.UpdateProject(pr, if_match.value_or(0), ActorOf(*c.key));
    if (!updated.ok()) return ErrorResponse(updated.status(), true);
    return WithETag(Json(200, storage::ProjectToJson(*updated)), updated->version);
  });

  router.Add("DELETE", "/api/v1/projects/{p}", Access::kAdmin, [&store, &s](const Call& c) {
    TRY(store.DeleteProject(c.Param("p"), ActorOf(*c.key)));
    s.hubs.Forget(c.Param("p"));   // a project created again under its key starts afresh
    s.hubs.CloseRevokedStreams();  // its keys are gone with it
    return NoContent();
  });

  router.Add("GET", "/api/v1/projects/{p}/environments", Access::kAdmin, [&store](const Call& c) {
    TRY_ASSIGN(std::vector<storage::Environment> envs, store.ListEnvironments(c.Param("p")));
    Array a;
    for (const auto& e : envs) a.push_back(storage::EnvironmentToJson(e));
    return Json(200, Items(std::move(a)));
  });

  router.Add("POST", "/api/v1/projects/{p}/environments", Access::kAdmin, [&store](const Call& c) {
    TRY_ASSIGN(Value body, ObjectBody(c.req));
    storage::Environment e;
    const Value* v;
    TRY(Want(body, "key", Value::Type::kString, &v));
    if (v) e.key = v->as_string();
    TRY(Want(body, "name", Value::Type::kString, &v));
    if (v) e.name = v->as_string();
    TRY_ASSIGN(storage::Environment created, store.CreateEnvironment(c.Param("p"), e, ActorOf(*c.key)));
    return WithETag(Json(201, storage::EnvironmentToJson(created)), created.version);
  });

  router.Add("GET", "/api/v1/projects/{p}/environments/{e}", Access::kAdmin, [&store](const Call& c) {
    TRY_ASSIGN(storage::Environment e, store.GetEnvironment(c.Param("p"), c.Param("e")));
    return WithETag(Json(200, storage::EnvironmentToJson(e)), e.version);
  });

  router.Add("PATCH", "/api/v1/projects/{p}/environments/{e}", Access::kAdmin, [&store, &s](const Call& c) {
    TRY_ASSIGN(std::optional<int64_t> if_match, IfMatch(c.req));
    TRY_ASSIGN(storage::Environment e, store.GetEnvironment(c.Param("p"), c.Param("e")));
    TRY_ASSIGN(Value body, ObjectBody(c.req));
    const Value* v;
    TRY(Want(body, "name", Value::Type::kString, &v));
    if (v) e.name = v->as_string();
    // {"approvals": {"requiredApprovals": 0..10, "allowSelfApproval": bool}} (docs/releases.md)
    TRY(Want(body, "approvals", Value::Type::kObject, &v));
    if (v) {
      for (const auto& [name, value] : v->as_object()) {
        if (name != "requiredApprovals" && name != "allowSelfApproval") {
          return ErrorResponse(400, "invalid_argument", StrCat("approvals.", name, ": unknown field (requiredApprovals, allowSelfApproval)"),
                               StrCat("approvals.", name));
        }
      }
      if (const Value* n = v->Find("requiredApprovals"); n != nullptr) {
        std::optional<int64_t> count = rules::IntegerIn(*n, 0, 10);
        if (!count.has_value()) {
          return ErrorResponse(400, "invalid_argument", "approvals.requiredApprovals: expected an integer 0..10", "approvals.requiredApprovals");
        }
        e.required_approvals = static_cast<int>(*count);
      }
      const Value* self;
      TRY(Want(*v, "allowSelfApproval", Value::Type::kBool, &self));
      if (self) e.allow_self_approval = self->as_bool();
    }
    auto updated = store.UpdateEnvironment(c.Param("p"), e, if_match.value_or(0), ActorOf(*c.key));
    if (storage::IsApprovalRequired(updated.status())) {
      return OpenChangeRequestResponse(s, c, {.kind = storage::RequestKind::kApprovalSettings,
                                              .settings = storage::ChangeRequest::Settings{e.required_approvals, e.allow_self_approval}});
    }
    if (!updated.ok()) return ErrorResponse(updated.status(), true);
    return WithETag(Json(200, storage::EnvironmentToJson(*updated)), updated->version);
  });

  router.Add("DELETE", "/api/v1/projects/{p}/environments/{e}", Access::kAdmin, [&store, &s](const Call& c) {
    TRY(store.DeleteEnvironment(c.Param("p"), c.Param("e"), ActorOf(*c.key)));
    s.hubs.Forget(c.Param("p"), c.Param("e"));  // one created again under its key starts afresh
    s.hubs.CloseRevokedStreams();               // and the streams of its keys
    return NoContent();
  });
}

}  // namespace gonfalon::server
