#pragma once
// Per-environment publishing: the compiled snapshot that evaluations read lock-free, and the
// SSE fan-out to SDK streams (`put`/`changes`) and OFREP streams (`refetchEvaluation`).
//
// The store's change listener only queues "environment changed"; one publisher thread then
// reads the change sets committed since the published sequence from the change log, applies
// them to the published snapshot (Snapshot::Apply compiles only the items they name), publishes
// the result (the writers waiting in Drain are released here), and leaves each change set's
// framed event pending in the hub. A sender thread then gives every stream, in one shared
// buffer, the events past what it was sent (DESIGN §4, the Beast chat-multi model); under a
// burst it paces these rounds (SenderLoop). The whole environment is read from storage only
// when a hub is first used, or to repair when a change set cannot be applied (logged, and
// counted in gonfalon_environment_repairs_total). A stream registers under the hub's lock with
// the sequence its registration brought it to, so it never misses or repeats a change set.
//
// The `put` (the whole environment, for new streams and polling) is assembled from the items'
// JSON only when someone asks for it, once per sequence.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "gonfalon/rules/per_thread_cache.h"
#include "gonfalon/rules/snapshot_cell.h"
#include "gonfalon/storage/store.h"
#include "metrics.h"
#include "send_batch.h"

namespace gonfalon::server {

// The receiving end of an SSE stream (a connection). Implementations must not block.
class StreamSink {
 public:
  virtual ~StreamSink() = default;
  // Queues a framed chunk; a sink whose queue is full closes itself (the client resumes).
  virtual void Send(std::shared_ptr<const std::string> chunk) = 0;
  // Sends `last` (may be null) and closes.
  virtual void Close(std::shared_ptr<const std::string> last) = 0;

  // Batched writing (SendBatch, send_batch.h), from one thread. BeginDirectSend returns the
  // socket to write a chunk to directly when nothing is queued for this sink, and then holds
  // the sink's send lock until EndDirectSend(chunk, result of the write: bytes or -errno),
  // which queues what the socket did not take, as Send would have; or -1 (something queued,
  // closed, or a sink without a socket), and the caller uses Send.
  virtual int BeginDirectSend() { return -1; }
  virtual void EndDirectSend(std::shared_ptr<const std::string> chunk, long result) {}
};

// One SSE event, framed as an HTTP/1.1 chunk, ready to share between streams.
std::shared_ptr<const std::string> FrameEvent(int64_t id, std::string_view event, std::string_view data);
std::shared_ptr<const std::string> FrameComment(std::string_view comment);

class EnvironmentHub {
 public:
  EnvironmentHub(std::string project, std::string environment)
      : project_(std::move(project)), environment_(std::move(environment)) {}

  const std::string& project() const { return project_; }
  // Never reused within the process (per-thread caches tell hubs apart by it).
  uint64_t instance() const { return instance_; }
  const std::string& environment() const { return environment_; }
  rules::SnapshotCell& cell() { return cell_; }
  // The published snapshot's sequence.
  int64_t sequence() const { return sequence_.load(std::memory_order_acquire); }
  // The published snapshot's `put` event: the environment's JSON framed as an SSE event in
  // one HTTP chunk, built on first request for a sequence and shared until the next is
  // published (then released: nobody can be sent an older one) or until nobody has asked for
  // it for a while (Hubs::ReleaseIdlePuts).
  struct PutEvent {
    int64_t sequence = -1;
    std::shared_ptr<const std::string> chunk;
    size_t payload_offset = 0;  // the JSON inside `chunk` (the polling body)
    size_t payload_size = 0;
    std::string_view payload() const { return std::string_view(*chunk).substr(payload_offset, payload_size); }
  };
  PutEvent Put();

