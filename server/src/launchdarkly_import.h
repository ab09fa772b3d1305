#pragma once
// `gonfalon import --from launchdarkly` (docs/flags-as-code.md, "Import"): a LaunchDarkly
// server-side payload ({"flags":{key: flag}, "segments":{key: segment}}, as its SDKs and Relay
// Proxy receive it) as a project document for one environment, which `apply` then makes
// true. Gonfalon's data model is LaunchDarkly's, so the flags and segments go across as they
// are; what Gonfalon does not take is reported with its path and left out: deleted items,
// big (unbounded) segments, fields outside the model, items that do not decode.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gonfalon/rules/value.h"

namespace gonfalon::server {

struct ImportNote {
  std::string path;    // "flags.checkout.debugEventsUntilDate"
  std::string reason;  // "not part of Gonfalon's flag model: ignored"
};

struct ImportResult {
  rules::Value document;  // for POST …/apply
  std::vector<ImportNote> notes;
  int flags = 0;     // taken
  int segments = 0;  // taken
};

// `existing`: the project's current document for `env` (GET …/export?env=E), or null when the
// project does not exist yet. Project-level fields LaunchDarkly's payload does not carry
// (name, description, tags, …) are kept from it; the environment's targeting and segments
// come from the payload. A payload that is not {"flags"?: {…}, "segments"?: {…}} is
// InvalidArgument naming its path.
absl::StatusOr<ImportResult> FromLaunchDarkly(const rules::Value& payload, const std::string& project, const std::string& env,
                                              const rules::Value* existing);

}  // namespace gonfalon::server
