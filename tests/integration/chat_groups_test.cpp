// Groups, receipts, typing, presence, blocks and edits on the real stack.
#include <gtest/gtest.h>
#include <mqtt_protocol.h>

#include "stack.h"

namespace chat::testing {
namespace {

class Groups : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* u : {"alice", "bob", "carol", "dave", "erin", "mallory"})
      tokens[u] = stack.register_user(u);
  }
  void TearDown() override {
    if (HasFailure()) {
      std::cerr << stack.logs();
    }
  }
  std::string create_group(const std::string& by, const std::vector<std::string>& members) {
    auto [status, body] =
        stack.post_json("/v1/groups", {{"name", "Climbing"}, {"members", members}}, tokens[by]);
    EXPECT_EQ(status, 201) << body.dump();
    return body.value("id", "");
  }
  std::unique_ptr<MqttClient> online(const std::string& user, const std::string& dev = "phone",
                                     bool clean = true) {
    auto c = std::make_unique<MqttClient>(stack.mqtt_port(),
                                          device(user, dev, tokens[user], true, clean));
    EXPECT_EQ(c->connect(), 0);
    EXPECT_EQ(c->subscribe("u/" + user + "/#"), 1);
    return c;
  }
  // A device with a persistent session that is now offline.
  void go_offline(const std::string& user, const std::string& dev) {
    online(user, dev, false)->disconnect();
  }

  Stack stack;
  std::map<std::string, std::string> tokens;
};

TEST_F(Groups, GroupOfFiveWithTwoOfflineGetsEveryMessageOncePerDevice) {
  std::string gid = create_group("alice", {"bob", "carol", "dave", "erin"});
  ASSERT_FALSE(gid.empty());
  go_offline("dave", "phone");
  go_offline("erin", "phone");
  auto alice = online("alice");
  auto bob = online("bob");
  auto carol = online("carol");
  constexpr int kCount = 30;
  for (int i = 0; i < kCount; ++i) {
    auto& from = i % 2 ? bob : alice;
    ASSERT_TRUE(is_success(from->publish("g/" + gid, text("g" + std::to_string(i), "hi all"))));
  }
  auto exactly = [&](MqttClient& c, const std::string& user) {
    EXPECT_TRUE(c.wait_for(
        [&](const std::vector<Received>& m) {
          return on_topic(m, "u/" + user + "/msg").size() >= kCount;
        },
        20s))
        << user << " got " << c.received_on("u/" + user + "/msg").size();
    auto got = c.received_on("u/" + user + "/msg");
    EXPECT_EQ(got.size(), size_t(kCount)) << user;
    EXPECT_EQ(ids_of(got).size(), size_t(kCount)) << user;
    for (auto& m : got) EXPECT_EQ(m.body()["conv"], "g:" + gid);
  };
  exactly(*alice, "alice");
  exactly(*bob, "bob");
  exactly(*carol, "carol");
  auto dave = online("dave", "phone", false);
  auto erin = online("erin", "phone", false);
  exactly(*dave, "dave");
  exactly(*erin, "erin");
  EXPECT_EQ(sync_all(stack, tokens["erin"]).size(), size_t(kCount));
  // The group shows in everyone's conversations.
  auto [s, convs] = stack.get("/v1/conversations", tokens["dave"]);
  ASSERT_EQ(s, 200);
  EXPECT_EQ(convs["conversations"][0]["conv"], "g:" + gid);
}

