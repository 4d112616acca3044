// Test-only stand-in for an external OAuth 2.0 / OIDC provider: RS256 and
// ES256 keys generated with OpenSSL at test time, their public JWKS, and
// tokens signed with them. Header-only; link OpenSSL::Crypto.
#pragma once

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <utility>

#include "chat/common/jwt.h"

namespace chat::testing {

// One provider signing key: RS256 (RSA 2048) or ES256 (P-256).
class ProviderKey {
 public:
  static ProviderKey rs256(std::string kid) {
    return ProviderKey(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}), jwt::Alg::kRS256,
                       std::move(kid));
  }
  static ProviderKey es256(std::string kid) {
    return ProviderKey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), jwt::Alg::kES256,
                       std::move(kid));
  }

  const std::string& kid() const { return kid_; }

  // The public JWK, as a provider publishes it (Keycloak adds x5c/x5t; not needed).
  nlohmann::json jwk() const {
    if (alg_ == jwt::Alg::kRS256) {
      return {{"kty", "RSA"},
              {"kid", kid_},
              {"use", "sig"},
              {"alg", "RS256"},
              {"n", jwt::base64url_encode(bn(OSSL_PKEY_PARAM_RSA_N, 0))},
              {"e", jwt::base64url_encode(bn(OSSL_PKEY_PARAM_RSA_E, 0))}};
    }
    return {{"kty", "EC"},
            {"kid", kid_},
            {"use", "sig"},
            {"alg", "ES256"},
            {"crv", "P-256"},
            {"x", jwt::base64url_encode(bn(OSSL_PKEY_PARAM_EC_PUB_X, 32))},
            {"y", jwt::base64url_encode(bn(OSSL_PKEY_PARAM_EC_PUB_Y, 32))}};
  }

  // A compact JWS over `claims` with header {"alg","typ":"JWT","kid"}.
  std::string sign(const nlohmann::json& claims) const {
    const nlohmann::json header = {
        {"alg", alg_ == jwt::Alg::kRS256 ? "RS256" : "ES256"}, {"typ", "JWT"}, {"kid", kid_}};
    const std::string input =
        jwt::base64url_encode(header.dump()) + "." + jwt::base64url_encode(claims.dump());
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    if (EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, pkey_.get()) != 1) {
      throw std::runtime_error("EVP_DigestSignInit");
    }
    size_t len = 0;
    const auto* data = reinterpret_cast<const unsigned char*>(input.data());
    EVP_DigestSign(ctx.get(), nullptr, &len, data, input.size());
    std::string sig(len, '\0');
    if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, data,
                       input.size()) != 1) {
      throw std::runtime_error("EVP_DigestSign");
    }
    sig.resize(len);
    if (alg_ == jwt::Alg::kES256) sig = der_to_raw(sig);
    return input + "." + jwt::base64url_encode(sig);
  }

 private:
  ProviderKey(EVP_PKEY* pkey, jwt::Alg alg, std::string kid)
      : pkey_(pkey, &EVP_PKEY_free), alg_(alg), kid_(std::move(kid)) {
    if (pkey == nullptr) throw std::runtime_error("key generation failed");
  }

  std::string bn(const char* name, int pad) const {
    BIGNUM* raw = nullptr;
    if (EVP_PKEY_get_bn_param(pkey_.get(), name, &raw) != 1) throw std::runtime_error(name);
    std::unique_ptr<BIGNUM, decltype(&BN_free)> owned(raw, &BN_free);
    const int size = pad > 0 ? pad : BN_num_bytes(raw);
    std::string out(static_cast<size_t>(size), '\0');
    BN_bn2binpad(raw, reinterpret_cast<unsigned char*>(out.data()), size);
    return out;
  }

  // JWS ES256 signatures are r||s (RFC 7518 §3.4), not DER.
  static std::string der_to_raw(const std::string& der) {
    const auto* p = reinterpret_cast<const unsigned char*>(der.data());
    std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> sig(
        d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())), &ECDSA_SIG_free);
    if (!sig) throw std::runtime_error("d2i_ECDSA_SIG");
    std::string out(64, '\0');
    BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), reinterpret_cast<unsigned char*>(out.data()), 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), reinterpret_cast<unsigned char*>(out.data()) + 32,
                 32);
    return out;
  }

  std::shared_ptr<EVP_PKEY> pkey_;
  jwt::Alg alg_;
  std::string kid_;
};

// {"keys":[...]} of the given keys' public halves.
template <typename... Keys>
std::string jwks_of(const Keys&... keys) {
  nlohmann::json doc = {{"keys", nlohmann::json::array({keys.jwk()...})}};
  return doc.dump();
}

// Writes `text` to `path` by renaming a temporary file over it, as an
// operator (or a config-management tool) replaces a JWKS file.
inline void replace_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) throw std::runtime_error("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("rename " + path);
}

inline int64_t unix_now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The provider's `sub` (Keycloak: a UUID) that provider_claims() puts in by default.
inline const std::string kDefaultProviderSub = "f81d4fae-7dec-11d0-a765-00a0c91e6bf6";

// Keycloak-style access-token claims for `user` (preferred_username) with
// realm roles, for the provider's subject `sub`.
inline nlohmann::json provider_claims(const std::string& issuer, const std::string& audience,
                                      const std::string& user, int64_t now_s,
                                      nlohmann::json roles = nlohmann::json::array(),
                                      const std::string& sub = kDefaultProviderSub) {
  return {{"iss", issuer},
          {"aud", nlohmann::json::array({audience, "account"})},
          {"sub", sub},
          {"typ", "Bearer"},
          {"azp", "chat-web"},
          {"preferred_username", user},
          {"realm_access", {{"roles", std::move(roles)}}},
          {"iat", now_s},
          {"exp", now_s + 300},
          {"jti", "kc-" + user + "-" + std::to_string(now_s)}};
}

}  // namespace chat::testing
