#include "chat/bridge/connection_rate.h"

#include <gtest/gtest.h>

#include "chat/bridge/policy.h"

namespace chat::bridge {
namespace {

using Verdict = ConnectionRate::Verdict;

TEST(ConnectionRateTest, BurstThenRatePerAddress) {
  FakeClock clock;
  ConnectionRate rate(clock, 2, 3);  // 2/s, burst 3
  for (int i = 0; i < 3; ++i) EXPECT_EQ(rate.admit("10.0.0.1"), Verdict::kAdmit) << i;
  EXPECT_EQ(rate.admit("10.0.0.1"), Verdict::kRefuseAndLog);
  // Another address has its own bucket.
  EXPECT_EQ(rate.admit("10.0.0.2"), Verdict::kAdmit);
  clock.advance_ms(500);  // one token back
  EXPECT_EQ(rate.admit("10.0.0.1"), Verdict::kAdmit);
  EXPECT_NE(rate.admit("10.0.0.1"), Verdict::kAdmit);
}

TEST(ConnectionRateTest, RefusalsAreLoggedOncePerAddressPerMinute) {
  FakeClock clock;
  ConnectionRate rate(clock, 1, 1);
  EXPECT_EQ(rate.admit("a"), Verdict::kAdmit);
  EXPECT_EQ(rate.admit("a"), Verdict::kRefuseAndLog);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(rate.admit("a"), Verdict::kRefuse);
  EXPECT_EQ(rate.admit("b"), Verdict::kAdmit);
  EXPECT_EQ(rate.admit("b"), Verdict::kRefuseAndLog);  // its own allowance
  clock.advance_ms(ConnectionRate::kLogEveryMs - 1);
  EXPECT_EQ(rate.admit("a"), Verdict::kAdmit);
  EXPECT_EQ(rate.admit("a"), Verdict::kRefuse);
  clock.advance_ms(1);
  EXPECT_EQ(rate.admit("a"), Verdict::kRefuseAndLog);
}

TEST(ConnectionRateTest, ZeroIsOff) {
  FakeClock clock;
  ConnectionRate rate(clock, 0, 1);
  EXPECT_FALSE(rate.enabled());
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(rate.admit("127.0.0.1"), Verdict::kAdmit);
  EXPECT_EQ(rate.tracked(), 0u);
}

TEST(ConnectionRateTest, MemoryStaysBoundedUnderManyAddresses) {
  FakeClock clock;
  ConnectionRate rate(clock, 10, 20, /*max_addresses=*/1000);
  // A spray from 100k addresses, one connection each, all within a second.
  for (int i = 0; i < 100'000; ++i) {
    EXPECT_EQ(rate.admit("198.51." + std::to_string(i / 256) + "." + std::to_string(i % 256)),
              Verdict::kAdmit);
  }
  EXPECT_LE(rate.tracked(), 1000u);
  // An address that was tracked before the table filled stays limited.
  clock.advance_ms(10'000);  // everything refilled: the next admit() prunes
  for (int i = 0; i < 20; ++i) EXPECT_EQ(rate.admit("203.0.113.9"), Verdict::kAdmit);
  EXPECT_NE(rate.admit("203.0.113.9"), Verdict::kAdmit);
  // Idle addresses are forgotten once their buckets refill.
  clock.advance_ms(ConnectionRate::kLogEveryMs + 10'000);
  EXPECT_EQ(rate.admit("203.0.113.10"), Verdict::kAdmit);
  rate.prune();
  EXPECT_EQ(rate.tracked(), 1u);  // only the address that just connected
}

TEST(ConnectionRateTest, RefusalIsHttp429NamedRateLimited) {
  EXPECT_EQ(http_status(Refusal::kRateLimited), 429);
  EXPECT_STREQ(refusal_name(Refusal::kRateLimited), "rate_limited");
}

}  // namespace
}  // namespace chat::bridge
