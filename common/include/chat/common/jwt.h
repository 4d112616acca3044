// JOSE for the platform: compact JWS verification (RFC 7515), JWT claim checks
// (RFC 7519), JWK/JWKS parsing (RFC 7517) and the embedded issuer's ES256 signer.
//
// Used by the broker plugin (every MQTT CONNECT) and by chat-api (every REST
// call), so verification never does I/O: keys are parsed once into a KeySet.
//
// Security rules (RFC 8725):
// - The algorithm is pinned per key: a key's `alg` comes from the JWKS (or from
//   its type when the JWKS omits it) and a token whose header `alg` differs is
//   refused. `none` is always refused.
// - The header must name a known `kid`; `jwk`, `jku`, `x5u`, `x5c` and `crit`
//   headers are refused.
// - Keys whose `use` is not `sig` or whose `key_ops` lack `verify` are not used.
// - HS256 keys are accepted only when the caller allows them explicitly.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "chat/common/status.h"

namespace chat::jwt {

// Base64url without padding (RFC 7515 §2). decode() is strict: padding,
// whitespace or characters outside the alphabet make it fail.
std::string base64url_encode(std::string_view bytes);
Result<std::string> base64url_decode(std::string_view text);

enum class Alg { kHS256, kRS256, kES256 };
const char* alg_name(Alg alg);

// One verification key. Immutable once built; cheap to copy (shared key).
struct Key {
  std::string kid;
  Alg alg = Alg::kES256;
  std::shared_ptr<void> pkey;  // EVP_PKEY*, owned (freed with EVP_PKEY_free)
  std::string hmac_secret;     // HS256 only
};

struct KeySetOptions {
  bool allow_hs256 = false;  // Default: false. Symmetric keys only when configured.
};

// A set of verification keys looked up by `kid`. Thread-safe for concurrent
// reads once built.
class KeySet {
 public:
  // Parses a JWKS document ({"keys":[...]}) or a single JWK object. Keys of
  // unsupported types or algorithms are skipped; a document with no usable
  // key is an error.
  static Result<KeySet> from_jwks(std::string_view json, const KeySetOptions& options = {});

  void add(Key key);
  const Key* find(std::string_view kid) const;
  size_t size() const { return keys_.size(); }
  bool empty() const { return keys_.empty(); }

 private:
  std::vector<Key> keys_;
};

// Verifies a compact JWS against the key named by its `kid` and returns the
// decoded payload bytes. No claim checks.
Result<std::string> verify_jws(std::string_view compact, const KeySet& keys);

struct Claims {
  std::string sub;
  std::string iss;
  std::string jti;
  std::vector<std::string> aud;
  std::vector<std::string> roles;
  int64_t iat = 0;
  int64_t exp = 0;
  int64_t nbf = 0;  // 0 when absent
  nlohmann::json raw;

  bool has_role(std::string_view role) const;
};

// The largest leeway VerifyOptions::leeway_s may grant; more is clamped to it.
inline constexpr int64_t kMaxLeewayS = 30;

// verify_jwt's time rules, for callers that re-check a token they verified
// earlier. The leeway is clamped to [0, kMaxLeewayS]; no overflow for any input.
// Expired: now > exp + leeway.
bool is_expired(int64_t exp, int64_t leeway_s, int64_t now_s);
// Not yet valid: now + leeway < nbf.
bool is_not_yet_valid(int64_t nbf, int64_t leeway_s, int64_t now_s);

struct VerifyOptions {
  std::string issuer;                 // required `iss`
  std::string audience;               // required member of `aud`
  int64_t leeway_s = 5;               // Default: 5. Applied to exp and nbf, at most 30.
  std::string roles_claim = "roles";  // Default: "roles".
};

// Verifies signature and claims: `exp` required and in the future (minus
// leeway), `nbf` if present not in the future (plus leeway), `iss` equal,
// `aud` containing the audience, `sub` a non-empty string.
Result<Claims> verify_jwt(std::string_view token, const KeySet& keys, const VerifyOptions& options,
                          int64_t now_s);

// The embedded issuer's signing key (ES256, P-256). Thread-safe for signing.
class Signer {
 public:
  // Loads the PEM private key at `pem_path`, or creates it (mode 0600) and
  // writes the matching public JWKS to `jwks_path` when absent.
  static Result<Signer> load_or_create(const std::string& pem_path, const std::string& jwks_path);
  static Result<Signer> from_pem(std::string_view pem, std::string kid);

  // Signs the claims as a compact JWS with header {"alg":"ES256","typ":"JWT","kid":...}.
  std::string sign(const nlohmann::json& claims) const;
  const std::string& kid() const { return kid_; }
  // {"keys":[{public JWK with kid, alg ES256, use sig}]}
  std::string public_jwks() const;

 private:
  std::shared_ptr<void> pkey_;
  std::string kid_;
};

}  // namespace chat::jwt
