#include "chat/common/jwt.h"

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <thread>

namespace chat::jwt {
namespace {

using nlohmann::json;

constexpr int64_t kNow = 1'700'000'000;

// ---------------------------------------------------------------------------
// Helpers: keys and signatures made directly with OpenSSL, so that tests can
// sign headers the Signer would never produce.

template <auto Fn>
struct Free {
  template <typename T>
  void operator()(T* p) const {
    Fn(p);
  }
};
using Pkey = std::unique_ptr<EVP_PKEY, Free<EVP_PKEY_free>>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, Free<EVP_MD_CTX_free>>;
using Bio = std::unique_ptr<BIO, Free<BIO_free>>;
using Bn = std::unique_ptr<BIGNUM, Free<BN_free>>;
using EcdsaSig = std::unique_ptr<ECDSA_SIG, Free<ECDSA_SIG_free>>;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json load_vectors(const std::string& name) {
  const std::string text = read_text(std::string(CHAT_TESTDATA_DIR) + "/wycheproof/" + name);
  return json::parse(text);
}

std::string b64(std::string_view bytes) { return base64url_encode(bytes); }

std::string unb64(std::string_view text) {
  auto decoded = base64url_decode(text);
  EXPECT_TRUE(decoded.is_ok()) << text;
  return decoded ? *decoded : std::string();
}

Pkey generate_ec() { return Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")); }
Pkey generate_rsa(size_t bits) { return Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", bits)); }

std::string bn_param(EVP_PKEY* pkey, const char* name, int pad) {
  BIGNUM* raw = nullptr;
  EXPECT_EQ(EVP_PKEY_get_bn_param(pkey, name, &raw), 1);
  Bn bn(raw);
  const int size = pad > 0 ? pad : BN_num_bytes(bn.get());
  std::string out(static_cast<size_t>(size), '\0');
  BN_bn2binpad(bn.get(), reinterpret_cast<unsigned char*>(out.data()), size);
  return out;
}

json ec_jwk(EVP_PKEY* pkey, const std::optional<std::string>& kid) {
  json jwk = {{"kty", "EC"},
              {"crv", "P-256"},
              {"x", b64(bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, 32))},
              {"y", b64(bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, 32))}};
  if (kid) jwk["kid"] = *kid;
  return jwk;
}

json rsa_jwk(EVP_PKEY* pkey, const std::optional<std::string>& kid) {
  json jwk = {{"kty", "RSA"},
              {"n", b64(bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, 0))},
              {"e", b64(bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, 0))}};
  if (kid) jwk["kid"] = *kid;
  return jwk;
}

std::string jwks_of(std::initializer_list<json> keys) { return json{{"keys", keys}}.dump(); }

std::string digest_sign(EVP_PKEY* pkey, std::string_view input) {
  MdCtx ctx(EVP_MD_CTX_new());
  EXPECT_EQ(EVP_DigestSignInit_ex(ctx.get(), nullptr, "SHA256", nullptr, nullptr, pkey, nullptr),
            1);
  size_t len = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  EXPECT_EQ(EVP_DigestSign(ctx.get(), nullptr, &len, in, input.size()), 1);
  std::string sig(len, '\0');
  EXPECT_EQ(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in,
                           input.size()),
            1);
  sig.resize(len);
  return sig;
}

