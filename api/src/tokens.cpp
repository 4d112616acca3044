#include "chat/api/tokens.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "chat/api/secrets.h"
#include "chat/common/ids.h"

namespace chat::api {

bool Principal::has_role(std::string_view role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

Result<std::unique_ptr<TokenIssuer>> TokenIssuer::create(jwt::Signer signer, TokenOptions options,
                                                         const Clock& clock) {
  auto keys = jwt::KeySet::from_jwks(signer.public_jwks());
  if (!keys) return internal_error("issuer public key: " + keys.status().message());
  return std::unique_ptr<TokenIssuer>(
      new TokenIssuer(std::move(signer), std::move(keys).value(), std::move(options), clock));
}

TokenIssuer::TokenIssuer(jwt::Signer signer, jwt::KeySet keys, TokenOptions options,
                         const Clock& clock)
    : signer_(std::move(signer)),
      keys_(std::move(keys)),
      options_(std::move(options)),
      clock_(clock) {}

std::string TokenIssuer::mint(std::string_view subject, const std::vector<std::string>& roles,
                              int64_t ttl_s, std::string* jti) const {
  int64_t now = clock_.now_s();
  std::string id = random_token(16);
  if (jti != nullptr) *jti = id;
  nlohmann::json claims = {
      {"sub", subject},           {"iat", now},
      {"exp", now + ttl_s},       {"iss", options_.issuer},
      {"aud", options_.audience}, {"jti", std::move(id)},
      {"roles", roles},
  };
  return signer_.sign(claims);
}

namespace {
// Remembered verified tokens (~1 KiB each with the map's overhead).
constexpr size_t kMaxVerifiedTokens = 20'000;
}  // namespace

bool TokenIssuer::in_time(int64_t exp, int64_t nbf, int64_t now_s) const {
  return !jwt::is_expired(exp, options_.leeway_s, now_s) &&
         !jwt::is_not_yet_valid(nbf, options_.leeway_s, now_s);
}

void TokenIssuer::set_external(oidc::Provider provider, jwt::KeySet keys,
                               std::vector<std::string> admins) {
  external_ = std::move(provider);
  external_admins_ = std::move(admins);
  replace_external_keys(std::move(keys));
}

void TokenIssuer::replace_external_keys(jwt::KeySet keys) {
  auto shared = std::make_shared<const jwt::KeySet>(std::move(keys));
  std::lock_guard lock(verified_mu_);
  external_keys_ = std::move(shared);
  ++key_generation_;
  verified_.clear();
}

Result<TokenIssuer::Verified> TokenIssuer::verify_uncached(
    std::string_view token, const std::shared_ptr<const jwt::KeySet>& external_keys) const {
  Principal p;
  int64_t nbf = 0;
  // The token's `iss` picks the trust domain; each verifies with its own keys only.
  if (external_.enabled() && oidc::unverified_issuer(token) == external_.issuer) {
    if (!external_keys) return unauthenticated("no keys for the external issuer");
    auto id = oidc::verify(token, *external_keys, external_, options_.leeway_s, clock_.now_s());
    if (!id) return unauthenticated(id.status().message());
    const bool listed = std::find(external_admins_.begin(), external_admins_.end(), id->user) !=
                        external_admins_.end();
    p.user = id->user;
    p.roles = oidc::granted_roles(id->provider_roles, listed);
    p.jti = id->claims.jti;
    p.exp = id->claims.exp;
    p.external = true;
    p.external_sub = id->subject;
    nbf = id->claims.nbf;
  } else {
    jwt::VerifyOptions vo;
    vo.issuer = options_.issuer;
    vo.audience = options_.audience;
    vo.leeway_s = options_.leeway_s;
    auto claims = jwt::verify_jwt(token, keys_, vo, clock_.now_s());
    if (!claims) return unauthenticated(claims.status().message());
    // Our tokens name users (or svc.* services); anything else cannot be ours.
    if (!is_valid_user_id(claims->sub)) return unauthenticated("token subject is not a user id");
    p.user = claims->sub;
    p.roles = claims->roles;
    p.jti = claims->jti;
    p.exp = claims->exp;
    nbf = claims->nbf;
  }
  return Verified{std::move(p), nbf};
}

Result<Principal> TokenIssuer::verify(std::string_view token) const {
  const int64_t now = clock_.now_s();
  std::string key(token);
  std::shared_ptr<const jwt::KeySet> external_keys;
  uint64_t generation = 0;
  {
    std::lock_guard lock(verified_mu_);
    auto it = verified_.find(key);
    if (it != verified_.end()) {
      if (in_time(it->second.principal.exp, it->second.nbf, now)) return it->second.principal;
      // Out of time: forget it, and let the full check below say why.
      verified_.erase(it);
    }
    external_keys = external_keys_;
    generation = key_generation_;
  }
  auto verified = verify_uncached(token, external_keys);
  if (!verified) return verified.status();
  std::lock_guard lock(verified_mu_);
  // Keys rotated while we verified: the answer stands, but is not remembered.
  if (generation != key_generation_) return verified->principal;
  if (verified_.size() >= kMaxVerifiedTokens) {
    std::erase_if(verified_, [&](const auto& e) {
      return !in_time(e.second.principal.exp, e.second.nbf, now);
    });
    if (verified_.size() >= kMaxVerifiedTokens) verified_.clear();
  }
  auto stored = verified_.insert_or_assign(std::move(key), std::move(verified).value());
  return stored.first->second.principal;
}

}  // namespace chat::api
