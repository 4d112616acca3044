// chat-api's bearer check (TokenIssuer::verify, remembered tokens included)
// decides exp/nbf by its injected clock and the configured leeway only, never
// by the wall clock (issue 7, clock faults).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "chat/api/tokens.h"

namespace chat::api {
namespace {

constexpr int64_t kDayMs = 24 * 3600 * 1000;

class TokensClock : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (std::filesystem::temp_directory_path() / "chat-tclock-XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<TokenIssuer> issuer(const Clock& clock, int64_t leeway_s) {
    auto signer = jwt::Signer::load_or_create(dir_ + "/key.pem", dir_ + "/jwks.json");
    EXPECT_TRUE(signer.is_ok());
    auto made = TokenIssuer::create(std::move(signer).value(), {"iss", "aud", leeway_s}, clock);
    EXPECT_TRUE(made.is_ok());
    return std::move(made).value();
  }
  static std::string token(const TokenIssuer& is, int64_t exp, int64_t nbf = 0) {
    nlohmann::json c = {{"sub", "alice"}, {"iss", "iss"}, {"aud", "aud"},     {"iat", exp - 60},
                        {"exp", exp},     {"jti", "j"},   {"roles", {"user"}}};
    if (nbf != 0) c["nbf"] = nbf;
    return is.signer().sign(c);
  }

  std::string dir_;
};

int64_t wall_s() { return SystemClock::instance().now_s(); }

TEST_F(TokensClock, BearerCheckDecidesByTheInjectedClockNotTheWallClock) {
  OffsetClock behind(SystemClock::instance(), -kDayMs);
  auto is = issuer(behind, 5);
  // Expired an hour ago by the wall clock: valid by chat-api's clock, twice
  // (the second answer comes from the remembered tokens).
  const std::string old = token(*is, wall_s() - 3600);
  EXPECT_TRUE(is->verify(old).is_ok());
  EXPECT_TRUE(is->verify(old).is_ok());
  // Valid by the wall clock since an hour ago (nbf): not yet by chat-api's.
  EXPECT_FALSE(is->verify(token(*is, wall_s() + 3600, wall_s() - 3600)).is_ok());

  OffsetClock ahead(SystemClock::instance(), kDayMs);
  is = issuer(ahead, 5);
  EXPECT_FALSE(is->verify(token(*is, wall_s() + 3600)).is_ok());
  EXPECT_TRUE(is->verify(token(*is, wall_s() + 2 * 86400, wall_s() + 3600)).is_ok());
}

TEST_F(TokensClock, LeewayBoundariesAreExactOnFirstAndRememberedChecks) {
  for (int64_t leeway : {0, 5, 30}) {
    SCOPED_TRACE("leeway " + std::to_string(leeway));
    FakeClock clock{1'700'000'000'000};
    auto is = issuer(clock, leeway);
    const int64_t now = clock.now_s();
    EXPECT_TRUE(is->verify(token(*is, now - leeway)).is_ok());
    EXPECT_FALSE(is->verify(token(*is, now - leeway - 1)).is_ok());
    EXPECT_TRUE(is->verify(token(*is, now + 600, now + leeway)).is_ok());
    EXPECT_FALSE(is->verify(token(*is, now + 600, now + leeway + 1)).is_ok());

    // Remembered: accepted up to the last millisecond of exp + leeway.
    const std::string t = token(*is, now + 10);
    ASSERT_TRUE(is->verify(t).is_ok());
    clock.set_ms((now + 10 + leeway) * 1000 + 999);
    EXPECT_TRUE(is->verify(t).is_ok());
    clock.set_ms((now + 10 + leeway + 1) * 1000);
    EXPECT_FALSE(is->verify(t).is_ok());
  }
}

}  // namespace
}  // namespace chat::api
