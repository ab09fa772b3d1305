// Scheduled changes in the store, on its fake clock: nothing runs before its time, a due change
// applies once (also across a reopen) as the scheduler's change set with its status in the
// same write, a conflict fails it with the reason unless conflicts are ignored, edits and
// cancels only while scheduled, bad items refused when scheduling.
#include <gtest/gtest.h>

#include "gonfalon/rules/field_error.h"
#include "store_test_util.h"

namespace gonfalon::storage {
namespace {

class ScheduledChangesTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    MakeShop();
  }
  ScheduledChange Spec(int64_t at, const char* data = R"({"on":true,"fallthrough":{"variation":1},"offVariation":0})") {
    ScheduledChange c;
    c.project = "shop";
    c.environment = "production";
    c.execute_at_ms = at;
    c.comment = "launch";
    c.items.push_back({ItemKind::kFlag, "checkout", std::nullopt, Json(data), false});
    return c;
  }
  bool On() {
    auto f = store_->GetFlag("shop", "production", "checkout");
    return f.ok() && f->on;
  }
};

TEST_F(ScheduledChangesTest, RunsOnceWhenDueAsTheSchedulersChangeSet) {
  int64_t at = clock_ + 60'000;
  ASSERT_OK_AND_ASSIGN(ScheduledChange made, store_->ScheduleChange(Spec(at), actor_));
  EXPECT_EQ(made.status, ScheduleStatus::kScheduled);
  EXPECT_EQ(made.version, 1);
  ASSERT_EQ(made.items.size(), 1u);
  EXPECT_EQ(made.items[0].expect_version, 1);  // the flag's version when scheduled
  ASSERT_OK_AND_ASSIGN(auto next, store_->NextScheduledChangeDue());
  EXPECT_EQ(next, at);

  clock_ = at - 1;
  ASSERT_OK_AND_ASSIGN(auto ran, store_->RunDueScheduledChanges());
  EXPECT_TRUE(ran.empty());
  EXPECT_FALSE(On());

  clock_ = at + 250;
  ASSERT_OK_AND_ASSIGN(ran, store_->RunDueScheduledChanges());
  ASSERT_EQ(ran.size(), 1u);
  EXPECT_EQ(ran[0].status, ScheduleStatus::kApplied);
  EXPECT_EQ(ran[0].ran_ms, at + 250);
  EXPECT_GT(ran[0].sequence, 0);
  EXPECT_TRUE(On());
  ASSERT_OK_AND_ASSIGN(HistoryPage h, store_->History("shop", "production", std::nullopt, std::nullopt, std::nullopt, 1));
  ASSERT_EQ(h.records.size(), 1u);
  EXPECT_EQ(h.records[0].sequence, ran[0].sequence);
  EXPECT_EQ(h.records[0].actor, "scheduler:" + made.id + " for tester");
  EXPECT_EQ(h.records[0].comment, "launch");
  ASSERT_OK_AND_ASSIGN(next, store_->NextScheduledChangeDue());
  EXPECT_FALSE(next.has_value());

  // Once: not again later, nor after a reopen.
  clock_ = at + 10'000;
  ASSERT_OK_AND_ASSIGN(ran, store_->RunDueScheduledChanges());
  EXPECT_TRUE(ran.empty());
  Reopen();
  ASSERT_OK_AND_ASSIGN(ran, store_->RunDueScheduledChanges());
  EXPECT_TRUE(ran.empty());
  ASSERT_OK_AND_ASSIGN(ScheduledChange stored, store_->GetScheduledChange("shop", "production", made.id));
  EXPECT_EQ(stored.status, ScheduleStatus::kApplied);
  EXPECT_EQ(stored.version, 2);
}

