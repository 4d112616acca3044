// Server: chat-bridge's WebSocket listener and relay, on libwebsockets' event
// loop (one thread, nothing blocks).
//
// For every WebSocket admitted on /mqtt (subprotocol mqtt or mqttv3.1) the
// server opens one TCP connection to the broker and relays bytes unchanged
// both ways, whatever the frame and packet boundaries. It never parses MQTT.
//  - Order: when the broker closes, every byte already received from it is
//    delivered to the browser before the close frame (1000); when the browser
//    closes, every byte it sent is written to the broker before the broker
//    socket is shut down (FIN, then up to 5 s for the broker to close).
//  - Back-pressure: per connection and direction at most CHAT_WS_BUFFER_BYTES
//    wait (plus one read of at most 32 KiB); past it the sending side is no
//    longer read, below half of it reading resumes. Writes go out from
//    WRITEABLE callbacks only, at most 32 KiB per callback.
//  - Limits, timeouts and refusals: see policy.h and config.h.
//  - GET /healthz and (to loopback peers only) GET /stats on the same port.
#pragma once

#include <memory>
#include <string>

#include "chat/bridge/config.h"
#include "chat/bridge/stats.h"
#include "chat/common/status.h"

namespace chat::bridge {

class Server {
 public:
  // Creates the listener on config.bind:config.ws_port. `upstream_address`
  // is the broker's numeric IP (resolved by the caller, once). `signal_fd`
  // is a signalfd for SIGINT/SIGTERM (or -1); the server owns it from now on
  // and starts a graceful shutdown when it becomes readable.
  // Errors: unavailable (cannot listen: port in use, address not local),
  // invalid_argument (TLS files rejected), internal.
  static Result<std::unique_ptr<Server>> start(const Config& config,
                                               const std::string& upstream_address, int signal_fd);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The port actually listened on (CHAT_WS_PORT, or the one picked for 0).
  int port() const;

  // Serves until a signal arrives, then closes every WebSocket with 1001 and
  // every broker socket, waiting at most 1.5 s for peers before cutting them.
  Status run();

  const Stats& stats() const;

  struct Impl;  // libwebsockets glue, private to server.cpp

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace chat::bridge
