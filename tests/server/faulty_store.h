#pragma once
// A Store for handler tests: every call goes to a real store (in a temporary directory) unless
// the test has made that method fail, so handlers meet exactly the errors storage can return
// (a full disk, corruption, an outage) without sockets or a broken disk.

#include <map>
#include <mutex>
#include <string>

#include "gonfalon/rules/status_macros.h"
#include "gonfalon/storage/store.h"

namespace gonfalon::storage {

class FaultyStore final : public Store {
 public:
  explicit FaultyStore(Store& inner) : inner_(inner) {}

  // Calls of `method` (e.g. "GetFlag") return `status` until Heal(method).
  void Fail(const std::string& method, absl::Status status) {
    std::lock_guard<std::mutex> l(mu_);
    faults_[method] = std::move(status);
  }
  void Heal(const std::string& method) {
    std::lock_guard<std::mutex> l(mu_);
    faults_.erase(method);
  }

  void SetChangeListener(std::function<void(const AppliedChangeSet&)> listener) override {
    inner_.SetChangeListener(std::move(listener));
  }
  absl::StatusOr<Project> CreateProject(const Project& in, const Actor& actor) override {
    RETURN_IF_ERROR(Fault("CreateProject"));
    return inner_.CreateProject(in, actor);
  }
  absl::StatusOr<Project> GetProject(std::string_view key) override {
    RETURN_IF_ERROR(Fault("GetProject"));
    return inner_.GetProject(key);
  }
  absl::StatusOr<std::vector<Project>> ListProjects() override {
    RETURN_IF_ERROR(Fault("ListProjects"));
    return inner_.ListProjects();
  }
  absl::StatusOr<Project> UpdateProject(const Project& in, int64_t expect_version, const Actor& actor) override {
    RETURN_IF_ERROR(Fault("UpdateProject"));
    return inner_.UpdateProject(in, expect_version, actor);
  }
  absl::Status DeleteProject(std::string_view key, const Actor& actor) override {
    RETURN_IF_ERROR(Fault("DeleteProject"));
    return inner_.DeleteProject(key, actor);
  }
  absl::StatusOr<Environment> CreateEnvironment(std::string_view project, const Environment& in, const Actor& actor) override {
    RETURN_IF_ERROR(Fault("CreateEnvironment"));
    return inner_.CreateEnvironment(project, in, actor);
  }
  absl::StatusOr<Environment> GetEnvironment(std::string_view project, std::string_view key) override {
    RETURN_IF_ERROR(Fault("GetEnvironment"));
    return inner_.GetEnvironment(project, key);
  }
  absl::StatusOr<std::vector<Environment>> ListEnvironments(std::string_view project) override {
    RETURN_IF_ERROR(Fault("ListEnvironments"));
    return inner_.ListEnvironments(project);
  }
  absl::StatusOr<Environment> UpdateEnvironment(std::string_view project, const Environment& in, int64_t expect_version, const Actor& actor) override {
    RETURN_IF_ERROR(Fault("UpdateEnvironment"));
    return inner_.UpdateEnvironment(project, in, expect_version, actor);
  }
  absl::Status DeleteEnvironment(std::string_view project, std::string_view key, const Actor& actor) override {
    RETURN_IF_ERROR(Fault("DeleteEnvironment"));
    return inner_.DeleteEnvironment(project, key, actor);
  }
  absl::StatusOr<FlagMeta> CreateFlag(std::string_view project, const FlagMeta& in, const Actor& actor, std::string_view comment) override {
    RETURN_IF_ERROR(Fault("CreateFlag"));
    return inner_.CreateFlag(project, in, actor, comment);
  }
  absl::StatusOr<std::vector<FlagMeta>> CreateFlags(std::string_view project, const std::vector<FlagMeta>& in, const Actor& actor, std::string_view comment) override {
    RETURN_IF_ERROR(Fault("CreateFlags"));
    return inner_.CreateFlags(project, in, actor, comment);
  }
  absl::StatusOr<FlagMeta> GetFlagMeta(std::string_view project, std::string_view key) override {
    RETURN_IF_ERROR(Fault("GetFlagMeta"));
    return inner_.GetFlagMeta(project, key);
  }
  absl::StatusOr<std::vector<FlagMeta>> ListFlagMeta(std::string_view project) override {
    RETURN_IF_ERROR(Fault("ListFlagMeta"));
    return inner_.ListFlagMeta(project);
  }
  absl::StatusOr<FlagMeta> UpdateFlagMeta(std::string_view project, const FlagMeta& in, int64_t expect_version, const Actor& actor, std::string_view comment) override {
    RETURN_IF_ERROR(Fault("UpdateFlagMeta"));
    return inner_.UpdateFlagMeta(project, in, expect_version, actor, comment);
  }
  absl::Status DeleteFlag(std::string_view project, std::string_view key, const Actor& actor, std::string_view comment) override {
    RETURN_IF_ERROR(Fault("DeleteFlag"));
    return inner_.DeleteFlag(project, key, actor, comment);
  }
  absl::StatusOr<AppliedChangeSet> Apply(const ChangeSet& cs) override {
    RETURN_IF_ERROR(Fault("Apply"));
    return inner_.Apply(cs);
  }
  absl::StatusOr<rules::Flag> GetFlag(std::string_view project, std::string_view env, std::string_view key) override {
    RETURN_IF_ERROR(Fault("GetFlag"));
    return inner_.GetFlag(project, env, key);
  }
  absl::StatusOr<rules::Segment> GetSegment(std::string_view project, std::string_view env, std::string_view key) override {
    RETURN_IF_ERROR(Fault("GetSegment"));
    return inner_.GetSegment(project, env, key);
  }
  absl::StatusOr<rules::Environment> LoadEnvironment(std::string_view project, std::string_view env) override {
    RETURN_IF_ERROR(Fault("LoadEnvironment"));
    return inner_.LoadEnvironment(project, env);
  }
  absl::StatusOr<int64_t> Sequence(std::string_view project, std::string_view env) override {
    RETURN_IF_ERROR(Fault("Sequence"));
    return inner_.Sequence(project, env);
  }
  absl::StatusOr<std::vector<std::string>> ChangesSince(std::string_view project, std::string_view env, int64_t after) override {
    RETURN_IF_ERROR(Fault("ChangesSince"));
    return inner_.ChangesSince(project, env, after);
  }
  absl::StatusOr<HistoryPage> History(std::string_view project, std::string_view env, std::optional<ItemKind> kind, std::optional<std::string> item_key, std::optional<int64_t> before, int limit) override {
    RETURN_IF_ERROR(Fault("History"));
    return inner_.History(project, env, kind, item_key, before, limit);
  }
  absl::StatusOr<rules::Environment> EnvironmentAt(std::string_view project, std::string_view env, int64_t sequence) override {
    RETURN_IF_ERROR(Fault("EnvironmentAt"));
    return inner_.EnvironmentAt(project, env, sequence);
  }
  absl::StatusOr<int64_t> SequenceAtTime(std::string_view project, std::string_view env, int64_t time_ms) override {
    RETURN_IF_ERROR(Fault("SequenceAtTime"));
    return inner_.SequenceAtTime(project, env, time_ms);
  }
  absl::StatusOr<ScheduledChange> ScheduleChange(const ScheduledChange& spec, const Actor& actor) override {
    RETURN_IF_ERROR(Fault("ScheduleChange"));
    return inner_.ScheduleChange(spec, actor);
  }
  absl::StatusOr<ScheduledChange> GetScheduledChange(std::string_view project, std::string_view env, std::string_view id) override {
    RETURN_IF_ERROR(Fault("GetScheduledChange"));
    return inner_.GetScheduledChange(project, env, id);
  }
  absl::StatusOr<std::vector<ScheduledChange>> ListScheduledChanges(std::string_view project, std::string_view env) override {
    RETURN_IF_ERROR(Fault("ListScheduledChanges"));
    return inner_.ListScheduledChanges(project, env);
  }
  absl::StatusOr<ScheduledChange> EditScheduledChange(std::string_view project, std::string_view env, std::string_view id,
                                                      const ScheduleEdit& edit, const Actor& actor) override {
    RETURN_IF_ERROR(Fault("EditScheduledChange"));
    return inner_.EditScheduledChange(project, env, id, edit, actor);
  }
  absl::StatusOr<ScheduledChange> CancelScheduledChange(std::string_view project, std::string_view env, std::string_view id,
                                                        const Actor& actor) override {
    RETURN_IF_ERROR(Fault("CancelScheduledChange"));
    return inner_.CancelScheduledChange(project, env, id, actor);
  }
  absl::StatusOr<std::vector<ScheduledChange>> RunDueScheduledChanges() override {
    RETURN_IF_ERROR(Fault("RunDueScheduledChanges"));
    return inner_.RunDueScheduledChanges();
  }
  absl::StatusOr<std::optional<int64_t>> NextScheduledChangeDue() override {
    RETURN_IF_ERROR(Fault("NextScheduledChangeDue"));
    return inner_.NextScheduledChangeDue();
  }
  absl::StatusOr<ReleasePlan> StartReleasePlan(const ReleasePlan& spec, const Actor& actor) override {
    RETURN_IF_ERROR(Fault("StartReleasePlan"));
    return inner_.StartReleasePlan(spec, actor);
  }
  absl::StatusOr<std::optional<ReleasePlan>> GetReleasePlan(std::string_view project, std::string_view env, std::string_view flag) override {
    RETURN_IF_ERROR(Fault("GetReleasePlan"));
    return inner_.GetReleasePlan(project, env, flag);
  }
  absl::StatusOr<ReleasePlan> ActOnReleasePlan(std::string_view project, std::string_view env, std::string_view flag,
                                               PlanAction action, const Actor& actor, std::string_view reason,
                                               const GuardFiring* guard) override {
    RETURN_IF_ERROR(Fault("ActOnReleasePlan"));
    return inner_.ActOnReleasePlan(project, env, flag, action, actor, reason, guard);
  }
  absl::StatusOr<std::vector<ReleasePlan>> RunReleasePlans(const std::set<std::string>& held) override {
    RETURN_IF_ERROR(Fault("RunReleasePlans"));
    return inner_.RunReleasePlans(held);
  }
  absl::StatusOr<std::vector<ReleasePlan>> ListActiveReleasePlans() override {
    RETURN_IF_ERROR(Fault("ListActiveReleasePlans"));
    return inner_.ListActiveReleasePlans();
  }
  absl::StatusOr<ChangeRequest> OpenChangeRequest(const ChangeRequest& spec, const Actor& actor) override {
    RETURN_IF_ERROR(Fault("OpenChangeRequest"));
    return inner_.OpenChangeRequest(spec, actor);
  }
  absl::StatusOr<ChangeRequest> GetChangeRequest(std::string_view project, std::string_view env, std::string_view id) override {
    RETURN_IF_ERROR(Fault("GetChangeRequest"));
    return inner_.GetChangeRequest(project, env, id);
  }
  absl::StatusOr<std::vector<ChangeRequest>> ListChangeRequests(std::string_view project, std::string_view env,
                                                                std::optional<RequestStatus> status) override {
    RETURN_IF_ERROR(Fault("ListChangeRequests"));
    return inner_.ListChangeRequests(project, env, status);
  }
  absl::StatusOr<ChangeRequest> ReviewChangeRequest(std::string_view project, std::string_view env, std::string_view id,
                                                    Review review, const Actor& actor, std::string_view comment) override {
    RETURN_IF_ERROR(Fault("ReviewChangeRequest"));
    return inner_.ReviewChangeRequest(project, env, id, review, actor, comment);
  }
  absl::StatusOr<ChangeRequest> ApplyChangeRequest(std::string_view project, std::string_view env, std::string_view id,
                                                   const Actor& actor) override {
    RETURN_IF_ERROR(Fault("ApplyChangeRequest"));
    return inner_.ApplyChangeRequest(project, env, id, actor);
  }
  absl::StatusOr<bool> AnyActiveReleasePlan() override {
    RETURN_IF_ERROR(Fault("AnyActiveReleasePlan"));
    return inner_.AnyActiveReleasePlan();
  }
  absl::StatusOr<Webhook> CreateWebhook(const Webhook& spec, const Actor& actor) override {
    RETURN_IF_ERROR(Fault("CreateWebhook"));
    return inner_.CreateWebhook(spec, actor);
  }
  absl::StatusOr<std::vector<Webhook>> ListWebhooks() override {
    RETURN_IF_ERROR(Fault("ListWebhooks"));
    return inner_.ListWebhooks();
  }
  absl::StatusOr<Webhook> GetWebhook(std::string_view id) override {
    RETURN_IF_ERROR(Fault("GetWebhook"));
    return inner_.GetWebhook(id);
  }
  absl::StatusOr<Webhook> UpdateWebhook(const Webhook& hook, std::optional<int64_t> expect_version) override {
    RETURN_IF_ERROR(Fault("UpdateWebhook"));
    return inner_.UpdateWebhook(hook, expect_version);
  }
  absl::Status DeleteWebhook(std::string_view id) override {
    RETURN_IF_ERROR(Fault("DeleteWebhook"));
    return inner_.DeleteWebhook(id);
  }
  absl::Status RecordWebhookDelivery(const WebhookDelivery& d) override {
    RETURN_IF_ERROR(Fault("RecordWebhookDelivery"));
    return inner_.RecordWebhookDelivery(d);
  }
  absl::StatusOr<std::vector<WebhookDelivery>> ListWebhookDeliveries(std::string_view hook_id) override {
    RETURN_IF_ERROR(Fault("ListWebhookDeliveries"));
    return inner_.ListWebhookDeliveries(hook_id);
  }
  absl::StatusOr<RestorePlan> Restore(std::string_view project, std::string_view env, int64_t sequence, std::optional<ItemKind> only_kind, std::optional<std::string> only_key, bool dry_run, const Actor& actor, std::string_view comment) override {
    RETURN_IF_ERROR(Fault("Restore"));
    return inner_.Restore(project, env, sequence, only_kind, only_key, dry_run, actor, comment);
  }
  absl::StatusOr<NewApiKey> CreateApiKey(const ApiKey& spec) override {
    RETURN_IF_ERROR(Fault("CreateApiKey"));
    return inner_.CreateApiKey(spec);
  }
  absl::StatusOr<NewApiKey> ImportApiKey(const ApiKey& spec, std::string_view secret) override {
    RETURN_IF_ERROR(Fault("ImportApiKey"));
    return inner_.ImportApiKey(spec, secret);
  }
  absl::StatusOr<std::vector<ApiKey>> ListApiKeys() override {
    RETURN_IF_ERROR(Fault("ListApiKeys"));
    return inner_.ListApiKeys();
  }
  absl::StatusOr<ApiKey> GetApiKey(std::string_view id) override {
    RETURN_IF_ERROR(Fault("GetApiKey"));
    return inner_.GetApiKey(id);
  }
  absl::Status RevokeApiKey(std::string_view id) override {
    RETURN_IF_ERROR(Fault("RevokeApiKey"));
    return inner_.RevokeApiKey(id);
  }
  absl::StatusOr<NewApiKey> RotateApiKey(std::string_view id, int64_t overlap_ms) override {
    RETURN_IF_ERROR(Fault("RotateApiKey"));
    return inner_.RotateApiKey(id, overlap_ms);
  }
  absl::StatusOr<ApiKey> Authenticate(std::string_view secret) override {
    RETURN_IF_ERROR(Fault("Authenticate"));
    return inner_.Authenticate(secret);
  }
  std::string StreamToken(std::string_view key_id) override {
    return inner_.StreamToken(key_id);
  }
  uint64_t KeysGeneration() const override { return inner_.KeysGeneration(); }
  absl::StatusOr<ApiKey> AuthenticateStreamToken(std::string_view token) override {
    RETURN_IF_ERROR(Fault("AuthenticateStreamToken"));
    return inner_.AuthenticateStreamToken(token);
  }
  absl::Status AddEventCounts(std::string_view project, std::string_view env, const std::vector<ExposureCount>& exposures, const std::vector<MetricCount>& metrics) override {
    RETURN_IF_ERROR(Fault("AddEventCounts"));
    return inner_.AddEventCounts(project, env, exposures, metrics);
  }
  absl::StatusOr<std::vector<ExposureCount>> GetExposureCounts(std::string_view project, std::string_view env, std::string_view flag) override {
    RETURN_IF_ERROR(Fault("GetExposureCounts"));
    return inner_.GetExposureCounts(project, env, flag);
  }
  absl::StatusOr<std::vector<MetricCount>> GetMetricCounts(std::string_view project, std::string_view env, std::string_view event) override {
    RETURN_IF_ERROR(Fault("GetMetricCounts"));
    return inner_.GetMetricCounts(project, env, event);
  }
  absl::StatusOr<Metric> PutMetric(std::string_view project, const Metric& metric) override {
    RETURN_IF_ERROR(Fault("PutMetric"));
    return inner_.PutMetric(project, metric);
  }
  absl::StatusOr<std::vector<Metric>> ListMetrics(std::string_view project) override {
    RETURN_IF_ERROR(Fault("ListMetrics"));
    return inner_.ListMetrics(project);
  }
  absl::Status DeleteMetric(std::string_view project, std::string_view key) override {
    RETURN_IF_ERROR(Fault("DeleteMetric"));
    return inner_.DeleteMetric(project, key);
  }
  absl::StatusOr<Iteration> StartIteration(std::string_view project, std::string_view env, std::string_view flag, const Iteration& spec) override {
    RETURN_IF_ERROR(Fault("StartIteration"));
    return inner_.StartIteration(project, env, flag, spec);
  }
  absl::StatusOr<Iteration> ArchiveIteration(std::string_view project, std::string_view env, std::string_view flag, int64_t number) override {
    RETURN_IF_ERROR(Fault("ArchiveIteration"));
    return inner_.ArchiveIteration(project, env, flag, number);
  }
  absl::StatusOr<Iteration> StopIteration(std::string_view project, std::string_view env, std::string_view flag) override {
    RETURN_IF_ERROR(Fault("StopIteration"));
    return inner_.StopIteration(project, env, flag);
  }
  absl::StatusOr<std::vector<Iteration>> ListIterations(std::string_view project, std::string_view env, std::string_view flag) override {
    RETURN_IF_ERROR(Fault("ListIterations"));
    return inner_.ListIterations(project, env, flag);
  }
  absl::StatusOr<ExperimentBatchResult> RecordExperimentBatch(std::string_view project, std::string_view env, std::string_view batch_id, const std::vector<UnitExposure>& exposures, const std::vector<UnitEvent>& events) override {
    RETURN_IF_ERROR(Fault("RecordExperimentBatch"));
    return inner_.RecordExperimentBatch(project, env, batch_id, exposures, events);
  }
  absl::StatusOr<IterationSums> GetIterationSums(std::string_view project, std::string_view env, std::string_view flag, int64_t number) override {
    RETURN_IF_ERROR(Fault("GetIterationSums"));
    return inner_.GetIterationSums(project, env, flag, number);
  }
  absl::Status PruneHistory() override {
    RETURN_IF_ERROR(Fault("PruneHistory"));
    return inner_.PruneHistory();
  }
  absl::Status Checkpoint(const std::string& dir) override {
    RETURN_IF_ERROR(Fault("Checkpoint"));
    return inner_.Checkpoint(dir);
  }
  std::vector<std::pair<std::string, int64_t>> Stats() override {
    return inner_.Stats();
  }

 private:
  absl::Status Fault(const std::string& method) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = faults_.find(method);
    return it == faults_.end() ? absl::OkStatus() : it->second;
  }

  Store& inner_;
  std::mutex mu_;
  std::map<std::string, absl::Status> faults_;
};

}  // namespace gonfalon::storage
