// The SDK against the real server binary on port 0 over loopback.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "../e2e/e2e_util.h"
#include "tcp_proxy.h"
#include "gonfalon/rules/value.h"
#include "gonfalon/sdk/client.h"

namespace gonfalon::sdk {
namespace {

using e2e::Bearer;
using e2e::Http;
using e2e::kAdminToken;
using e2e::ServerProcess;
using namespace std::chrono_literals;

using e2e::Eventually;

class SdkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<ServerProcess>();
    ASSERT_GT(server_->port(), 0) << server_->output();
    Admin("POST", "/api/v1/projects", R"({"key":"shop","environments":["production"]})");
    Admin("POST", "/api/v1/projects/shop/flags", R"({"key":"checkout","variations":[false,true]})");
    Admin("POST", "/api/v1/projects/shop/flags", R"({"key":"banner","variations":["hello","bonjour"]})");
    Admin("PATCH", "/api/v1/projects/shop/environments/production/flags/checkout",
          R"({"on":true,"fallthrough":{"variation":0},"rules":[{"id":"fr","variation":1,"clauses":[{"contextKind":"user","attribute":"country","op":"in","values":["FR"]}]}]})");
    auto key = Http(server_->port(), "POST", "/api/v1/keys", R"({"kind":"server","project":"shop","environment":"production"})", Bearer(kAdminToken));
    sdk_key_ = rules::ParseJson(key.body)->Find("secret")->as_string();
    cache_ = e2e::TempDir("sdk-cache") + "/flags.json";
  }
  void Admin(const std::string& method, const std::string& path, const std::string& body) {
    auto r = Http(server_->port(), method, path, body, Bearer(kAdminToken));
    ASSERT_LT(r.status, 300) << method << " " << path << ": " << r.body;
  }
  Config MakeConfig() {
    Config c;
    c.base_url = "http://127.0.0.1:" + std::to_string(server_->port());
    c.sdk_key = sdk_key_;
    c.initial_retry_delay = 100ms;
    c.max_retry_delay = 500ms;
    c.read_timeout = 5s;
    c.cache_file = cache_;
    c.logger = [](LogLevel, std::string_view) {};
    return c;
  }

  // A client that reaches the server through `proxy`.
  Config ThroughProxy(const testing::TcpProxy& proxy, std::chrono::milliseconds read_timeout) {
    Config c = MakeConfig();
    c.base_url = "http://127.0.0.1:" + std::to_string(proxy.port());
    c.read_timeout = read_timeout;
    return c;
  }

  std::unique_ptr<ServerProcess> server_;
  std::string sdk_key_, cache_;
  rules::Context fr_ = rules::Context::Builder("user", "u1").Set("country", rules::Value("FR")).Build();
  rules::Context de_ = rules::Context::Builder("user", "u2").Set("country", rules::Value("DE")).Build();
};

TEST_F(SdkTest, InitializesAndEvaluatesWithDefaultsAndReasons) {
  Client client(MakeConfig());
  ASSERT_TRUE(client.WaitForInitialization(10s)) << client.GetStatus().last_error;
  EXPECT_TRUE(client.BoolVariation(fr_, "checkout", false));
  EXPECT_FALSE(client.BoolVariation(de_, "checkout", true));
  auto d = client.BoolVariationDetail(fr_, "checkout", false);
  EXPECT_EQ(d.variation_index, 1);
  EXPECT_EQ(d.reason.kind, rules::ReasonKind::kRuleMatch);
  // Off flag: its off variation.
  EXPECT_EQ(client.StringVariation(fr_, "banner", "x"), "hello");
  // Wrong type and unknown flag: the default with the reason.
  auto wrong = client.IntVariationDetail(fr_, "banner", 7);
  EXPECT_EQ(wrong.value, 7);
  EXPECT_EQ(wrong.reason.error_kind, rules::ErrorKind::kWrongType);
  auto missing = client.BoolVariationDetail(fr_, "nope", true);
  EXPECT_TRUE(missing.value);
  EXPECT_EQ(missing.reason.error_kind, rules::ErrorKind::kFlagNotFound);
  EXPECT_EQ(rules::ToJson(client.AllFlags(fr_)), R"({"banner":"hello","checkout":true})");
  Status s = client.GetStatus();
  EXPECT_EQ(s.state, DataSourceState::kValid);
  EXPECT_EQ(s.source, DataSource::kStream);
}

