#include "log.h"

#include <gtest/gtest.h>

#include "gonfalon/rules/value.h"

namespace gonfalon::server {
namespace {

// Request data once went into log lines unescaped: a quote or a newline forged fields or lines.
TEST(LogTest, EveryFieldIsEscapedAndTheLineIsOneJsonObject) {
  std::string line = FormatLogLine(LogLevel::kWarn, "bad \"thing\"\n{\"level\":\"forged\"}",
                                   {{"path", "/a\"b\\c\r\n"}, {"status", 404}, {"seconds", 0.25}});
  EXPECT_EQ(line.find('\n'), std::string::npos);
  auto parsed = rules::ParseJson(line);
  ASSERT_TRUE(parsed.ok()) << parsed.status() << ": " << line;
  EXPECT_EQ(parsed->Find("level")->as_string(), "warn");
  EXPECT_EQ(parsed->Find("msg")->as_string(), "bad \"thing\"\n{\"level\":\"forged\"}");
  EXPECT_EQ(parsed->Find("path")->as_string(), "/a\"b\\c\r\n");
  EXPECT_EQ(parsed->Find("status")->as_number(), 404);
  EXPECT_EQ(parsed->Find("seconds")->as_number(), 0.25);
  EXPECT_EQ(parsed->as_object().size(), 5u);
}

}  // namespace
}  // namespace gonfalon::server
