#include "testing.h"

#include <vector>

#include "records.h"
#include "rocksdb/db.h"

namespace gonfalon::storage::testing {

absl::Status PutRaw(const std::string& path, std::string_view cf, std::string_view key,
                    std::string_view value) {
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const char* name : internal::kCfNames) descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  rocksdb::DBOptions options;
  rocksdb::Status s = rocksdb::DB::Open(options, path, descriptors, &handles, &db);
  if (!s.ok()) return absl::InternalError(s.ToString());
  for (size_t i = 0; i < handles.size(); ++i) {
    if (cf == internal::kCfNames[i]) s = db->Put(rocksdb::WriteOptions(), handles[i], std::string(key), std::string(value));
  }
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  db->Close();
  delete db;
  return s.ok() ? absl::OkStatus() : absl::InternalError(s.ToString());
}

}  // namespace gonfalon::storage::testing
