// MqttLink: one MQTT 5 connection of a device (CONTRACT §3), over Paho MQTT C++.
//
// Everything the connection reports — messages, the outcome of each publish,
// the connection's loss — arrives as an MqttEvent in one queue, read by one
// thread with next_event(). Paho's own threads only push to that queue.
// There is no automatic reconnect: the owner decides (refreshing the token
// first), by making a new MqttLink.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "chat/common/status.h"

namespace chat::tools {

struct MqttEvent {
  enum class Kind {
    kMessage,         // a PUBLISH from the server: topic, payload
    kPublishDone,     // the outcome of publish(): publish_seq, publish_ok, reason_code
    kConnectionLost,  // the connection is gone: detail
  };
  Kind kind = Kind::kMessage;
  std::string topic;
  std::string payload;
  bool retained = false;  // kMessage: a retained message (sent because we just subscribed)
  uint64_t publish_seq = 0;
  bool publish_ok = false;  // PUBACK with a reason code below 0x80
  int reason_code = 0;      // the PUBACK's reason code (0x10 "no matching subscribers" is ok)
  std::string detail;       // why a publish failed or the connection was lost
};

struct MqttConnectOptions {
  std::string server_uri;  // tcp://host:port or ssl://host:port
  std::string client_id;   // <user>:<device>
  std::string user_name;   // the user id
  std::string password;    // the access token
  std::string ca_file;     // ssl:// only; "" = system trust store
  // Persistent session: clean start false with this expiry. Default: 7 days.
  std::chrono::seconds session_expiry{7 * 24 * 3600};
  // Default: 30 s.
  std::chrono::seconds keep_alive{30};
  // How long connect() waits for the CONNACK. Default: 10 s.
  std::chrono::milliseconds timeout{10'000};
};

class MqttLink {
 public:
  ~MqttLink();  // disconnects (briefly waiting for in-flight work)
  MqttLink(const MqttLink&) = delete;
  MqttLink& operator=(const MqttLink&) = delete;

  // Connects with MQTT 5, clean start false and the session expiry.
  // Errors: kUnauthenticated when the CONNACK refuses the credentials (0x86,
  // 0x87, 0x8C), kPermissionDenied when banned (0x8A), kUnavailable for
  // network trouble, a timeout, or a busy/unavailable server.
  static Result<std::unique_ptr<MqttLink>> connect(const MqttConnectOptions& options,
                                                   bool* session_present);

  // Subscribes and waits for the SUBACK; a refusal (reason >= 0x80) is
  // kPermissionDenied.
  Status subscribe(const std::string& filter, int qos, std::chrono::milliseconds timeout);

  // Subscribes to several filters in one SUBSCRIBE and waits for the SUBACK.
  // Returns, per filter, whether the broker granted it; kUnavailable when no
  // SUBACK came (timeout, connection lost).
  Result<std::vector<bool>> subscribe_many(const std::vector<std::string>& filters, int qos,
                                           std::chrono::milliseconds timeout);

  // Sends a PUBLISH; its outcome arrives as a kPublishDone event carrying the
  // returned sequence number. kUnavailable when the client refuses at once
  // (not connected).
  Result<uint64_t> publish(const std::string& topic, const std::string& payload, int qos);

  // The next event, or nullopt when `deadline` passes first.
  std::optional<MqttEvent> next_event(std::chrono::steady_clock::time_point deadline);

  // Sends DISCONNECT (reason 0: the session stays for its expiry) and waits up
  // to `timeout`. Safe to call twice.
  void disconnect(std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));

 private:
  struct Impl;
  explicit MqttLink(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace chat::tools
