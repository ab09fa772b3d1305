#include "rocks_store.h"

#include "absl/container/flat_hash_set.h"
#include "gonfalon/rules/evaluator.h"

namespace gonfalon::storage::internal {

namespace {

// A new flag's part in one environment: off, serving its off variation.
absl::StatusOr<rules::Flag> NewEnvironmentFlag(const FlagMeta& meta) {
  rules::Flag f;
  f.key = meta.key;
  f.on = false;
  int off = 0, on = 0;
  // Boolean flags default to serving false when off and true when on.
  for (size_t i = 0; i < meta.variations.size(); ++i) {
    if (meta.variations[i].is_bool() && !meta.variations[i].as_bool()) off = static_cast<int>(i);
    if (meta.variations[i].is_bool() && meta.variations[i].as_bool()) on = static_cast<int>(i);
  }
  f.off_variation = meta.default_off_variation.value_or(off);
  f.fallthrough.variation = meta.default_on_variation.value_or(on);
  ASSIGN_OR_RETURN(f.salt, RandomHex(8));
  return f;
}

// The project-level part always wins over what an environment's copy says.
void ApplyMeta(const FlagMeta& meta, rules::Flag& f) {
  f.key = meta.key;
  f.variations = meta.variations;
  f.SetManagement({.name = meta.name,
                   .description = meta.description,
                   .tags = meta.tags,
                   .temporary = meta.temporary,
                   .maintainer = meta.maintainer});
  f.client_side_availability = meta.client_side_availability;
  f.deleted = meta.archived;
}

}  // namespace

absl::StatusOr<Project> RocksStore::CreateProject(const Project& in, const Actor& actor) {
  RETURN_IF_ERROR(CheckWritable());
  RETURN_IF_ERROR(ValidateKey(in.key, "key"));
  ProjectState& ps = ProjectLock(in.key);
  std::lock_guard<std::mutex> l(ps.mu);
  ASSIGN_OR_RETURN(auto existing, Get(kProjects, in.key));
  if (existing.has_value()) {
    return rules::FieldError(absl::StatusCode::kAlreadyExists, "key", StrCat("project \"", in.key, "\" already exists"));
  }
  Project p = in;
  p.version = 1;
  p.created_ms = Now();
  if (p.name.empty()) p.name = p.key;
  RETURN_IF_ERROR(WriteNow({Put(kProjects, p.key, ToJson(ProjectToJson(p)))}));
  return p;
}

absl::StatusOr<Project> RocksStore::GetProject(std::string_view key) {
  ASSIGN_OR_RETURN(auto v, GetJson(kProjects, std::string(key)));
  if (!v.has_value()) return absl::NotFoundError(StrCat("project \"", key, "\" does not exist"));
  return Decoded(ProjectFromJson(*v), kProjects, key);
}

absl::StatusOr<std::vector<Project>> RocksStore::ListProjects() {
  return ScanDecoded<Project>(kProjects, "", ProjectFromJson);
}

absl::StatusOr<Project> RocksStore::UpdateProject(const Project& in, int64_t expect_version, const Actor& actor) {
  RETURN_IF_ERROR(CheckWritable());
  ProjectState& ps = ProjectLock(in.key);
  std::lock_guard<std::mutex> l(ps.mu);
  ASSIGN_OR_RETURN(Project p, GetProject(in.key));
  if (expect_version != 0 && expect_version != p.version) {
    return VersionConflict(StrCat("project \"", p.key, "\""), p.version, expect_version);
  }
  p.name = in.name.empty() ? p.name : in.name;
  p.description = in.description;
  ++p.version;
  RETURN_IF_ERROR(WriteNow({Put(kProjects, p.key, ToJson(ProjectToJson(p)))}));
  return p;
}

absl::Status RocksStore::DeleteProject(std::string_view key, const Actor& actor) {
  RETURN_IF_ERROR(CheckWritable());
  ProjectState& ps = ProjectLock(key);
  std::lock_guard<std::mutex> l(ps.mu);
  ASSIGN_OR_RETURN(Project p, GetProject(key));
  ASSIGN_OR_RETURN(std::vector<Environment> envs, ListEnvironments(key));
  EnvLocks locks = LockEnvironments(key, envs);
  std::vector<WriteOp> ops;
  std::string prefix = StrCat(key, "/");
  for (Cf cf : {kEnvironments, kFlagMeta, kItems, kChangeLog, kAudit, kAuditIndex, kEvents}) {
    ops.push_back(DeleteRange(cf, prefix, PrefixEnd(prefix)));
  }
  for (const char* kind : {"m/", "i/", "h/", "s/", "d/", "u/", "b/"}) {  // the experiments family (experiment_records.h)
    std::string under = StrCat(kind, prefix);
    ops.push_back(DeleteRange(kExperiments, under, PrefixEnd(under)));
  }
  for (const char* kind : {"sc/", "rp/", "rpa/"}) {  // scheduled changes, release plans
    ops.push_back(DeleteRange(kAutomation, StrCat(kind, prefix), PrefixEnd(StrCat(kind, prefix))));
  }
  ops.push_back(Delete(kProjects, std::string(key)));
  RETURN_IF_ERROR(AppendKeyDeletions(key, std::nullopt, ops));
  RETURN_IF_ERROR(WriteNow(std::move(ops)));
  for (EnvState* e : locks.states) e->exists = false;
  ForgetExperimentCaches();
  return absl::OkStatus();
}

absl::StatusOr<Environment> RocksStore::CreateEnvironment(std::string_view project, const Environment& in, const Actor& actor) {
  RETURN_IF_ERROR(CheckWritable());
  RETURN_IF_ERROR(ValidateKey(in.key, "key"));
  ProjectState& ps = ProjectLock(project);
  std::lock_guard<std::mutex> pl(ps.mu);
  RETURN_IF_ERROR(GetProject(project).status());
  EnvState& env = Env(project, in.key);
  std::lock_guard<std::mutex> l(env.mu);
  RETURN_IF_ERROR(LoadEnv(env, project, in.key));
  if (env.exists) {
    return rules::FieldError(absl::StatusCode::kAlreadyExists, "key", StrCat("environment \"", in.key, "\" already exists in project \"", project, "\""));
  }
  ASSIGN_OR_RETURN(std::vector<FlagMeta> metas, ListFlagMeta(project));
  env.record = Environment{};
  env.record.project = std::string(project);
  env.record.key = in.key;
  env.record.name = in.name.empty() ? in.key : in.name;
  env.record.version = 1;
  env.record.created_ms = Now();
  env.pending.clear();
  env.exists = true;
  std::vector<WriteOp> ops;
  std::vector<AppliedChangeSet> applied;
  if (metas.empty()) {
    ops.push_back(Put(kEnvironments, EnvKey(env), ToJson(EnvironmentToJson(env.record))));
  } else {
    std::vector<PreparedItem> items;
    for (const FlagMeta& m : metas) {
      ASSIGN_OR_RETURN(rules::Flag f, NewEnvironmentFlag(m));
      ApplyMeta(m, f);
      f.version = 1;
      items.push_back({ItemKind::kFlag, m.key, std::nullopt, rules::EncodeFlag(f)});
    }
    applied.push_back(AppendChangeSet(env, items, actor, "environment created", ops));
  }
  RETURN_IF_ERROR(CommitLocked({&env}, std::move(ops), applied));
  return env.record;
}

absl::StatusOr<Environment> RocksStore::GetEnvironment(std::string_view project, std::string_view key) {
  ASSIGN_OR_RETURN(auto v, GetJson(kEnvironments, StrCat(project, "/", key)));
  if (!v.has_value()) {
    return absl::NotFoundError(
        StrCat("environment \"", key, "\" does not exist in project \"", project, "\""));
  }
  return Decoded(EnvironmentFromJson(*v), kEnvironments, StrCat(project, "/", key));
}

absl::StatusOr<std::vector<Environment>> RocksStore::ListEnvironments(std::string_view project) {
  RETURN_IF_ERROR(GetProject(project).status());
  return ScanDecoded<Environment>(kEnvironments, StrCat(project, "/"), EnvironmentFromJson);
}

absl::StatusOr<Environment> RocksStore::UpdateEnvironment(std::string_view project, const Environment& in, int64_t expect_version, const Actor& actor) {
  RETURN_IF_ERROR(CheckWritable());
  EnvState& env = Env(project, in.key);
  std::unique_lock<std::mutex> l(env.mu);
  RETURN_IF_ERROR(RequireEnv(env, project, in.key));
  if (expect_version != 0 && expect_version != env.record.version) {
    return VersionConflict(StrCat("environment \"", in.key, "\""), env.record.version, expect_version);
  }
  // Fewer approvals, or self-approval allowed, is itself approved by the approvals it
  // weakens (otherwise one person could lift the requirement and then write alone).
  bool weakens = in.required_approvals < env.record.required_approvals ||
                 (in.allow_self_approval && !env.record.allow_self_approval);
  if (weakens && env.record.required_approvals > 0 && !actor.approved) return internal::ApprovalRequired(env.record);
  if (!in.name.empty()) env.record.name = in.name;
  env.record.required_approvals = in.required_approvals;
  env.record.allow_self_approval = in.allow_self_approval;
  ++env.record.version;
  RETURN_IF_ERROR(CommitLocked({&env}, {Put(kEnvironments, EnvKey(env), ToJson(EnvironmentToJson(env.record)))}, {}));
  return env.record;
}

absl::Status RocksStore::DeleteEnvironment(std::string_view project, std::string_view key, const Actor& actor) {
  RETURN_IF_ERROR(CheckWritable());
  ProjectState& ps = ProjectLock(project);
  std::lock_guard<std::mutex> pl(ps.mu);
  EnvState& env = Env(project, key);
  std::lock_guard<std::mutex> l(env.mu);
  RETURN_IF_ERROR(RequireEnv(env, project, key));
  std::vector<WriteOp> ops;
  std::string prefix = EnvPrefix(project, key);
  for (Cf cf : {kItems, kChangeLog, kAudit, kAuditIndex, kEvents}) {
    ops.push_back(DeleteRange(cf, prefix, PrefixEnd(prefix)));
  }
  for (const char* kind : {"i/", "h/", "s/", "d/", "u/", "b/"}) {  // the experiments family (experiment_records.h)
    std::string under = StrCat(kind, prefix);
    ops.push_back(DeleteRange(kExperiments, under, PrefixEnd(under)));
  }
  for (const char* kind : {"sc/", "rp/", "rpa/"}) {  // scheduled changes, release plans
    ops.push_back(DeleteRange(kAutomation, StrCat(kind, prefix), PrefixEnd(StrCat(kind, prefix))));
  }
  ops.push_back(Delete(kEnvironments, EnvKey(env)));
  RETURN_IF_ERROR(AppendKeyDeletions(project, std::string(key), ops));
  RETURN_IF_ERROR(CommitLocked({&env}, std::move(ops), {}));
  env.exists = false;
  env.pending.clear();
  ForgetExperimentCaches();
  return absl::OkStatus();
}

absl::StatusOr<FlagMeta> RocksStore::CreateFlag(std::string_view project, const FlagMeta& in, const Actor& actor, std::string_view comment) {
  RETURN_IF_ERROR(CheckWritable());
  RETURN_IF_ERROR(CheckNewFlag(in));
  ProjectState& ps = ProjectLock(project);
  std::lock_guard<std::mutex> pl(ps.mu);
  RETURN_IF_ERROR(GetProject(project).status());
  RETURN_IF_ERROR(CheckFlagAbsent(project, in.key));
  FlagMeta meta = NewFlagMeta(in);
  RETURN_IF_ERROR(WriteFlagsEverywhere(project, {&meta}, actor, comment));
  return meta;
}

absl::StatusOr<std::vector<FlagMeta>> RocksStore::CreateFlags(std::string_view project, const std::vector<FlagMeta>& in, const Actor& actor, std::string_view comment) {
  RETURN_IF_ERROR(CheckWritable());
  if (in.empty() || in.size() > kMaxBulkFlags) {
    return rules::InvalidField("flags", StrCat("expected 1 to ", kMaxBulkFlags, " flags, got ", in.size()));
  }
  absl::flat_hash_set<std::string_view> keys;
  for (size_t i = 0; i < in.size(); ++i) {
    RETURN_IF_ERROR(rules::WithFieldPrefix(CheckNewFlag(in[i]), StrCat("flags[", i, "]")));
    if (!keys.insert(in[i].key).second) {
      return rules::InvalidField(StrCat("flags[", i, "].key"), StrCat("\"", in[i].key, "\" appears twice in the request"));
    }
  }
  ProjectState& ps = ProjectLock(project);
  std::lock_guard<std::mutex> pl(ps.mu);
  RETURN_IF_ERROR(GetProject(project).status());
  std::vector<FlagMeta> metas;
  metas.reserve(in.size());
  std::vector<const FlagMeta*> refs;
  for (size_t i = 0; i < in.size(); ++i) {
    RETURN_IF_ERROR(rules::WithFieldPrefix(CheckFlagAbsent(project, in[i].key), StrCat("flags[", i, "]")));
    metas.push_back(NewFlagMeta(in[i]));
  }
  for (const FlagMeta& m : metas) refs.push_back(&m);
  RETURN_IF_ERROR(WriteFlagsEverywhere(project, refs, actor, comment));
  return metas;
}

absl::Status RocksStore::CheckNewFlag(const FlagMeta& in) {
  RETURN_IF_ERROR(ValidateKey(in.key, "key"));
  RETURN_IF_ERROR(CheckVariations(in));
  for (auto [field, v] : {std::pair{"defaults.offVariation", in.default_off_variation},
                          std::pair{"defaults.onVariation", in.default_on_variation}}) {
    if (v.has_value() && (*v < 0 || static_cast<size_t>(*v) >= in.variations.size())) {
      return rules::InvalidField(field, StrCat("variation ", *v, " does not exist (the flag has ", in.variations.size(), " variations)"));
    }
  }
  return absl::OkStatus();
}

absl::Status RocksStore::CheckFlagAbsent(std::string_view project, const std::string& key) {
  ASSIGN_OR_RETURN(auto existing, Get(kFlagMeta, StrCat(project, "/", key)));
  if (existing.has_value()) {
    return rules::FieldError(absl::StatusCode::kAlreadyExists, "key", StrCat("flag \"", key, "\" already exists in project \"", project, "\""));
  }
  return absl::OkStatus();
}

FlagMeta RocksStore::NewFlagMeta(const FlagMeta& in) const {
  FlagMeta meta = in;
  meta.version = 1;
  meta.created_ms = Now();
  if (meta.name.empty()) meta.name = meta.key;
  return meta;
}

absl::StatusOr<FlagMeta> RocksStore::GetFlagMeta(std::string_view project, std::string_view key) {
  ASSIGN_OR_RETURN(auto v, GetJson(kFlagMeta, StrCat(project, "/", key)));
  if (!v.has_value()) {
    RETURN_IF_ERROR(GetProject(project).status());
    return absl::NotFoundError(StrCat("flag \"", key, "\" does not exist in project \"", project, "\""));
  }
  return Decoded(FlagMetaFromJson(*v), kFlagMeta, StrCat(project, "/", key));
}

absl::StatusOr<std::vector<FlagMeta>> RocksStore::ListFlagMeta(std::string_view project) {
  RETURN_IF_ERROR(GetProject(project).status());
  return ScanDecoded<FlagMeta>(kFlagMeta, StrCat(project, "/"), FlagMetaFromJson);
}

absl::StatusOr<FlagMeta> RocksStore::UpdateFlagMeta(std::string_view project, const FlagMeta& in, int64_t expect_version, const Actor& actor, std::string_view comment) {
  RETURN_IF_ERROR(CheckWritable());
  RETURN_IF_ERROR(CheckVariations(in));
  ProjectState& ps = ProjectLock(project);
  std::lock_guard<std::mutex> pl(ps.mu);
  ASSIGN_OR_RETURN(FlagMeta current, GetFlagMeta(project, in.key));
  if (expect_version != 0 && expect_version != current.version) {
    return VersionConflict(StrCat("flag \"", in.key, "\""), current.version, expect_version);
  }
  FlagMeta meta = in;
  meta.version = current.version;
  meta.created_ms = current.created_ms;
  if (meta.name.empty()) meta.name = current.name;
  // A write that changes nothing makes no change set (no sequence, no audit, no stream event).
  if (FlagMetaToJson(meta) == FlagMetaToJson(current)) return current;
  meta.version = current.version + 1;
  RETURN_IF_ERROR(WriteFlagsEverywhere(project, {&meta}, actor, comment, meta.archived && !current.archived));
  return meta;
}

absl::Status RocksStore::DeleteFlag(std::string_view project, std::string_view key, const Actor& actor, std::string_view comment) {
  RETURN_IF_ERROR(CheckWritable());
  ProjectState& ps = ProjectLock(project);
  std::lock_guard<std::mutex> pl(ps.mu);
  RETURN_IF_ERROR(GetFlagMeta(project, key).status());
  ASSIGN_OR_RETURN(std::vector<Environment> envs, ListEnvironments(project));
  EnvLocks locks = LockEnvironments(project, envs);
  RETURN_IF_ERROR(CheckNotPrerequisite(locks, key, "remove it there first"));
  std::vector<WriteOp> ops;
  std::vector<AppliedChangeSet> applied;
  ops.push_back(Delete(kFlagMeta, StrCat(project, "/", key)));
  for (EnvState* env : locks.states) {
    ASSIGN_OR_RETURN(auto before, ReadItem(*env, ItemKind::kFlag, key));
    if (!before.has_value()) continue;
    applied.push_back(AppendChangeSet(*env, {{ItemKind::kFlag, std::string(key), before, std::nullopt}},
                                      actor, comment, ops));
  }
  return CommitLocked(locks.states, std::move(ops), applied);
}

absl::Status RocksStore::CheckVariations(const FlagMeta& m) {
  if (m.variations.empty()) {
    return rules::InvalidField("variations", "a flag needs at least one variation");
  }
  for (size_t i = 0; i < m.variations.size(); ++i) {
    // Inside a flag, a variation sits two levels down.
    if (int depth = rules::JsonDepth(m.variations[i]); depth > rules::kMaxItemDepth - 2) {
      return rules::InvalidField(StrCat("variations[", i, "]"), StrCat("nests ", depth, " levels deep; at most ",
                                               rules::kMaxItemDepth - 2));
    }
  }
  return absl::OkStatus();
}

absl::Status RocksStore::WriteFlagsEverywhere(std::string_view project, const std::vector<const FlagMeta*>& metas, const Actor& actor, std::string_view comment, bool archiving) {
  ASSIGN_OR_RETURN(std::vector<Environment> envs, ListEnvironments(project));
  EnvLocks locks = LockEnvironments(project, envs);
  // An archived flag is off for its dependents' evaluation: refused as a delete is.
  if (archiving) {
    for (const FlagMeta* meta : metas) {
      RETURN_IF_ERROR(CheckNotPrerequisite(locks, meta->key, "remove it there before archiving"));
    }
  }
  std::vector<WriteOp> ops;
  std::vector<AppliedChangeSet> applied;
  for (const FlagMeta* meta : metas) {
    ops.push_back(Put(kFlagMeta, StrCat(project, "/", meta->key), ToJson(FlagMetaToJson(*meta))));
  }
  for (EnvState* env : locks.states) {
    std::vector<PreparedItem> items;
    items.reserve(metas.size());
    for (const FlagMeta* meta : metas) {
      ASSIGN_OR_RETURN(auto before, ReadItem(*env, ItemKind::kFlag, meta->key));
      rules::Flag f;
      if (!before.has_value()) {
        ASSIGN_OR_RETURN(f, NewEnvironmentFlag(*meta));
      } else {
        ASSIGN_OR_RETURN(f, DecodeStoredFlag(*before, ItemKey(project, env->record.key, ItemKind::kFlag, meta->key)));
      }
      ApplyMeta(*meta, f);
      f.version = VersionOf(before) + 1;
      Value encoded = rules::EncodeFlag(f);
      absl::StatusOr<rules::Flag> strict = rules::DecodeFlag(encoded, {.strict = true});
      if (!strict.ok()) return rules::WithFieldPrefix(strict.status(), StrCat("environments.", env->record.key));
      items.push_back({ItemKind::kFlag, meta->key, std::move(before), std::move(encoded)});
    }
    applied.push_back(AppendChangeSet(*env, items, actor, comment, ops));
  }
  return CommitLocked(locks.states, std::move(ops), applied);
}

}  // namespace gonfalon::storage::internal
