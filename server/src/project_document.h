#pragma once
// A project as one document, for keeping flags in Git (docs/flags-as-code.md): its flags
// (the project-level parts, and each environment's targeting), segments per environment and
// metrics, with no volatile field (versions, times) and keys sorted, so that an export is
// stable and diffs read well. And the plan that makes a project look like a document: item
// by item, field by field. Pure: the routes read and write the store (as_code_routes.cc).
//
//   {"project": "shop",
//    "flags":    {"checkout": {"variations": [false, true], "name": …, "tags": […], …,
//                              "environments": {"production": {"on": true, "rules": […], …}}}},
//    "segments": {"production": {"beta": {"included": ["u1"], …}}},
//    "metrics":  {"errors": {"eventKey": "error", "kind": "conversion", …}}}

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gonfalon/rules/model.h"
#include "gonfalon/rules/value.h"
#include "gonfalon/storage/store.h"

namespace gonfalon::server {

// What the server holds now, as read for one export or plan.
struct ProjectState {
  std::string project;
  bool exists = true;  // false: the plan creates the project
  std::vector<storage::FlagMeta> flags;  // project level
  std::vector<std::string> environments;
  std::map<std::string, rules::Environment> data;  // environment -> its flags and segments
  std::vector<storage::Metric> metrics;
};

// `v` with every object's members sorted by key, recursively.
rules::Value SortedKeys(const rules::Value& v);

// The document of `state`; only environment `only_env` when set.
rules::Value ExportDocument(const ProjectState& state, const std::optional<std::string>& only_env);

// A flag's fields that belong to the project, not to an environment.
bool IsProjectLevelFlagField(std::string_view name);

// A flag's targeting in one environment, and a segment, as the document holds them.
rules::Value FlagTargeting(const rules::Flag& f);
rules::Value SegmentDocument(const rules::Segment& s);

struct FieldChange {
  std::string path;  // "rules[0].clauses[1].values", "" for the whole item
  std::optional<rules::Value> before, after;
};
// The paths of members of `input` that `model` (input decoded and encoded again) does not
// have: fields outside Gonfalon's model. Recurses into objects and arrays of the same length;
// null members count as absent; `skip` members at the top level are not looked at.
std::vector<std::string> UnknownFields(const rules::Value& input, const rules::Value& model, const std::string& path,
                                       const std::vector<std::string_view>& skip = {});

// Every field where `after` differs from `before` (recursing into objects, and into arrays of
// the same length); an absent side is nullopt.
std::vector<FieldChange> DiffFields(const std::optional<rules::Value>& before, const std::optional<rules::Value>& after);
struct PlannedChange {
  std::string kind;         // "project", "environment", "metric", "flag" (project level), "flagTargeting", "segment"
  std::string key;
  std::string environment;  // flagTargeting and segment
  std::string action;       // "create", "change", "delete"
  std::vector<FieldChange> fields;
  rules::Value after;       // the item as it should be (create and change)
};
struct Plan {
  std::vector<PlannedChange> changes;  // metrics, flags, then each environment's items
  std::string token;                   // the versions the plan was made against
};

// The plan that makes `state` look like `doc` (deleting what the document does not list only
// with `prune`). A malformed document is InvalidArgument naming its path
// ("flags.checkout.environments.production.rules[0]"). A project or environment that does not
// exist yet is created first (changes of kind "project" and "environment").
absl::StatusOr<Plan> MakePlan(const ProjectState& state, const rules::Value& doc, bool prune);

// A digest of every version `state` holds: a plan made against other versions is stale.
std::string StateToken(const ProjectState& state);

// {"changes":[{"kind","key","environment"?,"action","fields":[{"path","before"?,"after"?}]}],
//  "planToken"}
rules::Value PlanToJson(const Plan& plan);
// That JSON for people, a line per item and per field:
//   ~ flag checkout (production) targeting
//       on: false -> true
std::string PlanJsonToText(const rules::Value& plan);

}  // namespace gonfalon::server
