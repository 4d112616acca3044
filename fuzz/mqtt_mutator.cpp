#include "mqtt_mutator.h"

#include <algorithm>

namespace chat::fuzz {
namespace {

std::string u16(uint32_t v) {
  return {static_cast<char>((v >> 8) & 0xff), static_cast<char>(v & 0xff)};
}
std::string u32(uint32_t v) { return u16(v >> 16) + u16(v & 0xffff); }

// Fixed header + remaining length + body.
std::string packet(uint8_t first, const std::string& body) {
  return std::string(1, static_cast<char>(first)) + varint(static_cast<uint32_t>(body.size())) +
         body;
}

std::string with_properties(MqttVersion v, std::string_view properties) {
  if (v != MqttVersion::k5) return "";
  return varint(static_cast<uint32_t>(properties.size())) + std::string(properties);
}

}  // namespace

std::string Rng::bytes(size_t n) {
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(byte());
  return out;
}

std::string varint(uint32_t value) {
  std::string out;
  do {
    uint8_t b = value % 128;
    value /= 128;
    if (value > 0) b |= 0x80;
    out.push_back(static_cast<char>(b));
  } while (value > 0 && out.size() < 4);
  return out;
}

std::string mqtt_string(std::string_view s) {
  return u16(static_cast<uint32_t>(std::min<size_t>(s.size(), 65535))) +
         std::string(s.substr(0, 65535));
}

std::string connect_packet(const ConnectOptions& o) {
  uint8_t flags = 0;
  if (o.clean) flags |= 0x02;
  if (!o.will_topic.empty()) flags |= 0x04 | ((o.will_qos & 3) << 3) | (o.will_retain ? 0x20 : 0);
  if (!o.password.empty()) flags |= 0x40;
  if (!o.username.empty()) flags |= 0x80;
  std::string body = mqtt_string("MQTT") + std::string(1, static_cast<char>(o.version)) +
                     std::string(1, static_cast<char>(flags)) + u16(o.keepalive);
  std::string props = o.properties;
  if (o.version == MqttVersion::k5 && !o.clean && props.empty()) {
    props = std::string("\x11", 1) + u32(3600);  // session expiry interval
  }
  body += with_properties(o.version, props);
  body += mqtt_string(o.client_id);
  if (!o.will_topic.empty()) {
    body += with_properties(o.version, "");
    body += mqtt_string(o.will_topic) + mqtt_string(o.will_payload);
  }
  if (!o.username.empty()) body += mqtt_string(o.username);
  if (!o.password.empty()) body += mqtt_string(o.password);
  return packet(0x10, body);
}

std::string publish_packet(MqttVersion v, std::string_view topic, std::string_view payload, int qos,
                           uint16_t packet_id, bool retain, std::string_view properties) {
  std::string body = mqtt_string(topic);
  if (qos > 0) body += u16(packet_id);
  body += with_properties(v, properties);
  body += payload;
  return packet(static_cast<uint8_t>(0x30 | ((qos & 3) << 1) | (retain ? 1 : 0)), body);
}

std::string subscribe_packet(MqttVersion v, uint16_t packet_id, std::string_view filter,
                             uint8_t options) {
  return packet(0x82, u16(packet_id) + with_properties(v, "") + mqtt_string(filter) +
                          std::string(1, static_cast<char>(options)));
}

std::string unsubscribe_packet(MqttVersion v, uint16_t packet_id, std::string_view filter) {
  return packet(0xa2, u16(packet_id) + with_properties(v, "") + mqtt_string(filter));
}

std::string ack_packet(MqttVersion v, uint8_t type, uint16_t packet_id, uint8_t reason) {
  std::string body = u16(packet_id);
  if (v == MqttVersion::k5 && reason != 0) body += std::string(1, static_cast<char>(reason));
  return packet(static_cast<uint8_t>((type << 4) | (type == 6 ? 0x02 : 0)), body);
}

std::string pingreq_packet() { return std::string("\xc0\x00", 2); }

std::string disconnect_packet(MqttVersion v, uint8_t reason) {
  if (v != MqttVersion::k5) return std::string("\xe0\x00", 2);
  return packet(0xe0, std::string(1, static_cast<char>(reason)) + varint(0));
}

std::string auth_packet(uint8_t reason, std::string_view properties) {
  return packet(0xf0, std::string(1, static_cast<char>(reason)) +
                          with_properties(MqttVersion::k5, properties));
}

std::string random_properties(Rng& rng) {
  // Property ids by value type (MQTT 5 §2.2.2.2).
  static constexpr uint8_t kByte[] = {0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2a};
  static constexpr uint8_t kTwo[] = {0x13, 0x21, 0x22, 0x23};
  static constexpr uint8_t kFour[] = {0x02, 0x11, 0x18, 0x27};
  static constexpr uint8_t kString[] = {0x03, 0x08, 0x12, 0x15, 0x1a, 0x1c, 0x1f};
  static constexpr uint8_t kBinary[] = {0x09, 0x16};
  std::string out;
  const uint32_t n = rng.below(5);
  for (uint32_t i = 0; i < n; ++i) {
    switch (rng.below(8)) {
      case 0:
        out += static_cast<char>(kByte[rng.below(std::size(kByte))]);
        out += static_cast<char>(rng.byte());
        break;
      case 1:
        out += static_cast<char>(kTwo[rng.below(std::size(kTwo))]) + u16(rng.below(65536));
        break;
      case 2:
        out += static_cast<char>(kFour[rng.below(std::size(kFour))]) + u32(rng.below(1u << 31));
        break;
      case 3:
        out += static_cast<char>(kString[rng.below(std::size(kString))]) +
               mqtt_string(rng.chance(50) ? "text/plain" : rng.bytes(rng.below(40)));
        break;
      case 4:
        out += static_cast<char>(kBinary[rng.below(std::size(kBinary))]) +
               mqtt_string(rng.bytes(rng.below(40)));
        break;
      case 5:  // user property: a string pair
        out +=
            '\x26' + mqtt_string("k" + std::to_string(i)) + mqtt_string(rng.bytes(rng.below(20)));
        break;
      case 6:  // subscription identifier (a varint)
        out += '\x0b' + varint(rng.below(1u << 28));
        break;
      default:  // an id that is no property, or a string that runs past the end
        out += static_cast<char>(rng.byte());
        if (rng.chance(50)) out += u16(65535);
        break;
    }
  }
  return out;
}

std::string mutate(std::string p, Rng& rng) {
  if (p.empty()) return rng.bytes(1 + rng.below(16));
  switch (rng.below(10)) {
    case 0:  // flip bits
      for (uint32_t i = 0, n = 1 + rng.below(4); i < n; ++i) {
        p[rng.below(static_cast<uint32_t>(p.size()))] ^= static_cast<char>(1u << rng.below(8));
      }
      break;
    case 1:  // overwrite a byte
      p[rng.below(static_cast<uint32_t>(p.size()))] = static_cast<char>(rng.byte());
      break;
    case 2:  // truncate (the remaining length then promises more)
      p.resize(rng.below(static_cast<uint32_t>(p.size())));
      break;
    case 3:  // garbage after the packet
      p += rng.bytes(1 + rng.below(64));
      break;
    case 4: {  // a bogus remaining length: 5 continuation bytes
      size_t len_end = 1;
      while (len_end < p.size() && len_end < 5 && (static_cast<uint8_t>(p[len_end]) & 0x80)) {
        ++len_end;
      }
      p = p.substr(0, 1) + std::string("\xff\xff\xff\xff\x7f", 5) +
          p.substr(std::min(len_end + 1, p.size()));
      break;
    }
    case 5: {  // a huge remaining length (256 MiB - 1, the maximum), then little data
      p = p.substr(0, 1) + std::string("\xff\xff\xff\x7f", 4) + rng.bytes(rng.below(32));
      break;
    }
    case 6:  // remaining length off by a little
      if (p.size() > 1) p[1] = static_cast<char>(static_cast<uint8_t>(p[1]) + 1 + rng.below(3));
      break;
    case 7: {  // a string length field made huge
      if (p.size() > 4) {
        const uint32_t at = 2 + rng.below(static_cast<uint32_t>(p.size() - 3));
        p[at] = '\xff';
        p[at + 1] = '\xff';
      }
      break;
    }
    case 8:  // a different packet type or flags in the fixed header
      p[0] = static_cast<char>(rng.byte());
      break;
    default:  // insert random bytes in the middle
      p.insert(rng.below(static_cast<uint32_t>(p.size()) + 1), rng.bytes(1 + rng.below(8)));
      break;
  }
  return p;
}

}  // namespace chat::fuzz
