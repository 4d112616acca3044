// Hostile clients against the real stack (docs/protocol.md and docs/api.md,
// "Hostile input"): oversized packets, wildcards and invalid UTF-8 where the
// protocol forbids them, 64 KiB passwords, 10,000-level JSON, repeated JSON
// member names, a will aimed at another user's inbox, retained chat
// publishes. Each test pins the documented outcome, and that the stack is
// still serving afterwards. Raw packets come from fuzz/mqtt_mutator.h, since
// libmosquitto refuses to send most of them.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>

#include "chat/common/jwt.h"
#include "mqtt_mutator.h"
#include "stack.h"

namespace chat::testing {
namespace {

using fuzz::MqttVersion;

// A blocking raw MQTT connection that reads whole packets with a deadline.
class RawClient {
 public:
  struct Packet {
    uint8_t header = 0;
    std::string body;
    uint8_t type() const { return header >> 4; }
  };

  explicit RawClient(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    timeval tv{0, 100'000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ADD_FAILURE() << "cannot connect to " << port;
    }
  }
  ~RawClient() { ::close(fd_); }

  void send(const std::string& bytes) {
    (void)::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  }
  // The next packet, or nullopt when the broker closed the connection or
  // nothing came within `timeout`; closed() tells which.
  std::optional<Packet> read(std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto p = take()) return p;
      if (closed_ || std::chrono::steady_clock::now() > deadline) return std::nullopt;
      char buf[65536];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        in_.append(buf, static_cast<size_t>(n));
      } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        closed_ = true;
      }
    }
  }
  // Reads until the broker closes the connection; false if it stays open.
  bool wait_closed(std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!closed_ && std::chrono::steady_clock::now() < deadline) read(100ms);
    return closed_;
  }
  // CONNECT, and the CONNACK's reason code (-1: none, the connection closed).
  int connect(const fuzz::ConnectOptions& o) {
    send(fuzz::connect_packet(o));
    auto p = read();
    if (!p || p->type() != 2 || p->body.size() < 2) return -1;
    return static_cast<uint8_t>(p->body[1]);
  }
  // Closes with a TCP reset (an ungraceful disconnect: the will goes out).
  void reset() {
    linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    ::close(fd_);
    fd_ = -1;
  }

 private:
  std::optional<Packet> take() {
    if (in_.size() < 2) return std::nullopt;
    uint32_t len = 0;
    size_t i = 1;
    for (int shift = 0; i < in_.size() && i < 5; ++i, shift += 7) {
      len |= (static_cast<uint8_t>(in_[i]) & 0x7f) << shift;
      if (!(static_cast<uint8_t>(in_[i]) & 0x80)) break;
    }
    if (i >= in_.size() || in_.size() < i + 1 + len) return std::nullopt;
    Packet p{static_cast<uint8_t>(in_[0]), in_.substr(i + 1, len)};
    in_.erase(0, i + 1 + len);
    return p;
  }

  int fd_ = -1;
  std::string in_;
  bool closed_ = false;
};

fuzz::ConnectOptions raw_device(const std::string& user, const std::string& dev,
                                const std::string& token, MqttVersion v = MqttVersion::k5) {
  fuzz::ConnectOptions o;
  o.version = v;
  o.client_id = user + ":" + dev;
  o.username = user;
  o.password = token;
  return o;
}

// The PUBACK reason of a QoS 1 publish on a raw MQTT 5 connection (0 for
// success without a reason byte), -1 when none came (the connection closed).
int raw_publish(RawClient& c, const std::string& topic, const std::string& payload,
                bool retain = false) {
  static uint16_t id = 1;
  const uint16_t mine = id++;
  c.send(fuzz::publish_packet(MqttVersion::k5, topic, payload, 1, mine, retain));
  while (auto p = c.read()) {
    if (p->type() != 4 || p->body.size() < 2) continue;  // skip deliveries
    const uint16_t got = static_cast<uint16_t>((static_cast<uint8_t>(p->body[0]) << 8) |
                                               static_cast<uint8_t>(p->body[1]));
    if (got != mine) continue;
    return p->body.size() > 2 ? static_cast<uint8_t>(p->body[2]) : 0;
  }
  return -1;
}

// A compact JWS whose header is `header` (unsigned: it must fail anyway).
std::string jwt_like_token_with_header(const std::string& header) {
  return jwt::base64url_encode(header) + ".e30.AAAA";
}

