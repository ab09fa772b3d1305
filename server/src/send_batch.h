#pragma once
// Writes a fan-out round's chunks to their streams' sockets with one system call per batch
// (io_uring), instead of one `send` each. On this project's 2-vCPU VM a loopback `send` costs
// 3.3–4.1 µs of the sender's CPU and a batched one 1.4–2.3 µs (bench/uring_fanout.cc,
// docs/performance.md): at 1,000 streams that halves what each change costs the two cores.
//
// A sink takes part through StreamSink::BeginDirectSend / EndDirectSend (its send lock held
// from the submission to the completion, so its order is kept); sinks that decline, and every
// sink when io_uring is not available (a kernel without it, a seccomp profile that refuses
// it, or a kernel whose io_uring send waits for room on a full socket instead of returning
// EAGAIN, checked once at construction), are sent to with StreamSink::Send as before. Each
// batch is capped in writes and in bytes: one submission writes all its chunks before the
// thread returns to user space, where a kernel without preemption lets others run.
//
// Thread safety: one SendBatch is used by one thread (the hub's sender).

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace gonfalon::server {

class StreamSink;

class SendBatch {
 public:
  // `capacity`: writes per submission; `max_bytes`: bytes per submission (a larger chunk goes
  // alone). One submission writes all its chunks before the thread returns to user space, and
  // this kernel preempts only there: a burst's large chunks must not hold a core for
  // milliseconds. `use_io_uring` false: plain Send (tests, fallback).
  SendBatch(size_t capacity, size_t max_bytes, bool use_io_uring = true);
  ~SendBatch();
  SendBatch(const SendBatch&) = delete;
  SendBatch& operator=(const SendBatch&) = delete;

  // Whether writes are batched (io_uring set up), or each goes through Send.
  bool batched() const { return ring_ != nullptr; }
  // Queues `chunk` for `sink` (submitting first when the batch is full or holds `sink`); a
  // sink that declines, or any without io_uring, gets it through Send at once.
  void Add(const std::shared_ptr<StreamSink>& sink, std::shared_ptr<const std::string> chunk);
  // Submits what is queued and hands every result to its sink.
  void Flush();
  // io_uring submissions so far (tests; a submission may take several calls to complete).
  size_t submissions() const { return submissions_; }

 private:
  struct Entry {
    std::shared_ptr<StreamSink> sink;
    std::shared_ptr<const std::string> chunk;
  };
  struct Ring;
  std::unique_ptr<Ring> ring_;
  size_t capacity_;
  size_t max_bytes_;
  size_t bytes_ = 0;  // of the queued chunks
  size_t submissions_ = 0;
  std::vector<Entry> entries_;  // each holds its sink's send lock until Flush
  std::vector<long> results_;   // Flush's: bytes written or -errno, by entry
};

}  // namespace gonfalon::server
