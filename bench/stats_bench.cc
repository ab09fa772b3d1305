// The experiment statistics (gonfalon::stats): the results of one iteration from the
// per-variation running sums, at 1,000 and 1,000,000 units (the cost must not depend on units),
// and the functions underneath.
#include <benchmark/benchmark.h>

#include <vector>

#include "gonfalon/stats/analysis.h"
#include "gonfalon/stats/distributions.h"

namespace {

using namespace gonfalon::stats;

// One iteration: 3 variations, 5 metrics (a conversion and four with values), `units` in all.
void BM_ResultsFiveMetricsThreeVariations(benchmark::State& state) {
  double units = static_cast<double>(state.range(0)) / 3;
  std::vector<std::vector<VariationSums>> metrics;
  for (int m = 0; m < 5; ++m) {
    std::vector<VariationSums> v;
    for (int i = 0; i < 3; ++i) {
      double mean = m == 0 ? 0.10 + 0.01 * i : 20.0 + i;
      double second = m == 0 ? mean : mean * mean + 16;
      v.push_back({units, units * mean, units * second});
    }
    metrics.push_back(v);
  }
  AnalysisOptions options{.control = 0, .weights = {1, 1, 1}};
  for (auto _ : state) {
    for (const auto& v : metrics) benchmark::DoNotOptimize(AnalyzeMetric(v, options));
  }
}
BENCHMARK(BM_ResultsFiveMetricsThreeVariations)->Arg(1000)->Arg(1000000)->Unit(benchmark::kMicrosecond);

void BM_StudentTSurvivalHugeDf(benchmark::State& state) {
  double t = 1.7;
  for (auto _ : state) benchmark::DoNotOptimize(StudentTSurvival(t, 1.9e6));
}
BENCHMARK(BM_StudentTSurvivalHugeDf);

void BM_MixtureRho2(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(MixtureRho2(5000, 0.05));
}
BENCHMARK(BM_MixtureRho2);

}  // namespace

BENCHMARK_MAIN();