TEST_F(SdkTest, ChangeThroughTheAdminApiReachesTheSdkAndFiresListeners) {
  Client client(MakeConfig());
  ASSERT_TRUE(client.WaitForInitialization(10s));
  std::mutex mu;
  std::vector<std::string> flags_changed;
  std::vector<std::string> values;
  client.OnFlagChange([&](const std::string& key) {
    std::lock_guard<std::mutex> l(mu);
    flags_changed.push_back(key);
  });
  client.OnValueChange("checkout", de_, [&](const rules::Value& before, const rules::Value& now) {
    std::lock_guard<std::mutex> l(mu);
    values.push_back(rules::ToJson(before) + "->" + rules::ToJson(now));
  });
  Admin("PATCH", "/api/v1/projects/shop/environments/production/flags/checkout", R"({"fallthrough":{"variation":1}})");
  ASSERT_TRUE(Eventually([&] { return client.BoolVariation(de_, "checkout", false); }));
  ASSERT_TRUE(Eventually([&] {
    std::lock_guard<std::mutex> l(mu);
    return !values.empty();
  }));
  std::lock_guard<std::mutex> l(mu);
  EXPECT_EQ(values, std::vector<std::string>{"false->true"});
  EXPECT_EQ(flags_changed, std::vector<std::string>{"checkout"});
}

// Listeners used to run with the listener mutex held: one that removed a listener deadlocked.
TEST_F(SdkTest, AListenerMayRemoveItselfAndAddAnother) {
  Client client(MakeConfig());
  ASSERT_TRUE(client.WaitForInitialization(10s));
  std::atomic<int> first_calls{0}, second_calls{0};
  Client::ListenerId first = 0;
  first = client.OnFlagChange([&](const std::string&) {
    ++first_calls;
    client.RemoveListener(first);
    client.OnFlagChange([&](const std::string&) { ++second_calls; });
  });
  Admin("PATCH", "/api/v1/projects/shop/environments/production/flags/checkout", R"({"fallthrough":{"variation":1}})");
  ASSERT_TRUE(Eventually([&] { return first_calls.load() == 1; }));
  Admin("PATCH", "/api/v1/projects/shop/environments/production/flags/checkout", R"({"fallthrough":{"variation":0}})");
  ASSERT_TRUE(Eventually([&] { return second_calls.load() == 1; }));
  EXPECT_EQ(first_calls.load(), 1);  // removed: not called for the second change
  EXPECT_TRUE(client.GetStatus().initialized);
}

TEST_F(SdkTest, ServerKilledAndRestartedWhileEvaluatingKeepsServingAndResumes) {
  Config cfg = MakeConfig();
  int port = server_->port();
  Client client(cfg);
  ASSERT_TRUE(client.WaitForInitialization(10s));
  std::atomic<bool> stop{false};
  std::atomic<int64_t> wrong{0}, total{0};
  std::vector<std::thread> evaluators;
  // Joins the evaluators however the test ends (an ASSERT returns early).
  struct Joiner {
    std::atomic<bool>& stop;
    std::vector<std::thread>& threads;
    ~Joiner() {
      stop = true;
      for (auto& t : threads) {
        if (t.joinable()) t.join();
      }
    }
  } joiner{stop, evaluators};
  for (int t = 0; t < 2; ++t) {
    evaluators.emplace_back([&] {
      while (!stop) {
        if (!client.BoolVariation(fr_, "checkout", false)) ++wrong;  // true before and after
        ++total;
      }
    });
  }
  std::string dir = server_->data_dir();
  server_->keep_dir();
  server_->Kill(SIGKILL);
  ASSERT_TRUE(Eventually([&] { return client.GetStatus().state == DataSourceState::kInterrupted; }));
  EXPECT_TRUE(client.BoolVariation(fr_, "checkout", false));  // last known data
  server_ = std::make_unique<ServerProcess>(dir, std::vector<std::string>{"--listen", "127.0.0.1:" + std::to_string(port)});
  ASSERT_EQ(server_->port(), port) << server_->output();
  ASSERT_TRUE(Eventually([&] { return client.GetStatus().state == DataSourceState::kValid; }));
  Admin("PATCH", "/api/v1/projects/shop/environments/production/flags/banner", R"({"on":true,"fallthrough":{"variation":1}})");
  EXPECT_TRUE(Eventually([&] { return client.StringVariation(fr_, "banner", "") == "bonjour"; }));
  stop = true;
  for (auto& t : evaluators) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(total.load(), 1000);
}

