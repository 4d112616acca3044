// RateLimits: chat-api's abuse limits, apart from HTTP.
//  - POST /v1/oauth/token, every grant: a token bucket per client IP
//    (CHAT_LOGIN_RATE per second, bursts of CHAT_LOGIN_BURST).
//  - Password grants: per account, after CHAT_LOGIN_LOCKOUT_AFTER consecutive
//    failures the account is locked for CHAT_LOGIN_LOCKOUT_SECONDS, doubling
//    with every further failure up to CHAT_LOGIN_LOCKOUT_MAX. A success
//    resets it. Accounts that do not exist are locked the same way, so the
//    answers never tell which accounts exist; they are tracked in a table of
//    their own, so made-up names cannot crowd real accounts out of theirs.
//    An attempt is counted when it starts (begin_password_attempt), before
//    the password is checked: concurrent guesses cannot all pass one check.
//  - REST writes (POST/PUT/PATCH/DELETE) of an authenticated user: a token
//    bucket per user (CHAT_RATE_LIMIT_REST per second, CHAT_RATE_LIMIT_REST_BURST).
// Every refusal says how long to wait (milliseconds; the HTTP edge rounds up
// to whole seconds for Retry-After).
//
// Thread-safe (one mutex; every call is a map lookup). Memory is bounded:
// full buckets and expired lockouts are forgotten, and each table holds at
// most `max_keys` entries (past that, new keys go unlimited: see
// KeyedRateLimiter; a full lockout table is logged).
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

#include "chat/common/clock.h"
#include "chat/common/rate_limit.h"

namespace chat::api {

struct RateLimitOptions {
  // CHAT_LOGIN_RATE / CHAT_LOGIN_BURST. Default: 5/s, burst 20, per client IP,
  // for every grant of POST /v1/oauth/token. Rate 0 = off.
  double login_rate = 5;
  double login_burst = 20;
  // CHAT_LOGIN_LOCKOUT_AFTER. Default: 5 consecutive failed password grants
  // for one account; 0 = no lockout.
  int lockout_after = 5;
  // CHAT_LOGIN_LOCKOUT_SECONDS. Default: 1. The first lock; each further
  // failure doubles it.
  int64_t lockout_base_ms = 1000;
  // CHAT_LOGIN_LOCKOUT_MAX. Default: 900 (15 min). The longest lock; also how
  // long failures are remembered after the last one and after its lock ended.
  int64_t lockout_max_ms = 15 * 60 * 1000;
  // CHAT_RATE_LIMIT_REST / CHAT_RATE_LIMIT_REST_BURST. Default: 10/s, burst
  // 50, per user, for POST/PUT/PATCH/DELETE. Rate 0 = off. Admins are exempt.
  double rest_rate = 10;
  double rest_burst = 50;
  // Largest number of addresses, accounts or users tracked per table.
  size_t max_keys = 100'000;
};

// What RateLimits has refused since start (for /metrics).
struct RateLimitCounters {
  uint64_t login_ip_refused = 0;      // token requests over the per-IP rate
  uint64_t login_locked_refused = 0;  // password grants refused: account locked
  uint64_t lockouts = 0;              // times an account became (or stayed) locked
  uint64_t rest_refused = 0;          // REST writes over the per-user rate
};

class RateLimits {
 public:
  RateLimits(const Clock& clock, RateLimitOptions options);

  // A token request from `ip`: 0 = go ahead, else ms to wait.
  int64_t login_attempt(const std::string& ip);

  // A password grant for `account` is about to be checked. Atomically: when
  // the account is locked, refused (wait_ms > 0, nothing counted); else the
  // attempt counts as a failure right away (lock_ms: the lock that count set,
  // 0 = none; failures: the count) and login_succeeded() forgets it if the
  // password was right. `known`: the account exists (picks the table).
  struct PasswordAttempt {
    int64_t wait_ms = 0;
    int64_t lock_ms = 0;
    int failures = 0;
  };
  PasswordAttempt begin_password_attempt(const std::string& account, bool known);
  // The attempt that set a lock (lock_ms > 0) did fail: count the lockout
  // (for /metrics; an attempt that succeeded set no lockout after all).
  void count_lockout();
  // 0 when `account` may try a password now, else the ms its lock has left.
  // Only syntactically valid user ids are tracked (others are never locked:
  // they can never be accounts, and anyone can tell).
  int64_t account_locked(const std::string& account);
  // A password grant for `account` failed. Returns the lock it now has
  // (ms, 0 = none) and sets *failures to the consecutive failures so far.
  // (begin_password_attempt already counts; this is the step alone.)
  int64_t login_failed(const std::string& account, int* failures = nullptr, bool known = true);
  // A password grant for `account` succeeded: its failures are forgotten.
  void login_succeeded(const std::string& account);
  // A REST write by `user`: 0 = go ahead, else ms to wait.
  int64_t rest_write(const std::string& user);

  RateLimitCounters counters() const;
  const RateLimitOptions& options() const { return options_; }
  // Accounts with failures remembered now (memory use; tests).
  size_t accounts_tracked() const;

 private:
  struct Failures {
    int count = 0;
    int64_t locked_until_ms = 0;
    int64_t last_ms = 0;
  };
  using FailureTable = std::unordered_map<std::string, Failures>;
  void prune_failures(int64_t now);                                              // needs mu_
  int64_t locked_for(const std::string& account, int64_t now);                   // needs mu_
  int64_t count_failure(const std::string& account, bool known, int* failures);  // needs mu_

  const Clock& clock_;
  const RateLimitOptions options_;
  mutable std::mutex mu_;
  KeyedRateLimiter login_ips_;
  KeyedRateLimiter rest_users_;
  FailureTable failures_;          // accounts that exist
  FailureTable unknown_failures_;  // names that are no account
  int64_t last_failure_prune_ms_ = 0;
  bool warned_full_ = false;
  RateLimitCounters counters_;
};

}  // namespace chat::api
