#pragma once
// The scheduler: a thread that applies scheduled changes when they are due and moves release
// plans along (DESIGN §9). It sleeps until the earliest due time (at most half a second while
// a release plan is active: its guards are judged then, release_guards.h), or until Wake()
// says something was created or moved, and runs everything due through the store (which
// applies each once, with its status, in one write).
// A change that was due while the server was down runs as soon as the scheduler starts, and
// its record says how late (`lateByMs`); the log says so too.
//
// Thread safety: Start, Wake and the destructor from any thread.

#include <condition_variable>
#include <mutex>
#include <thread>

#include "gonfalon/storage/store.h"
#include "metrics.h"
#include "release_guards.h"
#include "webhooks.h"

namespace gonfalon::server {

class Scheduler {
 public:
  // Each run is also published to the webhooks (scheduled_change.applied / .failed).
  Scheduler(storage::Store& store, Metrics& metrics, WebhookDispatcher& webhooks);
  ~Scheduler();  // stops the thread (a change being applied finishes first)
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Starts the thread (once; later calls do nothing). The server calls it when ready.
  void Start();
  // A scheduled change was created, moved or canceled: look again.
  void Wake();
  // The latest verdicts of the guards of active plan `id` (GuardMonitor::Status).
  rules::Value GuardStatus(const std::string& id) const { return guards_.Status(id); }

 private:
  void Loop();
  bool RunDue();    // false when storage failed
  bool RunPlans();  // likewise; true when a plan is still active

  storage::Store& store_;
  Metrics& metrics_;
  WebhookDispatcher& webhooks_;
  GuardMonitor guards_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool started_ = false;  // REQUIRES: mu_
  bool stop_ = false;     // REQUIRES: mu_
  bool woken_ = false;    // REQUIRES: mu_
  std::thread thread_;
};

}  // namespace gonfalon::server
