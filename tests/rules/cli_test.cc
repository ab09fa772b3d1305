#include "server/src/eval_command.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "gonfalon/rules/value.h"

namespace gonfalon::server {
namespace {

class EvalCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("gonfalon-cli-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    auto p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
  int Run(std::vector<std::string> args) {
    out_.str("");
    err_.str("");
    return RunEvalCommand(args, out_, err_);
  }

  std::filesystem::path dir_;
  std::ostringstream out_, err_;
};

constexpr char kFlags[] = R"({"flags":{
  "a":{"key":"a","on":true,"variations":[1,2],"offVariation":0,"fallthrough":{"variation":1}},
  "b":{"key":"b","on":false,"variations":["x","y"],"offVariation":0,"fallthrough":{"variation":1}}}})";

TEST_F(EvalCommandTest, PrintsOneLinePerFlagAndContext) {
  std::string data = Write("flags.json", kFlags);
  std::string contexts = Write("ctx.jsonl", "{\"key\":\"u1\"}\n\n{\"kind\":\"org\",\"key\":\"o\"}\n");
  ASSERT_EQ(Run({"--data", data, "--contexts", contexts}), 0) << err_.str();
  std::istringstream lines(out_.str());
  std::vector<rules::Value> parsed;
  for (std::string line; std::getline(lines, line);) parsed.push_back(*rules::ParseJson(line));
  ASSERT_EQ(parsed.size(), 4u);
  EXPECT_EQ(rules::ToJson(parsed[0]),
            R"({"flag":"a","context":{"key":"u1"},"value":2,"variationIndex":1,"reason":{"kind":"FALLTHROUGH"}})");
  EXPECT_EQ(parsed[1].Find("reason")->Find("kind")->as_string(), "OFF");
  EXPECT_EQ(parsed[3].Find("context")->Find("kind")->as_string(), "org");
  EXPECT_NE(err_.str().find("2 flags loaded and compiled"), std::string::npos);
}

TEST_F(EvalCommandTest, OneFlagWithExplain) {
  std::string data = Write("flags.json", kFlags);
  ASSERT_EQ(Run({"--data", data, "--flag", "a", "--context", R"({"key":"u1"})", "--explain"}), 0);
  auto line = rules::ParseJson(out_.str());
  ASSERT_TRUE(line.ok()) << out_.str();
  EXPECT_EQ(rules::ToJson(*line->Find("trace")), R"([{"step":"fallthrough"}])");
}

TEST_F(EvalCommandTest, MalformedFileNamesThePathAndFails) {
  std::string data = Write("bad.json", R"({"flags":{"a":{"key":"a","on":"yes"}}})");
  EXPECT_EQ(Run({"--data", data, "--context", R"({"key":"u1"})"}), 1);
  EXPECT_EQ(err_.str(), "gonfalon eval: " + data + ": flags.a.on: expected a boolean, got string\n");
  EXPECT_EQ(out_.str(), "");
}

TEST_F(EvalCommandTest, UnknownOperatorIsRejectedUnlessLenient) {
  std::string data = Write("op.json", R"({"flags":{"a":{"key":"a","on":true,"variations":[1],
    "fallthrough":{"variation":0},"rules":[{"id":"r","variation":0,
    "clauses":[{"attribute":"x","op":"startswith","values":["a"]}]}]}}})");
  EXPECT_EQ(Run({"--data", data, "--context", R"({"key":"u1"})"}), 1);
  EXPECT_NE(err_.str().find("flags.a.rules[0].clauses[0].op: unknown operator \"startswith\""),
            std::string::npos)
      << err_.str();
  EXPECT_EQ(Run({"--data", data, "--context", R"({"key":"u1"})", "--lenient"}), 0) << err_.str();
  EXPECT_NE(out_.str().find("FALLTHROUGH"), std::string::npos);
}

TEST_F(EvalCommandTest, BadContextLineNamesTheLine) {
  std::string data = Write("flags.json", kFlags);
  std::string contexts = Write("ctx.jsonl", "{\"key\":\"u1\"}\n{oops\n");
  EXPECT_EQ(Run({"--data", data, "--contexts", contexts}), 1);
  EXPECT_NE(err_.str().find(contexts + ":2: invalid JSON"), std::string::npos) << err_.str();
}

TEST_F(EvalCommandTest, InvalidContextEvaluatesToUserNotSpecified) {
  std::string data = Write("flags.json", kFlags);
  ASSERT_EQ(Run({"--data", data, "--flag", "a", "--context", R"({"kind":"user"})"}), 0);
  EXPECT_NE(out_.str().find(R"("errorKind":"USER_NOT_SPECIFIED")"), std::string::npos);
}

TEST_F(EvalCommandTest, UsageErrors) {
  EXPECT_EQ(Run({}), 2);
  EXPECT_EQ(Run({"--data"}), 2);
  EXPECT_EQ(Run({"--data", "x", "--context", "{}", "--contexts", "y"}), 2);
  EXPECT_EQ(Run({"--bogus"}), 2);
  EXPECT_EQ(Run({"--data", (dir_ / "missing.json").string(), "--context", "{}"}), 1);
  EXPECT_NE(err_.str().find("cannot open"), std::string::npos);
  std::string data = Write("flags.json", kFlags);
  EXPECT_EQ(Run({"--data", data, "--flag", "zzz", "--context", "{\"key\":\"u\"}"}), 1);
  EXPECT_NE(err_.str().find("has no flag \"zzz\""), std::string::npos);
}

}  // namespace
}  // namespace gonfalon::server
