#include "release_metrics.h"

#include <algorithm>
#include <cmath>
#include <ctime>

#include "gonfalon/rules/str_cat.h"
#include "wall_clock.h"

namespace gonfalon::server {

using rules::Object;
using rules::Value;

namespace {

constexpr int64_t kDayMs = 24LL * 3600 * 1000;
constexpr int kEveryone = 100000;  // a weight of 100 %

bool On(const Value& flag) {
  const Value* on = flag.Find("on");
  return on != nullptr && on->is_bool() && on->as_bool();
}

int IntOf(const Value* v) { return v != nullptr && v->is_number() ? static_cast<int>(v->as_number()) : -1; }

// The variation everyone gets from the fallthrough (-1: a split), or the off variation when
// the flag is off.
int Everyone(const Value& flag) {
  if (!On(flag)) return IntOf(flag.Find("offVariation"));
  const Value* ft = flag.Find("fallthrough");
  if (ft == nullptr || !ft->is_object()) return -1;
  if (int v = IntOf(ft->Find("variation")); v >= 0) return v;
  const Value* rollout = ft->Find("rollout");
  const Value* vars = rollout != nullptr ? rollout->Find("variations") : nullptr;
  if (vars == nullptr || !vars->is_array()) return -1;
  for (const Value& w : vars->as_array()) {
    if (IntOf(w.Find("weight")) == kEveryone) return IntOf(w.Find("variation"));
  }
  return -1;
}

Value Median(std::vector<double> v) {
  if (v.empty()) return Value();
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return Value(n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2);
}

// A number, or null when there is none (built apart: GCC 12 misjudges a ternary of Values in
// an initializer list as maybe-uninitialized).
Value NumberOrNull(bool has, double v) {
  Value out;
  if (has) out = Value(v);
  return out;
}

Value Names(const std::set<std::string>& s) {
  rules::Array a;
  for (const std::string& x : s) a.emplace_back(x);
  return Value(std::move(a));
}

struct Release {
  std::string flag;
  std::string kind;
  int64_t sequence = 0;
  int64_t time_ms = 0;
  std::string actor;
  int before_everyone = -1;  // what everyone got before
  int variation = -1;        // what everyone gets now (-1: not everyone the same)
  bool failed = false;
};

}  // namespace

Value ComputeReleaseMetrics(const std::vector<storage::AuditRecord>& records, const std::map<std::string, int64_t>& created,
                            const std::map<std::string, int64_t>& guard_fired, const ReleaseMetricsOptions& o) {
  std::vector<Release> releases;
  rules::Array failures, restores;
  std::vector<double> restore_minutes;
  for (const storage::AuditRecord& rec : records) {
    bool restore = rec.comment.find("restore to sequence") != std::string::npos;
    bool plan_rollback = rec.actor.rfind("release:", 0) == 0 && rec.comment.find("rolled back") != std::string::npos;
    bool by_guard = plan_rollback && rec.comment.find("by guard") != std::string::npos;
    for (const storage::AuditRecord::Item& item : rec.items) {
      if (item.kind != storage::ItemKind::kFlag || !item.before.is_object() || !item.after.is_object()) continue;
      const Value& before = item.before;
      const Value& after = item.after;
      int was = Everyone(before), now = Everyone(after);
      // A failure of this flag's latest open release?
      std::string how;
      if (restore) {
        how = "restore";
      } else if (by_guard) {
        how = "guardRollback";
      } else if (plan_rollback) {
        how = "planRollback";
      } else if (On(before) && !On(after)) {
        how = "killSwitch";
      }
      Release* open = nullptr;
      for (auto it = releases.rbegin(); it != releases.rend(); ++it) {
        if (it->flag == item.key) {
          open = &*it;
          break;
        }
      }
      if (how.empty() && open != nullptr && !open->failed && now != open->variation && now == open->before_everyone && was != now) {
        how = "revert";
      }
      bool is_failure = !how.empty() && o.failure.count(how);
      if (is_failure && open != nullptr && !open->failed && rec.time_ms - open->time_ms <= o.failure_window_ms) {
        open->failed = true;
        int64_t signal = open->time_ms;  // the bad change
        std::string plan = rec.actor.substr(std::string("release:").size());
        if (how == "guardRollback") {
          if (auto fired = guard_fired.find(plan); fired != guard_fired.end()) signal = fired->second;
        }
        double minutes = static_cast<double>(rec.time_ms - signal) / 60000.0;
        restore_minutes.push_back(minutes);
        failures.push_back(Value(Object{{"flag", Value(item.key)}, {"how", Value(how)}, {"releaseSequence", Value(open->sequence)},
                                        {"rollbackSequence", Value(rec.sequence)}, {"rollbackTimeMs", Value(rec.time_ms)},
                                        {"actor", Value(rec.actor)}}));
        restores.push_back(Value(Object{{"flag", Value(item.key)}, {"how", Value(how)}, {"signalMs", Value(signal)},
                                        {"restoredMs", Value(rec.time_ms)}, {"minutes", Value(minutes)},
                                        {"rollbackSequence", Value(rec.sequence)}}));
      }
      if (!how.empty()) continue;  // a rollback is not a release
      // A release?
      if (rec.time_ms < o.from_ms || rec.time_ms > o.to_ms) continue;
      std::string kind;
      if (rec.actor.rfind("release:", 0) == 0) {
        // A release plan is one release, from its start; its later steps are part of it.
        if (rec.comment.find("started by") == std::string::npos) continue;
        kind = "planStart";
      } else if (!On(before) && On(after)) {
        kind = "turnedOn";
      } else if (On(before) && On(after) && now >= 0 && now != was) {
        kind = "fullRollout";
      }
      if (kind.empty() || !o.release.count(kind)) continue;
      releases.push_back({item.key, kind, rec.sequence, rec.time_ms, rec.actor, On(before) ? was : -1, now, false});
    }
  }
  // The figures.
  double days = std::max(1.0, static_cast<double>(o.to_ms - o.from_ms) / kDayMs);
  rules::Array items, lead_items;
  std::map<std::string, int64_t> by_day;
  std::vector<double> lead_hours;
  int64_t failed = 0;
  for (const Release& r : releases) {
    items.push_back(Value(Object{{"flag", Value(r.flag)}, {"kind", Value(r.kind)}, {"sequence", Value(r.sequence)}, {"timeMs", Value(r.time_ms)},
                                 {"actor", Value(r.actor)}, {"variation", NumberOrNull(r.variation >= 0, r.variation)},
                                 {"failed", Value(r.failed)}}));
    ++by_day[UtcDay(r.time_ms)];
    failed += r.failed;
    auto c = created.find(r.flag);
    if (r.variation >= 0 && c != created.end() && c->second <= r.time_ms) {
      double hours = static_cast<double>(r.time_ms - c->second) / 3.6e6;
      lead_hours.push_back(hours);
      lead_items.push_back(Value(Object{{"flag", Value(r.flag)}, {"createdMs", Value(c->second)}, {"releasedMs", Value(r.time_ms)},
                                        {"hours", Value(hours)}, {"sequence", Value(r.sequence)}}));
    }
  }
  rules::Array per_day;
  for (const auto& [day, n] : by_day) per_day.push_back(Value(Object{{"day", Value(day)}, {"count", Value(n)}}));
  int64_t n = static_cast<int64_t>(releases.size());
  return Value(Object{
      {"window", Value(Object{{"fromMs", Value(o.from_ms)}, {"toMs", Value(o.to_ms)}, {"days", Value(days)}})},
      {"definitions", Value(Object{{"release", Names(o.release)},
                                   {"failure", Names(o.failure)},
                                   {"failureWindowHours", Value(static_cast<double>(o.failure_window_ms) / 3.6e6)}})},
      {"releases", Value(Object{{"count", Value(n)},
                                {"perDay", Value(static_cast<double>(n) / days)},
                                {"perWeek", Value(static_cast<double>(n) * 7 / days)},
                                {"byDay", Value(std::move(per_day))},
                                {"items", Value(std::move(items))}})},
      {"leadTime", Value(Object{{"count", Value(static_cast<int64_t>(lead_hours.size()))},
                                {"medianHours", Median(lead_hours)},
                                {"items", Value(std::move(lead_items))}})},
      {"changeFailureRate", Value(Object{{"failed", Value(failed)},
                                         {"releases", Value(n)},
                                         {"rate", NumberOrNull(n > 0, n > 0 ? static_cast<double>(failed) / static_cast<double>(n) : 0)},
                                         {"items", Value(std::move(failures))}})},
      {"timeToRestore", Value(Object{{"count", Value(static_cast<int64_t>(restore_minutes.size()))},
                                     {"medianMinutes", Median(restore_minutes)},
                                     {"items", Value(std::move(restores))}})}});
}

}  // namespace gonfalon::server
