#pragma once
// The distributions behind the experiment statistics: normal, Student's t and chi-square, and
// the special functions they rest on. Double precision throughout; each function is accurate to
// about 1e-12 relative in the ranges experiments use (checked against an independent
// implementation in tests/stats).

namespace gonfalon::stats {

// Standard normal distribution.
double NormalCdf(double x);
double NormalSurvival(double x);  // 1 - NormalCdf(x), without cancellation for large x
double NormalQuantile(double p);  // p in (0, 1); the inverse of NormalCdf

// Student's t distribution with `df` > 0 degrees of freedom (df may be fractional: Welch).
double StudentTCdf(double t, double df);
double StudentTSurvival(double t, double df);  // 1 - StudentTCdf
double StudentTQuantile(double p, double df);  // p in (0, 1)

// Chi-square distribution with `df` > 0 degrees of freedom.
double ChiSquareCdf(double x, double df);
double ChiSquareSurvival(double x, double df);  // the p-value of a statistic x

// Regularized incomplete beta I_x(a, b) (a, b > 0, x in [0, 1]) and regularized lower
// incomplete gamma P(a, x) (a > 0, x >= 0), with its complement Q(a, x) = 1 - P(a, x).
double RegularizedBeta(double x, double a, double b);
double RegularizedGammaP(double a, double x);
double RegularizedGammaQ(double a, double x);

}  // namespace gonfalon::stats
