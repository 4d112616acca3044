// The gatekeeper's time decisions (CONNECT and the expiry kick) use the
// injected clock and the configured leeway only, never the wall clock
// (issue 7, clock faults: a host whose clock is off must not let the broker
// decide by another time than the one it was given).
#include <gtest/gtest.h>

#include <filesystem>
#include <limits>

#include "chat/broker/gatekeeper.h"

namespace chat::broker {
namespace {

constexpr int64_t kDayMs = 24 * 3600 * 1000;

class GatekeeperClock : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("gk-clock-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    auto s = jwt::Signer::load_or_create(dir_ / "k.pem", dir_ / "jwks.json");
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    signer_ = std::make_unique<jwt::Signer>(*s);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<Gatekeeper> make(const Clock& clock, int64_t leeway_s) {
    auto keys = jwt::KeySet::from_jwks(signer_->public_jwks());
    EXPECT_TRUE(keys.is_ok());
    jwt::VerifyOptions vo;
    vo.issuer = "iss";
    vo.audience = "aud";
    vo.leeway_s = leeway_s;
    return std::make_unique<Gatekeeper>(
        clock, *keys, vo, [](const std::string&, const std::string&) { return false; });
  }
  std::string token(int64_t exp, int64_t nbf = 0) {
    nlohmann::json c = {{"sub", "alice"}, {"iss", "iss"}, {"aud", "aud"},     {"iat", exp - 3600},
                        {"exp", exp},     {"jti", "j"},   {"roles", {"user"}}};
    if (nbf != 0) c["nbf"] = nbf;
    return signer_->sign(c);
  }
  bool connects(Gatekeeper& gk, const std::string& t) {
    bool ok = gk.authenticate(&handle_, "alice:phone", "alice", t.c_str()).is_ok();
    if (ok) gk.disconnected(&handle_);
    return ok;
  }

  std::filesystem::path dir_;
  std::unique_ptr<jwt::Signer> signer_;
  int handle_ = 1;
};

int64_t wall_s() { return SystemClock::instance().now_s(); }

TEST_F(GatekeeperClock, ConnectDecidesByTheInjectedClockNotTheWallClock) {
  // The broker's clock runs a day behind the wall clock: a token that expired
  // an hour ago by the wall clock is still valid by the broker's.
  OffsetClock behind(SystemClock::instance(), -kDayMs);
  auto gk = make(behind, 5);
  EXPECT_TRUE(connects(*gk, token(wall_s() - 3600)));
  // ...and one valid by the wall clock (nbf an hour ago) is not valid yet.
  EXPECT_FALSE(connects(*gk, token(wall_s() + 3600, wall_s() - 3600)));

  // A day ahead: valid by the wall clock, expired by the broker's.
  OffsetClock ahead(SystemClock::instance(), kDayMs);
  gk = make(ahead, 5);
  EXPECT_FALSE(connects(*gk, token(wall_s() + 3600)));
  EXPECT_TRUE(connects(*gk, token(wall_s() + 2 * 86400, wall_s() + 3600)));
}

TEST_F(GatekeeperClock, ConnectLeewayBoundariesAreExact) {
  FakeClock clock{1'700'000'000'999};  // the last ms of a second: now_s is that second
  const int64_t now = clock.now_s();
  for (int64_t leeway : {0, 5, 30}) {
    auto gk = make(clock, leeway);
    SCOPED_TRACE("leeway " + std::to_string(leeway));
    EXPECT_TRUE(connects(*gk, token(now - leeway)));
    EXPECT_FALSE(connects(*gk, token(now - leeway - 1)));
    EXPECT_TRUE(connects(*gk, token(now + 600, now + leeway)));
    EXPECT_FALSE(connects(*gk, token(now + 600, now + leeway + 1)));
  }
}

TEST_F(GatekeeperClock, ExpiryKickDecidesByTheInjectedClockAtTheExactBoundary) {
  // Far from the wall clock in both directions: only the injected time counts.
  for (int64_t start_ms : {int64_t{1'000'000'000'000}, int64_t{4'000'000'000'000}}) {
    for (int64_t leeway : {0, 5, 30}) {
      SCOPED_TRACE("start " + std::to_string(start_ms) + " leeway " + std::to_string(leeway));
      FakeClock clock{start_ms};
      auto gk = make(clock, leeway);
      const int64_t exp = clock.now_s() + 10;
      ASSERT_TRUE(gk->authenticate(&handle_, "alice:phone", "alice", token(exp).c_str()).is_ok());
      clock.set_ms((exp + leeway) * 1000 + 999);  // exp + leeway: still valid, as on CONNECT
      EXPECT_TRUE(gk->take_expired().empty());
      clock.set_ms((exp + leeway + 1) * 1000);  // one second past it
      EXPECT_EQ(gk->take_expired(), std::vector<std::string>{"alice:phone"});
    }
  }
}

TEST_F(GatekeeperClock, ExpiryKickFollowsTheSameRuleAsConnectForExtremeExp) {
  // A token whose exp is the largest integer is valid on CONNECT (verify_jwt
  // cannot overflow); the kick must not overflow into "expired long ago".
  FakeClock clock;
  auto gk = make(clock, 30);
  const std::string t = token(std::numeric_limits<int64_t>::max());
  ASSERT_TRUE(gk->authenticate(&handle_, "alice:phone", "alice", t.c_str()).is_ok());
  clock.advance_ms(365 * kDayMs);
  EXPECT_TRUE(gk->take_expired().empty());
}

}  // namespace
}  // namespace chat::broker
