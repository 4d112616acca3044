// The browser client's side of chat-api (CONTRACT §1: "the web client at /"):
// which file of the built client a request path names, the headers it goes
// out with, and the bridge URL the client is told to connect to
// (GET /config.json). Pure functions apart from the file lookup; the routes
// that use them are in http_server.cpp.
#pragma once

#include <string>
#include <string_view>

#include "chat/api/config.h"
#include "chat/common/status.h"

namespace chat::api {

struct WebOptions {
  // The built client (`node web/build.mjs <dir>`): index.html at the top,
  // content-hashed assets under assets/. May be missing: then `/` is a JSON 404.
  std::string dir;
  // CHAT_WS_PUBLIC_URL, verbatim; empty = derive from the request (below).
  std::string ws_public_url;
  int ws_port = 8083;              // CHAT_WS_PORT
  bool ws_tls = false;             // wss:// (CHAT_TLS_CERT set)
  std::string bind = "127.0.0.1";  // CHAT_BIND: the host when the Host header is unusable

  // From chat-api's configuration; an empty CHAT_WEB_DIR means default_web_dir().
  static WebOptions from_config(const Config& config);
};

// `<the running executable's directory>/../web`, i.e. `<build>/web` for
// `<build>/bin/chat-api`; "web" if the executable's path cannot be read.
std::string default_web_dir();

// The MQTT-over-WebSocket URL a browser that reached us with this Host header
// should use: ws_public_url when set, else ws[s]://<host>:<ws_port>/mqtt where
// <host> is the Host header's host name (or bracketed IPv6 literal) when it is
// well formed, and CHAT_BIND otherwise (127.0.0.1 for a wildcard bind).
std::string mqtt_ws_url(const WebOptions& options, std::string_view host_header);

// The Content-Security-Policy of the client's pages: only our own origin,
// plus `ws_url` for the MQTT connection and blob: workers (MQTT.js's timers).
std::string content_security_policy(std::string_view ws_url);

struct StaticFile {
  std::string path;          // the file on disk
  std::string content_type;  // from its extension
  bool immutable = false;    // under assets/: the name carries a content hash
};

// The file of the built client that `request_path` (already URL-decoded)
// names, or not_found. Only "/", "/index.html", "/<name>" and
// "/assets/<name>" are ever served, where <name> is [A-Za-z0-9_-] runs joined
// by single dots with a known extension: no "..", no other directories, no
// listings, and never a symlink or anything but a regular file.
Result<StaticFile> find_static_file(const std::string& dir, std::string_view request_path);

// The regular expression (cpp-httplib route) that covers every path
// find_static_file can serve, and nothing that might be another route.
inline constexpr const char* kStaticRoutePattern =
    R"((/|/index\.html|/(?:assets/)?[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.(?:html|js|css|map|svg|png|ico|txt|webmanifest)))";

}  // namespace chat::api
