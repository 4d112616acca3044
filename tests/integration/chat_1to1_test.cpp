// 1:1 chat on the real stack: mosquitto + libchat_broker.so + chat-api.
#include <gtest/gtest.h>
#include <mqtt_protocol.h>

#include <atomic>
#include <set>

#include "stack.h"

namespace chat::testing {
namespace {

class OneToOne : public ::testing::Test {
 protected:
  void SetUp() override {
    alice_token = stack.register_user("alice");
    bob_token = stack.register_user("bob");
  }
  void TearDown() override {
    if (HasFailure()) {
      std::cerr << stack.logs();
    }
  }
  Stack stack;
  std::string alice_token, bob_token;
};

TEST_F(OneToOne, AliceAndBobChatOnlineOverMqtt5And311) {
  MqttClient alice(stack.mqtt_port(), device("alice", "phone", alice_token, /*v5=*/true));
  MqttClient bob(stack.mqtt_port(), device("bob", "laptop", bob_token, /*v5=*/false));
  ASSERT_EQ(alice.connect(), 0);
  ASSERT_EQ(bob.connect(), 0);
  ASSERT_EQ(alice.subscribe("u/alice/#"), 1);
  ASSERT_EQ(bob.subscribe("u/bob/#"), 1);

  ASSERT_TRUE(is_success(alice.publish("dm/bob", text("c-1", "hi bob"))));
  ASSERT_TRUE(bob.wait_for([](auto& m) { return !m.empty(); }));
  auto got = bob.received_on("u/bob/msg");
  ASSERT_EQ(got.size(), 1u);
  auto env = got[0].body();
  EXPECT_EQ(env["v"], 1);
  EXPECT_EQ(env["from"], "alice");
  EXPECT_EQ(env["dev"], "phone");
  EXPECT_EQ(env["to"], "bob");
  EXPECT_EQ(env["conv"], "dm:alice:bob");
  EXPECT_EQ(env["cid"], "c-1");
  EXPECT_EQ(env["type"], "text");
  EXPECT_EQ(env["body"], "hi bob");
  EXPECT_EQ(env["id"].get<std::string>().size(), 16u);
  EXPECT_TRUE(env["ts"].is_number_integer());

  // The sender's devices get the same envelope (and so learn the id of c-1).
  ASSERT_TRUE(alice.wait_for([](auto& m) { return !m.empty(); }));
  EXPECT_EQ(alice.received_on("u/alice/msg")[0].body()["id"], env["id"]);

  // Bob answers over MQTT 3.1.1.
  ASSERT_EQ(bob.publish("dm/alice", text("c-2", "hello alice")), 0);
  ASSERT_TRUE(alice.wait_for([](auto& m) { return m.size() >= 2; }));
  EXPECT_EQ(alice.received_on("u/alice/msg")[1].body()["body"], "hello alice");

  // Both are in the history, oldest first, for both participants.
  auto [status, page] = stack.get("/v1/conversations/dm:alice:bob/messages", bob_token);
  ASSERT_EQ(status, 200) << page.dump();
  ASSERT_EQ(page["messages"].size(), 2u);
  EXPECT_EQ(page["messages"][0]["cid"], "c-1");
  EXPECT_EQ(page["messages"][1]["cid"], "c-2");
  EXPECT_LT(page["messages"][0]["id"].get<std::string>(),
            page["messages"][1]["id"].get<std::string>());

  auto [cstatus, convs] = stack.get("/v1/conversations", alice_token);
  ASSERT_EQ(cstatus, 200);
  ASSERT_EQ(convs["conversations"].size(), 1u);
  EXPECT_EQ(convs["conversations"][0]["conv"], "dm:alice:bob");
  EXPECT_EQ(convs["conversations"][0]["last"]["cid"], "c-2");

  // A stranger is no participant.
  auto carol = stack.register_user("carol");
  EXPECT_EQ(stack.get("/v1/conversations/dm:alice:bob/messages", carol).first, 403);
}

TEST_F(OneToOne, TenSendersToOneOnlineRecipientLoseNothing) {
  constexpr int kSenders = 10, kEach = 200;
  MqttClient bob(stack.mqtt_port(), device("bob", "phone", bob_token));
  ASSERT_EQ(bob.connect(), 0);
  ASSERT_EQ(bob.subscribe("u/bob/#"), 1);

  std::vector<std::thread> threads;
  std::atomic<int> acked{0};
  for (int s = 0; s < kSenders; ++s) {
    std::string user = "sender" + std::to_string(s);
    std::string token = stack.register_user(user);
    threads.emplace_back([&, user, token] {
      MqttClient c(stack.mqtt_port(), device(user, "d", token));
      if (c.connect() != 0) return;
      for (int i = 0; i < kEach; ++i) {
        if (is_success(c.publish("dm/bob", text(user + "-" + std::to_string(i), "m")))) ++acked;
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(acked.load(), kSenders * kEach);
  ASSERT_TRUE(
      bob.wait_for([&](auto& m) { return ids_of(m).size() >= size_t(kSenders * kEach); }, 60s))
      << "bob got " << ids_of(bob.received()).size();
  EXPECT_EQ(ids_of(bob.received()).size(), size_t(kSenders * kEach));
  EXPECT_EQ(sync_all(stack, bob_token).size(), size_t(kSenders * kEach));
}

TEST_F(OneToOne, OfflineDeviceWithPersistentSessionGetsEverythingOnReconnect) {
  for (bool v5 : {true, false}) {
    std::string dev = v5 ? "tablet5" : "tablet3";
    {
      MqttClient bob(stack.mqtt_port(), device("bob", dev, bob_token, v5, /*clean=*/false));
      ASSERT_EQ(bob.connect(), 0);
      ASSERT_EQ(bob.subscribe("u/bob/#"), 1);
      bob.disconnect();
    }
    MqttClient alice(stack.mqtt_port(), device("alice", "phone", alice_token));
    ASSERT_EQ(alice.connect(), 0);
    for (int i = 0; i < 50; ++i) {
      ASSERT_TRUE(is_success(
          alice.publish("dm/bob", text(dev + std::to_string(i), "while you were away"))));
    }
    MqttClient bob(stack.mqtt_port(), device("bob", dev, bob_token, v5, /*clean=*/false));
    ASSERT_EQ(bob.connect(), 0);
    EXPECT_TRUE(bob.session_present());
    ASSERT_TRUE(bob.wait_for([](auto& m) { return m.size() >= 50; }, 20s)) << bob.received().size();
    auto got = bob.received_on("u/bob/msg");
    ASSERT_EQ(got.size(), 50u);
    EXPECT_EQ(got.front().body()["cid"], dev + "0");
    EXPECT_EQ(got.back().body()["cid"], dev + "49");
  }
}

// SIGKILL of the broker (and of chat-api and chat-bridge) mid-stream:
// tests/integration/faults_test.cpp, Faults/SigkillMidStream.*.

TEST_F(OneToOne, DuplicateCidIsDeliveredAndArchivedOnce) {
  MqttClient alice(stack.mqtt_port(), device("alice", "phone", alice_token));
  MqttClient bob(stack.mqtt_port(), device("bob", "phone", bob_token));
  ASSERT_EQ(alice.connect(), 0);
  ASSERT_EQ(bob.connect(), 0);
  ASSERT_EQ(alice.subscribe("u/alice/#"), 1);
  ASSERT_EQ(bob.subscribe("u/bob/#"), 1);
  ASSERT_TRUE(is_success(alice.publish("dm/bob", text("same", "once"))));
  ASSERT_TRUE(is_success(alice.publish("dm/bob", text("same", "once"))));
  ASSERT_TRUE(alice.wait_for([](auto& m) { return m.size() >= 2; }));
  auto mine = alice.received_on("u/alice/msg");
  ASSERT_EQ(mine.size(), 2u);
  EXPECT_EQ(mine[0].body()["id"], mine[1].body()["id"]);  // the original envelope, again
  EXPECT_EQ(sync_all(stack, bob_token).size(), 1u);
  EXPECT_EQ(bob.received_on("u/bob/msg").size(), 1u);
}

TEST_F(OneToOne, RefusedConnections) {
  auto refused = [&](MqttClient::Options o) {
    MqttClient c(stack.mqtt_port(), o);
    int rc = c.connect();
    return rc != 0;
  };
  EXPECT_TRUE(refused(device("alice", "phone", "not-a-token")));
  EXPECT_TRUE(refused(device("alice", "phone", stack.mint_token("alice", -3600))));  // expired
  EXPECT_TRUE(refused(device("alice", "phone", bob_token)));                         // bob's token
  auto o = device("alice", "phone", alice_token);
  o.client_id = "bob:phone";  // someone else's client id
  EXPECT_TRUE(refused(o));
  o.client_id = "alice";  // no device part
  EXPECT_TRUE(refused(o));
  o = device("alice", "phone", stack.mint_token("alice", 3600, {{"iss", "someone-else"}}));
  EXPECT_TRUE(refused(o));
  EXPECT_FALSE(refused(device("alice", "phone", alice_token)));
}

TEST_F(OneToOne, RefusedPublishesGetTheDocumentedOutcomeAndAreNotArchived) {
  MqttClient alice(stack.mqtt_port(), device("alice", "phone", alice_token));
  MqttClient old(stack.mqtt_port(), device("alice", "old", alice_token, /*v5=*/false));
  ASSERT_EQ(alice.connect(), 0);
  ASSERT_EQ(old.connect(), 0);
  ASSERT_EQ(alice.subscribe("u/alice/#"), 1);
  ASSERT_EQ(old.subscribe("u/alice/#"), 1);
  EXPECT_GE(alice.subscribe("u/bob/#"), 0x80);  // someone else's inbox
  EXPECT_GE(alice.subscribe("u/+/msg"), 0x80);  // wildcards
  EXPECT_GE(alice.subscribe("#"), 0x80);
  EXPECT_GE(alice.subscribe("presence/+"), 0x80);

  struct Case {
    std::string topic, payload, code;
  };
  std::vector<Case> cases = {
      {"u/bob/msg", text("r1", "x"), "not_authorized"},
      {"dm/bob/whatever", text("r2", "x"), "not_authorized"},
      {"dm/bob", "not json", "invalid_payload"},
      {"dm/bob", R"({"cid":"r4","type":"text"})", "invalid_payload"},
      {"dm/bob", R"({"cid":"r5","type":"bogus","body":1})", "invalid_payload"},
      {"dm/bob", text("r6", std::string(70 * 1024, 'x')), "too_large"},
      {"dm/nobody", text("r7", "x"), "unknown_peer"},
  };
  for (auto& c : cases) {
    EXPECT_EQ(alice.publish(c.topic, c.payload), MQTT_RC_NOT_AUTHORIZED)
        << c.topic << " " << c.code;
  }
  ASSERT_TRUE(alice.wait_for([&](auto& m) { return m.size() >= cases.size(); }));
  auto events = alice.received_on("u/alice/event");
  ASSERT_EQ(events.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    auto ev = events[i].body();
    EXPECT_EQ(ev["type"], "error");
    EXPECT_EQ(ev["code"], cases[i].code) << cases[i].topic;
  }
  EXPECT_EQ(events[0].body()["cid"], "r1");
  // Only the sending device hears about its refusals.
  EXPECT_TRUE(old.received_on("u/alice/event").empty());

  // MQTT 3.1.1: a normal PUBACK, plus the event.
  EXPECT_EQ(old.publish("dm/nobody", text("v3", "x")), 0);
  ASSERT_TRUE(old.wait_for([](auto& m) { return !m.empty(); }));
  auto ev = old.received_on("u/alice/event").at(0).body();
  EXPECT_EQ(ev["code"], "unknown_peer");
  EXPECT_EQ(ev["cid"], "v3");

  EXPECT_TRUE(sync_all(stack, alice_token).empty());
  EXPECT_TRUE(sync_all(stack, bob_token).empty());
}

TEST(TokenExpiry, ConnectionClosedWhenTheTokenExpires) {
  StackOptions options;
  options.env["CHAT_JWT_LEEWAY"] = "0";
  Stack stack(options);
  stack.register_user("alice");
  MqttClient alice(stack.mqtt_port(), device("alice", "phone", stack.mint_token("alice", 2)));
  ASSERT_EQ(alice.connect(), 0);
  EXPECT_TRUE(alice.connected());
  EXPECT_TRUE(alice.wait_disconnected(10s));
}

}  // namespace
}  // namespace chat::testing
