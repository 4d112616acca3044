// Router: validates, stamps, archives and routes what devices publish
// (CONTRACT §3), and serves the service role's control topic.
//
// Called from Mosquitto's MESSAGE and CONTROL events on the broker's single
// thread. The archive append happens before on_message() returns, so the
// PUBACK Mosquitto sends afterwards means "archived".
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "chat/broker/account_origins.h"
#include "chat/broker/bans.h"
#include "chat/broker/broker_port.h"
#include "chat/broker/directory.h"
#include "chat/broker/gatekeeper.h"
#include "chat/broker/push_devices.h"
#include "chat/broker/stats.h"
#include "chat/common/clock.h"
#include "chat/common/envelope.h"
#include "chat/common/ids.h"
#include "chat/common/rate_limit.h"
#include "chat/store/archive.h"

namespace chat::broker {

struct RouterOptions {
  size_t max_payload = kDefaultMaxPayload;
  double rate_msgs = 20;    // messages per second per user; 0 = off
  double rate_burst = 100;  // bucket size
  // Typing signals per second per user; 0 = off. Beyond it a signal is
  // dropped, and the device gets the rate_limited event at most once a second.
  double rate_typing = 5;
  double rate_typing_burst = 20;
  // Receipt publishes per second per user; 0 = off. Beyond it: refused like
  // a message (0x87 + rate_limited). A device catching up after a long time
  // offline acknowledges a conversation per receipt, hence the large burst.
  double rate_receipts = 50;
  double rate_receipts_burst = 200;
  size_t max_group_members = 1024;
  // Mosquitto holds a separate copy of a group message for every member:
  // payload x members may not exceed this. Default: 16 MiB (16 KiB payloads
  // in a 1,024-member group, the full 64 KiB up to 256 members).
  size_t group_fanout_bytes = 16 * 1024 * 1024;
  uint8_t node_id = 0;
};

// What Mosquitto should do with a publish.
struct MessageOutcome {
  enum class Action {
    kAccept,  // deliver to `topic` with `payload` (rewritten), retain cleared
    kRefuse,  // MOSQ_ERR_ACL_DENIED: 0x87 for MQTT 5, plain PUBACK for 3.1.1
    kFail,    // not the client's fault: drop the connection without PUBACK
  };
  Action action = Action::kRefuse;
  std::string topic;
  std::string payload;
};

class Router {
 public:
  Router(const Clock& clock, store::Archive& archive, Directory& directory, BrokerPort& port,
         RouterOptions options);

  // Raises the id generator above everything archived (call once at start).
  Status init();

  MessageOutcome on_message(const DeviceSession& sender, std::string_view topic,
                            std::string_view payload, int qos);
  // A publish the ACL refused: tells the sending device why (QoS 1/2 only).
  void on_write_denied(const DeviceSession& sender, std::string_view topic,
                       std::string_view payload, int qos);
  // `$CONTROL/chat/v1` from a service-role client; replies to that client.
  void on_control(const DeviceSession& sender, std::string_view payload);
  // Periodic chores (the broker's TICK): prunes idle rate-limit buckets.
  void on_tick();
  // Where routed/refused messages, append latency and group fan-out are
  // counted (borrowed; must outlive the router). Default: not counted.
  void set_stats(BrokerStats* stats) { stats_ = stats; }
  // Where the admin ops (user.ban, user.unban, token.revoke, client.kick,
  // client.list) find bans, revocations and live sessions (borrowed; must
  // outlive the router). Unset: those ops answer "unavailable".
  void set_admin(BanList* bans, const Gatekeeper* gatekeeper) {
    bans_ = bans;
    gatekeeper_ = gatekeeper;
  }
  // Where user.add / user.remove record account origins (borrowed; must
  // outlive the router). Unset: user.add ignores "origin".
  void set_origins(AccountOrigins* origins) { origins_ = origins; }
  // Push (docs/push.md): the devices with push targets (borrowed; must
  // outlive the router), and whether a client id is connected now. With it,
  // archiving a text, media or e2e message also writes a push record naming
  // each recipient device that has a push target and is not connected (in the
  // message's own batch), then publishes a wake-up on topics::kControlPush;
  // and the control ops push.devices / push.done work. Unset: no push
  // records, and those ops answer "unavailable".
  using ConnectedCheck = std::function<bool(const std::string& client_id)>;
  void set_push(PushDevices* devices, ConnectedCheck is_connected) {
    push_devices_ = devices;
    is_connected_ = std::move(is_connected);
  }

 private:
  struct Receipt {
    std::vector<std::string> ids;
    std::string status;
  };

