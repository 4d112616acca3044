// chat-api's media metadata: one record per upload (POST /v1/media), with
// indexes by uploader (account deletion) and by content hash (a blob is kept
// while any record names it). docs/media.md has the whole design.
//
// Owned by chat-api alone: its own RocksDB directory ($CHAT_DATA_DIR/api/media),
// next to the account store. The blobs themselves are files (api/src/media.cpp);
// this store never touches them. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "chat/common/status.h"

namespace chat::store {

struct MediaRecord {
  std::string id;            // random, URL-safe; the store's key
  std::string uploader;      // user id
  std::string content_type;  // decided from the bytes at upload
  std::string sha256;        // lowercase hex of the bytes: names the blob
  uint64_t size = 0;         // bytes
  int64_t created_ms = 0;
  bool thumbnail = false;  // a thumbnail blob exists for this content
};

class MediaStore {
 public:
  static Result<std::unique_ptr<MediaStore>> open(const std::string& path);
  ~MediaStore();

  // kAlreadyExists when the id is taken; kInvalidArgument for an empty id or
  // uploader, a NUL byte in either, or a sha256 that is not 64 hex digits.
  Status put(const MediaRecord& record);
  // nullopt when absent (or the id is malformed).
  Result<std::optional<MediaRecord>> get(const std::string& id) const;
  // Every record of `uploader`, by id.
  Result<std::vector<MediaRecord>> by_uploader(const std::string& uploader) const;
  // Removes the record and its index entries (absent: ok). Returns how many
  // records still name the same sha256 afterwards (0: its blob may go).
  Result<size_t> remove(const std::string& id);
  // How many records name this sha256.
  Result<size_t> count_sha256(const std::string& sha256) const;

  // Writes a consistent copy of the store into `dir` (a RocksDB checkpoint;
  // see Archive::checkpoint for the rules on `dir`). Safe while in use.
  Status checkpoint(const std::string& dir) const;

 private:
  struct Impl;
  explicit MediaStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace chat::store
