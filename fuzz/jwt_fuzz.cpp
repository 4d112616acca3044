// Fuzzes the JOSE code every MQTT CONNECT and REST call runs (common/jwt.h):
// base64url, compact JWS verification, JWT claim checks and JWK(S) parsing.
//
// Verification uses fixed keys and a fixed clock so the signature path runs:
// - an HS256 key of ours: the harness signs fuzzed header/claims bytes with it,
//   so the claim checks behind a valid signature are fuzzed too;
// - every key of the Wycheproof JOSE vectors (/work/shared/testdata, read in
//   place at start-up), with their tokens as the base that inputs mutate.
//
// Invariants: no exception escapes; base64url round-trips and the decoder
// accepts exactly one encoding per byte string; a token Wycheproof marks
// invalid never verifies; accepted claims satisfy every documented rule
// (iss, aud, sub, exp/nbf against the clock with the leeway); verification
// is deterministic.
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "chat/common/jwt.h"
#include "fuzz_check.h"

using nlohmann::json;
namespace jwt = chat::jwt;

namespace {

constexpr int64_t kNow = 1'700'000'000;
const std::string kSecret = "fuzz-secret-fuzz-secret-fuzz-sec";  // 32 bytes

struct WycheproofGroup {
  jwt::KeySet keys;
  std::vector<std::pair<std::string, bool>> tokens;  // jws, valid
};

struct State {
  jwt::KeySet ours;
  jwt::VerifyOptions options;
  std::vector<WycheproofGroup> groups;
};

State* make_state() {
  auto* s = new State;
  json jwk{
      {"kty", "oct"}, {"kid", "fuzz"}, {"alg", "HS256"}, {"k", jwt::base64url_encode(kSecret)}};
  jwt::KeySetOptions hs;
  hs.allow_hs256 = true;
  auto ours = jwt::KeySet::from_jwks(jwk.dump(), hs);
  FUZZ_CHECK(ours.is_ok());
  s->ours = std::move(ours).value();
  s->options.issuer = "chat-platform";
  s->options.audience = "chat";
  s->options.leeway_s = 5;

  std::ifstream in(std::string(CHAT_TESTDATA_DIR) + "/wycheproof/json_web_signature_test.json");
  std::stringstream text;
  text << in.rdbuf();
  json doc = json::parse(text.str(), nullptr, false);
  if (!doc.is_object()) return s;  // no test data: the other modes still run
  // The file marks a few tokens invalid that are byte for byte a valid one
  // (tests/common/jwt_test.cpp, kSignatureFileDefects): those count as valid.
  std::set<std::string> valid_tokens;
  for (const auto& g : doc["testGroups"]) {
    for (const auto& t : g["tests"]) {
      if (t["jws"].is_string() && t["result"] == "valid") valid_tokens.insert(t["jws"]);
    }
  }
  for (const auto& g : doc["testGroups"]) {
    const json& key = g.contains("public") ? g["public"] : g["private"];
    auto keys = jwt::KeySet::from_jwks(key.dump(), hs);
    if (!keys) continue;
    WycheproofGroup group{std::move(keys).value(), {}};
    for (const auto& t : g["tests"]) {
      if (!t.contains("jws") || !t["jws"].is_string()) continue;
      const std::string jws = t["jws"].get<std::string>();
      group.tokens.emplace_back(jws, valid_tokens.count(jws) > 0);
    }
    if (!group.tokens.empty()) s->groups.push_back(std::move(group));
  }
  return s;
}

const State& state() {
  static const State* s = make_state();
  return *s;
}

std::string hs256(std::string_view signing_input) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), kSecret.data(), static_cast<int>(kSecret.size()),
       reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), mac,
       &len);
  return std::string(reinterpret_cast<const char*>(mac), len);
}

void check_accepted(const jwt::Claims& c, const jwt::VerifyOptions& o) {
  FUZZ_CHECK(!c.sub.empty());
  FUZZ_CHECK(c.iss == o.issuer);
  FUZZ_CHECK(std::find(c.aud.begin(), c.aud.end(), o.audience) != c.aud.end());
  FUZZ_CHECK(!jwt::is_expired(c.exp, o.leeway_s, kNow));
  FUZZ_CHECK(c.nbf == 0 || !jwt::is_not_yet_valid(c.nbf, o.leeway_s, kNow));
}

