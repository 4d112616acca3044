// Online backups (POST /v1/admin/backups; docs/operations.md, "Backup and
// restore"): one directory holding a consistent copy of everything the stack
// needs to start again, taken while traffic flows.
//
// Order, and why restore is safe with it (each step copies what the earlier
// ones may refer to, never the other way round):
//   1. archive/        the broker's RocksDB checkpoint (control op
//                      archive.checkpoint), taken on its one thread: exactly
//                      the messages acknowledged before it.
//   2. api/accounts, api/media, api/push, api/e2e-keys   chat-api's RocksDB
//      checkpoints.
//      Steps 1-2 run with account creation paused and steps 1-4 with
//      account deletion paused (Service::pause_account_changes,
//      pause_account_deletion), so accounts and the archive's users agree.
//      Media records are written before any message can name them, so every
//      mediaref in the archive copy has its record in the later api/media
//      copy. The push cursor may be ahead of the archive's push
//      records (already taken over: ignored), never behind them.
//   3. keys/, api/media-url.key   small files, copied.
//   4. media/blobs/    hard links (same file system) or copies of the blobs and
//                      thumbnails: written before their records, immutable,
//                      and account deletion (the only thing that unlinks a
//                      recorded blob) stays paused from step 1 to the end of
//                      this step (Service::pause_account_deletion), so every
//                      record of step 2 finds its blob.
//   5. manifest.json   last (written to a temporary name, fsynced, renamed):
//                      a directory without it is an incomplete backup.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "chat/common/clock.h"
#include "chat/common/status.h"

namespace chat::store {
class AccountStore;
class MediaStore;
class PushStore;
class KeyStore;
}  // namespace chat::store

namespace chat::api {

class ControlChannel;
class Service;

// The manifest's format version (manifest.json "version").
inline constexpr int kBackupFormatVersion = 1;

struct BackupOptions {
  std::string data_dir;  // CHAT_DATA_DIR
  // CHAT_BACKUP_DIR: backups go only inside it. Default: empty (anywhere
  // outside the data dir's own directories).
  std::string root;
  // How long the broker may take for its checkpoint. Default: 10 minutes.
  std::chrono::milliseconds broker_timeout = std::chrono::minutes(10);
  // Tests: runs after the database copies, before the media files are
  // linked (account deletions are paused then).
  std::function<void()> before_media_copy;
};

// What a backup reads from. Borrowed; each must outlive the runner. `media`,
// `push`, `service` and `keys` may be null (tests; then that part is skipped).
struct BackupSources {
  ControlChannel* control = nullptr;
  const store::AccountStore* accounts = nullptr;
  const store::MediaStore* media = nullptr;
  const store::PushStore* push = nullptr;
  const Service* service = nullptr;
  const Clock* clock = nullptr;           // Default: SystemClock.
  const store::KeyStore* keys = nullptr;  // the key directory (api/e2e-keys)
};

class BackupRunner {
 public:
  BackupRunner(BackupOptions options, BackupSources sources);

  // Whether `dir` may receive a backup: absolute, without `.`/`..` parts, its
  // parent an existing directory, itself absent or an empty directory, inside
  // the root when one is set, outside the data dir's archive/, api/, media/,
  // keys/ and mosquitto/. kInvalidArgument saying which rule failed.
  Status check_target(const std::string& dir) const;

  // Takes a backup into `dir` (check_target first) and returns its manifest.
  // One at a time: kAlreadyExists while another runs. A failure leaves the
  // directory without manifest.json (recognisably incomplete). Thread-safe.
  Result<nlohmann::json> run(const std::string& dir);

 private:
  Result<nlohmann::json> take(const std::string& dir);

  BackupOptions options_;
  BackupSources sources_;
  std::mutex running_;  // held by the backup in progress
};

}  // namespace chat::api
