// Webhooks through the real server (issue 12, part 5), against a local receiver that the test
// scripts: deliveries signed with HMAC-SHA256 (checked here with OpenSSL directly), retried
// with the same delivery id until the receiver accepts, logged per hook; a receiver that
// never answers does not hold up writes; scheduled changes announce their outcome.

#include <gtest/gtest.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gonfalon/rules/str_cat.h"
#include "server_fixture.h"

namespace gonfalon::e2e {
namespace {

struct Received {
  std::string head;  // request line and headers, lowercase names kept as sent
  std::string body;
  std::string Header(const std::string& name) const {
    std::string lower_head = head;
    for (char& c : lower_head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string key = "\r\n" + name + ": ";
    size_t at = lower_head.find(key);
    if (at == std::string::npos) return "";
    size_t start = at + key.size();
    return head.substr(start, head.find("\r\n", start) - start);
  }
};

// Accepts connections one at a time; for the n-th request answers with status(n) (after
// hold(n) returns, when set).
class Receiver {
 public:
  explicit Receiver(std::function<int(int)> status, std::function<void(int)> hold = nullptr)
      : status_(std::move(status)), hold_(std::move(hold)) {
    fd_ = ListenLoopback(port_);
    if (fd_ >= 0) thread_ = std::thread([this] { Loop(); });
  }
  ~Receiver() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  int port() const { return port_; }
  std::vector<Received> received() {
    std::lock_guard<std::mutex> l(mu_);
    return got_;
  }
  size_t count() {
    std::lock_guard<std::mutex> l(mu_);
    return got_.size();
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
      Received r;
      size_t end = buf.find("\r\n\r\n");
      r.head = buf.substr(0, end == std::string::npos ? buf.size() : end + 2);
      size_t length = static_cast<size_t>(std::atoi(r.Header("content-length").c_str()));
      std::string body = end == std::string::npos ? "" : buf.substr(end + 4);
      while (body.size() < length && ReadSome(c, body, deadline)) {
      }
      r.body = body;
      int n;
      {
        std::lock_guard<std::mutex> l(mu_);
        n = static_cast<int>(got_.size());
        got_.push_back(r);
      }
      if (hold_) hold_(n);
      int status = status_(n);
      SendAll(c, StrCat("HTTP/1.1 ", status, " X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"));
      ::close(c);
    }
  }

