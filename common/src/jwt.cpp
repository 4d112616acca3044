#include "chat/common/jwt.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <set>
#include <utility>

#include "chat/common/envelope.h"  // json_depth_within, kMaxJsonDepth

namespace chat::jwt {
namespace {

using nlohmann::json;

// Verification must stay cheap on the MQTT CONNECT path: anything larger than
// this is not a token we issue or accept, so it is refused before any parsing.
constexpr size_t kMaxTokenBytes = 16 * 1024;
// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
constexpr size_t kMinHmacSecretBytes = 32;
constexpr size_t kHs256MacBytes = 32;
// RFC 7518 §3.3 asks for 2048 bits; the upper bound keeps one verification (a
// public-key operation whose cost grows with the modulus) cheap.
constexpr int kMinRsaBits = 2048;
constexpr int kMaxRsaBits = 8192;
// P-256 field elements and scalars; the JWS signature is r || s (RFC 7518 §3.4).
constexpr size_t kP256Bytes = 32;
constexpr size_t kEs256SignatureBytes = 2 * kP256Bytes;
// Order n of the P-256 group (FIPS 186-4 D.1.2.3), big-endian.
constexpr std::array<unsigned char, kP256Bytes> kP256Order = {
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51};
// Signer kid: base64url of this many leading bytes of SHA-256(0x04 || x || y).
constexpr size_t kKidDigestBytes = 12;
// A PEM private key for P-256 is a few hundred bytes; anything much larger is
// not our key file.
constexpr size_t kMaxPemBytes = 64 * 1024;
constexpr const char* kP256GroupName = "prime256v1";

// Headers that would let the token choose or fetch its own verification key,
// or demand extensions we do not implement (RFC 8725 §3.10, RFC 7515 §4.1.11).
constexpr std::array<const char*, 5> kRefusedHeaders = {"jwk", "jku", "x5u", "x5c", "crit"};

template <auto Fn>
struct Deleter {
  template <typename T>
  void operator()(T* p) const {
    Fn(p);
  }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Deleter<EVP_PKEY_CTX_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BN_free>>;
using ParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, Deleter<OSSL_PARAM_BLD_free>>;
using ParamPtr = std::unique_ptr<OSSL_PARAM, Deleter<OSSL_PARAM_free>>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, Deleter<ECDSA_SIG_free>>;

// OpenSSL reports failures on a per-thread error queue, and the broker's TLS
// code reads that queue after its own calls: an entry we leave behind could be
// blamed on an unrelated connection. Every public entry point pops back to the
// state it found.
class OpenSslErrorScope {
 public:
  OpenSslErrorScope() { ERR_set_mark(); }
  ~OpenSslErrorScope() { ERR_pop_to_mark(); }
  OpenSslErrorScope(const OpenSslErrorScope&) = delete;
  OpenSslErrorScope& operator=(const OpenSslErrorScope&) = delete;
};

std::shared_ptr<void> share_pkey(PkeyPtr pkey) {
  return std::shared_ptr<void>(pkey.release(),
                               [](void* p) { EVP_PKEY_free(static_cast<EVP_PKEY*>(p)); });
}

const unsigned char* bytes_of(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

int base64url_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

// Parses a JSON object and refuses duplicate top-level member names. RFC 7515
// §4 lets a parser either refuse them or keep the last one; two components
// that chose differently would disagree on `alg` or `sub`, so we refuse.
// Nesting is bounded first, as for every JSON from a peer (strict_json.h).
std::optional<json> parse_object(std::string_view text) {
  if (!json_depth_within(text, kMaxJsonDepth)) return std::nullopt;
  std::set<std::string, std::less<>> seen;
  bool duplicate = false;
  json::parser_callback_t on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      if (!seen.insert(parsed.get_ref<const std::string&>()).second) duplicate = true;
    }
    return true;
  };
  json value = json::parse(text.begin(), text.end(), on_event, /*allow_exceptions=*/false);
  if (value.is_discarded() || !value.is_object() || duplicate) return std::nullopt;
  return value;
}

// Serialises without throwing on invalid UTF-8 (nlohmann's default throws).
std::string dump_json(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::optional<Alg> alg_from_name(std::string_view name) {
  if (name == "HS256") return Alg::kHS256;
  if (name == "RS256") return Alg::kRS256;
  if (name == "ES256") return Alg::kES256;
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Key construction

Result<PkeyPtr> ec_p256_public_key(std::string_view x, std::string_view y) {
  // RFC 7518 §6.2.1.2: coordinates are the full field size, never shortened.
  if (x.size() != kP256Bytes || y.size() != kP256Bytes) {
    return invalid_argument("EC coordinates must be 32 bytes");
  }
  std::string point;
  point.reserve(1 + 2 * kP256Bytes);
  point.push_back('\x04');  // SEC 1 uncompressed point
  point.append(x);
  point.append(y);

  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1) return internal_error("EC key context");
  std::array<OSSL_PARAM, 3> params = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                       const_cast<char*>(kP256GroupName), 0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()),
      OSSL_PARAM_construct_end()};
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.data()) != 1) {
    return invalid_argument("EC point is not on P-256");
  }
  PkeyPtr pkey(raw);
  // fromdata already decodes the point onto the curve; the explicit check also
  // refuses the point at infinity and keeps the rule visible here.
  PkeyCtxPtr check(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey.get(), nullptr));
  if (!check || EVP_PKEY_public_check(check.get()) != 1) {
    return invalid_argument("EC point is not on P-256");
  }
  return pkey;
}

