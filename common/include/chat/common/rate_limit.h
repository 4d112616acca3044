// Token buckets: the one rate-limit arithmetic of the platform. The broker
// plugin limits each user's messages, receipts and typing signals with it,
// chat-bridge each address's new WebSockets, chat-api each address's logins
// and each user's REST writes.
//
// A bucket holds at most `burst` tokens and gains `rate` tokens per second;
// each admitted event takes one. A new bucket is full, so a bucket that has
// refilled completely can be forgotten without changing any answer: that is
// what keeps the keyed table small.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include "chat/common/clock.h"

namespace chat {

struct RateLimit {
  double rate = 0;   // tokens per second. Default: 0 = unlimited (every take() admits)
  double burst = 1;  // bucket size, at least 1. Default: 1
  bool enabled() const { return rate > 0; }
};

// The key a per-address limit counts a client under: an IPv4 address (also
// IPv4-mapped IPv6) as it is, an IPv6 address by its /64 prefix (one
// subscriber usually holds a whole /64, and could otherwise rotate through
// 2^64 addresses, a fresh bucket each), e.g. "2001:db8:1:2::/64". Anything
// that does not parse as an address is returned unchanged.
std::string address_key(std::string_view ip);

class TokenBucket {
 public:
  // Refills the bucket up to `now_ms`, then takes one token if there is one.
  // Returns 0 when a token was taken, otherwise the milliseconds until one
  // will be there (at least 1). A clock that steps back refills nothing.
  int64_t take(const RateLimit& limit, int64_t now_ms);
  // Whether the bucket is full at `now_ms` (indistinguishable from a new one).
  bool full_at(const RateLimit& limit, int64_t now_ms) const;

 private:
  double tokens_ = 0;
  int64_t last_ms_ = 0;
  bool started_ = false;
};

// Token buckets by key (a user id, an IP address), all with one RateLimit.
// Not thread-safe: the caller serializes (the broker and the bridge have one
// thread; chat-api wraps it in its own mutex).
//
// Memory is bounded: full buckets are forgotten by prune(), which take() also
// runs at most once per `prune_every_ms`; at most `max_keys` buckets are kept.
// When the table is still full after a prune, a new key is admitted without a
// bucket (counted in untracked()): under that many distinct keys a per-key
// limit protects nothing, and refusing unknown keys would lock everyone out.
class KeyedRateLimiter {
 public:
  KeyedRateLimiter(const Clock& clock, RateLimit limit, size_t max_keys = 100'000,
                   int64_t prune_every_ms = 10'000);

  // 0 when `key` may go ahead (one token taken), otherwise the milliseconds
  // until it may try again (at least 1). Always 0 when the limit is off.
  int64_t take(const std::string& key);
  // Forgets every bucket that has refilled completely.
  void prune();

  const RateLimit& limit() const { return limit_; }
  size_t size() const { return buckets_.size(); }
  uint64_t untracked() const { return untracked_; }

 private:
  const Clock& clock_;
  RateLimit limit_;
  size_t max_keys_;
  int64_t prune_every_ms_;
  int64_t last_prune_ms_ = 0;
  uint64_t untracked_ = 0;
  std::unordered_map<std::string, TokenBucket> buckets_;
};

}  // namespace chat
