#include "chatctl/random_ids.h"

#include <array>
#include <random>

namespace chat::tools {
namespace {

constexpr char kCrockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

std::mt19937_64& generator() {
  thread_local std::mt19937_64 gen = [] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device(),
                       device(), device(), device(), device()};
    return std::mt19937_64(seed);
  }();
  return gen;
}

}  // namespace

std::string new_message_cid(int64_t now_ms) {
  // 128 bits: [48 bits time][80 bits random], written as 26 base32 digits
  // (130 bits, the top two always zero).
  uint64_t time = static_cast<uint64_t>(now_ms < 0 ? 0 : now_ms) & ((uint64_t{1} << 48) - 1);
  uint64_t r1 = generator()();
  uint64_t r2 = generator()();
  uint64_t hi = (time << 16) | (r1 >> 48);   // 48 time bits + 16 random bits
  uint64_t lo = (r1 << 16) | (r2 & 0xFFFF);  // 48 + 16 more random bits
  std::string out(26, '0');
  for (int i = 25; i >= 0; --i) {
    out[static_cast<size_t>(i)] = kCrockford[lo & 0x1F];
    lo = (lo >> 5) | ((hi & 0x1F) << 59);
    hi >>= 5;
  }
  return out;
}

std::string new_device_id() {
  static constexpr char kHex[] = "0123456789abcdef";
  uint64_t r = generator()();
  std::string out = "cli-";
  for (int i = 0; i < 8; ++i) {
    out.push_back(kHex[r & 0xF]);
    r >>= 4;
  }
  return out;
}

bool is_ulid(std::string_view s) {
  if (s.size() != 26 || s[0] > '7') return false;
  for (char c : s) {
    bool ok = false;
    for (const char* p = kCrockford; *p != '\0'; ++p) ok = ok || (*p == c);
    if (!ok) return false;
  }
  return true;
}

}  // namespace chat::tools
