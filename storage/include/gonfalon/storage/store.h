#pragma once
// Store: all of Gonfalon's state in one embedded RocksDB (DESIGN §3, docs/storage.md).
//
// Projects hold environments. A flag is created once per project and exists in every
// environment (off, serving its off variation); its targeting is edited per environment, its
// variations and metadata at the project level. Segments are per environment.
//
// Every write is a change set applied in one RocksDB WriteBatch together with the
// environment's next sequence number, the items' new versions, an audit record and a
// change-log entry: all of it or none of it is on disk. A change set is acknowledged only
// after its WAL write is synced (Options::sync). Writers to the same environment are ordered
// by sequence; their synced writes are grouped (group commit), so concurrent writers share
// one fsync.
//
// Errors: InvalidArgument (bad input, message starts with the field path), NotFound,
// AlreadyExists, Aborted (a version conflict: nothing was written), OutOfRange (a sequence or
// time no longer in the retained history), DataLoss (a stored value does not decode; the
// message names its key), FailedPrecondition, ResourceExhausted (the disk is below its free-
// space reserve: nothing was written, writes resume with space), Unavailable (no secure
// randomness), Internal (I/O; the store then refuses writes until reopened).
//
// Thread safety: every method may be called from any thread.
//
//   auto store = Store::Open({.path = "./data"});
//   (*store)->CreateProject({.key = "shop", .name = "Shop"}, actor);
//   (*store)->CreateEnvironment("shop", {.key = "production"}, actor);

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gonfalon/rules/model.h"
#include "gonfalon/rules/value.h"