std::string der_to_raw(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  EcdsaSig sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  std::string raw(64, '\0');
  BN_bn2binpad(r, reinterpret_cast<unsigned char*>(raw.data()), 32);
  BN_bn2binpad(s, reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
  return raw;
}

std::string hmac(std::string_view secret, std::string_view input) {
  unsigned char out[32];
  size_t len = 0;
  EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, secret.data(), secret.size(),
            reinterpret_cast<const unsigned char*>(input.data()), input.size(), out, sizeof(out),
            &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

enum class SigForm { kRaw, kDer };

// header and payload are JSON text exactly as they should appear in the token.
std::string es256_token(EVP_PKEY* key, const std::string& header, const std::string& payload,
                        SigForm form = SigForm::kRaw) {
  const std::string input = b64(header) + "." + b64(payload);
  const std::string der = digest_sign(key, input);
  return input + "." + b64(form == SigForm::kRaw ? der_to_raw(der) : der);
}

std::string rs256_token(EVP_PKEY* key, const std::string& header, const std::string& payload) {
  const std::string input = b64(header) + "." + b64(payload);
  return input + "." + b64(digest_sign(key, input));
}

std::string hs256_token(std::string_view secret, const std::string& header,
                        const std::string& payload) {
  const std::string input = b64(header) + "." + b64(payload);
  return input + "." + b64(hmac(secret, input));
}

std::string public_pem(EVP_PKEY* pkey) {
  Bio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PUBKEY(bio.get(), pkey);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

std::string public_der(EVP_PKEY* pkey) {
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(pkey, &der);
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

std::string private_pem(EVP_PKEY* pkey) {
  Bio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), pkey, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

KeySet must_load(const std::string& jwks, KeySetOptions options = {}) {
  auto keys = KeySet::from_jwks(jwks, options);
  EXPECT_TRUE(keys.is_ok()) << keys.status().to_string() << "\n" << jwks;
  return keys ? *keys : KeySet{};
}

// Expects a refusal whose message contains `reason`.
void expect_refused(const Result<std::string>& result, std::string_view reason) {
  ASSERT_FALSE(result.is_ok()) << "accepted, expected: " << reason;
  EXPECT_EQ(result.status().code(), StatusCode::kUnauthenticated);
  EXPECT_NE(result.status().message().find(reason), std::string::npos)
      << "message \"" << result.status().message() << "\" lacks \"" << reason << "\"";
}

// ---------------------------------------------------------------------------
// base64url

// The time rules verify_jwt and TokenIssuer share: boundaries, the leeway
// clamp, and no overflow at the ends of the range.
TEST(JwtTime, ExpiryAndNotBeforeBoundaries) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  EXPECT_FALSE(is_expired(1000, 5, 1005));  // exp + leeway is still valid
  EXPECT_TRUE(is_expired(1000, 5, 1006));
  EXPECT_TRUE(is_expired(1000, -7, 1001));                      // a negative leeway counts as 0
  EXPECT_FALSE(is_expired(1000, 3600, 1030));                   // clamped to kMaxLeewayS...
  EXPECT_TRUE(is_expired(1000, 3600, 1000 + kMaxLeewayS + 1));  // ...not more
  EXPECT_FALSE(is_expired(kMax, kMaxLeewayS, kMax));
  EXPECT_TRUE(is_expired(kMin, 5, 0));

  EXPECT_FALSE(is_not_yet_valid(1005, 5, 1000));  // nbf - leeway is already valid
  EXPECT_TRUE(is_not_yet_valid(1006, 5, 1000));
  EXPECT_FALSE(is_not_yet_valid(0, 5, 1000));  // 0: no nbf
  EXPECT_FALSE(is_not_yet_valid(kMax, kMaxLeewayS, kMax));
  EXPECT_TRUE(is_not_yet_valid(kMax, kMaxLeewayS, kMin));
}

TEST(Base64Url, RoundTripsEveryLength) {
  std::string bytes;
  for (int i = 0; i < 70; ++i) {
    auto decoded = base64url_decode(base64url_encode(bytes));
    ASSERT_TRUE(decoded.is_ok());
    EXPECT_EQ(*decoded, bytes);
    bytes.push_back(static_cast<char>(i * 37 + 251));
  }
}

TEST(Base64Url, KnownVectors) {
  EXPECT_EQ(base64url_encode(""), "");
  EXPECT_EQ(base64url_encode("f"), "Zg");
  EXPECT_EQ(base64url_encode("fo"), "Zm8");
  EXPECT_EQ(base64url_encode("foo"), "Zm9v");
  EXPECT_EQ(base64url_encode("foob"), "Zm9vYg");
  EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");
  EXPECT_EQ(*base64url_decode("-_8"), "\xfb\xff");
}

TEST(Base64Url, DecodeIsStrict) {
  for (const char* bad : {"Zg==", "Zm8=", "Zg=", "+_8", "-/8", "Zm9v\n", " Zm9v", "Zm 9v", "Z",
                          "Zm9vY", "Zh", "Zm9", "Zm9vYh", "Zm9v.", "Zm9v?", "\xc3\xa9"}) {
    // "Zh", "Zm9" and "Zm9vYh" leave non-zero unused bits: a second encoding
    // of the same bytes.
    EXPECT_FALSE(base64url_decode(bad).is_ok()) << bad;
  }
  // "Zm8" is "fo"; "Zm9" differs only in unused bits and must be refused.
  EXPECT_TRUE(base64url_decode("Zm8").is_ok());
  EXPECT_FALSE(base64url_decode("Zm9").is_ok());
}

// ---------------------------------------------------------------------------
// Wycheproof

const std::set<std::string> kSupportedAlgs = {"HS256", "RS256", "ES256"};

// The `alg` of a token's header, read leniently (the token may be malformed on
// purpose) only to decide whether the vector's algorithm is one we support.
std::optional<std::string> lenient_header_alg(const std::string& jws) {
  std::string part = jws.substr(0, jws.find('.'));
  std::string clean;
  for (char c : part) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') clean.push_back(c);
  }
  if (clean.size() % 4 == 1) clean.pop_back();
  std::string bytes;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : clean) {
    int v = std::isupper(static_cast<unsigned char>(c))   ? c - 'A'
            : std::islower(static_cast<unsigned char>(c)) ? c - 'a' + 26
            : std::isdigit(static_cast<unsigned char>(c)) ? c - '0' + 52
            : c == '-'                                    ? 62
                                                          : 63;
    acc = ((acc << 6) | static_cast<uint32_t>(v)) & 0xFFFFFF;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  json header = json::parse(bytes, nullptr, false);
  if (!header.is_object() || !header.contains("alg") || !header["alg"].is_string()) {
    return std::nullopt;
  }
  return header["alg"].get<std::string>();
}

struct Tally {
  int valid_accepted = 0;
  int invalid_refused = 0;
  int unsupported_refused = 0;
  int acceptable = 0;
};

// Vectors whose marking contradicts the data in the file; each entry states
// what a strict RFC 7515 verifier does instead and why.
struct Defect {
  bool accept;
  const char* why;
};
const std::map<int, Defect> kSignatureFileDefects = {
    {367,
     {true,
      "named invalidBase64Padding, but the token is byte-for-byte tcId 357 (valid): "
      "the padding is missing from the file"}},
    {370, {true, "named invalidBase64PaddingInPayload, but the token is byte-for-byte tcId 357"}},
    {372, {false, "marked valid, but '?' inside the header is not base64url (RFC 7515 §2)"}},
    {373, {false, "marked valid, but '?' inside the payload is not base64url (RFC 7515 §2)"}},
};

struct VectorRun {
  std::map<std::string, Tally> tally;
  int checked = 0;
};

// Checks one Wycheproof vector against `keys`; `key_alg` names the group's key
// algorithm for tokens whose header cannot be read at all.
void check_vector(const json& test, const KeySet& keys, const std::string& key_alg,
                  const std::map<int, Defect>& defects, VectorRun& run) {
  const int id = test.at("tcId").get<int>();
  const std::string comment = test.value("comment", "");
  const std::string expected = test.at("result").get<std::string>();
  const std::string jws =
      test.at("jws").is_string() ? test.at("jws").get<std::string>() : test.at("jws").dump();
  const auto got = verify_jws(jws, keys);
  const std::string alg = lenient_header_alg(jws).value_or(key_alg);
  const bool supported = kSupportedAlgs.count(alg) != 0;
  ++run.checked;

  bool want_accept = false;
  if (auto defect = defects.find(id); defect != defects.end()) {
    want_accept = defect->second.accept;
    EXPECT_EQ(got.is_ok(), want_accept) << "tcId " << id << " (" << comment << ", "
                                        << defect->second.why << "): " << got.status().to_string();
    return;
  }
  if (!supported) {
    EXPECT_FALSE(got.is_ok()) << "tcId " << id << " (" << comment << "): unsupported alg " << alg
                              << " accepted";
    if (!got.is_ok()) ++run.tally[alg.empty() ? "(none)" : alg].unsupported_refused;
    return;
  }
  if (expected == "acceptable") {
    // Either answer is allowed; the file currently has none of these.
    ++run.tally[alg].acceptable;
    return;
  }
  if (expected != "valid" && expected != "invalid") {
    ADD_FAILURE() << "tcId " << id << ": unknown result " << expected;
    return;
  }
  want_accept = expected == "valid";
  EXPECT_EQ(got.is_ok(), want_accept)
      << "tcId " << id << " (" << comment << ", alg " << alg << ") expected " << expected
      << ", got " << got.status().to_string();
  if (got.is_ok() == want_accept) {
    ++(want_accept ? run.tally[alg].valid_accepted : run.tally[alg].invalid_refused);
  }
}

void print_tally(const char* file, const VectorRun& run) {
  std::cout << file << ": " << run.checked << " vectors\n";
  for (const auto& [alg, t] : run.tally) {
    std::cout << "  " << alg << ": valid accepted " << t.valid_accepted << ", invalid refused "
              << t.invalid_refused << ", unsupported refused " << t.unsupported_refused
              << ", acceptable " << t.acceptable << "\n";
  }
}

std::string key_alg_of(const json& key) {
  const json& first = key.contains("keys") && !key["keys"].empty() ? key["keys"][0] : key;
  return first.value("alg", "");
}

TEST(Wycheproof, JsonWebSignature) {
  const json doc = load_vectors("json_web_signature_test.json");
  ASSERT_TRUE(doc.contains("testGroups"));
  std::map<int, std::string> token_of;
  for (const json& group : doc["testGroups"]) {
    for (const json& test : group["tests"]) {
      if (test["jws"].is_string()) token_of[test["tcId"].get<int>()] = test["jws"];
    }
  }
  // The premises of kSignatureFileDefects: if the file is ever fixed, these
  // fail and the entries must go.
  EXPECT_EQ(token_of[367], token_of[357]);
  EXPECT_EQ(token_of[370], token_of[357]);
  EXPECT_NE(token_of[372].find('?'), std::string::npos);
  EXPECT_NE(token_of[373].find('?'), std::string::npos);

  VectorRun run;
  for (const json& group : doc["testGroups"]) {
    const json& key = group.contains("public") ? group["public"] : group["private"];
    auto loaded = KeySet::from_jwks(key.dump(), KeySetOptions{.allow_hs256 = true});
    const KeySet keys = loaded ? *loaded : KeySet{};
    for (const json& test : group["tests"]) {
      check_vector(test, keys, key_alg_of(key), kSignatureFileDefects, run);
    }
  }
  print_tally("json_web_signature_test.json", run);
  EXPECT_EQ(run.checked, doc["numberOfTests"].get<int>());
  for (const std::string& alg : kSupportedAlgs) {
    EXPECT_GT(run.tally[alg].valid_accepted, 0) << alg;
    EXPECT_GT(run.tally[alg].invalid_refused, 0) << alg;
  }
}

// The key-set vectors: a set that Wycheproof wants refused must either fail to
// load or leave no key that verifies the vector. We hold ourselves to the
// stricter half: a group loads iff it has a valid vector with a supported alg.
TEST(Wycheproof, JsonWebKeySets) {
  const json doc = load_vectors("json_web_key_test.json");
  VectorRun run;
  for (const json& group : doc["testGroups"]) {
    const json& key = group.contains("public") ? group["public"] : group["private"];
    auto loaded = KeySet::from_jwks(key.dump(), KeySetOptions{.allow_hs256 = true});
    bool usable = false;
    for (const json& test : group["tests"]) {
      const auto alg = lenient_header_alg(test["jws"]);
      usable |= test["result"] == "valid" && alg && kSupportedAlgs.count(*alg) != 0;
    }
    EXPECT_EQ(loaded.is_ok(), usable)
        << "group " << group.value("comment", "") << ": " << loaded.status().to_string();
    const KeySet keys = loaded ? *loaded : KeySet{};
    for (const json& test : group["tests"]) check_vector(test, keys, key_alg_of(key), {}, run);
  }
  print_tally("json_web_key_test.json", run);
  EXPECT_EQ(run.checked, doc["numberOfTests"].get<int>());
  EXPECT_GT(run.tally["HS256"].valid_accepted, 0);
  EXPECT_GT(run.tally["RS256"].valid_accepted, 0);
}

// ---------------------------------------------------------------------------
// Attacks against verify_jws

class JwsAttack : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ec_ = generate_ec().release();
    rsa_ = generate_rsa(2048).release();
  }
  static void TearDownTestSuite() {
    EVP_PKEY_free(ec_);
    EVP_PKEY_free(rsa_);
  }

  static std::string header(const std::string& alg, const std::string& kid) {
    return json{{"alg", alg}, {"kid", kid}}.dump();
  }
  static KeySet ec_keys(KeySetOptions options = {}) {
    return must_load(jwks_of({ec_jwk(ec_, "ec-1")}), options);
  }
  static KeySet rsa_keys(KeySetOptions options = {}) {
    return must_load(jwks_of({rsa_jwk(rsa_, "rsa-1")}), options);
  }

  static inline EVP_PKEY* ec_ = nullptr;
  static inline EVP_PKEY* rsa_ = nullptr;
  const std::string payload_ = R"({"sub":"alice"})";
};