std::string_view strip_leading_zeros(std::string_view bytes) {
  while (!bytes.empty() && bytes.front() == '\0') bytes.remove_prefix(1);
  return bytes;
}

// ROCA (CVE-2017-15361): moduli generated by the vulnerable Infineon library
// are factorable. Their primes are 65537^a mod M plus multiples of M, with M a
// primorial that includes every prime up to 701 for moduli of 1952 bits and
// more, so n mod p lies in the subgroup generated by 65537 for each such p. A
// random modulus passes all 125 tests with probability about 2^-167.
bool is_roca_modulus(std::string_view n) {
  constexpr uint32_t kGenerator = 65537;
  for (uint32_t p = 3; p <= 701; p += 2) {
    bool prime = true;
    for (uint32_t d = 3; d * d <= p; d += 2) {
      if (p % d == 0) {
        prime = false;
        break;
      }
    }
    if (!prime) continue;
    uint32_t residue = 0;
    for (unsigned char byte : n) residue = (residue * 256 + byte) % p;
    if (residue == 0) return false;  // a small factor: not a ROCA key (and refused anyway)
    bool in_subgroup = false;
    const uint32_t g = kGenerator % p;
    uint32_t power = 1;
    do {
      power = power * g % p;
      if (power == residue) {
        in_subgroup = true;
        break;
      }
    } while (power != 1);
    if (!in_subgroup) return false;
  }
  return true;
}

Result<PkeyPtr> rsa_public_key(std::string_view n_bytes, std::string_view e_bytes) {
  const std::string_view n = strip_leading_zeros(n_bytes);
  const std::string_view e = strip_leading_zeros(e_bytes);
  if (n.empty() || e.empty()) return invalid_argument("RSA n or e is zero");
  BnPtr n_bn(BN_bin2bn(bytes_of(n), static_cast<int>(n.size()), nullptr));
  BnPtr e_bn(BN_bin2bn(bytes_of(e), static_cast<int>(e.size()), nullptr));
  if (!n_bn || !e_bn) return internal_error("RSA bignum");
  // SP 800-56B §6.2: e odd and 2^16 < e < 2^256. OpenSSL's default provider
  // only asks for e odd and > 1; small exponents are refused here because
  // every PKCS#1 v1.5 forgery against lax verifiers needs one.
  const int e_bits = BN_num_bits(e_bn.get());
  if (!BN_is_odd(e_bn.get()) || e_bits <= 16 || e_bits > 256) {
    return invalid_argument("RSA exponent outside (2^16, 2^256) or even");
  }
  const int bits = BN_num_bits(n_bn.get());
  if (bits < kMinRsaBits) return invalid_argument("RSA modulus shorter than 2048 bits");
  if (bits > kMaxRsaBits) return invalid_argument("RSA modulus longer than 8192 bits");
  if (is_roca_modulus(n)) return invalid_argument("RSA modulus is ROCA-vulnerable");

  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n_bn.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e_bn.get()) != 1) {
    return internal_error("RSA params");
  }
  ParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1) {
    return internal_error("RSA key context");
  }
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return invalid_argument("RSA key refused");
  }
  PkeyPtr pkey(raw);
  // SP 800-56B public-key checks on n: odd, composite, not a prime power, no
  // factor below 752.
  PkeyCtxPtr check(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey.get(), nullptr));
  if (!check || EVP_PKEY_public_check(check.get()) != 1) {
    return invalid_argument("RSA public key fails validation");
  }
  return pkey;
}

Result<std::string> decode_member(const json& jwk, const char* name) {
  auto it = jwk.find(name);
  if (it == jwk.end() || !it->is_string()) {
    return invalid_argument(std::string("missing member ") + name);
  }
  auto decoded = base64url_decode(it->get_ref<const std::string&>());
  if (!decoded) return invalid_argument(std::string("member ") + name + " is not base64url");
  return std::move(decoded).value();
}