namespace gonfalon::storage {

struct Options {
  std::string path;                 // the RocksDB directory; created if missing
  bool sync = true;                 // fsync the WAL before acknowledging a change set
  int64_t retain_changes = 10000;   // change-log and audit entries kept per environment
  int64_t retain_ms = 30LL * 24 * 3600 * 1000;  // and their age (PruneHistory)
  std::function<int64_t()> now_ms;  // clock for audit times; default: system clock
  // Writes are refused (ResourceExhausted, nothing written) while the filesystem of `path` has
  // less free space than this; they resume when space is freed. 0: no check.
  int64_t min_free_bytes = 256LL << 20;
  // With `sync`: each new write-ahead log file is laid over this many bytes of zeros written
  // beforehand (a spare kept ready on a background thread), so a synced write overwrites blocks
  // already allocated and its fdatasync need not write a new file size (storage/src/prefilled_wal.h).
  // Costs one spare file of this size beside the logs. 0: off.
  int64_t wal_prefill_bytes = 8LL << 20;
};

// Keys of projects, environments, flags and segments: 1..128 of [A-Za-z0-9._-].
absl::Status ValidateKey(std::string_view key, std::string_view field);

struct Actor {
  std::string id;  // who: a token id, a user, "system"
  // The person behind it (an admin token's name, else its id): who may not approve their own
  // change request.
  std::string person;
  // The write may change an environment that requires approvals: it carries an approved change
  // request, or it is automation whose start was approved (a scheduled change running, a
  // release plan's step, a guard's rollback).
  bool approved = false;
};

struct Project {
  std::string key;
  std::string name;
  std::string description;
  int64_t version = 0;
  int64_t created_ms = 0;
};

struct Environment {
  std::string project;
  std::string key;
  std::string name;
  int64_t version = 0;
  int64_t created_ms = 0;
  int64_t sequence = 0;  // the last applied change set
  // Change requests (DESIGN §9): with required_approvals > 0 a write to the environment must
  // be approved by that many people (other than its author unless allow_self_approval).
  int required_approvals = 0;
  bool allow_self_approval = false;
};

// The JSON the store keeps and the admin API returns for projects and environments.
rules::Value ProjectToJson(const Project& p);
rules::Value EnvironmentToJson(const Environment& e);

// The project-level part of a flag.
struct FlagMeta {
  std::string key;
  std::string name;
  std::string description;
  std::vector<std::string> tags;
  bool temporary = false;
  std::string maintainer;
  std::vector<rules::Value> variations;
  rules::ClientSideAvailability client_side_availability;
  bool archived = false;
  int64_t version = 0;
  int64_t created_ms = 0;
  // Creation only: the variations a new flag serves when off and, once turned on, by default.
  // Absent: for boolean flags `false` / `true`, otherwise the first variation for both.
  std::optional<int> default_off_variation;
  std::optional<int> default_on_variation;
};
rules::Value FlagMetaToJson(const FlagMeta& meta);
// Strict: unknown variations type errors etc. name the field.
absl::StatusOr<FlagMeta> FlagMetaFromJson(const rules::Value& json);

enum class ItemKind : uint8_t { kFlag, kSegment };
std::string_view ItemKindName(ItemKind k);  // "flag" / "segment"

// One item of a change set.
struct ItemChange {
  ItemKind kind = ItemKind::kFlag;
  std::string key;
  // The version the writer read; 0 means "must not exist yet". Absent: no check.
  std::optional<int64_t> expect_version;
  // Upsert: the whole item as JSON (DESIGN §2), decoded strictly. For flags only the
  // per-environment fields are taken (on, targets, contextTargets, rules, fallthrough,
  // offVariation, prerequisites, salt, trackEvents, trackEventsFallthrough); variations and
  // metadata stay the project's.
  std::optional<rules::Value> data;
  bool remove = false;  // segments only: flags are deleted at the project level
};

struct ChangeSet {
  std::string project;
  std::string environment;
  std::vector<ItemChange> items;
  Actor actor;
  std::string comment;
};

struct AppliedItem {
  ItemKind kind;
  std::string key;
  int64_t version = 0;
  bool deleted = false;
};

struct AppliedChangeSet {
  std::string project;
  std::string environment;
  int64_t sequence = 0;
  int64_t time_ms = 0;
  std::string actor;    // who made it (Actor::id)
  std::string comment;
  std::vector<AppliedItem> items;
  // Nothing changed (every item was already as written): no change set was made, `sequence`
  // is the environment's current one and `items` carry the current versions.
  bool unchanged = false;
  // The change-log entry as stored, which is also the stream's `changes` event payload:
  // {"sequence":n,"time":ms,"items":[{"kind","key","version","data"|"deleted":true}]}
  std::string event_json;
};

// An audit record: who changed what, when, why, and each item's before and after.
struct AuditRecord {
  int64_t sequence = 0;
  int64_t time_ms = 0;
  std::string actor;
  std::string comment;
  struct Item {
    ItemKind kind;
    std::string key;
    rules::Value before;  // null: did not exist
    rules::Value after;   // null: deleted
  };
  std::vector<Item> items;
};
rules::Value AuditRecordToJson(const AuditRecord& r);

struct HistoryPage {
  std::vector<AuditRecord> records;  // newest first
  std::optional<int64_t> next_after;  // pass as `before` for the next page
};

struct RestorePlan {
  int64_t target_sequence = 0;
  std::vector<AuditRecord::Item> items;  // what the restore changes (before = now)
  std::optional<AppliedChangeSet> applied;  // set unless dry run (or nothing to change)
};

// A change set to apply later (DESIGN §9): once, at its time, across restarts.
enum class ScheduleStatus : uint8_t { kScheduled, kApplied, kFailed, kCanceled };
std::string_view ScheduleStatusName(ScheduleStatus s);  // "scheduled", "applied", "failed", "canceled"

struct ScheduledChange {
  std::string id;  // "sc_" + 12 hex digits, chosen by the store
  std::string project;
  std::string environment;
  int64_t execute_at_ms = 0;
  std::string comment;
  // The change set's items. Each carries the version of its item it expects: the one the
  // caller gave (which must be current when scheduling), else the version current when it was
  // scheduled or last edited (0: the item did not exist). Checked when it runs unless
  // `ignore_conflicts`.
  std::vector<ItemChange> items;
  bool ignore_conflicts = false;
  std::string created_by;  // the actor id of who scheduled it
  std::string edited_by;   // of who edited or canceled it last (empty: nobody)
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  int64_t version = 0;  // of this record: 1 when scheduled, +1 per edit, cancel or run
  ScheduleStatus status = ScheduleStatus::kScheduled;
  int64_t ran_ms = 0;      // when it was applied or failed
  int64_t sequence = 0;    // the change set it made (0: none)
  bool unchanged = false;  // applied, but every item was already as written
  std::string reason;      // why it failed
};
rules::Value ScheduledChangeToJson(const ScheduledChange& c);


// What an edit of a scheduled change replaces (absent: kept).
struct ScheduleEdit {
  std::optional<int64_t> execute_at_ms;
  std::optional<std::string> comment;
  std::optional<std::vector<ItemChange>> items;  // their expected versions are taken anew
  std::optional<bool> ignore_conflicts;
  std::optional<int64_t> expect_version;  // of the scheduled change (Aborted when it moved)
};

// A release plan (DESIGN §9): moves a flag's traffic, on its fallthrough or one rule, from a
// control to a treatment variation through stages, each one an experiment rollout (so each
// stage is an experiment iteration whose units the gates count).
enum class PlanStatus : uint8_t { kActive, kPaused, kCompleted, kAborted, kRolledBack };
std::string_view PlanStatusName(PlanStatus s);  // "active", "paused", "completed", "aborted", "rolledBack"
enum class PlanAction : uint8_t { kPause, kResume, kAbort, kRollBack, kComplete };

struct PlanStage {
  int weight = 0;               // the treatment's share, in thousandths of a percent (1..100000)
  int64_t min_duration_ms = 0;  // before the next stage
  int64_t min_units = 0;        // units exposed in this stage's iteration before the next
};
struct PlanEvent {
  int64_t time_ms = 0;
  std::string what;      // "stage 2 of 4: 25%", "paused: …", "rolled back: …"
  int64_t sequence = 0;  // the change set it made, if any
};
// A guard watches a plan's current stage and objects to it (DESIGN §9; docs/releases.md):
//   metric      a metric, treatment vs control, one-sided always-valid test of harm
//   threshold   the treatment's mean of a metric outside [min, max]
//   prometheus  a PromQL query's value outside [min, max]
//   sampleRatio units per variation not in the stage's split (always-valid check)
//   noTraffic   no unit exposed graceMs after the stage began
// While a guard objects the plan does not advance; when one fires it acts.
enum class GuardKind : uint8_t { kMetric, kThreshold, kPrometheus, kSampleRatio, kNoTraffic };
std::string_view GuardKindName(GuardKind k);  // "metric", "threshold", "prometheus", "sampleRatio", "noTraffic"
enum class GuardAction : uint8_t { kRollBack, kPause, kNotify };
std::string_view GuardActionName(GuardAction a);  // "rollback", "pause", "notify"

struct PlanGuard {
  GuardKind kind = GuardKind::kMetric;
  GuardAction action = GuardAction::kRollBack;
  std::string metric;              // metric, threshold: a metric key of the project
  double min_effect = 0;           // metric: a harm up to this size (metric units) is ignored
  std::optional<double> min, max;  // threshold: the treatment's mean; prometheus: the query's value
  int64_t min_units = 100;         // metric, threshold: units per arm before it judges
  double expected_units = 5000;    // metric: where the always-valid interval is tuned narrowest
  std::string url;                 // prometheus: the server, http://host:port
  std::string query;               // prometheus: PromQL with {{flag}}, {{variation}}, {{environment}}
  int64_t interval_ms = 5000;      // prometheus: how often it asks
  int64_t grace_ms = 300000;       // noTraffic: how long a stage may see no unit
};
// A guard as JSON (`{"kind","action",...}` with only the members its kind uses), and back:
// unknown members, members of another kind and bad values are InvalidArgument naming them
// under `path` (e.g. "guards[1]").
rules::Value PlanGuardToJson(const PlanGuard& g);
absl::StatusOr<PlanGuard> PlanGuardFromJson(const rules::Value& v, const std::string& path);

// What a guard saw when it fired: kept in the plan, the audit comment and the webhook.
struct GuardFiring {
  std::string plan_id;  // the plan it judged (an action on a newer plan is refused)
  int guard = 0;        // index into ReleasePlan::guards
  int stage = 0;
  int64_t time_ms = 0;
  std::string summary;   // one line with its figures
  rules::Value figures;  // the numbers it judged, as an object
};

struct ReleasePlan {
  std::string id;  // "rp_" + 12 hex digits
  std::string project;
  std::string environment;
  std::string flag;
  int control = 0;
  int treatment = 1;
  std::string rule;  // the id of the rule it widens; empty: the fallthrough
  std::vector<PlanStage> stages;
  PlanStatus status = PlanStatus::kActive;
  int stage = 0;                 // the current stage (index)
  int64_t stage_started_ms = 0;  // when the current stage began (or resumed)
  int64_t flag_version = 0;      // the flag's version after the plan's last change
  std::string reason;            // why it is paused, aborted or rolled back
  std::string created_by;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  int64_t version = 0;
  std::vector<PlanEvent> events;  // oldest first, the last 100
  std::vector<PlanGuard> guards;  // as given, then the health checks it did not name
  double alpha = 0.05;            // shared by its metric guards (docs/releases.md)
  std::optional<GuardFiring> fired;  // the guard that rolled it back or paused it
};
rules::Value ReleasePlanToJson(const ReleasePlan& p);

// A write to an environment that requires approvals, without one, fails with a status that
// says so (FailedPrecondition, with this mark): the API turns it into a change request.
bool IsApprovalRequired(const absl::Status& s);

// A change request (DESIGN §9; docs/releases.md, "Change requests"): a write to an
// environment that requires approvals, waiting for them. It holds a change set, a scheduled
// change or a release plan, with the versions of the items it changes expected as they were
// when it was opened: if one moved since, applying it fails, visibly.
enum class RequestKind : uint8_t { kChanges, kSchedule, kReleasePlan, kApprovalSettings };
// "changes", "schedule", "releasePlan", "approvalSettings"
std::string_view RequestKindName(RequestKind k);
enum class RequestStatus : uint8_t { kPending, kApproved, kApplied, kDeclined, kFailed };
std::string_view RequestStatusName(RequestStatus s);  // "pending", "approved", "applied", "declined", "failed"
std::optional<RequestStatus> ParseRequestStatus(std::string_view name);
enum class Review : uint8_t { kApprove, kDecline, kComment };

struct RequestReview {
  std::string verdict;  // "approve", "decline", "comment"
  std::string actor;    // the actor id
  std::string person;
  int64_t time_ms = 0;
  std::string comment;
};

struct ChangeRequest {
  std::string id;  // "cr_" + 12 hex digits, chosen by the store
  std::string project;
  std::string environment;
  RequestKind kind = RequestKind::kChanges;
  std::vector<ItemChange> items;            // kChanges: the change set's items
  std::optional<ScheduledChange> schedule;  // kSchedule: what to schedule
  std::optional<ReleasePlan> plan;          // kReleasePlan: the plan to start
  // kApprovalSettings: the environment's settings asked for (fewer approvals, or self-approval
  // allowed: a weakening waits for the approvals it weakens).
  struct Settings {
    int required_approvals = 0;
    bool allow_self_approval = false;
  };
  std::optional<Settings> settings;
  std::string comment;
  bool auto_apply = true;  // applied as soon as approved; else by ApplyChangeRequest
  std::string created_by;  // the actor id of who opened it: the actor of what it applies
  std::string person;      // who opened it
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  int64_t version = 0;
  RequestStatus status = RequestStatus::kPending;
  int required_approvals = 1;  // the environment's, when opened
  std::vector<RequestReview> reviews;  // oldest first
  std::string reason;     // failed: why
  int64_t sequence = 0;   // applied kChanges: the change set
  std::string result_id;  // applied kSchedule / kReleasePlan: the scheduled change or plan
};
rules::Value ChangeRequestToJson(const ChangeRequest& r);

// A webhook subscription (DESIGN §9): events are POSTed to `url` as JSON, signed with
// HMAC-SHA256 under `secret`.
struct Webhook {
  std::string id;  // "wh_" + 12 hex digits, chosen by the store
  std::string url;  // http://host[:port]/path
  std::string secret;  // chosen by the store when empty; kept to sign (shown once, at creation)
  std::vector<std::string> events;  // event types it wants; empty: all
  std::string project;  // only events of this project; empty: all projects
  std::string description;
  bool enabled = true;
  std::string created_by;
  int64_t created_ms = 0;
  int64_t version = 0;
};
// `with_secret`: include the secret (only in the answer that creates the hook).
rules::Value WebhookToJson(const Webhook& w, bool with_secret = false);

// What became of one event sent to one hook, after its last attempt.
struct WebhookDelivery {
  std::string id;  // the delivery id, also sent as X-Gonfalon-Delivery
  std::string hook_id;
  std::string event;
  int64_t time_ms = 0;  // when the event happened
  int64_t done_ms = 0;  // when the last attempt ended
  int attempts = 0;
  bool delivered = false;
  int http_status = 0;  // of the last attempt (0: no response)
  std::string error;    // of the last attempt, when not delivered
};
rules::Value WebhookDeliveryToJson(const WebhookDelivery& d);

// API keys: stored only as SHA-256 hashes with a short visible prefix.
enum class KeyKind : uint8_t { kAdmin, kServer, kClient };
std::string_view KeyKindName(KeyKind k);  // "admin" / "server" / "client"

struct ApiKey {
  std::string id;
  KeyKind kind = KeyKind::kAdmin;
  std::string name;
  std::string prefix;  // the first characters of the secret, for people to recognise it
  bool write = false;  // admin keys: read-only or read-write
  std::string project;      // admin: optional limit; server/client: required
  std::string environment;  // server/client: required
  int64_t created_ms = 0;
  int64_t expires_ms = 0;  // 0: never (set by rotation's overlap window)
  bool revoked = false;

