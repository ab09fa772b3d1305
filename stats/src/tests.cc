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

RelativeResult Relative(const ArmSummary& treatment, const ArmSummary& control, double confidence) {
  RelativeResult r;
  if (control.mean == 0 || treatment.n < 2 || control.n < 2) return r;
  double mt = treatment.mean, mc = control.mean;
  r.difference = (mt - mc) / mc;
  // Var(mt/mc) by the delta method: Var(mt)/mc² + mt²·Var(mc)/mc⁴.
  double variance = treatment.variance / treatment.n / (mc * mc) + mt * mt * control.variance / control.n / (mc * mc * mc * mc);
  if (!(variance > 0)) return r;
  double z = NormalQuantile(0.5 + confidence / 2.0);
  double se = std::sqrt(variance);
  r.interval = {r.difference - z * se, r.difference + z * se};
  r.valid = true;
  return r;
}

double MixtureMargin(double n, double rho2, double alpha) {
  double v = n * rho2 + 1.0;
  return std::sqrt(2.0 * v / (n * n * rho2) * std::log(std::sqrt(v) / alpha));
}

double MixtureRho2(double expected_units, double alpha) {
  // The margin at a fixed N is smooth and unimodal in ln ρ²: a golden-section search over a
  // range wide enough for any N from 1 to 1e12.
  double lo = -60.0, hi = 20.0;
  const double g = (std::sqrt(5.0) - 1.0) / 2.0;
  auto f = [&](double log_rho2) { return MixtureMargin(expected_units, std::exp(log_rho2), alpha); };
  double a = hi - g * (hi - lo), b = lo + g * (hi - lo);
  double fa = f(a), fb = f(b);
  for (int i = 0; i < 200 && hi - lo > 1e-10; ++i) {
    if (fa < fb) {
      hi = b;
      b = a;
      fb = fa;
      a = hi - g * (hi - lo);
      fa = f(a);
    } else {
      lo = a;
      a = b;
      fa = fb;
      b = lo + g * (hi - lo);
      fb = f(b);
    }
  }
  return std::exp(0.5 * (lo + hi));
}

Interval SequentialInterval(const ArmSummary& treatment, const ArmSummary& control, double alpha, double expected_units) {
  double difference = treatment.mean - control.mean;
  double n = treatment.n + control.n;
  if (treatment.n < 2 || control.n < 2) return {-HUGE_VAL, HUGE_VAL};
  double se = std::sqrt(treatment.variance / treatment.n + control.variance / control.n);
  double half = se * std::sqrt(n) * MixtureMargin(n, MixtureRho2(expected_units, alpha), alpha);
  return {difference - half, difference + half};
}

BayesResult Bayes(const ArmSummary& treatment, const ArmSummary& control, bool lower_is_better) {
  BayesResult r;
  if (treatment.n < 2 || control.n < 2) return r;
  double se = std::sqrt(treatment.variance / treatment.n + control.variance / control.n);
  if (!(se > 0)) return r;
  // Oriented so that a positive gain is good.
  double gain = (treatment.mean - control.mean) * (lower_is_better ? -1.0 : 1.0);
  double z = gain / se;
  r.chance_to_beat = NormalCdf(z);
  // E[max(0, -G)] for G ~ N(gain, se²): se·φ(z) - gain·Φ(-z).
  double density = std::exp(-0.5 * z * z) / std::sqrt(2.0 * M_PI);
  r.expected_loss = se * density - gain * NormalCdf(-z);
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
  // Units in a variation the split gives no weight cannot happen by chance: a mismatch.
  for (size_t i = 0; i < observed.size(); ++i) {
    if (weights[i] <= 0 && observed[i] > 0) {
      r.chi_square = HUGE_VAL;
      r.p_value = 0;
    }
  }
  r.mismatch = r.p_value < threshold;
  r.valid = true;
  return r;
}

SequentialSampleRatioResult SequentialSampleRatio(const std::vector<double>& observed, const std::vector<double>& weights,
                                                  double alpha, double concentration) {
  SequentialSampleRatioResult r;
  if (observed.size() != weights.size() || concentration <= 0) return r;
  double total = 0, weight = 0;
  size_t arms = 0;
  for (size_t i = 0; i < observed.size(); ++i) {
    if (weights[i] > 0) {
      total += observed[i];
      weight += weights[i];
      ++arms;
    } else if (observed[i] > 0) {
      r.log_bayes_factor = HUGE_VAL;  // units where the split sends none: not chance
      r.p_value = 0;
      r.mismatch = true;
      r.valid = true;
      return r;
    }
  }
  if (arms < 2 || total <= 0) return r;
  double log_bf = std::lgamma(concentration) - std::lgamma(concentration + total);
  for (size_t i = 0; i < observed.size(); ++i) {
    if (weights[i] <= 0) continue;
    double p = weights[i] / weight;
    double a = concentration * p;
    log_bf += std::lgamma(a + observed[i]) - std::lgamma(a) - observed[i] * std::log(p);
  }
  r.log_bayes_factor = log_bf;
  r.p_value = log_bf <= 0 ? 1 : std::exp(-log_bf);
  r.mismatch = r.p_value < alpha;
  r.valid = true;
  return r;
}

}  // namespace gonfalon::stats
