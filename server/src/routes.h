#pragma once
// The API's handlers, one group per resource, each in its own file and each adding its
// routes to the router:
//   operations_routes.cc  /healthz, /readyz, /metrics
//   project_routes.cc     projects and environments
//   flag_routes.cc        flags (project level and per environment) and segments
//   change_routes.cc      change sets, history, restore
//   key_routes.cc         API keys
//   sdk_routes.cc         /sdk/v1: stream, polling, evaluation, events
//   experiment_routes.cc  metrics, experiment iterations and their results
//   schedule_routes.cc    scheduled changes
//   webhook_routes.cc     webhooks and their delivery logs
//   release_plan_routes.cc  release plans
//   change_request_routes.cc  change requests (approvals)
//   as_code_routes.cc     flags as code: export and apply a project document
//   promote_routes.cc     compare two environments, promote targeting between them
//   release_metrics_routes.cc  release frequency, lead time, change failure rate, time to restore
//   console_routes.cc     the web console's files (/ui/)
//   ofrep_routes.cc       OFREP (the mapping itself is in ofrep.h, pure and tested alone)

#include <atomic>
#include <string>

#include "api_options.h"
#include "exposure_recorder.h"
#include "gonfalon/rules/snapshot.h"
#include "gonfalon/storage/store.h"
#include "hub.h"
#include "metrics.h"
#include "router.h"
#include "scheduler.h"
#include "webhooks.h"

namespace gonfalon::server {

// What the handlers work with. Outlives the router.
struct Services {
  storage::Store& store;
  Hubs& hubs;
  Metrics& metrics;
  const ApiOptions& options;
  const std::atomic<bool>& ready;
  ExposureRecorder& exposures;  // experiment exposures of server-side evaluations
  Scheduler& scheduler;         // applies scheduled changes when due
  WebhookDispatcher& webhooks;  // delivers events to webhooks
};

void AddOperationsRoutes(Router& router, Services& s);
void AddProjectRoutes(Router& router, Services& s);
void AddFlagRoutes(Router& router, Services& s);
void AddChangeRoutes(Router& router, Services& s);
void AddKeyRoutes(Router& router, Services& s);
void AddSdkRoutes(Router& router, Services& s);
void AddOfrepRoutes(Router& router, Services& s);
void AddExperimentRoutes(Router& router, Services& s);
void AddScheduleRoutes(Router& router, Services& s);
void AddWebhookRoutes(Router& router, Services& s);
void AddReleasePlanRoutes(Router& router, Services& s);
void AddChangeRequestRoutes(Router& router, Services& s);
void AddAsCodeRoutes(Router& router, Services& s);
void AddPromoteRoutes(Router& router, Services& s);
void AddReleaseMetricsRoutes(Router& router, Services& s);
void AddConsoleRoutes(Router& router, Services& s);

// A write refused because its environment requires approvals (storage::IsApprovalRequired)
// becomes this: `spec` (its kind and what it holds; its project and environment, else the
// call's {p} and {e}) opened as a change request by the caller, answered 202 with the request
// (change_request_routes.cc).
Response OpenChangeRequestResponse(Services& s, const Call& c, storage::ChangeRequest spec);

// The items of a change-set request body (`items`), each checked with its path named
// (change_routes.cc).
absl::Status ParseChangeItems(const rules::Value& items, std::vector<storage::ItemChange>& out);

// The audit actor of a call: "key:<id> (<name>)", for the person the key is named for.
storage::Actor ActorOf(const storage::ApiKey& key);

}  // namespace gonfalon::server
