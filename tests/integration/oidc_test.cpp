// An external OIDC provider against the real stack: the broker (CONNECT) and
// chat-api (REST) accept its tokens, provision the user, keep its accounts
// apart from local ones, and follow a key rotation without a restart.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "oidc_test_keys.h"
#include "stack.h"

namespace chat::testing {
namespace {

constexpr char kIssuer[] = "https://kc.example.com/realms/chat";

class OidcStackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/chat-oidc-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ::chmod(dir_.c_str(), 0755);  // the broker may run as the mosquitto user
    jwks_ = dir_ + "/provider-jwks.json";
    replace_file(jwks_, jwks_of(k1_));
    ::chmod(jwks_.c_str(), 0644);
    StackOptions options;
    options.env = {{"CHAT_OIDC_ISSUER", kIssuer},
                   {"CHAT_OIDC_AUDIENCE", "chat"},
                   {"CHAT_OIDC_JWKS", jwks_},
                   {"CHAT_ADMINS", "root"},
                   {"CHAT_ADMIN_PASSWORD", "root-password-1"}};
    stack_ = std::make_unique<Stack>(options);
  }
  void TearDown() override {
    stack_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string token(const ProviderKey& key, const std::string& user,
                    const std::string& sub = kDefaultProviderSub) {
    return key.sign(
        provider_claims(kIssuer, "chat", user, unix_now_s(), nlohmann::json::array(), sub));
  }
  // CONNACK reason of a fresh connection (0 = accepted).
  int mqtt_connect(const std::string& user, const std::string& token) {
    MqttClient c(stack_->mqtt_port(), device(user, "d" + std::to_string(++device_seq_), token));
    int rc = c.connect();
    c.disconnect();
    return rc;
  }
  int rest(const std::string& token) { return stack_->get("/v1/conversations", token).first; }
  // Replaces the provider's JWKS and tells chat-api (SIGHUP). The broker gets
  // a SIGHUP too (MOSQ_EVT_RELOAD) when `hup_broker`; otherwise its timer
  // notices the changed file.
  void rotate(const std::string& jwks, bool hup_broker = true) {
    replace_file(jwks_, jwks);
    ::chmod(jwks_.c_str(), 0644);
    stack_->signal_api(SIGHUP);
    if (hup_broker) stack_->signal_broker(SIGHUP);
  }

  ProviderKey k1_ = ProviderKey::rs256("kc-rsa-1");
  ProviderKey k2_ = ProviderKey::es256("kc-ec-2");
  std::string dir_;
  std::string jwks_;
  std::unique_ptr<Stack> stack_;
  int device_seq_ = 0;
};

TEST_F(OidcStackTest, RotatedKeysWorkWithoutRestartAndRemovedKeysAreRefused) {
  const std::string t1 = token(k1_, "erin");
  const std::string t2 = token(k2_, "erin");
  ASSERT_EQ(mqtt_connect("erin", t1), 0) << stack_->logs();
  EXPECT_EQ(rest(t1), 200) << stack_->logs();
  EXPECT_NE(mqtt_connect("erin", t2), 0);
  EXPECT_EQ(rest(t2), 401);

  // Step 1: the provider publishes its next key next to the current one (the
  // broker finds the changed file by itself).
  rotate(jwks_of(k1_, k2_), /*hup_broker=*/false);
  EXPECT_TRUE(eventually([&] { return mqtt_connect("erin", t2) == 0 && rest(t2) == 200; }, 20s))
      << stack_->logs();
  EXPECT_NE(stack_->log_tail("mosquitto", 1 << 20).find("chat: oidc.keys.loaded: count=2 file="),
            std::string::npos);
  EXPECT_NE(stack_->log_tail("mosquitto", 1 << 20).find(" trigger=file_changed"),
            std::string::npos);
  EXPECT_EQ(mqtt_connect("erin", t1), 0);
  EXPECT_EQ(rest(t1), 200);

  // Step 2: the old key is withdrawn (SIGHUP to both); chat-api's remembered
  // t1 goes with it. The broker's file watcher would get there by itself too:
  // the keys must (also) have been loaded by Mosquitto's reload event.
  rotate(jwks_of(k2_));
  EXPECT_TRUE(eventually([&] { return mqtt_connect("erin", t1) != 0 && rest(t1) == 401; }, 20s))
      << stack_->logs();
  EXPECT_TRUE(eventually(
      [&] {
        return stack_->log_tail("mosquitto", 1 << 20)
                   .find("chat: oidc.keys.loaded: count=1 file=" + jwks_ + " trigger=reload") !=
               std::string::npos;
      },
      10s))
      << stack_->logs();
  EXPECT_EQ(mqtt_connect("erin", t2), 0);
  EXPECT_EQ(rest(t2), 200);

  // A broken file keeps the keys in use (and says so in both logs).
  rotate("{\"keys\": [");
  EXPECT_TRUE(eventually(
      [&] {
        return stack_->log_tail("mosquitto", 1 << 20)
                       .find("chat: oidc.keys.rejected: setting=plugin_opt_oidc_jwks_file file=") !=
                   std::string::npos &&
               stack_->log_tail("chat-api", 1 << 20)
                       .find("oidc.keys.rejected: setting=CHAT_OIDC_JWKS file=") !=
                   std::string::npos;
      },
      20s))
      << stack_->logs();
  EXPECT_EQ(mqtt_connect("erin", t2), 0);
  EXPECT_EQ(rest(t2), 200);
  EXPECT_NE(mqtt_connect("erin", t1), 0);
  EXPECT_EQ(rest(t1), 401);
  // Tokens are never logged.
  for (const char* name : {"mosquitto", "chat-api"}) {
    const std::string log = stack_->log_tail(name, 1 << 20);
    EXPECT_EQ(log.find(t1.substr(t1.rfind('.') + 1)), std::string::npos) << name;
    EXPECT_EQ(log.find(t2.substr(t2.rfind('.') + 1)), std::string::npos) << name;
  }
}

TEST_F(OidcStackTest, ExternalUsersAreProvisionedAndKeptApartFromLocalOnes) {
  const std::string alice = stack_->register_user("alice");
  const std::string erin = token(k1_, "erin");

  // erin's first CONNECT makes erin known to the broker: alice can DM erin.
  MqttClient e(stack_->mqtt_port(), device("erin", "phone", erin));
  ASSERT_EQ(e.connect(), 0) << stack_->logs();
  ASSERT_EQ(e.subscribe("u/erin/#"), 1);
  MqttClient a(stack_->mqtt_port(), device("alice", "phone", alice));
  ASSERT_EQ(a.connect(), 0);
  EXPECT_TRUE(is_success(a.publish("dm/erin", text("c1", "hi erin"))));
  EXPECT_TRUE(e.wait_for([](const std::vector<Received>& m) {
    for (const auto& r : on_topic(m, "u/erin/msg")) {
      if (r.body()["body"] == "hi erin") return true;
    }
    return false;
  })) << stack_->logs();

  // REST: erin's account exists, without a password.
  EXPECT_EQ(rest(erin), 200);
  auto [status, body] =
      stack_->post_form("/v1/oauth/token", "grant_type=password&username=erin&password=whatever1");
  EXPECT_EQ(status, 400);
  EXPECT_EQ(body["error"], "invalid_grant");

  // The provider cannot speak for alice, nor the embedded issuer for erin.
  EXPECT_NE(mqtt_connect("alice", token(k1_, "alice")), 0);
  EXPECT_EQ(rest(token(k1_, "alice")), 401);
  const std::string forged = stack_->mint_token("erin", 600);
  EXPECT_NE(mqtt_connect("erin", forged), 0);
  EXPECT_EQ(rest(forged), 401);
  // Nor can anyone sign up as erin.
  EXPECT_EQ(stack_->post_json("/v1/users", {{"user", "erin"}, {"password", "correct horse"}}).first,
            409);

  // erin belongs to the provider's subject it was provisioned for: someone
  // else who gets the username "erin" there later (another `sub`) is refused.
  const std::string newcomer = token(k1_, "erin", "another-person");
  EXPECT_NE(mqtt_connect("erin", newcomer), 0);
  EXPECT_EQ(rest(newcomer), 401);
  EXPECT_EQ(rest(erin), 200);
  EXPECT_NE(stack_->log_tail("mosquitto", 1 << 20).find("belongs to another subject"),
            std::string::npos)
      << stack_->logs();
  EXPECT_NE(stack_->log_tail("chat-api", 1 << 20)
                .find("account.refused: user=erin origin=external reason=sub_mismatch"),
            std::string::npos)
      << stack_->logs();

  // A CHAT_ADMINS id (a local admin here) is never the provider's, at the
  // broker too (plugin_opt_admins).
  std::ifstream conf_file(stack_->data_dir() + "/mosquitto.conf");
  std::stringstream conf;
  conf << conf_file.rdbuf();
  EXPECT_NE(conf.str().find("\nplugin_opt_admins root\n"), std::string::npos);
  EXPECT_NE(mqtt_connect("root", token(k1_, "root")), 0);
  EXPECT_EQ(rest(token(k1_, "root")), 401);
}

TEST(OidcStartup, AnUnreadableOrBadJwksStopsChatApi) {
  char tmpl[] = "/tmp/chat-oidc-start-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  replace_file(dir + "/bad.json", R"({"keys":[{"kty":"RSA","kid":"x","n":"!","e":"AQAB"}]})");
  for (const std::string& jwks : {dir + "/missing.json", dir + "/bad.json"}) {
    Process api;
    api.start({CHAT_BIN_DIR "/chat-api", "--init"},
              {{"CHAT_DATA_DIR", dir + "/data"},
               {"CHAT_OIDC_ISSUER", kIssuer},
               {"CHAT_OIDC_AUDIENCE", "chat"},
               {"CHAT_OIDC_JWKS", jwks}},
              dir + "/api.log");
    EXPECT_EQ(api.wait(), 2) << jwks;
  }
  std::ifstream in(dir + "/api.log");
  std::stringstream log;
  log << in.rdbuf();
  EXPECT_NE(log.str().find("chat-api: CHAT_OIDC_JWKS: cannot read"), std::string::npos)
      << log.str();
  EXPECT_NE(log.str().find("bad.json"), std::string::npos) << log.str();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace
}  // namespace chat::testing
