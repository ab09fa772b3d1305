#include "client_impl.h"

namespace gonfalon::sdk {

bool Client::Impl::LoadFile(const std::string& path, DataSource source, std::string& err) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    err = StrCat("cannot open ", path);
    return false;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  absl::StatusOr<rules::Environment> env =
      rules::ParseEnvironment(ss.str(), {}, rules::ThreadsParallelFor(cfg_.compile_threads));
  if (!env.ok()) {
    err = StrCat(path, ": ", env.status().message());
    return false;
  }
  PublishAll(std::move(*env), source);
  return true;
}

void Client::Impl::MaybeWriteCache(bool now) {
  if (cfg_.cache_file.empty()) return;
  std::shared_ptr<const rules::Snapshot> snap;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!cache_dirty_ || data_ == nullptr) return;
    if (!now && Clock::now() - cache_written_ < kCacheWriteInterval) return;
    cache_dirty_ = false;
    cache_written_ = Clock::now();
    snap = data_;
  }
  std::string text = snap->PayloadJson();
  // Write aside, then rename: a crash leaves either the old cache or the new one.
  std::string tmp = cfg_.cache_file + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) {
      Log(LogLevel::kWarn, StrCat("cannot write cache ", tmp));
      return;
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, cfg_.cache_file, ec);
  if (ec) Log(LogLevel::kWarn, StrCat("cannot replace cache ", cfg_.cache_file, ": ", ec.message()));
}

}  // namespace gonfalon::sdk
