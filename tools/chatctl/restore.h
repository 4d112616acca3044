// `chatctl admin restore DIR`: puts a backup made by POST /v1/admin/backups
// (api/include/chat/api/backup.h) back into a data directory, on the server,
// with the stack stopped (docs/operations.md, "Backup and restore").
//
// Local file work only: no REST, no MQTT, no RocksDB (the checkpoints are
// copied as files and opened by the processes at their next start).
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "chat/common/status.h"

namespace chat::tools {

// The manifest format this chatctl reads (manifest.json "version").
inline constexpr int kBackupFormatVersion = 1;

// Checks that `backup_dir` holds a complete backup: manifest.json present
// (written last: without it the backup is incomplete), format "chat-backup"
// version 1, every component there with the file count and byte total the
// manifest gives, each RocksDB copy with its CURRENT file, and every media blob
// with the SHA-256 its name says. Returns the manifest; kNotFound without a
// manifest, kInvalidArgument naming the first mismatch.
Result<nlohmann::json> verify_backup(const std::string& backup_dir);

// A process of the stack that has `data_dir` open: RocksDB holds an fcntl
// lock on <db>/LOCK while a database is open (the broker: archive/; chat-api:
// api/accounts, api/media, api/push). Returns "" when none is held, else a
// description naming the lock file and the holder's pid.
std::string stack_holding(const std::string& data_dir);

struct RestoreOptions {
  std::string backup_dir;
  std::string data_dir;
  // Existing data (archive/, api/, media/, keys/, mosquitto/) is moved into
  // <data_dir>/pre-restore-<UTC time>/ instead of refusing. Never deleted.
  bool force = false;
  int64_t now_ms = 0;  // names the pre-restore directory
  // Tests: called before each step ("copied", "aside:<entry>",
  // "place:<entry>"); an error fails the restore there.
  std::function<Status(const std::string& step)> fault;
};

struct RestoreReport {
  nlohmann::json manifest;
  std::string moved_aside;  // "" when nothing was there
  uint64_t files = 0;       // files copied
  uint64_t bytes = 0;
};

// verify_backup, then refuses (kUnavailable) while stack_holding() names a
// process, and (kAlreadyExists) when the data dir holds data and !force; then
// copies the backup into a staging directory inside data_dir, moves the
// existing data aside (force) and renames the staged parts into place, with
// the layout the processes expect. A failure at any step puts back what was
// moved (the message says so, or where things are when even that failed):
// the old data is never deleted. The broker's persistence (mosquitto/) starts
// empty: the archive and /v1/sync are the truth.
Result<RestoreReport> restore_backup(const RestoreOptions& options);

}  // namespace chat::tools