  // Whether the key still opens doors at `now_ms` (Unix ms): not revoked, not expired.
  bool UsableAt(int64_t now_ms) const { return !revoked && (expires_ms == 0 || now_ms < expires_ms); }
};
rules::Value ApiKeyToJson(const ApiKey& k);

struct NewApiKey {
  ApiKey key;
  std::string secret;  // shown once, never stored
};

// SDK events, counted per hour (hour_ms: the hour's start in Unix ms).
struct ExposureCount {
  std::string flag;
  int variation = -1;  // -1: the caller's default was served
  int64_t hour_ms = 0;
  int64_t count = 0;
};
struct MetricCount {
  std::string event;
  int64_t hour_ms = 0;
  int64_t count = 0;
  double sum = 0;  // of the events' numeric values
};

// --- Experiments (DESIGN §8): metrics, iterations, and per-unit results ---

enum class MetricKind : uint8_t { kConversion, kCount, kSum, kMean };
std::string_view MetricKindName(MetricKind k);  // "conversion", "count", "sum", "mean"
std::optional<MetricKind> ParseMetricKind(std::string_view name);  // nullopt: none of the four

// A metric of a project: what a unit's value is, from the metric events with `event_key`
// that follow the unit's first exposure. conversion: 1 if it fired at least once, else 0;
// count: how many; sum: the sum of their values; mean: their mean (0 without events).
struct Metric {
  std::string key;
  std::string name;
  std::string event_key;
  MetricKind kind = MetricKind::kConversion;
  bool lower_is_better = false;
  std::optional<double> cap;  // a unit's value is at most this (winsorized)
  int64_t version = 0;
  int64_t created_ms = 0;
};
// A metric as JSON, stored and answered by the API alike ({"key","name","eventKey","kind",
// "successCriteria","capValue"?,"version","createdMs"}), and back: an absent kind or
// successCriteria is "conversion" or "higher"; a member of the wrong type is InvalidArgument
// naming it.
rules::Value MetricToJson(const Metric& m);
absl::StatusOr<Metric> MetricFromJson(const rules::Value& v);

// One run of an experiment on a flag in an environment, from start to stop.
struct Iteration {
  int64_t number = 0;      // 1, 2, ... per flag and environment
  int64_t started_ms = 0;
  int64_t ended_ms = 0;    // 0: running
  int64_t archived_ms = 0; // 0: its unit states are kept; else when they were deleted
  int control = 0;         // the control variation
  std::vector<std::string> metrics;  // metric keys; the first is the primary metric
  std::vector<double> weights;       // the configured split, per variation (any scale)
  std::string unit_kind = "user";    // whose key is the unit
  int64_t flag_version = 0;          // the flag's version when it started (0: unknown)
};

// A unit (a context key of the iteration's unit kind) was served a variation.
struct UnitExposure {
  std::string flag;
  int variation = 0;
  std::string unit_kind = "user";
  std::string unit_key;
  int64_t time_ms = 0;
  // The flag's version the unit was evaluated at (0: unknown). An exposure from before the
  // version that started the running iteration (an SDK that had not yet heard of the change)
  // is refused, so that a new allocation's units are only those served under it.
  int64_t flag_version = 0;
};

// A metric event, for every unit of the context that sent it (kind -> key).
struct UnitEvent {
  std::string event_key;
  std::vector<std::pair<std::string, std::string>> units;
  double value = 1;
  int64_t time_ms = 0;
};

// Running sums of one metric for one variation over its units (each unit's value once).
struct MetricSums {
  double units = 0;
  double sum = 0;
  double sum_of_squares = 0;
};

// What results are computed from: O(variations × metrics), whatever the number of units.
struct ExperimentBatchResult {
  bool duplicate = false;
  std::vector<std::pair<size_t, std::string>> refused;  // index into the exposures, reason
};

// An iteration's cumulative sums at the end of one UTC day (the last batch applied that day).
struct DaySums {
  int64_t day_ms = 0;  // the day's start, Unix milliseconds
  std::vector<int64_t> units;
  int64_t multiple_exposures = 0;
  std::vector<std::vector<MetricSums>> metrics;  // by position in Iteration::metrics, per variation
};

struct IterationSums {
  Iteration iteration;
  std::vector<int64_t> units;  // per variation: units exposed to that variation only
  int64_t multiple_exposures = 0;  // units exposed to more than one variation (left out)
  // metric key -> per variation
  std::vector<std::pair<std::string, std::vector<MetricSums>>> metrics;
  std::vector<DaySums> days;  // oldest first: the daily series, for charts
};

class Store {
 public:
  static absl::StatusOr<std::unique_ptr<Store>> Open(Options options);
  virtual ~Store() = default;

