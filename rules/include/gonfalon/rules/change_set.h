#pragma once
// ChangeSetEvent: one committed change set as the SDK stream's `changes` event carries it
// (DESIGN §4), with its encoding, its decoding, and the pure function that applies it to an
// environment. The store encodes it when it commits, the server's hub reads it to frame and
// route events, and the SDK decodes and applies it: one owner for the wire format.
//
//   {"sequence":43,"time":1700000000000,"items":[
//     {"kind":"flag","key":"checkout","version":8,"data":{...}},
//     {"kind":"segment","key":"beta","version":3,"deleted":true}]}
//
// Thread safety: plain values and pure functions.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "gonfalon/rules/model.h"
#include "gonfalon/rules/value.h"

namespace gonfalon::rules {

enum class ChangedKind : uint8_t { kFlag, kSegment };

struct ChangedItem {
  ChangedKind kind = ChangedKind::kFlag;
  std::string key;
  int64_t version = 0;
  std::optional<Value> data;  // the item's JSON (DESIGN §2); nullopt: deleted
};

struct ChangeSetEvent {
  int64_t sequence = 0;
  int64_t time_ms = 0;  // when it was committed (Unix ms); 0: not sent
  std::vector<ChangedItem> items;
};

std::string EncodeChangeSetEvent(const ChangeSetEvent& event);
// Checks the envelope (sequence, items, each item's kind, key, version, data or deleted); the
// items' data is decoded by ApplyChangeSet. Errors name the field ("items[2].kind: ...").
absl::StatusOr<ChangeSetEvent> DecodeChangeSetEvent(std::string_view json);

// A change set's item with its data decoded.
struct DecodedChange {
  ChangedKind kind = ChangedKind::kFlag;
  std::string key;
  int64_t version = 0;
  std::optional<Flag> flag;        // kFlag and not deleted
  std::optional<Segment> segment;  // kSegment and not deleted
};
// Decodes every item's data (leniently, as every reader of stored data does: codec.h), with
// key and version taken from the item. The error names the item.
absl::StatusOr<std::vector<DecodedChange>> DecodeChanges(const ChangeSetEvent& event);

// What applying a change set did.
struct AppliedChanges {
  std::vector<std::string> flags;     // flags written or deleted, sorted
  std::vector<std::string> segments;  // segments written or deleted, sorted
  void SortAndDedup();
};

// Applies `event` to `env`: each item replaces or removes the item of that key unless `env`
// already holds it at the same or a newer version; env.sequence becomes event.sequence. All
// or nothing: when an item's data does not decode, `env` is left as it was and the error names
// the item. Decoding is lenient, as every reader of stored data is (codec.h).
// The same rules on plain data. The server and the SDK apply change sets to their compiled
// snapshots with Snapshot::Apply; this form is the reference its property test checks it
// against (tests/rules/snapshot_apply_test.cc), and serves tools that hold an Environment.
absl::StatusOr<AppliedChanges> ApplyChangeSet(const ChangeSetEvent& event, Environment& env);

}  // namespace gonfalon::rules
