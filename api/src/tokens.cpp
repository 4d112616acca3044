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
                              int64_t ttl_s) const {
  int64_t now = clock_.now_s();
  nlohmann::json claims = {
      {"sub", subject},           {"iat", now},
      {"exp", now + ttl_s},       {"iss", options_.issuer},
      {"aud", options_.audience}, {"jti", random_token(16)},
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

Result<Principal> TokenIssuer::verify(std::string_view token) const {
  const int64_t now = clock_.now_s();
  std::string key(token);
  {
    std::lock_guard lock(verified_mu_);
    auto it = verified_.find(key);
    if (it != verified_.end()) {
      if (in_time(it->second.principal.exp, it->second.nbf, now)) return it->second.principal;
      // Out of time: forget it, and let the full check below say why.
      verified_.erase(it);
    }
  }
  jwt::VerifyOptions vo;
  vo.issuer = options_.issuer;
  vo.audience = options_.audience;
  vo.leeway_s = options_.leeway_s;
  auto claims = jwt::verify_jwt(token, keys_, vo, clock_.now_s());
  if (!claims) return unauthenticated(claims.status().message());
  // Our tokens name users (or svc.* services); anything else cannot be ours.
  if (!is_valid_user_id(claims->sub)) return unauthenticated("token subject is not a user id");
  Principal p;
  p.user = claims->sub;
  p.roles = claims->roles;
  p.jti = claims->jti;
  p.exp = claims->exp;
  std::lock_guard lock(verified_mu_);
  if (verified_.size() >= kMaxVerifiedTokens) {
    std::erase_if(verified_, [&](const auto& e) {
      return !in_time(e.second.principal.exp, e.second.nbf, now);
    });
    if (verified_.size() >= kMaxVerifiedTokens) verified_.clear();
  }
  verified_.insert_or_assign(std::move(key), Verified{p, claims->nbf});
  return p;
}

}  // namespace chat::api
