// Seeded simulations of experiments, to show what the statistics promise: the sequential
// interval may be peeked at after every batch, the fixed-horizon test may not; a real effect of
// the size experiments look for is found; a broken split is caught.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#include "gonfalon/stats/tests.h"

namespace gonfalon::stats {
namespace {

// Conversion data of one arm as its summary (a unit converts or not).
struct Arm {
  double units = 0, conversions = 0;
  void Add(std::mt19937_64& rng, int n, double p) {
    conversions += static_cast<double>(std::binomial_distribution<int>(n, p)(rng));
    units += n;
  }
  ArmSummary Summary() const {
    double mean = conversions / units;
    return {units, mean, SampleVariance(units, conversions, conversions)};  // x² = x for 0/1
  }
};

TEST(SimulationTest, PeekingAtEveryBatchKeepsTheSequentialIntervalHonestButNotThePValue) {
  std::mt19937_64 rng(20261201);
  constexpr int kExperiments = 500, kBatches = 20, kBatchUnits = 500;
  int sequential_false = 0, fixed_false = 0;
  for (int e = 0; e < kExperiments; ++e) {
    Arm a, b;
    bool sequential_excluded = false, fixed_significant = false;
    for (int batch = 0; batch < kBatches; ++batch) {
      a.Add(rng, kBatchUnits, 0.10);
      b.Add(rng, kBatchUnits, 0.10);  // A/A: no effect
      Interval cs = SequentialInterval(b.Summary(), a.Summary());
      sequential_excluded = sequential_excluded || cs.low > 0 || cs.high < 0;
      fixed_significant = fixed_significant || Welch(b.Summary(), a.Summary()).p_value < 0.05;
    }
    sequential_false += sequential_excluded;
    fixed_false += fixed_significant;
  }
  double sequential_rate = static_cast<double>(sequential_false) / kExperiments;
  double fixed_rate = static_cast<double>(fixed_false) / kExperiments;
  // α = 5 %: the confidence sequence errs in at most ~5 % of experiments however often one
  // looks (6 % leaves room for the simulation's own noise) ...
  EXPECT_LE(sequential_rate, 0.06) << sequential_false << " of " << kExperiments;
  RecordProperty("sequential_false", sequential_false);
  RecordProperty("fixed_false", fixed_false);
  // ... while stopping at the first p < 0.05 of 20 looks errs far more often than 5 %.
  EXPECT_GE(fixed_rate, 0.15) << fixed_false << " of " << kExperiments;
  EXPECT_GT(fixed_rate, 2 * sequential_rate);
}

TEST(SimulationTest, ATwoPointLiftOnTenPercentIsFoundWithTwentyThousandUnitsPerArm) {
  std::mt19937_64 rng(7);
  constexpr int kRuns = 200;
  int welch_found = 0, sequential_found = 0, covered = 0;
  for (int run = 0; run < kRuns; ++run) {
    Arm a, b;
    a.Add(rng, 20000, 0.10);
    b.Add(rng, 20000, 0.12);
    WelchResult w = Welch(b.Summary(), a.Summary());
    welch_found += w.p_value < 0.05 && w.difference > 0;
    Interval cs = SequentialInterval(b.Summary(), a.Summary());
    sequential_found += cs.low > 0;
    covered += w.interval.low <= 0.02 && 0.02 <= w.interval.high;
  }
  EXPECT_GE(welch_found, kRuns * 8 / 10);
  EXPECT_GE(sequential_found, kRuns * 8 / 10);
  // The 95 % interval covers the true lift in about 95 % of runs.
  EXPECT_GE(covered, kRuns * 90 / 100);
  EXPECT_LE(covered, kRuns * 99 / 100);
}

TEST(SimulationTest, ASplitOf52To48OnAFiftyFiftyExperimentTripsTheSampleRatioCheck) {
  std::mt19937_64 rng(11);
  constexpr int kRuns = 200;
  int broken_flagged = 0, sound_flagged = 0;
  for (int run = 0; run < kRuns; ++run) {
    double a = std::binomial_distribution<int>(20000, 0.52)(rng);
    broken_flagged += SampleRatio({a, 20000 - a}, {50, 50}).mismatch;
    double b = std::binomial_distribution<int>(20000, 0.50)(rng);
    sound_flagged += SampleRatio({b, 20000 - b}, {50, 50}).mismatch;
  }
  EXPECT_GE(broken_flagged, kRuns * 95 / 100);
  EXPECT_LE(sound_flagged, 2);  // p < 0.001: about one run in a thousand
}

// A guard looks at the split every half second. Looked at after every 100 units up to 20,000,
// the always-valid check flags a sound 50/50 split in at most alpha of runs, where the
// chi-square test at the same level, looked at as often, flags many more; a 52/48 split is
// found by 20,000 units in nearly every run.
TEST(SimulationTest, TheSequentialSampleRatioCheckHoldsItsLevelUnderRepeatedLooks) {
  std::mt19937_64 rng(17);
  std::bernoulli_distribution coin(0.5), skewed(0.52);
  constexpr int kRuns = 200;
  int sequential_false = 0, chi_square_false = 0, found = 0;
  for (int run = 0; run < kRuns; ++run) {
    double a = 0, b = 0, c = 0, d = 0;
    bool seq = false, chi = false, hit = false;
    for (int n = 1; n <= 20000; ++n) {
      (coin(rng) ? a : b) += 1;
      (skewed(rng) ? c : d) += 1;
      if (n % 100 != 0) continue;
      seq = seq || SequentialSampleRatio({a, b}, {1, 1}, 0.01).mismatch;
      chi = chi || SampleRatio({a, b}, {1, 1}, 0.01).mismatch;
      hit = hit || SequentialSampleRatio({c, d}, {1, 1}, 0.001).mismatch;
    }
    sequential_false += seq;
    chi_square_false += chi;
    found += hit;
  }
  std::printf("sound split flagged: sequential %d, chi-square %d of %d; 52/48 found %d\n", sequential_false, chi_square_false, kRuns, found);
  EXPECT_LE(sequential_false, 6);  // alpha 1 %: 2 expected; P(7 or more of 200) < 0.5 %
  EXPECT_GE(chi_square_false, 3 * std::max(sequential_false, 4));
  EXPECT_GE(found, kRuns * 85 / 100);  // 191 with this seed
}

TEST(SequentialTest, TheTuningNarrowsTheIntervalAtTheExpectedSampleSize) {
  for (double n : {100.0, 5000.0, 1e6}) {
    double rho2 = MixtureRho2(n, 0.05);
    double best = MixtureMargin(n, rho2, 0.05);
    EXPECT_LT(best, MixtureMargin(n, rho2 * 1.2, 0.05)) << n;
    EXPECT_LT(best, MixtureMargin(n, rho2 / 1.2, 0.05)) << n;
    // Wider than the fixed-horizon interval at every N (the price of peeking), by a bounded factor.
    double fixed = 1.959963984540054 / std::sqrt(n);
    EXPECT_GT(best, fixed);
    EXPECT_LT(best, 3 * fixed);
  }
}

TEST(BayesTest, ChanceToBeatAndExpectedLossFollowTheDifference) {
  ArmSummary control{.n = 10000, .mean = 0.10, .variance = 0.09};
  BayesResult same = Bayes(control, control);
  ASSERT_TRUE(same.valid);
  EXPECT_DOUBLE_EQ(same.chance_to_beat, 0.5);
  // With no difference the loss is se·φ(0).
  double se = std::sqrt(2 * 0.09 / 10000);
  EXPECT_NEAR(same.expected_loss, se / std::sqrt(2 * M_PI), 1e-15);
  BayesResult better = Bayes({.n = 10000, .mean = 0.11, .variance = 0.0979}, control);
  EXPECT_GT(better.chance_to_beat, 0.98);  // z = 0.01 / 0.00433 = 2.31
  EXPECT_LT(better.expected_loss, same.expected_loss);
  BayesResult lower = Bayes({.n = 10000, .mean = 0.11, .variance = 0.0979}, control, /*lower_is_better=*/true);
  EXPECT_NEAR(lower.chance_to_beat, 1 - better.chance_to_beat, 1e-15);
  EXPECT_GT(lower.expected_loss, 0.009);  // about the whole point lost
}

TEST(RelativeTest, RelativeDifferenceAndItsInterval) {
  RelativeResult r = Relative({.n = 20000, .mean = 0.12, .variance = 0.1056}, {.n = 20000, .mean = 0.10, .variance = 0.09});
  ASSERT_TRUE(r.valid);
  EXPECT_NEAR(r.difference, 0.2, 1e-12);
  EXPECT_LT(r.interval.low, 0.2);
  EXPECT_GT(r.interval.high, 0.2);
  EXPECT_GT(r.interval.low, 0.1);
  EXPECT_FALSE(Relative({.n = 10, .mean = 1, .variance = 1}, {.n = 10, .mean = 0, .variance = 1}).valid);
}

}  // namespace
}  // namespace gonfalon::stats
