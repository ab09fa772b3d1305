// Release metrics (docs/release-metrics.md; the figures are computed in release_metrics.h):
//   GET /api/v1/projects/{p}/environments/{e}/release-metrics
//       ?from=&to=                        RFC 3339 or Unix ms; default the last 30 days
//       &release=turnedOn,fullRollout,planStart
//       &failure=killSwitch,restore,guardRollback,planRollback,revert
//       &failureWindowHours=24

#include <set>

#include "gonfalon/rules/dates.h"
#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/str_cat.h"
#include "release_metrics.h"
#include "responses.h"
#include "routes.h"
#include "wall_clock.h"

namespace gonfalon::server {

using rules::Value;

namespace {

constexpr int64_t kDefaultWindowMs = 30LL * 24 * 3600 * 1000;
constexpr int kPage = 500;

absl::StatusOr<int64_t> TimeParam(const Request& req, std::string_view name, int64_t fallback) {
  const std::string* v = req.Query(name);
  if (v == nullptr || v->empty()) return fallback;
  std::optional<double> ms = rules::ParseRfc3339Millis(*v);
  if (!ms.has_value()) {
    char* end = nullptr;
    double n = std::strtod(v->c_str(), &end);
    if (end != v->c_str() && *end == '\0') ms = n;
  }
  if (!ms.has_value() || !(*ms >= 0 && *ms <= 9.2e15)) {
    return rules::InvalidField(name, "expected an RFC 3339 time or Unix milliseconds");
  }
  return static_cast<int64_t>(*ms);
}

absl::Status NamesParam(const Request& req, std::string_view name, const std::set<std::string>& known, std::set<std::string>& out) {
  const std::string* v = req.Query(name);
  if (v == nullptr) return absl::OkStatus();
  out.clear();
  size_t start = 0;
  while (start <= v->size()) {
    size_t comma = v->find(',', start);
    std::string item = v->substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!item.empty()) {
      if (!known.count(item)) {
        std::string list;
        for (const std::string& k : known) list = list.empty() ? k : StrCat(list, ", ", k);
        return rules::InvalidField(name, StrCat("unknown \"", item, "\" (", list, ")"));
      }
      out.insert(item);
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return absl::OkStatus();
}

}  // namespace

void AddReleaseMetricsRoutes(Router& router, Services& s) {
  storage::Store& store = s.store;
  router.Add("GET", "/api/v1/projects/{p}/environments/{e}/release-metrics", Access::kAdmin, [&store](const Call& c) {
    const std::string& project = c.Param("p");
    const std::string& env = c.Param("e");
    ReleaseMetricsOptions o;
    TRY_ASSIGN(o.to_ms, TimeParam(c.req, "to", NowMs()));
    TRY_ASSIGN(o.from_ms, TimeParam(c.req, "from", o.to_ms - kDefaultWindowMs));
    if (o.from_ms > o.to_ms) return ErrorResponse(400, "invalid_argument", "from: is after to", "from");
    const ReleaseMetricsOptions defaults;
    TRY(NamesParam(c.req, "release", defaults.release, o.release));
    TRY(NamesParam(c.req, "failure", defaults.failure, o.failure));
    TRY_ASSIGN(int64_t hours, QueryInt(c.req, "failureWindowHours", 1, 24 * 90, 24));
    o.failure_window_ms = hours * 3600 * 1000;
    // The records from the window's start to its end plus the failure window, newest first.
    std::vector<storage::AuditRecord> records;
    std::optional<int64_t> before;
    bool reached_start = false;
    while (!reached_start) {
      TRY_ASSIGN(storage::HistoryPage page, store.History(project, env, std::nullopt, std::nullopt, before, kPage));
      for (storage::AuditRecord& r : page.records) {
        if (r.time_ms < o.from_ms) {
          reached_start = true;
          break;
        }
        if (r.time_ms <= o.to_ms + o.failure_window_ms) records.push_back(std::move(r));
      }
      if (!page.next_after.has_value()) break;
      before = page.next_after;
    }
    std::reverse(records.begin(), records.end());
    std::map<std::string, int64_t> created;
    TRY_ASSIGN(std::vector<storage::FlagMeta> metas, store.ListFlagMeta(project));
    for (const storage::FlagMeta& m : metas) created[m.key] = m.created_ms;
    // When guards fired, for the rollbacks they made.
    std::map<std::string, int64_t> fired;
    for (const storage::AuditRecord& r : records) {
      if (r.actor.rfind("release:", 0) != 0 || r.comment.find("by guard") == std::string::npos || r.items.empty()) continue;
      absl::StatusOr<std::optional<storage::ReleasePlan>> plan = store.GetReleasePlan(project, env, r.items[0].key);
      if (plan.ok() && plan->has_value() && (*plan)->fired.has_value() && StrCat("release:", (*plan)->id) == r.actor) {
        fired[(*plan)->id] = (*plan)->fired->time_ms;
      }
    }
    Value out = ComputeReleaseMetrics(records, created, fired, o);
    // Retained history may begin after the window does (docs/storage.md, retention).
    if (!reached_start && !records.empty()) out.Set("historyFromMs", Value(records.front().time_ms));
    return Json(200, out);
  });
}

}  // namespace gonfalon::server
