#include "checkpoint.h"

#include <rocksdb/utilities/checkpoint.h>

#include <filesystem>
#include <memory>
#include <system_error>

#include "rocks_db.h"

namespace chat::store {

namespace fs = std::filesystem;

Status write_checkpoint(rocksdb::DB* db, const std::string& dir, std::string_view what,
                        uint64_t* sequence) {
  const fs::path path(dir);
  if (dir.empty() || !path.is_absolute() || dir.find('\0') != std::string::npos) {
    return invalid_argument(std::string(what) + ": checkpoint directory must be an absolute path");
  }
  std::error_code ec;
  if (fs::symlink_status(path, ec).type() != fs::file_type::not_found) {
    return already_exists(std::string(what) + ": checkpoint directory " + dir + " exists");
  }
  if (!fs::is_directory(path.parent_path(), ec)) {
    return invalid_argument(std::string(what) + ": the parent of " + dir + " is not a directory");
  }
  rocksdb::Checkpoint* raw = nullptr;
  rocksdb::Status s = rocksdb::Checkpoint::Create(db, &raw);
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  if (!s.ok()) return from_rocksdb(s, std::string(what) + ": checkpoint");
  // log_size_for_flush 0: always flush, so the copy holds table files and an
  // empty WAL (and never depends on WAL files the source may recycle).
  s = checkpoint->CreateCheckpoint(dir, /*log_size_for_flush=*/0, sequence);
  if (!s.ok()) return from_rocksdb(s, std::string(what) + ": checkpoint into " + dir);
  return Status::ok();
}

}  // namespace chat::store