 private:
  friend class Hubs;
  const std::string project_;
  const std::string environment_;
  const uint64_t instance_ = rules::NextInstanceId();
  rules::SnapshotCell cell_;
  std::atomic<int64_t> sequence_{-1};
  // Set when the environment is deleted (Hubs::Forget): threads that remember this hub look
  // it up again, and a new environment of the same key gets a hub of its own.
  std::atomic<bool> retired_{false};
  PutEvent PutFor(const std::shared_ptr<const rules::Snapshot>& snap);
  std::mutex refresh_mu_;  // one refresh at a time, so snapshots only move forward
  std::mutex put_mu_;      // guards put_ and put_asked_: one build per sequence however many ask
  PutEvent put_;
  std::chrono::steady_clock::time_point put_asked_{};  // when put_ was last asked for
  mutable std::mutex mu_;  // guards what follows, and orders registration against broadcasts
  struct Registration {
    std::weak_ptr<StreamSink> sink;
    std::string key_id;        // the API key that opened the stream
    bool client_side = false;  // OFREP, client-side key: notified of client-side flags only
    int64_t sent_through = -1;  // SDK streams: the sequence its registration brought it to
  };
  std::vector<Registration> sdk_streams_;
  std::vector<Registration> ofrep_streams_;
  // Published but not yet sent to the streams (Hubs::FanOut).
  std::vector<std::pair<int64_t, std::shared_ptr<const std::string>>> pending_frames_;
  int64_t pending_put_ = -1;  // a `put` of this sequence supersedes the frames before it
  bool pending_refetch_ = false;
  bool pending_client_visible_ = false;
  std::chrono::steady_clock::time_point pending_since_{};
  std::deque<std::pair<int64_t, std::chrono::steady_clock::time_point>> commit_times_;
  // Change sets committed and not yet published, as stored (Hubs::Changed): Refresh applies
  // them from here rather than reading the change log back, when they follow on from the
  // published sequence without a gap.
  std::map<int64_t, std::string> committed_;
};

// The calling thread's view of an environment's published snapshot: after the first call per
// thread and hub, one atomic load. Valid until the same thread calls it again for that hub.
const rules::Snapshot* CurrentSnapshot(EnvironmentHub& hub);

// How streams are fed under a burst of change sets (Hubs::SenderLoop), and when the `put`s
// they no longer need are freed (Hubs::Retire).
struct HubFanOutOptions {
  double busy_rate = 200;                // change sets a second above which rounds are budgeted
  double busy_sends_per_second = 20000;  // the budget: stream writes a second
  // A retired put is freed once no change set was published for `release_lull`, or
  // `release_max_delay` after it was retired at the latest.
  std::chrono::milliseconds release_lull{100};
  std::chrono::milliseconds release_max_delay{5000};
  // Stream writes submitted in batches through io_uring where the kernel allows it
  // (send_batch.h); false: one `send` each.
  bool batched_sends = true;
};

class Hubs {
 public:
  using FanOutOptions = HubFanOutOptions;
  Hubs(storage::Store& store, Metrics& metrics, FanOutOptions fan_out = {});
  ~Hubs();

  // The hub of an environment, loaded and compiled on first use. Whether the environment
  // still exists is the caller's to know (hubs are forgotten when it is deleted, Forget).
  absl::StatusOr<std::shared_ptr<EnvironmentHub>> Get(const std::string& project,
                                                      const std::string& environment);
  // Forgets the hubs of a deleted environment, or of every environment of a deleted project
  // (`environment` empty), so that one created again under the same key is loaded afresh
  // instead of served the deleted one's data. Their streams are closed.
  void Forget(const std::string& project, const std::string& environment = {});
  // Loads every environment of every project (server start, before /readyz says ready):
  // returns how many, or the first error. Stops early when `stop` becomes true.
  absl::StatusOr<size_t> LoadAll(const std::atomic<bool>& stop);
  // Store listener: queues a refresh (never blocks on I/O).
  void Changed(const storage::AppliedChangeSet& applied);
  // Registers an SDK stream, sending what it lacks: the change sets after `last_event_id`
  // from the log when it can, otherwise a `put`.
  void AddSdkStream(EnvironmentHub& hub, const std::shared_ptr<StreamSink>& sink,
                    std::optional<int64_t> last_event_id, std::string key_id = {});
  void AddOfrepStream(EnvironmentHub& hub, const std::shared_ptr<StreamSink>& sink, std::string key_id = {},
                      bool client_side = false);
  // A comment on every stream, so clients can tell a quiet stream from a dead one; also
  // closes the streams whose key has expired since (CloseRevokedStreams).
  void Heartbeat();
  // Closes every stream whose key is revoked, expired or gone, or whose environment is gone:
  // after key and project writes, and at each heartbeat (a rotation's overlap ending).
  void CloseRevokedStreams();
  // Lets go of each hub's `put` that nobody has asked for in `idle` (at 100,000 flags one
  // holds 60 MB; streams still sending it keep their reference). Heartbeat calls it with
  // kPutIdle; a later request builds the put again from the items' JSON.
  static constexpr std::chrono::seconds kPutIdle{10};
  void ReleaseIdlePuts(std::chrono::steady_clock::duration idle);
  // Sends `comment` to every stream and closes them (shutdown).
  void CloseAll(std::string_view comment);
  // Returns once no fan-out is in progress: the HTTP server calls it as it goes away, before
  // its I/O context (where slow streams' writes are posted) is destroyed.
  void WaitForFanOut();
  // Waits until every refresh queued before the call is published: an admin write returns
  // only once its change is what evaluations see. Later refreshes are not waited for.
  void Drain();

  // An admin write, from its start to its answer (Api::HandleBlocking). While one is in
  // progress, what is published waits to be sent to the streams until the writes in progress
  // are answered (while writers keep overlapping, until the first answer after the oldest
  // event has waited kMaxSendDelay): the fan-out, a few ms of both cores at 1,000 streams,
  // then no longer delays the answers (on this VM a thread woken while both vCPUs are busy
  // waits up to several ms; docs/performance.md, "Session 20").
  class WriteScope {
   public:
    explicit WriteScope(Hubs& hubs);
    ~WriteScope();
    WriteScope(const WriteScope&) = delete;
    WriteScope& operator=(const WriteScope&) = delete;

