// The control channel from chat-api to the broker (ARCHITECTURE.md: chat-api
// changes broker-owned state only through `$CONTROL/chat/v1`).
//
// A request is a JSON object {"op":"<op>","req":"<unique id>", ...args},
// published QoS 1 on $CONTROL/chat/v1 by a client with the service role. The
// broker answers that client alone on $CONTROL/chat/v1/response with
// {"req":"<id>","ok":true, ...} or {"req":"<id>","ok":false,"error":"<code>","message":"..."}.
//
// A successful reply may carry "result" (docs/protocol.md, "Service control topic").
//
// The broker also publishes a stats snapshot every few seconds on
// $CONTROL/chat/v1/stats, which only service-role clients may subscribe to
// (docs/protocol.md, "Broker stats"); the client subscribes on each connect
// and keeps the latest one for GET /metrics.
//
// Ops used: user.add, user.remove {"user"}; group.create {"name","members","by"};
// group.add, group.remove, group.admin {"gid","user","by"}; block.set
// {"user","peer","blocked"}; user.ban, user.unban {"user"}; client.kick
// {"clientid"}; client.list {}; push.devices {"user","devices"}, push.done
// {"upto"} (docs/push.md); keys.changed {"user","device","action",
// "identity_key"} (docs/e2e.md). With on_push set it also subscribes to the
// broker's push wake-ups on $CONTROL/chat/v1/push.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "chat/common/status.h"

namespace chat::api {

// The broker plugin's latest stats snapshot, and when it arrived.
struct BrokerStatsSnapshot {
  nlohmann::json stats;
  std::chrono::steady_clock::time_point received;
};

// What the service needs from the broker. Tests substitute a fake.
class ControlChannel {
 public:
  virtual ~ControlChannel() = default;

  // Sends `request` (an object with "op" and its arguments; "req" is filled
  // in) and blocks until the broker's answer or `timeout` (which includes
  // waiting for a connection while reconnecting). Returns the
  // answer when it says ok; otherwise a Status: the broker's error code mapped
  // to a StatusCode (unknown codes: kInternal), and kUnavailable when not
  // connected, on disconnect while waiting, or on timeout (the op may or may
  // not have been applied then). Thread-safe. Never call it from a Paho
  // callback.
  virtual Result<nlohmann::json> call(const nlohmann::json& request,
                                      std::chrono::milliseconds timeout) = 0;
  // True while a broker connection is up.
  virtual bool connected() const = 0;
  // The latest stats snapshot the broker published, if any arrived.
  virtual std::optional<BrokerStatsSnapshot> broker_stats() const { return std::nullopt; }
};

// The "result" member of a successful reply, or null when it has none.
nlohmann::json control_result(const nlohmann::json& answer);

// Maps a broker error code ("already_exists", "not_found", ...; the names of
// status_code_name) to a StatusCode; unknown names give kInternal.
StatusCode control_error_code(std::string_view error);

struct ControlClientOptions {
  std::string host = "127.0.0.1";
  int port = 1883;
  std::string username = "svc.chat-api";
  // Default: "svc.chat-api:api-<pid>".
  std::string client_id;
  // Mints the connect password (a fresh service JWT) for each connect attempt.
  std::function<std::string()> mint_password;
  // The token lives 24 h; reconnect with a fresh one before it is this old.
  // Default: 12 h.
  std::chrono::seconds token_max_age = std::chrono::hours(12);
  std::chrono::milliseconds backoff_min = std::chrono::milliseconds(100);  // Default: 100 ms.
  std::chrono::milliseconds backoff_max = std::chrono::seconds(5);         // Default: 5 s.
  // Runs on the client's own thread after each successful connect (it may
  // call call()). Default: none.
  std::function<void()> on_connected;
  // Runs on Paho's callback thread for each push wake-up the broker publishes
  // on $CONTROL/chat/v1/push (docs/push.md); must return at once (no call()).
  // Set: the client subscribes to that topic on each connect. Default: none.
  std::function<void()> on_push;
};

// The broker connection: Paho MQTT C++ async client, MQTT 3.1.1, clean
// session, no persistence. One background thread connects, reconnects with
// exponential backoff (minting a fresh token every attempt) and reconnects
// proactively before the token ages out. Thread-safe.
class ControlClient final : public ControlChannel {
 public:
  explicit ControlClient(ControlClientOptions options);
  ~ControlClient() override;  // stop()s

  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  // Starts the connection thread; returns at once.
  void start();
  // Disconnects and joins the thread; pending calls fail with kUnavailable.
  void stop();
  // Waits until connected or `timeout` passes.
  bool wait_connected(std::chrono::milliseconds timeout) const;

  Result<nlohmann::json> call(const nlohmann::json& request,
                              std::chrono::milliseconds timeout) override;
  bool connected() const override;
  std::optional<BrokerStatsSnapshot> broker_stats() const override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chat::api
