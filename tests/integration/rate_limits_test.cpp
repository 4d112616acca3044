// Abuse limits on the real stack (CONTRACT §1, §3; docs/operations.md):
// per-user message, receipt and typing buckets in the broker plugin, login
// limits and lockout on POST /v1/oauth/token, and REST writes per user.
// The Stack turns every limit off; each test here turns on the ones it checks.
#include <gtest/gtest.h>
#include <mqtt_protocol.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <set>
#include <string>

#include "stack.h"

namespace chat::testing {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The rate_limited error events a device received, by cid.
std::multiset<std::string> rate_limited_cids(const std::vector<Received>& msgs) {
  std::multiset<std::string> out;
  for (const auto& m : on_topic(msgs, "u/alice/event")) {
    auto ev = m.body();
    if (ev.value("type", "") == "error" && ev.value("code", "") == "rate_limited") {
      out.insert(ev.value("cid", ""));
    }
  }
  return out;
}

// A 429 answer, kept past its httplib::Result.
struct Refused {
  std::string retry_after;
  std::string body;
};

void print_logs_on_failure(const Stack& stack) {
  if (::testing::Test::HasFailure()) std::cerr << stack.logs();
}

TEST(RateLimits, ABurstOverTheMessageLimitIsRefusedWith0x87AndNothingOverItIsArchived) {
  Stack stack(StackOptions{{{"CHAT_RATE_LIMIT_MSGS", "1"}, {"CHAT_RATE_LIMIT_BURST", "5"}}});
  const std::string alice_token = stack.register_user("alice");
  const std::string bob_token = stack.register_user("bob");
  MqttClient alice(stack.mqtt_port(), device("alice", "phone", alice_token, /*v5=*/true));
  ASSERT_EQ(alice.connect(), 0);
  ASSERT_EQ(alice.subscribe("u/alice/#"), 1);

  constexpr int kSent = 15;
  std::set<std::string> accepted, refused;
  const auto start = Clock::now();
  for (int i = 0; i < kSent; ++i) {
    const std::string cid = "burst-" + std::to_string(i);
    int reason = alice.publish("dm/bob", text(cid, "n" + std::to_string(i)));
    if (is_success(reason)) {
      accepted.insert(cid);
    } else {
      EXPECT_EQ(reason, MQTT_RC_NOT_AUTHORIZED) << cid;  // 0x87
      refused.insert(cid);
    }
  }
  const double elapsed = seconds_since(start);
  // The burst of 5, plus at most the tokens that came back meanwhile (1/s).
  EXPECT_GE(accepted.size(), 5u);
  EXPECT_LE(accepted.size(), 5u + static_cast<size_t>(elapsed) + 1) << elapsed << " s";
  ASSERT_FALSE(refused.empty());

  // Every refusal is explained to the sender, by cid.
  ASSERT_TRUE(alice.wait_for([&](const std::vector<Received>& m) {
    return rate_limited_cids(m).size() >= refused.size();
  })) << stack.logs();
  auto explained = rate_limited_cids(alice.received());
  EXPECT_EQ(std::set<std::string>(explained.begin(), explained.end()), refused);

  // The archive holds exactly the accepted ones: history and sync agree.
  auto [status, page] = stack.get("/v1/conversations/dm:alice:bob/messages?limit=100", bob_token);
  ASSERT_EQ(status, 200) << page.dump();
  std::set<std::string> archived;
  for (const auto& m : page["messages"]) archived.insert(m["cid"].get<std::string>());
  EXPECT_EQ(archived, accepted);
  std::set<std::string> synced;
  for (const auto& m : sync_all(stack, bob_token)) synced.insert(m["cid"].get<std::string>());
  EXPECT_EQ(synced, accepted);
  print_logs_on_failure(stack);
}

TEST(RateLimits, ReceiptsAreRefusedLikeMessagesTypingIsDroppedAndToldOncePerSecond) {
  Stack stack(StackOptions{{{"CHAT_RATE_LIMIT_RECEIPTS", "1"},
                            {"CHAT_RATE_LIMIT_RECEIPTS_BURST", "2"},
                            {"CHAT_RATE_LIMIT_TYPING", "1"},
                            {"CHAT_RATE_LIMIT_TYPING_BURST", "2"}}});
  const std::string alice_token = stack.register_user("alice");
  const std::string bob_token = stack.register_user("bob");
  MqttClient alice(stack.mqtt_port(), device("alice", "phone", alice_token, /*v5=*/true));
  MqttClient bob(stack.mqtt_port(), device("bob", "laptop", bob_token, /*v5=*/true));
  ASSERT_EQ(alice.connect(), 0);
  ASSERT_EQ(bob.connect(), 0);
  ASSERT_EQ(alice.subscribe("u/alice/#"), 1);
  ASSERT_EQ(bob.subscribe("u/bob/#"), 1);

  // Receipts: QoS 1, refused with 0x87 and the event beyond the bucket.
  const std::string receipt = R"({"ids":["0000000000000001"],"status":"delivered"})";
  int receipts_accepted = 0, receipts_refused = 0;
  auto start = Clock::now();
  for (int i = 0; i < 8; ++i) {
    int reason = alice.publish("dm/bob/receipt", receipt);
    if (is_success(reason)) {
      ++receipts_accepted;
    } else {
      EXPECT_EQ(reason, MQTT_RC_NOT_AUTHORIZED);
      ++receipts_refused;
    }
  }
  double elapsed = seconds_since(start);
  EXPECT_GE(receipts_accepted, 2);
  EXPECT_LE(receipts_accepted, 2 + static_cast<int>(elapsed) + 1);
  ASSERT_GT(receipts_refused, 0);
  ASSERT_TRUE(alice.wait_for([&](const std::vector<Received>& m) {
    return static_cast<int>(rate_limited_cids(m).size()) >= receipts_refused;
  })) << stack.logs();
  // Bob got the accepted ones only.
  ASSERT_TRUE(bob.wait_for([&](const std::vector<Received>& m) {
    return static_cast<int>(on_topic(m, "u/bob/receipt").size()) >= receipts_accepted;
  }));

  // Typing: QoS 0, so no PUBACK: beyond the bucket it is dropped, and the
  // device hears "rate_limited" at most once a second.
  const size_t events_before = rate_limited_cids(alice.received()).size();
  start = Clock::now();
  for (int i = 0; i < 30; ++i) {
    ASSERT_EQ(alice.publish("dm/bob/typing", R"({"state":"composing"})", 0), 0);
  }
  // A QoS 1 marker after the typing signals: once bob has it, every typing
  // signal that was relayed has arrived too (one connection, in order).
  ASSERT_TRUE(is_success(alice.publish("dm/bob", text("marker", "after typing"))));
  ASSERT_TRUE(bob.wait_for([](const std::vector<Received>& m) {
    return !on_topic(m, "u/bob/msg").empty();
  })) << stack.logs();
  ASSERT_TRUE(alice.wait_for([&](const std::vector<Received>& m) {
    return rate_limited_cids(m).size() > events_before;
  })) << stack.logs();
  elapsed = seconds_since(start);
  const size_t typing_relayed = bob.received_on("u/bob/typing").size();
  EXPECT_GE(typing_relayed, 2u);
  EXPECT_LE(typing_relayed, 2u + static_cast<size_t>(elapsed) + 1) << elapsed << " s";
  const size_t typing_events = rate_limited_cids(alice.received()).size() - events_before;
  EXPECT_GE(typing_events, 1u);
  EXPECT_LE(typing_events, static_cast<size_t>(elapsed) + 1) << elapsed << " s";
  print_logs_on_failure(stack);
}

TEST(RateLimits, LoginBruteForceLocksTheAccountOutWithBackoff) {
  // The lock starts when the third attempt starts, before its password hash
  // (tens of ms, more on a loaded machine): 2 s leaves the next request
  // ample time to find it still locked.
  Stack stack(StackOptions{{{"CHAT_LOGIN_LOCKOUT_AFTER", "3"},
                            {"CHAT_LOGIN_LOCKOUT_SECONDS", "2"},
                            {"CHAT_LOGIN_LOCKOUT_MAX", "60"}}});
  stack.register_user("alice", "correct horse");
  httplib::Client http = stack.http_client();
  auto grant = [&](const std::string& password) {
    return http.Post("/v1/oauth/token", "grant_type=password&username=alice&password=" + password,
                     "application/x-www-form-urlencoded");
  };
  for (int i = 0; i < 3; ++i) {
    auto r = grant("guess-" + std::to_string(i));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << r->body;
  }
  // Locked: the right password is refused like a wrong one — RFC 6749's
  // invalid_grant (CONTRACT §2) with Retry-After.
  auto locked = grant("correct%20horse");
  ASSERT_TRUE(locked);
  EXPECT_EQ(locked->status, 400) << locked->body;
  const std::string locked_after = locked->get_header_value("Retry-After");
  EXPECT_TRUE(locked_after == "1" || locked_after == "2") << locked_after;
  EXPECT_EQ(json::parse(locked->body)["error"], "invalid_grant");
  auto wrong = grant("guess-x");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 400);
  EXPECT_EQ(wrong->body, locked->body);

