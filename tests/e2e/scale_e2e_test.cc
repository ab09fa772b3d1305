// Issue #10 behaviour through the real server: bulk flag creation, changes applied to the
// published snapshot without reading the whole environment again (counted, not timed), and
// /readyz only once every environment is loaded.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "server_fixture.h"

namespace gonfalon::e2e {
namespace {

double Metric(int port, const std::string& name) {
  HttpResponse r = Http(port, "GET", "/metrics");
  size_t at = r.body.find("\n" + name + " ");
  return at == std::string::npos ? -1 : std::atof(r.body.c_str() + at + name.size() + 2);
}

std::string BulkBody(int from, int to) {
  std::string body = R"({"flags":[)";
  for (int i = from; i < to; ++i) {
    body += (i > from ? "," : "") + std::string(R"({"key":"bulk-)") + std::to_string(i) + R"(","variations":[false,true]})";
  }
  return body + "]}";
}

// A write that takes longer than the request deadline (--read-timeout-seconds 1 here) is still
// answered once it commits: the deadline bounds receiving the request and sending the answer,
// never the work in between, so a client never sees a dropped connection for a write that
// happened. 10,000 flags in 8 environments (80,000 items in one commit) take several seconds.
class ShortDeadlineServerTest : public ServerTest {
 protected:
  std::vector<std::string> ServerArgs() const override {
    return {"--read-timeout-seconds", "1", "--max-body-bytes", "4194304"};
  }
};

TEST_F(ShortDeadlineServerTest, AWriteSlowerThanTheDeadlineIsStillAnswered) {
  ASSERT_EQ(Admin("POST", "/api/v1/projects",
                  R"({"key":"shop","environments":["e1","e2","e3","e4","e5","e6","e7","e8"]})").status, 201);
  auto start = std::chrono::steady_clock::now();
  HttpResponse r = Http(port(), "POST", "/api/v1/projects/shop/flags", BulkBody(0, 10000), Bearer(kAdminToken),
                        std::chrono::seconds(120));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(r.status, 201) << "after " << seconds << " s: " << r.body.substr(0, 200);
  RecordProperty("seconds", std::to_string(seconds));
  EXPECT_EQ(Admin("GET", "/api/v1/projects/shop/environments/e8/flags/bulk-9999").status, 200);
}

TEST_F(ServerTest, BulkCreationIsOneCommitAndAllOrNothing) {
  MakeShop();
  auto seq = [&] { return J(Admin("GET", "/api/v1/projects/shop/environments/production")).Find("sequence")->as_number(); };
  double before = seq();
  HttpResponse r = Admin("POST", "/api/v1/projects/shop/flags", BulkBody(0, 500));
  ASSERT_EQ(r.status, 201) << r.body;
  ASSERT_EQ(J(r).Find("flags")->as_array().size(), 500u);
  EXPECT_EQ(seq(), before + 1);  // one change set for 500 flags
  HttpResponse flags = Http(port(), "GET", "/sdk/v1/flags", "", Bearer(server_key_));
  EXPECT_NE(flags.body.find("\"bulk-499\""), std::string::npos);

  // An existing key in the middle: nothing is created, and the error names the item.
  r = Admin("POST", "/api/v1/projects/shop/flags",
            R"({"flags":[{"key":"fresh","variations":[1,2]},{"key":"bulk-3","variations":[1,2]}]})");
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_NE(r.body.find("flags[1].key"), std::string::npos) << r.body;
  EXPECT_EQ(Admin("GET", "/api/v1/projects/shop/flags/fresh").status, 404);
  r = Admin("POST", "/api/v1/projects/shop/flags", R"({"flags":[{"key":"x","variations":"no"}]})");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("flags[0].variations"), std::string::npos) << r.body;
  r = Admin("POST", "/api/v1/projects/shop/flags", R"({"flags":{}})");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(seq(), before + 1);
}

TEST_F(ServerTest, ChangesAreAppliedWithoutReadingTheWholeEnvironmentAgain) {
  MakeShop();
  ASSERT_EQ(Admin("POST", "/api/v1/projects/shop/flags", BulkBody(0, 1000)).status, 201);
  // First use of the environment: one whole read.
  ASSERT_EQ(Http(port(), "GET", "/sdk/v1/flags", "", Bearer(server_key_)).status, 200);
  double loads = Metric(port(), "gonfalon_environment_loads_total");
  double published = Metric(port(), "gonfalon_change_sets_published_total");
  double deferred = Metric(port(), "gonfalon_stream_fan_outs_deferred_total");
  double log_reads = Metric(port(), "gonfalon_change_log_reads_total");
  ASSERT_GE(loads, 1);
  for (int i = 0; i < 20; ++i) {
    std::string body = R"({"items":[{"kind":"flag","key":"bulk-)" + std::to_string(i) +
                       R"(","data":{"on":true,"fallthrough":{"variation":1},"offVariation":0}}]})";
    ASSERT_EQ(Admin("POST", "/api/v1/projects/shop/environments/production/changesets", body).status, 200);
    // Read your writes: the evaluation right after the acknowledgement sees the change.
    HttpResponse e = Http(port(), "POST", "/sdk/v1/evaluate",
                          R"({"context":{"kind":"user","key":"u"},"flag":"bulk-)" + std::to_string(i) + R"("})",
                          Bearer(server_key_));
    ASSERT_NE(e.body.find("\"value\":true"), std::string::npos) << e.body;
  }
  EXPECT_EQ(Metric(port(), "gonfalon_environment_loads_total"), loads);
  EXPECT_EQ(Metric(port(), "gonfalon_environment_repairs_total"), 0);
  EXPECT_GE(Metric(port(), "gonfalon_change_sets_published_total"), published + 20);
  // One writer, each change set announced before the next commits: each is published from
  // memory, none read back from the change log.
  EXPECT_EQ(Metric(port(), "gonfalon_change_log_reads_total"), log_reads);
  // Writes' events waited for their answers (Hubs::WriteScope). Not necessarily all twenty: a
  // write's fan-out goes at once when the previous event has waited kMaxSendDelay for a sender
  // that a loaded machine has not scheduled yet (hub_test checks the rule itself).
  double deferred_now = Metric(port(), "gonfalon_stream_fan_outs_deferred_total");
  EXPECT_GT(deferred_now, deferred);
  EXPECT_LE(deferred_now, deferred + 20);
}

