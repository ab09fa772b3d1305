#include "rocks_store.h"

#include "absl/container/flat_hash_map.h"
#include "gonfalon/rules/change_set.h"

namespace gonfalon::storage::internal {

absl::StatusOr<HistoryPage> RocksStore::History(std::string_view project, std::string_view env, std::optional<ItemKind> kind, std::optional<std::string> item_key, std::optional<int64_t> before, int limit) {
  RETURN_IF_ERROR(GetEnvironment(project, env).status());
  limit = std::clamp(limit, 1, 1000);
  SnapshotHolder snap(db_);
  std::vector<int64_t> seqs;
  std::string prefix = item_key.has_value()
                           ? AuditIndexPrefix(project, env, kind.value_or(ItemKind::kFlag), *item_key)
                           : EnvPrefix(project, env);
  Cf cf = item_key.has_value() ? kAuditIndex : kAudit;
  std::string upper = before.has_value() ? StrCat(prefix, SeqKey(std::max<int64_t>(*before, 0)))
                                         : PrefixEnd(prefix);
  rocksdb::ReadOptions ro;
  ro.snapshot = snap.get();
  rocksdb::Slice lower_slice(prefix), upper_slice(upper);
  ro.iterate_lower_bound = &lower_slice;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cfs_[cf]));
  for (it->SeekToLast(); it->Valid() && static_cast<int>(seqs.size()) <= limit; it->Prev()) {
    std::string_view k(it->key().data(), it->key().size());
    if (!item_key.has_value() && k.size() != prefix.size() + 16) continue;
    std::optional<int64_t> seq = ParseSeqKey(k.substr(k.size() - 16));
    if (!seq.has_value()) return absl::DataLossError(StrCat("history key \"", k, "\" does not end in a sequence"));
    seqs.push_back(*seq);
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "reading history"));
  HistoryPage page;
  if (static_cast<int>(seqs.size()) > limit) {
    seqs.pop_back();
    page.next_after = seqs.back();
  }
  for (int64_t s : seqs) {
    ASSIGN_OR_RETURN(auto rec, ReadAudit(project, env, s, snap.get(), /*with_after=*/true));
    if (rec.has_value()) page.records.push_back(std::move(*rec));
  }
  return page;
}

absl::StatusOr<rules::Environment> RocksStore::EnvironmentAt(std::string_view project, std::string_view env, int64_t sequence) {
  SnapshotHolder snap(db_);
  return EnvironmentAtSnapshot(project, env, sequence, snap.get());
}

absl::StatusOr<int64_t> RocksStore::SequenceAtTime(std::string_view project, std::string_view env, int64_t time_ms) {
  SnapshotHolder snap(db_);
  ASSIGN_OR_RETURN(Environment e, GetEnvironmentAt(project, env, snap.get()));
  std::string prefix = EnvPrefix(project, env);
  rocksdb::ReadOptions ro;
  ro.snapshot = snap.get();
  std::string upper = PrefixEnd(prefix);
  rocksdb::Slice lower_slice(prefix), upper_slice(upper);
  ro.iterate_lower_bound = &lower_slice;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cfs_[kAudit]));
  int64_t oldest = -1;
  for (it->SeekToLast(); it->Valid(); it->Prev()) {
    std::string_view k(it->key().data(), it->key().size());
    ASSIGN_OR_RETURN(Value json, ParseStored(kAudit, k, std::string_view(it->value().data(), it->value().size())));
    ASSIGN_OR_RETURN(AuditRecord rec, Decoded(AuditRecordFromJson(json), kAudit, k));
    if (rec.time_ms <= time_ms) return rec.sequence;
    oldest = rec.sequence;
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "reading history"));
  if (oldest == 1 || e.sequence == 0) return 0;  // before the first change: empty
  return absl::OutOfRangeError(StrCat("time ", time_ms, " is older than the retained history"));
}

absl::StatusOr<RestorePlan> RocksStore::Restore(std::string_view project, std::string_view env, int64_t sequence, std::optional<ItemKind> only_kind, std::optional<std::string> only_key, bool dry_run, const Actor& actor, std::string_view comment) {
  SnapshotHolder snap(db_);
  ASSIGN_OR_RETURN(rules::Environment target, EnvironmentAtSnapshot(project, env, sequence, snap.get()));
  ASSIGN_OR_RETURN(rules::Environment current, LoadAt(project, env, snap.get()));
  RestorePlan plan;
  plan.target_sequence = sequence;
  ChangeSet cs;
  cs.project = std::string(project);
  cs.environment = std::string(env);
  cs.actor = actor;
  cs.comment = comment.empty() ? StrCat("restore to sequence ", sequence)
                               : StrCat(comment, " (restore to sequence ", sequence, ")");
  auto wanted = [&](ItemKind k, const std::string& key) {
    return (!only_kind.has_value() || *only_kind == k) && (!only_key.has_value() || *only_key == key);
  };
  // Flags: targeting only (variations stay the project's); flags created or deleted since at
  // the project level are left alone.
  for (const auto& [key, now] : current.flags) {
    auto then = target.flags.find(key);
    if (!wanted(ItemKind::kFlag, key) || then == target.flags.end()) continue;
    rules::Flag restored = then->second;
    restored.variations = now.variations;
    restored.version = now.version;
    restored.deleted = now.deleted;
    restored.management = now.management;
    restored.client_side_availability = now.client_side_availability;
    if (restored == now) continue;
    Value after = rules::EncodeFlag(restored);
    plan.items.push_back({ItemKind::kFlag, key, rules::EncodeFlag(now), after});
    cs.items.push_back({ItemKind::kFlag, key, now.version, after, false});
  }
  for (const auto& [key, then] : target.segments) {
    if (!wanted(ItemKind::kSegment, key)) continue;
    auto now = current.segments.find(key);
    rules::Segment restored = then;
    restored.version = now == current.segments.end() ? 0 : now->second.version;
    if (now != current.segments.end() && restored == now->second) continue;
    Value after = rules::EncodeSegment(restored);
    Value before = now == current.segments.end() ? Value() : rules::EncodeSegment(now->second);
    plan.items.push_back({ItemKind::kSegment, key, before, after});
    cs.items.push_back({ItemKind::kSegment, key, restored.version, after, false});
  }
  for (const auto& [key, now] : current.segments) {
    if (!wanted(ItemKind::kSegment, key) || target.segments.count(key) != 0) continue;
    plan.items.push_back({ItemKind::kSegment, key, rules::EncodeSegment(now), Value()});
    cs.items.push_back({ItemKind::kSegment, key, now.version, std::nullopt, true});
  }
  if (dry_run || cs.items.empty()) return plan;
  ASSIGN_OR_RETURN(AppliedChangeSet applied, Apply(cs));
  plan.applied = std::move(applied);
  return plan;
}

