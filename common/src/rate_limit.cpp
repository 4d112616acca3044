#include "chat/common/rate_limit.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace chat {

std::string address_key(std::string_view ip) {
  if (ip.find(':') == std::string_view::npos || ip.size() >= INET6_ADDRSTRLEN) {
    return std::string(ip);
  }
  unsigned char a[16];
  const std::string text(ip);
  if (inet_pton(AF_INET6, text.c_str(), a) != 1) return text;
  static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::equal(a, a + 12, kMapped)) return text;  // an IPv4 client: its own address
  char out[32];
  std::snprintf(out, sizeof out, "%x:%x:%x:%x::/64", a[0] << 8 | a[1], a[2] << 8 | a[3],
                a[4] << 8 | a[5], a[6] << 8 | a[7]);
  return out;
}

int64_t TokenBucket::take(const RateLimit& limit, int64_t now_ms) {
  if (!limit.enabled()) return 0;
  if (!started_) {
    tokens_ = limit.burst;
    last_ms_ = now_ms;
    started_ = true;
  }
  const double elapsed_s = static_cast<double>(std::max<int64_t>(0, now_ms - last_ms_)) / 1000.0;
  tokens_ = std::min(limit.burst, tokens_ + elapsed_s * limit.rate);
  last_ms_ = std::max(last_ms_, now_ms);
  // The epsilon absorbs rounding: 99 ms + 1 ms at 10/s is one whole token.
  constexpr double kEpsilon = 1e-9;
  if (tokens_ + kEpsilon >= 1) {
    tokens_ = std::max(0.0, tokens_ - 1);
    return 0;
  }
  const double wait_ms = std::ceil((1 - tokens_) / limit.rate * 1000.0 - 1e-6);
  return std::max<int64_t>(1, static_cast<int64_t>(wait_ms));
}

bool TokenBucket::full_at(const RateLimit& limit, int64_t now_ms) const {
  if (!started_ || !limit.enabled()) return true;
  const double elapsed_s = static_cast<double>(std::max<int64_t>(0, now_ms - last_ms_)) / 1000.0;
  return tokens_ + elapsed_s * limit.rate + 1e-9 >= limit.burst;
}

KeyedRateLimiter::KeyedRateLimiter(const Clock& clock, RateLimit limit, size_t max_keys,
                                   int64_t prune_every_ms)
    : clock_(clock),
      limit_(limit),
      max_keys_(std::max<size_t>(1, max_keys)),
      prune_every_ms_(prune_every_ms),
      last_prune_ms_(clock.now_ms()) {}

int64_t KeyedRateLimiter::take(const std::string& key) {
  if (!limit_.enabled()) return 0;
  const int64_t now = clock_.now_ms();
  if (now - last_prune_ms_ >= prune_every_ms_ || now < last_prune_ms_) prune();
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_keys_) {
      // Pruning a full table at most once per prune interval keeps a flood of
      // new keys from costing a full scan each.
      ++untracked_;
      return 0;
    }
    it = buckets_.emplace(key, TokenBucket{}).first;
  }
  return it->second.take(limit_, now);
}

void KeyedRateLimiter::prune() {
  const int64_t now = clock_.now_ms();
  last_prune_ms_ = now;
  for (auto i = buckets_.begin(); i != buckets_.end();) {
    i = i->second.full_at(limit_, now) ? buckets_.erase(i) : std::next(i);
  }
}

}  // namespace chat
