#include "rocks_store.h"

#include <openssl/rand.h>
#include <sys/statvfs.h>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include "prefilled_wal.h"
#include "rocksdb/cache.h"
#include "rocksdb/file_system.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/table.h"
#include "rocksdb/utilities/checkpoint.h"
#include "rocksdb/write_batch.h"

namespace gonfalon::storage::internal {

std::string Hex(const unsigned char* p, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kHex[p[i] >> 4]);
    out.push_back(kHex[p[i] & 0xF]);
  }
  return out;
}

// Random bytes from OpenSSL's CSPRNG, hex-encoded; Unavailable when it cannot deliver (secrets
// and salts must never be predictable, so nothing is written then).
absl::StatusOr<std::string> RandomHex(size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  if (RAND_bytes(buf.data(), static_cast<int>(bytes)) != 1) {
    return absl::UnavailableError("the system's secure random number generator failed (OpenSSL RAND_bytes)");
  }
  return Hex(buf.data(), bytes);
}

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  if (s.IsCorruption()) return absl::DataLossError(StrCat(what, ": ", s.ToString()));
  return absl::InternalError(StrCat(what, ": ", s.ToString()));
}

int64_t VersionOf(const std::optional<Value>& item) {
  if (!item.has_value()) return 0;
  const Value* v = item->Find("version");
  return v == nullptr ? 0 : static_cast<int64_t>(v->as_number());
}

absl::Status RocksStore::Init() {
  ASSIGN_OR_RETURN(auto v, Get(kMeta, "schema_version"));
  if (!v.has_value()) {
    RETURN_IF_ERROR(FromRocks(db_->Put(SyncWrite(), cfs_[kMeta], "schema_version", std::to_string(kSchemaVersion)),
                              "writing the schema version"));
    v = std::to_string(kSchemaVersion);
  }
  if (*v != std::to_string(kSchemaVersion)) {
    return absl::FailedPreconditionError(
        StrCat(options_.path, " holds schema version ", *v, "; this binary reads version ",
               kSchemaVersion, " (see docs/storage.md, Migrations)"));
  }
  // The secret stream tokens are derived with (StreamToken); made once per database.
  ASSIGN_OR_RETURN(auto secret, Get(kMeta, "stream_token_secret"));
  if (!secret.has_value()) {
    ASSIGN_OR_RETURN(secret, RandomHex(32));
    RETURN_IF_ERROR(FromRocks(db_->Put(SyncWrite(), cfs_[kMeta], "stream_token_secret", *secret),
                              "writing the stream token secret"));
  }
  stream_secret_ = std::move(*secret);
  return absl::OkStatus();
}

void RocksStore::SetChangeListener(std::function<void(const AppliedChangeSet&)> listener) {
  listener_ = std::move(listener);
}

