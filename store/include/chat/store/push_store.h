// chat-api's push state (docs/push.md): the push targets devices registered
// (POST /v1/devices), the queue of notifications still to send, and the feed
// cursor over the broker's push records.
//
// A RocksDB directory of its own (<data_dir>/api/push), owned by chat-api
// alone: the queue is written and deleted all the time, which is kept apart
// from the credentials in the account store. Thread-safe: every mutation
// takes one lock (chat-api's push writes are few per message); reads take none.
//
// clang-format off
// Schema (column families):
//   targets  <user>\0<device>              {"platform","token","created_ms"}
//   tokens   <platform>\0<token>           <user>\0<device> (one target per token)
//   jobs     <message id>\0<user>:<device> {"conv","from","type","attempts","created_ms","due_ms","in_flight"}
//   due      <due ms, 16 hex>\0<job key>   "" (the jobs in send order)
//   meta     cursor                        the last push record taken over
// clang-format on
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "chat/common/status.h"

namespace chat::store {

// One device's push target.
struct PushTargetRecord {
  std::string user;
  std::string device;
  std::string platform;  // "fcm" or "apns" (not checked here)
  std::string token;     // the provider's token; never logged
  int64_t created_ms = 0;
};

// What put_target changed.
struct PushTargetChange {
  bool created = false;  // the device had no target before
  // Another device that held the same token lost it (the token moves to the
  // newest registration): its user and device. Empty when none.
  std::string displaced_user;
  std::string displaced_device;
};

// One notification to send: one message for one target device.
struct PushJob {
  std::string message_id;
  std::string user;    // the target's user
  std::string device;  // and device
  std::string conv;
  std::string from;
  std::string type;
  int attempts = 0;        // sends tried so far
  int64_t created_ms = 0;  // the message's time (its envelope ts); the age limit runs from it
  int64_t due_ms = 0;      // when to send (next)
  // A send was started and its outcome not stored yet (mark_in_flight). A
  // job found so after a crash is dropped, never resent (at most once).
  bool in_flight = false;

  // The job's key: <message id>\0<user>:<device> (unique per message and target).
  std::string key() const;
};

class PushStore {
 public:
  static Result<std::unique_ptr<PushStore>> open(const std::string& path);
  ~PushStore();

  // ---- targets

  // Registers (or replaces) the device's target. A token held by another
  // device moves here (that device loses its target: see the change). A new
  // device of a user who already has `max_per_user` targets is
  // kResourceExhausted. kInvalidArgument for empty fields or NUL bytes.
  Result<PushTargetChange> put_target(const PushTargetRecord& target, size_t max_per_user);
  // kNotFound when the device has no target.
  Status delete_target(const std::string& user, const std::string& device);
  // Deletes the target only while it still holds `token` (a provider said the
  // token is gone; a newer registration with another token is kept). Returns
  // whether it was deleted.
  Result<bool> delete_target_if_token(const std::string& user, const std::string& device,
                                      const std::string& token);
  // Deletes every target of the user; returns how many.
  Result<size_t> delete_targets_of(const std::string& user);
  Result<std::optional<PushTargetRecord>> target(const std::string& user,
                                                 const std::string& device) const;
  // The user's targets, by device id.
  Result<std::vector<PushTargetRecord>> targets_of(const std::string& user) const;
  // Every user with targets -> their device ids (sorted).
  Result<std::map<std::string, std::vector<std::string>>> all_devices() const;

  // ---- the feed

  // The id of the last push record taken over ("" before the first).
  Result<std::string> cursor() const;
  // In one write: queues each job whose key is not queued yet, and moves the
  // cursor to `cursor` (never backwards). *queued (optional) receives how
  // many jobs were new.
  Status enqueue(const std::vector<PushJob>& jobs, const std::string& cursor,
                 size_t* queued = nullptr);

  // ---- the queue

  // Jobs due at `now_ms` (due_ms <= now_ms), earliest first, at most `limit`.
  Result<std::vector<PushJob>> due_jobs(int64_t now_ms, size_t limit) const;
  // When the earliest job is due; nullopt when the queue is empty.
  // kInternal for a damaged due key (never throws).
  Result<std::optional<int64_t>> next_due_ms() const;
  // Marks the job in flight (one write), before its send. kNotFound when it
  // is gone.
  Status mark_in_flight(const PushJob& job);
  // Removes a job (sent, refused, given up). Removing one already gone is ok.
  Status complete(const PushJob& job);
  // Stores the job's new attempts, due_ms and in_flight (the caller clears
  // it). kNotFound when it is gone.
  Status reschedule(const PushJob& job);
  // Jobs queued now.
  size_t queue_depth() const;

  // Writes a consistent copy of the store into `dir` (a RocksDB checkpoint;
  // see Archive::checkpoint for the rules on `dir`). Safe while in use.
  Status checkpoint(const std::string& dir) const;

 private:
  struct Impl;
  explicit PushStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace chat::store
