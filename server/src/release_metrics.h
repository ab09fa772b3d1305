#pragma once
// Release metrics from history (DORA's four, for flags; docs/release-metrics.md): how often an
// environment releases, how long from a flag's creation to everyone getting it, how many
// releases are rolled back, and how fast. Pure: computed from audit records (each with the
// items before and after), the flags' creation times and the times guards fired.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "gonfalon/rules/value.h"
#include "gonfalon/storage/store.h"

namespace gonfalon::server {

struct ReleaseMetricsOptions {
  int64_t from_ms = 0;  // the window: releases at from <= time <= to
  int64_t to_ms = 0;
  // What counts as a release: "turnedOn" (off -> on), "fullRollout" (on, and the fallthrough
  // now serves one variation to everyone that it did not before), "planStart" (a release plan
  // began; its later steps, completion included, are part of that release).
  std::set<std::string> release = {"turnedOn", "fullRollout", "planStart"};
  // What counts as its failure, within failure_window_ms after it: "killSwitch" (on -> off),
  // "restore" (a restore to an earlier state), "guardRollback" (a release plan's guard),
  // "planRollback" (a plan rolled back by hand), "revert" (serving again what it served
  // before the release).
  std::set<std::string> failure = {"killSwitch", "restore", "guardRollback", "planRollback", "revert"};
  int64_t failure_window_ms = 24LL * 3600 * 1000;
};

// `records`: the environment's audit records, oldest first, from the window's start to its end
// plus the failure window. `created`: flag key -> creation time. `guard_fired`: release plan
// id -> when its guard fired (the failure signal of a guard's rollback).
// Answers {"window","definitions","releases","leadTime","changeFailureRate","timeToRestore"},
// each figure with the changes behind it (docs/release-metrics.md).
rules::Value ComputeReleaseMetrics(const std::vector<storage::AuditRecord>& records, const std::map<std::string, int64_t>& created,
                                   const std::map<std::string, int64_t>& guard_fired, const ReleaseMetricsOptions& options);

}  // namespace gonfalon::server