TEST_F(JwsAttack, ControlTokensVerify) {
  auto es = verify_jws(es256_token(ec_, header("ES256", "ec-1"), payload_), ec_keys());
  ASSERT_TRUE(es.is_ok()) << es.status().to_string();
  EXPECT_EQ(*es, payload_);
  auto rs = verify_jws(rs256_token(rsa_, header("RS256", "rsa-1"), payload_), rsa_keys());
  ASSERT_TRUE(rs.is_ok()) << rs.status().to_string();
  EXPECT_EQ(*rs, payload_);
}

TEST_F(JwsAttack, AlgNone) {
  const std::string body = b64(payload_);
  for (const char* alg : {"none", "None", "NONE"}) {
    const std::string h = b64(header(alg, "ec-1"));
    expect_refused(verify_jws(h + "." + body + ".", ec_keys()), "none");
    // With a signature that is valid for the same input under the real key.
    const std::string input = h + "." + body;
    expect_refused(verify_jws(input + "." + b64(der_to_raw(digest_sign(ec_, input))), ec_keys()),
                   "none");
  }
  // Without kid, against a key without kid.
  const KeySet anonymous = must_load(ec_jwk(ec_, std::nullopt).dump());
  expect_refused(verify_jws(b64(R"({"alg":"none"})") + "." + body + ".", anonymous), "none");
}

TEST_F(JwsAttack, HmacWithPublicKeyBytesAsSecret) {
  // The classic confusion: an HS256 token keyed with the verifier's public key,
  // in every form a careless verifier might hand to HMAC.
  const json rsa_public = rsa_jwk(rsa_, "rsa-1");
  const json ec_public = ec_jwk(ec_, "ec-1");
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"rsa-1",
       {public_pem(rsa_), public_der(rsa_), rsa_public.dump(),
        unb64(rsa_public["n"].get<std::string>())}},
      {"ec-1",
       {public_pem(ec_), public_der(ec_), ec_public.dump(),
        "\x04" + unb64(ec_public["x"].get<std::string>()) +
            unb64(ec_public["y"].get<std::string>())}},
  };
  for (const KeySetOptions options : {KeySetOptions{}, KeySetOptions{.allow_hs256 = true}}) {
    const KeySet keys = must_load(jwks_of({rsa_public, ec_public}), options);
    for (const auto& [kid, secrets] : cases) {
      for (const std::string& secret : secrets) {
        expect_refused(verify_jws(hs256_token(secret, header("HS256", kid), payload_), keys),
                       "alg does not match key");
      }
    }
  }
}

TEST_F(JwsAttack, AlgSwapBetweenAsymmetricKeys) {
  expect_refused(verify_jws(es256_token(ec_, header("ES256", "rsa-1"), payload_),
                            must_load(jwks_of({rsa_jwk(rsa_, "rsa-1"), ec_jwk(ec_, "ec-1")}))),
                 "alg does not match key");
  expect_refused(verify_jws(rs256_token(rsa_, header("RS256", "ec-1"), payload_),
                            must_load(jwks_of({rsa_jwk(rsa_, "rsa-1"), ec_jwk(ec_, "ec-1")}))),
                 "alg does not match key");
  for (const char* alg : {"PS256", "ES384", "ES512", "RS384", "RS512", "EdDSA", "HS512", "es256"}) {
    expect_refused(verify_jws(es256_token(ec_, header(alg, "ec-1"), payload_), ec_keys()),
                   "unsupported alg");
  }
}

