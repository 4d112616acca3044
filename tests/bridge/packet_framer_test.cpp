#include "chat/bridge/packet_framer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

namespace chat::bridge {
namespace {

// An MQTT packet: type byte, remaining length (varint), `body` bytes.
std::vector<uint8_t> packet(size_t body, uint8_t type = 0x30) {
  std::vector<uint8_t> p{type};
  size_t n = body;
  do {
    uint8_t b = n % 128;
    n /= 128;
    if (n > 0) b |= 0x80;
    p.push_back(b);
  } while (n > 0);
  p.resize(p.size() + body, 0xab);
  return p;
}

void feed(PacketFramer& f, const std::vector<uint8_t>& bytes) {
  f.feed(bytes.data(), bytes.size());
}

TEST(PacketFramerTest, OnePacketPerFrame) {
  PacketFramer f;
  auto a = packet(10), b = packet(20), c = packet(200);
  feed(f, a);
  feed(f, b);
  feed(f, c);
  size_t left = a.size() + b.size() + c.size();
  for (const auto& p : {a, b, c}) {
    PacketFramer::Frame fr = f.next(left, 4096, false);
    EXPECT_EQ(fr.len, p.size());
    EXPECT_TRUE(fr.fin);
    EXPECT_FALSE(fr.continuation);
    f.sent(fr);
    left -= fr.len;
  }
  EXPECT_EQ(f.next(0, 4096, false).len, 0u);
}

TEST(PacketFramerTest, WaitsForTheRestOfAPacket) {
  PacketFramer f;
  auto p = packet(100);
  f.feed(p.data(), 40);
  EXPECT_EQ(f.next(40, 4096, false).len, 0u);  // wait
  PacketFramer::Frame forced = f.next(40, 4096, true);
  EXPECT_EQ(forced.len, 40u);  // the broker is gone or not read: send it
  EXPECT_FALSE(forced.fin);
  f.feed(p.data() + 40, p.size() - 40);
  f.sent(forced);
  PacketFramer::Frame rest = f.next(p.size() - 40, 4096, false);
  EXPECT_EQ(rest.len, p.size() - 40);
  EXPECT_TRUE(rest.continuation);
  EXPECT_TRUE(rest.fin);
}

TEST(PacketFramerTest, ABigPacketIsOneFragmentedMessage) {
  PacketFramer f;
  auto big = packet(10000), small = packet(5);
  feed(f, big);
  feed(f, small);
  size_t left = big.size() + small.size();
  std::vector<PacketFramer::Frame> frames;
  while (left > 0) {
    PacketFramer::Frame fr = f.next(left, 4096, false);
    ASSERT_GT(fr.len, 0u);
    frames.push_back(fr);
    f.sent(fr);
    left -= fr.len;
  }
  // 10003 bytes in frames of 4096: two NO_FIN frames, a final continuation
  // ending exactly at the packet's end, then the small packet on its own.
  ASSERT_EQ(frames.size(), 4u);
  EXPECT_FALSE(frames[0].continuation);
  EXPECT_FALSE(frames[0].fin);
  EXPECT_TRUE(frames[1].continuation);
  EXPECT_FALSE(frames[1].fin);
  EXPECT_TRUE(frames[2].continuation);
  EXPECT_TRUE(frames[2].fin);
  EXPECT_EQ(frames[0].len + frames[1].len + frames[2].len, big.size());
  EXPECT_FALSE(frames[3].continuation);
  EXPECT_EQ(frames[3].len, small.size());
}

TEST(PacketFramerTest, ZeroLengthPacketsAndSplitLengthBytes) {
  PacketFramer f;
  auto ping = packet(0, 0xd0), big = packet(300);  // 300: two length bytes
  feed(f, ping);
  f.feed(big.data(), 2);  // type + first length byte only
  PacketFramer::Frame fr = f.next(ping.size() + 2, 4096, false);
  EXPECT_EQ(fr.len, ping.size());
  f.sent(fr);
  f.feed(big.data() + 2, big.size() - 2);
  fr = f.next(big.size(), 4096, false);
  EXPECT_EQ(fr.len, big.size());
}

TEST(PacketFramerTest, TheLastBytesOfAClosedStreamEndTheirMessage) {
  PacketFramer f;
  auto p = packet(100);
  f.feed(p.data(), 30);  // the broker closed inside a packet
  PacketFramer::Frame fr = f.next(30, 4096, true, true);
  EXPECT_EQ(fr.len, 30u);
  EXPECT_TRUE(fr.fin);
}

TEST(PacketFramerTest, NotMqttFallsBackToPlainRelay) {
  PacketFramer f;
  std::vector<uint8_t> junk{0x30, 0xff, 0xff, 0xff, 0xff, 1, 2, 3};
  feed(f, junk);
  EXPECT_FALSE(f.aligned());
  PacketFramer::Frame fr = f.next(junk.size(), 4096, false);
  EXPECT_EQ(fr.len, junk.size());
  EXPECT_TRUE(fr.fin);
}

TEST(PacketFramerTest, RandomSplitsSendEveryByteInWholePackets) {
  std::mt19937 rng(7);
  std::vector<uint8_t> stream;
  std::vector<size_t> ends;
  for (int i = 0; i < 500; ++i) {
    auto p = packet(rng() % 3000);
    stream.insert(stream.end(), p.begin(), p.end());
    ends.push_back(stream.size());
  }
  PacketFramer f;
  size_t fed = 0, sent = 0;
  bool in_message = false;
  while (sent < stream.size()) {
    if (fed < stream.size()) {
      size_t n = std::min<size_t>(rng() % 5000 + 1, stream.size() - fed);
      f.feed(stream.data() + fed, n);
      fed += n;
    }
    for (;;) {
      PacketFramer::Frame fr = f.next(fed - sent, 1024, fed == stream.size());
      if (fr.len == 0) break;
      EXPECT_EQ(fr.continuation, in_message);
      sent += fr.len;
      f.sent(fr);
      in_message = !fr.fin;
      // A frame holds no packet end but its last byte's (fin), or none.
      const auto ends_in = std::upper_bound(ends.begin(), ends.end(), sent) -
                           std::upper_bound(ends.begin(), ends.end(), sent - fr.len);
      EXPECT_EQ(ends_in, fr.fin ? 1 : 0) << sent;
      if (fr.fin) {
        EXPECT_TRUE(std::binary_search(ends.begin(), ends.end(), sent)) << sent;
      }
    }
  }
  EXPECT_EQ(sent, stream.size());
  EXPECT_FALSE(in_message);
}

}  // namespace
}  // namespace chat::bridge
