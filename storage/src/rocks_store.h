#pragma once
// RocksStore: the Store on RocksDB (see store.h for the contract). One class, its members
// defined by subsystem so that a reader finds each by file name:
//   rocks_store.cc   opening, commits, locks, reads of records, maintenance (prune, checkpoint, stats)
//   projects.cc      projects, environments, flags at project level (and in every environment)
//   change_sets.cc   change sets: preparing items, appending them to the log and the audit
//   references.cc    what a change set may point at: references, prerequisite cycles and chains
//   reads.cc         flags, segments and whole environments as committed; the change log
//   history.cc       audit history, an environment at a past sequence, restore
//   api_keys.cc      API keys and OFREP stream tokens
//   event_counts.cc  SDK exposure and metric event counts
//   experiments.cc   metrics, experiment iterations and their sums (definitions and results)
//   experiment_ingest.cc  exposures and metric events joined to units and summed per variation
// Internal to gonfalon::storage; nothing outside storage/src includes it.

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "commit_queue.h"
#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/json_fields.h"
#include "gonfalon/rules/status_macros.h"
#include "gonfalon/rules/str_cat.h"
#include "gonfalon/storage/store.h"
#include "records.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/env.h"

namespace gonfalon::storage::internal {

using rules::Array;
using rules::Object;
using rules::Value;

// Lower-case hex of n bytes.
std::string Hex(const unsigned char* p, size_t n);
// Random bytes from OpenSSL's CSPRNG, hex-encoded; Unavailable when it cannot deliver (secrets
// and salts must never be predictable, so nothing is written then).
absl::StatusOr<std::string> RandomHex(size_t bytes);
// A RocksDB status as ours: corruption is DataLoss, anything else Internal, `what` first.
absl::Status FromRocks(const rocksdb::Status& s, std::string_view what);
// The "version" of a stored item's JSON; 0 when absent.
int64_t VersionOf(const std::optional<Value>& item);
// The refusal of an unapproved write to an environment that requires approvals
// (IsApprovalRequired holds for it).
absl::Status ApprovalRequired(const Environment& e);

// One item of a change set being written: its kind and key, and the stored JSON before and
// after (nullopt: absent, i.e. created or deleted).
struct PreparedItem {
  ItemKind kind;
  std::string key;
  std::optional<Value> before;
  std::optional<Value> after;  // nullopt: deleted
};

class RocksStore final : public Store {
 public:
  // `env` (the file system of prefilled_wal.h) outlives `db`, which the destructor deletes first.
  RocksStore(Options options, std::unique_ptr<rocksdb::Env> env, std::shared_ptr<rocksdb::Cache> block_cache,
             rocksdb::DB* db, std::vector<rocksdb::ColumnFamilyHandle*> cfs)
      : options_(std::move(options)),
        env_(std::move(env)),
        block_cache_(std::move(block_cache)),
        db_(db),
        cfs_(std::move(cfs)),
        queue_(db, options_.sync) {}

  ~RocksStore() override {
    // Written down on a clean close, so the next open does not replay the write-ahead log
    // (seconds after a bulk load of 100,000 flags). Not on a nearly full disk: a flush that runs
    // out of space would leave RocksDB in an error state.
    if (!poisoned_.load() && CheckFreeSpace().ok()) (void)db_->Flush(rocksdb::FlushOptions(), cfs_);
    for (auto* h : cfs_) db_->DestroyColumnFamilyHandle(h);
    db_->Close();
    delete db_;
  }

  absl::Status Init();
  void SetChangeListener(std::function<void(const AppliedChangeSet&)> listener) override;

