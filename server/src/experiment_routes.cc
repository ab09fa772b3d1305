// Metrics and experiments (DESIGN §8; docs/experiments.md):
//   /api/v1/projects/{p}/metrics[/{m}]                                 metric definitions
//   /api/v1/projects/{p}/environments/{e}/flags/{f}/experiment          iterations; start, stop
//   /api/v1/projects/{p}/environments/{e}/flags/{f}/experiment/results  ?iteration=N&format=csv

#include <cmath>
#include <ctime>

#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/json_fields.h"
#include "gonfalon/rules/str_cat.h"
#include "gonfalon/stats/analysis.h"
#include "responses.h"
#include "routes.h"
#include "wall_clock.h"

namespace gonfalon::server {

using rules::Array;
using rules::Object;
using rules::Value;

namespace {

Value IterationJson(const storage::Iteration& it) {
  Array metrics, weights;
  for (const std::string& m : it.metrics) metrics.emplace_back(m);
  for (double w : it.weights) weights.emplace_back(w);
  Value v(Object{{"iteration", Value(it.number)}, {"startedAt", Value(it.started_ms)}, {"controlVariation", Value(it.control)},
                 {"metrics", Value(std::move(metrics))}, {"primaryMetric", Value(it.metrics.empty() ? "" : it.metrics[0])},
                 {"weights", Value(std::move(weights))}, {"unitKind", Value(it.unit_kind)}});
  if (it.ended_ms != 0) v.Set("endedAt", Value(it.ended_ms));
  if (it.archived_ms != 0) v.Set("archivedAt", Value(it.archived_ms));
  return v;
}

std::string Number(double v) {
  if (!std::isfinite(v)) return "";
  return rules::ToJson(Value(v));
}

// The results of one iteration: every metric analysed by gonfalon::stats from the sums.
struct Results {
  storage::IterationSums sums;
  std::vector<std::pair<storage::Metric, stats::MetricAnalysis>> metrics;
  stats::SampleRatioResult sample_ratio;  // on the units exposed, whatever the metric
  // The daily series: per day, per metric (by position), the analysis of the sums then.
  std::vector<std::vector<stats::MetricAnalysis>> daily;
};

// One metric's sums (per variation) analysed against the iteration's control.
stats::MetricAnalysis Analyze(const std::vector<storage::MetricSums>& per, const storage::Iteration& it,
                              const storage::Metric& metric) {
  std::vector<stats::VariationSums> sums;
  for (const storage::MetricSums& m : per) sums.push_back({m.units, m.sum, m.sum_of_squares});
  stats::AnalysisOptions options;
  options.control = static_cast<size_t>(it.control);
  options.lower_is_better = metric.lower_is_better;
  return stats::AnalyzeMetric(sums, options);
}

Value Pair(const stats::Interval& i) {
  Array a;
  a.emplace_back(std::isfinite(i.low) ? Value(i.low) : Value());
  a.emplace_back(std::isfinite(i.high) ? Value(i.high) : Value());
  return Value(std::move(a));
}

Value ResultsJson(const Results& r) {
  Array units;
  for (int64_t u : r.sums.units) units.emplace_back(u);
  Array metrics;
  for (const auto& [metric, analysis] : r.metrics) {
    Array variations;
    for (size_t v = 0; v < analysis.variations.size(); ++v) {
      const stats::VariationAnalysis& a = analysis.variations[v];
      Value row(Object{{"variation", Value(static_cast<int64_t>(v))}, {"control", Value(a.is_control)},
                       {"units", Value(a.summary.n)}, {"mean", Value(a.summary.mean)},
                       {"standardDeviation", Value(a.standard_deviation)}});
      if (!a.is_control && a.welch.valid) {
        row.Set("difference", Value(a.welch.difference));
        row.Set("differenceInterval", Pair(a.welch.interval));
        row.Set("pValue", Value(a.welch.p_value));
        row.Set("sequentialInterval", Pair(a.sequential));
      }
      if (!a.is_control && a.relative.valid) {
        row.Set("relativeDifference", Value(a.relative.difference));
        row.Set("relativeInterval", Pair(a.relative.interval));
      }
      if (!a.is_control && a.bayes.valid) {
        row.Set("chanceToBeatControl", Value(a.bayes.chance_to_beat));
        row.Set("expectedLoss", Value(a.bayes.expected_loss));
      }
      variations.push_back(std::move(row));
    }
    Value entry(Object{{"key", Value(metric.key)}});
    if (metric.version == 0) {
      // Deleted since the iteration started: its sums stopped moving then.
      entry.Set("definitionDeleted", Value(true));
    } else {
      entry.Set("kind", Value(storage::MetricKindName(metric.kind)));
      entry.Set("successCriteria", Value(metric.lower_is_better ? "lower" : "higher"));
    }
    entry.Set("variations", Value(std::move(variations)));
    metrics.push_back(std::move(entry));
  }
  const stats::SampleRatioResult& srm = r.sample_ratio;
  Value sample_ratio(Object{{"checked", Value(srm.valid)}});
  if (srm.valid) {
    sample_ratio.Set("chiSquare", Value(srm.chi_square));
    sample_ratio.Set("pValue", Value(srm.p_value));
    sample_ratio.Set("mismatch", Value(srm.mismatch));
  }
  // Cumulative results at the end of each day: what a chart of the estimate and its intervals
  // over time draws.
  Array daily;
  for (size_t d = 0; d < r.daily.size(); ++d) {
    const storage::DaySums& day = r.sums.days[d];
    Array day_units, day_metrics;
    for (int64_t u : day.units) day_units.emplace_back(u);
    for (size_t m = 0; m < r.daily[d].size(); ++m) {
      Array variations;
      for (size_t v = 0; v < r.daily[d][m].variations.size(); ++v) {
        const stats::VariationAnalysis& a = r.daily[d][m].variations[v];
        Value row(Object{{"variation", Value(static_cast<int64_t>(v))}, {"units", Value(a.summary.n)}, {"mean", Value(a.summary.mean)}});
        if (!a.is_control && a.welch.valid) {
          row.Set("difference", Value(a.welch.difference));
          row.Set("differenceInterval", Pair(a.welch.interval));
          row.Set("sequentialInterval", Pair(a.sequential));
        }
        if (!a.is_control && a.bayes.valid) row.Set("chanceToBeatControl", Value(a.bayes.chance_to_beat));
        variations.push_back(std::move(row));
      }
      day_metrics.push_back(Value(Object{{"key", Value(r.sums.iteration.metrics[m])}, {"variations", Value(std::move(variations))}}));
    }
    daily.push_back(Value(Object{{"day", Value(UtcDay(day.day_ms))}, {"units", Value(std::move(day_units))},
                                 {"multipleExposures", Value(day.multiple_exposures)}, {"metrics", Value(std::move(day_metrics))}}));
  }
  return Value(Object{{"iteration", IterationJson(r.sums.iteration)}, {"units", Value(std::move(units))},
                      {"multipleExposures", Value(r.sums.multiple_exposures)}, {"sampleRatio", std::move(sample_ratio)},
                      {"metrics", Value(std::move(metrics))}, {"daily", Value(std::move(daily))}});
}

std::string ResultsCsv(const Results& r) {
  std::string out =
      "metric,variation,control,units,mean,standard_deviation,difference,difference_low,difference_high,p_value,"
      "relative_difference,relative_low,relative_high,sequential_low,sequential_high,chance_to_beat_control,expected_loss\n";
  for (const auto& [metric, analysis] : r.metrics) {
    for (size_t v = 0; v < analysis.variations.size(); ++v) {
      const stats::VariationAnalysis& a = analysis.variations[v];
      bool compared = !a.is_control && a.welch.valid;
      bool relative = !a.is_control && a.relative.valid;
      StrAppend(&out, metric.key, ",", v, ",", a.is_control ? "true" : "false", ",", Number(a.summary.n), ",",
                Number(a.summary.mean), ",", Number(a.standard_deviation), ",",
                compared ? Number(a.welch.difference) : "", ",", compared ? Number(a.welch.interval.low) : "", ",",
                compared ? Number(a.welch.interval.high) : "", ",", compared ? Number(a.welch.p_value) : "", ",",
                relative ? Number(a.relative.difference) : "", ",", relative ? Number(a.relative.interval.low) : "", ",",
                relative ? Number(a.relative.interval.high) : "", ",", compared ? Number(a.sequential.low) : "", ",",
                compared ? Number(a.sequential.high) : "", ",", a.bayes.valid ? Number(a.bayes.chance_to_beat) : "", ",",
                a.bayes.valid ? Number(a.bayes.expected_loss) : "", "\n");
    }
  }
  return out;
}

}  // namespace

void AddExperimentRoutes(Router& router, Services& s) {
  storage::Store& store = s.store;

  router.Add("GET", "/api/v1/projects/{p}/metrics", Access::kAdmin, [&store](const Call& c) {
    TRY_ASSIGN(std::vector<storage::Metric> metrics, store.ListMetrics(c.Param("p")));
    Array a;
    for (const auto& m : metrics) a.push_back(storage::MetricToJson(m));
    return Json(200, Items(std::move(a)));
  });
  router.Add("GET", "/api/v1/projects/{p}/metrics/{m}", Access::kAdmin, [&store](const Call& c) {
    TRY_ASSIGN(std::vector<storage::Metric> metrics, store.ListMetrics(c.Param("p")));
    for (const auto& m : metrics) {
      if (m.key == c.Param("m")) return Json(200, storage::MetricToJson(m));
    }
    return ErrorResponse(404, "not_found", StrCat("metric \"", c.Param("m"), "\" does not exist in project \"", c.Param("p"), "\""));
  });
  router.Add("PUT", "/api/v1/projects/{p}/metrics/{m}", Access::kAdmin, [&store](const Call& c) {
    TRY_ASSIGN(Value body, ObjectBody(c.req));
    TRY_ASSIGN(storage::Metric m, storage::MetricFromJson(body));
    m.key = c.Param("m");  // the path names the metric; the store fills in version and creation
    TRY_ASSIGN(storage::Metric stored, store.PutMetric(c.Param("p"), m));
    return Json(stored.version == 1 ? 201 : 200, storage::MetricToJson(stored));
  });
  router.Add("DELETE", "/api/v1/projects/{p}/metrics/{m}", Access::kAdmin, [&store](const Call& c) {
    TRY(store.DeleteMetric(c.Param("p"), c.Param("m")));
    return NoContent();
  });

  const char* experiment = "/api/v1/projects/{p}/environments/{e}/flags/{f}/experiment";
  router.Add("GET", experiment, Access::kAdmin, [&store](const Call& c) {
    TRY_ASSIGN(std::vector<storage::Iteration> all, store.ListIterations(c.Param("p"), c.Param("e"), c.Param("f")));
    Array a;
    for (const auto& it : all) a.push_back(IterationJson(it));
    return Json(200, Value(Object{{"flag", Value(c.Param("f"))}, {"iterations", Value(std::move(a))}}));
  });
  // {"action":"start","controlVariation":0,"metrics":["buy"],"weights":[50,50],"unitKind":"user"}
  // (the first metric is the primary one), {"action":"stop"}, or {"action":"archive","iteration":N}
  // (an ended iteration's unit states deleted; its results stay).
  router.Add("POST", experiment, Access::kAdmin, [&store](const Call& c) {
    TRY_ASSIGN(Value body, ObjectBody(c.req));
    std::string action;
    TRY(rules::GetString(body, "action", "", action));
    if (action == "stop") {
      TRY_ASSIGN(storage::Iteration it, store.StopIteration(c.Param("p"), c.Param("e"), c.Param("f")));
      return Json(200, IterationJson(it));
    }
    if (action == "archive") {
      int64_t number = 0;
      TRY(rules::GetInt64(body, "iteration", "", number));
      if (number < 1) return ErrorResponse(400, "invalid_argument", "iteration: expected the number of an ended iteration", "iteration");
      TRY_ASSIGN(storage::Iteration it, store.ArchiveIteration(c.Param("p"), c.Param("e"), c.Param("f"), number));
      return Json(200, IterationJson(it));
    }
    if (action != "start") {
      return ErrorResponse(400, "invalid_argument", "action: expected \"start\", \"stop\" or \"archive\"", "action");
    }
    storage::Iteration spec;
    TRY(rules::GetInt(body, "controlVariation", "", spec.control));
    TRY(rules::GetStrings(body, "metrics", "", spec.metrics));
    TRY(rules::GetString(body, "unitKind", "", spec.unit_kind));
    TRY_ASSIGN(const Array* weights, rules::GetArray(body, "weights", ""));
    if (weights == nullptr) return ErrorResponse(400, "invalid_argument", "weights: is required (one per variation)", "weights");
    for (size_t i = 0; i < weights->size(); ++i) {
      if (!(*weights)[i].is_number()) return ErrorResponse(400, "invalid_argument", StrCat("weights[", i, "]: expected a number"), StrCat("weights[", i, "]"));
      spec.weights.push_back((*weights)[i].as_number());
    }
    TRY_ASSIGN(storage::Iteration it, store.StartIteration(c.Param("p"), c.Param("e"), c.Param("f"), spec));
    return Json(201, IterationJson(it));
  });
  router.Add("GET", "/api/v1/projects/{p}/environments/{e}/flags/{f}/experiment/results", Access::kAdmin, [&store](const Call& c) {
    TRY_ASSIGN(std::vector<storage::Iteration> all, store.ListIterations(c.Param("p"), c.Param("e"), c.Param("f")));
    if (all.empty()) return ErrorResponse(404, "not_found", StrCat("flag \"", c.Param("f"), "\" has no experiment iteration"));
    TRY_ASSIGN(int64_t number, QueryInt(c.req, "iteration", 1, all.back().number, all.back().number));
    Results r;
    TRY_ASSIGN(r.sums, store.GetIterationSums(c.Param("p"), c.Param("e"), c.Param("f"), number));
    TRY_ASSIGN(std::vector<storage::Metric> defined, store.ListMetrics(c.Param("p")));
    for (const auto& [key, per] : r.sums.metrics) {
      storage::Metric metric;  // version 0: no longer defined
      metric.key = key;
      for (const auto& m : defined) {
        if (m.key == key) metric = m;
      }
      r.metrics.emplace_back(metric, Analyze(per, r.sums.iteration, metric));
    }
    std::vector<double> units(r.sums.units.begin(), r.sums.units.end());
    r.sample_ratio = stats::SampleRatio(units, r.sums.iteration.weights);
    for (const storage::DaySums& day : r.sums.days) {
      std::vector<stats::MetricAnalysis> per_metric;
      for (size_t m = 0; m < day.metrics.size(); ++m) {
        per_metric.push_back(Analyze(day.metrics[m], r.sums.iteration, r.metrics[m].first));
      }
      r.daily.push_back(std::move(per_metric));
    }
    const std::string* format = c.req.Query("format");
    if (format != nullptr && *format == "csv") {
      Response out;
      out.status = 200;
      out.content_type = "text/csv; charset=utf-8";
      out.body = ResultsCsv(r);
      return out;
    }
    if (format != nullptr && *format != "json") return ErrorResponse(400, "invalid_argument", "format: expected \"json\" or \"csv\"", "format");
    return Json(200, ResultsJson(r));
  });
}

}  // namespace gonfalon::server