TEST_F(JwsAttack, KidRules) {
  expect_refused(verify_jws(es256_token(ec_, header("ES256", "ec-2"), payload_), ec_keys()),
                 "unknown kid");
  expect_refused(verify_jws(es256_token(ec_, R"({"alg":"ES256"})", payload_), ec_keys()),
                 "missing kid");
  expect_refused(verify_jws(es256_token(ec_, R"({"alg":"ES256","kid":7})", payload_), ec_keys()),
                 "invalid kid");
  expect_refused(verify_jws(es256_token(ec_, R"({"alg":"ES256","kid":null})", payload_), ec_keys()),
                 "invalid kid");

  // A JWK without kid is chosen only by tokens without kid.
  const KeySet anonymous = must_load(jwks_of({ec_jwk(ec_, std::nullopt)}));
  ASSERT_NE(anonymous.find(""), nullptr);
  EXPECT_TRUE(verify_jws(es256_token(ec_, R"({"alg":"ES256"})", payload_), anonymous).is_ok());
  expect_refused(verify_jws(es256_token(ec_, header("ES256", "ec-1"), payload_), anonymous),
                 "unknown kid");
  // ... and next to keys that have one, it does not capture their tokens.
  const KeySet mixed = must_load(jwks_of({rsa_jwk(rsa_, "rsa-1"), ec_jwk(ec_, std::nullopt)}));
  EXPECT_TRUE(verify_jws(es256_token(ec_, R"({"alg":"ES256"})", payload_), mixed).is_ok());
  EXPECT_TRUE(verify_jws(rs256_token(rsa_, header("RS256", "rsa-1"), payload_), mixed).is_ok());
  expect_refused(verify_jws(rs256_token(rsa_, R"({"alg":"RS256"})", payload_), mixed),
                 "alg does not match key");
}

TEST_F(JwsAttack, RefusedHeaders) {
  const json attacker_jwk = ec_jwk(ec_, "ec-1");
  const std::vector<std::pair<std::string, json>> extras = {
      {"jwk", attacker_jwk},
      {"jku", "https://attacker.example/jwks.json"},
      {"x5u", "https://attacker.example/cert.pem"},
      {"x5c", json::array({"MIIB"})},
      {"crit", json::array({"exp"})},
  };
  for (const auto& [name, value] : extras) {
    json h = {{"alg", "ES256"}, {"kid", "ec-1"}};
    h[name] = value;
    // Signed with the real key: only the header rule can refuse it.
    expect_refused(verify_jws(es256_token(ec_, h.dump(), payload_), ec_keys()),
                   "header " + name + " refused");
  }
  // crit together with b64=false (RFC 7797) too.
  expect_refused(
      verify_jws(
          es256_token(ec_, R"({"alg":"ES256","kid":"ec-1","b64":false,"crit":["b64"]})", payload_),
          ec_keys()),
      "header crit refused");
}

TEST_F(JwsAttack, HeaderMustBeAStrictObject) {
  for (const char* h : {R"([{"alg":"ES256","kid":"ec-1"}])", R"("ES256")", "{", "",
                        R"({"alg":"ES256","kid":"ec-1","alg":"ES256"})",
                        R"({"alg":"none","kid":"ec-1","alg":"ES256"})",
                        R"({"alg":"ES256","kid":"ec-2","kid":"ec-1"})"}) {
    expect_refused(verify_jws(es256_token(ec_, h, payload_), ec_keys()), "invalid header");
  }
  expect_refused(verify_jws(es256_token(ec_, R"({"kid":"ec-1"})", payload_), ec_keys()),
                 "missing alg");
  expect_refused(
      verify_jws(es256_token(ec_, R"({"alg":["ES256"],"kid":"ec-1"})", payload_), ec_keys()),
      "missing alg");
  // Whitespace inside the JSON is fine (Wycheproof ValidSpacesInJsonHeader).
  EXPECT_TRUE(
      verify_jws(es256_token(ec_, "{ \"alg\" : \"ES256\",\n\t\"kid\" : \"ec-1\" }", payload_),
                 ec_keys())
          .is_ok());
}

TEST_F(JwsAttack, WrongNumberOfParts) {
  const std::string token = es256_token(ec_, header("ES256", "ec-1"), payload_);
  const size_t last = token.rfind('.');
  ASSERT_TRUE(verify_jws(token, ec_keys()).is_ok());
  for (const std::string& bad :
       {token.substr(0, last), token.substr(0, last + 1) + "", token + ".", token + ".e30",
        "." + token, token.substr(0, token.find('.')), std::string(), std::string(".."),
        std::string("..."), token.substr(0, last) + ".." + token.substr(last + 1)}) {
    EXPECT_FALSE(verify_jws(bad, ec_keys()).is_ok()) << bad;
  }
  expect_refused(verify_jws(token + ".", ec_keys()), "malformed token");
  expect_refused(verify_jws(token.substr(0, last), ec_keys()), "malformed token");
}

TEST_F(JwsAttack, NonStrictBase64Url) {
  // Find a token whose signature text uses '-' or '_', so that the standard
  // alphabet spelling of the same bytes differs.
  std::string token;
  for (int i = 0; i < 64 && token.empty(); ++i) {
    std::string t = es256_token(ec_, header("ES256", "ec-1"), payload_);
    const std::string sig = t.substr(t.rfind('.') + 1);
    if (sig.find_first_of("-_") != std::string::npos) token = t;
  }
  ASSERT_FALSE(token.empty());
  ASSERT_TRUE(verify_jws(token, ec_keys()).is_ok());
  const size_t last = token.rfind('.');
  const size_t first = token.find('.');
  std::string std_alphabet = token;
  for (size_t i = last + 1; i < std_alphabet.size(); ++i) {
    if (std_alphabet[i] == '-') std_alphabet[i] = '+';
    if (std_alphabet[i] == '_') std_alphabet[i] = '/';
  }
  expect_refused(verify_jws(std_alphabet, ec_keys()), "invalid base64url in signature");
  // 64-byte signature: 86 characters, standard padding would add "==".
  expect_refused(verify_jws(token + "==", ec_keys()), "invalid base64url in signature");
  // The header as standard base64 would pad it.
  const size_t header_size = header("ES256", "ec-1").size();
  ASSERT_NE(header_size % 3, 0u);
  const std::string padding(3 - header_size % 3, '=');
  std::string padded_header = token.substr(0, first) + padding + token.substr(first);
  expect_refused(verify_jws(padded_header, ec_keys()), "invalid base64url in header");
  std::string spaced = token;
  spaced.insert(first + 1, " ");
  expect_refused(verify_jws(spaced, ec_keys()), "invalid base64url in payload");
  std::string newline = token;
  newline.insert(last + 10, "\n");
  expect_refused(verify_jws(newline, ec_keys()), "invalid base64url in signature");
}

