// A release plan's Prometheus guard against a real Prometheus (Debian's `prometheus`, which
// scripts/install-deps installs): Prometheus scrapes a small exporter this test controls, the
// guard asks Prometheus's HTTP API with the plan's placeholders filled in, the plan advances
// while the value is healthy and rolls itself back when it is not.

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <mutex>
#include <string>
#include <thread>

#include "gonfalon/rules/str_cat.h"
#include "server_fixture.h"

namespace gonfalon::e2e {
namespace {

constexpr char kPlan[] = "/api/v1/projects/shop/environments/production/flags/checkout/release-plan";
constexpr char kPrometheus[] = "/usr/bin/prometheus";

// Serves GET /metrics in the Prometheus text format: the error ratio per flag and variation
// that the test sets.
class Exporter {
 public:
  Exporter() {
    fd_ = ListenLoopback(port_);
    if (fd_ >= 0) thread_ = std::thread([this] { Loop(); });
  }
  ~Exporter() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  int port() const { return port_; }
  int scrapes() const { return scrapes_; }
  void Set(double treatment_error_ratio) {
    std::lock_guard<std::mutex> l(mu_);
    ratio_ = treatment_error_ratio;
  }

 private:
  void Loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      std::string buf;
      auto deadline = Clock::now() + std::chrono::seconds(5);
      while (buf.find("\r\n\r\n") == std::string::npos && ReadSome(c, buf, deadline)) {
      }
      std::string body;
      {
        std::lock_guard<std::mutex> l(mu_);
        body = StrCat("# TYPE checkout_error_ratio gauge\n",
                      "checkout_error_ratio{flag=\"checkout\",variation=\"0\"} 0.01\n",
                      "checkout_error_ratio{flag=\"checkout\",variation=\"1\"} ", ratio_, "\n");
      }
      SendAll(c, StrCat("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: ", body.size(),
                        "\r\nConnection: close\r\n\r\n", body));
      ::close(c);
      ++scrapes_;
    }
  }

  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> scrapes_{0};
  std::thread thread_;
  std::mutex mu_;
  double ratio_ = 0.01;
};

