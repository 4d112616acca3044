// chat-api's configuration: one struct, parsed once from the environment at
// start, immutable afterwards (CONTRACT §1).
//
// Every field below names its variable and its default. An empty variable is
// treated as unset. A bad value is a start-up error whose message is one line
// naming the variable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chat/api/push_config.h"
#include "chat/api/push_settings.h"
#include "chat/api/rate_limits.h"
#include "chat/common/oidc.h"
#include "chat/common/settings.h"
#include "chat/common/status.h"

namespace chat::api {

enum class SignupPolicy {
  kOpen,    // anyone may create an account
  kClosed,  // only a bearer token with role admin may create accounts
};

struct Config {
  // CHAT_BIND. Default: "127.0.0.1". The HTTP listen address.
  std::string bind = "127.0.0.1";
  // CHAT_HTTP_PORT. Default: 8080. 0 picks a free port (logged at start).
  int http_port = 8080;
  // CHAT_MQTT_PORT. Default: 1883. chat-api reaches the broker at 127.0.0.1 on it.
  int mqtt_port = 1883;
  // CHAT_DATA_DIR. Default: "var" (relative to the current directory).
  std::string data_dir = "var";
  // CHAT_ADMINS. Default: none. Comma-separated user ids with the admin role.
  std::vector<std::string> admins;
  // CHAT_ADMIN_PASSWORD. Default: empty (a random password is printed once
  // for each admin account created). At least 8 characters when set.
  std::string admin_password;
  // CHAT_SIGNUP. Default: open. "open" or "closed".
  SignupPolicy signup = SignupPolicy::kOpen;
  // CHAT_TOKEN_TTL. Default: 3600. Access-token lifetime in seconds, 1-86400.
  int64_t token_ttl_s = 3600;
  // CHAT_JWT_LEEWAY. Default: 5. Seconds of clock skew allowed for exp/nbf, 0-30.
  int64_t jwt_leeway_s = 5;
  // CHAT_JWT_ISSUER. Default: "chat-platform". `iss` of the tokens we issue and accept.
  std::string jwt_issuer = "chat-platform";
  // CHAT_JWT_AUDIENCE. Default: "chat". `aud` of the tokens we issue and accept.
  std::string jwt_audience = "chat";
  // An external OAuth 2.0 / OIDC provider trusted next to the embedded issuer
  // (docs/oidc.md). Default: none.
  // CHAT_OIDC_ISSUER (enables it; must differ from CHAT_JWT_ISSUER),
  // CHAT_OIDC_AUDIENCE (required with it), CHAT_OIDC_USER_CLAIM (default
  // preferred_username), CHAT_OIDC_ROLES_CLAIM (default realm_access.roles, a
  // dotted path). The claims: dotted paths of [A-Za-z0-9_:/-] segments.
  oidc::Provider oidc;
  // CHAT_OIDC_JWKS. Required with CHAT_OIDC_ISSUER: the provider's JWKS file
  // (RS256/ES256 keys), read at start and again on SIGHUP.
  std::string oidc_jwks;

  // CHAT_REFRESH_TTL. Default: 2592000 (30 days). Refresh-token lifetime in
  // seconds, 60 to 31536000.
  int64_t refresh_ttl_s = 30 * 24 * 3600;
  // CHAT_HTTP_THREADS. Default: 64. Size of the HTTP worker pool, 1-4096.
  // cpp-httplib holds one pool thread per keep-alive connection, so this is
  // also the number of clients served at the same time.
  int http_threads = 64;
  // CHAT_METRICS_TOKEN. Default: none (only admin access tokens read
  // /metrics). A static bearer token that may read GET /metrics: 16 to 4096
  // printable ASCII characters, no spaces. Compared in constant time.
  std::string metrics_token;
  // Abuse limits (rate_limits.h has each default): CHAT_LOGIN_RATE (0-100000
  // per second per IP, 0 = off), CHAT_LOGIN_BURST (1-1000000),
  // CHAT_LOGIN_LOCKOUT_AFTER (0-1000 failures, 0 = off),
  // CHAT_LOGIN_LOCKOUT_SECONDS (1-86400), CHAT_LOGIN_LOCKOUT_MAX (seconds, from
  // CHAT_LOGIN_LOCKOUT_SECONDS to 86400), CHAT_RATE_LIMIT_REST (0-1000000 per
  // second per user, 0 = off), CHAT_RATE_LIMIT_REST_BURST (1-1000000).
  RateLimitOptions rate_limits;

