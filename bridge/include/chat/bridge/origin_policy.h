// OriginPolicy: which browser origins may open a WebSocket (CONTRACT §1).
//
// Allowed: a handshake without Origin (non-browser clients); an http:// or
// https:// origin whose host is localhost, 127.0.0.1 or the CHAT_BIND value,
// on any port; any origin listed in CHAT_WS_ORIGINS (compared
// case-insensitively, a trailing slash ignored). Refused: everything else,
// including "null", other schemes and malformed values. Pure; thread-safe
// for concurrent const use.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chat::bridge {

class OriginPolicy {
 public:
  // `bind` is the CHAT_BIND value; `extra_origins` the CHAT_WS_ORIGINS list
  // (any case, with or without a trailing slash).
  OriginPolicy(std::string_view bind, const std::vector<std::string>& extra_origins);

  // Whether a handshake whose Origin header is `origin` (nullopt: no header)
  // may proceed.
  bool allows(std::optional<std::string_view> origin) const;

  // The comparison form of an origin: trimmed, lower-case, one trailing '/'
  // removed. Exposed for config validation.
  static std::string normalize(std::string_view origin);

 private:
  std::string bind_host_;  // lower-case, without IPv6 brackets
  std::vector<std::string> extra_;
};

}  // namespace chat::bridge
