#include "chat/bridge/config.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>

#include "chat/bridge/origin_policy.h"
#include "chat/common/settings.h"

namespace chat::bridge {
namespace {

using settings::bad;
using settings::read_int;

bool parse_int(std::string_view text, int64_t min, int64_t max, int64_t* out) {
  int64_t parsed = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), parsed);
  if (ec != std::errc() || end != text.data() + text.size() || parsed < min || parsed > max) {
    return false;
  }
  *out = parsed;
  return true;
}

bool is_ip_literal(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

// scheme "://" authority, nothing after (no path, query or fragment).
bool looks_like_origin(std::string_view o) {
  auto sep = o.find("://");
  if (sep == std::string_view::npos || sep == 0) return false;
  for (size_t i = 0; i < sep; ++i) {
    char c = o[i];
    bool ok = (c >= 'a' && c <= 'z') ||
              (i > 0 && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'));
    if (!ok) return false;
  }
  std::string_view authority = o.substr(sep + 3);
  return !authority.empty() && authority.find_first_of("/?#@ \t\\,") == std::string_view::npos;
}

Status parse_upstream(std::string_view v, Config* c) {
  constexpr const char* kName = "CHAT_BRIDGE_UPSTREAM";
  constexpr const char* kExpected = "host:port or [ipv6]:port";
  std::string_view host;
  std::string_view port;
  if (!v.empty() && v.front() == '[') {
    auto close = v.find(']');
    if (close == std::string_view::npos || close + 1 >= v.size() || v[close + 1] != ':') {
      return bad(kName, v, kExpected);
    }
    host = v.substr(1, close - 1);
    port = v.substr(close + 2);
    if (!is_ip_literal(std::string(host))) return bad(kName, v, kExpected);
  } else {
    auto colon = v.rfind(':');
    if (colon == std::string_view::npos) return bad(kName, v, kExpected);
    host = v.substr(0, colon);
    port = v.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return bad(kName, v, kExpected);
  }
  if (host.empty() || host.find_first_of(" \t/") != std::string_view::npos) {
    return bad(kName, v, kExpected);
  }
  int64_t p = 0;
  if (!parse_int(port, 1, 65535, &p)) return bad(kName, v, "a port from 1 to 65535 after the ':'");
  c->upstream_host = std::string(host);
  c->upstream_port = static_cast<int>(p);
  return Status::ok();
}

Status check_readable(const char* name, const std::string& path) {
  if (path.empty() || ::access(path.c_str(), R_OK) == 0) return Status::ok();
  return invalid_argument(std::string(name) + ": cannot read '" + path +
                          "': " + std::strerror(errno));
}

}  // namespace

std::string Config::upstream() const {
  if (upstream_host.find(':') != std::string::npos) {
    return "[" + upstream_host + "]:" + std::to_string(upstream_port);
  }
  return upstream_host + ":" + std::to_string(upstream_port);
}

Status Config::check_files() const {
  if (Status s = check_readable("CHAT_TLS_CERT", tls_cert); !s.is_ok()) return s;
  if (Status s = check_readable("CHAT_TLS_KEY", tls_key); !s.is_ok()) return s;
  return check_readable("CHAT_TLS_CA", tls_ca);
}

Result<Config> Config::from_env() { return from_lookup(settings::environment()); }

Result<Config> Config::from_lookup(const Lookup& raw_lookup) {
  // An empty variable counts as unset.
  const Lookup lookup = settings::empty_as_unset(raw_lookup);

  Config c;

  if (auto v = lookup("CHAT_BIND")) {
    if (*v == "localhost") {
      c.bind = "127.0.0.1";
    } else if (is_ip_literal(*v)) {
      c.bind = *v;
    } else {
      return bad("CHAT_BIND", *v, "an IPv4 or IPv6 address (or localhost)");
    }
  }
  if (Status s = read_int(lookup, "CHAT_WS_PORT", 0, 65535, &c.ws_port); !s.is_ok()) return s;
  if (Status s = read_int(lookup, "CHAT_MQTT_PORT", 1, 65535, &c.mqtt_port); !s.is_ok()) return s;
  c.upstream_port = c.mqtt_port;
  if (auto v = lookup("CHAT_BRIDGE_UPSTREAM")) {
    if (Status s = parse_upstream(*v, &c); !s.is_ok()) return s;
  }

  if (auto v = lookup("CHAT_WS_ORIGINS")) {
    for (std::string_view item : settings::split_list(*v)) {
      std::string origin = OriginPolicy::normalize(item);
      if (!looks_like_origin(origin)) {
        return bad("CHAT_WS_ORIGINS", item,
                   "comma-separated origins like https://chat.example.com (no path)");
      }
      c.extra_origins.push_back(origin);
    }
  }

  if (Status s = read_int(lookup, "CHAT_WS_BUFFER_BYTES", 4096, 64 << 20, &c.buffer_bytes);
      !s.is_ok()) {
    return s;
  }
  if (Status s = read_int(lookup, "CHAT_WS_MAX_CONNECTIONS", 1, 1000000, &c.max_connections);
      !s.is_ok()) {
    return s;
  }
  if (Status s = read_int(lookup, "CHAT_WS_MAX_PER_IP", 1, 1000000, &c.max_per_ip); !s.is_ok()) {
    return s;
  }
  if (Status s = read_int(lookup, "CHAT_WS_CONN_RATE", 0, 1000000, &c.conn_rate); !s.is_ok()) {
    return s;
  }
  if (Status s = read_int(lookup, "CHAT_WS_CONN_BURST", 1, 1000000, &c.conn_burst); !s.is_ok()) {
    return s;
  }
  if (Status s = read_int(lookup, "CHAT_WS_HANDSHAKE_TIMEOUT", 1, 300, &c.handshake_timeout_s);
      !s.is_ok()) {
    return s;
  }
  if (Status s = read_int(lookup, "CHAT_WS_IDLE_TIMEOUT", 1, 86400, &c.idle_timeout_s);
      !s.is_ok()) {
    return s;
  }
  if (Status s = read_int(lookup, "CHAT_WS_MAX_FRAME", 16, int64_t{1} << 30, &c.max_frame_bytes);
      !s.is_ok()) {
    return s;
  }

  if (auto v = lookup("CHAT_TLS_CERT")) c.tls_cert = *v;
  if (auto v = lookup("CHAT_TLS_KEY")) c.tls_key = *v;
  // CHAT_TLS_CA without a certificate is ignored: the run script may export
  // it for the other processes.
  if (auto v = lookup("CHAT_TLS_CA")) c.tls_ca = *v;
  if (c.tls_cert.empty() != c.tls_key.empty()) {
    return invalid_argument(
        c.tls_cert.empty() ? "CHAT_TLS_CERT: must be set when CHAT_TLS_KEY is (both or neither)"
                           : "CHAT_TLS_KEY: must be set when CHAT_TLS_CERT is (both or neither)");
  }
  if (c.tls_cert.empty()) c.tls_ca.clear();
  return c;
}

}  // namespace chat::bridge
