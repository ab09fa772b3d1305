// Reads one computation per line on stdin and prints its result on stdout, so that
// tests/e2e/node/stats.test.js can hold gonfalon::stats to an independent implementation.
//   ncdf x | nquant p | tcdf t df | tquant p df | chi2cdf x df
//   welch n1 mean1 var1 n2 mean2 var2    -> difference se df t p low high
//   srm k o1..ok w1..wk                  -> chi_square df p
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "gonfalon/stats/distributions.h"
#include "gonfalon/stats/tests.h"

using namespace gonfalon::stats;

int main() {
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string op;
    in >> op;
    std::vector<double> a;
    for (double v; in >> v;) a.push_back(v);
    auto at = [&](size_t i) { return i < a.size() ? a[i] : 0.0; };
    if (op == "ncdf") {
      std::printf("%.17g\n", NormalCdf(at(0)));
    } else if (op == "nquant") {
      std::printf("%.17g\n", NormalQuantile(at(0)));
    } else if (op == "tcdf") {
      std::printf("%.17g\n", StudentTCdf(at(0), at(1)));
    } else if (op == "tquant") {
      std::printf("%.17g\n", StudentTQuantile(at(0), at(1)));
    } else if (op == "chi2cdf") {
      std::printf("%.17g\n", ChiSquareCdf(at(0), at(1)));
    } else if (op == "welch") {
      WelchResult w = Welch({at(0), at(1), at(2)}, {at(3), at(4), at(5)});
      std::printf("%.17g %.17g %.17g %.17g %.17g %.17g %.17g\n", w.difference, w.standard_error,
                  w.degrees_of_freedom, w.t, w.p_value, w.interval.low, w.interval.high);
    } else if (op == "srm") {
      size_t k = static_cast<size_t>(at(0));
      std::vector<double> observed(a.begin() + 1, a.begin() + 1 + k), weights(a.begin() + 1 + k, a.begin() + 1 + 2 * k);
      SampleRatioResult r = SampleRatio(observed, weights);
      std::printf("%.17g %.17g %.17g\n", r.chi_square, r.degrees_of_freedom, r.p_value);
    } else {
      std::printf("unknown %s\n", op.c_str());
    }
    std::fflush(stdout);
  }
  return 0;
}