TEST_F(Groups, OutsidersAndRemovedMembersAreRefusedAndGetNothing) {
  std::string gid = create_group("alice", {"bob", "carol"});
  auto alice = online("alice");
  auto carol = online("carol");
  auto mallory = online("mallory");
  EXPECT_EQ(mallory->publish("g/" + gid, text("m1", "let me in")), MQTT_RC_NOT_AUTHORIZED);
  ASSERT_TRUE(mallory->wait_for([](auto& m) { return !m.empty(); }));
  EXPECT_EQ(mallory->received_on("u/mallory/event")[0].body()["code"], "not_authorized");
  EXPECT_EQ(stack.get("/v1/conversations/g:" + gid + "/messages", tokens["mallory"]).first, 403);

  ASSERT_TRUE(is_success(alice->publish("g/" + gid, text("a1", "before"))));
  ASSERT_TRUE(carol->wait_for(
      [&](const std::vector<Received>& m) { return on_topic(m, "u/carol/msg").size() == 1; }));
  EXPECT_EQ(stack.del("/v1/groups/" + gid + "/members/carol", tokens["bob"]).first,
            403);  // not an admin
  EXPECT_EQ(stack.del("/v1/groups/" + gid + "/members/carol", tokens["alice"]).first, 204);
  // The very next message already follows the new membership.
  ASSERT_TRUE(is_success(alice->publish("g/" + gid, text("a2", "after"))));
  EXPECT_EQ(carol->publish("g/" + gid, text("c1", "still here?")), MQTT_RC_NOT_AUTHORIZED);
  ASSERT_TRUE(alice->wait_for(
      [&](const std::vector<Received>& m) { return on_topic(m, "u/alice/msg").size() >= 2; }));
  // carol heard about her removal but got nothing sent after it...
  ASSERT_TRUE(carol->wait_for([&](const std::vector<Received>& m) {
    for (auto& e : on_topic(m, "u/carol/event"))
      if (e.body().value("action", "") == "member_removed") return true;
    return false;
  }));
  for (auto& m : carol->received_on("u/carol/msg")) EXPECT_NE(m.body()["cid"], "a2");
  // ...and still reads the history of her membership period, nothing after.
  auto [status, page] = stack.get("/v1/conversations/g:" + gid + "/messages", tokens["carol"]);
  ASSERT_EQ(status, 200) << page.dump();
  ASSERT_EQ(page["messages"].size(), 1u);
  EXPECT_EQ(page["messages"][0]["cid"], "a1");
}

TEST_F(Groups, MembershipSurvivesABrokerRestart) {
  std::string gid = create_group("alice", {"bob"});
  ASSERT_EQ(stack.put("/v1/groups/" + gid + "/members/carol", tokens["alice"]).first, 204);
  stack.kill_broker(SIGKILL);
  stack.start_broker();
  auto carol = online("carol");
  auto mallory = online("mallory");
  EXPECT_TRUE(is_success(carol->publish("g/" + gid, text("c1", "I am still in"))));
  EXPECT_EQ(mallory->publish("g/" + gid, text("m1", "and I am not")), MQTT_RC_NOT_AUTHORIZED);
  auto [s, g] = stack.get("/v1/groups/" + gid, tokens["bob"]);
  ASSERT_EQ(s, 200);
  EXPECT_EQ(g["members"], json::array({"alice", "bob", "carol"}));
}

TEST_F(Groups, ReceiptsReachAnOfflineSenderAndUpdateUnread) {
  go_offline("alice", "phone");
  std::string id;
  {
    auto alice = online("alice", "laptop");
    ASSERT_TRUE(is_success(alice->publish("dm/bob", text("r1", "did you read this?"))));
    ASSERT_TRUE(alice->wait_for([](auto& m) { return !m.empty(); }));
    id = alice->received_on("u/alice/msg")[0].body()["id"];
  }
  auto [s1, before] = stack.get("/v1/conversations", tokens["bob"]);
  EXPECT_EQ(before["conversations"][0]["unread"], 1);
  auto bob = online("bob");
  ASSERT_TRUE(is_success(
      bob->publish("dm/alice/receipt", json({{"ids", {id}}, {"status", "read"}}).dump())));
  auto [s2, after] = stack.get("/v1/conversations", tokens["bob"]);
  EXPECT_EQ(after["conversations"][0]["unread"], 0);
  auto alice = online("alice", "phone", false);
  ASSERT_TRUE(alice->wait_for(
      [&](const std::vector<Received>& m) { return !on_topic(m, "u/alice/receipt").empty(); }));
  auto r = alice->received_on("u/alice/receipt")[0].body();
  EXPECT_EQ(r["from"], "bob");
  EXPECT_EQ(r["status"], "read");
  EXPECT_EQ(r["ids"], json::array({id}));
}

TEST_F(Groups, TypingReachesOnlineMembersOnlyNeverOfflineDevices) {
  std::string gid = create_group("alice", {"bob", "carol"});
  go_offline("carol", "phone");
  auto alice = online("alice");
  auto bob = online("bob");
  ASSERT_EQ(alice->publish("g/" + gid + "/typing", R"({"state":"composing"})", 0), 0);
  ASSERT_EQ(alice->publish("dm/carol/typing", R"({"state":"composing"})", 0), 0);
  ASSERT_TRUE(bob->wait_for(
      [&](const std::vector<Received>& m) { return !on_topic(m, "u/bob/typing").empty(); }));
  EXPECT_EQ(bob->received_on("u/bob/typing")[0].body()["from"], "alice");
  // A marker message after the typing: once carol has it, anything queued
  // before it would have arrived too.
  ASSERT_TRUE(is_success(alice->publish("dm/carol", text("t1", "marker"))));
  auto carol = online("carol", "phone", false);
  ASSERT_TRUE(carol->wait_for(
      [&](const std::vector<Received>& m) { return !on_topic(m, "u/carol/msg").empty(); }));
  EXPECT_TRUE(carol->received_on("u/carol/typing").empty());
}