// Builds one verification key, or says why the JWK cannot be used.
Result<Key> key_from_jwk(const json& jwk, const KeySetOptions& options) {
  if (!jwk.is_object()) return invalid_argument("not an object");
  auto kty_it = jwk.find("kty");
  if (kty_it == jwk.end() || !kty_it->is_string()) return invalid_argument("missing kty");
  const std::string& kty = kty_it->get_ref<const std::string&>();

  if (auto use = jwk.find("use"); use != jwk.end()) {
    if (!use->is_string() || *use != "sig") return invalid_argument("use is not sig");
  }
  if (auto ops = jwk.find("key_ops"); ops != jwk.end()) {
    if (!ops->is_array() || std::find(ops->begin(), ops->end(), json("verify")) == ops->end()) {
      return invalid_argument("key_ops lack verify");
    }
  }

  Key key;
  if (auto kid = jwk.find("kid"); kid != jwk.end()) {
    if (!kid->is_string()) return invalid_argument("kid is not a string");
    key.kid = kid->get<std::string>();
  }

  std::optional<Alg> declared;
  if (auto alg = jwk.find("alg"); alg != jwk.end()) {
    if (!alg->is_string()) return invalid_argument("alg is not a string");
    declared = alg_from_name(alg->get_ref<const std::string&>());
    if (!declared) return invalid_argument("unsupported alg " + alg->get<std::string>());
  }
  auto pin = [&](Alg by_type) -> Status {
    if (declared && *declared != by_type) return invalid_argument("alg does not match kty");
    key.alg = by_type;
    return Status::ok();
  };

  // Private members (d, p, q, ...) are ignored: only the public half is built.
  if (kty == "EC") {
    auto crv = jwk.find("crv");
    if (crv == jwk.end() || !crv->is_string() || *crv != "P-256") {
      return invalid_argument("unsupported curve");
    }
    if (Status s = pin(Alg::kES256); !s.is_ok()) return s;
    auto x = decode_member(jwk, "x");
    if (!x) return x.status();
    auto y = decode_member(jwk, "y");
    if (!y) return y.status();
    auto pkey = ec_p256_public_key(*x, *y);
    if (!pkey) return pkey.status();
    key.pkey = share_pkey(std::move(pkey).value());
    return key;
  }
  if (kty == "RSA") {
    if (Status s = pin(Alg::kRS256); !s.is_ok()) return s;
    auto n = decode_member(jwk, "n");
    if (!n) return n.status();
    auto e = decode_member(jwk, "e");
    if (!e) return e.status();
    auto pkey = rsa_public_key(*n, *e);
    if (!pkey) return pkey.status();
    key.pkey = share_pkey(std::move(pkey).value());
    return key;
  }
  if (kty == "oct") {
    if (Status s = pin(Alg::kHS256); !s.is_ok()) return s;
    if (!options.allow_hs256) return invalid_argument("HS256 not allowed");
    auto k = decode_member(jwk, "k");
    if (!k) return k.status();
    if (k->size() < kMinHmacSecretBytes) return invalid_argument("HS256 secret under 32 bytes");
    key.hmac_secret = std::move(k).value();
    return key;
  }
  return invalid_argument("unsupported kty " + kty);
}

// ---------------------------------------------------------------------------
// Signatures

bool digest_verify(EVP_PKEY* pkey, bool rsa_pkcs1, std::string_view input,
                   std::string_view signature) {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  if (!ctx ||
      EVP_DigestVerifyInit_ex(ctx.get(), &pctx, "SHA256", nullptr, nullptr, pkey, nullptr) != 1) {
    return false;
  }
  if (rsa_pkcs1 && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1) return false;
  return EVP_DigestVerify(ctx.get(), bytes_of(signature), signature.size(), bytes_of(input),
                          input.size()) == 1;
}

// Appends a DER INTEGER holding the unsigned big-endian value `bytes`.
void append_der_integer(std::string& out, std::string_view bytes) {
  bytes = strip_leading_zeros(bytes);
  const bool pad = !bytes.empty() && (static_cast<unsigned char>(bytes.front()) & 0x80) != 0;
  const size_t length = bytes.size() + (pad ? 1 : 0);
  out.push_back('\x02');
  out.push_back(static_cast<char>(length));  // at most 33: short form
  if (pad) out.push_back('\0');
  out.append(bytes);
}

// True when 0 < v < n for a 32-byte big-endian scalar.
bool is_valid_p256_scalar(std::string_view v) {
  if (strip_leading_zeros(v).empty()) return false;
  return std::lexicographical_compare(
      v.begin(), v.end(), kP256Order.begin(), kP256Order.end(),
      [](char a, unsigned char b) { return static_cast<unsigned char>(a) < b; });
}

bool verify_es256(EVP_PKEY* pkey, std::string_view input, std::string_view signature) {
  // Only the fixed-size JOSE form is accepted: a DER signature, a truncated or
  // padded one never reaches OpenSSL's lenient parser.
  if (signature.size() != kEs256SignatureBytes) return false;
  const std::string_view r = signature.substr(0, kP256Bytes);
  const std::string_view s = signature.substr(kP256Bytes);
  if (!is_valid_p256_scalar(r) || !is_valid_p256_scalar(s)) return false;
  std::string integers;
  append_der_integer(integers, r);
  append_der_integer(integers, s);
  std::string der;
  der.push_back('\x30');  // SEQUENCE, at most 70 bytes of content: short form
  der.push_back(static_cast<char>(integers.size()));
  der.append(integers);
  return digest_verify(pkey, false, input, der);
}

std::optional<std::string> hmac_sha256(std::string_view secret, std::string_view input) {
  std::string mac(kHs256MacBytes, '\0');
  size_t mac_len = 0;
  if (EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, secret.data(), secret.size(),
                bytes_of(input), input.size(), reinterpret_cast<unsigned char*>(mac.data()),
                mac.size(), &mac_len) == nullptr ||
      mac_len != kHs256MacBytes) {
    return std::nullopt;
  }
  return mac;
}

