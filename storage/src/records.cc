#include "records.h"

#include <algorithm>
#include <charconv>
#include <initializer_list>

#include <cstdio>

#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/json_fields.h"
#include "gonfalon/rules/status_macros.h"
#include "gonfalon/rules/codec.h"

namespace gonfalon::storage {

using rules::Array;
using rules::Object;
using rules::Value;

absl::Status ValidateKey(std::string_view key, std::string_view field) {
  if (key.empty()) return rules::InvalidField(field, "is required");
  if (key.size() > 128) {
    return rules::InvalidField(field, "longer than 128 characters");
  }
  for (char c : key) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) {
      return rules::InvalidField(field, StrCat("\"", key, "\" may only contain letters, digits, '.', '_' and '-'"));
    }
  }
  return absl::OkStatus();
}

std::string_view ItemKindName(ItemKind k) { return k == ItemKind::kFlag ? "flag" : "segment"; }

std::string_view KeyKindName(KeyKind k) {
  switch (k) {
    case KeyKind::kAdmin:
      return "admin";
    case KeyKind::kServer:
      return "server";
    case KeyKind::kClient:
      return "client";
  }
  return "admin";
}

namespace {

Value Strings(const std::vector<std::string>& v) {
  Array a;
  for (const auto& s : v) a.emplace_back(s);
  return Value(std::move(a));
}

// Reads a record's or a request's members with the shared strict readers
// (rules/json_fields.h); the first error is kept and later reads do nothing.
struct Reader {
  const Value& v;
  std::string path;
  absl::Status status;

  void String(std::string_view name, std::string& out) {
    if (status.ok()) status = rules::GetString(v, name, path, out);
  }
  void Bool(std::string_view name, bool& out) {
    if (status.ok()) status = rules::GetBool(v, name, path, out);
  }
  void Int(std::string_view name, int64_t& out) {
    if (status.ok()) status = rules::GetInt64(v, name, path, out);
  }
  void OptInt(std::string_view name, std::optional<int>& out) {
    if (status.ok()) status = rules::GetOptInt(v, name, path, out);
  }
  void Strings(std::string_view name, std::vector<std::string>& out) {
    if (status.ok()) status = rules::GetStrings(v, name, path, out);
  }
  // The member if it has `type`; nullptr when absent, null or (an error kept) of another type.
  const Value* Get(std::string_view name, Value::Type type) {
    const Value* m = nullptr;
    if (status.ok()) status = rules::GetMember(v, name, path, type, m);
    return status.ok() ? m : nullptr;
  }
};

absl::Status NotObject(std::string_view what) {
  return rules::InvalidField(what, "expected an object");
}

}  // namespace

Value FlagMetaToJson(const FlagMeta& m) {
  Value v;
  v.Set("key", Value(m.key));
  v.Set("name", Value(m.name));
  v.Set("description", Value(m.description));
  v.Set("tags", Strings(m.tags));
  v.Set("temporary", Value(m.temporary));
  v.Set("maintainer", Value(m.maintainer));
  v.Set("variations", Value(Array(m.variations)));
  v.Set("clientSideAvailability",
        Value(Object{{"usingMobileKey", Value(m.client_side_availability.using_mobile_key)},
                     {"usingEnvironmentId", Value(m.client_side_availability.using_environment_id)}}));
  v.Set("archived", Value(m.archived));
  v.Set("version", Value(m.version));
  v.Set("createdMs", Value(m.created_ms));
  return v;
}

namespace {
// A member of a project-level flag that nobody reads is a typo ("nam"): refused, not ignored.
absl::Status OnlyMembers(const Value& json, const std::string& path, std::initializer_list<std::string_view> names) {
  for (const auto& [name, member] : json.as_object()) {
    if (std::find(names.begin(), names.end(), name) == names.end()) {
      return rules::InvalidField(rules::FieldPath(path, name), "unknown field (docs/api.md lists a flag's project-level fields)");
    }
  }
  return absl::OkStatus();
}
}  // namespace

