// RocksDB checkpoints (backups) of any store in store/ (private to the
// library): one helper so the archive, accounts, push and media stores take
// them the same way.
#pragma once

#include <rocksdb/db.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "chat/common/status.h"

namespace chat::store {

// Writes a consistent, openable copy of `db` into `dir`: table files are hard
// links when `dir` is on the same file system (copies otherwise), the live
// WAL is flushed first. `dir` must be absolute and must not exist; its parent
// must (kInvalidArgument / kAlreadyExists otherwise). `what` prefixes the
// errors. *sequence (optional) receives the database's sequence number at the
// checkpoint.
Status write_checkpoint(rocksdb::DB* db, const std::string& dir, std::string_view what,
                        uint64_t* sequence = nullptr);

}  // namespace chat::store