  MessageOutcome refuse(const DeviceSession& sender, std::string_view cid, RefusalCode code,
                        std::string reason, int qos);
  MessageOutcome direct_message(const DeviceSession& sender, const std::string& peer,
                                std::string_view payload, int qos);
  MessageOutcome group_message(const DeviceSession& sender, const std::string& gid,
                               std::string_view payload, int qos);
  MessageOutcome direct_receipt(const DeviceSession& sender, const std::string& peer,
                                std::string_view payload, int qos);
  MessageOutcome group_receipt(const DeviceSession& sender, const std::string& gid,
                               std::string_view payload, int qos);
  MessageOutcome direct_typing(const DeviceSession& sender, const std::string& peer,
                               std::string_view payload);
  MessageOutcome group_typing(const DeviceSession& sender, const std::string& gid,
                              std::string_view payload);

  // Shared by 1:1 and groups: validation, idempotency, edit/delete targets,
  // stamping and the archive append. Returns the envelope, or an outcome to
  // return as is (refusal, failure, or a duplicate already answered).
  // `envelope` is the whole message as archived; for an `e2e` message in
  // the Signal form, `e2e` holds the per-user variants to deliver instead
  // (docs/e2e.md; an opaque e2e body goes out unchanged).
  struct Stamped {
    std::optional<MessageOutcome> done;
    std::string envelope;
    std::optional<E2eEnvelopes> e2e;
    const std::string& envelope_for(const std::string& user, std::string* scratch) const {
      if (!e2e) return envelope;
      return e2e->for_user(user, scratch);  // shared when `user` has no entries
    }
  };
  // `group`: the group of a g/ message (nullptr for dm/); `duplicate_peer`:
  // the dm peer whose inbox a QoS 2 duplicate goes to again ("" for groups).
  Stamped stamp_and_archive(const DeviceSession& sender, const std::string& conv,
                            const std::string& to, const std::vector<std::string>& participants,
                            const Group* group, std::string_view payload, int qos,
                            const std::string& duplicate_peer);
  std::optional<Refusal> check_target(const DeviceSession& sender, const std::string& conv,
                                      const ClientMessage& msg);
  // An e2e body's "group" only on g/, and every "to" key's user a participant:
  // the sender, the dm peer, or a current member of `group`.
  std::optional<Refusal> check_e2e_recipients(const DeviceSession& sender, const Group* group,
                                              const std::vector<std::string>& participants,
                                              const nlohmann::json& body) const;
  std::optional<Receipt> parse_receipt(std::string_view payload, Refusal* why) const;
  std::optional<std::string> parse_typing(std::string_view payload) const;
  std::string receipt_json(const std::string& conv, const std::string& from,
                           const std::vector<std::string>& ids, const std::string& status) const;
  std::string typing_json(const std::string& conv, const std::string& from,
                          const std::string& state) const;

  // Typing over the limit: dropped; the device is told at most once a second.
  MessageOutcome typing_rate_limited(const DeviceSession& sender);
  void reply(const DeviceSession& to, const std::string& req, const Status& status,
             const nlohmann::json& result = nullptr);
  void group_event(const Group& group, const std::string& action, const std::string& user,
                   const std::string& by, const std::string* also_to = nullptr);
  Status control_group(const std::string& op, const nlohmann::json& doc, nlohmann::json* result);
  nlohmann::json group_json(const Group& group) const;
  Status control_admin(const std::string& op, const nlohmann::json& doc, nlohmann::json* result);
  Status control_push(const std::string& op, const nlohmann::json& doc, nlohmann::json* result);
  // keys.changed (router_keys.cpp): a device was added to or removed from
  // chat-api's key directory; tells the owner and everyone who shares a
  // conversation with them (docs/e2e.md, "Key-change events").
  Status control_keys(const nlohmann::json& doc, nlohmann::json* result);
  // archive.checkpoint {"dir"}: a backup of the archive (router_backup.cpp).
  Status control_checkpoint(const nlohmann::json& doc, nlohmann::json* result);
  // The push record of a message about to be archived ("" when no recipient
  // device needs a push). `participants` includes the sender.
  std::string push_record(const EnvelopeFields& f,
                          const std::vector<std::string>& participants) const;

  const Clock& clock_;
  store::Archive& archive_;
  Directory& directory_;
  BrokerPort& port_;
  RouterOptions options_;
  IdGenerator ids_;
  // Per-user buckets (keyed by user id), and the once-a-second allowance of
  // typing refusal events (keyed by client id).
  KeyedRateLimiter message_limits_;
  KeyedRateLimiter receipt_limits_;
  KeyedRateLimiter typing_limits_;
  KeyedRateLimiter typing_notices_;
  int64_t last_prune_ms_ = 0;
  BrokerStats* stats_ = nullptr;
  BanList* bans_ = nullptr;
  const Gatekeeper* gatekeeper_ = nullptr;
  AccountOrigins* origins_ = nullptr;
  PushDevices* push_devices_ = nullptr;
  ConnectedCheck is_connected_;
};

}  // namespace chat::broker
