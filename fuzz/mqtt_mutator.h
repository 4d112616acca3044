// A packet-level MQTT 3.1.1 / 5 generator and mutator for fuzzing a running
// broker (fuzz/broker_protocol_fuzz_test.cpp). It builds valid packets (so
// the broker's and our plugin's deeper paths run) and damages them the ways
// a hostile or broken client would: bit flips, wrong or bogus remaining
// lengths, truncation, random property ids, huge declared lengths.
// Deterministic for a given seed, so a failing run can be replayed.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace chat::fuzz {

enum class MqttVersion : uint8_t { k311 = 4, k5 = 5 };

class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  uint32_t below(uint32_t n) { return n == 0 ? 0 : static_cast<uint32_t>(gen_() % n); }
  bool chance(uint32_t percent) { return below(100) < percent; }
  uint8_t byte() { return static_cast<uint8_t>(gen_()); }
  std::string bytes(size_t n);

 private:
  std::mt19937_64 gen_;
};

// MQTT's variable byte integer (the remaining length), 1-4 bytes.
std::string varint(uint32_t value);
// A two-byte-length-prefixed string (MQTT "UTF-8 encoded string" / binary data).
std::string mqtt_string(std::string_view s);

struct ConnectOptions {
  MqttVersion version = MqttVersion::k5;
  std::string client_id;
  std::string username;
  std::string password;
  bool clean = true;
  uint16_t keepalive = 10;
  std::string will_topic;  // empty: no will
  std::string will_payload;
  uint8_t will_qos = 0;
  bool will_retain = false;
  std::string properties;  // raw MQTT 5 properties (without the length)
};

std::string connect_packet(const ConnectOptions& o);
std::string publish_packet(MqttVersion v, std::string_view topic, std::string_view payload, int qos,
                           uint16_t packet_id, bool retain = false,
                           std::string_view properties = {});
std::string subscribe_packet(MqttVersion v, uint16_t packet_id, std::string_view filter,
                             uint8_t options);
std::string unsubscribe_packet(MqttVersion v, uint16_t packet_id, std::string_view filter);
// PUBACK (type 4), PUBREC (5), PUBREL (6), PUBCOMP (7).
std::string ack_packet(MqttVersion v, uint8_t type, uint16_t packet_id, uint8_t reason = 0);
std::string pingreq_packet();
std::string disconnect_packet(MqttVersion v, uint8_t reason = 0);
std::string auth_packet(uint8_t reason, std::string_view properties);

// Random MQTT 5 properties: mostly well-formed ones of every type, sometimes
// unknown ids or lengths that run past the end.
std::string random_properties(Rng& rng);

// One random damage to a packet (never returns it unchanged when non-empty).
std::string mutate(std::string packet, Rng& rng);

}  // namespace chat::fuzz
