#include "gonfalon/storage/store.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "commit_queue.h"
#include "gonfalon/rules/change_set.h"
#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/evaluator.h"
#include "gonfalon/rules/status_macros.h"
#include "gonfalon/rules/str_cat.h"
#include "records.h"
#include "rocksdb/db.h"
#include "rocksdb/utilities/checkpoint.h"
#include "rocksdb/write_batch.h"

namespace gonfalon::storage {
namespace internal {
namespace {

using rules::Array;
using rules::Object;
using rules::Value;

std::string Hex(const unsigned char* p, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kHex[p[i] >> 4]);
    out.push_back(kHex[p[i] & 0xF]);
  }
  return out;
}

// Random bytes from OpenSSL's CSPRNG, hex-encoded; Unavailable when it cannot deliver (secrets
// and salts must never be predictable, so nothing is written then).
absl::StatusOr<std::string> RandomHex(size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  if (RAND_bytes(buf.data(), static_cast<int>(bytes)) != 1) {
    return absl::UnavailableError("the system's secure random number generator failed (OpenSSL RAND_bytes)");
  }
  return Hex(buf.data(), bytes);
}

std::string Sha256Hex(std::string_view s) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d);
  return Hex(d, sizeof d);
}

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  if (s.IsCorruption()) return absl::DataLossError(StrCat(what, ": ", s.ToString()));
  return absl::InternalError(StrCat(what, ": ", s.ToString()));
}

int64_t VersionOf(const std::optional<Value>& item) {
  if (!item.has_value()) return 0;
  const Value* v = item->Find("version");
  return v == nullptr ? 0 : static_cast<int64_t>(v->as_number());
}

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
  f.name = meta.name;
  f.description = meta.description;
  f.tags = meta.tags;
  f.temporary = meta.temporary;
  f.maintainer = meta.maintainer;
  f.client_side_availability = meta.client_side_availability;
  f.deleted = meta.archived;
}

absl::Status Prefixed(const absl::Status& s, std::string_view prefix) {
  if (s.ok()) return s;
  return absl::Status(s.code(), StrCat(prefix, s.message()));
}

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

// Whether a flag's write changes its prerequisites (chains through it can only grow then).
bool PrerequisitesChanged(const std::optional<Value>& before, const Value& after) {
  const Value* now = after.Find("prerequisites");
  bool has_now = now != nullptr && !now->as_array().empty();
  const Value* was = before.has_value() ? before->Find("prerequisites") : nullptr;
  if (was == nullptr) return has_now;
  return has_now && !(*was == *now);
}

struct PreparedItem {
  ItemKind kind;
  std::string key;
  std::optional<Value> before;
  std::optional<Value> after;  // nullopt: deleted
};

// Calls fn(segment key, where) for every segmentMatch value in an item's rules, `where` being
// its path inside the item ("rules[0].clauses[1].values[0]"); stops at fn's first error.
template <typename Fn>
absl::Status ForEachSegmentRef(const Value& item, Fn fn) {
  const Value* rules = item.Find("rules");
  if (rules == nullptr || !rules->is_array()) return absl::OkStatus();
  for (size_t r = 0; r < rules->as_array().size(); ++r) {
    const Value* clauses = rules->as_array()[r].Find("clauses");
    if (clauses == nullptr || !clauses->is_array()) continue;
    for (size_t c = 0; c < clauses->as_array().size(); ++c) {
      const Value& clause = clauses->as_array()[c];
      const Value* op = clause.Find("op");
      const Value* values = clause.Find("values");
      if (op == nullptr || !op->is_string() || op->as_string() != "segmentMatch") continue;
      if (values == nullptr || !values->is_array()) continue;
      for (size_t v = 0; v < values->as_array().size(); ++v) {
        const Value& key = values->as_array()[v];
        if (!key.is_string()) continue;
        RETURN_IF_ERROR(fn(key.as_string(), StrCat("rules[", r, "].clauses[", c, "].values[", v, "]")));
      }
    }
  }
  return absl::OkStatus();
}

// Calls fn(index, prerequisite flag key, variation) for each of a flag's prerequisites.
template <typename Fn>
absl::Status ForEachPrerequisite(const Value& flag, Fn fn) {
  const Value* prereqs = flag.Find("prerequisites");
  if (prereqs == nullptr || !prereqs->is_array()) return absl::OkStatus();
  for (size_t j = 0; j < prereqs->as_array().size(); ++j) {
    const Value& p = prereqs->as_array()[j];
    const Value* key = p.Find("key");
    const Value* variation = p.Find("variation");
    if (key == nullptr || !key->is_string()) continue;
    double v = variation != nullptr && variation->is_number() ? variation->as_number() : 0;
    RETURN_IF_ERROR(fn(j, key->as_string(), v));
  }
  return absl::OkStatus();
}

class RocksStore final : public Store {
 public:
  RocksStore(Options options, rocksdb::DB* db, std::vector<rocksdb::ColumnFamilyHandle*> cfs)
      : options_(std::move(options)), db_(db), cfs_(std::move(cfs)), queue_(db, options_.sync) {}

  ~RocksStore() override {
    // Written down on a clean close, so the next open does not replay the write-ahead log
    // (seconds after a bulk load of 100,000 flags). Not on a nearly full disk: a flush that runs
    // out of space would leave RocksDB in an error state.
    if (!poisoned_.load() && CheckFreeSpace().ok()) (void)db_->Flush(rocksdb::FlushOptions(), cfs_);
    for (auto* h : cfs_) db_->DestroyColumnFamilyHandle(h);
    db_->Close();
    delete db_;
  }

  absl::Status Init() {
    ASSIGN_OR_RETURN(auto v, Get(kMeta, "schema_version"));
    if (!v.has_value()) {
      RETURN_IF_ERROR(FromRocks(db_->Put(SyncWrite(), cfs_[kMeta], "schema_version", std::to_string(kSchemaVersion)),
                                "writing the schema version"));
      v = std::to_string(kSchemaVersion);
    }
    if (*v != std::to_string(kSchemaVersion)) {
      return absl::FailedPreconditionError(
          StrCat(options_.path, " holds schema version ", *v, "; this binary reads version ",
                 kSchemaVersion, " (see docs/storage.md, Migrations)"));
    }
    // The secret stream tokens are derived with (StreamToken); made once per database.
    ASSIGN_OR_RETURN(auto secret, Get(kMeta, "stream_token_secret"));
    if (!secret.has_value()) {
      ASSIGN_OR_RETURN(secret, RandomHex(32));
      RETURN_IF_ERROR(FromRocks(db_->Put(SyncWrite(), cfs_[kMeta], "stream_token_secret", *secret),
                                "writing the stream token secret"));
    }
    stream_secret_ = std::move(*secret);
    return absl::OkStatus();
  }

  void SetChangeListener(std::function<void(const AppliedChangeSet&)> listener) override {
    listener_ = std::move(listener);
  }

  // ---------------------------------------------------------------- projects

  absl::StatusOr<Project> CreateProject(const Project& in, const Actor& actor) override {
    RETURN_IF_ERROR(CheckWritable());
    RETURN_IF_ERROR(ValidateKey(in.key, "key"));
    ProjectState& ps = ProjectLock(in.key);
    std::lock_guard<std::mutex> l(ps.mu);
    ASSIGN_OR_RETURN(auto existing, Get(kProjects, in.key));
    if (existing.has_value()) {
      return absl::AlreadyExistsError(StrCat("key: project \"", in.key, "\" already exists"));
    }
    Project p = in;
    p.version = 1;
    p.created_ms = Now();
    if (p.name.empty()) p.name = p.key;
    RETURN_IF_ERROR(WriteNow({Put(kProjects, p.key, ToJson(ProjectToJson(p)))}));
    return p;
  }

  absl::StatusOr<Project> GetProject(std::string_view key) override {
    ASSIGN_OR_RETURN(auto v, GetJson(kProjects, std::string(key)));
    if (!v.has_value()) return absl::NotFoundError(StrCat("project \"", key, "\" does not exist"));
    return Decoded(ProjectFromJson(*v), kProjects, key);
  }

  absl::StatusOr<std::vector<Project>> ListProjects() override {
    return ScanDecoded<Project>(kProjects, "", ProjectFromJson);
  }