TEST_F(ScheduledChangesTest, OneDueWhileClosedRunsAtTheNextRunAndSaysHowLate) {
  int64_t at = clock_ + 1000;
  ASSERT_OK_AND_ASSIGN(ScheduledChange made, store_->ScheduleChange(Spec(at), actor_));
  Reopen();
  clock_ = at + 45'000;  // the server was down meanwhile
  ASSERT_OK_AND_ASSIGN(auto ran, store_->RunDueScheduledChanges());
  ASSERT_EQ(ran.size(), 1u);
  EXPECT_EQ(ran[0].id, made.id);
  EXPECT_EQ(ran[0].ran_ms - ran[0].execute_at_ms, 45'000);
  EXPECT_EQ(rules::ToJson(*ScheduledChangeToJson(ran[0]).Find("lateByMs")), "45000");
  EXPECT_TRUE(On());
}

TEST_F(ScheduledChangesTest, AConflictFailsItWithTheReasonUnlessIgnored) {
  int64_t at = clock_ + 1000;
  ASSERT_OK_AND_ASSIGN(ScheduledChange strict, store_->ScheduleChange(Spec(at), actor_));
  ScheduledChange lenient_spec = Spec(at + 1);
  lenient_spec.ignore_conflicts = true;
  lenient_spec.items[0].data = Json(R"({"on":true,"fallthrough":{"variation":0},"offVariation":0})");
  ASSERT_OK_AND_ASSIGN(ScheduledChange lenient, store_->ScheduleChange(lenient_spec, actor_));
  // Someone edits the flag after both were scheduled.
  ASSERT_OK_AND_ASSIGN(AppliedChangeSet edit, ApplyOne(ItemKind::kFlag, "checkout", R"({"on":false,"fallthrough":{"variation":0},"offVariation":1})"));
  ASSERT_FALSE(edit.unchanged);
  clock_ = at + 5;
  ASSERT_OK_AND_ASSIGN(auto ran, store_->RunDueScheduledChanges());
  ASSERT_EQ(ran.size(), 2u);
  EXPECT_EQ(ran[0].id, strict.id);  // oldest first
  EXPECT_EQ(ran[0].status, ScheduleStatus::kFailed);
  EXPECT_NE(ran[0].reason.find("version 2, not 1"), std::string::npos) << ran[0].reason;
  EXPECT_EQ(ran[0].sequence, 0);
  EXPECT_EQ(ran[1].id, lenient.id);
  EXPECT_EQ(ran[1].status, ScheduleStatus::kApplied);
  ASSERT_OK_AND_ASSIGN(rules::Flag f, store_->GetFlag("shop", "production", "checkout"));
  EXPECT_TRUE(f.on);
  EXPECT_EQ(f.version, 3);  // the edit, then the lenient change; the strict one changed nothing
}

TEST_F(ScheduledChangesTest, EditsAndCancelsOnlyWhileScheduled) {
  int64_t at = clock_ + 1000;
  ASSERT_OK_AND_ASSIGN(ScheduledChange made, store_->ScheduleChange(Spec(at), actor_));
  ScheduleEdit edit;
  edit.execute_at_ms = at + 5000;
  edit.comment = "later";
  edit.expect_version = 1;
  ASSERT_OK_AND_ASSIGN(ScheduledChange edited, store_->EditScheduledChange("shop", "production", made.id, edit, Actor{"editor"}));
  EXPECT_EQ(edited.version, 2);
  EXPECT_EQ(edited.edited_by, "editor");
  EXPECT_EQ(edited.created_by, "tester");
  ASSERT_OK_AND_ASSIGN(auto next, store_->NextScheduledChangeDue());
  EXPECT_EQ(next, at + 5000);
  // A stale version is refused.
  EXPECT_EQ(store_->EditScheduledChange("shop", "production", made.id, edit, actor_).status().code(), absl::StatusCode::kAborted);
  clock_ = at + 100;  // the old time: nothing due now
  ASSERT_OK_AND_ASSIGN(auto ran, store_->RunDueScheduledChanges());
  EXPECT_TRUE(ran.empty());
  ASSERT_OK_AND_ASSIGN(ScheduledChange canceled, store_->CancelScheduledChange("shop", "production", made.id, actor_));
  EXPECT_EQ(canceled.status, ScheduleStatus::kCanceled);
  ASSERT_OK_AND_ASSIGN(next, store_->NextScheduledChangeDue());
  EXPECT_FALSE(next.has_value());
  clock_ = at + 10'000;
  ASSERT_OK_AND_ASSIGN(ran, store_->RunDueScheduledChanges());
  EXPECT_TRUE(ran.empty());
  EXPECT_FALSE(On());
  EXPECT_EQ(store_->CancelScheduledChange("shop", "production", made.id, actor_).status().code(), absl::StatusCode::kFailedPrecondition);
  ScheduleEdit again;
  again.comment = "x";
  EXPECT_EQ(store_->EditScheduledChange("shop", "production", made.id, again, actor_).status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_OK_AND_ASSIGN(auto all, store_->ListScheduledChanges("shop", "production"));
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].status, ScheduleStatus::kCanceled);
}

TEST_F(ScheduledChangesTest, BadItemsAreRefusedWhenScheduling) {
  int64_t at = clock_ + 1000;
  ScheduledChange bad = Spec(at, R"({"on":"yes"})");
  auto refused = store_->ScheduleChange(bad, actor_);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
  ScheduledChange stale = Spec(at);
  stale.items[0].expect_version = 7;
  EXPECT_EQ(store_->ScheduleChange(stale, actor_).status().code(), absl::StatusCode::kAborted);
  ScheduledChange nowhere = Spec(at);
  nowhere.environment = "moon";
  EXPECT_EQ(store_->ScheduleChange(nowhere, actor_).status().code(), absl::StatusCode::kNotFound);
  ScheduledChange empty = Spec(at);
  empty.items.clear();
  EXPECT_EQ(store_->ScheduleChange(empty, actor_).status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_OK_AND_ASSIGN(auto all, store_->ListScheduledChanges("shop", "production"));
  EXPECT_TRUE(all.empty());  // nothing half-written
}

TEST_F(ScheduledChangesTest, ADeletedEnvironmentTakesItsScheduledChangesAlong) {
  int64_t at = clock_ + 1000;
  ScheduledChange spec = Spec(at);
  spec.environment = "staging";
  ASSERT_OK(store_->ScheduleChange(spec, actor_).status());
  ASSERT_OK(store_->DeleteEnvironment("shop", "staging", actor_));
  clock_ = at + 1;
  ASSERT_OK_AND_ASSIGN(auto ran, store_->RunDueScheduledChanges());
  EXPECT_TRUE(ran.empty());
  ASSERT_OK_AND_ASSIGN(auto next, store_->NextScheduledChangeDue());
  EXPECT_FALSE(next.has_value());  // its due entry went too
}

}  // namespace
}  // namespace gonfalon::storage
