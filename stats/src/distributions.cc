#include "gonfalon/stats/distributions.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace gonfalon::stats {
namespace {

constexpr double kEpsilon = 1e-15;
constexpr double kTiny = 1e-300;
constexpr int kMaxIterations = 10000;
const double kNaN = std::numeric_limits<double>::quiet_NaN();

// The continued fraction of I_x(a, b) (DLMF 8.17.22), by the modified Lentz method.
double BetaFraction(double x, double a, double b) {
  double c = 1.0;
  double d = 1.0 - (a + b) * x / (a + 1.0);
  if (std::fabs(d) < kTiny) d = kTiny;
  d = 1.0 / d;
  double f = d;
  for (int m = 1; m <= kMaxIterations; ++m) {
    // The even step d_{2m}, then the odd step d_{2m+1}.
    double numerator = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
    d = 1.0 + numerator * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1.0 + numerator / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1.0 / d;
    f *= d * c;
    numerator = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
    d = 1.0 + numerator * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1.0 + numerator / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1.0 / d;
    double delta = d * c;
    f *= delta;
    if (std::fabs(delta - 1.0) < kEpsilon) break;
  }
  return f;
}

// P(a, x) by its power series (DLMF 8.11.4), for x < a + 1.
double GammaSeries(double a, double x) {
  double term = 1.0 / a;
  double sum = term;
  for (int n = 1; n <= kMaxIterations; ++n) {
    term *= x / (a + n);
    sum += term;
    if (std::fabs(term) < std::fabs(sum) * kEpsilon) break;
  }
  return sum * std::exp(-x + a * std::log(x) - std::lgamma(a));
}

// Q(a, x) by its continued fraction (DLMF 8.9.2), modified Lentz, for x >= a + 1.
double GammaFraction(double a, double x) {
  double b = x + 1.0 - a;
  double c = 1.0 / kTiny;
  double d = 1.0 / b;
  double f = d;
  for (int n = 1; n <= kMaxIterations; ++n) {
    double an = -n * (n - a);
    b += 2.0;
    d = an * d + b;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = b + an / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1.0 / d;
    double delta = d * c;
    f *= delta;
    if (std::fabs(delta - 1.0) < kEpsilon) break;
  }
  return std::exp(-x + a * std::log(x) - std::lgamma(a)) * f;
}

// S(z) of Stirling's series ln Γ(z) = (z - 1/2) ln z - z + ln(2π)/2 + S(z), to the z^-7 term
// (the next is below 1e-16 for z >= 20).
double StirlingTail(double z) {
  double z2 = z * z;
  return (1.0 / 12.0 - (1.0 / 360.0 - (1.0 / 1260.0 - 1.0 / (1680.0 * z2)) / z2) / z2) / z;
}

// ln B(a, 1/2) = ln Γ(1/2) - (ln Γ(a + 1/2) - ln Γ(a)). For large a (Welch's degrees of freedom
// reach millions) the difference of two lgamma values of ~1e7 would lose eight digits, so it is
// taken from Stirling's series, where it is ln(a)/2 + a·log1p(1/(2a)) - 1/2 + S(a+1/2) - S(a).
double LogBetaHalf(double a) {
  if (a < 20.0) return std::lgamma(a) + std::lgamma(0.5) - std::lgamma(a + 0.5);
  double difference = 0.5 * std::log(a) + a * std::log1p(0.5 / a) - 0.5 + StirlingTail(a + 0.5) - StirlingTail(a);
  return 0.5 * std::log(M_PI) - difference;
}

// I_x(a, b) given y = 1 - x separately (exact when x is close to 1) and ln B(a, b).
double RegularizedBetaXY(double x, double y, double a, double b, double log_beta) {
  if (x <= 0.0) return 0.0;
  if (y <= 0.0) return 1.0;
  double log_x = y < 0.5 ? std::log1p(-y) : std::log(x);
  double log_y = x < 0.5 ? std::log1p(-x) : std::log(y);
  double front = std::exp(a * log_x + b * log_y - log_beta);
  // The fraction converges quickly for x < (a + 1) / (a + b + 2); otherwise use the symmetry
  // I_x(a, b) = 1 - I_{1-x}(b, a).
  if (x < (a + 1.0) / (a + b + 2.0)) return front * BetaFraction(x, a, b) / a;
  return 1.0 - front * BetaFraction(y, b, a) / b;
}

double StudentTDensity(double t, double df) {
  return std::exp(-LogBetaHalf(df / 2.0) - 0.5 * std::log(df) - (df + 1.0) / 2.0 * std::log1p(t * t / df));
}

}  // namespace

double NormalCdf(double x) { return 0.5 * std::erfc(-x / M_SQRT2); }

double NormalSurvival(double x) { return 0.5 * std::erfc(x / M_SQRT2); }

