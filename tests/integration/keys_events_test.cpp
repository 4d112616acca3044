// The key directory on the real stack (docs/e2e.md, "Key directory",
// "Key-change events"): chat-api's PUT /v1/keys and DELETE /v1/keys/{device}
// reach the broker's keys.changed, whose `keys` event goes to the owner and
// to everyone who shares a conversation with the owner, and to nobody else.
#include <gtest/gtest.h>

#include "signal_test_keys.h"
#include "stack.h"

namespace chat::testing {
namespace {

std::vector<json> key_events(MqttClient& client, const std::string& user) {
  std::vector<json> out;
  for (const auto& m : client.received_on("u/" + user + "/event")) {
    json body = m.body();
    if (body.value("type", "") == "keys") out.push_back(std::move(body));
  }
  return out;
}

TEST(KeyEvents, AnUploadReachesThePeersOfTheOwner) {
  Stack stack;
  const std::string alice = stack.register_user("alice");
  const std::string bob = stack.register_user("bob");
  const std::string carol = stack.register_user("carol");  // shares nothing with bob

  MqttClient alice_phone(stack.mqtt_port(), device("alice", "phone", alice));
  MqttClient bob_phone(stack.mqtt_port(), device("bob", "phone", bob));
  MqttClient carol_phone(stack.mqtt_port(), device("carol", "phone", carol));
  for (auto* c : {&alice_phone, &bob_phone, &carol_phone}) ASSERT_EQ(c->connect(), 0);
  ASSERT_EQ(alice_phone.subscribe("u/alice/#"), 1);
  ASSERT_EQ(bob_phone.subscribe("u/bob/#"), 1);
  ASSERT_EQ(carol_phone.subscribe("u/carol/#"), 1);
  // A direct conversation with a message.
  ASSERT_TRUE(is_success(alice_phone.publish("dm/bob", text("c-1", "hi"))));
  ASSERT_TRUE(bob_phone.wait_for([](auto& m) { return !m.empty(); })) << stack.logs();

  test_support::SignalKeys signal;
  std::string identity;
  httplib::Client http = stack.http_client();
  const httplib::Headers as_bob{{"Authorization", "Bearer " + bob}};
  auto r =
      http.Put("/v1/keys", as_bob, signal.upload_body("web1", 5, &identity), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 201) << r->body << stack.logs();

  ASSERT_TRUE(eventually([&] { return key_events(alice_phone, "alice").size() == 1; }))
      << stack.logs();
  const json added = key_events(alice_phone, "alice")[0];
  EXPECT_EQ(added["v"], 1);
  EXPECT_EQ(added["action"], "device_added");
  EXPECT_EQ(added["user"], "bob");
  EXPECT_EQ(added["device"], "web1");
  EXPECT_EQ(added["identity_key"], identity);
  EXPECT_TRUE(added["ts"].is_number_integer());
  // The owner's other devices learn it too.
  ASSERT_TRUE(eventually([&] { return key_events(bob_phone, "bob").size() == 1; }));

  // The directory serves the bundle (chat-api's own database, api/e2e-keys).
  auto [status, claim] = stack.get("/v1/keys/bob", alice);
  ASSERT_EQ(status, 200) << claim.dump();
  ASSERT_EQ(claim["devices"].size(), 1u);
  EXPECT_EQ(claim["devices"][0]["identity_key"], identity);
  EXPECT_EQ(claim["devices"][0]["prekey"]["id"], 1);

  r = http.Delete("/v1/keys/web1", as_bob);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 204) << r->body;
  ASSERT_TRUE(eventually([&] { return key_events(alice_phone, "alice").size() == 2; }))
      << stack.logs();
  EXPECT_EQ(key_events(alice_phone, "alice")[1]["action"], "device_removed");
  EXPECT_EQ(key_events(alice_phone, "alice")[1]["identity_key"], identity);
  // Both events went out before the second reached alice: carol got neither.
  ASSERT_TRUE(eventually([&] { return key_events(bob_phone, "bob").size() == 2; }));
  EXPECT_TRUE(key_events(carol_phone, "carol").empty());
}

}  // namespace
}  // namespace chat::testing
