#pragma once
// Group commit: writers queue their operations in order; the writer at the head of the queue
// becomes the leader, writes every queued writer's operations in one RocksDB WriteBatch with
// one (synced) WAL write, and wakes the others. A group is atomic on disk, so a crash never
// leaves a later change set without an earlier one.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
}  // namespace rocksdb

namespace gonfalon::storage::internal {

struct WriteOp {
  enum class Type : uint8_t { kPut, kDelete, kDeleteRange };
  Type type;
  rocksdb::ColumnFamilyHandle* cf;
  std::string key;
  std::string value;  // kPut: the value; kDeleteRange: the exclusive end key
};

class CommitQueue {
 public:
  struct Writer {
    std::vector<WriteOp> ops;
    absl::Status status;
    bool done = false;
    std::condition_variable cv;
  };

  CommitQueue(rocksdb::DB* db, bool sync) : db_(db), sync_(sync) {}

  // Puts the writer in line. Callers enqueue while holding the lock that orders their
  // change sets (the environment's), so the queue order is the sequence order.
  void Enqueue(Writer& w);
  // Blocks until the writer's operations are durable (or failed).
  absl::Status Wait(Writer& w);

  int64_t groups() const { return groups_; }
  int64_t writes() const { return writes_; }

 private:
  rocksdb::DB* db_;
  bool sync_;
  std::mutex mu_;
  std::deque<Writer*> queue_;  // REQUIRES: mu_ held
  int64_t groups_ = 0;         // REQUIRES: mu_ held to write
  int64_t writes_ = 0;
};

}  // namespace gonfalon::storage::internal
