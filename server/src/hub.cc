#include "hub.h"

#include <malloc.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <iterator>
#include <map>
#include <utility>

#include "gonfalon/rules/change_set.h"
#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/evaluator.h"
#include "gonfalon/rules/parallel_threads.h"
#include "gonfalon/rules/per_thread_cache.h"
#include "gonfalon/rules/str_cat.h"
#include "log.h"
#include "wall_clock.h"

namespace gonfalon::server {
namespace {

std::shared_ptr<const std::string> Chunk(const std::string& body) {
  char len[20];
  std::snprintf(len, sizeof len, "%zx\r\n", body.size());
  return std::make_shared<const std::string>(StrCat(len, body, "\r\n"));
}

// Calls fn(sink, registration) for each open stream, forgetting the closed ones; fn returns
// false to forget the stream too (it closed it).
template <typename Registrations, typename Fn>
void ForEachLive(Registrations& regs, Fn fn) {
  regs.erase(std::remove_if(regs.begin(), regs.end(),
                            [&](const auto& r) {
                              auto s = r.sink.lock();
                              if (!s) return true;
                              if constexpr (std::is_same_v<decltype(fn(*s, r)), bool>) {
                                return !fn(*s, r);
                              } else {
                                fn(*s, r);
                                return false;
                              }
                            }),
             regs.end());
}

// A stored change-log entry (rules::ChangeSetEvent). One that does not decode is reported and
// skipped: the stream then gets a `put` (see Refresh).
std::optional<rules::ChangeSetEvent> DecodeLogged(const std::string& change) {
  absl::StatusOr<rules::ChangeSetEvent> event = rules::DecodeChangeSetEvent(change);
  if (!event.ok()) {
    Log(LogLevel::kError, "stored change set does not decode", {{"error", std::string(event.status().message())}});
    return std::nullopt;
  }
  return std::move(*event);
}

}  // namespace

std::shared_ptr<const std::string> FrameEvent(int64_t id, std::string_view event, std::string_view data) {
  // `data` is one line of compact JSON, so a single data field frames it.
  return Chunk(StrCat("id: ", id, "\nevent: ", event, "\ndata: ", data, "\n\n"));
}

std::shared_ptr<const std::string> FrameComment(std::string_view comment) {
  return Chunk(StrCat(": ", comment, "\n\n"));
}

const rules::Snapshot* CurrentSnapshot(EnvironmentHub& hub) {
  struct SnapshotReaderTag;
  using Readers = rules::PerThreadCache<SnapshotReaderTag, char, std::unique_ptr<rules::SnapshotCell::Reader>, 8>;
  auto& reader = Readers::Get(hub.instance(), [&] { return std::make_unique<rules::SnapshotCell::Reader>(hub.cell()); });
  return reader->Get();
}

Hubs::Hubs(storage::Store& store, Metrics& metrics, FanOutOptions fan_out)
    : store_(store), metrics_(metrics), fan_out_(fan_out), instance_(rules::NextInstanceId()) {
  publisher_ = std::thread([this] { PublisherLoop(); });
  sender_ = std::thread([this] { SenderLoop(); });
  releaser_ = std::thread([this] { ReleaserLoop(); });
}

Hubs::~Hubs() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  sender_cv_.notify_all();
  releaser_cv_.notify_all();
  publisher_.join();
  sender_.join();
  releaser_.join();
}

absl::StatusOr<std::shared_ptr<EnvironmentHub>> Hubs::Get(const std::string& project,
                                                          const std::string& environment) {
  // A loaded hub stays in the map until its environment is deleted (Forget retires it), so
  // each thread remembers the few it uses and evaluations take no lock here.
  struct HubCacheTag;
  using LocalHubs = rules::PerThreadCache<HubCacheTag, std::pair<std::string, std::string>, std::shared_ptr<EnvironmentHub>, 8>;
  auto matches = [&](const auto& key) { return key.first == project && key.second == environment; };
  std::shared_ptr<EnvironmentHub>* cached = LocalHubs::Find(instance_, matches);
  if (cached != nullptr && !(*cached)->retired_.load(std::memory_order_acquire)) return *cached;
  std::string key = StrCat(project, "/", environment);
  std::shared_ptr<EnvironmentHub> hub;
  {
    // In the map before it loads, so that a change committed meanwhile queues a refresh.
    std::lock_guard<std::mutex> l(mu_);
    auto& slot = hubs_[key];
    if (!slot) slot = std::make_shared<EnvironmentHub>(project, environment);
    hub = slot;
  }
  if (hub->sequence() < 0) {
    absl::Status s = Refresh(*hub);  // no stream can be registered yet
    if (!s.ok()) {
      std::lock_guard<std::mutex> l(mu_);
      auto it = hubs_.find(key);
      if (it != hubs_.end() && it->second->sequence() < 0) hubs_.erase(it);
      return s;
    }
  }
  if (std::shared_ptr<EnvironmentHub>* stale = LocalHubs::Find(instance_, matches)) {
    *stale = hub;  // a retired hub's slot
  } else {
    LocalHubs::Put(instance_, {project, environment}, hub);
  }
  return hub;
}

