#include "chat/bridge/stats.h"

#include <nlohmann/json.hpp>

namespace chat::bridge {

uint64_t Stats::refused_total() const {
  uint64_t n = 0;
  for (auto v : refused) n += v;
  return n;
}

std::string Stats::to_json() const {
  nlohmann::json refused_json = nlohmann::json::object();
  for (size_t i = 1; i < kRefusalCount; ++i) {
    refused_json[refusal_name(static_cast<Refusal>(i))] = refused[i];
  }
  nlohmann::json closed_json = nlohmann::json::object();
  closed_json["client"] = closed_by_client;
  for (size_t i = 0; i < kCloseReasonCount; ++i) {
    closed_json[close_reason_name(static_cast<CloseReason>(i))] = closed[i];
  }
  nlohmann::json j = {
      {"connections", {{"current", connections_current}, {"total", connections_total}}},
      {"refused", refused_json},
      {"closed", closed_json},
      {"bytes", {{"to_broker", bytes_to_broker}, {"to_client", bytes_to_client}}},
      {"upstream_connect_failures", upstream_connect_failures},
  };
  return j.dump();
}

std::string Stats::summary() const {
  std::string s = "connections=" + std::to_string(connections_current) +
                  " connections_total=" + std::to_string(connections_total) +
                  " refused=" + std::to_string(refused_total());
  for (size_t i = 1; i < kRefusalCount; ++i) {
    if (refused[i] == 0) continue;
    s += " refused." + std::string(refusal_name(static_cast<Refusal>(i))) + "=" +
         std::to_string(refused[i]);
  }
  s += " bytes_to_broker=" + std::to_string(bytes_to_broker) +
       " bytes_to_client=" + std::to_string(bytes_to_client) +
       " upstream_connect_failures=" + std::to_string(upstream_connect_failures);
  return s;
}

}  // namespace chat::bridge
