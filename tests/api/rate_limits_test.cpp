// chat-api's abuse limits: RateLimits on its own with a fake clock, then the
// HTTP edge (see http_fixture.h; its clock is fake too): 429 + Retry-After on
// the token endpoint per IP, account lockout with backoff, and REST writes
// per user.
#include "chat/api/rate_limits.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "http_fixture.h"

namespace chat::api {
namespace {

using namespace chat::api::test_support;  // NOLINT(google-build-using-namespace)

RateLimitOptions lockout_options() {
  RateLimitOptions o;
  o.login_rate = 0;
  o.rest_rate = 0;
  o.lockout_after = 3;
  o.lockout_base_ms = 1000;
  o.lockout_max_ms = 8000;
  return o;
}

TEST(RateLimitsTest, LockoutStartsAfterTheThresholdAndDoublesUpToTheMaximum) {
  FakeClock clock;
  RateLimits limits(clock, lockout_options());
  int failures = 0;
  EXPECT_EQ(limits.login_failed("alice", &failures), 0);
  EXPECT_EQ(failures, 1);
  EXPECT_EQ(limits.login_failed("alice"), 0);
  EXPECT_EQ(limits.account_locked("alice"), 0);
  // Third consecutive failure: locked 1 s, then 2, 4, 8, 8 (the maximum).
  EXPECT_EQ(limits.login_failed("alice", &failures), 1000);
  EXPECT_EQ(failures, 3);
  EXPECT_EQ(limits.account_locked("alice"), 1000);
  clock.advance_ms(400);
  EXPECT_EQ(limits.account_locked("alice"), 600);
  clock.advance_ms(600);
  EXPECT_EQ(limits.account_locked("alice"), 0);
  for (int64_t expected : {2000, 4000, 8000, 8000}) {
    EXPECT_EQ(limits.login_failed("alice"), expected);
    clock.advance_ms(expected);
    EXPECT_EQ(limits.account_locked("alice"), 0);
  }
  // (Retrying right when each lock ended kept the count, although more than
  // the 8 s failures are remembered passed since the 6th.) Quiet for 8 s
  // after the last lock ended: forgotten.
  clock.advance_ms(16'000);
  EXPECT_EQ(limits.login_failed("alice"), 0);
  // Another account is not affected; a success resets.
  EXPECT_EQ(limits.account_locked("bob"), 0);
  limits.login_succeeded("alice");
  EXPECT_EQ(limits.login_failed("alice"), 0);
  auto c = limits.counters();
  EXPECT_EQ(c.lockouts, 5u);
  EXPECT_EQ(c.login_locked_refused, 2u);
}

TEST(RateLimitsTest, FailuresAreForgottenAndInvalidNamesNeverTracked) {
  FakeClock clock;
  RateLimits limits(clock, lockout_options());
  EXPECT_EQ(limits.login_failed("Not A User"), 0);
  EXPECT_EQ(limits.login_failed(std::string(200, 'a')), 0);
  EXPECT_EQ(limits.accounts_tracked(), 0u);
  for (int i = 0; i < 100; ++i) limits.login_failed("u" + std::to_string(i));
  limits.login_failed("alice");
  limits.login_failed("alice");
  EXPECT_EQ(limits.accounts_tracked(), 101u);
  // No lock, and no failure within the longest lock (8 s): forgotten at the
  // next prune (every 10 s), so two old failures and a new one do not lock.
  clock.advance_ms(10'000);
  EXPECT_EQ(limits.login_failed("alice"), 0);
  EXPECT_EQ(limits.accounts_tracked(), 1u);
}

TEST(RateLimitsTest, AFullLockoutTableLocksNoNewNameButKeepsTheOldOnes) {
  FakeClock clock;
  RateLimitOptions o = lockout_options();
  o.max_keys = 4;
  RateLimits limits(clock, o);
  // Names that are no account fill their own table...
  for (int i = 0; i < 4; ++i) limits.login_failed("u" + std::to_string(i), nullptr, false);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(limits.login_failed("late", nullptr, false), 0);
  EXPECT_EQ(limits.accounts_tracked(), 4u);
  limits.login_failed("u0", nullptr, false);
  EXPECT_EQ(limits.login_failed("u0", nullptr, false), 1000);
  // ...and never crowd a real account out of its lockout.
  EXPECT_EQ(limits.login_failed("alice"), 0);
  EXPECT_EQ(limits.login_failed("alice"), 0);
  EXPECT_EQ(limits.login_failed("alice"), 1000);
  EXPECT_EQ(limits.account_locked("alice"), 1000);
}

TEST(RateLimitsTest, ConcurrentGuessesCannotAllPassOneCheck) {
  // 64 password grants for one account start at once (the HTTP pool's
  // size): each is counted as it starts, so exactly lockout_after of them
  // get to check a password, however the threads interleave.
  FakeClock clock;
  RateLimitOptions o = lockout_options();
  o.lockout_after = 5;
  RateLimits limits(clock, o);
  std::atomic<int> checked{0}, refused{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 64; ++i) {
    threads.emplace_back([&] {
      auto attempt = limits.begin_password_attempt("alice", true);
      (attempt.wait_ms > 0 ? refused : checked)++;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(checked.load(), 5);
  EXPECT_EQ(refused.load(), 59);
  // A success forgets the count (and the lock it set).
  limits.login_succeeded("alice");
  EXPECT_EQ(limits.begin_password_attempt("alice", true).wait_ms, 0);
}

TEST(RateLimitsTest, OffMeansOff) {
  FakeClock clock;
  RateLimitOptions o;
  o.login_rate = 0;
  o.rest_rate = 0;
  o.lockout_after = 0;
  RateLimits limits(clock, o);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(limits.login_attempt("10.0.0.1"), 0);
    ASSERT_EQ(limits.rest_write("alice"), 0);
    ASSERT_EQ(limits.login_failed("alice"), 0);
  }
  EXPECT_EQ(limits.account_locked("alice"), 0);
}

TEST(RateLimitsTest, ThreadSafeUnderConcurrentWriters) {
  FakeClock clock;
  RateLimitOptions o;
  o.rest_rate = 1;
  o.rest_burst = 100;
  RateLimits limits(clock, o);
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        if (limits.rest_write("alice") == 0) ++admitted;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(admitted.load(), 100);  // exactly the burst, however interleaved
  EXPECT_EQ(limits.counters().rest_refused, 300u);
}

// ---- over HTTP ---------------------------------------------------------------

class RateLimitsHttpTest : public HttpServerTest {
 protected:
  httplib::Result password_grant(const std::string& user, const std::string& password) {
    return post_form("/v1/oauth/token",
                     "grant_type=password&username=" + user + "&password=" + password);
  }
  static int retry_after(const httplib::Result& r) {
    return r && r->has_header("Retry-After") ? std::stoi(r->get_header_value("Retry-After")) : -1;
  }
};

TEST_F(RateLimitsHttpTest, TokenRequestsPerAddressGet429WithRetryAfter) {
  start({{"CHAT_LOGIN_RATE", "1"}, {"CHAT_LOGIN_BURST", "3"}});
  signup("alice");
  for (int i = 0; i < 3; ++i) {
    auto r = password_grant("alice", i == 0 ? "password1" : "wrong-password");
    ASSERT_TRUE(r);
    EXPECT_NE(r->status, 429) << i;
  }
  // The refresh grant draws from the same bucket.
  auto r = post_form("/v1/oauth/token", "grant_type=refresh_token&refresh_token=whatever");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 429) << r->body;
  EXPECT_EQ(retry_after(r), 1);
  EXPECT_EQ(r->get_header_value("Cache-Control"), "no-store");
  auto body = body_of(r);
  EXPECT_EQ(body["error"], "rate_limited");
  EXPECT_TRUE(body["error_description"].is_string());
  // Even the right password waits.
  EXPECT_EQ(password_grant("alice", "password1")->status, 429);
  clock_.advance_ms(1000);
  EXPECT_EQ(password_grant("alice", "password1")->status, 200);
  auto metrics = server_->rate_limits().counters();
  EXPECT_EQ(metrics.login_ip_refused, 2u);
}

TEST_F(RateLimitsHttpTest, BruteForceLocksTheAccountWhateverThePassword) {
  start({{"CHAT_LOGIN_RATE", "0"},
         {"CHAT_LOGIN_LOCKOUT_AFTER", "3"},
         {"CHAT_LOGIN_LOCKOUT_SECONDS", "2"},
         {"CHAT_LOGIN_LOCKOUT_MAX", "60"}});
  signup("alice");
  signup("bob");
  for (int i = 0; i < 3; ++i) {
    auto r = password_grant("alice", "guess" + std::to_string(i));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << r->body;
    EXPECT_EQ(body_of(r)["error"], "invalid_grant");
  }
  // Locked: the right password gets exactly the answer a wrong one gets.
  auto right = password_grant("alice", "password1");
  auto wrong = password_grant("alice", "guess9");
  ASSERT_TRUE(right && wrong);
  // RFC 6749's invalid_grant (CONTRACT §2), with Retry-After.
  EXPECT_EQ(right->status, 400);
  EXPECT_EQ(wrong->status, 400);
  EXPECT_EQ(retry_after(right), 2);
  EXPECT_EQ(body_of(right), body_of(wrong));
  EXPECT_EQ(body_of(right)["error"], "invalid_grant");
  // Other accounts are not affected.
  EXPECT_EQ(password_grant("bob", "password1")->status, 200);

  // The lock ends; one more failure locks for twice as long.
  clock_.advance_ms(2000);
  EXPECT_EQ(password_grant("alice", "guess4")->status, 400);
  auto again = password_grant("alice", "password1");
  EXPECT_EQ(again->status, 400);
  EXPECT_EQ(retry_after(again), 4);
  clock_.advance_ms(4000);
  // The right password works again and resets the count.
  EXPECT_EQ(password_grant("alice", "password1")->status, 200);
  EXPECT_EQ(password_grant("alice", "guess5")->status, 400);
  EXPECT_EQ(password_grant("alice", "password1")->status, 200);
  EXPECT_EQ(server_->rate_limits().counters().lockouts, 2u);
}

TEST_F(RateLimitsHttpTest, UnknownAccountsLockExactlyLikeRealOnes) {
  start({{"CHAT_LOGIN_RATE", "0"}, {"CHAT_LOGIN_LOCKOUT_AFTER", "2"}});
  signup("alice");
  std::vector<std::pair<int, json>> real, ghost;
  for (int i = 0; i < 4; ++i) {
    auto a = password_grant("alice", "nope");
    auto g = password_grant("nobody", "nope");
    ASSERT_TRUE(a && g);
    real.emplace_back(a->status, body_of(a));
    ghost.emplace_back(g->status, body_of(g));
  }
  EXPECT_EQ(real, ghost);
  EXPECT_EQ(real.back().first, 400);
  EXPECT_NE(
      real.back().second["error_description"].get<std::string>().find("too many failed logins"),
      std::string::npos)
      << real.back().second;
}

TEST_F(RateLimitsHttpTest, RestWritesPerUserGet429AdminsAndReadsDoNot) {
  start({{"CHAT_RATE_LIMIT_REST", "1"}, {"CHAT_RATE_LIMIT_REST_BURST", "3"}});
  std::string alice = token_for("alice");
  std::string bob = token_for("bob");
  std::string root = login("root", "root-password")["access_token"].get<std::string>();
  // An invalid group: the service answers 400, but each one is a write.
  const json bad_group = {{"name", ""}};
  for (int i = 0; i < 3; ++i) EXPECT_EQ(post_json("/v1/groups", bad_group, alice)->status, 400);
  auto r = post_json("/v1/groups", bad_group, alice);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 429);
  EXPECT_EQ(retry_after(r), 1);
  EXPECT_EQ(body_of(r)["error"], "rate_limited");
  EXPECT_TRUE(body_of(r)["message"].is_string());
  // DELETE counts too; reads do not; bob and the admin have their own budget.
  EXPECT_EQ(
      client_->Delete("/v1/blocks/bob", httplib::Headers{{"Authorization", "Bearer " + alice}})
          ->status,
      429);
  for (int i = 0; i < 20; ++i) ASSERT_EQ(get("/v1/groups", alice)->status, 200);
  EXPECT_EQ(post_json("/v1/groups", bad_group, bob)->status, 400);
  for (int i = 0; i < 20; ++i) ASSERT_EQ(post_json("/v1/groups", bad_group, root)->status, 400);
  // Without a valid token: 401 as before, nothing counted.
  EXPECT_EQ(post_json("/v1/groups", bad_group, "junk")->status, 401);
  clock_.advance_ms(1000);
  EXPECT_EQ(post_json("/v1/groups", bad_group, alice)->status, 400);
  EXPECT_EQ(server_->rate_limits().counters().rest_refused, 2u);
}

TEST_F(RateLimitsHttpTest, MetricsCountRefusals) {
  start({{"CHAT_RATE_LIMIT_REST", "1"}, {"CHAT_RATE_LIMIT_REST_BURST", "1"}});
  std::string alice = token_for("alice");
  std::string root = login("root", "root-password")["access_token"].get<std::string>();
  EXPECT_EQ(post_json("/v1/groups", {{"name", ""}}, alice)->status, 400);
  EXPECT_EQ(post_json("/v1/groups", {{"name", ""}}, alice)->status, 429);
  auto m = get("/metrics", root);
  ASSERT_TRUE(m);
  ASSERT_EQ(m->status, 200);
  EXPECT_NE(m->body.find("chat_http_rate_limited_total{limit=\"rest\"} 1"), std::string::npos)
      << m->body;
  EXPECT_NE(m->body.find("chat_login_lockouts_total 0"), std::string::npos);
}

}  // namespace
}  // namespace chat::api