void Hubs::Forget(const std::string& project, const std::string& environment) {
  std::vector<std::shared_ptr<EnvironmentHub>> gone;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto it = hubs_.begin(); it != hubs_.end();) {
      const EnvironmentHub& h = *it->second;
      if (h.project() == project && (environment.empty() || h.environment() == environment)) {
        gone.push_back(std::move(it->second));
        hubs_.erase(it++);
      } else {
        ++it;
      }
    }
  }
  auto last = FrameComment("environment deleted");
  for (auto& h : gone) {
    h->retired_.store(true, std::memory_order_release);
    std::shared_ptr<const std::string> put;
    {
      std::lock_guard<std::mutex> l(h->put_mu_);
      put = std::exchange(h->put_, {}).chunk;
    }
    Retire(std::move(put));  // not freed on the deleting request's thread
    // CloseRevokedStreams only sees the hubs still known: these close their streams here.
    CloseStreams(*h, last);
  }
}

absl::StatusOr<size_t> Hubs::LoadAll(const std::atomic<bool>& stop) {
  absl::StatusOr<std::vector<storage::Project>> projects = store_.ListProjects();
  if (!projects.ok()) return projects.status();
  size_t loaded = 0;
  for (const storage::Project& p : *projects) {
    absl::StatusOr<std::vector<storage::Environment>> envs = store_.ListEnvironments(p.key);
    if (!envs.ok()) return envs.status();
    for (const storage::Environment& e : *envs) {
      if (stop.load()) return loaded;
      absl::StatusOr<std::shared_ptr<EnvironmentHub>> hub = Get(p.key, e.key);
      if (!hub.ok() && !absl::IsNotFound(hub.status())) return hub.status();  // deleted meanwhile: fine
      loaded += hub.ok() ? 1 : 0;
    }
  }
  return loaded;
}

Hubs::WriteScope::WriteScope(Hubs& hubs) : hubs_(hubs) {
  std::lock_guard<std::mutex> l(hubs_.mu_);
  ++hubs_.writes_in_progress_;
}

Hubs::WriteScope::~WriteScope() {
  std::lock_guard<std::mutex> l(hubs_.mu_);
  --hubs_.writes_in_progress_;
  // The sender was not woken for what was published while writes were in progress
  // (PublisherLoop): it is now, once they are all answered or the oldest event has waited
  // kMaxSendDelay (writers that keep overlapping).
  if (!hubs_.to_send_.empty() &&
      (hubs_.writes_in_progress_ == 0 || std::chrono::steady_clock::now() - hubs_.to_send_since_ >= kMaxSendDelay)) {
    hubs_.sender_cv_.notify_one();
  }
}

void Hubs::Changed(const storage::AppliedChangeSet& applied) {
  std::string key = StrCat(applied.project, "/", applied.environment);
  std::shared_ptr<EnvironmentHub> hub;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = hubs_.find(key);
    if (it == hubs_.end()) return;  // nobody reads it yet; loaded on first use
    hub = it->second;
  }
  // Kept before it is queued: a writer's Drain waits for the publication that follows its
  // queuing, and that publication must find it (or read the change log).
  {
    std::lock_guard<std::mutex> l(hub->mu_);
    hub->commit_times_.emplace_back(applied.sequence, std::chrono::steady_clock::now());
    if (hub->commit_times_.size() > 4096) hub->commit_times_.pop_front();
    if (hub->committed_.size() < kMaxCommittedInMemory) hub->committed_.emplace(applied.sequence, applied.event_json);
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    queue_.push_back(key);
    ++enqueued_;
  }
  cv_.notify_all();
}

