#include "chat/broker/gatekeeper.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <filesystem>

#include "chat/common/topics.h"

namespace chat::broker {
namespace {

class GatekeeperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("gk-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    auto s = jwt::Signer::load_or_create(dir_ / "k.pem", dir_ / "jwks.json");
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    signer_ = std::make_unique<jwt::Signer>(*s);
    auto keys = jwt::KeySet::from_jwks(signer_->public_jwks());
    ASSERT_TRUE(keys.is_ok());
    jwt::VerifyOptions vo;
    vo.issuer = "iss";
    vo.audience = "aud";
    vo.leeway_s = 5;
    gk_ = std::make_unique<Gatekeeper>(
        clock_, *keys, vo, [](const std::string& a, const std::string& b) {
          return (a == "alice" && b == "bob") || (a == "bob" && b == "alice");
        });
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string token(const std::string& sub, int64_t ttl = 3600,
                    nlohmann::json roles = nlohmann::json::array({"user"})) {
    return signer_->sign({{"sub", sub},
                          {"iss", "iss"},
                          {"aud", "aud"},
                          {"iat", clock_.now_s()},
                          {"exp", clock_.now_s() + ttl},
                          {"jti", "j"},
                          {"roles", roles}});
  }

  FakeClock clock_{1'700'000'000'000};
  std::filesystem::path dir_;
  std::unique_ptr<jwt::Signer> signer_;
  std::unique_ptr<Gatekeeper> gk_;
  int h1_ = 1, h2_ = 2;
};

TEST_F(GatekeeperTest, AuthenticatesOnlyMatchingUserAndClientId) {
  auto t = token("alice");
  EXPECT_TRUE(gk_->authenticate(&h1_, "alice:phone", "alice", t.c_str()).is_ok());
  EXPECT_FALSE(gk_->authenticate(&h2_, "bob:phone", "alice", t.c_str()).is_ok());
  EXPECT_FALSE(gk_->authenticate(&h2_, "alice:phone", "bob", t.c_str()).is_ok());
  EXPECT_FALSE(gk_->authenticate(&h2_, "alice", "alice", t.c_str()).is_ok());
  EXPECT_FALSE(gk_->authenticate(&h2_, "alice:ph:one", "alice", t.c_str()).is_ok());
  EXPECT_FALSE(gk_->authenticate(&h2_, "alice:phone", "alice", nullptr).is_ok());
  EXPECT_FALSE(gk_->authenticate(&h2_, "alice:phone", nullptr, t.c_str()).is_ok());
  EXPECT_FALSE(gk_->authenticate(&h2_, "alice:phone", "alice", "garbage").is_ok());
  EXPECT_FALSE(
      gk_->authenticate(&h2_, "alice:phone", "alice", token("alice", -10).c_str()).is_ok());
  // The service role only for svc. accounts, and svc. accounts only with it.
  EXPECT_FALSE(
      gk_->authenticate(&h2_, "alice:x", "alice", token("alice", 60, {"service"}).c_str()).is_ok());
  EXPECT_FALSE(gk_->authenticate(&h2_, "svc.api:x", "svc.api", token("svc.api").c_str()).is_ok());
  EXPECT_TRUE(
      gk_->authenticate(&h2_, "svc.api:x", "svc.api", token("svc.api", 60, {"service"}).c_str())
          .is_ok());
  EXPECT_TRUE(gk_->session(&h2_)->service);
}

TEST_F(GatekeeperTest, TakeoverDropsTheOldConnectionsSession) {
  auto t = token("alice");
  ASSERT_TRUE(gk_->authenticate(&h1_, "alice:phone", "alice", t.c_str()).is_ok());
  ASSERT_TRUE(gk_->authenticate(&h2_, "alice:phone", "alice", t.c_str()).is_ok());
  // The old connection (h1) can no longer publish (its will, say) ...
  EXPECT_FALSE(gk_->allowed(&h1_, "alice:phone", Access::kWrite, "dm/bob", 1));
  EXPECT_TRUE(gk_->allowed(&h2_, "alice:phone", Access::kWrite, "dm/bob", 1));
  // ... and its late DISCONNECT does not end the new one's session.
  gk_->disconnected(&h1_);
  EXPECT_NE(gk_->session(&h2_), nullptr);
}

struct AclCase {
  Access access;
  const char* topic;
  int qos;
  bool allowed;
};

TEST_F(GatekeeperTest, AclTable) {
  auto t = token("alice");
  ASSERT_TRUE(gk_->authenticate(&h1_, "alice:phone", "alice", t.c_str()).is_ok());
  const AclCase cases[] = {
      {Access::kSubscribe, "u/alice/#", 1, true},
      {Access::kSubscribe, "u/alice/msg", 1, true},
      {Access::kSubscribe, "u/alice/+", 1, false},
      {Access::kSubscribe, "u/bob/#", 1, false},
      {Access::kSubscribe, "u/#", 1, false},
      {Access::kSubscribe, "#", 1, false},
      {Access::kSubscribe, "$share/g/u/alice/#", 1, false},
      {Access::kSubscribe, "presence/bob", 0, true},     // shares a conversation
      {Access::kSubscribe, "presence/carol", 0, false},  // does not
      {Access::kSubscribe, "presence/+", 0, false},
      {Access::kSubscribe, "presence/alice", 0, true},
      {Access::kSubscribe, "$CONTROL/chat/v1/response", 1, false},
      {Access::kSubscribe, "$CONTROL/chat/v1/stats", 0, false},
      {Access::kSubscribe, "$CONTROL/chat/v1/push", 0, false},
      {Access::kSubscribe, "$CONTROL/#", 0, false},
      {Access::kWrite, "dm/bob", 1, true},
      {Access::kWrite, "dm/bob", 2, true},
      {Access::kWrite, "dm/bob", 0, false},
      {Access::kWrite, "dm/bob/receipt", 1, true},
      {Access::kWrite, "dm/bob/typing", 0, true},
      {Access::kWrite, "dm/bob/typing", 1, false},
      {Access::kWrite, "g/G1", 1, true},
      {Access::kWrite, "u/bob/msg", 1, false},
      {Access::kWrite, "presence/alice", 0, false},
      {Access::kWrite, "$CONTROL/chat/v1", 1, false},
      {Access::kWrite, "dm/+", 1, false},
      {Access::kRead, "u/alice/msg", 1, true},
      {Access::kRead, "u/bob/msg", 1, false},
      {Access::kRead, "u/alicex/msg", 1, false},
      {Access::kRead, "presence/bob", 0, true},
      {Access::kRead, "$CONTROL/chat/v1/stats", 0, false},
      {Access::kRead, "$CONTROL/chat/v1/push", 0, false},
      {Access::kUnsubscribe, "anything", 0, true},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(gk_->allowed(&h1_, "alice:phone", c.access, c.topic, c.qos), c.allowed)
        << static_cast<int>(c.access) << " " << c.topic << " q" << c.qos;
  }
}

TEST_F(GatekeeperTest, OfflineSessionsReadOnlyTheirOwnInbox) {
  // No live session (device offline): READ is decided by the client id.
  EXPECT_TRUE(gk_->allowed(&h2_, "bob:phone", Access::kRead, "u/bob/msg", 1));
  EXPECT_FALSE(gk_->allowed(&h2_, "bob:phone", Access::kRead, "u/alice/msg", 1));
  EXPECT_FALSE(gk_->allowed(&h2_, "bob:phone", Access::kWrite, "dm/alice", 1));
  EXPECT_FALSE(gk_->allowed(&h2_, "bob:phone", Access::kSubscribe, "u/bob/#", 1));
}

TEST_F(GatekeeperTest, ServiceRoleMayOnlyUseTheControlTopic) {
  auto t = token("svc.api", 60, {"service"});
  ASSERT_TRUE(gk_->authenticate(&h1_, "svc.api:1", "svc.api", t.c_str()).is_ok());
  EXPECT_TRUE(gk_->allowed(&h1_, "svc.api:1", Access::kWrite, "$CONTROL/chat/v1", 1));
  EXPECT_TRUE(gk_->allowed(&h1_, "svc.api:1", Access::kRead, "$CONTROL/chat/v1/response", 1));
  EXPECT_FALSE(gk_->allowed(&h1_, "svc.api:1", Access::kWrite, "dm/bob", 1));
  EXPECT_FALSE(gk_->allowed(&h1_, "svc.api:1", Access::kSubscribe, "u/bob/#", 1));
  // The broker's stats feed: service clients subscribe and read, never publish.
  EXPECT_TRUE(gk_->allowed(&h1_, "svc.api:1", Access::kSubscribe, "$CONTROL/chat/v1/stats", 0));
  EXPECT_TRUE(gk_->allowed(&h1_, "svc.api:1", Access::kRead, "$CONTROL/chat/v1/stats", 0));
  EXPECT_FALSE(gk_->allowed(&h1_, "svc.api:1", Access::kWrite, "$CONTROL/chat/v1/stats", 0));
  // Push wake-ups (docs/push.md): the same.
  EXPECT_TRUE(gk_->allowed(&h1_, "svc.api:1", Access::kSubscribe, "$CONTROL/chat/v1/push", 0));
  EXPECT_TRUE(gk_->allowed(&h1_, "svc.api:1", Access::kRead, "$CONTROL/chat/v1/push", 0));
  EXPECT_FALSE(gk_->allowed(&h1_, "svc.api:1", Access::kWrite, "$CONTROL/chat/v1/push", 0));
  EXPECT_FALSE(gk_->allowed(&h1_, "svc.api:1", Access::kSubscribe, "$CONTROL/#", 0));
  EXPECT_EQ(gk_->connected_devices(), 0u);
}

// Mosquitto's $SYS drop counter (docs/operations.md "Slow consumers"): the
// service role subscribes and reads that one topic; no user reads any $SYS.
TEST_F(GatekeeperTest, OnlyTheServiceRoleReadsTheSysDropCounter) {
  const std::string sys(topics::kSysMessagesDropped);
  auto svc = token("svc.api", 60, {"service"});
  ASSERT_TRUE(gk_->authenticate(&h1_, "svc.api:1", "svc.api", svc.c_str()).is_ok());
  EXPECT_TRUE(gk_->allowed(&h1_, "svc.api:1", Access::kSubscribe, sys, 0));
  EXPECT_TRUE(gk_->allowed(&h1_, "svc.api:1", Access::kRead, sys, 0));
  EXPECT_FALSE(gk_->allowed(&h1_, "svc.api:1", Access::kWrite, sys, 0));
  EXPECT_FALSE(gk_->allowed(&h1_, "svc.api:1", Access::kSubscribe, "$SYS/#", 0));
  EXPECT_FALSE(gk_->allowed(&h1_, "svc.api:1", Access::kRead, "$SYS/broker/clients/connected", 0));

  auto t = token("alice");
  ASSERT_TRUE(gk_->authenticate(&h2_, "alice:phone", "alice", t.c_str()).is_ok());
  for (const std::string& topic :
       {sys, std::string("$SYS/#"), std::string("$SYS/broker/publish/messages/+")}) {
    EXPECT_FALSE(gk_->allowed(&h2_, "alice:phone", Access::kSubscribe, topic, 0)) << topic;
  }
  EXPECT_FALSE(gk_->allowed(&h2_, "alice:phone", Access::kRead, sys, 0));
  EXPECT_FALSE(gk_->allowed(&h2_, "alice:phone", Access::kWrite, sys, 0));
  // Without a session (a persistent one after a broker restart): only u/<user>/.
  EXPECT_FALSE(gk_->allowed(nullptr, "alice:tablet", Access::kRead, sys, 0));
  // A user named like the service account gets no service rights either.
  EXPECT_FALSE(gk_->allowed(nullptr, "svc.api:2", Access::kRead, sys, 0));
}

TEST_F(GatekeeperTest, ExpiredSessionsAreReportedOnceAfterTheLeeway) {
  auto t = token("alice", 10);
  ASSERT_TRUE(gk_->authenticate(&h1_, "alice:phone", "alice", t.c_str()).is_ok());
  EXPECT_TRUE(gk_->take_expired().empty());
  clock_.advance_ms(14'000);  // past exp, within the 5 s leeway
  EXPECT_TRUE(gk_->take_expired().empty());
  clock_.advance_ms(2'000);
  auto expired = gk_->take_expired();
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0], "alice:phone");
  EXPECT_TRUE(gk_->take_expired().empty());
  gk_->disconnected(&h1_);
  EXPECT_EQ(gk_->connected(), 0u);
}

}  // namespace
}  // namespace chat::broker
