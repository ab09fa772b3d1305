// The SDK's event sender against a scripted server that answers every events post with 503:
// each batch is retried once with the same id, and once a retry has failed too, the rest of
// the interval's batches are dropped and counted without a post (and a second) each.
#include <gtest/gtest.h>

#include <string>

#include "fake_stream_server.h"
#include "gonfalon/sdk/client.h"

namespace gonfalon::sdk {
namespace {

using namespace std::chrono_literals;
using testing::FakeStreamServer;
using testing::SseChunk;
using testing::SseHead;

int CountPosts(const std::vector<std::string>& heads) {
  int n = 0;
  for (const std::string& h : heads) {
    if (h.rfind("POST /sdk/v1/events", 0) == 0) ++n;
  }
  return n;
}

TEST(SdkEventSenderTest, AServerThatStaysDownCostsOneRetryPerIntervalNotOnePerBatch) {
  FakeStreamServer server([](int, const std::string& head) -> std::string {
    if (head.rfind("POST ", 0) == 0) return "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
    return SseHead() + SseChunk("1", "put", R"({"sequence":1,"flags":{},"segments":{}})");
  });
  ASSERT_GT(server.port(), 0);
  Config cfg;
  cfg.base_url = "http://127.0.0.1:" + std::to_string(server.port());
  cfg.sdk_key = "gfs_test";
  cfg.initial_retry_delay = 50ms;
  cfg.max_retry_delay = 100ms;
  cfg.flush_interval = 600s;  // only Flush() sends
  cfg.logger = [](LogLevel, std::string_view) {};
  Client client(cfg);
  ASSERT_TRUE(client.WaitForInitialization(5s));
  auto user = rules::Context::Builder("user", "u").Build();
  for (int i = 0; i < 4500; ++i) client.Track("click", user);  // three batches of at most 2,000
  client.Flush();
  EXPECT_EQ(client.GetStatus().events_dropped, 4500);
  EXPECT_EQ(CountPosts(server.requests()), 2);  // the first batch and its retry
  // The next interval tries again.
  client.Track("click", user);
  client.Flush();
  EXPECT_EQ(client.GetStatus().events_dropped, 4501);
  EXPECT_EQ(CountPosts(server.requests()), 4);
}

}  // namespace
}  // namespace gonfalon::sdk