void Hubs::PublisherLoop() {
  std::unique_lock<std::mutex> l(mu_);
  while (true) {
    cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    // Coalesce: one refresh per environment however many change sets queued meanwhile.
    std::vector<std::string> keys(queue_.begin(), queue_.end());
    queue_.clear();
    uint64_t batch_end = enqueued_;
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    for (const std::string& key : keys) {
      auto it = hubs_.find(key);
      if (it == hubs_.end()) continue;
      std::shared_ptr<EnvironmentHub> hub = it->second;
      l.unlock();
      absl::Status s = Refresh(*hub);
      if (!s.ok()) Log(LogLevel::kError, "publish failed", {{"environment", key}, {"error", std::string(s.message())}});
      l.lock();
      if (to_send_.empty()) to_send_since_ = std::chrono::steady_clock::now();
      if (std::find(to_send_.begin(), to_send_.end(), hub) == to_send_.end()) to_send_.push_back(hub);
    }
    // Evaluations see the changes now: the writers waiting in Drain answer. The sender is
    // woken now if no admin write is in progress, otherwise once they are answered
    // (WriteScope), so that the fan-out does not take the cores their answers need.
    published_ = batch_end;
    cv_.notify_all();
    if (writes_in_progress_ == 0 || std::chrono::steady_clock::now() - to_send_since_ >= kMaxSendDelay) {
      sender_cv_.notify_one();
    } else {
      ++metrics_.stream_fan_outs_deferred;
    }
  }
}

void Hubs::SenderLoop() {
  // Each fan-out costs one send per open stream, mostly the kernel's work on the socket (about
  // 10 us each on loopback). While changes come slowly, events go out as soon as they are
  // published. Under a burst (more than busy_rate change sets a second), fan-outs draw on a
  // budget of busy_sends_per_second stream sends, refilled continuously and holding at most a
  // second's worth: the change sets published while one waits share the next fan-out, so a
  // burst of writes cannot starve the writers and the requests of CPU (by default, at 1,000
  // streams a fan-out every 50 ms at least).
  SendBatch batch(kSendsPerBatch, kBytesPerBatch, fan_out_.batched_sends);
  const double kBusyRate = fan_out_.busy_rate;
  const double kBusySendsPerSecond = fan_out_.busy_sends_per_second;
  using Clock = std::chrono::steady_clock;
  double budget = kBusySendsPerSecond;
  Clock::time_point refilled = Clock::now();
  std::deque<std::pair<Clock::time_point, uint64_t>> published;  // (when, total) over the last 250 ms
  std::unique_lock<std::mutex> l(mu_);
  while (true) {
    sender_cv_.wait(l, [&] { return stop_ || !to_send_.empty(); });
    if (stop_) return;
    Clock::time_point now = Clock::now();
    uint64_t total = metrics_.change_sets_published.load();
    published.emplace_back(now, total);
    while (published.size() > 1 && now - published.front().first > std::chrono::milliseconds(250)) published.pop_front();
    double rate = static_cast<double>(total - published.front().second) / 0.25;
    budget = std::min(kBusySendsPerSecond,
                      budget + kBusySendsPerSecond * std::chrono::duration<double>(now - refilled).count());
    refilled = now;
    size_t cost = 0;
    for (const auto& h : to_send_) {
      std::lock_guard<std::mutex> hl(h->mu_);
      cost += h->sdk_streams_.size() + h->ofrep_streams_.size();
    }
    if (rate > kBusyRate && budget < static_cast<double>(cost) && budget < kBusySendsPerSecond) {
      auto wait = std::chrono::duration<double>((static_cast<double>(cost) - budget) / kBusySendsPerSecond);
      sender_cv_.wait_for(l, std::min(wait, std::chrono::duration<double>(1.0)), [&] { return stop_; });
      continue;  // refill, and take whatever was published meanwhile too
    }
    budget = std::max(budget - static_cast<double>(cost), -kBusySendsPerSecond);
    std::vector<std::shared_ptr<EnvironmentHub>> sending = std::move(to_send_);
    to_send_.clear();
    l.unlock();
    {
      std::lock_guard<std::mutex> s(sending_mu_);
      for (const auto& hub : sending) FanOut(*hub, batch);
    }
    l.lock();
  }
}

