// ConnectionRate: how fast each client IP may open new WebSockets
// (CHAT_WS_CONN_RATE per second, bursts of CHAT_WS_CONN_BURST), and which of
// its refusals are worth a log line (the first per address per minute).
//
// Pure bookkeeping over chat::KeyedRateLimiter, no I/O; not thread-safe (the
// bridge has one thread). Memory is bounded: an address's entry is forgotten
// once its bucket has refilled, and at most `max_addresses` are kept (past
// that, new addresses are admitted untracked: see KeyedRateLimiter).
// Addresses are compared as given (one canonical spelling, as for
// ConnectionLimits).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "chat/common/clock.h"
#include "chat/common/rate_limit.h"

namespace chat::bridge {

class ConnectionRate {
 public:
  // Default upper bound on the addresses tracked at once.
  static constexpr size_t kDefaultMaxAddresses = 100'000;
  // A refused address is logged at most once per this many milliseconds.
  static constexpr int64_t kLogEveryMs = 60'000;

  enum class Verdict {
    kAdmit,
    kRefuse,        // over the rate; already logged in this period
    kRefuseAndLog,  // over the rate; the first refusal of this address in the period
  };

  // `per_second` 0 turns the limit off (every connection admitted).
  ConnectionRate(const Clock& clock, double per_second, double burst,
                 size_t max_addresses = kDefaultMaxAddresses);

  // Takes one new connection of `ip` from its bucket when there is room.
  Verdict admit(const std::string& ip);

  // Forgets every address whose bucket (and log allowance) has refilled.
  // admit() does it too, every 10 s, but only while connections arrive.
  void prune();

  bool enabled() const { return limiter_.limit().enabled(); }
  // Addresses with a bucket now (memory use; tests).
  size_t tracked() const { return limiter_.size() + log_allowance_.size(); }

 private:
  KeyedRateLimiter limiter_;
  KeyedRateLimiter log_allowance_;  // one log line per address per kLogEveryMs
};

}  // namespace chat::bridge
