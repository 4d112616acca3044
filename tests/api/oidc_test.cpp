// chat-api with an external OIDC provider trusted next to the embedded issuer:
// provisioning of external accounts, cross-origin refusals, the role mapping,
// key rotation (and the verified-token cache), and the CHAT_OIDC_* settings.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "http_fixture.h"
#include "oidc_test_keys.h"

namespace chat::api {
namespace {

using namespace chat::api::test_support;  // NOLINT(google-build-using-namespace)
using chat::testing::ProviderKey;

constexpr char kIssuer[] = "https://kc.example.com/realms/chat";

class ApiOidcTest : public HttpServerTest {
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
    start({{"CHAT_OIDC_ISSUER", kIssuer},
           {"CHAT_OIDC_AUDIENCE", "chat"},
           {"CHAT_OIDC_JWKS", "/unused/by/the/fixture.json"}});
    auto keys = oidc::parse_jwks(chat::testing::jwks_of(*k1_));
    ASSERT_TRUE(keys.is_ok());
    tokens_->set_external(config_.oidc, std::move(keys).value(), config_.admins);
  }
  std::string external_token(const ProviderKey& key, const std::string& user,
                             json roles = json::array(),
                             const std::string& sub = chat::testing::kDefaultProviderSub) {
    return key.sign(
        chat::testing::provider_claims(kIssuer, "chat", user, clock_.now_s(), roles, sub));
  }
  int status_of(const std::string& token) {
    auto r = get("/v1/blocks", token);
    return r ? r->status : -1;
  }

