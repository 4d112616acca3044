// /healthz covers every process of the platform (CONTRACT §4): the archive,
// the broker connection and chat-bridge.
#include <gtest/gtest.h>

#include "stack.h"

namespace chat::testing {
namespace {

TEST(HealthTest, BridgeDownIsUnhealthyUntilItIsBack) {
  Stack s;
  EXPECT_EQ(s.get("/healthz", "").first, 200);
  s.kill_bridge(SIGKILL);
  ASSERT_TRUE(eventually([&] { return s.get("/healthz", "").first == 503; }));
  auto [status, body] = s.get("/healthz", "");
  EXPECT_EQ(status, 503);
  EXPECT_EQ(body["bridge"], "down");
  EXPECT_EQ(body["broker"], "ok");
  EXPECT_NE(body["message"].get<std::string>().find("bridge"), std::string::npos);
  s.start_bridge();
  EXPECT_TRUE(eventually([&] { return s.get("/healthz", "").first == 200; }));
}

TEST(HealthTest, BrokerDownIsUnhealthy) {
  Stack s;
  s.kill_broker(SIGKILL);
  ASSERT_TRUE(eventually([&] { return s.get("/healthz", "").first == 503; }));
  EXPECT_EQ(s.get("/healthz", "").second["broker"], "down");
}

}  // namespace
}  // namespace chat::testing