double NormalQuantile(double p) {
  if (!(p > 0.0 && p < 1.0)) {
    if (p == 0.0) return -std::numeric_limits<double>::infinity();
    if (p == 1.0) return std::numeric_limits<double>::infinity();
    return kNaN;
  }
  // A start from Abramowitz & Stegun 26.2.23 (|error| < 4.5e-4), then Halley steps on the
  // exact CDF until they no longer move it.
  double q = p < 0.5 ? p : 1.0 - p;
  double t = std::sqrt(-2.0 * std::log(q));
  double x = t - (2.515517 + 0.802853 * t + 0.010328 * t * t) / (1.0 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t);
  if (p < 0.5) x = -x;
  for (int i = 0; i < 10; ++i) {
    // f(x) = Φ(x) - p, computed in the tail where p lies so that its error is relative:
    // for p >= 0.5, Φ(x) - p = (1 - p) - S(x), and 1 - p is exact there.
    double f = p < 0.5 ? NormalCdf(x) - p : (1.0 - p) - NormalSurvival(x);
    double u = f / (std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI));
    double step = u / (1.0 + 0.5 * x * u);  // Halley's method
    x -= step;
    if (std::fabs(step) <= 1e-15 * std::max(1.0, std::fabs(x))) break;
  }
  return x;
}

double RegularizedBeta(double x, double a, double b) {
  if (!(a > 0.0 && b > 0.0) || !(x >= 0.0 && x <= 1.0)) return kNaN;
  return RegularizedBetaXY(x, 1.0 - x, a, b, std::lgamma(a) + std::lgamma(b) - std::lgamma(a + b));
}

double RegularizedGammaP(double a, double x) {
  if (!(a > 0.0) || !(x >= 0.0)) return kNaN;
  if (x == 0.0) return 0.0;
  return x < a + 1.0 ? GammaSeries(a, x) : 1.0 - GammaFraction(a, x);
}

double RegularizedGammaQ(double a, double x) {
  if (!(a > 0.0) || !(x >= 0.0)) return kNaN;
  if (x == 0.0) return 1.0;
  return x < a + 1.0 ? 1.0 - GammaSeries(a, x) : GammaFraction(a, x);
}

double StudentTSurvival(double t, double df) {
  if (!(df > 0.0) || std::isnan(t)) return kNaN;
  if (std::isinf(t)) return t > 0 ? 0.0 : 1.0;
  // P(T > |t|) = I_x(df/2, 1/2) / 2 with x = df/(df+t²), 1 - x = t²/(df+t²).
  double t2 = t * t;
  double tail = 0.5 * RegularizedBetaXY(df / (df + t2), t2 / (df + t2), df / 2.0, 0.5, LogBetaHalf(df / 2.0));
  return t >= 0.0 ? tail : 1.0 - tail;
}

double StudentTCdf(double t, double df) {
  // By symmetry, from the tail on the side of t (NaN in, NaN out).
  return t < 0.0 ? StudentTSurvival(-t, df) : 1.0 - StudentTSurvival(t, df);
}

double StudentTQuantile(double p, double df) {
  if (!(df > 0.0) || !(p > 0.0 && p < 1.0)) {
    if (df > 0.0 && p == 0.0) return -std::numeric_limits<double>::infinity();
    if (df > 0.0 && p == 1.0) return std::numeric_limits<double>::infinity();
    return kNaN;
  }
  if (p == 0.5) return 0.0;
  // Solve for the upper tail q = min(p, 1 - p) on t > 0 by Newton's method from the normal
  // quantile, kept inside a bracket that bisection narrows when a step leaves it.
  double q = p < 0.5 ? p : 1.0 - p;
  double lo = 0.0, hi = 1.0;
  while (StudentTSurvival(hi, df) > q) hi *= 2.0;
  double t = std::min(std::max(-NormalQuantile(q), 0.5 * hi), hi);
  if (!(t > lo && t < hi)) t = 0.5 * (lo + hi);
  for (int i = 0; i < 200; ++i) {
    double f = StudentTSurvival(t, df) - q;  // decreasing in t
    if (f > 0) lo = t; else hi = t;
    double next = t + f / StudentTDensity(t, df);
    if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
    if (std::fabs(next - t) <= 1e-14 * std::max(1.0, t)) {
      t = next;
      break;
    }
    t = next;
  }
  return p < 0.5 ? -t : t;
}

double ChiSquareCdf(double x, double df) {
  if (x <= 0.0) return df > 0.0 ? 0.0 : kNaN;
  return RegularizedGammaP(df / 2.0, x / 2.0);
}

double ChiSquareSurvival(double x, double df) {
  if (x <= 0.0) return df > 0.0 ? 1.0 : kNaN;
  return RegularizedGammaQ(df / 2.0, x / 2.0);
}

}  // namespace gonfalon::stats
