// BrokerPort: everything the plugin logic asks of Mosquitto, as an interface,
// so the logic is unit-tested without a broker. The real implementation
// (plugin.cpp) calls mosquitto_broker_publish_copy / mosquitto_kick_client_*;
// it must only be called on the broker's thread (inside a callback).
#pragma once

#include <string>
#include <string_view>

namespace chat::broker {

enum class LogLevel { kDebug, kInfo, kNotice, kWarning, kError };

class BrokerPort {
 public:
  virtual ~BrokerPort() = default;
  // Queues a publish. An empty `client_id` routes through subscriptions; a
  // non-empty one delivers to that client's session only (connected or not),
  // bypassing subscriptions. Goes out on the broker's next loop pass.
  virtual void publish(std::string_view client_id, const std::string& topic,
                       std::string_view payload, int qos, bool retain) = 0;
  virtual void kick_client(const std::string& client_id) = 0;
  virtual void kick_user(const std::string& user) = 0;
  virtual void log(LogLevel level, const std::string& message) = 0;
};

}  // namespace chat::broker
