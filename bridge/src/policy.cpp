#include "chat/bridge/policy.h"

namespace chat::bridge {

const char* refusal_name(Refusal r) {
  switch (r) {
    case Refusal::kNone:
      return "none";
    case Refusal::kPath:
      return "path";
    case Refusal::kUpgrade:
      return "upgrade";
    case Refusal::kSubprotocol:
      return "subprotocol";
    case Refusal::kOrigin:
      return "origin";
    case Refusal::kMaxConnections:
      return "max_connections";
    case Refusal::kMaxPerIp:
      return "max_per_ip";
    case Refusal::kShuttingDown:
      return "shutting_down";
    case Refusal::kRateLimited:
      return "rate_limited";
  }
  return "unknown";
}

int http_status(Refusal r) {
  switch (r) {
    case Refusal::kNone:
      return 101;
    case Refusal::kPath:
      return 404;
    case Refusal::kUpgrade:
      return 400;
    case Refusal::kSubprotocol:
      return 400;
    case Refusal::kOrigin:
      return 403;
    case Refusal::kMaxConnections:
      return 503;
    case Refusal::kMaxPerIp:
      return 503;
    case Refusal::kShuttingDown:
      return 503;
    case Refusal::kRateLimited:
      return 429;
  }
  return 500;
}

bool offers_mqtt_subprotocol(std::string_view protocols) {
  // What libwebsockets 4.1 itself accepts, so that nothing we admit is then
  // dropped by it without an answer: the header in its 126-byte buffer, names
  // of at most 63 bytes (tokens: none of RFC 7230's delimiters inside).
  if (protocols.size() > 125) return false;
  bool offered = false;
  while (!protocols.empty()) {
    auto comma = protocols.find(',');
    std::string_view item = protocols.substr(0, comma);
    protocols = comma == std::string_view::npos ? std::string_view() : protocols.substr(comma + 1);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (item.size() > 63 || item.find_first_of("()<>@;:\\\"/[]?={} \t") != std::string_view::npos) {
      return false;
    }
    if (item == kSubprotocolMqtt || item == kSubprotocolMqtt31) offered = true;
  }
  return offered;
}

static bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

Refusal check_upgrade(const UpgradeRequest& request, const OriginPolicy& origins,
                      const ConnectionLimits& limits, bool shutting_down) {
  if (shutting_down) return Refusal::kShuttingDown;
  if (request.path != kWebSocketPath) return Refusal::kPath;
  if (!iequals(request.upgrade, "websocket")) return Refusal::kUpgrade;
  if (!request.protocols || !offers_mqtt_subprotocol(*request.protocols)) {
    return Refusal::kSubprotocol;
  }
  if (!origins.allows(request.origin)) return Refusal::kOrigin;
  switch (limits.check(std::string(request.peer_ip))) {
    case Admission::kAdmit:
      return Refusal::kNone;
    case Admission::kTooManyConnections:
      return Refusal::kMaxConnections;
    case Admission::kTooManyForIp:
      return Refusal::kMaxPerIp;
  }
  return Refusal::kNone;
}

int close_code(CloseReason r) {
  switch (r) {
    case CloseReason::kBrokerClosed:
      return 1000;
    case CloseReason::kIdle:
      return 1001;
    case CloseReason::kShutdown:
      return 1001;
    case CloseReason::kTextFrame:
      return 1003;
    case CloseReason::kFrameTooBig:
      return 1009;
    case CloseReason::kBrokerUnavailable:
      return 1013;
  }
  return 1011;
}

const char* close_reason_name(CloseReason r) {
  switch (r) {
    case CloseReason::kBrokerClosed:
      return "broker_closed";
    case CloseReason::kIdle:
      return "idle_timeout";
    case CloseReason::kShutdown:
      return "shutdown";
    case CloseReason::kTextFrame:
      return "text_frame";
    case CloseReason::kFrameTooBig:
      return "frame_too_big";
    case CloseReason::kBrokerUnavailable:
      return "broker_unavailable";
  }
  return "unknown";
}

}  // namespace chat::bridge
