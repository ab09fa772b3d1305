#include "gonfalon/rules/bucketing.h"

#include <gtest/gtest.h>

#include "gonfalon/rules/value.h"

namespace gonfalon::rules {
namespace {

TEST(BucketingTest, KnownVectors) {
  BucketHasher h("hashKey", "saltyA");
  EXPECT_NEAR(h.Bucket("userKeyA"), 0.42157587, 1e-8);
  EXPECT_NEAR(h.Bucket("userKeyB"), 0.6708485, 1e-7);
  EXPECT_NEAR(h.Bucket("userKeyC"), 0.10343106, 1e-8);
}

TEST(BucketingTest, HasherIsReusableAndDeterministic) {
  BucketHasher h("hashKey", "saltyA");
  double first = h.Bucket("userKeyA");
  h.Bucket("something else");
  EXPECT_EQ(h.Bucket("userKeyA"), first);
  EXPECT_NE(BucketHasher("otherKey", "saltyA").Bucket("userKeyA"), first);
}

TEST(BucketingTest, SeedPrefixDiffersFromKeyAndSalt) {
  // sha1("61.userKeyA") is not sha1("hashKey.saltyA.userKeyA"); both stay in [0, 1].
  double seeded = BucketHasher(int64_t{61}).Bucket("userKeyA");
  EXPECT_GE(seeded, 0.0);
  EXPECT_LE(seeded, 1.0);
  EXPECT_NE(seeded, BucketHasher("hashKey", "saltyA").Bucket("userKeyA"));
  EXPECT_EQ(seeded, BucketHasher(int64_t{61}).Bucket("userKeyA"));
}

TEST(BucketingTest, BucketableValues) {
  char buf[24];
  std::string_view out;
  // A string's view points into the Value: it must outlive `out`.
  Value abc("abc");
  EXPECT_TRUE(BucketableString(abc, buf, out));
  EXPECT_EQ(out, "abc");
  EXPECT_TRUE(BucketableString(Value(123), buf, out));
  EXPECT_EQ(out, "123");
  EXPECT_TRUE(BucketableString(Value(-5.0), buf, out));
  EXPECT_EQ(out, "-5");
  EXPECT_FALSE(BucketableString(Value(1.5), buf, out));
  EXPECT_FALSE(BucketableString(Value(true), buf, out));
  EXPECT_FALSE(BucketableString(Value(), buf, out));
  EXPECT_FALSE(BucketableString(Value(Array{}), buf, out));
}

TEST(BucketingTest, IntegerBucketsLikeItsString) {
  BucketHasher h("f", "s");
  char buf[24];
  std::string_view out;
  ASSERT_TRUE(BucketableString(Value(987654), buf, out));
  EXPECT_EQ(h.Bucket(out), h.Bucket("987654"));
}

}  // namespace
}  // namespace gonfalon::rules