TEST_F(JwsAttack, Es256SignatureForms) {
  const std::string h = header("ES256", "ec-1");
  const std::string input = b64(h) + "." + b64(payload_);
  const std::string der = digest_sign(ec_, input);
  const std::string raw = der_to_raw(der);
  ASSERT_TRUE(verify_jws(input + "." + b64(raw), ec_keys()).is_ok());
  expect_refused(verify_jws(input + "." + b64(der), ec_keys()), "bad signature");
  expect_refused(verify_jws(input + "." + b64(raw.substr(0, 63)), ec_keys()), "bad signature");
  expect_refused(verify_jws(input + "." + b64(raw + std::string(1, '\0')), ec_keys()),
                 "bad signature");
  expect_refused(verify_jws(input + "." + b64(std::string(1, '\0') + raw), ec_keys()),
                 "bad signature");
  expect_refused(verify_jws(input + ".", ec_keys()), "bad signature");
  // r or s equal to 0 or to the group order n, or above n, never reach OpenSSL.
  const std::string zeros(32, '\0');
  expect_refused(verify_jws(input + "." + b64(zeros + raw.substr(32)), ec_keys()), "bad signature");
  expect_refused(verify_jws(input + "." + b64(raw.substr(0, 32) + zeros), ec_keys()),
                 "bad signature");
  const std::string n = unb64("_____wAAAAD__________7zm-q2nF56E87nKwvxjJVE");
  ASSERT_EQ(n.size(), 32u);
  expect_refused(verify_jws(input + "." + b64(n + raw.substr(32)), ec_keys()), "bad signature");
  expect_refused(verify_jws(input + "." + b64(raw.substr(0, 32) + n), ec_keys()), "bad signature");
  expect_refused(verify_jws(input + "." + b64(std::string(64, '\xff')), ec_keys()),
                 "bad signature");
  // (r, n - s) is the other valid signature for the same input: ECDSA is
  // malleable and JWS does not ask for low-s, so it verifies. Token identity
  // must come from `jti`, never from the signature bytes.
  Bn order(BN_bin2bn(reinterpret_cast<const unsigned char*>(n.data()), 32, nullptr));
  Bn s_value(BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()) + 32, 32, nullptr));
  ASSERT_EQ(BN_sub(s_value.get(), order.get(), s_value.get()), 1);
  std::string flipped = raw;
  BN_bn2binpad(s_value.get(), reinterpret_cast<unsigned char*>(flipped.data()) + 32, 32);
  ASSERT_NE(flipped, raw);
  EXPECT_TRUE(verify_jws(input + "." + b64(flipped), ec_keys()).is_ok());
}

TEST_F(JwsAttack, Rs256SignatureLength) {
  const std::string h = header("RS256", "rsa-1");
  const std::string input = b64(h) + "." + b64(payload_);
  std::string sig = digest_sign(rsa_, input);
  ASSERT_EQ(sig.size(), 256u);
  ASSERT_TRUE(verify_jws(input + "." + b64(sig), rsa_keys()).is_ok());
  expect_refused(verify_jws(input + "." + b64(std::string(1, '\0') + sig), rsa_keys()),
                 "bad signature");
  expect_refused(verify_jws(input + "." + b64(sig.substr(1)), rsa_keys()), "bad signature");
  sig[100] ^= 1;
  expect_refused(verify_jws(input + "." + b64(sig), rsa_keys()), "bad signature");
}

TEST_F(JwsAttack, Hs256NeedsExplicitPermission) {
  const std::string secret(32, 'k');
  const json oct = {{"kty", "oct"}, {"kid", "h-1"}, {"k", b64(secret)}};
  EXPECT_FALSE(KeySet::from_jwks(jwks_of({oct})).is_ok());
  EXPECT_FALSE(KeySet::from_jwks(oct.dump()).is_ok());
  const std::string token = hs256_token(secret, header("HS256", "h-1"), payload_);

  // Default options: the oct key is skipped, the EC key next to it loads.
  const KeySet no_hmac = must_load(jwks_of({oct, ec_jwk(ec_, "ec-1")}));
  EXPECT_EQ(no_hmac.size(), 1u);
  expect_refused(verify_jws(token, no_hmac), "unknown kid");

  const KeySet hmac_only = must_load(jwks_of({oct}), KeySetOptions{.allow_hs256 = true});
  auto ok = verify_jws(token, hmac_only);
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_EQ(*ok, payload_);
  std::string tampered = token;
  tampered.back() = tampered.back() == 'A' ? 'B' : 'A';
  EXPECT_FALSE(verify_jws(tampered, hmac_only).is_ok());
  expect_refused(
      verify_jws(token.substr(0, token.rfind('.') + 1) + b64(std::string(31, 'x')), hmac_only),
      "bad signature");

  // A shared secret next to public keys is refused as a whole.
  EXPECT_FALSE(
      KeySet::from_jwks(jwks_of({oct, ec_jwk(ec_, "ec-1")}), KeySetOptions{.allow_hs256 = true})
          .is_ok());
  // Short secrets are refused at load and, for hand-built keys, at verification.
  const json short_oct = {{"kty", "oct"}, {"kid", "h-1"}, {"k", b64(std::string(31, 'k'))}};
  EXPECT_FALSE(KeySet::from_jwks(short_oct.dump(), KeySetOptions{.allow_hs256 = true}).is_ok());
  KeySet manual;
  manual.add(Key{.kid = "h-1", .alg = Alg::kHS256, .pkey = nullptr, .hmac_secret = "short"});
  EXPECT_FALSE(verify_jws(hs256_token("short", header("HS256", "h-1"), payload_), manual).is_ok());
}

TEST_F(JwsAttack, TokenSizeLimit) {
  const std::string big_payload = json{{"pad", std::string(11000, 'a')}}.dump();
  auto fits = verify_jws(es256_token(ec_, header("ES256", "ec-1"), big_payload), ec_keys());
  EXPECT_TRUE(fits.is_ok()) << fits.status().to_string();
  const std::string huge_payload = json{{"pad", std::string(13000, 'a')}}.dump();
  const std::string huge = es256_token(ec_, header("ES256", "ec-1"), huge_payload);
  ASSERT_GT(huge.size(), 16u * 1024u);
  expect_refused(verify_jws(huge, ec_keys()), "token too long");
}

TEST_F(JwsAttack, HandBuiltKeyOfWrongType) {
  // A Key whose alg says ES256 but whose pkey is RSA never verifies.
  KeySet keys = rsa_keys();
  Key wrong = *keys.find("rsa-1");
  wrong.kid = "mixed";
  wrong.alg = Alg::kES256;
  keys.add(wrong);
  expect_refused(verify_jws(es256_token(ec_, header("ES256", "mixed"), payload_), keys),
                 "bad signature");
}

// ---------------------------------------------------------------------------
// JWK parsing

