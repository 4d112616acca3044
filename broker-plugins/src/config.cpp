#include "chat/broker/config.h"

#include <algorithm>
#include <charconv>

#include "chat/common/ids.h"
#include "chat/common/settings.h"

namespace chat::broker {
namespace {

template <typename T>
bool parse_number(const std::string& s, T* out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

Status bad(const std::string& key, const std::string& why) {
  return invalid_argument("plugin_opt_" + key + ": " + why);
}

}  // namespace

Result<PluginConfig> PluginConfig::from_options(
    const std::vector<std::pair<std::string, std::string>>& options) {
  PluginConfig c;
  for (const auto& [key, value] : options) {
    if (key == "data_dir") {
      c.data_dir = value;
    } else if (key == "archive_dir") {
      c.archive_path = value;
    } else if (key == "jwks_file") {
      c.jwks_file = value;
    } else if (key == "issuer") {
      if (value.empty()) return bad(key, "must not be empty");
      c.issuer = value;
    } else if (key == "audience") {
      if (value.empty()) return bad(key, "must not be empty");
      c.audience = value;
    } else if (key == "jwt_leeway") {
      if (!parse_number(value, &c.leeway_s) || c.leeway_s < 0 || c.leeway_s > 30)
        return bad(key, "must be 0..30 seconds");
    } else if (key == "max_payload") {
      // Above mosquitto.conf's max_packet_size (1 MiB) the broker would drop
      // the connection before the plugin could answer `too_large`.
      if (!parse_number(value, &c.max_payload) || c.max_payload < 256 ||
          c.max_payload > 1000 * 1000)
        return bad(key, "must be 256..1000000 bytes");
    } else if (key == "sync_writes") {
      if (value != "true" && value != "false") return bad(key, "must be true or false");
      c.sync_writes = value == "true";
    } else if (key == "archive_min_free_mb") {
      if (!parse_number(value, &c.archive_min_free_mb) || c.archive_min_free_mb > 1048576)
        return bad(key, "must be 0..1048576 MiB");
    } else if (key == "rate_limit_msgs") {
      if (!parse_number(value, &c.rate_msgs) || c.rate_msgs < 0) return bad(key, "must be >= 0");
    } else if (key == "rate_limit_burst") {
      if (!parse_number(value, &c.rate_burst) || c.rate_burst < 1) return bad(key, "must be >= 1");
    } else if (key == "rate_limit_typing") {
      if (!parse_number(value, &c.rate_typing) || c.rate_typing < 0)
        return bad(key, "must be >= 0");
    } else if (key == "rate_limit_typing_burst") {
      if (!parse_number(value, &c.rate_typing_burst) || c.rate_typing_burst < 1)
        return bad(key, "must be >= 1");
    } else if (key == "rate_limit_receipts") {
      if (!parse_number(value, &c.rate_receipts) || c.rate_receipts < 0)
        return bad(key, "must be >= 0");
    } else if (key == "rate_limit_receipts_burst") {
      if (!parse_number(value, &c.rate_receipts_burst) || c.rate_receipts_burst < 1)
        return bad(key, "must be >= 1");
    } else if (key == "max_group_members") {
      if (!parse_number(value, &c.max_group_members) || c.max_group_members < 2 ||
          c.max_group_members > 100000)
        return bad(key, "must be 2..100000");
    } else if (key == "group_fanout_bytes") {
      if (!parse_number(value, &c.group_fanout_bytes) || c.group_fanout_bytes < 65536)
        return bad(key, "must be at least 65536");
    } else if (key == "oidc_issuer") {
      c.oidc.issuer = value;
    } else if (key == "oidc_audience") {
      c.oidc.audience = value;
    } else if (key == "oidc_jwks_file") {
      c.oidc_jwks_file = value;
    } else if (key == "oidc_user_claim" || key == "oidc_roles_claim") {
      if (!oidc::is_valid_claim_path(value)) {
        return bad(key, "must be a claim name or a dotted path (a.b.c)");
      }
      (key == "oidc_user_claim" ? c.oidc.user_claim : c.oidc.roles_claim) = value;
    } else if (key == "admins") {
      c.admins.clear();
      for (std::string_view item : settings::split_list(value)) {
        if (!is_valid_user_id(item) || item.substr(0, 4) == "svc.") {
          return bad(key, "must be user ids matching ^[a-z0-9][a-z0-9_.-]{0,31}$, not svc.*");
        }
        if (std::find(c.admins.begin(), c.admins.end(), item) == c.admins.end()) {
          c.admins.emplace_back(item);
        }
      }
    } else if (key == "node_id") {
      if (!parse_number(value, &c.node_id) || c.node_id < 0 || c.node_id > 255)
        return bad(key, "must be 0..255");
    } else {
      return bad(key, "unknown option");
    }
  }
  if (c.data_dir.empty()) return bad("data_dir", "is required");
  if (c.oidc.enabled()) {
    if (c.oidc.issuer == c.issuer) return bad("oidc_issuer", "must differ from issuer");
    if (c.oidc.audience.empty()) return bad("oidc_audience", "is required with oidc_issuer");
    if (c.oidc_jwks_file.empty()) return bad("oidc_jwks_file", "is required with oidc_issuer");
  } else if (!c.oidc.audience.empty() || !c.oidc_jwks_file.empty()) {
    return bad("oidc_issuer", "is required with oidc_audience and oidc_jwks_file");
  }
  if (c.archive_path.empty()) c.archive_path = c.data_dir + "/archive";
  if (c.jwks_file.empty()) c.jwks_file = c.data_dir + "/keys/jwks.json";
  return c;
}

}  // namespace chat::broker
