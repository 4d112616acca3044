// e2e messages on the real stack (docs/e2e.md, "e2e messages"): each
// recipient gets only its own ciphertexts live, history keeps the whole body,
// and a malformed body is refused with 0x87 and the error event.
#include <gtest/gtest.h>
#include <mqtt_protocol.h>

#include "stack.h"

namespace chat::testing {
namespace {

class E2eRouting : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* u : {"alice", "bob", "carol"}) tokens[u] = stack.register_user(u);
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << stack.logs();
  }
  std::unique_ptr<MqttClient> online(const std::string& user, const std::string& dev) {
    auto c = std::make_unique<MqttClient>(stack.mqtt_port(), device(user, dev, tokens[user]));
    EXPECT_EQ(c->connect(), 0);
    EXPECT_EQ(c->subscribe("u/" + user + "/#"), 1);
    return c;
  }
  static json entry(int type, const std::string& b64) { return {{"type", type}, {"body", b64}}; }
  static std::string e2e(const std::string& cid, const json& body) {
    return json({{"cid", cid}, {"type", "e2e"}, {"body", body}}).dump();
  }
  // The one message `c` got on u/<user>/msg with this cid.
  static json got(MqttClient& c, const std::string& user, const std::string& cid) {
    const std::string topic = "u/" + user + "/msg";
    auto has = [&](const std::vector<Received>& all) {
      for (const auto& m : on_topic(all, topic)) {
        if (m.body().value("cid", "") == cid) return true;
      }
      return false;
    };
    EXPECT_TRUE(c.wait_for(has)) << user << " never got " << cid;
    for (const auto& m : c.received_on(topic)) {
      if (m.body().value("cid", "") == cid) return m.body();
    }
    return nullptr;
  }

  Stack stack;
  std::map<std::string, std::string> tokens;
};

TEST_F(E2eRouting, EachUserGetsItsOwnEntriesLiveAndHistoryTheWholeBody) {
  auto alice_phone = online("alice", "phone");
  auto alice_laptop = online("alice", "laptop");
  auto bob = online("bob", "web1");
  const json body = {{"to",
                      {{"bob:web1", entry(3, "Qk9CMQ==")},
                       {"bob:phone", entry(1, "Qk9CMg==")},
                       {"alice:laptop", entry(1, "QUxJQ0U=")}}}};
  ASSERT_EQ(alice_phone->publish("dm/bob", e2e("x1", body)), 0);

  auto at_bob = got(*bob, "bob", "x1");
  EXPECT_EQ(
      at_bob["body"],
      json({{"to", {{"bob:web1", entry(3, "Qk9CMQ==")}, {"bob:phone", entry(1, "Qk9CMg==")}}}}));
  auto at_laptop = got(*alice_laptop, "alice", "x1");
  EXPECT_EQ(at_laptop["body"], json({{"to", {{"alice:laptop", entry(1, "QUxJQ0U=")}}}}));
  EXPECT_EQ(at_laptop["id"], at_bob["id"]);

  // History and sync: the body exactly as sent, for either side.
  auto [status, page] = stack.get("/v1/conversations/dm:alice:bob/messages", tokens["bob"]);
  ASSERT_EQ(status, 200) << page.dump();
  ASSERT_EQ(page["messages"].size(), 1u);
  EXPECT_EQ(page["messages"][0]["body"], body);
  EXPECT_EQ(page["messages"][0]["id"], at_bob["id"]);
  auto synced = sync_all(stack, tokens["alice"]);
  ASSERT_EQ(synced.size(), 1u);
  EXPECT_EQ(synced[0]["body"], body);
}

TEST_F(E2eRouting, GroupMembersGetTheirCutAndOutsidersAreRefused) {
  auto [status, group] =
      stack.post_json("/v1/groups", {{"name", "Sealed"}, {"members", {"bob"}}}, tokens["alice"]);
  ASSERT_EQ(status, 201) << group.dump();
  const std::string gid = group["id"];
  auto alice = online("alice", "phone");
  auto bob = online("bob", "web1");
  const json body = {{"group", "R1JPVVA="},
                     {"to", {{"bob:web1", entry(3, "Qk9CMQ==")}, {"alice:tab", entry(3, "QQ==")}}}};
  ASSERT_TRUE(is_success(alice->publish("g/" + gid, e2e("g1", body))));
  EXPECT_EQ(got(*bob, "bob", "g1")["body"],
            json({{"group", "R1JPVVA="}, {"to", {{"bob:web1", entry(3, "Qk9CMQ==")}}}}));
  EXPECT_EQ(got(*alice, "alice", "g1")["body"],
            json({{"group", "R1JPVVA="}, {"to", {{"alice:tab", entry(3, "QQ==")}}}}));
  auto [s2, page] = stack.get("/v1/conversations/g:" + gid + "/messages", tokens["bob"]);
  ASSERT_EQ(s2, 200);
  ASSERT_EQ(page["messages"].size(), 1u);
  EXPECT_EQ(page["messages"][0]["body"], body);

  // carol is no member: an entry for her is refused, and nothing is delivered.
  EXPECT_EQ(alice->publish("g/" + gid, e2e("g2", {{"to", {{"carol:c", entry(3, "QQ==")}}}})),
            MQTT_RC_NOT_AUTHORIZED);
  ASSERT_TRUE(alice->wait_for([](const std::vector<Received>& all) {
    for (const auto& m : on_topic(all, "u/alice/event")) {
      if (m.body().value("cid", "") == "g2") return true;
    }
    return false;
  }));
}

