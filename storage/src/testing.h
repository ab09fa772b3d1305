#pragma once
// Test-only access to the raw database (the tests never include RocksDB headers themselves).

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

}  // namespace gonfalon::storage::testing
