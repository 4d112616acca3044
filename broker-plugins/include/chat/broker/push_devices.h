// PushDevices: which devices of which users have a push target, as chat-api
// registered them (control op push.devices; docs/push.md). The router asks it,
// for every archived message, which recipient devices could be woken by a
// push; users without push targets cost one hash lookup.
//
// Persisted in the broker's archive (meta, pushdev\0<user>) so it survives
// restarts; loaded once at start and mirrored in memory. Changed only through
// the control topic, which writes the archive first and this cache second.
// Not thread-safe (the broker's single plugin thread).
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "chat/common/status.h"
#include "chat/store/archive.h"

namespace chat::broker {

// At most this many devices per user (chat-api's CHAT_PUSH_MAX_DEVICES is
// capped at the same number).
inline constexpr size_t kMaxPushDevicesPerUser = 100;

class PushDevices {
 public:
  explicit PushDevices(store::Archive& archive) : archive_(archive) {}

  // Reads every user's devices from the archive (call once at start).
  Status load();
  // The user's devices with push targets, sorted; nullptr when none.
  const std::vector<std::string>* devices_of(const std::string& user) const;
  // Replaces the user's devices (an empty list forgets the user): the archive
  // first, then the cache. kInvalidArgument for a malformed user or device id
  // or more than kMaxPushDevicesPerUser devices. Duplicates are merged.
  Status set(const std::string& user, std::vector<std::string> devices);
  // Users with at least one device.
  size_t users() const { return devices_.size(); }

 private:
  store::Archive& archive_;
  std::unordered_map<std::string, std::vector<std::string>> devices_;
};

}  // namespace chat::broker
