// Durability under SIGKILL: a child process applies synced change sets and prints each
// acknowledged sequence; we kill it at random moments, reopen the store and check that every
// acknowledged change set is there whole and that nothing is there in part.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <random>

#include "status_testing.h"
#include "gonfalon/storage/store.h"
#include "store_test_util.h"

extern char** environ;

namespace gonfalon::storage {
namespace {

class Child {
 public:
  explicit Child(const std::string& dir) {
    int fds[2];
    if (pipe(fds) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::string bin = GONFALON_CRASH_CHILD;
    char* argv[] = {bin.data(), const_cast<char*>(dir.c_str()), nullptr};
    if (posix_spawn(&pid_, bin.c_str(), &actions, nullptr, argv, environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    fd_ = fds[0];
  }
  ~Child() {
    Kill();
    if (fd_ >= 0) close(fd_);
  }
  bool started() const { return pid_ > 0; }

  // The next full line, or "" at EOF or when the deadline passes.
  std::string ReadLine(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return "";
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char chunk[4096];
      ssize_t n = read(fd_, chunk, sizeof chunk);
      if (n <= 0) return "";
      buf_.append(chunk, static_cast<size_t>(n));
    }
  }

  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int status;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string buf_;
};

TEST(CrashTest, AcknowledgedChangeSetsSurviveSigkillWholeAndNothingPartial) {
  std::string dir = TempDir("crash");
  std::string db = dir + "/db";
  unsigned seed = static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count());
  std::mt19937 rng(seed);
  SCOPED_TRACE("seed " + std::to_string(seed));
  constexpr int kRounds = 50;
  int64_t acked_seq = 0, acked_n = 0, total_acks = 0;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    {
      Child child(db);
      ASSERT_TRUE(child.started());
      std::string ready = child.ReadLine(std::chrono::seconds(20));
      ASSERT_EQ(ready.rfind("ready ", 0), 0u) << "child did not start: '" << ready << "'";
      // Kill after a random number of acknowledgements, or after a random pause mid-write.
      int acks_wanted = std::uniform_int_distribution<int>(0, 40)(rng);
      for (int i = 0; i < acks_wanted; ++i) {
        std::string line = child.ReadLine(std::chrono::seconds(10));
        ASSERT_EQ(line.rfind("ack ", 0), 0u) << "'" << line << "'";
        long long seq, n;
        ASSERT_EQ(std::sscanf(line.c_str(), "ack %lld %lld", &seq, &n), 2);
        ASSERT_GT(seq, acked_seq);
        acked_seq = seq;
        acked_n = n;
        ++total_acks;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 3000)(rng)));
      child.Kill();
    }
    auto opened = Store::Open({.path = db, .sync = true});
    ASSERT_TRUE(opened.ok()) << opened.status();
    Store& store = **opened;
    int64_t seq = *store.Sequence("p", "e");
    ASSERT_GE(seq, acked_seq) << "an acknowledged change set was lost";
    if (seq == 0) continue;  // killed before the first change set
    // All three segments carry the same counter at the same version: no partial change set.
    auto a = store.GetSegment("p", "e", "a");
    auto b = store.GetSegment("p", "e", "b");
    auto c = store.GetSegment("p", "e", "c");
    ASSERT_TRUE(a.ok() && b.ok() && c.ok());
    ASSERT_EQ(a->included, b->included);
    ASSERT_EQ(a->included, c->included);
    ASSERT_EQ(a->version, b->version);
    ASSERT_EQ(a->version, c->version);
    int64_t n = std::stoll(a->included.at(0));
    ASSERT_GE(n, acked_n);
    ASSERT_EQ(a->version, seq);  // one change set per sequence: the environment starts empty
    // The change log holds every change set up to the current sequence, whole.
    auto log = store.ChangesSince("p", "e", 0);
    ASSERT_TRUE(log.ok()) << log.status();
    ASSERT_EQ(static_cast<int64_t>(log->size()), seq);
    auto last = rules::ParseJson(log->back());
    ASSERT_OK(last);
    ASSERT_EQ(last->Find("sequence")->as_number(), static_cast<double>(seq));
    ASSERT_EQ(last->Find("items")->as_array().size(), 3u);
    // Restart where the store is, so later rounds check continuity.
    acked_seq = seq;
    acked_n = n;
  }
  EXPECT_GT(total_acks, 0);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace gonfalon::storage