  // --- projects and environments ---
  virtual absl::StatusOr<Project> CreateProject(const Project& p, const Actor& actor) = 0;
  virtual absl::StatusOr<Project> GetProject(std::string_view key) = 0;
  virtual absl::StatusOr<std::vector<Project>> ListProjects() = 0;
  // Name and description; `expect_version` 0 means no check.
  virtual absl::StatusOr<Project> UpdateProject(const Project& p, int64_t expect_version,
                                                const Actor& actor) = 0;
  // Removes the project with its environments, flags, segments, history and keys.
  virtual absl::Status DeleteProject(std::string_view key, const Actor& actor) = 0;

  // Every flag of the project appears in the new environment, off.
  virtual absl::StatusOr<Environment> CreateEnvironment(std::string_view project,
                                                        const Environment& e,
                                                        const Actor& actor) = 0;
  virtual absl::StatusOr<Environment> GetEnvironment(std::string_view project,
                                                     std::string_view key) = 0;
  virtual absl::StatusOr<std::vector<Environment>> ListEnvironments(std::string_view project) = 0;
  // Its name (when `in` has one) and its approval settings (always: pass the environment as
  // read, changed); `expect_version` 0 means no check.
  virtual absl::StatusOr<Environment> UpdateEnvironment(std::string_view project,
                                                        const Environment& e,
                                                        int64_t expect_version,
                                                        const Actor& actor) = 0;
  virtual absl::Status DeleteEnvironment(std::string_view project, std::string_view key,
                                         const Actor& actor) = 0;

