// The broker's side of an external OIDC provider: CONNECT with provider
// tokens (trust domain by `iss`, key rotation), account origins (provisioning,
// cross-origin refusals, removal), user.add's origin, and the plugin options.
#include <gtest/gtest.h>

#include <filesystem>

#include "chat/broker/account_origins.h"
#include "chat/broker/config.h"
#include "chat/broker/gatekeeper.h"
#include "chat/broker/router.h"
#include "oidc_test_keys.h"

namespace chat::broker {
namespace {

using json = nlohmann::json;
using testing::ProviderKey;

constexpr char kIssuer[] = "https://kc.example.com/realms/chat";

class NullPort final : public BrokerPort {
 public:
  void publish(std::string_view, const std::string&, std::string_view payload, int, bool) override {
    replies.emplace_back(payload);
  }
  void kick_client(const std::string&) override {}
  void kick_user(const std::string& u) override { kicked.push_back(u); }
  void log(LogLevel, const std::string&) override {}
  std::vector<std::string> replies, kicked;
};

class BrokerOidcTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    k1_ = new ProviderKey(ProviderKey::rs256("k1"));
    k2_ = new ProviderKey(ProviderKey::es256("k2"));
  }
  static void TearDownTestSuite() {
    delete k1_;
    delete k2_;
  }
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("broker-oidc-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto signer = jwt::Signer::load_or_create(dir_ / "k.pem", dir_ / "jwks.json");
    ASSERT_TRUE(signer.is_ok());
    signer_ = std::make_unique<jwt::Signer>(*signer);
    open();
    ASSERT_TRUE(archive_->add_user("alice").is_ok());  // a local account
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
    origins_.reset();
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
    origins_ = std::make_unique<AccountOrigins>(*archive_);
    ASSERT_TRUE(origins_->load().is_ok());
    auto keys = jwt::KeySet::from_jwks(signer_->public_jwks());
    ASSERT_TRUE(keys.is_ok());
    jwt::VerifyOptions vo;
    vo.issuer = "chat-platform";
    vo.audience = "chat";
    gatekeeper_ = std::make_unique<Gatekeeper>(clock_, *keys, vo, nullptr);
    oidc::Provider provider;
    provider.issuer = kIssuer;
    provider.audience = "chat";
    auto external = oidc::parse_jwks(testing::jwks_of(*k1_));
    ASSERT_TRUE(external.is_ok());
    gatekeeper_->set_external(provider, std::move(external).value());
    AccountOrigins* origins = origins_.get();
    origins_->set_admins(admins_);
    gatekeeper_->set_origin_check(
        [origins](const std::string& user, bool ext, const std::string& sub) {
          return origins->admit(user, ext, sub);
        });
    router_ = std::make_unique<Router>(clock_, *archive_, *directory_, port_, RouterOptions{});
    ASSERT_TRUE(router_->init().is_ok());
    router_->set_origins(origins_.get());
  }
  std::string external_token(const ProviderKey& key, const std::string& user,
                             json roles = json::array(),
                             const std::string& sub = testing::kDefaultProviderSub) {
    return key.sign(testing::provider_claims(kIssuer, "chat", user, clock_.now_s(), roles, sub));
  }
  std::string local_token(const std::string& sub) {
    return signer_->sign({{"sub", sub},
                          {"iss", "chat-platform"},
                          {"aud", "chat"},
                          {"iat", clock_.now_s()},
                          {"exp", clock_.now_s() + 3600},
                          {"jti", "j"},
                          {"roles", json::array({"user"})}});
  }
  Status connect(const std::string& user, const std::string& token) {
    return gatekeeper_->authenticate(&handle_, user + ":phone", user.c_str(), token.c_str());
  }
  json control(const json& request) {
    router_->on_control(svc_, request.dump());
    return json::parse(port_.replies.back());
  }

  static ProviderKey* k1_;
  static ProviderKey* k2_;
  FakeClock clock_{SystemClock::instance().now_ms()};
  std::filesystem::path dir_;
  std::unique_ptr<jwt::Signer> signer_;
  std::unique_ptr<store::Archive> archive_;
  std::unique_ptr<Directory> directory_;
  std::unique_ptr<AccountOrigins> origins_;
  std::unique_ptr<Gatekeeper> gatekeeper_;
  std::unique_ptr<Router> router_;
  NullPort port_;
  DeviceSession svc_;
  int handle_ = 1;
  std::vector<std::string> admins_ = {"root"};  // plugin_opt_admins
};
ProviderKey* BrokerOidcTest::k1_ = nullptr;
ProviderKey* BrokerOidcTest::k2_ = nullptr;

