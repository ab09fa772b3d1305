#pragma once
// Write-ahead log files that are already written when RocksDB starts appending to them.
//
// A synced write appends to the WAL and calls fdatasync. An append changes the file's size and
// allocates blocks, so each fdatasync must also write that metadata (on a journaling file
// system, a journal commit): more I/O, and on the 2-core test machine with two busy threads
// beside it 4.4–7.6 ms at p99 against 1.0–1.8 ms for overwriting blocks already written
// (docs/performance.md). RocksDB's own remedy, recycle_log_file_num, is switched off by its
// point-in-time recovery mode, which we keep.
//
// So a new WAL file is created over a spare file of zeros, already written and synced: RocksDB
// writes it from the start (ReuseWritableFile opens without truncating), its size does not
// change until the zeros run out, and fdatasync writes only the data. The log reader skips
// zero-filled blocks (the format reserves record type 0 for preallocated space), so a crash
// leaves a readable log; a clean close truncates the file to what was written. One spare is
// kept ready per store (`wal.prefilled` beside the WAL files, a name RocksDB ignores): the next
// is written on a background thread as soon as one is taken, and a spare left by the previous
// run is used at the next open. When no spare is ready (the very first open, or logs switching
// faster than spares are written), the first open writes one at once and later switches fall
// back to a plain new file.
//
// Thread safety: RocksDB may create files from any thread; the file system is safe for that.

#include <cstdint>
#include <memory>

namespace rocksdb {
class FileSystem;
}  // namespace rocksdb

namespace gonfalon::storage::internal {

// A file system that forwards everything to `base` except the creation of WAL files
// (`<digits>.log`), which it takes from prefilled spares of `prefill_bytes` zeros.
// prefill_bytes == 0: no prefilling (plain `base` behaviour).
std::shared_ptr<rocksdb::FileSystem> NewPrefilledWalFileSystem(std::shared_ptr<rocksdb::FileSystem> base,
                                                               uint64_t prefill_bytes);

// The spare's file name inside the WAL directory.
inline constexpr char kPrefilledWalName[] = "wal.prefilled";

}  // namespace gonfalon::storage::internal