  // --- flags at the project level ---
  // Creates the flag and, in every environment, a change set adding it (off).
  virtual absl::StatusOr<FlagMeta> CreateFlag(std::string_view project, const FlagMeta& meta,
                                              const Actor& actor, std::string_view comment) = 0;
  // Creates many flags in one commit (one change set per environment): all or nothing. Errors
  // name the flag ("flags[3].key: ..."). At most kMaxBulkFlags.
  static constexpr size_t kMaxBulkFlags = 10000;
  virtual absl::StatusOr<std::vector<FlagMeta>> CreateFlags(std::string_view project, const std::vector<FlagMeta>& metas,
                                                            const Actor& actor, std::string_view comment) = 0;
  virtual absl::StatusOr<FlagMeta> GetFlagMeta(std::string_view project, std::string_view key) = 0;
  virtual absl::StatusOr<std::vector<FlagMeta>> ListFlagMeta(std::string_view project) = 0;
  // Replaces the project-level part; every environment gets a change set with the new flag.
  // Fails (writing nothing) if an environment's targeting would point past the variations.
  virtual absl::StatusOr<FlagMeta> UpdateFlagMeta(std::string_view project, const FlagMeta& meta,
                                                  int64_t expect_version, const Actor& actor,
                                                  std::string_view comment) = 0;
  // Hard delete: every environment gets a change set deleting the flag.
  virtual absl::Status DeleteFlag(std::string_view project, std::string_view key,
                                  const Actor& actor, std::string_view comment) = 0;

