#include "operators.h"

#include <gtest/gtest.h>

namespace gonfalon::rules::internal {
namespace {

int Cmp(const char* a, const char* b) {
  return CompareSemVer(ParseSemVer(a).value(), ParseSemVer(b).value());
}

TEST(SemVerTest, ParsesFullAndShortForms) {
  auto v = ParseSemVer("1.2.3-rc.1+build.5");
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->major, 1u);
  EXPECT_EQ(v->minor, 2u);
  EXPECT_EQ(v->patch, 3u);
  EXPECT_EQ(v->prerelease, (std::vector<std::string>{"rc", "1"}));
  EXPECT_EQ(Cmp("2", "2.0.0"), 0);
  EXPECT_EQ(Cmp("2.1", "2.1.0"), 0);
  EXPECT_EQ(Cmp("2-beta", "2.0.0-beta"), 0);
}

TEST(SemVerTest, RejectsInvalid) {
  for (const char* bad : {"", "a", "1.", "1..2", "01.2.3", "1.02.3", "1.2.3.4", "v1.2.3", "1.2.3-",
                          "1.2.3-01", "1.2.3+", "1.2.3-a..b", "1.2.3 ", "-1.2.3", "1.2.3-ü"}) {
    EXPECT_FALSE(ParseSemVer(bad).has_value()) << bad;
  }
}

TEST(SemVerTest, PrecedenceFollowsTheSpec) {
  // The example chain from semver.org §11.
  const char* chain[] = {"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
                         "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0"};
  for (size_t i = 0; i + 1 < std::size(chain); ++i) {
    EXPECT_LT(Cmp(chain[i], chain[i + 1]), 0) << chain[i] << " < " << chain[i + 1];
    EXPECT_GT(Cmp(chain[i + 1], chain[i]), 0);
  }
  EXPECT_EQ(Cmp("1.0.0+a", "1.0.0+b"), 0);
  EXPECT_LT(Cmp("1.9.0", "1.10.0"), 0);
}

TEST(DateTest, ParsesRfc3339) {
  EXPECT_EQ(ParseRfc3339("1970-01-01T00:00:00Z"), 0.0);
  EXPECT_EQ(ParseRfc3339("2021-01-01T00:00:00Z"), 1609459200000.0);
  EXPECT_EQ(ParseRfc3339("2021-01-01T01:00:00+01:00"), 1609459200000.0);
  EXPECT_EQ(ParseRfc3339("2020-12-31T23:00:00-01:00"), 1609459200000.0);
  EXPECT_EQ(ParseRfc3339("2021-01-01T00:00:00.123Z"), 1609459200123.0);
  EXPECT_EQ(ParseRfc3339("2021-01-01t00:00:00.5z"), 1609459200500.0);
  EXPECT_EQ(ParseRfc3339("2024-02-29T00:00:00Z"), 1709164800000.0);
  EXPECT_EQ(ParseRfc3339("1969-12-31T23:59:59Z"), -1000.0);
}

TEST(DateTest, RejectsInvalidDates) {
  for (const char* bad : {"", "2021-01-01", "2021-01-01T00:00:00", "2021-13-01T00:00:00Z",
                          "2021-02-29T00:00:00Z", "2021-01-32T00:00:00Z", "2021-01-01T24:00:00Z",
                          "2021-01-01T00:00:00.Z", "2021-01-01T00:00:00+1:00",
                          "2021-01-01T00:00:00Zjunk", "yesterday"}) {
    EXPECT_FALSE(ParseRfc3339(bad).has_value()) << bad;
  }
}

TEST(DateTest, NumbersAreUnixMillis) {
  EXPECT_EQ(ToUnixMillis(Value(1609459200000.0)), 1609459200000.0);
  EXPECT_FALSE(ToUnixMillis(Value(true)).has_value());
  EXPECT_FALSE(ToUnixMillis(Value()).has_value());
}

}  // namespace
}  // namespace gonfalon::rules::internal
