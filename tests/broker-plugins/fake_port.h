// A BrokerPort that records what the plugin logic asks of the broker:
// publications (with client, topic, payload, QoS) and kicks.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "chat/broker/broker_port.h"

namespace chat::broker {

struct Published {
  std::string client_id, topic, payload;
  int qos;
};

class FakePort final : public BrokerPort {
 public:
  void publish(std::string_view client_id, const std::string& topic, std::string_view payload,
               int qos, bool) override {
    published.push_back({std::string(client_id), topic, std::string(payload), qos});
  }
  void kick_client(const std::string& c) override { kicked.push_back(c); }
  void kick_user(const std::string& u) override { kicked.push_back(u); }
  void log(LogLevel, const std::string&) override {}
  std::vector<Published> published;
  std::vector<std::string> kicked;  // client ids and user ids, in order
};

}  // namespace chat::broker
