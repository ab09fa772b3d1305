#pragma once
// Two-sample comparisons of experiment arms, and the sample-ratio check. Inputs are summaries
// (count, mean, variance), so a result costs O(1) however many units the arms hold.
//
//   ArmSummary control{.n = 10000, .mean = 0.10, .variance = 0.09};
//   ArmSummary treatment{.n = 10000, .mean = 0.12, .variance = 0.1056};
//   WelchResult w = Welch(treatment, control);  // w.difference, w.p_value, w.interval

#include <cstddef>
#include <cstdint>
#include <vector>

namespace gonfalon::stats {

// One arm: units, the mean of the metric per unit, and its sample variance (n - 1 in the
// denominator).
struct ArmSummary {
  double n = 0;
  double mean = 0;
  double variance = 0;
};

// The sample variance of values whose count, sum and sum of squares are known (what storage
// keeps per variation); 0 below two values.
double SampleVariance(double n, double sum, double sum_of_squares);

struct Interval {
  double low = 0;
  double high = 0;
};

// Welch's unequal-variance t-test of treatment - control.
struct WelchResult {
  double difference = 0;       // treatment mean - control mean
  double standard_error = 0;
  double degrees_of_freedom = 0;  // Welch–Satterthwaite
  double t = 0;
  double p_value = 1;          // two-sided
  Interval interval;           // at `confidence` (default 95 %)
  bool valid = false;          // false when an arm has fewer than 2 units or both variances are 0
};
WelchResult Welch(const ArmSummary& treatment, const ArmSummary& control, double confidence = 0.95);

// Pearson's chi-square goodness-of-fit of observed unit counts per variation against the
// configured weights (any positive scale): a sample-ratio mismatch when p < threshold.
struct SampleRatioResult {
  double chi_square = 0;
  double degrees_of_freedom = 0;
  double p_value = 1;
  bool mismatch = false;
  bool valid = false;  // false with fewer than two variations with weight, or no units
};
SampleRatioResult SampleRatio(const std::vector<double>& observed, const std::vector<double>& weights,
                              double threshold = 0.001);

}  // namespace gonfalon::stats
