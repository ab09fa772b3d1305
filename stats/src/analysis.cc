#include "gonfalon/stats/analysis.h"

#include <cmath>

namespace gonfalon::stats {

MetricAnalysis AnalyzeMetric(const std::vector<VariationSums>& sums, const AnalysisOptions& options) {
  MetricAnalysis out;
  out.variations.resize(sums.size());
  for (size_t i = 0; i < sums.size(); ++i) {
    VariationAnalysis& v = out.variations[i];
    const VariationSums& s = sums[i];
    v.summary = {s.units, s.units > 0 ? s.sum / s.units : 0.0, SampleVariance(s.units, s.sum, s.sum_of_squares)};
    v.standard_deviation = std::sqrt(v.summary.variance);
    v.is_control = i == options.control;
  }
  if (options.control < sums.size()) {
    const ArmSummary& control = out.variations[options.control].summary;
    for (VariationAnalysis& v : out.variations) {
      if (v.is_control) continue;
      v.welch = Welch(v.summary, control, options.confidence);
      v.relative = Relative(v.summary, control, options.confidence);
      v.sequential = SequentialInterval(v.summary, control, options.alpha, options.expected_units);
      v.bayes = Bayes(v.summary, control, options.lower_is_better);
    }
  }
  if (!options.weights.empty()) {
    std::vector<double> units;
    for (const VariationSums& s : sums) units.push_back(s.units);
    out.sample_ratio = SampleRatio(units, options.weights);
  }
  return out;
}

}  // namespace gonfalon::stats