  static ProviderKey* k1_;
  static ProviderKey* k2_;
};
ProviderKey* ApiOidcTest::k1_ = nullptr;
ProviderKey* ApiOidcTest::k2_ = nullptr;

TEST_F(ApiOidcTest, FirstUseProvisionsAnExternalAccountWithoutPassword) {
  control_.clear_requests();
  EXPECT_EQ(status_of(external_token(*k1_, "erin")), 200);
  auto account = data_->accounts->get_account("erin");
  ASSERT_TRUE(account.is_ok());
  EXPECT_TRUE(is_external_account(*account));
  EXPECT_TRUE(account->password_hash.empty());
  json add = control_.last_request();
  EXPECT_EQ(add["op"], "user.add");
  EXPECT_EQ(add["user"], "erin");
  EXPECT_EQ(add["origin"], "external");
  // Once only.
  control_.clear_requests();
  EXPECT_EQ(status_of(external_token(*k1_, "erin")), 200);
  EXPECT_TRUE(control_.requests().empty());

  // No password here: the password grant and a password change both fail.
  for (const char* password : {"", "x", "correct horse"}) {
    auto r = post_form("/v1/oauth/token",
                       std::string("grant_type=password&username=erin&password=") + password);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    if (*password != '\0') {
      EXPECT_EQ(json::parse(r->body)["error"], "invalid_grant");
    }
  }
  auto r =
      post_json("/v1/users/me/password", {{"old_password", ""}, {"new_password", "new password!"}},
                external_token(*k1_, "erin"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  // Nor can anyone sign up under that id.
  r = post_json("/v1/users", {{"user", "erin"}, {"password", "correct horse"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 409);
}

TEST_F(ApiOidcTest, NeitherIssuerSpeaksForTheOthersAccounts) {
  auto r = post_json("/v1/users", {{"user", "bob"}, {"password", "correct horse"}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 201);
  EXPECT_EQ(status_of(external_token(*k1_, "bob")), 401);
  EXPECT_EQ(status_of(external_token(*k1_, "root", {"admin"})), 401);  // a local admin
  EXPECT_EQ(status_of(external_token(*k1_, "erin")), 200);
  EXPECT_EQ(status_of(tokens_->mint("erin", {"user"}, 600)), 401);
  EXPECT_EQ(status_of(tokens_->mint("bob", {"user"}, 600)), 200);
}

TEST_F(ApiOidcTest, BrokerRefusalRollsTheAccountBack) {
  control_.set_handler([](const json& request) -> Result<json> {
    if (request["op"] == "user.add") return permission_denied("dana exists as a local account");
    return ok_reply();
  });
  EXPECT_EQ(status_of(external_token(*k1_, "dana")), 401);
  EXPECT_EQ(data_->accounts->get_account("dana").status().code(), StatusCode::kNotFound);
  control_.fail_with(unavailable("broker down"));
  EXPECT_EQ(status_of(external_token(*k1_, "dana")), 503);
  EXPECT_EQ(data_->accounts->get_account("dana").status().code(), StatusCode::kNotFound);
}

TEST_F(ApiOidcTest, AdminOnlyWhenTheProviderAndChatAdminsAgree) {
  auto p = tokens_->verify(external_token(*k1_, "root", {"admin"}));
  ASSERT_TRUE(p.is_ok()) << p.status().to_string();
  EXPECT_TRUE(p->external);
  EXPECT_TRUE(p->has_role("admin"));
  p = tokens_->verify(external_token(*k1_, "root", {"user"}));
  ASSERT_TRUE(p.is_ok());
  EXPECT_FALSE(p->has_role("admin"));
  p = tokens_->verify(external_token(*k1_, "erin", {"admin", "service"}));
  ASSERT_TRUE(p.is_ok());
  EXPECT_EQ(p->roles, std::vector<std::string>{"user"});
}

TEST_F(ApiOidcTest, RotationForgetsTokensOfTheRemovedKey) {
  const std::string old_token = external_token(*k1_, "erin");
  const std::string new_token = external_token(*k2_, "erin");
  EXPECT_EQ(status_of(old_token), 200);  // now remembered as verified
  EXPECT_EQ(status_of(new_token), 401);
  tokens_->replace_external_keys(*oidc::parse_jwks(chat::testing::jwks_of(*k1_, *k2_)));
  EXPECT_EQ(status_of(old_token), 200);
  EXPECT_EQ(status_of(new_token), 200);
  tokens_->replace_external_keys(*oidc::parse_jwks(chat::testing::jwks_of(*k2_)));
  EXPECT_EQ(status_of(old_token), 401);
  EXPECT_EQ(status_of(new_token), 200);
}

TEST_F(ApiOidcTest, BadProviderTokensGetA401) {
  json c = chat::testing::provider_claims(kIssuer, "chat", "erin", clock_.now_s());
  c["realm_access"] = {{"roles", {{"name", "admin"}}}};
  EXPECT_EQ(status_of(k1_->sign(c)), 401);
  c = chat::testing::provider_claims(kIssuer, "chat", "Erin Smith", clock_.now_s());
  EXPECT_EQ(status_of(k1_->sign(c)), 401);
  c.erase("preferred_username");
  EXPECT_EQ(status_of(k1_->sign(c)), 401);
  c = chat::testing::provider_claims(kIssuer, "other-audience", "erin", clock_.now_s());
  EXPECT_EQ(status_of(k1_->sign(c)), 401);
  EXPECT_EQ(data_->accounts->get_account("erin").status().code(), StatusCode::kNotFound);
}

TEST_F(ApiOidcTest, AnExternalAccountBelongsToTheProviderSubjectItWasProvisionedFor) {
  control_.clear_requests();
  EXPECT_EQ(status_of(external_token(*k1_, "erin", json::array(), "sub-erin")), 200);
  auto account = data_->accounts->get_account("erin");
  ASSERT_TRUE(account.is_ok());
  EXPECT_EQ(account->external_sub, "sub-erin");
  json add = control_.last_request();
  EXPECT_EQ(add["op"], "user.add");
  EXPECT_EQ(add["origin"], "external");
  EXPECT_EQ(add["sub"], "sub-erin");
  // The provider's "erin" is now someone else (deleted and re-created, or renamed).
  auto r = get("/v1/blocks", external_token(*k1_, "erin", json::array(), "sub-newcomer"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_NE(r->body.find("sub differs"), std::string::npos) << r->body;
  EXPECT_EQ(status_of(external_token(*k1_, "erin", json::array(), "sub-erin")), 200);
  EXPECT_EQ(data_->accounts->get_account("erin")->external_sub, "sub-erin");
}

TEST_F(ApiOidcTest, AProviderTokenWithoutAUsableSubIsRefused) {
  json c = chat::testing::provider_claims(kIssuer, "chat", "erin", clock_.now_s());
  c.erase("sub");
  EXPECT_EQ(status_of(k1_->sign(c)), 401);
  for (json sub : {json(""), json(std::string(256, 's')), json(std::string("a\0b", 3)), json(1)}) {
    c["sub"] = sub;
    EXPECT_EQ(status_of(k1_->sign(c)), 401) << sub.dump();
  }
  EXPECT_EQ(data_->accounts->get_account("erin").status().code(), StatusCode::kNotFound);
}

TEST_F(ApiOidcTest, ConcurrentFirstRequestsAllSeeTheBrokersRefusal) {
  // The first user.add is slow and refused; a second first request arriving
  // meanwhile must not be served on the record the first is about to roll back.
  std::mutex mu;
  std::condition_variable cv;
  bool in_broker = false;
  std::atomic<int> calls{0};
  control_.set_handler([&](const json& request) -> Result<json> {
    if (request["op"] != "user.add") return ok_reply();
    if (calls.fetch_add(1) == 0) {
      {
        std::lock_guard lock(mu);
        in_broker = true;
      }
      cv.notify_all();
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    return permission_denied("dana exists as a local account");
  });
  const std::string token = external_token(*k1_, "dana");
  const auto request = [this, &token] {
    httplib::Client c("127.0.0.1", port_);
    auto r = c.Get("/v1/blocks", {{"Authorization", "Bearer " + token}});
    return r ? r->status : -1;
  };
  std::atomic<int> first{0};
  std::thread a([&] { first = request(); });
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(5), [&] { return in_broker; }));
  }
  std::vector<int> others(3, 0);
  std::vector<std::thread> threads;
  for (int& status : others) threads.emplace_back([&] { status = request(); });
  for (auto& t : threads) t.join();
  a.join();
  EXPECT_EQ(first.load(), 401);
  for (int status : others) EXPECT_EQ(status, 401);
  EXPECT_EQ(data_->accounts->get_account("dana").status().code(), StatusCode::kNotFound);
}

// OIDC on and no CHAT_ADMIN_PASSWORD: root is created as an external account
// that no provider subject is bound to yet.
class ApiOidcAdminTest : public HttpServerTest {
 protected:
  void SetUp() override {
    start({{"CHAT_OIDC_ISSUER", kIssuer},
           {"CHAT_OIDC_AUDIENCE", "chat"},
           {"CHAT_OIDC_JWKS", "/unused/by/the/fixture.json"},
           {"CHAT_ADMIN_PASSWORD", ""}});
    auto keys = oidc::parse_jwks(chat::testing::jwks_of(key_));
    ASSERT_TRUE(keys.is_ok());
    tokens_->set_external(config_.oidc, std::move(keys).value(), config_.admins);
  }
  std::string root_token(const std::string& sub) {
    return key_.sign(
        chat::testing::provider_claims(kIssuer, "chat", "root", clock_.now_s(), {"admin"}, sub));
  }
  int status_of(const std::string& token) {
    auto r = get("/v1/blocks", token);
    return r ? r->status : -1;
  }
  ProviderKey key_ = ProviderKey::es256("k-admin");
};

TEST_F(ApiOidcAdminTest, AnExternalAdminIsBoundOnFirstUseAndTheBrokerIsTold) {
  auto root = data_->accounts->get_account("root");
  ASSERT_TRUE(root.is_ok());
  ASSERT_TRUE(is_external_account(*root));
  EXPECT_EQ(root->external_sub, "");
  // announce_admins: user.add origin external, no sub while unbound.
  control_.clear_requests();
  ASSERT_TRUE(service_->announce_admins().is_ok());
  EXPECT_EQ(control_.last_request()["origin"], "external");
  EXPECT_FALSE(control_.last_request().contains("sub"));
  // The broker has root bound to another sub already (its first CONNECT):
  // refused, and not bound here.
  control_.script(permission_denied("root belongs to another subject"));
  EXPECT_EQ(status_of(root_token("sub-root")), 401);
  EXPECT_EQ(data_->accounts->get_account("root")->external_sub, "");
  // Otherwise the first use binds it, the broker first.
  control_.clear_requests();
  EXPECT_EQ(status_of(root_token("sub-root")), 200);
  EXPECT_EQ(data_->accounts->get_account("root")->external_sub, "sub-root");
  auto requests = control_.requests();
  ASSERT_FALSE(requests.empty());
  EXPECT_EQ(requests.front()["op"], "user.add");
  EXPECT_EQ(requests.front()["sub"], "sub-root");
  EXPECT_EQ(status_of(root_token("sub-other")), 401);
  EXPECT_EQ(status_of(root_token("sub-root")), 200);
  control_.clear_requests();
  ASSERT_TRUE(service_->announce_admins().is_ok());
  EXPECT_EQ(control_.last_request()["sub"], "sub-root");
}

Result<Config> config_with(std::map<std::string, std::string> env) {
  return Config::from_lookup([&env](const char* name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  });
}

TEST(ApiOidcConfig, SettingsAndErrorsNameTheVariable) {
  auto c = config_with({{"CHAT_OIDC_ISSUER", kIssuer},
                        {"CHAT_OIDC_AUDIENCE", "chat"},
                        {"CHAT_OIDC_JWKS", "/etc/chat/kc.json"},
                        {"CHAT_OIDC_USER_CLAIM", "email_local"},
                        {"CHAT_OIDC_ROLES_CLAIM", "resource_access.chat.roles"}});
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->oidc.issuer, kIssuer);
  EXPECT_EQ(c->oidc_jwks, "/etc/chat/kc.json");
  EXPECT_EQ(c->oidc.user_claim, "email_local");
  EXPECT_EQ(c->oidc.roles_claim, "resource_access.chat.roles");
  auto d = config_with({});
  ASSERT_TRUE(d.is_ok());
  EXPECT_FALSE(d->oidc.enabled());
  EXPECT_EQ(d->oidc.user_claim, "preferred_username");
  EXPECT_EQ(d->oidc.roles_claim, "realm_access.roles");

  const std::vector<std::pair<std::map<std::string, std::string>, std::string>> bad = {
      {{{"CHAT_OIDC_ISSUER", kIssuer}, {"CHAT_OIDC_JWKS", "/j"}}, "CHAT_OIDC_AUDIENCE"},
      {{{"CHAT_OIDC_ISSUER", kIssuer}, {"CHAT_OIDC_AUDIENCE", "a"}}, "CHAT_OIDC_JWKS"},
      {{{"CHAT_OIDC_AUDIENCE", "a"}, {"CHAT_OIDC_JWKS", "/j"}}, "CHAT_OIDC_ISSUER"},
      {{{"CHAT_OIDC_ISSUER", "chat-platform"},
        {"CHAT_OIDC_AUDIENCE", "a"},
        {"CHAT_OIDC_JWKS", "/j"}},
       "CHAT_OIDC_ISSUER"},
      {{{"CHAT_OIDC_ROLES_CLAIM", "a..b"}}, "CHAT_OIDC_ROLES_CLAIM"},
      {{{"CHAT_OIDC_USER_CLAIM", "a b"}}, "CHAT_OIDC_USER_CLAIM"},
  };
  for (const auto& [env, name] : bad) {
    auto r = config_with(env);
    ASSERT_FALSE(r.is_ok()) << name;
    EXPECT_EQ(r.status().message().rfind(name + ":", 0), 0u) << r.status().message();
  }
}

}  // namespace
}  // namespace chat::api
