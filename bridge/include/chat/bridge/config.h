// chat-bridge's configuration: one struct, parsed once from the environment at
// start, immutable afterwards (CONTRACT §1).
//
// Every field names its variable, its default and its bounds. An empty
// variable counts as unset. A bad value is a start-up error whose message is
// one line naming the variable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "chat/common/settings.h"
#include "chat/common/status.h"

namespace chat::bridge {

struct Config {
  // CHAT_BIND. Default: "127.0.0.1". The one address the WebSocket listener
  // binds: an IPv4 or IPv6 literal, or "localhost" (taken as 127.0.0.1).
  std::string bind = "127.0.0.1";
  // CHAT_WS_PORT. Default: 8083. 0-65535; 0 picks a free port (logged).
  int ws_port = 8083;
  // CHAT_MQTT_PORT. Default: 1883. 1-65535. Only used for the default upstream.
  int mqtt_port = 1883;
  // CHAT_BRIDGE_UPSTREAM. Default: "127.0.0.1:<CHAT_MQTT_PORT>". The broker,
  // as host:port or [ipv6]:port. A host name is resolved once, at start.
  std::string upstream_host = "127.0.0.1";
  int upstream_port = 1883;
  // CHAT_WS_ORIGINS. Default: none. Comma-separated exact origins
  // (scheme://host[:port]) allowed in addition to the built-in local ones;
  // stored lower-case without a trailing slash.
  std::vector<std::string> extra_origins;
  // CHAT_WS_BUFFER_BYTES. Default: 262144. 4096-67108864. Per connection and
  // per direction: above it the bridge stops reading the sending side, below
  // half of it reading resumes.
  size_t buffer_bytes = 256 * 1024;
  // CHAT_WS_MAX_CONNECTIONS. Default: 10000. 1-1000000. WebSockets at once.
  int max_connections = 10000;
  // CHAT_WS_MAX_PER_IP. Default: 100. 1-1000000. WebSockets at once per client IP.
  int max_per_ip = 100;
  // CHAT_WS_CONN_RATE. Default: 10. 0-1000000 new WebSockets per second per
  // client IP (a token bucket); 0 turns it off. Beyond it an upgrade is
  // refused with HTTP 429.
  int conn_rate = 10;
  // CHAT_WS_CONN_BURST. Default: 30. 1-1000000. How many new WebSockets one
  // IP may open at once before CHAT_WS_CONN_RATE applies.
  int conn_burst = 30;
  // CHAT_WS_HANDSHAKE_TIMEOUT. Default: 10. 1-300 seconds for a client to
  // complete its HTTP/TLS handshake, and for the broker connection to open.
  int handshake_timeout_s = 10;
  // CHAT_WS_IDLE_TIMEOUT. Default: 600. 1-86400 seconds without a byte in
  // either direction before the WebSocket is closed (1001).
  int idle_timeout_s = 600;
  // CHAT_WS_MAX_FRAME. Default: 16777216 (16 MiB). 16-1073741824. Largest
  // WebSocket frame payload accepted; a larger one closes with 1009.
  size_t max_frame_bytes = 16 * 1024 * 1024;
  // CHAT_TLS_CERT / CHAT_TLS_KEY. Default: unset (plain ws). Both set: wss,
  // TLS 1.2 or newer. One without the other is a start-up error.
  std::string tls_cert;
  std::string tls_key;
  // CHAT_TLS_CA. Default: unset. Optional CA / intermediate bundle (PEM)
  // used to complete the chain the server presents.
  std::string tls_ca;

  bool tls() const { return !tls_cert.empty(); }
  // "host:port" of the upstream, brackets around IPv6.
  std::string upstream() const;

  // Checks that the TLS files named exist and are readable (the only part of
  // validation that touches the file system). Errors name the variable.
  Status check_files() const;

  // Reads the CHAT_* variables from the process environment.
  static Result<Config> from_env();
  // Same, from any lookup (tests). The lookup returns nullopt for unset names.
  using Lookup = settings::Lookup;
  static Result<Config> from_lookup(const Lookup& lookup);
};

}  // namespace chat::bridge
