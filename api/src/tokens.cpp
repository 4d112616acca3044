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

Result<Principal> TokenIssuer::verify(std::string_view token) const {
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
  return p;
}

}  // namespace chat::api