  // CHAT_WEB_DIR. Default: empty = `<build>/web`, the `web` folder next to the
  // chat-api binary's `bin/` (where the chat-web target puts the built client).
  // The directory served at `/`; when it has no index.html, `/` answers 404.
  std::string web_dir;
  // CHAT_BACKUP_DIR. Default: empty (a backup may go to any absolute path
  // outside the data dir's own directories). Set: an absolute path; POST
  // /v1/admin/backups only writes inside it (docs/operations.md, "Backup and
  // restore").
  std::string backup_dir;
  // CHAT_WS_PORT. Default: 8083. The bridge's MQTT-over-WebSocket port, named
  // in the URL GET /config.json gives the browser client.
  int ws_port = 8083;
  // CHAT_WS_PUBLIC_URL. Default: empty (derived from each request's Host
  // header, see web.h). The bridge URL browsers use, when they reach it by
  // another name or port (a reverse proxy): ws:// or wss://, at most 2048
  // characters of [A-Za-z0-9._~:/?#@!$&()*+=%[]-] (no quotes, commas, semicolons
  // or spaces: it is also written into the Content-Security-Policy header).
  std::string ws_public_url;
  // wss:// instead of ws:// in the derived URL. Default: false; true when
  // TLS is on (tls_cert set: the bridge then serves wss).
  bool ws_tls = false;

  // CHAT_TLS_CERT, CHAT_TLS_KEY. Default: none. PEM certificate (chain) and
  // private key: with both, chat-api serves https (TLS 1.2+, kTlsCiphers for
  // TLS 1.2); both or neither. CHAT_TLS=dev without them means
  // <data_dir>/tls/server.pem and server.key (scripts/tls-dev creates them).
  std::string tls_cert;
  std::string tls_key;
  // CHAT_TLS_CA. Default: none. Certificates that complete the chain sent to
  // clients (ignored without TLS). No client certificates are asked for.
  std::string tls_ca;
  bool tls() const { return !tls_cert.empty(); }

  // Push providers: CHAT_FCM_*, CHAT_APNS_*, CHAT_PUSH_CA (push_config.h has
  // each default). Default: none configured.
  PushProviderConfig push_providers;
  // The push pipeline: CHAT_PUSH_WORKERS, CHAT_PUSH_MAX_DEVICES,
  // CHAT_PUSH_PREVIEW, CHAT_PUSH_MAX_ATTEMPTS, CHAT_PUSH_MAX_AGE
  // (push_settings.h has each default).
  PushSettings push;

  // Largest request body accepted (not configurable yet). Default: 64 KiB.
  size_t max_body_bytes = 64 * 1024;

  // Media (docs/media.md). CHAT_MEDIA_MAX_BYTES. Default: 67108864 (64 MiB).
  // Largest upload to POST /v1/media, 1 to 17179869184 (16 GiB); larger is 413.
  uint64_t media_max_bytes = 64ull * 1024 * 1024;
  // CHAT_MEDIA_URL_TTL. Default: 604800 (7 days). Lifetime in seconds of the
  // signed media URLs chat-api hands out, 60 to 31536000.
  int64_t media_url_ttl_s = 7 * 24 * 3600;
  // CHAT_MEDIA_MIN_FREE_MB. Default: 1024. Uploads are refused (507) when the
  // media directory's file system would have less free space than this; 0
  // turns the floor off. 0 to 1073741824 (1 PiB).
  int64_t media_min_free_mb = 1024;

  // The key directory of end-to-end encryption (docs/e2e.md).
  // CHAT_KEY_CLAIM_RATE. Default: 30. Key claims (GET /v1/keys/{user}) per
  // minute per claimer and target user (10 times that per target user over
  // all claimers), 0 to 1000000; 0 turns the limits off.
  int64_t key_claim_rate = 30;
  // CHAT_KEY_CLAIM_BURST. Default: 60. The claims allowed at once, 1 to 1000000.
  int64_t key_claim_burst = 60;
  // CHAT_KEY_DEVICE_CHANGES. Default: 20. Devices a user may add to or
  // remove from the key directory per hour (and at once), 0 to 1000000; 0
  // turns the limit off. Account deletion is not limited.
  int64_t key_device_changes = 20;

  bool is_admin(std::string_view user) const;

  // Data layout under data_dir.
  std::string keys_dir() const;                // keys/
  std::string issuer_key_path() const;         // keys/issuer.pem (private, 0600)
  std::string jwks_path() const;               // keys/jwks.json (read by the broker)
  std::string api_dir() const;                 // api/ (chat-api's own state)
  std::string accounts_path() const;           // api/accounts
  std::string archive_path() const;            // archive (the broker's primary)
  std::string archive_secondary_path() const;  // api/archive-secondary
  std::string media_dir() const;               // media/ (blobs, thumbnails, uploads in progress)
  std::string media_db_path() const;           // api/media (media metadata, RocksDB)
  std::string media_key_path() const;          // api/media-url.key (signs media URLs, 0600)
  std::string keys_db_path() const;            // api/e2e-keys (the key directory, RocksDB)

  // Reads the CHAT_* variables from the process environment.
  static Result<Config> from_env();
  // Same, from any lookup (tests). The lookup returns nullopt for unset names.
  using Lookup = settings::Lookup;
  static Result<Config> from_lookup(const Lookup& lookup);
};

}  // namespace chat::api
