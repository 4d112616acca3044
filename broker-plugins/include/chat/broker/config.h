// The broker plugin's configuration: `plugin_opt_*` lines of mosquitto.conf.
// Parsed once at plugin init; immutable afterwards.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "chat/common/oidc.h"
#include "chat/common/status.h"

namespace chat::broker {

struct PluginConfig {
  std::string data_dir;                  // plugin_opt_data_dir. Required.
  std::string archive_path;              // plugin_opt_archive_dir. Default: <data_dir>/archive
  std::string jwks_file;                 // plugin_opt_jwks_file. Default: <data_dir>/keys/jwks.json
  std::string issuer = "chat-platform";  // plugin_opt_issuer. Default: chat-platform
  std::string audience = "chat";         // plugin_opt_audience. Default: chat
  int64_t leeway_s = 5;                  // plugin_opt_jwt_leeway. Default: 5, 0..30
  size_t max_payload = 64 * 1024;        // plugin_opt_max_payload. Default: 65536
  bool sync_writes = false;              // plugin_opt_sync_writes. Default: false
  // plugin_opt_archive_min_free_mb (CHAT_ARCHIVE_MIN_FREE_MB): free-space
  // reserve of the archive's file system, 0..1048576 MiB; 0 = off.
  // Default: 256 (docs/operations.md, "Disk full").
  uint64_t archive_min_free_mb = 256;
  double rate_msgs = 20;                 // plugin_opt_rate_limit_msgs. Default: 20/s; 0 = off
  double rate_burst = 100;               // plugin_opt_rate_limit_burst. Default: 100
  double rate_typing = 5;                // plugin_opt_rate_limit_typing. Default: 5/s; 0 = off
  double rate_typing_burst = 20;         // plugin_opt_rate_limit_typing_burst. Default: 20
  double rate_receipts = 50;             // plugin_opt_rate_limit_receipts. Default: 50/s; 0 = off
  double rate_receipts_burst = 200;      // plugin_opt_rate_limit_receipts_burst. Default: 200
  int node_id = 0;                       // plugin_opt_node_id. Default: 0 (0..255)
  size_t max_group_members = 1024;       // plugin_opt_max_group_members. Default: 1024
  size_t group_fanout_bytes = 16 << 20;  // plugin_opt_group_fanout_bytes. Default: 16 MiB
  // An external OIDC provider (docs/oidc.md): plugin_opt_oidc_issuer (enables
  // it; must differ from issuer), plugin_opt_oidc_audience and
  // plugin_opt_oidc_jwks_file (both required with it), plugin_opt_oidc_user_claim
  // (default preferred_username), plugin_opt_oidc_roles_claim (default
  // realm_access.roles). Default: none.
  oidc::Provider oidc;
  std::string oidc_jwks_file;
  // plugin_opt_admins: CHAT_ADMINS, comma-separated user ids (not svc.*).
  // An external token never provisions these at CONNECT: chat-api creates
  // their accounts (user.add). Default: none.
  std::vector<std::string> admins;

  // Options as (key, value) with the `plugin_opt_` prefix already removed by
  // Mosquitto. Unknown keys and bad values are errors naming the key.
  static Result<PluginConfig> from_options(
      const std::vector<std::pair<std::string, std::string>>& options);
};

}  // namespace chat::broker