absl::StatusOr<FlagMeta> FlagMetaFromJson(const Value& json) {
  if (!json.is_object()) return NotObject("(root)");
  RETURN_IF_ERROR(OnlyMembers(json, "", {"key", "name", "description", "tags", "temporary", "maintainer", "archived", "version",
                                         "createdMs", "variations", "clientSideAvailability", "defaults"}));
  if (const Value* csa = json.Find("clientSideAvailability"); csa != nullptr && csa->is_object()) {
    RETURN_IF_ERROR(OnlyMembers(*csa, "clientSideAvailability", {"usingMobileKey", "usingEnvironmentId"}));
  }
  if (const Value* d = json.Find("defaults"); d != nullptr && d->is_object()) {
    RETURN_IF_ERROR(OnlyMembers(*d, "defaults", {"offVariation", "onVariation"}));
  }
  FlagMeta m;
  Reader r{json, ""};
  r.String("key", m.key);
  r.String("name", m.name);
  r.String("description", m.description);
  r.Strings("tags", m.tags);
  r.Bool("temporary", m.temporary);
  r.String("maintainer", m.maintainer);
  r.Bool("archived", m.archived);
  r.Int("version", m.version);
  r.Int("createdMs", m.created_ms);
  if (const Value* vars = r.Get("variations", Value::Type::kArray)) {
    m.variations = vars->as_array();
  }
  if (const Value* csa = r.Get("clientSideAvailability", Value::Type::kObject)) {
    Reader c{*csa, "clientSideAvailability"};
    c.Bool("usingMobileKey", m.client_side_availability.using_mobile_key);
    c.Bool("usingEnvironmentId", m.client_side_availability.using_environment_id);
    if (!c.status.ok()) return c.status;
  }
  if (const Value* d = r.Get("defaults", Value::Type::kObject)) {
    Reader c{*d, "defaults"};
    c.OptInt("offVariation", m.default_off_variation);
    c.OptInt("onVariation", m.default_on_variation);
    if (!c.status.ok()) return c.status;
  }
  if (!r.status.ok()) return r.status;
  return m;
}

Value AuditRecordToJson(const AuditRecord& rec) {
  Value v;
  v.Set("sequence", Value(rec.sequence));
  v.Set("time", Value(rec.time_ms));
  v.Set("actor", Value(rec.actor));
  v.Set("comment", Value(rec.comment));
  Array items;
  for (const auto& it : rec.items) {
    items.push_back(Value(Object{{"kind", Value(ItemKindName(it.kind))},
                                 {"key", Value(it.key)},
                                 {"before", it.before},
                                 {"after", it.after}}));
  }
  v.Set("items", Value(std::move(items)));
  return v;
}

Value ApiKeyToJson(const ApiKey& k) {
  Value v;
  v.Set("id", Value(k.id));
  v.Set("kind", Value(KeyKindName(k.kind)));
  v.Set("name", Value(k.name));
  v.Set("prefix", Value(k.prefix));
  if (k.kind == KeyKind::kAdmin) v.Set("scope", Value(k.write ? "write" : "read"));
  if (!k.project.empty()) v.Set("project", Value(k.project));
  if (!k.environment.empty()) v.Set("environment", Value(k.environment));
  v.Set("createdMs", Value(k.created_ms));
  if (k.expires_ms != 0) v.Set("expiresMs", Value(k.expires_ms));
  v.Set("revoked", Value(k.revoked));
  return v;
}

Value ProjectToJson(const Project& p) {
  return Value(Object{{"key", Value(p.key)},
                      {"name", Value(p.name)},
                      {"description", Value(p.description)},
                      {"version", Value(p.version)},
                      {"createdMs", Value(p.created_ms)}});
}

Value EnvironmentToJson(const Environment& e) {
  return Value(Object{{"project", Value(e.project)},
                      {"key", Value(e.key)},
                      {"name", Value(e.name)},
                      {"version", Value(e.version)},
                      {"createdMs", Value(e.created_ms)},
                      {"sequence", Value(e.sequence)},
                      {"approvals", Value(Object{{"requiredApprovals", Value(static_cast<int64_t>(e.required_approvals))},
                                                 {"allowSelfApproval", Value(e.allow_self_approval)}})}});
}

