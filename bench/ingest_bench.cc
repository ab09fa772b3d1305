// Experiment ingestion (issue 11) through the real `gonfalon serve` on port 0 over loopback:
// batches of 1,000 events (500 exposures of new units + 500 metric events of units exposed in
// the batch before) posted to /sdk/v1/events with a batch id, each acknowledged only after it
// is durable. One iteration is one batch on a keep-alive connection per thread; items_per_second
// counts events. The experiment has 5 metrics (conversion, count, sum, mean, capped sum), so each
// metric event updates several sums.
//   build/release/bench/ingest_bench --benchmark_filter=Ingest
//
// Results: the results route for an iteration after N units have been ingested (BM_Results,
// arg = units): its time should not grow with N. Disk per million units: the data directory's
// size after BM_Results/1000000, printed.
#include <benchmark/benchmark.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../tests/e2e/e2e_util.h"
#include "gonfalon/rules/str_cat.h"
#include "gonfalon/rules/value.h"

namespace {

using gonfalon::e2e::Bearer;
using gonfalon::e2e::Http;
using gonfalon::e2e::HttpResponse;
using gonfalon::e2e::kAdminToken;
using gonfalon::e2e::ServerProcess;
using gonfalon::StrAppend;
using gonfalon::StrCat;

constexpr char kExperiment[] = "/api/v1/projects/shop/environments/production/flags/exp/experiment";

struct Setup {
  std::unique_ptr<ServerProcess> server;
  std::string sdk_key;
  std::string data_dir;
  int64_t now_ms = 0;
};

void Admin(int port, const std::string& method, const std::string& path, const std::string& body) {
  HttpResponse r = Http(port, method, path, body, Bearer(kAdminToken));
  if (r.status >= 300) {
    std::fprintf(stderr, "%s %s: %d %s\n", method.c_str(), path.c_str(), r.status, r.body.c_str());
    std::abort();
  }
}

// A server with one experiment running on flag "exp" (2 variations, 5 metrics). A static
// object: its destructor stops the server and removes its data when the program exits.
Setup& TheServer() {
  static std::unique_ptr<Setup> s = [] {
    auto s = std::make_unique<Setup>();
    s->data_dir = gonfalon::e2e::TempDir("ingest-bench");
    s->server = std::make_unique<ServerProcess>(s->data_dir);
    int port = s->server->port();
    Admin(port, "POST", "/api/v1/projects", R"({"key":"shop","environments":["production"]})");
    Admin(port, "POST", "/api/v1/projects/shop/flags", R"({"key":"exp","variations":[false,true]})");
    Admin(port, "PUT", "/api/v1/projects/shop/metrics/converted", R"({"eventKey":"e0","kind":"conversion"})");
    Admin(port, "PUT", "/api/v1/projects/shop/metrics/clicks", R"({"eventKey":"e1","kind":"count"})");
    Admin(port, "PUT", "/api/v1/projects/shop/metrics/revenue", R"({"eventKey":"e2","kind":"sum"})");
    Admin(port, "PUT", "/api/v1/projects/shop/metrics/latency", R"({"eventKey":"e3","kind":"mean","successCriteria":"lower"})");
    Admin(port, "PUT", "/api/v1/projects/shop/metrics/capped", R"({"eventKey":"e4","kind":"sum","capValue":50})");
    Admin(port, "POST", kExperiment,
          R"({"action":"start","metrics":["converted","clicks","revenue","latency","capped"],"weights":[1,1]})");
    HttpResponse key = Http(port, "POST", "/api/v1/keys", R"({"kind":"server","project":"shop","environment":"production"})",
                            Bearer(kAdminToken));
    s->sdk_key = gonfalon::rules::ParseJson(key.body)->Find("secret")->as_string();
    s->now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count() + 1000;
    return s;
  }();
  return *s;
}

// One batch: `exposed` new units, and one metric event each for the units of the batch before.
std::string Batch(const std::string& id, const std::vector<std::string>& exposed, const std::vector<std::string>& earlier,
                  int64_t time_ms) {
  std::string body = StrCat(R"({"batchId":")", id, R"(","exposedUnits":[)");
  for (size_t i = 0; i < exposed.size(); ++i) {
    StrAppend(&body, i ? "," : "", R"({"flag":"exp","variation":)", i % 2, R"(,"unitKey":")", exposed[i], R"(","time":)",
              time_ms, "}");
  }
  body += R"(],"metrics":[)";
  for (size_t i = 0; i < earlier.size(); ++i) {
    StrAppend(&body, i ? "," : "", R"({"event":"e)", i % 5, R"(","value":)", 1 + i % 97, R"(,"units":{"user":")", earlier[i],
              R"("},"time":)", time_ms + 1, "}");
  }
  body += "]}";
  return body;
}

