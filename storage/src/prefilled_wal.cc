#include "prefilled_wal.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "rocksdb/file_system.h"

namespace gonfalon::storage::internal {

namespace {

// "<dir>/<digits>.log" is a WAL file (RocksDB's info log is "LOG", its archives "LOG.old.*").
bool IsWalFile(const std::string& path, std::string* dir) {
  size_t slash = path.rfind('/');
  std::string_view name = std::string_view(path).substr(slash == std::string::npos ? 0 : slash + 1);
  constexpr std::string_view kSuffix = ".log";
  if (name.size() <= kSuffix.size() || name.substr(name.size() - kSuffix.size()) != kSuffix) return false;
  std::string_view digits = name.substr(0, name.size() - kSuffix.size());
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) return false;
  *dir = slash == std::string::npos ? "." : path.substr(0, slash);
  return true;
}

// True when `path` is a complete spare: the filler renames it into place only once written and
// synced, so its size says it is whole.
bool SpareComplete(const std::string& path, uint64_t bytes) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) == bytes;
}

// Writes `bytes` zeros to <dir>/wal.prefilled.tmp, syncs them, and renames the file to the
// spare's name. On any failure the temporary file is removed and false returned: the caller
// then creates plain WAL files, which is correct, only slower to sync.
bool WriteSpare(const std::string& dir, uint64_t bytes) {
  std::string tmp = dir + "/" + kPrefilledWalName + ".tmp";
  std::string spare = dir + "/" + kPrefilledWalName;
  int fd = ::open(tmp.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  static const std::vector<char> zeros(1 << 20, 0);
  bool ok = true;
  for (uint64_t done = 0; ok && done < bytes;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(zeros.size(), bytes - done));
    ssize_t w = ::write(fd, zeros.data(), n);
    if (w < 0 && errno == EINTR) continue;
    ok = w > 0;
    if (ok) done += static_cast<uint64_t>(w);
  }
  ok = ok && ::fdatasync(fd) == 0;
  ok = ::close(fd) == 0 && ok;
  ok = ok && ::rename(tmp.c_str(), spare.c_str()) == 0;
  if (!ok) ::unlink(tmp.c_str());
  return ok;
}

class PrefilledWalFileSystem final : public rocksdb::FileSystemWrapper {
 public:
  PrefilledWalFileSystem(const std::shared_ptr<rocksdb::FileSystem>& base, uint64_t bytes)
      : rocksdb::FileSystemWrapper(base), bytes_(bytes) {}

  ~PrefilledWalFileSystem() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (filler_.joinable()) filler_.join();
  }

  static const char* kClassName() { return "GonfalonPrefilledWalFileSystem"; }
  const char* Name() const override { return kClassName(); }

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    std::string dir;
    if (bytes_ == 0 || !IsWalFile(fname, &dir)) return target()->NewWritableFile(fname, options, result, dbg);
    std::string spare = dir + "/" + kPrefilledWalName;
    std::unique_lock<std::mutex> lock(mu_);
    bool reused = false;
    rocksdb::IOStatus s;
    if (!filling_) {  // else the spare is being written: this log is a plain file
      // The store's first log: a spare left by the previous run, or one written now (~20 ms for
      // 8 MiB), so that the writes right after a start sync cheaply too.
      if (!first_done_ && !SpareComplete(spare, bytes_)) (void)WriteSpare(dir, bytes_);
      if (SpareComplete(spare, bytes_)) {
        s = target()->ReuseWritableFile(fname, spare, options, result, dbg);
        reused = s.ok();
      }
    }
    first_done_ = true;
    if (!reused) s = target()->NewWritableFile(fname, options, result, dbg);
    if (s.ok() && !filling_ && !SpareComplete(spare, bytes_)) {
      filling_ = true;
      fill_dir_ = dir;
      if (!filler_.joinable()) filler_ = std::thread([this] { FillerLoop(); });
      cv_.notify_one();
    }
    return s;
  }

 private:
  void FillerLoop() {
    // Background work: it must not take a core from request threads.
    setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 19);
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stopping_ || (filling_ && !fill_dir_.empty()); });
      if (stopping_) return;
      std::string dir = std::exchange(fill_dir_, {});
      lock.unlock();
      (void)WriteSpare(dir, bytes_);
      lock.lock();
      filling_ = false;
    }
  }

  const uint64_t bytes_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool first_done_ = false;  // GUARDED_BY(mu_)
  bool filling_ = false;     // GUARDED_BY(mu_): the filler is writing the next spare
  bool stopping_ = false;    // GUARDED_BY(mu_)
  std::string fill_dir_;     // GUARDED_BY(mu_)
  std::thread filler_;
};

}  // namespace

std::shared_ptr<rocksdb::FileSystem> NewPrefilledWalFileSystem(std::shared_ptr<rocksdb::FileSystem> base,
                                                               uint64_t prefill_bytes) {
  return std::make_shared<PrefilledWalFileSystem>(std::move(base), prefill_bytes);
}

}  // namespace gonfalon::storage::internal