// Prometheus scraping `target` every 200 ms, on a loopback port of its own; its output goes to
// a log file in its directory (shown when the test fails).
class PrometheusProcess {
 public:
  explicit PrometheusProcess(int target_port) : dir_(TempDir("prometheus")) {
    int fd = ListenLoopback(port_);  // a free port for it (released just before it starts)
    ::close(fd);
    std::ofstream(dir_ + "/prometheus.yml") << "global:\n  scrape_interval: 200ms\n  evaluation_interval: 1s\n"
                                            << "scrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['127.0.0.1:"
                                            << target_port << "']\n";
    std::vector<std::string> args = {kPrometheus,
                                     StrCat("--config.file=", dir_, "/prometheus.yml"),
                                     StrCat("--storage.tsdb.path=", dir_, "/data"),
                                     StrCat("--web.listen-address=127.0.0.1:", port_)};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    std::string log = dir_ + "/prometheus.log";
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    if (posix_spawn(&pid_, kPrometheus, &actions, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
  }
  ~PrometheusProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::filesystem::remove_all(dir_);
  }
  int port() const { return port_; }
  std::string log() const {
    std::ifstream in(dir_ + "/prometheus.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

class PrometheusGuardE2eTest : public ServerTest {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(kPrometheus)) << kPrometheus << " is missing: scripts/install-deps installs Debian's prometheus";
    ServerTest::SetUp();
    MakeShop();
    auto on = Admin("PATCH", "/api/v1/projects/shop/environments/production/flags/checkout", R"({"on":true,"fallthrough":{"variation":0}})");
    ASSERT_EQ(on.status, 200) << on.body;
  }
  rules::Value Plan() { return J(Admin("GET", kPlan)); }
  std::string Status() {
    rules::Value p = Plan();
    return p.Find("status") != nullptr ? p.Find("status")->as_string() : "";
  }
  int Stage() {
    rules::Value p = Plan();
    return p.Find("stage") != nullptr ? static_cast<int>(p.Find("stage")->as_number()) : -1;
  }
};

TEST_F(PrometheusGuardE2eTest, ThePlanAdvancesWhilePrometheusSaysHealthyAndRollsBackWhenItDoesNot) {
  Exporter exporter;
  ASSERT_GT(exporter.port(), 0);
  PrometheusProcess prometheus(exporter.port());
  // Ready, and holding a first sample of the exporter's series.
  std::string series = "/api/v1/query?query=checkout_error_ratio";
  ASSERT_TRUE(Eventually([&] { return Http(prometheus.port(), "GET", series).body.find("\"variation\":\"1\"") != std::string::npos; },
                         std::chrono::seconds(30)))
      << prometheus.log();

  auto started = Admin("POST", kPlan, StrCat(R"J({"controlVariation":0,"treatmentVariation":1,
      "stages":[{"weight":10000,"minDurationMs":500},{"weight":50000,"minDurationMs":600000},{"weight":100000}],
      "guards":[{"kind":"prometheus","url":"http://127.0.0.1:)J", prometheus.port(), R"J(",
                 "query":"max(checkout_error_ratio{flag=\"{{flag}}\",variation=\"{{variation}}\"})",
                 "max":0.05,"intervalMs":250,"action":"rollback"}]})J"));
  ASSERT_EQ(started.status, 201) << started.body;
  // Healthy (1 %): the first stage passes its gate.
  ASSERT_TRUE(Eventually([&] { return Stage() == 1; }, std::chrono::seconds(10))) << rules::ToJson(Plan());
  rules::Value plan = Plan();
  const rules::Value* status = plan.Find("guardStatus");
  ASSERT_NE(status, nullptr) << rules::ToJson(plan);
  const rules::Value& guard = status->Find("guards")->as_array()[0];
  EXPECT_EQ(guard.Find("state")->as_string(), "pass") << rules::ToJson(guard);
  EXPECT_EQ(guard.Find("figures")->Find("values")->as_array()[0].as_number(), 0.01) << rules::ToJson(guard);

  // The treatment's error ratio rises to 20 %: rolled back by the guard, with its figures.
  exporter.Set(0.2);
  ASSERT_TRUE(Eventually([&] { return Status() == "rolledBack"; }, std::chrono::seconds(15))) << rules::ToJson(Plan());
  plan = Plan();
  EXPECT_EQ(plan.Find("stage")->as_number(), 1);
  const rules::Value* fired = plan.Find("firedGuard");
  ASSERT_NE(fired, nullptr);
  EXPECT_EQ(fired->Find("kind")->as_string(), "prometheus");
  EXPECT_EQ(fired->Find("figures")->Find("values")->as_array()[0].as_number(), 0.2);
  EXPECT_NE(fired->Find("summary")->as_string().find("variation=\"1\""), std::string::npos) << fired->Find("summary")->as_string();
  auto flag = J(Admin("GET", "/api/v1/projects/shop/environments/production/flags/checkout"));
  EXPECT_EQ(rules::ToJson(*flag.Find("fallthrough")->Find("rollout")->Find("variations")),
            R"([{"variation":0,"weight":100000},{"variation":1,"weight":0}])");
  EXPECT_GT(exporter.scrapes(), 0);
}

TEST_F(PrometheusGuardE2eTest, AnUnreachablePrometheusHoldsThePlanAndSaysWhy) {
  int port = 0;
  ::close(ListenLoopback(port));  // nothing listens there
  auto started = Admin("POST", kPlan, StrCat(R"({"controlVariation":0,"treatmentVariation":1,
      "stages":[{"weight":10000},{"weight":100000}],
      "guards":[{"kind":"prometheus","url":"http://127.0.0.1:)", port, R"(","query":"up","max":1,"intervalMs":250}]})"));
  ASSERT_EQ(started.status, 201) << started.body;
  ASSERT_TRUE(Eventually([&] { return Plan().Find("guardStatus") != nullptr; }, std::chrono::seconds(5)));
  rules::Value plan = Plan();
  const rules::Value& guard = plan.Find("guardStatus")->Find("guards")->as_array()[0];
  EXPECT_EQ(guard.Find("state")->as_string(), "hold");
  EXPECT_NE(guard.Find("summary")->as_string().find("the query failed"), std::string::npos) << rules::ToJson(guard);
  // Its stages have no gates, yet it waits.
  EXPECT_EQ(Stage(), 0);
  EXPECT_EQ(Status(), "active");
}

}  // namespace
}  // namespace gonfalon::e2e