  // Projects, environments and project-level flags (projects.cc).
  absl::StatusOr<Project> CreateProject(const Project& in, const Actor& actor) override;
  absl::StatusOr<Project> GetProject(std::string_view key) override;
  absl::StatusOr<std::vector<Project>> ListProjects() override;
  absl::StatusOr<Project> UpdateProject(const Project& in, int64_t expect_version,
                                        const Actor& actor) override;
  absl::Status DeleteProject(std::string_view key, const Actor& actor) override;
  absl::StatusOr<Environment> CreateEnvironment(std::string_view project, const Environment& in,
                                                const Actor& actor) override;
  absl::StatusOr<Environment> GetEnvironment(std::string_view project, std::string_view key) override;
  absl::StatusOr<std::vector<Environment>> ListEnvironments(std::string_view project) override;
  absl::StatusOr<Environment> UpdateEnvironment(std::string_view project, const Environment& in,
                                                int64_t expect_version, const Actor& actor) override;
  absl::Status DeleteEnvironment(std::string_view project, std::string_view key,
                                 const Actor& actor) override;
  absl::StatusOr<FlagMeta> CreateFlag(std::string_view project, const FlagMeta& in,
                                      const Actor& actor, std::string_view comment) override;
  absl::StatusOr<std::vector<FlagMeta>> CreateFlags(std::string_view project, const std::vector<FlagMeta>& in,
                                                    const Actor& actor, std::string_view comment) override;

  // A new flag's own checks (no storage read).
  absl::Status CheckNewFlag(const FlagMeta& in);

  // REQUIRES: the project's lock held.
  absl::Status CheckFlagAbsent(std::string_view project, const std::string& key);
  FlagMeta NewFlagMeta(const FlagMeta& in) const;
  absl::StatusOr<FlagMeta> GetFlagMeta(std::string_view project, std::string_view key) override;
  absl::StatusOr<std::vector<FlagMeta>> ListFlagMeta(std::string_view project) override;
  absl::StatusOr<FlagMeta> UpdateFlagMeta(std::string_view project, const FlagMeta& in,
                                          int64_t expect_version, const Actor& actor,
                                          std::string_view comment) override;
  absl::Status DeleteFlag(std::string_view project, std::string_view key, const Actor& actor,
                          std::string_view comment) override;

  // Change sets (change_sets.cc).
  absl::StatusOr<AppliedChangeSet> Apply(const ChangeSet& cs) override;

  // Scheduled changes (scheduled_changes.cc).
  absl::StatusOr<ScheduledChange> ScheduleChange(const ScheduledChange& spec, const Actor& actor) override;
  absl::StatusOr<ScheduledChange> GetScheduledChange(std::string_view project, std::string_view env,
                                                     std::string_view id) override;
  absl::StatusOr<std::vector<ScheduledChange>> ListScheduledChanges(std::string_view project,
                                                                    std::string_view env) override;
  absl::StatusOr<ScheduledChange> EditScheduledChange(std::string_view project, std::string_view env,
                                                      std::string_view id, const ScheduleEdit& edit,
                                                      const Actor& actor) override;
  absl::StatusOr<ScheduledChange> CancelScheduledChange(std::string_view project, std::string_view env,
                                                        std::string_view id, const Actor& actor) override;
  absl::StatusOr<std::vector<ScheduledChange>> RunDueScheduledChanges() override;
  absl::StatusOr<std::optional<int64_t>> NextScheduledChangeDue() override;

  // Release plans (release_plans.cc).
  absl::StatusOr<ReleasePlan> StartReleasePlan(const ReleasePlan& spec, const Actor& actor) override;
  absl::StatusOr<std::optional<ReleasePlan>> GetReleasePlan(std::string_view project, std::string_view env,
                                                            std::string_view flag) override;
  absl::StatusOr<ReleasePlan> ActOnReleasePlan(std::string_view project, std::string_view env, std::string_view flag,
                                               PlanAction action, const Actor& actor, std::string_view reason,
                                               const GuardFiring* guard) override;
  absl::StatusOr<std::vector<ReleasePlan>> RunReleasePlans(const std::set<std::string>& held) override;
  absl::StatusOr<std::vector<ReleasePlan>> ListActiveReleasePlans() override;
  absl::StatusOr<bool> AnyActiveReleasePlan() override;

  // Change requests (change_requests.cc).
  absl::StatusOr<ChangeRequest> OpenChangeRequest(const ChangeRequest& spec, const Actor& actor) override;
  absl::StatusOr<ChangeRequest> GetChangeRequest(std::string_view project, std::string_view env, std::string_view id) override;
  absl::StatusOr<std::vector<ChangeRequest>> ListChangeRequests(std::string_view project, std::string_view env,
                                                                std::optional<RequestStatus> status) override;
  absl::StatusOr<ChangeRequest> ReviewChangeRequest(std::string_view project, std::string_view env, std::string_view id,
                                                    Review review, const Actor& actor, std::string_view comment) override;
  absl::StatusOr<ChangeRequest> ApplyChangeRequest(std::string_view project, std::string_view env, std::string_view id,
                                                   const Actor& actor) override;

