// The admin API on the real stack: bans enforced by the broker and chat-api,
// token revocation by jti, kicks, connected clients, stats, admin-only access.
#include <gtest/gtest.h>

#include <string>

#include "stack.h"

namespace chat::testing {
namespace {

class Admin : public ::testing::Test {
 protected:
  static StackOptions options() {
    StackOptions o;
    o.env = {{"CHAT_ADMINS", "root"}, {"CHAT_ADMIN_PASSWORD", "root-password"}};
    return o;
  }
  void SetUp() override {
    root_token = stack.login("root", "root-password");
    alice_token = stack.register_user("alice");
    bob_token = stack.register_user("bob");
  }
  void TearDown() override {
    if (HasFailure()) {
      std::cerr << stack.logs();
    }
  }
  // {status, body} of a password grant for bob (body has refresh_token on 200).
  std::pair<int, json> bob_login() {
    return stack.post_form("/v1/oauth/token",
                           "grant_type=password&username=bob&password=correct%20horse");
  }
  std::pair<int, json> refresh(const std::string& token) {
    return stack.post_form("/v1/oauth/token", "grant_type=refresh_token&refresh_token=" + token);
  }
  // Whether GET /v1/admin/clients lists `client_id`.
  bool lists_client(const std::string& client_id) {
    auto [status, body] = stack.get("/v1/admin/clients", root_token);
    if (status != 200) return false;
    for (const auto& c : body["clients"]) {
      if (c["clientid"] == client_id) return true;
    }
    return false;
  }

