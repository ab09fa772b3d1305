// gonfalon::stats against closed forms and identities (the comparison with an independent
// implementation on random data is tests/e2e/node/stats.test.js).
#include <gtest/gtest.h>

#include <cmath>

#include "gonfalon/stats/distributions.h"
#include "gonfalon/stats/tests.h"

namespace gonfalon::stats {
namespace {

void ExpectRelative(double actual, double expected, double tolerance, const char* what) {
  EXPECT_LE(std::fabs(actual - expected), tolerance * std::max(1e-300, std::fabs(expected)))
      << what << ": " << actual << " vs " << expected;
}

TEST(DistributionsTest, NormalQuantileInvertsTheCdfIntoTheTails) {
  EXPECT_EQ(NormalCdf(0), 0.5);
  // Up to x = 5: beyond it p = Φ(x) is so close to 1 that its rounding alone moves x.
  for (double x = -37; x <= 5; x += 0.25) {
    double p = NormalCdf(x);
    if (p <= 0) continue;
    EXPECT_NEAR(NormalQuantile(p), x, 1e-9 * std::max(1.0, std::fabs(x))) << x;
    ExpectRelative(NormalCdf(x) + NormalSurvival(x), 1.0, 1e-15, "cdf + survival");
  }
  // Quantiles of the usual confidence levels, which are defined by the CDF.
  ExpectRelative(NormalCdf(NormalQuantile(0.975)), 0.975, 1e-14, "0.975");
  ExpectRelative(NormalQuantile(0.025), -NormalQuantile(0.975), 1e-14, "symmetry");
}

TEST(DistributionsTest, StudentTMatchesItsClosedFormsAndTendsToTheNormal) {
  for (double t = -50; t <= 50; t += 0.37) {
    // One degree of freedom is Cauchy; two has a closed form too.
    ExpectRelative(StudentTCdf(t, 1), 0.5 + std::atan(t) / M_PI, 1e-12, "df 1");
    ExpectRelative(StudentTCdf(t, 2), 0.5 + t / (2 * std::sqrt(2 + t * t)), 1e-12, "df 2");
    ExpectRelative(StudentTCdf(t, 5) + StudentTCdf(-t, 5), 1.0, 1e-14, "symmetry");
  }
  for (double t = -6; t <= 6; t += 0.5) EXPECT_NEAR(StudentTCdf(t, 1e9), NormalCdf(t), 1e-8) << t;
  for (double df : {1.0, 2.5, 7.3, 30.0, 1000.0, 1e6}) {
    for (double p : {1e-10, 1e-4, 0.025, 0.3, 0.5, 0.7, 0.975, 0.9999}) {
      double q = StudentTQuantile(p, df);
      ExpectRelative(p < 0.5 ? StudentTCdf(q, df) : StudentTSurvival(q, df), p < 0.5 ? p : 1 - p, 1e-10, "quantile");
    }
  }
}

TEST(DistributionsTest, ChiSquareAndIncompleteFunctionsMatchClosedForms) {
  for (double x = 0.01; x < 200; x *= 1.3) {
    ExpectRelative(ChiSquareCdf(x, 2), -std::expm1(-x / 2), 1e-12, "df 2");
    ExpectRelative(ChiSquareSurvival(x, 2), std::exp(-x / 2), 1e-12, "df 2 survival");
    ExpectRelative(ChiSquareCdf(x, 1), std::erf(std::sqrt(x / 2)), 1e-12, "df 1");
  }
  for (double x = 0.05; x < 1; x += 0.05) {
    ExpectRelative(RegularizedBeta(x, 1, 1), x, 1e-13, "I(1,1)");
    ExpectRelative(RegularizedBeta(x, 3.5, 1), std::pow(x, 3.5), 1e-12, "I(a,1)");
    ExpectRelative(RegularizedBeta(x, 1, 4.2), -std::expm1(4.2 * std::log1p(-x)), 1e-12, "I(1,b)");
    ExpectRelative(RegularizedBeta(x, 2.5, 7) + RegularizedBeta(1 - x, 7, 2.5), 1.0, 1e-13, "symmetry");
  }
  EXPECT_TRUE(std::isnan(RegularizedBeta(0.5, -1, 1)));
  EXPECT_TRUE(std::isnan(RegularizedGammaP(0, 1)));
}

TEST(WelchTest, ArmsThatDoNotDifferAndTheDegreesOfFreedomOfEqualArms) {
  ArmSummary a{.n = 1000, .mean = 0.1, .variance = 0.09};
  WelchResult same = Welch(a, a);
  ASSERT_TRUE(same.valid);
  EXPECT_EQ(same.difference, 0);
  EXPECT_EQ(same.p_value, 1);
  EXPECT_NEAR(same.interval.low, -same.interval.high, 1e-15);
  // Equal sizes and variances: Welch's degrees of freedom are 2n - 2, the pooled test's.
  ExpectRelative(same.degrees_of_freedom, 1998, 1e-12, "df");
  WelchResult up = Welch({.n = 1000, .mean = 0.13, .variance = 0.1131}, a);
  WelchResult down = Welch(a, {.n = 1000, .mean = 0.13, .variance = 0.1131});
  EXPECT_EQ(up.p_value, down.p_value);
  EXPECT_EQ(up.difference, -down.difference);
  EXPECT_LT(up.interval.low, up.difference);
  EXPECT_GT(up.interval.high, up.difference);
  EXPECT_FALSE(Welch({.n = 1, .mean = 1, .variance = 0}, a).valid);
  EXPECT_FALSE(Welch({.n = 10, .mean = 1, .variance = 0}, {.n = 10, .mean = 1, .variance = 0}).valid);
}

TEST(WelchTest, SampleVarianceFromRunningSums) {
  // 1, 2, 3, 4: mean 2.5, sample variance 5/3.
  ExpectRelative(SampleVariance(4, 10, 30), 5.0 / 3.0, 1e-14, "variance");
  EXPECT_EQ(SampleVariance(1, 3, 9), 0);
  EXPECT_EQ(SampleVariance(3, 3, 3 - 1e-16), 0);  // rounding below zero is zero
}

TEST(SampleRatioTest, TheExpectedSplitPassesAndA52To48SplitOfFiftyFiftyIsAMismatch) {
  SampleRatioResult even = SampleRatio({10000, 10000}, {50, 50});
  ASSERT_TRUE(even.valid);
  EXPECT_EQ(even.chi_square, 0);
  EXPECT_EQ(even.p_value, 1);
  EXPECT_FALSE(even.mismatch);
  // 20,000 units at 52/48: chi-square 32 on one degree of freedom, p ~ 1.5e-8.
  SampleRatioResult skewed = SampleRatio({10400, 9600}, {1, 1});
  EXPECT_EQ(skewed.chi_square, 32);
  EXPECT_EQ(skewed.degrees_of_freedom, 1);
  ExpectRelative(skewed.p_value, std::erfc(std::sqrt(16.0)), 1e-12, "p");
  EXPECT_TRUE(skewed.mismatch);
  // Weights of any scale; a variation without weight is left out.
  SampleRatioResult three = SampleRatio({500, 300, 200, 0}, {0.5, 0.3, 0.2, 0});
  EXPECT_EQ(three.degrees_of_freedom, 2);
  EXPECT_NEAR(three.chi_square, 0, 1e-12);
  // Units where the split sends none: the assignment is broken.
  SampleRatioResult stray = SampleRatio({500, 300, 200, 3}, {0.5, 0.3, 0.2, 0});
  EXPECT_TRUE(stray.mismatch);
  EXPECT_EQ(stray.p_value, 0);
  EXPECT_FALSE(SampleRatio({10}, {1}).valid);
  EXPECT_FALSE(SampleRatio({0, 0}, {1, 1}).valid);
}

TEST(SequentialSampleRatioTest, TheBayesFactorIsTheDirichletMultinomialOneAndFlagsOnlyAClearSkew) {
  // 3 and 1 units on 50/50, concentration 2 (Dirichlet(1, 1)):
  // BF = Γ(2)/Γ(6) · Γ(4)/Γ(1) · Γ(2)/Γ(1) / 0.5^4 = 6 · 16 / 120 = 0.8.
  SequentialSampleRatioResult small = SequentialSampleRatio({3, 1}, {50, 50}, 0.001, 2);
  ASSERT_TRUE(small.valid);
  EXPECT_NEAR(small.log_bayes_factor, std::log(0.8), 1e-12);
  EXPECT_EQ(small.p_value, 1);
  EXPECT_FALSE(small.mismatch);
  SequentialSampleRatioResult skewed = SequentialSampleRatio({10400, 9600}, {1, 1});
  EXPECT_TRUE(skewed.mismatch);
  EXPECT_LT(skewed.p_value, 1e-5);  // chi-square: 1.5e-8; the price of looking at will
  EXPECT_FALSE(SequentialSampleRatio({10050, 9950}, {1, 1}).mismatch);
  SequentialSampleRatioResult stray = SequentialSampleRatio({500, 500, 1}, {1, 1, 0});
  EXPECT_TRUE(stray.mismatch);
  EXPECT_EQ(stray.p_value, 0);
  EXPECT_FALSE(SequentialSampleRatio({10}, {1}).valid);
  EXPECT_FALSE(SequentialSampleRatio({0, 0}, {1, 1}).valid);
}

}  // namespace
}  // namespace gonfalon::stats
