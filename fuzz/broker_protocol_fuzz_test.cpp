// Protocol fuzzing of the running broker: the real mosquitto with our plugin
// built with ASan + UBSan (the runtime preloaded), chat-api and chat-bridge,
// as tests/integration/stack.h starts them. For a bounded time
// (CHAT_FUZZ_BROKER_SECONDS, default 20) many connections send valid MQTT
// 3.1.1 and 5 packets (CONNECT with a valid token, SUBSCRIBE, PUBLISH of chat
// envelopes, receipts and typing, acks, PINGREQ, DISCONNECT, properties) and
// damaged ones (fuzz/mqtt_mutator.h). Afterwards the broker still accepts a
// normal connection and chat works, /healthz is 200, and no sanitizer report
// is in any log (Stack's destructor fails the test on one).
//
// CHAT_FUZZ_SEED replays one run (the seed is printed at the start).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iostream>

#include "mqtt_mutator.h"
#include "stack.h"

namespace chat::testing {
namespace {

using fuzz::MqttVersion;
using fuzz::Rng;

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

// A raw TCP connection that never blocks for long: writes ignore errors (the
// broker may close at any moment), reads drain what is there.
class RawConnection {
 public:
  explicit RawConnection(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    timeval tv{0, 20'000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~RawConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return fd_ >= 0; }
  void send(const std::string& bytes) {
    if (fd_ >= 0) (void)::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  }
  // Reads what arrives within ~20 ms; false once the broker closed.
  bool drain() {
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    return !(n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK));
  }
  // Closes with a TCP reset instead of a FIN: another way a client vanishes.
  void reset() {
    linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }

 private:
  int fd_ = -1;
};

struct Peers {
  std::string alice_token, bob_token, gid;
};

// One packet a device might send after CONNECT, valid, before mutation.
std::string random_packet(MqttVersion v, Rng& rng, const Peers& p, uint16_t* next_id) {
  uint16_t id = (*next_id)++;
  if (id == 0) id = (*next_id)++;  // 0 is no packet id
  static const char* kTopics[] = {
      "dm/bob",           "dm/bob/receipt", "dm/bob/typing",  "g/",        "u/bob/msg", "dm/+", "#",
      "$CONTROL/chat/v1", "dm/alice",       "presence/alice", "dm/nobody", ""};
  std::string topic = kTopics[rng.below(std::size(kTopics))];
  if (topic == "g/") topic += p.gid + (rng.chance(30) ? "/receipt" : "");
  std::string props = v == MqttVersion::k5 && rng.chance(40) ? fuzz::random_properties(rng) : "";
  switch (rng.below(12)) {
    case 0:
    case 1:
    case 2:
    case 3: {  // a chat message (or receipt / typing payload) to a chat topic
      std::string payload;
      switch (rng.below(5)) {
        case 0:
          payload = text("c-" + std::to_string(rng.below(1000)), "hi");
          break;
        case 1:
          payload = R"({"ids":["0000018bcfe56800"],"status":"read"})";
          break;
        case 2:
          payload = R"({"state":"composing"})";
          break;
        case 3:
          payload = R"({"cid":"m","type":"media","body":{"media":"nope","size":1}})";
          break;
        default:
          payload = rng.bytes(rng.below(200));
      }
      const int qos = static_cast<int>(rng.below(3));
      return fuzz::publish_packet(v, topic, payload, qos, id, rng.chance(20), props);
    }
    case 4:
      return fuzz::subscribe_packet(v, id, rng.chance(50) ? "u/alice/#" : topic,
                                    static_cast<uint8_t>(rng.below(3)));
    case 5:
      return fuzz::unsubscribe_packet(v, id, topic);
    case 6:
      return fuzz::ack_packet(v, static_cast<uint8_t>(4 + rng.below(4)), id,
                              rng.chance(30) ? rng.byte() : 0);
    case 7:
      return fuzz::pingreq_packet();
    case 8:
      return v == MqttVersion::k5 ? fuzz::auth_packet(rng.byte(), props) : fuzz::pingreq_packet();
    case 9: {  // a second CONNECT on the same connection (a protocol error)
      fuzz::ConnectOptions o;
      o.version = v;
      o.client_id = "alice:fz";
      o.username = "alice";
      o.password = p.alice_token;
      return fuzz::connect_packet(o);
    }
    case 10:  // a large publish (over CHAT_MAX_PAYLOAD)
      return fuzz::publish_packet(v, "dm/bob", std::string(70'000, 'x'), 1, id);
    default:
      return fuzz::disconnect_packet(v, rng.chance(50) ? 0 : rng.byte());
  }
}

// One connection's life: CONNECT (usually valid), a burst of packets, an end.
void one_session(int port, Rng& rng, const Peers& p) {
  RawConnection c(port);
  if (!c.ok()) return;
  const MqttVersion v = rng.chance(50) ? MqttVersion::k5 : MqttVersion::k311;
  fuzz::ConnectOptions o;
  o.version = v;
  const bool as_bob = rng.chance(20);
  o.client_id =
      as_bob ? "bob:fz" + std::to_string(rng.below(3)) : "alice:fz" + std::to_string(rng.below(3));
  o.username = as_bob ? "bob" : "alice";
  o.password = as_bob ? p.bob_token : p.alice_token;
  if (rng.chance(10)) o.client_id = "bob:stolen";  // alice's token, bob's client id
  o.clean = rng.chance(70);
  o.keepalive = static_cast<uint16_t>(rng.below(30));
  if (rng.chance(20)) {  // a will, often aimed at someone else's inbox
    o.will_topic = rng.chance(50) ? "u/bob/msg" : "dm/bob";
    o.will_payload = text("will", "bye");
    o.will_qos = static_cast<uint8_t>(rng.below(3));
    o.will_retain = rng.chance(30);
  }
  if (v == MqttVersion::k5 && rng.chance(30)) o.properties = fuzz::random_properties(rng);
  std::string connect = fuzz::connect_packet(o);
  if (rng.chance(15)) connect = fuzz::mutate(std::move(connect), rng);
  c.send(connect);
  if (!c.drain()) return;

  uint16_t next_id = 1;
  const uint32_t packets = 1 + rng.below(20);
  for (uint32_t i = 0; i < packets; ++i) {
    std::string pkt = random_packet(v, rng, p, &next_id);
    if (rng.chance(35)) pkt = fuzz::mutate(std::move(pkt), rng);
    // Sometimes split a packet across writes (the broker must reassemble).
    if (pkt.size() > 2 && rng.chance(10)) {
      const size_t cut = 1 + rng.below(static_cast<uint32_t>(pkt.size() - 1));
      c.send(pkt.substr(0, cut));
      c.send(pkt.substr(cut));
    } else {
      c.send(pkt);
    }
    if (rng.chance(30) && !c.drain()) return;
  }
  if (rng.chance(30)) c.reset();
}

TEST(BrokerProtocolFuzz, MutatedPacketsLeaveTheBrokerAndChatWorking) {
  Stack stack;
  Peers p;
  p.alice_token = stack.register_user("alice");
  p.bob_token = stack.register_user("bob");
  auto [st, group] =
      stack.post_json("/v1/groups", {{"name", "fuzz"}, {"members", {"bob"}}}, p.alice_token);
  ASSERT_EQ(st, 201) << group.dump();
  p.gid = group["id"].get<std::string>();

  const uint64_t seed = env_int("CHAT_FUZZ_SEED", 0) != 0
                            ? static_cast<uint64_t>(env_int("CHAT_FUZZ_SEED", 0))
                            : static_cast<uint64_t>(std::random_device{}());
  const int seconds = env_int("CHAT_FUZZ_BROKER_SECONDS", 20);
  std::cout << "broker protocol fuzz: seed " << seed << ", " << seconds << " s" << std::endl;
  Rng rng(seed);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  int sessions = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    one_session(stack.mqtt_port(), rng, p);
    ++sessions;
  }
  std::cout << "broker protocol fuzz: " << sessions << " connections" << std::endl;
  EXPECT_GT(sessions, 50);

  // The broker survived, and chat works as before.
  ASSERT_TRUE(port_open(stack.mqtt_port())) << stack.logs();
  MqttClient alice(stack.mqtt_port(), device("alice", "phone", p.alice_token));
  MqttClient bob(stack.mqtt_port(), device("bob", "laptop", p.bob_token, /*v5=*/false));
  ASSERT_EQ(alice.connect(), 0) << stack.logs();
  ASSERT_EQ(bob.connect(), 0) << stack.logs();
  ASSERT_EQ(bob.subscribe("u/bob/#"), 1);
  ASSERT_TRUE(is_success(alice.publish("dm/bob", text("after-fuzz", "still here"))));
  ASSERT_TRUE(bob.wait_for([](const std::vector<Received>& m) {
    for (const auto& r : on_topic(m, "u/bob/msg")) {
      if (r.body().value("cid", "") == "after-fuzz") return true;
    }
    return false;
  })) << stack.logs();
  EXPECT_EQ(stack.get("/healthz", "").first, 200) << stack.logs();

  // No will or publish reached bob's inbox other than through the router:
  // every message there is an envelope the router built.
  for (const auto& r : bob.received_on("u/bob/msg")) {
    auto env = r.body();
    ASSERT_TRUE(env.is_object() && env.contains("id") && env.contains("from")) << r.payload;
  }
  for (const auto& m : sync_all(stack, p.bob_token)) {
    EXPECT_TRUE(m.contains("id") && m.contains("from") && m.contains("cid")) << m.dump();
    EXPECT_NE(m.value("cid", ""), "will") << "a will message was archived: " << m.dump();
  }
  for (const char* name : {"mosquitto", "chat-api", "chat-bridge"}) {
    const std::string log = stack.log_tail(name, 1 << 22);
    EXPECT_EQ(log.find("ERROR: AddressSanitizer"), std::string::npos) << name;
    EXPECT_EQ(log.find("runtime error:"), std::string::npos) << name;
  }
}

}  // namespace
}  // namespace chat::testing
