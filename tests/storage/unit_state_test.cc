// The stored state of an experiment unit: every state reads back as written, old (version 1)
// records still read, malformed bytes are refused, and the common states are small.
#include "unit_state.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

namespace gonfalon::storage::internal {
namespace {

void ExpectSame(const UnitState& a, const UnitState& b) {
  EXPECT_EQ(a.variation, b.variation);
  EXPECT_EQ(a.first_ms, b.first_ms);
  EXPECT_EQ(a.multiple, b.multiple);
  ASSERT_EQ(a.totals.size(), b.totals.size());
  for (size_t i = 0; i < a.totals.size(); ++i) {
    EXPECT_EQ(a.totals[i].first, b.totals[i].first) << i;
    EXPECT_TRUE(a.totals[i].second == b.totals[i].second || (std::isnan(a.totals[i].second) && std::isnan(b.totals[i].second))) << i;
  }
}

TEST(UnitStateTest, StatesReadBackAsWritten) {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int> metrics(0, 20), variation(0, 5), coin(0, 3);
  for (int round = 0; round < 2000; ++round) {
    UnitState u;
    u.variation = variation(rng);
    u.first_ms = static_cast<int64_t>(rng() % 4'000'000'000'000ULL) - (round % 7 == 0 ? 5'000'000'000'000LL : 0);
    u.multiple = coin(rng) == 0;
    u.totals.resize(static_cast<size_t>(metrics(rng)));
    for (auto& [count, sum] : u.totals) {
      switch (coin(rng)) {
        case 0: break;  // nothing yet
        case 1: count = static_cast<double>(rng() % 1000); sum = count * 3; break;
        case 2: count = static_cast<double>(rng() % 50); sum = static_cast<double>(static_cast<int64_t>(rng() % 100000) - 50000) / 7.0; break;
        default: count = 1; sum = -static_cast<double>(rng() % (1ULL << 60)); break;  // beyond 2^53: kept as a double
      }
    }
    std::string bytes = EncodeUnit(u);
    std::optional<UnitState> back = DecodeUnit(bytes, u.totals.size());
    ASSERT_TRUE(back.has_value()) << round;
    ExpectSame(u, *back);
  }
}

TEST(UnitStateTest, SpecialValuesAndPaddingToTheIterationsMetrics) {
  UnitState u;
  u.variation = 3;
  u.first_ms = 1700000000123;
  u.totals = {{2, 0.5}, {0, 0}, {1, std::numeric_limits<double>::infinity()}, {1, -0.0}};
  std::optional<UnitState> back = DecodeUnit(EncodeUnit(u), 6);  // the iteration has 6 metrics now
  ASSERT_TRUE(back.has_value());
  ASSERT_EQ(back->totals.size(), 6u);
  EXPECT_EQ(back->totals[0], (std::pair<double, double>{2, 0.5}));
  EXPECT_EQ(back->totals[1], (std::pair<double, double>{0, 0}));
  EXPECT_EQ(back->totals[2].second, std::numeric_limits<double>::infinity());
  EXPECT_EQ(back->totals[3].second, 0.0);
  EXPECT_EQ(back->totals[5], (std::pair<double, double>{0, 0}));
}

TEST(UnitStateTest, CommonStatesAreSmall) {
  UnitState exposed;
  exposed.variation = 1;
  exposed.first_ms = 1764547200000;  // 2025-12-01
  exposed.totals.resize(5);
  EXPECT_LE(EncodeUnit(exposed).size(), 12u);  // version 1 took 95 bytes
  UnitState bought = exposed;
  bought.totals[0] = {1, 1};
  bought.totals[1] = {1, 42};
  bought.totals[3] = {1, 42};
  EXPECT_LE(EncodeUnit(bought).size(), 24u);
}

TEST(UnitStateTest, VersionOneRecordsStillRead) {
  // version 1, variation (int32), first exposure (int64), multiple (byte), n (byte), n x (count, sum) doubles
  std::string v1(1, '\1');
  int32_t variation = 2;
  int64_t first = 1700000000000;
  v1.append(reinterpret_cast<const char*>(&variation), 4);
  v1.append(reinterpret_cast<const char*>(&first), 8);
  v1.push_back('\1');
  v1.push_back('\2');
  for (double d : {3.0, 4.5, 0.0, 0.0}) v1.append(reinterpret_cast<const char*>(&d), 8);
  std::optional<UnitState> u = DecodeUnit(v1, 3);
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->variation, 2);
  EXPECT_EQ(u->first_ms, 1700000000000);
  EXPECT_TRUE(u->multiple);
  ASSERT_EQ(u->totals.size(), 3u);
  EXPECT_EQ(u->totals[0], (std::pair<double, double>{3.0, 4.5}));
  EXPECT_FALSE(DecodeUnit(v1.substr(0, v1.size() - 1), 3).has_value());
}

TEST(UnitStateTest, MalformedBytesAreRefused) {
  UnitState u;
  u.variation = 1;
  u.first_ms = 5;
  u.totals = {{1, 2.5}, {3, 4}};
  std::string good = EncodeUnit(u);
  EXPECT_FALSE(DecodeUnit("", 2).has_value());
  EXPECT_FALSE(DecodeUnit(std::string(1, '\x09') + good.substr(1), 2).has_value());  // unknown version
  EXPECT_FALSE(DecodeUnit(good + "x", 2).has_value());                                // trailing bytes
  for (size_t cut = 1; cut < good.size(); ++cut) EXPECT_FALSE(DecodeUnit(good.substr(0, cut), 2).has_value()) << cut;
  EXPECT_FALSE(DecodeUnit(std::string("\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 12), 2).has_value());  // runaway varint
}

}  // namespace
}  // namespace gonfalon::storage::internal