  std::function<int(int)> status_;
  std::function<void(int)> hold_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<Received> got_;
};

std::string HmacHex(const std::string& key, const std::string& data) {
  unsigned char mac[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()), data.size(),
       mac, &len);
  std::string out;
  char hex[3];
  for (unsigned int i = 0; i < len; ++i) {
    std::snprintf(hex, sizeof hex, "%02x", mac[i]);
    out += hex;
  }
  return out;
}

constexpr char kSecret[] = "receiver-secret-0123456789";

class WebhooksE2eTest : public ServerTest {
 protected:
  std::vector<std::string> ServerArgs() const override { return {"--webhook-retry-ms", "200"}; }
  std::string MakeHook(int receiver_port, const std::string& events) {
    auto r = Admin("POST", "/api/v1/webhooks",
                   StrCat(R"({"url":"http://127.0.0.1:)", receiver_port, R"(/hooks/gonfalon","events":)", events,
                          R"(,"project":"shop","secret":")", kSecret, R"("})"));
    EXPECT_EQ(r.status, 201) << r.body;
    EXPECT_EQ(J(r).Find("secret")->as_string(), kSecret);
    return J(r).Find("id")->as_string();
  }
  HttpResponse TurnOn() {
    return Admin("POST", "/api/v1/projects/shop/environments/production/changesets",
                 R"({"comment":"go","items":[{"kind":"flag","key":"checkout","data":{"on":true,"fallthrough":{"variation":1},"offVariation":0}}]})");
  }
};

TEST_F(WebhooksE2eTest, AChangeIsDeliveredSignedAndRetriedWithTheSameIdUntilAccepted) {
  MakeShop();
  Receiver receiver([](int n) { return n < 2 ? 503 : 200; });  // fails twice
  ASSERT_GT(receiver.port(), 0);
  std::string hook = MakeHook(receiver.port(), R"(["change.applied"])");
  auto applied = TurnOn();
  ASSERT_EQ(applied.status, 200) << applied.body;
  ASSERT_TRUE(Eventually([&] { return receiver.count() >= 3; }, std::chrono::seconds(15)));
  std::vector<Received> got = receiver.received();
  ASSERT_EQ(got.size(), 3u);
  for (const Received& r : got) {
    EXPECT_EQ(r.head.rfind("POST /hooks/gonfalon HTTP/1.1\r\n", 0), 0u) << r.head;
    EXPECT_EQ(r.Header("x-gonfalon-event"), "change.applied");
    EXPECT_EQ(r.Header("x-gonfalon-delivery"), got[0].Header("x-gonfalon-delivery"));  // one delivery, three attempts
    EXPECT_EQ(r.Header("x-gonfalon-signature"), "sha256=" + HmacHex(kSecret, r.body));
    EXPECT_EQ(r.body, got[0].body);
  }
  auto body = rules::ParseJson(got[0].body);
  ASSERT_TRUE(body.ok()) << got[0].body;
  EXPECT_EQ(body->Find("event")->as_string(), "change.applied");
  EXPECT_EQ(body->Find("project")->as_string(), "shop");
  EXPECT_EQ(body->Find("environment")->as_string(), "production");
  const rules::Value& data = *body->Find("data");
  EXPECT_EQ(data.Find("sequence")->as_number(), J(applied).Find("sequence")->as_number());
  EXPECT_EQ(data.Find("comment")->as_string(), "go");
  EXPECT_EQ(data.Find("items")->as_array()[0].Find("key")->as_string(), "checkout");
  // The delivery log says what happened.
  rules::Value log;
  ASSERT_TRUE(Eventually([&] {
    log = J(Admin("GET", StrCat("/api/v1/webhooks/", hook, "/deliveries")));
    return log.Find("items") != nullptr && log.Find("items")->as_array().size() == 1;
  }));
  const rules::Value& d = log.Find("items")->as_array()[0];
  EXPECT_TRUE(d.Find("delivered")->as_bool());
  EXPECT_EQ(d.Find("attempts")->as_number(), 3);
  EXPECT_EQ(d.Find("httpStatus")->as_number(), 200);
  EXPECT_EQ(d.Find("id")->as_string(), got[0].Header("x-gonfalon-delivery"));
}

TEST_F(WebhooksE2eTest, AReceiverThatNeverAnswersDoesNotHoldUpWritesAndIsLoggedAsFailed) {
  MakeShop();
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  Receiver stuck([](int) { return 200; }, [&](int) {
    std::unique_lock<std::mutex> l(mu);
    cv.wait_for(l, std::chrono::seconds(20), [&] { return release; });
  });
  std::string hook = MakeHook(stuck.port(), R"([])");
  ASSERT_TRUE(Eventually([&] { return TurnOn().status == 200 && stuck.count() >= 1; }, std::chrono::seconds(10)));
  // The receiver holds its first request; writes still get their answers meanwhile.
  for (int i = 0; i < 3; ++i) {
    auto r = Admin("POST", "/api/v1/projects/shop/environments/production/changesets",
                   StrCat(R"({"items":[{"kind":"segment","key":"s)", i, R"(","data":{"included":["u"]}}]})"));
    EXPECT_EQ(r.status, 200) << r.body;
  }
  EXPECT_EQ(stuck.count(), 1u);  // still the first one
  {
    std::lock_guard<std::mutex> l(mu);
    release = true;
  }
  cv.notify_all();
  // A hook whose address refuses connections: every attempt fails, and the log says why.
  int dead_port = 0;
  {
    int fd = ListenLoopback(dead_port);
    ::close(fd);  // nothing listens there now
  }
  std::string dead = MakeHook(dead_port, R"(["ping"])");
  ASSERT_EQ(Admin("POST", StrCat("/api/v1/webhooks/", dead, "/ping")).status, 202);
  rules::Value log;
  ASSERT_TRUE(Eventually([&] {
    log = J(Admin("GET", StrCat("/api/v1/webhooks/", dead, "/deliveries")));
    return log.Find("items") != nullptr && log.Find("items")->as_array().size() == 1;
  }, std::chrono::seconds(20)));
  const rules::Value& d = log.Find("items")->as_array()[0];
  EXPECT_FALSE(d.Find("delivered")->as_bool());
  EXPECT_EQ(d.Find("attempts")->as_number(), 5);
  EXPECT_NE(d.Find("error")->as_string().find("connecting"), std::string::npos) << rules::ToJson(d);
  auto metrics = Admin("GET", "/metrics");
  EXPECT_NE(metrics.body.find("gonfalon_webhook_failures_total 1"), std::string::npos);
}

TEST_F(WebhooksE2eTest, AScheduledChangeAnnouncesItsOutcome) {
  MakeShop();
  Receiver receiver([](int) { return 204; });
  MakeHook(receiver.port(), R"(["scheduled_change.applied","scheduled_change.failed"])");
  int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  auto made = Admin("POST", "/api/v1/projects/shop/environments/production/scheduled-changes",
                    StrCat(R"({"executeAt":)", now + 500,
                           R"(,"items":[{"kind":"flag","key":"checkout","data":{"on":true,"fallthrough":{"variation":1},"offVariation":0}}]})"));
  ASSERT_EQ(made.status, 201) << made.body;
  ASSERT_TRUE(Eventually([&] { return receiver.count() >= 1; }, std::chrono::seconds(10)));
  Received r = receiver.received()[0];
  EXPECT_EQ(r.Header("x-gonfalon-event"), "scheduled_change.applied");
  auto body = rules::ParseJson(r.body);
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(body->Find("data")->Find("id")->as_string(), J(made).Find("id")->as_string());
  EXPECT_EQ(body->Find("data")->Find("status")->as_string(), "applied");
}

TEST_F(WebhooksE2eTest, BadSubscriptionsAreRefusedWithTheField) {
  MakeShop();
  auto https = Admin("POST", "/api/v1/webhooks", R"({"url":"https://example.com/hook"})");
  EXPECT_EQ(https.status, 400);
  EXPECT_NE(https.body.find("https:// is not supported yet"), std::string::npos) << https.body;
  auto event = Admin("POST", "/api/v1/webhooks", R"({"url":"http://127.0.0.1:9/x","events":["change.applied","flag.deleted"]})");
  EXPECT_EQ(event.status, 400);
  EXPECT_NE(event.body.find("events[1]"), std::string::npos) << event.body;
  auto project = Admin("POST", "/api/v1/webhooks", R"({"url":"http://127.0.0.1:9/x","project":"nope"})");
  EXPECT_EQ(project.status, 404) << project.body;
  auto field = Admin("POST", "/api/v1/webhooks", R"({"url":"http://127.0.0.1:9/x","retries":3})");
  EXPECT_EQ(field.status, 400);
  EXPECT_EQ(J(Admin("GET", "/api/v1/webhooks")).Find("items")->as_array().size(), 0u);  // nothing stored
  // A project-limited admin key may not see or make hooks (they can receive every project's events).
  auto scoped = Admin("POST", "/api/v1/keys", R"({"kind":"admin","project":"shop"})");
  ASSERT_EQ(scoped.status, 201) << scoped.body;
  auto denied = Http(port(), "GET", "/api/v1/webhooks", "", Bearer(J(scoped).Find("secret")->as_string()));
  EXPECT_EQ(denied.status, 403) << denied.body;
  // Edits follow the version; the secret is never shown again.
  auto made = Admin("POST", "/api/v1/webhooks", R"({"url":"http://127.0.0.1:9/x"})");
  ASSERT_EQ(made.status, 201);
  std::string id = J(made).Find("id")->as_string();
  EXPECT_EQ(J(made).Find("secret")->as_string().rfind("whsec_", 0), 0u);
  auto read = Admin("GET", StrCat("/api/v1/webhooks/", id));
  EXPECT_EQ(J(read).Find("secret"), nullptr);
  EXPECT_EQ(Admin("PATCH", StrCat("/api/v1/webhooks/", id), R"({"enabled":false})", {{"If-Match", "\"1\""}}).status, 200);
  EXPECT_EQ(Admin("PATCH", StrCat("/api/v1/webhooks/", id), R"({"enabled":true})", {{"If-Match", "\"1\""}}).status, 412);
  EXPECT_EQ(Admin("DELETE", StrCat("/api/v1/webhooks/", id)).status, 204);
  EXPECT_EQ(Admin("GET", StrCat("/api/v1/webhooks/", id)).status, 404);
}

TEST_F(WebhooksE2eTest, ChangeRequestsAreAnnouncedWhenOpenedApprovedAppliedAndDeclined) {
  MakeShop();
  Receiver receiver([](int) { return 200; });
  ASSERT_GT(receiver.port(), 0);
  MakeHook(receiver.port(), R"(["change_request.opened","change_request.approved","change_request.declined","change_request.applied"])");
  ASSERT_EQ(Admin("PATCH", "/api/v1/projects/shop/environments/production", R"({"approvals":{"requiredApprovals":1}})").status, 200);
  std::string bob = J(Admin("POST", "/api/v1/keys", R"({"kind":"admin","name":"bob"})")).Find("secret")->as_string();
  auto first = TurnOn();  // by the bootstrap admin token
  ASSERT_EQ(first.status, 202) << first.body;
  auto second = Admin("POST", "/api/v1/projects/shop/environments/production/changesets",
                      R"({"items":[{"kind":"segment","key":"beta","data":{"included":["u1"]}}]})");
  ASSERT_EQ(second.status, 202) << second.body;
  std::string base = "/api/v1/projects/shop/environments/production/change-requests/";
  ASSERT_EQ(Http(port(), "POST", base + J(first).Find("id")->as_string() + "/approve", "", Bearer(bob)).status, 200);
  ASSERT_EQ(Http(port(), "POST", base + J(second).Find("id")->as_string() + "/decline", "", Bearer(bob)).status, 200);
  ASSERT_TRUE(Eventually([&] { return receiver.count() >= 5; }, std::chrono::seconds(10))) << receiver.count();
  std::multiset<std::string> events;
  for (const Received& r : receiver.received()) {
    events.insert(r.Header("x-gonfalon-event"));
    EXPECT_EQ(r.Header("x-gonfalon-signature"), "sha256=" + HmacHex(kSecret, r.body));
  }
  EXPECT_EQ(events, (std::multiset<std::string>{"change_request.opened", "change_request.opened", "change_request.approved",
                                                "change_request.applied", "change_request.declined"}));
}

}  // namespace
}  // namespace gonfalon::e2e
