#include "rocks_store.h"

#include "gonfalon/rules/change_set.h"
#include "gonfalon/rules/evaluator.h"

namespace gonfalon::storage::internal {

namespace {

// Whether an upsert leaves the item as it was (its version aside): one copy, of `after`, with
// the old version put back.
bool SameExceptVersion(const std::optional<Value>& before, const std::optional<Value>& after) {
  if (!before.has_value() || !after.has_value()) return false;
  Value b = *after;
  if (const Value* v = before->Find("version")) {
    b.Set("version", *v);
  } else {
    b.Erase("version");
  }
  return *before == b;
}

}  // namespace

absl::Status RocksStore::CheckItemShapes(const std::vector<ItemChange>& items) {
  if (items.empty()) {
    return rules::InvalidField("items", "a change set needs at least one item");
  }
  std::set<std::pair<ItemKind, std::string>> seen;
  for (size_t i = 0; i < items.size(); ++i) {
    const ItemChange& it = items[i];
    std::string path = StrCat("items[", i, "]");
    RETURN_IF_ERROR(ValidateKey(it.key, StrCat(path, ".key")));
    if (!seen.insert({it.kind, it.key}).second) {
      return rules::InvalidField(StrCat(path, ".key"), StrCat(ItemKindName(it.kind), " \"", it.key, "\" appears twice in the change set"));
    }
    if (it.remove == it.data.has_value()) {
      return rules::InvalidField(path, "give exactly one of \"data\" and \"delete\"");
    }
    if (it.remove && it.kind == ItemKind::kFlag) {
      return rules::InvalidField(StrCat(
          path, ".delete"), "a flag exists in every environment; archive or delete it at the project level");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<AppliedChangeSet> RocksStore::Apply(const ChangeSet& cs) { return ApplyWith(cs, nullptr); }

absl::StatusOr<AppliedChangeSet> RocksStore::ApplyWith(const ChangeSet& cs, const ExtraOps& extra,
                                                       const IterationDefaults* iteration) {
  RETURN_IF_ERROR(CheckWritable());
  RETURN_IF_ERROR(CheckItemShapes(cs.items));
  EnvState& env = Env(cs.project, cs.environment);
  std::unique_lock<std::mutex> l(env.mu);
  RETURN_IF_ERROR(RequireEnv(env, cs.project, cs.environment));
  if (env.record.required_approvals > 0 && !cs.actor.approved) return ApprovalRequired(env.record);
  std::vector<PreparedItem> prepared;
  for (size_t i = 0; i < cs.items.size(); ++i) {
    const ItemChange& it = cs.items[i];
    std::string path = StrCat("items[", i, "]");
    ASSIGN_OR_RETURN(auto before, ReadItem(env, it.kind, it.key));
    int64_t version = VersionOf(before);
    if (it.expect_version.has_value() && *it.expect_version != version) {
      return rules::WithFieldPrefix(
          VersionConflict(StrCat(ItemKindName(it.kind), " \"", it.key, "\""), version, *it.expect_version),
          StrCat(path, ".expectVersion"));
    }
    if (it.remove) {
      if (!before.has_value()) {
        return rules::FieldError(absl::StatusCode::kNotFound, path, StrCat("segment \"", it.key, "\" does not exist"));
      }
      prepared.push_back({it.kind, it.key, before, std::nullopt});
      continue;
    }
    ASSIGN_OR_RETURN(Value after, PrepareUpsert(cs.project, it, path, version + 1, before));
    prepared.push_back({it.kind, it.key, before, std::move(after)});
  }
  // A change set that changes nothing is not made: no sequence, no audit record, no stream
  // event. The caller learns the current state.
  if (std::all_of(prepared.begin(), prepared.end(), [](const PreparedItem& p) { return SameExceptVersion(p.before, p.after); })) {
    AppliedChangeSet unchanged;
    unchanged.project = cs.project;
    unchanged.environment = cs.environment;
    unchanged.sequence = env.record.sequence;
    unchanged.unchanged = true;
    for (const PreparedItem& p : prepared) unchanged.items.push_back({p.kind, p.key, VersionOf(p.before), false});
    return unchanged;
  }
  RETURN_IF_ERROR(CheckReferencesAfter(env, prepared));
  // Experiment iterations this change starts or ends, in the same write.
  std::vector<WriteOp> iteration_ops;
  RETURN_IF_ERROR(IterationsForChange(cs.project, cs.environment, prepared, iteration_ops, iteration));
  std::vector<WriteOp> ops;
  AppliedChangeSet applied = AppendChangeSet(env, prepared, cs.actor, cs.comment, ops);
  if (extra) extra(applied, ops);
  bool iterations_changed = !iteration_ops.empty();
  for (WriteOp& op : iteration_ops) ops.push_back(std::move(op));
  CommitQueue::Writer w;
  w.ops = std::move(ops);
  queue_.Enqueue(w);
  l.unlock();  // later change sets to this environment may queue behind us (group commit)
  absl::Status s = queue_.Wait(w);
  CountKeyWrites(w.ops);
  l.lock();
  ClearPending(env, applied.sequence);
  l.unlock();
  // Events batches read the running iterations again, now that the new ones are stored.
  if (iterations_changed) ForgetRunningIterations(cs.project, cs.environment);
  if (!s.ok()) return Poison(s);
  Notify(applied);
  return applied;
}

absl::StatusOr<std::optional<Value>> RocksStore::ReadItem(EnvState& env, ItemKind kind, std::string_view key) {
  std::string k = ItemKey(env.record.project, env.record.key, kind, key);
  auto p = env.pending.find(k);
  if (p != env.pending.end()) {
    if (!p->second.json.has_value()) return std::optional<Value>();
    ASSIGN_OR_RETURN(Value v, ParseStored(kItems, k, *p->second.json));
    return std::optional<Value>(std::move(v));
  }
  return GetJson(kItems, k);
}

absl::StatusOr<Value> RocksStore::PrepareUpsert(std::string_view project, const ItemChange& it, const std::string& path, int64_t version, const std::optional<Value>& before) {
  const Value& data = *it.data;
  std::string dpath = StrCat(path, ".data");
  if (!data.is_object()) {
    return rules::InvalidField(dpath, StrCat("expected an object, got ", rules::TypeName(data.type())));
  }
  if (int depth = rules::JsonDepth(data); depth > rules::kMaxItemDepth) {
    return rules::InvalidField(dpath, StrCat("nests ", depth, " levels deep; at most ", rules::kMaxItemDepth));
  }
  // A member nobody reads is a typo: refused, not ignored (the write would change nothing).
  if (absl::Status known = rules::CheckKnownMembers(data); !known.ok()) return rules::WithFieldPrefix(known, dpath);
  if (const Value* k = data.Find("key"); k != nullptr && !k->is_null() && !(k->is_string() && k->as_string() == it.key)) {
    return rules::InvalidField(StrCat(dpath, ".key"), StrCat(rules::ToJson(*k), " does not match the item key \"", it.key, "\""));
  }
  Value merged = data;
  merged.Set("key", Value(it.key));
  merged.Erase("version");
  const Value* salt = merged.Find("salt");
  if (salt == nullptr || salt->is_null() || (salt->is_string() && salt->as_string().empty())) {
    const Value* old_salt = before.has_value() ? before->Find("salt") : nullptr;
    if (old_salt != nullptr && old_salt->is_string() && !old_salt->as_string().empty()) {
      merged.Set("salt", *old_salt);
    } else {
      ASSIGN_OR_RETURN(std::string made, RandomHex(8));
      merged.Set("salt", Value(made));
    }
  }
  if (Value* rules_json = merged.FindMutable("rules"); rules_json != nullptr && rules_json->is_array()) {
    for (Value& rule : rules_json->mutable_array()) {
      if (!rule.is_object()) continue;  // the decoder names it
      const Value* id = rule.Find("id");
      if (id == nullptr || id->is_null() || (id->is_string() && id->as_string().empty())) {
        ASSIGN_OR_RETURN(std::string made, RandomHex(8));
        rule.Set("id", Value(made));
      }
    }
  }
  if (it.kind == ItemKind::kSegment) {
    absl::StatusOr<rules::Segment> seg = rules::DecodeSegment(merged, {.strict = true});
    if (!seg.ok()) return rules::WithFieldPrefix(seg.status(), dpath);
    seg->version = version;
    seg->deleted = false;
    return rules::EncodeSegment(*seg);
  }
  absl::StatusOr<FlagMeta> meta = GetFlagMeta(project, it.key);
  if (absl::IsNotFound(meta.status())) {
    return rules::FieldError(absl::StatusCode::kNotFound, StrCat(path, ".key"), StrCat("flag \"", it.key, "\" does not exist in project \"",
                                      project, "\"; create it at the project level first"));
  }
  if (!meta.ok()) return meta.status();
  Value project_part = FlagMetaToJson(*meta);
  for (const char* f : {"variations", "name", "description", "tags", "temporary", "maintainer",
                        "clientSideAvailability"}) {
    merged.Set(f, *project_part.Find(f));
  }
  merged.Set("deleted", Value(meta->archived));
  absl::StatusOr<rules::Flag> flag = rules::DecodeFlag(merged, {.strict = true});
  if (!flag.ok()) return rules::WithFieldPrefix(flag.status(), dpath);
  flag->version = version;
  return rules::EncodeFlag(*flag);
}

AppliedChangeSet RocksStore::AppendChangeSet(EnvState& env, const std::vector<PreparedItem>& items, const Actor& actor, std::string_view comment, std::vector<WriteOp>& ops) {
  const std::string& p = env.record.project;
  const std::string& e = env.record.key;
  int64_t seq = env.record.sequence + 1;
  int64_t now = Now();
  AppliedChangeSet applied;
  applied.project = p;
  applied.environment = e;
  applied.sequence = seq;
  applied.time_ms = now;
  applied.actor = actor.id;
  applied.comment = std::string(comment);
  rules::ChangeSetEvent event{seq, now, {}};
  AuditRecord audit{seq, now, actor.id, std::string(comment), {}};
  for (const PreparedItem& it : items) {
    std::string key = ItemKey(p, e, it.kind, it.key);
    rules::ChangedItem ev{it.kind == ItemKind::kFlag ? rules::ChangedKind::kFlag : rules::ChangedKind::kSegment, it.key, 0, std::nullopt};
    int64_t version;
    if (it.after.has_value()) {
      version = VersionOf(it.after);
      std::string json = ToJson(*it.after);
      ops.push_back(Put(kItems, key, json));
      env.pending[key] = {json, seq};
      ev.version = version;
      ev.data = *it.after;
    } else {
      version = VersionOf(it.before) + 1;
      ops.push_back(Delete(kItems, key));
      env.pending[key] = {std::nullopt, seq};
      ev.version = version;
    }
    event.items.push_back(std::move(ev));
    applied.items.push_back({it.kind, it.key, version, !it.after.has_value()});
    audit.items.push_back({it.kind, it.key, it.before.value_or(Value()), Value()});
    ops.push_back(Put(kAuditIndex, StrCat(AuditIndexPrefix(p, e, it.kind, it.key), SeqKey(seq)), ""));
  }
  applied.event_json = rules::EncodeChangeSetEvent(event);
  std::string prefix = EnvPrefix(p, e);
  ops.push_back(Put(kChangeLog, StrCat(prefix, SeqKey(seq)), applied.event_json));
  // The after images are the change log entry's data (the same sequence, pruned with it), so the
  // audit keeps only the before images: a write's history holds each item twice, not three times
  // (ReadAudit puts the record back together).
  Value audit_json = AuditRecordToJson(audit);
  for (Value& item : audit_json.FindMutable("items")->mutable_array()) item.Erase("after");
  ops.push_back(Put(kAudit, StrCat(prefix, SeqKey(seq)), ToJson(audit_json)));
  env.record.sequence = seq;
  ops.push_back(Put(kEnvironments, EnvKey(env), ToJson(EnvironmentToJson(env.record))));
  // Retention by count: the entry that falls out of the window goes in the same batch.
  int64_t drop = seq - options_.retain_changes;
  if (drop >= 1) {
    absl::StatusOr<std::optional<AuditRecord>> old = ReadAuditKeys(p, e, drop);
    if (old.ok() && old->has_value()) AppendPrune(p, e, **old, ops);
  }
  return applied;
}

absl::StatusOr<AuditRecord> RocksStore::ParseAuditKeys(std::string_view key, std::string_view stored) {
  ASSIGN_OR_RETURN(Value keys, Decoded(rules::ParseJsonMembers(stored, {"sequence", "time", "actor", "comment", "items"},
                                                                "items", {"kind", "key"}),
                                        kAudit, key));
  return Decoded(AuditRecordFromJson(keys), kAudit, key);
}

absl::StatusOr<std::optional<AuditRecord>> RocksStore::ReadAuditKeys(std::string_view p, std::string_view e, int64_t seq) {
  std::string key = StrCat(EnvPrefix(p, e), SeqKey(seq));
  ASSIGN_OR_RETURN(auto raw, Get(kAudit, key, nullptr));
  if (!raw.has_value()) return std::optional<AuditRecord>();
  ASSIGN_OR_RETURN(AuditRecord rec, ParseAuditKeys(key, *raw));
  return std::optional<AuditRecord>(std::move(rec));
}

void RocksStore::AppendPrune(std::string_view p, std::string_view e, const AuditRecord& rec, std::vector<WriteOp>& ops) {
  std::string prefix = EnvPrefix(p, e);
  ops.push_back(Delete(kChangeLog, StrCat(prefix, SeqKey(rec.sequence))));
  ops.push_back(Delete(kAudit, StrCat(prefix, SeqKey(rec.sequence))));
  for (const auto& it : rec.items) {
    ops.push_back(Delete(kAuditIndex, StrCat(AuditIndexPrefix(p, e, it.kind, it.key), SeqKey(rec.sequence))));
  }
}

}  // namespace gonfalon::storage::internal