  // Webhooks (webhooks.cc).
  absl::StatusOr<Webhook> CreateWebhook(const Webhook& spec, const Actor& actor) override;
  absl::StatusOr<std::vector<Webhook>> ListWebhooks() override;
  absl::StatusOr<Webhook> GetWebhook(std::string_view id) override;
  absl::StatusOr<Webhook> UpdateWebhook(const Webhook& hook, std::optional<int64_t> expect_version) override;
  absl::Status DeleteWebhook(std::string_view id) override;
  absl::Status RecordWebhookDelivery(const WebhookDelivery& d) override;
  absl::StatusOr<std::vector<WebhookDelivery>> ListWebhookDeliveries(std::string_view hook_id) override;

  // Reads of what is committed (reads.cc).
  absl::StatusOr<rules::Flag> GetFlag(std::string_view project, std::string_view env,
                                      std::string_view key) override;
  absl::StatusOr<rules::Segment> GetSegment(std::string_view project, std::string_view env,
                                            std::string_view key) override;
  absl::StatusOr<rules::Environment> LoadEnvironment(std::string_view project,
                                                     std::string_view env) override;
  absl::StatusOr<int64_t> Sequence(std::string_view project, std::string_view env) override;
  absl::StatusOr<std::vector<std::string>> ChangesSince(std::string_view project, std::string_view env,
                                                        int64_t after) override;

  // History and restore (history.cc).
  absl::StatusOr<HistoryPage> History(std::string_view project, std::string_view env,
                                      std::optional<ItemKind> kind, std::optional<std::string> item_key,
                                      std::optional<int64_t> before, int limit) override;
  absl::StatusOr<rules::Environment> EnvironmentAt(std::string_view project, std::string_view env,
                                                   int64_t sequence) override;
  absl::StatusOr<int64_t> SequenceAtTime(std::string_view project, std::string_view env,
                                         int64_t time_ms) override;
  absl::StatusOr<RestorePlan> Restore(std::string_view project, std::string_view env, int64_t sequence,
                                      std::optional<ItemKind> only_kind, std::optional<std::string> only_key,
                                      bool dry_run, const Actor& actor, std::string_view comment) override;

  // API keys and stream tokens (api_keys.cc).
  absl::StatusOr<NewApiKey> CreateApiKey(const ApiKey& spec) override;
  absl::StatusOr<NewApiKey> ImportApiKey(const ApiKey& spec, std::string_view secret) override;
  absl::StatusOr<std::vector<ApiKey>> ListApiKeys() override;
  absl::StatusOr<ApiKey> GetApiKey(std::string_view id) override;
  absl::Status RevokeApiKey(std::string_view id) override;
  absl::StatusOr<NewApiKey> RotateApiKey(std::string_view id, int64_t overlap_ms) override;
  absl::StatusOr<ApiKey> Authenticate(std::string_view secret) override;
  uint64_t KeysGeneration() const override { return keys_generation_.load(std::memory_order_acquire); }
  std::string StreamToken(std::string_view key_id) override;
  absl::StatusOr<ApiKey> AuthenticateStreamToken(std::string_view token) override;

  // SDK event counts (event_counts.cc).
  absl::Status AddEventCounts(std::string_view project, std::string_view env,
                              const std::vector<ExposureCount>& exposures,
                              const std::vector<MetricCount>& metrics) override;
  absl::StatusOr<std::vector<ExposureCount>> GetExposureCounts(std::string_view project, std::string_view env,
                                                               std::string_view flag) override;
  absl::StatusOr<std::vector<MetricCount>> GetMetricCounts(std::string_view project, std::string_view env,
                                                           std::string_view event) override;