void Hubs::Retire(std::shared_ptr<const std::string> put) {
  if (put == nullptr) return;
  std::lock_guard<std::mutex> l(mu_);
  retired_puts_.push_back(std::move(put));
  releaser_cv_.notify_one();
}

void Hubs::ReleaserLoop() {
  // Nice 19 rather than SCHED_IDLE: a server busy for minutes still frees them.
  setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 19);
  using Clock = std::chrono::steady_clock;
  std::unique_lock<std::mutex> l(mu_);
  while (true) {
    releaser_cv_.wait(l, [&] { return stop_ || !retired_puts_.empty(); });
    Clock::time_point latest = Clock::now() + fan_out_.release_max_delay;
    while (!stop_ && !retired_puts_.empty()) {
      // Older puts go at once: only the newest waits for the lull.
      std::vector<std::shared_ptr<const std::string>> older;
      if (retired_puts_.size() > 1) {
        older.assign(std::make_move_iterator(retired_puts_.begin()), std::make_move_iterator(retired_puts_.end() - 1));
        retired_puts_.erase(retired_puts_.begin(), retired_puts_.end() - 1);
        l.unlock();
        older.clear();
        l.lock();
        continue;
      }
      auto last_publish = Clock::time_point(std::chrono::nanoseconds(last_publish_ns_.load(std::memory_order_relaxed)));
      Clock::time_point lull = last_publish + fan_out_.release_lull;
      Clock::time_point when = std::min(lull, latest);
      if (Clock::now() >= when) break;
      releaser_cv_.wait_until(l, when);
    }
    std::vector<std::shared_ptr<const std::string>> batch = std::move(retired_puts_);
    retired_puts_.clear();
    l.unlock();
    batch.clear();  // frees those no stream is still sending
    l.lock();
    if (stop_ && retired_puts_.empty()) return;
  }
}

void Hubs::Drain() {
  std::unique_lock<std::mutex> l(mu_);
  uint64_t target = enqueued_;  // what was queued before this call; later changes are not waited for
  cv_.wait(l, [&] { return stop_ || published_ >= target; });
}

EnvironmentHub::PutEvent EnvironmentHub::Put() {
  std::shared_ptr<const rules::Snapshot> snap = cell_.Load();
  if (snap == nullptr) return {};
  return PutFor(snap);
}

EnvironmentHub::PutEvent EnvironmentHub::PutFor(const std::shared_ptr<const rules::Snapshot>& snap) {
  std::lock_guard<std::mutex> l(put_mu_);
  put_asked_ = std::chrono::steady_clock::now();
  if (put_.sequence == snap->sequence() && put_.chunk != nullptr) return put_;
  // Framed in place: a fixed-width chunk size (HTTP allows leading zeros) written once the
  // length is known, so the environment's JSON is never copied.
  constexpr size_t kSizeDigits = 16;
  std::string chunk(kSizeDigits, '0');
  chunk += "\r\n";
  chunk += StrCat("id: ", snap->sequence(), "\nevent: put\ndata: ");
  PutEvent put;
  put.sequence = snap->sequence();
  put.payload_offset = chunk.size();
  snap->AppendPayloadJson(chunk, /*room_after=*/8);
  put.payload_size = chunk.size() - put.payload_offset;
  chunk += "\n\n";
  size_t body = chunk.size() - kSizeDigits - 2;
  char digits[kSizeDigits + 1];
  std::snprintf(digits, sizeof digits, "%016zx", body);
  chunk.replace(0, kSizeDigits, digits, kSizeDigits);
  chunk += "\r\n";
  put.chunk = std::make_shared<const std::string>(std::move(chunk));
  put_ = put;
  return put;
}

