// The bridge's decisions at its two edges, apart from any I/O:
//  - whether a WebSocket upgrade request is admitted, and if not the HTTP
//    status it is refused with (Refusal, check_upgrade, http_status);
//  - why the bridge closes a WebSocket, and the close code it sends
//    (CloseReason, close_code).
// Each mapping lives here and nowhere else.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "chat/bridge/connection_limits.h"
#include "chat/bridge/origin_policy.h"

namespace chat::bridge {

// The one path WebSockets are served on.
inline constexpr std::string_view kWebSocketPath = "/mqtt";
// Subprotocols accepted: "mqtt" (MQTT 3.1.1 and 5) and "mqttv3.1" (what
// MQTT.js offers for protocolVersion 3).
inline constexpr std::string_view kSubprotocolMqtt = "mqtt";
inline constexpr std::string_view kSubprotocolMqtt31 = "mqttv3.1";

enum class Refusal {
  kNone = 0,
  kPath,            // 404: not /mqtt
  kUpgrade,         // 400: an upgrade to something other than websocket
  kSubprotocol,     // 400: no Sec-WebSocket-Protocol offering mqtt / mqttv3.1
  kOrigin,          // 403: Origin not allowed (OriginPolicy)
  kMaxConnections,  // 503: CHAT_WS_MAX_CONNECTIONS reached
  kMaxPerIp,        // 503: CHAT_WS_MAX_PER_IP reached for this address
  kShuttingDown,    // 503: SIGTERM/SIGINT received
  kRateLimited,     // 429: CHAT_WS_CONN_RATE exceeded for this address (ConnectionRate)
};
inline constexpr size_t kRefusalCount = 9;

// Stable lower-case name ("path", "origin", "max_per_ip"...): logs and /stats.
const char* refusal_name(Refusal r);
// The HTTP status a refused upgrade is answered with.
int http_status(Refusal r);

struct UpgradeRequest {
  std::string_view path;                      // request path, query removed
  std::string_view upgrade;                   // the Upgrade header ("websocket")
  std::optional<std::string_view> origin;     // Origin header, if any
  std::optional<std::string_view> protocols;  // Sec-WebSocket-Protocol, if any
  std::string_view peer_ip;
};

// Checks in order: shutting down, path, upgrade, subprotocol, origin, limits.
// The connection rate (kRateLimited) is checked after all of these, by the
// server, since it takes a token: only an upgrade that would otherwise be
// admitted counts against its address.
Refusal check_upgrade(const UpgradeRequest& request, const OriginPolicy& origins,
                      const ConnectionLimits& limits, bool shutting_down);

// Whether a Sec-WebSocket-Protocol value offers a subprotocol we serve.
// libwebsockets picks the first offered name it knows, and the only names it
// knows on our listener are the two MQTT ones, so any offer of either is
// enough. Values over 127 bytes are refused (libwebsockets drops them).
bool offers_mqtt_subprotocol(std::string_view protocols);

// Why the bridge closes a WebSocket.
enum class CloseReason {
  kBrokerClosed = 0,   // 1000 the broker closed its side (after every byte it sent)
  kIdle,               // 1001 no byte either way for CHAT_WS_IDLE_TIMEOUT
  kShutdown,           // 1001 SIGTERM/SIGINT
  kTextFrame,          // 1003 MQTT travels in binary frames only
  kFrameTooBig,        // 1009 a frame over CHAT_WS_MAX_FRAME
  kBrokerUnavailable,  // 1013 the broker could not be reached (refused, timeout)
};
inline constexpr size_t kCloseReasonCount = 6;

int close_code(CloseReason r);
// Stable lower-case name, also the text of the close frame.
const char* close_reason_name(CloseReason r);

}  // namespace chat::bridge
