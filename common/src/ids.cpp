#include "chat/common/ids.h"

#include <algorithm>

namespace chat {
namespace {

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_alnum(char c) { return is_lower_alnum(c) || (c >= 'A' && c <= 'Z'); }

constexpr int kNodeBits = 8;
constexpr int kSeqBits = 12;
constexpr uint64_t kTimeUnit = uint64_t{1} << (kNodeBits + kSeqBits);

}  // namespace

bool is_valid_user_id(std::string_view s) {
  if (s.empty() || s.size() > 32 || !is_lower_alnum(s[0])) return false;
  return std::all_of(s.begin() + 1, s.end(),
                     [](char c) { return is_lower_alnum(c) || c == '_' || c == '.' || c == '-'; });
}

bool is_valid_device_id(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return is_alnum(c) || c == '_' || c == '-'; });
}

bool is_valid_group_id(std::string_view s) { return is_valid_device_id(s); }

bool is_valid_message_id(std::string_view s) {
  uint64_t v;
  return IdGenerator::parse(s, &v);
}

bool split_client_id(std::string_view client_id, std::string* user, std::string* device) {
  auto colon = client_id.find(':');
  if (colon == std::string_view::npos) return false;
  auto u = client_id.substr(0, colon);
  auto d = client_id.substr(colon + 1);
  if (!is_valid_user_id(u) || !is_valid_device_id(d)) return false;
  if (user) user->assign(u);
  if (device) device->assign(d);
  return true;
}

void IdGenerator::observe(std::string_view id) {
  uint64_t v;
  if (parse(id, &v)) last_ = std::max(last_, v);
}

std::string IdGenerator::next() {
  uint64_t now = static_cast<uint64_t>(std::max<int64_t>(clock_.now_ms(), 0));
  uint64_t candidate = now * kTimeUnit + node_;
  if (candidate <= last_) {
    // Same millisecond, or the clock stepped back: count on from the last id,
    // keeping this node's low bits.
    uint64_t base = (last_ >> kNodeBits) + 1;
    candidate = (base << kNodeBits) | node_;
  }
  last_ = candidate;
  return format(candidate);
}

std::string IdGenerator::format(uint64_t value) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i) {
    out[i] = kHex[value & 0xf];
    value >>= 4;
  }
  return out;
}

bool IdGenerator::parse(std::string_view id, uint64_t* value) {
  if (id.size() != 16) return false;
  uint64_t v = 0;
  for (char c : id) {
    int d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else
      return false;
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  *value = v;
  return true;
}

int64_t IdGenerator::timestamp_ms(std::string_view id) {
  uint64_t v;
  if (!parse(id, &v)) return 0;
  return static_cast<int64_t>(v / kTimeUnit);
}

}  // namespace chat
