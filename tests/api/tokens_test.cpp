// TokenIssuer::verify remembers tokens it verified: the cache must never
// accept what a full check would refuse.
#include "chat/api/tokens.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

namespace chat::api {
namespace {

class TokensTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (std::filesystem::temp_directory_path() / "chat-tokens-XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    auto signer = jwt::Signer::load_or_create(dir_ + "/key.pem", dir_ + "/jwks.json");
    ASSERT_TRUE(signer.is_ok()) << signer.status().to_string();
    auto issuer = TokenIssuer::create(std::move(signer).value(), {"iss", "aud", 5}, clock_);
    ASSERT_TRUE(issuer.is_ok()) << issuer.status().to_string();
    issuer_ = std::move(issuer).value();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string dir_;
  FakeClock clock_{1'700'000'000'000};
  std::unique_ptr<TokenIssuer> issuer_;
};

TEST_F(TokensTest, RepeatedVerifyGivesTheSamePrincipal) {
  std::string token = issuer_->mint("alice", {"user"}, 60);
  for (int i = 0; i < 3; ++i) {
    auto p = issuer_->verify(token);
    ASSERT_TRUE(p.is_ok()) << p.status().to_string();
    EXPECT_EQ(p->user, "alice");
    EXPECT_EQ(p->roles, std::vector<std::string>{"user"});
    EXPECT_EQ(p->exp, clock_.now_s() + 60);
  }
}

TEST_F(TokensTest, ExpiryAppliesToRememberedTokens) {
  std::string token = issuer_->mint("alice", {"user"}, 60);
  ASSERT_TRUE(issuer_->verify(token).is_ok());
  clock_.advance_ms((60 + 5) * 1000);  // exp + leeway: still accepted
  EXPECT_TRUE(issuer_->verify(token).is_ok());
  clock_.advance_ms(1000);  // one second past it
  auto p = issuer_->verify(token);
  ASSERT_FALSE(p.is_ok());
  EXPECT_EQ(p.status().code(), StatusCode::kUnauthenticated);
  EXPECT_NE(p.status().message().find("expired"), std::string::npos) << p.status().message();
  // Forgotten now: the full check refuses it again.
  EXPECT_FALSE(issuer_->verify(token).is_ok());
}

TEST_F(TokensTest, AlteredTokenIsRefusedAfterTheOriginalWasRemembered) {
  std::string token = issuer_->mint("alice", {"user"}, 60);
  ASSERT_TRUE(issuer_->verify(token).is_ok());
  // Flip one character of the signature, and drop its last one.
  std::string flipped = token;
  char& c = flipped[flipped.size() - 5];
  c = c == 'A' ? 'B' : 'A';
  EXPECT_FALSE(issuer_->verify(flipped).is_ok());
  EXPECT_FALSE(issuer_->verify(token.substr(0, token.size() - 1)).is_ok());
  EXPECT_FALSE(issuer_->verify(token + "A").is_ok());
  EXPECT_TRUE(issuer_->verify(token).is_ok());
}

TEST_F(TokensTest, NotBeforeAppliesToRememberedTokens) {
  const int64_t now = clock_.now_s();
  nlohmann::json claims = {{"sub", "bob"}, {"iat", now},   {"exp", now + 600}, {"nbf", now + 100},
                           {"iss", "iss"}, {"aud", "aud"}, {"jti", "j1"},      {"roles", {"user"}}};
  std::string token = issuer_->signer().sign(claims);
  EXPECT_FALSE(issuer_->verify(token).is_ok());  // not yet
  clock_.advance_ms(100 * 1000);
  ASSERT_TRUE(issuer_->verify(token).is_ok());  // remembered from here on
  clock_.set_ms((now + 90) * 1000);             // the clock steps back past nbf - leeway
  EXPECT_FALSE(issuer_->verify(token).is_ok());
}

}  // namespace
}  // namespace chat::api
