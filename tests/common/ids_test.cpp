#include "chat/common/ids.h"

#include <gtest/gtest.h>

#include <set>

namespace chat {
namespace {

TEST(IdSyntax, UserIds) {
  EXPECT_TRUE(is_valid_user_id("alice"));
  EXPECT_TRUE(is_valid_user_id("a"));
  EXPECT_TRUE(is_valid_user_id("0bob.smith_-x"));
  EXPECT_TRUE(is_valid_user_id(std::string(32, 'a')));
  EXPECT_FALSE(is_valid_user_id(std::string(33, 'a')));
  EXPECT_FALSE(is_valid_user_id(""));
  EXPECT_FALSE(is_valid_user_id("Alice"));
  EXPECT_FALSE(is_valid_user_id("_alice"));
  EXPECT_FALSE(is_valid_user_id(".alice"));
  EXPECT_FALSE(is_valid_user_id("al ice"));
  EXPECT_FALSE(is_valid_user_id("al/ice"));
  EXPECT_FALSE(is_valid_user_id("al+ice"));
  EXPECT_FALSE(is_valid_user_id("al#ice"));
  EXPECT_FALSE(is_valid_user_id("al:ice"));
}

TEST(IdSyntax, DeviceIds) {
  EXPECT_TRUE(is_valid_device_id("phone"));
  EXPECT_TRUE(is_valid_device_id("A-b_9"));
  EXPECT_TRUE(is_valid_device_id(std::string(64, 'x')));
  EXPECT_FALSE(is_valid_device_id(std::string(65, 'x')));
  EXPECT_FALSE(is_valid_device_id(""));
  EXPECT_FALSE(is_valid_device_id("a:b"));
  EXPECT_FALSE(is_valid_device_id("a.b"));
}

TEST(IdSyntax, ClientIds) {
  std::string u, d;
  EXPECT_TRUE(split_client_id("alice:phone", &u, &d));
  EXPECT_EQ(u, "alice");
  EXPECT_EQ(d, "phone");
  EXPECT_FALSE(split_client_id("alice", &u, &d));
  EXPECT_FALSE(split_client_id("alice:", &u, &d));
  EXPECT_FALSE(split_client_id(":phone", &u, &d));
  EXPECT_FALSE(split_client_id("alice:ph:one", &u, &d));
  EXPECT_FALSE(split_client_id("Alice:phone", &u, &d));
}

TEST(IdGenerator, FixedWidthAndSortable) {
  FakeClock clock(1'700'000'000'000);
  IdGenerator gen(clock);
  std::string prev;
  for (int i = 0; i < 10000; ++i) {
    if (i % 7 == 0) clock.advance_ms(1);
    auto id = gen.next();
    ASSERT_EQ(id.size(), 16u);
    ASSERT_TRUE(is_valid_message_id(id));
    ASSERT_LT(prev, id);
    prev = id;
  }
}

TEST(IdGenerator, KeepsIncreasingWhenClockStepsBack) {
  FakeClock clock(1'700'000'000'000);
  IdGenerator gen(clock);
  auto a = gen.next();
  clock.advance_ms(-60'000);
  auto b = gen.next();
  auto c = gen.next();
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  clock.advance_ms(120'000);
  auto d = gen.next();
  EXPECT_LT(c, d);
  EXPECT_EQ(IdGenerator::timestamp_ms(d), clock.now_ms());
}

TEST(IdGenerator, RestartsAboveObservedFloor) {
  FakeClock clock(1'700'000'000'000);
  IdGenerator first(clock);
  std::string last;
  for (int i = 0; i < 100; ++i) last = first.next();
  // A restart with a clock that is now an hour behind.
  FakeClock behind(1'700'000'000'000 - 3'600'000);
  IdGenerator second(behind);
  second.observe(last);
  EXPECT_LT(last, second.next());
}

TEST(IdGenerator, NodeBitsKeepNodesApart) {
  FakeClock clock(1'700'000'000'000);
  IdGenerator a(clock, 1), b(clock, 2);
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    ids.insert(a.next());
    ids.insert(b.next());
  }
  EXPECT_EQ(ids.size(), 2000u);
}

TEST(IdGenerator, ParseRejectsBadIds) {
  uint64_t v;
  EXPECT_FALSE(IdGenerator::parse("", &v));
  EXPECT_FALSE(IdGenerator::parse("0123456789ABCDEF", &v));
  EXPECT_FALSE(IdGenerator::parse("0123456789abcde", &v));
  EXPECT_FALSE(IdGenerator::parse("0123456789abcdefa", &v));
  EXPECT_TRUE(IdGenerator::parse("00000000000000ff", &v));
  EXPECT_EQ(v, 255u);
}

}  // namespace
}  // namespace chat