   private:
    Hubs& hubs_;
  };
  static constexpr std::chrono::milliseconds kMaxSendDelay{5};
  // FanOut yields its core after this many stream sends (~0.3 ms of them here).
  static constexpr size_t kSendsPerYield = 64;
  // Stream writes per io_uring submission: each batch holds its streams' send locks while it
  // is written, and a slow stream's I/O thread waiting for one waits for the whole batch.
  static constexpr size_t kSendsPerBatch = 64;
  // ... and at most this many bytes: a burst's coalesced chunks are tens of KB each, and one
  // submission runs without a preemption point on this kernel.
  static constexpr size_t kBytesPerBatch = 64 * 1024;
  // Committed change sets kept for the publisher per environment (EnvironmentHub::committed_);
  // past this many (a publisher far behind) Refresh reads the change log.
  static constexpr size_t kMaxCommittedInMemory = 4096;

 private:
  void PublisherLoop();
  // Sends the published events to the streams (FanOut), on its own thread so that publishing
  // (and so the writers waiting in Drain) never waits for stream writes.
  void SenderLoop();
  // Publishes the change sets committed since the hub's sequence to its snapshot, and leaves
  // their stream events pending in the hub (FanOut sends them).
  absl::Status Refresh(EnvironmentHub& hub);
  // Sends the hub's pending events: each SDK stream gets, in one buffer, the change sets past
  // what it was sent (or the `put`); OFREP streams one refetchEvaluation. The socket writes go
  // through `batch` (one system call per kSendsPerBatch writes or kBytesPerBatch bytes).
  void FanOut(EnvironmentHub& hub, SendBatch& batch);
  // Hands a `put` the hub let go of to the releaser thread, which frees it at the lowest
  // priority: at 100,000 flags a put is 60 MB, and unmapping it takes ~10 ms of a core here;
  // freed by the publisher it delayed a writer's answer by that much, by the sender or the
  // heartbeat (an I/O thread) it took the core the next request needed.
  // It waits for a lull first (FanOutOptions::release_lull without a change set published, or
  // release_max_delay at most): the pages a free hands back disturb this machine for ~20 ms
  // wherever the free runs, and during a run of writes that lands on their fan-out. Only the
  // newest retired put waits; older ones are freed at once, so at most one extra put is held.
  void Retire(std::shared_ptr<const std::string> put);
  void ReleaserLoop();
  // The hubs known now (a copy, taken under mu_), to visit without holding it.
  std::vector<std::shared_ptr<EnvironmentHub>> AllHubs();
  // Sends `last` to every stream of `hub`, closes them and forgets them.
  static void CloseStreams(EnvironmentHub& hub, const std::shared_ptr<const std::string>& last);
  // The whole environment from storage, compiled: at first use, and to repair.
  absl::StatusOr<std::shared_ptr<const rules::Snapshot>> Load(EnvironmentHub& hub);

  storage::Store& store_;
  Metrics& metrics_;
  const FanOutOptions fan_out_;
  const uint64_t instance_;  // distinguishes Hubs objects in per-thread caches (Get)
  std::mutex mu_;
  std::condition_variable cv_;
  absl::flat_hash_map<std::string, std::shared_ptr<EnvironmentHub>> hubs_;  // REQUIRES: mu_
  std::deque<std::string> queue_;  // hub keys to refresh; REQUIRES: mu_
  uint64_t enqueued_ = 0;          // refreshes queued so far; REQUIRES: mu_
  uint64_t published_ = 0;         // the first `published_` queued refreshes are done; REQUIRES: mu_
  int writes_in_progress_ = 0;     // WriteScopes open; REQUIRES: mu_
  // When the oldest of what to_send_ holds was published; REQUIRES: mu_
  std::chrono::steady_clock::time_point to_send_since_;
  std::condition_variable sender_cv_;  // wakes the sender thread
  bool stop_ = false;              // REQUIRES: mu_
  std::vector<std::shared_ptr<EnvironmentHub>> to_send_;  // hubs with events not yet sent; REQUIRES: mu_
  // `put`s let go of (a newer sequence was published, or nobody asked for them), for the
  // releaser to free; REQUIRES: mu_
  std::vector<std::shared_ptr<const std::string>> retired_puts_;
  std::condition_variable releaser_cv_;  // wakes the releaser thread
  // When a change set was last published (steady clock, ns): the releaser waits for a lull.
  std::atomic<int64_t> last_publish_ns_{0};
  // Held by the sender thread while it sends (WaitForFanOut).
  std::mutex sending_mu_;
  std::thread publisher_;
  std::thread sender_;
  std::thread releaser_;
};

}  // namespace gonfalon::server