bool verify_signature(const Key& key, std::string_view input, std::string_view signature) {
  auto* pkey = static_cast<EVP_PKEY*>(key.pkey.get());
  switch (key.alg) {
    case Alg::kHS256: {
      // Re-checked here because keys may also come from KeySet::add.
      if (key.hmac_secret.size() < kMinHmacSecretBytes) return false;
      if (signature.size() != kHs256MacBytes) return false;
      auto mac = hmac_sha256(key.hmac_secret, input);
      return mac && CRYPTO_memcmp(mac->data(), signature.data(), kHs256MacBytes) == 0;
    }
    case Alg::kRS256:
      if (pkey == nullptr || !EVP_PKEY_is_a(pkey, "RSA")) return false;
      // RFC 8017 §8.2.2: the signature is exactly k bytes; OpenSSL would also
      // take shorter ones.
      if (signature.size() != static_cast<size_t>(EVP_PKEY_get_size(pkey))) return false;
      return digest_verify(pkey, true, input, signature);
    case Alg::kES256:
      if (pkey == nullptr || !EVP_PKEY_is_a(pkey, "EC")) return false;
      return verify_es256(pkey, input, signature);
  }
  return false;
}

Result<std::string> verify_jws_unchecked(std::string_view compact, const KeySet& keys) {
  if (compact.size() > kMaxTokenBytes) return unauthenticated("token too long");
  const size_t first = compact.find('.');
  const size_t second = first == std::string_view::npos ? first : compact.find('.', first + 1);
  if (second == std::string_view::npos || compact.find('.', second + 1) != std::string_view::npos) {
    return unauthenticated("malformed token");
  }
  const std::string_view header_b64 = compact.substr(0, first);
  const std::string_view payload_b64 = compact.substr(first + 1, second - first - 1);
  const std::string_view signature_b64 = compact.substr(second + 1);

  auto header_text = base64url_decode(header_b64);
  if (!header_text) return unauthenticated("invalid base64url in header");
  auto header = parse_object(*header_text);
  if (!header) return unauthenticated("invalid header");
  for (const char* name : kRefusedHeaders) {
    if (header->contains(name)) return unauthenticated(std::string("header ") + name + " refused");
  }
  auto alg_it = header->find("alg");
  if (alg_it == header->end() || !alg_it->is_string()) return unauthenticated("missing alg");
  std::string alg = alg_it->get<std::string>();
  std::string alg_lower = alg;
  std::transform(alg_lower.begin(), alg_lower.end(), alg_lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (alg_lower == "none") return unauthenticated("alg none refused");
  if (!alg_from_name(alg)) return unauthenticated("unsupported alg");

  // A token without `kid` looks up the empty kid, which only a JWK without
  // `kid` has (see KeySet::from_jwks).
  std::string kid;
  const auto kid_it = header->find("kid");
  const bool has_kid = kid_it != header->end();
  if (has_kid) {
    if (!kid_it->is_string()) return unauthenticated("invalid kid");
    kid = kid_it->get<std::string>();
  }
  const Key* key = keys.find(kid);
  if (key == nullptr) return unauthenticated(has_kid ? "unknown kid" : "missing kid");
  if (alg != alg_name(key->alg)) return unauthenticated("alg does not match key");

  auto payload = base64url_decode(payload_b64);
  if (!payload) return unauthenticated("invalid base64url in payload");
  auto signature = base64url_decode(signature_b64);
  if (!signature) return unauthenticated("invalid base64url in signature");
  if (!verify_signature(*key, compact.substr(0, second), *signature)) {
    return unauthenticated("bad signature");
  }
  return std::move(payload).value();
}

// ---------------------------------------------------------------------------
// Claims

enum class Rounding { kDown, kUp };

// NumericDate (RFC 7519 §2): a JSON number of seconds, possibly fractional.
// Rounding is chosen by the caller so that it always makes the check stricter.
std::optional<int64_t> numeric_date(const json& value, Rounding rounding) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  if (value.is_number_unsigned()) {
    const uint64_t u = value.get<uint64_t>();
    return u > static_cast<uint64_t>(kMax) ? kMax : static_cast<int64_t>(u);
  }
  if (value.is_number_integer()) return value.get<int64_t>();
  if (value.is_number_float()) {
    double d = value.get<double>();
    if (!std::isfinite(d)) return std::nullopt;
    d = rounding == Rounding::kDown ? std::floor(d) : std::ceil(d);
    if (d >= 9.2e18) return kMax;
    if (d <= -9.2e18) return kMin;
    return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

Result<Claims> check_claims(std::string_view payload, const VerifyOptions& options, int64_t now_s) {
  auto parsed = parse_object(payload);
  if (!parsed) return unauthenticated("payload is not a JSON object");
  const json& body = *parsed;
  Claims claims;
  const int64_t leeway = std::clamp<int64_t>(options.leeway_s, 0, kMaxLeewayS);

  auto exp_it = body.find("exp");
  if (exp_it == body.end()) return unauthenticated("missing exp");
  auto exp = numeric_date(*exp_it, Rounding::kDown);
  if (!exp) return unauthenticated("invalid exp");
  claims.exp = *exp;
  if (is_expired(claims.exp, leeway, now_s)) return unauthenticated("token expired");

  if (auto nbf_it = body.find("nbf"); nbf_it != body.end()) {
    auto nbf = numeric_date(*nbf_it, Rounding::kUp);
    if (!nbf) return unauthenticated("invalid nbf");
    claims.nbf = *nbf;
    if (is_not_yet_valid(claims.nbf, leeway, now_s)) return unauthenticated("token not yet valid");
  }
  if (auto iat_it = body.find("iat"); iat_it != body.end()) {
    auto iat = numeric_date(*iat_it, Rounding::kDown);
    if (!iat) return unauthenticated("invalid iat");
    claims.iat = *iat;
  }

  auto iss_it = body.find("iss");
  if (iss_it == body.end() || !iss_it->is_string()) return unauthenticated("missing iss");
  claims.iss = iss_it->get<std::string>();
  if (claims.iss != options.issuer) return unauthenticated("wrong issuer");

  auto aud_it = body.find("aud");
  if (aud_it == body.end()) return unauthenticated("missing aud");
  if (aud_it->is_string()) {
    claims.aud.push_back(aud_it->get<std::string>());
  } else if (aud_it->is_array()) {
    for (const json& entry : *aud_it) {
      if (!entry.is_string()) return unauthenticated("invalid aud");
      claims.aud.push_back(entry.get<std::string>());
    }
  } else {
    return unauthenticated("invalid aud");
  }
  if (std::find(claims.aud.begin(), claims.aud.end(), options.audience) == claims.aud.end()) {
    return unauthenticated("wrong audience");
  }

  auto sub_it = body.find("sub");
  if (sub_it == body.end() || !sub_it->is_string() ||
      sub_it->get_ref<const std::string&>().empty()) {
    return unauthenticated("missing sub");
  }
  claims.sub = sub_it->get<std::string>();

  if (auto jti_it = body.find("jti"); jti_it != body.end()) {
    if (!jti_it->is_string()) return unauthenticated("invalid jti");
    claims.jti = jti_it->get<std::string>();
  }

  if (auto roles_it = body.find(options.roles_claim); roles_it != body.end()) {
    if (!roles_it->is_array()) return unauthenticated("invalid roles");
    for (const json& role : *roles_it) {
      if (!role.is_string()) return unauthenticated("invalid roles");
      claims.roles.push_back(role.get<std::string>());
    }
  }
  claims.raw = std::move(*parsed);
  return claims;
}

// ---------------------------------------------------------------------------
// Signer helpers

std::string errno_text(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

// Creates the missing parent directories of `path` (mode 0755 before umask).
Status create_parent_dirs(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) return Status::ok();
  std::filesystem::path prefix;
  for (const auto& part : parent) {
    prefix /= part;
    if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      return internal_error(errno_text("cannot create directory", prefix.string()));
    }
  }
  struct stat st {};
  if (::stat(parent.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return internal_error("not a directory: " + parent.string());
  }
  return Status::ok();
}

Status write_all(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return internal_error(errno_text("cannot write", path));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::ok();
}

// Writes `contents` with `mode` so that readers never see a partial file: the
// data goes to a temporary file in the same directory, which is then renamed
// over `path` (replace) or hard-linked to it (exclusive: fails with
// kAlreadyExists when another process created `path` first).
Status write_file(const std::string& path, std::string_view contents, mode_t mode, bool replace) {
  std::string tmp = path + ".tmp-XXXXXX";
  const int fd = ::mkstemp(tmp.data());  // created 0600, O_EXCL
  if (fd < 0) return internal_error(errno_text("cannot create", tmp));
  Status status = Status::ok();
  if (::fchmod(fd, mode) != 0) status = internal_error(errno_text("cannot chmod", tmp));
  if (status.is_ok()) status = write_all(fd, contents, tmp);
  if (status.is_ok() && ::fsync(fd) != 0) status = internal_error(errno_text("cannot sync", tmp));
  if (::close(fd) != 0 && status.is_ok()) status = internal_error(errno_text("cannot close", tmp));
  if (status.is_ok()) {
    if (replace) {
      if (::rename(tmp.c_str(), path.c_str()) != 0) {
        status = internal_error(errno_text("cannot rename to", path));
      }
    } else if (::link(tmp.c_str(), path.c_str()) != 0) {
      status = errno == EEXIST ? already_exists(path)
                               : internal_error(errno_text("cannot create", path));
    }
  }
  ::unlink(tmp.c_str());  // gone already after a successful rename
  return status;
}

Result<std::string> read_small_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return errno == ENOENT ? Status(not_found(path))
                           : internal_error(errno_text("cannot open", path));
  }
  std::string out;
  char buffer[4096];
  Status status = Status::ok();
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      status = internal_error(errno_text("cannot read", path));
      break;
    }
    if (n == 0) break;
    out.append(buffer, static_cast<size_t>(n));
    if (out.size() > kMaxPemBytes) {
      status = invalid_argument("file too large: " + path);
      break;
    }
  }
  ::close(fd);
  if (!status.is_ok()) return status;
  return out;
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// The uncompressed P-256 public point, 0x04 || x || y, built from the affine
// coordinates so that it does not depend on the key's point-format setting.
std::optional<std::string> p256_public_point(EVP_PKEY* pkey) {
  BIGNUM* x_raw = nullptr;
  BIGNUM* y_raw = nullptr;
  const bool got = EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &x_raw) == 1 &&
                   EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &y_raw) == 1;
  BnPtr x(x_raw);
  BnPtr y(y_raw);
  if (!got) return std::nullopt;
  std::string point(1 + 2 * kP256Bytes, '\0');
  point[0] = '\x04';
  auto* out = reinterpret_cast<unsigned char*>(point.data());
  if (BN_bn2binpad(x.get(), out + 1, kP256Bytes) != static_cast<int>(kP256Bytes) ||
      BN_bn2binpad(y.get(), out + 1 + kP256Bytes, kP256Bytes) != static_cast<int>(kP256Bytes)) {
    return std::nullopt;
  }
  return point;
}