  absl::StatusOr<Project> UpdateProject(const Project& in, int64_t expect_version,
                                        const Actor& actor) override {
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

  absl::Status DeleteProject(std::string_view key, const Actor& actor) override {
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
    ops.push_back(Delete(kProjects, std::string(key)));
    RETURN_IF_ERROR(AppendKeyDeletions(key, std::nullopt, ops));
    RETURN_IF_ERROR(WriteNow(std::move(ops)));
    for (EnvState* e : locks.states) e->exists = false;
    return absl::OkStatus();
  }

  // ---------------------------------------------------------------- environments

  absl::StatusOr<Environment> CreateEnvironment(std::string_view project, const Environment& in,
                                                const Actor& actor) override {
    RETURN_IF_ERROR(CheckWritable());
    RETURN_IF_ERROR(ValidateKey(in.key, "key"));
    ProjectState& ps = ProjectLock(project);
    std::lock_guard<std::mutex> pl(ps.mu);
    RETURN_IF_ERROR(GetProject(project).status());
    EnvState& env = Env(project, in.key);
    std::lock_guard<std::mutex> l(env.mu);
    RETURN_IF_ERROR(LoadEnv(env, project, in.key));
    if (env.exists) {
      return absl::AlreadyExistsError(
          StrCat("key: environment \"", in.key, "\" already exists in project \"", project, "\""));
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

  absl::StatusOr<Environment> GetEnvironment(std::string_view project, std::string_view key) override {
    ASSIGN_OR_RETURN(auto v, GetJson(kEnvironments, StrCat(project, "/", key)));
    if (!v.has_value()) {
      return absl::NotFoundError(
          StrCat("environment \"", key, "\" does not exist in project \"", project, "\""));
    }
    return Decoded(EnvironmentFromJson(*v), kEnvironments, StrCat(project, "/", key));
  }

  absl::StatusOr<std::vector<Environment>> ListEnvironments(std::string_view project) override {
    RETURN_IF_ERROR(GetProject(project).status());
    return ScanDecoded<Environment>(kEnvironments, StrCat(project, "/"), EnvironmentFromJson);
  }

  absl::StatusOr<Environment> UpdateEnvironment(std::string_view project, const Environment& in,
                                                int64_t expect_version, const Actor& actor) override {
    RETURN_IF_ERROR(CheckWritable());
    EnvState& env = Env(project, in.key);
    std::unique_lock<std::mutex> l(env.mu);
    RETURN_IF_ERROR(RequireEnv(env, project, in.key));
    if (expect_version != 0 && expect_version != env.record.version) {
      return VersionConflict(StrCat("environment \"", in.key, "\""), env.record.version, expect_version);
    }
    if (!in.name.empty()) env.record.name = in.name;
    ++env.record.version;
    RETURN_IF_ERROR(CommitLocked({&env}, {Put(kEnvironments, EnvKey(env), ToJson(EnvironmentToJson(env.record)))}, {}));
    return env.record;
  }

  absl::Status DeleteEnvironment(std::string_view project, std::string_view key,
                                 const Actor& actor) override {
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
    ops.push_back(Delete(kEnvironments, EnvKey(env)));
    RETURN_IF_ERROR(AppendKeyDeletions(project, std::string(key), ops));
    RETURN_IF_ERROR(CommitLocked({&env}, std::move(ops), {}));
    env.exists = false;
    env.pending.clear();
    return absl::OkStatus();
  }

  // ---------------------------------------------------------------- flags (project level)

  absl::StatusOr<FlagMeta> CreateFlag(std::string_view project, const FlagMeta& in,
                                      const Actor& actor, std::string_view comment) override {
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

  absl::StatusOr<std::vector<FlagMeta>> CreateFlags(std::string_view project, const std::vector<FlagMeta>& in,
                                                    const Actor& actor, std::string_view comment) override {
    RETURN_IF_ERROR(CheckWritable());
    if (in.empty() || in.size() > kMaxBulkFlags) {
      return absl::InvalidArgumentError(StrCat("flags: expected 1 to ", kMaxBulkFlags, " flags, got ", in.size()));
    }
    absl::flat_hash_set<std::string_view> keys;
    for (size_t i = 0; i < in.size(); ++i) {
      RETURN_IF_ERROR(Prefixed(CheckNewFlag(in[i]), StrCat("flags[", i, "].")));
      if (!keys.insert(in[i].key).second) {
        return absl::InvalidArgumentError(StrCat("flags[", i, "].key: \"", in[i].key, "\" appears twice in the request"));
      }
    }
    ProjectState& ps = ProjectLock(project);
    std::lock_guard<std::mutex> pl(ps.mu);
    RETURN_IF_ERROR(GetProject(project).status());
    std::vector<FlagMeta> metas;
    metas.reserve(in.size());
    std::vector<const FlagMeta*> refs;
    for (size_t i = 0; i < in.size(); ++i) {
      RETURN_IF_ERROR(Prefixed(CheckFlagAbsent(project, in[i].key), StrCat("flags[", i, "].")));
      metas.push_back(NewFlagMeta(in[i]));
    }
    for (const FlagMeta& m : metas) refs.push_back(&m);
    RETURN_IF_ERROR(WriteFlagsEverywhere(project, refs, actor, comment));
    return metas;
  }

  // A new flag's own checks (no storage read).
  absl::Status CheckNewFlag(const FlagMeta& in) {
    RETURN_IF_ERROR(ValidateKey(in.key, "key"));
    RETURN_IF_ERROR(CheckVariations(in));
    for (auto [field, v] : {std::pair{"defaults.offVariation", in.default_off_variation},
                            std::pair{"defaults.onVariation", in.default_on_variation}}) {
      if (v.has_value() && (*v < 0 || static_cast<size_t>(*v) >= in.variations.size())) {
        return absl::InvalidArgumentError(
            StrCat(field, ": variation ", *v, " does not exist (the flag has ", in.variations.size(), " variations)"));
      }
    }
    return absl::OkStatus();
  }

  // REQUIRES: the project's lock held.
  absl::Status CheckFlagAbsent(std::string_view project, const std::string& key) {
    ASSIGN_OR_RETURN(auto existing, Get(kFlagMeta, StrCat(project, "/", key)));
    if (existing.has_value()) {
      return absl::AlreadyExistsError(StrCat("key: flag \"", key, "\" already exists in project \"", project, "\""));
    }
    return absl::OkStatus();
  }

  FlagMeta NewFlagMeta(const FlagMeta& in) const {
    FlagMeta meta = in;
    meta.version = 1;
    meta.created_ms = Now();
    if (meta.name.empty()) meta.name = meta.key;
    return meta;
  }

  absl::StatusOr<FlagMeta> GetFlagMeta(std::string_view project, std::string_view key) override {
    ASSIGN_OR_RETURN(auto v, GetJson(kFlagMeta, StrCat(project, "/", key)));
    if (!v.has_value()) {
      RETURN_IF_ERROR(GetProject(project).status());
      return absl::NotFoundError(StrCat("flag \"", key, "\" does not exist in project \"", project, "\""));
    }
    return Decoded(FlagMetaFromJson(*v), kFlagMeta, StrCat(project, "/", key));
  }

  absl::StatusOr<std::vector<FlagMeta>> ListFlagMeta(std::string_view project) override {
    RETURN_IF_ERROR(GetProject(project).status());
    return ScanDecoded<FlagMeta>(kFlagMeta, StrCat(project, "/"), FlagMetaFromJson);
  }

  absl::StatusOr<FlagMeta> UpdateFlagMeta(std::string_view project, const FlagMeta& in,
                                          int64_t expect_version, const Actor& actor,
                                          std::string_view comment) override {
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

  absl::Status DeleteFlag(std::string_view project, std::string_view key, const Actor& actor,
                          std::string_view comment) override {
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

  // ---------------------------------------------------------------- change sets

  absl::StatusOr<AppliedChangeSet> Apply(const ChangeSet& cs) override {
    RETURN_IF_ERROR(CheckWritable());
    if (cs.items.empty()) {
      return absl::InvalidArgumentError("items: a change set needs at least one item");
    }
    std::set<std::pair<ItemKind, std::string>> seen;
    for (size_t i = 0; i < cs.items.size(); ++i) {
      const ItemChange& it = cs.items[i];
      std::string path = StrCat("items[", i, "]");
      RETURN_IF_ERROR(ValidateKey(it.key, StrCat(path, ".key")));
      if (!seen.insert({it.kind, it.key}).second) {
        return absl::InvalidArgumentError(
            StrCat(path, ".key: ", ItemKindName(it.kind), " \"", it.key, "\" appears twice in the change set"));
      }
      if (it.remove == it.data.has_value()) {
        return absl::InvalidArgumentError(StrCat(path, ": give exactly one of \"data\" and \"delete\""));
      }
      if (it.remove && it.kind == ItemKind::kFlag) {
        return absl::InvalidArgumentError(StrCat(
            path, ".delete: a flag exists in every environment; archive or delete it at the project level"));
      }
    }
    EnvState& env = Env(cs.project, cs.environment);
    std::unique_lock<std::mutex> l(env.mu);
    RETURN_IF_ERROR(RequireEnv(env, cs.project, cs.environment));
    std::vector<PreparedItem> prepared;
    for (size_t i = 0; i < cs.items.size(); ++i) {
      const ItemChange& it = cs.items[i];
      std::string path = StrCat("items[", i, "]");
      ASSIGN_OR_RETURN(auto before, ReadItem(env, it.kind, it.key));
      int64_t version = VersionOf(before);
      if (it.expect_version.has_value() && *it.expect_version != version) {
        return VersionConflict(StrCat(path, ": ", ItemKindName(it.kind), " \"", it.key, "\""), version,
                               *it.expect_version);
      }
      if (it.remove) {
        if (!before.has_value()) {
          return absl::NotFoundError(StrCat(path, ": segment \"", it.key, "\" does not exist"));
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
    std::vector<WriteOp> ops;
    AppliedChangeSet applied = AppendChangeSet(env, prepared, cs.actor, cs.comment, ops);
    CommitQueue::Writer w;
    w.ops = std::move(ops);
    queue_.Enqueue(w);
    l.unlock();  // later change sets to this environment may queue behind us (group commit)
    absl::Status s = queue_.Wait(w);
    l.lock();
    ClearPending(env, applied.sequence);
    l.unlock();
    if (!s.ok()) return Poison(s);
    Notify(applied);
    return applied;
  }

  // ---------------------------------------------------------------- reads

  absl::StatusOr<rules::Flag> GetFlag(std::string_view project, std::string_view env,
                                      std::string_view key) override {
    std::string k = ItemKey(project, env, ItemKind::kFlag, key);
    ASSIGN_OR_RETURN(auto v, GetJson(kItems, k));
    if (!v.has_value()) {
      RETURN_IF_ERROR(GetEnvironment(project, env).status());
      return absl::NotFoundError(StrCat("flag \"", key, "\" does not exist in project \"", project, "\""));
    }
    return DecodeStoredFlag(*v, k);
  }

  absl::StatusOr<rules::Segment> GetSegment(std::string_view project, std::string_view env,
                                            std::string_view key) override {
    std::string k = ItemKey(project, env, ItemKind::kSegment, key);
    ASSIGN_OR_RETURN(auto v, GetJson(kItems, k));
    if (!v.has_value()) {
      RETURN_IF_ERROR(GetEnvironment(project, env).status());
      return absl::NotFoundError(StrCat("segment \"", key, "\" does not exist in environment \"", env, "\""));
    }
    return DecodeStoredSegment(*v, k);
  }

  absl::StatusOr<rules::Environment> LoadEnvironment(std::string_view project,
                                                     std::string_view env) override {
    SnapshotHolder snap(db_);
    return LoadAt(project, env, snap.get());
  }

  absl::StatusOr<int64_t> Sequence(std::string_view project, std::string_view env) override {
    ASSIGN_OR_RETURN(Environment e, GetEnvironment(project, env));
    return e.sequence;
  }

  absl::StatusOr<std::vector<std::string>> ChangesSince(std::string_view project, std::string_view env,
                                                        int64_t after) override {
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

  absl::StatusOr<HistoryPage> History(std::string_view project, std::string_view env,
                                      std::optional<ItemKind> kind, std::optional<std::string> item_key,
                                      std::optional<int64_t> before, int limit) override {
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
      ASSIGN_OR_RETURN(auto rec, ReadAudit(project, env, s, snap.get()));
      if (rec.has_value()) page.records.push_back(std::move(*rec));
    }
    return page;
  }

  absl::StatusOr<rules::Environment> EnvironmentAt(std::string_view project, std::string_view env,
                                                   int64_t sequence) override {
    SnapshotHolder snap(db_);
    return EnvironmentAtSnapshot(project, env, sequence, snap.get());
  }

  absl::StatusOr<int64_t> SequenceAtTime(std::string_view project, std::string_view env,
                                         int64_t time_ms) override {
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

  absl::StatusOr<RestorePlan> Restore(std::string_view project, std::string_view env, int64_t sequence,
                                      std::optional<ItemKind> only_kind, std::optional<std::string> only_key,
                                      bool dry_run, const Actor& actor, std::string_view comment) override {
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
      restored.name = now.name;
      restored.description = now.description;
      restored.tags = now.tags;
      restored.temporary = now.temporary;
      restored.maintainer = now.maintainer;
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

  // ---------------------------------------------------------------- API keys

  absl::StatusOr<NewApiKey> CreateApiKey(const ApiKey& spec) override {
    RETURN_IF_ERROR(CheckWritable());
    if (spec.kind != KeyKind::kAdmin || !spec.project.empty()) {
      RETURN_IF_ERROR(Prefixed(GetProject(spec.project).status(), "project: "));
    }
    if (spec.kind != KeyKind::kAdmin) {
      RETURN_IF_ERROR(Prefixed(GetEnvironment(spec.project, spec.environment).status(), "environment: "));
    }
    std::lock_guard<std::mutex> l(keys_mu_);
    return WriteNewKey(spec, {});
  }

  absl::StatusOr<NewApiKey> ImportApiKey(const ApiKey& spec, std::string_view secret) override {
    RETURN_IF_ERROR(CheckWritable());
    if (secret.size() < 16) return absl::InvalidArgumentError("secret: at least 16 characters");
    std::lock_guard<std::mutex> l(keys_mu_);
    ASSIGN_OR_RETURN(auto existing, Get(kKeys, StrCat("hash/", Sha256Hex(secret))));
    if (existing.has_value()) return absl::AlreadyExistsError("secret: already in use");
    return WriteNewKey(spec, {}, std::string(secret));
  }

  absl::StatusOr<std::vector<ApiKey>> ListApiKeys() override {
    return ScanDecoded<ApiKey>(kKeys, "id/", ApiKeyFromJson);
  }

  absl::StatusOr<ApiKey> GetApiKey(std::string_view id) override {
    ASSIGN_OR_RETURN(auto v, GetJson(kKeys, StrCat("id/", id)));
    if (!v.has_value()) return absl::NotFoundError(StrCat("API key \"", id, "\" does not exist"));
    return Decoded(ApiKeyFromJson(*v), kKeys, StrCat("id/", id));
  }

  absl::Status RevokeApiKey(std::string_view id) override {
    RETURN_IF_ERROR(CheckWritable());
    std::lock_guard<std::mutex> l(keys_mu_);
    ASSIGN_OR_RETURN(auto v, GetJson(kKeys, StrCat("id/", id)));
    if (!v.has_value()) return absl::NotFoundError(StrCat("API key \"", id, "\" does not exist"));
    v->Set("revoked", Value(true));
    return WriteNow({Put(kKeys, StrCat("id/", id), ToJson(*v))});
  }

  absl::StatusOr<NewApiKey> RotateApiKey(std::string_view id, int64_t overlap_ms) override {
    RETURN_IF_ERROR(CheckWritable());
    std::lock_guard<std::mutex> l(keys_mu_);
    ASSIGN_OR_RETURN(auto v, GetJson(kKeys, StrCat("id/", id)));
    if (!v.has_value()) return absl::NotFoundError(StrCat("API key \"", id, "\" does not exist"));
    ASSIGN_OR_RETURN(ApiKey old, Decoded(ApiKeyFromJson(*v), kKeys, StrCat("id/", id)));
    if (old.revoked) return absl::FailedPreconditionError(StrCat("API key \"", id, "\" is revoked"));
    int64_t expires = Now() + std::max<int64_t>(overlap_ms, 0);
    if (old.expires_ms == 0 || expires < old.expires_ms) v->Set("expiresMs", Value(expires));
    if (overlap_ms <= 0) v->Set("revoked", Value(true));
    return WriteNewKey(old, {Put(kKeys, StrCat("id/", id), ToJson(*v))});
  }

  absl::StatusOr<ApiKey> Authenticate(std::string_view secret) override {
    ASSIGN_OR_RETURN(auto id, Get(kKeys, StrCat("hash/", Sha256Hex(secret))));
    if (!id.has_value()) return absl::NotFoundError("unknown API key");
    ASSIGN_OR_RETURN(ApiKey key, GetApiKey(*id));
    if (key.revoked) return absl::NotFoundError("API key revoked");
    if (key.expires_ms != 0 && Now() >= key.expires_ms) return absl::NotFoundError("API key expired");
    return key;
  }

  std::string StreamToken(std::string_view key_id) override {
    return StrCat(kStreamTokenPrefix, key_id, ".", StreamMac(key_id));
  }

  absl::StatusOr<ApiKey> AuthenticateStreamToken(std::string_view token) override {
    std::string_view rest = token;
    if (rest.rfind(kStreamTokenPrefix, 0) != 0) return absl::NotFoundError("not a stream token");
    rest.remove_prefix(std::string_view(kStreamTokenPrefix).size());
    size_t dot = rest.find('.');
    if (dot == std::string_view::npos) return absl::NotFoundError("malformed stream token");
    std::string id(rest.substr(0, dot));
    std::string mac = StreamMac(id);
    std::string_view given = rest.substr(dot + 1);
    // Constant time: how much of a guess matched must not show in the response time.
    unsigned char diff = given.size() == mac.size() ? 0 : 1;
    for (size_t i = 0; i < mac.size() && i < given.size(); ++i) diff |= static_cast<unsigned char>(given[i] ^ mac[i]);
    if (diff != 0) return absl::NotFoundError("unknown stream token");
    auto key = GetApiKey(id);
    if (!key.ok()) return absl::NotFoundError("unknown stream token");
    if (key->revoked) return absl::NotFoundError("API key revoked");
    if (key->expires_ms != 0 && Now() >= key->expires_ms) return absl::NotFoundError("API key expired");
    return key;
  }

  // ---------------------------------------------------------------- SDK events

  absl::Status AddEventCounts(std::string_view project, std::string_view env,
                              const std::vector<ExposureCount>& exposures,
                              const std::vector<MetricCount>& metrics) override {
    RETURN_IF_ERROR(CheckWritable());
    std::lock_guard<std::mutex> l(events_mu_);  // read-add-write of counters
    rocksdb::WriteBatch batch;
    std::string prefix = EnvPrefix(project, env);
    for (const ExposureCount& x : exposures) {
      std::string key = StrCat(prefix, "x/", x.flag, "/", SeqKey(x.hour_ms), "/", x.variation);
      ASSIGN_OR_RETURN(auto old, GetJson(kEvents, key));
      int64_t count = old.has_value() && old->Find("count") ? static_cast<int64_t>(old->Find("count")->as_number()) : 0;
      batch.Put(cfs_[kEvents], key, ToJson(Value(Object{{"count", Value(count + x.count)}})));
    }
    for (const MetricCount& m : metrics) {
      std::string key = StrCat(prefix, "m/", m.event, "/", SeqKey(m.hour_ms));
      ASSIGN_OR_RETURN(auto old, GetJson(kEvents, key));
      int64_t count = old.has_value() && old->Find("count") ? static_cast<int64_t>(old->Find("count")->as_number()) : 0;
      double sum = old.has_value() && old->Find("sum") ? old->Find("sum")->as_number() : 0;
      batch.Put(cfs_[kEvents], key, ToJson(Value(Object{{"count", Value(count + m.count)}, {"sum", Value(sum + m.sum)}})));
    }
    return FromRocks(db_->Write(rocksdb::WriteOptions(), &batch), "writing event counts");
  }

  absl::StatusOr<std::vector<ExposureCount>> GetExposureCounts(std::string_view project, std::string_view env,
                                                               std::string_view flag) override {
    std::vector<ExposureCount> out;
    std::string prefix = StrCat(EnvPrefix(project, env), "x/", flag, "/");
    RETURN_IF_ERROR(Scan(kEvents, prefix, nullptr, [&](std::string_view k, std::string_view v) {
      ASSIGN_OR_RETURN(Value json, ParseStored(kEvents, k, v));
      std::string_view rest = k.substr(prefix.size());  // {hour}/{variation}
      ExposureCount c;
      c.flag = std::string(flag);
      std::optional<int64_t> hour = ParseSeqKey(rest.substr(0, std::min<size_t>(rest.size(), 16)));
      std::string_view var = rest.size() > 17 && rest[16] == '/' ? rest.substr(17) : std::string_view();
      int variation = 0;
      auto [end, ec] = std::from_chars(var.data(), var.data() + var.size(), variation);
      if (!hour.has_value() || var.empty() || ec != std::errc() || end != var.data() + var.size()) {
        return absl::DataLossError(StrCat("exposure count key \"", k, "\" is not {hour}/{variation}"));
      }
      c.hour_ms = *hour;
      c.variation = variation;
      c.count = static_cast<int64_t>(json.Find("count") ? json.Find("count")->as_number() : 0);
      out.push_back(std::move(c));
      return absl::OkStatus();
    }));
    return out;
  }

  absl::StatusOr<std::vector<MetricCount>> GetMetricCounts(std::string_view project, std::string_view env,
                                                           std::string_view event) override {
    std::vector<MetricCount> out;
    std::string prefix = StrCat(EnvPrefix(project, env), "m/", event, "/");
    RETURN_IF_ERROR(Scan(kEvents, prefix, nullptr, [&](std::string_view k, std::string_view v) {
      ASSIGN_OR_RETURN(Value json, ParseStored(kEvents, k, v));
      MetricCount c;
      c.event = std::string(event);
      std::optional<int64_t> hour = ParseSeqKey(k.substr(prefix.size()));
      if (!hour.has_value()) return absl::DataLossError(StrCat("metric count key \"", k, "\" does not end in an hour"));
      c.hour_ms = *hour;
      c.count = static_cast<int64_t>(json.Find("count") ? json.Find("count")->as_number() : 0);
      c.sum = json.Find("sum") ? json.Find("sum")->as_number() : 0;
      out.push_back(std::move(c));
      return absl::OkStatus();
    }));
    return out;
  }

  // ---------------------------------------------------------------- operations

  absl::Status PruneHistory() override {
    RETURN_IF_ERROR(CheckWritable());
    int64_t cutoff_time = Now() - options_.retain_ms;
    ASSIGN_OR_RETURN(std::vector<Project> projects, ListProjects());
    for (const Project& p : projects) {
      ASSIGN_OR_RETURN(std::vector<Environment> envs, ListEnvironments(p.key));
      for (const Environment& e : envs) {
        EnvState& env = Env(p.key, e.key);
        std::lock_guard<std::mutex> l(env.mu);
        RETURN_IF_ERROR(RequireEnv(env, p.key, e.key));
        int64_t keep_from = env.record.sequence - options_.retain_changes + 1;  // by count
        std::string prefix = EnvPrefix(p.key, e.key);
        std::vector<WriteOp> ops;
        absl::Status scan = Scan(kAudit, prefix, nullptr, [&](std::string_view k, std::string_view v) {
          ASSIGN_OR_RETURN(Value json, ParseStored(kAudit, k, v));
          ASSIGN_OR_RETURN(AuditRecord rec, Decoded(AuditRecordFromJson(json), kAudit, k));
          if (rec.sequence >= keep_from && rec.time_ms >= cutoff_time) {
            return absl::CancelledError("done");  // the rest is newer
          }
          AppendPrune(p.key, e.key, rec, ops);
          return absl::OkStatus();
        });
        if (!scan.ok() && !absl::IsCancelled(scan)) return scan;
        if (!ops.empty()) RETURN_IF_ERROR(CommitLocked({&env}, std::move(ops), {}));
      }
    }
    return absl::OkStatus();
  }

  absl::Status Checkpoint(const std::string& dir) override {
    rocksdb::Checkpoint* cp = nullptr;
    RETURN_IF_ERROR(FromRocks(rocksdb::Checkpoint::Create(db_, &cp), "checkpoint"));
    std::unique_ptr<rocksdb::Checkpoint> owned(cp);
    return FromRocks(owned->CreateCheckpoint(dir), StrCat("checkpoint to ", dir));
  }

  std::vector<std::pair<std::string, int64_t>> Stats() override {
    std::vector<std::pair<std::string, int64_t>> out;
    for (const char* prop : {"rocksdb.estimate-num-keys", "rocksdb.total-sst-files-size",
                             "rocksdb.cur-size-all-mem-tables", "rocksdb.estimate-live-data-size",
                             "rocksdb.num-running-compactions", "rocksdb.estimate-pending-compaction-bytes",
                             "rocksdb.block-cache-usage"}) {
      uint64_t total = 0;
      for (auto* cf : cfs_) {
        uint64_t v = 0;
        if (db_->GetIntProperty(cf, prop, &v)) total += v;
      }
      out.emplace_back(prop, static_cast<int64_t>(total));
    }
    out.emplace_back("commit-groups", queue_.groups());
    out.emplace_back("commit-writes", queue_.writes());
    return out;
  }

 private:
  struct EnvState {
    std::mutex mu;  // orders this environment's writers
    bool loaded = false;  // REQUIRES: mu held for every field
    bool exists = false;
    Environment record;  // sequence: the last one handed out (maybe not yet durable)
    struct Pending {
      std::optional<std::string> json;  // nullopt: deleted
      int64_t sequence;
    };
    // Items of change sets queued but not yet durable, so later writers see them.
    absl::flat_hash_map<std::string, Pending> pending;
  };
  struct ProjectState {
    std::mutex mu;  // orders project-level writes (projects, environments, flag metadata)
  };
  struct EnvLocks {
    std::vector<std::unique_lock<std::mutex>> locks;
    std::vector<EnvState*> states;
  };

  class SnapshotHolder {
   public:
    explicit SnapshotHolder(rocksdb::DB* db) : db_(db), snap_(db->GetSnapshot()) {}
    ~SnapshotHolder() { db_->ReleaseSnapshot(snap_); }
    const rocksdb::Snapshot* get() const { return snap_; }

   private:
    rocksdb::DB* db_;
    const rocksdb::Snapshot* snap_;
  };

  // --- plumbing ---

  int64_t Now() const {
    if (options_.now_ms) return options_.now_ms();
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  rocksdb::WriteOptions SyncWrite() const {
    rocksdb::WriteOptions wo;
    wo.sync = options_.sync;
    return wo;
  }

  WriteOp Put(Cf cf, std::string key, std::string value) {
    return {WriteOp::Type::kPut, cfs_[cf], std::move(key), std::move(value)};
  }
  WriteOp Delete(Cf cf, std::string key) { return {WriteOp::Type::kDelete, cfs_[cf], std::move(key), {}}; }
  WriteOp DeleteRange(Cf cf, std::string from, std::string to) {
    return {WriteOp::Type::kDeleteRange, cfs_[cf], std::move(from), std::move(to)};
  }

  absl::Status CheckWritable() const {
    if (poisoned_.load()) {
      return absl::InternalError("the store refuses writes after a failed write; restart the server");
    }
    return CheckFreeSpace();
  }

  // Writes stop while the filesystem has less than Options::min_free_bytes free, before
  // RocksDB itself runs out (a write that fails inside RocksDB leaves its WAL writer in an
  // error state, and Debian's build then aborts on the next write). Reads go on; writes
  // resume as soon as space is freed.
  absl::Status CheckFreeSpace() const {
    if (options_.min_free_bytes <= 0) return absl::OkStatus();
    struct statvfs fs {};
    if (statvfs(options_.path.c_str(), &fs) != 0) return absl::OkStatus();  // cannot tell: let RocksDB try
    uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
    if (free_bytes >= static_cast<uint64_t>(options_.min_free_bytes)) return absl::OkStatus();
    return absl::ResourceExhaustedError(StrCat("disk: ", free_bytes >> 20, " MiB free on the data directory's filesystem, below the ",
                                               options_.min_free_bytes >> 20,
                                               " MiB kept in reserve; nothing was written. Writes resume when space is freed"));
  }

  absl::Status Poison(const absl::Status& s) {
    poisoned_.store(true);
    return s;
  }

  static absl::Status VersionConflict(const std::string& what, int64_t actual, int64_t expected) {
    return absl::AbortedError(StrCat(what, " is at version ", actual, ", not ", expected));
  }

  absl::Status WriteNow(std::vector<WriteOp> ops) {
    CommitQueue::Writer w;
    w.ops = std::move(ops);
    queue_.Enqueue(w);
    absl::Status s = queue_.Wait(w);
    return s.ok() ? s : Poison(s);
  }

  // Commits while the callers' environment locks are held (project-level writes), then
  // clears their pending items and tells the listener.
  absl::Status CommitLocked(const std::vector<EnvState*>& envs, std::vector<WriteOp> ops,
                            const std::vector<AppliedChangeSet>& applied) {
    absl::Status s = WriteNow(std::move(ops));
    for (EnvState* e : envs) ClearPending(*e, e->record.sequence);
    if (!s.ok()) return s;
    for (const AppliedChangeSet& a : applied) Notify(a);
    return absl::OkStatus();
  }

  void Notify(const AppliedChangeSet& a) {
    if (listener_) listener_(a);
  }

  static void ClearPending(EnvState& env, int64_t sequence) {
    for (auto it = env.pending.begin(); it != env.pending.end();) {
      if (it->second.sequence <= sequence) {
        env.pending.erase(it++);
      } else {
        ++it;
      }
    }
  }

  ProjectState& ProjectLock(std::string_view project) {
    std::lock_guard<std::mutex> l(states_mu_);
    auto& p = projects_[std::string(project)];
    if (!p) p = std::make_unique<ProjectState>();
    return *p;
  }

  EnvState& Env(std::string_view project, std::string_view env) {
    std::lock_guard<std::mutex> l(states_mu_);
    auto& e = envs_[StrCat(project, "/", env)];
    if (!e) e = std::make_unique<EnvState>();
    return *e;
  }

  static std::string EnvKey(const EnvState& env) { return StrCat(env.record.project, "/", env.record.key); }

  // REQUIRES: env.mu held.
  absl::Status LoadEnv(EnvState& env, std::string_view project, std::string_view key) {
    if (env.loaded) return absl::OkStatus();
    ASSIGN_OR_RETURN(auto v, GetJson(kEnvironments, StrCat(project, "/", key)));
    if (v.has_value()) {
      ASSIGN_OR_RETURN(env.record, Decoded(EnvironmentFromJson(*v), kEnvironments, StrCat(project, "/", key)));
      env.exists = true;
    }
    env.loaded = true;
    return absl::OkStatus();
  }

  // REQUIRES: env.mu held.
  absl::Status RequireEnv(EnvState& env, std::string_view project, std::string_view key) {
    RETURN_IF_ERROR(LoadEnv(env, project, key));
    if (!env.exists) {
      RETURN_IF_ERROR(GetProject(project).status());
      return absl::NotFoundError(
          StrCat("environment \"", key, "\" does not exist in project \"", project, "\""));
    }
    return absl::OkStatus();
  }

  // Locks every environment of a project in key order (the one order all callers use).
  EnvLocks LockEnvironments(std::string_view project, const std::vector<Environment>& envs) {
    EnvLocks out;
    for (const Environment& e : envs) {  // ListEnvironments returns key order
      EnvState& s = Env(project, e.key);
      out.locks.emplace_back(s.mu);
      if (!LoadEnv(s, project, e.key).ok() || !s.exists) {
        out.locks.pop_back();
        continue;
      }
      out.states.push_back(&s);
    }
    return out;
  }

  absl::StatusOr<std::optional<std::string>> Get(Cf cf, const std::string& key,
                                                 const rocksdb::Snapshot* snap = nullptr) {
    rocksdb::ReadOptions ro;
    ro.snapshot = snap;
    std::string value;
    rocksdb::Status s = db_->Get(ro, cfs_[cf], key, &value);
    if (s.IsNotFound()) return std::optional<std::string>();
    RETURN_IF_ERROR(FromRocks(s, StrCat("reading ", kCfNames[cf], " ", key)));
    return std::optional<std::string>(std::move(value));
  }

  static absl::StatusOr<Value> ParseStored(Cf cf, std::string_view key, std::string_view text) {
    absl::StatusOr<Value> v = rules::ParseJson(text);
    if (!v.ok()) {
      return absl::DataLossError(
          StrCat("corrupt value in ", kCfNames[cf], " at key \"", key, "\": ", v.status().message()));
    }
    return v;
  }

  template <typename T>
  static absl::StatusOr<T> Decoded(absl::StatusOr<T> r, Cf cf, std::string_view key) {
    if (r.ok()) return r;
    return absl::DataLossError(
        StrCat("corrupt value in ", kCfNames[cf], " at key \"", key, "\": ", r.status().message()));
  }

  absl::StatusOr<std::optional<Value>> GetJson(Cf cf, const std::string& key,
                                               const rocksdb::Snapshot* snap = nullptr) {
    ASSIGN_OR_RETURN(auto raw, Get(cf, key, snap));
    if (!raw.has_value()) return std::optional<Value>();
    ASSIGN_OR_RETURN(Value v, ParseStored(cf, key, *raw));
    return std::optional<Value>(std::move(v));
  }

  static absl::StatusOr<rules::Flag> DecodeStoredFlag(const Value& v, std::string_view key) {
    return Decoded(rules::DecodeFlag(v), kItems, key);
  }
  static absl::StatusOr<rules::Segment> DecodeStoredSegment(const Value& v, std::string_view key) {
    return Decoded(rules::DecodeSegment(v), kItems, key);
  }

  // Calls fn(key, value) for each key with `prefix`, from `start` (default: the prefix).
  // fn may stop the scan by returning an error, which Scan returns.
  template <typename Fn>
  absl::Status Scan(Cf cf, const std::string& prefix, const rocksdb::Snapshot* snap, Fn fn,
                    std::string start = {}) {
    rocksdb::ReadOptions ro;
    ro.snapshot = snap;
    std::string upper = prefix.empty() ? std::string() : PrefixEnd(prefix);
    rocksdb::Slice upper_slice(upper);
    if (!upper.empty()) ro.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cfs_[cf]));
    for (it->Seek(start.empty() ? prefix : start); it->Valid(); it->Next()) {
      RETURN_IF_ERROR(fn(std::string_view(it->key().data(), it->key().size()),
                         std::string_view(it->value().data(), it->value().size())));
    }
    return FromRocks(it->status(), StrCat("scanning ", kCfNames[cf]));
  }

  // Every record under `prefix`, parsed and decoded; a value that does not decode is DataLoss.
  template <typename T>
  absl::StatusOr<std::vector<T>> ScanDecoded(Cf cf, const std::string& prefix,
                                             absl::StatusOr<T> (*decode)(const Value&)) {
    std::vector<T> out;
    RETURN_IF_ERROR(Scan(cf, prefix, nullptr, [&](std::string_view k, std::string_view v) {
      ASSIGN_OR_RETURN(Value json, ParseStored(cf, k, v));
      ASSIGN_OR_RETURN(T item, Decoded(decode(json), cf, k));
      out.push_back(std::move(item));
      return absl::OkStatus();
    }));
    return out;
  }

  // REQUIRES: env.mu held. Calls fn(key, item) for every item of `kind` in the environment as
  // it will be once `prepared` is applied: committed items, overlaid by queued change sets
  // (pending) and then by `prepared`. Stops at fn's first error.
  template <typename Fn>
  absl::Status ForEachItemAfter(EnvState& env, const std::vector<PreparedItem>& prepared, ItemKind kind, Fn fn) {
    std::string prefix = ItemPrefix(env.record.project, env.record.key, kind);
    std::set<std::string, std::less<>> decided;  // keys whose state comes from prepared or pending
    for (const PreparedItem& p : prepared) {
      if (p.kind != kind) continue;
      decided.insert(p.key);
      if (p.after.has_value()) RETURN_IF_ERROR(fn(p.key, *p.after));
    }
    for (const auto& [k, pending] : env.pending) {
      if (k.rfind(prefix, 0) != 0) continue;
      std::string key = k.substr(prefix.size());
      if (!decided.insert(key).second || !pending.json.has_value()) continue;
      ASSIGN_OR_RETURN(Value item, ParseStored(kItems, k, *pending.json));
      RETURN_IF_ERROR(fn(key, item));
    }
    return Scan(kItems, prefix, nullptr, [&](std::string_view k, std::string_view v) -> absl::Status {
      std::string key(k.substr(prefix.size()));
      if (decided.count(key) != 0) return absl::OkStatus();
      ASSIGN_OR_RETURN(Value item, ParseStored(kItems, k, v));
      return fn(key, item);
    });
  }

  // REQUIRES: env.mu held. Once `prepared` is applied, the flags and segments it writes must
  // point only at flags and segments that exist (with a prerequisite's variation in range), no
  // prerequisite chain may loop, and a segment it deletes must be used by nothing. Errors name
  // the item's field, as PrepareUpsert's do.
  absl::Status CheckReferencesAfter(EnvState& env, const std::vector<PreparedItem>& prepared) {
    // Each item is read (and parsed) at most once, however many paths lead to it.
    std::map<std::pair<ItemKind, std::string>, std::optional<Value>> read;
    auto lookup = [&](ItemKind kind, const std::string& key) -> absl::StatusOr<std::optional<Value>> {
      for (const PreparedItem& p : prepared) {
        if (p.kind == kind && p.key == key) return p.after;
      }
      auto it = read.find({kind, key});
      if (it == read.end()) {
        ASSIGN_OR_RETURN(auto item, ReadItem(env, kind, key));
        it = read.emplace(std::make_pair(kind, key), std::move(item)).first;
      }
      return it->second;
    };
    for (size_t i = 0; i < prepared.size(); ++i) {
      const PreparedItem& item = prepared[i];
      std::string path = StrCat("items[", i, "]");
      if (!item.after.has_value()) {
        if (item.kind != ItemKind::kSegment) continue;
        for (ItemKind kind : {ItemKind::kFlag, ItemKind::kSegment}) {
          RETURN_IF_ERROR(ForEachItemAfter(env, prepared, kind, [&](const std::string& user, const Value& v) {
            return ForEachSegmentRef(v, [&](const std::string& seg, const std::string& where) -> absl::Status {
              if (seg != item.key) return absl::OkStatus();
              return absl::FailedPreconditionError(StrCat(path, ".delete: segment \"", item.key, "\" is used by ",
                                                          ItemKindName(kind), " \"", user, "\" (", where, ")"));
            });
          }));
        }
        continue;
      }
      std::string dpath = StrCat(path, ".data");
      RETURN_IF_ERROR(ForEachSegmentRef(*item.after, [&](const std::string& seg, const std::string& where) -> absl::Status {
        ASSIGN_OR_RETURN(auto found, lookup(ItemKind::kSegment, seg));
        if (!found.has_value()) return absl::InvalidArgumentError(StrCat(dpath, ".", where, ": no segment \"", seg, "\""));
        return absl::OkStatus();
      }));
      if (item.kind != ItemKind::kFlag) continue;
      RETURN_IF_ERROR(ForEachPrerequisite(*item.after, [&](size_t j, const std::string& key, double variation) -> absl::Status {
        std::string ppath = StrCat(dpath, ".prerequisites[", j, "]");
        if (key == item.key) return absl::InvalidArgumentError(StrCat(ppath, ".key: a flag cannot be its own prerequisite"));
        ASSIGN_OR_RETURN(auto prereq, lookup(ItemKind::kFlag, key));
        if (!prereq.has_value()) return absl::InvalidArgumentError(StrCat(ppath, ".key: no flag \"", key, "\""));
        const Value* variations = prereq->Find("variations");
        size_t n = variations != nullptr && variations->is_array() ? variations->as_array().size() : 0;
        if (variation >= static_cast<double>(n)) {
          return absl::InvalidArgumentError(StrCat(ppath, ".variation: flag \"", key, "\" has ", n, " variations"));
        }
        // Follow the prerequisites from here: reaching this flag again is a cycle.
        std::vector<std::vector<std::string>> stack = {{item.key, key}};
        std::set<std::string> visited;
        while (!stack.empty()) {
          std::vector<std::string> chain = std::move(stack.back());
          stack.pop_back();
          if (!visited.insert(chain.back()).second) continue;
          ASSIGN_OR_RETURN(auto flag, lookup(ItemKind::kFlag, chain.back()));
          if (!flag.has_value()) continue;
          RETURN_IF_ERROR(ForEachPrerequisite(*flag, [&](size_t, const std::string& next, double) -> absl::Status {
            std::vector<std::string> longer = chain;
            longer.push_back(next);
            if (next == item.key) {
              std::string loop;
              for (size_t n = 0; n < longer.size(); ++n) StrAppend(&loop, n == 0 ? "" : " -> ", longer[n]);
              return absl::InvalidArgumentError(StrCat(ppath, ".key: prerequisite cycle: ", loop));
            }
            stack.push_back(std::move(longer));
            return absl::OkStatus();
          }));
        }
        return absl::OkStatus();
      }));
      // Every flag carries "prerequisites" (often empty): only a write that gives the flag new
      // ones can make a chain through it longer, and only that pays for the chain check.
      if (PrerequisitesChanged(item.before, *item.after)) RETURN_IF_ERROR(CheckChainLength(env, prepared, i, lookup));
    }
    return absl::OkStatus();
  }

  // REQUIRES: env.mu held; the change set has no prerequisite cycle. The longest prerequisite
  // chain through flag prepared[i] (its dependents above it, its prerequisites below) must
  // evaluate: at most rules::kMaxPrerequisiteChain flags. Finding the dependents reads every
  // flag of the environment, which only writes that change a flag's prerequisites pay.
  template <typename Lookup>
  absl::Status CheckChainLength(EnvState& env, const std::vector<PreparedItem>& prepared, size_t i, Lookup& lookup) {
    constexpr int kLimit = rules::kMaxPrerequisiteChain;
    const std::string& root = prepared[i].key;
    // Below: the longest chain of prerequisites from each flag (memoized), with the next link.
    std::map<std::string, std::pair<int, std::string>> below;
    std::function<absl::StatusOr<int>(const std::string&, int)> down = [&](const std::string& key, int depth) -> absl::StatusOr<int> {
      if (auto it = below.find(key); it != below.end()) return it->second.first;
      if (depth > kLimit) return 1;  // the path here is already too long: refused whatever lies below
      ASSIGN_OR_RETURN(auto flag, lookup(ItemKind::kFlag, key));
      int best = 1;
      std::string next;
      if (flag.has_value()) {
        RETURN_IF_ERROR(ForEachPrerequisite(*flag, [&](size_t, const std::string& p, double) -> absl::Status {
          ASSIGN_OR_RETURN(int d, down(p, depth + 1));
          if (d + 1 > best) {
            best = d + 1;
            next = p;
          }
          return absl::OkStatus();
        }));
      }
      below[key] = {best, next};
      return best;
    };
    ASSIGN_OR_RETURN(int depth_below, down(root, 1));
    // Above: dependents, from every flag as it will be.
    std::map<std::string, std::vector<std::string>> dependents;
    RETURN_IF_ERROR(ForEachItemAfter(env, prepared, ItemKind::kFlag, [&](const std::string& key, const Value& flag) {
      return ForEachPrerequisite(flag, [&](size_t, const std::string& p, double) -> absl::Status {
        dependents[p].push_back(key);
        return absl::OkStatus();
      });
    }));
    std::map<std::string, std::pair<int, std::string>> above;
    std::function<int(const std::string&, int)> up = [&](const std::string& key, int depth) -> int {
      if (auto it = above.find(key); it != above.end()) return it->second.first;
      int best = 1;
      std::string prev;
      if (depth <= kLimit) {
        for (const std::string& d : dependents[key]) {
          int u = up(d, depth + 1) + 1;
          if (u > best) {
            best = u;
            prev = d;
          }
        }
      }
      above[key] = {best, prev};
      return best;
    };
    int depth_above = up(root, 1);
    int total = depth_above + depth_below - 1;
    if (total <= kLimit) return absl::OkStatus();
    std::vector<std::string> chain;
    for (std::string k = above[root].second; !k.empty(); k = above[k].second) chain.insert(chain.begin(), k);
    for (std::string k = root; !k.empty(); k = below.count(k) ? below[k].second : std::string()) chain.push_back(k);
    std::string shown;
    for (size_t n = 0; n < chain.size(); ++n) {
      if (chain.size() > 8 && n == 3) {
        StrAppend(&shown, " -> ... (", chain.size() - 6, " more)");
        n = chain.size() - 3;
      }
      StrAppend(&shown, n == 0 ? "" : " -> ", chain[n]);
    }
    return absl::InvalidArgumentError(StrCat("items[", i, "].data.prerequisites: a prerequisite chain of ", total,
                                             " flags is longer than the ", kLimit, " that evaluate: ", shown));
  }

  // REQUIRES: the environments' locks held. FailedPrecondition naming the first flag, in any of
  // the environments, that has flag `key` as a prerequisite.
  absl::Status CheckNotPrerequisite(const EnvLocks& locks, std::string_view key, std::string_view advice) {
    for (EnvState* env : locks.states) {
      RETURN_IF_ERROR(ForEachItemAfter(*env, {}, ItemKind::kFlag, [&](const std::string& other, const Value& item) {
        if (other == key) return absl::OkStatus();
        return ForEachPrerequisite(item, [&](size_t j, const std::string& prereq, double) -> absl::Status {
          if (prereq != key) return absl::OkStatus();
          return absl::FailedPreconditionError(StrCat("flag \"", key, "\" is a prerequisite of flag \"", other,
                                                      "\" in environment \"", env->record.key, "\" (prerequisites[", j,
                                                      "]); ", advice));
        });
      }));
    }
    return absl::OkStatus();
  }

  // REQUIRES: env.mu held. The item as the next change set will see it.
  absl::StatusOr<std::optional<Value>> ReadItem(EnvState& env, ItemKind kind, std::string_view key) {
    std::string k = ItemKey(env.record.project, env.record.key, kind, key);
    auto p = env.pending.find(k);
    if (p != env.pending.end()) {
      if (!p->second.json.has_value()) return std::optional<Value>();
      ASSIGN_OR_RETURN(Value v, ParseStored(kItems, k, *p->second.json));
      return std::optional<Value>(std::move(v));
    }
    return GetJson(kItems, k);
  }

  absl::Status CheckVariations(const FlagMeta& m) {
    if (m.variations.empty()) {
      return absl::InvalidArgumentError("variations: a flag needs at least one variation");
    }
    for (size_t i = 0; i < m.variations.size(); ++i) {
      // Inside a flag, a variation sits two levels down.
      if (int depth = rules::JsonDepth(m.variations[i]); depth > rules::kMaxItemDepth - 2) {
        return absl::InvalidArgumentError(StrCat("variations[", i, "]: nests ", depth, " levels deep; at most ",
                                                 rules::kMaxItemDepth - 2));
      }
    }
    return absl::OkStatus();
  }

  // The stored JSON for an upserted item, strictly validated, at `version`.
  // What the writer leaves out is filled in: the salt is kept from `before` (so bucketing
  // does not move) or made; a rule without an id gets one.
  absl::StatusOr<Value> PrepareUpsert(std::string_view project, const ItemChange& it,
                                      const std::string& path, int64_t version,
                                      const std::optional<Value>& before) {
    const Value& data = *it.data;
    std::string dpath = StrCat(path, ".data");
    if (!data.is_object()) {
      return absl::InvalidArgumentError(StrCat(dpath, ": expected an object, got ", rules::TypeName(data.type())));
    }
    if (int depth = rules::JsonDepth(data); depth > rules::kMaxItemDepth) {
      return absl::InvalidArgumentError(StrCat(dpath, ": nests ", depth, " levels deep; at most ", rules::kMaxItemDepth));
    }
    if (const Value* k = data.Find("key"); k != nullptr && !k->is_null() && !(k->is_string() && k->as_string() == it.key)) {
      return absl::InvalidArgumentError(StrCat(dpath, ".key: ", rules::ToJson(*k), " does not match the item key \"", it.key, "\""));
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
      if (!seg.ok()) return Prefixed(seg.status(), StrCat(dpath, "."));
      seg->version = version;
      seg->deleted = false;
      return rules::EncodeSegment(*seg);
    }
    absl::StatusOr<FlagMeta> meta = GetFlagMeta(project, it.key);
    if (absl::IsNotFound(meta.status())) {
      return absl::NotFoundError(StrCat(path, ".key: flag \"", it.key, "\" does not exist in project \"",
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
    if (!flag.ok()) return Prefixed(flag.status(), StrCat(dpath, "."));
    flag->version = version;
    return rules::EncodeFlag(*flag);
  }

  // Writes a flag's project-level part and, in one batch, a change set in every environment
  // with the flag as evaluated there: its targeting kept (or, new, off) and the project's part
  // applied. Fails, writing nothing, if an environment's targeting no longer fits.
  // REQUIRES: the project's lock held.
  // Writes the project-level part of `metas` and, in every environment, one change set with
  // each flag's environment copy (created off, or updated with the new project-level part).
  absl::Status WriteFlagsEverywhere(std::string_view project, const std::vector<const FlagMeta*>& metas,
                                    const Actor& actor, std::string_view comment, bool archiving = false) {
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
        if (!strict.ok()) return Prefixed(strict.status(), StrCat("environments.", env->record.key, "."));
        items.push_back({ItemKind::kFlag, meta->key, std::move(before), std::move(encoded)});
      }
      applied.push_back(AppendChangeSet(*env, items, actor, comment, ops));
    }
    return CommitLocked(locks.states, std::move(ops), applied);
  }

  // REQUIRES: env.mu held. Adds one change set's writes to `ops` and hands out its sequence.
  AppliedChangeSet AppendChangeSet(EnvState& env, const std::vector<PreparedItem>& items,
                                   const Actor& actor, std::string_view comment,
                                   std::vector<WriteOp>& ops) {
    const std::string& p = env.record.project;
    const std::string& e = env.record.key;
    int64_t seq = env.record.sequence + 1;
    int64_t now = Now();
    AppliedChangeSet applied;
    applied.project = p;
    applied.environment = e;
    applied.sequence = seq;
    applied.time_ms = now;
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
      audit.items.push_back({it.kind, it.key, it.before.value_or(Value()), it.after.value_or(Value())});
      ops.push_back(Put(kAuditIndex, StrCat(AuditIndexPrefix(p, e, it.kind, it.key), SeqKey(seq)), ""));
    }
    applied.event_json = rules::EncodeChangeSetEvent(event);
    std::string prefix = EnvPrefix(p, e);
    ops.push_back(Put(kChangeLog, StrCat(prefix, SeqKey(seq)), applied.event_json));
    ops.push_back(Put(kAudit, StrCat(prefix, SeqKey(seq)), ToJson(AuditRecordToJson(audit))));
    env.record.sequence = seq;
    ops.push_back(Put(kEnvironments, EnvKey(env), ToJson(EnvironmentToJson(env.record))));
    // Retention by count: the entry that falls out of the window goes in the same batch.
    int64_t drop = seq - options_.retain_changes;
    if (drop >= 1) {
      absl::StatusOr<std::optional<AuditRecord>> old = ReadAudit(p, e, drop, nullptr);
      if (old.ok() && old->has_value()) AppendPrune(p, e, **old, ops);
    }
    return applied;
  }

  void AppendPrune(std::string_view p, std::string_view e, const AuditRecord& rec,
                   std::vector<WriteOp>& ops) {
    std::string prefix = EnvPrefix(p, e);
    ops.push_back(Delete(kChangeLog, StrCat(prefix, SeqKey(rec.sequence))));
    ops.push_back(Delete(kAudit, StrCat(prefix, SeqKey(rec.sequence))));
    for (const auto& it : rec.items) {
      ops.push_back(Delete(kAuditIndex, StrCat(AuditIndexPrefix(p, e, it.kind, it.key), SeqKey(rec.sequence))));
    }
  }

  absl::StatusOr<std::optional<AuditRecord>> ReadAudit(std::string_view p, std::string_view e, int64_t seq,
                                                       const rocksdb::Snapshot* snap) {
    std::string key = StrCat(EnvPrefix(p, e), SeqKey(seq));
    ASSIGN_OR_RETURN(auto v, GetJson(kAudit, key, snap));
    if (!v.has_value()) return std::optional<AuditRecord>();
    ASSIGN_OR_RETURN(AuditRecord rec, Decoded(AuditRecordFromJson(*v), kAudit, key));
    return std::optional<AuditRecord>(std::move(rec));
  }

  absl::StatusOr<Environment> GetEnvironmentAt(std::string_view project, std::string_view env,
                                               const rocksdb::Snapshot* snap) {
    std::string key = StrCat(project, "/", env);
    ASSIGN_OR_RETURN(auto v, GetJson(kEnvironments, key, snap));
    if (!v.has_value()) {
      return absl::NotFoundError(StrCat("environment \"", env, "\" does not exist in project \"", project, "\""));
    }
    return Decoded(EnvironmentFromJson(*v), kEnvironments, key);
  }

  absl::StatusOr<rules::Environment> LoadAt(std::string_view project, std::string_view env,
                                            const rocksdb::Snapshot* snap) {
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
    }));
    return out;
  }

  absl::StatusOr<rules::Environment> EnvironmentAtSnapshot(std::string_view project, std::string_view env,
                                                           int64_t sequence, const rocksdb::Snapshot* snap) {
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

  // REQUIRES: keys_mu_ held.
  static constexpr char kStreamTokenPrefix[] = "gfo_";

  // HMAC-SHA256 of the key id under the database's stream token secret, hex (128 bits).
  std::string StreamMac(std::string_view key_id) const {
    std::string message = StrCat("ofrep-stream:", key_id);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), stream_secret_.data(), static_cast<int>(stream_secret_.size()),
         reinterpret_cast<const unsigned char*>(message.data()), message.size(), out, &len);
    return Hex(out, std::min<unsigned int>(len, 16));
  }

  absl::StatusOr<NewApiKey> WriteNewKey(const ApiKey& spec, std::vector<WriteOp> ops, std::string secret = {}) {
    NewApiKey out;
    out.key = spec;
    ASSIGN_OR_RETURN(out.key.id, RandomHex(8));
    out.key.created_ms = Now();
    out.key.expires_ms = 0;
    out.key.revoked = false;
    static constexpr const char* kPrefixes[] = {"gfa_", "gfs_", "gfc_"};
    if (secret.empty()) {
      ASSIGN_OR_RETURN(std::string random, RandomHex(20));
      secret = StrCat(kPrefixes[static_cast<int>(spec.kind)], random);
    }
    out.secret = secret;
    out.key.prefix = out.secret.substr(0, 10);
    Value json = ApiKeyToJson(out.key);
    ops.push_back(Put(kKeys, StrCat("id/", out.key.id), ToJson(json)));
    ops.push_back(Put(kKeys, StrCat("hash/", Sha256Hex(out.secret)), out.key.id));
    RETURN_IF_ERROR(WriteNow(std::move(ops)));
    return out;
  }

  // Deletes the keys of a project (or of one of its environments).
  absl::Status AppendKeyDeletions(std::string_view project, std::optional<std::string> env,
                                  std::vector<WriteOp>& ops) {
    std::lock_guard<std::mutex> l(keys_mu_);
    ASSIGN_OR_RETURN(std::vector<ApiKey> keys, ListApiKeys());
    for (const ApiKey& k : keys) {
      if (k.project != project || (env.has_value() && k.environment != *env)) continue;
      ApiKey revoked = k;
      revoked.revoked = true;
      ops.push_back(Put(kKeys, StrCat("id/", k.id), ToJson(ApiKeyToJson(revoked))));
    }
    return absl::OkStatus();
  }

  Options options_;
  rocksdb::DB* db_;
  std::vector<rocksdb::ColumnFamilyHandle*> cfs_;
  CommitQueue queue_;
  std::atomic<bool> poisoned_{false};
  std::function<void(const AppliedChangeSet&)> listener_;
  std::mutex states_mu_;  // guards the two maps below (not the states themselves)
  absl::flat_hash_map<std::string, std::unique_ptr<EnvState>> envs_;
  absl::flat_hash_map<std::string, std::unique_ptr<ProjectState>> projects_;
  std::mutex keys_mu_;    // orders API key writes
  std::string stream_secret_;  // set by Init(), then read-only
  std::mutex events_mu_;  // orders event counter updates
};

}  // namespace
}  // namespace internal

absl::StatusOr<std::unique_ptr<Store>> Store::Open(Options options) {
  std::error_code ec;
  std::filesystem::create_directories(options.path, ec);
  if (ec) return absl::InternalError(StrCat("cannot create ", options.path, ": ", ec.message()));
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 2;
  db_options.keep_log_file_num = 5;
  // Bounds what a restart after a crash replays: past this, the oldest memtables are flushed.
  db_options.max_total_wal_size = 64 << 20;
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const char* name : internal::kCfNames) {
    rocksdb::ColumnFamilyOptions cf;
    cf.OptimizeForPointLookup(8);  // 8 MiB block cache per family; items are read by key
    // 16 MiB memtables instead of 64: a bulk load of 100,000 flags otherwise holds several
    // hundred MB in memtables (items, change log, audit) until they fill.
    cf.write_buffer_size = 16 << 20;
    descriptors.emplace_back(name, cf);
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, options.path, descriptors, &handles, &db);
  if (!s.ok()) {
    return internal::FromRocks(s, StrCat("opening the store at ", options.path));
  }
  auto store = std::make_unique<internal::RocksStore>(std::move(options), db, std::move(handles));
  RETURN_IF_ERROR(store->Init());
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace gonfalon::storage
