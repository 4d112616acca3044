#include "chat/bridge/connection_limits.h"

#include <gtest/gtest.h>

namespace chat::bridge {
namespace {

TEST(ConnectionLimitsTest, PerIpLimit) {
  ConnectionLimits limits(10, 3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limits.acquire("10.0.0.1"), Admission::kAdmit);
  EXPECT_EQ(limits.check("10.0.0.1"), Admission::kTooManyForIp);
  EXPECT_EQ(limits.acquire("10.0.0.1"), Admission::kTooManyForIp);
  EXPECT_EQ(limits.count("10.0.0.1"), 3u);                   // a refusal counts nothing
  EXPECT_EQ(limits.acquire("10.0.0.2"), Admission::kAdmit);  // others unaffected
  EXPECT_EQ(limits.total(), 4u);
  limits.release("10.0.0.1");
  EXPECT_EQ(limits.check("10.0.0.1"), Admission::kAdmit);  // a freed slot is reusable
  EXPECT_EQ(limits.acquire("10.0.0.1"), Admission::kAdmit);
  EXPECT_EQ(limits.count("10.0.0.1"), 3u);
}

TEST(ConnectionLimitsTest, TotalLimitComesFirst) {
  ConnectionLimits limits(2, 2);
  EXPECT_EQ(limits.acquire("a"), Admission::kAdmit);
  EXPECT_EQ(limits.acquire("b"), Admission::kAdmit);
  EXPECT_EQ(limits.acquire("c"), Admission::kTooManyConnections);
  EXPECT_EQ(limits.acquire("a"), Admission::kTooManyConnections);
  EXPECT_EQ(limits.total(), 2u);
  limits.release("b");
  EXPECT_EQ(limits.acquire("c"), Admission::kAdmit);
}

TEST(ConnectionLimitsTest, ReleaseForgetsEmptyAddresses) {
  ConnectionLimits limits(10, 10);
  EXPECT_EQ(limits.acquire("a"), Admission::kAdmit);
  EXPECT_EQ(limits.acquire("a"), Admission::kAdmit);
  EXPECT_EQ(limits.addresses(), 1u);
  limits.release("a");
  limits.release("a");
  EXPECT_EQ(limits.addresses(), 0u);
  EXPECT_EQ(limits.total(), 0u);
  limits.release("a");  // unknown: ignored, no underflow
  limits.release("never-seen");
  EXPECT_EQ(limits.total(), 0u);
  EXPECT_EQ(limits.count("a"), 0u);
}

TEST(ConnectionLimitsTest, ManyAddresses) {
  ConnectionLimits limits(1000, 1);
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(limits.acquire("ip" + std::to_string(i)), Admission::kAdmit);
  }
  EXPECT_EQ(limits.acquire("ip0"), Admission::kTooManyConnections);
  EXPECT_EQ(limits.addresses(), 1000u);
  for (int i = 0; i < 1000; ++i) limits.release("ip" + std::to_string(i));
  EXPECT_EQ(limits.total(), 0u);
  EXPECT_EQ(limits.addresses(), 0u);
}

}  // namespace
}  // namespace chat::bridge