absl::Status RocksStore::PruneHistory() {
  RETURN_IF_ERROR(CheckWritable());
  RETURN_IF_ERROR(PruneExperimentBatches());
  int64_t cutoff_time = Now() - options_.retain_ms;
  ASSIGN_OR_RETURN(std::vector<Project> projects, ListProjects());
  for (const Project& p : projects) {
    ASSIGN_OR_RETURN(std::vector<Environment> envs, ListEnvironments(p.key));
    for (const Environment& e : envs) {
      EnvState& env = Env(p.key, e.key);
      std::string prefix = EnvPrefix(p.key, e.key);
      // In batches of at most 1,000 change sets or 20,000 deletions, the environment's lock
      // released between them: a month of history to drop holds its writes up for one batch
      // at a time, not for all of it.
      constexpr size_t kMaxChangeSets = 1000, kMaxOps = 20000;
      for (bool more = true; more;) {
        std::lock_guard<std::mutex> l(env.mu);
        absl::Status exists = RequireEnv(env, p.key, e.key);
        if (absl::IsNotFound(exists)) break;  // deleted meanwhile
        RETURN_IF_ERROR(exists);
        int64_t keep_from = env.record.sequence - options_.retain_changes + 1;  // by count
        std::vector<WriteOp> ops;
        size_t pruned = 0;
        more = false;
        absl::Status scan = Scan(kAudit, prefix, nullptr, [&](std::string_view k, std::string_view v) {
          ASSIGN_OR_RETURN(AuditRecord rec, ParseAuditKeys(k, v));
          if (rec.sequence >= keep_from && rec.time_ms >= cutoff_time) {
            return absl::CancelledError("done");  // the rest is newer
          }
          if (pruned == kMaxChangeSets || ops.size() >= kMaxOps) {
            more = true;
            return absl::CancelledError("the next batch");
          }
          AppendPrune(p.key, e.key, rec, ops);
          ++pruned;
          return absl::OkStatus();
        });
        if (!scan.ok() && !absl::IsCancelled(scan)) return scan;
        if (!ops.empty()) RETURN_IF_ERROR(CommitLocked({&env}, std::move(ops), {}));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status RocksStore::Checkpoint(const std::string& dir) {
  rocksdb::Checkpoint* cp = nullptr;
  RETURN_IF_ERROR(FromRocks(rocksdb::Checkpoint::Create(db_, &cp), "checkpoint"));
  std::unique_ptr<rocksdb::Checkpoint> owned(cp);
  return FromRocks(owned->CreateCheckpoint(dir), StrCat("checkpoint to ", dir));
}

std::vector<std::pair<std::string, int64_t>> RocksStore::Stats() {
  std::vector<std::pair<std::string, int64_t>> out;
  for (const char* prop : {"rocksdb.estimate-num-keys", "rocksdb.total-sst-files-size",
                           "rocksdb.cur-size-all-mem-tables", "rocksdb.estimate-live-data-size",
                           "rocksdb.num-running-compactions", "rocksdb.estimate-pending-compaction-bytes",
                           "rocksdb.estimate-table-readers-mem"}) {
    uint64_t total = 0;
    for (auto* cf : cfs_) {
      uint64_t v = 0;
      if (db_->GetIntProperty(cf, prop, &v)) total += v;
    }
    out.emplace_back(prop, static_cast<int64_t>(total));
  }
  // Shared by every family: asked once, not summed.
  out.emplace_back("rocksdb.block-cache-usage", static_cast<int64_t>(block_cache_->GetUsage()));
  out.emplace_back("commit-groups", queue_.groups());
  out.emplace_back("commit-writes", queue_.writes());
  return out;
}

int64_t RocksStore::Now() const {
  if (options_.now_ms) return options_.now_ms();
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

rocksdb::WriteOptions RocksStore::SyncWrite() const {
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  return wo;
}

WriteOp RocksStore::Put(Cf cf, std::string key, std::string value) {
  return {WriteOp::Type::kPut, cfs_[cf], std::move(key), std::move(value)};
}

WriteOp RocksStore::DeleteRange(Cf cf, std::string from, std::string to) {
  return {WriteOp::Type::kDeleteRange, cfs_[cf], std::move(from), std::move(to)};
}

absl::Status RocksStore::CheckWritable() const {
  if (poisoned_.load()) {
    return absl::InternalError("the store refuses writes after a failed write; restart the server");
  }
  return CheckFreeSpace();
}

absl::Status RocksStore::CheckFreeSpace() const {
  if (options_.min_free_bytes <= 0) return absl::OkStatus();
  // Far from the reserve, the answer holds for a moment: a statfs per write cost ~30 us on
  // the write path, and no write through the API comes near kFarFromReserve in kFreeSpaceTtl.
  constexpr uint64_t kFarFromReserve = uint64_t{1} << 30;
  constexpr auto kFreeSpaceTtl = std::chrono::milliseconds(50);
  int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
  if (now < free_space_ok_until_.load(std::memory_order_relaxed)) return absl::OkStatus();
  struct statvfs fs {};
  if (statvfs(options_.path.c_str(), &fs) != 0) return absl::OkStatus();  // cannot tell: let RocksDB try
  uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  if (free_bytes >= static_cast<uint64_t>(options_.min_free_bytes) + kFarFromReserve) {
    free_space_ok_until_.store(now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(kFreeSpaceTtl).count(),
                               std::memory_order_relaxed);
  }
  if (free_bytes >= static_cast<uint64_t>(options_.min_free_bytes)) return absl::OkStatus();
  return absl::ResourceExhaustedError(StrCat("disk: ", free_bytes >> 20, " MiB free on the data directory's filesystem, below the ",
                                             options_.min_free_bytes >> 20,
                                             " MiB kept in reserve; nothing was written. Writes resume when space is freed"));
}

absl::Status RocksStore::Poison(const absl::Status& s) {
  poisoned_.store(true);
  return s;
}

absl::Status RocksStore::VersionConflict(const std::string& what, int64_t actual, int64_t expected) {
  return absl::AbortedError(StrCat(what, " is at version ", actual, ", not ", expected));
}

absl::Status RocksStore::WriteNow(std::vector<WriteOp> ops) {
  CommitQueue::Writer w;
  w.ops = std::move(ops);
  queue_.Enqueue(w);
  absl::Status s = queue_.Wait(w);
  CountKeyWrites(w.ops);
  return s.ok() ? s : Poison(s);
}

void RocksStore::CountKeyWrites(const std::vector<WriteOp>& ops) {
  for (const WriteOp& op : ops) {
    if (op.cf == cfs_[kKeys]) {
      keys_generation_.fetch_add(1, std::memory_order_acq_rel);
      return;
    }
  }
}

absl::Status RocksStore::CommitLocked(const std::vector<EnvState*>& envs, std::vector<WriteOp> ops, const std::vector<AppliedChangeSet>& applied) {
  absl::Status s = WriteNow(std::move(ops));
  for (EnvState* e : envs) ClearPending(*e, e->record.sequence);
  if (!s.ok()) return s;
  for (const AppliedChangeSet& a : applied) Notify(a);
  return absl::OkStatus();
}

void RocksStore::Notify(const AppliedChangeSet& a) {
  if (listener_) listener_(a);
}

void RocksStore::ClearPending(EnvState& env, int64_t sequence) {
  for (auto it = env.pending.begin(); it != env.pending.end();) {
    if (it->second.sequence <= sequence) {
      env.pending.erase(it++);
    } else {
      ++it;
    }
  }
}

RocksStore::ProjectState& RocksStore::ProjectLock(std::string_view project) {
  std::lock_guard<std::mutex> l(states_mu_);
  auto& p = projects_[std::string(project)];
  if (!p) p = std::make_unique<ProjectState>();
  return *p;
}

RocksStore::EnvState& RocksStore::Env(std::string_view project, std::string_view env) {
  std::lock_guard<std::mutex> l(states_mu_);
  auto& e = envs_[StrCat(project, "/", env)];
  if (!e) e = std::make_unique<EnvState>();
  return *e;
}

absl::Status RocksStore::LoadEnv(EnvState& env, std::string_view project, std::string_view key) {
  if (env.loaded) return absl::OkStatus();
  ASSIGN_OR_RETURN(auto v, GetJson(kEnvironments, StrCat(project, "/", key)));
  if (v.has_value()) {
    ASSIGN_OR_RETURN(env.record, Decoded(EnvironmentFromJson(*v), kEnvironments, StrCat(project, "/", key)));
    env.exists = true;
  }
  env.loaded = true;
  return absl::OkStatus();
}

absl::Status RocksStore::RequireEnv(EnvState& env, std::string_view project, std::string_view key) {
  RETURN_IF_ERROR(LoadEnv(env, project, key));
  if (!env.exists) {
    RETURN_IF_ERROR(GetProject(project).status());
    return absl::NotFoundError(
        StrCat("environment \"", key, "\" does not exist in project \"", project, "\""));
  }
  return absl::OkStatus();
}

RocksStore::EnvLocks RocksStore::LockEnvironments(std::string_view project, const std::vector<Environment>& envs) {
  EnvLocks out;
  for (const Environment& e : envs) {  // ListEnvironments returns key order
    EnvState& s = Env(project, e.key);
    out.locks.emplace_back(s.mu);
    if (!LoadEnv(s, project, e.key).ok() || !s.exists) {
      out.locks.pop_back();
      continue;
    }
    out.states.push_back(&s);
  }
  return out;
}

absl::StatusOr<std::optional<std::string>> RocksStore::Get(Cf cf, const std::string& key, const rocksdb::Snapshot* snap) {
  rocksdb::ReadOptions ro;
  ro.snapshot = snap;
  std::string value;
  rocksdb::Status s = db_->Get(ro, cfs_[cf], key, &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  RETURN_IF_ERROR(FromRocks(s, StrCat("reading ", kCfNames[cf], " ", key)));
  return std::optional<std::string>(std::move(value));
}

absl::StatusOr<std::vector<std::optional<std::string>>> RocksStore::MultiGet(Cf cf, const std::vector<std::string>& keys) {
  std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  db_->MultiGet(rocksdb::ReadOptions(), cfs_[cf], keys.size(), slices.data(), values.data(), statuses.data());
  std::vector<std::optional<std::string>> out(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (statuses[i].IsNotFound()) continue;
    RETURN_IF_ERROR(FromRocks(statuses[i], StrCat("reading ", kCfNames[cf], " ", keys[i])));
    out[i] = values[i].ToString();
  }
  return out;
}

absl::StatusOr<Value> RocksStore::ParseStored(Cf cf, std::string_view key, std::string_view text) {
  absl::StatusOr<Value> v = rules::ParseJson(text);
  if (!v.ok()) {
    return absl::DataLossError(
        StrCat("corrupt value in ", kCfNames[cf], " at key \"", key, "\": ", v.status().message()));
  }
  return v;
}

absl::StatusOr<std::optional<Value>> RocksStore::GetJson(Cf cf, const std::string& key, const rocksdb::Snapshot* snap) {
  ASSIGN_OR_RETURN(auto raw, Get(cf, key, snap));
  if (!raw.has_value()) return std::optional<Value>();
  ASSIGN_OR_RETURN(Value v, ParseStored(cf, key, *raw));
  return std::optional<Value>(std::move(v));
}

absl::StatusOr<rules::Flag> RocksStore::DecodeStoredFlag(const Value& v, std::string_view key) {
  return Decoded(rules::DecodeFlag(v), kItems, key);
}

absl::StatusOr<rules::Segment> RocksStore::DecodeStoredSegment(const Value& v, std::string_view key) {
  return Decoded(rules::DecodeSegment(v), kItems, key);
}

}  // namespace gonfalon::storage::internal

namespace gonfalon::storage {

absl::StatusOr<std::unique_ptr<Store>> Store::Open(Options options) {
  std::error_code ec;
  std::filesystem::create_directories(options.path, ec);
  if (ec) return absl::InternalError(StrCat("cannot create ", options.path, ": ", ec.message()));
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 2;
  db_options.keep_log_file_num = 5;
  // Bounds what a restart after a crash replays: past this, the oldest memtables are flushed.
  db_options.max_total_wal_size = 64 << 20;
  // All memtables together stay under this (the fullest is flushed first), rather than each of
  // the twelve families filling its own 16 MiB: the server's memory stops growing with the
  // number of writes once it is reached.
  db_options.db_write_buffer_size = 32 << 20;
  uint64_t prefill = options.sync ? static_cast<uint64_t>(std::max<int64_t>(options.wal_prefill_bytes, 0)) : 0;
  std::unique_ptr<rocksdb::Env> env =
      rocksdb::NewCompositeEnv(internal::NewPrefilledWalFileSystem(rocksdb::FileSystem::Default(), prefill));
  db_options.env = env.get();
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  // One block cache of 8 MiB for all families (each of the twelve had its own, so reads could
  // hold up to 96 MiB); the rest as ColumnFamilyOptions::OptimizeForPointLookup sets it: items
  // are read by key.
  std::shared_ptr<rocksdb::Cache> block_cache = rocksdb::NewLRUCache(8 << 20);
  rocksdb::BlockBasedTableOptions table;
  table.data_block_index_type = rocksdb::BlockBasedTableOptions::kDataBlockBinaryAndHash;
  table.data_block_hash_table_util_ratio = 0.75;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.block_cache = block_cache;
  std::shared_ptr<rocksdb::TableFactory> table_factory(rocksdb::NewBlockBasedTableFactory(table));
  for (int i = 0; i < internal::kCfCount; ++i) {
    rocksdb::ColumnFamilyOptions cf;
    cf.table_factory = table_factory;
    cf.memtable_prefix_bloom_size_ratio = 0.02;
    cf.memtable_whole_key_filtering = true;
    // 16 MiB memtables instead of 64 where experiment events arrive by the hundred thousand a
    // second; 2 MiB for the families admin writes fill (items, change log, audit), at a few KB
    // a write: each would otherwise hold up to 16 MiB of recent writes (and a bulk load of
    // 100,000 flags several hundred MB) for as long as the server runs. (4 MiB left them at
    // 9–13 MB together after the scale benchmark's writes, its largest variable part of the
    // server's memory.)
    bool events = i == internal::kEvents || i == internal::kExperiments;
    cf.write_buffer_size = events ? 16 << 20 : 2 << 20;
    descriptors.emplace_back(internal::kCfNames[i], cf);
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, options.path, descriptors, &handles, &db);
  if (!s.ok()) {
    return internal::FromRocks(s, StrCat("opening the store at ", options.path));
  }
  auto store = std::make_unique<internal::RocksStore>(std::move(options), std::move(env), std::move(block_cache), db,
                                                      std::move(handles));
  RETURN_IF_ERROR(store->Init());
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace gonfalon::storage
