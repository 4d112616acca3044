// The admin control ops: user.ban / user.unban, token.revoke, client.kick,
// client.list, and the gatekeeper refusing banned users and revoked tokens.
#include <gtest/gtest.h>

#include <filesystem>

#include "chat/broker/bans.h"
#include "chat/broker/gatekeeper.h"
#include "chat/broker/router.h"

namespace chat::broker {
namespace {

using json = nlohmann::json;

class RecordingPort final : public BrokerPort {
 public:
  void publish(std::string_view, const std::string&, std::string_view payload, int, bool) override {
    replies.emplace_back(payload);
  }
  void kick_client(const std::string& c) override { kicked_clients.push_back(c); }
  void kick_user(const std::string& u) override { kicked_users.push_back(u); }
  void log(LogLevel, const std::string&) override {}
  std::vector<std::string> replies;
  std::vector<std::string> kicked_clients, kicked_users;
};

class AdminOpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("admin-ops-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto signer = jwt::Signer::load_or_create(dir_ / "k.pem", dir_ / "jwks.json");
    ASSERT_TRUE(signer.is_ok()) << signer.status().to_string();
    signer_ = std::make_unique<jwt::Signer>(*signer);
    open();
    ASSERT_TRUE(archive_->add_user("alice").is_ok());
    ASSERT_TRUE(archive_->add_user("bob").is_ok());
    svc_.user = "svc.api";
    svc_.client_id = "svc.api:1";
    svc_.service = true;
  }
  void TearDown() override {
    close();
    std::filesystem::remove_all(dir_);
  }
  void close() {
    router_.reset();
    gatekeeper_.reset();
    bans_.reset();
    directory_.reset();
    archive_.reset();
  }
  // (Re)opens everything over the same archive, as a broker restart does.
  void open() {
    close();
    store::ArchiveOptions o;
    o.path = (dir_ / "archive").string();
    auto a = store::Archive::open(o);
    ASSERT_TRUE(a.is_ok()) << a.status().to_string();
    archive_ = std::move(*a);
    directory_ = std::make_unique<Directory>(*archive_);
    ASSERT_TRUE(directory_->load().is_ok());
    bans_ = std::make_unique<BanList>(*archive_);
    ASSERT_TRUE(bans_->load().is_ok());
    auto keys = jwt::KeySet::from_jwks(signer_->public_jwks());
    ASSERT_TRUE(keys.is_ok());
    jwt::VerifyOptions vo;
    vo.issuer = "iss";
    vo.audience = "aud";
    gatekeeper_ = std::make_unique<Gatekeeper>(clock_, *keys, vo, nullptr);
    BanList* bans = bans_.get();
    gatekeeper_->set_banned_check([bans](const std::string& u) { return bans->is_banned(u); });
    gatekeeper_->set_revoked_check([bans](const std::string& j) { return bans->is_revoked(j); });
    router_ = std::make_unique<Router>(clock_, *archive_, *directory_, port_, RouterOptions{});
    ASSERT_TRUE(router_->init().is_ok());
    router_->set_admin(bans_.get(), gatekeeper_.get());
  }
  std::string token(const std::string& sub, const std::string& jti = "j") {
    return signer_->sign({{"sub", sub},
                          {"iss", "iss"},
                          {"aud", "aud"},
                          {"iat", clock_.now_s()},
                          {"exp", clock_.now_s() + 3600},
                          {"jti", jti},
                          {"roles", json::array({"user"})}});
  }
  Status connect(const void* handle, const std::string& user, const std::string& device,
                 const std::string& jti = "j") {
    std::string t = token(user, jti);
    return gatekeeper_->authenticate(handle, user + ":" + device, user.c_str(), t.c_str());
  }
  json control(const json& request) {
    router_->on_control(svc_, request.dump());
    return json::parse(port_.replies.back());
  }