TEST_F(JwsAttack, JwkRules) {
  json base = ec_jwk(ec_, "ec-1");
  const std::string token = es256_token(ec_, header("ES256", "ec-1"), payload_);
  auto loads = [&](const json& jwk) { return KeySet::from_jwks(jwks_of({jwk})).is_ok(); };

  EXPECT_TRUE(loads(base));
  json with = base;
  with["alg"] = "ES256";
  with["use"] = "sig";
  with["key_ops"] = {"verify"};
  EXPECT_TRUE(loads(with));
  with["key_ops"] = {"sign", "verify"};
  EXPECT_TRUE(loads(with));

  for (const auto& [member, value] :
       std::vector<std::pair<std::string, json>>{{"use", "enc"},
                                                 {"use", 1},
                                                 {"key_ops", {"sign"}},
                                                 {"key_ops", "verify"},
                                                 {"alg", "RS256"},
                                                 {"alg", "ES384"},
                                                 {"alg", "none"},
                                                 {"kid", 5},
                                                 {"crv", "P-384"},
                                                 {"crv", "secp256k1"},
                                                 {"kty", "OKP"}}) {
    json jwk = base;
    jwk[member] = value;
    EXPECT_FALSE(loads(jwk)) << member << "=" << value;
  }
  json short_x = base;
  short_x["x"] = b64(unb64(base["x"].get<std::string>()).substr(1));
  EXPECT_FALSE(loads(short_x));
  json off_curve = base;
  std::string y = unb64(base["y"].get<std::string>());
  y[31] ^= 1;
  off_curve["y"] = b64(y);
  EXPECT_FALSE(loads(off_curve));
  json padded = base;
  padded["x"] = base["x"].get<std::string>() + "=";
  EXPECT_FALSE(loads(padded));

  // Private members are accepted and ignored.
  json with_d = base;
  with_d["d"] = b64(bn_param(ec_, OSSL_PKEY_PARAM_PRIV_KEY, 32));
  const KeySet from_private = must_load(jwks_of({with_d}));
  EXPECT_TRUE(verify_jws(token, from_private).is_ok());

  // Pinning by type and by alg.
  EXPECT_EQ(must_load(jwks_of({base})).find("ec-1")->alg, Alg::kES256);
  EXPECT_EQ(must_load(jwks_of({rsa_jwk(rsa_, "r")})).find("r")->alg, Alg::kRS256);
  const json oct = {{"kty", "oct"}, {"kid", "h"}, {"k", b64(std::string(32, 'k'))}};
  EXPECT_EQ(must_load(oct.dump(), KeySetOptions{.allow_hs256 = true}).find("h")->alg, Alg::kHS256);

  // Document shapes.
  EXPECT_FALSE(KeySet::from_jwks("").is_ok());
  EXPECT_FALSE(KeySet::from_jwks("[]").is_ok());
  EXPECT_FALSE(KeySet::from_jwks(R"({"keys":{}})").is_ok());
  EXPECT_FALSE(KeySet::from_jwks(R"({"keys":[]})").is_ok());
  EXPECT_FALSE(KeySet::from_jwks(R"({"keys":[1,"x",null]})").is_ok());
  EXPECT_FALSE(KeySet::from_jwks(R"({"foo":1})").is_ok());
  EXPECT_FALSE(KeySet::from_jwks("{\"keys\":[" + base.dump()).is_ok());
  // Unusable keys are skipped next to a usable one.
  json enc = base;
  enc["use"] = "enc";
  enc["kid"] = "enc-1";
  const KeySet partial =
      must_load(jwks_of({enc, json{{"kty", "OKP"}, {"crv", "Ed25519"}, {"x", "AA"}}, base}));
  EXPECT_EQ(partial.size(), 1u);
  EXPECT_EQ(partial.find("enc-1"), nullptr);
  // Duplicate kids, including two keys without kid, refuse the document.
  EXPECT_FALSE(KeySet::from_jwks(jwks_of({base, rsa_jwk(rsa_, "ec-1")})).is_ok());
  EXPECT_FALSE(
      KeySet::from_jwks(jwks_of({ec_jwk(ec_, std::nullopt), rsa_jwk(rsa_, std::nullopt)})).is_ok());
  // ... even when one of the two could not be used anyway.
  json enc_twin = base;
  enc_twin["use"] = "enc";
  EXPECT_FALSE(KeySet::from_jwks(jwks_of({base, enc_twin})).is_ok());
}

TEST_F(JwsAttack, RsaKeyRules) {
  Pkey small(generate_rsa(1024));
  EXPECT_FALSE(KeySet::from_jwks(rsa_jwk(small.get(), "s").dump()).is_ok());
  EXPECT_EQ(rsa_jwk(rsa_, "r")["e"], "AQAB");
  EXPECT_TRUE(KeySet::from_jwks(rsa_jwk(rsa_, "r").dump()).is_ok());
  json e3 = rsa_jwk(rsa_, "r");
  e3["e"] = b64("\x03");
  EXPECT_FALSE(KeySet::from_jwks(e3.dump()).is_ok());
  json e1 = rsa_jwk(rsa_, "r");
  e1["e"] = b64("\x01");
  EXPECT_FALSE(KeySet::from_jwks(e1.dump()).is_ok());
  json e_even = rsa_jwk(rsa_, "r");
  e_even["e"] = b64("\x01\x00\x00");
  EXPECT_FALSE(KeySet::from_jwks(e_even.dump()).is_ok());
  json e_huge = rsa_jwk(rsa_, "r");
  e_huge["e"] = b64("\x01" + std::string(32, '\0') + "\x01");
  EXPECT_FALSE(KeySet::from_jwks(e_huge.dump()).is_ok());
  json even = rsa_jwk(rsa_, "r");
  std::string n = unb64(even["n"].get<std::string>());
  n.back() = static_cast<char>(n.back() & ~1);
  even["n"] = b64(n);
  EXPECT_FALSE(KeySet::from_jwks(even.dump()).is_ok());
  json wrong_alg = rsa_jwk(rsa_, "r");
  wrong_alg["alg"] = "PS256";
  EXPECT_FALSE(KeySet::from_jwks(wrong_alg.dump()).is_ok());
}

// ---------------------------------------------------------------------------
// Claims

class JwtClaims : public ::testing::Test {
 protected:
  void SetUp() override {
    Pkey key = generate_ec();
    auto signer = Signer::from_pem(private_pem(key.get()), "claims-key");
    ASSERT_TRUE(signer.is_ok()) << signer.status().to_string();
    signer_ = std::make_unique<Signer>(std::move(signer).value());
    keys_ = must_load(signer_->public_jwks());
    options_.issuer = "https://chat.example";
    options_.audience = "chat";
  }

  json good() const {
    return {{"sub", "alice"},
            {"iss", "https://chat.example"},
            {"aud", "chat"},
            {"iat", kNow - 10},
            {"exp", kNow + 300},
            {"jti", "j-1"},
            {"roles", {"admin", "user"}}};
  }
  Result<Claims> verify(const json& claims) const {
    return verify_jwt(signer_->sign(claims), keys_, options_, kNow);
  }
  void expect_refused(const json& claims, std::string_view reason) const {
    auto got = verify(claims);
    ASSERT_FALSE(got.is_ok()) << claims.dump();
    EXPECT_EQ(got.status().code(), StatusCode::kUnauthenticated);
    EXPECT_NE(got.status().message().find(reason), std::string::npos)
        << got.status().message() << " vs " << reason;
  }
  json with(const char* name, json value) const {
    json c = good();
    c[name] = std::move(value);
    return c;
  }
  json without(const char* name) const {
    json c = good();
    c.erase(name);
    return c;
  }

  std::unique_ptr<Signer> signer_;
  KeySet keys_;
  VerifyOptions options_;
};