absl::StatusOr<std::optional<AuditRecord>> RocksStore::ReadAudit(std::string_view p, std::string_view e, int64_t seq,
                                                                   const rocksdb::Snapshot* snap, bool with_after) {
  std::string key = StrCat(EnvPrefix(p, e), SeqKey(seq));
  ASSIGN_OR_RETURN(auto v, GetJson(kAudit, key, snap));
  if (!v.has_value()) return std::optional<AuditRecord>();
  Value* items = v->FindMutable("items");
  bool missing_after = false;
  if (items != nullptr && items->is_array()) {
    for (const Value& item : items->as_array()) missing_after = missing_after || item.Find("after") == nullptr;
  }
  if (with_after && missing_after) {
    ASSIGN_OR_RETURN(auto log, Get(kChangeLog, key, snap));
    if (!log.has_value()) return absl::DataLossError(StrCat("change log entry \"", key, "\" is missing for its audit record"));
    absl::StatusOr<rules::ChangeSetEvent> event = rules::DecodeChangeSetEvent(*log);
    if (!event.ok()) return absl::DataLossError(StrCat("corrupt value in change_log at key \"", key, "\": ", event.status().message()));
    // The change set's items by "kind/key" (a bulk change set holds thousands).
    absl::flat_hash_map<std::string, rules::ChangedItem*> by_item;
    for (rules::ChangedItem& changed : event->items) {
      by_item[StrCat(changed.kind == rules::ChangedKind::kFlag ? "flag" : "segment", "/", changed.key)] = &changed;
    }
    for (Value& item : items->mutable_array()) {
      if (item.Find("after") != nullptr) continue;
      const Value* kind = item.Find("kind");
      const Value* item_key = item.Find("key");
      Value after;  // null: deleted
      if (kind != nullptr && kind->is_string() && item_key != nullptr && item_key->is_string()) {
        auto it = by_item.find(StrCat(kind->as_string(), "/", item_key->as_string()));
        if (it != by_item.end() && it->second->data.has_value()) after = std::move(*it->second->data);
      }
      item.Set("after", std::move(after));
    }
  }
  ASSIGN_OR_RETURN(AuditRecord rec, Decoded(AuditRecordFromJson(*v), kAudit, key));
  return std::optional<AuditRecord>(std::move(rec));
}

absl::StatusOr<rules::Environment> RocksStore::EnvironmentAtSnapshot(std::string_view project, std::string_view env, int64_t sequence, const rocksdb::Snapshot* snap) {
  ASSIGN_OR_RETURN(Environment e, GetEnvironmentAt(project, env, snap));
  if (sequence < 0 || sequence > e.sequence) {
    return absl::OutOfRangeError(
        StrCat("sequence ", sequence, " is not in this environment's history (now at ", e.sequence, ")"));
  }
  // Start from now and undo change sets newest first, with the audit's before images.
  std::map<std::pair<ItemKind, std::string>, Value> state;
  {
    ASSIGN_OR_RETURN(rules::Environment now, LoadAt(project, env, snap));
    for (auto& [k, f] : now.flags) state[{ItemKind::kFlag, k}] = rules::EncodeFlag(f);
    for (auto& [k, s] : now.segments) state[{ItemKind::kSegment, k}] = rules::EncodeSegment(s);
  }
  for (int64_t s = e.sequence; s > sequence; --s) {
    ASSIGN_OR_RETURN(auto rec, ReadAudit(project, env, s, snap));
    if (!rec.has_value()) {
      return absl::OutOfRangeError(
          StrCat("sequence ", sequence, " is older than the retained history"));
    }
    for (const auto& it : rec->items) {
      if (it.before.is_null()) {
        state.erase({it.kind, it.key});
      } else {
        state[{it.kind, it.key}] = it.before;
      }
    }
  }
  rules::Environment out;
  out.sequence = sequence;
  for (const auto& [id, json] : state) {
    std::string where = ItemKey(project, env, id.first, id.second);
    if (id.first == ItemKind::kFlag) {
      ASSIGN_OR_RETURN(rules::Flag f, DecodeStoredFlag(json, where));
      out.flags.emplace(id.second, std::move(f));
    } else {
      ASSIGN_OR_RETURN(rules::Segment sg, DecodeStoredSegment(json, where));
      out.segments.emplace(id.second, std::move(sg));
    }
  }
  return out;
}

}  // namespace gonfalon::storage::internal
