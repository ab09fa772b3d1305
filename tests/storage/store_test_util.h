#pragma once
// A store in a fresh temporary directory, with a fake clock.

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <string>

#include "status_testing.h"
#include "gonfalon/rules/codec.h"
#include "gonfalon/storage/store.h"

namespace gonfalon::storage {

inline std::string TempDir(const std::string& tag) {
  auto dir = std::filesystem::temp_directory_path() /
             ("gonfalon-" + tag + "-" + std::to_string(::getpid()) + "-" +
              std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
  std::filesystem::create_directories(dir);
  return dir.string();
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir("store");
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  virtual Options MakeOptions() {
    Options o;
    o.path = dir_ + "/db";
    o.sync = false;  // durability has its own test (crash_test); here speed matters
    o.now_ms = [this] { return clock_.load(); };
    return o;
  }
  void Reopen() { Reopen(MakeOptions()); }
  void Reopen(const Options& options) {
    store_.reset();
    auto s = Store::Open(options);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  // A project "shop" with environments "production" and "staging" and a boolean flag "checkout".
  void MakeShop() {
    ASSERT_OK(store_->CreateProject({.key = "shop", .name = "Shop"}, actor_));
    ASSERT_OK(store_->CreateEnvironment("shop", {.key = "production"}, actor_));
    ASSERT_OK(store_->CreateEnvironment("shop", {.key = "staging"}, actor_));
    FlagMeta m;
    m.key = "checkout";
    m.variations = {rules::Value(false), rules::Value(true)};
    auto f = store_->CreateFlag("shop", m, actor_, "new flag");
    ASSERT_TRUE(f.ok()) << f.status();
  }
  static rules::Value Json(const char* text) { return rules::ParseJson(text).value(); }
  absl::StatusOr<AppliedChangeSet> ApplyOne(ItemKind kind, const std::string& key, const char* data,
                                            std::optional<int64_t> expect = std::nullopt,
                                            const std::string& env = "production") {
    ChangeSet cs;
    cs.project = "shop";
    cs.environment = env;
    cs.actor = actor_;
    cs.items.push_back({kind, key, expect, Json(data), false});
    return store_->Apply(cs);
  }

  std::string dir_;
  std::atomic<int64_t> clock_{1'700'000'000'000};
  Actor actor_{"tester"};
  std::unique_ptr<Store> store_;
};

}  // namespace gonfalon::storage
