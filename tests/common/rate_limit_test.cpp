#include "chat/common/rate_limit.h"

#include <gtest/gtest.h>

namespace chat {
namespace {

TEST(TokenBucketTest, BurstThenRate) {
  const RateLimit limit{10, 5};  // 10/s, burst 5
  TokenBucket b;
  int64_t now = 1'000'000;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(b.take(limit, now), 0) << i;
  // Empty: one token comes back after 100 ms.
  EXPECT_EQ(b.take(limit, now), 100);
  EXPECT_EQ(b.take(limit, now + 99), 1);
  EXPECT_EQ(b.take(limit, now + 100), 0);
  EXPECT_GT(b.take(limit, now + 100), 0);
  // Never more than the burst, however long the pause.
  now += 3'600'000;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(b.take(limit, now), 0) << i;
  EXPECT_GT(b.take(limit, now), 0);
}

TEST(TokenBucketTest, OffAdmitsEverythingAndClockStepsBackRefillNothing) {
  TokenBucket off;
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(off.take(RateLimit{0, 1}, 0), 0);

  const RateLimit limit{1, 1};
  TokenBucket b;
  EXPECT_EQ(b.take(limit, 10'000), 0);
  EXPECT_GT(b.take(limit, 5'000), 0);  // stepped back: still empty
  EXPECT_GT(b.take(limit, 10'500), 0);
  EXPECT_EQ(b.take(limit, 11'000), 0);
}

TEST(TokenBucketTest, RetryAfterOfSlowRates) {
  const RateLimit limit{0.5, 1};  // one every 2 s
  TokenBucket b;
  EXPECT_EQ(b.take(limit, 0), 0);
  EXPECT_EQ(b.take(limit, 0), 2000);
  EXPECT_EQ(b.take(limit, 1500), 500);
  EXPECT_FALSE(b.full_at(limit, 1999));
  EXPECT_TRUE(b.full_at(limit, 2000));
}

TEST(KeyedRateLimiterTest, KeysAreIndependent) {
  FakeClock clock;
  KeyedRateLimiter l(clock, RateLimit{1, 2});
  EXPECT_EQ(l.take("a"), 0);
  EXPECT_EQ(l.take("a"), 0);
  EXPECT_EQ(l.take("a"), 1000);
  EXPECT_EQ(l.take("b"), 0);
  clock.advance_ms(1000);
  EXPECT_EQ(l.take("a"), 0);
  EXPECT_GT(l.take("a"), 0);
}

TEST(KeyedRateLimiterTest, FullBucketsAreForgotten) {
  FakeClock clock;
  KeyedRateLimiter l(clock, RateLimit{10, 10}, 1000, 10'000);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(l.take("ip" + std::to_string(i)), 0);
  EXPECT_EQ(l.size(), 100u);
  clock.advance_ms(50);
  l.prune();
  EXPECT_EQ(l.size(), 100u);  // not refilled yet: 9.5 of 10
  clock.advance_ms(50);
  l.prune();
  EXPECT_EQ(l.size(), 0u);
  // take() prunes on its own once the interval has passed.
  for (int i = 0; i < 10; ++i) EXPECT_EQ(l.take("x" + std::to_string(i)), 0);
  EXPECT_EQ(l.size(), 10u);
  clock.advance_ms(10'000);
  EXPECT_EQ(l.take("y"), 0);
  EXPECT_EQ(l.size(), 1u);
}

TEST(KeyedRateLimiterTest, BoundedTableAdmitsNewKeysUntrackedWhenFull) {
  FakeClock clock;
  KeyedRateLimiter l(clock, RateLimit{1, 1}, 3);
  for (const char* k : {"a", "b", "c"}) EXPECT_EQ(l.take(k), 0);
  EXPECT_EQ(l.size(), 3u);
  // A fourth key finds the table full (nothing has refilled): admitted, not kept.
  EXPECT_EQ(l.take("d"), 0);
  EXPECT_EQ(l.take("d"), 0);
  EXPECT_EQ(l.size(), 3u);
  EXPECT_EQ(l.untracked(), 2u);
  // Tracked keys stay limited meanwhile.
  EXPECT_GT(l.take("a"), 0);
}

TEST(KeyedRateLimiterTest, OffKeepsNothing) {
  FakeClock clock;
  KeyedRateLimiter l(clock, RateLimit{0, 5});
  for (int i = 0; i < 100; ++i) EXPECT_EQ(l.take("k" + std::to_string(i)), 0);
  EXPECT_EQ(l.size(), 0u);
}

}  // namespace
TEST(AddressKey, Ipv6ClientsCountByTheirSlash64) {
  EXPECT_EQ(address_key("192.0.2.7"), "192.0.2.7");
  EXPECT_EQ(address_key("::ffff:192.0.2.7"), "::ffff:192.0.2.7");
  EXPECT_EQ(address_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
  EXPECT_EQ(address_key("2001:db8:1:2::1"), address_key("2001:db8:1:2:ffff::9"));
  EXPECT_NE(address_key("2001:db8:1:2::1"), address_key("2001:db8:1:3::1"));
  EXPECT_EQ(address_key("::1"), "0:0:0:0::/64");
  EXPECT_EQ(address_key("not an address"), "not an address");
  EXPECT_EQ(address_key("fe80::1%eth0"), "fe80::1%eth0");  // scoped: unchanged
  EXPECT_EQ(address_key(""), "");
}

}  // namespace chat
