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

// The difference relative to control, (treatment - control) / control, with a delta-method
// interval at `confidence`; invalid when the control mean is 0 or Welch is invalid.
struct RelativeResult {
  double difference = 0;
  Interval interval;
  bool valid = false;
};
RelativeResult Relative(const ArmSummary& treatment, const ArmSummary& control, double confidence = 0.95);

// An always-valid confidence sequence for treatment - control: intervals that hold at every
// sample size simultaneously with probability 1 - alpha, so an experimenter may look at them
// after every batch and stop whenever (Howard, Ramdas, McAuliffe & Sekhon 2021, the Gaussian
// mixture boundary, in its asymptotic form of Waudby-Smith et al. 2023). With N = the units of
// both arms and se Welch's standard error, the interval is difference ± se·√N·m(N), where
//   m(N) = sqrt( 2 (N ρ² + 1) / (N² ρ²) · ln( sqrt(N ρ² + 1) / alpha ) )
// and ρ² is chosen so that m is narrowest at N = expected_units (the tuning parameter).
Interval SequentialInterval(const ArmSummary& treatment, const ArmSummary& control, double alpha = 0.05,
                            double expected_units = 5000);
// m(N) above, and the ρ² that minimizes it at N = expected_units.
double MixtureMargin(double n, double rho2, double alpha);
double MixtureRho2(double expected_units, double alpha);

// Bayesian read of the same summaries: with a flat prior and the normal approximation the
// difference is distributed N(difference, se²). The chance that treatment beats control (is
// higher, or lower when lower_is_better) and the expected loss of shipping treatment if it is
// in fact worse, E[max(0, -difference)] (sign flipped when lower_is_better), in metric units.
struct BayesResult {
  double chance_to_beat = 0.5;
  double expected_loss = 0;
  bool valid = false;
};
BayesResult Bayes(const ArmSummary& treatment, const ArmSummary& control, bool lower_is_better = false);

// Pearson's chi-square goodness-of-fit of observed unit counts per variation against the
// configured weights (any positive scale): a sample-ratio mismatch when p < threshold.
// Variations with weight 0 are left out of the test; units seen in one are a mismatch (p = 0).
struct SampleRatioResult {
  double chi_square = 0;
  double degrees_of_freedom = 0;
  double p_value = 1;
  bool mismatch = false;
  bool valid = false;  // false with fewer than two variations with weight, or no units
};
SampleRatioResult SampleRatio(const std::vector<double>& observed, const std::vector<double>& weights,
                              double threshold = 0.001);

// An always-valid sample-ratio check, for looking at counts that keep growing (a release
// plan's guard looks every half second): the Bayes factor of a Dirichlet-multinomial mixture
// against the configured split (Lindon & Malek 2020), with the prior Dirichlet(c·p) centred on
// the split p (c = `concentration`):
//   BF(x) = Γ(c) / Γ(c + n) · Π Γ(c·p_i + x_i) / Γ(c·p_i) / Π p_i^x_i
// Under the configured split BF is a martingale of mean 1, so the chance that it ever reaches
// 1/alpha, however often it is looked at, is at most alpha (Ville's inequality). p_value is
// min(1, 1/BF); mismatch when it is below alpha. Same conventions as SampleRatio for weights.
struct SequentialSampleRatioResult {
  double log_bayes_factor = 0;
  double p_value = 1;
  bool mismatch = false;
  bool valid = false;
};
SequentialSampleRatioResult SequentialSampleRatio(const std::vector<double>& observed, const std::vector<double>& weights,
                                                  double alpha = 0.001, double concentration = 100);

}  // namespace gonfalon::stats