std::optional<std::string> default_kid(EVP_PKEY* pkey) {
  auto point = p256_public_point(pkey);
  if (!point) return std::nullopt;
  std::array<unsigned char, 32> digest{};
  unsigned int digest_len = 0;
  if (EVP_Digest(point->data(), point->size(), digest.data(), &digest_len, EVP_sha256(), nullptr) !=
      1) {
    return std::nullopt;
  }
  return base64url_encode(
      std::string_view(reinterpret_cast<const char*>(digest.data()), kKidDigestBytes));
}

// PEM passphrase callback that refuses: an encrypted key file is an error, not
// a prompt on the broker's terminal.
int refuse_passphrase(char*, int, int, void*) { return -1; }

Result<std::string> private_key_pem(EVP_PKEY* pkey) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  // PEM_write_bio_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY").
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), pkey, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return internal_error("cannot encode private key");
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  if (len <= 0 || data == nullptr) return internal_error("cannot encode private key");
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace

// ---------------------------------------------------------------------------
// Public API

std::string base64url_encode(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                       static_cast<unsigned char>(bytes[i + 2]);
    out.push_back(kAlphabet[(v >> 18) & 0x3F]);
    out.push_back(kAlphabet[(v >> 12) & 0x3F]);
    out.push_back(kAlphabet[(v >> 6) & 0x3F]);
    out.push_back(kAlphabet[v & 0x3F]);
  }
  const size_t rest = bytes.size() - i;
  if (rest == 1) {
    const uint32_t v = static_cast<unsigned char>(bytes[i]) << 16;
    out.push_back(kAlphabet[(v >> 18) & 0x3F]);
    out.push_back(kAlphabet[(v >> 12) & 0x3F]);
  } else if (rest == 2) {
    const uint32_t v = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8);
    out.push_back(kAlphabet[(v >> 18) & 0x3F]);
    out.push_back(kAlphabet[(v >> 12) & 0x3F]);
    out.push_back(kAlphabet[(v >> 6) & 0x3F]);
  }
  return out;
}

