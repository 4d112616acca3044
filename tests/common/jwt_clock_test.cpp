// verify_jwt decides exp/nbf by the `now_s` its caller passes (the caller's
// injected Clock) and the leeway only, never by the wall clock (issue 7,
// clock faults). The broker's and chat-api's own tests check that they pass
// their injected clock (tests/broker-plugins/gatekeeper_clock_test.cpp,
// tests/api/tokens_clock_test.cpp).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "chat/common/jwt.h"

namespace chat::jwt {
namespace {

class JwtClock : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("jwt-clock-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    auto s = Signer::load_or_create(dir_ / "k.pem", dir_ / "jwks.json");
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    signer_ = std::make_unique<Signer>(*s);
    auto keys = KeySet::from_jwks(signer_->public_jwks());
    ASSERT_TRUE(keys.is_ok());
    keys_ = *keys;
    options_.issuer = "iss";
    options_.audience = "aud";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string token(int64_t exp, int64_t nbf = 0) const {
    nlohmann::json c = {{"sub", "alice"},  {"iss", "iss"}, {"aud", "aud"},
                        {"iat", exp - 60}, {"exp", exp},   {"jti", "j"}};
    if (nbf != 0) c["nbf"] = nbf;
    return signer_->sign(c);
  }
  bool valid_at(const std::string& t, int64_t now_s, int64_t leeway_s) {
    options_.leeway_s = leeway_s;
    return verify_jwt(t, keys_, options_, now_s).is_ok();
  }

  std::filesystem::path dir_;
  std::unique_ptr<Signer> signer_;
  KeySet keys_;
  VerifyOptions options_;
};

int64_t wall_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

TEST_F(JwtClock, DecidesByTheGivenTimeNotTheWallClock) {
  const int64_t wall = wall_s(), day = 86400;
  // Expired an hour ago by the wall clock, valid for a clock a day behind.
  const std::string old = token(wall - 3600);
  EXPECT_TRUE(valid_at(old, wall - day, 5));
  EXPECT_FALSE(valid_at(old, wall, 5));
  // Valid by the wall clock, expired for a clock a day ahead.
  const std::string fresh = token(wall + 3600);
  EXPECT_TRUE(valid_at(fresh, wall, 5));
  EXPECT_FALSE(valid_at(fresh, wall + day, 5));
  // nbf: valid from an hour ago by the wall clock, not yet for a clock behind.
  const std::string started = token(wall + day, wall - 3600);
  EXPECT_TRUE(valid_at(started, wall, 5));
  EXPECT_FALSE(valid_at(started, wall - day, 5));
}

TEST_F(JwtClock, LeewayBoundariesAreExactForEachLeewayAndClamped) {
  const int64_t now = 2'000'000'000;
  for (int64_t leeway : {0, 1, 5, 30}) {
    SCOPED_TRACE("leeway " + std::to_string(leeway));
    EXPECT_TRUE(valid_at(token(now - leeway), now, leeway));
    EXPECT_FALSE(valid_at(token(now - leeway - 1), now, leeway));
    EXPECT_TRUE(valid_at(token(now + 600, now + leeway), now, leeway));
    EXPECT_FALSE(valid_at(token(now + 600, now + leeway + 1), now, leeway));
  }
  // More than kMaxLeewayS grants kMaxLeewayS; a negative leeway grants none.
  EXPECT_TRUE(valid_at(token(now - kMaxLeewayS), now, 3600));
  EXPECT_FALSE(valid_at(token(now - kMaxLeewayS - 1), now, 3600));
  EXPECT_FALSE(valid_at(token(now - 1), now, -10));
  EXPECT_TRUE(valid_at(token(now), now, -10));
}

}  // namespace
}  // namespace chat::jwt
