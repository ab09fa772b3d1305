// The hub alone: a real store in a temporary directory, streams replaced by recording sinks.
#include "hub.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <mutex>
#include <thread>

#include "gonfalon/rules/str_cat.h"
#include "gonfalon/rules/value.h"
#include "status_testing.h"
#include "wait_for.h"

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
  // The SSE event names sent so far ("put", "changes", ...), with their ids; a chunk may carry
  // several events (a fan-out round gives a stream everything it lacks in one buffer).
  std::vector<std::string> Events() const {
    std::vector<std::string> out;
    for (const std::string& c : chunks()) {
      for (size_t id = c.find("id: "); id != std::string::npos; id = c.find("id: ", id + 1)) {
        if (id > 0 && c[id - 1] != '\n') continue;  // "id: " inside data
        size_t ev = c.find("event: ", id);
        if (ev == std::string::npos) break;
        out.push_back(c.substr(ev + 7, c.find('\n', ev) - ev - 7) + "@" + c.substr(id + 4, c.find('\n', id) - id - 4));
      }
    }
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> chunks_;
  bool closed_ = false;
};

class HubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("gonfalon-hub-test-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    auto store = storage::Store::Open({.path = dir_.string(), .sync = false, .min_free_bytes = 0});
    ASSERT_OK(store);
    store_ = std::move(*store);
    hubs_ = std::make_unique<Hubs>(*store_, metrics_, FanOutOptions());
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

  virtual Hubs::FanOutOptions FanOutOptions() const { return {}; }

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
  ASSERT_TRUE(WaitFor([&] { return sink->Events().size() == 3; }));
  EXPECT_EQ(sink->Events(), (std::vector<std::string>{StrCat("put@", start), StrCat("changes@", a), StrCat("changes@", b)}));
  EXPECT_EQ(Hub().sequence(), b);
  const rules::Snapshot* snap = CurrentSnapshot(Hub());
  EXPECT_EQ(snap->sequence(), b);
}

TEST_F(HubTest, APutIsSharedWithinASequenceAndReleasedWhenTheNextIsPublished) {
  EnvironmentHub::PutEvent first = Hub().Put();
  ASSERT_NE(first.chunk, nullptr);
  EXPECT_EQ(first.sequence, Hub().sequence());
  EXPECT_EQ(Hub().Put().chunk, first.chunk);  // the same buffer, not a second copy
  EXPECT_NE(first.payload().find(R"("checkout")"), std::string_view::npos);
  std::weak_ptr<const std::string> held = first.chunk;
  first = {};
  EXPECT_FALSE(held.expired());  // kept for whoever asks next at this sequence
  int64_t next = Toggle("checkout", true);
  // Nobody can be sent it any more: the hub let it go (freed on the releaser thread, not by
  // the publisher while the writer waits).
  EXPECT_TRUE(WaitFor([&] { return held.expired(); }));
  EnvironmentHub::PutEvent again = Hub().Put();
  EXPECT_EQ(again.sequence, next);
  EXPECT_NE(again.payload().find(R"("on":true)"), std::string_view::npos);
}

TEST_F(HubTest, APutNobodyAsksForIsReleasedAndBuiltAgainOnRequest) {
  EnvironmentHub::PutEvent first = Hub().Put();
  ASSERT_NE(first.chunk, nullptr);
  std::weak_ptr<const std::string> held = first.chunk;
  std::string payload(first.payload());
  first = {};
  hubs_->ReleaseIdlePuts(std::chrono::hours(1));  // asked for just now: kept
  EXPECT_FALSE(held.expired());
  EnvironmentHub::PutEvent sending = Hub().Put();  // a stream still writing it keeps it alive
  hubs_->ReleaseIdlePuts(std::chrono::seconds(0));
  EXPECT_FALSE(held.expired());
  sending = {};
  EXPECT_TRUE(WaitFor([&] { return held.expired(); }));  // freed by the releaser thread
  EnvironmentHub::PutEvent again = Hub().Put();
  ASSERT_NE(again.chunk, nullptr);
  EXPECT_EQ(again.sequence, Hub().sequence());
  EXPECT_EQ(again.payload(), payload);
}

