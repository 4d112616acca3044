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
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "chat/api/service.h"
#include "chat/api/web.h"
#include "chat/common/status.h"

namespace httplib {
class Server;
}

namespace chat::api {

// The one Status -> HTTP status mapping of this edge.
int http_status(StatusCode code);

struct HttpOptions {
  int threads = 64;                   // Default: 64 (CHAT_HTTP_THREADS).
  size_t max_body_bytes = 64 * 1024;  // Default: 64 KiB; larger bodies get 413.
  WebOptions web;                     // the browser client at / and GET /config.json
};

class HttpServer {
 public:
  // Registers the routes; borrows `service`, which must outlive this object.
  HttpServer(Service& service, HttpOptions options);
  ~HttpServer();

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the listen socket. Port 0 picks a free port. Returns the bound port.
  Result<int> bind(const std::string& host, int port);
  // Serves on the bound socket until stop(). Blocks the calling thread.
  Status listen();
  // Thread-safe; listen() returns soon after.
  void stop();
  bool is_running() const;

 private:
  void register_routes();
  void register_web_routes();

  Service& service_;
  HttpOptions options_;
  std::unique_ptr<httplib::Server> server_;
};

}  // namespace chat::api