TEST_F(BrokerOidcTest, ProviderTokenConnectsAndProvisionsTheUser) {
  ASSERT_FALSE(*archive_->has_user("erin"));
  Status st = connect("erin", external_token(*k1_, "erin", {"admin", "service"}));
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  const DeviceSession* s = gatekeeper_->session(&handle_);
  ASSERT_NE(s, nullptr);
  EXPECT_FALSE(s->service);  // the provider cannot grant service (nor admin: common/oidc tests)
  EXPECT_TRUE(*archive_->has_user("erin"));  // others can message erin now
  EXPECT_TRUE(origins_->is_external("erin"));
  // The origin survives a restart: erin stays the provider's.
  open();
  EXPECT_TRUE(origins_->is_external("erin"));
  EXPECT_EQ(connect("erin", local_token("erin")).code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(connect("erin", external_token(*k1_, "erin")).is_ok());
}

TEST_F(BrokerOidcTest, NeitherOriginSpeaksForTheOthersUsers) {
  // alice is a local account: the provider's token for "alice" is refused...
  EXPECT_EQ(connect("alice", external_token(*k1_, "alice")).code(), StatusCode::kPermissionDenied);
  EXPECT_FALSE(origins_->is_external("alice"));
  EXPECT_TRUE(connect("alice", local_token("alice")).is_ok());
  // ...and an embedded-issuer token for an external user too.
  ASSERT_TRUE(connect("erin", external_token(*k1_, "erin")).is_ok());
  EXPECT_EQ(connect("erin", local_token("erin")).code(), StatusCode::kPermissionDenied);
}

TEST_F(BrokerOidcTest, EachTrustDomainUsesItsOwnKeysOnly) {
  // The provider's iss signed with the embedded key (whose kid the provider lacks).
  json c = testing::provider_claims(kIssuer, "chat", "erin", clock_.now_s());
  EXPECT_FALSE(connect("erin", signer_->sign(c)).is_ok());
  // The embedded iss signed with the provider's key.
  json local = {{"sub", "alice"},
                {"iss", "chat-platform"},
                {"aud", "chat"},
                {"exp", clock_.now_s() + 60},
                {"roles", {"user"}}};
  EXPECT_FALSE(connect("alice", k1_->sign(local)).is_ok());
  EXPECT_FALSE(*archive_->has_user("erin"));
}

TEST_F(BrokerOidcTest, RotationAcceptsTheNewKeyAndRefusesTheRemovedOne) {
  const std::string old_token = external_token(*k1_, "erin");
  const std::string new_token = external_token(*k2_, "erin");
  EXPECT_TRUE(connect("erin", old_token).is_ok());
  EXPECT_FALSE(connect("erin", new_token).is_ok());
  gatekeeper_->replace_external_keys(*oidc::parse_jwks(testing::jwks_of(*k1_, *k2_)));
  EXPECT_TRUE(connect("erin", old_token).is_ok());
  EXPECT_TRUE(connect("erin", new_token).is_ok());
  gatekeeper_->replace_external_keys(*oidc::parse_jwks(testing::jwks_of(*k2_)));
  EXPECT_FALSE(connect("erin", old_token).is_ok());
  EXPECT_TRUE(connect("erin", new_token).is_ok());
}

TEST_F(BrokerOidcTest, BadProviderTokensAreRefusedWithoutProvisioning) {
  json c = testing::provider_claims(kIssuer, "chat", "erin", clock_.now_s());
  c["realm_access"]["roles"] = "admin";
  EXPECT_EQ(connect("erin", k1_->sign(c)).code(), StatusCode::kUnauthenticated);
  c = testing::provider_claims(kIssuer, "chat", "Erin!", clock_.now_s());
  EXPECT_EQ(connect("Erin!", k1_->sign(c)).code(), StatusCode::kUnauthenticated);
  c = testing::provider_claims(kIssuer, "chat", "svc.evil", clock_.now_s(), {"service"});
  EXPECT_FALSE(connect("svc.evil", k1_->sign(c)).is_ok());
  // A valid token for another user than the MQTT username.
  EXPECT_FALSE(
      gatekeeper_->authenticate(&handle_, "bob:phone", "bob", external_token(*k1_, "erin").c_str())
          .is_ok());
  EXPECT_FALSE(*archive_->has_user("erin"));
  EXPECT_FALSE(*archive_->has_user("bob"));
}

TEST_F(BrokerOidcTest, UserAddKeepsOriginsApartAndRemovalIsFinal) {
  ASSERT_TRUE(connect("erin", external_token(*k1_, "erin")).is_ok());
  // A sign-up racing erin's first CONNECT loses.
  json r = control({{"op", "user.add"}, {"user", "erin"}, {"req", "1"}});
  EXPECT_FALSE(r["ok"].get<bool>()) << r.dump();
  EXPECT_FALSE(origins_->is_external("alice"));
  r = control({{"op", "user.add"}, {"user", "alice"}, {"origin", "external"}, {"req", "2"}});
  EXPECT_FALSE(r["ok"].get<bool>()) << r.dump();
  r = control({{"op", "user.add"}, {"user", "frank"}, {"origin", "external"}, {"req", "3"}});
  EXPECT_TRUE(r["ok"].get<bool>()) << r.dump();
  EXPECT_TRUE(origins_->is_external("frank"));
  r = control({{"op", "user.add"}, {"user", "gina"}, {"origin", "ldap"}, {"req", "4"}});
  EXPECT_FALSE(r["ok"].get<bool>()) << r.dump();
  // Removed: the provider's tokens cannot bring erin back.
  r = control({{"op", "user.remove"}, {"user", "erin"}, {"req", "5"}});
  EXPECT_TRUE(r["ok"].get<bool>()) << r.dump();
  EXPECT_FALSE(connect("erin", external_token(*k1_, "erin")).is_ok());
  EXPECT_FALSE(*archive_->has_user("erin"));
}

TEST_F(BrokerOidcTest, AnExternalAccountBelongsToTheProviderSubjectItWasProvisionedFor) {
  ASSERT_TRUE(connect("erin", external_token(*k1_, "erin", json::array(), "sub-erin")).is_ok());
  EXPECT_EQ(origins_->subject("erin"), "sub-erin");
  // "erin" now names someone else at the provider (the first erin was
  // deleted there, or renamed): a new sub, refused.
  Status st = connect("erin", external_token(*k1_, "erin", json::array(), "sub-someone-else"));
  EXPECT_EQ(st.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(st.message().find("another subject"), std::string::npos) << st.message();
  // The binding survives a restart (archive meta origin\0erin = external:sub-erin).
  open();
  EXPECT_EQ(origins_->subject("erin"), "sub-erin");
  EXPECT_FALSE(connect("erin", external_token(*k1_, "erin", json::array(), "sub-x")).is_ok());
  EXPECT_TRUE(connect("erin", external_token(*k1_, "erin", json::array(), "sub-erin")).is_ok());
  auto marks = archive_->user_marks();
  ASSERT_TRUE(marks.is_ok());
  bool found = false;
  for (const auto& [user, mark] : *marks) {
    if (user == "erin") found = mark == "external:sub-erin";
  }
  EXPECT_TRUE(found);
  // chat-api's user.add carries the sub: another one is refused, the same or none accepted.
  json r = control({{"op", "user.add"},
                    {"user", "erin"},
                    {"origin", "external"},
                    {"sub", "sub-x"},
                    {"req", "1"}});
  EXPECT_FALSE(r["ok"].get<bool>()) << r.dump();
  r = control({{"op", "user.add"},
               {"user", "erin"},
               {"origin", "external"},
               {"sub", "sub-erin"},
               {"req", "2"}});
  EXPECT_TRUE(r["ok"].get<bool>()) << r.dump();
  r = control({{"op", "user.add"}, {"user", "erin"}, {"origin", "external"}, {"req", "3"}});
  EXPECT_TRUE(r["ok"].get<bool>()) << r.dump();
  EXPECT_EQ(origins_->subject("erin"), "sub-erin");
  // A user.add provisions with the sub it carries.
  r = control({{"op", "user.add"},
               {"user", "frank"},
               {"origin", "external"},
               {"sub", "sub-frank"},
               {"req", "4"}});
  EXPECT_TRUE(r["ok"].get<bool>()) << r.dump();
  EXPECT_EQ(origins_->subject("frank"), "sub-frank");
  EXPECT_FALSE(connect("frank", external_token(*k1_, "frank")).is_ok());
  EXPECT_TRUE(connect("frank", external_token(*k1_, "frank", json::array(), "sub-frank")).is_ok());
  // A malformed sub, or one with a local origin, is a bad request.
  for (const json& bad : {json{{"op", "user.add"}, {"user", "gil"}, {"sub", "s"}, {"req", "5"}},
                          json{{"op", "user.add"},
                               {"user", "gil"},
                               {"origin", "external"},
                               {"sub", std::string(256, 's')},
                               {"req", "6"}},
                          json{{"op", "user.add"},
                               {"user", "gil"},
                               {"origin", "external"},
                               {"sub", 7},
                               {"req", "7"}}}) {
    r = control(bad);
    EXPECT_FALSE(r["ok"].get<bool>()) << bad.dump();
  }
  EXPECT_FALSE(*archive_->has_user("gil"));
}

TEST_F(BrokerOidcTest, AProviderTokenWithoutAUsableSubIsRefused) {
  json c = testing::provider_claims(kIssuer, "chat", "erin", clock_.now_s());
  c.erase("sub");
  EXPECT_EQ(connect("erin", k1_->sign(c)).code(), StatusCode::kUnauthenticated);
  c["sub"] = std::string(256, 'x');
  EXPECT_EQ(connect("erin", k1_->sign(c)).code(), StatusCode::kUnauthenticated);
  c["sub"] = std::string("a\0b", 3);
  EXPECT_EQ(connect("erin", k1_->sign(c)).code(), StatusCode::kUnauthenticated);
  EXPECT_FALSE(*archive_->has_user("erin"));
  EXPECT_FALSE(origins_->is_external("erin"));
}

TEST_F(BrokerOidcTest, AnOriginRecordNotUnderstoodRefusesEveryTokenWithoutCrashing) {
  ASSERT_TRUE(archive_->set_user_mark("erin", "external").is_ok());  // no sub
  ASSERT_TRUE(archive_->set_user_mark("hank", "\x01garbage").is_ok());
  ASSERT_TRUE(archive_->add_user("hank").is_ok());
  open();
  EXPECT_EQ(origins_->unrecognized(), (std::vector<std::string>{"erin", "hank"}));
  EXPECT_EQ(connect("erin", external_token(*k1_, "erin")).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(connect("erin", local_token("erin")).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(connect("hank", local_token("hank")).code(), StatusCode::kPermissionDenied);
  json r = control({{"op", "user.add"}, {"user", "erin"}, {"origin", "external"}, {"req", "1"}});
  EXPECT_FALSE(r["ok"].get<bool>()) << r.dump();
  EXPECT_TRUE(connect("alice", local_token("alice")).is_ok());
}

TEST_F(BrokerOidcTest, AChatAdminsIdIsNeverProvisionedAtConnect) {
  // chat-api has not announced root yet (CHAT_ADMIN_PASSWORD set: root will
  // be a local account): a provider token for "root" must not take the id.
  Status st = connect("root", external_token(*k1_, "root", {"admin"}));
  EXPECT_EQ(st.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(st.message().find("CHAT_ADMINS"), std::string::npos) << st.message();
  EXPECT_FALSE(*archive_->has_user("root"));
  EXPECT_FALSE(origins_->is_external("root"));
  // chat-api announces root as local: the local admin connects, the provider never.
  json r = control({{"op", "user.add"}, {"user", "root"}, {"req", "1"}});
  EXPECT_TRUE(r["ok"].get<bool>()) << r.dump();
  EXPECT_TRUE(connect("root", local_token("root")).is_ok());
  EXPECT_FALSE(connect("root", external_token(*k1_, "root")).is_ok());
  // Non-admin ids are still provisioned at CONNECT.
  EXPECT_TRUE(connect("erin", external_token(*k1_, "erin")).is_ok());
}

TEST_F(BrokerOidcTest, AnExternalAdminCreatedByChatApiIsBoundOnFirstConnect) {
  admins_ = {"root", "ops"};
  open();
  // OIDC on, no CHAT_ADMIN_PASSWORD: chat-api announces root as external, no sub yet.
  json r = control({{"op", "user.add"}, {"user", "root"}, {"origin", "external"}, {"req", "1"}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
  EXPECT_EQ(origins_->subject("root"), "");
  EXPECT_EQ(connect("root", local_token("root")).code(), StatusCode::kPermissionDenied);
  ASSERT_TRUE(connect("root", external_token(*k1_, "root", {"admin"}, "sub-root")).is_ok());
  EXPECT_EQ(origins_->subject("root"), "sub-root");
  EXPECT_FALSE(connect("root", external_token(*k1_, "root", {"admin"}, "sub-other")).is_ok());
  // Re-announced after a restart of chat-api (now with the sub): unchanged.
  r = control({{"op", "user.add"},
               {"user", "root"},
               {"origin", "external"},
               {"sub", "sub-root"},
               {"req", "2"}});
  EXPECT_TRUE(r["ok"].get<bool>()) << r.dump();
  // chat-api bound "ops" first (REST): the broker binds the same sub.
  r = control({{"op", "user.add"}, {"user", "ops"}, {"origin", "external"}, {"req", "3"}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
  r = control({{"op", "user.add"},
               {"user", "ops"},
               {"origin", "external"},
               {"sub", "sub-ops"},
               {"req", "4"}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
  EXPECT_FALSE(connect("ops", external_token(*k1_, "ops", json::array(), "sub-x")).is_ok());
  EXPECT_TRUE(connect("ops", external_token(*k1_, "ops", json::array(), "sub-ops")).is_ok());
}

TEST(BrokerOidcConfig, AdminsOption) {
  auto c = PluginConfig::from_options({{"data_dir", "/d"}, {"admins", " root, ops ,,root"}});
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->admins, (std::vector<std::string>{"root", "ops"}));
  EXPECT_TRUE(PluginConfig::from_options({{"data_dir", "/d"}})->admins.empty());
  for (const char* bad : {"Root", "root,svc.api", "a b", "x@y"}) {
    auto r = PluginConfig::from_options({{"data_dir", "/d"}, {"admins", bad}});
    ASSERT_FALSE(r.is_ok()) << bad;
    EXPECT_NE(r.status().message().find("plugin_opt_admins"), std::string::npos)
        << r.status().message();
  }
}

TEST(BrokerOidcConfig, OptionsAndErrorsNameTheKey) {
  using Opts = std::vector<std::pair<std::string, std::string>>;
  auto c = PluginConfig::from_options({{"data_dir", "/d"},
                                       {"oidc_issuer", kIssuer},
                                       {"oidc_audience", "chat"},
                                       {"oidc_jwks_file", "/d/p.json"},
                                       {"oidc_roles_claim", "resource_access.chat.roles"}});
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_TRUE(c->oidc.enabled());
  EXPECT_EQ(c->oidc.user_claim, "preferred_username");
  EXPECT_EQ(c->oidc.roles_claim, "resource_access.chat.roles");
  EXPECT_EQ(c->oidc_jwks_file, "/d/p.json");
  EXPECT_FALSE(PluginConfig::from_options({{"data_dir", "/d"}})->oidc.enabled());

  const std::vector<std::pair<Opts, std::string>> bad = {
      {{{"data_dir", "/d"}, {"oidc_issuer", kIssuer}, {"oidc_jwks_file", "/p"}}, "oidc_audience"},
      {{{"data_dir", "/d"}, {"oidc_issuer", kIssuer}, {"oidc_audience", "a"}}, "oidc_jwks_file"},
      {{{"data_dir", "/d"}, {"oidc_audience", "a"}, {"oidc_jwks_file", "/p"}}, "oidc_issuer"},
      {{{"data_dir", "/d"},
        {"oidc_issuer", "chat-platform"},
        {"oidc_audience", "a"},
        {"oidc_jwks_file", "/p"}},
       "oidc_issuer"},
      {{{"data_dir", "/d"}, {"oidc_user_claim", "a..b"}}, "oidc_user_claim"},
  };
  for (const auto& [options, key] : bad) {
    auto r = PluginConfig::from_options(options);
    ASSERT_FALSE(r.is_ok()) << key;
    EXPECT_NE(r.status().message().find("plugin_opt_" + key), std::string::npos)
        << r.status().message();
  }
}

}  // namespace
}  // namespace chat::broker
