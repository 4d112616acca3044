#include "chat/bridge/byte_queue.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace chat::bridge {
namespace {

std::string take(ByteQueue& q, size_t max) {
  std::string out(max, '\0');
  size_t n = q.peek(reinterpret_cast<uint8_t*>(out.data()), max);
  out.resize(n);
  q.consume(n);
  return out;
}

void put(ByteQueue& q, const std::string& s) {
  q.append(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

TEST(ByteQueueTest, FifoAcrossBlocks) {
  ByteQueue q;
  EXPECT_TRUE(q.empty());
  put(q, "hello ");
  put(q, "");
  put(q, "world");
  EXPECT_EQ(q.size(), 11u);
  EXPECT_EQ(take(q, 3), "hel");
  EXPECT_EQ(q.size(), 8u);
  EXPECT_EQ(take(q, 100), "lo world");
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(take(q, 10), "");
}

TEST(ByteQueueTest, PeekDoesNotConsume) {
  ByteQueue q;
  put(q, std::string(5000, 'a'));
  put(q, std::string(5000, 'b'));
  std::string buf(6000, '\0');
  EXPECT_EQ(q.peek(reinterpret_cast<uint8_t*>(buf.data()), buf.size()), 6000u);
  EXPECT_EQ(buf, std::string(5000, 'a') + std::string(1000, 'b'));
  EXPECT_EQ(q.size(), 10000u);
  q.clear();
  EXPECT_TRUE(q.empty());
  put(q, "x");
  EXPECT_EQ(take(q, 5), "x");
}

TEST(ByteQueueTest, RandomSplitsKeepEveryByteInOrder) {
  std::mt19937 rng(7);
  std::string sent;
  std::string received;
  ByteQueue q;
  for (int round = 0; round < 2000; ++round) {
    size_t n = rng() % 9000;
    std::string chunk(n, '\0');
    for (auto& c : chunk) c = static_cast<char>(rng());
    put(q, chunk);
    sent += chunk;
    received += take(q, rng() % 12000);
    EXPECT_EQ(q.size(), sent.size() - received.size());
  }
  while (!q.empty()) received += take(q, 32768);
  EXPECT_EQ(received, sent);
}

}  // namespace
}  // namespace chat::bridge
