#include "sse_parser.h"

#include <gtest/gtest.h>

#include <vector>

#include "backoff.h"

namespace gonfalon::sdk::internal {
namespace {

// An event kept after its callback (SseEvent::data is valid only during it).
struct Kept {
  std::string type;
  std::string data;
  std::string id;
};

struct Collected {
  std::vector<Kept> events;
  std::vector<std::string> comments;
  SseParser parser{[this](const SseEvent& e) { events.push_back({e.type, std::string(e.data), e.id}); },
                   [this](std::string_view c) { comments.emplace_back(c); }};
};

TEST(SseParserTest, ParsesEventsWithIdTypeAndData) {
  Collected c;
  c.parser.Feed("id: 42\nevent: put\ndata: {\"a\":1}\n\n");
  ASSERT_EQ(c.events.size(), 1u);
  EXPECT_EQ(c.events[0].id, "42");
  EXPECT_EQ(c.events[0].type, "put");
  EXPECT_EQ(c.events[0].data, "{\"a\":1}");
}

TEST(SseParserTest, MultiLineDataJoinsWithNewline) {
  Collected c;
  c.parser.Feed("data: first\ndata: second\ndata\n\n");
  ASSERT_EQ(c.events.size(), 1u);
  EXPECT_EQ(c.events[0].data, "first\nsecond\n");
  EXPECT_EQ(c.events[0].type, "message");
}

TEST(SseParserTest, CrLfAndCrLineEndings) {
  Collected c;
  c.parser.Feed("event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\r");
  ASSERT_EQ(c.events.size(), 2u);
  EXPECT_EQ(c.events[0].type, "a");
  EXPECT_EQ(c.events[1].type, "b");
  EXPECT_EQ(c.events[1].data, "2");
}

TEST(SseParserTest, SplitAcrossEveryPossibleBoundary) {
  const std::string stream = "id: 7\r\nevent: changes\r\ndata: {\"x\":\r\ndata: 2}\r\n\r\n: heartbeat\r\n\r\n";
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    for (size_t cut2 = cut; cut2 <= stream.size(); cut2 += 5) {
      Collected c;
      c.parser.Feed(stream.substr(0, cut));
      c.parser.Feed(stream.substr(cut, cut2 - cut));
      c.parser.Feed(stream.substr(cut2));
      ASSERT_EQ(c.events.size(), 1u) << cut << "," << cut2;
      EXPECT_EQ(c.events[0].data, "{\"x\":\n2}");
      EXPECT_EQ(c.events[0].id, "7");
      ASSERT_EQ(c.comments.size(), 1u);
      EXPECT_EQ(c.comments[0], "heartbeat");
    }
  }
}

TEST(SseParserTest, CommentsRetryAndEmptyEvents) {
  Collected c;
  c.parser.Feed(": hello\nretry: 2500\nretry: x1\n\nevent: nothing\n\n");
  EXPECT_TRUE(c.events.empty());  // no data, nothing dispatched
  EXPECT_EQ(c.comments, std::vector<std::string>{"hello"});
  EXPECT_EQ(c.parser.retry_ms(), 2500);
}

TEST(SseParserTest, IdPersistsAcrossEventsAndUnknownFieldsAreIgnored) {
  Collected c;
  c.parser.Feed("id: 5\ndata: a\n\nfoo: bar\ndata: b\n\n");
  ASSERT_EQ(c.events.size(), 2u);
  EXPECT_EQ(c.events[1].id, "5");
  EXPECT_EQ(c.parser.last_event_id(), "5");
}

// A `put` is one data line of tens of MB that arrives in many chunks: its buffer is taken over
// by the event rather than copied, and a later data line of the same event is still appended.
TEST(SseParserTest, ALargeDataLineInManyChunksArrivesWholeAndLaterLinesAppend) {
  std::string big(20u << 20, 'x');  // 20 MB, in 64 KiB chunks
  for (size_t i = 0; i < big.size(); i += 4099) big[i] = static_cast<char>('a' + i % 26);
  const std::string stream = "event: put\ndata: " + big + "\ndata: tail\n\nevent: changes\ndata: small\n\n";
  Collected c;
  for (size_t i = 0; i < stream.size(); i += 65536) c.parser.Feed(std::string_view(stream).substr(i, 65536));
  ASSERT_EQ(c.events.size(), 2u);
  EXPECT_EQ(c.events[0].type, "put");
  ASSERT_EQ(c.events[0].data.size(), big.size() + 5);
  EXPECT_TRUE(c.events[0].data == big + "\ntail");
  EXPECT_EQ(c.events[1].type, "changes");
  EXPECT_EQ(c.events[1].data, "small");
}

// The view an event hands out has rules::kJsonPadding bytes after it that may be read (ASan
// would catch a read past the block), whichever way the data was gathered.
TEST(SseParserTest, EventDataIsPaddedForInPlaceParsing) {
  std::vector<std::string> seen;
  SseParser parser([&](const SseEvent& e) {
    volatile char last = 0;
    for (size_t i = 0; i < rules::kJsonPadding; ++i) last = e.data.data()[e.data.size() + i];
    (void)last;
    seen.emplace_back(e.data);
  });
  parser.Feed("data: {\"a\":1}\n\n");                      // one chunk
  parser.Feed("data: {\"b\":");                             // across chunks: the line's buffer
  parser.Feed("2}\n\ndata: [1]\ndata: [2]\n\n");          // two lines joined
  EXPECT_EQ(seen, (std::vector<std::string>{"{\"a\":1}", "{\"b\":2}", "[1]\n[2]"}));
}

TEST(BackoffTest, GrowsWithJitterCapsResetsAndNeverOverflowsOver10000Attempts) {
  using ms = std::chrono::milliseconds;
  Backoff b(ms(1000), ms(30000), ms(60000), /*seed=*/7);
  ms first = b.Next();
  EXPECT_GE(first, ms(500));
  EXPECT_LE(first, ms(1000));
  ms second = b.Next();
  EXPECT_GE(second, ms(1000));
  EXPECT_LE(second, ms(2000));
  for (int i = 0; i < 10000; ++i) {
    ms d = b.Next();
    ASSERT_GE(d, ms(500)) << i;
    ASSERT_LE(d, ms(30000)) << i;
    if (i > 10) {
      ASSERT_GE(d, ms(15000)) << i;  // capped at max, jittered within [max/2, max]
    }
  }
  b.Connected(ms(59000));  // not stable long enough
  EXPECT_GE(b.Next(), ms(15000));
  b.Connected(ms(60000));
  EXPECT_LE(b.Next(), ms(1000));
}

}  // namespace
}  // namespace gonfalon::sdk::internal