void check_base64url(std::string_view text) {
  // Whatever decodes re-encodes to the very same text (one encoding per bytes)...
  if (auto bytes = jwt::base64url_decode(text)) {
    FUZZ_CHECK(jwt::base64url_encode(*bytes) == text);
  }
  // ...and any bytes round-trip.
  auto back = jwt::base64url_decode(jwt::base64url_encode(text));
  FUZZ_CHECK(back.is_ok() && *back == text);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  state();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const State& s = state();
  const uint8_t mode = data[0] % 4;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);

  switch (mode) {
    case 0: {  // a raw token against our key
      check_base64url(rest);
      auto a = jwt::verify_jwt(rest, s.ours, s.options, kNow);
      auto b = jwt::verify_jwt(rest, s.ours, s.options, kNow);
      FUZZ_CHECK(a.is_ok() == b.is_ok());
      if (a) check_accepted(*a, s.options);
      break;
    }
    case 1: {  // header and claims bytes, signed with our key: the claim checks
      // "<header json>\n<claims json>"; the header defaults to ours.
      auto nl = rest.find('\n');
      std::string header = nl == std::string_view::npos
                               ? std::string(R"({"alg":"HS256","typ":"JWT","kid":"fuzz"})")
                               : std::string(rest.substr(0, nl));
      std::string_view claims = nl == std::string_view::npos ? rest : rest.substr(nl + 1);
      std::string input = jwt::base64url_encode(header) + "." + jwt::base64url_encode(claims);
      std::string token = input + "." + jwt::base64url_encode(hs256(input));
      auto a = jwt::verify_jwt(token, s.ours, s.options, kNow);
      if (a) {
        check_accepted(*a, s.options);
        // The signed payload is what verify_jws hands back.
        auto payload = jwt::verify_jws(token, s.ours);
        FUZZ_CHECK(payload.is_ok() && *payload == claims);
      }
      break;
    }
    case 2: {  // a Wycheproof token, mutated by splicing the input into it
      if (s.groups.empty() || rest.size() < 4) break;
      const auto& g = s.groups[static_cast<uint8_t>(rest[0]) % s.groups.size()];
      const auto& [original, valid] = g.tokens[static_cast<uint8_t>(rest[1]) % g.tokens.size()];
      std::string token = original;
      const size_t at = static_cast<uint8_t>(rest[2]) * 256u + static_cast<uint8_t>(rest[3]);
      std::string_view splice = rest.substr(4);
      if (!splice.empty()) {
        const size_t pos = at % (token.size() + 1);
        token.replace(pos, std::min(splice.size(), token.size() - pos), splice);
      }
      auto payload = jwt::verify_jws(token, g.keys);
      if (token == original && !valid) FUZZ_CHECK(!payload.is_ok());
      if (payload && token != original) {
        // A changed token that still verifies must differ only outside the
        // signed bytes: impossible for compact JWS, as every part is canonical.
        auto dot1 = token.find('.');
        auto dot2 = token.rfind('.');
        FUZZ_CHECK(dot1 != std::string::npos && dot2 != dot1);
        FUZZ_CHECK(token.substr(0, dot2) == original.substr(0, original.rfind('.')));
      }
      auto claims = jwt::verify_jwt(token, g.keys, s.options, kNow);
      if (claims) check_accepted(*claims, s.options);
      break;
    }
    case 3: {  // JWK / JWKS documents
      jwt::KeySetOptions o;
      o.allow_hs256 = !rest.empty() && (rest[0] & 1);
      auto keys = jwt::KeySet::from_jwks(rest, o);
      if (keys) {
        FUZZ_CHECK(!keys->empty());  // "a document with no usable key is an error"
        // Symmetric keys only when allowed: an HS256 token under the key "fuzz"
        // never verifies without allow_hs256.
        std::string input = jwt::base64url_encode(R"({"alg":"HS256","kid":"fuzz"})") + ".e30";
        auto v = jwt::verify_jws(input + "." + jwt::base64url_encode(hs256(input)), *keys);
        if (!o.allow_hs256) FUZZ_CHECK(!v.is_ok());
      }
      break;
    }
  }
  return 0;
}
