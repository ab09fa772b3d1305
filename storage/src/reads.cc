#include "rocks_store.h"

#include <optional>
#include <thread>
#include <vector>

#include "gonfalon/rules/change_set.h"
#include "gonfalon/rules/parallel_threads.h"

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
  // The scan only collects the stored JSON; parsing and decoding, most of a load's time
  // (~1 s at 100,000 flags), run on every core, each item alone.
  struct Stored {
    std::string key;
    std::string json;
    absl::Status status;
    std::optional<rules::Flag> flag;
    std::optional<rules::Segment> segment;
  };
  std::vector<Stored> items;
  RETURN_IF_ERROR(Scan(kItems, EnvPrefix(project, env), snap, [&](std::string_view k, std::string_view v) {
    items.push_back({std::string(k), std::string(v), absl::OkStatus(), std::nullopt, std::nullopt});
    return absl::OkStatus();
  }, /*start=*/{}, /*fill_cache=*/false));
  auto decode = [&](Stored& item) -> absl::Status {
    std::string_view k = item.key;
    ASSIGN_OR_RETURN(Value json, ParseStored(kItems, k, item.json));
    std::string().swap(item.json);
    // "{p}/{e}/{f|s}/{key}": keys never contain '/', so the kind letter precedes the last one.
    if (k[k.rfind('/') - 1] == 'f') {
      ASSIGN_OR_RETURN(item.flag, DecodeStoredFlag(json, k));
    } else {
      ASSIGN_OR_RETURN(item.segment, DecodeStoredSegment(json, k));
    }
    return absl::OkStatus();
  };
  rules::RunEach(items.size(), rules::ThreadsParallelFor(static_cast<int>(std::thread::hardware_concurrency())),
                 [&](size_t i) { items[i].status = decode(items[i]); });
  rules::Environment out;
  out.sequence = e.sequence;
  for (Stored& item : items) {
    RETURN_IF_ERROR(item.status);  // the first bad item in key order, as a serial read would say
    if (item.flag.has_value()) {
      std::string key = item.flag->key;
      out.flags.emplace_hint(out.flags.end(), std::move(key), *std::move(item.flag));
    } else {
      std::string key = item.segment->key;
      out.segments.emplace_hint(out.segments.end(), std::move(key), *std::move(item.segment));
    }
  }
  return out;
}

}  // namespace gonfalon::storage::internal
