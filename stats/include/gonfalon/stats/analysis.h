#pragma once
// One metric of one experiment iteration, analysed: every variation against control, from the
// per-variation running sums storage keeps (units, sum, sum of squares of the per-unit values).
// O(variations): the cost does not depend on how many units the sums cover.
//
//   std::vector<VariationSums> sums = {{10000, 1000, 1000}, {10000, 1180, 1180}};
//   MetricAnalysis a = AnalyzeMetric(sums, {.control = 0, .weights = {50, 50}});
//   a.variations[1].welch.p_value, a.variations[1].sequential, a.sample_ratio.mismatch

#include <cstddef>
#include <vector>

#include "gonfalon/stats/tests.h"

namespace gonfalon::stats {

// What storage keeps per variation and metric: the units exposed (and analysed), and the sum
// and sum of squares of each unit's value (0/1 for a conversion, a count, a capped sum, ...).
struct VariationSums {
  double units = 0;
  double sum = 0;
  double sum_of_squares = 0;
};

struct AnalysisOptions {
  size_t control = 0;            // index of the control variation
  std::vector<double> weights;   // configured split, any scale; empty: no sample-ratio check
  bool lower_is_better = false;  // the metric's success direction
  double confidence = 0.95;      // of the fixed-horizon intervals
  double alpha = 0.05;           // of the sequential interval
  double expected_units = 5000;  // the sequential interval's tuning (units of both arms)
};

struct VariationAnalysis {
  ArmSummary summary;  // units, mean (the rate for a conversion), sample variance
  double standard_deviation = 0;
  bool is_control = false;
  // Against control (unset for the control itself):
  WelchResult welch;        // absolute difference, its interval, p-value
  RelativeResult relative;  // relative difference and interval
  Interval sequential;      // always-valid interval of the absolute difference
  BayesResult bayes;        // chance to beat control, expected loss
};

struct MetricAnalysis {
  std::vector<VariationAnalysis> variations;  // in the order of the input
  SampleRatioResult sample_ratio;
};

MetricAnalysis AnalyzeMetric(const std::vector<VariationSums>& sums, const AnalysisOptions& options);

}  // namespace gonfalon::stats
