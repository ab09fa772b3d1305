// The SDK's stream client against a scripted server that sends what the real one never
// would: an event that does not decode is rejected whole (the data in hand keeps serving), the
// stream is reconnected with Last-Event-ID, stale and unknown events are ignored.
#include <gtest/gtest.h>

#include <mutex>
#include <thread>

#include "fake_stream_server.h"
#include "gonfalon/sdk/client.h"

namespace gonfalon::sdk {
namespace {

using namespace std::chrono_literals;
using testing::FakeStreamServer;
using testing::SseChunk;
using testing::SseHead;

using e2e::Eventually;

// A client of `server`, retrying fast, sending no events, logging to `logger`.
Config ToFake(const FakeStreamServer& server, std::function<void(LogLevel, std::string_view)> logger) {
  Config cfg;
  cfg.base_url = "http://127.0.0.1:" + std::to_string(server.port());
  cfg.sdk_key = "gfs_test";
  cfg.initial_retry_delay = 50ms;
  cfg.max_retry_delay = 100ms;
  cfg.send_events = false;
  cfg.logger = std::move(logger);
  return cfg;
}

std::string Flag(int version, int fallthrough) {
  return R"({"key":"checkout","version":)" + std::to_string(version) +
         R"(,"on":true,"salt":"s","variations":[false,true],"offVariation":0,"fallthrough":{"variation":)" +
         std::to_string(fallthrough) + "}}";
}

TEST(SdkStreamEventsTest, BadEventIsRejectedWholeAndTheStreamResumes) {
  FakeStreamServer server([](int n, const std::string&) {
    if (n == 0) {
      return SseHead() + SseChunk("5", "put", R"({"sequence":5,"flags":{"checkout":)" + Flag(3, 1) + R"(},"segments":{}})") +
             // Two items: the first is fine, the second does not decode; neither may apply.
             SseChunk("6", "changes", R"({"sequence":6,"items":[{"kind":"segment","key":"beta","version":1,"data":{"key":"beta","version":1,"included":["u"]}},)"
                                      R"({"kind":"flag","key":"checkout","version":4,"data":{"key":"checkout","on":"yes"}}]})");
    }
    return SseHead() + SseChunk("4", "changes", R"({"sequence":4,"items":[{"kind":"flag","key":"checkout","version":9,"data":)" + Flag(9, 1) + "}]}") +
           SseChunk("6", "ping", "{}") +
           SseChunk("6", "changes", R"({"sequence":6,"items":[{"kind":"flag","key":"checkout","version":4,"data":)" + Flag(4, 0) + "}]}");
  });
  ASSERT_GT(server.port(), 0);
  std::mutex mu;
  std::vector<std::string> logs;
  Client client(ToFake(server, [&](LogLevel, std::string_view line) {
    std::lock_guard<std::mutex> l(mu);
    logs.emplace_back(line);
  }));
  auto user = rules::Context::Builder("user", "u").Build();
  ASSERT_TRUE(client.WaitForInitialization(5s));
  ASSERT_TRUE(Eventually([&] { return server.connections() >= 2; }));
  // The second connection resumed from the last good event.
  std::string second = server.requests().at(1);
  EXPECT_NE(second.find("Last-Event-ID: 5\r\n"), std::string::npos) << second;
  // On it: the stale sequence 4 and the unknown event are ignored, sequence 6 applies.
  ASSERT_TRUE(Eventually([&] { return client.GetStatus().sequence == 6; }));
  EXPECT_FALSE(client.BoolVariation(user, "checkout", true));
  auto detail = client.BoolVariationDetail(user, "checkout", true);
  EXPECT_EQ(detail.reason.kind, rules::ReasonKind::kFallthrough);
  EXPECT_EQ(server.connections(), 2);
  std::lock_guard<std::mutex> l(mu);
  bool reported = false;
  for (const std::string& line : logs) {
    if (line.find("bad changes event: items[1].data.on: expected a boolean, got string (flag \"checkout\")") != std::string::npos) reported = true;
  }
  EXPECT_TRUE(reported);
}

TEST(SdkStreamEventsTest, BadEventKeepsTheDataInHandAndSaysWhy) {
  FakeStreamServer server([](int n, const std::string&) {
    // Every connection brings a change that does not decode (the first one the data too).
    std::string bad = SseChunk("6", "changes", R"({"sequence":6,"items":[{"kind":"flag","key":"checkout","version":4,"data":[]}]})");
    if (n == 0) return SseHead() + SseChunk("5", "put", R"({"sequence":5,"flags":{"checkout":)" + Flag(3, 1) + R"(},"segments":{}})") + bad;
    return SseHead() + bad;
  });
  Client client(ToFake(server, [](LogLevel, std::string_view) {}));
  auto user = rules::Context::Builder("user", "u").Build();
  ASSERT_TRUE(client.WaitForInitialization(5s));
  // Each connection is dropped by the client for the bad change, and made again.
  ASSERT_TRUE(Eventually([&] { return server.connections() >= 3; }));
  Status s = client.GetStatus();
  EXPECT_EQ(s.sequence, 5);
  EXPECT_NE(s.last_error.find("bad changes event: items[0].data: expected an object"), std::string::npos) << s.last_error;
  EXPECT_TRUE(client.BoolVariation(user, "checkout", false));
}

}  // namespace
}  // namespace gonfalon::sdk
