// Runs the fuzz target over its seed corpus (and any crash reproducers saved there), so the
// ordinary test suite keeps every input the fuzzer ever found interesting.
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/rules/fixture_loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

TEST(FuzzCorpusTest, EveryCorpusInputRunsCleanly) {
  int inputs = 0;
  for (const auto& e : std::filesystem::directory_iterator(GONFALON_FUZZ_CORPUS_DIR)) {
    std::string bytes = gonfalon::testing::ReadFileOrDie(e.path());
    EXPECT_EQ(LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), 0)
        << e.path();
    ++inputs;
  }
  EXPECT_GE(inputs, 10);
}

TEST(FuzzCorpusTest, TruncatedFixturesNeverCrash) {
  // Every prefix of a real payload: the parser and decoder see every way a file can be cut.
  std::string bytes = gonfalon::testing::ReadFileOrDie(GONFALON_FUZZ_CORPUS_DIR "/rollouts.json");
  ASSERT_GT(bytes.size(), 100u);
  for (size_t n = 0; n < bytes.size(); n += 7) {
    EXPECT_EQ(LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), n), 0);
  }
}

}  // namespace
