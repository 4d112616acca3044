// Push on the real stack (docs/push.md): devices registered through chat-api
// reach the broker (push.devices), the broker writes a push record for each
// message with offline recipient devices, and chat-api's worker takes each
// over exactly once, also across a SIGKILL of chat-api. No provider is
// configured here, so every notification ends as
// chat_push_failed_total{reason="provider_missing"}: that counter is what
// this test watches. (The providers' own end-to-end tests use fake FCM/APNs
// servers.)
#include <gtest/gtest.h>
#include <httplib.h>

#include <cmath>
#include <string>

#include "stack.h"

namespace chat::testing {
namespace {

constexpr const char* kMetricsToken = "integration-push-metrics-token";

class Push : public ::testing::Test {
 protected:
  void SetUp() override {
    alice_token = stack.register_user("alice");
    bob_token = stack.register_user("bob");
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << "--- last /metrics ---\n" << last_ << "\n" << stack.logs();
  }
  static StackOptions options() {
    StackOptions o;
    o.env = {{"CHAT_METRICS_TOKEN", kMetricsToken}};
    return o;
  }
  // chat_push_failed_total{platform="fcm",reason="provider_missing"} now (0 when absent).
  double dropped() {
    httplib::Client client("127.0.0.1", stack.http_port());
    client.set_read_timeout(5, 0);
    auto r = client.Get("/metrics", {{"Authorization", std::string("Bearer ") + kMetricsToken}});
    if (!r || r->status != 200) return NAN;
    last_ = r->body;
    const std::string series =
        "chat_push_failed_total{platform=\"fcm\",reason=\"provider_missing\"} ";
    auto pos = last_.find(series);
    if (pos == std::string::npos) return 0;
    return std::stod(last_.substr(pos + series.size()));
  }
  bool dropped_becomes(double n) {
    return eventually([&] { return dropped() == n; }, 10s);
  }
  // Registers a device with an FCM token unique to the access token's user and the device.
  void register_device(const std::string& token, const std::string& device) {
    const std::string push_token =
        "fcm-token-" + std::to_string(std::hash<std::string>{}(token)) + "-" + device;
    auto [status, body] = stack.post_json(
        "/v1/devices", {{"device", device}, {"platform", "fcm"}, {"token", push_token}}, token);
    ASSERT_EQ(status, 201) << body.dump();
  }
  // Alice sends over MQTT and waits for the acknowledgement (archived).
  void alice_sends(MqttClient& alice, const std::string& cid, const std::string& type = "text",
                   const json& body = "hi") {
    ASSERT_TRUE(is_success(
        alice.publish("dm/bob", json{{"cid", cid}, {"type", type}, {"body", body}}.dump())));
  }

  Stack stack{options()};
  std::string alice_token, bob_token;
  std::string last_;
};

TEST_F(Push, OneNotificationPerMessageAndOfflineDeviceAcrossARestart) {
  register_device(bob_token, "phone");
  register_device(bob_token, "tablet");
  register_device(alice_token, "phone");  // the sender's own devices are never pushed
  auto [status, listed] = stack.get("/v1/devices", bob_token);
  ASSERT_EQ(status, 200);
  ASSERT_EQ(listed["devices"].size(), 2u);
  EXPECT_EQ(listed.dump().find("fcm-token-"), std::string::npos);  // hints only

  MqttClient alice(stack.mqtt_port(), device("alice", "phone", alice_token));
  ASSERT_EQ(alice.connect(), 0);

  // Bob is offline: both of his devices get one.
  alice_sends(alice, "m1");
  ASSERT_TRUE(dropped_becomes(2));

  // His tablet is online: only the phone (per device, not per user).
  MqttClient tablet(stack.mqtt_port(), device("bob", "tablet", bob_token));
  ASSERT_EQ(tablet.connect(), 0);
  ASSERT_EQ(tablet.subscribe("u/bob/#"), 1);
  alice_sends(alice, "m2");
  ASSERT_TRUE(tablet.wait_for([](auto& m) { return !on_topic(m, "u/bob/msg").empty(); }));
  ASSERT_TRUE(dropped_becomes(3));

  // A reaction does not push; the next text does (exactly one more).
  const std::string first_id = sync_all(stack, bob_token).front()["id"];
  alice_sends(alice, "m3", "reaction", json{{"id", first_id}, {"emoji", "+1"}});
  alice_sends(alice, "m4");
  ASSERT_TRUE(dropped_becomes(4));

  // Unregistered: the phone gets nothing; once the tablet leaves, the tablet does.
  EXPECT_EQ(stack.del("/v1/devices/phone", bob_token).first, 204);
  alice_sends(alice, "m5");
  ASSERT_EQ(alice.subscribe("presence/bob"), 1);
  tablet.disconnect();
  ASSERT_TRUE(alice.wait_for([](auto& m) {
    auto p = on_topic(m, "presence/bob");
    return !p.empty() && p.back().body()["status"] == "offline";
  }));
  alice_sends(alice, "m6");
  ASSERT_TRUE(dropped_becomes(5));
  register_device(bob_token, "phone");
  alice_sends(alice, "m7");
  ASSERT_TRUE(dropped_becomes(7));
  const double before_restart = dropped();

  // chat-api dies: nothing taken over is taken over again.
  stack.kill_api(SIGKILL);
  stack.start_api();
  EXPECT_EQ(dropped(), 0);  // a new process: its counters start at 0
  // Bob's phone and tablet are both offline: two per message, and nothing
  // more (records taken over before the SIGKILL would add to it).
  alice_sends(alice, "after-restart");
  ASSERT_TRUE(dropped_becomes(2));
  alice_sends(alice, "after-restart-2");
  ASSERT_TRUE(dropped_becomes(4));
  EXPECT_EQ(before_restart, 7);
}

TEST_F(Push, ABlockedSenderPushesNothing) {
  register_device(bob_token, "phone");
  ASSERT_EQ(stack.post_json("/v1/blocks/alice", json::object(), bob_token).first, 204);
  MqttClient alice(stack.mqtt_port(), device("alice", "phone", alice_token));
  ASSERT_EQ(alice.connect(), 0);
  alice.publish("dm/bob", text("blocked", "hi"));  // refused
  ASSERT_EQ(stack.del("/v1/blocks/alice", bob_token).first, 204);
  alice_sends(alice, "after-unblock");
  ASSERT_TRUE(dropped_becomes(1));  // only the message after the unblock
}

}  // namespace
}  // namespace chat::testing