  // The lock ends on its own (poll: no sleeping; a refusal while locked is
  // not counted), and a further failure doubles it.
  ASSERT_TRUE(eventually([&] {
    auto r = grant("guess-3");
    return r && r->status == 400 && !r->has_header("Retry-After");
  }));
  auto doubled = grant("correct%20horse");
  ASSERT_TRUE(doubled);
  EXPECT_EQ(doubled->status, 400);
  // Retry-After is what is left of the 4 s lock (the log line below shows
  // its full length whatever the machine's speed).
  const int doubled_after = std::atoi(doubled->get_header_value("Retry-After").c_str());
  EXPECT_GE(doubled_after, 1);
  EXPECT_LE(doubled_after, 4);

  // The right password works once the lock is over, and resets the count.
  ASSERT_TRUE(eventually([&] {
    auto r = grant("correct%20horse");
    return r && r->status == 200;
  }));
  EXPECT_EQ(grant("guess-after")->status, 400);
  EXPECT_EQ(grant("correct%20horse")->status, 200);

  // A security event in chat-api's log: the account and address, no password.
  const std::string log = stack.log_tail("chat-api", 200000);
  EXPECT_NE(log.find("security.login_lockout: account=alice ip=127.0.0.1 "
                     "consecutive_failures=3 locked_s=2"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("security.login_lockout: account=alice ip=127.0.0.1 "
                     "consecutive_failures=4 locked_s=4"),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find("correct horse"), std::string::npos);
  EXPECT_EQ(log.find("guess-"), std::string::npos);
  print_logs_on_failure(stack);
}

TEST(RateLimits, RestWritesPerUserGet429ReadsDoNot) {
  Stack stack(StackOptions{{{"CHAT_RATE_LIMIT_REST", "1"}, {"CHAT_RATE_LIMIT_REST_BURST", "3"}}});
  const std::string alice_token = stack.register_user("alice");
  stack.register_user("bob");
  httplib::Client http = stack.http_client();
  const httplib::Headers auth{{"Authorization", "Bearer " + alice_token}};

  // Writes: blocks go to the broker and answer 204 until the bucket is empty.
  int ok = 0;
  std::optional<Refused> limited;
  for (int i = 0; i < 10 && !limited; ++i) {
    auto r = i % 2 == 0 ? http.Post("/v1/blocks/bob", auth, "", "application/json")
                        : http.Delete("/v1/blocks/bob", auth);
    ASSERT_TRUE(r);
    if (r->status == 429) {
      limited = Refused{r->get_header_value("Retry-After"), r->body};
    } else {
      EXPECT_EQ(r->status, 204) << r->body;
      ++ok;
    }
  }
  ASSERT_TRUE(limited) << "no write was refused";
  EXPECT_GE(ok, 3);
  EXPECT_GE(std::stoi(limited->retry_after), 1);
  auto body = json::parse(limited->body);
  EXPECT_EQ(body["error"], "rate_limited");
  EXPECT_TRUE(body["message"].is_string());
  // Reads are not limited.
  for (int i = 0; i < 10; ++i) ASSERT_EQ(stack.get("/v1/conversations", alice_token).first, 200);
  print_logs_on_failure(stack);
}

TEST(RateLimits, TokenRequestsPerAddressGet429) {
  Stack stack(StackOptions{{{"CHAT_LOGIN_RATE", "1"}, {"CHAT_LOGIN_BURST", "2"}}});
  httplib::Client http = stack.http_client();
  std::optional<Refused> limited;
  for (int i = 0; i < 20 && !limited; ++i) {
    auto r = http.Post("/v1/oauth/token", "grant_type=refresh_token&refresh_token=nope",
                       "application/x-www-form-urlencoded");
    ASSERT_TRUE(r);
    if (r->status == 429) {
      limited = Refused{r->get_header_value("Retry-After"), r->body};
    } else {
      EXPECT_EQ(r->status, 400) << r->body;
    }
  }
  ASSERT_TRUE(limited) << "no token request was refused";
  EXPECT_EQ(limited->retry_after, "1");
  EXPECT_EQ(json::parse(limited->body)["error"], "rate_limited");
  print_logs_on_failure(stack);
}

}  // namespace
}  // namespace chat::testing
