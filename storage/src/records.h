#pragma once
#include <optional>
// JSON forms of the records the store keeps, and the key layout (docs/storage.md).

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "gonfalon/rules/str_cat.h"
#include "gonfalon/storage/store.h"

namespace gonfalon::storage::internal {

// Column families, in the order they are opened.
enum Cf : int {
  kMeta = 0,      // "schema_version"
  kProjects,      // {p}
  kEnvironments,  // {p}/{e}
  kFlagMeta,      // {p}/{f}: the project-level part of flags
  kItems,         // {p}/{e}/f/{key}, {p}/{e}/s/{key}
  kChangeLog,     // {p}/{e}/{seq:016x}: the `changes` event payload
  kAudit,         // {p}/{e}/{seq:016x}: audit record
  kAuditIndex,    // {p}/{e}/{f|s}/{key}/{seq:016x}: empty; per-item history
  kKeys,          // id/{id}: ApiKey; hash/{sha256}: id
  kEvents,        // {p}/{e}/x/{flag}/{hour:016x}/{variation}, {p}/{e}/m/{event}/{hour:016x}
  kExperiments,   // metrics, iterations, unit states and sums (experiment_records.h)
  kAutomation,    // sc/{p}/{e}/{id}: scheduled change; due/{at:016x}/{p}/{e}/{id}: empty, while scheduled
  kCfCount,
};
inline constexpr const char* kCfNames[kCfCount] = {
    "default", "projects", "environments", "flag_meta", "items",
    "changelog", "audit", "audit_index", "api_keys", "event_counts", "experiments", "automation"};

inline constexpr int kSchemaVersion = 1;

std::string SeqKey(int64_t seq);  // 16 lowercase hex digits: sorts numerically
// The inverse of SeqKey; nullopt when `hex` is not 16 hex digits (a corrupt key).
std::optional<int64_t> ParseSeqKey(std::string_view hex);
inline std::string EnvPrefix(std::string_view p, std::string_view e) { return StrCat(p, "/", e, "/"); }
inline char KindLetter(ItemKind k) { return k == ItemKind::kFlag ? 'f' : 's'; }
inline std::string ItemKey(std::string_view p, std::string_view e, ItemKind k, std::string_view key) {
  return StrCat(p, "/", e, "/", KindLetter(k), "/", key);
}
inline std::string ItemPrefix(std::string_view p, std::string_view e, ItemKind k) {
  return StrCat(p, "/", e, "/", KindLetter(k), "/");
}
inline std::string AuditIndexPrefix(std::string_view p, std::string_view e, ItemKind k,
                                    std::string_view key) {
  return StrCat(p, "/", e, "/", KindLetter(k), "/", key, "/");
}
// The smallest key greater than every key with this prefix.
std::string PrefixEnd(std::string prefix);

absl::StatusOr<Project> ProjectFromJson(const rules::Value& v);
absl::StatusOr<Environment> EnvironmentFromJson(const rules::Value& v);
absl::StatusOr<AuditRecord> AuditRecordFromJson(const rules::Value& v);
absl::StatusOr<ApiKey> ApiKeyFromJson(const rules::Value& v);
absl::StatusOr<ScheduledChange> ScheduledChangeFromJson(const rules::Value& v);
absl::StatusOr<ReleasePlan> ReleasePlanFromJson(const rules::Value& v);
// Change set items as the store keeps them ({"kind","key","expectVersion"?,"delete"?,"data"?}),
// and back from the "items" member of `v`.
rules::Value ItemChangesToJson(const std::vector<ItemChange>& items);
absl::StatusOr<std::vector<ItemChange>> ItemChangesFromJson(const rules::Value& v);

}  // namespace gonfalon::storage::internal
