// Release metrics (server/src/release_metrics.h) on a scripted history with known answers:
// releases of each kind, failures of each kind inside and outside the failure window, lead
// times from creation, time to restore from the bad change or the guard's firing; an empty
// window; and the definitions narrowed by options.
#include "release_metrics.h"

#include <gtest/gtest.h>

namespace gonfalon::server {
namespace {

using rules::Value;

constexpr int64_t kT0 = 1'700'000'000'000;
constexpr int64_t kHour = 3600 * 1000;

Value Flag(bool on, const char* fallthrough) {
  return rules::ParseJson(std::string(R"({"on":)") + (on ? "true" : "false") + R"(,"offVariation":0,"fallthrough":)" + fallthrough + "}").value();
}
const char* kServe0 = R"({"variation":0})";
const char* kServe1 = R"({"variation":1})";
const char* kSplit = R"({"rollout":{"variations":[{"variation":0,"weight":90000},{"variation":1,"weight":10000}]}})";

storage::AuditRecord Record(int64_t seq, int64_t at, const std::string& actor, const std::string& comment, const std::string& flag,
                            Value before, Value after) {
  storage::AuditRecord r;
  r.sequence = seq;
  r.time_ms = at;
  r.actor = actor;
  r.comment = comment;
  r.items.push_back({storage::ItemKind::kFlag, flag, std::move(before), std::move(after)});
  return r;
}

std::vector<storage::AuditRecord> History() {
  return {
      Record(1, kT0 + 1 * kHour, "key:a (ada)", "", "a", Flag(false, kServe1), Flag(true, kServe1)),           // release: turned on
      Record(2, kT0 + 2 * kHour, "key:a (ada)", "", "a", Flag(true, kServe1), Flag(false, kServe1)),           // kill switch
      Record(3, kT0 + 3 * kHour, "key:b (bob)", "", "b", Flag(true, kServe0), Flag(true, kServe1)),            // release: full rollout
      Record(4, kT0 + 3 * kHour + 60000, "key:b (bob)", "", "b", Flag(true, kServe1), Flag(true, kServe1)),    // nothing
      Record(5, kT0 + 4 * kHour, "release:rp_1", "release plan rp_1: started by key:a (ada); stage 1 of 2: 10%", "c", Flag(true, kServe0),
             Flag(true, kSplit)),                                                                             // release: plan start
      Record(6, kT0 + 4 * kHour + 30 * 60000, "release:rp_1",
             "release plan rp_1: rolled back by guard 1 (metric): …: all traffic to control", "c", Flag(true, kSplit), Flag(true, kServe0)),
      Record(7, kT0 + 5 * kHour, "key:a (ada)", "restore to sequence 3", "d", Flag(true, kServe1), Flag(true, kServe0)),  // no release of d
      Record(8, kT0 + 30 * kHour, "key:b (bob)", "", "b", Flag(true, kServe1), Flag(true, kServe0)),  // a revert, 27 h later: too late
  };
}

const std::map<std::string, int64_t> kCreated = {{"a", kT0}, {"b", kT0}, {"c", kT0}};
const std::map<std::string, int64_t> kFired = {{"rp_1", kT0 + 4 * kHour + 30 * 60000 - 12000}};  // 12 s before its rollback

TEST(ReleaseMetricsTest, AScriptedHistoryGivesTheKnownAnswers) {
  ReleaseMetricsOptions o;
  o.from_ms = kT0;
  o.to_ms = kT0 + 10 * kHour;
  Value m = ComputeReleaseMetrics(History(), kCreated, kFired, o);
  const Value& releases = *m.Find("releases");
  EXPECT_EQ(releases.Find("count")->as_number(), 3) << rules::ToJson(m);
  const rules::Array& items = releases.Find("items")->as_array();
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].Find("kind")->as_string(), "turnedOn");
  EXPECT_EQ(items[1].Find("kind")->as_string(), "fullRollout");
  EXPECT_EQ(items[1].Find("variation")->as_number(), 1);
  EXPECT_EQ(items[2].Find("kind")->as_string(), "planStart");
  EXPECT_DOUBLE_EQ(releases.Find("perDay")->as_number(), 3.0);  // a window of 10 h counts as one day
  const Value& cfr = *m.Find("changeFailureRate");
  EXPECT_EQ(cfr.Find("failed")->as_number(), 2);
  EXPECT_DOUBLE_EQ(cfr.Find("rate")->as_number(), 2.0 / 3.0);
  const rules::Array& failures = cfr.Find("items")->as_array();
  ASSERT_EQ(failures.size(), 2u);
  EXPECT_EQ(failures[0].Find("how")->as_string(), "killSwitch");
  EXPECT_EQ(failures[0].Find("releaseSequence")->as_number(), 1);
  EXPECT_EQ(failures[1].Find("how")->as_string(), "guardRollback");
  const Value& ttr = *m.Find("timeToRestore");
  ASSERT_EQ(ttr.Find("count")->as_number(), 2);
  EXPECT_DOUBLE_EQ(ttr.Find("items")->as_array()[0].Find("minutes")->as_number(), 60);   // from the bad change
  EXPECT_DOUBLE_EQ(ttr.Find("items")->as_array()[1].Find("minutes")->as_number(), 0.2);  // from the guard's firing
  EXPECT_DOUBLE_EQ(ttr.Find("medianMinutes")->as_number(), 30.1);
  const Value& lead = *m.Find("leadTime");
  EXPECT_EQ(lead.Find("count")->as_number(), 2);  // a and b serve one variation to everyone; c's plan does not yet
  EXPECT_DOUBLE_EQ(lead.Find("medianHours")->as_number(), 2);
}