  // --- change sets ---
  virtual absl::StatusOr<AppliedChangeSet> Apply(const ChangeSet& cs) = 0;

  // --- reads ---
  virtual absl::StatusOr<rules::Flag> GetFlag(std::string_view project, std::string_view env,
                                              std::string_view key) = 0;
  virtual absl::StatusOr<rules::Segment> GetSegment(std::string_view project,
                                                    std::string_view env,
                                                    std::string_view key) = 0;
  // Everything the evaluation snapshot needs, consistent at one sequence.
  virtual absl::StatusOr<rules::Environment> LoadEnvironment(std::string_view project,
                                                             std::string_view env) = 0;
  virtual absl::StatusOr<int64_t> Sequence(std::string_view project, std::string_view env) = 0;
  // Change sets with sequence > after, oldest first, as stored (AppliedChangeSet::event_json).
  // OutOfRange when `after` is older than the retained log (the client needs a full `put`).
  virtual absl::StatusOr<std::vector<std::string>> ChangesSince(std::string_view project,
                                                                std::string_view env,
                                                                int64_t after) = 0;
  // Audit, newest first; `before` pages back (records with sequence < before); `item_key`
  // limits to one flag or segment.
  virtual absl::StatusOr<HistoryPage> History(std::string_view project, std::string_view env,
                                              std::optional<ItemKind> kind,
                                              std::optional<std::string> item_key,
                                              std::optional<int64_t> before, int limit) = 0;
  // The environment as it was right after change set `sequence`, or at time `time_ms`.
  virtual absl::StatusOr<rules::Environment> EnvironmentAt(std::string_view project,
                                                           std::string_view env,
                                                           int64_t sequence) = 0;
  virtual absl::StatusOr<int64_t> SequenceAtTime(std::string_view project, std::string_view env,
                                                 int64_t time_ms) = 0;

  // Restores the environment (or one item) to its state after `sequence`, as a new change set
  // so that history is never rewritten and the restore can itself be undone. Flags keep their
  // current variations; only their targeting is restored.
  virtual absl::StatusOr<RestorePlan> Restore(std::string_view project, std::string_view env,
                                              int64_t sequence,
                                              std::optional<ItemKind> only_kind,
                                              std::optional<std::string> only_key, bool dry_run,
                                              const Actor& actor, std::string_view comment) = 0;

  // --- API keys ---
  virtual absl::StatusOr<NewApiKey> CreateApiKey(const ApiKey& spec) = 0;
  // Stores a key whose secret was chosen outside (GONFALON_ADMIN_TOKEN); at least 16 characters.
  virtual absl::StatusOr<NewApiKey> ImportApiKey(const ApiKey& spec, std::string_view secret) = 0;
  virtual absl::StatusOr<std::vector<ApiKey>> ListApiKeys() = 0;
  virtual absl::StatusOr<ApiKey> GetApiKey(std::string_view id) = 0;
  virtual absl::Status RevokeApiKey(std::string_view id) = 0;
  // A new secret with the same rights; the old one keeps working for `overlap_ms`.
  virtual absl::StatusOr<NewApiKey> RotateApiKey(std::string_view id, int64_t overlap_ms) = 0;
  // The key for a presented secret: NotFound for unknown, revoked or expired secrets.
  virtual absl::StatusOr<ApiKey> Authenticate(std::string_view secret) = 0;
  // Changes whenever an API key's record is written (created, revoked, rotated, or revoked
  // with its project or environment), once the write is durable: a cache of Authenticate's
  // answers stays valid while this stays the same (read it before calling Authenticate).
  virtual uint64_t KeysGeneration() const = 0;
  // A token that stands for a key only on the OFREP refetch stream, whose EventSource clients
  // must carry credentials in the URL: "gfo_<key id>.<HMAC of the id under a per-database
  // secret>". It does not reveal the key's secret, and it stops working when the key is
  // revoked or expires (rotation). For the id of a key the caller has authenticated (no read).
  virtual std::string StreamToken(std::string_view key_id) = 0;
  // The key behind a stream token: NotFound if forged, or if the key is gone, revoked or expired.
  virtual absl::StatusOr<ApiKey> AuthenticateStreamToken(std::string_view token) = 0;

