// External OIDC provider tokens: trust-domain routing, the user and roles
// claims, the role mapping, and JWKS parsing. Keys are generated per run.
#include "chat/common/oidc.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "oidc_test_keys.h"

namespace chat::oidc {
namespace {

using nlohmann::json;
using testing::ProviderKey;

constexpr int64_t kNow = 1'700'000'000;
constexpr char kIssuer[] = "https://kc.example.com/realms/chat";

class OidcTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    rsa_ = new ProviderKey(ProviderKey::rs256("rsa-1"));
    ec_ = new ProviderKey(ProviderKey::es256("ec-1"));
  }
  static void TearDownTestSuite() {
    delete rsa_;
    delete ec_;
  }
  void SetUp() override {
    provider_.issuer = kIssuer;
    provider_.audience = "chat";
    auto keys = parse_jwks(testing::jwks_of(*rsa_, *ec_));
    ASSERT_TRUE(keys.is_ok()) << keys.status().to_string();
    keys_ = std::move(keys).value();
  }
  json claims(const std::string& user = "alice", json roles = json::array()) {
    return testing::provider_claims(kIssuer, "chat", user, kNow, std::move(roles));
  }
  Result<ExternalIdentity> check(const std::string& token) {
    return verify(token, keys_, provider_, 5, kNow);
  }

  static ProviderKey* rsa_;
  static ProviderKey* ec_;
  Provider provider_;
  jwt::KeySet keys_;
};
ProviderKey* OidcTest::rsa_ = nullptr;
ProviderKey* OidcTest::ec_ = nullptr;

TEST_F(OidcTest, AcceptsRs256AndEs256TokensByKid) {
  for (const ProviderKey* key : {rsa_, ec_}) {
    auto id = check(key->sign(claims("alice", {"offline_access", "admin"})));
    ASSERT_TRUE(id.is_ok()) << key->kid() << ": " << id.status().to_string();
    EXPECT_EQ(id->user, "alice");
    EXPECT_EQ(id->provider_roles, (std::vector<std::string>{"offline_access", "admin"}));
    EXPECT_EQ(id->claims.exp, kNow + 300);
  }
}

TEST_F(OidcTest, RefusesWrongIssuerAudienceTimeAndUnknownKid) {
  auto c = claims();
  c["iss"] = "https://evil.example.com/realms/chat";
  EXPECT_EQ(check(rsa_->sign(c)).status().code(), StatusCode::kUnauthenticated);
  c = claims();
  c["aud"] = "other";
  EXPECT_FALSE(check(rsa_->sign(c)).is_ok());
  c = claims();
  c["exp"] = kNow - 60;
  EXPECT_FALSE(check(ec_->sign(c)).is_ok());
  c = claims();
  c["nbf"] = kNow + 60;
  EXPECT_FALSE(check(ec_->sign(c)).is_ok());
  // A key the JWKS does not hold.
  ProviderKey stranger = ProviderKey::rs256("rsa-2");
  EXPECT_FALSE(check(stranger.sign(claims())).is_ok());
  // alg none, with the kid of a real key.
  const std::string none = jwt::base64url_encode(R"({"alg":"none","kid":"rsa-1"})") + "." +
                           jwt::base64url_encode(claims().dump()) + ".";
  EXPECT_FALSE(check(none).is_ok());
}

