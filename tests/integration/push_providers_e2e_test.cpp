// Push end to end: the real broker, bridge and chat-api, with chat-api's
// providers pointed at fake-fcm and fake-apns (tests/fakes) over TLS
// trusted through CHAT_PUSH_CA. What the fakes record is what a phone would
// have been sent.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "push_fakes.h"
#include "stack.h"

namespace chat::testing {
namespace {

const std::string kApnsBobTablet(64, 'b');
const std::string kApnsCarol(64, 'c');

class PushE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { keys_ = new PushTestKeys(); }
  static void TearDownTestSuite() {
    delete keys_;
    keys_ = nullptr;
  }

  void SetUp() override {
    FakeOptions fcm_options;
    fcm_options.script = {
        {"fcm-flaky", json::array({{{"status", 500}}})},
        {"fcm-slow", json::array()},
    };
    for (int i = 0; i < 6; ++i) {
      fcm_options.script["fcm-slow"].push_back({{"status", 200}, {"delay_ms", 300}});
    }
    FakeOptions apns_options;
    apns_options.script = {
        {kApnsCarol, json::array({{{"status", 410}, {"body", {{"reason", "Unregistered"}}}}})}};
    fcm_ = std::make_unique<FakeProvider>(FakeProvider::Kind::kFcm, *keys_, fcm_options);
    apns_ = std::make_unique<FakeProvider>(FakeProvider::Kind::kApns, *keys_, apns_options);
    StackOptions o;
    o.env = {{"CHAT_FCM_CREDENTIALS", keys_->service_account},
             {"CHAT_FCM_ENDPOINT", fcm_->url()},
             {"CHAT_FCM_TOKEN_URL", fcm_->url() + "/token"},
             {"CHAT_APNS_KEY", keys_->apns_key},
             {"CHAT_APNS_KEY_ID", keys_->key_id},
             {"CHAT_APNS_TEAM_ID", keys_->team_id},
             {"CHAT_APNS_TOPIC", keys_->topic},
             {"CHAT_APNS_ENDPOINT", apns_->url()},
             {"CHAT_PUSH_CA", keys_->ca},
             {"CHAT_PUSH_WORKERS", "1"}};
    stack_ = std::make_unique<Stack>(o);
    alice_ = stack_->register_user("alice");
    bob_ = stack_->register_user("bob");
    carol_ = stack_->register_user("carol");
  }

  void TearDown() override {
    if (HasFailure()) {
      std::cerr << stack_->logs() << "\n--- fake-fcm ---\n"
                << fcm_->log() << "\n--- fake-apns ---\n"
                << apns_->log();
      for (const auto& r : fcm_->records()) std::cerr << "fcm: " << r.dump() << "\n";
      for (const auto& r : apns_->records()) std::cerr << "apns: " << r.dump() << "\n";
    }
    stack_.reset();
  }

  void register_device(const std::string& token, const std::string& device,
                       const std::string& platform, const std::string& push_token) {
    auto [status, body] = stack_->post_json(
        "/v1/devices", {{"device", device}, {"platform", platform}, {"token", push_token}}, token);
    ASSERT_EQ(status, 201) << body.dump();
  }

  void send(MqttClient& from, const std::string& to, const std::string& cid) {
    ASSERT_TRUE(is_success(from.publish("dm/" + to, text(cid, "hello " + to))));
  }

  // The message ids a fake was sent for `token` (one entry per request).
  std::vector<std::string> fcm_ids(const std::string& token) const {
    std::vector<std::string> out;
    for (const auto& r : fcm_->records("send")) {
      if (r.value("token", "") == token) out.push_back(r["body"]["message"]["data"]["id"]);
    }
    return out;
  }
  std::vector<std::string> apns_ids(const std::string& token) const {
    std::vector<std::string> out;
    for (const auto& r : apns_->records("send")) {
      if (r.value("token", "") == token) out.push_back(r["body"]["id"]);
    }
    return out;
  }
  std::vector<json> fcm_sends(const std::string& token) const {
    std::vector<json> out;
    for (auto& r : fcm_->records("send")) {
      if (r.value("token", "") == token) out.push_back(r);
    }
    return out;
  }