// An environment's flag and segment lists are the published snapshot: no whole read of the
// environment from storage, a write is in them once answered, and the full form is each flag's
// JSON as GET of the flag gives it.
TEST_F(ServerTest, EnvironmentListsComeFromThePublishedSnapshot) {
  MakeShop();
  const std::string env = "/api/v1/projects/shop/environments/production";
  ASSERT_EQ(Admin("POST", "/api/v1/projects/shop/flags", BulkBody(0, 300)).status, 201);
  ASSERT_EQ(Admin("POST", env + "/segments", R"({"key":"beta","included":["u1"]})").status, 201);
  ASSERT_EQ(Admin("GET", env + "/flags?fields=summary").status, 200);  // the environment is loaded
  // A name and tags, which the summary reads from each flag's JSON (the hub's compiled flags
  // do not keep them).
  ASSERT_EQ(Admin("PATCH", "/api/v1/projects/shop/flags/bulk-0", R"({"name":"Bulk zero","tags":["web","q3"]})").status, 200);
  {
    rules::Value summary = J(Admin("GET", env + "/flags?fields=summary"));
    const rules::Value& first = summary.Find("items")->as_array().at(0);
    EXPECT_EQ(first.Find("key")->as_string(), "bulk-0");
    EXPECT_EQ(first.Find("name")->as_string(), "Bulk zero");
    EXPECT_EQ(rules::ToJson(*first.Find("tags")), R"(["web","q3"])");
    for (const rules::Value& f : summary.Find("items")->as_array()) {
      EXPECT_TRUE(f.Find("name")->is_string() && f.Find("tags")->is_array()) << rules::ToJson(f);
    }
  }
  double loads = Metric(port(), "gonfalon_environment_loads_total");
  for (int i = 0; i < 5; ++i) {
    std::string flag = "bulk-" + std::to_string(i * 37);
    ASSERT_EQ(Admin("PATCH", env + "/flags/" + flag, R"({"on":true})").status, 200);
    // Read your writes, in both forms.
    rules::Value summary = J(Admin("GET", env + "/flags?fields=summary"));
    const rules::Value* items = summary.Find("items");
    ASSERT_NE(items, nullptr);
    ASSERT_EQ(items->as_array().size(), 302u);
    bool seen = false;
    for (const rules::Value& f : items->as_array()) {
      if (f.Find("key")->as_string() != flag) continue;
      seen = true;
      EXPECT_TRUE(f.Find("on")->as_bool()) << flag;
    }
    EXPECT_TRUE(seen) << flag;
    HttpResponse full = Admin("GET", env + "/flags");
    ASSERT_EQ(full.status, 200);
    HttpResponse one = Admin("GET", env + "/flags/" + flag);
    EXPECT_NE(full.body.find(one.body), std::string::npos) << one.body;
  }
  rules::Value segments = J(Admin("GET", env + "/segments"));
  ASSERT_EQ(segments.Find("items")->as_array().size(), 1u);
  EXPECT_EQ(segments.Find("items")->as_array()[0].Find("key")->as_string(), "beta");
  EXPECT_EQ(Metric(port(), "gonfalon_environment_loads_total"), loads);
  EXPECT_EQ(Admin("GET", env + "/flags?fields=everything").status, 400);

  // A deleted environment's lists answer 404.
  ASSERT_EQ(Admin("GET", "/api/v1/projects/shop/environments/staging/flags").status, 200);
  ASSERT_EQ(Admin("DELETE", "/api/v1/projects/shop/environments/staging").status, 204);
  EXPECT_EQ(Admin("GET", "/api/v1/projects/shop/environments/staging/flags").status, 404);
  EXPECT_EQ(Admin("GET", "/api/v1/projects/shop/environments/staging/segments").status, 404);
  EXPECT_EQ(Admin("GET", "/api/v1/projects/shop/environments/nowhere/flags?fields=summary").status, 404);
}

