// The message archive: RocksDB schema and access.
//
// One writer per directory (ARCHITECTURE.md): the broker plugin opens an
// Archive (primary) and is the only process that writes it. chat-api opens an
// ArchiveReader (RocksDB secondary instance) and calls catch_up() before each
// read that must see the latest acknowledged writes.
//
// clang-format off
// Schema (column families, all created at first open, because a secondary
// never sees families created later). See store/README.md for the full table.
//   messages     <conv>\0<id>          envelope JSON (a page = one range scan)
//   inbox        <user>\0<id>          <conv> (sync = one range scan + MultiGet)
//   convs        <user>\0<conv>        {"last":<id>,"unread":N}
//   dedup        <client id>\0<cid>    <conv>\0<id> (idempotency)
//   users        <user>                {} (ids that exist; kept by the broker)
//   groups       <gid>                 GroupInfo JSON
//   members      <gid>\0<user>         {"periods":[[from,to],...]} (membership history)
//   user_groups  <user>\0<gid>         "" (groups a user is or was in)
//   markers      <user>\0<conv>        <id> (read markers)
//   blocks       <blocker>\0<blocked>  ""
//   presence     <user>                last published presence JSON
//   meta         schema_version, max_id; ban\0<user> -> "" (banned users, issue 5:
//                a key range, so archives made before bans open unchanged);
//                revoked\0<jti> -> "<exp seconds>" (revoked access tokens);
//                origin\0<user> -> "external" | "deleted" (account origin marks);
//                mediaref\0<media id>\0<conv>\0<msg id> -> <sender> (media messages: who may
//                fetch an upload, see ArchiveView::media_refs);
//                push\0<message id> -> push record JSON (docs/push.md: written in
//                the message's own batch, deleted by push.done);
//                pushdev\0<user> -> ["<device>",...] (devices with push targets)
// clang-format on
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

namespace rocksdb {
class Env;
}  // namespace rocksdb

namespace chat::store {

// A half-open range of message ids (from, to]: ids greater than `from` and at
// most `to`. Empty `from`: from the beginning; empty `to`: no end (current).
struct IdRange {
  std::string from;
  std::string to;
  bool contains(const std::string& id) const {
    return (from.empty() || id > from) && (to.empty() || id <= to);
  }
};

struct PageQuery {
  size_t limit = 50;   // already clamped by the caller; 0 is treated as 1
  std::string before;  // exclusive upper bound id, or empty
  std::string after;   // exclusive lower bound id, or empty (before wins if both)
  // When non-empty, only messages inside one of these ranges exist for this
  // query (a group member's membership periods); paging and `next` behave as
  // if the others were not there.
  std::vector<IdRange> visible;
};

// A group as the broker's store keeps it. Members and admins are current;
// former members keep their membership periods (see Membership).
struct GroupInfo {
  std::string id;
  std::string name;
  std::string creator;
  int64_t created_ms = 0;
  std::vector<std::string> members;  // sorted
  std::vector<std::string> admins;   // sorted, a subset of members
};

// One user's membership history in one group: the ranges of message ids the
// user may read. The last range is open (`to` empty) while they are a member.
struct Membership {
  std::vector<IdRange> periods;
  bool current() const { return !periods.empty() && periods.back().to.empty(); }
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
  // The media id a `media` message references ("" none): indexed in the same
  // batch (meta mediaref\0...), so chat-api can tell who may fetch it.
  std::string media;
  // A push record (docs/push.md) written in the same batch under the
  // message's id, or "" for none: {"id","conv","from","type","targets":[...]}.
  std::string push;
};

// A push record as stored: the message id it is keyed by, and its JSON.
struct PushRecord {
  std::string id;
  std::string json;
};

struct ArchiveOptions {
  std::string path;
  bool sync_writes = false;         // Default: false (WAL written, no fsync: survives SIGKILL).
  uint64_t wal_ttl_seconds = 3600;  // Default: 3600. Keeps WAL files for secondaries.
  // After a failed write (disk full, I/O error) RocksDB refuses every write
  // until DB::Resume() succeeds. The archive attempts that at most this often,
  // from the next append or from Archive::try_recover(). Default: 500.
  uint32_t resume_interval_ms = 500;
  // A Resume() still running after this long is taken as stuck (RocksDB 7.8
  // can wait for good on a flush it never scheduled): the writer cancels it,
  // then closes and reopens the database. Default: 5000.
  uint32_t resume_timeout_ms = 5000;
  // Free-space reserve of the archive's file system: while fewer bytes are
  // free, appends answer kUnavailable without reaching RocksDB, so a full
  // disk rarely makes a RocksDB write fail at all. Writable again at the
  // reserve plus an eighth. Checked with statvfs at most every 100 ms.
  // Default: 0 (off); the broker sets plugin_opt_archive_min_free_mb.
  uint64_t min_free_bytes = 0;
  // For tests: the RocksDB environment (one that injects write failures).
  // Not owned; must outlive the archive. Default: nullptr (RocksDB's default).
  rocksdb::Env* env = nullptr;
};

// Whether the writer takes writes (Archive::health). Counters since open.
struct ArchiveHealth {
  bool writable = true;
  uint64_t write_failures = 0;  // appends that failed (the sender got no PUBACK)
  uint64_t recoveries = 0;      // times a Resume() made the archive writable again
  std::string last_error;       // the failure that made it unwritable ("" when writable)
  // Below ArchiveOptions::min_free_bytes: appends refused before RocksDB
  // sees them (not writable, but nothing failed).
  bool low_space = false;
  uint64_t free_bytes = 0;  // at the last check (0 before one, or with no reserve)
  uint64_t reopens = 0;     // stuck recoveries replaced by a close and reopen
  // A stuck recovery could not be replaced: writable again only after a
  // broker restart (nothing acknowledged is lost). Stays set.
  bool recovery_stuck = false;
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
  // The users `user` has a direct conversation with (at least one message),
  // at most `limit`, in no useful order: one range scan over the user's convs keys.
  Result<std::vector<std::string>> dm_peers(const std::string& user, size_t limit) const;
  Result<bool> user_exists(const std::string& user) const;
  // True when `user` has at least one message in `conv` (sent or received).
  Result<bool> has_conversation(const std::string& user, const std::string& conv) const;
  Result<std::optional<std::string>> envelope(const std::string& conv, const std::string& id) const;