// The server sends a heartbeat every second (e2e_util starts it with --heartbeat-seconds 1).
// Through a proxy that stops moving bytes, the connection stays open at both ends; only the
// read timeout can notice it is dead.
TEST_F(SdkTest, HalfOpenConnectionIsDetectedThroughTheHeartbeatTimeout) {
  testing::TcpProxy proxy(server_->port());
  ASSERT_GT(proxy.port(), 0);
  Client client(ThroughProxy(proxy, 3s));
  ASSERT_TRUE(client.WaitForInitialization(10s)) << client.GetStatus().last_error;
  ASSERT_EQ(proxy.connections(), 1);

  // Heartbeats keep an idle, healthy stream current: data_age falls back below a second
  // after having been above it.
  ASSERT_TRUE(Eventually([&] { return client.GetStatus().data_age >= 900ms; }, 5s));
  ASSERT_TRUE(Eventually([&] { return client.GetStatus().data_age < 900ms; }, 5s));
  EXPECT_EQ(client.GetStatus().state, DataSourceState::kValid);
  EXPECT_EQ(proxy.connections(), 1);

  proxy.Pause();
  auto paused_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(Eventually([&] { return client.GetStatus().state == DataSourceState::kInterrupted; }, 15s));
  auto detected_after = std::chrono::steady_clock::now() - paused_at;
  EXPECT_GE(detected_after, 2s);   // by the read timeout (3 s after the last heartbeat), not sooner
  EXPECT_LT(detected_after, 10s);
  Status s = client.GetStatus();
  EXPECT_NE(s.last_error.find("read timeout"), std::string::npos) << s.last_error;
  EXPECT_TRUE(client.BoolVariation(fr_, "checkout", false));  // last known data
  EXPECT_EQ(client.GetStatus().source, DataSource::kStream);

  // A change made while the link is dead arrives once it is back, through a new connection
  // that resumes from the last event id.
  Admin("PATCH", "/api/v1/projects/shop/environments/production/flags/checkout", R"({"fallthrough":{"variation":1}})");
  EXPECT_FALSE(client.BoolVariation(de_, "checkout", false));
  ASSERT_TRUE(Eventually([&] { return proxy.connections() >= 2; }));  // reconnect attempts, still held
  proxy.Cut();
  proxy.Resume();
  ASSERT_TRUE(Eventually([&] { return client.BoolVariation(de_, "checkout", false); }, 20s)) << client.GetStatus().last_error;
  ASSERT_TRUE(Eventually([&] { return client.GetStatus().state == DataSourceState::kValid; }));
  EXPECT_EQ(proxy.open(), 1);  // one connection at most
}

// A cut connection (EOF) is noticed at once, well before the read timeout, and the client
// reconnects.
TEST_F(SdkTest, CutConnectionReconnectsWithoutWaitingForTheReadTimeout) {
  testing::TcpProxy proxy(server_->port());
  ASSERT_GT(proxy.port(), 0);
  Client client(ThroughProxy(proxy, 30s));
  ASSERT_TRUE(client.WaitForInitialization(10s)) << client.GetStatus().last_error;
  int64_t sequence = client.GetStatus().sequence;
  proxy.Cut();
  ASSERT_TRUE(Eventually([&] { return proxy.connections() >= 2; }, 5s));
  ASSERT_TRUE(Eventually([&] { return client.GetStatus().state == DataSourceState::kValid; }, 5s));
  EXPECT_EQ(client.GetStatus().sequence, sequence);
  Admin("PATCH", "/api/v1/projects/shop/environments/production/flags/banner", R"({"on":true,"fallthrough":{"variation":1}})");
  EXPECT_TRUE(Eventually([&] { return client.StringVariation(fr_, "banner", "") == "bonjour"; }, 5s));
  EXPECT_GT(client.GetStatus().sequence, sequence);
}

