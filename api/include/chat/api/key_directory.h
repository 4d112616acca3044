// The key directory of end-to-end encryption (docs/e2e.md, "Key directory"):
// PUT /v1/keys, GET /v1/keys/{user}, GET /v1/keys/count, GET
// /v1/users/{user}/devices, DELETE /v1/keys/{device}. The logic apart from
// HTTP (routes in src/key_routes.cpp): the strict parsing of uploads, the
// signed-prekey signature check (XEdDSA, libsignal-protocol-c), the claim
// rate limits, and the key-change events (control op keys.changed).
//
// Keys are always stored under the caller's own user id, so no request can
// touch another user's devices. Thread-safe: the HTTP pool calls it from many
// threads at once (the store serializes writes; the limits take a mutex).
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "chat/api/control.h"
#include "chat/common/clock.h"
#include "chat/common/rate_limit.h"
#include "chat/common/status.h"
#include "chat/store/archive.h"
#include "chat/store/key_store.h"

namespace chat::api {

// Bounds of docs/e2e.md.
inline constexpr size_t kMaxPreKeysPerUpload = 100;
inline constexpr size_t kMaxPreKeysStored = 1000;
inline constexpr size_t kMaxKeyDevicesPerUser = 100;  // devices in the directory per user
inline constexpr uint32_t kMaxPreKeyId = 16777215;    // ids are 1..2^24-1 (signed prekeys too)
inline constexpr int kMaxRegistrationId = 16380;      // registration ids are 1..16380
inline constexpr size_t kMaxCapabilities = 16;
inline constexpr size_t kMaxCapabilityChars = 32;
inline constexpr size_t kPublicKeyBytes = 33;  // 0x05 + 32 (libsignal's serialised Curve25519)
inline constexpr size_t kSignatureBytes = 64;  // XEdDSA

// Whether `signature` (64 bytes) is identity_key's XEdDSA signature of
// `signed_key` (both serialised public keys, 33 bytes starting 0x05), the
// way libsignal signs a signed prekey. False for any malformed input.
bool verify_signed_prekey(std::string_view identity_key, std::string_view signed_key,
                          std::string_view signature);

// A PUT /v1/keys body, checked field by field (every key decoded and sized).
// Unset optionals were omitted.
struct ParsedKeyUpload {
  std::string device;
  std::optional<int> registration_id;
  std::optional<std::string> identity_key;  // base64 text, as sent (canonical)
  std::optional<store::SignedPreKeyRecord> signed_prekey;
  std::vector<store::PreKeyRecord> prekeys;
  std::optional<std::vector<std::string>> capabilities;
};

// kInvalidArgument with a message naming the field for: not a JSON object
// (strict: no duplicate names), an unknown member, a bad device id, a
// registration id outside 1..16380, a key that is not standard base64 of 33
// bytes starting 0x05, a signature not of 64 bytes, ids outside 1..16777215
// or repeated, more than kMaxPreKeysPerUpload prekeys, capabilities that are
// not distinct [a-z0-9_] names (at most kMaxCapabilities).
Result<ParsedKeyUpload> parse_key_upload(std::string_view body);

// Why an upload was refused beyond kInvalidArgument: the HTTP edge gives
// each its own error name.
enum class KeyRefusal {
  kNone,
  kBadSignature,      // 400 bad_signature
  kIdentityMismatch,  // 409 identity_mismatch
  kTooManyPreKeys,    // 400 too_many_prekeys
  kTooManyDevices,    // 409 too_many_devices
  kRateLimited,       // 429 rate_limited: CHAT_KEY_DEVICE_CHANGES (nothing stored)
};

// The per-target limit (all claimers together) is this many times the
// per-(claimer, target) one, rate and burst: one claimer alone can never use
// up a target's budget.
inline constexpr double kTargetClaimFactor = 10;

struct KeyDirectoryOptions {
  // CHAT_KEY_CLAIM_RATE. Default: 30 claims per minute per claimer and
  // target user (over it: 429); kTargetClaimFactor times that per target
  // user over all claimers (over it: bundles without a one-time prekey). 0 = off.
  double claim_rate_per_min = 30;
  // CHAT_KEY_CLAIM_BURST. Default: 60 (per target: kTargetClaimFactor times).
  double claim_burst = 60;
  // CHAT_KEY_DEVICE_CHANGES. Default: 20 devices added to or removed from
  // the directory per user and hour, 20 at once (each change sends a keys
  // event to every peer of the user). 0 = off. Account deletion is exempt.
  double device_changes_per_hour = 20;
  double device_changes_burst = 20;
  // Largest number of claimers / targets tracked per limit table.
  size_t max_tracked = 100'000;
};

// For /metrics (chat_key_claims_total).
struct KeyClaimCounters {
  uint64_t ok = 0;            // bundles handed out with a one-time prekey
  uint64_t exhausted = 0;     // bundles handed out without one (none left)
  uint64_t limited = 0;       // bundles handed out without one (the target's limit)
  uint64_t rate_limited = 0;  // claims refused (429) by the per-claimer limit
};

// GET /v1/keys/count.
struct PreKeyCount {
  std::string device;
  size_t count = 0;
  uint32_t signed_prekey_id = 0;
};

class KeyDirectory {
 public:
  // Borrows everything; all of it must outlive the directory. `archive`
  // tells which users exist (caught up before each check).
  KeyDirectory(store::KeyStore& keys, store::ArchiveReader& archive, ControlChannel& control,
               const Clock& clock, KeyDirectoryOptions options = {});

