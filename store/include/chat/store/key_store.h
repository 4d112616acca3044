// chat-api's key directory (docs/e2e.md, "Key directory"): the public Signal
// keys of every device, and its one-time prekeys, claimed one at a time.
//
// A RocksDB directory of its own (<data_dir>/api/e2e-keys), owned by chat-api
// alone. Thread-safe: every mutation (upload, claim, delete) takes one lock,
// so a claim pops each one-time prekey exactly once however many claimers
// race; reads take none. Keys are stored as the client sent them (standard
// base64 text, checked by the caller): this store only keeps records.
//
// clang-format off
// Schema (column families):
//   devices  <user>\0<device>                 {"registration_id","identity_key","signed_prekey":{"id","key","signature"},"capabilities":[...],"created_ms"}
//   prekeys  <user>\0<device>\0<id, 8 hex>    <public key> (claim order: lowest id first)
// clang-format on
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "chat/common/status.h"

namespace chat::store {

struct SignedPreKeyRecord {
  uint32_t id = 0;
  std::string key;        // base64 of the 33-byte public key
  std::string signature;  // base64 of the 64-byte XEdDSA signature
};

struct PreKeyRecord {
  uint32_t id = 0;
  std::string key;  // base64 of the 33-byte public key
};

// One device's entry in the directory.
struct DeviceKeysRecord {
  std::string user;
  std::string device;
  int registration_id = 0;
  std::string identity_key;  // base64 of the 33-byte public key
  SignedPreKeyRecord signed_prekey;
  std::vector<std::string> capabilities;
  int64_t created_ms = 0;
};

// What PUT /v1/keys asks for. Unset optionals keep the stored value; a
// device's first upload needs registration_id and signed_prekey.
struct KeyUpload {
  std::string user;
  std::string device;
  std::string identity_key;  // required; compared with the stored one
  // False when the request left identity_key out and `identity_key` is the
  // stored one its signed prekey was checked against: it then only tops up a
  // device that still has that identity, and never creates one (a device
  // deleted meanwhile is not recreated with its old identity; the decision
  // is taken under the store's lock).
  bool identity_from_request = true;
  std::optional<int> registration_id;
  std::optional<SignedPreKeyRecord> signed_prekey;
  std::vector<PreKeyRecord> prekeys;  // added; an id already stored is replaced
  std::optional<std::vector<std::string>> capabilities;
  int64_t now_ms = 0;  // created_ms of a new device
};

// A device's bundle as a claim hands it out.
struct ClaimedBundle {
  DeviceKeysRecord device;
  std::optional<PreKeyRecord> prekey;  // nullopt: none left
};

class KeyStore {
 public:
  static Result<std::unique_ptr<KeyStore>> open(const std::string& path);
  ~KeyStore();

  // Called under the store's lock just before a change to the directory's
  // devices is written (a device created or deleted): a status other than ok
  // refuses the change, nothing written (the key directory's per-user limit).
  using ChangeGate = std::function<Status()>;

  // Stores an upload in one write. Returns true when it created the device.
  // kAlreadyExists when the device has another identity key (nothing stored);
  // kInvalidArgument for a device's first upload without registration_id,
  // signed_prekey or an identity key from the request
  // (KeyUpload::identity_from_request), or for empty fields / NUL bytes;
  // kResourceExhausted when the device would then hold more than
  // `max_prekeys` one-time prekeys, or when a new device would give the user
  // more than `max_devices` (nothing stored; *devices_full, when given, says
  // which); a new device only when `before_create` (if set) allows it.
  Result<bool> upload(const KeyUpload& upload, size_t max_prekeys, size_t max_devices = SIZE_MAX,
                      bool* devices_full = nullptr, const ChangeGate& before_create = nullptr);

  // Atomically takes one one-time prekey from each of the user's devices (or
  // from `device` alone, when given) and returns their bundles, by device id.
  // A user without devices gives an empty list; kNotFound when `device` is
  // given and not in the directory.
  Result<std::vector<ClaimedBundle>> claim(const std::string& user,
                                           const std::optional<std::string>& device);

  // The device's record; nullopt when it is not in the directory.
  Result<std::optional<DeviceKeysRecord>> device(const std::string& user,
                                                 const std::string& device) const;
  // The user's devices, by device id.
  Result<std::vector<DeviceKeysRecord>> devices(const std::string& user) const;
  // How many one-time prekeys the device holds.
  Result<size_t> prekey_count(const std::string& user, const std::string& device) const;

  // Removes a device and its prekeys; returns its record. kNotFound when
  // absent; when `before_delete` (if set) refuses, its status (nothing removed).
  Result<DeviceKeysRecord> delete_device(const std::string& user, const std::string& device,
                                         const ChangeGate& before_delete = nullptr);
  // Removes every device of the user (one write); returns their records.
  Result<std::vector<DeviceKeysRecord>> delete_user(const std::string& user);

  // Writes a consistent copy of the store into `dir` (a RocksDB checkpoint;
  // see Archive::checkpoint for the rules on `dir`). Safe while in use.
  Status checkpoint(const std::string& dir) const;

 private:
  struct Impl;
  explicit KeyStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace chat::store
