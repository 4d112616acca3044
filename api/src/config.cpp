#include "chat/api/config.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <filesystem>

#include "chat/common/ids.h"
#include "chat/common/settings.h"

namespace chat::api {
namespace {

using settings::bad;
using settings::read_int;

Status read_string(const Config::Lookup& lookup, const char* name, std::string* out) {
  auto v = lookup(name);
  if (v) *out = *v;
  return Status::ok();
}

// CHAT_WS_PUBLIC_URL: ws[s]://<something>, from a character set that cannot
// break out of the Content-Security-Policy header or the JSON it goes into.
bool is_valid_ws_url(std::string_view url) {
  std::string_view rest;
  if (url.substr(0, 5) == "ws://")
    rest = url.substr(5);
  else if (url.substr(0, 6) == "wss://")
    rest = url.substr(6);
  else
    return false;
  if (rest.empty() || rest.front() == '/' || url.size() > 2048) return false;
  constexpr std::string_view kAllowed = "._~:/?#@!$&()*+=%[]-";
  for (char c : rest) {
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && kAllowed.find(c) == std::string_view::npos) return false;
  }
  return true;
}

std::string join(const std::string& dir, const char* leaf) {
  return (std::filesystem::path(dir) / leaf).string();
}

}  // namespace

bool Config::is_admin(std::string_view user) const {
  return std::find(admins.begin(), admins.end(), user) != admins.end();
}

std::string Config::keys_dir() const { return join(data_dir, "keys"); }
std::string Config::issuer_key_path() const { return join(keys_dir(), "issuer.pem"); }
std::string Config::jwks_path() const { return join(keys_dir(), "jwks.json"); }
std::string Config::api_dir() const { return join(data_dir, "api"); }
std::string Config::accounts_path() const { return join(api_dir(), "accounts"); }
std::string Config::archive_path() const { return join(data_dir, "archive"); }
std::string Config::archive_secondary_path() const { return join(api_dir(), "archive-secondary"); }
std::string Config::media_dir() const { return join(data_dir, "media"); }
std::string Config::media_db_path() const { return join(api_dir(), "media"); }
std::string Config::media_key_path() const { return join(api_dir(), "media-url.key"); }
std::string Config::keys_db_path() const { return join(api_dir(), "e2e-keys"); }

namespace {

// CHAT_LOGIN_* and CHAT_RATE_LIMIT_REST*: see Config::rate_limits.
Status read_rate_limits(const settings::Lookup& lookup, RateLimitOptions* o) {
  int64_t n = static_cast<int64_t>(o->login_rate);
  if (Status s = read_int(lookup, "CHAT_LOGIN_RATE", 0, 100000, &n); !s.is_ok()) return s;
  o->login_rate = static_cast<double>(n);
  n = static_cast<int64_t>(o->login_burst);
  if (Status s = read_int(lookup, "CHAT_LOGIN_BURST", 1, 1000000, &n); !s.is_ok()) return s;
  o->login_burst = static_cast<double>(n);
  if (Status s = read_int(lookup, "CHAT_LOGIN_LOCKOUT_AFTER", 0, 1000, &o->lockout_after);
      !s.is_ok()) {
    return s;
  }
  n = o->lockout_base_ms / 1000;
  if (Status s = read_int(lookup, "CHAT_LOGIN_LOCKOUT_SECONDS", 1, 86400, &n); !s.is_ok()) return s;
  o->lockout_base_ms = n * 1000;
  n = o->lockout_max_ms / 1000;
  if (Status s = read_int(lookup, "CHAT_LOGIN_LOCKOUT_MAX", o->lockout_base_ms / 1000, 86400, &n);
      !s.is_ok()) {
    return s;
  }
  o->lockout_max_ms = n * 1000;
  n = static_cast<int64_t>(o->rest_rate);
  if (Status s = read_int(lookup, "CHAT_RATE_LIMIT_REST", 0, 1000000, &n); !s.is_ok()) return s;
  o->rest_rate = static_cast<double>(n);
  n = static_cast<int64_t>(o->rest_burst);
  if (Status s = read_int(lookup, "CHAT_RATE_LIMIT_REST_BURST", 1, 1000000, &n); !s.is_ok()) {
    return s;
  }
  o->rest_burst = static_cast<double>(n);
  return Status::ok();
}

}  // namespace

Result<Config> Config::from_env() { return from_lookup(settings::environment()); }

