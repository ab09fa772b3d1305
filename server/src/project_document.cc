#include "project_document.h"

#include <openssl/sha.h>

#include <algorithm>
#include <set>

#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/json_fields.h"
#include "gonfalon/rules/status_macros.h"
#include "gonfalon/rules/str_cat.h"

namespace gonfalon::server {

using rules::Object;
using rules::Value;

namespace {

constexpr std::string_view kProjectLevel[] = {"variations", "name", "description", "tags", "temporary",
                                              "maintainer", "clientSideAvailability", "archived"};
// Fields no document carries: they change by themselves.
constexpr std::string_view kVolatile[] = {"key", "version", "createdMs", "deleted"};

bool IsVolatile(std::string_view name) {
  return std::find(std::begin(kVolatile), std::end(kVolatile), name) != std::end(kVolatile);
}

Value Without(const Value& v, bool (*drop)(std::string_view)) {
  Object out;
  for (const auto& [name, value] : v.as_object()) {
    if (!drop(name)) out.emplace_back(name, value);
  }
  return Value(std::move(out));
}

Value MetaPart(const storage::FlagMeta& meta) { return Without(storage::FlagMetaToJson(meta), IsVolatile); }
Value EnvPart(const rules::Flag& f) {
  return Without(rules::EncodeFlag(f), [](std::string_view n) { return IsVolatile(n) || IsProjectLevelFlagField(n); });
}
Value SegmentPart(const rules::Segment& s) { return Without(rules::EncodeSegment(s), IsVolatile); }
Value MetricPart(const storage::Metric& m) { return Without(storage::MetricToJson(m), IsVolatile); }

// Every field where `after` differs from `before`, recursing into objects and into arrays of
// the same length.
void Diff(const std::optional<Value>& before, const std::optional<Value>& after, const std::string& path,
          std::vector<FieldChange>& out) {
  if (before.has_value() && after.has_value() && *before == *after) return;
  if (before.has_value() && after.has_value() && before->is_object() && after->is_object()) {
    std::set<std::string> names;
    for (const auto& [n, v] : before->as_object()) names.insert(n);
    for (const auto& [n, v] : after->as_object()) names.insert(n);
    for (const std::string& n : names) {
      const Value* b = before->Find(n);
      const Value* a = after->Find(n);
      Diff(b ? std::optional<Value>(*b) : std::nullopt, a ? std::optional<Value>(*a) : std::nullopt, rules::FieldPath(path, n), out);
    }
    return;
  }
  if (before.has_value() && after.has_value() && before->is_array() && after->is_array() &&
      before->as_array().size() == after->as_array().size()) {
    for (size_t i = 0; i < before->as_array().size(); ++i) {
      Diff(before->as_array()[i], after->as_array()[i], StrCat(path, "[", i, "]"), out);
    }
    return;
  }
  out.push_back({path, before, after});
}

absl::Status Prefixed(const absl::Status& s, const std::string& prefix) {
  return rules::WithFieldPrefix(s, prefix);
}

absl::Status NeedObject(const Value* v, const std::string& path) {
  if (v != nullptr && !v->is_object()) return rules::InvalidField(path, StrCat("expected an object, got ", rules::TypeName(v->type())));
  return absl::OkStatus();
}

// The flag as one item: the project-level part and an environment's part, with its key.
Value WholeFlag(const std::string& key, const Value& meta, const Value& env) {
  Value out = env;
  for (const auto& [name, value] : meta.as_object()) {
    if (IsProjectLevelFlagField(name) && name != "archived") out.Set(name, value);
  }
  out.Set("key", Value(key));
  return out;
}

}  // namespace

namespace {
void Unknown(const Value& input, const Value& model, const std::string& path, const std::vector<std::string_view>* skip,
             std::vector<std::string>& out) {
  if (input.is_object() && model.is_object()) {
    for (const auto& [name, value] : input.as_object()) {
      if (value.is_null() || (skip != nullptr && std::find(skip->begin(), skip->end(), name) != skip->end())) continue;
      const Value* m = model.Find(name);
      std::string p = rules::FieldPath(path, name);
      if (m == nullptr) {
        out.push_back(p);
      } else {
        Unknown(value, *m, p, nullptr, out);
      }
    }
  } else if (input.is_array() && model.is_array() && input.as_array().size() == model.as_array().size()) {
    for (size_t i = 0; i < input.as_array().size(); ++i) Unknown(input.as_array()[i], model.as_array()[i], StrCat(path, "[", i, "]"), nullptr, out);
  }
}
}  // namespace

std::vector<std::string> UnknownFields(const Value& input, const Value& model, const std::string& path,
                                       const std::vector<std::string_view>& skip) {
  std::vector<std::string> out;
  Unknown(input, model, path, &skip, out);
  return out;
}

Value FlagTargeting(const rules::Flag& f) { return EnvPart(f); }
Value SegmentDocument(const rules::Segment& s) { return SegmentPart(s); }

std::vector<FieldChange> DiffFields(const std::optional<Value>& before, const std::optional<Value>& after) {
  std::vector<FieldChange> out;
  Diff(before, after, "", out);
  return out;
}

bool IsProjectLevelFlagField(std::string_view name) {
  return std::find(std::begin(kProjectLevel), std::end(kProjectLevel), name) != std::end(kProjectLevel);
}

Value SortedKeys(const Value& v) {
  if (v.is_array()) {
    rules::Array out;
    for (const Value& e : v.as_array()) out.push_back(SortedKeys(e));
    return Value(std::move(out));
  }
  if (!v.is_object()) return v;
  Object out;
  for (const auto& [n, e] : v.as_object()) out.emplace_back(n, SortedKeys(e));
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return Value(std::move(out));
}

Value ExportDocument(const ProjectState& state, const std::optional<std::string>& only_env) {
  auto wanted = [&](const std::string& env) { return !only_env.has_value() || *only_env == env; };
  Object flags;
  for (const storage::FlagMeta& meta : state.flags) {
    Value f = MetaPart(meta);
    Object envs;
    for (const auto& [env, data] : state.data) {
      if (!wanted(env)) continue;
      auto it = data.flags.find(meta.key);
      if (it != data.flags.end()) envs.emplace_back(env, EnvPart(it->second));
    }
    f.Set("environments", Value(std::move(envs)));
    flags.emplace_back(meta.key, std::move(f));
  }
  Object segments;
  for (const auto& [env, data] : state.data) {
    if (!wanted(env)) continue;
    Object in_env;
    for (const auto& [key, seg] : data.segments) in_env.emplace_back(key, SegmentPart(seg));
    segments.emplace_back(env, Value(std::move(in_env)));
  }
  Object metrics;
  for (const storage::Metric& m : state.metrics) metrics.emplace_back(m.key, MetricPart(m));
  return SortedKeys(Value(Object{{"project", Value(state.project)},
                                 {"flags", Value(std::move(flags))},
                                 {"segments", Value(std::move(segments))},
                                 {"metrics", Value(std::move(metrics))}}));
}

absl::StatusOr<Plan> MakePlan(const ProjectState& state, const Value& doc, bool prune) {
  RETURN_IF_ERROR(rules::RequireObject(doc, ""));
  for (const auto& [name, value] : doc.as_object()) {
    if (name != "project" && name != "flags" && name != "segments" && name != "metrics") {
      return rules::InvalidField(name, "unknown member (project, flags, segments, metrics)");
    }
  }
  if (const Value* p = doc.Find("project"); p != nullptr && !(p->is_string() && p->as_string() == state.project)) {
    return rules::InvalidField("project", StrCat("the document is for project ", rules::ToJson(*p), ", not \"", state.project, "\""));
  }
  const Value* flags = doc.Find("flags");
  const Value* segments = doc.Find("segments");
  const Value* metrics = doc.Find("metrics");
  RETURN_IF_ERROR(NeedObject(flags, "flags"));
  RETURN_IF_ERROR(NeedObject(segments, "segments"));
  RETURN_IF_ERROR(NeedObject(metrics, "metrics"));
  Plan plan;
  plan.token = StateToken(state);
  if (!state.exists) plan.changes.push_back({"project", state.project, "", "create", {}, Value()});
  // An environment the project does not have yet is created, empty (with every flag, off).
  std::set<std::string> new_envs;
  const rules::Environment kEmpty;
  auto known_env = [&](const std::string& env, const std::string& path) -> absl::Status {
    RETURN_IF_ERROR(storage::ValidateKey(env, path));
    if (std::find(state.environments.begin(), state.environments.end(), env) == state.environments.end() && new_envs.insert(env).second) {
      plan.changes.push_back({"environment", env, "", "create", {}, Value()});
    }
    return absl::OkStatus();
  };
  auto data_of = [&](const std::string& env) -> const rules::Environment& {
    auto it = state.data.find(env);
    return it == state.data.end() ? kEmpty : it->second;
  };

  // Metrics.
  std::set<std::string> listed_metrics;
  if (metrics != nullptr) {
    for (const auto& [key, body] : metrics->as_object()) {
      std::string path = StrCat("metrics.", key);
      RETURN_IF_ERROR(NeedObject(&body, path));
      Value full = body;
      full.Set("key", Value(key));
      absl::StatusOr<storage::Metric> m = storage::MetricFromJson(full);
      if (!m.ok()) return Prefixed(m.status(), path);
      RETURN_IF_ERROR(storage::ValidateKey(key, path));
      listed_metrics.insert(key);
      Value after = MetricPart(*m);
      auto current = std::find_if(state.metrics.begin(), state.metrics.end(), [&](const storage::Metric& x) { return x.key == key; });
      PlannedChange c{"metric", key, "", current == state.metrics.end() ? "create" : "change", {}, after};
      Diff(current == state.metrics.end() ? std::nullopt : std::optional<Value>(MetricPart(*current)), after, "", c.fields);
      if (!c.fields.empty()) plan.changes.push_back(std::move(c));
    }
  }
  if (prune) {
    for (const storage::Metric& m : state.metrics) {
      if (!listed_metrics.count(m.key)) plan.changes.push_back({"metric", m.key, "", "delete", {{"", MetricPart(m), std::nullopt}}, Value()});
    }
  }

  // Flags: the project-level part, then each environment's.
  std::set<std::string> listed_flags;
  std::vector<PlannedChange> targeting;
  if (flags != nullptr) {
    for (const auto& [key, body] : flags->as_object()) {
      std::string path = StrCat("flags.", key);
      RETURN_IF_ERROR(NeedObject(&body, path));
      RETURN_IF_ERROR(storage::ValidateKey(key, path));
      listed_flags.insert(key);
      Value meta_doc(Object{});
      const Value* envs = nullptr;
      for (const auto& [name, value] : body.as_object()) {
        if (name == "environments") {
          envs = &value;
        } else if (IsProjectLevelFlagField(name)) {
          meta_doc.Set(name, value);
        } else {
          return rules::InvalidField(StrCat(path, ".", name),
                                     "belongs to an environment: put it under \"environments\": {\"<environment>\": {…}}");
        }
      }
      meta_doc.Set("key", Value(key));
      absl::StatusOr<storage::FlagMeta> meta = storage::FlagMetaFromJson(meta_doc);
      if (!meta.ok()) return Prefixed(meta.status(), path);
      Value meta_after = MetaPart(*meta);
      auto current = std::find_if(state.flags.begin(), state.flags.end(), [&](const storage::FlagMeta& m) { return m.key == key; });
      bool exists = current != state.flags.end();
      PlannedChange c{"flag", key, "", exists ? "change" : "create", {}, meta_after};
      Diff(exists ? std::optional<Value>(MetaPart(*current)) : std::nullopt, meta_after, "", c.fields);
      if (!c.fields.empty()) plan.changes.push_back(std::move(c));
      RETURN_IF_ERROR(NeedObject(envs, StrCat(path, ".environments")));
      if (envs == nullptr) continue;
      for (const auto& [env, env_body] : envs->as_object()) {
        std::string env_path = StrCat(path, ".environments.", env);
        RETURN_IF_ERROR(known_env(env, env_path));
        RETURN_IF_ERROR(NeedObject(&env_body, env_path));
        for (const auto& [name, value] : env_body.as_object()) {
          if (IsProjectLevelFlagField(name)) {
            return rules::InvalidField(StrCat(env_path, ".", name), "belongs to the flag, not to an environment: put it beside \"environments\"");
          }
        }
        const rules::Environment& data = data_of(env);
        auto now = data.flags.find(key);
        std::optional<Value> before;
        if (now != data.flags.end()) before = EnvPart(now->second);
        Value wanted = Without(env_body, IsVolatile);
        // A document without a salt keeps the one the flag has (bucketing stays put).
        if (wanted.Find("salt") == nullptr && before.has_value() && before->Find("salt") != nullptr) {
          wanted.Set("salt", *before->Find("salt"));
        }
        // Checked and normalized as the store would take it.
        absl::StatusOr<rules::Flag> decoded = rules::DecodeFlag(WholeFlag(key, meta_after, wanted), {.strict = true});
        if (!decoded.ok()) return Prefixed(decoded.status(), env_path);
        Value after = EnvPart(*decoded);
        // A member the model does not have is a mistake (a typo would otherwise do nothing).
        if (std::vector<std::string> unknown = UnknownFields(env_body, after, env_path, {"salt", "key", "version", "deleted"}); !unknown.empty()) {
          return rules::InvalidField(unknown[0], "unknown field: not part of a flag's targeting (docs/data-model.md)");
        }
        if (env_body.Find("salt") == nullptr && !before.has_value()) after.Erase("salt");  // chosen by the store
        PlannedChange t{"flagTargeting", key, env, before.has_value() ? "change" : "create", {}, WholeFlag(key, meta_after, after)};
        Diff(before, after, "", t.fields);
        if (!before.has_value()) {
          // A new flag starts off in every environment; only what the document sets shows.
          t.fields.clear();
          Diff(Value(Object{}), Without(after, [](std::string_view n) { return n == "salt"; }), "", t.fields);
        }
        if (!t.fields.empty()) targeting.push_back(std::move(t));
      }
    }
  }
  // Environments the document speaks of: prune deletes segments only there.
  std::set<std::string> mentioned;
  if (segments != nullptr) {
    for (const auto& [env, in_env] : segments->as_object()) {
      std::string env_path = StrCat("segments.", env);
      RETURN_IF_ERROR(known_env(env, env_path));
      RETURN_IF_ERROR(NeedObject(&in_env, env_path));
      mentioned.insert(env);
      const rules::Environment& data = data_of(env);
      for (const auto& [key, body] : in_env.as_object()) {
        std::string path = StrCat(env_path, ".", key);
        RETURN_IF_ERROR(NeedObject(&body, path));
        RETURN_IF_ERROR(storage::ValidateKey(key, path));
        Value wanted = Without(body, IsVolatile);
        auto now = data.segments.find(key);
        std::optional<Value> before;
        if (now != data.segments.end()) before = SegmentPart(now->second);
        if (wanted.Find("salt") == nullptr && before.has_value() && before->Find("salt") != nullptr) wanted.Set("salt", *before->Find("salt"));
        Value whole = wanted;
        whole.Set("key", Value(key));
        absl::StatusOr<rules::Segment> decoded = rules::DecodeSegment(whole, {.strict = true});
        if (!decoded.ok()) return Prefixed(decoded.status(), path);
        Value after = SegmentPart(*decoded);
        if (std::vector<std::string> unknown = UnknownFields(body, after, path, {"salt", "key", "version", "deleted"}); !unknown.empty()) {
          return rules::InvalidField(unknown[0], "unknown field: not part of a segment (docs/data-model.md)");
        }
        if (body.Find("salt") == nullptr && !before.has_value()) after.Erase("salt");
        PlannedChange c{"segment", key, env, before.has_value() ? "change" : "create", {}, after};
        Diff(before, after, "", c.fields);
        if (!c.fields.empty()) targeting.push_back(std::move(c));
      }
      if (prune) {
        for (const auto& [key, seg] : data.segments) {
          if (!in_env.Find(key)) targeting.push_back({"segment", key, env, "delete", {{"", SegmentPart(seg), std::nullopt}}, Value()});
        }
      }
    }
  }
  for (PlannedChange& t : targeting) plan.changes.push_back(std::move(t));
  if (prune) {
    for (const storage::FlagMeta& m : state.flags) {
      if (!listed_flags.count(m.key)) plan.changes.push_back({"flag", m.key, "", "delete", {{"", MetaPart(m), std::nullopt}}, Value()});
    }
  }
  // In the order they are applied: what holds the rest first, deleted flags last.
  auto rank = [](const PlannedChange& c) {
    if (c.kind == "project") return 0;
    if (c.kind == "environment") return 1;
    if (c.kind == "metric") return 2;
    if (c.kind == "flag") return c.action == "delete" ? 5 : 3;
    return 4;
  };
  std::stable_sort(plan.changes.begin(), plan.changes.end(), [&](const PlannedChange& a, const PlannedChange& b) { return rank(a) < rank(b); });
  return plan;
}

std::string StateToken(const ProjectState& state) {
  std::string text;
  for (const storage::FlagMeta& m : state.flags) text += StrCat("f/", m.key, "@", m.version, ";");
  for (const storage::Metric& m : state.metrics) text += StrCat("m/", m.key, "@", m.version, ";");
  for (const auto& [env, data] : state.data) {
    for (const auto& [key, f] : data.flags) text += StrCat("e/", env, "/f/", key, "@", f.version, ";");
    for (const auto& [key, s] : data.segments) text += StrCat("e/", env, "/s/", key, "@", s.version, ";");
  }
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 12; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 15]);
  }
  return out;
}

