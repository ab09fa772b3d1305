// SendBatch over real sockets (socketpairs): what each sink's peer receives, in what order, and
// what each sink is told of its writes, batched through io_uring and with plain Send.
#include "send_batch.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "hub.h"

namespace gonfalon::server {
namespace {

// One end of a socketpair as a stream: writes straight to it when `direct`, records every call.
class SocketSink : public StreamSink {
 public:
  explicit SocketSink(bool direct = true) : direct_(direct) {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    fd_ = fds[0];
    peer_ = fds[1];
  }
  ~SocketSink() override {
    if (fd_ >= 0) ::close(fd_);
    if (peer_ >= 0) ::close(peer_);
  }

  void Send(std::shared_ptr<const std::string> chunk) override { via_send_.push_back(*chunk); }
  void Close(std::shared_ptr<const std::string>) override {}
  int BeginDirectSend() override {
    if (!direct_) return -1;
    EXPECT_FALSE(begun_) << "a second write began before the first ended (its send lock held)";
    begun_ = true;
    return fd_;
  }
  void EndDirectSend(std::shared_ptr<const std::string> chunk, long result) override {
    EXPECT_TRUE(begun_);
    begun_ = false;
    ended_.push_back({chunk ? chunk->size() : 0, result});
  }

  // What the peer can read now.
  std::string Received() {
    std::string out;
    char buf[65536];
    for (;;) {
      ssize_t n = ::recv(peer_, buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }
  void ClosePeer() {
    ::close(peer_);
    peer_ = -1;
  }
  void ShrinkSendBuffer() {
    int size = 4096;
    EXPECT_EQ(::setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &size, sizeof size), 0);
  }

  struct Ended {
    size_t chunk_size;
    long result;
  };
  const std::vector<Ended>& ended() const { return ended_; }
  const std::vector<std::string>& via_send() const { return via_send_; }

 private:
  bool direct_;
  int fd_ = -1;
  int peer_ = -1;
  bool begun_ = false;
  std::vector<Ended> ended_;
  std::vector<std::string> via_send_;
};

std::shared_ptr<const std::string> Chunk(std::string s) { return std::make_shared<const std::string>(std::move(s)); }

// The batch tests need io_uring; a kernel or seccomp profile that refuses it leaves the
// fallback, which FallsBackToSendWithoutIoUring covers everywhere.
#define REQUIRE_IO_URING(batch)                                              \
  if (!(batch).batched()) GTEST_SKIP() << "io_uring is not available here"

TEST(SendBatchTest, WritesEveryChunkToItsSocketAndReportsTheBytes) {
  SendBatch batch(16, 1 << 20);
  REQUIRE_IO_URING(batch);
  std::vector<std::shared_ptr<SocketSink>> sinks;
  for (int i = 0; i < 5; ++i) sinks.push_back(std::make_shared<SocketSink>());
  for (int i = 0; i < 5; ++i) batch.Add(sinks[i], Chunk("event " + std::to_string(i)));
  EXPECT_TRUE(sinks[0]->ended().empty()) << "nothing is written before the flush";
  batch.Flush();
  EXPECT_EQ(batch.submissions(), 1u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(sinks[i]->Received(), "event " + std::to_string(i));
    ASSERT_EQ(sinks[i]->ended().size(), 1u);
    EXPECT_EQ(sinks[i]->ended()[0].result, 7);
    EXPECT_TRUE(sinks[i]->via_send().empty());
  }
}

TEST(SendBatchTest, SubmitsWhenFullByCountAndByBytes) {
  SendBatch by_count(4, 1 << 20);
  REQUIRE_IO_URING(by_count);
  std::vector<std::shared_ptr<SocketSink>> sinks;
  for (int i = 0; i < 10; ++i) sinks.push_back(std::make_shared<SocketSink>());
  for (auto& s : sinks) by_count.Add(s, Chunk("x"));
  EXPECT_EQ(by_count.submissions(), 2u) << "4 + 4 submitted, 2 queued";
  by_count.Flush();
  EXPECT_EQ(by_count.submissions(), 3u);

  // 1,000 bytes a chunk, at most 2,500 a submission: two chunks each; a chunk larger than the
  // cap goes alone.
  SendBatch by_bytes(64, 2500);
  for (int i = 0; i < 6; ++i) by_bytes.Add(sinks[i], Chunk(std::string(1000, 'a')));
  EXPECT_EQ(by_bytes.submissions(), 2u);
  by_bytes.Add(sinks[6], Chunk(std::string(3000, 'b')));
  EXPECT_EQ(by_bytes.submissions(), 3u);
  by_bytes.Add(sinks[7], Chunk("c"));
  EXPECT_EQ(by_bytes.submissions(), 4u) << "the oversized chunk was submitted on its own";
  by_bytes.Flush();
  EXPECT_EQ(by_bytes.submissions(), 5u);
  EXPECT_EQ(sinks[0]->Received(), "x" + std::string(1000, 'a'));
  EXPECT_EQ(sinks[6]->Received(), "x" + std::string(3000, 'b'));
  EXPECT_EQ(sinks[7]->Received(), "xc");
}

TEST(SendBatchTest, TheSameSinkTwiceIsWrittenInOrder) {
  SendBatch batch(16, 1 << 20);
  REQUIRE_IO_URING(batch);
  auto a = std::make_shared<SocketSink>();
  auto b = std::make_shared<SocketSink>();
  batch.Add(a, Chunk("first "));
  batch.Add(b, Chunk("other"));
  batch.Add(a, Chunk("second"));  // SocketSink fails the test if its first write had not ended
  batch.Flush();
  EXPECT_EQ(a->Received(), "first second");
  EXPECT_EQ(b->Received(), "other");
  ASSERT_EQ(a->ended().size(), 2u);
  EXPECT_EQ(batch.submissions(), 2u);
}

TEST(SendBatchTest, ASinkThatDeclinesGetsSend) {
  SendBatch batch(16, 1 << 20);
  REQUIRE_IO_URING(batch);
  auto direct = std::make_shared<SocketSink>();
  auto queued = std::make_shared<SocketSink>(/*direct=*/false);
  batch.Add(direct, Chunk("one"));
  batch.Add(queued, Chunk("two"));
  EXPECT_EQ(queued->via_send(), std::vector<std::string>{"two"}) << "at once, not at the flush";
  batch.Flush();
  EXPECT_EQ(direct->Received(), "one");
  EXPECT_EQ(queued->Received(), "");
  EXPECT_TRUE(queued->ended().empty());
}

TEST(SendBatchTest, AFullSocketReportsWhatItTookAndABrokenOneItsError) {
  SendBatch batch(16, 8 << 20);
  REQUIRE_IO_URING(batch);
  auto full = std::make_shared<SocketSink>();
  full->ShrinkSendBuffer();
  auto broken = std::make_shared<SocketSink>();
  broken->ClosePeer();
  const size_t kBig = 4 << 20;
  batch.Add(full, Chunk(std::string(kBig, 'z')));
  batch.Add(broken, Chunk("lost"));
  batch.Flush();
  ASSERT_EQ(full->ended().size(), 1u);
  EXPECT_GT(full->ended()[0].result, 0) << "a non-blocking write takes what fits";
  EXPECT_LT(full->ended()[0].result, static_cast<long>(kBig)) << "and leaves the rest to queue";
  ASSERT_EQ(broken->ended().size(), 1u);
  EXPECT_EQ(broken->ended()[0].result, -EPIPE);
  // Still full: the next write returns at once (io_uring must not wait for room).
  batch.Add(full, Chunk("more"));
  batch.Flush();
  ASSERT_EQ(full->ended().size(), 2u);
  EXPECT_EQ(full->ended()[1].result, -EAGAIN);
  EXPECT_EQ(static_cast<long>(full->Received().size()), full->ended()[0].result);
}

TEST(SendBatchTest, FallsBackToSendWithoutIoUring) {
  SendBatch batch(16, 1 << 20, /*use_io_uring=*/false);
  EXPECT_FALSE(batch.batched());
  auto a = std::make_shared<SocketSink>();
  batch.Add(a, Chunk("one"));
  batch.Add(a, Chunk("two"));
  batch.Flush();
  EXPECT_EQ(a->via_send(), (std::vector<std::string>{"one", "two"}));
  EXPECT_TRUE(a->ended().empty());
  EXPECT_EQ(batch.submissions(), 0u);
}

}  // namespace
}  // namespace gonfalon::server
