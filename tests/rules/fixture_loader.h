#pragma once
// Loads the golden fixtures of tests/fixtures/rules for the suites that run them.

#include <algorithm>
#include <cstdio>
#include <cstdlib>
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

// A fixture that cannot be read or parsed stops the suite at once, naming the file: a broken
// fixture must never turn into zero test cases that all "pass".
[[noreturn]] inline void FixtureFailure(const std::string& what) {
  std::fprintf(stderr, "fixture loading failed: %s\n", what.c_str());
  std::abort();
}

inline std::string ReadFileOrDie(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) FixtureFailure(p.string() + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Every *.json file of a directory, parsed, in name order.
inline std::vector<std::pair<std::string, rules::Value>> LoadJsonDir(const std::string& dir) {
  std::vector<std::filesystem::path> paths;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".json") paths.push_back(e.path());
  }
  if (ec) FixtureFailure(dir + ": " + ec.message());
  if (paths.empty()) FixtureFailure(dir + ": no *.json fixtures");
  std::sort(paths.begin(), paths.end());
  std::vector<std::pair<std::string, rules::Value>> out;
  for (const auto& p : paths) {
    auto v = rules::ParseJson(ReadFileOrDie(p));
    if (!v.ok()) FixtureFailure(p.string() + ": " + std::string(v.status().message()));
    out.emplace_back(p.filename().string(), std::move(*v));
  }
  return out;
}

}  // namespace gonfalon::testing