Result<std::string> base64url_decode(std::string_view text) {
  // One leftover character carries only 6 bits: no byte can end there.
  if (text.size() % 4 == 1) return invalid_argument("base64url: bad length");
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    const int v = base64url_value(c);
    if (v < 0) return invalid_argument("base64url: bad character");
    acc = ((acc << 6) | static_cast<uint32_t>(v)) & 0xFFFFFF;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  // The unused low bits of the last character must be zero, so that each byte
  // string has exactly one encoding (otherwise "AB" and "AA" both mean 0x00).
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
    return invalid_argument("base64url: non-canonical");
  }
  return out;
}

const char* alg_name(Alg alg) {
  switch (alg) {
    case Alg::kHS256:
      return "HS256";
    case Alg::kRS256:
      return "RS256";
    case Alg::kES256:
      return "ES256";
  }
  return "";
}

// Rules for a JWKS document, beyond the per-key rules in the header:
// - A key that cannot be used (other kty/alg/curve, `use` not sig, `key_ops`
//   without verify, malformed or weak material: off-curve point, RSA under
//   2048 bits or ROCA, e outside (2^16, 2^256), HMAC secret under 32 bytes) is
//   skipped, so one odd key at an identity provider does not lock every user
//   out; none of them can verify anything.
// - A JWK without `kid` gets kid "" and is chosen only by tokens without a
//   `kid` header. A token that names a kid must find exactly that kid, and a
//   token without one never falls back to "the only key" or "any key": that
//   would let a header edit pick the key. (Every Wycheproof vector carries a
//   kid; the only kid-less ones are alg none and malformed tokens, refused
//   either way.)
// - Two keys with the same kid (including two without kid) make the whole
//   document an error, even when one of them is unusable: which key a token
//   means would be ambiguous, and Wycheproof DuplicateKid expects the set
//   refused although one of its two keys is not even valid base64url.
// - HS256 keys next to asymmetric keys make the document an error: such a set
//   mixes a shared secret with public keys, the setting of key-confusion
//   attacks (Wycheproof MixedKeySet).
Result<KeySet> KeySet::from_jwks(std::string_view text, const KeySetOptions& options) {
  OpenSslErrorScope errors;
  try {
    const json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.is_object()) {
      return invalid_argument("JWKS is not a JSON object");
    }
    std::vector<const json*> entries;
    if (auto keys = doc.find("keys"); keys != doc.end()) {
      if (!keys->is_array()) return invalid_argument("JWKS keys is not an array");
      for (const json& entry : *keys) entries.push_back(&entry);
    } else if (doc.contains("kty")) {
      entries.push_back(&doc);
    } else {
      return invalid_argument("neither a JWKS nor a JWK");
    }

    // kid values must be distinct across the whole document, usable keys or
    // not, with a missing kid counting as "".
    std::set<std::string, std::less<>> kids;
    for (const json* entry : entries) {
      std::string kid;
      if (entry->is_object()) {
        if (auto it = entry->find("kid"); it != entry->end() && it->is_string()) {
          kid = it->get<std::string>();
        }
      }
      if (!kids.insert(kid).second) return invalid_argument("duplicate kid \"" + kid + "\"");
    }

    KeySet set;
    std::string skipped;
    bool has_hmac = false;
    bool has_public = false;
    for (size_t i = 0; i < entries.size(); ++i) {
      auto key = key_from_jwk(*entries[i], options);
      if (!key) {
        skipped += (skipped.empty() ? "" : "; ") + std::string("key ") + std::to_string(i) + ": " +
                   key.status().message();
        continue;
      }
      (key->alg == Alg::kHS256 ? has_hmac : has_public) = true;
      set.add(std::move(key).value());
    }
    if (has_hmac && has_public) return invalid_argument("JWKS mixes HS256 and public keys");
    if (set.empty()) {
      return invalid_argument("no usable key" + (skipped.empty() ? "" : " (" + skipped + ")"));
    }
    return set;
  } catch (const std::exception& e) {
    return internal_error(std::string("JWKS: ") + e.what());
  }
}

