#include "gonfalon/stats/tests.h"

#include <cmath>

#include "gonfalon/stats/distributions.h"

namespace gonfalon::stats {

double SampleVariance(double n, double sum, double sum_of_squares) {
  if (n < 2) return 0;
  double mean = sum / n;
  double v = (sum_of_squares - n * mean * mean) / (n - 1);
  return v > 0 ? v : 0;  // rounding can take a zero variance just below 0
}

WelchResult Welch(const ArmSummary& treatment, const ArmSummary& control, double confidence) {
  WelchResult r;
  r.difference = treatment.mean - control.mean;
  if (treatment.n < 2 || control.n < 2) return r;
  double vt = treatment.variance / treatment.n;
  double vc = control.variance / control.n;
  double v = vt + vc;
  if (!(v > 0)) return r;
  r.standard_error = std::sqrt(v);
  r.degrees_of_freedom = v * v / (vt * vt / (treatment.n - 1) + vc * vc / (control.n - 1));
  r.t = r.difference / r.standard_error;
  r.p_value = std::min(1.0, 2.0 * StudentTSurvival(std::fabs(r.t), r.degrees_of_freedom));
  double q = StudentTQuantile(0.5 + confidence / 2.0, r.degrees_of_freedom);
  r.interval = {r.difference - q * r.standard_error, r.difference + q * r.standard_error};
  r.valid = true;
  return r;
}

SampleRatioResult SampleRatio(const std::vector<double>& observed, const std::vector<double>& weights,
                              double threshold) {
  SampleRatioResult r;
  if (observed.size() != weights.size()) return r;
  double total = 0, weight = 0;
  size_t arms = 0;
  for (size_t i = 0; i < observed.size(); ++i) {
    if (weights[i] <= 0) continue;
    total += observed[i];
    weight += weights[i];
    ++arms;
  }
  if (arms < 2 || total <= 0) return r;
  for (size_t i = 0; i < observed.size(); ++i) {
    if (weights[i] <= 0) continue;
    double expected = total * weights[i] / weight;
    double d = observed[i] - expected;
    r.chi_square += d * d / expected;
  }
  r.degrees_of_freedom = static_cast<double>(arms - 1);
  r.p_value = ChiSquareSurvival(r.chi_square, r.degrees_of_freedom);
  r.mismatch = r.p_value < threshold;
  r.valid = true;
  return r;
}

}  // namespace gonfalon::stats