absl::StatusOr<std::shared_ptr<const rules::Snapshot>> Hubs::Load(EnvironmentHub& hub) {
  auto start = std::chrono::steady_clock::now();
  absl::StatusOr<rules::Environment> env = store_.LoadEnvironment(hub.project_, hub.environment_);
  if (!env.ok()) return env.status();
  size_t flags = env->flags.size();
  auto loaded = std::chrono::steady_clock::now();
  // Every item's JSON is encoded now (the hub serves them all in payloads), which lets the
  // compiled items drop what only the JSON needs.
  std::shared_ptr<const rules::Snapshot> snap = rules::Snapshot::Build(
      std::move(*env), rules::ThreadsParallelFor(static_cast<int>(std::thread::hardware_concurrency())),
      rules::ItemJson::kEager);
  auto compiled = std::chrono::steady_clock::now();
  // Reading the environment parsed every item into a tree that is gone now; Build copied the
  // items into the compiled snapshot, so whole pages of the heap are free: hand them back
  // (at 100,000 flags the RSS after a start goes from 233 to 210 MB). Loads happen at start and
  // to repair.
  malloc_trim(0);
  ++metrics_.environment_loads;
  auto ms = [](auto d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
  Log(LogLevel::kInfo, "environment loaded",
      {{"environment", StrCat(hub.project_, "/", hub.environment_)},
       {"flags", std::to_string(flags)},
       {"read_ms", std::to_string(ms(loaded - start))},
       {"compile_ms", std::to_string(ms(compiled - loaded))}});
  return snap;
}

absl::Status Hubs::Refresh(EnvironmentHub& hub) {
  std::lock_guard<std::mutex> refresh(hub.refresh_mu_);
  int64_t previous = hub.sequence();
  std::shared_ptr<const rules::Snapshot> before = hub.cell_.Load();
  std::shared_ptr<const rules::Snapshot> snapshot;
  // The change sets since what streams were last sent, applied to the published snapshot.
  std::vector<std::shared_ptr<const std::string>> frames;
  std::vector<rules::ChangeSetEvent> events;
  bool reset = previous < 0 || before == nullptr;
  std::string repair;  // why the incremental path could not be taken
  if (!reset) {
    // The change sets since, as Changed kept them, when they follow on from `previous` without
    // a gap; else the change log. A gap is a change set committed and not yet announced (or
    // more than were kept): a later one's writer may be waiting for its publication, and only
    // the change log has everything up to it.
    std::vector<std::string> kept;
    {
      std::lock_guard<std::mutex> l(hub.mu_);
      auto& committed = hub.committed_;
      committed.erase(committed.begin(), committed.upper_bound(previous));
      if (!committed.empty() && committed.begin()->first == previous + 1 &&
          committed.rbegin()->first == previous + static_cast<int64_t>(committed.size())) {
        for (auto& [seq, json] : committed) kept.push_back(std::move(json));
        committed.clear();
      }
    }
    if (kept.empty()) ++metrics_.change_log_reads;
    absl::StatusOr<std::vector<std::string>> since =
        !kept.empty() ? absl::StatusOr<std::vector<std::string>>(std::move(kept))
                      : store_.ChangesSince(hub.project_, hub.environment_, previous);
    if (!since.ok()) {
      if (absl::IsNotFound(since.status())) return since.status();  // the environment is gone
      repair = std::string(since.status().message());
    } else if (since->empty()) {
      return absl::OkStatus();
    } else {
      snapshot = before;
      for (const std::string& c : *since) {
        std::optional<rules::ChangeSetEvent> event = DecodeLogged(c);
        if (!event.has_value()) {
          repair = "a stored change set does not decode";
          break;
        }
        absl::StatusOr<std::shared_ptr<const rules::Snapshot>> next = snapshot->Apply(*event);
        if (!next.ok()) {
          repair = StrCat("change set ", event->sequence, " does not apply: ", next.status().message());
          break;
        }
        snapshot = std::move(*next);
        // The wire payload is the stored entry as it is.
        frames.push_back(FrameEvent(event->sequence, "changes", c));
        events.push_back(std::move(*event));
      }
    }
  }
  if (reset || !repair.empty()) {
    if (!repair.empty()) {
      ++metrics_.environment_repairs;
      Log(LogLevel::kWarn, "reloading the whole environment",
          {{"environment", StrCat(hub.project_, "/", hub.environment_)}, {"reason", repair}});
      reset = true;  // cannot say what changed: every stream gets the whole environment
      frames.clear();
      events.clear();
    }
    absl::StatusOr<std::shared_ptr<const rules::Snapshot>> loaded = Load(hub);
    if (!loaded.ok()) return loaded.status();
    snapshot = std::move(*loaded);
    if (snapshot->sequence() <= previous) return absl::OkStatus();
  }
  int64_t seq = snapshot->sequence();
  // Client-side OFREP streams hear only of changes that can alter what they see: a flag
  // available to client-side keys (before or after), or a segment.
  bool client_visible = reset;
  if (!reset) {
    auto visible_in = [](const rules::Snapshot* snap, const std::string& key) {
      const auto* f = snap != nullptr ? snap->FindFlag(key) : nullptr;
      return f != nullptr && rules::FlagModel(*f).client_side_availability.using_environment_id;
    };
    for (const rules::ChangeSetEvent& event : events) {
      for (const rules::ChangedItem& item : event.items) {
        if (item.kind == rules::ChangedKind::kSegment || visible_in(before.get(), item.key) ||
            visible_in(snapshot.get(), item.key)) {
          client_visible = true;
        }
      }
    }
  }
  auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> l(hub.mu_);
    hub.cell_.Publish(snapshot);
    hub.sequence_.store(seq, std::memory_order_release);
    if (hub.pending_frames_.empty() && hub.pending_put_ < 0 && !hub.pending_refetch_) hub.pending_since_ = now;
    if (reset) {
      if (previous >= 0) {  // streams can only be registered after the first load
        hub.pending_put_ = seq;
        hub.pending_frames_.clear();
      }
    } else {
      for (size_t i = 0; i < frames.size(); ++i) hub.pending_frames_.emplace_back(events[i].sequence, frames[i]);
    }
    if (previous >= 0) {
      hub.pending_refetch_ = true;
      hub.pending_client_visible_ = hub.pending_client_visible_ || client_visible;
    }
    while (!hub.commit_times_.empty() && hub.commit_times_.front().first <= seq) {
      metrics_.RecordPropagation(std::chrono::duration<double>(now - hub.commit_times_.front().second).count());
      hub.commit_times_.pop_front();
    }
  }
  metrics_.change_sets_published += frames.size();
  last_publish_ns_.store(std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count(),
                         std::memory_order_relaxed);
  // A `put` of an older sequence serves nobody now (a new stream or poll gets this one): let
  // it go, rather than keep the whole environment's JSON a second time until someone asks
  // again (60 MB at 100,000 flags). The items' JSON stays, so the next one is a concatenation.
  // Not while one is being built: that builder replaces it anyway.
  std::shared_ptr<const std::string> stale;
  if (hub.put_mu_.try_lock()) {
    if (hub.put_.sequence < seq) stale = std::exchange(hub.put_, {}).chunk;
    hub.put_mu_.unlock();
  }
  Retire(std::move(stale));
  return absl::OkStatus();
}

