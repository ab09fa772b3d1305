// Synced stores lay each new write-ahead log over a prefilled file of zeros
// (storage/src/prefilled_wal.h). What survives a SIGKILL with such a log (a tail of zeros after
// the last record) is checked by crash_test, which runs with the default options.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "prefilled_wal.h"
#include "store_test_util.h"

namespace gonfalon::storage {
namespace {

namespace fs = std::filesystem;

// The log RocksDB is writing: the highest-numbered `<digits>.log` (an older one, e.g. the
// empty log a clean close leaves, stays until it is obsolete).
fs::path CurrentWal(const std::string& dir) {
  fs::path newest;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".log" && (newest.empty() || e.path().filename() > newest.filename())) {
      newest = e.path();
    }
  }
  return newest;
}

// Waits (with a deadline) until `path` exists with `bytes` bytes.
bool EventuallyFileOfSize(const fs::path& path, uint64_t bytes) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    std::error_code ec;
    if (fs::file_size(path, ec) == bytes && !ec) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

class PrefilledWalTest : public StoreTest {
 protected:
  Options MakeOptions() override {
    Options o = StoreTest::MakeOptions();
    o.sync = true;
    o.wal_prefill_bytes = prefill_;
    return o;
  }
  void WriteSome(int n) {
    for (int i = 0; i < n; ++i) {
      std::string data = R"({"included":["u)" + std::to_string(i) + R"("]})";
      ASSERT_TRUE(ApplyOne(ItemKind::kSegment, "beta", data.c_str()).ok());
    }
  }
  int64_t prefill_ = 1 << 20;
};

TEST_F(PrefilledWalTest, SyncedWritesOverwriteTheZerosWithoutGrowingTheLog) {
  MakeShop();
  WriteSome(50);
  fs::path log = CurrentWal(dir_ + "/db");
  ASSERT_FALSE(log.empty());
  // The writes went into the prefilled file from its start: its size is still the prefill's,
  // and its first bytes are a record, not zeros.
  EXPECT_EQ(fs::file_size(log), 1u << 20);
  std::ifstream in(log, std::ios::binary);
  std::vector<char> head(64);
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  EXPECT_TRUE(std::any_of(head.begin(), head.end(), [](char c) { return c != 0; }));
  // The next spare is written in the background.
  EXPECT_TRUE(EventuallyFileOfSize(dir_ + "/db/" + internal::kPrefilledWalName, 1u << 20));
}

TEST_F(PrefilledWalTest, WhatWasWrittenIsReadBackAfterACloseAndAfterReopeningOnTheSpare) {
  MakeShop();
  WriteSome(30);
  ASSERT_TRUE(EventuallyFileOfSize(dir_ + "/db/" + internal::kPrefilledWalName, 1u << 20));
  Reopen();  // a clean close, then an open whose first log takes the spare left behind
  auto beta = store_->GetSegment("shop", "production", "beta");
  ASSERT_TRUE(beta.ok()) << beta.status();
  EXPECT_EQ(beta->included, std::vector<std::string>{"u29"});
  WriteSome(5);
  Reopen();
  beta = store_->GetSegment("shop", "production", "beta");
  ASSERT_TRUE(beta.ok()) << beta.status();
  EXPECT_EQ(beta->included, std::vector<std::string>{"u4"});
}

TEST_F(PrefilledWalTest, ACheckpointTakenWhileTheLogHoldsZerosOpensWithEveryWrite) {
  MakeShop();
  WriteSome(25);
  std::string copy = dir_ + "/backup";
  ASSERT_TRUE(store_->Checkpoint(copy).ok());
  WriteSome(3);  // after the checkpoint: not in it
  Options o = MakeOptions();
  o.path = copy;
  auto backup = Store::Open(o);
  ASSERT_TRUE(backup.ok()) << backup.status();
  auto beta = (*backup)->GetSegment("shop", "production", "beta");
  ASSERT_TRUE(beta.ok()) << beta.status();
  EXPECT_EQ(beta->included, std::vector<std::string>{"u24"});
}

TEST_F(PrefilledWalTest, WritesPastTheZerosAppendAsBefore) {
  prefill_ = 4096;  // a few change sets' worth
  Reopen();
  MakeShop();
  WriteSome(100);
  fs::path log = CurrentWal(dir_ + "/db");
  ASSERT_FALSE(log.empty());
  EXPECT_GT(fs::file_size(log), 4096u);
  Reopen();
  auto beta = store_->GetSegment("shop", "production", "beta");
  ASSERT_TRUE(beta.ok()) << beta.status();
  EXPECT_EQ(beta->included, std::vector<std::string>{"u99"});
}

class PlainWalTest : public PrefilledWalTest {
 protected:
  void SetUp() override {
    prefill_ = 0;
    PrefilledWalTest::SetUp();
  }
};

TEST_F(PlainWalTest, ZeroPrefillAppendsAndLeavesNoSpare) {
  MakeShop();
  WriteSome(20);
  fs::path log = CurrentWal(dir_ + "/db");
  ASSERT_FALSE(log.empty());
  EXPECT_LT(fs::file_size(log), 1u << 20);
  EXPECT_FALSE(fs::exists(dir_ + "/db/" + internal::kPrefilledWalName));
}

}  // namespace
}  // namespace gonfalon::storage
