#include "testing.h"

#include <functional>
#include <vector>

#include "records.h"
#include "rocksdb/db.h"

namespace gonfalon::storage::testing {

namespace {

// Opens the database at `path` with every column family, calls fn(db, handle of `cf`), closes.
absl::Status WithFamily(const std::string& path, std::string_view cf,
                        const std::function<rocksdb::Status(rocksdb::DB*, rocksdb::ColumnFamilyHandle*)>& fn) {
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const char* name : internal::kCfNames) descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  rocksdb::DBOptions options;
  rocksdb::Status s = rocksdb::DB::Open(options, path, descriptors, &handles, &db);
  if (!s.ok()) return absl::InternalError(s.ToString());
  s = rocksdb::Status::InvalidArgument("no column family ", std::string(cf));
  for (size_t i = 0; i < handles.size(); ++i) {
    if (cf == internal::kCfNames[i]) s = fn(db, handles[i]);
  }
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  db->Close();
  delete db;
  return s.ok() ? absl::OkStatus() : absl::InternalError(s.ToString());
}

}  // namespace

absl::Status PutRaw(const std::string& path, std::string_view cf, std::string_view key,
                    std::string_view value) {
  return WithFamily(path, cf, [&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* h) {
    return db->Put(rocksdb::WriteOptions(), h, std::string(key), std::string(value));
  });
}

absl::StatusOr<std::string> GetRaw(const std::string& path, std::string_view cf, std::string_view key) {
  std::string value;
  absl::Status s = WithFamily(path, cf, [&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* h) {
    rocksdb::Status g = db->Get(rocksdb::ReadOptions(), h, std::string(key), &value);
    return g.IsNotFound() ? rocksdb::Status::OK() : g;
  });
  if (!s.ok()) return s;
  return value;
}

absl::StatusOr<int64_t> CountRaw(const std::string& path, std::string_view cf, std::string_view prefix) {
  int64_t n = 0;
  absl::Status s = WithFamily(path, cf, [&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* h) {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), h));
    for (it->Seek(std::string(prefix)); it->Valid() && it->key().starts_with(std::string(prefix)); it->Next()) ++n;
    return it->status();
  });
  if (!s.ok()) return s;
  return n;
}

}  // namespace gonfalon::storage::testing