  // --- SDK events (counts; written without fsync: a crash may lose the last moments) ---
  virtual absl::Status AddEventCounts(std::string_view project, std::string_view env,
                                      const std::vector<ExposureCount>& exposures,
                                      const std::vector<MetricCount>& metrics) = 0;
  virtual absl::StatusOr<std::vector<ExposureCount>> GetExposureCounts(std::string_view project,
                                                                       std::string_view env,
                                                                       std::string_view flag) = 0;
  virtual absl::StatusOr<std::vector<MetricCount>> GetMetricCounts(std::string_view project,
                                                                   std::string_view env,
                                                                   std::string_view event) = 0;

  // --- experiments (each call durable before it returns) ---
  virtual absl::StatusOr<Metric> PutMetric(std::string_view project, const Metric& metric) = 0;
  virtual absl::StatusOr<std::vector<Metric>> ListMetrics(std::string_view project) = 0;
  virtual absl::Status DeleteMetric(std::string_view project, std::string_view key) = 0;
  // Starts a new iteration (stopping the running one) with `spec`'s control, metrics, weights
  // and unit kind; its number and start time are filled in. The metrics must exist and the
  // control and weights fit the flag's variations.
  virtual absl::StatusOr<Iteration> StartIteration(std::string_view project, std::string_view env,
                                                   std::string_view flag, const Iteration& spec) = 0;
  // Stops the running iteration; FailedPrecondition when none runs.
  virtual absl::StatusOr<Iteration> StopIteration(std::string_view project, std::string_view env,
                                                  std::string_view flag) = 0;
  // Deletes the unit states of an ended iteration (its sums, results and daily series stay):
  // what a finished experiment keeps on disk drops from ~13 bytes per unit to nothing.
  // FailedPrecondition while it runs.
  virtual absl::StatusOr<Iteration> ArchiveIteration(std::string_view project, std::string_view env,
                                                     std::string_view flag, int64_t number) = 0;
  virtual absl::StatusOr<std::vector<Iteration>> ListIterations(std::string_view project, std::string_view env,
                                                                std::string_view flag) = 0;
  // Joins a batch of exposures and metric events to the units of the running iterations and
  // updates their sums, all in one write. A batch id seen before (in the last day) is not
  // applied again (`duplicate`). Exposures to a flag whose running iteration started after
  // them are refused (`refused`); other exposures and events outside a running iteration are
  // ignored.
  virtual absl::StatusOr<ExperimentBatchResult> RecordExperimentBatch(std::string_view project, std::string_view env,
                                                     std::string_view batch_id,
                                                     const std::vector<UnitExposure>& exposures,
                                                     const std::vector<UnitEvent>& events) = 0;
  virtual absl::StatusOr<IterationSums> GetIterationSums(std::string_view project, std::string_view env,
                                                         std::string_view flag, int64_t number) = 0;

  // --- scheduled changes (scheduled_changes.cc) ---
  // Validates the items as a change set would be (shape, data, expected versions) and stores
  // the change with status "scheduled". `spec`'s id, times, version and status are ignored.
  virtual absl::StatusOr<ScheduledChange> ScheduleChange(const ScheduledChange& spec, const Actor& actor) = 0;
  virtual absl::StatusOr<ScheduledChange> GetScheduledChange(std::string_view project, std::string_view env,
                                                             std::string_view id) = 0;
  // Every scheduled change of the environment (any status), by time to execute.
  virtual absl::StatusOr<std::vector<ScheduledChange>> ListScheduledChanges(std::string_view project,
                                                                            std::string_view env) = 0;
  // Only while "scheduled" (else FailedPrecondition).
  virtual absl::StatusOr<ScheduledChange> EditScheduledChange(std::string_view project, std::string_view env,
                                                              std::string_view id, const ScheduleEdit& edit,
                                                              const Actor& actor) = 0;
  virtual absl::StatusOr<ScheduledChange> CancelScheduledChange(std::string_view project, std::string_view env,
                                                                std::string_view id, const Actor& actor) = 0;
  // Runs, oldest first, every scheduled change due by the store's clock. Each is applied as one
  // change set by the actor "scheduler:<id> for <creator>", written in the same batch as its
  // record's new status, so that it runs once even across a crash; one whose items moved since
  // (or that no longer applies) is marked failed with the reason. Returns what ran. An error
  // means storage itself failed; what was not run stays due.
  virtual absl::StatusOr<std::vector<ScheduledChange>> RunDueScheduledChanges() = 0;
  // When the earliest scheduled change is due (ms since the epoch), if any.
  virtual absl::StatusOr<std::optional<int64_t>> NextScheduledChangeDue() = 0;