namespace internal {

std::optional<int64_t> ParseSeqKey(std::string_view hex) {
  uint64_t n = 0;
  if (hex.size() != 16) return std::nullopt;
  auto [end, ec] = std::from_chars(hex.data(), hex.data() + hex.size(), n, 16);
  if (ec != std::errc() || end != hex.data() + hex.size()) return std::nullopt;
  return static_cast<int64_t>(n);
}

std::string SeqKey(int64_t seq) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(seq));
  return std::string(buf, 16);
}

std::string PrefixEnd(std::string prefix) {
  // The first key after every key that starts with `prefix`: drop trailing 0xff bytes (unit
  // keys hold binary iteration ids), then bump the last byte. Every prefix used here starts
  // with a printable byte, so something is left to bump.
  while (!prefix.empty() && static_cast<unsigned char>(prefix.back()) == 0xff) prefix.pop_back();
  if (!prefix.empty()) prefix.back() = static_cast<char>(prefix.back() + 1);
  return prefix;
}

absl::StatusOr<Project> ProjectFromJson(const Value& v) {
  if (!v.is_object()) return NotObject("project");
  Project p;
  Reader r{v, ""};
  r.String("key", p.key);
  r.String("name", p.name);
  r.String("description", p.description);
  r.Int("version", p.version);
  r.Int("createdMs", p.created_ms);
  if (!r.status.ok()) return r.status;
  return p;
}

absl::StatusOr<Environment> EnvironmentFromJson(const Value& v) {
  if (!v.is_object()) return NotObject("environment");
  Environment e;
  Reader r{v, ""};
  r.String("project", e.project);
  r.String("key", e.key);
  r.String("name", e.name);
  r.Int("version", e.version);
  r.Int("createdMs", e.created_ms);
  r.Int("sequence", e.sequence);
  if (const Value* a = v.Find("approvals"); a != nullptr && a->is_object()) {
    Reader ar{*a, "approvals"};
    int64_t required = 0;
    ar.Int("requiredApprovals", required);
    ar.Bool("allowSelfApproval", e.allow_self_approval);
    e.required_approvals = static_cast<int>(required);
    if (!ar.status.ok()) return ar.status;
  }
  if (!r.status.ok()) return r.status;
  return e;
}

absl::StatusOr<AuditRecord> AuditRecordFromJson(const Value& v) {
  if (!v.is_object()) return NotObject("audit record");
  AuditRecord rec;
  Reader r{v, ""};
  r.Int("sequence", rec.sequence);
  r.Int("time", rec.time_ms);
  r.String("actor", rec.actor);
  r.String("comment", rec.comment);
  if (!r.status.ok()) return r.status;
  for (const Value& it : v.Find("items") ? v.Find("items")->as_array() : Array{}) {
    AuditRecord::Item item;
    const Value* kind = it.Find("kind");
    item.kind = (kind && kind->as_string() == "segment") ? ItemKind::kSegment : ItemKind::kFlag;
    if (const Value* k = it.Find("key")) item.key = k->as_string();
    if (const Value* b = it.Find("before")) item.before = *b;
    if (const Value* a = it.Find("after")) item.after = *a;
    rec.items.push_back(std::move(item));
  }
  return rec;
}

absl::StatusOr<ApiKey> ApiKeyFromJson(const Value& v) {
  if (!v.is_object()) return NotObject("api key");
  ApiKey k;
  Reader r{v, ""};
  std::string kind, scope;
  r.String("id", k.id);
  r.String("kind", kind);
  r.String("name", k.name);
  r.String("prefix", k.prefix);
  r.String("scope", scope);
  r.String("project", k.project);
  r.String("environment", k.environment);
  r.Int("createdMs", k.created_ms);
  r.Int("expiresMs", k.expires_ms);
  r.Bool("revoked", k.revoked);
  if (!r.status.ok()) return r.status;
  k.kind = kind == "server" ? KeyKind::kServer : (kind == "client" ? KeyKind::kClient : KeyKind::kAdmin);
  k.write = scope == "write";
  return k;
}

}  // namespace internal
}  // namespace gonfalon::storage