TEST_F(SdkTest, CacheFileServesAColdStartWithTheServerDown) {
  Config cfg = MakeConfig();
  {
    Client first(cfg);
    ASSERT_TRUE(first.WaitForInitialization(10s));
    ASSERT_TRUE(Eventually([&] { return std::filesystem::exists(cache_); }));
  }
  server_->Kill(SIGKILL);
  Client cold(cfg);  // the server is down
  EXPECT_TRUE(cold.WaitForInitialization(500ms));
  Status s = cold.GetStatus();
  EXPECT_TRUE(s.initialized);
  EXPECT_EQ(s.source, DataSource::kCache);
  EXPECT_TRUE(cold.BoolVariation(fr_, "checkout", false));
}

TEST_F(SdkTest, RefusedKeyStopsWithAClearStatusAndServesDefaults) {
  Config cfg = MakeConfig();
  cfg.sdk_key = "gfs_not_a_key";
  cfg.cache_file.clear();
  Client client(cfg);
  EXPECT_FALSE(client.WaitForInitialization(5s));
  Status s = client.GetStatus();
  EXPECT_EQ(s.state, DataSourceState::kOff);
  EXPECT_NE(s.last_error.find("401"), std::string::npos) << s.last_error;
  auto d = client.BoolVariationDetail(fr_, "checkout", true);
  EXPECT_TRUE(d.value);
  EXPECT_EQ(d.reason.error_kind, rules::ErrorKind::kClientNotReady);
}

TEST_F(SdkTest, ExposuresAndTrackEventsReachTheServer) {
  Config cfg = MakeConfig();
  cfg.flush_interval = 60s;  // only the explicit Flush() sends
  Client client(cfg);
  ASSERT_TRUE(client.WaitForInitialization(10s));
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(client.BoolVariation(fr_, "checkout", false));
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(client.BoolVariation(de_, "checkout", true));
  client.BoolVariation(fr_, "checkout-missing", true);  // not found: not counted
  std::thread other([&] { EXPECT_TRUE(client.BoolVariation(fr_, "checkout", false)); });  // another thread counts too
  other.join();
  client.Track("purchase", fr_, 9.5);
  client.Flush();
  auto counts = Http(server_->port(), "GET", "/api/v1/projects/shop/environments/production/flags/checkout/events", "", Bearer(kAdminToken));
  ASSERT_EQ(counts.status, 200) << counts.body;
  auto json = *rules::ParseJson(counts.body);
  std::map<int, int64_t> by_variation;
  for (const rules::Value& c : json.Find("items")->as_array()) {
    by_variation[static_cast<int>(c.Find("variation")->as_number())] += static_cast<int64_t>(c.Find("count")->as_number());
  }
  EXPECT_EQ(by_variation[1], 6);
  EXPECT_EQ(by_variation[0], 3);
  EXPECT_EQ(client.GetStatus().events_dropped, 0);
  // Nothing is sent twice: a second flush adds nothing.
  client.Flush();
  auto again = *rules::ParseJson(Http(server_->port(), "GET", "/api/v1/projects/shop/environments/production/flags/checkout/events", "", Bearer(kAdminToken)).body);
  int64_t total = 0;
  for (const rules::Value& c : again.Find("items")->as_array()) total += static_cast<int64_t>(c.Find("count")->as_number());
  EXPECT_EQ(total, 9);
}