void KeySet::add(Key key) { keys_.push_back(std::move(key)); }

const Key* KeySet::find(std::string_view kid) const {
  for (const Key& key : keys_) {
    if (key.kid == kid) return &key;
  }
  return nullptr;
}

Result<std::string> verify_jws(std::string_view compact, const KeySet& keys) {
  OpenSslErrorScope errors;
  try {
    return verify_jws_unchecked(compact, keys);
  } catch (const std::exception&) {
    return unauthenticated("malformed token");
  }
}

bool Claims::has_role(std::string_view role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

bool is_expired(int64_t exp, int64_t leeway_s, int64_t now_s) {
  const int64_t leeway = std::clamp<int64_t>(leeway_s, 0, kMaxLeewayS);
  // now > exp + leeway, written so that it cannot overflow.
  return exp <= std::numeric_limits<int64_t>::max() - leeway && now_s > exp + leeway;
}

bool is_not_yet_valid(int64_t nbf, int64_t leeway_s, int64_t now_s) {
  const int64_t leeway = std::clamp<int64_t>(leeway_s, 0, kMaxLeewayS);
  return now_s <= std::numeric_limits<int64_t>::max() - leeway && now_s + leeway < nbf;
}

Result<Claims> verify_jwt(std::string_view token, const KeySet& keys, const VerifyOptions& options,
                          int64_t now_s) {
  // An unconfigured verifier is a server fault, not the client's.
  if (options.issuer.empty() || options.audience.empty()) {
    return internal_error("verifier has no issuer or audience");
  }
  auto payload = verify_jws(token, keys);
  if (!payload) return payload.status();
  try {
    return check_claims(*payload, options, now_s);
  } catch (const std::exception&) {
    return unauthenticated("malformed claims");
  }
}

Result<Signer> Signer::from_pem(std::string_view pem, std::string kid) {
  OpenSslErrorScope errors;
  if (pem.size() > kMaxPemBytes) return invalid_argument("PEM too large");
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return internal_error("BIO");
  PkeyPtr pkey(PEM_read_bio_PrivateKey(bio.get(), nullptr, refuse_passphrase, nullptr));
  if (!pkey) return invalid_argument("not an unencrypted PEM private key");
  char group[64] = {};
  size_t group_len = 0;
  if (!EVP_PKEY_is_a(pkey.get(), "EC") ||
      EVP_PKEY_get_group_name(pkey.get(), group, sizeof(group), &group_len) != 1 ||
      (std::strcmp(group, kP256GroupName) != 0 && std::strcmp(group, "P-256") != 0)) {
    return invalid_argument("signing key is not an EC P-256 key");
  }
  // Catches a corrupted file: the private scalar must match the public point.
  PkeyCtxPtr check(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey.get(), nullptr));
  if (!check || EVP_PKEY_pairwise_check(check.get()) != 1) {
    return invalid_argument("signing key fails validation");
  }
  if (kid.empty()) {
    auto computed = default_kid(pkey.get());
    if (!computed) return internal_error("cannot derive kid");
    kid = std::move(*computed);
  }
  Signer signer;
  signer.pkey_ = share_pkey(std::move(pkey));
  signer.kid_ = std::move(kid);
  return signer;
}

