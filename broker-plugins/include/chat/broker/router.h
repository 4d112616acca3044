// Router: validates, stamps, archives and routes what devices publish
// (CONTRACT §3), and serves the service role's control topic.
//
// Called from Mosquitto's MESSAGE and CONTROL events on the broker's single
// thread. The archive append happens before on_message() returns, so the
// PUBACK Mosquitto sends afterwards means "archived".
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "chat/broker/broker_port.h"
#include "chat/broker/gatekeeper.h"
#include "chat/common/clock.h"
#include "chat/common/envelope.h"
#include "chat/common/ids.h"
#include "chat/store/archive.h"

namespace chat::broker {

struct RouterOptions {
  size_t max_payload = kDefaultMaxPayload;
  double rate_msgs = 20;    // messages per second per user; 0 = off
  double rate_burst = 100;  // bucket size
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
  Router(const Clock& clock, store::Archive& archive, BrokerPort& port, RouterOptions options);

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

 private:
  struct Bucket {
    double tokens = 0;
    int64_t last_ms = 0;
  };

  MessageOutcome refuse(const DeviceSession& sender, std::string_view cid, RefusalCode code,
                        std::string reason, int qos);
  MessageOutcome direct_message(const DeviceSession& sender, const std::string& peer,
                                std::string_view payload, int qos);
  MessageOutcome direct_receipt(const DeviceSession& sender, const std::string& peer,
                                std::string_view payload, int qos);
  MessageOutcome direct_typing(const DeviceSession& sender, const std::string& peer,
                               std::string_view payload);
  bool take_token(const std::string& user);
  void reply(const DeviceSession& to, const std::string& req, const Status& status);

  const Clock& clock_;
  store::Archive& archive_;
  BrokerPort& port_;
  RouterOptions options_;
  IdGenerator ids_;
  std::unordered_map<std::string, Bucket> buckets_;
  int64_t last_prune_ms_ = 0;
};

}  // namespace chat::broker