  // Experiments (experiments.cc; RecordExperimentBatch and PruneExperimentBatches in experiment_ingest.cc).
  absl::StatusOr<Metric> PutMetric(std::string_view project, const Metric& metric) override;
  absl::StatusOr<std::vector<Metric>> ListMetrics(std::string_view project) override;
  absl::Status DeleteMetric(std::string_view project, std::string_view key) override;
  absl::StatusOr<Iteration> StartIteration(std::string_view project, std::string_view env, std::string_view flag,
                                           const Iteration& spec) override;
  absl::StatusOr<Iteration> ArchiveIteration(std::string_view project, std::string_view env, std::string_view flag,
                                             int64_t number) override;
  absl::StatusOr<Iteration> StopIteration(std::string_view project, std::string_view env,
                                          std::string_view flag) override;
  absl::StatusOr<std::vector<Iteration>> ListIterations(std::string_view project, std::string_view env,
                                                        std::string_view flag) override;
  absl::StatusOr<ExperimentBatchResult> RecordExperimentBatch(std::string_view project, std::string_view env, std::string_view batch_id,
                                             const std::vector<UnitExposure>& exposures,
                                             const std::vector<UnitEvent>& events) override;
  absl::StatusOr<IterationSums> GetIterationSums(std::string_view project, std::string_view env,
                                                 std::string_view flag, int64_t number) override;
  absl::Status PruneExperimentBatches();  // by PruneHistory

  // Maintenance (rocks_store.cc).
  absl::Status PruneHistory() override;
  absl::Status Checkpoint(const std::string& dir) override;
  std::vector<std::pair<std::string, int64_t>> Stats() override;

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

  // Plumbing: writes, locks, records (rocks_store.cc).
  int64_t Now() const;
  rocksdb::WriteOptions SyncWrite() const;
  WriteOp Put(Cf cf, std::string key, std::string value);
  WriteOp Delete(Cf cf, std::string key) { return {WriteOp::Type::kDelete, cfs_[cf], std::move(key), {}}; }
  WriteOp DeleteRange(Cf cf, std::string from, std::string to);
  absl::Status CheckWritable() const;

  // Writes stop while the filesystem has less than Options::min_free_bytes free, before
  // RocksDB itself runs out (a write that fails inside RocksDB leaves its WAL writer in an
  // error state, and Debian's build then aborts on the next write). Reads go on; writes
  // resume as soon as space is freed.
  absl::Status CheckFreeSpace() const;
  absl::Status Poison(const absl::Status& s);
  static absl::Status VersionConflict(const std::string& what, int64_t actual, int64_t expected);
  absl::Status WriteNow(std::vector<WriteOp> ops);
  // After a write (whatever its outcome): bumps keys_generation_ if it wrote an API key.
  void CountKeyWrites(const std::vector<WriteOp>& ops);

  // Commits while the callers' environment locks are held (project-level writes), then
  // clears their pending items and tells the listener.
  absl::Status CommitLocked(const std::vector<EnvState*>& envs, std::vector<WriteOp> ops,
                            const std::vector<AppliedChangeSet>& applied);
  void Notify(const AppliedChangeSet& a);
  static void ClearPending(EnvState& env, int64_t sequence);
  ProjectState& ProjectLock(std::string_view project);
  EnvState& Env(std::string_view project, std::string_view env);
  static std::string EnvKey(const EnvState& env) { return StrCat(env.record.project, "/", env.record.key); }

  // REQUIRES: env.mu held.
  absl::Status LoadEnv(EnvState& env, std::string_view project, std::string_view key);

  // REQUIRES: env.mu held.
  absl::Status RequireEnv(EnvState& env, std::string_view project, std::string_view key);

  // Locks every environment of a project in key order (the one order all callers use).
  EnvLocks LockEnvironments(std::string_view project, const std::vector<Environment>& envs);
  absl::StatusOr<std::optional<std::string>> Get(Cf cf, const std::string& key,
                                                 const rocksdb::Snapshot* snap = nullptr);
  static absl::StatusOr<Value> ParseStored(Cf cf, std::string_view key, std::string_view text);
  template <typename T>
  static absl::StatusOr<T> Decoded(absl::StatusOr<T> r, Cf cf, std::string_view key) {
    if (r.ok()) return r;
    return absl::DataLossError(
        StrCat("corrupt value in ", kCfNames[cf], " at key \"", key, "\": ", r.status().message()));
  }

  absl::StatusOr<std::optional<Value>> GetJson(Cf cf, const std::string& key,
                                               const rocksdb::Snapshot* snap = nullptr);
  static absl::StatusOr<rules::Flag> DecodeStoredFlag(const Value& v, std::string_view key);
  static absl::StatusOr<rules::Segment> DecodeStoredSegment(const Value& v, std::string_view key);

