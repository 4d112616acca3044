// Push targets of devices (CONTRACT §4: POST /v1/devices, DELETE
// /v1/devices/{device}; GET /v1/devices; docs/push.md): the logic behind
// those routes, and keeping the broker's copy of "which devices have a push
// target" (control op push.devices) in step with chat-api's own store.
//
// A device is `<user>:<device>`: the caller registers only devices of its own
// user. Every change is answered only once the broker confirmed the user's new
// device list; when it does not, the change stays stored and a resync is
// pending (the push worker runs reconcile() until it succeeds).
//
// Thread-safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "chat/api/control.h"
#include "chat/common/clock.h"
#include "chat/common/status.h"
#include "chat/store/archive.h"
#include "chat/store/push_store.h"

namespace chat::api {

// Longest token accepted (FCM tokens are ~160 characters, APNs 64 hex digits).
inline constexpr size_t kMaxPushTokenBytes = 4096;

// Checks a token's shape for its platform: APNs device tokens are 64 to 200
// hex digits (an even count); FCM registration tokens 1 to
// kMaxPushTokenBytes printable ASCII characters without spaces.
// kInvalidArgument with a message naming the rule (POST /v1/devices answers
// 400 invalid_token with it).
Status check_push_token(std::string_view platform, std::string_view token);

// One registered target as GET /v1/devices shows it (never the whole token).
struct DeviceInfo {
  std::string device;
  std::string platform;
  std::string token_hint;  // "..." and the token's last 6 characters
  int64_t created_ms = 0;
};

class DeviceRegistry {
 public:
  // Borrows everything; all of it must outlive the registry.
  DeviceRegistry(store::PushStore& store, ControlChannel& control, const Clock& clock,
                 size_t max_devices);

  // POST /v1/devices. Returns true when the device had no target before.
  // kInvalidArgument for a bad device id, platform ("fcm" or "apns") or token
  // (1-4096 printable ASCII characters, no spaces); kResourceExhausted when
  // the user already has max_devices other devices with targets (the HTTP
  // edge answers 409 too_many_devices); kUnavailable when the broker did not
  // confirm (stored anyway: repeating the request is safe).
  Result<bool> register_device(const std::string& user, std::string_view device,
                               std::string_view platform, std::string_view token);
  // DELETE /v1/devices/{device}: kNotFound when the device has no target.
  Status unregister_device(const std::string& user, std::string_view device);
  // GET /v1/devices: the user's targets by device id.
  Result<std::vector<DeviceInfo>> list(const std::string& user) const;
  // An account was deleted: every target of the user goes.
  Status forget_user(const std::string& user);
  // A provider reported `token` unregistered for this device: the target goes
  // unless it was registered anew with another token meanwhile. Returns
  // whether it was removed.
  Result<bool> remove_unregistered(const std::string& user, const std::string& device,
                                   const std::string& token);

  // Sends push.devices for every user whose device list in the broker's
  // archive differs from ours (one send per user at a time, each reading the
  // list when it starts, so a newer list is never overwritten). Clears the
  // pending flag when every user was confirmed.
  Status reconcile(store::ArchiveReader& archive);
  // Whether a change was not confirmed by the broker (or a reconnect asked
  // for a check): reconcile() is due.
  bool resync_pending() const { return resync_pending_.load(); }
  void request_resync() { resync_pending_.store(true); }

 private:
  // One user's push.devices sends: one at a time, each sending the list as
  // stored when it starts (the latest state wins). A change counts up
  // `changed`; a send confirmed for version v covers every change up to v, so
  // callers waiting behind a send that covered their change skip theirs.
  struct UserSync {
    std::mutex send_mu;      // held across the broker round trip
    uint64_t changed = 0;    // guarded by sync_mu_
    uint64_t confirmed = 0;  // guarded by sync_mu_
  };
  std::shared_ptr<UserSync> sync_of(const std::string& user);
  // Records a change of the user's list (after the store write).
  void note_change(const std::string& user);
  // Tells the broker the user's current device list, unless a send since the
  // last note_change was confirmed already. Never called under mu_.
  Status tell_broker(const std::string& user);
  // tell_broker for each user; marks a resync pending when one fails.
  Status tell_broker_all(const std::vector<std::string>& users);

  store::PushStore& store_;
  ControlChannel& control_;
  const Clock& clock_;
  size_t max_devices_;
  std::mutex mu_;  // one device-list store change at a time (never held across the broker)
  std::mutex sync_mu_;
  std::map<std::string, std::shared_ptr<UserSync>> sync_;  // guarded by sync_mu_
  std::atomic<bool> resync_pending_{false};
};

// "..." and the last 6 characters of a token; "" for tokens under 12
// characters (too much of them would show).
std::string token_hint(std::string_view token);

}  // namespace chat::api
