// The control op keys.changed (docs/e2e.md, "Key-change events";
// docs/protocol.md, "Service control topic"): chat-api's key directory
// gained or lost a device, and the broker, which knows who talks to whom,
// tells everyone who needs to refresh that user's device list.
#include <set>

#include "chat/broker/router.h"
#include "chat/common/base64.h"
#include "chat/common/log_fields.h"
#include "chat/common/topics.h"

namespace chat::broker {

using json = nlohmann::json;

namespace {

// Most direct-conversation peers read for one event. The read is one range
// scan over the user's convs keys on the broker thread (keys only, no
// values), and the op runs only when a device is added or removed: at this
// bound a few tens of milliseconds at worst.
constexpr size_t kMaxKeyEventPeers = 100'000;

// A libsignal serialised Curve25519 public key in standard base64: 33 bytes
// (0x05 + 32, a multiple of 3) are 44 characters without padding; 0x05
// starts with the sextets 000001 ('B') and 01xxxx ('Q'..'Z', 'a'..'f').
bool is_identity_key(const std::string& key) {
  return key.size() == 44 && is_standard_base64(key) && key[43] != '=' && key[0] == 'B' &&
         ((key[1] >= 'Q' && key[1] <= 'Z') || (key[1] >= 'a' && key[1] <= 'f'));
}

}  // namespace

Status Router::control_keys(const json& doc, json* result) {
  auto str = [&](const char* key) -> std::string {
    const auto it = doc.find(key);
    return it != doc.end() && it->is_string() ? it->get<std::string>() : "";
  };
  const std::string user = str("user"), device = str("device"), action = str("action"),
                    identity_key = str("identity_key");
  if (!is_valid_user_id(user)) return invalid_argument("user must be a user id");
  if (!is_valid_device_id(device)) return invalid_argument("device must be a device id");
  if (action != "device_added" && action != "device_removed") {
    return invalid_argument("action must be device_added or device_removed");
  }
  if (!is_identity_key(identity_key)) {
    return invalid_argument(
        "identity_key must be a Curve25519 public key (33 bytes, 0x05 + 32) in standard base64");
  }

  // The owner (its other devices), every current co-member of a group, and
  // every direct peer with a message; not those who blocked the owner (they
  // do not see its presence either). A deleted account stays a member of its
  // groups (Archive::remove_user does not touch them), so on account deletion
  // its co-members hear device_removed too and drop its sessions.
  std::set<std::string> recipients = directory_.co_members(user);
  auto peers = archive_.dm_peers(user, kMaxKeyEventPeers);
  if (!peers) return peers.status();
  recipients.insert(peers->begin(), peers->end());
  recipients.erase(user);
  nlohmann::ordered_json ev;
  ev["v"] = 1;
  ev["type"] = "keys";
  ev["action"] = action;
  ev["user"] = user;
  ev["device"] = device;
  ev["identity_key"] = identity_key;
  ev["ts"] = clock_.now_ms();
  const std::string out = ev.dump();
  size_t notified = 0;
  for (const auto& r : recipients) {
    if (directory_.is_blocked(r, user)) continue;
    port_.publish("", topics::inbox(r, topics::kInboxEvent), out, 1, false);
    ++notified;
  }
  port_.publish("", topics::inbox(user, topics::kInboxEvent), out, 1, false);
  ++notified;
  port_.log(LogLevel::kInfo, "keys.changed: user=" + log_value(user) +
                                 " device=" + log_value(device) + " action=" + action +
                                 " notified=" + std::to_string(notified));
  *result = json{{"notified", notified}};
  return Status::ok();
}

}  // namespace chat::broker