  static PushTestKeys* keys_;
  std::unique_ptr<FakeProvider> fcm_, apns_;
  std::unique_ptr<Stack> stack_;
  std::string alice_, bob_, carol_;
};

PushTestKeys* PushE2E::keys_ = nullptr;

TEST_F(PushE2E, EachOfflineTargetGetsOneNotificationAndOnlineDevicesNone) {
  register_device(bob_, "phone", "fcm", "fcm-bob-phone");
  register_device(bob_, "tablet", "apns", kApnsBobTablet);
  register_device(carol_, "phone", "fcm", "fcm-carol");  // the marker: carol stays offline
  MqttClient alice(stack_->mqtt_port(), device("alice", "phone", alice_));
  ASSERT_EQ(alice.connect(), 0);

  send(alice, "bob", "m1");
  ASSERT_TRUE(eventually([&] {
    return fcm_ids("fcm-bob-phone").size() == 1 && apns_ids(kApnsBobTablet).size() == 1;
  }));
  const std::string m1 = sync_all(*stack_, bob_).back()["id"];
  EXPECT_EQ(fcm_ids("fcm-bob-phone")[0], m1);
  EXPECT_EQ(apns_ids(kApnsBobTablet)[0], m1);
  auto apns_send = apns_->records("send").back();
  EXPECT_EQ(apns_send["alpn"], "h2");
  EXPECT_EQ(apns_send["status"], 200);
  EXPECT_EQ(apns_send["headers"]["apns-collapse-id"], m1);
  EXPECT_EQ(apns_send["body"]["from"], "alice");
  EXPECT_EQ(apns_send["body"]["aps"]["alert"]["body"], "New message") << "content-free";
  auto fcm_send = fcm_sends("fcm-bob-phone").back();
  EXPECT_EQ(fcm_send["status"], 200);
  EXPECT_EQ(fcm_send["body"]["message"]["data"]["conv"], "dm:alice:bob");
  EXPECT_FALSE(fcm_send["body"]["message"].contains("notification"));
  EXPECT_EQ(fcm_send["body"].dump().find("hello bob"), std::string::npos)
      << "no message content in a notification";

  // Both of bob's devices online: no notification, while offline carol gets hers.
  MqttClient phone(stack_->mqtt_port(), device("bob", "phone", bob_));
  MqttClient tablet(stack_->mqtt_port(), device("bob", "tablet", bob_));
  ASSERT_EQ(phone.connect(), 0);
  ASSERT_EQ(tablet.connect(), 0);
  send(alice, "bob", "m2");
  send(alice, "carol", "m3");
  ASSERT_TRUE(eventually([&] { return fcm_ids("fcm-carol").size() == 1; }));
  // The worker has moved past m2 (one worker, in order), so this is final:
  EXPECT_EQ(fcm_ids("fcm-bob-phone").size(), 1u);
  EXPECT_EQ(apns_ids(kApnsBobTablet).size(), 1u);
  EXPECT_EQ(fcm_->records("oauth").size(), 1u) << "the access token was reused";
}

TEST_F(PushE2E, A500IsRetriedOnceAndA410RemovesTheTarget) {
  register_device(bob_, "phone", "fcm", "fcm-flaky");
  register_device(carol_, "tablet", "apns", kApnsCarol);
  MqttClient alice(stack_->mqtt_port(), device("alice", "phone", alice_));
  ASSERT_EQ(alice.connect(), 0);

  send(alice, "bob", "m1");
  ASSERT_TRUE(eventually([&] { return fcm_sends("fcm-flaky").size() == 2; }));
  auto sends = fcm_sends("fcm-flaky");
  EXPECT_EQ(sends[0]["status"], 500);
  EXPECT_EQ(sends[1]["status"], 200);
  EXPECT_EQ(sends[0]["body"], sends[1]["body"]) << "the same notification, sent again";

  send(alice, "carol", "m2");
  ASSERT_TRUE(eventually([&] { return apns_ids(kApnsCarol).size() == 1; }));
  EXPECT_EQ(apns_->records("send").back()["status"], 410);
  ASSERT_TRUE(eventually([&] {
    auto [status, listed] = stack_->get("/v1/devices", carol_);
    return status == 200 && listed["devices"].empty();
  })) << "the unregistered target is removed";

  // Nothing more for carol's tablet; bob's phone still gets its one.
  send(alice, "carol", "m3");
  send(alice, "bob", "m4");
  ASSERT_TRUE(eventually([&] { return fcm_sends("fcm-flaky").size() == 3; }));
  EXPECT_EQ(apns_ids(kApnsCarol).size(), 1u);
  EXPECT_EQ(fcm_sends("fcm-flaky").size(), 3u) << "no retry after a success";
}

TEST_F(PushE2E, ARestartMidQueueSendsNothingTwice) {
  register_device(bob_, "phone", "fcm", "fcm-slow");  // every answer takes 300 ms
  MqttClient alice(stack_->mqtt_port(), device("alice", "phone", alice_));
  ASSERT_EQ(alice.connect(), 0);
  for (int i = 0; i < 6; ++i) send(alice, "bob", "m" + std::to_string(i));
  ASSERT_TRUE(eventually([&] { return !fcm_sends("fcm-slow").empty(); }));
  stack_->kill_api(SIGTERM);  // one send in flight, the rest queued
  const size_t before = fcm_sends("fcm-slow").size();
  EXPECT_LT(before, 6u) << "the restart should come mid-queue";
  stack_->start_api();
  ASSERT_TRUE(eventually(
      [&] {
        auto ids = fcm_ids("fcm-slow");
        return std::set<std::string>(ids.begin(), ids.end()).size() == 6;
      },
      std::chrono::seconds(20)));
  auto ids = fcm_ids("fcm-slow");
  std::map<std::string, int> count;
  for (const auto& id : ids) ++count[id];
  for (const auto& [id, n] : count) EXPECT_EQ(n, 1) << id << " was sent " << n << " times";
  std::set<std::string> expected;
  for (const auto& m : sync_all(*stack_, bob_)) expected.insert(m["id"].get<std::string>());
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()), expected);
}

}  // namespace
}  // namespace chat::testing