  // Groups (issue: groups). All groups, for the broker's membership cache at start.
  Result<std::vector<GroupInfo>> groups() const;
  Result<std::optional<GroupInfo>> group(const std::string& gid) const;
  // The user's membership history in the group (empty periods: never a member).
  Result<Membership> membership(const std::string& gid, const std::string& user) const;
  // Group ids the user is or was a member of.
  Result<std::vector<std::string>> groups_of(const std::string& user) const;

  // Read markers: the greatest message id the user has read in conv ("" none).
  Result<std::string> read_marker(const std::string& user, const std::string& conv) const;

  // Blocks: whether `blocker` blocked `blocked`; everyone `blocker` blocked.
  Result<bool> is_blocked(const std::string& blocker, const std::string& blocked) const;
  Result<std::vector<std::string>> blocked_by(const std::string& blocker) const;

  // Presence as last published: user -> {"v":1,"status":...,"ts":...} JSON.
  Result<std::vector<std::pair<std::string, std::string>>> presence_all() const;

  // Bans (admin API): every banned user id, sorted; whether one user is banned.
  Result<std::vector<std::string>> banned_users() const;
  Result<bool> is_banned(const std::string& user) const;

  // Account origin marks (meta, origin\0<user> -> mark): "external" for users
  // provisioned from an external OIDC provider's token, "deleted" for removed
  // users. No mark: a local account. (user, mark) pairs in user byte order.
  Result<std::vector<std::pair<std::string, std::string>>> user_marks() const;

  // Revoked access tokens (admin API): (jti, exp in seconds or 0 when
  // unknown), in jti byte order.
  Result<std::vector<std::pair<std::string, int64_t>>> revoked_tokens() const;

  // Media messages that referenced `media_id` (AppendRequest::media), in
  // conv then id order. Empty for an unknown or malformed id.
  struct MediaRef {
    std::string conv;
    std::string id;    // the message's id
    std::string from;  // its sender
  };
  Result<std::vector<MediaRef>> media_refs(const std::string& media_id) const;

  // Push records (docs/push.md) with ids greater than `after` ("" = from the
  // first), oldest first, at most `limit`.
  Result<std::vector<PushRecord>> push_records(const std::string& after, size_t limit) const;
  // Devices with push targets as the broker knows them: (user, device ids),
  // in user byte order.
  Result<std::vector<std::pair<std::string, std::vector<std::string>>>> push_devices() const;

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