// A burst of change sets leaves free heap in malloc's arenas; once it ends the server hands it
// back (memory_trimmer.h's BurstWatch, sampled every 100 ms; the effect on RSS is measured by
// bench/scale, docs/performance.md).
TEST_F(ServerTest, ABurstOfChangeSetsIsFollowedByATrim) {
  MakeShop();
  ASSERT_EQ(Admin("POST", "/api/v1/projects/shop/flags", BulkBody(0, 10)).status, 201);
  // The environment in use (a hub publishes its change sets from then on).
  ASSERT_EQ(Http(port(), "GET", "/sdk/v1/flags", "", Bearer(server_key_)).status, 200);
  double trims = Metric(port(), "gonfalon_memory_trims_total");
  ASSERT_GE(trims, 0);
  for (int i = 0; i < 80; ++i) {
    std::string body = R"({"items":[{"kind":"flag","key":"bulk-)" + std::to_string(i % 10) +
                       R"(","data":{"on":true,"fallthrough":{"variation":1},"offVariation":0,"targets":[{"values":["u)" +
                       std::to_string(i) + R"("],"variation":0}]}}]})";
    HttpResponse r = Admin("POST", "/api/v1/projects/shop/environments/production/changesets", body);
    ASSERT_EQ(r.status, 200) << r.body;
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (Metric(port(), "gonfalon_memory_trims_total") < trims + 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_GE(Metric(port(), "gonfalon_memory_trims_total"), trims + 1);
}

TEST_F(ServerTest, ReadyOnlyOnceEveryEnvironmentIsLoaded) {
  MakeShop();
  ASSERT_EQ(Admin("POST", "/api/v1/projects/shop/flags", BulkBody(0, 200)).status, 201);
  server_->keep_dir();
  std::string dir = server_->data_dir();
  server_.reset();
  server_ = std::make_unique<ServerProcess>(dir);
  ASSERT_GT(port(), 0) << server_->output();
  ASSERT_TRUE(Eventually([&] { return Http(port(), "GET", "/readyz").status == 200; }));
  // Both environments were loaded at start, before any SDK asked for them.
  EXPECT_EQ(Metric(port(), "gonfalon_environment_loads_total"), 2);
}

}  // namespace
}  // namespace gonfalon::e2e