TEST(ReleaseMetricsTest, AnEmptyWindowHasNoFiguresAndALateRevertIsNoFailure) {
  ReleaseMetricsOptions o;
  o.from_ms = kT0 + 100 * kHour;
  o.to_ms = kT0 + 200 * kHour;
  Value empty = ComputeReleaseMetrics(History(), kCreated, kFired, o);
  EXPECT_EQ(empty.Find("releases")->Find("count")->as_number(), 0);
  EXPECT_TRUE(empty.Find("changeFailureRate")->Find("rate")->is_null());
  EXPECT_TRUE(empty.Find("leadTime")->Find("medianHours")->is_null());
  EXPECT_TRUE(empty.Find("timeToRestore")->Find("medianMinutes")->is_null());
  // b's release (3 h) is reverted at 30 h: within a 48 h failure window it counts.
  o.from_ms = kT0;
  o.to_ms = kT0 + 10 * kHour;
  o.failure_window_ms = 48 * kHour;
  Value wide = ComputeReleaseMetrics(History(), kCreated, kFired, o);
  EXPECT_EQ(wide.Find("changeFailureRate")->Find("failed")->as_number(), 3) << rules::ToJson(wide);
  EXPECT_EQ(wide.Find("changeFailureRate")->Find("items")->as_array()[2].Find("how")->as_string(), "revert");
}

TEST(ReleaseMetricsTest, TheDefinitionsAreTheOptions) {
  ReleaseMetricsOptions o;
  o.from_ms = kT0;
  o.to_ms = kT0 + 10 * kHour;
  o.release = {"turnedOn", "fullRollout"};
  o.failure = {"killSwitch"};
  Value m = ComputeReleaseMetrics(History(), kCreated, kFired, o);
  EXPECT_EQ(m.Find("releases")->Find("count")->as_number(), 2);
  EXPECT_EQ(m.Find("changeFailureRate")->Find("failed")->as_number(), 1);
  EXPECT_EQ(rules::ToJson(*m.Find("definitions")->Find("failure")), R"(["killSwitch"])");
}

}  // namespace
}  // namespace gonfalon::server
