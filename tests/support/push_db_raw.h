// Writes one key straight into chat-api's push database (api/push), past
// PushStore's checks, so a test can damage it. The store must be closed.
#pragma once

#include <rocksdb/db.h>

#include <memory>
#include <string>
#include <vector>

namespace chat::testing {

// Families in store/src/push_store.cpp's order, after "default".
enum class PushFamily { kTargets = 1, kTokens, kJobs, kDue, kMeta };

inline bool put_raw_push_key(const std::string& path, PushFamily family, const std::string& key,
                             const std::string& value) {
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  for (const char* name : {"default", "targets", "tokens", "jobs", "due", "meta"}) {
    families.emplace_back(name, rocksdb::ColumnFamilyOptions());
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  if (!rocksdb::DB::Open(rocksdb::DBOptions(), path, families, &handles, &raw).ok()) return false;
  std::unique_ptr<rocksdb::DB> db(raw);
  bool ok = db->Put(rocksdb::WriteOptions(), handles[static_cast<size_t>(family)], key, value).ok();
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  return ok;
}

}  // namespace chat::testing
