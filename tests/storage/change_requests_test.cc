// Change requests in the store: an environment that requires approvals refuses unapproved
// writes (change sets, scheduled changes, release plans) with the approval-required mark,
// while automation whose start was approved goes through; a request keeps the versions it
// expects, applies as its author's change in one batch with its new status, survives a
// reopen, and fails visibly when an item moved since.
#include <gtest/gtest.h>

#include "gonfalon/rules/str_cat.h"
#include "store_test_util.h"

namespace gonfalon::storage {
namespace {

class ChangeRequestsTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    MakeShop();
    ASSERT_OK_AND_ASSIGN(Environment env, store_->GetEnvironment("shop", "production"));
    env.required_approvals = 1;
    ASSERT_OK(store_->UpdateEnvironment("shop", env, 0, actor_).status());
  }
  ChangeRequest TurnOn() {
    ChangeRequest r;
    r.project = "shop";
    r.environment = "production";
    r.comment = "launch";
    r.items.push_back({ItemKind::kFlag, "checkout", std::nullopt, Json(R"({"on":true,"fallthrough":{"variation":1},"offVariation":0})"), false});
    return r;
  }
  bool CheckoutOn() {
    auto f = store_->GetFlag("shop", "production", "checkout");
    return f.ok() && f->on;
  }
  Actor ada_{"key:a (ada)", "ada"};
  Actor bob_{"key:b (bob)", "bob"};
};

