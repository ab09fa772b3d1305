#pragma once
// Test-only access to the raw database (the tests never include RocksDB headers themselves).

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace gonfalon::storage::testing {

// Writes a raw value into a column family of a closed store's database.
absl::Status PutRaw(const std::string& path, std::string_view cf, std::string_view key,
                    std::string_view value);
// Reads a raw value from a column family of a closed store's database ("" when absent).
absl::StatusOr<std::string> GetRaw(const std::string& path, std::string_view cf, std::string_view key);
// How many keys of a column family of a closed store's database start with `prefix`.
absl::StatusOr<int64_t> CountRaw(const std::string& path, std::string_view cf, std::string_view prefix);

}  // namespace gonfalon::storage::testing
