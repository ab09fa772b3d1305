#include "commit_queue.h"

#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"

namespace gonfalon::storage::internal {

namespace {
constexpr size_t kMaxGroup = 256;
}  // namespace

void CommitQueue::Enqueue(Writer& w) {
  std::lock_guard<std::mutex> l(mu_);
  queue_.push_back(&w);
}

absl::Status CommitQueue::Wait(Writer& w) {
  std::unique_lock<std::mutex> l(mu_);
  while (!w.done && queue_.front() != &w) w.cv.wait(l);
  if (w.done) return w.status;

  // Leader: everything queued so far goes out in one write.
  std::vector<Writer*> group;
  for (size_t i = 0; i < queue_.size() && i < kMaxGroup; ++i) group.push_back(queue_[i]);
  l.unlock();

  rocksdb::WriteBatch batch;
  rocksdb::Status s;
  for (Writer* g : group) {
    for (const WriteOp& op : g->ops) {
      switch (op.type) {
        case WriteOp::Type::kPut:
          s = batch.Put(op.cf, op.key, op.value);
          break;
        case WriteOp::Type::kDelete:
          s = batch.Delete(op.cf, op.key);
          break;
        case WriteOp::Type::kDeleteRange:
          s = batch.DeleteRange(op.cf, op.key, op.value);
          break;
      }
      if (!s.ok()) break;
    }
    if (!s.ok()) break;
  }
  if (s.ok()) {
    rocksdb::WriteOptions wo;
    wo.sync = sync_;
    s = db_->Write(wo, &batch);
  }
  absl::Status status =
      s.ok() ? absl::OkStatus() : absl::InternalError("RocksDB write failed: " + s.ToString());

  l.lock();
  ++groups_;
  writes_ += static_cast<int64_t>(group.size());
  for (Writer* g : group) {
    queue_.pop_front();
    g->status = status;
    g->done = true;
    if (g != &w) g->cv.notify_one();
  }
  if (!queue_.empty()) queue_.front()->cv.notify_one();
  return w.status;
}

}  // namespace gonfalon::storage::internal