  FakeClock clock_{1'700'000'000'000};
  std::filesystem::path dir_;
  std::unique_ptr<jwt::Signer> signer_;
  std::unique_ptr<store::Archive> archive_;
  std::unique_ptr<Directory> directory_;
  std::unique_ptr<BanList> bans_;
  std::unique_ptr<Gatekeeper> gatekeeper_;
  std::unique_ptr<Router> router_;
  RecordingPort port_;
  DeviceSession svc_;
  int h1_ = 1, h2_ = 2, h3_ = 3;
};

TEST_F(AdminOpsTest, BanKicksRefusesConnectAndSurvivesRestart) {
  ASSERT_TRUE(connect(&h1_, "bob", "phone").is_ok());
  auto r = control({{"op", "user.ban"}, {"user", "bob"}, {"req", "1"}});
  EXPECT_EQ(r["ok"], true) << r;
  EXPECT_EQ(r["req"], "1");
  EXPECT_EQ(port_.kicked_users, std::vector<std::string>{"bob"});
  Status refused = connect(&h2_, "bob", "laptop");
  EXPECT_EQ(refused.code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(connect(&h3_, "alice", "phone").is_ok());

  open();  // the ban is in the archive
  EXPECT_EQ(connect(&h2_, "bob", "laptop").code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(control({{"op", "user.unban"}, {"user", "bob"}, {"req", "2"}})["ok"], true);
  EXPECT_TRUE(connect(&h2_, "bob", "laptop").is_ok());
  open();
  EXPECT_TRUE(connect(&h2_, "bob", "laptop").is_ok());
}

TEST_F(AdminOpsTest, BadOrUnknownUsersAreRefused) {
  auto bad = control({{"op", "user.ban"}, {"user", "NOT A USER"}, {"req", "1"}});
  EXPECT_EQ(bad["ok"], false);
  EXPECT_EQ(bad["error"], "invalid_argument");
  auto unknown = control({{"op", "user.ban"}, {"user", "nobody"}, {"req", "2"}});
  EXPECT_EQ(unknown["error"], "not_found");
  EXPECT_TRUE(port_.kicked_users.empty());
}

TEST_F(AdminOpsTest, KickAndListConnectedDevices) {
  ASSERT_TRUE(connect(&h1_, "bob", "phone").is_ok());
  clock_.advance_ms(1000);
  ASSERT_TRUE(connect(&h2_, "bob", "laptop").is_ok());
  auto list = control({{"op", "client.list"}, {"req", "1"}});
  ASSERT_EQ(list["ok"], true) << list;
  ASSERT_EQ(list["result"]["clients"].size(), 2u);
  EXPECT_EQ(list["result"]["clients"][0]["clientid"], "bob:laptop");
  EXPECT_EQ(list["result"]["clients"][0]["user"], "bob");
  EXPECT_EQ(list["result"]["clients"][0]["device"], "laptop");
  EXPECT_EQ(list["result"]["clients"][0]["connected_ms"], clock_.now_ms());

  EXPECT_EQ(control({{"op", "client.kick"}, {"clientid", "bob:phone"}, {"req", "2"}})["ok"], true);
  EXPECT_EQ(port_.kicked_clients, std::vector<std::string>{"bob:phone"});
  gatekeeper_->disconnected(&h1_);
  auto gone = control({{"op", "client.kick"}, {"clientid", "bob:phone"}, {"req", "3"}});
  EXPECT_EQ(gone["error"], "not_found");
  auto bad = control({{"op", "client.kick"}, {"clientid", "nocolon"}, {"req", "4"}});
  EXPECT_EQ(bad["error"], "invalid_argument");
  EXPECT_EQ(port_.kicked_clients.size(), 1u);
  EXPECT_EQ(control({{"op", "client.list"}, {"req", "5"}})["result"]["clients"].size(), 1u);
}

TEST_F(AdminOpsTest, RevokedTokenIsClosedRefusedAndSurvivesRestart) {
  ASSERT_TRUE(connect(&h1_, "bob", "phone", "stolen").is_ok());
  ASSERT_TRUE(connect(&h2_, "bob", "laptop", "other").is_ok());
  auto list = control({{"op", "client.list"}, {"req", "0"}});
  EXPECT_EQ(list["result"]["clients"][1]["jti"], "stolen");

  auto r = control({{"op", "token.revoke"}, {"jti", "stolen"}, {"req", "1"}});
  ASSERT_EQ(r["ok"], true) << r;
  EXPECT_EQ(r["result"]["closed"], json::array({"bob:phone"}));
  EXPECT_EQ(port_.kicked_clients, std::vector<std::string>{"bob:phone"});
  EXPECT_TRUE(port_.kicked_users.empty());  // only that token, not the user
  gatekeeper_->disconnected(&h1_);
  EXPECT_EQ(connect(&h1_, "bob", "phone", "stolen").code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(connect(&h1_, "bob", "phone", "fresh").is_ok());

  open();  // the revocation is in the archive
  EXPECT_EQ(connect(&h3_, "bob", "tablet", "stolen").code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(connect(&h3_, "bob", "tablet", "other").is_ok());
}

TEST_F(AdminOpsTest, RevocationsOfExpiredTokensAreForgotten) {
  const int64_t now = clock_.now_s();
  ASSERT_EQ(
      control({{"op", "token.revoke"}, {"jti", "old"}, {"exp", now - 100}, {"req", "1"}})["ok"],
      true);
  ASSERT_EQ(
      control({{"op", "token.revoke"}, {"jti", "live"}, {"exp", now + 100}, {"req", "2"}})["ok"],
      true);
  ASSERT_EQ(control({{"op", "token.revoke"}, {"jti", "unknown-exp"}, {"req", "3"}})["ok"], true);
  EXPECT_EQ(bans_->forget_expired(now, 30), 1u);
  EXPECT_FALSE(bans_->is_revoked("old"));
  EXPECT_TRUE(bans_->is_revoked("live"));
  EXPECT_TRUE(bans_->is_revoked("unknown-exp"));
  open();
  EXPECT_FALSE(bans_->is_revoked("old"));
  EXPECT_TRUE(bans_->is_revoked("live"));
  EXPECT_EQ(bans_->revoked_count(), 2u);
}

TEST_F(AdminOpsTest, BadRevocationsAreRefused) {
  for (const json& bad :
       {json{{"op", "token.revoke"}, {"req", "1"}},
        json{{"op", "token.revoke"}, {"jti", ""}, {"req", "1"}},
        json{{"op", "token.revoke"}, {"jti", 7}, {"req", "1"}},
        json{{"op", "token.revoke"}, {"jti", std::string(257, 'x')}, {"req", "1"}},
        json{{"op", "token.revoke"}, {"jti", std::string("a\0b", 3)}, {"req", "1"}},
        json{{"op", "token.revoke"}, {"jti", "x"}, {"exp", -1}, {"req", "1"}},
        json{{"op", "token.revoke"}, {"jti", "x"}, {"exp", "soon"}, {"req", "1"}}}) {
    auto r = control(bad);
    EXPECT_EQ(r["ok"], false) << bad;
    EXPECT_EQ(r["error"], "invalid_argument") << bad;
  }
  EXPECT_EQ(bans_->revoked_count(), 0u);
}

}  // namespace
}  // namespace chat::broker
