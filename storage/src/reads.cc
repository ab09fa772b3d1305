#include "rocks_store.h"

#include "gonfalon/rules/change_set.h"

namespace gonfalon::storage::internal {

absl::StatusOr<rules::Flag> RocksStore::GetFlag(std::string_view project, std::string_view env, std::string_view key) {
  std::string k = ItemKey(project, env, ItemKind::kFlag, key);
  ASSIGN_OR_RETURN(auto v, GetJson(kItems, k));
  if (!v.has_value()) {
    RETURN_IF_ERROR(GetEnvironment(project, env).status());
    return absl::NotFoundError(StrCat("flag \"", key, "\" does not exist in project \"", project, "\""));
  }
  return DecodeStoredFlag(*v, k);
}

absl::StatusOr<rules::Segment> RocksStore::GetSegment(std::string_view project, std::string_view env, std::string_view key) {
  std::string k = ItemKey(project, env, ItemKind::kSegment, key);
  ASSIGN_OR_RETURN(auto v, GetJson(kItems, k));
  if (!v.has_value()) {
    RETURN_IF_ERROR(GetEnvironment(project, env).status());
    return absl::NotFoundError(StrCat("segment \"", key, "\" does not exist in environment \"", env, "\""));
  }
  return DecodeStoredSegment(*v, k);
}

absl::StatusOr<rules::Environment> RocksStore::LoadEnvironment(std::string_view project, std::string_view env) {
  SnapshotHolder snap(db_);
  return LoadAt(project, env, snap.get());
}

absl::StatusOr<int64_t> RocksStore::Sequence(std::string_view project, std::string_view env) {
  ASSIGN_OR_RETURN(Environment e, GetEnvironment(project, env));
  return e.sequence;
}

absl::StatusOr<std::vector<std::string>> RocksStore::ChangesSince(std::string_view project, std::string_view env, int64_t after) {
  SnapshotHolder snap(db_);
  ASSIGN_OR_RETURN(Environment e, GetEnvironmentAt(project, env, snap.get()));
  if (after == e.sequence) return std::vector<std::string>{};
  if (after < 0 || after > e.sequence) {
    return absl::OutOfRangeError(
        StrCat("sequence ", after, " is not in this environment's history (now at ", e.sequence, ")"));
  }
  std::vector<std::string> out;
  std::string prefix = EnvPrefix(project, env);
  RETURN_IF_ERROR(Scan(kChangeLog, prefix, snap.get(),
                       [&](std::string_view k, std::string_view v) {
                         out.emplace_back(v);
                         return absl::OkStatus();
                       },
                       StrCat(prefix, SeqKey(after + 1))));
  if (static_cast<int64_t>(out.size()) != e.sequence - after) {
    return absl::OutOfRangeError(StrCat("sequence ", after,
                                        " is older than the retained change log; a full update is needed"));
  }
  return out;
}

absl::StatusOr<Environment> RocksStore::GetEnvironmentAt(std::string_view project, std::string_view env, const rocksdb::Snapshot* snap) {
  std::string key = StrCat(project, "/", env);
  ASSIGN_OR_RETURN(auto v, GetJson(kEnvironments, key, snap));
  if (!v.has_value()) {
    return absl::NotFoundError(StrCat("environment \"", env, "\" does not exist in project \"", project, "\""));
  }
  return Decoded(EnvironmentFromJson(*v), kEnvironments, key);
}

absl::StatusOr<rules::Environment> RocksStore::LoadAt(std::string_view project, std::string_view env, const rocksdb::Snapshot* snap) {
  ASSIGN_OR_RETURN(Environment e, GetEnvironmentAt(project, env, snap));
  rules::Environment out;
  out.sequence = e.sequence;
  RETURN_IF_ERROR(Scan(kItems, EnvPrefix(project, env), snap, [&](std::string_view k, std::string_view v) {
    ASSIGN_OR_RETURN(Value json, ParseStored(kItems, k, v));
    // "{p}/{e}/{f|s}/{key}": keys never contain '/', so the kind letter precedes the last one.
    if (k[k.rfind('/') - 1] == 'f') {
      ASSIGN_OR_RETURN(rules::Flag f, DecodeStoredFlag(json, k));
      std::string key = f.key;
      out.flags.emplace(std::move(key), std::move(f));
    } else {
      ASSIGN_OR_RETURN(rules::Segment s, DecodeStoredSegment(json, k));
      std::string key = s.key;
      out.segments.emplace(std::move(key), std::move(s));
    }
    return absl::OkStatus();
  }, /*start=*/{}, /*fill_cache=*/false));
  return out;
}

}  // namespace gonfalon::storage::internal