void Hubs::FanOut(EnvironmentHub& hub, SendBatch& batch) {
  // A `put` is assembled (once per sequence) before the hub's lock is taken.
  EnvironmentHub::PutEvent put;
  {
    std::lock_guard<std::mutex> l(hub.mu_);
    if (hub.pending_put_ >= 0 && !hub.sdk_streams_.empty()) put.sequence = hub.pending_put_;
  }
  if (put.sequence >= 0) {
    std::shared_ptr<const rules::Snapshot> snap = hub.cell_.Load();
    put = hub.PutFor(snap);
  }
  ++metrics_.stream_fan_outs;
  std::unique_lock<std::mutex> l(hub.mu_);
  int64_t seq = hub.sequence();
  if (hub.pending_put_ >= 0 && put.sequence != seq && !hub.sdk_streams_.empty()) {
    put = hub.PutFor(hub.cell_.Load());  // published again meanwhile (rare): under the lock
  }
  // Buffers shared by the streams that were sent the same sequence (usually all of them).
  std::map<int64_t, std::shared_ptr<const std::string>> by_start;
  auto chunk_after = [&](int64_t sent_through) -> std::shared_ptr<const std::string> {
    auto& slot = by_start[sent_through];
    if (slot != nullptr) return slot;
    std::string all;
    if (hub.pending_put_ > sent_through) {
      all = *put.chunk;  // the put brings it to `seq`: no frames after it
    } else {
      for (const auto& [s, f] : hub.pending_frames_) {
        if (s > sent_through) all += *f;
      }
    }
    if (!all.empty()) slot = std::make_shared<const std::string>(std::move(all));
    return slot;
  };
  // The sends happen after the hub's lock is released (publishing and registration need it);
  // only this thread sends events, so they still reach each stream in order.
  std::vector<std::pair<std::shared_ptr<StreamSink>, std::shared_ptr<const std::string>>> sends;
  auto& regs = hub.sdk_streams_;
  regs.erase(std::remove_if(regs.begin(), regs.end(), [](const auto& r) { return r.sink.expired(); }), regs.end());
  sends.reserve(regs.size() + hub.ofrep_streams_.size());
  for (auto& r : regs) {
    if (r.sent_through >= seq) continue;
    if (auto sink = r.sink.lock()) {
      if (auto chunk = chunk_after(r.sent_through)) sends.emplace_back(std::move(sink), std::move(chunk));
    }
    r.sent_through = seq;
  }
  if (hub.pending_refetch_) {
    auto refetch = FrameEvent(seq, "message",
                              StrCat("{\"type\":\"refetchEvaluation\",\"etag\":\"\\\"", seq,
                                     "\\\"\",\"lastModified\":",
                                     std::chrono::duration_cast<std::chrono::seconds>(
                                         std::chrono::system_clock::now().time_since_epoch()).count(),
                                     "}"));
    ForEachLive(hub.ofrep_streams_, [&](StreamSink&, const auto& r) {
      if (!r.client_side || hub.pending_client_visible_) {
        if (auto sink = r.sink.lock()) sends.emplace_back(std::move(sink), refetch);
      }
    });
  }
  hub.pending_frames_.clear();
  hub.pending_put_ = -1;
  hub.pending_refetch_ = false;
  hub.pending_client_visible_ = false;
  l.unlock();
  // Each Send writes to its socket from this thread when the socket takes it at once (nearly
  // always): the I/O threads stay free for requests (http_server.cc, Session::Send).
  // A thousand sends are ~5 ms of a core, and a thread woken onto this one meanwhile (an I/O
  // thread with a request, a writer's client) waited for all of them: the kernel does not
  // preempt this thread for it before the next tick. Yielding every kSendsPerYield sends lets
  // it run within a fraction of a millisecond; with nothing else runnable a yield returns at
  // once.
  // The writes go out in batches of at most kSendsPerBatch writes and kBytesPerBatch bytes,
  // one system call each where io_uring is available (half the CPU of a `send` each on the
  // test VM); the batch is flushed before each yield, so no send lock is held across it.
  size_t n = 0;
  for (auto& [sink, chunk] : sends) {
    batch.Add(sink, std::move(chunk));
    if (++n % kSendsPerYield == 0) {
      batch.Flush();
      sched_yield();
    }
  }
  batch.Flush();
}