Result<Signer> Signer::load_or_create(const std::string& pem_path, const std::string& jwks_path) {
  OpenSslErrorScope errors;
  try {
    // Two attempts: if another process creates the key between our check and
    // our link, the second pass loads the key it wrote.
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto pem = read_small_file(pem_path);
      if (pem) {
        auto signer = from_pem(*pem, "");
        if (!signer) return invalid_argument(pem_path + ": " + signer.status().message());
        if (!file_exists(jwks_path)) {
          if (Status s = create_parent_dirs(jwks_path); !s.is_ok()) return s;
          if (Status s = write_file(jwks_path, signer->public_jwks() + "\n", 0644, true);
              !s.is_ok()) {
            return s;
          }
        }
        return signer;
      }
      if (pem.status().code() != StatusCode::kNotFound) return pem.status();

      PkeyPtr pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
      if (!pkey) return internal_error("cannot generate P-256 key");
      auto text = private_key_pem(pkey.get());
      if (!text) return text.status();
      if (Status s = create_parent_dirs(pem_path); !s.is_ok()) return s;
      Status written = write_file(pem_path, *text, 0600, false);
      OPENSSL_cleanse(text->data(), text->size());
      if (written.code() == StatusCode::kAlreadyExists) continue;
      if (!written.is_ok()) return written;

      auto kid = default_kid(pkey.get());
      if (!kid) return internal_error("cannot derive kid");
      Signer signer;
      signer.pkey_ = share_pkey(std::move(pkey));
      signer.kid_ = std::move(*kid);
      if (Status s = create_parent_dirs(jwks_path); !s.is_ok()) return s;
      if (Status s = write_file(jwks_path, signer.public_jwks() + "\n", 0644, true); !s.is_ok()) {
        return s;
      }
      return signer;
    }
    return internal_error("signing key keeps changing: " + pem_path);
  } catch (const std::exception& e) {
    return internal_error(std::string("signing key: ") + e.what());
  }
}

// Returns "" if OpenSSL fails (no memory): such a token verifies nowhere.
std::string Signer::sign(const nlohmann::json& claims) const {
  OpenSslErrorScope errors;
  try {
    auto* pkey = static_cast<EVP_PKEY*>(pkey_.get());
    if (pkey == nullptr) return "";
    const json header = {{"alg", "ES256"}, {"typ", "JWT"}, {"kid", kid_}};
    std::string token =
        base64url_encode(dump_json(header)) + "." + base64url_encode(dump_json(claims));

    MdCtxPtr ctx(EVP_MD_CTX_new());
    if (!ctx ||
        EVP_DigestSignInit_ex(ctx.get(), nullptr, "SHA256", nullptr, nullptr, pkey, nullptr) != 1) {
      return "";
    }
    size_t der_len = 0;
    if (EVP_DigestSign(ctx.get(), nullptr, &der_len, bytes_of(token), token.size()) != 1) return "";
    std::string der(der_len, '\0');
    if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(der.data()), &der_len,
                       bytes_of(token), token.size()) != 1) {
      return "";
    }
    const unsigned char* p = bytes_of(der);
    EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der_len)));
    if (!sig) return "";
    const BIGNUM* r = nullptr;
    const BIGNUM* s = nullptr;
    ECDSA_SIG_get0(sig.get(), &r, &s);
    std::string raw(kEs256SignatureBytes, '\0');
    auto* out = reinterpret_cast<unsigned char*>(raw.data());
    if (BN_bn2binpad(r, out, kP256Bytes) != static_cast<int>(kP256Bytes) ||
        BN_bn2binpad(s, out + kP256Bytes, kP256Bytes) != static_cast<int>(kP256Bytes)) {
      return "";
    }
    token += ".";
    token += base64url_encode(raw);
    return token;
  } catch (const std::exception&) {
    return "";
  }
}

std::string Signer::public_jwks() const {
  OpenSslErrorScope errors;
  auto* pkey = static_cast<EVP_PKEY*>(pkey_.get());
  std::optional<std::string> point = pkey ? p256_public_point(pkey) : std::nullopt;
  if (!point) return R"({"keys":[]})";
  const std::string_view xy = std::string_view(*point).substr(1);
  const json jwk = {{"kty", "EC"},
                    {"crv", "P-256"},
                    {"x", base64url_encode(xy.substr(0, kP256Bytes))},
                    {"y", base64url_encode(xy.substr(kP256Bytes))},
                    {"kid", kid_},
                    {"alg", "ES256"},
                    {"use", "sig"}};
  return dump_json(json{{"keys", json::array({jwk})}});
}

}  // namespace chat::jwt