  // Calls fn(key, value) for each key with `prefix`, from `start` (default: the prefix).
  // fn may stop the scan by returning an error, which Scan returns. `fill_cache` false: a
  // one-off read of everything (an environment's load) does not fill the block cache with
  // blocks nobody reads again.
  template <typename Fn>
  absl::Status Scan(Cf cf, const std::string& prefix, const rocksdb::Snapshot* snap, Fn fn,
                    std::string start = {}, bool fill_cache = true) {
    rocksdb::ReadOptions ro;
    ro.snapshot = snap;
    ro.fill_cache = fill_cache;
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
  absl::Status ForEachItemAfter(EnvState& env, const std::vector<PreparedItem>& prepared, ItemKind kind, Fn fn);

  // REQUIRES: env.mu held. Once `prepared` is applied, the flags and segments it writes must
  // point only at flags and segments that exist (with a prerequisite's variation in range), no
  // prerequisite chain may loop, and a segment it deletes must be used by nothing. Errors name
  // the item's field, as PrepareUpsert's do.
  absl::Status CheckReferencesAfter(EnvState& env, const std::vector<PreparedItem>& prepared);

  // REQUIRES: env.mu held; the change set has no prerequisite cycle. The longest prerequisite
  // chain through flag prepared[i] (its dependents above it, its prerequisites below) must
  // evaluate: at most rules::kMaxPrerequisiteChain flags. Finding the dependents reads every
  // flag of the environment, which only writes that change a flag's prerequisites pay.
  template <typename Lookup>
  absl::Status CheckChainLength(EnvState& env, const std::vector<PreparedItem>& prepared, size_t i, Lookup& lookup);

  // REQUIRES: the environments' locks held. FailedPrecondition naming the first flag, in any of
  // the environments, that has flag `key` as a prerequisite.
  absl::Status CheckNotPrerequisite(const EnvLocks& locks, std::string_view key, std::string_view advice);

  // REQUIRES: env.mu held. The item as the next change set will see it.
  absl::StatusOr<std::optional<Value>> ReadItem(EnvState& env, ItemKind kind, std::string_view key);
  // Apply, with `extra` (if set) adding operations to the change set's own write once its
  // sequence is known (a scheduled change's new status).
  using ExtraOps = std::function<void(const AppliedChangeSet&, std::vector<WriteOp>&)>;
  // `iteration` (if set): the control and metrics of experiment iterations the change starts,
  // instead of those of the flag's last iteration (a release plan's guard metrics).
  struct IterationDefaults {
    int control = 0;
    std::vector<std::string> metrics;
  };
  absl::StatusOr<AppliedChangeSet> ApplyWith(const ChangeSet& cs, const ExtraOps& extra,
                                             const IterationDefaults* iteration = nullptr);
  // The checks of a change set's items that need no stored state (keys, duplicates, data or
  // delete).
  static absl::Status CheckItemShapes(const std::vector<ItemChange>& items);
  // Scheduled changes: the expected versions of `items` now (each checked when given), and
  // their data validated as Apply would. Takes the environment's lock.
  absl::Status PrepareSchedule(std::string_view project, std::string_view env, std::vector<ItemChange>& items);
  std::mutex schedule_mu_;  // orders edits, cancels and runs of scheduled changes
  std::mutex webhooks_mu_;  // orders webhook edits and delivery-log appends
  std::mutex plans_mu_;     // orders release plan starts, actions and runs
  std::mutex requests_mu_;  // orders change request reviews and applies (taken before the others)
  // Change requests: writes `r` with a new version (into `ops` when given, else now).
  absl::Status WriteRequest(ChangeRequest& r, std::vector<WriteOp>* ops);
  // Applies an approved request as its author; the request ends applied or failed. A storage
  // error leaves it approved (and is returned). REQUIRES: requests_mu_.
  absl::StatusOr<ChangeRequest> ApplyApproved(ChangeRequest r);
  // A release plan's own checks (variations, rule, stages, guards, alpha), before it starts.
  absl::Status CheckReleasePlan(const ReleasePlan& spec);
  // Release plans: sets the plan's treatment share on its target and writes the flag, with the
  // plan record (its new state, filled in by `update` once the change set's version is known),
  // as one change set. `update` also runs when nothing needed changing.
  // Release plans: the plan leaves the active state (paused, aborted, completed) without a
  // change of traffic: its status and event `what` are written, and it leaves the active index.
  absl::Status StopPlan(ReleasePlan& plan, PlanStatus status, const std::string& what);
  absl::StatusOr<ReleasePlan> ApplyPlanTraffic(ReleasePlan plan, int treatment_weight, const std::string& what,
                                               const std::function<void(ReleasePlan&)>& update);
  absl::Status CheckVariations(const FlagMeta& m);

  // The stored JSON for an upserted item, strictly validated, at `version`.
  // What the writer leaves out is filled in: the salt is kept from `before` (so bucketing
  // does not move) or made; a rule without an id gets one.
  absl::StatusOr<Value> PrepareUpsert(std::string_view project, const ItemChange& it,
                                      const std::string& path, int64_t version,
                                      const std::optional<Value>& before);

  // Writes the project-level part of `metas` and, in one batch, in every environment, one change
  // set with each flag's environment copy (created off, or its targeting kept with the new
  // project-level part). Fails, writing nothing, if an environment's targeting no longer fits.
  // REQUIRES: the project's lock held.
  absl::Status WriteFlagsEverywhere(std::string_view project, const std::vector<const FlagMeta*>& metas,
                                    const Actor& actor, std::string_view comment, bool archiving = false);

  // REQUIRES: env.mu held. Adds one change set's writes to `ops` and hands out its sequence.
  AppliedChangeSet AppendChangeSet(EnvState& env, const std::vector<PreparedItem>& items,
                                   const Actor& actor, std::string_view comment,
                                   std::vector<WriteOp>& ops);
  // Deletes change set rec.sequence from the change log, the audit and the audit index (which
  // needs only the items' kinds and keys: ReadAuditKeys).
  void AppendPrune(std::string_view p, std::string_view e, const AuditRecord& rec,
                   std::vector<WriteOp>& ops);
  // An audit record as pruning needs it: sequence, time and the items' kinds and keys, without
  // converting their before images (a bulk change set's record holds a thousand). Each write
  // past the retained history prunes one, on the write path.
  static absl::StatusOr<AuditRecord> ParseAuditKeys(std::string_view key, std::string_view stored);
  absl::StatusOr<std::optional<AuditRecord>> ReadAuditKeys(std::string_view p, std::string_view e, int64_t seq);
  // The audit record of change set `seq`, if retained. Records written since the after images
  // moved to the change log carry only the before images: with_after fills the after images in
  // from the change log entry of the same sequence (the two are kept and pruned together).
  absl::StatusOr<std::optional<AuditRecord>> ReadAudit(std::string_view p, std::string_view e, int64_t seq,
                                                       const rocksdb::Snapshot* snap, bool with_after = false);
  absl::StatusOr<Environment> GetEnvironmentAt(std::string_view project, std::string_view env,
                                               const rocksdb::Snapshot* snap);
  absl::StatusOr<rules::Environment> LoadAt(std::string_view project, std::string_view env,
                                            const rocksdb::Snapshot* snap);
  absl::StatusOr<rules::Environment> EnvironmentAtSnapshot(std::string_view project, std::string_view env,
                                                           int64_t sequence, const rocksdb::Snapshot* snap);

  // REQUIRES: keys_mu_ held.
  static constexpr char kStreamTokenPrefix[] = "gfo_";

  // HMAC-SHA256 of the key id under the database's stream token secret, hex (128 bits).
  std::string StreamMac(std::string_view key_id) const;
  absl::StatusOr<NewApiKey> WriteNewKey(const ApiKey& spec, std::vector<WriteOp> ops, std::string secret = {});

  // Deletes the keys of a project (or of one of its environments).
  absl::Status AppendKeyDeletions(std::string_view project, std::optional<std::string> env,
                                  std::vector<WriteOp>& ops);
  Options options_;
  std::unique_ptr<rocksdb::Env> env_;
  std::shared_ptr<rocksdb::Cache> block_cache_;  // every family's (Stats reads its usage)
  rocksdb::DB* db_;
  std::vector<rocksdb::ColumnFamilyHandle*> cfs_;
  CommitQueue queue_;
  std::atomic<bool> poisoned_{false};
  std::atomic<uint64_t> keys_generation_{0};  // KeysGeneration; bumped by CountKeyWrites
  mutable std::atomic<int64_t> free_space_ok_until_{0};  // CheckFreeSpace: steady_clock ticks
  std::function<void(const AppliedChangeSet&)> listener_;
  std::mutex states_mu_;  // guards the two maps below (not the states themselves)
  absl::flat_hash_map<std::string, std::unique_ptr<EnvState>> envs_;
  absl::flat_hash_map<std::string, std::unique_ptr<ProjectState>> projects_;
  std::mutex keys_mu_;    // orders API key writes
  std::string stream_secret_;  // set by Init(), then read-only
  std::mutex events_mu_;  // orders event counter updates
  std::mutex experiments_mu_;  // orders experiment writes (metrics, iterations, unit batches)
  // Experiment definitions read by every events batch, kept under experiments_mu_ and dropped
  // by every write that changes them (experiments.cc).
  std::map<std::string, std::map<std::string, Iteration, std::less<>>, std::less<>> running_cache_;  // "{p}/{e}"
  std::map<std::string, std::map<std::string, Metric, std::less<>>, std::less<>> metrics_cache_;    // project
  // REQUIRES: experiments_mu_.
  absl::StatusOr<const std::map<std::string, Iteration, std::less<>>*> RunningIterations(std::string_view project,
                                                                                          std::string_view env);
  absl::StatusOr<const std::map<std::string, Metric, std::less<>>*> MetricsOf(std::string_view project);
  // After a project or environment is deleted (takes experiments_mu_).
  void ForgetExperimentCaches();
  // Iterations a change set starts or ends (DESIGN §8): an experiment rollout switched on
  // starts one; a change of its allocation (or switching it off) ends the running one and
  // starts the next. Appends the iteration records to `ops`, written with the change set.
  // Takes experiments_mu_.
  absl::Status IterationsForChange(std::string_view project, std::string_view env,
                                   const std::vector<PreparedItem>& items, std::vector<WriteOp>& ops,
                                   const IterationDefaults* defaults);
  void ForgetRunningIterations(std::string_view project, std::string_view env);  // takes experiments_mu_
  // Experiment records of batches enqueued for commit but not yet durable: key -> (ticket,
  // value). A batch releases experiments_mu_ while its write commits; the next one reads here
  // before the database, so that it builds on the batch before it (experiment_ingest.cc).
  struct PendingRecord {
    uint64_t ticket;
    std::string value;
  };
  absl::flat_hash_map<std::string, PendingRecord> experiment_overlay_;  // REQUIRES: experiments_mu_
  uint64_t experiment_ticket_ = 0;                                       // REQUIRES: experiments_mu_
  // A batch reads its units' states without experiments_mu_ (one MultiGet), then joins under
  // it. A batch that becomes durable meanwhile may not be in what that read saw, so its
  // records stay in the overlay until every read that started before it ended: the n-th batch
  // to become durable is retained while a read that started at a count below n is in flight.
  // All REQUIRES: experiments_mu_.
  struct RetainedBatch {
    uint64_t durable_at;  // its place in the order batches became durable (1, 2, ...)
    uint64_t ticket;
    std::vector<std::string> keys;
  };
  uint64_t experiment_durable_ = 0;             // batches durable so far
  std::multiset<uint64_t> experiment_readers_;  // experiment_durable_ when each read in flight began
  std::deque<RetainedBatch> experiment_retained_;
  // Bumped whenever the running-iteration or metric caches drop an entry, so a batch that read
  // without the lock knows whether what it planned with is still current.
  uint64_t experiment_cache_generation_ = 0;
  // Drops retained records no read in flight can need.
  void PruneExperimentOverlay();
  // The record at `key` in kExperiments, pending or stored. REQUIRES: experiments_mu_.
  absl::StatusOr<std::optional<std::string>> GetExperimentRecord(const std::string& key);
  // Values of `keys` in `cf` (nullopt: absent), in one batched lookup.
  absl::StatusOr<std::vector<std::optional<std::string>>> MultiGet(Cf cf, const std::vector<std::string>& keys);
};

}  // namespace gonfalon::storage::internal
