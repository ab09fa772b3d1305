#include "scheduler.h"

#include <chrono>
#include <string>

#include "gonfalon/rules/str_cat.h"
#include "log.h"
#include "wall_clock.h"

namespace gonfalon::server {

namespace {
// How long the scheduler sleeps at most: a safety net for a wall clock that jumps; changes are
// created and moved with Wake().
constexpr auto kMaxSleep = std::chrono::seconds(5);
// Late by more than this, a change says so in the log.
constexpr int64_t kLateMs = 1000;
// How often active release plans are judged and moved.
constexpr auto kPlanTick = std::chrono::milliseconds(500);
}  // namespace

Scheduler::Scheduler(storage::Store& store, Metrics& metrics, WebhookDispatcher& webhooks)
    : store_(store), metrics_(metrics), webhooks_(webhooks), guards_(store, metrics, webhooks) {}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Scheduler::Start() {
  std::lock_guard<std::mutex> l(mu_);
  if (started_ || stop_) return;
  started_ = true;
  thread_ = std::thread([this] { Loop(); });
}

void Scheduler::Wake() {
  {
    std::lock_guard<std::mutex> l(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

bool Scheduler::RunDue() {
  absl::StatusOr<std::vector<storage::ScheduledChange>> ran = store_.RunDueScheduledChanges();
  if (!ran.ok()) {
    Log(LogLevel::kError, "scheduled changes could not run; retrying in a second",
        {{"error", std::string(ran.status().message())}});
    return false;
  }
  for (const storage::ScheduledChange& c : *ran) {
    webhooks_.Publish(c.status == storage::ScheduleStatus::kApplied ? "scheduled_change.applied" : "scheduled_change.failed",
                      c.project, c.environment, storage::ScheduledChangeToJson(c));
    int64_t late = c.ran_ms - c.execute_at_ms;
    std::string where = StrCat(c.project, "/", c.environment);
    if (c.status == storage::ScheduleStatus::kApplied) {
      ++metrics_.scheduled_applied;
      Log(late > kLateMs ? LogLevel::kWarn : LogLevel::kInfo, late > kLateMs ? "scheduled change ran late" : "scheduled change applied",
          {{"id", c.id}, {"environment", where}, {"sequence", std::to_string(c.sequence)},
           {"lateByMs", std::to_string(late)}, {"unchanged", c.unchanged ? "true" : "false"}});
    } else {
      ++metrics_.scheduled_failed;
      Log(LogLevel::kWarn, "scheduled change failed",
          {{"id", c.id}, {"environment", where}, {"reason", c.reason}, {"lateByMs", std::to_string(late)}});
    }
  }
  return true;
}

bool Scheduler::RunPlans() {
  absl::StatusOr<bool> any = store_.AnyActiveReleasePlan();
  if (!any.ok() || !*any) return false;
  // The guards first: a plan a guard objects to does not advance; one that fired acts now.
  absl::StatusOr<std::vector<storage::ReleasePlan>> active = store_.ListActiveReleasePlans();
  if (!active.ok()) {
    Log(LogLevel::kError, "release plans could not be read; retrying", {{"error", std::string(active.status().message())}});
    return true;
  }
  std::set<std::string> held = guards_.Check(*active, NowMs());
  absl::StatusOr<std::vector<storage::ReleasePlan>> changed = store_.RunReleasePlans(held);
  if (!changed.ok()) {
    Log(LogLevel::kError, "release plans could not run; retrying in a second", {{"error", std::string(changed.status().message())}});
    return true;
  }
  for (const storage::ReleasePlan& p : *changed) {
    std::string_view event = p.status == storage::PlanStatus::kPaused      ? "release_plan.paused"
                             : p.status == storage::PlanStatus::kCompleted ? "release_plan.completed"
                             : p.status == storage::PlanStatus::kAborted   ? "release_plan.aborted"
                                                                           : "release_plan.advanced";
    webhooks_.Publish(event, p.project, p.environment, storage::ReleasePlanToJson(p));
    Log(LogLevel::kInfo, "release plan changed",
        {{"plan", p.id}, {"flag", StrCat(p.project, "/", p.environment, "/", p.flag)}, {"status", storage::PlanStatusName(p.status)},
         {"stage", std::to_string(p.stage + 1)}, {"what", p.events.empty() ? std::string() : p.events.back().what}});
  }
  return true;
}

void Scheduler::Loop() {
  using Clock = std::chrono::system_clock;
  while (true) {
    bool ok = RunDue();
    bool plans = RunPlans();
    absl::StatusOr<std::optional<int64_t>> next = store_.NextScheduledChangeDue();
    // Active plans are looked at twice a second: their gates depend on time and on units, and
    // a guard that fires should act within a second of the data.
    Clock::time_point wake = Clock::now() + (plans ? kPlanTick : kMaxSleep);
    if (!ok || !next.ok()) {
      wake = Clock::now() + std::chrono::seconds(1);  // storage failed: not in a tight loop
    } else if (next->has_value()) {
      wake = std::min(wake, Clock::time_point(std::chrono::milliseconds(**next)));
    }
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_until(l, wake, [&] { return stop_ || woken_; });
    if (stop_) return;
    woken_ = false;
  }
}

}  // namespace gonfalon::server