std::string nested(int depth) {
  return std::string(static_cast<size_t>(depth), '[') +
         std::string(static_cast<size_t>(depth), ']');
}

class Hostile : public ::testing::Test {
 protected:
  void SetUp() override {
    alice_token = stack.register_user("alice");
    bob_token = stack.register_user("bob");
    bob = std::make_unique<MqttClient>(stack.mqtt_port(), device("bob", "phone", bob_token));
    ASSERT_EQ(bob->connect(), 0);
    ASSERT_EQ(bob->subscribe("u/bob/#"), 1);
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << stack.logs();
  }

  // An event with `code` reached alice's device `dev` on u/alice/event.
  static bool has_error(const std::vector<Received>& msgs, const std::string& code) {
    for (const auto& r : on_topic(msgs, "u/alice/event")) {
      if (r.body().value("code", "") == code) return true;
    }
    return false;
  }

  // Chat still works: a normal message from alice reaches bob (the marker
  // also proves nothing sent before it is still on its way).
  void expect_chat_works(const std::string& cid) {
    MqttClient alice(stack.mqtt_port(), device("alice", "check", alice_token));
    ASSERT_EQ(alice.connect(), 0) << stack.logs();
    ASSERT_TRUE(is_success(alice.publish("dm/bob", text(cid, "still works"))));
    ASSERT_TRUE(bob->wait_for([&](const std::vector<Received>& m) {
      for (const auto& r : on_topic(m, "u/bob/msg")) {
        if (r.body().value("cid", "") == cid) return true;
      }
      return false;
    })) << stack.logs();
  }

  // bob's inbox holds only messages with these cids.
  void expect_bob_got_only(const std::set<std::string>& cids) {
    for (const auto& r : bob->received_on("u/bob/msg")) {
      EXPECT_TRUE(cids.count(r.body().value("cid", "?"))) << "unexpected delivery: " << r.payload;
    }
  }

  Stack stack;
  std::string alice_token, bob_token;
  std::unique_ptr<MqttClient> bob;
};

TEST_F(Hostile, PayloadOverTheChatLimitIsRefusedTooLarge) {
  MqttClient alice(stack.mqtt_port(), device("alice", "phone", alice_token));
  ASSERT_EQ(alice.connect(), 0);
  ASSERT_EQ(alice.subscribe("u/alice/#"), 1);
  // 64 KiB + 1: under max_packet_size, over CHAT_MAX_PAYLOAD.
  std::string big = text("big", std::string(64 * 1024, 'x'));
  EXPECT_EQ(alice.publish("dm/bob", big), 0x87);
  EXPECT_TRUE(alice.wait_for([](auto& m) { return has_error(m, "too_large"); }));
  EXPECT_TRUE(alice.connected());
  expect_chat_works("after-big");
  expect_bob_got_only({"after-big"});
}

TEST_F(Hostile, PacketOverMaxPacketSizeClosesTheConnection) {
  RawClient raw(stack.mqtt_port());
  ASSERT_EQ(raw.connect(raw_device("alice", "raw", alice_token)), 0);
  // 1 MiB + a bit: over the broker's max_packet_size, refused before the plugin.
  raw.send(fuzz::publish_packet(MqttVersion::k5, "dm/bob", text("huge", std::string(1 << 20, 'x')),
                                1, 7));
  EXPECT_TRUE(raw.wait_closed());
  expect_chat_works("after-huge");
  expect_bob_got_only({"after-huge"});
}

TEST_F(Hostile, WildcardsInAPublishTopicCloseTheConnection) {
  for (const char* topic : {"dm/+", "dm/#", "u/+/msg", "#"}) {
    RawClient raw(stack.mqtt_port());
    ASSERT_EQ(raw.connect(raw_device("alice", "raw", alice_token)), 0);
    raw.send(fuzz::publish_packet(MqttVersion::k5, topic, text("wild", "x"), 1, 1));
    EXPECT_TRUE(raw.wait_closed()) << topic;  // a protocol error in MQTT
  }
  expect_chat_works("after-wildcards");
  expect_bob_got_only({"after-wildcards"});
}