Value PlanToJson(const Plan& plan) {
  rules::Array changes;
  for (const PlannedChange& c : plan.changes) {
    rules::Array fields;
    for (const FieldChange& f : c.fields) {
      Value field(Object{{"path", Value(f.path)}});
      if (f.before.has_value()) field.Set("before", *f.before);
      if (f.after.has_value()) field.Set("after", *f.after);
      fields.push_back(std::move(field));
    }
    Value change(Object{{"kind", Value(c.kind)}, {"key", Value(c.key)}, {"action", Value(c.action)}, {"fields", Value(std::move(fields))}});
    if (!c.environment.empty()) change.Set("environment", Value(c.environment));
    changes.push_back(std::move(change));
  }
  return Value(Object{{"changes", Value(std::move(changes))}, {"planToken", Value(plan.token)}});
}

std::string PlanJsonToText(const Value& plan) {
  const Value* changes = plan.Find("changes");
  if (changes == nullptr || !changes->is_array() || changes->as_array().empty()) {
    return "No changes: the project matches the document.\n";
  }
  auto str = [](const Value& v, std::string_view name) {
    const Value* m = v.Find(name);
    return m != nullptr && m->is_string() ? m->as_string() : std::string();
  };
  std::string out;
  for (const Value& c : changes->as_array()) {
    std::string action = str(c, "action"), kind = str(c, "kind"), env = str(c, "environment");
    char mark = action == "create" ? '+' : action == "delete" ? '-' : '~';
    out += StrCat(mark, " ", kind == "flagTargeting" ? "flag" : kind, " ", str(c, "key"), env.empty() ? "" : StrCat(" (", env, ")"),
                  kind == "flagTargeting" ? " targeting" : "", "\n");
    const Value* fields = c.Find("fields");
    if (action == "delete" || fields == nullptr || !fields->is_array()) continue;
    for (const Value& f : fields->as_array()) {
      std::string name = str(f, "path").empty() ? "(all)" : str(f, "path");
      const Value* before = f.Find("before");
      const Value* after = f.Find("after");
      if (before != nullptr && after != nullptr) {
        out += StrCat("    ", name, ": ", rules::ToJson(*before), " -> ", rules::ToJson(*after), "\n");
      } else if (after != nullptr) {
        out += StrCat("    + ", name, ": ", rules::ToJson(*after), "\n");
      } else if (before != nullptr) {
        out += StrCat("    - ", name, ": ", rules::ToJson(*before), "\n");
      }
    }
  }
  size_t n = changes->as_array().size();
  out += StrCat(n, n == 1 ? " change.\n" : " changes.\n");
  return out;
}

}  // namespace gonfalon::server
