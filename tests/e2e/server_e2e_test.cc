// End-to-end: the real `gonfalon serve` binary on port 0 over loopback.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <regex>
#include <thread>

#include "e2e_util.h"
#include "server_fixture.h"
#include "gonfalon/rules/value.h"

namespace gonfalon::e2e {
namespace {

using rules::Array;
using rules::ParseJson;
using rules::Value;

TEST_F(ServerTest, HealthReadyAndValidPrometheusMetrics) {
  EXPECT_EQ(Http(port(), "GET", "/healthz").status, 200);
  // Ready once every environment is loaded, which happens after the server listens.
  EXPECT_TRUE(Eventually([&] { return Http(port(), "GET", "/readyz").status == 200; }));
  MakeShop();
  Http(port(), "POST", "/ofrep/v1/evaluate/flags/checkout", R"({"context":{"targetingKey":"u1"}})", Bearer(server_key_));
  auto m = Http(port(), "GET", "/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_EQ(m.Header("content-type"), "text/plain; version=0.0.4");
  // Every line is a comment (# HELP/# TYPE) or `name{labels} value`.
  std::regex sample(R"re(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?[0-9.eE+-]+(\.[0-9]+)?$|^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? (\+Inf|NaN)$)re");
  std::regex meta(R"(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$)");
  size_t lines = 0;
  std::istringstream in(m.body);
  for (std::string line; std::getline(in, line);) {
    ++lines;
    EXPECT_TRUE(std::regex_match(line, sample) || std::regex_match(line, meta)) << "bad metrics line: " << line;
  }
  EXPECT_GT(lines, 20u);
  EXPECT_NE(m.body.find("gonfalon_evaluations_total 1\n"), std::string::npos);
  EXPECT_NE(m.body.find(R"(gonfalon_http_requests_total{route="/ofrep/v1/evaluate/flags/{key}",method="POST",status="200"} 1)"), std::string::npos);
  EXPECT_NE(m.body.find("gonfalon_storage_rocksdb_estimate_num_keys"), std::string::npos);
}

TEST_F(ServerTest, CrudWithETagsAndConflicts) {
  MakeShop();
  auto flag = Admin("GET", "/api/v1/projects/shop/environments/production/flags/checkout");
  ASSERT_EQ(flag.status, 200);
  EXPECT_EQ(flag.Header("etag"), "\"1\"");
  EXPECT_FALSE(J(flag).Find("on")->as_bool());
  // Turn it on (JSON merge patch) with the right If-Match.
  auto on = Admin("PATCH", "/api/v1/projects/shop/environments/production/flags/checkout", R"({"on":true})", {{"If-Match", "\"1\""}});
  ASSERT_EQ(on.status, 200) << on.body;
  EXPECT_TRUE(J(on).Find("on")->as_bool());
  EXPECT_EQ(on.Header("etag"), "\"2\"");
  // A stale If-Match is refused and changes nothing.
  auto stale = Admin("PATCH", "/api/v1/projects/shop/environments/production/flags/checkout", R"({"on":false})", {{"If-Match", "\"1\""}});
  EXPECT_EQ(stale.status, 412);
  EXPECT_EQ(J(stale).Find("error")->Find("code")->as_string(), "precondition_failed");
  EXPECT_TRUE(J(Admin("GET", "/api/v1/projects/shop/environments/production/flags/checkout")).Find("on")->as_bool());
  // Staging is independent.
  EXPECT_FALSE(J(Admin("GET", "/api/v1/projects/shop/environments/staging/flags/checkout")).Find("on")->as_bool());
  // Segments: create, conflict on re-create, replace, delete.
  auto seg = Admin("POST", "/api/v1/projects/shop/environments/production/segments", R"({"key":"beta","included":["u1"]})");
  ASSERT_EQ(seg.status, 201) << seg.body;
  EXPECT_EQ(Admin("POST", "/api/v1/projects/shop/environments/production/segments", R"({"key":"beta"})").status, 409);
  auto put = Admin("PUT", "/api/v1/projects/shop/environments/production/segments/beta", R"({"included":["u1","u2"]})", {{"If-Match", "\"1\""}});
  EXPECT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(J(put).Find("included")->as_array().size(), 2u);
  // A change set with a wrong expectVersion: 409, and neither item is written.
  auto cs = Admin("POST", "/api/v1/projects/shop/environments/production/changesets",
                  R"({"comment":"both","items":[{"kind":"segment","key":"gamma","data":{}},{"kind":"segment","key":"beta","expectVersion":1,"data":{}}]})");
  EXPECT_EQ(cs.status, 409);
  EXPECT_EQ(Admin("GET", "/api/v1/projects/shop/environments/production/segments/gamma").status, 404);
  auto ok = Admin("POST", "/api/v1/projects/shop/environments/production/changesets",
                  R"({"comment":"both","items":[{"kind":"segment","key":"gamma","data":{}},{"kind":"segment","key":"beta","expectVersion":2,"delete":true}]})");
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(J(ok).Find("items")->as_array().size(), 2u);
  EXPECT_EQ(Admin("GET", "/api/v1/projects/shop/environments/production/segments/beta").status, 404);
  // History, newest first; restore to before the change set, as a new change set.
  auto hist = Admin("GET", "/api/v1/projects/shop/environments/production/history?limit=2");
  ASSERT_EQ(hist.status, 200);
  EXPECT_EQ(J(hist).Find("items")->as_array()[0].Find("comment")->as_string(), "both");
  int64_t seq = static_cast<int64_t>(J(hist).Find("items")->as_array()[0].Find("sequence")->as_number());
  auto restore = Admin("POST", "/api/v1/projects/shop/environments/production/restore", "{\"sequence\":" + std::to_string(seq - 1) + "}");
  ASSERT_EQ(restore.status, 200) << restore.body;
  EXPECT_EQ(Admin("GET", "/api/v1/projects/shop/environments/production/segments/beta").status, 200);
  // Project-level flag: list with filters, archive, delete.
  EXPECT_EQ(J(Admin("GET", "/api/v1/projects/shop/flags?q=check")).Find("items")->as_array().size(), 1u);
  EXPECT_EQ(Admin("PATCH", "/api/v1/projects/shop/flags/checkout", R"({"archived":true,"tags":["old"]})").status, 200);
  EXPECT_EQ(J(Admin("GET", "/api/v1/projects/shop/flags")).Find("items")->as_array().size(), 1u);  // web-banner
  EXPECT_EQ(J(Admin("GET", "/api/v1/projects/shop/flags?state=archived&tag=old")).Find("items")->as_array().size(), 1u);
  EXPECT_EQ(Admin("DELETE", "/api/v1/projects/shop/flags/checkout").status, 204);
  EXPECT_EQ(Admin("GET", "/api/v1/projects/shop/flags/checkout").status, 404);
}

TEST_F(ServerTest, BadInputGetsPreciseErrorsAndWritesNothing) {
  MakeShop();
  struct Case {
    std::string method, path, body;
    int status;
    std::string field;
  } cases[] = {
      {"POST", "/api/v1/projects", "{not json", 400, ""},
      {"POST", "/api/v1/projects", "[1,2]", 400, ""},
      {"POST", "/api/v1/projects", R"({"key":"bad key"})", 400, "key"},
      {"POST", "/api/v1/projects", R"({"key":5})", 400, "key"},
      {"POST", "/api/v1/projects/shop/flags", R"({"key":"x","variations":"yes"})", 400, "variations"},
      {"POST", "/api/v1/projects/shop/flags", R"({"key":"x","variations":[]})", 400, "variations"},
      {"PUT", "/api/v1/projects/shop/environments/production/flags/checkout",
       R"({"on":true,"fallthrough":{"variation":7}})", 400, "fallthrough.variation"},
      {"PUT", "/api/v1/projects/shop/environments/production/flags/checkout",
       R"({"on":true,"fallthrough":{"variation":0},"rules":[{"id":"r","variation":0,"clauses":[{"attribute":"a","op":"startswith","values":[]}]}]})",
       400, "rules[0].clauses[0].op"},
      {"PATCH", "/api/v1/projects/shop/environments/production/flags/checkout", R"({"on":"yes"})", 400, "on"},
      {"POST", "/api/v1/projects/shop/environments/production/changesets", R"({"items":[{"kind":"widget","key":"a"}]})", 400, "items[0].kind"},
      {"POST", "/api/v1/projects/shop/environments/production/changesets", R"({"items":[{"kind":"segment","key":"a","data":{"included":[1]}}]})", 400, "items[0].data.included[0]"},
      {"GET", "/api/v1/projects/shop/environments/production/history?limit=0", "", 400, "limit"},
      {"POST", "/api/v1/projects/shop/environments/production/restore", R"({"sequence":999})", 400, "sequence 999 is not in this environment's history (now at 1)"},
      {"PATCH", "/api/v1/projects/shop/environments/production/flags/checkout", R"({"on":true})", 400, "If-Match"},
  };
  int i = 0;
  for (const Case& c : cases) {
    std::vector<std::pair<std::string, std::string>> extra;
    if (++i == static_cast<int>(std::size(cases))) extra.push_back({"If-Match", "banana"});
    auto r = Admin(c.method, c.path, c.body, extra);
    EXPECT_EQ(r.status, c.status) << c.method << " " << c.path << " " << c.body << " -> " << r.body;
    Value body = J(r);
    const Value* err = body.Find("error");
    ASSERT_NE(err, nullptr) << r.body;
    EXPECT_FALSE(err->Find("message")->as_string().empty());
    if (!c.field.empty() && c.field.find(' ') == std::string::npos) {
      ASSERT_NE(err->Find("field"), nullptr) << r.body;
      EXPECT_EQ(err->Find("field")->as_string(), c.field) << r.body;
    }
  }
  // Nothing was written: the environment is still at its first change set.
  EXPECT_EQ(J(Admin("GET", "/api/v1/projects/shop/environments/production")).Find("sequence")->as_number(), 2);
  EXPECT_EQ(Admin("GET", "/api/v1/projects/nope").status, 404);
  EXPECT_EQ(Admin("DELETE", "/api/v1/projects").status, 405);
  EXPECT_EQ(Http(port(), "GET", "/nowhere").status, 404);
}

TEST_F(ServerTest, EveryRouteTimesEveryKeyKind) {
  MakeShop();
  struct Caller {
    const char* name;
    std::vector<std::pair<std::string, std::string>> headers;
  };
  std::vector<Caller> callers = {
      {"none", {}},
      {"wrong", Bearer("gfs_not_a_real_key_at_all")},
      {"admin-read", Bearer(read_key_)},
      {"admin-write", Bearer(kAdminToken)},
      {"server", Bearer(server_key_)},
      {"client", {{"X-API-Key", client_key_}}},
  };
  struct Route {
    std::string method, path, body;
    int expect[6];  // none, wrong, admin-read, admin-write, server, client
  };
  std::string ctx = R"({"context":{"targetingKey":"u1"}})";
  std::vector<Route> routes = {
      {"GET", "/api/v1/projects", "", {401, 401, 200, 200, 403, 403}},
      {"POST", "/api/v1/projects", R"({"key":"p2"})", {401, 401, 403, 201, 403, 403}},
      {"GET", "/api/v1/projects/shop", "", {401, 401, 200, 200, 403, 403}},
      {"GET", "/api/v1/projects/shop/environments", "", {401, 401, 200, 200, 403, 403}},
      {"GET", "/api/v1/projects/shop/flags", "", {401, 401, 200, 200, 403, 403}},
      {"GET", "/api/v1/projects/shop/environments/production/flags/checkout", "", {401, 401, 200, 200, 403, 403}},
      {"PATCH", "/api/v1/projects/shop/environments/production/flags/checkout", R"({"on":true})", {401, 401, 403, 200, 403, 403}},
      {"GET", "/api/v1/projects/shop/environments/production/segments", "", {401, 401, 200, 200, 403, 403}},
      {"GET", "/api/v1/projects/shop/environments/production/history", "", {401, 401, 200, 200, 403, 403}},
      {"GET", "/api/v1/keys", "", {401, 401, 200, 200, 403, 403}},
      {"GET", "/sdk/v1/flags", "", {401, 401, 403, 403, 200, 403}},
      {"POST", "/sdk/v1/evaluate", ctx.substr(0, 0) + R"({"context":{"key":"u1"},"flag":"checkout"})", {401, 401, 403, 403, 200, 403}},
      {"POST", "/sdk/v1/events", R"({"exposures":[{"flag":"checkout","variation":1}]})", {401, 401, 403, 403, 202, 403}},
      {"POST", "/ofrep/v1/evaluate/flags/checkout", ctx, {401, 401, 403, 403, 200, 404}},
      {"POST", "/ofrep/v1/evaluate/flags/web-banner", ctx, {401, 401, 403, 403, 200, 200}},
      {"POST", "/ofrep/v1/evaluate/flags", ctx, {401, 401, 403, 403, 200, 200}},
      {"GET", "/ofrep/v1/configuration", "", {401, 401, 403, 403, 200, 200}},
      {"GET", "/healthz", "", {200, 200, 200, 200, 200, 200}},
      {"GET", "/metrics", "", {200, 200, 200, 200, 200, 200}},
  };
  for (const Route& route : routes) {
    for (size_t c = 0; c < callers.size(); ++c) {
      auto r = Http(port(), route.method, route.path, route.body, callers[c].headers);
      int want = route.expect[c];
      EXPECT_EQ(r.status, want) << route.method << " " << route.path << " as " << callers[c].name << ": " << r.body;
    }
  }
}

// Sends raw bytes on a new connection; returns the status of the response, 0 if the server
// closed without one.
int RawStatus(int port, const std::string& bytes) {
  int fd = Connect(port);
  if (fd < 0) return -1;
  SendAll(fd, bytes);
  std::string buf;
  std::optional<HttpResponse> r;
  auto deadline = Clock::now() + 5s;
  while (!(r = ParseResponse(buf)) && ReadSome(fd, buf, deadline)) {
  }
  ::close(fd);
  return r.has_value() ? r->status : 0;
}

// Broken framing gets a 4xx (or a close, when there is nothing sensible to answer), never a
// crash: chunk extensions without end (Boost 1.81 accepts them unbounded, so the read buffer
// is bounded), bad chunk sizes, conflicting lengths, and random bytes.
TEST_F(ServerTest, BrokenFramingGetsA4xxAndTheServerStaysUp) {
  std::string chunked = "POST /api/v1/projects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(kAdminToken) +
                        "\r\nTransfer-Encoding: chunked\r\n\r\n";
  int ext = RawStatus(port(), chunked + "5;" + std::string(200 * 1024, 'e') + "\r\nhello\r\n0\r\n\r\n");
  EXPECT_TRUE(ext >= 400 && ext < 500) << ext;
  int size = RawStatus(port(), chunked + "zz\r\nhello\r\n0\r\n\r\n");
  EXPECT_EQ(size, 400);
  int both = RawStatus(port(), "POST /api/v1/projects HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x");
  EXPECT_EQ(both, 400);
  int negative = RawStatus(port(), "POST /api/v1/projects HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n");
  EXPECT_EQ(negative, 400);
  // Random bytes, from a fixed seed so that a failure can be replayed.
  uint32_t state = 12345;
  auto next = [&] {
    state = state * 1664525u + 1013904223u;
    return state >> 24;
  };
  for (int i = 0; i < 40; ++i) {
    std::string junk(1 + next() * 8, '\0');
    for (char& c : junk) c = static_cast<char>(next());
    if (i % 2 == 0) junk = "GET /" + junk;  // half of them past the first token
    int st = RawStatus(port(), junk + "\r\n\r\n");
    EXPECT_TRUE(st == 0 || (st >= 400 && st < 500)) << "case " << i << ": " << st;
  }
  EXPECT_EQ(Http(port(), "GET", "/healthz").status, 200);
  // Nothing was created by any of it.
  EXPECT_EQ(J(Admin("GET", "/api/v1/projects")).Find("items")->as_array().size(), 0u);
}

// A client that sends requests but never reads the responses cannot hold the server: once the
// socket buffers are full, the request deadline (2 s here) closes the connection.
TEST_F(ServerTest, AClientThatNeverReadsIsDroppedAtTheDeadline) {
  MakeShop();
  auto open_connections = [&] {
    auto m = Http(port(), "GET", "/metrics");
    std::smatch match;
    static const std::regex gauge("\ngonfalon_open_connections ([0-9]+)");
    return std::regex_search(m.body, match, gauge) ? std::stoi(match[1]) : -1;
  };
  int fd = Connect(port());
  ASSERT_GE(fd, 0);
  std::string one = "GET /sdk/v1/flags HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + server_key_ + "\r\n\r\n";
  std::string many;
  for (int i = 0; i < 2000; ++i) many += one;
  timeval send_timeout{1, 0};  // a blocked send gives up after 1 s instead of hanging the test
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);
  auto t0 = Clock::now();
  // Stops when the server stops reading (the buffers are full) or drops the connection.
  for (int i = 0; i < 50 && SendAll(fd, many); ++i) {
  }
  EXPECT_EQ(Http(port(), "GET", "/healthz").status, 200);  // served meanwhile
  int open = -1;
  Eventually([&] { return (open = open_connections()) == 1; }, 15s);  // 1: the /metrics request itself
  EXPECT_EQ(open, 1);
  EXPECT_LT(Clock::now() - t0, 15s);
  ::close(fd);
}

TEST_F(ServerTest, OversizedAndSlowRequestsAreRefusedAndTheServerStaysUp) {
  MakeShop();
  // Body over 1 MiB: 413.
  std::string big(1024 * 1024 + 10, 'x');
  EXPECT_EQ(Admin("POST", "/api/v1/projects", big).status, 413);
  // Headers over 8 KiB: 431.
  EXPECT_EQ(Http(port(), "GET", "/healthz", "", {{"X-Filler", std::string(9000, 'a')}}).status, 431);
  // Malformed HTTP: 400.
  {
    int fd = Connect(port());
    SendAll(fd, "GARBAGE\r\n\r\n");
    std::string buf;
    std::optional<HttpResponse> r;
    auto deadline = Clock::now() + 5s;
    while (!(r = ParseResponse(buf)) && ReadSome(fd, buf, deadline)) {
    }
    ::close(fd);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 400);
  }
  // A slow sender that never finishes its headers is dropped after the read deadline (2 s here)
  // while other clients are served meanwhile.
  int slow = Connect(port());
  SendAll(slow, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
  auto t0 = Clock::now();
  EXPECT_EQ(Http(port(), "GET", "/healthz").status, 200);
  std::string buf;
  bool closed = false;
  auto deadline = Clock::now() + 10s;
  while (Clock::now() < deadline) {
    if (!ReadSome(slow, buf, deadline)) {
      closed = true;
      break;
    }
  }
  ::close(slow);
  EXPECT_TRUE(closed);
  EXPECT_EQ(buf, "");  // dropped without a response
  EXPECT_LT(Clock::now() - t0, 8s);
  EXPECT_EQ(Http(port(), "GET", "/healthz").status, 200);
}

TEST_F(ServerTest, AdminChangeArrivesOnAnOpenStreamAsExactlyOneChangesEvent) {
  MakeShop();
  SseStream stream(port(), "/sdk/v1/stream", Bearer(server_key_));
  ASSERT_EQ(stream.status(), 200);
  auto put = stream.Next(5s);
  ASSERT_TRUE(put.has_value());
  EXPECT_EQ(put->event, "put");
  int64_t seq = std::stoll(put->id);
  EXPECT_EQ(J(HttpResponse{200, {}, put->data}).Find("sequence")->as_number(), seq);
  ASSERT_EQ(Admin("PATCH", "/api/v1/projects/shop/environments/production/flags/checkout", R"({"on":true})").status, 200);
  auto change = stream.Next(5s);
  ASSERT_TRUE(change.has_value());
  EXPECT_EQ(change->event, "changes");
  EXPECT_EQ(change->id, std::to_string(seq + 1));
  Value data = *ParseJson(change->data);
  EXPECT_EQ(data.Find("sequence")->as_number(), seq + 1);
  ASSERT_EQ(data.Find("items")->as_array().size(), 1u);
  EXPECT_TRUE(data.Find("items")->as_array()[0].Find("data")->Find("on")->as_bool());
  // A change in another environment does not arrive; the next one here is seq + 2.
  ASSERT_EQ(Admin("PATCH", "/api/v1/projects/shop/environments/staging/flags/checkout", R"({"on":true})").status, 200);
  ASSERT_EQ(Admin("POST", "/api/v1/projects/shop/environments/production/segments", R"({"key":"s"})").status, 201);
  auto next = stream.Next(5s);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->id, std::to_string(seq + 2));
  // Heartbeats (1 s here) keep the stream visibly alive.
  auto beat = stream.Next(3s, /*with_comments=*/true);
  ASSERT_TRUE(beat.has_value());
  EXPECT_EQ(beat->event, "comment");
  EXPECT_EQ(beat->data, "heartbeat");
}

TEST_F(ServerTest, DroppedStreamResumesWithLastEventIdAndGetsExactlyWhatItMissed) {
  MakeShop();
  int64_t seq;
  {
    SseStream stream(port(), "/sdk/v1/stream", Bearer(server_key_));
    auto put = stream.Next(5s);
    ASSERT_TRUE(put.has_value());
    seq = std::stoll(put->id);
  }
  // Missed while disconnected:
  ASSERT_EQ(Admin("PATCH", "/api/v1/projects/shop/environments/production/flags/checkout", R"({"on":true})").status, 200);
  ASSERT_EQ(Admin("POST", "/api/v1/projects/shop/environments/production/segments", R"({"key":"s"})").status, 201);
  auto h = Bearer(server_key_);
  h.push_back({"Last-Event-ID", std::to_string(seq)});
  SseStream resumed(port(), "/sdk/v1/stream", h);
  auto a = resumed.Next(5s);
  auto b = resumed.Next(5s);
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_EQ(a->event, "changes");
  EXPECT_EQ(a->id, std::to_string(seq + 1));
  EXPECT_EQ(b->event, "changes");
  EXPECT_EQ(b->id, std::to_string(seq + 2));
  EXPECT_FALSE(resumed.Next(1500ms).has_value());  // nothing more, no put
  // Up to date: nothing at all; unknown future id: a put.
  h.back().second = std::to_string(seq + 2);
  SseStream current(port(), "/sdk/v1/stream", h);
  EXPECT_FALSE(current.Next(1500ms).has_value());
  h.back().second = "999999";
  SseStream ahead(port(), "/sdk/v1/stream", h);
  auto put = ahead.Next(5s);
  ASSERT_TRUE(put.has_value());
  EXPECT_EQ(put->event, "put");
}

// Large events to two streams, one read as they come and one never read: the reader gets
// every event, in order and whole (events larger than what a socket takes at once go out
// partly from the sender and the rest from the I/O threads); the other is dropped once its
// queue is full, and the server keeps serving.
TEST_F(ServerTest, ASlowStreamIsDroppedWhileAReadingStreamGetsEveryEventInOrder) {
  MakeShop();
  std::string big(150000, 'x');
  ASSERT_EQ(Admin("POST", "/api/v1/projects/shop/flags", R"({"key":"big","variations":[")" + big + R"(","y"]})").status, 201);
  SseStream reader(port(), "/sdk/v1/stream", Bearer(server_key_));
  SseStream stalled(port(), "/sdk/v1/stream", Bearer(server_key_));
  ASSERT_EQ(reader.status(), 200);
  ASSERT_EQ(stalled.status(), 200);
  auto put = reader.Next(10s);
  ASSERT_TRUE(put.has_value());
  int64_t next = std::stoll(put->id) + 1;
  auto dropped = [&] {
    auto m = Http(port(), "GET", "/metrics").body;
    const std::string name = "\ngonfalon_streams_dropped_slow_total ";
    auto at = m.find(name);
    return at != std::string::npos && std::atof(m.c_str() + at + name.size()) >= 1;
  };
  // The stalled stream's socket buffers hold a few dozen of these; its queue 512 more.
  int writes = 0;
  for (; writes < 3000 && !(writes % 50 == 0 && dropped()); ++writes) {
    ASSERT_EQ(Admin("PATCH", "/api/v1/projects/shop/environments/production/flags/big",
                    writes % 2 == 0 ? R"({"on":true})" : R"({"on":false})").status, 200);
    // Read as we go, so that only the other stream falls behind.
    while (auto e = reader.Next(5ms)) {
      ASSERT_EQ(e->event, "changes");
      ASSERT_EQ(e->id, std::to_string(next)) << "out of order or missing";
      ASSERT_NE(e->data.find(big), std::string::npos) << "an event arrived cut";
      ++next;
    }
  }
  ASSERT_TRUE(dropped()) << "after " << writes << " writes";
  int64_t last = J(Admin("GET", "/api/v1/projects/shop/environments/production")).Find("sequence")->as_number();
  while (next <= last) {
    auto e = reader.Next(10s);
    ASSERT_TRUE(e.has_value()) << "missing event " << next;
    ASSERT_EQ(e->id, std::to_string(next));
    ++next;
  }
  // The dropped stream ends (what was in its socket, then end of stream); the server is up.
  int events = 0;
  while (stalled.Next(10s).has_value()) ++events;
  EXPECT_GT(events, 0);
  EXPECT_LT(events, writes);
  EXPECT_EQ(Http(port(), "GET", "/healthz").status, 200);
}

// A stream that stops reading for a while: its socket fills up, an event is taken in part and
// the rest queued (as a position in the event shared with other streams, not a copy); when it
// reads again, every event arrives whole and in order.
TEST_F(ServerTest, AStreamThatStopsReadingForAWhileGetsEveryEventWholeWhenItReadsAgain) {
  MakeShop();
  std::string big(150000, 'x');
  ASSERT_EQ(Admin("POST", "/api/v1/projects/shop/flags", R"({"key":"big","variations":[")" + big + R"(","y"]})").status, 201);
  SseStream paused(port(), "/sdk/v1/stream", Bearer(server_key_));
  ASSERT_EQ(paused.status(), 200);
  auto put = paused.Next(10s);
  ASSERT_TRUE(put.has_value());
  int64_t next = std::stoll(put->id) + 1;
  // ~15 MB: more than loopback's socket buffers hold, far less than the stream's queue limit.
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(Admin("PATCH", "/api/v1/projects/shop/environments/production/flags/big",
                    i % 2 == 0 ? R"({"on":true})" : R"({"on":false})").status, 200);
  }
  int64_t last = J(Admin("GET", "/api/v1/projects/shop/environments/production")).Find("sequence")->as_number();
  while (next <= last) {
    auto e = paused.Next(10s);
    ASSERT_TRUE(e.has_value()) << "missing event " << next;
    ASSERT_EQ(e->event, "changes");
    ASSERT_EQ(e->id, std::to_string(next)) << "out of order or missing";
    ASSERT_NE(e->data.find(big), std::string::npos) << "event " << next << " arrived cut or garbled";
    ++next;
  }
  auto m = Http(port(), "GET", "/metrics").body;
  EXPECT_NE(m.find("\ngonfalon_streams_dropped_slow_total 0"), std::string::npos) << "the stream was dropped";
  // What the socket did not take went out from the stream's queue, and is counted (the end of
  // such a catching up asks for a malloc_trim). How much that is depends on how much loopback's
  // buffers took; the last write's completion may be counted just after the client read it.
  auto backlog_sent = [&] {
    auto metrics = Http(port(), "GET", "/metrics").body;
    const std::string name = "\ngonfalon_stream_backlog_bytes_sent_total ";
    auto at = metrics.find(name);
    return at == std::string::npos ? -1.0 : std::atof(metrics.c_str() + at + name.size());
  };
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (backlog_sent() <= 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  EXPECT_GT(backlog_sent(), 0);
}

TEST_F(ServerTest, OfrepSingleBulkETagAndRefetchStream) {
  MakeShop();
  ASSERT_EQ(Admin("PUT", "/api/v1/projects/shop/environments/production/flags/checkout",
                  R"({"on":true,"offVariation":0,"fallthrough":{"variation":0},"rules":[{"id":"fr","variation":1,"clauses":[{"contextKind":"user","attribute":"country","op":"in","values":["FR"]}]}]})").status, 200);
  auto one = Http(port(), "POST", "/ofrep/v1/evaluate/flags/checkout", R"({"context":{"targetingKey":"u1","country":"FR"}})", Bearer(server_key_));
  ASSERT_EQ(one.status, 200) << one.body;
  EXPECT_TRUE(J(one).Find("value")->as_bool());
  EXPECT_EQ(J(one).Find("reason")->as_string(), "TARGETING_MATCH");
  EXPECT_EQ(J(one).Find("variant")->as_string(), "1");
  auto dflt = Http(port(), "POST", "/ofrep/v1/evaluate/flags/checkout", R"({"context":{"targetingKey":"u1"}})", Bearer(server_key_));
  EXPECT_EQ(J(dflt).Find("reason")->as_string(), "DEFAULT");
  auto off = Http(port(), "POST", "/ofrep/v1/evaluate/flags/web-banner", R"({"context":{"targetingKey":"u1"}})", Bearer(server_key_));
  EXPECT_EQ(J(off).Find("reason")->as_string(), "DISABLED");
  auto missing = Http(port(), "POST", "/ofrep/v1/evaluate/flags/nope", R"({"context":{"targetingKey":"u1"}})", Bearer(server_key_));
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(J(missing).Find("errorCode")->as_string(), "FLAG_NOT_FOUND");
  auto nokey = Http(port(), "POST", "/ofrep/v1/evaluate/flags/checkout", R"({"context":{"country":"FR"}})", Bearer(server_key_));
  EXPECT_EQ(nokey.status, 400);
  EXPECT_EQ(J(nokey).Find("errorCode")->as_string(), "TARGETING_KEY_MISSING");
  auto bad = Http(port(), "POST", "/ofrep/v1/evaluate/flags/checkout", "{oops", Bearer(server_key_));
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(J(bad).Find("errorCode")->as_string(), "PARSE_ERROR");
  auto multi = Http(port(), "POST", "/ofrep/v1/evaluate/flags/checkout",
                    R"({"context":{"kind":"multi","user":{"key":"u1","country":"FR"},"org":{"key":"o"}}})", Bearer(server_key_));
  EXPECT_TRUE(J(multi).Find("value")->as_bool());
  // Bulk with ETag / 304; the client key sees only client-side flags.
  auto bulk = Http(port(), "POST", "/ofrep/v1/evaluate/flags", R"({"context":{"targetingKey":"u1"}})", Bearer(client_key_));
  ASSERT_EQ(bulk.status, 200);
  ASSERT_EQ(J(bulk).Find("flags")->as_array().size(), 1u);
  EXPECT_EQ(J(bulk).Find("flags")->as_array()[0].Find("key")->as_string(), "web-banner");
  std::string etag = bulk.Header("etag");
  ASSERT_FALSE(etag.empty());
  auto again = Http(port(), "POST", "/ofrep/v1/evaluate/flags", R"({"context":{"targetingKey":"u1"}})",
                    {{"Authorization", "Bearer " + client_key_}, {"If-None-Match", etag}});
  EXPECT_EQ(again.status, 304);
  // The refetch stream from eventStreams: a change makes it send refetchEvaluation.
  std::string url = J(bulk).Find("eventStreams")->as_array()[0].Find("url")->as_string();
  std::string path = url.substr(url.find("/ofrep/"));
  // The URL carries a derived stream token, never the key's secret.
  EXPECT_NE(path.find("?token=gfo_"), std::string::npos) << url;
  EXPECT_EQ(url.find(client_key_), std::string::npos) << url;
  SseStream refetch(port(), path, {});
  ASSERT_EQ(refetch.status(), 200);
  // The secret itself, a forged token, or the token on another route: refused.
  EXPECT_EQ(SseStream(port(), "/ofrep/v1/stream?token=" + client_key_, {}).status(), 401);
  std::string forged = path.substr(0, path.size() - 1) + (path.back() == '0' ? "1" : "0");
  EXPECT_EQ(SseStream(port(), forged, {}).status(), 401);
  std::string token = path.substr(path.find("token=") + 6);
  EXPECT_EQ(Http(port(), "POST", "/ofrep/v1/evaluate/flags", R"({"context":{"targetingKey":"u1"}})", Bearer(token)).status, 401);
  EXPECT_EQ(SseStream(port(), "/sdk/v1/stream?token=" + token, {}).status(), 401);
  ASSERT_EQ(Admin("PATCH", "/api/v1/projects/shop/environments/production/flags/web-banner", R"({"on":true})").status, 200);
  auto ev = refetch.Next(5s);
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(J(HttpResponse{200, {}, ev->data}).Find("type")->as_string(), "refetchEvaluation");
  auto changed = Http(port(), "POST", "/ofrep/v1/evaluate/flags", R"({"context":{"targetingKey":"u1"}})",
                      {{"Authorization", "Bearer " + client_key_}, {"If-None-Match", etag}});
  EXPECT_EQ(changed.status, 200);
  EXPECT_NE(changed.Header("etag"), etag);
  // A flag key is the whole rest of the path, percent-decoded.
  ASSERT_EQ(Admin("POST", "/api/v1/projects/shop/flags", R"({"key":"a.b_c-d","variations":[1,2]})").status, 201);
  EXPECT_EQ(Http(port(), "POST", "/ofrep/v1/evaluate/flags/a%2Eb_c-d", R"({"context":{"targetingKey":"u"}})", Bearer(server_key_)).status, 200);
}

// References across items are checked when written: a 400 naming the field for a dangling
// reference or a prerequisite cycle, a 409 for deleting what is still used; nothing written.
TEST_F(ServerTest, DanglingReferencesAndPrerequisiteCyclesAreRefused) {
  MakeShop();
  const std::string flags = "/api/v1/projects/shop/environments/production/flags/";
  auto dangling = Admin("PATCH", flags + "checkout", R"({"prerequisites":[{"key":"nope","variation":0}]})");
  EXPECT_EQ(dangling.status, 400);
  EXPECT_EQ(J(dangling).Find("error")->Find("field")->as_string(), "prerequisites[0].key");
  EXPECT_EQ(J(dangling).Find("error")->Find("message")->as_string(), "prerequisites[0].key: no flag \"nope\"");
  ASSERT_EQ(Admin("PATCH", flags + "checkout", R"({"prerequisites":[{"key":"web-banner","variation":1}]})").status, 200);
  auto cycle = Admin("PATCH", flags + "web-banner", R"({"prerequisites":[{"key":"checkout","variation":1}]})");
  EXPECT_EQ(cycle.status, 400);
  EXPECT_EQ(J(cycle).Find("error")->Find("message")->as_string(),
            "prerequisites[0].key: prerequisite cycle: web-banner -> checkout -> web-banner");
  auto after = J(Admin("GET", flags + "web-banner"));
  EXPECT_EQ(after.Find("version")->as_number(), 1);  // nothing written
  EXPECT_TRUE(after.Find("prerequisites")->as_array().empty());

  const std::string segments = "/api/v1/projects/shop/environments/production/segments";
  ASSERT_EQ(Admin("POST", segments, R"({"key":"beta","included":["u1"]})").status, 201);
  ASSERT_EQ(Admin("PATCH", flags + "checkout",
                  R"({"rules":[{"id":"b","variation":1,"clauses":[{"attribute":"key","op":"segmentMatch","values":["beta"]}]}]})").status, 200);
  auto in_use = Admin("DELETE", segments + "/beta");
  EXPECT_EQ(in_use.status, 409);
  EXPECT_EQ(J(in_use).Find("error")->Find("code")->as_string(), "failed_precondition");
  EXPECT_EQ(J(in_use).Find("error")->Find("message")->as_string(),
            "segment \"beta\" is used by flag \"checkout\" (rules[0].clauses[0].values[0])");
  EXPECT_EQ(J(in_use).Find("error")->Find("field"), nullptr);
  EXPECT_EQ(Admin("GET", segments + "/beta").status, 200);
  auto prereq = Admin("DELETE", "/api/v1/projects/shop/flags/web-banner");
  EXPECT_EQ(prereq.status, 409);
  EXPECT_NE(J(prereq).Find("error")->Find("message")->as_string().find("prerequisite of flag \"checkout\""), std::string::npos);
}

// An admin write answers only once evaluations see it, even while another client keeps
// writing to the same environment: evaluated right after each write, never a stale value.
TEST_F(ServerTest, AdminWritesAreReadByTheNextEvaluation) {
  MakeShop();
  ASSERT_EQ(Admin("POST", "/api/v1/projects/shop/flags", R"({"key":"noise","variations":[1,2]})").status, 201);
  std::atomic<bool> stop{false};
  std::thread noise([&] {
    for (int i = 0; !stop; ++i) {
      Admin("PATCH", "/api/v1/projects/shop/environments/production/flags/noise", R"({"on":)" + std::string(i % 2 ? "true" : "false") + "}");
    }
  });
  int stale = 0;
  for (int i = 0; i < 40; ++i) {
    bool on = i % 2 == 0;
    auto w = Admin("PATCH", "/api/v1/projects/shop/environments/production/flags/checkout",
                   R"({"on":true,"fallthrough":{"variation":)" + std::string(on ? "1" : "0") + "}}");
    ASSERT_EQ(w.status, 200) << w.body;
    auto r = Http(port(), "POST", "/ofrep/v1/evaluate/flags/checkout", R"({"context":{"targetingKey":"u1"}})", Bearer(server_key_));
    ASSERT_EQ(r.status, 200) << r.body;
    if (J(r).Find("value")->as_bool() != on) ++stale;
  }
  stop = true;
  noise.join();
  EXPECT_EQ(stale, 0);
}

// Responses are framed by hand (http_server.cc): several on one keep-alive connection, a 304
// without a body, an HTTP/1.0 client answered in 1.0 and closed.
TEST_F(ServerTest, ResponsesAreFramedForKeepAliveAndHttp10) {
  MakeShop();
  auto flags = Http(port(), "GET", "/sdk/v1/flags", "", Bearer(server_key_));
  ASSERT_EQ(flags.status, 200);
  std::string etag = flags.Header("etag");
  ASSERT_FALSE(etag.empty());
  int fd = Connect(port());
  ASSERT_GE(fd, 0);
  std::string auth = "Authorization: Bearer " + server_key_ + "\r\n";
  // Three requests sent at once (pipelined): 304, 200 with a body, 404 with an error body.
  ASSERT_TRUE(SendAll(fd, "GET /sdk/v1/flags HTTP/1.1\r\nHost: x\r\n" + auth + "If-None-Match: " + etag + "\r\n\r\n" +
                              "GET /sdk/v1/flags HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n" +
                              "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::string buf;
  std::vector<HttpResponse> got;
  auto deadline = Clock::now() + 10s;
  while (got.size() < 3) {
    if (auto r = ParseResponse(buf)) {
      got.push_back(std::move(*r));
      continue;
    }
    if (!ReadSome(fd, buf, deadline)) break;
  }
  ::close(fd);
  ASSERT_EQ(got.size(), 3u) << buf;
  EXPECT_EQ(got[0].status, 304);
  EXPECT_EQ(got[0].body, "");
  EXPECT_EQ(got[0].Header("content-length"), "");
  EXPECT_EQ(got[0].Header("etag"), etag);
  EXPECT_EQ(got[1].status, 200);
  EXPECT_EQ(got[1].body, flags.body);
  EXPECT_EQ(got[1].Header("content-type"), "application/json");
  EXPECT_EQ(got[1].Header("server"), "gonfalon");
  EXPECT_EQ(got[2].status, 404);
  EXPECT_EQ(J(got[2]).Find("error")->Find("code")->as_string(), "not_found");
  EXPECT_EQ(buf, "");  // nothing after the three responses

  fd = Connect(port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, "GET /healthz HTTP/1.0\r\n\r\n"));
  buf.clear();
  while (ReadSome(fd, buf, Clock::now() + 10s)) {
  }
  ::close(fd);
  EXPECT_EQ(buf.rfind("HTTP/1.0 200 OK\r\n", 0), 0u) << buf;  // then EOF: read until closed
  auto r = ParseResponse(buf);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->Header("connection"), "close");
  EXPECT_EQ(J(*r).Find("status")->as_string(), "ok");
}

// A blocking request's response (admin writes, event batches) goes to the socket from the
// worker that handled it; what the socket does not take at once is written by the I/O threads.
// An event batch with 200,000 refused items is answered with ~16 MB, more than loopback's
// socket buffers hold (4 MB at most): it must still arrive whole and in order, and the same
// connection serve the next request.
TEST_F(ServerTest, AResponseLargerThanTheSocketTakesAtOnceArrivesWholeAndTheConnectionGoesOn) {
  MakeShop();
  int fd = Connect(port());
  ASSERT_GE(fd, 0);
  auto request = [&](const std::string& body) {
    return "POST /sdk/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + server_key_ +
           "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  };
  constexpr size_t kRefused = 200000;
  std::string body = R"({"metrics":[{"event":"purchase","value":3}],"exposures":[)";
  for (size_t i = 0; i < kRefused; ++i) body += i ? ",0" : "0";
  body += "]}";
  ASSERT_TRUE(SendAll(fd, request(body)));
  std::string buf;
  auto deadline = Clock::now() + 60s;
  std::optional<HttpResponse> big;
  while (!(big = ParseResponse(buf)) && ReadSome(fd, buf, deadline)) {
  }
  ASSERT_TRUE(big.has_value()) << buf.size() << " bytes read";
  EXPECT_EQ(buf, "");  // nothing after it
  // The same connection goes on: asked at once, before the checks below (which take seconds
  // under the sanitizers, longer than the server keeps an idle connection open).
  ASSERT_TRUE(SendAll(fd, request(R"({"metrics":[{"event":"purchase"}]})")));
  std::optional<HttpResponse> next;
  while (!(next = ParseResponse(buf)) && ReadSome(fd, buf, deadline)) {
  }
  ::close(fd);
  ASSERT_TRUE(next.has_value()) << buf;
  EXPECT_EQ(next->status, 202) << next->body;
  EXPECT_EQ(J(*next).Find("accepted")->as_number(), 1);

  ASSERT_EQ(big->status, 202) << big->body.substr(0, 300);
  EXPECT_GT(big->body.size(), 8u << 20);
  Value answer = J(*big);
  EXPECT_EQ(answer.Find("accepted")->as_number(), 1);
  const auto& refused = answer.Find("rejected")->as_array();
  ASSERT_EQ(refused.size(), kRefused);
  for (size_t i = 0; i < kRefused; i += 9973) {  // in order: item i's refusal is the i-th
    EXPECT_EQ(refused[i].Find("index")->as_number(), static_cast<double>(i));
    EXPECT_EQ(refused[i].Find("reason")->as_string(), "expected an object");
  }
  EXPECT_EQ(refused.back().Find("index")->as_number(), static_cast<double>(kRefused - 1));
}

TEST_F(ServerTest, NativeEvaluatePollingAndEvents) {
  MakeShop();
  auto one = Http(port(), "POST", "/sdk/v1/evaluate", R"({"context":{"key":"u1"},"flag":"checkout","explain":true})", Bearer(server_key_));
  ASSERT_EQ(one.status, 200) << one.body;
  EXPECT_EQ(J(one).Find("reason")->Find("kind")->as_string(), "OFF");
  EXPECT_TRUE(J(one).Find("trace")->is_array());
  auto all = Http(port(), "POST", "/sdk/v1/evaluate", R"({"context":{"key":"u1"}})", Bearer(server_key_));
  EXPECT_EQ(J(all).Find("flags")->as_object().size(), 2u);
  EXPECT_EQ(Http(port(), "POST", "/sdk/v1/evaluate", R"({"context":{"kind":"user"}})", Bearer(server_key_)).status, 400);
  auto flags = Http(port(), "GET", "/sdk/v1/flags", "", Bearer(server_key_));
  ASSERT_EQ(flags.status, 200);
  auto h = Bearer(server_key_);
  h.push_back({"If-None-Match", flags.Header("etag")});
  EXPECT_EQ(Http(port(), "GET", "/sdk/v1/flags", "", h).status, 304);
  auto ev = Http(port(), "POST", "/sdk/v1/events",
                 R"({"exposures":[{"flag":"checkout","variation":1,"count":5},{"flag":"checkout","variation":0}],"metrics":[{"event":"purchase","value":9.5}]})",
                 Bearer(server_key_));
  EXPECT_EQ(ev.status, 202) << ev.body;
  EXPECT_EQ(J(ev).Find("accepted")->as_number(), 3);
  auto counts = Admin("GET", "/api/v1/projects/shop/environments/production/flags/checkout/events");
  ASSERT_EQ(counts.status, 200);
  int64_t total = 0;
  Value count_body = J(counts);
  for (const Value& c : count_body.Find("items")->as_array()) total += static_cast<int64_t>(c.Find("count")->as_number());
  EXPECT_EQ(total, 6);
  auto bad = Http(port(), "POST", "/sdk/v1/events", R"({"exposures":[{"variation":1}]})", Bearer(server_key_));
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(J(bad).Find("error")->Find("field")->as_string(), "exposures[0].flag");
}

// docs/openapi.yaml lists exactly what the server routes: every documented path and method
// reaches a handler (no "no route", no 405).
TEST_F(ServerTest, EveryOpenApiPathAndMethodIsRouted) {
  MakeShop();
  ASSERT_EQ(Admin("POST", "/api/v1/projects/shop/environments/production/segments", R"({"key":"beta"})").status, 201);
  std::string key_id = J(Admin("GET", "/api/v1/keys")).Find("items")->as_array()[0].Find("id")->as_string();
  std::ifstream in(GONFALON_OPENAPI);
  ASSERT_TRUE(in.good());
  std::string line, path;
  bool in_paths = false;
  int checked = 0;
  while (std::getline(in, line)) {
    if (line == "paths:") {
      in_paths = true;
      continue;
    }
    if (!in_paths) continue;
    if (line.size() > 3 && line.rfind("  /", 0) == 0 && line.back() == ':') {
      path = line.substr(2, line.size() - 3);
      for (auto [from, to] : std::vector<std::pair<std::string, std::string>>{
               {"{p}", "shop"}, {"{e}", "production"}, {"{f}", "checkout"}, {"{s}", "beta"}, {"{key}", "checkout"}, {"{id}", key_id}, {"{m}", "buy"}}) {
        for (size_t at; (at = path.find(from)) != std::string::npos;) path.replace(at, from.size(), to);
      }
      continue;
    }
    static const std::regex method_line(R"(^    (get|post|put|patch|delete):$)");
    std::smatch m;
    if (!std::regex_match(line, m, method_line)) continue;
    std::string method = m[1];
    for (char& c : method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (method == "DELETE") continue;  // deleting would break the later paths; DELETE routes are exercised above
    std::string token = kAdminToken;
    if (path.rfind("/sdk/", 0) == 0 || path.rfind("/ofrep/", 0) == 0) token = server_key_;
    std::string target = path == "/ofrep/v1/stream" ? path + "?token=" + server_key_ : path;
    std::string body = method == "GET" ? "" : "{}";
    if (path.find("/stream") != std::string::npos) {
      SseStream s(port(), target, Bearer(token));
      EXPECT_EQ(s.status(), 200) << method << " " << target;
      ++checked;
      continue;
    }
    auto r = Http(port(), method, target, body, Bearer(token));
    EXPECT_NE(r.status, 405) << method << " " << target << ": " << r.body;
    EXPECT_EQ(r.body.find("no route"), std::string::npos) << method << " " << target << ": " << r.body;
    EXPECT_NE(r.status, 0) << method << " " << target;
    ++checked;
  }
  EXPECT_GE(checked, 35);
}

TEST(ServerLifecycleTest, SigtermFinishesInFlightClosesStreamsAndLosesNoAcknowledgedWrite) {
  std::string dir = TempDir("lifecycle");
  {
    ServerProcess server(dir);
    server.keep_dir();
    ASSERT_GT(server.port(), 0) << server.output();
    auto admin = Bearer(kAdminToken);
    ASSERT_EQ(Http(server.port(), "POST", "/api/v1/projects", R"({"key":"p","environments":["e"]})", admin).status, 201);
    auto key = Http(server.port(), "POST", "/api/v1/keys", R"({"kind":"server","project":"p","environment":"e"})", admin);
    std::string sdk = ParseJson(key.body)->Find("secret")->as_string();
    SseStream stream(server.port(), "/sdk/v1/stream", Bearer(sdk));
    ASSERT_TRUE(stream.Next(5s).has_value());
    // Acknowledged writes right up to the signal.
    for (int i = 0; i < 20; ++i) {
      ASSERT_EQ(Http(server.port(), "POST", "/api/v1/projects/p/environments/e/segments", "{\"key\":\"s" + std::to_string(i) + "\"}", admin).status, 201);
    }
    auto t0 = Clock::now();
    ::kill(server.pid(), SIGTERM);
    // The stream gets a final comment and is closed.
    bool saw_final = false;
    while (auto e = stream.Next(5s, true)) {
      if (e->event == "comment" && e->data == "server shutting down") saw_final = true;
    }
    EXPECT_TRUE(saw_final);
    EXPECT_EQ(server.Kill(0, 10s), 0);  // exit status 0
    EXPECT_LT(Clock::now() - t0, 6s);
  }
  ServerProcess again(dir);
  ASSERT_GT(again.port(), 0) << again.output();
  auto segs = Http(again.port(), "GET", "/api/v1/projects/p/environments/e/segments", "", Bearer(kAdminToken));
  EXPECT_EQ(ParseJson(segs.body)->Find("items")->as_array().size(), 20u);
}

// --history-changes bounds what an environment keeps (a stream resuming from before it gets a
// whole put), and --prune-interval-seconds runs the pruning by age while the server runs
// (before, only a start pruned by age).
TEST(ServerSettingsTest, HistoryIsKeptToTheConfiguredCountAndPrunedWhileTheServerRuns) {
  ServerProcess server(TempDir("history"), {"--history-changes", "3", "--prune-interval-seconds", "1"});
  ASSERT_GT(server.port(), 0) << server.output();
  auto admin = Bearer(kAdminToken);
  ASSERT_EQ(Http(server.port(), "POST", "/api/v1/projects", R"({"key":"p","environments":["e"]})", admin).status, 201);
  for (int i = 0; i < 6; ++i) {
    ASSERT_EQ(Http(server.port(), "POST", "/api/v1/projects/p/environments/e/segments", "{\"key\":\"s" + std::to_string(i) + "\"}", admin).status, 201);
  }
  auto history = Http(server.port(), "GET", "/api/v1/projects/p/environments/e/history?limit=100", "", admin);
  ASSERT_EQ(history.status, 200) << history.body;
  Value page = *ParseJson(history.body);
  const Array& items = page.Find("items")->as_array();
  ASSERT_EQ(items.size(), 3u) << history.body;
  int64_t oldest_kept = static_cast<int64_t>(items.back().Find("sequence")->as_number());
  // Resuming from before the oldest entry kept: a whole put; from it: just what followed.
  auto key = Http(server.port(), "POST", "/api/v1/keys", R"({"kind":"server","project":"p","environment":"e"})", admin);
  std::string sdk = ParseJson(key.body)->Find("secret")->as_string();
  auto resume = [&](int64_t from) {
    auto h = Bearer(sdk);
    h.push_back({"Last-Event-ID", std::to_string(from)});
    SseStream stream(server.port(), "/sdk/v1/stream", h);
    auto first = stream.Next(5s);
    return first.has_value() ? first->event : std::string("(nothing)");
  };
  EXPECT_EQ(resume(oldest_kept - 2), "put");
  EXPECT_EQ(resume(oldest_kept), "changes");
  // The periodic prune runs (at least twice within the deadline, a second apart).
  auto deadline = Clock::now() + 15s;
  double runs = 0;
  const std::string counter = "\ngonfalon_history_prunes_total ";
  while (Clock::now() < deadline && runs < 2) {
    std::string metrics = Http(server.port(), "GET", "/metrics").body;
    if (size_t at = metrics.find(counter); at != std::string::npos) runs = std::atof(metrics.c_str() + at + counter.size());
    if (runs < 2) std::this_thread::sleep_for(100ms);  // polling the counter until the deadline
  }
  EXPECT_GE(runs, 2);
  EXPECT_NE(Http(server.port(), "GET", "/metrics").body.find("gonfalon_history_prune_failures_total 0"), std::string::npos);
}

TEST(ServerSettingsTest, BadHistorySettingsStopTheServerWithTheSettingsName) {
  std::string dir = TempDir("history-bad");
  for (const auto& [args, message] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--history-days", "0"}, "history-days: expected an integer >= 1, got \"0\""},
           {{"--history-days", "100000"}, "history-days: expected at most 36500"},
           {{"--history-changes", "ten"}, "history-changes: expected an integer >= 1, got \"ten\""},
           {{"--prune-interval-seconds", "-5"}, "prune-interval-seconds: expected an integer >= 1"},
           {{"--prune-interval-seconds", "99999999999"}, "prune-interval-seconds: expected at most 31536000"}}) {
    std::vector<std::string> cmd = {GONFALON_BINARY, "serve", "--listen", "127.0.0.1:0", "--data-dir", dir};
    cmd.insert(cmd.end(), args.begin(), args.end());
    int code = -1;
    std::string out = RunCommand(cmd, &code, /*with_stderr=*/true);
    EXPECT_EQ(code, 2) << out;
    EXPECT_NE(out.find(message), std::string::npos) << out;
  }
  std::filesystem::remove_all(dir);
}

TEST_F(ServerTest, PatchingTheFallthroughToARolloutReplacesItsVariationAndBack) {
  MakeShop();
  const std::string flag = "/api/v1/projects/shop/environments/production/flags/checkout";
  ASSERT_EQ(Admin("PATCH", flag, R"({"on":true,"fallthrough":{"variation":1}})").status, 200);
  auto to_rollout = Admin("PATCH", flag, R"({"fallthrough":{"rollout":{"variations":[{"variation":0,"weight":30000},{"variation":1,"weight":70000}]}}})");
  ASSERT_EQ(to_rollout.status, 200) << to_rollout.body;
  rules::Value ft = *J(to_rollout).Find("fallthrough");
  EXPECT_EQ(ft.Find("variation"), nullptr) << rules::ToJson(ft);
  ASSERT_NE(ft.Find("rollout"), nullptr);
  auto back = Admin("PATCH", flag, R"({"fallthrough":{"variation":0}})");
  ASSERT_EQ(back.status, 200) << back.body;
  rules::Value ft2 = *J(back).Find("fallthrough");
  EXPECT_EQ(ft2.Find("rollout"), nullptr) << rules::ToJson(ft2);
  EXPECT_EQ(ft2.Find("variation")->as_number(), 0);
  // Both at once is still refused, with the field named.
  auto both = Admin("PATCH", flag, R"({"fallthrough":{"variation":0,"rollout":{"variations":[{"variation":0,"weight":100000}]}}})");
  EXPECT_EQ(both.status, 400);
  EXPECT_EQ(J(both).Find("error")->Find("field")->as_string(), "fallthrough");
}

}  // namespace
}  // namespace gonfalon::e2e
