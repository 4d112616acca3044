#include "chat/bridge/origin_policy.h"

#include <algorithm>
#include <cctype>

namespace chat::bridge {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view strip_brackets(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    return host.substr(1, host.size() - 2);
  }
  return host;
}

bool all_digits(std::string_view s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
}

// The host of an http(s) origin in normalized form, or nullopt when the
// origin is not exactly scheme "://" host [":" port].
std::optional<std::string> http_origin_host(std::string_view origin) {
  std::string_view rest;
  if (origin.substr(0, 7) == "http://") {
    rest = origin.substr(7);
  } else if (origin.substr(0, 8) == "https://") {
    rest = origin.substr(8);
  } else {
    return std::nullopt;
  }
  if (rest.empty() || rest.find_first_of("/?#@ \t\\") != std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view host;
  std::string_view port;
  if (rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string_view::npos || close < 2) return std::nullopt;
    host = rest.substr(1, close - 1);
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return std::nullopt;
      port = after.substr(1);
      if (!all_digits(port)) return std::nullopt;
    }
  } else {
    auto colon = rest.find(':');
    host = rest.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = rest.substr(colon + 1);
      if (!all_digits(port)) return std::nullopt;
    }
    if (host.empty()) return std::nullopt;
  }
  if (port.size() > 5 || (!port.empty() && std::stoi(std::string(port)) > 65535)) {
    return std::nullopt;
  }
  return std::string(host);
}

}  // namespace

OriginPolicy::OriginPolicy(std::string_view bind, const std::vector<std::string>& extra_origins)
    : bind_host_(lower(strip_brackets(bind))) {
  for (const auto& o : extra_origins) extra_.push_back(normalize(o));
}

std::string OriginPolicy::normalize(std::string_view origin) {
  while (!origin.empty() && (origin.front() == ' ' || origin.front() == '\t')) {
    origin.remove_prefix(1);
  }
  while (!origin.empty() && (origin.back() == ' ' || origin.back() == '\t')) {
    origin.remove_suffix(1);
  }
  if (!origin.empty() && origin.back() == '/') origin.remove_suffix(1);
  return lower(origin);
}

bool OriginPolicy::allows(std::optional<std::string_view> origin) const {
  if (!origin) return true;
  const std::string o = normalize(*origin);
  if (o.empty()) return false;
  if (std::find(extra_.begin(), extra_.end(), o) != extra_.end()) return true;
  auto host = http_origin_host(o);
  if (!host) return false;
  return *host == "localhost" || *host == "127.0.0.1" ||
         (!bind_host_.empty() && *host == bind_host_);
}

}  // namespace chat::bridge