TEST_F(E2eRouting, AMalformedBodyGets0x87AndTheErrorEvent) {
  auto alice = online("alice", "phone");
  auto bob = online("bob", "web1");
  struct Bad {
    std::string cid;
    json body;
  };
  const std::vector<Bad> cases = {
      {"b1", {{"to", {{"bob:web1", entry(2, "Qk9CMQ==")}}}}},    // type 2
      {"b2", {{"to", {{"bob:web1", entry(3, "not base64")}}}}},  // body
      {"b3", {{"to", {{"bob", entry(3, "QQ==")}}}}},             // key
      {"b4", {{"group", "R1JPVVA="}}},                           // group on dm/
      {"b5", {{"to", {{"carol:x", entry(3, "QQ==")}}}}},         // no participant
      {"b6", {{"to", "bob:web1"}, {"ct", "QQ=="}}},              // "to": the Signal form
  };
  for (const auto& c : cases) {
    EXPECT_EQ(alice->publish("dm/bob", e2e(c.cid, c.body)), MQTT_RC_NOT_AUTHORIZED) << c.cid;
  }
  ASSERT_TRUE(alice->wait_for([&](const std::vector<Received>& all) {
    return on_topic(all, "u/alice/event").size() >= cases.size();
  })) << alice->received_on("u/alice/event").size();
  std::set<std::string> cids;
  for (const auto& ev : alice->received_on("u/alice/event")) {
    auto e = ev.body();
    EXPECT_EQ(e["type"], "error");
    EXPECT_EQ(e["code"], "invalid_payload") << e.dump();
    EXPECT_FALSE(e.value("reason", "").empty());
    cids.insert(e.value("cid", ""));
  }
  EXPECT_EQ(cids, (std::set<std::string>{"b1", "b2", "b3", "b4", "b5", "b6"}));
  // Nothing reached bob or the archive; a good message still flows after them.
  ASSERT_EQ(alice->publish("dm/bob", e2e("ok", {{"to", {{"bob:web1", entry(1, "QQ==")}}}})), 0);
  got(*bob, "bob", "ok");
  EXPECT_EQ(bob->received_on("u/bob/msg").size(), 1u);
  EXPECT_EQ(sync_all(stack, tokens["bob"]).size(), 1u);
}

// CONTRACT §3: e2e bodies are opaque to the server; one that is not the
// Signal form (no "to", no "group") flows exactly as before docs/e2e.md.
TEST_F(E2eRouting, OpaqueBodiesStayAcceptedAndAreDeliveredUnchanged) {
  auto alice = online("alice", "phone");
  auto alice_laptop = online("alice", "laptop");
  auto bob = online("bob", "web1");
  const std::vector<json> bodies = {json("ciphertext"), json(), json{{"ct", "b3BhcXVl"}},
                                    json::array({1, 2})};
  for (size_t i = 0; i < bodies.size(); ++i) {
    const std::string cid = "o" + std::to_string(i);
    ASSERT_EQ(alice->publish("dm/bob", e2e(cid, bodies[i])), 0) << bodies[i].dump();
    EXPECT_EQ(got(*bob, "bob", cid)["body"], bodies[i]);
    EXPECT_EQ(got(*alice_laptop, "alice", cid)["body"], bodies[i]);
  }
  auto [status, page] = stack.get("/v1/conversations/dm:alice:bob/messages", tokens["bob"]);
  ASSERT_EQ(status, 200) << page.dump();
  ASSERT_EQ(page["messages"].size(), bodies.size());
  std::set<std::string> stored;
  for (const auto& m : page["messages"]) stored.insert(m["body"].dump());
  for (const auto& b : bodies) EXPECT_EQ(stored.count(b.dump()), 1u) << b.dump();
  EXPECT_TRUE(alice->received_on("u/alice/event").empty());
}

}  // namespace
}  // namespace chat::testing
