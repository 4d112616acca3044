#include "chat/api/rate_limits.h"

#include <algorithm>

#include "chat/api/log.h"
#include "chat/common/ids.h"

namespace chat::api {
namespace {

constexpr int64_t kPruneEveryMs = 10'000;

}  // namespace

RateLimits::RateLimits(const Clock& clock, RateLimitOptions options)
    : clock_(clock),
      options_(options),
      login_ips_(clock, RateLimit{options.login_rate, options.login_burst}, options.max_keys),
      rest_users_(clock, RateLimit{options.rest_rate, options.rest_burst}, options.max_keys),
      last_failure_prune_ms_(clock.now_ms()) {}

int64_t RateLimits::login_attempt(const std::string& ip) {
  std::lock_guard lock(mu_);
  int64_t wait = login_ips_.take(address_key(ip));  // IPv6: the client's /64
  if (wait > 0) ++counters_.login_ip_refused;
  return wait;
}

int64_t RateLimits::locked_for(const std::string& account, int64_t now) {
  for (const FailureTable* table : {&failures_, &unknown_failures_}) {
    auto it = table->find(account);
    if (it == table->end()) continue;
    const int64_t wait = it->second.locked_until_ms - now;
    if (wait > 0) {
      ++counters_.login_locked_refused;
      return wait;
    }
  }
  return 0;
}

int64_t RateLimits::account_locked(const std::string& account) {
  if (options_.lockout_after <= 0 || !is_valid_user_id(account)) return 0;
  std::lock_guard lock(mu_);
  return locked_for(account, clock_.now_ms());
}

RateLimits::PasswordAttempt RateLimits::begin_password_attempt(const std::string& account,
                                                               bool known) {
  PasswordAttempt attempt;
  if (options_.lockout_after <= 0 || !is_valid_user_id(account)) return attempt;
  std::lock_guard lock(mu_);
  attempt.wait_ms = locked_for(account, clock_.now_ms());
  if (attempt.wait_ms > 0) return attempt;
  attempt.lock_ms = count_failure(account, known, &attempt.failures);
  return attempt;
}

int64_t RateLimits::login_failed(const std::string& account, int* failures, bool known) {
  if (failures != nullptr) *failures = 0;
  if (options_.lockout_after <= 0 || !is_valid_user_id(account)) return 0;
  std::lock_guard lock(mu_);
  const int64_t lock_ms = count_failure(account, known, failures);
  if (lock_ms > 0) ++counters_.lockouts;
  return lock_ms;
}

int64_t RateLimits::count_failure(const std::string& account, bool known, int* failures) {
  if (failures != nullptr) *failures = 0;
  const int64_t now = clock_.now_ms();
  if (now - last_failure_prune_ms_ >= kPruneEveryMs || now < last_failure_prune_ms_) {
    prune_failures(now);
  }
  FailureTable& table = known ? failures_ : unknown_failures_;
  // Real accounts are bounded by the accounts that exist: their table may
  // hold ten times more than the one anyone can fill with made-up names.
  const size_t cap = known ? options_.max_keys * 10 : options_.max_keys;
  auto it = table.find(account);
  if (it == table.end()) {
    if (table.size() >= cap) prune_failures(now);
    if (table.size() >= cap) {
      if (!warned_full_) {
        logger().warn(
            "security.lockout_table_full: table={} entries={} setting=CHAT_LOGIN_LOCKOUT_MAX "
            "effect=\"further names are not locked out until some expire\"",
            known ? "accounts" : "unknown_names", table.size());
        warned_full_ = true;
      }
      return 0;
    }
    it = table.emplace(account, Failures{}).first;
  }
  Failures& f = it->second;
  ++f.count;
  f.last_ms = now;
  if (failures != nullptr) *failures = f.count;
  if (f.count < options_.lockout_after) return 0;
  // base x 2^(failures beyond the threshold), at most the maximum.
  const int doublings = std::min(f.count - options_.lockout_after, 40);
  int64_t lock_ms = options_.lockout_base_ms;
  for (int i = 0; i < doublings && lock_ms < options_.lockout_max_ms; ++i) lock_ms *= 2;
  lock_ms = std::min(lock_ms, options_.lockout_max_ms);
  f.locked_until_ms = now + lock_ms;
  return lock_ms;
}

void RateLimits::count_lockout() {
  std::lock_guard lock(mu_);
  ++counters_.lockouts;
}

void RateLimits::login_succeeded(const std::string& account) {
  if (options_.lockout_after <= 0) return;
  std::lock_guard lock(mu_);
  failures_.erase(account);
  unknown_failures_.erase(account);
}

int64_t RateLimits::rest_write(const std::string& user) {
  std::lock_guard lock(mu_);
  int64_t wait = rest_users_.take(user);
  if (wait > 0) ++counters_.rest_refused;
  return wait;
}

RateLimitCounters RateLimits::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

size_t RateLimits::accounts_tracked() const {
  std::lock_guard lock(mu_);
  return failures_.size() + unknown_failures_.size();
}

void RateLimits::prune_failures(int64_t now) {
  last_failure_prune_ms_ = now;
  // Forgotten: the longest lock has passed since the last failure, and since
  // its lock ended (else someone who retries right when each lock ends would
  // find the count reset exactly then, and get a fresh set of guesses).
  for (FailureTable* table : {&failures_, &unknown_failures_}) {
    for (auto i = table->begin(); i != table->end();) {
      const Failures& f = i->second;
      const int64_t quiet_since = std::max(f.last_ms, f.locked_until_ms);
      const bool forget = now - quiet_since >= options_.lockout_max_ms;
      i = forget ? table->erase(i) : std::next(i);
    }
  }
  if (unknown_failures_.size() < options_.max_keys && failures_.size() < options_.max_keys * 10) {
    warned_full_ = false;
  }
}

}  // namespace chat::api
