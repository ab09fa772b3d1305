// The hub alone: a real store in a temporary directory, streams replaced by recording sinks.
#include "hub.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <mutex>
#include <thread>

#include "gonfalon/rules/str_cat.h"
#include "gonfalon/rules/value.h"
#include "status_testing.h"

namespace gonfalon::server {
namespace {

using namespace std::chrono_literals;

// Records what a stream would send: SSE chunks, and whether it was closed.
class RecordingSink : public StreamSink {
 public:
  void Send(std::shared_ptr<const std::string> chunk) override {
    std::lock_guard<std::mutex> l(mu_);
    chunks_.push_back(*chunk);
  }
  void Close(std::shared_ptr<const std::string> last) override {
    std::lock_guard<std::mutex> l(mu_);
    if (last) chunks_.push_back(*last);
    closed_ = true;
  }
  std::vector<std::string> chunks() const {
    std::lock_guard<std::mutex> l(mu_);
    return chunks_;
  }
  bool closed() const {
    std::lock_guard<std::mutex> l(mu_);
    return closed_;
  }
  // The SSE event names sent so far ("put", "changes", ...), with their ids.
  std::vector<std::string> Events() const {
    std::vector<std::string> out;
    for (const std::string& c : chunks()) {
      size_t id = c.find("id: ");
      size_t ev = c.find("event: ");
      if (id == std::string::npos || ev == std::string::npos) continue;
      out.push_back(c.substr(ev + 7, c.find('\n', ev) - ev - 7) + "@" + c.substr(id + 4, c.find('\n', id) - id - 4));
    }
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> chunks_;
  bool closed_ = false;
};

template <typename Pred>
bool Eventually(Pred pred) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);  // polling a condition with a deadline
  }
  return pred();
}

class HubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("gonfalon-hub-test-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    auto store = storage::Store::Open({.path = dir_.string(), .sync = false, .min_free_bytes = 0});
    ASSERT_OK(store);
    store_ = std::move(*store);
    hubs_ = std::make_unique<Hubs>(*store_, metrics_);
    store_->SetChangeListener([this](const storage::AppliedChangeSet& a) { hubs_->Changed(a); });
    storage::Actor actor{"test"};
    ASSERT_OK(store_->CreateProject({.key = "shop"}, actor));
    ASSERT_OK(store_->CreateEnvironment("shop", {.key = "production"}, actor));
    for (const char* key : {"checkout", "banner"}) {
      storage::FlagMeta m;
      m.key = key;
      m.variations = {rules::Value(false), rules::Value(true)};
      m.client_side_availability.using_environment_id = std::string(key) == "banner";
      ASSERT_OK(store_->CreateFlag("shop", m, actor, ""));
    }
  }
  void TearDown() override {
    hubs_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  int64_t Toggle(const char* flag, bool on) {
    storage::ChangeSet cs{"shop", "production", {}, {"test"}, ""};
    cs.items.push_back({storage::ItemKind::kFlag, flag, std::nullopt,
                        *rules::ParseJson(StrCat(R"({"on":)", on ? "true" : "false", R"(,"fallthrough":{"variation":1}})")), false});
    auto applied = store_->Apply(cs);
    EXPECT_OK(applied);
    hubs_->Drain();
    return applied.ok() ? applied->sequence : -1;
  }
  EnvironmentHub& Hub() { return **hubs_->Get("shop", "production"); }

  std::filesystem::path dir_;
  Metrics metrics_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<Hubs> hubs_;
};

TEST_F(HubTest, ANewStreamGetsAPutThenOneChangesEventPerChangeSet) {
  int64_t start = Hub().sequence();
  auto sink = std::make_shared<RecordingSink>();
  hubs_->AddSdkStream(Hub(), sink, std::nullopt);
  int64_t a = Toggle("checkout", true);
  int64_t b = Toggle("checkout", false);
  ASSERT_TRUE(Eventually([&] { return sink->Events().size() == 3; }));
  EXPECT_EQ(sink->Events(), (std::vector<std::string>{StrCat("put@", start), StrCat("changes@", a), StrCat("changes@", b)}));
  EXPECT_EQ(Hub().sequence(), b);
  const rules::Snapshot* snap = CurrentSnapshot(Hub());
  EXPECT_EQ(snap->sequence(), b);
}

TEST_F(HubTest, AResumedStreamGetsExactlyWhatItMissed) {
  int64_t a = Toggle("checkout", true);
  int64_t b = Toggle("checkout", false);
  int64_t c = Toggle("banner", true);
  auto sink = std::make_shared<RecordingSink>();
  hubs_->AddSdkStream(Hub(), sink, a);
  EXPECT_EQ(sink->Events(), (std::vector<std::string>{StrCat("changes@", b), StrCat("changes@", c)}));
  auto current = std::make_shared<RecordingSink>();
  hubs_->AddSdkStream(Hub(), current, c);
  EXPECT_TRUE(current->Events().empty());
}

TEST_F(HubTest, ClientSideOfrepStreamsHearOnlyOfFlagsTheyCanSee) {
  Hub();
  auto client = std::make_shared<RecordingSink>();
  auto server = std::make_shared<RecordingSink>();
  hubs_->AddOfrepStream(Hub(), client, "", /*client_side=*/true);
  hubs_->AddOfrepStream(Hub(), server, "", /*client_side=*/false);
  Toggle("checkout", true);  // server-side only
  ASSERT_TRUE(Eventually([&] { return server->Events().size() == 1; }));
  EXPECT_TRUE(client->Events().empty());
  Toggle("banner", true);
  ASSERT_TRUE(Eventually([&] { return client->Events().size() == 1; }));
  EXPECT_EQ(server->Events().size(), 2u);
}

TEST_F(HubTest, StreamsOfARevokedKeyAreClosedAndOthersStay) {
  storage::ApiKey spec;
  spec.kind = storage::KeyKind::kServer;
  spec.project = "shop";
  spec.environment = "production";
  auto revoked = store_->CreateApiKey(spec);
  auto kept = store_->CreateApiKey(spec);
  ASSERT_OK(revoked);
  ASSERT_OK(kept);
  auto a = std::make_shared<RecordingSink>();
  auto b = std::make_shared<RecordingSink>();
  hubs_->AddSdkStream(Hub(), a, std::nullopt, revoked->key.id);
  hubs_->AddSdkStream(Hub(), b, std::nullopt, kept->key.id);
  ASSERT_OK(store_->RevokeApiKey(revoked->key.id));
  hubs_->CloseRevokedStreams();
  EXPECT_TRUE(a->closed());
  EXPECT_FALSE(b->closed());
  EXPECT_NE(a->chunks().back().find("credentials revoked"), std::string::npos);
  // A closed stream gets nothing more.
  size_t sent = a->chunks().size();
  Toggle("checkout", true);
  ASSERT_TRUE(Eventually([&] { return b->Events().size() == 2; }));
  EXPECT_EQ(a->chunks().size(), sent);
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

}  // namespace
}  // namespace gonfalon::server