TEST_F(Groups, EditByAnyoneButTheSenderIsRefused) {
  auto alice = online("alice");
  auto bob = online("bob");
  ASSERT_TRUE(is_success(alice->publish("dm/bob", text("e0", "typo"))));
  ASSERT_TRUE(alice->wait_for([](auto& m) { return !m.empty(); }));
  std::string id = alice->received_on("u/alice/msg")[0].body()["id"];
  auto edit =
      json({{"cid", "e1"}, {"type", "edit"}, {"body", {{"id", id}, {"text", "fixed"}}}}).dump();
  EXPECT_EQ(bob->publish("dm/alice", edit), MQTT_RC_NOT_AUTHORIZED);
  EXPECT_TRUE(is_success(alice->publish("dm/bob", edit)));
  auto [s, page] = stack.get("/v1/conversations/dm:alice:bob/messages", tokens["bob"]);
  ASSERT_EQ(page["messages"].size(), 2u);
  EXPECT_EQ(page["messages"][1]["type"], "edit");
}

TEST_F(Groups, BlockedUsersCannotReachMe) {
  ASSERT_EQ(stack.post_json("/v1/blocks/mallory", json::object(), tokens["bob"]).first, 204);
  auto mallory = online("mallory");
  EXPECT_EQ(mallory->publish("dm/bob", text("x1", "hello?")), MQTT_RC_NOT_AUTHORIZED);
  EXPECT_TRUE(sync_all(stack, tokens["bob"]).empty());
  ASSERT_EQ(stack.del("/v1/blocks/mallory", tokens["bob"]).first, 204);
  EXPECT_TRUE(is_success(mallory->publish("dm/bob", text("x2", "hello again"))));
  EXPECT_EQ(sync_all(stack, tokens["bob"]).size(), 1u);
}

// --- presence ---------------------------------------------------------------------------

std::string last_status(const std::vector<Received>& msgs, const std::string& user) {
  auto got = on_topic(msgs, "presence/" + user);
  return got.empty() ? "" : got.back().body().value("status", "");
}

TEST_F(Groups, PresenceFollowsDevicesTakeoverAndKeepalive) {
  // bob may watch alice once they share a conversation.
  auto bob = online("bob");
  EXPECT_GE(bob->subscribe("presence/alice", 0), 0x80);
  {
    auto a = online("alice");
    ASSERT_TRUE(is_success(a->publish("dm/bob", text("p0", "hi"))));
  }
  ASSERT_EQ(bob->subscribe("presence/alice", 0), 0);
  ASSERT_TRUE(bob->wait_for(
      [&](const std::vector<Received>& m) { return last_status(m, "alice") == "offline"; }, 5s));

  auto phone = online("alice", "phone");
  ASSERT_TRUE(bob->wait_for(
      [&](const std::vector<Received>& m) { return last_status(m, "alice") == "online"; }, 5s));
  auto laptop = online("alice", "laptop");
  phone->disconnect();
  // Still online (the laptop), and a takeover of the laptop's session keeps her online.
  auto laptop2 = online("alice", "laptop");
  ASSERT_TRUE(laptop->wait_disconnected(5s));
  size_t changes = bob->received_on("presence/alice").size();
  // Nothing changes while a device is there: poll briefly to be sure.
  EXPECT_FALSE(
      eventually([&] { return last_status(bob->received(), "alice") == "offline"; }, 2500ms));
  EXPECT_EQ(bob->received_on("presence/alice").size(), changes);

  // The last device goes silent: the keepalive expires, then offline within 2 s.
  laptop2.reset();
  MqttClient::Options o = device("alice", "tablet", tokens["alice"]);
  o.keepalive = 5;
  auto tablet = std::make_unique<MqttClient>(stack.mqtt_port(), o);
  ASSERT_EQ(tablet->connect(), 0);
  ASSERT_TRUE(bob->wait_for(
      [&](const std::vector<Received>& m) { return last_status(m, "alice") == "online"; }, 5s));
  tablet->freeze();
  EXPECT_TRUE(bob->wait_for(
      [&](const std::vector<Received>& m) { return last_status(m, "alice") == "offline"; }, 15s));
}

}  // namespace
}  // namespace chat::testing
