// chat-api start-up: the data layout under CHAT_DATA_DIR, the broker's
// archive opened as a secondary, and the process's run loop. main.cpp only
// calls run().
#pragma once

#include <chrono>
#include <memory>

#include "chat/api/config.h"
#include "chat/common/jwt.h"
#include "chat/common/status.h"
#include "chat/store/accounts.h"
#include "chat/store/archive.h"

namespace chat::api {

struct DataDir {
  jwt::Signer signer;
  std::unique_ptr<store::AccountStore> accounts;
};

// Creates the directories (keys/, api/), the issuer key pair (keys/issuer.pem,
// 0600, and keys/jwks.json, which the broker reads) and the account database.
// Idempotent: existing keys and accounts are kept.
Result<DataDir> init_data_dir(const Config& config);

// Opens the broker's archive as a RocksDB secondary, retrying for up to
// `patience` while the broker has not created it yet.
Result<std::unique_ptr<store::ArchiveReader>> open_archive_reader(
    const Config& config, std::chrono::milliseconds patience);

// The chat-api process. `chat-api --init` prepares CHAT_DATA_DIR (and the
// CHAT_ADMINS accounts) and exits; without arguments it also serves until
// SIGINT/SIGTERM. Returns the exit code: 0 clean, 1 runtime failure, 2 bad
// configuration or usage.
int run(int argc, char** argv);

}  // namespace chat::api
