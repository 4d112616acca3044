// RocksDB's info LOG for every database in store/, written so that a full
// disk cannot crash the process.
//
// RocksDB 7.8's own file logger writes through a WritableFileWriter; once one
// of its writes failed (ENOSPC), the next log line trips an assertion in that
// writer (`sync_without_flush_called_`), and Debian's librocksdb is built with
// assertions: the broker aborted on a full disk (tests/integration/
// disk_full_test.cpp). This logger writes with stdio, ignores write errors
// (a lost log line is better than a lost process), and rolls the file over
// to `<path>.old` past a size limit.
#pragma once

#include <rocksdb/env.h>

#include <cstddef>
#include <memory>
#include <string>

namespace chat::store {

// A logger appending to `path` (opened on first use, so the directory may not
// exist yet when it is created). Thread-safe.
std::shared_ptr<rocksdb::Logger> make_info_log(const std::string& path, size_t max_bytes = 8 << 20);

}  // namespace chat::store
