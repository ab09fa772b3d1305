// The SDK's Track() buffer: packed records that read back as written, one buffer per
// tracking thread, one capacity shared by all of them, buffers reused between intervals.
#include "track_log.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <thread>
#include <vector>

namespace gonfalon::sdk::internal {
namespace {

struct Read {
  std::string event;
  double value;
  bool has_value;
  int64_t time_ms;
  std::vector<std::pair<std::string, std::string>> units;
};

std::vector<Read> ReadAll(TrackRecords& records) {
  std::vector<Read> out;
  TrackRecords::Record r;
  while (records.Next(r)) {
    Read e{std::string(r.event), r.value, r.has_value, r.time_ms, {}};
    const char* cursor = r.unit_data;
    for (uint32_t i = 0; i < r.units; ++i) {
      auto [kind, key] = TrackRecords::NextUnit(cursor);
      e.units.emplace_back(kind, key);
    }
    out.push_back(std::move(e));
  }
  return out;
}

TEST(TrackLogTest, RecordsReadBackAsWrittenInOrder) {
  TrackLog log(100);
  rules::Context user = rules::Context::Builder("user", "alice").Build();
  rules::Context multi = rules::Context::Builder("user", "bob").AddKind("org", "acme-corporation-of-long-names").Build();
  ASSERT_TRUE(log.Append("purchase", 9.5, 1700000000123, user));
  ASSERT_TRUE(log.Append("signup", std::nullopt, 1700000000124, multi));
  ASSERT_TRUE(log.Append("", 0.0, 1, user));  // an empty name and a zero value are kept as such
  TrackRecords records = log.Take();
  EXPECT_EQ(records.size(), 3u);
  std::vector<Read> got = ReadAll(records);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].event, "purchase");
  EXPECT_TRUE(got[0].has_value);
  EXPECT_EQ(got[0].value, 9.5);
  EXPECT_EQ(got[0].time_ms, 1700000000123);
  EXPECT_EQ(got[0].units, (std::vector<std::pair<std::string, std::string>>{{"user", "alice"}}));
  EXPECT_EQ(got[1].event, "signup");
  EXPECT_FALSE(got[1].has_value);
  EXPECT_EQ(got[1].units.size(), 2u);
  std::map<std::string, std::string> kinds(got[1].units.begin(), got[1].units.end());
  EXPECT_EQ(kinds, (std::map<std::string, std::string>{{"user", "bob"}, {"org", "acme-corporation-of-long-names"}}));
  EXPECT_EQ(got[2].event, "");
  EXPECT_TRUE(got[2].has_value);
  EXPECT_EQ(got[2].value, 0.0);
  EXPECT_EQ(log.dropped(), 0);
}

TEST(TrackLogTest, OneCapacityForAllThreadsAndTheRestCountedAsDropped) {
  TrackLog log(2500);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&log, t] {
      rules::Context ctx = rules::Context::Builder("user", "thread-" + std::to_string(t)).Build();
      for (int i = 0; i < 1000; ++i) log.Append("click", static_cast<double>(i), i, ctx);
    });
  }
  for (auto& th : threads) th.join();
  TrackRecords records = log.Take();
  EXPECT_EQ(records.size(), 2500u);
  std::vector<Read> got = ReadAll(records);
  EXPECT_EQ(got.size(), 2500u);
  EXPECT_EQ(log.dropped(), 1500);
  // Each thread's records come in the order it appended them.
  std::map<std::string, double> last;
  for (const Read& r : got) {
    ASSERT_EQ(r.units.size(), 1u);
    auto [it, fresh] = last.emplace(r.units[0].second, r.value);
    if (!fresh) {
      EXPECT_GT(r.value, it->second);
      it->second = r.value;
    }
  }
  // What was taken frees its room: the next interval holds 2,500 again.
  rules::Context ctx = rules::Context::Builder("user", "u").Build();
  for (int i = 0; i < 2600; ++i) log.Append("view", std::nullopt, i, ctx);
  EXPECT_EQ(log.Take().size(), 2500u);
  EXPECT_EQ(log.dropped(), 1600);
}

TEST(TrackLogTest, BuffersAreReusedAcrossIntervalsAndEmptyIntervalsLoseNothing) {
  TrackLog log(100000);
  rules::Context ctx = rules::Context::Builder("user", "carol").Build();
  for (int interval = 0; interval < 5; ++interval) {
    int n = interval == 2 ? 0 : 20000 + interval;  // the third interval tracks nothing
    for (int i = 0; i < n; ++i) ASSERT_TRUE(log.Append("e" + std::to_string(interval), i, i, ctx));
    TrackRecords records = log.Take();
    std::vector<Read> got = ReadAll(records);
    ASSERT_EQ(got.size(), static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      ASSERT_EQ(got[i].event, "e" + std::to_string(interval));
      ASSERT_EQ(got[i].time_ms, i);
    }
    log.Recycle(std::move(records));
  }
  EXPECT_EQ(log.dropped(), 0);
}

}  // namespace
}  // namespace gonfalon::sdk::internal