Result<Config> Config::from_lookup(const Lookup& raw_lookup) {
  // An empty variable counts as unset, so `CHAT_ADMINS= make run` means "none".
  const Lookup lookup = settings::empty_as_unset(raw_lookup);

  Config c;
  int64_t n = 0;

  if (Status s = read_string(lookup, "CHAT_BIND", &c.bind); !s.is_ok()) return s;

  n = c.http_port;
  if (Status s = read_int(lookup, "CHAT_HTTP_PORT", 0, 65535, &n); !s.is_ok()) return s;
  c.http_port = static_cast<int>(n);

  n = c.mqtt_port;
  if (Status s = read_int(lookup, "CHAT_MQTT_PORT", 1, 65535, &n); !s.is_ok()) return s;
  c.mqtt_port = static_cast<int>(n);

  if (Status s = read_string(lookup, "CHAT_DATA_DIR", &c.data_dir); !s.is_ok()) return s;

  if (auto v = lookup("CHAT_ADMINS")) {
    for (std::string_view item : settings::split_list(*v)) {
      if (!is_valid_user_id(item) || item.substr(0, 4) == "svc.") {
        return bad("CHAT_ADMINS", item, "user ids matching ^[a-z0-9][a-z0-9_.-]{0,31}$, not svc.*");
      }
      if (!c.is_admin(item)) c.admins.emplace_back(item);
    }
  }

  if (auto v = lookup("CHAT_ADMIN_PASSWORD")) {
    if (v->size() < 8 || v->size() > 1024) {
      return invalid_argument("CHAT_ADMIN_PASSWORD: expected 8 to 1024 characters");
    }
    c.admin_password = *v;
  }

  if (auto v = lookup("CHAT_SIGNUP")) {
    if (*v == "open")
      c.signup = SignupPolicy::kOpen;
    else if (*v == "closed")
      c.signup = SignupPolicy::kClosed;
    else
      return bad("CHAT_SIGNUP", *v, "'open' or 'closed'");
  }

  if (Status s = read_int(lookup, "CHAT_TOKEN_TTL", 1, 86400, &c.token_ttl_s); !s.is_ok()) return s;
  if (Status s = read_int(lookup, "CHAT_JWT_LEEWAY", 0, 30, &c.jwt_leeway_s); !s.is_ok()) return s;
  if (Status s = read_string(lookup, "CHAT_JWT_ISSUER", &c.jwt_issuer); !s.is_ok()) return s;
  if (Status s = read_string(lookup, "CHAT_JWT_AUDIENCE", &c.jwt_audience); !s.is_ok()) return s;
  if (auto v = lookup("CHAT_OIDC_ISSUER")) c.oidc.issuer = *v;
  if (auto v = lookup("CHAT_OIDC_AUDIENCE")) c.oidc.audience = *v;
  if (auto v = lookup("CHAT_OIDC_JWKS")) c.oidc_jwks = *v;
  for (auto [name, out] : {std::pair{"CHAT_OIDC_USER_CLAIM", &c.oidc.user_claim},
                           std::pair{"CHAT_OIDC_ROLES_CLAIM", &c.oidc.roles_claim}}) {
    auto v = lookup(name);
    if (!v) continue;
    if (!oidc::is_valid_claim_path(*v)) {
      return bad(name, *v, "a claim name or a dotted path (a.b.c) of [A-Za-z0-9_:/-]");
    }
    *out = *v;
  }
  if (c.oidc.enabled()) {
    if (c.oidc.issuer == c.jwt_issuer) {
      return invalid_argument("CHAT_OIDC_ISSUER: must differ from CHAT_JWT_ISSUER");
    }
    if (c.oidc.audience.empty()) {
      return invalid_argument("CHAT_OIDC_AUDIENCE: required with CHAT_OIDC_ISSUER");
    }
    if (c.oidc_jwks.empty()) {
      return invalid_argument("CHAT_OIDC_JWKS: required with CHAT_OIDC_ISSUER");
    }
  } else if (!c.oidc.audience.empty() || !c.oidc_jwks.empty()) {
    return invalid_argument(
        "CHAT_OIDC_ISSUER: required with CHAT_OIDC_AUDIENCE and CHAT_OIDC_JWKS");
  }
  if (Status s = read_int(lookup, "CHAT_REFRESH_TTL", 60, 365 * 24 * 3600, &c.refresh_ttl_s);
      !s.is_ok()) {
    return s;
  }

  n = c.http_threads;
  if (Status s = read_int(lookup, "CHAT_HTTP_THREADS", 1, 4096, &n); !s.is_ok()) return s;
  c.http_threads = static_cast<int>(n);

  if (auto v = lookup("CHAT_METRICS_TOKEN")) {
    bool printable =
        std::all_of(v->begin(), v->end(), [](char ch) { return ch > ' ' && ch < 127; });
    if (v->size() < 16 || v->size() > 4096 || !printable) {
      return invalid_argument(
          "CHAT_METRICS_TOKEN: expected 16 to 4096 printable ASCII characters without spaces");
    }
    c.metrics_token = *v;
  }

  if (Status s = read_rate_limits(lookup, &c.rate_limits); !s.is_ok()) return s;

  if (Status s = read_string(lookup, "CHAT_WEB_DIR", &c.web_dir); !s.is_ok()) return s;

  if (auto v = lookup("CHAT_BACKUP_DIR")) {
    if (v->empty() || v->front() != '/' || v->size() > 4096 || v->find('\0') != std::string::npos) {
      return bad("CHAT_BACKUP_DIR", *v, "an absolute path");
    }
    c.backup_dir = *v;
  }

  n = c.ws_port;
  if (Status s = read_int(lookup, "CHAT_WS_PORT", 1, 65535, &n); !s.is_ok()) return s;
  c.ws_port = static_cast<int>(n);

  if (auto v = lookup("CHAT_WS_PUBLIC_URL")) {
    if (!is_valid_ws_url(*v)) {
      return bad("CHAT_WS_PUBLIC_URL", *v,
                 "a ws:// or wss:// URL of at most 2048 characters without quotes, commas, "
                 "semicolons or spaces");
    }
    c.ws_public_url = *v;
  }

  // TLS: https here, and wss:// for the browser client (the bridge serves wss
  // with the same variables). CHAT_TLS=dev uses the certificate scripts/tls-dev
  // made under the data dir (scripts/run exports its paths as CHAT_TLS_CERT/KEY).
  bool dev_tls = false;
  if (auto v = lookup("CHAT_TLS")) {
    if (*v != "dev") return bad("CHAT_TLS", *v, "'dev' or unset");
    dev_tls = true;
  }
  if (auto v = lookup("CHAT_TLS_CERT")) c.tls_cert = *v;
  if (auto v = lookup("CHAT_TLS_KEY")) c.tls_key = *v;
  if (c.tls_cert.empty() != c.tls_key.empty()) {
    return invalid_argument(
        c.tls_cert.empty() ? "CHAT_TLS_CERT: must be set when CHAT_TLS_KEY is (both or neither)"
                           : "CHAT_TLS_KEY: must be set when CHAT_TLS_CERT is (both or neither)");
  }
  if (dev_tls && c.tls_cert.empty()) {
    c.tls_cert = join(join(c.data_dir, "tls"), "server.pem");
    c.tls_key = join(join(c.data_dir, "tls"), "server.key");
  }
  if (c.tls()) {
    if (auto v = lookup("CHAT_TLS_CA")) c.tls_ca = *v;
  }
  c.ws_tls = c.tls();

  n = static_cast<int64_t>(c.media_max_bytes);
  if (Status s = read_int(lookup, "CHAT_MEDIA_MAX_BYTES", 1, int64_t{16} << 30, &n); !s.is_ok()) {
    return s;
  }
  c.media_max_bytes = static_cast<uint64_t>(n);
  if (Status s = read_int(lookup, "CHAT_MEDIA_URL_TTL", 60, 365 * 24 * 3600, &c.media_url_ttl_s);
      !s.is_ok()) {
    return s;
  }
  if (Status s =
          read_int(lookup, "CHAT_MEDIA_MIN_FREE_MB", 0, int64_t{1} << 30, &c.media_min_free_mb);
      !s.is_ok()) {
    return s;
  }

  if (Status s = read_int(lookup, "CHAT_KEY_CLAIM_RATE", 0, 1000000, &c.key_claim_rate);
      !s.is_ok()) {
    return s;
  }
  if (Status s = read_int(lookup, "CHAT_KEY_CLAIM_BURST", 1, 1000000, &c.key_claim_burst);
      !s.is_ok()) {
    return s;
  }
  if (Status s = read_int(lookup, "CHAT_KEY_DEVICE_CHANGES", 0, 1000000, &c.key_device_changes);
      !s.is_ok()) {
    return s;
  }

  if (Status s = read_push_provider_config(lookup, &c.push_providers); !s.is_ok()) return s;
  if (Status s = read_push_settings(lookup, &c.push); !s.is_ok()) return s;

  return c;
}

}  // namespace chat::api
