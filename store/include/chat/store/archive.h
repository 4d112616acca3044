// The message archive: RocksDB schema and access.
//
// One writer per directory (ARCHITECTURE.md): the broker plugin opens an
// Archive (primary) and is the only process that writes it. chat-api opens an
// ArchiveReader (RocksDB secondary instance) and calls catch_up() before each
// read that must see the latest acknowledged writes.
//
// Schema (column families, all created at first open, because a secondary
// never sees families created later):
//   messages  "<conv>\0<id>"         -> envelope JSON   (page of a conversation = one range scan)
//   inbox     "<user>\0<id>"         -> "<conv>"        (sync for a user = one range scan + point
//   gets) convs     "<user>\0<conv>"       -> {"last":"<id>","unread":N} dedup     "<client
//   id>\0<cid>"   -> "<conv>\0<id>"  (idempotency by sender device + cid) users     "<user>" ->
//   "{}"            (ids that exist; maintained by the broker) meta      small singletons (schema
//   version)
// Server ids are fixed-width strings that sort in archive order, so "after id X"
// is a byte-order seek.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "chat/common/status.h"

namespace chat::store {

struct PageQuery {
  size_t limit = 50;   // already clamped by the caller; 0 is treated as 1
  std::string before;  // exclusive upper bound id, or empty
  std::string after;   // exclusive lower bound id, or empty (before wins if both)
};

// Envelopes oldest first. `next` is the cursor for the following page in the
// same direction (before: the oldest id returned; after/sync: the newest id
// returned), or nullopt when no more messages exist in that direction.
struct Page {
  std::vector<std::string> envelopes;  // JSON text, exactly as archived
  std::optional<std::string> next;
};

struct ConversationSummary {
  std::string conv;
  std::string last_id;
  std::string last_envelope;
  int64_t unread = 0;
};

struct AppendRequest {
  std::string id;         // server id, greater than every id appended before
  std::string conv;       // "dm:<a>:<b>" or "g:<gid>"
  std::string from;       // sender user id
  std::string client_id;  // sender device's MQTT client id (idempotency scope)
  std::string cid;        // the client's id for this message
  std::string envelope;   // JSON text delivered to devices
  // Users whose inbox and conversation list get the message, sender included.
  std::vector<std::string> participants;
};

struct ArchiveOptions {
  std::string path;
  bool sync_writes = false;         // Default: false (WAL written, no fsync: survives SIGKILL).
  uint64_t wal_ttl_seconds = 3600;  // Default: 3600. Keeps WAL files for secondaries.
};

// Read operations shared by the writer and the reader. Thread-safe.
class ArchiveView {
 public:
  virtual ~ArchiveView();

  Result<Page> conversation_page(const std::string& conv, const PageQuery& query) const;
  // Every message of every conversation of `user` with id > since, oldest first.
  Result<Page> sync(const std::string& user, const std::string& since, size_t limit) const;
  // The user's conversations, most recent first.
  Result<std::vector<ConversationSummary>> conversations(const std::string& user,
                                                         size_t limit) const;
  Result<bool> user_exists(const std::string& user) const;
  // True when `user` has at least one message in `conv` (sent or received).
  Result<bool> has_conversation(const std::string& user, const std::string& conv) const;
  Result<std::optional<std::string>> envelope(const std::string& conv, const std::string& id) const;

 protected:
  struct Impl;
  explicit ArchiveView(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The single writer. Not thread-safe for writes: the broker calls it from its
// one plugin thread.
class Archive final : public ArchiveView {
 public:
  static Result<std::unique_ptr<Archive>> open(const ArchiveOptions& options);
  ~Archive() override;

  // The envelope archived earlier for (client_id, cid), if any.
  Result<std::optional<std::string>> find_duplicate(const std::string& client_id,
                                                    const std::string& cid) const;
  // Atomically writes the message, inbox entries, conversation summaries and the
  // idempotency entry (one WriteBatch). Returns only once the WAL has it.
  Status append(const AppendRequest& request);

  Status add_user(const std::string& user);
  Status remove_user(const std::string& user);

  // Greatest message id ever appended ("" when empty): the id generator's floor
  // after a restart.
  Result<std::string> max_id() const;

 private:
  explicit Archive(std::unique_ptr<Impl> impl);
};

// A RocksDB secondary instance over the broker's archive. Thread-safe.
class ArchiveReader final : public ArchiveView {
 public:
  static Result<std::unique_ptr<ArchiveReader>> open(const std::string& primary_path,
                                                     const std::string& secondary_path);
  ~ArchiveReader() override;

  // Makes every write the primary completed before this call visible.
  // Concurrent callers may share one catch-up.
  Status catch_up();

 private:
  explicit ArchiveReader(std::unique_ptr<Impl> impl);
};

}  // namespace chat::store