  // PUT /v1/keys for `user`'s device named in the body. `created` when the
  // device is new (then device_added goes out). kInvalidArgument for a bad
  // body, with *why set for the refusals of KeyRefusal; kRateLimited sets
  // *wait_ms (when given). kUnauthenticated when the user no longer exists
  // (deleted meanwhile: nothing stored).
  struct Uploaded {
    bool created = false;
    PreKeyCount state;  // the device after the upload
  };
  Result<Uploaded> upload(const std::string& user, std::string_view body, KeyRefusal* why,
                          int64_t* wait_ms = nullptr);

  // GET /v1/keys/{target}[?device=]: one bundle per device, each taking one
  // one-time prekey. kInvalidArgument for a malformed id, kNotFound for an
  // unknown user (or a device not in the directory), kResourceExhausted when
  // over the per-(caller, target) limit (nothing taken; *wait_ms says for how
  // long). Over the per-target limit (all claimers) the bundles come without
  // one-time prekeys (nothing taken; the signed-prekey fallback).
  Result<std::vector<store::ClaimedBundle>> claim(const std::string& caller,
                                                  const std::string& target,
                                                  const std::optional<std::string>& device,
                                                  int64_t* wait_ms);

  // GET /v1/keys/count?device=: kNotFound when the device has no keys here.
  Result<PreKeyCount> count(const std::string& user, const std::string& device);

  // GET /v1/users/{user}/devices: kNotFound for an unknown user.
  Result<std::vector<store::DeviceKeysRecord>> devices(const std::string& user);

  // DELETE /v1/keys/{device} of the caller (device_removed goes out).
  // kResourceExhausted over CHAT_KEY_DEVICE_CHANGES, *wait_ms set (when
  // given) and nothing removed.
  Status remove_device(const std::string& user, const std::string& device,
                       int64_t* wait_ms = nullptr);

  // Account deletion: every device of the user goes (device_removed each),
  // whatever CHAT_KEY_DEVICE_CHANGES says. Call it once the account is gone
  // (user removed from the archive, tombstone written): an upload racing with
  // it is either removed by it or refused after it.
  Status forget_user(const std::string& user);

  KeyClaimCounters counters() const;
  const store::KeyStore& store() const { return keys_; }

 private:
  // keys.changed at the broker; a failure is logged (keys.event_failed),
  // never returned: the directory change stands.
  void announce(const std::string& user, const std::string& device, const char* action,
                const std::string& identity_key);
  Status check_user(const std::string& user);
  // The claim limits: the wait of the per-(caller, target) limit (> 0: 429),
  // else 0 with *target_limited set when the per-target one is exhausted.
  int64_t take_claim(const std::string& caller, const std::string& target, bool* target_limited);
  // CHAT_KEY_DEVICE_CHANGES for `user`: a gate for the store (under its
  // lock) that takes one change or refuses, setting *wait_ms.
  store::KeyStore::ChangeGate device_change_gate(const std::string& user, int64_t* wait_ms);

  store::KeyStore& keys_;
  store::ArchiveReader& archive_;
  ControlChannel& control_;
  const Clock& clock_;
  const KeyDirectoryOptions options_;
  mutable std::mutex mu_;  // the limiters and counters
  KeyedRateLimiter pair_limits_;
  KeyedRateLimiter target_limits_;
  KeyedRateLimiter change_limits_;  // device added or removed, per user
  KeyClaimCounters counters_;
  // Uploads hold it shared from the user check to the store write; account
  // deletion (forget_user) exclusively, so no upload recreates a device of a
  // deleted account.
  std::shared_mutex users_mu_;
};

}  // namespace chat::api