TEST_F(Hostile, InvalidUtf8IsRefusedWherever) {
  {  // in a topic: malformed packet, the connection closes
    RawClient raw(stack.mqtt_port());
    ASSERT_EQ(raw.connect(raw_device("alice", "raw", alice_token)), 0);
    raw.send(fuzz::publish_packet(MqttVersion::k5, "dm/b\xff\xfe", text("u1", "x"), 1, 1));
    EXPECT_TRUE(raw.wait_closed());
  }
  {  // in a client id: no session
    RawClient raw(stack.mqtt_port());
    auto o = raw_device("alice", "ph\xc3\x28one", alice_token);
    int rc = raw.connect(o);
    EXPECT_TRUE(rc == -1 || rc >= 0x80) << rc;
  }
  {  // in a user name: no session
    RawClient raw(stack.mqtt_port());
    auto o = raw_device("alice", "raw", alice_token);
    o.username = "al\xffice";
    int rc = raw.connect(o);
    EXPECT_TRUE(rc == -1 || rc >= 0x80) << rc;
  }
  {  // inside a JSON string of the payload: 0x87 and invalid_payload
    MqttClient alice(stack.mqtt_port(), device("alice", "phone", alice_token));
    ASSERT_EQ(alice.connect(), 0);
    ASSERT_EQ(alice.subscribe("u/alice/#"), 1);
    EXPECT_EQ(alice.publish("dm/bob", "{\"cid\":\"u2\",\"type\":\"text\",\"body\":\"\xc3\x28\"}"),
              0x87);
    EXPECT_TRUE(alice.wait_for([](auto& m) { return has_error(m, "invalid_payload"); }));
  }
  // In REST: a path segment that is not UTF-8 is a 400 with a JSON body.
  auto [st, body] = stack.put("/v1/groups/G1/members/%FF%FE", alice_token);
  EXPECT_EQ(st, 400) << body.dump();
  EXPECT_TRUE(body.is_object() && body.contains("error"));
  expect_chat_works("after-utf8");
  expect_bob_got_only({"after-utf8"});
}

TEST_F(Hostile, HugePasswordsAreRefusedCleanly) {
  const std::string huge(64 * 1024 - 1, 'p');  // the largest MQTT binary field
  {
    RawClient raw(stack.mqtt_port());
    auto o = raw_device("alice", "raw", huge);
    int rc = raw.connect(o);
    EXPECT_EQ(rc, 0x87);  // not authorized
  }
  {
    RawClient raw(stack.mqtt_port());
    auto o = raw_device("alice", "raw", huge, MqttVersion::k311);
    int rc = raw.connect(o);
    EXPECT_EQ(rc, 5);  // not authorized
  }
  // REST: the token endpoint and sign-up answer at once, with no hashing of 64 KiB.
  auto [st, body] =
      stack.post_form("/v1/oauth/token", "grant_type=password&username=alice&password=" + huge);
  EXPECT_TRUE(st == 400 || st == 413) << st << " " << body.dump();
  auto [st2, body2] = stack.post_json("/v1/users", {{"user", "carol"}, {"password", huge}});
  EXPECT_TRUE(st2 == 400 || st2 == 413) << st2 << " " << body2.dump();
  EXPECT_EQ(stack.get("/healthz", "").first, 200);
  expect_chat_works("after-passwords");
}