TEST_F(SdkTest, CloseFlushesWhatIsPending) {
  Config cfg = MakeConfig();
  cfg.flush_interval = 600s;  // only Close() can send them
  {
    Client client(cfg);
    ASSERT_TRUE(client.WaitForInitialization(10s));
    for (int i = 0; i < 4; ++i) EXPECT_TRUE(client.BoolVariation(fr_, "checkout", false));
    client.Close();
    EXPECT_EQ(client.GetStatus().state, DataSourceState::kOff);
    EXPECT_TRUE(client.BoolVariation(fr_, "checkout", false));  // still serves after Close
  }
  auto counts = Http(server_->port(), "GET", "/api/v1/projects/shop/environments/production/flags/checkout/events", "", Bearer(kAdminToken));
  ASSERT_EQ(counts.status, 200) << counts.body;
  auto json = rules::ParseJson(counts.body);
  ASSERT_TRUE(json.ok() && json->Find("items") != nullptr) << counts.body;
  int64_t total = 0;
  for (const rules::Value& c : json->Find("items")->as_array()) total += static_cast<int64_t>(c.Find("count")->as_number());
  EXPECT_EQ(total, 4);
}

TEST_F(SdkTest, EventsAreDroppedAndCountedWhenTheServerIsUnreachable) {
  Config cfg = MakeConfig();
  cfg.flush_interval = 60s;
  cfg.event_capacity = 2;
  Client client(cfg);
  ASSERT_TRUE(client.WaitForInitialization(10s));
  server_->Kill(SIGKILL);
  for (int i = 0; i < 3; ++i) client.Track("click", fr_);  // the third is over capacity
  EXPECT_EQ(client.GetStatus().events_dropped, 1);
  auto t0 = std::chrono::steady_clock::now();
  client.Flush();  // cannot be delivered: dropped and counted, bounded in time
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 15s);
  EXPECT_EQ(client.GetStatus().events_dropped, 3);
}

TEST_F(SdkTest, OfflineModeEvaluatesAFlagFile) {
  Config cfg;
  cfg.offline = true;
  cfg.flag_file = GONFALON_DEMO_FLAGS;
  Client client(cfg);
  EXPECT_TRUE(client.WaitForInitialization(1s));
  EXPECT_EQ(client.GetStatus().source, DataSource::kFile);
  auto alice = rules::Context::Builder("user", "alice").Build();
  EXPECT_TRUE(client.BoolVariation(alice, "new-checkout", false));  // a beta tester
  EXPECT_EQ(client.IntVariation(alice, "max-upload-mb", 0), 10);
}

}  // namespace
}  // namespace gonfalon::sdk