// The releaser frees a retired put only in a lull of the writes (or after a bound), and only
// the newest waits. Pinned durations make the "still held" checks deterministic.
class LullHubTest : public HubTest {
 protected:
  Hubs::FanOutOptions FanOutOptions() const override {
    return {.release_lull = std::chrono::hours(1), .release_max_delay = std::chrono::hours(1)};
  }
};

TEST_F(LullHubTest, ARetiredPutWaitsForALullAndOnlyTheNewestWaits) {
  std::weak_ptr<const std::string> first = Hub().Put().chunk;
  ASSERT_FALSE(first.expired());
  Toggle("checkout", true);  // retires the first put; no lull within the hour
  std::weak_ptr<const std::string> second = Hub().Put().chunk;
  ASSERT_FALSE(second.expired());
  EXPECT_FALSE(first.expired());  // held by the releaser: the only owner left
  Toggle("checkout", false);      // retires the second: the first need not wait any more
  EXPECT_TRUE(WaitFor([&] { return first.expired(); }));
  EXPECT_FALSE(second.expired());
  hubs_.reset();  // stopping frees what still waits
  EXPECT_TRUE(second.expired());
}

class NoLullHubTest : public HubTest {
 protected:
  Hubs::FanOutOptions FanOutOptions() const override {
    return {.release_lull = std::chrono::milliseconds(0), .release_max_delay = std::chrono::hours(1)};
  }
};

TEST_F(NoLullHubTest, ARetiredPutIsFreedOnceNoChangeSetIsPublished) {
  std::weak_ptr<const std::string> held = Hub().Put().chunk;
  Toggle("checkout", true);
  EXPECT_TRUE(WaitFor([&] { return held.expired(); }));
}

class BoundedLullHubTest : public HubTest {
 protected:
  Hubs::FanOutOptions FanOutOptions() const override {
    return {.release_lull = std::chrono::hours(1), .release_max_delay = std::chrono::milliseconds(50)};
  }
};

TEST_F(BoundedLullHubTest, ARetiredPutIsFreedAfterTheMaximumDelayWithoutALull) {
  std::weak_ptr<const std::string> held = Hub().Put().chunk;
  Toggle("checkout", true);
  EXPECT_TRUE(WaitFor([&] { return held.expired(); }));
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
  ASSERT_TRUE(WaitFor([&] { return server->Events().size() == 1; }));
  EXPECT_TRUE(client->Events().empty());
  Toggle("banner", true);
  ASSERT_TRUE(WaitFor([&] { return client->Events().size() == 1; }));
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
  ASSERT_TRUE(WaitFor([&] { return b->Events().size() == 2; }));
  EXPECT_EQ(a->chunks().size(), sent);
}

// While an admin write is in progress (Api::HandleBlocking), what is published waits to be
// sent to the streams until it is answered: read-your-writes as before, and the event once
// the scope ends.
TEST_F(HubTest, StreamsAreSentAWriteAfterItsScopeEnds) {
  auto sink = std::make_shared<RecordingSink>();
  hubs_->AddSdkStream(Hub(), sink, std::nullopt);
  ASSERT_TRUE(WaitFor([&] { return sink->Events().size() == 1; }));
  uint64_t deferred = metrics_.stream_fan_outs_deferred.load();
  int64_t seq;
  {
    Hubs::WriteScope scope(*hubs_);
    seq = Toggle("checkout", true);
    EXPECT_EQ(Hub().sequence(), seq);
    EXPECT_EQ(CurrentSnapshot(Hub())->sequence(), seq);
    EXPECT_EQ(metrics_.stream_fan_outs_deferred.load(), deferred + 1);
  }
  ASSERT_TRUE(WaitFor([&] { return sink->Events().size() == 2; }));
  EXPECT_EQ(sink->Events().back(), StrCat("changes@", seq));
  // With no write in progress the sender is woken at once.
  int64_t next = Toggle("checkout", false);
  ASSERT_TRUE(WaitFor([&] { return sink->Events().size() == 3; }));
  EXPECT_EQ(sink->Events().back(), StrCat("changes@", next));
  EXPECT_EQ(metrics_.stream_fan_outs_deferred.load(), deferred + 1);
}