TEST_F(Hostile, DeeplyNestedJsonIsRefusedNotRecursed) {
  const std::string deep = nested(10'000);
  MqttClient alice(stack.mqtt_port(), device("alice", "phone", alice_token));
  ASSERT_EQ(alice.connect(), 0);
  ASSERT_EQ(alice.subscribe("u/alice/#"), 1);
  EXPECT_EQ(alice.publish("dm/bob", R"({"cid":"deep","type":"text","body":)" + deep + "}"), 0x87);
  EXPECT_TRUE(alice.wait_for([](auto& m) { return has_error(m, "invalid_payload"); }));
  EXPECT_EQ(alice.publish("dm/bob/receipt", R"({"ids":)" + deep + R"(,"status":"read"})"), 0x87);

  // REST bodies: 400, the server stays up.
  auto c = stack.http_client();
  httplib::Headers auth{{"Authorization", "Bearer " + alice_token}};
  auto r = c.Post("/v1/groups", auth, R"({"name":"g","members":)" + deep + "}", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  r = c.Post("/v1/users", "{\"user\":\"carol\",\"password\":" + deep + "}", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  // An access token whose header nests 10,000 deep, as the MQTT password
  // (up to 64 KiB): refused. (As a REST bearer it is over httplib's 8 KiB
  // header limit, a 400; 2,000 levels fit.)
  {
    RawClient raw(stack.mqtt_port());
    const int rc = raw.connect(
        raw_device("alice", "deep", jwt_like_token_with_header("{\"a\":" + deep + "}")));
    EXPECT_EQ(rc, 0x87);  // not authorized, as for any token that does not verify
  }
  auto [st, body] = stack.get("/v1/conversations", jwt_like_token_with_header(nested(2'000)));
  EXPECT_EQ(st, 401) << body.dump();
  EXPECT_EQ(stack.get("/healthz", "").first, 200);
  expect_chat_works("after-deep");
  expect_bob_got_only({"after-deep"});
}

TEST_F(Hostile, RepeatedJsonMemberNamesAreRefused) {
  MqttClient alice(stack.mqtt_port(), device("alice", "phone", alice_token));
  ASSERT_EQ(alice.connect(), 0);
  ASSERT_EQ(alice.subscribe("u/alice/#"), 1);
  EXPECT_EQ(alice.publish("dm/bob", R"({"cid":"d1","type":"text","body":"a","body":"b"})"), 0x87);
  EXPECT_EQ(alice.publish("dm/bob", R"({"cid":"d2","type":"text","body":{"x":1,"x":2}})"), 0x87);
  EXPECT_TRUE(alice.wait_for([](auto& m) {
    int n = 0;
    for (const auto& r : on_topic(m, "u/alice/event")) {
      n += r.body().value("code", "") == "invalid_payload" ? 1 : 0;
    }
    return n >= 2;
  }));
  auto [st, body] =
      stack.post_json("/v1/groups", json::parse(R"({"name":"g","members":["bob"]})"), alice_token);
  ASSERT_EQ(st, 201);
  auto c = stack.http_client();
  httplib::Headers auth{{"Authorization", "Bearer " + alice_token}};
  auto r = c.Post("/v1/groups", auth, R"({"name":"a","name":"b","members":["bob"]})",
                  "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  expect_chat_works("after-dup");
  expect_bob_got_only({"after-dup"});
}

TEST_F(Hostile, AWillAimedAtAnotherInboxIsNeverDelivered) {
  // alice and bob share a conversation, so bob may watch alice's presence.
  expect_chat_works("hello");
  ASSERT_EQ(bob->subscribe("presence/alice"), 1);
  for (const char* will_topic : {"u/bob/msg", "dm/bob"}) {
    auto o = raw_device("alice", "will", alice_token);
    o.will_topic = will_topic;
    o.will_payload = text("will", "spoofed");
    o.will_qos = 1;
    auto raw = std::make_unique<RawClient>(stack.mqtt_port());
    const int rc = raw->connect(o);
    if (rc != 0) {  // refused at CONNECT: fine too
      EXPECT_GE(rc, 0x80) << will_topic;
      continue;
    }
    auto online = [](const std::vector<Received>& m, const char* status) {
      auto p = on_topic(m, "presence/alice");
      return !p.empty() && p.back().body().value("status", "") == status;
    };
    ASSERT_TRUE(bob->wait_for([&](auto& m) { return online(m, "online"); }));
    raw->reset();  // ungraceful: Mosquitto sends the will now
    ASSERT_TRUE(bob->wait_for([&](auto& m) { return online(m, "offline"); }));
  }
  expect_chat_works("after-will");  // anything the will did has arrived by now
  expect_bob_got_only({"hello", "after-will"});
  for (const auto& m : sync_all(stack, bob_token)) EXPECT_NE(m.value("cid", ""), "will");
}

TEST_F(Hostile, RetainedChatPublishesAreDeliveredNotRetained) {
  RawClient raw(stack.mqtt_port());
  ASSERT_EQ(raw.connect(raw_device("alice", "raw", alice_token)), 0);
  EXPECT_LT(raw_publish(raw, "dm/bob", text("retained", "r"), /*retain=*/true), 0x80);
  ASSERT_TRUE(bob->wait_for([](auto& m) { return !on_topic(m, "u/bob/msg").empty(); }));
  // A device subscribing later gets no retained copy: only the live marker.
  MqttClient late(stack.mqtt_port(), device("bob", "late", bob_token));
  ASSERT_EQ(late.connect(), 0);
  ASSERT_EQ(late.subscribe("u/bob/#"), 1);
  expect_chat_works("marker");
  ASSERT_TRUE(late.wait_for([](auto& m) { return !on_topic(m, "u/bob/msg").empty(); }));
  auto got = late.received_on("u/bob/msg");
  EXPECT_EQ(got.front().body().value("cid", ""), "marker");
  EXPECT_EQ(got.size(), 1u);
}

}  // namespace
}  // namespace chat::testing
