// GET /metrics on the real stack: chat-api's own counters, the broker
// plugin's stats feed ($CONTROL/chat/v1/stats through chat-api's control
// client) and chat-bridge's /stats.
#include <gtest/gtest.h>
#include <httplib.h>

#include <cmath>
#include <string>

#include "stack.h"

namespace chat::testing {
namespace {

constexpr const char* kMetricsToken = "integration-metrics-token";

class Metrics : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure()) {
      std::cerr << "--- last /metrics ---\n" << last_ << "\n" << stack.logs();
    }
  }

  // {status, body} of GET /metrics with `token` (none when empty).
  std::pair<int, std::string> scrape(const std::string& token) {
    httplib::Client client("127.0.0.1", stack.http_port());
    client.set_read_timeout(5, 0);
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    auto r = client.Get("/metrics", headers);
    if (!r) return {-1, ""};
    if (r->status == 200) last_ = r->body;
    return {r->status, r->body};
  }

  double metric(const std::string& series) { return sample_value(last_, series); }

  static StackOptions options() {
    StackOptions o;
    o.env = {{"CHAT_METRICS_TOKEN", kMetricsToken},
             {"CHAT_ADMINS", "root"},
             {"CHAT_ADMIN_PASSWORD", "root-password"}};
    return o;
  }

  Stack stack{options()};
  std::string last_;
};

TEST_F(Metrics, BrokerAndBridgeCountersReachMetrics) {
  std::string alice_token = stack.register_user("alice");
  std::string bob_token = stack.register_user("bob");

  // Access rules on the real process.
  EXPECT_EQ(scrape("").first, 401);
  EXPECT_EQ(scrape(alice_token).first, 403);
  EXPECT_EQ(scrape(stack.login("root", "root-password")).first, 200);

  MqttClient alice(stack.mqtt_port(), device("alice", "phone", alice_token));
  MqttClient bob(stack.mqtt_port(), device("bob", "laptop", bob_token));
  ASSERT_EQ(alice.connect(), 0);
  ASSERT_EQ(bob.connect(), 0);
  ASSERT_EQ(alice.subscribe("u/alice/#"), 1);
  ASSERT_EQ(bob.subscribe("u/bob/#"), 1);

  ASSERT_TRUE(is_success(alice.publish("dm/bob", text("m-1", "hi bob"))));
  ASSERT_TRUE(bob.wait_for([](auto& m) { return !on_topic(m, "u/bob/msg").empty(); }));
  // A refused publish: unknown_peer, with its error event.
  alice.publish("dm/nobody", text("m-2", "anyone?"));
  ASSERT_TRUE(alice.wait_for([](auto& m) { return !on_topic(m, "u/alice/event").empty(); }));
  EXPECT_EQ(alice.received_on("u/alice/event").at(0).body()["code"], "unknown_peer");

  // The broker publishes its stats every 5 s: poll until the feed shows it all.
  bool seen = eventually(
      [&] {
        if (scrape(kMetricsToken).first != 200) return false;
        return metric(R"(chat_broker_messages_routed_total{kind="direct"})") >= 1 &&
               metric(R"(chat_broker_messages_refused_total{reason="unknown_peer"})") >= 1 &&
               metric("chat_broker_connected_clients") >= 2 &&
               metric("chat_broker_archive_append_duration_seconds_count") >= 1;
      },
      30s);
  ASSERT_TRUE(seen);
  EXPECT_EQ(metric("chat_broker_up"), 1);
  EXPECT_LT(metric("chat_broker_stats_age_seconds"), 15);
  EXPECT_GE(metric("chat_broker_connections_accepted_total"), 2);
  EXPECT_GE(metric(R"(chat_broker_archive_append_duration_seconds_bucket{le="+Inf"})"), 1);
  // The refusal does not count as routed, nor the message as refused.
  EXPECT_EQ(metric(R"(chat_broker_messages_refused_total{reason="not_authorized"})"), 0);

  // chat-bridge is up in the harness: its counters are there.
  EXPECT_EQ(metric("chat_bridge_up"), 1);
  EXPECT_FALSE(std::isnan(metric("chat_bridge_connections")));
  EXPECT_FALSE(std::isnan(metric(R"(chat_bridge_bytes_total{direction="to_broker"})")));

  // chat-api's own requests, by route pattern (never the raw path).
  EXPECT_GE(metric(R"(chat_http_requests_total{route="/v1/users",method="POST",code="201"})"), 2);
  EXPECT_GE(metric(R"(chat_http_requests_total{route="/metrics",method="GET",code="401"})"), 1);
  EXPECT_GE(metric(R"(chat_http_requests_total{route="/metrics",method="GET",code="403"})"), 1);
  EXPECT_EQ(last_.find("alice"), std::string::npos);
}

TEST_F(Metrics, BridgeDownIsAMetricNotAFailedScrape) {
  stack.kill_bridge(SIGKILL);
  bool down = eventually(
      [&] { return scrape(kMetricsToken).first == 200 && metric("chat_bridge_up") == 0; });
  EXPECT_TRUE(down);
  EXPECT_TRUE(std::isnan(metric("chat_bridge_connections")));
}

}  // namespace
}  // namespace chat::testing
