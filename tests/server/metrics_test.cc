#include "metrics.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace gonfalon::server {
namespace {

// The value of the sample line that starts with `series` (name and labels), or -1.
double Sample(const std::string& text, const std::string& series) {
  size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

TEST(MetricsTest, RequestsAreCountedPerRouteMethodAndStatusWithCumulativeBuckets) {
  Metrics m;
  m.RecordRequest("/healthz", "GET", 200, 0.0001);
  m.RecordRequest("/healthz", "GET", 200, 0.2);
  m.RecordRequest("/healthz", "POST", 405, 0.0001);
  std::string text = m.Render();
  EXPECT_NE(text.find(R"(gonfalon_http_requests_total{route="/healthz",method="GET",status="200"} 2)"), std::string::npos) << text;
  EXPECT_NE(text.find(R"(gonfalon_http_requests_total{route="/healthz",method="POST",status="405"} 1)"), std::string::npos);
  EXPECT_NE(text.find(R"(gonfalon_http_request_duration_seconds_bucket{route="/healthz",le="+Inf"} 3)"), std::string::npos) << text;
  EXPECT_NE(text.find(R"(gonfalon_http_request_duration_seconds_count{route="/healthz"} 3)"), std::string::npos);
}


TEST(MetricsTest, RequestsFromManyThreadsAddUpPerRouteMethodAndStatus) {
  Metrics m;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&m] {
      for (int i = 0; i < 250; ++i) m.RecordRequest("/api/v1/projects/{p}", "GET", 200, 0.0004);
      m.RecordRequest("/api/v1/projects/{p}", "GET", 503, 0.2);
    });
  }
  for (auto& t : threads) t.join();
  m.RecordRequest("unmatched", "POST", 404, 0.00001);
  std::string text = m.Render();
  EXPECT_EQ(Sample(text, R"(gonfalon_http_requests_total{route="/api/v1/projects/{p}",method="GET",status="200"})"), 1000);
  EXPECT_EQ(Sample(text, R"(gonfalon_http_requests_total{route="/api/v1/projects/{p}",method="GET",status="503"})"), 4);
  EXPECT_EQ(Sample(text, R"(gonfalon_http_requests_total{route="unmatched",method="POST",status="404"})"), 1);
  // The histogram is cumulative: 1,000 requests at 0.4 ms fall in the 0.5 ms bucket and above.
  EXPECT_EQ(Sample(text, R"(gonfalon_http_request_duration_seconds_bucket{route="/api/v1/projects/{p}",le="0.00025"})"), 0);
  EXPECT_EQ(Sample(text, R"(gonfalon_http_request_duration_seconds_bucket{route="/api/v1/projects/{p}",le="0.0005"})"), 1000);
  EXPECT_EQ(Sample(text, R"(gonfalon_http_request_duration_seconds_bucket{route="/api/v1/projects/{p}",le="+Inf"})"), 1004);
  EXPECT_EQ(Sample(text, R"(gonfalon_http_request_duration_seconds_count{route="/api/v1/projects/{p}"})"), 1004);
}

TEST(MetricsTest, LabelsAreEscapedAndGaugesAreNamedOnce) {
  Metrics m;
  m.RecordRequest("odd\"route\\\n", "GET", 200, 0.001);
  m.evaluations = 7;
  m.SetGaugeSource([] { return std::vector<std::pair<std::string, int64_t>>{{"rocksdb.cur-size-all-mem-tables", 42}}; });
  std::string text = m.Render();
  EXPECT_NE(text.find(R"(route="odd\"route\\\n")"), std::string::npos) << text;
  EXPECT_EQ(Sample(text, "gonfalon_evaluations_total"), 7);
  EXPECT_EQ(Sample(text, "gonfalon_storage_rocksdb_cur_size_all_mem_tables"), 42);
  EXPECT_EQ(text.find("gonfalon_storage_gonfalon_"), std::string::npos);
}

}  // namespace
}  // namespace gonfalon::server
