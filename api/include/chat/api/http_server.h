// chat-api's REST edge (CONTRACT §2, §4): cpp-httplib routes that parse the
// request, call the Service and render its answer. The one mapping from
// Status to HTTP status lives here (http_status).
//
// Errors are JSON {"error":"<code>","message":"..."} everywhere, including
// unknown routes (404), oversized bodies (413) and handler exceptions (500).
// The token endpoint answers RFC 6749 §5.2 errors
// ({"error":"invalid_grant"|...,"error_description":...}).
//
// It also serves the built browser client (GET/HEAD of `/`, `/index.html`
// and its assets, from HttpOptions::web.dir) with security headers, and
// GET /config.json telling that client where the MQTT-over-WebSocket bridge is.
//
// GET /metrics (Prometheus text, metrics.h) answers an admin access token or
// the static CHAT_METRICS_TOKEN; every request is counted there by route pattern.
//
// Abuse limits (rate_limits.h) answer 429 with Retry-After (whole seconds, at
// least 1) and {"error":"rate_limited",...}: token requests per client IP,
// password grants of a locked account, and REST writes (POST/PUT/PATCH/DELETE)
// per user, admins exempt.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "chat/api/metrics.h"
#include "chat/api/rate_limits.h"
#include "chat/api/service.h"
#include "chat/api/web.h"
#include "chat/common/status.h"

namespace httplib {
class Server;
}

namespace chat::api {

class BackupRunner;
class DeviceRegistry;
class PushMetrics;

// The one Status -> HTTP status mapping of this edge.
int http_status(StatusCode code);

struct HttpOptions {
  int threads = 64;                   // Default: 64 (CHAT_HTTP_THREADS).
  size_t max_body_bytes = 64 * 1024;  // Default: 64 KiB; larger bodies get 413.
  WebOptions web;                     // the browser client at / and GET /config.json
  // https when tls_cert is set (CHAT_TLS_CERT / CHAT_TLS_KEY / CHAT_TLS_CA):
  // TLS 1.2 or newer, TLS 1.2 limited to kTlsCiphers. tls_ca only completes
  // the chain sent to clients; no client certificates are asked for.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_ca;
  RateLimitOptions rate_limits;  // Default: RateLimitOptions' defaults (all on).
  const Clock* clock = nullptr;  // for the rate limits. Default: SystemClock.
  // Push (docs/push.md): the device registry behind /v1/devices (unset: those
  // routes answer 503) and the pipeline's counters for /metrics (unset: not
  // shown). Borrowed; must outlive the server.
  DeviceRegistry* devices = nullptr;
  const PushMetrics* push_metrics = nullptr;
  // POST /v1/admin/backups (backup.h; unset: it answers 503). Borrowed.
  BackupRunner* backups = nullptr;
};

// The TLS 1.2 cipher suites https allows (OpenSSL names): ECDHE key exchange
// with AEAD ciphers only. TLS 1.3 keeps OpenSSL's suites (all AEAD). The
// broker's MQTT-over-TLS listener uses the same list (scripts/broker-conf).
extern const char* const kTlsCiphers;

// Whether options' TLS files make a usable server context (the same set-up as
// the server's): kInvalidArgument naming the variable otherwise. OK without TLS.
Status check_tls(const HttpOptions& options);

class HttpServer {
 public:
  // Registers the routes; borrows `service`, which must outlive this object.
  HttpServer(Service& service, HttpOptions options);
  ~HttpServer();

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the listen socket. Port 0 picks a free port. Returns the bound port,
  // or kInvalidArgument naming the variable when the TLS files cannot be used.
  Result<int> bind(const std::string& host, int port);
  // Serves on the bound socket until stop(). Blocks the calling thread.
  Status listen();
  // Thread-safe; listen() returns soon after.
  void stop();
  bool is_running() const;

  // The limits this server applies (their counters feed /metrics).
  const RateLimits& rate_limits() const { return *rate_limits_; }

  // Where /metrics gets chat-bridge's counters. Default: a BridgeStatsPoller
  // on the bridge's local address (CHAT_BIND, loopback for a wildcard bind)
  // and CHAT_WS_PORT, https when TLS is on. Set before listen() (tests).
  using BridgeStatsSource = std::function<std::optional<BridgeSample>()>;
  void set_bridge_stats_source(BridgeStatsSource source) { bridge_stats_ = std::move(source); }

 private:
  void register_routes();
  void register_web_routes();
  void register_metrics_route();
  void register_admin_routes();
  void register_media_routes();   // media_routes.cpp
  void register_device_routes();  // device_routes.cpp
  void register_backup_routes();  // backup_routes.cpp
  void register_key_routes();     // key_routes.cpp

  Service& service_;
  HttpOptions options_;
  std::string tls_error_;  // why the TLS context could not be set up
  std::unique_ptr<httplib::Server> server_;
  std::unique_ptr<HttpMetrics> http_metrics_ = std::make_unique<HttpMetrics>();
  std::unique_ptr<RateLimits> rate_limits_;
  BridgeStatsSource bridge_stats_;
};

}  // namespace chat::api
