// The embedded OAuth 2.0 issuer's token logic: minting access tokens (ES256
// JWTs signed with the key under CHAT_DATA_DIR/keys) and verifying bearer
// tokens against that same key. Refresh tokens are opaque random strings and
// live in the AccountStore (see service.h).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "chat/common/clock.h"
#include "chat/common/jwt.h"
#include "chat/common/oidc.h"
#include "chat/common/status.h"

namespace chat::api {

struct TokenOptions {
  std::string issuer;    // `iss` written and required
  std::string audience;  // `aud` written and required
  int64_t leeway_s = 5;  // Default: 5. For exp/nbf when verifying.
};

// What an access token says about its bearer.
struct Principal {
  std::string user;
  std::vector<std::string> roles;
  std::string jti;
  int64_t exp = 0;
  // Verified with the external provider's keys (docs/oidc.md), not ours.
  bool external = false;
  // With `external`: the provider's `sub`, which the account must be bound to.
  std::string external_sub;

  bool has_role(std::string_view role) const;
};

// Thread-safe once built.
class TokenIssuer {
 public:
  // Builds the verification key set from the signer's public JWKS.
  static Result<std::unique_ptr<TokenIssuer>> create(jwt::Signer signer, TokenOptions options,
                                                     const Clock& clock);

  // A signed JWT: sub, iat, exp = now + ttl_s, iss, aud, jti (random, also
  // stored in *jti when given), roles.
  std::string mint(std::string_view subject, const std::vector<std::string>& roles, int64_t ttl_s,
                   std::string* jti = nullptr) const;
  // Signature and claims checked; kUnauthenticated with the reason otherwise.
  // A token verified once is remembered (by its exact bytes) until it
  // expires, so a client's requests after the first cost no signature check;
  // exp and nbf are checked against the clock on every call.
  // A token whose `iss` is the external provider's (set_external) is verified
  // with the provider's keys only, any other with ours only.
  Result<Principal> verify(std::string_view token) const;

  // Trusts an external OAuth 2.0 / OIDC provider next to the embedded issuer.
  // `admins` (CHAT_ADMINS) bound the admin role its tokens can carry. Call
  // before serving.
  void set_external(oidc::Provider provider, jwt::KeySet keys, std::vector<std::string> admins);
  // Key rotation: later calls verify with these keys only, and every
  // remembered token is forgotten (one signed by a removed key must fail).
  void replace_external_keys(jwt::KeySet keys);

  const jwt::Signer& signer() const { return signer_; }
  const Clock& clock() const { return clock_; }

 private:
  TokenIssuer(jwt::Signer signer, jwt::KeySet keys, TokenOptions options, const Clock& clock);

  struct Verified {
    Principal principal;
    int64_t nbf = 0;
  };
  // exp/nbf with the leeway, exactly as jwt::verify_jwt decides them.
  bool in_time(int64_t exp, int64_t nbf, int64_t now_s) const;
  Result<Verified> verify_uncached(std::string_view token,
                                   const std::shared_ptr<const jwt::KeySet>& external_keys) const;

  jwt::Signer signer_;
  jwt::KeySet keys_;
  TokenOptions options_;
  const Clock& clock_;
  mutable std::mutex verified_mu_;
  mutable std::unordered_map<std::string, Verified> verified_;  // guarded by verified_mu_
  oidc::Provider external_;                           // set before serving; then immutable
  std::vector<std::string> external_admins_;          // idem
  std::shared_ptr<const jwt::KeySet> external_keys_;  // guarded by verified_mu_
  uint64_t key_generation_ = 0;                       // guarded by verified_mu_
};

}  // namespace chat::api
