// Stats: chat-bridge's counters, served as JSON at GET /stats and summed up
// in the periodic log line. Plain values; the bridge's one thread owns them.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "chat/bridge/policy.h"

namespace chat::bridge {

struct Stats {
  uint64_t connections_current = 0;                  // open WebSockets
  uint64_t connections_total = 0;                    // WebSockets accepted since start
  std::array<uint64_t, kRefusalCount> refused{};     // by Refusal (kNone unused)
  std::array<uint64_t, kCloseReasonCount> closed{};  // closes the bridge initiated, by reason
  uint64_t closed_by_client = 0;                     // WebSockets the browser closed (or lost)
  uint64_t bytes_to_broker = 0;                      // bytes written to broker sockets
  uint64_t bytes_to_client = 0;                      // payload bytes written in WebSocket frames
  uint64_t upstream_connect_failures = 0;

  uint64_t refused_total() const;

  // {"connections":{"current":..,"total":..},"refused":{"origin":..,...},
  //  "closed":{"client":..,"broker_closed":..,...},
  //  "bytes":{"to_broker":..,"to_client":..},"upstream_connect_failures":..}
  std::string to_json() const;
  // The fields of the periodic log line, key=value: "connections=3
  // connections_total=10 refused=2 refused.origin=2 bytes_to_broker=... ...".
  std::string summary() const;

  bool operator==(const Stats&) const = default;
};

}  // namespace chat::bridge