TEST_F(JwtClaims, ValidTokenYieldsClaims) {
  auto got = verify(good());
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  EXPECT_EQ(got->sub, "alice");
  EXPECT_EQ(got->iss, "https://chat.example");
  EXPECT_EQ(got->jti, "j-1");
  EXPECT_EQ(got->aud, std::vector<std::string>{"chat"});
  EXPECT_EQ(got->roles, (std::vector<std::string>{"admin", "user"}));
  EXPECT_TRUE(got->has_role("admin"));
  EXPECT_FALSE(got->has_role("root"));
  EXPECT_EQ(got->iat, kNow - 10);
  EXPECT_EQ(got->exp, kNow + 300);
  EXPECT_EQ(got->nbf, 0);
  EXPECT_EQ(got->raw, good());
}

TEST_F(JwtClaims, Expiry) {
  options_.leeway_s = 5;
  expect_refused(with("exp", kNow - 6), "token expired");
  expect_refused(with("exp", kNow - 100000), "token expired");
  EXPECT_TRUE(verify(with("exp", kNow - 5)).is_ok());
  EXPECT_TRUE(verify(with("exp", kNow)).is_ok());
  expect_refused(without("exp"), "missing exp");
  expect_refused(with("exp", "tomorrow"), "invalid exp");
  expect_refused(with("exp", nullptr), "invalid exp");
  expect_refused(with("exp", true), "invalid exp");
  // Fractional NumericDate: rounded toward expiry.
  EXPECT_TRUE(verify(with("exp", static_cast<double>(kNow) - 5.0)).is_ok());
  expect_refused(with("exp", static_cast<double>(kNow) - 5.5), "token expired");
  // Far-future values do not overflow into the past.
  EXPECT_TRUE(verify(with("exp", std::numeric_limits<int64_t>::max())).is_ok());
  EXPECT_TRUE(verify(with("exp", std::numeric_limits<uint64_t>::max())).is_ok());
  EXPECT_TRUE(verify(with("exp", 1e300)).is_ok());
  expect_refused(with("exp", -1e300), "token expired");
}

TEST_F(JwtClaims, NotBefore) {
  options_.leeway_s = 5;
  expect_refused(with("nbf", kNow + 6), "token not yet valid");
  EXPECT_TRUE(verify(with("nbf", kNow + 5)).is_ok());
  auto got = verify(with("nbf", kNow - 1));
  ASSERT_TRUE(got.is_ok());
  EXPECT_EQ(got->nbf, kNow - 1);
  expect_refused(with("nbf", static_cast<double>(kNow) + 5.5), "token not yet valid");
  expect_refused(with("nbf", "now"), "invalid nbf");
}

TEST_F(JwtClaims, LeewayIsClampedTo30Seconds) {
  options_.leeway_s = 3600;
  EXPECT_TRUE(verify(with("exp", kNow - 30)).is_ok());
  expect_refused(with("exp", kNow - 31), "token expired");
  EXPECT_TRUE(verify(with("nbf", kNow + 30)).is_ok());
  expect_refused(with("nbf", kNow + 31), "token not yet valid");
  options_.leeway_s = -100;
  EXPECT_TRUE(verify(with("exp", kNow)).is_ok());
  expect_refused(with("exp", kNow - 1), "token expired");
  EXPECT_TRUE(verify(with("nbf", kNow)).is_ok());
  expect_refused(with("nbf", kNow + 1), "token not yet valid");
}

TEST_F(JwtClaims, IssuerAndAudience) {
  expect_refused(with("iss", "https://evil.example"), "wrong issuer");
  expect_refused(with("iss", "https://chat.example/"), "wrong issuer");
  expect_refused(without("iss"), "missing iss");
  expect_refused(with("iss", 1), "missing iss");
  expect_refused(with("aud", "other"), "wrong audience");
  expect_refused(without("aud"), "missing aud");
  expect_refused(with("aud", json::array()), "wrong audience");
  expect_refused(with("aud", json::array({"a", "b"})), "wrong audience");
  expect_refused(with("aud", json::array({"chat", 1})), "invalid aud");
  expect_refused(with("aud", 5), "invalid aud");
  auto got = verify(with("aud", json::array({"other", "chat"})));
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  EXPECT_EQ(got->aud, (std::vector<std::string>{"other", "chat"}));
}

TEST_F(JwtClaims, Subject) {
  expect_refused(without("sub"), "missing sub");
  expect_refused(with("sub", ""), "missing sub");
  expect_refused(with("sub", 42), "missing sub");
  expect_refused(with("jti", 42), "invalid jti");
  expect_refused(with("iat", "x"), "invalid iat");
}

TEST_F(JwtClaims, Roles) {
  auto none = verify(without("roles"));
  ASSERT_TRUE(none.is_ok());
  EXPECT_TRUE(none->roles.empty());
  EXPECT_TRUE(verify(with("roles", json::array())).is_ok());
  expect_refused(with("roles", "admin"), "invalid roles");
  expect_refused(with("roles", json::array({"admin", 1})), "invalid roles");
  options_.roles_claim = "groups";
  auto custom = verify(with("groups", json::array({"ops"})));
  ASSERT_TRUE(custom.is_ok());
  EXPECT_EQ(custom->roles, std::vector<std::string>{"ops"});
  EXPECT_FALSE(custom->has_role("admin"));  // "roles" is not read any more
}

TEST_F(JwtClaims, PayloadMustBeAStrictObject) {
  expect_refused(json::array({good()}), "payload is not a JSON object");
  expect_refused(json("alice"), "payload is not a JSON object");
  // Duplicate claims: signed correctly, refused all the same.
  Pkey key = generate_ec();
  const KeySet keys = must_load(jwks_of({ec_jwk(key.get(), "k")}));
  const std::string h = R"({"alg":"ES256","kid":"k"})";
  const std::string body = good().dump();
  const std::string dup = body.substr(0, body.size() - 1) + R"(,"sub":"admin"})";
  auto got = verify_jwt(es256_token(key.get(), h, dup), keys, options_, kNow);
  ASSERT_FALSE(got.is_ok());
  EXPECT_EQ(got.status().message(), "payload is not a JSON object");
  EXPECT_TRUE(verify_jwt(es256_token(key.get(), h, body), keys, options_, kNow).is_ok());
  EXPECT_FALSE(verify_jwt(es256_token(key.get(), h, "not json"), keys, options_, kNow).is_ok());
}

TEST_F(JwtClaims, SignatureErrorsComeFirst) {
  auto got = verify_jwt("a.b.c", keys_, options_, kNow);
  ASSERT_FALSE(got.is_ok());
  EXPECT_EQ(got.status().code(), StatusCode::kUnauthenticated);
  const KeySet other = must_load(jwks_of({ec_jwk(generate_ec().get(), "claims-key")}));
  auto wrong_key = verify_jwt(signer_->sign(good()), other, options_, kNow);
  ASSERT_FALSE(wrong_key.is_ok());
  EXPECT_EQ(wrong_key.status().message(), "bad signature");
}

TEST_F(JwtClaims, UnconfiguredVerifierRefusesEverything) {
  VerifyOptions empty;
  auto got = verify_jwt(signer_->sign(with("iss", "")), keys_, empty, kNow);
  ASSERT_FALSE(got.is_ok());
  EXPECT_EQ(got.status().code(), StatusCode::kInternal);
}