  // user_exists for the writer's hot path: positive answers are cached (the
  // writer is the only one adding and removing users), so a message to a
  // known peer costs no read.
  Result<bool> has_user(const std::string& user);
  Status add_user(const std::string& user);
  Status remove_user(const std::string& user);

  // Groups. `at` is a boundary id from the broker's id generator (greater than
  // every message id so far): a member added at `at` reads messages with ids
  // greater than `at`; one removed at `at` reads up to and including `at`.
  // create_group: kAlreadyExists when the id is taken; the creator is member
  // and admin, every listed member gets a period starting at `at`.
  Status create_group(const GroupInfo& group, const std::string& at);
  // add_member: kAlreadyExists when already a member; kNotFound no group.
  Status add_member(const std::string& gid, const std::string& user, const std::string& at);
  // remove_member: closes the user's open period at `at` and drops admin;
  // kNotFound when not a member. A group whose last member left is kept
  // (history) with no members.
  Status remove_member(const std::string& gid, const std::string& user, const std::string& at);
  Status set_admin(const std::string& gid, const std::string& user, bool admin);

  // Moves the user's read marker in conv forward to `id` (never backwards) and
  // recomputes the conversation's unread count: messages after the marker
  // that someone else sent (exact up to 10,000, capped there).
  Status mark_read(const std::string& user, const std::string& conv, const std::string& id);

  Status set_block(const std::string& blocker, const std::string& blocked, bool blocked_flag);

  Status put_presence(const std::string& user, const std::string& presence_json);

  // Bans or unbans a user (idempotent). kInvalidArgument for a malformed id.
  Status set_ban(const std::string& user, bool banned);

  // Sets (or, with an empty mark, removes) a user's origin mark (see
  // user_marks). kInvalidArgument for a malformed id.
  Status set_user_mark(const std::string& user, const std::string& mark);

  // Records a revoked access token by its `jti` (idempotent; a later call
  // replaces exp). exp_s: the token's expiry in seconds, 0 when unknown (kept
  // until forgotten). kInvalidArgument for an empty jti, one over 256 bytes or
  // one with a NUL byte.
  Status set_revoked(const std::string& jti, int64_t exp_s);
  // Drops a revocation record (the token has expired; nothing left to refuse).
  Status forget_revoked(const std::string& jti);

  // Replaces the user's devices with push targets (an empty list removes
  // the entry). kInvalidArgument for a malformed user or device id.
  Status set_push_devices(const std::string& user, const std::vector<std::string>& devices);
  // Deletes every push record with an id up to and including `upto`;
  // *deleted (optional) receives how many. kInvalidArgument for a malformed id.
  Status delete_push_records(const std::string& upto, size_t* deleted = nullptr);

  // Greatest message id ever appended ("" when empty): the id generator's floor
  // after a restart.
  Result<std::string> max_id() const;

  // Disk full and I/O errors. A failed append leaves RocksDB read-only (a
  // background error) and the archive unwritable: appends answer
  // kUnavailable at once, without touching RocksDB, until a DB::Resume()
  // succeeds (RocksDB's own automatic recovery is turned off so that only
  // this writer thread drives it). Resume is attempted by the first append or
  // try_recover() after resume_interval_ms; it flushes the memtables and
  // starts a new WAL, so it needs free space. Nothing acknowledged is lost:
  // the failed write was never applied, and one retried later is a new write.
  ArchiveHealth health() const;
  // Attempts the recovery now when unwritable and the interval has passed
  // (the broker calls it from TICK, so the archive recovers without
  // traffic). Ok when writable afterwards; kUnavailable otherwise.
  Status try_recover();

  // Backups (docs/operations.md, "Backup and restore"): writes a consistent
  // copy of the whole archive into `dir` (a RocksDB checkpoint: table files
  // hard-linked on the same file system, copied otherwise; memtables flushed
  // first). `dir` must be absolute and must not exist; its parent must
  // (kInvalidArgument / kAlreadyExists). Writer thread only: no append runs
  // meanwhile, so the copy holds exactly the messages up to `max_id`.
  struct CheckpointInfo {
    std::string max_id;     // the newest message id in the copy ("" when empty)
    uint64_t sequence = 0;  // RocksDB's sequence number at the checkpoint
  };
  Result<CheckpointInfo> checkpoint(const std::string& dir);

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
