// What every RocksDB store in store/ shares (private to the library): the
// mapping of RocksDB's errors to Status, and a database opened with named
// column families (chat-api's accounts and push stores).
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "chat/common/status.h"
#include "info_log.h"

namespace chat::store {

// `what` names the operation; I/O and transient trouble is kUnavailable.
inline Status from_rocksdb(const rocksdb::Status& s, std::string_view what) {
  std::string message = std::string(what) + ": " + s.ToString();
  if (s.IsNotFound()) return not_found(std::move(message));
  if (s.IsIOError() || s.IsBusy() || s.IsTryAgain() || s.IsTimedOut() || s.IsShutdownInProgress() ||
      s.IsIncomplete()) {
    return unavailable(std::move(message));
  }
  return internal_error(std::move(message));
}

// A database whose column families are addressed by index into the names
// given to open(). Families found on disk but not named are opened too
// (RocksDB refuses to open otherwise) and left alone.
struct FamilyDb {
  rocksdb::DB* db = nullptr;                           // owned; closed after the handles
  std::vector<rocksdb::ColumnFamilyHandle*> handles;   // owned: every family on disk
  std::vector<rocksdb::ColumnFamilyHandle*> families;  // ours, in the order of the names
  rocksdb::WriteOptions write_options;

  FamilyDb() = default;
  FamilyDb(const FamilyDb&) = delete;
  FamilyDb& operator=(const FamilyDb&) = delete;
  ~FamilyDb() {
    if (db == nullptr) return;
    for (auto* handle : handles) db->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
    db->Close().PermitUncheckedError();  // the WAL already holds every write
    delete db;
  }

  // `what` prefixes the errors ("accounts", "push store").
  template <size_t N>
  Status open(const std::string& path, rocksdb::DBOptions db_options,
              const rocksdb::ColumnFamilyOptions& cf_options, const char* const (&names)[N],
              std::string_view what) {
    db_options.create_if_missing = true;
    db_options.create_missing_column_families = true;
    // Not RocksDB's file logger: it aborts on a full disk (info_log.h).
    if (db_options.info_log == nullptr) db_options.info_log = make_info_log(path + "/LOG");
    std::vector<std::string> on_disk;
    rocksdb::DB::ListColumnFamilies(db_options, path, &on_disk).PermitUncheckedError();  // new
    std::set<std::string> all(on_disk.begin(), on_disk.end());
    all.insert(rocksdb::kDefaultColumnFamilyName);
    for (const char* name : names) all.insert(name);
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const auto& name : all) descriptors.emplace_back(name, cf_options);
    rocksdb::Status s = rocksdb::DB::Open(db_options, path, descriptors, &handles, &db);
    if (!s.ok())
      return unavailable(std::string(what) + ": cannot open " + path + ": " + s.ToString());
    families.assign(N, nullptr);
    for (size_t f = 0; f < N; ++f) {
      for (auto* handle : handles) {
        if (handle->GetName() == names[f]) families[f] = handle;
      }
      if (families[f] == nullptr) {
        return internal_error(std::string(what) + ": missing column family in " + path);
      }
    }
    return Status::ok();
  }

  rocksdb::ColumnFamilyHandle* cf(size_t f) const { return families[f]; }

  Result<std::optional<std::string>> get(size_t f, const rocksdb::Slice& key,
                                         std::string_view what) const {
    std::string value;
    rocksdb::Status s = db->Get(rocksdb::ReadOptions(), cf(f), key, &value);
    if (s.IsNotFound()) return std::optional<std::string>();
    if (!s.ok()) return from_rocksdb(s, what);
    return std::optional<std::string>(std::move(value));
  }

  Status write(rocksdb::WriteBatch* batch, std::string_view what) {
    rocksdb::Status s = db->Write(write_options, batch);
    if (!s.ok()) return from_rocksdb(s, what);
    return Status::ok();
  }
};

}  // namespace chat::store