// ---------------------------------------------------------------------------
// Signer

class TempDir {
 public:
  TempDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "jwt_test.XXXXXX").string();
    path_ = ::mkdtemp(templ.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

mode_t mode_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

TEST(Signer, CreatesThenLoadsTheSameKey) {
  TempDir dir;
  const std::string pem = dir / "data/keys/issuer.pem";
  const std::string jwks = dir / "public/jwks.json";
  auto created = Signer::load_or_create(pem, jwks);
  ASSERT_TRUE(created.is_ok()) << created.status().to_string();
  EXPECT_EQ(mode_of(pem), 0600u);
  EXPECT_EQ(mode_of(jwks), 0644u);
  EXPECT_TRUE(std::filesystem::is_directory(dir / "data/keys"));
  EXPECT_EQ(read_text(pem).rfind("-----BEGIN PRIVATE KEY-----", 0), 0u);
  EXPECT_EQ(created->kid().size(), 16u);  // base64url of 12 bytes
  const std::string published = read_text(jwks);

  auto loaded = Signer::load_or_create(pem, jwks);
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().to_string();
  EXPECT_EQ(loaded->kid(), created->kid());
  EXPECT_EQ(loaded->public_jwks(), created->public_jwks());
  EXPECT_EQ(read_text(jwks), published);

  // The JWKS is rewritten when missing, with the same content.
  std::filesystem::remove(jwks);
  auto again = Signer::load_or_create(pem, jwks);
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_EQ(again->kid(), created->kid());
  EXPECT_EQ(read_text(jwks), published);
  EXPECT_EQ(mode_of(jwks), 0644u);

  // No temporary files are left behind.
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir / "")) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp-"), std::string::npos) << entry.path();
  }
}

TEST(Signer, KidIsDerivedFromThePublicPoint) {
  TempDir dir;
  auto signer = Signer::load_or_create(dir / "k.pem", dir / "jwks.json");
  ASSERT_TRUE(signer.is_ok());
  const json doc = json::parse(read_text(dir / "jwks.json"));
  ASSERT_EQ(doc["keys"].size(), 1u);
  const json& jwk = doc["keys"][0];
  EXPECT_EQ(jwk["kty"], "EC");
  EXPECT_EQ(jwk["crv"], "P-256");
  EXPECT_EQ(jwk["alg"], "ES256");
  EXPECT_EQ(jwk["use"], "sig");
  EXPECT_FALSE(jwk.contains("d"));
  const std::string point =
      "\x04" + unb64(jwk["x"].get<std::string>()) + unb64(jwk["y"].get<std::string>());
  unsigned char digest[32];
  unsigned int len = 0;
  EVP_Digest(point.data(), point.size(), digest, &len, EVP_sha256(), nullptr);
  EXPECT_EQ(jwk["kid"], b64(std::string_view(reinterpret_cast<char*>(digest), 12)));
  EXPECT_EQ(jwk["kid"], signer->kid());

  // from_pem with an empty kid derives the same one.
  auto from_pem = Signer::from_pem(read_text(dir / "k.pem"), "");
  ASSERT_TRUE(from_pem.is_ok());
  EXPECT_EQ(from_pem->kid(), signer->kid());
  auto named = Signer::from_pem(read_text(dir / "k.pem"), "custom");
  ASSERT_TRUE(named.is_ok());
  EXPECT_EQ(named->kid(), "custom");
}

TEST(Signer, SignVerifyRoundTrip) {
  TempDir dir;
  auto signer = Signer::load_or_create(dir / "k.pem", dir / "jwks.json");
  ASSERT_TRUE(signer.is_ok());
  const json claims = {{"sub", "bob"},
                       {"iss", "chat"},
                       {"aud", "chat-api"},
                       {"exp", kNow + 60},
                       {"roles", {"admin"}}};
  const std::string token = signer->sign(claims);
  const size_t first = token.find('.');
  const size_t last = token.rfind('.');
  EXPECT_EQ(json::parse(unb64(token.substr(0, first))),
            (json{{"alg", "ES256"}, {"typ", "JWT"}, {"kid", signer->kid()}}));
  EXPECT_EQ(unb64(token.substr(last + 1)).size(), 64u);

  VerifyOptions options;
  options.issuer = "chat";
  options.audience = "chat-api";
  for (const std::string& jwks : {signer->public_jwks(), read_text(dir / "jwks.json")}) {
    const KeySet keys = must_load(jwks);
    auto got = verify_jwt(token, keys, options, kNow);
    ASSERT_TRUE(got.is_ok()) << got.status().to_string();
    EXPECT_EQ(got->sub, "bob");
    EXPECT_TRUE(got->has_role("admin"));
  }
  // Another signer's key does not verify it.
  auto other = Signer::load_or_create(dir / "other.pem", dir / "other.json");
  ASSERT_TRUE(other.is_ok());
  EXPECT_NE(other->kid(), signer->kid());
  EXPECT_FALSE(verify_jwt(token, must_load(other->public_jwks()), options, kNow).is_ok());
}

TEST(Signer, ConcurrentSigning) {
  Pkey key = generate_ec();
  auto signer = Signer::from_pem(private_pem(key.get()), "");
  ASSERT_TRUE(signer.is_ok());
  const KeySet keys = must_load(signer->public_jwks());
  VerifyOptions options;
  options.issuer = "chat";
  options.audience = "chat";
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        const json claims = {{"sub", "u" + std::to_string(t * 100 + i)},
                             {"iss", "chat"},
                             {"aud", "chat"},
                             {"exp", kNow + 60}};
        if (!verify_jwt(signer->sign(claims), keys, options, kNow).is_ok()) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(Signer, RefusesWrongKeys) {
  EXPECT_FALSE(Signer::from_pem("", "k").is_ok());
  EXPECT_FALSE(
      Signer::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "k")
          .is_ok());
  Pkey rsa = generate_rsa(2048);
  EXPECT_FALSE(Signer::from_pem(private_pem(rsa.get()), "k").is_ok());
  Pkey p384(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"));
  EXPECT_FALSE(Signer::from_pem(private_pem(p384.get()), "k").is_ok());
  // Encrypted PEM: refused without prompting for a passphrase.
  Pkey ec = generate_ec();
  Bio bio(BIO_new(BIO_s_mem()));
  const char pass[] = "secret";
  ASSERT_EQ(PEM_write_bio_PKCS8PrivateKey(bio.get(), ec.get(), EVP_aes_256_cbc(), pass,
                                          sizeof(pass) - 1, nullptr, nullptr),
            1);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  EXPECT_FALSE(Signer::from_pem(std::string(data, static_cast<size_t>(len)), "k").is_ok());
  // Public key only.
  EXPECT_FALSE(Signer::from_pem(public_pem(ec.get()), "k").is_ok());

  TempDir dir;
  std::ofstream(dir / "bad.pem") << "garbage";
  auto bad = Signer::load_or_create(dir / "bad.pem", dir / "jwks.json");
  EXPECT_FALSE(bad.is_ok());
  EXPECT_FALSE(std::filesystem::exists(dir / "jwks.json"));
}

}  // namespace
}  // namespace chat::jwt