TEST_F(OidcTest, SubIsKeptAndMustBeASubjectIdentifier) {
  auto id = check(rsa_->sign(claims()));
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();
  EXPECT_EQ(id->subject, "f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
  auto c = claims();
  c["sub"] = std::string(255, 's');
  id = check(rsa_->sign(c));
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();
  EXPECT_EQ(id->subject, std::string(255, 's'));
  for (json sub : {json(std::string(256, 's')), json(std::string("a\0b", 3)), json(""), json(42),
                   json(nullptr)}) {
    c = claims();
    c["sub"] = sub;
    EXPECT_EQ(check(rsa_->sign(c)).status().code(), StatusCode::kUnauthenticated) << sub.dump();
  }
  c = claims();
  c.erase("sub");
  EXPECT_EQ(check(rsa_->sign(c)).status().code(), StatusCode::kUnauthenticated);
  EXPECT_TRUE(is_valid_subject("x"));
  EXPECT_FALSE(is_valid_subject(""));
}

TEST_F(OidcTest, UserClaimMustBeAUserId) {
  auto missing = claims();
  missing.erase("preferred_username");
  auto id = check(rsa_->sign(missing));
  ASSERT_FALSE(id.is_ok());
  EXPECT_NE(id.status().message().find("preferred_username"), std::string::npos);
  for (json bad : {json("Alice"), json("a b"), json(""), json(42), json::array({"alice"}),
                   json(std::string(33, 'a')), json("svc.chat-api")}) {
    auto c = claims();
    c["preferred_username"] = bad;
    EXPECT_EQ(check(rsa_->sign(c)).status().code(), StatusCode::kUnauthenticated) << bad.dump();
  }
  // Another claim, also as a dotted path.
  provider_.user_claim = "ext.chat_user";
  auto c = claims("not-used");
  c["ext"] = {{"chat_user", "carol"}};
  id = check(ec_->sign(c));
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();
  EXPECT_EQ(id->user, "carol");
}

TEST_F(OidcTest, RolesClaimOfTheWrongTypeIsRefused) {
  for (json realm_access :
       {json{{"roles", "admin"}}, json{{"roles", json::array({"admin", 7})}}, json("admin")}) {
    auto c = claims();
    c["realm_access"] = realm_access;
    auto id = check(rsa_->sign(c));
    EXPECT_EQ(id.status().code(), StatusCode::kUnauthenticated) << realm_access.dump();
  }
  // Absent: no roles, not an error.
  auto c = claims();
  c.erase("realm_access");
  auto id = check(rsa_->sign(c));
  ASSERT_TRUE(id.is_ok());
  EXPECT_TRUE(id->provider_roles.empty());
  // A top-level claim works too.
  provider_.roles_claim = "groups";
  c["groups"] = json::array({"admin"});
  id = check(rsa_->sign(c));
  ASSERT_TRUE(id.is_ok());
  EXPECT_EQ(id->provider_roles, std::vector<std::string>{"admin"});
}

TEST(OidcRoles, AdminNeedsTheProviderAndTheListServiceNever) {
  using V = std::vector<std::string>;
  EXPECT_EQ(granted_roles({"admin"}, true), V{"admin"});
  EXPECT_EQ(granted_roles({"admin"}, false), V{"user"});
  EXPECT_EQ(granted_roles({"user"}, true), V{"user"});
  EXPECT_EQ(granted_roles({"service", "admin"}, false), V{"user"});
  EXPECT_EQ(granted_roles({"service"}, true), V{"user"});
}

TEST_F(OidcTest, UnverifiedIssuerOnlyReadsIss) {
  EXPECT_EQ(unverified_issuer(rsa_->sign(claims())), std::optional<std::string>(kIssuer));
  EXPECT_EQ(unverified_issuer("garbage"), std::nullopt);
  EXPECT_EQ(unverified_issuer("a.b.c"), std::nullopt);
  EXPECT_EQ(unverified_issuer("e30." + jwt::base64url_encode(R"({"iss":7})") + ".x"), std::nullopt);
  EXPECT_EQ(unverified_issuer("e30." + jwt::base64url_encode("[1,2]") + ".x"), std::nullopt);
}

TEST(OidcJwks, MalformedOrKeylessDocumentsAreRefused) {
  for (const char* text :
       {"", "not json", "[]", "{}", R"({"keys":{}})", R"({"keys":[]})",
        R"({"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTIz"}]})",
        R"({"keys":[{"kty":"RSA","kid":"r","n":"!!","e":"AQAB"}]})"}) {
    auto keys = parse_jwks(text);
    EXPECT_EQ(keys.status().code(), StatusCode::kInvalidArgument) << text;
  }
  // Keycloak publishes an encryption key next to the signing key: skipped.
  ProviderKey sig = ProviderKey::rs256("sig");
  json doc = json::parse(testing::jwks_of(sig));
  json enc = doc["keys"][0];
  enc["kid"] = "enc";
  enc["use"] = "enc";
  enc["alg"] = "RSA-OAEP";
  doc["keys"].push_back(enc);
  auto keys = parse_jwks(doc.dump());
  ASSERT_TRUE(keys.is_ok()) << keys.status().to_string();
  EXPECT_EQ(keys->size(), 1u);
}

TEST(OidcClaimPath, Syntax) {
  for (const char* good : {"roles", "realm_access.roles", "resource_access.chat-web.roles",
                           "https://example.com/roles", "a_b:c"}) {
    EXPECT_TRUE(is_valid_claim_path(good)) << good;
  }
  for (const char* bad : {"", ".", "a.", ".a", "a..b", "a b", "a$b", "a.b.c.d.e.f.g.h.i"}) {
    EXPECT_FALSE(is_valid_claim_path(bad)) << bad;
  }
}

// CHAT_OIDC_JWKS as chat-api and the plugin load it, and how the plugin sees
// it rotated (a new file renamed over it, or the same file rewritten).
TEST_F(OidcTest, JwksFileLoadAndRotationWatch) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("oidc-file-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "jwks.json").string();
  auto write = [](const std::string& to, const std::string& text) {
    std::ofstream(to, std::ios::binary | std::ios::trunc) << text;
  };

  EXPECT_EQ(load_jwks_file(path).status().code(), StatusCode::kInvalidArgument);  // missing
  FileWatch watch(path);
  watch.mark_read();
  EXPECT_FALSE(watch.changed());

  write(path, testing::jwks_of(*rsa_));
  EXPECT_TRUE(watch.changed());  // appeared
  auto keys = load_jwks_file(path);
  ASSERT_TRUE(keys.is_ok()) << keys.status().to_string();
  EXPECT_NE(keys->find("rsa-1"), nullptr);
  watch.mark_read();
  EXPECT_FALSE(watch.changed());

  // Rotation by rename: a new inode, whatever the size and time.
  write(path + ".new", testing::jwks_of(*ec_));
  std::filesystem::rename(path + ".new", path);
  EXPECT_TRUE(watch.changed());
  keys = load_jwks_file(path);
  ASSERT_TRUE(keys.is_ok());
  EXPECT_NE(keys->find("ec-1"), nullptr);
  EXPECT_EQ(keys->find("rsa-1"), nullptr);
  watch.mark_read();

  // Rewritten in place with something that is no JWKS: seen, and refused
  // with the file named.
  write(path, "{\"keys\": \"no\"}");
  EXPECT_TRUE(watch.changed());
  auto bad = load_jwks_file(path);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find(path), std::string::npos) << bad.status().message();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace chat::oidc