namespace gonfalon::sdk {
namespace {

// The SDK applies `changes` incrementally (Snapshot::Apply). After every step of a random
// sequence of change sets through the real server (flag targeting with rules, segment matches
// and prerequisites; segment edits used by many flags; archives), once the SDK has the server's
// sequence, its answers equal the server's for every flag and context, and its flag listener
// has heard of every flag whose answer changed.
TEST_F(SdkTest, RandomChangeSetsLeaveTheSdkAnsweringAsTheServerDoes) {
  constexpr int kFlags = 8;
  constexpr int kSegments = 3;
  std::mt19937 rng(7);
  auto pick = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
  auto flag_key = [](int i) { return "p" + std::to_string(i); };
  for (int i = 0; i < kFlags; ++i) {
    Admin("POST", "/api/v1/projects/shop/flags", R"({"key":")" + flag_key(i) + R"(","variations":["a","b","c"]})");
  }
  std::string segs = R"({"items":[)";
  for (int s = 0; s < kSegments; ++s) {
    segs += (s ? "," : "") + std::string(R"({"kind":"segment","key":"seg)") + std::to_string(s) + R"(","data":{"included":["u1"]}})";
  }
  Admin("POST", "/api/v1/projects/shop/environments/production/changesets", segs + "]}");
  Client client(MakeConfig());
  ASSERT_TRUE(client.WaitForInitialization(10s));
  std::mutex mu;
  std::set<std::string> heard;
  client.OnFlagChange([&](const std::string& key) {
    std::lock_guard<std::mutex> l(mu);
    heard.insert(key);
  });
  std::vector<std::string> contexts;  // as JSON, for the server; ContextFromJson for the SDK
  for (int u = 0; u < 6; ++u) {
    contexts.push_back(R"({"kind":"user","key":"u)" + std::to_string(u) + R"(","country":")" + (u % 2 ? "FR" : "DE") + "\"}");
  }
  auto sdk_answers = [&](const std::string& json) {
    rules::Context ctx = rules::ContextFromJson(*rules::ParseJson(json));
    std::map<std::string, std::string> out;
    for (int i = 0; i < kFlags; ++i) {
      Detail<rules::Value> d = client.JsonVariationDetail(ctx, flag_key(i), rules::Value());
      rules::Value v(rules::Object{{"value", d.value}});
      if (d.variation_index >= 0) v.Set("variationIndex", rules::Value(d.variation_index));
      v.Set("reason", rules::ReasonToValue(d.reason));
      out[flag_key(i)] = rules::ToJson(v);
    }
    return out;
  };
  auto server_answers = [&](const std::string& ctx, double& sequence) {
    auto r = Http(server_->port(), "POST", "/sdk/v1/evaluate", R"({"context":)" + ctx + "}", Bearer(sdk_key_));
    rules::Value body = *rules::ParseJson(r.body);
    sequence = body.Find("sequence")->as_number();
    std::map<std::string, std::string> out;
    for (const auto& [key, detail] : body.Find("flags")->as_object()) {
      if (key.rfind("p", 0) == 0) out[key] = rules::ToJson(detail);
    }
    return out;
  };
  std::map<std::string, std::map<std::string, std::string>> before;  // context -> answers
  for (int step = 0; step < 25; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    std::string items = R"({"items":[)";
    int n = 1 + pick(3);
    std::set<std::string> named;
    for (int k = 0; k < n; ++k) {
      std::string item;
      if (pick(4) == 0) {
        int s = pick(kSegments);
        if (!named.insert("seg" + std::to_string(s)).second) continue;
        item = R"({"kind":"segment","key":"seg)" + std::to_string(s) + R"(","data":{"included":["u)" +
               std::to_string(pick(6)) + R"(","u)" + std::to_string(pick(6)) + R"("]}})";
      } else {
        int f = pick(kFlags);
        if (!named.insert(flag_key(f)).second) continue;
        std::string rules = R"([{"clauses":[{"contextKind":"user","attribute":"key","op":"segmentMatch","values":["seg)" +
                            std::to_string(pick(kSegments)) + R"("]}],"variation":1},)" +
                            R"({"clauses":[{"contextKind":"user","attribute":"country","op":"in","values":["FR"]}],"variation":2}])";
        std::string prereq = f > 0 && pick(2) == 0
                                 ? R"(,"prerequisites":[{"key":")" + flag_key(pick(f)) + R"(","variation":)" + std::to_string(pick(3)) + "}]"
                                 : "";
        item = R"({"kind":"flag","key":")" + flag_key(f) + R"(","data":{"on":)" + (pick(5) ? "true" : "false") +
               R"(,"offVariation":0,"fallthrough":{"variation":)" + std::to_string(pick(3)) + R"(},"rules":)" + rules +
               prereq + "}}";
      }
      items += (items.back() == '[' ? "" : ",") + item;
    }
    Admin("POST", "/api/v1/projects/shop/environments/production/changesets", items + "]}");
    double sequence = 0;
    server_answers(contexts[0], sequence);
    ASSERT_TRUE(Eventually([&] { return client.GetStatus().sequence == static_cast<int64_t>(sequence); }));
    for (const std::string& ctx : contexts) {
      double seq = 0;
      std::map<std::string, std::string> server = server_answers(ctx, seq);
      ASSERT_EQ(seq, sequence);
      std::map<std::string, std::string> sdk = sdk_answers(ctx);
      ASSERT_EQ(sdk, server);
      const std::string& who = ctx;
      if (before.count(who)) {
        for (const auto& [key, answer] : sdk) {
          if (before[who][key] == answer) continue;
          // Listeners run right after the data is published: wait for this one, with a deadline.
          EXPECT_TRUE(Eventually([&, k = key] {
            std::lock_guard<std::mutex> l(mu);
            return heard.count(k) > 0;
          }, 2s)) << key << " changed unheard";
        }
      }
      before[who] = sdk;
    }
    std::lock_guard<std::mutex> l(mu);
    heard.clear();
  }
}

}  // namespace
}  // namespace gonfalon::sdk
