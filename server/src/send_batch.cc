#include "send_batch.h"

#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "hub.h"
#include "log.h"

namespace gonfalon::server {

struct SendBatch::Ring {
  io_uring ring{};
};

namespace {

// Whether a send through `ring` to a full socket completes at once with -EAGAIN, as a batch
// needs: a kernel that waited for room instead would stall every stream's fan-out behind
// one slow reader. Checked once on a socketpair whose buffer is filled first.
bool FullSocketSendReturnsAtOnce(io_uring& ring) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) != 0) return false;
  int small = 4096;
  ::setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  static const char kFill[4096] = {};  // static: a send left in flight may still read it
  while (::send(fds[0], kFill, sizeof kFill, MSG_DONTWAIT | MSG_NOSIGNAL) > 0) {
  }
  bool at_once = false;
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  io_uring_prep_send(sqe, fds[0], kFill, sizeof kFill, MSG_DONTWAIT | MSG_NOSIGNAL);
  if (io_uring_submit(&ring) == 1) {
    __kernel_timespec wait{.tv_sec = 1, .tv_nsec = 0};
    io_uring_cqe* cqe = nullptr;
    if (io_uring_wait_cqe_timeout(&ring, &cqe, &wait) == 0) {
      at_once = cqe->res == -EAGAIN;
      io_uring_cqe_seen(&ring, cqe);
    }
  }
  ::close(fds[0]);
  ::close(fds[1]);  // a send still waiting fails now (the caller also drops the ring)
  return at_once;
}

}  // namespace

SendBatch::SendBatch(size_t capacity, size_t max_bytes, bool use_io_uring)
    : capacity_(capacity), max_bytes_(max_bytes) {
  entries_.reserve(capacity);
  results_.reserve(capacity);
  if (!use_io_uring) return;
  auto r = std::make_unique<Ring>();
  int error = io_uring_queue_init(static_cast<unsigned>(capacity), &r->ring, 0);
  if (error != 0) {
    // Containers' seccomp profiles often refuse io_uring: the streams work as before, one
    // system call per write.
    Log(LogLevel::kWarn, "stream writes go out one send each: io_uring is not available",
        {{"error", std::string_view(std::strerror(-error))}});
    return;
  }
  if (!FullSocketSendReturnsAtOnce(r->ring)) {
    io_uring_queue_exit(&r->ring);
    Log(LogLevel::kWarn, "stream writes go out one send each: this kernel's io_uring waits on a full socket");
    return;
  }
  ring_ = std::move(r);
}

SendBatch::~SendBatch() {
  Flush();
  if (ring_) io_uring_queue_exit(&ring_->ring);
}

void SendBatch::Add(const std::shared_ptr<StreamSink>& sink, std::shared_ptr<const std::string> chunk) {
  if (!ring_) return sink->Send(std::move(chunk));
  // A sink already in the batch holds its send lock: submit first.
  for (const Entry& e : entries_) {
    if (e.sink == sink) {
      Flush();
      break;
    }
  }
  if (entries_.size() >= capacity_ || (!entries_.empty() && bytes_ + chunk->size() > max_bytes_)) Flush();
  int fd = sink->BeginDirectSend();
  if (fd < 0) return sink->Send(std::move(chunk));
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_->ring);  // the ring has `capacity_` entries, all free
  io_uring_prep_send(sqe, fd, chunk->data(), chunk->size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  io_uring_sqe_set_data64(sqe, entries_.size());
  bytes_ += chunk->size();
  entries_.push_back({sink, std::move(chunk)});
}

void SendBatch::Flush() {
  if (entries_.empty()) return;
  ++submissions_;
  results_.assign(entries_.size(), -EIO);
  size_t done = 0;
  bool broken = false;
  while (done < entries_.size()) {
    int r = io_uring_submit_and_wait(&ring_->ring, static_cast<unsigned>(entries_.size() - done));
    if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
      broken = true;
      break;
    }
    io_uring_cqe* cqe = nullptr;
    unsigned head = 0;
    unsigned seen = 0;
    io_uring_for_each_cqe(&ring_->ring, head, cqe) {
      uint64_t i = io_uring_cqe_get_data64(cqe);
      if (i < results_.size()) results_[i] = cqe->res;
      ++seen;
    }
    io_uring_cq_advance(&ring_->ring, seen);
    done += seen;
  }
  // After a failed submission (not seen in practice: a bug or the kernel out of memory) the
  // writes without a result may or may not have happened: their streams are closed (-EIO), and
  // their clients resume with Last-Event-ID. Batching stops: what is left in the ring must
  // never be submitted later, when those sockets may be another connection's.
  for (size_t i = 0; i < entries_.size(); ++i) {
    entries_[i].sink->EndDirectSend(std::move(entries_[i].chunk), results_[i]);
  }
  if (broken) {
    Log(LogLevel::kError, "io_uring submission failed: stream writes go out one send each from now on",
        {{"streams_closed", static_cast<int64_t>(entries_.size() - done)}});
    io_uring_queue_exit(&ring_->ring);
    ring_.reset();
  }
  entries_.clear();
  bytes_ = 0;
}

}  // namespace gonfalon::server
