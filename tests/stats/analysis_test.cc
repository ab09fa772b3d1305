#include "gonfalon/stats/analysis.h"

#include <gtest/gtest.h>

#include <cmath>

namespace gonfalon::stats {
namespace {

TEST(AnalysisTest, EachVariationAgainstControlFromRunningSums) {
  // Conversions: control 1,000 of 10,000; B 1,180 of 10,000; C 990 of 10,200 (0/1 values, so
  // the sum of squares equals the sum).
  std::vector<VariationSums> sums = {{10000, 1000, 1000}, {10000, 1180, 1180}, {10200, 990, 990}};
  MetricAnalysis a = AnalyzeMetric(sums, {.control = 0, .weights = {1, 1, 1}});
  ASSERT_EQ(a.variations.size(), 3u);
  EXPECT_TRUE(a.variations[0].is_control);
  EXPECT_FALSE(a.variations[0].welch.valid);  // nothing to compare the control with
  EXPECT_DOUBLE_EQ(a.variations[0].summary.mean, 0.1);
  // A rate's sample variance: p(1-p)·n/(n-1).
  EXPECT_NEAR(a.variations[0].summary.variance, 0.1 * 0.9 * 10000 / 9999, 1e-15);
  const VariationAnalysis& b = a.variations[1];
  EXPECT_NEAR(b.welch.difference, 0.018, 1e-15);
  EXPECT_LT(b.welch.p_value, 0.001);
  EXPECT_NEAR(b.relative.difference, 0.18, 1e-12);
  EXPECT_GT(b.bayes.chance_to_beat, 0.999);
  EXPECT_LT(b.sequential.low, b.welch.interval.low);  // wider than the fixed-horizon interval
  EXPECT_GT(b.sequential.high, b.welch.interval.high);
  const VariationAnalysis& c = a.variations[2];
  EXPECT_LT(c.welch.difference, 0);
  EXPECT_LT(c.bayes.chance_to_beat, 0.5);
  // Each result is the library's function of the summaries (the analysis adds no arithmetic).
  WelchResult direct = Welch(b.summary, a.variations[0].summary);
  EXPECT_EQ(direct.p_value, b.welch.p_value);
  EXPECT_TRUE(a.sample_ratio.valid);
  EXPECT_EQ(a.sample_ratio.degrees_of_freedom, 2);
  EXPECT_FALSE(a.sample_ratio.mismatch);
}

TEST(AnalysisTest, LowerIsBetterFlipsTheBayesianReadAndNoWeightsMeansNoRatioCheck) {
  std::vector<VariationSums> latency = {{500, 500 * 120.0, 500 * (120.0 * 120 + 400)}, {500, 500 * 110.0, 500 * (110.0 * 110 + 400)}};
  MetricAnalysis a = AnalyzeMetric(latency, {.control = 0, .lower_is_better = true});
  EXPECT_GT(a.variations[1].bayes.chance_to_beat, 0.99);
  EXPECT_NEAR(a.variations[1].standard_deviation, std::sqrt(400.0 * 500 / 499), 1e-9);
  EXPECT_FALSE(a.sample_ratio.valid);
  // An empty variation does not break the others.
  MetricAnalysis empty = AnalyzeMetric({{0, 0, 0}, {100, 10, 10}}, {.control = 0});
  EXPECT_FALSE(empty.variations[1].welch.valid);
  EXPECT_EQ(empty.variations[0].summary.mean, 0);
}

}  // namespace
}  // namespace gonfalon::stats