void Hubs::WaitForFanOut() { std::lock_guard<std::mutex> s(sending_mu_); }

void Hubs::AddSdkStream(EnvironmentHub& hub, const std::shared_ptr<StreamSink>& sink,
                        std::optional<int64_t> last_event_id, std::string key_id) {
  // The `put` is assembled (once per sequence) before the hub's lock is taken, so that a
  // large environment never stalls publishing; if a change is published meanwhile, again.
  int64_t from = last_event_id.value_or(-1);  // -1: no resume
  while (true) {
    EnvironmentHub::PutEvent put;
    bool resume = from >= 0 && from <= hub.sequence();
    if (!resume) put = hub.Put();
    std::lock_guard<std::mutex> l(hub.mu_);
    int64_t seq = hub.sequence();
    if (!resume && put.sequence != seq) continue;
    if (resume && from == seq) {
      // Up to date: nothing to send until the next change.
    } else if (resume) {
      absl::StatusOr<std::vector<std::string>> since =
          store_.ChangesSince(hub.project_, hub.environment_, from);
      std::vector<std::shared_ptr<const std::string>> frames;
      bool complete = since.ok();
      if (since.ok()) {
        for (const std::string& c : *since) {
          std::optional<rules::ChangeSetEvent> event = DecodeLogged(c);
          if (!event.has_value()) {
            complete = false;
            break;
          }
          if (event->sequence > seq) break;  // not published yet: the publisher sends the rest
          frames.push_back(FrameEvent(event->sequence, "changes", c));
        }
      }
      if (!complete) {
        from = -1;  // the log cannot bring it up to date: a `put`, then
        continue;
      }
      for (auto& f : frames) sink->Send(std::move(f));
    } else {
      sink->Send(put.chunk);
    }
    hub.sdk_streams_.push_back({sink, std::move(key_id), false, seq});
    return;
  }
}

