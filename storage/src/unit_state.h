#pragma once
// The state of one experiment unit (a context key in an iteration), as stored under the
// iteration's unit prefix (experiment_records.h): its binary encoding, compact because a large
// experiment writes one per unit and event batch.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gonfalon::storage::internal {

// A unit's state in an iteration: its first exposure, whether it saw several variations, and
// per metric of the iteration (by position) the count and sum of its events.
struct UnitState {
  int variation = 0;
  int64_t first_ms = 0;
  bool multiple = false;
  std::vector<std::pair<double, double>> totals;  // by metric position: (count, sum)
};

// Binary, version 2 (~10 bytes for a unit only exposed, ~20 with a few metrics):
//   version byte 2; varints: variation (zigzag), first exposure ms (zigzag), flags (bit 0:
//   multiple exposures), metric count n; a bitmap of (n + 7) / 8 bytes marking the metrics
//   with a nonzero count or sum; per marked metric a tag byte (bit 0: count as a double, bit 1:
//   sum as a double; else each is a zigzag varint integer) and the count and the sum.
// Version 1 (read only): variation (int32), first exposure (int64), multiple (byte), metric
// count (byte), then (count, sum) as doubles per metric, host byte order (the database never
// moves between machines of different byte order).
std::string EncodeUnit(const UnitState& u);
// nullopt when the bytes are not a unit state. `metrics` (the iteration's metric count) sizes
// `totals` when the record has fewer.
std::optional<UnitState> DecodeUnit(std::string_view bytes, size_t metrics);

}  // namespace gonfalon::storage::internal