  // --- release plans (release_plans.cc) ---
  // Checks the plan (variations, the rule, stages widening to at most 100 %, no active or
  // paused plan on the flag) and applies its first stage, as the actor "release:<id>".
  virtual absl::StatusOr<ReleasePlan> StartReleasePlan(const ReleasePlan& spec, const Actor& actor) = 0;
  // The flag's latest plan, if any.
  virtual absl::StatusOr<std::optional<ReleasePlan>> GetReleasePlan(std::string_view project, std::string_view env,
                                                                    std::string_view flag) = 0;
  // Pause, resume (re-applies the current stage), abort (traffic stays), roll back (all to
  // control) or complete (all to treatment). FailedPrecondition when the plan is not in a
  // state the action applies to.
  // With `guard`, the action is a guard's (pause or roll back): refused unless that plan is
  // still the flag's active one; the firing is kept in the plan.
  virtual absl::StatusOr<ReleasePlan> ActOnReleasePlan(std::string_view project, std::string_view env,
                                                       std::string_view flag, PlanAction action, const Actor& actor,
                                                       std::string_view reason, const GuardFiring* guard = nullptr) = 0;
  // For every active plan, by the store's clock: pauses it if the flag's traffic was edited by
  // anyone else, else advances it when its stage's time and unit gates pass (the last stage
  // completes it). Each advance is one change set with the plan's new state. Returns the plans
  // that changed. Plans in `held` (ids: a guard objects) do not advance.
  virtual absl::StatusOr<std::vector<ReleasePlan>> RunReleasePlans(const std::set<std::string>& held = {}) = 0;
  // Every active plan, for the guards.
  virtual absl::StatusOr<std::vector<ReleasePlan>> ListActiveReleasePlans() = 0;
  virtual absl::StatusOr<bool> AnyActiveReleasePlan() = 0;

  // --- change requests (change_requests.cc) ---
  // Opens a request (items validated, and their expected versions taken, as a scheduled
  // change's); FailedPrecondition when the environment requires no approval.
  virtual absl::StatusOr<ChangeRequest> OpenChangeRequest(const ChangeRequest& spec, const Actor& actor) = 0;
  virtual absl::StatusOr<ChangeRequest> GetChangeRequest(std::string_view project, std::string_view env, std::string_view id) = 0;
  // Newest first; only those with `status` when set.
  virtual absl::StatusOr<std::vector<ChangeRequest>> ListChangeRequests(std::string_view project, std::string_view env,
                                                                        std::optional<RequestStatus> status) = 0;
  // Approve, decline or comment on a pending request. Approving your own request (unless the
  // environment allows it) or twice is PermissionDenied / FailedPrecondition. The approval
  // that reaches the required number approves it and, with auto_apply, applies it: the result
  // is applied, or failed with the reason (what it changes moved since, or no longer applies).
  virtual absl::StatusOr<ChangeRequest> ReviewChangeRequest(std::string_view project, std::string_view env,
                                                            std::string_view id, Review review, const Actor& actor,
                                                            std::string_view comment) = 0;
  // Applies an approved request (FailedPrecondition unless approved).
  virtual absl::StatusOr<ChangeRequest> ApplyChangeRequest(std::string_view project, std::string_view env,
                                                           std::string_view id, const Actor& actor) = 0;

  // --- webhooks (webhooks.cc) ---
  virtual absl::StatusOr<Webhook> CreateWebhook(const Webhook& spec, const Actor& actor) = 0;
  virtual absl::StatusOr<std::vector<Webhook>> ListWebhooks() = 0;
  virtual absl::StatusOr<Webhook> GetWebhook(std::string_view id) = 0;
  // Replaces url, events, project, description and enabled (the secret stays); Aborted when
  // `expect_version` (if set) is not the hook's version.
  virtual absl::StatusOr<Webhook> UpdateWebhook(const Webhook& hook, std::optional<int64_t> expect_version) = 0;
  virtual absl::Status DeleteWebhook(std::string_view id) = 0;  // and its delivery log
  // Appends to the hook's delivery log, which keeps the last kWebhookLogSize (no fsync).
  virtual absl::Status RecordWebhookDelivery(const WebhookDelivery& d) = 0;
  static constexpr int kWebhookLogSize = 100;
  // The hook's delivery log, newest first.
  virtual absl::StatusOr<std::vector<WebhookDelivery>> ListWebhookDeliveries(std::string_view hook_id) = 0;

  // --- operations ---
  // Drops change-log and audit entries older than Options::retain_ms.
  virtual absl::Status PruneHistory() = 0;
  // An online, consistent copy of the database in `dir` (which must not exist).
  virtual absl::Status Checkpoint(const std::string& dir) = 0;
  // RocksDB figures that matter to operators, name -> value.
  virtual std::vector<std::pair<std::string, int64_t>> Stats() = 0;

  // Called after every durable change set (from the writer's thread, no lock held). Calls for
  // one environment may arrive out of sequence order when writers race: treat a call as "this
  // environment changed" and read ChangesSince() from the last sequence you saw.
  // Set it before the first write.
  virtual void SetChangeListener(std::function<void(const AppliedChangeSet&)> listener) = 0;
};

}  // namespace gonfalon::storage
