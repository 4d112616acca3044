#include "chat/api/web.h"

#include <array>
#include <filesystem>
#include <system_error>
#include <utility>

namespace chat::api {
namespace {

namespace fs = std::filesystem;

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

constexpr std::array<std::pair<std::string_view, std::string_view>, 9> kContentTypes = {{
    {"html", "text/html; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"map", "application/json"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"ico", "image/x-icon"},
    {"txt", "text/plain; charset=utf-8"},
    {"webmanifest", "application/manifest+json"},
}};

// The content type of a file name made of [A-Za-z0-9_-] runs joined by
// single dots, with a known extension; empty for any other name.
std::string_view content_type_of(std::string_view name) {
  if (name.empty() || name.size() > 128) return {};
  bool run = false;  // inside a run of name characters
  for (char c : name) {
    if (is_name_char(c)) {
      run = true;
    } else if (c == '.' && run) {
      run = false;
    } else {
      return {};  // any other character, a leading dot or two dots in a row
    }
  }
  if (!run) return {};  // a trailing dot
  auto dot = name.rfind('.');
  if (dot == std::string_view::npos) return {};
  std::string_view ext = name.substr(dot + 1);
  for (const auto& [known, type] : kContentTypes) {
    if (ext == known) return type;
  }
  return {};
}

// A host name (RFC 1123 labels) or a bracketed IPv6 literal.
bool is_valid_host(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  if (host.front() == '[') {
    if (host.size() < 4 || host.back() != ']') return false;
    for (char c : host.substr(1, host.size() - 2)) {
      bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
      if (!hex && c != ':' && c != '.') return false;
    }
    return true;
  }
  // Labels of 1-63 letters, digits and inner hyphens, joined by single dots.
  size_t label = 0;
  char prev = '.';
  for (char c : host) {
    if (c == '.') {
      if (label == 0 || prev == '-') return false;
      label = 0;
    } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c == '-' && label > 0)) {
      if (++label > 63) return false;
    } else {
      return false;
    }
    prev = c;
  }
  return label > 0 && prev != '-';
}

// The host part of a Host header ("name", "name:port", "[v6]:port").
std::string_view host_of(std::string_view header) {
  if (!header.empty() && header.front() == '[') {
    auto close = header.find(']');
    if (close == std::string_view::npos) return {};
    std::string_view rest = header.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return {};
    return header.substr(0, close + 1);
  }
  auto colon = header.find(':');
  if (colon == std::string_view::npos) return header;
  std::string_view port = header.substr(colon + 1);
  for (char c : port) {
    if (c < '0' || c > '9') return {};
  }
  return header.substr(0, colon);
}

}  // namespace

WebOptions WebOptions::from_config(const Config& config) {
  WebOptions o;
  o.dir = config.web_dir.empty() ? default_web_dir() : config.web_dir;
  o.ws_public_url = config.ws_public_url;
  o.ws_port = config.ws_port;
  o.ws_tls = config.ws_tls;
  o.bind = config.bind;
  return o;
}

std::string default_web_dir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec || exe.empty()) return "web";
  return (exe.parent_path().parent_path() / "web").string();
}

std::string mqtt_ws_url(const WebOptions& options, std::string_view host_header) {
  if (!options.ws_public_url.empty()) return options.ws_public_url;
  std::string host(host_of(host_header));
  if (!is_valid_host(host)) {
    host = options.bind;
    if (host == "0.0.0.0" || host.empty()) host = "127.0.0.1";
    if (host == "::") host = "::1";
    if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";
  }
  return std::string(options.ws_tls ? "wss://" : "ws://") + host + ":" +
         std::to_string(options.ws_port) + "/mqtt";
}

// worker-src blob:: MQTT.js runs its keepalive timer in a worker made from a
// Blob URL (worker-timers), so background tabs' throttled timers cannot make
// the broker drop the connection.
std::string content_security_policy(std::string_view ws_url) {
  return "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
         "worker-src 'self' blob:; connect-src 'self' " +
         std::string(ws_url) +
         "; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
}

Result<StaticFile> find_static_file(const std::string& dir, std::string_view request_path) {
  if (request_path.empty() || request_path.front() != '/') return not_found("no such file");
  std::string_view rest = request_path.substr(1);
  if (rest.empty()) rest = "index.html";
  bool immutable = false;
  constexpr std::string_view kAssets = "assets/";
  if (rest.substr(0, kAssets.size()) == kAssets) {
    rest.remove_prefix(kAssets.size());
    immutable = true;
  }
  std::string_view type = content_type_of(rest);  // also refuses '/', "..", and odd characters
  if (type.empty()) return not_found("no such file");

  fs::path path = fs::path(dir);
  if (immutable) path /= "assets";
  path /= std::string(rest);
  std::error_code ec;
  // symlink_status: a symlink is not served, even one pointing inside the dir.
  if (fs::symlink_status(path, ec).type() != fs::file_type::regular) {
    return not_found("no such file");
  }
  if (immutable &&
      fs::symlink_status(fs::path(dir) / "assets", ec).type() != fs::file_type::directory) {
    return not_found("no such file");
  }
  return StaticFile{path.string(), std::string(type), immutable};
}

}  // namespace chat::api