// A keep-alive connection that posts bodies and reads the responses.
class Connection {
 public:
  explicit Connection(int port) : port_(port), fd_(gonfalon::e2e::Connect(port)) {}
  ~Connection() {
    if (fd_ >= 0) ::close(fd_);
  }
  HttpResponse Post(const std::string& path, const std::string& body, const std::string& key) {
    std::string req = StrCat("POST ", path, " HTTP/1.1\r\nHost: 127.0.0.1:", port_, "\r\nAuthorization: Bearer ", key,
                             "\r\nContent-Type: application/json\r\nContent-Length: ", body.size(), "\r\n\r\n", body);
    gonfalon::e2e::SendAll(fd_, req);
    auto deadline = gonfalon::e2e::Clock::now() + std::chrono::seconds(30);
    while (true) {
      if (auto r = gonfalon::e2e::ParseResponse(buf_)) return *r;
      if (!gonfalon::e2e::ReadSome(fd_, buf_, deadline)) return {};
    }
  }

 private:
  int port_;
  int fd_;
  std::string buf_;
};

std::atomic<uint64_t> next_unit{0};

// Posts `batches` batches of 1,000 events on one connection; returns false on a failed post.
bool Ingest(Setup& s, Connection& conn, int batches, std::vector<std::string>& earlier, std::string* error) {
  for (int b = 0; b < batches; ++b) {
    std::vector<std::string> exposed;
    exposed.reserve(500);
    uint64_t first = next_unit.fetch_add(500);
    for (uint64_t u = first; u < first + 500; ++u) exposed.push_back(StrCat("unit-", u));
    HttpResponse r = conn.Post("/sdk/v1/events", Batch(StrCat("batch-", first), exposed, earlier, s.now_ms), s.sdk_key);
    if (r.status != 202 || r.body.find(R"("rejected":[])") == std::string::npos) {
      *error = StrCat("HTTP ", r.status, ": ", r.body.substr(0, 300));
      return false;
    }
    earlier = std::move(exposed);
  }
  return true;
}

void BM_Ingest(benchmark::State& state) {
  Setup& s = TheServer();
  Connection conn(s.server->port());
  std::vector<std::string> earlier;
  std::string error;
  for (auto _ : state) {
    if (!Ingest(s, conn, 1, earlier, &error)) {
      state.SkipWithError(error.c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * 1000);
}
BENCHMARK(BM_Ingest)->ThreadRange(1, 8)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(3);

// The results route after ingesting until the iteration holds range(0) units.
void BM_Results(benchmark::State& state) {
  Setup& s = TheServer();
  const uint64_t want = static_cast<uint64_t>(state.range(0));
  {
    // Fill up with 2 connections in parallel (not timed).
    std::vector<std::thread> fill;
    std::mutex mu;
    std::string error;
    for (int t = 0; t < 2; ++t) {
      fill.emplace_back([&] {
        Connection conn(s.server->port());
        std::vector<std::string> earlier;
        std::string e;
        while (next_unit.load() < want) {
          if (!Ingest(s, conn, 1, earlier, &e)) {
            std::lock_guard<std::mutex> l(mu);
            error = e;
            return;
          }
        }
      });
    }
    for (auto& t : fill) t.join();
    if (!error.empty()) {
      state.SkipWithError(error.c_str());
      return;
    }
  }
  // A clean restart: RocksDB flushes its memtables to tables and drops the write-ahead logs,
  // so the directory then holds what the units cost at rest.
  if (s.server->Kill(SIGTERM) != 0) {
    state.SkipWithError("the server did not stop cleanly");
    return;
  }
  s.server->Start();
  if (s.server->port() <= 0) {
    state.SkipWithError(("the server did not restart: " + s.server->output()).c_str());
    return;
  }
  for (auto _ : state) {
    HttpResponse r = Http(s.server->port(), "GET", StrCat(kExperiment, "/results"), "", Bearer(kAdminToken));
    if (r.status != 200) {
      state.SkipWithError(r.body.c_str());
      break;
    }
  }
  state.counters["units"] = static_cast<double>(next_unit.load());
  // The directory after the restart, and of it the tables (.sst) and the write-ahead logs (.log).
  uintmax_t bytes = 0, tables = 0, logs = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(s.data_dir)) {
    if (!e.is_regular_file()) continue;
    bytes += e.file_size();
    if (e.path().extension() == ".sst") tables += e.file_size();
    if (e.path().extension() == ".log") logs += e.file_size();
  }
  state.counters["data_dir_MB"] = static_cast<double>(bytes) / 1e6;
  state.counters["sst_MB"] = static_cast<double>(tables) / 1e6;
  state.counters["wal_MB"] = static_cast<double>(logs) / 1e6;
}
BENCHMARK(BM_Results)->Arg(100000)->Arg(1000000)->Unit(benchmark::kMillisecond)->Iterations(20);

}  // namespace

BENCHMARK_MAIN();