// Writers that keep overlapping still get their events sent: once the oldest has waited
// kMaxSendDelay, the next answer lets the fan-out go although a write is still in progress.
TEST_F(HubTest, OverlappingWritesHoldTheStreamsBackOnlySoLong) {
  auto sink = std::make_shared<RecordingSink>();
  hubs_->AddSdkStream(Hub(), sink, std::nullopt);
  ASSERT_TRUE(WaitFor([&] { return sink->Events().size() == 1; }));
  Hubs::WriteScope long_write(*hubs_);
  int64_t seq;
  {
    Hubs::WriteScope short_write(*hubs_);
    seq = Toggle("banner", true);
  }
  ASSERT_TRUE(WaitFor([&] {
    { Hubs::WriteScope another(*hubs_); }  // one more write answered
    auto events = sink->Events();
    return !events.empty() && events.back() == StrCat("changes@", seq);
  })) << ::testing::PrintToString(sink->Events());
}

// A small budget, so that events wait in the hub while streams join.
class BusyHubTest : public HubTest {
 protected:
  Hubs::FanOutOptions FanOutOptions() const override { return {.busy_rate = 0, .busy_sends_per_second = 400}; }
};

// Concurrent writers, and streams joining at random moments (new, or resuming from a recent
// sequence) while events wait to be sent: every stream gets each change set after its starting
// point exactly once, in order, however the publisher and the sender group them.
TEST_F(BusyHubTest, StreamsJoiningDuringABurstGetEverySequenceOnceInOrder) {
  int64_t first = Hub().sequence();
  std::vector<std::thread> writers;
  std::atomic<bool> done{false};
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < 60; ++i) {
        storage::ChangeSet cs{"shop", "production", {}, {"test"}, ""};
        cs.items.push_back({storage::ItemKind::kFlag, w % 2 ? "checkout" : "banner", std::nullopt,
                            *rules::ParseJson(StrCat(R"({"on":true,"fallthrough":{"variation":1},"targets":[{"values":["w)",
                                                     w, "-", i, R"("],"variation":0}]})")),
                            false});
        if (w < 2) {
          EXPECT_OK(store_->Apply(cs));  // published by the publisher thread
          continue;
        }
        // Admin writes (their events wait for their answers) read their writes.
        Hubs::WriteScope scope(*hubs_);
        absl::StatusOr<storage::AppliedChangeSet> applied = store_->Apply(cs);
        EXPECT_OK(applied);
        hubs_->Drain();
        if (applied.ok()) {
          EXPECT_GE(Hub().sequence(), applied->sequence);
        }
      }
    });
  }
  struct Joined {
    std::shared_ptr<RecordingSink> sink;
    std::optional<int64_t> from;
  };
  std::vector<Joined> streams;
  for (int i = 0; i < 40; ++i) {
    Joined j{std::make_shared<RecordingSink>(), std::nullopt};
    int64_t now = Hub().sequence();
    if (i % 2 == 1 && now - 3 >= first) j.from = now - 3;
    hubs_->AddSdkStream(Hub(), j.sink, j.from);
    streams.push_back(std::move(j));
    std::this_thread::sleep_for(1ms);  // spreading the joins over the burst
  }
  for (auto& t : writers) t.join();
  hubs_->Drain();
  int64_t last = Hub().sequence();
  ASSERT_EQ(last, first + 240);
  for (size_t s = 0; s < streams.size(); ++s) {
    SCOPED_TRACE(StrCat("stream ", s));
    const Joined& j = streams[s];
    ASSERT_TRUE(WaitFor([&] {
      auto ev = j.sink->Events();
      return !ev.empty() && ev.back() == StrCat(ev.back().rfind("put@", 0) == 0 ? "put@" : "changes@", last);
    })) << ::testing::PrintToString(j.sink->Events());
    std::vector<std::string> events = j.sink->Events();
    int64_t expect;
    size_t i = 0;
    if (events[0].rfind("put@", 0) == 0) {
      expect = std::stoll(events[0].substr(4)) + 1;
      i = 1;
    } else {
      ASSERT_TRUE(j.from.has_value()) << "a new stream starts with a put";
      expect = *j.from + 1;
    }
    for (; i < events.size(); ++i) ASSERT_EQ(events[i], StrCat("changes@", expect++));
    EXPECT_EQ(expect, last + 1);
  }
  // The burst was grouped: fewer rounds than change sets times streams would need.
  EXPECT_LT(metrics_.stream_fan_outs.load(), 240u);
}

}  // namespace
}  // namespace gonfalon::server
