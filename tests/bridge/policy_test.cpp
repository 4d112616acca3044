#include "chat/bridge/policy.h"

#include <gtest/gtest.h>

namespace chat::bridge {
namespace {

TEST(SubprotocolTest, OffersMqtt) {
  EXPECT_TRUE(offers_mqtt_subprotocol("mqtt"));
  EXPECT_TRUE(offers_mqtt_subprotocol("mqttv3.1"));
  EXPECT_TRUE(offers_mqtt_subprotocol("xmpp, mqtt"));
  EXPECT_TRUE(offers_mqtt_subprotocol(" mqtt ,wamp"));
  EXPECT_FALSE(offers_mqtt_subprotocol(""));
  EXPECT_FALSE(offers_mqtt_subprotocol("MQTT"));  // names are case-sensitive
  EXPECT_FALSE(offers_mqtt_subprotocol("mqttv5"));
  EXPECT_FALSE(offers_mqtt_subprotocol("mqtt;x"));
  EXPECT_FALSE(offers_mqtt_subprotocol("chat-bridge/http"));
  EXPECT_FALSE(offers_mqtt_subprotocol(std::string(130, 'a') + ",mqtt"));
  // Only what libwebsockets would accept too (else it drops the handshake
  // without an answer): at most 125 bytes, names of at most 63, no delimiters.
  EXPECT_TRUE(offers_mqtt_subprotocol(std::string(60, 'a') + "," + std::string(59, 'b') +
                                      ",mqtt"));  // 125 bytes
  EXPECT_FALSE(offers_mqtt_subprotocol(std::string(60, 'a') + "," + std::string(60, 'b') +
                                       ",mqtt"));  // 126 bytes
  EXPECT_TRUE(offers_mqtt_subprotocol(std::string(63, 'a') + ",mqtt"));
  EXPECT_FALSE(offers_mqtt_subprotocol(std::string(64, 'a') + ",mqtt"));
  EXPECT_FALSE(offers_mqtt_subprotocol("chat-bridge/http, mqtt"));
  EXPECT_FALSE(offers_mqtt_subprotocol("a=b, mqtt"));
}

class UpgradeTest : public ::testing::Test {
 protected:
  UpgradeRequest good() {
    UpgradeRequest r;
    r.path = "/mqtt";
    r.upgrade = "websocket";
    r.protocols = "mqtt";
    r.peer_ip = "127.0.0.1";
    return r;
  }
  OriginPolicy origins_{"127.0.0.1", {}};
  ConnectionLimits limits_{2, 1};
};

TEST_F(UpgradeTest, AdmitsAGoodRequest) {
  EXPECT_EQ(check_upgrade(good(), origins_, limits_, false), Refusal::kNone);
  auto r = good();
  r.upgrade = "WebSocket";
  r.origin = "http://localhost:8080";
  EXPECT_EQ(check_upgrade(r, origins_, limits_, false), Refusal::kNone);
}

TEST_F(UpgradeTest, EachRefusalAndItsStatus) {
  auto path = good();
  path.path = "/mqtt/";
  EXPECT_EQ(check_upgrade(path, origins_, limits_, false), Refusal::kPath);
  auto upgrade = good();
  upgrade.upgrade = "h2c";
  EXPECT_EQ(check_upgrade(upgrade, origins_, limits_, false), Refusal::kUpgrade);
  auto none = good();
  none.protocols.reset();
  EXPECT_EQ(check_upgrade(none, origins_, limits_, false), Refusal::kSubprotocol);
  auto wrong = good();
  wrong.protocols = "wamp";
  EXPECT_EQ(check_upgrade(wrong, origins_, limits_, false), Refusal::kSubprotocol);
  auto origin = good();
  origin.origin = "https://evil.example";
  EXPECT_EQ(check_upgrade(origin, origins_, limits_, false), Refusal::kOrigin);
  EXPECT_EQ(check_upgrade(good(), origins_, limits_, true), Refusal::kShuttingDown);

  ASSERT_EQ(limits_.acquire("127.0.0.1"), Admission::kAdmit);
  EXPECT_EQ(check_upgrade(good(), origins_, limits_, false), Refusal::kMaxPerIp);
  ASSERT_EQ(limits_.acquire("10.0.0.9"), Admission::kAdmit);
  EXPECT_EQ(check_upgrade(good(), origins_, limits_, false), Refusal::kMaxConnections);

  EXPECT_EQ(http_status(Refusal::kPath), 404);
  EXPECT_EQ(http_status(Refusal::kUpgrade), 400);
  EXPECT_EQ(http_status(Refusal::kSubprotocol), 400);
  EXPECT_EQ(http_status(Refusal::kOrigin), 403);
  EXPECT_EQ(http_status(Refusal::kMaxConnections), 503);
  EXPECT_EQ(http_status(Refusal::kMaxPerIp), 503);
  EXPECT_EQ(http_status(Refusal::kShuttingDown), 503);
}

TEST(CloseReasonTest, Codes) {
  EXPECT_EQ(close_code(CloseReason::kBrokerClosed), 1000);
  EXPECT_EQ(close_code(CloseReason::kIdle), 1001);
  EXPECT_EQ(close_code(CloseReason::kShutdown), 1001);
  EXPECT_EQ(close_code(CloseReason::kTextFrame), 1003);
  EXPECT_EQ(close_code(CloseReason::kFrameTooBig), 1009);
  EXPECT_EQ(close_code(CloseReason::kBrokerUnavailable), 1013);
  for (size_t i = 0; i < kCloseReasonCount; ++i) {
    EXPECT_LE(std::string(close_reason_name(static_cast<CloseReason>(i))).size(), 123u);
  }
}

}  // namespace
}  // namespace chat::bridge