  Stack stack{options()};
  std::string root_token, alice_token, bob_token;
};

TEST_F(Admin, BanClosesConnectionsRefusesEverythingAndSurvivesRestart) {
  auto [login_status, login_body] = bob_login();
  ASSERT_EQ(login_status, 200);
  const std::string bob_refresh = login_body["refresh_token"].get<std::string>();

  MqttClient phone(stack.mqtt_port(), device("bob", "phone", bob_token));
  MqttClient laptop(stack.mqtt_port(), device("bob", "laptop", bob_token, /*v5=*/false));
  MqttClient alice(stack.mqtt_port(), device("alice", "phone", alice_token));
  ASSERT_EQ(phone.connect(), 0);
  ASSERT_EQ(laptop.connect(), 0);
  ASSERT_EQ(alice.connect(), 0);
  ASSERT_TRUE(eventually([&] { return lists_client("bob:phone") && lists_client("bob:laptop"); }));

  EXPECT_EQ(stack.post_json("/v1/admin/users/bob/ban", json::object(), root_token).first, 204);

  // Every connection of bob closes at once; alice's stays.
  EXPECT_TRUE(phone.wait_disconnected());
  EXPECT_TRUE(laptop.wait_disconnected());
  EXPECT_TRUE(alice.connected());
  EXPECT_FALSE(lists_client("bob:phone"));

  // Reconnecting, logging in, refreshing and REST with the old token: refused.
  MqttClient again(stack.mqtt_port(), device("bob", "phone", bob_token));
  EXPECT_NE(again.connect(), 0);
  auto [banned_login, banned_login_body] = bob_login();
  EXPECT_EQ(banned_login, 400);
  EXPECT_EQ(banned_login_body["error"], "invalid_grant");
  auto [banned_refresh, banned_refresh_body] = refresh(bob_refresh);
  EXPECT_EQ(banned_refresh, 400);
  EXPECT_EQ(banned_refresh_body["error"], "invalid_grant");
  EXPECT_EQ(stack.get("/v1/conversations", bob_token).first, 401);

  // The admin listing shows the flag.
  auto [users_status, users] = stack.get("/v1/admin/users", root_token);
  ASSERT_EQ(users_status, 200);
  bool listed = false;
  for (const auto& u : users["users"]) {
    if (u["user"] == "bob") {
      listed = true;
      EXPECT_EQ(u["banned"], true);
      EXPECT_EQ(u["admin"], false);
    }
    if (u["user"] == "root") {
      EXPECT_EQ(u["admin"], true);
    }
  }
  EXPECT_TRUE(listed);
  auto [stats_status, stats] = stack.get("/v1/admin/stats", root_token);
  ASSERT_EQ(stats_status, 200);
  EXPECT_EQ(stats["banned"], 1);
  EXPECT_EQ(stats["users"], 3);

  // The broker's ban is in its archive: still enforced after a restart.
  stack.kill_broker(SIGKILL);
  stack.start_broker();
  MqttClient after_restart(stack.mqtt_port(), device("bob", "phone", bob_token));
  EXPECT_NE(after_restart.connect(), 0);
  MqttClient alice_again(stack.mqtt_port(), device("alice", "tablet", alice_token));
  EXPECT_EQ(alice_again.connect(), 0);

  // Unban (once chat-api's control connection is back): everything works again,
  // the refresh token refused while banned included.
  ASSERT_TRUE(eventually([&] { return stack.get("/healthz", "").first == 200; }, 20s));
  EXPECT_EQ(stack.del("/v1/admin/users/bob/ban", root_token).first, 204);
  EXPECT_EQ(bob_login().first, 200);
  EXPECT_EQ(refresh(bob_refresh).first, 200);
  EXPECT_EQ(stack.get("/v1/conversations", bob_token).first, 200);
  MqttClient unbanned(stack.mqtt_port(), device("bob", "phone", bob_token));
  EXPECT_EQ(unbanned.connect(), 0);
}

TEST_F(Admin, KickClosesOneDeviceOnly) {
  MqttClient phone(stack.mqtt_port(), device("bob", "phone", bob_token));
  MqttClient laptop(stack.mqtt_port(), device("bob", "laptop", bob_token));
  ASSERT_EQ(phone.connect(), 0);
  ASSERT_EQ(laptop.connect(), 0);
  ASSERT_TRUE(eventually([&] { return lists_client("bob:phone"); }));

  auto [clients_status, clients] = stack.get("/v1/admin/clients", root_token);
  ASSERT_EQ(clients_status, 200);
  bool found = false;
  for (const auto& c : clients["clients"]) {
    if (c["clientid"] != "bob:phone") continue;
    found = true;
    EXPECT_EQ(c["user"], "bob");
    EXPECT_EQ(c["device"], "phone");
    EXPECT_GT(c["connected_ms"].get<int64_t>(), 0);
  }
  EXPECT_TRUE(found);

  EXPECT_EQ(stack.post_json("/v1/admin/clients/bob:phone/kick", json::object(), root_token).first,
            204);
  EXPECT_TRUE(phone.wait_disconnected());
  EXPECT_TRUE(laptop.connected());
  EXPECT_TRUE(eventually([&] { return !lists_client("bob:phone"); }));
  EXPECT_TRUE(lists_client("bob:laptop"));

  // Not connected (any more), malformed, unknown: clear answers.
  EXPECT_EQ(stack.post_json("/v1/admin/clients/bob:phone/kick", json::object(), root_token).first,
            404);
  EXPECT_EQ(stack.post_json("/v1/admin/clients/nocolon/kick", json::object(), root_token).first,
            400);
  EXPECT_EQ(stack.post_json("/v1/admin/users/nobody/ban", json::object(), root_token).first, 404);
  EXPECT_EQ(stack.post_json("/v1/admin/users/BAD!/ban", json::object(), root_token).first, 400);
  EXPECT_EQ(stack.post_json("/v1/admin/users/root/ban", json::object(), root_token).first, 403);
  EXPECT_EQ(stack.get("/v1/admin/users?limit=-1", root_token).first, 400);
}

TEST_F(Admin, RevokedTokenIsClosedAndRefusedEverywhereAndSurvivesRestart) {
  // Two logins of bob: a stolen phone token and the laptop's own.
  auto [phone_status, phone_grant] = bob_login();
  ASSERT_EQ(phone_status, 200);
  auto [laptop_status, laptop_grant] = bob_login();
  ASSERT_EQ(laptop_status, 200);
  const std::string stolen = phone_grant["access_token"].get<std::string>();
  const std::string laptop_token = laptop_grant["access_token"].get<std::string>();
  MqttClient phone(stack.mqtt_port(), device("bob", "phone", stolen));
  MqttClient laptop(stack.mqtt_port(), device("bob", "laptop", laptop_token));
  ASSERT_EQ(phone.connect(), 0);
  ASSERT_EQ(laptop.connect(), 0);
  ASSERT_TRUE(eventually([&] { return lists_client("bob:phone") && lists_client("bob:laptop"); }));

  // The admin finds the jti in the clients list.
  std::string jti;
  auto [clients_status, clients] = stack.get("/v1/admin/clients", root_token);
  ASSERT_EQ(clients_status, 200);
  for (const auto& c : clients["clients"]) {
    if (c["clientid"] == "bob:phone") jti = c["jti"].get<std::string>();
  }
  ASSERT_FALSE(jti.empty()) << clients;

  auto [revoke_status, revoked] =
      stack.post_json("/v1/admin/tokens/" + jti + "/revoke", json::object(), root_token);
  ASSERT_EQ(revoke_status, 200) << revoked;
  EXPECT_EQ(revoked["jti"], jti);
  EXPECT_EQ(revoked["closed"], json::array({"bob:phone"}));
  EXPECT_EQ(revoked["refresh_tokens_revoked"], 1);

  // That connection closes; the other token's stays.
  EXPECT_TRUE(phone.wait_disconnected());
  EXPECT_TRUE(laptop.connected());
  // The token is refused by the broker and by REST, and the refresh token
  // issued with it cannot mint a new one; bob himself is not banned.
  MqttClient again(stack.mqtt_port(), device("bob", "phone", stolen));
  EXPECT_NE(again.connect(), 0);
  EXPECT_EQ(stack.get("/v1/conversations", stolen).first, 401);
  EXPECT_EQ(refresh(phone_grant["refresh_token"].get<std::string>()).first, 400);
  EXPECT_EQ(stack.get("/v1/conversations", laptop_token).first, 200);
  EXPECT_EQ(refresh(laptop_grant["refresh_token"].get<std::string>()).first, 200);
  EXPECT_EQ(bob_login().first, 200);

  // Idempotent; malformed ids are refused.
  EXPECT_EQ(
      stack.post_json("/v1/admin/tokens/" + jti + "/revoke", json::object(), root_token).first,
      200);
  EXPECT_EQ(stack.post_json("/v1/admin/tokens/%20/revoke", json::object(), root_token).first, 400);
  EXPECT_EQ(stack
                .post_json("/v1/admin/tokens/" + std::string(300, 'x') + "/revoke", json::object(),
                           root_token)
                .first,
            400);

  // The revocation is in the broker's archive and in chat-api's store.
  stack.kill_broker(SIGKILL);
  stack.start_broker();
  MqttClient after_restart(stack.mqtt_port(), device("bob", "phone", stolen));
  EXPECT_NE(after_restart.connect(), 0);
  MqttClient laptop_again(stack.mqtt_port(), device("bob", "tablet", laptop_token));
  EXPECT_EQ(laptop_again.connect(), 0);
  EXPECT_EQ(stack.get("/v1/conversations", stolen).first, 401);

  EXPECT_TRUE(eventually([&] {
    return stack.log_tail("chat-api", 100000)
               .find("audit: admin=root action=token.revoke target=" + jti + " result=200") !=
           std::string::npos;
  }));
}

TEST_F(Admin, OnlyAdminsMayUseTheAdminApi) {
  const std::vector<std::pair<std::string, std::string>> routes = {
      {"GET", "/v1/admin/users"},
      {"GET", "/v1/admin/clients"},
      {"GET", "/v1/admin/stats"},
      {"POST", "/v1/admin/users/alice/ban"},
      {"DELETE", "/v1/admin/users/alice/ban"},
      {"POST", "/v1/admin/clients/alice:x/kick"},
      {"POST", "/v1/admin/tokens/some-jti/revoke"},
  };
  for (const auto& [method, path] : routes) {
    for (const auto& [token, want] :
         {std::pair{std::string(), 401}, std::pair{std::string("not-a-jwt"), 401},
          std::pair{bob_token, 403}}) {
      std::pair<int, json> r;
      if (method == "GET") r = stack.get(path, token);
      if (method == "POST") r = stack.post_json(path, json::object(), token);
      if (method == "DELETE") r = stack.del(path, token);
      EXPECT_EQ(r.first, want) << method << " " << path;
      EXPECT_TRUE(r.second.is_object() && r.second.contains("error")) << method << " " << path;
    }
  }
  // Nothing happened to alice.
  EXPECT_EQ(stack.get("/v1/conversations", alice_token).first, 200);

  // Paging over the accounts.
  auto [s1, p1] = stack.get("/v1/admin/users?limit=2", root_token);
  ASSERT_EQ(s1, 200);
  ASSERT_EQ(p1["users"].size(), 2u);
  EXPECT_EQ(p1["users"][0]["user"], "alice");
  ASSERT_TRUE(p1["next"].is_string());
  auto [s2, p2] =
      stack.get("/v1/admin/users?limit=2&after=" + p1["next"].get<std::string>(), root_token);
  ASSERT_EQ(s2, 200);
  ASSERT_EQ(p2["users"].size(), 1u);
  EXPECT_EQ(p2["users"][0]["user"], "root");
  EXPECT_TRUE(p2["next"].is_null());

  // The audit log has the refused and the accepted actions.
  EXPECT_TRUE(eventually([&] {
    std::string log = stack.log_tail("chat-api", 100000);
    return log.find("audit: admin=bob action=user.ban target=alice result=403") !=
               std::string::npos &&
           log.find("audit: admin=root action=users.list target=- result=200") != std::string::npos;
  }));
}

}  // namespace
}  // namespace chat::testing