TEST_F(ChangeRequestsTest, UnapprovedWritesAreRefusedWithTheMarkAndAutomationGoesThrough) {
  absl::Status direct = ApplyOne(ItemKind::kFlag, "checkout", R"({"on":true})").status();
  EXPECT_TRUE(IsApprovalRequired(direct)) << direct;
  EXPECT_NE(direct.message().find("requires 1 approval"), std::string::npos) << direct;
  EXPECT_FALSE(IsApprovalRequired(absl::FailedPreconditionError("other")));
  ScheduledChange sc;
  sc.project = "shop";
  sc.environment = "production";
  sc.execute_at_ms = clock_.load() + 1000;
  sc.items = TurnOn().items;
  EXPECT_TRUE(IsApprovalRequired(store_->ScheduleChange(sc, ada_).status()));
  ReleasePlan plan;
  plan.project = "shop";
  plan.environment = "production";
  plan.flag = "checkout";
  plan.stages = {{50000, 0, 0}};
  EXPECT_TRUE(IsApprovalRequired(store_->StartReleasePlan(plan, ada_).status()));
  // Approved automation (what an approved request or a running schedule does) applies.
  ChangeSet cs;
  cs.project = "shop";
  cs.environment = "production";
  cs.actor = Actor{"scheduler:sc_1 for ada", "", true};
  cs.items = TurnOn().items;
  ASSERT_OK(store_->Apply(cs).status());
  EXPECT_TRUE(CheckoutOn());
  // Staging requires nothing.
  ASSERT_OK(ApplyOne(ItemKind::kFlag, "checkout", R"({"on":true,"fallthrough":{"variation":0},"offVariation":0})", std::nullopt, "staging").status());
  // Opening a request where none is required is refused.
  ChangeRequest there = TurnOn();
  there.environment = "staging";
  EXPECT_EQ(store_->OpenChangeRequest(there, ada_).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(ChangeRequestsTest, ARequestAppliesAsItsAuthorsOnceAnotherPersonApproves) {
  ASSERT_OK_AND_ASSIGN(ChangeRequest r, store_->OpenChangeRequest(TurnOn(), ada_));
  EXPECT_EQ(r.status, RequestStatus::kPending);
  EXPECT_EQ(r.person, "ada");
  ASSERT_EQ(r.items.size(), 1u);
  EXPECT_EQ(r.items[0].expect_version, 1);  // taken when opened
  EXPECT_EQ(store_->ReviewChangeRequest("shop", "production", r.id, Review::kApprove, ada_, "").status().code(),
            absl::StatusCode::kPermissionDenied);
  // Another key of the same person is the same person.
  EXPECT_EQ(store_->ReviewChangeRequest("shop", "production", r.id, Review::kApprove, Actor{"key:a2 (ada)", "ada"}, "").status().code(),
            absl::StatusCode::kPermissionDenied);
  ASSERT_OK_AND_ASSIGN(r, store_->ReviewChangeRequest("shop", "production", r.id, Review::kComment, bob_, "why now?"));
  EXPECT_EQ(r.status, RequestStatus::kPending);
  EXPECT_FALSE(CheckoutOn());
  ASSERT_OK_AND_ASSIGN(r, store_->ReviewChangeRequest("shop", "production", r.id, Review::kApprove, bob_, "ok"));
  EXPECT_EQ(r.status, RequestStatus::kApplied);
  EXPECT_TRUE(CheckoutOn());
  ASSERT_OK_AND_ASSIGN(HistoryPage h, store_->History("shop", "production", std::nullopt, std::nullopt, std::nullopt, 1));
  EXPECT_EQ(h.records[0].actor, "key:a (ada)");
  EXPECT_EQ(h.records[0].comment, gonfalon::StrCat("launch (change request ", r.id, ", approved by bob)"));
  EXPECT_EQ(h.records[0].sequence, r.sequence);
  // Stored with its reviews, and read back after a reopen.
  Reopen();
  ASSERT_OK_AND_ASSIGN(ChangeRequest stored, store_->GetChangeRequest("shop", "production", r.id));
  EXPECT_EQ(stored.status, RequestStatus::kApplied);
  ASSERT_EQ(stored.reviews.size(), 2u);
  EXPECT_EQ(stored.reviews[0].verdict, "comment");
  EXPECT_EQ(stored.reviews[1].person, "bob");
  EXPECT_EQ(store_->ReviewChangeRequest("shop", "production", r.id, Review::kDecline, bob_, "").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// Lifting the requirement would let one person write alone: fewer approvals, or
// self-approval allowed, waits for the approvals it weakens; more approvals apply at once.
TEST_F(ChangeRequestsTest, WeakeningTheApprovalSettingsIsItselfApproved) {
  ASSERT_OK_AND_ASSIGN(Environment env, store_->GetEnvironment("shop", "production"));
  Environment lower = env;
  lower.required_approvals = 0;
  EXPECT_TRUE(IsApprovalRequired(store_->UpdateEnvironment("shop", lower, 0, ada_).status()));
  Environment self = env;
  self.allow_self_approval = true;
  EXPECT_TRUE(IsApprovalRequired(store_->UpdateEnvironment("shop", self, 0, ada_).status()));
  Environment more = env;
  more.required_approvals = 2;
  ASSERT_OK(store_->UpdateEnvironment("shop", more, 0, ada_).status());
  ChangeRequest r;
  r.project = "shop";
  r.environment = "production";
  r.kind = RequestKind::kApprovalSettings;
  r.settings = ChangeRequest::Settings{0, false};
  ASSERT_OK_AND_ASSIGN(r, store_->OpenChangeRequest(r, ada_));
  EXPECT_EQ(r.required_approvals, 2);
  ASSERT_OK_AND_ASSIGN(r, store_->ReviewChangeRequest("shop", "production", r.id, Review::kApprove, bob_, ""));
  EXPECT_EQ(r.status, RequestStatus::kPending);  // 1 of 2
  ASSERT_OK_AND_ASSIGN(r, store_->ReviewChangeRequest("shop", "production", r.id, Review::kApprove, Actor{"key:c (carol)", "carol"}, ""));
  EXPECT_EQ(r.status, RequestStatus::kApplied) << r.reason;
  ASSERT_OK_AND_ASSIGN(env, store_->GetEnvironment("shop", "production"));
  EXPECT_EQ(env.required_approvals, 0);
  // Stored and read back with its settings.
  Reopen();
  ASSERT_OK_AND_ASSIGN(ChangeRequest stored, store_->GetChangeRequest("shop", "production", r.id));
  EXPECT_EQ(stored.kind, RequestKind::kApprovalSettings);
  ASSERT_TRUE(stored.settings.has_value());
  EXPECT_EQ(stored.settings->required_approvals, 0);
}

TEST_F(ChangeRequestsTest, AnItemThatMovedSinceFailsTheRequestWithTheReason) {
  ASSERT_OK_AND_ASSIGN(ChangeRequest first, store_->OpenChangeRequest(TurnOn(), ada_));
  ChangeRequest other = TurnOn();
  other.items[0].data = Json(R"({"on":false,"fallthrough":{"variation":0},"offVariation":1})");
  ASSERT_OK_AND_ASSIGN(ChangeRequest second, store_->OpenChangeRequest(other, ada_));
  ASSERT_OK_AND_ASSIGN(first, store_->ReviewChangeRequest("shop", "production", first.id, Review::kApprove, bob_, ""));
  ASSERT_EQ(first.status, RequestStatus::kApplied);
  ASSERT_OK_AND_ASSIGN(second, store_->ReviewChangeRequest("shop", "production", second.id, Review::kApprove, bob_, ""));
  EXPECT_EQ(second.status, RequestStatus::kFailed);
  EXPECT_NE(second.reason.find("version"), std::string::npos) << second.reason;
  EXPECT_TRUE(CheckoutOn());  // the second did not apply
  ASSERT_OK_AND_ASSIGN(auto failed, store_->ListChangeRequests("shop", "production", RequestStatus::kFailed));
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].id, second.id);
  ASSERT_OK_AND_ASSIGN(auto all, store_->ListChangeRequests("shop", "production", std::nullopt));
  EXPECT_EQ(all.size(), 2u);
}

TEST_F(ChangeRequestsTest, ABadItemIsRefusedWhenOpenedAndNothingIsStored) {
  ChangeRequest bad = TurnOn();
  bad.items[0].data = Json(R"({"on":"yes"})");
  EXPECT_EQ(store_->OpenChangeRequest(bad, ada_).status().code(), absl::StatusCode::kInvalidArgument);
  ChangeRequest empty = TurnOn();
  empty.items.clear();
  EXPECT_EQ(store_->OpenChangeRequest(empty, ada_).status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_OK_AND_ASSIGN(auto all, store_->ListChangeRequests("shop", "production", std::nullopt));
  EXPECT_TRUE(all.empty());
}

}  // namespace
}  // namespace gonfalon::storage