void Hubs::AddOfrepStream(EnvironmentHub& hub, const std::shared_ptr<StreamSink>& sink, std::string key_id,
                          bool client_side) {
  std::lock_guard<std::mutex> l(hub.mu_);
  sink->Send(FrameComment("connected"));
  hub.ofrep_streams_.push_back({sink, std::move(key_id), client_side});
}

void Hubs::CloseRevokedStreams() {
  std::vector<std::shared_ptr<EnvironmentHub>> hubs = AllHubs();
  int64_t now_ms = NowMs();
  auto last = FrameComment("credentials revoked");
  for (auto& h : hubs) {
    // The keys are read with no hub lock held (RocksDB reads must not stall publishing).
    absl::flat_hash_map<std::string, bool> valid;  // key id -> still valid
    {
      std::lock_guard<std::mutex> l(h->mu_);
      for (const auto* regs : {&h->sdk_streams_, &h->ofrep_streams_}) {
        for (const auto& r : *regs) {
          if (!r.key_id.empty()) valid.emplace(r.key_id, false);
        }
      }
    }
    bool env_exists = store_.GetEnvironment(h->project_, h->environment_).ok();
    for (auto& [key_id, ok] : valid) {
      absl::StatusOr<storage::ApiKey> key = store_.GetApiKey(key_id);
      ok = env_exists && key.ok() && key->UsableAt(now_ms);
    }
    std::lock_guard<std::mutex> l(h->mu_);
    auto check = [&](StreamSink& s, const auto& r) {
      // A stream registered since the keys were read is checked at the next call.
      auto it = r.key_id.empty() ? valid.end() : valid.find(r.key_id);
      bool keep = r.key_id.empty() ? env_exists : (it == valid.end() || it->second);
      if (keep) return true;
      s.Close(last);
      return false;
    };
    ForEachLive(h->sdk_streams_, check);
    ForEachLive(h->ofrep_streams_, check);
  }
}

void Hubs::ReleaseIdlePuts(std::chrono::steady_clock::duration idle) {
  std::vector<std::shared_ptr<EnvironmentHub>> hubs = AllHubs();
  auto now = std::chrono::steady_clock::now();
  std::vector<std::shared_ptr<const std::string>> idle_puts;
  for (auto& h : hubs) {
    // Held means someone is asking (or building one) right now: not idle, and the heartbeat
    // that calls this runs on an I/O thread, which must not wait for a build (nor free one).
    std::unique_lock<std::mutex> l(h->put_mu_, std::try_to_lock);
    if (l.owns_lock() && h->put_.chunk != nullptr && now - h->put_asked_ >= idle) {
      idle_puts.push_back(std::exchange(h->put_, {}).chunk);
    }
  }
  for (auto& put : idle_puts) Retire(std::move(put));
}

void Hubs::Heartbeat() {
  CloseRevokedStreams();
  ReleaseIdlePuts(kPutIdle);
  auto beat = FrameComment("heartbeat");
  std::vector<std::shared_ptr<EnvironmentHub>> hubs = AllHubs();
  for (auto& h : hubs) {
    std::lock_guard<std::mutex> l(h->mu_);
    ForEachLive(h->sdk_streams_, [&](StreamSink& s, const auto&) { s.Send(beat); });
    ForEachLive(h->ofrep_streams_, [&](StreamSink& s, const auto&) { s.Send(beat); });
  }
}

void Hubs::CloseAll(std::string_view comment) {
  auto last = FrameComment(comment);
  std::vector<std::shared_ptr<EnvironmentHub>> hubs = AllHubs();
  for (auto& h : hubs) CloseStreams(*h, last);
}

std::vector<std::shared_ptr<EnvironmentHub>> Hubs::AllHubs() {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::shared_ptr<EnvironmentHub>> hubs;
  hubs.reserve(hubs_.size());
  for (auto& [k, h] : hubs_) hubs.push_back(h);
  return hubs;
}

void Hubs::CloseStreams(EnvironmentHub& hub, const std::shared_ptr<const std::string>& last) {
  std::lock_guard<std::mutex> l(hub.mu_);
  ForEachLive(hub.sdk_streams_, [&](StreamSink& s, const auto&) { s.Close(last); });
  ForEachLive(hub.ofrep_streams_, [&](StreamSink& s, const auto&) { s.Close(last); });
  hub.sdk_streams_.clear();
  hub.ofrep_streams_.clear();
}

}  // namespace gonfalon::server
