#pragma once
// Loads the golden fixtures of tests/fixtures/rules for the suites that run them.

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gonfalon/rules/value.h"

namespace gonfalon::testing {

struct FixtureCase {
  std::string file;
  std::string name;
  std::string flag;
  rules::Value context;
  rules::Value expect;
  const rules::Value* data;  // the file's "data" member, owned by the loader
};

inline std::string ReadFileOrDie(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Every *.json file of a directory, parsed, in name order.
inline std::vector<std::pair<std::string, rules::Value>> LoadJsonDir(const std::string& dir) {
  std::vector<std::filesystem::path> paths;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".json") paths.push_back(e.path());
  }
  std::sort(paths.begin(), paths.end());
  std::vector<std::pair<std::string, rules::Value>> out;
  for (const auto& p : paths) {
    auto v = rules::ParseJson(ReadFileOrDie(p));
    out.emplace_back(p.filename().string(), v.ok() ? *v : rules::Value());
  }
  return out;
}

}  // namespace gonfalon::testing
