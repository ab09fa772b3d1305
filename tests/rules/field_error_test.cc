#include "gonfalon/rules/field_error.h"

#include <gtest/gtest.h>

namespace gonfalon::rules {
namespace {

TEST(FieldErrorTest, TheFieldTravelsAsDataAndLeadsTheMessage) {
  absl::Status s = InvalidField("rules[2].op", "unknown operator");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "rules[2].op: unknown operator");
  EXPECT_EQ(ErrorField(s), "rules[2].op");
  EXPECT_EQ(ErrorText(s), "unknown operator");
  absl::Status taken = FieldError(absl::StatusCode::kAlreadyExists, "key", "flag \"a\" already exists");
  EXPECT_EQ(taken.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ErrorField(taken), "key");
}

TEST(FieldErrorTest, AMessageThatLooksLikeAFieldIsNotOne) {
  // The field is never read back out of the text.
  absl::Status s = absl::InvalidArgumentError("time: 5 is too old");
  EXPECT_EQ(ErrorField(s), "");
  EXPECT_EQ(ErrorText(s), "time: 5 is too old");
  EXPECT_EQ(ErrorField(absl::OkStatus()), "");
  absl::Status none = FieldError(absl::StatusCode::kInvalidArgument, "", "a JSON body is required");
  EXPECT_EQ(none.message(), "a JSON body is required");
  EXPECT_EQ(ErrorField(none), "");
}

TEST(FieldErrorTest, PrefixesNestTheFieldAndTheMessage) {
  absl::Status inner = InvalidField("rules[0].clauses[1].op", "unknown operator");
  absl::Status outer = WithFieldPrefix(WithFieldPrefix(inner, "data"), "items[3]");
  EXPECT_EQ(ErrorField(outer), "items[3].data.rules[0].clauses[1].op");
  EXPECT_EQ(outer.message(), "items[3].data.rules[0].clauses[1].op: unknown operator");
  EXPECT_EQ(outer.code(), absl::StatusCode::kInvalidArgument);
  // An index joins without a dot; a status without a field is about the prefix itself.
  EXPECT_EQ(ErrorField(WithFieldPrefix(InvalidField("[2]", "x"), "variations")), "variations[2]");
  absl::Status missing = WithFieldPrefix(absl::NotFoundError("project \"p\" does not exist"), "project");
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrorField(missing), "project");
  EXPECT_EQ(missing.message(), "project: project \"p\" does not exist");
  EXPECT_TRUE(WithFieldPrefix(absl::OkStatus(), "x").ok());
}

}  // namespace
}  // namespace gonfalon::rules
