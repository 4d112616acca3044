// Trusting an external OAuth 2.0 / OIDC provider (CONTRACT §2): which of the
// two trust domains (the embedded issuer, or the configured provider) verifies
// a token, and how a verified provider token becomes a platform identity.
//
// Shared by the broker plugin (MQTT CONNECT) and chat-api (REST). Pure logic:
// the callers read the provider's JWKS file and hand the parsed jwt::KeySet in,
// so verification never does I/O. Thread-safe (no state).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chat/common/jwt.h"
#include "chat/common/status.h"

namespace chat::oidc {

inline constexpr std::string_view kDefaultUserClaim = "preferred_username";
inline constexpr std::string_view kDefaultRolesClaim = "realm_access.roles";
// Account origin names (the broker's archive and chat-api's account store).
inline constexpr std::string_view kExternalOrigin = "external";
// The longest provider `sub` accepted (OIDC Core §2: at most 255 ASCII characters).
inline constexpr size_t kMaxSubjectBytes = 255;

// Whether `sub` can be the provider's subject: non-empty, at most
// kMaxSubjectBytes bytes, no NUL.
bool is_valid_subject(std::string_view sub);

// One external provider. Enabled when `issuer` is set.
struct Provider {
  std::string issuer;    // required `iss` (exact match)
  std::string audience;  // required member of `aud`
  // The claim that carries our user id. Default: preferred_username (Keycloak's
  // `sub` is a UUID, not a user id). Its value must be a user id of CONTRACT §2.
  std::string user_claim = std::string(kDefaultUserClaim);
  // Dotted path into nested objects to an array of strings. Default:
  // realm_access.roles. Absent: no roles.
  std::string roles_claim = std::string(kDefaultRolesClaim);

  bool enabled() const { return !issuer.empty(); }
};

// Whether `path` is a usable claim path: dot-separated, non-empty segments of
// at most 64 characters from [A-Za-z0-9_:/-], 8 segments at most.
bool is_valid_claim_path(std::string_view path);

// The `iss` of a compact JWS, read WITHOUT checking anything. Only for picking
// which trust domain verifies the token; that domain checks `iss` again.
std::optional<std::string> unverified_issuer(std::string_view token);

// What a verified provider token says.
struct ExternalIdentity {
  std::string user;  // from Provider::user_claim
  // The provider's `sub`: its stable identifier of the person, which never
  // passes to someone else (OIDC Core §5.7). An account is bound to it at
  // provisioning; a token with another `sub` is refused for that account.
  std::string subject;
  std::vector<std::string> provider_roles;  // from Provider::roles_claim
  jwt::Claims claims;                       // exp, nbf, jti, iss, aud, sub as verified
};

// Signature (RS256/ES256 key named by `kid` in `keys`), iss, aud, exp, nbf,
// then the sub, user and roles claims. kUnauthenticated with the reason
// otherwise: a `sub` that is not is_valid_subject(), a missing or non-string
// user claim, one that is not a user id or names a `svc.` service account,
// and a roles claim that is not an array of strings.
Result<ExternalIdentity> verify(std::string_view token, const jwt::KeySet& keys,
                                const Provider& provider, int64_t leeway_s, int64_t now_s);

// The platform roles an external identity gets: always "user"; "admin" only
// when the provider says "admin" AND the user is listed in CHAT_ADMINS
// (`listed_admin`); "service" never.
std::vector<std::string> granted_roles(const std::vector<std::string>& provider_roles,
                                       bool listed_admin);

// Parses a provider's JWKS document: RS256 and ES256 keys only (never HS256).
// kInvalidArgument when it is malformed or holds no usable key.
Result<jwt::KeySet> parse_jwks(std::string_view json);

// Reads the provider's JWKS file and parses it (parse_jwks). kInvalidArgument
// naming the file when it cannot be read or holds no usable key. chat-api and
// the broker plugin load CHAT_OIDC_JWKS with it, at start and on rotation.
Result<jwt::KeySet> load_jwks_file(const std::string& path);

// Whether a file was replaced (rename over it) or rewritten since it was last
// read, by its inode, size and modification time: how the broker plugin sees
// a rotated JWKS file without a signal. One stat() per changed() call.
class FileWatch {
 public:
  explicit FileWatch(std::string path) : path_(std::move(path)) {}
  // Remembers the file as it is now (call when reading it).
  void mark_read();
  // Whether it differs from the last mark_read() (a file that vanished or
  // appeared counts as changed).
  bool changed() const;
  const std::string& path() const { return path_; }

 private:
  struct Stamp {
    bool exists = false;
    uint64_t inode = 0;
    int64_t size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const Stamp&) const = default;
  };
  Stamp stamp() const;

  std::string path_;
  Stamp read_;
};

}  // namespace chat::oidc
